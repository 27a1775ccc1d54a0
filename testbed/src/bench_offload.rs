//! The offload benchmark: DFaaS's published scenarios, run against a real federation (the
//! marketplace and fog nodes on loopback) once per offloading strategy.
//!
//! - **demo** (DFaaS CloudNet'21 demo): three fog nodes host the same `echo` function (one SLA
//!   with `nodes = 3` in a three-node tree, so the three nodes are the three winners); node
//!   `n1` receives 50 req/s while it sustains about 10 req/s, `n2` and `n3` about 25 req/s each.
//! - **issue48** (DFaaS's overload of two nodes): two nodes sustaining 100 req/s each,
//!   110 req/s at `n1`.
//!
//! A node's capacity is `max_concurrency` calls in flight (its `[offload]`) over echo's fixed
//! delay (`?delay_ms=`), also given as `max_rates` so every strategy knows it from the start.
//! Each run starts a fresh federation with every node on one strategy (`static`, `recalc`,
//! `node_margin`, `lease`), places the function with provisioning, waits until every host
//! lists its peers alive (`GET /api/offload`), then sends an open-loop load ([`crate::load`])
//! to the hot node's `invokeUrl`. Results go to `offload.json` and `offload.md`: success
//! overall, from the second second on, the worst second after the first, and requests served
//! per node.

use crate::bench::{Machine, commit_hash};
use crate::bench_faas::ECHO_IMAGE;
use crate::bench_proxy::load_average;
use crate::launcher::{Federation, LaunchOptions, http_client};
use crate::load::{self, LoadOptions, LoadSummary, Schedule, Stream};
use crate::poll::{Check, poll};
use crate::topology::{OFFLOAD_STRATEGIES, Topology};
use anyhow::{Context, anyhow, bail};
use measure::markdown::{MarkdownTable, left, right};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Requests due before this are left out of the settled figures.
pub const SETTLE: Duration = Duration::from_secs(1);
/// The aim: success from the second second on, where aggregate capacity suffices.
pub const AIM: f64 = 0.99;
/// How long the hosts may take to list their peers alive after provisioning.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct OffloadBenchOptions {
    /// Load per run.
    pub duration: Duration,
    /// Strategies to compare (each a fresh federation per scenario).
    pub strategies: Vec<String>,
    /// Scenarios: `demo`, `issue48`.
    pub scenarios: Vec<String>,
    /// echo's delay per request; capacities follow from it.
    pub delay_ms: u64,
    /// Where `offload.json` and `offload.md` are written.
    pub out: PathBuf,
    /// Where `marketplace`, `fog-node`, `faas-gateway` and `fn-echo` are.
    pub bin_dir: PathBuf,
}

/// One hosting node of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSpec {
    pub name: String,
    /// Local calls in flight (`[offload] max_concurrency`).
    pub max_concurrency: u64,
    /// Requests per second it sustains: `max_concurrency` over echo's delay.
    pub capacity: f64,
}

/// A load scenario: hosts with capacities, and one hot node receiving the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub delay_ms: u64,
    /// In tree order: the first host that is not hot is the root, the others its children.
    pub hosts: Vec<HostSpec>,
    /// The node the load is sent to (the SLA's target, so its `invokeUrl` is this node's).
    pub hot: String,
    /// Requests per second sent to `hot`.
    pub rate: f64,
}

/// Scenario names [`Scenario::named`] knows.
pub const SCENARIOS: &[&str] = &["demo", "issue48"];

impl HostSpec {
    /// A host sustaining about `capacity` req/s when echo is delayed `delay_ms`: the nearest
    /// whole number of calls in flight (at least one), and the capacity that gives.
    pub fn with_capacity(name: &str, capacity: f64, delay_ms: u64) -> HostSpec {
        let per_call = delay_ms.max(1) as f64 / 1000.0;
        let max_concurrency = (capacity * per_call).round().max(1.0) as u64;
        HostSpec {
            name: name.to_string(),
            max_concurrency,
            capacity: max_concurrency as f64 / per_call,
        }
    }
}

impl Scenario {
    fn host(name: &str, capacity: f64, delay_ms: u64) -> HostSpec {
        HostSpec::with_capacity(name, capacity, delay_ms)
    }

