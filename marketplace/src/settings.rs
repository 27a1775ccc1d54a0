//! Marketplace configuration, filled by the binary from flags/env or by tests.

use crate::clients::{ClientAuth, ClientLimits};
use model::auction::AuctionRule;
use std::net::SocketAddr;
use std::time::Duration;

/// The well-known enrollment secret allowed only with `--dev`.
pub const DEV_ENROLLMENT_SECRET: &str = "dev-secret";

/// Everything [`crate::Application::build`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to bind; port 0 picks a free port (read it back with `Application::port`).
    pub listen: SocketAddr,
    /// `sqlite://file.db?mode=rwc` (default, zero set-up) or `postgres://…`.
    pub database_url: String,
    /// Secret nodes sign `POST /api/register` with. Never empty: enrollment is the only gate
    /// into the federation.
    pub enrollment_secret: String,
    /// How winners are chosen and paid.
    pub auction_rule: AuctionRule,
    /// Deadline of an auction: sent to the target node as `timeout_ms`; the HTTP call itself
    /// gives up slightly later, so a dead or slow target cannot block the API.
    pub auction_timeout: Duration,
    /// Heartbeat interval handed to nodes; a node silent for 3 intervals is marked dead.
    pub heartbeat_interval: Duration,
    /// How often placements whose lifetime ended are marked `finished`.
    pub expiry_interval: Duration,
    /// Largest accepted request body (bigger ones get 413).
    pub max_body_bytes: usize,
    /// How long SLAs whose placements are all over (finished, cancelled, failed, or never
    /// placed) are kept with their auctions and bids before they are deleted.
    pub history_retention: Duration,
    /// How long one `GET /api/dashboard` aggregate is served before it is rebuilt (which asks
    /// every node for its state again).
    pub dashboard_cache_ttl: Duration,
    /// Deadline of each dashboard call to a node (`/api/state`, `/api/offload`).
    pub dashboard_node_timeout: Duration,
    /// Whether the client API requires `Authorization: Bearer` tokens: `auto` (the default)
    /// only when listening on an address that is not loopback.
    pub client_auth: ClientAuth,
    /// What one client may ask for (rate, auctions in flight, live placements).
    pub client_limits: ClientLimits,
    /// TLS: with `cert` and `key` the API is served over HTTPS; `ca` is the authority trusted
    /// when calling `https://` nodes. None set: plain HTTP (fine on loopback).
    pub tls: signed_http::tls::TlsFiles,
}

impl Settings {
    /// Defaults of the binary, with the given database and secret.
    pub fn new(database_url: impl Into<String>, enrollment_secret: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            database_url: database_url.into(),
            enrollment_secret: enrollment_secret.into(),
            auction_rule: AuctionRule::Vickrey,
            auction_timeout: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(1000),
            expiry_interval: Duration::from_secs(1),
            max_body_bytes: 256 * 1024,
            history_retention: Duration::from_secs(7 * 24 * 3600),
            dashboard_cache_ttl: Duration::from_secs(1),
            dashboard_node_timeout: Duration::from_millis(500),
            client_auth: ClientAuth::Auto,
            client_limits: ClientLimits::default(),
            tls: signed_http::tls::TlsFiles::default(),
        }
    }

    /// For in-process tests: loopback, port 0, secret `test-secret`, a short auction deadline,
    /// the client API open (no tokens).
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auction_timeout: Duration::from_millis(1000),
            client_auth: ClientAuth::None,
            ..Self::new(database_url, "test-secret")
        }
    }

    /// How long the HTTP call to a node may take beyond the deadline given to the node: the
    /// node answers at its deadline with whatever its subtree returned, plus transfer time.
    pub fn call_margin(&self) -> Duration {
        (self.auction_timeout / 10).clamp(Duration::from_millis(100), Duration::from_millis(500))
    }
}
