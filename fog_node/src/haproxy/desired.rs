//! What HAProxy should route ([`Desired`]): functions, their servers and weights, checked
//! and normalised, with the driver's settings and errors.

use super::*;

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

/// Longest backend / server / alias name we accept.
pub(super) const MAX_NAME_LEN: usize = 100;

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

pub(super) fn validate_name(what: &'static str, value: &str) -> Result<(), HaproxyError> {
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

pub(super) fn validate_header(name: &str, value: &str) -> Result<(), HaproxyError> {
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

pub(super) fn desired_weights(desired: &Desired) -> BTreeMap<(String, String), u32> {
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
