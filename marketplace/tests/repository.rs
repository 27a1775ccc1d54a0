//! The repository suite: the same test bodies run against SQLite and PostgreSQL.
//! PostgreSQL variants need `FOGMARKET_TEST_POSTGRES_URL`: without it they fail, and `just test`
//! reports them as skipped instead of starting them.

mod common;

use common::TestDb;
use marketplace::repository::{
    AuctionResult, BidRecord, HeartbeatOutcome, LivePlacement, NodeRecord, PlacementRecord,
    PlacementState, Repository, outcome,
};
use marketplace::schema::{EARLIER_TEXTS, EarlierText, MIGRATOR};
use model::auction::AuctionRule;
use model::latency::PathLatency;
use model::protocol::{Bid, Refusal, RefusalReason, Resources};
use model::{AuctionId, BidId, Bytes, Cpu, NodeId, Price, Sla, SlaId, Timestamp};

fn node(name: &str, parent: Option<&str>, now: Timestamp) -> NodeRecord {
    NodeRecord {
        id: NodeId::new(),
        name: name.to_string(),
        owner: "alice".into(),
        tags: vec!["edge".into(), "gpu".into()],
        parent: parent.map(str::to_string),
        url: format!("http://127.0.0.1:9{}", name.len()),
        capacity: Resources::new(Cpu::from_cores(4), Bytes::from_mib(8192)),
        reserved: Resources::ZERO,
        last_seen: now,
        alive: true,
        registered_at: now,
        public_key: Some(common::node_key(name).public()),
    }
}

fn sla(nodes: u32, max_price: Option<f64>) -> Sla {
    let mut v = common::sla();
    v["nodes"] = nodes.into();
    if let Some(p) = max_price {
        v["maxPrice"] = p.into();
    }
    Sla::from_json(&v, SlaId::new(), "sla").expect("valid SLA")
}

fn bid(node: &NodeRecord, price: f64) -> Bid {
    Bid {
        node_id: node.id,
        id: BidId::new(),
        bid: Price::new(price).expect("price"),
        node_name: node.name.clone(),
        node_url: node.url.clone(),
        latency: PathLatency::from_latency(model::Latency::from_millis(7)),
        utilisation: 0.25,
        hold_expires_at: Timestamp::from_millis(5_000),
    }
}

async fn open(db: &TestDb) -> Repository {
    Repository::connect(&db.url())
        .await
        .expect("connects and migrates")
}

async fn nodes_are_upserted_by_name_and_listed(db: &TestDb) {
    let repo = open(db).await;
    let t0 = Timestamp::from_millis(1_000);
    let cloud = node("cloud", None, t0);
    let edge = node("edge-1", Some("cloud"), t0);
    repo.upsert_node(&cloud).await.unwrap();
    repo.upsert_node(&edge).await.unwrap();

    // Re-registration with the same name keeps the id and updates the rest.
    let mut again = node("edge-1", Some("cloud"), Timestamp::from_millis(2_000));
    again.url = "http://10.0.0.9:8080".into();
    repo.upsert_node(&again).await.unwrap();

    let all = repo.list_nodes().await.unwrap();
    assert_eq!(all.len(), 2);
    let e = repo.node_by_name("edge-1").await.unwrap().unwrap();
    assert_eq!(e.id, edge.id, "the first id is kept");
    assert_eq!(e.url, "http://10.0.0.9:8080");
    assert_eq!(e.tags, vec!["edge".to_string(), "gpu".to_string()]);
    assert_eq!(e.parent.as_deref(), Some("cloud"));
    assert_eq!(e.capacity, edge.capacity);
    assert_eq!(repo.node_by_id(cloud.id).await.unwrap().unwrap(), cloud);
    assert!(repo.node_by_id(NodeId::new()).await.unwrap().is_none());
}

