//! The FaaS benchmark: the embedded gateway (`faas-gateway`) running `fn-echo` as local
//! processes.
//!
//! 1. **Cold start**: `cold_starts` times, deploy `echo-cold-<i>` (one replica) and invoke it
//!    in a tight loop until the first 200; the time from sending the deploy to that 200 is one
//!    sample; then delete the function.
//! 2. **Gateway overhead**: deploy `echo` with exactly one replica (`scale.min` = `scale.max` =
//!    1), then run the same closed loop (`concurrency` workers, 1 s warm-up discarded, then
//!    `duration`) first straight at the replica's port, then at `/function/echo` on the gateway.
//! 3. **Memory**: scale `echo` to `idle_replicas` replicas, wait until they are all ready, and
//!    read `VmRSS` of every replica process and of the gateway.
//!
//! Results go to `faas.json` and `faas.md`.

use crate::bench::{LatencySummary, Machine, WorkerResult, closed_loop, commit_hash, load_columns};
use crate::bench_footprint::status_kib;
use crate::launcher::{find_binary, http_client, log_tail, read_until_listening, tie_to_parent};
use crate::poll::{Check, poll};
use anyhow::{Context, anyhow, bail};
use measure::markdown::{MarkdownTable, left, right};
use measure::stats::Latencies;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::process::Child;
use tokio::time::Instant;

/// Name of the gateway binary.
pub const GATEWAY_BIN: &str = "faas-gateway";
/// Name of the benchmarked function's binary (the gateway's catalog must hold it).
pub const ECHO_BIN: &str = "fn-echo";
/// The image the benchmark deploys; the gateway maps it to `fn-echo`.
pub const ECHO_IMAGE: &str = "ghcr.io/fogmarket/echo:latest";
/// Load before each measured phase, discarded.
const WARM_UP: Duration = Duration::from_secs(1);
/// Aim: the median cold start (deploy -> first 200) is under this, in ms.
pub const COLD_START_P50_AIM_MS: f64 = 100.0;
/// Aim: through the gateway, at least this share of the throughput of calling the replica
/// directly.
pub const THROUGHPUT_RATIO_AIM: f64 = 0.8;
/// Deadline for the gateway's listening line, one cold start, readiness and scaling.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a graceful stop of the gateway waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct FaasBenchOptions {
    /// Deploy -> first 200 samples.
    pub cold_starts: usize,
    /// Measured load per target (direct, gateway), after a 1 s warm-up.
    pub duration: Duration,
    pub concurrency: usize,
    /// Size of each request body of the load.
    pub body_bytes: usize,
    /// Replicas whose idle memory is measured.
    pub idle_replicas: usize,
    /// Where `faas.json` and `faas.md` are written.
    pub out: PathBuf,
    /// Where `faas-gateway` and `fn-echo` are (release builds for meaningful numbers); also
    /// the gateway's catalog.
    pub bin_dir: PathBuf,
}

/// Percentiles of a small set of samples (nearest rank, within 0.1 %: see [`measure::stats`]),
/// in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct SampleSummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
}

impl SampleSummary {
    pub fn of(samples_ms: &[f64]) -> Self {
        let latencies = Latencies::from_ms(samples_ms.iter().copied());
        Self {
            samples: samples_ms.len(),
            p50_ms: latencies.quantile_ms(0.5),
            p90_ms: latencies.quantile_ms(0.9),
            p99_ms: latencies.quantile_ms(0.99),
            max_ms: latencies.max_ms(),
            min_ms: latencies.min_ms(),
            mean_ms: latencies.mean_ms(),
        }
    }
}

/// Resident memory (`VmRSS`) of a live process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_kib(&status, "VmRSS").with_context(|| format!("cannot parse {path}"))
}

/// CPU time (user + system, all threads) of a `/proc/<pid>/stat` text, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time a live process has used so far, in milliseconds (`USER_HZ` is 100 on Linux).
pub fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("cannot parse {path}"))?;
    Ok(ticks as f64 * 10.0)
}

/// CPU time used during a measured load, milliseconds (10 ms resolution).
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// This process: the load generator.
    pub load_generator_ms: f64,
    pub gateway_ms: f64,
    pub replica_ms: f64,
}

/// One closed-loop load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests by HTTP status (`transport` for connection errors, `body` for a
    /// wrong or unreadable answer).
    pub failures: BTreeMap<String, u64>,
    /// Measured (after warm-up) wall time, seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput_per_s: f64,
    pub latency: LatencySummary,
    /// CPU time of each process during the measured part.
    pub cpu: CpuUse,
}

