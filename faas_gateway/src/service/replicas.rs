//! Replica supervision: a replica's slot in the registry, its process started and watched until
//! it exits (ready, exit, memory-limit kills), the restart backoff, and the replicas' status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Service;
use super::spec::{FnKey, FunctionSpec};
use crate::api::ReplicaStatus;
use crate::error::{GatewayError, GatewayResult};
use crate::process::{self, ProcessGroup};

/// A replica that ran at least this long before exiting resets the restart backoff.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplicaState {
    Starting,
    Ready,
}

#[derive(Debug)]
pub(super) struct Replica {
    id: u64,
    pub(super) instance: String,
    pub(super) state: ReplicaState,
    addr: Option<SocketAddr>,
    /// `addr` as a URI authority, for the upstream request.
    pub(super) authority: Option<Authority>,
    /// Requests in flight; shared with the leases, which give their slot back without the
    /// registry lock. Only incremented under the registry lock.
    pub(super) in_flight: Arc<AtomicUsize>,
    ready_at: Option<Instant>,
    /// Kills the replica's process group when the replica leaves the registry.
    pub(super) group: Option<ProcessGroup>,
    /// Set by the supervisor when the process ends.
    pub(super) exit: Arc<watch::Sender<Option<ReplicaExit>>>,
}

/// How a replica's process ended.
#[derive(Debug, Clone)]
pub(super) struct ReplicaExit {
    /// Why the memory limit stopped it, when it did.
    pub(super) memory: Option<String>,
}

impl Replica {
    /// A new slot at `now`: ready at once for a classic function (no process), else starting
    /// until [`Service::spawn_replica`] has its process answering.
    pub(super) fn slot(id: u64, instance: String, classic: bool, now: Instant) -> Replica {
        Replica {
            id,
            instance,
            state: if classic {
                ReplicaState::Ready
            } else {
                ReplicaState::Starting
            },
            addr: None,
            authority: None,
            in_flight: Arc::new(AtomicUsize::new(0)),
            ready_at: classic.then_some(now),
            group: None,
            exit: Arc::new(watch::channel(None).0),
        }
    }
}

impl ProcessGroup {
    /// A placeholder that kills nothing.
    fn none() -> Self {
        ProcessGroup::from_raw(0)
    }
}

impl Service {
    /// `GET /system/replicas/{name}`: each replica's state, process and load.
    pub fn replicas(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> GatewayResult<Vec<ReplicaStatus>> {
        let key = self.resolve(name, namespace)?;
        let fns = self.inner.functions.lock();
        let f = fns
            .get(&key)
            .ok_or_else(|| GatewayError::FunctionNotFound(name.to_string()))?;
        Ok(f.replicas
            .iter()
            .map(|r| ReplicaStatus {
                instance: r.instance.clone(),
                state: match r.state {
                    ReplicaState::Starting => "starting".into(),
                    ReplicaState::Ready => "ready".into(),
                },
                pid: r.group.as_ref().map(ProcessGroup::pid),
                port: r.addr.map(|a| a.port()),
                in_flight: r.in_flight.load(Ordering::SeqCst),
            })
            .collect())
    }

    /// Starts the process of the replica slot `id` on the service's runtime and supervises it
    /// until it exits.
    pub(super) fn spawn_replica(
        &self,
        spec: Arc<FunctionSpec>,
        id: u64,
        instance: String,
        exit: Arc<watch::Sender<Option<ReplicaExit>>>,
    ) {
        let this = self.clone();
        self.inner
            .runtime
            .spawn(async move { this.start_and_supervise(spec, id, instance, exit).await });
    }

    async fn start_and_supervise(
        self,
        spec: Arc<FunctionSpec>,
        id: u64,
        instance: String,
        exit: Arc<watch::Sender<Option<ReplicaExit>>>,
    ) {
        let inner = &self.inner;
        let started = process::start_replica(
            &spec.process,
            &instance,
            &inner.enforcement,
            &inner.logs,
            &inner.http,
            inner.config.ready_timeout,
        )
        .await;
        let key = &spec.key;
        let mut started = match started {
            Ok(s) => s,
            Err(message) => {
                tracing::warn!(%key, %instance, %message, "replica failed to start");
                inner.logs.push(
                    &key.name,
                    &key.namespace,
                    &instance,
                    &format!("faas-gateway: replica failed to start: {message}"),
                );
                self.replica_gone(&spec, id, false);
                return;
            }
        };
        let group = {
            let mut fns = inner.functions.lock();
            match fns
                .get_mut(key)
                .filter(|f| Arc::ptr_eq(&f.spec, &spec))
                .and_then(|f| {
                    let r = f.replicas.iter_mut().find(|r| r.id == id)?;
                    r.state = ReplicaState::Ready;
                    r.addr = Some(started.addr);
                    r.authority = Authority::try_from(started.addr.to_string()).ok();
                    r.ready_at = Some(Instant::now());
                    r.group = Some(std::mem::replace(&mut started.group, ProcessGroup::none()));
                    Some(f)
                }) {
                Some(f) => {
                    f.notify();
                    None
                }
                // Scaled down, removed or redeployed while starting.
                None => Some(std::mem::replace(&mut started.group, ProcessGroup::none())),
            }
        };
        if let Some(group) = group {
            drop(group);
            let _ = started.child.wait().await;
            return;
        }
        tracing::info!(%key, %instance, addr = %started.addr, "replica ready");
        let status = started.child.wait().await;
        // Every stderr line in the logs (bounded: a grandchild may keep the pipe open).
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut started.stderr_done).await;
        let tail = self.recent_lines(key, &instance);
        let memory = inner.enforcement.memory_verdict(
            spec.process.limits,
            started.confinement.oom_kills(),
            &tail,
        );
        drop(started.confinement);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        if let Some(detail) = &memory {
            self.record_memory_kill(&spec, &instance, detail);
        }
        exit.send_replace(Some(ReplicaExit { memory }));
        if self.replica_gone(&spec, id, true) {
            tracing::warn!(%key, %instance, %status, "replica exited; restarting with backoff");
            inner.logs.push(
                &key.name,
                &key.namespace,
                &instance,
                &format!("faas-gateway: replica exited ({status}); restarting"),
            );
        }
    }

