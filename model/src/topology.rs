//! Topology files: a whole federation (marketplace settings and a tree of fog nodes) in one TOML
//! file, and a generator of random GIRAFF-style 4-tier trees for experiments and benchmarks.
//!
//! ```toml
//! [marketplace]
//! auction_rule = "vickrey"
//! auction_timeout_ms = 2000
//!
//! [[node]]
//! name = "cloud"
//! owner = "cloud-co"
//! tags = ["cloud"]
//! cpu = "16 cpu"
//! memory = "32 GiB"
//! pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }
//!
//! [[node]]
//! name = "regional-1"
//! parent = "cloud"
//! latency = "15 ms"      # one-way latency of the link to the parent
//! rate = "500 Mbit"      # optional: the link's rate (absent: unlimited)
//! loss = 0.5             # optional: the link's packet loss in percent (absent: none)
//! owner = "metro-net"
//! cpu = "8 cpu"
//! memory = "16 GiB"
//! pricing = { model = "quadratic", aa = 0.05, bb = 0.3, electricity = 0.95 }
//! chaos = { bid_delay = "10 s" }   # optional, passed through to the node
//! offload = { strategy = "recalc", max_concurrency = 2, max_rates = { echo = 20 } }
//!
//! [offload]                  # optional: the `[offload]` of every node that has none
//! strategy = "lease"
//! ```
//!
//! Parse, don't validate: a [`Topology`] that exists has unique node names, parents that exist,
//! no cycles and well-formed units. Errors name the node and the field.
//!
//! Pure: [`Topology::parse`] takes the file's text and [`Topology::to_toml_string`] gives it
//! back; reading and writing files is the caller's (`testbed::topology::TopologyFileExt`).
//! [`giraff`] generates GIRAFF-like 4-tier trees as topology file text.

pub mod giraff;

use crate::units::{Bytes, Cpu, Latency, parse_duration};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Auction rules the marketplace accepts (`--auction-rule`).
pub const AUCTION_RULES: &[&str] = &["vickrey", "first_price", "random"];
/// Placement strategies a fog node accepts (`strategy`).
pub const STRATEGIES: &[&str] = &[
    "auction",
    "edge_first",
    "edge_furthest",
    "edge_ward",
    "cloud_only",
    "maxcpu",
    "mincpurandom",
];
/// Pricing models a fog node accepts (`pricing.model`).
pub const PRICING_MODELS: &[&str] = &["linear", "quadratic"];
/// Offloading strategies a fog node accepts (`offload.strategy`).
pub const OFFLOAD_STRATEGIES: &[&str] = &["static", "recalc", "node_margin", "lease"];
/// Data planes a fog node accepts (`offload.data_plane`).
pub const DATA_PLANES: &[&str] = &["native", "haproxy"];

/// Why a topology was refused. Messages name the node and the field.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A topology file could not be read. Nothing here reads files: this is for the callers
    /// that do (`testbed::topology::TopologyFileExt::from_file`), so one error type covers a
    /// topology file from its path to its last field.
    #[error("cannot read topology file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("topology is not valid TOML or has an unexpected shape: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("[marketplace].{field}: {reason}")]
    Marketplace { field: &'static str, reason: String },
    #[error("[offload].{field}: {reason}")]
    Offload { field: String, reason: String },
    #[error("the topology has no [[node]]")]
    Empty,
    #[error("node #{index}: name: {reason}")]
    BadName { index: usize, reason: String },
    #[error("node `{node}`: name is used by more than one [[node]]")]
    DuplicateName { node: String },
    #[error("node `{node}`: {field}: {reason}")]
    Field {
        node: String,
        field: String,
        reason: String,
    },
    #[error("node `{node}`: parent: no node is named `{parent}`")]
    UnknownParent { node: String, parent: String },
    #[error("nodes {} form a cycle of parents", .nodes.join(" -> "))]
    Cycle { nodes: Vec<String> },
    #[error("cannot generate a tree of {nodes} nodes and depth {depth}: {reason}")]
    Generator {
        nodes: usize,
        depth: usize,
        reason: String,
    },
}

/// Why a link value (`rate`, `loss`) was refused; the topology error adds the node and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkValueError(String);

const RATE_EXPECTED: &str = "a rate such as \"10 Mbit\", \"500 Mbit\" or \"1 Gbit\" \
     (bit, Kbit, Mbit, Gbit, Tbit; per second)";

/// The rate (bandwidth) of a link in bits per second, more than 0. Written "1 Gbit",
/// "500 Mbit", "10 Mbit": decimal units, as `tc` and EnosLib's `rate = "1gbit"`; case and the
/// space do not matter, and "Mbit", "Mbit/s" and "Mbps" are the same unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

impl Rate {
    /// `None` for 0: a link that carries nothing is not a link.
    pub fn from_bits_per_second(bps: u64) -> Option<Rate> {
        (bps > 0).then_some(Rate(bps))
    }

    /// `None` for 0, or beyond `u64` bits per second.
    pub fn from_mbit(mbit: u64) -> Option<Rate> {
        mbit.checked_mul(1_000_000)
            .and_then(Rate::from_bits_per_second)
    }

    pub fn bits_per_second(self) -> u64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = LinkValueError;

    fn from_str(input: &str) -> Result<Rate, LinkValueError> {
        let bad = |why: &str| LinkValueError(format!("`{input}`: {why}; expected {RATE_EXPECTED}"));
        let text = input.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        if number.is_empty() {
            return Err(bad("no number"));
        }
        let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
        let unit = unit.trim().to_ascii_lowercase();
        let per_unit: f64 = match unit.strip_suffix("/s").unwrap_or(&unit) {
            "bit" | "bps" => 1.0,
            "kbit" | "kbps" => 1e3,
            "mbit" | "mbps" => 1e6,
            "gbit" | "gbps" => 1e9,
            "tbit" | "tbps" => 1e12,
            "" => return Err(bad("no unit")),
            _ => return Err(bad("unknown unit")),
        };
        let bps = n * per_unit;
        if bps >= 1.8e19 {
            return Err(bad("too large"));
        }
        if (bps - bps.round()).abs() > 1e-6 {
            return Err(bad("not a whole number of bits per second"));
        }
        Rate::from_bits_per_second(bps.round() as u64).ok_or_else(|| bad("must be more than 0"))
    }
}

impl fmt::Display for Rate {
    /// The largest unit that divides the rate exactly: parsing the text gives the rate back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("Tbit", 1_000_000_000_000),
            ("Gbit", 1_000_000_000),
            ("Mbit", 1_000_000),
            ("Kbit", 1_000),
        ] {
            if self.0.is_multiple_of(size) {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        write!(f, "{} bit", self.0)
    }
}

/// The packet loss of a link in percent: 0 or more and below 100 (a link that loses
/// everything is not a link).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct LossPercent(f64);

impl LossPercent {
    pub fn new(percent: f64) -> Result<LossPercent, LinkValueError> {
        if percent.is_finite() && (0.0..100.0).contains(&percent) {
            Ok(LossPercent(percent))
        } else {
            Err(LinkValueError(format!(
                "{percent} must be a percentage, 0 or more and below 100"
            )))
        }
    }

    pub fn percent(self) -> f64 {
        self.0
    }
}

impl fmt::Display for LossPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %", self.0)
    }
}

/// A path of the tree seen as one link: what link emulation between two nodes has to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathLink {
    /// The one-way latencies of the path's links, summed.
    pub latency: Latency,
    /// The smallest rate along the path; `None` when no link of it is limited.
    pub rate: Option<Rate>,
    /// The losses along the path compounded: `100 * (1 - prod(1 - l_i / 100))`.
    pub loss_percent: f64,
}

