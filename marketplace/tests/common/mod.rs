//! Shared test harness: fresh databases (SQLite file or PostgreSQL database per test), an
//! in-process marketplace on port 0, and in-process fake fog nodes that implement the fog node
//! contract honestly (they verify signatures, hold resources on bid, accept or refuse, release,
//! provision and cancel) until the real `fog_node` crate is wired into multi-process tests.
#![allow(dead_code)]

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use marketplace::service::Marketplace;
use marketplace::{Application, Settings};
use model::auth::{self, Guard, PublicKey, RequestTarget, SecretKey};
use model::protocol::{
    AcceptRequest, AcceptResponse, Bid, BidRequest, BidResponse, HeartbeatRequest, Refusal,
    RefusalReason, RegisterRequest, RegisterResponse, ReleaseRequest, Resources,
};
use model::{BidId, Bytes, Cpu, NodeId, Price, SlaId, Timestamp};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret";

// ---------------------------------------------------------------------------------------------
// Databases

/// A database that exists for one test and is removed afterwards.
pub enum TestDb {
    Sqlite { path: std::path::PathBuf },
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let path = std::env::temp_dir().join(format!("fm_test_{}.db", uuid::Uuid::new_v4()));
        TestDb::Sqlite { path }
    }

    /// A fresh PostgreSQL database on the server of `FOGMARKET_TEST_POSTGRES_URL`. Fails the
    /// test when the variable is unset: `just test` then reports the PostgreSQL variants as
    /// skipped instead of starting them (`just pg-start` prints a URL to set).
    pub async fn postgres() -> TestDb {
        let admin_url = match std::env::var("FOGMARKET_TEST_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => panic!(
                "FOGMARKET_TEST_POSTGRES_URL is not set (e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres, \
                 printed by `just pg-start`); `just test` skips the PostgreSQL variants without it"
            ),
        };
        let name = format!("fm_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = pg_admin(&admin_url).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        TestDb::Postgres { admin_url, name }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite { path } => format!("sqlite://{}?mode=rwc", path.display()),
            TestDb::Postgres { admin_url, name } => with_database(admin_url, name),
        }
    }
}

async fn pg_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to FOGMARKET_TEST_POSTGRES_URL={url:?}: {e}"))
}

/// `postgres://u:p@h:5432/admin?x` -> `postgres://u:p@h:5432/<db>?x`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            TestDb::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: use a thread with its own runtime.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            let mut conn = pg_admin(&admin_url).await;
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        });
                    }
                })
                .join();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Marketplace

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub market: Marketplace,
    pub http: reqwest::Client,
    pub handle: marketplace::startup::StopHandle,
    pub db: TestDb,
    pub settings: Settings,
}

pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        // Long enough that nodes registered by a test do not die during it.
        heartbeat_interval: Duration::from_secs(60),
        ..Settings::for_tests(db.url())
    }
}

pub async fn spawn_app() -> TestApp {
    let db = TestDb::sqlite();
    let settings = test_settings(&db);
    spawn_app_with(db, settings).await
}

pub async fn spawn_app_with(db: TestDb, settings: Settings) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("marketplace builds");
    let port = app.port();
    let market = app.marketplace();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &address).await;
    TestApp {
        address,
        port,
        market,
        http,
        handle,
        db,
        settings,
    }
}

