//! `just reproduce giraff`: GIRAFF's comparison of placement strategies, on the simulator.
//!
//! For each seed, a GIRAFF-like 4-tier tree (`model::topology::giraff`: GIRAFF's tiers,
//! capacities, link latencies and per-tier quadratic pricing) and one workload: every edge
//! (IoT-facing) node is the data source of a few functions, each asking one core and 256 MB
//! for a minute, with GIRAFF's latency classes (a Student t with 10 degrees of freedom: below
//! -2.25 "low latency", 15 ms; above 2.25 "don't care", 10 s; else "normal", 150 ms, one way
//! from the data source as GIRAFF's feasibility rule reads it) and Poisson requests. The same
//! tree and workload run once per strategy, every node of the tree following that strategy.
//! Results are means over the seeds with 95 % confidence intervals (Student t).

use crate::faas::ExecTime;
use crate::market::{MarketSettings, NodeDesc};
use crate::run::{FunctionLoad, RunReport, Workload, run};
use model::strategy::Strategy;
use model::topology::giraff::{GiraffOptions, giraff};
use model::{Sla, SlaId};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StudentT};
use serde::Serialize;
use std::time::Duration;

/// The strategies GIRAFF compares.
pub const STRATEGIES: [Strategy; 6] = [
    Strategy::Auction,
    Strategy::EdgeFirst,
    Strategy::EdgeWard,
    Strategy::EdgeFurthest,
    Strategy::CloudOnly,
    Strategy::MinCpuRandom,
];

/// What to run.
#[derive(Debug, Clone)]
pub struct GiraffOptionsRun {
    /// GIRAFF's size multiplier (tiers 3 and 4 have 4M to 8M nodes each).
    pub size_multiplier: u32,
    pub seeds: Vec<u64>,
    /// Functions per edge node.
    pub functions_per_edge: usize,
    /// Requests per second of each function.
    pub rate: f64,
    /// How long requests are sent.
    pub duration: Duration,
}

impl GiraffOptionsRun {
    /// About 100 nodes, 5 seeds.
    pub fn quick() -> Self {
        GiraffOptionsRun {
            size_multiplier: 8,
            seeds: (1..=5).collect(),
            functions_per_edge: 4,
            rate: 1.0,
            duration: Duration::from_secs(60),
        }
    }

    /// GIRAFF's largest trees (about 663 nodes), 10 seeds.
    pub fn full() -> Self {
        GiraffOptionsRun {
            size_multiplier: 55,
            seeds: (1..=10).collect(),
            ..GiraffOptionsRun::quick()
        }
    }
}

/// A mean with the half-width of its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: f64,
}

