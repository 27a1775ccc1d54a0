//! OpenFaaS wire types (faas-provider `types`), field by field, and the name rules
//! (`[-a-zA-Z_0-9.]+`, `name.namespace` split at the last dot).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The namespace OpenFaaS puts functions in when none is given.
pub const DEFAULT_NAMESPACE: &str = "openfaas-fn";

/// `limits` / `requests` of a deployment: Kubernetes quantities, kept as text until parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// `POST/PUT /system/functions` body. Only `service` and `image` are required; unknown and
/// deprecated fields (`registryAuth`, `network`) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    pub service: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub constraints: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub secrets: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
}

/// `GET /system/functions` item and `GET /system/function/{name}`. Zero values are omitted, as
/// the real gateway does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub name: String,
    pub image: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_root_filesystem: bool,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub invocation_count: f64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub replicas: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub available_replicas: u64,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
    /// **Extension**: function processes stopped by their memory limit since the deployment
    /// (omitted when none; OpenFaaS clients ignore it).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub memory_limit_kills: u64,
    /// **Extension**: what the last such stop was (instance, limit, how it is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_memory_limit_kill: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    #[serde(default)]
    pub cpu: f64,
    #[serde(default)]
    pub total_memory_bytes: f64,
}

/// `DELETE /system/functions` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    pub function_name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `POST /system/scale-function/{name}` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    #[serde(default)]
    pub service_name: Option<String>,
    pub replicas: u64,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `/system/secrets` body; `GET` lists names and namespaces only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Base64 bytes, as Go encodes `[]byte`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
}

/// One line of `/system/logs` (NDJSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub name: String,
    pub namespace: String,
    pub instance: String,
    pub timestamp: String,
    pub text: String,
}

/// The embedded gateway's view of one replica (`GET /system/replicas/{name}`; not part of
/// OpenFaaS, used by operators and tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub instance: String,
    pub state: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub in_flight: usize,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// A function or secret name: `[-a-zA-Z_0-9.]+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Splits `name.namespace` at the last dot; a name without a dot is in `default_ns`
/// (or in the namespace given explicitly).
pub fn split_name<'a>(full: &'a str, explicit_ns: Option<&'a str>) -> (&'a str, &'a str) {
    if let Some(ns) = explicit_ns.filter(|ns| !ns.is_empty()) {
        return (full, ns);
    }
    match full.rsplit_once('.') {
        Some((name, ns)) if !name.is_empty() && !ns.is_empty() => (name, ns),
        _ => (full, DEFAULT_NAMESPACE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_faas_cli_deployment_parses_with_null_maps() {
        let d: FunctionDeployment = serde_json::from_value(json!({
            "service": "echo", "image": "ghcr.io/acme/echo:1.2", "labels": null,
            "annotations": null, "envVars": null, "registryAuth": "x", "network": "func_functions"
        }))
        .unwrap();
        assert_eq!(d.service, "echo");
        assert!(d.labels.is_empty());
    }

    #[test]
    fn zero_values_are_omitted_from_function_status() {
        let s = FunctionStatus {
            name: "echo".into(),
            image: "echo".into(),
            namespace: DEFAULT_NAMESPACE.into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("availableReplicas").is_none());
        assert!(v.get("invocationCount").is_none());
    }

    #[test]
    fn names_split_at_the_last_dot() {
        assert_eq!(split_name("echo", None), ("echo", "openfaas-fn"));
        assert_eq!(split_name("echo.staging", None), ("echo", "staging"));
        assert_eq!(split_name("a.b.staging", None), ("a.b", "staging"));
        assert_eq!(split_name("echo", Some("x")), ("echo", "x"));
        assert!(is_valid_name("fn-echo_1.2"));
        assert!(!is_valid_name("bad/name"));
        assert!(!is_valid_name(""));
    }
}
