//! `fog_node`: one Fogmarket fog node.
//!
//! It owns the node's configuration ([`config`]), its enrollment and heartbeats with the
//! marketplace and its neighbour latency probes ([`membership`]), bidding and relaying SLAs
//! over the overlay tree by placement strategy ([`bidding`]), resource holds, reservations and
//! placement lifetime ([`node`]), and the HTTP API ([`routes`]). Pure rules (pricing,
//! strategies, ledger, latency model) live in `model`.

pub mod app;
pub mod bidding;
pub mod client;
pub mod config;
pub mod error;
pub mod membership;
pub mod node;
pub mod routes;

pub use app::Application;
pub use config::Config;
