//! HTTP handlers: extract, convert, call the [`Service`], map errors. Routes and quirks follow
//! the OpenFaaS gateway (see `docs`/README of this crate).

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{self, Next};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use telemetry::reqwest::RequestTracing;

use crate::api::{DeleteFunctionRequest, FunctionDeployment, ScaleServiceRequest, Secret};
use crate::error::{GatewayError, GatewayResult};
use crate::logs::LogQuery;
use crate::service::{Invocation, InvocationResponse, Service};

/// Request bodies up to this size are accepted (function payloads included).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// Shared state of the handlers.
pub struct AppState {
    pub service: Service,
    pub basic_auth: Option<(String, String)>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("/healthz", web::get().to(healthz))
        .route("/healthz", web::head().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/system")
                .wrap(middleware::from_fn(basic_auth))
                .service(
                    web::resource("/functions")
                        .route(web::get().to(list_functions))
                        .route(web::post().to(deploy))
                        .route(web::put().to(update))
                        .route(web::delete().to(delete_function)),
                )
                .route("/function/{name}", web::get().to(describe))
                .route("/scale-function/{name}", web::post().to(scale))
                .route("/replicas/{name}", web::get().to(replicas))
                .route("/info", web::get().to(info))
                .route("/namespaces", web::get().to(namespaces))
                .service(
                    web::resource("/secrets")
                        .route(web::get().to(list_secrets))
                        .route(web::post().to(create_secret))
                        .route(web::put().to(update_secret))
                        .route(web::delete().to(delete_secret)),
                )
                .route("/logs", web::get().to(logs)),
        )
        .route("/function/{name}", web::route().to(invoke))
        .route("/function/{name}/{tail:.*}", web::route().to(invoke))
        .route("/async-function/{name}", web::post().to(invoke_async))
        .route(
            "/async-function/{name}/{tail:.*}",
            web::post().to(invoke_async),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("OK")
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.service.metrics().render())
}

/// Basic auth on `/system/*` when configured: 401 with `WWW-Authenticate` otherwise.
async fn basic_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let Some((user, password)) = state.as_ref().and_then(|s| s.basic_auth.as_ref()) {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Basic ")
                    .or_else(|| v.strip_prefix("basic "))
            })
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .is_some_and(|cred| {
                cred.split_once(':').is_some_and(|(u, p)| {
                    constant_time_eq(u.as_bytes(), user.as_bytes())
                        & constant_time_eq(p.as_bytes(), password.as_bytes())
                })
            });
        if !ok {
            return Err(GatewayError::Unauthorized.into());
        }
    }
    next.call(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_body<T: DeserializeOwned>(body: &[u8]) -> GatewayResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::BadRequest(format!("invalid request body: {e}")))
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

async fn list_functions(state: web::Data<AppState>, q: web::Query<NamespaceQuery>) -> HttpResponse {
    HttpResponse::Ok().json(state.service.list(q.namespace.as_deref()))
}

async fn deploy(state: web::Data<AppState>, body: web::Bytes) -> GatewayResult<HttpResponse> {
    let d: FunctionDeployment = json_body(&body)?;
    state.service.deploy(d, false)?;
    Ok(HttpResponse::Accepted().finish())
}

async fn update(state: web::Data<AppState>, body: web::Bytes) -> GatewayResult<HttpResponse> {
    let d: FunctionDeployment = json_body(&body)?;
    state.service.deploy(d, true)?;
    Ok(HttpResponse::Accepted().finish())
}

async fn delete_function(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    let r: DeleteFunctionRequest = json_body(&body)?;
    if r.function_name.is_empty() {
        return Err(GatewayError::BadRequest("functionName: is required".into()));
    }
    state.service.remove(
        &r.function_name,
        r.namespace.as_deref().filter(|n| !n.is_empty()),
    )?;
    Ok(HttpResponse::Accepted().finish())
}

async fn describe(
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<NamespaceQuery>,
) -> GatewayResult<HttpResponse> {
    let s = state
        .service
        .status(&name, q.namespace.as_deref().filter(|n| !n.is_empty()))?;
    Ok(HttpResponse::Ok().json(s))
}

async fn replicas(
    state: web::Data<AppState>,
    name: web::Path<String>,
    q: web::Query<NamespaceQuery>,
) -> GatewayResult<HttpResponse> {
    let r = state
        .service
        .replicas(&name, q.namespace.as_deref().filter(|n| !n.is_empty()))?;
    Ok(HttpResponse::Ok().json(r))
}

async fn scale(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    let r: ScaleServiceRequest = json_body(&body)?;
    let _ = &r.service_name; // the path names the function, as in OpenFaaS
    state.service.scale(
        &name,
        r.namespace.as_deref().filter(|n| !n.is_empty()),
        r.replicas,
    )?;
    Ok(HttpResponse::Accepted().finish())
}

async fn info(state: web::Data<AppState>) -> HttpResponse {
    let version = serde_json::json!({
        "sha": option_env!("FOGMARKET_GIT_SHA").unwrap_or("unknown"),
        "release": env!("CARGO_PKG_VERSION"),
    });
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    HttpResponse::Ok().json(serde_json::json!({
        "provider": {
            "provider": "faas-gateway",
            "orchestration": "process",
            "version": version,
        },
        "version": version,
        "arch": arch,
        "limitEnforcement": state.service.enforcement().info(),
    }))
}

async fn namespaces(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.service.namespaces())
}

async fn list_secrets(state: web::Data<AppState>, q: web::Query<NamespaceQuery>) -> HttpResponse {
    HttpResponse::Ok().json(state.service.list_secrets(q.namespace.as_deref()))
}

async fn create_secret(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    state
        .service
        .put_secret(json_body::<Secret>(&body)?, false)?;
    Ok(HttpResponse::Created().finish())
}

