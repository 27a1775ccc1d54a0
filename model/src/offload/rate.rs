//! Online estimators fed by the data plane: request rates over a sliding window, capacity
//! learned from measured throughput, and node usage learned from observed CPU.
//!
//! DFaaS measured the rate over the last second only and lost its counters at every HAProxy
//! reload; these keep their state in the node and are never reset by a weight change.

use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Requests per second over a sliding window, counted in fixed buckets (default: 100 ms
/// buckets over 5 s, rising within 1 s).
///
/// `record` and `rate` take `now`; events older than the window fall out as time passes. The
/// divisor is the window, except during warm-up (less than one window since the first
/// event), where it is the time since the first event, at least one second, so a node that
/// just started sees its real rate instead of a fraction of it.
///
/// With a rise span ([`RateWindow::with_rise`]; the default's is [`Self::DEFAULT_RISE`]) the
/// rate is the larger of the whole window's and the last span's: a rise shows within the span
/// (a node whose load doubles sees it in a second, not in five), a fall only over the whole
/// window (so a node keeps shedding, and does not offer capacity, until the load has stayed low).
#[derive(Debug, Clone, PartialEq)]
pub struct RateWindow {
    bucket_ms: u64,
    /// Absolute bucket index (`ms / bucket_ms`) held by each slot.
    ids: Vec<u64>,
    counts: Vec<u64>,
    first: Option<Timestamp>,
    /// Buckets of the rise span (0: none).
    rise: u64,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self::new(Self::DEFAULT_WINDOW, Self::DEFAULT_BUCKET).with_rise(Self::DEFAULT_RISE)
    }
}

impl RateWindow {
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
    pub const DEFAULT_BUCKET: Duration = Duration::from_millis(100);
    /// The default's rise span.
    pub const DEFAULT_RISE: Duration = Duration::from_secs(1);

    /// A window of `window` split in buckets of `bucket` (both at least 1 ms; the window is
    /// rounded up to a whole number of buckets).
    pub fn new(window: Duration, bucket: Duration) -> Self {
        let bucket_ms = (bucket.as_millis() as u64).max(1);
        let window_ms = (window.as_millis() as u64).max(bucket_ms);
        let n = window_ms.div_ceil(bucket_ms) as usize;
        Self {
            bucket_ms,
            ids: vec![u64::MAX; n],
            counts: vec![0; n],
            first: None,
            rise: 0,
        }
    }

    /// The same window, its rate rising within `rise` (rounded up to whole buckets, at most
    /// the window; zero: no rise span).
    pub fn with_rise(mut self, rise: Duration) -> Self {
        let buckets = (rise.as_millis() as u64).div_ceil(self.bucket_ms);
        self.rise = buckets.min(self.ids.len() as u64);
        self
    }

    /// The window length (a whole number of buckets).
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.bucket_ms * self.ids.len() as u64)
    }

    /// One request at `now`.
    pub fn record(&mut self, now: Timestamp) {
        self.record_n(now, 1);
    }

    /// `n` requests at `now`. Events older than the window (a clock stepping back) are
    /// dropped.
    pub fn record_n(&mut self, now: Timestamp, n: u64) {
        if n == 0 {
            return;
        }
        let idx = now.as_millis() / self.bucket_ms;
        let slot = (idx % self.ids.len() as u64) as usize;
        let held = self.ids[slot];
        if held == idx {
            self.counts[slot] += n;
        } else if held == u64::MAX || held < idx {
            self.ids[slot] = idx;
            self.counts[slot] = n;
        } else {
            return; // a newer bucket already owns this slot: the event is too old
        }
        self.first = Some(self.first.map_or(now, |f| f.min(now)));
    }

    /// Requests per second over the window ending at `now`; with a rise span, the larger of
    /// that and the rate over the span.
    pub fn rate(&self, now: Timestamp) -> f64 {
        let whole = self.rate_over(now, self.ids.len() as u64);
        if self.rise == 0 {
            return whole;
        }
        whole.max(self.rate_over(now, self.rise))
    }

    /// Requests per second over the last `n` buckets ending at `now`.
    fn rate_over(&self, now: Timestamp, n: u64) -> f64 {
        let idx = now.as_millis() / self.bucket_ms;
        let oldest = (idx + 1).saturating_sub(n);
        let total: u64 = self
            .ids
            .iter()
            .zip(&self.counts)
            .filter(|&(&id, _)| id != u64::MAX && id >= oldest && id <= idx)
            .map(|(_, &c)| c)
            .sum();
        if total == 0 {
            return 0.0;
        }
        // The counted span: the full older buckets plus the elapsed part of the current one.
        let span_ms = (n - 1) * self.bucket_ms + now.as_millis() % self.bucket_ms + 1;
        let window = span_ms as f64 / 1000.0;
        let elapsed = self
            .first
            .map_or(window, |f| now.since(f).as_secs_f64())
            .clamp(1.0_f64.min(window), window);
        total as f64 / elapsed
    }
}