/// Polls `GET /api/health` until 200, with a deadline.
pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(format!("{base}/api/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not healthy within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` until true, with a deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestApp {
    pub async fn stop(self) -> TestDb {
        self.handle.stop(true).await;
        self.db
    }

    pub async fn put_function(&self, body: &Value) -> (u16, Value) {
        self.put_function_raw("", body.to_string().into_bytes())
            .await
    }

    pub async fn put_function_raw(&self, query: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/api/function{query}", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.address))
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}{path}", self.address))
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    /// `GET` signed by `sender` with its own key, for the marketplace (over the query too).
    pub async fn get_signed(
        &self,
        path_and_query: &str,
        key: &SecretKey,
        sender: &str,
    ) -> (u16, Value) {
        let header = member_header(key, sender, auth::MARKETPLACE, "GET", path_and_query, b"");
        let r = self
            .http
            .get(format!("{}{path_and_query}", self.address))
            .header("authorization", header)
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    /// `POST` signed by `sender` with its own key, for the marketplace.
    pub async fn post_signed(
        &self,
        path: &str,
        body: &[u8],
        key: &SecretKey,
        sender: &str,
    ) -> (u16, Value) {
        let header = member_header(key, sender, auth::MARKETPLACE, "POST", path, body);
        self.post_with_header(path, body, header).await
    }

    /// `POST` signed with the enrollment secret under `name` (a registration).
    pub async fn post_enrolment(
        &self,
        path: &str,
        body: &[u8],
        secret: &[u8],
        name: &str,
    ) -> (u16, Value) {
        let header = auth::enrollment::sign(secret, name, Timestamp::now(), "POST", path, body);
        self.post_with_header(path, body, header).await
    }

    /// `POST` with a ready-made `Authorization` header (forged, replayed, ...).
    pub async fn post_with_header(&self, path: &str, body: &[u8], header: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.address))
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }
}

/// The `Authorization` value of a member's request, with a fresh nonce.
pub use signed_http::member_header;

/// The key a test node of this name holds (derived from the name, so tests can sign as it).
pub fn node_key(name: &str) -> SecretKey {
    SecretKey::from_seed(auth::digest(format!("test node {name}").as_bytes()))
}

pub async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub fn sla() -> Value {
    json!({
        "memory": "256 MB", "cpu": "500 millicpu", "latencyMax": "50 ms",
        "duration": "30 s", "replicas": 1, "functionImage": "ghcr.io/acme/echo:1.2",
        "functionLiveName": "echo", "dataFlow": [], "envVars": {}, "inputMaxSize": "1 KB"
    })
}

pub fn register_request(name: &str, url: &str, parent: Option<&str>) -> RegisterRequest {
    RegisterRequest {
        node_id: None,
        name: name.to_string(),
        public_key: node_key(name).public(),
        owner: "owner".into(),
        tags: vec!["edge".into()],
        parent: parent.map(str::to_string),
        url: url.to_string(),
        capacity: Resources::new(Cpu::from_cores(4), Bytes::from_mib(8192)),
        protocol_version: Some(model::protocol::PROTOCOL_VERSION),
    }
}

pub async fn register(app: &TestApp, req: &RegisterRequest) -> RegisterResponse {
    let body = serde_json::to_vec(req).expect("serializes");
    let (status, v) = app
        .post_enrolment("/api/register", &body, SECRET.as_bytes(), &req.name)
        .await;
    assert_eq!(status, 200, "register {}: {v}", req.name);
    serde_json::from_value(v).expect("a RegisterResponse")
}

pub async fn heartbeat(
    app: &TestApp,
    id: NodeId,
    key: &SecretKey,
    reserved: Resources,
) -> (u16, Value) {
    let body = serde_json::to_vec(&HeartbeatRequest {
        reserved,
        url: None,
    })
    .expect("serializes");
    app.post_signed(&format!("/api/heartbeat/{id}"), &body, key, &id.to_string())
        .await
}

// ---------------------------------------------------------------------------------------------
// Fake fog nodes

/// How a fake node behaves.
#[derive(Clone, Debug)]
pub struct NodeBehaviour {
    pub price: f64,
    pub free: Resources,
    /// Answer 409 to every accept, as a node whose hold expired and whose resources are gone.
    pub refuse_accept: bool,
    /// Never answer bids (a dead or hung target).
    pub silent: bool,
}

