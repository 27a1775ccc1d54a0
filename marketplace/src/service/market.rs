//! The [`Marketplace`] handle: the parts every job of the service shares, how they are built
//! from [`MarketplaceConfig`], and the calls that only hand a request to one part (client
//! authentication, metrics, the dashboard, the route table).

use super::authentication::{self, Signatures};
use super::route_table::{RouteBook, RouteStats};
use crate::clients::{Caller, ClientAccess, ClientGate, ClientLimits};
use crate::dashboard::{Dashboard, DashboardConfig, DashboardView};
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::node_client::NodeClient;
use crate::release_batch::ReleaseBatcher;
use crate::repository::Repository;
use model::auction::AuctionRule;
use model::auth::{PublicKey, RequestTarget, SecretKey};
use model::protocol::RouteTable;
use model::{NodeId, Timestamp};
use signed_http::SignedClient;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// The marketplace service. Cheap to clone (shared pools inside).
#[derive(Clone)]
pub struct Marketplace {
    pub(super) repo: Repository,
    pub(super) nodes: NodeClient,
    pub(super) releases: ReleaseBatcher,
    /// The marketplace's own key: signs its calls to nodes and its auction tickets.
    pub(super) key: Arc<SecretKey>,
    /// Checks members' signatures addressed to the marketplace (and refuses replays).
    pub(super) signatures: Arc<Signatures>,
    pub(super) rule: AuctionRule,
    pub(super) auction_timeout: Duration,
    pub(super) call_margin: Duration,
    pub(super) heartbeat_interval: Duration,
    routes: Arc<RouteBook>,
    pub(super) metrics: Arc<Metrics>,
    dashboard: Arc<Dashboard>,
    /// Client tokens and limits of the client API.
    pub(super) clients: Arc<ClientGate>,
    /// When each degraded placement is tried again.
    pub(super) retries: Arc<super::healing::Retries>,
    /// When this marketplace started: every node counts as dead until it heartbeats again,
    /// so nothing is re-placed before the nodes had the time to.
    pub(super) started_at: Timestamp,
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
            signatures: Arc::new(Signatures::new(config.enrollment_secret)),
            rule: config.rule,
            auction_timeout: config.auction_timeout,
            call_margin: config.call_margin,
            heartbeat_interval: config.heartbeat_interval,
            routes: Arc::new(RouteBook::new()),
            retries: Arc::default(),
            started_at: Timestamp::now(),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    pub fn auction_rule(&self) -> AuctionRule {
        self.rule
    }

    /// The marketplace's public key (nodes pin it at enrollment).
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
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
        authentication::authenticate_client(&self.clients, &self.repo, authorization, peer).await
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

    // -- route table --------------------------------------------------------------------------

    /// Records that the route table changed; call after the change is committed.
    pub(super) fn bump_routes(&self) {
        self.routes.bump();
    }

    /// Version, builds and waiting polls of the route table.
    pub fn route_stats(&self) -> RouteStats {
        self.routes.stats()
    }

    /// Ends every waiting route long-poll now (each answers the current table) and makes later
    /// polls answer without waiting. Called when the marketplace stops.
    pub fn stop_route_polls(&self) {
        self.routes.stop();
    }

    /// The route table of the current version, from the cache or built once from the database.
    pub async fn route_table(&self) -> Result<Arc<RouteTable>, ServiceError> {
        self.routes.table(&self.repo).await
    }

    /// `GET /api/routes?after=&waitMs=`: signed by an enrolled node (over the query too).
    /// Answers the current table at once when its version is greater than `after` (or `after`
    /// is absent); otherwise waits up to `wait_ms` (at most
    /// [`MAX_ROUTE_WAIT_MS`](super::MAX_ROUTE_WAIT_MS)) for a newer version, then answers the
    /// current table. While waiting it holds no database connection.
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
            .signed_by_node(authorization, "GET", path, body, now)
            .await?;
        self.routes.poll(&self.repo, sender, after, wait_ms).await
    }

    /// The enrolled node that signed a `method` request for `path` (with its query) and `body`
    /// to the marketplace: signature, recipient, time and nonce checked.
    pub(super) async fn signed_by_node(
        &self,
        authorization: Option<&str>,
        method: &str,
        path: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<NodeId, ServiceError> {
        let request = RequestTarget::new(method, path, body);
        self.signatures
            .signed_by_node(&self.repo, authorization, &request, now)
            .await
    }
}
