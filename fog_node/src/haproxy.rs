//! HAProxy as a fog node's data plane.
//!
//! This module owns one HAProxy master-worker process (`haproxy -W -db -S <master.sock> -f
//! <haproxy.cfg>`) and everything that process needs: its generated configuration, its
//! master CLI socket, its admin ("stats") socket and its stderr log, all inside
//! [`HaproxySettings::work_dir`]; plus a tiny built-in HTTP/1 *reject listener* that answers
//! every request with `429 Too Many Requests` (the target of [`ServerKind::Reject`] servers).
//!
//! The node's control loop computes per-function weights (local gateway / each peer / reject,
//! per mille) every 250 ms and hands them to [`Haproxy::apply`]:
//!
//! * when only weights changed, `apply` sends `set weight <backend>/<server> <w>` for the
//!   servers whose weight changed, batched over one admin-socket connection (commands separated
//!   by `;`). No reload, no lost request, counters and the worker PID are kept.
//! * when the *structure* changed (functions, aliases, servers' names or addresses, request
//!   headers), `apply` renders a new configuration, validates it with `haproxy -c`, and asks the
//!   master to `reload`. The admin socket has `expose-fd listeners`, so the new worker inherits
//!   the listening sockets (master-worker passes `-x sockpair@…`): no connection is refused.
//!   `option idle-close-on-response` makes the old worker answer one more request on each idle
//!   keep-alive connection (with `Connection: close`) instead of closing it under the client's
//!   feet. `apply` returns once the new worker answers on the admin socket and the old one
//!   reports `Stopping: 1`, so connections opened afterwards see the new configuration; a
//!   client's *already open, idle* keep-alive connection still gets one last answer from the
//!   old configuration. A `reload` the master did not act on (refused connection, no
//!   re-execution within 3 s) is sent again; success is read from `show proc`'s reload count.
//!
//! Weight semantics: HAProxy weights are `0..=256`; per mille maps proportionally
//! ([`haproxy_weight`]), a positive per mille never maps to 0, and 0 means "no traffic". The
//! backends use `balance random(1)`: plain weighted random over HAProxy's consistent-hash tree,
//! where `set weight` takes effect on the very next request. `roundrobin` is *not* used on
//! purpose: measured with HAProxy 2.6, after weights went 256/0 → 26/230 (a server coming back
//! from 0) the other server got 0 of the next 2000 requests instead of ~10 % (the
//! "re-integration" caveat in the `roundrobin` docs), which our 250 ms weight flips would hit
//! constantly. Plain `random` means `random(2)`, "power of two choices", which bends the
//! weights towards the least loaded server — not wanted either. When every server of a backend
//! has weight 0, HAProxy answers 503.
//!
//! Every request of a function backend gets the backend's `peer_headers` (HAProxy picks the
//! server after the `http-request` rules run, so these cannot depend on the chosen server);
//! a per-server value travels as the server's name (`server_name_header`).
//! A connection failure is retried once on another server (`retries 1` + `option redispatch`).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

/// Name of the frontend in the generated configuration.
pub const FRONTEND_NAME: &str = "fogmarket";
/// Backend answering 404 for paths that route to no function.
pub const NOT_FOUND_BACKEND: &str = "fogmarket_not_found";
/// Prefix of every function backend: `fn_<service>` (see [`backend_name`]).
pub const BACKEND_PREFIX: &str = "fn_";
/// Highest weight HAProxy accepts for a server.
pub const MAX_HAPROXY_WEIGHT: u32 = 256;
/// Weights are expressed per mille by the control loop.
pub const PER_MILLE: u32 = 1000;

/// How long `start` waits for the first worker to answer on the admin socket.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long `apply` waits for a reloaded worker to answer on the admin socket.
const RELOAD_DEADLINE: Duration = Duration::from_secs(15);
/// After this long without the master re-executing, a `reload` is considered lost and resent.
const RELOAD_RESEND: Duration = Duration::from_secs(3);
/// How long one CLI exchange may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `haproxy -c` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop` lets HAProxy terminate after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Interval between two readiness probes while polling against a deadline.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Longest CLI line we send; HAProxy's CLI reads a line into one buffer (bufsize 16 kB).
const MAX_CLI_LINE: usize = 8 * 1024;
/// `sun_path` is 108 bytes; HAProxy binds `<path>.<pid>.tmp` first, keep room for it.
const MAX_SOCKET_PATH: usize = 90;
/// Longest backend / server / alias name we accept.
const MAX_NAME_LEN: usize = 100;

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// Where and how to run HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxySettings {
    /// The `haproxy` executable: a path, or a bare name looked up in `PATH`. Default `haproxy`.
    pub binary: PathBuf,
    /// Directory for the generated config, the sockets and the log. Created if missing; the
    /// driver never deletes it nor anything it did not create.
    pub work_dir: PathBuf,
    /// Frontend bind address. The port must be concrete (see [`free_port`]).
    pub listen: SocketAddr,
}

