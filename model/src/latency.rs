//! Latency model: per-link estimates, accumulation along a relay path, transfer time.
//!
//! A node measures each neighbour link with probes ([`LinkEstimator`]), the relay adds links up
//! along the path from the data source ([`PathLatency::then`]), and every node checks the SLA's
//! `latencyMax` against the time to deliver `inputMaxSize` over that path ([`check_budget`]),
//! itself included (GIRAFF's first node never checked itself).

use crate::sla::LatencyKind;
use crate::units::{Bytes, Latency};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

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

// ---------------------------------------------------------------------------------------------
// Link estimation

/// Smooths RTT samples of one link: EWMA (alpha 0.3) plus a moving median and IQR over the
/// last 50 samples; sigma = IQR / 1.349 (the IQR of a normal distribution is 1.349 sigma, and
/// unlike the standard deviation it ignores the odd huge outlier). These are GIRAFF's
/// parameters; unlike GIRAFF, there is no warm-up: one sample already gives an estimate, and
/// precision is kept below the millisecond.
#[derive(Debug, Clone)]
pub struct LinkEstimator {
    window: usize,
    alpha: f64,
    /// The last `window` answered probes' RTTs, in ms.
    rtts: VecDeque<f64>,
    /// The last `window` probes: answered (true) or lost (false).
    outcomes: VecDeque<bool>,
    ewma: Option<f64>,
}

