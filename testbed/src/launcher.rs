//! A local launcher: starts the real `marketplace` and `fog-node` binaries as child processes on
//! loopback, one per node of a [`Topology`], and waits until the federation is ready.
//!
//! Every child runs in its own process group (so a kill reaches anything it starts), has its
//! stderr in a log file in the run directory, and announces its port on stdout
//! (`listening on http://IP:PORT`), so everything binds port 0. Readiness is polled with
//! deadlines, never slept for. Dropping a [`Federation`] kills every child; on Linux children
//! also get SIGKILL when the launching thread dies (no orphans after a crashed test).

use crate::topology::{NodeSpec, Topology};
use model::NodeId;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// Name of the marketplace binary.
pub const MARKETPLACE_BIN: &str = "marketplace";
/// Name of the fog node binary.
pub const FOG_NODE_BIN: &str = "fog-node";

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a graceful stop waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a log shown in an error.
const LOG_TAIL_LINES: usize = 20;

/// Why the federation could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("binary `{binary}` not found in {dir}; build with `cargo build --workspace --bins`")]
    BinaryNotFound { binary: String, dir: String },
    #[error("cannot locate the current executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {process} ({binary}): {source}")]
    Spawn {
        process: String,
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{process} did not print `listening on http://IP:PORT` on stdout within {deadline:?} ({why}); log {log}:\n{tail}"
    )]
    NoListeningLine {
        process: String,
        deadline: Duration,
        why: String,
        log: String,
        tail: String,
    },
    #[error("{process} exited ({status}) while {during}; log {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        during: String,
        log: String,
        tail: String,
    },
    #[error(
        "{process} at {url} did not answer GET /api/health with 200 within {deadline:?}; log {log}"
    )]
    NotHealthy {
        process: String,
        url: String,
        deadline: Duration,
        log: String,
    },
    #[error("nodes not registered and alive at the marketplace within {deadline:?}: {}", .missing.join("; "))]
    NotRegistered {
        deadline: Duration,
        /// One entry per missing node: its name, what is wrong and where its log is.
        missing: Vec<String>,
    },
    #[error("nodes do not know their overlay neighbours within {deadline:?}: {}", .missing.join("; "))]
    NeighboursUnknown {
        deadline: Duration,
        missing: Vec<String>,
    },
    #[error("no node is named `{0}`")]
    UnknownNode(String),
    #[error("the marketplace is not running")]
    MarketplaceNotRunning,
    #[error("cannot build the node configuration of `{node}`: {reason}")]
    Config { node: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

type Result<T, E = LaunchError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let context = context.into();
    move |source| LaunchError::Io { context, source }
}

/// The directory holding the workspace binaries: the directory of the current executable, or
/// its parent when that is a `deps` directory (integration tests run from `target/debug/deps`).
pub fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
    let dir = exe
        .parent()
        .ok_or_else(|| {
            LaunchError::CurrentExe(std::io::Error::other(format!(
                "{} has no parent directory",
                exe.display()
            )))
        })?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(parent) = dir.parent()
    {
        return Ok(parent.to_path_buf());
    }
    Ok(dir)
}

/// Finds `binary` in `dir`, with an error that says how to build it.
pub fn find_binary(dir: &Path, binary: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{binary}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LaunchError::BinaryNotFound {
            binary: binary.to_string(),
            dir: dir.display().to_string(),
        })
    }
}

/// An HTTP client for loopback: no proxy (a developer's `HTTP_PROXY` must not capture
/// 127.0.0.1), bounded timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        // Building only fails on a broken TLS backend; we build without TLS.
        .unwrap_or_default()
}

/// [`http_client`] that also trusts `ca_pem` (and only it) for `https://` URLs: the client
/// of a federation started with [`LaunchOptions::tls`].
pub fn http_client_trusting(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let options = signed_http::ClientOptions {
        tls_ca: ca_pem.map(<[u8]>::to_vec),
        ..signed_http::ClientOptions::default()
    };
    let builder = signed_http::builder(&options).map_err(|e| LaunchError::Tls(e.to_string()))?;
    builder
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LaunchError::Tls(signed_http::error_chain(&e)))
}

/// Largest answer the launcher reads from the marketplace or a node.
pub const MAX_ANSWER: usize = signed_http::DEFAULT_MAX_ANSWER;

