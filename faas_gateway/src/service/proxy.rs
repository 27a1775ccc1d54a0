//! The reverse proxy to HTTP-mode replicas: the upstream request (URI, forwarded headers), the
//! exchange over the shared keep-alive client ([`crate::upstream`]) within the upstream
//! timeout, and its errors (a replica killed by its memory limit says so).

use std::time::Duration;

use http::header::HeaderName;
use http::uri::Authority;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;

use super::Service;
use super::invoke::{Invocation, InvocationResponse, Lease};
use crate::error::{GatewayError, GatewayResult};
use crate::upstream::{self, BodyError, Pooled};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Service {
    pub(super) async fn forward(
        &self,
        lease: &Lease,
        req: Invocation,
    ) -> GatewayResult<InvocationResponse> {
        let authority = lease.authority.clone().ok_or_else(|| {
            GatewayError::Internal(anyhow::anyhow!("replica {} has no address", lease.instance))
        })?;
        let key = &lease.spec.key;
        let uri = upstream_uri(authority, &req.path, &req.query).map_err(|message| {
            GatewayError::Upstream {
                function: key.to_string(),
                message,
            }
        })?;
        let timeout = self.inner.config.upstream_timeout;
        let mut headers = upstream::without_hop_by_hop(req.headers);
        // The last X-Forwarded-For received, extended with the peer.
        let forwarded_for = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .next_back()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        headers.remove(X_FORWARDED_FOR);
        let xff = match (forwarded_for, &req.peer) {
            (Some(prev), Some(peer)) => Some(format!("{prev}, {peer}")),
            (Some(prev), None) => Some(prev),
            (None, peer) => peer.clone(),
        };
        if let Some(v) = xff.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(X_FORWARDED_FOR, v);
        }
        if let Some(v) = req
            .host
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(X_FORWARDED_HOST, v);
        }
        // As reqwest's default did.
        if !headers.contains_key(http::header::ACCEPT) {
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        let mut request = http::Request::new(Full::new(req.body));
        *request.method_mut() = req.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        // Errors as reqwest reported them: a timeout anywhere in the chain is a 504.
        let upstream_err = |e: &(dyn std::error::Error + 'static), message: String| {
            if upstream::is_timeout(e) {
                GatewayError::UpstreamTimeout(key.to_string())
            } else {
                GatewayError::Upstream {
                    function: key.to_string(),
                    message,
                }
            }
        };
        let uri = request.uri().clone();
        let exchange = async {
            let resp = upstream_client()
                .request(request)
                .await
                .map_err(|e| upstream_err(&e, format!("error sending request for url ({uri})")))?;
            let (parts, body) = resp.into_parts();
            let limit = self.inner.config.max_answer_bytes;
            let body = upstream::read_capped(body, limit)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => GatewayError::AnswerTooLarge {
                        function: key.to_string(),
                        limit,
                    },
                    BodyError::Broken(e) => {
                        upstream_err(e.as_ref(), "request or response body error".into())
                    }
                })?;
            Ok::<_, GatewayError>((parts, body))
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(key.to_string()))?;
        let (parts, body) = match result {
            Ok(answer) => answer,
            Err(e @ GatewayError::Upstream { .. }) => return Err(self.why_failed(lease, e).await),
            Err(e) => return Err(e),
        };
        Ok(InvocationResponse {
            status: parts.status.as_u16(),
            headers: upstream::without_hop_by_hop(parts.headers),
            body,
        })
    }

    /// A failed exchange with a replica: when the replica's process ended because of its memory
    /// limit (known within a second of the failure), that is the error; else `e` itself.
    async fn why_failed(&self, lease: &Lease, e: GatewayError) -> GatewayError {
        let mut exit = lease.exit.subscribe();
        let ended =
            tokio::time::timeout(Duration::from_secs(1), exit.wait_for(|x| x.is_some())).await;
        let memory = match ended {
            Ok(Ok(x)) => x.as_ref().and_then(|x| x.memory.clone()),
            _ => None,
        };
        match memory {
            Some(detail) => GatewayError::MemoryExceeded {
                function: lease.spec.key.to_string(),
                detail,
            },
            None => e,
        }
    }
}

/// The upstream HTTP client of this thread: a keep-alive pool per thread keeps each connection's
/// task on the thread (actix worker) that uses it.
fn upstream_client() -> Pooled<HttpConnector> {
    thread_local! {
        static CLIENT: Pooled<HttpConnector> =
            upstream::pool_builder().build(upstream::tcp_connector());
    }
    CLIENT.with(Pooled::clone)
}

/// `http://{authority}{path}?{query}`, as reqwest (the `url` crate) would send it: built
/// directly when `path` and `query` need no normalisation, through `url` otherwise.
fn upstream_uri(authority: Authority, path: &str, query: &str) -> Result<Uri, String> {
    let plain = |s: &str| {
        s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'%'
                )
        })
    };
    // `.`, `..` and their percent-encoded forms, which `url` resolves.
    let dot_segment = path.split('/').any(|seg| {
        [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"]
            .iter()
            .any(|d| seg.eq_ignore_ascii_case(d))
    });
    if path.starts_with('/') && plain(path) && plain(query) && !dot_segment {
        let mut pq = String::with_capacity(path.len() + query.len() + 1);
        pq.push_str(path);
        if !query.is_empty() {
            pq.push('?');
            pq.push_str(query);
        }
        let pq = http::uri::PathAndQuery::try_from(pq).map_err(|e| e.to_string())?;
        return Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| e.to_string());
    }
    let mut url = format!("http://{authority}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| format!("builder error for url ({url}): {e}"))?;
    Uri::try_from(parsed.as_str()).map_err(|e| format!("builder error for url ({parsed}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_is_what_reqwest_would_send() {
        let authority = Authority::from_static("127.0.0.1:8081");
        for (path, query) in [
            ("/", ""),
            ("/", "a=1&b=two"),
            ("/a/b/c", "x=%20y"),
            ("/a/./b/../c", ""),
            ("/a/%2E%2e/c", "q"),
            ("/a b/ü", "x=a b&y='\"#frag"),
            ("//double", ""),
            ("/a?b", "c"),
            ("/%zz/ok-._~!$&()*+,;=:@", "k=v"),
        ] {
            let mut url = format!("http://{authority}{path}");
            if !query.is_empty() {
                url.push('?');
                url.push_str(query);
            }
            let expected = Uri::try_from(reqwest::Url::parse(&url).unwrap().as_str()).unwrap();
            assert_eq!(
                upstream_uri(authority.clone(), path, query).unwrap(),
                expected,
                "{path:?} {query:?}"
            );
        }
    }
}
