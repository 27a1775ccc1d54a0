//! Run-time routing and offloading of invocations: the state shared by the data plane
//! ([`crate::http::dataplane`]), the control loop ([`crate::tasks::control`]) and the route
//! sync ([`crate::tasks::route_sync`]).
//!
//! It holds the `[offload]` configuration, the current route snapshot (swapped atomically;
//! each function carries its [`FunctionState`], each node its [`PeerLink`]), the metrics
//! registry and the control loop's wake-up. Weights are installed through one function,
//! [`Offload::install_weights`], whatever computed them.

pub use crate::state::function::{
    ControlOut, FunctionState, LocalQueue, PeerSummary, QueueRefusal,
};
pub use crate::state::peer::{PeerControl, PeerLink};

use crate::config::{Config, OffloadConfig};
use crate::state::metrics::{FunctionGauges, Metrics};
use crate::state::routes::Routes;
use crate::state::usage::UsageState;
use arc_swap::ArcSwap;
use model::Latency;
use model::ids::NodeId;
use model::offload::{Params, Weights};
use model::protocol::RouteTable;
use model::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

pub struct Offload {
    pub config: OffloadConfig,
    pub params: Params,
    /// `[links]`: configured one-way latency to peers by name (empty with link emulation,
    /// where measured round trips hold the emulated latency).
    pub links: BTreeMap<String, Latency>,
    /// `[link_emulation] one_way`: stands in for a peer's RTT until one is measured.
    pub emulated_links: BTreeMap<String, Latency>,
    routes: ArcSwap<Routes>,
    /// Serialises route installations (route sync and installs by hand), never the requests.
    install: Mutex<()>,
    pub metrics: Metrics,
    /// Wakes the control loop for an immediate recompute.
    pub wake: Notify,
    seq: AtomicU64,
    epoch: Instant,
    pub(crate) usage: Mutex<UsageState>,
    /// `data_plane = "haproxy"`: HAProxy's frontend URL once it runs.
    pub haproxy_url: std::sync::OnceLock<String>,
}

impl Offload {
    pub fn new(config: &Config) -> Offload {
        Offload {
            config: config.offload.clone(),
            params: config.offload.params(),
            links: if config.link_emulation.enabled() {
                BTreeMap::new()
            } else {
                config.links.clone()
            },
            emulated_links: config.link_emulation.one_way.clone(),
            routes: ArcSwap::from_pointee(Routes::default()),
            install: Mutex::new(()),
            metrics: Metrics::new(),
            wake: Notify::new(),
            // Above any sequence number an earlier run of this node used (one per ms).
            seq: AtomicU64::new(
                model::time::Timestamp::now()
                    .as_millis()
                    .saturating_mul(1000),
            ),
            epoch: Instant::now(),
            usage: Mutex::new(UsageState::default()),
            haproxy_url: std::sync::OnceLock::new(),
        }
    }

    /// The current route snapshot.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Installs a route table (from the marketplace, or by hand in tests and tools). Function
    /// states and peer links of the previous table are kept; new ones start fresh.
    pub fn install_routes(&self, table: RouteTable) {
        let _guard = self.install.lock().unwrap_or_else(|p| p.into_inner());
        let prev = self.routes.load_full();
        let version = table.version;
        let routes = Routes::build(
            table,
            &prev,
            |route| {
                let c = &self.config;
                Arc::new(FunctionState::new(
                    &route.service,
                    LocalQueue::new(
                        c.max_concurrency,
                        c.queue_capacity,
                        c.queue_timeout.as_duration(),
                    ),
                ))
            },
            |node| Arc::new(PeerLink::new(node.node_id)),
        );
        self.routes.store(Arc::new(routes));
        tracing::debug!(version, "route table installed");
        self.wake.notify_one();
    }

    /// Installs `table` unless it is the one already installed (same version and time).
    pub fn install_routes_if_changed(&self, table: RouteTable) {
        let current = self.routes.load();
        if table.version == current.version() && table.generated_at == current.generated_at() {
            return;
        }
        drop(current);
        self.install_routes(table);
    }

    /// Installs new weights for `service`: the one place weights change (the data plane reads
    /// them with an atomic load; counters and rate windows are untouched). Returns false when
    /// the service is not in the route table.
    pub fn install_weights(&self, service: &str, weights: Weights) -> bool {
        let routes = self.routes.load();
        let Some(f) = routes.function_by_service(service) else {
            return false;
        };
        let old = f.state.swap_weights(weights);
        let new = f.state.weights();
        if *old != **new {
            tracing::debug!(service, weights = ?**new, "weights changed");
        }
        self.metrics
            .set_weights(service, &old, &new, |n| routes.node_name(n));
        true
    }

    /// The current weights of `service`.
    pub fn weights(&self, service: &str) -> Option<Weights> {
        self.routes
            .load()
            .function_by_service(service)
            .map(|f| (**f.state.weights()).clone())
    }

    /// The next load-report sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel)
    }

    /// Milliseconds since this node's offload epoch (for suspicion deadlines).
    pub fn epoch_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// A forward to `link` failed: it is suspect (no traffic, ranked last) for `peer_timeout`
    /// or until an exchange succeeds, and the control loop recomputes at once.
    pub fn forward_failed(&self, link: &PeerLink, transport: bool) {
        if transport {
            let until = self.epoch_ms(Instant::now())
                + self.config.peer_timeout.as_duration().as_millis() as u64;
            link.mark_suspect(until);
        }
        self.wake.notify_one();
    }

    /// The Prometheus text exposition of this node, gauges of the functions hosted here (by
    /// `me`) refreshed from the live state.
    pub fn render_metrics(&self, me: Option<NodeId>) -> String {
        let routes = self.routes();
        let now = Timestamp::now();
        let hosted = routes
            .functions()
            .iter()
            .filter(|f| me.is_some_and(|id| f.hosted_by(id)))
            .map(|f| {
                let s = &f.state;
                FunctionGauges {
                    service: s.service.clone(),
                    queue_len: s.queue.len(),
                    in_flight: s.queue.in_flight(),
                    arrival_rate: s.arrival_rate(now),
                    capacity: s.control_out().capacity,
                }
            });
        self.metrics.render(hosted)
    }
}
