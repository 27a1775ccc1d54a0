//! Batches the release of losing holds per node.
//!
//! Every auction leaves a hold on each losing node. Releasing them one call per node per
//! auction costs as many HTTP calls as there are bidders, for every placement. Instead, bid ids
//! are queued per node and flushed at most every [`FLUSH_EVERY`]: under load one call per
//! node carries the releases of many auctions, and a hold is still freed well before it would
//! expire on its own.

use crate::node_client::{NodeAddr, NodeClient};
use model::{BidId, NodeId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long releases wait to be batched.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ReleaseBatcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: NodeClient,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    by_node: HashMap<(NodeId, String), Vec<BidId>>,
    flush_scheduled: bool,
}

impl ReleaseBatcher {
    pub fn new(client: NodeClient) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                pending: Mutex::new(Pending::default()),
            }),
        }
    }

    /// Queues the release of `bid_ids` on `node` (at `url`); a flush follows within
    /// [`FLUSH_EVERY`].
    pub fn release(&self, node: NodeId, url: &str, bid_ids: Vec<BidId>) {
        if bid_ids.is_empty() {
            return;
        }
        let schedule = {
            let mut p = self.inner.pending.lock();
            p.by_node
                .entry((node, url.to_string()))
                .or_default()
                .extend(bid_ids);
            !std::mem::replace(&mut p.flush_scheduled, true)
        };
        if schedule {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FLUSH_EVERY).await;
                inner.flush().await;
            });
        }
    }
}

impl Inner {
    async fn flush(&self) {
        let batch = {
            let mut p = self.pending.lock();
            p.flush_scheduled = false;
            std::mem::take(&mut p.by_node)
        };
        let calls = batch.into_iter().map(|((id, url), bid_ids)| async move {
            let node = NodeAddr { id, url: &url };
            if let Err(e) = self.client.release(node, bid_ids, CALL_TIMEOUT).await {
                tracing::debug!(%url, error = %e, "release failed; the holds will expire");
            }
        });
        futures::future::join_all(calls).await;
    }
}
