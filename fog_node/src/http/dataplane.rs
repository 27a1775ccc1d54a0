//! The native data plane: `/function/{name}[/{tail}]`, any method, on the node's HTTP server.
//!
//! Per request (the numbered steps of `docs/ARCHITECTURE.md`, "Data plane"): resolve the name
//! in the route snapshot (404 `unknown_function`), read the body up to `max_body` (413
//! `payload_too_large`), identify the caller (403 `forbidden`), then
//! - on a hosting node: serve `offload` requests here; count client and `access` requests in
//!   the arrival rate and follow the function's weights (serve here, forward as `offload`, or
//!   429 `overloaded`);
//! - on any other node: forward as `access` to the nearest alive host by RTT;
//! - never forward beyond `max_hops` (serve here if hosted, else 508 `hop_limit`);
//! - retry a failed forward once when it is safe (connect error, 429/503 answer, or any
//!   failure of an idempotent method) on the next target; a failed forward makes the peer
//!   suspect and wakes the control loop;
//! - serve locally through the function's bounded queue: with the embedded gateway, through
//!   its service in this process (it leases a replica and forwards to it: one hop); with an
//!   OpenFaaS gateway, by calling it at `/function/fogfn-<slaId>[/tail]?query`.
//!
//! Every answer carries `X-Fogmarket-Path` and `X-Fogmarket-Decision`; served ones
//! `X-Fogmarket-Served-By`; rejects `X-Fogmarket-Reject-Reason` (429s also `Retry-After`)
//! and an `ErrorBody` JSON whose `error` is the reason.

pub use crate::http::caller::{Caller, RouteKind};

use crate::state::metrics::Outcome;
use crate::state::node::{Identity, Node};
use crate::state::routes::{FunctionEntry, Routes};
use crate::upstream::{self, Upstream, UpstreamError};
use actix_web::http::StatusCode as ActixStatus;
use actix_web::http::header::{HeaderName as ActixName, HeaderValue as ActixValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use faas_gateway::GatewayError;
use faas_gateway::service::{Invocation, InvocationResponse};
use futures::StreamExt;
use http::{HeaderValue, Method, StatusCode};
use model::auth::{self, FORWARD_HEADER, HOPS_HEADER, ROUTE_HEADER};
use model::ids::NodeId;
use model::offload::Decision;
use model::protocol::ErrorBody;
use model::time::Timestamp;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

pub const SERVED_BY_HEADER: &str = "x-fogmarket-served-by";
pub const PATH_HEADER: &str = "x-fogmarket-path";
pub const DECISION_HEADER: &str = "x-fogmarket-decision";
pub const REJECT_REASON_HEADER: &str = "x-fogmarket-reject-reason";

/// What this node answers, before the federation headers are added.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    outcome: Outcome,
    /// Reject reason (ours, or relayed from the peer that rejected).
    reason: Option<Cow<'static, str>>,
    /// `X-Fogmarket-Path` below this node (the peer's), when forwarded.
    downstream_path: Option<String>,
}

impl Answer {
    fn reject(status: StatusCode, reason: &'static str, message: String) -> Answer {
        let body = serde_json::to_vec(&ErrorBody {
            error: reason.to_string(),
            message,
            field: None,
            refusals: Vec::new(),
        })
        .unwrap_or_default();
        let mut headers = http::HeaderMap::with_capacity(2);
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Answer {
            status,
            headers,
            body: Bytes::from(body),
            outcome: Outcome::Rejected,
            reason: Some(Cow::Borrowed(reason)),
            downstream_path: None,
        }
    }

    fn local(up: Upstream) -> Answer {
        Answer {
            status: up.status,
            headers: up.headers,
            body: up.body,
            outcome: Outcome::Local,
            reason: None,
            downstream_path: None,
        }
    }

    /// A peer's answer, relayed: a reject stays a reject (with the peer's reason).
    fn forwarded(mut up: Upstream, peer_name: &str) -> Answer {
        let text = |h: &http::HeaderMap, name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let downstream_path = text(&up.headers, PATH_HEADER).unwrap_or_else(|| peer_name.into());
        let rejected = up
            .headers
            .get(DECISION_HEADER)
            .is_some_and(|v| v.as_bytes() == b"rejected");
        let reason = rejected
            .then(|| text(&up.headers, REJECT_REASON_HEADER).map(Cow::Owned))
            .flatten();
        up.headers.remove(PATH_HEADER);
        up.headers.remove(DECISION_HEADER);
        if !up.headers.contains_key(SERVED_BY_HEADER)
            && !rejected
            && let Ok(v) = HeaderValue::from_str(peer_name)
        {
            up.headers.insert(SERVED_BY_HEADER, v);
        }
        Answer {
            status: up.status,
            headers: up.headers,
            body: up.body,
            outcome: if rejected {
                Outcome::Rejected
            } else {
                Outcome::Forwarded
            },
            reason: if rejected {
                Some(reason.unwrap_or(Cow::Borrowed("rejected")))
            } else {
                None
            },
            downstream_path: Some(downstream_path),
        }
    }
}

