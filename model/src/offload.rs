//! Offloading between fog nodes: per function and per request, serve here, forward to a peer,
//! or reject (the pure core of the fog nodes' data plane).
//!
//! This module owns the decision rules; the node owns the I/O. It feeds request arrivals to a
//! [`RateWindow`], completions to a [`ThroughputEstimator`] (and, for `node_margin`, CPU
//! samples to a [`UsageModel`]), and from its control loop calls [`compute_weights`] and
//! [`offers_to_peers`] with `now`, then installs the new [`Weights`] without any reload. Per
//! request it calls [`Weights::select`] with a random roll and, if a forward fails,
//! [`Weights::fallback_order`]. Weights are integers out of [`WEIGHT_SCALE`].
//!
//! The strategies (`offload_strategy = "…"`, chosen per node) and how they differ from DFaaS:
//!
//! | strategy | rule | differences from DFaaS |
//! |---|---|---|
//! | `static` | 60 % local, 40 % split equally among peers hosting the function | dead peers excluded |
//! | `recalc` | overloaded iff rate ≥ max rate `M`; offer each of the `N` peers `⌊(M − r)/N⌋`; forward the excess in proportion to offers received | rate over a sliding window, not the last 1 s; offers carry an expiry instead of a wall-clock period; no reject while a live offer exists (excess beyond offers is still spread over them); capacity learned from throughput when `M` is missing |
//! | `node_margin` | usage predicted from per-function rates; weight moved in bounded steps towards peers with margin, and back when the node has margin again | online model inside the node instead of a LightGBM service; one bounded step per recompute instead of 1 % steps with 3 forecaster calls each; never rejects |
//! | `lease` (default) | peers lease spare capacity with an expiry, to the peers within `max_forward_rtt` that offer none back (the ones that may need it), else to every peer within it; a spilling node forwards to the `neighbourhood` nearest peers holding a lease, farther ones only while nearer leases fall short; spill with hysteresis; the arrival rate rises within a second; backlog counts as demand and is drained before new requests are kept; without any lease yet, the queue takes the excess while it drains within `queue_drain` | new: latency-aware, reacts to a growing queue within a step, hysteresis and a dead band so weights do not flap, rejects only what no lease and no local capacity covers |
//!
//! Common fixes: rates come from a sliding window never reset by a weight change; no strategy
//! rejects while an eligible peer holds an unexpired offer or the local node has spare
//! capacity (DFaaS's zero-weight 503s); weights never name a dead or non-hosting peer.

mod rate;
pub mod scenario;
mod weights;

pub use rate::{RateWindow, ThroughputEstimator, UsageModel, margin_for_peers};
pub use weights::{Decision, WEIGHT_SCALE, Weights};

use crate::ids::NodeId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A node's offloading strategy (`offload_strategy = "…"` in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffloadStrategy {
    /// DFaaS baseline: 60 % local, 40 % split among peers.
    Static,
    /// DFaaS CloudNet'21 max-rate algorithm, bugs fixed.
    Recalc,
    /// DFaaS node margin (Filippini et al.) with an online usage model; a node's usage is the
    /// larger of its CPU forecast and its function's use of capacity ([`FunctionLoad::usage`]).
    NodeMargin,
    /// Latency-aware capacity leases with hysteresis.
    #[default]
    Lease,
}

impl OffloadStrategy {
    pub const ALL: [OffloadStrategy; 4] = [
        OffloadStrategy::Static,
        OffloadStrategy::Recalc,
        OffloadStrategy::NodeMargin,
        OffloadStrategy::Lease,
    ];

    /// The config / serde name.
    pub fn name(self) -> &'static str {
        match self {
            OffloadStrategy::Static => "static",
            OffloadStrategy::Recalc => "recalc",
            OffloadStrategy::NodeMargin => "node_margin",
            OffloadStrategy::Lease => "lease",
        }
    }
}

/// Why an offload strategy name was refused; lists every accepted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown offload strategy `{0}`, expected one of: static, recalc, node_margin, lease \
     (kebab-case also accepted)"
)]
pub struct UnknownOffloadStrategy(pub String);

impl FromStr for OffloadStrategy {
    type Err = UnknownOffloadStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        OffloadStrategy::ALL
            .into_iter()
            .find(|st| st.name() == norm)
            .ok_or_else(|| UnknownOffloadStrategy(s.to_string()))
    }
}

