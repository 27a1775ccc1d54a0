//! The service layer: one [`Service`] handle over the gateway's state (the function registry and
//! the secrets) and its configuration, with each job in its own file. Knows nothing of actix;
//! handlers in [`crate::routes`] only convert.
//!
//! - `spec`: a function's spec, parsed from its deployment.
//! - `registry`: deploy, update, remove and list functions.
//! - `secrets`: the secrets deployments refer to.
//! - `scaling`: the scaler loop and manual scaling.
//! - `replicas`: starting and supervising replica processes (ready, exit, restart backoff).
//! - `invoke`: one invocation: the bounded queue for a ready replica, headers and metrics.
//! - `proxy` and `classic`: running it on an HTTP replica, or as one process.
//!
//! The registry and the secrets are each behind one [`parking_lot::Mutex`], held only for short
//! steps without `.await`. A panic does not poison it, so one failed call cannot fail every
//! later one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::limits::Enforcement;
use crate::logs::LogStore;
use crate::metrics::Metrics;

mod classic;
mod invoke;
mod proxy;
mod registry;
mod replicas;
mod scaling;
mod secrets;
mod spec;

pub use invoke::{Invocation, InvocationResponse};
pub use scaling::StepReport;
pub use spec::{FnKey, LABEL_MAX, LABEL_MIN, LABEL_TARGET};

use registry::FunctionEntry;
use secrets::SecretStore;

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

/// The gateway's service; clones share one state.
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
    secrets: SecretStore,
    /// Wakes the scaler at once (a queued request, a deploy, a scale, a crash).
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
                secrets: SecretStore::default(),
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

    /// Kills every function process and removes the gateway's cgroups.
    pub fn shutdown(&self) {
        if self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let all: Vec<FunctionEntry> = {
            let mut fns = self.inner.functions.lock();
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
