//! The service layer: the function registry, replicas, the per-function queue, the scaler step,
//! invocation (proxy or classic exec), secrets. Knows nothing of actix; handlers in
//! [`crate::routes`] only convert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::api::{
    self, DEFAULT_NAMESPACE, FunctionDeployment, FunctionStatus, FunctionUsage, ReplicaStatus,
    Secret,
};
use crate::catalog::Catalog;
use crate::error::{GatewayError, GatewayResult};
use crate::limits::{Enforcement, FunctionLimits};
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::process::{self, ExecError, ProcessGroup, ProcessSpec};
use crate::scaler::{self, ScaleInput, ScalePolicy};

pub const LABEL_MIN: &str = "com.openfaas.scale.min";
pub const LABEL_MAX: &str = "com.openfaas.scale.max";
pub const LABEL_TARGET: &str = "com.openfaas.scale.target";

/// A replica that ran at least this long before exiting resets the restart backoff.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Headers that concern one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The service's configuration (the subset of [`crate::GatewaySettings`] it needs).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub catalog_dir: PathBuf,
    pub queue_capacity: usize,
    pub upstream_timeout: Duration,
    pub exec_timeout: Duration,
    pub ready_timeout: Duration,
    pub extra_env: Vec<(String, String)>,
}

/// A function's identity: name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnKey {
    pub name: String,
    pub namespace: String,
}

impl fmt::Display for FnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// How a function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Long-lived HTTP replicas (of-watchdog `mode=http`).
    Http,
    /// One process per request (classic watchdog, `envProcess`); replicas are slots without a
    /// process.
    Classic,
}

/// A validated deployment.
#[derive(Debug)]
struct FunctionSpec {
    deployment: FunctionDeployment,
    key: FnKey,
    mode: Mode,
    policy: ScalePolicy,
    process: ProcessSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplicaState {
    Starting,
    Ready,
}

#[derive(Debug)]
struct Replica {
    id: u64,
    instance: String,
    state: ReplicaState,
    addr: Option<SocketAddr>,
    in_flight: usize,
    ready_at: Option<Instant>,
    /// Kills the replica's process group when the replica leaves the registry.
    group: Option<ProcessGroup>,
}

struct FunctionEntry {
    spec: Arc<FunctionSpec>,
    created_at: SystemTime,
    desired: u64,
    manual_floor: Option<u64>,
    busy_at: Instant,
    replicas: Vec<Replica>,
    /// Requests waiting for a ready replica (the bounded queue).
    waiting: Arc<AtomicUsize>,
    /// Bumped whenever a replica becomes ready or goes, waking queued requests.
    changed: watch::Sender<u64>,
    invocations: u64,
    failures: u32,
    next_start_at: Instant,
}

impl FunctionEntry {
    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// What one [`Service::scale_step`] did (instance names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

/// A request to invoke a function, as received.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub method: String,
    /// The sub-path after the function name, starting with `/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    pub peer: Option<String>,
    pub host: Option<String>,
}

/// The function's answer.
#[derive(Debug, Clone)]
pub struct InvocationResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServiceConfig,
    catalog: Catalog,
    enforcement: Enforcement,
    logs: Arc<LogStore>,
    metrics: Metrics,
    http: reqwest::Client,
    functions: Mutex<HashMap<FnKey, FunctionEntry>>,
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
    kick: Notify,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    runtime: tokio::runtime::Handle,
}

