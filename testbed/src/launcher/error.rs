//! Why a federation could not be started or driven ([`LaunchError`]), for every part of the
//! launcher.

use std::time::Duration;

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

pub(super) type Result<T, E = LaunchError> = std::result::Result<T, E>;

pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let context = context.into();
    move |source| LaunchError::Io { context, source }
}
