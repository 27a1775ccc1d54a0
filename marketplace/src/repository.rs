//! Persistence: every SQL statement of the marketplace.
//!
//! One implementation over `sqlx::AnyPool` with portable SQL (`$n` placeholders, ids as TEXT,
//! times as BIGINT unix ms, JSON as TEXT, booleans as 0/1 BIGINT, prices as DOUBLE PRECISION),
//! so the same code and the same test suite run on SQLite (default, embedded, WAL) and
//! PostgreSQL. One set of migrations serves both engines ([`crate::schema`]).

use model::auction::AuctionRule;
use model::auth::PublicKey;
use model::ids::ClientId;
use model::protocol::{Bid, Refusal, Resources};
use model::{AuctionId, BidId, Bytes, Cpu, NodeId, Price, Sla, SlaId, Timestamp};
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A uniqueness constraint was violated (maps to 409, not 500).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be decoded (a bug or a hand-edited database).
    #[error("corrupt value in {table}.{column}: {reason}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        reason: String,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for RepoError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return RepoError::Conflict(db.message().to_string());
        }
        RepoError::Database(e)
    }
}

/// Which SQL engine the URL points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

pub use model::protocol::PlacementState;

/// Who placements (and the client API's limits) are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// Token mode: the client.
    Client(ClientId),
    /// Open mode: the address the request came from.
    Addr(IpAddr),
}

/// A registered fog node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
    pub parent: Option<String>,
    pub url: String,
    pub capacity: Resources,
    /// As last reported by the node's heartbeat.
    pub reserved: Resources,
    pub last_seen: Timestamp,
    pub alive: bool,
    pub registered_at: Timestamp,
    /// The node's own key, pinned at its first enrollment.
    pub public_key: Option<PublicKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlaRecord {
    pub sla: Sla,
    pub target_node: NodeId,
    pub created_at: Timestamp,
    /// The client that placed it; `None` when placed while the client API was open.
    pub owner: Option<ClientId>,
    /// The IP address the placement request came from, when known.
    pub client_addr: Option<IpAddr>,
}

/// Who asked for an SLA (see [`Repository::insert_sla_and_auction_from`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaOrigin {
    /// The client (token mode); `None` in open mode.
    pub owner: Option<ClientId>,
    /// The IP address the request came from.
    pub client_addr: Option<IpAddr>,
}

/// A client of the client API (see [`crate::clients`]). The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: ClientId,
    pub name: String,
    /// The first characters of the current token (`fmc_1a2b3c4d`), to tell tokens apart.
    pub token_prefix: String,
    pub created_at: Timestamp,
    /// When the current token was created (at creation, rotation, or again after a revocation).
    pub token_created_at: Timestamp,
    /// Set once the token is revoked: requests with it are refused.
    pub revoked_at: Option<Timestamp>,
}

/// How an auction ended.
pub mod outcome {
    pub const RUNNING: &str = "running";
    pub const AWARDED: &str = "awarded";
    pub const NO_FEASIBLE_NODE: &str = "no_feasible_node";
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuctionRecord {
    pub id: AuctionId,
    pub sla_id: SlaId,
    pub rule: String,
    pub target_node: NodeId,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: String,
    pub refusals: Vec<Refusal>,
}

/// One bid received in an auction.
#[derive(Debug, Clone, PartialEq)]
pub struct BidRecord {
    pub auction_id: AuctionId,
    pub bid: Bid,
    pub won: bool,
    /// The node refused (or failed) the accept; the auction fell back to the next bid.
    pub refused_accept: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRecord {
    pub sla_id: SlaId,
    pub node_id: NodeId,
    pub bid_id: BidId,
    pub auction_id: AuctionId,
    /// What the marketplace pays (Vickrey: the clearing price, not the bid).
    pub price: Price,
    pub state: PlacementState,
    pub created_at: Timestamp,
    pub ends_at: Timestamp,
    pub updated_at: Timestamp,
    /// Where the function is invoked once the node reports it live.
    pub invoke_url: Option<String>,
    /// Why provisioning failed, as the node reported it.
    pub error: Option<String>,
}

/// A `live` placement joined with its SLA (see [`Repository::live_placements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LivePlacement {
    pub sla_id: SlaId,
    /// The hosting node.
    pub node_id: NodeId,
    pub ends_at: Timestamp,
    pub sla: Sla,
    /// The node the client named as the data source.
    pub target_node: NodeId,
}

/// A placement that is not over yet (`reserved`, `provisioning` or `live`) joined with its
/// SLA (see [`Repository::active_placements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePlacement {
    pub placement: PlacementRecord,
    pub sla: Sla,
    /// The node the client named as the data source.
    pub target_node: NodeId,
}

/// An auction with the SLA it placed (see [`Repository::recent_auctions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentAuction {
    pub auction: AuctionRecord,
    pub sla: Sla,
}

