//! The route table fog nodes long-poll (`GET /api/routes?after=&waitMs=`): what it lists, when
//! its version moves, how long-polls wait and wake, and who may ask.

mod common;

use common::*;
use model::protocol::{Resources, RouteTable};
use model::{NodeId, SlaId, Timestamp, auth};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Polls the route table as one node, from any task.
#[derive(Clone)]
struct Poller {
    http: reqwest::Client,
    address: String,
    key: model::auth::SecretKey,
    sender: String,
}

impl Poller {
    fn of(app: &TestApp, node: &FakeNode) -> Poller {
        Poller {
            http: app.http.clone(),
            address: app.address.clone(),
            key: node.key(),
            sender: node.id.to_string(),
        }
    }

    /// `GET /api/routes{query}`, signed like a fog node: `GET`, the path with its query, an
    /// empty body, for the marketplace.
    async fn get(&self, query: &str) -> (u16, Value) {
        let header = member_header(
            &self.key,
            &self.sender,
            auth::MARKETPLACE,
            "GET",
            &format!("/api/routes{query}"),
            b"",
        );
        let r = self
            .http
            .get(format!("{}/api/routes{query}", self.address))
            .header("authorization", header)
            .send()
            .await
            .expect("marketplace answers");
        read(r).await
    }

    /// The current table (no `after`: answered at once).
    async fn table(&self) -> RouteTable {
        let (status, body) = self.get("").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a RouteTable: {e}: {body}"))
    }

    /// Starts a long-poll in the background; resolves to the answer and when it arrived.
    fn spawn_long_poll(
        &self,
        after: u64,
        wait_ms: u64,
    ) -> tokio::task::JoinHandle<(u16, Value, Instant)> {
        let poller = self.clone();
        tokio::spawn(async move {
            let (status, body) = poller
                .get(&format!("?after={after}&waitMs={wait_ms}"))
                .await;
            (status, body, Instant::now())
        })
    }
}

/// Waits until `n` long-polls are parked in the marketplace.
async fn until_waiting(app: &TestApp, n: usize) {
    let market = app.market.clone();
    eventually(&format!("{n} long-poll(s) waiting"), || {
        market.route_stats().waiting == n
    })
    .await;
}

fn behaviour(price: f64) -> NodeBehaviour {
    NodeBehaviour {
        price,
        ..NodeBehaviour::default()
    }
}

fn sla_id(resp: &Value) -> SlaId {
    resp["sla"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sla.id")
}

/// Places an SLA on `target` (optionally provisioned at once); 200 expected.
async fn place(app: &TestApp, sla: Value, target: &str, provision: bool) -> Value {
    let (status, resp) = app
        .put_function(&json!({"sla": sla, "targetNode": target, "provision": provision}))
        .await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn table_of(body: &Value) -> RouteTable {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("not a RouteTable: {e}: {body}"))
}

// ---------------------------------------------------------------------------------------------
// Content

#[tokio::test]
async fn the_table_lists_live_placements_with_their_hosts_and_every_node() {
    table_content(spawn_app().await).await;
}

#[tokio::test]
async fn the_table_lists_live_placements_with_their_hosts_and_every_node_on_postgres() {
    let db = TestDb::postgres().await;
    let settings = test_settings(&db);
    table_content(spawn_app_with(db, settings).await).await;
}

async fn table_content(app: TestApp) {
    // Target t (price 5) relays to a (3) and b (4): with nodes = 2, a and b host.
    let t = FakeNode::start(&app, "t", None, behaviour(5.0)).await;
    let a = FakeNode::start(&app, "a", Some("t"), behaviour(3.0)).await;
    let b = FakeNode::start(&app, "b", Some("t"), behaviour(4.0)).await;
    t.add_child(&a);
    t.add_child(&b);
    let mut two = sla();
    two["nodes"] = json!(2);
    let live = place(&app, two, "t", true).await;
    assert_eq!(live["state"], "live", "{live}");
    let live_id = sla_id(&live);
    // Reserved only: not in the table.
    let reserved = place(&app, sla(), "t", false).await;
    assert_eq!(reserved["state"], "reserved", "{reserved}");

    let table = Poller::of(&app, &t).table().await;

    let mut nodes: Vec<(String, NodeId, String, bool)> = table
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.node_id, n.url.clone(), n.alive))
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        vec![
            ("a".to_string(), a.id, a.url.clone(), true),
            ("b".to_string(), b.id, b.url.clone(), true),
            ("t".to_string(), t.id, t.url.clone(), true),
        ]
    );

    assert_eq!(table.functions.len(), 1, "only the live SLA: {table:?}");
    let f = &table.functions[0];
    assert_eq!(f.sla_id, live_id);
    assert_eq!(f.service, format!("fogfn-{live_id}"));
    assert_eq!(f.name, "echo");
    assert_eq!(f.image, "ghcr.io/acme/echo:1.2");
    assert_eq!(f.target_node, t.id);
    assert_eq!(f.latency_max_ms, 50.0);
    let ends_at: Vec<u64> = live["winners"]
        .as_array()
        .expect("winners")
        .iter()
        .map(|w| w["endsAt"].as_u64().expect("endsAt"))
        .collect();
    assert_eq!(ends_at.len(), 2);
    assert_eq!(f.expires_at, Timestamp::from_millis(ends_at[0]));
    let mut hosts = f.hosts.clone();
    hosts.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(hosts, want, "one host per winner (nodes = 2)");
    assert!(table.generated_at.as_millis() > 0);
}

