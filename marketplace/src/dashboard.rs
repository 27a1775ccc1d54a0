//! The operator dashboard's data: `GET /api/dashboard`, one JSON aggregate of the federation
//! (the page `GET /` renders it every second).
//!
//! The aggregate joins the marketplace's own records (nodes, active placements, the last
//! [`RECENT_AUCTIONS`] auctions with their bids and winners) with what every fog node says
//! about itself: `GET <nodeUrl>/api/state` (neighbours and link latencies, used resources) and
//! `GET <nodeUrl>/api/offload` (hosted functions and cumulative invocation `totals`). Nodes are
//! asked concurrently, each call bounded by [`DashboardConfig::node_timeout`]; a node that does
//! not answer is shown as unreachable, it never fails the aggregate, and `totals` are optional.
//!
//! Invocation rates are computed here from successive `totals` samples, one previous sample per
//! node, so the JSON carries per-second rates. The aggregate is cached for
//! [`DashboardConfig::cache_ttl`] and built by one request at a time (the others wait for it),
//! so many open browsers do not multiply node calls.

use crate::error::ServiceError;
use crate::repository::{
    ActivePlacement, BidRecord, NodeRecord, PlacementRecord, PlacementState, RecentAuction,
    RepoError, Repository,
};
use crate::views::overall_state;
use model::auction::AuctionRule;
use model::protocol::Resources;
use model::{AuctionId, BidId, NodeId, SlaId, Timestamp};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use signed_http::{Call, CallError, SignedClient, Signer};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many auctions the dashboard lists, newest first.
pub const RECENT_AUCTIONS: u32 = 20;
/// Deeper nodes are listed as roots of their own (a guard against absurd chains).
const MAX_TREE_DEPTH: usize = 64;

/// Timing of the dashboard aggregate.
#[derive(Debug, Clone, Copy)]
pub struct DashboardConfig {
    /// How long one aggregate is served before the next request rebuilds it.
    pub cache_ttl: Duration,
    /// Deadline of each call to a node (`/api/state`, `/api/offload`).
    pub node_timeout: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(1),
            node_timeout: Duration::from_millis(500),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// `GET /api/dashboard`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardView {
    pub generated_at: Timestamp,
    /// The marketplace's auction rule.
    pub rule: String,
    pub summary: Summary,
    /// The federation: root nodes, each with its `children`, nested.
    pub tree: Vec<NodeView>,
    /// Placements not over yet (reserved, provisioning, live), one entry per SLA.
    pub placements: Vec<PlacementView>,
    /// The last [`RECENT_AUCTIONS`] auctions, newest first.
    pub auctions: Vec<AuctionSummary>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub nodes: usize,
    pub alive_nodes: usize,
    pub dead_nodes: usize,
    /// Nodes whose `/api/state` did not answer this time.
    pub unreachable_nodes: usize,
    /// SLAs with a reserved, provisioning or live placement.
    pub active_placements: usize,
    /// SLAs whose placements are all live.
    pub live_placements: usize,
    /// Sum of the nodes' rates (nodes without a rate yet are left out); `null` when no node
    /// has a rate.
    pub invocation_rates: Option<InvocationRates>,
}

/// CPU and memory, both as text (`"4 cpu"`, `"8 GiB"`) and as numbers.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesView {
    pub cpu: model::Cpu,
    pub memory: model::Bytes,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl From<Resources> for ResourcesView {
    fn from(r: Resources) -> Self {
        Self {
            cpu: r.cpu,
            memory: r.memory,
            cpu_millis: r.cpu.millis(),
            memory_bytes: r.memory.as_u64(),
        }
    }
}