/// How to launch a federation.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Where `marketplace` and `fog-node` are (see [`default_bin_dir`]).
    pub bin_dir: PathBuf,
    /// Node configs, logs, state directories and the default SQLite database go here.
    pub run_dir: PathBuf,
    /// The marketplace's database; `None` is SQLite in `run_dir`.
    pub database_url: Option<String>,
    /// The marketplace's listen address; `127.0.0.1:0` picks a free port.
    pub marketplace_listen: String,
    /// Shared by the marketplace and the nodes for enrollment; random per run by default.
    pub enrollment_secret: String,
    /// Deadline for each readiness phase (port line, health, registration, neighbours).
    pub readiness_deadline: Duration,
    /// Wait until every node lists its overlay neighbours (so auctions relay over the whole
    /// tree from the first request).
    pub wait_for_neighbours: bool,
    /// Emulate the topology's link latencies in process (`[link_emulation]` in every node's
    /// config): traffic between nodes is delayed by the one-way latency of its overlay path.
    /// On for `testbed run` (`just run`); off by default so tests run at loopback speed.
    pub emulate_links: bool,
    /// Extra environment of every process started (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT` to
    /// export traces; the launcher's own environment is inherited too).
    pub env: Vec<(String, String)>,
    /// Serve every API over HTTPS: a throwaway CA and one certificate per process are made
    /// in `<run_dir>/tls/` (see [`crate::tls`]); every member, and the launcher's client,
    /// trusts that CA.
    pub tls: bool,
}

impl LaunchOptions {
    /// Defaults: binaries next to the current executable, marketplace on `127.0.0.1:0`,
    /// SQLite in `run_dir`, a random enrollment secret, 30 s readiness deadline.
    pub fn new(run_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self {
            bin_dir: default_bin_dir()?,
            run_dir: run_dir.into(),
            database_url: None,
            marketplace_listen: "127.0.0.1:0".to_string(),
            enrollment_secret: random_secret(),
            readiness_deadline: Duration::from_secs(30),
            wait_for_neighbours: true,
            emulate_links: false,
            env: Vec::new(),
            tls: false,
        })
    }
}

/// A fresh random enrollment secret.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The `[link_emulation]` table of one node: the one-way latency of the overlay path to
/// every other node of its tree, by name.
pub fn link_emulation(topology: &Topology, node: &NodeSpec) -> toml::Table {
    let mut one_way = toml::Table::new();
    for other in topology.nodes() {
        if other.name == node.name {
            continue;
        }
        if let Some(l) = topology.path_latency(&node.name, &other.name) {
            one_way.insert(other.name.clone(), l.to_string().into());
        }
    }
    let mut t = toml::Table::new();
    t.insert("one_way".into(), toml::Value::Table(one_way));
    t
}

/// The configuration file of one node, as a TOML table (fields in docs/ARCHITECTURE.md).
/// `[links]` holds the parent's link latency under the parent's name and each child's link
/// latency under the child's name, so both ends of a link know it.
pub fn node_config(
    topology: &Topology,
    node: &NodeSpec,
    marketplace_url: &str,
    enrollment_secret: &str,
    state_dir: &Path,
) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), node.name.clone().into());
    t.insert("owner".into(), node.owner.clone().into());
    t.insert(
        "tags".into(),
        toml::Value::Array(node.tags.iter().cloned().map(toml::Value::from).collect()),
    );
    if let Some(p) = &node.parent {
        t.insert("parent".into(), p.clone().into());
    }
    t.insert("listen".into(), "127.0.0.1:0".into());
    t.insert("marketplace_url".into(), marketplace_url.into());
    t.insert("enrollment_secret".into(), enrollment_secret.into());
    t.insert("state_dir".into(), state_dir.display().to_string().into());
    t.insert("strategy".into(), node.strategy.clone().into());
    // Many nodes share this machine: one HTTP worker each keeps threads near the core count,
    // unless the topology asks for more (benchmarks of a single node's data plane).
    let workers = node.http_workers.unwrap_or(1);
    t.insert(
        "http_workers".into(),
        toml::Value::Integer(workers.min(i64::MAX as u64) as i64),
    );
    if let Some(n) = node.max_auctions_in_flight {
        t.insert(
            "max_auctions_in_flight".into(),
            toml::Value::Integer(n as i64),
        );
    }
    let mut capacity = toml::Table::new();
    capacity.insert("cpu".into(), node.cpu.to_string().into());
    capacity.insert("memory".into(), node.memory.to_string().into());
    t.insert("capacity".into(), toml::Value::Table(capacity));
    if !node.pricing.is_empty() {
        t.insert("pricing".into(), toml::Value::Table(node.pricing.clone()));
    }
    let mut links = toml::Table::new();
    if let (Some(p), Some(l)) = (&node.parent, node.latency) {
        links.insert(p.clone(), l.to_string().into());
    }
    for child in topology.children(&node.name) {
        if let Some(l) = child.latency {
            links.insert(child.name.clone(), l.to_string().into());
        }
    }
    t.insert("links".into(), toml::Value::Table(links));
    if let Some(chaos) = &node.chaos {
        t.insert("chaos".into(), toml::Value::Table(chaos.clone()));
    }
    if let Some(offload) = &node.offload {
        t.insert("offload".into(), toml::Value::Table(offload.clone()));
    }
    t
}

/// One running child process.
struct Proc {
    label: String,
    binary: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    stdout_log: PathBuf,
}