#[tokio::test]
async fn a_live_function_is_invoked_through_its_target_node_and_keeps_its_gateway_url() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(5.0)).await;
    let a = FakeNode::start(&app, "a", Some("t"), behaviour(3.0)).await;
    t.add_child(&a);

    let resp = place(&app, sla(), "t", false).await;
    let id = sla_id(&resp);
    assert!(resp.get("invokeUrl").is_none(), "reserved: {resp}");
    assert!(
        resp["chosen"].get("invokeUrl").is_none(),
        "reserved: {resp}"
    );

    let (status, resp) = app.post(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["state"], "live", "{resp}");
    let access = format!("{}/function/fogfn-{id}", t.url);
    assert_eq!(resp["invokeUrl"], access, "{resp}");
    assert_eq!(resp["chosen"]["nodeId"], a.id.to_string(), "a hosts");
    assert_eq!(resp["chosen"]["invokeUrl"], access, "via the target t");
    assert_eq!(resp["chosen"]["gatewayUrl"], fake_gateway_url(&a.url, id));
    let (_, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(got["chosen"]["invokeUrl"], access, "{got}");

    let (status, resp) = app.delete(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp.get("invokeUrl").is_none(), "cancelled: {resp}");
    assert!(
        resp["chosen"].get("invokeUrl").is_none(),
        "cancelled: {resp}"
    );
    assert_eq!(
        resp["chosen"]["gatewayUrl"],
        fake_gateway_url(&a.url, id),
        "kept as history"
    );
}

// ---------------------------------------------------------------------------------------------
// Long-polls

#[tokio::test]
async fn a_long_poll_wakes_within_a_second_when_a_placement_goes_live_is_cancelled_or_expires() {
    long_polls_wake_on_placement_changes(spawn_app().await).await;
}

#[tokio::test]
async fn a_long_poll_wakes_on_placement_changes_on_postgres() {
    let db = TestDb::postgres().await;
    let settings = test_settings(&db);
    long_polls_wake_on_placement_changes(spawn_app_with(db, settings).await).await;
}

/// Parks a long-poll at the current version, runs `change`, and checks the poll answered
/// within 1 s of the change with a higher version; returns the new table.
async fn wakes_on<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    poller: &Poller,
    what: &str,
    change: F,
) -> RouteTable {
    let before = poller.table().await.version;
    let started = Instant::now();
    let poll = poller.spawn_long_poll(before, 20_000);
    until_waiting(app, 1).await;
    change.await;
    let changed = Instant::now();
    let (status, body, answered) = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap_or_else(|_| panic!("{what}: the long-poll did not wake"))
        .expect("poll task");
    assert_eq!(status, 200, "{what}: {body}");
    assert!(
        answered <= changed + Duration::from_secs(1),
        "{what}: answered {:?} after the change",
        answered.saturating_duration_since(changed)
    );
    assert!(
        answered.duration_since(started) < Duration::from_secs(20),
        "{what}: answered by the change, not the timeout"
    );
    let table = table_of(&body);
    assert!(
        table.version > before,
        "{what}: version {} after {before}",
        table.version
    );
    table
}