/// A forward that failed; `safe` says whether retrying elsewhere cannot run it twice.
struct Failed {
    safe: bool,
    answer: Answer,
}

/// Methods a retry may repeat even after the peer ran them.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// `/function/{name}{tail}` -> (name, tail), tail empty or starting with `/`.
fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix("/function/").unwrap_or("");
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    }
}

enum BodyError {
    TooLarge(usize),
    Read(String),
}

async fn read_body(
    mut payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(BodyError::TooLarge(limit));
        }
        match (&mut buf, first.take()) {
            (Some(b), _) => b.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(prev)) => {
                let mut b = BytesMut::with_capacity(declared.map_or(0, |n| n as usize).max(total));
                b.extend_from_slice(&prev);
                b.extend_from_slice(&chunk);
                buf = Some(b);
            }
        }
    }
    Ok(match buf {
        Some(b) => b.freeze(),
        None => first.unwrap_or_default(),
    })
}

fn method_of(req: &HttpRequest) -> Method {
    Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or(Method::GET)
}

/// The handler of `/function/{name}` and `/function/{name}/{tail:.*}`.
pub async fn invoke(
    node: web::Data<Arc<Node>>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let node: &Arc<Node> = &node;
    let off = &node.offload;
    let now = Timestamp::now();
    let routes = off.routes();
    let (name, tail) = split_path(req.uri().path());
    let Some(entry) = routes.lookup(name, now).cloned() else {
        let answer = Answer::reject(
            StatusCode::NOT_FOUND,
            "unknown_function",
            format!("no live function `{name}` in the route table"),
        );
        return respond(node, answer);
    };
    let body = match read_body(payload, &req, off.config.max_body_bytes()).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(limit)) => {
            let a = Answer::reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than max_body ({limit} bytes)"),
            );
            return finish(node, &entry, a, started);
        }
        Err(BodyError::Read(e)) => {
            let a = Answer::reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read the body: {e}"),
            );
            return finish(node, &entry, a, started);
        }
    };
    let Some(me) = node.identity_arc() else {
        let a = Answer::reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_enrolled",
            "this node is not enrolled with the marketplace yet".into(),
        );
        return finish(node, &entry, a, started);
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |pq| pq.as_str());
    let caller = match crate::http::caller::identify(
        &me,
        |peer| node.pair_secret(peer),
        &routes,
        req.headers(),
        req.method().as_str(),
        path_and_query,
        &body,
        now,
    ) {
        Ok(c) => c,
        Err(why) => {
            let a = Answer::reject(StatusCode::FORBIDDEN, "forbidden", why);
            return finish(node, &entry, a, started);
        }
    };
    let call = Call {
        node,
        routes: &routes,
        entry: &entry,
        me: &me,
        req: &req,
        method: method_of(&req),
        path_and_query,
        tail,
        body,
        caller,
    };
    let answer = call.route(now).await;
    finish(node, &entry, answer, started)
}

/// Counts the answer and turns it into the HTTP response.
fn finish(node: &Node, entry: &FunctionEntry, answer: Answer, started: Instant) -> HttpResponse {
    let state = &entry.state;
    let m = &node.offload.metrics;
    state
        .metrics
        .observe(m, &state.service, answer.outcome, started.elapsed());
    if let Some(reason) = &answer.reason {
        m.count_reject(&state.service, reason);
    }
    respond(node, answer)
}

