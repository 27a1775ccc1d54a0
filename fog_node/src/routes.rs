//! HTTP handlers: they verify signatures, parse input, call the node, and map errors.

use crate::bidding::handle_bid;
use crate::error::ApiError;
use crate::node::Node;
use actix_web::{HttpRequest, HttpResponse, web};
use model::auth;
use model::ids::SlaId;
use model::protocol::{AcceptRequest, BidRequest, ReleaseRequest};
use model::time::Timestamp;
use model::{FieldError, Sla};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Signatures older (or newer) than this are refused.
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// Largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("/api/health", web::get().to(health))
        .route("/api/state", web::get().to(state))
        .route("/api/bid", web::post().to(bid))
        .route("/api/accept/{sla_id}", web::post().to(accept))
        .route("/api/release", web::post().to(release))
        .route("/api/provision/{sla_id}", web::post().to(provision))
        .route("/api/placement/{sla_id}", web::delete().to(cancel))
        .route("/api/offload", web::get().to(offload_state))
        .route("/metrics", web::get().to(metrics))
        .route(crate::control::LOAD_PATH, web::post().to(load))
        // The data plane reads its body itself, up to `[offload] max_body`.
        .route(
            "/function/{name}",
            web::route().to(crate::dataplane::invoke),
        )
        .route(
            "/function/{name}/{tail:.*}",
            web::route().to(crate::dataplane::invoke),
        );
}

/// Checks the federation signature; returns the sender.
fn verify(node: &Node, req: &HttpRequest, body: &[u8]) -> Result<String, ApiError> {
    let identity = node.identity_or_unavailable()?;
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    Ok(auth::verify(
        &identity.federation_key,
        header,
        Timestamp::now(),
        MAX_SKEW,
        req.method().as_str(),
        req.path(),
        body,
    )?)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(FieldError::new("body", e)))
}

fn sla_id(raw: &str) -> Result<SlaId, ApiError> {
    raw.parse()
        .map_err(|e| ApiError::BadRequest(FieldError::new("slaId", format!("not a UUID: {e}"))))
}

async fn health(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "name": node.name(),
        "nodeId": node.node_id(),
        "enrolled": node.node_id().is_some(),
    }))
}

async fn state(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok().json(node.state_view(Timestamp::now()))
}

async fn bid(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let me = node.identity_or_unavailable()?.node_id;
    let value: serde_json::Value = parse(&body)?;
    // Validate the SLA like the marketplace did: a peer's input is input.
    let sla = Sla::from_json(&value["sla"], SlaId::new(), "sla")?;
    let request: BidRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(FieldError::new("body", e)))?;
    let answer = handle_bid(node.get_ref().clone(), request, me, sla).await;
    Ok(HttpResponse::Ok().json(answer))
}

async fn accept(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let sla_id = sla_id(&path)?;
    let request: AcceptRequest = parse(&body)?;
    let answer = node.accept(sla_id, &request, Timestamp::now())?;
    Ok(HttpResponse::Ok().json(answer))
}

async fn release(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let request: ReleaseRequest = parse(&body)?;
    let released = node.release_holds(&request.bid_ids);
    Ok(HttpResponse::Ok().json(json!({ "released": released })))
}

async fn provision(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let placement = crate::provision::provision(node.get_ref(), sla_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(placement))
}

async fn offload_state(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok().json(crate::metrics::offload_view(
        &node.offload,
        node.node_id(),
        Timestamp::now(),
    ))
}

async fn metrics(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(node.offload.metrics.render(&node.offload, node.node_id()))
}

/// `POST /fog/v1/load`: a peer's load report; the answer is this node's report for it.
async fn load(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    use crate::control::LoadError;
    let sender = verify(&node, &req, &body)?;
    let report: model::protocol::LoadReport = parse(&body)?;
    match crate::control::receive_report(&node, &sender, report, Timestamp::now()) {
        Ok(answer) => Ok(HttpResponse::Ok().json(answer)),
        Err(e @ LoadError::Version(_)) => Err(ApiError::BadRequest(FieldError::new(
            "version",
            e.to_string(),
        ))),
        Err(LoadError::Forbidden(why)) => Err(ApiError::Forbidden(why)),
    }
}

async fn cancel(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify(&node, &req, &body)?;
    let placement = node.cancel(sla_id(&path)?, Timestamp::now())?;
    crate::provision::remove_deployed(&node, std::slice::from_ref(&placement)).await;
    Ok(HttpResponse::Ok().json(placement))
}
