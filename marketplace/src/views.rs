//! The read models of the client API (functions, their winners, nodes, auctions), built from
//! database records without any I/O.
//!
//! The service reads the records and hands them here; the dashboard shares
//! [`overall_state`]. Nothing here queries the database or calls a node.

use crate::repository::{
    AuctionRecord, BidRecord, NodeRecord, PlacementEvent, PlacementRecord, PlacementState,
    SlaRecord, event,
};
use model::latency::PathLatency;
use model::protocol::{Bid, Refusal, Resources};
use model::{AuctionId, BidId, NodeId, Price, Sla, SlaId, Timestamp};
use serde::Serialize;
use std::collections::HashMap;
use url::{Host, Url};

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
    /// Why the placement is `degraded`: a host died and no node could take its copy yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
    /// Where the placement has been: hosts lost, moves, tries that found no node (oldest
    /// first; empty while it stays where it was placed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// One entry of a placement's history.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// `host_lost`, `moved_to` or `degraded`.
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeId>,
    /// The node's name, when it is registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    pub reason: String,
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

/// The data-plane URL of a function on a node: `<nodeUrl>/function/fogfn-<slaId>`.
pub fn data_plane_url(node_url: &str, sla: SlaId) -> String {
    format!(
        "{}/function/{}",
        node_url.trim_end_matches('/'),
        sla.service_name()
    )
}

/// Host and port of an `http(s)://host[:port][/…]` URL (an IPv6 host without its brackets).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let url = Url::parse(url).ok()?;
    let host = match url.host()? {
        Host::Ipv6(ip) => ip.to_string(),
        host => host.to_string(),
    };
    let port = url.port_or_known_default()?;
    (!host.is_empty()).then_some((host, port))
}

/// The overall state of a function from its placements.
pub fn overall_state(placements: &[PlacementRecord]) -> String {
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

/// What the database holds about one function, as [`function_view`] needs it.
pub struct FunctionRecords {
    pub sla: SlaRecord,
    pub auction: Option<AuctionRecord>,
    pub bids: Vec<BidRecord>,
    pub placements: Vec<PlacementRecord>,
    /// The target (access) node, when it is still registered.
    pub target: Option<NodeRecord>,
    /// The hosting nodes that are still registered.
    pub hosts: HashMap<NodeId, NodeRecord>,
    /// The placement's history, oldest first.
    pub events: Vec<PlacementEvent>,
}

/// A function and its placements: winners cheapest first, the invoke URL while one is live.
pub fn function_view(records: FunctionRecords) -> FunctionView {
    let sla = records.sla.sla.id;
    let access_url = records.target.map(|n| data_plane_url(&n.url, sla));
    let mut winners: Vec<WinnerView> = records
        .placements
        .iter()
        .filter(|p| p.state != PlacementState::Moved)
        .map(|p| {
            let node = records.hosts.get(&p.node_id);
            winner_view(p, &records.bids, node, access_url.as_deref())
        })
        .collect();
    winners.sort_by(|a, b| a.bid.bid.cmp(&b.bid.bid).then(a.node_id.cmp(&b.node_id)));
    let live = records
        .placements
        .iter()
        .any(|p| p.state == PlacementState::Live);
    // Degraded: a copy is still on a dead host and the last try to move it found no node.
    let stranded = records
        .placements
        .iter()
        .any(|p| p.state.is_active() && !records.hosts.get(&p.node_id).is_some_and(|n| n.alive));
    let degraded_reason = records
        .events
        .last()
        .filter(|e| stranded && e.event == event::DEGRADED)
        .map(|e| e.reason.clone());
    let history = records
        .events
        .iter()
        .map(|e| HistoryEntry {
            at: e.at,
            event: e.event.clone(),
            node_id: e.node_id,
            node_name: e
                .node_id
                .and_then(|id| records.hosts.get(&id))
                .map(|n| n.name.clone()),
            reason: e.reason.clone(),
        })
        .collect();
    FunctionView {
        state: match degraded_reason {
            Some(_) => "degraded".to_string(),
            None => overall_state(&records.placements),
        },
        degraded_reason,
        history,
        invoke_url: access_url.filter(|_| live),
        sla: records.sla.sla,
        target_node: records.sla.target_node,
        chosen: winners.first().cloned(),
        winners,
        proposals: Proposals {
            bids: records.bids.into_iter().map(|b| b.bid).collect(),
        },
        auction_id: records.auction.map(|a| a.id),
        created_at: records.sla.created_at,
        errors: Vec::new(),
    }
}

/// One placement as a winner: its bid (or what the placement remembers of it when the bid is
/// gone) and where the node is (or was, as the bid said, when it is no longer registered).
fn winner_view(
    p: &PlacementRecord,
    bids: &[BidRecord],
    node: Option<&NodeRecord>,
    access_url: Option<&str>,
) -> WinnerView {
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
        .map(|n| (n.name.clone(), n.url.clone()))
        .unwrap_or_else(|| (bid.node_name.clone(), bid.node_url.clone()));
    let (ip, port) = host_port(&url).unwrap_or_default();
    WinnerView {
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
            .filter(|_| p.state == PlacementState::Live)
            .map(str::to_string),
        gateway_url: p.invoke_url.clone(),
        error: p.error.clone(),
    }
}

/// An auction with its bids, refusals and the placements it made.
pub fn auction_view(
    a: AuctionRecord,
    bids: Vec<BidRecord>,
    placements: &[PlacementRecord],
) -> AuctionView {
    let winners = placements
        .iter()
        .filter(|p| p.auction_id == a.id)
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
    AuctionView {
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
