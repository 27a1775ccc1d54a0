//! Upstream HTTP calls of the data plane (to the local gateway and to peers' data planes):
//! a pooled keep-alive HTTP/1 client per worker thread and per TLS trust, header conversion
//! from actix's `http` 0.2 types without hop-by-hop and federation headers, and errors that
//! say whether the peer could have run the request. What every upstream client shares (the
//! hop-by-hop headers, the pool tuning, the capped read, what a failed send means) is
//! [`faas_gateway::upstream`], which the embedded gateway's proxy uses too.
//!
//! `https://` peers are reached over TLS (rustls), trusting the node's `[tls] ca` only, as
//! its signed client does; `http://` (the embedded gateway on loopback) stays plain. An
//! answer is read up to the client's cap (`[offload] max_answer`): a bigger one is
//! [`UpstreamError::TooLarge`], never buffered whole.

use actix_web::http::header::HeaderMap as ActixHeaders;
use bytes::Bytes;
use faas_gateway::upstream::{self, BodyError, SendFailure};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// Besides the hop-by-hop headers, `expect` is never passed on: the body is already read.
fn is_hop_by_hop_or_expect(name: &str) -> bool {
    upstream::is_hop_by_hop(name) || name == header::EXPECT.as_str()
}

/// Federation headers of the incoming request, replaced (forward) or dropped (local call).
fn is_federation(name: &str) -> bool {
    matches!(
        name,
        model::auth::FORWARD_HEADER
            | model::auth::HOPS_HEADER
            | model::auth::ROUTE_HEADER
            | crate::client::PEER_HEADER
    )
}

/// The request headers to pass upstream, with room for `extra` more.
pub fn request_headers(src: &ActixHeaders, extra: usize) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(src.len() + extra);
    for (k, v) in src.iter() {
        let name = k.as_str();
        if is_hop_by_hop_or_expect(name) || is_federation(name) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            out.append(k, v);
        }
    }
    out
}

/// A complete upstream answer.
#[derive(Debug)]
pub struct Upstream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: the connection could not be made (or the URI was invalid).
    #[error("cannot connect to {uri}: {reason}")]
    Connect { uri: String, reason: String },
    /// The connection was reset or closed without a byte of answer: a pooled keep-alive
    /// connection the peer was closing, or a peer going down. Its HTTP server did not answer,
    /// so the request is taken as not run (a peer killed while running it would run it twice
    /// on a retry: an accepted risk, the alternative being to fail every request in flight
    /// on a stale connection).
    #[error("{uri}: connection closed without an answer: {reason}")]
    NoAnswer { uri: String, reason: String },
    #[error("{uri} did not answer within {after:?}")]
    Timeout { uri: String, after: Duration },
    /// Failed after the request may have been sent.
    #[error("{uri}: {reason}")]
    Transport { uri: String, reason: String },
    /// The upstream answered more than the cap; the rest was not read.
    #[error("{uri}: answer larger than {limit} bytes")]
    TooLarge { uri: String, limit: usize },
}

impl UpstreamError {
    /// The upstream cannot have run the request.
    pub fn before_run(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::NoAnswer { .. }
        )
    }
}

type Pooled = upstream::Pooled<HttpsConnector<HttpConnector>>;

/// The data plane's client settings: the TLS trust and the answer cap. Cheap to clone; the
/// pooled connections live per worker thread (see [`UpstreamClient::pooled`]).
#[derive(Clone)]
pub struct UpstreamClient {
    /// Tells this client's pools apart from other nodes' in the same process (tests).
    id: u64,
    tls: Arc<rustls::ClientConfig>,
    max_answer: usize,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("id", &self.id)
            .field("max_answer", &self.max_answer)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Trusts only the CA in `ca_pem` for `https://` upstreams when given (else the
    /// platform's roots); reads answers up to `max_answer` bytes.
    pub fn new(
        ca_pem: Option<&[u8]>,
        max_answer: usize,
    ) -> Result<UpstreamClient, signed_http::BuildError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(UpstreamClient {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tls: Arc::new(signed_http::tls::client_config(ca_pem)?),
            max_answer,
        })
    }

