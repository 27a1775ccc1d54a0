//! Placing a function (`PUT /api/function`): the caller's limits and the target, the reverse
//! auction over the overlay, accepting the winners with fallback, releasing every other hold,
//! recording the outcome, and provisioning when asked.

use super::lifecycle::SIDE_CALL_TIMEOUT;
use super::market::Marketplace;
use crate::clients::{AuctionSlot, Caller};
use crate::error::ServiceError;
use crate::metrics::{AuctionOutcome, Metrics};
use crate::node_client::{NodeAddr, NodeCallError};
use crate::repository::{
    AuctionResult, BidRecord, NodeRecord, PlacementEvent, PlacementRecord, PlacementState,
    RepoError, SlaOrigin, event, outcome,
};
use crate::views::FunctionView;
use model::auction::{AuctionRule, Award, run_auction};
use model::latency::PathLatency;
use model::protocol::{
    AcceptRequest, AcceptResponse, AuctionTicket, Bid, BidRequest, DroppedBid, Refusal,
    RefusalReason,
};
use model::{AuctionId, BidId, NodeId, Price, Sla, SlaId, Timestamp};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// More dropped bids than this in one auction is not a tree's doing; the rest expire.
const MAX_DROPPED: usize = 10_000;

/// A placement request, as extracted by the handler.
#[derive(Debug, Clone)]
pub struct PlaceRequest {
    pub sla: Sla,
    /// Node id or node name.
    pub target_node: String,
    /// Provision the winners in the same call.
    pub provision: bool,
}

/// Counts one auction in the metrics when dropped, with the outcome reached by then
/// (`failed` when the auction ended early on an error).
struct AuctionRecorder<'a> {
    metrics: &'a Metrics,
    rule: AuctionRule,
    outcome: AuctionOutcome,
    bids: usize,
}

impl<'a> AuctionRecorder<'a> {
    fn new(metrics: &'a Metrics, rule: AuctionRule) -> Self {
        Self {
            metrics,
            rule,
            outcome: AuctionOutcome::Failed,
            bids: 0,
        }
    }
}

impl Drop for AuctionRecorder<'_> {
    fn drop(&mut self) {
        self.metrics
            .auction(&self.rule.to_string(), self.outcome, self.bids);
    }
}

/// Registered nodes by id: only these may win, at the URL the marketplace knows.
type Registry = HashMap<NodeId, NodeRecord>;

/// What the target answered to the bid request (relayed over the overlay).
#[derive(Default)]
struct Answers {
    bids: Vec<Bid>,
    refusals: Vec<Refusal>,
    dropped: Vec<DroppedBid>,
}

/// The bids an auction runs on.
struct Bids {
    /// Every distinct bid received, cleaned; each holds resources on its node until released.
    all: Vec<Bid>,
    /// Those of registered, alive nodes, with the name and URL the marketplace knows.
    eligible: Vec<Bid>,
}

/// The outcome of awarding and accepting.
struct Acceptance {
    /// How many hosting nodes the SLA wants.
    wanted: usize,
    /// The winners that accepted, in award order.
    accepted: Vec<(Award, AcceptResponse)>,
    /// Bids whose node refused (or failed) the accept.
    refused: HashSet<BidId>,
    /// Bids over the SLA's maximum price in the first round.
    over_max: Vec<Bid>,
}

impl Acceptance {
    /// Whether every wanted node accepted (k nodes or none: otherwise nothing is placed).
    fn placed(&self) -> bool {
        self.accepted.len() == self.wanted
    }

    /// The winners that become placements: every accepted one, or none.
    fn winners(&self) -> &[(Award, AcceptResponse)] {
        if self.placed() { &self.accepted } else { &[] }
    }

    /// The bids whose holds become placements.
    fn kept(&self) -> HashSet<BidId> {
        self.winners().iter().map(|(a, _)| a.bid.id).collect()
    }
}

/// How an auction closes: its id, when, and what it replaces (a re-placement).
struct Closing<'a> {
    auction_id: AuctionId,
    finished_at: Timestamp,
    replacing: Option<&'a Replacing>,
}

