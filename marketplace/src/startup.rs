//! Building and running the marketplace: bind, connect the database, load state, serve, and
//! drive the periodic steps (placement expiry, node liveness) until shutdown.
//!
//! Stopping (SIGINT, SIGTERM or [`StopHandle::stop`]) first ends the route long-polls, which
//! answer at once, then stops the HTTP server gracefully.

use crate::dashboard::DashboardConfig;
use crate::repository::Repository;
use crate::routes::{self, BodyLimit};
use crate::service::{Marketplace, MarketplaceConfig};
use crate::settings::Settings;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use model::Timestamp;
use model::auth::SecretKey;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// Meta key of the marketplace's own signing key (hex seed), made at first start.
const MARKETPLACE_KEY: &str = "marketplace_key";

/// A bound, ready-to-run marketplace.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    market: Marketplace,
    settings: Settings,
}

impl Application {
    /// Connects to the database (migrating it), loads the marketplace's signing key (generated
    /// and persisted at first start), marks every known node not-alive until it heartbeats again,
    /// and binds `settings.listen` (port 0 allowed).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        anyhow::ensure!(
            !settings.enrollment_secret.is_empty(),
            "enrollment secret must not be empty"
        );
        // TLS files first: a bad file stops the start before anything else is touched.
        let server_tls = settings.tls.server_config().map_err(tls_error)?;
        let client_options = settings
            .tls
            .client_options(signed_http::DEFAULT_MAX_ANSWER)
            .map_err(tls_error)?;
        let repo = Repository::connect(&settings.database_url)
            .await
            .with_context(|| {
                format!("opening the database `{}`", redact(&settings.database_url))
            })?;
        let key = repo
            .meta_get_or_init(MARKETPLACE_KEY, || {
                SecretKey::generate(&mut rand::rng()).to_hex()
            })
            .await
            .context("loading the marketplace key")?;
        let key = SecretKey::from_hex(&key)
            .map_err(|e| anyhow::anyhow!("the stored marketplace key is unreadable: {e}"))?;
        tracing::info!(public_key = %key.public(), "marketplace key loaded");
        let stale = repo
            .mark_all_nodes_dead()
            .await
            .context("resetting node liveness")?;
        if stale > 0 {
            tracing::info!(
                nodes = stale,
                "known nodes are not alive until they heartbeat"
            );
        }
        let http =
            signed_http::SignedClient::new(&client_options).context("building the HTTP client")?;
        let market = Marketplace::new(
            repo,
            http,
            MarketplaceConfig {
                key: Arc::new(key),
                enrollment_secret: settings.enrollment_secret.clone(),
                rule: settings.auction_rule,
                auction_timeout: settings.auction_timeout,
                call_margin: settings.call_margin(),
                heartbeat_interval: settings.heartbeat_interval,
                dashboard: DashboardConfig {
                    cache_ttl: settings.dashboard_cache_ttl,
                    node_timeout: settings.dashboard_node_timeout,
                },
                client_access: settings.client_auth.resolve(settings.listen.ip()),
                client_limits: settings.client_limits.clone(),
            },
        );
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let data = web::Data::new(market.clone());
        let limit = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(routes::count_requests))
                // Outermost: the server span covers the whole request, metrics included.
                .wrap(telemetry::actix::TraceRequests::new("marketplace"))
                .app_data(data.clone())
                .app_data(web::Data::new(BodyLimit(limit)))
                .app_data(web::PayloadConfig::new(limit))
                .app_data(web::JsonConfig::default().limit(limit))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        });
        let server = match server_tls {
            Some(config) => server
                .listen_rustls_0_23(listener, config)
                .context("listening (TLS)")?,
            None => server.listen(listener).context("listening")?,
        };
        let server = server
            .shutdown_timeout(5)
            // Signals are handled in `run_until_stopped`, which ends the long-polls first.
            .disable_signals()
            .run();
        tracing::info!(%addr, rule = %settings.auction_rule, "marketplace bound");
        tracing::info!(limits = %settings.client_limits, "client API: {}", market.client_access());
        Ok(Application {
            addr,
            server,
            market,
            settings,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, or `https://…` when the API is served over TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.settings.tls.scheme(), self.addr)
    }

    /// The service, for tests and tools that drive the step functions directly.
    pub fn marketplace(&self) -> Marketplace {
        self.market.clone()
    }

    /// Stops the marketplace (and with it `run_until_stopped`).
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            market: self.market.clone(),
        }
    }

    /// Serves until stopped (SIGINT/SIGTERM, or [`StopHandle::stop`]), running the expiry and
    /// liveness loops alongside.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut loops = supervisor::Supervisor::new();
        let (market, every, retention) = (
            self.market.clone(),
            self.settings.expiry_interval,
            self.settings.history_retention,
        );
        loops.spawn("expiry", move || {
            expiry_loop(market.clone(), every, retention)
        });
        let (market, every) = (self.market.clone(), self.settings.heartbeat_interval);
        loops.spawn("liveness", move || liveness_loop(market.clone(), every));
        let handle = self.handle();
        let mut server = self.server;
        let result = tokio::select! {
            r = &mut server => r,
            () = stop_signal() => {
                tracing::info!("stop signal received; stopping");
                // The server future must keep running to carry out the stop.
                let ((), r) = tokio::join!(handle.stop(true), &mut server);
                r
            }
        };
        self.market.stop_route_polls();
        loops.shutdown().await;
        self.market.repository().close().await;
        result.context("HTTP server failed")
    }
}

