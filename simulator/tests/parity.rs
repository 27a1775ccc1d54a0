//! Sim-to-real parity: one scenario, one seed, one topology, run on a local federation (the real
//! marketplace and fog nodes as processes on loopback, link latencies emulated in process) and
//! in the simulator. The auctions must pick the same winners at the same prices; the share of
//! requests within their SLA must agree within 5 points, and the spending within 5 %.

use iot_emulation::Scenario;
use simulator::market::{MarketSettings, NodeDesc};
use std::path::Path;
use std::time::Duration;
use testbed::{Federation, LaunchOptions, Topology, http_client};

/// Links of tens of milliseconds, so that every latency budget below is far (at least 10 ms)
/// from the path latencies it admits or refuses, whatever the machine adds.
const TREE: &str = r#"
[marketplace]
auction_rule = "vickrey"
auction_timeout_ms = 3000

[[node]]
name = "cloud"
owner = "cloud-co"
tags = ["cloud"]
cpu = "16 cpu"
memory = "32 GiB"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "north"
parent = "cloud"
latency = "30 ms"
owner = "metro"
cpu = "8 cpu"
memory = "16 GiB"
pricing = { model = "quadratic", aa = 0.05, bb = 0.25, electricity = 0.95 }

[[node]]
name = "south"
parent = "cloud"
latency = "40 ms"
owner = "telco"
cpu = "8 cpu"
memory = "16 GiB"
pricing = { model = "quadratic", aa = 0.04, bb = 0.3, electricity = 0.92 }

[[node]]
name = "factory"
parent = "north"
latency = "20 ms"
owner = "alice"
tags = ["edge"]
cpu = "2 cpu"
memory = "4 GiB"
pricing = { model = "quadratic", aa = 0.2, bb = 0.45, electricity = 1.0 }

[[node]]
name = "campus"
parent = "north"
latency = "25 ms"
owner = "bob"
tags = ["edge"]
cpu = "4 cpu"
memory = "8 GiB"
pricing = { model = "linear", price_cpu = 0.8, price_memory = 0.4 }

[[node]]
name = "harbour"
parent = "south"
latency = "15 ms"
owner = "carol"
tags = ["edge"]
cpu = "1 cpu"
memory = "2 GiB"
pricing = { model = "quadratic", aa = 0.1, bb = 0.5, electricity = 1.0 }
"#;

/// Round-trip budgets: factory alone (its parent is 40 ms away and back); harbour or south;
/// anyone from campus; factory, north, campus or cloud from factory.
const SCENARIO: &str = r#"
[experiment]
name = "parity"
duration = "10 s"
seed = 11
max_in_flight = 256
request_timeout = "10 s"

[[function]]
name = "factory-local"
image = "echo"
sla = { latencyMax = "30 ms", latencyKind = "roundTrip" }
target = "factory"
arrival = { process = "poisson", rate = 4.0 }

[[function]]
name = "harbour-near"
image = "echo"
sla = { latencyMax = "60 ms", latencyKind = "roundTrip" }
target = "harbour"
arrival = { process = "poisson", rate = 4.0 }

[[function]]
name = "campus-wide"
image = "echo"
sla = { latencyMax = "400 ms", latencyKind = "roundTrip" }
target = "campus"
arrival = { process = "poisson", rate = 4.0 }

[[function]]
name = "factory-mid"
image = "echo"
sla = { latencyMax = "150 ms", latencyKind = "roundTrip" }
target = "factory"
arrival = { process = "constant", rate = 4.0 }
"#;

