//! The operator's view in one process: `GET /api/dashboard` (JSON aggregate of the marketplace
//! and of what every fog node says), `GET /` (the page) and `GET /metrics` (Prometheus).

mod common;

use common::*;
use marketplace::Settings;
use model::protocol::Resources;
use model::{Bytes, Cpu, SlaId, Timestamp};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn settings_with(db: &TestDb, cache_ttl: Duration) -> Settings {
    Settings {
        dashboard_cache_ttl: cache_ttl,
        ..test_settings(db)
    }
}

async fn app_with_cache(cache_ttl: Duration) -> TestApp {
    let db = TestDb::sqlite();
    let settings = settings_with(&db, cache_ttl);
    spawn_app_with(db, settings).await
}

fn behaviour(price: f64) -> NodeBehaviour {
    NodeBehaviour {
        price,
        ..NodeBehaviour::default()
    }
}

/// `cloud` (price 5) with children `edge-1` (3) and `edge-2` (4); `cloud` relays to both.
async fn federation(app: &TestApp) -> (FakeNode, FakeNode, FakeNode) {
    let cloud = FakeNode::start(app, "cloud", None, behaviour(5.0)).await;
    let e1 = FakeNode::start(app, "edge-1", Some("cloud"), behaviour(3.0)).await;
    let e2 = FakeNode::start(app, "edge-2", Some("cloud"), behaviour(4.0)).await;
    cloud.add_child(&e1);
    cloud.add_child(&e2);
    cloud.set_links(&[(&e1, "child", Some(5.0)), (&e2, "child", None)]);
    e1.set_links(&[(&cloud, "parent", Some(5.0))]);
    e2.set_links(&[(&cloud, "parent", Some(7.5))]);
    (cloud, e1, e2)
}

fn sla_id(resp: &Value) -> SlaId {
    resp["sla"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sla.id")
}

/// Every node of the nested tree, depth first.
fn flatten(tree: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for n in tree.as_array().into_iter().flatten() {
        out.push(n.clone());
        out.extend(flatten(&n["children"]));
    }
    out
}

fn node<'a>(nodes: &'a [Value], name: &str) -> &'a Value {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {nodes:?}"))
}

