//! Clients of the client API (`PUT /api/function` and the reads and cancels that follow): who
//! may place functions, whose placements are whose, and how much one client may ask for.
//!
//! - **Tokens.** An operator creates a client with `marketplace token create --client NAME`
//!   ([`create_token`]); the token (`fmc_` + 64 hex digits, 256 random bits) is shown once and
//!   only its SHA-256 is stored ([`token_hash`]). Clients send it as
//!   `Authorization: Bearer <token>` ([`bearer_token`]). A revoked token is refused; creating
//!   a token again for the same name (or `--rotate`) keeps the client's id, so its placements
//!   stay its own.
//! - **Mode.** [`ClientAuth`] (`auto | token | none`) resolves against the listen address to
//!   a [`ClientAccess`]: open (no tokens, no owners: the API as it always was) or tokens
//!   required. `auto` is open only on a loopback address.
//! - **Limits.** [`ClientGate`] applies [`ClientLimits`] per client: a token bucket on
//!   placement requests (governor's GCRA) and at most so many auctions in flight at once; the
//!   service adds the cap on live placements (counted in the database). A client is its token
//!   in token mode and its IP address in open mode; in open mode, requests from a loopback
//!   address are not limited: they come from the marketplace's own machine (the operator's
//!   tools, GIRAFF's driver, `just bench auction`).

use crate::repository::{ClientRecord, RepoError, Repository};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use model::Timestamp;
use parking_lot::Mutex;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tabled::settings::object::Columns;
use tabled::settings::{Padding, Style};

/// What every token starts with, so a leaked one is recognisable (and greppable).
pub const TOKEN_PREFIX: &str = "fmc_";
/// Random bytes in a token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Characters of a token kept in clear to tell tokens apart in listings: the prefix and 8 hex
/// digits (32 of the 256 bits).
const SHOWN_PREFIX_LEN: usize = TOKEN_PREFIX.len() + 8;
/// Longest client name.
pub const MAX_CLIENT_NAME_LEN: usize = 128;

// -- identities -------------------------------------------------------------------------------

pub use crate::repository::LimitKey;
pub use model::ids::ClientId;

/// A client's name: 1 to [`MAX_CLIENT_NAME_LEN`] characters of `[A-Za-z0-9._-]`, unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientName(String);

impl ClientName {
    pub fn parse(name: &str) -> Result<ClientName, ClientError> {
        let bad = |why: &str| ClientError::InvalidName(format!("client name `{name}` {why}"));
        if name.is_empty() {
            return Err(ClientError::InvalidName(
                "client name must not be empty".into(),
            ));
        }
        if name.len() > MAX_CLIENT_NAME_LEN {
            return Err(bad(&format!(
                "is longer than {MAX_CLIENT_NAME_LEN} characters"
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(bad(&format!(
                "has `{}`: only letters, digits, `.`, `_` and `-` are allowed",
                c.escape_default()
            )));
        }
        Ok(ClientName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// -- tokens -----------------------------------------------------------------------------------

/// A fresh client token. Shown to the operator once; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// `fmc_` + 64 hex digits from the operating system's CSPRNG (via `rand`'s thread RNG).
    pub fn generate() -> ApiToken {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        ApiToken(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
    }

    /// The token itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database keeps: the SHA-256 of the token.
    pub fn hash(&self) -> String {
        token_hash(&self.0)
    }

    /// The first characters, to tell tokens apart in listings (`fmc_1a2b3c4d`).
    pub fn shown_prefix(&self) -> String {
        self.0.chars().take(SHOWN_PREFIX_LEN).collect()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}…)", self.shown_prefix())
    }
}

/// Hex SHA-256 of a presented token: what it is looked up by. A token has 256 random bits, so
/// a plain hash is enough (no salt or slow hash needed: there is nothing to guess).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, TokenError> {
    let header = authorization.ok_or(TokenError::Missing)?.trim();
    let (scheme, token) = header.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 256 || token.contains(char::is_whitespace) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Why a request to the client API is not authenticated (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "this marketplace requires a client token: send `Authorization: Bearer <token>` \
         (an operator creates one with `marketplace token create --client <name>`)"
    )]
    Missing,
    #[error(
        "the Authorization header must be `Bearer <token>` (a client token from \
         `marketplace token create`)"
    )]
    NotBearer,
    #[error("the token in the Authorization header is malformed (expected `Bearer fmc_…`)")]
    Malformed,
    #[error("the token in the Authorization header is not known to this marketplace")]
    Unknown,
    #[error(
        "the token in the Authorization header was revoked (client `{0}`); ask the operator for a new one"
    )]
    Revoked(String),
}

