//! The SLA: what a client asks for when placing a function.
//!
//! [`SlaRequest`] is the wire form, GIRAFF-compatible (camelCase, unit strings). Every field is
//! read as a raw JSON value so that a wrong type is reported against its field, not as a serde
//! error about the whole body. [`Sla::parse`] turns it into a valid [`Sla`] or a [`FieldError`]
//! naming the field and the reason. An [`Sla`] serializes back to the wire form.

use crate::ids::{NodeId, SlaId};
use crate::units::{Bytes, Cpu, FromJsonValue, Latency, Lifetime, Price};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Largest number of replicas or hosting nodes one SLA may ask for.
pub const MAX_REPLICAS: u32 = 1000;
/// Largest number of distinct hosting nodes one SLA may ask for.
pub const MAX_NODES: u32 = 64;

/// A refused input: which field (a JSON path like `sla.memory`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
    /// The same error one level deeper, e.g. `memory` -> `sla.memory`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// The SLA as it arrives on the wire. Unknown fields are ignored (GIRAFF clients send extras).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    #[serde(default)]
    pub memory: Option<Value>,
    #[serde(default)]
    pub cpu: Option<Value>,
    #[serde(default)]
    pub latency_max: Option<Value>,
    #[serde(default)]
    pub latency_kind: Option<Value>,
    #[serde(default)]
    pub duration: Option<Value>,
    #[serde(default)]
    pub replicas: Option<Value>,
    #[serde(default)]
    pub function_image: Option<Value>,
    #[serde(default)]
    pub function_live_name: Option<Value>,
    #[serde(default)]
    pub data_flow: Option<Value>,
    #[serde(default)]
    pub env_vars: Option<Value>,
    #[serde(default)]
    pub env_process: Option<Value>,
    #[serde(default)]
    pub input_max_size: Option<Value>,
    #[serde(default)]
    pub max_price: Option<Value>,
    #[serde(default)]
    pub nodes: Option<Value>,
}

/// One end of a data flow. GIRAFF writes `"thisFunction"` or `{"dataSource": "<node id>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlowEnd {
    ThisFunction,
    DataSource(NodeId),
    Function(SlaId),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFlow {
    pub from: FlowEnd,
    pub to: FlowEnd,
}

/// What an SLA's `latencyMax` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LatencyKind {
    /// The one-way latency from the data source to the host (GIRAFF's feasibility rule, the
    /// default): the request's input must arrive within `latencyMax`.
    #[default]
    OneWay,
    /// The round trip: the input arrives and the answer comes back within `latencyMax`, which
    /// is what a device waiting for the answer observes (and what GIRAFF's experiments and
    /// `iot_emulation` judge).
    RoundTrip,
}

impl LatencyKind {
    pub fn is_one_way(&self) -> bool {
        *self == LatencyKind::OneWay
    }

    /// Parses the wire value: `oneWay` / `roundTrip` (also with `_` or `-`, any case).
    pub fn parse(s: &str) -> Option<LatencyKind> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', '-', ' '], "")
            .as_str()
        {
            "oneway" => Some(LatencyKind::OneWay),
            "roundtrip" => Some(LatencyKind::RoundTrip),
            _ => None,
        }
    }
}

/// A valid SLA. Resources are per replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sla {
    pub id: SlaId,
    pub memory: Bytes,
    pub cpu: Cpu,
    /// Max network latency between the data source (the target node) and the host.
    pub latency_max: Latency,
    /// Whether `latency_max` bounds the one-way latency (default, GIRAFF) or the round trip.
    #[serde(default, skip_serializing_if = "LatencyKind::is_one_way")]
    pub latency_kind: LatencyKind,
    /// Lifetime of the placement; the function is removed after it.
    pub duration: Lifetime,
    pub replicas: u32,
    pub function_image: String,
    pub function_live_name: String,
    #[serde(default)]
    pub data_flow: Vec<DataFlow>,
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// The name of an entry point the image declares (never a command; see [`crate::exec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    pub input_max_size: Bytes,
    /// The client's reservation price: bids above it do not win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<Price>,
    /// How many distinct nodes should host the function.
    pub nodes: u32,
}

fn required<'a>(v: &'a Option<Value>, field: &str) -> Result<&'a Value, FieldError> {
    match v {
        None | Some(Value::Null) => Err(FieldError::new(field, "is required")),
        Some(v) => Ok(v),
    }
}

fn unit<T: FromJsonValue>(v: &Option<Value>, field: &str) -> Result<T, FieldError> {
    T::from_value(required(v, field)?).map_err(|e| FieldError::new(field, e))
}

