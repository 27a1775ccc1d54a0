//! The federation's one HTTP client: the marketplace's calls to nodes, a node's calls to the
//! marketplace and to its peers, and the testbed's reads all go through [`SignedClient`].
//!
//! Every call
//! - is signed by its sender: with the sender's own Ed25519 key for a given recipient
//!   ([`Signer::Member`], see [`model::auth::sign`]), with the enrollment secret for a
//!   registration ([`Signer::Enrollment`]), or not at all ([`Signer::Anonymous`]);
//! - has a timeout, and runs in a client span named after the route whose context travels in
//!   `traceparent`, so the receiver's work joins the caller's trace;
//! - reads the answer up to the client's cap ([`SignedClient::max_answer`]): a peer that
//!   answers more gets [`CallError::TooLarge`] and cannot exhaust the caller's memory.
//!
//! TLS: with [`ClientOptions::tls_ca`] the client trusts that CA (and only it) for `https://`
//! URLs; plain `http://` keeps working for loopback federations.

use bytes::Bytes;
use model::auth::{self, Nonce, RequestTarget, SecretKey};
use model::time::Timestamp;
use reqwest::{Client, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::time::Duration;
use telemetry::reqwest::RequestTracing;
use tracing::Instrument;

/// Default cap on an answer's size (a bid answer carries a whole subtree's bids).
pub const DEFAULT_MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot encode the request: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: StatusCode,
        /// The `message` of a JSON error body, or the body itself, truncated.
        message: String,
    },
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: unreadable answer: {reason}")]
    Decode { url: String, reason: String },
}

impl CallError {
    /// The HTTP status of a non-2xx answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The receiver's considered "no" (HTTP 409).
    pub fn is_refused(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// The peer could not be reached or did not answer in time (as opposed to answering).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CallError::Timeout { .. } | CallError::Transport { .. }
        )
    }
}

/// Who signs a call.
#[derive(Clone)]
pub enum Signer<'a> {
    /// A member (a node, or the marketplace) with its own key, to one recipient.
    Member {
        key: &'a SecretKey,
        sender: &'a str,
        recipient: &'a str,
    },
    /// A fog node to another, with the secret of their pair ([`model::auth::sign_pair`]).
    Pair {
        secret: [u8; 32],
        sender: &'a str,
        recipient: String,
    },
    /// A node that is not yet enrolled, with the enrollment secret, under its name.
    Enrollment { secret: &'a [u8], name: &'a str },
    /// Not signed (health checks, the public client API).
    Anonymous,
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Member {
                sender, recipient, ..
            } => write!(f, "Member({sender} -> {recipient})"),
            Signer::Pair {
                sender, recipient, ..
            } => write!(f, "Pair({sender} -> {recipient})"),
            Signer::Enrollment { name, .. } => write!(f, "Enrollment({name})"),
            Signer::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Signer<'_> {
    /// The `Authorization` header for this request, if signed.
    pub fn header(&self, now: Timestamp, req: &RequestTarget<'_>) -> Option<String> {
        match *self {
            Signer::Pair {
                ref secret,
                sender,
                ref recipient,
            } => Some(auth::sign_pair(
                secret,
                sender,
                recipient,
                now,
                Nonce::random(&mut rand::rng()),
                req,
            )),
            Signer::Member {
                key,
                sender,
                recipient,
            } => Some(auth::sign(
                key,
                sender,
                recipient,
                now,
                Nonce::random(&mut rand::rng()),
                req,
            )),
            Signer::Enrollment { secret, name } => Some(auth::enrollment::sign(
                secret,
                name,
                now,
                req.method,
                req.path_and_query,
                req.body,
            )),
            Signer::Anonymous => None,
        }
    }
}

/// The `Authorization` value of a member's request signed now, with a fresh nonce (what
/// [`Signer::Member`] sends; for callers that build requests themselves).
pub fn member_header(
    key: &SecretKey,
    sender: &str,
    recipient: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    auth::sign(
        key,
        sender,
        recipient,
        Timestamp::now(),
        Nonce::random(&mut rand::rng()),
        &RequestTarget::new(method, path_and_query, body),
    )
}

