//! In-process tests of real fog nodes on loopback (port 0). The marketplace is not involved:
//! identities and neighbours are installed by hand, and requests are signed like the
//! marketplace signs them.

mod common;

use common::*;
use fog_node::{Application, Config};
use model::Sla;
use model::auth;
use model::ids::{AuctionId, BidId, NodeId};
use model::protocol::{AcceptRequest, BidResponse, RefusalReason, ReleaseRequest};
use model::time::Timestamp;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn names(r: &BidResponse) -> Vec<String> {
    let mut v: Vec<String> = r.bids.iter().map(|b| b.node_name.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_sla_is_relayed_only_to_neighbours_within_the_latency_budget() {
    // a -(10 ms)- b -(30 ms)- c ; budget 25 ms: a and b bid, c is never asked.
    let a = spawn_node("a", "[links]\n\"b\" = \"10 ms\"").await;
    let b = spawn_node("b", "[links]\n\"a\" = \"10 ms\"\n\"c\" = \"30 ms\"").await;
    let c = spawn_node("c", "[links]\n\"b\" = \"30 ms\"").await;
    link(&a, &[&b]);
    link(&b, &[&c]);
    let answer = ask(&a, &sla(json!({"latencyMax": "25 ms"})), 2000).await;
    assert_eq!(names(&answer), vec!["a", "b"]);
    let b_bid = answer.bids.iter().find(|x| x.node_name == "b").unwrap();
    assert!(
        b_bid.latency.median >= 10.0 && b_bid.latency.median < 12.0,
        "{:?}",
        b_bid.latency
    );
    // With a larger budget the whole line bids.
    let answer = ask(&a, &sla(json!({"latencyMax": "60 ms"})), 2000).await;
    assert_eq!(names(&answer), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn a_node_that_cannot_fit_all_replicas_refuses_and_says_why() {
    let a = spawn_node("a", "").await;
    // 3 replicas x 1 cpu > 2 cpu of capacity: GIRAFF ignored replicas in its accounting.
    let answer = ask(&a, &sla(json!({"cpu": "1 cpu", "replicas": 3})), 1000).await;
    assert!(answer.bids.is_empty());
    assert!(
        matches!(
            answer.refusals[0].reason,
            RefusalReason::OutOfCapacity { .. }
        ),
        "{:?}",
        answer.refusals
    );
}

#[tokio::test]
async fn concurrent_auctions_never_overcommit_a_node() {
    let a = spawn_node("a", "").await;
    // 2 cpu of capacity, 500 m each: at most 4 holds at once, whatever the interleaving.
    let s = sla(json!({}));
    let answers = futures::future::join_all((0..20).map(|_| ask(&a, &s, 2000))).await;
    let bids: usize = answers.iter().map(|r| r.bids.len()).sum();
    assert_eq!(bids, 4, "exactly the capacity is offered");
    let state: Value = reqwest::get(format!("{}/api/state", a.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["holds"], 4);
    assert_eq!(state["used"]["cpu"], "2 cpu");
}

#[tokio::test]
async fn a_slow_subtree_cannot_block_the_auction() {
    let a = spawn_node("a", "").await;
    let slow = spawn_node("slow", "[chaos]\nbid_delay = \"5 s\"").await;
    link(&a, &[&slow]);
    let started = Instant::now();
    let answer = ask(&a, &sla(json!({})), 400).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    assert_eq!(names(&answer), vec!["a"]);
    assert!(answer.refusals.iter().any(|r| r.node_name == "slow"
        && matches!(r.reason, RefusalReason::Unreachable { .. })));
}

#[tokio::test]
async fn accepting_a_bid_reserves_until_the_sla_ends_and_then_frees_the_node() {
    let a = spawn_node("a", "").await;
    let s = sla(json!({"duration": "1 s"}));
    let answer = ask(&a, &s, 1000).await;
    let bid = &answer.bids[0];
    let accept = AcceptRequest {
        bid_id: bid.id,
        sla: s.clone(),
        price: bid.bid,
    };
    let resp = signed_post(&a.url, &format!("/api/accept/{}", s.id), &accept).await;
    assert_eq!(resp.status(), 200);
    // A second accept of the same bid is idempotent.
    let again = signed_post(&a.url, &format!("/api/accept/{}", s.id), &accept).await;
    assert_eq!(again.status(), 200);
    let now = Timestamp::now();
    assert_eq!(a.node.book().ledger.reserved(now).cpu, s.cpu);
    // Drive the lifetime step with a chosen time instead of waiting.
    let ended = a.node.tick(now.plus(Duration::from_millis(1001)));
    assert_eq!(
        ended.iter().map(|p| p.sla_id).collect::<Vec<_>>(),
        vec![s.id]
    );
    assert_eq!(
        a.node
            .book()
            .ledger
            .used(now.plus(Duration::from_millis(1001)))
            .cpu,
        model::Cpu::ZERO
    );
}

#[tokio::test]
async fn released_holds_free_capacity_but_never_a_reservation() {
    let a = spawn_node("a", "").await;
    let s = sla(json!({"cpu": "1 cpu"}));
    let first = ask(&a, &s, 1000).await.bids[0].clone();
    let second = ask(&a, &s, 1000).await.bids[0].clone();
    let accept = AcceptRequest {
        bid_id: first.id,
        sla: s.clone(),
        price: first.bid,
    };
    assert_eq!(
        signed_post(&a.url, &format!("/api/accept/{}", s.id), &accept)
            .await
            .status(),
        200
    );
    let release = ReleaseRequest {
        bid_ids: vec![first.id, second.id, BidId::new()],
    };
    let resp: Value = signed_post(&a.url, "/api/release", &release)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["released"], 1,
        "only the hold of the losing bid is released"
    );
    let now = Timestamp::now();
    assert_eq!(
        a.node.book().ledger.used(now).cpu,
        model::Cpu::from_cores(1)
    );
}

#[tokio::test]
async fn a_node_with_refuse_accept_answers_conflict() {
    let a = spawn_node("a", "[chaos]\nrefuse_accept = true").await;
    let s = sla(json!({}));
    let bid = ask(&a, &s, 1000).await.bids[0].clone();
    let accept = AcceptRequest {
        bid_id: bid.id,
        sla: s.clone(),
        price: bid.bid,
    };
    let resp = signed_post(&a.url, &format!("/api/accept/{}", s.id), &accept).await;
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
}

#[tokio::test]
async fn unsigned_forged_and_malformed_requests_are_refused() {
    let a = spawn_node("a", "").await;
    let client = reqwest::Client::new();
    let unsigned = client
        .post(format!("{}/api/bid", a.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let bytes = b"{}".to_vec();
    let forged = member_header(
        &member_key("not the marketplace"),
        auth::MARKETPLACE,
        &a.id.to_string(),
        "POST",
        "/api/bid",
        &bytes,
    );
    let resp = client
        .post(format!("{}/api/bid", a.url))
        .header("authorization", forged)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Signed but invalid SLA: 400 naming the field.
    let resp = signed_post(
        &a.url,
        "/api/bid",
        &json!({"sla": {"memory": "lots"}, "auctionId": AuctionId::new(), "timeoutMs": 100}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "sla.memory");
    // Oversized body.
    let big = vec![b'x'; 300 * 1024];
    let header = member_header(
        &market_key(),
        auth::MARKETPLACE,
        &a.id.to_string(),
        "POST",
        "/api/bid",
        &big,
    );
    let resp = client
        .post(format!("{}/api/bid", a.url))
        .header("authorization", header)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn edge_ward_passes_a_request_it_cannot_serve_to_its_parent_only() {
    let parent = spawn_node("parent", "").await;
    let full = spawn_node("full", "strategy = \"edge_ward\"").await;
    let sibling = spawn_node("sibling", "").await;
    link(&parent, &[&full, &sibling]);
    // `full` keeps what it can host itself and asks nobody.
    let s = sla(json!({"cpu": "2 cpu"}));
    let first = ask(&full, &s, 1000).await;
    assert_eq!(names(&first), vec!["full"]);
    // Now `full` is held full: the request goes up to the parent only, which bids and relays
    // to its other child. The sibling is never asked by `full` directly (it is no neighbour).
    let second = ask(&full, &s, 1000).await;
    assert_eq!(names(&second), vec!["parent", "sibling"]);
}

#[tokio::test]
async fn a_restarted_node_keeps_its_id_and_its_reservations() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("state_dir = \"{}\"", dir.path().display());
    let a = spawn_node("a", &extra).await;
    let s = sla(json!({"cpu": "1 cpu", "duration": "10 min"}));
    let bid = ask(&a, &s, 1000).await.bids[0].clone();
    let accept = AcceptRequest {
        bid_id: bid.id,
        sla: s.clone(),
        price: bid.bid,
    };
    assert_eq!(
        signed_post(&a.url, &format!("/api/accept/{}", s.id), &accept)
            .await
            .status(),
        200
    );
    let a_id = a.id;
    drop(a);
    // A new process-equivalent: build from the same config and state dir.
    let text = format!(
        "name = \"a\"\nowner = \"o\"\nmarketplace_url = \"{}\"\nenrollment_secret = \"x\"\n{extra}\ncapacity = {{ cpu = \"2 cpu\", memory = \"2 GiB\" }}\n",
        dead_url()
    );
    let app = Application::build(Config::from_toml(&text).unwrap()).unwrap();
    assert_eq!(app.saved_node_id(), Some(a_id));
    let node = app.node();
    let now = Timestamp::now();
    assert_eq!(
        node.book().ledger.reserved(now).cpu,
        model::Cpu::from_cores(1)
    );
    assert!(node.book().placements.contains_key(&s.id));
}

/// Accepts one placement of `cpu` on `n` directly, to load it.
async fn occupy(n: &TestNode, cpu: &str) {
    let s = sla(json!({"cpu": cpu, "duration": "10 min"}));
    let answer = ask_alone(n, &s).await;
    let bid = answer
        .bids
        .iter()
        .find(|b| b.node_id == n.id)
        .expect("node bids for itself");
    let accept = AcceptRequest {
        bid_id: bid.id,
        sla: s.clone(),
        price: bid.bid,
    };
    assert_eq!(
        signed_post(&n.url, &format!("/api/accept/{}", s.id), &accept)
            .await
            .status(),
        200
    );
}

/// Asks a node as if it were the last on the path, so it does not relay.
async fn ask_alone(n: &TestNode, sla: &Sla) -> BidResponse {
    let everyone: Vec<NodeId> = n.node.neighbours().iter().map(|x| x.info.node_id).collect();
    let req = bid_request(sla, 1000, everyone);
    signed_post(&n.url, "/api/bid", &req)
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn edge_first_asks_the_nearest_neighbour_first_and_stops_at_the_first_bid() {
    let p = spawn_node("p", "[links]\n\"e\" = \"20 ms\"").await;
    let e = spawn_node_with("e", "100 m", "strategy = \"edge_first\"\n[links]\n\"p\" = \"20 ms\"\n\"near\" = \"2 ms\"\n\"mid\" = \"8 ms\"").await;
    let near = spawn_node("near", "[links]\n\"e\" = \"2 ms\"").await;
    let mid = spawn_node("mid", "[links]\n\"e\" = \"8 ms\"").await;
    link(&p, &[&e]);
    link(&e, &[&near, &mid]);
    let answer = ask(&e, &sla(json!({})), 2000).await;
    assert_eq!(names(&answer), vec!["near"]);
    assert!(
        answer
            .refusals
            .iter()
            .any(|r| r.node_name == "e" && matches!(r.reason, RefusalReason::OutOfCapacity { .. }))
    );
}

#[tokio::test]
async fn edge_furthest_asks_the_furthest_neighbour_and_bids_itself_only_if_nobody_answers() {
    let p = spawn_node("p", "[links]\n\"e\" = \"20 ms\"").await;
    let e = spawn_node(
        "e",
        "strategy = \"edge_furthest\"\n[links]\n\"p\" = \"20 ms\"\n\"near\" = \"2 ms\"",
    )
    .await;
    let near = spawn_node("near", "[links]\n\"e\" = \"2 ms\"").await;
    link(&p, &[&e]);
    link(&e, &[&near]);
    let answer = ask(&e, &sla(json!({})), 2000).await;
    assert_eq!(names(&answer), vec!["p"]);
    // With a budget the parent is out of, nobody else answers and e bids itself.
    let answer = ask(&e, &sla(json!({"latencyMax": "10 ms"})), 2000).await;
    assert_eq!(names(&answer), vec!["near"]);
    let answer = ask(&e, &sla(json!({"latencyMax": "1 ms"})), 2000).await;
    assert_eq!(names(&answer), vec!["e"]);
}

#[tokio::test]
async fn cloud_only_sends_the_request_up_to_a_cloud_node() {
    let cloud = spawn_node("cloud", "strategy = \"cloud_only\"\ntags = [\"cloud\"]").await;
    let e = spawn_node("e", "strategy = \"cloud_only\"").await;
    let c = spawn_node("c", "strategy = \"cloud_only\"").await;
    link(&cloud, &[&e]);
    link(&e, &[&c]);
    let answer = ask(&e, &sla(json!({})), 2000).await;
    assert_eq!(names(&answer), vec!["cloud"]);
    assert!(
        answer
            .refusals
            .iter()
            .any(|r| r.node_name == "e" && matches!(r.reason, RefusalReason::Declined { .. }))
    );
}

#[tokio::test]
async fn maxcpu_keeps_only_the_most_utilised_bidder() {
    let r = spawn_node("r", "strategy = \"maxcpu\"").await;
    let a = spawn_node("a", "strategy = \"maxcpu\"").await;
    let b = spawn_node("b", "strategy = \"maxcpu\"").await;
    link(&r, &[&a, &b]);
    occupy(&b, "1 cpu").await;
    let answer = ask(&r, &sla(json!({"cpu": "100 m"})), 2000).await;
    assert_eq!(names(&answer), vec!["b"]);
    // r frees its own dropped hold and reports a's to the marketplace, the only member that
    // may release a hold on a; here the test plays the marketplace.
    let dropped: Vec<_> = answer.dropped.iter().map(|d| d.node_id).collect();
    assert_eq!(dropped, vec![a.id], "{:?}", answer.dropped);
    let release = ReleaseRequest {
        bid_ids: answer.dropped.iter().map(|d| d.bid_id).collect(),
    };
    assert_eq!(
        signed_post(&a.url, "/api/release", &release).await.status(),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.node.state_view(Timestamp::now()).holds > 0
        || r.node.state_view(Timestamp::now()).holds > 0
    {
        assert!(
            Instant::now() < deadline,
            "dropped holds were never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mincpurandom_asks_two_random_neighbours_and_keeps_the_least_utilised() {
    let r = spawn_node("r", "strategy = \"mincpurandom\"").await;
    let kids = [
        spawn_node("k1", "").await,
        spawn_node("k2", "").await,
        spawn_node("k3", "").await,
    ];
    link(&r, &[&kids[0], &kids[1], &kids[2]]);
    occupy(&r, "1500 m").await;
    for _ in 0..5 {
        let answer = ask(&r, &sla(json!({"cpu": "100 m"})), 2000).await;
        assert_eq!(answer.bids.len(), 1, "{answer:?}");
        assert_ne!(answer.bids[0].node_name, "r", "the loaded root never wins");
    }
}