async fn heartbeats_and_liveness_update_nodes(db: &TestDb) {
    let repo = open(db).await;
    let n = node("n", None, Timestamp::from_millis(1_000));
    repo.upsert_node(&n).await.unwrap();
    let reserved = Resources::new(Cpu::from_millis(500), Bytes::from_mib(256));
    assert_eq!(
        repo.record_heartbeat(
            n.id,
            reserved,
            Some("http://127.0.0.1:1"),
            Timestamp::from_millis(5_000)
        )
        .await
        .unwrap(),
        HeartbeatOutcome::Changed,
        "a new URL is a change"
    );
    assert_eq!(
        repo.record_heartbeat(NodeId::new(), reserved, None, Timestamp::from_millis(5_000))
            .await
            .unwrap(),
        HeartbeatOutcome::Unknown,
        "unknown nodes are reported"
    );
    let got = repo.node_by_id(n.id).await.unwrap().unwrap();
    assert_eq!(got.reserved, reserved);
    assert_eq!(got.url, "http://127.0.0.1:1");
    assert_eq!(got.last_seen, Timestamp::from_millis(5_000));

    // Alive at the same URL (given again, or not given): only load and time change.
    let more = Resources::new(Cpu::from_millis(700), Bytes::from_mib(256));
    for url in [Some("http://127.0.0.1:1"), None] {
        assert_eq!(
            repo.record_heartbeat(n.id, more, url, Timestamp::from_millis(5_000))
                .await
                .unwrap(),
            HeartbeatOutcome::Unchanged,
            "url {url:?}"
        );
    }
    assert_eq!(repo.node_by_id(n.id).await.unwrap().unwrap().reserved, more);

    assert_eq!(
        repo.mark_nodes_dead_since(Timestamp::from_millis(5_000))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        repo.mark_nodes_dead_since(Timestamp::from_millis(5_001))
            .await
            .unwrap(),
        1
    );
    assert!(!repo.node_by_id(n.id).await.unwrap().unwrap().alive);

    // A heartbeat from a dead node revives it, and says so.
    assert_eq!(
        repo.record_heartbeat(n.id, reserved, None, Timestamp::from_millis(6_000))
            .await
            .unwrap(),
        HeartbeatOutcome::Changed
    );
    let got = repo.node_by_id(n.id).await.unwrap().unwrap();
    assert!(got.alive);
    assert_eq!(got.last_seen, Timestamp::from_millis(6_000));
}

async fn an_auction_with_bids_and_placements_reads_back(db: &TestDb) {
    let repo = open(db).await;
    let now = Timestamp::from_millis(10_000);
    let a = node("a", None, now);
    let b = node("b", Some("a"), now);
    repo.upsert_node(&a).await.unwrap();
    repo.upsert_node(&b).await.unwrap();
    let s = sla(1, Some(9.5));
    let auction = AuctionId::new();
    repo.insert_sla_and_auction(&s, a.id, auction, AuctionRule::Vickrey, now)
        .await
        .unwrap();
    let running = repo.auction(auction).await.unwrap().unwrap();
    assert_eq!(running.outcome, outcome::RUNNING);
    assert_eq!(running.finished_at, None);

    let (ba, bb) = (bid(&a, 3.25), bid(&b, 2.5));
    let refusal = Refusal {
        node_id: a.id,
        node_name: "a".into(),
        reason: RefusalReason::Busy,
    };
    let placement = PlacementRecord {
        sla_id: s.id,
        node_id: b.id,
        bid_id: bb.id,
        auction_id: auction,
        price: Price::new(3.25).unwrap(),
        state: PlacementState::Reserved,
        created_at: now,
        ends_at: Timestamp::from_millis(40_000),
        updated_at: now,
        invoke_url: None,
        error: None,
    };
    repo.record_auction_result(&AuctionResult {
        auction_id: auction,
        finished_at: Timestamp::from_millis(10_042),
        outcome: outcome::AWARDED.into(),
        refusals: vec![refusal.clone()],
        bids: vec![
            BidRecord {
                auction_id: auction,
                bid: ba.clone(),
                won: false,
                refused_accept: true,
            },
            BidRecord {
                auction_id: auction,
                bid: bb.clone(),
                won: true,
                refused_accept: false,
            },
        ],
        placements: vec![placement.clone()],
        moved: Vec::new(),
        events: Vec::new(),
    })
    .await
    .unwrap();

    let stored = repo.sla(s.id).await.unwrap().unwrap();
    assert_eq!(stored.sla, s);
    assert_eq!(stored.target_node, a.id);
    assert_eq!(repo.list_slas().await.unwrap().len(), 1);

    let done = repo.auction(auction).await.unwrap().unwrap();
    assert_eq!(done.outcome, outcome::AWARDED);
    assert_eq!(done.rule, "vickrey");
    assert_eq!(done.finished_at, Some(Timestamp::from_millis(10_042)));
    assert_eq!(done.refusals, vec![refusal]);
    assert_eq!(
        repo.auction_for_sla(s.id).await.unwrap().unwrap().id,
        auction
    );

    let bids = repo.bids(auction).await.unwrap();
    assert_eq!(bids.len(), 2);
    assert_eq!(bids[0].bid, bb, "lowest first, full bid kept");
    assert!(bids[0].won && !bids[0].refused_accept);
    assert!(!bids[1].won && bids[1].refused_accept);

    assert_eq!(
        repo.placements_for_sla(s.id).await.unwrap(),
        vec![placement.clone()]
    );
    assert_eq!(repo.list_placements().await.unwrap(), vec![placement]);

    // The same SLA id cannot be stored twice (client-chosen ids): a conflict, not a crash.
    let err = repo
        .insert_sla_and_auction(&s, a.id, AuctionId::new(), AuctionRule::Vickrey, now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, marketplace::repository::RepoError::Conflict(_)),
        "{err}"
    );
}