    /// DFaaS CloudNet'21 demo: 50 req/s at a node sustaining ~10, two peers with ~25 each.
    pub fn dfaas_demo(delay_ms: u64) -> Scenario {
        Scenario {
            name: "demo".into(),
            description: "DFaaS CloudNet'21 demo".into(),
            delay_ms,
            hosts: vec![
                Self::host("n1", 10.0, delay_ms),
                Self::host("n2", 25.0, delay_ms),
                Self::host("n3", 25.0, delay_ms),
            ],
            hot: "n1".into(),
            rate: 50.0,
        }
    }

    /// DFaaS's `issue48`: two nodes sustaining 100 req/s each, 110 req/s at one.
    pub fn issue_48(delay_ms: u64) -> Scenario {
        Scenario {
            name: "issue48".into(),
            description: "DFaaS overload of two nodes".into(),
            delay_ms,
            hosts: vec![
                Self::host("n1", 100.0, delay_ms),
                Self::host("n2", 100.0, delay_ms),
            ],
            hot: "n1".into(),
            rate: 110.0,
        }
    }

    /// `demo` or `issue48`.
    pub fn named(name: &str, delay_ms: u64) -> anyhow::Result<Scenario> {
        match name {
            "demo" => Ok(Self::dfaas_demo(delay_ms)),
            "issue48" => Ok(Self::issue_48(delay_ms)),
            other => bail!(
                "unknown offload scenario `{other}` (known: {})",
                SCENARIOS.join(", ")
            ),
        }
    }

    /// Requests per second all hosts sustain together.
    pub fn aggregate_capacity(&self) -> f64 {
        self.hosts.iter().map(|h| h.capacity).sum()
    }

    /// The federation: only the hosts, in a star around the first host that is not hot (2 ms
    /// links), every node on `strategy` with its own capacity for echo. An SLA with
    /// `nodes = hosts.len()` then has exactly these winners.
    pub fn topology(&self, strategy: &str) -> anyhow::Result<Topology> {
        let root = self
            .hosts
            .iter()
            .find(|h| h.name != self.hot)
            .or(self.hosts.first())
            .context("a scenario needs at least one host")?;
        let mut text =
            String::from("[marketplace]\nauction_rule = \"vickrey\"\nauction_timeout_ms = 2000\n");
        for h in &self.hosts {
            text.push_str(&format!(
                "\n[[node]]\nname = \"{}\"\nowner = \"owner-{}\"\ncpu = \"4 cpu\"\nmemory = \"8 GiB\"\n\
                 pricing = {{ model = \"quadratic\", aa = 0.01, bb = 0.1, electricity = 0.9 }}\n\
                 offload = {{ strategy = \"{strategy}\", max_concurrency = {}, max_rates = {{ echo = {:?} }} }}\n",
                h.name, h.name, h.max_concurrency, h.capacity
            ));
            if h.name != root.name {
                text.push_str(&format!("parent = \"{}\"\nlatency = \"2 ms\"\n", root.name));
            }
        }
        Topology::parse(&text).with_context(|| format!("scenario `{}`: topology", self.name))
    }

    /// The load: `rate` req/s to the hot node's invoke URL for `duration`.
    pub fn stream(&self, invoke_url: &str, duration: Duration) -> Stream {
        Stream::post(
            self.hot.clone(),
            with_delay(invoke_url, self.delay_ms),
            "fog",
            Schedule::Constant {
                rate: self.rate,
                duration,
            },
        )
    }
}

/// `url` with echo's `delay_ms` query parameter.
pub fn with_delay(url: &str, delay_ms: u64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}delay_ms={delay_ms}")
}

/// An echo SLA hosted on `nodes` distinct nodes.
pub fn echo_sla(nodes: usize) -> Value {
    json!({
        "cpu": "250 m",
        "memory": "64 MB",
        "duration": "30 min",
        "latencyMax": "1000 ms",
        "functionImage": ECHO_IMAGE,
        "functionLiveName": "echo",
        "nodes": nodes,
    })
}

/// A placed, live function.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub sla_id: String,
    /// `fogfn-<slaId>`.
    pub service: String,
    /// The target (access) node's data plane for the function.
    pub invoke_url: String,
    /// Names of the hosting nodes.
    pub hosts: Vec<String>,
    /// The whole answer.
    pub answer: Value,
}

