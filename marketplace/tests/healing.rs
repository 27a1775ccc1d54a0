//! Re-placement in one process: the marketplace, with a short heartbeat interval, against fake
//! fog nodes. A host that stops heartbeating is declared dead by the marketplace's own
//! liveness loop, and its placement is auctioned again among the live nodes.

mod common;

use common::*;
use model::protocol::Resources;
use model::{NodeId, SlaId};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// A marketplace whose nodes are dead after 3 x 200 ms without a heartbeat.
async fn quick_app(db: TestDb) -> TestApp {
    let settings = marketplace::settings::Settings {
        heartbeat_interval: Duration::from_millis(200),
        ..test_settings(&db)
    };
    spawn_app_with(db, settings).await
}

/// Heartbeats for `node` every 100 ms until the returned flag is cleared.
fn keep_alive(app: &TestApp, node: &FakeNode) -> Arc<AtomicBool> {
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    let (id, key): (NodeId, _) = (node.id, node.key());
    let http = app.http.clone();
    let base = app.address.clone();
    tokio::spawn(async move {
        let path = format!("/api/heartbeat/{id}");
        let body = serde_json::to_vec(&json!({"reserved": Resources::ZERO})).expect("json");
        while flag.load(Ordering::SeqCst) {
            let header = member_header(
                &key,
                &id.to_string(),
                model::auth::MARKETPLACE,
                "POST",
                &path,
                &body,
            );
            let _ = http
                .post(format!("{base}{path}"))
                .header("authorization", header)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    alive
}

async fn function(app: &TestApp, id: SlaId) -> Value {
    let (status, body) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the function's view until `done` holds, with a deadline.
async fn until_view(app: &TestApp, id: SlaId, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = function(app, id).await;
        if done(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 10 s; last view: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_placement_whose_host_dies_moves_to_a_live_node_keeps_its_id_and_records_the_move() {
    moves_off_a_dead_host(TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_placement_whose_host_dies_moves_to_a_live_node_on_postgres() {
    moves_off_a_dead_host(TestDb::postgres().await).await;
}

async fn moves_off_a_dead_host(db: TestDb) {
    let app = quick_app(db).await;
    let t = FakeNode::start(&app, "t", None, behaviour(5.0)).await;
    let a = FakeNode::start(&app, "a", Some("t"), behaviour(3.0)).await;
    let b = FakeNode::start(&app, "b", Some("t"), behaviour(4.0)).await;
    t.add_child(&a);
    t.add_child(&b);
    let _t_alive = keep_alive(&app, &t);
    let a_alive = keep_alive(&app, &a);
    let _b_alive = keep_alive(&app, &b);

    let (status, placed) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["chosen"]["nodeName"], "a");
    let id = sla_id(&placed);

    // `a` dies: no more heartbeats, no more answers.
    a_alive.store(false, Ordering::SeqCst);
    a.stop().await;

    let moved = until_view(&app, id, "the placement moved off `a`", |v| {
        v["winners"]
            .as_array()
            .is_some_and(|w| w.len() == 1 && w[0]["nodeName"] != "a")
    })
    .await;
    // Same id, the next cheapest live node, and the history says what happened.
    assert_eq!(moved["sla"]["id"], id.to_string());
    assert_eq!(moved["chosen"]["nodeName"], "b", "{moved:#}");
    assert!(b.has_placement(id));
    let history = moved["history"].as_array().expect("a history");
    let events: Vec<(&str, &str)> = history
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default(),
                e["nodeName"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![("host_lost", "a"), ("moved_to", "b")],
        "{moved:#}"
    );
    assert!(
        history[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("heartbeats"))
    );
    assert_ne!(moved["state"], "degraded");

    // The old host's record is `moved`, its billing ended no later than the new one's start,
    // and the lifetime did not grow with the move.
    let placements = app
        .market
        .repository()
        .placements_for_sla(id)
        .await
        .expect("placements");
    let old = placements
        .iter()
        .find(|p| p.node_id == a.id)
        .expect("a's record");
    let new = placements
        .iter()
        .find(|p| p.node_id == b.id)
        .expect("b's record");
    assert_eq!(old.state.as_str(), "moved");
    assert!(old.ends_at <= new.created_at, "{old:?} / {new:?}");
    let first_end = placed["winners"][0]["endsAt"].as_u64();
    if let Some(first_end) = first_end {
        assert!(new.ends_at.as_millis() <= first_end);
    }

    // `a` comes back: its heartbeat tells it to release the copy that moved; `b` is told
    // nothing.
    let (status, hb) = heartbeat(&app, a.id, &a.key(), Resources::ZERO).await;
    assert_eq!(status, 200, "{hb}");
    assert_eq!(hb["released"], json!([id.to_string()]), "{hb}");
    let (_, hb) = heartbeat(&app, b.id, &b.key(), Resources::ZERO).await;
    assert!(hb.get("released").is_none(), "{hb}");
}

#[tokio::test]
async fn a_placement_no_live_node_can_take_is_degraded_with_a_reason_and_tried_again() {
    let app = quick_app(TestDb::sqlite()).await;
    // The target refuses every accept: once `a` is gone, nobody can host the function.
    let t = FakeNode::start(
        &app,
        "t",
        None,
        NodeBehaviour {
            price: 5.0,
            refuse_accept: true,
            ..NodeBehaviour::default()
        },
    )
    .await;
    let a = FakeNode::start(&app, "a", Some("t"), behaviour(3.0)).await;
    t.add_child(&a);
    let _t_alive = keep_alive(&app, &t);
    let a_alive = keep_alive(&app, &a);
    let (status, placed) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{placed}");
    let id = sla_id(&placed);

    a_alive.store(false, Ordering::SeqCst);
    a.stop().await;

    let degraded = until_view(&app, id, "the placement degraded", |v| {
        v["state"] == "degraded"
    })
    .await;
    let reason = degraded["degradedReason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{degraded:#}");
    assert_eq!(degraded["history"][0]["event"], "degraded", "{degraded:#}");
    // Tried again with backoff: a second `degraded` entry comes, not one per liveness tick.
    let again = until_view(&app, id, "a second try", |v| {
        v["history"].as_array().is_some_and(|h| h.len() >= 2)
    })
    .await;
    let tries = again["history"].as_array().map_or(0, Vec::len);
    assert!(
        tries <= 3,
        "tries follow the backoff, not the 200 ms tick: {again:#}"
    );
}