async fn placement_states_move_and_expire(db: &TestDb) {
    let repo = open(db).await;
    let now = Timestamp::from_millis(1_000);
    let n = node("n", None, now);
    repo.upsert_node(&n).await.unwrap();
    let mut ids = Vec::new();
    for ends in [5_000, 9_000] {
        let s = sla(1, None);
        let auction = AuctionId::new();
        repo.insert_sla_and_auction(&s, n.id, auction, AuctionRule::FirstPrice, now)
            .await
            .unwrap();
        repo.insert_placement(&PlacementRecord {
            sla_id: s.id,
            node_id: n.id,
            bid_id: BidId::new(),
            auction_id: auction,
            price: Price::new(1.0).unwrap(),
            state: PlacementState::Reserved,
            created_at: now,
            ends_at: Timestamp::from_millis(ends),
            updated_at: now,
            invoke_url: None,
            error: None,
        })
        .await
        .unwrap();
        ids.push(s.id);
    }
    assert!(
        repo.set_placement_state(
            ids[0],
            n.id,
            PlacementState::Live,
            Timestamp::from_millis(2_000)
        )
        .await
        .unwrap()
    );
    assert!(
        !repo
            .set_placement_state(SlaId::new(), n.id, PlacementState::Live, now)
            .await
            .unwrap()
    );
    let p = &repo.placements_for_sla(ids[0]).await.unwrap()[0];
    assert_eq!(p.state, PlacementState::Live);
    assert_eq!(p.updated_at, Timestamp::from_millis(2_000));

    assert_eq!(
        repo.finish_due_placements(Timestamp::from_millis(4_999))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        repo.finish_due_placements(Timestamp::from_millis(5_000))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.placements_for_sla(ids[0]).await.unwrap()[0].state,
        PlacementState::Finished
    );
    // Cancelled placements are never "finished" afterwards.
    repo.set_placement_state(
        ids[1],
        n.id,
        PlacementState::Cancelled,
        Timestamp::from_millis(6_000),
    )
    .await
    .unwrap();
    assert_eq!(
        repo.finish_due_placements(Timestamp::from_millis(99_000))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        repo.placements_for_sla(ids[1]).await.unwrap()[0].state,
        PlacementState::Cancelled
    );
}