impl Proc {
    fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
    }

    /// Sends `signal` to the process group (the child is its group leader).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            // ESRCH (already gone) is fine.
            let _ = killpg(pid, signal);
        }
    }

    /// Kills the group now and reaps the child without blocking (for `Drop`).
    fn kill_now(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
        self.child = None;
    }

    /// SIGKILL and wait until the process is gone.
    async fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            child
                .wait()
                .await
                .map_err(io_err(format!("waiting for {} to die", self.label)))?;
        }
        self.child = None;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) -> Result<()> {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.as_mut()
            && tokio::time::timeout(grace, child.wait()).await.is_ok()
        {
            // Exited on SIGTERM; make sure nothing is left in its group.
            self.signal(Signal::SIGKILL);
            self.child = None;
            return Ok(());
        }
        self.kill().await
    }

    /// `Some(status)` if the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    fn exited_error(&mut self, during: &str) -> Option<LaunchError> {
        let status = self.exited()?;
        Some(LaunchError::Exited {
            process: self.label.clone(),
            status: status.to_string(),
            during: during.to_string(),
            log: self.log.display().to_string(),
            tail: log_tail(&self.log),
        })
    }
}

/// The last lines of a log file, indented, for error messages.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            if lines.is_empty() {
                "    (log is empty)".to_string()
            } else {
                lines[start..]
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("    (cannot read log: {e})"),
    }
}

/// Starts a child in its own process group with stderr to `log`, stdout piped.
fn spawn(
    label: &str,
    binary: &Path,
    args: &[String],
    envs: &[(String, String)],
    log: &Path,
) -> Result<(Child, ChildStdout)> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("cannot open log file {}", log.display())))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true);
    // A developer's environment must not override what the launcher configures
    // (fog-node reads FOG_NODE_* over its file; the marketplace reads DATABASE_URL etc.).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("FOG_NODE_") || key.starts_with("FOGMARKET_") || key == "DATABASE_URL" {
            cmd.env_remove(key.as_ref());
        }
    }
    // Logs go to files: no colour escapes in them.
    if std::env::var_os("NO_COLOR").is_none() {
        cmd.env("NO_COLOR", "1");
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
        process: label.to_string(),
        binary: binary.display().to_string(),
        source,
    })?;
    let stdout = child.stdout.take().ok_or_else(|| LaunchError::Spawn {
        process: label.to_string(),
        binary: binary.display().to_string(),
        source: std::io::Error::other("stdout was not captured"),
    })?;
    Ok((child, stdout))
}

/// Reads stdout until `listening on http://IP:PORT`, then keeps copying the rest of stdout to
/// `stdout_log` in the background (so the child never blocks on a full pipe).
async fn read_listening_line(
    proc: &Proc,
    stdout: ChildStdout,
    deadline: Duration,
) -> Result<SocketAddr> {
    let mut reader = BufReader::new(stdout);
    let fail = |why: String| LaunchError::NoListeningLine {
        process: proc.label.clone(),
        deadline,
        why,
        log: proc.log.display().to_string(),
        tail: log_tail(&proc.log),
    };
    let found = tokio::time::timeout(deadline, async {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) => return Err("stdout closed: the process exited".to_string()),
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
        Ok(Err(why)) => return Err(fail(why)),
        Err(_) => return Err(fail("timed out".to_string())),
    };
    let stdout_log = proc.stdout_log.clone();
    tokio::spawn(async move {
        if let Ok(mut file) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_log)
            .await
        {
            let _ = tokio::io::copy_buf(&mut reader, &mut file).await;
        }
    });
    Ok(addr)
}

/// `listening on http://127.0.0.1:41234` (or `https://…`) -> the address; an unspecified IP (0.0.0.0) is
/// reached on loopback.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))
        .unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let mut addr: SocketAddr = rest.parse().ok()?;
    if addr.ip().is_unspecified() {
        let loopback = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        addr.set_ip(loopback);
    }
    Some(addr)
}

fn url_of(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

/// A node as `GET /api/fog` lists it (only the fields the launcher needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FogEntry {
    pub id: NodeId,
    pub name: String,
    #[serde(default)]
    pub alive: bool,
    #[serde(default)]
    pub url: String,
}

/// `GET /api/fog`: a JSON array, or an object with a `nodes` array.
pub async fn list_fog(
    client: &reqwest::Client,
    marketplace_url: &str,
) -> Result<Vec<FogEntry>, String> {
    let resp = client
        .get(format!("{marketplace_url}/api/fog"))
        .send()
        .await
        .map_err(|e| format!("GET /api/fog: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET /api/fog: status {}", resp.status()));
    }
    let value: serde_json::Value = signed_http::read_json(resp, MAX_ANSWER)
        .await
        .map_err(|e| format!("GET /api/fog: {e}"))?;
    let list = match value {
        serde_json::Value::Object(mut m) => m.remove("nodes").unwrap_or_default(),
        v => v,
    };
    serde_json::from_value(list).map_err(|e| format!("GET /api/fog: unexpected shape: {e}"))
}