impl HaproxySettings {
    /// Settings with the default binary (`haproxy` from `PATH`).
    pub fn new(work_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        HaproxySettings {
            binary: PathBuf::from("haproxy"),
            work_dir: work_dir.into(),
            listen,
        }
    }
}

/// A port that was free a moment ago: binds `127.0.0.1:0`, reads the port, releases it.
/// (Racy by nature; good enough for tests and for picking a frontend port at start-up.)
pub fn free_port() -> std::io::Result<u16> {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// What HAProxy should route: one backend per function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub functions: Vec<FunctionBackend>,
}

/// One function: its routes, its servers and the headers set on each of its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionBackend {
    /// OpenFaaS service name; `/function/<service>` and `/function/<service>/...` route here.
    pub service: String,
    /// Other names routed to the same backend (`/function/<alias>[/...]`).
    pub aliases: Vec<String>,
    pub servers: Vec<ServerSpec>,
    /// When set, every request carries the chosen server's name in this header
    /// (`http-send-name-header`): how a per-peer value (the pair's token) travels, since the
    /// `http-request` rules run before a server is chosen.
    pub server_name_header: Option<String>,
    /// Headers set (replacing any client value) on every request of this backend.
    pub peer_headers: Vec<(String, String)>,
}

/// One server of a function backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: String,
    /// Ignored for [`ServerKind::Reject`]: those point at the built-in reject listener.
    pub addr: SocketAddr,
    /// 0..=1000.
    pub weight_per_mille: u32,
    pub kind: ServerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerKind {
    /// This node's FaaS gateway.
    Local,
    /// Another fog node's data plane.
    Peer,
    /// The driver's built-in 429 listener.
    Reject,
}

/// What [`Haproxy::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The configuration was rewritten and HAProxy reloaded.
    pub reloaded: bool,
    /// Number of `set weight` commands sent over the Runtime API.
    pub weight_commands: usize,
}

/// One row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    pub addr: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_uweight`: the current (user-set) weight, 0..=256.
    pub weight: u32,
    /// `srv_iweight`: the weight from the configuration.
    pub initial_weight: u32,
}

/// Everything that can go wrong driving HAProxy.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    #[error(
        "invalid {what} {value:?}: {reason} (allowed: 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_.-])"
    )]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("server {backend}/{server}: weight {weight} per mille is above {PER_MILLE}")]
    InvalidWeight {
        backend: String,
        server: String,
        weight: u32,
    },
    #[error("duplicate {what} {value:?}")]
    Duplicate { what: &'static str, value: String },
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
    #[error(
        "HAProxy binary {binary:?} not found ({detail}); install it (e.g. `apt-get install haproxy`) or set HaproxySettings::binary"
    )]
    BinaryNotFound { binary: PathBuf, detail: String },
    #[error("cannot spawn {binary:?}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`haproxy -c` rejected the generated configuration {path:?}:\n{output}")]
    ConfigCheck { path: PathBuf, output: String },
    #[error("runtime API command {command:?} answered: {answer}")]
    Runtime { command: String, answer: String },
    #[error("CLI socket {path:?} ({command:?}): {source}")]
    Socket {
        path: PathBuf,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "timed out after {after:?} waiting for {what}; last error: {last}; log tail:\n{log_tail}"
    )]
    Timeout {
        what: String,
        after: Duration,
        last: String,
        log_tail: String,
    },
    #[error("HAProxy exited ({status}); log tail:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("HAProxy reload failed: {detail}; log tail:\n{log_tail}")]
    ReloadFailed { detail: String, log_tail: String },
}

/// Maps a per-mille weight to HAProxy's 0..=256, rounding to nearest; a positive per mille
/// never becomes 0. Values above 1000 saturate at 256.
pub fn haproxy_weight(per_mille: u32) -> u32 {
    if per_mille == 0 {
        return 0;
    }
    let w = (u64::from(per_mille.min(PER_MILLE)) * u64::from(MAX_HAPROXY_WEIGHT)
        + u64::from(PER_MILLE / 2))
        / u64::from(PER_MILLE);
    (w as u32).clamp(1, MAX_HAPROXY_WEIGHT)
}

/// The HAProxy backend name of a function service.
pub fn backend_name(service: &str) -> String {
    format!("{BACKEND_PREFIX}{service}")
}

/// Parses `show servers state` (format version 1) into rows; unknown lines are skipped.
pub fn parse_servers_state(text: &str) -> Vec<ServerState> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
            // srv_uweight srv_iweight ...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 {
                return None;
            }
            Some(ServerState {
                backend: f[1].to_string(),
                server: f[3].to_string(),
                addr: f[4].to_string(),
                op_state: f[5].parse().ok()?,
                weight: f[7].parse().ok()?,
                initial_weight: f[8].parse().ok()?,
            })
        })
        .collect()
}