/// A re-placement: what the auction replaces, for its records.
pub(super) struct Replacing {
    /// When the placement's lifetime ends (a move does not extend it).
    pub(super) ends_at: Timestamp,
    /// The lost hosts, and when each was last heard of (their billing ends there).
    pub(super) lost: Vec<(NodeId, Timestamp)>,
    /// Why they are lost.
    pub(super) reason: String,
}

impl Replacing {
    /// The history of a successful move: each lost host (when it was last heard of), then
    /// each new one (when the auction closed).
    fn events(
        &self,
        sla: SlaId,
        placements: &[PlacementRecord],
        at: Timestamp,
    ) -> Vec<PlacementEvent> {
        let lost = self.lost.iter().map(|(node, died)| PlacementEvent {
            sla_id: sla,
            at: (*died).min(at),
            node_id: Some(*node),
            event: event::HOST_LOST.to_string(),
            reason: self.reason.clone(),
        });
        let moved = placements.iter().map(|p| PlacementEvent {
            sla_id: sla,
            at,
            node_id: Some(p.node_id),
            event: event::MOVED_TO.to_string(),
            reason: format!("auctioned again among the live nodes at {}", p.price),
        });
        lost.chain(moved).collect()
    }
}

fn refusal(node: NodeId, name: &str, reason: RefusalReason) -> Refusal {
    Refusal {
        node_id: node,
        node_name: name.to_string(),
        reason,
    }
}

/// Keeps the first of each bid id, makes latencies and utilisations sane, and keeps as
/// eligible only bids of registered, alive nodes (the others become refusals).
fn screen_bids(received: Vec<Bid>, registry: &Registry, refusals: &mut Vec<Refusal>) -> Bids {
    let mut seen_bid_ids = HashSet::new();
    let mut eligible: Vec<Bid> = Vec::new();
    let mut all: Vec<Bid> = Vec::new();
    for mut b in received {
        if !seen_bid_ids.insert(b.id) {
            continue;
        }
        b.latency = b.latency.sanitized();
        if !b.utilisation.is_finite() {
            b.utilisation = 0.0;
        }
        match registry.get(&b.node_id) {
            Some(n) if n.alive => {
                b.node_name = n.name.clone();
                b.node_url = n.url.clone();
                eligible.push(b.clone());
            }
            Some(n) => refusals.push(refusal(
                n.id,
                &n.name,
                RefusalReason::Declined {
                    why: "node is not alive at the marketplace (missed heartbeats)".into(),
                },
            )),
            None => refusals.push(refusal(
                b.node_id,
                &b.node_name,
                RefusalReason::Declined {
                    why: "node is not registered at the marketplace".into(),
                },
            )),
        }
        all.push(b);
    }
    Bids { all, eligible }
}

/// Why a winner did not accept, as a refusal.
fn accept_refusal(award: &Award, e: &NodeCallError) -> Refusal {
    let reason = match e {
        NodeCallError::Refused(m) => RefusalReason::Declined {
            why: format!("refused the accept: {m}"),
        },
        other => RefusalReason::Unreachable {
            error: format!("accept failed: {other}"),
        },
    };
    refusal(award.bid.node_id, &award.bid.node_name, reason)
}

/// One refusal per bid over the SLA's maximum price.
fn over_max_refusals(over_max: &[Bid], max_price: Option<Price>) -> Vec<Refusal> {
    let Some(max_price) = max_price else {
        return Vec::new();
    };
    over_max
        .iter()
        .map(|b| {
            refusal(
                b.node_id,
                &b.node_name,
                RefusalReason::OverMaxPrice {
                    bid: b.bid,
                    max_price,
                },
            )
        })
        .collect()
}

/// The error of an auction that could not place `wanted` nodes.
fn no_feasible_node(
    wanted: usize,
    accepted: usize,
    bids: usize,
    refusals: Vec<Refusal>,
) -> ServiceError {
    let message = if accepted == 0 && bids == 0 {
        format!(
            "no fog node could host this SLA ({} refusal(s))",
            refusals.len()
        )
    } else {
        format!(
            "{wanted} hosting node(s) wanted, {accepted} feasible bid(s) could be accepted; see refusals"
        )
    };
    ServiceError::NoFeasibleNode { message, refusals }
}

