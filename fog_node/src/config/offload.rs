//! The `[offload]` section: run-time invocation routing and offloading between fog nodes
//! (strategy, data plane, control period, local queue, forwarding limits, strategy tunables).
//!
//! Every key has the default of the contract table in `docs/ARCHITECTURE.md`; the strategy
//! tunables default to `model::offload::Params::default()`. Durations and sizes use the
//! model's unit newtypes (`"250 ms"`, `"8 MB"`); [`OffloadConfig::validate`] names the field
//! and the reason of a bad value.

use model::FieldError;
use model::offload::{OffloadStrategy, Params};
use model::units::{Bytes, Latency};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Who moves the bytes of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataPlane {
    /// The node's own HTTP server serves `/function/*` and forwards to peers.
    #[default]
    Native,
    /// The node drives a real HAProxy (weights over its Runtime API).
    Haproxy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    /// `static`, `recalc`, `node_margin` or `lease`.
    #[serde(
        default,
        deserialize_with = "strategy_from_str",
        serialize_with = "strategy_to_str"
    )]
    pub strategy: OffloadStrategy,
    #[serde(default)]
    pub data_plane: DataPlane,
    /// Recompute-and-exchange period of the control loop.
    #[serde(default = "default_control_interval")]
    pub control_interval: Latency,
    /// Silence after which a peer is dead (no traffic from the next recompute on).
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout: Latency,
    /// Forwards one request may make in the federation.
    #[serde(default = "default_max_hops")]
    pub max_hops: u32,
    /// Local calls in flight per function.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Requests waiting per function when `max_concurrency` are in flight.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Longest wait in the local queue.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Latency,
    /// Deadline of a forwarded call (and of a local call to the gateway).
    #[serde(default = "default_forward_timeout")]
    pub forward_timeout: Latency,
    /// Largest invocation body.
    #[serde(default = "default_max_body")]
    pub max_body: Bytes,
    /// Largest answer the data plane reads from a peer or the gateway (the embedded gateway's
    /// own cap on a function's answer is 32 MiB too); beyond, 502 `answer_too_large`.
    #[serde(default = "default_max_answer")]
    pub max_answer: Bytes,
    /// Requests per second a function sustains here, by service (`fogfn-<slaId>`), live name
    /// or catalog name (`echo` for `ghcr.io/acme/echo:1`). Unlisted functions learn their
    /// capacity from throughput measured while saturated.
    #[serde(default)]
    pub max_rates: BTreeMap<String, f64>,
    #[serde(default = "d_static_local_share")]
    pub static_local_share: f64,
    #[serde(default = "d_offer_ttl")]
    pub offer_ttl: Latency,
    #[serde(default = "d_neighbourhood")]
    pub neighbourhood: usize,
    #[serde(default = "d_max_forward_rtt")]
    pub max_forward_rtt: Latency,
    #[serde(default = "d_hysteresis")]
    pub hysteresis: f64,
    #[serde(default = "d_queue_drain")]
    pub queue_drain: Latency,
    #[serde(default = "d_dead_band")]
    pub dead_band: u32,
    #[serde(default = "d_usage_high")]
    pub usage_high: f64,
    #[serde(default = "d_usage_low")]
    pub usage_low: f64,
    #[serde(default = "d_margin_step")]
    pub margin_step: u32,
    /// `data_plane = "haproxy"`: how to run HAProxy.
    #[serde(default)]
    pub haproxy: HaproxyConfig,
}