impl Desired {
    /// Validates every name, header and weight and returns the normalised form the driver
    /// works on: functions sorted by service, aliases sorted and deduplicated, servers sorted
    /// by name (header order is kept: a later `set-header` of the same name wins).
    pub fn normalised(&self) -> Result<Desired, HaproxyError> {
        let mut functions = self.functions.clone();
        let mut routes = BTreeSet::new();
        let mut services = BTreeSet::new();
        for f in &mut functions {
            validate_name("function service", &f.service)?;
            if !services.insert(f.service.clone()) {
                return Err(HaproxyError::Duplicate {
                    what: "function service",
                    value: f.service.clone(),
                });
            }
            f.aliases.sort();
            f.aliases.dedup();
            f.aliases.retain(|a| a != &f.service);
            for name in std::iter::once(&f.service).chain(&f.aliases) {
                validate_name("function alias", name)?;
                if !routes.insert(name.clone()) {
                    return Err(HaproxyError::Duplicate {
                        what: "route name (service or alias)",
                        value: name.clone(),
                    });
                }
            }
            f.servers.sort_by(|a, b| a.name.cmp(&b.name));
            let mut names = BTreeSet::new();
            for s in &f.servers {
                validate_name("server name", &s.name)?;
                if !names.insert(s.name.as_str()) {
                    return Err(HaproxyError::Duplicate {
                        what: "server name",
                        value: format!("{}/{}", f.service, s.name),
                    });
                }
                if s.weight_per_mille > PER_MILLE {
                    return Err(HaproxyError::InvalidWeight {
                        backend: f.service.clone(),
                        server: s.name.clone(),
                        weight: s.weight_per_mille,
                    });
                }
                if s.kind != ServerKind::Reject
                    && (s.addr.port() == 0 || s.addr.ip().is_unspecified())
                {
                    return Err(HaproxyError::InvalidSettings(format!(
                        "server {}/{} has no concrete address: {}",
                        f.service, s.name, s.addr
                    )));
                }
            }
            for (name, value) in &f.peer_headers {
                validate_header(name, value)?;
            }
            if let Some(name) = &f.server_name_header {
                validate_header(name, "")?;
            }
        }
        functions.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(Desired { functions })
    }
}

fn validate_name(what: &'static str, value: &str) -> Result<(), HaproxyError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value.len() > MAX_NAME_LEN {
        Some("too long")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("contains a character outside [A-Za-z0-9_.-]")
    } else if value.bytes().all(|b| b == b'.') {
        Some("only dots")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(HaproxyError::InvalidName {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_header(name: &str, value: &str) -> Result<(), HaproxyError> {
    let bad = |reason: String| HaproxyError::InvalidHeader {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("name must be 1-100 characters".into()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(bad(format!(
            "name {name:?} contains a character outside [A-Za-z0-9_.-]"
        )));
    }
    if value.len() > 1024 {
        return Err(bad("value longer than 1024 bytes".into()));
    }
    if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(bad(format!(
            "value {value:?} contains {c:?}; only printable ASCII is allowed"
        )));
    }
    Ok(())
}

/// The part of a [`Desired`] whose change requires a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Structure {
    functions: Vec<FunctionStructure>,
}

/// A function's routes, servers (name, effective address) and request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FunctionStructure {
    service: String,
    aliases: Vec<String>,
    servers: Vec<(String, SocketAddr)>,
    headers: Vec<(String, String)>,
}

/// What the running worker is known to have.
#[derive(Debug, Clone)]
struct Applied {
    structure: Structure,
    /// (backend, server) -> HAProxy weight.
    weights: BTreeMap<(String, String), u32>,
}

/// A running HAProxy plus the reject listener. Dropping it kills HAProxy's process group.
pub struct Haproxy {
    binary: PathBuf,
    listen: SocketAddr,
    cfg_path: PathBuf,
    admin_sock: PathBuf,
    master_sock: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    pgid: i32,
    reject_addr: SocketAddr,
    reject_task: JoinHandle<()>,
    /// `None` after a failed apply: the next apply reloads from scratch.
    applied: Option<Applied>,
}

impl std::fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Haproxy")
            .field("binary", &self.binary)
            .field("listen", &self.listen)
            .field("cfg_path", &self.cfg_path)
            .field("pgid", &self.pgid)
            .field("reject_addr", &self.reject_addr)
            .finish_non_exhaustive()
    }
}

