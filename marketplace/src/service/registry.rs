//! The node registry: enrolment (`POST /api/register`), signed heartbeats with the neighbours
//! they answer, the list of nodes, and the liveness step that marks silent nodes dead.

use super::market::Marketplace;
use super::validation::{check_registration, check_url, parse_body};
use crate::error::ServiceError;
use crate::repository::{HeartbeatOutcome, NodeRecord, RepoError};
use crate::views::FogNodeView;
use model::protocol::{
    HeartbeatRequest, HeartbeatResponse, Neighbour, RegisterRequest, RegisterResponse, Relation,
    Resources,
};
use model::{FieldError, NodeId, Timestamp};
use std::time::Duration;

/// A node silent for this many heartbeat intervals is marked dead.
pub const MISSED_HEARTBEATS: u32 = 3;

impl Marketplace {
    /// `POST /api/register`: signed with the enrollment secret by the node's name, carrying
    /// the node's public key. The first registration of a name pins that key to the name and
    /// to the node id; a later one must come with the same key (and the same owner), or it is
    /// refused with 409 and changes nothing.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<RegisterResponse, ServiceError> {
        let sender = self.signatures.enrolled_sender(authorization, body, now)?;
        let req: RegisterRequest = parse_body(body, "RegisterRequest")?;
        if sender != req.name {
            return Err(ServiceError::Unauthorized(format!(
                "signed by `{sender}` but registers `{}`",
                req.name
            )));
        }
        check_registration(&req)?;

        let existing = self.repo.node_by_name(&req.name).await?;
        if let Some(n) = &existing {
            same_node(n, &req)?;
        }
        let id = match (&existing, req.node_id) {
            (Some(n), _) => n.id,
            (None, Some(wanted)) => match self.repo.node_by_id(wanted).await? {
                Some(other) => {
                    return Err(ServiceError::Conflict(format!(
                        "node id {wanted} already belongs to node `{}`",
                        other.name
                    )));
                }
                None => wanted,
            },
            (None, None) => NodeId::new(),
        };
        let record = NodeRecord {
            id,
            name: req.name.clone(),
            owner: req.owner.clone(),
            tags: req.tags.clone(),
            parent: req.parent.clone(),
            url: req.url.clone(),
            capacity: req.capacity,
            reserved: existing.as_ref().map_or(Resources::ZERO, |n| n.reserved),
            last_seen: now,
            alive: true,
            registered_at: existing.as_ref().map_or(now, |n| n.registered_at),
            public_key: Some(req.public_key),
        };
        self.repo.upsert_node(&record).await.map_err(|e| match e {
            RepoError::Conflict(m) => ServiceError::Conflict(m),
            e => e.into(),
        })?;
        self.signatures.pin(id, req.public_key);
        self.bump_routes();
        tracing::info!(node_id = %id, name = %req.name, url = %req.url, "node registered");
        let marketplace_key = self.key.public();
        Ok(RegisterResponse {
            node_id: id,
            marketplace_key,
            proof: self
                .signatures
                .enrolment_proof(id, &req.public_key, &marketplace_key),
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
        })
    }

    /// `POST /api/heartbeat/{nodeId}`: signed by that node's own key (no other node may
    /// heartbeat, move or report reservations in its name).
    #[tracing::instrument(skip_all, fields(node_id = %node_id))]
    pub async fn heartbeat(
        &self,
        node_id: &str,
        authorization: Option<&str>,
        path: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<HeartbeatResponse, ServiceError> {
        let id: NodeId = node_id.parse().map_err(|e| {
            ServiceError::InvalidRequest(FieldError::new("nodeId", format!("not a UUID: {e}")))
        })?;
        let sender = self
            .signed_by_node(authorization, "POST", path, body, now)
            .await?;
        if sender != id {
            return Err(ServiceError::Forbidden(format!(
                "signed by node {sender}, which may only heartbeat as itself, not as node {id}"
            )));
        }
        let req: HeartbeatRequest = parse_body(body, "HeartbeatRequest")?;
        if let Some(url) = &req.url {
            check_url("url", url)?;
        }
        match self
            .repo
            .record_heartbeat(id, req.reserved, req.url.as_deref(), now)
            .await?
        {
            HeartbeatOutcome::Unknown => {
                return Err(ServiceError::NotFound {
                    what: "node",
                    id: id.to_string(),
                });
            }
            HeartbeatOutcome::Changed => {
                tracing::info!("node is alive again or moved");
                self.bump_routes();
            }
            HeartbeatOutcome::Unchanged => {}
        }
        let all = self.repo.list_nodes().await?;
        let neighbours = match all.iter().find(|n| n.id == id) {
            None => Vec::new(),
            Some(me) => neighbours_of(me, &all),
        };
        let released = self.repo.moved_away_from(id).await?;
        Ok(HeartbeatResponse {
            neighbours,
            released,
        })
    }

    /// Every node, by name.
    pub async fn fog(&self) -> Result<Vec<FogNodeView>, ServiceError> {
        Ok(self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .map(FogNodeView::from)
            .collect())
    }

    /// How long a node may stay silent before it counts as dead: [`MISSED_HEARTBEATS`]
    /// heartbeat intervals.
    pub(super) fn silence(&self) -> Duration {
        self.heartbeat_interval
            .checked_mul(MISSED_HEARTBEATS)
            .unwrap_or(Duration::MAX)
    }

    /// Liveness step: nodes silent for [`MISSED_HEARTBEATS`] intervals become `alive = false`.
    /// Their placements move with [`Marketplace::replace_lost_placements`].
    pub async fn mark_silent_nodes_dead(&self, now: Timestamp) -> Result<u64, ServiceError> {
        let silence = self.silence();
        let silence_ms = u64::try_from(silence.as_millis()).unwrap_or(u64::MAX);
        let cutoff = Timestamp::from_millis(now.as_millis().saturating_sub(silence_ms));
        let n = self.repo.mark_nodes_dead_since(cutoff).await?;
        if n > 0 {
            self.bump_routes();
            tracing::warn!(
                count = n,
                "nodes missed {MISSED_HEARTBEATS} heartbeats: marked dead"
            );
        }
        Ok(n)
    }
}

