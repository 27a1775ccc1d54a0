//! The auction benchmark: a generated GIRAFF-style federation under a closed loop of placement
//! requests, with the marketplace's `GET /api/health` as the HTTP floor to compare against.
//!
//! Each of `concurrency` workers sends `PUT /api/function` (a small SLA targeted at a random
//! edge node), waits for the answer, records its latency and sends the next one, until
//! `duration` has passed. Results go to `auction.json` and `auction.md`.

use crate::launcher::{Federation, LaunchOptions, http_client};
use crate::topology::Topology;
use anyhow::Context;
use measure::markdown::{Column, MarkdownTable, left, right};
use measure::stats::Latencies;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// What to run.
#[derive(Debug, Clone)]
pub struct AuctionBenchOptions {
    /// Federation sizes: one fresh federation each.
    pub nodes: Vec<usize>,
    pub depth: usize,
    pub duration: Duration,
    /// Requests in flight: one load each, on every federation.
    pub concurrency: Vec<usize>,
    /// Where `auction.json` and `auction.md` are written.
    pub out: PathBuf,
    /// Seed of the generated topology.
    pub seed: u64,
    /// Where the binaries are (release builds for meaningful numbers).
    pub bin_dir: PathBuf,
}

/// Latency percentiles of one kind of request, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub requests: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    pub(crate) fn of(latencies: &Latencies) -> Self {
        Self {
            requests: latencies.len(),
            p50_ms: latencies.quantile_ms(0.5),
            p90_ms: latencies.quantile_ms(0.9),
            p99_ms: latencies.quantile_ms(0.99),
            max_ms: latencies.max_ms(),
            mean_ms: latencies.mean_ms(),
        }
    }
}

/// Where the numbers were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub cpu_model: String,
    pub cores: usize,
}

impl Machine {
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let hostname = read("/proc/sys/kernel/hostname").trim().to_string();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            hostname,
            os,
            cpu_model,
            cores,
        }
    }
}

/// The benchmark's results (`auction.json`): one run per federation size and concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct AuctionBenchReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub started_at_unix_ms: u64,
    pub depth: usize,
    pub seed: u64,
    pub duration_s: f64,
    pub series: Vec<AuctionRun>,
    /// Sizes whose federation did not start or whose load failed, with the reason; the other
    /// sizes' runs are kept.
    pub failed_sizes: Vec<FailedSize>,
}

/// A federation size that gave no run.
#[derive(Debug, Clone, Serialize)]
pub struct FailedSize {
    pub nodes: usize,
    pub error: String,
}

/// One closed-loop placement load on one federation.
#[derive(Debug, Clone, Serialize)]
pub struct AuctionRun {
    pub nodes: usize,
    pub edge_nodes: usize,
    pub concurrency: usize,
    pub placements_ok: u64,
    pub placements_failed: u64,
    /// Failed placements by HTTP status (or `transport` for connection errors).
    pub failures: BTreeMap<String, u64>,
    /// Successful placements per second.
    pub throughput_per_s: f64,
    /// Latency of every placement request (successful or not).
    pub placement: LatencySummary,
    /// Latency of `GET /api/health` on the marketplace, same concurrency: the HTTP floor.
    pub health: LatencySummary,
    /// placement p50 / health p50.
    pub p50_ratio_to_health: f64,
    /// CPU time the whole machine spent during the placement load (every process of the
    /// federation, the load generator and the kernel), per successful placement: the cost
    /// figure that does not depend on how busy the machine was.
    pub cpu_ms_per_placement: Option<f64>,
}

/// CPU time spent by the whole machine so far (user, nice, system, irq, softirq, steal), in
/// milliseconds, from `/proc/stat`; `None` where there is no such file.
pub(crate) fn machine_busy_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    busy_ms_of(&stat)
}

/// The busy time of `/proc/stat`'s `cpu` line in milliseconds (its unit is USER_HZ, 1/100 s on
/// Linux).
fn busy_ms_of(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 * 10.0)
}

