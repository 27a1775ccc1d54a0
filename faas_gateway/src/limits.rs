//! Resource limits of function processes. cgroup v2 when the machine allows it (a child cgroup
//! per replica with `memory.max` and `cpu.max`), otherwise rlimits (`RLIMIT_AS` for memory; CPU
//! unenforced). Every function process also gets its own process group and dies with the
//! gateway's spawning thread (`PR_SET_PDEATHSIG`), so nothing outlives the gateway.

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

/// Which enforcement is active on this machine (reported by `/system/info`).
#[derive(Debug, Clone)]
pub enum Enforcement {
    /// A child cgroup per replica under `base` with `memory.max` and `cpu.max`.
    CgroupV2 { base: PathBuf },
    /// `RLIMIT_AS` per process for memory; CPU unenforced. `reason` says why not cgroup v2.
    Rlimit { reason: String },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnforcementInfo {
    pub mode: &'static str,
    pub memory: &'static str,
    pub cpu: &'static str,
    pub detail: String,
}

impl Enforcement {
    /// Detects cgroup v2 with the memory and cpu controllers, writable by us; else rlimits.
    pub fn detect() -> Enforcement {
        match try_cgroup_v2() {
            Ok(base) => Enforcement::CgroupV2 { base },
            Err(reason) => Enforcement::Rlimit { reason },
        }
    }

    pub fn info(&self) -> EnforcementInfo {
        match self {
            Enforcement::CgroupV2 { base } => EnforcementInfo {
                mode: "cgroup-v2",
                memory: "memory.max",
                cpu: "cpu.max",
                detail: format!("one child cgroup per replica under {}", base.display()),
            },
            Enforcement::Rlimit { reason } => EnforcementInfo {
                mode: "rlimit",
                memory: "RLIMIT_AS",
                cpu: "unenforced",
                detail: format!("cgroup v2 unavailable: {reason}"),
            },
        }
    }

    /// Prepares `cmd` for one function process (a replica or a classic exec): its own process
    /// group, death with the gateway, and the limits. Keep the returned guard alive as long as
    /// the process runs; dropping it removes the replica's cgroup.
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
        match self {
            Enforcement::CgroupV2 { base } => {
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
            Enforcement::Rlimit { .. } => rlimit_as = limits.memory.map(|m| m.bytes()),
        }
        // SAFETY: only async-signal-safe syscalls between fork and exec (prctl, write, setrlimit).
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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
                Ok(())
            });
        }
        Ok(confinement)
    }

    /// Removes the gateway's cgroup tree (after every process is gone).
    pub fn cleanup(&self) {
        if let Enforcement::CgroupV2 { base } = self {
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
