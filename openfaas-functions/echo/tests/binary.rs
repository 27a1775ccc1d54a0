//! Starts the real `fn-echo` binary with `PORT=0` and talks HTTP to it.

use std::time::Duration;

use fn_common::testing::FnProcess;

const BIN: &str = env!("CARGO_BIN_EXE_fn-echo");

#[test]
fn the_binary_serves_health_and_echoes_with_identity_headers() {
    let proc = FnProcess::start(
        BIN,
        &[
            ("FOGMARKET_NODE_NAME", "edge-7"),
            ("FOGMARKET_SLA_ID", "sla-9"),
        ],
    );
    let health = proc.request("GET", "/_/health", &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "OK");

    let resp = proc.request(
        "POST",
        "/?delay_ms=20",
        &[("Content-Type", "text/plain")],
        b"ping",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ping");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("x-served-by-node"), Some("edge-7"));
    assert_eq!(resp.header("x-sla-id"), Some("sla-9"));
    assert_eq!(
        resp.header("x-function-replica"),
        Some(proc.child.id().to_string().as_str())
    );

    let bad = proc.request("GET", "/?delay_ms=later", &[], b"");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("delay_ms"), "{}", bad.text());
}

#[test]
fn sigterm_stops_the_binary_cleanly() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let mut proc = FnProcess::start(BIN, &[]);
    assert_eq!(proc.request("GET", "/_/ready", &[], b"").status, 200);
    let pid = Pid::from_raw(proc.child.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(proc.wait_exit(Duration::from_secs(10)), Some(0));
}
