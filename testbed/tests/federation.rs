//! Multi-process integration tests: the real `marketplace` and `fog-node` binaries on loopback,
//! started by the testbed launcher (port 0 everywhere, readiness polled with deadlines).
//!
//! Build the binaries first: `cargo build --workspace --bins` (`just test` does).
//!
//! Every test runs against SQLite (`sqlite::…`) and against PostgreSQL (`postgres::…`) when
//! `FOGMARKET_TEST_POSTGRES_URL` is set (a fresh database per test). Without it the PostgreSQL
//! variants fail, and `just test` reports them as skipped instead of starting them.

use model::protocol::{ErrorBody, Resources};
use model::units::{Bytes, Cpu};
use model::{NodeId, SlaId};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use testbed::{Federation, LaunchOptions, Topology, http_client, poll_until};

// ---------------------------------------------------------------------------------------------
// Database backends

/// Where the marketplace keeps its data for one test.
struct Backend {
    /// `None`: SQLite in the run directory.
    database_url: Option<String>,
    /// PostgreSQL: (admin URL, database name) to drop afterwards.
    drop_after: Option<(String, String)>,
}

impl Backend {
    fn sqlite() -> Option<Backend> {
        Some(Backend {
            database_url: None,
            drop_after: None,
        })
    }

    /// A fresh PostgreSQL database `fm_it_<uuid>` on the server of
    /// `FOGMARKET_TEST_POSTGRES_URL`. Fails the test when the variable is unset: `just test`
    /// then reports the PostgreSQL variants as skipped instead of starting them.
    async fn postgres() -> Backend {
        use sqlx::Connection;
        let Ok(admin) = std::env::var("FOGMARKET_TEST_POSTGRES_URL") else {
            panic!(
                "FOGMARKET_TEST_POSTGRES_URL is not set (e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres, \
                 printed by `just pg-start`); `just test` skips the PostgreSQL variants without it"
            );
        };
        let name = format!("fm_it_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to FOGMARKET_TEST_POSTGRES_URL={admin:?}: {e}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(&admin).expect("FOGMARKET_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        Backend {
            database_url: Some(url.to_string()),
            drop_after: Some((admin, name)),
        }
    }

    /// Drops the test database (the federation is stopped by then), also after a failure.
    async fn cleanup(&self) {
        use sqlx::Connection;
        if let Some((admin, name)) = &self.drop_after
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Each test body is an `async fn(&Backend)`; this makes a SQLite test of it (`sqlite::<body>`)
/// and a PostgreSQL test (`postgres::<body>_on_postgres`, named so that a filter on `postgres`
/// selects exactly these), and drops the PostgreSQL database after the body, whether it passed
/// or panicked.
macro_rules! federation_tests {
    ($($name:ident => $postgres_name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = super::Backend::sqlite() {
                        let outcome = futures::FutureExt::catch_unwind(
                            std::panic::AssertUnwindSafe(super::$name(&backend)),
                        )
                        .await;
                        backend.cleanup().await;
                        if let Err(panic) = outcome {
                            std::panic::resume_unwind(panic);
                        }
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $postgres_name() {
                    let backend = super::Backend::postgres().await;
                    let outcome = futures::FutureExt::catch_unwind(
                        std::panic::AssertUnwindSafe(super::$name(&backend)),
                    )
                    .await;
                    backend.cleanup().await;
                    if let Err(panic) = outcome {
                        std::panic::resume_unwind(panic);
                    }
                }
            )*
        }
    };
}

federation_tests!(
    the_cheapest_feasible_node_wins_and_is_paid_the_second_lowest_bid
        => the_cheapest_feasible_node_wins_and_is_paid_the_second_lowest_bid_on_postgres,
    two_nodes_wanted_gives_two_distinct_winners_each_paid_the_third_lowest_bid
        => two_nodes_wanted_gives_two_distinct_winners_each_paid_the_third_lowest_bid_on_postgres,
    a_winner_that_refuses_the_accept_makes_the_placement_fall_back_to_the_next_bid
        => a_winner_that_refuses_the_accept_makes_the_placement_fall_back_to_the_next_bid_on_postgres,
    a_slow_subtree_does_not_block_the_auction
        => a_slow_subtree_does_not_block_the_auction_on_postgres,
    a_placement_finishes_when_its_sla_expires_and_frees_the_node
        => a_placement_finishes_when_its_sla_expires_and_frees_the_node_on_postgres,
    cancelling_a_placement_frees_the_node
        => cancelling_a_placement_frees_the_node_on_postgres,
    a_marketplace_restarted_after_kill_9_still_lists_every_node_and_placement
        => a_marketplace_restarted_after_kill_9_still_lists_every_node_and_placement_on_postgres,
    bad_input_is_refused_naming_the_field_or_every_nodes_reason
        => bad_input_is_refused_naming_the_field_or_every_nodes_reason_on_postgres,
    a_latency_budget_too_small_for_any_other_node_is_refused_with_latency_reasons
        => a_latency_budget_too_small_for_any_other_node_is_refused_with_latency_reasons_on_postgres,
    concurrent_placements_never_overcommit_a_node
        => concurrent_placements_never_overcommit_a_node_on_postgres,
    provisioned_functions_run_until_their_sla_ends_and_are_then_removed
        => provisioned_functions_run_until_their_sla_ends_and_are_then_removed_on_postgres,
    a_host_killed_with_sigkill_is_replaced_and_the_access_node_serves_the_function_again
        => a_host_killed_with_sigkill_is_replaced_and_the_access_node_serves_the_function_again_on_postgres,
    a_host_stopped_with_sigstop_is_replaced_and_releases_its_copy_when_continued
        => a_host_stopped_with_sigstop_is_replaced_and_releases_its_copy_when_continued_on_postgres,
);

// ---------------------------------------------------------------------------------------------
// Topology built in the tests

/// One node of a test topology.
struct N {
    name: &'static str,
    parent: Option<&'static str>,
    latency: &'static str,
    owner: &'static str,
    cpu: &'static str,
    memory: &'static str,
    /// Quadratic pricing (aa, bb, electricity).
    price: (f64, f64, f64),
    /// Extra TOML inline-table body for `chaos`, e.g. `refuse_accept = true`.
    chaos: Option<&'static str>,
}

/// The 7-node tree of these tests:
///
/// ```text
///                 cloud
///          15 ms /     \ 15 ms
///          r1               r2
///   5 ms /   \ 5 ms   5 ms /  \ 5 ms
///     e11    e12        e21    e22
/// ```
fn seven_nodes() -> Vec<N> {
    let n = |name, parent, latency, owner, cpu, memory, price| N {
        name,
        parent,
        latency,
        owner,
        cpu,
        memory,
        price,
        chaos: None,
    };
    vec![
        n(
            "cloud",
            None,
            "",
            "cloud-co",
            "16 cpu",
            "32 GiB",
            (0.01, 0.1, 0.9),
        ),
        n(
            "r1",
            Some("cloud"),
            "15 ms",
            "metro",
            "8 cpu",
            "16 GiB",
            (0.05, 0.25, 0.95),
        ),
        n(
            "r2",
            Some("cloud"),
            "15 ms",
            "telco",
            "8 cpu",
            "16 GiB",
            (0.04, 0.3, 0.95),
        ),
        n(
            "e11",
            Some("r1"),
            "5 ms",
            "alice",
            "2 cpu",
            "4 GiB",
            (0.2, 0.45, 1.0),
        ),
        n(
            "e12",
            Some("r1"),
            "5 ms",
            "bob",
            "4 cpu",
            "8 GiB",
            (0.1, 0.5, 1.0),
        ),
        n(
            "e21",
            Some("r2"),
            "5 ms",
            "carol",
            "2 cpu",
            "4 GiB",
            (0.25, 0.35, 1.0),
        ),
        n(
            "e22",
            Some("r2"),
            "5 ms",
            "dave",
            "1 cpu",
            "2 GiB",
            (0.15, 0.55, 1.0),
        ),
    ]
}

fn topology(nodes: &[N], auction_timeout_ms: u64) -> Topology {
    let mut text = format!(
        "[marketplace]\nauction_rule = \"vickrey\"\nauction_timeout_ms = {auction_timeout_ms}\n"
    );
    for n in nodes {
        text.push_str(&format!(
            "\n[[node]]\nname = \"{}\"\nowner = \"{}\"\ncpu = \"{}\"\nmemory = \"{}\"\n\
             pricing = {{ model = \"quadratic\", aa = {:?}, bb = {:?}, electricity = {:?} }}\n",
            n.name, n.owner, n.cpu, n.memory, n.price.0, n.price.1, n.price.2
        ));
        if let Some(p) = n.parent {
            text.push_str(&format!("parent = \"{p}\"\nlatency = \"{}\"\n", n.latency));
        } else {
            text.push_str("tags = [\"cloud\"]\n");
        }
        if let Some(c) = n.chaos {
            text.push_str(&format!("chaos = {{ {c} }}\n"));
        }
    }
    Topology::parse(&text).unwrap_or_else(|e| panic!("test topology is invalid: {e}\n{text}"))
}

fn node<'a>(nodes: &'a mut [N], name: &str) -> &'a mut N {
    nodes
        .iter_mut()
        .find(|n| n.name == name)
        .expect("test node exists")
}

// ---------------------------------------------------------------------------------------------
// A running federation for one test

struct TestFed {
    fed: Federation,
    client: reqwest::Client,
    dir: Option<tempfile::TempDir>,
}

impl Drop for TestFed {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("test failed: configs and logs kept in {}", kept.display());
        }
    }
}

