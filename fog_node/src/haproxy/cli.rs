//! HAProxy's command sockets: one exchange on the admin or master CLI, and the parsers of
//! its answers (`show info`, `show proc`, `show servers state`).

use super::*;

/// How long one CLI exchange may take.
pub(super) const CLI_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest CLI line we send; HAProxy's CLI reads a line into one buffer (bufsize 16 kB).
pub(super) const MAX_CLI_LINE: usize = 8 * 1024;

/// One row of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    pub addr: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_uweight`: the current (user-set) weight, 0..=256.
    pub weight: u32,
    /// `srv_iweight`: the weight from the configuration.
    pub initial_weight: u32,
}

/// Parses `show servers state` (format version 1) into rows; unknown lines are skipped.
pub fn parse_servers_state(text: &str) -> Vec<ServerState> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
            // srv_uweight srv_iweight ...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 {
                return None;
            }
            Some(ServerState {
                backend: f[1].to_string(),
                server: f[3].to_string(),
                addr: f[4].to_string(),
                op_state: f[5].parse().ok()?,
                weight: f[7].parse().ok()?,
                initial_weight: f[8].parse().ok()?,
            })
        })
        .collect()
}

pub(super) fn parse_info_pid(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The master's view of its processes (`show proc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MasterProcs {
    /// How many times the master re-executed.
    pub(super) reloads: u32,
    /// How many of those reloads failed.
    pub(super) failed: u32,
    /// Current-generation workers (not the old ones still draining).
    pub(super) workers: Vec<u32>,
}

/// Parses the master's `show proc`; `None` if the master line is missing.
pub(super) fn parse_show_proc(text: &str) -> Option<MasterProcs> {
    let mut master = None;
    let mut workers = Vec::new();
    let mut in_workers = false;
    for line in text.lines() {
        if line.starts_with('#') {
            in_workers = line.trim() == "# workers";
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_pid, "master", reloads, ..] => {
                let failed = line
                    .split("[failed:")
                    .nth(1)
                    .and_then(|rest| rest.split(']').next())
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                master = reloads.parse().ok().map(|reloads| (reloads, failed));
            }
            [pid, "worker", ..] if in_workers => workers.extend(pid.parse::<u32>().ok()),
            _ => {}
        }
    }
    master.map(|(reloads, failed)| MasterProcs {
        reloads,
        failed,
        workers,
    })
}

/// One CLI exchange: connect, send the line, half-close, read the answer until EOF.
pub(super) async fn cli(path: &Path, command: &str) -> Result<String, HaproxyError> {
    let socket_err = |source: std::io::Error| HaproxyError::Socket {
        path: path.to_path_buf(),
        command: command.to_string(),
        source,
    };
    let stream = match timeout(CLI_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(socket_err(e)),
        Err(_) => return Err(socket_err(timed_out())),
    };
    exchange(stream, command).await.map_err(socket_err)
}

/// Sends one line on a connected CLI socket and reads the answer until EOF (bounded by
/// [`CLI_TIMEOUT`]).
pub(super) async fn exchange(mut stream: UnixStream, command: &str) -> std::io::Result<String> {
    let io = async {
        stream.write_all(command.as_bytes()).await?;
        stream.write_all(b"\n").await?;
        // The master CLI only closes after the client half-closes.
        stream.shutdown().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    timeout(CLI_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

pub(super) fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no complete answer within {CLI_TIMEOUT:?}"),
    )
}