/// One fog node in the tree.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: NodeId,
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
    /// Parent's name as registered (also when that parent is unknown).
    pub parent: Option<String>,
    pub url: String,
    /// Liveness at the marketplace (heartbeats).
    pub alive: bool,
    pub last_seen: Timestamp,
    pub capacity: ResourcesView,
    /// Reserved resources as last reported by the node's heartbeat.
    pub reserved: ResourcesView,
    /// Whether the node answered `GET /api/state` this time.
    pub reachable: bool,
    /// Why `GET /api/state` failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Used resources (reservations and holds) as the node reports them.
    pub used: Option<ResourcesView>,
    /// Open bid holds on the node.
    pub holds: Option<u64>,
    /// Overlay links as the node measures them.
    pub neighbours: Vec<LinkView>,
    /// Active placements (reserved, provisioning, live) the marketplace has on this node.
    pub placements: usize,
    /// Functions the node serves, from its `/api/offload`.
    pub hosted_functions: Option<usize>,
    /// Invocation counts and rates; `null` when the node does not report `totals`.
    pub invocations: Option<InvocationsView>,
    pub children: Vec<NodeView>,
}

/// A node's link to an overlay neighbour.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    pub node_id: Option<String>,
    pub name: String,
    /// `parent` or `child`.
    pub relation: Option<String>,
    pub alive: Option<bool>,
    /// One-way latency estimate (median), in ms; `null` before the first probe.
    pub latency_ms: Option<f64>,
    /// Its uncertainty (sigma), in ms.
    pub latency_sigma_ms: Option<f64>,
}

/// Cumulative invocation counts of a node (`/api/offload` `totals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationTotals {
    pub served: u64,
    pub forwarded: u64,
    pub rejected: u64,
}

/// Invocations per second.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRates {
    pub served: f64,
    pub forwarded: f64,
    pub rejected: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationsView {
    pub totals: InvocationTotals,
    /// Since the previous sample; `null` on the first sample and after a counter reset.
    pub per_second: Option<InvocationRates>,
}

