//! Who signed a request to the marketplace: the enrolment secret for registrations, each node's
//! own pinned key for everything else a node sends, and the client tokens of the client API.

use crate::clients::{AuthenticateError, Caller, ClientGate};
use crate::error::ServiceError;
use crate::repository::Repository;
use model::auth::{self, PublicKey, RequestTarget};
use model::{NodeId, Timestamp};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Signatures older (or newer) than this are refused.
pub const MAX_SIGNATURE_SKEW: Duration = auth::MAX_SKEW;

/// The path a registration is signed for.
const REGISTER_PATH: &str = "/api/register";

pub(super) fn unauthorized(e: auth::AuthError) -> ServiceError {
    ServiceError::Unauthorized(e.to_string())
}

/// Checks members' signatures addressed to the marketplace. Shared by every clone of the
/// service.
pub(super) struct Signatures {
    /// Checks signatures (recipient, time) and refuses replayed nonces.
    guard: auth::Guard,
    /// The pinned key of every enrolled node, loaded from the database on first use.
    node_keys: RwLock<HashMap<NodeId, PublicKey>>,
    enrollment_secret: Vec<u8>,
}

impl Signatures {
    pub(super) fn new(enrollment_secret: String) -> Self {
        Self {
            guard: auth::Guard::new(auth::MARKETPLACE),
            node_keys: RwLock::default(),
            enrollment_secret: enrollment_secret.into_bytes(),
        }
    }

    /// The name a registration is signed by, with the enrolment secret.
    pub(super) fn enrolled_sender(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<String, ServiceError> {
        auth::enrollment::verify(
            &self.enrollment_secret,
            authorization,
            now,
            MAX_SIGNATURE_SKEW,
            "POST",
            REGISTER_PATH,
            body,
        )
        .map_err(unauthorized)
    }

    /// The proof, answered to a registration, that the marketplace knows the enrolment secret
    /// and binds `node`'s key to its id and to the marketplace's key.
    pub(super) fn enrolment_proof(
        &self,
        node: NodeId,
        node_key: &PublicKey,
        marketplace_key: &PublicKey,
    ) -> String {
        auth::enrollment::ack_proof(
            &self.enrollment_secret,
            &node.to_string(),
            node_key,
            marketplace_key,
        )
    }

    /// Pins `key` to `node` for the signatures that follow.
    pub(super) fn pin(&self, node: NodeId, key: PublicKey) {
        self.node_keys.write().insert(node, key);
    }

    /// The key pinned to `node`, from the cache or the database.
    async fn node_key(
        &self,
        repo: &Repository,
        node: NodeId,
    ) -> Result<Option<PublicKey>, ServiceError> {
        if let Some(k) = self.node_keys.read().get(&node) {
            return Ok(Some(*k));
        }
        let Some(record) = repo.node_by_id(node).await? else {
            return Ok(None);
        };
        let Some(key) = record.public_key else {
            return Ok(None);
        };
        self.pin(node, key);
        Ok(Some(key))
    }

    /// The enrolled node that signed a request to the marketplace (signature, recipient, time
    /// and nonce checked).
    pub(super) async fn signed_by_node(
        &self,
        repo: &Repository,
        authorization: Option<&str>,
        req: &RequestTarget<'_>,
        now: Timestamp,
    ) -> Result<NodeId, ServiceError> {
        let claim = auth::parse(authorization).map_err(unauthorized)?;
        let node: NodeId = claim.sender.parse().map_err(|_| {
            ServiceError::Unauthorized(format!(
                "signed by `{}`, which is not a node id",
                claim.sender
            ))
        })?;
        let key = self.node_key(repo, node).await?;
        self.guard
            .check(authorization, now, req, |_| key)
            .map_err(unauthorized)?;
        Ok(node)
    }
}

/// The caller of a client API request: with tokens required, the client whose
/// `Authorization: Bearer` token it carries (401 otherwise); in open mode nobody.
pub(super) async fn authenticate_client(
    gate: &ClientGate,
    repo: &Repository,
    authorization: Option<&str>,
    peer: Option<IpAddr>,
) -> Result<Caller, ServiceError> {
    gate.authenticate(repo, authorization, peer)
        .await
        .map_err(|e| match e {
            AuthenticateError::Token(t) => ServiceError::ClientToken(t),
            AuthenticateError::Repo(r) => ServiceError::Repo(r),
        })
}
