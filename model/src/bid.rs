//! A fog node's answer to an SLA about itself: what serving it needs, what the node's pricing
//! asks for it, and why the node may not bid (too far from the data source, not enough free
//! capacity, dearer than the client's cap). The fog node's bidding and the simulator both call
//! [`assess`], so a simulated node prices and refuses exactly as a real one.

use crate::ids::NodeId;
use crate::latency::{PathLatency, check_budget};
use crate::ledger::Ledger;
use crate::pricing::{PricingConfig, PricingInput};
use crate::protocol::{RefusalReason, Resources};
use crate::time::Timestamp;
use crate::{Price, Sla};

/// What a node found about itself for one SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The resources of every replica the SLA asks for.
    pub needs: Resources,
    /// The node's price for them, over the SLA's lifetime.
    pub price: Price,
    /// `None` when the node can bid.
    pub refusal: Option<RefusalReason>,
}

/// Assesses `sla` at node `me`, whose ledger is `ledger` and pricing `pricing`, reached over a
/// path of latency `acc` from the data source, at `now`. The checks run in this order: the
/// latency budget (with `sigma_margin` standard deviations of margin), the free capacity, the
/// client's price cap.
pub fn assess(
    ledger: &Ledger,
    pricing: &PricingConfig,
    sla: &Sla,
    me: NodeId,
    acc: &PathLatency,
    sigma_margin: f64,
    now: Timestamp,
) -> Assessment {
    let needs = Resources::for_sla(sla);
    let free = ledger.free(now);
    let committed = ledger.commitments(now);
    let price = pricing.price(&PricingInput {
        request: needs,
        capacity: ledger.capacity(),
        committed: &committed,
        duration: sla.duration.as_duration(),
        is_data_source: sla.has_data_source(me),
    });
    let refusal = if let Err(reason) = check_budget(
        acc,
        sla.input_max_size,
        sla.latency_max,
        sla.latency_kind,
        sigma_margin,
    ) {
        Some(reason.into())
    } else if !needs.fits_in(&free) {
        Some(RefusalReason::OutOfCapacity {
            needed: needs,
            free,
        })
    } else {
        match sla.max_price {
            Some(max_price) if price > max_price => Some(RefusalReason::OverMaxPrice {
                bid: price,
                max_price,
            }),
            _ => None,
        }
    };
    Assessment {
        needs,
        price,
        refusal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BidId, SlaId};
    use crate::units::{Bytes, Cpu};
    use serde_json::json;
    use std::time::Duration;

    fn sla(extra: serde_json::Value) -> Sla {
        let mut body = json!({
            "memory": "256 MB", "cpu": "500 millicpu", "latencyMax": "50 ms",
            "duration": "30 s", "replicas": 2, "functionImage": "echo",
            "functionLiveName": "echo", "dataFlow": [], "envVars": {}, "inputMaxSize": "1 KB"
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Sla::from_json(&body, SlaId::new(), "sla").unwrap()
    }

    fn ledger(cpu_millis: u64) -> Ledger {
        Ledger::new(Resources::new(
            Cpu::from_millis(cpu_millis),
            Bytes::from_mib(4096),
        ))
    }

    fn near() -> PathLatency {
        PathLatency::from_latency(crate::units::Latency::from_millis(5))
    }

    #[test]
    fn a_node_near_enough_with_room_bids_its_pricing_models_price() {
        let (l, p, s) = (ledger(4000), PricingConfig::default(), sla(json!({})));
        let now = Timestamp::from_millis(0);
        let a = assess(&l, &p, &s, NodeId::new(), &near(), 0.0, now);
        assert_eq!(a.refusal, None);
        assert_eq!(a.needs, Resources::for_sla(&s));
        let committed = l.commitments(now);
        let expected = p.price(&PricingInput {
            request: a.needs,
            capacity: l.capacity(),
            committed: &committed,
            duration: Duration::from_secs(30),
            is_data_source: false,
        });
        assert_eq!(a.price, expected);
    }

    #[test]
    fn distance_is_checked_before_capacity_and_capacity_before_price() {
        let now = Timestamp::from_millis(0);
        let p = PricingConfig::default();
        let far = PathLatency::from_latency(crate::units::Latency::from_millis(80));
        let small = ledger(500);
        let s = sla(json!({}));
        let a = assess(&small, &p, &s, NodeId::new(), &far, 0.0, now);
        assert!(
            matches!(a.refusal, Some(RefusalReason::LatencyBudget { .. })),
            "{a:?}"
        );
        let a = assess(&small, &p, &s, NodeId::new(), &near(), 0.0, now);
        assert!(
            matches!(a.refusal, Some(RefusalReason::OutOfCapacity { .. })),
            "{a:?}"
        );
        let cheap = sla(json!({"maxPrice": 0.0000001}));
        let a = assess(&ledger(4000), &p, &cheap, NodeId::new(), &near(), 0.0, now);
        assert!(
            matches!(a.refusal, Some(RefusalReason::OverMaxPrice { .. })),
            "{a:?}"
        );
    }

    #[test]
    fn held_resources_count_against_the_free_capacity() {
        let now = Timestamp::from_millis(0);
        let mut l = ledger(1500);
        let s = sla(json!({}));
        l.try_hold(
            BidId::new(),
            Resources::new(Cpu::from_millis(1000), Bytes::from_mib(1)),
            Timestamp::from_millis(1000),
            now,
        )
        .unwrap();
        let a = assess(
            &l,
            &PricingConfig::default(),
            &s,
            NodeId::new(),
            &near(),
            0.0,
            now,
        );
        assert!(
            matches!(a.refusal, Some(RefusalReason::OutOfCapacity { .. })),
            "{a:?}"
        );
    }
}