/// One function (SLA) with an active placement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementView {
    pub sla_id: SlaId,
    pub function_name: String,
    pub function_image: String,
    pub target_node_id: NodeId,
    pub target_node_name: Option<String>,
    /// The least advanced state among the hosts.
    pub state: String,
    pub hosts: Vec<HostView>,
    /// What the marketplace pays, all hosts together.
    pub total_price: f64,
    pub created_at: Timestamp,
    /// The earliest end of the hosts' lifetimes.
    pub ends_at: Timestamp,
    /// `endsAt - generatedAt`, at least 0.
    pub remaining_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    pub node_id: NodeId,
    pub node_name: String,
    pub price: f64,
    pub state: PlacementState,
    pub ends_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionSummary {
    pub id: AuctionId,
    pub sla_id: SlaId,
    pub function_name: String,
    pub rule: String,
    pub target_node_id: NodeId,
    pub target_node_name: Option<String>,
    /// `running`, `awarded` or `no_feasible_node`.
    pub outcome: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    /// Every bid, lowest first.
    pub bids: Vec<AuctionBidSummary>,
    pub winners: Vec<AuctionWinnerSummary>,
    /// The lowest price paid to a winner; `null` when nothing was placed.
    pub price: Option<f64>,
    /// How many refusals the auction collected.
    pub refusals: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionBidSummary {
    pub bid_id: BidId,
    pub node_id: NodeId,
    pub node_name: String,
    pub price: f64,
    pub latency_ms: f64,
    pub won: bool,
    pub refused_accept: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionWinnerSummary {
    pub node_id: NodeId,
    pub node_name: String,
    /// The winner's own bid.
    pub bid: Option<f64>,
    /// What it is paid.
    pub price: f64,
    pub state: PlacementState,
}

// ---------------------------------------------------------------------------------------------
// Pure parts

/// Rates between two samples of a node's totals `elapsed` apart; `None` when no time passed
/// or a counter went backwards (the node restarted).
pub fn invocation_rates(
    prev: &InvocationTotals,
    cur: &InvocationTotals,
    elapsed: Duration,
) -> Option<InvocationRates> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0
        || cur.served < prev.served
        || cur.forwarded < prev.forwarded
        || cur.rejected < prev.rejected
    {
        return None;
    }
    let rate = |c: u64, p: u64| (c - p) as f64 / secs;
    Some(InvocationRates {
        served: rate(cur.served, prev.served),
        forwarded: rate(cur.forwarded, prev.forwarded),
        rejected: rate(cur.rejected, prev.rejected),
    })
}

/// Nests nodes under their parents (by name). Nodes whose parent is absent, unknown or
/// themselves are roots; nodes caught in a parent cycle, or deeper than [`MAX_TREE_DEPTH`],
/// become roots too, so every node appears exactly once. Order: by name at every level.
pub fn build_tree(mut nodes: Vec<NodeView>) -> Vec<NodeView> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots: Vec<usize> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent.as_ref().and_then(|p| index.get(p)) {
            Some(&p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    // Which node ends up where: walk from the roots, then from whatever a cycle left over.
    let mut placed = vec![false; nodes.len()];
    let mut order: Vec<(usize, Option<usize>)> = Vec::new(); // (node, parent in the output)
    let mut queue: std::collections::VecDeque<usize> = roots.into_iter().collect();
    let mut leftovers = 0..nodes.len();
    while let Some(root) = queue
        .pop_front()
        .or_else(|| leftovers.find(|&i| !placed[i]))
    {
        if placed[root] {
            continue;
        }
        placed[root] = true;
        order.push((root, None));
        let mut stack = vec![(root, 0usize)];
        while let Some((n, depth)) = stack.pop() {
            for &c in &children[n] {
                if placed[c] {
                    continue;
                }
                if depth + 1 >= MAX_TREE_DEPTH {
                    queue.push_back(c);
                    continue;
                }
                placed[c] = true;
                order.push((c, Some(n)));
                stack.push((c, depth + 1));
            }
        }
    }
    // Assemble bottom-up: children are attached after all of their own children.
    let mut slots: Vec<Option<NodeView>> = nodes.into_iter().map(Some).collect();
    let mut kids: Vec<Vec<NodeView>> = vec![Vec::new(); slots.len()];
    let mut out = Vec::new();
    for &(n, parent) in order.iter().rev() {
        let Some(mut view) = slots[n].take() else {
            continue;
        };
        let mut own = std::mem::take(&mut kids[n]);
        own.reverse();
        view.children = own;
        match parent {
            Some(p) => kids[p].push(view),
            None => out.push(view),
        }
    }
    out.reverse();
    out
}

// ---------------------------------------------------------------------------------------------
// What nodes say

/// The parts of a node's `GET /api/state` the dashboard shows; everything optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NodeStateDoc {
    used: Option<Resources>,
    holds: Option<u64>,
    neighbours: Vec<NeighbourDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NeighbourDoc {
    node_id: Option<String>,
    name: String,
    relation: Option<String>,
    alive: Option<bool>,
    latency: Option<LatencyDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LatencyDoc {
    median: Option<f64>,
    median_uncertainty: Option<f64>,
}

/// What the dashboard reads from the database.
struct Records {
    active: Vec<ActivePlacement>,
    recent: Vec<RecentAuction>,
    /// Bids of the recent auctions.
    bids: Vec<BidRecord>,
    /// Placements made by the recent auctions.
    winners: Vec<PlacementRecord>,
}

/// What one node answered (or why not).
struct NodeReport {
    state: Result<NodeStateDoc, String>,
    /// `GET /api/offload`: hosted functions and totals, when it answered.
    hosted_functions: Option<usize>,
    totals: Option<InvocationTotals>,
}

fn totals_of(offload: &Value) -> Option<InvocationTotals> {
    let t = offload.get("totals")?;
    let n = |k: &str| t.get(k).and_then(Value::as_u64);
    Some(InvocationTotals {
        served: n("served")?,
        forwarded: n("forwarded")?,
        rejected: n("rejected")?,
    })
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

// ---------------------------------------------------------------------------------------------
// Service

/// Builds and caches the dashboard aggregate. Shared by every clone of the marketplace.
pub struct Dashboard {
    repo: Repository,
    http: SignedClient,
    config: DashboardConfig,
    rule: AuctionRule,
    /// The latest aggregate and when it was built; the lock is held while building.
    cache: tokio::sync::Mutex<Option<(Instant, Arc<DashboardView>)>>,
    /// The previous totals sample of each node.
    samples: Mutex<HashMap<NodeId, (Instant, InvocationTotals)>>,
    builds: AtomicU64,
}

impl Dashboard {
    pub fn new(
        repo: Repository,
        http: SignedClient,
        rule: AuctionRule,
        config: DashboardConfig,
    ) -> Self {
        Self {
            repo,
            http,
            config,
            rule,
            cache: tokio::sync::Mutex::new(None),
            samples: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
        }
    }

    /// Aggregates built since start (each one asked every node once).
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// The aggregate, from the cache when it is younger than the TTL.
    pub async fn view(&self) -> Result<Arc<DashboardView>, ServiceError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, view)) = cache.as_ref()
            && at.elapsed() < self.config.cache_ttl
        {
            return Ok(view.clone());
        }
        let view = Arc::new(self.build(Timestamp::now()).await?);
        self.builds.fetch_add(1, Ordering::Relaxed);
        *cache = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    async fn build(&self, now: Timestamp) -> Result<DashboardView, ServiceError> {
        let nodes = self.repo.list_nodes().await?;
        let (reports, records) = tokio::join!(self.ask_nodes(&nodes), self.records());
        let Records {
            active,
            recent,
            bids,
            winners,
        } = records?;
        let sampled_at = Instant::now();
        let names: HashMap<NodeId, String> = nodes.iter().map(|n| (n.id, n.name.clone())).collect();
        let name_of = |id: NodeId, fallback: &str| {
            names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| fallback.to_string())
        };

        // Placements, one entry per SLA, in the order of the SLAs' creation.
        let mut hosted: HashMap<NodeId, usize> = HashMap::new();
        let mut placements: Vec<PlacementView> = Vec::new();
        let mut records: Vec<Vec<PlacementRecord>> = Vec::new();
        let mut index: HashMap<SlaId, usize> = HashMap::new();
        for a in active {
            let p = a.placement;
            *hosted.entry(p.node_id).or_default() += 1;
            let i = *index.entry(p.sla_id).or_insert_with(|| {
                placements.push(PlacementView {
                    sla_id: p.sla_id,
                    function_name: a.sla.function_live_name.clone(),
                    function_image: a.sla.function_image.clone(),
                    target_node_id: a.target_node,
                    target_node_name: names.get(&a.target_node).cloned(),
                    state: String::new(),
                    hosts: Vec::new(),
                    total_price: 0.0,
                    created_at: p.created_at,
                    ends_at: p.ends_at,
                    remaining_ms: 0,
                });
                records.push(Vec::new());
                placements.len() - 1
            });
            let entry = &mut placements[i];
            entry.hosts.push(HostView {
                node_id: p.node_id,
                node_name: name_of(p.node_id, ""),
                price: p.price.value(),
                state: p.state,
                ends_at: p.ends_at,
            });
            entry.total_price += p.price.value();
            entry.created_at = entry.created_at.min(p.created_at);
            entry.ends_at = entry.ends_at.min(p.ends_at);
            records[i].push(p);
        }
        for (v, r) in placements.iter_mut().zip(&records) {
            v.state = overall_state(r);
            v.remaining_ms = u64::try_from(v.ends_at.since(now).as_millis()).unwrap_or(u64::MAX);
        }

        // Auctions with their bids and winners.
        let mut bids_by_auction: HashMap<AuctionId, Vec<AuctionBidSummary>> = HashMap::new();
        let mut bid_prices: HashMap<BidId, f64> = HashMap::new();
        for b in bids {
            bid_prices.insert(b.bid.id, b.bid.bid.value());
            bids_by_auction
                .entry(b.auction_id)
                .or_default()
                .push(AuctionBidSummary {
                    bid_id: b.bid.id,
                    node_id: b.bid.node_id,
                    node_name: name_of(b.bid.node_id, &b.bid.node_name),
                    price: b.bid.bid.value(),
                    latency_ms: finite(Some(b.bid.latency.median)).unwrap_or(0.0),
                    won: b.won,
                    refused_accept: b.refused_accept,
                });
        }
        let mut winners_by_auction: HashMap<AuctionId, Vec<AuctionWinnerSummary>> = HashMap::new();
        for p in winners {
            winners_by_auction
                .entry(p.auction_id)
                .or_default()
                .push(AuctionWinnerSummary {
                    node_id: p.node_id,
                    node_name: name_of(p.node_id, ""),
                    bid: bid_prices.get(&p.bid_id).copied(),
                    price: p.price.value(),
                    state: p.state,
                });
        }
        let auctions = recent
            .into_iter()
            .map(|r| {
                let a = r.auction;
                let winners = winners_by_auction.remove(&a.id).unwrap_or_default();
                AuctionSummary {
                    price: winners
                        .iter()
                        .map(|w| w.price)
                        .min_by(|x, y| x.total_cmp(y)),
                    bids: bids_by_auction.remove(&a.id).unwrap_or_default(),
                    winners,
                    refusals: a.refusals.len(),
                    id: a.id,
                    sla_id: a.sla_id,
                    function_name: r.sla.function_live_name,
                    rule: a.rule,
                    target_node_id: a.target_node,
                    target_node_name: names.get(&a.target_node).cloned(),
                    outcome: a.outcome,
                    started_at: a.started_at,
                    duration_ms: a
                        .finished_at
                        .map(|f| f.since(a.started_at).as_millis() as u64),
                    finished_at: a.finished_at,
                }
            })
            .collect();

        // Nodes, with what they said and their rates.
        let mut views = Vec::with_capacity(nodes.len());
        let mut samples = self.samples.lock();
        for (n, report) in nodes.into_iter().zip(reports) {
            let invocations = match report.totals {
                Some(totals) => {
                    let per_second = samples.get(&n.id).and_then(|(at, prev)| {
                        invocation_rates(prev, &totals, sampled_at.saturating_duration_since(*at))
                    });
                    samples.insert(n.id, (sampled_at, totals));
                    Some(InvocationsView { totals, per_second })
                }
                None => None,
            };
            views.push(node_view(
                n,
                report.state,
                report.hosted_functions,
                invocations,
                &hosted,
            ));
        }
        drop(samples);

        let rates: Vec<InvocationRates> = views
            .iter()
            .filter_map(|v| v.invocations.and_then(|i| i.per_second))
            .collect();
        let summary = Summary {
            nodes: views.len(),
            alive_nodes: views.iter().filter(|v| v.alive).count(),
            dead_nodes: views.iter().filter(|v| !v.alive).count(),
            unreachable_nodes: views.iter().filter(|v| !v.reachable).count(),
            active_placements: placements.len(),
            live_placements: placements.iter().filter(|p| p.state == "live").count(),
            invocation_rates: (!rates.is_empty()).then(|| {
                rates
                    .iter()
                    .fold(InvocationRates::default(), |acc, r| InvocationRates {
                        served: acc.served + r.served,
                        forwarded: acc.forwarded + r.forwarded,
                        rejected: acc.rejected + r.rejected,
                    })
            }),
        };
        Ok(DashboardView {
            generated_at: now,
            rule: self.rule.to_string(),
            summary,
            tree: build_tree(views),
            placements,
            auctions,
        })
    }

    /// The database part of the aggregate.
    async fn records(&self) -> Result<Records, RepoError> {
        let active = self.repo.active_placements().await?;
        let recent = self.repo.recent_auctions(RECENT_AUCTIONS).await?;
        let ids: Vec<AuctionId> = recent.iter().map(|r| r.auction.id).collect();
        let bids = self.repo.bids_of_auctions(&ids).await?;
        let winners = self.repo.placements_of_auctions(&ids).await?;
        Ok(Records {
            active,
            recent,
            bids,
            winners,
        })
    }

    /// Asks every node for `/api/state` and `/api/offload`, all concurrently.
    async fn ask_nodes(&self, nodes: &[NodeRecord]) -> Vec<NodeReport> {
        let calls = nodes.iter().map(|n| async move {
            let (state, offload) = tokio::join!(
                self.get_json(&n.url, "/api/state"),
                self.get_json(&n.url, "/api/offload")
            );
            let state = state.and_then(|v| {
                serde_json::from_value::<NodeStateDoc>(v)
                    .map_err(|e| format!("unreadable /api/state: {e}"))
            });
            let offload = offload.ok();
            NodeReport {
                state,
                hosted_functions: offload
                    .as_ref()
                    .and_then(|o| o.get("functions"))
                    .and_then(Value::as_array)
                    .map(Vec::len),
                totals: offload.as_ref().and_then(totals_of),
            }
        });
        futures::future::join_all(calls).await
    }

    /// `GET <base><path>` as JSON within the node timeout; the error as text.
    async fn get_json(&self, base: &str, path: &'static str) -> Result<Value, String> {
        let timeout = self.config.node_timeout;
        let call = Call::get(base, path).route(path).timeout(timeout);
        let read = self.http.call::<Value>(call, Signer::Anonymous);
        // The request timeout covers the body too; this bounds everything else.
        match tokio::time::timeout(timeout + Duration::from_millis(50), read).await {
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(describe(path, &e)),
        }
    }
}

/// A short reason for the page: the timeout, the status, or the innermost cause (e.g.
/// `cannot connect: Connection refused (os error 111)`).
fn describe(path: &str, e: &CallError) -> String {
    match e {
        CallError::Timeout { after, .. } => {
            format!("no answer within {} ms", after.as_millis())
        }
        CallError::Status { status, .. } => {
            format!("{path} answered HTTP {}", status.as_u16())
        }
        CallError::Transport { reason, .. } => format!("cannot connect: {reason}"),
        CallError::TooLarge { limit, .. } => format!("{path} answer larger than {limit} bytes"),
        CallError::Decode { reason, .. } => format!("{path}: not JSON: {reason}"),
        CallError::Encode(e) => format!("{path}: {e}"),
    }
}

fn node_view(
    n: NodeRecord,
    state: Result<NodeStateDoc, String>,
    hosted_functions: Option<usize>,
    invocations: Option<InvocationsView>,
    hosted: &HashMap<NodeId, usize>,
) -> NodeView {
    let (reachable, error, doc) = match state {
        Ok(doc) => (true, None, doc),
        Err(e) => (false, Some(e), NodeStateDoc::default()),
    };
    let mut seen = HashSet::new();
    let neighbours = doc
        .neighbours
        .into_iter()
        .filter(|l| seen.insert(l.name.clone()))
        .map(|l| LinkView {
            node_id: l.node_id,
            name: l.name,
            relation: l.relation,
            alive: l.alive,
            latency_ms: finite(l.latency.as_ref().and_then(|x| x.median)),
            latency_sigma_ms: finite(l.latency.as_ref().and_then(|x| x.median_uncertainty)),
        })
        .collect();
    NodeView {
        placements: hosted.get(&n.id).copied().unwrap_or(0),
        id: n.id,
        name: n.name,
        owner: n.owner,
        tags: n.tags,
        parent: n.parent,
        url: n.url,
        alive: n.alive,
        last_seen: n.last_seen,
        capacity: n.capacity.into(),
        reserved: n.reserved.into(),
        reachable,
        error,
        used: doc.used.map(Into::into),
        holds: doc.holds,
        neighbours,
        hosted_functions,
        invocations,
        children: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Bytes, Cpu};

    fn node(name: &str, parent: Option<&str>) -> NodeView {
        let r = ResourcesView::from(Resources::new(Cpu::from_cores(1), Bytes::from_mib(1)));
        NodeView {
            id: NodeId::new(),
            name: name.into(),
            owner: "o".into(),
            tags: Vec::new(),
            parent: parent.map(str::to_string),
            url: "http://x".into(),
            alive: true,
            last_seen: Timestamp::default(),
            capacity: r,
            reserved: r,
            reachable: true,
            error: None,
            used: None,
            holds: None,
            neighbours: Vec::new(),
            placements: 0,
            hosted_functions: None,
            invocations: None,
            children: Vec::new(),
        }
    }

    fn shape(tree: &[NodeView]) -> String {
        tree.iter()
            .map(|n| {
                if n.children.is_empty() {
                    n.name.clone()
                } else {
                    format!("{}({})", n.name, shape(&n.children))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn count(tree: &[NodeView]) -> usize {
        tree.iter().map(|n| 1 + count(&n.children)).sum()
    }

    #[test]
    fn nodes_are_nested_under_their_parents_by_name() {
        let tree = build_tree(vec![
            node("edge-2", Some("regional")),
            node("cloud", None),
            node("edge-1", Some("regional")),
            node("regional", Some("cloud")),
            node("other", Some("cloud")),
        ]);
        assert_eq!(shape(&tree), "cloud(other regional(edge-1 edge-2))");
    }

    #[test]
    fn unknown_parents_and_cycles_become_roots_and_no_node_is_lost() {
        let tree = build_tree(vec![
            node("a", Some("b")),
            node("b", Some("a")),
            node("orphan", Some("gone")),
            node("me", Some("me")),
        ]);
        assert_eq!(count(&tree), 4, "{}", shape(&tree));
        assert_eq!(shape(&tree), "me orphan a(b)");
    }

    #[test]
    fn a_very_long_chain_is_cut_into_roots_instead_of_nesting_without_bound() {
        let mut nodes = vec![node("n0000", None)];
        for i in 1..200 {
            nodes.push(node(&format!("n{i:04}"), Some(&format!("n{:04}", i - 1))));
        }
        let tree = build_tree(nodes);
        assert_eq!(count(&tree), 200);
        fn depth(t: &[NodeView]) -> usize {
            t.iter().map(|n| 1 + depth(&n.children)).max().unwrap_or(0)
        }
        assert!(depth(&tree) <= MAX_TREE_DEPTH, "depth {}", depth(&tree));
    }

    #[test]
    fn rates_are_the_counter_increase_per_second_between_samples() {
        let prev = InvocationTotals {
            served: 100,
            forwarded: 10,
            rejected: 0,
        };
        let cur = InvocationTotals {
            served: 150,
            forwarded: 30,
            rejected: 5,
        };
        let r = invocation_rates(&prev, &cur, Duration::from_millis(500));
        assert_eq!(
            r,
            Some(InvocationRates {
                served: 100.0,
                forwarded: 40.0,
                rejected: 10.0
            })
        );
    }

    #[test]
    fn no_rate_without_elapsed_time_or_after_a_counter_reset() {
        let prev = InvocationTotals {
            served: 100,
            forwarded: 0,
            rejected: 0,
        };
        let reset = InvocationTotals::default();
        assert_eq!(
            invocation_rates(&prev, &reset, Duration::from_secs(1)),
            None
        );
        assert_eq!(invocation_rates(&prev, &prev, Duration::ZERO), None);
    }

    #[test]
    fn totals_are_read_only_when_complete() {
        let v = serde_json::json!({"totals": {"served": 3, "forwarded": 2, "rejected": 1}});
        assert_eq!(
            totals_of(&v),
            Some(InvocationTotals {
                served: 3,
                forwarded: 2,
                rejected: 1
            })
        );
        assert_eq!(totals_of(&serde_json::json!({"functions": []})), None);
        assert_eq!(
            totals_of(
                &serde_json::json!({"totals": {"served": -1, "forwarded": 0, "rejected": 0}})
            ),
            None
        );
    }

    #[test]
    fn a_node_state_with_missing_or_extra_fields_is_read_leniently() {
        let doc: NodeStateDoc = serde_json::from_value(serde_json::json!({
            "nodeId": null, "name": "x", "whatever": [1],
            "neighbours": [{"name": "p", "relation": "parent", "alive": true,
                            "latency": {"median": 5.5, "medianUncertainty": 0.5}},
                           {"name": "q", "latency": null}]
        }))
        .expect("lenient");
        assert_eq!(doc.neighbours.len(), 2);
        assert_eq!(
            doc.neighbours[0].latency.as_ref().and_then(|l| l.median),
            Some(5.5)
        );
        assert!(doc.used.is_none());
    }
}
