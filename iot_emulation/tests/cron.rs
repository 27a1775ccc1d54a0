//! The cron server (GIRAFF's `PUT /api/cron`) against a local test function: requests arrive
//! at the interval, carry GIRAFF's headers and ping body, and are recorded.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use iot_emulation::cron::{CronServer, CronSettings};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testbed::poll_until;

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    sla_id: String,
    tags: String,
    body: Value,
}

/// A function that answers 200 at once and remembers every request.
fn start_function() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s = seen.clone();
    let server = HttpServer::new(move || {
        let s = s.clone();
        App::new().route(
            "/function/{name}",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let s = s.clone();
                async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    s.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        sla_id: h("giraff-sla-id"),
                        tags: h("giraff-tags"),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    HttpResponse::Ok()
                        .insert_header(("X-Fogmarket-Served-By", "edge-1"))
                        .insert_header(("X-Fogmarket-Path", "edge-1"))
                        .insert_header(("X-Fogmarket-Decision", "local"))
                        .body("ok")
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (format!("http://{addr}/function/fogfn-test"), seen)
}

fn start_cron() -> String {
    let server = CronServer::build("127.0.0.1:0".parse().unwrap(), CronSettings::default())
        .expect("cron server binds");
    let url = format!("http://{}", server.addr());
    tokio::spawn(server.run_until_stopped());
    url
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn job_done(client: &reqwest::Client, cron: &str, id: &str) -> Value {
    poll_until(
        Duration::from_secs(15),
        "the cron job to finish",
        || async {
            let v: Value = client
                .get(format!("{cron}/api/cron/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["done"] == true).then_some(v)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_cron_sends_requests_to_the_node_url_at_the_interval_after_the_initial_wait() {
    let (function_url, seen) = start_function();
    let cron = start_cron();
    let client = client();
    poll_until(Duration::from_secs(10), "the cron server", || async {
        let r = client.get(format!("{cron}/api/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    let put_at = Instant::now();
    let resp = client
        .put(format!("{cron}/api/cron"))
        .json(&json!({
            "functionId": "0b5e6a0e-8f2b-4b8e-9d44-7f6f3c1f8a21",
            "iotUrl": "http://127.0.0.1:1/api/print",
            "nodeUrl": function_url,
            "tags": "sensor-7",
            "initialWaitMs": 300,
            "intervalMs": 100,
            "durationMs": 1000,
            "firstNodeIp": "127.0.0.1",
            "content": "ping",
            "arrival": "constant"
        }))
        .send()
        .await
        .expect("PUT /api/cron answers");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let id = answer["id"].as_str().expect("an id").to_string();
    assert_eq!(answer["planned"], 10);

    let job = job_done(&client, &cron, &id).await;
    assert_eq!(job["ended"], 10, "{job}");
    assert_eq!(job["ok"], 10, "{job}");
    assert_eq!(job["functionId"], "0b5e6a0e-8f2b-4b8e-9d44-7f6f3c1f8a21");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10);
    let first = seen[0].at.duration_since(put_at);
    assert!(
        first >= Duration::from_millis(280),
        "first request after {first:?}"
    );
    let mut gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        (Duration::from_millis(80)..Duration::from_millis(125)).contains(&median),
        "median gap {median:?}: {gaps:?}"
    );
    let span = seen[9].at - seen[0].at;
    assert!(
        (Duration::from_millis(750)..Duration::from_millis(1300)).contains(&span),
        "nine intervals took {span:?}"
    );
    for s in &seen {
        assert_eq!(s.sla_id, "0b5e6a0e-8f2b-4b8e-9d44-7f6f3c1f8a21");
        assert_eq!(s.tags, "sensor-7");
        assert_eq!(s.body["tag"], "sensor-7");
        assert_eq!(s.body["from"], "iot_emulation");
        assert!(
            s.body["sentAt"].as_u64().is_some_and(|t| t > 0),
            "{:?}",
            s.body
        );
    }
    let seqs: Vec<u64> = seen.iter().filter_map(|s| s.body["seq"].as_u64()).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<u64>>());

    // Every request is recorded.
    let csv = client
        .get(format!("{cron}/api/records"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let records = iot_emulation::record::read_csv(csv.as_bytes()).expect("records CSV");
    assert_eq!(records.len(), 10);
    assert!(records.iter().all(|r| r.status == 200
        && r.served_by.as_deref() == Some("edge-1")
        && r.hops == Some(0)
        && r.sla_met));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cron_bodies_answer_400_naming_the_field() {
    let cron = start_cron();
    let client = client();
    let cases = [
        (
            json!({"functionId": "f", "nodeUrl": "http://x/function/f", "durationMs": 10}),
            "intervalMs",
        ),
        (
            json!({"functionId": "f", "nodeUrl": "http://x/function/f", "intervalMs": 0, "durationMs": 10}),
            "intervalMs",
        ),
        (
            json!({"nodeUrl": "http://x/function/f", "intervalMs": 5, "durationMs": 10}),
            "functionId",
        ),
        (
            json!({"functionId": "f", "nodeUrl": "http://x/function/f", "intervalMs": 5, "durationMs": 10, "content": "video"}),
            "content",
        ),
    ];
    for (body, field) in cases {
        let resp = poll_until(Duration::from_secs(10), "the cron server", || async {
            client
                .put(format!("{cron}/api/cron"))
                .json(&body)
                .send()
                .await
                .ok()
        })
        .await;
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["field"], field, "{answer}");
        assert_eq!(answer["error"], "invalid_cron");
    }
    let resp = client
        .put(format!("{cron}/api/cron"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cron_job_stops_its_remaining_requests() {
    let (function_url, seen) = start_function();
    let cron = start_cron();
    let client = client();
    let resp = poll_until(Duration::from_secs(10), "the cron server", || async {
        client
            .put(format!("{cron}/api/cron"))
            .json(&json!({
                "functionId": "f", "nodeUrl": function_url, "tags": "t",
                "intervalMs": 20, "durationMs": 60000, "arrival": "constant"
            }))
            .send()
            .await
            .ok()
    })
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    poll_until(Duration::from_secs(10), "a first request", || async {
        (!seen.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let resp = client
        .delete(format!("{cron}/api/cron/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job = job_done(&client, &cron, &id).await;
    assert_eq!(job["planned"], 3000);
    assert!(job["ended"].as_u64().unwrap() < 3000, "{job}");
    let listed: Value = client
        .get(format!("{cron}/api/cron"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let missing = client
        .delete(format!("{cron}/api/cron/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
