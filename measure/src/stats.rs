//! Latency statistics for every report of the workspace (the benchmarks of `testbed`, the IoT
//! emulator's report): an HDR histogram of microseconds with 3 significant digits, and the
//! percentiles, minimum, maximum and mean read from it in milliseconds.
//!
//! Percentiles are nearest rank (the smallest recorded value with at least that share of the
//! values at or below it), within the histogram's precision: a value read back is within
//! 0.1 % of the recorded one ([`within_precision`]).

use hdrhistogram::Histogram;
use std::time::Duration;

/// Significant decimal digits every recorded value keeps.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The relative error of a value read back from a [`Latencies`] (3 significant digits).
pub const RELATIVE_PRECISION: f64 = 1e-3;

/// `measured` (read back from a [`Latencies`]) equals `exact` within the histogram's precision.
pub fn within_precision(measured: f64, exact: f64) -> bool {
    (measured - exact).abs() <= exact.abs() * RELATIVE_PRECISION
}

/// Recorded latencies: a histogram of whole microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty record; it grows to any value recorded.
    pub fn new() -> Self {
        let histogram = Histogram::new(SIGNIFICANT_DIGITS)
            .expect("3 significant digits is a valid histogram precision");
        Self { histogram }
    }

    /// The latencies in milliseconds; values that are not finite numbers are left out.
    pub fn from_ms(values: impl IntoIterator<Item = f64>) -> Self {
        let mut latencies = Self::new();
        for ms in values {
            latencies.record_ms(ms);
        }
        latencies
    }

    /// Records one latency, at least 1 µs.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_us(us.max(1));
    }

    /// Records one latency in milliseconds (rounded to the microsecond; not a finite number:
    /// left out).
    pub fn record_ms(&mut self, ms: f64) {
        if ms.is_finite() {
            self.record_us((ms.max(0.0) * 1000.0).round() as u64);
        }
    }

    fn record_us(&mut self, us: u64) {
        // The histogram grows to hold the value; only a count overflow or an impossible
        // growth fails, and then the value is kept at the histogram's bound.
        if self.histogram.record(us).is_err() {
            self.histogram.saturating_record(us);
        }
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // A histogram that grows as needed takes any other one.
        let _ = self.histogram.add(&other.histogram);
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The nearest-rank percentile `q` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        // Lowered a little so float noise (0.9 × 30 = 27.000000000000004) does not skip a rank.
        let q = (q.clamp(0.0, 1.0) - 1e-9).max(0.0);
        ms(self.histogram.value_at_quantile(q))
    }

    /// The largest latency in milliseconds; 0 when empty.
    pub fn max_ms(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            ms(self.histogram.max())
        }
    }

    /// The smallest latency in milliseconds; 0 when empty.
    pub fn min_ms(&self) -> f64 {
        if self.is_empty() {
            0.0
        } else {
            ms(self.histogram.min())
        }
    }

    /// The mean latency in milliseconds; 0 when empty.
    pub fn mean_ms(&self) -> f64 {
        self.histogram.mean() / 1000.0
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(measured: f64, exact: f64) {
        assert!(
            within_precision(measured, exact),
            "{measured} is not {exact} within 0.1 %"
        );
    }

    #[test]
    fn percentiles_are_the_nearest_rank_within_the_precision() {
        let l = Latencies::from_ms((1..=30).map(f64::from));
        assert_eq!(l.len(), 30);
        assert_close(l.quantile_ms(0.5), 15.0);
        assert_close(l.quantile_ms(0.9), 27.0);
        assert_close(l.quantile_ms(0.99), 30.0);
        assert_close(l.quantile_ms(0.0), 1.0);
        assert_close(l.quantile_ms(1.0), 30.0);
        assert_close(l.min_ms(), 1.0);
        assert_close(l.max_ms(), 30.0);
        assert_close(l.mean_ms(), 15.5);
        let one = Latencies::from_ms([7.0]);
        assert_close(one.quantile_ms(0.99), 7.0);
        let four = Latencies::from_ms([4.0, 1.0, 3.0, 2.0]);
        assert_close(four.quantile_ms(0.5), 2.0);
    }

    #[test]
    fn an_empty_record_reads_zero_and_non_numbers_are_left_out() {
        let l = Latencies::from_ms([f64::NAN, f64::INFINITY]);
        assert!(l.is_empty());
        assert_eq!(
            (l.quantile_ms(0.5), l.max_ms(), l.min_ms(), l.mean_ms()),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn durations_are_recorded_in_microseconds_and_records_merge() {
        let mut a = Latencies::new();
        a.record(Duration::from_micros(1500));
        a.record(Duration::ZERO);
        let mut b = Latencies::new();
        b.record(Duration::from_secs(3600));
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_close(a.min_ms(), 0.001);
        assert_close(a.quantile_ms(0.5), 1.5);
        assert_close(a.max_ms(), 3_600_000.0);
    }
}
