//! The proxy benchmark: what each layer in front of a function costs, measured with `wrk`
//! (closed loop, fixed connection count) on this machine.
//!
//! Arms, each a `wrk` run of `duration` after a discarded warm-up:
//! - **a** `direct`: the `fn-echo` replica's own port;
//! - **b** `haproxy`: HAProxy (minimal configuration) in front of that same replica;
//! - **c** `gateway`: the embedded gateway's `/function/echo` (same replica);
//! - **d** `fog`: a marketplace and one fog node started by the launcher, echo placed with
//!   provisioning, at the node's data plane `invokeUrl` (node -> a replica: the node invokes
//!   its embedded gateway's service in process, which leases the replica and forwards); the
//!   node runs `static` (no peer: everything local), so this is the data plane's cost alone;
//!   `fog_lease` repeats it with the default `lease` strategy, whose admission control on a
//!   learned capacity rejects part of a closed-loop overload (429s, counted apart);
//! - **e** `haproxy_gateway`: HAProxy in front of the gateway (same depth as d).
//!
//! The fog node gets as many HTTP workers as HAProxy gets threads (the machine's cores). Results
//! go to `proxy.json` and `proxy.md`: throughput, p50/p99 latency (from `wrk --latency`), and
//! the ratios fog/direct, fog/HAProxy-in-front-of-gateway (the same backend), fog/HAProxy and
//! gateway/HAProxy (both one hop in front of the replica) and HAProxy/direct.

use crate::bench::{Machine, commit_hash};
use crate::bench_faas::{
    ECHO_BIN, ECHO_IMAGE, GATEWAY_BIN, Gateway, deployment, expect_success, wait_ready_replicas,
};
use crate::launcher::{
    Federation, LaunchOptions, find_binary, http_client, log_tail, tie_to_parent,
};
use crate::poll::{Check, poll};
use crate::topology::Topology;
use anyhow::{Context, anyhow, bail};
use measure::markdown::{MarkdownTable, left, right};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

/// Discarded load before each measured run.
const WARM_UP: Duration = Duration::from_secs(1);
/// Deadline for HAProxy to accept connections and for the fog arm's placement to answer.
const DEADLINE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct ProxyBenchOptions {
    /// Measured `wrk` run per arm.
    pub duration: Duration,
    /// `wrk -c`: connections kept open.
    pub connections: usize,
    /// `wrk -t`: load generator threads.
    pub threads: usize,
    /// POST body size.
    pub body_bytes: usize,
    /// Where `proxy.json` and `proxy.md` are written.
    pub out: PathBuf,
    /// Where `marketplace`, `fog-node`, `faas-gateway` and `fn-echo` are (release builds).
    pub bin_dir: PathBuf,
    /// The `wrk` executable.
    pub wrk: PathBuf,
    /// The `haproxy` executable.
    pub haproxy: PathBuf,
}

/// The parts of `wrk --latency` output the report uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrkResult {
    pub requests: u64,
    pub elapsed_s: f64,
    /// `Requests/sec` (every answer, 2xx or not).
    pub requests_per_s: f64,
    /// Successful answers per second: requests less non-2xx and socket errors, over the run.
    pub ok_per_s: f64,
    /// Answers with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// Socket errors: connect + read + write + timeout.
    pub socket_errors: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

/// A `wrk` duration (`812.00us`, `1.23ms`, `2.00s`, `1.50m`) in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.trim().parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(n * factor)
}

