//! In-process API tests: input validation, authentication, the registry.

mod common;

use common::*;
use model::protocol::{Relation, Resources};
use model::{Bytes, Cpu, NodeId, Timestamp};
use serde_json::{Value, json};

#[tokio::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let (status, _) = app.get("/api/health").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn each_bad_sla_field_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases: [(&str, Value); 9] = [
        ("memory", json!("lots")),
        ("cpu", json!("0 m")),
        ("latencyMax", json!([1])),
        ("duration", json!("0 s")),
        ("replicas", json!(0)),
        ("functionImage", json!("")),
        ("functionLiveName", json!("Not_A_Label")),
        ("maxPrice", json!(-1)),
        ("nodes", json!(1000)),
    ];
    for (field, value) in cases {
        let mut s = sla();
        s[field] = value.clone();
        let (status, body) = app
            .put_function(&json!({"sla": s, "targetNode": "anything"}))
            .await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert_eq!(body["error"], "invalid_sla", "{body}");
        assert_eq!(body["field"], format!("sla.{field}"), "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{body}"
        );
    }
    let mut s = sla();
    s.as_object_mut().unwrap().remove("memory");
    let (status, body) = app
        .put_function(&json!({"sla": s, "targetNode": "x"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("sla.memory")),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_shapes_are_400s() {
    let app = spawn_app().await;
    let (status, body) = app.put_function_raw("", b"{not json".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_json");
    assert_eq!(body["field"], "body");

    let (status, body) = app.put_function(&json!([1, 2])).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("body")),
        "{body}"
    );

    let (status, body) = app
        .put_function(&json!({"sla": "a string", "targetNode": "x"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("sla")),
        "{body}"
    );

    let (status, body) = app.put_function(&json!({"targetNode": "x"})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("sla")),
        "{body}"
    );

    let (status, body) = app
        .put_function(&json!({"sla": sla(), "targetNode": "x", "provision": "maybe"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("provision")),
        "{body}"
    );

    let (status, body) = app
        .put_function_raw(
            "?provision=perhaps",
            json!({"sla": sla(), "targetNode": "x"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("provision")),
        "{body}"
    );
}

#[tokio::test]
async fn a_missing_or_empty_target_node_is_a_400_naming_it() {
    let app = spawn_app().await;
    for body in [
        json!({"sla": sla()}),
        json!({"sla": sla(), "targetNode": ""}),
        json!({"sla": sla(), "targetNode": 7}),
    ] {
        let (status, resp) = app.put_function(&body).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert_eq!(resp["error"], "invalid_request");
        assert_eq!(resp["field"], "targetNode");
    }
}

#[tokio::test]
async fn an_unknown_target_node_is_a_404() {
    let app = spawn_app().await;
    for target in ["nobody".to_string(), NodeId::new().to_string()] {
        let (status, body) = app
            .put_function(&json!({"sla": sla(), "targetNode": target}))
            .await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "unknown_target_node");
    }
}

#[tokio::test]
async fn a_dead_target_node_is_a_409() {
    let app = spawn_app().await;
    register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9", None),
    )
    .await;
    let later = Timestamp::now().plus(std::time::Duration::from_secs(3600));
    assert_eq!(app.market.mark_silent_nodes_dead(later).await.unwrap(), 1);
    let (status, body) = app
        .put_function(&json!({"sla": sla(), "targetNode": "edge-1"}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "target_node_dead");
}

#[tokio::test]
async fn an_oversized_body_is_a_413_json_error() {
    let app = spawn_app().await;
    let big = vec![b' '; 300 * 1024];
    let (status, body) = app.put_function_raw("", big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large");
    let (status, body) = app
        .post_enrolment("/api/register", &big, SECRET.as_bytes(), "x")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
}

#[tokio::test]
async fn register_with_a_wrong_secret_is_a_401() {
    let app = spawn_app().await;
    let req = register_request("edge-1", "http://127.0.0.1:9", None);
    let body = serde_json::to_vec(&req).unwrap();
    let (status, resp) = app
        .post_enrolment("/api/register", &body, b"wrong-secret", "edge-1")
        .await;
    assert_eq!(status, 401, "{resp}");
    assert_eq!(resp["error"], "unauthorized");

    // Unsigned.
    let r = app
        .http
        .post(format!("{}/api/register", app.address))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Right secret, but signed for another name.
    let (status, _) = app
        .post_enrolment("/api/register", &body, SECRET.as_bytes(), "someone-else")
        .await;
    assert_eq!(status, 401);
    let (_, fog) = app.get("/api/fog").await;
    assert_eq!(fog, json!([]), "nobody got in");
}

#[tokio::test]
async fn invalid_registrations_name_the_field() {
    let app = spawn_app().await;
    let mut req = register_request("edge-1", "not a url", None);
    let body = serde_json::to_vec(&req).unwrap();
    let (status, resp) = app
        .post_enrolment("/api/register", &body, SECRET.as_bytes(), "edge-1")
        .await;
    assert_eq!(
        (status, resp["field"].as_str()),
        (400, Some("url")),
        "{resp}"
    );

    req.url = "http://127.0.0.1:9".into();
    req.parent = Some("edge-1".into());
    let body = serde_json::to_vec(&req).unwrap();
    let (status, resp) = app
        .post_enrolment("/api/register", &body, SECRET.as_bytes(), "edge-1")
        .await;
    assert_eq!(
        (status, resp["field"].as_str()),
        (400, Some("parent")),
        "{resp}"
    );

    let (status, resp) = app
        .post_enrolment("/api/register", b"{}", SECRET.as_bytes(), "edge-1")
        .await;
    assert_eq!(
        (status, resp["field"].as_str()),
        (400, Some("body")),
        "{resp}"
    );
}

#[tokio::test]
async fn a_registered_node_is_listed_and_keeps_its_id_when_registering_again() {
    let app = spawn_app().await;
    let first = register(
        &app,
        &register_request("cloud", "http://127.0.0.1:9001", None),
    )
    .await;
    let edge = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9002", Some("cloud")),
    )
    .await;
    // Every node pins the same marketplace key, each proven with the enrollment secret.
    assert_eq!(first.marketplace_key, edge.marketplace_key);
    assert_eq!(first.marketplace_key, app.market.public_key());
    for (name, reg) in [("cloud", &first), ("edge-1", &edge)] {
        model::auth::enrollment::verify_ack(
            SECRET.as_bytes(),
            &reg.node_id.to_string(),
            &node_key(name).public(),
            &reg.marketplace_key,
            &reg.proof,
        )
        .expect("the marketplace proves its key with the enrollment secret");
    }
    assert_eq!(first.heartbeat_interval_ms, 60_000);

    let again = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9003", Some("cloud")),
    )
    .await;
    assert_eq!(again.node_id, edge.node_id);

    let (status, fog) = app.get("/api/fog").await;
    assert_eq!(status, 200);
    let nodes = fog.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let e = nodes.iter().find(|n| n["name"] == "edge-1").unwrap();
    assert_eq!(e["id"], edge.node_id.to_string());
    assert_eq!(e["owner"], "owner");
    assert_eq!(e["tags"], json!(["edge"]));
    assert_eq!(e["parent"], "cloud");
    assert_eq!(e["url"], "http://127.0.0.1:9003");
    assert_eq!(e["capacity"]["cpu"], Cpu::from_cores(4).to_string());
    assert_eq!(e["alive"], true);
    assert!(e["lastSeen"].as_u64().is_some());
    assert!(e.get("reserved").is_some());
}

#[tokio::test]
async fn heartbeats_need_a_valid_signature_by_the_node_itself() {
    let app = spawn_app().await;
    let cloud = register(
        &app,
        &register_request("cloud", "http://127.0.0.1:9001", None),
    )
    .await;
    let edge = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9002", Some("cloud")),
    )
    .await;

    let stranger = model::auth::SecretKey::from_seed([7; 32]);
    let (status, body) = heartbeat(&app, edge.node_id, &stranger, Resources::ZERO).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");

    // Signed by `edge`'s key but claiming to be `cloud`: the signature does not verify
    // with cloud's pinned key.
    let hb = serde_json::to_vec(&json!({"reserved": {"cpu": "0 m", "memory": "0 B"}})).unwrap();
    let (status, _) = app
        .post_signed(
            &format!("/api/heartbeat/{}", edge.node_id),
            &hb,
            &node_key("edge-1"),
            &cloud.node_id.to_string(),
        )
        .await;
    assert_eq!(status, 401);

    // A node never enrolled has no pinned key: 401 (it enrolls again).
    let ghost = NodeId::new();
    let (status, _) = heartbeat(&app, ghost, &node_key("edge-1"), Resources::ZERO).await;
    assert_eq!(status, 401);

    let reserved = Resources::new(Cpu::from_millis(500), Bytes::from_mib(128));
    let (status, body) = heartbeat(&app, edge.node_id, &node_key("edge-1"), reserved).await;
    assert_eq!(status, 200, "{body}");
    let hb: model::protocol::HeartbeatResponse = serde_json::from_value(body).unwrap();
    assert_eq!(hb.neighbours.len(), 1);
    assert_eq!(hb.neighbours[0].node_id, cloud.node_id);
    assert_eq!(hb.neighbours[0].relation, Relation::Parent);

    let (_, body) = heartbeat(&app, cloud.node_id, &node_key("cloud"), Resources::ZERO).await;
    let hb: model::protocol::HeartbeatResponse = serde_json::from_value(body).unwrap();
    assert_eq!(hb.neighbours.len(), 1);
    assert_eq!(hb.neighbours[0].relation, Relation::Child);

    let (_, fog) = app.get("/api/fog").await;
    let e = fog
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "edge-1")
        .unwrap()
        .clone();
    assert_eq!(
        e["reserved"]["cpu"],
        "500 m".parse::<Cpu>().unwrap().to_string()
    );
}

