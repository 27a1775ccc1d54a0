//! Auction rules: which bids win a placement and what each winner is paid.
//!
//! Fogmarket runs *reverse* auctions: nodes ask a price, the lowest asks win. Three rules are
//! selectable at run time ([`AuctionRule`]):
//!
//! - **Vickrey** (default, GIRAFF's rule generalised to `k` slots): the `k` lowest bids win and
//!   each is paid the clearing price, the `(k+1)`-th lowest bid, capped at the SLA's
//!   `maxPrice`. Paying the first losing bid rather than one's own makes truthful bidding the
//!   best strategy for a node. When no `(k+1)`-th bid exists each winner is paid its own bid
//!   (GIRAFF pays a lone bidder its own bid).
//! - **FirstPrice**: the `k` lowest bids win and are paid what they asked.
//! - **Random**: GIRAFF's baseline; `k` winners drawn uniformly among the feasible bids, each
//!   paid its own bid.
//!
//! Bids are first reduced to one per node (its lowest): relays may deliver the same node's bid
//! twice, and a node must never take two of an SLA's `nodes` slots. Bids above `maxPrice` are
//! set aside ([`Outcome::over_max_price`]) but still count when the Vickrey clearing price is
//! looked up, since they are real offers that lost.
//!
//! **Fallback.** When a winner refuses the accept (its hold expired and the resources are
//! gone), the marketplace re-runs [`run_auction`] on the remaining bids — every bid received
//! minus the refusers and the winners already accepted — for the remaining slots. The
//! [`Outcome::standby`] list gives the order in which that re-run will pick, so it can be shown
//! or persisted, but prices must come from the re-run (the clearing price changes when bids
//! leave).

