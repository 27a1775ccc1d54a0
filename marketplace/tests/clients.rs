//! Client API tokens, ownership of placements and per-client limits.
//!
//! Each test starts an in-process marketplace on port 0 with a fresh database and one small
//! fake fog node (it bids, accepts, provisions and cancels, and counts what it was asked; it
//! does not check signatures: that is the business of the other suites). The PostgreSQL
//! variants need `FOGMARKET_TEST_POSTGRES_URL` (`just test` skips them without it).

use actix_web::{App, HttpResponse, HttpServer, web};
use marketplace::clients::{
    self, ClientAccess, ClientAuth, ClientLimits, ClientName, LimitKey, PlacementRate,
};
use marketplace::service::{Marketplace, PlaceRequest, ServiceError};
use marketplace::{Application, Settings};
use model::auth::{self, SecretKey};
use model::protocol::{AcceptResponse, PROTOCOL_VERSION, RegisterRequest, Resources};
use model::{Bytes, Cpu, NodeId, Sla, SlaId, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

mod common;

use common::{SECRET, TestDb, wait_healthy};

// ---------------------------------------------------------------------------------------------
// The marketplace

struct TestApp {
    address: String,
    market: Marketplace,
    http: reqwest::Client,
    handle: marketplace::startup::StopHandle,
    node: FakeNode,
    db: TestDb,
}

/// Test settings: nodes never die during a test, and the given client mode and limits.
fn settings(db: &TestDb, auth: ClientAuth, limits: ClientLimits) -> Settings {
    Settings {
        heartbeat_interval: Duration::from_secs(60),
        client_auth: auth,
        client_limits: limits,
        ..Settings::for_tests(db.url())
    }
}

/// A marketplace with tokens required, default limits, on a fresh SQLite database.
async fn token_app() -> TestApp {
    let db = TestDb::sqlite();
    let s = settings(&db, ClientAuth::Token, ClientLimits::default());
    spawn_app(db, s).await
}

/// Starts the marketplace and one fake node registered with it (named `edge`).
async fn spawn_app(db: TestDb, settings: Settings) -> TestApp {
    let app = Application::build(settings)
        .await
        .expect("marketplace builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let market = app.marketplace();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    wait_healthy(&http, &address).await;
    let node = FakeNode::start(&http, &address, "edge").await;
    TestApp {
        address,
        market,
        http,
        handle,
        node,
        db,
    }
}

/// Polls `cond` until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A status, a JSON body and the response headers.
struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        headers,
    }
}

fn sla_body() -> Value {
    json!({
        "sla": {
            "memory": "64 MB", "cpu": "100 millicpu", "latencyMax": "50 ms",
            "duration": "60 s", "functionImage": "ghcr.io/acme/echo:1.2",
            "functionLiveName": "echo"
        },
        "targetNode": "edge"
    })
}

