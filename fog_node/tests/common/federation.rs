//! Helpers for the data-plane and offloading tests: nodes with the function catalog and an
//! `[offload]` section, `fn-echo` really deployed through each node's own provisioning path,
//! route tables installed by hand, and readers of `/metrics` and `/api/offload`.

use super::*;
use model::protocol::{FunctionRoute, RouteNode, RouteTable};
use std::future::Future;

/// A node whose embedded gateway runs the catalog's functions, with `offload` as its
/// `[offload]` section (one HTTP worker: several nodes share the test machine).
pub async fn offload_node(name: &str, offload: &str) -> TestNode {
    let extra = format!(
        "http_workers = 1\n[faas]\ncatalog_dir = \"{}\"\nready_timeout = \"10 s\"\n[offload]\n{offload}\n",
        catalog_dir().display()
    );
    spawn_node(name, &extra).await
}

/// An SLA for `fn-echo` lasting long enough for any test.
pub fn echo_sla() -> Sla {
    sla(json!({"functionImage": "ghcr.io/acme/echo:1", "duration": "10 min"}))
}

/// Wins `s` on `n` and provisions it there, as the marketplace would; the function is live on
/// the node's embedded gateway as `fogfn-<slaId>`.
pub async fn deploy(n: &TestNode, s: &Sla) {
    win(n, s).await;
    let resp = signed_post(&n.url, &format!("/api/provision/{}", s.id), &json!({})).await;
    let placement: Value = resp.json().await.unwrap();
    assert_eq!(placement["state"], "live", "{placement}");
}

pub fn service(s: &Sla) -> String {
    s.id.service_name()
}

pub fn route_node(n: &TestNode) -> RouteNode {
    RouteNode {
        node_id: n.id,
        name: n.node.name().to_string(),
        url: n.url.clone(),
        public_key: n.node.public_key(),
        alive: true,
    }
}

/// The route of `s`, hosted by `hosts`, for devices attached to `target`.
pub fn route_of(s: &Sla, target: &TestNode, hosts: &[&TestNode]) -> FunctionRoute {
    FunctionRoute {
        sla_id: s.id,
        service: service(s),
        name: s.function_live_name.clone(),
        image: s.function_image.clone(),
        target_node: target.id,
        latency_max_ms: 100.0,
        expires_at: Timestamp::now().plus(Duration::from_secs(600)),
        hosts: hosts.iter().map(|h| h.id).collect(),
    }
}

pub fn table(version: u64, nodes: &[&TestNode], functions: Vec<FunctionRoute>) -> RouteTable {
    RouteTable {
        version,
        generated_at: Timestamp::now(),
        nodes: nodes.iter().map(|n| route_node(n)).collect(),
        functions,
    }
}

/// Installs `t` on every node of `on`, as the route sync would.
pub fn install(on: &[&TestNode], t: &RouteTable) {
    for n in on {
        n.node.offload.install_routes(t.clone());
    }
}

/// Polls `check` until it holds, failing with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn offload_view(n: &TestNode) -> Value {
    reqwest::get(format!("{}/api/offload", n.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The weight `n` gives `target` (`local`, `reject` or a peer name) for `service`.
pub async fn weight(n: &TestNode, service: &str, target: &str) -> u64 {
    let view = offload_view(n).await;
    let f = view["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["service"] == service)
        .cloned()
        .unwrap_or(Value::Null);
    match target {
        "local" | "reject" => f["weights"][target].as_u64().unwrap_or(0),
        peer => f["weights"]["peers"][peer].as_u64().unwrap_or(0),
    }
}

pub async fn metrics_text(n: &TestNode) -> String {
    reqwest::get(format!("{}/metrics", n.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` whose labels include every `labels` pair; 0 when absent.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// A header as text ("" when absent).
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