// -- operations behind `marketplace token …` --------------------------------------------------

/// Errors of the token commands.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    InvalidName(String),
    #[error(
        "client `{0}` already has a live token; `--rotate` replaces it (the old one stops working)"
    )]
    HasToken(String),
    #[error("no client {0}")]
    NotFound(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A token just created, with its client.
#[derive(Debug)]
pub struct NewToken {
    pub client: ClientRecord,
    pub token: ApiToken,
    /// `true` when the client existed (revoked, or `rotate`): same id, new token.
    pub replaced: bool,
}

/// Creates client `name` with a new token, or gives an existing client a new token when its
/// token was revoked or `rotate` is set (the old token stops working at once). The client
/// keeps its id, so its placements stay its own.
pub async fn create_token(
    repo: &Repository,
    name: &ClientName,
    rotate: bool,
    now: Timestamp,
) -> Result<NewToken, ClientError> {
    let token = ApiToken::generate();
    let existing = repo.client_by_name(name.as_str()).await?;
    match existing {
        None => {
            let client = ClientRecord {
                id: ClientId::new(),
                name: name.as_str().to_string(),
                token_prefix: token.shown_prefix(),
                created_at: now,
                token_created_at: now,
                revoked_at: None,
            };
            repo.insert_client(&client, &token.hash())
                .await
                .map_err(|e| match e {
                    // Made by a concurrent `token create` for the same name.
                    RepoError::Conflict(_) => ClientError::HasToken(name.to_string()),
                    e => ClientError::Repo(e),
                })?;
            Ok(NewToken {
                client,
                token,
                replaced: false,
            })
        }
        Some(c) if c.revoked_at.is_none() && !rotate => {
            Err(ClientError::HasToken(name.to_string()))
        }
        Some(c) => {
            repo.replace_client_token(c.id, &token.hash(), &token.shown_prefix(), now)
                .await?;
            let client = repo
                .client_by_id(c.id)
                .await?
                .ok_or_else(|| ClientError::NotFound(format!("`{name}`")))?;
            Ok(NewToken {
                client,
                token,
                replaced: true,
            })
        }
    }
}

/// Which client a command is about: by name, or by id.
#[derive(Debug, Clone)]
pub enum ClientSelector {
    Name(ClientName),
    Id(ClientId),
}

/// Revokes a client's token: from now on its requests are refused with 401. Its placements
/// stay (they end with their lifetime, or an operator cancels them). Revoking twice is not an
/// error; the first revocation time is kept.
pub async fn revoke(
    repo: &Repository,
    which: &ClientSelector,
    now: Timestamp,
) -> Result<ClientRecord, ClientError> {
    let client = match which {
        ClientSelector::Name(n) => repo.client_by_name(n.as_str()).await?,
        ClientSelector::Id(id) => repo.client_by_id(*id).await?,
    };
    let client = client.ok_or_else(|| {
        ClientError::NotFound(match which {
            ClientSelector::Name(n) => format!("named `{n}`"),
            ClientSelector::Id(id) => format!("with id {id}"),
        })
    })?;
    repo.revoke_client(client.id, now).await?;
    repo.client_by_id(client.id)
        .await?
        .ok_or_else(|| ClientError::NotFound(format!("with id {}", client.id)))
}

/// The clients as a table for `marketplace token list`: name, id, token prefix, when the
/// token was created, and whether it is revoked. Never the token.
///
/// Plain columns, left-aligned, two spaces apart, without borders or trailing spaces, a
/// header line first.
pub fn client_table(clients: &[ClientRecord]) -> String {
    let mut builder = tabled::builder::Builder::default();
    builder.push_record(["client", "id", "token", "created", "status"]);
    for c in clients {
        builder.push_record([
            c.name.clone(),
            c.id.to_string(),
            format!("{}…", c.token_prefix),
            format_time(c.token_created_at),
            match c.revoked_at {
                None => "active".to_string(),
                Some(t) => format!("revoked {}", format_time(t)),
            },
        ]);
    }
    let mut table = builder.build();
    table
        .with(Style::empty())
        .with(Padding::new(0, 2, 0, 0))
        .modify(Columns::last(), Padding::zero());
    table
        .to_string()
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// `2026-01-31T12:00:00Z`.
pub fn format_time(t: Timestamp) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(t.as_millis());
    humantime::format_rfc3339_seconds(time).to_string()
}

// -- mode -------------------------------------------------------------------------------------

/// Whether the client API requires tokens (`--client-auth`, `FOGMARKET_CLIENT_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Open on a loopback listen address (127.0.0.0/8, ::1), tokens required on any other.
    #[default]
    Auto,
    /// Tokens always required.
    Token,
    /// Open on any address: the operator's choice (e.g. a closed network).
    None,
}

