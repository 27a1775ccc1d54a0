//! A local launcher: starts the real `marketplace` and `fog-node` binaries as child processes on
//! loopback, one per node of a [`Topology`](crate::topology::Topology), and waits until the
//! federation is ready.
//!
//! Every child runs in its own process group (so a kill reaches anything it starts), has its
//! stderr in a log file in the run directory, and announces its port on stdout
//! (`listening on http://IP:PORT`), so everything binds port 0. Readiness is polled with
//! deadlines, never slept for. Dropping a [`Federation`] kills every child; on Linux children
//! also get SIGKILL when the launching thread dies (no orphans after a crashed test).
//!
//! - `error`: why a launch or a wait failed ([`LaunchError`]);
//! - `options`: what to launch with ([`LaunchOptions`]);
//! - `config`: each node's configuration file, typed and written as TOML;
//! - `process`: the binaries, and spawning, reading and stopping one child process;
//! - `client`: the HTTP clients for loopback;
//! - `tls`: each member's certificate files when the run serves HTTPS;
//! - `federation`: starting, driving and stopping the whole federation;
//! - `readiness`: the waits until every process is healthy, registered and linked.

mod client;
mod config;
mod error;
mod federation;
mod options;
mod process;
mod readiness;
mod supervision;
mod tls;

pub use client::{MAX_ANSWER, http_client, http_client_trusting};
pub use config::{Capacity, LinkEmulation, NodeConfig};
pub use error::LaunchError;
pub use federation::Federation;
pub use options::{LaunchOptions, random_secret};
pub use process::{
    FOG_NODE_BIN, MARKETPLACE_BIN, default_bin_dir, find_binary, log_tail, parse_listening_line,
};
pub(crate) use process::{read_until_listening, tie_to_parent};
pub use readiness::{FogEntry, list_fog};
pub use supervision::{Event as SupervisionEvent, Member, Supervision};