async fn long_polls_wake_on_placement_changes(app: TestApp) {
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);

    // Becoming live.
    let id = sla_id(&place(&app, sla(), "t", false).await);
    let table = wakes_on(&app, &poller, "live", async {
        let (status, resp) = app.post(&format!("/api/function/{id}")).await;
        assert_eq!(
            (status, resp["state"].as_str()),
            (200, Some("live")),
            "{resp}"
        );
    })
    .await;
    assert_eq!(table.functions.len(), 1);
    assert_eq!(table.functions[0].sla_id, id);
    assert_eq!(table.functions[0].hosts, vec![t.id]);

    // Cancelled.
    let table = wakes_on(&app, &poller, "cancel", async {
        let (status, resp) = app.delete(&format!("/api/function/{id}")).await;
        assert_eq!(status, 200, "{resp}");
    })
    .await;
    assert!(table.functions.is_empty(), "{table:?}");

    // Expired (the expiry step, driven with a time past the 30 s lifetime).
    let id = sla_id(&place(&app, sla(), "t", true).await);
    assert_eq!(poller.table().await.functions.len(), 1);
    let market = app.market.clone();
    let table = wakes_on(&app, &poller, "expiry", async {
        let later = Timestamp::now().plus(Duration::from_secs(31));
        assert_eq!(market.finish_due_placements(later).await.expect("step"), 1);
    })
    .await;
    assert!(table.functions.is_empty(), "{id} finished: {table:?}");
}

#[tokio::test]
async fn a_long_poll_with_nothing_changing_returns_after_wait_ms_with_the_same_version() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    let before = poller.table().await.version;
    let started = Instant::now();
    let (status, body) = poller.get(&format!("?after={before}&waitMs=600")).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(table_of(&body).version, before);
    assert!(
        took >= Duration::from_millis(600),
        "answered early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1_500),
        "answered late: {took:?}"
    );

    // Without waitMs there is no wait, whatever `after` says.
    let started = Instant::now();
    let (status, body) = poller.get(&format!("?after={}", before + 1_000)).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn an_older_version_is_answered_at_once() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    let current = poller.table().await.version;
    let started = Instant::now();
    let (status, body) = poller
        .get(&format!("?after={}&waitMs=10000", current - 1))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(table_of(&body).version, current);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn many_long_polls_woken_by_one_change_share_one_table_build() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    let before = poller.table().await.version;
    let polls: Vec<_> = (0..5)
        .map(|_| poller.spawn_long_poll(before, 20_000))
        .collect();
    until_waiting(&app, 5).await;
    let builds = app.market.route_stats().builds;

    // One change: a node registers.
    register(
        &app,
        &register_request("late", "http://127.0.0.1:9", Some("t")),
    )
    .await;

    let mut versions = Vec::new();
    for p in polls {
        let (status, body, _) = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("woken")
            .expect("poll task");
        assert_eq!(status, 200, "{body}");
        let table = table_of(&body);
        assert!(table.nodes.iter().any(|n| n.name == "late"), "{body}");
        versions.push(table.version);
    }
    assert!(versions.iter().all(|v| *v == versions[0] && *v > before));
    assert_eq!(
        app.market.route_stats().builds,
        builds + 1,
        "one database read for five polls"
    );
}

#[tokio::test]
async fn liveness_changes_and_registrations_move_the_version_but_plain_heartbeats_do_not() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let key = t.key();
    let poller = Poller::of(&app, &t);
    let v0 = poller.table().await.version;

    let (status, body) = heartbeat(&app, t.id, &key, Resources::ZERO).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        poller.table().await.version,
        v0,
        "nothing the table shows changed"
    );

    // Silent for 3 intervals (60 s each): dead.
    let later = Timestamp::now().plus(Duration::from_secs(181));
    assert_eq!(app.market.mark_silent_nodes_dead(later).await.unwrap(), 1);
    let dead = poller.table().await;
    assert!(dead.version > v0);
    assert!(!dead.nodes[0].alive);

    // Back with a heartbeat.
    let table = wakes_on(&app, &poller, "revival", async {
        let (status, body) = heartbeat(&app, t.id, &key, Resources::ZERO).await;
        assert_eq!(status, 200, "{body}");
    })
    .await;
    assert!(table.nodes[0].alive);
    let (status, _) = heartbeat(&app, t.id, &key, Resources::ZERO).await;
    assert_eq!(status, 200);
    assert_eq!(poller.table().await.version, table.version);

    // A registration.
    let table = wakes_on(&app, &poller, "registration", async {
        register(
            &app,
            &register_request("b", "http://127.0.0.1:9", Some("t")),
        )
        .await;
    })
    .await;
    assert_eq!(table.nodes.len(), 2);
}

