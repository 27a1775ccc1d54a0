//! Attacks on the marketplace, one test per attack: by a client (a program smuggled into an
//! SLA), and by a rival member of the federation (a hijacked name, a heartbeat in another
//! node's name). Each asserts that the request is refused and that nothing changed.

mod common;

use common::*;
use model::protocol::Resources;
use serde_json::{Value, json};

/// What a client or node could change: the nodes the marketplace knows (id, owner, url,
/// alive) and the placements it lists.
async fn snapshot(app: &TestApp) -> (Value, Value) {
    let (_, fog) = app.get("/api/fog").await;
    let nodes: Vec<Value> = fog
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|n| {
            json!([
                n["id"],
                n["name"],
                n["owner"],
                n["url"],
                n["capacity"],
                n["reserved"]
            ])
        })
        .collect();
    let (_, functions) = app.get("/api/functions").await;
    (Value::Array(nodes), functions)
}

#[tokio::test]
async fn a_shell_command_as_env_process_is_refused_naming_the_field_and_runs_nothing() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, NodeBehaviour::default()).await;
    let before = snapshot(&app).await;
    let mut s = sla();
    s["envProcess"] = json!("sh -c 'id > /tmp/x'");
    let (status, body) = app
        .put_function(&json!({"sla": s, "targetNode": "t"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "sla.envProcess", "{body}");
    assert_eq!(snapshot(&app).await, before);
    assert!(
        t.calls().is_empty(),
        "no auction reached the node: {:?}",
        t.calls()
    );
}

#[tokio::test]
async fn an_ld_preload_variable_is_refused_naming_the_variable() {
    let app = spawn_app().await;
    let t = FakeNode::start(&app, "t", None, NodeBehaviour::default()).await;
    let before = snapshot(&app).await;
    for (name, value) in [("LD_PRELOAD", "/tmp/evil.so"), ("PATH", "/tmp")] {
        let mut s = sla();
        s["envVars"] = json!({ name: value });
        let (status, body) = app
            .put_function(&json!({"sla": s, "targetNode": "t"}))
            .await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["field"], format!("sla.envVars.{name}"), "{body}");
    }
    assert_eq!(snapshot(&app).await, before);
    assert!(t.calls().is_empty(), "{:?}", t.calls());
}

#[tokio::test]
async fn a_rival_cannot_take_over_an_enrolled_name_with_another_key() {
    let app = spawn_app().await;
    let victim = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9001", None),
    )
    .await;
    let before = snapshot(&app).await;
    // The rival holds the enrollment secret (every member does) but not edge-1's key.
    let mut hijack = register_request("edge-1", "http://127.0.0.1:6666", None);
    hijack.public_key = model::auth::SecretKey::from_seed([66; 32]).public();
    hijack.owner = "rival".into();
    hijack.node_id = Some(victim.node_id);
    let body = serde_json::to_vec(&hijack).unwrap();
    let (status, answer) = app
        .post_enrolment("/api/register", &body, SECRET.as_bytes(), "edge-1")
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(snapshot(&app).await, before, "owner, url and key unchanged");
    // The victim still heartbeats with its own key.
    let (status, _) = heartbeat(&app, victim.node_id, &node_key("edge-1"), Resources::ZERO).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_node_cannot_heartbeat_or_move_another_node() {
    let app = spawn_app().await;
    let victim = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9001", None),
    )
    .await;
    let rival = register(
        &app,
        &register_request("edge-2", "http://127.0.0.1:9002", None),
    )
    .await;
    let before = snapshot(&app).await;
    // Signed correctly by the rival's own key, for the marketplace, but in the victim's name:
    // a new URL and a full reservation would steer traffic away and stop its auctions.
    let body = serde_json::to_vec(&json!({
        "reserved": {"cpu": "4 cpu", "memory": "8 GiB"},
        "url": "http://127.0.0.1:6666",
    }))
    .unwrap();
    let (status, answer) = app
        .post_signed(
            &format!("/api/heartbeat/{}", victim.node_id),
            &body,
            &node_key("edge-2"),
            &rival.node_id.to_string(),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        snapshot(&app).await,
        before,
        "url and reservation unchanged"
    );
}
