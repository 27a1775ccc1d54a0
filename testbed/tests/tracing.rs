//! Distributed tracing across real processes: the marketplace, two fog nodes (each with its
//! embedded gateway) and `fn-echo`, started by the testbed launcher with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver this test runs. The spans
//! must form one trace per placement and one per invocation, linked by parent span ids.
//!
//! Build the binaries first: `cargo build --workspace --bins` (`just test` does); at least
//! `marketplace`, `fog-node` and `fn-echo`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testbed::{Federation, LaunchOptions, Topology, http_client, poll_until};

// ---------------------------------------------------------------------------------------------
// A local OTLP/HTTP receiver

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    attributes: BTreeMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }

    fn component(&self) -> &str {
        self.attr("fogmarket.component")
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} `{}` [{}] trace {} span {} parent {}",
            self.service,
            self.kind,
            self.name,
            self.component(),
            self.trace_id,
            self.span_id,
            if self.parent_span_id.is_empty() {
                "-"
            } else {
                &self.parent_span_id
            }
        )
    }
}

fn value_text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value_text(&kv.value)))
        .collect()
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: attributes(&s.attributes),
                });
            }
        }
    }
    out
}

/// Accepts `POST /v1/traces` (protobuf) on 127.0.0.1 and keeps every span received.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let store = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = req.method() == hyper::Method::POST
                                && req.uri().path() == "/v1/traces";
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(decoded) if ok => {
                                    let mut all = store.lock().unwrap_or_else(|e| e.into_inner());
                                    all.extend(flatten(decoded));
                                    200
                                }
                                _ => 400,
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, spans, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Following the chain

/// The spans of one trace, indexed.
struct Trace<'a> {
    spans: Vec<&'a Span>,
}

impl<'a> Trace<'a> {
    fn of(all: &'a [Span], trace_id: &str) -> Trace<'a> {
        Trace {
            spans: all.iter().filter(|s| s.trace_id == trace_id).collect(),
        }
    }

    fn dump(&self) -> String {
        self.spans
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The one span matching, or why not.
    fn find(&self, what: &str, pred: impl Fn(&Span) -> bool) -> Result<&'a Span, String> {
        let found: Vec<&&Span> = self.spans.iter().filter(|s| pred(s)).collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("no span for {what}")),
            many => Err(format!("{} spans for {what}", many.len())),
        }
    }

    /// The direct child of `parent` matching `pred`.
    fn child(
        &self,
        parent: &Span,
        what: &str,
        pred: impl Fn(&Span) -> bool,
    ) -> Result<&'a Span, String> {
        self.find(what, |s| s.parent_span_id == parent.span_id && pred(s))
    }

    /// A descendant of `ancestor` matching `pred` (through internal spans, e.g. `#[instrument]`).
    fn descendant(
        &self,
        ancestor: &Span,
        what: &str,
        pred: impl Fn(&Span) -> bool,
    ) -> Result<&'a Span, String> {
        let found: Vec<&'a Span> = self
            .spans
            .iter()
            .copied()
            .filter(|s| pred(s) && self.has_ancestor(s, &ancestor.span_id))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("no span for {what} under `{}`", ancestor.name)),
            many => Err(format!("{} spans for {what}", many.len())),
        }
    }

    fn has_ancestor(&self, span: &Span, ancestor: &str) -> bool {
        let mut parent = span.parent_span_id.clone();
        for _ in 0..64 {
            if parent.is_empty() {
                return false;
            }
            if parent == ancestor {
                return true;
            }
            match self.spans.iter().find(|s| s.span_id == parent) {
                Some(p) => parent = p.parent_span_id.clone(),
                None => return false,
            }
        }
        false
    }
}

fn is(span: &Span, service: &str, kind: SpanKind, name: &str) -> bool {
    span.service == service && span.kind == kind && span.name == name
}

const MARKETPLACE: &str = "marketplace";
const FOG_NODE: &str = "fog-node";