    pub fn max_answer(&self) -> usize {
        self.max_answer
    }

    /// This thread's pooled HTTP client for these settings, made on first use.
    fn pooled(&self) -> Pooled {
        thread_local! {
            static CLIENTS: RefCell<Vec<(u64, Pooled)>> = const { RefCell::new(Vec::new()) };
        }
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some((_, c)) = clients.iter().find(|(id, _)| *id == self.id) {
                return c.clone();
            }
            let mut http = upstream::tcp_connector();
            http.set_connect_timeout(Some(Duration::from_secs(5)));
            http.enforce_http(false);
            let connector = HttpsConnectorBuilder::new()
                .with_tls_config(rustls::ClientConfig::clone(&self.tls))
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            let client = upstream::pool_builder()
                .pool_max_idle_per_host(256)
                .build(connector);
            clients.push((self.id, client.clone()));
            client
        })
    }

    /// Sends one request to a `/function/{name}` route (a peer's data plane or the gateway)
    /// and reads the whole answer (up to the cap) within `timeout`, in a client span whose
    /// context replaces the caller's `traceparent` (so the peer's or the gateway's span is
    /// its child).
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        mut headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let span = telemetry::client_span(method.as_str(), "/function/{name}", Some(uri));
        telemetry::inject_span(&span, &mut headers);
        let result = self
            .send_untraced(method, uri, headers, body, timeout)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(up) => telemetry::record_status(&span, up.status.as_u16()),
            Err(e) => telemetry::record_error(&span, e),
        }
        result
    }

    async fn send_untraced(
        &self,
        method: Method,
        uri: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let parsed: Uri = uri.parse().map_err(|e| UpstreamError::Connect {
            uri: uri.to_string(),
            reason: format!("invalid URI: {e}"),
        })?;
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = parsed;
        *request.headers_mut() = headers;
        let exchange = async {
            let resp = self.pooled().request(request).await.map_err(|e| {
                let (uri, reason) = (uri.to_string(), upstream::error_chain(&e));
                match SendFailure::of(&e) {
                    SendFailure::Connect => UpstreamError::Connect { uri, reason },
                    SendFailure::NoAnswer => UpstreamError::NoAnswer { uri, reason },
                    SendFailure::Other => UpstreamError::Transport { uri, reason },
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = upstream::read_capped(body, self.max_answer)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => UpstreamError::TooLarge {
                        uri: uri.to_string(),
                        limit,
                    },
                    broken @ BodyError::Broken(_) => UpstreamError::Transport {
                        uri: uri.to_string(),
                        reason: broken.to_string(),
                    },
                })?;
            let mut headers = upstream::without_hop_by_hop(parts.headers);
            headers.remove(header::EXPECT);
            Ok(Upstream {
                status: parts.status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout {
                uri: uri.to_string(),
                after: timeout,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName as AName, HeaderValue as AValue};

    #[test]
    fn request_headers_drop_hop_by_hop_and_federation_headers_and_keep_the_rest() {
        let mut src = ActixHeaders::new();
        for (k, v) in [
            ("connection", "keep-alive"),
            ("host", "x"),
            ("content-length", "3"),
            ("x-fogmarket-forward", "Fogmarket a:1:00"),
            ("x-fogmarket-hops", "1"),
            ("x-fogmarket-peer", "a:1:00"),
            ("authorization", "Bearer t"),
            ("x-delay-ms", "5"),
        ] {
            src.append(
                AName::from_bytes(k.as_bytes()).unwrap(),
                AValue::from_static(v),
            );
        }
        let out = request_headers(&src, 0);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["authorization", "x-delay-ms"]);
    }
}