impl fmt::Display for OffloadStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Capacity a peer offers this node for one function: up to `rate` req/s until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityOffer {
    /// Requests per second.
    pub rate: f64,
    pub expires_at: Timestamp,
}

impl CapacityOffer {
    /// Still usable at `now`: not expired and offering something.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at > now && self.rate.is_finite() && self.rate > 0.0
    }
}

/// What this node knows about one peer, for one function.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub node: NodeId,
    /// Measured round-trip time to the peer.
    pub rtt: Duration,
    /// Reachable by the last health check / gossip.
    pub alive: bool,
    /// The peer runs this function.
    pub hosts_function: bool,
    /// The latest offer the peer made this node for the function, if any.
    pub offer: Option<CapacityOffer>,
    /// The margin the peer shared (node_margin), in usage percent per neighbour.
    pub margin: Option<f64>,
}

impl PeerView {
    fn can_serve(&self) -> bool {
        self.alive && self.hosts_function
    }
    fn live_offer(&self, now: Timestamp) -> f64 {
        self.offer
            .filter(|o| o.is_live(now))
            .map_or(0.0, |o| o.rate)
    }
}

/// This node's load for one function.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FunctionLoad {
    /// User requests arriving here, req/s, from a [`RateWindow`] (forwarded-in requests are
    /// not counted: they are always served here).
    pub local_rate: f64,
    /// Max rate the function sustains here: the configured max rate, else the
    /// [`ThroughputEstimator`]'s learned capacity; `None` while unknown (then all local).
    pub capacity: Option<f64>,
    pub in_flight: u32,
    /// Requests waiting for the function.
    pub queue_len: u32,
    /// Predicted node CPU usage in percent (node_margin, from a [`UsageModel`]); see
    /// [`FunctionLoad::usage`].
    pub node_usage: Option<f64>,
}

impl FunctionLoad {
    /// node_margin's usage of this node, in percent: the larger of the predicted CPU usage and
    /// the function's use of its capacity here (`100 × local_rate / capacity`). A function can
    /// be saturated without the CPU being busy (it sleeps or waits on I/O, its concurrency is
    /// capped, or several nodes share one machine's CPU); CPU alone would then never shed load.
    /// `None` when neither is known.
    pub fn usage(&self) -> Option<f64> {
        let cpu = self.node_usage.filter(|u| u.is_finite());
        let slots = self
            .capacity()
            .filter(|c| *c > 0.0)
            .map(|c| 100.0 * self.rate() / c);
        match (cpu, slots) {
            (Some(cpu), Some(slots)) => Some(cpu.max(slots)),
            (cpu, slots) => cpu.or(slots),
        }
    }

    fn capacity(&self) -> Option<f64> {
        self.capacity.filter(|c| c.is_finite() && *c >= 0.0)
    }
    fn rate(&self) -> f64 {
        if self.local_rate.is_finite() {
            self.local_rate.max(0.0)
        } else {
            0.0
        }
    }
}

/// Tunables of the strategies. Defaults are the ones the node ships with.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// static: share served locally (DFaaS: 0.6).
    pub static_local_share: f64,
    /// How long an offer stays valid (recalc and lease): a few control steps, so a node that
    /// stops refreshing its offers stops receiving traffic soon.
    pub offer_ttl: Duration,
    /// lease: a spilling node forwards to at least this many nearest peers holding a lease,
    /// farther ones (within `max_forward_rtt`) only while the nearer leases do not cover its
    /// excess.
    pub neighbourhood: usize,
    /// lease: forward to and offer capacity to peers at most this far (round trip). A forward
    /// this long still beats a queue that grows while a peer idles.
    pub max_forward_rtt: Duration,
    /// lease: relative band around capacity. Spill starts above `capacity × (1 + h)`, stops
    /// below `capacity × (1 − h)`; while spilling the node keeps `h` of its capacity as headroom.
    pub hysteresis: f64,
    /// lease: the backlog should drain within this time, so `queue_len / drain` counts as
    /// extra demand (overload seen in one step, before the rate window catches up) and new
    /// requests are kept here only as far as the backlog drains in time; without any lease,
    /// the queue takes an excess only while its backlog drains within this time.
    pub queue_drain: Duration,
    /// lease: new weights within this many (per mille) of the previous ones, over the same
    /// targets, keep the previous ones.
    pub dead_band: u32,
    /// node_margin: usage (percent) above which weight moves to peers.
    pub usage_high: f64,
    /// node_margin: usage below which weight moves back to local.
    pub usage_low: f64,
    /// node_margin: largest weight moved per recompute (per mille).
    pub margin_step: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            static_local_share: 0.6,
            offer_ttl: Duration::from_secs(3),
            neighbourhood: 3,
            max_forward_rtt: Duration::from_millis(200),
            hysteresis: 0.05,
            queue_drain: Duration::from_millis(500),
            dead_band: 20,
            usage_high: 80.0,
            usage_low: 60.0,
            margin_step: 50,
        }
    }
}