/// How to build a [`SignedClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Largest answer read, in bytes.
    pub max_answer: usize,
    /// PEM certificate(s) of the CA to trust for `https://` peers; `None` uses no TLS trust
    /// anchors at all (plain HTTP only).
    pub tls_ca: Option<Vec<u8>>,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_answer: DEFAULT_MAX_ANSWER,
            tls_ca: None,
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: usize::MAX,
        }
    }
}

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("tls CA: {0}")]
    Ca(String),
    #[error("http client: {0}")]
    Client(String),
}

/// One call: where to, what, and how long to wait.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: Method,
    /// `http://host:port` (a trailing `/` is fine).
    pub base: &'a str,
    /// The path with its query string; the signature covers both.
    pub path: Cow<'a, str>,
    /// The receiver's route pattern, for the span's name (`/api/accept/{sla_id}`); `None`
    /// derives it from `path` ([`route_pattern`]).
    pub route: Option<&'static str>,
    /// JSON body bytes, if any.
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, base: &'a str, path: impl Into<Cow<'a, str>>) -> Self {
        Self {
            method,
            base,
            path: path.into(),
            route: None,
            body: None,
            timeout: Duration::from_secs(10),
        }
    }
    pub fn get(base: &'a str, path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::GET, base, path)
    }
    pub fn post(base: &'a str, path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::POST, base, path)
    }
    /// The body, as JSON.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self, CallError> {
        self.body = Some(serde_json::to_vec(body)?);
        Ok(self)
    }
    pub fn route(mut self, route: &'static str) -> Self {
        self.route = Some(route);
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    fn url(&self) -> String {
        format!("{}{}", self.base.trim_end_matches('/'), self.path)
    }
}

/// A pooled reqwest client that signs, traces, times out and caps every call.
#[derive(Clone)]
pub struct SignedClient {
    http: Client,
    max_answer: usize,
}

impl Default for SignedClient {
    fn default() -> Self {
        Self::new(&ClientOptions::default()).unwrap_or_else(|_| Self {
            http: Client::new(),
            max_answer: DEFAULT_MAX_ANSWER,
        })
    }
}

impl SignedClient {
    pub fn new(options: &ClientOptions) -> Result<Self, BuildError> {
        let http = builder(options)?
            .build()
            .map_err(|e| BuildError::Client(error_chain(&e)))?;
        Ok(Self {
            http,
            max_answer: options.max_answer,
        })
    }

    /// The underlying reqwest client (same pool and TLS trust), for unsigned streaming uses.
    pub fn http(&self) -> &Client {
        &self.http
    }

    pub fn max_answer(&self) -> usize {
        self.max_answer
    }

    /// Sends `call` signed by `signer`; the raw answer body on 2xx.
    pub async fn send(&self, call: Call<'_>, signer: Signer<'_>) -> Result<Bytes, CallError> {
        let url = call.url();
        let route = match call.route {
            Some(r) => Cow::Borrowed(r),
            None => route_pattern(strip_query(&call.path)),
        };
        let span = telemetry::client_span(call.method.as_str(), &route, Some(&url));
        let result = self
            .send_traced(&call, url, signer, &span)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result
            && !matches!(e, CallError::Status { .. })
        {
            telemetry::record_error(&span, e);
        }
        result
    }

    /// Sends `call` and decodes the JSON answer (an empty body reads as `null`).
    pub async fn call<R: DeserializeOwned>(
        &self,
        call: Call<'_>,
        signer: Signer<'_>,
    ) -> Result<R, CallError> {
        let url = call.url();
        let body = self.send(call, signer).await?;
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| CallError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    async fn send_traced(
        &self,
        call: &Call<'_>,
        url: String,
        signer: Signer<'_>,
        span: &tracing::Span,
    ) -> Result<Bytes, CallError> {
        let body = call.body.as_deref().unwrap_or_default();
        let target = RequestTarget::new(call.method.as_str(), &call.path, body);
        let mut req = self
            .http
            .request(call.method.clone(), &url)
            .timeout(call.timeout)
            .with_trace_context_of(span);
        if let Some(header) = signer.header(Timestamp::now(), &target) {
            req = req.header(reqwest::header::AUTHORIZATION, header);
        }
        if let Some(body) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let after = call.timeout;
        let map_err = |e: reqwest::Error| transport_error(&url, e, after);
        let resp = req.send().await.map_err(map_err)?;
        let status = resp.status();
        telemetry::record_status(span, status.as_u16());
        let buf = read_capped(resp, self.max_answer)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(limit) => CallError::TooLarge {
                    url: url.clone(),
                    limit,
                },
                ReadError::Transport(e) => map_err(e),
            })?;
        if !status.is_success() {
            return Err(CallError::Status {
                url,
                status,
                message: error_message(&buf),
            });
        }
        Ok(buf)
    }
}

