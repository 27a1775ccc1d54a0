//! `fn-echo`: answers 200 with the request body as-is (and the request's `Content-Type`).
//!
//! - Query `delay_ms=N` (or header `X-Delay-Ms: N`; the query wins) waits N ms first, at most
//!   60 000; an invalid value answers 400 naming the parameter.
//! - Response headers say who served the request: `X-Served-By-Node` (env
//!   `FOGMARKET_NODE_NAME`, if set), `X-Sla-Id` (env `FOGMARKET_SLA_ID`, if set) and
//!   `X-Function-Replica` (the process id).
//!
//! The delay is a timer, not a busy wait (see `fn-spin` for CPU load), so the handler is async.

use std::time::Duration;

use fn_common::{FnError, HeaderName, HeaderValue, Request, Response, StatusCode, header};

/// Longest accepted delay.
pub const MAX_DELAY_MS: u64 = 60_000;

pub const SERVED_BY_NODE: HeaderName = HeaderName::from_static("x-served-by-node");
pub const SLA_ID: HeaderName = HeaderName::from_static("x-sla-id");
pub const FUNCTION_REPLICA: HeaderName = HeaderName::from_static("x-function-replica");

/// Who serves requests, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub node: Option<HeaderValue>,
    pub sla: Option<HeaderValue>,
    pub replica: Option<HeaderValue>,
}

impl Identity {
    /// From `FOGMARKET_NODE_NAME`, `FOGMARKET_SLA_ID` and the process id.
    pub fn from_env() -> Self {
        Self {
            node: env_header("FOGMARKET_NODE_NAME"),
            sla: env_header("FOGMARKET_SLA_ID"),
            replica: Some(HeaderValue::from(std::process::id())),
        }
    }
}

fn env_header(name: &str) -> Option<HeaderValue> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    match HeaderValue::from_str(&value) {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("ignoring {name}: {value:?} is not a valid header value");
            None
        }
    }
}

/// The requested delay: query `delay_ms`, else header `X-Delay-Ms`, else none.
pub fn requested_delay(req: &Request) -> Result<Duration, FnError> {
    let (name, ms) = match req.parse_query::<u64>("delay_ms")? {
        Some(ms) => ("delay_ms", ms),
        None => (
            "X-Delay-Ms",
            req.parse_header::<u64>("X-Delay-Ms")?.unwrap_or(0),
        ),
    };
    if ms > MAX_DELAY_MS {
        return Err(FnError::invalid_param(
            name,
            format!("{ms} ms is more than the maximum of {MAX_DELAY_MS} ms"),
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// The answer once any delay is over: the body, its content type, and the identity headers.
pub fn echo(identity: &Identity, req: Request) -> Response {
    let mut resp = Response::new(StatusCode::OK, req.body);
    if let Some(content_type) = req.headers.get(header::CONTENT_TYPE) {
        resp.headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    for (name, value) in [
        (SERVED_BY_NODE, &identity.node),
        (SLA_ID, &identity.sla),
        (FUNCTION_REPLICA, &identity.replica),
    ] {
        if let Some(value) = value {
            resp.headers.insert(name, value.clone());
        }
    }
    resp
}

/// The handler: validate the delay, wait, echo.
pub async fn handle(identity: Identity, req: Request) -> Response {
    let delay = match requested_delay(&req) {
        Ok(delay) => delay,
        Err(e) => return e.into(),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    echo(&identity, req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fn_common::Method;

    fn identity() -> Identity {
        Identity {
            node: Some(HeaderValue::from_static("edge-1")),
            sla: Some(HeaderValue::from_static("sla-42")),
            replica: Some(HeaderValue::from_static("1234")),
        }
    }

    #[tokio::test]
    async fn echoes_the_body_and_content_type_with_identity_headers() {
        let req = Request::new(Method::POST, "/", "hello fog")
            .with_header(header::CONTENT_TYPE, "application/x-test");
        let resp = handle(identity(), req).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(&resp.body[..], b"hello fog");
        assert_eq!(
            resp.header(header::CONTENT_TYPE),
            Some("application/x-test")
        );
        assert_eq!(resp.header("x-served-by-node"), Some("edge-1"));
        assert_eq!(resp.header("x-sla-id"), Some("sla-42"));
        assert_eq!(resp.header("x-function-replica"), Some("1234"));
    }

    #[tokio::test]
    async fn identity_headers_are_omitted_when_unset() {
        let resp = handle(Identity::default(), Request::new(Method::GET, "/", "")).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("x-served-by-node"), None);
        assert_eq!(resp.header("x-sla-id"), None);
        assert_eq!(resp.header(header::CONTENT_TYPE), None);
    }

    #[test]
    fn delay_comes_from_the_query_first_then_the_header() {
        let header = HeaderName::from_static("x-delay-ms");
        let req = Request::new(Method::GET, "/?delay_ms=15", "").with_header(header.clone(), "99");
        assert_eq!(requested_delay(&req), Ok(Duration::from_millis(15)));
        let req = Request::new(Method::GET, "/", "").with_header(header, "99");
        assert_eq!(requested_delay(&req), Ok(Duration::from_millis(99)));
        let req = Request::new(Method::GET, "/", "");
        assert_eq!(requested_delay(&req), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_or_excessive_delays_are_rejected_naming_the_parameter() {
        let err = requested_delay(&Request::new(Method::GET, "/?delay_ms=soon", "")).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("`delay_ms`"), "{}", err.message);
        let err = requested_delay(&Request::new(Method::GET, "/?delay_ms=60001", "")).unwrap_err();
        assert!(err.message.contains("`delay_ms`"), "{}", err.message);
        assert!(err.message.contains("60000"), "{}", err.message);
        let req = Request::new(Method::GET, "/", "")
            .with_header(HeaderName::from_static("x-delay-ms"), "-5");
        let err = requested_delay(&req).unwrap_err();
        assert!(err.message.contains("`X-Delay-Ms`"), "{}", err.message);
    }

    #[tokio::test(start_paused = true)]
    async fn the_handler_waits_for_the_requested_delay() {
        let start = tokio::time::Instant::now();
        let resp = handle(
            Identity::default(),
            Request::new(Method::GET, "/?delay_ms=500", "x"),
        )
        .await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(start.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_bad_delay_answers_400_without_echoing() {
        let resp = handle(
            identity(),
            Request::new(Method::POST, "/?delay_ms=x", "body"),
        )
        .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&resp.body).contains("delay_ms"));
    }
}
