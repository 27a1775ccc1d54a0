//! `testbed run` keeps its federation up: a process that dies (here `kill -9` from outside,
//! as a crash would) is reported and started again on its address, and the federation works
//! again. Real processes on loopback; build the binaries first (`just test` does).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::Duration;
use testbed::{
    Federation, LaunchOptions, Member, Supervision, SupervisionEvent, Topology, http_client,
    poll_until,
};
use tokio::time::Instant;

const TOPOLOGY: &str = r#"
[[node]]
name = "cloud"
owner = "cloud-co"
cpu = "4 cpu"
memory = "4 GiB"
tags = ["cloud"]

[[node]]
name = "edge"
owner = "edge-co"
parent = "cloud"
latency = "5 ms"
cpu = "2 cpu"
memory = "2 GiB"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fog_node_killed_from_outside_is_reported_and_started_again_on_its_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = Topology::parse(TOPOLOGY).expect("topology");
    let mut options = LaunchOptions::new(dir.path().join("run")).expect("options");
    options.readiness_deadline = Duration::from_secs(45);
    let mut fed = Federation::start(topology, options)
        .await
        .expect("federation");
    let url = fed.node_url("edge").expect("edge url").to_string();
    let pid = fed.node_pid("edge").expect("edge runs");
    let mut supervision = Supervision::new();
    assert!(
        supervision.step(&mut fed, Instant::now()).await.is_empty(),
        "nothing died yet"
    );

    kill(
        Pid::from_raw(i32::try_from(pid).expect("pid")),
        Signal::SIGKILL,
    )
    .expect("kill -9");
    let edge = Member::Node("edge".to_string());
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while supervision.restarts(&edge) == 0 {
        assert!(
            Instant::now() < deadline,
            "edge never restarted; events: {seen:?}"
        );
        seen.extend(supervision.step(&mut fed, Instant::now()).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(seen.first(), Some(SupervisionEvent::Exited { member, .. }) if *member == edge),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| e.to_string().contains("restarting it in")),
        "{seen:?}"
    );
    assert_ne!(fed.node_pid("edge"), Some(pid), "a new process");
    assert_eq!(
        fed.node_url("edge"),
        Some(url.as_str()),
        "on the same address"
    );

    // It answers again, and the marketplace sees it alive again.
    let client = http_client();
    poll_until(
        Duration::from_secs(20),
        "edge alive at the marketplace again",
        || async {
            let fog: serde_json::Value = client
                .get(format!("{}/api/fog", fed.marketplace_url()))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            fog.as_array()?
                .iter()
                .any(|n| n["name"] == "edge" && n["alive"] == true)
                .then_some(())
        },
    )
    .await;
    fed.stop().await.expect("stop");
}