/// A reqwest client builder with the federation's pool and TLS settings, for callers that
/// need a plain client (load generators, streaming proxies) with the same trust.
pub fn builder(options: &ClientOptions) -> Result<reqwest::ClientBuilder, BuildError> {
    let mut b = Client::builder()
        .pool_idle_timeout(options.pool_idle_timeout)
        .pool_max_idle_per_host(options.pool_max_idle_per_host)
        .tcp_nodelay(true);
    if let Some(pem) = &options.tls_ca {
        b = tls::trust(b, pem)?;
    }
    Ok(b)
}

pub mod tls {
    //! TLS of the federation's servers and clients: one `[tls]` table (or `--tls-*` flags)
    //! names a certificate chain and key to serve with and a CA to trust as a client.
    use super::BuildError;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use serde::{Deserialize, Serialize};
    use std::path::PathBuf;

    /// `[tls]`: `cert` and `key` (PEM) turn TLS on for this member's server; `ca` (PEM) is
    /// the authority it trusts when calling `https://` members. All optional; none = plain
    /// HTTP (fine on loopback).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TlsFiles {
        #[serde(default)]
        pub cert: Option<PathBuf>,
        #[serde(default)]
        pub key: Option<PathBuf>,
        #[serde(default)]
        pub ca: Option<PathBuf>,
    }

    /// Why TLS cannot be set up; names the setting and the file.
    #[derive(Debug, thiserror::Error)]
    pub enum TlsError {
        #[error("tls.{field}: {path}: {reason}")]
        File {
            field: &'static str,
            path: String,
            reason: String,
        },
        #[error("tls: `cert` and `key` go together; only `{0}` is set")]
        Half(&'static str),
        #[error("tls: {0}")]
        Config(String),
    }

    impl TlsFiles {
        /// Whether this member serves over TLS.
        pub fn serves(&self) -> bool {
            self.cert.is_some() && self.key.is_some()
        }

        /// `http` or `https`, as this member's own URL should say.
        pub fn scheme(&self) -> &'static str {
            if self.serves() { "https" } else { "http" }
        }

        /// Client options trusting `ca` (when set), with `max_answer` as the answer cap. A CA
        /// file that cannot be read or holds no certificate is an error naming it.
        pub fn client_options(&self, max_answer: usize) -> Result<super::ClientOptions, TlsError> {
            Ok(super::ClientOptions {
                max_answer,
                tls_ca: self.ca_pem()?,
                ..super::ClientOptions::default()
            })
        }

        /// The PEM bytes of `ca`, checked to hold at least one certificate.
        pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, TlsError> {
            let Some(path) = &self.ca else {
                return Ok(None);
            };
            let file_err = |reason: String| TlsError::File {
                field: "ca",
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(file_err("no certificate in the PEM file".into()));
            }
            Ok(Some(pem))
        }

        /// Checks every file that is set (readable, PEM, a certificate chain matching its
        /// key), so a bad file stops a member at start rather than at its first call.
        pub fn check(&self) -> Result<(), TlsError> {
            self.ca_pem()?;
            self.server_config()?;
            Ok(())
        }

        /// The rustls server configuration, when `cert` and `key` are set.
        pub fn server_config(&self) -> Result<Option<rustls::ServerConfig>, TlsError> {
            let (cert, key) = match (&self.cert, &self.key) {
                (None, None) => return Ok(None),
                (Some(_), None) => return Err(TlsError::Half("cert")),
                (None, Some(_)) => return Err(TlsError::Half("key")),
                (Some(c), Some(k)) => (c, k),
            };
            let file_err = |field, path: &PathBuf, reason: String| TlsError::File {
                field,
                path: path.display().to_string(),
                reason,
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| file_err("cert", cert, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err("cert", cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(file_err(
                    "cert",
                    cert,
                    "no certificate in the PEM file".into(),
                ));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_err("key", key, e.to_string()))?;
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, key_der)
                .map(Some)
                .map_err(|e| TlsError::Config(format!("cert and key do not make a server: {e}")))
        }
    }

    /// A rustls client configuration for clients outside reqwest (the fog node's data-plane
    /// forwards): trusts only the CA in `ca_pem` when given, else the platform's roots (as
    /// reqwest does). No ALPN protocols: the connector using it picks them.
    pub fn client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, BuildError> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        let config = match ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| BuildError::Ca(e.to_string()))?;
                    roots.add(cert).map_err(|e| BuildError::Ca(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(BuildError::Ca("no certificate in the PEM file".into()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| BuildError::Client(e.to_string()))?
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }

    pub(super) fn trust(
        b: reqwest::ClientBuilder,
        pem: &[u8],
    ) -> Result<reqwest::ClientBuilder, BuildError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| BuildError::Ca(super::error_chain(&e)))?;
        if certs.is_empty() {
            return Err(BuildError::Ca("no certificate in the PEM file".into()));
        }
        Ok(b.tls_certs_only(certs))
    }
}

