//! Identity and request signing between federation members.
//!
//! Every member holds its own Ed25519 key pair: each fog node one, the marketplace one. The
//! marketplace pins a node's public key to its id and name at enrollment; nodes pin the
//! marketplace's key at the same time and learn their peers' keys from the route table.
//!
//! Every call between members carries
//! `Authorization: Fogmarket-Ed25519 <sender>:<recipient>:<unix ms>:<nonce>:<signature>` where
//! the signature covers the method, the path with its query, the recipient's id, the sender,
//! the time, a random nonce and the SHA-256 of the body ([`sign`], [`parse`],
//! [`Claim::verify`]). A receiver refuses a signature made for another recipient, one older
//! or newer than `max_skew`, and a nonce it has already seen ([`ReplayCache`]). What a verified
//! sender may do is decided by the receiver, per action.
//!
//! Joining is the one step signed with a shared secret: the enrollment secret signs
//! `POST /api/register` ([`enrollment`]), which carries the node's public key, and the
//! marketplace proves with the same secret that the key it answers with is its own.
//!
//! Between two fog nodes, the same fields may instead be authenticated by an HMAC-SHA256 keyed
//! with the secret of that pair of nodes ([`pair_secret`]: X25519 of one node's key and the
//! other's public key, never sent): `Authorization: Fogmarket-Pair <sender>:<recipient>:…:<mac>`
//! ([`sign_pair`]). Only those two nodes can make it, so it proves the sender to the recipient
//! as the signature does, for a small fraction of the cost of an Ed25519 signature and its
//! verification; each side derives the pair's secret once ([`PairKeys`]). Tickets and the
//! calls of the marketplace stay Ed25519-signed.
//!
//! HAProxy cannot sign each request, so in HAProxy mode a node sends a short-lived token
//! derived for one pair of nodes by X25519 from their own keys ([`pair_secret`],
//! [`peer_token`]): no third node can make or read it.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::time::Timestamp;

/// Scheme of the `Authorization` header of member-to-member calls.
pub const SCHEME: &str = "Fogmarket-Ed25519";
/// Scheme of a call between two fog nodes authenticated with their pair's secret.
pub const PAIR_SCHEME: &str = "Fogmarket-Pair";
/// The sender and recipient id of the marketplace in signatures.
pub const MARKETPLACE: &str = "marketplace";
/// Signatures further than this from the receiver's clock are refused.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error(
        "malformed Authorization header ({0}), expected `{SCHEME} <sender>:<recipient>:<unix ms>:<nonce>:<signature>`"
    )]
    Malformed(&'static str),
    #[error("signature timestamp is outside the accepted window")]
    Stale,
    #[error("bad signature")]
    BadSignature,
    #[error("signed for recipient `{0}`, not for this receiver")]
    WrongRecipient(String),
    #[error("unknown sender `{0}`")]
    UnknownSender(String),
    #[error("nonce already used (replayed request)")]
    Replayed,
    #[error("too many requests in the replay window; try again shortly")]
    ReplayCacheFull,
    #[error("`{PAIR_SCHEME}` is only accepted between fog nodes")]
    PairNotAccepted,
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected {expected} hex digits")]
    Length { expected: usize },
    #[error("not hexadecimal")]
    NotHex,
    #[error("not a valid Ed25519 public key")]
    Invalid,
    #[error("a weak (small-order) Ed25519 public key is not accepted")]
    Weak,
}

/// A member's Ed25519 signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new key from 32 random bytes (the caller's CSPRNG).
    pub fn generate(rng: &mut impl rand::CryptoRng) -> SecretKey {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SecretKey::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// The 32-byte seed as 64 hex digits (what a key file holds).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn from_hex(text: &str) -> Result<SecretKey, KeyError> {
        Ok(SecretKey::from_seed(hex32(text.trim())?))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    fn sign_message(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

fn hex32(text: &str) -> Result<[u8; 32], KeyError> {
    if text.len() != 64 {
        return Err(KeyError::Length { expected: 64 });
    }
    let bytes = hex::decode(text).map_err(|_| KeyError::NotHex)?;
    bytes
        .try_into()
        .map_err(|_| KeyError::Length { expected: 64 })
}

/// A member's Ed25519 public key; 64 hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Checks a detached signature over `message`: RFC 8032 verification with a canonical `S`.
    /// Weak (small-order) keys are refused when a key is read ([`FromStr`]), so the stricter
    /// check of `verify_strict`, which also decompresses `R` on every call, buys nothing here;
    /// a malleated signature changes no field a receiver relies on (the nonce is signed).
    fn verify_message(&self, message: &[u8], signature: &Signature) -> Result<(), AuthError> {
        self.0
            .verify(message, signature)
            .map_err(|_| AuthError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(&hex32(s.trim())?).map_err(|_| KeyError::Invalid)?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(key))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// 128 random bits that make each signed request unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    pub fn random(rng: &mut impl rand::Rng) -> Nonce {
        let mut n = [0u8; 16];
        rng.fill_bytes(&mut n);
        Nonce(n)
    }
}

/// What a request signature covers besides who, for whom, when and the nonce.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    pub method: &'a str,
    /// The path with its query string, as sent (`/api/routes?after=3&waitMs=10000`).
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

impl<'a> RequestTarget<'a> {
    pub fn new(method: &'a str, path_and_query: &'a str, body: &'a [u8]) -> Self {
        Self {
            method,
            path_and_query,
            body,
        }
    }
}

fn request_message(
    sender: &str,
    recipient: &str,
    ts: u64,
    nonce: &Nonce,
    req: &RequestTarget<'_>,
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(req.body));
    format!(
        "fogmarket-request-v2\n{}\n{}\n{recipient}\n{sender}\n{ts}\n{}\n{body_hash}",
        req.method.to_ascii_uppercase(),
        req.path_and_query,
        hex::encode(nonce.0),
    )
    .into_bytes()
}

