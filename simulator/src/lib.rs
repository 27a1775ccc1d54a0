//! `simulator`: a deterministic discrete-event simulator for Fogmarket.
//!
//! The crate owns simulated time and everything that happens in it:
//!
//! - [`engine`]: [`SimTime`] (microseconds), the event queue [`Engine`] (equal times pop in
//!   insertion order) and the one seeded RNG of a run, plus the [`Scheduler`] trait through
//!   which components schedule their own events into an outer simulator's event enum.
//! - [`faas`]: a FaaS platform with faas-sim's API (`deploy`, `invoke`, `remove`, `discover`,
//!   `scale_up`, `scale_down`, `suspend`, `poll_available_replica`, lookups): nodes with CPU and
//!   memory, replicas with their lifecycle, a scheduler, a round-robin load balancer,
//!   per-replica concurrency with FIFO queues, scale from zero and per-invocation records.
//! - [`market`]: the marketplace's auctions and the fog nodes' bidding over the overlay tree,
//!   with `model`'s strategies, assessment, ledger and auction rules.
//! - [`bench`]: the speed benchmark behind `just bench sim`.
//! - [`giraff`]: GIRAFF's comparison of placement strategies (`just reproduce giraff`).
//! - [`scenario`]: an IoT scenario file simulated on a topology, reported by the IoT emulator's
//!   own report code.
//! - [`offload`]: DFaaS-style offloading between a function's hosts with `model::offload`'s
//!   weights and offers, and the scenarios of `just bench offload`.
//! - [`run`]: one experiment: a federation, a workload placed through the market and invoked
//!   by seeded Poisson devices, requests travelling the tree to their hosts; the report.
//!
//! Nothing here does I/O, sleeps, reads the wall clock or spawns tasks: a run is a pure function
//! of its inputs and its seed. Later layers simulate a whole federation by calling the `model`
//! crate's own code (auction, pricing, ledger, offload) at simulated times
//! ([`SimTime::to_timestamp`]).

pub mod bench;
pub mod engine;
pub mod faas;
pub mod giraff;
pub mod market;
pub mod offload;
pub mod run;
pub mod scenario;

pub use engine::{Engine, EngineError, Scheduler, SimTime};
pub use faas::{
    ExecTime, FaasConfig, FaasError, FaasEvent, FaasSystem, FunctionDeployment, FunctionId,
    InvocationRecord, Node, NodeIdx, Outcome, Replica, ReplicaId, ReplicaState, RequestId,
};
