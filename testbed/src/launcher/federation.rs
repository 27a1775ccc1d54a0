//! A running federation ([`Federation`]): starting the marketplace and then every node in
//! order, what the tests and tools ask of it (URLs, ids, logs, kills, a marketplace restart),
//! and stopping it.

use super::config::{LinkEmulation, NodeConfig};
use super::error::{LaunchError, Result, io_err};
use super::options::LaunchOptions;
use super::process::{FOG_NODE_BIN, MARKETPLACE_BIN, Proc, find_binary};
use super::tls::{RunTls, marketplace_flags, node_label};
use crate::topology::Topology;
use model::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::ChildStdout;

/// How long a graceful stop waits before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One fog node's process, its URL once known and its id once registered.
pub(super) struct NodeProc {
    pub(super) proc: Proc,
    pub(super) url: String,
    pub(super) id: Option<NodeId>,
}

/// A running federation: one marketplace and one fog node process per topology node.
pub struct Federation {
    pub(super) topology: Topology,
    pub(super) options: LaunchOptions,
    pub(super) client: reqwest::Client,
    pub(super) marketplace: Proc,
    marketplace_addr: SocketAddr,
    database_url: String,
    pub(super) nodes: BTreeMap<String, NodeProc>,
    /// `https` with [`LaunchOptions::tls`], else `http`.
    scheme: &'static str,
    /// The run's CA certificate, with [`LaunchOptions::tls`].
    ca: Option<(PathBuf, String)>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("marketplace", &self.marketplace_url())
            .field("run_dir", &self.options.run_dir)
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|(n, p)| (n.as_str(), p.url.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn url_of(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

impl Federation {
    /// Writes the node configs, starts the marketplace and every node, and returns once every
    /// process answers `GET /api/health`, every node is registered and alive at the marketplace
    /// and (with `wait_for_neighbours`) knows its overlay neighbours.
    pub async fn start(topology: Topology, options: LaunchOptions) -> Result<Federation> {
        let marketplace_bin = find_binary(&options.bin_dir, MARKETPLACE_BIN)?;
        let node_bin = find_binary(&options.bin_dir, FOG_NODE_BIN)?;
        std::fs::create_dir_all(&options.run_dir).map_err(io_err(format!(
            "cannot create run directory {}",
            options.run_dir.display()
        )))?;
        let run_dir = std::fs::canonicalize(&options.run_dir).map_err(io_err(format!(
            "cannot resolve run directory {}",
            options.run_dir.display()
        )))?;
        let options = LaunchOptions {
            run_dir: run_dir.clone(),
            ..options
        };
        let database_url = options.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                run_dir.join("marketplace.db").display()
            )
        });
        // TLS material before any process: every member gets its certificate and the CA.
        let tls = RunTls::create(options.tls, &run_dir.join("tls"))?;
        let client = tls.client()?;
        let scheme = tls.scheme();
        let deadline = options.readiness_deadline;

        // The marketplace first: nodes need its URL.
        let mut marketplace = Proc {
            label: "marketplace".to_string(),
            binary: marketplace_bin,
            args: marketplace_args(&topology, &options, &database_url, &tls)?,
            envs: marketplace_env(&options),
            child: None,
            log: run_dir.join("marketplace.log"),
            stdout_log: run_dir.join("marketplace.stdout.log"),
        };
        let marketplace_addr = marketplace.start(deadline).await?;
        let marketplace_url = url_of(scheme, marketplace_addr);
        // From here on, `federation` owns the children: an early return kills them on drop.
        let mut federation = Federation {
            topology,
            options,
            client,
            marketplace,
            marketplace_addr,
            database_url,
            nodes: BTreeMap::new(),
            scheme,
            ca: tls.ca(),
        };
        federation.wait_healthy_marketplace().await?;
        federation
            .start_nodes(&node_bin, &marketplace_url, &tls)
            .await?;
        federation.wait_healthy_nodes().await?;
        federation.wait_registered().await?;
        if federation.options.wait_for_neighbours {
            federation.wait_neighbours().await?;
        }
        Ok(federation)
    }

