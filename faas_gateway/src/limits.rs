//! Isolation of function processes. Limits: cgroup v2 when the machine allows it (a child
//! cgroup per replica with `memory.max` and `cpu.max`), otherwise rlimits (`RLIMIT_AS` for
//! memory; CPU unenforced). User: a gateway running as root starts every function process as an
//! unprivileged user (`nobody` unless configured). Every function process also gets its own
//! process group and dies with the gateway's spawning thread (`PR_SET_PDEATHSIG`), so nothing
//! outlives the gateway. A process stopped by its memory limit is recognised
//! ([`Enforcement::memory_verdict`]) and reported.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::api::FunctionResources;
use crate::quantity::{CpuQuantity, MemoryQuantity};

/// The limits of one function: `limits`, falling back to `requests` for a resource without a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionLimits {
    pub memory: Option<MemoryQuantity>,
    pub cpu: Option<CpuQuantity>,
}

impl FunctionLimits {
    /// Parses `limits` and `requests`; the error names the field (`limits.memory`).
    pub fn parse(
        limits: Option<&FunctionResources>,
        requests: Option<&FunctionResources>,
    ) -> Result<Self, String> {
        fn mem(
            r: Option<&FunctionResources>,
            field: &str,
        ) -> Result<Option<MemoryQuantity>, String> {
            match r
                .and_then(|r| r.memory.as_deref())
                .filter(|s| !s.is_empty())
            {
                None => Ok(None),
                Some(s) => MemoryQuantity::parse(s)
                    .map(Some)
                    .map_err(|e| format!("{field}.memory: {e}")),
            }
        }
        fn cpu(r: Option<&FunctionResources>, field: &str) -> Result<Option<CpuQuantity>, String> {
            match r.and_then(|r| r.cpu.as_deref()).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => CpuQuantity::parse(s)
                    .map(Some)
                    .map_err(|e| format!("{field}.cpu: {e}")),
            }
        }
        let (lm, lc) = (mem(limits, "limits")?, cpu(limits, "limits")?);
        let (rm, rc) = (mem(requests, "requests")?, cpu(requests, "requests")?);
        Ok(FunctionLimits {
            memory: lm.or(rm),
            cpu: lc.or(rc),
        })
    }
}

/// How function processes are limited (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitMode {
    /// cgroup v2 when the machine allows it, rlimits otherwise.
    #[default]
    Auto,
    /// rlimits even where cgroup v2 would work (tests, or a hierarchy owned by something else).
    Rlimit,
}

/// Isolation of function processes (part of [`crate::GatewaySettings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationSettings {
    pub limits: LimitMode,
    /// The unprivileged user function processes run as when the gateway runs as root
    /// (`None`: as root too, which only an operator who isolates otherwise should choose).
    /// Ignored when the gateway is not root: processes keep the gateway's user.
    pub run_as: Option<String>,
}

impl Default for IsolationSettings {
    fn default() -> Self {
        IsolationSettings {
            limits: LimitMode::Auto,
            run_as: Some("nobody".to_string()),
        }
    }
}

/// The user function processes switch to before `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Which limits are active on this machine.
#[derive(Debug, Clone)]
pub enum Limiter {
    /// A child cgroup per replica under `base` with `memory.max` and `cpu.max`.
    CgroupV2 { base: PathBuf },
    /// `RLIMIT_AS` per process for memory; CPU unenforced. `reason` says why not cgroup v2.
    Rlimit { reason: String },
}

/// The active isolation (reported by `/system/info`): the limits and the user.
#[derive(Debug, Clone)]
pub struct Enforcement {
    pub limiter: Limiter,
    /// `None`: processes run as the gateway's own user.
    pub run_as: Option<RunAs>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementInfo {
    pub mode: &'static str,
    pub memory: &'static str,
    pub cpu: &'static str,
    pub detail: String,
    /// `nobody (uid 65534, gid 65534)`, or `the gateway's user (uid N)`.
    pub run_as: String,
}

impl Enforcement {
    /// Applies `settings` on this machine: cgroup v2 with the memory and cpu controllers,
    /// writable by us (unless rlimits are forced), else rlimits; and, when we are root, the
    /// unprivileged user. Fails when the configured user does not exist.
    pub fn configure(settings: &IsolationSettings) -> Result<Enforcement, String> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = match (&settings.run_as, root) {
            (Some(user), true) => Some(lookup_user(user)?),
            (Some(user), false) => {
                tracing::debug!(%user, "not root: function processes keep the gateway's user");
                None
            }
            (None, true) => {
                tracing::warn!("run_as is unset: function processes run as root");
                None
            }
            (None, false) => None,
        };
        let limiter = match settings.limits {
            LimitMode::Rlimit => Limiter::Rlimit {
                reason: "rlimits are forced by configuration".into(),
            },
            LimitMode::Auto => match try_cgroup_v2() {
                Ok(base) => Limiter::CgroupV2 { base },
                Err(reason) => Limiter::Rlimit { reason },
            },
        };
        Ok(Enforcement { limiter, run_as })
    }