/// Learns a function's capacity (requests per second it can complete) from its measured
/// throughput, for functions deployed without a max rate (DFaaS's Recalc broke entirely
/// when the `maxrate` label was missing).
///
/// Feed every completion to [`record_completion`](Self::record_completion) and call
/// [`sample`](Self::sample) from the control step. Completions per second measured while
/// the function is saturated (requests queued, e.g. `queue_len > 0`) are its capacity; they
/// are smoothed by an EWMA. Unsaturated throughput above the estimate proves the capacity
/// is at least that, so it raises the estimate at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputEstimator {
    completions: RateWindow,
    estimate: Option<f64>,
    /// EWMA weight of a new saturated sample, in `(0, 1]`.
    alpha: f64,
}

impl Default for ThroughputEstimator {
    fn default() -> Self {
        Self::new(
            RateWindow::new(Duration::from_secs(2), RateWindow::DEFAULT_BUCKET),
            0.3,
        )
    }
}

impl ThroughputEstimator {
    pub fn new(completions: RateWindow, alpha: f64) -> Self {
        Self {
            completions,
            estimate: None,
            alpha: if alpha.is_finite() {
                alpha.clamp(0.01, 1.0)
            } else {
                0.3
            },
        }
    }

    /// One request completed at `now`.
    pub fn record_completion(&mut self, now: Timestamp) {
        self.completions.record(now);
    }

    /// Update the estimate at `now`; `saturated` says whether the function had work waiting
    /// during the last window.
    pub fn sample(&mut self, now: Timestamp, saturated: bool) {
        let rate = self.completions.rate(now);
        self.estimate = match (self.estimate, saturated) {
            (None, true) if rate > 0.0 => Some(rate),
            (Some(e), true) if rate > 0.0 => Some(e + self.alpha * (rate - e)),
            (Some(e), false) if rate > e => Some(rate),
            (e, _) => e,
        };
    }

    /// Learned capacity in requests per second, once the function has been saturated.
    pub fn capacity(&self) -> Option<f64> {
        self.estimate
    }
}

/// The node_margin strategy's online usage model: node CPU usage (percent) ≈ Σ over
/// functions of `rate × cost`, the per-request costs learned online from observed CPU.
///
/// DFaaS asked an external LightGBM forecaster (three calls per 1 % weight step) with a
/// hand-written HIGH/MEDIUM/LOW list of functions. Here each cost is learned by a normalised
/// least-mean-squares step (an EWMA of the prediction error spread over the functions in
/// proportion to their rates), so a new function needs no list and no external service.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageModel {
    costs: BTreeMap<String, f64>,
    /// Learning rate in `(0, 1]`.
    alpha: f64,
}

impl Default for UsageModel {
    fn default() -> Self {
        Self::new(0.2)
    }
}

impl UsageModel {
    pub fn new(alpha: f64) -> Self {
        Self {
            costs: BTreeMap::new(),
            alpha: if alpha.is_finite() {
                alpha.clamp(0.001, 1.0)
            } else {
                0.2
            },
        }
    }

    /// Learned CPU percent per (request/s) of `function`.
    pub fn cost(&self, function: &str) -> Option<f64> {
        self.costs.get(function).copied()
    }

    /// Predicted node usage (percent, not clamped) for these per-function rates (req/s).
    pub fn predict(&self, rates: &[(&str, f64)]) -> f64 {
        rates
            .iter()
            .map(|(f, r)| r.max(0.0) * self.cost(f).unwrap_or(0.0))
            .sum()
    }

    /// Learn from one observation: these rates produced `usage` percent CPU.
    pub fn observe(&mut self, rates: &[(&str, f64)], usage: f64) {
        if !usage.is_finite() {
            return;
        }
        let norm: f64 = rates.iter().map(|(_, r)| r.max(0.0).powi(2)).sum();
        if norm <= 0.0 {
            return;
        }
        let error = usage - self.predict(rates);
        for (f, r) in rates {
            let r = r.max(0.0);
            let cost = self.costs.entry((*f).to_string()).or_insert(0.0);
            *cost = (*cost + self.alpha * error * r / norm).max(0.0);
        }
    }
}

