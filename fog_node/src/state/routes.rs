//! The route snapshot: the marketplace's [`RouteTable`] as an immutable, indexed [`Routes`],
//! swapped atomically on every change (by [`crate::tasks::route_sync`]).
//!
//! A snapshot pairs every function route with its per-function state and every federation
//! node with its peer link, so one atomic load per request gives the data plane everything it
//! needs. States and links are carried over from the previous snapshot (same service, same
//! node id): installing a new table never resets counters, rate windows or weights.
//!
//! Lookup of `/function/{name}`: by service (`fogfn-<slaId>`), by SLA id, then by
//! `functionLiveName`, where the newest placement of that name wins: the one with the latest
//! `expiresAt` (ties: the later in the table). Routes past their `expiresAt` are ignored at
//! lookup time, without waiting for the next table.

use crate::state::function::FunctionState;
use crate::state::peer::PeerLink;
use model::ids::{NodeId, SlaId};
use model::protocol::{FunctionRoute, RouteNode, RouteTable};
use model::time::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;

/// One function of the table and its state on this node.
pub struct FunctionEntry {
    pub route: FunctionRoute,
    pub state: Arc<FunctionState>,
}

impl FunctionEntry {
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.route.expires_at > now
    }
    pub fn hosted_by(&self, node: NodeId) -> bool {
        self.route.hosts.contains(&node)
    }
}

/// One federation node of the table and this node's link to it.
pub struct NodeEntry {
    pub info: RouteNode,
    pub link: Arc<PeerLink>,
}

/// An immutable snapshot of the route table, indexed for the data plane.
#[derive(Default)]
pub struct Routes {
    table_version: u64,
    generated_at: Timestamp,
    functions: Vec<Arc<FunctionEntry>>,
    by_service: HashMap<String, Arc<FunctionEntry>>,
    by_sla: HashMap<SlaId, Arc<FunctionEntry>>,
    /// Newest first.
    by_name: HashMap<String, Vec<Arc<FunctionEntry>>>,
    nodes: HashMap<NodeId, Arc<NodeEntry>>,
}

impl Routes {
    /// Indexes `table`, reusing the states and links of `prev` and making new ones with
    /// `new_state` / `new_link`.
    pub fn build(
        table: RouteTable,
        prev: &Routes,
        mut new_state: impl FnMut(&FunctionRoute) -> Arc<FunctionState>,
        mut new_link: impl FnMut(&RouteNode) -> Arc<PeerLink>,
    ) -> Routes {
        let mut routes = Routes {
            table_version: table.version,
            generated_at: table.generated_at,
            ..Routes::default()
        };
        for info in table.nodes {
            let link = prev
                .nodes
                .get(&info.node_id)
                .map(|n| n.link.clone())
                .unwrap_or_else(|| new_link(&info));
            routes
                .nodes
                .insert(info.node_id, Arc::new(NodeEntry { info, link }));
        }
        for route in table.functions {
            let state = prev
                .by_service
                .get(&route.service)
                .map(|f| f.state.clone())
                .unwrap_or_else(|| new_state(&route));
            let entry = Arc::new(FunctionEntry { route, state });
            routes
                .by_service
                .insert(entry.route.service.clone(), entry.clone());
            routes.by_sla.insert(entry.route.sla_id, entry.clone());
            routes
                .by_name
                .entry(entry.route.name.clone())
                .or_default()
                .push(entry.clone());
            routes.functions.push(entry);
        }
        for list in routes.by_name.values_mut() {
            // Stable sort by expiry, then reverse: latest expiry first, later in table first.
            list.sort_by_key(|e| e.route.expires_at);
            list.reverse();
        }
        routes
    }

    pub fn version(&self) -> u64 {
        self.table_version
    }

    pub fn generated_at(&self) -> Timestamp {
        self.generated_at
    }

    /// Every function of the table, expired or not, in table order.
    pub fn functions(&self) -> &[Arc<FunctionEntry>] {
        &self.functions
    }

    pub fn function_by_service(&self, service: &str) -> Option<&Arc<FunctionEntry>> {
        self.by_service.get(service)
    }

    /// `/function/{name}`: by service, SLA id, then newest live placement of that live name;
    /// expired routes are not found.
    pub fn lookup(&self, name: &str, now: Timestamp) -> Option<&Arc<FunctionEntry>> {
        if let Some(e) = self.by_service.get(name) {
            return e.is_live(now).then_some(e);
        }
        if let Ok(id) = name.parse::<SlaId>()
            && let Some(e) = self.by_sla.get(&id)
        {
            return e.is_live(now).then_some(e);
        }
        self.by_name
            .get(name)
            .and_then(|list| list.first())
            .filter(|e| e.is_live(now))
    }

    pub fn node(&self, id: NodeId) -> Option<&Arc<NodeEntry>> {
        self.nodes.get(&id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<NodeEntry>> {
        self.nodes.values()
    }

    /// The name of a node, or its id when the table does not know it.
    pub fn node_name(&self, id: NodeId) -> String {
        self.nodes
            .get(&id)
            .map_or_else(|| id.to_string(), |n| n.info.name.clone())
    }
}
