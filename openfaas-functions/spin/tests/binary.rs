//! Starts the real `fn-spin` binary with `PORT=0` and talks HTTP to it.

use fn_common::testing::FnProcess;

#[test]
fn the_binary_serves_health_and_spins_on_request() {
    let proc = FnProcess::start(env!("CARGO_BIN_EXE_fn-spin"), &[]);
    assert_eq!(proc.request("GET", "/_/health", &[], b"").status, 200);

    // Probes are answered while a spin is in flight (it runs on the blocking pool).
    let addr = proc.addr;
    let spinning = std::thread::spawn(move || {
        fn_common::testing::send(addr, "POST", "/", &[], br#"{"ms": 300}"#)
    });
    assert_eq!(proc.request("GET", "/_/ready", &[], b"").status, 200);

    let resp = spinning.join().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let report: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(report["spunMs"], 300);
    assert!(report["elapsedMs"].as_f64().unwrap() >= 300.0, "{report}");
    assert!(report["iterations"].as_u64().unwrap() > 0, "{report}");

    assert_eq!(proc.request("GET", "/?ms=x", &[], b"").status, 400);
}