impl ClientAuth {
    /// The mode in force when listening on `listen`.
    pub fn resolve(self, listen: IpAddr) -> ClientAccess {
        match self {
            ClientAuth::Token => ClientAccess::Tokens(TokensBecause::Configured),
            ClientAuth::None => ClientAccess::Open(OpenBecause::Configured),
            ClientAuth::Auto if is_loopback(listen) => ClientAccess::Open(OpenBecause::Loopback),
            ClientAuth::Auto => ClientAccess::Tokens(TokensBecause::NotLoopback(listen)),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::Auto => "auto",
            ClientAuth::Token => "token",
            ClientAuth::None => "none",
        })
    }
}

/// `--client-auth` was none of `auto`, `token`, `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown client auth mode `{0}`: expected auto, token or none")]
pub struct UnknownClientAuth(String);

impl FromStr for ClientAuth {
    type Err = UnknownClientAuth;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ClientAuth::Auto),
            "token" | "tokens" => Ok(ClientAuth::Token),
            "none" | "open" => Ok(ClientAuth::None),
            _ => Err(UnknownClientAuth(s.to_string())),
        }
    }
}

/// 127.0.0.0/8, ::1, and IPv4-mapped loopback (`::ffff:127.0.0.1`).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The client API's mode in force, resolved from [`ClientAuth`] and the listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAccess {
    /// No tokens; placements have no owner; anyone who reaches the API may read and cancel
    /// any placement (the API as it was before tokens).
    Open(OpenBecause),
    /// Every client API request needs a valid token; a client sees only its own placements.
    Tokens(TokensBecause),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenBecause {
    /// `auto` on a loopback listen address.
    Loopback,
    /// `--client-auth none`.
    Configured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensBecause {
    /// `auto` on a listen address that is not loopback.
    NotLoopback(IpAddr),
    /// `--client-auth token`.
    Configured,
}

impl ClientAccess {
    pub fn requires_tokens(self) -> bool {
        matches!(self, ClientAccess::Tokens(_))
    }
}

impl fmt::Display for ClientAccess {
    /// What the marketplace prints at start, after `client API: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAccess::Open(OpenBecause::Loopback) => f.write_str(
                "open (loopback listen address; set --client-auth token to require tokens)",
            ),
            ClientAccess::Open(OpenBecause::Configured) => f.write_str(
                "open on every address (--client-auth none): anyone who reaches this port may \
                 place, read and cancel any function",
            ),
            ClientAccess::Tokens(TokensBecause::NotLoopback(ip)) => write!(
                f,
                "tokens required (listen address {ip} is not loopback): clients send \
                 `Authorization: Bearer <token>`; create one with `marketplace token create --client <name>`"
            ),
            ClientAccess::Tokens(TokensBecause::Configured) => f.write_str(
                "tokens required (--client-auth token): clients send `Authorization: Bearer \
                 <token>`; create one with `marketplace token create --client <name>`",
            ),
        }
    }
}