impl Marketplace {
    /// `PUT /api/function`: runs the auction, accepts the winners (falling back to the next bid
    /// when a winner refuses), releases the losers, persists everything.
    ///
    /// The placement belongs to `caller`'s client (in token mode). Before anything is asked of
    /// a node, the caller's limits are checked: its placement rate, its auctions in flight and
    /// its live placements (429 beyond any of them).
    #[tracing::instrument(skip_all, fields(sla_id = %req.sla.id, target = %req.target_node))]
    pub async fn place_function(
        &self,
        caller: &Caller,
        req: PlaceRequest,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        let request_started = Instant::now();
        // 1. Validate: the caller's limits (the slot is held until the auction, and the
        // provisioning when asked, is over) and the target.
        let _slot = self.admit(caller, &req.sla).await?;
        let target = self.resolve_target(&req.target_node).await?;
        let sla = req.sla;
        let auction_id = AuctionId::new();
        let started = Instant::now();
        self.open_auction(caller, &sla, &target, auction_id, now)
            .await?;
        // Counts the auction when this function returns, whichever way (`failed` unless an
        // outcome is set below).
        let mut recorder = AuctionRecorder::new(&self.metrics, self.rule);

        // 2. Auction: ask the target, which relays over the overlay and answers by the
        // deadline; only registered, alive nodes may win.
        let Answers {
            bids: received,
            mut refusals,
            dropped,
        } = self.ask_for_bids(&target, &sla, auction_id, now).await?;
        let registry = self.registry().await?;
        let bids = screen_bids(received, &registry, &mut refusals);
        recorder.bids = bids.all.len();

        // 3. Hold/accept: award, accept, fall back; then release every hold that did not
        // become a placement.
        let acceptance = self
            .award_and_accept(&sla, &bids.eligible, &mut refusals)
            .await;
        refusals.extend(over_max_refusals(&acceptance.over_max, sla.max_price));
        self.release_unplaced(&bids.all, &acceptance.kept(), &dropped, &registry);
        if !acceptance.placed() {
            // Undo partial success: k nodes or none.
            for (award, _) in &acceptance.accepted {
                self.cancel_in_background(award.bid.node_id, award.bid.node_url.clone(), sla.id);
            }
        }

        // 4. Record.
        let finished_at = now.plus(started.elapsed());
        self.record_auction(
            &sla,
            Closing {
                auction_id,
                finished_at,
                replacing: None,
            },
            &bids.all,
            &acceptance,
            &refusals,
        )
        .await?;
        if acceptance.placed() {
            recorder.outcome = AuctionOutcome::Placed;
            self.metrics.placement_duration(request_started.elapsed());
        } else {
            recorder.outcome = AuctionOutcome::NoFeasibleNode;
        }
        drop(recorder);
        if !acceptance.placed() {
            return Err(no_feasible_node(
                acceptance.wanted,
                acceptance.accepted.len(),
                bids.all.len(),
                refusals,
            ));
        }

        // 5. Provision, when asked.
        let mut errors = Vec::new();
        if req.provision {
            errors = self.provision_placements(sla.id, finished_at).await?;
        }
        let mut view = self.view(sla.id).await?;
        view.errors = errors;
        Ok(view)
    }

