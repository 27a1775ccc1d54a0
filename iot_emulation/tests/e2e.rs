//! End to end: a real federation (marketplace and fog nodes as processes on loopback, started
//! by the testbed launcher), a 5-second scenario with a chain, and the records and report.
//!
//! Build the binaries first:
//! `cargo build -p marketplace -p fog_node -p faas_gateway -p fn-echo --bins`.

use iot_emulation::Scenario;
use iot_emulation::record::read_csv_file;
use iot_emulation::run::run_scenario;
use std::path::Path;
use testbed::{Federation, LaunchOptions, Topology};

const TOPOLOGY: &str = r#"
[marketplace]
auction_rule = "vickrey"
auction_timeout_ms = 3000

[[node]]
name = "cloud"
owner = "cloud-co"
tags = ["cloud"]
cpu = "8 cpu"
memory = "8 GiB"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "edge-a"
parent = "cloud"
latency = "2 ms"
owner = "alice"
cpu = "2 cpu"
memory = "2 GiB"
pricing = { model = "quadratic", aa = 0.2, bb = 0.45, electricity = 1.0 }

[[node]]
name = "edge-b"
parent = "cloud"
latency = "3 ms"
owner = "bob"
cpu = "2 cpu"
memory = "2 GiB"
pricing = { model = "quadratic", aa = 0.1, bb = 0.5, electricity = 1.0 }
"#;

/// The run directory (node logs, records), kept when the test fails.
struct KeepOnFailure(Option<tempfile::TempDir>);

impl KeepOnFailure {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "test failed: logs and records kept in {}",
                dir.keep().display()
            );
        }
    }
}

fn scenario(marketplace: &str) -> Scenario {
    let text = format!(
        r#"
[experiment]
name = "e2e"
duration = "5 s"
seed = 3
marketplace_url = "{marketplace}"
request_timeout = "10 s"

[[function]]
name = "e2e-sensor"
image = "echo"
latency_class = "dont_care"
target = "edge-a"
payload = {{ kind = "text", size = "200 B" }}
arrival = {{ process = "poisson", rate = 4.0 }}

[[function]]
name = "e2e-next"
image = "echo"
sla = {{ latencyMax = "10 s", memory = "32 MB" }}
chain_after = "e2e-sensor"
arrival = {{ process = "constant", rate = 2 }}
"#
    );
    Scenario::parse(&text, Path::new("."), "e2e").expect("the test scenario is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_scenario_on_a_real_federation_records_served_requests_and_writes_a_report() {
    let run_dir = KeepOnFailure(Some(
        tempfile::Builder::new()
            .prefix("fogmarket-iot-e2e-")
            .tempdir()
            .expect("temp dir"),
    ));
    let dir = run_dir.path();
    let topology = Topology::parse(TOPOLOGY).expect("test topology is valid");
    let options = LaunchOptions::new(dir.join("federation")).expect("launch options");
    let fed = match Federation::start(topology, options).await {
        Ok(f) => f,
        Err(e) => panic!(
            "cannot start the federation ({e}); build the binaries first: \
             cargo build -p marketplace -p fog_node -p faas_gateway -p fn-echo --bins"
        ),
    };
    let out = dir.join("out");
    let outcome = run_scenario(&scenario(&fed.marketplace_url()), &out, false).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = fed.stop().await;
            panic!("the run failed: {e:#}");
        }
    };

    let placements = &outcome.placements;
    assert_eq!(placements.len(), 2);
    for p in placements {
        assert!(
            p.error.is_none(),
            "{} not placed: {:?}",
            p.function,
            p.error
        );
        assert!(p.host().is_some());
        assert!(p.time_to_place_ms > 0.0);
    }
    let first = placements
        .iter()
        .find(|p| p.function == "e2e-sensor")
        .unwrap();
    let next = placements
        .iter()
        .find(|p| p.function == "e2e-next")
        .unwrap();
    assert_eq!(first.access_node, "edge-a");
    // The chain: the next function's devices attach to where the first one runs.
    assert_eq!(Some(next.access_node.as_str()), first.host());

    let records = read_csv_file(&out.join("requests.csv")).expect("requests.csv");
    let ok: Vec<_> = records
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .collect();
    let summary = |rs: &[iot_emulation::Record]| {
        rs.iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?}",
                    r.function, r.status, r.served_by, r.error
                )
            })
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        records.len() >= 15,
        "expected about 30 requests, got {}",
        records.len()
    );
    assert!(
        ok.len() * 10 >= records.len() * 9,
        "only {} of {} requests succeeded:\n{}",
        ok.len(),
        records.len(),
        summary(&records)
    );
    assert!(
        ok.iter().all(|r| r.served_by.is_some()),
        "a 2xx answer without a serving node:\n{}",
        summary(&records)
    );
    assert!(ok.iter().any(|r| r.function == "e2e-next"));
    assert!(out.join("report.md").is_file());
    assert!(out.join("report.json").is_file());
    assert!(out.join("latency_cdf.svg").is_file());
    assert!(outcome.report.spending_total > 0.0);
    assert!(outcome.report.overall.success_ratio >= 0.9);
    fed.stop().await.expect("the federation stops");
}
