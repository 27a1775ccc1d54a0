//! HTTP handlers: extract and convert input, call the service, map errors to status codes.
//!
//! Bodies are read as raw bytes (limited to `Settings::max_body_bytes`, 413 beyond) so that
//! signed requests are verified over the exact bytes and malformed JSON is reported as a
//! JSON 400 naming the problem, never as a panic or a 5xx.

use crate::clients::Caller;
use crate::error::{ApiError, ServiceError};
use crate::service::{Marketplace, PlaceRequest, ROUTES_PATH};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use model::{AuctionId, Sla, SlaId, Timestamp};
use serde_json::Value;

/// Largest accepted request body, shared with the handlers.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The dashboard page, embedded in the binary (vanilla HTML, CSS and JS; no build step).
pub const DASHBOARD_HTML: &str = include_str!("../static/dashboard.html");

/// Registers every route of the marketplace.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard_page))
        .route("/api/dashboard", web::get().to(dashboard))
        .route("/metrics", web::get().to(metrics))
        .route("/api/health", web::get().to(health))
        .route("/api/function", web::put().to(put_function))
        .route("/api/function/{id}", web::post().to(provision_function))
        .route("/api/function/{id}", web::get().to(get_function))
        .route("/api/function/{id}", web::delete().to(cancel_function))
        .route("/api/functions", web::get().to(list_functions))
        .route("/api/fog", web::get().to(fog))
        .route("/api/auctions/{id}", web::get().to(get_auction))
        .route("/api/register", web::post().to(register))
        .route("/api/heartbeat/{node_id}", web::post().to(heartbeat))
        .route(ROUTES_PATH, web::get().to(routes));
}

/// Counts every answered request in `fogmarket_http_requests_total{route,status}`; `route` is
/// the matched pattern (e.g. `/api/function/{id}`), `unmatched` for unknown paths, so the
/// label set stays bounded whatever clients ask for.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let market = req.app_data::<web::Data<Marketplace>>().cloned();
    let route = req.match_pattern();
    let res = next.call(req).await;
    if let Some(market) = market {
        let status = match &res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        market
            .metrics()
            .http_request(route.as_deref().unwrap_or("unmatched"), status.as_u16());
    }
    res
}

/// `GET /`: the dashboard page.
async fn dashboard_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(DASHBOARD_HTML)
}

/// `GET /api/dashboard`: the aggregate the page renders.
async fn dashboard(market: web::Data<Marketplace>) -> Result<HttpResponse, ApiError> {
    let view = market.dashboard().await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(&*view))
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(market: web::Data<Marketplace>) -> Result<HttpResponse, ApiError> {
    let text = market.render_metrics().await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// JSON 404 for unknown paths.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(model::protocol::ErrorBody {
        error: "not_found".into(),
        message: format!("no route for {} {}", req.method(), req.path()),
        field: None,
        refusals: Vec::new(),
    })
}

/// Reads the whole body, refusing more than the limit with 413.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn limit(req: &HttpRequest) -> usize {
    req.app_data::<web::Data<BodyLimit>>()
        .map_or(256 * 1024, |l| l.0)
}

/// The path with its query string, as signed by the sender.
fn path_and_query(req: &HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.path(), |pq| pq.as_str())
}

fn authorization(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The caller of a client API request (401 when tokens are required and it has none).
async fn caller(req: &HttpRequest, market: &Marketplace) -> Result<Caller, ApiError> {
    let peer = req.peer_addr().map(|a| a.ip());
    Ok(market.authenticate_client(authorization(req), peer).await?)
}

fn parse_sla_id(raw: &str) -> Result<SlaId, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::bad_request("invalid_request", "id", format!("not a UUID: {e}")))
}

fn truthy(field: &str, v: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(
            "invalid_request",
            field,
            "must be true or false",
        )),
    }
}

