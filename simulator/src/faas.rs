//! A FaaS platform in simulated time, with faas-sim's `FaasSystem` API and semantics (minus
//! its two known bugs).
//!
//! Operations: [`FaasSystem::deploy`], [`FaasSystem::invoke`], [`FaasSystem::remove`],
//! [`FaasSystem::discover`], [`FaasSystem::scale_up`], [`FaasSystem::scale_down`],
//! [`FaasSystem::suspend`], [`FaasSystem::poll_available_replica`] and the lookups
//! [`FaasSystem::get_replicas`] and [`FaasSystem::get_deployments`]. Every operation that
//! makes time pass takes a [`Scheduler<FaasEvent>`]; the outer loop pops events and hands the
//! [`FaasEvent`]s back to [`FaasSystem::handle`].
//!
//! The model:
//! - **Nodes** have CPU (millicores) and memory. A replica holds its function's `cpu` and
//!   `memory` requests on its node from the moment it is placed until it is suspended and has
//!   no invocation left executing.
//! - **Replica lifecycle**: `Conceived` (created, waiting for a node) -> `Starting` (placed;
//!   the cold start `startup` runs) -> `Running` (serves invocations) -> `Suspended` (scaled
//!   down; never comes back: scaling up creates new replicas). A replica can be suspended from
//!   any state.
//! - **Scheduler**: a conceived replica goes to the node with the most free CPU among those
//!   where both its CPU and memory fit; ties go to the node added first. Placement takes no
//!   simulated time. A replica that fits nowhere stays `Conceived` in a FIFO queue and is
//!   retried whenever capacity is freed or a node is added.
//! - **Load balancer**: round robin over the function's `Running` replicas (faas-sim's only
//!   balancer), regardless of how busy each one is.
//! - **Concurrency**: a replica executes at most `concurrency` invocations at once; further
//!   ones wait in that replica's FIFO queue.
//! - **Scale from zero**: an invocation that finds no `Running` replica is *cold*: if the
//!   function has no replica `Conceived` or `Starting`, one is created (within `scale_max`),
//!   and the invocation polls every [`FaasConfig::poll_interval`], **re-reading the running
//!   replicas at each poll** (faas-sim reads them once before polling and then fails on the
//!   stale empty list). Cold-start waits are therefore rounded up to the poll interval, as in
//!   faas-sim. An invocation still without a replica at [`FaasConfig::poll_timeout`] ends with
//!   [`Outcome::NoReplica`].
//! - **Scale down** removes the newest replicas first and never goes below zero (it does not
//!   enforce `scale_min`: that is the autoscaler's business, and `suspend` must reach zero). A
//!   removed replica leaves the load balancer at once; invocations already *executing* on it
//!   complete normally (a graceful termination) and its node capacity is freed when the last
//!   one ends; invocations still *queued* on it are dropped ([`Outcome::Dropped`]).
//! - **Suspend** really scales the function down to zero (faas-sim's `suspend` calls the
//!   `scale_down` generator without running it, so it does nothing).
//! - **Remove** suspends every replica and forgets the deployment; invocations polling for a
//!   replica of it end as [`Outcome::Dropped`] at the time of the removal.
//!
//! Every invocation that reached [`FaasSystem::invoke`] ends in exactly one
//! [`InvocationRecord`]. Execution times come from the deployment's [`ExecTime`], drawn from
//! the scheduler's seeded RNG.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use model::units::{Bytes, Cpu};
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Scheduler, SimTime};

// ---------------------------------------------------------------------------------------------
// Ids

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($int:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A node of the FaaS system, in the order nodes were added.
    NodeIdx(u32),
    "node-"
);
id!(
    /// One deployment of a function; never reused, even when a name is deployed again.
    FunctionId(u32),
    "fn-"
);
id!(
    /// A replica; never reused.
    ReplicaId(u32),
    "replica-"
);
id!(
    /// An invocation, numbered from 0 in the order of [`FaasSystem::invoke`] calls.
    RequestId(u64),
    "req-"
);

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Configuration and deployments

/// Settings of the FaaS system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaasConfig {
    /// How often a cold invocation re-checks for a running replica. Default 100 ms.
    pub poll_interval: Duration,
    /// How long a cold invocation waits for a running replica before it ends with
    /// [`Outcome::NoReplica`]. Default 30 s.
    pub poll_timeout: Duration,
}