/// Memory of the gateway and its replicas.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// `VmRSS` of each idle replica, KiB.
    pub idle_replica_rss_kib: Vec<u64>,
    pub idle_replica_mean_kib: f64,
    pub idle_replica_max_kib: u64,
    /// `VmRSS` of the replica that served the overhead load, read right after it, KiB.
    pub loaded_replica_rss_kib: u64,
    /// `VmRSS` of `faas-gateway` with the idle replicas deployed, KiB.
    pub gateway_rss_kib: u64,
}

/// The benchmark's results (`faas.json`).
#[derive(Debug, Clone, Serialize)]
pub struct FaasBenchReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub started_at_unix_ms: u64,
    pub image: &'static str,
    /// Sending `POST /system/functions` -> the first 200 from `/function/echo-cold-<i>`.
    pub cold_start: SampleSummary,
    /// Sending `POST /system/functions` -> its 202.
    pub cold_start_deploy_ack: SampleSummary,
    pub duration_s: f64,
    pub warm_up_s: f64,
    pub concurrency: usize,
    pub body_bytes: usize,
    /// Straight at the single replica's port.
    pub direct: LoadReport,
    /// Through `/function/echo` on the gateway, to the same single replica.
    pub gateway: LoadReport,
    /// gateway throughput / direct throughput.
    pub throughput_ratio: f64,
    /// gateway p99 / direct p99.
    pub p99_ratio: f64,
    pub memory: MemoryReport,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

