//! Workload laws from the references: latency-requirement classes and execution times.
//!
//! - Azure classes (as GIRAFF uses the Azure Functions trace): a Student t with 10 degrees of
//!   freedom is drawn per function; below -2.25 the function is `low` latency (15 ms), above
//!   2.25 it is `dont_care` (10 s), otherwise `normal` (150 ms). With |t| > 2.25 each tail
//!   holds about 2.4 % of the functions (about 4.8 % together).
//! - GIRAFF's own experiment classes: `giraff_low` 50 ms, `giraff_high` 75 ms,
//!   `giraff_higher` 200 ms, `giraff_no` 1 s, `giraff_super_no` 10 s; a draw picks one of the
//!   five uniformly.
//! - Execution times: log-normal with mu = -0.38 and sigma = 2.36 (seconds), median about
//!   680 ms, with a very long tail (p99 > 140 s), so a cap is always applied.

use model::units::Latency;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, StudentT};
use std::fmt;
use std::time::Duration;

/// A named latency requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyClass {
    pub name: &'static str,
    pub latency_max: Latency,
}

impl fmt::Display for LatencyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.latency_max)
    }
}

const fn class(name: &'static str, ms: u64) -> LatencyClass {
    LatencyClass {
        name,
        latency_max: Latency::from_millis(ms),
    }
}

/// The Azure-trace classes: low latency, normal, don't care.
pub const AZURE_CLASSES: [LatencyClass; 3] = [
    class("low", 15),
    class("normal", 150),
    class("dont_care", 10_000),
];

/// GIRAFF's experiment classes.
pub const GIRAFF_CLASSES: [LatencyClass; 5] = [
    class("giraff_low", 50),
    class("giraff_high", 75),
    class("giraff_higher", 200),
    class("giraff_no", 1_000),
    class("giraff_super_no", 10_000),
];

/// The Student t threshold beyond which a function falls in an extreme Azure class.
pub const AZURE_T_THRESHOLD: f64 = 2.25;
/// Degrees of freedom of the Azure class draw.
pub const AZURE_T_DF: f64 = 10.0;

/// How a function's latency class is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassChoice {
    /// One named class.
    Fixed(LatencyClass),
    /// Drawn per function from the Azure law (`"azure"`).
    DrawAzure,
    /// Drawn uniformly among GIRAFF's five classes (`"giraff"`).
    DrawGiraff,
}

impl ClassChoice {
    /// Every accepted spelling, for error messages.
    pub fn expected() -> String {
        let names: Vec<&str> = AZURE_CLASSES
            .iter()
            .chain(GIRAFF_CLASSES.iter())
            .map(|c| c.name)
            .collect();
        format!(
            "one of \"azure\" (drawn), \"giraff\" (drawn), {}",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    pub fn parse(s: &str) -> Option<ClassChoice> {
        match s {
            "azure" => Some(ClassChoice::DrawAzure),
            "giraff" => Some(ClassChoice::DrawGiraff),
            _ => AZURE_CLASSES
                .iter()
                .chain(GIRAFF_CLASSES.iter())
                .find(|c| c.name == s)
                .copied()
                .map(ClassChoice::Fixed),
        }
    }

    /// The class of one function.
    pub fn draw(&self, rng: &mut impl Rng) -> LatencyClass {
        match self {
            ClassChoice::Fixed(c) => *c,
            ClassChoice::DrawAzure => azure_class_of_t(student_t(rng)),
            ClassChoice::DrawGiraff => GIRAFF_CLASSES[rng.random_range(0..GIRAFF_CLASSES.len())],
        }
    }
}

fn student_t(rng: &mut impl Rng) -> f64 {
    StudentT::new(AZURE_T_DF)
        .expect("10 degrees of freedom is a valid Student t")
        .sample(rng)
}

/// The Azure class for a Student t draw.
pub fn azure_class_of_t(t: f64) -> LatencyClass {
    if t < -AZURE_T_THRESHOLD {
        AZURE_CLASSES[0]
    } else if t > AZURE_T_THRESHOLD {
        AZURE_CLASSES[2]
    } else {
        AZURE_CLASSES[1]
    }
}

/// Azure Functions execution times: log-normal (seconds) with these parameters.
pub const AZURE_EXEC_MU: f64 = -0.38;
pub const AZURE_EXEC_SIGMA: f64 = 2.36;

/// Execution times drawn from the Azure log-normal, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AzureExecTime {
    pub cap: Duration,
}

impl AzureExecTime {
    /// One execution time, at most `cap`, rounded to whole milliseconds (the unit `fn-spin`
    /// takes).
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let law = LogNormal::new(AZURE_EXEC_MU, AZURE_EXEC_SIGMA)
            .expect("the Azure parameters are a valid log-normal");
        let secs: f64 = law.sample(rng);
        let ms = (secs * 1000.0).min(self.cap.as_secs_f64() * 1000.0).round();
        Duration::from_millis(ms.max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, stream};

