//! Child processes: finding a workspace binary, spawning it in its own process group with its
//! logs in files, reading the `listening on http://IP:PORT` line it prints, and stopping or
//! killing it.

use super::error::{LaunchError, Result, io_err};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Name of the marketplace binary.
pub const MARKETPLACE_BIN: &str = "marketplace";
/// Name of the fog node binary.
pub const FOG_NODE_BIN: &str = "fog-node";

/// Lines of a log shown in an error.
const LOG_TAIL_LINES: usize = 20;

/// The directory holding the workspace binaries: the directory of the current executable, or
/// its parent when that is a `deps` directory (integration tests run from `target/debug/deps`).
pub fn default_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(LaunchError::CurrentExe)?;
    let dir = exe
        .parent()
        .ok_or_else(|| {
            LaunchError::CurrentExe(std::io::Error::other(format!(
                "{} has no parent directory",
                exe.display()
            )))
        })?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps")
        && let Some(parent) = dir.parent()
    {
        return Ok(parent.to_path_buf());
    }
    Ok(dir)
}

/// Finds `binary` in `dir`, with an error that says how to build it.
pub fn find_binary(dir: &Path, binary: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{binary}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LaunchError::BinaryNotFound {
            binary: binary.to_string(),
            dir: dir.display().to_string(),
        })
    }
}

/// The last lines of a log file, indented, for error messages.
pub fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            if lines.is_empty() {
                "    (log is empty)".to_string()
            } else {
                lines[start..]
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("    (cannot read log: {e})"),
    }
}

/// Makes `cmd`'s child the leader of its own process group (so a kill of the group reaches
/// anything it starts), killed when its handle is dropped and, on Linux, when the launching
/// thread dies (no orphans after a crashed test or benchmark).
pub(crate) fn tie_to_parent(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0).kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    cmd
}

/// `listening on http://127.0.0.1:41234` (or `https://…`) -> the address; an unspecified IP
/// (0.0.0.0) is reached on loopback.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))
        .unwrap_or(rest);
    let rest = rest.trim_end_matches('/');
    let mut addr: SocketAddr = rest.parse().ok()?;
    if addr.ip().is_unspecified() {
        let loopback = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        addr.set_ip(loopback);
    }
    Some(addr)
}

/// Reads `stdout` line by line until the listening line and returns its address; the error
/// says why there is none (`who`, e.g. "the process", exited, or the pipe failed).
pub(crate) async fn read_until_listening(
    stdout: &mut (impl AsyncBufRead + Unpin),
    who: &str,
) -> std::result::Result<SocketAddr, String> {
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line).await {
            Ok(0) => return Err(format!("stdout closed: {who} exited")),
            Ok(_) => {
                if let Some(addr) = parse_listening_line(&line) {
                    return Ok(addr);
                }
            }
            Err(e) => return Err(format!("cannot read stdout: {e}")),
        }
    }
}

/// One child process of the federation, and how to start it again.
pub(super) struct Proc {
    pub(super) label: String,
    pub(super) binary: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) envs: Vec<(String, String)>,
    pub(super) child: Option<Child>,
    /// Its stderr.
    pub(super) log: PathBuf,
    /// Its stdout after the listening line.
    pub(super) stdout_log: PathBuf,
}

impl Proc {
    /// Spawns the process and returns its stdout, not read yet.
    pub(super) fn spawn(&mut self) -> Result<ChildStdout> {
        let (child, stdout) = spawn(&self.label, &self.binary, &self.args, &self.envs, &self.log)?;
        self.child = Some(child);
        Ok(stdout)
    }

    /// Spawns the process and reads its port line; kills it if there is none by `deadline`.
    pub(super) async fn start(&mut self, deadline: Duration) -> Result<SocketAddr> {
        let stdout = self.spawn()?;
        match self.read_listening_line(stdout, deadline).await {
            Ok(addr) => Ok(addr),
            Err(e) => {
                self.kill_now();
                Err(e)
            }
        }
    }

