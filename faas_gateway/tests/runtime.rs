//! Running functions: classic watchdog mode, scale from zero, the bounded queue, autoscaling,
//! crash restarts, limits, shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use faas_gateway::service::{Service, ServiceConfig};
use faas_gateway::{Enforcement, api::FunctionDeployment};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_mode_pipes_the_body_through_the_process_and_reports_its_env() {
    let (gw, _catalog) = spawn_manifest_gateway(|_| {}).await;
    let mut body = echo_deployment("shasum");
    body["image"] = json!("ghcr.io/acme/shasum:1.0");
    body["envProcess"] = json!("sha256");
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw
        .http
        .post(gw.url("/function/shasum"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-duration-seconds"));
    assert_eq!(
        r.text().await.unwrap().trim(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );

    // Path, query and headers become Http_* variables; envVars and fprocess are set.
    let mut body = echo_deployment("env");
    body["envProcess"] = json!("env");
    body["envVars"] = json!({"GREETING": "hi"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw
        .http
        .put(gw.url("/function/env/sub/path?x=1"))
        .header("X-Custom", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("PUT|/sub/path|x=1|yes|hi|"), "{text}");
    assert!(text.contains("sh -c "), "{text}");

    // A failing process answers 500 with its stderr.
    let mut body = echo_deployment("fails");
    body["envProcess"] = json!("fails");
    assert_eq!(gw.deploy(body).await.status(), 202);
    let r = gw
        .http
        .post(gw.url("/function/fails"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("broken"));

    // An entry point whose program the operator did not install.
    let mut body = echo_deployment("nothing");
    body["envProcess"] = json!("missing");
    let r = gw.deploy(body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("envProcess"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_process_past_its_exec_timeout_is_killed_with_408() {
    let (gw, _catalog) =
        spawn_manifest_gateway(|s| s.exec_timeout = Duration::from_millis(300)).await;
    let mut body = echo_deployment("sleepy");
    body["envProcess"] = json!("sleep");
    assert_eq!(gw.deploy(body).await.status(), 202);
    let started = Instant::now();
    let r = gw
        .http
        .post(gw.url("/function/sleepy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_from_zero_keeps_twenty_concurrent_requests_waiting_and_serves_them_all() {
    let gw = spawn_gateway().await;
    let mut body = echo_deployment("cold");
    body["labels"] = json!({"com.openfaas.scale.min": "0", "com.openfaas.scale.max": "4"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    let status = gw.describe("cold").await.unwrap();
    assert!(status.get("availableReplicas").is_none(), "{status}");
    assert!(gw.pids("cold").await.is_empty());

    let calls = (0..20).map(|i| {
        gw.http
            .post(gw.url("/function/cold?delay_ms=200"))
            .body(format!("req-{i}"))
            .send()
    });
    let results = futures::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), format!("req-{i}"));
    }
    // Idle again: back to zero replicas after the scale-down delay.
    eventually(
        "cold scales back to zero",
        Duration::from_secs(15),
        || async {
            (gw.describe("cold").await.unwrap().get("replicas").is_none()
                && gw.pids("cold").await.is_empty())
            .then_some(())
        },
    )
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after() {
    // A function that takes 2 s to start, so requests pile up in the queue.
    let catalog = temp_catalog(&[(
        "fn-slowstart",
        "#!/bin/sh\nsleep 2\nexec $CATALOG/fn-echo\n",
    )]);
    let dir = catalog.path().to_path_buf();
    let gw = spawn_gateway_with(move |s| {
        s.catalog_dir = dir;
        s.queue_capacity = 2;
    })
    .await;
    let mut body = echo_deployment("slow");
    body["image"] = json!("slowstart");
    body["labels"] = json!({"com.openfaas.scale.min": "0"});
    assert_eq!(gw.deploy(body).await.status(), 202);

    let calls = (0..6).map(|_| gw.http.get(gw.url("/function/slow")).send());
    let (mut ok, mut rejected) = (0, 0);
    for r in futures::future::join_all(calls).await {
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(r.headers().contains_key("retry-after"));
                rejected += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, rejected), (2, 4));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_scales_replicas_up_within_seconds_and_idle_scales_them_down_to_min() {
    let gw = spawn_gateway().await;
    let mut body = echo_deployment("busy");
    body["labels"] = json!({"com.openfaas.scale.target": "2", "com.openfaas.scale.max": "6"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    gw.wait_available("busy", 1).await;

    let load = {
        let http = gw.http.clone();
        let url = gw.url("/function/busy?delay_ms=2500");
        tokio::spawn(async move {
            let calls = (0..10).map(|_| http.get(&url).send());
            futures::future::join_all(calls).await
        })
    };
    eventually(
        "busy scales up under load",
        Duration::from_secs(2),
        || async { (gw.available("busy").await >= 3).then_some(()) },
    )
    .await;
    for r in load.await.unwrap() {
        assert_eq!(r.unwrap().status(), 200);
    }
    eventually(
        "busy scales down to min",
        Duration::from_secs(15),
        || async { (gw.available("busy").await == 1).then_some(()) },
    )
    .await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_restarted() {
    let gw = spawn_gateway().await;
    assert_eq!(gw.deploy(echo_deployment("echo")).await.status(), 202);
    gw.wait_available("echo", 1).await;
    let pid = gw.pids("echo").await[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new_pid = eventually(
        "a new replica replaces the killed one",
        Duration::from_secs(10),
        || async { gw.pids("echo").await.into_iter().find(|p| *p != pid) },
    )
    .await;
    assert_ne!(new_pid, pid);
    assert_eq!(
        gw.http
            .get(gw.url("/function/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let logs = gw
        .http
        .get(gw.url("/system/logs?name=echo"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(logs.contains("restarting"), "{logs}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_limit_enforcement_applies_the_memory_limit_to_replicas() {
    let gw = spawn_gateway().await;
    let info: Value = gw
        .http
        .get(gw.url("/system/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut body = echo_deployment("limited");
    body["limits"] = json!({"memory": "256Mi", "cpu": "500m"});
    body["requests"] = json!({"memory": "64Mi", "cpu": "100m"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    gw.wait_available("limited", 1).await;
    let pid = gw.pids("limited").await[0];
    match info["limitEnforcement"]["mode"].as_str().unwrap() {
        "rlimit" => {
            assert_eq!(info["limitEnforcement"]["cpu"], "unenforced");
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max address space"))
                .unwrap();
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[3], "268435456", "{line}");
        }
        "cgroup-v2" => {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            let dir = format!("/sys/fs/cgroup{path}");
            assert_eq!(
                std::fs::read_to_string(format!("{dir}/memory.max"))
                    .unwrap()
                    .trim(),
                "268435456"
            );
            assert_eq!(
                std::fs::read_to_string(format!("{dir}/cpu.max"))
                    .unwrap()
                    .trim(),
                "50000 100000"
            );
        }
        other => panic!("unknown mode {other}"),
    }
    assert_eq!(
        gw.http
            .post(gw.url("/function/limited"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_gateway_kills_every_function_process() {
    let gw = spawn_gateway().await;
    let mut body = echo_deployment("echo");
    body["labels"] = json!({"com.openfaas.scale.min": "2"});
    assert_eq!(gw.deploy(body).await.status(), 202);
    gw.wait_available("echo", 2).await;
    let pids = gw.pids("echo").await;
    gw.stop().await;
    for pid in pids {
        wait_gone(pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_step_starts_and_stops_replicas_for_a_chosen_now() {
    let service = Service::new(
        ServiceConfig {
            catalog_dir: catalog(),
            queue_capacity: 10,
            upstream_timeout: Duration::from_secs(5),
            exec_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(10),
            extra_env: vec![],
            max_answer_bytes: 1 << 20,
        },
        Enforcement::configure(&Default::default()).unwrap(),
    )
    .unwrap();
    let deployment: FunctionDeployment = serde_json::from_value(json!({
        "service": "echo", "image": "echo",
        "labels": {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "3"}
    }))
    .unwrap();
    service.deploy(deployment, false).unwrap();
    let now = tokio::time::Instant::now();
    assert_eq!(service.scale_step(now).started.len(), 2);
    assert!(
        service.scale_step(now).started.is_empty(),
        "starting replicas count"
    );
    service.scale("echo", None, 0).unwrap();
    assert_eq!(service.scale_step(now).stopped.len(), 2);
    let later = now + Duration::from_secs(30);
    let report = service.scale_step(later);
    assert!(
        report.started.is_empty() && report.stopped.is_empty(),
        "{report:?}"
    );
    service.shutdown();
}

#[test]
fn the_binary_prints_its_address_serves_and_kills_its_functions_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faas-gateway"))
        .args(["--listen", "127.0.0.1:0", "--catalog"])
        .arg(catalog())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let pid = rt.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = http
            .post(format!("{url}/system/functions"))
            .json(&echo_deployment("echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        eventually("the replica is up", Duration::from_secs(15), || async {
            let v: Value = http
                .get(format!("{url}/system/replicas/echo"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v.as_array()?.iter().find(|r| r["state"] == "ready")?["pid"].as_u64()
        })
        .await as u32
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(wait_gone(pid));
}
