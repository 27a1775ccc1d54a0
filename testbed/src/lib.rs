//! `testbed`: runs a whole Fogmarket federation on one machine.
//!
//! - [`topology`]: topology files (the marketplace's settings and a tree of fog nodes with
//!   owners, capacities, prices and link latencies), validated on parse, and a generator of
//!   random GIRAFF-style 4-tier trees.
//! - [`launcher`]: starts the real `marketplace` and `fog-node` binaries as child processes on
//!   loopback (port 0, own process groups, logs per process), waits for readiness with
//!   deadlines, and kills everything on drop. Used by `just run`, the multi-process integration
//!   tests and the benchmark.
//! - [`bench`]: the closed-loop auction benchmark behind `just bench auction`.
//! - [`bench_faas`]: the embedded gateway's cold start, overhead and memory benchmark behind
//!   `just bench faas`.
//!
//! Running on Grid'5000 (EnosLib) and Kubernetes arrives with later issues.

pub mod bench;
pub mod bench_faas;
pub mod launcher;
pub mod topology;

pub use launcher::{
    Federation, LaunchError, LaunchOptions, default_bin_dir, find_binary, http_client,
};
pub use topology::{MarketplaceSettings, NodeSpec, Topology, TopologyError};