/// What a heartbeat changed (see [`Repository::record_heartbeat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// No node has this id.
    Unknown,
    /// The node was alive at the same URL.
    Unchanged,
    /// The node was dead and is alive again, or its URL changed.
    Changed,
}

/// Everything an auction produced, written in one transaction.
#[derive(Debug, Clone)]
pub struct AuctionResult {
    pub auction_id: AuctionId,
    pub finished_at: Timestamp,
    pub outcome: String,
    pub refusals: Vec<Refusal>,
    pub bids: Vec<BidRecord>,
    pub placements: Vec<PlacementRecord>,
    /// A re-placement: the placements it replaces, now `moved` (host, and when the host
    /// died: their billing ends there).
    pub moved: Vec<(NodeId, Timestamp)>,
    /// What happened to the SLA's placements in this auction, for its history.
    pub events: Vec<PlacementEvent>,
}

/// One entry of a placement's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementEvent {
    pub sla_id: SlaId,
    pub at: Timestamp,
    /// The host the event is about, if any.
    pub node_id: Option<NodeId>,
    /// What happened (see [`event`]).
    pub event: String,
    pub reason: String,
}

/// The kinds of placement events.
pub mod event {
    /// The host died: the placement is to move.
    pub const HOST_LOST: &str = "host_lost";
    /// The placement now runs on `node_id`, auctioned again under its SLA.
    pub const MOVED_TO: &str = "moved_to";
    /// No node could take it; it is tried again with backoff until its lifetime ends.
    pub const DEGRADED: &str = "degraded";
}

/// The marketplace database.
#[derive(Debug, Clone)]
pub struct Repository {
    pool: AnyPool,
    backend: Backend,
}

fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}
fn ts(v: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(v).unwrap_or(0))
}
fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn corrupt(table: &'static str, column: &'static str, reason: impl fmt::Display) -> RepoError {
    RepoError::Corrupt {
        table,
        column,
        reason: reason.to_string(),
    }
}