fn respond(node: &Node, answer: Answer) -> HttpResponse {
    let status = ActixStatus::from_u16(answer.status.as_u16()).unwrap_or(ActixStatus::BAD_GATEWAY);
    let mut b = HttpResponse::build(status);
    for (k, v) in &answer.headers {
        if let (Ok(k), Ok(v)) = (
            ActixName::from_bytes(k.as_str().as_bytes()),
            ActixValue::from_bytes(v.as_bytes()),
        ) {
            b.append_header((k, v));
        }
    }
    let me = node.name();
    let path = match &answer.downstream_path {
        Some(down) => format!("{me}, {down}"),
        None => me.to_string(),
    };
    if let Ok(v) = ActixValue::from_str(&path) {
        b.insert_header((PATH_HEADER, v));
    }
    b.insert_header((DECISION_HEADER, answer.outcome.as_str()));
    if answer.outcome == Outcome::Local
        && let Ok(v) = ActixValue::from_str(me)
    {
        b.insert_header((SERVED_BY_HEADER, v));
    }
    if let Some(reason) = &answer.reason
        && let Ok(v) = ActixValue::from_str(reason)
    {
        b.insert_header((REJECT_REASON_HEADER, v));
    }
    if status == ActixStatus::TOO_MANY_REQUESTS && !answer.headers.contains_key("retry-after") {
        b.insert_header(("retry-after", "1"));
    }
    b.body(answer.body)
}

/// The answer of the embedded gateway's service to an in-process invocation: its error as
/// its HTTP server would have written it (status, `text/plain` sentence, `Retry-After`).
fn gateway_answer(result: Result<InvocationResponse, GatewayError>) -> Answer {
    match result {
        Ok(r) => Answer::local(Upstream {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY),
            headers: r.headers,
            body: r.body,
        }),
        Err(e) => {
            let status = StatusCode::from_u16(actix_web::ResponseError::status_code(&e).as_u16())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let headers = e
                .headers()
                .into_iter()
                .filter_map(|(name, value)| {
                    Some((
                        http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(&value).ok()?,
                    ))
                })
                .collect();
            Answer::local(Upstream {
                status,
                headers,
                body: Bytes::from(e.body()),
            })
        }
    }
}

/// One invocation being routed.
struct Call<'a> {
    node: &'a Arc<Node>,
    routes: &'a Routes,
    entry: &'a Arc<FunctionEntry>,
    me: &'a Identity,
    req: &'a HttpRequest,
    method: Method,
    path_and_query: &'a str,
    tail: &'a str,
    body: Bytes,
    caller: Caller,
}