impl TestApp {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        answer(req.send().await.expect("marketplace answers")).await
    }

    /// `PUT /api/function` with the test SLA, targeted at the fake node.
    async fn place(&self, token: Option<&str>) -> Answer {
        self.send(
            reqwest::Method::PUT,
            "/api/function",
            token,
            Some(&sla_body()),
        )
        .await
    }

    /// Places the test SLA and returns its id and auction id (asserting a 200).
    async fn placed(&self, token: Option<&str>) -> (SlaId, String) {
        let a = self.place(token).await;
        assert_eq!(a.status, 200, "placement: {}", a.body);
        let id = a.body["sla"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("the answer names the SLA id");
        let auction = a.body["auctionId"]
            .as_str()
            .expect("an auction id")
            .to_string();
        (id, auction)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// A new client and its token.
    async fn token_for(&self, name: &str) -> String {
        let made = clients::create_token(
            self.market.repository(),
            &ClientName::parse(name).expect("a valid name"),
            false,
            Timestamp::now(),
        )
        .await
        .expect("token created");
        made.token.expose().to_string()
    }

    async fn stored_slas(&self) -> usize {
        self.market
            .repository()
            .list_slas()
            .await
            .expect("SLAs listed")
            .len()
    }

    async fn stop(self) -> TestDb {
        self.handle.stop(true).await;
        self.node.stop().await;
        self.db
    }
}

// ---------------------------------------------------------------------------------------------
// A fake fog node: bids for everything, accepts, provisions, cancels, and counts.

#[derive(Default)]
struct NodeState {
    id: OnceLock<NodeId>,
    url: OnceLock<String>,
    bids: AtomicUsize,
    placements: Mutex<HashSet<SlaId>>,
    cancels: Mutex<Vec<SlaId>>,
    /// Bids wait while this is `false` (auctions stay in flight).
    open: OnceLock<watch::Sender<bool>>,
}

struct FakeNode {
    state: Arc<NodeState>,
    server: actix_web::dev::ServerHandle,
}

impl FakeNode {
    async fn start(http: &reqwest::Client, marketplace: &str, name: &str) -> FakeNode {
        let state = Arc::new(NodeState::default());
        let _ = state.open.set(watch::Sender::new(true));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let _ = state.url.set(url.clone());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/api/health",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .route("/api/bid", web::post().to(fake_bid))
                .route("/api/accept/{sla}", web::post().to(fake_accept))
                .route(
                    "/api/release",
                    web::post().to(|| async { HttpResponse::Ok().json(json!({})) }),
                )
                .route("/api/provision/{sla}", web::post().to(fake_provision))
                .route("/api/placement/{sla}", web::delete().to(fake_cancel))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        wait_healthy(http, &url).await;

        let req = RegisterRequest {
            node_id: None,
            name: name.to_string(),
            public_key: SecretKey::generate(&mut rand::rng()).public(),
            owner: "owner".into(),
            tags: vec!["edge".into()],
            parent: None,
            url,
            capacity: Resources::new(Cpu::from_cores(64), Bytes::from_mib(65536)),
            protocol_version: Some(PROTOCOL_VERSION),
        };
        let body = serde_json::to_vec(&req).expect("serializes");
        let header = auth::enrollment::sign(
            SECRET.as_bytes(),
            name,
            Timestamp::now(),
            "POST",
            "/api/register",
            &body,
        );
        let r = http
            .post(format!("{marketplace}/api/register"))
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("marketplace answers");
        let a = answer(r).await;
        assert_eq!(a.status, 200, "register: {}", a.body);
        let id: NodeId = serde_json::from_value(a.body["nodeId"].clone()).expect("a node id");
        let _ = state.id.set(id);
        FakeNode {
            state,
            server: handle,
        }
    }

    fn bids(&self) -> usize {
        self.state.bids.load(Ordering::SeqCst)
    }
    fn hosts(&self, sla: SlaId) -> bool {
        self.state.placements.lock().expect("lock").contains(&sla)
    }
    fn cancels(&self) -> Vec<SlaId> {
        self.state.cancels.lock().expect("lock").clone()
    }
    /// While closed, bids wait: the auctions asking for them stay in flight.
    fn set_bidding_open(&self, open: bool) {
        if let Some(tx) = self.state.open.get() {
            tx.send_replace(open);
        }
    }
    async fn stop(&self) {
        self.set_bidding_open(true);
        self.server.stop(false).await;
    }
}

async fn fake_bid(body: web::Bytes, state: web::Data<NodeState>) -> HttpResponse {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    state.bids.fetch_add(1, Ordering::SeqCst);
    if let Some(tx) = state.open.get() {
        let mut open = tx.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }
    let timeout_ms = req["timeoutMs"].as_u64().unwrap_or(1000);
    HttpResponse::Ok().json(json!({
        "bids": [{
            "nodeId": state.id.get(),
            "id": uuid::Uuid::new_v4(),
            "bid": 1.0,
            "nodeName": "edge",
            "nodeUrl": state.url.get(),
            "utilisation": 0.5,
            "holdExpiresAt": Timestamp::now().plus(Duration::from_millis(timeout_ms + 5000)),
        }],
        "refusals": [],
    }))
}

async fn fake_accept(path: web::Path<String>, state: web::Data<NodeState>) -> HttpResponse {
    let Ok(sla) = path.parse::<SlaId>() else {
        return HttpResponse::BadRequest().finish();
    };
    state.placements.lock().expect("lock").insert(sla);
    HttpResponse::Ok().json(AcceptResponse {
        sla_id: sla,
        node_id: state.id.get().copied().unwrap_or_default(),
        ends_at: Timestamp::now().plus(Duration::from_secs(60)),
    })
}

async fn fake_provision(path: web::Path<String>, state: web::Data<NodeState>) -> HttpResponse {
    let url = state.url.get().cloned().unwrap_or_default();
    HttpResponse::Ok().json(json!({
        "slaId": path.as_str(), "state": "live",
        "invokeUrl": format!("{url}/function/fogfn-{}", path.as_str()),
    }))
}

async fn fake_cancel(path: web::Path<String>, state: web::Data<NodeState>) -> HttpResponse {
    if let Ok(sla) = path.parse::<SlaId>() {
        state.placements.lock().expect("lock").remove(&sla);
        state.cancels.lock().expect("lock").push(sla);
    }
    HttpResponse::Ok().json(json!({"state": "cancelled"}))
}

fn limits(f: impl FnOnce(&mut ClientLimits)) -> ClientLimits {
    let mut l = ClientLimits::default();
    f(&mut l);
    l
}

fn nz32(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("not zero")
}

// ---------------------------------------------------------------------------------------------
// Tokens

async fn a_token_is_stored_only_as_its_sha256(db: TestDb) {
    let s = settings(&db, ClientAuth::Token, ClientLimits::default());
    let app = spawn_app(db, s).await;
    let token = app.token_for("alice").await;
    assert!(token.starts_with("fmc_") && token.len() == 68, "{token}");

    // Every column of the row, read as the database holds it.
    let pool = sqlx::AnyPool::connect(&app.db.url())
        .await
        .expect("connects");
    let rows = sqlx::query(
        "SELECT id, name, token_hash, token_prefix, \
         CAST(created_at_ms AS TEXT) AS created, CAST(token_created_at_ms AS TEXT) AS token_created \
         FROM clients",
    )
    .fetch_all(&pool)
    .await
    .expect("clients read");
    assert_eq!(rows.len(), 1);
    use sqlx::Row;
    let secret_part = &token["fmc_".len()..];
    for column in [
        "id",
        "name",
        "token_hash",
        "token_prefix",
        "created",
        "token_created",
    ] {
        let value: String = rows[0].try_get(column).expect("a text column");
        assert!(
            !value.contains(secret_part),
            "column {column} holds the token: {value}"
        );
    }
    let stored: String = rows[0].try_get("token_hash").expect("hash");
    assert_eq!(stored, hex::encode(Sha256::digest(token.as_bytes())));
    let prefix: String = rows[0].try_get("token_prefix").expect("prefix");
    assert!(
        token.starts_with(&prefix) && prefix.len() <= 12,
        "prefix {prefix}"
    );
    pool.close().await;

    // The token is what opens the API, not its hash.
    assert_eq!(app.get("/api/functions", Some(&token)).await.status, 200);
    assert_eq!(app.get("/api/functions", Some(&stored)).await.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn a_token_is_stored_only_as_its_sha256_on_sqlite() {
    a_token_is_stored_only_as_its_sha256(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_token_is_stored_only_as_its_sha256_on_postgres() {
    let db = TestDb::postgres().await;
    a_token_is_stored_only_as_its_sha256(db).await;
}

#[tokio::test]
async fn a_placement_without_a_valid_token_is_refused_and_nothing_is_stored() {
    let app = token_app().await;
    let token = app.token_for("alice").await;
    let unknown = format!("fmc_{}", "0".repeat(64));
    let hash = clients::token_hash(&token);
    let cases: [(&str, Option<&str>); 4] = [
        ("no Authorization header", None),
        ("an unknown token", Some(unknown.as_str())),
        ("the hash of a real token", Some(hash.as_str())),
        ("a token of another scheme", None),
    ];
    for (what, bearer) in cases {
        let a = if what == "a token of another scheme" {
            let r = app
                .http
                .put(format!("{}/api/function", app.address))
                .header("authorization", format!("Basic {token}"))
                .json(&sla_body())
                .send()
                .await
                .expect("answers");
            answer(r).await
        } else {
            app.place(bearer).await
        };
        assert_eq!(a.status, 401, "{what}: {}", a.body);
        assert_eq!(a.error(), "unauthorized", "{what}");
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("Authorization")),
            "{what}: the message names the header: {}",
            a.body
        );
        assert!(
            a.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{what}: WWW-Authenticate"
        );
    }
    assert_eq!(app.stored_slas().await, 0, "nothing was stored");
    assert_eq!(app.node.bids(), 0, "no node was asked to bid");

    // Every other client route refuses too.
    let id = SlaId::new();
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/function/{id}")),
        (reqwest::Method::POST, format!("/api/function/{id}")),
        (reqwest::Method::DELETE, format!("/api/function/{id}")),
        (reqwest::Method::GET, "/api/functions".to_string()),
        (reqwest::Method::GET, format!("/api/auctions/{id}")),
    ] {
        let a = app.send(method.clone(), &path, None, None).await;
        assert_eq!(a.status, 401, "{method} {path}: {}", a.body);
    }
    // With the token, the same placement goes through.
    app.placed(Some(&token)).await;
    assert_eq!(app.stored_slas().await, 1);
    app.stop().await;
}

async fn a_revoked_token_is_refused(db: TestDb) {
    let s = settings(&db, ClientAuth::Token, ClientLimits::default());
    let app = spawn_app(db, s).await;
    let token = app.token_for("alice").await;
    let (sla, _) = app.placed(Some(&token)).await;

    let name = ClientName::parse("alice").expect("name");
    let revoked = clients::revoke(
        app.market.repository(),
        &clients::ClientSelector::Name(name.clone()),
        Timestamp::now(),
    )
    .await
    .expect("revoked");
    assert!(revoked.revoked_at.is_some());

    let a = app.place(Some(&token)).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked")),
        "{}",
        a.body
    );
    let a = app.get(&format!("/api/function/{sla}"), Some(&token)).await;
    assert_eq!(a.status, 401, "reads are refused too: {}", a.body);
    assert_eq!(
        app.stored_slas().await,
        1,
        "only the first placement exists"
    );
    assert!(app.node.hosts(sla), "the placement itself stays");

    // A new token for the same client: the old one stays refused, the placement is still its.
    let made = clients::create_token(app.market.repository(), &name, false, Timestamp::now())
        .await
        .expect("a new token after revocation");
    assert!(made.replaced);
    assert_eq!(made.client.id, revoked.id);
    let fresh = made.token.expose().to_string();
    assert_eq!(app.get("/api/functions", Some(&token)).await.status, 401);
    let a = app.get(&format!("/api/function/{sla}"), Some(&fresh)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_sqlite() {
    a_revoked_token_is_refused(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_postgres() {
    let db = TestDb::postgres().await;
    a_revoked_token_is_refused(db).await;
}

#[tokio::test]
async fn rotating_a_token_stops_the_old_one_at_once() {
    let app = token_app().await;
    let old = app.token_for("alice").await;
    let name = ClientName::parse("alice").expect("name");
    let again = clients::create_token(app.market.repository(), &name, false, Timestamp::now())
        .await
        .expect_err("a live token is not replaced by accident");
    assert!(again.to_string().contains("--rotate"), "{again}");
    assert_eq!(app.get("/api/functions", Some(&old)).await.status, 200);

    let rotated = clients::create_token(app.market.repository(), &name, true, Timestamp::now())
        .await
        .expect("rotated");
    assert_eq!(app.get("/api/functions", Some(&old)).await.status, 401);
    let fresh = rotated.token.expose();
    assert_eq!(app.get("/api/functions", Some(fresh)).await.status, 200);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Ownership

async fn a_client_cannot_read_provision_or_cancel_another_clients_placement(db: TestDb) {
    let s = settings(&db, ClientAuth::Token, ClientLimits::default());
    let app = spawn_app(db, s).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    let (sla, auction) = app.placed(Some(&alice)).await;
    let stored = app
        .market
        .repository()
        .sla(sla)
        .await
        .expect("read")
        .expect("stored");
    let alice_id = app
        .market
        .repository()
        .client_by_name("alice")
        .await
        .expect("read")
        .expect("alice")
        .id;
    assert_eq!(stored.owner, Some(alice_id), "the placement is alice's");

    // What bob gets for alice's placement is what anyone gets for an id that does not exist.
    let missing = app
        .get(&format!("/api/function/{}", SlaId::new()), Some(&bob))
        .await;
    assert_eq!(missing.status, 404);
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/function/{sla}")),
        (reqwest::Method::POST, format!("/api/function/{sla}")),
        (reqwest::Method::DELETE, format!("/api/function/{sla}")),
        (reqwest::Method::GET, format!("/api/auctions/{auction}")),
    ] {
        let a = app.send(method.clone(), &path, Some(&bob), None).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
        assert_eq!(a.error(), missing.error(), "{method} {path}");
        assert!(
            !a.body.to_string().contains("alice"),
            "{method} {path} says nothing about the owner: {}",
            a.body
        );
    }

    // Alice's placement is untouched: still reserved, still on the node, never cancelled.
    assert!(app.node.hosts(sla));
    assert!(app.node.cancels().is_empty(), "{:?}", app.node.cancels());
    let a = app.get(&format!("/api/function/{sla}"), Some(&alice)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "reserved");
    let a = app
        .get(&format!("/api/auctions/{auction}"), Some(&alice))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The owner may provision and cancel.
    let a = app
        .send(
            reqwest::Method::POST,
            &format!("/api/function/{sla}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "live");
    let a = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/function/{sla}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "cancelled");
    assert_eq!(app.node.cancels(), vec![sla]);
    app.stop().await;
}

#[tokio::test]
async fn a_client_cannot_read_provision_or_cancel_another_clients_placement_on_sqlite() {
    a_client_cannot_read_provision_or_cancel_another_clients_placement(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_client_cannot_read_provision_or_cancel_another_clients_placement_on_postgres() {
    let db = TestDb::postgres().await;
    a_client_cannot_read_provision_or_cancel_another_clients_placement(db).await;
}

async fn a_client_lists_only_its_own_placements(db: TestDb) {
    let s = settings(&db, ClientAuth::Token, ClientLimits::default());
    let app = spawn_app(db, s).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    let carol = app.token_for("carol").await;
    let a1 = app.placed(Some(&alice)).await.0;
    let b1 = app.placed(Some(&bob)).await.0;
    let a2 = app.placed(Some(&alice)).await.0;

    let ids = |a: &Answer| -> Vec<String> {
        a.body
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| f["sla"]["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let listed = app.get("/api/functions", Some(&alice)).await;
    assert_eq!(listed.status, 200);
    assert_eq!(ids(&listed), vec![a1.to_string(), a2.to_string()]);
    let listed = app.get("/api/functions", Some(&bob)).await;
    assert_eq!(ids(&listed), vec![b1.to_string()]);
    let listed = app.get("/api/functions", Some(&carol)).await;
    assert_eq!(listed.status, 200);
    assert_eq!(ids(&listed), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn a_client_lists_only_its_own_placements_on_sqlite() {
    a_client_lists_only_its_own_placements(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_client_lists_only_its_own_placements_on_postgres() {
    let db = TestDb::postgres().await;
    a_client_lists_only_its_own_placements(db).await;
}

#[tokio::test]
async fn open_mode_keeps_the_api_as_it_was_without_owners_or_limits_on_loopback() {
    let db = TestDb::sqlite();
    // Tiny limits: none may apply to requests from loopback in open mode.
    let tight = limits(|l| {
        l.placement_rate = PlacementRate::per_second(0.001).expect("a rate");
        l.placement_burst = nz32(1);
        l.max_auctions_in_flight = nz32(1);
        l.max_live_placements = NonZeroU64::MIN;
    });
    let s = settings(&db, ClientAuth::None, tight);
    let app = spawn_app(db, s).await;
    assert!(!app.market.client_access().requires_tokens());

    // 6 at once, from 127.0.0.1, without tokens (one with a header that is ignored).
    let placements = (0..6).map(|i| {
        let app = &app;
        async move {
            if i == 0 {
                app.place(Some("not-a-token")).await
            } else {
                app.place(None).await
            }
        }
    });
    let answers = futures::future::join_all(placements).await;
    let mut ids = Vec::new();
    for a in &answers {
        assert_eq!(a.status, 200, "{}", a.body);
        ids.push(a.body["sla"]["id"].as_str().expect("an id").to_string());
    }
    for id in &ids {
        let record = app
            .market
            .repository()
            .sla(id.parse().expect("an SLA id"))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(record.owner, None, "open mode records no owner");
    }
    // Anyone reads, lists and cancels anything, as before tokens.
    let listed = app.get("/api/functions", None).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(6));
    let a = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/function/{}", ids[0]),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["state"], "cancelled");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn placements_beyond_the_rate_limit_get_429_with_retry_after() {
    let db = TestDb::sqlite();
    // One request per 1000 s, bursts of 2.
    let l = limits(|l| {
        l.placement_rate = PlacementRate::per_second(0.001).expect("a rate");
        l.placement_burst = nz32(2);
    });
    let s = settings(&db, ClientAuth::Token, l);
    let app = spawn_app(db, s).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    app.placed(Some(&alice)).await;
    app.placed(Some(&alice)).await;

    let a = app.place(Some(&alice)).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.error(), "rate_limited");
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((900..=1000).contains(&retry), "Retry-After {retry}");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit")),
        "{}",
        a.body
    );
    assert_eq!(app.stored_slas().await, 2, "the refused one was not stored");
    assert_eq!(app.node.bids(), 2, "the refused one never reached a node");

    // The bucket is alice's alone.
    app.placed(Some(&bob)).await;
    app.stop().await;
}

#[tokio::test]
async fn auctions_beyond_the_in_flight_cap_get_429_until_one_settles() {
    let db = TestDb::sqlite();
    let l = limits(|l| l.max_auctions_in_flight = nz32(2));
    let s = Settings {
        // Room for the held auctions to stay in flight while the test looks.
        auction_timeout: Duration::from_secs(10),
        ..settings(&db, ClientAuth::Token, l)
    };
    let app = Arc::new(spawn_app(db, s).await);
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;

    app.node.set_bidding_open(false);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (app, token) = (app.clone(), alice.clone());
            tokio::spawn(async move { app.place(Some(&token)).await })
        })
        .collect();
    eventually("both auctions are waiting for bids", || async {
        app.node.bids() == 2
    })
    .await;

    let a = app.place(Some(&alice)).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.error(), "too_many_auctions_in_flight");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("auctions-in-flight limit")),
        "{}",
        a.body
    );
    assert_eq!(app.node.bids(), 2, "the refused auction never started");

    // Another client has its own slots (its bid waits too, so it is counted, then released).
    let other = {
        let (app, token) = (app.clone(), bob.clone());
        tokio::spawn(async move { app.place(Some(&token)).await })
    };
    eventually("bob's auction is waiting for bids too", || async {
        app.node.bids() == 3
    })
    .await;

    app.node.set_bidding_open(true);
    for h in held {
        let a = h.await.expect("joined");
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(other.await.expect("joined").status, 200);
    // The slots are free again.
    app.placed(Some(&alice)).await;
    match Arc::try_unwrap(app) {
        Ok(app) => {
            app.stop().await;
        }
        Err(_) => panic!("the app is still shared"),
    }
}

async fn placements_beyond_the_live_cap_get_429_until_one_is_cancelled(db: TestDb) {
    let l = limits(|l| l.max_live_placements = NonZeroU64::new(2).expect("not zero"));
    let s = settings(&db, ClientAuth::Token, l);
    let app = spawn_app(db, s).await;
    let alice = app.token_for("alice").await;
    let bob = app.token_for("bob").await;
    let (first, _) = app.placed(Some(&alice)).await;
    app.placed(Some(&alice)).await;

    let a = app.place(Some(&alice)).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.error(), "too_many_live_placements");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("live-placements limit") && m.contains("at most 2")),
        "{}",
        a.body
    );
    assert_eq!(app.stored_slas().await, 2);
    app.placed(Some(&bob)).await;

    let a = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/function/{first}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    app.placed(Some(&alice)).await;
    app.stop().await;
}

#[tokio::test]
async fn placements_beyond_the_live_cap_get_429_until_one_is_cancelled_on_sqlite() {
    placements_beyond_the_live_cap_get_429_until_one_is_cancelled(TestDb::sqlite()).await;
}

#[tokio::test]
async fn placements_beyond_the_live_cap_get_429_until_one_is_cancelled_on_postgres() {
    let db = TestDb::postgres().await;
    placements_beyond_the_live_cap_get_429_until_one_is_cancelled(db).await;
}

#[tokio::test]
async fn in_open_mode_a_remote_address_is_limited_by_its_ip() {
    let db = TestDb::sqlite();
    let l = limits(|l| {
        l.placement_rate = PlacementRate::per_second(0.001).expect("a rate");
        l.placement_burst = nz32(2);
        l.max_live_placements = NonZeroU64::new(1).expect("not zero");
    });
    let s = settings(&db, ClientAuth::None, l);
    let app = spawn_app(db, s).await;
    let remote = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));
    let caller = app
        .market
        .authenticate_client(None, Some(remote))
        .await
        .expect("open mode lets anyone in");
    assert_eq!(caller.owner(), None);
    assert_eq!(caller.limit_key(), Some(LimitKey::Addr(remote)));
    let local = app
        .market
        .authenticate_client(None, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)))
        .await
        .expect("open");
    assert_eq!(local.limit_key(), None, "loopback is not limited");

    let request = || PlaceRequest {
        sla: Sla::from_json(&sla_body()["sla"], SlaId::new(), "sla").expect("a valid SLA"),
        target_node: "edge".into(),
        provision: false,
    };
    let placed = app
        .market
        .place_function(&caller, request(), Timestamp::now())
        .await
        .expect("the first placement");
    let record = app
        .market
        .repository()
        .sla(placed.sla.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(record.client_addr, Some(remote));
    assert_eq!(record.owner, None);

    // One live placement per address.
    let refused = app
        .market
        .place_function(&caller, request(), Timestamp::now())
        .await
        .expect_err("over the live cap");
    assert!(
        matches!(&refused, ServiceError::ClientLimit(_)),
        "{refused}"
    );
    assert!(refused.to_string().contains("live-placements"), "{refused}");
    // Another address has its own count.
    let caller2 = app
        .market
        .authenticate_client(None, Some(other))
        .await
        .expect("open");
    app.market
        .place_function(&caller2, request(), Timestamp::now())
        .await
        .expect("another address");
    // The burst of 2 is used up (a placement and a refusal): the rate limit answers next.
    let refused = app
        .market
        .place_function(&caller, request(), Timestamp::now())
        .await
        .expect_err("over the rate");
    assert!(refused.to_string().contains("rate limit"), "{refused}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Mode

#[test]
fn auto_mode_is_open_on_loopback_and_requires_tokens_elsewhere() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
    for open in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        let access = ClientAuth::Auto.resolve(ip(open));
        assert!(!access.requires_tokens(), "{open}: {access}");
        assert!(access.to_string().starts_with("open (loopback"), "{access}");
    }
    for remote in ["0.0.0.0", "::", "10.0.0.5", "192.168.1.20", "2001:db8::1"] {
        let access = ClientAuth::Auto.resolve(ip(remote));
        assert!(access.requires_tokens(), "{remote}: {access}");
        assert!(access.to_string().contains(remote), "{access}");
    }
    assert!(ClientAuth::Token.resolve(ip("127.0.0.1")).requires_tokens());
    assert!(!ClientAuth::None.resolve(ip("0.0.0.0")).requires_tokens());
    assert!(matches!(
        ClientAuth::None.resolve(ip("0.0.0.0")),
        ClientAccess::Open(_)
    ));

    assert_eq!("auto".parse(), Ok(ClientAuth::Auto));
    assert_eq!("TOKEN".parse(), Ok(ClientAuth::Token));
    assert_eq!("none".parse(), Ok(ClientAuth::None));
    assert!("maybe".parse::<ClientAuth>().is_err());

    // The binary's default is auto; the tests' default is open.
    assert_eq!(
        Settings::new("sqlite::memory:", "s").client_auth,
        ClientAuth::Auto
    );
    let tests = Settings::for_tests("sqlite::memory:");
    assert!(
        !tests
            .client_auth
            .resolve(tests.listen.ip())
            .requires_tokens()
    );
}

// ---------------------------------------------------------------------------------------------
// The binary

fn marketplace_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_marketplace"))
}

