//! Integer offloading weights and the pure weighted choice the proxy makes per request.

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};

/// Weights always sum to this (per mille): 1000 lets 10 req/s of 50 be exactly 20 %.
pub const WEIGHT_SCALE: u32 = 1000;

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "node")]
pub enum Decision {
    Local,
    Forward(NodeId),
    Reject,
}

/// Per-function weights of one node, out of [`WEIGHT_SCALE`].
///
/// Built by the strategies, which guarantee: the parts sum to `WEIGHT_SCALE`, `peers` holds
/// only positive weights, sorted by node id (a deterministic order, so equal inputs give
/// equal weights and [`select`](Self::select) is reproducible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub local: u32,
    pub peers: Vec<(NodeId, u32)>,
    pub reject: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self::all_local()
    }
}

impl Weights {
    /// Everything served here.
    pub fn all_local() -> Self {
        Self {
            local: WEIGHT_SCALE,
            peers: Vec::new(),
            reject: 0,
        }
    }

    /// Sum of all parts (`WEIGHT_SCALE` for weights built by a strategy).
    pub fn total(&self) -> u32 {
        self.local + self.reject + self.peers.iter().map(|(_, w)| w).sum::<u32>()
    }

    /// The weight of `node` (0 if absent).
    pub fn peer(&self, node: NodeId) -> u32 {
        self.peers
            .iter()
            .find(|(n, _)| *n == node)
            .map_or(0, |(_, w)| *w)
    }

    /// True while some traffic is not served locally: the hysteresis state of the lease
    /// strategy, kept in the weights themselves.
    pub fn is_spilling(&self) -> bool {
        self.local < self.total()
    }

    /// The weighted choice for one request: `roll` is any random `u32` from the caller, taken
    /// modulo the total; the ranges are local, then peers in order, then reject. Over the
    /// rolls `0..total` each outcome comes up exactly its weight's number of times.
    pub fn select(&self, roll: u32) -> Decision {
        let total = self.total();
        if total == 0 {
            return Decision::Local;
        }
        let mut r = roll % total;
        if r < self.local {
            return Decision::Local;
        }
        r -= self.local;
        for &(node, w) in &self.peers {
            if r < w {
                return Decision::Forward(node);
            }
            r -= w;
        }
        Decision::Reject
    }

    /// Where to try next when `first` fails (a forward refused or unreachable): the other
    /// positive-weight targets by descending weight (ties: local, then peers in order), then
    /// the local node if it was not among them, since queueing here beats failing. Nothing
    /// follows a deliberate reject.
    pub fn fallback_order(&self, first: Decision) -> Vec<Decision> {
        if first == Decision::Reject {
            return Vec::new();
        }
        let mut targets: Vec<(Decision, u32)> = std::iter::once((Decision::Local, self.local))
            .chain(self.peers.iter().map(|&(n, w)| (Decision::Forward(n), w)))
            .filter(|&(d, w)| w > 0 && d != first)
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.1)); // stable: ties keep local-then-peers order
        let mut order: Vec<Decision> = targets.into_iter().map(|(d, _)| d).collect();
        if first != Decision::Local && !order.contains(&Decision::Local) {
            order.push(Decision::Local);
        }
        order
    }

    /// Integer weights from non-negative real shares (any unit; they are normalised) by the
    /// largest-remainder method. A share of exactly zero gets weight zero, so a strategy that
    /// does not want to reject never does; all-zero shares mean all local.
    pub fn from_shares(local: f64, peers: &[(NodeId, f64)], reject: f64) -> Self {
        let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        let mut shares: Vec<f64> = Vec::with_capacity(peers.len() + 2);
        shares.push(clean(local));
        shares.extend(peers.iter().map(|(_, s)| clean(*s)));
        shares.push(clean(reject));
        let sum: f64 = shares.iter().sum();
        if sum <= 0.0 {
            return Self::all_local();
        }
        let exact: Vec<f64> = shares
            .iter()
            .map(|s| s / sum * WEIGHT_SCALE as f64)
            .collect();
        let mut ints: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
        let mut order: Vec<usize> = (0..exact.len()).filter(|&i| shares[i] > 0.0).collect();
        order.sort_by(|&a, &b| {
            let ra = exact[a] - exact[a].floor();
            let rb = exact[b] - exact[b].floor();
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        let mut assigned: u32 = ints.iter().sum();
        let mut k = 0;
        while assigned < WEIGHT_SCALE {
            ints[order[k % order.len()]] += 1;
            assigned += 1;
            k += 1;
        }
        while assigned > WEIGHT_SCALE {
            // only reachable through rounding error: trim the largest part
            let i = (0..ints.len()).max_by_key(|&i| ints[i]).unwrap_or(0);
            ints[i] -= 1;
            assigned -= 1;
        }
        let n = ints.len();
        let mut peer_weights: Vec<(NodeId, u32)> = peers
            .iter()
            .zip(&ints[1..n - 1])
            .filter(|&(_, &w)| w > 0)
            .map(|(&(node, _), &w)| (node, w))
            .collect();
        peer_weights.sort_by_key(|&(node, _)| node);
        Self {
            local: ints[0],
            peers: peer_weights,
            reject: ints[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn node(i: u128) -> NodeId {
        NodeId(Uuid::from_u128(i))
    }

    #[test]
    fn select_over_all_rolls_matches_the_weights_exactly() {
        let w = Weights {
            local: 200,
            peers: vec![(node(1), 320), (node(2), 470)],
            reject: 10,
        };
        let mut counts = std::collections::HashMap::new();
        for roll in 0..WEIGHT_SCALE {
            *counts.entry(w.select(roll)).or_insert(0u32) += 1;
        }
        assert_eq!(counts[&Decision::Local], 200);
        assert_eq!(counts[&Decision::Forward(node(1))], 320);
        assert_eq!(counts[&Decision::Forward(node(2))], 470);
        assert_eq!(counts[&Decision::Reject], 10);
        // Rolls wrap around the scale.
        assert_eq!(w.select(WEIGHT_SCALE + 250), w.select(250));
    }

    #[test]
    fn fallback_tries_the_next_peer_by_weight_then_local() {
        let w = Weights {
            local: 0,
            peers: vec![(node(1), 300), (node(2), 500), (node(3), 200)],
            reject: 0,
        };
        assert_eq!(
            w.fallback_order(Decision::Forward(node(2))),
            vec![
                Decision::Forward(node(1)),
                Decision::Forward(node(3)),
                Decision::Local
            ]
        );
        assert!(w.fallback_order(Decision::Reject).is_empty());
    }

    #[test]
    fn shares_become_integers_summing_to_the_scale_with_zero_reject_kept_zero() {
        let w = Weights::from_shares(1.0, &[(node(2), 1.0), (node(1), 1.0)], 0.0);
        assert_eq!(w.total(), WEIGHT_SCALE);
        assert_eq!(w.reject, 0);
        assert_eq!(w.local, 334); // ties go to the earliest part
        assert_eq!(w.peers, vec![(node(1), 333), (node(2), 333)]);
        assert_eq!(Weights::from_shares(0.0, &[], 0.0), Weights::all_local());
    }
}
