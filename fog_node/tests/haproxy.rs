//! Integration tests of the HAProxy data-plane driver against the real `haproxy` binary.
//!
//! Each test fails when `haproxy` is not installed. Without it, `just test` reports these
//! tests as skipped instead of starting them; CI installs it, so there they always run.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use fog_node::haproxy as hp;
use hp::{
    Desired, FunctionBackend, Haproxy, HaproxyError, HaproxySettings, ServerKind, ServerSpec,
};

// ---------------------------------------------------------------- helpers

/// Fails the test when `haproxy` is not installed. `just test` does not start these tests
/// then: it reports them as skipped, and CI installs HAProxy.
fn require_haproxy(test: &str) {
    let installed = std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        installed,
        "{test}: `haproxy` is not installed (apt-get install haproxy); `just test` skips these tests without it"
    );
}

/// A hyper HTTP/1 server that echoes what it received: `upstream=<name>`, `method=`, `uri=`,
/// then one `header:<name>=<value>` line per header.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream(name: &'static str) -> Upstream {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            connections.spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut body = format!(
                        "upstream={name}\nmethod={}\nuri={}\n",
                        req.method(),
                        req.uri()
                    );
                    for (k, v) in req.headers() {
                        body.push_str(&format!(
                            "header:{}={}\n",
                            k.as_str(),
                            v.to_str().unwrap_or("?")
                        ));
                    }
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, hits, task }
}

/// Starts HAProxy in `dir` on a free port (retrying if the port was taken meanwhile).
async fn start_haproxy(dir: &tempfile::TempDir) -> Haproxy {
    let mut last = None;
    for _ in 0..3 {
        let port = hp::free_port().unwrap();
        let settings = HaproxySettings::new(dir.path(), SocketAddr::from(([127, 0, 0, 1], port)));
        match Haproxy::start(settings).await {
            Ok(h) => return h,
            Err(e) => last = Some(e),
        }
    }
    panic!("haproxy did not start: {}", last.unwrap());
}

fn server(name: &str, addr: SocketAddr, per_mille: u32, kind: ServerKind) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        addr,
        weight_per_mille: per_mille,
        kind,
    }
}

fn unused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// A function with a local server `local` (upstream A) and a peer `peer` (upstream B).
fn two_way(service: &str, a: &Upstream, local: u32, b: &Upstream, peer: u32) -> FunctionBackend {
    FunctionBackend {
        service: service.into(),
        aliases: vec![],
        servers: vec![
            server("local", a.addr, local, ServerKind::Local),
            server("peer1", b.addr, peer, ServerKind::Peer),
        ],
        server_name_header: None,
        peer_headers: vec![],
    }
}

fn desired(functions: Vec<FunctionBackend>) -> Desired {
    Desired { functions }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    (status, headers, body)
}

