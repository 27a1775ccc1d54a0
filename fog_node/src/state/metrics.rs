//! The Prometheus metrics of run-time offloading behind `GET /metrics` (one registry per
//! node, so several nodes share a process in tests).
//!
//! Hot-path handles (per function and outcome) are resolved once per function and kept in
//! its state; gauges of queue length, in-flight calls, arrival rate and capacity are set from
//! the live state when scraped.

use model::ids::NodeId;
use model::offload::Weights;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Duration;

/// What happened to one invocation at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Local,
    Forwarded,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Local => "local",
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    forwarded: IntCounterVec,
    rejected: IntCounterVec,
    queue_length: IntGaugeVec,
    in_flight: IntGaugeVec,
    duration: HistogramVec,
    weight: IntGaugeVec,
    arrival_rate: GaugeVec,
    capacity: GaugeVec,
}

/// Per-function hot-path handles, resolved at the function's first invocation here (so a
/// federation-wide route table creates no series for functions this node never sees).
#[derive(Default)]
pub struct FunctionMetrics {
    handles: OnceLock<Handles>,
}

struct Handles {
    invocations: [IntCounter; 3],
    durations: [Histogram; 3],
}

impl FunctionMetrics {
    /// Counts one invocation of `function` with its outcome and duration.
    pub fn observe(&self, m: &Metrics, function: &str, outcome: Outcome, elapsed: Duration) {
        let h = self.handles.get_or_init(|| Handles {
            invocations: OUTCOMES.map(|o| m.invocations.with_label_values(&[function, o.as_str()])),
            durations: OUTCOMES.map(|o| m.duration.with_label_values(&[function, o.as_str()])),
        });
        let i = outcome as usize;
        h.invocations[i].inc();
        h.durations[i].observe(elapsed.as_secs_f64());
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Local, Outcome::Forwarded, Outcome::Rejected];

/// Latency buckets from 1 ms to 30 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // Constant, valid definitions: these constructors cannot fail.
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
        };
        let m = Metrics {
            registry: Registry::new(),
            invocations: counter(
                "fogmarket_invocations_total",
                "Invocations answered by this node, by outcome (local, forwarded, rejected)",
                &["function", "outcome"],
            ),
            forwarded: counter(
                "fogmarket_forwarded_total",
                "Invocations this node forwarded, by peer",
                &["function", "peer"],
            ),
            rejected: counter(
                "fogmarket_rejected_total",
                "Invocations this node rejected, by reason",
                &["function", "reason"],
            ),
            queue_length: int_gauge(
                "fogmarket_queue_length",
                "Requests waiting in the local queue",
                &["function"],
            ),
            in_flight: int_gauge(
                "fogmarket_in_flight",
                "Local calls in flight",
                &["function"],
            ),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "fogmarket_invocation_duration_seconds",
                    "Time to answer an invocation at this node, by outcome",
                )
                .buckets(BUCKETS.to_vec()),
                &["function", "outcome"],
            )
            .expect("valid metric definition"),
            weight: int_gauge(
                "fogmarket_weight",
                "Current weight per mille, by target (local, reject or a peer name)",
                &["function", "target"],
            ),
            arrival_rate: gauge(
                "fogmarket_arrival_rate",
                "Client and access requests per second arriving here (sliding window)",
                &["function"],
            ),
            capacity: gauge(
                "fogmarket_capacity",
                "Requests per second the function sustains here (configured or learned)",
                &["function"],
            ),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(m.invocations.clone()),
            Box::new(m.forwarded.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.queue_length.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.weight.clone()),
            Box::new(m.arrival_rate.clone()),
            Box::new(m.capacity.clone()),
        ];
        for c in collectors {
            if let Err(e) = m.registry.register(c) {
                tracing::error!(error = %e, "cannot register an offload metric");
            }
        }
        m
    }

    /// Invocations answered by this node since it started, over every function, by outcome
    /// (the dashboard turns successive samples into rates).
    pub fn totals(&self) -> Totals {
        use prometheus::core::Collector;
        let mut t = Totals::default();
        for family in self.invocations.collect() {
            for m in family.get_metric() {
                let outcome = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "outcome")
                    .map(|l| l.value().to_string());
                let n = m.get_counter().get_value() as u64;
                match outcome.as_deref() {
                    Some("local") => t.served += n,
                    Some("forwarded") => t.forwarded += n,
                    Some("rejected") => t.rejected += n,
                    _ => {}
                }
            }
        }
        t
    }

    pub fn count_forward(&self, function: &str, peer: &str) {
        self.forwarded.with_label_values(&[function, peer]).inc();
    }

    pub fn count_reject(&self, function: &str, reason: &str) {
        self.rejected.with_label_values(&[function, reason]).inc();
    }

    /// Sets the weight gauges of `function` to `new`, zeroing targets `old` had and `new`
    /// lacks. `name` gives a peer's name.
    pub fn set_weights(
        &self,
        function: &str,
        old: &Weights,
        new: &Weights,
        name: impl Fn(NodeId) -> String,
    ) {
        for (node, _) in &old.peers {
            if new.peer(*node) == 0 {
                self.weight
                    .with_label_values(&[function, &name(*node)])
                    .set(0);
            }
        }
        self.weight
            .with_label_values(&[function, "local"])
            .set(i64::from(new.local));
        self.weight
            .with_label_values(&[function, "reject"])
            .set(i64::from(new.reject));
        for (node, w) in &new.peers {
            self.weight
                .with_label_values(&[function, &name(*node)])
                .set(i64::from(*w));
        }
    }

    /// The Prometheus text exposition, with the gauges of `hosted` functions refreshed first.
    pub fn render(&self, hosted: impl IntoIterator<Item = FunctionGauges>) -> String {
        for g in hosted {
            let label = [g.service.as_str()];
            self.queue_length
                .with_label_values(&label)
                .set(g.queue_len as i64);
            self.in_flight
                .with_label_values(&label)
                .set(g.in_flight as i64);
            self.arrival_rate
                .with_label_values(&label)
                .set(g.arrival_rate);
            if let Some(c) = g.capacity {
                self.capacity.with_label_values(&label).set(c);
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode metrics: {e}\n"))
    }
}

/// The live gauges of one hosted function, read when metrics are scraped.
#[derive(Debug, Clone)]
pub struct FunctionGauges {
    pub service: String,
    pub queue_len: usize,
    pub in_flight: usize,
    pub arrival_rate: f64,
    pub capacity: Option<f64>,
}

/// Cumulative invocation counts of a node, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Served here (by the local FaaS backend).
    pub served: u64,
    /// Forwarded to another node.
    pub forwarded: u64,
    /// Rejected (429, 503, 508, …).
    pub rejected: u64,
}
