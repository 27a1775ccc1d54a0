//! The service layer: the function registry, replicas, the per-function queue, the scaler step,
//! invocation (proxy or classic exec), secrets. Knows nothing of actix; handlers in
//! [`crate::routes`] only convert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::{Counter, Histogram};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{
    self, DEFAULT_NAMESPACE, FunctionDeployment, FunctionStatus, FunctionUsage, ReplicaStatus,
    Secret,
};
use crate::catalog::{Catalog, EntryMode};
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
const HOP_BY_HOP: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

const X_CALL_ID: HeaderName = HeaderName::from_static("x-call-id");
const X_START_TIME: HeaderName = HeaderName::from_static("x-start-time");
const X_DURATION_SECONDS: HeaderName = HeaderName::from_static("x-duration-seconds");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Replaces every `name` header by `value` (none: removes them).
fn set_header(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.iter().any(|h| h == name)
}

/// `headers` without the hop-by-hop ones (all their values).
fn without_hop_by_hop(headers: HeaderMap) -> HeaderMap {
    if !headers.keys().any(is_hop_by_hop) {
        return headers;
    }
    let mut out = HeaderMap::with_capacity(headers.len());
    let mut name = None;
    for (k, v) in headers {
        // `into_iter` gives the name with the first value of each name only.
        if let Some(k) = k {
            name = (!is_hop_by_hop(&k)).then_some(k);
        }
        if let Some(k) = &name {
            out.append(k.clone(), v);
        }
    }
    out
}

/// The service's configuration (the subset of [`crate::GatewaySettings`] it needs).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub catalog_dir: PathBuf,
    pub queue_capacity: usize,
    pub upstream_timeout: Duration,
    pub exec_timeout: Duration,
    pub ready_timeout: Duration,
    pub extra_env: Vec<(String, String)>,
    /// Largest answer read from a function (see [`crate::GatewaySettings::max_answer_bytes`]).
    pub max_answer_bytes: usize,
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

/// How a function runs: long-lived HTTP replicas (of-watchdog `mode=http`), or one process per
/// request (classic watchdog) whose replicas are slots without a process.
type Mode = EntryMode;

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
    /// `addr` as a URI authority, for the upstream request.
    authority: Option<Authority>,
    /// Requests in flight; shared with the [`Lease`]s, which give their slot back without the
    /// registry lock. Only incremented under the registry lock.
    in_flight: Arc<AtomicUsize>,
    ready_at: Option<Instant>,
    /// Kills the replica's process group when the replica leaves the registry.
    group: Option<ProcessGroup>,
    /// Set by the supervisor when the process ends.
    exit: Arc<watch::Sender<Option<ReplicaExit>>>,
}

/// How a replica's process ended.
#[derive(Debug, Clone)]
struct ReplicaExit {
    /// Why the memory limit stopped it, when it did.
    memory: Option<String>,
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
    invocations: Arc<AtomicU64>,
    /// Metric handles of this function, kept across redeploys.
    metrics: Arc<FnMetrics>,
    failures: u32,
    next_start_at: Instant,
    /// Processes stopped by their memory limit since the deployment, and the last reason.
    memory_limit_kills: u64,
    last_memory_limit_kill: Option<String>,
}

impl FunctionEntry {
    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A function's per-invocation metric handles, resolved once instead of a label lookup per
/// request. Created lazily so that series appear only once used, as with `with_label_values`.
struct FnMetrics {
    /// `name.namespace`, the `function_name` label.
    label: String,
    started: OnceLock<Counter>,
    /// `code="200"` series of `gateway_function_invocation_total` and `gateway_functions_seconds`.
    ok: OnceLock<(Counter, Histogram)>,
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

/// What one [`Service::scale_step`] did (instance names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

/// A request to invoke a function, as received.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub method: Method,
    /// The sub-path after the function name, starting with `/`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: Option<String>,
    pub host: Option<String>,
}

/// The function's answer.
#[derive(Debug, Clone)]
pub struct InvocationResponse {
    pub status: u16,
    pub headers: HeaderMap,
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
                catalog: Catalog::load(config.catalog_dir.clone())?,
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