async fn start(backend: &Backend, topology: Topology) -> TestFed {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-it-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.database_url = backend.database_url.clone();
    options.readiness_deadline = Duration::from_secs(45);
    eprintln!("run dir: {}", options.run_dir.display());
    let fed = match Federation::start(topology, options).await {
        Ok(f) => f,
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    };
    TestFed {
        fed,
        client: http_client(),
        dir: Some(dir),
    }
}

fn sla(cpu: &str, memory: &str, duration: &str, latency_max: &str) -> Value {
    json!({
        "cpu": cpu,
        "memory": memory,
        "duration": duration,
        "latencyMax": latency_max,
        "functionImage": "ghcr.io/fogmarket/echo:latest",
        "functionLiveName": "echo",
    })
}

/// The parts of a `PUT /api/function` answer the tests check.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placed {
    sla: PlacedSla,
    chosen: Winner,
    winners: Vec<Winner>,
    proposals: Proposals,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PlacedSla {
    id: SlaId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Winner {
    bid: BidView,
    price: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BidView {
    node_id: NodeId,
    bid: f64,
}

#[derive(Debug, Deserialize)]
struct Proposals {
    bids: Vec<BidView>,
}

/// `GET /api/state` of a node.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeState {
    capacity: Resources,
    used: Resources,
    reserved: Resources,
    #[serde(default)]
    placements: Vec<NodePlacement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodePlacement {
    sla_id: SlaId,
    state: String,
}

impl TestFed {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fed.marketplace_url())
    }

    /// `PUT /api/function`; the status and the JSON body.
    async fn put_function(&self, sla: Value, target: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .put(self.url("/api/function"))
            .json(&json!({"sla": sla, "targetNode": target}))
            .send()
            .await
            .expect("PUT /api/function answers");
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A placement that must succeed.
    async fn place(&self, sla: Value, target: &str) -> Placed {
        let (status, body) = self.put_function(sla, target).await;
        assert_eq!(status, StatusCode::OK, "placement refused: {body:#}");
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("unexpected placement shape ({e}): {body:#}"))
    }

    async fn get_json(&self, url: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn function_state(&self, id: SlaId) -> String {
        let (status, body) = self
            .get_json(&self.url(&format!("/api/function/{id}")))
            .await;
        assert_eq!(status, StatusCode::OK, "GET /api/function/{id}: {body:#}");
        body["state"]
            .as_str()
            .unwrap_or_else(|| panic!("no state in {body:#}"))
            .to_string()
    }

    async fn node_state(&self, name: &str) -> NodeState {
        let url = format!("{}/api/state", self.fed.node_url(name).expect("known node"));
        let (status, body) = self.get_json(&url).await;
        assert_eq!(status, StatusCode::OK, "GET {url}: {body:#}");
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("unexpected state shape of {name} ({e}): {body:#}"))
    }

    fn name_of(&self, id: NodeId) -> String {
        self.fed
            .node_name(id)
            .unwrap_or_else(|| panic!("node id {id} is not in the federation"))
            .to_string()
    }
}