impl Default for FaasConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            poll_timeout: Duration::from_secs(30),
        }
    }
}

/// How long one invocation executes once it has a slot on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecTime {
    /// Always the same time.
    Fixed(Duration),
    /// Log-normal in **seconds**: `exp(N(mu, sigma))` (the Azure Functions trace fit is
    /// `mu = -0.38`, `sigma = 2.36`). `mu` must be finite, `sigma` finite and `>= 0`.
    LogNormal { mu: f64, sigma: f64 },
}

/// A function to deploy, like faas-sim's `FunctionDeployment` with one image and container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDeployment {
    /// The name invocations use; unique among deployed functions.
    pub name: String,
    /// The image (informational: it does not change the simulation yet).
    pub image: String,
    /// CPU request of each replica.
    pub cpu: Cpu,
    /// Memory request of each replica.
    pub memory: Bytes,
    /// Replicas created by `deploy`.
    pub scale_min: u32,
    /// Upper bound on live (not suspended) replicas for `scale_up` and scale from zero; >= 1.
    pub scale_max: u32,
    /// Cold start: time from placement (`Starting`) to `Running`.
    pub startup: Duration,
    /// Execution time of one invocation.
    pub exec: ExecTime,
    /// Invocations one replica executes at once; >= 1. More wait in its FIFO queue.
    pub concurrency: u32,
}

impl FunctionDeployment {
    /// A deployment with faas-sim's defaults: 1000 m CPU and 1 MiB requested, `scale_min` 1,
    /// `scale_max` 20; plus a 1 s cold start, a fixed 100 ms execution and one invocation at a
    /// time per replica.
    /// The deployment a placed SLA gets on its host: the SLA's CPU and memory per replica and
    /// exactly its number of replicas (at least one), with the given cold start, execution
    /// time and concurrency (at least one).
    pub fn for_sla(
        name: impl Into<String>,
        sla: &model::Sla,
        startup: Duration,
        exec: ExecTime,
        concurrency: u32,
    ) -> Self {
        let replicas = sla.replicas.max(1);
        FunctionDeployment {
            cpu: sla.cpu,
            memory: sla.memory,
            scale_min: replicas,
            scale_max: replicas,
            startup,
            exec,
            concurrency: concurrency.max(1),
            ..FunctionDeployment::new(name, sla.function_image.clone())
        }
    }

    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            cpu: Cpu::from_millis(1000),
            memory: Bytes::from_mib(1),
            scale_min: 1,
            scale_max: 20,
            startup: Duration::from_secs(1),
            exec: ExecTime::Fixed(Duration::from_millis(100)),
            concurrency: 1,
        }
    }
}

/// [`ExecTime`] checked and ready to sample.
#[derive(Debug, Clone, Copy)]
enum Sampler {
    Fixed(Duration),
    LogNormal(LogNormal<f64>),
}

impl Sampler {
    fn new(name: &str, exec: ExecTime) -> Result<Self, FaasError> {
        match exec {
            ExecTime::Fixed(d) => Ok(Sampler::Fixed(d)),
            ExecTime::LogNormal { mu, sigma } => {
                let invalid = |reason: String| FaasError::InvalidDeployment {
                    name: name.to_string(),
                    field: "exec",
                    reason,
                };
                if !mu.is_finite() {
                    return Err(invalid(format!("log-normal mu must be finite, got {mu}")));
                }
                // rand_distr accepts a negative sigma (it only checks finiteness): refuse it.
                let bad_sigma = || {
                    invalid(format!(
                        "log-normal sigma must be finite and >= 0, got {sigma}"
                    ))
                };
                if !sigma.is_finite() || sigma < 0.0 {
                    return Err(bad_sigma());
                }
                LogNormal::new(mu, sigma)
                    .map(Sampler::LogNormal)
                    .map_err(|_| bad_sigma())
            }
        }
    }