/// marketplace `PUT /api/function` (root) -> bid to the target, relayed to the host -> accept
/// and provision on the host -> the host's embedded gateway deploys.
fn placement_chain(all: &[Span], host_url: &str) -> Result<String, String> {
    // The root: the one placement request the test made.
    let root = all
        .iter()
        .filter(|s| {
            is(s, MARKETPLACE, SpanKind::Server, "PUT /api/function") && s.parent_span_id.is_empty()
        })
        .collect::<Vec<_>>();
    let root = match root.as_slice() {
        [one] => *one,
        [] => return Err("no root span `PUT /api/function` from the marketplace".into()),
        many => return Err(format!("{} root placement spans", many.len())),
    };
    let t = Trace::of(all, &root.trace_id);
    let check = || -> Result<(), String> {
        // Bid: marketplace -> access (target) -> relayed to the host.
        let bid = t.descendant(root, "the marketplace's bid call", |s| {
            is(s, MARKETPLACE, SpanKind::Client, "POST /api/bid")
        })?;
        let access_bid = t.child(bid, "the target's bid handler", |s| {
            is(s, FOG_NODE, SpanKind::Server, "POST /api/bid")
        })?;
        let relay = t.descendant(access_bid, "the relay to the host", |s| {
            is(s, FOG_NODE, SpanKind::Client, "POST /api/bid")
                && s.attr("url.full").starts_with(host_url)
        })?;
        t.child(relay, "the host's bid handler", |s| {
            is(s, FOG_NODE, SpanKind::Server, "POST /api/bid")
        })?;
        // Accept and provision on the host.
        for (call, route) in [
            ("accept", "POST /api/accept/{sla_id}"),
            ("provision", "POST /api/provision/{sla_id}"),
        ] {
            let client = t.descendant(root, &format!("the marketplace's {call} call"), |s| {
                is(s, MARKETPLACE, SpanKind::Client, route)
                    && s.attr("url.full").starts_with(host_url)
            })?;
            let server = t.child(client, &format!("the host's {call} handler"), |s| {
                is(s, FOG_NODE, SpanKind::Server, route) && s.component() == "fog-node"
            })?;
            if call == "provision" {
                // The deploy (PUT, then POST as faas-cli does) reaches the embedded gateway.
                let deploy = t.descendant(server, "the deploy call to the gateway", |s| {
                    is(s, FOG_NODE, SpanKind::Client, "POST /system/functions")
                })?;
                t.child(deploy, "the gateway's deploy handler", |s| {
                    is(s, FOG_NODE, SpanKind::Server, "POST /system/functions")
                        && s.component() == "faas-gateway"
                })?;
            }
        }
        Ok(())
    };
    check()
        .map(|()| t.dump())
        .map_err(|e| format!("{e}; trace {}:\n{}", root.trace_id, t.dump()))
}

/// test client -> access node -> (forward) host node -> (its gateway's service, in process)
/// fn-echo, one trace under the client's `traceparent`.
fn invocation_chain(
    all: &[Span],
    trace_id: &str,
    client_span_id: &str,
    host_url: &str,
) -> Result<String, String> {
    let t = Trace::of(all, trace_id);
    let check = || -> Result<(), String> {
        let access = t.find("the access node's data plane", |s| {
            is(s, FOG_NODE, SpanKind::Server, "POST /function/{name}")
                && s.component() == "fog-node"
                && s.parent_span_id == client_span_id
        })?;
        let forward = t.child(access, "the forward to the host", |s| {
            is(s, FOG_NODE, SpanKind::Client, "POST /function/{name}")
                && s.attr("url.full").starts_with(host_url)
        })?;
        let host = t.child(forward, "the host's data plane", |s| {
            is(s, FOG_NODE, SpanKind::Server, "POST /function/{name}")
                && s.component() == "fog-node"
        })?;
        // The host invokes its embedded gateway's service in process: no HTTP hop to the
        // gateway's server, so the gateway's call to the replica is the host span's child.
        let upstream = t.child(host, "the gateway's call to the function", |s| {
            s.service == FOG_NODE && s.kind == SpanKind::Client && s.name.starts_with("POST fogfn-")
        })?;
        if let Some(extra) = t.spans.iter().find(|s| {
            s.kind == SpanKind::Server
                && s.component() == "faas-gateway"
                && s.name == "POST /function/{name}"
        }) {
            return Err(format!(
                "a local call crossed the gateway's HTTP server ({}): two hops, not one",
                extra.span_id
            ));
        }
        t.child(upstream, "fn-echo's invocation", |s| {
            is(s, "fn-echo", SpanKind::Server, "POST fn-echo") && s.component() == "function"
        })?;
        Ok(())
    };
    check()
        .map(|()| t.dump())
        .map_err(|e| format!("{e}; trace {trace_id}:\n{}", t.dump()))
}

/// Calls `check` until it succeeds or `deadline` passes (then panics with the last reason).
async fn poll<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    poll_until(deadline, what, || {
        let outcome = check();
        async move { outcome }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The federation

/// `host` can run the SLA; `access` (its child) cannot (too little CPU), so a placement
/// targeted at `access` is relayed to `host`, and `access` forwards invocations to `host`.
const TOPOLOGY: &str = r#"
[marketplace]
auction_rule = "vickrey"
auction_timeout_ms = 3000

[[node]]
name = "host"
owner = "owner-host"
cpu = "4 cpu"
memory = "8 GiB"
tags = ["cloud"]
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "access"
owner = "owner-access"
cpu = "100 m"
memory = "1 GiB"
parent = "host"
latency = "2 ms"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }
"#;

fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    while s.len() < bytes * 2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes * 2);
    s
}