#[tokio::test]
async fn a_restarted_marketplace_starts_past_every_version_of_its_previous_run() {
    let db = TestDb::sqlite();
    let settings = test_settings(&db);
    let app = spawn_app_with(db, settings.clone()).await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    // Bump a few times, as a busy run would.
    for _ in 0..3 {
        register(&app, &register_request("t", &t.url, None)).await;
    }
    let old = poller.table().await.version;
    let db = app.stop().await;

    let app = spawn_app_with(db, settings).await;
    let poller = Poller {
        http: app.http.clone(),
        address: app.address.clone(),
        ..poller
    };
    let started = Instant::now();
    let (status, body) = poller.get(&format!("?after={old}&waitMs=10000")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a node with an old version gets the new table at once"
    );
    let table = table_of(&body);
    assert!(table.version > old, "{} after {old}", table.version);
    assert!(!table.nodes[0].alive, "not alive until it heartbeats");
}

#[tokio::test]
async fn a_waiting_long_poll_ends_promptly_when_the_marketplace_stops() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    let before = poller.table().await.version;
    let poll = poller.spawn_long_poll(before, 30_000);
    until_waiting(&app, 1).await;
    let stopping = Instant::now();
    let handle = app.handle.clone();
    let stop = tokio::spawn(async move { handle.stop(true).await });
    let (status, body, answered) = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .expect("the long-poll ends")
        .expect("poll task");
    assert_eq!(status, 200, "answered with the current table: {body}");
    assert_eq!(table_of(&body).version, before);
    assert!(answered.duration_since(stopping) < Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .expect("the server stops")
        .expect("stop task");
}

// ---------------------------------------------------------------------------------------------
// Input and authentication

#[tokio::test]
async fn route_polls_must_be_signed_by_a_registered_node() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let key = t.key();
    let id = t.id.to_string();

    // Unsigned.
    let (status, body) = app.get("/api/routes").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    // Another key than the one pinned to the node.
    let stranger = model::auth::SecretKey::from_seed([9; 32]);
    let (status, body) = app.get_signed("/api/routes", &stranger, &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );

    // Signed over the wrong method, without the query, for another recipient, or too long
    // ago: all sent as `GET /api/routes?after=1`.
    let cases = [
        (
            "POST",
            "/api/routes?after=1",
            auth::MARKETPLACE,
            Timestamp::now(),
        ),
        ("GET", "/api/routes", auth::MARKETPLACE, Timestamp::now()),
        (
            "GET",
            "/api/routes?after=2",
            auth::MARKETPLACE,
            Timestamp::now(),
        ),
        ("GET", "/api/routes?after=1", id.as_str(), Timestamp::now()),
        (
            "GET",
            "/api/routes?after=1",
            auth::MARKETPLACE,
            Timestamp::from_millis(Timestamp::now().as_millis() - 60_000),
        ),
    ];
    for (method, signed_path, recipient, at) in cases {
        let header = auth::sign(
            &key,
            &id,
            recipient,
            at,
            auth::Nonce::random(&mut rand::rng()),
            &auth::RequestTarget::new(method, signed_path, b""),
        );
        let r = app
            .http
            .get(format!("{}/api/routes?after=1", app.address))
            .header("authorization", header)
            .send()
            .await
            .expect("answers");
        let (status, body) = read(r).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{method} {signed_path}: {body}"
        );
    }

    // A valid signature by a key, but not of an enrolled node.
    for sender in ["intruder".to_string(), NodeId::new().to_string()] {
        let (status, body) = app.get_signed("/api/routes", &key, &sender).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{sender}: {body}"
        );
    }

    // The node itself.
    let (status, body) = app.get_signed("/api/routes?after=0", &key, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.bad_signatures(), 0);
}

#[tokio::test]
async fn a_bad_wait_ms_or_after_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let poller = Poller::of(&app, &t);
    for (query, field) in [
        ("?waitMs=30001", "waitMs"),
        ("?waitMs=abc", "waitMs"),
        ("?waitMs=-1", "waitMs"),
        ("?waitMs=", "waitMs"),
        ("?waitMs=1.5", "waitMs"),
        ("?waitMs=1&waitMs=2", "waitMs"),
        ("?after=x&waitMs=10", "after"),
        ("?after=&waitMs=10", "after"),
        ("?after=18446744073709551616", "after"),
    ] {
        let (status, body) = poller.get(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_request", "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{query}: {body}"
        );
    }
    // The limit itself is fine (answered at once without `after`).
    let (status, body) = poller.get("?waitMs=30000").await;
    assert_eq!(status, 200, "{body}");
}
