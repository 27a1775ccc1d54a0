//! `telemetry`: logging and distributed tracing for every Fogmarket process.
//!
//! - [`init`] installs the global `tracing` subscriber: log lines on stderr filtered by
//!   `RUST_LOG` (as the binaries always did) and, only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//!   set, an OpenTelemetry layer exporting spans over OTLP (HTTP/protobuf by default, gRPC with
//!   `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) through a batch span processor (`OTEL_BSP_*` tune
//!   it). Jaeger ingests OTLP natively. Invalid values stop the process at start with an
//!   error naming the variable. The returned [`Guard`] sends the last spans when dropped: keep
//!   it until the process exits. [`Guard::new`] and [`Guard::layer`] are the same export
//!   without the global subscriber (`tests/otlp_grpc.rs` uses them against a gRPC receiver).
//! - gRPC is the `grpc` feature (tonic). The workspace dependency on this crate turns it on,
//!   so every Fogmarket binary and function has it; a build without it refuses `grpc` at start.
//! - Unset, nothing is exported and the HTTP spans made here are not even created (they have
//!   their own target, [`TRACE_TARGET`], that the log output never shows).
//! - Propagation is W3C trace context: [`inject`] / [`inject_span`] write `traceparent` and
//!   `tracestate` into an `http::HeaderMap`, [`extract`] reads them back into a parent
//!   [`Context`] for [`set_parent`] or [`server_span`]. `actix::TraceRequests` (feature
//!   `actix`) opens a server span per request; `reqwest::RequestTracing` (feature
//!   `reqwest`) adds the context to an outgoing request; [`client_span`] names the call.
//!
//! One placement (marketplace -> fog nodes -> gateway) or one invocation (access node ->
//! hosting node -> gateway -> function) is then one trace.

#[cfg(feature = "actix")]
pub mod actix;
mod config;
mod propagation;
#[cfg(feature = "reqwest")]
pub mod reqwest;
mod subscriber;