impl FaasBenchReport {
    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# FaaS benchmark\n\n");
        s.push_str(&format!(
            "`faas-gateway` running `fn-echo` (`{}`) as local processes; {} cold starts; load {:.0} s per target after a {:.0} s warm-up, concurrency {}, {}-byte bodies; commit {}, on {} ({}, {} cores).\n\n",
            self.image,
            self.cold_start.samples,
            self.duration_s,
            self.warm_up_s,
            self.concurrency,
            self.body_bytes,
            self.commit.as_deref().unwrap_or("unknown"),
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores
        ));
        s.push_str("## Cold start\n\n");
        let mut cold = MarkdownTable::new([
            left("phase"),
            right("samples"),
            right("p50 ms"),
            right("p90 ms"),
            right("p99 ms"),
            right("max ms"),
            right("min ms"),
            right("mean ms"),
        ]);
        for (label, x) in [
            ("deploy -> first 200", &self.cold_start),
            (
                "deploy -> 202 (deploy request only)",
                &self.cold_start_deploy_ack,
            ),
        ] {
            let figures = [x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms, x.min_ms, x.mean_ms];
            cold.row(
                [label.to_string(), x.samples.to_string()]
                    .into_iter()
                    .chain(figures.map(|ms| format!("{ms:.2}"))),
            );
        }
        s.push_str(&cold.render());
        s.push_str("\n## Gateway overhead (one replica)\n\n");
        let mut overhead = MarkdownTable::new(load_columns("target", "requests"));
        for (label, x) in [
            ("direct (replica port)", &self.direct),
            ("gateway `/function/echo`", &self.gateway),
        ] {
            let l = &x.latency;
            overhead.row(
                [
                    label.to_string(),
                    l.requests.to_string(),
                    x.ok.to_string(),
                    x.failed.to_string(),
                    format!("{:.1}", x.throughput_per_s),
                ]
                .into_iter()
                .chain([l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms].map(|ms| format!("{ms:.3}"))),
            );
        }
        s.push_str(&overhead.render());
        s.push_str(&format!(
            "\nGateway / direct: throughput {:.2}x, p99 latency {:.2}x.\n",
            self.throughput_ratio, self.p99_ratio
        ));
        s.push_str(&format!(
            "\nCPU time per successful request (µs; {} cores shared by all three processes):\n\n",
            self.machine.cores
        ));
        let mut cpu = MarkdownTable::new([
            left("target"),
            right("load generator"),
            right("`faas-gateway`"),
            right("`fn-echo`"),
            right("total"),
        ]);
        for (label, x) in [("direct", &self.direct), ("gateway", &self.gateway)] {
            let per = |ms: f64| {
                if x.ok > 0 {
                    ms * 1000.0 / x.ok as f64
                } else {
                    0.0
                }
            };
            let c = &x.cpu;
            let total = c.load_generator_ms + c.gateway_ms + c.replica_ms;
            cpu.row(
                [label.to_string()].into_iter().chain(
                    [c.load_generator_ms, c.gateway_ms, c.replica_ms, total]
                        .map(|ms| format!("{:.1}", per(ms))),
                ),
            );
        }
        s.push_str(&cpu.render());
        for (label, x) in [("direct", &self.direct), ("gateway", &self.gateway)] {
            if !x.failures.is_empty() {
                s.push_str(&format!(
                    "\nFailures ({label}): {}\n",
                    x.failures
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let m = &self.memory;
        s.push_str("\n## Memory (VmRSS)\n\n");
        let mut memory = MarkdownTable::new([
            left("process"),
            right("count"),
            right("mean MiB"),
            right("max MiB"),
        ]);
        let replicas = m.idle_replica_rss_kib.len();
        for (label, count, mean_kib, max_kib) in [
            (
                "idle `fn-echo` replica".to_string(),
                replicas,
                m.idle_replica_mean_kib,
                m.idle_replica_max_kib,
            ),
            (
                "`fn-echo` replica right after the overhead load".to_string(),
                1,
                m.loaded_replica_rss_kib as f64,
                m.loaded_replica_rss_kib,
            ),
            (
                format!("`faas-gateway` ({replicas} replicas deployed)"),
                1,
                m.gateway_rss_kib as f64,
                m.gateway_rss_kib,
            ),
        ] {
            memory.row([
                label,
                count.to_string(),
                format!("{:.2}", mib(mean_kib)),
                format!("{:.2}", mib(max_kib as f64)),
            ]);
        }
        s.push_str(&memory.render());
        s.push_str(&format!(
            "\nAims: cold start p50 < {COLD_START_P50_AIM_MS:.0} ms: {} ({:.2} ms); gateway throughput >= {THROUGHPUT_RATIO_AIM:.1}x direct: {} ({:.2}x).\n",
            if self.cold_start.p50_ms < COLD_START_P50_AIM_MS { "met" } else { "not met" },
            self.cold_start.p50_ms,
            if self.throughput_ratio >= THROUGHPUT_RATIO_AIM { "met" } else { "not met" },
            self.throughput_ratio
        ));
        s
    }
}

/// A running `faas-gateway`; dropping it kills it (its function processes die with it:
/// the gateway starts them with `PR_SET_PDEATHSIG=SIGKILL`).
pub(crate) struct Gateway {
    child: Child,
    pub(crate) url: String,
}

impl Gateway {
    /// Starts `faas-gateway --listen 127.0.0.1:0 --catalog <catalog>` with stderr in `log` and
    /// waits for its listening line.
    pub(crate) async fn start(binary: &Path, catalog: &Path, log: &Path) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("cannot create log file {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--catalog")
            .arg(catalog)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .env("NO_COLOR", "1");
        tie_to_parent(&mut cmd);
        // A developer's gateway settings (basic auth, listen address) must not apply.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("FAAS_GATEWAY_") {
                cmd.env_remove(key.as_ref());
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the gateway's stdout was not captured")?;
        let mut gateway = Self {
            child,
            url: String::new(),
        };
        let mut reader = BufReader::new(stdout);
        let found =
            tokio::time::timeout(DEADLINE, read_until_listening(&mut reader, "the gateway")).await;
        let addr = match found {
            Ok(Ok(addr)) => addr,
            Ok(Err(why)) => bail!(
                "faas-gateway did not print its listening line ({why}); log {}:\n{}",
                log.display(),
                log_tail(log)
            ),
            Err(_) => bail!(
                "faas-gateway did not print its listening line within {DEADLINE:?}; log {}:\n{}",
                log.display(),
                log_tail(log)
            ),
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move {
            let _ = tokio::io::copy_buf(&mut reader, &mut tokio::io::sink()).await;
        });
        gateway.url = format!("http://{addr}");
        Ok(gateway)
    }

    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the gateway has already exited")
    }

    /// SIGTERM (the gateway then kills its functions), SIGKILL after a grace period.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_err()
            {
                eprintln!("warning: faas-gateway ignored SIGTERM for {STOP_GRACE:?}; killing it");
                self.child
                    .kill()
                    .await
                    .context("cannot kill faas-gateway")?;
            }
        }
        Ok(())
    }
}

