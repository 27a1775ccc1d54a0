//! How a federation is launched: where the binaries are, where its files go, its database,
//! deadlines, link emulation, extra environment and TLS ([`LaunchOptions`]).

use super::error::Result;
use super::process::default_bin_dir;
use std::path::PathBuf;
use std::time::Duration;

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