impl AuctionBenchReport {
    /// A markdown table of the results: one row per run, then the HTTP floor of each.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Auction benchmark\n\n");
        s.push_str(&format!(
            "Generated trees of depth {}, {:.0} s of closed-loop `PUT /api/function` per run, commit {}, on {} ({}, {} cores); `GET /api/health` on the same marketplace is the HTTP floor.\n\n",
            self.depth,
            self.duration_s,
            self.commit.as_deref().unwrap_or("unknown"),
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores
        ));
        let mut columns = load_columns("nodes (edge)", "placements").to_vec();
        columns.insert(1, right("in flight"));
        columns.push(right("health p50 ms"));
        columns.push(right("CPU ms / placement"));
        let mut table = MarkdownTable::new(columns);
        for run in &self.series {
            let p = &run.placement;
            table.row([
                format!("{} ({})", run.nodes, run.edge_nodes),
                run.concurrency.to_string(),
                p.requests.to_string(),
                run.placements_ok.to_string(),
                run.placements_failed.to_string(),
                format!("{:.1}", run.throughput_per_s),
                format!("{:.2}", p.p50_ms),
                format!("{:.2}", p.p90_ms),
                format!("{:.2}", p.p99_ms),
                format!("{:.2}", p.max_ms),
                format!("{:.2}", run.health.p50_ms),
                run.cpu_ms_per_placement
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.1}")),
            ]);
        }
        s.push_str(&table.render());
        for failed in &self.failed_sizes {
            // The first line of the error: the reason, without the list of every node.
            let reason: String = failed.error.chars().take(300).collect();
            s.push_str(&format!("\n{} nodes: no run: {reason}\n", failed.nodes));
        }
        for run in &self.series {
            if !run.failures.is_empty() {
                s.push_str(&format!(
                    "\nFailures at {} nodes, {} in flight: {}\n",
                    run.nodes,
                    run.concurrency,
                    run.failures
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        s
    }
}

/// The columns of a closed-loop load's table: what was loaded, how many requests, how many
/// succeeded and failed, the throughput and the latency percentiles.
pub(crate) fn load_columns(what: &str, requests: &str) -> [Column; 9] {
    [
        left(what),
        right(requests),
        right("ok"),
        right("failed"),
        right("throughput/s"),
        right("p50 ms"),
        right("p90 ms"),
        right("p99 ms"),
        right("max ms"),
    ]
}

/// The SLA every benchmark placement asks for: small, short, generous latency.
pub fn bench_sla() -> serde_json::Value {
    json!({
        "cpu": "10 m",
        "memory": "16 MB",
        "duration": "2 s",
        "latencyMax": "200 ms",
        "functionImage": "ghcr.io/fogmarket/echo:latest",
        "functionLiveName": "echo"
    })
}

/// A benchmark request's outcome from its answer: success once the whole 2xx body is read,
/// else the status (or `body`, `transport`) as the failure's kind.
pub(crate) async fn outcome_of(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), String> {
    match sent {
        Ok(r) if r.status().is_success() => {
            // Read the body: the request is only done when the answer is.
            signed_http::read_capped(r, crate::launcher::MAX_ANSWER)
                .await
                .map(|_| ())
                .map_err(|_| "body".to_string())
        }
        Ok(r) => {
            let status = r.status().as_u16().to_string();
            let _ = signed_http::read_capped(r, crate::launcher::MAX_ANSWER).await;
            Err(status)
        }
        Err(_) => Err("transport".to_string()),
    }
}

#[derive(Default)]
pub(crate) struct WorkerResult {
    pub(crate) ok: u64,
    pub(crate) failures: BTreeMap<String, u64>,
}

/// Runs `concurrency` closed-loop workers for `duration`; `request` sends one request and says
/// whether it succeeded (`Err(kind)` otherwise).
pub(crate) async fn closed_loop<F, Fut>(
    duration: Duration,
    concurrency: usize,
    request: F,
) -> anyhow::Result<(Latencies, WorkerResult)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let until = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new();
            let mut result = WorkerResult::default();
            while Instant::now() < until {
                let start = Instant::now();
                let outcome = request().await;
                latencies.record(start.elapsed());
                match outcome {
                    Ok(()) => result.ok += 1,
                    Err(kind) => *result.failures.entry(kind).or_default() += 1,
                }
            }
            (latencies, result)
        }));
    }
    let mut latencies = Latencies::new();
    let mut total = WorkerResult::default();
    for task in tasks {
        let (l, r) = task.await.context("a benchmark worker panicked")?;
        latencies.merge(&l);
        total.ok += r.ok;
        for (k, v) in r.failures {
            *total.failures.entry(k).or_default() += v;
        }
    }
    Ok((latencies, total))
}

/// The short commit hash of the working directory's repository, `-dirty` when a tracked file
/// other than the benchmark results (`bench/results/`, which every run rewrites) is modified.
pub fn commit_hash() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)bench/results",
        ])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// For each federation size: starts a generated federation (SQLite in a temporary directory),
