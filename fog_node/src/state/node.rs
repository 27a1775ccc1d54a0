//! The node ([`Node`]) and every method of it: identity and signing, the resource ledger and
//! placements with their lifetime, overlay neighbours with their latency estimators, the FaaS
//! backend, link emulation delays, and the state view.
//!
//! The ledger and the placements live under one lock (the [`Book`]) so that they never
//! disagree; no lock is held across an `.await`.

use crate::backend::FaasHandle;
use crate::client::{SignedClient, Signer};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::book::FINISHED_RETENTION;
use model::auth::{Guard, PublicKey, SecretKey};
use model::ids::{BidId, NodeId, SlaId};
use model::latency::{LinkEstimator, PathLatency};
use model::ledger::{EntryState, Ledger};
use model::protocol::{AcceptRequest, AcceptResponse, Neighbour, Relation, Resources};
use model::time::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

pub use crate::state::book::{Book, Placement};
pub use crate::state::identity::{Identity, Sender};
pub use model::protocol::PlacementState;

#[derive(Debug, Clone)]
pub struct NeighbourState {
    pub info: Neighbour,
    pub estimator: LinkEstimator,
}

pub struct Node {
    pub config: Config,
    /// URL under which others reach this node (set once bound).
    pub url: String,
    identity: arc_swap::ArcSwapOption<Identity>,
    book: Mutex<Book>,
    neighbours: RwLock<BTreeMap<NodeId, NeighbourState>>,
    auctions_in_flight: AtomicUsize,
    pub client: SignedClient,
    /// The data plane's client (forwards to peers, calls to the gateway): same CA trust as
    /// `client`, answers capped at `[offload] max_answer`.
    pub upstream: crate::upstream::UpstreamClient,
    /// The node's own Ed25519 key; the marketplace pinned its public half at enrollment.
    key: SecretKey,
    /// The same key with the secrets it shares with each peer (pair MACs between nodes).
    pairs: std::sync::Arc<model::auth::PairKeys>,
    rng: Mutex<StdRng>,
    faas: tokio::sync::OnceCell<crate::backend::FaasHandle>,
    /// The runtime the node's loops run on; the embedded gateway is started there rather than
    /// on the HTTP worker that happens to handle the first provisioning call.
    main_runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    /// Run-time routing and offloading of invocations (route table, per-function state,
    /// peers, metrics).
    pub offload: crate::state::offload::Offload,
}

/// Saved in `state_dir/state.json` so a restarted node keeps its id and reservations.
#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    node_id: Option<NodeId>,
    placements: Vec<Placement>,
}