#[test]
fn the_token_commands_create_list_and_revoke_clients() {
    let db = TestDb::sqlite();
    let run = |args: &[&str]| {
        let out = marketplace_bin()
            .args(args)
            .env("DATABASE_URL", db.url())
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .output()
            .expect("marketplace runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, stdout, stderr) = run(&["token", "create", "--client", "ci-bot.1"]);
    assert!(ok, "{stderr}");
    let token = stdout.lines().last().expect("a line").to_string();
    assert!(
        token.len() == 68
            && token.starts_with("fmc_")
            && token[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "the last line is the token alone: {stdout:?}"
    );
    assert!(stderr.contains("ci-bot.1"), "{stderr}");

    let (ok, stdout, stderr) = run(&["token", "list"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ci-bot.1") && stdout.contains("active"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&token[..12]),
        "the prefix is shown: {stdout}"
    );
    assert!(!stdout.contains(&token[12..]), "never the token: {stdout}");

    let (ok, _, stderr) = run(&["token", "create", "--client", "bad name"]);
    assert!(!ok);
    assert!(stderr.contains("bad name"), "{stderr}");
    let (ok, _, stderr) = run(&["token", "create", "--client", ""]);
    assert!(!ok, "an empty name is refused: {stderr}");

    let (ok, stdout, stderr) = run(&["token", "revoke", "--client", "ci-bot.1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("revoked"), "{stdout}");
    let (_, stdout, _) = run(&["token", "list"]);
    assert!(stdout.contains("revoked"), "{stdout}");
    let (ok, _, stderr) = run(&["token", "revoke", "--client", "nobody"]);
    assert!(!ok);
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[tokio::test]
async fn the_server_still_starts_without_a_command_and_says_how_the_client_api_is_protected() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let db = TestDb::sqlite();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_marketplace"))
        .args(["--listen", "127.0.0.1:0", "--dev", "--client-auth", "token"])
        .env("DATABASE_URL", db.url())
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("marketplace starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let read = async {
        let listening = stdout
            .next_line()
            .await
            .expect("stdout readable")
            .expect("a listening line");
        let mut said = None;
        while let Some(line) = stderr.next_line().await.expect("stderr readable") {
            if line.starts_with("client API: ") {
                said = Some(line);
                break;
            }
        }
        (listening, said)
    };
    let (listening, said) = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the marketplace starts within 60 s");
    assert!(
        listening.starts_with("listening on http://127.0.0.1:"),
        "{listening}"
    );
    let said = said.expect("a `client API:` line on stderr");
    assert!(said.contains("tokens required"), "{said}");
    assert!(said.contains("Authorization: Bearer"), "{said}");

    // And it means it.
    let base = listening.trim_start_matches("listening on ").to_string();
    let r = reqwest::Client::new()
        .get(format!("{base}/api/functions"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status().as_u16(), 401);
    child.kill().await.expect("stopped");
}