/// Parses the standard output of `wrk --latency`.
pub fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut requests = None;
    let mut elapsed_s = None;
    let mut requests_per_s = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    let (mut avg, mut max) = (None, None);
    let mut percentiles = std::collections::BTreeMap::new();
    let mut in_distribution = false;
    for line in output.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            if let Some((p, v)) = t.split_once('%')
                && let Ok(p) = p.trim().parse::<f64>()
                && let Some(ms) = wrk_ms(v)
            {
                percentiles.insert((p * 10.0).round() as u64, ms);
                continue;
            }
            in_distribution = false;
        }
        if let Some(rest) = t.strip_prefix("Latency") {
            // `Latency   1.23ms  456.00us  10.00ms   90.00%`: avg, stdev, max, +/- stdev.
            let cols: Vec<&str> = rest.split_whitespace().collect();
            avg = cols.first().and_then(|c| wrk_ms(c));
            max = cols.get(2).and_then(|c| wrk_ms(c));
        } else if let Some((n, rest)) = t.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
            elapsed_s = rest
                .split(',')
                .next()
                .and_then(wrk_ms)
                .map(|ms| ms / 1000.0);
        } else if let Some(v) = t.strip_prefix("Requests/sec:") {
            requests_per_s = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            socket_errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    let pick = |p: u64| {
        percentiles
            .get(&(p * 10))
            .copied()
            .with_context(|| format!("no {p}% line in the latency distribution"))
    };
    let parsed = (|| -> anyhow::Result<WrkResult> {
        let requests = requests.context("no `N requests in T` line")?;
        let elapsed_s = elapsed_s.context("no duration in the `requests in` line")?;
        let ok = requests.saturating_sub(non_2xx + socket_errors);
        Ok(WrkResult {
            requests,
            elapsed_s,
            requests_per_s: requests_per_s.context("no `Requests/sec:` line")?,
            ok_per_s: if elapsed_s > 0.0 {
                ok as f64 / elapsed_s
            } else {
                0.0
            },
            non_2xx,
            socket_errors,
            latency_avg_ms: avg.context("no `Latency` thread stats line")?,
            latency_max_ms: max.context("no maximum in the `Latency` line")?,
            p50_ms: pick(50)?,
            p75_ms: pick(75)?,
            p90_ms: pick(90)?,
            p99_ms: pick(99)?,
        })
    })();
    parsed.with_context(|| format!("unexpected wrk output:\n{output}"))
}

/// One arm of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// `direct`, `haproxy`, `gateway`, `fog`, `haproxy_gateway`.
    pub name: &'static str,
    pub description: String,
    pub url: String,
    /// `None` when the arm could not run (see `error`).
    pub result: Option<WrkResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `a / b` of successful throughput and latencies; `None` when either arm is missing.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub of: &'static str,
    pub to: &'static str,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
}

fn ratio_of(arms: &[Arm], of: &'static str, to: &'static str) -> Option<Ratio> {
    let get = |n: &str| arms.iter().find(|a| a.name == n)?.result.clone();
    let (a, b) = (get(of)?, get(to)?);
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    Some(Ratio {
        of,
        to,
        throughput: div(a.ok_per_s, b.ok_per_s),
        p50: div(a.p50_ms, b.p50_ms),
        p99: div(a.p99_ms, b.p99_ms),
    })
}

/// The benchmark's results (`proxy.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ProxyBenchReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub started_at_unix_ms: u64,
    pub wrk_version: String,
    pub haproxy_version: String,
    pub duration_s: f64,
    pub warm_up_s: f64,
    pub connections: usize,
    pub wrk_threads: usize,
    pub body_bytes: usize,
    /// HAProxy's `nbthread` and the fog node's `http_workers`.
    pub proxy_threads: usize,
    /// 1-minute load average before the first arm and after the last (other work on the
    /// machine skews every figure).
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
    pub arms: Vec<Arm>,
    /// fog / direct, fog / haproxy_gateway, fog / haproxy, gateway / haproxy, haproxy / direct,
    /// gateway / direct (those that ran).
    pub ratios: Vec<Ratio>,
}