fn sorted_bids(p: &Placed) -> Vec<BidView> {
    let mut bids = p.proposals.bids.clone();
    bids.sort_by(|a, b| a.bid.total_cmp(&b.bid));
    bids
}

fn assert_price(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: paid {actual}, expected {expected}"
    );
}

const SMALL_CPU: Cpu = Cpu::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The tests

async fn the_cheapest_feasible_node_wins_and_is_paid_the_second_lowest_bid(backend: &Backend) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    let placed = t
        .place(sla("100 m", "64 MB", "10 min", "1000 ms"), "e11")
        .await;

    let bids = sorted_bids(&placed);
    let bidders: BTreeSet<String> = bids.iter().map(|b| t.name_of(b.node_id)).collect();
    assert_eq!(
        bidders.len(),
        7,
        "every node is feasible and should bid (relayed over the whole tree): {bidders:?}"
    );
    assert_eq!(placed.winners.len(), 1);
    assert_eq!(
        placed.chosen.bid.node_id, bids[0].node_id,
        "the lowest bid must win: {bids:?}"
    );
    assert_price(placed.chosen.price, bids[1].bid, "Vickrey price");
    assert!(placed.chosen.price >= placed.chosen.bid.bid);

    let winner = t.name_of(placed.chosen.bid.node_id);
    let state = t.node_state(&winner).await;
    assert!(
        state
            .placements
            .iter()
            .any(|p| p.sla_id == placed.sla.id && p.state == "reserved"),
        "{winner} does not hold the placement: {state:?}"
    );
    assert!(state.reserved.cpu >= SMALL_CPU, "{state:?}");
    assert_eq!(placed.state.as_deref(), Some("reserved"));
}

