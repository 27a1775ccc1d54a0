//! In-process link emulation (`[link_emulation]`): several fog nodes share one machine, and
//! the network between them is played by the receiver. A request from another node is held
//! for the configured one-way latency of the path before it is handled, and its response is
//! held again before it leaves, so a round trip between two nodes takes what it would on the
//! emulated network, whichever client sent it (this node's own calls, the bid relay, the
//! control exchanges, the data-plane forwards, or HAProxy in `data_plane = "haproxy"`).
//!
//! The sender is read from the identity headers a node puts on every inter-node request, or
//! from `X-Fogmarket-From` on the unsigned latency probes. That claim only chooses a delay:
//! authentication stays with the handlers, which verify the signatures as before. Requests
//! from devices, the marketplace or an operator carry no node identity and are not delayed.

use crate::client::{FROM_HEADER, PEER_HEADER};
use crate::state::node::Node;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::web;
use model::auth::{FORWARD_HEADER, PAIR_SCHEME, SCHEME, peer_token_sender};
use std::sync::Arc;

/// The node a request says it comes from (an id, or a name): `X-Fogmarket-From`, else the
/// sender field of `X-Fogmarket-Forward` or `Authorization`
/// (`Fogmarket-Ed25519 <sender>:<recipient>:…` or `Fogmarket-Pair …`), else of `X-Fogmarket-Peer`
/// (`<sender>.<window>.<tag>`). Not verified; see the module documentation.
pub fn claimed_sender(headers: &HeaderMap) -> Option<&str> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(from) = value(FROM_HEADER).map(str::trim).filter(|s| !s.is_empty()) {
        return Some(from);
    }
    let signed = [FORWARD_HEADER, "authorization"]
        .into_iter()
        .filter_map(value)
        .find_map(|v| {
            v.strip_prefix(SCHEME)
                .or_else(|| v.strip_prefix(PAIR_SCHEME))?
                .strip_prefix(' ')?
                .trim_start()
                .split(':')
                .next()
                .filter(|s| !s.is_empty())
        });
    signed.or_else(|| value(PEER_HEADER).and_then(peer_token_sender))
}

/// Actix middleware: holds a request from another node for the one-way latency of the path,
/// runs it, and holds the response as long again. A no-op when emulation is off.
pub async fn emulate_links(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let delay = req
        .app_data::<web::Data<Arc<Node>>>()
        .filter(|node| node.config.link_emulation.enabled())
        .and_then(|node| {
            claimed_sender(req.headers()).and_then(|sender| node.emulated_one_way(sender))
        })
        .filter(|d| !d.is_zero());
    let Some(delay) = delay else {
        return next.call(req).await;
    };
    tokio::time::sleep(delay).await;
    let response = next.call(req).await;
    tokio::time::sleep(delay).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const ID: &str = "6f2c1a52-8d7e-4b4e-9a43-0d3f5f1f9b10";

    #[test]
    fn the_sender_comes_from_any_identity_header() {
        let signed = format!("Fogmarket-Ed25519 {ID}:marketplace:1700000000000:00ff:abcd");
        assert_eq!(
            claimed_sender(&headers(&[("authorization", &signed)])),
            Some(ID)
        );
        assert_eq!(
            claimed_sender(&headers(&[("x-fogmarket-forward", &signed)])),
            Some(ID)
        );
        let paired = format!("Fogmarket-Pair {ID}:other:1700000000000:00ff:abcd");
        assert_eq!(
            claimed_sender(&headers(&[("x-fogmarket-forward", &paired)])),
            Some(ID)
        );
        let token = format!("{ID}.2833333.00ff");
        assert_eq!(
            claimed_sender(&headers(&[("x-fogmarket-peer", &token)])),
            Some(ID)
        );
        assert_eq!(
            claimed_sender(&headers(&[("x-fogmarket-from", "edge-1")])),
            Some("edge-1")
        );
    }

    #[test]
    fn the_explicit_from_header_wins_and_garbage_names_nobody() {
        let signed = format!("Fogmarket-Ed25519 {ID}:marketplace:1:00:ab");
        assert_eq!(
            claimed_sender(&headers(&[
                ("authorization", &signed),
                ("x-fogmarket-from", "edge-1")
            ])),
            Some("edge-1")
        );
        assert_eq!(claimed_sender(&headers(&[])), None);
        assert_eq!(
            claimed_sender(&headers(&[("authorization", "Bearer abc")])),
            None
        );
        assert_eq!(
            claimed_sender(&headers(&[(
                "authorization",
                "Fogmarket-Ed25519 :x:1:00:ab"
            )])),
            None
        );
        // The enrollment scheme names no node yet.
        assert_eq!(
            claimed_sender(&headers(&[("authorization", "Fogmarket edge-1:1:ab")])),
            None
        );
    }
}
