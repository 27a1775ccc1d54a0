//! The marketplace and the fog nodes' bidding, simulated with `model`'s own rules: an SLA enters
//! the overlay tree at its target node and is relayed from node to node as each node's placement
//! strategy says (`model::strategy::plan`, `filter_bids`), each node assesses itself
//! (`model::bid::assess`: latency budget, free capacity, price cap, its pricing model) and holds
//! what it offers in its ledger (`model::ledger`), and the marketplace runs the auction rule
//! (`model::auction::run_auction`) over the bids that come back, confirms the winners' holds as
//! reservations and releases the others.
//!
//! The relay is computed in one call (a simulated node answers at once); its simulated duration
//! is what the real federation spends on the links: a relay to a neighbour costs the round trip
//! of the link, neighbours asked in parallel cost the slowest of them, neighbours asked one at a
//! time cost the sum up to the first that returns a bid. Link latencies are the topology's
//! configured ones (the real nodes measure theirs; with link emulation the two agree).

use model::auction::{AuctionRule, Award, run_auction};
use model::bid::assess;
use model::ids::{BidId, NodeId, SlaId};
use model::latency::{PathLatency, check_budget};
use model::ledger::Ledger;
use model::pricing::PricingConfig;
use model::protocol::{Bid, Relation, Resources};
use model::strategy::{self, AskMode, BidFilter, NeighbourInfo, SelfBid, Strategy, StrategyInput};
use model::time::Timestamp;
use model::topology::Topology;
use model::units::{Bytes, Cpu, Latency};
use model::{Price, Sla};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// One fog node as the simulated market knows it.
#[derive(Debug, Clone)]
pub struct NodeDesc {
    pub name: String,
    pub owner: String,
    pub parent: Option<String>,
    /// One-way latency of the link to the parent.
    pub link: Latency,
    pub tags: Vec<String>,
    pub cpu: Cpu,
    pub memory: Bytes,
    pub strategy: Strategy,
    pub pricing: PricingConfig,
}

/// Why a federation cannot be built or an SLA cannot be placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarketError {
    #[error("node `{node}`: parent `{parent}` is not in the federation")]
    UnknownParent { node: String, parent: String },
    #[error("node `{0}` appears twice")]
    Duplicate(String),
    #[error("target node `{0}` is not in the federation")]
    UnknownTarget(String),
    #[error("node `{node}`, field `{field}`: {reason}")]
    Field {
        node: String,
        field: &'static str,
        reason: String,
    },
}

impl NodeDesc {
    /// Every node of a topology file, with its strategy and pricing parsed as the fog node
    /// parses them.
    pub fn from_topology(topology: &Topology) -> Result<Vec<NodeDesc>, MarketError> {
        topology
            .nodes()
            .iter()
            .map(|n| {
                let strategy = n
                    .strategy
                    .parse::<Strategy>()
                    .map_err(|e| MarketError::Field {
                        node: n.name.clone(),
                        field: "strategy",
                        reason: e.to_string(),
                    })?;
                let pricing = if n.pricing.is_empty() {
                    PricingConfig::default()
                } else {
                    n.pricing.clone().try_into().map_err(|e: toml::de::Error| {
                        MarketError::Field {
                            node: n.name.clone(),
                            field: "pricing",
                            reason: e.message().to_string(),
                        }
                    })?
                };
                Ok(NodeDesc {
                    name: n.name.clone(),
                    owner: n.owner.clone(),
                    parent: n.parent.clone(),
                    link: n.latency.unwrap_or(Latency::from_millis(0)),
                    tags: n.tags.clone(),
                    cpu: n.cpu,
                    memory: n.memory,
                    strategy,
                    pricing,
                })
            })
            .collect()
    }
}

