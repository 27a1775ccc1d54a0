//! The control plane between fog nodes: the control loop that recomputes each hosted
//! function's weights with the node's strategy and exchanges [`LoadReport`]s with every peer
//! co-hosting a function (push-pull over `POST /fog/v1/load`), and the receiving side of
//! that exchange.
//!
//! The loop runs [`control_step`] every `control_interval`, and at once (at most every
//! quarter interval) when a local queue passes half its capacity, a forward fails or a new
//! route table arrives. A step never waits for a peer: each exchange runs in its own task,
//! at most one per peer at a time, bounded by `peer_timeout`, and its result is used by the
//! next step.

use crate::client::{Call, CallError};
use crate::state::node::Node;
use crate::state::offload::{ControlOut, Offload, PeerLink, PeerSummary};
use crate::state::routes::Routes;
use model::ids::NodeId;
use model::offload::{FunctionLoad, PeerView, compute_weights, margin_for_peers, offers_to_peers};
use model::protocol::{FunctionLoadReport, LoadReport, PROTOCOL_VERSION};
use model::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The path of the load exchange.
pub const LOAD_PATH: &str = "/fog/v1/load";

/// Recomputes every `control_interval`, or at once when woken (not more often than every
/// quarter interval).
pub async fn control_loop(node: Arc<Node>) {
    let interval = node.offload.config.control_interval.as_duration();
    let min_gap = (interval / 4).max(Duration::from_millis(5));
    loop {
        let started = tokio::time::Instant::now();
        control_step(&node, Timestamp::now());
        tokio::select! {
            () = tokio::time::sleep_until(started + interval) => {}
            () = node.offload.wake.notified() => {
                tokio::time::sleep_until(started + min_gap).await;
            }
        }
    }
}

/// The RTT to use for a peer: twice the configured one-way `[links]` latency when set (nodes
/// sharing a machine without link emulation), else the EWMA of exchanges, else twice the
/// overlay probe estimate when the peer is an overlay neighbour, else twice the emulated
/// one-way latency of the path (`[link_emulation]`, before anything is measured).
fn rtt_of(
    off: &Offload,
    link: &PeerLink,
    name: &str,
    probed: &BTreeMap<NodeId, Duration>,
) -> Option<Duration> {
    if let Some(l) = off.links.get(name) {
        return Some(l.as_duration() * 2);
    }
    link.control()
        .rtt
        .or_else(|| probed.get(&link.node).copied())
        .or_else(|| off.emulated_links.get(name).map(|l| l.as_duration() * 2))
}

/// One control step at `now`: weights and offers for every hosted function, then the
/// exchanges with co-hosting peers (spawned, not awaited).
pub fn control_step(node: &Arc<Node>, now: Timestamp) {
    let Some(me) = node.identity_arc() else {
        return;
    };
    let off = &node.offload;
    let routes = off.routes();
    let clock = Instant::now();
    let now_ms = off.epoch_ms(clock);
    let timeout = off.config.peer_timeout.as_duration();

    // RTT hints for every node (access ranking and the strategies).
    let probed: BTreeMap<NodeId, Duration> = node
        .neighbours()
        .iter()
        .filter_map(|n| {
            let one_way_ms = n.estimator.estimate()?.median;
            let rtt = Duration::try_from_secs_f64(one_way_ms * 2.0 / 1000.0).ok()?;
            Some((n.info.node_id, rtt))
        })
        .collect();
    for n in routes.nodes() {
        n.link
            .set_rtt_hint(rtt_of(off, &n.link, &n.info.name, &probed));
    }

    let hosted: Vec<_> = routes
        .functions()
        .iter()
        .filter(|f| f.is_live(now) && f.hosted_by(me.node_id))
        .cloned()
        .collect();

    // Co-hosting peers: the ones to exchange with, and since when.
    let co_hosts: BTreeSet<NodeId> = hosted
        .iter()
        .flat_map(|f| f.route.hosts.iter().copied())
        .filter(|h| *h != me.node_id)
        .collect();
    for n in routes.nodes() {
        let mut c = n.link.control();
        match (co_hosts.contains(&n.info.node_id), c.co_host_since) {
            (true, None) => c.co_host_since = Some(clock),
            (false, Some(_)) => c.co_host_since = None,
            _ => {}
        }
    }

    // Rates, and node usage for node_margin.
    let rates: Vec<(String, f64)> = hosted
        .iter()
        .map(|f| (f.state.service.clone(), f.state.arrival_rate(now)))
        .collect();
    let usage = {
        let mut u = off.usage.lock().unwrap_or_else(|p| p.into_inner());
        let pairs: Vec<(&str, f64)> = rates.iter().map(|(s, r)| (s.as_str(), *r)).collect();
        match u.cpu.sample() {
            Some(measured) => {
                u.model.observe(&pairs, measured);
                Some(u.model.predict(&pairs))
            }
            None => None,
        }
    };

    for (f, (_, rate)) in hosted.iter().zip(&rates) {
        let s = &f.state;
        let learned = s.sample_capacity(now, s.queue.take_saturated());
        let capacity = off
            .config
            .max_rate(&f.route.service, &f.route.name, &f.route.image)
            .or(learned);
        let load = FunctionLoad {
            local_rate: *rate,
            capacity,
            in_flight: s.queue.in_flight() as u32,
            queue_len: s.queue.len() as u32,
            node_usage: usage,
        };
        let mut views = Vec::new();
        let mut summaries = Vec::new();
        for peer in f.route.hosts.iter().filter(|h| **h != me.node_id) {
            let Some(n) = routes.node(*peer) else {
                continue;
            };
            let alive = n.link.is_alive(n.info.alive, clock, now_ms, timeout);
            let rtt = n.link.rtt_hint();
            let (offer, margin) = {
                let c = n.link.control();
                c.reports
                    .get(&f.route.service)
                    .map_or((None, None), |r| (r.offer, r.margin))
            };
            views.push(PeerView {
                node: *peer,
                rtt: rtt.unwrap_or(Duration::ZERO),
                alive,
                hosts_function: true,
                offer,
                margin,
            });
            summaries.push(PeerSummary {
                node: *peer,
                name: n.info.name.clone(),
                alive,
                rtt,
                offer,
            });
        }
        let prev = s.weights();
        let strategy = off.config.strategy;
        let weights = compute_weights(strategy, &load, &views, &off.params, Some(&prev), now);
        let offers = offers_to_peers(strategy, &load, &views, &off.params, Some(&prev), now);
        drop(prev);
        let margin = load.usage().map(|u| margin_for_peers(u, views.len()));
        s.set_control_out(ControlOut {
            rate: *rate,
            capacity,
            offers,
            margin,
            peers: summaries,
        });
        off.install_weights(&f.route.service, weights);
    }

    // One exchange per co-hosting peer, each in its own task.
    for peer in co_hosts {
        let Some(n) = routes.node(peer) else {
            continue;
        };
        if !n.info.alive || !n.link.begin_exchange() {
            continue;
        }
        let report = report_for(off, &routes, me.node_id, peer, now);
        let node = node.clone();
        let link = n.link.clone();
        let url = n.info.url.clone();
        tokio::spawn(async move {
            exchange(&node, &link, &url, report).await;
            link.end_exchange();
        });
    }
}