/// A registration of an already enrolled name must come with the pinned key and the same
/// owner.
fn same_node(n: &NodeRecord, req: &RegisterRequest) -> Result<(), ServiceError> {
    if let Some(pinned) = n.public_key
        && pinned != req.public_key
    {
        return Err(ServiceError::Conflict(format!(
            "node `{}` is enrolled under another key; a node keeps its key \
             (its state directory), or an operator removes it first",
            req.name
        )));
    }
    if n.owner != req.owner {
        return Err(ServiceError::Conflict(format!(
            "node `{}` belongs to owner `{}`, not `{}`",
            req.name, n.owner, req.owner
        )));
    }
    Ok(())
}

/// `me`'s parent and children among `all`, as a heartbeat answers them.
fn neighbours_of(me: &NodeRecord, all: &[NodeRecord]) -> Vec<Neighbour> {
    all.iter()
        .filter_map(|n| {
            let relation = if me.parent.as_deref() == Some(n.name.as_str()) {
                Relation::Parent
            } else if n.parent.as_deref() == Some(me.name.as_str()) {
                Relation::Child
            } else {
                return None;
            };
            // A node enrolled before keys existed has none: it cannot be verified, so it is
            // nobody's neighbour until it enrols again.
            let public_key = n.public_key?;
            (n.id != me.id).then(|| Neighbour {
                node_id: n.id,
                name: n.name.clone(),
                url: n.url.clone(),
                public_key,
                relation,
                alive: n.alive,
                tags: n.tags.clone(),
            })
        })
        .collect()
}
