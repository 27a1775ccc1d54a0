//! HTTP handlers: they verify signatures, parse input, call the node, and map errors.

use crate::error::ApiError;
use crate::state::node::{Identity, Node, Sender};
use crate::tasks::bidding::handle_bid;
use actix_web::{HttpRequest, HttpResponse, web};
use model::auth;
use model::ids::SlaId;
use model::protocol::{AcceptRequest, BidRequest, ReleaseRequest};
use model::time::Timestamp;
use model::{FieldError, Sla};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;

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
        .route(crate::tasks::control::LOAD_PATH, web::post().to(load))
        // The data plane reads its body itself, up to `[offload] max_body`.
        .route(
            "/function/{name}",
            web::route().to(crate::http::dataplane::invoke),
        )
        .route(
            "/function/{name}/{tail:.*}",
            web::route().to(crate::http::dataplane::invoke),
        );
}

/// Checks the sender's own signature (for this node, over this request, not replayed);
/// returns who sent it.
fn verify(node: &Node, req: &HttpRequest, body: &[u8]) -> Result<(Identity, Sender), ApiError> {
    let identity = node.identity_or_unavailable()?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |pq| pq.as_str());
    let target = auth::RequestTarget::new(req.method().as_str(), path_and_query, body);
    let sender = identity
        .guard
        .check(header, Timestamp::now(), &target, |s| {
            node.key_of(&identity, s)
        })?;
    let sender = if sender == auth::MARKETPLACE {
        Sender::Marketplace
    } else {
        // `key_of` only knows node ids besides the marketplace.
        Sender::Node(
            sender
                .parse()
                .map_err(|_| ApiError::Forbidden(format!("sender `{sender}` is not a node id")))?,
        )
    };
    Ok((identity, sender))
}

/// Like [`verify`], for actions only the marketplace may take on a node.
fn verify_marketplace(
    node: &Node,
    req: &HttpRequest,
    body: &[u8],
    action: &str,
) -> Result<Identity, ApiError> {
    match verify(node, req, body)? {
        (identity, Sender::Marketplace) => Ok(identity),
        (_, Sender::Node(id)) => Err(ApiError::Forbidden(format!(
            "only the marketplace may {action}; node {id} may not"
        ))),
    }
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
    let (identity, sender) = verify(&node, &req, &body)?;
    // The marketplace opens auctions; a node relays them to its overlay neighbours only.
    if let Sender::Node(id) = sender
        && !node.is_neighbour(id)
    {
        return Err(ApiError::Forbidden(format!(
            "node {id} is not an overlay neighbour of this node; only neighbours relay bid requests"
        )));
    }
    let me = identity.node_id;
    let value: serde_json::Value = parse(&body)?;
    // Validate the SLA like the marketplace did: a peer's input is input.
    let sla = Sla::from_json(&value["sla"], SlaId::new(), "sla")?;
    let request: BidRequest = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(FieldError::new("body", e)))?;
    // Whoever delivers it, only an auction the marketplace opened, for this very SLA and
    // before its deadline, may hold resources here.
    request
        .ticket
        .check(
            &identity.marketplace_key,
            request.auction_id,
            &request.sla,
            Timestamp::now(),
        )
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let answer = handle_bid(node.get_ref().clone(), request, me, sla).await;
    Ok(HttpResponse::Ok().json(answer))
}

async fn accept(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    verify_marketplace(&node, &req, &body, "accept a bid")?;
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
    verify_marketplace(&node, &req, &body, "release holds")?;
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
    verify_marketplace(&node, &req, &body, "provision a placement")?;
    let placement = crate::tasks::provision::provision(node.get_ref(), sla_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(placement))
}

async fn offload_state(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok().json(crate::http::offload_view::offload_view(
        &node.offload,
        node.node_id(),
        Timestamp::now(),
    ))
}

async fn metrics(node: web::Data<Arc<Node>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(node.offload.render_metrics(node.node_id()))
}

/// `POST /fog/v1/load`: a peer's load report; the answer is this node's report for it.
async fn load(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    use crate::tasks::control::LoadError;
    let sender = match verify(&node, &req, &body)? {
        (_, Sender::Node(id)) => id,
        (_, Sender::Marketplace) => {
            return Err(ApiError::Forbidden(
                "load reports come from nodes, not from the marketplace".into(),
            ));
        }
    };
    let report: model::protocol::LoadReport = parse(&body)?;
    match crate::tasks::control::receive_report(&node, sender, report, Timestamp::now()) {
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
    verify_marketplace(&node, &req, &body, "cancel a placement")?;
    let placement = node.cancel(sla_id(&path)?, Timestamp::now())?;
    crate::tasks::provision::remove_deployed(&node, std::slice::from_ref(&placement)).await;
    Ok(HttpResponse::Ok().json(placement))
}