pub use config::{ConfigError, ENDPOINT_VAR, Export, PROTOCOL_VAR, Protocol, Settings};
pub use opentelemetry::Context;
pub use propagation::{
    TRACE_TARGET, TRACEPARENT, TRACESTATE, client_span, extract, extract_from, http_span_name,
    inject, inject_context, inject_span, record_error, record_status, server_span, set_parent,
};
pub use subscriber::{Guard, InitError, Options, SHUTDOWN_TIMEOUT, init, init_with, layer_for};

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceContextExt};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    /// A subscriber with the OpenTelemetry layer over an in-memory exporter. Keep the provider
    /// until the spans are read: its shutdown clears the exporter.
    fn traced() -> (
        impl tracing::Subscriber + Send + Sync,
        InMemorySpanExporter,
        SdkTracerProvider,
    ) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(layer_for(&provider));
        (subscriber, exporter, provider)
    }

    fn finished(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
        exporter.get_finished_spans().expect("in-memory spans")
    }

    #[test]
    fn inject_then_extract_gives_back_the_span_context() {
        let (subscriber, _exporter, _provider) = traced();
        tracing::subscriber::with_default(subscriber, || {
            let span = client_span("POST", "/api/bid", Some("http://n1/api/bid"));
            assert!(!span.is_disabled(), "trace spans exist with an exporter");
            let mut headers = http::HeaderMap::new();
            inject_span(&span, &mut headers);
            let sent = span.context().span().span_context().clone();
            assert!(sent.is_valid());
            let traceparent = headers
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .expect("traceparent injected");
            assert_eq!(
                traceparent,
                format!("00-{}-{}-01", sent.trace_id(), sent.span_id())
            );

            let received = extract(&headers);
            let got = received.span().span_context().clone();
            assert!(got.is_remote());
            assert_eq!(got.trace_id(), sent.trace_id());
            assert_eq!(got.span_id(), sent.span_id());
            assert!(got.is_sampled());

            // `inject` uses the current span.
            let mut current = http::HeaderMap::new();
            span.in_scope(|| inject(&mut current));
            assert_eq!(current.get(TRACEPARENT), headers.get(TRACEPARENT));
        });
    }

    #[test]
    fn a_server_span_is_the_child_of_the_extracted_parent() {
        let (subscriber, exporter, _provider) = traced();
        tracing::subscriber::with_default(subscriber, || {
            let client = client_span(
                "POST",
                "/api/accept/{sla_id}",
                Some("http://n1/api/accept/x"),
            );
            let mut headers = http::HeaderMap::new();
            inject_span(&client, &mut headers);
            let server = server_span(
                "fog-node",
                &http_span_name("POST", Some("/api/accept/{sla_id}")),
                "POST",
                Some("/api/accept/{sla_id}"),
                extract(&headers),
            );
            server.in_scope(|| record_status(&server, 200));
            drop(server);
            drop(client);
        });
        let spans = finished(&exporter);
        let client = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .expect("client span exported");
        let server = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .expect("server span exported");
        assert_eq!(client.name, "POST /api/accept/{sla_id}");
        assert_eq!(server.name, "POST /api/accept/{sla_id}");
        assert_eq!(
            server.span_context.trace_id(),
            client.span_context.trace_id()
        );
        assert_eq!(server.parent_span_id, client.span_context.span_id());
        assert!(
            server
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "http.response.status_code"
                    && kv.value.as_str() == "200"),
            "{:?}",
            server.attributes
        );
    }

    #[test]
    fn without_an_exporter_no_trace_span_exists_and_nothing_is_injected() {
        assert!(
            Settings::from_lookup(|_| None)
                .expect("valid")
                .export
                .is_none()
        );
        assert!(!Guard::disabled().is_exporting());
        // Only a log layer, as `init` installs when the endpoint is unset.
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_filter(
                tracing_subscriber::EnvFilter::new(format!("info,{TRACE_TARGET}=off")),
            ));
        use tracing_subscriber::Layer;
        tracing::subscriber::with_default(subscriber, || {
            let span = client_span("POST", "/api/bid", Some("http://n1/api/bid"));
            assert!(span.is_disabled());
            let mut headers = http::HeaderMap::new();
            inject_span(&span, &mut headers);
            inject(&mut headers);
            assert!(headers.is_empty(), "{headers:?}");
        });
    }

    #[test]
    fn malformed_traceparent_gives_no_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(TRACEPARENT, http::HeaderValue::from_static("00-zz-yy-01"));
        assert!(!extract(&headers).span().span_context().is_valid());
        assert!(
            !extract(&http::HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[actix_web::test]
    async fn the_actix_middleware_names_the_span_by_route_and_parents_it() {
        use actix_web::{App, HttpResponse, test, web};
        let (subscriber, exporter, _provider) = traced();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(actix::TraceRequests::new("marketplace"))
                .route(
                    "/api/function/{id}",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let req = test::TestRequest::get()
            .uri("/api/function/42")
            .insert_header((TRACEPARENT, parent))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert!(resp.status().is_success());
        let spans = finished(&exporter);
        let server = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .expect("server span exported");
        assert_eq!(server.name, "GET /api/function/{id}");
        assert_eq!(
            server.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(server.parent_span_id.to_string(), "b7ad6b7169203331");
        assert!(server.parent_span_is_remote);
    }

    #[test]
    fn reqwest_requests_carry_the_span_context() {
        use crate::reqwest::RequestTracing;
        let (subscriber, _exporter, _provider) = traced();
        tracing::subscriber::with_default(subscriber, || {
            let span = client_span("POST", "/api/bid", Some("http://127.0.0.1:1/api/bid"));
            let req = ::reqwest::Client::new()
                .post("http://127.0.0.1:1/api/bid")
                .with_trace_context_of(&span)
                .build()
                .expect("request builds");
            let traceparent = req
                .headers()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .expect("traceparent");
            let sc = span.context().span().span_context().clone();
            assert!(traceparent.contains(&sc.span_id().to_string()));
        });
    }
}