fn check_id(what: &'static str, id: &str) -> Result<(), AuthError> {
    if id.is_empty() || id.len() > 128 || id.contains([':', ' ', '\n']) {
        return Err(AuthError::Malformed(what));
    }
    Ok(())
}

/// The `Authorization` header value for a request from `sender` to `recipient`.
pub fn sign(
    key: &SecretKey,
    sender: &str,
    recipient: &str,
    now: Timestamp,
    nonce: Nonce,
    req: &RequestTarget<'_>,
) -> String {
    let ts = now.as_millis();
    let sig = key.sign_message(&request_message(sender, recipient, ts, &nonce, req));
    format!(
        "{SCHEME} {sender}:{recipient}:{ts}:{}:{}",
        hex::encode(nonce.0),
        hex::encode(sig.to_bytes())
    )
}

/// The `Authorization` value for a request from `sender` to `recipient`, two fog nodes,
/// authenticated with their [`pair_secret`] instead of a signature.
pub fn sign_pair(
    pair: &[u8; 32],
    sender: &str,
    recipient: &str,
    now: Timestamp,
    nonce: Nonce,
    req: &RequestTarget<'_>,
) -> String {
    let ts = now.as_millis();
    let mut mac = hmac_with(pair);
    mac.update(&request_message(sender, recipient, ts, &nonce, req));
    format!(
        "{PAIR_SCHEME} {sender}:{recipient}:{ts}:{}:{}",
        hex::encode(nonce.0),
        hex::encode(mac.finalize().into_bytes())
    )
}

/// What proves a claim: the sender's signature, or a MAC with the pair's secret.
#[derive(Debug, Clone)]
enum Proof {
    Signature(Signature),
    PairMac([u8; 32]),
}

/// A parsed, not yet verified, signature header: who claims to send it, to whom.
#[derive(Debug, Clone)]
pub struct Claim {
    pub sender: String,
    pub recipient: String,
    pub ts: Timestamp,
    pub nonce: Nonce,
    proof: Proof,
}

/// Reads an `Authorization` header (either scheme); verify it with [`Claim::verify`] and the
/// sender's key, or through a [`Guard`].
pub fn parse(header: Option<&str>) -> Result<Claim, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (pair, rest) = if let Some(rest) = header.strip_prefix(SCHEME) {
        (false, rest)
    } else if let Some(rest) = header.strip_prefix(PAIR_SCHEME) {
        (true, rest)
    } else {
        return Err(AuthError::Malformed("scheme"));
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or(AuthError::Malformed("scheme"))?;
    let parts: Vec<&str> = rest.trim().split(':').collect();
    let [sender, recipient, ts, nonce, proof] = parts[..] else {
        return Err(AuthError::Malformed("five fields"));
    };
    check_id("sender", sender)?;
    check_id("recipient", recipient)?;
    let ts: u64 = ts.parse().map_err(|_| AuthError::Malformed("time"))?;
    let nonce: [u8; 16] = hex::decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(AuthError::Malformed("nonce"))?;
    let proof = if pair {
        Proof::PairMac(
            hex::decode(proof)
                .ok()
                .and_then(|m| m.try_into().ok())
                .ok_or(AuthError::Malformed("mac"))?,
        )
    } else {
        let sig: [u8; 64] = hex::decode(proof)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(AuthError::Malformed("signature"))?;
        Proof::Signature(Signature::from_bytes(&sig))
    };
    Ok(Claim {
        sender: sender.to_string(),
        recipient: recipient.to_string(),
        ts: Timestamp::from_millis(ts),
        nonce: Nonce(nonce),
        proof,
    })
}