/// `[offload.haproxy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The HAProxy executable.
    #[serde(default = "default_haproxy_binary")]
    pub binary: String,
    /// The master socket of an HAProxy already running; none = the node starts its own.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// HAProxy's frontend bind address (HAProxy syntax, e.g. `127.0.0.1:8081`).
    #[serde(default)]
    pub listen: Option<String>,
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        Self {
            binary: default_haproxy_binary(),
            socket: None,
            listen: None,
        }
    }
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            strategy: OffloadStrategy::default(),
            data_plane: DataPlane::default(),
            control_interval: default_control_interval(),
            peer_timeout: default_peer_timeout(),
            max_hops: default_max_hops(),
            max_concurrency: default_max_concurrency(),
            queue_capacity: default_queue_capacity(),
            queue_timeout: default_queue_timeout(),
            forward_timeout: default_forward_timeout(),
            max_body: default_max_body(),
            max_answer: default_max_answer(),
            max_rates: BTreeMap::new(),
            static_local_share: d_static_local_share(),
            offer_ttl: d_offer_ttl(),
            neighbourhood: d_neighbourhood(),
            max_forward_rtt: d_max_forward_rtt(),
            hysteresis: d_hysteresis(),
            queue_drain: d_queue_drain(),
            dead_band: d_dead_band(),
            usage_high: d_usage_high(),
            usage_low: d_usage_low(),
            margin_step: d_margin_step(),
            haproxy: HaproxyConfig::default(),
        }
    }
}

fn strategy_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<OffloadStrategy, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn strategy_to_str<S: Serializer>(s: &OffloadStrategy, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

fn default_control_interval() -> Latency {
    Latency::from_millis(250)
}
fn default_peer_timeout() -> Latency {
    Latency::from_millis(1500)
}
fn default_max_hops() -> u32 {
    3
}
fn default_max_concurrency() -> usize {
    16
}
fn default_queue_capacity() -> usize {
    256
}
fn default_queue_timeout() -> Latency {
    Latency::from_millis(10_000)
}
fn default_forward_timeout() -> Latency {
    Latency::from_millis(30_000)
}
fn default_max_body() -> Bytes {
    Bytes::from_mb(8)
}
fn default_max_answer() -> Bytes {
    Bytes::from_mib(32)
}
fn default_haproxy_binary() -> String {
    "haproxy".to_string()
}
fn d_static_local_share() -> f64 {
    Params::default().static_local_share
}
fn d_offer_ttl() -> Latency {
    Params::default().offer_ttl.into()
}
fn d_neighbourhood() -> usize {
    Params::default().neighbourhood
}
fn d_max_forward_rtt() -> Latency {
    Params::default().max_forward_rtt.into()
}
fn d_hysteresis() -> f64 {
    Params::default().hysteresis
}
fn d_queue_drain() -> Latency {
    Params::default().queue_drain.into()
}
fn d_dead_band() -> u32 {
    Params::default().dead_band
}
fn d_usage_high() -> f64 {
    Params::default().usage_high
}
fn d_usage_low() -> f64 {
    Params::default().usage_low
}
fn d_margin_step() -> u32 {
    Params::default().margin_step
}

/// Largest `max_hops`: a loop in a federation is cut long before this.
pub const MAX_HOPS_LIMIT: u32 = 16;

impl OffloadConfig {
    /// The strategy tunables for `model::offload`.
    pub fn params(&self) -> Params {
        Params {
            static_local_share: self.static_local_share,
            offer_ttl: self.offer_ttl.as_duration(),
            neighbourhood: self.neighbourhood,
            max_forward_rtt: self.max_forward_rtt.as_duration(),
            hysteresis: self.hysteresis,
            queue_drain: self.queue_drain.as_duration(),
            dead_band: self.dead_band,
            usage_high: self.usage_high,
            usage_low: self.usage_low,
            margin_step: self.margin_step,
        }
    }

    /// Largest body in bytes, as a `usize`.
    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body.as_u64()).unwrap_or(usize::MAX)
    }

    /// Largest answer read upstream in bytes, as a `usize`.
    pub fn max_answer_bytes(&self) -> usize {
        usize::try_from(self.max_answer.as_u64()).unwrap_or(usize::MAX)
    }

    /// The configured max rate of a function: by service, live name, then catalog name.
    pub fn max_rate(&self, service: &str, name: &str, image: &str) -> Option<f64> {
        self.max_rates
            .get(service)
            .or_else(|| self.max_rates.get(name))
            .or_else(|| self.max_rates.get(catalog_name(image)))
            .copied()
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        let f =
            |field: &str, reason: &str| Err(FieldError::new(format!("offload.{field}"), reason));
        let at_least = |field: &str, v: Latency, min_ms: u64| {
            if v.as_duration() < Duration::from_millis(min_ms) {
                Err(FieldError::new(
                    format!("offload.{field}"),
                    format!("must be at least {min_ms} ms"),
                ))
            } else {
                Ok(())
            }
        };
        at_least("control_interval", self.control_interval, 10)?;
        at_least("peer_timeout", self.peer_timeout, 10)?;
        at_least("queue_timeout", self.queue_timeout, 1)?;
        at_least("forward_timeout", self.forward_timeout, 1)?;
        at_least("offer_ttl", self.offer_ttl, 1)?;
        at_least("queue_drain", self.queue_drain, 1)?;
        if self.max_hops > MAX_HOPS_LIMIT {
            return f("max_hops", "must be at most 16");
        }
        if self.max_concurrency == 0 {
            return f("max_concurrency", "must be at least 1");
        }
        if self.max_concurrency > tokio::sync::Semaphore::MAX_PERMITS {
            return f("max_concurrency", "is too large");
        }
        if self.max_body == Bytes::ZERO {
            return f("max_body", "must be more than 0");
        }
        if self.max_answer == Bytes::ZERO {
            return f("max_answer", "must be more than 0");
        }
        for (name, rate) in &self.max_rates {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(FieldError::new(
                    format!("offload.max_rates.{name}"),
                    "must be a finite number of requests per second > 0",
                ));
            }
        }
        if !(self.static_local_share.is_finite() && (0.0..=1.0).contains(&self.static_local_share))
        {
            return f("static_local_share", "must be between 0 and 1");
        }
        if self.neighbourhood == 0 {
            return f("neighbourhood", "must be at least 1");
        }
        if !(self.hysteresis.is_finite() && (0.0..0.9).contains(&self.hysteresis)) {
            return f("hysteresis", "must be at least 0 and below 0.9");
        }
        if self.dead_band > model::offload::WEIGHT_SCALE {
            return f("dead_band", "must be at most 1000 (per mille)");
        }
        for (field, v) in [
            ("usage_high", self.usage_high),
            ("usage_low", self.usage_low),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return f(field, "must be a percentage between 0 and 100");
            }
        }
        if self.usage_low > self.usage_high {
            return f("usage_low", "must not be above usage_high");
        }
        if self.margin_step == 0 || self.margin_step > model::offload::WEIGHT_SCALE {
            return f("margin_step", "must be between 1 and 1000 (per mille)");
        }
        if self.haproxy.binary.trim().is_empty() {
            return f("haproxy.binary", "must not be empty");
        }
        if self
            .haproxy
            .listen
            .as_deref()
            .is_some_and(|l| l.trim().is_empty())
        {
            return f("haproxy.listen", "must not be empty when given");
        }
        Ok(())
    }
}

