//! Supervision of a running federation (`testbed run`): a process that exits is reported and
//! started again with backoff (0.5 s doubling to 30 s), the marketplace on its address and
//! database, a fog node on its address and state directory.

use super::error::Result;
use super::federation::Federation;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The first pause before a crashed process is started again.
pub const FIRST_RESTART: Duration = Duration::from_millis(500);
/// The longest pause before a crashed process is started again.
pub const MAX_RESTART: Duration = Duration::from_secs(30);

/// Which process of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Member {
    Marketplace,
    Node(String),
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Marketplace => f.write_str("the marketplace"),
            Member::Node(name) => write!(f, "fog node `{name}`"),
        }
    }
}

/// What a supervision step saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The process exited on its own (a crash, or `kill -9` from outside).
    Exited {
        member: Member,
        status: String,
        restart_in: Duration,
    },
    /// The process runs again.
    Restarted { member: Member, restarts: u32 },
    /// Starting it again failed; it is tried again later.
    RestartFailed {
        member: Member,
        error: String,
        retry_in: Duration,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Exited {
                member,
                status,
                restart_in,
            } => write!(
                f,
                "{member} exited ({status}); restarting it in {restart_in:?}"
            ),
            Event::Restarted { member, restarts } => {
                write!(f, "{member} restarted (restart {restarts})")
            }
            Event::RestartFailed {
                member,
                error,
                retry_in,
            } => write!(
                f,
                "{member} did not restart ({error}); trying again in {retry_in:?}"
            ),
        }
    }
}

/// Restart bookkeeping of one member.
struct Restarting {
    at: Instant,
    pause: Duration,
    restarts: u32,
    /// Failed starts since the exit.
    failures: usize,
}

/// The pause before the `n`-th start again (0 for the first).
fn pause_before(n: usize) -> Duration {
    supervisor::delays(FIRST_RESTART, MAX_RESTART)
        .nth(n)
        .unwrap_or(MAX_RESTART)
}

/// Watches a federation's processes and restarts those that exit.
#[derive(Default)]
pub struct Supervision {
    pending: HashMap<Member, Restarting>,
    restarts: HashMap<Member, u32>,
}

impl Supervision {
    pub fn new() -> Supervision {
        Supervision::default()
    }

    /// One step at `now`: notices exits, and restarts what is due.
    pub async fn step(&mut self, federation: &mut Federation, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for (member, status) in federation.exited() {
            let restarts = self.restarts.get(&member).copied().unwrap_or(0);
            // A member that keeps crashing waits longer each time.
            let pause = pause_before(restarts as usize);
            self.pending.insert(
                member.clone(),
                Restarting {
                    at: now + pause,
                    pause,
                    restarts,
                    failures: 0,
                },
            );
            events.push(Event::Exited {
                member,
                status,
                restart_in: pause,
            });
        }
        let due: Vec<Member> = self
            .pending
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(m, _)| m.clone())
            .collect();
        for member in due {
            let Some(mut r) = self.pending.remove(&member) else {
                continue;
            };
            match restart(federation, &member).await {
                Ok(()) => {
                    r.restarts += 1;
                    self.restarts.insert(member.clone(), r.restarts);
                    events.push(Event::Restarted {
                        member,
                        restarts: r.restarts,
                    });
                }
                Err(e) => {
                    r.failures += 1;
                    r.pause = pause_before(r.restarts as usize + r.failures);
                    r.at = now + r.pause;
                    events.push(Event::RestartFailed {
                        member: member.clone(),
                        error: e.to_string(),
                        retry_in: r.pause,
                    });
                    self.pending.insert(member, r);
                }
            }
        }
        events
    }

    /// How often `member` was restarted.
    pub fn restarts(&self, member: &Member) -> u32 {
        self.restarts.get(member).copied().unwrap_or(0)
    }
}

async fn restart(federation: &mut Federation, member: &Member) -> Result<()> {
    match member {
        Member::Marketplace => federation.restart_marketplace().await,
        Member::Node(name) => federation.restart_node(name).await,
    }
}