impl Default for NodeBehaviour {
    fn default() -> Self {
        Self {
            price: 1.0,
            free: Resources::new(Cpu::from_cores(4), Bytes::from_mib(8192)),
            refuse_accept: false,
            silent: false,
        }
    }
}

#[derive(Default, Debug)]
pub struct FakeState {
    pub id: Option<NodeId>,
    /// The marketplace's key, pinned at registration.
    pub marketplace_key: Option<PublicKey>,
    /// Checks signatures addressed to this node (recipient, time, replay).
    pub guard: Option<Arc<Guard>>,
    /// Keys of the other fake nodes allowed to relay bid requests here, by node id.
    pub peer_keys: HashMap<String, PublicKey>,
    pub free: Option<Resources>,
    pub holds: HashMap<BidId, Resources>,
    pub placements: HashMap<SlaId, (BidId, Resources, Price)>,
    /// `METHOD path` of every verified call, in order.
    pub calls: Vec<String>,
    pub released: Vec<BidId>,
    pub bad_signatures: usize,
    pub accepted_prices: Vec<Price>,
    pub children: Vec<(NodeId, String)>,
    /// What `GET /api/state` lists as `neighbours` (set by [`FakeNode::set_links`]).
    pub neighbours: Vec<Value>,
    /// `totals` of `GET /api/offload` (served, forwarded, rejected); absent when `None`.
    pub totals: Option<(u64, u64, u64)>,
    /// Unsigned read-only calls (`/api/state`, `/api/offload`) answered.
    pub state_calls: usize,
    pub offload_calls: usize,
}

#[derive(Clone)]
pub struct FakeNode {
    pub name: String,
    pub url: String,
    pub id: NodeId,
    pub behaviour: NodeBehaviour,
    pub state: Arc<Mutex<FakeState>>,
    server: actix_web::dev::ServerHandle,
}

struct Ctx {
    name: String,
    url: String,
    behaviour: NodeBehaviour,
    state: Arc<Mutex<FakeState>>,
    http: reqwest::Client,
}

