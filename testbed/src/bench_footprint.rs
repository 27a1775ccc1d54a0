//! The footprint benchmark (`just bench footprint`): how much memory a small real federation's
//! processes hold while idle, read from `/proc/<pid>/status` (`VmRSS`, peak `VmHWM`, the
//! anonymous and file-backed parts, threads).
//!
//! A fog node's FaaS gateway is embedded: it runs inside the node's process (no process of its
//! own) and starts on the node's first provision. So the benchmark reads twice:
//!
//! 1. **idle**: the federation ready, [`SETTLE`] later and quiet (the processes together using
//!    less than [`QUIET_CPU_SHARE`] of a core): no gateway runs yet;
//! 2. **after serving**: one echo placement provisioned, invocations for a while (2 s by
//!    default), then settled and quiet again: the hosts' gateways run, with their function
//!    replicas (child processes of the node, counted apart).
//!
//! The goal: an idle fog node with its gateway under [`GOAL_MB`], against about 300 MB for the
//! Prometheus that every DFaaS node runs next to its agent. Results go to `footprint.json` and
//! `footprint.md`.

use crate::bench::{Machine, closed_loop, commit_hash, write_results};
use crate::bench_faas::cpu_ms;
use crate::bench_offload::{echo_sla, place_function};
use crate::launcher::{Federation, LaunchOptions};
use crate::poll::{Check, poll};
use crate::topology::{Topology, TopologyFileExt};
use anyhow::Context;
use measure::markdown::{MarkdownTable, left, right};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// The goal: an idle fog node, its embedded gateway included, holds less than this (MB =
/// 10^6 bytes).
pub const GOAL_MB: f64 = 50.0;
/// What Prometheus alone holds (MB), the figure a DFaaS node's monitoring is compared with.
pub const PROMETHEUS_MB: f64 = 300.0;
/// Where the DFaaS node's parts and the Prometheus figure come from.
pub const REFERENCE: &str = "a DFaaS node runs a Go agent, HAProxy, OpenFaaS and Prometheus \
     (`../shared/reference/dfaas.md`); Prometheus alone holds about 300 MB of memory \
     (`../shared/reference/simulation-and-workloads.md`)";
/// After readiness (and after the load), how long the processes are left alone before the
/// quiet check: start-up work (first heartbeats, neighbour probes, allocator growth) is over.
pub const SETTLE: Duration = Duration::from_secs(3);
/// Idle means the federation's processes together used less than this share of one core
/// over a [`QUIET_WINDOW`].
pub const QUIET_CPU_SHARE: f64 = 0.10;
/// The window over which the CPU use is measured, and the interval of the quiet check.
pub const QUIET_WINDOW: Duration = Duration::from_secs(1);
/// How long the quiet check waits; past it the reading is taken anyway and says so.
pub const QUIET_DEADLINE: Duration = Duration::from_secs(30);
/// How long the first invocations may take to succeed once the placement is live.
const SERVE_DEADLINE: Duration = Duration::from_secs(15);
/// KiB (what `/proc` calls kB) in an MB.
const KIB_PER_MB: f64 = 1_000_000.0 / 1024.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct FootprintBenchOptions {
    /// The federation's topology file.
    pub topology: PathBuf,
    /// How long to invoke the placed function before the second reading.
    pub load: Duration,
    /// Invocations in flight during the load.
    pub concurrency: usize,
    /// Where `footprint.json` and `footprint.md` are written.
    pub out: PathBuf,
    /// Where the binaries are (release builds for meaningful numbers).
    pub bin_dir: PathBuf,
}

/// Why a `/proc/<pid>/status` text could not be read: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct StatusError {
    pub field: &'static str,
    pub reason: String,
}