// -- limits -----------------------------------------------------------------------------------

/// Placement requests per second allowed to one client on average: finite, above 0, at most
/// one million.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct PlacementRate(f64);

impl PlacementRate {
    pub fn per_second(rate: f64) -> Option<PlacementRate> {
        (rate.is_finite() && rate > 0.0 && rate <= 1e6).then_some(PlacementRate(rate))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// One request's worth of refill time.
    fn period(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

impl fmt::Display for PlacementRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: expected a number of requests per second above 0 (e.g. 20 or 0.5)")]
pub struct BadRate(String);

impl FromStr for PlacementRate {
    type Err = BadRate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<f64>()
            .ok()
            .and_then(PlacementRate::per_second)
            .ok_or_else(|| BadRate(s.to_string()))
    }
}

/// How much one client may ask of the federation. Applied per client token in token mode and
/// per IP address in open mode (where loopback addresses are not limited).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    /// Sustained placement requests (`PUT /api/function`) per second (`--client-rate`).
    pub placement_rate: PlacementRate,
    /// Placement requests allowed at once above the rate, after a quiet spell
    /// (`--client-burst`).
    pub placement_burst: NonZeroU32,
    /// Auctions running at once: each makes every feasible node hold resources until it
    /// settles (`--client-max-auctions`).
    pub max_auctions_in_flight: NonZeroU32,
    /// Placements not over yet (reserved, provisioning or live), each a reservation on a node
    /// for the SLA's lifetime (`--client-max-placements`).
    pub max_live_placements: NonZeroU64,
}

impl Default for ClientLimits {
    /// 20 placements/s with bursts of 40, 8 auctions in flight, 1000 live placements.
    fn default() -> Self {
        Self {
            placement_rate: PlacementRate(20.0),
            placement_burst: NonZeroU32::new(40).unwrap_or(NonZeroU32::MIN),
            max_auctions_in_flight: NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN),
            max_live_placements: NonZeroU64::new(1000).unwrap_or(NonZeroU64::MIN),
        }
    }
}

impl fmt::Display for ClientLimits {
    /// `20 placements/s (bursts of 40), 8 auctions in flight, 1000 live placements per client`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} placements/s (bursts of {}), {} auctions in flight, {} live placements per client",
            self.placement_rate,
            self.placement_burst,
            self.max_auctions_in_flight,
            self.max_live_placements
        )
    }
}

/// The caller of a client API request, as authenticated by the service.
#[derive(Debug, Clone)]
pub struct Caller {
    client: Option<ClientRecord>,
    peer: Option<IpAddr>,
    limit_key: Option<LimitKey>,
}

impl Caller {
    /// The authenticated client (token mode); `None` in open mode.
    pub fn client(&self) -> Option<&ClientRecord> {
        self.client.as_ref()
    }

    /// The owner recorded on what this caller places (`None` in open mode).
    pub fn owner(&self) -> Option<ClientId> {
        self.client.as_ref().map(|c| c.id)
    }

    /// The address the request came from.
    pub fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    /// What this caller's limits are counted against; `None`: not limited (open mode, from
    /// loopback).
    pub fn limit_key(&self) -> Option<LimitKey> {
        self.limit_key
    }

    /// Whether this caller may see a placement owned by `owner`: always in open mode, only
    /// its own in token mode.
    pub fn may_access(&self, owner: Option<ClientId>) -> bool {
        match &self.client {
            None => true,
            Some(c) => owner == Some(c.id),
        }
    }
}