/// `GET /system/replicas/{name}` (the embedded gateway's extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Replica {
    state: String,
    pid: Option<u32>,
    port: Option<u16>,
}

pub(crate) fn deployment(service: &str, min: usize, max: usize) -> serde_json::Value {
    json!({
        "service": service,
        "image": ECHO_IMAGE,
        "labels": {
            "com.openfaas.scale.min": min.to_string(),
            "com.openfaas.scale.max": max.to_string(),
        }
    })
}

/// Fails with the status and body unless `r` succeeded.
pub(crate) async fn expect_success(r: reqwest::Response, what: &str) -> anyhow::Result<()> {
    let status = r.status();
    if status.is_success() {
        let _ = r.bytes().await;
        return Ok(());
    }
    let body = r.text().await.unwrap_or_default();
    bail!("{what}: {status}: {}", body.trim())
}

async fn replicas(client: &reqwest::Client, gw: &str, name: &str) -> anyhow::Result<Vec<Replica>> {
    let r = client
        .get(format!("{gw}/system/replicas/{name}"))
        .send()
        .await
        .with_context(|| format!("GET /system/replicas/{name}"))?;
    let status = r.status();
    if !status.is_success() {
        let body = r.text().await.unwrap_or_default();
        bail!("GET /system/replicas/{name}: {status}: {}", body.trim());
    }
    r.json()
        .await
        .with_context(|| format!("GET /system/replicas/{name}: not a replica list"))
}

/// Waits until `name` has exactly `count` replicas, all ready with a pid and a port.
pub(crate) async fn wait_ready_replicas(
    client: &reqwest::Client,
    gw: &str,
    name: &str,
    count: usize,
) -> anyhow::Result<Vec<(u32, u16)>> {
    poll(
        DEADLINE,
        Duration::from_millis(20),
        async || {
            let list = replicas(client, gw, name).await?;
            let ready: Vec<(u32, u16)> = list
                .iter()
                .filter(|r| r.state == "ready")
                .filter_map(|r| Some((r.pid?, r.port?)))
                .collect();
            if list.len() == count && ready.len() == count {
                // `availableReplicas` of the OpenFaaS status must agree.
                let status: serde_json::Value = client
                    .get(format!("{gw}/system/function/{name}"))
                    .send()
                    .await
                    .with_context(|| format!("GET /system/function/{name}"))?
                    .json()
                    .await
                    .with_context(|| format!("GET /system/function/{name}: not JSON"))?;
                if status["availableReplicas"].as_u64().unwrap_or(0) == count as u64 {
                    return Ok(Check::Done(ready));
                }
            }
            Ok(Check::NotYet((list.len(), ready.len())))
        },
        |(replicas, ready)| {
            anyhow!(
                "`{name}` does not have {count} ready replicas within {DEADLINE:?}: {replicas} replicas, {ready} ready"
            )
        },
    )
    .await
}

/// One cold start: (deploy sent -> first 200, deploy sent -> 202), in milliseconds.
async fn cold_start(client: &reqwest::Client, gw: &str, name: &str) -> anyhow::Result<(f64, f64)> {
    let invoke = format!("{gw}/function/{name}");
    let start = Instant::now();
    let r = client
        .post(format!("{gw}/system/functions"))
        .json(&json!({
            "service": name,
            "image": ECHO_IMAGE,
            "labels": {"com.openfaas.scale.min": "1"}
        }))
        .send()
        .await
        .with_context(|| format!("deploying `{name}`"))?;
    expect_success(r, &format!("deploying `{name}`")).await?;
    let ack = start.elapsed();
    // The deadline runs from the deploy request.
    poll(
        DEADLINE.saturating_sub(ack),
        Duration::from_millis(1),
        async || match client.post(&invoke).body("cold").send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                r.bytes()
                    .await
                    .with_context(|| format!("reading the answer of `{name}`"))?;
                Ok(Check::Done(()))
            }
            Ok(r) => Ok(Check::NotYet(r.status().to_string())),
            Err(e) => Ok(Check::NotYet(e.to_string())),
        },
        |last| anyhow!("`{name}` did not answer 200 within {DEADLINE:?} (last: {last})"),
    )
    .await?;
    let first_200 = start.elapsed();
    let r = client
        .delete(format!("{gw}/system/functions"))
        .json(&json!({"functionName": name}))
        .send()
        .await
        .with_context(|| format!("deleting `{name}`"))?;
    expect_success(r, &format!("deleting `{name}`")).await?;
    Ok((first_200.as_secs_f64() * 1000.0, ack.as_secs_f64() * 1000.0))
}

