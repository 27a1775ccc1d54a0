//! Who sent an invocation: a client (no federation header), or a fog node proven by
//! `X-Fogmarket-Forward` (a per-request signature over sender, time, method, path and query,
//! hop count, route kind and body) or by `X-Fogmarket-Peer` (HAProxy mode: a per-sender,
//! per-hour bearer token, since HAProxy cannot sign each request; it implies route `offload`
//! and one hop).

use crate::directory::Routes;
use actix_web::http::header::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use model::auth::{self, FORWARD_HEADER, HOPS_HEADER, ROUTE_HEADER};
use model::ids::NodeId;
use model::time::Timestamp;
use sha2::Sha256;
use std::time::Duration;

/// Header of the HAProxy-mode peer token: `<senderNodeId>:<epochHour>:<hex>`.
pub const PEER_HEADER: &str = "x-fogmarket-peer";

/// Forward signatures further than this from the receiver's clock are refused.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

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

/// Identifies the caller of one invocation, or says why it is refused (403).
pub fn identify(
    key: &[u8],
    routes: &Routes,
    headers: &HeaderMap,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: Timestamp,
) -> Result<Caller, String> {
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
        let sender = auth::verify_forward(
            key,
            Some(signature),
            now,
            MAX_SKEW,
            method,
            path_and_query,
            hops,
            kind.as_str(),
            body,
        )
        .map_err(|e| format!("{FORWARD_HEADER}: {e}"))?;
        let sender = known_sender(routes, &sender)?;
        return Ok(Caller::Node { sender, hops, kind });
    }
    if let Some(token) = header(headers, PEER_HEADER)? {
        let sender = verify_peer_token(key, token, now)?;
        let sender = known_sender(routes, &sender)?;
        return Ok(Caller::Node {
            sender,
            hops: 1,
            kind: RouteKind::Offload,
        });
    }
    Ok(Caller::Client)
}

fn peer_mac(key: &[u8], sender: &str, epoch_hour: u64) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
    m.update(b"haproxy-peer\n");
    m.update(sender.as_bytes());
    m.update(b"\n");
    m.update(epoch_hour.to_string().as_bytes());
    m
}

/// The hour number of `now` (Unix seconds / 3600).
pub fn epoch_hour(now: Timestamp) -> u64 {
    now.as_millis() / 1000 / 3600
}

/// The `X-Fogmarket-Peer` header value HAProxy sends on behalf of `sender` during
/// `epoch_hour`: `<sender>:<epochHour>:<hex HMAC-SHA256(key, "haproxy-peer\n<sender>\n<epochHour>")>`.
/// Receivers accept the current and the previous hour, so install a new token every hour.
pub fn haproxy_peer_token(key: &[u8], sender: &str, epoch_hour: u64) -> String {
    let tag = peer_mac(key, sender, epoch_hour).finalize().into_bytes();
    format!("{sender}:{epoch_hour}:{}", hex::encode(tag))
}

/// Checks an `X-Fogmarket-Peer` value; returns the sender.
pub fn verify_peer_token(key: &[u8], value: &str, now: Timestamp) -> Result<String, String> {
    let malformed = || format!("{PEER_HEADER} must be `<sender>:<epochHour>:<hex>`");
    let mut parts = value.trim().rsplitn(3, ':');
    let tag = parts.next().ok_or_else(malformed)?;
    let hour: u64 = parts
        .next()
        .and_then(|h| h.parse().ok())
        .ok_or_else(malformed)?;
    let sender = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(malformed)?;
    let tag = hex::decode(tag).map_err(|_| malformed())?;
    let current = epoch_hour(now);
    if hour != current && hour + 1 != current {
        return Err(format!(
            "{PEER_HEADER}: token of hour {hour} is neither the current nor the previous hour"
        ));
    }
    peer_mac(key, sender, hour)
        .verify_slice(&tag)
        .map_err(|_| format!("{PEER_HEADER}: bad token"))?;
    Ok(sender.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_token_is_accepted_for_the_current_and_previous_hour_only() {
        let key = b"k";
        let now = Timestamp::from_millis(10 * 3_600_000 + 5);
        let sender = NodeId::new().to_string();
        for hour in [10, 9] {
            let t = haproxy_peer_token(key, &sender, hour);
            assert_eq!(verify_peer_token(key, &t, now).unwrap(), sender);
        }
        let old = haproxy_peer_token(key, &sender, 8);
        assert!(verify_peer_token(key, &old, now).is_err());
        let other_key = haproxy_peer_token(b"other", &sender, 10);
        assert!(verify_peer_token(key, &other_key, now).is_err());
        let forged = haproxy_peer_token(key, &sender, 10).replacen(&sender, "someone", 1);
        assert!(verify_peer_token(key, &forged, now).is_err());
        assert!(verify_peer_token(key, "garbage", now).is_err());
    }
}