impl ProxyBenchReport {
    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Proxy benchmark\n\n");
        s.push_str(&format!(
            "`wrk -t{} -c{} -d{:.0}s --latency`, POST of {} bytes, after a {:.0} s warm-up; HAProxy `nbthread` and the fog node's `http_workers` = {}; everything on one machine: {} ({}, **{} cores** shared by wrk, the proxies and the function); commit {}.\n\n",
            self.wrk_threads,
            self.connections,
            self.duration_s,
            self.body_bytes,
            self.warm_up_s,
            self.proxy_threads,
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores,
            self.commit.as_deref().unwrap_or("unknown"),
        ));
        s.push_str(&format!(
            "{}; {}. 1-minute load average before / after: {} / {}.\n\n",
            self.wrk_version.trim(),
            self.haproxy_version.trim(),
            self.load_average_before
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "?".into()),
            self.load_average_after
                .map(|l| format!("{l:.2}"))
                .unwrap_or_else(|| "?".into()),
        ));
        let mut arms = MarkdownTable::new([
            left("arm"),
            left("path"),
            right("requests/s"),
            right("ok/s"),
            right("p50 ms"),
            right("p75 ms"),
            right("p90 ms"),
            right("p99 ms"),
            right("max ms"),
            right("non-2xx"),
            right("socket errors"),
        ]);
        for a in &self.arms {
            let head = [a.name.to_string(), a.description.clone()];
            match &a.result {
                Some(r) => arms.row(head.into_iter().chain([
                    format!("{:.0}", r.requests_per_s),
                    format!("{:.0}", r.ok_per_s),
                    format!("{:.3}", r.p50_ms),
                    format!("{:.3}", r.p75_ms),
                    format!("{:.3}", r.p90_ms),
                    format!("{:.3}", r.p99_ms),
                    format!("{:.2}", r.latency_max_ms),
                    r.non_2xx.to_string(),
                    r.socket_errors.to_string(),
                ])),
                None => arms.row(head.into_iter().chain([format!(
                    "failed: {}",
                    short_error(a.error.as_deref().unwrap_or("did not run"))
                )])),
            };
        }
        s.push_str(&arms.render());
        s.push_str("\nRatios of successful throughput (ok/s) and of latency:\n\n");
        let mut ratios = MarkdownTable::new([
            left("ratio"),
            right("throughput"),
            right("p50 latency"),
            right("p99 latency"),
        ]);
        for r in &self.ratios {
            ratios.row([
                format!("{} / {}", r.of, r.to),
                format!("{:.2}x", r.throughput),
                format!("{:.2}x", r.p50),
                format!("{:.2}x", r.p99),
            ]);
        }
        s.push_str(&ratios.render());
        s
    }
}

/// The 1-minute load average of the machine (`/proc/loadavg`), to show how busy it was
/// around a measurement; `None` where unavailable.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first line of an error, at most 160 characters, safe in a markdown table (the JSON
/// keeps the whole error).
fn short_error(e: &str) -> String {
    let line = e.lines().next().unwrap_or_default().replace('|', "/");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line
    }
}

/// `wrk` arguments for one run.
#[derive(Debug, Clone)]
struct WrkRun<'a> {
    wrk: &'a Path,
    script: &'a Path,
    threads: usize,
    connections: usize,
}

impl WrkRun<'_> {
    async fn run(&self, url: &str, duration: Duration) -> anyhow::Result<WrkResult> {
        let secs = duration.as_secs().max(1);
        let out = tokio::process::Command::new(self.wrk)
            .arg(format!("-t{}", self.threads.max(1)))
            .arg(format!("-c{}", self.connections.max(self.threads).max(1)))
            .arg(format!("-d{secs}s"))
            .arg("--latency")
            .arg("-s")
            .arg(self.script)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| {
                format!(
                    "cannot run {} (install it: `apt-get install wrk`, or use `just bench proxy`)",
                    self.wrk.display()
                )
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk against {url} failed ({}): {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse_wrk(&stdout)
    }

    /// Warm-up (discarded), then the measured run. A run without answers, or where most
    /// connections failed, is an error; non-2xx answers are reported (a proxy that rejects
    /// load is a result, shown in `ok/s` and `non-2xx`).
    async fn measure(&self, url: &str, duration: Duration) -> anyhow::Result<WrkResult> {
        self.run(url, WARM_UP).await?;
        let r = self.run(url, duration).await?;
        if r.requests == 0 || r.socket_errors > r.requests / 2 {
            bail!(
                "requests to {url} failed: {} requests, {} socket errors",
                r.requests,
                r.socket_errors
            );
        }
        Ok(r)
    }
}

/// A free loopback port (bound then released; HAProxy cannot report a port 0 bind).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr().context("no local address")?.port())
}