impl Claim {
    /// Checks that the claim was made by the holder of `key`, for `me`, within `max_skew` of
    /// `now`, over exactly this request. The replay check is the caller's ([`ReplayCache`]).
    pub fn verify(
        &self,
        key: &PublicKey,
        me: &str,
        now: Timestamp,
        max_skew: Duration,
        req: &RequestTarget<'_>,
    ) -> Result<(), AuthError> {
        self.verify_with(key, None, me, now, max_skew, req)
    }

    /// [`Claim::verify`] that also accepts a pair MAC when `pairs` (this node's own key) is
    /// given.
    fn verify_with(
        &self,
        key: &PublicKey,
        pairs: Option<&PairKeys>,
        me: &str,
        now: Timestamp,
        max_skew: Duration,
        req: &RequestTarget<'_>,
    ) -> Result<(), AuthError> {
        if self.recipient != me {
            return Err(AuthError::WrongRecipient(self.recipient.clone()));
        }
        if now.as_millis().abs_diff(self.ts.as_millis()) > max_skew.as_millis() as u64 {
            return Err(AuthError::Stale);
        }
        let message = request_message(&self.sender, &self.recipient, self.ts.0, &self.nonce, req);
        match &self.proof {
            Proof::Signature(signature) => key.verify_message(&message, signature),
            Proof::PairMac(tag) => {
                let pairs = pairs.ok_or(AuthError::PairNotAccepted)?;
                let mut mac = hmac_with(&pairs.secret_with(key));
                mac.update(&message);
                mac.verify_slice(tag).map_err(|_| AuthError::BadSignature)
            }
        }
    }
}

/// A node's own key with the secrets it shares with each peer, derived once per peer.
pub struct PairKeys {
    me: SecretKey,
    secrets: std::sync::Mutex<std::collections::HashMap<PublicKey, [u8; 32]>>,
}

impl fmt::Debug for PairKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairKeys({:?})", self.me)
    }
}

/// Pair secrets a [`PairKeys`] keeps (more peers than this: the cache starts over).
const PAIR_CACHE: usize = 4096;

impl PairKeys {
    pub fn new(me: SecretKey) -> Self {
        Self {
            me,
            secrets: std::sync::Mutex::default(),
        }
    }

    /// The secret shared with `peer` ([`pair_secret`]), from the cache when derived before.
    pub fn secret_with(&self, peer: &PublicKey) -> [u8; 32] {
        let mut secrets = self
            .secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = secrets.get(peer) {
            return *s;
        }
        if secrets.len() >= PAIR_CACHE {
            secrets.clear();
        }
        let s = pair_secret(&self.me, peer);
        secrets.insert(*peer, s);
        s
    }
}

/// Remembers the nonces of accepted signatures for as long as their time is acceptable, so a
/// captured request cannot be played again. Bounded: when full of live entries it refuses
/// (fails closed) instead of forgetting.
#[derive(Debug)]
pub struct ReplayCache {
    window: Duration,
    capacity: usize,
    seen: HashSet<(String, Nonce)>,
    order: VecDeque<(Timestamp, String, Nonce)>,
}

impl ReplayCache {
    /// `window`: the signature skew accepted (a nonce is kept twice as long); `capacity`: the
    /// most nonces held.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records the claim's nonce; `Replayed` when it was seen within the window.
    pub fn admit(&mut self, claim: &Claim, now: Timestamp) -> Result<(), AuthError> {
        while let Some((expires, _, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            if let Some((_, sender, nonce)) = self.order.pop_front() {
                self.seen.remove(&(sender, nonce));
            }
        }
        let key = (claim.sender.clone(), claim.nonce);
        if self.seen.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::ReplayCacheFull);
        }
        // A signature from up to `window` in the future stays acceptable for 2 x window.
        let expires = now.plus(self.window * 2);
        self.order.push_back((expires, key.0.clone(), key.1));
        self.seen.insert(key);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A receiver's check of member signatures: made by the claimed sender's key, for `me`,
/// within [`MAX_SKEW`], over exactly this request, with a nonce not seen before.
#[derive(Debug)]
pub struct Guard {
    me: String,
    replay: std::sync::Mutex<ReplayCache>,
    /// A node's own key: also accept pair MACs of its peers ([`sign_pair`]).
    pairs: Option<std::sync::Arc<PairKeys>>,
}

/// Nonces a [`Guard`] remembers at most (about a minute of requests at several thousand/s).
pub const REPLAY_CAPACITY: usize = 500_000;

impl Guard {
    /// Accepts Ed25519 signatures only (the marketplace).
    pub fn new(me: impl Into<String>) -> Self {
        Self {
            me: me.into(),
            replay: std::sync::Mutex::new(ReplayCache::new(MAX_SKEW, REPLAY_CAPACITY)),
            pairs: None,
        }
    }