/// Guard that counts an auction in flight for the limiter.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the book half-updated in a way that matters
    // more than stopping the node, so recover the guard instead of propagating the poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    pub fn new(
        config: Config,
        url: String,
        key: SecretKey,
        client: SignedClient,
        upstream: crate::upstream::UpstreamClient,
    ) -> Node {
        let ledger = Ledger::new(config.capacity());
        let offload = crate::state::offload::Offload::new(&config);
        Node {
            config,
            url,
            identity: arc_swap::ArcSwapOption::empty(),
            book: Mutex::new(Book {
                ledger,
                placements: BTreeMap::new(),
            }),
            neighbours: RwLock::new(BTreeMap::new()),
            auctions_in_flight: AtomicUsize::new(0),
            client,
            upstream,
            pairs: std::sync::Arc::new(model::auth::PairKeys::new(key.clone())),
            key,
            rng: Mutex::new(StdRng::from_os_rng()),
            faas: tokio::sync::OnceCell::new(),
            main_runtime: std::sync::OnceLock::new(),
            offload,
        }
    }

    pub(crate) fn set_main_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.main_runtime.set(handle);
    }

    pub(crate) fn main_runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.main_runtime.get()
    }

    pub(crate) fn faas_cell(&self) -> &tokio::sync::OnceCell<crate::backend::FaasHandle> {
        &self.faas
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The public half of the node's key, as enrolled.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// How this node signs a call to `recipient` (a node id, or [`model::auth::MARKETPLACE`]).
    pub fn signer<'a>(&'a self, identity: &'a Identity, recipient: &'a str) -> Signer<'a> {
        Signer::Member {
            key: &self.key,
            sender: &identity.sender,
            recipient,
        }
    }

    /// How this node authenticates a call to another node whose key it knows: with the
    /// secret of their pair (a MAC; see [`model::auth::sign_pair`]).
    pub fn peer_signer<'a>(
        &self,
        identity: &'a Identity,
        peer: NodeId,
        peer_key: &PublicKey,
    ) -> Signer<'a> {
        Signer::Pair {
            secret: self.pairs.secret_with(peer_key),
            sender: &identity.sender,
            recipient: peer.to_string(),
        }
    }

    /// The secret shared with one peer only (X25519 of the two keys, derived once): pair MACs,
    /// HAProxy-mode tokens.
    pub fn pair_secret(&self, peer: &PublicKey) -> [u8; 32] {
        self.pairs.secret_with(peer)
    }

    /// Authenticates a data-plane forward to `recipient` (the `X-Fogmarket-Forward` value):
    /// with the pair's secret when the recipient is a node whose key this node knows, else
    /// with this node's signature.
    pub fn sign_forward(
        &self,
        identity: &Identity,
        recipient: &str,
        now: Timestamp,
        req: &model::auth::RequestTarget<'_>,
    ) -> String {
        let nonce = model::auth::Nonce::random(&mut rand::rng());
        match self.key_of(identity, recipient) {
            Some(peer_key) if recipient != model::auth::MARKETPLACE => {
                let pair = self.pairs.secret_with(&peer_key);
                model::auth::sign_pair(&pair, &identity.sender, recipient, now, nonce, req)
            }
            _ => model::auth::sign(&self.key, &identity.sender, recipient, now, nonce, req),
        }
    }

    /// The key pinned for a neighbour, by the marketplace's heartbeat answers.
    pub fn neighbour_key(&self, id: NodeId) -> Option<PublicKey> {
        self.neighbours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|n| n.info.public_key)
    }

    /// The pinned key of a signer: the marketplace's (pinned at enrollment), a neighbour's or a
    /// route-table node's (as the marketplace pinned them). `None` for anyone else.
    pub fn key_of(&self, identity: &Identity, sender: &str) -> Option<PublicKey> {
        if sender == model::auth::MARKETPLACE {
            return Some(identity.marketplace_key);
        }
        let id: NodeId = sender.parse().ok()?;
        self.neighbour_key(id)
            .or_else(|| self.offload.routes().node(id).map(|n| n.info.public_key))
    }

    /// Whether `id` is one of this node's overlay neighbours now.
    pub fn is_neighbour(&self, id: NodeId) -> bool {
        self.neighbours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
    }

    pub fn identity(&self) -> Option<Identity> {
        self.identity.load_full().map(|i| (*i).clone())
    }

    /// The identity without copying the key (the data plane reads it per request).
    pub fn identity_arc(&self) -> Option<std::sync::Arc<Identity>> {
        self.identity.load_full()
    }

    pub fn node_id(&self) -> Option<NodeId> {
        self.identity().map(|i| i.node_id)
    }

    /// Installs what enrollment settled; its guard also accepts the pair MACs of this node's
    /// peers.
    pub fn set_identity(&self, mut identity: Identity) {
        identity.guard = std::sync::Arc::new(Guard::with_pairs(
            identity.sender.clone(),
            self.pairs.clone(),
        ));
        self.identity.store(Some(std::sync::Arc::new(identity)));
        self.save();
    }

    pub fn identity_or_unavailable(&self) -> Result<Identity, ApiError> {
        self.identity().ok_or(ApiError::NotEnrolled)
    }

    pub fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    pub fn with_rng<R>(&self, f: impl FnOnce(&mut StdRng) -> R) -> R {
        f(&mut lock(&self.rng))
    }

    /// Counts an auction in flight, or `None` when the limiter is full.
    pub fn enter_auction(&self) -> Option<InFlight<'_>> {
        let max = self.config.max_auctions_in_flight;
        let prev = self.auctions_in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(&self.auctions_in_flight);
        (prev < max).then_some(guard)
    }

    // ---------------------------------------------------------------------------------------
    // Neighbours and latency

    /// Replaces the neighbour list (from the marketplace), keeping estimators of known links.
    pub fn set_neighbours(&self, list: Vec<Neighbour>) {
        let mut map = self.neighbours.write().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for info in list {
            let estimator = map
                .remove(&info.node_id)
                .map(|n| n.estimator)
                .unwrap_or_default();
            next.insert(info.node_id, NeighbourState { info, estimator });
        }
        *map = next;
    }

    pub fn neighbours(&self) -> Vec<NeighbourState> {
        self.neighbours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A neighbour's name, without copying the neighbour list.
    pub fn neighbour_name(&self, id: NodeId) -> Option<String> {
        self.neighbours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|n| n.info.name.clone())
    }

    pub fn observe_probe(&self, node: NodeId, rtt: Option<Duration>) {
        let mut map = self.neighbours.write().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&node) {
            match rtt {
                Some(rtt) => n.estimator.observe_rtt(rtt),
                None => n.estimator.observe_loss(),
            }
        }
    }

    /// One-way latency estimate of the link to a neighbour: the configured latency of the
    /// link (when several nodes share a machine) plus half the measured RTT, or `None` if the
    /// link has neither been configured nor measured yet. With `[link_emulation]` the
    /// measured RTT already holds the emulated latency, so it alone counts, and the configured
    /// latency stands in only until the first probe answers.
    pub fn link_latency(&self, n: &NeighbourState) -> Option<PathLatency> {
        let measured = n.estimator.estimate();
        let emulation = &self.config.link_emulation;
        let configured = self
            .config
            .links
            .get(&n.info.name)
            .or_else(|| emulation.one_way.get(&n.info.name))
            .map(|l| PathLatency::from_latency(*l));
        if emulation.enabled() {
            return measured.or(configured);
        }
        match (configured, measured) {
            (Some(c), Some(m)) => Some(c.then(&m)),
            (c, m) => c.or(m),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Placements

    /// Hold -> reservation. Idempotent for a repeated accept of the same bid.
    pub fn accept(
        &self,
        sla_id: SlaId,
        req: &AcceptRequest,
        now: Timestamp,
    ) -> Result<AcceptResponse, ApiError> {
        let identity = self.identity_or_unavailable()?;
        if self.config.chaos.refuse_accept {
            return Err(ApiError::Conflict(
                "chaos.refuse_accept is set: this node refuses every accept".into(),
            ));
        }
        if req.sla.id != sla_id {
            return Err(ApiError::BadRequest(model::FieldError::new(
                "sla.id",
                "does not match the SLA id in the path",
            )));
        }
        let ends_at = now.plus(req.sla.duration.as_duration());
        {
            let mut book = self.book();
            if let Some(p) = book.placements.get(&sla_id) {
                if p.bid_id == req.bid_id && p.closed_at.is_none() {
                    return Ok(AcceptResponse {
                        sla_id,
                        node_id: identity.node_id,
                        ends_at: p.ends_at,
                    });
                }
                if p.closed_at.is_none() {
                    return Err(ApiError::Conflict(format!(
                        "SLA {sla_id} is already placed here with bid {}",
                        p.bid_id
                    )));
                }
            }
            let resources = book.ledger.confirm(req.bid_id, sla_id, ends_at, now)?;
            book.placements.insert(
                sla_id,
                Placement {
                    sla_id,
                    bid_id: req.bid_id,
                    function_name: req.sla.function_live_name.clone(),
                    sla: req.sla.clone(),
                    deployed_as: None,
                    invoke_url: None,
                    error: None,
                    resources,
                    price: req.price,
                    state: PlacementState::Reserved,
                    accepted_at: now,
                    ends_at,
                    closed_at: None,
                },
            );
        }
        self.save();
        tracing::info!(%sla_id, bid_id = %req.bid_id, price = %req.price, "accepted placement");
        Ok(AcceptResponse {
            sla_id,
            node_id: identity.node_id,
            ends_at,
        })
    }

    /// Frees holds of lost bids. Reservations are never released this way.
    pub fn release_holds(&self, bid_ids: &[BidId]) -> usize {
        let mut book = self.book();
        let held: Vec<BidId> = book
            .ledger
            .entries()
            .filter(|e| matches!(e.state, EntryState::Held { .. }) && bid_ids.contains(&e.bid_id))
            .map(|e| e.bid_id)
            .collect();
        for id in &held {
            book.ledger.release(*id);
        }
        held.len()
    }

    /// Applies `f` to an active placement and saves; `NotFound` when there is none.
    pub fn update_placement<R>(
        &self,
        sla_id: SlaId,
        f: impl FnOnce(&mut Placement) -> R,
    ) -> Result<R, ApiError> {
        let r = {
            let mut book = self.book();
            let p = book.active_mut(sla_id)?;
            f(p)
        };
        self.save();
        Ok(r)
    }

    /// Closes an active placement as `Failed` (with the reason) or `Cancelled`: frees its
    /// resources and keeps the record for [`FINISHED_RETENTION`].
    fn close(
        &self,
        sla_id: SlaId,
        state: PlacementState,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<Placement, ApiError> {
        let placement = {
            let mut book = self.book();
            let p = book.active_mut(sla_id)?;
            p.state = state;
            p.error = error.or(p.error.take());
            p.closed_at = Some(now);
            let p = p.clone();
            book.ledger.release_sla(sla_id);
            p
        };
        self.save();
        Ok(placement)
    }

    /// Ends a placement whose deployment failed: frees its resources, keeps the record.
    pub fn fail(
        &self,
        sla_id: SlaId,
        error: String,
        now: Timestamp,
    ) -> Result<Placement, ApiError> {
        self.close(sla_id, PlacementState::Failed, Some(error), now)
    }

    pub fn cancel(&self, sla_id: SlaId, now: Timestamp) -> Result<Placement, ApiError> {
        let placement = self.close(sla_id, PlacementState::Cancelled, None, now)?;
        tracing::info!(%sla_id, "cancelled placement");
        Ok(placement)
    }

    /// One step of the lifetime loop: expire holds, finish placements whose SLA ended, forget
    /// closed placements after [`FINISHED_RETENTION`].
    pub fn tick(&self, now: Timestamp) -> Vec<Placement> {
        let ended: Vec<Placement> = {
            let mut book = self.book();
            let tick = book.ledger.tick(now);
            let mut ended = Vec::new();
            for (sla_id, _) in tick.ended {
                if let Some(p) = book.placements.get_mut(&sla_id) {
                    p.state = PlacementState::Finished;
                    p.closed_at = Some(now);
                    ended.push(p.clone());
                }
            }
            book.placements.retain(|_, p| match p.closed_at {
                Some(t) => now.since(t) < FINISHED_RETENTION,
                None => true,
            });
            ended
        };
        if !ended.is_empty() {
            for p in &ended {
                tracing::info!(sla_id = %p.sla_id, "placement finished: SLA duration over, resources freed");
            }
            self.save();
        }
        ended
    }

    // ---------------------------------------------------------------------------------------
    // Persistence of the node's own state

    fn state_file(&self) -> Option<PathBuf> {
        self.config.state_dir.as_ref().map(|d| d.join("state.json"))
    }

    /// Writes the id and active placements to `state_dir` (atomically: temp file + rename).
    pub fn save(&self) {
        let Some(path) = self.state_file() else {
            return;
        };
        let saved = SavedState {
            node_id: self.node_id(),
            placements: self
                .book()
                .placements
                .values()
                .filter(|p| p.closed_at.is_none())
                .cloned()
                .collect(),
        };
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&saved)?)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save node state");
        }
    }

    /// Loads the saved id and re-reserves saved placements that have not ended yet.
    /// Returns the saved node id, if any.
    pub fn restore(&self, now: Timestamp) -> anyhow::Result<Option<NodeId>> {
        let Some(path) = self.state_file() else {
            return Ok(None);
        };
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        };
        let saved: SavedState = serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid state file: {e}", path.display()))?;
        let mut book = self.book();
        for p in saved.placements {
            if p.ends_at <= now {
                continue;
            }
            let hold = book.ledger.try_hold(p.bid_id, p.resources, p.ends_at, now);
            let confirmed =
                hold.and_then(|_| book.ledger.confirm(p.bid_id, p.sla_id, p.ends_at, now));
            match confirmed {
                Ok(_) => {
                    book.placements.insert(p.sla_id, p);
                }
                Err(e) => {
                    tracing::warn!(sla_id = %p.sla_id, error = %e, "cannot restore saved placement")
                }
            }
        }
        Ok(saved.node_id)
    }
}