/// The weights for one function at `now`. `prev` is what this function returned last time
/// for the same function (lease keeps its hysteresis state in it; node_margin moves from it).
pub fn compute_weights(
    strategy: OffloadStrategy,
    load: &FunctionLoad,
    peers: &[PeerView],
    params: &Params,
    prev: Option<&Weights>,
    now: Timestamp,
) -> Weights {
    match strategy {
        OffloadStrategy::Static => static_weights(peers, params),
        OffloadStrategy::Recalc => recalc_weights(load, peers, now),
        OffloadStrategy::NodeMargin => node_margin_weights(load, peers, params, prev),
        OffloadStrategy::Lease => lease_weights(load, peers, params, prev, now),
    }
}

/// What this node offers each peer for one function at `now` (recalc and lease; the other
/// strategies share no capacity). Offers expire `params.offer_ttl` after `now`.
pub fn offers_to_peers(
    strategy: OffloadStrategy,
    load: &FunctionLoad,
    peers: &[PeerView],
    params: &Params,
    prev: Option<&Weights>,
    now: Timestamp,
) -> Vec<(NodeId, CapacityOffer)> {
    let expires_at = now.plus(params.offer_ttl);
    let Some(cap) = load.capacity() else {
        return Vec::new();
    };
    let (spare, receivers): (f64, Vec<&PeerView>) = match strategy {
        OffloadStrategy::Static | OffloadStrategy::NodeMargin => return Vec::new(),
        OffloadStrategy::Recalc => {
            let receivers: Vec<&PeerView> = peers.iter().filter(|p| p.can_serve()).collect();
            let n = receivers.len().max(1) as f64;
            // LimitIn = floor((M − r) / N) per peer
            let each = ((cap - load.rate()) / n).floor();
            (each * n, receivers)
        }
        OffloadStrategy::Lease => {
            if prev.is_some_and(Weights::is_spilling) {
                return Vec::new();
            }
            let h = hysteresis(params);
            (
                cap * (1.0 - h) - lease_demand(load, params),
                lease_receivers(peers, params, now),
            )
        }
    };
    if spare <= 0.0 || receivers.is_empty() {
        return Vec::new();
    }
    let each = spare / receivers.len() as f64;
    receivers
        .into_iter()
        .map(|p| {
            (
                p.node,
                CapacityOffer {
                    rate: each,
                    expires_at,
                },
            )
        })
        .collect()
}

fn static_weights(peers: &[PeerView], params: &Params) -> Weights {
    let hosts: Vec<&PeerView> = peers.iter().filter(|p| p.can_serve()).collect();
    if hosts.is_empty() {
        return Weights::all_local();
    }
    let local = params.static_local_share.clamp(0.0, 1.0);
    let each = (1.0 - local) / hosts.len() as f64;
    let shares: Vec<(NodeId, f64)> = hosts.iter().map(|p| (p.node, each)).collect();
    Weights::from_shares(local, &shares, 0.0)
}