    fn share(draws: &[LatencyClass], name: &str) -> f64 {
        draws.iter().filter(|c| c.name == name).count() as f64 / draws.len() as f64
    }

    #[test]
    fn azure_class_draws_put_about_2_4_percent_in_each_tail_and_the_rest_in_normal() {
        let mut rng = stream(42, Stream::LatencyClass, 0);
        let draws: Vec<LatencyClass> = (0..100_000)
            .map(|_| ClassChoice::DrawAzure.draw(&mut rng))
            .collect();
        // P(T > 2.25) for 10 degrees of freedom is 0.0241.
        let low = share(&draws, "low");
        let dont_care = share(&draws, "dont_care");
        let normal = share(&draws, "normal");
        assert!((low - 0.0241).abs() < 0.003, "low share {low}");
        assert!(
            (dont_care - 0.0241).abs() < 0.003,
            "dont_care share {dont_care}"
        );
        assert!((normal - 0.9518).abs() < 0.005, "normal share {normal}");
        assert!(
            draws
                .iter()
                .filter(|c| c.name == "low")
                .all(|c| c.latency_max == Latency::from_millis(15))
        );
    }

    #[test]
    fn azure_class_thresholds_are_at_plus_and_minus_2_25() {
        assert_eq!(azure_class_of_t(-2.26).name, "low");
        assert_eq!(azure_class_of_t(-2.24).name, "normal");
        assert_eq!(azure_class_of_t(2.24).name, "normal");
        assert_eq!(azure_class_of_t(2.26).name, "dont_care");
        assert_eq!(
            azure_class_of_t(3.0).latency_max,
            Latency::from_millis(10_000)
        );
    }

    #[test]
    fn giraff_class_draws_are_uniform_over_the_five_classes() {
        let mut rng = stream(3, Stream::LatencyClass, 1);
        let draws: Vec<LatencyClass> = (0..50_000)
            .map(|_| ClassChoice::DrawGiraff.draw(&mut rng))
            .collect();
        for c in GIRAFF_CLASSES {
            let s = share(&draws, c.name);
            assert!((s - 0.2).abs() < 0.01, "{} share {s}", c.name);
        }
    }

    #[test]
    fn class_names_parse_and_unknown_names_do_not() {
        assert_eq!(ClassChoice::parse("azure"), Some(ClassChoice::DrawAzure));
        assert_eq!(ClassChoice::parse("giraff"), Some(ClassChoice::DrawGiraff));
        assert_eq!(
            ClassChoice::parse("giraff_higher"),
            Some(ClassChoice::Fixed(GIRAFF_CLASSES[2]))
        );
        assert_eq!(
            ClassChoice::parse("normal").map(|c| c.draw(&mut stream(0, Stream::LatencyClass, 0))),
            Some(AZURE_CLASSES[1])
        );
        assert_eq!(ClassChoice::parse("fast"), None);
        assert!(ClassChoice::expected().contains("\"dont_care\""));
    }

    #[test]
    fn azure_execution_times_are_capped_and_have_the_log_normal_median() {
        let law = AzureExecTime {
            cap: Duration::from_secs(1),
        };
        let mut rng = stream(9, Stream::ExecTime, 0);
        let mut ms: Vec<u128> = (0..20_001)
            .map(|_| law.sample(&mut rng).as_millis())
            .collect();
        assert!(ms.iter().all(|&m| m <= 1000), "a draw exceeds the cap");
        ms.sort_unstable();
        // The median exp(-0.38) s = 684 ms is below the cap, so it survives capping.
        let median = ms[ms.len() / 2] as f64;
        assert!((median - 684.0).abs() < 40.0, "median {median} ms");
        // P(X > 1 s) = P(Z > 0.38 / 2.36) = 0.436: that many draws sit exactly at the cap.
        let at_cap = ms.iter().filter(|&&m| m == 1000).count() as f64 / ms.len() as f64;
        assert!((at_cap - 0.436).abs() < 0.02, "share at the cap {at_cap}");
    }
}