/// The value of query parameter `name` as a `u64`; `None` when absent. A value that is not a
/// whole number, or a parameter given twice, is a 400 naming it.
fn query_u64(query: &str, name: &str, what: &str) -> Result<Option<u64>, ApiError> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                name,
                "given more than once",
            ));
        }
        let n = v.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                name,
                format!("must be {what}, got `{v}`"),
            )
        })?;
        found = Some(n);
    }
    Ok(found)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `PUT /api/function`: body `{sla, targetNode, provision?}`, query `?provision=true`.
async fn put_function(
    req: HttpRequest,
    payload: web::Payload,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::now();
    let caller = caller(&req, &market).await?;
    let mut provision = false;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "provision" {
            provision = truthy("provision", v)?;
        }
    }
    let body = read_body(&req, payload, limit(&req)).await?;
    let json: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", "body", format!("not valid JSON: {e}"))
    })?;
    if !json.is_object() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "body",
            "must be a JSON object {sla, targetNode}",
        ));
    }
    let target_node = match json.get("targetNode") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "targetNode",
                "is required (a node id or name)",
            ));
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "targetNode",
                "must be a non-empty string (a node id or name)",
            ));
        }
    };
    match json.get("provision") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => provision |= *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "provision",
                "must be true or false",
            ));
        }
    }
    let sla = Sla::from_json(json.get("sla").unwrap_or(&Value::Null), SlaId::new(), "sla")
        .map_err(ServiceError::InvalidSla)?;
    let view = market
        .place_function(
            &caller,
            PlaceRequest {
                sla,
                target_node,
                provision,
            },
            now,
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

async fn provision_function(
    req: HttpRequest,
    path: web::Path<String>,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &market).await?;
    let id = parse_sla_id(&path)?;
    Ok(HttpResponse::Ok().json(market.provision(&caller, id, Timestamp::now()).await?))
}

async fn get_function(
    req: HttpRequest,
    path: web::Path<String>,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &market).await?;
    let id = parse_sla_id(&path)?;
    Ok(HttpResponse::Ok().json(market.function(&caller, id).await?))
}

async fn cancel_function(
    req: HttpRequest,
    path: web::Path<String>,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &market).await?;
    let id = parse_sla_id(&path)?;
    Ok(HttpResponse::Ok().json(market.cancel(&caller, id, Timestamp::now()).await?))
}

async fn list_functions(
    req: HttpRequest,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &market).await?;
    Ok(HttpResponse::Ok().json(market.functions(&caller).await?))
}

async fn fog(market: web::Data<Marketplace>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(market.fog().await?))
}

async fn get_auction(
    req: HttpRequest,
    path: web::Path<String>,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let caller = caller(&req, &market).await?;
    let id: AuctionId = path
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_request", "id", format!("not a UUID: {e}")))?;
    Ok(HttpResponse::Ok().json(market.auction(&caller, id).await?))
}

async fn register(
    req: HttpRequest,
    payload: web::Payload,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, limit(&req)).await?;
    let resp = market
        .register(authorization(&req), &body, Timestamp::now())
        .await?;
    Ok(HttpResponse::Ok().json(resp))
}

async fn heartbeat(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, limit(&req)).await?;
    let resp = market
        .heartbeat(
            &path,
            authorization(&req),
            path_and_query(&req),
            &body,
            Timestamp::now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(resp))
}

/// `GET /api/routes?after=<version>&waitMs=<ms>`: the route table, long-polled by fog nodes.
async fn routes(
    req: HttpRequest,
    payload: web::Payload,
    market: web::Data<Marketplace>,
) -> Result<HttpResponse, ApiError> {
    let after = query_u64(
        req.query_string(),
        "after",
        "a route table version (a whole number)",
    )?;
    let wait_ms = query_u64(
        req.query_string(),
        "waitMs",
        "a whole number of milliseconds",
    )?;
    let body = read_body(&req, payload, limit(&req)).await?;
    let table = market
        .routes(
            authorization(&req),
            path_and_query(&req),
            &body,
            after,
            wait_ms,
            Timestamp::now(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(&*table))
}