async fn state_survives_closing_and_reopening(db: &TestDb) {
    let now = Timestamp::from_millis(1_000);
    let n = node("n", None, now);
    let s = sla(1, None);
    let key;
    {
        let repo = open(db).await;
        key = repo
            .meta_get_or_init("marketplace_key", || "k1".into())
            .await
            .unwrap();
        repo.upsert_node(&n).await.unwrap();
        let auction = AuctionId::new();
        repo.insert_sla_and_auction(&s, n.id, auction, AuctionRule::Vickrey, now)
            .await
            .unwrap();
        repo.insert_placement(&PlacementRecord {
            sla_id: s.id,
            node_id: n.id,
            bid_id: BidId::new(),
            auction_id: auction,
            price: Price::new(2.0).unwrap(),
            state: PlacementState::Reserved,
            created_at: now,
            ends_at: Timestamp::from_millis(60_000),
            updated_at: now,
            invoke_url: None,
            error: None,
        })
        .await
        .unwrap();
        repo.close().await;
    }
    let repo = open(db).await;
    assert_eq!(key, "k1");
    assert_eq!(
        repo.meta_get_or_init("marketplace_key", || "k2".into())
            .await
            .unwrap(),
        "k1",
        "the first value is kept"
    );
    assert_eq!(repo.node_by_id(n.id).await.unwrap().unwrap().name, "n");
    assert_eq!(repo.mark_all_nodes_dead().await.unwrap(), 1);
    assert!(!repo.node_by_id(n.id).await.unwrap().unwrap().alive);
    assert_eq!(repo.sla(s.id).await.unwrap().unwrap().sla, s);
    assert_eq!(repo.placements_for_sla(s.id).await.unwrap().len(), 1);
}

/// One SLA placed on `n` in `state`, created at 1 000 and last updated at `updated`, with one
/// bid per auction; `None` = the auction found no host (no placement).
async fn closed_sla(
    repo: &Repository,
    n: &NodeRecord,
    state: Option<PlacementState>,
    updated: u64,
) -> (SlaId, AuctionId) {
    let created = Timestamp::from_millis(1_000);
    let s = sla(1, None);
    let auction = AuctionId::new();
    repo.insert_sla_and_auction(&s, n.id, auction, AuctionRule::Vickrey, created)
        .await
        .unwrap();
    let b = bid(n, 1.0);
    let placements = state
        .map(|state| PlacementRecord {
            sla_id: s.id,
            node_id: n.id,
            bid_id: b.id,
            auction_id: auction,
            price: Price::new(1.0).unwrap(),
            state,
            created_at: created,
            ends_at: Timestamp::from_millis(updated),
            updated_at: Timestamp::from_millis(updated),
            invoke_url: None,
            error: None,
        })
        .into_iter()
        .collect();
    repo.record_auction_result(&AuctionResult {
        auction_id: auction,
        finished_at: created,
        outcome: outcome::AWARDED.into(),
        refusals: vec![],
        bids: vec![BidRecord {
            auction_id: auction,
            bid: b,
            won: state.is_some(),
            refused_accept: false,
        }],
        placements,
        moved: Vec::new(),
        events: Vec::new(),
    })
    .await
    .unwrap();
    (s.id, auction)
}

async fn history_older_than_the_retention_is_purged_but_active_placements_stay(db: &TestDb) {
    let repo = open(db).await;
    let n = node("n", None, Timestamp::from_millis(1_000));
    repo.upsert_node(&n).await.unwrap();
    let finished = closed_sla(&repo, &n, Some(PlacementState::Finished), 2_000).await;
    let never_placed = closed_sla(&repo, &n, None, 1_000).await;
    let live = closed_sla(&repo, &n, Some(PlacementState::Live), 2_000).await;
    let recent = closed_sla(&repo, &n, Some(PlacementState::Cancelled), 20_000).await;

    let purged = repo
        .purge_history(Timestamp::from_millis(10_000))
        .await
        .unwrap();
    assert_eq!(purged, 2);
    for (sla, auction) in [finished, never_placed] {
        assert!(repo.sla(sla).await.unwrap().is_none());
        assert!(repo.auction(auction).await.unwrap().is_none());
        assert!(repo.bids(auction).await.unwrap().is_empty());
        assert!(repo.placements_for_sla(sla).await.unwrap().is_empty());
    }
    for (sla, auction) in [live, recent] {
        assert!(repo.sla(sla).await.unwrap().is_some());
        assert_eq!(repo.bids(auction).await.unwrap().len(), 1);
        assert_eq!(repo.placements_for_sla(sla).await.unwrap().len(), 1);
    }
    // Nothing left to purge at the same cutoff.
    assert_eq!(
        repo.purge_history(Timestamp::from_millis(10_000))
            .await
            .unwrap(),
        0
    );
}

