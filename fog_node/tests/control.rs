//! The control plane's endpoints with real nodes on loopback: `POST /fog/v1/load`
//! (authentication, versions, ordering, the push-pull answer) and the route sync's signed
//! long poll of `GET /api/routes` against a fake marketplace.

mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::federation::*;
use common::*;
use model::auth;
use model::ids::NodeId;
use model::offload::CapacityOffer;
use model::protocol::{FunctionLoadReport, LoadReport, PROTOCOL_VERSION, RouteNode, RouteTable};
use model::time::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn report(from: NodeId, seq: u64, version: u32, service: &str, offer: f64) -> LoadReport {
    let now = Timestamp::now();
    LoadReport {
        version,
        from,
        seq,
        sent_at: now,
        functions: vec![FunctionLoadReport {
            service: service.to_string(),
            rate: 3.0,
            capacity: Some(50.0),
            queue_len: 0,
            in_flight: 1,
            offer: Some(CapacityOffer {
                rate: offer,
                expires_at: now.plus(Duration::from_secs(3)),
            }),
            margin: None,
        }],
    }
}

/// A load report to the node at `url`, signed by `sender` with `key`.
async fn post_signed(
    url: &str,
    sender: &str,
    key: &auth::SecretKey,
    body: &LoadReport,
) -> reqwest::Response {
    let bytes = serde_json::to_vec(body).unwrap();
    let recipient = id_at(url).to_string();
    let header = member_header(key, sender, &recipient, "POST", "/fog/v1/load", &bytes);
    reqwest::Client::new()
        .post(format!("{url}/fog/v1/load"))
        .header("authorization", header)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn load_reports_are_authenticated_versioned_ordered_and_answered_with_the_receivers_report() {
    let h = spawn_node("h", "").await;
    // A co-host that never answers exchanges itself: only its reports reach h.
    let peer_key = member_key("p");
    let peer = RouteNode {
        node_id: NodeId::new(),
        name: "p".into(),
        url: dead_url(),
        public_key: peer_key.public(),
        alive: true,
    };
    let s = echo_sla();
    let svc = service(&s);
    let mut route = route_of(&s, &h, &[&h]);
    route.hosts.push(peer.node_id);
    let mut t = table(2, &[&h], vec![route]);
    t.nodes.push(peer.clone());
    install(&[&h], &t);
    let p = peer.node_id.to_string();
    let peer_id = peer.node_id;

    let r = post_signed(
        &h.url,
        &p,
        &peer_key,
        &report(peer_id, 10, PROTOCOL_VERSION, &svc, 7.0),
    )
    .await;
    assert_eq!(r.status(), 200);
    let answer: LoadReport = r.json().await.unwrap();
    assert_eq!(answer.from, h.id);
    assert_eq!(answer.version, PROTOCOL_VERSION);
    assert_eq!(answer.functions.len(), 1);
    assert_eq!(answer.functions[0].service, svc);

    // An older report is acknowledged but ignored.
    let r = post_signed(
        &h.url,
        &p,
        &peer_key,
        &report(peer_id, 5, PROTOCOL_VERSION, &svc, 99.0),
    )
    .await;
    assert_eq!(r.status(), 200);
    let kept = {
        let routes = h.node.offload.routes();
        let link = &routes.node(peer_id).unwrap().link;
        link.control().reports[&svc].offer.unwrap().rate
    };
    assert_eq!(kept, 7.0);
    // The offer shows in the offload view after the next step, and the peer is alive.
    eventually("h shows p's offer", Duration::from_secs(5), || async {
        let v = offload_view(&h).await;
        let p = &v["functions"][0]["peers"][0];
        p["offer"]["rate"] == 7.0 && p["alive"] == true && p["offer"]["expiresAt"].is_u64()
    })
    .await;

    let r = post_signed(
        &h.url,
        &p,
        &peer_key,
        &report(peer_id, 11, PROTOCOL_VERSION + 1, &svc, 1.0),
    )
    .await;
    assert_eq!(r.status(), 400, "another protocol version");
    let stranger = NodeId::new();
    let r = post_signed(
        &h.url,
        &stranger.to_string(),
        &member_key("stranger"),
        &report(stranger, 12, PROTOCOL_VERSION, &svc, 1.0),
    )
    .await;
    assert_eq!(
        r.status(),
        401,
        "a sender outside the route table has no known key"
    );
    let r = post_signed(
        &h.url,
        &p,
        &peer_key,
        &report(h.id, 13, PROTOCOL_VERSION, &svc, 1.0),
    )
    .await;
    assert_eq!(
        r.status(),
        403,
        "a report signed by one node in the name of another"
    );
    let r = post_signed(
        &h.url,
        &p,
        &member_key("q"),
        &report(peer_id, 14, PROTOCOL_VERSION, &svc, 1.0),
    )
    .await;
    assert_eq!(r.status(), 401, "a bad signature");
    let r = post_signed(
        &h.url,
        auth::MARKETPLACE,
        &market_key(),
        &report(peer_id, 15, PROTOCOL_VERSION, &svc, 1.0),
    )
    .await;
    assert_eq!(r.status(), 403, "load reports come from nodes only");
}

/// What the fake marketplace saw of each long poll: the query and the Authorization header.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

async fn fake_routes(
    req: HttpRequest,
    seen: web::Data<Seen>,
    tables: web::Data<Vec<RouteTable>>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    seen.lock()
        .unwrap()
        .push((req.query_string().to_string(), auth));
    let after: Option<u64> =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("after").and_then(|a| a.parse().ok()));
    let next = tables
        .iter()
        .find(|t| after.is_none_or(|a| t.version > a))
        .cloned();
    match next {
        Some(t) => HttpResponse::Ok().json(t),
        None => {
            // Nothing newer: hold the poll a little, then answer the current table.
            tokio::time::sleep(Duration::from_millis(200)).await;
            HttpResponse::Ok().json(tables.last().unwrap())
        }
    }
}