/// Warm-up (discarded), then the measured closed loop of POSTs of `body` to `url`, which must
/// echo it.
async fn load(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    (gateway_pid, replica_pid): (u32, u32),
    options: &FaasBenchOptions,
) -> anyhow::Result<LoadReport> {
    let cpu = || -> anyhow::Result<[f64; 3]> {
        Ok([
            cpu_ms(std::process::id())?,
            cpu_ms(gateway_pid)?,
            cpu_ms(replica_pid)?,
        ])
    };
    let request = {
        let client = client.clone();
        let url = url.to_string();
        let body = body.to_vec();
        move || {
            let client = client.clone();
            let url = url.clone();
            let body = body.clone();
            async move {
                let expected = body.len();
                match client.post(&url).body(body).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => match r.bytes().await {
                        Ok(b) if b.len() == expected => Ok(()),
                        _ => Err("body".to_string()),
                    },
                    Ok(r) => {
                        let status = r.status().as_u16().to_string();
                        let _ = r.bytes().await;
                        Err(status)
                    }
                    Err(_) => Err("transport".to_string()),
                }
            }
        }
    };
    let _ = closed_loop(WARM_UP, options.concurrency, request.clone()).await?;
    let cpu_before = cpu()?;
    let start = Instant::now();
    let (hist, WorkerResult { ok, failures }) =
        closed_loop(options.duration, options.concurrency, request).await?;
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let cpu_after = cpu()?;
    Ok(LoadReport {
        url: url.to_string(),
        ok,
        failed: failures.values().sum(),
        failures,
        elapsed_s: elapsed,
        throughput_per_s: ok as f64 / elapsed,
        latency: LatencySummary::of(&hist),
        cpu: CpuUse {
            load_generator_ms: cpu_after[0] - cpu_before[0],
            gateway_ms: cpu_after[1] - cpu_before[1],
            replica_ms: cpu_after[2] - cpu_before[2],
        },
    })
}

