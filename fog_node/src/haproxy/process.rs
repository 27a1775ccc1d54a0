//! The HAProxy master-worker process: start, apply (weights at run time, reloads for
//! structure), and stop.

use super::*;

/// How long `start` waits for the first worker to answer on the admin socket.
pub(super) const START_DEADLINE: Duration = Duration::from_secs(15);

/// How long `apply` waits for a reloaded worker to answer on the admin socket.
pub(super) const RELOAD_DEADLINE: Duration = Duration::from_secs(15);

/// After this long without the master re-executing, a `reload` is considered lost and resent.
pub(super) const RELOAD_RESEND: Duration = Duration::from_secs(3);

/// How long `haproxy -c` may take.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// How long `stop` lets HAProxy terminate after SIGTERM before SIGKILL.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Interval between two readiness probes while polling against a deadline.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// `sun_path` is 108 bytes; HAProxy binds `<path>.<pid>.tmp` first, keep room for it.
pub(super) const MAX_SOCKET_PATH: usize = 90;

pub(super) const SIGTERM: i32 = 15;

pub(super) const SIGKILL: i32 = 9;

/// The part of a [`Desired`] whose change requires a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Structure {
    functions: Vec<FunctionStructure>,
}

/// A function's routes, servers (name, effective address) and request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FunctionStructure {
    service: String,
    aliases: Vec<String>,
    servers: Vec<(String, SocketAddr)>,
    headers: Vec<(String, String)>,
}

/// What the running worker is known to have.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    structure: Structure,
    /// (backend, server) -> HAProxy weight.
    weights: BTreeMap<(String, String), u32>,
}

/// A running HAProxy plus the reject listener. Dropping it kills HAProxy's process group.
pub struct Haproxy {
    binary: PathBuf,
    listen: SocketAddr,
    cfg_path: PathBuf,
    admin_sock: PathBuf,
    master_sock: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    pgid: i32,
    reject_addr: SocketAddr,
    reject_task: JoinHandle<()>,
    /// `None` after a failed apply: the next apply reloads from scratch.
    applied: Option<Applied>,
}

impl std::fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Haproxy")
            .field("binary", &self.binary)
            .field("listen", &self.listen)
            .field("cfg_path", &self.cfg_path)
            .field("pgid", &self.pgid)
            .field("reject_addr", &self.reject_addr)
            .finish_non_exhaustive()
    }
}

