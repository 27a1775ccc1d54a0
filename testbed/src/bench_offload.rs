//! The offload benchmark: load scenarios run against a real federation (the marketplace and fog
//! nodes on loopback, the tree's link latencies emulated) once per offloading strategy.
//!
//! The scenarios are [`model::offload::scenario`]'s, which the simulator runs too
//! (`simulator offload`): hosts with capacities, a tree (each host's parent and link latency)
//! and loads at access nodes, one rate per second.
//!
//! - **demo** (DFaaS CloudNet'21 demo): node `n1` receives 50 req/s while it sustains about
//!   10 req/s, `n2` and `n3` about 25 req/s each.
//! - **issue48** (DFaaS's overload of two nodes): two nodes sustaining 100 req/s each,
//!   110 req/s at `n1`.
//! - **hot3**: three neighbouring nodes of six overloaded together (1.5 × their capacity).
//! - **burst**: 2-s bursts of 3 × a node's capacity every 6 s on a base load.
//! - **far**: a hot node whose only large spare capacity is 3 hops (45 ms) away, its nearby
//!   peers 90 % busy.
//! - **shift**: a load of 2 × a node's capacity that moves to another access node every 4 s.
//!
//! Every scenario has enough capacity in aggregate at every second. All hosts run the same
//! `echo` function (one SLA with `nodes` = the number of hosts, so the hosts are the winners;
//! the first load's node is the SLA's target). A node's capacity is `max_concurrency` calls in
//! flight (its `[offload]`) over echo's fixed delay (`?delay_ms=`), also given as `max_rates`
//! so every strategy knows it from the start. Each run starts a fresh federation with every
//! node on one strategy (`static`, `recalc`, `node_margin`, `lease`), places the function with
//! provisioning, waits until every host lists its peers alive (`GET /api/offload`), then sends
//! each load open-loop ([`crate::load`]) to its node's data plane. Results go to
//! `offload.json` and `offload.md`: success overall, from the second second on, the worst
//! second after the first, requests served per node, latency percentiles and the aims (at
//! least 99 % success in every second from the second on; p95 latency at most 3 × echo's
//! delay).

use crate::bench::{Machine, commit_hash};
use crate::bench_faas::ECHO_IMAGE;
use crate::bench_proxy::load_average;
use crate::launcher::{Federation, LaunchOptions, http_client};
use crate::load::{self, LoadOptions, LoadSummary, Schedule, Stream};
use crate::poll::{Check, poll};
use crate::topology::{OFFLOAD_STRATEGIES, Topology};
use anyhow::{Context, anyhow, bail};
use measure::markdown::{MarkdownTable, left, right};
use model::offload::scenario::{
    AimCheck, LATENCY_AIM_FACTOR, LoadScenario, SUCCESS_AIM, ScenarioHost, ScenarioLoad,
    latency_aim_ms, sized,
};
use model::units::Latency;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

pub use model::offload::scenario::{SCENARIOS, SETTLE};

/// The success aim: from the second second on, in every second, where aggregate capacity
/// suffices.
pub const AIM: f64 = SUCCESS_AIM;
/// How long the hosts may take to list their peers alive after provisioning.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct OffloadBenchOptions {
    /// Load per run.
    pub duration: Duration,
    /// Strategies to compare (each a fresh federation per scenario).
    pub strategies: Vec<String>,
    /// Scenarios: names of [`SCENARIOS`].
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
    /// Its parent in the tree; `None` for the root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// One-way latency of the link to the parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// A load scenario: hosts with capacities in a tree, and loads at access nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub delay_ms: u64,
    /// In tree order of the scenario; exactly one host has no parent.
    pub hosts: Vec<HostSpec>,
    /// Requests arriving at hosts, one rate per second, the cycle repeated for the run.
    pub loads: Vec<ScenarioLoad>,
}

