//! `fog_node`: one Fogmarket fog node.
//!
//! It owns the node's configuration ([`config`]), its enrollment and heartbeats with the
//! marketplace and its neighbour latency probes ([`membership`]), bidding and relaying SLAs
//! over the overlay tree by placement strategy ([`bidding`]), resource holds, reservations and
//! placement lifetime ([`node`]), deployment to OpenFaaS — a real gateway or the embedded one
//! ([`faas`], [`provision`]) — the HTTP API ([`routes`]), and run-time routing and offloading
//! of invocations: the route table ([`directory`]), the data plane ([`dataplane`]), the
//! control plane between nodes ([`control`]), their shared state ([`offload`]),
//! [`metrics`], and in-process emulation of link latencies between nodes sharing a machine
//! ([`emulation`]). Pure rules (pricing,
//! strategies, ledger, latency model) live in `model`.

pub mod app;
pub mod bidding;
pub mod client;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod directory;
pub mod emulation;
pub mod error;
pub mod faas;
pub mod haproxy;
pub mod haproxy_mode;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod offload;
pub mod provision;
pub mod routes;

pub use app::Application;
pub use config::Config;
