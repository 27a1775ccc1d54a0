//! Placement strategies: what a fog node does with an SLA it receives — bid itself, relay to
//! which neighbours and how, and which of the collected bids to pass back.
//!
//! GIRAFF chose its strategy at compile time (several did not build); here each node picks one
//! in its config, so one federation can compare them side by side. [`plan`] turns the
//! strategy and what the node knows into a [`Plan`]; the fog node executes it, then applies
//! [`filter_bids`] to the bids it collected. Only neighbours within the SLA's latency budget
//! are ever relayed to, whatever the strategy.
//!
//! | strategy | self bid | relays to | asking | bids kept |
//! |---|---|---|---|---|
//! | `auction` | always | every neighbour | parallel | all |
//! | `edge_first` | if it can | nobody if it can bid, else nearest first | sequential | all |
//! | `edge_furthest` | only if no neighbour bid | furthest first | sequential | all |
//! | `edge_ward` | if it can | nobody if it can bid, else the parent | sequential | all |
//! | `cloud_only` | cloud nodes only | cloud neighbours (cloud) / the parent (others) | parallel | all |
//! | `maxcpu` | always | every neighbour | parallel | most utilised |
//! | `mincpurandom` | always | 2 random neighbours per wanted node | parallel | least utilised |
//!
//! "Always" means "whenever the node can": the caller only bids when it has room and is within
//! the latency budget. When an SLA wants several distinct nodes (`nodes > 1`), `edge_first`
//! and `edge_ward` also relay when the node can bid, since one node alone cannot fill the
//! slots.

use crate::ids::NodeId;
use crate::latency::PathLatency;
use crate::protocol::{Bid, Relation};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// A node's placement strategy (`strategy = "…"` in its config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// GIRAFF's default: everyone feasible bids, the auction decides.
    #[default]
    Auction,
    /// Host at the data source if possible, else at the nearest node that can.
    EdgeFirst,
    /// Push work away from the data source: furthest neighbours first.
    EdgeFurthest,
    /// Host here if possible, else move towards the cloud.
    EdgeWard,
    /// Only cloud nodes host.
    CloudOnly,
    /// Consolidation: prefer the most utilised nodes.
    #[serde(rename = "maxcpu")]
    MaxCpu,
    /// Power of two random choices: sample two neighbours, prefer the least utilised.
    #[serde(rename = "mincpurandom")]
    MinCpuRandom,
}

impl Strategy {
    pub const ALL: [Strategy; 7] = [
        Strategy::Auction,
        Strategy::EdgeFirst,
        Strategy::EdgeFurthest,
        Strategy::EdgeWard,
        Strategy::CloudOnly,
        Strategy::MaxCpu,
        Strategy::MinCpuRandom,
    ];

    /// The config / serde name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auction => "auction",
            Strategy::EdgeFirst => "edge_first",
            Strategy::EdgeFurthest => "edge_furthest",
            Strategy::EdgeWard => "edge_ward",
            Strategy::CloudOnly => "cloud_only",
            Strategy::MaxCpu => "maxcpu",
            Strategy::MinCpuRandom => "mincpurandom",
        }
    }
}

/// Why a strategy name was refused; lists every accepted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown strategy `{0}`, expected one of: auction, edge_first, edge_furthest, edge_ward, \
     cloud_only, maxcpu, mincpurandom (kebab-case also accepted)"
)]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;
    /// Accepts the serde names, snake_case and kebab-case, in any case (`Edge-First`,
    /// `max_cpu`, `min-cpu-random`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match norm.as_str() {
            "auction" => Strategy::Auction,
            "edge_first" => Strategy::EdgeFirst,
            "edge_furthest" => Strategy::EdgeFurthest,
            "edge_ward" => Strategy::EdgeWard,
            "cloud_only" => Strategy::CloudOnly,
            "maxcpu" | "max_cpu" => Strategy::MaxCpu,
            "mincpurandom" | "min_cpu_random" => Strategy::MinCpuRandom,
            _ => return Err(UnknownStrategy(s.to_string())),
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the node knows about one overlay neighbour when an SLA arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourInfo {
    pub id: NodeId,
    pub relation: Relation,
    /// One-way link latency estimate.
    pub link: PathLatency,
    /// The path latency from the data source to this neighbour is within the SLA's budget.
    pub within_budget: bool,
    pub is_cloud: bool,
}

