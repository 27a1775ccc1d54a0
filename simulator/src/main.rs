//! `simulator`: the simulator's command line. `simulator bench` is `just bench sim`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use measure::markdown::{MarkdownTable, left, right};
use simulator::bench::{SimBenchOptions, SimBenchRow, bench_size};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "simulator", about = "Simulate a Fogmarket federation", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate an IoT scenario on a topology; writes what `iot-emulation run` writes
    /// (placements.json, requests.csv, report.json, report.md, the plots).
    Run {
        #[arg(long, default_value = "testbed/topologies/local.toml")]
        topology: PathBuf,
        #[arg(long, default_value = "iot_emulation/scenarios/demo.toml")]
        scenario: PathBuf,
        /// Output directory (default target/simulator/<name>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Random seed (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Reproduce a published result: `giraff` (placement strategies on GIRAFF-like trees);
    /// writes giraff.json, giraff.md and giraff-*.svg.
    Reproduce {
        /// What to reproduce (`giraff`).
        what: String,
        /// About 100 nodes and 5 seeds instead of about 663 nodes and 10 seeds.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// How fast the simulator runs federations of growing size; writes sim.json and sim.md.
    Bench {
        /// Federation sizes, comma-separated (GIRAFF-like trees of about this many nodes).
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        nodes: Vec<usize>,
        /// Invocations simulated at each size.
        #[arg(long, default_value_t = 2_000_000)]
        invocations: u64,
        /// Placements timed at each size.
        #[arg(long, default_value_t = 200)]
        placements: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// faas-sim's figure for the same machine, as its runner printed it (one JSON line:
        /// `bench/faas-sim/bench.py`); without it the report says why there is no ratio.
        #[arg(long)]
        faas_sim_json: Option<PathBuf>,
    },
    /// The scenarios of `just bench offload` (demo, issue48, hot3, burst, far, shift) with each
    /// offloading strategy, in simulated time: success, worst second, latency percentiles,
    /// requests served per host and the aims (99 % every second from s1, p95 within 3 × the
    /// function's execution time). Prints a markdown table.
    Offload {
        /// Scenarios, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = model::offload::scenario::SCENARIOS.iter().map(|s| s.to_string()))]
        scenarios: Vec<String>,
        /// Strategies, comma-separated (static, recalc, node_margin, lease).
        #[arg(long, value_delimiter = ',', default_values_t = model::offload::OffloadStrategy::ALL.iter().map(|s| s.to_string()))]
        strategies: Vec<String>,
        /// Simulated load per run, e.g. `30s`.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// The function's execution time in ms (echo's delay in the benchmark).
        #[arg(long, default_value_t = 200)]
        delay_ms: u64,
        /// Seeds, comma-separated: one run per seed.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        seeds: Vec<u64>,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    model::units::parse_duration(s).map_err(|e| e.to_string())
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn markdown(rows: &[SimBenchRow], faas_sim: &serde_json::Value, commit: &str) -> String {
    let mut t = MarkdownTable::new([
        right("nodes"),
        right("functions"),
        right("invocations"),
        right("ok"),
        right("wall s"),
        right("invocations/s"),
        right("events/s"),
        right("placements/s"),
        right("peak RSS MB"),
    ]);
    for r in rows {
        t.row([
            r.nodes.to_string(),
            r.functions.to_string(),
            r.invocations.to_string(),
            r.ok.to_string(),
            format!("{:.2}", r.wall_s),
            format!("{:.0}", r.invocations_per_s),
            format!("{:.0}", r.events_per_s),
            format!("{:.1}", r.placements_per_s),
            format!("{:.0}", r.peak_rss_mb),
        ]);
    }
    let mut s = format!(
        "# Simulator speed (`just bench sim`, commit {commit})\n\n\
         GIRAFF-like trees, one function per edge node invoked by Poisson devices for 10 s of \
         simulated time; placements timed alone (a full relay and auction each). One core.\n\n{}\n",
        t.render()
    );
    match faas_sim.get("invocations_per_s").and_then(|v| v.as_f64()) {
        Some(f) => {
            let ours = rows.last().map_or(0.0, |r| r.invocations_per_s);
            let mut c =
                MarkdownTable::new([left("simulator"), right("invocations/s"), right("ratio")]);
            c.row([
                "faas-sim".to_string(),
                format!("{f:.0}"),
                "1.00x".to_string(),
            ]);
            c.row([
                format!("fogmarket ({} nodes)", rows.last().map_or(0, |r| r.nodes)),
                format!("{ours:.0}"),
                format!("{:.1}x", ours / f),
            ]);
            s.push_str(&format!("\nSame machine, same run:\n\n{}\n", c.render()));
        }
        None => {
            s.push_str(&format!(
                "\nfaas-sim: {}\n",
                faas_sim
                    .get("note")
                    .and_then(|v| v.as_str())
                    .unwrap_or("not measured in this run")
            ));
            if let (Some(reference), Some(r)) = (
                faas_sim
                    .get("reference_invocations_per_s")
                    .and_then(|v| v.as_f64()),
                rows.last(),
            ) {
                s.push_str(&format!(
                    "Against that outside figure (not a same-run ratio): {:.0}x at {} nodes.\n",
                    r.invocations_per_s / reference,
                    r.nodes
                ));
            }
        }
    }
    s
}

fn write(out: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            topology,
            scenario,
            out,
            seed,
        } => {
            let text = std::fs::read_to_string(&topology)
                .with_context(|| format!("--topology: cannot read {}", topology.display()))?;
            let topo = model::topology::Topology::parse(&text)
                .with_context(|| format!("--topology {}", topology.display()))?;
            let mut sc = iot_emulation::Scenario::load(&scenario)
                .with_context(|| format!("--scenario {}", scenario.display()))?;
            if let Some(seed) = seed {
                sc.experiment.seed = seed;
            }
            let nodes = simulator::market::NodeDesc::from_topology(&topo)?;
            let settings = simulator::market::MarketSettings::from_topology(&topo)?;
            let run = simulator::scenario::simulate(&sc, nodes, settings)?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from("target/simulator")
                    .join(format!("{}-{}", sc.experiment.name, sc.experiment.seed))
            });
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            iot_emulation::record::write_csv_file(&run.records, &out.join("requests.csv"))?;
            write(
                &out,
                "placements.json",
                &serde_json::to_string_pretty(&run.placements)?,
            )?;
            run.report.write(&out)?;
            iot_emulation::plots::write_all(&out, &run.records, &run.report)?;
            let o = &run.report.overall;
            println!(
                "{}: {} requests, {} ok, SLA respected {:.3}, spending {:.4}",
                sc.experiment.name, o.requests, o.ok, o.sla_met_ratio, run.report.spending_total
            );
            println!("report: {}", out.join("report.md").display());
            Ok(())
        }
        Command::Offload {
            scenarios,
            strategies,
            duration,
            delay_ms,
            seeds,
        } => {
            let strategies = strategies
                .iter()
                .map(|s| s.parse().map_err(|e| anyhow::anyhow!("--strategies: {e}")))
                .collect::<anyhow::Result<Vec<model::offload::OffloadStrategy>>>()?;
            let names: Vec<&str> = scenarios.iter().map(String::as_str).collect();
            let delay = std::time::Duration::from_millis(delay_ms);
            anyhow::ensure!(!seeds.is_empty(), "--seeds: give at least one seed");
            for seed in seeds {
                let outcomes =
                    simulator::offload::compare(&names, &strategies, delay, duration, seed)
                        .map_err(|e| anyhow::anyhow!("--scenarios: {e}"))?;
                println!(
                    "Seed {seed}, {} s per run, function delayed {delay_ms} ms:\n\n{}",
                    duration.as_secs_f64(),
                    simulator::offload::outcomes_markdown(&outcomes, delay)
                );
            }
            Ok(())
        }
        Command::Reproduce { what, quick, out } => {
            anyhow::ensure!(
                what == "giraff",
                "reproduce: `{what}` is unknown (known: giraff)"
            );
            let options = if quick {
                simulator::giraff::GiraffOptionsRun::quick()
            } else {
                simulator::giraff::GiraffOptionsRun::full()
            };
            let started = std::time::Instant::now();
            let report = simulator::giraff::reproduce(&options)?;
            let commit = commit();
            let json = serde_json::json!({
                "benchmark": "giraff",
                "commit": commit,
                "quick": quick,
                "wall_s": started.elapsed().as_secs_f64(),
                "nodes": report.nodes,
                "seeds": report.seeds,
                "functions": report.functions,
                "strategies": report.strategies,
            });
            write(&out, "giraff.json", &serde_json::to_string_pretty(&json)?)?;
            let charts = giraff_plots(&report, &out)?;
            let md = giraff_markdown(&report, &commit, quick, &charts);
            write(&out, "giraff.md", &md)?;
            println!("{md}");
            println!(
                "wrote {} and {}",
                out.join("giraff.json").display(),
                out.join("giraff.md").display()
            );
            Ok(())
        }
        Command::Bench {
            nodes,
            invocations,
            placements,
            seed,
            out,
            faas_sim_json,
        } => {
            anyhow::ensure!(!nodes.is_empty(), "--nodes: give at least one size");
            anyhow::ensure!(placements > 0, "--placements: at least one");
            let options = SimBenchOptions {
                nodes: nodes.clone(),
                invocations,
                placements,
                seed,
            };
            let mut rows = Vec::new();
            for n in &nodes {
                let row = bench_size(*n, &options)?;
                eprintln!(
                    "{} nodes: {} invocations in {:.2} s = {:.0}/s; {:.1} placements/s; peak RSS {:.0} MB",
                    row.nodes,
                    row.invocations,
                    row.wall_s,
                    row.invocations_per_s,
                    row.placements_per_s,
                    row.peak_rss_mb
                );
                rows.push(row);
            }
            let faas_sim: serde_json::Value = match &faas_sim_json {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("--faas-sim-json: cannot read {}", path.display())
                    })?;
                    serde_json::from_str(text.trim()).with_context(|| {
                        format!("--faas-sim-json: {} is not JSON", path.display())
                    })?
                }
                None => serde_json::json!({
                    "note": "not run: faas-sim is not on PyPI and its pinned dependencies have no \
                             wheels for Python 3.11 (bench/faas-sim/README.md). The reference \
                             figure for a 2-core machine of this kind is about 46,000 \
                             invocations/s (../shared/reference/simulation-and-workloads.md), \
                             not measured in this run",
                    "reference_invocations_per_s": 46000.0,
                }),
            };
            let commit = commit();
            let largest = rows.last().context("no row")?;
            let json = serde_json::json!({
                "benchmark": "sim",
                "commit": commit,
                "nodes": largest.nodes,
                "invocations": largest.invocations,
                "placements": largest.placements,
                "wall_s": largest.wall_s,
                "invocations_per_s": largest.invocations_per_s,
                "placements_per_s": largest.placements_per_s,
                "peak_rss_mb": largest.peak_rss_mb,
                "series": rows,
                "faas_sim": faas_sim,
            });
            write(&out, "sim.json", &serde_json::to_string_pretty(&json)?)?;
            let md = markdown(&rows, &faas_sim, &commit);
            write(&out, "sim.md", &md)?;
            println!("{md}");
            println!(
                "wrote {} and {}",
                out.join("sim.json").display(),
                out.join("sim.md").display()
            );
            Ok(())
        }
    }
}

