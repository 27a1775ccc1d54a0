//! Starts the real `fn-figlet` binary with `PORT=0` and talks HTTP to it.

use fn_common::testing::FnProcess;

#[test]
fn the_binary_serves_health_and_renders_a_banner() {
    let proc = FnProcess::start(env!("CARGO_BIN_EXE_fn-figlet"), &[]);
    assert_eq!(proc.request("GET", "/_/health", &[], b"").status, 200);

    let resp = proc.request("POST", "/", &[], b"Hi");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text().lines().nth(1), Some("| | | (_)"));

    assert_eq!(proc.request("POST", "/", &[], b"").status, 400);
}