impl Call<'_> {
    /// This request's method and body to `uri` with `headers`, within the forward timeout.
    async fn send_upstream(
        &self,
        uri: &str,
        headers: http::HeaderMap,
    ) -> Result<Upstream, UpstreamError> {
        self.node
            .upstream
            .send(
                self.method.clone(),
                uri,
                headers,
                self.body.clone(),
                self.node.offload.config.forward_timeout.as_duration(),
            )
            .await
    }

    /// Step 6 through the embedded gateway's service in this process: the gateway leases a
    /// replica (or queues for one) and forwards to it; no loopback hop to its HTTP server.
    async fn invoke_in_process(&self, local: &faas_gateway::Service, query: &str) -> Answer {
        let mut path = String::with_capacity(self.tail.len() + 1);
        if !self.tail.starts_with('/') {
            path.push('/');
        }
        path.push_str(self.tail);
        let invocation = Invocation {
            method: self.method.clone(),
            path,
            query: query.to_string(),
            headers: upstream::request_headers(self.req.headers(), 0),
            body: self.body.clone(),
            peer: self.req.peer_addr().map(|a| a.ip().to_string()),
            host: Some(self.req.connection_info().host().to_string()),
        };
        let timeout = self.node.offload.config.forward_timeout.as_duration();
        match tokio::time::timeout(timeout, local.invoke(&self.entry.state.service, invocation))
            .await
        {
            Ok(result) => gateway_answer(result),
            Err(_) => Answer::reject(
                StatusCode::GATEWAY_TIMEOUT,
                "backend_timeout",
                format!(
                    "{} did not answer within {timeout:?}",
                    self.entry.state.service
                ),
            ),
        }
    }

    fn max_hops(&self) -> u32 {
        self.node.offload.config.max_hops
    }

    /// Steps 2-4: hosting node or access node, within the hop limit.
    async fn route(&self, now: Timestamp) -> Answer {
        let hops = self.caller.hops();
        let may_forward = hops < self.max_hops();
        if !self.entry.hosted_by(self.me.node_id) {
            if !may_forward {
                return Answer::reject(
                    StatusCode::LOOP_DETECTED,
                    "hop_limit",
                    format!(
                        "the request crossed {hops} nodes; forwarding it again would exceed max_hops ({})",
                        self.max_hops()
                    ),
                );
            }
            return self.access(hops + 1).await;
        }
        if self.caller.kind() == Some(RouteKind::Offload) {
            return self.serve_local().await;
        }
        let state = &self.entry.state;
        state.record_arrival(now);
        let decision = state.weights().select(rand::random::<u32>());
        match decision {
            Decision::Local => self.serve_local().await,
            Decision::Reject => Answer::reject(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "{} is over its capacity for {} and no peer has spare capacity",
                    self.node.name(),
                    state.service
                ),
            ),
            Decision::Forward(_) if !may_forward => self.serve_local().await,
            Decision::Forward(peer) => self.offload(peer, hops + 1).await,
        }
    }

    /// A hosting node sheds the request to `peer`; on a safe failure it tries the next
    /// target of the weights' fallback order (another peer, or here).
    async fn offload(&self, peer: NodeId, hops: u32) -> Answer {
        let failed = match self.forward(peer, RouteKind::Offload, hops).await {
            Ok(answer) => return answer,
            Err(f) => f,
        };
        if !failed.safe {
            return failed.answer;
        }
        let next = self
            .entry
            .state
            .weights()
            .fallback_order(Decision::Forward(peer))
            .into_iter()
            .find(|d| *d != Decision::Forward(peer));
        match next {
            Some(Decision::Forward(other)) => {
                match self.forward(other, RouteKind::Offload, hops).await {
                    Ok(answer) => answer,
                    Err(f) => f.answer,
                }
            }
            Some(Decision::Local) | None => self.serve_local().await,
            Some(Decision::Reject) => failed.answer,
        }
    }

    /// An access node forwards to the nearest alive host by RTT; on a safe failure, once to
    /// the next one.
    async fn access(&self, hops: u32) -> Answer {
        let hosts = self.ranked_hosts();
        let Some(&first) = hosts.first() else {
            return Answer::reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_host",
                format!("no alive node hosts {}", self.entry.route.service),
            );
        };
        let failed = match self.forward(first, RouteKind::Access, hops).await {
            Ok(answer) => return answer,
            Err(f) => f,
        };
        match hosts.get(1) {
            Some(&next) if failed.safe => match self.forward(next, RouteKind::Access, hops).await {
                Ok(answer) => answer,
                Err(f) => f.answer,
            },
            _ => failed.answer,
        }
    }

    /// Hosts other than this node and the sender, alive in the table: not suspect first, then
    /// by RTT (unknown last), then in table order.
    fn ranked_hosts(&self) -> Vec<NodeId> {
        let now_ms = self.node.offload.epoch_ms(Instant::now());
        let sender = self.caller.sender();
        let mut hosts: Vec<(bool, u128, usize, NodeId)> = self
            .entry
            .route
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| **h != self.me.node_id && Some(**h) != sender)
            .filter_map(|(i, h)| {
                let n = self.routes.node(*h)?;
                n.info.alive.then(|| {
                    let rtt = n.link.rtt_hint().map_or(u128::MAX, |d| d.as_micros());
                    (n.link.is_suspect(now_ms), rtt, i, *h)
                })
            })
            .collect();
        hosts.sort_unstable();
        hosts.into_iter().map(|(.., h)| h).collect()
    }

    /// Forwards to `peer` as `kind` with `hops`. `Err` when the forward failed (no answer,
    /// or 429/503, or any 5xx of an idempotent method).
    async fn forward(&self, peer: NodeId, kind: RouteKind, hops: u32) -> Result<Answer, Failed> {
        let off = &self.node.offload;
        let service = &self.entry.state.service;
        let Some(target) = self
            .routes
            .node(peer)
            .filter(|n| n.info.alive && self.entry.hosted_by(peer))
        else {
            return Err(Failed {
                safe: true,
                answer: Answer::reject(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_host",
                    format!("{peer} is no longer an alive host of {service}"),
                ),
            });
        };
        off.metrics.count_forward(service, &target.info.name);
        let covered = auth::forward_target(self.path_and_query, hops, kind.as_str());
        let signature = self.node.sign_forward(
            self.me,
            &peer.to_string(),
            Timestamp::now(),
            &auth::RequestTarget::new(self.method.as_str(), &covered, &self.body),
        );
        let mut headers = upstream::request_headers(self.req.headers(), 3);
        if let Ok(v) = HeaderValue::from_str(&signature) {
            headers.insert(FORWARD_HEADER, v);
        }
        headers.insert(HOPS_HEADER, HeaderValue::from(hops));
        headers.insert(ROUTE_HEADER, HeaderValue::from_static(kind.as_str()));
        let uri = format!(
            "{}{}",
            target.info.url.trim_end_matches('/'),
            self.path_and_query
        );
        let result = self.send_upstream(&uri, headers).await;
        let idempotent = idempotent(&self.method);
        match result {
            Ok(up) => {
                let status = up.status;
                let refused = status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE;
                let answer = Answer::forwarded(up, &target.info.name);
                if refused || (idempotent && status.is_server_error()) {
                    off.forward_failed(&target.link, false);
                    Err(Failed { safe: true, answer })
                } else {
                    Ok(answer)
                }
            }
            Err(e @ UpstreamError::TooLarge { .. }) => {
                // The peer answered: not a transport failure, and not worth a retry.
                Ok(Answer::reject(
                    StatusCode::BAD_GATEWAY,
                    "answer_too_large",
                    format!("{} answered: {e}", target.info.name),
                ))
            }
            Err(e) => {
                tracing::debug!(peer = %target.info.name, error = %e, "forward failed");
                off.forward_failed(&target.link, true);
                Err(Failed {
                    safe: e.before_run() || idempotent,
                    answer: Answer::reject(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no_host",
                        format!("forward to {} failed: {e}", target.info.name),
                    ),
                })
            }
        }
    }

    /// Step 6: the bounded local queue, then the gateway.
    async fn serve_local(&self) -> Answer {
        let off = &self.node.offload;
        let state = &self.entry.state;
        let _permit = match state.queue.enter(&off.wake).await {
            Ok(p) => p,
            Err(refusal) => {
                return Answer::reject(
                    StatusCode::TOO_MANY_REQUESTS,
                    refusal.reason(),
                    format!(
                        "{} on {}: {} calls in flight and the queue of {} is {}",
                        state.service,
                        self.node.name(),
                        off.config.max_concurrency,
                        off.config.queue_capacity,
                        match refusal {
                            crate::state::offload::QueueRefusal::Full => "full".to_string(),
                            crate::state::offload::QueueRefusal::Timeout =>
                                format!("too slow (waited {})", off.config.queue_timeout),
                        }
                    ),
                );
            }
        };
        let faas = match self.node.faas().await {
            Ok(f) => f,
            Err(e) => {
                return Answer::reject(StatusCode::BAD_GATEWAY, "backend_error", e.to_string());
            }
        };
        let query = self.req.uri().query().unwrap_or("");
        if let Some(local) = &faas.local {
            let answer = self.invoke_in_process(local, query).await;
            state.record_completion(Timestamp::now());
            return answer;
        }
        let base = faas.client.base_url();
        let mut uri = String::with_capacity(
            base.len() + 11 + state.service.len() + self.tail.len() + query.len() + 1,
        );
        uri.push_str(base);
        uri.push_str("/function/");
        uri.push_str(&state.service);
        uri.push_str(self.tail);
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        let headers = upstream::request_headers(self.req.headers(), 0);
        let result = self.send_upstream(&uri, headers).await;
        state.record_completion(Timestamp::now());
        match result {
            Ok(up) => Answer::local(up),
            Err(e @ UpstreamError::Timeout { .. }) => Answer::reject(
                StatusCode::GATEWAY_TIMEOUT,
                "backend_timeout",
                e.to_string(),
            ),
            Err(e @ UpstreamError::TooLarge { .. }) => {
                Answer::reject(StatusCode::BAD_GATEWAY, "answer_too_large", e.to_string())
            }
            Err(e) => Answer::reject(StatusCode::BAD_GATEWAY, "backend_error", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_gateways_errors_read_as_its_http_server_writes_them() {
        let full = gateway_answer(Err(GatewayError::QueueFull {
            function: "fogfn-x".into(),
            capacity: 3,
            retry_after: std::time::Duration::from_secs(2),
        }));
        assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.headers["retry-after"], "2");
        assert!(
            String::from_utf8_lossy(&full.body).contains("queue for function fogfn-x is full"),
            "{:?}",
            full.body
        );
        let gone = gateway_answer(Err(GatewayError::FunctionNotFound("fogfn-y".into())));
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert_eq!(gone.outcome, Outcome::Local);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-call-id", HeaderValue::from_static("c1"));
        let ok = gateway_answer(Ok(InvocationResponse {
            status: 201,
            headers,
            body: Bytes::from_static(b"hi"),
        }));
        assert_eq!(ok.status, StatusCode::CREATED);
        assert_eq!(ok.headers["x-call-id"], "c1");
        assert_eq!(&ok.body[..], b"hi");
    }

    #[test]
    fn function_paths_split_into_name_and_raw_tail() {
        assert_eq!(split_path("/function/echo"), ("echo", ""));
        assert_eq!(split_path("/function/echo/a/b%20c"), ("echo", "/a/b%20c"));
        assert_eq!(split_path("/function/echo/"), ("echo", "/"));
    }

    #[test]
    fn only_safe_methods_are_idempotent() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
    }
}
