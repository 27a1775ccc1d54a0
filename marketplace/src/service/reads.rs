//! The client API's reads (a function, the caller's functions, an auction), each limited to
//! what the caller owns.

use super::market::Marketplace;
use crate::clients::Caller;
use crate::error::ServiceError;
use crate::repository::{AuctionRecord, SlaRecord};
use crate::views::{self, AuctionView, FunctionRecords, FunctionView};
use model::{AuctionId, SlaId};
use std::collections::HashMap;

impl Marketplace {
    /// The SLA `sla` if `caller` may see it. Another client's SLA is `NotFound`, exactly like
    /// one that does not exist, so ids do not reveal what others placed.
    pub(super) async fn visible_sla(
        &self,
        caller: &Caller,
        sla: SlaId,
    ) -> Result<SlaRecord, ServiceError> {
        match self.repo.sla(sla).await? {
            Some(record) if caller.may_access(record.owner) => Ok(record),
            _ => Err(ServiceError::NotFound {
                what: "function",
                id: sla.to_string(),
            }),
        }
    }

    /// `GET /api/function/{id}`: the caller's function (another client's is `NotFound`).
    pub async fn function(
        &self,
        caller: &Caller,
        sla: SlaId,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        self.view(sla).await
    }

    /// A function and its placements, whoever owns it.
    pub(super) async fn view(&self, sla: SlaId) -> Result<FunctionView, ServiceError> {
        let record = self
            .repo
            .sla(sla)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: "function",
                id: sla.to_string(),
            })?;
        let auction = self.repo.auction_for_sla(sla).await?;
        let bids = match &auction {
            Some(a) => self.repo.bids(a.id).await?,
            None => Vec::new(),
        };
        let placements = self.repo.placements_for_sla(sla).await?;
        let target = self.repo.node_by_id(record.target_node).await?;
        let mut hosts = HashMap::new();
        for p in &placements {
            if let Some(n) = self.repo.node_by_id(p.node_id).await? {
                hosts.insert(n.id, n);
            }
        }
        Ok(views::function_view(FunctionRecords {
            sla: record,
            auction,
            bids,
            placements,
            target,
            hosts,
            events: self.repo.events_for_sla(sla).await?,
        }))
    }

    /// `GET /api/functions`: the caller's functions (in open mode every function), oldest
    /// first.
    pub async fn functions(&self, caller: &Caller) -> Result<Vec<FunctionView>, ServiceError> {
        let slas = match caller.owner() {
            Some(owner) => self.repo.list_slas_owned_by(owner).await?,
            None => self.repo.list_slas().await?,
        };
        let mut out = Vec::new();
        for s in slas {
            out.push(self.view(s.sla.id).await?);
        }
        Ok(out)
    }

    /// `GET /api/auctions/{id}`: an auction of one of the caller's SLAs (another client's is
    /// `NotFound`).
    pub async fn auction(
        &self,
        caller: &Caller,
        id: AuctionId,
    ) -> Result<AuctionView, ServiceError> {
        let not_found = || ServiceError::NotFound {
            what: "auction",
            id: id.to_string(),
        };
        let a: AuctionRecord = self.repo.auction(id).await?.ok_or_else(not_found)?;
        let owner = self.repo.sla(a.sla_id).await?.and_then(|s| s.owner);
        if !caller.may_access(owner) {
            return Err(not_found());
        }
        let bids = self.repo.bids(id).await?;
        let placements = self.repo.placements_for_sla(a.sla_id).await?;
        Ok(views::auction_view(a, bids, &placements))
    }
}