fn parse_col<T: FromStr>(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<T, RepoError>
where
    T::Err: fmt::Display,
{
    let s: String = row.try_get(column)?;
    s.parse().map_err(|e| corrupt(table, column, e))
}

fn json_col<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<T, RepoError> {
    let s: String = row.try_get(column)?;
    serde_json::from_str(&s).map_err(|e| corrupt(table, column, e))
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

macro_rules! node_columns {
    () => {
        "id, name, owner, tags, parent_name, url, cpu_millis, memory_bytes, \
         reserved_cpu_millis, reserved_memory_bytes, last_seen_ms, alive, registered_at_ms, \
         public_key"
    };
}

fn node_from_row(row: &AnyRow) -> Result<NodeRecord, RepoError> {
    let n = |c: &'static str| -> Result<u64, RepoError> {
        let v: i64 = row.try_get(c)?;
        u64::try_from(v).map_err(|e| corrupt("nodes", c, e))
    };
    Ok(NodeRecord {
        id: parse_col(row, "nodes", "id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        tags: json_col(row, "nodes", "tags")?,
        parent: row.try_get("parent_name")?,
        url: row.try_get("url")?,
        capacity: Resources::new(
            Cpu::from_millis(n("cpu_millis")?),
            Bytes::new(n("memory_bytes")?),
        ),
        reserved: Resources::new(
            Cpu::from_millis(n("reserved_cpu_millis")?),
            Bytes::new(n("reserved_memory_bytes")?),
        ),
        last_seen: ts(row.try_get("last_seen_ms")?),
        alive: row.try_get::<i64, _>("alive")? != 0,
        registered_at: ts(row.try_get("registered_at_ms")?),
        public_key: row
            .try_get::<Option<String>, _>("public_key")?
            .map(|k| k.parse::<PublicKey>())
            .transpose()
            .map_err(|e| corrupt("nodes", "public_key", e))?,
    })
}

fn auction_from_row(row: &AnyRow) -> Result<AuctionRecord, RepoError> {
    Ok(AuctionRecord {
        id: parse_col(row, "auctions", "id")?,
        sla_id: parse_col(row, "auctions", "sla_id")?,
        rule: row.try_get("rule")?,
        target_node: parse_col(row, "auctions", "target_node")?,
        started_at: ts(row.try_get("started_at_ms")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at_ms")?.map(ts),
        outcome: row.try_get("outcome")?,
        refusals: json_col(row, "auctions", "refusals")?,
    })
}

fn bid_from_row(row: &AnyRow) -> Result<BidRecord, RepoError> {
    Ok(BidRecord {
        auction_id: parse_col(row, "bids", "auction_id")?,
        bid: json_col(row, "bids", "body")?,
        won: row.try_get::<i64, _>("won")? != 0,
        refused_accept: row.try_get::<i64, _>("refused_accept")? != 0,
    })
}

fn placement_from_row(row: &AnyRow) -> Result<PlacementRecord, RepoError> {
    let price: f64 = row.try_get("price")?;
    Ok(PlacementRecord {
        sla_id: parse_col(row, "placements", "sla_id")?,
        node_id: parse_col(row, "placements", "node_id")?,
        bid_id: parse_col(row, "placements", "bid_id")?,
        auction_id: parse_col(row, "placements", "auction_id")?,
        price: Price::new(price).ok_or_else(|| corrupt("placements", "price", price))?,
        state: parse_col(row, "placements", "state")?,
        created_at: ts(row.try_get("created_at_ms")?),
        ends_at: ts(row.try_get("ends_at_ms")?),
        updated_at: ts(row.try_get("updated_at_ms")?),
        invoke_url: row.try_get("invoke_url")?,
        error: row.try_get("error")?,
    })
}

fn sla_from_row(row: &AnyRow) -> Result<SlaRecord, RepoError> {
    Ok(SlaRecord {
        sla: json_col(row, "slas", "body")?,
        target_node: parse_col(row, "slas", "target_node")?,
        created_at: ts(row.try_get("created_at_ms")?),
        owner: opt_col(row, "slas", "owner")?,
        client_addr: opt_col(row, "slas", "client_addr")?,
    })
}

/// Columns of [`sla_from_row`].
const SLA_COLUMNS: &str = "body, target_node, created_at_ms, owner, client_addr";

fn opt_col<T: FromStr>(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<Option<T>, RepoError>
where
    T::Err: fmt::Display,
{
    row.try_get::<Option<String>, _>(column)?
        .map(|s| s.parse().map_err(|e| corrupt(table, column, e)))
        .transpose()
}

fn client_from_row(row: &AnyRow) -> Result<ClientRecord, RepoError> {
    Ok(ClientRecord {
        id: parse_col(row, "clients", "id")?,
        name: row.try_get("name")?,
        token_prefix: row.try_get("token_prefix")?,
        created_at: ts(row.try_get("created_at_ms")?),
        token_created_at: ts(row.try_get("token_created_at_ms")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at_ms")?.map(ts),
    })
}

/// Columns of [`client_from_row`].
macro_rules! client_columns {
    () => {
        "id, name, token_prefix, created_at_ms, token_created_at_ms, revoked_at_ms"
    };
}

macro_rules! placement_columns {
    () => {
        "sla_id, node_id, bid_id, auction_id, price, state, created_at_ms, ends_at_ms, updated_at_ms, \
         invoke_url, error"
    };
}

impl Repository {
    /// Connects, applies the embedded migrations and, on SQLite, switches to WAL.
    pub async fn connect(url: &str) -> Result<Repository, RepoError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| {
            RepoError::Database(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL `{}`: expected sqlite://… or postgres://…",
                    url.split(':').next().unwrap_or_default()
                )
                .into(),
            ))
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL + synchronous=NORMAL: a commit survives a crash or kill -9 of the
                        // marketplace; only an OS crash or power loss can lose the last commits.
                        // FULL would fsync every commit (heartbeats included) and cap placements
                        // at the disk's fsync rate. busy_timeout: writers wait instead of failing.
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Persistent in the file: every later connection uses WAL too.
            sqlx::query("PRAGMA journal_mode=WAL")
                .fetch_all(&pool)
                .await?;
        }
        crate::schema::migrate(&pool).await?;
        Ok(Repository { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection (tests use it to simulate a restart).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // -- meta ---------------------------------------------------------------------------------

    /// The value stored under `key`, storing `init()` first if there is none. Concurrent first
    /// starts agree on one value.
    pub async fn meta_get_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, RepoError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(init())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    // -- nodes --------------------------------------------------------------------------------

    /// Inserts a node or updates the node of the same name (its id is kept), but only while
    /// the stored key is the same as `n`'s or there is none yet: a registration racing another
    /// one under a different key gets `Conflict` and changes nothing.
    pub async fn upsert_node(&self, n: &NodeRecord) -> Result<(), RepoError> {
        let done = sqlx::query(
            "INSERT INTO nodes (id, name, owner, tags, parent_name, url, cpu_millis, memory_bytes, \
             reserved_cpu_millis, reserved_memory_bytes, last_seen_ms, alive, registered_at_ms, \
             public_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, tags = excluded.tags, \
             parent_name = excluded.parent_name, url = excluded.url, \
             cpu_millis = excluded.cpu_millis, memory_bytes = excluded.memory_bytes, \
             last_seen_ms = excluded.last_seen_ms, alive = excluded.alive, \
             public_key = excluded.public_key \
             WHERE nodes.public_key IS NULL OR nodes.public_key = excluded.public_key",
        )
        .bind(n.id.to_string())
        .bind(&n.name)
        .bind(&n.owner)
        .bind(to_json(&n.tags))
        .bind(n.parent.clone())
        .bind(&n.url)
        .bind(u(n.capacity.cpu.millis()))
        .bind(u(n.capacity.memory.as_u64()))
        .bind(u(n.reserved.cpu.millis()))
        .bind(u(n.reserved.memory.as_u64()))
        .bind(ms(n.last_seen))
        .bind(flag(n.alive))
        .bind(ms(n.registered_at))
        .bind(n.public_key.map(|k| k.to_hex()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RepoError::Conflict(format!(
                "node `{}` is enrolled under another key",
                n.name
            )));
        }
        Ok(())
    }

    pub async fn node_by_id(&self, id: NodeId) -> Result<Option<NodeRecord>, RepoError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    pub async fn node_by_name(&self, name: &str) -> Result<Option<NodeRecord>, RepoError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, RepoError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// Records a heartbeat: the node's reservations, its URL when given, and that it was seen
    /// `now` (alive). Says whether the node is unknown, or whether its liveness or URL (what
    /// the route table shows of it) changed.
    pub async fn record_heartbeat(
        &self,
        id: NodeId,
        reserved: Resources,
        url: Option<&str>,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, RepoError> {
        // The usual case first: alive already and at the same URL.
        let same = sqlx::query(
            "UPDATE nodes SET reserved_cpu_millis = $1, reserved_memory_bytes = $2, \
             last_seen_ms = $3 WHERE id = $4 AND alive = 1 AND url = COALESCE($5, url)",
        )
        .bind(u(reserved.cpu.millis()))
        .bind(u(reserved.memory.as_u64()))
        .bind(ms(now))
        .bind(id.to_string())
        .bind(url.map(str::to_string))
        .execute(&self.pool)
        .await?;
        if same.rows_affected() > 0 {
            return Ok(HeartbeatOutcome::Unchanged);
        }
        // Dead until now, or at another URL. `last_seen_ms = now` in the same statement, so the
        // liveness sweep cannot undo the revival unnoticed.
        let changed = sqlx::query(
            "UPDATE nodes SET reserved_cpu_millis = $1, reserved_memory_bytes = $2, \
             url = COALESCE($3, url), last_seen_ms = $4, alive = 1 \
             WHERE id = $5 AND (alive = 0 OR url <> COALESCE($3, url))",
        )
        .bind(u(reserved.cpu.millis()))
        .bind(u(reserved.memory.as_u64()))
        .bind(url.map(str::to_string))
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        if changed.rows_affected() > 0 {
            return Ok(HeartbeatOutcome::Changed);
        }
        // Neither: the node is unknown, or a concurrent request (a heartbeat or a registration
        // of the same node) changed the row between the two statements and reported that
        // change itself. Record this heartbeat anyway.
        let any = sqlx::query(
            "UPDATE nodes SET reserved_cpu_millis = $1, reserved_memory_bytes = $2, \
             url = COALESCE($3, url), last_seen_ms = $4, alive = 1 WHERE id = $5",
        )
        .bind(u(reserved.cpu.millis()))
        .bind(u(reserved.memory.as_u64()))
        .bind(url.map(str::to_string))
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(if any.rows_affected() > 0 {
            HeartbeatOutcome::Unchanged
        } else {
            HeartbeatOutcome::Unknown
        })
    }

    /// Marks alive nodes not seen since `cutoff` as dead; returns how many.
    pub async fn mark_nodes_dead_since(&self, cutoff: Timestamp) -> Result<u64, RepoError> {
        let done = sqlx::query("UPDATE nodes SET alive = 0 WHERE alive = 1 AND last_seen_ms < $1")
            .bind(ms(cutoff))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// At start: nobody is alive until it heartbeats again.
    pub async fn mark_all_nodes_dead(&self) -> Result<u64, RepoError> {
        let done = sqlx::query("UPDATE nodes SET alive = 0 WHERE alive = 1")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // -- clients ------------------------------------------------------------------------------

    /// Stores a new client with the SHA-256 of its token; `Conflict` when the name (or the
    /// hash) is taken.
    pub async fn insert_client(&self, c: &ClientRecord, token_hash: &str) -> Result<(), RepoError> {
        sqlx::query(concat!(
            "INSERT INTO clients (",
            client_columns!(),
            ", token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(c.id.to_string())
        .bind(&c.name)
        .bind(&c.token_prefix)
        .bind(ms(c.created_at))
        .bind(ms(c.token_created_at))
        .bind(c.revoked_at.map(ms))
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn client_by_name(&self, name: &str) -> Result<Option<ClientRecord>, RepoError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    pub async fn client_by_id(&self, id: ClientId) -> Result<Option<ClientRecord>, RepoError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// The client whose current token hashes to `token_hash` (revoked or not).
    pub async fn client_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<ClientRecord>, RepoError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Every client, by name.
    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, RepoError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            client_columns!(),
            " FROM clients ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Gives a client a new token (the old one stops working) and lifts a revocation; `false`
    /// when there is no such client.
    pub async fn replace_client_token(
        &self,
        id: ClientId,
        token_hash: &str,
        token_prefix: &str,
        now: Timestamp,
    ) -> Result<bool, RepoError> {
        let done = sqlx::query(
            "UPDATE clients SET token_hash = $1, token_prefix = $2, token_created_at_ms = $3, \
             revoked_at_ms = NULL WHERE id = $4",
        )
        .bind(token_hash)
        .bind(token_prefix)
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes a client's token (keeping the first revocation time); `false` when there is no
    /// such client.
    pub async fn revoke_client(&self, id: ClientId, now: Timestamp) -> Result<bool, RepoError> {
        let done = sqlx::query(
            "UPDATE clients SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE id = $2",
        )
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // -- SLAs and auctions --------------------------------------------------------------------

    /// Stores a new SLA (asked for by nobody in particular) and opens its auction.
    pub async fn insert_sla_and_auction(
        &self,
        sla: &Sla,
        target: NodeId,
        auction_id: AuctionId,
        rule: AuctionRule,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        self.insert_sla_and_auction_from(sla, target, auction_id, rule, SlaOrigin::default(), now)
            .await
    }

    /// Stores a new SLA with who asked for it, and opens its auction.
    pub async fn insert_sla_and_auction_from(
        &self,
        sla: &Sla,
        target: NodeId,
        auction_id: AuctionId,
        rule: AuctionRule,
        origin: SlaOrigin,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO slas (id, body, target_node, max_price, nodes_wanted, created_at_ms, \
             owner, client_addr) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(sla.id.to_string())
        .bind(to_json(sla))
        .bind(target.to_string())
        .bind(sla.max_price.map(Price::value))
        .bind(i64::from(sla.nodes))
        .bind(ms(now))
        .bind(origin.owner.map(|o| o.to_string()))
        .bind(origin.client_addr.map(|a| a.to_canonical().to_string()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO auctions (id, sla_id, rule, target_node, started_at_ms, outcome, refusals) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(auction_id.to_string())
        .bind(sla.id.to_string())
        .bind(rule.to_string())
        .bind(target.to_string())
        .bind(ms(now))
        .bind(outcome::RUNNING)
        .bind("[]")
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn sla(&self, id: SlaId) -> Result<Option<SlaRecord>, RepoError> {
        let sql = format!("SELECT {SLA_COLUMNS} FROM slas WHERE id = $1");
        // Audited: constant SQL assembled from literals; every value is bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(sla_from_row).transpose()
    }

    /// Every SLA, oldest first.
    pub async fn list_slas(&self) -> Result<Vec<SlaRecord>, RepoError> {
        let sql = format!("SELECT {SLA_COLUMNS} FROM slas ORDER BY created_at_ms, id");
        // Audited: constant SQL assembled from literals.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sla_from_row).collect()
    }

    /// The SLAs `owner` placed, oldest first.
    pub async fn list_slas_owned_by(&self, owner: ClientId) -> Result<Vec<SlaRecord>, RepoError> {
        let sql =
            format!("SELECT {SLA_COLUMNS} FROM slas WHERE owner = $1 ORDER BY created_at_ms, id");
        // Audited: constant SQL assembled from literals; every value is bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sla_from_row).collect()
    }

    /// Placements not over yet (`reserved`, `provisioning`, `live`) of the SLAs placed by a
    /// client (by owner) or, in open mode, from an address.
    pub async fn count_active_placements_of(&self, key: LimitKey) -> Result<u64, RepoError> {
        let (column, value) = match key {
            LimitKey::Client(id) => ("owner", id.to_string()),
            LimitKey::Addr(ip) => ("client_addr", ip.to_canonical().to_string()),
        };
        let sql = format!(
            "SELECT COUNT(*) AS n FROM placements p JOIN slas s ON s.id = p.sla_id \
             WHERE s.{column} = $1 AND p.state IN ($2, $3, $4)"
        );
        // Audited: the column name is one of two literals; every value is bound.
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(PlacementState::Reserved.as_str())
            .bind(PlacementState::Provisioning.as_str())
            .bind(PlacementState::Live.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Closes an auction: its outcome, refusals, every bid and the accepted placements, in
    /// one transaction.
    pub async fn record_auction_result(&self, r: &AuctionResult) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE auctions SET finished_at_ms = $1, outcome = $2, refusals = $3 WHERE id = $4",
        )
        .bind(ms(r.finished_at))
        .bind(&r.outcome)
        .bind(to_json(&r.refusals))
        .bind(r.auction_id.to_string())
        .execute(&mut *tx)
        .await?;
        // One multi-row INSERT per chunk instead of one statement per bid: an auction over a
        // large tree has one bid per node.
        const COLUMNS: usize = 10;
        const ROWS_PER_STATEMENT: usize = 100;
        for chunk in r.bids.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let params: Vec<String> = (1..=COLUMNS)
                        .map(|col| format!("${}", row * COLUMNS + col))
                        .collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO bids (id, auction_id, node_id, node_name, price, latency_ms, \
                 utilisation, body, won, refused_accept) VALUES {} \
                 ON CONFLICT (auction_id, id) DO NOTHING",
                rows.join(", ")
            );
            // Audited: the dynamic part is only `$n` placeholders; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in chunk {
                query = query
                    .bind(b.bid.id.to_string())
                    .bind(b.auction_id.to_string())
                    .bind(b.bid.node_id.to_string())
                    .bind(b.bid.node_name.clone())
                    .bind(b.bid.bid.value())
                    .bind(finite(b.bid.latency.median))
                    .bind(finite(b.bid.utilisation))
                    .bind(to_json(&b.bid))
                    .bind(flag(b.won))
                    .bind(flag(b.refused_accept));
            }
            query.execute(&mut *tx).await?;
        }
        for p in &r.placements {
            insert_placement(&mut tx, p).await?;
        }
        let sla_id = r.placements.first().map(|p| p.sla_id);
        for (node, died_at) in &r.moved {
            let Some(sla_id) = sla_id else { break };
            // Billing of the old host ends when it died (never after what it had).
            sqlx::query(
                "UPDATE placements SET state = $1, updated_at_ms = $2, \
                 ends_at_ms = CASE WHEN ends_at_ms < $3 THEN ends_at_ms ELSE $3 END \
                 WHERE sla_id = $4 AND node_id = $5",
            )
            .bind(PlacementState::Moved.as_str())
            .bind(ms(r.finished_at))
            .bind(ms(*died_at))
            .bind(sla_id.to_string())
            .bind(node.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for e in &r.events {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The SLAs that moved away from `node` and still run elsewhere: the node, back from the
    /// dead, must release its copies.
    pub async fn moved_away_from(&self, node: NodeId) -> Result<Vec<SlaId>, RepoError> {
        let rows = sqlx::query(
            "SELECT p.sla_id FROM placements p WHERE p.state = $1 AND p.node_id = $2 \
             AND EXISTS (SELECT 1 FROM placements q WHERE q.sla_id = p.sla_id \
             AND q.state IN ($3, $4, $5)) ORDER BY p.sla_id",
        )
        .bind(PlacementState::Moved.as_str())
        .bind(node.to_string())
        .bind(PlacementState::Reserved.as_str())
        .bind(PlacementState::Provisioning.as_str())
        .bind(PlacementState::Live.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| parse_col(row, "placements", "sla_id"))
            .collect()
    }

    /// Opens another auction for an SLA already stored (a re-placement).
    pub async fn insert_auction(
        &self,
        sla: SlaId,
        target: NodeId,
        auction_id: AuctionId,
        rule: AuctionRule,
        now: Timestamp,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO auctions (id, sla_id, rule, target_node, started_at_ms, outcome, refusals) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(auction_id.to_string())
        .bind(sla.to_string())
        .bind(rule.to_string())
        .bind(target.to_string())
        .bind(ms(now))
        .bind(outcome::RUNNING)
        .bind("[]")
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds one event to a placement's history.
    pub async fn insert_event(&self, e: &PlacementEvent) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A placement's history, oldest first.
    pub async fn events_for_sla(&self, sla: SlaId) -> Result<Vec<PlacementEvent>, RepoError> {
        let rows = sqlx::query(
            "SELECT sla_id, at_ms, node_id, event, reason FROM placement_events \
             WHERE sla_id = $1 ORDER BY at_ms",
        )
        .bind(sla.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PlacementEvent {
                    sla_id: parse_col(row, "placement_events", "sla_id")?,
                    at: ts(row.try_get("at_ms")?),
                    node_id: opt_col(row, "placement_events", "node_id")?,
                    event: row.try_get("event")?,
                    reason: row.try_get("reason")?,
                })
            })
            .collect()
    }

    pub async fn auction(&self, id: AuctionId) -> Result<Option<AuctionRecord>, RepoError> {
        let row = sqlx::query(
            "SELECT id, sla_id, rule, target_node, started_at_ms, finished_at_ms, outcome, \
             refusals FROM auctions WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(auction_from_row).transpose()
    }

    /// The latest auction run for an SLA.
    pub async fn auction_for_sla(&self, sla: SlaId) -> Result<Option<AuctionRecord>, RepoError> {
        let row = sqlx::query(
            "SELECT id, sla_id, rule, target_node, started_at_ms, finished_at_ms, outcome, \
             refusals FROM auctions WHERE sla_id = $1 ORDER BY started_at_ms DESC, id LIMIT 1",
        )
        .bind(sla.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(auction_from_row).transpose()
    }

    /// Bids of an auction, lowest price first.
    pub async fn bids(&self, auction: AuctionId) -> Result<Vec<BidRecord>, RepoError> {
        let rows = sqlx::query(
            "SELECT auction_id, body, won, refused_accept FROM bids WHERE auction_id = $1 \
             ORDER BY price, node_id, id",
        )
        .bind(auction.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bid_from_row).collect()
    }

    // -- placements ---------------------------------------------------------------------------

    pub async fn insert_placement(&self, p: &PlacementRecord) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        insert_placement(&mut tx, p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Placements of an SLA, by node id.
    pub async fn placements_for_sla(&self, sla: SlaId) -> Result<Vec<PlacementRecord>, RepoError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_columns!(),
            " FROM placements WHERE sla_id = $1 ORDER BY price, node_id"
        ))
        .bind(sla.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(placement_from_row).collect()
    }

    /// Every placement, oldest first.
    pub async fn list_placements(&self) -> Result<Vec<PlacementRecord>, RepoError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_columns!(),
            " FROM placements ORDER BY created_at_ms, sla_id, node_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(placement_from_row).collect()
    }

    /// Every `live` placement with its SLA, oldest SLA first, then by SLA id and node id:
    /// what the route table is built from.
    pub async fn live_placements(&self) -> Result<Vec<LivePlacement>, RepoError> {
        let rows = sqlx::query(
            "SELECT p.sla_id, p.node_id, p.ends_at_ms, s.body, s.target_node \
             FROM placements p JOIN slas s ON s.id = p.sla_id WHERE p.state = $1 \
             ORDER BY s.created_at_ms, p.sla_id, p.node_id",
        )
        .bind(PlacementState::Live.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LivePlacement {
                    sla_id: parse_col(row, "placements", "sla_id")?,
                    node_id: parse_col(row, "placements", "node_id")?,
                    ends_at: ts(row.try_get("ends_at_ms")?),
                    sla: json_col(row, "slas", "body")?,
                    target_node: parse_col(row, "slas", "target_node")?,
                })
            })
            .collect()
    }

    /// Every placement that is not over yet (`reserved`, `provisioning`, `live`) with its SLA,
    /// oldest SLA first, then by SLA id and node id.
    pub async fn active_placements(&self) -> Result<Vec<ActivePlacement>, RepoError> {
        let rows = sqlx::query(
            "SELECT p.sla_id, p.node_id, p.bid_id, p.auction_id, p.price, p.state, \
             p.created_at_ms, p.ends_at_ms, p.updated_at_ms, p.invoke_url, p.error, \
             s.body, s.target_node \
             FROM placements p JOIN slas s ON s.id = p.sla_id WHERE p.state IN ($1, $2, $3) \
             ORDER BY s.created_at_ms, p.sla_id, p.node_id",
        )
        .bind(PlacementState::Reserved.as_str())
        .bind(PlacementState::Provisioning.as_str())
        .bind(PlacementState::Live.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActivePlacement {
                    placement: placement_from_row(row)?,
                    sla: json_col(row, "slas", "body")?,
                    target_node: parse_col(row, "slas", "target_node")?,
                })
            })
            .collect()
    }

    /// The `limit` most recently started auctions with their SLAs, newest first.
    pub async fn recent_auctions(&self, limit: u32) -> Result<Vec<RecentAuction>, RepoError> {
        let rows = sqlx::query(
            "SELECT a.id, a.sla_id, a.rule, a.target_node, a.started_at_ms, a.finished_at_ms, \
             a.outcome, a.refusals, s.body FROM auctions a JOIN slas s ON s.id = a.sla_id \
             ORDER BY a.started_at_ms DESC, a.id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RecentAuction {
                    auction: auction_from_row(row)?,
                    sla: json_col(row, "slas", "body")?,
                })
            })
            .collect()
    }

    /// Bids of the given auctions (one query), lowest price first within each auction.
    pub async fn bids_of_auctions(&self, ids: &[AuctionId]) -> Result<Vec<BidRecord>, RepoError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT auction_id, body, won, refused_accept FROM bids \
                 WHERE auction_id IN ({}) ORDER BY auction_id, price, node_id, id",
                placeholders(chunk.len())
            );
            // Audited: the dynamic part is only `$n` placeholders; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(bid_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Placements made by the given auctions (one query), by price then node id.
    pub async fn placements_of_auctions(
        &self,
        ids: &[AuctionId],
    ) -> Result<Vec<PlacementRecord>, RepoError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT {} FROM placements WHERE auction_id IN ({}) ORDER BY price, node_id",
                placement_columns!(),
                placeholders(chunk.len())
            );
            // Audited: the dynamic part is only `$n` placeholders; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(placement_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// How many placements are in each state (states without placements are absent).
    pub async fn count_placements_by_state(&self) -> Result<Vec<(PlacementState, u64)>, RepoError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM placements GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let state: PlacementState = parse_col(row, "placements", "state")?;
                let n: i64 = row.try_get("n")?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// How many registered nodes are alive and how many are dead: `(alive, dead)`.
    pub async fn count_nodes_by_liveness(&self) -> Result<(u64, u64), RepoError> {
        let rows = sqlx::query("SELECT alive, COUNT(*) AS n FROM nodes GROUP BY alive")
            .fetch_all(&self.pool)
            .await?;
        let (mut alive, mut dead) = (0, 0);
        for row in &rows {
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            if row.try_get::<i64, _>("alive")? != 0 {
                alive += n;
            } else {
                dead += n;
            }
        }
        Ok((alive, dead))
    }

    /// Moves one placement to `state`; `false` when there is no such placement.
    pub async fn set_placement_state(
        &self,
        sla: SlaId,
        node: NodeId,
        state: PlacementState,
        now: Timestamp,
    ) -> Result<bool, RepoError> {
        let done = sqlx::query(
            "UPDATE placements SET state = $1, updated_at_ms = $2 WHERE sla_id = $3 AND node_id = $4",
        )
        .bind(state.as_str())
        .bind(ms(now))
        .bind(sla.to_string())
        .bind(node.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records what a node answered to provisioning: the new state, and the invocation URL or
    /// the reason it failed.
    pub async fn set_placement_provisioned(
        &self,
        sla: SlaId,
        node: NodeId,
        state: PlacementState,
        invoke_url: Option<&str>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, RepoError> {
        let done = sqlx::query(
            "UPDATE placements SET state = $1, updated_at_ms = $2, invoke_url = $3, error = $4 \
             WHERE sla_id = $5 AND node_id = $6",
        )
        .bind(state.as_str())
        .bind(ms(now))
        .bind(invoke_url.map(str::to_string))
        .bind(error.map(str::to_string))
        .bind(sla.to_string())
        .bind(node.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes SLAs that are over (no active placement, nothing updated since `cutoff`, created
    /// before `cutoff`) with their auctions, bids and placements, in one transaction. Returns
    /// how many SLAs were deleted.
    pub async fn purge_history(&self, cutoff: Timestamp) -> Result<u64, RepoError> {
        // Placeholders: $1 = cutoff, $2..$4 = the active states.
        const OVER: &str = "SELECT s.id FROM slas s WHERE s.created_at_ms < $1 AND NOT EXISTS \
             (SELECT 1 FROM placements p WHERE p.sla_id = s.id \
              AND (p.state IN ($2, $3, $4) OR p.updated_at_ms >= $1))";
        let statements = [
            format!(
                "DELETE FROM bids WHERE auction_id IN (SELECT a.id FROM auctions a WHERE a.sla_id IN ({OVER}))"
            ),
            format!("DELETE FROM placement_events WHERE sla_id IN ({OVER})"),
            format!("DELETE FROM placements WHERE sla_id IN ({OVER})"),
            format!("DELETE FROM auctions WHERE sla_id IN ({OVER})"),
            format!("DELETE FROM slas WHERE id IN ({OVER})"),
        ];
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for sql in statements {
            // Audited: constant SQL assembled from literals; every value is bound.
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ms(cutoff))
                .bind(PlacementState::Reserved.as_str())
                .bind(PlacementState::Provisioning.as_str())
                .bind(PlacementState::Live.as_str())
                .execute(&mut *tx)
                .await?;
            deleted = done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Marks active placements whose lifetime ended by `now` as finished; returns how many.
    pub async fn finish_due_placements(&self, now: Timestamp) -> Result<u64, RepoError> {
        let done = sqlx::query(
            "UPDATE placements SET state = $1, updated_at_ms = $2 \
             WHERE ends_at_ms <= $3 AND state IN ($4, $5, $6)",
        )
        .bind(PlacementState::Finished.as_str())
        .bind(ms(now))
        .bind(ms(now))
        .bind(PlacementState::Reserved.as_str())
        .bind(PlacementState::Provisioning.as_str())
        .bind(PlacementState::Live.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Largest `IN (…)` list bound in one statement.
const IN_LIST_CHUNK: usize = 500;

/// `$1, $2, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

async fn insert_placement(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    p: &PlacementRecord,
) -> Result<(), RepoError> {
    sqlx::query(concat!(
        "INSERT INTO placements (",
        placement_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(p.sla_id.to_string())
    .bind(p.node_id.to_string())
    .bind(p.bid_id.to_string())
    .bind(p.auction_id.to_string())
    .bind(p.price.value())
    .bind(p.state.as_str())
    .bind(ms(p.created_at))
    .bind(ms(p.ends_at))
    .bind(ms(p.updated_at))
    .bind(p.invoke_url.clone())
    .bind(p.error.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &PlacementEvent,
) -> Result<(), RepoError> {
    sqlx::query(
        "INSERT INTO placement_events (sla_id, at_ms, node_id, event, reason) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(e.sla_id.to_string())
    .bind(ms(e.at))
    .bind(e.node_id.map(|n| n.to_string()))
    .bind(e.event.clone())
    .bind(e.reason.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_states_round_trip_through_their_names() {
        for s in [
            PlacementState::Reserved,
            PlacementState::Provisioning,
            PlacementState::Live,
            PlacementState::Failed,
            PlacementState::Finished,
            PlacementState::Cancelled,
            PlacementState::Moved,
        ] {
            assert_eq!(s.as_str().parse::<PlacementState>(), Ok(s));
        }
        assert!("gone".parse::<PlacementState>().is_err());
    }

    #[test]
    fn backends_are_recognised_from_the_url() {
        assert_eq!(
            Backend::of_url("sqlite://x.db?mode=rwc"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of_url("postgres://u:p@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://h/db"), None);
    }
}
