//! The node's placements and its resource ledger, kept together in one [`Book`] so that they
//! never disagree.

use crate::error::ApiError;
use model::Sla;
use model::ids::{BidId, SlaId};
use model::ledger::Ledger;
use model::protocol::{PlacementState, Resources};
use model::time::Timestamp;
use model::units::Price;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long finished or cancelled placements stay visible in `GET /api/state`.
pub const FINISHED_RETENTION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub sla_id: SlaId,
    pub bid_id: BidId,
    pub function_name: String,
    pub sla: Sla,
    /// The OpenFaaS service name once deployed (`fogfn-<slaId>`).
    #[serde(default)]
    pub deployed_as: Option<String>,
    /// Where the function is invoked once live.
    #[serde(default)]
    pub invoke_url: Option<String>,
    /// Why provisioning failed.
    #[serde(default)]
    pub error: Option<String>,
    pub resources: Resources,
    pub price: Price,
    pub state: PlacementState,
    pub accepted_at: Timestamp,
    pub ends_at: Timestamp,
    /// When the placement left the ledger (finished or cancelled).
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
}

/// The ledger and the placements, kept consistent under one lock.
#[derive(Debug)]
pub struct Book {
    pub ledger: Ledger,
    pub placements: BTreeMap<SlaId, Placement>,
}

impl Book {
    /// The placement of `sla_id` while it is active (not closed); `NotFound` otherwise.
    pub fn active_mut(&mut self, sla_id: SlaId) -> Result<&mut Placement, ApiError> {
        self.placements
            .get_mut(&sla_id)
            .filter(|p| p.closed_at.is_none())
            .ok_or_else(|| ApiError::NotFound(format!("no active placement for SLA {sla_id}")))
    }
}
