//! Re-placement: a placement whose host died is auctioned again among the live nodes, under
//! its original SLA (the same data source and latency budget, what is left of its lifetime),
//! keeps its id and records where it went; when no node can take it, it is `degraded`, with
//! the reason, and tried again with backoff until its lifetime ends.

use super::market::Marketplace;
use super::placement::Replacing;
use crate::error::ServiceError;
use crate::repository::{ActivePlacement, NodeRecord, PlacementEvent, event};
use model::units::Lifetime;
use model::{NodeId, SlaId, Timestamp};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// The first pause before a degraded placement is tried again.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a degraded placement.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// What one healing step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealingReport {
    /// Placements moved to a new host (each lost copy counts once).
    pub moved: usize,
    /// Placements that no node could take this time.
    pub degraded: usize,
}

/// When each degraded placement may be tried again, and how many tries failed so far.
#[derive(Default)]
pub(super) struct Retries {
    next: Mutex<HashMap<SlaId, (Timestamp, usize)>>,
}

impl Retries {
    fn due(&self, sla: SlaId, now: Timestamp) -> bool {
        self.next.lock().get(&sla).is_none_or(|(at, _)| *at <= now)
    }

    fn failed(&self, sla: SlaId, now: Timestamp) -> Duration {
        let mut next = self.next.lock();
        let failures = next.get(&sla).map_or(0, |(_, n)| *n);
        let pause = supervisor::delays(FIRST_RETRY, MAX_RETRY)
            .nth(failures)
            .unwrap_or(MAX_RETRY);
        next.insert(sla, (now.plus(pause), failures + 1));
        pause
    }

    fn forget(&self, sla: SlaId) {
        self.next.lock().remove(&sla);
    }
}

impl Marketplace {
    /// Liveness step, second half: every active placement on a dead node is auctioned again
    /// (see the module documentation). Returns what moved and what could not.
    pub async fn replace_lost_placements(
        &self,
        now: Timestamp,
    ) -> Result<HealingReport, ServiceError> {
        // After a start every node counts as dead until it heartbeats: wait out the bound.
        if now < self.started_at.plus(self.silence()) {
            return Ok(HealingReport::default());
        }
        let nodes: HashMap<NodeId, NodeRecord> = self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let alive = |id: &NodeId| nodes.get(id).is_some_and(|n| n.alive);
        let mut by_sla: BTreeMap<SlaId, Vec<ActivePlacement>> = BTreeMap::new();
        for a in self.repo.active_placements().await? {
            by_sla.entry(a.placement.sla_id).or_default().push(a);
        }
        let mut report = HealingReport::default();
        for (sla_id, rows) in by_sla {
            let lost: Vec<&ActivePlacement> = rows
                .iter()
                .filter(|r| !alive(&r.placement.node_id))
                .collect();
            if lost.is_empty() {
                self.retries.forget(sla_id);
                continue;
            }
            let ends_at = lost
                .iter()
                .map(|r| r.placement.ends_at)
                .max()
                .unwrap_or(now);
            if ends_at <= now || !self.retries.due(sla_id, now) {
                continue;
            }
            match self
                .replace(sla_id, &rows, &lost, &nodes, ends_at, now)
                .await?
            {
                Ok(()) => {
                    self.retries.forget(sla_id);
                    report.moved += lost.len();
                    tracing::info!(sla_id = %sla_id, copies = lost.len(), "placement moved off a dead host");
                }
                Err(why) => {
                    let pause = self.retries.failed(sla_id, now);
                    report.degraded += 1;
                    tracing::warn!(sla_id = %sla_id, reason = %why, retry_in = ?pause, "placement degraded: no node can take it");
                    self.repo
                        .insert_event(&PlacementEvent {
                            sla_id,
                            at: now,
                            node_id: None,
                            event: event::DEGRADED.to_string(),
                            reason: why,
                        })
                        .await?;
                }
            }
        }
        if report.moved > 0 {
            self.bump_routes();
        }
        Ok(report)
    }

    /// One re-placement: the auction, then provisioning of the new hosts. Err(reason) when
    /// no node could take the lost copies.
    async fn replace(
        &self,
        sla_id: SlaId,
        rows: &[ActivePlacement],
        lost: &[&ActivePlacement],
        nodes: &HashMap<NodeId, NodeRecord>,
        ends_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<(), String>, ServiceError> {
        let Some(first) = rows.first() else {
            return Ok(Ok(()));
        };
        let target = match nodes.get(&first.target_node) {
            Some(t) if t.alive => t,
            Some(t) => {
                return Ok(Err(format!(
                    "the data source's node `{}` is dead: the latency budget cannot be checked from it",
                    t.name
                )));
            }
            None => return Ok(Err("the data source's node is no longer registered".into())),
        };
        // Every node that ever hosted this SLA is left out: the live copies stay where they
        // are, and a host that died keeps its record.
        let mut exclude: HashSet<NodeId> = self
            .repo
            .placements_for_sla(sla_id)
            .await?
            .iter()
            .map(|p| p.node_id)
            .collect();
        exclude.extend(rows.iter().map(|r| r.placement.node_id));
        let mut sla = first.sla.clone();
        sla.nodes = u32::try_from(lost.len()).unwrap_or(u32::MAX);
        let remaining = ends_at.since(now);
        sla.duration =
            Lifetime::from_millis(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX));
        let replacing = Replacing {
            ends_at,
            lost: lost
                .iter()
                .map(|r| {
                    let died = nodes
                        .get(&r.placement.node_id)
                        .map_or(now, |n| n.last_seen.min(now));
                    (r.placement.node_id, died)
                })
                .collect(),
            reason: "the host missed its heartbeats".to_string(),
        };
        if let Err(why) = self
            .replacement_auction(&sla, target, &exclude, &replacing, now)
            .await?
        {
            return Ok(Err(why));
        }
        let errors = self.provision_placements(sla_id, now).await?;
        for e in errors {
            tracing::warn!(sla_id = %sla_id, error = %e, "provisioning a moved placement failed");
        }
        Ok(Ok(()))
    }
}
