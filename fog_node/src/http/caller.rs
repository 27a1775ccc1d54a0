//! Who sent an invocation: a client (no federation header), or a fog node proven by
//! `X-Fogmarket-Forward` (the forwarding node's own Ed25519 signature for this node over
//! time, nonce, method, path and query, hop count, route kind and body) or by
//! `X-Fogmarket-Peer` (HAProxy mode: a ten-minute token keyed for this one pair of nodes,
//! since HAProxy cannot sign each request; it implies route `offload` and one hop).

use crate::client::PEER_HEADER;
use crate::state::node::Identity;
use crate::state::routes::Routes;
use actix_web::http::header::HeaderMap;
use model::auth::{self, FORWARD_HEADER, HOPS_HEADER, PublicKey, ROUTE_HEADER};
use model::ids::NodeId;
use model::time::Timestamp;

/// The kind of a node-to-node forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// An access node routing a client request to a host.
    Access,
    /// A host shedding load to a peer host: always served by the receiver.
    Offload,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Access => "access",
            RouteKind::Offload => "offload",
        }
    }

    pub fn parse(s: &str) -> Option<RouteKind> {
        match s {
            "access" => Some(RouteKind::Access),
            "offload" => Some(RouteKind::Offload),
            _ => None,
        }
    }
}

/// The proven sender of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No federation header: a client request (hops 0).
    Client,
    /// A fog node of the route table.
    Node {
        sender: NodeId,
        hops: u32,
        kind: RouteKind,
    },
}

impl Caller {
    pub fn hops(&self) -> u32 {
        match self {
            Caller::Client => 0,
            Caller::Node { hops, .. } => *hops,
        }
    }

    pub fn sender(&self) -> Option<NodeId> {
        match self {
            Caller::Client => None,
            Caller::Node { sender, .. } => Some(*sender),
        }
    }

    pub fn kind(&self) -> Option<RouteKind> {
        match self {
            Caller::Client => None,
            Caller::Node { kind, .. } => Some(*kind),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| format!("{name} is not a visible ASCII header value"))
        })
        .transpose()
}

fn known_sender(routes: &Routes, sender: &str) -> Result<NodeId, String> {
    let id: NodeId = sender
        .parse()
        .map_err(|_| format!("sender `{sender}` is not a node id"))?;
    if routes.node(id).is_none() {
        return Err(format!("sender {id} is not a node of the route table"));
    }
    Ok(id)
}

/// Identifies the caller of one invocation, or says why it is refused (403). A forward must
/// be signed by the forwarding node's own key for this node, over this request, hop count and
/// route kind, with a fresh nonce; a peer token must be the one of this pair of nodes.
#[allow(clippy::too_many_arguments)]
pub fn identify(
    me: &Identity,
    pair_secret: impl FnOnce(&PublicKey) -> [u8; 32],
    routes: &Routes,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: Timestamp,
) -> Result<Caller, String> {
    let route_key = |sender: &str| {
        let id: NodeId = sender.parse().ok()?;
        routes.node(id).map(|n| n.info.public_key)
    };
    if let Some(signature) = header(headers, FORWARD_HEADER)? {
        let hops = match header(headers, HOPS_HEADER)? {
            Some(h) => h
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{HOPS_HEADER} `{h}` is not a hop count"))?,
            None => 0,
        };
        let kind_raw = header(headers, ROUTE_HEADER)?.unwrap_or("");
        let kind = RouteKind::parse(kind_raw.trim())
            .ok_or_else(|| format!("{ROUTE_HEADER} must be `access` or `offload`"))?;
        let target = auth::forward_target(path_and_query, hops, kind.as_str());
        let sender = me
            .guard
            .check(
                Some(signature),
                now,
                &auth::RequestTarget::new(method, &target, body),
                route_key,
            )
            .map_err(|e| format!("{FORWARD_HEADER}: {e}"))?;
        let sender = known_sender(routes, &sender)?;
        return Ok(Caller::Node { sender, hops, kind });
    }
    if let Some(token) = header(headers, PEER_HEADER)? {
        let claimed = auth::peer_token_sender(token)
            .ok_or_else(|| format!("{PEER_HEADER} must be `<sender>.<window>.<hex>`"))?;
        let peer_key = route_key(claimed).ok_or_else(|| {
            format!("{PEER_HEADER}: sender `{claimed}` is not a node of the route table")
        })?;
        let pair = pair_secret(&peer_key);
        let sender = auth::verify_peer_token(&pair, token, &me.sender, now)
            .map_err(|e| format!("{PEER_HEADER}: {e}"))?;
        let sender = known_sender(routes, &sender)?;
        return Ok(Caller::Node {
            sender,
            hops: 1,
            kind: RouteKind::Offload,
        });
    }
    Ok(Caller::Client)
}