/// Stops a running marketplace: ends the route long-polls at once (each answers the current
/// table), then stops the HTTP server, gracefully (in-flight requests finish, at most 5 s) or
/// not. Resolves once the server has stopped.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    market: Marketplace,
}

impl StopHandle {
    pub async fn stop(&self, graceful: bool) {
        self.market.stop_route_polls();
        self.server.stop(graceful).await;
    }
}

/// Resolves on SIGINT or (Unix) SIGTERM. A signal that cannot be listened to is logged and
/// never fires.
async fn stop_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// How often the history retention step runs.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Marks placements whose lifetime ended as finished, every `every`; deletes history older
/// than `retention` every [`PURGE_EVERY`].
async fn expiry_loop(market: Marketplace, every: Duration, retention: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        if let Err(e) = market.finish_due_placements(Timestamp::now()).await {
            tracing::warn!(error = %e, "expiry step failed");
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(std::time::Instant::now());
            if let Err(e) = market.purge_history(Timestamp::now(), retention).await {
                tracing::warn!(error = %e, "history retention step failed");
            }
        }
    }
}

/// Marks silent nodes dead, every heartbeat interval.
async fn liveness_loop(market: Marketplace, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = market.mark_silent_nodes_dead(Timestamp::now()).await {
            tracing::warn!(error = %e, "liveness step failed");
        }
        if let Err(e) = market.replace_lost_placements(Timestamp::now()).await {
            tracing::warn!(error = %e, "re-placement step failed");
        }
    }
}

/// A TLS setting error, naming the flag (and its env var) and the file.
fn tls_error(e: signed_http::tls::TlsError) -> anyhow::Error {
    use signed_http::tls::TlsError;
    match e {
        TlsError::File {
            field,
            path,
            reason,
        } => anyhow::anyhow!(
            "--tls-{field} (FOGMARKET_TLS_{}) {path}: {reason}",
            field.to_ascii_uppercase()
        ),
        TlsError::Half(set) => {
            anyhow::anyhow!("--tls-cert and --tls-key go together; only --tls-{set} is set")
        }
        TlsError::Config(reason) => anyhow::anyhow!("--tls-cert/--tls-key: {reason}"),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            super::redact("sqlite://x.db?mode=rwc"),
            "sqlite://x.db?mode=rwc"
        );
    }
}
