//! `just bench sim`: how fast the simulator runs a federation, from 100 to 10,000 nodes.
//!
//! For each size, a GIRAFF-like 4-tier tree (`model::topology::giraff`) with one function per
//! edge node, placed through the market and invoked by Poisson devices at its edge node
//! ([`crate::run`]); the wall time covers the simulation of the invocations (the events, the
//! FaaS systems, folding the records into the report), once the functions are placed. A second
//! measure times placements alone: SLAs placed one after the other from random edge nodes, each
//! a full relay and auction over the tree.

use crate::faas::ExecTime;
use crate::market::{Market, MarketSettings, NodeDesc};
use crate::run::{FunctionLoad, Workload, prepare};
use model::topology::giraff::{GiraffOptions, giraff};
use model::{Sla, SlaId, Timestamp};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One size of the series.
#[derive(Debug, Clone, Serialize)]
pub struct SimBenchRow {
    pub nodes: usize,
    pub functions: usize,
    pub invocations: u64,
    /// Invocations answered successfully (a check that the run did the work it counts).
    pub ok: u64,
    pub placements: usize,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub invocations_per_s: f64,
    pub placements_per_s: f64,
    pub events_per_s: f64,
    pub peak_rss_mb: f64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SimBenchOptions {
    /// Sizes of the series (approximate: the generator's trees come in steps).
    pub nodes: Vec<usize>,
    /// Invocations to simulate at each size.
    pub invocations: u64,
    /// Placements to time at each size.
    pub placements: usize,
    pub seed: u64,
}

/// The GIRAFF size multiplier whose trees have about `nodes` nodes (7.5 + 12 M on average).
pub fn multiplier_for(nodes: usize) -> u32 {
    (((nodes as f64 - 7.5) / 12.0).round().max(1.0) as u32).min(1000)
}

fn sla(cpu_millis: u64, duration_s: u64) -> Result<Sla, model::FieldError> {
    let body = serde_json::json!({
        "memory": "64 MB", "cpu": format!("{cpu_millis} millicpu"), "latencyMax": "150 ms",
        "latencyKind": "roundTrip", "duration": format!("{duration_s} s"), "replicas": 1,
        "functionImage": "echo", "functionLiveName": "echo", "dataFlow": [], "envVars": {},
        "inputMaxSize": "1 KB"
    });
    Sla::from_json(&body, SlaId::new(), "sla")
}

/// Peak resident memory of this process so far, MB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one size.
pub fn bench_size(nodes: usize, options: &SimBenchOptions) -> anyhow::Result<SimBenchRow> {
    // The generator's trees vary around their mean size: grow the multiplier until the tree
    // has at least the asked size.
    let mut m = multiplier_for(nodes);
    let mut generated = giraff(GiraffOptions {
        size_multiplier: m,
        seed: options.seed,
    })?;
    for _ in 0..8 {
        let have = generated.topology.nodes().len();
        if have >= nodes || m >= 1000 {
            break;
        }
        m = (m as f64 * nodes as f64 / have as f64).ceil().min(1000.0) as u32;
        generated = giraff(GiraffOptions {
            size_multiplier: m,
            seed: options.seed,
        })?;
    }
    let topology = generated.topology;
    let descs = NodeDesc::from_topology(&topology)?;
    let settings = MarketSettings::from_topology(&topology)?;
    let edges: Vec<String> = topology
        .nodes()
        .iter()
        .filter(|n| n.tags.iter().any(|t| t == "edge"))
        .map(|n| n.name.clone())
        .collect();
    anyhow::ensure!(!edges.is_empty(), "the generated tree has no edge node");

    // Invocations: one function per edge node, the total rate spread evenly over 10 s.
    let simulated = Duration::from_secs(10);
    let total_rate = options.invocations as f64 / simulated.as_secs_f64();
    let rate = total_rate / edges.len() as f64;
    let functions = edges
        .iter()
        .map(|e| {
            Ok(FunctionLoad {
                name: format!("f-{e}"),
                sla: sla(100, 3600)?,
                target: e.clone(),
                rate,
                exec: ExecTime::Fixed(Duration::from_millis(2)),
                startup: Duration::from_millis(500),
                concurrency: 10_000,
            })
        })
        .collect::<Result<Vec<_>, model::FieldError>>()?;
    let workload = Workload {
        functions,
        duration: simulated,
        failures: Vec::new(),
    };
    // The functions' placements are part of the placement measure below, not of this one.
    let prepared = prepare(descs.clone(), settings.clone(), &workload, options.seed)?;
    let started = Instant::now();
    let report = prepared.simulate();
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.placements_ok == report.placements_tried,
        "{} of {} functions were not placed",
        report.placements_tried - report.placements_ok,
        report.placements_tried
    );

    // Placements alone, from random edge nodes, short-lived so the tree never fills up.
    let mut market = Market::new(descs, settings, options.seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let base = sla(50, 1)?;
    let started = Instant::now();
    let mut placed = 0usize;
    for i in 0..options.placements {
        let target = &edges[rng.random_range(0..edges.len())];
        // Each placement a second apart: every earlier reservation has ended.
        let now = Timestamp::from_millis(i as u64 * 2_000);
        let mut one = base.clone();
        one.id = SlaId::new();
        let p = market.place(&one, target, now)?;
        if !p.winners.is_empty() {
            placed += 1;
        }
    }
    let place_wall = started.elapsed().as_secs_f64().max(1e-9);
    anyhow::ensure!(
        placed > 0,
        "no placement succeeded at {} nodes",
        topology.nodes().len()
    );

    Ok(SimBenchRow {
        nodes: topology.nodes().len(),
        functions: workload.functions.len(),
        invocations: report.invocations,
        ok: report.ok,
        placements: options.placements,
        simulated_s: simulated.as_secs_f64(),
        wall_s: wall,
        invocations_per_s: report.invocations as f64 / wall.max(1e-9),
        placements_per_s: options.placements as f64 / place_wall,
        events_per_s: report.events as f64 / wall.max(1e-9),
        peak_rss_mb: peak_rss_mb(),
    })
}