impl HostSpec {
    /// A root host sustaining about `capacity` req/s when echo is delayed `delay_ms`: the
    /// nearest whole number of calls in flight (at least one), and the capacity that gives.
    pub fn with_capacity(name: &str, capacity: f64, delay_ms: u64) -> HostSpec {
        let (calls, capacity) = sized(capacity, Duration::from_millis(delay_ms.max(1)));
        HostSpec {
            name: name.to_string(),
            max_concurrency: u64::from(calls),
            capacity,
            parent: None,
            latency: None,
        }
    }

    /// The same host below `parent` over a link of `latency` (one way).
    pub fn below(mut self, parent: &str, latency: Latency) -> HostSpec {
        self.parent = Some(parent.to_string());
        self.latency = Some(latency);
        self
    }
}

impl Scenario {
    /// `spec` with echo delayed `delay_ms`; refused (naming the field) when its shape is not a
    /// tree of hosts with loads at them.
    pub fn from_spec(spec: &LoadScenario, delay_ms: u64) -> anyhow::Result<Scenario> {
        spec.validate()
            .map_err(|e| anyhow!("scenario `{}`: {e}", spec.name))?;
        Ok(Scenario {
            name: spec.name.clone(),
            description: spec.description.clone(),
            delay_ms,
            hosts: spec
                .hosts
                .iter()
                .map(|h| {
                    let host = HostSpec::with_capacity(&h.name, h.capacity, delay_ms);
                    match &h.parent {
                        Some(p) => host.below(p, h.latency),
                        None => host,
                    }
                })
                .collect(),
            loads: spec.loads.clone(),
        })
    }

    /// DFaaS CloudNet'21 demo: 50 req/s at a node sustaining ~10, two peers with ~25 each.
    pub fn dfaas_demo(delay_ms: u64) -> Scenario {
        Self::from_spec(&LoadScenario::dfaas_demo(), delay_ms)
            .expect("the demo scenario is a valid tree")
    }

    /// DFaaS's `issue48`: two nodes sustaining 100 req/s each, 110 req/s at one.
    pub fn issue_48(delay_ms: u64) -> Scenario {
        Self::from_spec(&LoadScenario::dfaas_overload_of_two(), delay_ms)
            .expect("the issue48 scenario is a valid tree")
    }

    /// One of [`SCENARIOS`]: `demo`, `issue48`, `hot3`, `burst`, `far`, `shift`.
    pub fn named(name: &str, delay_ms: u64) -> anyhow::Result<Scenario> {
        let spec = LoadScenario::named(name).map_err(|e| anyhow!("{e}"))?;
        Self::from_spec(&spec, delay_ms)
    }

