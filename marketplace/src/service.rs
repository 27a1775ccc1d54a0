//! The marketplace's rules: enrollment and liveness of nodes, auctions (with deadline and
//! fallback), provisioning, cancellation and the lifetime of placements.
//!
//! Handlers call these functions with already-extracted input and the current time; the
//! functions call `model` for the pure logic, [`Repository`] for state and [`NodeClient`] for
//! the fog nodes.
//!
//! The route table (`GET /api/routes`) is versioned here: every change that alters it (a
//! placement goes live, is cancelled, fails or finishes; a node registers, dies or comes back)
//! bumps a counter after the change is committed, and long-polls wait on that counter, holding
//! neither a database connection nor a thread. The table is built from the database once per
//! version and shared by every poll.

use crate::clients::{
    AuthenticateError, Caller, ClientAccess, ClientGate, ClientLimits, LimitExceeded, TokenError,
};
use crate::dashboard::{Dashboard, DashboardConfig, DashboardView};
use crate::metrics::{AuctionOutcome, Metrics};
use crate::node_client::{NodeAddr, NodeCallError, NodeClient};
use crate::release_batch::ReleaseBatcher;
use crate::repository::{
    AuctionRecord, AuctionResult, BidRecord, HeartbeatOutcome, NodeRecord, PlacementRecord,
    PlacementState, RepoError, Repository, SlaOrigin, outcome,
};
use model::auction::{AuctionRule, Award, run_auction};
use model::auth::{self, PublicKey, RequestTarget, SecretKey};
use model::latency::PathLatency;
use model::protocol::{
    AcceptRequest, AcceptResponse, AuctionTicket, Bid, BidRequest, DroppedBid, FunctionRoute,
    HeartbeatRequest, HeartbeatResponse, Neighbour, PROTOCOL_VERSION, Refusal, RefusalReason,
    RegisterRequest, RegisterResponse, Relation, Resources, RouteNode, RouteTable,
};
use model::{AuctionId, BidId, FieldError, NodeId, Price, Sla, SlaId, Timestamp};
use serde::Serialize;
use signed_http::SignedClient;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

/// Signatures older (or newer) than this are refused.
pub const MAX_SIGNATURE_SKEW: Duration = auth::MAX_SKEW;
/// A node silent for this many heartbeat intervals is marked dead.
pub const MISSED_HEARTBEATS: u32 = 3;
/// Timeout of the best-effort calls (release, cancel, provision).
const SIDE_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A node deploys the function and waits for it to be ready (its own deadline, 30 s by
/// default) before it answers a provisioning call.
const PROVISION_TIMEOUT: Duration = Duration::from_secs(65);
/// Longest a route long-poll may wait (`waitMs`).
pub const MAX_ROUTE_WAIT_MS: u64 = 30_000;
/// The path of the route table long-poll.
pub const ROUTES_PATH: &str = "/api/routes";
const MAX_NAME_LEN: usize = 128;
const MAX_URL_LEN: usize = 2048;
const MAX_TAGS: usize = 64;

/// Errors of the service layer; `routes` maps each to a status code and a JSON body.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The SLA is invalid (400 `invalid_sla`).
    #[error("{0}")]
    InvalidSla(FieldError),
    /// Some other input field is invalid (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(FieldError),
    #[error("no fog node is known by id or name `{0}`")]
    UnknownTargetNode(String),
    #[error("target node `{name}` ({id}) is not alive (no heartbeat recently)")]
    TargetNodeDead { id: NodeId, name: String },
    #[error("{message}")]
    NoFeasibleNode {
        message: String,
        refusals: Vec<Refusal>,
    },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Conflict(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A client API request without a valid client token while tokens are required (401
    /// with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    ClientToken(TokenError),
    /// A client went over one of its limits (429, with `Retry-After` when known).
    #[error("{0}")]
    ClientLimit(LimitExceeded),
    /// Validly signed, but not by someone allowed to ask (403 `forbidden`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NodeCallFailed(String),
    /// A fault of the marketplace itself (500).
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A placement request, as extracted by the handler.
#[derive(Debug, Clone)]
pub struct PlaceRequest {
    pub sla: Sla,
    /// Node id or node name.
    pub target_node: String,
    /// Provision the winners in the same call.
    pub provision: bool,
}

/// One winner as shown to clients: GIRAFF's `{bid: {nodeId, id, bid}, price}` plus where it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WinnerView {
    pub bid: Bid,
    pub price: Price,
    pub node_id: NodeId,
    pub node_name: String,
    pub node_url: String,
    /// GIRAFF clients read `ip` and `port` of the chosen node.
    pub ip: String,
    pub port: u16,
    pub state: PlacementState,
    pub ends_at: Timestamp,
    /// Where clients invoke the function while this placement is live: the target (access)
    /// node's data plane, `<targetNodeUrl>/function/fogfn-<slaId>`; the federation routes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_url: Option<String>,
    /// This node's own gateway URL for the function, as it reported at provisioning (the
    /// direct path, bypassing the federation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// Why provisioning failed on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Proposals {
    pub bids: Vec<Bid>,
}

/// A function (an SLA) and where it is placed. Answer of `PUT /api/function` and
/// `GET /api/function/{id}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionView {
    pub sla: Sla,
    pub target_node: NodeId,
    /// The cheapest winner (GIRAFF's `chosen`); `None` when the auction placed nothing.
    pub chosen: Option<WinnerView>,
    /// Every hosting node (`sla.nodes` of them).
    pub winners: Vec<WinnerView>,
    pub proposals: Proposals,
    pub auction_id: Option<AuctionId>,
    /// Overall state: the least advanced active placement, else failed/finished/cancelled.
    pub state: String,
    /// Where clients invoke the function while a placement is live: the target (access)
    /// node's data plane, `<targetNodeUrl>/function/fogfn-<slaId>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_url: Option<String>,
    pub created_at: Timestamp,
    /// Node calls that failed while provisioning or cancelling (best effort).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One node in `GET /api/fog`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FogNodeView {
    pub id: NodeId,
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
    pub parent: Option<String>,
    pub url: String,
    pub capacity: Resources,
    pub reserved: Resources,
    pub alive: bool,
    pub last_seen: Timestamp,
    pub registered_at: Timestamp,
}

impl From<NodeRecord> for FogNodeView {
    fn from(n: NodeRecord) -> Self {
        Self {
            id: n.id,
            name: n.name,
            owner: n.owner,
            tags: n.tags,
            parent: n.parent,
            url: n.url,
            capacity: n.capacity,
            reserved: n.reserved,
            alive: n.alive,
            last_seen: n.last_seen,
            registered_at: n.registered_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionBidView {
    #[serde(flatten)]
    pub bid: Bid,
    pub won: bool,
    pub refused_accept: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionWinnerView {
    pub node_id: NodeId,
    pub node_name: String,
    pub bid_id: BidId,
    pub bid: Price,
    pub price: Price,
    pub state: PlacementState,
}

/// `GET /api/auctions/{id}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionView {
    pub id: AuctionId,
    pub sla_id: SlaId,
    pub rule: String,
    pub target_node: NodeId,
    pub outcome: String,
    pub bids: Vec<AuctionBidView>,
    pub refusals: Vec<Refusal>,
    pub winners: Vec<AuctionWinnerView>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
}

/// The marketplace service. Cheap to clone (shared pools inside).
#[derive(Clone)]
pub struct Marketplace {
    repo: Repository,
    nodes: NodeClient,
    releases: ReleaseBatcher,
    /// The marketplace's own key: signs its calls to nodes and its auction tickets.
    key: Arc<SecretKey>,
    /// Checks members' signatures addressed to the marketplace (and refuses replays).
    guard: Arc<auth::Guard>,
    /// The pinned key of every enrolled node, loaded from the database on first use.
    node_keys: Arc<RwLock<HashMap<NodeId, PublicKey>>>,
    enrollment_secret: Vec<u8>,
    rule: AuctionRule,
    auction_timeout: Duration,
    call_margin: Duration,
    heartbeat_interval: Duration,
    routes: Arc<RouteBook>,
    metrics: Arc<Metrics>,
    dashboard: Arc<Dashboard>,
    /// Client tokens and limits of the client API.
    clients: Arc<ClientGate>,
}

/// Version, cache and stop signal of the route table, shared by every clone of the service.
struct RouteBook {
    /// Bumped after every committed change that alters the table.
    version: watch::Sender<u64>,
    /// `true` once the marketplace stops: waiting polls answer at once.
    stopping: watch::Sender<bool>,
    /// The table of the latest version built; the lock is held while building, so concurrent
    /// polls after one change wait for one build instead of each reading the database.
    cache: tokio::sync::Mutex<Option<Arc<RouteTable>>>,
    builds: AtomicU64,
    waiting: AtomicUsize,
}

/// Counters of the route table, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteStats {
    /// The current version.
    pub version: u64,
    /// Tables built from the database since start.
    pub builds: u64,
    /// Long-polls waiting for a change right now.
    pub waiting: usize,
}

/// Counts a waiting long-poll for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one auction in the metrics when dropped, with the outcome reached by then
/// (`failed` when the auction ended early on an error).
struct AuctionRecorder<'a> {
    metrics: &'a Metrics,
    rule: AuctionRule,
    outcome: AuctionOutcome,
    bids: usize,
}

impl<'a> AuctionRecorder<'a> {
    fn new(metrics: &'a Metrics, rule: AuctionRule) -> Self {
        Self {
            metrics,
            rule,
            outcome: AuctionOutcome::Failed,
            bids: 0,
        }
    }
}

impl Drop for AuctionRecorder<'_> {
    fn drop(&mut self) {
        self.metrics
            .auction(&self.rule.to_string(), self.outcome, self.bids);
    }
}

/// The OpenFaaS service name of an SLA's deployment on every hosting node (the fog node names
/// it so: `fogfn-<slaId>`); also the name clients use in `/function/{name}`.
pub fn service_name(sla: SlaId) -> String {
    format!("fogfn-{sla}")
}

/// The data-plane URL of a function on a node: `<nodeUrl>/function/fogfn-<slaId>`.
pub fn data_plane_url(node_url: &str, sla: SlaId) -> String {
    format!(
        "{}/function/{}",
        node_url.trim_end_matches('/'),
        service_name(sla)
    )
}

/// Configuration of [`Marketplace::new`].
#[derive(Debug, Clone)]
pub struct MarketplaceConfig {
    /// The marketplace's own signing key (persisted by `startup`).
    pub key: Arc<SecretKey>,
    pub enrollment_secret: String,
    pub rule: AuctionRule,
    pub auction_timeout: Duration,
    pub call_margin: Duration,
    pub heartbeat_interval: Duration,
    /// Cache and node timeouts of `GET /api/dashboard`.
    pub dashboard: DashboardConfig,
    /// Whether the client API requires tokens, and what one client may ask for.
    pub client_access: ClientAccess,
    pub client_limits: ClientLimits,
}

fn is_clean_text(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

fn check_name(field: &str, s: &str) -> Result<(), ServiceError> {
    if s.trim().is_empty() {
        return Err(ServiceError::InvalidRequest(FieldError::new(
            field,
            "must not be empty",
        )));
    }
    if !is_clean_text(s, MAX_NAME_LEN) {
        return Err(ServiceError::InvalidRequest(FieldError::new(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
        )));
    }
    Ok(())
}

fn check_url(field: &str, s: &str) -> Result<(), ServiceError> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && is_clean_text(s, MAX_URL_LEN)
        && !s.contains(char::is_whitespace)
        && host_port(s).is_some();
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidRequest(FieldError::new(
            field,
            "must be an http:// or https:// URL with a host, e.g. http://10.0.0.5:8080",
        )))
    }
}