fn recalc_weights(load: &FunctionLoad, peers: &[PeerView], now: Timestamp) -> Weights {
    let Some(cap) = load.capacity() else {
        return Weights::all_local();
    };
    let r = load.rate();
    if r <= cap {
        return Weights::all_local();
    }
    let excess = r - cap;
    let offers: Vec<(NodeId, f64)> = peers
        .iter()
        .filter(|p| p.can_serve())
        .map(|p| (p.node, p.live_offer(now)))
        .filter(|&(_, o)| o > 0.0)
        .collect();
    let offered: f64 = offers.iter().map(|(_, o)| o).sum();
    if offered <= 0.0 {
        return Weights::from_shares(cap, &[], excess);
    }
    // Whole excess in proportion to offers: exactly the offers when they cover it, an
    // over-booking of them rather than a 503 when they do not.
    let shares: Vec<(NodeId, f64)> = offers
        .iter()
        .map(|&(n, o)| (n, excess * o / offered))
        .collect();
    Weights::from_shares(cap, &shares, 0.0)
}

fn node_margin_weights(
    load: &FunctionLoad,
    peers: &[PeerView],
    params: &Params,
    prev: Option<&Weights>,
) -> Weights {
    let eligible: Vec<&PeerView> = peers.iter().filter(|p| p.can_serve()).collect();
    let prev = prev.cloned().unwrap_or_default();
    // Start from the previous weights; weight of peers no longer eligible, and any reject,
    // goes back to local.
    let mut local = prev.local as f64 + prev.reject as f64;
    let mut w: Vec<(NodeId, f64)> = eligible.iter().map(|p| (p.node, 0.0)).collect();
    for &(n, pw) in &prev.peers {
        match w.iter_mut().find(|(m, _)| *m == n) {
            Some(slot) => slot.1 = pw as f64,
            None => local += pw as f64,
        }
    }
    let usage = load.usage();
    let step = params.margin_step as f64;
    let margin_of = |n: NodeId| {
        eligible
            .iter()
            .find(|p| p.node == n)
            .and_then(|p| p.margin)
            .filter(|m| m.is_finite() && *m > 0.0)
            .unwrap_or(0.0)
    };
    // Peers that shared no margin give weight back, one step each.
    for (n, pw) in w.iter_mut() {
        if margin_of(*n) <= 0.0 {
            let back = pw.min(step);
            *pw -= back;
            local += back;
        }
    }
    match usage {
        Some(u) if u > params.usage_high => {
            let total_margin: f64 = w.iter().map(|(n, _)| margin_of(*n)).sum();
            if total_margin > 0.0 {
                let moved = local.min(step);
                local -= moved;
                for (n, pw) in w.iter_mut() {
                    *pw += moved * margin_of(*n) / total_margin;
                }
            }
        }
        Some(u) if u < params.usage_low => {
            let forwarded: f64 = w.iter().map(|(_, pw)| pw).sum();
            if forwarded > 0.0 {
                let back = forwarded.min(step);
                for (_, pw) in w.iter_mut() {
                    *pw -= back * *pw / forwarded;
                }
                local += back;
            }
        }
        _ => {}
    }
    Weights::from_shares(local, &w, 0.0)
}

fn hysteresis(params: &Params) -> f64 {
    if params.hysteresis.is_finite() {
        params.hysteresis.clamp(0.0, 0.9)
    } else {
        0.0
    }
}

/// Arrival rate plus the backlog to drain within `queue_drain`.
fn lease_demand(load: &FunctionLoad, params: &Params) -> f64 {
    let drain = params.queue_drain.as_secs_f64().max(0.001);
    load.rate() + load.queue_len as f64 / drain
}

/// The peers lease traffic may go to: alive, hosting and within `max_forward_rtt`, nearest
/// first (ties by node id).
fn in_reach<'a>(peers: &'a [PeerView], params: &Params) -> Vec<&'a PeerView> {
    let mut near: Vec<&PeerView> = peers
        .iter()
        .filter(|p| p.can_serve() && p.rtt <= params.max_forward_rtt)
        .collect();
    near.sort_by_key(|p| (p.rtt, p.node));
    near
}

/// Who a lease node offers its spare capacity to: the peers in reach that offer it nothing
/// (spilling, full, or not heard from: the ones that may need capacity), however far within
/// reach; when every peer in reach offers capacity itself, all of them, so a burst at any of
/// them finds a lease already in place.
///
/// Offering to the `neighbourhood` nearest peers regardless of need left a hot node whose
/// nearest peers were hot too without leases while peers a little farther idled; and a standing
/// offer to only some peers made the others look in need.
fn lease_receivers<'a>(
    peers: &'a [PeerView],
    params: &Params,
    now: Timestamp,
) -> Vec<&'a PeerView> {
    let reach = in_reach(peers, params);
    let needy: Vec<&PeerView> = reach
        .iter()
        .copied()
        .filter(|p| p.live_offer(now) <= 0.0)
        .collect();
    if needy.is_empty() { reach } else { needy }
}

