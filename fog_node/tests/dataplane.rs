//! The native data plane with real nodes on loopback and `fn-echo` deployed on their
//! embedded gateways: local serving and access forwarding with their headers, identity
//! checks on forwarded requests, the hop limit, unknown functions, body limits, and the
//! metrics and offload view after traffic.

mod common;

use common::federation::*;
use common::*;
use model::auth;
use model::ids::NodeId;
use model::time::Timestamp;
use std::time::Duration;

const KEY_HEADER: &str = "x-fogmarket-forward";

/// A host with echo deployed and an access node that does not host it, both with the table.
async fn host_and_access(offload: &str) -> (TestNode, TestNode, model::Sla) {
    let host = offload_node("host", offload).await;
    let access = offload_node("access", offload).await;
    let s = echo_sla();
    deploy(&host, &s).await;
    let t = table(1, &[&host, &access], vec![route_of(&s, &access, &[&host])]);
    install(&[&host, &access], &t);
    (host, access, s)
}

#[tokio::test]
async fn a_host_serves_locally_and_an_access_node_forwards_to_the_host_with_headers_and_metrics() {
    let (host, access, s) = host_and_access("").await;
    let svc = service(&s);
    let client = reqwest::Client::new();

    // Served where it is hosted.
    let r = client
        .post(format!("{}/function/{svc}", host.url))
        .body("hello fog")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-fogmarket-served-by"), "host");
    assert_eq!(header(&r, "x-fogmarket-path"), "host");
    assert_eq!(header(&r, "x-fogmarket-decision"), "local");
    assert_eq!(
        header(&r, "x-served-by-node"),
        "host",
        "the function itself ran on host"
    );
    assert_eq!(r.text().await.unwrap(), "hello fog");

    // Forwarded by the access node, by service, SLA id or live name, with tail and query.
    for name in [svc.clone(), s.id.to_string(), "echo".to_string()] {
        let r = client
            .post(format!(
                "{}/function/{name}/some/tail?delay_ms=1",
                access.url
            ))
            .header("x-custom", "kept")
            .body("via access")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(header(&r, "x-fogmarket-served-by"), "host");
        assert_eq!(header(&r, "x-fogmarket-path"), "access, host");
        assert_eq!(header(&r, "x-fogmarket-decision"), "forwarded");
        assert_eq!(r.text().await.unwrap(), "via access");
    }
    // Bodies far above the API's 256 KiB limit pass (the data plane's limit is max_body).
    let big = vec![b'z'; 1_000_000];
    let r = client
        .put(format!("{}/function/{svc}", access.url))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());
    let bad_delay = client
        .post(format!("{}/function/{svc}?delay_ms=nope", access.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_delay.status(),
        400,
        "the query reaches the function through the forward"
    );

    // Counters and weights after the traffic.
    let host_metrics = metrics_text(&host).await;
    let local = sample(
        &host_metrics,
        "fogmarket_invocations_total",
        &[("function", &svc), ("outcome", "local")],
    );
    assert_eq!(local, 6.0, "{host_metrics}");
    assert!(host_metrics.contains("fogmarket_invocation_duration_seconds_bucket"));
    eventually(
        "the host exports its weights",
        Duration::from_secs(5),
        || async {
            let m = metrics_text(&host).await;
            sample(
                &m,
                "fogmarket_weight",
                &[("function", &svc), ("target", "local")],
            ) == 1000.0
        },
    )
    .await;
    let access_metrics = metrics_text(&access).await;
    assert_eq!(
        sample(
            &access_metrics,
            "fogmarket_forwarded_total",
            &[("function", &svc), ("peer", "host")]
        ),
        5.0,
        "{access_metrics}"
    );
    assert_eq!(
        sample(
            &access_metrics,
            "fogmarket_invocations_total",
            &[("function", &svc), ("outcome", "forwarded")]
        ),
        5.0
    );
    let view = offload_view(&host).await;
    assert_eq!(view["strategy"], "lease");
    assert_eq!(view["routeVersion"], 1);
    assert_eq!(view["functions"][0]["service"], svc.as_str());
    assert_eq!(view["functions"][0]["weights"]["local"], 1000);
    assert_eq!(view["totals"]["served"], 6, "{view}");
    assert_eq!(view["totals"]["rejected"], 0, "{view}");
    let access_view = offload_view(&access).await;
    assert_eq!(access_view["totals"]["forwarded"], 5, "{access_view}");
    assert_eq!(access_view["totals"]["served"], 0, "{access_view}");
    assert!(
        offload_view(&access).await["functions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the access node hosts nothing"
    );
}

#[tokio::test]
async fn forged_forward_headers_are_refused_and_the_hop_limit_stops_forwarding() {
    let (host, access, s) = host_and_access("").await;
    let svc = service(&s);
    let path = format!("/function/{svc}");
    let client = reqwest::Client::new();
    let send = |url: String, sig: String, hops: u32, kind: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            client
                .post(url)
                .header(KEY_HEADER, sig)
                .header("x-fogmarket-hops", hops.to_string())
                .header("x-fogmarket-route", kind)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let now = Timestamp::now();
    let access_id = access.id.to_string();
    let host_id = host.id.to_string();
    let access_identity = access.node.identity().unwrap();
    // Signed by the access node's own key (what its data plane does), for `recipient`.
    let sign_as_access = |recipient: &str, at: Timestamp, hops: u32, kind: &str| {
        let target = auth::forward_target(&path, hops, kind);
        access.node.sign_forward(
            &access_identity,
            recipient,
            at,
            &auth::RequestTarget::new("POST", &target, b"x"),
        )
    };
    let sign_with = |key: &auth::SecretKey, sender: &str| {
        let target = auth::forward_target(&path, 1, "offload");
        auth::sign(
            key,
            sender,
            &host_id,
            now,
            auth::Nonce::random(&mut rand::rng()),
            &auth::RequestTarget::new("POST", &target, b"x"),
        )
    };

    // A valid signature from a known node is served (the helper signs correctly).
    let ok = send(
        format!("{}{path}", host.url),
        sign_as_access(&host_id, now, 1, "offload"),
        1,
        "offload",
        "x",
    )
    .await;
    assert_eq!(ok.status(), 200);
    // The very same header again: a replay.
    let replayed = sign_as_access(&host_id, now, 1, "offload");
    let first = send(
        format!("{}{path}", host.url),
        replayed.clone(),
        1,
        "offload",
        "x",
    )
    .await;
    assert_eq!(first.status(), 200);

    let forged = [
        (
            "another node's key",
            sign_with(&member_key("intruder"), &access_id),
            1,
            "x",
        ),
        (
            "unknown sender",
            sign_with(&member_key("intruder"), &NodeId::new().to_string()),
            1,
            "x",
        ),
        ("replayed", replayed, 1, "x"),
        (
            "addressed to another node",
            sign_as_access(&access_id, now, 1, "offload"),
            1,
            "x",
        ),
        (
            "tampered hops",
            sign_as_access(&host_id, now, 1, "offload"),
            2,
            "x",
        ),
        (
            "tampered body",
            sign_as_access(&host_id, now, 1, "offload"),
            1,
            "y",
        ),
        (
            "stale",
            sign_as_access(
                &host_id,
                Timestamp::from_millis(now.as_millis() - 60_000),
                1,
                "offload",
            ),
            1,
            "x",
        ),
    ];
    for (what, sig, hops, body) in forged {
        let r = send(format!("{}{path}", host.url), sig, hops, "offload", body).await;
        assert_eq!(r.status(), 403, "{what}");
        assert_eq!(
            header(&r, "x-fogmarket-reject-reason"),
            "forbidden",
            "{what}"
        );
        let err: serde_json::Value = r.json().await.unwrap();
        assert_eq!(err["error"], "forbidden", "{what}");
    }

    // HAProxy mode's pair token: valid in its window for this pair only, refused when forged.
    let window = auth::peer_token_window(Timestamp::now());
    let pair = access.node.pair_secret(&host.node.public_key());
    let token = auth::peer_token(&pair, &access_id, &host_id, window);
    let r = client
        .post(format!("{}{path}", host.url))
        .header("x-fogmarket-peer", token)
        .body("haproxy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-fogmarket-decision"), "local");
    let r = client
        .post(format!("{}{path}", host.url))
        .header(
            "x-fogmarket-peer",
            auth::peer_token(
                &auth::pair_secret(&member_key("intruder"), &host.node.public_key()),
                &access_id,
                &host_id,
                window,
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // At the hop limit, a node that does not host the function refuses instead of forwarding.
    let before = sample(
        &metrics_text(&host).await,
        "fogmarket_invocations_total",
        &[("function", &svc)],
    );
    let host_identity = host.node.identity().unwrap();
    let at_limit = host.node.sign_forward(
        &host_identity,
        &access_id,
        now,
        &auth::RequestTarget::new("POST", &auth::forward_target(&path, 3, "access"), b"x"),
    );
    let r = send(format!("{}{path}", access.url), at_limit, 3, "access", "x").await;
    assert_eq!(r.status(), 508);
    assert_eq!(header(&r, "x-fogmarket-reject-reason"), "hop_limit");
    assert_eq!(header(&r, "x-fogmarket-decision"), "rejected");
    let after = sample(
        &metrics_text(&host).await,
        "fogmarket_invocations_total",
        &[("function", &svc)],
    );
    assert_eq!(before, after, "nothing reached the host");
    assert_eq!(
        sample(
            &metrics_text(&access).await,
            "fogmarket_forwarded_total",
            &[("function", &svc)]
        ),
        0.0
    );
}

#[tokio::test]
async fn unknown_or_expired_functions_are_404_and_bodies_over_max_body_are_413() {
    let host = offload_node("host", "max_body = \"1 KB\"").await;
    let s = echo_sla();
    deploy(&host, &s).await;
    let mut expired = route_of(&echo_sla(), &host, &[&host]);
    expired.expires_at = Timestamp::from_millis(Timestamp::now().as_millis() - 1);
    let expired_service = expired.service.clone();
    let t = table(7, &[&host], vec![route_of(&s, &host, &[&host]), expired]);
    install(&[&host], &t);
    let client = reqwest::Client::new();
    let svc = service(&s);

    for name in ["no-such-function", expired_service.as_str()] {
        let r = client
            .post(format!("{}/function/{name}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
        assert_eq!(header(&r, "x-fogmarket-reject-reason"), "unknown_function");
        let err: serde_json::Value = r.json().await.unwrap();
        assert_eq!(err["error"], "unknown_function");
    }

    let fits = client
        .post(format!("{}/function/{svc}", host.url))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    assert_eq!(fits.bytes().await.unwrap().len(), 1000);
    let too_large = client
        .post(format!("{}/function/{svc}", host.url))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let err: serde_json::Value = too_large.json().await.unwrap();
    assert_eq!(err["error"], "payload_too_large");
    assert_eq!(
        sample(
            &metrics_text(&host).await,
            "fogmarket_rejected_total",
            &[("function", &svc), ("reason", "payload_too_large")]
        ),
        1.0
    );
}

#[tokio::test]
async fn an_access_node_answers_503_when_no_host_is_alive() {
    let host = offload_node("host", "").await;
    let access = offload_node("access", "").await;
    let s = echo_sla();
    let mut t = table(1, &[&host, &access], vec![route_of(&s, &access, &[&host])]);
    t.nodes[0].alive = false;
    install(&[&access], &t);
    let r = reqwest::Client::new()
        .post(format!("{}/function/{}", access.url, service(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "x-fogmarket-reject-reason"), "no_host");
    assert_eq!(header(&r, "x-fogmarket-path"), "access");
}