    /// Reads stdout until `listening on http://IP:PORT`, then keeps copying the rest of stdout
    /// to `stdout_log` in the background (so the child never blocks on a full pipe).
    pub(super) async fn read_listening_line(
        &self,
        stdout: ChildStdout,
        deadline: Duration,
    ) -> Result<SocketAddr> {
        let mut reader = BufReader::new(stdout);
        let fail = |why: String| LaunchError::NoListeningLine {
            process: self.label.clone(),
            deadline,
            why,
            log: self.log.display().to_string(),
            tail: log_tail(&self.log),
        };
        let addr =
            match tokio::time::timeout(deadline, read_until_listening(&mut reader, "the process"))
                .await
            {
                Ok(Ok(addr)) => addr,
                Ok(Err(why)) => return Err(fail(why)),
                Err(_) => return Err(fail("timed out".to_string())),
            };
        let stdout_log = self.stdout_log.clone();
        tokio::spawn(async move {
            if let Ok(mut file) = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&stdout_log)
                .await
            {
                let _ = tokio::io::copy_buf(&mut reader, &mut file).await;
            }
        });
        Ok(addr)
    }

    /// Whether the process exited on its own since the last look: its status, once (the
    /// process is then no longer this `Proc`'s).
    pub(super) fn take_exit(&mut self) -> Option<String> {
        let status = self.exited()?;
        self.child = None;
        Some(status.to_string())
    }

    /// The process id, while it runs.
    pub(super) fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .and_then(Child::id)
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
    }

    /// Sends `signal` to the process group (the child is its group leader).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            // ESRCH (already gone) is fine.
            let _ = killpg(pid, signal);
        }
    }

    /// Kills the group now and reaps the child without blocking (for `Drop`).
    pub(super) fn kill_now(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
        self.child = None;
    }

    /// SIGKILL and wait until the process is gone.
    pub(super) async fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            child
                .wait()
                .await
                .map_err(io_err(format!("waiting for {} to die", self.label)))?;
        }
        self.child = None;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub(super) async fn stop(&mut self, grace: Duration) -> Result<()> {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.as_mut()
            && tokio::time::timeout(grace, child.wait()).await.is_ok()
        {
            // Exited on SIGTERM; make sure nothing is left in its group.
            self.signal(Signal::SIGKILL);
            self.child = None;
            return Ok(());
        }
        self.kill().await
    }

    /// `Some(status)` if the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// The error saying the process exited `during` something, with its log; `None` while it
    /// runs.
    pub(super) fn exited_error(&mut self, during: &str) -> Option<LaunchError> {
        let status = self.exited()?;
        Some(LaunchError::Exited {
            process: self.label.clone(),
            status: status.to_string(),
            during: during.to_string(),
            log: self.log.display().to_string(),
            tail: log_tail(&self.log),
        })
    }
}

/// Starts a child in its own process group with stderr to `log`, stdout piped.
fn spawn(
    label: &str,
    binary: &Path,
    args: &[String],
    envs: &[(String, String)],
    log: &Path,
) -> Result<(Child, ChildStdout)> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("cannot open log file {}", log.display())))?;
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    tie_to_parent(&mut cmd);
    // A developer's environment must not override what the launcher configures
    // (fog-node reads FOG_NODE_* over its file; the marketplace reads DATABASE_URL etc.).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("FOG_NODE_") || key.starts_with("FOGMARKET_") || key == "DATABASE_URL" {
            cmd.env_remove(key.as_ref());
        }
    }
    // Logs go to files: no colour escapes in them.
    if std::env::var_os("NO_COLOR").is_none() {
        cmd.env("NO_COLOR", "1");
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
        process: label.to_string(),
        binary: binary.display().to_string(),
        source,
    })?;
    let stdout = child.stdout.take().ok_or_else(|| LaunchError::Spawn {
        process: label.to_string(),
        binary: binary.display().to_string(),
        source: std::io::Error::other("stdout was not captured"),
    })?;
    Ok((child, stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_a_reachable_address() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:41234\n"),
            Some("127.0.0.1:41234".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on http://0.0.0.0:8000"),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on http://[::1]:80/"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_listening_line("starting up"), None);
        assert_eq!(parse_listening_line("listening on http://nowhere"), None);
    }

    #[tokio::test]
    async fn stdout_is_read_until_the_listening_line_or_says_the_process_exited() {
        let mut out: &[u8] = b"starting\nlistening on http://127.0.0.1:7\nmore\n";
        assert_eq!(
            read_until_listening(&mut out, "the process").await,
            Ok("127.0.0.1:7".parse().unwrap())
        );
        let mut out: &[u8] = b"starting\n";
        assert_eq!(
            read_until_listening(&mut out, "the gateway").await,
            Err("stdout closed: the gateway exited".to_string())
        );
    }

    #[test]
    fn a_missing_binary_error_says_how_to_build_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_binary(dir.path(), "fog-node").unwrap_err().to_string();
        assert!(err.contains("fog-node"), "{err}");
        assert!(err.contains("cargo build --workspace --bins"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_default_bin_dir_skips_the_deps_directory() {
        let dir = default_bin_dir().unwrap();
        assert_ne!(dir.file_name().unwrap(), "deps");
        let exe = std::env::current_exe().unwrap();
        assert!(exe.starts_with(&dir));
    }
}
