//! `testbed`: runs a whole Fogmarket federation on one machine.
//!
//! - [`topology`]: topology files (the marketplace's settings and a tree of fog nodes with
//!   owners, capacities, prices and link latencies): re-exports [`model::topology`] (parsing
//!   and validation, links with a rate and a loss, a tree path between two nodes as one link
//!   ([`topology::PathLink`]), random GIRAFF-style 4-tier trees) and adds reading a file
//!   ([`topology::TopologyFileExt::from_file`]).
//! - [`topology_gen`]: re-exports [`model::topology::giraff`], seeded GIRAFF-like topology
//!   files after GIRAFF's Grid'5000 tiers (`testbed topology generate --giraff`).
//! - [`launcher`]: starts the real `marketplace` and `fog-node` binaries as child processes on
//!   loopback (port 0, own process groups, logs per process), waits for readiness with
//!   deadlines, and kills everything on drop. Used by `just run`, the multi-process integration
//!   tests and the benchmark.
//! - [`bench`]: the closed-loop auction benchmark behind `just bench auction`.
//! - [`bench_faas`]: the embedded gateway's cold start, overhead and memory benchmark behind
//!   `just bench faas`.
//! - [`bench_proxy`]: what each layer in front of a function costs (direct, HAProxy, gateway,
//!   fog node, HAProxy in front of the gateway), measured with `wrk`, behind `just bench proxy`.
//! - [`bench_footprint`]: the resident memory of an idle federation's processes (every fog
//!   node with its embedded gateway, its function replicas, the marketplace), behind
//!   `just bench footprint`.
//! - [`bench_table`]: the README's table of every benchmark's headline figures, read from the
//!   result files (`testbed bench table`, `just bench-table`).
//! - [`bench_offload`]: offloading scenarios (`demo`, `issue48`, `hot3`, `burst`, `far`, `shift`)
//!   against a real federation, once per offloading strategy, behind `just bench offload`.
//! - [`poll`]: waiting for a state with a deadline, the one loop behind every wait of the
//!   launcher, the benchmarks and the tests (`poll_until`).
//! - [`tls`]: a throwaway CA and per-process certificates for a federation served over HTTPS
//!   (`testbed run --tls`, `LaunchOptions::tls`).
//! - [`load`]: an open-loop load generator for the fog nodes' data plane (scheduled sends that
//!   never wait for answers, per-request records, success per second and per serving node).
//! - [`k8s`]: the Kubernetes manifests of a topology's fog nodes (`testbed k8s`: a Deployment, a
//!   Service and a ConfigMap per node), for the kustomize tree `testbed/k8s/`.
//! - [`hosts`]: the fog nodes' configuration files for a federation whose members run on hosts
//!   of their own (`testbed hosts-config`), used by the EnosLib deployment package
//!   `testbed/enos` (Grid'5000, network namespaces of this machine).

pub mod bench;
pub mod bench_faas;
pub mod bench_footprint;
pub mod bench_offload;
pub mod bench_proxy;
pub mod bench_table;
pub mod faults;
pub mod hosts;
pub mod k8s;
pub mod launcher;
pub mod load;
pub mod poll;
pub mod tls;
pub mod topology;
pub mod topology_gen;

pub use launcher::{
    Federation, LaunchError, LaunchOptions, Member, Supervision, SupervisionEvent, default_bin_dir,
    find_binary, http_client, http_client_trusting,
};
pub use poll::poll_until;
pub use topology::{MarketplaceSettings, NodeSpec, Topology, TopologyError, TopologyFileExt};