/// A running HAProxy in front of one server; dropping it kills it.
struct Haproxy {
    child: Child,
    port: u16,
}

/// The minimal HAProxy configuration of the benchmark: one frontend, one backend, one server.
pub fn haproxy_config(port: u16, server: &str, threads: usize) -> String {
    format!(
        "global\n    nbthread {threads}\n    maxconn 4096\n\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\n\
         frontend bench\n    bind 127.0.0.1:{port}\n    default_backend target\n\n\
         backend target\n    http-reuse always\n    server s1 {server}\n"
    )
}

impl Haproxy {
    async fn start(
        binary: &Path,
        dir: &Path,
        server: &str,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = dir.join(format!("haproxy-{port}.cfg"));
        std::fs::write(&config, haproxy_config(port, server, threads))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = dir.join(format!("haproxy-{port}.log"));
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        tie_to_parent(&mut cmd);
        let child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (install it: `apt-get install haproxy`, or use `just bench proxy`)",
                binary.display()
            )
        })?;
        let mut h = Haproxy { child, port };
        poll(
            DEADLINE,
            Duration::from_millis(20),
            async || {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(Check::Done(()));
                }
                if let Ok(Some(status)) = h.child.try_wait() {
                    bail!(
                        "haproxy exited ({status}) before listening on port {port}; log {}:\n{}",
                        log.display(),
                        log_tail(&log)
                    );
                }
                Ok(Check::NotYet(()))
            },
            |()| {
                anyhow!(
                    "haproxy does not accept connections on port {port} within {DEADLINE:?}; log {}",
                    log.display()
                )
            },
        )
        .await?;
        Ok(h)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn version_line(binary: &Path, arg: &str) -> String {
    match tokio::process::Command::new(binary)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown")
                .trim()
                .to_string()
        }
        Err(e) => format!("{}: {e}", binary.display()),
    }
}