/// Why [`read_capped`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads `resp`'s body up to `limit` bytes; refuses (without reading on) past it, also when
/// `Content-Length` already says so.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads `resp` up to `limit` bytes and decodes it as JSON.
pub async fn read_json<R: DeserializeOwned>(
    resp: reqwest::Response,
    limit: usize,
) -> Result<R, String> {
    let body = read_capped(resp, limit).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn transport_error(url: &str, e: reqwest::Error, after: Duration) -> CallError {
    if e.is_timeout() {
        CallError::Timeout {
            url: url.to_string(),
            after,
        }
    } else {
        CallError::Transport {
            url: url.to_string(),
            reason: error_chain(&e),
        }
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The `message` of a JSON error body, or the body itself (truncated).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(|m| m.as_str())
    {
        return m.chars().take(2000).collect();
    }
    String::from_utf8_lossy(body).chars().take(2000).collect()
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// `path` as a route pattern for span names: UUID segments (node and SLA ids) become `{id}`,
/// so `/api/heartbeat/<uuid>` is `/api/heartbeat/{id}`.
pub fn route_pattern(path: &str) -> Cow<'_, str> {
    if !path.split('/').any(|s| uuid::Uuid::parse_str(s).is_ok()) {
        return Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| {
            if uuid::Uuid::parse_str(s).is_ok() {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    Cow::Owned(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_become_placeholders() {
        assert_eq!(route_pattern("/api/bid"), "/api/bid");
        assert_eq!(
            route_pattern("/api/heartbeat/7d6c1a8e-0f4b-4a43-9a55-1f0c2b8e9d10"),
            "/api/heartbeat/{id}"
        );
    }

    #[test]
    fn bad_tls_files_are_errors_naming_the_setting_and_the_file() {
        use tls::TlsFiles;
        let dir = std::env::temp_dir().join(format!("signed-http-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let missing = dir.join("missing.pem");
        let ca = TlsFiles {
            ca: Some(garbage.clone()),
            ..TlsFiles::default()
        };
        let e = ca.check().unwrap_err().to_string();
        assert!(e.starts_with("tls.ca: "), "{e}");
        assert!(e.contains("garbage.pem"), "{e}");
        let cert = TlsFiles {
            cert: Some(missing.clone()),
            key: Some(garbage.clone()),
            ca: None,
        };
        let e = cert.check().unwrap_err().to_string();
        assert!(e.starts_with("tls.cert: "), "{e}");
        assert!(e.contains("missing.pem"), "{e}");
        let half = TlsFiles {
            key: Some(garbage),
            ..TlsFiles::default()
        };
        assert!(half.check().unwrap_err().to_string().contains("`key`"));
        assert!(TlsFiles::default().check().is_ok());
        assert_eq!(TlsFiles::default().scheme(), "http");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_client_config_needs_a_certificate_in_its_ca() {
        assert!(tls::client_config(Some(b"nothing here")).is_err());
        assert!(tls::client_config(None).is_ok());
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(error_message(br#"{"message":"no room"}"#), "no room");
        assert_eq!(error_message(b"plain"), "plain");
    }
}
