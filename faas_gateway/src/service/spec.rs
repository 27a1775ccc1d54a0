//! A function's spec: its identity, how it runs and scales, and its process, parsed from an
//! OpenFaaS deployment; a spec that exists is valid.

use std::fmt;

use super::secrets::SecretStore;
use crate::api::{self, FunctionDeployment};
use crate::catalog::{Catalog, EntryMode};
use crate::error::{GatewayError, GatewayResult};
use crate::limits::FunctionLimits;
use crate::process::ProcessSpec;
use crate::scaler::{self, ScalePolicy};

pub const LABEL_MIN: &str = "com.openfaas.scale.min";
pub const LABEL_MAX: &str = "com.openfaas.scale.max";
pub const LABEL_TARGET: &str = "com.openfaas.scale.target";

/// A function's identity: name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnKey {
    pub name: String,
    pub namespace: String,
}

impl fmt::Display for FnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// How a function runs: long-lived HTTP replicas (of-watchdog `mode=http`), or one process per
/// request (classic watchdog) whose replicas are slots without a process.
pub(super) type Mode = EntryMode;

/// A deployment, parsed ([`FunctionSpec::parse`]).
#[derive(Debug)]
pub(super) struct FunctionSpec {
    pub(super) deployment: FunctionDeployment,
    pub(super) key: FnKey,
    pub(super) mode: Mode,
    pub(super) policy: ScalePolicy,
    pub(super) process: ProcessSpec,
}

impl FunctionSpec {
    /// Parses a deployment: a valid name and namespace, an image of the catalog (and a declared
    /// entry point), limits, scale labels, environment variables by name, and secrets that
    /// exist. The process is the catalog's, with `extra_env` then the deployment's variables.
    pub(super) fn parse(
        d: FunctionDeployment,
        catalog: &Catalog,
        secrets: &SecretStore,
        extra_env: &[(String, String)],
    ) -> GatewayResult<FunctionSpec> {
        let bad = |m: String| GatewayError::BadRequest(m);
        if !api::is_valid_name(&d.service) {
            return Err(bad(format!(
                "service: {:?} is not a valid function name ([-a-zA-Z_0-9.]+)",
                d.service
            )));
        }
        let namespace = api::namespace_or_default(d.namespace.as_deref()).to_string();
        if !api::is_valid_name(&namespace) {
            return Err(bad(format!(
                "namespace: {namespace:?} is not a valid namespace"
            )));
        }
        if d.image.trim().is_empty() {
            return Err(bad("image: is required".into()));
        }
        let limits = FunctionLimits::parse(d.limits.as_ref(), d.requests.as_ref()).map_err(bad)?;
        let label = |name: &str, default: u64| -> GatewayResult<u64> {
            match d.labels.get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| {
                    bad(format!(
                        "labels.{name}: {v:?} is not a non-negative integer"
                    ))
                }),
            }
        };
        let policy = ScalePolicy {
            min: label(LABEL_MIN, scaler::DEFAULT_MIN_REPLICAS)?,
            max: label(LABEL_MAX, scaler::DEFAULT_MAX_REPLICAS)?,
            target: label(LABEL_TARGET, scaler::DEFAULT_TARGET_IN_FLIGHT)?,
        };
        if policy.max == 0 || policy.min > policy.max {
            return Err(bad(format!(
                "labels.{LABEL_MAX}: must be at least 1 and at least {LABEL_MIN} ({} > {})",
                policy.min, policy.max
            )));
        }
        if policy.target == 0 {
            return Err(bad(format!("labels.{LABEL_TARGET}: must be at least 1")));
        }
        if let Some(missing) = secrets.first_missing(&namespace, &d.secrets) {
            return Err(bad(format!(
                "secrets: secret {missing:?} not found in {namespace}"
            )));
        }

        // Sealed execution: variables are data, checked by name and bounded; the program is
        // the catalog's, chosen by entry-point name at most.
        model::exec::check_env_vars(
            d.env_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &model::exec::EnvLimits::DEPLOYMENT,
        )
        .map_err(|e| bad(format!("{}: {e}", e.field())))?;
        let entry_point = match d.env_process.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => Some(
                model::exec::EntryPointName::parse(name)
                    .map_err(|e| bad(format!("envProcess: {e}")))?,
            ),
            _ => None,
        };
        let resolved = catalog
            .resolve(&d.image, entry_point.as_ref())
            .map_err(bad)?;
        let mut env = extra_env.to_vec();
        env.extend(d.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if resolved.mode == Mode::Classic {
            env.push(("fprocess".into(), resolved.command_line()));
        }
        let (mode, program, args) = (resolved.mode, resolved.program, resolved.args);
        let key = FnKey {
            name: d.service.clone(),
            namespace: namespace.clone(),
        };
        Ok(FunctionSpec {
            process: ProcessSpec {
                program,
                args,
                env,
                limits,
                name: key.name.clone(),
                namespace,
            },
            deployment: d,
            key,
            mode,
            policy,
        })
    }
}