    /// Accepts Ed25519 signatures and the pair MACs of peers (a fog node, holding `pairs`).
    pub fn with_pairs(me: impl Into<String>, pairs: std::sync::Arc<PairKeys>) -> Self {
        Self {
            pairs: Some(pairs),
            ..Self::new(me)
        }
    }

    /// The recipient id this guard accepts signatures for.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The verified sender of a request, given how to find a sender's pinned key. The nonce
    /// is recorded only once the signature is verified, so forgeries cannot fill the cache.
    pub fn check(
        &self,
        header: Option<&str>,
        now: Timestamp,
        req: &RequestTarget<'_>,
        key_of: impl FnOnce(&str) -> Option<PublicKey>,
    ) -> Result<String, AuthError> {
        let claim = parse(header)?;
        if claim.recipient != self.me {
            return Err(AuthError::WrongRecipient(claim.recipient));
        }
        let key =
            key_of(&claim.sender).ok_or_else(|| AuthError::UnknownSender(claim.sender.clone()))?;
        claim.verify_with(&key, self.pairs.as_deref(), &self.me, now, MAX_SKEW, req)?;
        self.replay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(&claim, now)?;
        Ok(claim.sender)
    }
}

/// Header carrying the forwarding signature of a data-plane request between fog nodes.
pub const FORWARD_HEADER: &str = "x-fogmarket-forward";
/// Header with the number of fog nodes the request crossed before the receiver (covered by
/// the forwarding signature).
pub const HOPS_HEADER: &str = "x-fogmarket-hops";
/// Header with the kind of forward (`access`: an access node routing to a host; `offload`: a
/// host shedding load to a peer), covered by the forwarding signature.
pub const ROUTE_HEADER: &str = "x-fogmarket-route";

/// What a forwarding signature covers in place of the path: the request target (path and
/// query), the hop count and the route kind, so a header captured on one request cannot be
/// reused with another target, hop count or kind. The newlines keep it apart from any path.
pub fn forward_target(path_and_query: &str, hops: u32, kind: &str) -> String {
    format!("{path_and_query}\nhops={hops}\nroute={kind}")
}

/// HMAC-SHA256 keyed with `key` (any length is a valid HMAC key).
fn hmac_with(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"))
}

/// Signing with the shared enrollment secret: only `POST /api/register` and the
/// marketplace's answer to it.
pub mod enrollment {
    use super::*;

    /// Scheme of the enrollment signature.
    pub const SCHEME: &str = "Fogmarket";