    pub fn info(&self) -> EnforcementInfo {
        let run_as = match &self.run_as {
            Some(u) => format!("{} (uid {}, gid {})", u.user, u.uid, u.gid),
            // SAFETY: geteuid has no preconditions.
            None => format!("the gateway's user (uid {})", unsafe { libc::geteuid() }),
        };
        match &self.limiter {
            Limiter::CgroupV2 { base } => EnforcementInfo {
                mode: "cgroup-v2",
                memory: "memory.max",
                cpu: "cpu.max",
                detail: format!("one child cgroup per replica under {}", base.display()),
                run_as,
            },
            Limiter::Rlimit { reason } => EnforcementInfo {
                mode: "rlimit",
                memory: "RLIMIT_AS",
                cpu: "unenforced",
                detail: format!("cgroup v2 not used: {reason}"),
                run_as,
            },
        }
    }

    /// Prepares `cmd` for one function process (a replica or a classic exec): its own process
    /// group, death with the gateway, the limits and the user. Keep the returned guard alive
    /// as long as the process runs; dropping it removes the replica's cgroup.
    pub fn confine(
        &self,
        instance: &str,
        limits: FunctionLimits,
        cmd: &mut tokio::process::Command,
    ) -> std::io::Result<Confinement> {
        cmd.process_group(0).kill_on_drop(true);
        let mut confinement = Confinement {
            cgroup: None,
            procs: None,
        };
        let mut procs_fd: Option<i32> = None;
        let mut rlimit_as: Option<u64> = None;
        match &self.limiter {
            Limiter::CgroupV2 { base } => {
                let dir = base.join(sanitize(instance));
                fs::create_dir_all(&dir)?;
                confinement.cgroup = Some(dir.clone());
                if let Some(m) = limits.memory {
                    fs::write(dir.join("memory.max"), m.bytes().to_string())?;
                    // No swapping around the limit.
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(c) = limits.cpu {
                    let period = 100_000u64;
                    let quota = (c.millis() * period / 1000).max(1000);
                    fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))?;
                procs_fd = Some(f.as_raw_fd());
                confinement.procs = Some(f);
            }
            Limiter::Rlimit { .. } => rlimit_as = limits.memory.map(|m| m.bytes()),
        }
        let ids = self.run_as.as_ref().map(|u| (u.uid, u.gid));
        // SAFETY: only async-signal-safe syscalls between fork and exec (write, setrlimit,
        // setgroups, setgid, setuid, prctl), on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Joins the cgroup while still root (the descriptor was opened by root).
                if let Some(fd) = procs_fd
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(bytes) = rlimit_as {
                    let lim = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some((uid, gid)) = ids {
                    // Groups first, then the gid, then the uid (after which none can change).
                    if libc::setgroups(1, &gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After the user change, which clears the parent-death signal.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(confinement)
    }

    /// Whether a function process that ended with `status` and wrote `stderr` (its last lines)
    /// was stopped by its memory limit; the sentence says so and how it is known. Under cgroup
    /// v2 the kernel counts OOM kills (`oom_kills`, from `memory.events`); under rlimits the
    /// process only sees an allocation fail, which runtimes report on stderr.
    pub fn memory_verdict(
        &self,
        limits: FunctionLimits,
        oom_kills: Option<u64>,
        stderr: &str,
    ) -> Option<String> {
        let limit = limits.memory?.bytes();
        match &self.limiter {
            Limiter::CgroupV2 { .. } => oom_kills.filter(|n| *n > 0).map(|_| {
                format!(
                    "exceeded its memory limit of {limit} bytes (cgroup memory.max: killed by \
                     the kernel's OOM killer)"
                )
            }),
            Limiter::Rlimit { .. } => allocation_failure(stderr).map(|line| {
                format!(
                    "exceeded its memory limit of {limit} bytes (RLIMIT_AS: an allocation \
                     failed: {line})"
                )
            }),
        }
    }

    /// Removes the gateway's cgroup tree (after every process is gone).
    pub fn cleanup(&self) {
        if let Limiter::CgroupV2 { base } = &self.limiter {
            if let Ok(entries) = fs::read_dir(base) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(base);
        }
    }
}

/// What runtimes print when an allocation fails (glibc/coreutils, Rust, Python, C++, Go, the
/// kernel's errno text).
const ALLOCATION_FAILURES: &[&str] = &[
    "memory exhausted",
    "memory allocation of",
    "MemoryError",
    "std::bad_alloc",
    "out of memory",
    "Cannot allocate memory",
];

/// The first stderr line that reports an allocation failure.
fn allocation_failure(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| ALLOCATION_FAILURES.iter().any(|p| l.contains(p)))
        .map(|l| l.trim().chars().take(200).collect())
}

fn lookup_user(user: &str) -> Result<RunAs, String> {
    let found = match user.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
        Err(_) => nix::unistd::User::from_name(user),
    };
    match found {
        Ok(Some(u)) if u.uid.is_root() => Err(format!(
            "run_as: {user:?} is root; function processes must run unprivileged"
        )),
        Ok(Some(u)) => Ok(RunAs {
            user: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(format!("run_as: no user {user:?} on this machine")),
        Err(e) => Err(format!("run_as: looking up {user:?}: {e}")),
    }
}

/// Keeps a process's cgroup while it runs.
#[derive(Debug)]
pub struct Confinement {
    cgroup: Option<PathBuf>,
    procs: Option<File>,
}

impl Confinement {
    /// Closes the `cgroup.procs` descriptor once the child is spawned.
    pub fn spawned(&mut self) {
        self.procs = None;
    }

    /// OOM kills in the process's cgroup so far (`oom_kill` of `memory.events`); `None`
    /// without a cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let events = fs::read_to_string(self.cgroup.as_ref()?.join("memory.events")).ok()?;
        events
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    }
}

impl Drop for Confinement {
    fn drop(&mut self) {
        if let Some(dir) = &self.cgroup {
            // Fails while processes remain (they are killed first); best effort.
            let _ = fs::remove_dir(dir);
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn try_cgroup_v2() -> Result<PathBuf, String> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        return Err("/sys/fs/cgroup is not a cgroup v2 (unified) hierarchy".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    let own = root.join(own.trim_start_matches('/'));
    let controllers = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    for c in ["memory", "cpu"] {
        if !controllers.split_whitespace().any(|x| x == c) {
            return Err(format!(
                "the {c} controller is not available in {}",
                own.display()
            ));
        }
    }
    enable_controllers(&own)?;
    let base = own.join(format!("faas-gateway-{}", std::process::id()));
    fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
    if let Err(e) = enable_controllers(&base) {
        let _ = fs::remove_dir(&base);
        return Err(e);
    }
    Ok(base)
}

fn enable_controllers(dir: &Path) -> Result<(), String> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).unwrap_or_default();
    if ["memory", "cpu"]
        .iter()
        .all(|c| current.split_whitespace().any(|x| x == *c))
    {
        return Ok(());
    }
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"+memory +cpu"))
        .map_err(|e| format!("enabling memory and cpu in {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_failure_under_rlimits_is_a_memory_verdict_only_with_a_memory_limit() {
        let rlimit = Enforcement {
            limiter: Limiter::Rlimit {
                reason: "test".into(),
            },
            run_as: None,
        };
        let limited = FunctionLimits {
            memory: Some(MemoryQuantity::parse("64Mi").unwrap()),
            cpu: None,
        };
        let stderr = "starting\ndd: memory exhausted by input buffer of size 268435456 bytes\n";
        let verdict = rlimit.memory_verdict(limited, None, stderr).unwrap();
        assert!(verdict.contains("67108864 bytes"), "{verdict}");
        assert!(verdict.contains("memory exhausted"), "{verdict}");
        assert_eq!(rlimit.memory_verdict(limited, None, "boom\n"), None);
        assert_eq!(
            rlimit.memory_verdict(FunctionLimits::default(), None, stderr),
            None
        );
        let cgroup = Enforcement {
            limiter: Limiter::CgroupV2 {
                base: PathBuf::from("/nonexistent"),
            },
            run_as: None,
        };
        assert!(cgroup.memory_verdict(limited, Some(1), "").is_some());
        assert_eq!(cgroup.memory_verdict(limited, Some(0), stderr), None);
    }

    #[test]
    fn root_is_never_an_accepted_run_as_user() {
        let err = lookup_user("0").unwrap_err();
        assert!(err.starts_with("run_as"), "{err}");
        let err = lookup_user("no-such-user-xyz").unwrap_err();
        assert!(err.contains("no user"), "{err}");
    }

    #[test]
    fn limits_fall_back_to_requests_and_name_the_bad_field() {
        let limits = FunctionResources {
            memory: Some("128Mi".into()),
            cpu: None,
        };
        let requests = FunctionResources {
            memory: Some("64Mi".into()),
            cpu: Some("500m".into()),
        };
        let l = FunctionLimits::parse(Some(&limits), Some(&requests)).unwrap();
        assert_eq!(l.memory.unwrap().bytes(), 128 << 20);
        assert_eq!(l.cpu.unwrap().millis(), 500);

        let bad = FunctionResources {
            memory: Some("lots".into()),
            cpu: None,
        };
        let err = FunctionLimits::parse(Some(&bad), None).unwrap_err();
        assert!(err.starts_with("limits.memory"), "{err}");
        let bad = FunctionResources {
            memory: None,
            cpu: Some("fast".into()),
        };
        let err = FunctionLimits::parse(None, Some(&bad)).unwrap_err();
        assert!(err.starts_with("requests.cpu"), "{err}");
    }
}