async fn is_healthy(client: &reqwest::Client, url: &str) -> bool {
    match client
        .get(format!("{url}/api/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

struct NodeProc {
    proc: Proc,
    url: String,
    id: Option<NodeId>,
}

/// A running federation: one marketplace and one fog node process per topology node.
pub struct Federation {
    topology: Topology,
    options: LaunchOptions,
    client: reqwest::Client,
    marketplace: Proc,
    marketplace_addr: SocketAddr,
    database_url: String,
    nodes: BTreeMap<String, NodeProc>,
    /// `https` with [`LaunchOptions::tls`], else `http`.
    scheme: &'static str,
    /// The run's CA certificate, with [`LaunchOptions::tls`].
    ca: Option<(PathBuf, String)>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("marketplace", &self.marketplace_url())
            .field("run_dir", &self.options.run_dir)
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|(n, p)| (n.as_str(), p.url.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Federation {
    /// Writes the node configs, starts the marketplace and every node, and returns once every
    /// process answers `GET /api/health`, every node is registered and alive at the marketplace
    /// and (with `wait_for_neighbours`) knows its overlay neighbours.
    pub async fn start(topology: Topology, options: LaunchOptions) -> Result<Federation> {
        let marketplace_bin = find_binary(&options.bin_dir, MARKETPLACE_BIN)?;
        let node_bin = find_binary(&options.bin_dir, FOG_NODE_BIN)?;
        std::fs::create_dir_all(&options.run_dir).map_err(io_err(format!(
            "cannot create run directory {}",
            options.run_dir.display()
        )))?;
        let run_dir = std::fs::canonicalize(&options.run_dir).map_err(io_err(format!(
            "cannot resolve run directory {}",
            options.run_dir.display()
        )))?;
        let options = LaunchOptions {
            run_dir: run_dir.clone(),
            ..options
        };
        let database_url = options.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                run_dir.join("marketplace.db").display()
            )
        });
        // TLS material before any process: every member gets its certificate and the CA.
        let tls_dir = run_dir.join("tls");
        let ca = if options.tls {
            Some(crate::tls::RunCa::create(&tls_dir).map_err(|e| LaunchError::Tls(e.to_string()))?)
        } else {
            None
        };
        let certify = |who: &str| -> Result<Option<toml::Table>> {
            let Some(ca) = &ca else {
                return Ok(None);
            };
            let files = ca
                .certify(who)
                .map_err(|e| LaunchError::Tls(e.to_string()))?;
            let mut t = toml::Table::new();
            t.insert("cert".into(), files.cert.display().to_string().into());
            t.insert("key".into(), files.key.display().to_string().into());
            t.insert("ca".into(), ca.ca_path().display().to_string().into());
            Ok(Some(t))
        };
        let client = http_client_trusting(ca.as_ref().map(|c| c.ca_pem().as_bytes()))?;
        let scheme = if ca.is_some() { "https" } else { "http" };
        let deadline = options.readiness_deadline;

        // The marketplace first: nodes need its URL.
        let settings = topology.marketplace();
        let mut args = vec![
            "--listen".to_string(),
            options.marketplace_listen.clone(),
            "--database-url".to_string(),
            database_url.clone(),
            "--auction-rule".to_string(),
            settings.auction_rule.clone(),
            "--auction-timeout-ms".to_string(),
            settings.auction_timeout_ms.to_string(),
        ];
        if let Some(h) = settings.heartbeat_interval_ms {
            args.push("--heartbeat-interval-ms".to_string());
            args.push(h.to_string());
        }
        if let Some(tls) = certify("marketplace")? {
            for field in ["cert", "key", "ca"] {
                args.push(format!("--tls-{field}"));
                args.push(tls[field].as_str().unwrap_or_default().to_string());
            }
        }
        // The secret goes through the environment, not the command line (visible in `ps`).
        let mut envs = options.env.clone();
        envs.push((
            "FOGMARKET_ENROLLMENT_SECRET".to_string(),
            options.enrollment_secret.clone(),
        ));
        let mut marketplace = Proc {
            label: "marketplace".to_string(),
            binary: marketplace_bin,
            args,
            envs,
            child: None,
            log: run_dir.join("marketplace.log"),
            stdout_log: run_dir.join("marketplace.stdout.log"),
        };
        let marketplace_addr = start_proc(&mut marketplace, deadline).await?;
        let marketplace_url = url_of(scheme, marketplace_addr);
        // From here on, `federation` owns the children: an early return kills them on drop.
        let mut federation = Federation {
            topology,
            options,
            client,
            marketplace,
            marketplace_addr,
            database_url,
            nodes: BTreeMap::new(),
            scheme,
            ca: ca
                .as_ref()
                .map(|c| (c.ca_path().to_path_buf(), c.ca_pem().to_string())),
        };
        federation
            .wait_healthy_marketplace(Instant::now() + deadline)
            .await?;

        // Every node's config, then every node at once.
        let nodes_dir = run_dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .map_err(io_err(format!("cannot create {}", nodes_dir.display())))?;
        let mut pending = Vec::new();
        for spec in federation.topology.nodes() {
            let state_dir = nodes_dir.join(format!("{}-state", spec.name));
            std::fs::create_dir_all(&state_dir)
                .map_err(io_err(format!("cannot create {}", state_dir.display())))?;
            let mut config = node_config(
                &federation.topology,
                spec,
                &marketplace_url,
                &federation.options.enrollment_secret,
                &state_dir,
            );
            if federation.options.emulate_links {
                config.insert(
                    "link_emulation".into(),
                    toml::Value::Table(link_emulation(&federation.topology, spec)),
                );
            }
            let label: String = spec
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if let Some(tls) = certify(&format!("node-{label}"))? {
                config.insert("tls".into(), toml::Value::Table(tls));
            }
            let text = toml::to_string(&config).map_err(|e| LaunchError::Config {
                node: spec.name.clone(),
                reason: e.to_string(),
            })?;
            let config_path = nodes_dir.join(format!("{}.toml", spec.name));
            std::fs::write(&config_path, text)
                .map_err(io_err(format!("cannot write {}", config_path.display())))?;
            let mut proc = Proc {
                label: format!("fog node `{}`", spec.name),
                binary: node_bin.clone(),
                args: vec!["--config".to_string(), config_path.display().to_string()],
                envs: federation.options.env.clone(),
                child: None,
                log: nodes_dir.join(format!("{}.log", spec.name)),
                stdout_log: nodes_dir.join(format!("{}.stdout.log", spec.name)),
            };
            let (child, stdout) =
                spawn(&proc.label, &proc.binary, &proc.args, &proc.envs, &proc.log)?;
            proc.child = Some(child);
            pending.push((spec.name.clone(), proc, stdout));
        }
        // Read every port line concurrently; keep every process owned even on error.
        let mut reads = Vec::new();
        let mut procs = Vec::new();
        for (name, proc, stdout) in pending {
            procs.push((name, proc));
            reads.push(stdout);
        }
        let addrs = futures::future::join_all(
            procs
                .iter()
                .zip(reads)
                .map(|((_, proc), stdout)| read_listening_line(proc, stdout, deadline)),
        )
        .await;
        let mut first_error = None;
        for ((name, proc), addr) in procs.into_iter().zip(addrs) {
            let url = match addr {
                Ok(a) => url_of(scheme, a),
                Err(e) => {
                    first_error.get_or_insert(e);
                    String::new()
                }
            };
            federation.nodes.insert(
                name,
                NodeProc {
                    proc,
                    url,
                    id: None,
                },
            );
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let ready_by = Instant::now() + deadline;
        federation.wait_healthy_nodes(ready_by).await?;
        federation
            .wait_registered(Instant::now() + deadline)
            .await?;
        if federation.options.wait_for_neighbours {
            federation
                .wait_neighbours(Instant::now() + deadline)
                .await?;
        }
        Ok(federation)
    }

    async fn wait_healthy_marketplace(&mut self, deadline: Instant) -> Result<()> {
        let url = self.marketplace_url();
        loop {
            if is_healthy(&self.client, &url).await {
                return Ok(());
            }
            if let Some(e) = self.marketplace.exited_error("waiting for GET /api/health") {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::NotHealthy {
                    process: "marketplace".to_string(),
                    url,
                    deadline: self.options.readiness_deadline,
                    log: self.marketplace.log.display().to_string(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn wait_healthy_nodes(&mut self, deadline: Instant) -> Result<()> {
        let client = self.client.clone();
        loop {
            let waiting: Vec<(String, String)> = self
                .nodes
                .iter()
                .map(|(n, p)| (n.clone(), p.url.clone()))
                .collect();
            let checks =
                futures::future::join_all(waiting.iter().map(|(_, url)| is_healthy(&client, url)))
                    .await;
            let unhealthy: Vec<&(String, String)> = waiting
                .iter()
                .zip(checks)
                .filter(|(_, ok)| !ok)
                .map(|(w, _)| w)
                .collect();
            let Some((name, url)) = unhealthy.first() else {
                return Ok(());
            };
            for (name, _) in &unhealthy {
                if let Some(node) = self.nodes.get_mut(name.as_str())
                    && let Some(e) = node.proc.exited_error("waiting for GET /api/health")
                {
                    return Err(e);
                }
            }
            if Instant::now() >= deadline {
                let log = self
                    .nodes
                    .get(name.as_str())
                    .map(|n| n.proc.log.display().to_string())
                    .unwrap_or_default();
                return Err(LaunchError::NotHealthy {
                    process: format!("fog node `{name}`"),
                    url: url.clone(),
                    deadline: self.options.readiness_deadline,
                    log,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn check_processes(&mut self, during: &str) -> Result<()> {
        if let Some(e) = self.marketplace.exited_error(during) {
            return Err(e);
        }
        for node in self.nodes.values_mut() {
            if let Some(e) = node.proc.exited_error(during) {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn wait_registered(&mut self, deadline: Instant) -> Result<()> {
        loop {
            let listed = list_fog(&self.client, &self.marketplace_url()).await;
            let mut missing = Vec::new();
            match &listed {
                Ok(entries) => {
                    for (name, node) in self.nodes.iter_mut() {
                        match entries.iter().find(|e| &e.name == name) {
                            Some(e) if e.alive => node.id = Some(e.id),
                            Some(e) => {
                                node.id = Some(e.id);
                                missing.push(format!(
                                    "`{name}` is registered but not alive (log {})",
                                    node.proc.log.display()
                                ));
                            }
                            None => missing.push(format!(
                                "`{name}` is not registered (log {})",
                                node.proc.log.display()
                            )),
                        }
                    }
                }
                Err(e) => missing.push(format!(
                    "the marketplace does not list nodes: {e} (log {})",
                    self.marketplace.log.display()
                )),
            }
            if missing.is_empty() {
                return Ok(());
            }
            self.check_processes("waiting for every node to register")?;
            if Instant::now() >= deadline {
                return Err(LaunchError::NotRegistered {
                    deadline: self.options.readiness_deadline,
                    missing,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Every node's `GET /api/state` lists its parent and children as neighbours.
    async fn wait_neighbours(&mut self, deadline: Instant) -> Result<()> {
        #[derive(Deserialize)]
        struct StateNeighbour {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct State {
            #[serde(default)]
            node_id: Option<NodeId>,
            #[serde(default)]
            neighbours: Vec<StateNeighbour>,
        }
        let expected: BTreeMap<String, Vec<String>> = self
            .topology
            .nodes()
            .iter()
            .map(|n| {
                let mut want: Vec<String> = n.parent.iter().cloned().collect();
                want.extend(self.topology.children(&n.name).map(|c| c.name.clone()));
                (n.name.clone(), want)
            })
            .collect();
        loop {
            let client = self.client.clone();
            let urls: Vec<(String, String)> = self
                .nodes
                .iter()
                .map(|(n, p)| (n.clone(), p.url.clone()))
                .collect();
            let states = futures::future::join_all(urls.iter().map(|(_, url)| {
                let client = client.clone();
                async move {
                    let resp = client.get(format!("{url}/api/state")).send().await.ok()?;
                    signed_http::read_json::<State>(resp, MAX_ANSWER).await.ok()
                }
            }))
            .await;
            let mut missing = Vec::new();
            for ((name, _), state) in urls.iter().zip(states) {
                let want = expected.get(name).cloned().unwrap_or_default();
                match state {
                    None => missing.push(format!("`{name}`: GET /api/state failed")),
                    Some(s) if s.node_id.is_none() => {
                        missing.push(format!("`{name}`: not registered yet (nodeId is null)"))
                    }
                    Some(s) => {
                        let absent: Vec<&String> = want
                            .iter()
                            .filter(|w| !s.neighbours.iter().any(|n| &n.name == *w))
                            .collect();
                        if !absent.is_empty() {
                            missing.push(format!(
                                "`{name}` does not list {}",
                                absent
                                    .iter()
                                    .map(|a| format!("`{a}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            self.check_processes("waiting for nodes to learn their neighbours")?;
            if Instant::now() >= deadline {
                return Err(LaunchError::NeighboursUnknown {
                    deadline: self.options.readiness_deadline,
                    missing,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls `GET /api/fog` until every node still running is listed as alive.
    pub async fn wait_until_all_alive(&mut self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        loop {
            let mut missing = Vec::new();
            match list_fog(&self.client, &self.marketplace_url()).await {
                Ok(entries) => {
                    for (name, node) in &self.nodes {
                        if node.proc.child.is_none() {
                            continue; // killed on purpose
                        }
                        if !entries.iter().any(|e| &e.name == name && e.alive) {
                            missing.push(format!("`{name}` (log {})", node.proc.log.display()));
                        }
                    }
                }
                Err(e) => missing.push(e),
            }
            if missing.is_empty() {
                return Ok(());
            }
            self.check_processes("waiting for every node to be alive")?;
            if Instant::now() >= until {
                return Err(LaunchError::NotRegistered { deadline, missing });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `http://127.0.0.1:PORT` of the marketplace (`https://` with [`LaunchOptions::tls`]).
    pub fn marketplace_url(&self) -> String {
        url_of(self.scheme, self.marketplace_addr)
    }

    /// Whether every API is served over HTTPS ([`LaunchOptions::tls`]).
    pub fn tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The run's CA certificate file, with [`LaunchOptions::tls`].
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|(path, _)| path.as_path())
    }

    /// The run's CA certificate (PEM), with [`LaunchOptions::tls`].
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_ref().map(|(_, pem)| pem.as_bytes())
    }

    /// The node's own URL (`http://127.0.0.1:PORT`, or `https://…`).
    pub fn node_url(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(|n| n.url.as_str())
    }

    /// The id the marketplace gave the node.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.get(name).and_then(|n| n.id)
    }

    /// The name of the node with this id.
    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, n)| n.id == Some(id))
            .map(|(name, _)| name.as_str())
    }

    /// Node names, sorted.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Whether link latencies are emulated in process ([`LaunchOptions::emulate_links`]).
    pub fn emulates_links(&self) -> bool {
        self.options.emulate_links
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn run_dir(&self) -> &Path {
        &self.options.run_dir
    }

    /// The marketplace's database URL (SQLite in the run directory unless given).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The stderr log of a node, or of the marketplace for `"marketplace"`.
    pub fn log_path(&self, name: &str) -> Option<&Path> {
        if name == "marketplace" {
            return Some(&self.marketplace.log);
        }
        self.nodes.get(name).map(|n| n.proc.log.as_path())
    }

    /// The HTTP client the launcher uses (no proxy; trusts the run's CA with TLS).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// SIGKILLs a node (its whole process group) and waits until it is gone.
    pub async fn kill_node(&mut self, name: &str) -> Result<()> {
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| LaunchError::UnknownNode(name.to_string()))?;
        node.proc.kill().await
    }

    /// SIGKILLs the marketplace (kill -9: no graceful shutdown) and waits until it is gone.
    pub async fn kill_marketplace(&mut self) -> Result<()> {
        self.marketplace.kill().await
    }

    /// Starts the marketplace again on the same address and database (after
    /// [`kill_marketplace`](Self::kill_marketplace), or kills it first), and waits until it
    /// answers `GET /api/health`. Nodes keep their configured marketplace URL.
    pub async fn restart_marketplace(&mut self) -> Result<()> {
        if self.marketplace.child.is_some() {
            self.marketplace.kill().await?;
        }
        // Same port as the first start, so the nodes find it again.
        let listen = self.marketplace_addr.to_string();
        for pair in self.marketplace.args.chunks_mut(2) {
            if pair[0] == "--listen" && pair.len() == 2 {
                pair[1] = listen.clone();
            }
        }
        let deadline = self.options.readiness_deadline;
        let addr = start_proc(&mut self.marketplace, deadline).await?;
        self.marketplace_addr = addr;
        self.wait_healthy_marketplace(Instant::now() + deadline)
            .await
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period. Nodes first.
    pub async fn stop(mut self) -> Result<()> {
        let grace = STOP_GRACE;
        let results =
            futures::future::join_all(self.nodes.values_mut().map(|n| n.proc.stop(grace))).await;
        let marketplace = self.marketplace.stop(grace).await;
        results.into_iter().collect::<Result<Vec<_>>>()?;
        marketplace
    }
}

/// Spawns `proc` and reads its port line.
async fn start_proc(proc: &mut Proc, deadline: Duration) -> Result<SocketAddr> {
    let (child, stdout) = spawn(&proc.label, &proc.binary, &proc.args, &proc.envs, &proc.log)?;
    proc.child = Some(child);
    match read_listening_line(proc, stdout, deadline).await {
        Ok(addr) => Ok(addr),
        Err(e) => {
            proc.kill_now();
            Err(e)
        }
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            node.proc.kill_now();
        }
        self.marketplace.kill_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = r#"
[[node]]
name = "cloud"
owner = "c"
cpu = "4 cpu"
memory = "4 GiB"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "r1"
owner = "m"
parent = "cloud"
latency = "15 ms"
cpu = "2 cpu"
memory = "2 GiB"

[[node]]
name = "e1"
owner = "a"
parent = "r1"
latency = "4.5 ms"
cpu = "1 cpu"
memory = "1 GiB"
chaos = { refuse_accept = true }
"#;

    #[test]
    fn link_emulation_lists_the_path_latency_to_every_other_node() {
        let t = Topology::parse(TREE).unwrap();
        let e1 = link_emulation(&t, t.node("e1").unwrap());
        let one_way = e1["one_way"].as_table().unwrap();
        assert_eq!(one_way.len(), 2, "{one_way:?}");
        assert_eq!(one_way["r1"].as_str(), Some("4500 us"));
        assert_eq!(one_way["cloud"].as_str(), Some("19500 us"));
        let cloud = link_emulation(&t, t.node("cloud").unwrap());
        assert_eq!(cloud["one_way"]["e1"].as_str(), Some("19500 us"));
        assert!(cloud["one_way"].get("cloud").is_none());
    }

    #[test]
    fn both_ends_of_a_link_know_its_latency() {
        let t = Topology::parse(TREE).unwrap();
        let dir = Path::new("/tmp/x");
        let r1 = node_config(&t, t.node("r1").unwrap(), "http://127.0.0.1:1", "s", dir);
        let links = r1["links"].as_table().unwrap();
        assert_eq!(links["cloud"].as_str(), Some("15 ms"));
        assert_eq!(links["e1"].as_str(), Some("4500 us"));
        let cloud = node_config(&t, t.node("cloud").unwrap(), "http://127.0.0.1:1", "s", dir);
        assert_eq!(cloud["links"]["r1"].as_str(), Some("15 ms"));
        assert!(cloud.get("parent").is_none());
        let e1 = node_config(&t, t.node("e1").unwrap(), "http://127.0.0.1:1", "s", dir);
        assert_eq!(e1["links"].as_table().unwrap().len(), 1);
        assert_eq!(e1["chaos"]["refuse_accept"].as_bool(), Some(true));
    }

    #[test]
    fn a_node_config_has_every_contract_field() {
        let t = Topology::parse(TREE).unwrap();
        let c = node_config(
            &t,
            t.node("cloud").unwrap(),
            "http://127.0.0.1:9",
            "secret",
            Path::new("/tmp/state"),
        );
        assert_eq!(c["name"].as_str(), Some("cloud"));
        assert_eq!(c["owner"].as_str(), Some("c"));
        assert_eq!(c["listen"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(c["marketplace_url"].as_str(), Some("http://127.0.0.1:9"));
        assert_eq!(c["enrollment_secret"].as_str(), Some("secret"));
        assert_eq!(c["state_dir"].as_str(), Some("/tmp/state"));
        assert_eq!(c["strategy"].as_str(), Some("auction"));
        assert_eq!(c["capacity"]["cpu"].as_str(), Some("4 cpu"));
        assert_eq!(c["capacity"]["memory"].as_str(), Some("4 GiB"));
        assert_eq!(c["pricing"]["model"].as_str(), Some("quadratic"));
        assert!(c.get("chaos").is_none());
        // The written text parses back to the same table.
        let text = toml::to_string(&c).unwrap();
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn offload_and_http_workers_reach_the_node_config() {
        let mut t = Topology::parse(TREE).unwrap();
        let offload: toml::Table =
            toml::from_str("strategy = \"recalc\"\nmax_rates = { echo = 10 }").unwrap();
        t.set_offload("r1", offload.clone()).unwrap();
        t.set_http_workers("r1", 2).unwrap();
        let dir = Path::new("/tmp/x");
        let r1 = node_config(&t, t.node("r1").unwrap(), "http://127.0.0.1:1", "s", dir);
        assert_eq!(r1["offload"].as_table(), Some(&offload));
        assert_eq!(r1["http_workers"].as_integer(), Some(2));
        let e1 = node_config(&t, t.node("e1").unwrap(), "http://127.0.0.1:1", "s", dir);
        assert!(e1.get("offload").is_none());
        assert_eq!(e1["http_workers"].as_integer(), Some(1));
    }

    #[test]
    fn the_listening_line_gives_a_reachable_address() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:41234\n"),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on http://0.0.0.0:8000"),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on http://[::1]:80/"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listening_line("starting up"), None);
        assert_eq!(parse_listening_line("listening on http://nowhere"), None);
    }

    #[test]
    fn a_missing_binary_error_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_binary(dir.path(), "fog-node").unwrap_err().to_string();
        assert!(err.contains("fog-node"), "{err}");
        assert!(err.contains("cargo build --workspace --bins"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_default_bin_dir_skips_the_deps_directory() {
        let dir = default_bin_dir().unwrap();
        assert_ne!(dir.file_name().unwrap(), "deps");
        let exe = std::env::current_exe().unwrap();
        assert!(exe.starts_with(&dir));
    }

    #[tokio::test]
    async fn a_federation_with_missing_binaries_fails_before_starting_anything() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::BinaryNotFound { .. }), "{err}");
        assert!(!dir.path().join("run").exists());
    }

    /// A stand-in binary (a shell script) that prints the port line and then dies, to check
    /// that an exiting child is reported with its log.
    #[tokio::test]
    async fn a_marketplace_that_exits_is_reported_with_its_log() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (bin, script) in [
            (
                MARKETPLACE_BIN,
                "#!/bin/sh\necho 'database is on fire' >&2\nexit 3\n",
            ),
            (FOG_NODE_BIN, "#!/bin/sh\nexit 1\n"),
        ] {
            let path = dir.path().join(bin);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        options.readiness_deadline = Duration::from_secs(5);
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("marketplace"), "{err}");
        assert!(err.contains("database is on fire"), "{err}");
    }

    /// Stand-ins that announce a port but never answer: the health deadline is reported, and
    /// the child processes are killed (their group is gone afterwards).
    #[tokio::test]
    async fn a_marketplace_that_never_gets_healthy_times_out_and_is_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "#!/bin/sh\necho $$ > {}\necho 'listening on http://127.0.0.1:9'\nexec sleep 60\n",
            pid_file.display()
        );
        for bin in [MARKETPLACE_BIN, FOG_NODE_BIN] {
            let path = dir.path().join(bin);
            std::fs::write(&path, &script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        options.readiness_deadline = Duration::from_millis(500);
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::NotHealthy { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The child was SIGKILLed and reaped (or is being reaped): poll until it is gone.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let alive = nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true);
            if !alive {
                break;
            }
            assert!(std::time::Instant::now() < until, "process {pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
