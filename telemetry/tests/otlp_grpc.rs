//! OTLP export over gRPC against a real gRPC receiver: a tonic server on 127.0.0.1 implementing
//! the OTLP `TraceService` (opentelemetry-proto's server codegen) forwards every
//! `ExportTraceServiceRequest` to a channel. The exporter is the one the binaries get from
//! `telemetry::init` (`Guard::new` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, `Guard::layer` in
//! a subscriber), fed by the `tracing` macros. Then the shutdown (`Guard::drop`, the end of
//! every `main`) against nothing listening and against a receiver that never answers: it
//! must end within its bound, without a panic.
//!
//! `OTEL_SERVICE_NAME` in the environment would rename the service the first test expects.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;
use telemetry::{ENDPOINT_VAR, Guard, PROTOCOL_VAR, Protocol, SHUTDOWN_TIMEOUT, Settings};
use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::layer::SubscriberExt;

const SERVICE: &str = "grpc-export-test";

/// How long the spans may take to arrive once flushed.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A local OTLP/gRPC receiver

/// The `TraceService`: every request goes to the channel, then `OK`.
struct Forward(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Forward {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        // The test may have stopped listening; the exporter still gets its answer.
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    /// Empty for a root span.
    parent_span_id: Vec<u8>,
    name: String,
}

fn flatten(req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    name: s.name,
                });
            }
        }
    }
    out
}

/// The gRPC server on 127.0.0.1, port 0; stopped when dropped.
struct Receiver {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP gRPC receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (tx, requests) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            // The one service, without a router: other paths answer `unimplemented`.
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    TraceServiceServer::new(Forward(tx)),
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("the OTLP gRPC receiver runs");
        });
        Receiver {
            addr,
            requests,
            stop: Some(stop),
        }
    }

    /// The spans received until `done` holds for all of them, or panics at the deadline.
    async fn spans_until(&mut self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut spans = Vec::new();
        while !done(&spans) {
            match tokio::time::timeout_at(deadline, self.requests.recv()).await {
                Ok(Some(req)) => spans.extend(flatten(req)),
                Ok(None) => panic!("the receiver stopped; got {spans:#?}"),
                Err(_) => panic!("no complete export within {DEADLINE:?}; got {spans:#?}"),
            }
        }
        spans
    }
}

/// What `OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}` and `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` give.
fn grpc_settings(endpoint: &str) -> Settings {
    let settings = Settings::from_lookup(|name| match name {
        ENDPOINT_VAR => Some(endpoint.to_string()),
        PROTOCOL_VAR => Some("grpc".to_string()),
        _ => None,
    })
    .expect("valid gRPC settings");
    let export = settings.export.as_ref().expect("export on");
    assert_eq!(export.protocol(), Protocol::Grpc);
    settings
}

/// Starts the gRPC export to `endpoint`, emits a parent and a child span with the `tracing`
/// macros through the crate's layer, then flushes and shuts the export down (`Guard::drop`,
/// as at the end of every `main`). The exporter blocks its caller, so this runs on a thread of
/// its own, which a hung export cannot keep the test waiting for; the answer is how long it
/// took, or an error when it panicked.
fn export_parent_and_child(endpoint: String) -> oneshot::Receiver<Duration> {
    let (done, finished) = oneshot::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let guard = Guard::new(SERVICE, &grpc_settings(&endpoint)).expect("the gRPC exporter");
        assert!(guard.is_exporting());
        let subscriber = tracing_subscriber::registry().with(guard.layer());
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("place_function", function = "echo");
            parent.in_scope(|| {
                let child = tracing::info_span!("bid_on_node", node = "n1");
                child.in_scope(|| tracing::info!("bid sent"));
            });
        });
        guard.flush();
        drop(guard);
        let _ = done.send(started.elapsed());
    });
    finished
}

/// How long [`export_parent_and_child`] may take: flush and shutdown each wait at most
/// [`SHUTDOWN_TIMEOUT`] (the batch processor's own bound is the same 5 s), plus a margin for a
/// loaded machine.
fn export_bound() -> Duration {
    SHUTDOWN_TIMEOUT * 2 + Duration::from_secs(10)
}

/// Waits for [`export_parent_and_child`] to end, at most [`export_bound`].
async fn finishes(export: oneshot::Receiver<Duration>) -> Duration {
    let bound = export_bound();
    match tokio::time::timeout(bound, export).await {
        Ok(Ok(took)) => took,
        Ok(Err(_)) => panic!("exporting or shutting down panicked"),
        Err(_) => panic!("exporting and shutting down still runs after {bound:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_otlp_receiver_with_their_parent_chain() {
    let mut receiver = Receiver::start().await;
    let export = export_parent_and_child(format!("http://{}", receiver.addr));

    let spans = receiver
        .spans_until(|spans| {
            ["place_function", "bid_on_node"]
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
        })
        .await;
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"))
    };
    let parent = named("place_function");
    let child = named("bid_on_node");
    assert_eq!(spans.len(), 2, "{spans:#?}");

    assert_eq!(parent.trace_id.len(), 16, "{parent:?}");
    assert_eq!(parent.span_id.len(), 8, "{parent:?}");
    assert!(
        parent.trace_id.iter().any(|b| *b != 0),
        "valid trace id: {parent:?}"
    );
    assert!(parent.parent_span_id.is_empty(), "a root span: {parent:?}");
    assert_eq!(child.trace_id, parent.trace_id, "one trace: {spans:#?}");
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "the child's parent is the parent span: {spans:#?}"
    );
    assert_ne!(child.span_id, parent.span_id);
    for span in [parent, child] {
        assert_eq!(span.service, SERVICE, "service.name: {span:?}");
    }
    finishes(export).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_exporter_with_nothing_listening_shuts_down_in_bounded_time_without_panicking() {
    // A port that was free a moment ago: nothing listens on it any more.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        listener.local_addr().expect("its address").port()
    };
    let took = finishes(export_parent_and_child(format!("http://127.0.0.1:{port}"))).await;
    assert!(took < export_bound(), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_receiver_that_never_answers_does_not_hang_the_shutdown() {
    // Accepts connections and keeps them open without a word: no HTTP/2 handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the silent receiver");
    let addr = listener.local_addr().expect("its address");
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let took = finishes(export_parent_and_child(format!("http://{addr}"))).await;
    silent.abort();
    assert!(took < export_bound(), "{took:?}");
}