impl Default for LinkEstimator {
    fn default() -> Self {
        LinkEstimator::new(50, 0.3)
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, value: T, window: usize) {
    q.push_back(value);
    while q.len() > window {
        q.pop_front();
    }
}

/// The `q`-quantile of sorted `v` with linear interpolation between order statistics (the
/// usual "type 7" definition), so small windows still give a sensible IQR.
fn quantile(v: &[f64], q: f64) -> f64 {
    match v.len() {
        0 => 0.0,
        n => {
            let pos = q * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

impl LinkEstimator {
    /// `window` samples (at least 1) and EWMA weight `alpha` (in (0, 1]; anything else falls
    /// back to GIRAFF's 0.3).
    pub fn new(window: usize, alpha: f64) -> Self {
        LinkEstimator {
            window: window.max(1),
            alpha: if alpha > 0.0 && alpha <= 1.0 {
                alpha
            } else {
                0.3
            },
            rtts: VecDeque::new(),
            outcomes: VecDeque::new(),
            ewma: None,
        }
    }

    /// Records an answered probe.
    pub fn observe_rtt(&mut self, rtt: Duration) {
        let ms = rtt.as_secs_f64() * 1000.0;
        push_bounded(&mut self.rtts, ms, self.window);
        push_bounded(&mut self.outcomes, true, self.window);
        self.ewma = Some(match self.ewma {
            None => ms,
            Some(prev) => self.alpha * ms + (1.0 - self.alpha) * prev,
        });
    }

    /// A probe that got no answer.
    pub fn observe_loss(&mut self) {
        push_bounded(&mut self.outcomes, false, self.window);
    }

    /// RTT samples in the window.
    pub fn samples(&self) -> usize {
        self.rtts.len()
    }

    /// The exponentially smoothed RTT, for display and logs.
    pub fn ewma_rtt_ms(&self) -> Option<f64> {
        self.ewma
    }

    /// One-way link estimate: median RTT / 2, sigma / 2, loss = lost/(lost+answered) over the
    /// window. `None` until a probe has been answered.
    pub fn estimate(&self) -> Option<PathLatency> {
        if self.rtts.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.rtts.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = quantile(&sorted, 0.5);
        let iqr = quantile(&sorted, 0.75) - quantile(&sorted, 0.25);
        let sigma = iqr / 1.349;
        let lost = self.outcomes.iter().filter(|answered| !**answered).count();
        let loss = lost as f64 / self.outcomes.len().max(1) as f64;
        Some(
            PathLatency {
                median: median / 2.0,
                median_uncertainty: sigma / 2.0,
                packet_loss: loss,
                bandwidth: None,
            }
            .sanitized(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Transfer time and the budget check

/// TCP maximum segment size assumed by the transfer model (Ethernet MTU).
const MSS: f64 = 1460.0;
/// TCP initial congestion window (RFC 6928): 10 segments, 14 600 B.
const INITIAL_WINDOW: f64 = 10.0 * MSS;

/// Time to deliver `size` bytes from the data source over `path`: one-way latency, plus extra
/// round trips of TCP slow start (initial window 10 x 1460 B, doubling per RTT, RTT = 2 x
/// one-way), plus size / bandwidth when the bandwidth is known, inflated by 1/(1-loss) for
/// retransmissions. For inputs up to 14 600 B this is the one-way latency (a kept-alive
/// connection), on a loss-free path.
///
/// GIRAFF used the Padhye steady-state throughput model with a x1.3 margin, which comes to
/// about 6.5 x the one-way latency even for a 1 KB input: it charged a connection handshake
/// and congestion-avoidance throughput that a small request on a warm connection never pays,
/// and so refused close nodes for tight SLAs. This model charges slow start only when the
/// input does not fit in the first window. Peer-supplied garbage (NaN, negative) is sanitised
/// first, so the result is always finite and non-negative.
pub fn transfer_time_ms(path: &PathLatency, size: Bytes) -> f64 {
    transfer_time_clean_ms(&path.sanitized(), size)
}

/// [`transfer_time_ms`] on an already sanitised path (a very large median is kept as is).
fn transfer_time_clean_ms(p: &PathLatency, size: Bytes) -> f64 {
    let one_way = p.median;
    let size = size.as_f64();
    // Flights needed: flight r carries INITIAL_WINDOW * 2^r bytes.
    let mut flights = 1u32;
    let mut delivered = INITIAL_WINDOW;
    let mut window = INITIAL_WINDOW;
    while delivered < size {
        window *= 2.0;
        delivered += window;
        flights += 1;
    }
    let slow_start = f64::from(flights - 1) * 2.0 * one_way;
    let serialisation = p.bandwidth.map_or(0.0, |bw| size / bw * 1000.0);
    let total = (one_way + slow_start + serialisation) / (1.0 - p.packet_loss);
    if total.is_finite() { total } else { f64::MAX }
}

/// The latency the SLA check uses: [`transfer_time_ms`] over the path with its median raised
/// to `median + sigma_margin * sigma`, so a jittery path must fit with room to spare.
pub fn estimated_ms(path: &PathLatency, size: Bytes, sigma_margin: f64) -> f64 {
    let p = path.sanitized();
    let margin = if sigma_margin.is_finite() {
        sigma_margin
    } else {
        0.0
    };
    let median = (p.median + margin * p.median_uncertainty).max(0.0);
    if !median.is_finite() {
        // Overflow of a huge (but finite) peer estimate: as far as can be.
        return f64::MAX;
    }
    transfer_time_clean_ms(&PathLatency { median, ..p }, size)
}

/// A latency budget that a path does not meet: the estimate and the budget, in ms. Bids
/// report it as `RefusalReason::LatencyBudget`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverBudget {
    pub estimated_ms: f64,
    pub max_ms: f64,
}

/// Ok(estimate in ms) if delivering `size` over `path` fits in `max`, else by how much it
/// does not. With [`LatencyKind::RoundTrip`] the answer's way back counts too: one more one-way
/// latency (`median + sigma_margin * sigma`; answers are assumed to fit one flight).
pub fn check_budget(
    path: &PathLatency,
    size: Bytes,
    max: Latency,
    kind: LatencyKind,
    sigma_margin: f64,
) -> Result<f64, OverBudget> {
    let there = estimated_ms(path, size, sigma_margin);
    let estimated_ms = match kind {
        LatencyKind::OneWay => there,
        LatencyKind::RoundTrip => there + estimated_ms(path, Bytes::new(1), sigma_margin),
    };
    let max_ms = max.as_millis_f64();
    if estimated_ms <= max_ms {
        Ok(estimated_ms)
    } else {
        Err(OverBudget {
            estimated_ms,
            max_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(median: f64, sigma: f64, loss: f64) -> PathLatency {
        PathLatency {
            median,
            median_uncertainty: sigma,
            packet_loss: loss,
            bandwidth: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn path_medians_add_and_sigmas_add_in_quadrature() {
        let p = PathLatency::ZERO
            .then(&link(10.0, 3.0, 0.0))
            .then(&link(5.0, 4.0, 0.0));
        assert!(close(p.median, 15.0));
        assert!(close(p.median_uncertainty, 5.0));
    }

    #[test]
    fn path_loss_accumulates_instead_of_staying_zero_as_in_giraff() {
        let p = link(1.0, 0.0, 0.1).then(&link(1.0, 0.0, 0.2));
        assert!(close(p.packet_loss, 1.0 - 0.9 * 0.8));
        assert!(p.packet_loss > 0.0);
    }

    #[test]
    fn path_bandwidth_is_the_bottleneck() {
        let a = PathLatency {
            bandwidth: Some(1e6),
            ..PathLatency::ZERO
        };
        let b = PathLatency {
            bandwidth: Some(5e5),
            ..PathLatency::ZERO
        };
        assert_eq!(a.then(&b).bandwidth, Some(5e5));
        assert_eq!(a.then(&PathLatency::ZERO).bandwidth, Some(1e6));
    }

    #[test]
    fn sub_millisecond_precision_is_preserved_along_a_path() {
        let hop = PathLatency::from_latency(Latency::new(Duration::from_micros(250)));
        let p = hop.then(&hop).then(&hop);
        assert!(close(p.median, 0.75), "{}", p.median);
        let mut e = LinkEstimator::default();
        e.observe_rtt(Duration::from_micros(300));
        assert!(close(e.estimate().map_or(0.0, |l| l.median), 0.15));
    }

    #[test]
    fn the_estimator_reports_half_the_median_rtt_and_half_the_iqr_based_sigma() {
        let mut e = LinkEstimator::default();
        // RTTs 1..=8 ms, in scrambled order: median 4.5, Q1 2.75, Q3 6.25, IQR 3.5.
        for ms in [5u64, 1, 8, 3, 7, 2, 6, 4] {
            e.observe_rtt(Duration::from_millis(ms));
        }
        let est = e.estimate().unwrap();
        assert_eq!(e.samples(), 8);
        assert!(close(est.median, 2.25), "{est:?}");
        assert!(close(est.median_uncertainty, 3.5 / 1.349 / 2.0), "{est:?}");
        assert_eq!(est.packet_loss, 0.0);
    }

    #[test]
    fn the_estimator_forgets_samples_older_than_its_window() {
        let mut e = LinkEstimator::new(3, 0.3);
        for ms in [100u64, 100, 100, 10, 10, 10] {
            e.observe_rtt(Duration::from_millis(ms));
        }
        assert_eq!(e.samples(), 3);
        assert!(close(e.estimate().unwrap().median, 5.0));
    }

    #[test]
    fn the_ewma_weights_the_newest_sample_by_alpha() {
        let mut e = LinkEstimator::default();
        assert_eq!(e.ewma_rtt_ms(), None);
        e.observe_rtt(Duration::from_millis(10));
        e.observe_rtt(Duration::from_millis(20));
        assert!(close(e.ewma_rtt_ms().unwrap(), 0.3 * 20.0 + 0.7 * 10.0));
    }

    #[test]
    fn lost_probes_count_as_packet_loss_and_no_answer_means_no_estimate() {
        let mut e = LinkEstimator::default();
        e.observe_loss();
        assert_eq!(e.estimate(), None);
        for _ in 0..3 {
            e.observe_rtt(Duration::from_millis(4));
        }
        let est = e.estimate().unwrap();
        assert!(close(est.packet_loss, 0.25), "{est:?}");
    }

    #[test]
    fn a_small_input_takes_one_one_way_latency() {
        let p = link(10.0, 0.0, 0.0);
        assert!(close(transfer_time_ms(&p, Bytes::new(1000)), 10.0));
        assert!(close(transfer_time_ms(&p, Bytes::new(14_600)), 10.0));
    }

    #[test]
    fn a_large_input_pays_slow_start_round_trips_and_serialisation() {
        let p = link(10.0, 0.0, 0.0);
        // 14 600 + 29 200 = 43 800 B fit in two flights: one extra RTT of 20 ms.
        assert!(close(transfer_time_ms(&p, Bytes::new(14_601)), 30.0));
        assert!(close(transfer_time_ms(&p, Bytes::new(43_800)), 30.0));
        // 1 MB: 14 600 * (2^7 - 1) = 1 854 200 >= 1e6 -> 7 flights, 6 extra RTTs.
        assert!(close(transfer_time_ms(&p, Bytes::new(1_000_000)), 130.0));
        let slow = PathLatency {
            bandwidth: Some(1e6),
            ..p
        };
        // + 1 s of serialisation at 1 MB/s.
        assert!(close(
            transfer_time_ms(&slow, Bytes::new(1_000_000)),
            1130.0
        ));
    }

    #[test]
    fn loss_inflates_the_transfer_time() {
        let p = link(10.0, 0.0, 0.5);
        assert!(close(transfer_time_ms(&p, Bytes::new(100)), 20.0));
    }

    #[test]
    fn the_estimate_adds_sigma_margin_sigmas() {
        let p = link(10.0, 2.0, 0.0);
        assert!(close(estimated_ms(&p, Bytes::new(100), 1.0), 12.0));
        assert!(close(estimated_ms(&p, Bytes::new(100), 0.0), 10.0));
        assert!(close(estimated_ms(&p, Bytes::new(100), f64::NAN), 10.0));
    }

    #[test]
    fn a_round_trip_budget_also_pays_for_the_answers_way_back() {
        // 20 ms one way with sigma 5: 25 ms there with the margin, 25 ms back.
        let p = link(20.0, 5.0, 0.0);
        let within = |ms| {
            check_budget(
                &p,
                Bytes::new(1000),
                Latency::from_millis(ms),
                LatencyKind::RoundTrip,
                1.0,
            )
        };
        assert!(close(within(50).unwrap(), 50.0));
        let OverBudget {
            estimated_ms,
            max_ms,
        } = within(49).unwrap_err();
        assert!(close(estimated_ms, 50.0));
        assert!(close(max_ms, 49.0));
        // The same path meets a one-way budget of 25 ms.
        assert!(
            check_budget(
                &p,
                Bytes::new(1000),
                Latency::from_millis(25),
                LatencyKind::OneWay,
                1.0
            )
            .is_ok()
        );
    }

    #[test]
    fn the_budget_check_passes_within_budget_and_refuses_over_it() {
        let p = link(20.0, 5.0, 0.0);
        let est = check_budget(
            &p,
            Bytes::new(1000),
            Latency::from_millis(25),
            LatencyKind::OneWay,
            1.0,
        );
        assert!(close(est.unwrap(), 25.0));
        let err = check_budget(
            &p,
            Bytes::new(1000),
            Latency::from_millis(24),
            LatencyKind::OneWay,
            1.0,
        )
        .unwrap_err();
        let OverBudget {
            estimated_ms,
            max_ms,
        } = err;
        assert!(close(estimated_ms, 25.0));
        assert!(close(max_ms, 24.0));
    }

    #[test]
    fn non_finite_values_from_a_peer_are_sanitised() {
        let bad = PathLatency {
            median: f64::NAN,
            median_uncertainty: f64::INFINITY,
            packet_loss: 1.5,
            bandwidth: Some(f64::NAN),
        };
        let clean = bad.sanitized();
        assert_eq!(clean.median, 0.0);
        assert_eq!(clean.median_uncertainty, 0.0);
        assert!(clean.packet_loss < 1.0);
        assert_eq!(clean.bandwidth, None);
        let t = estimated_ms(&bad, Bytes::new(1_000_000_000), 3.0);
        assert!(t.is_finite() && t >= 0.0, "{t}");
        let huge = link(f64::MAX, f64::MAX, 0.0);
        assert!(estimated_ms(&huge, Bytes::new(1_000_000), 1.0).is_finite());
        assert!(
            check_budget(
                &huge,
                Bytes::new(1),
                Latency::from_millis(1000),
                LatencyKind::OneWay,
                1.0
            )
            .is_err()
        );
    }
}