impl PathLink {
    /// A node's path to itself: no delay, no limit, no loss.
    pub const LOCAL: PathLink = PathLink {
        latency: Latency::new(Duration::ZERO),
        rate: None,
        loss_percent: 0.0,
    };

    /// The link from `node` to its parent (no delay, limit nor loss for a root).
    pub fn to_parent(node: &NodeSpec) -> PathLink {
        PathLink {
            latency: node.latency.unwrap_or_default(),
            rate: node.rate,
            loss_percent: node.loss.map_or(0.0, LossPercent::percent),
        }
    }

    /// This path followed by `next`.
    pub fn then(self, next: PathLink) -> PathLink {
        let delivered = (1.0 - self.loss_percent / 100.0) * (1.0 - next.loss_percent / 100.0);
        PathLink {
            latency: Latency::new(self.latency.as_duration() + next.latency.as_duration()),
            rate: [self.rate, next.rate].into_iter().flatten().min(),
            loss_percent: 100.0 * (1.0 - delivered),
        }
    }
}

/// The path between nodes `a` and `b` of a tree: the links up from each to their closest
/// common ancestor, folded with `then` from `local` (`a`'s side first, then `b`'s, each from
/// the node up). `parent_of(n)` gives `n`'s parent and the link to it, `Some(None)` for a root
/// and `None` for an unknown node. `None` for an unknown node, nodes of different trees, or a
/// chain of parents longer than `nodes` (a cycle).
pub fn tree_path<K: Copy + PartialEq, L: Copy>(
    a: K,
    b: K,
    nodes: usize,
    local: L,
    then: impl Fn(L, L) -> L,
    parent_of: impl Fn(K) -> Option<Option<(K, L)>>,
) -> Option<L> {
    // Every ancestor of `a` (itself included) with the path from `a` up to it.
    let mut up_from_a: Vec<(K, L)> = Vec::new();
    let (mut node, mut path) = (a, local);
    loop {
        up_from_a.push((node, path));
        if up_from_a.len() > nodes + 1 {
            return None;
        }
        let Some((parent, link)) = parent_of(node)? else {
            break;
        };
        path = then(path, link);
        node = parent;
    }
    let (mut node, mut path) = (b, local);
    for _ in 0..=nodes {
        if let Some(&(_, from_a)) = up_from_a.iter().find(|(n, _)| *n == node) {
            return Some(then(from_a, path));
        }
        let (parent, link) = parent_of(node)??;
        path = then(path, link);
        node = parent;
    }
    None
}

/// Two nodes (`a < b` by name) and the path between them ([`Topology::pair_links`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairLink<'a> {
    pub a: &'a str,
    pub b: &'a str,
    pub link: PathLink,
}

/// One pair of `testbed topology links`: the path between `a` and `b` (`a < b`) in plain
/// numbers, for scripts that set up link emulation (one-way delay, rate, loss).
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct LinkRow {
    pub a: String,
    pub b: String,
    /// One-way latency in microseconds.
    pub delay_us: u64,
    /// Bits per second; `None` (JSON `null`): unlimited.
    pub rate_bps: Option<u64>,
    pub loss_percent: f64,
}

impl From<&PairLink<'_>> for LinkRow {
    fn from(pair: &PairLink<'_>) -> LinkRow {
        let micros = pair.link.latency.as_duration().as_micros();
        LinkRow {
            a: pair.a.to_string(),
            b: pair.b.to_string(),
            delay_us: u64::try_from(micros).unwrap_or(u64::MAX),
            rate_bps: pair.link.rate.map(Rate::bits_per_second),
            // Compounding leaves float dust (3.0000000000000027): a millionth of a percent is
            // far below anything netem applies.
            loss_percent: (pair.link.loss_percent * 1e6).round() / 1e6,
        }
    }
}

/// Settings of the marketplace process.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketplaceSettings {
    /// `vickrey`, `first_price` or `random`.
    pub auction_rule: String,
    /// How long the marketplace waits for the target's (subtree's) bids.
    pub auction_timeout_ms: u64,
    /// Heartbeat interval handed to nodes; `None` keeps the marketplace's default.
    pub heartbeat_interval_ms: Option<u64>,
}

impl Default for MarketplaceSettings {
    fn default() -> Self {
        Self {
            auction_rule: "vickrey".to_string(),
            auction_timeout_ms: 2000,
            heartbeat_interval_ms: None,
        }
    }
}

/// One fog node of the topology.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
    /// `None` for a root.
    pub parent: Option<String>,
    /// One-way latency of the link to the parent (`None` for a root).
    pub latency: Option<Latency>,
    /// Rate of the link to the parent; `None`: unlimited (and always for a root).
    pub rate: Option<Rate>,
    /// Packet loss of the link to the parent; `None`: no loss (and always for a root).
    pub loss: Option<LossPercent>,
    pub cpu: Cpu,
    pub memory: Bytes,
    pub strategy: String,
    /// The node's `[pricing]` table, passed through to its configuration.
    pub pricing: toml::Table,
    /// The node's `[chaos]` table (fault injection), passed through when present.
    pub chaos: Option<toml::Table>,
    /// Per-node limit on auctions in flight; `None` keeps the node's default.
    pub max_auctions_in_flight: Option<u64>,
    /// The node's `[offload]` table (run-time routing and offloading), passed through when
    /// present; a topology-wide `[offload]` fills it for nodes that have none.
    pub offload: Option<toml::Table>,
    /// HTTP worker threads of the node; `None` lets the launcher choose (1: many nodes share
    /// the machine).
    pub http_workers: Option<u64>,
}

/// A validated federation description.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    marketplace: MarketplaceSettings,
    nodes: Vec<NodeSpec>,
}

// ---------------------------------------------------------------------------------------------
// Raw (file) form

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    marketplace: Option<RawMarketplace>,
    #[serde(default)]
    node: Vec<RawNode>,
    /// The `[offload]` table of every node without its own.
    #[serde(default)]
    offload: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarketplace {
    auction_rule: Option<String>,
    auction_timeout_ms: Option<i64>,
    heartbeat_interval_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    owner: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    parent: Option<String>,
    latency: Option<String>,
    /// A string such as "100 Mbit"; taken as a value so that a number gets an error naming
    /// the node.
    rate: Option<toml::Value>,
    /// Percent, a number.
    loss: Option<toml::Value>,
    cpu: Option<String>,
    memory: Option<String>,
    strategy: Option<String>,
    pricing: Option<toml::Table>,
    chaos: Option<toml::Table>,
    max_auctions_in_flight: Option<i64>,
    offload: Option<toml::Table>,
    http_workers: Option<i64>,
}

fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "`{name}` may only contain letters, digits, '-', '_' and '.' (it names files and links)"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("`{name}` must not start with '.'"));
    }
    Ok(())
}