impl MarketSettings {
    /// The marketplace's settings of a topology file.
    pub fn from_topology(topology: &Topology) -> Result<MarketSettings, MarketError> {
        let m = topology.marketplace();
        let rule = m
            .auction_rule
            .parse::<AuctionRule>()
            .map_err(|e| MarketError::Field {
                node: "marketplace".into(),
                field: "auction_rule",
                reason: e.to_string(),
            })?;
        let mut settings = MarketSettings {
            rule,
            auction_timeout: Duration::from_millis(m.auction_timeout_ms),
            ..MarketSettings::default()
        };
        if let Some(h) = m.heartbeat_interval_ms {
            settings.liveness_timeout = Duration::from_millis(h.saturating_mul(3));
        }
        Ok(settings)
    }
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    desc: NodeDesc,
    parent: Option<usize>,
    children: Vec<usize>,
    is_cloud: bool,
    ledger: Ledger,
    /// One-way latency of the link to the parent, as the latency model sees it.
    up_link: PathLatency,
    /// A dead node answers nothing, and its neighbours no longer relay to it.
    alive: bool,
}

/// The settings the real services use, with their defaults.
#[derive(Debug, Clone)]
pub struct MarketSettings {
    pub rule: AuctionRule,
    /// The auction's deadline: holds last this long plus `hold_grace`.
    pub auction_timeout: Duration,
    pub hold_grace: Duration,
    /// Standard deviations of margin in the latency budget check (fog node `sigma_margin`).
    pub sigma_margin: f64,
    /// How long the marketplace takes to declare a silent node dead (three missed heartbeats
    /// of one second) and re-place what it hosted.
    pub liveness_timeout: Duration,
}

impl Default for MarketSettings {
    fn default() -> Self {
        MarketSettings {
            rule: AuctionRule::Vickrey,
            auction_timeout: Duration::from_millis(2000),
            hold_grace: Duration::from_millis(5000),
            sigma_margin: 1.0,
            liveness_timeout: Duration::from_secs(3),
        }
    }
}

/// One host of a placed SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Win {
    pub node: String,
    /// What the node asked.
    pub bid: Price,
    /// What the client pays (under Vickrey, the first loser's bid).
    pub price: Price,
    /// Path latency from the data source.
    pub latency: PathLatency,
}

/// The result of one placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub sla_id: SlaId,
    /// Empty when no node could host the SLA.
    pub winners: Vec<Win>,
    /// Every bid the marketplace received: node and asked price, in arrival order.
    pub offers: Vec<(String, Price)>,
    /// Every refusal that came back.
    pub refusals: usize,
    /// The simulated time the relay took.
    pub time_to_place: Duration,
}

/// What a subtree answers to a bid request.
#[derive(Default)]
struct Answer {
    bids: Vec<Bid>,
    refusals: usize,
    elapsed: Duration,
}

/// The simulated federation: its nodes, their ledgers, and the marketplace's auction.
pub struct Market {
    nodes: Vec<SimNode>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<NodeId, usize>,
    settings: MarketSettings,
    rng: StdRng,
    next_id: u128,
    /// Where each SLA is reserved: node index and the reservation's end.
    reservations: HashMap<SlaId, Vec<usize>>,
}

impl Market {
    /// A federation of `nodes` (parents before or after their children, any order).
    pub fn new(
        nodes: Vec<NodeDesc>,
        settings: MarketSettings,
        seed: u64,
    ) -> Result<Market, MarketError> {
        let mut by_name = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if by_name.insert(n.name.clone(), i).is_some() {
                return Err(MarketError::Duplicate(n.name.clone()));
            }
        }
        let mut sim: Vec<SimNode> = Vec::with_capacity(nodes.len());
        for (i, desc) in nodes.into_iter().enumerate() {
            let parent = match &desc.parent {
                Some(p) => Some(*by_name.get(p).ok_or_else(|| MarketError::UnknownParent {
                    node: desc.name.clone(),
                    parent: p.clone(),
                })?),
                None => None,
            };
            let is_cloud = desc.tags.iter().any(|t| t.eq_ignore_ascii_case("cloud"));
            sim.push(SimNode {
                id: NodeId(Uuid::from_u128(i as u128 + 1)),
                ledger: Ledger::new(Resources::new(desc.cpu, desc.memory)),
                up_link: PathLatency::from_latency(desc.link),
                alive: true,
                parent,
                children: Vec::new(),
                is_cloud,
                desc,
            });
        }
        for i in 0..sim.len() {
            if let Some(p) = sim[i].parent {
                sim[p].children.push(i);
            }
        }
        let by_id = sim.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        Ok(Market {
            nodes: sim,
            by_name,
            by_id,
            settings,
            rng: StdRng::seed_from_u64(seed),
            next_id: 1 << 64,
            reservations: HashMap::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node's id (deterministic: its position in the federation).
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).map(|&i| self.nodes[i].id)
    }