async fn dashboard(app: &TestApp) -> Value {
    let (status, body) = app.get("/api/dashboard").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn the_dashboard_shows_the_tree_with_links_the_live_placement_and_the_auction() {
    let app = app_with_cache(Duration::ZERO).await;
    let (_cloud, e1, _e2) = federation(&app).await;
    let (status, placed) = app
        .put_function_raw(
            "?provision=true",
            json!({"sla": sla(), "targetNode": "cloud"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    let id = sla_id(&placed);

    let d = dashboard(&app).await;
    assert_eq!(d["rule"], "vickrey");
    assert!(d["generatedAt"].as_u64().is_some(), "{d}");

    // The tree: cloud at the root, its children nested, by name.
    let tree = d["tree"].as_array().expect("tree");
    assert_eq!(tree.len(), 1, "{d}");
    assert_eq!(tree[0]["name"], "cloud");
    let children: Vec<&str> = tree[0]["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(children, ["edge-1", "edge-2"]);
    let nodes = flatten(&d["tree"]);
    let cloud = node(&nodes, "cloud");
    assert_eq!(cloud["alive"], true);
    assert_eq!(cloud["reachable"], true);
    assert_eq!(cloud["owner"], "owner");
    assert_eq!(cloud["tags"], json!(["edge"]));
    assert_eq!(cloud["capacity"]["cpuMillis"], 4000);
    assert_eq!(cloud["capacity"]["cpu"], "4 cpu");
    assert_eq!(cloud["capacity"]["memoryBytes"], 8192_u64 * 1024 * 1024);
    assert_eq!(cloud["reserved"]["cpuMillis"], 0);
    let links = cloud["neighbours"].as_array().expect("neighbours");
    assert_eq!(links.len(), 2, "{cloud}");
    assert_eq!(links[0]["name"], "edge-1");
    assert_eq!(links[0]["relation"], "child");
    assert_eq!(links[0]["latencyMs"], 5.0);
    assert_eq!(links[0]["latencySigmaMs"], 0.5);
    assert!(links[1]["latencyMs"].is_null(), "not measured yet: {cloud}");
    assert_eq!(node(&nodes, "edge-2")["neighbours"][0]["latencyMs"], 7.5);

    // edge-1 (the cheapest) hosts the live placement.
    let edge1 = node(&nodes, "edge-1");
    assert_eq!(edge1["placements"], 1, "{edge1}");
    assert_eq!(edge1["hostedFunctions"], 1, "{edge1}");
    assert_eq!(edge1["used"]["cpuMillis"], 500, "{edge1}");
    assert_eq!(node(&nodes, "cloud")["placements"], 0);

    let placements = d["placements"].as_array().expect("placements");
    assert_eq!(placements.len(), 1, "{d}");
    let p = &placements[0];
    assert_eq!(p["slaId"], id.to_string());
    assert_eq!(p["functionName"], "echo");
    assert_eq!(p["functionImage"], "ghcr.io/acme/echo:1.2");
    assert_eq!(p["targetNodeName"], "cloud");
    assert_eq!(p["state"], "live");
    assert_eq!(p["hosts"][0]["nodeName"], "edge-1");
    assert_eq!(p["hosts"][0]["nodeId"], e1.id.to_string());
    assert_eq!(
        p["hosts"][0]["price"], 4.0,
        "Vickrey: paid the second price"
    );
    assert_eq!(p["totalPrice"], 4.0);
    let remaining = p["remainingMs"].as_u64().expect("remainingMs");
    assert!(remaining > 0 && remaining <= 30_000, "{p}");

    let auctions = d["auctions"].as_array().expect("auctions");
    assert_eq!(auctions.len(), 1, "{d}");
    let a = &auctions[0];
    assert_eq!(a["slaId"], id.to_string());
    assert_eq!(a["id"], placed["auctionId"]);
    assert_eq!(a["outcome"], "awarded");
    assert_eq!(a["targetNodeName"], "cloud");
    assert_eq!(a["functionName"], "echo");
    let bids: Vec<(String, f64, bool)> = a["bids"]
        .as_array()
        .expect("bids")
        .iter()
        .map(|b| {
            (
                b["nodeName"].as_str().unwrap_or_default().to_string(),
                b["price"].as_f64().unwrap_or(f64::NAN),
                b["won"] == true,
            )
        })
        .collect();
    assert_eq!(
        bids,
        [
            ("edge-1".to_string(), 3.0, true),
            ("edge-2".to_string(), 4.0, false),
            ("cloud".to_string(), 5.0, false),
        ]
    );
    assert_eq!(a["winners"][0]["nodeName"], "edge-1");
    assert_eq!(a["winners"][0]["bid"], 3.0);
    assert_eq!(a["winners"][0]["price"], 4.0);
    assert_eq!(a["price"], 4.0);
    assert_eq!(a["refusals"], 0);
    assert!(a["durationMs"].as_u64().is_some(), "{a}");

    let s = &d["summary"];
    assert_eq!(
        (
            &s["nodes"],
            &s["aliveNodes"],
            &s["deadNodes"],
            &s["unreachableNodes"]
        ),
        (&json!(3), &json!(3), &json!(0), &json!(0)),
        "{s}"
    );
    assert_eq!(
        (&s["activePlacements"], &s["livePlacements"]),
        (&json!(1), &json!(1))
    );
}

#[tokio::test]
async fn a_failed_auction_is_listed_with_its_refusals_and_no_price() {
    let app = app_with_cache(Duration::ZERO).await;
    let tiny = NodeBehaviour {
        free: Resources::new(Cpu::from_millis(100), Bytes::from_mib(64)),
        ..NodeBehaviour::default()
    };
    FakeNode::start(&app, "tiny", None, tiny).await;
    let (status, body) = app
        .put_function(&json!({"sla": sla(), "targetNode": "tiny"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let d = dashboard(&app).await;
    let a = &d["auctions"][0];
    assert_eq!(a["outcome"], "no_feasible_node", "{a}");
    assert_eq!(a["refusals"], 1);
    assert!(a["price"].is_null(), "{a}");
    assert_eq!(a["bids"], json!([]));
    assert_eq!(d["placements"], json!([]));
}

#[tokio::test]
async fn unreachable_and_hung_nodes_are_shown_as_unreachable_without_delaying_the_dashboard() {
    let app = app_with_cache(Duration::ZERO).await;
    let (_cloud, _e1, e2) = federation(&app).await;
    e2.stop().await;
    // A node that accepts connections but never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_url = format!("http://{}", hung.local_addr().expect("addr"));
    register(&app, &register_request("hung", &hung_url, Some("cloud"))).await;

    let started = Instant::now();
    let d = dashboard(&app).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "node calls are bounded by the 500 ms timeout, took {took:?}"
    );
    let nodes = flatten(&d["tree"]);
    assert_eq!(nodes.len(), 4, "{d}");
    for name in ["edge-2", "hung"] {
        let n = node(&nodes, name);
        assert_eq!(n["reachable"], false, "{n}");
        assert!(
            n["error"].as_str().is_some_and(|e| !e.is_empty()),
            "the reason is shown: {n}"
        );
        assert_eq!(n["neighbours"], json!([]));
        assert!(n["invocations"].is_null());
    }
    assert!(
        node(&nodes, "hung")["error"]
            .as_str()
            .is_some_and(|e| e.contains("500 ms")),
        "{d}"
    );
    assert_eq!(node(&nodes, "edge-1")["reachable"], true);
    assert_eq!(d["summary"]["unreachableNodes"], 2);
    drop(hung);
}

#[tokio::test]
async fn a_dead_node_is_shown_dead_and_counted_in_the_summary() {
    let app = app_with_cache(Duration::ZERO).await;
    let (cloud, e1, e2) = federation(&app).await;
    e2.stop().await;
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    assert_eq!(app.market.mark_silent_nodes_dead(later).await.unwrap(), 3);
    for n in [&cloud, &e1] {
        let key = n.key();
        let (status, body) = heartbeat(&app, n.id, &key, Resources::ZERO).await;
        assert_eq!(status, 200, "{body}");
    }
    let d = dashboard(&app).await;
    let nodes = flatten(&d["tree"]);
    assert_eq!(node(&nodes, "edge-2")["alive"], false);
    assert_eq!(node(&nodes, "edge-1")["alive"], true);
    assert_eq!(d["summary"]["deadNodes"], 1);
    assert_eq!(d["summary"]["aliveNodes"], 2);
}

#[tokio::test]
async fn invocation_rates_are_computed_from_successive_totals_samples() {
    let app = app_with_cache(Duration::ZERO).await;
    let (cloud, e1, _e2) = federation(&app).await;
    e1.set_totals(Some((100, 10, 1)));
    cloud.set_totals(Some((0, 0, 0)));

    let t0 = Instant::now();
    let first = dashboard(&app).await;
    let first_done = Instant::now();
    let nodes = flatten(&first["tree"]);
    let inv = &node(&nodes, "edge-1")["invocations"];
    assert_eq!(
        inv["totals"],
        json!({"served": 100, "forwarded": 10, "rejected": 1})
    );
    assert!(inv["perSecond"].is_null(), "no rate from one sample: {inv}");
    assert!(
        node(&nodes, "edge-2")["invocations"].is_null(),
        "no totals, no invocations"
    );
    assert!(first["summary"]["invocationRates"].is_null());

    // Let time pass between the two samples (not a readiness wait).
    tokio::time::sleep(Duration::from_millis(200)).await;
    e1.set_totals(Some((200, 30, 1)));
    let second_start = Instant::now();
    let second = dashboard(&app).await;
    let t1 = Instant::now();
    let nodes = flatten(&second["tree"]);
    let rate = &node(&nodes, "edge-1")["invocations"]["perSecond"];
    let served = rate["served"].as_f64().expect("served rate");
    let forwarded = rate["forwarded"].as_f64().expect("forwarded rate");
    // The samples were taken somewhere within [t0, t1] and at least the gap apart.
    let (longest, shortest) = (t1 - t0, second_start - first_done);
    assert!(
        served >= 100.0 / longest.as_secs_f64() && served <= 100.0 / shortest.as_secs_f64(),
        "served {served}/s for +100 within {shortest:?}..{longest:?}"
    );
    assert!((forwarded / served - 0.2).abs() < 1e-9, "{rate}");
    assert_eq!(rate["rejected"], 0.0);
    assert_eq!(
        node(&nodes, "cloud")["invocations"]["perSecond"]["served"],
        0.0
    );
    assert_eq!(second["summary"]["invocationRates"]["served"], served);

    // A node that restarted (counters went backwards) has no rate until its next sample.
    e1.set_totals(Some((5, 0, 0)));
    let third = dashboard(&app).await;
    let nodes = flatten(&third["tree"]);
    assert!(
        node(&nodes, "edge-1")["invocations"]["perSecond"].is_null(),
        "{third}"
    );
}

#[tokio::test]
async fn the_aggregate_is_cached_so_many_browsers_do_not_multiply_node_calls() {
    let app = app_with_cache(Duration::from_secs(60)).await;
    let (cloud, e1, _e2) = federation(&app).await;
    let calls = (0..10).map(|_| app.get("/api/dashboard"));
    let answers = futures::future::join_all(calls).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["generatedAt"], answers[0].1["generatedAt"]);
    }
    assert_eq!(app.market.dashboard_builds(), 1);
    assert_eq!(cloud.state_calls(), 1);
    assert_eq!(e1.state_calls(), 1);
}

#[tokio::test]
async fn the_dashboard_page_is_one_self_contained_html_document() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/", app.address))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = r.text().await.expect("body");
    assert!(
        html.contains("/api/dashboard"),
        "the page polls the aggregate"
    );
    for hook in [
        "id=\"tree\"",
        "id=\"placements\"",
        "id=\"auctions\"",
        "id=\"rates\"",
    ] {
        assert!(html.contains(hook), "{hook}");
    }
    for external in [
        "src=\"http",
        "href=\"http",
        "@import",
        "<link",
        "<script src",
    ] {
        assert!(
            !html.contains(external),
            "no external resources: {external}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The value of the series `name{labels}` in a Prometheus text exposition (label order free).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let found: BTreeMap<&str, &str> = label_text
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

async fn metrics_text(app: &TestApp) -> String {
    let r = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    r.text().await.expect("body")
}

#[tokio::test]
async fn metrics_name_every_series_in_prometheus_text_format() {
    let app = spawn_app().await;
    let health = |t: &str| {
        metric(
            t,
            "fogmarket_http_requests_total",
            &[("route", "/api/health"), ("status", "200")],
        )
        .unwrap_or(0.0)
    };
    // spawn_app already polled /api/health until it answered.
    let before = health(&metrics_text(&app).await);
    let _ = app.get("/api/health").await;
    let text = metrics_text(&app).await;
    assert_eq!(health(&text), before + 1.0);
    for name in [
        "fogmarket_auction_bids",
        "fogmarket_placement_duration_seconds",
        "fogmarket_winning_price",
        "fogmarket_nodes",
        "fogmarket_placements",
        "fogmarket_http_requests_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in\n{text}"
        );
    }
    assert_eq!(
        metric(&text, "fogmarket_nodes", &[("state", "alive")]),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "fogmarket_placements", &[("state", "live")]),
        Some(0.0)
    );
    assert!(
        metric(
            &text,
            "fogmarket_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_move_after_a_placement_and_after_a_failed_auction() {
    let app = spawn_app().await;
    let (_cloud, _e1, _e2) = federation(&app).await;
    let before = metrics_text(&app).await;
    let placed = |t: &str| {
        metric(
            t,
            "fogmarket_auctions_total",
            &[("rule", "vickrey"), ("outcome", "placed")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(placed(&before), 0.0);
    assert_eq!(
        metric(&before, "fogmarket_nodes", &[("state", "alive")]),
        Some(3.0)
    );

    let (status, body) = app
        .put_function(&json!({"sla": sla(), "targetNode": "cloud"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let after = metrics_text(&app).await;
    assert_eq!(placed(&after), 1.0);
    assert_eq!(
        metric(&after, "fogmarket_auction_bids_count", &[]),
        Some(1.0)
    );
    assert_eq!(metric(&after, "fogmarket_auction_bids_sum", &[]), Some(3.0));
    assert_eq!(
        metric(&after, "fogmarket_winning_price_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "fogmarket_winning_price_sum", &[]),
        Some(4.0)
    );
    assert_eq!(
        metric(&after, "fogmarket_placement_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "fogmarket_placements", &[("state", "reserved")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &after,
            "fogmarket_http_requests_total",
            &[("route", "/api/function"), ("status", "200")]
        ),
        Some(1.0)
    );

    // An SLA nobody can host: a refused auction, counted with its refusals' reasons.
    let mut huge = sla();
    huge["cpu"] = json!("64 cpu");
    let (status, body) = app
        .put_function(&json!({"sla": huge, "targetNode": "cloud"}))
        .await;
    assert_eq!(status, 422, "{body}");
    let failed = metrics_text(&app).await;
    assert_eq!(
        metric(
            &failed,
            "fogmarket_auctions_total",
            &[("rule", "vickrey"), ("outcome", "no_feasible_node")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &failed,
            "fogmarket_refusals_total",
            &[("reason", "out_of_capacity")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&failed, "fogmarket_auction_bids_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &failed,
            "fogmarket_http_requests_total",
            &[("route", "/api/function"), ("status", "422")]
        ),
        Some(1.0)
    );

    // Unknown paths share one label value, whatever is asked.
    let _ = app.get("/no/such/path/1").await;
    let _ = app.get("/no/such/path/2").await;
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(
            &text,
            "fogmarket_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn each_marketplace_in_a_process_has_its_own_metrics() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    for _ in 0..3 {
        let _ = a.get("/api/health").await;
    }
    let health = |t: &str| {
        metric(
            t,
            "fogmarket_http_requests_total",
            &[("route", "/api/health"), ("status", "200")],
        )
    };
    // spawn_app polls /api/health until ready: at least one call each.
    let (ta, tb) = (metrics_text(&a).await, metrics_text(&b).await);
    let (ha, hb) = (health(&ta).unwrap_or(0.0), health(&tb).unwrap_or(0.0));
    assert!(ha >= hb + 3.0, "a {ha}, b {hb}");
}

#[tokio::test]
async fn dead_nodes_are_counted_dead_in_the_metrics() {
    let app = spawn_app().await;
    let (_cloud, _e1, _e2) = federation(&app).await;
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    app.market.mark_silent_nodes_dead(later).await.unwrap();
    let text = metrics_text(&app).await;
    assert_eq!(
        metric(&text, "fogmarket_nodes", &[("state", "dead")]),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "fogmarket_nodes", &[("state", "alive")]),
        Some(0.0)
    );
}