/// The memory of one process, from its `/proc/<pid>/status` (sizes in KiB, which `/proc`
/// writes `kB`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    /// `Name`: the executable's name, at most 15 characters.
    pub name: String,
    /// `PPid`: the parent process.
    pub ppid: u32,
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident.
    pub hwm_kib: u64,
    /// `RssAnon`: the resident heap, stacks and other anonymous memory.
    pub rss_anon_kib: u64,
    /// `RssFile`: the resident pages of mapped files (the executable's code, shared
    /// libraries).
    pub rss_file_kib: u64,
    /// `Threads`.
    pub threads: u64,
}

/// The value of `field` in a `/proc/<pid>/status` text (`Field:\tvalue`).
fn status_field<'a>(status: &'a str, field: &'static str) -> Result<&'a str, StatusError> {
    status
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name == field).then_some(value.trim())
        })
        .ok_or(StatusError {
            field,
            reason: "missing".to_string(),
        })
}

/// A whole number field (`PPid`, `Threads`).
fn status_number(status: &str, field: &'static str) -> Result<u64, StatusError> {
    let value = status_field(status, field)?;
    value.parse().map_err(|_| StatusError {
        field,
        reason: format!("`{value}` is not a whole number"),
    })
}

/// A size field (`VmRSS:    1234 kB`), in KiB.
pub(crate) fn status_kib(status: &str, field: &'static str) -> Result<u64, StatusError> {
    let value = status_field(status, field)?;
    value
        .strip_suffix("kB")
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| StatusError {
            field,
            reason: format!("`{value}` is not a size in kB"),
        })
}

impl ProcessMemory {
    /// Reads the memory fields of process `pid`'s `/proc/<pid>/status` text.
    pub fn parse(pid: u32, status: &str) -> Result<ProcessMemory, StatusError> {
        let ppid = status_number(status, "PPid")?;
        Ok(ProcessMemory {
            pid,
            name: status_field(status, "Name")?.to_string(),
            ppid: u32::try_from(ppid).map_err(|_| StatusError {
                field: "PPid",
                reason: format!("{ppid} is not a process id"),
            })?,
            rss_kib: status_kib(status, "VmRSS")?,
            hwm_kib: status_kib(status, "VmHWM")?,
            rss_anon_kib: status_kib(status, "RssAnon")?,
            rss_file_kib: status_kib(status, "RssFile")?,
            threads: status_number(status, "Threads")?,
        })
    }

    /// Reads process `pid`'s memory now.
    pub fn read(pid: u32) -> anyhow::Result<ProcessMemory> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        ProcessMemory::parse(pid, &text).with_context(|| format!("cannot parse {path}"))
    }

    pub fn rss_mb(&self) -> f64 {
        mb(self.rss_kib)
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / KIB_PER_MB
}

/// Every process below `root` (children, their children, ...), given `(pid, parent)` pairs;
/// in the order found, breadth first.
pub fn descendants_of(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(pid, ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut seen = BTreeSet::from([root]);
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// `(pid, parent)` of every process of this machine now (processes that end while they are
/// read are left out).
fn process_parents() -> anyhow::Result<Vec<(u32, u32)>> {
    let mut pairs = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if let Ok(ppid) = status_number(&text, "PPid") {
            pairs.push((pid, u32::try_from(ppid).unwrap_or(0)));
        }
    }
    Ok(pairs)
}

/// One fog node's memory.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFootprint {
    pub node: String,
    /// The node's process, its embedded gateway included when that runs.
    pub fog_node: ProcessMemory,
    /// Whether the node's embedded gateway runs (it starts on the node's first provision).
    pub gateway_running: bool,
    /// The function replicas the gateway started: processes below the node's.
    pub functions: Vec<ProcessMemory>,
}

impl NodeFootprint {
    /// The fog node with its embedded gateway (one process).
    pub fn node_mb(&self) -> f64 {
        self.fog_node.rss_mb()
    }

    pub fn functions_mb(&self) -> f64 {
        mb(self.functions.iter().map(|f| f.rss_kib).sum())
    }