    #[inline]
    fn sample(&self, rng: &mut StdRng) -> Duration {
        match self {
            Sampler::Fixed(d) => *d,
            Sampler::LogNormal(dist) => {
                Duration::try_from_secs_f64(dist.sample(rng)).unwrap_or(Duration::MAX)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes and replicas

/// A machine replicas run on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    /// Total CPU.
    pub cpu: Cpu,
    /// Total memory.
    pub memory: Bytes,
    used_cpu: Cpu,
    used_memory: Bytes,
}

impl Node {
    /// CPU held by replicas placed here.
    pub fn used_cpu(&self) -> Cpu {
        self.used_cpu
    }
    /// Memory held by replicas placed here.
    pub fn used_memory(&self) -> Bytes {
        self.used_memory
    }
    pub fn free_cpu(&self) -> Cpu {
        self.cpu.saturating_sub(self.used_cpu)
    }
    pub fn free_memory(&self) -> Bytes {
        self.memory.saturating_sub(self.used_memory)
    }
    fn fits(&self, cpu: Cpu, memory: Bytes) -> bool {
        cpu <= self.free_cpu() && memory <= self.free_memory()
    }
}

/// Where a replica is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Created, not placed on a node yet (possibly because it fits nowhere).
    Conceived,
    /// Placed; the cold start runs.
    Starting,
    /// Serving invocations.
    Running,
    /// Scaled down or removed; final.
    Suspended,
}

/// An invocation waiting for a slot on a replica.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    request: RequestId,
    arrival: SimTime,
    cold: bool,
    /// The execution time the request itself asks for, in microseconds (`fn-spin`); `None`
    /// draws it from the function's law.
    exec_us: Option<u32>,
}

/// One replica of a function.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: ReplicaId,
    pub function: FunctionId,
    pub state: ReplicaState,
    /// The node it is placed on; `None` while `Conceived`, and for a replica suspended before
    /// it was ever placed.
    pub node: Option<NodeIdx>,
    pub conceived_at: SimTime,
    pub starting_at: Option<SimTime>,
    pub running_at: Option<SimTime>,
    pub suspended_at: Option<SimTime>,
    in_flight: u32,
    queue: VecDeque<Waiting>,
    holds_capacity: bool,
}

impl Replica {
    /// Invocations executing now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
    /// Invocations waiting in this replica's queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    /// Whether it still holds CPU and memory on its node (a suspended replica does until its
    /// last executing invocation ends).
    pub fn holds_capacity(&self) -> bool {
        self.holds_capacity
    }
}

// ---------------------------------------------------------------------------------------------
// Records, events, errors

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Executed to the end.
    Ok,
    /// No replica was running within the poll timeout.
    NoReplica,
    /// Queued on a replica that was scaled down, or waiting for a function that was removed.
    Dropped,
}

/// What happened to one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request: RequestId,
    pub function: FunctionId,
    /// The replica it was dispatched to, if any.
    pub replica: Option<ReplicaId>,
    pub node: Option<NodeIdx>,
    pub arrival: SimTime,
    /// When execution started; `None` if it never did.
    pub start: Option<SimTime>,
    /// When it completed, failed or was dropped.
    pub end: SimTime,
    /// It found no running replica on arrival and waited for one (scale from zero).
    pub cold: bool,
    pub outcome: Outcome,
}

impl InvocationRecord {
    /// Time from arrival to the start of execution (cold start and queueing).
    pub fn wait(&self) -> Option<Duration> {
        self.start.map(|s| s.since(self.arrival))
    }
    /// Execution time.
    pub fn exec(&self) -> Option<Duration> {
        self.start.map(|s| self.end.since(s))
    }
    /// Time from arrival to the end.
    pub fn response_time(&self) -> Duration {
        self.end.since(self.arrival)
    }
}

/// An event of the FaaS system. Only [`FaasSystem`] creates them; an outer simulator stores
/// them (e.g. as `Event::Faas(FaasEvent)`) and hands them back to [`FaasSystem::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaasEvent(Ev);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    /// A replica's cold start is over.
    ReplicaStarted(ReplicaId),
    /// A cold invocation checks for a running replica again.
    Poll {
        request: RequestId,
        function: FunctionId,
        arrival: SimTime,
        exec_us: Option<u32>,
    },
    /// An invocation finished executing.
    ExecDone {
        replica: ReplicaId,
        request: RequestId,
        arrival: SimTime,
        start: SimTime,
        cold: bool,
    },
}