/// The inputs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct StrategyInput<'a> {
    /// This node has room for the SLA and is within its latency budget.
    pub can_bid: bool,
    pub is_cloud: bool,
    /// Candidate neighbours, already without the sender and the nodes the request visited.
    pub neighbours: &'a [NeighbourInfo],
    /// How many distinct hosting nodes the SLA wants (`sla.nodes`).
    pub wanted: usize,
}

/// Whether this node offers its own bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfBid {
    /// Bid whenever the node can.
    Always,
    /// Bid only if no relayed neighbour returned a bid.
    IfNoneFromNeighbours,
    Never,
}

/// How the relay targets are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskMode {
    /// All at once; the node waits for all (within its deadline).
    Parallel,
    /// Ask one at a time, stop at the first neighbour that returns at least one bid.
    Sequential,
}

/// Which of the collected bids (own and relayed) the node passes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidFilter {
    All,
    /// Keep the bids with the highest `utilisation` (consolidation).
    MostUtilised,
    /// Keep the bids with the lowest `utilisation` (load spreading).
    LeastUtilised,
}

/// What the node does with one SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub self_bid: SelfBid,
    /// Neighbours to relay to, in asking order.
    pub relay: Vec<NodeId>,
    pub mode: AskMode,
    pub filter: BidFilter,
    /// Set when the strategy itself forbids bidding here, to report as a refusal.
    pub decline_reason: Option<String>,
}

fn feasible<'a>(input: &StrategyInput<'a>) -> impl Iterator<Item = &'a NeighbourInfo> {
    input.neighbours.iter().filter(|n| n.within_budget)
}

/// Link latency from a peer's estimate; unknown or garbage values sort as furthest away.
fn link_ms(n: &NeighbourInfo) -> f64 {
    let m = n.link.median;
    if m.is_finite() && m >= 0.0 {
        m
    } else {
        f64::INFINITY
    }
}

/// Nearest first; ties by node id so the order does not depend on the neighbour list's order.
fn by_distance(a: &&NeighbourInfo, b: &&NeighbourInfo) -> Ordering {
    link_ms(a)
        .total_cmp(&link_ms(b))
        .then_with(|| a.id.cmp(&b.id))
}

fn ids<'a>(it: impl Iterator<Item = &'a NeighbourInfo>) -> Vec<NodeId> {
    it.map(|n| n.id).collect()
}

fn nearest_first(input: &StrategyInput) -> Vec<NodeId> {
    let mut v: Vec<&NeighbourInfo> = feasible(input).collect();
    v.sort_by(by_distance);
    ids(v.into_iter())
}

fn parent(input: &StrategyInput) -> Vec<NodeId> {
    ids(feasible(input).filter(|n| n.relation == Relation::Parent))
}

/// Decides what this node does with an SLA under `strategy`. `rng` is only used by
/// `mincpurandom`; callers seed it.
pub fn plan(strategy: Strategy, input: &StrategyInput, rng: &mut impl Rng) -> Plan {
    let several = input.wanted > 1;
    let base = Plan {
        self_bid: SelfBid::Always,
        relay: Vec::new(),
        mode: AskMode::Parallel,
        filter: BidFilter::All,
        decline_reason: None,
    };
    match strategy {
        Strategy::Auction => Plan {
            relay: ids(feasible(input)),
            ..base
        },
        Strategy::EdgeFirst => {
            let relay = if input.can_bid && !several {
                Vec::new()
            } else {
                nearest_first(input)
            };
            Plan {
                self_bid: if input.can_bid {
                    SelfBid::Always
                } else {
                    SelfBid::Never
                },
                relay,
                mode: AskMode::Sequential,
                ..base
            }
        }
        Strategy::EdgeFurthest => {
            let mut relay = nearest_first(input);
            relay.reverse();
            Plan {
                self_bid: SelfBid::IfNoneFromNeighbours,
                relay,
                mode: AskMode::Sequential,
                ..base
            }
        }
        Strategy::EdgeWard => Plan {
            self_bid: if input.can_bid {
                SelfBid::Always
            } else {
                SelfBid::Never
            },
            relay: if input.can_bid && !several {
                Vec::new()
            } else {
                parent(input)
            },
            mode: AskMode::Sequential,
            ..base
        },
        Strategy::CloudOnly if input.is_cloud => Plan {
            relay: ids(feasible(input).filter(|n| n.is_cloud)),
            ..base
        },
        Strategy::CloudOnly => Plan {
            self_bid: SelfBid::Never,
            relay: parent(input),
            decline_reason: Some("cloud_only: not a cloud node".to_string()),
            ..base
        },
        Strategy::MaxCpu => Plan {
            relay: ids(feasible(input)),
            filter: BidFilter::MostUtilised,
            ..base
        },
        Strategy::MinCpuRandom => {
            let mut candidates: Vec<&NeighbourInfo> = feasible(input).collect();
            // Sort first so the draw depends only on the seed, not on the list's order.
            candidates.sort_by(by_distance);
            candidates.shuffle(rng);
            candidates.truncate(2 * input.wanted.max(1));
            Plan {
                relay: ids(candidates.into_iter()),
                filter: BidFilter::LeastUtilised,
                ..base
            }
        }
    }
}

