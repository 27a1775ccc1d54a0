//! The function registry: deploying (a spec parsed from the deployment), updating, removing,
//! resolving and listing functions.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use prometheus::{Counter, Histogram};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Service;
use super::replicas::{Replica, ReplicaState};
use super::spec::{FnKey, FunctionSpec};
use crate::api::{self, DEFAULT_NAMESPACE, FunctionDeployment, FunctionStatus, FunctionUsage};
use crate::error::{GatewayError, GatewayResult};

/// A deployed function: its spec, its replicas and its queue.
pub(super) struct FunctionEntry {
    pub(super) spec: Arc<FunctionSpec>,
    created_at: SystemTime,
    pub(super) desired: u64,
    pub(super) manual_floor: Option<u64>,
    pub(super) busy_at: Instant,
    pub(super) replicas: Vec<Replica>,
    /// Requests waiting for a ready replica (the bounded queue).
    pub(super) waiting: Arc<AtomicUsize>,
    /// Bumped whenever a replica becomes ready or goes, waking queued requests.
    pub(super) changed: watch::Sender<u64>,
    pub(super) invocations: Arc<AtomicU64>,
    /// Metric handles of this function, kept across redeploys.
    pub(super) metrics: Arc<FnMetrics>,
    pub(super) failures: u32,
    pub(super) next_start_at: Instant,
    /// Processes stopped by their memory limit since the deployment, and the last reason.
    pub(super) memory_limit_kills: u64,
    pub(super) last_memory_limit_kill: Option<String>,
}

impl FunctionEntry {
    pub(super) fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A function's per-invocation metric handles, resolved once instead of a label lookup per
/// request. Created lazily so that series appear only once used, as with `with_label_values`.
pub(super) struct FnMetrics {
    /// `name.namespace`, the `function_name` label.
    pub(super) label: String,
    pub(super) started: OnceLock<Counter>,
    /// `code="200"` series of `gateway_function_invocation_total` and `gateway_functions_seconds`.
    pub(super) ok: OnceLock<(Counter, Histogram)>,
}

impl FnMetrics {
    fn new(key: &FnKey) -> Self {
        FnMetrics {
            label: key.to_string(),
            started: OnceLock::new(),
            ok: OnceLock::new(),
        }
    }
}

impl Service {
    /// `POST` (create or replace) or `PUT` (`update`: 404 unless it exists).
    #[tracing::instrument(skip_all, fields(function = %d.service))]
    pub fn deploy(&self, d: FunctionDeployment, update: bool) -> GatewayResult<()> {
        let inner = &self.inner;
        let spec = FunctionSpec::parse(d, &inner.catalog, &inner.secrets, &inner.config.extra_env);
        let spec = Arc::new(spec?);
        let key = spec.key.clone();
        let now = Instant::now();
        let old_replicas;
        {
            let mut fns = self.inner.functions.lock();
            match fns.get_mut(&key) {
                Some(f) => {
                    // New processes for the new spec; queued requests stay queued.
                    old_replicas = std::mem::take(&mut f.replicas);
                    f.desired = spec.policy.min;
                    f.manual_floor = None;
                    f.busy_at = now;
                    f.failures = 0;
                    f.next_start_at = now;
                    f.memory_limit_kills = 0;
                    f.last_memory_limit_kill = None;
                    f.spec = spec;
                    f.notify();
                }
                None if update => return Err(GatewayError::FunctionNotFound(key.name)),
                None => {
                    old_replicas = Vec::new();
                    fns.insert(
                        key.clone(),
                        FunctionEntry {
                            desired: spec.policy.min,
                            spec,
                            created_at: SystemTime::now(),
                            manual_floor: None,
                            busy_at: now,
                            replicas: Vec::new(),
                            waiting: Arc::new(AtomicUsize::new(0)),
                            changed: watch::channel(0).0,
                            invocations: Arc::new(AtomicU64::new(0)),
                            metrics: Arc::new(FnMetrics::new(&key)),
                            failures: 0,
                            next_start_at: now,
                            memory_limit_kills: 0,
                            last_memory_limit_kill: None,
                        },
                    );
                }
            }
        }
        drop(old_replicas);
        tracing::info!(%key, update, "deployed");
        self.inner.kick.notify_one();
        Ok(())
    }

