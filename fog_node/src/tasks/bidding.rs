//! Bidding and relaying: `POST /api/bid`.
//!
//! The node checks itself (latency from the data source, capacity for all replicas, price
//! against `maxPrice`), holds the resources it offers until the auction deadline plus a grace
//! period, and relays the SLA to overlay neighbours as its placement strategy says, with the
//! accumulated path latency and a shrinking deadline. Every call has a deadline, so a slow or
//! dead subtree cannot block the auction; it shows up as an `unreachable` refusal instead.

use crate::client::Call;
use crate::state::node::{NeighbourState, Node};
use futures::future::join_all;
use model::Sla;
use model::bid::Assessment;
use model::ids::{BidId, NodeId};
use model::latency::{PathLatency, check_budget};
use model::protocol::{Bid, BidRequest, BidResponse, DroppedBid, Refusal, RefusalReason};
use model::strategy::{self, AskMode, BidFilter, NeighbourInfo, SelfBid, StrategyInput};
use model::time::Timestamp;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Below this much remaining time a node does not relay any further.
const MIN_RELAY_BUDGET: Duration = Duration::from_millis(10);
/// Timeout of an on-demand probe of a neighbour whose link was never measured.
const ON_DEMAND_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

fn check_self(node: &Node, me: NodeId, sla: &Sla, acc: &PathLatency, now: Timestamp) -> Assessment {
    let book = node.book();
    model::bid::assess(
        &book.ledger,
        &node.config.pricing,
        sla,
        me,
        acc,
        node.config.latency.sigma_margin,
        now,
    )
}

/// Time left before `deadline`, or zero.
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Handles one bid request: check self, plan, hold, relay, filter.
pub async fn handle_bid(node: Arc<Node>, req: BidRequest, me: NodeId, sla: Sla) -> BidResponse {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(req.timeout_ms);
    let now = Timestamp::now();
    let mut out = BidResponse::default();
    let my_refusal = |reason| Refusal {
        node_id: me,
        node_name: node.name().to_string(),
        reason,
    };

    if req.path.contains(&me) {
        // Reached again over another path: the overlay has a loop; answer nothing.
        return out;
    }
    let chaos_delay = node.config.chaos.bid_delay.as_duration();
    if !chaos_delay.is_zero() {
        tokio::time::sleep(chaos_delay).await;
    }
    let Some(_in_flight) = node.enter_auction() else {
        out.refusals.push(my_refusal(RefusalReason::Busy));
        return out;
    };

    let acc = req.accumulated_latency.sanitized();
    let check = check_self(&node, me, &sla, &acc, now);
    let can_bid = check.refusal.is_none();

    // Neighbours to consider: alive, not the sender, not already on the path.
    let mut path = req.path.clone();
    path.push(me);
    let candidates: Vec<NeighbourState> = node
        .neighbours()
        .into_iter()
        .filter(|n| n.info.alive && Some(n.info.node_id) != req.node_origin)
        .filter(|n| !path.contains(&n.info.node_id))
        .collect();
    let mut infos = Vec::with_capacity(candidates.len());
    let mut links = std::collections::BTreeMap::new();
    for n in &candidates {
        let link = match node.link_latency(n) {
            Some(l) => Some(l),
            None => probe_now(&node, n, remaining(deadline)).await,
        };
        let Some(link) = link else { continue };
        let to_neighbour = acc.then(&link);
        let budget = check_budget(
            &to_neighbour,
            sla.input_max_size,
            sla.latency_max,
            sla.latency_kind,
            node.config.latency.sigma_margin,
        );
        let within_budget = budget.is_ok();
        if let Err(reason) = budget {
            // The neighbour (and its subtree behind it) is too far: say so in the refusals.
            out.refusals.push(Refusal {
                node_id: n.info.node_id,
                node_name: n.info.name.clone(),
                reason: reason.into(),
            });
        }
        links.insert(n.info.node_id, (n.clone(), to_neighbour));
        infos.push(NeighbourInfo {
            id: n.info.node_id,
            relation: n.info.relation,
            link,
            within_budget,
            is_cloud: n.info.tags.iter().any(|t| t.eq_ignore_ascii_case("cloud")),
        });
    }
    let input = StrategyInput {
        can_bid,
        is_cloud: node.config.is_cloud(),
        neighbours: &infos,
        wanted: sla.nodes as usize,
    };
    let plan = node.with_rng(|rng| strategy::plan(node.config.strategy, &input, rng));

    let hold_expiry = |now: Timestamp| {
        now.plus(remaining(deadline))
            .plus(node.config.hold_grace.as_duration())
    };
    // Whatever the strategy says, a node that cannot serve says why, once.
    if let Some(reason) = check.refusal.clone() {
        out.refusals.push(my_refusal(reason));
    }
    let bid_self = |out: &mut BidResponse| {
        if check.refusal.is_some() {
            return;
        }
        let now = Timestamp::now();
        let bid_id = BidId::new();
        let expires_at = hold_expiry(now);
        // Hold and read the resulting utilisation under one lock.
        let held = {
            let mut book = node.book();
            book.ledger
                .try_hold(bid_id, check.needs, expires_at, now)
                .map(|()| book.ledger.utilisation(now))
        };
        match held {
            Ok(utilisation) => {
                out.bids.push(Bid {
                    node_id: me,
                    id: bid_id,
                    bid: check.price,
                    node_name: node.name().to_string(),
                    node_url: node.url.clone(),
                    latency: acc,
                    utilisation,
                    hold_expires_at: expires_at,
                });
            }
            // Another auction took the room between the check and the hold.
            Err(model::ledger::LedgerError::OutOfCapacity { needed, free }) => out
                .refusals
                .push(my_refusal(RefusalReason::OutOfCapacity { needed, free })),
            Err(e) => out
                .refusals
                .push(my_refusal(RefusalReason::Declined { why: e.to_string() })),
        }
    };

    match plan.self_bid {
        SelfBid::Always => bid_self(&mut out),
        SelfBid::Never if can_bid => out.refusals.push(my_refusal(RefusalReason::Declined {
            why: plan
                .decline_reason
                .clone()
                .unwrap_or_else(|| format!("{} does not bid here", node.config.strategy)),
        })),
        _ => {}
    }

    // Relay.
    let targets: Vec<(NeighbourState, PathLatency)> = plan
        .relay
        .iter()
        .filter_map(|id| links.get(id).cloned())
        .collect();
    let child = |acc: PathLatency| BidRequest {
        auction_id: req.auction_id,
        sla: sla.clone(),
        node_origin: Some(me),
        accumulated_latency: acc,
        timeout_ms: 0,
        path: path.clone(),
        ticket: req.ticket.clone(),
    };
    match plan.mode {
        AskMode::Parallel => {
            let calls = targets
                .iter()
                .map(|(n, acc)| relay(&node, n, child(*acc), deadline));
            for answer in join_all(calls).await {
                out.bids.extend(answer.bids);
                out.refusals.extend(answer.refusals);
                out.dropped.extend(answer.dropped);
            }
        }
        AskMode::Sequential => {
            for (n, acc) in &targets {
                let answer = relay(&node, n, child(*acc), deadline).await;
                let found = !answer.bids.is_empty();
                out.bids.extend(answer.bids);
                out.refusals.extend(answer.refusals);
                out.dropped.extend(answer.dropped);
                if found {
                    break;
                }
            }
        }
    }

    if plan.self_bid == SelfBid::IfNoneFromNeighbours && out.bids.is_empty() {
        bid_self(&mut out);
    }

    if plan.filter != BidFilter::All {
        let all = std::mem::take(&mut out.bids);
        let kept = node.with_rng(|rng| {
            strategy::filter_bids(plan.filter, all.clone(), sla.nodes as usize, rng)
        });
        let dropped: Vec<Bid> = all
            .into_iter()
            .filter(|b| !kept.iter().any(|k| k.id == b.id))
            .collect();
        out.dropped.extend(release_dropped(&node, me, dropped));
        out.bids = kept;
    }
    tracing::debug!(
        auction_id = %req.auction_id,
        bids = out.bids.len(),
        refusals = out.refusals.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "answered bid request"
    );
    out
}

