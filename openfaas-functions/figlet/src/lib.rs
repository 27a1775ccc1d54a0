//! `fn-figlet`: renders the request body as an ASCII-art banner in FIGlet's standard font (the
//! DFaaS demo function), answered as `text/plain`.
//!
//! The font is embedded by `figlet-rs` (Apache-2.0), so nothing is read from disk. Each line of
//! the body becomes one banner; characters the font lacks (it covers printable ASCII) are
//! skipped. An empty body, a body that is not UTF-8, one with no printable character, or one
//! longer than 1 000 characters answers 400.

use figlet_rs::FIGlet;
use fn_common::{FnError, Request, Response, StatusCode};

/// Longest accepted text, in characters (the banner is ~6 lines of ~6 columns per character).
pub const MAX_CHARS: usize = 1_000;

/// The banner renderer, built once at start-up.
pub struct Banner {
    font: FIGlet,
}

impl Banner {
    /// FIGlet's standard font.
    pub fn standard() -> anyhow::Result<Self> {
        let font = FIGlet::standard()
            .map_err(|e| anyhow::anyhow!("loading the embedded standard font: {e}"))?;
        Ok(Self { font })
    }

    /// Renders `text`, one banner per line.
    pub fn render(&self, text: &str) -> Result<String, FnError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FnError::bad_request(
                "empty body: send the text to render as the request body",
            ));
        }
        let chars = text.chars().count();
        if chars > MAX_CHARS {
            return Err(FnError::bad_request(format!(
                "body too long: {chars} characters, at most {MAX_CHARS}"
            )));
        }
        let mut out = String::new();
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if let Some(figure) = self.font.convert(line) {
                out.push_str(&figure.to_string());
            }
        }
        if out.is_empty() {
            return Err(FnError::bad_request(
                "nothing to render: the standard font covers printable ASCII only",
            ));
        }
        Ok(out)
    }

    /// The handler.
    pub fn handle(&self, req: Request) -> Response {
        let rendered = std::str::from_utf8(&req.body)
            .map_err(|e| FnError::bad_request(format!("the body is not UTF-8 text: {e}")))
            .and_then(|text| self.render(text));
        match rendered {
            Ok(banner) => Response::text(StatusCode::OK, banner),
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::{Method, header};

    fn banner() -> Banner {
        Banner::standard().unwrap()
    }

    #[test]
    fn renders_text_in_the_standard_font() {
        // What `figlet Hi` prints with the standard font, trailing spaces included.
        let expected = concat!(
            " _   _ _ \n",
            "| | | (_)\n",
            "| |_| | |\n",
            "|  _  | |\n",
            "|_| |_|_|\n",
            "         \n",
        );
        assert_eq!(banner().render("Hi").unwrap(), expected);
    }

    #[test]
    fn each_line_becomes_a_banner() {
        let one = banner().render("A").unwrap();
        let two = banner().render("A\nA\n").unwrap();
        assert_eq!(two, format!("{one}{one}"));
    }

    #[test]
    fn empty_unprintable_or_too_long_text_answers_400() {
        for body in ["", "  \n ", "\u{1F600}"] {
            let resp = banner().handle(Request::new(Method::POST, "/", body));
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{body:?}");
        }
        let long = "x".repeat(MAX_CHARS + 1);
        let resp = banner().handle(Request::new(Method::POST, "/", long));
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        let resp = banner().handle(Request::new(Method::POST, "/", vec![0xff, 0xfe]));
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&resp.body).contains("UTF-8"));
    }

    #[test]
    fn the_handler_answers_plain_text() {
        let resp = banner().handle(Request::new(Method::POST, "/", "fog"));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            resp.header(header::CONTENT_TYPE),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(String::from_utf8_lossy(&resp.body).lines().count(), 6);
    }
}
