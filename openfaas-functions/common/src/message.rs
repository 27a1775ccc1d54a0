//! The request a handler receives, the response it returns, and the error type that turns into a
//! response saying which parameter was wrong and why.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde::Serialize;

/// One request, fully read: the handler never deals with streaming or connection details.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path as received (not percent-decoded), e.g. `/` or `/sub/path`.
    pub path: String,
    /// The raw query string without the leading `?` (empty when absent).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// Builds a request from a target such as `/?ms=5`; meant for tests and tools.
    pub fn new(method: Method, target: &str, body: impl Into<Bytes>) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, query),
            None => (target, ""),
        };
        Self {
            method,
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            query: query.to_owned(),
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// Adds a header; meant for tests and tools.
    ///
    /// # Panics
    /// If `value` is not a valid header value.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        let value = HeaderValue::from_str(value).expect("valid header value");
        self.headers.append(name, value);
        self
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The header `name` as text; `None` when absent or not visible ASCII.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameter `name` parsed as `T`; `Ok(None)` when absent, 400 naming it when invalid.
    pub fn parse_query<T>(&self, name: &str) -> Result<Option<T>, FnError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.query_param(name)
            .map(|raw| parse_param(name, &raw))
            .transpose()
    }

    /// Header `name` parsed as `T`; `Ok(None)` when absent, 400 naming it when invalid.
    pub fn parse_header<T>(&self, name: &str) -> Result<Option<T>, FnError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.headers.get(name) {
            None => Ok(None),
            Some(value) => {
                let raw = value.to_str().map_err(|_| {
                    FnError::invalid_param(name, "the header value is not visible ASCII")
                })?;
                parse_param(name, raw).map(Some)
            }
        }
    }
}

fn parse_param<T>(name: &str, raw: &str) -> Result<T, FnError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e| FnError::invalid_param(name, format!("{raw:?}: {e}")))
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A response without `Content-Type`.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self::new(status, body.into()).with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )
    }

    /// `application/json`; a value that cannot be serialised answers 500.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status, body).with_header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            Err(e) => Self::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serialising the response: {e}\n"),
            ),
        }
    }

    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request the function cannot serve, with the status to answer and a message saying what
/// was wrong (which parameter, and why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnError {
    pub status: StatusCode,
    pub message: String,
}

impl FnError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 `invalid parameter `name`: reason`.
    pub fn invalid_param(name: &str, reason: impl fmt::Display) -> Self {
        Self::bad_request(format!("invalid parameter `{name}`: {reason}"))
    }
}

impl fmt::Display for FnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for FnError {}

impl From<FnError> for Response {
    fn from(e: FnError) -> Self {
        Response::text(e.status, format!("{}\n", e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded_and_first_wins() {
        let req = Request::new(Method::GET, "/x?a=hello%20world&b=1&a=2", "");
        assert_eq!(req.path, "/x");
        assert_eq!(req.query_param("a").as_deref(), Some("hello world"));
        assert_eq!(req.query_param("b").as_deref(), Some("1"));
        assert_eq!(req.query_param("c"), None);
    }

    #[test]
    fn parse_query_names_the_parameter_when_invalid() {
        let req = Request::new(Method::GET, "/?ms=abc", "");
        let err = req.parse_query::<u64>("ms").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("`ms`"), "{}", err.message);
        assert!(err.message.contains("abc"), "{}", err.message);
        assert_eq!(req.parse_query::<u64>("other"), Ok(None));
    }

    #[test]
    fn parse_header_reads_and_validates_headers() {
        let req = Request::new(Method::GET, "/", "")
            .with_header(HeaderName::from_static("x-delay-ms"), "25");
        assert_eq!(req.parse_header::<u64>("X-Delay-Ms"), Ok(Some(25)));
        let bad = Request::new(Method::GET, "/", "")
            .with_header(HeaderName::from_static("x-delay-ms"), "-1");
        let err = bad.parse_header::<u64>("X-Delay-Ms").unwrap_err();
        assert!(err.message.contains("X-Delay-Ms"), "{}", err.message);
    }

    #[test]
    fn errors_become_plain_text_responses() {
        let resp: Response = FnError::invalid_param("width", "must be at most 8192").into();
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            resp.header(header::CONTENT_TYPE),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            &resp.body[..],
            b"invalid parameter `width`: must be at most 8192\n"
        );
    }

    #[test]
    fn json_responses_carry_their_content_type() {
        let resp = Response::json(StatusCode::OK, &serde_json::json!({"a": 1}));
        assert_eq!(resp.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(&resp.body[..], br#"{"a":1}"#);
    }
}