/// Starts the gateway, runs the three phases, stops it, and writes `faas.json` and `faas.md`
/// into `options.out`.
pub async fn run_faas_bench(options: &FaasBenchOptions) -> anyhow::Result<FaasBenchReport> {
    let binary = find_binary(&options.bin_dir, GATEWAY_BIN)?;
    find_binary(&options.bin_dir, ECHO_BIN)?;
    let tmp = tempfile::Builder::new()
        .prefix("fogmarket-bench-faas-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let log = tmp.path().join("faas-gateway.log");
    let started_at_unix_ms = model::Timestamp::now().as_millis();
    let gateway = match Gateway::start(&binary, &options.bin_dir, &log).await {
        Ok(g) => g,
        Err(e) => {
            let kept = tmp.keep();
            return Err(e.context(format!("logs kept in {}", kept.display())));
        }
    };
    eprintln!("faas-gateway at {} (log {})", gateway.url, log.display());
    let mut pids = Vec::new();
    let outcome = phases(&gateway, options, &mut pids).await;
    let stopped = gateway.stop().await;
    let figures = match outcome {
        Ok(f) => f,
        Err(e) => {
            let kept = tmp.keep();
            let log = kept.join("faas-gateway.log");
            return Err(e.context(format!(
                "the FaaS benchmark failed; gateway log {}:\n{}",
                log.display(),
                log_tail(&log)
            )));
        }
    };
    stopped?;
    // The gateway kills its replicas when it stops; say so if one survived.
    let mut alive: Vec<u32> = pids.clone();
    let gone = poll(
        Duration::from_secs(2),
        Duration::from_millis(20),
        async || {
            alive.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
            Ok(if alive.is_empty() {
                Check::Done(())
            } else {
                Check::NotYet(alive.clone())
            })
        },
        |alive| alive,
    )
    .await;
    if let Err(alive) = gone {
        eprintln!("warning: replica processes still alive after the gateway stopped: {alive:?}");
    }

    let (cold, ack, direct, via_gateway, memory) = figures;
    let report = FaasBenchReport {
        benchmark: "faas",
        machine: Machine::detect(),
        commit: commit_hash(),
        started_at_unix_ms,
        image: ECHO_IMAGE,
        cold_start: SampleSummary::of(&cold),
        cold_start_deploy_ack: SampleSummary::of(&ack),
        duration_s: options.duration.as_secs_f64(),
        warm_up_s: WARM_UP.as_secs_f64(),
        concurrency: options.concurrency,
        body_bytes: options.body_bytes,
        throughput_ratio: ratio(via_gateway.throughput_per_s, direct.throughput_per_s),
        p99_ratio: ratio(via_gateway.latency.p99_ms, direct.latency.p99_ms),
        direct,
        gateway: via_gateway,
        memory,
    };
    write_report(&report, &options.out)?;
    Ok(report)
}

type Figures = (Vec<f64>, Vec<f64>, LoadReport, LoadReport, MemoryReport);

/// The three phases against a running gateway; every replica pid seen goes to `pids`.
async fn phases(
    gateway: &Gateway,
    options: &FaasBenchOptions,
    pids: &mut Vec<u32>,
) -> anyhow::Result<Figures> {
    let gw = gateway.url.as_str();
    let client = http_client();

    eprintln!("cold starts: {}", options.cold_starts);
    let mut cold = Vec::with_capacity(options.cold_starts);
    let mut ack = Vec::with_capacity(options.cold_starts);
    for i in 0..options.cold_starts {
        let (first_200, deployed) = cold_start(&client, gw, &format!("echo-cold-{i}")).await?;
        cold.push(first_200);
        ack.push(deployed);
    }

    let r = client
        .post(format!("{gw}/system/functions"))
        .json(&deployment("echo", 1, 1))
        .send()
        .await
        .context("deploying `echo`")?;
    expect_success(r, "deploying `echo`").await?;
    let ready = wait_ready_replicas(&client, gw, "echo", 1).await?;
    let (replica_pid, replica_port) = ready[0];
    pids.push(replica_pid);
    let body = vec![b'x'; options.body_bytes];
    let direct_url = format!("http://127.0.0.1:{replica_port}/");
    eprintln!(
        "direct load: {} workers for {:?} (+{WARM_UP:?} warm-up) at {direct_url}",
        options.concurrency, options.duration
    );
    let pids_of_load = (gateway.pid()?, replica_pid);
    let direct = load(&client, &direct_url, &body, pids_of_load, options).await?;
    let gateway_url = format!("{gw}/function/echo");
    eprintln!(
        "gateway load: {} workers for {:?} (+{WARM_UP:?} warm-up) at {gateway_url}",
        options.concurrency, options.duration
    );
    let via_gateway = load(&client, &gateway_url, &body, pids_of_load, options).await?;
    // Both loads must have hit the same, single replica.
    let after = replicas(&client, gw, "echo").await?;
    if after.len() != 1 || after[0].pid != Some(replica_pid) {
        bail!(
            "`echo` changed replicas during the load (before: pid {replica_pid}; after: {:?})",
            after.iter().map(|r| r.pid).collect::<Vec<_>>()
        );
    }
    let loaded_replica_rss_kib = rss_kib(replica_pid)?;

    eprintln!(
        "memory: scaling `echo` to {} replicas",
        options.idle_replicas
    );
    // `scale.max` was 1; raise it (this replaces the replica), then set the floor.
    let r = client
        .put(format!("{gw}/system/functions"))
        .json(&deployment("echo", 1, options.idle_replicas.max(1)))
        .send()
        .await
        .context("updating `echo`")?;
    expect_success(r, "updating `echo`").await?;
    let r = client
        .post(format!("{gw}/system/scale-function/echo"))
        .json(&json!({"serviceName": "echo", "replicas": options.idle_replicas}))
        .send()
        .await
        .context("scaling `echo`")?;
    expect_success(r, "scaling `echo`").await?;
    let idle = wait_ready_replicas(&client, gw, "echo", options.idle_replicas).await?;
    pids.extend(idle.iter().map(|(pid, _)| *pid));
    let idle_replica_rss_kib = idle
        .iter()
        .map(|(pid, _)| rss_kib(*pid))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let gateway_rss_kib = rss_kib(gateway.pid()?)?;
    let memory = MemoryReport {
        idle_replica_mean_kib: if idle_replica_rss_kib.is_empty() {
            0.0
        } else {
            idle_replica_rss_kib.iter().sum::<u64>() as f64 / idle_replica_rss_kib.len() as f64
        },
        idle_replica_max_kib: idle_replica_rss_kib.iter().copied().max().unwrap_or(0),
        idle_replica_rss_kib,
        loaded_replica_rss_kib,
        gateway_rss_kib,
    };
    Ok((cold, ack, direct, via_gateway, memory))
}

/// Writes `faas.json` and `faas.md` into `dir`.
pub fn write_report(report: &FaasBenchReport, dir: &Path) -> anyhow::Result<()> {
    crate::bench::write_results(dir, "faas", report, &report.markdown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use measure::markdown::squeeze_spaces;
    use measure::stats::within_precision;

    #[test]
    fn sample_percentiles_are_nearest_rank_within_the_histogram_precision() {
        // Nearest rank of 10, 20, 30, 40: p50 = 20, p99 = 40; read back from the histogram
        // they are exact to 0.1 % (3 significant digits), not to the bit.
        let s = SampleSummary::of(&[40.0, 10.0, 30.0, 20.0]);
        assert_eq!(s.samples, 4);
        for (measured, exact) in [
            (s.p50_ms, 20.0),
            (s.p99_ms, 40.0),
            (s.min_ms, 10.0),
            (s.max_ms, 40.0),
            (s.mean_ms, 25.0),
        ] {
            assert!(within_precision(measured, exact), "{s:?}");
        }
        let none = SampleSummary::of(&[]);
        assert_eq!((none.samples, none.p50_ms, none.max_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status =
            "Name:\tfn-echo\nVmPeak:\t  20000 kB\nVmRSS:\t    5432 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(status_kib(status, "VmRSS").ok(), Some(5432));
        assert_eq!(
            status_kib("Name:\tkthreadd\nVmPeak:\t1 kB\n", "VmRSS").ok(),
            None
        );
        assert_eq!(status_kib("VmRSS:\tlots kB\n", "VmRSS").ok(), None);
        // Our own process is alive and has resident memory.
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat() {
        let stat =
            "4242 (fn echo (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3\n";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("4242 (fn-echo) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
        assert!(cpu_ms(std::process::id()).unwrap() >= 0.0);
    }

    #[test]
    fn the_markdown_has_the_three_tables_and_the_ratios() {
        let latencies = Latencies::from_ms([0.5]);
        let load = |tput: f64| LoadReport {
            url: "http://127.0.0.1:1/".into(),
            ok: 10,
            failed: 0,
            failures: BTreeMap::new(),
            elapsed_s: 1.0,
            throughput_per_s: tput,
            latency: LatencySummary::of(&latencies),
            cpu: CpuUse {
                load_generator_ms: 10.0,
                gateway_ms: 20.0,
                replica_ms: 30.0,
            },
        };
        let report = FaasBenchReport {
            benchmark: "faas",
            machine: Machine::detect(),
            commit: Some("abc123".into()),
            started_at_unix_ms: 0,
            image: ECHO_IMAGE,
            cold_start: SampleSummary::of(&[12.0, 14.0]),
            cold_start_deploy_ack: SampleSummary::of(&[1.0, 2.0]),
            duration_s: 10.0,
            warm_up_s: 1.0,
            concurrency: 16,
            body_bytes: 64,
            direct: load(1000.0),
            gateway: load(800.0),
            throughput_ratio: 0.8,
            p99_ratio: 1.0,
            memory: MemoryReport {
                idle_replica_rss_kib: vec![2048, 4096],
                idle_replica_mean_kib: 3072.0,
                idle_replica_max_kib: 4096,
                loaded_replica_rss_kib: 5120,
                gateway_rss_kib: 10240,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        write_report(&report, dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("faas.json")).unwrap())
                .unwrap();
        // p50 of 12 and 14 is 12 (nearest rank), read back within the histogram's precision.
        let p50 = json["cold_start"]["p50_ms"].as_f64().unwrap();
        assert!(within_precision(p50, 12.0), "{p50}");
        assert_eq!(json["memory"]["gateway_rss_kib"].as_u64(), Some(10240));
        let md = squeeze_spaces(&std::fs::read_to_string(dir.path().join("faas.md")).unwrap());
        assert!(md.contains("| deploy -> first 200 | 2 | 12.0"), "{md}");
        assert!(
            md.contains("| gateway `/function/echo` | 1 | 10 | 0 | 800.0 |"),
            "{md}"
        );
        assert!(md.contains("throughput 0.80x"), "{md}");
        assert!(
            md.contains("| gateway | 1000.0 | 2000.0 | 3000.0 | 6000.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| idle `fn-echo` replica | 2 | 3.00 | 4.00 |"),
            "{md}"
        );
    }
}
