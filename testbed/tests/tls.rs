//! The federation over TLS with the real binaries: the launcher makes a throwaway CA and one
//! certificate per process (`LaunchOptions::tls`), every API is HTTPS, and every member
//! trusts only that CA. Enrollment, heartbeats, the auction relay (marketplace -> node ->
//! node), provisioning and a forwarded invocation (access node -> host) all cross TLS;
//! a client that does not trust the CA, and plain HTTP to a TLS port, are refused.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`just test` does). SQLite only.

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use testbed::bench_offload::{echo_sla, place_function};
use testbed::{Federation, LaunchOptions, Topology, http_client, poll_until};

/// `edge-small` cannot host the test's function (100 m of CPU for an SLA asking 250 m), so
/// the function placed near it runs elsewhere and its invocations are forwarded.
const TREE: &str = r#"
[marketplace]
auction_timeout_ms = 3000

[[node]]
name = "cloud"
owner = "cloud-co"
tags = ["cloud"]
cpu = "16 cpu"
memory = "16 GiB"

[[node]]
name = "regional"
parent = "cloud"
latency = "10 ms"
owner = "metro"
cpu = "4 cpu"
memory = "8 GiB"

[[node]]
name = "edge-small"
parent = "regional"
latency = "5 ms"
owner = "alice"
cpu = "100 m"
memory = "1 GiB"

[[node]]
name = "edge-big"
parent = "regional"
latency = "5 ms"
owner = "bob"
cpu = "2 cpu"
memory = "4 GiB"
"#;

const ACCESS: &str = "edge-small";

struct Tls {
    fed: Federation,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test failed: configs and logs kept in {}", kept.display());
        }
    }
}

async fn start() -> Tls {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-tls-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.tls = true;
    options.readiness_deadline = Duration::from_secs(45);
    let topology = Topology::parse(TREE).expect("the test topology parses");
    match Federation::start(topology, options).await {
        Ok(fed) => Tls {
            fed,
            dir: Some(dir),
        },
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    }
}

/// The error and its causes on one line.
fn chain(e: &reqwest::Error) -> String {
    signed_http::error_chain(e)
}

fn all_urls(t: &Tls) -> Vec<(String, String)> {
    let mut urls = vec![("marketplace".to_string(), t.fed.marketplace_url())];
    for name in t.fed.node_names() {
        urls.push((
            name.to_string(),
            t.fed.node_url(name).expect("known node").to_string(),
        ));
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federation_over_tls_places_provisions_and_forwards_and_refuses_untrusted_clients() {
    let t = start().await;
    let client = t.fed.client().clone();
    assert!(t.fed.tls());

    // Every member answers over HTTPS with the run's CA, and only there.
    for (name, url) in all_urls(&t) {
        assert!(url.starts_with("https://127.0.0.1:"), "{name}: {url}");
        let r = client
            .get(format!("{url}/api/health"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name} over HTTPS: {}", chain(&e)));
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    // The nodes enrolled over TLS and registered their https:// URLs.
    let fog: Value = client
        .get(format!("{}/api/fog", t.fed.marketplace_url()))
        .send()
        .await
        .expect("GET /api/fog")
        .json()
        .await
        .expect("GET /api/fog is JSON");
    let nodes = fog.as_array().expect("a list of nodes");
    assert_eq!(nodes.len(), 4, "{fog:#}");
    for n in nodes {
        let url = n["url"].as_str().unwrap_or_default();
        assert!(url.starts_with("https://"), "{n:#}");
        assert_eq!(n["alive"], true, "{n:#}");
    }

    // An auction across nodes (marketplace -> access node -> its neighbours, signed calls over
    // TLS), the winner's provisioning, then an invocation at the access node, which does not
    // host the function and forwards it over TLS.
    let placed = place_function(&client, &t.fed.marketplace_url(), echo_sla(1), ACCESS)
        .await
        .unwrap_or_else(|e| panic!("placement over TLS: {e:#}"));
    let bids = placed.answer["proposals"]["bids"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(bids >= 2, "bids relayed across nodes: {:#}", placed.answer);
    assert_eq!(placed.hosts.len(), 1, "{:#}", placed.answer);
    let host = placed.hosts[0].clone();
    assert_ne!(host, ACCESS, "the access node cannot host the function");
    let access_url = t.fed.node_url(ACCESS).expect("access node");
    assert!(
        placed.invoke_url.starts_with(access_url),
        "{} is not at {ACCESS} ({access_url})",
        placed.invoke_url
    );
    let (body, path, served_by, decision) = poll_until(
        Duration::from_secs(20),
        "an invocation through the access node to succeed",
        || async {
            let r = client
                .post(&placed.invoke_url)
                .body("over tls")
                .send()
                .await
                .map_err(|e| chain(&e))?;
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let status = r.status();
            let (path, served_by) = (header("x-fogmarket-path"), header("x-fogmarket-served-by"));
            let decision = header("x-fogmarket-decision");
            let body = r.text().await.map_err(|e| chain(&e))?;
            if status == StatusCode::OK {
                Ok((body, path, served_by, decision))
            } else {
                Err(format!("{status} via {path}: {body}"))
            }
        },
    )
    .await;
    assert_eq!(body, "over tls");
    assert_eq!(served_by, host);
    assert_eq!(path, format!("{ACCESS}, {host}"));
    assert_eq!(decision, "forwarded");

    // A client that does not trust the run's CA is refused by every member, for the
    // certificate; plain HTTP to a TLS port gets no HTTP answer.
    let untrusting = http_client();
    for (name, url) in all_urls(&t) {
        let e = untrusting
            .get(format!("{url}/api/health"))
            .send()
            .await
            .expect_err("a client not trusting the CA must be refused");
        let why = chain(&e).to_lowercase();
        assert!(why.contains("certificate"), "{name}: {why}");
        let plain = url.replacen("https://", "http://", 1);
        match untrusting.get(format!("{plain}/api/health")).send().await {
            Err(_) => {}
            Ok(r) => panic!("{name}: plain HTTP to the TLS port answered {}", r.status()),
        }
    }
}