    /// Runs an auction for `sla` again (its `nodes` = the copies to replace, its `duration` =
    /// what is left of its lifetime) among the live nodes that do not host it already, and
    /// records it with the move. Ok(true) when every wanted copy found a host; Ok(false)
    /// (recorded as an auction that placed nothing) with the refusals' summary otherwise.
    pub(super) async fn replacement_auction(
        &self,
        sla: &Sla,
        target: &NodeRecord,
        exclude: &HashSet<NodeId>,
        replacing: &Replacing,
        now: Timestamp,
    ) -> Result<Result<(), String>, ServiceError> {
        let auction_id = AuctionId::new();
        let started = Instant::now();
        self.repo
            .insert_auction(sla.id, target.id, auction_id, self.rule, now)
            .await?;
        let mut recorder = AuctionRecorder::new(&self.metrics, self.rule);
        let Answers {
            bids: received,
            mut refusals,
            dropped,
        } = self.ask_for_bids(target, sla, auction_id, now).await?;
        let registry = self.registry().await?;
        let bids = screen_bids(received, &registry, &mut refusals);
        recorder.bids = bids.all.len();
        let eligible: Vec<Bid> = bids
            .eligible
            .iter()
            .filter(|b| !exclude.contains(&b.node_id))
            .cloned()
            .collect();
        let acceptance = self.award_and_accept(sla, &eligible, &mut refusals).await;
        refusals.extend(over_max_refusals(&acceptance.over_max, sla.max_price));
        self.release_unplaced(&bids.all, &acceptance.kept(), &dropped, &registry);
        if !acceptance.placed() {
            for (award, _) in &acceptance.accepted {
                self.cancel_in_background(award.bid.node_id, award.bid.node_url.clone(), sla.id);
            }
        }
        let finished_at = now.plus(started.elapsed());
        self.record_auction(
            sla,
            Closing {
                auction_id,
                finished_at,
                replacing: Some(replacing),
            },
            &bids.all,
            &acceptance,
            &refusals,
        )
        .await?;
        if acceptance.placed() {
            recorder.outcome = AuctionOutcome::Placed;
            return Ok(Ok(()));
        }
        recorder.outcome = AuctionOutcome::NoFeasibleNode;
        let err = no_feasible_node(
            acceptance.wanted,
            acceptance.accepted.len(),
            bids.all.len(),
            refusals,
        );
        Ok(Err(err.to_string()))
    }

