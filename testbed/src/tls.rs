//! Throwaway TLS material for a local federation (`testbed run --tls`,
//! [`crate::LaunchOptions::tls`]): a CA made for one run, and one certificate per process
//! (the marketplace, each fog node) for `127.0.0.1`, `::1` and `localhost`, signed by it.
//! Everything is written under `<run dir>/tls/`; the keys are readable by their owner only.
//! The CA's own key is never written: nothing can be signed with it after the run started.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The names every certificate is valid for: the loopback addresses and `localhost`.
pub const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Why the TLS material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsMaterialError {
    #[error("cannot make the certificate of {who}: {reason}")]
    Generate { who: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A process's certificate chain and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA of one run, and what signs certificates with it.
pub struct RunCa {
    dir: PathBuf,
    ca_path: PathBuf,
    ca_pem: String,
    signer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for RunCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCa")
            .field("ca", &self.ca_path)
            .finish_non_exhaustive()
    }
}

fn generate_err(who: &str) -> impl FnOnce(rcgen::Error) -> TlsMaterialError + '_ {
    move |e| TlsMaterialError::Generate {
        who: who.to_string(),
        reason: e.to_string(),
    }
}

impl RunCa {
    /// Makes a fresh CA and writes its certificate to `dir/ca.pem` (creating `dir`).
    pub fn create(dir: &Path) -> Result<RunCa, TlsMaterialError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsMaterialError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        let key = KeyPair::generate().map_err(generate_err("the CA"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Fogmarket testbed");
        name.push(DnType::CommonName, "Fogmarket testbed run CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(generate_err("the CA"))?;
        let ca_pem = cert.pem();
        let ca_path = dir.join("ca.pem");
        write(&ca_path, ca_pem.as_bytes(), false)?;
        Ok(RunCa {
            dir: dir.to_path_buf(),
            ca_path,
            ca_pem,
            signer: Issuer::new(params, key),
        })
    }

    /// `dir/ca.pem`: what every member trusts.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Makes a server certificate for `who` (a file-name-safe label such as `marketplace`
    /// or a node name) valid for [`LOOPBACK_NAMES`]; writes `dir/<who>.pem` and
    /// `dir/<who>.key`.
    pub fn certify(&self, who: &str) -> Result<CertFiles, TlsMaterialError> {
        let names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(generate_err(who))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{who} (Fogmarket testbed)"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(generate_err(who))?;
        let cert = params
            .signed_by(&key, &self.signer)
            .map_err(generate_err(who))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{who}.pem")),
            key: self.dir.join(format!("{who}.key")),
        };
        write(&files.cert, cert.pem().as_bytes(), false)?;
        write(&files.key, key.serialize_pem().as_bytes(), true)?;
        Ok(files)
    }
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsMaterialError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| TlsMaterialError::Write {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_http::tls::TlsFiles;

    #[test]
    fn certificates_of_a_run_make_a_server_and_its_ca_a_client_trust() {
        let dir = tempfile::tempdir().unwrap();
        let ca = RunCa::create(dir.path()).unwrap();
        let files = ca.certify("edge-1").unwrap();
        let tls = TlsFiles {
            cert: Some(files.cert.clone()),
            key: Some(files.key.clone()),
            ca: Some(ca.ca_path().to_path_buf()),
        };
        assert!(tls.server_config().unwrap().is_some());
        let options = tls.client_options(1024).unwrap();
        assert_eq!(
            options.tls_ca.as_deref(),
            Some(ca.ca_pem().as_bytes()),
            "the client trusts the run's CA"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        }
    }

    #[test]
    fn a_certificate_of_another_run_does_not_match_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let one = RunCa::create(&dir.path().join("one")).unwrap();
        let two = RunCa::create(&dir.path().join("two")).unwrap();
        let a = one.certify("n").unwrap();
        let b = two.certify("n").unwrap();
        let mixed = TlsFiles {
            cert: Some(a.cert),
            key: Some(b.key),
            ca: None,
        };
        let err = mixed.server_config().unwrap_err().to_string();
        assert!(err.contains("do not make a server"), "{err}");
    }
}