    /// The node, its gateway and its function replicas.
    pub fn with_functions_mb(&self) -> f64 {
        self.node_mb() + self.functions_mb()
    }
}

/// Max and mean over the nodes of one reading, MB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The largest fog node with its gateway, and which it is.
    pub max_node_mb: f64,
    pub max_node: String,
    pub mean_node_mb: f64,
    /// With the function replicas.
    pub max_with_functions_mb: f64,
    pub mean_with_functions_mb: f64,
}

impl Summary {
    pub fn of(nodes: &[NodeFootprint]) -> Summary {
        let n = nodes.len().max(1) as f64;
        let largest = nodes
            .iter()
            .max_by(|a, b| a.node_mb().total_cmp(&b.node_mb()));
        Summary {
            max_node_mb: largest.map_or(0.0, NodeFootprint::node_mb),
            max_node: largest.map(|n| n.node.clone()).unwrap_or_default(),
            mean_node_mb: nodes.iter().map(NodeFootprint::node_mb).sum::<f64>() / n,
            max_with_functions_mb: nodes
                .iter()
                .map(NodeFootprint::with_functions_mb)
                .fold(0.0, f64::max),
            mean_with_functions_mb: nodes
                .iter()
                .map(NodeFootprint::with_functions_mb)
                .sum::<f64>()
                / n,
        }
    }
}

/// Whether the federation was idle when a reading was taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quiet {
    /// The processes used less than [`QUIET_CPU_SHARE`] of a core within [`QUIET_DEADLINE`].
    pub reached: bool,
    /// Their CPU use over the last window, as a share of one core.
    pub cpu_share_of_core: f64,
}

/// The memory of every process at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    /// `idle` or `after_serving`.
    pub phase: &'static str,
    pub quiet: Quiet,
    pub marketplace: ProcessMemory,
    pub nodes: Vec<NodeFootprint>,
    pub summary: Summary,
}

/// The load between the two readings.
#[derive(Debug, Clone, Serialize)]
pub struct ServedLoad {
    /// The node the devices send to (the placement's target).
    pub access_node: String,
    /// The nodes hosting the function.
    pub hosts: Vec<String>,
    pub duration_s: f64,
    pub concurrency: usize,
    pub ok: u64,
    pub failed: u64,
    /// Failed invocations by HTTP status (`transport` for connection errors).
    pub failures: BTreeMap<String, u64>,
}

/// The benchmark's results (`footprint.json`).
#[derive(Debug, Clone, Serialize)]
pub struct FootprintReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub started_at_unix_ms: u64,
    /// The topology file's name.
    pub topology: String,
    pub settle_s: f64,
    pub goal_mb: f64,
    /// The largest fog node with its gateway over every reading, MB: what the goal is
    /// checked on.
    pub max_node_mb: f64,
    pub goal_met: bool,
    pub prometheus_mb: f64,
    pub reference: &'static str,
    pub load: Option<ServedLoad>,
    pub readings: Vec<Reading>,
}