impl Estimate {
    pub fn of(values: &[f64]) -> Estimate {
        let n = values.len();
        if n == 0 {
            return Estimate {
                mean: 0.0,
                ci95: 0.0,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Estimate { mean, ci95: 0.0 };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Estimate {
            mean,
            ci95: t_975(n - 1) * (var / n as f64).sqrt(),
        }
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom.
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    match df {
        0 => f64::NAN,
        1..=10 => TABLE[df - 1],
        11..=20 => 2.1,
        21..=30 => 2.05,
        _ => 1.96,
    }
}

/// One strategy's results over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    pub strategy: String,
    /// What clients pay in total for all placements of a run.
    pub spending: Estimate,
    /// What clients pay per placed function.
    pub spending_per_placement: Estimate,
    /// Requests answered within their SLA, over all requests sent (unplaced functions' requests
    /// count as not respected).
    pub sla_respected: Estimate,
    pub placement_success: Estimate,
    pub jain_earnings: Estimate,
    pub p95_latency_ms: Estimate,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct GiraffReport {
    /// Nodes of each seed's tree.
    pub nodes: Vec<usize>,
    pub seeds: Vec<u64>,
    pub functions: Vec<usize>,
    pub strategies: Vec<StrategyResult>,
}

fn sla(latency_max_ms: u64) -> Result<Sla, model::FieldError> {
    let body = serde_json::json!({
        "memory": "256 MB", "cpu": "1000 millicpu", "latencyMax": format!("{latency_max_ms} ms"),
        "duration": "60 s", "replicas": 1, "functionImage": "spin",
        "functionLiveName": "spin", "dataFlow": [], "envVars": {}, "inputMaxSize": "1 KB"
    });
    Sla::from_json(&body, SlaId::new(), "sla")
}

/// Runs every strategy on every seed.
pub fn reproduce(options: &GiraffOptionsRun) -> anyhow::Result<GiraffReport> {
    let mut per_strategy: Vec<Vec<RunReport>> = vec![Vec::new(); STRATEGIES.len()];
    let mut nodes = Vec::new();
    let mut functions = Vec::new();
    for &seed in &options.seeds {
        let topology = giraff(GiraffOptions {
            size_multiplier: options.size_multiplier,
            seed,
        })?
        .topology;
        let base = NodeDesc::from_topology(&topology)?;
        let settings = MarketSettings::from_topology(&topology)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let t = StudentT::new(10.0)?;
        let mut loads = Vec::new();
        for n in topology
            .nodes()
            .iter()
            .filter(|n| n.tags.iter().any(|t| t == "edge"))
        {
            for k in 0..options.functions_per_edge {
                let draw: f64 = t.sample(&mut rng);
                let latency_ms = if draw < -2.25 {
                    15
                } else if draw > 2.25 {
                    10_000
                } else {
                    150
                };
                loads.push(FunctionLoad {
                    name: format!("f{k}-{}", n.name),
                    sla: sla(latency_ms)?,
                    target: n.name.clone(),
                    rate: options.rate,
                    exec: ExecTime::Fixed(Duration::from_millis(20)),
                    startup: Duration::from_millis(500),
                    concurrency: 100,
                });
            }
        }
        nodes.push(base.len());
        functions.push(loads.len());
        let workload = Workload {
            functions: loads,
            duration: options.duration,
            failures: Vec::new(),
        };
        for (i, strategy) in STRATEGIES.iter().enumerate() {
            let descs: Vec<NodeDesc> = base
                .iter()
                .cloned()
                .map(|mut d| {
                    d.strategy = *strategy;
                    d
                })
                .collect();
            per_strategy[i].push(run(descs, settings.clone(), &workload, seed)?);
        }
    }
    let strategies = STRATEGIES
        .iter()
        .zip(&per_strategy)
        .map(|(s, runs)| {
            let est = |f: &dyn Fn(&RunReport) -> f64| {
                Estimate::of(&runs.iter().map(f).collect::<Vec<_>>())
            };
            StrategyResult {
                strategy: s.name().to_string(),
                spending: est(&|r| r.spending),
                spending_per_placement: est(&|r| r.spending / r.placements_ok.max(1) as f64),
                sla_respected: est(&|r| r.sla_respected_ratio()),
                placement_success: est(&|r| r.placement_success_ratio()),
                jain_earnings: est(&|r| r.jain_earnings.unwrap_or(0.0)),
                p95_latency_ms: est(&|r| r.latency_p95_ms),
            }
        })
        .collect();
    Ok(GiraffReport {
        nodes,
        seeds: options.seeds.clone(),
        functions,
        strategies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confidence_interval_uses_students_t_and_is_zero_for_one_value() {
        let e = Estimate::of(&[1.0, 2.0, 3.0]);
        assert!((e.mean - 2.0).abs() < 1e-12);
        assert!((e.ci95 - 4.303 * (1.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(Estimate::of(&[5.0]).ci95, 0.0);
    }

    #[test]
    fn a_tiny_comparison_runs_every_strategy_and_cloud_only_keeps_the_edge_idle() {
        let options = GiraffOptionsRun {
            size_multiplier: 1,
            seeds: vec![1, 2],
            functions_per_edge: 2,
            rate: 1.0,
            duration: Duration::from_secs(5),
        };
        let r = reproduce(&options).unwrap();
        assert_eq!(r.strategies.len(), STRATEGIES.len());
        for s in &r.strategies {
            assert!(s.placement_success.mean > 0.0, "{s:?}");
            assert!((0.0..=1.0).contains(&s.sla_respected.mean), "{s:?}");
        }
        let by = |name: &str| r.strategies.iter().find(|s| s.strategy == name).unwrap();
        // Everything in the cloud: far from the data sources, low-latency functions fail there.
        assert!(by("cloud_only").p95_latency_ms.mean > by("edge_first").p95_latency_ms.mean);
    }
}
