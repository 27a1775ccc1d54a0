//! W3C trace context (`traceparent`, `tracestate`) in HTTP headers, and the HTTP spans.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Target of the spans made here. Only the OpenTelemetry layer enables it (the log output
/// never shows it), so without an exporter these spans are never created.
pub const TRACE_TARGET: &str = "fogmarket_trace";

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes the context of the current span into `headers` (replacing any `traceparent` and
/// `tracestate` there). Writes nothing when the current span is not traced.
pub fn inject(headers: &mut HeaderMap) {
    inject_span(&Span::current(), headers);
}

/// Writes the context of `span` into `headers`; nothing when `span` is not traced.
pub fn inject_span(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    inject_context(&span.context(), headers);
}

/// Writes `cx` into `headers`; nothing when `cx` has no valid span.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The remote parent carried by `headers` (an empty context when there is none or it is
/// malformed).
pub fn extract(headers: &HeaderMap) -> Context {
    extract_from(&HeaderExtractor(headers))
}

/// [`extract`] over any header representation (e.g. actix's own `HeaderMap`).
pub fn extract_from(extractor: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(extractor)
}

/// Makes `parent` the parent of `span` when it carries a valid span context; `true` if it did.
/// Must be called before `span` is first entered.
pub fn set_parent(span: &Span, parent: Context) -> bool {
    if span.is_disabled() || !parent.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(parent).is_ok()
}

/// `METHOD route`, or `METHOD` alone when no route matched (the OpenTelemetry HTTP span name).
pub fn http_span_name(method: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    }
}

/// `METHOD route`, formatted only if the span is created.
struct SpanName<'a>(&'a str, &'a dyn std::fmt::Display);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

/// A server span for one request: named `name` (see [`http_span_name`]), kind server,
/// parented on `parent` when it is a valid remote context (see [`extract`]). `component`
/// says which server answered (`marketplace`, `fog-node`, `faas-gateway`, `function`) since
/// several run in one process. Record the answer with [`record_status`].
pub fn server_span(
    component: &'static str,
    name: &str,
    method: &str,
    route: Option<&str>,
    parent: Context,
) -> Span {
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "http.server",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        fogmarket.component = component,
        http.request.method = %method,
        http.route = route,
        http.response.status_code = Empty,
        error.message = Empty,
    );
    set_parent(&span, parent);
    span
}

/// A client span for one outgoing request, child of the current span: named `METHOD route`
/// (`route` is the callee's pattern, e.g. `/api/accept/{sla_id}`, never the concrete path),
/// with the concrete `url` as an attribute when there is one. Inject it with [`inject_span`]
/// (or `reqwest::RequestTracing`); record the answer with [`record_status`] or
/// [`record_error`].
pub fn client_span(method: &str, route: impl std::fmt::Display, url: Option<&str>) -> Span {
    tracing::info_span!(
        target: TRACE_TARGET,
        "http.client",
        otel.name = %SpanName(method, &route),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = %method,
        url.full = url,
        http.response.status_code = Empty,
        error.message = Empty,
    )
}

/// Records the HTTP status answered; 5xx marks the span as an error.
pub fn record_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// Marks the span as failed (no answer: connection refused, timeout, ...).
pub fn record_error(span: &Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("error.message", tracing::field::display(error));
}
