//! The experiment's plan, computed before anything is sent: each function's latency class and
//! the full request schedule (when, which function, and for `spin` how long to run). Pure and
//! seeded: the same scenario and seed always give the same plan.

use crate::rng::{Stream, stream};
use crate::scenario::{ExecTime, FunctionSpec, LatencyChoice};
use model::units::Latency;
use std::time::Duration;

/// A function's resolved latency requirement.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The class name (`normal`, `giraff_low`, …), or the latency itself (`50 ms`) when the
    /// scenario gave `sla.latencyMax`.
    pub class: String,
    pub latency_max: Latency,
}

/// Draws each function's latency class (one independent stream per function).
pub fn resolve_latencies(functions: &[FunctionSpec], seed: u64) -> Vec<Resolved> {
    functions
        .iter()
        .enumerate()
        .map(|(i, f)| match f.latency {
            LatencyChoice::Explicit(l) => Resolved {
                class: l.to_string(),
                latency_max: l,
            },
            LatencyChoice::Class(choice) => {
                let c = choice.draw(&mut stream(seed, Stream::LatencyClass, i as u64));
                Resolved {
                    class: c.name.to_string(),
                    latency_max: c.latency_max,
                }
            }
        })
        .collect()
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    /// Offset from the start of sending.
    pub at: Duration,
    /// Index of the function in the scenario.
    pub function: usize,
    /// Per-function sequence number, from 0.
    pub seq: u64,
    /// For `spin`: the execution time to ask for, in ms.
    pub exec_ms: Option<u64>,
}

/// Every request of every function in `[0, duration)`, in time order (ties: function order,
/// then sequence).
pub fn plan_requests(
    functions: &[FunctionSpec],
    duration: Duration,
    seed: u64,
) -> Vec<PlannedRequest> {
    let mut plan = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        let mut arrivals = stream(seed, Stream::Arrivals, i as u64);
        let mut exec_rng = stream(seed, Stream::ExecTime, i as u64);
        for (seq, at) in f
            .arrival
            .arrivals(Duration::ZERO, duration, &mut arrivals)
            .into_iter()
            .enumerate()
        {
            let exec_ms = f.exec.map(|e| match e {
                ExecTime::Fixed(d) => d.as_millis() as u64,
                ExecTime::Azure(law) => law.sample(&mut exec_rng).as_millis() as u64,
            });
            plan.push(PlannedRequest {
                at,
                function: i,
                seq: seq as u64,
                exec_ms,
            });
        }
    }
    plan.sort_by_key(|r| (r.at, r.function, r.seq));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::path::Path;

    const TEXT: &str = r#"
[experiment]
duration = "20 s"
[[function]]
name = "a"
image = "echo"
latency_class = "azure"
target = "e1"
arrival = { process = "constant", rate = 2 }
[[function]]
name = "b"
image = "spin"
sla = { latencyMax = "40 ms" }
target = "e2"
arrival = { process = "poisson", rate = 3 }
spin = { azure = true, cap = "500 ms" }
"#;

    fn scenario() -> Scenario {
        Scenario::parse(TEXT, Path::new("."), "t").unwrap()
    }

    #[test]
    fn the_plan_is_sorted_by_time_and_numbers_each_functions_requests() {
        let s = scenario();
        let plan = plan_requests(&s.functions, s.experiment.duration, 11);
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
        let a: Vec<&PlannedRequest> = plan.iter().filter(|r| r.function == 0).collect();
        assert_eq!(a.len(), 40);
        assert!(a.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        assert!(a.iter().all(|r| r.exec_ms.is_none()));
        let b: Vec<&PlannedRequest> = plan.iter().filter(|r| r.function == 1).collect();
        assert!((30..=95).contains(&b.len()), "{} spin requests", b.len());
        assert!(b.iter().all(|r| r.exec_ms.is_some_and(|ms| ms <= 500)));
        assert!(plan.iter().all(|r| r.at < Duration::from_secs(20)));
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let s = scenario();
        let p1 = plan_requests(&s.functions, s.experiment.duration, 11);
        let p2 = plan_requests(&s.functions, s.experiment.duration, 11);
        let p3 = plan_requests(&s.functions, s.experiment.duration, 12);
        assert_eq!(p1, p2);
        assert_ne!(p1, p3);
    }

    #[test]
    fn explicit_latencies_are_their_own_class_and_drawn_classes_are_seeded() {
        let s = scenario();
        let r = resolve_latencies(&s.functions, 11);
        assert_eq!(r[1].class, "40 ms");
        assert_eq!(r[1].latency_max, Latency::from_millis(40));
        assert!(["low", "normal", "dont_care"].contains(&r[0].class.as_str()));
        assert_eq!(r, resolve_latencies(&s.functions, 11));
    }
}
