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

use crate::bench::{LatencySummary, Machine, WorkerResult, closed_loop, commit_hash};
use crate::launcher::{find_binary, http_client, log_tail, parse_listening_line};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
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

/// Percentiles of a small set of exact samples (nearest rank), in milliseconds.
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
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().sum::<f64>() / sorted.len() as f64
        };
        Self {
            samples: sorted.len(),
            p50_ms: percentile(&sorted, 0.5),
            p90_ms: percentile(&sorted, 0.9),
            p99_ms: percentile(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(0.0),
            min_ms: sorted.first().copied().unwrap_or(0.0),
            mean_ms: mean,
        }
    }
}

/// Nearest-rank percentile of ascending `sorted` (`q` in 0..=1): the smallest sample with at
/// least `q` of the samples at or below it; 0 for no samples.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // The epsilon keeps float noise (0.9 * 30 = 27.000000000000004) from skipping a rank.
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim();
    let number = rest.strip_suffix("kB").unwrap_or(rest).trim();
    number.parse().ok()
}

/// Resident memory of a live process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss_kib(&status).with_context(|| format!("no VmRSS line in {path}"))
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
        s.push_str("| phase | samples | p50 ms | p90 ms | p99 ms | max ms | min ms | mean ms |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (label, x) in [
            ("deploy -> first 200", &self.cold_start),
            (
                "deploy -> 202 (deploy request only)",
                &self.cold_start_deploy_ack,
            ),
        ] {
            s.push_str(&format!(
                "| {label} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                x.samples, x.p50_ms, x.p90_ms, x.p99_ms, x.max_ms, x.min_ms, x.mean_ms
            ));
        }
        s.push_str("\n## Gateway overhead (one replica)\n\n");
        s.push_str(
            "| target | requests | ok | failed | throughput/s | p50 ms | p90 ms | p99 ms | max ms |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (label, x) in [
            ("direct (replica port)", &self.direct),
            ("gateway `/function/echo`", &self.gateway),
        ] {
            s.push_str(&format!(
                "| {label} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                x.latency.requests,
                x.ok,
                x.failed,
                x.throughput_per_s,
                x.latency.p50_ms,
                x.latency.p90_ms,
                x.latency.p99_ms,
                x.latency.max_ms
            ));
        }
        s.push_str(&format!(
            "\nGateway / direct: throughput {:.2}x, p99 latency {:.2}x.\n",
            self.throughput_ratio, self.p99_ratio
        ));
        s.push_str(&format!(
            "\nCPU time per successful request (µs; {} cores shared by all three processes):\n\n",
            self.machine.cores
        ));
        s.push_str("| target | load generator | `faas-gateway` | `fn-echo` | total |\n");
        s.push_str("|---|---:|---:|---:|---:|\n");
        for (label, x) in [("direct", &self.direct), ("gateway", &self.gateway)] {
            let per = |ms: f64| {
                if x.ok > 0 {
                    ms * 1000.0 / x.ok as f64
                } else {
                    0.0
                }
            };
            let c = &x.cpu;
            s.push_str(&format!(
                "| {label} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                per(c.load_generator_ms),
                per(c.gateway_ms),
                per(c.replica_ms),
                per(c.load_generator_ms + c.gateway_ms + c.replica_ms)
            ));
        }
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
        s.push_str("| process | count | mean MiB | max MiB |\n");
        s.push_str("|---|---:|---:|---:|\n");
        s.push_str(&format!(
            "| idle `fn-echo` replica | {} | {:.2} | {:.2} |\n",
            m.idle_replica_rss_kib.len(),
            mib(m.idle_replica_mean_kib),
            mib(m.idle_replica_max_kib as f64)
        ));
        s.push_str(&format!(
            "| `fn-echo` replica right after the overhead load | 1 | {:.2} | {:.2} |\n",
            mib(m.loaded_replica_rss_kib as f64),
            mib(m.loaded_replica_rss_kib as f64)
        ));
        s.push_str(&format!(
            "| `faas-gateway` ({} replicas deployed) | 1 | {:.2} | {:.2} |\n",
            m.idle_replica_rss_kib.len(),
            mib(m.gateway_rss_kib as f64),
            mib(m.gateway_rss_kib as f64)
        ));
        s.push_str(&format!(
            "\nAims: cold start p50 < 100 ms: {} ({:.2} ms); gateway throughput >= 0.8x direct: {} ({:.2}x).\n",
            if self.cold_start.p50_ms < 100.0 { "met" } else { "not met" },
            self.cold_start.p50_ms,
            if self.throughput_ratio >= 0.8 { "met" } else { "not met" },
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
            .process_group(0)
            .kill_on_drop(true)
            .env("NO_COLOR", "1");
        // A developer's gateway settings (basic auth, listen address) must not apply.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("FAAS_GATEWAY_") {
                cmd.env_remove(key.as_ref());
            }
        }
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
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
        let found = tokio::time::timeout(DEADLINE, async {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) => return Err("stdout closed: the gateway exited".to_string()),
                    Ok(_) => {
                        if let Some(addr) = parse_listening_line(&line) {
                            return Ok(addr);
                        }
                    }
                    Err(e) => return Err(format!("cannot read stdout: {e}")),
                }
            }
        })
        .await;
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
    let until = Instant::now() + DEADLINE;
    loop {
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
                return Ok(ready);
            }
        }
        if Instant::now() >= until {
            bail!(
                "`{name}` does not have {count} ready replicas within {DEADLINE:?}: {} replicas, {} ready",
                list.len(),
                ready.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let until = start + DEADLINE;
    loop {
        let last = match client.post(&invoke).body("cold").send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => {
                r.bytes()
                    .await
                    .with_context(|| format!("reading the answer of `{name}`"))?;
                break;
            }
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            bail!("`{name}` did not answer 200 within {DEADLINE:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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
    let until = Instant::now() + Duration::from_secs(2);
    let mut alive: Vec<u32> = pids.clone();
    while !alive.is_empty() && Instant::now() < until {
        alive.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !alive.is_empty() {
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
    use crate::bench::new_histogram;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=30).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 15.0);
        assert_eq!(percentile(&sorted, 0.9), 27.0);
        assert_eq!(percentile(&sorted, 0.99), 30.0);
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 1.0), 30.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);

        let s = SampleSummary::of(&[40.0, 10.0, 30.0, 20.0]);
        assert_eq!(s.samples, 4);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p99_ms, 40.0);
        assert_eq!((s.min_ms, s.max_ms, s.mean_ms), (10.0, 40.0, 25.0));
    }

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status =
            "Name:\tfn-echo\nVmPeak:\t  20000 kB\nVmRSS:\t    5432 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(5432));
        assert_eq!(parse_vm_rss_kib("Name:\tkthreadd\nVmPeak:\t1 kB\n"), None);
        assert_eq!(parse_vm_rss_kib("VmRSS:\tlots kB\n"), None);
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
        let mut h = new_histogram().unwrap();
        h.record(500).unwrap();
        let load = |tput: f64| LoadReport {
            url: "http://127.0.0.1:1/".into(),
            ok: 10,
            failed: 0,
            failures: BTreeMap::new(),
            elapsed_s: 1.0,
            throughput_per_s: tput,
            latency: LatencySummary::of(&h),
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
        assert_eq!(json["cold_start"]["p50_ms"].as_f64(), Some(12.0));
        assert_eq!(json["memory"]["gateway_rss_kib"].as_u64(), Some(10240));
        let md = std::fs::read_to_string(dir.path().join("faas.md")).unwrap();
        assert!(md.contains("| deploy -> first 200 | 2 | 12.00 |"), "{md}");
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
