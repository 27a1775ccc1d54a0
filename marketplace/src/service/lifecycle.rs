//! Placements after their auction: provisioning on the hosting nodes, cancellation, the end of
//! their lifetime, and the purge of history that is over.

use super::market::Marketplace;
use crate::clients::Caller;
use crate::error::ServiceError;
use crate::node_client::{NodeAddr, NodeCallError};
use crate::repository::{NodeRecord, PlacementRecord, PlacementState, RepoError};
use crate::views::FunctionView;
use model::{SlaId, Timestamp};
use std::time::Duration;

/// Timeout of the best-effort calls (release, cancel, provision).
pub(super) const SIDE_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A node deploys the function and waits for it to be ready (its own deadline, 30 s by
/// default) before it answers a provisioning call.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(65);

/// A node's answer to `POST /api/provision/{slaId}`: its placement with `state`, and
/// `invokeUrl` once live or `error` when the deployment failed. Our state is `live` or `failed`
/// when the node says so, `provisioning` otherwise.
fn provisioned(answer: &serde_json::Value) -> (PlacementState, Option<String>, Option<String>) {
    let text = |k: &str| answer.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let reported = answer
        .get("state")
        .and_then(|s| serde_json::from_value::<PlacementState>(s.clone()).ok());
    let state = match reported {
        Some(s @ (PlacementState::Live | PlacementState::Failed)) => s,
        _ => PlacementState::Provisioning,
    };
    (state, text("invokeUrl"), text("error"))
}

impl Marketplace {
    /// Tells the route pollers about placement updates made so far, then returns `e`: a
    /// failure part-way leaves the earlier updates committed.
    fn updates_then_fail(&self, changed: bool, e: RepoError) -> ServiceError {
        if changed {
            self.bump_routes();
        }
        e.into()
    }

    /// Asks every reserved placement's node to provision; returns the failed calls.
    pub(super) async fn provision_placements(
        &self,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<Vec<String>, ServiceError> {
        let placements = self.repo.placements_for_sla(sla).await?;
        let mut targets: Vec<(PlacementRecord, NodeRecord)> = Vec::new();
        for p in placements.into_iter().filter(|p| {
            matches!(
                p.state,
                PlacementState::Reserved | PlacementState::Provisioning
            )
        }) {
            if let Some(n) = self.repo.node_by_id(p.node_id).await? {
                targets.push((p, n));
            }
        }
        let calls = targets.iter().map(|(_, n)| async move {
            let node = NodeAddr {
                id: n.id,
                url: &n.url,
            };
            self.nodes.provision(node, sla, PROVISION_TIMEOUT).await
        });
        let results = futures::future::join_all(calls).await;
        let mut errors = Vec::new();
        let mut changed = false;
        for ((p, n), r) in targets.iter().zip(results) {
            let (state, invoke_url, error) = match r {
                Ok(answer) => provisioned(&answer),
                Err(
                    e @ (NodeCallError::Refused(_) | NodeCallError::Status { status: 404, .. }),
                ) => (PlacementState::Failed, None, Some(e.to_string())),
                Err(e) => {
                    errors.push(format!("node `{}`: {e}", n.name));
                    continue;
                }
            };
            if let Some(e) = &error {
                errors.push(format!("node `{}`: {e}", n.name));
            }
            changed |= self
                .repo
                .set_placement_provisioned(
                    sla,
                    p.node_id,
                    state,
                    invoke_url.as_deref(),
                    error.as_deref(),
                    now,
                )
                .await
                .map_err(|e| self.updates_then_fail(changed, e))?;
        }
        if changed {
            self.bump_routes();
        }
        Ok(errors)
    }

    /// `POST /api/function/{id}`: provisions a reserved placement (GIRAFF's second step).
    /// Only the owner may (another client's id is `NotFound`).
    #[tracing::instrument(skip_all, fields(sla_id = %sla))]
    pub async fn provision(
        &self,
        caller: &Caller,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        let view = self.view(sla).await?;
        if !view.winners.iter().any(|w| w.state.is_active()) {
            return Err(ServiceError::InvalidState(format!(
                "function {sla} has no active placement to provision (state {})",
                view.state
            )));
        }
        let errors = self.provision_placements(sla, now).await?;
        if !errors.is_empty() {
            return Err(ServiceError::NodeCallFailed(format!(
                "provisioning failed on {} node(s): {}",
                errors.len(),
                errors.join("; ")
            )));
        }
        self.view(sla).await
    }

    /// `DELETE /api/function/{id}`: cancels on every hosting node and marks the placements
    /// `cancelled`. Unreachable nodes free the resources when the lifetime ends anyway. Only
    /// the owner may (another client's id is `NotFound`).
    #[tracing::instrument(skip_all, fields(sla_id = %sla))]
    pub async fn cancel(
        &self,
        caller: &Caller,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        let mut targets = Vec::new();
        for p in self
            .repo
            .placements_for_sla(sla)
            .await?
            .into_iter()
            .filter(|p| p.state.is_active())
        {
            let node = self.repo.node_by_id(p.node_id).await?;
            targets.push((p, node));
        }
        let calls = targets.iter().map(|(_, n)| async move {
            match n {
                Some(n) => self
                    .nodes
                    .cancel(
                        NodeAddr {
                            id: n.id,
                            url: &n.url,
                        },
                        sla,
                        SIDE_CALL_TIMEOUT,
                    )
                    .await
                    .map_err(|e| format!("node `{}`: {e}", n.name)),
                None => Ok(()),
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut errors = Vec::new();
        let mut changed = false;
        for ((p, _), r) in targets.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cancel call failed; the node frees at end of lifetime");
                errors.push(e);
            }
            changed |= self
                .repo
                .set_placement_state(sla, p.node_id, PlacementState::Cancelled, now)
                .await
                .map_err(|e| self.updates_then_fail(changed, e))?;
        }
        if changed {
            self.bump_routes();
        }
        let mut view = self.view(sla).await?;
        view.errors = errors;
        Ok(view)
    }

    /// Lifetime step: placements whose `ends_at` passed become `finished` (each node frees its
    /// own resources at the same time).
    pub async fn finish_due_placements(&self, now: Timestamp) -> Result<u64, ServiceError> {
        let n = self.repo.finish_due_placements(now).await?;
        if n > 0 {
            self.bump_routes();
            tracing::info!(count = n, "placements reached the end of their lifetime");
        }
        Ok(n)
    }

    /// Retention step: deletes SLAs that have been over for longer than `retention`, with their
    /// auctions, bids and placements, so the history does not grow forever.
    pub async fn purge_history(
        &self,
        now: Timestamp,
        retention: Duration,
    ) -> Result<u64, ServiceError> {
        let cutoff = Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(retention.as_millis().min(u64::MAX as u128) as u64),
        );
        let n = self.repo.purge_history(cutoff).await?;
        if n > 0 {
            tracing::info!(count = n, "deleted SLAs older than the history retention");
        }
        Ok(n)
    }
}