/// The margin a node shares with each of its `common_neighbours` (DFaaS node margin:
/// `(100 - usage) / C`), never negative.
pub fn margin_for_peers(usage_percent: f64, common_neighbours: usize) -> f64 {
    if common_neighbours == 0 || !usage_percent.is_finite() {
        return 0.0;
    }
    (100.0 - usage_percent).max(0.0) / common_neighbours as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn rate_window_measures_a_steady_rate_over_the_whole_window() {
        let mut w = RateWindow::default();
        // 50 req/s for 10 s: one request every 20 ms.
        for i in 0..500 {
            w.record(at(1_000_000 + i * 20));
        }
        let r = w.rate(at(1_000_000 + 9_999));
        assert!((r - 50.0).abs() < 1.5, "{r}");
    }

    #[test]
    fn rate_window_forgets_requests_older_than_the_window() {
        let mut w = RateWindow::default();
        for i in 0..100 {
            w.record(at(1_000_000 + i * 10));
        }
        assert!(w.rate(at(1_000_999)) > 0.0);
        assert_eq!(w.rate(at(1_000_000 + 6_100)), 0.0);
    }

    #[test]
    fn rate_window_sees_the_real_rate_during_warm_up() {
        let mut w = RateWindow::default();
        // 40 requests in the first second: 40 req/s, not 40 / 5 s = 8.
        for i in 0..40 {
            w.record(at(5_000 + i * 25));
        }
        let r = w.rate(at(5_999));
        assert!((r - 40.0).abs() < 2.0, "{r}");
    }

    #[test]
    fn the_default_rate_window_sees_a_rise_within_a_second_and_a_fall_over_the_window() {
        let mut fast = RateWindow::default();
        let mut plain = RateWindow::new(RateWindow::DEFAULT_WINDOW, RateWindow::DEFAULT_BUCKET);
        let mut record = |t: u64| {
            fast.record(at(t));
            plain.record(at(t));
        };
        // 10 req/s for 10 s, then 40 req/s for 1 s.
        for i in 0..100 {
            record(1_000_000 + i * 100);
        }
        for i in 0..40 {
            record(1_010_000 + i * 25);
        }
        let now = at(1_010_999);
        assert!((fast.rate(now) - 40.0).abs() < 2.0, "{}", fast.rate(now));
        // The 5-s window alone: (4 s × 10 + 40) / 5 s.
        assert!((plain.rate(now) - 16.0).abs() < 1.0, "{}", plain.rate(now));
        // Back to 10 req/s: 2 s later the default still counts the burst in its window.
        let mut fast2 = fast.clone();
        for i in 0..20 {
            fast2.record(at(1_011_000 + i * 100));
        }
        let later = at(1_012_999);
        assert!(fast2.rate(later) > 14.0, "{}", fast2.rate(later));
        // A zero rise span is the plain window.
        assert_eq!(
            RateWindow::new(Duration::from_secs(5), Duration::from_millis(100))
                .with_rise(Duration::ZERO),
            RateWindow::new(Duration::from_secs(5), Duration::from_millis(100))
        );
    }

    #[test]
    fn rate_window_ignores_events_older_than_the_window() {
        let mut w = RateWindow::new(Duration::from_secs(1), Duration::from_millis(100));
        w.record(at(10_000));
        let one = w.rate(at(10_000));
        w.record(at(7_000)); // clock stepped back 3 s: its slot belongs to a newer bucket
        assert!(one > 0.0);
        assert_eq!(w.rate(at(10_000)), one);
    }

    #[test]
    fn throughput_estimator_learns_capacity_only_from_saturated_periods() {
        let mut t = ThroughputEstimator::default();
        // 5 req/s completed while not saturated: a lower bound only.
        for i in 0..10 {
            t.record_completion(at(100_000 + i * 200));
        }
        t.sample(at(102_000), false);
        assert_eq!(t.capacity(), None);
        // Saturated at 20 req/s for 2 s.
        for i in 0..40 {
            t.record_completion(at(110_000 + i * 50));
        }
        t.sample(at(111_999), true);
        let c = t.capacity().unwrap();
        assert!((c - 20.0).abs() < 1.0, "{c}");
        // Higher unsaturated throughput raises it at once.
        for i in 0..60 {
            t.record_completion(at(120_000 + i * 33));
        }
        t.sample(at(121_999), false);
        assert!(t.capacity().unwrap() > 28.0, "{:?}", t.capacity());
    }

    #[test]
    fn usage_model_learns_per_function_costs_from_aggregate_cpu() {
        let mut m = UsageModel::new(0.5);
        // True costs: figlet 0.5 %/(req/s), shasum 2 %/(req/s).
        let truth = |a: f64, b: f64| 0.5 * a + 2.0 * b;
        for i in 0..400 {
            let a = 10.0 + (i % 7) as f64 * 5.0;
            let b = 3.0 + (i % 5) as f64 * 4.0;
            m.observe(&[("figlet", a), ("shasum", b)], truth(a, b));
        }
        let p = m.predict(&[("figlet", 40.0), ("shasum", 10.0)]);
        assert!((p - 40.0).abs() < 1.0, "{p}");
        assert!((m.cost("shasum").unwrap() - 2.0).abs() < 0.1);
    }

    #[test]
    fn margin_is_split_among_common_neighbours_and_never_negative() {
        assert_eq!(margin_for_peers(40.0, 3), 20.0);
        assert_eq!(margin_for_peers(120.0, 2), 0.0);
        assert_eq!(margin_for_peers(10.0, 0), 0.0);
    }
}
