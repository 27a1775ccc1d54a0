//! Arrival processes: when a function's devices send requests. Pure: times are offsets from the
//! start of the experiment, the window is a parameter and randomness comes from the caller's
//! seeded generator, so a simulator can draw the same arrivals in chunks.
//!
//! - `poisson`: exponential inter-arrival times at `rate` requests per second (open-loop
//!   Poisson, as in GIRAFF and the Azure trace).
//! - `constant`: exactly every `1 / rate` seconds, at `0, 1/rate, 2/rate, …`.
//! - `diurnal`: a non-homogeneous Poisson process with rate
//!   `mean + amplitude * sin(2π (t + phase) / period)` (`amplitude <= mean`), by thinning.
//! - `bursts`: Poisson at `rate` outside bursts and `burst_rate` inside; bursts of `length`
//!   start at `start + k * every`.
//! - `trace`: replays recorded offsets (already read from a trace file).

use rand::Rng;
use rand_distr::{Distribution, Exp};
use std::f64::consts::PI;
use std::time::Duration;

/// Exponential inter-arrival times (seconds) at `rate` per second; `None` unless `rate` is
/// more than 0.
fn exponential(rate: f64) -> Option<Exp<f64>> {
    if rate > 0.0 {
        Exp::new(rate).ok()
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    Poisson {
        rate: f64,
    },
    Constant {
        rate: f64,
    },
    Diurnal {
        mean: f64,
        amplitude: f64,
        period: Duration,
        phase: Duration,
    },
    Bursts {
        rate: f64,
        burst_rate: f64,
        every: Duration,
        length: Duration,
        start: Duration,
    },
    /// Offsets from the start of the experiment, sorted.
    Trace {
        offsets: Vec<Duration>,
    },
}

impl Arrival {
    /// The instantaneous rate (requests per second) at `t`; `None` for a trace.
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let t = t.as_secs_f64();
        match self {
            Arrival::Poisson { rate } | Arrival::Constant { rate } => Some(*rate),
            Arrival::Diurnal {
                mean,
                amplitude,
                period,
                phase,
            } => Some(
                (mean
                    + amplitude
                        * (2.0 * PI * (t + phase.as_secs_f64()) / period.as_secs_f64()).sin())
                .max(0.0),
            ),
            Arrival::Bursts {
                rate,
                burst_rate,
                every,
                length,
                start,
            } => {
                let since = t - start.as_secs_f64();
                let in_burst = since >= 0.0 && since % every.as_secs_f64() < length.as_secs_f64();
                Some(if in_burst { *burst_rate } else { *rate })
            }
            Arrival::Trace { .. } => None,
        }
    }

    /// An upper bound of the rate, for thinning.
    fn max_rate(&self) -> f64 {
        match self {
            Arrival::Poisson { rate } | Arrival::Constant { rate } => *rate,
            Arrival::Diurnal {
                mean, amplitude, ..
            } => mean + amplitude,
            Arrival::Bursts {
                rate, burst_rate, ..
            } => rate.max(*burst_rate),
            Arrival::Trace { .. } => 0.0,
        }
    }

    /// Arrival times in `[from, until)`, sorted.
    pub fn arrivals(&self, from: Duration, until: Duration, rng: &mut impl Rng) -> Vec<Duration> {
        if until <= from {
            return Vec::new();
        }
        let (a, b) = (from.as_secs_f64(), until.as_secs_f64());
        match self {
            Arrival::Trace { offsets } => offsets
                .iter()
                .copied()
                .filter(|t| *t >= from && *t < until)
                .collect(),
            Arrival::Constant { rate } => {
                if *rate <= 0.0 {
                    return Vec::new();
                }
                let first = (a * rate).ceil() as u64;
                (first..)
                    .map(|k| k as f64 / rate)
                    .take_while(|t| *t < b)
                    .map(Duration::from_secs_f64)
                    .collect()
            }
            Arrival::Poisson { rate } => {
                let Some(gap) = exponential(*rate) else {
                    return Vec::new();
                };
                let mut out = Vec::with_capacity(((b - a) * rate * 1.2) as usize + 4);
                let mut t = a + gap.sample(rng);
                while t < b {
                    out.push(Duration::from_secs_f64(t));
                    t += gap.sample(rng);
                }
                out
            }
            Arrival::Diurnal { .. } | Arrival::Bursts { .. } => {
                // Lewis-Shedler thinning: candidates at the maximum rate, each kept with
                // probability rate(t) / max.
                let max = self.max_rate();
                let Some(gap) = exponential(max) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                let mut t = a + gap.sample(rng);
                while t < b {
                    let at = Duration::from_secs_f64(t);
                    let keep = self.rate_at(at).unwrap_or(0.0) / max;
                    if rng.random::<f64>() < keep {
                        out.push(at);
                    }
                    t += gap.sample(rng);
                }
                out
            }
        }
    }

    /// The expected number of arrivals in `[0, until)` (exact for a trace and constant rate,
    /// the integral of the rate otherwise, by the midpoint rule over 1 ms steps).
    pub fn expected_count(&self, until: Duration) -> f64 {
        match self {
            Arrival::Trace { offsets } => offsets.iter().filter(|t| **t < until).count() as f64,
            Arrival::Constant { rate } if *rate > 0.0 => (until.as_secs_f64() * rate).ceil(),
            _ => {
                let steps = until.as_millis() as u64;
                (0..steps)
                    .map(|i| {
                        self.rate_at(Duration::from_micros(i * 1000 + 500))
                            .unwrap_or(0.0)
                            * 0.001
                    })
                    .sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn poisson_arrivals_have_the_requested_mean_rate_and_exponential_gaps() {
        let mut rng = stream(1, Stream::Arrivals, 0);
        let times = Arrival::Poisson { rate: 20.0 }.arrivals(secs(0.0), secs(1000.0), &mut rng);
        // Expected 20 000, standard deviation sqrt(20 000) = 141: 5 sigma is 707.
        assert!(
            (times.len() as f64 - 20_000.0).abs() < 700.0,
            "{} arrivals",
            times.len()
        );
        let gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.05).abs() < 0.002, "mean gap {mean}");
        // Exponential: the share of gaps above the mean is e^-1 = 0.368.
        let above = gaps.iter().filter(|g| **g > 0.05).count() as f64 / gaps.len() as f64;
        assert!((above - 0.368).abs() < 0.02, "share above the mean {above}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted");
    }

    #[test]
    fn the_same_seed_gives_the_same_poisson_arrivals() {
        let p = Arrival::Poisson { rate: 5.0 };
        let a = p.arrivals(secs(0.0), secs(60.0), &mut stream(4, Stream::Arrivals, 0));
        let b = p.arrivals(secs(0.0), secs(60.0), &mut stream(4, Stream::Arrivals, 0));
        let c = p.arrivals(secs(0.0), secs(60.0), &mut stream(5, Stream::Arrivals, 0));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn constant_arrivals_are_evenly_spaced_within_the_window() {
        let c = Arrival::Constant { rate: 4.0 };
        let mut rng = stream(0, Stream::Arrivals, 0);
        let times = c.arrivals(secs(0.0), secs(2.0), &mut rng);
        assert_eq!(
            times,
            [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
                .map(secs)
                .to_vec()
        );
        // A later window continues on the same grid.
        let later = c.arrivals(secs(1.1), secs(1.8), &mut rng);
        assert_eq!(later, [1.25, 1.5, 1.75].map(secs).to_vec());
        assert_eq!(c.expected_count(secs(2.0)), 8.0);
    }

    #[test]
    fn diurnal_arrivals_peak_in_the_high_half_of_the_period_and_keep_the_mean() {
        let d = Arrival::Diurnal {
            mean: 10.0,
            amplitude: 8.0,
            period: secs(100.0),
            phase: secs(0.0),
        };
        assert_eq!(d.rate_at(secs(25.0)), Some(18.0));
        assert!((d.rate_at(secs(75.0)).unwrap() - 2.0).abs() < 1e-9);
        let times = d.arrivals(secs(0.0), secs(1000.0), &mut stream(2, Stream::Arrivals, 0));
        // Over whole periods the mean rate is kept: 10 000 expected.
        assert!(
            (times.len() as f64 - 10_000.0).abs() < 500.0,
            "{} arrivals",
            times.len()
        );
        // First half of each period: rate 10 + 8 sin, integral share (10 + 16/π) / 20 = 0.755.
        let high = times
            .iter()
            .filter(|t| t.as_secs_f64() % 100.0 < 50.0)
            .count() as f64
            / times.len() as f64;
        assert!((high - 0.755).abs() < 0.02, "share in the high half {high}");
        // The busiest 10 s bin is around the peak (t mod 100 in [20, 30)).
        let mut bins = [0usize; 10];
        for t in &times {
            bins[((t.as_secs_f64() % 100.0) / 10.0) as usize] += 1;
        }
        let busiest = (0..10).max_by_key(|i| bins[*i]).unwrap();
        assert!(
            (1..=3).contains(&busiest),
            "busiest bin {busiest}: {bins:?}"
        );
        assert!((d.expected_count(secs(100.0)) - 1000.0).abs() < 1.0);
    }

    #[test]
    fn bursts_concentrate_arrivals_inside_the_burst_windows() {
        let b = Arrival::Bursts {
            rate: 1.0,
            burst_rate: 50.0,
            every: secs(10.0),
            length: secs(2.0),
            start: secs(5.0),
        };
        assert_eq!(b.rate_at(secs(4.9)), Some(1.0));
        assert_eq!(b.rate_at(secs(5.0)), Some(50.0));
        assert_eq!(b.rate_at(secs(16.5)), Some(50.0));
        assert_eq!(b.rate_at(secs(17.5)), Some(1.0));
        let times = b.arrivals(secs(0.0), secs(205.0), &mut stream(3, Stream::Arrivals, 0));
        let in_burst = |t: &Duration| {
            let s = t.as_secs_f64() - 5.0;
            s >= 0.0 && s % 10.0 < 2.0
        };
        let inside = times.iter().filter(|t| in_burst(t)).count() as f64;
        let outside = times.len() as f64 - inside;
        // 20 bursts x 2 s x 50/s = 2000 inside; (205 - 40) s x 1/s = 165 outside.
        assert!((inside - 2000.0).abs() < 200.0, "{inside} inside bursts");
        assert!((outside - 165.0).abs() < 60.0, "{outside} outside bursts");
    }

    #[test]
    fn trace_replay_keeps_the_recorded_order_within_the_window() {
        let t = Arrival::Trace {
            offsets: [0.0, 0.5, 0.5, 2.0, 7.0].map(secs).to_vec(),
        };
        let mut rng = stream(0, Stream::Arrivals, 0);
        assert_eq!(
            t.arrivals(secs(0.0), secs(5.0), &mut rng),
            [0.0, 0.5, 0.5, 2.0].map(secs).to_vec()
        );
        assert_eq!(
            t.arrivals(secs(0.5), secs(10.0), &mut rng),
            [0.5, 0.5, 2.0, 7.0].map(secs).to_vec()
        );
        assert_eq!(t.rate_at(secs(1.0)), None);
        assert_eq!(t.expected_count(secs(5.0)), 4.0);
    }

    #[test]
    fn an_empty_or_zero_rate_window_has_no_arrivals() {
        let mut rng = stream(0, Stream::Arrivals, 0);
        assert!(
            Arrival::Poisson { rate: 0.0 }
                .arrivals(secs(0.0), secs(10.0), &mut rng)
                .is_empty()
        );
        assert!(
            Arrival::Poisson { rate: 5.0 }
                .arrivals(secs(3.0), secs(3.0), &mut rng)
                .is_empty()
        );
    }
}
