//! The dashboard page in a real browser: headless Chromium driven over WebDriver by
//! `chromedriver` (Debian packages `chromium` and `chromium-driver`), against an in-process
//! marketplace and fake fog nodes. Saves a screenshot to `target/test-artifacts/dashboard.png`.
//!
//! Without Chromium or chromedriver the test fails saying what to install; `just test` reports
//! it as skipped instead of starting it, and CI installs both.

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use model::protocol::Resources;
use model::{Bytes, Cpu, Timestamp};
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long the page may take to show everything (it refreshes every second).
const PAGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long chromedriver may take to answer `/status`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(20);

/// `name` in one of the `PATH` directories.
fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    in_path("chromium").or_else(|| in_path("chromium-browser"))
}

fn chromedriver() -> Option<PathBuf> {
    in_path("chromedriver").or_else(|| {
        let fixed = Path::new("/usr/bin/chromedriver");
        fixed.is_file().then(|| fixed.to_path_buf())
    })
}

/// `chromedriver` on a free loopback port; killed when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start(binary: &Path) -> Driver {
        // Learn a free port, release it, hand it to chromedriver.
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
            probe.local_addr().expect("probe address").port()
        };
        let mut child = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + DRIVER_DEADLINE;
        loop {
            if let Ok(r) = http
                .get(format!("{url}/status"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited before it was ready: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready on {url} within {DRIVER_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.display().to_string(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1500", "--hide-scrollbars",
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot open a Chromium session via {}: {e}", driver.url))
}

/// Where test artifacts go: `<target dir>/test-artifacts`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts")
}

/// What the page shows, read in the browser.
const SNAPSHOT_JS: &str = r##"
const q = (s) => Array.from(document.querySelectorAll(s));
return {
  loaded: document.body.dataset.loaded,
  status: (document.getElementById("status") || {}).dataset?.state || null,
  nodes: q("#tree [data-node-name]").map((e) => ({
    name: e.dataset.nodeName, state: e.dataset.nodeState, reachable: e.dataset.reachable,
    text: e.innerText,
  })),
  slas: q("#placements [data-sla-id]").map((e) => ({ id: e.dataset.slaId, text: e.innerText })),
  auctions: q("#auctions [data-auction-id]").length,
  rates: q("#rates [data-rates-node]").map((e) => ({
    node: e.dataset.ratesNode,
    served: (e.querySelector('[data-rate="served"]') || {}).innerText || null,
  })),
  summary: (document.getElementById("summary") || {}).innerText || null,
  text: document.body.innerText,
};
"##;

/// Nothing the page script skipped (a `null` chip, an undefined field) shows up as text.
fn assert_nothing_leaks(snapshot: &Value) {
    let text = snapshot["text"].as_str().unwrap_or_default();
    for leaked in ["null", "undefined", "NaN", "[object"] {
        assert!(
            !text.contains(leaked),
            "the page shows `{leaked}`; summary: {}\n{text}",
            snapshot["summary"]
        );
    }
}

#[tokio::test]
async fn the_dashboard_shows_every_node_the_placement_and_a_dead_node_in_chromium() {
    let (Some(chromium), Some(chromedriver)) = (chromium(), chromedriver()) else {
        panic!(
            "the dashboard browser test needs Chromium and chromedriver \
             (apt-get install -y chromium chromium-driver); `just test` skips it without them"
        );
    };

    // A federation: cloud -> regional -> edge-1, edge-2; regional relays to its children.
    let app = spawn_app().await;
    let price = |p: f64| NodeBehaviour {
        price: p,
        ..NodeBehaviour::default()
    };
    let cloud = FakeNode::start(&app, "cloud", None, price(6.0)).await;
    let regional = FakeNode::start(&app, "regional", Some("cloud"), price(5.0)).await;
    let e1 = FakeNode::start(&app, "edge-1", Some("regional"), price(3.0)).await;
    let e2 = FakeNode::start(&app, "edge-2", Some("regional"), price(4.0)).await;
    regional.add_child(&e1);
    regional.add_child(&e2);
    cloud.set_links(&[(&regional, "child", Some(15.0))]);
    regional.set_links(&[
        (&cloud, "parent", Some(15.0)),
        (&e1, "child", Some(4.2)),
        (&e2, "child", Some(6.8)),
    ]);
    e1.set_links(&[(&regional, "parent", Some(4.2))]);
    cloud.set_totals(Some((0, 0, 0)));
    regional.set_totals(Some((0, 0, 0)));

    let (status, placed) = app
        .put_function_raw(
            "?provision=true",
            json!({"sla": sla(), "targetNode": "regional"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    let sla_id = placed["sla"]["id"].as_str().expect("sla.id").to_string();
    let mut huge = sla();
    huge["cpu"] = json!("64 cpu");
    let (status, body) = app
        .put_function(&json!({"sla": huge, "targetNode": "regional"}))
        .await;
    assert_eq!(status, 422, "{body}");

    // Some load on edge-1 so that its rates move.
    let load = {
        let e1 = e1.clone();
        tokio::spawn(async move {
            let mut served = 0;
            loop {
                served += 5;
                e1.set_totals(Some((served, served / 5, 0)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let driver = Driver::start(&chromedriver).await;
    let client = browser(&driver, &chromium).await;
    let names = ["cloud", "regional", "edge-1", "edge-2"];
    let outcome = AssertUnwindSafe(async {
        client
            .goto(&format!("{}/", app.address))
            .await
            .expect("the page loads");
        // First every node alive: no dead or unreachable chip, and nothing skipped leaks out.
        let deadline = Instant::now() + PAGE_DEADLINE;
        loop {
            let snap = client
                .execute(SNAPSHOT_JS, Vec::new())
                .await
                .expect("the snapshot script runs");
            let nodes = snap["nodes"].as_array().cloned().unwrap_or_default();
            if snap["loaded"] == "true"
                && names.iter().all(|name| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == *name && n["state"] == "alive")
                })
            {
                assert_nothing_leaks(&snap);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show the four nodes alive within {PAGE_DEADLINE:?}:\n{snap:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // edge-2 goes away: unreachable, and dead once it missed its heartbeats.
        e2.stop().await;
        let later = Timestamp::now().plus(Duration::from_secs(3600));
        app.market
            .mark_silent_nodes_dead(later)
            .await
            .expect("liveness step");
        // The others heartbeat (edge-1 with its reservation) and are alive again.
        let hosting = Resources::new(Cpu::from_millis(500), Bytes::from_mb(256));
        for (n, reserved) in [
            (&cloud, Resources::ZERO),
            (&regional, Resources::ZERO),
            (&e1, hosting),
        ] {
            let key = n.key();
            let (status, body) = heartbeat(&app, n.id, &key, reserved).await;
            assert_eq!(status, 200, "{body}");
        }

        let deadline = Instant::now() + PAGE_DEADLINE;
        let snapshot = loop {
            let snap = client
                .execute(SNAPSHOT_JS, Vec::new())
                .await
                .expect("the snapshot script runs");
            let text = snap["text"].as_str().unwrap_or_default();
            let nodes = snap["nodes"].as_array().cloned().unwrap_or_default();
            let all_nodes = names
                .iter()
                .all(|name| text.contains(name) && nodes.iter().any(|n| n["name"] == *name));
            let placement_shown = text.contains(&sla_id)
                && snap["slas"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|p| p["id"] == sla_id.as_str()));
            // edge-1 is under load: its served rate is a positive number.
            let rates_shown = snap["rates"].as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["node"] == "edge-1"
                        && r["served"]
                            .as_str()
                            .and_then(|t| t.parse::<f64>().ok())
                            .is_some_and(|v| v > 0.0)
                })
            });
            if snap["loaded"] == "true"
                && all_nodes
                && placement_shown
                && rates_shown
                && snap["auctions"].as_u64() == Some(2)
            {
                break snap;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show every node, the placement {sla_id}, edge-1's rates and \
                 both auctions within {PAGE_DEADLINE:?}; it shows:\n{snap:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let nodes = snapshot["nodes"].as_array().cloned().unwrap_or_default();
        let card = |name: &str| {
            nodes
                .iter()
                .find(|n| n["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} on the page"))
        };
        let dead = card("edge-2");
        assert_eq!(dead["state"], "dead", "{dead}");
        assert_eq!(dead["reachable"], "false", "{dead}");
        assert!(
            dead["text"]
                .as_str()
                .is_some_and(|t| t.to_lowercase().contains("dead")),
            "edge-2's card says it is dead: {dead}"
        );
        for name in ["cloud", "regional", "edge-1"] {
            assert_eq!(card(name)["state"], "alive", "{name}");
        }
        assert!(
            card("regional")["text"]
                .as_str()
                .is_some_and(|t| t.contains("edge-1") && t.contains("4.2 ms")),
            "link latencies are shown: {}",
            card("regional")
        );
        assert_eq!(snapshot["status"], "ok", "{snapshot:#}");
        assert_nothing_leaks(&snapshot);

        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let png = client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = dir.join("dashboard.png");
        std::fs::write(&path, &png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let shown = path.canonicalize().unwrap_or(path);
        println!("dashboard screenshot: {}", shown.display());
        eprintln!("dashboard screenshot: {}", shown.display());
    })
    .catch_unwind()
    .await;

    // Close the browser before chromedriver goes, whatever happened above.
    let _ = client.close().await;
    driver.stop().await;
    load.abort();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
