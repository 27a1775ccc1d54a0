//! Embedded OpenFaaS-compatible gateway. A fog node without Kubernetes or containers deploys and
//! invokes functions through the same OpenFaaS REST API as in production (faas-cli works
//! unchanged); this crate serves that API over functions run as local processes.
//!
//! It owns: the OpenFaaS routes and their quirks ([`routes`]), the function registry, replicas,
//! the per-function queue and the scaler ([`service`], [`scaler`]), the process runner
//! ([`process`]) with resource limits ([`limits`], [`quantity`]), the function catalog
//! ([`catalog`]), logs ([`logs`]) and Prometheus metrics ([`metrics`]). The OpenFaaS wire types
//! ([`api`]) and the upstream HTTP client pieces ([`upstream`]) also serve fog nodes, which
//! call OpenFaaS gateways and proxy to them.
//!
//! Sealed execution: a deployment picks an image, never a program. The gateway runs only what
//! its catalog maps the image to (`fn-<name>`, or an entry point the image declares, chosen by
//! name with `envProcess`); `envVars` are checked by name ([`model::exec`]); as root, function
//! processes run as an unprivileged user, limited by cgroup v2 or rlimits ([`limits`]).
//!
//! Layering: handlers (`routes`) -> service -> process runner. Errors: [`GatewayError`], mapped to
//! status codes with `text/plain` bodies as OpenFaaS answers.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

pub mod api;
pub mod catalog;
pub mod error;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod quantity;
pub mod routes;
pub mod scaler;
pub mod service;
pub mod upstream;

pub use catalog::default_catalog_dir;
pub use error::GatewayError;
pub use limits::{Enforcement, IsolationSettings, LimitMode};
pub use service::Service;

/// The default of [`GatewaySettings::max_answer_bytes`]: 32 MiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Address to bind; port 0 picks a free port (see [`Gateway::port`]).
    pub listen: SocketAddr,
    /// Where `fn-<name>` executables live (see [`default_catalog_dir`]).
    pub catalog_dir: PathBuf,
    /// Basic auth on `/system/*` (never on `/function/*`, `/healthz`), as OpenFaaS does.
    pub basic_auth: Option<(String, String)>,
    /// Requests a function may hold waiting for a ready replica (scale from zero) before new
    /// ones get 429 with `Retry-After`. Default 100.
    pub queue_capacity: usize,
    /// How long a request may wait for a ready replica, and then for its answer. Default 60 s.
    pub upstream_timeout: Duration,
    /// Classic-watchdog (`envProcess`) execution limit; exceeding it answers 408. Default 30 s.
    pub exec_timeout: Duration,
    /// A replica must print its listening line and answer `/_/health` within this. Default 10 s.
    pub ready_timeout: Duration,
    /// Added to every function process's environment (e.g. `FOGMARKET_NODE_NAME`);
    /// a deployment's `envVars` override them. Operator configuration: not filtered.
    pub extra_env: Vec<(String, String)>,
    /// Limits (cgroup v2 or rlimits) and the unprivileged user of function processes.
    pub isolation: IsolationSettings,
    /// Largest answer read from a function (HTTP body, or a classic process's stdout); a
    /// larger one fails the invocation with 502. Default 32 MiB.
    pub max_answer_bytes: usize,
    /// `cert` and `key` (PEM) serve the API over HTTPS; none: plain HTTP (as embedded in a
    /// fog node, on loopback).
    pub tls: signed_http::tls::TlsFiles,
}

impl GatewaySettings {
    pub fn new(listen: SocketAddr, catalog_dir: PathBuf) -> Self {
        GatewaySettings {
            listen,
            catalog_dir,
            basic_auth: None,
            queue_capacity: 100,
            upstream_timeout: Duration::from_secs(60),
            exec_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(10),
            extra_env: Vec::new(),
            isolation: IsolationSettings::default(),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            tls: signed_http::tls::TlsFiles::default(),
        }
    }
}

/// A bound, not yet running gateway.
pub struct Gateway {
    listener: TcpListener,
    port: u16,
    host: std::net::IpAddr,
    service: Service,
    basic_auth: Option<(String, String)>,
    tls: Option<rustls::ServerConfig>,
}

impl Gateway {
    /// Binds the listening socket (port 0 allowed), reads the catalog manifest and sets up the
    /// isolation of function processes (limits and user).
    pub async fn build(settings: GatewaySettings) -> anyhow::Result<Gateway> {
        let tls = settings.tls.server_config()?;
        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", settings.listen))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let enforcement = Enforcement::configure(&settings.isolation)
            .map_err(|e| anyhow::anyhow!("isolation of function processes: {e}"))?;
        let info = enforcement.info();
        tracing::info!(
            mode = info.mode,
            memory = info.memory,
            cpu = info.cpu,
            run_as = %info.run_as,
            detail = %info.detail,
            "function isolation"
        );
        let service = Service::new(
            service::ServiceConfig {
                catalog_dir: settings.catalog_dir,
                queue_capacity: settings.queue_capacity,
                upstream_timeout: settings.upstream_timeout,
                exec_timeout: settings.exec_timeout,
                ready_timeout: settings.ready_timeout,
                extra_env: settings.extra_env,
                max_answer_bytes: settings.max_answer_bytes,
            },
            enforcement,
        )?;
        Ok(Gateway {
            listener,
            port: local.port(),
            host: local.ip(),
            service,
            basic_auth: settings.basic_auth,
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://IP:PORT`, or `https://` with TLS (loopback when bound to an unspecified
    /// address).
    pub fn url(&self) -> String {
        let ip = if self.host.is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            self.host
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, self.port))
    }

    /// The service, for embedding code that wants to act without HTTP.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until `shutdown` completes, then kills every function process it started.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let service = self.service.clone();
        // Also kills the functions if this future is dropped before finishing.
        let _guard = ShutdownGuard(service.clone());
        let mut loops = supervisor::Supervisor::new();
        let scaler = service.clone();
        loops.spawn("scaler", move || scaler.clone().run_scaler());
        let state = web::Data::new(routes::AppState {
            service: service.clone(),
            basic_auth: self.basic_auth,
        });
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                // A server span per request (`/function/*`, `/system/*`, ...), child of the
                // caller's `traceparent`; embedded in a fog node, in the node's traces.
                .wrap(telemetry::actix::TraceRequests::new("faas-gateway"))
        })
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(5);
        let server = match self.tls {
            Some(tls) => server.listen_rustls_0_23(self.listener, tls)?,
            None => server.listen(self.listener)?,
        }
        .run();
        let handle = server.handle();
        let server = tokio::spawn(server);
        shutdown.await;
        tracing::info!("shutting down");
        service.shutdown();
        loops.shutdown().await;
        handle.stop(true).await;
        server.await??;
        Ok(())
    }
}

struct ShutdownGuard(Service);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}