        // Sealed execution: variables are data, checked by name and bounded; the program is
        // the catalog's, chosen by entry-point name at most.
        model::exec::check_env_vars(
            d.env_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &model::exec::EnvLimits::DEPLOYMENT,
        )
        .map_err(|e| bad(format!("{}: {e}", e.field())))?;
        let entry_point = match d.env_process.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => Some(
                model::exec::EntryPointName::parse(name)
                    .map_err(|e| bad(format!("envProcess: {e}")))?,
            ),
            _ => None,
        };
        let resolved = self
            .inner
            .catalog
            .resolve(&d.image, entry_point.as_ref())
            .map_err(bad)?;
        let mut env = self.inner.config.extra_env.clone();
        env.extend(d.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if resolved.mode == Mode::Classic {
            env.push(("fprocess".into(), resolved.command_line()));
        }
        let (mode, program, args) = (resolved.mode, resolved.program, resolved.args);
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
        resolve_in(&fns, full, namespace)
    }
}

/// [`Service::resolve`] with the registry already locked.
fn resolve_in(
    fns: &HashMap<FnKey, FunctionEntry>,
    full: &str,
    namespace: Option<&str>,
) -> GatewayResult<FnKey> {
    {
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
}

impl Service {
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
                in_flight: r.in_flight.load(Ordering::SeqCst),
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
                let in_flight: usize = f
                    .replicas
                    .iter()
                    .map(|r| r.in_flight.load(Ordering::SeqCst))
                    .sum();
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
                        let exit = Arc::new(watch::channel(None).0);
                        f.replicas.push(Replica {
                            id,
                            instance: instance.clone(),
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
                            exit: exit.clone(),
                        });
                        report.started.push(instance.clone());
                        if !classic {
                            starts.push((f.spec.clone(), id, instance, exit));
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
                            if r.state == want_state && r.in_flight.load(Ordering::SeqCst) == 0 {
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
        for (spec, id, instance, exit) in starts {
            let this = self.clone();
            self.inner
                .runtime
                .spawn(async move { this.start_and_supervise(spec, id, instance, exit).await });
        }
        if !report.started.is_empty() || !report.stopped.is_empty() {
            tracing::debug!(?report, "scale step");
        }
        report
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
            let mut fns = inner.functions.lock().unwrap();
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
    fn record_memory_kill(&self, spec: &Arc<FunctionSpec>, instance: &str, detail: &str) {
        let key = &spec.key;
        let message = format!("{instance} {detail}");
        tracing::warn!(%key, %instance, %detail, "function process stopped by its memory limit");
        self.inner.logs.push(
            &key.name,
            &key.namespace,
            instance,
            &format!("faas-gateway: {message}"),
        );
        let mut fns = self.inner.functions.lock().unwrap();
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
        // One lock: resolve, the function's handles, and a ready replica when there is one.
        let (key, fm, invocations, lease) = {
            let mut fns = self.inner.functions.lock().unwrap();
            let key = resolve_in(&fns, full_name, None)?;
            let f = fns
                .get_mut(&key)
                .ok_or_else(|| GatewayError::FunctionNotFound(full_name.to_string()))?;
            let lease = try_lease(f);
            (key, f.metrics.clone(), f.invocations.clone(), lease)
        };
        let m = &self.inner.metrics;
        fm.started
            .get_or_init(|| m.invocation_started.with_label_values(&[&fm.label]))
            .inc();
        // The caller's id (as UTF-8, lossily) or a new one.
        let call_id = match req.headers.get(X_CALL_ID) {
            Some(v) if std::str::from_utf8(v.as_bytes()).is_ok() => Some(v.clone()),
            Some(v) => HeaderValue::from_str(&String::from_utf8_lossy(v.as_bytes())).ok(),
            None => HeaderValue::from_str(&new_call_id()).ok(),
        };
        let start_value = HeaderValue::from_str(&start_nanos).ok();
        set_header(&mut req.headers, X_CALL_ID, call_id.clone());
        set_header(&mut req.headers, X_START_TIME, start_value.clone());

        let result = match lease {
            Some(lease) => self.run(lease, req).await,
            None => match self.acquire(&key).await {
                Ok(lease) => self.run(lease, req).await,
                Err(e) => Err(e),
            },
        };
        let elapsed = started.elapsed().as_secs_f64();
        let status = match &result {
            Ok(r) => r.status,
            Err(e) => actix_web::ResponseError::status_code(e).as_u16(),
        };
        if status == 200 {
            let (total, seconds) = fm.ok.get_or_init(|| {
                (
                    m.invocation_total.with_label_values(&[&fm.label, "200"]),
                    m.functions_seconds.with_label_values(&[&fm.label, "200"]),
                )
            });
            total.inc();
            seconds.observe(elapsed);
        } else {
            let code = status.to_string();
            m.invocation_total
                .with_label_values(&[&fm.label, &code])
                .inc();
            m.functions_seconds
                .with_label_values(&[&fm.label, &code])
                .observe(elapsed);
        }
        invocations.fetch_add(1, Ordering::Relaxed);
        let mut resp = result?;
        set_header(&mut resp.headers, X_CALL_ID, call_id);
        set_header(&mut resp.headers, X_START_TIME, start_value);
        set_header(
            &mut resp.headers,
            X_DURATION_SECONDS,
            HeaderValue::from_str(&format!("{elapsed:.6}")).ok(),
        );
        Ok(resp)
    }

    /// Runs the invocation on the leased replica in a client span named after the function,
    /// whose context replaces the caller's `traceparent` (classic mode: `Http_Traceparent`),
    /// so the function's own span is its child.
    async fn run(&self, lease: Lease, mut req: Invocation) -> GatewayResult<InvocationResponse> {
        let span = telemetry::client_span(
            req.method.as_str(),
            &lease.spec.key,
            lease.authority.as_ref().map(|a| a.as_str()),
        );
        telemetry::inject_span(&span, &mut req.headers);
        let result = match lease.spec.mode {
            Mode::Http => self.forward(&lease, req).instrument(span.clone()).await,
            Mode::Classic => self.exec(&lease, req).instrument(span.clone()).await,
        };
        match &result {
            Ok(r) => telemetry::record_status(&span, r.status),
            Err(e) => telemetry::record_error(&span, e),
        }
        result
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
                if let Some(lease) = try_lease(f) {
                    return Ok(lease);
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
        let authority = lease.authority.clone().ok_or_else(|| {
            GatewayError::Internal(anyhow::anyhow!("replica {} has no address", lease.instance))
        })?;
        let key = &lease.spec.key;
        let uri = upstream_uri(authority, &req.path, &req.query).map_err(|message| {
            GatewayError::Upstream {
                function: key.to_string(),
                message,
            }
        })?;
        let timeout = self.inner.config.upstream_timeout;
        let mut headers = without_hop_by_hop(req.headers);
        // The last X-Forwarded-For received, extended with the peer.
        let forwarded_for = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .next_back()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        headers.remove(X_FORWARDED_FOR);
        let xff = match (forwarded_for, &req.peer) {
            (Some(prev), Some(peer)) => Some(format!("{prev}, {peer}")),
            (Some(prev), None) => Some(prev),
            (None, peer) => peer.clone(),
        };
        if let Some(v) = xff.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(X_FORWARDED_FOR, v);
        }
        if let Some(v) = req
            .host
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(X_FORWARDED_HOST, v);
        }
        // As reqwest's default did.
        if !headers.contains_key(http::header::ACCEPT) {
            headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        let mut request = http::Request::new(Full::new(req.body));
        *request.method_mut() = req.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        // Errors as reqwest reported them: a timeout anywhere in the chain is a 504.
        let upstream_err = |e: &(dyn std::error::Error + 'static), message: String| {
            if is_timeout(e) {
                GatewayError::UpstreamTimeout(key.to_string())
            } else {
                GatewayError::Upstream {
                    function: key.to_string(),
                    message,
                }
            }
        };
        let uri = request.uri().clone();
        let exchange = async {
            let resp = upstream_client()
                .request(request)
                .await
                .map_err(|e| upstream_err(&e, format!("error sending request for url ({uri})")))?;
            let (parts, body) = resp.into_parts();
            let limit = self.inner.config.max_answer_bytes;
            let body = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        GatewayError::AnswerTooLarge {
                            function: key.to_string(),
                            limit,
                        }
                    } else {
                        upstream_err(e.as_ref(), "request or response body error".into())
                    }
                })?;
            Ok::<_, GatewayError>((parts, body.to_bytes()))
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(key.to_string()))?;
        let (parts, body) = match result {
            Ok(answer) => answer,
            Err(e @ GatewayError::Upstream { .. }) => return Err(self.why_failed(lease, e).await),
            Err(e) => return Err(e),
        };
        let headers = without_hop_by_hop(parts.headers);
        Ok(InvocationResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }

    /// A failed exchange with a replica: when the replica's process ended because of its memory
    /// limit (known within a second of the failure), that is the error; else `e` itself.
    async fn why_failed(&self, lease: &Lease, e: GatewayError) -> GatewayError {
        let mut exit = lease.exit.subscribe();
        let ended =
            tokio::time::timeout(Duration::from_secs(1), exit.wait_for(|x| x.is_some())).await;
        let memory = match ended {
            Ok(Ok(x)) => x.as_ref().and_then(|x| x.memory.clone()),
            _ => None,
        };
        match memory {
            Some(detail) => GatewayError::MemoryExceeded {
                function: lease.spec.key.to_string(),
                detail,
            },
            None => e,
        }
    }

    /// Classic watchdog: the body on stdin, stdout as the response, headers as `Http_*` env.
    async fn exec(&self, lease: &Lease, req: Invocation) -> GatewayResult<InvocationResponse> {
        let mut env = vec![
            ("Http_Method".to_string(), req.method.as_str().to_string()),
            ("Http_Query".to_string(), req.query.clone()),
            ("Http_Path".to_string(), req.path.clone()),
        ];
        for (k, v) in &req.headers {
            if let Ok(v) = std::str::from_utf8(v.as_bytes()) {
                env.push((
                    format!("Http_{}", canonical_env_header(k.as_str())),
                    v.to_string(),
                ));
            }
        }
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("text/plain"));
        let key = &lease.spec.key;
        let out = process::run_classic(
            &lease.spec.process,
            env,
            &lease.instance,
            &self.inner.enforcement,
            req.body.to_vec(),
            self.inner.config.exec_timeout,
            self.inner.config.max_answer_bytes,
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
            Err(ExecError::AnswerTooLarge(limit)) => {
                return Err(GatewayError::AnswerTooLarge {
                    function: key.to_string(),
                    limit,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            self.inner
                .logs
                .push(&key.name, &key.namespace, &lease.instance, line);
        }
        if !out.status.success()
            && let Some(detail) = self.inner.enforcement.memory_verdict(
                lease.spec.process.limits,
                out.oom_kills,
                &stderr,
            )
        {
            self.record_memory_kill(&lease.spec, &lease.instance, &detail);
            return Err(GatewayError::MemoryExceeded {
                function: key.to_string(),
                detail,
            });
        }
        if out.status.success() {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, content_type);
            Ok(InvocationResponse {
                status: 200,
                headers,
                body: Bytes::from(out.stdout),
            })
        } else {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            Ok(InvocationResponse {
                status: 500,
                headers,
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
    spec: Arc<FunctionSpec>,
    instance: String,
    authority: Option<Authority>,
    in_flight: Arc<AtomicUsize>,
    exit: Arc<watch::Sender<Option<ReplicaExit>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// The ready replica of `f` with the fewest requests in flight, leased.
fn try_lease(f: &mut FunctionEntry) -> Option<Lease> {
    let r = f
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Ready)
        .min_by_key(|r| r.in_flight.load(Ordering::SeqCst))?;
    r.in_flight.fetch_add(1, Ordering::SeqCst);
    Some(Lease {
        spec: f.spec.clone(),
        instance: r.instance.clone(),
        authority: r.authority.clone(),
        in_flight: r.in_flight.clone(),
        exit: r.exit.clone(),
    })
}

/// The upstream HTTP client of this thread: a keep-alive pool per thread keeps each connection's
/// task on the thread (actix worker) that uses it.
fn upstream_client() -> Client<HttpConnector, Full<Bytes>> {
    thread_local! {
        static CLIENT: Client<HttpConnector, Full<Bytes>> = {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector)
        };
    }
    CLIENT.with(Client::clone)
}

/// `http://{authority}{path}?{query}`, as reqwest (the `url` crate) would send it: built
/// directly when `path` and `query` need no normalisation, through `url` otherwise.
fn upstream_uri(authority: Authority, path: &str, query: &str) -> Result<Uri, String> {
    let plain = |s: &str| {
        s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'%'
                )
        })
    };
    // `.`, `..` and their percent-encoded forms, which `url` resolves.
    let dot_segment = path.split('/').any(|seg| {
        [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"]
            .iter()
            .any(|d| seg.eq_ignore_ascii_case(d))
    });
    if path.starts_with('/') && plain(path) && plain(query) && !dot_segment {
        let mut pq = String::with_capacity(path.len() + query.len() + 1);
        pq.push_str(path);
        if !query.is_empty() {
            pq.push('?');
            pq.push_str(query);
        }
        let pq = http::uri::PathAndQuery::try_from(pq).map_err(|e| e.to_string())?;
        return Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| e.to_string());
    }
    let mut url = format!("http://{authority}{path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    let parsed =
        reqwest::Url::parse(&url).map_err(|e| format!("builder error for url ({url}): {e}"))?;
    Uri::try_from(parsed.as_str()).map_err(|e| format!("builder error for url ({parsed}): {e}"))
}

/// Whether `e` or one of its sources is a timeout (as `reqwest::Error::is_timeout`).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// A random (version 4) call id; a per-thread generator seeded from the OS, rather than a
/// system call per request.
fn new_call_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64)> = {
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            Cell::new(seed)
        };
    }
    fn splitmix(x: u64) -> u64 {
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (a, b) = STATE.with(|s| {
        let (x, y) = s.get();
        let x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set((x, y));
        (splitmix(x), splitmix(x ^ y))
    });
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
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
    fn upstream_uri_is_what_reqwest_would_send() {
        let authority = Authority::from_static("127.0.0.1:8081");
        for (path, query) in [
            ("/", ""),
            ("/", "a=1&b=two"),
            ("/a/b/c", "x=%20y"),
            ("/a/./b/../c", ""),
            ("/a/%2E%2e/c", "q"),
            ("/a b/ü", "x=a b&y='\"#frag"),
            ("//double", ""),
            ("/a?b", "c"),
            ("/%zz/ok-._~!$&()*+,;=:@", "k=v"),
        ] {
            let mut url = format!("http://{authority}{path}");
            if !query.is_empty() {
                url.push('?');
                url.push_str(query);
            }
            let expected = Uri::try_from(reqwest::Url::parse(&url).unwrap().as_str()).unwrap();
            assert_eq!(
                upstream_uri(authority.clone(), path, query).unwrap(),
                expected,
                "{path:?} {query:?}"
            );
        }
    }

    #[test]
    fn call_ids_are_distinct_v4_uuids() {
        let a = uuid::Uuid::parse_str(&new_call_id()).unwrap();
        let b = uuid::Uuid::parse_str(&new_call_id()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_with_all_their_values() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("te", HeaderValue::from_static("a"));
        h.append("te", HeaderValue::from_static("b"));
        h.append("content-type", HeaderValue::from_static("text/plain"));
        let out = without_hop_by_hop(h);
        assert_eq!(out.len(), 3);
        assert_eq!(out.get_all("x-a").iter().count(), 2);
        assert!(!out.contains_key("te") && !out.contains_key("connection"));
    }

    #[test]
    fn headers_become_classic_watchdog_env_names() {
        assert_eq!(canonical_env_header("x-custom-header"), "X_Custom_Header");
        assert_eq!(canonical_env_header("content-type"), "Content_Type");
    }
}
