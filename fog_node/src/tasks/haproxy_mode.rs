//! `[offload] data_plane = "haproxy"`: the node drives a real HAProxy as its data plane
//! (DFaaS's choice), through [`crate::haproxy`].
//!
//! The node keeps computing weights with its strategy (the control loop, unchanged); this loop
//! starts HAProxy, then every `control_interval` turns the route table and the current weights
//! of every function hosted here into a [`Desired`] configuration and applies it: weights go
//! through the Runtime API (`set weight`), and HAProxy reloads only when the set of functions
//! or peers changes (or the peer tokens rotate, every ten minutes). Each function backend has
//! a `local` server (this node's FaaS gateway), one server per other host (its native data
//! plane; the server is named after the token of that pair of nodes, which HAProxy sends as
//! `X-Fogmarket-Peer` so the peer knows the sender and serves the request itself) and a
//! `reject` server.
//! Requests for functions this node does not host are not routed by HAProxy: clients use the
//! node's native `/function/…` for those.

use crate::client::PEER_HEADER;
use crate::config::{Config, DataPlane};
use crate::haproxy::{Desired, FunctionBackend, Haproxy, HaproxySettings, ServerKind, ServerSpec};
use crate::state::node::Node;
use model::time::Timestamp;
use std::net::SocketAddr;
use std::sync::Arc;

/// Whether this node runs HAProxy: `data_plane = "haproxy"` in a setup it supports (an error
/// says why not otherwise; the native data plane serves either way).
pub fn haproxy_wanted(config: &Config) -> bool {
    if config.offload.data_plane != DataPlane::Haproxy {
        return false;
    }
    if let Some(socket) = &config.offload.haproxy.socket {
        tracing::error!(
            socket = %socket.display(),
            "offload.haproxy.socket (driving an HAProxy started elsewhere) is not supported yet; \
             remove it to let the node start HAProxy"
        );
        return false;
    }
    if config.tls.serves() {
        // HAProxy would reach the peers' TLS data planes in plain HTTP (and serve plain
        // HTTP itself): not supported with `[tls]` yet.
        tracing::error!(
            "offload.data_plane = \"haproxy\" is not supported with [tls]; \
             the native data plane serves"
        );
        return false;
    }
    true
}

/// Runs HAProxy for the node until the task is dropped (dropping the driver stops HAProxy).
/// Started only when [`haproxy_wanted`]; returns when HAProxy cannot be started, and its
/// supervisor starts it again after a pause.
pub async fn haproxy_loop(node: Arc<Node>) {
    let config = node.offload.config.clone();
    let listen = match frontend_addr(config.haproxy.listen.as_deref()).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "offload.haproxy.listen");
            return;
        }
    };
    // Kept alive for as long as HAProxy runs; Unix socket paths must stay short.
    let work = match tempfile::Builder::new().prefix("fm-hap").tempdir() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot create HAProxy's working directory");
            return;
        }
    };
    let mut settings = HaproxySettings::new(work.path(), listen);
    settings.binary = config.haproxy.binary.clone().into();
    let mut haproxy = match Haproxy::start(settings).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot start HAProxy; the native data plane still serves");
            return;
        }
    };
    let url = haproxy.frontend_url();
    tracing::info!(%url, "HAProxy data plane started");
    let _ = node.offload.haproxy_url.set(url);
    let mut tick = tokio::time::interval(config.control_interval.as_duration());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let desired = match desired(&node, haproxy.reject_addr()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "HAProxy configuration not ready");
                continue;
            }
        };
        match haproxy.apply(&desired).await {
            Ok(outcome) if outcome.reloaded => {
                tracing::info!(functions = desired.functions.len(), "HAProxy reloaded")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot apply weights to HAProxy"),
        }
    }
}

async fn frontend_addr(listen: Option<&str>) -> Result<SocketAddr, String> {
    match listen {
        Some(text) => resolve(text).await,
        None => crate::haproxy::free_port()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|e| format!("cannot pick a free port: {e}")),
    }
}

/// `host:port` (or a URL `http://host:port/…`) to a socket address.
async fn resolve(text: &str) -> Result<SocketAddr, String> {
    let hostport = text
        .trim()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    tokio::net::lookup_host(&hostport)
        .await
        .map_err(|e| format!("cannot resolve `{hostport}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{hostport}` resolves to no address"))
}

/// What HAProxy should look like now: one backend per live function hosted here.
async fn desired(node: &Node, reject: SocketAddr) -> Result<Desired, String> {
    let identity = node.identity().ok_or("not enrolled yet")?;
    let me = identity.node_id;
    let faas = node.faas().await.map_err(|e| e.to_string())?;
    let gateway = resolve(faas.client.base_url()).await?;
    let now = Timestamp::now();
    let window = model::auth::peer_token_window(now);
    let routes = node.offload.routes();
    let mut functions = Vec::new();
    for f in routes.functions() {
        if !f.is_live(now) || !f.hosted_by(me) {
            continue;
        }
        let w = f.state.weights();
        let mut servers = vec![ServerSpec {
            name: "local".into(),
            addr: gateway,
            weight_per_mille: w.local,
            kind: ServerKind::Local,
        }];
        for host in f.route.hosts.iter().filter(|h| **h != me) {
            let Some(peer) = routes.node(*host) else {
                continue;
            };
            let Ok(addr) = resolve(&peer.info.url).await else {
                continue;
            };
            // The server's name is the token for this pair of nodes in this window: HAProxy
            // sends it in `X-Fogmarket-Peer`, only this peer can check it, and it rotates.
            let pair = node.pair_secret(&peer.info.public_key);
            servers.push(ServerSpec {
                name: model::auth::peer_token(&pair, &identity.sender, &host.to_string(), window),
                addr,
                weight_per_mille: w.peer(*host),
                kind: ServerKind::Peer,
            });
        }
        servers.push(ServerSpec {
            name: "reject".into(),
            addr: reject,
            weight_per_mille: w.reject,
            kind: ServerKind::Reject,
        });
        functions.push(FunctionBackend {
            service: f.route.service.clone(),
            aliases: Vec::new(),
            servers,
            server_name_header: Some(PEER_HEADER.into()),
            peer_headers: vec![
                ("X-Fogmarket-Route".into(), "offload".into()),
                ("X-Fogmarket-Hops".into(), "1".into()),
            ],
        });
    }
    Ok(Desired { functions })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!("{}\n{extra}", crate::config::MINIMAL_TEST_CONFIG))
            .expect("a valid test configuration")
    }

    #[test]
    fn only_a_supported_haproxy_data_plane_starts_haproxy() {
        assert!(!haproxy_wanted(&config("")));
        assert!(!haproxy_wanted(&config(
            "[offload]\ndata_plane = \"native\""
        )));
        assert!(haproxy_wanted(&config(
            "[offload]\ndata_plane = \"haproxy\""
        )));
        assert!(!haproxy_wanted(&config(
            "[offload]\ndata_plane = \"haproxy\"\n[offload.haproxy]\nsocket = \"/run/h.sock\""
        )));
    }
}
