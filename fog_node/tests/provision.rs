//! Provisioning on the embedded OpenFaaS-compatible gateway with the real `fn-echo` function:
//! deploy on provision, invoke, remove at the end of the SLA; roll back what never gets ready.

mod common;

use common::*;
use model::time::Timestamp;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn node_with_catalog(name: &str) -> TestNode {
    let extra = format!(
        "[faas]\ncatalog_dir = \"{}\"\nready_timeout = \"10 s\"",
        catalog_dir().display()
    );
    spawn_node(name, &extra).await
}

#[tokio::test]
async fn a_provisioned_placement_is_live_invocable_and_removed_when_the_sla_ends() {
    let n = node_with_catalog("host").await;
    let s =
        sla(json!({"functionImage": "ghcr.io/acme/echo:1.2", "duration": "10 min", "replicas": 2}));
    win(&n, &s).await;
    let resp = signed_post(&n.url, &format!("/api/provision/{}", s.id), &json!({})).await;
    assert_eq!(resp.status(), 200);
    let placement: Value = resp.json().await.unwrap();
    assert_eq!(placement["state"], "live", "{placement}");
    let url = placement["invokeUrl"]
        .as_str()
        .expect("invoke URL")
        .to_string();
    assert!(url.ends_with(&format!("/function/fogfn-{}", s.id)), "{url}");

    // The function really runs, and knows which node and SLA it serves.
    let client = reqwest::Client::new();
    let r = client.post(&url).body("hello fog").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by-node"], "host");
    assert_eq!(r.headers()["x-sla-id"].to_str().unwrap(), s.id.to_string());
    assert_eq!(r.text().await.unwrap(), "hello fog");

    // A second provision call is idempotent.
    let again: Value = signed_post(&n.url, &format!("/api/provision/{}", s.id), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["state"], "live");

    // End of the SLA (driven with a chosen time), then the lifetime loop removes the function.
    let ended = n.node.tick(Timestamp::now().plus(Duration::from_secs(601)));
    assert_eq!(ended.len(), 1);
    fog_node::tasks::provision::remove_deployed(&n.node, &ended).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.post(&url).body("x").send().await.unwrap().status();
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "function still answers {status} after removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unknown_image_fails_provisioning_and_frees_the_node() {
    let n = node_with_catalog("host").await;
    let s = sla(json!({"functionImage": "ghcr.io/acme/no-such-function:1", "cpu": "1 cpu"}));
    win(&n, &s).await;
    let placement: Value = signed_post(&n.url, &format!("/api/provision/{}", s.id), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(placement["state"], "failed", "{placement}");
    let error = placement["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("echo"),
        "the error lists the available functions: {error}"
    );
    assert_eq!(
        n.node.book().ledger.used(Timestamp::now()).cpu,
        model::Cpu::ZERO
    );
}

#[tokio::test]
async fn cancelling_a_live_placement_removes_its_function() {
    let n = node_with_catalog("host").await;
    let s = sla(json!({"functionImage": "ghcr.io/acme/echo:1"}));
    win(&n, &s).await;
    let placement: Value = signed_post(&n.url, &format!("/api/provision/{}", s.id), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let url = placement["invokeUrl"].as_str().expect("live").to_string();
    let bytes = Vec::new();
    let path = format!("/api/placement/{}", s.id);
    let header = member_header(
        &market_key(),
        model::auth::MARKETPLACE,
        &n.id.to_string(),
        "DELETE",
        &path,
        &bytes,
    );
    let client = reqwest::Client::new();
    let resp = client
        .delete(format!("{}{path}", n.url))
        .header("authorization", header)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        client.post(&url).body("x").send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn the_openfaas_client_speaks_the_gateway_contract() {
    use fog_node::faas::{FunctionDeployment, OpenFaasClient};
    use std::collections::BTreeMap;
    let settings = faas_gateway::GatewaySettings::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        catalog_dir(),
    );
    let gateway = faas_gateway::Gateway::build(settings)
        .await
        .expect("gateway binds");
    let url = gateway.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = OpenFaasClient::new(reqwest::Client::new(), &url, None);

    assert!(client.list().await.unwrap().is_empty());
    assert!(client.status("echo").await.unwrap().is_none());
    let mut d = FunctionDeployment {
        service: "echo".into(),
        image: "ghcr.io/acme/echo:1".into(),
        labels: BTreeMap::from([("com.openfaas.scale.min".into(), "1".into())]),
        ..Default::default()
    };
    // First deploy: PUT answers 404, the client falls back to POST.
    client.deploy(&d).await.unwrap();
    let ready = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = client.status("echo").await.unwrap()
                && s.available_replicas >= 1
            {
                return s;
            }
            assert!(Instant::now() < deadline, "echo never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let status = ready.await;
    assert_eq!(status.name, "echo");
    // Second deploy of the same service is an update (PUT).
    d.env_vars.insert("X".into(), "1".into());
    client.deploy(&d).await.unwrap();
    assert_eq!(client.list().await.unwrap().len(), 1);

    client.scale("echo", 2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .status("echo")
        .await
        .unwrap()
        .map(|s| s.available_replicas)
        != Some(2)
    {
        assert!(Instant::now() < deadline, "echo never reached 2 replicas");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = client
        .invoke(
            "echo",
            "sub/path?delay_ms=1",
            reqwest::Method::POST,
            b"abc".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.body, b"abc");
    assert!(out.headers.contains_key("x-call-id"));

    assert!(client.delete("echo").await.unwrap());
    assert!(
        !client.delete("echo").await.unwrap(),
        "a second delete finds nothing"
    );
    assert!(client.status("echo").await.unwrap().is_none());
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_openfaas_client_authenticates_and_reports_what_the_gateway_answered() {
    use fog_node::faas::OpenFaasClient;
    let mut settings = faas_gateway::GatewaySettings::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        catalog_dir(),
    );
    settings.basic_auth = Some(("admin".into(), "s3cret".into()));
    let gateway = faas_gateway::Gateway::build(settings)
        .await
        .expect("gateway binds");
    let url = gateway.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let anonymous = OpenFaasClient::new(http.clone(), &url, None);
    let err = anonymous.list().await.unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::UNAUTHORIZED));
    assert!(err.to_string().contains("401"), "{err}");
    let wrong = OpenFaasClient::new(http.clone(), &url, Some(("admin".into(), "nope".into())));
    assert_eq!(
        wrong.list().await.unwrap_err().status(),
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    let admin = OpenFaasClient::new(http, &url, Some(("admin".into(), "s3cret".into())));
    assert!(admin.list().await.unwrap().is_empty());
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
