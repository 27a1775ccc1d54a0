use super::*;
use proptest::prelude::*;
use uuid::Uuid;

fn node(i: u128) -> NodeId {
    NodeId(Uuid::from_u128(i))
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

const NOW: Timestamp = Timestamp::from_millis(1_000_000);

fn peer(i: u128, rtt_ms: u64) -> PeerView {
    PeerView {
        node: node(i),
        rtt: Duration::from_millis(rtt_ms),
        alive: true,
        hosts_function: true,
        offer: None,
        margin: None,
    }
}

fn offering(mut p: PeerView, rate: f64, expires_at: Timestamp) -> PeerView {
    p.offer = Some(CapacityOffer { rate, expires_at });
    p
}

fn load(rate: f64, capacity: f64) -> FunctionLoad {
    FunctionLoad {
        local_rate: rate,
        capacity: Some(capacity),
        ..FunctionLoad::default()
    }
}

fn later() -> Timestamp {
    NOW.plus(Duration::from_secs(2))
}

#[test]
fn strategy_names_parse_in_any_case_and_lease_is_the_default() {
    assert_eq!(OffloadStrategy::default(), OffloadStrategy::Lease);
    for s in OffloadStrategy::ALL {
        assert_eq!(s.name().parse::<OffloadStrategy>().unwrap(), s);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
    }
    assert_eq!(
        "Node-Margin".parse::<OffloadStrategy>().unwrap(),
        OffloadStrategy::NodeMargin
    );
    let err = "weighted".parse::<OffloadStrategy>().unwrap_err();
    assert!(
        err.to_string()
            .contains("static, recalc, node_margin, lease")
    );
}

#[test]
fn static_keeps_sixty_percent_local_and_splits_forty_among_live_hosting_peers() {
    let mut dead = peer(3, 1);
    dead.alive = false;
    let mut other = peer(4, 1);
    other.hosts_function = false;
    let peers = [peer(2, 1), peer(1, 100), dead, other];
    let w = compute_weights(
        OffloadStrategy::Static,
        &load(5.0, 10.0),
        &peers,
        &Params::default(),
        None,
        NOW,
    );
    assert_eq!(
        w,
        Weights {
            local: 600,
            peers: vec![(node(1), 200), (node(2), 200)],
            reject: 0
        }
    );
}

#[test]
fn static_serves_everything_locally_without_peers() {
    let w = compute_weights(
        OffloadStrategy::Static,
        &load(500.0, 10.0),
        &[],
        &Params::default(),
        None,
        NOW,
    );
    assert_eq!(w, Weights::all_local());
}

#[test]
fn recalc_offers_each_peer_the_floor_of_spare_rate_over_peer_count_cloudnet_numbers() {
    let p = Params::default();
    // Node 2 (max rate 33, idle) and node 3 (max rate 49, idle), each with two peers.
    let to_peers = [peer(1, 5), peer(3, 5)];
    let o2 = offers_to_peers(
        OffloadStrategy::Recalc,
        &load(0.0, 33.0),
        &to_peers,
        &p,
        None,
        NOW,
    );
    assert_eq!(o2.len(), 2);
    assert!(
        o2.iter()
            .all(|(_, o)| o.rate == 16.0 && o.expires_at == NOW.plus(p.offer_ttl))
    );
    let o3 = offers_to_peers(
        OffloadStrategy::Recalc,
        &load(0.0, 49.0),
        &[peer(1, 5), peer(2, 5)],
        &p,
        None,
        NOW,
    );
    assert!(o3.iter().all(|(_, o)| o.rate == 24.0));
    // Node 1, at 50 req/s for a max rate of 10, offers nothing.
    let o1 = offers_to_peers(
        OffloadStrategy::Recalc,
        &load(50.0, 10.0),
        &[peer(2, 5), peer(3, 5)],
        &p,
        None,
        NOW,
    );
    assert!(o1.is_empty());
}

#[test]
fn recalc_splits_cloudnet_node_1_into_10_local_16_and_24_forwarded_none_rejected() {
    let peers = [
        offering(peer(2, 5), 16.0, later()),
        offering(peer(3, 5), 24.0, later()),
    ];
    let w = compute_weights(
        OffloadStrategy::Recalc,
        &load(50.0, 10.0),
        &peers,
        &Params::default(),
        None,
        NOW,
    );
    assert_eq!(
        w,
        Weights {
            local: 200,
            peers: vec![(node(2), 320), (node(3), 480)],
            reject: 0
        }
    );
}

#[test]
fn dfaas_issue_48_two_nodes_at_110_for_capacity_100_forward_some_and_reject_none() {
    let p = Params::default();
    for strategy in [OffloadStrategy::Recalc, OffloadStrategy::Lease] {
        // Node 2 is idle and offers its spare capacity to node 1.
        let offers = offers_to_peers(strategy, &load(0.0, 100.0), &[peer(1, 5)], &p, None, NOW);
        assert_eq!(offers.len(), 1, "{strategy}");
        let (to, offer) = offers[0];
        assert_eq!(to, node(1));
        let mut two = peer(2, 5);
        two.offer = Some(offer);
        let w = compute_weights(strategy, &load(110.0, 100.0), &[two], &p, None, NOW);
        assert!(w.peer(node(2)) >= 90, "{strategy}: {w:?}");
        assert_eq!(w.reject, 0, "{strategy}: {w:?}");
        assert_eq!(w.total(), WEIGHT_SCALE);
    }
}

#[test]
fn no_strategy_rejects_while_a_peer_offer_is_unexpired_even_when_it_is_too_small() {
    let peers = [offering(peer(2, 5), 5.0, later())];
    for strategy in [OffloadStrategy::Recalc, OffloadStrategy::Lease] {
        let w = compute_weights(
            strategy,
            &load(100.0, 10.0),
            &peers,
            &Params::default(),
            None,
            NOW,
        );
        assert_eq!(w.reject, 0, "{strategy}: {w:?}");
        assert!(w.peer(node(2)) > 0, "{strategy}: {w:?}");
    }
}

#[test]
fn expired_offers_are_ignored_and_only_the_uncovered_excess_is_rejected() {
    let peers = [offering(peer(2, 5), 500.0, NOW)];
    // Lease rejects once its backlog would not drain within queue_drain (10 queued at
    // 10 req/s: 1 s); before that the queue takes the excess (see below).
    let backlog = FunctionLoad {
        queue_len: 10,
        ..load(50.0, 10.0)
    };
    let p = Params::default();
    let r = compute_weights(
        OffloadStrategy::Recalc,
        &load(50.0, 10.0),
        &peers,
        &p,
        None,
        NOW,
    );
    assert_eq!(
        r,
        Weights {
            local: 200,
            peers: vec![],
            reject: 800
        }
    );
    let l = compute_weights(OffloadStrategy::Lease, &backlog, &peers, &p, None, NOW);
    assert_eq!(
        l,
        Weights {
            local: 0,
            peers: vec![],
            reject: 1000
        }
    );
}

#[test]
fn nothing_is_rejected_while_the_local_node_has_spare_capacity() {
    let p = Params::default();
    for strategy in OffloadStrategy::ALL {
        let w = compute_weights(strategy, &load(9.0, 10.0), &[], &p, None, NOW);
        assert_eq!(w, Weights::all_local(), "{strategy}");
    }
}

#[test]
fn unknown_capacity_means_all_local_until_throughput_teaches_it() {
    let peers = [offering(peer(2, 5), 50.0, later())];
    let unknown = FunctionLoad {
        local_rate: 80.0,
        ..FunctionLoad::default()
    };
    let p = Params::default();
    for strategy in [OffloadStrategy::Recalc, OffloadStrategy::Lease] {
        let w = compute_weights(strategy, &unknown, &peers, &p, None, NOW);
        assert_eq!(w, Weights::all_local());
        assert!(offers_to_peers(strategy, &unknown, &peers, &p, None, NOW).is_empty());
    }
    let mut t = ThroughputEstimator::default();
    for i in 0..80 {
        t.record_completion(at(NOW.as_millis() - 2_000 + i * 25)); // 40 req/s while saturated
    }
    t.sample(NOW, true);
    let learned = FunctionLoad {
        capacity: t.capacity(),
        ..unknown
    };
    let w = compute_weights(OffloadStrategy::Recalc, &learned, &peers, &p, None, NOW);
    assert_eq!(w.local, 500);
    assert_eq!(w.peer(node(2)), 500);
}

#[test]
fn lease_does_not_flap_when_load_hovers_at_capacity() {
    let p = Params::default(); // hysteresis 5 %
    let peers = [offering(peer(2, 5), 50.0, later())];
    let hover = [97.0, 103.0, 99.0, 104.5, 96.0, 101.0, 104.0, 98.0];
    // Not spilling: hovering within ±5 % of capacity never starts forwarding.
    let mut prev: Option<Weights> = None;
    for r in hover {
        let w = compute_weights(
            OffloadStrategy::Lease,
            &load(r, 100.0),
            &peers,
            &p,
            prev.as_ref(),
            NOW,
        );
        assert_eq!(w, Weights::all_local(), "at {r}");
        prev = Some(w);
    }
    // A burst above 105 starts the spill...
    let w = compute_weights(
        OffloadStrategy::Lease,
        &load(120.0, 100.0),
        &peers,
        &p,
        prev.as_ref(),
        NOW,
    );
    assert!(w.is_spilling() && w.reject == 0, "{w:?}");
    prev = Some(w);
    // ...and hovering around capacity keeps it: forwarding never stops and restarts.
    for r in hover {
        let w = compute_weights(
            OffloadStrategy::Lease,
            &load(r, 100.0),
            &peers,
            &p,
            prev.as_ref(),
            NOW,
        );
        assert!(w.is_spilling() && w.peer(node(2)) > 0, "at {r}: {w:?}");
        prev = Some(w);
    }
    // Only a drop below 95 returns to local only.
    let w = compute_weights(
        OffloadStrategy::Lease,
        &load(94.0, 100.0),
        &peers,
        &p,
        prev.as_ref(),
        NOW,
    );
    assert_eq!(w, Weights::all_local());
}

#[test]
fn lease_keeps_previous_weights_for_changes_within_the_dead_band() {
    let p = Params::default();
    let peers = [offering(peer(2, 5), 50.0, later())];
    let w1 = compute_weights(
        OffloadStrategy::Lease,
        &load(130.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    let w2 = compute_weights(
        OffloadStrategy::Lease,
        &load(131.0, 100.0),
        &peers,
        &p,
        Some(&w1),
        NOW,
    );
    assert_eq!(w1, w2);
    let w3 = compute_weights(
        OffloadStrategy::Lease,
        &load(145.0, 100.0),
        &peers,
        &p,
        Some(&w1),
        NOW,
    );
    assert_ne!(w1, w3);
}

#[test]
fn lease_counts_the_backlog_as_demand_so_a_growing_queue_starts_the_spill_at_once() {
    let p = Params::default();
    let peers = [offering(peer(2, 5), 50.0, later())];
    let queued = FunctionLoad {
        queue_len: 30,
        ..load(100.0, 100.0)
    };
    let w = compute_weights(OffloadStrategy::Lease, &queued, &peers, &p, None, NOW);
    assert!(w.peer(node(2)) > 0 && w.reject == 0, "{w:?}");
}

#[test]
fn lease_forwards_to_the_nearest_leases_first_and_farther_ones_only_while_nearer_ones_fall_short() {
    let p = Params {
        neighbourhood: 2,
        max_forward_rtt: Duration::from_millis(40),
        ..Params::default()
    };
    let peers = [
        offering(peer(1, 30), 10.0, later()),
        offering(peer(2, 200), 1000.0, later()), // far: beyond max_forward_rtt
        offering(peer(3, 5), 10.0, later()),
        offering(peer(4, 35), 1000.0, later()), // within reach, third nearest
        offering(peer(5, 1), 1000.0, later()),  // nearest, but does not host the function
    ];
    let mut peers = peers.to_vec();
    peers[4].hosts_function = false;
    // An excess of 17 (112 against 95 kept here): the two nearest leases (10 + 10) cover it,
    // the nearest first.
    let small = compute_weights(
        OffloadStrategy::Lease,
        &load(112.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    assert_eq!(small.reject, 0);
    assert_eq!(
        small.peers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [node(1), node(3)]
    );
    assert!(small.peer(node(3)) > small.peer(node(1)), "{small:?}");
    // An excess of 405: the third nearest lease joins; the far one and the non-host never.
    let w = compute_weights(
        OffloadStrategy::Lease,
        &load(500.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    assert_eq!(w.reject, 0);
    let named: Vec<NodeId> = w.peers.iter().map(|(n, _)| *n).collect();
    assert_eq!(named, vec![node(1), node(3), node(4)]);
    for roll in 0..WEIGHT_SCALE {
        assert!(!matches!(
            w.select(roll),
            Decision::Forward(n) if n == node(2) || n == node(5)
        ));
    }
    // Every peer in reach offers capacity: standing offers go to all of them, none beyond.
    let offers = offers_to_peers(
        OffloadStrategy::Lease,
        &load(10.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    let to: Vec<NodeId> = offers.iter().map(|(n, _)| *n).collect();
    assert_eq!(to, vec![node(3), node(1), node(4)]);
}

#[test]
fn lease_offers_its_spare_capacity_only_to_peers_in_reach_that_offer_none_back() {
    let p = Params::default();
    // Peer 1 offers capacity (it has spare); peers 2 and 3 offer none (spilling or full); peer
    // 4 offers none but is beyond max_forward_rtt.
    let peers = [
        offering(peer(1, 5), 20.0, later()),
        peer(2, 10),
        peer(3, 150),
        peer(4, 500),
    ];
    let offers = offers_to_peers(
        OffloadStrategy::Lease,
        &load(35.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    // 95 - 35 = 60 spare, split between the two in need, the farther one too.
    let to: Vec<NodeId> = offers.iter().map(|(n, _)| *n).collect();
    assert_eq!(to, vec![node(2), node(3)]);
    for (_, o) in &offers {
        assert!((o.rate - 30.0).abs() < 1e-9, "{o:?}");
    }
}

#[test]
fn lease_drains_its_backlog_before_keeping_new_requests_here() {
    let p = Params::default(); // queue_drain 500 ms, hysteresis 5 %
    let peers = [offering(peer(2, 5), 200.0, later())];
    let calm = compute_weights(
        OffloadStrategy::Lease,
        &load(200.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    // 95 of 200 kept here.
    assert_eq!(calm.local, 475, "{calm:?}");
    // 20 queued drain at 40 req/s within 500 ms: only 55 new requests a second stay here.
    let queued = FunctionLoad {
        queue_len: 20,
        ..load(200.0, 100.0)
    };
    let w = compute_weights(OffloadStrategy::Lease, &queued, &peers, &p, None, NOW);
    assert_eq!(w.local, 275, "{w:?}");
    assert_eq!(w.reject, 0);
}

#[test]
fn lease_offers_spare_capacity_below_the_hysteresis_band_split_among_nearby_peers() {
    let p = Params::default();
    let peers = [peer(1, 5), peer(2, 10), peer(3, 20), peer(4, 500)];
    let offers = offers_to_peers(
        OffloadStrategy::Lease,
        &load(35.0, 100.0),
        &peers,
        &p,
        None,
        NOW,
    );
    assert_eq!(offers.len(), 3);
    for (_, o) in &offers {
        assert!((o.rate - 20.0).abs() < 1e-9, "{o:?}");
        assert_eq!(o.expires_at, at(1_003_000));
    }
    // A node that is itself spilling offers nothing.
    let spilling = Weights {
        local: 900,
        peers: vec![(node(1), 100)],
        reject: 0,
    };
    assert!(
        offers_to_peers(
            OffloadStrategy::Lease,
            &load(35.0, 100.0),
            &peers,
            &p,
            Some(&spilling),
            NOW
        )
        .is_empty()
    );
}

#[test]
fn lease_alone_rejects_nothing_and_leaves_overload_to_the_bounded_queue() {
    let p = Params::default();
    let far = peer(3, 500); // beyond max_forward_rtt
    let mut dead = peer(2, 5);
    dead.alive = false;
    for peers in [vec![], vec![dead], vec![far]] {
        let w = compute_weights(
            OffloadStrategy::Lease,
            &load(200.0, 100.0),
            &peers,
            &p,
            None,
            NOW,
        );
        assert_eq!(w, Weights::all_local(), "{peers:?}");
    }
}

#[test]
fn lease_without_leases_queues_an_excess_until_its_backlog_would_outlast_queue_drain() {
    let p = Params::default(); // queue_drain 500 ms
    let no_offer = [peer(2, 5)];
    // The overload just began and no lease is in place yet: the queue takes it.
    let w = compute_weights(
        OffloadStrategy::Lease,
        &load(200.0, 100.0),
        &no_offer,
        &p,
        None,
        NOW,
    );
    assert_eq!(w, Weights::all_local());
    // 49 queued drain within 500 ms at 100 req/s: still queued.
    let short = FunctionLoad {
        queue_len: 49,
        ..load(200.0, 100.0)
    };
    let w = compute_weights(OffloadStrategy::Lease, &short, &no_offer, &p, None, NOW);
    assert_eq!(w, Weights::all_local());
    // 60 queued would take 600 ms: new requests are refused until the backlog drains.
    let long = FunctionLoad {
        queue_len: 60,
        ..load(200.0, 100.0)
    };
    let w = compute_weights(OffloadStrategy::Lease, &long, &no_offer, &p, None, NOW);
    assert_eq!(
        w,
        Weights {
            local: 0,
            peers: vec![],
            reject: 1000
        }
    );
    // With 40 queued (80 req/s to drain), 20 of the 100 req/s of capacity are left for new
    // requests once a lease covers part of the excess: headroom used, the rest over-books.
    let with_lease = [offering(peer(2, 5), 50.0, later())];
    let mid = FunctionLoad {
        queue_len: 40,
        ..load(200.0, 100.0)
    };
    let w = compute_weights(OffloadStrategy::Lease, &mid, &with_lease, &p, None, NOW);
    assert_eq!((w.local, w.peer(node(2)), w.reject), (100, 900, 0));
}

#[test]
fn node_margin_moves_weight_in_bounded_steps_towards_peers_with_margin_and_back() {
    let p = Params::default(); // step 50 per mille
    let mut a = peer(1, 5);
    a.margin = Some(30.0);
    let mut b = peer(2, 5);
    b.margin = Some(10.0);
    let c = peer(3, 5); // shared no margin
    let peers = [a, b, c];
    let hot = FunctionLoad {
        node_usage: Some(95.0),
        ..load(10.0, 100.0)
    };
    let w1 = compute_weights(OffloadStrategy::NodeMargin, &hot, &peers, &p, None, NOW);
    assert_eq!(w1.local, 950);
    assert_eq!(w1.peer(node(1)) + w1.peer(node(2)), 50);
    assert!(w1.peer(node(1)) > 2 * w1.peer(node(2)));
    assert_eq!(w1.peer(node(3)), 0);
    let mut w = w1;
    for _ in 0..5 {
        w = compute_weights(OffloadStrategy::NodeMargin, &hot, &peers, &p, Some(&w), NOW);
    }
    assert_eq!(w.local, 700);
    // Back to margin: weight returns towards local, one step at a time.
    let cool = FunctionLoad {
        node_usage: Some(40.0),
        ..hot
    };
    let back = compute_weights(
        OffloadStrategy::NodeMargin,
        &cool,
        &peers,
        &p,
        Some(&w),
        NOW,
    );
    assert_eq!(back.local, 750);
    assert_eq!(back.reject, 0);
    // Between the thresholds nothing moves.
    let mid = FunctionLoad {
        node_usage: Some(70.0),
        ..hot
    };
    let same = compute_weights(
        OffloadStrategy::NodeMargin,
        &mid,
        &peers,
        &p,
        Some(&back),
        NOW,
    );
    assert_eq!(same, back);
}

#[test]
fn node_margin_sheds_a_saturated_function_even_when_the_cpu_is_idle() {
    // A sleeping function capped at 10 req/s receives 50 req/s: the CPU says 20 %, the
    // function's capacity says 500 %. The larger one counts.
    let hot = FunctionLoad {
        node_usage: Some(20.0),
        ..load(50.0, 10.0)
    };
    assert_eq!(hot.usage(), Some(500.0));
    let mut a = peer(1, 5);
    a.margin = Some(40.0);
    let w = compute_weights(
        OffloadStrategy::NodeMargin,
        &hot,
        &[a],
        &Params::default(),
        None,
        NOW,
    );
    assert_eq!(w.peer(node(1)), 50, "{w:?}");
    // Either signal alone is used when the other is unknown; neither gives none.
    let cpu_only = FunctionLoad {
        node_usage: Some(20.0),
        capacity: None,
        ..hot
    };
    assert_eq!(cpu_only.usage(), Some(20.0));
    let slots_only = FunctionLoad {
        node_usage: None,
        ..hot
    };
    assert_eq!(slots_only.usage(), Some(500.0));
    let neither = FunctionLoad {
        node_usage: Some(f64::NAN),
        capacity: None,
        ..hot
    };
    assert_eq!(neither.usage(), None);
}

#[test]
fn node_margin_drops_peers_that_died_and_returns_their_weight_to_local() {
    let p = Params::default();
    let prev = Weights {
        local: 700,
        peers: vec![(node(1), 300)],
        reject: 0,
    };
    let mut gone = peer(1, 5);
    gone.alive = false;
    let w = compute_weights(
        OffloadStrategy::NodeMargin,
        &FunctionLoad {
            node_usage: Some(70.0),
            ..load(10.0, 100.0)
        },
        &[gone],
        &p,
        Some(&prev),
        NOW,
    );
    assert_eq!(w, Weights::all_local());
}

fn arb_strategy() -> impl Strategy<Value = OffloadStrategy> {
    prop_oneof![
        Just(OffloadStrategy::Static),
        Just(OffloadStrategy::Recalc),
        Just(OffloadStrategy::NodeMargin),
        Just(OffloadStrategy::Lease),
    ]
}

fn arb_peer() -> impl Strategy<Value = (u64, bool, bool, Option<(u32, i64)>, Option<u32>)> {
    (
        0u64..300,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((0u32..200, -3_000i64..5_000)),
        proptest::option::of(0u32..60),
    )
}

proptest! {
    #[test]
    fn weights_sum_to_the_scale_and_never_name_a_dead_non_hosting_or_unfit_peer(
        strategy in arb_strategy(),
        raw in proptest::collection::vec(arb_peer(), 0..7),
        steps in proptest::collection::vec((0u32..400, proptest::option::of(0u32..300), 0u32..50, proptest::option::of(0u32..120)), 1..6),
    ) {
        let p = Params::default();
        let peers: Vec<PeerView> = raw
            .iter()
            .enumerate()
            .map(|(i, &(rtt, alive, hosts, offer, margin))| PeerView {
                node: node(i as u128 + 1),
                rtt: Duration::from_millis(rtt),
                alive,
                hosts_function: hosts,
                offer: offer.map(|(rate, dt)| CapacityOffer {
                    rate: rate as f64,
                    expires_at: at((NOW.as_millis() as i64 + dt) as u64),
                }),
                margin: margin.map(f64::from),
            })
            .collect();
        let reach: Vec<NodeId> = in_reach(&peers, &p).iter().map(|p| p.node).collect();
        let mut prev: Option<Weights> = None;
        for (rate, cap, queue, usage) in steps {
            let l = FunctionLoad {
                local_rate: rate as f64,
                capacity: cap.map(f64::from),
                in_flight: 0,
                queue_len: queue,
                node_usage: usage.map(f64::from),
            };
            let w = compute_weights(strategy, &l, &peers, &p, prev.as_ref(), NOW);
            prop_assert_eq!(w.total(), WEIGHT_SCALE);
            let mut ids: Vec<NodeId> = w.peers.iter().map(|(n, _)| *n).collect();
            let sorted = { let mut s = ids.clone(); s.sort(); s };
            prop_assert_eq!(&ids, &sorted);
            ids.dedup();
            prop_assert_eq!(ids.len(), w.peers.len());
            for &(n, weight) in &w.peers {
                prop_assert!(weight > 0);
                let v = peers.iter().find(|p| p.node == n).unwrap();
                prop_assert!(v.alive && v.hosts_function, "{:?} names {:?}", strategy, v);
                if strategy == OffloadStrategy::Lease {
                    prop_assert!(reach.contains(&n) && v.live_offer(NOW) > 0.0);
                }
            }
            if w.reject > 0 {
                let cap = l.capacity.unwrap();
                // Local capacity is used in full before anything is rejected (lease: the
                // backlog would not drain within queue_drain)...
                if strategy == OffloadStrategy::Lease {
                    prop_assert!(l.queue_len as f64 / p.queue_drain.as_secs_f64() >= cap);
                } else {
                    prop_assert!(l.local_rate + l.queue_len as f64 > cap);
                }
                // ...and no eligible peer holds a live offer.
                let eligible: Vec<&PeerView> = match strategy {
                    OffloadStrategy::Lease => in_reach(&peers, &p),
                    _ => peers.iter().filter(|p| p.alive && p.hosts_function).collect(),
                };
                prop_assert!(eligible.iter().all(|p| p.live_offer(NOW) == 0.0));
            }
            for (n, o) in offers_to_peers(strategy, &l, &peers, &p, prev.as_ref(), NOW) {
                prop_assert!(o.rate > 0.0 && o.expires_at > NOW);
                let v = peers.iter().find(|p| p.node == n).unwrap();
                prop_assert!(v.alive && v.hosts_function);
            }
            prev = Some(w);
        }
    }
}
