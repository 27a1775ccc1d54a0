//! The pieces of an HTTP/1 upstream client that the gateway's proxy to its replicas and a fog
//! node's data plane share: the hop-by-hop headers never forwarded, a keep-alive pool tuned
//! for many small exchanges, an answer read up to a cap, and what a failed send says about
//! whether the upstream can have run the request.
//!
//! Each caller keeps its own connector (plain TCP, or TLS in front of it) and its own pool per
//! worker thread, so a connection's task stays on the thread that uses it.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Headers that concern one connection (RFC 9110 section 7.6.1), and those the client
/// recomputes (`host`, `content-length`): never forwarded, in either direction.
pub const HOP_BY_HOP: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// Whether the header named `name` (lowercase, as `http` keeps names) is one of
/// [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str() == name)
}

/// `headers` without the [`HOP_BY_HOP`] ones (all their values), in place.
pub fn without_hop_by_hop(mut headers: HeaderMap) -> HeaderMap {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers
}

/// How long an idle keep-alive connection stays in a pool.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled client sending whole (already read) bodies.
pub type Pooled<C> = Client<C, Full<Bytes>>;

/// A TCP connector without Nagle's delay: requests and answers are small writes that should
/// leave at once.
pub fn tcp_connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

/// A keep-alive pool: idle connections kept [`POOL_IDLE_TIMEOUT`], timed by tokio. Callers add
/// their own bounds (idle connections per host) and build it over their connector.
pub fn pool_builder() -> legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    builder
}

/// Why an answer's body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The answer is larger than the cap; the rest was not read.
    #[error("answer larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body broke off (connection reset, timeout, malformed chunk...).
    #[error("reading the answer: {}", error_chain(.0.as_ref()))]
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads `body` whole, up to `limit` bytes: an answer that declares a larger size is refused
/// before a byte is read, and one that grows past the cap is never buffered whole.
pub async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().exact().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Broken(e)),
    }
}

/// What a failed send says about the request: whether the upstream can have run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// No connection was made: nothing was sent.
    Connect,
    /// The connection was reset or closed before a byte of answer (a pooled keep-alive
    /// connection the upstream was closing, or an upstream going down): its HTTP server did
    /// not answer, so the request is taken as not run.
    NoAnswer,
    /// The request may have been sent and run.
    Other,
}

impl SendFailure {
    pub fn of(e: &legacy::Error) -> SendFailure {
        if e.is_connect() {
            SendFailure::Connect
        } else if closed_without_answer(e) {
            SendFailure::NoAnswer
        } else {
            SendFailure::Other
        }
    }
}

/// Whether `e` or one of its sources says the connection was reset or closed before any answer
/// arrived.
pub fn closed_without_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    sources(e).any(|err| {
        err.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
            || err.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                        | ErrorKind::UnexpectedEof
                )
            })
    })
}

/// Whether `e` or one of its sources is a timeout (as `reqwest::Error::is_timeout` says).
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    sources(e).any(|err| {
        err.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// `e` and its sources, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    for inner in sources(e).skip(1) {
        s.push_str(": ");
        s.push_str(&inner.to_string());
    }
    s
}

/// `e`, then each of its sources.
fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| err.source())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_are_dropped_with_all_their_values() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("te", HeaderValue::from_static("a"));
        h.append("te", HeaderValue::from_static("b"));
        h.append("content-type", HeaderValue::from_static("text/plain"));
        let out = without_hop_by_hop(h);
        assert_eq!(out.len(), 3);
        assert_eq!(out.get_all("x-a").iter().count(), 2);
        assert!(!out.contains_key("te") && !out.contains_key("connection"));
        assert!(is_hop_by_hop("transfer-encoding") && !is_hop_by_hop("x-a"));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_too_large_whether_declared_or_not() {
        let declared = Full::new(Bytes::from_static(b"12345"));
        assert!(matches!(
            read_capped(declared, 4).await,
            Err(BodyError::TooLarge { limit: 4 })
        ));
        let streamed = http_body_util::StreamBody::new(futures::stream::iter(
            [&b"123"[..], &b"45"[..]]
                .map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(c)))),
        ));
        assert!(matches!(
            read_capped(streamed, 4).await,
            Err(BodyError::TooLarge { limit: 4 })
        ));
        let exact = Full::new(Bytes::from_static(b"1234"));
        assert_eq!(read_capped(exact, 4).await.unwrap(), &b"1234"[..]);
    }

    #[test]
    fn a_reset_connection_is_closed_without_answer_and_a_timed_out_one_a_timeout() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(closed_without_answer(&reset) && !is_timeout(&reset));
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(is_timeout(&timed_out) && !closed_without_answer(&timed_out));
    }
}