    /// `DELETE /system/functions`: removes the function and kills its replicas.
    pub fn remove(&self, name: &str, namespace: Option<&str>) -> GatewayResult<()> {
        let key = self.resolve(name, namespace)?;
        let entry = self.inner.functions.lock().remove(&key);
        let Some(entry) = entry else {
            return Err(GatewayError::FunctionNotFound(name.to_string()));
        };
        entry.notify();
        drop(entry);
        self.inner.logs.forget(&key.name, &key.namespace);
        self.inner.metrics.forget(&key.to_string());
        tracing::info!(%key, "removed");
        Ok(())
    }

    /// Resolves `name` (maybe `name.namespace`) to a deployed function.
    pub(super) fn resolve(&self, full: &str, namespace: Option<&str>) -> GatewayResult<FnKey> {
        let fns = self.inner.functions.lock();
        resolve_in(&fns, full, namespace)
    }

    pub fn list(&self, namespace: Option<&str>) -> Vec<FunctionStatus> {
        let ns = api::namespace_or_default(namespace);
        let fns = self.inner.functions.lock();
        let mut out: Vec<FunctionStatus> = fns
            .values()
            .filter(|f| f.spec.key.namespace == ns)
            .map(status_of)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn status(&self, name: &str, namespace: Option<&str>) -> GatewayResult<FunctionStatus> {
        let key = self.resolve(name, namespace)?;
        let fns = self.inner.functions.lock();
        fns.get(&key)
            .map(status_of)
            .ok_or_else(|| GatewayError::FunctionNotFound(name.to_string()))
    }

    /// Namespaces of functions and secrets, and the default one.
    pub fn namespaces(&self) -> Vec<String> {
        let fns = self.inner.functions.lock();
        let mut set: BTreeSet<String> = fns.keys().map(|k| k.namespace.clone()).collect();
        self.inner.secrets.add_namespaces(&mut set);
        set.insert(DEFAULT_NAMESPACE.to_string());
        set.into_iter().collect()
    }
}

/// [`Service::resolve`] with the registry already locked.
pub(super) fn resolve_in(
    fns: &HashMap<FnKey, FunctionEntry>,
    full: &str,
    namespace: Option<&str>,
) -> GatewayResult<FnKey> {
    let (name, ns) = api::split_name(full, namespace);
    let key = FnKey {
        name: name.to_string(),
        namespace: ns.to_string(),
    };
    if fns.contains_key(&key) {
        return Ok(key);
    }
    // A dotted name deployed in the default namespace.
    let plain = FnKey {
        name: full.to_string(),
        namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_string(),
    };
    if fns.contains_key(&plain) {
        return Ok(plain);
    }
    Err(GatewayError::FunctionNotFound(full.to_string()))
}

fn status_of(f: &FunctionEntry) -> FunctionStatus {
    let d = &f.spec.deployment;
    let available = f
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Ready)
        .count() as u64;
    let memory: u64 = f
        .replicas
        .iter()
        .filter_map(|r| r.group.as_ref())
        .filter_map(|g| rss_bytes(g.pid()))
        .sum();
    FunctionStatus {
        name: f.spec.key.name.clone(),
        image: d.image.clone(),
        namespace: f.spec.key.namespace.clone(),
        env_process: d.env_process.clone(),
        env_vars: d.env_vars.clone(),
        constraints: d.constraints.clone(),
        secrets: d.secrets.clone(),
        labels: (!d.labels.is_empty()).then(|| d.labels.clone()),
        annotations: (!d.annotations.is_empty()).then(|| d.annotations.clone()),
        limits: d.limits.clone(),
        requests: d.requests.clone(),
        read_only_root_filesystem: d.read_only_root_filesystem,
        invocation_count: f.invocations.load(Ordering::Relaxed) as f64,
        replicas: f.desired,
        available_replicas: available,
        created_at: humantime::format_rfc3339_seconds(f.created_at).to_string(),
        usage: (memory > 0).then_some(FunctionUsage {
            cpu: 0.0,
            total_memory_bytes: memory as f64,
        }),
        memory_limit_kills: f.memory_limit_kills,
        last_memory_limit_kill: f.last_memory_limit_kill.clone(),
    }
}

/// Resident memory of a process, from `/proc/<pid>/statm`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}