    /// Writes every node's config, starts every node at once and reads their port lines
    /// concurrently; every process is owned by the federation even on error.
    async fn start_nodes(
        &mut self,
        node_bin: &Path,
        marketplace_url: &str,
        tls: &RunTls,
    ) -> Result<()> {
        let nodes_dir = self.options.run_dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir)
            .map_err(io_err(format!("cannot create {}", nodes_dir.display())))?;
        let mut started: Vec<(String, Proc, ChildStdout)> = Vec::new();
        for spec in self.topology.nodes() {
            let state_dir = nodes_dir.join(format!("{}-state", spec.name));
            std::fs::create_dir_all(&state_dir)
                .map_err(io_err(format!("cannot create {}", state_dir.display())))?;
            let mut config = NodeConfig::of(
                &self.topology,
                spec,
                marketplace_url,
                &self.options.enrollment_secret,
                &state_dir,
            );
            if self.options.emulate_links {
                config.link_emulation = Some(LinkEmulation::of(&self.topology, spec));
            }
            config.tls = tls.certify(&node_label(&spec.name))?;
            let text = config.to_toml().map_err(|e| LaunchError::Config {
                node: spec.name.clone(),
                reason: e.to_string(),
            })?;
            let config_path = nodes_dir.join(format!("{}.toml", spec.name));
            std::fs::write(&config_path, text)
                .map_err(io_err(format!("cannot write {}", config_path.display())))?;
            let mut proc = Proc {
                label: format!("fog node `{}`", spec.name),
                binary: node_bin.to_path_buf(),
                args: vec!["--config".to_string(), config_path.display().to_string()],
                envs: self.options.env.clone(),
                child: None,
                log: nodes_dir.join(format!("{}.log", spec.name)),
                stdout_log: nodes_dir.join(format!("{}.stdout.log", spec.name)),
            };
            let stdout = proc.spawn()?;
            started.push((spec.name.clone(), proc, stdout));
        }
        let deadline = self.options.readiness_deadline;
        let (procs, stdouts): (Vec<(String, Proc)>, Vec<ChildStdout>) = started
            .into_iter()
            .map(|(name, proc, stdout)| ((name, proc), stdout))
            .unzip();
        let addrs = futures::future::join_all(
            procs
                .iter()
                .zip(stdouts)
                .map(|((_, proc), stdout)| proc.read_listening_line(stdout, deadline)),
        )
        .await;
        let mut first_error = None;
        for ((name, proc), addr) in procs.into_iter().zip(addrs) {
            let url = match addr {
                Ok(a) => url_of(self.scheme, a),
                Err(e) => {
                    first_error.get_or_insert(e);
                    String::new()
                }
            };
            self.nodes.insert(
                name,
                NodeProc {
                    proc,
                    url,
                    id: None,
                },
            );
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `http://127.0.0.1:PORT` of the marketplace (`https://` with [`LaunchOptions::tls`]).
    pub fn marketplace_url(&self) -> String {
        url_of(self.scheme, self.marketplace_addr)
    }

    /// Whether every API is served over HTTPS ([`LaunchOptions::tls`]).
    pub fn tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The run's CA certificate file, with [`LaunchOptions::tls`].
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|(path, _)| path.as_path())
    }

    /// The run's CA certificate (PEM), with [`LaunchOptions::tls`].
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_ref().map(|(_, pem)| pem.as_bytes())
    }

    /// The node's own URL (`http://127.0.0.1:PORT`, or `https://…`).
    pub fn node_url(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(|n| n.url.as_str())
    }

    /// The id the marketplace gave the node.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes.get(name).and_then(|n| n.id)
    }

    /// The name of the node with this id.
    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, n)| n.id == Some(id))
            .map(|(name, _)| name.as_str())
    }

    /// Node names, sorted.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Whether link latencies are emulated in process ([`LaunchOptions::emulate_links`]).
    pub fn emulates_links(&self) -> bool {
        self.options.emulate_links
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn run_dir(&self) -> &Path {
        &self.options.run_dir
    }

    /// The marketplace's database URL (SQLite in the run directory unless given).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The stderr log of a node, or of the marketplace for `"marketplace"`.
    pub fn log_path(&self, name: &str) -> Option<&Path> {
        if name == "marketplace" {
            return Some(&self.marketplace.log);
        }
        self.nodes.get(name).map(|n| n.proc.log.as_path())
    }

    /// The HTTP client the launcher uses (no proxy; trusts the run's CA with TLS).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// SIGKILLs a node (its whole process group) and waits until it is gone.
    pub async fn kill_node(&mut self, name: &str) -> Result<()> {
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| LaunchError::UnknownNode(name.to_string()))?;
        node.proc.kill().await
    }

    /// Starts a node again (after [`kill_node`](Self::kill_node), or kills it first) with the
    /// same configuration, state directory (so the same key and id) and address, and waits
    /// until it has printed its listening line.
    pub async fn restart_node(&mut self, name: &str) -> Result<()> {
        let deadline = self.options.readiness_deadline;
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| LaunchError::UnknownNode(name.to_string()))?;
        if node.proc.child.is_some() {
            node.proc.kill().await?;
        }
        // Same address as before, so peers and the route table reach it where they did.
        if let Some(addr) = reqwest::Url::parse(&node.url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port()?)))
        {
            node.proc.envs.retain(|(k, _)| k != "FOG_NODE_LISTEN");
            node.proc.envs.push(("FOG_NODE_LISTEN".to_string(), addr));
        }
        let addr = node.proc.start(deadline).await?;
        node.url = url_of(self.scheme, addr);
        Ok(())
    }

    /// The processes that exited on their own since the last call, with their status (the
    /// ones stopped through this federation are not reported).
    pub fn exited(&mut self) -> Vec<(super::supervision::Member, String)> {
        use super::supervision::Member;
        let mut out = Vec::new();
        if let Some(status) = self.marketplace.take_exit() {
            out.push((Member::Marketplace, status));
        }
        for (name, node) in &mut self.nodes {
            if let Some(status) = node.proc.take_exit() {
                out.push((Member::Node(name.clone()), status));
            }
        }
        out
    }

    /// The process id of a running node (to signal it from outside, as a crash would).
    pub fn node_pid(&self, name: &str) -> Option<u32> {
        self.nodes
            .get(name)
            .and_then(|n| n.proc.pid())
            .and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    /// The process id of the running marketplace (to read its memory, or signal it from
    /// outside).
    pub fn marketplace_pid(&self) -> Option<u32> {
        self.marketplace
            .pid()
            .and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    /// SIGKILLs the marketplace (kill -9: no graceful shutdown) and waits until it is gone.
    pub async fn kill_marketplace(&mut self) -> Result<()> {
        self.marketplace.kill().await
    }

    /// Starts the marketplace again on the same address and database (after
    /// [`kill_marketplace`](Self::kill_marketplace), or kills it first), and waits until it
    /// answers `GET /api/health`. Nodes keep their configured marketplace URL.
    pub async fn restart_marketplace(&mut self) -> Result<()> {
        if self.marketplace.child.is_some() {
            self.marketplace.kill().await?;
        }
        // Same port as the first start, so the nodes find it again.
        let listen = self.marketplace_addr.to_string();
        for pair in self.marketplace.args.chunks_mut(2) {
            if pair[0] == "--listen" && pair.len() == 2 {
                pair[1] = listen.clone();
            }
        }
        let deadline = self.options.readiness_deadline;
        self.marketplace_addr = self.marketplace.start(deadline).await?;
        self.wait_healthy_marketplace().await
    }

    /// Stops every process: SIGTERM, then SIGKILL after a grace period. Nodes first.
    pub async fn stop(mut self) -> Result<()> {
        let grace = STOP_GRACE;
        let results =
            futures::future::join_all(self.nodes.values_mut().map(|n| n.proc.stop(grace))).await;
        let marketplace = self.marketplace.stop(grace).await;
        results.into_iter().collect::<Result<Vec<_>>>()?;
        marketplace
    }
}

/// The marketplace's command line: listen address, database, auction settings and, with TLS,
/// its certificate files.
fn marketplace_args(
    topology: &Topology,
    options: &LaunchOptions,
    database_url: &str,
    tls: &RunTls,
) -> Result<Vec<String>> {
    let settings = topology.marketplace();
    let mut args = vec![
        "--listen".to_string(),
        options.marketplace_listen.clone(),
        "--database-url".to_string(),
        database_url.to_string(),
        "--auction-rule".to_string(),
        settings.auction_rule.clone(),
        "--auction-timeout-ms".to_string(),
        settings.auction_timeout_ms.to_string(),
    ];
    if let Some(h) = settings.heartbeat_interval_ms {
        args.push("--heartbeat-interval-ms".to_string());
        args.push(h.to_string());
    }
    if let Some(files) = tls.certify("marketplace")? {
        args.extend(marketplace_flags(&files));
    }
    Ok(args)
}

/// The marketplace's environment: the extra environment of every process and the enrollment
/// secret (through the environment, not the command line, which `ps` shows).
fn marketplace_env(options: &LaunchOptions) -> Vec<(String, String)> {
    let mut envs = options.env.clone();
    envs.push((
        "FOGMARKET_ENROLLMENT_SECRET".to_string(),
        options.enrollment_secret.clone(),
    ));
    envs
}

impl Drop for Federation {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            node.proc.kill_now();
        }
        self.marketplace.kill_now();
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::tests::TREE;
    use super::*;
    use nix::unistd::Pid;

    /// Stand-in binaries: shell scripts in `dir`.
    fn stand_ins(dir: &Path, scripts: [(&str, &str); 2]) {
        use std::os::unix::fs::PermissionsExt;
        for (bin, script) in scripts {
            let path = dir.join(bin);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[tokio::test]
    async fn a_federation_with_missing_binaries_fails_before_starting_anything() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::BinaryNotFound { .. }), "{err}");
        assert!(!dir.path().join("run").exists());
    }

    /// A stand-in binary (a shell script) that prints the port line and then dies, to check
    /// that an exiting child is reported with its log.
    #[tokio::test]
    async fn a_marketplace_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        stand_ins(
            dir.path(),
            [
                (
                    MARKETPLACE_BIN,
                    "#!/bin/sh\necho 'database is on fire' >&2\nexit 3\n",
                ),
                (FOG_NODE_BIN, "#!/bin/sh\nexit 1\n"),
            ],
        );
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        options.readiness_deadline = Duration::from_secs(5);
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("marketplace"), "{err}");
        assert!(err.contains("database is on fire"), "{err}");
    }

    /// Stand-ins that announce a port but never answer: the health deadline is reported, and
    /// the child processes are killed (their group is gone afterwards).
    #[tokio::test]
    async fn a_marketplace_that_never_gets_healthy_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "#!/bin/sh\necho $$ > {}\necho 'listening on http://127.0.0.1:9'\nexec sleep 60\n",
            pid_file.display()
        );
        stand_ins(
            dir.path(),
            [(MARKETPLACE_BIN, &script), (FOG_NODE_BIN, &script)],
        );
        let mut options = LaunchOptions::new(dir.path().join("run")).unwrap();
        options.bin_dir = dir.path().to_path_buf();
        options.readiness_deadline = Duration::from_millis(500);
        let err = Federation::start(Topology::parse(TREE).unwrap(), options)
            .await
            .unwrap_err();
        assert!(matches!(err, LaunchError::NotHealthy { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The child was SIGKILLed and reaped (or is being reaped): poll until it is gone.
        crate::poll::poll_until(Duration::from_secs(5), "the stand-in to die", || async {
            let alive = nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true);
            (!alive).then_some(())
        })
        .await;
    }
}