async fn provisioning_outcomes_are_recorded_with_url_or_error(db: &TestDb) {
    let repo = open(db).await;
    let n = node("n", None, Timestamp::from_millis(1_000));
    repo.upsert_node(&n).await.unwrap();
    let (live, _) = closed_sla(&repo, &n, Some(PlacementState::Reserved), 50_000).await;
    let (failed, _) = closed_sla(&repo, &n, Some(PlacementState::Reserved), 50_000).await;
    let url = "http://127.0.0.1:1234/function/fogfn-x";
    assert!(
        repo.set_placement_provisioned(
            live,
            n.id,
            PlacementState::Live,
            Some(url),
            None,
            Timestamp::from_millis(3_000)
        )
        .await
        .unwrap()
    );
    assert!(
        repo.set_placement_provisioned(
            failed,
            n.id,
            PlacementState::Failed,
            None,
            Some("image unknown"),
            Timestamp::from_millis(3_000)
        )
        .await
        .unwrap()
    );
    let p = &repo.placements_for_sla(live).await.unwrap()[0];
    assert_eq!(
        (p.state, p.invoke_url.as_deref(), p.error.as_deref()),
        (PlacementState::Live, Some(url), None)
    );
    let p = &repo.placements_for_sla(failed).await.unwrap()[0];
    assert_eq!(
        (p.state, p.invoke_url.as_deref(), p.error.as_deref()),
        (PlacementState::Failed, None, Some("image unknown"))
    );
}

async fn live_placements_are_listed_with_their_sla(db: &TestDb) {
    let repo = open(db).await;
    let a = node("a", None, Timestamp::from_millis(1_000));
    let b = node("b", Some("a"), Timestamp::from_millis(1_000));
    repo.upsert_node(&a).await.unwrap();
    repo.upsert_node(&b).await.unwrap();
    let (live, _) = closed_sla(&repo, &a, Some(PlacementState::Reserved), 50_000).await;
    let (_reserved, _) = closed_sla(&repo, &a, Some(PlacementState::Reserved), 50_000).await;
    let (_none, _) = closed_sla(&repo, &a, None, 50_000).await;
    // A second host of the live SLA, live too.
    let auction = repo.auction_for_sla(live).await.unwrap().unwrap().id;
    repo.insert_placement(&PlacementRecord {
        sla_id: live,
        node_id: b.id,
        bid_id: BidId::new(),
        auction_id: auction,
        price: Price::new(1.0).unwrap(),
        state: PlacementState::Live,
        created_at: Timestamp::from_millis(1_000),
        ends_at: Timestamp::from_millis(50_000),
        updated_at: Timestamp::from_millis(1_000),
        invoke_url: None,
        error: None,
    })
    .await
    .unwrap();
    assert_eq!(
        repo.live_placements().await.unwrap().len(),
        1,
        "only b so far"
    );
    repo.set_placement_state(
        live,
        a.id,
        PlacementState::Live,
        Timestamp::from_millis(2_000),
    )
    .await
    .unwrap();

    let got = repo.live_placements().await.unwrap();
    let sla = repo.sla(live).await.unwrap().unwrap().sla;
    let mut want: Vec<LivePlacement> = [a.id, b.id]
        .into_iter()
        .map(|node_id| LivePlacement {
            sla_id: live,
            node_id,
            ends_at: Timestamp::from_millis(50_000),
            sla: sla.clone(),
            target_node: a.id,
        })
        .collect();
    want.sort_by_key(|p| p.node_id.to_string());
    assert_eq!(
        got, want,
        "both hosts of the live SLA, by node id; nothing else"
    );

    assert_eq!(
        repo.finish_due_placements(Timestamp::from_millis(50_000))
            .await
            .unwrap(),
        3
    );
    assert!(repo.live_placements().await.unwrap().is_empty());
}