fn field_err(node: &str, field: &str, reason: impl std::fmt::Display) -> TopologyError {
    TopologyError::Field {
        node: node.to_string(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn no_parent_link(node: &str, field: &str) -> TopologyError {
    field_err(
        node,
        field,
        format!("a root node has no link to a parent; remove `{field}` or set `parent`"),
    )
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not one of {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn positive_ms(value: Option<i64>, field: &'static str) -> Result<Option<u64>, TopologyError> {
    match value {
        None => Ok(None),
        Some(v) if v > 0 => Ok(Some(v as u64)),
        Some(v) => Err(TopologyError::Marketplace {
            field,
            reason: format!("{v} must be a positive number of milliseconds"),
        }),
    }
}

impl RawNode {
    fn into_spec(self) -> Result<NodeSpec, TopologyError> {
        let name = self.name;
        let owner = self
            .owner
            .filter(|o| !o.trim().is_empty())
            .ok_or_else(|| field_err(&name, "owner", "is required"))?;
        let cpu: Cpu = self
            .cpu
            .as_deref()
            .ok_or_else(|| field_err(&name, "cpu", "is required"))?
            .parse()
            .map_err(|e| field_err(&name, "cpu", e))?;
        if cpu == Cpu::ZERO {
            return Err(field_err(&name, "cpu", "must be more than 0"));
        }
        let memory: Bytes = self
            .memory
            .as_deref()
            .ok_or_else(|| field_err(&name, "memory", "is required"))?
            .parse()
            .map_err(|e| field_err(&name, "memory", e))?;
        if memory == Bytes::ZERO {
            return Err(field_err(&name, "memory", "must be more than 0"));
        }
        let parent = self.parent.filter(|p| !p.is_empty());
        let latency = match (&parent, self.latency.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(field_err(
                    &name,
                    "latency",
                    "a root node has no link to a parent; remove `latency` or set `parent`",
                ));
            }
            (Some(_), None) => {
                return Err(field_err(
                    &name,
                    "latency",
                    "is required for a node with a parent (one-way latency of the link, e.g. \"10 ms\")",
                ));
            }
            (Some(_), Some(l)) => Some(
                l.parse::<Latency>()
                    .map_err(|e| field_err(&name, "latency", e))?,
            ),
        };
        let rate = match self.rate {
            None => None,
            Some(_) if parent.is_none() => return Err(no_parent_link(&name, "rate")),
            Some(value) => {
                let text = value.as_str().ok_or_else(|| {
                    field_err(
                        &name,
                        "rate",
                        "must be a string such as \"100 Mbit\" (the link's rate)",
                    )
                })?;
                Some(
                    text.parse::<Rate>()
                        .map_err(|e| field_err(&name, "rate", e))?,
                )
            }
        };
        let loss = match self.loss {
            None => None,
            Some(_) if parent.is_none() => return Err(no_parent_link(&name, "loss")),
            Some(value) => {
                let percent = value
                    .as_float()
                    .or_else(|| value.as_integer().map(|i| i as f64))
                    .ok_or_else(|| {
                        field_err(
                            &name,
                            "loss",
                            "must be a number of percent, e.g. 2.5 (the link's packet loss)",
                        )
                    })?;
                Some(LossPercent::new(percent).map_err(|e| field_err(&name, "loss", e))?)
            }
        };
        if parent.as_deref() == Some(name.as_str()) {
            return Err(field_err(
                &name,
                "parent",
                "a node cannot be its own parent",
            ));
        }
        let strategy = self.strategy.unwrap_or_else(|| "auction".to_string());
        one_of(&strategy, STRATEGIES).map_err(|e| field_err(&name, "strategy", e))?;
        let pricing = self.pricing.unwrap_or_default();
        if let Some(model) = pricing.get("model") {
            let model = model
                .as_str()
                .ok_or_else(|| field_err(&name, "pricing.model", "must be a string"))?;
            one_of(model, PRICING_MODELS).map_err(|e| field_err(&name, "pricing.model", e))?;
        }
        for (key, value) in &pricing {
            if key != "model" && !(value.is_float() || value.is_integer()) {
                return Err(field_err(
                    &name,
                    &format!("pricing.{key}"),
                    "must be a number",
                ));
            }
        }
        if let Some(chaos) = &self.chaos {
            if let Some(delay) = chaos.get("bid_delay") {
                let delay = delay.as_str().ok_or_else(|| {
                    field_err(&name, "chaos.bid_delay", "must be a duration string")
                })?;
                parse_duration(delay).map_err(|e| field_err(&name, "chaos.bid_delay", e))?;
            }
            if let Some(refuse) = chaos.get("refuse_accept")
                && !refuse.is_bool()
            {
                return Err(field_err(
                    &name,
                    "chaos.refuse_accept",
                    "must be true or false",
                ));
            }
        }
        let max_auctions_in_flight = match self.max_auctions_in_flight {
            None => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => {
                return Err(field_err(
                    &name,
                    "max_auctions_in_flight",
                    format!("{n} must be at least 1"),
                ));
            }
        };
        if let Some(offload) = &self.offload {
            check_offload(offload)
                .map_err(|(field, reason)| field_err(&name, &format!("offload.{field}"), reason))?;
        }
        let http_workers = match self.http_workers {
            None => None,
            Some(n) if n > 0 => Some(n as u64),
            Some(n) => {
                return Err(field_err(
                    &name,
                    "http_workers",
                    format!("{n} must be at least 1"),
                ));
            }
        };
        Ok(NodeSpec {
            name,
            owner,
            tags: self.tags,
            parent,
            latency,
            rate,
            loss,
            cpu,
            memory,
            strategy,
            pricing,
            chaos: self.chaos,
            max_auctions_in_flight,
            offload: self.offload,
            http_workers,
        })
    }
}

/// Checks the keys of an `[offload]` table that the contract names (docs/ARCHITECTURE.md,
/// "Node configuration `[offload]`"): their types, units and allowed values. Other keys pass
/// through to the node, which has the last word. `Err((field, reason))`.
pub fn check_offload(offload: &toml::Table) -> Result<(), (String, String)> {
    let err = |field: &str, reason: String| (field.to_string(), reason);
    for (key, value) in offload {
        match key.as_str() {
            "strategy" | "data_plane" => {
                let allowed = if key == "strategy" {
                    OFFLOAD_STRATEGIES
                } else {
                    DATA_PLANES
                };
                let v = value
                    .as_str()
                    .ok_or_else(|| err(key, "must be a string".to_string()))?;
                one_of(v, allowed).map_err(|e| err(key, e))?;
            }
            "control_interval" | "peer_timeout" | "queue_timeout" | "forward_timeout"
            | "offer_ttl" | "max_forward_rtt" | "queue_drain" => {
                let v = value.as_str().ok_or_else(|| {
                    err(
                        key,
                        "must be a duration string, e.g. \"250 ms\"".to_string(),
                    )
                })?;
                parse_duration(v).map_err(|e| err(key, e.to_string()))?;
            }
            "max_hops" | "max_concurrency" | "queue_capacity" | "neighbourhood" | "dead_band"
            | "margin_step" => match value.as_integer() {
                Some(n) if n >= 0 => {}
                _ => return Err(err(key, "must be a whole number, 0 or more".to_string())),
            },
            "static_local_share" | "hysteresis" | "usage_high" | "usage_low"
                if !(value.is_float() || value.is_integer()) =>
            {
                return Err(err(key, "must be a number".to_string()));
            }
            "max_body" => {
                let v = value
                    .as_str()
                    .ok_or_else(|| err(key, "must be a size string, e.g. \"8 MB\"".to_string()))?;
                v.parse::<Bytes>().map_err(|e| err(key, e.to_string()))?;
            }
            "max_rates" => {
                let rates = value.as_table().ok_or_else(|| {
                    err(key, "must be a table of req/s by function name".to_string())
                })?;
                for (function, rate) in rates {
                    let ok = rate
                        .as_float()
                        .or_else(|| rate.as_integer().map(|i| i as f64))
                        .is_some_and(|r| r.is_finite() && r >= 0.0);
                    if !ok {
                        return Err(err(
                            &format!("max_rates.{function}"),
                            "must be a number of requests per second, 0 or more".to_string(),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Topology {
    /// Parses and validates a topology file's text.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology = toml::from_str(text)?;
        let mut marketplace = MarketplaceSettings::default();
        if let Some(m) = raw.marketplace {
            if let Some(rule) = m.auction_rule {
                one_of(&rule, AUCTION_RULES).map_err(|reason| TopologyError::Marketplace {
                    field: "auction_rule",
                    reason,
                })?;
                marketplace.auction_rule = rule;
            }
            if let Some(t) = positive_ms(m.auction_timeout_ms, "auction_timeout_ms")? {
                marketplace.auction_timeout_ms = t;
            }
            marketplace.heartbeat_interval_ms =
                positive_ms(m.heartbeat_interval_ms, "heartbeat_interval_ms")?;
        }
        if let Some(offload) = &raw.offload {
            check_offload(offload)
                .map_err(|(field, reason)| TopologyError::Offload { field, reason })?;
        }
        let mut nodes = Vec::with_capacity(raw.node.len());
        for (index, mut node) in raw.node.into_iter().enumerate() {
            valid_name(&node.name).map_err(|reason| TopologyError::BadName { index, reason })?;
            if node.offload.is_none() {
                node.offload = raw.offload.clone();
            }
            nodes.push(node.into_spec()?);
        }
        Topology::new(marketplace, nodes)
    }

    /// Validates the tree shape: unique names, existing parents, no cycles. Several roots
    /// (a forest) are allowed.
    pub fn new(
        marketplace: MarketplaceSettings,
        nodes: Vec<NodeSpec>,
    ) -> Result<Topology, TopologyError> {
        if nodes.is_empty() {
            return Err(TopologyError::Empty);
        }
        let mut names = BTreeSet::new();
        for (index, n) in nodes.iter().enumerate() {
            valid_name(&n.name).map_err(|reason| TopologyError::BadName { index, reason })?;
            if !names.insert(n.name.as_str()) {
                return Err(TopologyError::DuplicateName {
                    node: n.name.clone(),
                });
            }
        }
        let parent_of: BTreeMap<&str, Option<&str>> = nodes
            .iter()
            .map(|n| (n.name.as_str(), n.parent.as_deref()))
            .collect();
        for n in &nodes {
            if let Some(p) = &n.parent
                && !parent_of.contains_key(p.as_str())
            {
                return Err(TopologyError::UnknownParent {
                    node: n.name.clone(),
                    parent: p.clone(),
                });
            }
        }
        // Walk up from every node; a walk longer than the node count revisits a node: a cycle.
        for n in &nodes {
            let mut seen: Vec<&str> = vec![n.name.as_str()];
            let mut current = n.parent.as_deref();
            while let Some(p) = current {
                if let Some(start) = seen.iter().position(|s| *s == p) {
                    let mut cycle: Vec<String> =
                        seen[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(p.to_string());
                    return Err(TopologyError::Cycle { nodes: cycle });
                }
                seen.push(p);
                current = parent_of.get(p).copied().flatten();
            }
        }
        Ok(Topology { marketplace, nodes })
    }

    pub fn marketplace(&self) -> &MarketplaceSettings {
        &self.marketplace
    }

    /// Nodes in file order.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The children of `name`, in file order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a NodeSpec> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.parent.as_deref() == Some(name))
    }

    /// Nodes without a parent.
    pub fn roots(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.parent.is_none())
    }

    /// Nodes without children (the edge).
    pub fn leaves(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes
            .iter()
            .filter(|n| self.children(&n.name).next().is_none())
    }

    /// Distance to the root: 0 for a root. `None` for an unknown name.
    pub fn depth(&self, name: &str) -> Option<usize> {
        let mut node = self.node(name)?;
        let mut depth = 0;
        // The tree has no cycles (checked in `new`), so this terminates.
        while let Some(p) = node.parent.as_deref() {
            node = self.node(p)?;
            depth += 1;
        }
        Some(depth)
    }

    /// One-way latency of the overlay path between two nodes: the sum of the link latencies
    /// up from each to their closest common ancestor (a link without a latency counts 0).
    /// `None` for an unknown name, or for nodes of different trees.
    pub fn path_latency(&self, a: &str, b: &str) -> Option<Latency> {
        self.path_link(a, b).map(|p| p.latency)
    }

    /// The overlay path between two nodes seen as one link (what GIRAFF gives each pair of
    /// its testbed): the one-way latencies of its links summed, the smallest rate, and the
    /// losses compounded. `None` for an unknown name, or for nodes of different trees.
    pub fn path_link(&self, a: &str, b: &str) -> Option<PathLink> {
        tree_path(
            a,
            b,
            self.nodes.len(),
            PathLink::LOCAL,
            PathLink::then,
            |name| {
                let node = self.node(name)?;
                Some(
                    node.parent
                        .as_deref()
                        .map(|p| (p, PathLink::to_parent(node))),
                )
            },
        )
    }

    /// Every unordered pair of nodes of the same tree with its [`path_link`](Self::path_link),
    /// `a < b` by name, sorted by `(a, b)`. One walk up per node rather than per pair: 663
    /// nodes make 219,453 pairs.
    pub fn pair_links(&self) -> Vec<PairLink<'_>> {
        let index: HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        // For each node, its ancestors (itself first) with the path up to each.
        let up: Vec<Vec<(usize, PathLink)>> = (0..self.nodes.len())
            .map(|start| {
                let mut ancestors = Vec::new();
                let mut current = start;
                let mut path = PathLink::LOCAL;
                loop {
                    ancestors.push((current, path));
                    let node = &self.nodes[current];
                    let Some(&parent) = node.parent.as_deref().and_then(|p| index.get(p)) else {
                        break;
                    };
                    path = path.then(PathLink::to_parent(node));
                    current = parent;
                }
                ancestors
            })
            .collect();
        let mut by_name: Vec<usize> = (0..self.nodes.len()).collect();
        by_name.sort_by(|&x, &y| self.nodes[x].name.cmp(&self.nodes[y].name));
        let mut pairs = Vec::new();
        for (k, &i) in by_name.iter().enumerate() {
            let from_a: HashMap<usize, PathLink> = up[i].iter().copied().collect();
            for &j in &by_name[k + 1..] {
                let link = up[j]
                    .iter()
                    .find_map(|(ancestor, from_b)| from_a.get(ancestor).map(|a| a.then(*from_b)));
                if let Some(link) = link {
                    pairs.push(PairLink {
                        a: &self.nodes[i].name,
                        b: &self.nodes[j].name,
                        link,
                    });
                }
            }
        }
        pairs
    }

    /// A human tier label: `tier 1` is a root; leaves below the root are tagged `edge`.
    pub fn tier(&self, name: &str) -> Option<String> {
        let depth = self.depth(name)?;
        let leaf = self.children(name).next().is_none();
        Some(match (depth, leaf) {
            (0, _) => "tier 1 (root)".to_string(),
            (d, true) => format!("tier {} (edge)", d + 1),
            (d, false) => format!("tier {}", d + 1),
        })
    }

    /// Sets one node's `chaos` table (fault injection), for tests and experiments. Names and
    /// parents cannot change, so the tree stays valid.
    pub fn set_chaos(&mut self, name: &str, chaos: toml::Table) -> Result<(), TopologyError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| field_err(name, "name", "no such node"))?;
        node.chaos = Some(chaos);
        Ok(())
    }

    /// Sets one node's `[offload]` table (checked like a topology file's), for tests and
    /// benchmarks.
    pub fn set_offload(&mut self, name: &str, offload: toml::Table) -> Result<(), TopologyError> {
        check_offload(&offload)
            .map_err(|(field, reason)| field_err(name, &format!("offload.{field}"), reason))?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| field_err(name, "name", "no such node"))?;
        node.offload = Some(offload);
        Ok(())
    }

    /// Gives every node without an `[offload]` table this one (what a topology-wide
    /// `[offload]` does in a file).
    pub fn set_default_offload(&mut self, offload: toml::Table) -> Result<(), TopologyError> {
        check_offload(&offload)
            .map_err(|(field, reason)| TopologyError::Offload { field, reason })?;
        for node in &mut self.nodes {
            if node.offload.is_none() {
                node.offload = Some(offload.clone());
            }
        }
        Ok(())
    }

    /// Sets one node's HTTP worker threads.
    pub fn set_http_workers(&mut self, name: &str, workers: u64) -> Result<(), TopologyError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| field_err(name, "name", "no such node"))?;
        node.http_workers = Some(workers.max(1));
        Ok(())
    }

    /// Replaces one node's pricing table.
    pub fn set_pricing(&mut self, name: &str, pricing: toml::Table) -> Result<(), TopologyError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| field_err(name, "name", "no such node"))?;
        node.pricing = pricing;
        Ok(())
    }

    /// Replaces the marketplace settings.
    pub fn set_marketplace(&mut self, settings: MarketplaceSettings) {
        self.marketplace = settings;
    }

    /// A random GIRAFF-style tree: tier 1 is one cloud root, the last tier is the edge, tiers in
    /// between are tier 2 and tier 3. Link latencies and pricing parameters are drawn per tier
    /// as in GIRAFF's testbed (tier 2 and tier 3 links 15-30 ms, edge links 5-10 ms; cloud links
    /// 1-3 ms are only used between several roots, which this generator does not make).
    /// Each tier is wider than the one above; every non-edge node has at least one child.
    /// The same `seed` gives the same tree.
    pub fn generated_tree(
        nodes: usize,
        depth: usize,
        seed: u64,
    ) -> Result<Topology, TopologyError> {
        let fail = |reason: &str| TopologyError::Generator {
            nodes,
            depth,
            reason: reason.to_string(),
        };
        if depth == 0 {
            return Err(fail("depth must be at least 1"));
        }
        if nodes < depth {
            return Err(fail("need at least one node per tier"));
        }
        if depth == 1 && nodes != 1 {
            return Err(fail("depth 1 is a single cloud node"));
        }
        let counts = tier_counts(nodes, depth);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut specs: Vec<NodeSpec> = Vec::with_capacity(nodes);
        let mut previous: Vec<String> = Vec::new();
        let owners_per_tier = |tier: Tier| -> usize {
            match tier {
                Tier::Cloud => 1,
                Tier::Two => 3,
                Tier::Three => 4,
                Tier::Edge => 8,
            }
        };
        for (level, &count) in counts.iter().enumerate() {
            let tier = Tier::of(level, depth);
            let mut current = Vec::with_capacity(count);
            for i in 0..count {
                let name = match tier {
                    Tier::Two | Tier::Three => format!("t{}-{}", level + 1, i + 1),
                    _ => format!("{}-{}", tier.prefix(), i + 1),
                };
                let parent = if previous.is_empty() {
                    None
                } else if i < previous.len() {
                    // Every node of the tier above gets at least one child.
                    Some(previous[i].clone())
                } else {
                    Some(previous[rng.random_range(0..previous.len())].clone())
                };
                let latency = parent.as_ref().map(|_| tier.link_latency(&mut rng));
                let owner = match tier {
                    Tier::Cloud => "cloud-co".to_string(),
                    _ => format!(
                        "{}-owner-{}",
                        tier.prefix(),
                        rng.random_range(1..=owners_per_tier(tier))
                    ),
                };
                let (cpu, memory) = tier.capacity(&mut rng);
                specs.push(NodeSpec {
                    name: name.clone(),
                    owner,
                    tags: vec![match tier {
                        Tier::Two | Tier::Three => format!("tier{}", level + 1),
                        _ => tier.tag().to_string(),
                    }],
                    parent,
                    latency,
                    rate: None,
                    loss: None,
                    cpu,
                    memory,
                    strategy: "auction".to_string(),
                    pricing: tier.pricing(&mut rng),
                    chaos: None,
                    max_auctions_in_flight: None,
                    offload: None,
                    http_workers: None,
                });
                current.push(name);
            }
            previous = current;
        }
        Topology::new(MarketplaceSettings::default(), specs)
    }
}

/// Node counts per tier: one root, then tiers growing by a common factor, the edge taking
/// what is left; every tier gets at least one node and is at least as wide as the one above.
fn tier_counts(nodes: usize, depth: usize) -> Vec<usize> {
    if depth == 1 {
        return vec![nodes];
    }
    // Smallest growth factor b with 1 + b + ... + b^(depth-1) >= nodes.
    let total = |b: f64| (0..depth).map(|l| b.powi(l as i32)).sum::<f64>();
    let (mut lo, mut hi) = (1.0_f64, nodes as f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if total(mid) >= nodes as f64 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let mut counts = vec![1usize];
    let mut used = 1;
    for level in 1..depth - 1 {
        let remaining_levels = depth - level; // including this one and the edge
        let wanted = hi.powi(level as i32).round() as usize;
        let prev = counts[level - 1];
        // Leave room for the tiers below, each at least as wide as this one.
        let max_here = (nodes - used) / remaining_levels;
        let c = wanted.max(prev).min(max_here).max(1);
        counts.push(c);
        used += c;
    }
    counts.push(nodes - used);
    counts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Cloud,
    Two,
    Three,
    Edge,
}

impl Tier {
    fn of(level: usize, depth: usize) -> Tier {
        match level {
            0 => Tier::Cloud,
            l if l + 1 == depth => Tier::Edge,
            1 => Tier::Two,
            _ => Tier::Three,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Tier::Cloud => "cloud",
            Tier::Two => "t2",
            Tier::Three => "t3",
            Tier::Edge => "edge",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Tier::Cloud => "cloud",
            Tier::Two => "tier2",
            Tier::Three => "tier3",
            Tier::Edge => "edge",
        }
    }
    fn link_latency(self, rng: &mut StdRng) -> Latency {
        let (lo, hi) = match self {
            Tier::Cloud => (1.0, 3.0),
            Tier::Two | Tier::Three => (15.0, 30.0),
            Tier::Edge => (5.0, 10.0),
        };
        // Whole tenths of a millisecond keep the files readable.
        let ms: f64 = rng.random_range(lo..=hi);
        Latency::from_millis_f64((ms * 10.0).round() / 10.0)
    }
    fn capacity(self, rng: &mut StdRng) -> (Cpu, Bytes) {
        match self {
            Tier::Cloud => (Cpu::from_cores(64), Bytes::new(128 << 30)),
            Tier::Two => (Cpu::from_cores(16), Bytes::new(32 << 30)),
            Tier::Three => (Cpu::from_cores(8), Bytes::new(16 << 30)),
            Tier::Edge => {
                let cores = rng.random_range(2..=4u64);
                (Cpu::from_cores(cores), Bytes::new((cores * 2) << 30))
            }
        }
    }
    /// GIRAFF's testbed parameters: edge AA~U(0,0.3), BB~U(0.3,0.6), electricity 1.0;
    /// tier 3 AA~U(0,0.1), BB~U(0.2,0.4), 0.95; tier 2 and cloud AA=0.01, BB=0.1, 0.9.
    fn pricing(self, rng: &mut StdRng) -> toml::Table {
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        let (aa, bb, electricity) = match self {
            Tier::Cloud | Tier::Two => (0.01, 0.1, 0.9),
            Tier::Three => (
                round(rng.random_range(0.0..0.1)),
                round(rng.random_range(0.2..0.4)),
                0.95,
            ),
            Tier::Edge => (
                round(rng.random_range(0.0..0.3)),
                round(rng.random_range(0.3..0.6)),
                1.0,
            ),
        };
        let mut t = toml::Table::new();
        t.insert("model".into(), toml::Value::String("quadratic".into()));
        t.insert("aa".into(), toml::Value::Float(aa));
        t.insert("bb".into(), toml::Value::Float(bb));
        t.insert("electricity".into(), toml::Value::Float(electricity));
        t
    }
}

impl NodeSpec {
    /// Serializes this node back to a `[[node]]` table (used to save generated topologies).
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("name".into(), self.name.clone().into());
        t.insert("owner".into(), self.owner.clone().into());
        t.insert(
            "tags".into(),
            toml::Value::Array(self.tags.iter().cloned().map(toml::Value::from).collect()),
        );
        if let Some(p) = &self.parent {
            t.insert("parent".into(), p.clone().into());
        }
        if let Some(l) = self.latency {
            t.insert("latency".into(), l.to_string().into());
        }
        if let Some(r) = self.rate {
            t.insert("rate".into(), r.to_string().into());
        }
        if let Some(l) = self.loss {
            t.insert("loss".into(), toml::Value::Float(l.percent()));
        }
        t.insert("cpu".into(), self.cpu.to_string().into());
        t.insert("memory".into(), self.memory.to_string().into());
        t.insert("strategy".into(), self.strategy.clone().into());
        t.insert("pricing".into(), toml::Value::Table(self.pricing.clone()));
        if let Some(c) = &self.chaos {
            t.insert("chaos".into(), toml::Value::Table(c.clone()));
        }
        if let Some(n) = self.max_auctions_in_flight {
            t.insert(
                "max_auctions_in_flight".into(),
                toml::Value::Integer(n as i64),
            );
        }
        if let Some(o) = &self.offload {
            t.insert("offload".into(), toml::Value::Table(o.clone()));
        }
        if let Some(n) = self.http_workers {
            t.insert("http_workers".into(), toml::Value::Integer(n as i64));
        }
        t
    }
}

impl Topology {
    /// The topology as a topology file's text; parsing it gives the same topology.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        let mut m = toml::Table::new();
        m.insert(
            "auction_rule".into(),
            self.marketplace.auction_rule.clone().into(),
        );
        m.insert(
            "auction_timeout_ms".into(),
            toml::Value::Integer(self.marketplace.auction_timeout_ms as i64),
        );
        if let Some(h) = self.marketplace.heartbeat_interval_ms {
            m.insert(
                "heartbeat_interval_ms".into(),
                toml::Value::Integer(h as i64),
            );
        }
        let mut root = toml::Table::new();
        root.insert("marketplace".into(), toml::Value::Table(m));
        root.insert(
            "node".into(),
            toml::Value::Array(
                self.nodes
                    .iter()
                    .map(|n| toml::Value::Table(n.to_toml()))
                    .collect(),
            ),
        );
        toml::to_string(&root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[marketplace]
auction_rule = "vickrey"
auction_timeout_ms = 1500

[[node]]
name = "cloud"
owner = "cloud-co"
tags = ["cloud"]
cpu = "16 cpu"
memory = "32 GiB"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "regional-1"
parent = "cloud"
latency = "15 ms"
owner = "metro-net"
cpu = "8 cpu"
memory = "16 GiB"
pricing = { model = "quadratic", aa = 0.05, bb = 0.3, electricity = 0.95 }

[[node]]
name = "edge-1"
parent = "regional-1"
latency = "5 ms"
owner = "alice"
tags = ["edge"]
cpu = "2 cpu"
memory = "4 GiB"
strategy = "edge_first"
pricing = { model = "linear", price_cpu = 1.0, price_memory = 0.5 }
chaos = { bid_delay = "10 s" }
"#;

    #[test]
    fn rates_parse_in_decimal_units_and_print_back_the_same() {
        for (text, bps, shown) in [
            ("1 Gbit", 1_000_000_000, "1 Gbit"),
            ("500 Mbit", 500_000_000, "500 Mbit"),
            ("10 Mbit", 10_000_000, "10 Mbit"),
            ("1gbit", 1_000_000_000, "1 Gbit"),
            ("1.5 Gbit", 1_500_000_000, "1500 Mbit"),
            ("100 Mbit/s", 100_000_000, "100 Mbit"),
            ("100 Mbps", 100_000_000, "100 Mbit"),
            ("64 kbit", 64_000, "64 Kbit"),
            ("9600 bit", 9_600, "9600 bit"),
        ] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.bits_per_second(), bps, "{text}");
            assert_eq!(rate.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Rate>().unwrap(), rate, "{text}");
        }
        for bad in [
            "",
            "fast",
            "10",
            "10 MB",
            "0 Mbit",
            "-5 Mbit",
            "0.5 bit",
            "1.2.3 Mbit",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn a_loss_is_a_percentage_from_zero_up_to_but_not_including_one_hundred() {
        for ok in [0.0, 0.5, 10.0, 99.9] {
            assert_eq!(LossPercent::new(ok).unwrap().percent(), ok);
        }
        for bad in [-0.1, 100.0, 250.0, f64::NAN, f64::INFINITY] {
            assert!(LossPercent::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_link_may_carry_a_rate_and_a_loss_that_round_trip_through_the_file_form() {
        let t = replace(
            "latency = \"5 ms\"\n",
            "latency = \"5 ms\"\nrate = \"10 Mbit\"\nloss = 2.5\n",
        )
        .unwrap();
        let edge = t.node("edge-1").unwrap();
        assert_eq!(edge.rate, Rate::from_mbit(10));
        assert_eq!(edge.loss.map(LossPercent::percent), Some(2.5));
        let regional = t.node("regional-1").unwrap();
        assert_eq!((regional.rate, regional.loss), (None, None));
        assert_eq!(Topology::parse(&t.to_toml_string().unwrap()).unwrap(), t);
        // A whole number of percent is a number too.
        let t = replace("latency = \"5 ms\"\n", "latency = \"5 ms\"\nloss = 3\n").unwrap();
        assert_eq!(
            t.node("edge-1").unwrap().loss.map(LossPercent::percent),
            Some(3.0)
        );
    }

    #[test]
    fn bad_rates_and_losses_are_refused_naming_the_node_and_the_field() {
        let with = |extra: &str| {
            replace(
                "latency = \"5 ms\"\n",
                &format!("latency = \"5 ms\"\n{extra}\n"),
            )
        };
        for (extra, field) in [
            ("rate = \"fast\"", "rate"),
            ("rate = \"0 Mbit\"", "rate"),
            ("rate = 100", "rate"),
            ("rate = \"10 MB\"", "rate"),
            ("loss = 100", "loss"),
            ("loss = -1", "loss"),
            ("loss = \"2 %\"", "loss"),
        ] {
            let m = message(with(extra));
            assert!(m.contains(&format!("`edge-1`: {field}:")), "{extra}: {m}");
        }
        for field in ["rate = \"1 Gbit\"", "loss = 1"] {
            let m = message(replace(
                "name = \"cloud\"\n",
                &format!("name = \"cloud\"\n{field}\n"),
            ));
            assert!(
                m.contains("`cloud`:") && m.contains("root node has no link"),
                "{field}: {m}"
            );
        }
    }

    /// cloud -(20 ms, 1 Gbit, 1 %)- regional -(5 ms, 10 Mbit, 10 %)- edge, and a sibling edge
    /// under regional without rate or loss.
    const LINKED: &str = r#"
[[node]]
name = "cloud"
owner = "o"
cpu = "8 cpu"
memory = "8 GiB"

[[node]]
name = "regional"
parent = "cloud"
latency = "20 ms"
rate = "1 Gbit"
loss = 1.0
owner = "o"
cpu = "8 cpu"
memory = "8 GiB"

[[node]]
name = "edge"
parent = "regional"
latency = "5 ms"
rate = "10 Mbit"
loss = 10.0
owner = "o"
cpu = "8 cpu"
memory = "8 GiB"

[[node]]
name = "plain-edge"
parent = "regional"
latency = "2 ms"
owner = "o"
cpu = "8 cpu"
memory = "8 GiB"
"#;

    #[test]
    fn a_path_link_sums_latency_takes_the_smallest_rate_and_compounds_losses() {
        let t = Topology::parse(LINKED).unwrap();
        let path = t.path_link("edge", "cloud").unwrap();
        assert_eq!(path.latency, Latency::from_millis(25));
        assert_eq!(path.rate, Rate::from_mbit(10));
        // 1 - 0.99 * 0.90 = 10.9 %, not 11 %.
        assert!((path.loss_percent - 10.9).abs() < 1e-9, "{path:?}");
        let back = t.path_link("cloud", "edge").unwrap();
        assert_eq!((back.latency, back.rate), (path.latency, path.rate));
        assert!((back.loss_percent - path.loss_percent).abs() < 1e-9);
        // Through the common parent only: the cloud link is not on the path.
        let siblings = t.path_link("edge", "plain-edge").unwrap();
        assert_eq!(siblings.latency, Latency::from_millis(7));
        assert_eq!(siblings.rate, Rate::from_mbit(10));
        assert!((siblings.loss_percent - 10.0).abs() < 1e-9, "{siblings:?}");
        assert_eq!(t.path_link("edge", "edge"), Some(PathLink::LOCAL));
        assert_eq!(t.path_link("edge", "nowhere"), None);
    }

    #[test]
    fn pair_links_list_every_pair_once_by_name_with_its_path_link() {
        let t = Topology::parse(LINKED).unwrap();
        let pairs = t.pair_links();
        let names: Vec<(&str, &str)> = pairs.iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(
            names,
            [
                ("cloud", "edge"),
                ("cloud", "plain-edge"),
                ("cloud", "regional"),
                ("edge", "plain-edge"),
                ("edge", "regional"),
                ("plain-edge", "regional"),
            ]
        );
        for p in &pairs {
            assert_eq!(Some(p.link), t.path_link(p.a, p.b), "{} {}", p.a, p.b);
        }
        let row = LinkRow::from(&pairs[0]);
        assert_eq!(
            (row.delay_us, row.rate_bps, row.loss_percent),
            (25_000, Some(10_000_000), 10.9)
        );
        // A forest: no pair across two trees.
        let two_roots = replace("parent = \"cloud\"\nlatency = \"15 ms\"\n", "").unwrap();
        let pairs: Vec<(&str, &str)> = two_roots.pair_links().iter().map(|p| (p.a, p.b)).collect();
        assert_eq!(pairs, [("edge-1", "regional-1")]);
    }

    #[test]
    fn nodes_of_different_trees_have_no_path() {
        let two_roots = replace("parent = \"cloud\"\nlatency = \"15 ms\"\n", "").unwrap();
        assert_eq!(two_roots.path_latency("edge-1", "cloud"), None);
        assert_eq!(
            two_roots.path_latency("edge-1", "regional-1"),
            Some(Latency::from_millis(5))
        );
    }

    fn replace(from: &str, to: &str) -> Result<Topology, TopologyError> {
        assert!(SMALL.contains(from), "test edit `{from}` not found");
        Topology::parse(&SMALL.replacen(from, to, 1))
    }

    fn message(r: Result<Topology, TopologyError>) -> String {
        r.expect_err("topology should be refused").to_string()
    }

    #[test]
    fn a_small_tree_parses_with_units_and_passthrough_tables() {
        let t = Topology::parse(SMALL).unwrap();
        assert_eq!(t.marketplace().auction_timeout_ms, 1500);
        assert_eq!(t.nodes().len(), 3);
        let edge = t.node("edge-1").unwrap();
        assert_eq!(edge.cpu, Cpu::from_cores(2));
        assert_eq!(edge.memory, Bytes::new(4 << 30));
        assert_eq!(edge.latency, Some(Latency::from_millis(5)));
        assert_eq!(edge.strategy, "edge_first");
        assert_eq!(edge.pricing["model"].as_str(), Some("linear"));
        assert_eq!(
            edge.chaos.as_ref().unwrap()["bid_delay"].as_str(),
            Some("10 s")
        );
        assert_eq!(t.node("cloud").unwrap().strategy, "auction");
        assert_eq!(t.depth("edge-1"), Some(2));
        assert_eq!(t.roots().count(), 1);
        assert_eq!(
            t.leaves().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["edge-1"]
        );
    }

    #[test]
    fn a_duplicate_name_is_refused_naming_the_node() {
        let m = message(replace("name = \"edge-1\"", "name = \"cloud\""));
        assert!(m.contains("`cloud`") && m.contains("more than one"), "{m}");
    }

    #[test]
    fn an_unknown_parent_is_refused_naming_the_node_and_the_parent() {
        let m = message(replace("parent = \"regional-1\"", "parent = \"nowhere\""));
        assert!(m.contains("`edge-1`") && m.contains("`nowhere`"), "{m}");
    }

    #[test]
    fn a_cycle_of_parents_is_refused() {
        let text = SMALL.replacen(
            "name = \"cloud\"\n",
            "name = \"cloud\"\nparent = \"edge-1\"\nlatency = \"1 ms\"\n",
            1,
        );
        let m = message(Topology::parse(&text));
        assert!(m.contains("cycle"), "{m}");
        assert!(m.contains("cloud") && m.contains("edge-1"), "{m}");
    }

    #[test]
    fn several_roots_are_allowed() {
        let text = SMALL.replacen("parent = \"cloud\"\nlatency = \"15 ms\"\n", "", 1);
        let t = Topology::parse(&text).unwrap();
        assert_eq!(t.roots().count(), 2);
    }

    #[test]
    fn bad_units_are_refused_naming_the_node_and_the_field() {
        let m = message(replace("memory = \"4 GiB\"", "memory = \"lots\""));
        assert!(m.contains("`edge-1`: memory:"), "{m}");
        let m = message(replace("cpu = \"8 cpu\"", "cpu = \"8 parsecs\""));
        assert!(m.contains("`regional-1`: cpu:"), "{m}");
        let m = message(replace("latency = \"5 ms\"", "latency = \"5 furlongs\""));
        assert!(m.contains("`edge-1`: latency:"), "{m}");
        let m = message(replace("bid_delay = \"10 s\"", "bid_delay = \"soon\""));
        assert!(m.contains("`edge-1`: chaos.bid_delay:"), "{m}");
    }

    #[test]
    fn missing_and_meaningless_fields_are_refused() {
        let m = message(replace("latency = \"5 ms\"\n", ""));
        assert!(m.contains("`edge-1`: latency: is required"), "{m}");
        let m = message(replace(
            "name = \"cloud\"\n",
            "name = \"cloud\"\nlatency = \"3 ms\"\n",
        ));
        assert!(m.contains("`cloud`: latency"), "{m}");
        let m = message(replace("owner = \"alice\"\n", ""));
        assert!(m.contains("`edge-1`: owner: is required"), "{m}");
        let m = message(replace(
            "strategy = \"edge_first\"",
            "strategy = \"greedy\"",
        ));
        assert!(
            m.contains("`edge-1`: strategy") && m.contains("edge_ward"),
            "{m}"
        );
        let m = message(replace(
            "auction_rule = \"vickrey\"",
            "auction_rule = \"dutch\"",
        ));
        assert!(m.contains("auction_rule"), "{m}");
        let m = message(replace("name = \"edge-1\"", "name = \"edge 1/x\""));
        assert!(m.contains("name"), "{m}");
        let m = message(replace("owner = \"alice\"", "owner = \"alice\"\ncpus = 3"));
        assert!(m.contains("cpus"), "{m}");
    }

    #[test]
    fn a_topology_round_trips_through_its_file_form() {
        let t = Topology::parse(SMALL).unwrap();
        let back = Topology::parse(&t.to_toml_string().unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_topology_wide_offload_table_fills_every_node_without_its_own() {
        let text = format!(
            "[offload]\nstrategy = \"recalc\"\nmax_concurrency = 4\n{}",
            SMALL.replacen(
                "chaos = { bid_delay = \"10 s\" }",
                "chaos = { bid_delay = \"10 s\" }\n\
                 offload = { strategy = \"static\", max_rates = { echo = 10, figlet = 2.5 } }",
                1,
            )
        );
        let t = Topology::parse(&text).unwrap();
        let edge = t.node("edge-1").unwrap().offload.as_ref().unwrap();
        assert_eq!(edge["strategy"].as_str(), Some("static"));
        assert!(
            edge.get("max_concurrency").is_none(),
            "own table wins whole"
        );
        assert_eq!(edge["max_rates"]["echo"].as_integer(), Some(10));
        for name in ["cloud", "regional-1"] {
            let o = t.node(name).unwrap().offload.as_ref().unwrap();
            assert_eq!(o["strategy"].as_str(), Some("recalc"), "{name}");
            assert_eq!(o["max_concurrency"].as_integer(), Some(4), "{name}");
        }
        // The file form keeps every node's table.
        let back = Topology::parse(&t.to_toml_string().unwrap()).unwrap();
        assert_eq!(back, t);
        // Without any [offload], nodes have none.
        assert!(
            Topology::parse(SMALL)
                .unwrap()
                .nodes()
                .iter()
                .all(|n| n.offload.is_none())
        );
    }

    #[test]
    fn set_offload_replaces_one_node_and_set_default_offload_fills_the_others() {
        let mut t = Topology::parse(SMALL).unwrap();
        let own: toml::Table = toml::from_str("strategy = \"lease\"\nmax_concurrency = 1").unwrap();
        t.set_offload("edge-1", own.clone()).unwrap();
        let default: toml::Table = toml::from_str("strategy = \"node_margin\"").unwrap();
        t.set_default_offload(default.clone()).unwrap();
        assert_eq!(t.node("edge-1").unwrap().offload.as_ref(), Some(&own));
        assert_eq!(t.node("cloud").unwrap().offload.as_ref(), Some(&default));
        assert_eq!(
            t.node("regional-1").unwrap().offload.as_ref(),
            Some(&default)
        );
        let m = t.set_offload("nowhere", own).unwrap_err().to_string();
        assert!(m.contains("`nowhere`"), "{m}");
        let bad: toml::Table = toml::from_str("strategy = \"greedy\"").unwrap();
        let m = t.set_offload("cloud", bad.clone()).unwrap_err().to_string();
        assert!(
            m.contains("`cloud`: offload.strategy") && m.contains("lease"),
            "{m}"
        );
        let m = t.set_default_offload(bad).unwrap_err().to_string();
        assert!(m.contains("[offload].strategy"), "{m}");
    }

    #[test]
    fn bad_offload_values_are_refused_naming_the_node_and_the_key() {
        let with = |offload: &str| {
            replace(
                "chaos = { bid_delay = \"10 s\" }",
                &format!("chaos = {{ bid_delay = \"10 s\" }}\noffload = {{ {offload} }}"),
            )
        };
        for (offload, field) in [
            ("strategy = \"greedy\"", "offload.strategy"),
            ("data_plane = \"nginx\"", "offload.data_plane"),
            ("control_interval = \"often\"", "offload.control_interval"),
            ("peer_timeout = 3", "offload.peer_timeout"),
            ("max_concurrency = -1", "offload.max_concurrency"),
            ("max_hops = \"3\"", "offload.max_hops"),
            ("max_body = \"huge\"", "offload.max_body"),
            ("hysteresis = \"wide\"", "offload.hysteresis"),
            ("max_rates = 10", "offload.max_rates"),
            ("max_rates = { echo = \"fast\" }", "offload.max_rates.echo"),
            ("max_rates = { echo = -1 }", "offload.max_rates.echo"),
        ] {
            let m = message(with(offload));
            assert!(m.contains(&format!("`edge-1`: {field}:")), "{offload}: {m}");
        }
        let ok = with(
            "strategy = \"lease\", data_plane = \"haproxy\", control_interval = \"250 ms\", \
             max_concurrency = 16, queue_timeout = \"10 s\", max_body = \"8 MB\", \
             static_local_share = 0.6, max_rates = { echo = 100 }, haproxy = { binary = \"haproxy\" }",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let m = message(Topology::parse(&format!(
            "[offload]\nqueue_capacity = \"many\"\n{SMALL}"
        )));
        assert!(m.contains("[offload].queue_capacity"), "{m}");
    }

    #[test]
    fn http_workers_pass_through_and_must_be_positive() {
        let t = replace("owner = \"alice\"", "owner = \"alice\"\nhttp_workers = 2").unwrap();
        assert_eq!(t.node("edge-1").unwrap().http_workers, Some(2));
        assert_eq!(t.node("cloud").unwrap().http_workers, None);
        assert_eq!(Topology::parse(&t.to_toml_string().unwrap()).unwrap(), t);
        let m = message(replace(
            "owner = \"alice\"",
            "owner = \"alice\"\nhttp_workers = 0",
        ));
        assert!(m.contains("`edge-1`: http_workers"), "{m}");
    }

    #[test]
    fn the_generated_benchmark_tree_has_four_tiers_and_fifty_nodes() {
        let t = Topology::generated_tree(50, 4, 7).unwrap();
        assert_eq!(t.nodes().len(), 50);
        assert_eq!(t.roots().count(), 1);
        let max_depth = t.nodes().iter().filter_map(|n| t.depth(&n.name)).max();
        assert_eq!(max_depth, Some(3));
        for n in t.nodes() {
            let depth = t.depth(&n.name).unwrap();
            let leaf = t.children(&n.name).next().is_none();
            // Only the last tier is edge, and every non-edge node has children.
            assert_eq!(leaf, depth == 3, "{} at depth {depth}", n.name);
            assert_eq!(n.tags.contains(&"edge".to_string()), depth == 3);
            if let Some(l) = n.latency {
                let ms = l.as_millis_f64();
                let range = if depth == 3 { 5.0..=10.0 } else { 15.0..=30.0 };
                assert!(range.contains(&ms), "{}: {ms} ms", n.name);
            }
            let aa = n.pricing["aa"].as_float().unwrap();
            let bb = n.pricing["bb"].as_float().unwrap();
            match depth {
                0 | 1 => assert_eq!((aa, bb), (0.01, 0.1)),
                2 => assert!((0.0..0.1).contains(&aa) && (0.2..0.4).contains(&bb)),
                _ => assert!((0.0..0.3).contains(&aa) && (0.3..0.6).contains(&bb)),
            }
        }
        let edges = t.leaves().count();
        assert!(
            edges > 25,
            "the edge should be the widest tier, got {edges}"
        );
        let owners: BTreeSet<_> = t.nodes().iter().map(|n| n.owner.as_str()).collect();
        assert!(owners.len() >= 4, "{owners:?}");
    }

    #[test]
    fn the_generator_is_deterministic_per_seed() {
        assert_eq!(
            Topology::generated_tree(20, 3, 1).unwrap(),
            Topology::generated_tree(20, 3, 1).unwrap()
        );
        assert_ne!(
            Topology::generated_tree(20, 3, 1).unwrap(),
            Topology::generated_tree(20, 3, 2).unwrap()
        );
    }

    #[test]
    fn the_generator_handles_small_and_impossible_shapes() {
        for (n, d) in [(1, 1), (2, 2), (4, 4), (5, 4), (7, 3), (200, 4), (13, 6)] {
            let t = Topology::generated_tree(n, d, 3).unwrap();
            assert_eq!(t.nodes().len(), n);
            let max_depth = t.nodes().iter().filter_map(|x| t.depth(&x.name)).max();
            assert_eq!(max_depth, Some(d - 1), "{n} nodes, depth {d}");
        }
        assert!(Topology::generated_tree(3, 4, 0).is_err());
        assert!(Topology::generated_tree(5, 0, 0).is_err());
        assert!(Topology::generated_tree(5, 1, 0).is_err());
    }
}
