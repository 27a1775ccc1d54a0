//! Signed HTTP calls to the marketplace and to neighbouring nodes, each in a client span whose
//! context travels in `traceparent` (so a relayed bid request joins the auction's trace).

use model::auth;
use model::time::Timestamp;
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::time::Duration;
use telemetry::reqwest::RequestTracing;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot encode request: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    #[error("{url}: timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: unreadable answer: {reason}")]
    Decode { url: String, reason: String },
}

impl CallError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Who signs a call, and with which key (enrollment secret or federation key).
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub key: &'a [u8],
    pub sender: &'a str,
}

/// A reqwest client that signs every call with a key (enrollment secret or federation key).
#[derive(Clone)]
pub struct SignedClient {
    http: Client,
}

impl Default for SignedClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SignedClient {
    pub fn new() -> Self {
        let http = Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self { http }
    }

    pub fn http(&self) -> &Client {
        &self.http
    }

    /// Sends `body` as JSON to `base + path`, signed as `sender` with `key`, and decodes the
    /// answer. The call is a client span named `METHOD /route` (see [`route_pattern`]).
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        base: &str,
        path: &str,
        body: Option<&B>,
        signer: Signer<'_>,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let span = telemetry::client_span(method.as_str(), route_pattern(path), Some(&url));
        let result = self
            .call_traced(method, url, path, body, signer, timeout, &span)
            .instrument(span.clone())
            .await;
        match &result {
            Err(e @ (CallError::Transport { .. } | CallError::Timeout { .. })) => {
                telemetry::record_error(&span, e)
            }
            Err(CallError::Status { status, .. }) => {
                telemetry::record_status(&span, status.as_u16())
            }
            _ => {}
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_traced<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        url: String,
        path: &str,
        body: Option<&B>,
        signer: Signer<'_>,
        timeout: Duration,
        span: &tracing::Span,
    ) -> Result<R, CallError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let header = auth::sign(
            signer.key,
            signer.sender,
            Timestamp::now(),
            method.as_str(),
            path,
            &bytes,
        );
        let mut req = self
            .http
            .request(method, &url)
            .header("authorization", header)
            .timeout(timeout)
            .with_trace_context_of(span);
        if body.is_some() {
            req = req.header("content-type", "application/json").body(bytes);
        }
        let resp = req.send().await.map_err(|source| {
            if source.is_timeout() {
                CallError::Timeout {
                    url: url.clone(),
                    after: timeout,
                }
            } else {
                CallError::Transport {
                    url: url.clone(),
                    source,
                }
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            telemetry::record_status(span, status.as_u16());
        }
        let text = resp.text().await.map_err(|e| CallError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(CallError::Status {
                url,
                status,
                body: text.chars().take(2000).collect(),
            });
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| CallError::Decode {
            url,
            reason: e.to_string(),
        })
    }
}

/// `path` as a route pattern for span names: UUID segments (node and SLA ids) become `{id}`,
/// so `/api/heartbeat/<uuid>` is `/api/heartbeat/{id}`.
pub fn route_pattern(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(|s| uuid::Uuid::parse_str(s).is_ok()) {
        return Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| {
            if uuid::Uuid::parse_str(s).is_ok() {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    Cow::Owned(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::route_pattern;

    #[test]
    fn ids_in_paths_become_placeholders() {
        assert_eq!(route_pattern("/api/bid"), "/api/bid");
        assert_eq!(
            route_pattern("/api/heartbeat/7d6c1a8e-0f4b-4a43-9a55-1f0c2b8e9d10"),
            "/api/heartbeat/{id}"
        );
    }
}