/// Runs every arm and writes `proxy.json` and `proxy.md` into `options.out`.
pub async fn run_proxy_bench(options: &ProxyBenchOptions) -> anyhow::Result<ProxyBenchReport> {
    let gateway_bin = find_binary(&options.bin_dir, GATEWAY_BIN)?;
    find_binary(&options.bin_dir, ECHO_BIN)?;
    let tmp = tempfile::Builder::new()
        .prefix("fogmarket-bench-proxy-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let machine = Machine::detect();
    let proxy_threads = machine.cores.max(1);
    let script = tmp.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{}\"\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
            "x".repeat(options.body_bytes)
        ),
    )
    .with_context(|| format!("cannot write {}", script.display()))?;
    let wrk = WrkRun {
        wrk: &options.wrk,
        script: &script,
        threads: options.threads,
        connections: options.connections,
    };
    let started_at_unix_ms = model::Timestamp::now().as_millis();
    let wrk_version = version_line(&options.wrk, "-v").await;
    let haproxy_version = version_line(&options.haproxy, "-v").await;
    let load_average_before = load_average();

    let mut arms = Vec::new();
    let gateway_log = tmp.path().join("faas-gateway.log");
    let gateway = Gateway::start(&gateway_bin, &options.bin_dir, &gateway_log)
        .await
        .with_context(|| format!("logs in {}", tmp.path().display()))?;
    let outcome = gateway_arms(
        &gateway,
        options,
        &wrk,
        tmp.path(),
        proxy_threads,
        &mut arms,
    )
    .await;
    gateway.stop().await?;
    if let Err(e) = outcome {
        let kept = tmp.keep();
        return Err(e.context(format!(
            "the proxy benchmark failed; logs kept in {}",
            kept.display()
        )));
    }
    // (d) after the others and alone: its own gateway, started by the fog node. Once with
    // `static` (no peer: 100 % local, the data plane's cost alone), once with the default
    // `lease` (admission control on a learned capacity under a closed loop).
    let mut failed = false;
    let mut fog_arms = Vec::new();
    for (name, strategy, description) in [
        (
            "fog",
            "static",
            "fog node data plane (`static`: all local) -> its embedded gateway's service, in process -> replica",
        ),
        (
            "fog_lease",
            "lease",
            "fog node data plane (default `lease`, learned capacity) -> its embedded gateway's service, in process -> replica",
        ),
    ] {
        let dir = tmp.path().join(name);
        let arm = match fog_arm(options, &wrk, &dir, proxy_threads, strategy).await {
            Ok((url, result)) => Arm {
                name,
                description: description.into(),
                url,
                result: Some(result),
                error: None,
            },
            Err(e) => {
                eprintln!("{name} arm failed: {e:#}");
                failed = true;
                Arm {
                    name,
                    description: description.into(),
                    url: String::new(),
                    result: None,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        fog_arms.push(arm);
    }
    // Order: a, b, c, d (and its lease variant), e.
    let e = arms.pop();
    arms.extend(fog_arms);
    arms.extend(e);
    let ratios = [
        ("fog", "direct"),
        ("fog", "haproxy_gateway"),
        ("fog", "haproxy"),
        ("gateway", "haproxy"),
        ("haproxy", "direct"),
        ("gateway", "direct"),
    ]
    .into_iter()
    .filter_map(|(a, b)| ratio_of(&arms, a, b))
    .collect();
    let report = ProxyBenchReport {
        benchmark: "proxy",
        machine,
        commit: commit_hash(),
        started_at_unix_ms,
        wrk_version,
        haproxy_version,
        duration_s: options.duration.as_secs_f64(),
        warm_up_s: WARM_UP.as_secs_f64(),
        connections: options.connections,
        wrk_threads: options.threads,
        body_bytes: options.body_bytes,
        proxy_threads,
        load_average_before,
        load_average_after: load_average(),
        arms,
        ratios,
    };
    write_report(&report, &options.out)?;
    if failed {
        let kept = tmp.keep();
        eprintln!("logs kept in {}", kept.display());
    }
    Ok(report)
}

/// Arms a, b, c and e against one gateway and its single replica.
async fn gateway_arms(
    gateway: &Gateway,
    options: &ProxyBenchOptions,
    wrk: &WrkRun<'_>,
    dir: &Path,
    proxy_threads: usize,
    arms: &mut Vec<Arm>,
) -> anyhow::Result<()> {
    let client = http_client();
    let gw = gateway.url.as_str();
    let r = client
        .post(format!("{gw}/system/functions"))
        .json(&deployment("echo", 1, 1))
        .send()
        .await
        .context("deploying `echo`")?;
    expect_success(r, "deploying `echo`").await?;
    let ready = wait_ready_replicas(&client, gw, "echo", 1).await?;
    let (_, replica_port) = *ready
        .first()
        .context("the gateway reports no ready replica of `echo`")?;
    let replica = format!("127.0.0.1:{replica_port}");
    let gateway_addr = gw.trim_start_matches("http://").to_string();

    let direct_url = format!("http://{replica}/");
    eprintln!("(a) direct: {direct_url}");
    let direct = wrk.measure(&direct_url, options.duration).await?;
    arms.push(Arm {
        name: "direct",
        description: "replica".into(),
        url: direct_url,
        result: Some(direct),
        error: None,
    });

    let haproxy = Haproxy::start(&options.haproxy, dir, &replica, proxy_threads).await?;
    let url = format!("http://127.0.0.1:{}/", haproxy.port);
    eprintln!("(b) haproxy -> replica: {url}");
    let result = wrk.measure(&url, options.duration).await;
    haproxy.stop().await;
    arms.push(Arm {
        name: "haproxy",
        description: "HAProxy -> replica".into(),
        url,
        result: Some(result?),
        error: None,
    });

    let url = format!("{gw}/function/echo");
    eprintln!("(c) gateway: {url}");
    let result = wrk.measure(&url, options.duration).await?;
    arms.push(Arm {
        name: "gateway",
        description: "gateway -> replica".into(),
        url,
        result: Some(result),
        error: None,
    });

    let haproxy = Haproxy::start(&options.haproxy, dir, &gateway_addr, proxy_threads).await?;
    let url = format!("http://127.0.0.1:{}/function/echo", haproxy.port);
    eprintln!("(e) haproxy -> gateway: {url}");
    let result = wrk.measure(&url, options.duration).await;
    haproxy.stop().await;
    arms.push(Arm {
        name: "haproxy_gateway",
        description: "HAProxy -> gateway -> replica".into(),
        url,
        result: Some(result?),
        error: None,
    });
    Ok(())
}

/// The one-node federation of arm d: as many HTTP workers as HAProxy threads, room for the
/// function, a local queue that never limits `connections`, the given offload strategy.
fn fog_topology(
    proxy_threads: usize,
    connections: usize,
    strategy: &str,
) -> anyhow::Result<Topology> {
    let cores = proxy_threads.max(1);
    let text = format!(
        "[marketplace]\nauction_rule = \"vickrey\"\nauction_timeout_ms = 2000\n\n\
         [[node]]\nname = \"fog-1\"\nowner = \"bench\"\ncpu = \"{} cpu\"\nmemory = \"8 GiB\"\n\
         http_workers = {cores}\n\
         pricing = {{ model = \"quadratic\", aa = 0.01, bb = 0.1, electricity = 0.9 }}\n\
         offload = {{ strategy = \"{strategy}\", max_concurrency = {} }}\n",
        cores + 2,
        connections.max(16)
    );
    Topology::parse(&text).context("the proxy benchmark's topology")
}

/// Starts the one-node federation, places echo with provisioning and measures its invoke URL.
async fn fog_arm(
    options: &ProxyBenchOptions,
    wrk: &WrkRun<'_>,
    dir: &Path,
    proxy_threads: usize,
    strategy: &str,
) -> anyhow::Result<(String, WrkResult)> {
    let topology = fog_topology(proxy_threads, options.connections, strategy)?;
    let mut launch = LaunchOptions::new(dir)?;
    launch.bin_dir = options.bin_dir.clone();
    launch.readiness_deadline = Duration::from_secs(60);
    let federation = Federation::start(topology, launch)
        .await
        .context("the fog arm's federation did not start")?;
    let result = async {
        let url = place_echo(&federation, proxy_threads).await?;
        eprintln!("(d) fog node ({strategy}): {url}");
        let r = wrk.measure(&url, options.duration).await?;
        Ok::<_, anyhow::Error>((url, r))
    }
    .await;
    federation.stop().await?;
    result
}

/// Places echo on the only node with provisioning; its `invokeUrl` once it answers 200.
async fn place_echo(federation: &Federation, cores: usize) -> anyhow::Result<String> {
    let client = http_client();
    let body = json!({
        "sla": {
            "cpu": format!("{cores} cpu"),
            "memory": "64 MB",
            "duration": "30 min",
            "latencyMax": "1000 ms",
            "functionImage": ECHO_IMAGE,
            "functionLiveName": "echo",
        },
        "targetNode": "fog-1",
    });
    let resp = client
        .put(format!(
            "{}/api/function?provision=true",
            federation.marketplace_url()
        ))
        .json(&body)
        .send()
        .await
        .context("PUT /api/function?provision=true")?;
    let status = resp.status();
    let placed: serde_json::Value = signed_http::read_json(resp, crate::launcher::MAX_ANSWER)
        .await
        .map_err(|e| anyhow::anyhow!("PUT /api/function?provision=true: {e}"))?;
    if !status.is_success() || placed["state"] != "live" {
        bail!("placing echo failed ({status}): {placed:#}");
    }
    let url = placed["invokeUrl"]
        .as_str()
        .or_else(|| placed["chosen"]["invokeUrl"].as_str())
        .with_context(|| format!("no invokeUrl in the placement: {placed:#}"))?
        .to_string();
    // The node learns the route from the marketplace's table: wait for a 200.
    poll(
        DEADLINE,
        Duration::from_millis(50),
        async || match client.post(&url).body("warm").send().await {
            Ok(r) if r.status().is_success() => Ok(Check::Done(())),
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                Ok(Check::NotYet(format!("{status}: {body}")))
            }
            Err(e) => Ok(Check::NotYet(e.to_string())),
        },
        |last| anyhow!("{url} does not answer 200 within {DEADLINE:?} (last: {last})"),
    )
    .await?;
    Ok(url)
}

/// Writes `proxy.json` and `proxy.md` into `dir`.
pub fn write_report(report: &ProxyBenchReport, dir: &Path) -> anyhow::Result<()> {
    crate::bench::write_results(dir, "proxy", report, &report.markdown())
}

#[cfg(test)]
mod tests {
    use super::*;
    use measure::markdown::squeeze_spaces;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:40000/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  456.00us  12.34ms   90.00%
    Req/Sec    18.52k     1.23k   20.00k    70.00%
  Latency Distribution
     50%  700.00us
     75%    1.10ms
     90%    1.50ms
     99%    3.20ms
  184321 requests in 10.01s, 20.12MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  18414.68
Transfer/sec:      2.01MB
";

    #[test]
    fn wrk_latency_output_is_parsed_with_its_units() {
        let r = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(r.requests, 184_321);
        assert!((r.elapsed_s - 10.01).abs() < 1e-9);
        assert!((r.requests_per_s - 18414.68).abs() < 1e-9);
        // (184321 - 12 - 3) / 10.01 s
        assert!(
            (r.ok_per_s - 184_306.0 / 10.01).abs() < 1e-6,
            "{}",
            r.ok_per_s
        );
        assert_eq!((r.non_2xx, r.socket_errors), (12, 3));
        assert!((r.latency_avg_ms - 0.812).abs() < 1e-9);
        assert!((r.latency_max_ms - 12.34).abs() < 1e-9);
        assert!((r.p50_ms - 0.7).abs() < 1e-9);
        assert!((r.p75_ms - 1.1).abs() < 1e-9);
        assert!((r.p90_ms - 1.5).abs() < 1e-9);
        assert!((r.p99_ms - 3.2).abs() < 1e-9);
    }

    #[test]
    fn wrk_output_without_errors_or_with_seconds_parses_too() {
        let text = WRK_OUTPUT
            .replace("  Non-2xx or 3xx responses: 12\n", "")
            .replace(
                "  Socket errors: connect 0, read 2, write 0, timeout 1\n",
                "",
            )
            .replace("3.20ms", "1.05s");
        let r = parse_wrk(&text).unwrap();
        assert_eq!((r.non_2xx, r.socket_errors), (0, 0));
        assert!((r.p99_ms - 1050.0).abs() < 1e-9);
        assert_eq!(wrk_ms("1.50m"), Some(90_000.0));
        assert_eq!(wrk_ms("3.00parsecs"), None);
        assert_eq!(wrk_ms("fast"), None);
    }

    #[test]
    fn truncated_wrk_output_is_an_error_that_shows_it() {
        let e = parse_wrk("Running 10s test @ http://x/\n").unwrap_err();
        let m = format!("{e:#}");
        assert!(
            m.contains("requests in") && m.contains("Running 10s"),
            "{m}"
        );
        let no_99 = WRK_OUTPUT.replace("     99%    3.20ms\n", "");
        let m = format!("{:#}", parse_wrk(&no_99).unwrap_err());
        assert!(m.contains("99%"), "{m}");
    }

    #[test]
    fn the_haproxy_config_is_minimal_and_names_the_server() {
        let c = haproxy_config(4242, "127.0.0.1:9000", 2);
        assert!(c.contains("bind 127.0.0.1:4242"), "{c}");
        assert!(c.contains("server s1 127.0.0.1:9000"), "{c}");
        assert!(c.contains("nbthread 2"), "{c}");
        assert!(c.contains("mode http"), "{c}");
    }

    #[test]
    fn the_fog_topology_is_one_node_with_workers_and_a_wide_queue() {
        let t = fog_topology(2, 64, "static").unwrap();
        let n = t.node("fog-1").unwrap();
        assert_eq!(n.http_workers, Some(2));
        let o = n.offload.as_ref().unwrap();
        assert_eq!(o["max_concurrency"].as_integer(), Some(64));
        assert_eq!(o["strategy"].as_str(), Some("static"));
        assert_eq!(n.cpu, model::Cpu::from_cores(4));
    }

    fn arm(name: &'static str, rps: f64, p50: f64, p99: f64) -> Arm {
        let mut r = parse_wrk(WRK_OUTPUT).unwrap();
        r.requests_per_s = rps;
        r.ok_per_s = rps;
        r.p50_ms = p50;
        r.p99_ms = p99;
        Arm {
            name,
            description: name.to_string(),
            url: String::new(),
            result: Some(r),
            error: None,
        }
    }

    #[test]
    fn ratios_divide_throughput_and_latency_and_skip_missing_arms() {
        let mut arms = vec![
            arm("direct", 20_000.0, 0.5, 2.0),
            arm("haproxy", 15_000.0, 0.8, 3.0),
            arm("haproxy_gateway", 8_000.0, 1.5, 5.0),
            arm("fog", 10_000.0, 1.0, 4.0),
        ];
        let r = ratio_of(&arms, "fog", "direct").unwrap();
        assert_eq!((r.throughput, r.p50, r.p99), (0.5, 2.0, 2.0));
        let r = ratio_of(&arms, "fog", "haproxy_gateway").unwrap();
        assert_eq!(r.throughput, 1.25);
        arms[3].result = None;
        arms[3].error = Some("no data plane".into());
        assert!(ratio_of(&arms, "fog", "direct").is_none());
        assert!(ratio_of(&arms, "haproxy", "direct").is_some());
        let report = ProxyBenchReport {
            benchmark: "proxy",
            machine: Machine::detect(),
            commit: None,
            started_at_unix_ms: 0,
            wrk_version: "wrk 4.1.0".into(),
            haproxy_version: "HAProxy version 2.6".into(),
            duration_s: 10.0,
            warm_up_s: 1.0,
            connections: 16,
            wrk_threads: 1,
            body_bytes: 64,
            proxy_threads: 2,
            load_average_before: Some(0.5),
            load_average_after: None,
            ratios: vec![ratio_of(&arms, "haproxy", "direct").unwrap()],
            arms,
        };
        let dir = tempfile::tempdir().unwrap();
        write_report(&report, dir.path()).unwrap();
        let md = squeeze_spaces(&std::fs::read_to_string(dir.path().join("proxy.md")).unwrap());
        assert!(
            md.contains("| haproxy / direct | 0.75x | 1.60x | 1.50x |"),
            "{md}"
        );
        assert!(md.contains("| fog | fog | failed: no data plane |"), "{md}");
        assert!(md.contains("cores**"), "{md}");
        assert!(md.contains("before / after: 0.50 / ?"), "{md}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("proxy.json")).unwrap())
                .unwrap();
        assert_eq!(json["arms"][0]["result"]["requests_per_s"], 20_000.0);
        assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    }
}