/// Why [`ClientGate::authenticate`] refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// No valid token (401).
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Why a request went over a limit (429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The placement token bucket is empty; the next request conforms after `retry_after`.
    Rate {
        retry_after: Duration,
        rate: String,
        burst: u32,
    },
    /// The client already has `max` auctions running.
    AuctionsInFlight { max: u32 },
    /// The client's live placements plus this request's would exceed `max`.
    LivePlacements { live: u64, wanted: u64, max: u64 },
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitExceeded::Rate {
                retry_after,
                rate,
                burst,
            } => write!(
                f,
                "placement rate limit: at most {rate} placement requests per second per client \
                 (bursts of {burst}); retry in {} s",
                retry_after_secs(*retry_after)
            ),
            LimitExceeded::AuctionsInFlight { max } => write!(
                f,
                "auctions-in-flight limit: at most {max} auctions at once per client; \
                 retry when one of yours has settled"
            ),
            LimitExceeded::LivePlacements { live, wanted, max } => write!(
                f,
                "live-placements limit: at most {max} placements not over yet per client; \
                 you hold {live} and this SLA needs {wanted}; cancel one or wait until one ends"
            ),
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// How often the rate limiter forgets clients whose bucket is full again.
const PRUNE_EVERY_CHECKS: u64 = 4096;

/// The client API's gate: the mode in force and the per-client limits held in memory (the
/// token bucket and the auctions in flight). One per marketplace, shared by every request.
pub struct ClientGate {
    access: ClientAccess,
    limits: ClientLimits,
    bucket: DefaultKeyedRateLimiter<LimitKey>,
    in_flight: Mutex<HashMap<LimitKey, u32>>,
    checks: AtomicU64,
}

impl fmt::Debug for ClientGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientGate")
            .field("access", &self.access)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ClientGate {
    pub fn new(access: ClientAccess, limits: ClientLimits) -> Self {
        let quota = Quota::with_period(limits.placement_rate.period())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(limits.placement_burst);
        Self {
            access,
            bucket: DefaultKeyedRateLimiter::keyed(quota),
            limits,
            in_flight: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }

    pub fn access(&self) -> ClientAccess {
        self.access
    }

    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// The caller of a request: in token mode the client whose token it carries (looked up
    /// by the token's hash), in open mode nobody (an Authorization header is ignored, as
    /// before tokens existed).
    pub async fn authenticate(
        &self,
        repo: &Repository,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Caller, AuthenticateError> {
        // `::ffff:192.0.2.7` and `192.0.2.7` are one client.
        let peer = peer.map(|ip| ip.to_canonical());
        if !self.access.requires_tokens() {
            let limit_key = peer.filter(|ip| !is_loopback(*ip)).map(LimitKey::Addr);
            return Ok(Caller {
                client: None,
                peer,
                limit_key,
            });
        }
        let token = bearer_token(authorization)?;
        let client = repo
            .client_by_token_hash(&token_hash(token))
            .await?
            .ok_or(TokenError::Unknown)?;
        if client.revoked_at.is_some() {
            return Err(TokenError::Revoked(client.name).into());
        }
        Ok(Caller {
            limit_key: Some(LimitKey::Client(client.id)),
            client: Some(client),
            peer,
        })
    }

    /// Takes one placement request from `key`'s token bucket.
    pub fn check_rate(&self, key: LimitKey) -> Result<(), LimitExceeded> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY_CHECKS
            == PRUNE_EVERY_CHECKS - 1
        {
            self.bucket.retain_recent();
            self.bucket.shrink_to_fit();
        }
        self.bucket.check_key(&key).map_err(|not_until| {
            let now = self.bucket.clock().now();
            LimitExceeded::Rate {
                retry_after: not_until.wait_time_from(now),
                rate: self.limits.placement_rate.to_string(),
                burst: self.limits.placement_burst.get(),
            }
        })
    }

    /// Counts one more auction in flight for `key` until the returned slot is dropped, or
    /// refuses when `key` already has the maximum.
    pub fn start_auction(&self, key: LimitKey) -> Result<AuctionSlot<'_>, LimitExceeded> {
        let max = self.limits.max_auctions_in_flight.get();
        let mut in_flight = self.in_flight.lock();
        let n = in_flight.entry(key).or_insert(0);
        if *n >= max {
            return Err(LimitExceeded::AuctionsInFlight { max });
        }
        *n += 1;
        Ok(AuctionSlot { gate: self, key })
    }

    /// Auctions in flight for `key` right now.
    pub fn auctions_in_flight(&self, key: LimitKey) -> u32 {
        self.in_flight.lock().get(&key).copied().unwrap_or(0)
    }

    /// Refuses when `live` placements plus `wanted` more would exceed the limit.
    pub fn check_live(&self, live: u64, wanted: u64) -> Result<(), LimitExceeded> {
        let max = self.limits.max_live_placements.get();
        if live.saturating_add(wanted) > max {
            return Err(LimitExceeded::LivePlacements { live, wanted, max });
        }
        Ok(())
    }
}

/// One auction in flight for a client; dropping it (whichever way the auction ended) frees
/// the slot.
pub struct AuctionSlot<'a> {
    gate: &'a ClientGate,
    key: LimitKey,
}

