//! TLS wiring of a run ([`LaunchOptions::tls`](super::LaunchOptions::tls)): the run's CA
//! ([`crate::tls::RunCa`]), each member's certificate files as the marketplace's `--tls-*`
//! flags or a node's `[tls]`, the URL scheme, and the launcher's client that trusts the CA.

use super::client::http_client_trusting;
use super::error::{LaunchError, Result};
use crate::tls::RunCa;
use signed_http::tls::TlsFiles;
use std::path::{Path, PathBuf};

/// The TLS of one run: a CA in `<run dir>/tls/`, or none (plain HTTP).
pub(super) struct RunTls {
    ca: Option<RunCa>,
}

impl RunTls {
    /// A fresh CA in `dir` when `enabled`, before any process starts.
    pub(super) fn create(enabled: bool, dir: &Path) -> Result<RunTls> {
        let ca = if enabled {
            Some(RunCa::create(dir).map_err(|e| LaunchError::Tls(e.to_string()))?)
        } else {
            None
        };
        Ok(RunTls { ca })
    }

    /// `https` with a CA, else `http`.
    pub(super) fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }

    /// The launcher's HTTP client: trusts the run's CA, if any.
    pub(super) fn client(&self) -> Result<reqwest::Client> {
        http_client_trusting(self.ca.as_ref().map(|c| c.ca_pem().as_bytes()))
    }

    /// The CA's file and PEM, kept by the federation for its clients.
    pub(super) fn ca(&self) -> Option<(PathBuf, String)> {
        self.ca
            .as_ref()
            .map(|c| (c.ca_path().to_path_buf(), c.ca_pem().to_string()))
    }

    /// A certificate for `who` (a file-name-safe label) and the CA every member trusts; `None`
    /// without TLS.
    pub(super) fn certify(&self, who: &str) -> Result<Option<TlsFiles>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let files = ca
            .certify(who)
            .map_err(|e| LaunchError::Tls(e.to_string()))?;
        Ok(Some(TlsFiles {
            cert: Some(files.cert),
            key: Some(files.key),
            ca: Some(ca.ca_path().to_path_buf()),
        }))
    }
}

/// The certificate label of a node: `node-` and its name, with anything but ASCII letters,
/// digits, `-` and `_` made `_`.
pub(super) fn node_label(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("node-{safe}")
}

/// The marketplace's flags for `files`: `--tls-cert`, `--tls-key`, `--tls-ca`.
pub(super) fn marketplace_flags(files: &TlsFiles) -> Vec<String> {
    [
        ("--tls-cert", &files.cert),
        ("--tls-key", &files.key),
        ("--tls-ca", &files.ca),
    ]
    .into_iter()
    .filter_map(|(flag, path)| Some([flag.to_string(), path.as_ref()?.display().to_string()]))
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_with_tls_certifies_each_member_and_one_without_serves_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        let plain = RunTls::create(false, &dir.path().join("tls")).unwrap();
        assert_eq!(plain.scheme(), "http");
        assert_eq!(plain.certify("marketplace").unwrap(), None);
        assert!(!dir.path().join("tls").exists());

        let tls = RunTls::create(true, &dir.path().join("tls")).unwrap();
        assert_eq!(tls.scheme(), "https");
        let files = tls.certify(&node_label("edge 1")).unwrap().unwrap();
        assert_eq!(files.cert, Some(dir.path().join("tls/node-edge_1.pem")));
        assert_eq!(files.ca, Some(dir.path().join("tls/ca.pem")));
        let flags = marketplace_flags(&files);
        assert_eq!(flags[0], "--tls-cert");
        assert_eq!(flags[4], "--tls-ca");
        assert_eq!(
            flags[5],
            dir.path().join("tls/ca.pem").display().to_string()
        );
    }
}
