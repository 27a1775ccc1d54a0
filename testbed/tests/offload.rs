//! Multi-process tests of run-time routing and offloading: the real `marketplace` and
//! `fog-node` binaries (each node with its embedded gateway running `fn-echo`) on loopback,
//! started by the testbed launcher, under the open-loop load generator of `testbed::load`.
//!
//! A host's capacity is known: echo is delayed (`?delay_ms=100`) and the node runs at most
//! `max_concurrency` calls at once (`[offload]`, also given as `max_rates`), so a node with
//! `max_concurrency = 1` sustains 10 req/s.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`just test` does). SQLite only.

use model::auth::{
    self, FORWARD_HEADER, HOPS_HEADER, MARKETPLACE, Nonce, ROUTE_HEADER, RequestTarget, SecretKey,
    enrollment,
};
use model::protocol::{
    HeartbeatRequest, PROTOCOL_VERSION, RegisterRequest, RegisterResponse, Resources,
};
use model::units::{Bytes, Cpu};
use model::{NodeId, Timestamp};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use testbed::bench_offload::{
    Placed, Scenario, alive_peers, echo_sla, offload_entry, place_function, wait_offload_ready,
    with_delay,
};
use testbed::load::{self, LoadOptions, LoadResult, Schedule, Stream};
use testbed::{Federation, LaunchOptions, Topology, http_client, poll_until};
use tokio::time::Instant;

/// echo's delay in these tests: 1 call in flight = 10 req/s.
const DELAY_MS: u64 = 100;
/// The data plane's default hop limit (`[offload] max_hops`).
const MAX_HOPS: u32 = 3;

// ---------------------------------------------------------------------------------------------
// A running federation for one test

struct TestFed {
    fed: Federation,
    client: reqwest::Client,
    enrollment_secret: String,
    dir: Option<tempfile::TempDir>,
}

impl Drop for TestFed {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test failed: configs and logs kept in {}", kept.display());
        }
    }
}

async fn start(topology: Topology) -> TestFed {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-offload-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.readiness_deadline = Duration::from_secs(45);
    let enrollment_secret = options.enrollment_secret.clone();
    eprintln!("run dir: {}", options.run_dir.display());
    let fed = match Federation::start(topology, options).await {
        Ok(f) => f,
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    };
    TestFed {
        fed,
        client: http_client(),
        enrollment_secret,
        dir: Some(dir),
    }
}

impl TestFed {
    /// Places echo on `nodes` hosts targeted at `target`, and waits until every host lists
    /// the others as alive peers.
    async fn place_echo(&self, nodes: usize, target: &str) -> Placed {
        let placed = place_function(
            &self.client,
            &self.fed.marketplace_url(),
            echo_sla(nodes),
            target,
        )
        .await
        .unwrap_or_else(|e| panic!("placing echo: {e:#}"));
        assert_eq!(placed.hosts.len(), nodes, "{:#}", placed.answer);
        wait_offload_ready(
            &self.client,
            &self.fed,
            &placed.service,
            &placed.hosts,
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        placed
    }

    fn node_url(&self, name: &str) -> &str {
        self.fed
            .node_url(name)
            .unwrap_or_else(|| panic!("no node `{name}`"))
    }

    /// `GET /api/offload` of a node.
    async fn offload_state(&self, name: &str) -> Value {
        let url = format!("{}/api/offload", self.node_url(name));
        let r = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status(), StatusCode::OK, "GET {url}");
        r.json().await.unwrap_or(Value::Null)
    }

    /// The URL of `service` on a node's data plane.
    fn data_plane(&self, node: &str, service: &str) -> String {
        format!("{}/function/{service}", self.node_url(node))
    }
}

