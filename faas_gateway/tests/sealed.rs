//! Sealed execution: a deployment picks an image and at most one of its declared entry points,
//! never a program; dangerous environment variables are refused; function processes of a root
//! gateway run unprivileged and within their memory limit, which is reported when hit; answers
//! are read up to a bound.
//!
//! The user-switch test needs root: it fails otherwise, and `just test` reports it as skipped
//! instead of starting it. The memory test checks cgroup v2 where it is usable and the rlimit
//! fallback where it is not.

mod common;

use std::time::Duration;

use common::*;
use faas_gateway::LimitMode;
use serde_json::{Value, json};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn info(gw: &TestGateway) -> Value {
    serde_json::from_str(&gw.get_text("/system/info").await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_command_as_env_process_is_refused_naming_env_process_and_nothing_runs() {
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("x");
    let mut body = echo_deployment("injected");
    body["envProcess"] = json!(format!("sh -c 'id > {}'", marker.display()));
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("envProcess:"), "{text}");
    assert!(gw.describe("injected").await.is_none(), "not deployed");
    let r = gw.invoke("injected", "").await;
    assert_eq!(r.status(), 404);
    assert!(!marker.exists(), "the command ran");

    // A plain name the image does not declare is refused as well, listing what it declares.
    let mut body = echo_deployment("undeclared");
    body["envProcess"] = json!("sh");
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("envProcess:"), "{text}");
    assert!(text.contains("talker"), "{text}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_and_path_variables_are_refused_naming_the_variable() {
    let gw = spawn_gateway().await;
    for name in ["LD_PRELOAD", "PATH", "fprocess", "PORT", "BAD-NAME"] {
        let mut body = echo_deployment("env-injected");
        body["envVars"] = json!({ name: "/tmp/evil" });
        let r = gw.deploy(body).await;
        assert_eq!(r.status(), 400, "{name}");
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with(&format!("envVars.{name}:")),
            "{name}: {text}"
        );
    }
    let mut body = echo_deployment("too-many");
    body["envVars"] = Value::Object((0..100).map(|i| (format!("V{i}"), json!("x"))).collect());
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("envVars:"));
    assert!(gw.describe("env-injected").await.is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_entry_point_runs_with_plain_variables() {
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let mut body = echo_deployment("env");
    body["envProcess"] = json!("env");
    body["envVars"] = json!({"GREETING": "hello"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw.invoke("env", "").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("|hello|"));
    let status = gw.describe("env").await.unwrap();
    assert_eq!(status["envProcess"], "env");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_processes_of_a_root_gateway_run_as_the_unprivileged_user() {
    assert!(
        is_root(),
        "the gateway is not root here, so there is no user to switch from; \
         `just test` skips this test when not run as root"
    );
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let uid = nobody.uid.as_raw();
    let run_as = info(&gw).await["limitEnforcement"]["runAs"].clone();
    assert_eq!(
        run_as,
        json!(format!("nobody (uid {uid}, gid {})", nobody.gid.as_raw()))
    );

    // A classic entry point reports its uid.
    let mut body = echo_deployment("whoami");
    body["envProcess"] = json!("uid");
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw.invoke("whoami", "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), uid.to_string());

    // An HTTP replica runs as that user too (real and effective ids).
    assert_eq!(gw.deploy(echo_deployment("echo")).await.status(), 202);
    gw.wait_available("echo", 1).await;
    let pid = gw.pids("echo").await[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(uids.iter().all(|u| *u == uid.to_string()), "{uids:?}");
    gw.stop().await;
}

/// Deploys the `hog` entry point with a 64 MiB limit, invokes it and checks that the answer,
/// the function's status and its logs say it exceeded its memory limit.
async fn a_memory_hog_is_stopped_and_reported(gw: &TestGateway, how: &str) {
    let mut body = echo_deployment("hog");
    body["envProcess"] = json!("hog");
    body["limits"] = json!({"memory": "64Mi"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw.invoke("hog", "").await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("exceeded its memory limit of 67108864 bytes"),
        "{text}"
    );
    assert!(text.contains(how), "{text}");
    let status = gw.describe("hog").await.unwrap();
    assert_eq!(status["memoryLimitKills"], 1, "{status}");
    assert!(
        status["lastMemoryLimitKill"]
            .as_str()
            .unwrap()
            .contains(how),
        "{status}"
    );
    let logs = gw.get_text("/system/logs?name=hog").await;
    assert!(logs.contains("exceeded its memory limit"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_rlimits_a_function_allocating_past_its_memory_limit_fails_and_is_reported() {
    let (gw, _catalog) = spawn_manifest_gateway(|s| s.isolation.limits = LimitMode::Rlimit).await;
    assert_eq!(info(&gw).await["limitEnforcement"]["mode"], "rlimit");
    a_memory_hog_is_stopped_and_reported(&gw, "RLIMIT_AS").await;
    gw.stop().await;
}

/// The default (`auto`) limits bite whatever the machine offers: under cgroup v2 the OOM
/// killer stops the hog; where cgroup v2 is not usable (no unified hierarchy with the memory
/// controller, or not root) the gateway says why in its info and falls back to rlimits, which
/// stop it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_default_limits_a_memory_hog_is_stopped_by_cgroup_v2_or_else_by_rlimits() {
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let enforcement = info(&gw).await["limitEnforcement"].clone();
    match enforcement["mode"].as_str() {
        Some("cgroup-v2") => a_memory_hog_is_stopped_and_reported(&gw, "OOM killer").await,
        Some("rlimit") => {
            let why = enforcement["detail"].as_str().unwrap_or_default();
            assert!(!why.is_empty(), "the fallback says why: {enforcement}");
            eprintln!("cgroup v2 is not usable here ({why}); checking the rlimit fallback");
            a_memory_hog_is_stopped_and_reported(&gw, "RLIMIT_AS").await;
        }
        other => panic!("unknown limit enforcement {other:?}: {enforcement}"),
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_bound_fails_with_502_saying_so() {
    let (gw, _catalog) = spawn_manifest_gateway(|s| s.max_answer_bytes = 1000).await;
    // HTTP replica: fn-echo answers its body.
    assert_eq!(gw.deploy(echo_deployment("echo")).await.status(), 202);
    let mut body = echo_deployment("talker");
    body["envProcess"] = json!("talker");
    assert_eq!(gw.deploy(body).await.status(), 202);
    gw.wait_available("echo", 1).await;
    for function in ["echo", "talker"] {
        let r = gw.invoke(function, "x".repeat(999)).await;
        assert_eq!(r.status(), 200, "{function}");
        let r = gw.invoke(function, "x".repeat(5000)).await;
        assert_eq!(r.status(), 502, "{function}");
        let text = r.text().await.unwrap();
        assert!(text.contains("answer larger than 1000 bytes"), "{text}");
    }
    // The replica is fine afterwards.
    let r = gw.invoke("echo", "ok").await;
    assert_eq!(r.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), gw.stop())
        .await
        .unwrap();
}