impl Service {
    /// Must be called inside a tokio runtime; replica tasks are spawned on it.
    pub fn new(config: ServiceConfig, enforcement: Enforcement) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Service {
            inner: Arc::new(Inner {
                catalog: Catalog::new(config.catalog_dir.clone()),
                config,
                enforcement,
                logs: Arc::new(LogStore::default()),
                metrics: Metrics::default(),
                http,
                functions: Mutex::new(HashMap::new()),
                secrets: Mutex::new(BTreeMap::new()),
                kick: Notify::new(),
                next_id: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                runtime: tokio::runtime::Handle::current(),
            }),
        })
    }

    pub fn enforcement(&self) -> &Enforcement {
        &self.inner.enforcement
    }

    pub fn logs(&self) -> &Arc<LogStore> {
        &self.inner.logs
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    // ---------------------------------------------------------------- deployments

    /// `POST` (create or replace) or `PUT` (`update`: 404 unless it exists).
    #[tracing::instrument(skip_all, fields(function = %d.service))]
    pub fn deploy(&self, d: FunctionDeployment, update: bool) -> GatewayResult<()> {
        let spec = Arc::new(self.validate(d)?);
        let key = spec.key.clone();
        let now = Instant::now();
        let old_replicas;
        {
            let mut fns = self.inner.functions.lock().unwrap();
            match fns.get_mut(&key) {
                Some(f) => {
                    // New processes for the new spec; queued requests stay queued.
                    old_replicas = std::mem::take(&mut f.replicas);
                    f.desired = spec.policy.min;
                    f.manual_floor = None;
                    f.busy_at = now;
                    f.failures = 0;
                    f.next_start_at = now;
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
                            invocations: 0,
                            failures: 0,
                            next_start_at: now,
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

    fn validate(&self, d: FunctionDeployment) -> GatewayResult<FunctionSpec> {
        let bad = |m: String| GatewayError::BadRequest(m);
        if !api::is_valid_name(&d.service) {
            return Err(bad(format!(
                "service: {:?} is not a valid function name ([-a-zA-Z_0-9.]+)",
                d.service
            )));
        }
        let namespace = d
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if !api::is_valid_name(&namespace) {
            return Err(bad(format!(
                "namespace: {namespace:?} is not a valid namespace"
            )));
        }
        if d.image.trim().is_empty() {
            return Err(bad("image: is required".into()));
        }
        let limits = FunctionLimits::parse(d.limits.as_ref(), d.requests.as_ref()).map_err(bad)?;
        let label = |name: &str, default: u64| -> GatewayResult<u64> {
            match d.labels.get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    bad(format!(
                        "labels.{name}: {v:?} is not a non-negative integer"
                    ))
                }),
            }
        };
        let policy = ScalePolicy {
            min: label(LABEL_MIN, scaler::DEFAULT_MIN_REPLICAS)?,
            max: label(LABEL_MAX, scaler::DEFAULT_MAX_REPLICAS)?,
            target: label(LABEL_TARGET, scaler::DEFAULT_TARGET_IN_FLIGHT)?,
        };
        if policy.max == 0 || policy.min > policy.max {
            return Err(bad(format!(
                "labels.{LABEL_MAX}: must be at least 1 and at least {LABEL_MIN} ({} > {})",
                policy.min, policy.max
            )));
        }
        if policy.target == 0 {
            return Err(bad(format!("labels.{LABEL_TARGET}: must be at least 1")));
        }
        {
            let secrets = self.inner.secrets.lock().unwrap();
            if let Some(missing) = d
                .secrets
                .iter()
                .find(|s| !secrets.contains_key(&(namespace.clone(), (*s).clone())))
            {
                return Err(bad(format!(
                    "secrets: secret {missing:?} not found in {namespace}"
                )));
            }
        }

        let mut env = self.inner.config.extra_env.clone();
        env.extend(d.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (mode, program, args) = match d.env_process.as_deref().map(str::trim) {
            Some(fprocess) if !fprocess.is_empty() => {
                let argv =
                    shell_words::split(fprocess).map_err(|e| bad(format!("envProcess: {e}")))?;
                let (first, rest) = argv
                    .split_first()
                    .ok_or_else(|| bad("envProcess: no program".into()))?;
                let program = self.inner.catalog.resolve_program(first).ok_or_else(|| {
                    bad(format!(
                        "envProcess: program {first:?} not found in the catalog {} nor in PATH",
                        self.inner.catalog.dir().display()
                    ))
                })?;
                env.push(("fprocess".into(), fprocess.to_string()));
                (Mode::Classic, program, rest.to_vec())
            }
            _ => {
                let exe = self.inner.catalog.resolve_image(&d.image).map_err(bad)?;
                (Mode::Http, exe, Vec::new())
            }
        };
        let key = FnKey {
            name: d.service.clone(),
            namespace: namespace.clone(),
        };
        Ok(FunctionSpec {
            process: ProcessSpec {
                program,
                args,
                env,
                limits,
                name: key.name.clone(),
                namespace,
            },
            deployment: d,
            key,
            mode,
            policy,
        })
    }

    /// `DELETE /system/functions`: removes the function and kills its replicas.
    pub fn remove(&self, name: &str, namespace: Option<&str>) -> GatewayResult<()> {
        let key = self.resolve(name, namespace)?;
        let entry = self.inner.functions.lock().unwrap().remove(&key);
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

    /// `POST /system/scale-function/{name}`: a floor the autoscaler keeps (0 allowed: scale to
    /// zero, woken by the next request), capped at the function's max.
    pub fn scale(&self, name: &str, namespace: Option<&str>, replicas: u64) -> GatewayResult<()> {
        let key = self.resolve(name, namespace)?;
        {
            let mut fns = self.inner.functions.lock().unwrap();
            let f = fns
                .get_mut(&key)
                .ok_or_else(|| GatewayError::FunctionNotFound(name.to_string()))?;
            f.manual_floor = Some(replicas.min(f.spec.policy.max));
            f.desired = replicas.min(f.spec.policy.max);
            f.busy_at = Instant::now();
        }
        self.inner.kick.notify_one();
        Ok(())
    }

    /// Resolves `name` (maybe `name.namespace`) to a deployed function.
    fn resolve(&self, full: &str, namespace: Option<&str>) -> GatewayResult<FnKey> {
        let fns = self.inner.functions.lock().unwrap();
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

    pub fn list(&self, namespace: Option<&str>) -> Vec<FunctionStatus> {
        let ns = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        let fns = self.inner.functions.lock().unwrap();
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
        let fns = self.inner.functions.lock().unwrap();
        fns.get(&key)
            .map(status_of)
            .ok_or_else(|| GatewayError::FunctionNotFound(name.to_string()))
    }

    pub fn replicas(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> GatewayResult<Vec<ReplicaStatus>> {
        let key = self.resolve(name, namespace)?;
        let fns = self.inner.functions.lock().unwrap();
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
                in_flight: r.in_flight,
            })
            .collect())
    }

    pub fn namespaces(&self) -> Vec<String> {
        let fns = self.inner.functions.lock().unwrap();
        let secrets = self.inner.secrets.lock().unwrap();
        let mut set: BTreeSet<String> = fns.keys().map(|k| k.namespace.clone()).collect();
        set.extend(secrets.keys().map(|(ns, _)| ns.clone()));
        set.insert(DEFAULT_NAMESPACE.to_string());
        set.into_iter().collect()
    }

    // ---------------------------------------------------------------- secrets

    pub fn list_secrets(&self, namespace: Option<&str>) -> Vec<Secret> {
        let ns = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        let secrets = self.inner.secrets.lock().unwrap();
        secrets
            .values()
            .filter(|s| s.namespace.as_deref() == Some(ns))
            .map(|s| Secret {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                value: None,
                raw_value: None,
            })
            .collect()
    }

    /// Create (`update == false`, 409 if it exists) or update (404 if it does not).
    pub fn put_secret(&self, mut s: Secret, update: bool) -> GatewayResult<()> {
        if !api::is_valid_name(&s.name) {
            return Err(GatewayError::BadRequest(format!(
                "name: {:?} is not a valid secret name",
                s.name
            )));
        }
        let ns = s
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        s.namespace = Some(ns.clone());
        let mut secrets = self.inner.secrets.lock().unwrap();
        let key = (ns, s.name.clone());
        match (secrets.contains_key(&key), update) {
            (true, false) => Err(GatewayError::SecretExists(s.name)),
            (false, true) => Err(GatewayError::SecretNotFound(s.name)),
            _ => {
                secrets.insert(key, s);
                Ok(())
            }
        }
    }

    pub fn delete_secret(&self, name: &str, namespace: Option<&str>) -> GatewayResult<()> {
        let ns = namespace
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        self.inner
            .secrets
            .lock()
            .unwrap()
            .remove(&(ns.to_string(), name.to_string()))
            .map(|_| ())
            .ok_or_else(|| GatewayError::SecretNotFound(name.to_string()))
    }

    // ---------------------------------------------------------------- scaling

    /// Runs the scaler until `stop` is notified: one [`Service::scale_step`] every 200 ms, or at
    /// once when something asks for it (a queued request, a deploy, a scale, a crash).
    pub async fn run_scaler(self, stop: Arc<Notify>) {
        loop {
            self.scale_step(Instant::now());
            tokio::select! {
                _ = stop.notified() => return,
                _ = self.inner.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// One scaling decision for every function at `now`: starts missing replicas (honouring the
    /// restart backoff), stops idle surplus ones.
    pub fn scale_step(&self, now: Instant) -> StepReport {
        let mut report = StepReport::default();
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return report;
        }
        let mut starts = Vec::new();
        let mut stopped = Vec::new();
        {
            let mut fns = self.inner.functions.lock().unwrap();
            for (key, f) in fns.iter_mut() {
                let in_flight: usize = f.replicas.iter().map(|r| r.in_flight).sum();
                let waiting = f.waiting.load(Ordering::SeqCst);
                let input = ScaleInput {
                    desired: f.desired,
                    demand: (in_flight + waiting) as u64,
                    manual_floor: f.manual_floor,
                    busy_at: f.busy_at,
                };
                let (desired, busy_at) = scaler::decide(&f.spec.policy, &input, now);
                f.desired = desired;
                f.busy_at = busy_at;
                let current = f.replicas.len() as u64;
                if current < desired && now >= f.next_start_at {
                    for _ in current..desired {
                        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
                        let instance = format!("{}-{id}", key.name);
                        let classic = f.spec.mode == Mode::Classic;
                        f.replicas.push(Replica {
                            id,
                            instance: instance.clone(),
                            state: if classic {
                                ReplicaState::Ready
                            } else {
                                ReplicaState::Starting
                            },
                            addr: None,
                            in_flight: 0,
                            ready_at: classic.then_some(now),
                            group: None,
                        });
                        report.started.push(instance.clone());
                        if !classic {
                            starts.push((f.spec.clone(), id, instance));
                        }
                    }
                    f.notify();
                } else if current > desired {
                    let mut excess = (current - desired) as usize;
                    // Replicas still starting go first, then idle ready ones, newest first.
                    for want_state in [ReplicaState::Starting, ReplicaState::Ready] {
                        let mut i = f.replicas.len();
                        while excess > 0 && i > 0 {
                            i -= 1;
                            let r = &f.replicas[i];
                            if r.state == want_state && r.in_flight == 0 {
                                let r = f.replicas.remove(i);
                                report.stopped.push(r.instance.clone());
                                stopped.push(r);
                                excess -= 1;
                            }
                        }
                    }
                    f.notify();
                }
                let label = key.to_string();
                self.inner
                    .metrics
                    .service_count
                    .with_label_values(&[&label])
                    .set(f.replicas.len() as f64);
                self.inner
                    .metrics
                    .queue_length
                    .with_label_values(&[&label])
                    .set(waiting as f64);
            }
        }
        drop(stopped); // kills their process groups
        for (spec, id, instance) in starts {
            let this = self.clone();
            self.inner
                .runtime
                .spawn(async move { this.start_and_supervise(spec, id, instance).await });
        }
        if !report.started.is_empty() || !report.stopped.is_empty() {
            tracing::debug!(?report, "scale step");
        }
        report
    }

    async fn start_and_supervise(self, spec: Arc<FunctionSpec>, id: u64, instance: String) {
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
            let mut fns = inner.functions.lock().unwrap();
            match fns
                .get_mut(key)
                .filter(|f| Arc::ptr_eq(&f.spec, &spec))
                .and_then(|f| {
                    let r = f.replicas.iter_mut().find(|r| r.id == id)?;
                    r.state = ReplicaState::Ready;
                    r.addr = Some(started.addr);
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
        drop(started.confinement);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
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

    /// Removes a replica that failed or exited on its own; returns whether it was still
    /// registered (an unexpected exit rather than a deliberate stop).
    fn replica_gone(&self, spec: &Arc<FunctionSpec>, id: u64, was_ready: bool) -> bool {
        let now = Instant::now();
        let removed = {
            let mut fns = self.inner.functions.lock().unwrap();
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

    // ---------------------------------------------------------------- invocation

    /// Invokes a function: waits (bounded queue) for a ready replica, then proxies the request
    /// (HTTP mode) or runs the process once (classic mode). Adds `X-Call-Id`, `X-Start-Time`
    /// and `X-Duration-Seconds`; records metrics.
    pub async fn invoke(
        &self,
        full_name: &str,
        mut req: Invocation,
    ) -> GatewayResult<InvocationResponse> {
        let started = Instant::now();
        let start_wall = SystemTime::now();
        let start_nanos = start_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_string();
        let key = self.resolve(full_name, None)?;
        let label = key.to_string();
        self.inner
            .metrics
            .invocation_started
            .with_label_values(&[&label])
            .inc();
        let call_id = header(&req.headers, "x-call-id")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        req.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("x-call-id") && !k.eq_ignore_ascii_case("x-start-time")
        });
        req.headers
            .push(("X-Call-Id".into(), call_id.clone().into_bytes()));
        req.headers
            .push(("X-Start-Time".into(), start_nanos.clone().into_bytes()));

        let result = self.invoke_inner(&key, req).await;
        let elapsed = started.elapsed().as_secs_f64();
        let code = match &result {
            Ok(r) => r.status,
            Err(e) => actix_web::ResponseError::status_code(e).as_u16(),
        }
        .to_string();
        let m = &self.inner.metrics;
        m.invocation_total.with_label_values(&[&label, &code]).inc();
        m.functions_seconds
            .with_label_values(&[&label, &code])
            .observe(elapsed);
        if let Some(f) = self.inner.functions.lock().unwrap().get_mut(&key) {
            f.invocations += 1;
        }
        let mut resp = result?;
        resp.headers.retain(|(k, _)| {
            !["x-call-id", "x-start-time", "x-duration-seconds"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
        });
        resp.headers
            .push(("X-Call-Id".into(), call_id.into_bytes()));
        resp.headers
            .push(("X-Start-Time".into(), start_nanos.into_bytes()));
        resp.headers.push((
            "X-Duration-Seconds".into(),
            format!("{elapsed:.6}").into_bytes(),
        ));
        Ok(resp)
    }

    async fn invoke_inner(
        &self,
        key: &FnKey,
        req: Invocation,
    ) -> GatewayResult<InvocationResponse> {
        let lease = self.acquire(key).await?;
        match lease.spec.mode {
            Mode::Http => self.forward(&lease, req).await,
            Mode::Classic => self.exec(&lease, req).await,
        }
    }

    /// A ready replica with the fewest requests in flight, waiting in the function's bounded
    /// queue while there is none (scale from zero, restarts).
    async fn acquire(&self, key: &FnKey) -> GatewayResult<Lease> {
        let deadline = Instant::now() + self.inner.config.upstream_timeout;
        let mut slot: Option<QueueSlot> = None;
        loop {
            let mut changed = {
                let mut fns = self.inner.functions.lock().unwrap();
                let f = fns
                    .get_mut(key)
                    .ok_or_else(|| GatewayError::FunctionNotFound(key.name.clone()))?;
                if let Some(r) = f
                    .replicas
                    .iter_mut()
                    .filter(|r| r.state == ReplicaState::Ready)
                    .min_by_key(|r| r.in_flight)
                {
                    r.in_flight += 1;
                    return Ok(Lease {
                        service: self.clone(),
                        key: key.clone(),
                        replica: r.id,
                        instance: r.instance.clone(),
                        addr: r.addr,
                        spec: f.spec.clone(),
                    });
                }
                if slot.is_none() {
                    let capacity = self.inner.config.queue_capacity;
                    if f.waiting.load(Ordering::SeqCst) >= capacity {
                        return Err(GatewayError::QueueFull {
                            function: key.to_string(),
                            capacity,
                            retry_after: Duration::from_secs(1),
                        });
                    }
                    f.waiting.fetch_add(1, Ordering::SeqCst);
                    slot = Some(QueueSlot(f.waiting.clone()));
                    self.inner.kick.notify_one();
                }
                f.changed.subscribe()
            };
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(_) => continue, // a change, or the function is gone: look again
                Err(_) => return Err(GatewayError::Unavailable(key.to_string())),
            }
        }
    }

    async fn forward(&self, lease: &Lease, req: Invocation) -> GatewayResult<InvocationResponse> {
        let addr = lease.addr.ok_or_else(|| {
            GatewayError::Internal(anyhow::anyhow!("replica {} has no address", lease.instance))
        })?;
        let mut url = format!("http://{addr}{}", req.path);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(&req.query);
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| GatewayError::BadRequest(format!("bad method {:?}", req.method)))?;
        let timeout = self.inner.config.upstream_timeout;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut forwarded_for = None;
        for (k, v) in &req.headers {
            if HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                continue;
            }
            if k.eq_ignore_ascii_case("x-forwarded-for") {
                forwarded_for = Some(String::from_utf8_lossy(v).into_owned());
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_bytes(v),
            ) {
                headers.append(name, value);
            }
        }
        let xff = match (forwarded_for, &req.peer) {
            (Some(prev), Some(peer)) => Some(format!("{prev}, {peer}")),
            (Some(prev), None) => Some(prev),
            (None, peer) => peer.clone(),
        };
        if let Some(v) = xff.and_then(|v| reqwest::header::HeaderValue::from_str(&v).ok()) {
            headers.insert("x-forwarded-for", v);
        }
        if let Some(v) = req
            .host
            .as_deref()
            .and_then(|v| reqwest::header::HeaderValue::from_str(v).ok())
        {
            headers.insert("x-forwarded-host", v);
        }
        let upstream_err = |e: reqwest::Error| {
            if e.is_timeout() {
                GatewayError::UpstreamTimeout(lease.key.to_string())
            } else {
                GatewayError::Upstream {
                    function: lease.key.to_string(),
                    message: format!("{e:#}"),
                }
            }
        };
        let resp = self
            .inner
            .http
            .request(method, url)
            .headers(headers)
            .body(req.body)
            .timeout(timeout)
            .send()
            .await
            .map_err(upstream_err)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        let body = resp.bytes().await.map_err(upstream_err)?;
        Ok(InvocationResponse {
            status,
            headers,
            body,
        })
    }

    /// Classic watchdog: the body on stdin, stdout as the response, headers as `Http_*` env.
    async fn exec(&self, lease: &Lease, req: Invocation) -> GatewayResult<InvocationResponse> {
        let mut env = vec![
            ("Http_Method".to_string(), req.method.clone()),
            ("Http_Query".to_string(), req.query.clone()),
            ("Http_Path".to_string(), req.path.clone()),
        ];
        for (k, v) in &req.headers {
            if let Ok(v) = std::str::from_utf8(v) {
                env.push((format!("Http_{}", canonical_env_header(k)), v.to_string()));
            }
        }
        let content_type = header(&req.headers, "content-type")
            .map(|v| v.to_vec())
            .unwrap_or_else(|| b"text/plain".to_vec());
        let key = &lease.key;
        let out = process::run_classic(
            &lease.spec.process,
            env,
            &lease.instance,
            &self.inner.enforcement,
            req.body.to_vec(),
            self.inner.config.exec_timeout,
        )
        .await;
        let out = match out {
            Ok(out) => out,
            Err(ExecError::Timeout) => {
                self.inner.logs.push(
                    &key.name,
                    &key.namespace,
                    &lease.instance,
                    &format!(
                        "faas-gateway: killed after exec timeout {:?}",
                        self.inner.config.exec_timeout
                    ),
                );
                return Err(GatewayError::ExecTimeout(key.to_string()));
            }
            Err(ExecError::Spawn(message)) => {
                return Err(GatewayError::Upstream {
                    function: key.to_string(),
                    message,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            self.inner
                .logs
                .push(&key.name, &key.namespace, &lease.instance, line);
        }
        if out.status.success() {
            Ok(InvocationResponse {
                status: 200,
                headers: vec![("Content-Type".into(), content_type)],
                body: Bytes::from(out.stdout),
            })
        } else {
            Ok(InvocationResponse {
                status: 500,
                headers: vec![("Content-Type".into(), b"text/plain".to_vec())],
                body: Bytes::from(format!("{}\n{stderr}", out.status)),
            })
        }
    }

    // ---------------------------------------------------------------- shutdown

    /// Kills every function process and removes the gateway's cgroups.
    pub fn shutdown(&self) {
        if self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let all: Vec<FunctionEntry> = {
            let mut fns = self.inner.functions.lock().unwrap();
            fns.drain().map(|(_, f)| f).collect()
        };
        let count: usize = all.iter().map(|f| f.replicas.len()).sum();
        for f in &all {
            f.notify();
        }
        drop(all);
        self.inner.logs.close();
        self.inner.enforcement.cleanup();
        tracing::info!(replicas = count, "function processes killed");
    }
}

impl ProcessGroup {
    /// A placeholder that kills nothing.
    fn none() -> Self {
        ProcessGroup::from_raw(0)
    }
}

/// A replica chosen for one request; gives the slot back when dropped.
struct Lease {
    service: Service,
    key: FnKey,
    replica: u64,
    instance: String,
    addr: Option<SocketAddr>,
    spec: Arc<FunctionSpec>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut fns = self.service.inner.functions.lock().unwrap();
        if let Some(r) = fns
            .get_mut(&self.key)
            .and_then(|f| f.replicas.iter_mut().find(|r| r.id == self.replica))
        {
            r.in_flight = r.in_flight.saturating_sub(1);
        }
    }
}

/// One place in a function's queue, freed when dropped (served, timed out or cancelled).
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        invocation_count: f.invocations as f64,
        replicas: f.desired,
        available_replicas: available,
        created_at: humantime::format_rfc3339_seconds(f.created_at).to_string(),
        usage: (memory > 0).then_some(FunctionUsage {
            cpu: 0.0,
            total_memory_bytes: memory as f64,
        }),
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

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// `x-custom-header` -> `X_Custom_Header`, as the classic watchdog names `Http_*` variables.
fn canonical_env_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("_")
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

    #[test]
    fn headers_become_classic_watchdog_env_names() {
        assert_eq!(canonical_env_header("x-custom-header"), "X_Custom_Header");
        assert_eq!(canonical_env_header("content-type"), "Content_Type");
    }
}