/// Host and port of an `http(s)://host[:port][/…]` URL.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

fn unauthorized(e: auth::AuthError) -> ServiceError {
    ServiceError::Unauthorized(e.to_string())
}

fn refusal(node: NodeId, name: &str, reason: RefusalReason) -> Refusal {
    Refusal {
        node_id: node,
        node_name: name.to_string(),
        reason,
    }
}

/// The overall state of a function from its placements.
pub(crate) fn overall_state(placements: &[PlacementRecord]) -> String {
    let active = placements
        .iter()
        .map(|p| p.state)
        .filter(|s| s.is_active())
        .min_by_key(|s| match s {
            PlacementState::Reserved => 0,
            PlacementState::Provisioning => 1,
            _ => 2,
        });
    if let Some(s) = active {
        return s.to_string();
    }
    let has = |s: PlacementState| placements.iter().any(|p| p.state == s);
    let s = if placements.is_empty() || has(PlacementState::Failed) {
        PlacementState::Failed
    } else if has(PlacementState::Finished) {
        PlacementState::Finished
    } else {
        PlacementState::Cancelled
    };
    s.to_string()
}

/// A node's answer to provisioning -> our state (`live` when it says so).
/// A node's answer to `POST /api/provision/{slaId}`: its placement with `state`, and
/// `invokeUrl` once live or `error` when the deployment failed.
fn provisioned(answer: &serde_json::Value) -> (PlacementState, Option<String>, Option<String>) {
    let text = |k: &str| answer.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let reported = answer
        .get("state")
        .and_then(|s| serde_json::from_value::<PlacementState>(s.clone()).ok());
    let state = match reported {
        Some(s @ (PlacementState::Live | PlacementState::Failed)) => s,
        _ => PlacementState::Provisioning,
    };
    (state, text("invokeUrl"), text("error"))
}

