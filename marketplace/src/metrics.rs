//! Prometheus metrics of the marketplace (`GET /metrics`, text exposition format).
//!
//! One [`Registry`] per [`crate::service::Marketplace`] (so per [`crate::Application`]), never
//! the process-wide default: tests run several marketplaces in one process.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `fogmarket_auctions_total` | counter | `rule`, `outcome` (`placed`, `no_feasible_node`, `failed`) |
//! | `fogmarket_auction_bids` | histogram | bids received per auction |
//! | `fogmarket_placement_duration_seconds` | histogram | `PUT /api/function` start to the placement recorded |
//! | `fogmarket_refusals_total` | counter | `reason` (`out_of_capacity`, `latency_budget`, `over_max_price`, `declined`, `busy`, `unreachable`) |
//! | `fogmarket_winning_price` | histogram | price paid to each winner |
//! | `fogmarket_nodes` | gauge | `state` (`alive`, `dead`) |
//! | `fogmarket_placements` | gauge | `state` (`reserved`, `provisioning`, `live`, `failed`, `finished`, `cancelled`) |
//! | `fogmarket_http_requests_total` | counter | `route` (the route pattern, `unmatched` otherwise), `status` |
//!
//! Counters and histograms move as things happen; the two gauges are refreshed from the
//! database when scraped ([`crate::service::Marketplace::render_metrics`]).

use model::protocol::{PlacementState, RefusalReason};
use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// How an auction ended, as the `outcome` label of `fogmarket_auctions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuctionOutcome {
    /// Every wanted winner accepted; the placement(s) are recorded.
    Placed,
    /// Too few feasible bids, or too few winners accepted after the fallbacks.
    NoFeasibleNode,
    /// The auction started but could not finish (a database failure, …).
    Failed,
}

impl AuctionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuctionOutcome::Placed => "placed",
            AuctionOutcome::NoFeasibleNode => "no_feasible_node",
            AuctionOutcome::Failed => "failed",
        }
    }
}

/// The `reason` label of `fogmarket_refusals_total`.
pub fn refusal_label(reason: &RefusalReason) -> &'static str {
    match reason {
        RefusalReason::OutOfCapacity { .. } => "out_of_capacity",
        RefusalReason::LatencyBudget { .. } => "latency_budget",
        RefusalReason::OverMaxPrice { .. } => "over_max_price",
        RefusalReason::Declined { .. } => "declined",
        RefusalReason::Busy => "busy",
        RefusalReason::Unreachable { .. } => "unreachable",
    }
}

/// Every placement state, so that each `fogmarket_placements{state}` series exists (at 0).
const PLACEMENT_STATES: [PlacementState; 7] = [
    PlacementState::Reserved,
    PlacementState::Provisioning,
    PlacementState::Live,
    PlacementState::Failed,
    PlacementState::Finished,
    PlacementState::Cancelled,
    PlacementState::Moved,
];