impl Haproxy {
    /// Writes an initial configuration (no functions), starts the reject listener and
    /// `haproxy -W -db -S <master.sock> -f <haproxy.cfg>` in its own process group, and waits
    /// (against a deadline) until the worker answers on the admin socket.
    pub async fn start(settings: HaproxySettings) -> Result<Haproxy, HaproxyError> {
        if settings.listen.port() == 0 {
            return Err(HaproxyError::InvalidSettings(format!(
                "listen address {} has port 0; pick a concrete port (see free_port())",
                settings.listen
            )));
        }
        let binary = resolve_binary(&settings.binary)?;
        tokio::fs::create_dir_all(&settings.work_dir)
            .await
            .map_err(|source| io_err(format!("creating {:?}", settings.work_dir), source))?;
        let work_dir = tokio::fs::canonicalize(&settings.work_dir)
            .await
            .map_err(|source| io_err(format!("resolving {:?}", settings.work_dir), source))?;
        let admin_sock = work_dir.join("admin.sock");
        let master_sock = work_dir.join("master.sock");
        if let Some(c) = work_dir
            .to_string_lossy()
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"'#,$\\".contains(*c))
        {
            return Err(HaproxyError::InvalidSettings(format!(
                "work_dir {work_dir:?} contains {c:?}, which HAProxy's config and -S syntax cannot take"
            )));
        }
        for sock in [&admin_sock, &master_sock] {
            if sock.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(HaproxyError::InvalidSettings(format!(
                    "socket path {sock:?} is longer than {MAX_SOCKET_PATH} bytes; use a shorter work_dir"
                )));
            }
        }
        let cfg_path = work_dir.join("haproxy.cfg");
        let log_path = work_dir.join("haproxy.log");

        let (reject_addr, reject_task) = start_reject_listener()
            .await
            .map_err(|source| io_err("starting the reject listener", source))?;

        let mut haproxy = Haproxy {
            binary,
            listen: settings.listen,
            cfg_path,
            admin_sock,
            master_sock,
            log_path,
            child: None,
            pgid: 0,
            reject_addr,
            reject_task,
            applied: None,
        };
        let empty = Desired::default();
        haproxy.write_checked_config(&empty).await?;
        haproxy.spawn().await?;
        haproxy.wait_for_worker(None, START_DEADLINE).await?;
        haproxy.applied = Some(Applied {
            structure: haproxy.structure(&empty),
            weights: BTreeMap::new(),
        });
        tracing::info!(listen = %haproxy.listen, reject = %haproxy.reject_addr, pid = haproxy.pgid, "haproxy started");
        Ok(haproxy)
    }

    /// Makes HAProxy route `desired`. Structural changes rewrite the config and reload
    /// seamlessly; pure weight changes go through `set weight` on the Runtime API.
    pub async fn apply(&mut self, desired: &Desired) -> Result<ApplyOutcome, HaproxyError> {
        let desired = desired.normalised()?;
        self.check_alive()?;
        let structure = self.structure(&desired);
        let weights = desired_weights(&desired);

        let same_structure = matches!(&self.applied, Some(a) if a.structure == structure);
        if !same_structure {
            self.applied = None;
            self.reload(&desired).await?;
            self.applied = Some(Applied { structure, weights });
            return Ok(ApplyOutcome {
                reloaded: true,
                weight_commands: 0,
            });
        }

        let known = self
            .applied
            .as_ref()
            .map(|a| a.weights.clone())
            .unwrap_or_default();
        let commands: Vec<String> = weights
            .iter()
            .filter(|(key, w)| known.get(*key) != Some(*w))
            .map(|((backend, server), w)| format!("set weight {backend}/{server} {w}"))
            .collect();
        if let Err(e) = self.send_batched(&commands).await {
            // What the worker has is unknown now: resend everything next time.
            if let Some(a) = self.applied.as_mut() {
                a.weights.clear();
            }
            return Err(e);
        }
        if let Some(a) = self.applied.as_mut() {
            a.weights = weights;
        }
        if !commands.is_empty() {
            tracing::debug!(count = commands.len(), "haproxy weights updated");
        }
        Ok(ApplyOutcome {
            reloaded: false,
            weight_commands: commands.len(),
        })
    }

    /// One raw Runtime API exchange on the admin socket (`level admin`). Several commands
    /// may be separated by `;`; the answer is returned as is (errors are answer text).
    pub async fn runtime(&self, command: &str) -> Result<String, HaproxyError> {
        if command.contains(['\n', '\r']) {
            return Err(HaproxyError::Runtime {
                command: command.to_string(),
                answer: "refused by the driver: one line only, separate commands with ';'".into(),
            });
        }
        cli(&self.admin_sock, command).await
    }

    /// The PID of the worker currently answering the admin socket (`show info` → `Pid`).
    pub async fn worker_pid(&self) -> Result<u32, HaproxyError> {
        let info = self.runtime("show info").await?;
        parse_info_pid(&info).ok_or_else(|| HaproxyError::Runtime {
            command: "show info".into(),
            answer: info,
        })
    }

    /// Base URL of the frontend, e.g. `http://127.0.0.1:8080`.
    pub fn frontend_url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// Address of the built-in reject listener (429 for everything).
    pub fn reject_addr(&self) -> SocketAddr {
        self.reject_addr
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.cfg_path
    }

    /// HAProxy's stderr (alerts and warnings; there is no access log).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops HAProxy (SIGTERM to its process group, SIGKILL after a grace period) and the
    /// reject listener. Files in `work_dir` are left in place.
    pub async fn stop(mut self) {
        self.reject_task.abort();
        if let Some(mut child) = self.child.take() {
            signal_group(self.pgid, SIGTERM);
            if timeout(STOP_GRACE, child.wait()).await.is_err() {
                tracing::warn!(pgid = self.pgid, "haproxy ignored SIGTERM; killing");
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            // Workers of older generations (still draining) live in the same group.
            signal_group(self.pgid, SIGKILL);
        }
    }

    // ---- internals ----

    fn structure(&self, desired: &Desired) -> Structure {
        Structure {
            functions: desired
                .functions
                .iter()
                .map(|f| FunctionStructure {
                    service: f.service.clone(),
                    aliases: f.aliases.clone(),
                    servers: f
                        .servers
                        .iter()
                        .map(|s| (s.name.clone(), self.effective_addr(s)))
                        .collect(),
                    headers: f
                        .server_name_header
                        .iter()
                        .map(|h| (h.clone(), "<server name>".to_string()))
                        .chain(f.peer_headers.iter().cloned())
                        .collect(),
                })
                .collect(),
        }
    }

    fn effective_addr(&self, server: &ServerSpec) -> SocketAddr {
        match server.kind {
            ServerKind::Reject => self.reject_addr,
            ServerKind::Local | ServerKind::Peer => server.addr,
        }
    }

    fn render_config(&self, desired: &Desired) -> String {
        let mut c = String::new();
        let admin = self.admin_sock.display();
        // `writeln!` into a String cannot fail.
        let _ = writeln!(
            c,
            "# Generated by the Fogmarket fog node (haproxy driver). Rewritten on every structural\n\
             # change; weights change at run time through the admin socket.\n\
             global\n\
             \x20   master-worker\n\
             \x20   # never share the frontend port with another process; reloads hand the\n\
             \x20   # listening sockets over (expose-fd listeners) and do not need SO_REUSEPORT\n\
             \x20   noreuseport\n\
             \x20   stats socket {admin} mode 600 level admin expose-fd listeners\n\
             \x20   stats timeout 30s\n\
             \x20   maxconn 4096\n\
             \x20   # old workers finish in-flight requests, then leave (> timeout server)\n\
             \x20   hard-stop-after 90s\n\
             \n\
             defaults\n\
             \x20   mode http\n\
             \x20   # no `log` line: no access log; alerts go to stderr\n\
             \x20   maxconn 4096\n\
             \x20   option http-keep-alive\n\
             \x20   option idle-close-on-response\n\
             \x20   option redispatch\n\
             \x20   retries 1\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             \x20   timeout http-request 10s\n\
             \x20   timeout http-keep-alive 15s\n\
             \x20   timeout queue 5s\n\
             \x20   http-error status 502 content-type application/json string '{{\"error\":\"bad_gateway\",\"message\":\"the function server failed\"}}'\n\
             \x20   http-error status 503 content-type application/json string '{{\"error\":\"unavailable\",\"message\":\"no server can take this function now\"}}'\n\
             \x20   http-error status 504 content-type application/json string '{{\"error\":\"timeout\",\"message\":\"the function server did not answer in time\"}}'\n\
             \n\
             frontend {FRONTEND_NAME}\n\
             \x20   bind {}",
            haproxy_addr(self.listen)
        );
        for f in &desired.functions {
            let backend = backend_name(&f.service);
            let names: Vec<&String> = std::iter::once(&f.service).chain(&f.aliases).collect();
            let exact: Vec<String> = names.iter().map(|n| format!("/function/{n}")).collect();
            let prefix: Vec<String> = names.iter().map(|n| format!("/function/{n}/")).collect();
            let _ = writeln!(c, "    acl {backend} path {}", exact.join(" "));
            let _ = writeln!(c, "    acl {backend} path_beg {}", prefix.join(" "));
            let _ = writeln!(c, "    use_backend {backend} if {backend}");
        }
        let _ = writeln!(
            c,
            "    default_backend {NOT_FOUND_BACKEND}\n\
             \n\
             backend {NOT_FOUND_BACKEND}\n\
             \x20   http-request return status 404 content-type application/json string '{{\"error\":\"not_found\",\"message\":\"no function is routed at this path\"}}'"
        );
        for f in &desired.functions {
            let _ = writeln!(
                c,
                "\nbackend {}\n    balance random(1)",
                backend_name(&f.service)
            );
            for (name, value) in &f.peer_headers {
                let _ = writeln!(
                    c,
                    "    http-request set-header {name} \"{}\"",
                    escape_log_format(value)
                );
            }
            if let Some(name) = &f.server_name_header {
                let _ = writeln!(c, "    http-send-name-header {name}");
            }
            for s in &f.servers {
                let _ = writeln!(
                    c,
                    "    server {} {} weight {}",
                    s.name,
                    haproxy_addr(self.effective_addr(s)),
                    haproxy_weight(s.weight_per_mille)
                );
            }
        }
        c
    }

    /// Renders `desired`, validates it with `haproxy -c` and moves it into place.
    async fn write_checked_config(&self, desired: &Desired) -> Result<(), HaproxyError> {
        let text = self.render_config(desired);
        let tmp = self.cfg_path.with_extension("cfg.new");
        tokio::fs::write(&tmp, &text)
            .await
            .map_err(|source| io_err(format!("writing {tmp:?}"), source))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c")
            .arg("-f")
            .arg(&tmp)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match timeout(CHECK_TIMEOUT, cmd.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(HaproxyError::Spawn {
                    binary: self.binary.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(HaproxyError::Timeout {
                    what: "`haproxy -c`".into(),
                    after: CHECK_TIMEOUT,
                    last: String::new(),
                    log_tail: String::new(),
                });
            }
        };
        if !output.status.success() {
            let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(HaproxyError::ConfigCheck {
                path: tmp,
                output: out,
            });
        }
        tokio::fs::rename(&tmp, &self.cfg_path)
            .await
            .map_err(|source| io_err(format!("renaming {tmp:?}"), source))
    }

    async fn spawn(&mut self) -> Result<(), HaproxyError> {
        let log = std::fs::File::create(&self.log_path)
            .map_err(|source| io_err(format!("creating {:?}", self.log_path), source))?;
        let mut master_arg = self.master_sock.as_os_str().to_owned();
        master_arg.push(",mode,600");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(master_arg)
            .arg("-f")
            .arg(&self.cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| HaproxyError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| HaproxyError::Exited {
            status: "exited immediately".into(),
            log_tail: String::new(),
        })?;
        self.pgid = i32::try_from(pid).unwrap_or(0);
        self.child = Some(child);
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), HaproxyError> {
        let Some(child) = self.child.as_mut() else {
            return Err(HaproxyError::Exited {
                status: "not running".into(),
                log_tail: self.log_tail(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(HaproxyError::Exited {
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                })
            }
            Err(source) => Err(io_err("checking the haproxy process", source)),
        }
    }

    /// Polls the admin socket until a worker other than `old_pid` answers `show info`.
    async fn wait_for_worker(
        &mut self,
        old_pid: Option<u32>,
        deadline: Duration,
    ) -> Result<u32, HaproxyError> {
        let until = Instant::now() + deadline;
        let mut last: String;
        loop {
            self.check_alive()?;
            match cli(&self.admin_sock, "show info").await {
                Ok(info) => match parse_info_pid(&info) {
                    Some(pid) if Some(pid) != old_pid => return Ok(pid),
                    Some(pid) => last = format!("old worker {pid} still answers"),
                    None => last = format!("unexpected `show info` answer: {info:?}"),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the haproxy worker to answer on the admin socket".into(),
                    after: deadline,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn reload(&mut self, desired: &Desired) -> Result<(), HaproxyError> {
        self.write_checked_config(desired).await?;
        let until = Instant::now() + RELOAD_DEADLINE;
        let log_offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let old_pid = self.worker_pid().await.ok();
        let before = self.master_procs(until).await?;
        let mut sent_at = self.send_reload(until).await?;
        let mut last: String;
        let new_pid = loop {
            self.check_alive()?;
            match cli(&self.master_sock, "show proc").await {
                Ok(text) => match parse_show_proc(&text) {
                    Some(now) if now.failed > before.failed => {
                        return Err(HaproxyError::ReloadFailed {
                            detail: format!("master reports {} failed reloads", now.failed),
                            log_tail: self.log_tail(),
                        });
                    }
                    Some(now) if now.reloads > before.reloads => match now.workers.first() {
                        Some(pid) => break *pid,
                        None => last = format!("master lists no worker: {text:?}"),
                    },
                    Some(_) if sent_at.elapsed() >= RELOAD_RESEND => {
                        // The master answers but never re-executed: the reload was lost.
                        tracing::warn!("haproxy master ignored `reload`; sending it again");
                        last = "reload ignored by the master".into();
                        sent_at = self.send_reload(until).await?;
                    }
                    Some(_) => last = "the master has not re-executed yet".into(),
                    None => last = format!("unexpected `show proc` answer: {text:?}"),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the master to start a new worker after reload".into(),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        };
        // The new worker answers the admin socket once it runs the new configuration.
        loop {
            match self.worker_pid().await {
                Ok(pid) if pid == new_pid => break,
                Ok(pid) => last = format!("worker {pid} answers, waiting for {new_pid}"),
                Err(e) => last = e.to_string(),
            }
            self.check_alive()?;
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: format!("new worker {new_pid} to answer on the admin socket"),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
        // Both generations share the listening sockets; the old worker stops accepting once
        // it has processed its soft-stop (SIGUSR1). Wait for that so that a connection opened
        // after `apply` returns is served by the new configuration.
        if let Some(old) = old_pid.filter(|old| *old != new_pid) {
            loop {
                match cli(&self.master_sock, &format!("@!{old} show info")).await {
                    Ok(answer) if answer.contains("Can't find the target PID") => break,
                    Ok(answer) if answer.lines().any(|l| l.trim() == "Stopping: 1") => break,
                    Ok(_) | Err(_) => {}
                }
                if Instant::now() >= until {
                    tracing::warn!(old, "old haproxy worker did not report soft-stop in time");
                    break;
                }
                sleep(POLL_INTERVAL).await;
            }
        }
        // In master-worker mode a failed listener hand-over is not fatal: the new worker binds
        // fresh sockets (SO_REUSEPORT) and connections queued on the old ones may be reset.
        let new_log = self.log_since(log_offset);
        if new_log.contains("Failed to get the sockets from the old process") {
            tracing::warn!(
                log = %new_log,
                "haproxy reload was not seamless: listening sockets were not handed over"
            );
        }
        tracing::info!(
            ?old_pid,
            new_pid,
            functions = desired.functions.len(),
            "haproxy reloaded"
        );
        Ok(())
    }

    /// `show proc` on the master, retried until it answers or `until`.
    async fn master_procs(&self, until: Instant) -> Result<MasterProcs, HaproxyError> {
        loop {
            let last = match cli(&self.master_sock, "show proc").await {
                Ok(text) => match parse_show_proc(&text) {
                    Some(procs) => return Ok(procs),
                    None => format!("unexpected `show proc` answer: {text:?}"),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the master CLI to answer `show proc`".into(),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends `reload` to the master CLI. A refused connection (the master CLI listener is
    /// briefly unavailable, e.g. right after start-up under load) certainly did not deliver
    /// the command, so it is retried until `until`. Returns when the command was sent.
    async fn send_reload(&self, until: Instant) -> Result<Instant, HaproxyError> {
        loop {
            let last = match UnixStream::connect(&self.master_sock).await {
                Ok(stream) => {
                    let sent_at = Instant::now();
                    // HAProxy 2.6 answers nothing and closes the connection when it
                    // re-executes; newer versions answer `Success=1` / `Success=0`.
                    let answer = exchange(stream, "reload").await.unwrap_or_default();
                    if answer.contains("Success=0") {
                        return Err(HaproxyError::ReloadFailed {
                            detail: answer,
                            log_tail: self.log_tail(),
                        });
                    }
                    return Ok(sent_at);
                }
                Err(e) => e,
            };
            if Instant::now() >= until {
                return Err(HaproxyError::Socket {
                    path: self.master_sock.clone(),
                    command: "reload".into(),
                    source: last,
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends commands over as few admin-socket connections as possible (one per ~8 kB line);
    /// any answer text means a command failed.
    async fn send_batched(&self, commands: &[String]) -> Result<(), HaproxyError> {
        let mut line = String::new();
        let mut batches = Vec::new();
        for command in commands {
            if !line.is_empty() && line.len() + command.len() + 1 > MAX_CLI_LINE {
                batches.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(command);
        }
        if !line.is_empty() {
            batches.push(line);
        }
        for batch in batches {
            let answer = cli(&self.admin_sock, &batch).await?;
            if !answer.trim().is_empty() {
                return Err(HaproxyError::Runtime {
                    command: batch,
                    answer: answer.trim().to_string(),
                });
            }
        }
        Ok(())
    }

    /// HAProxy's stderr from byte `offset` on.
    fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let start = bytes.len().saturating_sub(4096);
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            }
            Err(e) => format!("(cannot read {:?}: {e})", self.log_path),
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.reject_task.abort();
        if let Some(mut child) = self.child.take() {
            signal_group(self.pgid, SIGKILL);
            // kill_on_drop also kills the master; tokio reaps it in the background.
            let _ = child.start_kill();
        }
    }
}

fn desired_weights(desired: &Desired) -> BTreeMap<(String, String), u32> {
    desired
        .functions
        .iter()
        .flat_map(|f| {
            f.servers.iter().map(|s| {
                (
                    (backend_name(&f.service), s.name.clone()),
                    haproxy_weight(s.weight_per_mille),
                )
            })
        })
        .collect()
}

fn io_err(context: impl Into<String>, source: std::io::Error) -> HaproxyError {
    HaproxyError::Io {
        context: context.into(),
        source,
    }
}

/// HAProxy address syntax: `1.2.3.4:80` or `ipv6@::1:80`.
fn haproxy_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("ipv6@{}:{}", a.ip(), a.port()),
    }
}

/// Escapes a printable-ASCII header value for a weakly quoted log-format argument.
fn escape_log_format(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("%%"),
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn resolve_binary(binary: &Path) -> Result<PathBuf, HaproxyError> {
    let is_file = |p: &Path| p.is_file();
    if binary.as_os_str().is_empty() {
        return Err(HaproxyError::BinaryNotFound {
            binary: binary.to_path_buf(),
            detail: "empty path".into(),
        });
    }
    if binary.components().count() > 1 || binary.is_absolute() {
        return if is_file(binary) {
            Ok(binary.to_path_buf())
        } else {
            Err(HaproxyError::BinaryNotFound {
                binary: binary.to_path_buf(),
                detail: "no such file".into(),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_file(candidate))
        .ok_or_else(|| HaproxyError::BinaryNotFound {
            binary: binary.to_path_buf(),
            detail: format!("not in PATH={}", path.to_string_lossy()),
        })
}

fn parse_info_pid(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The master's view of its processes (`show proc`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MasterProcs {
    /// How many times the master re-executed.
    reloads: u32,
    /// How many of those reloads failed.
    failed: u32,
    /// Current-generation workers (not the old ones still draining).
    workers: Vec<u32>,
}

/// Parses the master's `show proc`; `None` if the master line is missing.
fn parse_show_proc(text: &str) -> Option<MasterProcs> {
    let mut master = None;
    let mut workers = Vec::new();
    let mut in_workers = false;
    for line in text.lines() {
        if line.starts_with('#') {
            in_workers = line.trim() == "# workers";
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_pid, "master", reloads, ..] => {
                let failed = line
                    .split("[failed:")
                    .nth(1)
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                master = reloads.parse().ok().map(|reloads| (reloads, failed));
            }
            [pid, "worker", ..] if in_workers => workers.extend(pid.parse::<u32>().ok()),
            _ => {}
        }
    }
    master.map(|(reloads, failed)| MasterProcs {
        reloads,
        failed,
        workers,
    })
}

/// One CLI exchange: connect, send the line, half-close, read the answer until EOF.
async fn cli(path: &Path, command: &str) -> Result<String, HaproxyError> {
    let socket_err = |source: std::io::Error| HaproxyError::Socket {
        path: path.to_path_buf(),
        command: command.to_string(),
        source,
    };
    let stream = match timeout(CLI_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(socket_err(e)),
        Err(_) => return Err(socket_err(timed_out())),
    };
    exchange(stream, command).await.map_err(socket_err)
}

/// Sends one line on a connected CLI socket and reads the answer until EOF (bounded by
/// [`CLI_TIMEOUT`]).
async fn exchange(mut stream: UnixStream, command: &str) -> std::io::Result<String> {
    let io = async {
        stream.write_all(command.as_bytes()).await?;
        stream.write_all(b"\n").await?;
        // The master CLI only closes after the client half-closes.
        stream.shutdown().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    timeout(CLI_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no complete answer within {CLI_TIMEOUT:?}"),
    )
}

/// Sends `signal` to the process group `pgid` (no-op for pgid <= 1).
fn signal_group(pgid: i32, signal: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the
        // process group HAProxy's master leads (spawned with process_group(0)).
        unsafe {
            kill(-pgid, signal);
        }
    }
}

/// The body of every rejected request.
pub const REJECT_BODY: &str =
    r#"{"error":"overloaded","message":"this fog node is overloaded; retry in a second"}"#;

fn reject_response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(REJECT_BODY.as_bytes())));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(
        "x-fogmarket-reject-reason",
        HeaderValue::from_static("overloaded"),
    );
    headers.insert("x-fogmarket-decision", HeaderValue::from_static("rejected"));
    response
}

/// Binds 127.0.0.1:0 and answers every HTTP/1 request with [`reject_response`].
async fn start_reject_listener() -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts the connection tasks.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(async move {
                            let service = service_fn(|_req: Request<Incoming>| async {
                                Ok::<_, Infallible>(reject_response())
                            });
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reject listener accept failed");
                        sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next() => {}
            }
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_mille_maps_proportionally_and_positive_stays_positive() {
        assert_eq!(haproxy_weight(0), 0);
        assert_eq!(haproxy_weight(1), 1);
        assert_eq!(haproxy_weight(2), 1);
        assert_eq!(haproxy_weight(500), 128);
        assert_eq!(haproxy_weight(100), 26);
        assert_eq!(haproxy_weight(1000), 256);
        assert_eq!(haproxy_weight(5000), 256);
        assert_eq!(haproxy_weight(u32::MAX), 256);
    }

    #[test]
    fn show_proc_is_parsed() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
                    7883            master          1 [failed: 2]   0d00h10m20s     2.6.12\n\
                    # workers\n\
                    29318           worker          0               0d00h00m01s     2.6.12\n\
                    # old workers\n\
                    7886            worker          1               0d00h10m20s     2.6.12\n\
                    # programs\n\n";
        assert_eq!(
            parse_show_proc(text),
            Some(MasterProcs {
                reloads: 1,
                failed: 2,
                workers: vec![29318]
            })
        );
        assert_eq!(parse_show_proc("Unknown command\n"), None);
    }

    #[test]
    fn header_values_are_escaped_for_haproxy() {
        assert_eq!(escape_log_format(r#"a%b"c\d$e"#), r#"a%%b\"c\\d\$e"#);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("x", "fogfn-3f2a.v1_x").is_ok());
        for bad in ["", "a b", "a/b", "..", "é", "a\nb", "a#b"] {
            assert!(validate_name("x", bad).is_err(), "{bad:?}");
        }
    }
}