async fn two_nodes_wanted_gives_two_distinct_winners_each_paid_the_third_lowest_bid(
    backend: &Backend,
) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    let mut body = sla("100 m", "64 MB", "10 min", "1000 ms");
    body["nodes"] = json!(2);
    let placed = t.place(body, "e21").await;

    let bids = sorted_bids(&placed);
    assert!(bids.len() >= 3, "need three bids: {bids:?}");
    assert_eq!(placed.winners.len(), 2, "{:?}", placed.winners);
    let winners: BTreeSet<NodeId> = placed.winners.iter().map(|w| w.bid.node_id).collect();
    assert_eq!(winners.len(), 2, "winners must be distinct nodes");
    let lowest_two: BTreeSet<NodeId> = bids[..2].iter().map(|b| b.node_id).collect();
    assert_eq!(winners, lowest_two, "the two lowest bids win: {bids:?}");
    for w in &placed.winners {
        assert_price(w.price, bids[2].bid, "Vickrey k=2 price");
        let name = t.name_of(w.bid.node_id);
        let state = t.node_state(&name).await;
        assert!(
            state.placements.iter().any(|p| p.sla_id == placed.sla.id),
            "{name} does not hold the placement: {state:?}"
        );
    }
}

async fn a_winner_that_refuses_the_accept_makes_the_placement_fall_back_to_the_next_bid(
    backend: &Backend,
) {
    let mut nodes = seven_nodes();
    let e12 = node(&mut nodes, "e12");
    e12.price = (0.0, 0.001, 0.1); // by far the cheapest
    e12.chaos = Some("refuse_accept = true");
    let t = start(backend, topology(&nodes, 3000)).await;
    let placed = t
        .place(sla("100 m", "64 MB", "10 min", "1000 ms"), "e11")
        .await;

    let bids = sorted_bids(&placed);
    assert!(bids.len() >= 2, "{bids:?}");
    assert_eq!(
        t.name_of(bids[0].node_id),
        "e12",
        "precondition: the refusing node bids lowest: {bids:?}"
    );
    assert_eq!(
        placed.chosen.bid.node_id, bids[1].node_id,
        "the placement falls back to the next bid: {bids:?}"
    );
    assert!(placed.chosen.price >= placed.chosen.bid.bid);
    let refusing = t.node_state("e12").await;
    assert!(
        !refusing
            .placements
            .iter()
            .any(|p| p.sla_id == placed.sla.id),
        "{refusing:?}"
    );
    assert_eq!(refusing.reserved, Resources::ZERO);
    let fallback = t.name_of(placed.chosen.bid.node_id);
    let state = t.node_state(&fallback).await;
    assert!(
        state.placements.iter().any(|p| p.sla_id == placed.sla.id),
        "{fallback} does not hold the placement: {state:?}"
    );
}

