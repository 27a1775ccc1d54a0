//! `fog_node`: one Fogmarket fog node, in four layers, each knowing only the layers below it.
//!
//! - **base**: the configuration ([`config`]), the signed client and the header names nodes
//!   use ([`client`]), the data plane's upstream client ([`upstream`]), the OpenFaaS client
//!   ([`faas`]) and the FaaS backend it talks to ([`backend`]), the HAProxy driver
//!   ([`haproxy`]), and the API errors ([`error`]).
//! - **state** ([`state`]): identity, the ledger and placements, neighbours, the route
//!   snapshot, the offload state, usage and metrics; [`state::node::Node`] owns them all.
//! - **tasks** ([`tasks`]): membership, route sync, the control loop, bidding, provisioning and
//!   the HAProxy sync, as functions of the node and the time.
//! - **http** ([`http`]): the routes, the data plane, and link emulation.
//! - **app** ([`app`]): the wiring, and the supervision of the background loops.
//!
//! Pure rules (pricing, strategies, ledger, latency model) live in `model`.

pub mod app;
pub mod backend;
pub mod client;
pub mod config;
pub mod error;
pub mod faas;
pub mod haproxy;
pub mod http;
pub mod state;
pub mod tasks;
pub mod upstream;

pub use app::Application;
pub use config::Config;