/// Sends `n` sequential requests and counts them by `upstream=` line (or `status <code>`).
async fn distribution(client: &reqwest::Client, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let (status, _, body) = get(client, url).await;
        let key = match body.lines().next() {
            Some(line) if status == 200 => line.trim_start_matches("upstream=").to_string(),
            _ => format!("status {status}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn parse_pid(show_info: &str) -> u32 {
    show_info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Pid in show info: {show_info:?}"))
}

/// A client that opens a fresh connection per request (so it always meets the current worker).
fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `e` and all its sources, `: `-separated (reqwest's Display hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[derive(Debug, Default)]
struct LoadReport {
    ok: usize,
    failures: Vec<String>,
}

/// Runs `workers` concurrent request loops against `url` until `stop` is set.
fn spawn_load(
    client: reqwest::Client,
    url: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<LoadReport> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut report = LoadReport::default();
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status().as_u16() == 200 => match r.bytes().await {
                            Ok(_) => report.ok += 1,
                            Err(e) => report.failures.push(format!("body: {e}")),
                        },
                        Ok(r) => report.failures.push(format!("status {}", r.status())),
                        Err(e) => report.failures.push(format!("error: {}", error_chain(&e))),
                    }
                }
                report
            }));
        }
        let mut total = LoadReport::default();
        for t in tasks {
            let r = t.await.unwrap();
            total.ok += r.ok;
            total.failures.extend(r.failures);
        }
        total
    })
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_request_reaches_the_local_upstream_with_path_query_and_headers_intact() {
    require_haproxy("routing");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let a = upstream("A").await;
    let function = FunctionBackend {
        service: "fogfn-3f2a".into(),
        aliases: vec!["echo-live".into()],
        servers: vec![server("local", a.addr, 1000, ServerKind::Local)],
        server_name_header: None,
        peer_headers: vec![
            ("X-Fogmarket-Route".into(), "offload".into()),
            ("X-Fogmarket-Hops".into(), "1".into()),
            ("X-Fogmarket-Peer".into(), "tok%en\"$x".into()),
        ],
    };
    let outcome = h.apply(&desired(vec![function])).await.unwrap();
    assert!(outcome.reloaded);

    let client = reqwest::Client::new();
    let url = format!("{}/function/fogfn-3f2a/sub?q=1", h.frontend_url());
    let (status, _, body) = get(&client, &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("upstream=A\n"), "{body}");
    assert!(body.contains("method=GET\n"), "{body}");
    assert!(
        body.contains("uri=/function/fogfn-3f2a/sub?q=1\n"),
        "{body}"
    );
    assert!(
        body.contains("header:x-fogmarket-route=offload\n"),
        "{body}"
    );
    assert!(body.contains("header:x-fogmarket-hops=1\n"), "{body}");
    assert!(
        body.contains("header:x-fogmarket-peer=tok%en\"$x\n"),
        "{body}"
    );

    // The bare service path and the alias route to the same backend.
    let (status, _, body) = get(
        &client,
        &format!("{}/function/fogfn-3f2a", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("uri=/function/fogfn-3f2a\n"), "{body}");
    let (status, _, body) = get(
        &client,
        &format!("{}/function/echo-live/x", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("upstream=A\n"), "{body}");

    // A longer name sharing the prefix is not this function.
    let (status, _, _) = get(
        &client,
        &format!("{}/function/fogfn-3f2ab", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weights_steer_traffic_between_local_and_peer_without_reloading() {
    require_haproxy("weights");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    let client = reqwest::Client::new();
    let url = format!("{}/function/svc", h.frontend_url());

    assert!(
        h.apply(&desired(vec![two_way("svc", &a, 1000, &b, 0)]))
            .await
            .unwrap()
            .reloaded
    );
    let pid = parse_pid(&h.runtime("show info").await.unwrap());
    let counts = distribution(&client, &url, 100).await;
    assert_eq!(counts, BTreeMap::from([("A".to_string(), 100)]));

    let outcome = h
        .apply(&desired(vec![two_way("svc", &a, 0, &b, 1000)]))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        hp::ApplyOutcome {
            reloaded: false,
            weight_commands: 2
        }
    );
    assert_eq!(parse_pid(&h.runtime("show info").await.unwrap()), pid);
    let counts = distribution(&client, &url, 100).await;
    assert_eq!(counts, BTreeMap::from([("B".to_string(), 100)]));

    let outcome = h
        .apply(&desired(vec![two_way("svc", &a, 500, &b, 500)]))
        .await
        .unwrap();
    assert!(!outcome.reloaded);
    assert_eq!(parse_pid(&h.runtime("show info").await.unwrap()), pid);
    let counts = distribution(&client, &url, 400).await;
    let (na, nb) = (
        counts.get("A").copied().unwrap_or(0),
        counts.get("B").copied().unwrap_or(0),
    );
    assert_eq!(na + nb, 400, "{counts:?}");
    assert!(
        na >= 100 && nb >= 100,
        "each should get >= 25 %: {counts:?}"
    );

    // An unchanged desired state sends nothing.
    let outcome = h
        .apply(&desired(vec![two_way("svc", &a, 500, &b, 500)]))
        .await
        .unwrap();
    assert_eq!(outcome, hp::ApplyOutcome::default());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reject_weight_of_1000_answers_429_with_retry_after_and_the_reason() {
    require_haproxy("reject");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let a = upstream("A").await;
    let function = FunctionBackend {
        service: "svc".into(),
        aliases: vec![],
        servers: vec![
            server("local", a.addr, 0, ServerKind::Local),
            // The address of a Reject server is ignored: it points at the built-in listener.
            server("reject", unused_addr(), 1000, ServerKind::Reject),
        ],
        server_name_header: None,
        peer_headers: vec![],
    };
    h.apply(&desired(vec![function])).await.unwrap();
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let (status, headers, body) =
            get(&client, &format!("{}/function/svc/x", h.frontend_url())).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(headers["x-fogmarket-reject-reason"], "overloaded");
        assert_eq!(headers["x-fogmarket-decision"], "rejected");
        assert!(
            body.starts_with(r#"{"error":"overloaded","message":"#),
            "{body}"
        );
    }
    assert_eq!(a.hits.load(Ordering::SeqCst), 0);

    // The reject listener also answers directly.
    let (status, _, _) = get(&client, &format!("http://{}/anything", h.reject_addr())).await;
    assert_eq!(status, 429);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_whose_weights_are_all_zero_answers_503_in_json() {
    require_haproxy("all zero");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    h.apply(&desired(vec![two_way("svc", &a, 0, &b, 0)]))
        .await
        .unwrap();
    let (status, headers, body) = get(
        &reqwest::Client::new(),
        &format!("{}/function/svc", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(body.starts_with(r#"{"error":"unavailable""#), "{body}");
    let (status, headers, body) = get(
        &reqwest::Client::new(),
        &format!("{}/nothing/here", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(body.starts_with(r#"{"error":"not_found""#), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_a_function_reloads_and_removing_it_stops_routing_it() {
    require_haproxy("add/remove");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    let only = |f: u32| FunctionBackend {
        service: format!("f{f}"),
        aliases: vec![],
        servers: vec![server(
            "local",
            if f == 1 { a.addr } else { b.addr },
            1000,
            ServerKind::Local,
        )],
        server_name_header: None,
        peer_headers: vec![],
    };
    // Fresh connection per request: an idle keep-alive connection to the previous worker
    // would get one last answer from the previous configuration.
    let client = fresh_connection_client();
    let base = h.frontend_url();

    assert!(h.apply(&desired(vec![only(1)])).await.unwrap().reloaded);
    let pid1 = h.worker_pid().await.unwrap();
    assert_eq!(get(&client, &format!("{base}/function/f2")).await.0, 404);

    let outcome = h.apply(&desired(vec![only(1), only(2)])).await.unwrap();
    assert!(outcome.reloaded);
    let pid2 = h.worker_pid().await.unwrap();
    assert_ne!(pid1, pid2, "a reload starts a new worker");
    let (status, _, body) = get(&client, &format!("{base}/function/f2/run")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("upstream=B\n"), "{body}");
    assert!(
        get(&client, &format!("{base}/function/f1"))
            .await
            .2
            .starts_with("upstream=A")
    );

    let outcome = h.apply(&desired(vec![only(1)])).await.unwrap();
    assert!(outcome.reloaded);
    let status = get(&client, &format!("{base}/function/f2/run")).await.0;
    assert!(
        status == 404 || status == 503,
        "removed function answered {status}"
    );
    let (status, _, body) = get(&client, &format!("{base}/function/f1")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("upstream=A\n"), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weight_flips_under_load_lose_no_request() {
    require_haproxy("flips under load");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    h.apply(&desired(vec![two_way("svc", &a, 900, &b, 100)]))
        .await
        .unwrap();
    let pid = h.worker_pid().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        reqwest::Client::new(),
        format!("{}/function/svc/x", h.frontend_url()),
        8,
        stop.clone(),
    );
    let until = Instant::now() + Duration::from_secs(3);
    let mut flips = 0;
    while Instant::now() < until {
        let (wa, wb) = if flips % 2 == 0 {
            (100, 900)
        } else {
            (900, 100)
        };
        let outcome = h
            .apply(&desired(vec![two_way("svc", &a, wa, &b, wb)]))
            .await
            .unwrap();
        assert!(!outcome.reloaded);
        flips += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "weight flips: {flips}, ok: {}, failures: {}",
        report.ok,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} failures, first: {:?}\nhaproxy log:\n{}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)],
        std::fs::read_to_string(h.log_path()).unwrap_or_default()
    );
    assert!(
        report.ok >= 500,
        "load too small to prove anything: {}",
        report.ok
    );
    assert!(flips >= 20, "{flips}");
    assert!(a.hits.load(Ordering::SeqCst) > 0 && b.hits.load(Ordering::SeqCst) > 0);
    assert_eq!(h.worker_pid().await.unwrap(), pid, "no reload happened");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_loses_no_request() {
    require_haproxy("reload under load");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    h.apply(&desired(vec![two_way("svc", &a, 900, &b, 100)]))
        .await
        .unwrap();
    let pid = h.worker_pid().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        reqwest::Client::new(),
        format!("{}/function/svc/x", h.frontend_url()),
        8,
        stop.clone(),
    );
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let mut flips = 0;
    let mut reloads = 0;
    while Instant::now() < until {
        let (wa, wb) = if flips % 2 == 0 {
            (100, 900)
        } else {
            (900, 100)
        };
        let mut functions = vec![two_way("svc", &a, wa, &b, wb)];
        if start.elapsed() >= Duration::from_millis(1500) {
            functions.push(two_way("second", &b, 1000, &a, 0));
        }
        let outcome = h.apply(&desired(functions)).await.unwrap();
        reloads += usize::from(outcome.reloaded);
        flips += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "reloads: {reloads}, weight flips: {flips}, ok: {}, failures: {}",
        report.ok,
        report.failures.len()
    );
    assert_eq!(reloads, 1);
    assert_ne!(
        h.worker_pid().await.unwrap(),
        pid,
        "the reload started a new worker"
    );
    assert!(
        report.failures.is_empty(),
        "{} failures, first: {:?}\nhaproxy log:\n{}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)],
        std::fs::read_to_string(h.log_path()).unwrap_or_default()
    );
    assert!(
        report.ok >= 500,
        "load too small to prove anything: {}",
        report.ok
    );
    let (status, _, body) = get(
        &fresh_connection_client(),
        &format!("{}/function/second", h.frontend_url()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("upstream=B\n"), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn show_servers_state_reflects_the_applied_weights() {
    require_haproxy("servers state");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    let mut function = two_way("svc", &a, 700, &b, 299);
    function
        .servers
        .push(server("reject", unused_addr(), 1, ServerKind::Reject));
    h.apply(&desired(vec![function.clone()])).await.unwrap();

    let weights = |text: &str| -> BTreeMap<String, u32> {
        hp::parse_servers_state(text)
            .into_iter()
            .filter(|s| s.backend == hp::backend_name("svc"))
            .map(|s| (s.server, s.weight))
            .collect()
    };
    let state = h.runtime("show servers state").await.unwrap();
    assert_eq!(
        weights(&state),
        BTreeMap::from([
            ("local".to_string(), 179),
            ("peer1".to_string(), 77),
            ("reject".to_string(), 1),
        ]),
        "{state}"
    );
    // The reject server points at the built-in listener.
    let reject_row = hp::parse_servers_state(&state)
        .into_iter()
        .find(|s| s.server == "reject")
        .unwrap();
    assert_eq!(reject_row.addr, h.reject_addr().ip().to_string());

    function.servers[0].weight_per_mille = 0;
    function.servers[1].weight_per_mille = 500;
    function.servers[2].weight_per_mille = 500;
    let outcome = h.apply(&desired(vec![function])).await.unwrap();
    assert_eq!(outcome.weight_commands, 3);
    let state = h.runtime("show servers state").await.unwrap();
    assert_eq!(
        weights(&state),
        BTreeMap::from([
            ("local".to_string(), 0),
            ("peer1".to_string(), 128),
            ("reject".to_string(), 128),
        ]),
        "{state}"
    );

    // Errors of raw commands come back as answer text.
    let answer = h.runtime("set weight fn_svc/nosuch 3").await.unwrap();
    assert!(answer.contains("No such server"), "{answer:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_failure_is_retried_once_on_another_server() {
    require_haproxy("redispatch");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let a = upstream("A").await;
    // A port held by a socket that is bound but not listening: connections are refused, and
    // no concurrently running test can take the port meanwhile.
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dead = holder.local_addr().unwrap();
    let function = FunctionBackend {
        service: "svc".into(),
        aliases: vec![],
        servers: vec![
            server("local", a.addr, 500, ServerKind::Local),
            server("peer-dead", dead, 500, ServerKind::Peer),
        ],
        server_name_header: None,
        peer_headers: vec![],
    };
    h.apply(&desired(vec![function])).await.unwrap();
    let counts = distribution(
        &reqwest::Client::new(),
        &format!("{}/function/svc", h.frontend_url()),
        100,
    )
    .await;
    assert_eq!(counts, BTreeMap::from([("A".to_string(), 100)]));
    h.stop().await;
}

#[tokio::test]
async fn invalid_names_are_rejected_with_an_error_naming_the_value() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let ok = || FunctionBackend {
        service: "fogfn-ok".into(),
        aliases: vec![],
        servers: vec![server("local", addr, 1000, ServerKind::Local)],
        server_name_header: None,
        peer_headers: vec![],
    };
    let cases: Vec<(FunctionBackend, &str)> = vec![
        (
            FunctionBackend {
                service: "bad name".into(),
                ..ok()
            },
            "bad name",
        ),
        (
            FunctionBackend {
                aliases: vec!["live/x".into()],
                ..ok()
            },
            "live/x",
        ),
        (
            FunctionBackend {
                servers: vec![server("peer#1", addr, 10, ServerKind::Peer)],
                ..ok()
            },
            "peer#1",
        ),
        (
            FunctionBackend {
                servers: vec![server("", addr, 10, ServerKind::Peer)],
                ..ok()
            },
            "\"\"",
        ),
        (
            FunctionBackend {
                server_name_header: None,
                peer_headers: vec![("X-Bad Header".into(), "1".into())],
                ..ok()
            },
            "X-Bad Header",
        ),
        (
            FunctionBackend {
                server_name_header: None,
                peer_headers: vec![("X-Ok".into(), "a\r\nInjected: 1".into())],
                ..ok()
            },
            "X-Ok",
        ),
        (
            FunctionBackend {
                servers: vec![server("heavy", addr, 1001, ServerKind::Peer)],
                ..ok()
            },
            "1001",
        ),
    ];
    for (function, needle) in cases {
        let err = desired(vec![function.clone()]).normalised().unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "error for {function:?} should name {needle:?}: {err}"
        );
    }
    let dup = desired(vec![ok(), ok()]).normalised().unwrap_err();
    assert!(matches!(dup, HaproxyError::Duplicate { .. }), "{dup}");
    assert!(dup.to_string().contains("fogfn-ok"), "{dup}");

    // apply refuses them too, before touching HAProxy.
    require_haproxy("invalid names via apply");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let err = h
        .apply(&desired(vec![FunctionBackend {
            service: "x;reload".into(),
            ..ok()
        }]))
        .await
        .unwrap_err();
    assert!(matches!(err, HaproxyError::InvalidName { .. }), "{err}");
    assert!(err.to_string().contains("x;reload"), "{err}");
    assert!(h.apply(&desired(vec![ok()])).await.unwrap().reloaded);
    h.stop().await;
}

#[tokio::test]
async fn starting_with_a_missing_binary_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], hp::free_port().unwrap()));
    for binary in ["/nonexistent/haproxy", "haproxy-does-not-exist"] {
        let settings = HaproxySettings {
            binary: binary.into(),
            ..HaproxySettings::new(dir.path(), listen)
        };
        let err = Haproxy::start(settings).await.unwrap_err();
        assert!(matches!(err, HaproxyError::BinaryNotFound { .. }), "{err}");
        assert!(err.to_string().contains(binary), "{err}");
    }
    let err = Haproxy::start(HaproxySettings::new(
        dir.path(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("port 0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_ends_the_whole_process_group() {
    require_haproxy("stop");
    let dir = tempfile::tempdir().unwrap();
    let h = start_haproxy(&dir).await;
    let worker = h.worker_pid().await.unwrap();
    assert!(std::path::Path::new(&format!("/proc/{worker}")).exists());
    h.stop().await;
    let gone_by = Instant::now() + Duration::from_secs(5);
    // The worker is the master's child: after the master is reaped, it gets reaped by init;
    // a zombie has no cmdline, so treat an empty cmdline as gone.
    loop {
        let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).unwrap_or_default();
        if cmdline.is_empty() {
            break;
        }
        assert!(Instant::now() < gone_by, "worker {worker} survived stop()");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.path().exists(), "work_dir is left in place");
    assert!(dir.path().join("haproxy.cfg").exists());
}

/// Stress version of the reload test (slow, so ignored by default):
/// `cargo test --test haproxy -- --ignored` (RELOADS=<n> to change the count, default 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stress test; run with --ignored"]
async fn many_reloads_under_load_lose_no_request() {
    require_haproxy("many reloads");
    let dir = tempfile::tempdir().unwrap();
    let mut h = start_haproxy(&dir).await;
    let (a, b) = (upstream("A").await, upstream("B").await);
    h.apply(&desired(vec![two_way("svc", &a, 900, &b, 100)]))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(
        reqwest::Client::new(),
        format!("{}/function/svc/x", h.frontend_url()),
        8,
        stop.clone(),
    );
    let n: usize = std::env::var("RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for i in 0..n {
        let mut functions = vec![two_way("svc", &a, 500, &b, 500)];
        if i % 2 == 0 {
            functions.push(two_way("second", &b, 1000, &a, 0));
        }
        assert!(h.apply(&desired(functions)).await.unwrap().reloaded);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let report = load.await.unwrap();
    eprintln!(
        "reloads: {n}, ok: {}, failures: {}",
        report.ok,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{} failures, first: {:?}\nhaproxy log:\n{}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(10)],
        std::fs::read_to_string(h.log_path()).unwrap_or_default()
    );
    assert!(report.ok >= 1000, "{}", report.ok);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_haproxy_on_the_same_port_fails_instead_of_sharing_it() {
    require_haproxy("port in use");
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = start_haproxy(&dir1).await;
    let listen: SocketAddr = first
        .frontend_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // Without `noreuseport` both would bind (SO_REUSEPORT) and silently split the traffic.
    let err = Haproxy::start(HaproxySettings::new(dir2.path(), listen))
        .await
        .unwrap_err();
    assert!(matches!(err, HaproxyError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("cannot bind socket"), "{err}");
    first.stop().await;
}