async fn a_slow_subtree_does_not_block_the_auction(backend: &Backend) {
    let timeout_ms = 1500;
    let mut nodes = seven_nodes();
    for name in ["r2", "e21", "e22"] {
        let n = node(&mut nodes, name);
        n.chaos = Some("bid_delay = \"10 s\"");
        n.price = (0.0, 0.001, 0.1); // they would win if they answered in time
    }
    let t = start(backend, topology(&nodes, timeout_ms)).await;
    let started = Instant::now();
    let placed = t
        .place(sla("100 m", "64 MB", "10 min", "1000 ms"), "e11")
        .await;
    let elapsed = started.elapsed();

    let margin = Duration::from_millis(2500);
    assert!(
        elapsed < Duration::from_millis(timeout_ms) + margin,
        "the auction took {elapsed:?}, deadline {timeout_ms} ms"
    );
    let slow: BTreeSet<&str> = ["r2", "e21", "e22"].into();
    let bidders: Vec<String> = placed
        .proposals
        .bids
        .iter()
        .map(|b| t.name_of(b.node_id))
        .collect();
    assert!(
        bidders.iter().all(|b| !slow.contains(b.as_str())),
        "late bids must not count: {bidders:?}"
    );
    assert!(bidders.len() >= 2, "the fast nodes still bid: {bidders:?}");
    let winner = t.name_of(placed.chosen.bid.node_id);
    assert!(!slow.contains(winner.as_str()), "{winner} won");
}

async fn a_placement_finishes_when_its_sla_expires_and_frees_the_node(backend: &Backend) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    let placed = t
        .place(sla("100 m", "64 MB", "2 s", "1000 ms"), "e12")
        .await;
    let winner = t.name_of(placed.chosen.bid.node_id);
    let before = t.node_state(&winner).await;
    assert!(before.reserved.cpu >= SMALL_CPU, "{before:?}");

    let id = placed.sla.id;
    poll_until(
        Duration::from_secs(20),
        "the placement to finish",
        || async { (t.function_state(id).await == "finished").then_some(()) },
    )
    .await;
    poll_until(
        Duration::from_secs(10),
        "the winner's reservation to be released",
        || async { (t.node_state(&winner).await.reserved == Resources::ZERO).then_some(()) },
    )
    .await;
}

async fn cancelling_a_placement_frees_the_node(backend: &Backend) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    let placed = t
        .place(sla("100 m", "64 MB", "10 min", "1000 ms"), "e22")
        .await;
    let winner = t.name_of(placed.chosen.bid.node_id);
    assert!(t.node_state(&winner).await.reserved.cpu >= SMALL_CPU);

    let id = placed.sla.id;
    let resp = t
        .client
        .delete(t.url(&format!("/api/function/{id}")))
        .send()
        .await
        .expect("DELETE answers");
    assert!(resp.status().is_success(), "DELETE: {}", resp.status());
    assert_eq!(t.function_state(id).await, "cancelled");
    poll_until(
        Duration::from_secs(10),
        "the node to free the placement",
        || async {
            let s = t.node_state(&winner).await;
            (s.reserved == Resources::ZERO).then_some(())
        },
    )
    .await;
    let s = t.node_state(&winner).await;
    assert!(
        !s.placements
            .iter()
            .any(|p| p.sla_id == id && p.state == "reserved"),
        "{s:?}"
    );
}

async fn a_marketplace_restarted_after_kill_9_still_lists_every_node_and_placement(
    backend: &Backend,
) {
    let mut t = start(backend, topology(&seven_nodes(), 3000)).await;
    let mut ids = Vec::new();
    for target in ["e11", "e21", "e22"] {
        ids.push(
            t.place(sla("100 m", "64 MB", "10 min", "1000 ms"), target)
                .await
                .sla
                .id,
        );
    }

    t.fed.kill_marketplace().await.expect("kill -9");
    assert!(
        t.client.get(t.url("/api/health")).send().await.is_err(),
        "the marketplace must be down"
    );
    t.fed.restart_marketplace().await.expect("restart");

    let (status, fog) = t.get_json(&t.url("/api/fog")).await;
    assert_eq!(status, StatusCode::OK);
    let listed: BTreeSet<&str> = fog
        .as_array()
        .expect("GET /api/fog is an array")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    let all: BTreeSet<&str> = t.fed.node_names().collect();
    assert_eq!(listed, all);
    for (name, entry) in fog
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(|name| (name, n)))
    {
        let id: NodeId = serde_json::from_value(entry["id"].clone()).expect("node id");
        assert_eq!(Some(id), t.fed.node_id(name), "{name} kept its id");
    }

    let (status, functions) = t.get_json(&t.url("/api/functions")).await;
    assert_eq!(status, StatusCode::OK);
    let text = functions.to_string();
    for id in &ids {
        assert!(
            text.contains(&id.to_string()),
            "{id} missing from {functions:#}"
        );
        assert_eq!(t.function_state(*id).await, "reserved");
    }

    t.fed
        .wait_until_all_alive(Duration::from_secs(20))
        .await
        .expect("nodes are alive again");
    t.place(sla("100 m", "64 MB", "10 min", "1000 ms"), "e12")
        .await;
}

