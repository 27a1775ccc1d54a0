//! Helpers shared by the fog node's in-process tests: real nodes on loopback (port 0) with
//! identities and neighbours installed by hand, and requests signed like the marketplace's.
#![allow(dead_code)]

pub mod federation;

use fog_node::state::node::{Identity, Node};
use fog_node::{Application, Config};
use model::Sla;
use model::auth::{self, SecretKey};
use model::ids::{AuctionId, NodeId, SlaId};
use model::latency::PathLatency;
use model::protocol::{AuctionTicket, BidRequest, BidResponse, Neighbour, Relation};
use model::time::Timestamp;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The key of the test marketplace; every test node pins its public half.
pub fn market_key() -> SecretKey {
    SecretKey::from_seed(auth::digest(b"test marketplace"))
}

/// A key for a pretend member that is not a running node (a peer in a route table, an
/// intruder), derived from its name.
pub fn member_key(name: &str) -> SecretKey {
    SecretKey::from_seed(auth::digest(format!("test member {name}").as_bytes()))
}

/// The id of the test node serving at each URL (the recipient of calls to it).
static IDS: LazyLock<Mutex<HashMap<String, NodeId>>> = LazyLock::new(Mutex::default);

/// The id of the test node at `url`.
pub fn id_at(url: &str) -> NodeId {
    *IDS.lock()
        .unwrap()
        .get(url)
        .unwrap_or_else(|| panic!("no test node at {url}"))
}

/// The `Authorization` value of a member's request, with a fresh nonce.
pub use signed_http::member_header;

/// A bid request the test marketplace opens (with its ticket) for `sla`.
pub fn bid_request(sla: &Sla, timeout_ms: u64, path: Vec<NodeId>) -> BidRequest {
    let auction_id = AuctionId::new();
    let deadline = Timestamp::now().plus(Duration::from_millis(timeout_ms + 1000));
    BidRequest {
        auction_id,
        sla: sla.clone(),
        node_origin: None,
        accumulated_latency: PathLatency::ZERO,
        timeout_ms,
        path,
        ticket: AuctionTicket::issue(&market_key(), auction_id, sla, deadline).unwrap(),
    }
}

pub struct TestNode {
    pub node: Arc<Node>,
    pub url: String,
    pub id: NodeId,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A marketplace URL nobody listens on (a port bound and released by the OS).
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

pub async fn spawn_node(name: &str, extra: &str) -> TestNode {
    spawn_node_with(name, "2 cpu", extra).await
}

pub async fn spawn_node_with(name: &str, cpu: &str, extra: &str) -> TestNode {
    spawn_node_at(name, cpu, &dead_url(), extra).await
}

/// A node enrolled by hand (identity installed) that talks to the marketplace at `marketplace`.
pub async fn spawn_node_at(name: &str, cpu: &str, marketplace: &str, extra: &str) -> TestNode {
    let text = format!(
        r#"
        name = "{name}"
        owner = "owner-{name}"
        marketplace_url = "{}"
        enrollment_secret = "unused"
        capacity = {{ cpu = "{cpu}", memory = "2 GiB" }}
        {extra}
        "#,
        marketplace
    );
    let config = Config::from_toml(&text).expect("valid test config");
    let app = Application::build(config).expect("node binds");
    let node = app.node();
    let url = app.url().to_string();
    let id = NodeId::new();
    node.set_identity(Identity::new(id, market_key().public()));
    IDS.lock().unwrap().insert(url.clone(), id);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    wait_healthy(&url).await;
    TestNode {
        node,
        url,
        id,
        _stop: tx,
    }
}

impl TestNode {
    /// Stops the node (its HTTP server, loops and embedded gateway).
    pub fn stop(self) {
        drop(self._stop);
    }
}

pub async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/api/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn neighbour(of: &TestNode, relation: Relation) -> Neighbour {
    Neighbour {
        node_id: of.id,
        name: of.node.name().to_string(),
        url: of.url.clone(),
        public_key: of.node.public_key(),
        relation,
        alive: true,
        tags: vec![],
    }
}

/// Links `parent` and `child` both ways.
pub fn link(parent: &TestNode, children: &[&TestNode]) {
    let mut list: Vec<Neighbour> = parent
        .node
        .neighbours()
        .into_iter()
        .map(|n| n.info)
        .collect();
    for c in children {
        list.push(neighbour(c, Relation::Child));
        let mut up: Vec<Neighbour> = c.node.neighbours().into_iter().map(|n| n.info).collect();
        up.push(neighbour(parent, Relation::Parent));
        c.node.set_neighbours(up);
    }
    parent.node.set_neighbours(list);
}

pub fn sla(overrides: Value) -> Sla {
    let mut body = json!({
        "memory": "256 MB", "cpu": "500 m", "latencyMax": "100 ms", "duration": "30 s",
        "functionImage": "ghcr.io/acme/echo:1", "functionLiveName": "echo", "inputMaxSize": "1 KB"
    });
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    Sla::from_json(&body, SlaId::new(), "sla").unwrap()
}

/// `POST` signed by the test marketplace for the node at `url`.
pub async fn signed_post(url: &str, path: &str, body: &impl serde::Serialize) -> reqwest::Response {
    let bytes = serde_json::to_vec(body).unwrap();
    let recipient = id_at(url).to_string();
    let header = member_header(
        &market_key(),
        auth::MARKETPLACE,
        &recipient,
        "POST",
        path,
        &bytes,
    );
    reqwest::Client::new()
        .post(format!("{url}{path}"))
        .header("authorization", header)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

pub async fn ask(target: &TestNode, sla: &Sla, timeout_ms: u64) -> BidResponse {
    let req = bid_request(sla, timeout_ms, vec![]);
    let resp = signed_post(&target.url, "/api/bid", &req).await;
    assert!(resp.status().is_success(), "bid answered {}", resp.status());
    resp.json().await.unwrap()
}

/// `target/<profile>/`, where `cargo build --workspace --bins` puts the `fn-*` functions.
pub fn catalog_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    let dir = deps.parent().expect("profile dir").to_path_buf();
    assert!(
        dir.join("fn-echo").exists(),
        "{} has no fn-echo: build the functions with `cargo build --workspace --bins`",
        dir.display()
    );
    dir
}

/// Bids on `n` alone and accepts the bid, as the marketplace would after winning.
pub async fn win(n: &TestNode, sla: &Sla) {
    let req = bid_request(sla, 1000, vec![]);
    let answer: BidResponse = signed_post(&n.url, "/api/bid", &req)
        .await
        .json()
        .await
        .unwrap();
    let bid = answer.bids.first().expect("the node bids");
    let accept = model::protocol::AcceptRequest {
        bid_id: bid.id,
        sla: sla.clone(),
        price: bid.bid,
    };
    let resp = signed_post(&n.url, &format!("/api/accept/{}", sla.id), &accept).await;
    assert_eq!(resp.status(), 200);
}