impl Drop for AuctionSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.gate.in_flight.lock();
        if let Some(n) = in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_table_has_plain_columns_two_spaces_apart() {
        let id = ClientId::new();
        let client = |name: &str, revoked_at| ClientRecord {
            id,
            name: name.into(),
            token_prefix: "fmc_1a2b3c4d".into(),
            created_at: Timestamp::from_millis(0),
            token_created_at: Timestamp::from_millis(1_785_499_200_000),
            revoked_at,
        };
        let table = client_table(&[
            client("alice", None),
            client("bob", Some(Timestamp::from_millis(1_785_502_800_000))),
        ]);
        let pad = " ".repeat(id.to_string().len() - 2);
        assert_eq!(
            table,
            format!(
                "client  id{pad}  token          created               status\n\
                 alice   {id}  fmc_1a2b3c4d…  2026-07-31T12:00:00Z  active\n\
                 bob     {id}  fmc_1a2b3c4d…  2026-07-31T12:00:00Z  revoked 2026-07-31T13:00:00Z\n"
            )
        );
        assert_eq!(client_table(&[]), "client  id  token  created  status\n");
    }

    #[test]
    fn client_names_are_short_and_plain() {
        assert!(ClientName::parse("alice").is_ok());
        assert!(ClientName::parse("team-7.ci_bot").is_ok());
        assert!(ClientName::parse(&"a".repeat(MAX_CLIENT_NAME_LEN)).is_ok());
        for bad in ["", "a b", "ünï", "x/y", "semi;colon", "tab\t"] {
            assert!(ClientName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ClientName::parse(&"a".repeat(MAX_CLIENT_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn tokens_are_256_random_bits_with_a_recognisable_prefix() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(a.hash(), token_hash(a.expose()));
        assert_eq!(a.hash().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.expose().starts_with(&a.shown_prefix()));
    }

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer_token(Some("Bearer fmc_ab")), Ok("fmc_ab"));
        assert_eq!(bearer_token(Some("bearer  fmc_ab ")), Ok("fmc_ab"));
        assert_eq!(bearer_token(None), Err(TokenError::Missing));
        assert_eq!(bearer_token(Some("Basic eDp5")), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(Some("fmc_ab")), Err(TokenError::NotBearer));
        assert_eq!(bearer_token(Some("Bearer a b")), Err(TokenError::Malformed));
        assert!(TokenError::Missing.to_string().contains("Authorization"));
    }

    #[test]
    fn rates_must_be_positive_and_finite() {
        assert_eq!("20".parse::<PlacementRate>().map(|r| r.get()), Ok(20.0));
        assert_eq!("0.5".parse::<PlacementRate>().map(|r| r.get()), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert!(bad.parse::<PlacementRate>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn auction_slots_are_counted_per_client_and_freed_on_drop() {
        let limits = ClientLimits {
            max_auctions_in_flight: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            ..ClientLimits::default()
        };
        let gate = ClientGate::new(ClientAccess::Tokens(TokensBecause::Configured), limits);
        let (a, b) = (
            LimitKey::Client(ClientId::new()),
            LimitKey::Client(ClientId::new()),
        );
        let first = gate.start_auction(a).expect("first");
        let _second = gate.start_auction(a).expect("second");
        assert_eq!(
            gate.start_auction(a).err(),
            Some(LimitExceeded::AuctionsInFlight { max: 2 })
        );
        assert!(
            gate.start_auction(b).is_ok(),
            "another client has its own slots"
        );
        drop(first);
        assert_eq!(gate.auctions_in_flight(a), 1);
        assert!(gate.start_auction(a).is_ok());
    }
}