/// `PUT /api/function?provision=true`; fails unless the function is live on every winner.
pub async fn place_function(
    client: &reqwest::Client,
    marketplace_url: &str,
    sla: Value,
    target: &str,
) -> anyhow::Result<Placed> {
    let resp = client
        .put(format!("{marketplace_url}/api/function?provision=true"))
        .json(&json!({"sla": sla, "targetNode": target}))
        .send()
        .await
        .context("PUT /api/function?provision=true")?;
    let status = resp.status();
    let answer: Value = signed_http::read_json(resp, crate::launcher::MAX_ANSWER)
        .await
        .map_err(|e| anyhow::anyhow!("PUT /api/function?provision=true: {e}"))?;
    if !status.is_success() || answer["state"] != "live" {
        bail!("placing the function failed ({status}): {answer:#}");
    }
    let sla: model::SlaId = answer["sla"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no sla.id (a UUID) in the placement: {answer:#}"))?;
    let sla_id = sla.to_string();
    let invoke_url = answer["invokeUrl"]
        .as_str()
        .or_else(|| answer["chosen"]["invokeUrl"].as_str())
        .with_context(|| format!("no invokeUrl in the placement: {answer:#}"))?
        .to_string();
    let hosts = answer["winners"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["nodeName"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Ok(Placed {
        service: sla.service_name(),
        sla_id,
        invoke_url,
        hosts,
        answer,
    })
}

/// The entry of `service` in a node's `GET /api/offload` answer.
pub fn offload_entry<'a>(state: &'a Value, service: &str) -> Option<&'a Value> {
    let list = state
        .get("functions")
        .and_then(Value::as_array)
        .or_else(|| state.as_array())?;
    list.iter().find(|f| f["service"] == service)
}

/// Names of the peers an `/api/offload` function entry lists as alive.
pub fn alive_peers(entry: &Value) -> BTreeSet<String> {
    entry["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .filter(|p| p["alive"] == true)
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls every host's `GET /api/offload` until each lists `service` with every other host as
/// an alive peer; the error says what each host shows at the deadline.
pub async fn wait_offload_ready(
    client: &reqwest::Client,
    federation: &Federation,
    service: &str,
    hosts: &[String],
    deadline: Duration,
) -> anyhow::Result<()> {
    poll(
        deadline,
        Duration::from_millis(50),
        async || {
            let mut missing = Vec::new();
            for host in hosts {
                let url = federation
                    .node_url(host)
                    .with_context(|| format!("no node `{host}` in the federation"))?;
                let state: Option<Value> =
                    match client.get(format!("{url}/api/offload")).send().await {
                        Ok(r) if r.status().is_success() => {
                            signed_http::read_json(r, crate::launcher::MAX_ANSWER)
                                .await
                                .ok()
                        }
                        _ => None,
                    };
                let Some(state) = state else {
                    missing.push(format!("`{host}`: GET /api/offload failed"));
                    continue;
                };
                let Some(entry) = offload_entry(&state, service) else {
                    missing.push(format!("`{host}` does not list {service}"));
                    continue;
                };
                let alive = alive_peers(entry);
                let absent: Vec<&String> = hosts
                    .iter()
                    .filter(|h| *h != host && !alive.contains(*h))
                    .collect();
                if !absent.is_empty() {
                    missing.push(format!(
                        "`{host}` does not list {absent:?} as alive peers: {}",
                        entry["peers"]
                    ));
                }
            }
            Ok(if missing.is_empty() {
                Check::Done(())
            } else {
                Check::NotYet(missing)
            })
        },
        |missing| {
            anyhow!(
                "hosts not ready for offloading within {deadline:?}: {}",
                missing.join("; ")
            )
        },
    )
    .await
}

/// One strategy on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct OffloadRun {
    pub scenario: String,
    pub strategy: String,
    /// From provisioned to every host listing its peers alive, seconds.
    pub ready_after_s: Option<f64>,
    /// `None` when the run failed (see `error`).
    pub summary: Option<LoadSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OffloadRun {
    /// Whether the settled success reached [`AIM`].
    pub fn aim_met(&self) -> Option<bool> {
        let s = self.summary.as_ref()?;
        Some(s.settled_success_rate? >= AIM && s.settled_min_second_success? >= AIM)
    }
}

/// The benchmark's results (`offload.json`).
#[derive(Debug, Clone, Serialize)]
pub struct OffloadBenchReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub started_at_unix_ms: u64,
    pub duration_s: f64,
    pub settle_s: f64,
    pub aim: f64,
    /// 1-minute load average before the first run and after the last.
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
    pub scenarios: Vec<Scenario>,
    pub runs: Vec<OffloadRun>,
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "-".to_string())
}

impl OffloadBenchReport {
    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Offload benchmark\n\n");
        s.push_str(&format!(
            "Open-loop load ({:.0} s per run, requests never wait for answers) at the hot node's `invokeUrl`; a fresh federation (marketplace + fog nodes + their embedded gateways, loopback) per run, every node on the strategy of the row; commit {}, on {} ({}, {} cores shared by every process and the load generator; 1-minute load average before / after: {} / {}).\n\n",
            self.duration_s,
            self.commit.as_deref().unwrap_or("unknown"),
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores,
            self.load_average_before
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "?".into()),
            self.load_average_after
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "?".into()),
        ));
        s.push_str(&format!(
            "Aim: at least {} success from second {:.0} on, in every second, where aggregate capacity suffices. \
             DFaaS reference (`../shared/reference/dfaas.md`): in the CloudNet'21 demo ~40 of 50 req/s fail with 503 until the first recalculation (1 min), later spikes at each HAProxy reload; their simulator's minimum success with Recalc is 0.945; in `issue48` (110 req/s on 2 × 100) forwarding happens \"only in a limited way\".\n",
            pct(self.aim),
            self.settle_s
        ));
        for sc in &self.scenarios {
            let caps = sc
                .hosts
                .iter()
                .map(|h| {
                    format!(
                        "{} {:.0} req/s (max_concurrency {})",
                        h.name, h.capacity, h.max_concurrency
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                "\n## {} (`{}`): {:.0} req/s at {}\n\nCapacities with echo delayed {} ms: {caps}; aggregate {:.0} req/s.\n\n",
                sc.description,
                sc.name,
                sc.rate,
                sc.hot,
                sc.delay_ms,
                sc.aggregate_capacity()
            ));
            let names: Vec<&str> = sc.hosts.iter().map(|h| h.name.as_str()).collect();
            let settle = self.settle_s;
            let mut table = MarkdownTable::new([
                left("strategy"),
                right("success"),
                right(format!("from s{settle:.0}")),
                right(format!("worst second from s{settle:.0}")),
                left(format!("served {}", names.join(" / "))),
                left("failures"),
                right("p50 ms"),
                right("p99 ms"),
                right(format!("p99 ms from s{settle:.0}")),
                left("aim"),
            ]);
            let runs: Vec<&OffloadRun> =
                self.runs.iter().filter(|r| r.scenario == sc.name).collect();
            for r in &runs {
                let Some(sum) = &r.summary else {
                    let error = r.error.as_deref().unwrap_or("did not run");
                    let first_line = error.lines().next().unwrap_or_default();
                    table.row([
                        r.strategy.clone(),
                        format!("failed: {}", first_line.replace('|', "/")),
                    ]);
                    continue;
                };
                let served = names
                    .iter()
                    .map(|n| sum.served_by.get(*n).copied().unwrap_or(0).to_string())
                    .collect::<Vec<_>>()
                    .join(" / ");
                let failures: Vec<String> = sum
                    .outcomes
                    .iter()
                    .filter(|(k, _)| !k.starts_with('2'))
                    .map(|(k, v)| format!("{k}: {v}"))
                    .chain(sum.reject_reasons.iter().map(|(k, v)| format!("{k}: {v}")))
                    .collect();
                table.row([
                    r.strategy.clone(),
                    pct(sum.success_rate),
                    opt_pct(sum.settled_success_rate),
                    opt_pct(sum.settled_min_second_success),
                    served,
                    if failures.is_empty() {
                        "none".to_string()
                    } else {
                        failures.join(", ")
                    },
                    format!("{:.1}", sum.latency.p50_ms),
                    format!("{:.1}", sum.latency.p99_ms),
                    format!("{:.1}", sum.settled_latency.p99_ms),
                    match r.aim_met() {
                        Some(true) => "met",
                        Some(false) => "not met",
                        None => "-",
                    }
                    .to_string(),
                ]);
            }
            s.push_str(&table.render());
            for r in &runs {
                if let Some(sum) = &r.summary {
                    for (message, n) in &sum.transport_errors {
                        s.push_str(&format!(
                            "\n{} transport error{} with {}: `{}`\n",
                            n,
                            if *n == 1 { "" } else { "s" },
                            r.strategy,
                            message.replace('`', "'")
                        ));
                    }
                }
            }
            s.push_str("\nSuccess per second (%), from second 0:\n\n");
            for r in &runs {
                if let Some(sum) = &r.summary {
                    s.push_str(&format!(
                        "- {}: {}\n",
                        r.strategy,
                        sum.per_second
                            .iter()
                            .map(|p| format!("{:.0}", p.success_rate * 100.0))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            }
        }
        s
    }
}

/// Runs every scenario with every strategy and writes `offload.json` and `offload.md`.
pub async fn run_offload_bench(
    options: &OffloadBenchOptions,
) -> anyhow::Result<OffloadBenchReport> {
    for s in &options.strategies {
        if !OFFLOAD_STRATEGIES.contains(&s.as_str()) {
            bail!(
                "unknown strategy `{s}` (known: {})",
                OFFLOAD_STRATEGIES.join(", ")
            );
        }
    }
    let scenarios = options
        .scenarios
        .iter()
        .map(|n| Scenario::named(n, options.delay_ms))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tmp = tempfile::Builder::new()
        .prefix("fogmarket-bench-offload-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let started_at_unix_ms = model::Timestamp::now().as_millis();
    let load_average_before = load_average();
    let mut runs = Vec::new();
    let mut any_failed = false;
    for scenario in &scenarios {
        for strategy in &options.strategies {
            eprintln!(
                "{} with {strategy}: {:.0} req/s at {} for {:?}",
                scenario.name, scenario.rate, scenario.hot, options.duration
            );
            let dir = tmp.path().join(format!("{}-{strategy}", scenario.name));
            let run = match run_one(scenario, strategy, options, &dir).await {
                Ok((ready, summary)) => {
                    eprintln!(
                        "  success {} (from s1 {}, worst second {}), served {:?}",
                        pct(summary.success_rate),
                        opt_pct(summary.settled_success_rate),
                        opt_pct(summary.settled_min_second_success),
                        summary.served_by
                    );
                    OffloadRun {
                        scenario: scenario.name.clone(),
                        strategy: strategy.clone(),
                        ready_after_s: Some(ready.as_secs_f64()),
                        summary: Some(summary),
                        error: None,
                    }
                }
                Err(e) => {
                    eprintln!("  failed: {e:#}");
                    any_failed = true;
                    OffloadRun {
                        scenario: scenario.name.clone(),
                        strategy: strategy.clone(),
                        ready_after_s: None,
                        summary: None,
                        error: Some(format!("{e:#}")),
                    }
                }
            };
            runs.push(run);
        }
    }
    let report = OffloadBenchReport {
        benchmark: "offload",
        machine: Machine::detect(),
        commit: commit_hash(),
        started_at_unix_ms,
        duration_s: options.duration.as_secs_f64(),
        settle_s: SETTLE.as_secs_f64(),
        aim: AIM,
        load_average_before,
        load_average_after: load_average(),
        scenarios,
        runs,
    };
    write_report(&report, &options.out)?;
    if any_failed {
        let kept = tmp.keep();
        eprintln!("logs of the runs kept in {}", kept.display());
    }
    Ok(report)
}

/// One fresh federation, one placement, one load.
async fn run_one(
    scenario: &Scenario,
    strategy: &str,
    options: &OffloadBenchOptions,
    dir: &Path,
) -> anyhow::Result<(Duration, LoadSummary)> {
    let topology = scenario.topology(strategy)?;
    let mut launch = LaunchOptions::new(dir)?;
    launch.bin_dir = options.bin_dir.clone();
    launch.readiness_deadline = Duration::from_secs(60);
    let federation = Federation::start(topology, launch)
        .await
        .context("the federation did not start")?;
    let outcome = async {
        let client = http_client();
        let placed = place_function(
            &client,
            &federation.marketplace_url(),
            echo_sla(scenario.hosts.len()),
            &scenario.hot,
        )
        .await?;
        let want: BTreeSet<&str> = scenario.hosts.iter().map(|h| h.name.as_str()).collect();
        let got: BTreeSet<&str> = placed.hosts.iter().map(String::as_str).collect();
        if want != got {
            bail!("the auction placed echo on {got:?}, the scenario needs {want:?}");
        }
        let provisioned = Instant::now();
        wait_offload_ready(
            &client,
            &federation,
            &placed.service,
            &placed.hosts,
            READY_DEADLINE,
        )
        .await?;
        let ready = provisioned.elapsed();
        let load_client = load::load_client()?;
        let result = load::run(
            &load_client,
            vec![scenario.stream(&placed.invoke_url, options.duration)],
            &LoadOptions::default(),
        )
        .await?;
        Ok((ready, result.summary(SETTLE)))
    }
    .await;
    federation.stop().await?;
    outcome
}

/// Writes `offload.json` and `offload.md` into `dir`.
pub fn write_report(report: &OffloadBenchReport, dir: &Path) -> anyhow::Result<()> {
    crate::bench::write_results(dir, "offload", report, &report.markdown())
}

/// Requests served per node of a summary, with 0 for hosts that served none.
pub fn served_per_host(summary: &LoadSummary, hosts: &[String]) -> BTreeMap<String, u64> {
    hosts
        .iter()
        .map(|h| (h.clone(), summary.served_by.get(h).copied().unwrap_or(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Outcome, RequestRecord, summarise};
    use measure::markdown::squeeze_spaces;

    #[test]
    fn the_demo_scenario_has_dfaas_capacities_and_enough_in_aggregate() {
        let s = Scenario::dfaas_demo(200);
        let caps: Vec<(String, u64, f64)> = s
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.max_concurrency, h.capacity))
            .collect();
        assert_eq!(
            caps,
            [
                ("n1".to_string(), 2, 10.0),
                ("n2".to_string(), 5, 25.0),
                ("n3".to_string(), 5, 25.0)
            ]
        );
        assert_eq!(s.aggregate_capacity(), 60.0);
        assert!(s.aggregate_capacity() >= s.rate);
        let i = Scenario::issue_48(200);
        assert_eq!(i.hosts[0].max_concurrency, 20);
        assert_eq!(i.aggregate_capacity(), 200.0);
        assert_eq!(i.rate, 110.0);
        // Capacity is rounded to whole calls in flight, at least one.
        assert_eq!(Scenario::host("x", 1.0, 100).max_concurrency, 1);
        assert_eq!(Scenario::host("x", 1.0, 100).capacity, 10.0);
        assert!(Scenario::named("tornado", 200).is_err());
    }

    #[test]
    fn the_scenario_topology_is_a_star_of_the_hosts_with_their_offload_tables() {
        let s = Scenario::dfaas_demo(200);
        let t = s.topology("recalc").unwrap();
        assert_eq!(t.nodes().len(), 3);
        assert_eq!(
            t.roots().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n2"]
        );
        assert_eq!(t.node("n1").unwrap().parent.as_deref(), Some("n2"));
        assert_eq!(t.node("n3").unwrap().parent.as_deref(), Some("n2"));
        let o = t.node("n1").unwrap().offload.as_ref().unwrap();
        assert_eq!(o["strategy"].as_str(), Some("recalc"));
        assert_eq!(o["max_concurrency"].as_integer(), Some(2));
        assert_eq!(o["max_rates"]["echo"].as_float(), Some(10.0));
        let o = t.node("n3").unwrap().offload.as_ref().unwrap();
        assert_eq!(o["max_concurrency"].as_integer(), Some(5));
        assert!(s.topology("greedy").is_err());
        let t = Scenario::issue_48(200).topology("lease").unwrap();
        assert_eq!(t.nodes().len(), 2);
        assert_eq!(t.node("n1").unwrap().parent.as_deref(), Some("n2"));
    }

    #[test]
    fn the_stream_targets_the_hot_node_with_the_delay() {
        let s = Scenario::dfaas_demo(200);
        let st = s.stream(
            "http://127.0.0.1:1/function/fogfn-x",
            Duration::from_secs(30),
        );
        assert_eq!(st.url, "http://127.0.0.1:1/function/fogfn-x?delay_ms=200");
        assert_eq!(st.label, "n1");
        assert_eq!(st.schedule.offsets().len(), 1500);
        assert_eq!(with_delay("http://h/f?a=1", 5), "http://h/f?a=1&delay_ms=5");
    }

    #[test]
    fn offload_state_is_read_for_one_service_and_its_alive_peers() {
        let state = json!({
            "strategy": "lease",
            "version": 7,
            "functions": [
                {"service": "fogfn-a", "peers": [{"name": "n2", "alive": true}]},
                {"service": "fogfn-b", "peers": [
                    {"name": "n2", "alive": true},
                    {"name": "n3", "alive": false}
                ]}
            ]
        });
        let b = offload_entry(&state, "fogfn-b").unwrap();
        assert_eq!(alive_peers(b), BTreeSet::from(["n2".to_string()]));
        assert!(offload_entry(&state, "fogfn-c").is_none());
        assert!(offload_entry(&json!({}), "fogfn-a").is_none());
        let bare = json!([{"service": "fogfn-a"}]);
        assert!(alive_peers(offload_entry(&bare, "fogfn-a").unwrap()).is_empty());
    }

    #[test]
    fn the_report_tables_show_each_strategy_and_whether_the_aim_is_met() {
        let rec = |ms: u64, ok: bool, by: &str| RequestRecord {
            stream: 0,
            scheduled: Duration::from_millis(ms),
            sent: Some(Duration::from_millis(ms)),
            outcome: if ok {
                Outcome::Status(200)
            } else {
                Outcome::Status(429)
            },
            latency: Some(Duration::from_millis(200)),
            served_by: Some(by.to_string()),
            path: None,
            decision: None,
            reject_reason: (!ok).then(|| "overloaded".to_string()),
        };
        let good = summarise(
            &[
                rec(0, false, "n1"),
                rec(1000, true, "n1"),
                rec(1500, true, "n2"),
            ],
            SETTLE,
        );
        let bad = summarise(&[rec(0, true, "n1"), rec(1000, false, "n1")], SETTLE);
        let runs = vec![
            OffloadRun {
                scenario: "demo".into(),
                strategy: "lease".into(),
                ready_after_s: Some(0.5),
                summary: Some(good),
                error: None,
            },
            OffloadRun {
                scenario: "demo".into(),
                strategy: "static".into(),
                ready_after_s: Some(0.5),
                summary: Some(bad),
                error: None,
            },
            OffloadRun {
                scenario: "demo".into(),
                strategy: "recalc".into(),
                ready_after_s: None,
                summary: None,
                error: Some("the federation did not start\nmore".into()),
            },
        ];
        assert_eq!(runs[0].aim_met(), Some(true));
        assert_eq!(runs[1].aim_met(), Some(false));
        assert_eq!(runs[2].aim_met(), None);
        let report = OffloadBenchReport {
            benchmark: "offload",
            machine: Machine::detect(),
            commit: None,
            started_at_unix_ms: 0,
            duration_s: 30.0,
            settle_s: 1.0,
            aim: AIM,
            load_average_before: None,
            load_average_after: None,
            scenarios: vec![Scenario::dfaas_demo(200)],
            runs,
        };
        let dir = tempfile::tempdir().unwrap();
        write_report(&report, dir.path()).unwrap();
        let md = squeeze_spaces(&std::fs::read_to_string(dir.path().join("offload.md")).unwrap());
        assert!(
            md.contains(
                "| lease | 66.7 % | 100.0 % | 100.0 % | 1 / 1 / 0 | 429: 1, overloaded: 1 |"
            ),
            "{md}"
        );
        assert!(md.contains("| static | 50.0 % | 0.0 % | 0.0 % |"), "{md}");
        assert!(
            md.contains("| recalc | failed: the federation did not start |"),
            "{md}"
        );
        assert!(md.contains("- lease: 0 100"), "{md}");
        assert!(md.contains("aggregate 60 req/s"), "{md}");
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("offload.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["runs"][0]["summary"]["served_by"]["n2"], 1);
        assert_eq!(json["scenarios"][0]["hosts"][0]["capacity"], 10.0);
    }
}
