//! The gateway as a process of its own can serve HTTPS (`--tls-cert`/`--tls-key`): a client
//! trusting the CA deploys and invokes over TLS; one that does not is refused, and so is plain
//! HTTP on the TLS port.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::Path;

/// A CA and a certificate for 127.0.0.1 signed by it, written to `dir`; returns the CA's PEM.
fn ca_and_server_cert(dir: &Path) -> Vec<u8> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "gateway test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("gateway.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("gateway.key"), key.serialize_pem()).unwrap();
    ca_cert.pem().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_gateway_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_and_server_cert(dir.path());
    let gateway = faas_gateway::Gateway::build({
        let mut s = faas_gateway::GatewaySettings::new("127.0.0.1:0".parse().unwrap(), catalog());
        s.tls = signed_http::tls::TlsFiles {
            cert: Some(dir.path().join("gateway.pem")),
            key: Some(dir.path().join("gateway.key")),
            ca: None,
        };
        s
    })
    .await
    .expect("the gateway builds with TLS");
    let url = gateway.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let trusting = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
        .build()
        .unwrap();
    eventually(
        "healthz answers over https",
        std::time::Duration::from_secs(10),
        || async {
            let r = trusting.get(format!("{url}/healthz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let r = trusting
        .post(format!("{url}/system/functions"))
        .json(&echo_deployment("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let answer = eventually(
        "echo answers over https",
        std::time::Duration::from_secs(20),
        || async {
            let r = trusting
                .post(format!("{url}/function/echo"))
                .body("over tls")
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r.text().await.ok()?)
        },
    )
    .await;
    assert_eq!(answer, "over tls");

    // A client that does not trust the CA, and plain HTTP on the same port, get nowhere.
    let stranger = reqwest::Client::new();
    let err = stranger
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let plain = url.replacen("https://", "http://", 1);
    let answered_plain = stranger
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(
        !answered_plain,
        "plain HTTP must not be served on the TLS port"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    ca_and_server_cert(dir.path());
    let mut s = faas_gateway::GatewaySettings::new("127.0.0.1:0".parse().unwrap(), catalog());
    s.tls.cert = Some(dir.path().join("gateway.pem"));
    let err = faas_gateway::Gateway::build(s)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("key"), "{err}");
}