impl Marketplace {
    pub fn new(repo: Repository, http: SignedClient, config: MarketplaceConfig) -> Self {
        let nodes = NodeClient::new(http.clone(), config.key.clone());
        let dashboard = Dashboard::new(repo.clone(), http, config.rule, config.dashboard);
        Self {
            metrics: Arc::new(Metrics::new()),
            dashboard: Arc::new(dashboard),
            clients: Arc::new(ClientGate::new(config.client_access, config.client_limits)),
            nodes: nodes.clone(),
            releases: ReleaseBatcher::new(nodes),
            repo,
            key: config.key,
            guard: Arc::new(auth::Guard::new(auth::MARKETPLACE)),
            node_keys: Arc::default(),
            enrollment_secret: config.enrollment_secret.into_bytes(),
            rule: config.rule,
            auction_timeout: config.auction_timeout,
            call_margin: config.call_margin,
            heartbeat_interval: config.heartbeat_interval,
            routes: Arc::new(RouteBook {
                // Wall-clock milliseconds: greater than any version a node may hold from an
                // earlier run of the marketplace (see `bump_routes`).
                version: watch::Sender::new(Timestamp::now().as_millis()),
                stopping: watch::Sender::new(false),
                cache: tokio::sync::Mutex::new(None),
                builds: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    pub fn auction_rule(&self) -> AuctionRule {
        self.rule
    }

    // -- clients ------------------------------------------------------------------------------

    /// Whether the client API requires tokens (resolved at start from `--client-auth` and the
    /// listen address).
    pub fn client_access(&self) -> ClientAccess {
        self.clients.access()
    }

    /// The limits applied to each client.
    pub fn client_limits(&self) -> &ClientLimits {
        self.clients.limits()
    }

    /// The caller of a client API request: with tokens required, the client whose
    /// `Authorization: Bearer` token it carries (401 otherwise); in open mode nobody.
    pub async fn authenticate_client(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Caller, ServiceError> {
        self.clients
            .authenticate(&self.repo, authorization, peer)
            .await
            .map_err(|e| match e {
                AuthenticateError::Token(t) => ServiceError::ClientToken(t),
                AuthenticateError::Repo(r) => ServiceError::Repo(r),
            })
    }

    /// The SLA `sla` if `caller` may see it. Another client's SLA is `NotFound`, exactly like
    /// one that does not exist, so ids do not reveal what others placed.
    async fn visible_sla(
        &self,
        caller: &Caller,
        sla: SlaId,
    ) -> Result<crate::repository::SlaRecord, ServiceError> {
        match self.repo.sla(sla).await? {
            Some(record) if caller.may_access(record.owner) => Ok(record),
            _ => Err(ServiceError::NotFound {
                what: "function",
                id: sla.to_string(),
            }),
        }
    }

    // -- observability ------------------------------------------------------------------------

    /// This marketplace's metrics (its own registry).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `GET /metrics`: the Prometheus text, with the node and placement gauges refreshed from
    /// the database.
    pub async fn render_metrics(&self) -> Result<String, ServiceError> {
        let (alive, dead) = self.repo.count_nodes_by_liveness().await?;
        self.metrics.set_nodes(alive, dead);
        let counts = self.repo.count_placements_by_state().await?;
        self.metrics.set_placements(&counts);
        Ok(self.metrics.render())
    }

    /// `GET /api/dashboard`: the federation at a glance (cached for about a second).
    pub async fn dashboard(&self) -> Result<Arc<DashboardView>, ServiceError> {
        self.dashboard.view().await
    }

    /// Dashboard aggregates built since start (each asked every node once).
    pub fn dashboard_builds(&self) -> u64 {
        self.dashboard.builds()
    }

    // -- nodes --------------------------------------------------------------------------------

    /// The marketplace's public key (nodes pin it at enrollment).
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// The key pinned to `node`, from the cache or the database.
    async fn node_key(&self, node: NodeId) -> Result<Option<PublicKey>, ServiceError> {
        if let Some(k) = self
            .node_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&node)
        {
            return Ok(Some(*k));
        }
        let Some(record) = self.repo.node_by_id(node).await? else {
            return Ok(None);
        };
        let Some(key) = record.public_key else {
            return Ok(None);
        };
        self.node_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, key);
        Ok(Some(key))
    }

    /// The enrolled node that signed a request to the marketplace (signature, recipient, time
    /// and nonce checked).
    async fn signed_by_node(
        &self,
        authorization: Option<&str>,
        req: &RequestTarget<'_>,
        now: Timestamp,
    ) -> Result<NodeId, ServiceError> {
        let claim = auth::parse(authorization).map_err(unauthorized)?;
        let node: NodeId = claim.sender.parse().map_err(|_| {
            ServiceError::Unauthorized(format!(
                "signed by `{}`, which is not a node id",
                claim.sender
            ))
        })?;
        let key = self.node_key(node).await?;
        self.guard
            .check(authorization, now, req, |_| key)
            .map_err(unauthorized)?;
        Ok(node)
    }

    /// `POST /api/register`: signed with the enrollment secret by the node's name, carrying
    /// the node's public key. The first registration of a name pins that key to the name and
    /// to the node id; a later one must come with the same key (and the same owner), or it is
    /// refused with 409 and changes nothing.
    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<RegisterResponse, ServiceError> {
        let sender = auth::enrollment::verify(
            &self.enrollment_secret,
            authorization,
            now,
            MAX_SIGNATURE_SKEW,
            "POST",
            "/api/register",
            body,
        )
        .map_err(unauthorized)?;
        let req: RegisterRequest = serde_json::from_slice(body).map_err(|e| {
            ServiceError::InvalidRequest(FieldError::new(
                "body",
                format!("not a RegisterRequest: {e}"),
            ))
        })?;
        if sender != req.name {
            return Err(ServiceError::Unauthorized(format!(
                "signed by `{sender}` but registers `{}`",
                req.name
            )));
        }
        if let Some(v) = req.protocol_version
            && v != PROTOCOL_VERSION
        {
            return Err(ServiceError::InvalidRequest(FieldError::new(
                "protocolVersion",
                format!("version {v} is not supported, this marketplace speaks {PROTOCOL_VERSION}"),
            )));
        }
        check_name("name", &req.name)?;
        if !is_clean_text(&req.owner, MAX_NAME_LEN) {
            return Err(ServiceError::InvalidRequest(FieldError::new(
                "owner",
                format!("must be at most {MAX_NAME_LEN} bytes without control characters"),
            )));
        }
        if req.tags.len() > MAX_TAGS {
            return Err(ServiceError::InvalidRequest(FieldError::new(
                "tags",
                format!("at most {MAX_TAGS} tags"),
            )));
        }
        for (i, t) in req.tags.iter().enumerate() {
            check_name(&format!("tags[{i}]"), t)?;
        }
        if let Some(p) = &req.parent {
            check_name("parent", p)?;
            if *p == req.name {
                return Err(ServiceError::InvalidRequest(FieldError::new(
                    "parent",
                    "a node cannot be its own parent",
                )));
            }
        }
        check_url("url", &req.url)?;

        let existing = self.repo.node_by_name(&req.name).await?;
        if let Some(n) = &existing {
            if let Some(pinned) = n.public_key
                && pinned != req.public_key
            {
                return Err(ServiceError::Conflict(format!(
                    "node `{}` is enrolled under another key; a node keeps its key \
                     (its state directory), or an operator removes it first",
                    req.name
                )));
            }
            if n.owner != req.owner {
                return Err(ServiceError::Conflict(format!(
                    "node `{}` belongs to owner `{}`, not `{}`",
                    req.name, n.owner, req.owner
                )));
            }
        }
        let id = match (&existing, req.node_id) {
            (Some(n), _) => n.id,
            (None, Some(wanted)) => match self.repo.node_by_id(wanted).await? {
                Some(other) => {
                    return Err(ServiceError::Conflict(format!(
                        "node id {wanted} already belongs to node `{}`",
                        other.name
                    )));
                }
                None => wanted,
            },
            (None, None) => NodeId::new(),
        };
        let record = NodeRecord {
            id,
            name: req.name.clone(),
            owner: req.owner.clone(),
            tags: req.tags.clone(),
            parent: req.parent.clone(),
            url: req.url.clone(),
            capacity: req.capacity,
            reserved: existing.as_ref().map_or(Resources::ZERO, |n| n.reserved),
            last_seen: now,
            alive: true,
            registered_at: existing.as_ref().map_or(now, |n| n.registered_at),
            public_key: Some(req.public_key),
        };
        self.repo.upsert_node(&record).await.map_err(|e| match e {
            RepoError::Conflict(m) => ServiceError::Conflict(m),
            e => e.into(),
        })?;
        self.node_keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, req.public_key);
        self.bump_routes();
        tracing::info!(node_id = %id, name = %req.name, url = %req.url, "node registered");
        let marketplace_key = self.key.public();
        Ok(RegisterResponse {
            node_id: id,
            marketplace_key,
            proof: auth::enrollment::ack_proof(
                &self.enrollment_secret,
                &id.to_string(),
                &req.public_key,
                &marketplace_key,
            ),
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
        })
    }

    /// `POST /api/heartbeat/{nodeId}`: signed by that node's own key (no other node may
    /// heartbeat, move or report reservations in its name).
    #[tracing::instrument(skip_all, fields(node_id = %node_id))]
    pub async fn heartbeat(
        &self,
        node_id: &str,
        authorization: Option<&str>,
        path: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<HeartbeatResponse, ServiceError> {
        let id: NodeId = node_id.parse().map_err(|e| {
            ServiceError::InvalidRequest(FieldError::new("nodeId", format!("not a UUID: {e}")))
        })?;
        let sender = self
            .signed_by_node(authorization, &RequestTarget::new("POST", path, body), now)
            .await?;
        if sender != id {
            return Err(ServiceError::Forbidden(format!(
                "signed by node {sender}, which may only heartbeat as itself, not as node {id}"
            )));
        }
        let req: HeartbeatRequest = serde_json::from_slice(body).map_err(|e| {
            ServiceError::InvalidRequest(FieldError::new(
                "body",
                format!("not a HeartbeatRequest: {e}"),
            ))
        })?;
        if let Some(url) = &req.url {
            check_url("url", url)?;
        }
        match self
            .repo
            .record_heartbeat(id, req.reserved, req.url.as_deref(), now)
            .await?
        {
            HeartbeatOutcome::Unknown => {
                return Err(ServiceError::NotFound {
                    what: "node",
                    id: id.to_string(),
                });
            }
            HeartbeatOutcome::Changed => {
                tracing::info!("node is alive again or moved");
                self.bump_routes();
            }
            HeartbeatOutcome::Unchanged => {}
        }
        let all = self.repo.list_nodes().await?;
        let me = all.iter().find(|n| n.id == id);
        let neighbours = match me {
            None => Vec::new(),
            Some(me) => all
                .iter()
                .filter_map(|n| {
                    let relation = if me.parent.as_deref() == Some(n.name.as_str()) {
                        Relation::Parent
                    } else if n.parent.as_deref() == Some(me.name.as_str()) {
                        Relation::Child
                    } else {
                        return None;
                    };
                    // A node enrolled before keys existed has none: it cannot be verified, so
                    // it is nobody's neighbour until it enrols again.
                    let public_key = n.public_key?;
                    (n.id != me.id).then(|| Neighbour {
                        node_id: n.id,
                        name: n.name.clone(),
                        url: n.url.clone(),
                        public_key,
                        relation,
                        alive: n.alive,
                        tags: n.tags.clone(),
                    })
                })
                .collect(),
        };
        Ok(HeartbeatResponse { neighbours })
    }

    /// Every node, by name.
    pub async fn fog(&self) -> Result<Vec<FogNodeView>, ServiceError> {
        Ok(self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .map(FogNodeView::from)
            .collect())
    }

    /// Liveness step: nodes silent for [`MISSED_HEARTBEATS`] intervals become `alive = false`.
    /// Their live placements stay recorded (re-placement is future work).
    pub async fn mark_silent_nodes_dead(&self, now: Timestamp) -> Result<u64, ServiceError> {
        let silence = self
            .heartbeat_interval
            .checked_mul(MISSED_HEARTBEATS)
            .unwrap_or(Duration::MAX);
        let silence_ms = u64::try_from(silence.as_millis()).unwrap_or(u64::MAX);
        let cutoff = Timestamp::from_millis(now.as_millis().saturating_sub(silence_ms));
        let n = self.repo.mark_nodes_dead_since(cutoff).await?;
        if n > 0 {
            self.bump_routes();
            tracing::warn!(
                count = n,
                "nodes missed {MISSED_HEARTBEATS} heartbeats: marked dead"
            );
        }
        Ok(n)
    }

    /// Lifetime step: placements whose `ends_at` passed become `finished` (each node frees its
    /// own resources at the same time).
    pub async fn finish_due_placements(&self, now: Timestamp) -> Result<u64, ServiceError> {
        let n = self.repo.finish_due_placements(now).await?;
        if n > 0 {
            self.bump_routes();
            tracing::info!(count = n, "placements reached the end of their lifetime");
        }
        Ok(n)
    }

    /// Retention step: deletes SLAs that have been over for longer than `retention`, with their
    /// auctions, bids and placements, so the history does not grow forever.
    pub async fn purge_history(
        &self,
        now: Timestamp,
        retention: Duration,
    ) -> Result<u64, ServiceError> {
        let cutoff = Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(retention.as_millis().min(u64::MAX as u128) as u64),
        );
        let n = self.repo.purge_history(cutoff).await?;
        if n > 0 {
            tracing::info!(count = n, "deleted SLAs older than the history retention");
        }
        Ok(n)
    }

    // -- route table --------------------------------------------------------------------------

    /// Records that the route table changed. Call after the change is committed: a table built
    /// from the database labels itself with the version read before its queries.
    ///
    /// The version is a hybrid clock, `max(previous + 1, now in unix ms)`: it increases on every
    /// bump and stays close to the wall clock, so a restarted marketplace (starting at `now`)
    /// is ahead of any version a node kept from the previous run.
    fn bump_routes(&self) {
        let now = Timestamp::now().as_millis();
        self.routes
            .version
            .send_modify(|v| *v = v.saturating_add(1).max(now));
    }

    /// Version, builds and waiting polls of the route table.
    pub fn route_stats(&self) -> RouteStats {
        RouteStats {
            version: *self.routes.version.borrow(),
            builds: self.routes.builds.load(Ordering::Relaxed),
            waiting: self.routes.waiting.load(Ordering::Relaxed),
        }
    }

    /// Ends every waiting route long-poll now (each answers the current table) and makes later
    /// polls answer without waiting. Called when the marketplace stops.
    pub fn stop_route_polls(&self) {
        self.routes.stopping.send_replace(true);
    }

    /// The route table of the current version, from the cache or built once from the database.
    pub async fn route_table(&self) -> Result<Arc<RouteTable>, ServiceError> {
        let mut cache = self.routes.cache.lock().await;
        // Read under the lock and before the queries: the table holds at least every change
        // committed before this version was published.
        let version = *self.routes.version.borrow();
        if let Some(table) = cache.as_ref()
            && table.version == version
        {
            return Ok(table.clone());
        }
        let table = Arc::new(self.build_route_table(version).await?);
        self.routes.builds.fetch_add(1, Ordering::Relaxed);
        *cache = Some(table.clone());
        Ok(table)
    }

    async fn build_route_table(&self, version: u64) -> Result<RouteTable, ServiceError> {
        let generated_at = Timestamp::now();
        let nodes = self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .filter_map(|n| {
                Some(RouteNode {
                    node_id: n.id,
                    name: n.name,
                    url: n.url,
                    public_key: n.public_key?,
                    alive: n.alive,
                })
            })
            .collect();
        let mut functions: Vec<FunctionRoute> = Vec::new();
        let mut index: HashMap<SlaId, usize> = HashMap::new();
        for p in self.repo.live_placements().await? {
            if let Some(&i) = index.get(&p.sla_id) {
                let f = &mut functions[i];
                f.hosts.push(p.node_id);
                f.expires_at = f.expires_at.min(p.ends_at);
                continue;
            }
            index.insert(p.sla_id, functions.len());
            functions.push(FunctionRoute {
                sla_id: p.sla_id,
                service: service_name(p.sla_id),
                name: p.sla.function_live_name,
                image: p.sla.function_image,
                target_node: p.target_node,
                latency_max_ms: p.sla.latency_max.as_millis_f64(),
                expires_at: p.ends_at,
                hosts: vec![p.node_id],
            });
        }
        Ok(RouteTable {
            version,
            generated_at,
            nodes,
            functions,
        })
    }

    /// `GET /api/routes?after=&waitMs=`: signed by an enrolled node (over the query too).
    /// Answers the current table at once when its version is greater than `after` (or `after`
    /// is absent); otherwise waits up to `wait_ms` (at most [`MAX_ROUTE_WAIT_MS`]) for a newer
    /// version, then answers the current table. While waiting it holds no database connection.
    #[tracing::instrument(skip_all)]
    pub async fn routes(
        &self,
        authorization: Option<&str>,
        path: &str,
        body: &[u8],
        after: Option<u64>,
        wait_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<Arc<RouteTable>, ServiceError> {
        let sender = self
            .signed_by_node(authorization, &RequestTarget::new("GET", path, body), now)
            .await?;
        let wait_ms = wait_ms.unwrap_or(0);
        if wait_ms > MAX_ROUTE_WAIT_MS {
            return Err(ServiceError::InvalidRequest(FieldError::new(
                "waitMs",
                format!("must be at most {MAX_ROUTE_WAIT_MS} (milliseconds), got {wait_ms}"),
            )));
        }
        // Subscribe before reading the table: a change after this point wakes the wait below.
        let mut versions = self.routes.version.subscribe();
        let mut stopping = self.routes.stopping.subscribe();
        let table = self.route_table().await?;
        let registered = table.nodes.iter().any(|n| n.node_id == sender);
        if !registered {
            return Err(ServiceError::Forbidden(format!(
                "signed by `{sender}`, which is not a registered node"
            )));
        }
        let Some(after) = after else {
            return Ok(table);
        };
        if table.version > after || wait_ms == 0 {
            return Ok(table);
        }
        {
            let _waiting = Waiting::new(&self.routes.waiting);
            let deadline = tokio::time::sleep(Duration::from_millis(wait_ms));
            tokio::pin!(deadline);
            loop {
                if *versions.borrow_and_update() > after || *stopping.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    () = &mut deadline => break,
                    changed = versions.changed() => if changed.is_err() { break },
                    changed = stopping.changed() => if changed.is_err() { break },
                }
            }
        }
        self.route_table().await
    }

    // -- auctions -----------------------------------------------------------------------------

    async fn resolve_target(&self, target: &str) -> Result<NodeRecord, ServiceError> {
        let by_id = match target.parse::<NodeId>() {
            Ok(id) => self.repo.node_by_id(id).await?,
            Err(_) => None,
        };
        let node = match by_id {
            Some(n) => Some(n),
            None => self.repo.node_by_name(target).await?,
        };
        let node = node.ok_or_else(|| ServiceError::UnknownTargetNode(target.to_string()))?;
        if !node.alive {
            return Err(ServiceError::TargetNodeDead {
                id: node.id,
                name: node.name,
            });
        }
        Ok(node)
    }

    /// `PUT /api/function`: runs the auction, accepts the winners (falling back to the next bid
    /// when a winner refuses), releases the losers, persists everything.
    ///
    /// The placement belongs to `caller`'s client (in token mode). Before anything is asked of
    /// a node, the caller's limits are checked: its placement rate, its auctions in flight and
    /// its live placements (429 beyond any of them).
    #[tracing::instrument(skip_all, fields(sla_id = %req.sla.id, target = %req.target_node))]
    pub async fn place_function(
        &self,
        caller: &Caller,
        req: PlaceRequest,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        let request_started = Instant::now();
        // Held until the auction (and provisioning, when asked) is over.
        let _slot = match caller.limit_key() {
            Some(key) => {
                self.clients
                    .check_rate(key)
                    .map_err(ServiceError::ClientLimit)?;
                let slot = self
                    .clients
                    .start_auction(key)
                    .map_err(ServiceError::ClientLimit)?;
                let live = self.repo.count_active_placements_of(key).await?;
                self.clients
                    .check_live(live, u64::from(req.sla.nodes))
                    .map_err(ServiceError::ClientLimit)?;
                Some(slot)
            }
            None => None,
        };
        let target = self.resolve_target(&req.target_node).await?;
        let sla = req.sla;
        let auction_id = AuctionId::new();
        let started = Instant::now();
        let origin = SlaOrigin {
            owner: caller.owner(),
            client_addr: caller.peer(),
        };
        self.repo
            .insert_sla_and_auction_from(&sla, target.id, auction_id, self.rule, origin, now)
            .await
            .map_err(|e| match e {
                RepoError::Conflict(_) => {
                    ServiceError::Conflict(format!("an SLA with id {} already exists", sla.id))
                }
                e => e.into(),
            })?;
        // Counts the auction when this function returns, whichever way (`failed` unless an
        // outcome is set below).
        let mut recorder = AuctionRecorder::new(&self.metrics, self.rule);

        // 1. Ask the target; it relays over the overlay and answers by the deadline.
        let bid_request = BidRequest {
            auction_id,
            sla: sla.clone(),
            node_origin: None,
            accumulated_latency: PathLatency::ZERO,
            timeout_ms: self.auction_timeout.as_millis() as u64,
            path: Vec::new(),
            ticket: AuctionTicket::issue(
                &self.key,
                auction_id,
                &sla,
                now.plus(self.auction_timeout.saturating_add(self.call_margin)),
            )
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        };
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut dropped: Vec<DroppedBid> = Vec::new();
        let received: Vec<Bid> = match self
            .nodes
            .bid(
                NodeAddr {
                    id: target.id,
                    url: &target.url,
                },
                &bid_request,
                self.auction_timeout.saturating_add(self.call_margin),
            )
            .await
        {
            Ok(resp) => {
                refusals.extend(resp.refusals);
                dropped = resp.dropped;
                resp.bids
            }
            Err(e) => {
                tracing::warn!(error = %e, "target node did not answer the bid request");
                refusals.push(refusal(
                    target.id,
                    &target.name,
                    RefusalReason::Unreachable {
                        error: e.to_string(),
                    },
                ));
                Vec::new()
            }
        };

        // 2. Only registered, alive nodes may win: the marketplace accepts at the URL it knows.
        let registry: HashMap<NodeId, NodeRecord> = self
            .repo
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| (n.id, n))
            .collect();
        let mut seen_bid_ids = HashSet::new();
        let mut eligible: Vec<Bid> = Vec::new();
        let mut all_bids: Vec<Bid> = Vec::new();
        for mut b in received {
            if !seen_bid_ids.insert(b.id) {
                continue;
            }
            b.latency = b.latency.sanitized();
            if !b.utilisation.is_finite() {
                b.utilisation = 0.0;
            }
            match registry.get(&b.node_id) {
                Some(n) if n.alive => {
                    b.node_name = n.name.clone();
                    b.node_url = n.url.clone();
                    eligible.push(b.clone());
                }
                Some(n) => refusals.push(refusal(
                    n.id,
                    &n.name,
                    RefusalReason::Declined {
                        why: "node is not alive at the marketplace (missed heartbeats)".into(),
                    },
                )),
                None => refusals.push(refusal(
                    b.node_id,
                    &b.node_name,
                    RefusalReason::Declined {
                        why: "node is not registered at the marketplace".into(),
                    },
                )),
            }
            all_bids.push(b);
        }

        recorder.bids = all_bids.len();

        // 3. Award, accept, fall back.
        let wanted = sla.nodes as usize;
        let mut accepted: Vec<(Award, AcceptResponse)> = Vec::new();
        let mut excluded: HashSet<NodeId> = HashSet::new();
        let mut refused_bids: HashSet<BidId> = HashSet::new();
        let mut over_max: Vec<Bid> = Vec::new();
        let mut first_round = true;
        while accepted.len() < wanted {
            let slots = wanted - accepted.len();
            let candidates: Vec<Bid> = eligible
                .iter()
                .filter(|b| !excluded.contains(&b.node_id))
                .cloned()
                .collect();
            let outcome = {
                let mut rng = rand::rng();
                run_auction(self.rule, &candidates, slots, sla.max_price, &mut rng)
            };
            if first_round {
                over_max = outcome.over_max_price.clone();
                first_round = false;
            }
            if outcome.winners.len() < slots {
                break;
            }
            let calls = outcome.winners.iter().map(|award| {
                let accept = AcceptRequest {
                    bid_id: award.bid.id,
                    sla: sla.clone(),
                    price: award.price,
                };
                let url = award.bid.node_url.clone();
                let id = award.bid.node_id;
                async move {
                    self.nodes
                        .accept(
                            NodeAddr { id, url: &url },
                            &accept,
                            self.auction_timeout.saturating_add(self.call_margin),
                        )
                        .await
                }
            });
            let results = futures::future::join_all(calls).await;
            for (award, result) in outcome.winners.into_iter().zip(results) {
                excluded.insert(award.bid.node_id);
                match result {
                    Ok(resp) => {
                        tracing::info!(node = %award.bid.node_name, price = %award.price, "winner accepted");
                        accepted.push((award, resp));
                    }
                    Err(e) => {
                        tracing::warn!(node = %award.bid.node_name, error = %e, "winner did not accept; falling back");
                        refused_bids.insert(award.bid.id);
                        let reason = match &e {
                            NodeCallError::Refused(m) => RefusalReason::Declined {
                                why: format!("refused the accept: {m}"),
                            },
                            other => RefusalReason::Unreachable {
                                error: format!("accept failed: {other}"),
                            },
                        };
                        refusals.push(refusal(award.bid.node_id, &award.bid.node_name, reason));
                    }
                }
            }
        }
        let success = accepted.len() == wanted;
        for b in &over_max {
            if let Some(max_price) = sla.max_price {
                refusals.push(refusal(
                    b.node_id,
                    &b.node_name,
                    RefusalReason::OverMaxPrice {
                        bid: b.bid,
                        max_price,
                    },
                ));
            }
        }

        // 4. Release every hold that did not become a placement (best effort, not awaited).
        let kept: HashSet<BidId> = if success {
            accepted.iter().map(|(a, _)| a.bid.id).collect()
        } else {
            HashSet::new()
        };
        self.release_in_background(&all_bids, &kept, &registry);
        self.release_dropped(&dropped, &all_bids, &registry);
        if !success {
            // Undo partial success: k nodes or none.
            for (award, _) in &accepted {
                self.cancel_in_background(award.bid.node_id, award.bid.node_url.clone(), sla.id);
            }
        }

        // 5. Persist.
        self.metrics.refusals(refusals.iter().map(|r| &r.reason));
        if success {
            for (award, _) in &accepted {
                self.metrics.winning_price(award.price.value());
            }
        }
        let finished_at = now.plus(started.elapsed());
        let placements: Vec<PlacementRecord> = if success {
            accepted
                .iter()
                .map(|(award, _)| PlacementRecord {
                    sla_id: sla.id,
                    node_id: award.bid.node_id,
                    bid_id: award.bid.id,
                    auction_id,
                    price: award.price,
                    state: PlacementState::Reserved,
                    created_at: finished_at,
                    ends_at: finished_at.plus(sla.duration.as_duration()),
                    updated_at: finished_at,
                    invoke_url: None,
                    error: None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let bid_records = all_bids
            .iter()
            .map(|b| BidRecord {
                auction_id,
                bid: b.clone(),
                won: kept.contains(&b.id),
                refused_accept: refused_bids.contains(&b.id),
            })
            .collect();
        self.repo
            .record_auction_result(&AuctionResult {
                auction_id,
                finished_at,
                outcome: if success {
                    outcome::AWARDED
                } else {
                    outcome::NO_FEASIBLE_NODE
                }
                .to_string(),
                refusals: refusals.clone(),
                bids: bid_records,
                placements,
            })
            .await?;
        if success {
            recorder.outcome = AuctionOutcome::Placed;
            self.metrics.placement_duration(request_started.elapsed());
        } else {
            recorder.outcome = AuctionOutcome::NoFeasibleNode;
        }
        drop(recorder);

        if !success {
            let message = if accepted.is_empty() && all_bids.is_empty() {
                format!(
                    "no fog node could host this SLA ({} refusal(s))",
                    refusals.len()
                )
            } else {
                format!(
                    "{wanted} hosting node(s) wanted, {} feasible bid(s) could be accepted; see refusals",
                    accepted.len()
                )
            };
            return Err(ServiceError::NoFeasibleNode { message, refusals });
        }
        let mut errors = Vec::new();
        if req.provision {
            errors = self.provision_placements(sla.id, finished_at).await?;
        }
        let mut view = self.view(sla.id).await?;
        view.errors = errors;
        Ok(view)
    }

    fn release_in_background(
        &self,
        bids: &[Bid],
        kept: &HashSet<BidId>,
        registry: &HashMap<NodeId, NodeRecord>,
    ) {
        self.release_holds(
            bids.iter()
                .filter(|b| !kept.contains(&b.id))
                .map(|b| (b.node_id, b.id)),
            registry,
        );
    }

    /// Releases holds, one batch per registered node (unknown nodes are skipped; their holds
    /// expire).
    fn release_holds(
        &self,
        holds: impl Iterator<Item = (NodeId, BidId)>,
        registry: &HashMap<NodeId, NodeRecord>,
    ) {
        let mut by_node: BTreeMap<NodeId, Vec<BidId>> = BTreeMap::new();
        for (node, bid) in holds {
            by_node.entry(node).or_default().push(bid);
        }
        for (node, bid_ids) in by_node {
            if let Some(n) = registry.get(&node) {
                self.releases.release(n.id, &n.url, bid_ids);
            }
        }
    }

    /// Releases the holds of bids a relay's filter dropped (they never reached the auction).
    /// A bid that did reach it is left to the auction's own release, so a relay cannot get a
    /// competitor's winning hold released by calling it dropped; unknown nodes are skipped.
    fn release_dropped(
        &self,
        dropped: &[DroppedBid],
        received: &[Bid],
        registry: &HashMap<NodeId, NodeRecord>,
    ) {
        /// More dropped bids than this in one auction is not a tree's doing; the rest expire.
        const MAX_DROPPED: usize = 10_000;
        let received: HashSet<BidId> = received.iter().map(|b| b.id).collect();
        self.release_holds(
            dropped
                .iter()
                .take(MAX_DROPPED)
                .filter(|d| !received.contains(&d.bid_id))
                .map(|d| (d.node_id, d.bid_id)),
            registry,
        );
    }

    fn cancel_in_background(&self, id: NodeId, url: String, sla: SlaId) {
        let client = self.nodes.clone();
        tokio::spawn(
            async move {
                let node = NodeAddr { id, url: &url };
                if let Err(e) = client.cancel(node, sla, SIDE_CALL_TIMEOUT).await {
                    tracing::warn!(%url, error = %e, "rollback cancel failed; the reservation will expire");
                }
            }
            // Part of the placement's trace.
            .in_current_span(),
        );
    }

    /// Asks every reserved placement's node to provision; returns the failed calls.
    async fn provision_placements(
        &self,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<Vec<String>, ServiceError> {
        let placements = self.repo.placements_for_sla(sla).await?;
        let targets: Vec<(PlacementRecord, NodeRecord)> = {
            let mut v = Vec::new();
            for p in placements.into_iter().filter(|p| {
                matches!(
                    p.state,
                    PlacementState::Reserved | PlacementState::Provisioning
                )
            }) {
                if let Some(n) = self.repo.node_by_id(p.node_id).await? {
                    v.push((p, n));
                }
            }
            v
        };
        let calls = targets.iter().map(|(_, n)| async move {
            let node = NodeAddr {
                id: n.id,
                url: &n.url,
            };
            self.nodes.provision(node, sla, PROVISION_TIMEOUT).await
        });
        let results = futures::future::join_all(calls).await;
        let mut errors = Vec::new();
        let mut changed = false;
        for ((p, n), r) in targets.iter().zip(results) {
            let (state, invoke_url, error) = match r {
                Ok(answer) => provisioned(&answer),
                Err(
                    e @ (NodeCallError::Refused(_) | NodeCallError::Status { status: 404, .. }),
                ) => (PlacementState::Failed, None, Some(e.to_string())),
                Err(e) => {
                    errors.push(format!("node `{}`: {e}", n.name));
                    continue;
                }
            };
            if let Some(e) = &error {
                errors.push(format!("node `{}`: {e}", n.name));
            }
            let updated = self
                .repo
                .set_placement_provisioned(
                    sla,
                    p.node_id,
                    state,
                    invoke_url.as_deref(),
                    error.as_deref(),
                    now,
                )
                .await;
            match updated {
                Ok(u) => changed |= u,
                Err(e) => {
                    // Earlier placements of this SLA may have changed: tell the route pollers.
                    if changed {
                        self.bump_routes();
                    }
                    return Err(e.into());
                }
            }
        }
        if changed {
            self.bump_routes();
        }
        Ok(errors)
    }

    /// `POST /api/function/{id}`: provisions a reserved placement (GIRAFF's second step).
    /// Only the owner may (another client's id is `NotFound`).
    #[tracing::instrument(skip_all, fields(sla_id = %sla))]
    pub async fn provision(
        &self,
        caller: &Caller,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        let view = self.view(sla).await?;
        if !view.winners.iter().any(|w| w.state.is_active()) {
            return Err(ServiceError::InvalidState(format!(
                "function {sla} has no active placement to provision (state {})",
                view.state
            )));
        }
        let errors = self.provision_placements(sla, now).await?;
        if !errors.is_empty() {
            return Err(ServiceError::NodeCallFailed(format!(
                "provisioning failed on {} node(s): {}",
                errors.len(),
                errors.join("; ")
            )));
        }
        self.view(sla).await
    }

    /// `DELETE /api/function/{id}`: cancels on every hosting node and marks the placements
    /// `cancelled`. Unreachable nodes free the resources when the lifetime ends anyway. Only
    /// the owner may (another client's id is `NotFound`).
    #[tracing::instrument(skip_all, fields(sla_id = %sla))]
    pub async fn cancel(
        &self,
        caller: &Caller,
        sla: SlaId,
        now: Timestamp,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        let mut targets = Vec::new();
        for p in self
            .repo
            .placements_for_sla(sla)
            .await?
            .into_iter()
            .filter(|p| p.state.is_active())
        {
            let node = self.repo.node_by_id(p.node_id).await?;
            targets.push((p, node));
        }
        let calls = targets.iter().map(|(_, n)| async move {
            match n {
                Some(n) => self
                    .nodes
                    .cancel(
                        NodeAddr {
                            id: n.id,
                            url: &n.url,
                        },
                        sla,
                        SIDE_CALL_TIMEOUT,
                    )
                    .await
                    .map_err(|e| format!("node `{}`: {e}", n.name)),
                None => Ok(()),
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut errors = Vec::new();
        let mut changed = false;
        for ((p, _), r) in targets.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cancel call failed; the node frees at end of lifetime");
                errors.push(e);
            }
            let updated = self
                .repo
                .set_placement_state(sla, p.node_id, PlacementState::Cancelled, now)
                .await;
            match updated {
                Ok(u) => changed |= u,
                Err(e) => {
                    if changed {
                        self.bump_routes();
                    }
                    return Err(e.into());
                }
            }
        }
        if changed {
            self.bump_routes();
        }
        let mut view = self.view(sla).await?;
        view.errors = errors;
        Ok(view)
    }

    /// `GET /api/function/{id}`: the caller's function (another client's is `NotFound`).
    pub async fn function(
        &self,
        caller: &Caller,
        sla: SlaId,
    ) -> Result<FunctionView, ServiceError> {
        self.visible_sla(caller, sla).await?;
        self.view(sla).await
    }

    /// A function and its placements, whoever owns it.
    async fn view(&self, sla: SlaId) -> Result<FunctionView, ServiceError> {
        let record = self
            .repo
            .sla(sla)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: "function",
                id: sla.to_string(),
            })?;
        let auction = self.repo.auction_for_sla(sla).await?;
        let bids = match &auction {
            Some(a) => self.repo.bids(a.id).await?,
            None => Vec::new(),
        };
        let placements = self.repo.placements_for_sla(sla).await?;
        let access_url = self
            .repo
            .node_by_id(record.target_node)
            .await?
            .map(|n| data_plane_url(&n.url, sla));
        let mut winners = Vec::new();
        for p in &placements {
            let node = self.repo.node_by_id(p.node_id).await?;
            let bid = bids
                .iter()
                .find(|b| b.bid.id == p.bid_id)
                .map(|b| b.bid.clone())
                .unwrap_or_else(|| Bid {
                    node_id: p.node_id,
                    id: p.bid_id,
                    bid: p.price,
                    node_name: String::new(),
                    node_url: String::new(),
                    latency: PathLatency::ZERO,
                    utilisation: 0.0,
                    hold_expires_at: Timestamp::default(),
                });
            let (name, url) = node
                .map(|n| (n.name, n.url))
                .unwrap_or_else(|| (bid.node_name.clone(), bid.node_url.clone()));
            let (ip, port) = host_port(&url).unwrap_or_default();
            winners.push(WinnerView {
                bid,
                price: p.price,
                node_id: p.node_id,
                node_name: name,
                node_url: url,
                ip,
                port,
                state: p.state,
                ends_at: p.ends_at,
                invoke_url: access_url
                    .clone()
                    .filter(|_| p.state == PlacementState::Live),
                gateway_url: p.invoke_url.clone(),
                error: p.error.clone(),
            });
        }
        winners.sort_by(|a, b| a.bid.bid.cmp(&b.bid.bid).then(a.node_id.cmp(&b.node_id)));
        let live = placements.iter().any(|p| p.state == PlacementState::Live);
        Ok(FunctionView {
            state: overall_state(&placements),
            invoke_url: access_url.filter(|_| live),
            sla: record.sla,
            target_node: record.target_node,
            chosen: winners.first().cloned(),
            winners,
            proposals: Proposals {
                bids: bids.into_iter().map(|b| b.bid).collect(),
            },
            auction_id: auction.map(|a| a.id),
            created_at: record.created_at,
            errors: Vec::new(),
        })
    }

    /// `GET /api/functions`: the caller's functions (in open mode every function), oldest
    /// first.
    pub async fn functions(&self, caller: &Caller) -> Result<Vec<FunctionView>, ServiceError> {
        let slas = match caller.owner() {
            Some(owner) => self.repo.list_slas_owned_by(owner).await?,
            None => self.repo.list_slas().await?,
        };
        let mut out = Vec::new();
        for s in slas {
            out.push(self.view(s.sla.id).await?);
        }
        Ok(out)
    }

    /// `GET /api/auctions/{id}`: an auction of one of the caller's SLAs (another client's is
    /// `NotFound`).
    pub async fn auction(
        &self,
        caller: &Caller,
        id: AuctionId,
    ) -> Result<AuctionView, ServiceError> {
        let not_found = || ServiceError::NotFound {
            what: "auction",
            id: id.to_string(),
        };
        let a: AuctionRecord = self.repo.auction(id).await?.ok_or_else(not_found)?;
        let owner = self.repo.sla(a.sla_id).await?.and_then(|s| s.owner);
        if !caller.may_access(owner) {
            return Err(not_found());
        }
        let bids = self.repo.bids(id).await?;
        let placements = self.repo.placements_for_sla(a.sla_id).await?;
        let winners = placements
            .iter()
            .filter(|p| p.auction_id == id)
            .map(|p| {
                let bid = bids.iter().find(|b| b.bid.id == p.bid_id);
                AuctionWinnerView {
                    node_id: p.node_id,
                    node_name: bid.map(|b| b.bid.node_name.clone()).unwrap_or_default(),
                    bid_id: p.bid_id,
                    bid: bid.map_or(p.price, |b| b.bid.bid),
                    price: p.price,
                    state: p.state,
                }
            })
            .collect();
        Ok(AuctionView {
            id: a.id,
            sla_id: a.sla_id,
            rule: a.rule,
            target_node: a.target_node,
            outcome: a.outcome,
            bids: bids
                .into_iter()
                .map(|b| AuctionBidView {
                    bid: b.bid,
                    won: b.won,
                    refused_accept: b.refused_accept,
                })
                .collect(),
            refusals: a.refusals,
            winners,
            started_at: a.started_at,
            duration_ms: a
                .finished_at
                .map(|f| f.since(a.started_at).as_millis() as u64),
            finished_at: a.finished_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_read_from_node_urls() {
        assert_eq!(
            host_port("http://127.0.0.1:8080/x"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_port("https://fog.example"),
            Some(("fog.example".into(), 443))
        );
        assert_eq!(host_port("http://[::1]:9000"), Some(("::1".into(), 9000)));
        assert_eq!(host_port("http://:80"), None);
        assert_eq!(host_port("nonsense"), None);
        assert_eq!(host_port("http://h:notaport"), None);
    }

    fn placement(state: PlacementState) -> PlacementRecord {
        PlacementRecord {
            sla_id: SlaId::new(),
            node_id: NodeId::new(),
            bid_id: BidId::new(),
            auction_id: AuctionId::new(),
            price: Price::ZERO,
            state,
            created_at: Timestamp::default(),
            ends_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            invoke_url: None,
            error: None,
        }
    }

    #[test]
    fn overall_state_is_the_least_advanced_active_placement() {
        use PlacementState::*;
        let s = |v: &[PlacementState]| {
            overall_state(&v.iter().map(|s| placement(*s)).collect::<Vec<_>>())
        };
        assert_eq!(s(&[Live, Reserved]), "reserved");
        assert_eq!(s(&[Live, Provisioning]), "provisioning");
        assert_eq!(s(&[Live, Cancelled]), "live");
        assert_eq!(s(&[Cancelled, Cancelled]), "cancelled");
        assert_eq!(s(&[Finished, Cancelled]), "finished");
        assert_eq!(s(&[]), "failed");
    }
}