fn optional_unit<T: FromJsonValue>(
    v: &Option<Value>,
    field: &str,
) -> Result<Option<T>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::from_value(v)
            .map(Some)
            .map_err(|e| FieldError::new(field, e)),
    }
}

fn count(v: &Option<Value>, field: &str, default: u32, max: u32) -> Result<u32, FieldError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if (1..=max as u64).contains(&n) => Ok(n as u32),
        _ => Err(FieldError::new(
            field,
            format!("must be a whole number from 1 to {max}"),
        )),
    }
}

fn string(v: &Option<Value>, field: &str) -> Result<Option<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// A DNS-1123 label, as OpenFaaS and Kubernetes require for function names.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn flow_end(v: &Value, field: &str) -> Result<FlowEnd, FieldError> {
    match v {
        Value::String(s) if s == "thisFunction" => Ok(FlowEnd::ThisFunction),
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next().expect("one entry");
            let id = inner
                .as_str()
                .ok_or_else(|| FieldError::new(format!("{field}.{k}"), "must be an id string"))?;
            let bad = |e: uuid::Error| FieldError::new(format!("{field}.{k}"), e);
            match k.as_str() {
                "dataSource" => Ok(FlowEnd::DataSource(id.parse().map_err(bad)?)),
                "function" => Ok(FlowEnd::Function(id.parse().map_err(bad)?)),
                _ => Err(FieldError::new(
                    field,
                    format!("unknown key `{k}`, expected `dataSource` or `function`"),
                )),
            }
        }
        _ => Err(FieldError::new(
            field,
            "expected \"thisFunction\", {\"dataSource\": id} or {\"function\": id}",
        )),
    }
}

impl Sla {
    /// Validates a wire SLA. `id` is used when the request carries none (the marketplace
    /// assigns ids; fog nodes receive SLAs that already have one).
    pub fn parse(req: &SlaRequest, id: SlaId) -> Result<Sla, FieldError> {
        let id = match &req.id {
            None | Some(Value::Null) => id,
            Some(Value::String(s)) => s
                .parse()
                .map_err(|e| FieldError::new("id", format!("not a UUID: {e}")))?,
            Some(_) => return Err(FieldError::new("id", "must be a UUID string")),
        };
        let memory: Bytes = unit(&req.memory, "memory")?;
        if memory == Bytes::ZERO {
            return Err(FieldError::new("memory", "must be more than 0"));
        }
        let cpu: Cpu = unit(&req.cpu, "cpu")?;
        if cpu == Cpu::ZERO {
            return Err(FieldError::new("cpu", "must be more than 0"));
        }
        let latency_max: Latency = unit(&req.latency_max, "latencyMax")?;
        let latency_kind = match &req.latency_kind {
            None | Some(Value::Null) => LatencyKind::OneWay,
            Some(Value::String(s)) => LatencyKind::parse(s).ok_or_else(|| {
                FieldError::new(
                    "latencyKind",
                    format!("`{s}` is not \"oneWay\" (the default) or \"roundTrip\""),
                )
            })?,
            Some(_) => {
                return Err(FieldError::new(
                    "latencyKind",
                    "must be the string \"oneWay\" or \"roundTrip\"",
                ));
            }
        };
        let duration: Lifetime = unit(&req.duration, "duration")?;
        if duration.as_duration().is_zero() {
            return Err(FieldError::new("duration", "must be more than 0"));
        }
        let replicas = count(&req.replicas, "replicas", 1, MAX_REPLICAS)?;
        let nodes = count(&req.nodes, "nodes", 1, MAX_NODES)?;
        let function_image = string(&req.function_image, "functionImage")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| FieldError::new("functionImage", "is required"))?;
        let function_live_name = string(&req.function_live_name, "functionLiveName")?
            .unwrap_or_else(|| image_function_name(&function_image).to_string());
        if !is_dns_label(&function_live_name) {
            return Err(FieldError::new(
                "functionLiveName",
                "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            ));
        }
        let data_flow = match &req.data_flow {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let f = format!("dataFlow[{i}]");
                    let from = item
                        .get("from")
                        .ok_or_else(|| FieldError::new(format!("{f}.from"), "is required"))?;
                    let to = item
                        .get("to")
                        .ok_or_else(|| FieldError::new(format!("{f}.to"), "is required"))?;
                    Ok(DataFlow {
                        from: flow_end(from, &format!("{f}.from"))?,
                        to: flow_end(to, &format!("{f}.to"))?,
                    })
                })
                .collect::<Result<_, FieldError>>()?,
            Some(_) => return Err(FieldError::new("dataFlow", "must be an array")),
        };
        let env_vars = match &req.env_vars {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                    _ => Err(FieldError::new(
                        format!("envVars.{k}"),
                        "must be a string, number or boolean",
                    )),
                })
                .collect::<Result<_, FieldError>>()?,
            // GIRAFF sends a list of {key, value}? Accept [["K","V"]] and [{"key":..,"value":..}].
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let k = item
                        .get("key")
                        .or_else(|| item.get(0))
                        .and_then(Value::as_str);
                    let v = item
                        .get("value")
                        .or_else(|| item.get(1))
                        .and_then(Value::as_str);
                    match (k, v) {
                        (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                        _ => Err(FieldError::new(
                            format!("envVars[{i}]"),
                            "expected {\"key\": .., \"value\": ..} or [key, value]",
                        )),
                    }
                })
                .collect::<Result<_, FieldError>>()?,
            Some(_) => return Err(FieldError::new("envVars", "must be an object of strings")),
        };
        crate::exec::check_env_vars(
            env_vars.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &crate::exec::EnvLimits::SLA,
        )
        .map_err(|e| FieldError::new(e.field(), &e))?;
        // An entry point the image declares, by name; never a command line.
        let env_process = string(&req.env_process, "envProcess")?
            .filter(|s| !s.is_empty())
            .map(|s| {
                crate::exec::EntryPointName::parse(&s)
                    .map(|_| s)
                    .map_err(|e| FieldError::new("envProcess", e))
            })
            .transpose()?;
        let input_max_size =
            optional_unit(&req.input_max_size, "inputMaxSize")?.unwrap_or(Bytes::new(1000));
        let max_price = optional_unit(&req.max_price, "maxPrice")?;
        Ok(Sla {
            id,
            memory,
            cpu,
            latency_max,
            latency_kind,
            duration,
            replicas,
            function_image,
            function_live_name,
            data_flow,
            env_vars,
            env_process,
            input_max_size,
            max_price,
            nodes,
        })
    }

    /// Parses a JSON body into an SLA; errors name the field under `prefix` (e.g. `sla`).
    pub fn from_json(value: &Value, id: SlaId, prefix: &str) -> Result<Sla, FieldError> {
        if !value.is_object() {
            return Err(FieldError::new(prefix, "must be an object"));
        }
        let req: SlaRequest =
            serde_json::from_value(value.clone()).map_err(|e| FieldError::new(prefix, e))?;
        Sla::parse(&req, id).map_err(|e| e.under(prefix))
    }

    /// CPU for all replicas on one node.
    pub fn total_cpu(&self) -> Cpu {
        self.cpu * self.replicas
    }
    /// Memory for all replicas on one node.
    pub fn total_memory(&self) -> Bytes {
        self.memory * self.replicas
    }
    /// True when `node` is one of the SLA's data sources (pricing gives a locality discount).
    pub fn has_data_source(&self, node: NodeId) -> bool {
        self.data_flow.iter().any(|f| {
            matches!(f.from, FlowEnd::DataSource(n) if n == node)
                || matches!(f.to, FlowEnd::DataSource(n) if n == node)
        })
    }
}

