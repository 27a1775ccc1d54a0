//! Starts the real `fn-shasum` binary: as an HTTP function with `PORT=0`, and in `--stdin` mode.

use std::io::Write;
use std::process::{Command, Stdio};

use fn_common::testing::FnProcess;

const BIN: &str = env!("CARGO_BIN_EXE_fn-shasum");
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn the_binary_serves_health_and_hashes_the_body() {
    let proc = FnProcess::start(BIN, &[]);
    assert_eq!(proc.request("GET", "/_/health", &[], b"").status, 200);
    let resp = proc.request("POST", "/", &[], b"abc");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), format!("{ABC}\n"));
}

#[test]
fn stdin_mode_prints_the_digest_of_stdin_and_exits_0() {
    let mut child = Command::new(BIN)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{ABC}\n"));
}

#[test]
fn unknown_arguments_exit_2_with_usage() {
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdin"));
}
