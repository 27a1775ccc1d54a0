//! The OpenFaaS contract, with requests as faas-cli and other clients send them.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_deployed_put_then_post_is_listed_invoked_scaled_and_removed() {
    let gw = spawn_gateway().await;

    let list = gw
        .http
        .get(gw.url("/system/functions"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(list.text().await.unwrap().trim(), "[]");
    assert!(
        gw.describe("echo").await.is_none(),
        "describe of an unknown function is 404"
    );

    // faas-cli deploy: PUT (404 as the function is unknown), then POST.
    let body = echo_deployment("echo");
    let put = gw
        .http
        .put(gw.url("/system/functions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    let post = gw
        .http
        .post(gw.url("/system/functions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202);
    gw.wait_available("echo", 1).await;

    let list: Value = gw
        .http
        .get(gw.url("/system/functions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "echo");
    assert_eq!(list[0]["namespace"], "openfaas-fn");
    assert_eq!(list[0]["image"], "ghcr.io/openfaas/echo:latest");
    assert_eq!(list[0]["availableReplicas"], 1);
    assert!(list[0]["createdAt"].as_str().unwrap().ends_with('Z'));

    // Invoke with a sub-path, query, custom headers and a body.
    let r = gw
        .http
        .post(gw.url("/function/echo/sub/path?x=1"))
        .header("Content-Type", "application/x-test")
        .header("X-Custom", "yes")
        .body("hello fog")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert!(r.headers().contains_key("x-call-id"));
    assert!(r.headers().contains_key("x-start-time"));
    let duration: f64 = r.headers()["x-duration-seconds"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(duration >= 0.0);
    assert_eq!(r.text().await.unwrap(), "hello fog");

    // The query and headers reach the function: fn-echo refuses a bad delay, naming it.
    let r = gw
        .http
        .get(gw.url("/function/echo/?delay_ms=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("delay_ms"));
    let r = gw
        .http
        .get(gw.url("/function/echo"))
        .header("X-Delay-Ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A given X-Call-Id is kept.
    let r = gw
        .http
        .get(gw.url("/function/echo.openfaas-fn"))
        .header("X-Call-Id", "call-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-call-id"], "call-42");
    let described = gw.describe("echo").await.unwrap();
    assert!(
        described["invocationCount"].as_f64().unwrap() >= 4.0,
        "{described}"
    );

    // Scale to 3; requests spread over replicas (least in flight).
    let r = gw
        .http
        .post(gw.url("/system/scale-function/echo"))
        .json(&json!({"serviceName": "echo", "replicas": 3}))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 202 || r.status() == 200);
    gw.wait_available("echo", 3).await;
    assert_eq!(gw.describe("echo").await.unwrap()["replicas"], 3);
    let pids = gw.pids("echo").await;
    assert_eq!(pids.len(), 3);
    let mut served_by = std::collections::BTreeSet::new();
    let calls = (0..9).map(|_| gw.http.get(gw.url("/function/echo?delay_ms=300")).send());
    for r in futures::future::join_all(calls).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        served_by.insert(
            r.headers()["x-function-replica"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        served_by.len(),
        3,
        "9 concurrent calls spread over the 3 replicas"
    );
    let r = gw
        .http
        .post(gw.url("/system/scale-function/nope"))
        .json(&json!({"serviceName": "nope", "replicas": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Remove with a JSON body on DELETE.
    let del = |name: &str| {
        gw.http
            .delete(gw.url("/system/functions"))
            .json(&json!({"functionName": name}))
            .send()
    };
    let r = del("echo").await.unwrap();
    assert!(r.status() == 202 || r.status() == 200, "{}", r.status());
    assert_eq!(del("echo").await.unwrap().status(), 404);
    assert!(gw.describe("echo").await.is_none());
    assert_eq!(
        gw.http
            .get(gw.url("/system/functions"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim(),
        "[]"
    );
    assert_eq!(
        gw.http
            .get(gw.url("/function/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    for pid in pids {
        wait_gone(pid).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_is_refused_listing_the_catalog() {
    let gw = spawn_gateway().await;
    let mut body = echo_deployment("nope");
    body["image"] = json!("ghcr.io/acme/does-not-exist:1.0");
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("echo"), "{text}");
    assert!(text.contains("does-not-exist"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_limits_and_labels_are_refused_naming_the_field() {
    let gw = spawn_gateway().await;
    let mut body = echo_deployment("echo");
    body["limits"] = json!({"memory": "lots"});
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("limits.memory"));

    let mut body = echo_deployment("echo");
    body["requests"] = json!({"cpu": "fast"});
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("requests.cpu"));

    let mut body = echo_deployment("echo");
    body["labels"] = json!({"com.openfaas.scale.min": "two"});
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("com.openfaas.scale.min"));

    let r = gw
        .http
        .post(gw.url("/system/functions"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_system_routes_only() {
    let gw = spawn_gateway_with(|s| s.basic_auth = Some(("admin".into(), "s3cret".into()))).await;
    let r = gw
        .http
        .get(gw.url("/system/functions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Restricted\""
    );
    let r = gw
        .http
        .get(gw.url("/system/info"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = gw
        .http
        .post(gw.url("/system/functions"))
        .basic_auth("admin", Some("s3cret"))
        .json(&echo_deployment("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // /function and /healthz stay open.
    assert_eq!(
        gw.http
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = gw
        .http
        .post(gw.url("/function/echo"))
        .body("open")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "open");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_created_listed_updated_and_deleted() {
    let gw = spawn_gateway().await;
    let url = gw.url("/system/secrets");
    let list = gw.http.get(&url).send().await.unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(list.text().await.unwrap().trim(), "[]");

    let r = gw
        .http
        .post(&url)
        .json(&json!({"name": "api-key", "value": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = gw
        .http
        .post(&url)
        .json(&json!({"name": "api-key", "value": "v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let raw = base64::engine::general_purpose::STANDARD.encode(b"\x00\x01");
    let r = gw
        .http
        .put(&url)
        .json(&json!({"name": "api-key", "rawValue": raw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw
        .http
        .put(&url)
        .json(&json!({"name": "nope", "value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let list: Value = gw
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!([{"name": "api-key", "namespace": "openfaas-fn"}]),
        "values are never listed"
    );

    // A deployment may reference it; an unknown secret is refused.
    let mut body = echo_deployment("echo");
    body["secrets"] = json!(["api-key"]);
    assert_eq!(gw.deploy(body.clone()).await.status(), 202);
    body["secrets"] = json!(["missing"]);
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("secrets"));

    let r = gw
        .http
        .delete(&url)
        .json(&json!({"name": "api-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "faas-cli secret remove takes 200, not 204");
    let r = gw
        .http
        .delete(&url)
        .json(&json!({"name": "api-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_namespaces_healthz_and_metrics_answer() {
    let gw = spawn_gateway().await;
    let info: Value = gw
        .http
        .get(gw.url("/system/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["provider"]["provider"], "faas-gateway");
    assert_eq!(info["provider"]["orchestration"], "process");
    assert!(info["version"]["release"].is_string());
    assert!(info["arch"].is_string());
    let mode = info["limitEnforcement"]["mode"].as_str().unwrap();
    assert!(mode == "cgroup-v2" || mode == "rlimit", "{info}");

    let ns: Value = gw
        .http
        .get(gw.url("/system/namespaces"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ns, json!(["openfaas-fn"]));
    let r = gw.http.head(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert_eq!(gw.deploy(echo_deployment("echo")).await.status(), 202);
    assert_eq!(
        gw.http
            .get(gw.url("/function/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"gateway_function_invocation_total{code="200",function_name="echo.openfaas-fn"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_functions_seconds_bucket"));
    assert!(metrics.contains("gateway_function_invocation_started"));
    assert!(metrics.contains("gateway_service_count"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_ndjson_log_entries_with_tail() {
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let mut body = echo_deployment("talker");
    body["envProcess"] = json!("talker");
    assert_eq!(gw.deploy(body).await.status(), 202);
    for i in 0..3 {
        let r = gw
            .http
            .post(gw.url(&format!("/function/talker/p{i}?n={i}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let text = gw
        .http
        .get(gw.url("/system/logs?name=talker&namespace=openfaas-fn&tail=2&follow=false"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    assert_eq!(entries[1]["text"], "saw POST /p2 n=2");
    assert_eq!(entries[1]["name"], "talker");
    assert_eq!(entries[1]["namespace"], "openfaas-fn");
    assert!(
        entries[1]["instance"]
            .as_str()
            .unwrap()
            .starts_with("talker-")
    );
    assert!(entries[1]["timestamp"].as_str().unwrap().ends_with('Z'));

    // `since` after the last line: nothing.
    let since = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    let text = gw
        .http
        .get(gw.url(&format!("/system/logs?name=talker&since={since}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "");

    // follow streams new lines.
    let mut stream = gw
        .http
        .get(gw.url("/system/logs?name=talker&tail=1&follow=true"))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("/p2"));
    gw.http
        .post(gw.url("/function/talker/live"))
        .body("x")
        .send()
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&next).contains("/live"));
    assert_eq!(
        gw.http
            .get(gw.url("/system/logs"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invocation_answers_202_and_posts_the_result_to_the_callback() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = spawn_gateway().await;
    assert_eq!(gw.deploy(echo_deployment("echo")).await.status(), 202);

    // A one-shot callback receiver.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/done", listener.local_addr().unwrap());
    let received = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    return text;
                }
            }
            if n == 0 {
                return text;
            }
        }
    });
    let r = gw
        .http
        .post(gw.url("/async-function/echo"))
        .header("X-Callback-Url", &callback)
        .body("later")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let call_id = r.headers()["x-call-id"].to_str().unwrap().to_string();
    let request = tokio::time::timeout(Duration::from_secs(15), received)
        .await
        .unwrap()
        .unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(request.starts_with("POST /done"), "{request}");
    assert!(
        lower.contains(&format!("x-call-id: {call_id}")),
        "{request}"
    );
    assert!(lower.contains("x-function-status: 200"), "{request}");
    assert!(request.ends_with("later"), "{request}");
    let r = gw
        .http
        .post(gw.url("/async-function/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}
