//! Offloading between hosts of one function, with real nodes on loopback and `fn-echo` on
//! their embedded gateways: the static split, weight changes under traffic, the lease
//! strategy moving load beyond a hot node's capacity to a peer, and a dead peer dropped
//! from the weights while requests keep succeeding.

mod common;

use common::federation::*;
use common::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Two hosts of echo (`a` and `b`) with the given `[offload]` sections and the table.
async fn two_hosts(a_conf: &str, b_conf: &str) -> (TestNode, TestNode, String) {
    let a = offload_node("a", a_conf).await;
    let b = offload_node("b", b_conf).await;
    let s = echo_sla();
    deploy(&a, &s).await;
    deploy(&b, &s).await;
    let t = table(1, &[&a, &b], vec![route_of(&s, &a, &[&a, &b])]);
    install(&[&a, &b], &t);
    (a, b, service(&s))
}

/// Sends `n` POSTs to `url` with `concurrency` in flight; returns (status, served-by) pairs.
async fn closed_loop(url: &str, n: usize, concurrency: usize) -> Vec<(u16, String)> {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = client.post(&url).body("x").send().await.unwrap();
                out.push((r.status().as_u16(), header(&r, "x-fogmarket-served-by")));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn served_by(results: &[(u16, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, by) in results {
        *m.entry(by.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_static_strategy_two_hosts_share_traffic_about_sixty_forty() {
    let (a, _b, svc) = two_hosts("strategy = \"static\"", "strategy = \"static\"").await;
    eventually("a gives b 40 %", Duration::from_secs(5), || async {
        weight(&a, &svc, "b").await == 400
    })
    .await;
    assert_eq!(weight(&a, &svc, "local").await, 600);

    let results = closed_loop(&format!("{}/function/{svc}", a.url), 400, 8).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    let by = served_by(&results);
    let share_a = by.get("a").copied().unwrap_or(0) as f64 / 400.0;
    assert!(
        (0.52..=0.68).contains(&share_a),
        "a served {share_a:.2}: {by:?}"
    );
    assert_eq!(by.get("a").unwrap_or(&0) + by.get("b").unwrap_or(&0), 400);

    let m = metrics_text(&a).await;
    let forwarded = sample(
        &m,
        "fogmarket_forwarded_total",
        &[("function", &svc), ("peer", "b")],
    );
    assert_eq!(forwarded as usize, by["b"], "{m}");
    assert_eq!(
        sample(
            &m,
            "fogmarket_weight",
            &[("function", &svc), ("target", "b")]
        ),
        400.0
    );
    assert!(
        sample(&m, "fogmarket_arrival_rate", &[("function", &svc)]) > 0.0,
        "{m}"
    );
    eventually(
        "a measured its RTT to b",
        Duration::from_secs(5),
        || async { offload_view(&a).await["functions"][0]["peers"][0]["rttMs"].is_f64() },
    )
    .await;
    let view = offload_view(&a).await;
    let f = &view["functions"][0];
    assert_eq!(f["weights"]["peers"]["b"], 400);
    assert_eq!(f["peers"][0]["name"], "b");
    assert_eq!(f["peers"][0]["alive"], true);
    assert!(f["peers"][0]["rttMs"].as_f64().is_some(), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_change_while_requests_flow_and_no_request_is_lost() {
    let (a, b, svc) = two_hosts("strategy = \"static\"", "strategy = \"static\"").await;
    let b_id = b.id;
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (node, svc, stop) = (a.node.clone(), svc.clone(), stop.clone());
        tokio::spawn(async move {
            use model::offload::Weights;
            let choices = [
                Weights::all_local(),
                Weights::from_shares(0.0, &[(b_id, 1.0)], 0.0),
                Weights::from_shares(1.0, &[(b_id, 1.0)], 0.0),
            ];
            let mut installs = 0;
            while !stop.load(Ordering::Relaxed) {
                assert!(
                    node.offload
                        .install_weights(&svc, choices[installs % 3].clone())
                );
                installs += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            installs
        })
    };
    let results = closed_loop(&format!("{}/function/{svc}", a.url), 600, 8).await;
    stop.store(true, Ordering::Relaxed);
    let installs = flipper.await.unwrap();
    assert!(installs > 10, "weights changed {installs} times");
    let lost: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(lost.is_empty(), "{} requests failed: {lost:?}", lost.len());
    let by = served_by(&results);
    assert!(
        by.get("a").is_some_and(|n| *n > 0) && by.get("b").is_some_and(|n| *n > 0),
        "{by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_moves_load_beyond_a_hot_nodes_capacity_to_a_peer_with_spare_capacity() {
    // The hot node sustains 20 req/s (2 calls of 50 ms in flight, max rate 20) and queues 8;
    // the peer sustains 200. The hot node receives 80 req/s, open loop.
    let hot_conf =
        "strategy = \"lease\"\nmax_concurrency = 2\nqueue_capacity = 8\nmax_rates = { echo = 20 }";
    let peer_conf = "strategy = \"lease\"\nmax_rates = { echo = 200 }";
    let (hot, _peer, svc) = two_hosts(hot_conf, peer_conf).await;
    let url = format!("{}/function/{svc}?delay_ms=50", hot.url);
    let client = reqwest::Client::new();
    let rate = 80.0;
    let seconds = 4.0;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut tasks = Vec::new();
    for _ in 0..(rate * seconds) as usize {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = started.elapsed();
            let r = client.post(&url).body("x").send().await.unwrap();
            (
                sent,
                r.status().as_u16(),
                header(&r, "x-fogmarket-served-by"),
                header(&r, "x-fogmarket-reject-reason"),
            )
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let first_forward = results
        .iter()
        .filter(|(_, s, by, _)| *s == 200 && by == "b")
        .map(|(t, ..)| *t)
        .min()
        .expect("some requests were served by the peer");
    assert!(
        first_forward < Duration::from_secs(2),
        "first forward after {first_forward:?}"
    );
    let after_first_second: Vec<_> = results
        .iter()
        .filter(|(t, ..)| *t >= Duration::from_secs(1))
        .collect();
    let ok = after_first_second
        .iter()
        .filter(|(_, s, ..)| *s == 200)
        .count();
    let success = ok as f64 / after_first_second.len() as f64;
    let reasons: HashMap<&str, usize> = after_first_second
        .iter()
        .filter(|(_, s, ..)| *s != 200)
        .fold(HashMap::new(), |mut m, (.., r)| {
            *m.entry(r.as_str()).or_insert(0) += 1;
            m
        });
    let total_ok = results.iter().filter(|(_, s, ..)| *s == 200).count();
    let at_peer = results
        .iter()
        .filter(|(_, s, by, _)| *s == 200 && by == "b")
        .count();
    eprintln!(
        "lease overload: success after 1 s {:.4} ({ok}/{}), overall {total_ok}/{}, served by the peer {at_peer}, first forward at {first_forward:?}, failures {reasons:?}",
        success,
        after_first_second.len(),
        results.len()
    );
    assert!(
        success >= 0.99,
        "success after the first second {success:.3}: {reasons:?}"
    );
    // The hot node keeps about its capacity; the rest went to the peer.
    let late_local = after_first_second
        .iter()
        .filter(|(_, s, by, _)| *s == 200 && by == "a")
        .count() as f64
        / (seconds - 1.0);
    assert!(
        late_local <= 45.0,
        "the hot node served {late_local:.1} req/s itself"
    );
    assert!(
        at_peer as f64 >= 0.4 * results.len() as f64,
        "peer served {at_peer}"
    );
    assert!(
        weight(&hot, &svc, "b").await > 0,
        "the hot node still spills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_gets_no_traffic_after_peer_timeout_and_one_step_and_requests_keep_succeeding()
{
    let conf = "strategy = \"static\"\npeer_timeout = \"500 ms\"\ncontrol_interval = \"100 ms\"";
    let (a, b, svc) = two_hosts(conf, conf).await;
    let url = format!("{}/function/{svc}", a.url);
    eventually("a gives b weight", Duration::from_secs(5), || async {
        weight(&a, &svc, "b").await == 400
    })
    .await;
    let warm = closed_loop(&url, 50, 4).await;
    assert!(
        served_by(&warm).get("b").is_some_and(|n| *n > 0),
        "b served some: {warm:?}"
    );

    b.stop();
    let stopped = Instant::now();
    // Traffic keeps flowing while b is gone: every request succeeds.
    let mut results = Vec::new();
    let mut dropped_at = None;
    while stopped.elapsed() < Duration::from_millis(1500) {
        results.extend(closed_loop(&url, 20, 4).await);
        if dropped_at.is_none() && weight(&a, &svc, "b").await == 0 {
            dropped_at = Some(stopped.elapsed());
        }
    }
    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    let dropped_at = dropped_at.expect("b left a's weights");
    eprintln!(
        "dead peer: dropped from the weights {dropped_at:?} after it stopped; {} requests, all answered 200",
        results.len()
    );
    // peer_timeout (500 ms) + one step (100 ms), with slack for a loaded test machine.
    assert!(
        dropped_at <= Duration::from_millis(900),
        "b dropped after {dropped_at:?}"
    );
    // From then on nothing is forwarded to b.
    let forwarded = |m: &str| {
        sample(
            m,
            "fogmarket_forwarded_total",
            &[("function", &svc), ("peer", "b")],
        )
    };
    let before = forwarded(&metrics_text(&a).await);
    let more = closed_loop(&url, 100, 4).await;
    assert!(
        more.iter().all(|(s, by)| *s == 200 && by == "a"),
        "{more:?}"
    );
    assert_eq!(
        forwarded(&metrics_text(&a).await),
        before,
        "b got traffic while dead"
    );
}