async fn bad_input_is_refused_naming_the_field_or_every_nodes_reason(backend: &Backend) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;

    let (status, body) = t
        .put_function(sla("100 m", "lots", "10 min", "1000 ms"), "e11")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let err: ErrorBody = serde_json::from_value(body.clone()).expect("error body");
    assert_eq!(err.error, "invalid_sla");
    assert_eq!(err.field.as_deref(), Some("sla.memory"), "{body:#}");

    let (status, body) = t
        .put_function(sla("100 m", "64 MB", "10 min", "1000 ms"), "no-such-node")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert_eq!(body["error"], "unknown_target_node");

    // Too large for any node: every node says it is out of capacity.
    let (status, body) = t
        .put_function(sla("1000 cpu", "64 MB", "10 min", "1000 ms"), "e11")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let err: ErrorBody = serde_json::from_value(body.clone()).expect("error body");
    assert_eq!(err.error, "no_feasible_node");
    let refused: BTreeMap<String, String> = err
        .refusals
        .iter()
        .map(|r| (t.name_of(r.node_id), r.reason.to_string()))
        .collect();
    let all: BTreeSet<String> = t.fed.node_names().map(str::to_string).collect();
    assert_eq!(
        refused.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every node's reason: {refused:#?}"
    );
    for (name, reason) in &refused {
        assert!(reason.contains("out of capacity"), "{name}: {reason}");
    }
}

async fn a_latency_budget_too_small_for_any_other_node_is_refused_with_latency_reasons(
    backend: &Backend,
) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    // e22 has 1 cpu: it cannot host 1.5 cpu itself, and every other node is at least 5 ms away.
    let (status, body) = t
        .put_function(sla("1500 m", "64 MB", "10 min", "1 ms"), "e22")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:#}");
    let err: ErrorBody = serde_json::from_value(body.clone()).expect("error body");
    assert_eq!(err.error, "no_feasible_node");
    let target = err
        .refusals
        .iter()
        .find(|r| t.name_of(r.node_id) == "e22")
        .unwrap_or_else(|| panic!("the target's own refusal is missing: {body:#}"));
    assert!(
        matches!(
            target.reason,
            model::protocol::RefusalReason::OutOfCapacity { .. }
        ),
        "{target:?}"
    );
    assert!(
        err.refusals.iter().any(|r| matches!(
            r.reason,
            model::protocol::RefusalReason::LatencyBudget { .. }
        )),
        "the neighbours out of the latency budget must be named with that reason: {body:#}"
    );
}

async fn concurrent_placements_never_overcommit_a_node(backend: &Backend) {
    // 7 nodes x 500 m = 35 slots of 100 m; 40 placements at once.
    let mut nodes = seven_nodes();
    for n in nodes.iter_mut() {
        n.cpu = "500 m";
        n.memory = "1 GiB";
    }
    let t = start(backend, topology(&nodes, 5000)).await;
    let edges = ["e11", "e12", "e21", "e22"];
    let requests = (0..40).map(|i| {
        let t = &t;
        async move {
            t.put_function(sla("100 m", "16 MB", "10 min", "1000 ms"), edges[i % 4])
                .await
        }
    });
    let answers = futures::future::join_all(requests).await;

    let mut accepted: Vec<SlaId> = Vec::new();
    for (status, body) in &answers {
        match *status {
            StatusCode::OK => {
                accepted.push(serde_json::from_value(body["sla"]["id"].clone()).expect("sla id"))
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(body["error"], "no_feasible_node", "{body:#}")
            }
            other => panic!("unexpected answer {other}: {body:#}"),
        }
    }
    assert!(!accepted.is_empty(), "some placements must succeed");
    assert!(
        accepted.len() <= 35,
        "{} placements accepted",
        accepted.len()
    );

    let mut hosted: BTreeMap<SlaId, Vec<String>> = BTreeMap::new();
    for name in t.fed.node_names() {
        let s = t.node_state(name).await;
        assert!(s.used.fits_in(&s.capacity), "{name} overcommitted: {s:?}");
        assert!(
            s.reserved.fits_in(&s.capacity),
            "{name} overcommitted: {s:?}"
        );
        let live = s
            .placements
            .iter()
            .filter(|p| p.state == "reserved")
            .inspect(|p| hosted.entry(p.sla_id).or_default().push(name.to_string()))
            .count() as u64;
        assert!(
            SMALL_CPU.millis() * live <= s.capacity.cpu.millis(),
            "{name} hosts {live} placements of 100 m: {s:?}"
        );
        assert!(
            Bytes::from_mb(16).as_u64() * live <= s.capacity.memory.as_u64(),
            "{s:?}"
        );
    }
    let accepted_set: BTreeSet<SlaId> = accepted.iter().copied().collect();
    let hosted_set: BTreeSet<SlaId> = hosted.keys().copied().collect();
    assert_eq!(
        accepted_set, hosted_set,
        "every accepted placement is reserved on exactly the nodes' side, and nothing else"
    );
    for (id, on) in &hosted {
        assert_eq!(on.len(), 1, "{id} is reserved on {on:?}");
    }
}

