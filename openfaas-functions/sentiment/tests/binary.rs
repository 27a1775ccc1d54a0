//! Starts the real `fn-sentiment` binary with `PORT=0` and talks HTTP to it.

use fn_common::testing::FnProcess;

#[test]
fn the_binary_serves_health_and_scores_text() {
    let proc = FnProcess::start(env!("CARGO_BIN_EXE_fn-sentiment"), &[]);
    assert_eq!(proc.request("GET", "/_/health", &[], b"").status, 200);

    let resp = proc.request("POST", "/", &[], b"I hate this");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["label"], "negative", "{json}");
    assert!(json["compound"].as_f64().unwrap() < -0.05, "{json}");
}
