//! The HTTP clients for a federation on loopback (the launcher's, the tests' and the
//! benchmarks'): no proxy, bounded timeouts, and the run's CA trusted when it serves HTTPS.

use super::error::{LaunchError, Result};
use std::time::Duration;

/// Largest answer the launcher reads from the marketplace or a node.
pub const MAX_ANSWER: usize = signed_http::DEFAULT_MAX_ANSWER;

/// An HTTP client for loopback: no proxy (a developer's `HTTP_PROXY` must not capture
/// 127.0.0.1), bounded timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        // Building only fails on a broken TLS backend; we build without TLS.
        .unwrap_or_default()
}

/// [`http_client`] that also trusts `ca_pem` (and only it) for `https://` URLs: the client
/// of a federation started with [`LaunchOptions::tls`](super::LaunchOptions::tls).
pub fn http_client_trusting(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let options = signed_http::ClientOptions {
        tls_ca: ca_pem.map(<[u8]>::to_vec),
        ..signed_http::ClientOptions::default()
    };
    let builder = signed_http::builder(&options).map_err(|e| LaunchError::Tls(e.to_string()))?;
    builder
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LaunchError::Tls(signed_http::error_chain(&e)))
}