/// Why a FaaS operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaasError {
    #[error("{op}: no function named `{name}` is deployed")]
    UnknownFunction { op: &'static str, name: String },
    #[error("invoke_id: {id} is not a deployed function")]
    UnknownFunctionId { id: FunctionId },
    #[error("deploy: a function named `{name}` is already deployed")]
    AlreadyDeployed { name: String },
    #[error("deploy `{name}`: field `{field}`: {reason}")]
    InvalidDeployment {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("FaasSystem::new: field `{field}`: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

// ---------------------------------------------------------------------------------------------
// The system

struct FunctionSlot {
    deployment: FunctionDeployment,
    sampler: Sampler,
    /// `Some(when)` once removed.
    removed_at: Option<SimTime>,
    /// Every replica ever created, in creation order.
    replicas: Vec<ReplicaId>,
    /// Replicas not suspended, in creation order (scale down pops the newest).
    live: Vec<ReplicaId>,
    /// `Running` replicas, in the order they became running: the load balancer's list.
    running: Vec<ReplicaId>,
    /// Round-robin counter.
    next: usize,
}

/// The FaaS platform: nodes, deployments, replicas and the records of finished invocations.
pub struct FaasSystem {
    config: FaasConfig,
    nodes: Vec<Node>,
    functions: Vec<FunctionSlot>,
    by_name: HashMap<String, FunctionId>,
    replicas: Vec<Replica>,
    /// Conceived replicas waiting for a node, FIFO.
    unscheduled: VecDeque<ReplicaId>,
    next_request: u64,
    /// Cold invocations polling for a replica.
    waiting: usize,
    records: Vec<InvocationRecord>,
}

impl Default for FaasSystem {
    fn default() -> Self {
        Self::with_config(FaasConfig::default())
    }
}

impl FaasSystem {
    /// An empty system (no nodes) with `config`. Refused if `poll_interval` is zero (a cold
    /// invocation would poll forever without time passing).
    pub fn new(config: FaasConfig) -> Result<Self, FaasError> {
        if config.poll_interval.is_zero() {
            return Err(FaasError::InvalidConfig {
                field: "poll_interval",
                reason: "must be greater than zero".into(),
            });
        }
        Ok(Self::with_config(config))
    }

    fn with_config(config: FaasConfig) -> Self {
        Self {
            config,
            nodes: Vec::new(),
            functions: Vec::new(),
            by_name: HashMap::new(),
            replicas: Vec::new(),
            unscheduled: VecDeque::new(),
            next_request: 0,
            waiting: 0,
            records: Vec::new(),
        }
    }

    pub fn config(&self) -> &FaasConfig {
        &self.config
    }

    /// Adds a node and places any replica that was waiting for room.
    pub fn add_node(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: impl Into<String>,
        cpu: Cpu,
        memory: Bytes,
    ) -> NodeIdx {
        let idx = NodeIdx(index(self.nodes.len()));
        self.nodes.push(Node {
            name: name.into(),
            cpu,
            memory,
            used_cpu: Cpu::ZERO,
            used_memory: Bytes::ZERO,
        });
        self.schedule_pending(s);
        idx
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, idx: NodeIdx) -> Option<&Node> {
        self.nodes.get(idx.0 as usize)
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&Replica> {
        self.replicas.get(id.0 as usize)
    }

    /// The id of the deployed function called `name`.
    pub fn function_id(&self, name: &str) -> Option<FunctionId> {
        self.by_name.get(name).copied()
    }

    /// The name of a function, deployed or removed.
    pub fn function_name(&self, id: FunctionId) -> Option<&str> {
        self.functions
            .get(id.0 as usize)
            .map(|f| f.deployment.name.as_str())
    }

    /// The deployed function called `name`.
    pub fn deployment(&self, name: &str) -> Option<&FunctionDeployment> {
        self.function_id(name)
            .map(|id| &self.functions[id.0 as usize].deployment)
    }

    /// Deployed functions, in deployment order.
    pub fn get_deployments(&self) -> Vec<&FunctionDeployment> {
        self.functions
            .iter()
            .filter(|f| f.removed_at.is_none())
            .map(|f| &f.deployment)
            .collect()
    }

    /// Records of finished invocations, in the order they ended.
    pub fn records(&self) -> &[InvocationRecord] {
        &self.records
    }

    /// Takes the records gathered so far (to stream them out of a long run).
    pub fn take_records(&mut self) -> Vec<InvocationRecord> {
        std::mem::take(&mut self.records)
    }

    /// Cold invocations currently polling for a running replica.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    fn lookup(&self, op: &'static str, name: &str) -> Result<FunctionId, FaasError> {
        self.function_id(name)
            .ok_or_else(|| FaasError::UnknownFunction {
                op,
                name: name.to_string(),
            })
    }

    /// Deploys `fd` and creates its `scale_min` replicas (placed at once where they fit,
    /// `Running` after `startup`).
    pub fn deploy(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        fd: FunctionDeployment,
    ) -> Result<FunctionId, FaasError> {
        let invalid = |field: &'static str, reason: String| FaasError::InvalidDeployment {
            name: fd.name.clone(),
            field,
            reason,
        };
        if fd.name.is_empty() {
            return Err(invalid("name", "must not be empty".into()));
        }
        if fd.scale_max == 0 {
            return Err(invalid("scale_max", "must be at least 1".into()));
        }
        if fd.scale_min > fd.scale_max {
            return Err(invalid(
                "scale_min",
                format!(
                    "{} must not exceed scale_max ({})",
                    fd.scale_min, fd.scale_max
                ),
            ));
        }
        if fd.concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1".into()));
        }
        if self.by_name.contains_key(&fd.name) {
            return Err(FaasError::AlreadyDeployed { name: fd.name });
        }
        let sampler = Sampler::new(&fd.name, fd.exec)?;
        let id = FunctionId(index(self.functions.len()));
        let scale_min = fd.scale_min;
        self.by_name.insert(fd.name.clone(), id);
        self.functions.push(FunctionSlot {
            deployment: fd,
            sampler,
            removed_at: None,
            replicas: Vec::new(),
            live: Vec::new(),
            running: Vec::new(),
            next: 0,
        });
        for _ in 0..scale_min {
            self.conceive(s.now(), id);
        }
        self.schedule_pending(s);
        Ok(id)
    }

    /// Removes the function: every replica is suspended (see [`FaasSystem::scale_down`] for
    /// what happens to their invocations) and the name is free to deploy again.
    pub fn remove(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: &str,
    ) -> Result<(), FaasError> {
        let id = self.lookup("remove", name)?;
        self.scale_down_id(s, id, u32::MAX);
        self.functions[id.0 as usize].removed_at = Some(s.now());
        self.by_name.remove(name);
        Ok(())
    }

    /// The function's `Running` replicas, in load-balancer order.
    pub fn discover(&self, name: &str) -> Result<Vec<&Replica>, FaasError> {
        let id = self.lookup("discover", name)?;
        Ok(self.functions[id.0 as usize]
            .running
            .iter()
            .map(|r| &self.replicas[r.0 as usize])
            .collect())
    }

    /// The function's replicas (suspended ones included), in creation order, optionally only
    /// those in `state`.
    pub fn get_replicas(
        &self,
        name: &str,
        state: Option<ReplicaState>,
    ) -> Result<Vec<&Replica>, FaasError> {
        let id = self.lookup("get_replicas", name)?;
        Ok(self.functions[id.0 as usize]
            .replicas
            .iter()
            .map(|r| &self.replicas[r.0 as usize])
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect())
    }

    /// One step of faas-sim's `poll_available_replica`: whether the function has a `Running`
    /// replica *now*. A cold [`FaasSystem::invoke`] repeats this check every `poll_interval`,
    /// reading the replicas afresh each time.
    pub fn poll_available_replica(&self, name: &str) -> Result<bool, FaasError> {
        let id = self.lookup("poll_available_replica", name)?;
        Ok(!self.functions[id.0 as usize].running.is_empty())
    }

    /// Adds up to `n` replicas without exceeding `scale_max` live replicas; returns how many
    /// were added.
    pub fn scale_up(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: &str,
        n: u32,
    ) -> Result<u32, FaasError> {
        let id = self.lookup("scale_up", name)?;
        Ok(self.scale_up_id(s, id, n))
    }

    /// Suspends up to `n` of the newest live replicas (never below zero; `scale_min` is not
    /// enforced); returns how many were suspended. Invocations executing on them complete,
    /// invocations queued on them are dropped; node capacity is freed once a replica has
    /// nothing executing.
    pub fn scale_down(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: &str,
        n: u32,
    ) -> Result<u32, FaasError> {
        let id = self.lookup("scale_down", name)?;
        Ok(self.scale_down_id(s, id, n))
    }

    /// Scales the function down to zero replicas, for real; returns how many were suspended.
    pub fn suspend(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: &str,
    ) -> Result<u32, FaasError> {
        let id = self.lookup("suspend", name)?;
        Ok(self.scale_down_id(s, id, u32::MAX))
    }

    /// Invokes the function called `name` now. See [`FaasSystem::invoke_id`].
    pub fn invoke(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        name: &str,
    ) -> Result<RequestId, FaasError> {
        let id = self.lookup("invoke", name)?;
        self.invoke_id(s, id)
    }

    /// Invokes a deployed function by id (no name lookup: the hot path of large runs).
    ///
    /// With a `Running` replica, the round-robin balancer picks one and the invocation executes
    /// or queues there. Without, it is cold: one replica is scaled up if none is conceived or
    /// starting, and the invocation polls for a running replica until the poll timeout.
    pub fn invoke_id(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        function: FunctionId,
    ) -> Result<RequestId, FaasError> {
        self.invoke_with(s, function, None)
    }

    /// [`FaasSystem::invoke_id`] for a request that asks for its own execution time (as
    /// `fn-spin`'s requests do); `None` draws it from the function's law. Times beyond about
    /// 71 minutes are capped there.
    pub fn invoke_with(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        function: FunctionId,
        exec: Option<Duration>,
    ) -> Result<RequestId, FaasError> {
        let exec_us = exec.map(|d| d.as_micros().min(u32::MAX as u128) as u32);
        if self
            .functions
            .get(function.0 as usize)
            .is_none_or(|f| f.removed_at.is_some())
        {
            return Err(FaasError::UnknownFunctionId { id: function });
        }
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let arrival = s.now();
        let w = Waiting {
            request,
            arrival,
            cold: false,
            exec_us,
        };
        if !self.route(s, function, w) {
            self.ensure_starting(s, function);
            self.waiting += 1;
            self.schedule_poll(s, request, function, arrival, exec_us);
        }
        Ok(request)
    }

    /// Applies one of this system's events.
    pub fn handle(&mut self, s: &mut impl Scheduler<FaasEvent>, event: FaasEvent) {
        match event.0 {
            Ev::ReplicaStarted(id) => self.on_started(s.now(), id),
            Ev::Poll {
                request,
                function,
                arrival,
                exec_us,
            } => self.on_poll(s, request, function, arrival, exec_us),
            Ev::ExecDone {
                replica,
                request,
                arrival,
                start,
                cold,
            } => self.on_exec_done(s, replica, request, arrival, start, cold),
        }
    }

    /// Runs a standalone system: handles every event up to `until`, then moves the engine's
    /// clock to `until`.
    pub fn run_until(&mut self, engine: &mut Engine<FaasEvent>, until: SimTime) {
        while let Some((_, event)) = engine.pop_until(until) {
            self.handle(engine, event);
        }
        // Cannot fail: every event at or before `until` was popped, and `now` <= `until`
        // unless the caller passed a time in the past, in which case the clock stays.
        let _ = engine.advance_to(until);
    }

    /// Runs a standalone system until no event is left.
    pub fn run(&mut self, engine: &mut Engine<FaasEvent>) {
        while let Some((_, event)) = engine.pop() {
            self.handle(engine, event);
        }
    }

    // -- internals ------------------------------------------------------------------------

    fn conceive(&mut self, now: SimTime, function: FunctionId) -> ReplicaId {
        let id = ReplicaId(index(self.replicas.len()));
        self.replicas.push(Replica {
            id,
            function,
            state: ReplicaState::Conceived,
            node: None,
            conceived_at: now,
            starting_at: None,
            running_at: None,
            suspended_at: None,
            in_flight: 0,
            queue: VecDeque::new(),
            holds_capacity: false,
        });
        let slot = &mut self.functions[function.0 as usize];
        slot.replicas.push(id);
        slot.live.push(id);
        self.unscheduled.push_back(id);
        id
    }

    /// Places every conceived replica that fits somewhere, in FIFO order; the others keep
    /// their order in the queue.
    fn schedule_pending(&mut self, s: &mut impl Scheduler<FaasEvent>) {
        for _ in 0..self.unscheduled.len() {
            let Some(id) = self.unscheduled.pop_front() else {
                break;
            };
            let replica = &self.replicas[id.0 as usize];
            if replica.state != ReplicaState::Conceived {
                continue; // suspended while waiting
            }
            let fd = &self.functions[replica.function.0 as usize].deployment;
            let (cpu, memory, startup) = (fd.cpu, fd.memory, fd.startup);
            match self.pick_node(cpu, memory) {
                Some(node) => {
                    let n = &mut self.nodes[node.0 as usize];
                    n.used_cpu = n.used_cpu + cpu;
                    n.used_memory = n.used_memory + memory;
                    let replica = &mut self.replicas[id.0 as usize];
                    replica.node = Some(node);
                    replica.state = ReplicaState::Starting;
                    replica.starting_at = Some(s.now());
                    replica.holds_capacity = true;
                    s.schedule_in(startup, FaasEvent(Ev::ReplicaStarted(id)));
                }
                None => self.unscheduled.push_back(id),
            }
        }
    }

    /// The node with the most free CPU where `cpu` and `memory` fit; the first added wins ties.
    fn pick_node(&self, cpu: Cpu, memory: Bytes) -> Option<NodeIdx> {
        let mut best: Option<(usize, Cpu)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.fits(cpu, memory) && best.is_none_or(|(_, free)| node.free_cpu() > free) {
                best = Some((i, node.free_cpu()));
            }
        }
        best.map(|(i, _)| NodeIdx(index(i)))
    }

    fn release(&mut self, id: ReplicaId) {
        let replica = &mut self.replicas[id.0 as usize];
        if !replica.holds_capacity {
            return;
        }
        replica.holds_capacity = false;
        let Some(node) = replica.node else {
            return;
        };
        let fd = &self.functions[replica.function.0 as usize].deployment;
        let n = &mut self.nodes[node.0 as usize];
        n.used_cpu = n.used_cpu.saturating_sub(fd.cpu);
        n.used_memory = n.used_memory.saturating_sub(fd.memory);
    }

    fn scale_up_id(&mut self, s: &mut impl Scheduler<FaasEvent>, id: FunctionId, n: u32) -> u32 {
        let slot = &self.functions[id.0 as usize];
        let live = index(slot.live.len());
        let add = n.min(slot.deployment.scale_max.saturating_sub(live));
        for _ in 0..add {
            self.conceive(s.now(), id);
        }
        if add > 0 {
            self.schedule_pending(s);
        }
        add
    }

    fn scale_down_id(&mut self, s: &mut impl Scheduler<FaasEvent>, id: FunctionId, n: u32) -> u32 {
        let mut removed = 0;
        let mut freed = false;
        while removed < n {
            let Some(replica) = self.functions[id.0 as usize].live.pop() else {
                break;
            };
            freed |= self.suspend_replica(s.now(), replica);
            removed += 1;
        }
        if freed {
            self.schedule_pending(s);
        }
        removed
    }

    /// Marks a replica suspended, drops its queue; returns whether capacity was freed.
    fn suspend_replica(&mut self, now: SimTime, id: ReplicaId) -> bool {
        let replica = &mut self.replicas[id.0 as usize];
        let was_running = replica.state == ReplicaState::Running;
        replica.state = ReplicaState::Suspended;
        replica.suspended_at = Some(now);
        let queue = std::mem::take(&mut replica.queue);
        let (function, node, idle) = (replica.function, replica.node, replica.in_flight == 0);
        if was_running {
            self.functions[function.0 as usize]
                .running
                .retain(|r| *r != id);
        }
        for w in queue {
            self.records.push(InvocationRecord {
                request: w.request,
                function,
                replica: Some(id),
                node,
                arrival: w.arrival,
                start: None,
                end: now,
                cold: w.cold,
                outcome: Outcome::Dropped,
            });
        }
        let freed = idle && self.replicas[id.0 as usize].holds_capacity;
        if idle {
            self.release(id);
        }
        freed
    }

    /// Scale from zero: one new replica unless one is already conceived or starting.
    fn ensure_starting(&mut self, s: &mut impl Scheduler<FaasEvent>, id: FunctionId) {
        let slot = &self.functions[id.0 as usize];
        let pending = slot.live.iter().any(|r| {
            matches!(
                self.replicas[r.0 as usize].state,
                ReplicaState::Conceived | ReplicaState::Starting
            )
        });
        if !pending {
            self.scale_up_id(s, id, 1);
        }
    }

    /// Sends `w` to the next running replica (round robin); false if there is none.
    fn route(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        function: FunctionId,
        w: Waiting,
    ) -> bool {
        let slot = &mut self.functions[function.0 as usize];
        if slot.running.is_empty() {
            return false;
        }
        let replica = slot.running[slot.next % slot.running.len()];
        slot.next = slot.next.wrapping_add(1);
        let (in_flight, concurrency) = (
            self.replicas[replica.0 as usize].in_flight,
            slot.deployment.concurrency,
        );
        if in_flight < concurrency {
            self.start(s, replica, w);
        } else {
            self.replicas[replica.0 as usize].queue.push_back(w);
        }
        true
    }

    fn start(&mut self, s: &mut impl Scheduler<FaasEvent>, id: ReplicaId, w: Waiting) {
        let replica = &mut self.replicas[id.0 as usize];
        replica.in_flight += 1;
        let exec = match w.exec_us {
            Some(us) => Duration::from_micros(u64::from(us)),
            None => self.functions[replica.function.0 as usize]
                .sampler
                .sample(s.rng()),
        };
        s.schedule_in(
            exec,
            FaasEvent(Ev::ExecDone {
                replica: id,
                request: w.request,
                arrival: w.arrival,
                start: s.now(),
                cold: w.cold,
            }),
        );
    }

    fn schedule_poll(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        request: RequestId,
        function: FunctionId,
        arrival: SimTime,
        exec_us: Option<u32>,
    ) {
        // Poll every interval, and once exactly at the deadline.
        let deadline = arrival.saturating_add(self.config.poll_timeout);
        let delay = self.config.poll_interval.min(deadline.since(s.now()));
        s.schedule_in(
            delay,
            FaasEvent(Ev::Poll {
                request,
                function,
                arrival,
                exec_us,
            }),
        );
    }

    fn on_started(&mut self, now: SimTime, id: ReplicaId) {
        let replica = &mut self.replicas[id.0 as usize];
        if replica.state != ReplicaState::Starting {
            return; // suspended during its cold start
        }
        replica.state = ReplicaState::Running;
        replica.running_at = Some(now);
        let function = replica.function;
        self.functions[function.0 as usize].running.push(id);
    }

    fn on_poll(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        request: RequestId,
        function: FunctionId,
        arrival: SimTime,
        exec_us: Option<u32>,
    ) {
        let failed = |outcome, end| InvocationRecord {
            request,
            function,
            replica: None,
            node: None,
            arrival,
            start: None,
            end,
            cold: true,
            outcome,
        };
        if let Some(removed_at) = self.functions[function.0 as usize].removed_at {
            self.waiting -= 1;
            self.records.push(failed(Outcome::Dropped, removed_at));
            return;
        }
        // Re-read the running replicas at every poll (faas-sim's bug: it did not).
        let w = Waiting {
            request,
            arrival,
            cold: true,
            exec_us,
        };
        if self.route(s, function, w) {
            self.waiting -= 1;
            return;
        }
        let now = s.now();
        if now.since(arrival) >= self.config.poll_timeout {
            self.waiting -= 1;
            self.records.push(failed(Outcome::NoReplica, now));
            return;
        }
        // A replica may have been scaled down meanwhile: scale from zero again if needed.
        self.ensure_starting(s, function);
        self.schedule_poll(s, request, function, arrival, exec_us);
    }

    fn on_exec_done(
        &mut self,
        s: &mut impl Scheduler<FaasEvent>,
        id: ReplicaId,
        request: RequestId,
        arrival: SimTime,
        start: SimTime,
        cold: bool,
    ) {
        let now = s.now();
        let replica = &mut self.replicas[id.0 as usize];
        replica.in_flight = replica.in_flight.saturating_sub(1);
        self.records.push(InvocationRecord {
            request,
            function: replica.function,
            replica: Some(id),
            node: replica.node,
            arrival,
            start: Some(start),
            end: now,
            cold,
            outcome: Outcome::Ok,
        });
        match replica.state {
            ReplicaState::Running => {
                if let Some(next) = replica.queue.pop_front() {
                    self.start(s, id, next);
                }
            }
            ReplicaState::Suspended if replica.in_flight == 0 && replica.holds_capacity => {
                self.release(id);
                self.schedule_pending(s);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
