//! actix-web: a server span per request, parented on the caller's `traceparent`.
//!
//! ```ignore
//! App::new().wrap(telemetry::actix::TraceRequests::new("marketplace"))
//! ```

use crate::propagation::{self, http_span_name};
use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use opentelemetry::Context;
use opentelemetry::propagation::Extractor;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use tracing::Instrument;

/// Reads actix's header map (its own type, not `http::HeaderMap`).
struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The remote parent in an actix request's headers.
pub fn extract(headers: &actix_web::http::header::HeaderMap) -> Context {
    propagation::extract_from(&ActixHeaders(headers))
}

/// Middleware: every request runs in a server span named `METHOD /route/{pattern}` (the
/// matched pattern, never the concrete path), child of the caller's `traceparent`, with the
/// answer's status recorded. Without an exporter it does nothing but pass the request on.
#[derive(Debug, Clone, Copy)]
pub struct TraceRequests {
    component: &'static str,
}

impl TraceRequests {
    /// `component` names the server in the spans (`marketplace`, `fog-node`, `faas-gateway`).
    pub fn new(component: &'static str) -> Self {
        TraceRequests { component }
    }
}

impl<S, B> Transform<S, ServiceRequest> for TraceRequests
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = TraceRequestsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TraceRequestsMiddleware {
            service: Rc::new(service),
            component: self.component,
        }))
    }
}

/// See [`TraceRequests`].
pub struct TraceRequestsMiddleware<S> {
    service: Rc<S>,
    component: &'static str,
}

impl<S, B> Service<ServiceRequest> for TraceRequestsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        if !tracing::enabled!(target: propagation::TRACE_TARGET, tracing::Level::INFO) {
            return Box::pin(async move { service.call(req).await });
        }
        let route = req.match_pattern();
        let method = req.method().as_str().to_string();
        let span = propagation::server_span(
            self.component,
            &http_span_name(&method, route.as_deref()),
            &method,
            route.as_deref(),
            extract(req.headers()),
        );
        let record = span.clone();
        Box::pin(
            async move {
                let res = service.call(req).await;
                let status = match &res {
                    Ok(r) => r.status(),
                    Err(e) => e.as_response_error().status_code(),
                };
                propagation::record_status(&record, status.as_u16());
                res
            }
            .instrument(span),
        )
    }
}