fn winners(p: &iot_emulation::report::PlacementsFile) -> Vec<(String, Vec<(String, f64)>)> {
    let mut v: Vec<_> = p
        .placements
        .iter()
        .map(|p| {
            (
                p.function.clone(),
                p.winners
                    .iter()
                    .map(|w| (w.node.clone(), w.price))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_run_for_real_and_simulated_picks_the_same_winners_at_the_same_prices() {
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-parity-")
        .tempdir()
        .expect("temp dir");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("launch options");
    options.emulate_links = true;
    options.readiness_deadline = Duration::from_secs(60);
    let topology = Topology::parse(TREE).expect("the parity topology parses");
    let fed = match Federation::start(topology.clone(), options).await {
        Ok(f) => f,
        Err(e) => {
            let kept = dir.keep();
            panic!("federation did not start (logs in {}): {e}", kept.display());
        }
    };

    let mut scenario =
        Scenario::parse(SCENARIO, Path::new("."), "parity").expect("scenario parses");
    scenario.experiment.marketplace_url = fed.marketplace_url();
    let out = dir.path().join("real");
    let real = iot_emulation::run::run_scenario_with(&scenario, &out, false, http_client(), None)
        .await
        .expect("the real run completes");
    let real_placements: iot_emulation::report::PlacementsFile = serde_json::from_str(
        &std::fs::read_to_string(out.join("placements.json")).expect("placements.json"),
    )
    .expect("placements.json parses");
    drop(fed);

    let sim = simulator::scenario::simulate(
        &scenario,
        NodeDesc::from_topology(&topology).expect("nodes"),
        MarketSettings::from_topology(&topology).expect("settings"),
    )
    .expect("the simulated run completes");

    // Same winners at the same prices, function by function.
    let (rw, sw) = (winners(&real_placements), winners(&sim.placements));
    assert_eq!(rw.len(), 4, "{rw:?}");
    for ((rf, rwin), (sf, swin)) in rw.iter().zip(&sw) {
        assert_eq!(rf, sf);
        assert!(!rwin.is_empty(), "{rf} was not placed for real: {rw:?}");
        assert_eq!(
            rwin.len(),
            swin.len(),
            "{rf}: real {rwin:?} simulated {swin:?}"
        );
        for ((rn, rp), (sn, sp)) in rwin.iter().zip(swin) {
            assert_eq!(rn, sn, "{rf}: real {rwin:?} simulated {swin:?}");
            assert!(
                (rp - sp).abs() <= 1e-9 * rp.abs().max(1.0),
                "{rf}: real {rp} simulated {sp}"
            );
        }
    }
    // The auctions did not all pick one node: the test would not tell strategies apart.
    let hosts: std::collections::BTreeSet<&str> = rw.iter().map(|(_, w)| w[0].0.as_str()).collect();
    assert!(hosts.len() >= 2, "{rw:?}");

    // SLA-respected ratios within 5 points, spending within 5 %.
    let (r, s) = (&real.report, &sim.report);
    eprintln!(
        "winners {rw:?}; SLA respected real {:.3} simulated {:.3}; spending real {:.6} simulated {:.6}",
        r.overall.sla_met_ratio, s.overall.sla_met_ratio, r.spending_total, s.spending_total
    );
    assert_eq!(
        r.overall.requests, s.overall.requests,
        "the same request plan"
    );
    let gap = (r.overall.sla_met_ratio - s.overall.sla_met_ratio).abs();
    assert!(
        gap <= 0.05,
        "SLA respected: real {:.3} simulated {:.3}",
        r.overall.sla_met_ratio,
        s.overall.sla_met_ratio
    );
    let spend_gap = (r.spending_total - s.spending_total).abs() / r.spending_total.max(1e-12);
    assert!(
        r.spending_total > 0.0 && spend_gap <= 0.05,
        "spending: real {} simulated {}",
        r.spending_total,
        s.spending_total
    );
}

/// Success from the second second on, per strategy, in one scenario.
type Outcomes = Vec<(String, f64)>;

/// The orderings agree: where the real runs differ by more than 5 points the simulation orders
/// the two strategies the same way (by at least 2 points), and where the real runs are within
/// 2 points of each other the simulation is within 5.
fn same_ordering(scenario: &str, real: &Outcomes, sim: &Outcomes) {
    for (i, (a, ra)) in real.iter().enumerate() {
        for (b, rb) in real.iter().skip(i + 1) {
            let sa = sim
                .iter()
                .find(|(n, _)| n == a)
                .map(|x| x.1)
                .unwrap_or(f64::NAN);
            let sb = sim
                .iter()
                .find(|(n, _)| n == b)
                .map(|x| x.1)
                .unwrap_or(f64::NAN);
            let (dr, ds) = (ra - rb, sa - sb);
            if dr.abs() > 0.05 {
                assert!(
                    dr.signum() == ds.signum() && ds.abs() >= 0.02,
                    "{scenario}: real {a} {ra:.3} vs {b} {rb:.3}, simulated {sa:.3} vs {sb:.3}"
                );
            } else if dr.abs() <= 0.02 {
                assert!(
                    ds.abs() <= 0.05,
                    "{scenario}: real {a} {ra:.3} ~ {b} {rb:.3}, simulated {sa:.3} vs {sb:.3}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offload_scenarios_order_the_strategies_the_same_way_simulated_and_real() {
    use model::offload::{OffloadStrategy, Params};
    use simulator::offload::{DataPlane, bench_scenario, simulate};
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-offload-parity-")
        .tempdir()
        .expect("temp dir");
    let duration = Duration::from_secs(8);
    let strategies = ["static", "recalc", "node_margin", "lease"];
    let options = testbed::bench_offload::OffloadBenchOptions {
        duration,
        strategies: strategies.iter().map(|s| s.to_string()).collect(),
        scenarios: vec!["demo".into(), "issue48".into()],
        delay_ms: 200,
        out: dir.path().join("out"),
        bin_dir: testbed::default_bin_dir().expect("the binaries are built"),
    };
    let report = testbed::bench_offload::run_offload_bench(&options)
        .await
        .expect("the real offload runs complete");
    for scenario in ["demo", "issue48"] {
        let mut real: Outcomes = Vec::new();
        let mut sim: Outcomes = Vec::new();
        for strategy in strategies {
            let run = report
                .runs
                .iter()
                .find(|r| r.scenario == scenario && r.strategy == strategy)
                .unwrap_or_else(|| panic!("no real run of {scenario}/{strategy}"));
            let settled = run
                .summary
                .as_ref()
                .and_then(|s| s.settled_success_rate)
                .unwrap_or_else(|| panic!("{scenario}/{strategy} failed: {:?}", run.error));
            real.push((strategy.to_string(), settled));
            let s =
                bench_scenario(scenario, Duration::from_millis(200), duration).expect("scenario");
            let parsed: OffloadStrategy = strategy.parse().expect("strategy");
            let o = simulate(&s, parsed, &Params::default(), &DataPlane::default(), 1);
            sim.push((strategy.to_string(), o.settled_success_rate));
        }
        eprintln!("{scenario}: real {real:?}, simulated {sim:?}");
        same_ordering(scenario, &real, &sim);
    }
}
