//! Signed calls from the marketplace to fog nodes (one shared `reqwest::Client`, pooled).
//!
//! Every call carries `Authorization: Fogmarket marketplace:<ts>:<mac>` made with the
//! federation key over the URL path and the exact body bytes sent. Every call has a timeout;
//! answers are read up to [`MAX_RESPONSE_BYTES`] so a misbehaving node cannot exhaust memory.
//! Every call runs in a client span named after the node's route (`POST /api/bid`, ...) whose
//! context travels in `traceparent`, so the node's work joins the marketplace's trace.

use model::protocol::{AcceptRequest, AcceptResponse, BidRequest, BidResponse, ReleaseRequest};
use model::{BidId, SlaId, Timestamp, auth};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use telemetry::reqwest::RequestTracing;
use tracing::Instrument;

/// Sender name in the signatures the marketplace makes.
pub const SENDER: &str = "marketplace";
/// Largest node answer read (a bid response carries a whole subtree's bids).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Why a call to a node failed. `Refused` is the node's considered "no" (HTTP 409).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeCallError {
    #[error("no answer within {after_ms} ms")]
    Timeout { after_ms: u64 },
    #[error("cannot reach the node: {0}")]
    Transport(String),
    #[error("refused (409): {0}")]
    Refused(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreadable answer: {0}")]
    BadResponse(String),
}

/// Client for the fog node API.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    key: Arc<Vec<u8>>,
}

impl NodeClient {
    pub fn new(http: reqwest::Client, federation_key: &str) -> Self {
        Self {
            http,
            key: Arc::new(federation_key.as_bytes().to_vec()),
        }
    }

    /// Parses the answer as JSON.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        base_url: &str,
        (path, route): (&str, &'static str),
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<R, NodeCallError> {
        let buf = self
            .send(method, base_url, (path, route), body, timeout)
            .await?;
        let buf = if buf.is_empty() {
            b"null".to_vec()
        } else {
            buf
        };
        serde_json::from_slice(&buf).map_err(|e| NodeCallError::BadResponse(e.to_string()))
    }

    /// One signed call in a client span named `METHOD route` (`route` is the node's pattern
    /// for `path`); the raw answer body on 2xx.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        base_url: &str,
        (path, route): (&str, &'static str),
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NodeCallError> {
        let url = format!("{}{path}", base_url.trim_end_matches('/'));
        let span = telemetry::client_span(method.as_str(), route, Some(&url));
        let result = self
            .send_traced(method, url, path, body, timeout, &span)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result
            && !matches!(e, NodeCallError::Refused(_) | NodeCallError::Status { .. })
        {
            telemetry::record_error(&span, e);
        }
        result
    }

    async fn send_traced<B: Serialize>(
        &self,
        method: Method,
        url: String,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
        span: &tracing::Span,
    ) -> Result<Vec<u8>, NodeCallError> {
        let bytes = match body {
            Some(b) => {
                serde_json::to_vec(b).map_err(|e| NodeCallError::BadResponse(e.to_string()))?
            }
            None => Vec::new(),
        };
        let header = auth::sign(
            &self.key,
            SENDER,
            Timestamp::now(),
            method.as_str(),
            path,
            &bytes,
        );
        let mut req = self
            .http
            .request(method, &url)
            .timeout(timeout)
            .header(reqwest::header::AUTHORIZATION, header)
            .with_trace_context_of(span);
        if body.is_some() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let after_ms = timeout.as_millis() as u64;
        let map_err = |e: reqwest::Error| {
            if e.is_timeout() {
                NodeCallError::Timeout { after_ms }
            } else {
                NodeCallError::Transport(error_chain(&e))
            }
        };
        let mut resp = req.send().await.map_err(map_err)?;
        let status = resp.status();
        telemetry::record_status(span, status.as_u16());
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(NodeCallError::BadResponse(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        if status == StatusCode::CONFLICT {
            return Err(NodeCallError::Refused(error_message(&buf)));
        }
        if !status.is_success() {
            return Err(NodeCallError::Status {
                status: status.as_u16(),
                body: error_message(&buf),
            });
        }
        Ok(buf)
    }

    /// `POST /api/bid` to the auction's target node.
    pub async fn bid(
        &self,
        url: &str,
        req: &BidRequest,
        timeout: Duration,
    ) -> Result<BidResponse, NodeCallError> {
        let path = ("/api/bid", "/api/bid");
        self.call(Method::POST, url, path, Some(req), timeout).await
    }

    /// `POST /api/accept/{slaId}`: turns the winner's hold into a reservation.
    pub async fn accept(
        &self,
        url: &str,
        req: &AcceptRequest,
        timeout: Duration,
    ) -> Result<AcceptResponse, NodeCallError> {
        let path = format!("/api/accept/{}", req.sla.id);
        let path = (path.as_str(), "/api/accept/{sla_id}");
        self.call(Method::POST, url, path, Some(req), timeout).await
    }

    /// `POST /api/release`: frees losing holds (they would expire anyway).
    pub async fn release(
        &self,
        url: &str,
        bid_ids: Vec<BidId>,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        let req = ReleaseRequest { bid_ids };
        let path = ("/api/release", "/api/release");
        self.send(Method::POST, url, path, Some(&req), timeout)
            .await
            .map(|_| ())
    }

    /// `POST /api/provision/{slaId}`; returns the node's answer (a placement with a `state`).
    pub async fn provision(
        &self,
        url: &str,
        sla: SlaId,
        timeout: Duration,
    ) -> Result<serde_json::Value, NodeCallError> {
        let path = format!("/api/provision/{sla}");
        let path = (path.as_str(), "/api/provision/{sla_id}");
        self.call::<serde_json::Value, _>(Method::POST, url, path, None, timeout)
            .await
    }

    /// `DELETE /api/placement/{slaId}`: cancels, the node frees the resources.
    pub async fn cancel(
        &self,
        url: &str,
        sla: SlaId,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        let path = format!("/api/placement/{sla}");
        let path = (path.as_str(), "/api/placement/{sla_id}");
        self.send::<()>(Method::DELETE, url, path, None, timeout)
            .await
            .map(|_| ())
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The `message` of an error body, or the body itself (truncated).
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(|m| m.as_str())
    {
        return m.to_string();
    }
    let s = String::from_utf8_lossy(body);
    s.chars().take(300).collect()
}
