//! `fn-sentiment`: the sentiment of English text (GIRAFF's sentiment-analysis step).
//!
//! Body: UTF-8 English text. Answer: JSON
//! `{"compound": f, "positive": f, "negative": f, "neutral": f, "label": "positive"|"negative"|"neutral"}`
//! where `compound` is in [-1, 1], the three proportions sum to about 1, and `label` uses the
//! VADER authors' thresholds (compound ≥ 0.05 positive, ≤ -0.05 negative). Empty or non-UTF-8
//! bodies answer 400.
//!
//! Scoring is VADER (Hutto & Gilbert, ICWSM 2014), a lexicon- and rule-based model, through the
//! `vader_sentiment` crate, a Rust port of the reference Python implementation. Its lexicons
//! (`vader_lexicon.txt`, ~7 500 scored words, emoticons and slang; `emoji_utf8_lexicon.txt`)
//! come from cjhutto/vaderSentiment under the MIT licence and are compiled into the binary, so
//! nothing is downloaded at run time; they are parsed on the first request.

use fn_common::{FnError, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use vader_sentiment::SentimentIntensityAnalyzer;

/// Compound score at or above which text is labelled positive (and at or below its negation,
/// negative), as recommended by VADER's authors.
pub const LABEL_THRESHOLD: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Positive,
    Negative,
    Neutral,
}

/// What the function answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub compound: f64,
    pub positive: f64,
    pub negative: f64,
    pub neutral: f64,
    pub label: Label,
}

/// Scores `text`.
pub fn analyze(text: &str) -> Sentiment {
    let analyzer = SentimentIntensityAnalyzer::new();
    let scores = analyzer.polarity_scores(text);
    let get = |key: &str| scores.get(key).copied().unwrap_or(0.0);
    let compound = get("compound");
    let label = if compound >= LABEL_THRESHOLD {
        Label::Positive
    } else if compound <= -LABEL_THRESHOLD {
        Label::Negative
    } else {
        Label::Neutral
    };
    Sentiment {
        compound,
        positive: get("pos"),
        negative: get("neg"),
        neutral: get("neu"),
        label,
    }
}

/// The handler.
pub fn handle(req: Request) -> Response {
    let text = match std::str::from_utf8(&req.body) {
        Ok(text) if !text.trim().is_empty() => text,
        Ok(_) => {
            return FnError::bad_request("empty body: send English text as the request body")
                .into();
        }
        Err(e) => {
            return FnError::bad_request(format!("the body is not UTF-8 text: {e}")).into();
        }
    };
    Response::json(StatusCode::OK, &analyze(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::{Method, header};

    #[test]
    fn love_is_positive_and_hate_is_negative() {
        let love = analyze("I love this");
        assert_eq!(love.label, Label::Positive, "{love:?}");
        assert!(love.compound > 0.5, "{love:?}");
        assert!(love.positive > love.negative);
        let hate = analyze("I hate this");
        assert_eq!(hate.label, Label::Negative, "{hate:?}");
        assert!(hate.compound < -0.5, "{hate:?}");
        assert!(hate.negative > hate.positive);
    }

    #[test]
    fn factual_text_is_neutral() {
        let s = analyze("The train leaves at nine from platform four.");
        assert_eq!(s.label, Label::Neutral, "{s:?}");
        assert!((s.neutral - 1.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn negation_and_emphasis_follow_vader_rules() {
        assert_eq!(analyze("This is not good").label, Label::Negative);
        assert!(analyze("This is GREAT!!!").compound > analyze("This is great").compound);
    }

    #[test]
    fn proportions_sum_to_one() {
        let s = analyze("The food was great but the service was terrible.");
        let sum = s.positive + s.negative + s.neutral;
        assert!((sum - 1.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for text in [
            "!!!", "?", ":)", "😁", "not", "no no no", "kind of", "at least", "a",
        ] {
            let s = analyze(text);
            assert!((-1.0..=1.0).contains(&s.compound), "{text}: {s:?}");
        }
    }

    #[test]
    fn the_handler_answers_json_and_rejects_empty_or_binary_bodies() {
        let resp = handle(Request::new(Method::POST, "/", "What a wonderful day"));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(json["label"], "positive");
        for key in ["compound", "positive", "negative", "neutral"] {
            assert!(json[key].is_f64(), "{key} in {json}");
        }
        for body in [b"".to_vec(), b"  \n".to_vec(), vec![0xc3, 0x28]] {
            let resp = handle(Request::new(Method::POST, "/", body));
            assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        }
    }
}