/// One auction per SLA: `placed` on `host` (a placement in `state`), or none.
async fn auction_at(
    repo: &Repository,
    target: &NodeRecord,
    host: Option<(&NodeRecord, PlacementState)>,
    at: u64,
) -> (Sla, AuctionId, Vec<Bid>) {
    let s = sla(1, None);
    let auction = AuctionId::new();
    let now = Timestamp::from_millis(at);
    repo.insert_sla_and_auction(&s, target.id, auction, AuctionRule::Vickrey, now)
        .await
        .unwrap();
    let bids: Vec<Bid> = host.iter().map(|(n, _)| bid(n, 2.0)).collect();
    repo.record_auction_result(&AuctionResult {
        auction_id: auction,
        finished_at: Timestamp::from_millis(at + 5),
        outcome: if host.is_some() {
            outcome::AWARDED
        } else {
            outcome::NO_FEASIBLE_NODE
        }
        .into(),
        refusals: Vec::new(),
        bids: bids
            .iter()
            .map(|b| BidRecord {
                auction_id: auction,
                bid: b.clone(),
                won: true,
                refused_accept: false,
            })
            .collect(),
        placements: host
            .iter()
            .zip(&bids)
            .map(|((n, state), b)| PlacementRecord {
                sla_id: s.id,
                node_id: n.id,
                bid_id: b.id,
                auction_id: auction,
                price: Price::new(2.5).unwrap(),
                state: *state,
                created_at: now,
                ends_at: Timestamp::from_millis(at + 60_000),
                updated_at: now,
                invoke_url: None,
                error: None,
            })
            .collect(),
        moved: Vec::new(),
        events: Vec::new(),
    })
    .await
    .unwrap();
    (s, auction, bids)
}

async fn dashboard_queries_read_active_placements_recent_auctions_and_counts(db: &TestDb) {
    let repo = open(db).await;
    let now = Timestamp::from_millis(1_000);
    let a = node("a", None, now);
    let mut b = node("b", Some("a"), now);
    b.alive = false;
    repo.upsert_node(&a).await.unwrap();
    repo.upsert_node(&b).await.unwrap();
    assert_eq!(repo.count_nodes_by_liveness().await.unwrap(), (1, 1));

    let (live, live_auction, live_bids) =
        auction_at(&repo, &a, Some((&b, PlacementState::Live)), 2_000).await;
    let (_, failed_auction, _) = auction_at(&repo, &a, None, 3_000).await;
    let (_, _, _) = auction_at(&repo, &a, Some((&a, PlacementState::Cancelled)), 4_000).await;
    let (reserved, _, _) = auction_at(&repo, &b, Some((&a, PlacementState::Reserved)), 5_000).await;

    // Active placements with their SLAs, oldest first; cancelled ones are over.
    let active = repo.active_placements().await.unwrap();
    let ids: Vec<SlaId> = active.iter().map(|p| p.placement.sla_id).collect();
    assert_eq!(ids, vec![live.id, reserved.id]);
    assert_eq!(active[0].sla, live);
    assert_eq!(active[0].target_node, a.id);
    assert_eq!(active[0].placement.node_id, b.id);
    assert_eq!(active[1].placement.state, PlacementState::Reserved);

    // The newest auctions first, limited.
    let recent = repo.recent_auctions(3).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].sla, reserved);
    assert_eq!(recent[2].auction.id, failed_auction);
    assert_eq!(recent[2].auction.outcome, outcome::NO_FEASIBLE_NODE);
    assert_eq!(repo.recent_auctions(20).await.unwrap().len(), 4);

    let bids = repo
        .bids_of_auctions(&[live_auction, failed_auction])
        .await
        .unwrap();
    assert_eq!(bids.len(), 1);
    assert_eq!(bids[0].bid, live_bids[0]);
    assert!(repo.bids_of_auctions(&[]).await.unwrap().is_empty());
    let winners = repo
        .placements_of_auctions(&[live_auction, failed_auction])
        .await
        .unwrap();
    assert_eq!(winners.len(), 1);
    assert_eq!(winners[0].sla_id, live.id);

    let mut counts = repo.count_placements_by_state().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![
            (PlacementState::Cancelled, 1),
            (PlacementState::Live, 1),
            (PlacementState::Reserved, 1),
        ]
    );
}