fn pm(e: &simulator::giraff::Estimate, digits: usize) -> String {
    format!("{:.*} ± {:.*}", digits, e.mean, digits, e.ci95)
}

fn giraff_markdown(
    r: &simulator::giraff::GiraffReport,
    commit: &str,
    quick: bool,
    charts: &[String],
) -> String {
    let mut t = MarkdownTable::new([
        left("strategy"),
        right("spending"),
        right("per placement"),
        right("SLA respected"),
        right("placed"),
        right("Jain (earnings)"),
        right("p95 latency ms"),
    ]);
    for s in &r.strategies {
        t.row([
            s.strategy.clone(),
            pm(&s.spending, 3),
            pm(&s.spending_per_placement, 4),
            pm(&s.sla_respected, 3),
            pm(&s.placement_success, 3),
            pm(&s.jain_earnings, 3),
            pm(&s.p95_latency_ms, 1),
        ]);
    }
    let command = if quick {
        "just reproduce giraff --quick"
    } else {
        "just reproduce giraff"
    };
    let mut s = format!(
        "# GIRAFF's comparison, simulated (`{command}`, commit {commit})\n\n\
         GIRAFF-like trees of {:?} nodes (seeds {:?}), {:?} functions; every node follows the \
         strategy of the row. Means over the seeds with 95 % confidence intervals.\n\n{}\n",
        r.nodes,
        r.seeds,
        r.functions,
        t.render()
    );
    for c in charts {
        s.push_str(&format!("\n![{c}]({c})\n"));
    }
    s
}