    /// The caller's limits: placement rate, auctions in flight (the slot returned counts this
    /// one until dropped) and live placements. Callers without a limit key are not limited.
    async fn admit<'a>(
        &'a self,
        caller: &Caller,
        sla: &Sla,
    ) -> Result<Option<AuctionSlot<'a>>, ServiceError> {
        let Some(key) = caller.limit_key() else {
            return Ok(None);
        };
        self.clients
            .check_rate(key)
            .map_err(ServiceError::ClientLimit)?;
        let slot = self
            .clients
            .start_auction(key)
            .map_err(ServiceError::ClientLimit)?;
        let live = self.repo.count_active_placements_of(key).await?;
        self.clients
            .check_live(live, u64::from(sla.nodes))
            .map_err(ServiceError::ClientLimit)?;
        Ok(Some(slot))
    }

    /// The target node by id or name; it must be alive.
    async fn resolve_target(&self, target: &str) -> Result<NodeRecord, ServiceError> {
        let by_id = match target.parse::<NodeId>() {
            Ok(id) => self.repo.node_by_id(id).await?,
            Err(_) => None,
        };
        let node = match by_id {
            Some(n) => Some(n),
            None => self.repo.node_by_name(target).await?,
        };
        let node = node.ok_or_else(|| ServiceError::UnknownTargetNode(target.to_string()))?;
        if !node.alive {
            return Err(ServiceError::TargetNodeDead {
                id: node.id,
                name: node.name,
            });
        }
        Ok(node)
    }

    /// Records the SLA, owned by `caller`'s client, and its auction as started.
    async fn open_auction(
        &self,
        caller: &Caller,
        sla: &Sla,
        target: &NodeRecord,
        auction_id: AuctionId,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let origin = SlaOrigin {
            owner: caller.owner(),
            client_addr: caller.peer(),
        };
        self.repo
            .insert_sla_and_auction_from(sla, target.id, auction_id, self.rule, origin, now)
            .await
            .map_err(|e| match e {
                RepoError::Conflict(_) => {
                    ServiceError::Conflict(format!("an SLA with id {} already exists", sla.id))
                }
                e => e.into(),
            })
    }

    /// How long a node has to answer a bid request or an accept.
    fn bid_deadline(&self) -> Duration {
        self.auction_timeout.saturating_add(self.call_margin)
    }

    /// Sends the bid request, with a ticket signed by the marketplace, to the target. A target
    /// that does not answer is a refusal, not an error.
    async fn ask_for_bids(
        &self,
        target: &NodeRecord,
        sla: &Sla,
        auction_id: AuctionId,
        now: Timestamp,
    ) -> Result<Answers, ServiceError> {
        let bid_request = BidRequest {
            auction_id,
            sla: sla.clone(),
            node_origin: None,
            accumulated_latency: PathLatency::ZERO,
            timeout_ms: self.auction_timeout.as_millis() as u64,
            path: Vec::new(),
            ticket: AuctionTicket::issue(&self.key, auction_id, sla, now.plus(self.bid_deadline()))
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        };
        let node = NodeAddr {
            id: target.id,
            url: &target.url,
        };
        Ok(
            match self
                .nodes
                .bid(node, &bid_request, self.bid_deadline())
                .await
            {
                Ok(resp) => Answers {
                    bids: resp.bids,
                    refusals: resp.refusals,
                    dropped: resp.dropped,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "target node did not answer the bid request");
                    Answers {
                        refusals: vec![refusal(
                            target.id,
                            &target.name,
                            RefusalReason::Unreachable {
                                error: e.to_string(),
                            },
                        )],
                        ..Answers::default()
                    }
                }
            },
        )
    }

    /// Every registered node, by id.
    async fn registry(&self) -> Result<Registry, ServiceError> {
        Ok(self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id, n))
            .collect())
    }

    /// Runs the auction for the slots still open and asks the winners to accept, all at once;
    /// a winner that refuses is excluded and the auction runs again on the rest, until
    /// `sla.nodes` winners accepted or too few bids are left.
    async fn award_and_accept(
        &self,
        sla: &Sla,
        eligible: &[Bid],
        refusals: &mut Vec<Refusal>,
    ) -> Acceptance {
        let wanted = sla.nodes as usize;
        let mut result = Acceptance {
            wanted,
            accepted: Vec::new(),
            refused: HashSet::new(),
            over_max: Vec::new(),
        };
        let mut excluded: HashSet<NodeId> = HashSet::new();
        let mut first_round = true;
        while result.accepted.len() < wanted {
            let slots = wanted - result.accepted.len();
            let candidates: Vec<Bid> = eligible
                .iter()
                .filter(|b| !excluded.contains(&b.node_id))
                .cloned()
                .collect();
            let outcome = {
                let mut rng = rand::rng();
                run_auction(self.rule, &candidates, slots, sla.max_price, &mut rng)
            };
            if first_round {
                result.over_max = outcome.over_max_price.clone();
                first_round = false;
            }
            if outcome.winners.len() < slots {
                break;
            }
            let calls = outcome.winners.iter().map(|award| {
                let accept = AcceptRequest {
                    bid_id: award.bid.id,
                    sla: sla.clone(),
                    price: award.price,
                };
                let url = award.bid.node_url.clone();
                let id = award.bid.node_id;
                async move {
                    self.nodes
                        .accept(NodeAddr { id, url: &url }, &accept, self.bid_deadline())
                        .await
                }
            });
            let results = futures::future::join_all(calls).await;
            for (award, answer) in outcome.winners.into_iter().zip(results) {
                excluded.insert(award.bid.node_id);
                match answer {
                    Ok(resp) => {
                        tracing::info!(node = %award.bid.node_name, price = %award.price, "winner accepted");
                        result.accepted.push((award, resp));
                    }
                    Err(e) => {
                        tracing::warn!(node = %award.bid.node_name, error = %e, "winner did not accept; falling back");
                        result.refused.insert(award.bid.id);
                        refusals.push(accept_refusal(&award, &e));
                    }
                }
            }
        }
        result
    }

    /// Releases every hold that did not become a placement (best effort, not awaited): the
    /// bids not kept, and the bids a relay dropped before they reached the auction.
    fn release_unplaced(
        &self,
        bids: &[Bid],
        kept: &HashSet<BidId>,
        dropped: &[DroppedBid],
        registry: &Registry,
    ) {
        self.release_holds(
            bids.iter()
                .filter(|b| !kept.contains(&b.id))
                .map(|b| (b.node_id, b.id)),
            registry,
        );
        self.release_dropped(dropped, bids, registry);
    }

    /// Releases holds, one batch per registered node (unknown nodes are skipped; their holds
    /// expire).
    fn release_holds(&self, holds: impl Iterator<Item = (NodeId, BidId)>, registry: &Registry) {
        let mut by_node: BTreeMap<NodeId, Vec<BidId>> = BTreeMap::new();
        for (node, bid) in holds {
            by_node.entry(node).or_default().push(bid);
        }
        for (node, bid_ids) in by_node {
            if let Some(n) = registry.get(&node) {
                self.releases.release(n.id, &n.url, bid_ids);
            }
        }
    }

    /// Releases the holds of bids a relay's filter dropped (they never reached the auction).
    /// A bid that did reach it is left to the auction's own release, so a relay cannot get a
    /// competitor's winning hold released by calling it dropped; unknown nodes are skipped.
    fn release_dropped(&self, dropped: &[DroppedBid], received: &[Bid], registry: &Registry) {
        let received: HashSet<BidId> = received.iter().map(|b| b.id).collect();
        self.release_holds(
            dropped
                .iter()
                .take(MAX_DROPPED)
                .filter(|d| !received.contains(&d.bid_id))
                .map(|d| (d.node_id, d.bid_id)),
            registry,
        );
    }

    fn cancel_in_background(&self, id: NodeId, url: String, sla: SlaId) {
        let client = self.nodes.clone();
        tokio::spawn(
            async move {
                let node = NodeAddr { id, url: &url };
                if let Err(e) = client.cancel(node, sla, SIDE_CALL_TIMEOUT).await {
                    tracing::warn!(%url, error = %e, "rollback cancel failed; the reservation will expire");
                }
            }
            // Part of the placement's trace.
            .in_current_span(),
        );
    }

    /// Counts refusals and winning prices, then stores the auction's outcome with its bids and,
    /// when it placed the SLA, the winners as reserved placements.
    async fn record_auction(
        &self,
        sla: &Sla,
        closing: Closing<'_>,
        bids: &[Bid],
        acceptance: &Acceptance,
        refusals: &[Refusal],
    ) -> Result<(), ServiceError> {
        let Closing {
            auction_id,
            finished_at,
            replacing,
        } = closing;
        self.metrics.refusals(refusals.iter().map(|r| &r.reason));
        for (award, _) in acceptance.winners() {
            self.metrics.winning_price(award.price.value());
        }
        let placements: Vec<PlacementRecord> = acceptance
            .winners()
            .iter()
            .map(|(award, _)| PlacementRecord {
                sla_id: sla.id,
                node_id: award.bid.node_id,
                bid_id: award.bid.id,
                auction_id,
                price: award.price,
                state: PlacementState::Reserved,
                created_at: finished_at,
                ends_at: replacing.map_or_else(
                    || finished_at.plus(sla.duration.as_duration()),
                    |r| r.ends_at,
                ),
                updated_at: finished_at,
                invoke_url: None,
                error: None,
            })
            .collect();
        let kept = acceptance.kept();
        let bid_records = bids
            .iter()
            .map(|b| BidRecord {
                auction_id,
                bid: b.clone(),
                won: kept.contains(&b.id),
                refused_accept: acceptance.refused.contains(&b.id),
            })
            .collect();
        let outcome = if acceptance.placed() {
            outcome::AWARDED
        } else {
            outcome::NO_FEASIBLE_NODE
        };
        self.repo
            .record_auction_result(&AuctionResult {
                auction_id,
                finished_at,
                outcome: outcome.to_string(),
                refusals: refusals.to_vec(),
                bids: bid_records,
                events: match replacing {
                    Some(r) if acceptance.placed() => r.events(sla.id, &placements, finished_at),
                    _ => Vec::new(),
                },
                moved: match replacing {
                    Some(r) if acceptance.placed() => r.lost.clone(),
                    _ => Vec::new(),
                },
                placements,
            })
            .await?;
        Ok(())
    }
}
