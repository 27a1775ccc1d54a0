//! The state layer: the node's data and the methods that read and change it, with no
//! background work and no HTTP. It knows only the base modules (configuration, clients,
//! backend, errors) and `model`; [`node::Node`] gathers the rest.

pub mod book;
pub mod cpu;
pub mod function;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod offload;
pub mod peer;
pub mod routes;
pub mod usage;
