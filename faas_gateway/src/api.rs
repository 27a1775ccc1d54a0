//! OpenFaaS wire types (faas-provider `types`), field by field, and the name rules
//! (`[-a-zA-Z_0-9.]+`, `name.namespace` split at the last dot).
//!
//! Both sides use them: the gateway reads requests and writes answers with them, and a fog
//! node's OpenFaaS client writes requests and reads answers (from this gateway or a real
//! OpenFaaS one) with the same types. So they read what either side may omit (or send as
//! `null`), and write no empty field that OpenFaaS omits.

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
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_root_filesystem: bool,
}

/// `GET /system/functions` item and `GET /system/function/{name}`. Zero values are omitted, as
/// the real gateway does; reading, every field defaults when omitted, and lists and maps also
/// when `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env_vars: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub constraints: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
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
    #[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    pub function_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `POST /system/scale-function/{name}` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    pub replicas: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// `namespace`, or [`DEFAULT_NAMESPACE`] when none or empty.
pub fn namespace_or_default(namespace: Option<&str>) -> &str {
    namespace
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE)
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
    fn a_status_with_omitted_zero_fields_and_null_lists_reads_with_defaults() {
        let s: FunctionStatus =
            serde_json::from_str(r#"{"name":"echo","image":"x/echo","envVars":null}"#).unwrap();
        assert_eq!(s.available_replicas, 0);
        assert_eq!(s.invocation_count, 0.0);
        assert!(s.namespace.is_empty() && s.created_at.is_empty() && s.env_vars.is_empty());
        let list: Option<Vec<FunctionStatus>> = serde_json::from_str("null").unwrap();
        assert!(list.is_none());
    }

    #[test]
    fn a_deployment_writes_openfaas_field_names_and_reads_back_the_same() {
        let d = FunctionDeployment {
            service: "echo".into(),
            image: "ghcr.io/acme/echo:1".into(),
            env_process: Some("cat".into()),
            limits: Some(FunctionResources {
                memory: Some("128Mi".into()),
                cpu: Some("500m".into()),
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["service"], "echo");
        assert_eq!(v["envProcess"], "cat");
        assert_eq!(v["limits"]["memory"], "128Mi");
        assert!(v["envVars"].is_object() && v["labels"].is_object());
        for omitted in ["requests", "namespace", "secrets", "readOnlyRootFilesystem"] {
            assert!(v.get(omitted).is_none(), "{omitted}");
        }
        assert_eq!(serde_json::from_value::<FunctionDeployment>(v).unwrap(), d);
    }

    #[test]
    fn scale_and_delete_bodies_omit_what_is_not_given() {
        let scale = ScaleServiceRequest {
            service_name: Some("echo".into()),
            replicas: 2,
            namespace: None,
        };
        assert_eq!(
            serde_json::to_value(&scale).unwrap(),
            json!({"serviceName": "echo", "replicas": 2})
        );
        let delete = DeleteFunctionRequest {
            function_name: "echo".into(),
            namespace: None,
        };
        assert_eq!(
            serde_json::to_value(&delete).unwrap(),
            json!({"functionName": "echo"})
        );
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