/// The resources and placements view served by `GET /api/state`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    pub node_id: Option<NodeId>,
    pub name: String,
    pub owner: String,
    pub strategy: String,
    pub capacity: Resources,
    pub used: Resources,
    pub reserved: Resources,
    pub holds: usize,
    pub utilisation: f64,
    pub placements: Vec<Placement>,
    pub neighbours: Vec<NeighbourView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NeighbourView {
    pub node_id: NodeId,
    pub name: String,
    pub url: String,
    pub relation: Relation,
    pub alive: bool,
    pub latency: Option<PathLatency>,
    pub probes: usize,
}

impl Node {
    pub fn state_view(&self, now: Timestamp) -> StateView {
        let (capacity, used, reserved, holds, utilisation, placements) = {
            let book = self.book();
            let holds = book
                .ledger
                .entries()
                .filter(|e| matches!(e.state, EntryState::Held { expires_at } if expires_at > now))
                .count();
            (
                book.ledger.capacity(),
                book.ledger.used(now),
                book.ledger.reserved(now),
                holds,
                book.ledger.utilisation(now),
                book.placements.values().cloned().collect(),
            )
        };
        let neighbours = self
            .neighbours()
            .iter()
            .map(|n| NeighbourView {
                node_id: n.info.node_id,
                name: n.info.name.clone(),
                url: n.info.url.clone(),
                relation: n.info.relation,
                alive: n.info.alive,
                latency: self.link_latency(n),
                probes: n.estimator.samples(),
            })
            .collect();
        StateView {
            node_id: self.node_id(),
            name: self.config.name.clone(),
            owner: self.config.owner.clone(),
            strategy: self.config.strategy.to_string(),
            capacity,
            used,
            reserved,
            holds,
            utilisation,
            placements,
            neighbours,
        }
    }
}

