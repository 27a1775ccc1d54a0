//! The route table (`GET /api/routes`): its version, the table built once per version, and the
//! long-poll that waits for a newer one.
//!
//! Every change that alters the table (a placement goes live, is cancelled, fails or finishes;
//! a node registers, dies or comes back) bumps a counter after the change is committed, and
//! long-polls wait on that counter, holding neither a database connection nor a thread. The
//! table is built from the database once per version and shared by every poll.

use crate::error::ServiceError;
use crate::repository::Repository;
use model::protocol::{FunctionRoute, RouteNode, RouteTable};
use model::{FieldError, NodeId, SlaId, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Longest a route long-poll may wait (`waitMs`).
pub const MAX_ROUTE_WAIT_MS: u64 = 30_000;
/// The path of the route table long-poll.
pub const ROUTES_PATH: &str = "/api/routes";

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

/// Version, cache and stop signal of the route table, shared by every clone of the service.
pub(super) struct RouteBook {
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

impl RouteBook {
    pub(super) fn new() -> Self {
        Self {
            // Wall-clock milliseconds: greater than any version a node may hold from an
            // earlier run of the marketplace (see `bump`).
            version: watch::Sender::new(Timestamp::now().as_millis()),
            stopping: watch::Sender::new(false),
            cache: tokio::sync::Mutex::new(None),
            builds: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Records that the route table changed. Call after the change is committed: a table built
    /// from the database labels itself with the version read before its queries.
    ///
    /// The version is a hybrid clock, `max(previous + 1, now in unix ms)`: it increases on every
    /// bump and stays close to the wall clock, so a restarted marketplace (starting at `now`)
    /// is ahead of any version a node kept from the previous run.
    pub(super) fn bump(&self) {
        let now = Timestamp::now().as_millis();
        self.version
            .send_modify(|v| *v = v.saturating_add(1).max(now));
    }

    pub(super) fn stats(&self) -> RouteStats {
        RouteStats {
            version: *self.version.borrow(),
            builds: self.builds.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Ends every waiting long-poll now and makes later polls answer without waiting.
    pub(super) fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// The table of the current version, from the cache or built once from the database.
    pub(super) async fn table(&self, repo: &Repository) -> Result<Arc<RouteTable>, ServiceError> {
        let mut cache = self.cache.lock().await;
        // Read under the lock and before the queries: the table holds at least every change
        // committed before this version was published.
        let version = *self.version.borrow();
        if let Some(table) = cache.as_ref()
            && table.version == version
        {
            return Ok(table.clone());
        }
        let table = Arc::new(build(repo, version).await?);
        self.builds.fetch_add(1, Ordering::Relaxed);
        *cache = Some(table.clone());
        Ok(table)
    }

    /// The long-poll of `sender` (already authenticated): the current table at once when its
    /// version is greater than `after` (or `after` is absent); otherwise waits up to `wait_ms`
    /// (at most [`MAX_ROUTE_WAIT_MS`]) for a newer version, then answers the current table.
    pub(super) async fn poll(
        &self,
        repo: &Repository,
        sender: NodeId,
        after: Option<u64>,
        wait_ms: Option<u64>,
    ) -> Result<Arc<RouteTable>, ServiceError> {
        let wait_ms = wait_ms.unwrap_or(0);
        if wait_ms > MAX_ROUTE_WAIT_MS {
            return Err(ServiceError::InvalidRequest(FieldError::new(
                "waitMs",
                format!("must be at most {MAX_ROUTE_WAIT_MS} (milliseconds), got {wait_ms}"),
            )));
        }
        // Subscribe before reading the table: a change after this point wakes the wait below.
        let mut versions = self.version.subscribe();
        let mut stopping = self.stopping.subscribe();
        let table = self.table(repo).await?;
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
            let _waiting = Waiting::new(&self.waiting);
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
        self.table(repo).await
    }
}

/// The table of `version` from the database: every node with a key, and every function with
/// a live placement and its hosts.
async fn build(repo: &Repository, version: u64) -> Result<RouteTable, ServiceError> {
    let generated_at = Timestamp::now();
    let nodes = repo
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
    for p in repo.live_placements().await? {
        if let Some(f) = index.get(&p.sla_id).and_then(|&i| functions.get_mut(i)) {
            f.hosts.push(p.node_id);
            f.expires_at = f.expires_at.min(p.ends_at);
            continue;
        }
        index.insert(p.sla_id, functions.len());
        functions.push(FunctionRoute {
            sla_id: p.sla_id,
            service: p.sla_id.service_name(),
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
