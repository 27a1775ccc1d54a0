//! The tasks layer: what the node does over time on top of its state — membership
//! (enrollment, heartbeats, neighbour probes), route sync, the offloading control loop,
//! bidding over the overlay, provisioning, and keeping HAProxy in step in HAProxy mode.

pub mod bidding;
pub mod control;
pub mod haproxy_mode;
pub mod membership;
pub mod provision;
pub mod route_sync;
