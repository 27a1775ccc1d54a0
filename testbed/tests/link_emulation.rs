//! In-process link emulation with the real binaries: a chain `cloud - regional (40 ms) - edge
//! (30 ms)` started by the launcher with `emulate_links`, as `just run` does. Traffic between
//! nodes must take the one-way latency of its path each way; traffic from devices must not.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`just test` does). SQLite only.

use model::protocol::{ErrorBody, RefusalReason};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testbed::bench_offload::{echo_sla, place_function};
use testbed::{Federation, LaunchOptions, Topology, http_client, poll_until};

const CHAIN: &str = r#"
[[node]]
name = "cloud"
owner = "cloud-co"
tags = ["cloud"]
cpu = "16 cpu"
memory = "16 GiB"

[[node]]
name = "regional"
parent = "cloud"
latency = "40 ms"
owner = "metro"
cpu = "1 cpu"
memory = "2 GiB"

[[node]]
name = "edge"
parent = "regional"
latency = "30 ms"
owner = "alice"
cpu = "1 cpu"
memory = "2 GiB"
"#;

/// One-way latency edge -> cloud: 30 + 40 ms.
const EDGE_TO_CLOUD: Duration = Duration::from_millis(70);

struct Chain {
    fed: Federation,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start_chain() -> Chain {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-links-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.emulate_links = true;
    options.readiness_deadline = Duration::from_secs(45);
    let topology = Topology::parse(CHAIN).expect("the chain topology parses");
    let fed = match Federation::start(topology, options).await {
        Ok(f) => f,
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    };
    assert!(fed.emulates_links());
    Chain {
        fed,
        client: http_client(),
        _dir: dir,
    }
}

impl Chain {
    fn url(&self, node: &str) -> &str {
        self.fed
            .node_url(node)
            .unwrap_or_else(|| panic!("no node `{node}`"))
    }

    /// One echo call through `node`'s data plane: (status, served by, elapsed).
    async fn invoke(&self, node: &str, service: &str) -> (StatusCode, String, Duration) {
        let url = format!("{}/function/{service}", self.url(node));
        let started = Instant::now();
        let resp = self
            .client
            .post(&url)
            .body("ping")
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let elapsed = started.elapsed();
        let served_by = resp
            .headers()
            .get("x-fogmarket-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (resp.status(), served_by, elapsed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_forwarded_across_emulated_links_takes_their_round_trip_and_a_local_one_does_not()
 {
    let chain = start_chain().await;
    // Only the cloud has 4 cpu: the SLA relayed from the edge wins there, 70 ms away.
    let mut sla = echo_sla(1);
    sla["cpu"] = "4 cpu".into();
    let placed = place_function(&chain.client, &chain.fed.marketplace_url(), sla, "edge")
        .await
        .unwrap_or_else(|e| panic!("placing echo: {e:#}"));
    assert_eq!(
        placed.hosts,
        vec!["cloud".to_string()],
        "{:#}",
        placed.answer
    );
    let bid_latency = placed.answer["chosen"]["bid"]["latency"]["median"]
        .as_f64()
        .unwrap_or_default();
    assert!(
        (65.0..100.0).contains(&bid_latency),
        "the winning bid's path latency should be about 70 ms, got {bid_latency} ms: {:#}",
        placed.answer
    );

    // The edge learns the route within a second or so; then every call through it crosses
    // edge -> cloud and back.
    poll_until(
        Duration::from_secs(20),
        "the edge routing to the cloud",
        || async {
            match chain.invoke("edge", &placed.service).await {
                (StatusCode::OK, by, _) if by == "cloud" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let mut via_edge = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..5 {
        let (status, by, elapsed) = chain.invoke("edge", &placed.service).await;
        assert_eq!((status, by.as_str()), (StatusCode::OK, "cloud"));
        via_edge.push(elapsed);
        let (status, by, elapsed) = chain.invoke("cloud", &placed.service).await;
        assert_eq!((status, by.as_str()), (StatusCode::OK, "cloud"));
        direct.push(elapsed);
    }
    via_edge.sort();
    direct.sort();
    // A lower bound the emulation guarantees: the request and the response each wait 70 ms.
    assert!(
        via_edge[0] >= EDGE_TO_CLOUD * 2,
        "through the edge: {via_edge:?}, expected at least {:?} each",
        EDGE_TO_CLOUD * 2
    );
    // A device calling the cloud directly crosses no emulated link.
    assert!(
        direct[2] < EDGE_TO_CLOUD,
        "directly at the cloud: {direct:?}, expected a median under {EDGE_TO_CLOUD:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_measure_the_emulated_link_and_it_is_not_counted_twice() {
    let chain = start_chain().await;
    let url = format!("{}/api/state", chain.url("edge"));
    // The configured 30 ms stands in until probes answer; then the measured half round trip
    // (30 ms of emulation plus loopback) replaces it instead of adding to it.
    let latency = poll_until(
        Duration::from_secs(20),
        "probes of edge -> regional",
        || async {
            let state: Value = chain
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let regional = state["neighbours"]
                .as_array()
                .and_then(|ns| ns.iter().find(|n| n["name"] == "regional"))
                .cloned()
                .ok_or_else(|| format!("no neighbour `regional`: {state}"))?;
            if regional["probes"].as_u64().unwrap_or(0) < 3 {
                return Err(format!("fewer than 3 probes: {regional}"));
            }
            regional["latency"]["median"]
                .as_f64()
                .ok_or_else(|| format!("no latency: {regional}"))
        },
    )
    .await;
    assert!(
        (29.0..45.0).contains(&latency),
        "edge -> regional should measure about 30 ms one way, got {latency} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_sla_refuses_a_host_whose_answer_cannot_come_back_in_time_and_a_one_way_sla_takes_it()
 {
    let chain = start_chain().await;
    // Only the cloud fits 4 cpu; it is 70 ms from the edge one way, 140 ms there and back.
    let mut sla = echo_sla(1);
    sla["cpu"] = "4 cpu".into();
    sla["latencyMax"] = "100 ms".into();
    sla["latencyKind"] = "roundTrip".into();
    let url = format!("{}/api/function", chain.fed.marketplace_url());
    let resp = chain
        .client
        .put(&url)
        .json(&json!({"sla": sla, "targetNode": "edge"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let err: ErrorBody = serde_json::from_value(body.clone()).expect("an error body");
    assert_eq!(err.error, "no_feasible_node", "{body:#}");
    let latency_refusal = err.refusals.iter().find_map(|r| match r.reason {
        RefusalReason::LatencyBudget { estimated_ms, .. } if r.node_name == "cloud" => {
            Some(estimated_ms)
        }
        _ => None,
    });
    let estimated = latency_refusal
        .unwrap_or_else(|| panic!("the cloud must be refused for its latency: {body:#}"));
    assert!(
        (130.0..200.0).contains(&estimated),
        "the round trip to the cloud is about 140 ms, estimated {estimated} ms"
    );

    // GIRAFF's one-way reading of the same 100 ms: 70 ms fits, the cloud hosts it.
    sla["latencyKind"] = "oneWay".into();
    let placed = place_function(&chain.client, &chain.fed.marketplace_url(), sla, "edge")
        .await
        .unwrap_or_else(|e| panic!("placing echo one-way: {e:#}"));
    assert_eq!(
        placed.hosts,
        vec!["cloud".to_string()],
        "{:#}",
        placed.answer
    );
}
