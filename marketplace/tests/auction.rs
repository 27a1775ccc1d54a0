//! Auctions end to end in one process: the marketplace against fake fog nodes that implement
//! the node contract (signatures, holds, accept/refuse, release, provision, cancel).

mod common;

use common::*;
use model::protocol::Resources;
use model::{Bytes, Cpu, Price, SlaId, Timestamp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn price(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn behaviour(price: f64) -> NodeBehaviour {
    NodeBehaviour {
        price,
        ..NodeBehaviour::default()
    }
}

/// Target `t` (price 5) relaying to `a` (3) and `b` (4).
async fn star(app: &TestApp, a: NodeBehaviour, b: NodeBehaviour) -> (FakeNode, FakeNode, FakeNode) {
    let t = FakeNode::start(app, "t", None, behaviour(5.0)).await;
    let a = FakeNode::start(app, "a", Some("t"), a).await;
    let b = FakeNode::start(app, "b", Some("t"), b).await;
    t.add_child(&a);
    t.add_child(&b);
    (t, a, b)
}

fn sla_id(resp: &Value) -> SlaId {
    resp["sla"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sla.id")
}

#[tokio::test]
async fn vickrey_the_lowest_bid_wins_and_is_paid_the_second_lowest() {
    vickrey_round_trip(spawn_app().await).await;
}

/// The same auction with the marketplace on PostgreSQL (service queries, not only the
/// repository suite, run on both engines).
#[tokio::test]
async fn vickrey_on_postgres() {
    let db = TestDb::postgres().await;
    let settings = test_settings(&db);
    vickrey_round_trip(spawn_app_with(db, settings).await).await;
}

async fn vickrey_round_trip(app: TestApp) {
    let (t, a, b) = star(&app, behaviour(3.0), behaviour(4.0)).await;
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["chosen"]["bid"]["nodeId"], a.id.to_string());
    assert_eq!(price(&resp["chosen"]["bid"]["bid"]), 3.0);
    assert_eq!(price(&resp["chosen"]["price"]), 4.0);
    assert!(resp["chosen"]["bid"]["id"].is_string());
    assert_eq!(resp["chosen"]["nodeName"], "a");
    assert_eq!(resp["chosen"]["ip"], "127.0.0.1");
    assert_eq!(resp["proposals"]["bids"].as_array().unwrap().len(), 3);
    assert_eq!(resp["winners"].as_array().unwrap().len(), 1);
    assert_eq!(resp["state"], "reserved");
    let id = sla_id(&resp);
    assert!(a.has_placement(id));
    assert_eq!(a.accepted_prices(), vec![Price::new(4.0).unwrap()]);

    // Losers are released in the background.
    eventually("losers released", || {
        t.released().len() == 1 && b.released().len() == 1
    })
    .await;
    eventually("holds freed", || t.holds() == 0 && b.holds() == 0).await;
    assert!(a.released().is_empty());
    for n in [&t, &a, &b] {
        assert_eq!(n.bad_signatures(), 0, "{} saw a bad signature", n.name);
    }

    let (status, auction) = app
        .get(&format!(
            "/api/auctions/{}",
            resp["auctionId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{auction}");
    assert_eq!(auction["rule"], "vickrey");
    assert_eq!(auction["outcome"], "awarded");
    assert_eq!(auction["bids"].as_array().unwrap().len(), 3);
    assert_eq!(auction["winners"][0]["nodeId"], a.id.to_string());
    assert_eq!(price(&auction["winners"][0]["price"]), 4.0);
    assert!(auction["durationMs"].as_u64().is_some());
    assert_eq!(auction["slaId"], id.to_string());

    let (status, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["chosen"]["bid"]["nodeId"], a.id.to_string());
    let (_, all) = app.get("/api/functions").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_target_can_be_named_by_id() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(2.0)).await;
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": t.id.to_string()}))
        .await;
    assert_eq!(status, 200, "{resp}");
    // Alone: paid its own bid.
    assert_eq!(price(&resp["chosen"]["price"]), 2.0);
}

#[tokio::test]
async fn k_nodes_the_k_cheapest_win_and_are_paid_the_next_bid() {
    let app = spawn_app().await;
    let (_t, a, b) = star(&app, behaviour(3.0), behaviour(4.0)).await;
    let mut s = sla();
    s["nodes"] = json!(2);
    s["replicas"] = json!(2);
    let (status, resp) = app
        .put_function(&json!({"sla": s, "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let winners = resp["winners"].as_array().unwrap();
    assert_eq!(winners.len(), 2);
    let mut ids: Vec<&str> = winners
        .iter()
        .map(|w| w["bid"]["nodeId"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![a.id.to_string(), b.id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    for w in winners {
        assert_eq!(price(&w["price"]), 5.0, "(k+1)-th lowest bid: {w}");
    }
    assert_eq!(resp["chosen"]["bid"]["nodeId"], a.id.to_string());
}

#[tokio::test]
async fn max_price_excludes_dear_bids_and_caps_the_price() {
    let app = spawn_app().await;
    let (_t, a, _b) = star(&app, behaviour(3.0), behaviour(4.0)).await;
    let mut s = sla();
    s["maxPrice"] = json!(3.5);
    let (status, resp) = app
        .put_function(&json!({"sla": s, "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["chosen"]["bid"]["nodeId"], a.id.to_string());
    assert_eq!(price(&resp["chosen"]["price"]), 3.5);
}

#[tokio::test]
async fn when_every_bid_is_over_max_price_the_refusals_say_so() {
    let app = spawn_app().await;
    let (t, a, b) = star(&app, behaviour(3.0), behaviour(4.0)).await;
    let mut s = sla();
    s["maxPrice"] = json!(1);
    let (status, resp) = app
        .put_function(&json!({"sla": s, "targetNode": "t"}))
        .await;
    assert_eq!(status, 422, "{resp}");
    assert_eq!(resp["error"], "no_feasible_node");
    let refusals = resp["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 3, "{resp}");
    assert!(
        refusals
            .iter()
            .all(|r| r["reason"]["kind"] == "overMaxPrice"),
        "{resp}"
    );
    // Nobody keeps a hold.
    eventually("all holds released", || {
        t.holds() + a.holds() + b.holds() == 0
    })
    .await;
}

#[tokio::test]
async fn a_winner_refusing_the_accept_falls_back_to_the_next_bid() {
    let app = spawn_app().await;
    let refuses = NodeBehaviour {
        refuse_accept: true,
        ..behaviour(3.0)
    };
    let (t, a, b) = star(&app, refuses, behaviour(4.0)).await;
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["chosen"]["bid"]["nodeId"], b.id.to_string());
    // Re-run without the refuser: b is the lowest, t the clearing bid.
    assert_eq!(price(&resp["chosen"]["price"]), 5.0);
    assert!(b.has_placement(sla_id(&resp)));
    assert!(a.calls().iter().any(|c| c.starts_with("POST /api/accept/")));
    eventually("refuser and loser released", || {
        a.released().len() == 1 && t.released().len() == 1
    })
    .await;

    let (_, auction) = app
        .get(&format!(
            "/api/auctions/{}",
            resp["auctionId"].as_str().unwrap()
        ))
        .await;
    let bids = auction["bids"].as_array().unwrap();
    let a_bid = bids
        .iter()
        .find(|x| x["nodeId"] == a.id.to_string())
        .unwrap();
    assert_eq!(a_bid["refusedAccept"], true);
    assert_eq!(a_bid["won"], false);
    assert!(
        auction["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["nodeId"] == a.id.to_string()),
        "{auction}"
    );
}

#[tokio::test]
async fn a_silent_target_cannot_block_the_api_past_the_deadline() {
    let app = spawn_app().await;
    let _t = FakeNode::start(
        &app,
        "t",
        None,
        NodeBehaviour {
            silent: true,
            ..NodeBehaviour::default()
        },
    )
    .await;
    let started = Instant::now();
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 422, "{resp}");
    let deadline = app.settings.auction_timeout + app.settings.call_margin();
    assert!(
        took >= app.settings.auction_timeout,
        "gave up early: {took:?}"
    );
    assert!(
        took < deadline + Duration::from_millis(500),
        "took {took:?}"
    );
    let refusals = resp["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0]["nodeName"], "t");
    assert_eq!(refusals[0]["reason"]["kind"], "unreachable");
}

#[tokio::test]
async fn no_feasible_node_is_a_422_carrying_every_refusal() {
    let app = spawn_app().await;
    let tiny = NodeBehaviour {
        free: Resources::new(Cpu::from_millis(100), Bytes::from_mib(64)),
        ..behaviour(1.0)
    };
    let t = FakeNode::start(&app, "t", None, tiny.clone()).await;
    let a = FakeNode::start(&app, "a", Some("t"), tiny).await;
    t.add_child(&a);
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 422, "{resp}");
    assert_eq!(resp["error"], "no_feasible_node");
    assert!(resp["message"].as_str().is_some_and(|m| !m.is_empty()));
    let refusals = resp["refusals"].as_array().unwrap();
    let mut names: Vec<&str> = refusals
        .iter()
        .map(|r| r["nodeName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["a", "t"]);
    assert!(
        refusals
            .iter()
            .all(|r| r["reason"]["kind"] == "outOfCapacity"),
        "{resp}"
    );
    // The failed attempt is on record.
    let (_, all) = app.get("/api/functions").await;
    assert_eq!(all[0]["state"], "failed");
}

#[tokio::test]
async fn not_enough_nodes_for_k_places_nothing() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let mut s = sla();
    s["nodes"] = json!(2);
    let (status, resp) = app
        .put_function(&json!({"sla": s, "targetNode": "t"}))
        .await;
    assert_eq!(status, 422, "{resp}");
    assert!(!t.calls().iter().any(|c| c.contains("/api/accept/")));
    eventually("hold released", || t.holds() == 0).await;
}

#[tokio::test]
async fn cancel_calls_the_hosting_node_and_frees_the_placement() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let id = sla_id(&resp);
    assert!(t.has_placement(id));
    let (status, resp) = app.delete(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["state"], "cancelled");
    assert!(t.calls().contains(&format!("DELETE /api/placement/{id}")));
    assert!(!t.has_placement(id));
    let (_, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(got["state"], "cancelled");
    assert_eq!(got["winners"][0]["state"], "cancelled");
}

#[tokio::test]
async fn provisioning_in_one_call_or_in_two_steps() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;

    let (status, resp) = app
        .put_function_raw(
            "?provision=true",
            json!({"sla": sla(), "targetNode": "t"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["state"], "live");
    let one = sla_id(&resp);
    assert!(t.calls().contains(&format!("POST /api/provision/{one}")));

    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["state"], "reserved");
    let two = sla_id(&resp);
    let (status, resp) = app.post(&format!("/api/function/{two}")).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["state"], "live");
    assert!(t.calls().contains(&format!("POST /api/provision/{two}")));

    // A cancelled function cannot be provisioned.
    app.delete(&format!("/api/function/{two}")).await;
    let (status, resp) = app.post(&format!("/api/function/{two}")).await;
    assert_eq!(
        (status, resp["error"].as_str()),
        (409, Some("invalid_state")),
        "{resp}"
    );
}

#[tokio::test]
async fn placements_finish_when_their_lifetime_ends() {
    let app = spawn_app().await;
    let _t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let before = Timestamp::now();
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let id = sla_id(&resp);
    // duration is 30 s.
    assert_eq!(
        app.market
            .finish_due_placements(before.plus(Duration::from_secs(29)))
            .await
            .unwrap(),
        0
    );
    let (_, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(got["state"], "reserved");
    let after = Timestamp::now().plus(Duration::from_secs(31));
    assert_eq!(app.market.finish_due_placements(after).await.unwrap(), 1);
    let (_, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(got["state"], "finished");
    assert_eq!(app.market.finish_due_placements(after).await.unwrap(), 0);
}

#[tokio::test]
async fn a_restarted_marketplace_still_knows_its_nodes_and_placements() {
    let db = TestDb::sqlite();
    let settings = test_settings(&db);
    let app = spawn_app_with(db, settings.clone()).await;
    let t = FakeNode::start(&app, "t", None, behaviour(1.0)).await;
    let market_key = app.market.public_key();
    let (status, resp) = app
        .put_function(&json!({"sla": sla(), "targetNode": "t"}))
        .await;
    assert_eq!(status, 200, "{resp}");
    let id = sla_id(&resp);
    let db = app.stop().await;

    let app = spawn_app_with(db, settings).await;
    let (_, fog) = app.get("/api/fog").await;
    assert_eq!(fog[0]["name"], "t");
    assert_eq!(fog[0]["alive"], false, "not alive until it heartbeats");
    let (status, got) = app.get(&format!("/api/function/{id}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["state"], "reserved");
    assert_eq!(got["chosen"]["bid"]["nodeId"], t.id.to_string());
    // The same marketplace key (persisted), and the node's pinned key still admits it.
    let again = register(&app, &register_request("t", &t.url, None)).await;
    assert_eq!(again.marketplace_key, market_key);
    assert_eq!(again.node_id, t.id);
}