/// Bar charts of spending per placement and SLA respected, with 95 % intervals; returns the
/// file names written next to giraff.md.
fn giraff_plots(r: &simulator::giraff::GiraffReport, out: &Path) -> anyhow::Result<Vec<String>> {
    use plotters::prelude::*;
    type Pick = fn(&simulator::giraff::StrategyResult) -> simulator::giraff::Estimate;
    let charts: [(&str, &str, Pick); 2] = [
        ("giraff-spending.svg", "spending per placed function", |s| {
            s.spending_per_placement
        }),
        ("giraff-sla.svg", "SLA respected (share of requests)", |s| {
            s.sla_respected
        }),
    ];
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (file, title, pick) in charts {
        let path = out.join(file);
        let root = SVGBackend::new(&path, (720, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = r
            .strategies
            .iter()
            .map(|s| pick(s).mean + pick(s).ci95)
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let n = r.strategies.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
        let names: Vec<String> = r.strategies.iter().map(|s| s.strategy.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                names.get(i).cloned().unwrap_or_default()
            })
            .draw()?;
        for (i, s) in r.strategies.iter().enumerate() {
            let e = pick(s);
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, e.mean)],
                BLUE.mix(0.6).filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (x + 0.5, (e.mean - e.ci95).max(0.0)),
                    (x + 0.5, e.mean + e.ci95),
                ],
                BLACK.stroke_width(2),
            )))?;
        }
        root.present()?;
        written.push(file.to_string());
    }
    Ok(written)
}