#[tokio::test]
async fn silent_nodes_are_marked_dead_and_come_back_with_a_heartbeat() {
    let app = spawn_app().await;
    let edge = register(
        &app,
        &register_request("edge-1", "http://127.0.0.1:9002", None),
    )
    .await;
    let now = Timestamp::now();
    assert_eq!(app.market.mark_silent_nodes_dead(now).await.unwrap(), 0);
    // 3 intervals of 60 s.
    let later = now.plus(std::time::Duration::from_secs(181));
    assert_eq!(app.market.mark_silent_nodes_dead(later).await.unwrap(), 1);
    let (_, fog) = app.get("/api/fog").await;
    assert_eq!(fog[0]["alive"], false);
    let (status, _) = heartbeat(&app, edge.node_id, &node_key("edge-1"), Resources::ZERO).await;
    assert_eq!(status, 200);
    let (_, fog) = app.get("/api/fog").await;
    assert_eq!(fog[0]["alive"], true);
}

#[tokio::test]
async fn unknown_ids_and_routes_are_json_errors() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/function/not-a-uuid").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("id")),
        "{body}"
    );
    let (status, body) = app
        .get(&format!("/api/function/{}", model::SlaId::new()))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = app
        .delete(&format!("/api/function/{}", model::SlaId::new()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(&format!("/api/function/{}", model::SlaId::new()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&format!("/api/auctions/{}", model::AuctionId::new()))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/api/nothing-here").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = app.get("/api/functions").await;
    assert_eq!((status, body), (200, json!([])));
}