impl FootprintReport {
    /// The report of `readings`, with the goal checked on the largest node over all of them.
    pub fn new(
        topology: String,
        started_at_unix_ms: u64,
        load: Option<ServedLoad>,
        readings: Vec<Reading>,
    ) -> FootprintReport {
        let max_node_mb = readings
            .iter()
            .map(|r| r.summary.max_node_mb)
            .fold(0.0, f64::max);
        FootprintReport {
            benchmark: "footprint",
            machine: Machine::detect(),
            commit: commit_hash(),
            started_at_unix_ms,
            topology,
            settle_s: SETTLE.as_secs_f64(),
            goal_mb: GOAL_MB,
            max_node_mb,
            goal_met: max_node_mb < GOAL_MB,
            prometheus_mb: PROMETHEUS_MB,
            reference: REFERENCE,
            load,
            readings,
        }
    }

    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Footprint benchmark\n\n");
        let nodes = self.readings.first().map_or(0, |r| r.nodes.len());
        s.push_str(&format!(
            "The marketplace (SQLite) and the {nodes} fog nodes of `{}` on loopback, release builds; \
             commit {}, on {} ({}, {} cores). Resident memory from `/proc/<pid>/status`: `VmRSS` \
             (peak: `VmHWM`; anon: heap and stacks, file: mapped code); MB = 10^6 bytes. The FaaS \
             gateway is embedded: it runs inside its fog node's process and starts on the node's \
             first provision, so its memory is part of the node's. Each reading is taken {:.0} s \
             after the federation is ready, once its processes together use less than {:.0} % of \
             a core.\n",
            self.topology,
            self.commit.as_deref().unwrap_or("unknown"),
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores,
            self.settle_s,
            QUIET_CPU_SHARE * 100.0,
        ));
        for reading in &self.readings {
            s.push('\n');
            s.push_str(&self.reading_markdown(reading));
        }
        s.push_str(&format!(
            "\nGoal: an idle fog node with its gateway under {:.0} MB: **{}** (largest: {:.1} MB).\n",
            self.goal_mb,
            if self.goal_met { "met" } else { "not met" },
            self.max_node_mb,
        ));
        let times = if self.max_node_mb > 0.0 {
            format!(
                ": monitoring alone is {:.0}x the largest fog node here, its gateway included",
                self.prometheus_mb / self.max_node_mb
            )
        } else {
            String::new()
        };
        s.push_str(&format!("\nReference: {}{times}.\n", self.reference));
        s
    }

    fn reading_markdown(&self, reading: &Reading) -> String {
        let mut s = String::new();
        match (reading.phase, &self.load) {
            ("idle", _) => s.push_str("## Idle, before any placement\n\nNo gateway runs yet.\n\n"),
            (_, Some(load)) => s.push_str(&format!(
                "## Idle after serving\n\nOne echo placement for devices at `{}`, hosted by {}; \
                 {:.0} s of invocations at `{}`, {} in flight: {} ok, {} failed{}.\n\n",
                load.access_node,
                if load.hosts.is_empty() {
                    "no node".to_string()
                } else {
                    load.hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                load.duration_s,
                load.access_node,
                load.concurrency,
                load.ok,
                load.failed,
                if load.failures.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        load.failures
                            .iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            )),
            (phase, None) => s.push_str(&format!("## {phase}\n\n")),
        }
        if !reading.quiet.reached {
            s.push_str(&format!(
                "Not quiet within {:.0} s: the processes still used {:.0} % of a core.\n\n",
                QUIET_DEADLINE.as_secs_f64(),
                reading.quiet.cpu_share_of_core * 100.0
            ));
        }
        let mut table = MarkdownTable::new([
            left("process"),
            right("fog node + gateway MB"),
            left("gateway"),
            right("function replicas"),
            right("with replicas MB"),
            right("peak MB"),
            right("anon / file MB"),
            right("threads"),
        ]);
        for n in &reading.nodes {
            let p = &n.fog_node;
            table.row([
                format!("`{}`", n.node),
                format!("{:.1}", n.node_mb()),
                if n.gateway_running {
                    "running"
                } else {
                    "not started"
                }
                .to_string(),
                if n.functions.is_empty() {
                    "-".to_string()
                } else {
                    format!("{} ({:.1} MB)", n.functions.len(), n.functions_mb())
                },
                format!("{:.1}", n.with_functions_mb()),
                format!("{:.1}", mb(p.hwm_kib)),
                format!("{:.1} / {:.1}", mb(p.rss_anon_kib), mb(p.rss_file_kib)),
                p.threads.to_string(),
            ]);
        }
        let m = &reading.marketplace;
        table.row([
            "marketplace".to_string(),
            "-".to_string(),
            "-".to_string(),
            "-".to_string(),
            format!("{:.1}", m.rss_mb()),
            format!("{:.1}", mb(m.hwm_kib)),
            format!("{:.1} / {:.1}", mb(m.rss_anon_kib), mb(m.rss_file_kib)),
            m.threads.to_string(),
        ]);
        s.push_str(&table.render());
        let sum = &reading.summary;
        s.push_str(&format!(
            "\nOver the {} fog nodes: fog node + gateway max {:.1} MB (`{}`), mean {:.1} MB; with \
             replicas max {:.1} MB, mean {:.1} MB.\n",
            reading.nodes.len(),
            sum.max_node_mb,
            sum.max_node,
            sum.mean_node_mb,
            sum.max_with_functions_mb,
            sum.mean_with_functions_mb,
        ));
        s
    }
}