impl FakeNode {
    /// Starts a fake node on port 0 and registers it with the marketplace.
    pub async fn start(
        app: &TestApp,
        name: &str,
        parent: Option<&str>,
        behaviour: NodeBehaviour,
    ) -> FakeNode {
        let state = Arc::new(Mutex::new(FakeState {
            free: Some(behaviour.free),
            ..FakeState::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}");
        let ctx = web::Data::new(Ctx {
            name: name.to_string(),
            url: url.clone(),
            behaviour: behaviour.clone(),
            state: state.clone(),
            http: reqwest::Client::new(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(ctx.clone())
                .route(
                    "/api/health",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route("/api/bid", web::post().to(fake_bid))
                .route("/api/accept/{sla}", web::post().to(fake_accept))
                .route("/api/release", web::post().to(fake_release))
                .route("/api/provision/{sla}", web::post().to(fake_provision))
                .route("/api/placement/{sla}", web::delete().to(fake_cancel))
                .route("/api/state", web::get().to(fake_state))
                .route("/api/offload", web::get().to(fake_offload))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        wait_healthy(&app.http, &url).await;
        let reg = register(app, &register_request(name, &url, parent)).await;
        {
            let mut s = state.lock().expect("lock");
            s.id = Some(reg.node_id);
            s.marketplace_key = Some(reg.marketplace_key);
            s.guard = Some(Arc::new(Guard::new(reg.node_id.to_string())));
        }
        FakeNode {
            name: name.to_string(),
            url,
            id: reg.node_id,
            behaviour,
            state,
            server: handle,
        }
    }

    /// Stops the node's HTTP server: from now on it is unreachable.
    pub async fn stop(&self) {
        self.server.stop(false).await;
    }

    /// What `GET /api/state` reports as overlay links: `(neighbour, relation, one-way ms)`.
    pub fn set_links(&self, links: &[(&FakeNode, &str, Option<f64>)]) {
        self.state.lock().expect("lock").neighbours = links
            .iter()
            .map(|(n, relation, ms)| {
                json!({
                    "nodeId": n.id, "name": n.name, "url": n.url, "relation": relation,
                    "alive": true, "probes": 3,
                    "latency": ms.map(|m| json!({"median": m, "medianUncertainty": m / 10.0, "packetLoss": 0.0})),
                })
            })
            .collect();
    }

    /// Cumulative invocation counts `GET /api/offload` reports (`None`: no `totals` field).
    pub fn set_totals(&self, totals: Option<(u64, u64, u64)>) {
        self.state.lock().expect("lock").totals = totals;
    }

    /// `GET /api/state` calls answered so far.
    pub fn state_calls(&self) -> usize {
        self.state.lock().expect("lock").state_calls
    }

    /// Makes `child` part of this node's relay set (and lets the child verify this node).
    pub fn add_child(&self, child: &FakeNode) {
        self.state
            .lock()
            .expect("lock")
            .children
            .push((child.id, child.url.clone()));
        child
            .state
            .lock()
            .expect("lock")
            .peer_keys
            .insert(self.id.to_string(), self.key().public());
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
    pub fn released(&self) -> Vec<BidId> {
        self.state.lock().expect("lock").released.clone()
    }
    pub fn has_placement(&self, sla: SlaId) -> bool {
        self.state
            .lock()
            .expect("lock")
            .placements
            .contains_key(&sla)
    }
    pub fn holds(&self) -> usize {
        self.state.lock().expect("lock").holds.len()
    }
    pub fn accepted_prices(&self) -> Vec<Price> {
        self.state.lock().expect("lock").accepted_prices.clone()
    }
    pub fn bad_signatures(&self) -> usize {
        self.state.lock().expect("lock").bad_signatures
    }
    /// This node's own signing key (its public half is pinned by the marketplace).
    pub fn key(&self) -> SecretKey {
        node_key(&self.name)
    }
}

/// Verifies the signature like a node: the sender's pinned key (the marketplace's, or a
/// parent's for relayed bids), for this node, within 30 s, exact path with query and body, no
/// replay. `Some(401 answer)` when the signature is bad.
fn verify(ctx: &Ctx, req: &HttpRequest, body: &[u8]) -> Option<HttpResponse> {
    let mut s = ctx.state.lock().expect("lock");
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |pq| pq.as_str().to_string());
    let target = RequestTarget::new(req.method().as_str(), &path_and_query, body);
    let result = match &s.guard {
        Some(guard) => guard.check(header, Timestamp::now(), &target, |sender| {
            if sender == auth::MARKETPLACE {
                s.marketplace_key
            } else {
                s.peer_keys.get(sender).copied()
            }
        }),
        None => Err(auth::AuthError::Missing),
    };
    match result {
        Ok(_sender) => {
            s.calls.push(format!("{} {}", req.method(), req.path()));
            None
        }
        Err(e) => {
            s.bad_signatures += 1;
            Some(
                HttpResponse::Unauthorized()
                    .json(json!({"error": "unauthorized", "message": e.to_string()})),
            )
        }
    }
}

async fn fake_bid(req: HttpRequest, body: web::Bytes, ctx: web::Data<Ctx>) -> HttpResponse {
    if let Some(r) = verify(&ctx, &req, &body) {
        return r;
    }
    if ctx.behaviour.silent {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return HttpResponse::Ok().json(BidResponse::default());
    }
    let Ok(bid_req) = serde_json::from_slice::<BidRequest>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let needed = Resources::for_sla(&bid_req.sla);
    let now = Timestamp::now();
    let (own, children, id) = {
        let mut s = ctx.state.lock().expect("lock");
        let id = s.id.unwrap_or_default();
        let free = s.free.unwrap_or_default();
        let own = if needed.fits_in(&free) {
            let bid = Bid {
                node_id: id,
                id: BidId::new(),
                bid: Price::new(ctx.behaviour.price).unwrap_or(Price::ZERO),
                node_name: ctx.name.clone(),
                node_url: ctx.url.clone(),
                latency: bid_req.accumulated_latency,
                utilisation: 0.5,
                hold_expires_at: now.plus(Duration::from_millis(bid_req.timeout_ms + 5000)),
            };
            s.free = Some(free.saturating_sub(&needed));
            s.holds.insert(bid.id, needed);
            Ok(bid)
        } else {
            Err(Refusal {
                node_id: id,
                node_name: ctx.name.clone(),
                reason: RefusalReason::OutOfCapacity { needed, free },
            })
        };
        (own, s.children.clone(), id)
    };
    let mut resp = BidResponse::default();
    match own {
        Ok(b) => resp.bids.push(b),
        Err(r) => resp.refusals.push(r),
    }
    // Relay to children (one level is enough for these tests), signed as this node.
    let key = node_key(&ctx.name);
    for (child_id, child) in children {
        let relayed = BidRequest {
            node_origin: Some(id),
            timeout_ms: bid_req.timeout_ms / 2,
            path: vec![id],
            ..bid_req.clone()
        };
        let bytes = serde_json::to_vec(&relayed).unwrap_or_default();
        let header = member_header(
            &key,
            &id.to_string(),
            &child_id.to_string(),
            "POST",
            "/api/bid",
            &bytes,
        );
        let r = ctx
            .http
            .post(format!("{child}/api/bid"))
            .header("authorization", header)
            .header("content-type", "application/json")
            .timeout(Duration::from_millis(bid_req.timeout_ms / 2))
            .body(bytes)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                if let Ok(sub) = r.json::<BidResponse>().await {
                    resp.bids.extend(sub.bids);
                    resp.refusals.extend(sub.refusals);
                }
            }
            Ok(r) => resp.refusals.push(Refusal {
                node_id: NodeId::new(),
                node_name: child.clone(),
                reason: RefusalReason::Unreachable {
                    error: format!("HTTP {}", r.status()),
                },
            }),
            Err(e) => resp.refusals.push(Refusal {
                node_id: NodeId::new(),
                node_name: child.clone(),
                reason: RefusalReason::Unreachable {
                    error: e.to_string(),
                },
            }),
        }
    }
    HttpResponse::Ok().json(resp)
}

async fn fake_accept(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    ctx: web::Data<Ctx>,
) -> HttpResponse {
    if let Some(r) = verify(&ctx, &req, &body) {
        return r;
    }
    let Ok(acc) = serde_json::from_slice::<AcceptRequest>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    if path.as_str() != acc.sla.id.to_string() {
        return HttpResponse::BadRequest().finish();
    }
    let mut s = ctx.state.lock().expect("lock");
    if ctx.behaviour.refuse_accept {
        return HttpResponse::Conflict().json(
            json!({"error": "hold_gone", "message": "hold expired and resources no longer fit"}),
        );
    }
    let Some(res) = s.holds.remove(&acc.bid_id) else {
        return HttpResponse::Conflict()
            .json(json!({"error": "hold_gone", "message": "no such hold"}));
    };
    s.placements
        .insert(acc.sla.id, (acc.bid_id, res, acc.price));
    s.accepted_prices.push(acc.price);
    HttpResponse::Ok().json(AcceptResponse {
        sla_id: acc.sla.id,
        node_id: s.id.unwrap_or_default(),
        ends_at: Timestamp::now().plus(acc.sla.duration.as_duration()),
    })
}

async fn fake_release(req: HttpRequest, body: web::Bytes, ctx: web::Data<Ctx>) -> HttpResponse {
    if let Some(r) = verify(&ctx, &req, &body) {
        return r;
    }
    let Ok(rel) = serde_json::from_slice::<ReleaseRequest>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut s = ctx.state.lock().expect("lock");
    for id in rel.bid_ids {
        if let Some(res) = s.holds.remove(&id) {
            let free = s.free.unwrap_or_default().add(&res);
            s.free = Some(free);
        }
        s.released.push(id);
    }
    HttpResponse::Ok().json(json!({}))
}

async fn fake_provision(
    req: HttpRequest,
    path: web::Path<String>,
    ctx: web::Data<Ctx>,
) -> HttpResponse {
    if let Some(r) = verify(&ctx, &req, b"") {
        return r;
    }
    let s = ctx.state.lock().expect("lock");
    match path
        .parse::<SlaId>()
        .ok()
        .filter(|id| s.placements.contains_key(id))
    {
        // Like a real node: live, with its own gateway's URL for the function.
        Some(id) => HttpResponse::Ok().json(json!({
            "slaId": id,
            "state": "live",
            "invokeUrl": fake_gateway_url(&ctx.url, id),
        })),
        None => {
            HttpResponse::NotFound().json(json!({"error": "not_found", "message": "no placement"}))
        }
    }
}

/// `GET /api/state` (unsigned), shaped like the real node's `StateView`.
async fn fake_state(ctx: web::Data<Ctx>) -> HttpResponse {
    let mut s = ctx.state.lock().expect("lock");
    s.state_calls += 1;
    let capacity = ctx.behaviour.free;
    let free = s.free.unwrap_or_default();
    let placements: Vec<Value> = s
        .placements
        .iter()
        .map(|(sla, (bid, _, price))| json!({"slaId": sla, "bidId": bid, "state": "live", "price": price}))
        .collect();
    HttpResponse::Ok().json(json!({
        "nodeId": s.id,
        "name": ctx.name,
        "owner": "owner",
        "strategy": "auction",
        "capacity": capacity,
        "used": capacity.saturating_sub(&free),
        "reserved": capacity.saturating_sub(&free),
        "holds": s.holds.len(),
        "utilisation": 0.0,
        "placements": placements,
        "neighbours": s.neighbours,
    }))
}

/// `GET /api/offload` (unsigned): one entry per placement, plus `totals` when set.
async fn fake_offload(ctx: web::Data<Ctx>) -> HttpResponse {
    let mut s = ctx.state.lock().expect("lock");
    s.offload_calls += 1;
    let functions: Vec<Value> = s
        .placements
        .keys()
        .map(|sla| {
            json!({
                "service": format!("fogfn-{sla}"), "name": "echo",
                "weights": {"local": 1000, "reject": 0, "peers": {}},
                "rate": 0.0, "capacity": null, "inFlight": 0, "queueLen": 0, "peers": [],
            })
        })
        .collect();
    let mut body = json!({
        "strategy": "lease", "dataPlane": "native", "routeVersion": 1, "functions": functions,
    });
    if let Some((served, forwarded, rejected)) = s.totals {
        body["totals"] = json!({"served": served, "forwarded": forwarded, "rejected": rejected});
    }
    HttpResponse::Ok().json(body)
}

/// The gateway URL a fake node reports for a live function (distinct from its data plane).
pub fn fake_gateway_url(node_url: &str, sla: SlaId) -> String {
    format!("{node_url}/gateway/function/fogfn-{sla}")
}

async fn fake_cancel(
    req: HttpRequest,
    path: web::Path<String>,
    ctx: web::Data<Ctx>,
) -> HttpResponse {
    if let Some(r) = verify(&ctx, &req, b"") {
        return r;
    }
    let mut s = ctx.state.lock().expect("lock");
    let removed = path
        .parse::<SlaId>()
        .ok()
        .and_then(|id| s.placements.remove(&id));
    match removed {
        Some((_, res, _)) => {
            let free = s.free.unwrap_or_default().add(&res);
            s.free = Some(free);
            HttpResponse::Ok().json(json!({"state": "cancelled"}))
        }
        None => {
            HttpResponse::NotFound().json(json!({"error": "not_found", "message": "no placement"}))
        }
    }
}