/// A bid's utilisation as reported by a peer; non-finite values become `None` and always
/// rank last, so a broken peer can neither win nor crowd out honest bids.
fn utilisation(b: &Bid) -> Option<f64> {
    b.utilisation.is_finite().then_some(b.utilisation)
}

/// Applies `filter` to the bids a node collected, keeping at most `keep` bids from distinct
/// nodes (`keep` is normally the SLA's `nodes`). [`BidFilter::All`] returns the bids
/// unchanged. Ties in utilisation are broken at random, as in GIRAFF.
pub fn filter_bids(filter: BidFilter, bids: Vec<Bid>, keep: usize, rng: &mut impl Rng) -> Vec<Bid> {
    let most = match filter {
        BidFilter::All => return bids,
        BidFilter::MostUtilised => true,
        BidFilter::LeastUtilised => false,
    };
    let mut bids = bids;
    bids.shuffle(rng);
    // Stable sort after the shuffle: equal utilisations stay in random order.
    bids.sort_by(|a, b| match (utilisation(a), utilisation(b)) {
        (Some(x), Some(y)) if most => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    let mut seen = HashSet::new();
    bids.into_iter()
        .filter(|b| seen.insert(b.node_id))
        .take(keep)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BidId;
    use crate::units::Price;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::HashMap;

    /// A node with a parent (10 ms) and three children: near (2 ms), mid (5 ms), and far
    /// (8 ms) but out of the latency budget.
    struct Tree {
        parent: NodeId,
        near: NodeId,
        mid: NodeId,
        far: NodeId,
        neighbours: Vec<NeighbourInfo>,
    }

    fn neighbour(
        relation: Relation,
        ms: f64,
        within_budget: bool,
        is_cloud: bool,
    ) -> NeighbourInfo {
        NeighbourInfo {
            id: NodeId::new(),
            relation,
            link: PathLatency {
                median: ms,
                ..PathLatency::ZERO
            },
            within_budget,
            is_cloud,
        }
    }

    fn tree() -> Tree {
        let neighbours = vec![
            neighbour(Relation::Child, 5.0, true, false),
            neighbour(Relation::Parent, 10.0, true, true),
            neighbour(Relation::Child, 8.0, false, false),
            neighbour(Relation::Child, 2.0, true, false),
        ];
        Tree {
            mid: neighbours[0].id,
            parent: neighbours[1].id,
            far: neighbours[2].id,
            near: neighbours[3].id,
            neighbours,
        }
    }

    fn input(t: &Tree, can_bid: bool, is_cloud: bool) -> StrategyInput<'_> {
        StrategyInput {
            can_bid,
            is_cloud,
            neighbours: &t.neighbours,
            wanted: 1,
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(3)
    }

    #[test]
    fn auction_bids_and_relays_in_parallel_to_every_neighbour_within_budget() {
        let t = tree();
        let p = plan(Strategy::Auction, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert_eq!(p.mode, AskMode::Parallel);
        assert_eq!(p.filter, BidFilter::All);
        assert_eq!(p.relay, vec![t.mid, t.parent, t.near]);
        assert!(!p.relay.contains(&t.far));
        assert_eq!(p.decline_reason, None);
    }

    #[test]
    fn edge_first_bids_alone_when_it_can() {
        let t = tree();
        let p = plan(Strategy::EdgeFirst, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert!(p.relay.is_empty());
    }

    #[test]
    fn edge_first_asks_neighbours_nearest_first_one_at_a_time_when_it_cannot_bid() {
        let t = tree();
        let p = plan(Strategy::EdgeFirst, &input(&t, false, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Never);
        assert_eq!(p.mode, AskMode::Sequential);
        assert_eq!(p.relay, vec![t.near, t.mid, t.parent]);
    }

    #[test]
    fn edge_first_also_relays_when_the_sla_wants_several_nodes() {
        let t = tree();
        let i = StrategyInput {
            wanted: 2,
            ..input(&t, true, false)
        };
        let p = plan(Strategy::EdgeFirst, &i, &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert_eq!(p.relay, vec![t.near, t.mid, t.parent]);
    }

    #[test]
    fn edge_furthest_asks_furthest_first_and_bids_only_as_a_last_resort() {
        let t = tree();
        let p = plan(Strategy::EdgeFurthest, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::IfNoneFromNeighbours);
        assert_eq!(p.mode, AskMode::Sequential);
        assert_eq!(p.relay, vec![t.parent, t.mid, t.near]);
    }

    #[test]
    fn edge_ward_bids_alone_when_it_can_else_passes_to_the_parent() {
        let t = tree();
        let p = plan(Strategy::EdgeWard, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert!(p.relay.is_empty());
        let p = plan(Strategy::EdgeWard, &input(&t, false, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Never);
        assert_eq!(p.relay, vec![t.parent]);
    }

    #[test]
    fn edge_ward_does_not_pass_to_a_parent_outside_the_budget() {
        let mut t = tree();
        t.neighbours[1].within_budget = false;
        let p = plan(Strategy::EdgeWard, &input(&t, false, false), &mut rng());
        assert!(p.relay.is_empty());
    }

    #[test]
    fn cloud_only_on_an_edge_node_declines_and_passes_to_the_parent() {
        let t = tree();
        let p = plan(Strategy::CloudOnly, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Never);
        assert_eq!(
            p.decline_reason.as_deref(),
            Some("cloud_only: not a cloud node")
        );
        assert_eq!(p.relay, vec![t.parent]);
    }

    #[test]
    fn cloud_only_on_a_cloud_node_bids_and_relays_to_cloud_neighbours_only() {
        let mut t = tree();
        t.neighbours[0].is_cloud = true; // mid is a cloud node too
        let p = plan(Strategy::CloudOnly, &input(&t, true, true), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert_eq!(p.mode, AskMode::Parallel);
        assert_eq!(p.decline_reason, None);
        assert_eq!(p.relay, vec![t.mid, t.parent]);
    }

    #[test]
    fn maxcpu_relays_like_auction_and_keeps_the_most_utilised() {
        let t = tree();
        let p = plan(Strategy::MaxCpu, &input(&t, true, false), &mut rng());
        assert_eq!(p.self_bid, SelfBid::Always);
        assert_eq!(p.relay, vec![t.mid, t.parent, t.near]);
        assert_eq!(p.filter, BidFilter::MostUtilised);
    }

    #[test]
    fn mincpurandom_asks_two_random_neighbours_within_budget() {
        let t = tree();
        let mut rng = StdRng::seed_from_u64(11);
        let mut asked: HashMap<NodeId, usize> = HashMap::new();
        for _ in 0..300 {
            let p = plan(Strategy::MinCpuRandom, &input(&t, true, false), &mut rng);
            assert_eq!(p.self_bid, SelfBid::Always);
            assert_eq!(p.filter, BidFilter::LeastUtilised);
            assert_eq!(p.mode, AskMode::Parallel);
            assert_eq!(p.relay.len(), 2);
            assert_ne!(p.relay[0], p.relay[1]);
            for id in p.relay {
                *asked.entry(id).or_default() += 1;
            }
        }
        assert!(!asked.contains_key(&t.far));
        for id in [t.near, t.mid, t.parent] {
            assert!(asked.get(&id).copied().unwrap_or(0) > 100, "{asked:?}");
        }
    }

    #[test]
    fn mincpurandom_is_reproducible_with_the_same_seed() {
        let t = tree();
        let a = plan(
            Strategy::MinCpuRandom,
            &input(&t, true, false),
            &mut StdRng::seed_from_u64(5),
        );
        let b = plan(
            Strategy::MinCpuRandom,
            &input(&t, true, false),
            &mut StdRng::seed_from_u64(5),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn no_strategy_relays_outside_the_budget_or_to_nobody_when_everything_is_out_of_budget() {
        let t = tree();
        let mut out = tree();
        for n in &mut out.neighbours {
            n.within_budget = false;
        }
        for s in Strategy::ALL {
            for (can_bid, is_cloud) in [(true, false), (false, false), (true, true), (false, true)]
            {
                let p = plan(s, &input(&t, can_bid, is_cloud), &mut rng());
                assert!(!p.relay.contains(&t.far), "{s}");
                let p = plan(s, &input(&out, can_bid, is_cloud), &mut rng());
                assert!(p.relay.is_empty(), "{s}");
            }
        }
    }

    fn ubid(utilisation: f64) -> Bid {
        Bid {
            node_id: NodeId::new(),
            id: BidId::new(),
            bid: Price::new(1.0).unwrap(),
            node_name: String::new(),
            node_url: String::new(),
            latency: PathLatency::ZERO,
            utilisation,
            hold_expires_at: Default::default(),
        }
    }

    fn utils(bids: &[Bid]) -> Vec<f64> {
        bids.iter().map(|b| b.utilisation).collect()
    }

    #[test]
    fn most_utilised_filter_keeps_the_busiest_nodes() {
        let bids = vec![ubid(0.2), ubid(0.9), ubid(f64::NAN), ubid(0.5)];
        let kept = filter_bids(BidFilter::MostUtilised, bids, 2, &mut rng());
        assert_eq!(utils(&kept), vec![0.9, 0.5]);
    }

    #[test]
    fn least_utilised_filter_keeps_the_idlest_nodes_and_never_a_broken_peer() {
        let bids = vec![ubid(f64::NAN), ubid(0.7), ubid(0.1), ubid(0.4)];
        let kept = filter_bids(BidFilter::LeastUtilised, bids, 3, &mut rng());
        assert_eq!(utils(&kept), vec![0.1, 0.4, 0.7]);
    }

    #[test]
    fn filters_break_utilisation_ties_at_random_and_keep_distinct_nodes() {
        let bids: Vec<Bid> = (0..4).map(|_| ubid(0.5)).collect();
        let mut rng = StdRng::seed_from_u64(9);
        let mut picked = HashSet::new();
        for _ in 0..100 {
            let kept = filter_bids(BidFilter::MostUtilised, bids.clone(), 1, &mut rng);
            assert_eq!(kept.len(), 1);
            picked.insert(kept[0].node_id);
        }
        assert_eq!(picked.len(), 4);

        let busy = ubid(0.9);
        let busy_again = Bid {
            id: BidId::new(),
            utilisation: 0.8,
            ..busy.clone()
        };
        let kept = filter_bids(
            BidFilter::MostUtilised,
            vec![busy, busy_again, ubid(0.3)],
            2,
            &mut rng,
        );
        assert_eq!(utils(&kept), vec![0.9, 0.3]);
    }

    #[test]
    fn the_all_filter_returns_every_bid_unchanged() {
        let bids = vec![ubid(0.2), ubid(0.9), ubid(0.5)];
        assert_eq!(
            filter_bids(BidFilter::All, bids.clone(), 1, &mut rng()),
            bids
        );
    }

    #[test]
    fn strategy_names_parse_in_every_spelling_and_display_as_in_the_config() {
        for s in Strategy::ALL {
            assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
            assert_eq!(s.to_string().replace('_', "-").parse::<Strategy>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Strategy>(&json).unwrap(), s);
        }
        assert_eq!("Edge-First".parse(), Ok(Strategy::EdgeFirst));
        assert_eq!("max_cpu".parse(), Ok(Strategy::MaxCpu));
        assert_eq!("min-cpu-random".parse(), Ok(Strategy::MinCpuRandom));
        let err = "cheapest".parse::<Strategy>().unwrap_err().to_string();
        for s in Strategy::ALL {
            assert!(err.contains(s.name()), "{err}");
        }
    }
}