/// A star of the hosts around the first one that is not hot (2 ms links), every node on
/// `lease` with its capacity for echo.
fn hosts_topology(hosts: &[(&str, f64)], hot: &str) -> (Scenario, Topology) {
    use model::offload::scenario::{LoadScenario, ScenarioHost, ScenarioLoad};
    let root = hosts
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != hot)
        .unwrap_or(hot);
    let spec = LoadScenario {
        name: "test".into(),
        description: "test".into(),
        hosts: hosts
            .iter()
            .map(|(n, c)| ScenarioHost {
                name: n.to_string(),
                capacity: *c,
                parent: (*n != root).then(|| root.to_string()),
                latency: model::units::Latency::from_millis(if *n == root { 0 } else { 2 }),
            })
            .collect(),
        // The tests send their own loads.
        loads: vec![ScenarioLoad {
            node: hot.to_string(),
            cycle: vec![0.0],
        }],
    };
    let scenario = Scenario::from_spec(&spec, DELAY_MS).unwrap_or_else(|e| panic!("{e:#}"));
    let topology = scenario
        .topology("lease")
        .unwrap_or_else(|e| panic!("{e:#}"));
    (scenario, topology)
}

/// Runs `streams` and returns the records.
async fn run_load(streams: Vec<Stream>, start: Instant) -> LoadResult {
    let client = load::load_client().expect("load client");
    load::run(
        &client,
        streams,
        &LoadOptions {
            start: Some(start),
            ..LoadOptions::default()
        },
    )
    .await
    .expect("the load runs")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A short description of the failed records, for assertion messages.
fn failures(records: &[load::RequestRecord]) -> String {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| !r.outcome.is_success())
        .take(10)
        .map(|r| {
            format!(
                "{:.2}s {:?} {:?} {:?}",
                r.scheduled.as_secs_f64(),
                r.outcome,
                r.reject_reason,
                r.path
            )
        })
        .collect();
    if out.is_empty() {
        out.push("none".into());
    }
    out.join("; ")
}

// ---------------------------------------------------------------------------------------------
// A pseudo-node: enrolled with the marketplace under its own key, so it is a known sender of
// the route table, but runs no fog node. It signs forwards like a peer would.

/// A signature of `sender` with `key` for `recipient`, over a forward's target.
#[allow(clippy::too_many_arguments)]
fn sign_forward(
    key: &SecretKey,
    sender: &str,
    recipient: &str,
    at: Timestamp,
    path_and_query: &str,
    hops: u32,
    route: &str,
    body: &[u8],
) -> String {
    let target = auth::forward_target(path_and_query, hops, route);
    auth::sign(
        key,
        sender,
        recipient,
        at,
        Nonce::random(&mut rand::rng()),
        &RequestTarget::new("POST", &target, body),
    )
}