fn lease_weights(
    load: &FunctionLoad,
    peers: &[PeerView],
    params: &Params,
    prev: Option<&Weights>,
    now: Timestamp,
) -> Weights {
    let Some(cap) = load.capacity() else {
        return Weights::all_local();
    };
    let h = hysteresis(params);
    let demand = lease_demand(load, params);
    let was_spilling = prev.is_some_and(Weights::is_spilling);
    let spilling = if was_spilling {
        demand >= cap * (1.0 - h)
    } else {
        demand > cap * (1.0 + h)
    };
    let reach = in_reach(peers, params);
    let arrivals = load.rate();
    // Alone (no peer within reach hosts the function): there is nobody to share with, so the
    // rate estimate rejects nothing; the node's bounded queue answers a real overload.
    let fresh = if !spilling || arrivals <= 0.0 || reach.is_empty() {
        Weights::all_local()
    } else {
        // The backlog drains within `queue_drain` before new requests are kept here: keeping
        // the full capacity for new requests would leave the queue (and every local request's
        // wait) as long as it is while a peer's lease goes unused.
        let drain = demand - arrivals;
        // Keep headroom while spilling; use it before rejecting anything.
        let target = cap * (1.0 - h);
        let local = (target - drain).clamp(0.0, arrivals);
        let local_max = (cap - drain).max(0.0);
        let excess = arrivals - local;
        // The nearest peers holding a lease: at least `neighbourhood` of them, and farther
        // ones as long as the nearer leases do not cover the excess.
        let mut offers: Vec<(NodeId, f64)> = Vec::new();
        let mut offered = 0.0;
        for p in reach {
            let o = p.live_offer(now);
            if o <= 0.0 {
                continue;
            }
            if offers.len() >= params.neighbourhood.max(1) && offered >= excess {
                break;
            }
            offers.push((p.node, o));
            offered += o;
        }
        // Nearest leases first, each up to what it offers.
        let mut left = excess;
        let mut shares: Vec<(NodeId, f64)> = offers
            .iter()
            .map(|&(n, o)| {
                let take = left.min(o);
                left -= take;
                (n, take)
            })
            .collect();
        let local_extra = left.min(local_max - local).max(0.0);
        let uncovered = left - local_extra;
        let local = local + local_extra;
        if offered > 0.0 {
            // Any uncovered part over-books the leases rather than being rejected.
            for (share, &(_, o)) in shares.iter_mut().zip(&offers) {
                share.1 += uncovered * o / offered;
            }
            Weights::from_shares(local, &shares, 0.0)
        } else if drain < cap {
            // No lease yet (the overload just began; leases follow within a few control
            // steps): the queue takes the excess while its backlog drains within
            // `queue_drain`, rather than rejecting requests a lease would carry soon.
            Weights::all_local()
        } else {
            Weights::from_shares(local, &[], uncovered)
        }
    };
    match prev {
        Some(p) if within_dead_band(p, &fresh, params.dead_band) => p.clone(),
        _ => fresh,
    }
}

/// Same targets (local, the same peers, reject or not) and every part within `band`.
fn within_dead_band(prev: &Weights, fresh: &Weights, band: u32) -> bool {
    let same_targets = (prev.local > 0) == (fresh.local > 0)
        && (prev.reject > 0) == (fresh.reject > 0)
        && prev.peers.len() == fresh.peers.len()
        && prev
            .peers
            .iter()
            .zip(&fresh.peers)
            .all(|((a, _), (b, _))| a == b);
    same_targets
        && prev.total() == fresh.total()
        && prev.is_spilling() == fresh.is_spilling()
        && prev.local.abs_diff(fresh.local) <= band
        && prev.reject.abs_diff(fresh.reject) <= band
        && prev
            .peers
            .iter()
            .zip(&fresh.peers)
            .all(|((_, x), (_, y))| x.abs_diff(*y) <= band)
}

#[cfg(test)]
mod tests;