/// The marketplace's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    auctions: IntCounterVec,
    auction_bids: Histogram,
    placement_duration: Histogram,
    refusals: IntCounterVec,
    winning_price: Histogram,
    nodes: IntGaugeVec,
    placements: IntGaugeVec,
    http_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        // Constant, valid definitions registered once in a fresh registry: these calls cannot
        // fail (nothing a request, a peer or the configuration says reaches them).
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric definition")
        };
        let m = Metrics {
            registry: Registry::new(),
            auctions: counter(
                "fogmarket_auctions_total",
                "Auctions run, by rule and outcome (placed, no_feasible_node, failed)",
                &["rule", "outcome"],
            ),
            auction_bids: histogram(
                "fogmarket_auction_bids",
                "Bids received per auction",
                vec![
                    0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0,
                ],
            ),
            placement_duration: histogram(
                "fogmarket_placement_duration_seconds",
                "Time from PUT /api/function to the placement being recorded (auction, accepts, \
                 fallbacks), without provisioning",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ],
            ),
            refusals: counter(
                "fogmarket_refusals_total",
                "Refusals collected by auctions, by reason",
                &["reason"],
            ),
            winning_price: histogram(
                "fogmarket_winning_price",
                "Price paid to each auction winner",
                vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0,
                    1000.0,
                ],
            ),
            nodes: gauge(
                "fogmarket_nodes",
                "Registered fog nodes, by liveness (alive, dead)",
                &["state"],
            ),
            placements: gauge(
                "fogmarket_placements",
                "Placements in the database, by state",
                &["state"],
            ),
            http_requests: counter(
                "fogmarket_http_requests_total",
                "HTTP requests answered, by route pattern and status code",
                &["route", "status"],
            ),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(m.auctions.clone()),
            Box::new(m.auction_bids.clone()),
            Box::new(m.placement_duration.clone()),
            Box::new(m.refusals.clone()),
            Box::new(m.winning_price.clone()),
            Box::new(m.nodes.clone()),
            Box::new(m.placements.clone()),
            Box::new(m.http_requests.clone()),
        ];
        for c in collectors {
            m.registry
                .register(c)
                .expect("distinct metric names in a fresh registry");
        }
        for state in ["alive", "dead"] {
            m.nodes.with_label_values(&[state]).set(0);
        }
        for state in PLACEMENT_STATES {
            m.placements.with_label_values(&[state.as_str()]).set(0);
        }
        m
    }

    /// Counts one finished auction with the number of bids it received.
    pub fn auction(&self, rule: &str, outcome: AuctionOutcome, bids: usize) {
        self.auctions
            .with_label_values(&[rule, outcome.as_str()])
            .inc();
        self.auction_bids.observe(bids as f64);
    }

    /// Counts the refusals an auction collected.
    pub fn refusals<'a>(&self, reasons: impl IntoIterator<Item = &'a RefusalReason>) {
        for r in reasons {
            self.refusals.with_label_values(&[refusal_label(r)]).inc();
        }
    }

    /// Records the price paid to one winner.
    pub fn winning_price(&self, price: f64) {
        if price.is_finite() {
            self.winning_price.observe(price);
        }
    }

    /// Records how long a successful `PUT /api/function` took to record its placement.
    pub fn placement_duration(&self, elapsed: Duration) {
        self.placement_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one answered HTTP request.
    pub fn http_request(&self, route: &str, status: u16) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Sets `fogmarket_nodes{state}`.
    pub fn set_nodes(&self, alive: u64, dead: u64) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.nodes.with_label_values(&["alive"]).set(g(alive));
        self.nodes.with_label_values(&["dead"]).set(g(dead));
    }

    /// Sets `fogmarket_placements{state}`; states not listed are 0.
    pub fn set_placements(&self, counts: &[(PlacementState, u64)]) {
        for state in PLACEMENT_STATES {
            let n = counts
                .iter()
                .filter(|(s, _)| *s == state)
                .map(|(_, n)| *n)
                .sum::<u64>();
            self.placements
                .with_label_values(&[state.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode metrics: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_even_before_anything_happened() {
        let m = Metrics::new();
        // Vectors without a series yet are not exposed: touch one series of each.
        m.auction("vickrey", AuctionOutcome::Placed, 3);
        m.refusals([&RefusalReason::Busy]);
        m.http_request("/api/health", 200);
        let text = m.render();
        for name in [
            "fogmarket_auctions_total",
            "fogmarket_auction_bids",
            "fogmarket_placement_duration_seconds",
            "fogmarket_refusals_total",
            "fogmarket_winning_price",
            "fogmarket_nodes",
            "fogmarket_placements",
            "fogmarket_http_requests_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in\n{text}"
            );
        }
        assert!(
            text.contains(r#"fogmarket_placements{state="cancelled"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fogmarket_nodes{state="dead"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn two_registries_do_not_share_counts() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.auction("vickrey", AuctionOutcome::Placed, 1);
        assert!(
            a.render()
                .contains(r#"fogmarket_auctions_total{outcome="placed",rule="vickrey"} 1"#)
        );
        assert!(!b.render().contains(r#"outcome="placed""#));
    }

    #[test]
    fn placement_gauges_are_set_per_state_and_reset_to_zero() {
        let m = Metrics::new();
        m.set_placements(&[(PlacementState::Live, 2), (PlacementState::Reserved, 1)]);
        let text = m.render();
        assert!(
            text.contains(r#"fogmarket_placements{state="live"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fogmarket_placements{state="reserved"} 1"#),
            "{text}"
        );
        m.set_placements(&[]);
        assert!(
            m.render()
                .contains(r#"fogmarket_placements{state="live"} 0"#)
        );
    }

    #[test]
    fn refusal_reasons_have_snake_case_labels() {
        assert_eq!(
            refusal_label(&RefusalReason::Unreachable { error: "x".into() }),
            "unreachable"
        );
        assert_eq!(
            refusal_label(&RefusalReason::LatencyBudget {
                estimated_ms: 1.0,
                max_ms: 0.5
            }),
            "latency_budget"
        );
    }
}