    /// The last lines `instance` wrote (where an allocation failure shows under rlimits).
    fn recent_lines(&self, key: &FnKey, instance: &str) -> String {
        let q = crate::logs::LogQuery {
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            instance: Some(instance.to_string()),
            since: None,
            tail: Some(20),
        };
        let lines: Vec<String> = self
            .inner
            .logs
            .query(&q)
            .into_iter()
            .map(|e| e.text)
            .collect();
        lines.join("\n")
    }

    /// Counts a process stopped by its memory limit in the function's status and logs it.
    pub(super) fn record_memory_kill(
        &self,
        spec: &Arc<FunctionSpec>,
        instance: &str,
        detail: &str,
    ) {
        let key = &spec.key;
        let message = format!("{instance} {detail}");
        tracing::warn!(%key, %instance, %detail, "function process stopped by its memory limit");
        self.inner.logs.push(
            &key.name,
            &key.namespace,
            instance,
            &format!("faas-gateway: {message}"),
        );
        let mut fns = self.inner.functions.lock();
        if let Some(f) = fns.get_mut(key).filter(|f| Arc::ptr_eq(&f.spec, spec)) {
            f.memory_limit_kills += 1;
            f.last_memory_limit_kill = Some(message);
        }
    }

    /// Removes a replica that failed or exited on its own; returns whether it was still
    /// registered (an unexpected exit rather than a deliberate stop).
    fn replica_gone(&self, spec: &Arc<FunctionSpec>, id: u64, was_ready: bool) -> bool {
        let now = Instant::now();
        let removed = {
            let mut fns = self.inner.functions.lock();
            let Some(f) = fns
                .get_mut(&spec.key)
                .filter(|f| Arc::ptr_eq(&f.spec, spec))
            else {
                return false;
            };
            let Some(pos) = f.replicas.iter().position(|r| r.id == id) else {
                return false;
            };
            let r = f.replicas.remove(pos);
            let healthy = was_ready && r.ready_at.is_some_and(|t| now - t >= HEALTHY_UPTIME);
            f.failures = if healthy {
                1
            } else {
                f.failures.saturating_add(1)
            };
            f.next_start_at = now + backoff(f.failures);
            f.notify();
            r
        };
        drop(removed);
        self.inner.kick.notify_one();
        true
    }
}

/// 100 ms, 200 ms, 400 ms ... at most 10 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(10);
    (Duration::from_millis(100) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