/// This node's report for `peer`: every live function both host.
pub fn report_for(
    off: &Offload,
    routes: &Routes,
    me: NodeId,
    peer: NodeId,
    now: Timestamp,
) -> LoadReport {
    let functions = routes
        .functions()
        .iter()
        .filter(|f| f.is_live(now) && f.hosted_by(me) && f.hosted_by(peer))
        .map(|f| {
            let s = &f.state;
            let out = s.control_out();
            FunctionLoadReport {
                service: f.route.service.clone(),
                rate: out.rate,
                capacity: out.capacity,
                queue_len: s.queue.len() as u32,
                in_flight: s.queue.in_flight() as u32,
                offer: out.offers.iter().find(|(n, _)| *n == peer).map(|(_, o)| *o),
                margin: out.margin,
            }
        })
        .collect();
    LoadReport {
        version: PROTOCOL_VERSION,
        from: me,
        seq: off.next_seq(),
        sent_at: now,
        functions,
    }
}

/// One push-pull exchange with a peer, bounded by `peer_timeout`.
async fn exchange(node: &Node, link: &PeerLink, url: &str, report: LoadReport) {
    let Some(me) = node.identity_arc() else {
        return;
    };
    let recipient = link.node.to_string();
    let timeout = node.offload.config.peer_timeout.as_duration();
    let started = Instant::now();
    let call = match Call::post(url, LOAD_PATH).json(&report) {
        Ok(c) => c.route(LOAD_PATH).timeout(timeout),
        Err(e) => {
            tracing::debug!(peer = %link.node, error = %e, "cannot encode a load report");
            return;
        }
    };
    // The pair's MAC when the peer's key is known (it is, for a node of the route table).
    let signer = match node.key_of(&me, &recipient) {
        Some(peer_key) => node.peer_signer(&me, link.node, &peer_key),
        None => node.signer(&me, &recipient),
    };
    let result: Result<LoadReport, CallError> = node.client.call(call, signer).await;
    match result {
        Ok(answer) if answer.version == PROTOCOL_VERSION && answer.from == link.node => {
            link.observe_ok(Some(started.elapsed()), Instant::now());
            link.receive(answer, Timestamp::now());
        }
        Ok(answer) => {
            tracing::debug!(peer = %link.node, from = %answer.from, version = answer.version, "unusable load report answer");
        }
        Err(e) => tracing::debug!(peer = %link.node, error = %e, "load exchange failed"),
    }
}

/// Why a load report is refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("unsupported load report version {0}, expected {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("{0}")]
    Forbidden(String),
}

/// `POST /fog/v1/load` from `sender` (already authenticated): keeps the report unless older
/// than one already seen, counts as a successful exchange, answers with this node's report
/// for the sender.
pub fn receive_report(
    node: &Node,
    sender: NodeId,
    report: LoadReport,
    now: Timestamp,
) -> Result<LoadReport, LoadError> {
    let off = &node.offload;
    let routes = off.routes();
    let Some(peer) = routes.node(sender) else {
        return Err(LoadError::Forbidden(format!(
            "sender {sender} is not a node of the route table"
        )));
    };
    if report.version != PROTOCOL_VERSION {
        return Err(LoadError::Version(report.version));
    }
    if report.from != sender {
        return Err(LoadError::Forbidden(format!(
            "report from {} signed by {sender}",
            report.from
        )));
    }
    let me = node
        .node_id()
        .ok_or_else(|| LoadError::Forbidden("this node is not enrolled yet".into()))?;
    peer.link.receive(report, now);
    peer.link.observe_ok(None, Instant::now());
    Ok(report_for(off, &routes, me, sender, now))
}