/// runs the placement load at each concurrency, then the health load at the same concurrency;
/// writes `auction.json` and `auction.md` into `options.out`.
pub async fn run_auction_bench(
    options: &AuctionBenchOptions,
) -> anyhow::Result<AuctionBenchReport> {
    if options.nodes.is_empty() || options.concurrency.is_empty() {
        anyhow::bail!("`--nodes` and `--concurrency` need at least one value each");
    }
    let started_at_unix_ms = model::Timestamp::now().as_millis();
    let mut series = Vec::new();
    let mut failed_sizes = Vec::new();
    for &nodes in &options.nodes {
        match run_size(options, nodes).await {
            Ok(runs) => series.extend(runs),
            Err(e) => {
                let error = format!("{e:#}");
                eprintln!("{nodes} nodes: {error}");
                failed_sizes.push(FailedSize { nodes, error });
            }
        }
    }
    let report = AuctionBenchReport {
        benchmark: "auction",
        machine: Machine::detect(),
        commit: commit_hash(),
        started_at_unix_ms,
        depth: options.depth,
        seed: options.seed,
        duration_s: options.duration.as_secs_f64(),
        series,
        failed_sizes,
    };
    write_report(&report, &options.out)?;
    if report.series.is_empty() {
        anyhow::bail!("no federation size gave a run (see failed_sizes in auction.json)");
    }
    Ok(report)
}