    /// The one-way latency of the tree path between two nodes (the links' latencies summed up
    /// to their closest common ancestor), as the latency model composes it.
    pub fn path_latency(&self, a: &str, b: &str) -> Option<PathLatency> {
        let (&a, &b) = (self.by_name.get(a)?, self.by_name.get(b)?);
        let ancestors = |mut i: usize| {
            let mut chain = vec![i];
            while let Some(p) = self.nodes[i].parent {
                chain.push(p);
                i = p;
            }
            chain
        };
        let (up_a, up_b) = (ancestors(a), ancestors(b));
        let common = *up_a.iter().find(|x| up_b.contains(x))?;
        let mut path = PathLatency::default();
        for &i in up_a.iter().take_while(|&&x| x != common) {
            path = path.then(&self.nodes[i].up_link);
        }
        for &i in up_b.iter().take_while(|&&x| x != common) {
            path = path.then(&self.nodes[i].up_link);
        }
        Some(path)
    }

    /// The marketplace's settings.
    pub fn settings(&self) -> &MarketSettings {
        &self.settings
    }

    /// Marks a node dead or alive again; false for an unknown node.
    pub fn set_alive(&mut self, name: &str, alive: bool) -> bool {
        match self.by_name.get(name) {
            Some(&i) => {
                self.nodes[i].alive = alive;
                true
            }
            None => false,
        }
    }