    /// echo's execution time.
    pub fn exec(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// The SLA's target node (its `invokeUrl` is this node's): the first load's node.
    pub fn target(&self) -> &str {
        self.loads
            .first()
            .map(|l| l.node.as_str())
            .or(self.hosts.first().map(|h| h.name.as_str()))
            .unwrap_or_default()
    }

    /// Requests per second all hosts sustain together.
    pub fn aggregate_capacity(&self) -> f64 {
        self.hosts.iter().map(|h| h.capacity).sum()
    }

    /// The scenario as `model` describes it, with the capacities rounded to whole calls.
    pub fn spec(&self) -> LoadScenario {
        LoadScenario {
            name: self.name.clone(),
            description: self.description.clone(),
            hosts: self
                .hosts
                .iter()
                .map(|h| ScenarioHost {
                    name: h.name.clone(),
                    capacity: h.capacity,
                    parent: h.parent.clone(),
                    latency: h.latency.unwrap_or_default(),
                })
                .collect(),
            loads: self.loads.clone(),
        }
    }

    /// The highest demand in any second, req/s.
    pub fn peak_demand(&self) -> f64 {
        let spec = self.spec();
        (0..spec.period())
            .map(|s| spec.demand_at(s))
            .fold(0.0, f64::max)
    }

    /// The federation: only the hosts, in the scenario's tree, every node on `strategy` with
    /// its own capacity for echo. An SLA with `nodes = hosts.len()` then has exactly these
    /// winners.
    pub fn topology(&self, strategy: &str) -> anyhow::Result<Topology> {
        if self.hosts.is_empty() {
            bail!(
                "scenario `{}`: hosts: a scenario needs at least one host",
                self.name
            );
        }
        let mut text =
            String::from("[marketplace]\nauction_rule = \"vickrey\"\nauction_timeout_ms = 2000\n");
        for h in &self.hosts {
            text.push_str(&format!(
                "\n[[node]]\nname = \"{}\"\nowner = \"owner-{}\"\ncpu = \"4 cpu\"\nmemory = \"8 GiB\"\n\
                 pricing = {{ model = \"quadratic\", aa = 0.01, bb = 0.1, electricity = 0.9 }}\n\
                 offload = {{ strategy = \"{strategy}\", max_concurrency = {}, max_rates = {{ echo = {:?} }} }}\n",
                h.name, h.name, h.max_concurrency, h.capacity
            ));
            if let Some(parent) = &h.parent {
                let latency = h.latency.unwrap_or_default();
                text.push_str(&format!("parent = \"{parent}\"\nlatency = \"{latency}\"\n"));
            }
        }
        Topology::parse(&text).with_context(|| format!("scenario `{}`: topology", self.name))
    }

    /// The loads for `duration`, each to its node's data plane (`url_of(node)`, the function's
    /// URL there) with echo's delay: a constant load at its rate, a changing one at one rate
    /// per second for the whole seconds of `duration` (rounded up).
    pub fn streams(
        &self,
        url_of: impl Fn(&str) -> anyhow::Result<String>,
        duration: Duration,
    ) -> anyhow::Result<Vec<Stream>> {
        self.loads
            .iter()
            .map(|l| {
                let url = url_of(&l.node)?;
                let schedule = match l.cycle.as_slice() {
                    [rate] => Schedule::Constant {
                        rate: *rate,
                        duration,
                    },
                    _ => Schedule::PerSecond(l.rates(LoadScenario::seconds(duration))),
                };
                Ok(Stream::post(
                    l.node.clone(),
                    with_delay(&url, self.delay_ms),
                    "fog",
                    schedule,
                ))
            })
            .collect()
    }

    /// The loads in words: `50 req/s at n1`, or each second's rate of a cycle.
    pub fn loads_text(&self) -> String {
        self.loads
            .iter()
            .map(|l| {
                if l.is_constant() {
                    format!("{} req/s at {}", l.rate_at(0), l.node)
                } else {
                    format!(
                        "{} req/s at {} (one rate per second, every {} s)",
                        l.cycle
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        l.node,
                        l.cycle.len()
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
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
    /// The aims, judged on `summary` (`None` when the run failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aims: Option<AimCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The aims of a load whose function takes `exec`: the worst second from [`SETTLE`] on
/// against [`AIM`], the settled p95 against [`LATENCY_AIM_FACTOR`] × `exec`.
pub fn aims_of(summary: &LoadSummary, exec: Duration) -> AimCheck {
    let latency = &summary.settled_latency;
    AimCheck::of(
        summary.settled_min_second_success,
        (latency.samples > 0).then_some(latency.p95_ms),
        exec,
    )
}

impl OffloadRun {
    /// A completed run of `strategy` on `scenario`, its aims judged.
    pub fn measured(
        scenario: &Scenario,
        strategy: &str,
        ready: Duration,
        summary: LoadSummary,
    ) -> OffloadRun {
        OffloadRun {
            scenario: scenario.name.clone(),
            strategy: strategy.to_string(),
            ready_after_s: Some(ready.as_secs_f64()),
            aims: Some(aims_of(&summary, scenario.exec())),
            summary: Some(summary),
            error: None,
        }
    }

    /// A run of `strategy` on `scenario` that failed with `error`.
    pub fn failed(scenario: &Scenario, strategy: &str, error: String) -> OffloadRun {
        OffloadRun {
            scenario: scenario.name.clone(),
            strategy: strategy.to_string(),
            ready_after_s: None,
            summary: None,
            aims: None,
            error: Some(error),
        }
    }

    /// Whether both aims were met (`None` when the run failed).
    pub fn aim_met(&self) -> Option<bool> {
        self.aims.map(|a| a.met())
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
    /// The p95 latency aim, as a multiple of echo's delay.
    pub latency_aim_factor: f64,
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

/// `ms` of `latency` with one decimal, `-` when it has no sample.
fn latency_ms(latency: &crate::load::LoadLatency, ms: f64) -> String {
    if latency.samples == 0 {
        "-".to_string()
    } else {
        format!("{ms:.1}")
    }
}

fn met(x: Option<bool>) -> &'static str {
    match x {
        Some(true) => "met",
        Some(false) => "not met",
        None => "-",
    }
}

impl OffloadBenchReport {
    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Offload benchmark\n\n");
        s.push_str(&format!(
            "Open-loop load ({:.0} s per run, requests never wait for answers) at each load's access node (the SLA's target node's `invokeUrl`, the function's URL on the other hosts' data plane); a fresh federation (marketplace + fog nodes + their embedded gateways, loopback, the tree's link latencies emulated) per run, every node on the strategy of the row; commit {}, on {} ({}, {} cores shared by every process and the load generator; 1-minute load average before / after: {} / {}).\n\n",
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
            "Aims, where aggregate capacity suffices at every second: at least {} success in every second from second {:.0} on, and a 95th percentile latency from second {:.0} on of at most {:.0} × echo's delay. \
             DFaaS reference (`../shared/reference/dfaas.md`): in the CloudNet'21 demo ~40 of 50 req/s fail with 503 until the first recalculation (1 min), later spikes at each HAProxy reload; their simulator's minimum success with Recalc is 0.945; in `issue48` (110 req/s on 2 × 100) forwarding happens \"only in a limited way\".\n",
            pct(self.aim),
            self.settle_s,
            self.settle_s,
            self.latency_aim_factor,
        ));
        for sc in &self.scenarios {
            let hosts = sc
                .hosts
                .iter()
                .map(|h| {
                    let place = match (&h.parent, h.latency) {
                        (Some(p), Some(l)) => format!("below {p} over {l}"),
                        (Some(p), None) => format!("below {p}"),
                        (None, _) => "root".to_string(),
                    };
                    format!(
                        "{} {:.0} req/s (max_concurrency {}, {place})",
                        h.name, h.capacity, h.max_concurrency
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let aggregate = sc.aggregate_capacity();
            let peak = sc.peak_demand();
            s.push_str(&format!(
                "\n## {} (`{}`)\n\nHosts with echo delayed {} ms: {hosts}; aggregate {:.0} req/s.\n\nLoads: {}; at most {:.0} req/s in any second ({:.0} % of the aggregate capacity).\n\n",
                sc.description,
                sc.name,
                sc.delay_ms,
                aggregate,
                sc.loads_text(),
                peak,
                100.0 * peak / aggregate.max(f64::MIN_POSITIVE),
            ));
            let names: Vec<&str> = sc.hosts.iter().map(|h| h.name.as_str()).collect();
            let settle = self.settle_s;
            let latency_aim = latency_aim_ms(sc.exec());
            let mut table = MarkdownTable::new([
                left("strategy"),
                right("success"),
                right(format!("from s{settle:.0}")),
                right(format!("worst second from s{settle:.0}")),
                left(format!("served {}", names.join(" / "))),
                left("failures"),
                right("p50 ms"),
                right("p95 ms"),
                right("p99 ms"),
                right(format!("p95 ms from s{settle:.0}")),
                right(format!("p99 ms from s{settle:.0}")),
                left(format!("≥ {} every second", pct(self.aim))),
                left(format!("p95 ≤ {latency_aim:.0} ms")),
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
                let aims = r.aims.unwrap_or(AimCheck {
                    success_every_second: None,
                    p95_latency: None,
                });
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
                    latency_ms(&sum.latency, sum.latency.p50_ms),
                    latency_ms(&sum.latency, sum.latency.p95_ms),
                    latency_ms(&sum.latency, sum.latency.p99_ms),
                    latency_ms(&sum.settled_latency, sum.settled_latency.p95_ms),
                    latency_ms(&sum.settled_latency, sum.settled_latency.p99_ms),
                    met(aims.success_every_second).to_string(),
                    met(aims.p95_latency).to_string(),
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
                "{} with {strategy}: {} for {:?}",
                scenario.name,
                scenario.loads_text(),
                options.duration
            );
            let dir = tmp.path().join(format!("{}-{strategy}", scenario.name));
            let run = match run_one(scenario, strategy, options, &dir).await {
                Ok((ready, summary)) => {
                    let run = OffloadRun::measured(scenario, strategy, ready, summary);
                    if let Some(summary) = &run.summary {
                        eprintln!(
                            "  success {} (from s1 {}, worst second {}), p95 from s1 {:.0} ms, served {:?}",
                            pct(summary.success_rate),
                            opt_pct(summary.settled_success_rate),
                            opt_pct(summary.settled_min_second_success),
                            summary.settled_latency.p95_ms,
                            summary.served_by
                        );
                    }
                    run
                }
                Err(e) => {
                    eprintln!("  failed: {e:#}");
                    any_failed = true;
                    OffloadRun::failed(scenario, strategy, format!("{e:#}"))
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
        latency_aim_factor: LATENCY_AIM_FACTOR,
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
    // Forwards cross the tree's links: a far peer is as far as the scenario says.
    launch.emulate_links = true;
    let federation = Federation::start(topology, launch)
        .await
        .context("the federation did not start")?;
    let outcome = async {
        let client = http_client();
        let placed = place_function(
            &client,
            &federation.marketplace_url(),
            echo_sla(scenario.hosts.len()),
            scenario.target(),
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
        let target = scenario.target();
        let streams = scenario.streams(
            |node| {
                if node == target {
                    return Ok(placed.invoke_url.clone());
                }
                let url = federation
                    .node_url(node)
                    .with_context(|| format!("no node `{node}` in the federation"))?;
                Ok(format!("{url}/function/{}", placed.service))
            },
            options.duration,
        )?;
        let load_client = load::load_client()?;
        let result = load::run(&load_client, streams, &LoadOptions::default()).await?;
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

    fn ms(n: u64) -> Latency {
        Latency::from_millis(n)
    }

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
        assert_eq!(s.peak_demand(), 50.0);
        assert_eq!(s.target(), "n1");
        assert_eq!(s.loads_text(), "50 req/s at n1");
        let i = Scenario::issue_48(200);
        assert_eq!(i.hosts[0].max_concurrency, 20);
        assert_eq!(i.aggregate_capacity(), 200.0);
        assert_eq!(i.peak_demand(), 110.0);
        // Capacity is rounded to whole calls in flight, at least one.
        assert_eq!(HostSpec::with_capacity("x", 1.0, 100).max_concurrency, 1);
        assert_eq!(HostSpec::with_capacity("x", 1.0, 100).capacity, 10.0);
        let err = Scenario::named("tornado", 200).unwrap_err().to_string();
        assert!(
            err.contains("scenario") && err.contains("hot3, burst, far, shift"),
            "{err}"
        );
    }

    #[test]
    fn every_named_scenario_has_enough_capacity_in_aggregate_at_every_second() {
        for name in SCENARIOS {
            let s = Scenario::named(name, 200).unwrap();
            assert_eq!(&s.name, name);
            assert!(!s.description.is_empty());
            let spec = s.spec();
            for second in 0..2 * spec.period() {
                assert!(
                    spec.demand_at(second) <= s.aggregate_capacity(),
                    "{name}, second {second}"
                );
            }
            assert!(s.peak_demand() <= 0.9 * s.aggregate_capacity(), "{name}");
            // Every load is at a host, and the target is a host.
            for l in &s.loads {
                assert!(s.hosts.iter().any(|h| h.name == l.node), "{name}: {l:?}");
            }
            assert!(s.hosts.iter().any(|h| h.name == s.target()));
        }
    }

    #[test]
    fn the_scenario_topology_is_the_scenarios_tree_with_the_offload_tables() {
        let s = Scenario::dfaas_demo(200);
        let t = s.topology("recalc").unwrap();
        assert_eq!(t.nodes().len(), 3);
        assert_eq!(
            t.roots().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n2"]
        );
        assert_eq!(t.node("n1").unwrap().parent.as_deref(), Some("n2"));
        assert_eq!(t.node("n3").unwrap().parent.as_deref(), Some("n2"));
        assert_eq!(t.node("n1").unwrap().latency, Some(ms(2)));
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

        // hot3: a tree two levels deep; its paths are the scenario's.
        let hot3 = Scenario::named("hot3", 200).unwrap();
        let t = hot3.topology("lease").unwrap();
        assert_eq!(t.nodes().len(), 6);
        assert_eq!(t.node("n4").unwrap().parent.as_deref(), Some("n2"));
        assert_eq!(t.node("n6").unwrap().parent.as_deref(), Some("n3"));
        assert_eq!(t.path_latency("n4", "n6"), Some(ms(20)));
        // far: the chain n5 – n1 – n2 – n3 – n4, n4 45 ms from n1.
        let far = Scenario::named("far", 200).unwrap();
        let t = far.topology("lease").unwrap();
        assert_eq!(
            t.roots().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n4"]
        );
        assert_eq!(t.path_latency("n1", "n4"), Some(ms(45)));
        assert_eq!(t.path_latency("n5", "n4"), Some(ms(55)));
        let spec = far.spec();
        for a in &far.hosts {
            for b in &far.hosts {
                assert_eq!(
                    t.path_latency(&a.name, &b.name).map(|l| l.as_duration()),
                    spec.path_latency(&a.name, &b.name),
                    "{} to {}",
                    a.name,
                    b.name
                );
            }
        }
        let o = t.node("n4").unwrap().offload.as_ref().unwrap();
        assert_eq!(o["max_concurrency"].as_integer(), Some(8));
    }

    #[test]
    fn each_load_becomes_a_stream_to_its_nodes_data_plane_with_the_delay() {
        let url_of = |node: &str| Ok(format!("http://{node}.test/function/fogfn-x"));
        let demo = Scenario::dfaas_demo(200);
        let st = demo.streams(url_of, Duration::from_secs(30)).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].url, "http://n1.test/function/fogfn-x?delay_ms=200");
        assert_eq!(st[0].label, "n1");
        assert_eq!(st[0].schedule.offsets().len(), 1500);
        assert_eq!(with_delay("http://h/f?a=1", 5), "http://h/f?a=1&delay_ms=5");

        // burst: one stream per load; n1's follows its 6-s cycle second by second.
        let burst = Scenario::named("burst", 200).unwrap();
        let st = burst.streams(url_of, Duration::from_secs(12)).unwrap();
        assert_eq!(
            st.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(),
            ["n1", "n2", "n3", "n4", "n5"]
        );
        assert_eq!(
            st[0].schedule,
            Schedule::PerSecond(vec![
                10.0, 10.0, 60.0, 60.0, 10.0, 10.0, 10.0, 10.0, 60.0, 60.0, 10.0, 10.0
            ])
        );
        let in_second = |s: &Stream, second: u64| {
            s.schedule
                .offsets()
                .iter()
                .filter(|o| o.as_secs() == second)
                .count()
        };
        assert_eq!(in_second(&st[0], 2), 60);
        assert_eq!(in_second(&st[0], 4), 10);
        assert_eq!(st[3].url, "http://n4.test/function/fogfn-x?delay_ms=200");
        assert_eq!(st[3].schedule.offsets().len(), 60);
        // A run that does not end on a whole second takes the whole last second.
        let st = burst.streams(url_of, Duration::from_millis(2500)).unwrap();
        assert_eq!(st[0].schedule, Schedule::PerSecond(vec![10.0, 10.0, 60.0]));

        // shift: the 40 req/s load is at n2 in seconds 4 to 7.
        let shift = Scenario::named("shift", 200).unwrap();
        let st = shift.streams(url_of, Duration::from_secs(16)).unwrap();
        assert_eq!(in_second(&st[1], 3), 5);
        assert_eq!(in_second(&st[1], 5), 40);
        assert_eq!(in_second(&st[0], 5), 5);
        assert!(
            shift
                .loads_text()
                .starts_with("40, 40, 40, 40, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5 req/s at n1 (one rate per second, every 16 s)")
        );

        // A node without a URL fails the streams, naming it.
        let err = burst
            .streams(|n| bail!("no node `{n}`"), Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("n1"), "{err}");
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

    fn rec(ms: u64, ok: bool, by: &str, latency_ms: u64) -> RequestRecord {
        RequestRecord {
            stream: 0,
            scheduled: Duration::from_millis(ms),
            sent: Some(Duration::from_millis(ms)),
            outcome: if ok {
                Outcome::Status(200)
            } else {
                Outcome::Status(429)
            },
            latency: Some(Duration::from_millis(latency_ms)),
            served_by: Some(by.to_string()),
            path: None,
            decision: None,
            reject_reason: (!ok).then(|| "overloaded".to_string()),
        }
    }

    #[test]
    fn the_aims_judge_the_worst_settled_second_and_the_settled_p95_against_three_times_echos_delay()
    {
        let exec = Duration::from_millis(200);
        // 100 successes from second 1 on: 95 at 300 ms, 5 at 2 s: p95 is 300 ms.
        let mut records: Vec<RequestRecord> = (0..100)
            .map(|i| rec(1000 + i * 10, true, "n1", if i < 95 { 300 } else { 2000 }))
            .collect();
        // Second 0 is not judged: a failure and a slow answer there change nothing.
        records.push(rec(0, false, "n1", 0));
        records.push(rec(10, true, "n1", 9000));
        let s = summarise(&records, SETTLE);
        assert!(
            (s.settled_latency.p95_ms - 300.0).abs() < 0.5,
            "{:?}",
            s.settled_latency
        );
        let a = aims_of(&s, exec);
        assert_eq!(a.success_every_second, Some(true));
        assert_eq!(a.p95_latency, Some(true));
        // Six slow answers of 100: p95 is 2 s, above 600 ms.
        records[94].latency = Some(Duration::from_millis(2000));
        let a = aims_of(&summarise(&records, SETTLE), exec);
        assert_eq!(a.p95_latency, Some(false));
        // One failure among the 100 of second 1 is 99 %: met; two are not.
        records[3].outcome = Outcome::Status(429);
        let a = aims_of(&summarise(&records, SETTLE), exec);
        assert_eq!(a.success_every_second, Some(true));
        records[4].outcome = Outcome::Status(429);
        let a = aims_of(&summarise(&records, SETTLE), exec);
        assert_eq!(a.success_every_second, Some(false));
        // Nothing settled to judge.
        let early = summarise(&[rec(0, true, "n1", 100)], SETTLE);
        let a = aims_of(&early, exec);
        assert_eq!((a.success_every_second, a.p95_latency), (None, None));
    }

    #[test]
    fn the_report_tables_show_each_strategy_its_percentiles_and_whether_the_aims_are_met() {
        let demo = Scenario::dfaas_demo(200);
        let good = summarise(
            &[
                rec(0, false, "n1", 200),
                rec(1000, true, "n1", 200),
                rec(1500, true, "n2", 210),
            ],
            SETTLE,
        );
        let bad = summarise(
            &[rec(0, true, "n1", 200), rec(1000, false, "n1", 200)],
            SETTLE,
        );
        let slow = summarise(&[rec(1000, true, "n1", 900)], SETTLE);
        let runs = vec![
            OffloadRun::measured(&demo, "lease", Duration::from_millis(500), good),
            OffloadRun::measured(&demo, "static", Duration::from_millis(500), bad),
            OffloadRun::failed(&demo, "recalc", "the federation did not start\nmore".into()),
            OffloadRun::measured(&demo, "node_margin", Duration::from_millis(500), slow),
        ];
        assert_eq!(runs[0].aim_met(), Some(true));
        assert_eq!(runs[1].aim_met(), Some(false));
        assert_eq!(runs[2].aim_met(), None);
        assert_eq!(runs[3].aim_met(), Some(false));
        let report = OffloadBenchReport {
            benchmark: "offload",
            machine: Machine::detect(),
            commit: None,
            started_at_unix_ms: 0,
            duration_s: 30.0,
            settle_s: 1.0,
            aim: AIM,
            latency_aim_factor: LATENCY_AIM_FACTOR,
            load_average_before: None,
            load_average_after: None,
            scenarios: vec![demo, Scenario::named("far", 200).unwrap()],
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
        assert!(md.contains("| 210.0 | 210.0 | 210.0 | met | met |"), "{md}");
        assert!(md.contains("| static | 50.0 % | 0.0 % | 0.0 % |"), "{md}");
        // No settled success: no settled percentiles and no latency verdict.
        assert!(md.contains("| - | - | not met | - |"), "{md}");
        assert!(
            md.contains("| recalc | failed: the federation did not start |"),
            "{md}"
        );
        assert!(md.contains("| 900.1 | 900.1 | met | not met |"), "{md}");
        assert!(
            md.contains(
                "| p95 ms from s1 | p99 ms from s1 | ≥ 99.0 % every second | p95 ≤ 600 ms |"
            ),
            "{md}"
        );
        assert!(md.contains("- lease: 0 100"), "{md}");
        assert!(md.contains("aggregate 60 req/s"), "{md}");
        assert!(md.contains("Loads: 50 req/s at n1; at most 50 req/s in any second (83 % of the aggregate capacity)"), "{md}");
        assert!(
            md.contains("n1 10 req/s (max_concurrency 2, below n2 over 2 ms)"),
            "{md}"
        );
        assert!(
            md.contains("## A hot node whose spare capacity is 3 hops (45 ms) away (`far`)"),
            "{md}"
        );
        assert!(md.contains("n4 40 req/s (max_concurrency 8, root)"), "{md}");
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("offload.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["runs"][0]["summary"]["served_by"]["n2"], 1);
        assert_eq!(json["runs"][0]["aims"]["success_every_second"], true);
        assert_eq!(json["runs"][3]["aims"]["p95_latency"], false);
        let p95 = json["runs"][3]["summary"]["settled_latency"]["p95_ms"]
            .as_f64()
            .unwrap();
        assert!((p95 - 900.0).abs() < 1.0, "{p95}");
        assert!(json["runs"][2].get("aims").is_none());
        assert_eq!(json["latency_aim_factor"], 3.0);
        assert_eq!(json["scenarios"][0]["hosts"][0]["capacity"], 10.0);
        assert_eq!(json["scenarios"][0]["hosts"][0]["parent"], "n2");
        assert_eq!(json["scenarios"][0]["hosts"][0]["latency"], "2 ms");
        assert_eq!(json["scenarios"][1]["loads"][0]["cycle"][0], 30.0);
    }
}