async fn update_secret(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    state
        .service
        .put_secret(json_body::<Secret>(&body)?, true)?;
    Ok(HttpResponse::Ok().finish())
}

async fn delete_secret(
    state: web::Data<AppState>,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    let s: Secret = json_body(&body)?;
    state
        .service
        .delete_secret(&s.name, s.namespace.as_deref())?;
    // 200 as OpenFaaS answers: faas-cli 0.17 reports 204 as "unexpected status code".
    Ok(HttpResponse::Ok().finish())
}

#[derive(Deserialize)]
struct LogParams {
    name: Option<String>,
    namespace: Option<String>,
    instance: Option<String>,
    tail: Option<i64>,
    since: Option<String>,
    follow: Option<String>,
}

async fn logs(state: web::Data<AppState>, q: web::Query<LogParams>) -> GatewayResult<HttpResponse> {
    let q = q.into_inner();
    let name = q
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GatewayError::BadRequest("name: is required".into()))?;
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(humantime::parse_rfc3339_weak(s).map_err(|e| {
            GatewayError::BadRequest(format!("since: {s:?} is not an RFC 3339 time: {e}"))
        })?),
    };
    let (name, namespace) = crate::api::split_name(&name, q.namespace.as_deref());
    let query = LogQuery {
        name: name.to_string(),
        namespace: namespace.to_string(),
        instance: q.instance.filter(|i| !i.is_empty()),
        since,
        tail: q.tail.filter(|t| *t > 0).map(|t| t as usize),
    };
    let follow = q.follow.as_deref().is_some_and(|f| f == "true" || f == "1");
    let logs = state.service.logs().clone();
    let to_line = |e: &crate::api::LogEntry| {
        let mut line = serde_json::to_vec(e).unwrap_or_default();
        line.push(b'\n');
        web::Bytes::from(line)
    };
    if !follow {
        let body: Vec<u8> = logs
            .query(&query)
            .iter()
            .flat_map(|e| to_line(e).to_vec())
            .collect();
        return Ok(HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .body(body));
    }
    let (history, rx) = logs.query_and_follow(&query);
    let history = futures::stream::iter(
        history
            .iter()
            .map(|e| Ok::<_, actix_web::Error>(to_line(e)))
            .collect::<Vec<_>>(),
    );
    let closed = Box::pin(logs.closed());
    let live = futures::stream::unfold(
        (rx, query, closed),
        move |(mut rx, query, mut closed)| async move {
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = &mut closed => return None,
                };
                match received {
                    Ok(line) if query.matches(&line) => {
                        let bytes = to_line(&line.entry);
                        return Some((Ok::<_, actix_web::Error>(bytes), (rx, query, closed)));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    use futures::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(history.chain(live)))
}

fn invocation(req: &HttpRequest, body: web::Bytes) -> GatewayResult<(String, Invocation)> {
    let name = req.match_info().get("name").unwrap_or_default().to_string();
    let tail = req.match_info().get("tail").unwrap_or_default();
    // actix's `http` 0.2 types to hyper's `http` 1.
    let mut headers = http::HeaderMap::with_capacity(req.headers().len());
    for (k, v) in req.headers() {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_str().as_bytes()),
            http::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(k, v);
        }
    }
    let method = http::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| GatewayError::BadRequest(format!("bad method {:?}", req.method().as_str())))?;
    let mut path = String::with_capacity(tail.len() + 1);
    path.push('/');
    path.push_str(tail);
    let inv = Invocation {
        method,
        path,
        query: req.query_string().to_string(),
        headers,
        body,
        peer: req.peer_addr().map(|a| a.ip().to_string()),
        host: Some(req.connection_info().host().to_string()),
    };
    Ok((name, inv))
}

fn to_response(r: InvocationResponse) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_str().as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            res.append_header((k, v));
        }
    }
    res.body(r.body)
}

async fn invoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    let (name, inv) = invocation(&req, body)?;
    Ok(to_response(state.service.invoke(&name, inv).await?))
}

/// `202` at once with `X-Call-Id`; the result goes to `X-Callback-Url` when given.
async fn invoke_async(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> GatewayResult<HttpResponse> {
    let (name, mut inv) = invocation(&req, body)?;
    // 404 now rather than in the background.
    state.service.status(&name, None)?;
    let call_id = req
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    inv.headers.remove("x-call-id");
    if let Ok(v) = http::HeaderValue::from_str(&call_id) {
        inv.headers.insert("x-call-id", v);
    }
    let callback = req
        .headers()
        .get("x-callback-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let service = state.service.clone();
    let function = name.clone();
    let reply_id = call_id.clone();
    // In the request's trace (the span outlives the request).
    let task = async move {
        let started = std::time::Instant::now();
        let result = service.invoke(&function, inv).await;
        let Some(url) = callback else { return };
        let (status, body) = match result {
            Ok(r) => (r.status, r.body.to_vec()),
            Err(e) => (
                actix_web::ResponseError::status_code(&e).as_u16(),
                e.to_string().into_bytes(),
            ),
        };
        let sent = service
            .http()
            .post(&url)
            .header("X-Call-Id", &call_id)
            .header("X-Function-Name", &function)
            .header("X-Function-Status", status.to_string())
            .header(
                "X-Duration-Seconds",
                format!("{:.6}", started.elapsed().as_secs_f64()),
            )
            .body(body)
            .timeout(Duration::from_secs(30))
            .with_trace_context()
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(%function, %url, error = %e, "async callback failed");
        }
    };
    let task = tracing::Instrument::instrument(task, tracing::Span::current());
    state.service.runtime().spawn(task);
    Ok(HttpResponse::Accepted()
        .insert_header(("X-Call-Id", reply_id))
        .finish())
}
