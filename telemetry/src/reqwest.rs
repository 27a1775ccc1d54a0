//! Trace context on outgoing `reqwest` requests.
//!
//! ```ignore
//! use telemetry::reqwest::RequestTracing;
//! let span = telemetry::client_span("POST", "/api/bid", Some(&url));
//! let resp = client.post(&url).with_trace_context_of(&span).send().instrument(span).await;
//! ```

use tracing::Span;

/// Adds `traceparent`/`tracestate` to a request being built.
pub trait RequestTracing {
    /// The context of the current span.
    fn with_trace_context(self) -> Self;
    /// The context of `span` (typically a [`crate::client_span`]).
    fn with_trace_context_of(self, span: &Span) -> Self;
}

impl RequestTracing for reqwest::RequestBuilder {
    fn with_trace_context(self) -> Self {
        self.with_trace_context_of(&Span::current())
    }

    fn with_trace_context_of(self, span: &Span) -> Self {
        let mut headers = http::HeaderMap::new();
        crate::inject_span(span, &mut headers);
        if headers.is_empty() {
            self
        } else {
            self.headers(headers)
        }
    }
}