/// OpenFaaS image -> function name: the last path segment without tag or digest
/// (`ghcr.io/acme/echo:1.2` -> `echo`).
pub fn image_function_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn giraff_sla() -> Value {
        json!({
            "memory": "256 MB", "cpu": "500 millicpu", "latencyMax": "50 ms",
            "duration": "30 s", "replicas": 2, "functionImage": "ghcr.io/acme/echo:1.2",
            "functionLiveName": "echo", "dataFlow": [], "envVars": {}, "inputMaxSize": "1 KB",
            "extraFieldFromAnOldClient": true
        })
    }

    #[test]
    fn a_giraff_client_sla_parses() {
        let sla = Sla::from_json(&giraff_sla(), SlaId::new(), "sla").unwrap();
        assert_eq!(sla.memory, Bytes::new(256_000_000));
        assert_eq!(sla.cpu, Cpu::from_millis(500));
        assert_eq!(sla.replicas, 2);
        assert_eq!(sla.nodes, 1);
        assert_eq!(sla.total_cpu(), Cpu::from_millis(1000));
        assert_eq!(sla.max_price, None);
        assert_eq!(sla.latency_kind, LatencyKind::OneWay);
        // The default is not written back: GIRAFF's wire shape is unchanged.
        let wire = serde_json::to_value(&sla).unwrap();
        assert!(wire.get("latencyKind").is_none(), "{wire}");
    }

    #[test]
    fn a_round_trip_latency_kind_parses_in_any_spelling_and_survives_the_wire() {
        for spelling in ["roundTrip", "round_trip", "Round-Trip"] {
            let mut body = giraff_sla();
            body["latencyKind"] = json!(spelling);
            let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
            assert_eq!(sla.latency_kind, LatencyKind::RoundTrip, "{spelling}");
            let wire = serde_json::to_value(&sla).unwrap();
            assert_eq!(wire["latencyKind"], "roundTrip");
            let back = Sla::from_json(&wire, SlaId::new(), "sla").unwrap();
            assert_eq!(back.latency_kind, LatencyKind::RoundTrip);
        }
    }

    #[test]
    fn a_parsed_sla_round_trips_through_the_wire_form() {
        let mut body = giraff_sla();
        body["maxPrice"] = json!(12.5);
        body["nodes"] = json!(3);
        body["dataFlow"] =
            json!([{"from": "thisFunction", "to": {"dataSource": NodeId::new().to_string()}}]);
        let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
        let wire = serde_json::to_value(&sla).unwrap();
        let back = Sla::from_json(&wire, SlaId::new(), "sla").unwrap();
        assert_eq!(back, sla);
    }

    #[test]
    fn each_bad_field_is_named_in_the_error() {
        let cases = [
            ("memory", json!("lots"), "sla.memory"),
            ("memory", json!(null), "sla.memory"),
            ("cpu", json!("0 m"), "sla.cpu"),
            ("latencyMax", json!([1]), "sla.latencyMax"),
            ("latencyKind", json!("both ways"), "sla.latencyKind"),
            ("latencyKind", json!(2), "sla.latencyKind"),
            ("duration", json!("0 s"), "sla.duration"),
            ("replicas", json!(0), "sla.replicas"),
            ("replicas", json!(1.5), "sla.replicas"),
            ("functionImage", json!(""), "sla.functionImage"),
            (
                "functionLiveName",
                json!("Not_A_Label"),
                "sla.functionLiveName",
            ),
            ("maxPrice", json!(-1), "sla.maxPrice"),
            ("nodes", json!(1000), "sla.nodes"),
            (
                "dataFlow",
                json!([{"from": "x", "to": "thisFunction"}]),
                "sla.dataFlow[0].from",
            ),
            ("envVars", json!({"A": {"nested": 1}}), "sla.envVars.A"),
            (
                "envVars",
                json!({"LD_PRELOAD": "/tmp/x.so"}),
                "sla.envVars.LD_PRELOAD",
            ),
            ("envVars", json!({"PATH": "/tmp"}), "sla.envVars.PATH"),
            (
                "envVars",
                json!([["fprocess", "sh"]]),
                "sla.envVars.fprocess",
            ),
            ("envProcess", json!("sh -c 'id > /tmp/x'"), "sla.envProcess"),
            ("envProcess", json!(["sha256"]), "sla.envProcess"),
        ];
        for (field, value, expected) in cases {
            let mut body = giraff_sla();
            body[field] = value.clone();
            let err = Sla::from_json(&body, SlaId::new(), "sla").unwrap_err();
            assert_eq!(err.field, expected, "{field}={value}: {err}");
        }
    }

    #[test]
    fn an_entry_point_name_and_plain_variables_are_accepted() {
        let mut body = giraff_sla();
        body["envProcess"] = json!("sha256");
        body["envVars"] = json!({"GREETING": "hi", "THRESHOLD": 3});
        let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
        assert_eq!(sla.env_process.as_deref(), Some("sha256"));
        assert_eq!(sla.env_vars["THRESHOLD"], "3");
        body["envProcess"] = json!("");
        let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
        assert_eq!(sla.env_process, None);
    }

    #[test]
    fn too_many_variables_are_refused_as_a_whole() {
        let mut body = giraff_sla();
        let vars: serde_json::Map<String, Value> = (0..=crate::exec::EnvLimits::SLA.max_vars)
            .map(|i| (format!("V{i}"), json!("x")))
            .collect();
        body["envVars"] = Value::Object(vars);
        let err = Sla::from_json(&body, SlaId::new(), "sla").unwrap_err();
        assert_eq!(err.field, "sla.envVars", "{err}");
    }

    #[test]
    fn a_missing_live_name_is_derived_from_the_image() {
        let mut body = giraff_sla();
        body.as_object_mut().unwrap().remove("functionLiveName");
        let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
        assert_eq!(sla.function_live_name, "echo");
    }

    #[test]
    fn data_source_membership_is_detected() {
        let node = NodeId::new();
        let mut body = giraff_sla();
        body["dataFlow"] =
            json!([{"from": {"dataSource": node.to_string()}, "to": "thisFunction"}]);
        let sla = Sla::from_json(&body, SlaId::new(), "sla").unwrap();
        assert!(sla.has_data_source(node));
        assert!(!sla.has_data_source(NodeId::new()));
    }
}
