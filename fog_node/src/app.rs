//! Build, then run: [`Application::build`] binds (port 0 allowed), restores saved state and
//! exposes the bound address; [`Application::run_until_stopped`] serves and runs the loops.

use crate::config::Config;
use crate::http::emulation;
use crate::http::routes;
use crate::state::node::Node;
use crate::tasks::membership;
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use model::time::Timestamp;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

pub struct Application {
    node: Arc<Node>,
    addr: SocketAddr,
    server: Server,
    saved_id: Option<model::NodeId>,
}

impl Application {
    pub fn build(config: Config) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        // TLS files first: a bad one stops the node at start, naming the `[tls]` field.
        let server_tls = config.tls.server_config()?;
        let options = config.client_options()?;
        let url = config
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("{}://{addr}", config.tls.scheme()));
        let workers = config.workers();
        let key = crate::client::load_or_create_key(config.state_dir.as_deref())?;
        let client =
            crate::client::SignedClient::new(&options).map_err(|e| anyhow::anyhow!("{e}"))?;
        let upstream = crate::upstream::UpstreamClient::new(
            options.tls_ca.as_deref(),
            config.offload.max_answer_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("data-plane client: {e}"))?;
        let node = Arc::new(Node::new(config, url, key, client, upstream));
        let saved_id = node.restore(Timestamp::now())?;
        let data = web::Data::new(node.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(routes::configure)
                // A server span per request, child of the caller's `traceparent`.
                .wrap(telemetry::actix::TraceRequests::new("fog-node"))
                // Outermost: the emulated network sits in front of the server.
                .wrap(actix_web::middleware::from_fn(emulation::emulate_links))
        })
        .workers(workers)
        .disable_signals();
        // One server for the API and the data plane: with `[tls]` both are HTTPS.
        let server = match server_tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            node,
            addr,
            server,
            saved_id,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> &str {
        &self.node.url
    }

    /// The node id kept in `state_dir` from an earlier run, offered again at enrollment.
    pub fn saved_node_id(&self) -> Option<model::NodeId> {
        self.saved_id
    }

    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Serves until `shutdown` resolves, with enrollment, heartbeats, probes, lifetime, route
    /// sync and the offloading control loop running.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.node
            .set_main_runtime(tokio::runtime::Handle::current());
        let mut loops = supervisor::Supervisor::new();
        let node = &self.node;
        let saved_id = self.saved_id;
        let n = node.clone();
        loops.spawn("membership", move || {
            membership::membership_loop(n.clone(), saved_id)
        });
        let n = node.clone();
        loops.spawn("probes", move || membership::probe_loop(n.clone()));
        let n = node.clone();
        loops.spawn("lifetime", move || membership::lifetime_loop(n.clone()));
        let n = node.clone();
        loops.spawn("route-sync", move || {
            crate::tasks::route_sync::route_sync_loop(n.clone())
        });
        let n = node.clone();
        loops.spawn("control", move || {
            crate::tasks::control::control_loop(n.clone())
        });
        if crate::tasks::haproxy_mode::haproxy_wanted(&node.config) {
            let n = node.clone();
            loops.spawn("haproxy", move || {
                crate::tasks::haproxy_mode::haproxy_loop(n.clone())
            });
        }
        let handle = self.server.handle();
        let server = self.server;
        let result = tokio::select! {
            r = server => r.map_err(anyhow::Error::from),
            () = shutdown => {
                handle.stop(true).await;
                Ok(())
            }
        };
        loops.shutdown().await;
        self.node.shutdown_faas().await;
        self.node.save();
        result
    }
}