/// Starts the federation exporting to `receiver`, the batch exporter sending every
/// `schedule_delay_ms`.
async fn start(receiver: &Receiver, schedule_delay_ms: u64) -> (Federation, KeepOnPanic) {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-tracing-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.readiness_deadline = Duration::from_secs(45);
    options.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        (
            "OTEL_BSP_SCHEDULE_DELAY".into(),
            schedule_delay_ms.to_string(),
        ),
    ];
    let topology = Topology::parse(TOPOLOGY).unwrap_or_else(|e| panic!("{e}"));
    match Federation::start(topology, options).await {
        Ok(f) => (f, KeepOnPanic(Some(dir))),
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    }
}

/// One placement of echo, provisioned, targeted at the access node; its SLA id.
async fn place(client: &reqwest::Client, fed: &Federation) -> String {
    let resp = client
        .put(format!(
            "{}/api/function?provision=true",
            fed.marketplace_url()
        ))
        .json(&json!({
            "sla": {
                "cpu": "250 m",
                "memory": "64 MB",
                "duration": "30 min",
                "latencyMax": "1000 ms",
                "functionImage": "ghcr.io/fogmarket/echo:latest",
                "functionLiveName": "echo",
            },
            "targetNode": "access",
        }))
        .send()
        .await
        .expect("PUT /api/function answers");
    let status = resp.status();
    let placed: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{placed:#}");
    assert_eq!(placed["state"], "live", "{placed:#}");
    placed["sla"]["id"].as_str().expect("sla id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_and_an_invocation_are_each_one_trace_across_every_process() {
    let receiver = Receiver::start().await;
    // Export every 100 ms rather than every 5 s.
    let (fed, keep_logs) = start(&receiver, 100).await;
    let client = http_client();
    let host_url = fed.node_url("host").expect("host").to_string();
    let access_url = fed.node_url("access").expect("access").to_string();

    // 1. One placement, provisioned, targeted at the access node.
    let sla_id = place(&client, &fed).await;
    let placement = poll(Duration::from_secs(30), "the placement's trace", || {
        placement_chain(&receiver.spans(), &host_url)
    })
    .await;
    eprintln!("placement trace:\n{placement}");

    // 2. Invocations through the access node: wait until it routes (untraced by the test),
    // then one with the test's own `traceparent`.
    let invoke_url = format!("{access_url}/function/fogfn-{sla_id}");
    poll_until(
        Duration::from_secs(30),
        "the access node to route to the host",
        || async {
            let r = client.post(&invoke_url).body("warm-up").send().await;
            r.is_ok_and(|r| r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    let trace_id = random_hex(16);
    let client_span_id = random_hex(8);
    let r = client
        .post(&invoke_url)
        .header("traceparent", format!("00-{trace_id}-{client_span_id}-01"))
        .body("traced")
        .send()
        .await
        .expect("the invocation answers");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("x-fogmarket-served-by")
            .and_then(|v| v.to_str().ok()),
        Some("host")
    );
    assert_eq!(r.text().await.unwrap_or_default(), "traced");
    let invocation = poll(Duration::from_secs(30), "the invocation's trace", || {
        invocation_chain(&receiver.spans(), &trace_id, &client_span_id, &host_url)
    })
    .await;
    eprintln!("invocation trace:\n{invocation}");

    fed.stop().await.expect("the federation stops");
    drop(keep_logs.disarm());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_sent_when_the_processes_stop_on_sigterm() {
    let receiver = Receiver::start().await;
    // The batch exporter would wait 10 minutes: only the shutdown can send the spans.
    let (fed, keep_logs) = start(&receiver, 600_000).await;
    let client = http_client();
    let host_url = fed.node_url("host").expect("host").to_string();
    place(&client, &fed).await;
    assert!(
        placement_chain(&receiver.spans(), &host_url).is_err(),
        "spans were sent before the schedule delay"
    );
    fed.stop().await.expect("the federation stops");
    poll(Duration::from_secs(10), "the placement's trace", || {
        placement_chain(&receiver.spans(), &host_url)
    })
    .await;
    drop(keep_logs.disarm());
}

/// Keeps the run directory (configs, logs) when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl KeepOnPanic {
    fn disarm(mut self) -> Option<tempfile::TempDir> {
        self.0.take()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "test failed: configs and logs kept in {}",
                dir.keep().display()
            );
        }
    }
}
