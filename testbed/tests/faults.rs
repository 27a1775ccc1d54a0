//! The fault campaign's scenarios that a function should not even notice, with real processes:
//! one of two copies killed, and the access node's parent killed. Bounds, not timings: at most
//! 1 % of the requests fail, and no placement is lost. Build the binaries first (`just test`
//! does).

use std::time::Duration;
use testbed::default_bin_dir;
use testbed::faults::{FaultOptions, run_faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_copies_or_the_access_nodes_parent_fails_at_most_one_percent() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = FaultOptions {
        topology: concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/local.toml").into(),
        rate: 20.0,
        before: Duration::from_secs(5),
        after: Duration::from_secs(10),
        only: vec!["kill-host-2-copies".into(), "kill-access-parent".into()],
        out: out.path().to_path_buf(),
        bin_dir: default_bin_dir().expect("the binaries' directory"),
    };
    let report = run_faults(&options).await.expect("the campaign runs");
    assert_eq!(report.scenarios.len(), 2);
    for r in &report.scenarios {
        assert!(r.sent >= 250, "{r:?}");
        assert!(
            r.failed * 100 <= r.sent,
            "{}: {} of {} failed",
            r.scenario.name,
            r.failed,
            r.sent
        );
        assert_eq!(r.placements_lost, 0, "{r:?}");
    }
    assert!(out.path().join("faults.json").exists());
    assert!(out.path().join("faults.md").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_only_host_is_killed_every_request_succeeds_again_within_ten_seconds() {
    let out = tempfile::tempdir().expect("temp dir");
    let options = FaultOptions {
        topology: concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/local.toml").into(),
        rate: 20.0,
        before: Duration::from_secs(5),
        after: Duration::from_secs(15),
        only: vec!["kill-host".into()],
        out: out.path().to_path_buf(),
        bin_dir: default_bin_dir().expect("the binaries' directory"),
    };
    let report = run_faults(&options).await.expect("the campaign runs");
    let r = &report.scenarios[0];
    // Requests fail while the host is taken for dead and its copy is moved, then all succeed.
    let first = r.first_success_ms.unwrap_or(f64::INFINITY);
    let recovered = r.recovered_ms.unwrap_or(f64::INFINITY);
    assert!(
        first <= 10_000.0,
        "first success {first} ms after the kill: {r:?}"
    );
    assert!(
        recovered <= 10_000.0,
        "recovered {recovered} ms after the kill: {r:?}"
    );
    assert_eq!(r.placements_lost, 0, "{r:?}");
}