use crate::protocol::Bid;
use crate::units::Price;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How the marketplace picks winners and prices. Chosen per marketplace (`--auction-rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionRule {
    #[default]
    Vickrey,
    FirstPrice,
    Random,
}

const RULE_NAMES: &str = "vickrey, first_price (or first-price), random";

/// Why an auction rule name was refused; lists the accepted names so a config error is
/// self-explanatory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown auction rule `{0}`, expected one of: {RULE_NAMES}")]
pub struct UnknownAuctionRule(pub String);

impl FromStr for AuctionRule {
    type Err = UnknownAuctionRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "vickrey" => Ok(AuctionRule::Vickrey),
            "first_price" => Ok(AuctionRule::FirstPrice),
            "random" => Ok(AuctionRule::Random),
            _ => Err(UnknownAuctionRule(s.to_string())),
        }
    }
}

impl fmt::Display for AuctionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuctionRule::Vickrey => "vickrey",
            AuctionRule::FirstPrice => "first_price",
            AuctionRule::Random => "random",
        })
    }
}

/// A winning bid and the price the marketplace pays for it (under Vickrey, not the bid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Award {
    pub bid: Bid,
    pub price: Price,
}

/// The result of one run of an auction rule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// At most `slots` awards, distinct nodes, in rank order (lowest bid first; draw order
    /// under [`AuctionRule::Random`]).
    pub winners: Vec<Award>,
    /// Feasible bids (one per node) that did not win, in the order a fallback would try them.
    pub standby: Vec<Bid>,
    /// Bids (one per node) excluded because they ask more than `max_price`.
    pub over_max_price: Vec<Bid>,
}

/// Rank order: price ascending, then the closer node (lower median latency from the data
/// source), then node id and bid id so that the order never depends on arrival order.
fn rank(a: &Bid, b: &Bid) -> Ordering {
    a.bid
        .cmp(&b.bid)
        .then_with(|| latency_key(a).total_cmp(&latency_key(b)))
        .then_with(|| a.node_id.cmp(&b.node_id))
        .then_with(|| a.id.cmp(&b.id))
}

/// Latency as reported by a peer; a non-finite value ranks last rather than poisoning the sort.
fn latency_key(b: &Bid) -> f64 {
    let m = b.latency.median;
    if m.is_finite() { m } else { f64::INFINITY }
}

/// One bid per node: its best-ranked (lowest) one. Returned in rank order.
fn dedup_per_node(bids: &[Bid]) -> Vec<Bid> {
    let mut best: BTreeMap<crate::ids::NodeId, &Bid> = BTreeMap::new();
    for b in bids {
        best.entry(b.node_id)
            .and_modify(|cur| {
                if rank(b, cur) == Ordering::Less {
                    *cur = b;
                }
            })
            .or_insert(b);
    }
    let mut out: Vec<Bid> = best.into_values().cloned().collect();
    out.sort_by(rank);
    out
}

/// Runs `rule` over `bids` for `slots` distinct hosting nodes.
///
/// `max_price` is the client's reservation price: bids above it never win and no winner is
/// paid more than it. `rng` is used only by [`AuctionRule::Random`]; callers seed it, so tests
/// and the simulator are reproducible.
pub fn run_auction(
    rule: AuctionRule,
    bids: &[Bid],
    slots: usize,
    max_price: Option<Price>,
    rng: &mut impl Rng,
) -> Outcome {
    let all = dedup_per_node(bids);
    let (mut feasible, over_max_price): (Vec<Bid>, Vec<Bid>) = all
        .iter()
        .cloned()
        .partition(|b| max_price.is_none_or(|max| b.bid <= max));
    let k = slots.min(feasible.len());

    if rule == AuctionRule::Random {
        feasible.shuffle(rng);
    }
    let standby = feasible.split_off(k);
    let winners = match rule {
        AuctionRule::Vickrey => {
            // `all` is in rank order and every feasible bid ranks before every bid over
            // max_price, so the k winners are exactly all[..k] and all[k] is the first loser.
            let clearing = all.get(k).map(|first_loser| match max_price {
                Some(max) => first_loser.bid.min(max),
                None => first_loser.bid,
            });
            feasible
                .into_iter()
                .map(|bid| {
                    // Defensive max: the clearing bid ranks after the winner, so it is never
                    // lower, and max_price is never below a feasible bid.
                    let price = clearing.map_or(bid.bid, |c| c.max(bid.bid));
                    Award { bid, price }
                })
                .collect()
        }
        AuctionRule::FirstPrice | AuctionRule::Random => feasible
            .into_iter()
            .map(|bid| Award {
                price: bid.bid,
                bid,
            })
            .collect(),
    };
    Outcome {
        winners,
        standby,
        over_max_price,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BidId, NodeId};
    use crate::latency::PathLatency;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::{HashMap, HashSet};

    fn bid_from(node: NodeId, price: f64, latency_ms: f64) -> Bid {
        Bid {
            node_id: node,
            id: BidId::new(),
            bid: Price::new(price).unwrap(),
            node_name: String::new(),
            node_url: String::new(),
            latency: PathLatency {
                median: latency_ms,
                ..PathLatency::ZERO
            },
            utilisation: 0.0,
            hold_expires_at: Default::default(),
        }
    }

    fn bid(price: f64) -> Bid {
        bid_from(NodeId::new(), price, 1.0)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn price(p: f64) -> Price {
        Price::new(p).unwrap()
    }

    fn prices(o: &Outcome) -> Vec<(f64, f64)> {
        o.winners
            .iter()
            .map(|a| (a.bid.bid.value(), a.price.value()))
            .collect()
    }

    fn assert_never_paid_less_than_asked(o: &Outcome) {
        for a in &o.winners {
            assert!(a.price >= a.bid.bid, "{a:?}");
        }
    }

    #[test]
    fn vickrey_with_one_bid_pays_the_winner_its_own_bid() {
        let o = run_auction(AuctionRule::Vickrey, &[bid(5.0)], 1, None, &mut rng());
        assert_eq!(prices(&o), vec![(5.0, 5.0)]);
        assert!(o.standby.is_empty());
        assert_never_paid_less_than_asked(&o);
    }

    #[test]
    fn vickrey_with_two_bids_pays_the_lowest_the_second_lowest_bid() {
        let bids = [bid(7.0), bid(3.0)];
        let o = run_auction(AuctionRule::Vickrey, &bids, 1, None, &mut rng());
        assert_eq!(prices(&o), vec![(3.0, 7.0)]);
        assert_eq!(o.standby.len(), 1);
        assert_eq!(o.standby[0].bid, price(7.0));
        assert_never_paid_less_than_asked(&o);
    }

    #[test]
    fn vickrey_with_two_winners_of_three_pays_each_the_third_lowest_bid() {
        let bids = [bid(9.0), bid(2.0), bid(4.0)];
        let o = run_auction(AuctionRule::Vickrey, &bids, 2, None, &mut rng());
        assert_eq!(prices(&o), vec![(2.0, 9.0), (4.0, 9.0)]);
        assert_eq!(o.standby.len(), 1);
        assert_never_paid_less_than_asked(&o);
    }

    #[test]
    fn vickrey_with_as_many_slots_as_bids_pays_each_its_own_bid() {
        let bids = [bid(9.0), bid(2.0), bid(4.0)];
        let o = run_auction(AuctionRule::Vickrey, &bids, 3, None, &mut rng());
        assert_eq!(prices(&o), vec![(2.0, 2.0), (4.0, 4.0), (9.0, 9.0)]);
        assert!(o.standby.is_empty());
        assert_never_paid_less_than_asked(&o);
    }

    #[test]
    fn vickrey_caps_the_clearing_price_at_max_price() {
        // The first loser asks 20, above the client's max of 10: winners are paid 10.
        let bids = [bid(3.0), bid(20.0)];
        let o = run_auction(
            AuctionRule::Vickrey,
            &bids,
            1,
            Some(price(10.0)),
            &mut rng(),
        );
        assert_eq!(prices(&o), vec![(3.0, 10.0)]);
        assert_eq!(o.over_max_price.len(), 1);
        assert_never_paid_less_than_asked(&o);
    }

    #[test]
    fn bids_over_max_price_are_excluded_and_reported() {
        let bids = [bid(12.0), bid(15.0), bid(8.0)];
        let o = run_auction(
            AuctionRule::Vickrey,
            &bids,
            2,
            Some(price(10.0)),
            &mut rng(),
        );
        assert_eq!(prices(&o), vec![(8.0, 10.0)]);
        let over: Vec<f64> = o.over_max_price.iter().map(|b| b.bid.value()).collect();
        assert_eq!(over, vec![12.0, 15.0]);
        assert!(o.standby.is_empty());
    }

    #[test]
    fn no_feasible_bid_means_no_winner() {
        let o = run_auction(
            AuctionRule::Vickrey,
            &[bid(12.0)],
            1,
            Some(price(10.0)),
            &mut rng(),
        );
        assert!(o.winners.is_empty());
        assert_eq!(o.over_max_price.len(), 1);
        let o = run_auction(AuctionRule::FirstPrice, &[], 3, None, &mut rng());
        assert_eq!(o, Outcome::default());
    }

    #[test]
    fn zero_slots_means_no_winner_and_every_bid_on_standby() {
        let o = run_auction(
            AuctionRule::Vickrey,
            &[bid(1.0), bid(2.0)],
            0,
            None,
            &mut rng(),
        );
        assert!(o.winners.is_empty());
        assert_eq!(o.standby.len(), 2);
    }

    #[test]
    fn a_node_relayed_twice_keeps_only_its_lowest_bid_and_one_slot() {
        let a = NodeId::new();
        let b = NodeId::new();
        let bids = [
            bid_from(a, 4.0, 1.0),
            bid_from(a, 2.0, 1.0),
            bid_from(a, 2.0, 1.0),
            bid_from(b, 6.0, 1.0),
        ];
        let o = run_auction(AuctionRule::Vickrey, &bids, 2, None, &mut rng());
        let nodes: Vec<NodeId> = o.winners.iter().map(|w| w.bid.node_id).collect();
        assert_eq!(nodes, vec![a, b]);
        assert_eq!(prices(&o), vec![(2.0, 2.0), (6.0, 6.0)]);
    }

    #[test]
    fn a_duplicate_bid_does_not_set_the_clearing_price() {
        let a = NodeId::new();
        let bids = [bid_from(a, 2.0, 1.0), bid_from(a, 3.0, 1.0), bid(8.0)];
        let o = run_auction(AuctionRule::Vickrey, &bids, 1, None, &mut rng());
        assert_eq!(prices(&o), vec![(2.0, 8.0)]);
    }

    #[test]
    fn equal_bids_are_ranked_by_latency_then_node_id() {
        let near = bid_from(NodeId::new(), 5.0, 2.0);
        let far = bid_from(NodeId::new(), 5.0, 9.0);
        let o = run_auction(
            AuctionRule::FirstPrice,
            &[far.clone(), near.clone()],
            1,
            None,
            &mut rng(),
        );
        assert_eq!(o.winners[0].bid.node_id, near.node_id);

        let x = bid_from(NodeId::new(), 5.0, 2.0);
        let y = bid_from(NodeId::new(), 5.0, 2.0);
        let lower = x.node_id.min(y.node_id);
        for order in [[x.clone(), y.clone()], [y.clone(), x.clone()]] {
            let o = run_auction(AuctionRule::Vickrey, &order, 1, None, &mut rng());
            assert_eq!(o.winners[0].bid.node_id, lower);
            assert_eq!(o.winners[0].price, price(5.0));
        }
    }

    #[test]
    fn first_price_pays_each_winner_its_own_bid() {
        let bids = [bid(9.0), bid(2.0), bid(4.0)];
        let o = run_auction(AuctionRule::FirstPrice, &bids, 2, None, &mut rng());
        assert_eq!(prices(&o), vec![(2.0, 2.0), (4.0, 4.0)]);
        assert_eq!(o.standby[0].bid, price(9.0));
    }

    #[test]
    fn random_gives_every_bidder_a_chance_and_never_two_slots_to_one_node() {
        let bids: Vec<Bid> = (1..=5).map(|p| bid(p as f64)).collect();
        let mut rng = StdRng::seed_from_u64(42);
        let mut wins: HashMap<NodeId, usize> = HashMap::new();
        for _ in 0..500 {
            let o = run_auction(AuctionRule::Random, &bids, 2, None, &mut rng);
            assert_eq!(o.winners.len(), 2);
            assert_eq!(o.standby.len(), 3);
            let distinct: HashSet<NodeId> = o.winners.iter().map(|w| w.bid.node_id).collect();
            assert_eq!(distinct.len(), 2);
            for w in &o.winners {
                assert_eq!(w.price, w.bid.bid);
                *wins.entry(w.bid.node_id).or_default() += 1;
            }
        }
        // 1000 awards over 5 bidders: each expects 200; far from 0 for every one.
        for b in &bids {
            let n = wins.get(&b.node_id).copied().unwrap_or(0);
            assert!(n > 100, "{} won only {n} times", b.bid);
        }
    }

    #[test]
    fn random_respects_max_price() {
        let bids = [bid(1.0), bid(50.0)];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let o = run_auction(AuctionRule::Random, &bids, 1, Some(price(10.0)), &mut rng);
            assert_eq!(prices(&o), vec![(1.0, 1.0)]);
        }
    }

    #[test]
    fn auction_rule_names_parse_case_insensitively_and_display_in_snake_case() {
        for (s, rule) in [
            ("vickrey", AuctionRule::Vickrey),
            ("First-Price", AuctionRule::FirstPrice),
            ("first_price", AuctionRule::FirstPrice),
            (" RANDOM ", AuctionRule::Random),
        ] {
            assert_eq!(s.parse::<AuctionRule>().unwrap(), rule);
        }
        let err = "dutch".parse::<AuctionRule>().unwrap_err().to_string();
        assert!(
            err.contains("first_price") && err.contains("random"),
            "{err}"
        );
        assert_eq!(AuctionRule::FirstPrice.to_string(), "first_price");
        assert_eq!(
            serde_json::to_string(&AuctionRule::FirstPrice).unwrap(),
            "\"first_price\""
        );
    }

    fn arb_rule() -> impl Strategy<Value = AuctionRule> {
        prop_oneof![
            Just(AuctionRule::Vickrey),
            Just(AuctionRule::FirstPrice),
            Just(AuctionRule::Random),
        ]
    }

    proptest! {
        #[test]
        fn winners_are_distinct_feasible_and_never_paid_less_than_asked_or_more_than_max(
            rule in arb_rule(),
            // (node index, price, latency): few node indices so duplicates are common
            raw in proptest::collection::vec((0usize..6, 0u32..40, 0u32..20), 0..15),
            slots in 0usize..8,
            max in proptest::option::of(0u32..40),
            seed in any::<u64>(),
        ) {
            let nodes: Vec<NodeId> = (0..6).map(|_| NodeId::new()).collect();
            let bids: Vec<Bid> = raw
                .iter()
                .map(|&(n, p, l)| bid_from(nodes[n], p as f64, l as f64))
                .collect();
            let max_price = max.map(|m| price(m as f64));
            let mut rng = StdRng::seed_from_u64(seed);
            let o = run_auction(rule, &bids, slots, max_price, &mut rng);

            let feasible_nodes: HashSet<NodeId> = bids
                .iter()
                .filter(|b| max_price.is_none_or(|m| b.bid <= m))
                .map(|b| b.node_id)
                .collect();
            let winners: HashSet<NodeId> = o.winners.iter().map(|w| w.bid.node_id).collect();
            prop_assert_eq!(winners.len(), o.winners.len());
            prop_assert_eq!(o.winners.len(), slots.min(feasible_nodes.len()));
            prop_assert_eq!(o.winners.len() + o.standby.len(), feasible_nodes.len());
            for w in &o.winners {
                prop_assert!(w.price >= w.bid.bid);
                if let Some(m) = max_price {
                    prop_assert!(w.price <= m);
                }
            }
        }
    }
}
