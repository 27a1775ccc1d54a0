//! Latency model: per-link estimates, accumulation along a relay path, transfer time.

use crate::units::Latency;
use serde::{Deserialize, Serialize};

/// Latency from the data source (the auction's target node) to some node, along the relay path.
/// Values are one-way, in milliseconds, with sub-millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathLatency {
    /// Sum of the links' median one-way latencies.
    pub median: f64,
    /// Standard deviation of the sum (links' sigmas added in quadrature).
    pub median_uncertainty: f64,
    /// Probability that a packet is lost somewhere on the path: 1 - prod(1 - loss_i).
    #[serde(default)]
    pub packet_loss: f64,
    /// Bottleneck bandwidth in bytes/s (min over links); `None` when unknown/unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<f64>,
}

impl PathLatency {
    /// The empty path: at the data source itself.
    pub const ZERO: PathLatency = PathLatency {
        median: 0.0,
        median_uncertainty: 0.0,
        packet_loss: 0.0,
        bandwidth: None,
    };

    /// Appends one link.
    pub fn then(&self, link: &PathLatency) -> PathLatency {
        let bw = match (self.bandwidth, link.bandwidth) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        PathLatency {
            median: self.median + link.median,
            median_uncertainty: self.median_uncertainty.hypot(link.median_uncertainty),
            packet_loss: 1.0 - (1.0 - self.packet_loss) * (1.0 - link.packet_loss),
            bandwidth: bw,
        }
    }

    pub fn from_latency(l: Latency) -> PathLatency {
        PathLatency {
            median: l.as_millis_f64(),
            ..PathLatency::ZERO
        }
    }

    /// Sanitises values coming from a peer: non-finite or negative values become 0
    /// (loss is clamped to [0, 1)), so a bad peer cannot poison arithmetic.
    pub fn sanitized(self) -> PathLatency {
        let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
        PathLatency {
            median: clean(self.median),
            median_uncertainty: clean(self.median_uncertainty),
            packet_loss: clean(self.packet_loss).min(0.999),
            bandwidth: self.bandwidth.filter(|b| b.is_finite() && *b > 0.0),
        }
    }
}

impl Default for PathLatency {
    fn default() -> Self {
        Self::ZERO
    }
}