#[tokio::test]
async fn the_route_sync_long_polls_the_marketplace_signed_and_installs_each_new_table() {
    // The node starts polling before the marketplace listens (its first polls fail).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let marketplace = format!("http://{}", listener.local_addr().unwrap());
    let n = spawn_node_at("n", "2 cpu", &marketplace, "").await;
    // Tables 3 and 4 name the node itself, hosting one function in version 4.
    let s = echo_sla();
    let tables = web::Data::new(vec![
        table(3, &[&n], vec![]),
        table(4, &[&n], vec![route_of(&s, &n, &[&n])]),
    ]);
    let seen: Seen = Arc::default();
    let seen_data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(seen_data.clone())
            .app_data(tables.clone())
            .route("/api/routes", web::get().to(fake_routes))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    eventually(
        "the node installs version 4",
        Duration::from_secs(10),
        || async { n.node.offload.routes().version() == 4 },
    )
    .await;
    assert!(
        n.node
            .offload
            .routes()
            .function_by_service(&service(&s))
            .is_some()
    );
    eventually(
        "a poll after version 4",
        Duration::from_secs(10),
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .any(|(q, _)| q.contains("after=4"))
        },
    )
    .await;
    let polls = seen.lock().unwrap().clone();
    assert_eq!(
        polls[0].0, "waitMs=10000",
        "the first poll asks for the table at once"
    );
    assert_eq!(polls[1].0, "after=3&waitMs=10000");
    // Each poll is signed by the node's own key, for the marketplace, over its query.
    let guard = auth::Guard::new(auth::MARKETPLACE);
    for (query, header) in &polls {
        let target = format!("/api/routes?{query}");
        let sender = guard.check(
            Some(header),
            Timestamp::now(),
            &auth::RequestTarget::new("GET", &target, b""),
            |_| Some(n.node.public_key()),
        );
        assert_eq!(sender.as_deref(), Ok(n.id.to_string().as_str()), "{query}");
    }
    handle.stop(false).await;
}