    fn mac(
        secret: &[u8],
        sender: &str,
        ts: u64,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Hmac<Sha256> {
        let mut m = hmac_with(secret);
        m.update(b"fogmarket-enroll-v2\n");
        m.update(sender.as_bytes());
        m.update(b"\n");
        m.update(ts.to_string().as_bytes());
        m.update(b"\n");
        m.update(method.to_ascii_uppercase().as_bytes());
        m.update(b"\n");
        m.update(path.as_bytes());
        m.update(b"\n");
        m.update(&Sha256::digest(body));
        m
    }

    /// `Authorization: Fogmarket <name>:<unix ms>:<hex HMAC-SHA256>` for a registration.
    pub fn sign(
        secret: &[u8],
        sender: &str,
        now: Timestamp,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> String {
        let tag = mac(secret, sender, now.as_millis(), method, path, body)
            .finalize()
            .into_bytes();
        format!("{SCHEME} {sender}:{}:{}", now.as_millis(), hex::encode(tag))
    }

    /// Checks a registration header; returns the sender (the node's name).
    pub fn verify(
        secret: &[u8],
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
            .ok_or(AuthError::Malformed("scheme"))?;
        let mut parts = rest.rsplitn(3, ':');
        let tag_hex = parts.next().ok_or(AuthError::Malformed("mac"))?;
        let ts: u64 = parts
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or(AuthError::Malformed("time"))?;
        let sender = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Malformed("sender"))?;
        let tag = hex::decode(tag_hex).map_err(|_| AuthError::Malformed("mac"))?;
        if now.as_millis().abs_diff(ts) > max_skew.as_millis() as u64 {
            return Err(AuthError::Stale);
        }
        mac(secret, sender, ts, method, path, body)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(sender.to_string())
    }

    fn ack_mac(
        secret: &[u8],
        node_id: &str,
        node_key: &PublicKey,
        market_key: &PublicKey,
    ) -> Hmac<Sha256> {
        let mut m = hmac_with(secret);
        m.update(b"fogmarket-enroll-ack-v2\n");
        m.update(node_id.as_bytes());
        m.update(b"\n");
        m.update(node_key.to_hex().as_bytes());
        m.update(b"\n");
        m.update(market_key.to_hex().as_bytes());
        m
    }

    /// The marketplace's proof, in its answer to a registration, that it holds the enrollment
    /// secret and that `market_key` is its key for this node (`node_key` pinned to `node_id`).
    pub fn ack_proof(
        secret: &[u8],
        node_id: &str,
        node_key: &PublicKey,
        market_key: &PublicKey,
    ) -> String {
        hex::encode(
            ack_mac(secret, node_id, node_key, market_key)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks [`ack_proof`] on the node's side before it pins `market_key`.
    pub fn verify_ack(
        secret: &[u8],
        node_id: &str,
        node_key: &PublicKey,
        market_key: &PublicKey,
        proof: &str,
    ) -> Result<(), AuthError> {
        let tag = hex::decode(proof).map_err(|_| AuthError::Malformed("proof"))?;
        ack_mac(secret, node_id, node_key, market_key)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)
    }
}

/// An auction's authority: the marketplace's signature over the auction, the digest of the
/// SLA (what a bid may hold resources for) and a deadline. Relayed bid requests carry it, so a
/// node only holds resources for auctions the marketplace really runs, for the SLA it really
/// auctions, whoever relays them.
pub fn ticket_message(auction_id: &str, sla_digest: &[u8], deadline: Timestamp) -> Vec<u8> {
    format!(
        "fogmarket-auction-v2\n{auction_id}\n{}\n{}",
        hex::encode(sla_digest),
        deadline.as_millis()
    )
    .into_bytes()
}

/// SHA-256 of `bytes` (an SLA's canonical JSON, for [`ticket_message`]).
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Signs [`ticket_message`]; 128 hex digits.
pub fn sign_ticket(key: &SecretKey, message: &[u8]) -> String {
    hex::encode(key.sign_message(message).to_bytes())
}

/// Checks a ticket signature made by [`sign_ticket`].
pub fn verify_ticket(key: &PublicKey, message: &[u8], signature: &str) -> Result<(), AuthError> {
    let sig: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(AuthError::Malformed("ticket signature"))?;
    key.verify_message(message, &Signature::from_bytes(&sig))
}

/// Length of one HAProxy peer-token window; a token is accepted in its window and the next.
pub const PEER_TOKEN_WINDOW: Duration = Duration::from_secs(600);

/// The secret two nodes share without ever sending it: X25519 of one's key and the other's
/// public key (both Ed25519, mapped to Curve25519), hashed with both public keys in a fixed
/// order. `pair_secret(a, B) == pair_secret(b, A)`.
pub fn pair_secret(me: &SecretKey, peer: &PublicKey) -> [u8; 32] {
    let shared = peer.0.to_montgomery() * me.0.to_scalar();
    let (a, b) = {
        let mine = me.public().0.to_bytes();
        let theirs = peer.0.to_bytes();
        if mine <= theirs {
            (mine, theirs)
        } else {
            (theirs, mine)
        }
    };
    let mut h = Sha256::new();
    h.update(b"fogmarket-pair-v1\n");
    h.update(shared.as_bytes());
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// The window number of `now` ([`PEER_TOKEN_WINDOW`]).
pub fn peer_token_window(now: Timestamp) -> u64 {
    now.as_millis() / PEER_TOKEN_WINDOW.as_millis() as u64
}

/// The MAC of a peer token; the token carries its left 16 bytes.
fn peer_mac(pair: &[u8; 32], sender: &str, recipient: &str, window: u64) -> Hmac<Sha256> {
    let mut m = hmac_with(pair);
    m.update(format!("haproxy-peer\n{sender}\n{recipient}\n{window}").as_bytes());
    m
}

/// A peer token `<sender>.<window>.<hex>` for requests from `sender` to `recipient` during
/// `window`, keyed with their [`pair_secret`]. Only characters HAProxy accepts in a server
/// name, so it can travel as one (`http-send-name-header`).
pub fn peer_token(pair: &[u8; 32], sender: &str, recipient: &str, window: u64) -> String {
    format!(
        "{sender}.{window}.{}",
        hex::encode(
            &peer_mac(pair, sender, recipient, window)
                .finalize()
                .into_bytes()[..16]
        )
    )
}

/// The sender a peer token claims, before it is checked (to find the pair's secret).
pub fn peer_token_sender(value: &str) -> Option<&str> {
    let mut parts = value.trim().rsplitn(3, '.');
    let _tag = parts.next()?;
    let _window = parts.next()?;
    parts.next().filter(|s| !s.is_empty())
}

/// Checks a peer token for `me` against the pair's secret; accepted in its window and the
/// next one.
pub fn verify_peer_token(
    pair: &[u8; 32],
    value: &str,
    me: &str,
    now: Timestamp,
) -> Result<String, AuthError> {
    let mut parts = value.trim().rsplitn(3, '.');
    let tag = parts.next().ok_or(AuthError::Malformed("peer token"))?;
    let window: u64 = parts
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or(AuthError::Malformed("peer token window"))?;
    let sender = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::Malformed("peer token sender"))?;
    let current = peer_token_window(now);
    if window != current && window + 1 != current {
        return Err(AuthError::Stale);
    }
    let tag: [u8; 16] = hex::decode(tag)
        .ok()
        .and_then(|t| t.try_into().ok())
        .ok_or(AuthError::BadSignature)?;
    // In constant time, like every other MAC check here.
    peer_mac(pair, sender, me, window)
        .verify_truncated_left(&tag)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(sender.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed([seed; 32])
    }

    fn nonce(n: u8) -> Nonce {
        Nonce([n; 16])
    }

    const SKEW: Duration = MAX_SKEW;

    #[test]
    fn a_signed_request_verifies_for_its_recipient_and_names_its_sender() {
        let k = key(1);
        let now = Timestamp::from_millis(1_000_000);
        let req = RequestTarget::new("POST", "/api/bid?x=1", b"{}");
        let h = sign(&k, "node-a", "node-b", now, nonce(1), &req);
        let claim = parse(Some(&h)).unwrap();
        assert_eq!(claim.sender, "node-a");
        assert_eq!(claim.recipient, "node-b");
        claim
            .verify(&k.public(), "node-b", now, SKEW, &req)
            .unwrap();
    }

    #[test]
    fn a_guard_names_the_sender_once_and_refuses_the_same_request_again() {
        let k = key(7);
        let now = Timestamp::from_millis(5_000_000);
        let req = RequestTarget::new("DELETE", "/api/placement/x", b"");
        let h = sign(&k, "marketplace", "node-b", now, nonce(7), &req);
        let guard = Guard::new("node-b");
        let pk = k.public();
        assert_eq!(
            guard.check(Some(&h), now, &req, |_| Some(pk)),
            Ok("marketplace".into())
        );
        assert_eq!(
            guard.check(Some(&h), now, &req, |_| Some(pk)),
            Err(AuthError::Replayed)
        );
        let other = Guard::new("node-c");
        assert_eq!(
            other.check(Some(&h), now, &req, |_| Some(pk)),
            Err(AuthError::WrongRecipient("node-b".into()))
        );
        let fresh = Guard::new("node-b");
        assert_eq!(
            fresh.check(Some(&h), now, &req, |_| None),
            Err(AuthError::UnknownSender("marketplace".into()))
        );
        // A forgery (someone else's key) is refused and does not burn the nonce.
        let forged = sign(&key(8), "marketplace", "node-b", now, nonce(9), &req);
        assert_eq!(
            fresh.check(Some(&forged), now, &req, |_| Some(pk)),
            Err(AuthError::BadSignature)
        );
        let genuine = sign(&k, "marketplace", "node-b", now, nonce(9), &req);
        assert!(fresh.check(Some(&genuine), now, &req, |_| Some(pk)).is_ok());
    }

    #[test]
    fn tampering_with_method_path_query_body_recipient_or_key_is_detected() {
        let k = key(2);
        let now = Timestamp::from_millis(1_000_000);
        let req = RequestTarget::new("POST", "/api/routes?after=1", b"{}");
        let h = sign(&k, "a", "b", now, nonce(2), &req);
        let claim = parse(Some(&h)).unwrap();
        let v =
            |key: &PublicKey, me: &str, r: RequestTarget<'_>| claim.verify(key, me, now, SKEW, &r);
        let pk = k.public();
        assert_eq!(
            v(
                &pk,
                "b",
                RequestTarget::new("POST", "/api/routes?after=1", b"{ }")
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v(
                &pk,
                "b",
                RequestTarget::new("POST", "/api/routes?after=2", b"{}")
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            v(
                &pk,
                "b",
                RequestTarget::new("PUT", "/api/routes?after=1", b"{}")
            ),
            Err(AuthError::BadSignature)
        );
        assert_eq!(v(&pk, "c", req), Err(AuthError::WrongRecipient("b".into())));
        assert_eq!(v(&key(3).public(), "b", req), Err(AuthError::BadSignature));
        // Re-addressing the header to another recipient breaks the signature.
        let readdressed = h.replacen(":b:", ":c:", 1);
        let c = parse(Some(&readdressed)).unwrap();
        assert_eq!(
            c.verify(&pk, "c", now, SKEW, &req),
            Err(AuthError::BadSignature)
        );
        // So does claiming another sender.
        let forged = h.replacen("a:", "z:", 1);
        let f = parse(Some(&forged)).unwrap();
        assert_eq!(
            f.verify(&pk, "b", now, SKEW, &req),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn old_signatures_and_garbage_headers_are_refused() {
        let k = key(4);
        let then = Timestamp::from_millis(1_000_000);
        let req = RequestTarget::new("GET", "/x", b"");
        let h = sign(&k, "m", "n", then, nonce(4), &req);
        let later = then.plus(Duration::from_secs(31));
        let claim = parse(Some(&h)).unwrap();
        assert_eq!(
            claim.verify(&k.public(), "n", later, SKEW, &req),
            Err(AuthError::Stale)
        );
        assert_eq!(parse(None).unwrap_err(), AuthError::Missing);
        for bad in [
            "Bearer abc",
            "Fogmarket a:1:00",
            "Fogmarket-Ed25519 ",
            "Fogmarket-Ed25519 a:b:c:d:e",
            "Fogmarket-Ed25519 :b:1:00000000000000000000000000000000:00",
        ] {
            assert!(
                matches!(parse(Some(bad)), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_replayed_nonce_is_refused_until_its_window_has_passed() {
        let k = key(5);
        let now = Timestamp::from_millis(10_000_000);
        let req = RequestTarget::new("POST", "/api/release", b"{}");
        let claim = parse(Some(&sign(&k, "a", "b", now, nonce(5), &req))).unwrap();
        let mut cache = ReplayCache::new(SKEW, 100);
        cache.admit(&claim, now).unwrap();
        assert_eq!(cache.admit(&claim, now), Err(AuthError::Replayed));
        let other = parse(Some(&sign(&k, "a", "b", now, nonce(6), &req))).unwrap();
        cache.admit(&other, now).unwrap();
        assert_eq!(cache.len(), 2);
        // Long after, the entries are gone (and the signature itself would be stale).
        let much_later = now.plus(SKEW * 3);
        cache.admit(&claim, much_later).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_full_replay_cache_refuses_instead_of_forgetting() {
        let k = key(6);
        let now = Timestamp::from_millis(1);
        let req = RequestTarget::new("GET", "/", b"");
        let mut cache = ReplayCache::new(SKEW, 2);
        for n in 0..2 {
            let c = parse(Some(&sign(&k, "a", "b", now, nonce(n), &req))).unwrap();
            cache.admit(&c, now).unwrap();
        }
        let c = parse(Some(&sign(&k, "a", "b", now, nonce(9), &req))).unwrap();
        assert_eq!(cache.admit(&c, now), Err(AuthError::ReplayCacheFull));
    }

    #[test]
    fn keys_round_trip_through_hex_and_weak_public_keys_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let k = SecretKey::generate(&mut rng);
        let again = SecretKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(again.public(), k.public());
        let pk: PublicKey = k.public().to_hex().parse().unwrap();
        assert_eq!(pk, k.public());
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
        // The identity point is a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            hex::encode(identity).parse::<PublicKey>(),
            Err(KeyError::Weak)
        );
        assert_eq!(
            "zz".parse::<PublicKey>(),
            Err(KeyError::Length { expected: 64 })
        );
        assert!(
            format!("{k:?}").contains("public"),
            "Debug hides the secret"
        );
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn enrollment_signatures_and_the_marketplace_proof_need_the_secret() {
        let now = Timestamp::from_millis(5_000);
        let h = enrollment::sign(b"s3cret", "edge-1", now, "POST", "/api/register", b"{}");
        assert_eq!(
            enrollment::verify(
                b"s3cret",
                Some(&h),
                now,
                SKEW,
                "POST",
                "/api/register",
                b"{}"
            )
            .unwrap(),
            "edge-1"
        );
        assert_eq!(
            enrollment::verify(
                b"other",
                Some(&h),
                now,
                SKEW,
                "POST",
                "/api/register",
                b"{}"
            ),
            Err(AuthError::BadSignature)
        );
        let (node, market) = (key(8).public(), key(9).public());
        let proof = enrollment::ack_proof(b"s3cret", "id-1", &node, &market);
        enrollment::verify_ack(b"s3cret", "id-1", &node, &market, &proof).unwrap();
        assert_eq!(
            enrollment::verify_ack(b"s3cret", "id-1", &node, &key(10).public(), &proof),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            enrollment::verify_ack(b"guess", "id-1", &node, &market, &proof),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_ticket_binds_auction_sla_and_deadline_to_the_marketplace_key() {
        let m = key(11);
        let deadline = Timestamp::from_millis(9_000);
        let msg = ticket_message("auc", &digest(b"sla"), deadline);
        let sig = sign_ticket(&m, &msg);
        verify_ticket(&m.public(), &msg, &sig).unwrap();
        let more_cpu = ticket_message("auc", &digest(b"sla'"), deadline);
        assert_eq!(
            verify_ticket(&m.public(), &more_cpu, &sig),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_ticket(&key(12).public(), &msg, &sig),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn both_nodes_of_a_pair_derive_the_same_secret_and_nobody_else_does() {
        let (a, b, c) = (key(20), key(21), key(22));
        let ab = pair_secret(&a, &b.public());
        assert_eq!(ab, pair_secret(&b, &a.public()));
        assert_ne!(ab, pair_secret(&c, &a.public()));
        assert_ne!(ab, pair_secret(&c, &b.public()));
    }

    #[test]
    fn a_peer_token_is_bound_to_its_pair_direction_and_window() {
        let (a, b, c) = (key(30), key(31), key(32));
        let pair = pair_secret(&a, &b.public());
        let now = Timestamp::from_millis(PEER_TOKEN_WINDOW.as_millis() as u64 * 10 + 5);
        let w = peer_token_window(now);
        let t = peer_token(&pair, "id-a", "id-b", w);
        assert_eq!(peer_token_sender(&t), Some("id-a"));
        assert_eq!(verify_peer_token(&pair, &t, "id-b", now).unwrap(), "id-a");
        let prev = peer_token(&pair, "id-a", "id-b", w - 1);
        assert_eq!(
            verify_peer_token(&pair, &prev, "id-b", now).unwrap(),
            "id-a"
        );
        let old = peer_token(&pair, "id-a", "id-b", w - 2);
        assert_eq!(
            verify_peer_token(&pair, &old, "id-b", now),
            Err(AuthError::Stale)
        );
        // Another recipient (re-addressed), another pair, a forged sender: all refused.
        assert_eq!(
            verify_peer_token(&pair, &t, "id-c", now),
            Err(AuthError::BadSignature)
        );
        let other = pair_secret(&c, &b.public());
        assert_eq!(
            verify_peer_token(&other, &t, "id-b", now),
            Err(AuthError::BadSignature)
        );
        let forged = t.replacen("id-a", "id-c", 1);
        assert_eq!(
            verify_peer_token(&pair, &forged, "id-b", now),
            Err(AuthError::BadSignature)
        );
        assert!(verify_peer_token(&pair, "garbage", "id-b", now).is_err());
    }

    #[test]
    fn a_pair_mac_proves_the_sender_only_to_its_recipient() {
        let (a, b, c) = (key(1), key(2), key(3));
        let now = Timestamp::from_millis(5_000_000);
        let req = RequestTarget::new("POST", "/api/bid?x=1", b"{}");
        let pair_ab = pair_secret(&a, &b.public());
        let header = sign_pair(&pair_ab, "node-a", "node-b", now, nonce(9), &req);
        assert!(header.starts_with("Fogmarket-Pair node-a:node-b:"));

        // b, holding its own key, accepts it as from a.
        let guard_b = Guard::with_pairs("node-b", std::sync::Arc::new(PairKeys::new(b.clone())));
        let a_pub = a.public();
        let sender = guard_b.check(Some(&header), now, &req, |s| {
            (s == "node-a").then_some(a_pub)
        });
        assert_eq!(sender.as_deref(), Ok("node-a"));
        // Once only.
        let again = guard_b.check(Some(&header), now, &req, |_| Some(a_pub));
        assert_eq!(again, Err(AuthError::Replayed));

        // c cannot make a's MAC for b (its pair with b is another secret).
        let pair_cb = pair_secret(&c, &b.public());
        let forged = sign_pair(&pair_cb, "node-a", "node-b", now, nonce(10), &req);
        assert_eq!(
            guard_b.check(Some(&forged), now, &req, |_| Some(a_pub)),
            Err(AuthError::BadSignature)
        );
        // Another request, another recipient, or a guard without a node key: refused.
        let other = RequestTarget::new("POST", "/api/bid?x=2", b"{}");
        let fresh = sign_pair(&pair_ab, "node-a", "node-b", now, nonce(11), &req);
        assert_eq!(
            guard_b.check(Some(&fresh), now, &other, |_| Some(a_pub)),
            Err(AuthError::BadSignature)
        );
        let guard_c = Guard::with_pairs("node-c", std::sync::Arc::new(PairKeys::new(c)));
        assert_eq!(
            guard_c.check(Some(&fresh), now, &req, |_| Some(a_pub)),
            Err(AuthError::WrongRecipient("node-b".into()))
        );
        let marketplace = Guard::new("node-b");
        assert_eq!(
            marketplace.check(Some(&fresh), now, &req, |_| Some(a_pub)),
            Err(AuthError::PairNotAccepted)
        );
    }
}