struct PseudoNode {
    id: NodeId,
    key: SecretKey,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Drop for PseudoNode {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

impl PseudoNode {
    /// Registers `name` (a root with no children, so no auction reaches it) and keeps it alive
    /// with heartbeats.
    async fn enroll(t: &TestFed, name: &str) -> PseudoNode {
        let key = SecretKey::generate(&mut rand::rng());
        let body = serde_json::to_vec(&RegisterRequest {
            node_id: None,
            name: name.to_string(),
            public_key: key.public(),
            owner: "tester".into(),
            tags: Vec::new(),
            parent: None,
            url: "http://127.0.0.1:1".into(),
            capacity: Resources {
                cpu: Cpu::from_millis(10),
                memory: Bytes::new(1 << 20),
            },
            protocol_version: Some(PROTOCOL_VERSION),
        })
        .expect("RegisterRequest serializes");
        let auth = enrollment::sign(
            t.enrollment_secret.as_bytes(),
            name,
            Timestamp::now(),
            "POST",
            "/api/register",
            &body,
        );
        let market = t.fed.marketplace_url();
        let r = t
            .client
            .post(format!("{market}/api/register"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /api/register answers");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "registering {name}: {text}");
        let resp: RegisterResponse =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let (id, client, hb_key) = (resp.node_id, t.client.clone(), key.clone());
        let heartbeats = tokio::spawn(async move {
            let path = format!("/api/heartbeat/{id}");
            let body = serde_json::to_vec(&HeartbeatRequest {
                reserved: Resources::ZERO,
                url: None,
            })
            .unwrap_or_default();
            loop {
                let auth = auth::sign(
                    &hb_key,
                    &id.to_string(),
                    MARKETPLACE,
                    Timestamp::now(),
                    Nonce::random(&mut rand::rng()),
                    &RequestTarget::new("POST", &path, &body),
                );
                let _ = client
                    .post(format!("{market}{path}"))
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        PseudoNode {
            id,
            key,
            heartbeats,
        }
    }

    /// The `X-Fogmarket-Forward` value this node would send for a POST of `body`.
    fn signature(
        &self,
        recipient: &str,
        path_and_query: &str,
        hops: u32,
        route: &str,
        body: &str,
        at: Timestamp,
    ) -> String {
        sign_forward(
            &self.key,
            &self.id.to_string(),
            recipient,
            at,
            path_and_query,
            hops,
            route,
            body.as_bytes(),
        )
    }

    /// A forwarded POST as this node would send it, signed now.
    fn forward(
        &self,
        client: &reqwest::Client,
        recipient: &str,
        url: &str,
        path_and_query: &str,
        hops: u32,
        route: &'static str,
    ) -> reqwest::RequestBuilder {
        let body = "forwarded";
        let header = self.signature(
            recipient,
            path_and_query,
            hops,
            route,
            body,
            Timestamp::now(),
        );
        forwarded(client, url, header, &hops.to_string(), route, body)
    }
}

/// A POST of `body` to `url` carrying the forwarding headers as given.
fn forwarded(
    client: &reqwest::Client,
    url: &str,
    signature: String,
    hops: &str,
    route: &str,
    body: &'static str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header(FORWARD_HEADER, signature)
        .header(HOPS_HEADER, hops)
        .header(ROUTE_HEADER, route)
        .body(body)
}

/// Status, reject reason and served-by of an answer (body read).
async fn outcome(r: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Option<String>) {
    let resp = r.send().await.expect("the node answers");
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (reason, served) = (h(load::REJECT_REASON_HEADER), h(load::SERVED_BY_HEADER));
    let status = resp.status();
    let _ = resp.bytes().await;
    (status, reason, served)
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_node_at_four_times_its_capacity_is_relieved_by_its_peers_and_nearly_every_request_succeeds()
 {
    // n1 sustains 10 req/s and receives 40; n2 and n3 sustain 30 each: 70 in aggregate.
    let (scenario, topology) = hosts_topology(&[("n1", 10.0), ("n2", 30.0), ("n3", 30.0)], "n1");
    let t = start(topology).await;
    let placed = t.place_echo(3, "n1").await;
    let url = with_delay(&placed.invoke_url, scenario.delay_ms);
    let result = run_load(
        vec![Stream::post(
            "n1",
            url,
            "hot",
            Schedule::Constant {
                rate: 40.0,
                duration: secs(12.0),
            },
        )],
        Instant::now(),
    )
    .await;

    let s = result.summary(secs(2.0));
    eprintln!(
        "success {:.3}, settled {:?}, worst second {:?}, served {:?}, outcomes {:?}, per second {:?}",
        s.success_rate,
        s.settled_success_rate,
        s.settled_min_second_success,
        s.served_by,
        s.outcomes,
        s.per_second
            .iter()
            .map(|p| (p.second, p.ok, p.scheduled))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.lost, 0, "the load generator kept up");
    let settled = s.settled_success_rate.expect("requests after 2 s");
    assert!(
        settled >= 0.99,
        "success after the first two seconds is {settled:.3}; failures: {}",
        failures(&result.records)
    );
    // n1 alone could serve at most a quarter; the peers must have served the rest.
    let helpers: Vec<(&String, &u64)> = s
        .served_by
        .iter()
        .filter(|(n, c)| n.as_str() != "n1" && **c > 0)
        .collect();
    assert!(
        !helpers.is_empty(),
        "no peer served anything: {:?}",
        s.served_by
    );
    let by_peers: u64 = helpers.iter().map(|(_, c)| **c).sum();
    assert!(
        by_peers as f64 >= 0.5 * s.ok as f64,
        "peers served {by_peers} of {}: {:?}",
        s.ok,
        s.served_by
    );
    assert!(s.ok_forwarded > 0, "no answer crossed more than one node");
    // Every served request names a host and a path that starts at the access node.
    for r in result.records.iter().filter(|r| r.outcome.is_success()) {
        let by = r.served_by.as_deref().unwrap_or("none");
        assert!(
            placed.hosts.iter().any(|h| h == by),
            "served by {by}: {r:?}"
        );
        assert_eq!(r.path_nodes().first().copied(), Some("n1"), "{r:?}");
        assert_eq!(r.path_nodes().last().copied(), Some(by), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_is_lost_while_the_weights_change() {
    let (scenario, topology) = hosts_topology(&[("n1", 10.0), ("n2", 30.0), ("n3", 30.0)], "n1");
    let t = start(topology).await;
    let placed = t.place_echo(3, "n1").await;
    let url = with_delay(&placed.invoke_url, scenario.delay_ms);
    // Below capacity, four times it, below again, four times again, below: weights move to
    // the peers and back twice.
    let rates = [
        5.0, 5.0, 5.0, 40.0, 40.0, 40.0, 40.0, 5.0, 5.0, 5.0, 40.0, 40.0, 40.0, 5.0, 5.0,
    ];
    let start = Instant::now();
    let load = tokio::spawn(run_load(
        vec![Stream::post(
            "n1",
            url,
            "step",
            Schedule::PerSecond(rates.to_vec()),
        )],
        start,
    ));
    // Watch n1's weights for the function while the load runs.
    let mut seen: Vec<Value> = Vec::new();
    while start.elapsed() < secs(rates.len() as f64) {
        let state = t.offload_state("n1").await;
        if let Some(entry) = offload_entry(&state, &placed.service) {
            let w = entry["weights"].clone();
            if seen.last() != Some(&w) {
                seen.push(w);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = load.await.expect("the load task");
    let s = result.summary(Duration::ZERO);
    eprintln!(
        "weights seen at n1: {seen:?}; served {:?}; outcomes {:?}",
        s.served_by, s.outcomes
    );
    assert!(
        seen.len() >= 3,
        "n1's weights should have changed at least twice: {seen:?}"
    );
    let local: Vec<u64> = seen.iter().filter_map(|w| w["local"].as_u64()).collect();
    assert!(
        local.iter().any(|l| *l < 1000),
        "n1 never sent weight to a peer: {seen:?}"
    );
    assert!(
        local
            .iter()
            .enumerate()
            .any(|(i, l)| local[..i].iter().any(|earlier| l > earlier)),
        "weight never moved back towards n1 when the load dropped: {local:?}"
    );
    assert_eq!(
        s.ok,
        s.scheduled,
        "every request must succeed across weight changes; failures: {}",
        failures(&result.records)
    );
    assert!(
        s.served_by.keys().filter(|n| n.as_str() != "n1").count() >= 1,
        "{:?}",
        s.served_by
    );
}

/// Two hosts (`n1`, `n2`) and a node that cannot host the SLA (`n3`, too little CPU), so `n3`
/// is an access node for the function.
fn two_hosts_and_an_access_node() -> Topology {
    let (_, mut topology) = hosts_topology(&[("n1", 10.0), ("n2", 10.0)], "n1");
    let text = topology.to_toml_string().expect("topology serializes");
    let text = format!(
        "{text}\n[[node]]\nname = \"n3\"\nowner = \"owner-n3\"\ncpu = \"100 m\"\nmemory = \"1 GiB\"\n\
         parent = \"n2\"\nlatency = \"2 ms\"\n\
         pricing = {{ model = \"quadratic\", aa = 0.01, bb = 0.1, electricity = 0.9 }}\n"
    );
    topology = Topology::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    topology
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_tampered_forwarding_signatures_are_refused_with_403() {
    let t = start(two_hosts_and_an_access_node()).await;
    let placed = t.place_echo(2, "n1").await;
    let pseudo = PseudoNode::enroll(&t, "prober").await;
    let pq = format!("/function/{}", placed.service);
    let url = t.data_plane("n1", &placed.service);
    let n1 = t.fed.node_id("n1").expect("n1 id").to_string();
    let c = &t.client;

    // The control: a validly signed offload from an enrolled node is served (once the host's
    // route table lists the new node).
    poll_until(
        Duration::from_secs(15),
        "n1 to accept a valid forward from the enrolled pseudo-node",
        || async {
            let (status, _, served) =
                outcome(pseudo.forward(c, &n1, &url, &pq, 1, "offload")).await;
            (status == StatusCode::OK && served.as_deref() == Some("n1")).then_some(())
        },
    )
    .await;

    let n2 = t.fed.node_id("n2").expect("n2 id").to_string();
    let now = Timestamp::now();
    let valid = pseudo.signature(&n1, &pq, 1, "offload", "x", now);
    let forged_mac = format!(
        "{} {n2}:{n1}:{}:{}:{}",
        auth::SCHEME,
        now.as_millis(),
        "ab".repeat(16),
        "ab".repeat(64)
    );
    let wrong_key = sign_forward(
        &SecretKey::generate(&mut rand::rng()),
        &n2,
        &n1,
        now,
        &pq,
        1,
        "offload",
        b"x",
    );
    let unknown_sender = sign_forward(
        &pseudo.key,
        &uuid::Uuid::new_v4().to_string(),
        &n1,
        now,
        &pq,
        1,
        "offload",
        b"x",
    );
    let for_n2 = pseudo.signature(&n2, &pq, 1, "offload", "x", now);
    let minute_old = pseudo.signature(
        &n1,
        &pq,
        1,
        "offload",
        "x",
        Timestamp::from_millis(now.as_millis().saturating_sub(60_000)),
    );
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "a made-up MAC claiming to be n2",
            forwarded(c, &url, forged_mac, "1", "offload", "x"),
        ),
        (
            "n2's id signed with the wrong key",
            forwarded(c, &url, wrong_key, "1", "offload", "x"),
        ),
        (
            "a sender the route table does not know",
            forwarded(c, &url, unknown_sender, "1", "offload", "x"),
        ),
        (
            "a signature addressed to n2, sent to n1",
            forwarded(c, &url, for_n2, "1", "offload", "x"),
        ),
        (
            "a valid signature with another body",
            forwarded(c, &url, valid.clone(), "1", "offload", "tampered"),
        ),
        (
            "a valid signature with the hop count lowered",
            forwarded(c, &url, valid.clone(), "0", "offload", "x"),
        ),
        (
            "a valid signature with the route kind changed",
            forwarded(c, &url, valid.clone(), "1", "access", "x"),
        ),
        (
            "a valid signature on another query",
            forwarded(
                c,
                &format!("{url}?delay_ms=1"),
                valid.clone(),
                "1",
                "offload",
                "x",
            ),
        ),
        (
            "a signature a minute old",
            forwarded(c, &url, minute_old, "1", "offload", "x"),
        ),
        (
            "a DFaaS-style plain identity header",
            forwarded(c, &url, n2.clone(), "1", "offload", "x"),
        ),
    ];
    for (what, request) in cases {
        let (status, _, served) = outcome(request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(served, None, "{what}: the function must not run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_forward_out_of_hops_at_a_node_not_hosting_the_function_gets_508() {
    let t = start(two_hosts_and_an_access_node()).await;
    let placed = t.place_echo(2, "n1").await;
    let pseudo = PseudoNode::enroll(&t, "prober").await;
    let pq = format!("/function/{}", placed.service);
    let url = t.data_plane("n3", &placed.service);
    let n3 = t.fed.node_id("n3").expect("n3 id").to_string();
    let n2 = t.fed.node_id("n2").expect("n2 id").to_string();
    let c = &t.client;

    // One hop left: n3 (not a host) forwards to a host.
    let served = poll_until(
        Duration::from_secs(15),
        "n3 to forward a valid request with one hop left",
        || async {
            let (status, _, served) =
                outcome(pseudo.forward(c, &n3, &url, &pq, MAX_HOPS - 1, "access")).await;
            (status == StatusCode::OK).then_some(served)
        },
    )
    .await;
    assert!(
        matches!(served.as_deref(), Some("n1" | "n2")),
        "served by {served:?}"
    );

    // At the limit: never forwarded, and n3 cannot serve it.
    let (status, reason, served) =
        outcome(pseudo.forward(c, &n3, &url, &pq, MAX_HOPS, "access")).await;
    assert_eq!(status.as_u16(), 508, "reason {reason:?}");
    assert_eq!(reason.as_deref(), Some("hop_limit"));
    assert_eq!(served, None);

    // A host serves a request at the hop limit itself instead of forwarding it.
    let host = t.data_plane("n2", &placed.service);
    let (status, _, served) = outcome(pseudo.forward(c, &n2, &host, &pq, MAX_HOPS, "access")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served.as_deref(), Some("n2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_load_gets_no_more_requests_and_every_request_succeeds_again_within_seconds()
 {
    // n1 sustains 10 req/s and receives 30; either peer alone can take the other 20.
    let (scenario, topology) = hosts_topology(&[("n1", 10.0), ("n2", 30.0), ("n3", 30.0)], "n1");
    let t = start(topology).await;
    let placed = t.place_echo(3, "n1").await;
    let url = with_delay(&placed.invoke_url, scenario.delay_ms);
    let duration = 16.0;
    let kill_at = secs(5.0);
    let recovered_by = secs(10.0);
    let start = Instant::now();
    let load = tokio::spawn(run_load(
        vec![Stream::post(
            "n1",
            url,
            "kill",
            Schedule::Constant {
                rate: 30.0,
                duration: secs(duration),
            },
        )],
        start,
    ));
    tokio::time::sleep_until(start + kill_at).await;
    // Kill the peer n1 currently sends the most to (n2 is the star's centre; both are peers).
    let state = t.offload_state("n1").await;
    let entry = offload_entry(&state, &placed.service)
        .unwrap_or_else(|| panic!("n1 does not list the function: {state:#}"));
    let weights = &entry["weights"]["peers"];
    let victim = ["n2", "n3"]
        .into_iter()
        .max_by_key(|p| weights[*p].as_u64().unwrap_or(0))
        .unwrap_or("n3");
    eprintln!(
        "n1's weights at {kill_at:?}: {}; killing {victim}",
        entry["weights"]
    );
    let mut t = t;
    t.fed.kill_node(victim).await.expect("kill the peer");
    let killed_at = start.elapsed();
    let result = load.await.expect("the load task");

    let before = result.between(Duration::ZERO, kill_at);
    let served_before = before
        .iter()
        .filter(|r| r.outcome.is_success() && r.served_by.as_deref() == Some(victim))
        .count();
    assert!(
        served_before > 0,
        "{victim} served nothing before it was killed: the test would prove nothing"
    );
    let after = result.between(recovered_by, secs(duration + 1.0));
    let s = load::summarise(&after, Duration::ZERO);
    eprintln!(
        "killed {victim} at {killed_at:?}; from {recovered_by:?}: {} of {} ok, served {:?}, outcomes {:?}",
        s.ok, s.scheduled, s.served_by, s.outcomes
    );
    assert!(s.scheduled > 100, "{s:?}");
    assert_eq!(
        s.ok,
        s.scheduled,
        "every request from {recovered_by:?} on must succeed; failures: {}",
        failures(&after)
    );
    for r in &after {
        assert!(
            !r.path_nodes().contains(&victim),
            "a request went to the killed {victim}: {r:?}"
        );
    }
    // The dead peer is dead in n1's view too.
    let state = t.offload_state("n1").await;
    let entry = offload_entry(&state, &placed.service).expect("n1 lists the function");
    let alive: BTreeSet<String> = alive_peers(entry);
    assert!(!alive.contains(victim), "{}", entry["peers"]);
}
