//! Signed calls from the marketplace to fog nodes, over the federation's one client
//! ([`signed_http::SignedClient`], pooled).
//!
//! Every call is signed with the marketplace's own key for the node it goes to (the node's id
//! is the recipient, so a call captured on its way to one node is refused by every other) and
//! has a timeout; answers are read up to [`MAX_RESPONSE_BYTES`] so a misbehaving node cannot
//! exhaust memory. Every call runs in a client span named after the node's route
//! (`POST /api/bid`, ...) whose context travels in `traceparent`, so the node's work joins the
//! marketplace's trace.

use model::auth::{self, SecretKey};
use model::protocol::{AcceptRequest, AcceptResponse, BidRequest, BidResponse, ReleaseRequest};
use model::{BidId, NodeId, SlaId};
use reqwest::Method;
use serde::de::DeserializeOwned;
use signed_http::{Call, CallError, SignedClient, Signer};
use std::sync::Arc;
use std::time::Duration;

/// Largest node answer read (a bid response carries a whole subtree's bids).
pub const MAX_RESPONSE_BYTES: usize = signed_http::DEFAULT_MAX_ANSWER;

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

impl From<CallError> for NodeCallError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout { after, .. } => NodeCallError::Timeout {
                after_ms: after.as_millis() as u64,
            },
            CallError::Transport { reason, .. } => NodeCallError::Transport(reason),
            CallError::Status {
                status, message, ..
            } if status == reqwest::StatusCode::CONFLICT => NodeCallError::Refused(message),
            CallError::Status {
                status, message, ..
            } => NodeCallError::Status {
                status: status.as_u16(),
                body: message,
            },
            CallError::TooLarge { limit, .. } => {
                NodeCallError::BadResponse(format!("answer larger than {limit} bytes"))
            }
            CallError::Decode { reason, .. } => NodeCallError::BadResponse(reason),
            CallError::Encode(e) => NodeCallError::BadResponse(format!("cannot encode: {e}")),
        }
    }
}

/// Where a node is: its id (the recipient of signatures) and its URL.
#[derive(Debug, Clone, Copy)]
pub struct NodeAddr<'a> {
    pub id: NodeId,
    pub url: &'a str,
}

/// Client for the fog node API, signing as the marketplace.
#[derive(Clone)]
pub struct NodeClient {
    http: SignedClient,
    key: Arc<SecretKey>,
}

impl NodeClient {
    pub fn new(http: SignedClient, key: Arc<SecretKey>) -> Self {
        Self { http, key }
    }

    /// One signed call to `node`; the JSON answer on 2xx.
    async fn call<R: DeserializeOwned>(
        &self,
        node: NodeAddr<'_>,
        call: Call<'_>,
    ) -> Result<R, NodeCallError> {
        let recipient = node.id.to_string();
        let signer = Signer::Member {
            key: &self.key,
            sender: auth::MARKETPLACE,
            recipient: &recipient,
        };
        Ok(self.http.call(call, signer).await?)
    }

    /// One signed call to `node`, answer ignored.
    async fn send(&self, node: NodeAddr<'_>, call: Call<'_>) -> Result<(), NodeCallError> {
        let recipient = node.id.to_string();
        let signer = Signer::Member {
            key: &self.key,
            sender: auth::MARKETPLACE,
            recipient: &recipient,
        };
        self.http.send(call, signer).await?;
        Ok(())
    }

    /// `POST /api/bid` to the auction's target node.
    pub async fn bid(
        &self,
        node: NodeAddr<'_>,
        req: &BidRequest,
        timeout: Duration,
    ) -> Result<BidResponse, NodeCallError> {
        let call = Call::post(node.url, "/api/bid")
            .route("/api/bid")
            .timeout(timeout)
            .json(req)?;
        self.call(node, call).await
    }

    /// `POST /api/accept/{slaId}`: turns the winner's hold into a reservation.
    pub async fn accept(
        &self,
        node: NodeAddr<'_>,
        req: &AcceptRequest,
        timeout: Duration,
    ) -> Result<AcceptResponse, NodeCallError> {
        let call = Call::post(node.url, format!("/api/accept/{}", req.sla.id))
            .route("/api/accept/{sla_id}")
            .timeout(timeout)
            .json(req)?;
        self.call(node, call).await
    }

    /// `POST /api/release`: frees losing holds (they would expire anyway).
    pub async fn release(
        &self,
        node: NodeAddr<'_>,
        bid_ids: Vec<BidId>,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        let call = Call::post(node.url, "/api/release")
            .route("/api/release")
            .timeout(timeout)
            .json(&ReleaseRequest { bid_ids })?;
        self.send(node, call).await
    }

    /// `POST /api/provision/{slaId}`; returns the node's answer (a placement with a `state`).
    pub async fn provision(
        &self,
        node: NodeAddr<'_>,
        sla: SlaId,
        timeout: Duration,
    ) -> Result<serde_json::Value, NodeCallError> {
        let call = Call::post(node.url, format!("/api/provision/{sla}"))
            .route("/api/provision/{sla_id}")
            .timeout(timeout);
        self.call(node, call).await
    }

    /// `DELETE /api/placement/{slaId}`: cancels, the node frees the resources.
    pub async fn cancel(
        &self,
        node: NodeAddr<'_>,
        sla: SlaId,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        let call = Call::new(Method::DELETE, node.url, format!("/api/placement/{sla}"))
            .route("/api/placement/{sla_id}")
            .timeout(timeout);
        self.send(node, call).await
    }
}
