//! Test helpers: an in-process gateway on port 0, the function binaries, polling with deadlines.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use faas_gateway::{Gateway, GatewaySettings, default_catalog_dir};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The catalog under test (`target/<profile>/`), with `fn-echo`, `fn-shasum`, `fn-spin` built.
pub fn catalog() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = default_catalog_dir();
            let missing = ["fn-echo", "fn-shasum", "fn-spin"]
                .iter()
                .any(|f| !dir.join(f).exists());
            if missing {
                let mut cmd = std::process::Command::new(env!("CARGO"));
                cmd.args(["build", "-p", "fn-echo", "-p", "fn-shasum", "-p", "fn-spin"]);
                if dir.file_name().is_some_and(|n| n == "release") {
                    cmd.arg("--release");
                }
                let status = cmd.status().expect("running cargo build for the functions");
                assert!(status.success(), "cargo build of the functions failed");
            }
            dir
        })
        .clone()
}

pub struct TestGateway {
    pub url: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_gateway() -> TestGateway {
    spawn_gateway_with(|_| {}).await
}

pub async fn spawn_gateway_with(configure: impl FnOnce(&mut GatewaySettings)) -> TestGateway {
    let mut settings = GatewaySettings::new("127.0.0.1:0".parse().unwrap(), catalog());
    configure(&mut settings);
    let gateway = Gateway::build(settings).await.expect("gateway builds");
    let url = gateway.url();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(gateway.run_until_stopped(async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let gw = TestGateway {
        url,
        http,
        stop: Some(tx),
        task: Some(task),
    };
    eventually("healthz answers", Duration::from_secs(10), || async {
        gw.http
            .get(gw.url("/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    gw
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Deploys as faas-cli does: PUT first, POST when PUT says 404.
    pub async fn deploy(&self, body: Value) -> reqwest::Response {
        let put = self
            .http
            .put(self.url("/system/functions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if put.status() != 404 {
            return put;
        }
        self.http
            .post(self.url("/system/functions"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /function/{name}` with `body`.
    pub async fn invoke(&self, name: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/function/{name}")))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `GET` of a `/system/*` path as text (logs) or JSON.
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn describe(&self, name: &str) -> Option<Value> {
        let r = self
            .http
            .get(self.url(&format!("/system/function/{name}")))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        assert_eq!(r.status(), 200);
        Some(r.json().await.unwrap())
    }

    /// `availableReplicas` (omitted when zero, as OpenFaaS does).
    pub async fn available(&self, name: &str) -> u64 {
        self.describe(name)
            .await
            .and_then(|v| v["availableReplicas"].as_u64())
            .unwrap_or(0)
    }

    pub async fn wait_available(&self, name: &str, n: u64) {
        eventually(
            &format!("{name} has {n} available replicas"),
            Duration::from_secs(15),
            || async { (self.available(name).await == n).then_some(()) },
        )
        .await
    }

    /// Pids of the ready replicas (`/system/replicas/{name}`, an extension of the gateway).
    pub async fn pids(&self, name: &str) -> Vec<u32> {
        let v: Value = self
            .http
            .get(self.url(&format!("/system/replicas/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn echo_deployment(name: &str) -> Value {
    json!({
        "service": name,
        "image": "ghcr.io/openfaas/echo:latest",
        "network": "func_functions",
        "envProcess": "",
        "envVars": {},
        "constraints": [],
        "secrets": [],
        "labels": {},
        "annotations": {},
        "registryAuth": "",
        "readOnlyRootFilesystem": false
    })
}

/// Polls `probe` until it returns `Some`, panicking after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn process_alive(pid: u32) -> bool {
    // A zombie (already killed, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

pub async fn wait_gone(pid: u32) {
    eventually(
        &format!("process {pid} is gone"),
        Duration::from_secs(10),
        || async { (!process_alive(pid)).then_some(()) },
    )
    .await
}

/// The operator's entry points of the test catalogs ([`manifest_catalog`]).
pub const TEST_MANIFEST: &str = r#"
[images.shasum.entry_points.sha256]
command = ["fn-shasum", "--stdin"]

[images.echo.entry_points.env]
command = ["sh", "-c", 'echo "$Http_Method|$Http_Path|$Http_Query|$Http_X_Custom|$GREETING|$fprocess"']

[images.echo.entry_points.fails]
command = ["sh", "-c", "echo broken >&2; exit 3"]

[images.echo.entry_points.sleep]
command = ["sleep", "5"]

[images.echo.entry_points.talker]
command = ["sh", "-c", 'echo "saw $Http_Method $Http_Path $Http_Query" >&2; cat']

[images.echo.entry_points.uid]
command = ["id", "-u"]

# Allocates a 256 MiB buffer and fills it: past any small memory limit.
[images.echo.entry_points.hog]
command = ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]

[images.echo.entry_points.missing]
command = ["no-such-program-xyz", "--flag"]
"#;

/// A catalog in a temp dir with the real functions and [`TEST_MANIFEST`] as `catalog.toml`.
pub fn manifest_catalog() -> tempfile::TempDir {
    let dir = temp_catalog(&[]);
    std::fs::write(dir.path().join("catalog.toml"), TEST_MANIFEST).unwrap();
    dir
}

/// A gateway on a [`manifest_catalog`]; keep the returned directory alive with it.
pub async fn spawn_manifest_gateway(
    configure: impl FnOnce(&mut GatewaySettings),
) -> (TestGateway, tempfile::TempDir) {
    let catalog = manifest_catalog();
    let dir = catalog.path().to_path_buf();
    let gw = spawn_gateway_with(move |s| {
        s.catalog_dir = dir;
        configure(s);
    })
    .await;
    (gw, catalog)
}

/// A catalog in a temp dir: links to the real functions plus extra shell-script functions.
/// Readable by everyone, as function processes of a root gateway run unprivileged.
pub fn temp_catalog(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let real = catalog();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["fn-echo", "fn-shasum", "fn-spin"] {
        std::os::unix::fs::symlink(real.join(f), dir.path().join(f)).unwrap();
    }
    for (name, body) in scripts {
        let p: &Path = &dir.path().join(name);
        std::fs::write(p, body.replace("$CATALOG", &real.display().to_string())).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}