/// The catalog name of an image: its last path segment without tag or digest
/// (`ghcr.io/acme/echo:1.2` -> `echo`), as the embedded gateway resolves it.
pub fn catalog_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let no_digest = last.split('@').next().unwrap_or(last);
    no_digest.split(':').next().unwrap_or(no_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_drop_registry_path_tag_and_digest() {
        assert_eq!(catalog_name("ghcr.io/acme/echo:1.2"), "echo");
        assert_eq!(catalog_name("localhost:5000/figlet"), "figlet");
        assert_eq!(catalog_name("shasum@sha256:abc"), "shasum");
        assert_eq!(catalog_name("echo"), "echo");
    }

    #[test]
    fn max_rates_are_found_by_service_then_live_name_then_catalog_name() {
        let c = OffloadConfig {
            max_rates: BTreeMap::from([
                ("fogfn-1".to_string(), 10.0),
                ("my-echo".to_string(), 20.0),
                ("echo".to_string(), 30.0),
            ]),
            ..Default::default()
        };
        assert_eq!(c.max_rate("fogfn-1", "my-echo", "x/echo:1"), Some(10.0));
        assert_eq!(c.max_rate("fogfn-2", "my-echo", "x/echo:1"), Some(20.0));
        assert_eq!(c.max_rate("fogfn-2", "other", "x/echo:1"), Some(30.0));
        assert_eq!(c.max_rate("fogfn-2", "other", "x/figlet:1"), None);
    }
}