impl Node {
    /// The FaaS backend, started on first use.
    pub async fn faas(&self) -> Result<&FaasHandle, ApiError> {
        let start = || async {
            let config = self.config.clone();
            let http = self.client.http().clone();
            match self.main_runtime() {
                Some(rt) => rt
                    .spawn(async move { crate::backend::start_backend(&config, http).await })
                    .await
                    .map_err(|e| anyhow::anyhow!("FaaS backend start-up task failed: {e}"))?,
                None => crate::backend::start_backend(&config, http).await,
            }
        };
        self.faas_cell()
            .get_or_try_init(start)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot start the FaaS backend: {e:#}")))
    }

    /// Stops the embedded gateway (killing its function processes), if one was started.
    pub async fn shutdown_faas(&self) {
        let Some(handle) = self.faas_cell().get() else {
            return;
        };
        handle.shutdown().await;
    }
}

impl Node {
    /// The emulated one-way latency from `sender` (a node id or name) to this node, when
    /// link emulation is on and the sender is a node with a configured path.
    pub fn emulated_one_way(&self, sender: &str) -> Option<Duration> {
        let paths = &self.config.link_emulation.one_way;
        if paths.is_empty() {
            return None;
        }
        if let Some(latency) = paths.get(sender) {
            return Some(latency.as_duration());
        }
        let id: NodeId = sender.parse().ok()?;
        let name = self.name_of(id)?;
        paths.get(&name).map(|l| l.as_duration())
    }

    /// A node's name from the route table, else the overlay neighbours (known before the
    /// first table arrives). Runs on every request from another node: two lookups, no copy.
    pub fn name_of(&self, id: NodeId) -> Option<String> {
        self.offload
            .routes()
            .node(id)
            .map(|n| n.info.name.clone())
            .or_else(|| self.neighbour_name(id))
    }
}