impl Haproxy {
    /// Writes an initial configuration (no functions), starts the reject listener and
    /// `haproxy -W -db -S <master.sock> -f <haproxy.cfg>` in its own process group, and waits
    /// (against a deadline) until the worker answers on the admin socket.
    pub async fn start(settings: HaproxySettings) -> Result<Haproxy, HaproxyError> {
        if settings.listen.port() == 0 {
            return Err(HaproxyError::InvalidSettings(format!(
                "listen address {} has port 0; pick a concrete port (see free_port())",
                settings.listen
            )));
        }
        let binary = resolve_binary(&settings.binary)?;
        tokio::fs::create_dir_all(&settings.work_dir)
            .await
            .map_err(|source| io_err(format!("creating {:?}", settings.work_dir), source))?;
        let work_dir = tokio::fs::canonicalize(&settings.work_dir)
            .await
            .map_err(|source| io_err(format!("resolving {:?}", settings.work_dir), source))?;
        let admin_sock = work_dir.join("admin.sock");
        let master_sock = work_dir.join("master.sock");
        if let Some(c) = work_dir
            .to_string_lossy()
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"'#,$\\".contains(*c))
        {
            return Err(HaproxyError::InvalidSettings(format!(
                "work_dir {work_dir:?} contains {c:?}, which HAProxy's config and -S syntax cannot take"
            )));
        }
        for sock in [&admin_sock, &master_sock] {
            if sock.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(HaproxyError::InvalidSettings(format!(
                    "socket path {sock:?} is longer than {MAX_SOCKET_PATH} bytes; use a shorter work_dir"
                )));
            }
        }
        let cfg_path = work_dir.join("haproxy.cfg");
        let log_path = work_dir.join("haproxy.log");

        let (reject_addr, reject_task) = start_reject_listener()
            .await
            .map_err(|source| io_err("starting the reject listener", source))?;

        let mut haproxy = Haproxy {
            binary,
            listen: settings.listen,
            cfg_path,
            admin_sock,
            master_sock,
            log_path,
            child: None,
            pgid: 0,
            reject_addr,
            reject_task,
            applied: None,
        };
        let empty = Desired::default();
        haproxy.write_checked_config(&empty).await?;
        haproxy.spawn().await?;
        haproxy.wait_for_worker(None, START_DEADLINE).await?;
        haproxy.applied = Some(Applied {
            structure: haproxy.structure(&empty),
            weights: BTreeMap::new(),
        });
        tracing::info!(listen = %haproxy.listen, reject = %haproxy.reject_addr, pid = haproxy.pgid, "haproxy started");
        Ok(haproxy)
    }

    /// Makes HAProxy route `desired`. Structural changes rewrite the config and reload
    /// seamlessly; pure weight changes go through `set weight` on the Runtime API.
    pub async fn apply(&mut self, desired: &Desired) -> Result<ApplyOutcome, HaproxyError> {
        let desired = desired.normalised()?;
        self.check_alive()?;
        let structure = self.structure(&desired);
        let weights = desired_weights(&desired);

        let same_structure = matches!(&self.applied, Some(a) if a.structure == structure);
        if !same_structure {
            self.applied = None;
            self.reload(&desired).await?;
            self.applied = Some(Applied { structure, weights });
            return Ok(ApplyOutcome {
                reloaded: true,
                weight_commands: 0,
            });
        }

        let known = self
            .applied
            .as_ref()
            .map(|a| a.weights.clone())
            .unwrap_or_default();
        let commands: Vec<String> = weights
            .iter()
            .filter(|(key, w)| known.get(*key) != Some(*w))
            .map(|((backend, server), w)| format!("set weight {backend}/{server} {w}"))
            .collect();
        if let Err(e) = self.send_batched(&commands).await {
            // What the worker has is unknown now: resend everything next time.
            if let Some(a) = self.applied.as_mut() {
                a.weights.clear();
            }
            return Err(e);
        }
        if let Some(a) = self.applied.as_mut() {
            a.weights = weights;
        }
        if !commands.is_empty() {
            tracing::debug!(count = commands.len(), "haproxy weights updated");
        }
        Ok(ApplyOutcome {
            reloaded: false,
            weight_commands: commands.len(),
        })
    }

    /// One raw Runtime API exchange on the admin socket (`level admin`). Several commands
    /// may be separated by `;`; the answer is returned as is (errors are answer text).
    pub async fn runtime(&self, command: &str) -> Result<String, HaproxyError> {
        if command.contains(['\n', '\r']) {
            return Err(HaproxyError::Runtime {
                command: command.to_string(),
                answer: "refused by the driver: one line only, separate commands with ';'".into(),
            });
        }
        cli(&self.admin_sock, command).await
    }

    /// The PID of the worker currently answering the admin socket (`show info` → `Pid`).
    pub async fn worker_pid(&self) -> Result<u32, HaproxyError> {
        let info = self.runtime("show info").await?;
        parse_info_pid(&info).ok_or_else(|| HaproxyError::Runtime {
            command: "show info".into(),
            answer: info,
        })
    }

    /// Base URL of the frontend, e.g. `http://127.0.0.1:8080`.
    pub fn frontend_url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// Address of the built-in reject listener (429 for everything).
    pub fn reject_addr(&self) -> SocketAddr {
        self.reject_addr
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> &Path {
        &self.cfg_path
    }

    /// HAProxy's stderr (alerts and warnings; there is no access log).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops HAProxy (SIGTERM to its process group, SIGKILL after a grace period) and the
    /// reject listener. Files in `work_dir` are left in place.
    pub async fn stop(mut self) {
        self.reject_task.abort();
        if let Some(mut child) = self.child.take() {
            signal_group(self.pgid, SIGTERM);
            if timeout(STOP_GRACE, child.wait()).await.is_err() {
                tracing::warn!(pgid = self.pgid, "haproxy ignored SIGTERM; killing");
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            // Workers of older generations (still draining) live in the same group.
            signal_group(self.pgid, SIGKILL);
        }
    }

    // ---- internals ----

    fn structure(&self, desired: &Desired) -> Structure {
        Structure {
            functions: desired
                .functions
                .iter()
                .map(|f| FunctionStructure {
                    service: f.service.clone(),
                    aliases: f.aliases.clone(),
                    servers: f
                        .servers
                        .iter()
                        .map(|s| (s.name.clone(), effective_addr(self.reject_addr, s)))
                        .collect(),
                    headers: f
                        .server_name_header
                        .iter()
                        .map(|h| (h.clone(), "<server name>".to_string()))
                        .chain(f.peer_headers.iter().cloned())
                        .collect(),
                })
                .collect(),
        }
    }

    /// Renders `desired`, validates it with `haproxy -c` and moves it into place.
    async fn write_checked_config(&self, desired: &Desired) -> Result<(), HaproxyError> {
        let text = render_config(self.listen, &self.admin_sock, self.reject_addr, desired);
        let tmp = self.cfg_path.with_extension("cfg.new");
        tokio::fs::write(&tmp, &text)
            .await
            .map_err(|source| io_err(format!("writing {tmp:?}"), source))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c")
            .arg("-f")
            .arg(&tmp)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match timeout(CHECK_TIMEOUT, cmd.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(HaproxyError::Spawn {
                    binary: self.binary.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(HaproxyError::Timeout {
                    what: "`haproxy -c`".into(),
                    after: CHECK_TIMEOUT,
                    last: String::new(),
                    log_tail: String::new(),
                });
            }
        };
        if !output.status.success() {
            let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(HaproxyError::ConfigCheck {
                path: tmp,
                output: out,
            });
        }
        tokio::fs::rename(&tmp, &self.cfg_path)
            .await
            .map_err(|source| io_err(format!("renaming {tmp:?}"), source))
    }

    async fn spawn(&mut self) -> Result<(), HaproxyError> {
        let log = std::fs::File::create(&self.log_path)
            .map_err(|source| io_err(format!("creating {:?}", self.log_path), source))?;
        let mut master_arg = self.master_sock.as_os_str().to_owned();
        master_arg.push(",mode,600");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-W")
            .arg("-db")
            .arg("-S")
            .arg(master_arg)
            .arg("-f")
            .arg(&self.cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| HaproxyError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| HaproxyError::Exited {
            status: "exited immediately".into(),
            log_tail: String::new(),
        })?;
        self.pgid = i32::try_from(pid).unwrap_or(0);
        self.child = Some(child);
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), HaproxyError> {
        let Some(child) = self.child.as_mut() else {
            return Err(HaproxyError::Exited {
                status: "not running".into(),
                log_tail: self.log_tail(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(HaproxyError::Exited {
                    status: status.to_string(),
                    log_tail: self.log_tail(),
                })
            }
            Err(source) => Err(io_err("checking the haproxy process", source)),
        }
    }

    /// Polls the admin socket until a worker other than `old_pid` answers `show info`.
    async fn wait_for_worker(
        &mut self,
        old_pid: Option<u32>,
        deadline: Duration,
    ) -> Result<u32, HaproxyError> {
        let until = Instant::now() + deadline;
        let mut last: String;
        loop {
            self.check_alive()?;
            match cli(&self.admin_sock, "show info").await {
                Ok(info) => match parse_info_pid(&info) {
                    Some(pid) if Some(pid) != old_pid => return Ok(pid),
                    Some(pid) => last = format!("old worker {pid} still answers"),
                    None => last = format!("unexpected `show info` answer: {info:?}"),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the haproxy worker to answer on the admin socket".into(),
                    after: deadline,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn reload(&mut self, desired: &Desired) -> Result<(), HaproxyError> {
        self.write_checked_config(desired).await?;
        let until = Instant::now() + RELOAD_DEADLINE;
        let log_offset = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let old_pid = self.worker_pid().await.ok();
        let before = self.master_procs(until).await?;
        let mut sent_at = self.send_reload(until).await?;
        let mut last: String;
        let new_pid = loop {
            self.check_alive()?;
            match cli(&self.master_sock, "show proc").await {
                Ok(text) => match parse_show_proc(&text) {
                    Some(now) if now.failed > before.failed => {
                        return Err(HaproxyError::ReloadFailed {
                            detail: format!("master reports {} failed reloads", now.failed),
                            log_tail: self.log_tail(),
                        });
                    }
                    Some(now) if now.reloads > before.reloads => match now.workers.first() {
                        Some(pid) => break *pid,
                        None => last = format!("master lists no worker: {text:?}"),
                    },
                    Some(_) if sent_at.elapsed() >= RELOAD_RESEND => {
                        // The master answers but never re-executed: the reload was lost.
                        tracing::warn!("haproxy master ignored `reload`; sending it again");
                        last = "reload ignored by the master".into();
                        sent_at = self.send_reload(until).await?;
                    }
                    Some(_) => last = "the master has not re-executed yet".into(),
                    None => last = format!("unexpected `show proc` answer: {text:?}"),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the master to start a new worker after reload".into(),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        };
        // The new worker answers the admin socket once it runs the new configuration.
        loop {
            match self.worker_pid().await {
                Ok(pid) if pid == new_pid => break,
                Ok(pid) => last = format!("worker {pid} answers, waiting for {new_pid}"),
                Err(e) => last = e.to_string(),
            }
            self.check_alive()?;
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: format!("new worker {new_pid} to answer on the admin socket"),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
        // Both generations share the listening sockets; the old worker stops accepting once
        // it has processed its soft-stop (SIGUSR1). Wait for that so that a connection opened
        // after `apply` returns is served by the new configuration.
        if let Some(old) = old_pid.filter(|old| *old != new_pid) {
            loop {
                match cli(&self.master_sock, &format!("@!{old} show info")).await {
                    Ok(answer) if answer.contains("Can't find the target PID") => break,
                    Ok(answer) if answer.lines().any(|l| l.trim() == "Stopping: 1") => break,
                    Ok(_) | Err(_) => {}
                }
                if Instant::now() >= until {
                    tracing::warn!(old, "old haproxy worker did not report soft-stop in time");
                    break;
                }
                sleep(POLL_INTERVAL).await;
            }
        }
        // In master-worker mode a failed listener hand-over is not fatal: the new worker binds
        // fresh sockets (SO_REUSEPORT) and connections queued on the old ones may be reset.
        let new_log = self.log_since(log_offset);
        if new_log.contains("Failed to get the sockets from the old process") {
            tracing::warn!(
                log = %new_log,
                "haproxy reload was not seamless: listening sockets were not handed over"
            );
        }
        tracing::info!(
            ?old_pid,
            new_pid,
            functions = desired.functions.len(),
            "haproxy reloaded"
        );
        Ok(())
    }

    /// `show proc` on the master, retried until it answers or `until`.
    async fn master_procs(&self, until: Instant) -> Result<MasterProcs, HaproxyError> {
        loop {
            let last = match cli(&self.master_sock, "show proc").await {
                Ok(text) => match parse_show_proc(&text) {
                    Some(procs) => return Ok(procs),
                    None => format!("unexpected `show proc` answer: {text:?}"),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= until {
                return Err(HaproxyError::Timeout {
                    what: "the master CLI to answer `show proc`".into(),
                    after: RELOAD_DEADLINE,
                    last,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends `reload` to the master CLI. A refused connection (the master CLI listener is
    /// briefly unavailable, e.g. right after start-up under load) certainly did not deliver
    /// the command, so it is retried until `until`. Returns when the command was sent.
    async fn send_reload(&self, until: Instant) -> Result<Instant, HaproxyError> {
        loop {
            let last = match UnixStream::connect(&self.master_sock).await {
                Ok(stream) => {
                    let sent_at = Instant::now();
                    // HAProxy 2.6 answers nothing and closes the connection when it
                    // re-executes; newer versions answer `Success=1` / `Success=0`.
                    let answer = exchange(stream, "reload").await.unwrap_or_default();
                    if answer.contains("Success=0") {
                        return Err(HaproxyError::ReloadFailed {
                            detail: answer,
                            log_tail: self.log_tail(),
                        });
                    }
                    return Ok(sent_at);
                }
                Err(e) => e,
            };
            if Instant::now() >= until {
                return Err(HaproxyError::Socket {
                    path: self.master_sock.clone(),
                    command: "reload".into(),
                    source: last,
                });
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Sends commands over as few admin-socket connections as possible (one per ~8 kB line);
    /// any answer text means a command failed.
    async fn send_batched(&self, commands: &[String]) -> Result<(), HaproxyError> {
        let mut line = String::new();
        let mut batches = Vec::new();
        for command in commands {
            if !line.is_empty() && line.len() + command.len() + 1 > MAX_CLI_LINE {
                batches.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(command);
        }
        if !line.is_empty() {
            batches.push(line);
        }
        for batch in batches {
            let answer = cli(&self.admin_sock, &batch).await?;
            if !answer.trim().is_empty() {
                return Err(HaproxyError::Runtime {
                    command: batch,
                    answer: answer.trim().to_string(),
                });
            }
        }
        Ok(())
    }

    /// HAProxy's stderr from byte `offset` on.
    fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let start = bytes.len().saturating_sub(4096);
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            }
            Err(e) => format!("(cannot read {:?}: {e})", self.log_path),
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.reject_task.abort();
        if let Some(mut child) = self.child.take() {
            signal_group(self.pgid, SIGKILL);
            // kill_on_drop also kills the master; tokio reaps it in the background.
            let _ = child.start_kill();
        }
    }
}

pub(super) fn io_err(context: impl Into<String>, source: std::io::Error) -> HaproxyError {
    HaproxyError::Io {
        context: context.into(),
        source,
    }
}

pub(super) fn resolve_binary(binary: &Path) -> Result<PathBuf, HaproxyError> {
    let is_file = |p: &Path| p.is_file();
    if binary.as_os_str().is_empty() {
        return Err(HaproxyError::BinaryNotFound {
            binary: binary.to_path_buf(),
            detail: "empty path".into(),
        });
    }
    if binary.components().count() > 1 || binary.is_absolute() {
        return if is_file(binary) {
            Ok(binary.to_path_buf())
        } else {
            Err(HaproxyError::BinaryNotFound {
                binary: binary.to_path_buf(),
                detail: "no such file".into(),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_file(candidate))
        .ok_or_else(|| HaproxyError::BinaryNotFound {
            binary: binary.to_path_buf(),
            detail: format!("not in PATH={}", path.to_string_lossy()),
        })
}

/// Sends `signal` to the process group `pgid` (no-op for pgid <= 1).
pub(super) fn signal_group(pgid: i32, signal: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the
        // process group HAProxy's master leads (spawned with process_group(0)).
        unsafe {
            kill(-pgid, signal);
        }
    }
}
