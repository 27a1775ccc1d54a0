//! The process runner: starts a function replica (a long-lived HTTP server that prints
//! `listening on http://IP:PORT` and answers `GET /_/health`), pumps its output into the logs,
//! and runs classic-watchdog executions (body on stdin, stdout as the response).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::limits::{Confinement, Enforcement, FunctionLimits};
use crate::logs::LogStore;

/// Kills a whole process group (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ProcessGroup(i32);

impl ProcessGroup {
    /// Takes charge of the group `pgid`; 0 is a placeholder that kills nothing.
    pub fn from_raw(pgid: i32) -> Self {
        ProcessGroup(pgid)
    }

    pub fn pid(&self) -> u32 {
        self.0 as u32
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// What to run, for whom.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub limits: FunctionLimits,
    pub name: String,
    pub namespace: String,
}

impl ProcessSpec {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear();
        for key in model::exec::INHERITED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A started, ready replica. The caller keeps `group` (killing on drop) and hands `child` and
/// `confinement` to a supervisor that waits for the exit.
pub struct StartedReplica {
    pub group: ProcessGroup,
    pub addr: SocketAddr,
    pub child: Child,
    pub confinement: Confinement,
    /// Ends once the replica's stderr is closed and every line of it is in the logs.
    pub stderr_done: tokio::task::JoinHandle<()>,
}

/// `timeout` from now; a timeout too large for the clock (a configuration's "forever") is about
/// thirty years, as tokio's own timers take it, rather than a panic.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// Starts one replica and waits (until `ready_timeout`) for its listening line and a 200 on
/// `GET /_/health`.
pub async fn start_replica(
    spec: &ProcessSpec,
    instance: &str,
    enforcement: &Enforcement,
    logs: &Arc<LogStore>,
    http: &reqwest::Client,
    ready_timeout: Duration,
) -> Result<StartedReplica, String> {
    let deadline = deadline_after(ready_timeout);
    let mut cmd = spec.command();
    cmd.env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut confinement = enforcement
        .confine(instance, spec.limits, &mut cmd)
        .map_err(|e| format!("preparing limits: {e}"))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", spec.program.display()))?;
    confinement.spawned();
    let pid = child.id().ok_or("the process exited at once")? as i32;
    let group = ProcessGroup(pid);

    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let stderr_done = pump_lines(stderr, logs.clone(), spec, instance);
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?).lines();
    let addr = loop {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .map_err(|_| format!("no listening line within {ready_timeout:?}"))?
            .map_err(|e| format!("reading stdout: {e}"))?;
        let Some(line) = line else {
            let status = child.wait().await.ok();
            return Err(format!(
                "exited before listening ({})",
                status.map_or("unknown status".into(), |s| s.to_string())
            ));
        };
        match parse_listening_line(&line) {
            Some(addr) => break addr,
            None => logs.push(&spec.name, &spec.namespace, instance, &line),
        }
    };
    pump_lines(stdout.into_inner(), logs.clone(), spec, instance);

    let health = format!("http://{addr}/_/health");
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!(
                "{health} did not answer 200 within {ready_timeout:?}"
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited before becoming healthy ({status})"));
        }
        match http.get(&health).timeout(remaining).send().await {
            Ok(r) if r.status().is_success() => break,
            _ => tokio::time::sleep(Duration::from_millis(20).min(remaining)).await,
        }
    }
    Ok(StartedReplica {
        group,
        addr,
        child,
        confinement,
        stderr_done,
    })
}

/// `listening on http://IP:PORT` -> the address to call (an unspecified IP means loopback).
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on http://")?;
    let mut addr: SocketAddr = rest.trim_end_matches('/').parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Some(addr)
}

fn pump_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    logs: Arc<LogStore>,
    spec: &ProcessSpec,
    instance: &str,
) -> tokio::task::JoinHandle<()> {
    let (name, namespace, instance) = (
        spec.name.clone(),
        spec.namespace.clone(),
        instance.to_string(),
    );
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.push(&name, &namespace, &instance, &line);
        }
    })
}

/// Stderr of a classic execution kept for the answer and the logs; the rest is discarded.
const MAX_STDERR: usize = 64 * 1024;

/// Result of one classic-watchdog execution.
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// At most [`MAX_STDERR`] bytes.
    pub stderr: Vec<u8>,
    /// OOM kills in the execution's cgroup (`None` without a cgroup).
    pub oom_kills: Option<u64>,
}

pub enum ExecError {
    Spawn(String),
    Timeout,
    /// Stdout grew past the answer limit (bytes); the process was killed.
    AnswerTooLarge(usize),
}

/// Runs `spec` once with `stdin` as input; kills the process group after `timeout`, or as soon
/// as its stdout passes `max_answer` bytes.
pub async fn run_classic(
    spec: &ProcessSpec,
    extra_env: Vec<(String, String)>,
    instance: &str,
    enforcement: &Enforcement,
    stdin: Vec<u8>,
    timeout: Duration,
    max_answer: usize,
) -> Result<ExecOutput, ExecError> {
    let mut cmd = spec.command();
    cmd.envs(extra_env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut confinement = enforcement
        .confine(instance, spec.limits, &mut cmd)
        .map_err(|e| ExecError::Spawn(format!("preparing limits: {e}")))?;
    let mut child = cmd
        .spawn()
        .map_err(|e| ExecError::Spawn(format!("spawning {}: {e}", spec.program.display())))?;
    confinement.spawned();
    let group = child.id().map(|p| ProcessGroup(p as i32));
    let pgid = group.as_ref().map(|g| g.0);
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (Some(mut input), Some(out), Some(err)) = pipes else {
        return Err(ExecError::Spawn("the process has no stdio pipes".into()));
    };
    let run = async {
        let write = async {
            // A function that does not read its input must not block the execution.
            let _ = input.write_all(&stdin).await;
            drop(input);
        };
        let read_out = async {
            let mut o = Vec::new();
            let _ = out.take(max_answer as u64 + 1).read_to_end(&mut o).await;
            let too_large = o.len() > max_answer;
            if too_large && let Some(pgid) = pgid {
                // Nobody reads the rest: stop the whole group now rather than at the timeout.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            (o, too_large)
        };
        let read_err = async {
            let mut e = Vec::new();
            let mut err = err;
            let _ = (&mut err).take(MAX_STDERR as u64).read_to_end(&mut e).await;
            let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
            e
        };
        let (_, (o, too_large), e, status) = tokio::join!(write, read_out, read_err, child.wait());
        if too_large {
            return Err(ExecError::AnswerTooLarge(max_answer));
        }
        status
            .map(|status| ExecOutput {
                status,
                stdout: o,
                stderr: e,
                oom_kills: confinement.oom_kills(),
            })
            .map_err(|e| ExecError::Spawn(format!("waiting: {e}")))
    };
    let result = tokio::time::timeout(timeout, run).await;
    drop(group); // the whole group, whatever it spawned
    match result {
        Ok(output) => output,
        Err(_) => Err(ExecError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_a_callable_address() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:4567"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on http://0.0.0.0:80\n"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_listening_line("starting up"), None);
    }
}