    /// Whether a node is alive; false for an unknown one.
    pub fn is_alive(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|&i| self.nodes[i].alive)
    }

    /// Free resources of a node at `now`.
    pub fn free(&self, name: &str, now: Timestamp) -> Option<Resources> {
        self.by_name
            .get(name)
            .map(|&i| self.nodes[i].ledger.free(now))
    }

    fn fresh_bid_id(&mut self) -> BidId {
        self.next_id += 1;
        BidId(Uuid::from_u128(self.next_id))
    }

    /// Places `sla` near `target` at `now`: relay, bids, auction, reservations.
    pub fn place(
        &mut self,
        sla: &Sla,
        target: &str,
        now: Timestamp,
    ) -> Result<Placement, MarketError> {
        let &start = self
            .by_name
            .get(target)
            .ok_or_else(|| MarketError::UnknownTarget(target.to_string()))?;
        let mut path = Vec::new();
        let answer = self.bid(start, None, PathLatency::default(), &mut path, sla, now);
        let slots = (sla.nodes as usize).max(1);
        let outcome = run_auction(
            self.settings.rule,
            &answer.bids,
            slots,
            sla.max_price,
            &mut self.rng,
        );
        let ends_at = now.plus(sla.duration.as_duration());
        let mut winners = Vec::new();
        let mut hosts = Vec::new();
        for Award { bid, price } in &outcome.winners {
            let Some(&i) = self.by_id.get(&bid.node_id) else {
                continue;
            };
            if self.nodes[i]
                .ledger
                .confirm(bid.id, sla.id, ends_at, now)
                .is_ok()
            {
                hosts.push(i);
                winners.push(Win {
                    node: self.nodes[i].desc.name.clone(),
                    bid: bid.bid,
                    price: *price,
                    latency: bid.latency,
                });
            }
        }
        // Every other hold goes: the losers', and those of bids a filter dropped on the way.
        let won: Vec<BidId> = outcome.winners.iter().map(|a| a.bid.id).collect();
        for b in &answer.bids {
            if !won.contains(&b.id)
                && let Some(&i) = self.by_id.get(&b.node_id)
            {
                self.nodes[i].ledger.release(b.id);
            }
        }
        if !hosts.is_empty() {
            self.reservations.insert(sla.id, hosts);
        }
        Ok(Placement {
            sla_id: sla.id,
            winners,
            offers: answer
                .bids
                .iter()
                .map(|b| (b.node_name.clone(), b.bid))
                .collect(),
            refusals: answer.refusals,
            time_to_place: answer.elapsed,
        })
    }

    /// Ends `sla` early on every host (a cancel); ended SLAs free their room by themselves at
    /// their end.
    pub fn release(&mut self, sla: SlaId) {
        if let Some(hosts) = self.reservations.remove(&sla) {
            for i in hosts {
                self.nodes[i].ledger.release_sla(sla);
            }
        }
    }

    /// One node's answer to a bid request arriving over a path of latency `acc` from `origin`.
    fn bid(
        &mut self,
        me: usize,
        origin: Option<usize>,
        acc: PathLatency,
        path: &mut Vec<usize>,
        sla: &Sla,
        now: Timestamp,
    ) -> Answer {
        let mut out = Answer::default();
        if path.contains(&me) {
            return out;
        }
        if !self.nodes[me].alive {
            out.refusals += 1;
            return out;
        }
        let margin = self.settings.sigma_margin;
        let node = &self.nodes[me];
        let check = assess(
            &node.ledger,
            &node.desc.pricing,
            sla,
            node.id,
            &acc,
            margin,
            now,
        );
        let can_bid = check.refusal.is_none();
        path.push(me);
        // Neighbours: the parent and the children, not the sender, not already visited.
        let mut candidates: Vec<(usize, Relation, PathLatency)> = Vec::new();
        if let Some(p) = node.parent {
            candidates.push((p, Relation::Parent, node.up_link));
        }
        for &c in &node.children {
            candidates.push((c, Relation::Child, self.nodes[c].up_link));
        }
        candidates
            .retain(|(n, _, _)| Some(*n) != origin && !path.contains(n) && self.nodes[*n].alive);
        let mut infos = Vec::with_capacity(candidates.len());
        for (n, relation, link) in &candidates {
            let to_neighbour = acc.then(link);
            let within_budget = check_budget(
                &to_neighbour,
                sla.input_max_size,
                sla.latency_max,
                sla.latency_kind,
                margin,
            );
            if within_budget.is_err() {
                out.refusals += 1;
            }
            infos.push(NeighbourInfo {
                id: self.nodes[*n].id,
                relation: *relation,
                link: *link,
                within_budget: within_budget.is_ok(),
                is_cloud: self.nodes[*n].is_cloud,
            });
        }
        let input = StrategyInput {
            can_bid,
            is_cloud: node.is_cloud,
            neighbours: &infos,
            wanted: sla.nodes as usize,
        };
        let strategy = node.desc.strategy;
        let plan = strategy::plan(strategy, &input, &mut self.rng);
        if check.refusal.is_some() {
            out.refusals += 1;
        }
        let hold_until = now
            .plus(self.settings.auction_timeout)
            .plus(self.settings.hold_grace);
        match plan.self_bid {
            SelfBid::Always => self.bid_self(me, &check, acc, hold_until, now, &mut out),
            SelfBid::Never if can_bid => out.refusals += 1,
            _ => {}
        }
        let targets: Vec<(usize, PathLatency, PathLatency)> = plan
            .relay
            .iter()
            .filter_map(|id| {
                let &n = self.by_id.get(id)?;
                let (_, _, link) = candidates.iter().find(|(c, _, _)| *c == n)?;
                Some((n, *link, acc.then(link)))
            })
            .collect();
        let mut elapsed = Duration::ZERO;
        for (n, link, to_neighbour) in targets {
            let answer = self.bid(n, Some(me), to_neighbour, path, sla, now);
            let round_trip =
                Duration::from_secs_f64(2.0 * link.median.max(0.0) / 1000.0) + answer.elapsed;
            let found = !answer.bids.is_empty();
            out.bids.extend(answer.bids);
            out.refusals += answer.refusals;
            match plan.mode {
                AskMode::Parallel => elapsed = elapsed.max(round_trip),
                AskMode::Sequential => elapsed += round_trip,
            }
            if plan.mode == AskMode::Sequential && found {
                break;
            }
        }
        out.elapsed = elapsed;
        if plan.self_bid == SelfBid::IfNoneFromNeighbours && out.bids.is_empty() {
            self.bid_self(me, &check, acc, hold_until, now, &mut out);
        }
        if plan.filter != BidFilter::All {
            let all = std::mem::take(&mut out.bids);
            let kept =
                strategy::filter_bids(plan.filter, all.clone(), sla.nodes as usize, &mut self.rng);
            for b in all.iter().filter(|b| !kept.iter().any(|k| k.id == b.id)) {
                if let Some(&i) = self.by_id.get(&b.node_id) {
                    self.nodes[i].ledger.release(b.id);
                }
            }
            out.bids = kept;
        }
        path.pop();
        out
    }

    fn bid_self(
        &mut self,
        me: usize,
        check: &model::bid::Assessment,
        acc: PathLatency,
        hold_until: Timestamp,
        now: Timestamp,
        out: &mut Answer,
    ) {
        if check.refusal.is_some() {
            return;
        }
        let id = self.fresh_bid_id();
        let node = &mut self.nodes[me];
        match node.ledger.try_hold(id, check.needs, hold_until, now) {
            Ok(()) => out.bids.push(Bid {
                node_id: node.id,
                id,
                bid: check.price,
                node_name: node.desc.name.clone(),
                node_url: String::new(),
                latency: acc,
                utilisation: node.ledger.utilisation(now),
                hold_expires_at: hold_until,
            }),
            Err(_) => out.refusals += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCAL: &str = include_str!("../../testbed/topologies/local.toml");

    fn market(seed: u64) -> Market {
        let t = Topology::parse(LOCAL).unwrap();
        Market::new(
            NodeDesc::from_topology(&t).unwrap(),
            MarketSettings::from_topology(&t).unwrap(),
            seed,
        )
        .unwrap()
    }

    fn sla(latency_max: &str, extra: serde_json::Value) -> Sla {
        let mut body = json!({
            "memory": "256 MB", "cpu": "500 millicpu", "latencyMax": latency_max,
            "duration": "60 s", "replicas": 1, "functionImage": "echo",
            "functionLiveName": "echo", "dataFlow": [], "envVars": {}, "inputMaxSize": "1 KB"
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        Sla::from_json(&body, SlaId::new(), "sla").unwrap()
    }

    fn t0() -> Timestamp {
        Timestamp::from_millis(1_000_000)
    }

    #[test]
    fn the_cheapest_feasible_node_wins_and_is_paid_the_second_lowest_bid() {
        let mut m = market(1);
        let p = m
            .place(&sla("150 ms", json!({})), "edge-factory", t0())
            .unwrap();
        assert_eq!(p.winners.len(), 1, "{p:?}");
        // Every node of the tree is within 150 ms: all seven bid.
        assert_eq!(p.offers.len(), 7, "{p:?}");
        let mut asked: Vec<Price> = p.offers.iter().map(|(_, price)| *price).collect();
        asked.sort();
        let w = &p.winners[0];
        assert_eq!(w.bid, asked[0]);
        assert_eq!(w.price, asked[1]);
        let cheapest = p.offers.iter().find(|(_, b)| *b == asked[0]).unwrap();
        assert_eq!(w.node, cheapest.0);
        assert!(p.time_to_place > Duration::ZERO);
    }

    #[test]
    fn a_tight_latency_budget_keeps_the_sla_near_its_data_source() {
        let mut m = market(1);
        // edge-factory's parent is 4 ms away: only edge-factory itself is within 3 ms.
        let p = m
            .place(&sla("3 ms", json!({})), "edge-factory", t0())
            .unwrap();
        assert_eq!(p.offers.len(), 1, "{p:?}");
        assert_eq!(p.winners[0].node, "edge-factory");
        assert!(p.refusals > 0);
    }

    #[test]
    fn the_winner_reserves_its_room_and_every_losing_hold_is_released() {
        let mut m = market(1);
        let before: Vec<Resources> = m.nodes.iter().map(|n| n.ledger.free(t0())).collect();
        let s = sla("150 ms", json!({}));
        let p = m.place(&s, "edge-campus", t0()).unwrap();
        let winner = m.by_name[&p.winners[0].node];
        for (i, n) in m.nodes.iter().enumerate() {
            let free = n.ledger.free(t0());
            if i == winner {
                assert_eq!(free, before[i].saturating_sub(&Resources::for_sla(&s)));
            } else {
                assert_eq!(free, before[i], "{} kept a hold", n.desc.name);
            }
        }
        m.release(s.id);
        assert_eq!(m.nodes[winner].ledger.free(t0()), before[winner]);
        // The reservation also ends by itself at the end of the SLA.
        let again = m.place(&s, "edge-campus", t0()).unwrap();
        let host = m.by_name[&again.winners[0].node];
        let after_end = t0().plus(Duration::from_secs(61));
        assert_eq!(m.nodes[host].ledger.free(after_end), before[host]);
    }

    #[test]
    fn a_price_cap_below_every_bid_places_nothing() {
        let mut m = market(1);
        let p = m
            .place(
                &sla("150 ms", json!({"maxPrice": 0.0000001})),
                "edge-farm",
                t0(),
            )
            .unwrap();
        assert!(p.winners.is_empty(), "{p:?}");
        assert!(m.reservations.is_empty());
    }

    #[test]
    fn the_same_seed_gives_the_same_placements() {
        let run = |seed| {
            let mut m = market(seed);
            for n in &mut m.nodes {
                n.desc.strategy = Strategy::MinCpuRandom;
            }
            (0..40)
                .map(|i| {
                    let target =
                        ["edge-factory", "edge-campus", "edge-harbour", "edge-farm"][i % 4];
                    let p = m.place(&sla("150 ms", json!({})), target, t0()).unwrap();
                    p.winners
                        .iter()
                        .map(|w| (w.node.clone(), w.price))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
    }

    #[test]
    fn cloud_only_nodes_place_everything_in_the_cloud() {
        let mut m = market(1);
        for n in &mut m.nodes {
            n.desc.strategy = Strategy::CloudOnly;
        }
        let p = m
            .place(&sla("150 ms", json!({})), "edge-harbour", t0())
            .unwrap();
        assert_eq!(p.winners.len(), 1, "{p:?}");
        assert_eq!(p.winners[0].node, "cloud");
    }

    #[test]
    fn an_unknown_target_is_refused_by_name_and_an_unknown_strategy_never_reaches_the_market() {
        let mut m = market(1);
        let err = m
            .place(&sla("150 ms", json!({})), "nowhere", t0())
            .unwrap_err();
        assert_eq!(err, MarketError::UnknownTarget("nowhere".into()));
        let bad = LOCAL.replacen("strategy = \"auction\"", "strategy = \"teleport\"", 1);
        let err = Topology::parse(&bad).unwrap_err();
        assert!(err.to_string().contains("teleport"), "{err}");
    }
}