/// Every recorded checksum of `db`'s migrations, by version (hex).
async fn recorded_checksums(pool: &sqlx::AnyPool) -> Vec<(i64, String)> {
    use sqlx::Row;
    sqlx::query("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>(0), hex::encode(r.get::<Vec<u8>, _>(1))))
        .collect()
}

async fn set_checksum(pool: &sqlx::AnyPool, version: i64, hex_checksum: &str) {
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2")
        .bind(hex::decode(hex_checksum).unwrap())
        .bind(version)
        .execute(pool)
        .await
        .unwrap();
}

/// A database migrated with the earlier texts of the migrations (one copy per engine, whose
/// comments have changed since) records their checksums: it opens, its data intact, and its
/// checksums become the current ones. A checksum that is neither still stops the start.
async fn a_database_recorded_with_earlier_migration_texts_opens(db: &TestDb) {
    let earlier = |e: &EarlierText| match db {
        TestDb::Sqlite { .. } => e.sqlite,
        TestDb::Postgres { .. } => e.postgres,
    };
    let repo = open(db).await;
    repo.meta_get_or_init("kept", || "yes".into())
        .await
        .unwrap();
    repo.close().await;
    let pool = sqlx::AnyPool::connect(&db.url()).await.unwrap();
    let current = recorded_checksums(&pool).await;
    for e in EARLIER_TEXTS {
        set_checksum(&pool, e.version, earlier(e)).await;
    }
    // On a pool of its own: sqlx keeps its migration lock (PostgreSQL) on the connection
    // when it refuses, until the connection closes.
    let probe = sqlx::AnyPool::connect(&db.url()).await.unwrap();
    assert!(
        matches!(
            MIGRATOR.run(&probe).await,
            Err(sqlx::migrate::MigrateError::VersionMismatch(1))
        ),
        "without the repair, sqlx refuses the earlier checksums"
    );
    probe.close().await;

    let repo = open(db).await;
    assert_eq!(
        repo.meta_get_or_init("kept", || "no".into()).await.unwrap(),
        "yes"
    );
    repo.close().await;
    assert_eq!(recorded_checksums(&pool).await, current);

    set_checksum(&pool, 2, &"00".repeat(48)).await;
    assert!(matches!(
        Repository::connect(&db.url()).await,
        Err(marketplace::repository::RepoError::Migration(
            sqlx::migrate::MigrateError::VersionMismatch(2)
        ))
    ));
    pool.close().await;
}

/// Runs each test body on SQLite and on PostgreSQL: `sqlite_name / postgres_name`.
macro_rules! repository_suite {
    ($($name:ident / $on_postgres:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::TestDb::sqlite();
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $on_postgres() {
                    let db = super::TestDb::postgres().await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

repository_suite!(
    nodes_are_upserted_by_name_and_listed / nodes_are_upserted_by_name_and_listed_on_postgres,
    heartbeats_and_liveness_update_nodes / heartbeats_and_liveness_update_nodes_on_postgres,
    an_auction_with_bids_and_placements_reads_back
        / an_auction_with_bids_and_placements_reads_back_on_postgres,
    placement_states_move_and_expire / placement_states_move_and_expire_on_postgres,
    state_survives_closing_and_reopening / state_survives_closing_and_reopening_on_postgres,
    history_older_than_the_retention_is_purged_but_active_placements_stay
        / history_older_than_the_retention_is_purged_but_active_placements_stay_on_postgres,
    provisioning_outcomes_are_recorded_with_url_or_error
        / provisioning_outcomes_are_recorded_with_url_or_error_on_postgres,
    live_placements_are_listed_with_their_sla
        / live_placements_are_listed_with_their_sla_on_postgres,
    dashboard_queries_read_active_placements_recent_auctions_and_counts
        / dashboard_queries_read_active_placements_recent_auctions_and_counts_on_postgres,
    a_database_recorded_with_earlier_migration_texts_opens
        / a_database_recorded_with_earlier_migration_texts_opens_on_postgres,
);
