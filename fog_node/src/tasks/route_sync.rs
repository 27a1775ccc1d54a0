//! The route sync loop: long-polls the marketplace's `GET /api/routes` and installs every new
//! table as the node's route snapshot.

use crate::client::{Call, CallError};
use crate::state::identity::Identity;
use crate::state::node::Node;
use model::auth::MARKETPLACE;
use model::protocol::RouteTable;
use std::sync::Arc;
use std::time::Duration;

/// How long the marketplace may hold a long poll.
const WAIT_MS: u64 = 10_000;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// An unchanged table answered sooner than this is not a long poll: the next poll waits
/// until this long after the previous one started (a marketplace without long polling
/// cannot make the loop spin).
const MIN_UNCHANGED_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One long poll: the table after `after` (at once when absent), signed by this node for the
/// marketplace like heartbeats, over the path with its query.
pub async fn fetch_routes(
    node: &Node,
    identity: &Identity,
    after: Option<u64>,
    wait_ms: u64,
) -> Result<RouteTable, CallError> {
    let path = match after {
        Some(v) => format!("/api/routes?after={v}&waitMs={wait_ms}"),
        None => format!("/api/routes?waitMs={wait_ms}"),
    };
    let call = Call::get(&node.config.marketplace_url, path)
        .route("/api/routes")
        .timeout(Duration::from_millis(wait_ms) + Duration::from_secs(5));
    node.client
        .call(call, node.signer(identity, MARKETPLACE))
        .await
}

/// Keeps the route table current: starts once the node has an identity, long-polls with
/// `after` = the version it has (none before its first answer), installs every table that
/// differs from the current one, and backs off 200 ms -> 2 s on errors. An unchanged table
/// answered within [`MIN_UNCHANGED_POLL`] paces the next poll.
pub async fn route_sync_loop(node: Arc<Node>) {
    let mut delays = supervisor::delays(MIN_BACKOFF, MAX_BACKOFF);
    let mut synced = false;
    let mut failures = 0u32;
    loop {
        let Some(identity) = node.identity_arc() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let after = synced.then(|| node.offload.routes().version());
        let started = tokio::time::Instant::now();
        match fetch_routes(&node, &identity, after, WAIT_MS).await {
            Ok(table) => {
                synced = true;
                delays = supervisor::delays(MIN_BACKOFF, MAX_BACKOFF);
                if failures > 0 {
                    tracing::info!(version = table.version, "route table sync recovered");
                }
                failures = 0;
                if Some(table.version) == after {
                    node.offload.install_routes_if_changed(table);
                    tokio::time::sleep_until(started + MIN_UNCHANGED_POLL).await;
                } else {
                    node.offload.install_routes_if_changed(table);
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "route table sync failed; retrying with backoff");
                } else {
                    tracing::debug!(error = %e, failures, "route table sync failed");
                }
                tokio::time::sleep(delays.next().unwrap_or(MAX_BACKOFF)).await;
            }
        }
    }
}