/// One federation of `nodes` nodes, one load per concurrency.
async fn run_size(options: &AuctionBenchOptions, nodes: usize) -> anyhow::Result<Vec<AuctionRun>> {
    let topology = Topology::generated_tree(nodes, options.depth, options.seed)?;
    let edges: Vec<String> = topology.leaves().map(|n| n.name.clone()).collect();
    let edge_nodes = edges.len();
    let tmp = tempfile::Builder::new()
        .prefix("fogmarket-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut launch = LaunchOptions::new(tmp.path().join("run"))?;
    launch.bin_dir = options.bin_dir.clone();
    launch.readiness_deadline = Duration::from_secs(120 + nodes as u64 / 2);
    eprintln!(
        "starting a generated federation: {nodes} nodes, depth {}, {edge_nodes} edge nodes",
        options.depth,
    );
    let federation = match Federation::start(topology, launch).await {
        Ok(f) => f,
        Err(e) => {
            let kept = tmp.keep();
            return Err(anyhow::Error::new(e).context(format!(
                "federation did not start; logs kept in {}",
                kept.display()
            )));
        }
    };
    let marketplace = federation.marketplace_url();
    let client = http_client();
    let edges = std::sync::Arc::new(edges);
    let mut runs = Vec::new();
    for &concurrency in &options.concurrency {
        eprintln!(
            "placement load: {concurrency} in flight for {:?}",
            options.duration
        );
        let put_url = format!("{marketplace}/api/function");
        let busy_before = machine_busy_ms();
        let (placement_latencies, placement) = {
            let client = client.clone();
            let edges = edges.clone();
            closed_loop(options.duration, concurrency, move || {
                let client = client.clone();
                let url = put_url.clone();
                let edges = edges.clone();
                async move {
                    let target = {
                        let mut rng = rand::rng();
                        edges[rng.random_range(0..edges.len())].clone()
                    };
                    let body = json!({"sla": bench_sla(), "targetNode": target});
                    outcome_of(client.put(&url).json(&body).send().await).await
                }
            })
            .await?
        };
        let cpu_ms_per_placement = match (busy_before, machine_busy_ms()) {
            (Some(before), Some(after)) if placement.ok > 0 => {
                Some((after - before) / placement.ok as f64)
            }
            _ => None,
        };
        let health_duration = options.duration.min(Duration::from_secs(5));
        let health_url = format!("{marketplace}/api/health");
        let (health_latencies, health) = {
            let client = client.clone();
            closed_loop(health_duration, concurrency, move || {
                let client = client.clone();
                let url = health_url.clone();
                async move { outcome_of(client.get(&url).send().await).await }
            })
            .await?
        };
        if !health.failures.is_empty() {
            eprintln!("warning: GET /api/health failed: {:?}", health.failures);
        }
        let placement_summary = LatencySummary::of(&placement_latencies);
        let health_summary = LatencySummary::of(&health_latencies);
        eprintln!(
            "  {:.1} placements/s, p50 {:.2} ms, p99 {:.2} ms, {} CPU ms per placement",
            placement.ok as f64 / options.duration.as_secs_f64().max(1e-9),
            placement_summary.p50_ms,
            placement_summary.p99_ms,
            cpu_ms_per_placement.map_or_else(|| "-".to_string(), |c| format!("{c:.1}"))
        );
        runs.push(AuctionRun {
            nodes,
            edge_nodes,
            concurrency,
            placements_ok: placement.ok,
            placements_failed: placement.failures.values().sum(),
            failures: placement.failures,
            throughput_per_s: placement.ok as f64 / options.duration.as_secs_f64().max(1e-9),
            p50_ratio_to_health: if health_summary.p50_ms > 0.0 {
                placement_summary.p50_ms / health_summary.p50_ms
            } else {
                0.0
            },
            placement: placement_summary,
            health: health_summary,
            cpu_ms_per_placement,
        });
    }
    federation.stop().await?;
    Ok(runs)
}

/// Writes `auction.json` and `auction.md` into `dir`.
pub fn write_report(report: &AuctionBenchReport, dir: &Path) -> anyhow::Result<()> {
    write_results(dir, "auction", report, &report.markdown())
}

/// Writes `<stem>.json` (the report, pretty) and `<stem>.md` (its table) into `dir`; every
/// benchmark's results go through here.
pub fn write_results(
    dir: &Path,
    stem: &str,
    report: &impl serde::Serialize,
    markdown: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json_path = dir.join(format!("{stem}.json"));
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let md_path = dir.join(format!("{stem}.md"));
    std::fs::write(&md_path, markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use measure::markdown::squeeze_spaces;

    #[tokio::test]
    async fn the_closed_loop_counts_every_request_and_its_failures() {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = counter.clone();
        let (latencies, result) = closed_loop(Duration::from_millis(100), 4, move || {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                if n.is_multiple_of(2) {
                    Ok(())
                } else {
                    Err("422".to_string())
                }
            }
        })
        .await
        .unwrap();
        let total = counter.load(std::sync::atomic::Ordering::SeqCst);
        assert!(total > 4);
        assert_eq!(latencies.len(), total);
        assert_eq!(result.ok + result.failures.values().sum::<u64>(), total);
        assert!(result.failures.contains_key("422"));
    }

    #[test]
    fn the_report_is_written_as_json_and_a_markdown_table() {
        let summary = LatencySummary::of(&Latencies::from_ms([1.0, 2.0, 3.0, 40.0]));
        assert_eq!(summary.requests, 4);
        assert!((summary.p50_ms - 2.0).abs() < 0.01, "{summary:?}");
        assert!((summary.max_ms - 40.0).abs() < 0.1, "{summary:?}");
        let report = AuctionBenchReport {
            benchmark: "auction",
            machine: Machine::detect(),
            commit: Some("abc123".into()),
            started_at_unix_ms: 0,
            depth: 4,
            seed: 1,
            duration_s: 10.0,
            series: vec![AuctionRun {
                nodes: 50,
                edge_nodes: 37,
                concurrency: 16,
                placements_ok: 3,
                placements_failed: 1,
                failures: BTreeMap::from([("422".to_string(), 1)]),
                throughput_per_s: 0.3,
                placement: summary.clone(),
                health: summary,
                p50_ratio_to_health: 1.0,
                cpu_ms_per_placement: Some(24.5),
            }],
            failed_sizes: vec![FailedSize {
                nodes: 500,
                error: "nodes do not know their overlay neighbours within 370s".into(),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        write_report(&report, dir.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("auction.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["series"][0]["placements_ok"].as_u64(), Some(3));
        assert_eq!(json["series"][0]["placement"]["p50_ms"].as_f64(), Some(2.0));
        let md = std::fs::read_to_string(dir.path().join("auction.md")).unwrap();
        assert!(
            squeeze_spaces(&md).contains("| 50 (37) | 16 | 4 | 3 | 1 |"),
            "{md}"
        );
        assert!(
            md.contains("Failures at 50 nodes, 16 in flight: 422: 1"),
            "{md}"
        );
    }

    #[test]
    fn the_machines_busy_time_leaves_idle_and_iowait_out() {
        let stat = "cpu  100 5 20 1000 50 3 2 1 0 0\ncpu0 50 2 10 500 25 1 1 0 0 0\n";
        // (100 + 5 + 20 + 3 + 2 + 1) ticks of 10 ms.
        assert_eq!(busy_ms_of(stat), Some(1310.0));
        assert_eq!(busy_ms_of("intr 1 2 3\n"), None);
        assert_eq!(busy_ms_of("cpu  1 x 3\n"), None);
    }

    #[test]
    fn the_bench_sla_is_a_valid_sla() {
        let sla = model::Sla::from_json(&bench_sla(), model::SlaId::new(), "sla").unwrap();
        assert_eq!(sla.cpu, model::Cpu::from_millis(10));
    }
}
