//! `data_plane = "haproxy"`: a node drives a real HAProxy (Debian package `haproxy`) with the
//! weights its strategy computes; requests through HAProxy reach the local gateway and the
//! peer hosting the same function, and the peer serves them itself (peer token accepted).

mod common;

use common::federation::*;
use std::collections::HashMap;
use std::time::Duration;

fn haproxy_installed() -> bool {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_haproxy_mode_splits_requests_between_its_gateway_and_a_peer_by_its_weights() {
    assert!(
        haproxy_installed(),
        "haproxy is not installed (apt-get install haproxy); `just test` skips this test without it"
    );
    let a = offload_node("a", "strategy = \"static\"\ndata_plane = \"haproxy\"").await;
    let b = offload_node("b", "strategy = \"static\"").await;
    let s = echo_sla();
    deploy(&a, &s).await;
    deploy(&b, &s).await;
    let t = table(1, &[&a, &b], vec![route_of(&s, &a, &[&a, &b])]);
    install(&[&a, &b], &t);
    let svc = service(&s);

    eventually(
        "node a reports its HAProxy frontend",
        Duration::from_secs(20),
        || {
            let a = &a;
            async move { offload_view(a).await["haproxyUrl"].is_string() }
        },
    )
    .await;
    let view = offload_view(&a).await;
    let frontend = view["haproxyUrl"].as_str().unwrap_or_default().to_string();
    let url = format!("{}/function/{svc}", frontend.trim_end_matches('/'));
    let client = reqwest::Client::new();
    // HAProxy gets the backend once the next apply sees the function and the static weights.
    eventually(
        "HAProxy routes the function",
        Duration::from_secs(20),
        || {
            let (client, url) = (&client, &url);
            async move {
                client
                    .post(url)
                    .body("x")
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await;

    let mut by: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let r = client.post(&url).body("ping").send().await.unwrap();
        assert_eq!(r.status(), 200, "every request through HAProxy is served");
        let node = header(&r, "x-served-by-node");
        *by.entry(node).or_insert(0) += 1;
    }
    let local = by.get("a").copied().unwrap_or(0);
    let peer = by.get("b").copied().unwrap_or(0);
    assert_eq!(local + peer, 200, "only a and b serve: {by:?}");
    // static: 60 % local, 40 % to the peer (HAProxy weights 154/102 of 256, random draw).
    assert!((90..=150).contains(&local), "about 60 % local: {by:?}");
    assert!(peer >= 50, "the peer served its share itself: {by:?}");
}