/// PUT with `?provision=true`: the winner deploys the function to its embedded gateway before
/// the answer; the answer carries the invoke URL.
async fn place_and_provision(t: &TestFed, sla: Value, target: &str) -> Value {
    let resp = t
        .client
        .put(t.url("/api/function?provision=true"))
        .json(&json!({"sla": sla, "targetNode": target}))
        .send()
        .await
        .expect("PUT /api/function?provision=true answers");
    let status = resp.status();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

async fn provisioned_functions_run_until_their_sla_ends_and_are_then_removed(backend: &Backend) {
    let t = start(backend, topology(&seven_nodes(), 3000)).await;
    let mut echo = sla("100 m", "64 MB", "4 s", "1000 ms");
    echo["envVars"] = json!({"GREETING": "hi"});
    let mut figlet = sla("100 m", "64 MB", "4 s", "1000 ms");
    figlet["functionImage"] = json!("ghcr.io/fogmarket/figlet:latest");
    figlet["functionLiveName"] = json!("figlet");

    let echo = place_and_provision(&t, echo, "e12").await;
    let figlet = place_and_provision(&t, figlet, "e22").await;
    for placed in [&echo, &figlet] {
        assert_eq!(placed["state"], "live", "{placed:#}");
        assert_eq!(placed["chosen"]["state"], "live", "{placed:#}");
    }
    let echo_url = echo["chosen"]["invokeUrl"]
        .as_str()
        .expect("echo invoke URL")
        .to_string();
    let figlet_url = figlet["chosen"]["invokeUrl"]
        .as_str()
        .expect("figlet invoke URL")
        .to_string();

    // Invoke both for real.
    let r = t
        .client
        .post(&echo_url)
        .body("ping from a sensor")
        .send()
        .await
        .expect("echo answers");
    assert_eq!(r.status(), StatusCode::OK);
    let winner = t.name_of(
        echo["chosen"]["bid"]["nodeId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("winner id"),
    );
    assert_eq!(
        r.headers()["x-served-by-node"].to_str().unwrap_or_default(),
        winner
    );
    assert_eq!(
        r.headers()["x-sla-id"].to_str().unwrap_or_default(),
        echo["sla"]["id"].as_str().unwrap_or_default()
    );
    assert_eq!(r.text().await.unwrap_or_default(), "ping from a sensor");
    let r = t
        .client
        .post(&figlet_url)
        .body("fog")
        .send()
        .await
        .expect("figlet answers");
    assert_eq!(r.status(), StatusCode::OK);
    let banner = r.text().await.unwrap_or_default();
    assert!(
        banner.lines().count() >= 4 && banner.contains('_'),
        "not a banner: {banner:?}"
    );

    // When the SLAs end, the functions are removed from the gateways and marked finished.
    for (placed, url) in [(&echo, &echo_url), (&figlet, &figlet_url)] {
        let id: SlaId = placed["sla"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("sla id");
        poll_until(
            Duration::from_secs(20),
            "the placement to finish",
            || async { (t.function_state(id).await == "finished").then_some(()) },
        )
        .await;
        poll_until(
            Duration::from_secs(10),
            "the function to be removed",
            || async {
                let status = t
                    .client
                    .post(url.as_str())
                    .body("x")
                    .send()
                    .await
                    .ok()?
                    .status();
                (status == StatusCode::NOT_FOUND).then_some(())
            },
        )
        .await;
    }
}

async fn a_host_killed_with_sigkill_is_replaced_and_the_access_node_serves_the_function_again(
    backend: &Backend,
) {
    host_fails_and_is_replaced(backend, Fault::Kill).await;
}

async fn a_host_stopped_with_sigstop_is_replaced_and_releases_its_copy_when_continued(
    backend: &Backend,
) {
    host_fails_and_is_replaced(backend, Fault::Stop).await;
}

/// How the host of the function fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `kill -9`; it is later started again on its address and state directory.
    Kill,
    /// `SIGSTOP` (a gray failure: its sockets accept, nothing answers); later `SIGCONT`.
    Stop,
}

async fn host_fails_and_is_replaced(backend: &Backend, fault: Fault) {
    let mut t = start(backend, topology(&seven_nodes(), 1000)).await;
    let placed = place_and_provision(&t, sla("100 m", "64 MB", "10 min", "1000 ms"), "e11").await;
    assert_eq!(placed["state"], "live", "{placed:#}");
    let id: SlaId = placed["sla"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sla id");
    let host = t.name_of(
        placed["chosen"]["bid"]["nodeId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("winner id"),
    );
    assert_ne!(
        host, "e11",
        "the test needs a host other than the access node"
    );
    // Clients call the access node, which routes to the host.
    let access = placed["invokeUrl"]
        .as_str()
        .expect("the access node's invoke URL")
        .to_string();
    let served_by = |r: &reqwest::Response| {
        r.headers()
            .get("x-served-by-node")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    // The access node learns the route from its next route table: wait for it.
    let first = poll_until(
        Duration::from_secs(10),
        "the access node to route the new function",
        || async {
            let r = t.client.post(&access).body("before").send().await.ok()?;
            (r.status() == StatusCode::OK).then(|| served_by(&r))
        },
    )
    .await;
    assert_eq!(first, host);

    let pid = t.fed.node_pid(&host).expect("the host runs");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    match fault {
        Fault::Kill => t.fed.kill_node(&host).await.expect("kill -9 the host"),
        Fault::Stop => nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)
            .expect("SIGSTOP the host"),
    }
    let killed_at = Instant::now();
    // Served again, by another node, through the same access URL (the bound: dead after 3
    // missed heartbeats, then one auction and a provisioning).
    let new_host = poll_until(
        // The bound users are promised: served again within 10 s of the failure.
        Duration::from_secs(10),
        "the access node to serve the function again from another host",
        || async {
            // A stopped host accepts connections and never answers: bound each try.
            let r = t
                .client
                .post(&access)
                .body("after")
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            (r.status() == StatusCode::OK)
                .then(|| served_by(&r))
                .filter(|by| *by != host)
        },
    )
    .await;
    eprintln!(
        "served again by {new_host} {:?} after the {fault:?}",
        killed_at.elapsed()
    );

    // The placement kept its id; its record names both hosts.
    let (status, view) = t.get_json(&t.url(&format!("/api/function/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["state"], "live", "{view:#}");
    assert_eq!(view["chosen"]["nodeName"], new_host.as_str(), "{view:#}");
    let events: Vec<&str> = view["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["event"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(events, vec!["host_lost", "moved_to"], "{view:#}");
    assert_eq!(view["history"][0]["nodeName"], host.as_str(), "{view:#}");

    // The old host comes back (same key, same address): it learns that the placement moved
    // and releases its copy instead of serving a stale one.
    match fault {
        Fault::Kill => t
            .fed
            .restart_node(&host)
            .await
            .expect("restart the old host"),
        Fault::Stop => nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)
            .expect("SIGCONT the host"),
    }
    poll_until(
        Duration::from_secs(15),
        "the old host to release the placement that moved",
        || async {
            let state = t.node_state(&host).await;
            state
                .placements
                .iter()
                .all(|p| p.sla_id != id || p.state == "cancelled")
                .then_some(())
        },
    )
    .await;
    // It had the placement (back from its state directory, or still in memory when it was
    // stopped), and released it when told.
    // The log line may reach the file just after the state changed: poll it with a deadline.
    let log_path = t.fed.log_path(&host).expect("a log");
    let read_deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if log.contains("taken for dead; releasing it") || std::time::Instant::now() > read_deadline
        {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        log.contains("taken for dead; releasing it"),
        "the old host never released its copy:\n{log}"
    );
    let r = t
        .client
        .post(&access)
        .body("later")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(served_by(&r), new_host);
}