/// The pids of the federation's processes: the marketplace and every node.
fn member_pids(fed: &Federation) -> anyhow::Result<(u32, Vec<(String, u32)>)> {
    let marketplace = fed
        .marketplace_pid()
        .context("the marketplace does not run")?;
    let nodes = fed
        .node_names()
        .map(|name| {
            fed.node_pid(name)
                .map(|pid| (name.to_string(), pid))
                .with_context(|| format!("fog node `{name}` does not run"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((marketplace, nodes))
}

/// Every process of the federation and below it (function replicas).
fn all_pids(fed: &Federation) -> anyhow::Result<Vec<u32>> {
    let (marketplace, nodes) = member_pids(fed)?;
    let parents = process_parents()?;
    let mut pids = vec![marketplace];
    for (_, pid) in nodes {
        pids.push(pid);
        pids.extend(descendants_of(pid, &parents));
    }
    Ok(pids)
}

/// CPU time the processes have used so far, ms (a process that ended counts nothing).
fn cpu_total_ms(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&pid| cpu_ms(pid).ok()).sum()
}

/// Waits (polling every [`QUIET_WINDOW`]) until the federation's processes together use less
/// than [`QUIET_CPU_SHARE`] of a core; past [`QUIET_DEADLINE`] says it was not reached.
async fn wait_quiet(fed: &Federation) -> anyhow::Result<Quiet> {
    enum NotQuiet {
        Busy(f64),
        Failed(anyhow::Error),
    }
    let mut last: Option<(Instant, f64)> = None;
    let outcome = poll(
        QUIET_DEADLINE,
        QUIET_WINDOW,
        async || {
            let pids = all_pids(fed).map_err(NotQuiet::Failed)?;
            let now = (Instant::now(), cpu_total_ms(&pids));
            let share = last.map(|(at, used)| {
                let wall_ms = now.0.duration_since(at).as_secs_f64() * 1000.0;
                (now.1 - used).max(0.0) / wall_ms.max(1.0)
            });
            last = Some(now);
            Ok(match share {
                Some(share) if share < QUIET_CPU_SHARE => Check::Done(share),
                Some(share) => Check::NotYet(share),
                None => Check::NotYet(f64::NAN),
            })
        },
        NotQuiet::Busy,
    )
    .await;
    match outcome {
        Ok(share) => Ok(Quiet {
            reached: true,
            cpu_share_of_core: share,
        }),
        Err(NotQuiet::Busy(share)) => Ok(Quiet {
            reached: false,
            cpu_share_of_core: share,
        }),
        Err(NotQuiet::Failed(e)) => Err(e),
    }
}

/// Settles, waits until quiet, and reads every process's memory.
async fn read_federation(
    fed: &Federation,
    phase: &'static str,
    gateways: &BTreeSet<String>,
) -> anyhow::Result<Reading> {
    tokio::time::sleep(SETTLE).await;
    let quiet = wait_quiet(fed).await?;
    let (marketplace, nodes) = member_pids(fed)?;
    let parents = process_parents()?;
    let mut read = Vec::new();
    for (name, pid) in nodes {
        let fog_node = ProcessMemory::read(pid).with_context(|| format!("fog node `{name}`"))?;
        let functions = descendants_of(pid, &parents)
            .into_iter()
            // A replica that ended between the listing and the read is not there.
            .filter_map(|child| ProcessMemory::read(child).ok())
            .collect();
        read.push(NodeFootprint {
            gateway_running: gateways.contains(&name),
            node: name,
            fog_node,
            functions,
        });
    }
    let marketplace = ProcessMemory::read(marketplace).context("the marketplace")?;
    Ok(Reading {
        phase,
        quiet,
        marketplace,
        summary: Summary::of(&read),
        nodes: read,
    })
}

/// Places echo for devices at `access`, waits until it serves, and invokes it for `duration`.
async fn serve(
    fed: &Federation,
    access: &str,
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<ServedLoad> {
    let client = fed.client().clone();
    let placed = place_function(&client, &fed.marketplace_url(), echo_sla(1), access).await?;
    poll(
        SERVE_DEADLINE,
        Duration::from_millis(50),
        async || {
            let answer = client.post(&placed.invoke_url).body("ping").send().await;
            Ok(match answer {
                Ok(r) if r.status().is_success() => Check::Done(()),
                Ok(r) => Check::NotYet(format!("HTTP {}", r.status())),
                Err(e) => Check::NotYet(e.to_string()),
            })
        },
        |seen| anyhow::anyhow!("`{access}` never served the function (last: {seen})"),
    )
    .await?;
    let url = placed.invoke_url.clone();
    let (_, result) = closed_loop(duration, concurrency, move || {
        let client = client.clone();
        let url = url.clone();
        async move { crate::bench::outcome_of(client.post(&url).body("ping").send().await).await }
    })
    .await?;
    Ok(ServedLoad {
        access_node: access.to_string(),
        hosts: placed.hosts,
        duration_s: duration.as_secs_f64(),
        concurrency,
        ok: result.ok,
        failed: result.failures.values().sum(),
        failures: result.failures,
    })
}

/// Starts the topology's federation (SQLite in a temporary directory), reads it idle, serves
/// one placement, reads it again, and writes `footprint.json` and `footprint.md` into
/// `options.out`.
pub async fn run_footprint_bench(
    options: &FootprintBenchOptions,
) -> anyhow::Result<FootprintReport> {
    let topology = Topology::from_file(&options.topology)?;
    let name = options.topology.file_name().map_or_else(
        || options.topology.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let access = topology
        .leaves()
        .next()
        .map(|n| n.name.clone())
        .with_context(|| format!("{name} has no node"))?;
    let tmp = tempfile::Builder::new()
        .prefix("fogmarket-footprint-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut launch = LaunchOptions::new(tmp.path().join("run"))?;
    launch.bin_dir = options.bin_dir.clone();
    launch.readiness_deadline = Duration::from_secs(60);
    eprintln!(
        "starting the {} fog nodes of {name} (run dir {})",
        topology.nodes().len(),
        launch.run_dir.display()
    );
    let started_at_unix_ms = model::Timestamp::now().as_millis();
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
    let measured = measure(&federation, &access, options).await;
    federation.stop().await?;
    let (load, readings) = measured?;
    let report = FootprintReport::new(name, started_at_unix_ms, Some(load), readings);
    write_report(&report, &options.out)?;
    Ok(report)
}

/// The two readings around the load.
async fn measure(
    fed: &Federation,
    access: &str,
    options: &FootprintBenchOptions,
) -> anyhow::Result<(ServedLoad, Vec<Reading>)> {
    eprintln!("idle reading ({SETTLE:?} settle, then quiet)");
    let idle = read_federation(fed, "idle", &BTreeSet::new()).await?;
    eprintln!(
        "serving: one echo placement for `{access}`, {:?} of invocations",
        options.load
    );
    let load = serve(fed, access, options.load, options.concurrency).await?;
    let gateways: BTreeSet<String> = load.hosts.iter().cloned().collect();
    eprintln!("reading after serving ({SETTLE:?} settle, then quiet)");
    let served = read_federation(fed, "after_serving", &gateways).await?;
    Ok((load, vec![idle, served]))
}

/// Writes `footprint.json` and `footprint.md` into `dir`.
pub fn write_report(report: &FootprintReport, dir: &Path) -> anyhow::Result<()> {
    write_results(dir, "footprint", report, &report.markdown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use measure::markdown::squeeze_spaces;

    const STATUS: &str = "Name:\tfog-node\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        Pid:\t4242\nPPid:\t4200\nVmPeak:\t  812344 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20480 kB\n\
        RssAnon:\t    8192 kB\nRssFile:\t   12288 kB\nRssShmem:\t       0 kB\nThreads:\t9\n";

    fn process(pid: u32, name: &str, rss_kib: u64) -> ProcessMemory {
        ProcessMemory {
            pid,
            name: name.to_string(),
            ppid: 1,
            rss_kib,
            hwm_kib: rss_kib + 1024,
            rss_anon_kib: rss_kib / 2,
            rss_file_kib: rss_kib / 2,
            threads: 7,
        }
    }

    fn node(name: &str, rss_kib: u64, functions: Vec<ProcessMemory>) -> NodeFootprint {
        NodeFootprint {
            node: name.to_string(),
            fog_node: process(10, "fog-node", rss_kib),
            gateway_running: !functions.is_empty(),
            functions,
        }
    }

    #[test]
    fn a_proc_status_gives_the_resident_peak_anonymous_and_file_memory() {
        let memory = ProcessMemory::parse(4242, STATUS).unwrap();
        assert_eq!(
            memory,
            ProcessMemory {
                pid: 4242,
                name: "fog-node".to_string(),
                ppid: 4200,
                rss_kib: 20480,
                hwm_kib: 23456,
                rss_anon_kib: 8192,
                rss_file_kib: 12288,
                threads: 9,
            }
        );
        assert!((memory.rss_mb() - 20.97152).abs() < 1e-9, "{memory:?}");
    }

    #[test]
    fn a_proc_status_without_a_field_or_with_a_bad_value_names_the_field() {
        let without_rss = STATUS.replace("VmRSS:\t   20480 kB\n", "");
        assert_eq!(
            ProcessMemory::parse(1, &without_rss)
                .unwrap_err()
                .to_string(),
            "`VmRSS`: missing"
        );
        let in_pages = STATUS.replace("23456 kB", "5864 pages");
        assert_eq!(
            ProcessMemory::parse(1, &in_pages).unwrap_err().to_string(),
            "`VmHWM`: `5864 pages` is not a size in kB"
        );
        let bad_threads = STATUS.replace("Threads:\t9", "Threads:\tnine");
        assert_eq!(
            ProcessMemory::parse(1, &bad_threads).unwrap_err(),
            StatusError {
                field: "Threads",
                reason: "`nine` is not a whole number".to_string()
            }
        );
    }

    #[test]
    fn a_kernel_thread_without_memory_lines_is_not_read_as_a_process_of_zero_bytes() {
        let kthread = "Name:\tkworker/0:1\nPPid:\t2\nThreads:\t1\n";
        assert_eq!(ProcessMemory::parse(9, kthread).unwrap_err().field, "VmRSS");
    }

    #[test]
    fn descendants_are_children_and_their_children_but_not_siblings() {
        let parents = [(10, 1), (11, 10), (12, 11), (20, 1), (21, 20), (13, 10)];
        let mut found = descendants_of(10, &parents);
        found.sort_unstable();
        assert_eq!(found, vec![11, 12, 13]);
        assert!(descendants_of(99, &parents).is_empty());
    }

    #[test]
    fn the_summary_takes_the_largest_and_the_mean_node_with_and_without_replicas() {
        let nodes = [
            node("a", 10_240, vec![]),
            node("b", 20_480, vec![process(11, "fn-echo", 3_072)]),
        ];
        let s = Summary::of(&nodes);
        assert_eq!(s.max_node, "b");
        assert!((s.max_node_mb - mb(20_480)).abs() < 1e-9, "{s:?}");
        assert!((s.mean_node_mb - mb(15_360)).abs() < 1e-9, "{s:?}");
        assert!((s.max_with_functions_mb - mb(23_552)).abs() < 1e-9, "{s:?}");
        assert!(
            (s.mean_with_functions_mb - mb(16_896)).abs() < 1e-9,
            "{s:?}"
        );
    }

    fn report(node_kib: u64) -> FootprintReport {
        let idle_nodes = vec![node("edge", node_kib, vec![]), node("cloud", 8_192, vec![])];
        let served_nodes = vec![
            node(
                "edge",
                node_kib + 2_048,
                vec![process(30, "fn-echo", 3_072)],
            ),
            node("cloud", 8_192, vec![]),
        ];
        let reading = |phase, nodes: Vec<NodeFootprint>| Reading {
            phase,
            quiet: Quiet {
                reached: true,
                cpu_share_of_core: 0.01,
            },
            marketplace: process(5, "marketplace", 30_720),
            summary: Summary::of(&nodes),
            nodes,
        };
        FootprintReport::new(
            "local.toml".to_string(),
            0,
            Some(ServedLoad {
                access_node: "edge".to_string(),
                hosts: vec!["edge".to_string()],
                duration_s: 2.0,
                concurrency: 4,
                ok: 900,
                failed: 1,
                failures: BTreeMap::from([("502".to_string(), 1)]),
            }),
            vec![
                reading("idle", idle_nodes),
                reading("after_serving", served_nodes),
            ],
        )
    }

    #[test]
    fn the_report_shows_each_node_per_reading_and_checks_the_goal_on_the_largest() {
        let r = report(12_288);
        let md = squeeze_spaces(&r.markdown());
        assert!(md.contains("## Idle, before any placement"), "{md}");
        assert!(md.contains("## Idle after serving"), "{md}");
        assert!(
            md.contains("| `edge` | 12.6 | not started | - | 12.6 | 13.6 | 6.3 / 6.3 | 7 |"),
            "{md}"
        );
        assert!(
            md.contains("| `edge` | 14.7 | running | 1 (3.1 MB) | 17.8 |"),
            "{md}"
        );
        assert!(md.contains("| marketplace | - | - | - | 31.5 |"), "{md}");
        assert!(md.contains("900 ok, 1 failed (502: 1)"), "{md}");
        assert!(
            md.contains("under 50 MB: **met** (largest: 14.7 MB)"),
            "{md}"
        );
        assert!(md.contains("../shared/reference/dfaas.md"), "{md}");
        assert!(md.contains("about 300 MB of memory"), "{md}");
        assert!(
            md.contains("monitoring alone is 20x the largest fog node"),
            "{md}"
        );
        assert!(r.goal_met);
        assert!((r.max_node_mb - mb(14_336)).abs() < 1e-9);
    }

    #[test]
    fn a_node_over_the_goal_is_reported_as_not_met() {
        let r = report(60_000);
        assert!(!r.goal_met);
        assert!(
            r.markdown()
                .contains("under 50 MB: **not met** (largest: 63.5 MB)"),
            "{}",
            r.markdown()
        );
    }

    #[test]
    fn the_report_is_written_as_json_with_the_fields_every_benchmark_has() {
        let dir = tempfile::tempdir().unwrap();
        write_report(&report(12_288), dir.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("footprint.json")).unwrap(),
        )
        .unwrap();
        for field in ["benchmark", "machine", "commit", "started_at_unix_ms"] {
            assert!(json.get(field).is_some(), "{field} missing: {json}");
        }
        assert_eq!(json["benchmark"], "footprint");
        assert_eq!(json["goal_met"], true);
        assert_eq!(
            json["readings"][1]["nodes"][0]["functions"][0]["name"],
            "fn-echo"
        );
        assert!(dir.path().join("footprint.md").is_file());
    }
}
