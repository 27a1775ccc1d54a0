//! Attacks on a fog node's control plane by a rival member of the federation, one test per
//! attack: each asserts that the request is refused and that the node's state did not change.
//! Real nodes on loopback (port 0); the marketplace's key is the test marketplace's.

mod common;

use common::*;
use model::Sla;
use model::auth::{self, RequestTarget};
use model::ids::NodeId;
use model::protocol::{AcceptRequest, AuctionTicket, ReleaseRequest};
use model::time::Timestamp;
use serde_json::{Value, json};
use std::time::Duration;

/// What an attack could change on a node: what its ledger holds and reserves, and the state
/// of every placement it knows.
async fn snapshot(n: &TestNode) -> (String, Vec<(String, String)>) {
    let ledger = format!("{:?}", n.node.book().ledger.reserved(Timestamp::now()));
    let state: Value = reqwest::get(format!("{}/api/state", n.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut placements: Vec<(String, String)> = state["placements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| (p["slaId"].to_string(), p["state"].to_string()))
        .collect();
    placements.sort();
    (ledger, placements)
}

/// A request with a ready-made `Authorization` header.
async fn send(method: reqwest::Method, url: &str, header: String, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .request(method, url)
        .header("authorization", header)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `method path` signed by node `by` with its own key, for node `to`.
fn signed_by_node(by: &TestNode, to: &TestNode, method: &str, path: &str, body: &[u8]) -> String {
    let identity = by.node.identity().unwrap();
    by.node.sign_forward(
        &identity,
        &to.id.to_string(),
        Timestamp::now(),
        &RequestTarget::new(method, path, body),
    )
}

/// Two neighbours, `a` the parent of `b`, and an SLA won by `b` (reserved there).
async fn neighbours_with_a_placement_on_b() -> (TestNode, TestNode, Sla) {
    let a = spawn_node("a", "").await;
    let b = spawn_node("b", "").await;
    link(&a, &[&b]);
    let s = sla(json!({"duration": "10 min"}));
    win(&b, &s).await;
    (a, b, s)
}

#[tokio::test]
async fn a_node_cannot_cancel_a_placement_on_another_node() {
    let (a, b, s) = neighbours_with_a_placement_on_b().await;
    let before = snapshot(&b).await;
    assert_eq!(before.1.len(), 1, "b holds the placement: {before:?}");
    let path = format!("/api/placement/{}", s.id);
    let header = signed_by_node(&a, &b, "DELETE", &path, b"");
    let status = send(
        reqwest::Method::DELETE,
        &format!("{}{path}", b.url),
        header,
        vec![],
    )
    .await;
    assert_eq!(status, 403, "only the marketplace may cancel");
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn a_node_cannot_accept_provision_or_release_on_another_node() {
    let (a, b, s) = neighbours_with_a_placement_on_b().await;
    // A hold of b's, from an auction the marketplace opened.
    let other = sla(json!({"duration": "10 min"}));
    let hold = ask(&b, &other, 1000).await.bids[0].clone();
    let before = snapshot(&b).await;

    let accept = serde_json::to_vec(&AcceptRequest {
        bid_id: hold.id,
        sla: other.clone(),
        price: hold.bid,
    })
    .unwrap();
    let release = serde_json::to_vec(&ReleaseRequest {
        bid_ids: vec![hold.id],
    })
    .unwrap();
    let attempts = [
        ("POST", format!("/api/accept/{}", other.id), accept),
        ("POST", format!("/api/provision/{}", s.id), b"{}".to_vec()),
        ("POST", "/api/release".to_string(), release),
    ];
    for (method, path, body) in attempts {
        let header = signed_by_node(&a, &b, method, &path, &body);
        let status = send(
            reqwest::Method::POST,
            &format!("{}{path}", b.url),
            header,
            body,
        )
        .await;
        assert_eq!(status, 403, "{method} {path}: only the marketplace may");
    }
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn a_forged_marketplace_signature_is_refused_and_holds_nothing() {
    let b = spawn_node("b", "").await;
    let before = snapshot(&b).await;
    let body = serde_json::to_vec(&bid_request(&sla(json!({})), 1000, vec![])).unwrap();
    // Any key but the one the node pinned at enrollment, claiming to be the marketplace.
    let header = member_header(
        &member_key("rival"),
        auth::MARKETPLACE,
        &b.id.to_string(),
        "POST",
        "/api/bid",
        &body,
    );
    let status = send(
        reqwest::Method::POST,
        &format!("{}/api/bid", b.url),
        header,
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn a_replayed_request_is_refused_and_holds_nothing_more() {
    let b = spawn_node("b", "").await;
    let body = serde_json::to_vec(&bid_request(&sla(json!({})), 1000, vec![])).unwrap();
    let header = member_header(
        &market_key(),
        auth::MARKETPLACE,
        &b.id.to_string(),
        "POST",
        "/api/bid",
        &body,
    );
    let url = format!("{}/api/bid", b.url);
    let first = send(reqwest::Method::POST, &url, header.clone(), body.clone()).await;
    assert_eq!(first, 200, "the genuine request is served");
    let after_first = snapshot(&b).await;
    // The same bytes again, within the signature's time window: every replay would hold
    // resources once more until the node is full.
    let replay = send(reqwest::Method::POST, &url, header, body).await;
    assert_eq!(replay, 401, "the nonce was already used");
    assert_eq!(snapshot(&b).await, after_first);
}

#[tokio::test]
async fn a_request_signed_for_one_node_is_refused_by_another() {
    let a = spawn_node("a", "").await;
    let b = spawn_node("b", "").await;
    let before = snapshot(&b).await;
    let body = serde_json::to_vec(&bid_request(&sla(json!({})), 1000, vec![])).unwrap();
    // The marketplace's genuine signature, made for a, re-addressed to b.
    let for_a = member_header(
        &market_key(),
        auth::MARKETPLACE,
        &a.id.to_string(),
        "POST",
        "/api/bid",
        &body,
    );
    let status = send(
        reqwest::Method::POST,
        &format!("{}/api/bid", b.url),
        for_a,
        body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn a_neighbour_cannot_open_an_auction_the_marketplace_did_not() {
    let a = spawn_node("a", "").await;
    let b = spawn_node("b", "").await;
    link(&a, &[&b]);
    let before = snapshot(&b).await;
    // a relays (which neighbours may do) a bid request whose ticket a made up itself.
    let mut req = bid_request(&sla(json!({})), 1000, vec![a.id]);
    req.ticket = AuctionTicket::issue(
        &member_key("a's own ticket"),
        req.auction_id,
        &req.sla,
        Timestamp::now().plus(Duration::from_secs(5)),
    )
    .unwrap();
    let body = serde_json::to_vec(&req).unwrap();
    let header = signed_by_node(&a, &b, "POST", "/api/bid", &body);
    let status = send(
        reqwest::Method::POST,
        &format!("{}/api/bid", b.url),
        header,
        body,
    )
    .await;
    assert_eq!(status, 403, "the ticket is not the marketplace's");

    // Nor reuse a genuine ticket for another SLA (bigger, to grab more resources).
    let genuine = bid_request(&sla(json!({})), 1000, vec![a.id]);
    let mut swapped = genuine.clone();
    swapped.sla = sla(json!({"cpu": "2 cpu"}));
    let body = serde_json::to_vec(&swapped).unwrap();
    let header = signed_by_node(&a, &b, "POST", "/api/bid", &body);
    let status = send(
        reqwest::Method::POST,
        &format!("{}/api/bid", b.url),
        header,
        body,
    )
    .await;
    assert_eq!(status, 403, "the ticket covers another SLA");
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn a_node_that_is_not_a_neighbour_cannot_relay_bid_requests() {
    let a = spawn_node("a", "").await;
    let b = spawn_node("b", "").await;
    let c = spawn_node("c", "").await;
    // c knows a and b as neighbours; b and a are not linked.
    link(&c, &[&a, &b]);
    let before = snapshot(&b).await;
    let req = bid_request(&sla(json!({})), 1000, vec![NodeId::new()]);
    let body = serde_json::to_vec(&req).unwrap();
    let header = signed_by_node(&a, &b, "POST", "/api/bid", &body);
    let status = send(
        reqwest::Method::POST,
        &format!("{}/api/bid", b.url),
        header,
        body,
    )
    .await;
    assert!(
        status == 401 || status == 403,
        "a stranger to b relays: {status}"
    );
    assert_eq!(snapshot(&b).await, before);
}
