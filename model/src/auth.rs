//! Request signing between federation members.
//!
//! Every call between the marketplace and fog nodes, and between fog nodes, carries
//! `Authorization: Fogmarket <sender>:<unix ms>:<hex HMAC-SHA256>` where the MAC covers the
//! sender, the timestamp, the method, the path and the SHA-256 of the body, keyed with the
//! federation key handed out at enrollment. A third party cannot forge it, and a captured
//! header cannot be replayed on another path, with another body, or after `max_skew`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::time::Timestamp;

pub const SCHEME: &str = "Fogmarket";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header, expected `Fogmarket <sender>:<unix ms>:<hex mac>`")]
    Malformed,
    #[error("signature timestamp is outside the accepted window")]
    Stale,
    #[error("bad signature")]
    BadSignature,
}

fn mac(key: &[u8], sender: &str, ts: u64, method: &str, path: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any size");
    let body_hash = Sha256::digest(body);
    m.update(sender.as_bytes());
    m.update(b"\n");
    m.update(ts.to_string().as_bytes());
    m.update(b"\n");
    m.update(method.to_ascii_uppercase().as_bytes());
    m.update(b"\n");
    m.update(path.as_bytes());
    m.update(b"\n");
    m.update(&body_hash);
    m
}

/// The `Authorization` header value for a request.
pub fn sign(
    key: &[u8],
    sender: &str,
    now: Timestamp,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    let tag = mac(key, sender, now.as_millis(), method, path, body)
        .finalize()
        .into_bytes();
    format!("{SCHEME} {sender}:{}:{}", now.as_millis(), hex::encode(tag))
}

/// Checks a header; returns the sender on success.
pub fn verify(
    key: &[u8],
    header: Option<&str>,
    now: Timestamp,
    max_skew: Duration,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let rest = header
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AuthError::Malformed)?;
    let mut parts = rest.rsplitn(3, ':');
    let tag_hex = parts.next().ok_or(AuthError::Malformed)?;
    let ts: u64 = parts
        .next()
        .and_then(|t| t.parse().ok())
        .ok_or(AuthError::Malformed)?;
    let sender = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::Malformed)?;
    let tag = hex::decode(tag_hex).map_err(|_| AuthError::Malformed)?;
    let skew = now.as_millis().abs_diff(ts);
    if skew > max_skew.as_millis() as u64 {
        return Err(AuthError::Stale);
    }
    mac(key, sender, ts, method, path, body)
        .verify_slice(&tag)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(sender.to_string())
}

/// Header carrying the forwarding signature of a data-plane request between fog nodes.
pub const FORWARD_HEADER: &str = "x-fogmarket-forward";
/// Header with the number of fog nodes the request crossed before the receiver (covered by
/// the forwarding signature).
pub const HOPS_HEADER: &str = "x-fogmarket-hops";
/// Header with the kind of forward (`access`: an access node routing to a host; `offload`: a
/// host shedding load to a peer), covered by the forwarding signature.
pub const ROUTE_HEADER: &str = "x-fogmarket-route";

/// What a forwarding signature binds besides sender, time and body: the request target
/// (path and query), the hop count and the route kind. A header captured on one request
/// cannot be reused with another target, body, hop count or kind.
fn forward_target(path_and_query: &str, hops: u32, kind: &str) -> String {
    format!("{path_and_query}\nhops={hops}\nroute={kind}")
}

/// The `X-Fogmarket-Forward` value for a forwarded invocation: `Fogmarket <sender>:<ms>:<hex>`
/// over sender, timestamp, method, path and query, hop count, route kind and body.
#[allow(clippy::too_many_arguments)]
pub fn sign_forward(
    key: &[u8],
    sender: &str,
    now: Timestamp,
    method: &str,
    path_and_query: &str,
    hops: u32,
    kind: &str,
    body: &[u8],
) -> String {
    sign(
        key,
        sender,
        now,
        method,
        &forward_target(path_and_query, hops, kind),
        body,
    )
}

/// Checks an `X-Fogmarket-Forward` value against the request as received; returns the sender.
#[allow(clippy::too_many_arguments)]
pub fn verify_forward(
    key: &[u8],
    header: Option<&str>,
    now: Timestamp,
    max_skew: Duration,
    method: &str,
    path_and_query: &str,
    hops: u32,
    kind: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    verify(
        key,
        header,
        now,
        max_skew,
        method,
        &forward_target(path_and_query, hops, kind),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"federation-key";
    const SKEW: Duration = Duration::from_secs(30);

    #[test]
    fn a_signed_request_verifies_and_names_its_sender() {
        let now = Timestamp::from_millis(1_000_000);
        let h = sign(KEY, "node-a", now, "POST", "/api/bid", b"{}");
        assert_eq!(
            verify(KEY, Some(&h), now, SKEW, "POST", "/api/bid", b"{}").unwrap(),
            "node-a"
        );
    }

    #[test]
    fn tampering_with_body_path_key_or_sender_is_detected() {
        let now = Timestamp::from_millis(1_000_000);
        let h = sign(KEY, "node-a", now, "POST", "/api/bid", b"{}");
        let v = |key: &[u8], h: &str, path: &str, body: &[u8]| {
            verify(key, Some(h), now, SKEW, "POST", path, body)
        };
        assert_eq!(v(KEY, &h, "/api/bid", b"{ }"), Err(AuthError::BadSignature));
        assert_eq!(
            v(KEY, &h, "/api/accept", b"{}"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v(b"other", &h, "/api/bid", b"{}"),
            Err(AuthError::BadSignature)
        );
        let forged = h.replacen("node-a", "node-b", 1);
        assert_eq!(
            v(KEY, &forged, "/api/bid", b"{}"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_forward_signature_binds_hops_route_kind_and_query() {
        let now = Timestamp::from_millis(5_000_000);
        let h = sign_forward(
            KEY,
            "n1",
            now,
            "POST",
            "/function/f?x=1",
            1,
            "offload",
            b"hi",
        );
        let v = |pq: &str, hops: u32, kind: &str| {
            verify_forward(KEY, Some(&h), now, SKEW, "POST", pq, hops, kind, b"hi")
        };
        assert_eq!(v("/function/f?x=1", 1, "offload").unwrap(), "n1");
        assert_eq!(
            v("/function/f?x=1", 0, "offload"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("/function/f?x=1", 1, "access"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v("/function/f?x=2", 1, "offload"),
            Err(AuthError::BadSignature)
        );
        // A plain API signature is not a forwarding signature.
        let api = sign(KEY, "n1", now, "POST", "/function/f?x=1", b"hi");
        assert_eq!(
            verify_forward(
                KEY,
                Some(&api),
                now,
                SKEW,
                "POST",
                "/function/f?x=1",
                1,
                "offload",
                b"hi"
            ),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn old_signatures_and_garbage_headers_are_refused() {
        let then = Timestamp::from_millis(1_000_000);
        let h = sign(KEY, "m", then, "GET", "/x", b"");
        let later = then.plus(Duration::from_secs(31));
        assert_eq!(
            verify(KEY, Some(&h), later, SKEW, "GET", "/x", b""),
            Err(AuthError::Stale)
        );
        assert_eq!(
            verify(KEY, None, then, SKEW, "GET", "/x", b""),
            Err(AuthError::Missing)
        );
        for bad in [
            "Bearer abc",
            "Fogmarket ",
            "Fogmarket a:b:c",
            "Fogmarket :1:00",
        ] {
            assert_eq!(
                verify(KEY, Some(bad), then, SKEW, "GET", "/x", b""),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
    }
}