/// Relays to one neighbour with what is left of the deadline; failures become refusals.
async fn relay(
    node: &Node,
    n: &NeighbourState,
    mut req: BidRequest,
    deadline: Instant,
) -> BidResponse {
    let left = remaining(deadline);
    // Keep a margin for our own answer to travel back: 5 % of what is left, at least 5 ms.
    let margin = (left / 20).max(Duration::from_millis(5));
    let call_timeout = left.saturating_sub(margin);
    let unreachable = |error: String| BidResponse {
        bids: Vec::new(),
        refusals: vec![Refusal {
            node_id: n.info.node_id,
            node_name: n.info.name.clone(),
            reason: RefusalReason::Unreachable { error },
        }],
        dropped: Vec::new(),
    };
    if call_timeout < MIN_RELAY_BUDGET {
        return unreachable("no time left in the auction deadline to relay".into());
    }
    // The neighbour answers within its own budget, a little shorter than our call timeout.
    let child_budget =
        call_timeout.saturating_sub((call_timeout / 10).max(Duration::from_millis(3)));
    req.timeout_ms = child_budget.as_millis() as u64;
    let Some(identity) = node.identity() else {
        return unreachable("this node is not enrolled".into());
    };
    let result: Result<BidResponse, _> = match Call::post(&n.info.url, "/api/bid").json(&req) {
        Ok(call) => {
            node.client
                .call(
                    call.timeout(call_timeout),
                    node.peer_signer(&identity, n.info.node_id, &n.info.public_key),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(mut answer) => {
            // Never trust a peer's numbers blindly.
            for b in &mut answer.bids {
                b.latency = b.latency.sanitized();
                b.utilisation = if b.utilisation.is_finite() {
                    b.utilisation.clamp(0.0, 1.0)
                } else {
                    1.0
                };
            }
            answer
        }
        Err(e) => {
            tracing::debug!(neighbour = %n.info.name, error = %e, "relay failed");
            unreachable(e.to_string())
        }
    }
}

/// Measures a neighbour's RTT once, now (its link was never measured).
async fn probe_now(node: &Node, n: &NeighbourState, left: Duration) -> Option<PathLatency> {
    let timeout = ON_DEMAND_PROBE_TIMEOUT.min(left / 4);
    let rtt = crate::tasks::membership::probe(node, &n.info.url, timeout).await;
    node.observe_probe(n.info.node_id, rtt);
    node.neighbours()
        .into_iter()
        .find(|x| x.info.node_id == n.info.node_id)
        .and_then(|x| node.link_latency(&x))
}

/// Frees the holds behind our own bids a consolidation filter dropped, and returns the others:
/// only the marketplace may release holds on a node, so no node can free another owner's
/// capacity; the marketplace releases them with the auction's losers.
fn release_dropped(node: &Arc<Node>, me: NodeId, dropped: Vec<Bid>) -> Vec<DroppedBid> {
    let others = dropped
        .iter()
        .filter(|b| b.node_id != me)
        .map(|b| DroppedBid {
            node_id: b.node_id,
            bid_id: b.id,
        })
        .collect();
    let mine: Vec<_> = dropped
        .iter()
        .filter(|b| b.node_id == me)
        .map(|b| b.id)
        .collect();
    if !mine.is_empty() {
        node.release_holds(&mine);
    }
    others
}
