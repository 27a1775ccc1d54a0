//! Sealed execution, the pure rules: what a client may say about *how* its function runs.
//!
//! A client picks an image, never a program. The program behind an image is whatever the
//! operator's catalog maps it to; `envProcess` only chooses among the entry points the image
//! declares, by name ([`EntryPointName`]). Environment variables are data for the function, so
//! names that steer the dynamic loader, interpreters, shells or the runtime itself are refused
//! ([`check_env_var`]), and their number and size are bounded ([`EnvLimits`]).
//!
//! The SLA parser ([`crate::sla`]) applies these rules so the marketplace refuses an obviously
//! invalid SLA at once; the embedded gateway applies them again on every deployment (it is also
//! reachable directly) and then checks the name against the image's declared entry points.

use std::fmt;

/// Longest entry-point name.
pub const MAX_ENTRY_POINT_LEN: usize = 64;
/// Longest environment variable name.
pub const MAX_ENV_NAME_LEN: usize = 128;

/// The name of an entry point an image declares: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
///
/// Never a command line: no spaces, quotes, slashes or shell syntax, and it cannot look like an
/// option (`-x`) or a path (`.`, `..`). Passed to a real OpenFaaS it is a bare command name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryPointName(String);

impl EntryPointName {
    pub fn parse(s: &str) -> Result<EntryPointName, ExecRuleError> {
        let bad = |reason: &str| ExecRuleError::EntryPoint {
            value: truncated(s),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("is empty"));
        }
        if s.len() > MAX_ENTRY_POINT_LEN {
            return Err(bad(&format!(
                "is longer than {MAX_ENTRY_POINT_LEN} characters"
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            || !s.as_bytes()[0].is_ascii_alphanumeric()
        {
            return Err(bad(
                "is not an entry point name (letters, digits, '.', '_' or '-', starting with a \
                 letter or digit); a client chooses among the entry points the image declares \
                 and never gives a command",
            ));
        }
        Ok(EntryPointName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryPointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an `envProcess` or `envVars` entry is refused. `Display` gives the reason without the
/// field, so each layer names the field its own way (`sla.envProcess`, `envVars.PATH`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecRuleError {
    #[error("{value:?} {reason}")]
    EntryPoint { value: String, reason: String },
    #[error("{reason}")]
    EnvName { name: String, reason: String },
    #[error("{reason}")]
    EnvValue { name: String, reason: String },
    #[error("{reason}")]
    EnvTooMany { reason: String },
}

impl ExecRuleError {
    /// The field, relative to the deployment or SLA: `envProcess`, `envVars.<NAME>`, `envVars`.
    pub fn field(&self) -> String {
        match self {
            ExecRuleError::EntryPoint { .. } => "envProcess".to_string(),
            ExecRuleError::EnvName { name, .. } | ExecRuleError::EnvValue { name, .. } => {
                format!("envVars.{name}")
            }
            ExecRuleError::EnvTooMany { .. } => "envVars".to_string(),
        }
    }
}

/// The variables the embedded gateway passes from its own environment to every function
/// process (nothing else of it: functions do not see the gateway's secrets or configuration).
/// Reserved: a deployment cannot override them.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    // Tracing (see the `telemetry` crate): functions export their spans where the gateway
    // does. Not `OTEL_EXPORTER_OTLP_HEADERS` (collector credentials stay with the operator).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

/// Exact names, besides [`INHERITED_ENV`], the runtime sets itself or that change how any
/// program is loaded or run.
const RESERVED_NAMES: &[&str] = &[
    // Set by the gateway for every replica.
    "PORT",
    // The OpenFaaS watchdogs' own configuration.
    "fprocess",
    "mode",
    "upstream_url",
    "http_upstream_url",
    "read_timeout",
    "write_timeout",
    "exec_timeout",
    "healthcheck_interval",
    "max_inflight",
    "prefix_logs",
    "combine_output",
    "content_type",
    "suppress_lock",
    "static_path",
    // glibc's list of variables unsafe for privileged programs (besides LD_*).
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TZDIR",
    // Shells: code run at start-up, word splitting, tracing.
    "BASH_ENV",
    "ENV",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    // Interpreters: code or modules loaded before the program.
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5OPT",
    "RUBYLIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
];

/// Name prefixes that are reserved: the dynamic loader, exported bash functions, the classic
/// watchdog's request variables and the gateway's tracing configuration.
const RESERVED_PREFIXES: &[&str] = &["LD_", "BASH_FUNC_", "Http_", "OTEL_"];

/// Refuses an environment variable name a client may not set: not `[A-Za-z_][A-Za-z0-9_]*` of
/// at most [`MAX_ENV_NAME_LEN`] bytes, `LD_*` and the other reserved prefixes, `PATH`, the
/// names the runtime sets (`PORT`, `fprocess`, `mode`, ...), and variables that make the loader,
/// a shell or an interpreter run other code. Reserved names are compared ignoring case.
pub fn check_env_name(name: &str) -> Result<(), ExecRuleError> {
    let bad = |reason: String| ExecRuleError::EnvName {
        name: truncated(name),
        reason,
    };
    let valid = !name.is_empty()
        && name.len() <= MAX_ENV_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(bad(format!(
            "{:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*, at most \
             {MAX_ENV_NAME_LEN} characters)",
            truncated(name)
        )));
    }
    if let Some(prefix) = RESERVED_PREFIXES
        .iter()
        .find(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
    {
        return Err(bad(format!(
            "{name} is refused: {prefix}* variables are reserved (they steer the dynamic loader, \
             the shell or the runtime)"
        )));
    }
    if RESERVED_NAMES
        .iter()
        .chain(INHERITED_ENV)
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(bad(format!(
            "{name} is refused: it is set by the runtime or changes which code runs"
        )));
    }
    Ok(())
}

/// Bounds on a set of environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvLimits {
    pub max_vars: usize,
    pub max_value_len: usize,
    /// Sum of the names' and values' lengths.
    pub max_total_len: usize,
}

impl EnvLimits {
    /// What an SLA may carry (the fog node adds its own few variables on top).
    pub const SLA: EnvLimits = EnvLimits {
        max_vars: 32,
        max_value_len: 4096,
        max_total_len: 16 * 1024,
    };
    /// What a deployment to the gateway may carry: an SLA's variables plus the fog node's
    /// (which include the whole SLA as JSON), well under the kernel's 128 KiB per string.
    pub const DEPLOYMENT: EnvLimits = EnvLimits {
        max_vars: 64,
        max_value_len: 64 * 1024,
        max_total_len: 256 * 1024,
    };
}

/// Checks one variable: its name ([`check_env_name`]) and its value (no NUL byte, at most
/// `limits.max_value_len` bytes).
pub fn check_env_var(name: &str, value: &str, limits: &EnvLimits) -> Result<(), ExecRuleError> {
    check_env_name(name)?;
    if value.len() > limits.max_value_len {
        return Err(ExecRuleError::EnvValue {
            name: name.to_string(),
            reason: format!(
                "the value is {} bytes, more than {} allowed",
                value.len(),
                limits.max_value_len
            ),
        });
    }
    if value.contains('\0') {
        return Err(ExecRuleError::EnvValue {
            name: name.to_string(),
            reason: "the value contains a NUL byte".to_string(),
        });
    }
    Ok(())
}

/// Checks every variable and the bounds on their number and total size.
pub fn check_env_vars<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: &EnvLimits,
) -> Result<(), ExecRuleError> {
    let (mut count, mut total) = (0usize, 0usize);
    for (name, value) in vars {
        check_env_var(name, value, limits)?;
        count += 1;
        total += name.len() + value.len();
    }
    if count > limits.max_vars {
        return Err(ExecRuleError::EnvTooMany {
            reason: format!("{count} variables, more than {} allowed", limits.max_vars),
        });
    }
    if total > limits.max_total_len {
        return Err(ExecRuleError::EnvTooMany {
            reason: format!(
                "{total} bytes of names and values, more than {} allowed",
                limits.max_total_len
            ),
        });
    }
    Ok(())
}

/// At most 80 characters of a refused input, for error messages.
fn truncated(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_names_are_plain_names_never_commands() {
        for ok in [
            "default",
            "sha256",
            "fn-shasum",
            "v1.2_beta",
            "A",
            &"a".repeat(64),
        ] {
            assert_eq!(EntryPointName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "sh -c 'id > /tmp/x'",
            "fn-shasum --stdin",
            "/bin/sh",
            "../fn-echo",
            "..",
            ".hidden",
            "-rf",
            "a;b",
            "$(id)",
            "`id`",
            "naïve",
            &"a".repeat(65),
        ] {
            let err = EntryPointName::parse(bad).unwrap_err();
            assert_eq!(err.field(), "envProcess", "{bad:?}");
        }
    }

    #[test]
    fn loader_path_and_runtime_variables_are_refused_by_name() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "ld_audit",
            "PATH",
            "Path",
            "PORT",
            "fprocess",
            "mode",
            "http_upstream_url",
            "Http_Method",
            "GLIBC_TUNABLES",
            "BASH_ENV",
            "BASH_FUNC_x%%",
            "NODE_OPTIONS",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ] {
            let err = check_env_name(name).unwrap_err();
            assert!(
                matches!(&err, ExecRuleError::EnvName { name: n, .. } if n == name),
                "{name}: {err:?}"
            );
            assert_eq!(err.field(), format!("envVars.{name}"));
        }
        for ok in [
            "GREETING",
            "_private",
            "FOGMARKET_SLA_ID",
            "a1",
            "PATHS",
            "MODEL",
        ] {
            check_env_name(ok).unwrap();
        }
    }

    #[test]
    fn malformed_names_are_refused_with_the_rule() {
        for bad in ["", "1ABC", "A-B", "A B", "A=B", "Ä", &"A".repeat(129)] {
            let err = check_env_name(bad).unwrap_err();
            assert!(
                err.to_string().contains("valid variable name"),
                "{bad}: {err}"
            );
        }
        check_env_name(&"A".repeat(128)).unwrap();
    }

    #[test]
    fn the_number_and_size_of_variables_are_bounded() {
        let limits = EnvLimits {
            max_vars: 2,
            max_value_len: 4,
            max_total_len: 10,
        };
        check_env_vars([("A", "1"), ("B", "2")], &limits).unwrap();
        let err = check_env_vars([("A", "1"), ("B", "2"), ("C", "3")], &limits).unwrap_err();
        assert_eq!(err.field(), "envVars");
        let err = check_env_vars([("A", "12345")], &limits).unwrap_err();
        assert_eq!(err.field(), "envVars.A");
        let err = check_env_vars([("AAAA", "1234"), ("B", "12")], &limits).unwrap_err();
        assert_eq!(err.field(), "envVars");
        let err = check_env_var("A", "x\0y", &EnvLimits::SLA).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
