//! Node configuration: a TOML file, every field overridable by `FOG_NODE_<FIELD>` environment
//! variables (nested with `__`, e.g. `FOG_NODE_CAPACITY__CPU="8 cpu"`). Every field has a
//! documented default; [`Config::load`] reports the field and the reason for bad values.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use model::FieldError;
use model::pricing::PricingConfig;
use model::protocol::Resources;
use model::strategy::Strategy;
use model::units::{Bytes, Cpu, Latency};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod offload;
pub use offload::{DataPlane, HaproxyConfig, OffloadConfig, catalog_name};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unique name of the node in the federation; neighbours and `targetNode` refer to it.
    pub name: String,
    /// The party that owns the node (and is paid for its work).
    pub owner: String,
    /// Free-form tags; `cloud` marks a cloud node for the `cloud_only` strategy.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Name of the overlay parent; absent for a root node.
    #[serde(default)]
    pub parent: Option<String>,
    /// Address to bind; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// URL others use to reach this node; default `http://<bound address>`.
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// The marketplace this node enrolls with.
    pub marketplace_url: String,
    /// Shared secret configured on the marketplace; proves the node may enroll.
    pub enrollment_secret: String,
    /// Where the node keeps its id and reservations across restarts; none = in memory only.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    pub capacity: CapacityConfig,
    /// Placement strategy, see `model::strategy`.
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub pricing: PricingConfig,
    #[serde(default)]
    pub latency: LatencyConfig,
    /// Configured one-way latency to neighbours, by neighbour name. Used instead of the
    /// measured latency when several nodes share one machine.
    #[serde(default)]
    pub links: BTreeMap<String, Latency>,
    /// Auctions this node works on at once; more are refused as `busy` (GIRAFF's limiter).
    #[serde(default = "default_in_flight")]
    pub max_auctions_in_flight: usize,
    /// How long a hold outlives the auction deadline, waiting for the marketplace's accept.
    #[serde(default = "default_hold_grace")]
    pub hold_grace: Latency,
    /// HTTP worker threads; default: the machine's cores, at most 4. Use 1 when many nodes
    /// share one machine (the local launcher does).
    #[serde(default)]
    pub http_workers: Option<usize>,
    /// Where winning placements are deployed.
    #[serde(default)]
    pub faas: FaasConfig,
    #[serde(default)]
    pub chaos: ChaosConfig,
    /// Run-time invocation routing and offloading between nodes hosting the same function.
    #[serde(default)]
    pub offload: OffloadConfig,
    /// In-process emulation of the network between nodes sharing one machine.
    #[serde(default)]
    pub link_emulation: LinkEmulationConfig,
    /// TLS of this node's server (`cert`, `key`) and the CA it trusts calling others (`ca`).
    #[serde(default)]
    pub tls: signed_http::tls::TlsFiles,
    /// Largest answer the node reads from the marketplace or a peer, in bytes.
    #[serde(default = "default_max_answer")]
    pub max_answer_bytes: usize,
}

fn default_max_answer() -> usize {
    signed_http::DEFAULT_MAX_ANSWER
}

/// `[link_emulation]`: when several nodes share one machine, the network between them is
/// emulated in process. A request from another node is held for the one-way latency of the
/// path before it is handled, and its response again before it leaves, so every round trip
/// between nodes (bid relay, control exchanges, forwarded invocations, latency probes) takes
/// what it would on the configured network. Measured latencies then replace `[links]`. Leave
/// it empty on a real network (or one shaped with `tc netem`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEmulationConfig {
    /// One-way latency of the overlay path to each other node, by node name. Requests from
    /// nodes not listed are not delayed.
    #[serde(default)]
    pub one_way: BTreeMap<String, Latency>,
}

/// The longest one-way latency `[link_emulation]` accepts.
pub const MAX_EMULATED_LATENCY: Duration = Duration::from_secs(10);

impl LinkEmulationConfig {
    pub fn enabled(&self) -> bool {
        !self.one_way.is_empty()
    }

    fn validate(&self, own_name: &str) -> Result<(), FieldError> {
        for (name, latency) in &self.one_way {
            let field = format!("link_emulation.one_way.{name}");
            if name == own_name {
                return Err(FieldError::new(
                    field,
                    "is this node's own name; a node has no path to itself",
                ));
            }
            if latency.as_duration() > MAX_EMULATED_LATENCY {
                return Err(FieldError::new(field, "must be at most 10 s"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    pub cpu: Cpu,
    pub memory: Bytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Interval of the HTTP round-trip probes to every neighbour.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Latency,
    /// Feasibility uses `median + sigma_margin * sigma` of the accumulated path latency.
    #[serde(default = "default_sigma_margin")]
    pub sigma_margin: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            probe_interval: default_probe_interval(),
            sigma_margin: default_sigma_margin(),
        }
    }
}

/// Which OpenFaaS gateway hosts this node's functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaasBackend {
    /// The node starts the embedded OpenFaaS-compatible gateway itself (on first use), which
    /// runs functions as local processes: zero set-up.
    #[default]
    Embedded,
    /// A real OpenFaaS gateway (faas-netes, faasd) at `gateway_url`.
    Openfaas,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaasConfig {
    #[serde(default)]
    pub backend: FaasBackend,
    /// The OpenFaaS gateway, for `backend = "openfaas"`.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Basic-auth user of the gateway's `/system/*` API (OpenFaaS: `admin`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password; prefer the env override `FOG_NODE_FAAS__PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
    /// How long a deployed function may take to become ready before it is rolled back.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout: Latency,
    /// Embedded gateway: the directory holding the `fn-<name>` executables; default: next to
    /// the `fog-node` binary.
    #[serde(default)]
    pub catalog_dir: Option<PathBuf>,
}

impl Default for FaasConfig {
    fn default() -> Self {
        Self {
            backend: FaasBackend::default(),
            gateway_url: None,
            username: None,
            password: None,
            ready_timeout: default_ready_timeout(),
            catalog_dir: None,
        }
    }
}

fn default_ready_timeout() -> Latency {
    Latency::from_millis(30_000)
}

/// Fault injection for experiments and tests. Everything is off by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// Answer 409 to every accept, so the marketplace must fall back to the next bid.
    #[serde(default)]
    pub refuse_accept: bool,
    /// Delay every bid answer by this much (slow subtree).
    #[serde(default)]
    pub bid_delay: Latency,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_in_flight() -> usize {
    64
}
fn default_hold_grace() -> Latency {
    Latency::from_millis(5000)
}
fn default_probe_interval() -> Latency {
    Latency::from_millis(2000)
}
fn default_sigma_margin() -> f64 {
    1.0
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config: {0}")]
    Invalid(#[from] FieldError),
}

impl Config {
    /// How the node's HTTP client is built: the answer cap and the CA to trust.
    pub fn client_options(&self) -> Result<signed_http::ClientOptions, signed_http::tls::TlsError> {
        self.tls.client_options(self.max_answer_bytes)
    }

    /// Reads `path` (TOML) and applies `FOG_NODE_*` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text)
    }

    /// Parses TOML text and applies `FOG_NODE_*` environment overrides.
    pub fn from_toml_with_env(text: &str) -> Result<Config, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::string(text))
            // FOG_NODE_CONFIG names the file (fog-node --config); it is not a field.
            .merge(Env::prefixed("FOG_NODE_").ignore(&["CONFIG"]).split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text alone (tests, launchers).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::new()
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.trim().is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        if self.owner.trim().is_empty() {
            return Err(FieldError::new("owner", "must not be empty"));
        }
        if self.parent.as_deref() == Some(self.name.as_str()) {
            return Err(FieldError::new("parent", "a node cannot be its own parent"));
        }
        if !(self.marketplace_url.starts_with("http://")
            || self.marketplace_url.starts_with("https://"))
        {
            return Err(FieldError::new(
                "marketplace_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.enrollment_secret.is_empty() {
            return Err(FieldError::new("enrollment_secret", "must not be empty"));
        }
        if self.capacity.cpu == Cpu::ZERO {
            return Err(FieldError::new("capacity.cpu", "must be more than 0"));
        }
        if self.capacity.memory == Bytes::ZERO {
            return Err(FieldError::new("capacity.memory", "must be more than 0"));
        }
        if self.max_auctions_in_flight == 0 {
            return Err(FieldError::new(
                "max_auctions_in_flight",
                "must be at least 1",
            ));
        }
        if self.latency.probe_interval.as_duration() < Duration::from_millis(10) {
            return Err(FieldError::new(
                "latency.probe_interval",
                "must be at least 10 ms",
            ));
        }
        if !(self.latency.sigma_margin.is_finite() && self.latency.sigma_margin >= 0.0) {
            return Err(FieldError::new(
                "latency.sigma_margin",
                "must be a finite number >= 0",
            ));
        }
        if self.faas.backend == FaasBackend::Openfaas {
            match &self.faas.gateway_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                _ => {
                    return Err(FieldError::new(
                        "faas.gateway_url",
                        "is required for backend = \"openfaas\" and must be an http(s) URL",
                    ));
                }
            }
        }
        if self.faas.username.is_some() != self.faas.password.is_some() {
            return Err(FieldError::new(
                "faas.password",
                "faas.username and faas.password go together",
            ));
        }
        if self.http_workers == Some(0) {
            return Err(FieldError::new("http_workers", "must be at least 1"));
        }
        self.pricing.validate()?;
        self.offload.validate()?;
        self.link_emulation.validate(&self.name)?;
        Ok(())
    }

    pub fn capacity(&self) -> Resources {
        Resources::new(self.capacity.cpu, self.capacity.memory)
    }

    pub fn workers(&self) -> usize {
        self.http_workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(1)
        })
    }

    pub fn is_cloud(&self) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case("cloud"))
    }
}

/// The smallest valid node configuration, for the unit tests of every module.
#[cfg(test)]
pub(crate) const MINIMAL_TEST_CONFIG: &str = r#"
    name = "edge-1"
    owner = "alice"
    marketplace_url = "http://127.0.0.1:8000"
    enrollment_secret = "s3cret"
    capacity = { cpu = "4 cpu", memory = "8 GiB" }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = MINIMAL_TEST_CONFIG;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail returns figment's own error
    fn the_variable_naming_the_config_file_is_not_read_as_a_field() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FOG_NODE_CONFIG", "/etc/fogmarket/fog-node.toml");
            jail.set_env("FOG_NODE_OWNER", "owner-from-env");
            let c = Config::from_toml_with_env(MINIMAL).map_err(|e| e.to_string())?;
            assert_eq!(c.owner, "owner-from-env");
            Ok(())
        });
    }

    #[test]
    fn a_minimal_config_gets_documented_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.strategy, Strategy::Auction);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.capacity.cpu, Cpu::from_cores(4));
        assert_eq!(c.max_auctions_in_flight, 64);
        assert!(!c.chaos.refuse_accept);
    }

    #[test]
    fn a_full_config_parses_strategy_pricing_and_links() {
        let text = format!(
            "{MINIMAL}\nstrategy = \"edge_ward\"\n[pricing]\nmodel = \"linear\"\nprice_cpu = 2.0\nprice_memory = 1.0\n[links]\n\"regional-1\" = \"10 ms\"\n"
        );
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.strategy, Strategy::EdgeWard);
        assert_eq!(c.links["regional-1"], Latency::from_millis(10));
    }

    #[test]
    fn link_emulation_is_off_by_default_and_parses_paths_by_name() {
        assert!(!Config::from_toml(MINIMAL).unwrap().link_emulation.enabled());
        let text = format!(
            "{MINIMAL}\n[link_emulation.one_way]\ncloud = \"12 ms\"\n\"edge-2\" = \"0.03 s\"\n"
        );
        let c = Config::from_toml(&text).unwrap().link_emulation;
        assert!(c.enabled());
        assert_eq!(c.one_way["cloud"], Latency::from_millis(12));
        assert_eq!(c.one_way["edge-2"], Latency::from_millis(30));
    }

    #[test]
    fn link_emulation_rejects_a_path_to_itself_and_absurd_latencies() {
        let own = format!("{MINIMAL}\n[link_emulation.one_way]\n\"edge-1\" = \"5 ms\"\n");
        let err = Config::from_toml(&own).unwrap_err().to_string();
        assert!(err.contains("link_emulation.one_way.edge-1"), "{err}");
        let slow = format!("{MINIMAL}\n[link_emulation.one_way]\ncloud = \"11 s\"\n");
        let err = Config::from_toml(&slow).unwrap_err().to_string();
        assert!(err.contains("link_emulation.one_way.cloud"), "{err}");
        assert!(err.contains("at most 10 s"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad_cpu = MINIMAL.replace("\"4 cpu\"", "\"four\"");
        let err = Config::from_toml(&bad_cpu).unwrap_err().to_string();
        assert!(err.contains("cpu"), "{err}");
        let zero = MINIMAL.replace("\"4 cpu\"", "\"0 m\"");
        let err = Config::from_toml(&zero).unwrap_err().to_string();
        assert!(err.contains("capacity.cpu"), "{err}");
        let typo = format!("{MINIMAL}\nstrategyy = \"auction\"\n");
        let err = Config::from_toml(&typo).unwrap_err().to_string();
        assert!(err.contains("strategyy"), "{err}");
        let bad_strategy = format!("{MINIMAL}\nstrategy = \"cheapest\"\n");
        assert!(Config::from_toml(&bad_strategy).is_err());
    }

    #[test]
    fn offload_defaults_match_the_contract_table() {
        use model::offload::{OffloadStrategy, Params};
        let c = Config::from_toml(MINIMAL).unwrap().offload;
        assert_eq!(c.strategy, OffloadStrategy::Lease);
        assert_eq!(c.data_plane, DataPlane::Native);
        assert_eq!(c.control_interval, Latency::from_millis(250));
        assert_eq!(c.peer_timeout, Latency::from_millis(1500));
        assert_eq!(c.max_hops, 3);
        assert_eq!(c.max_concurrency, 16);
        assert_eq!(c.queue_capacity, 256);
        assert_eq!(c.queue_timeout, Latency::from_millis(10_000));
        assert_eq!(c.forward_timeout, Latency::from_millis(30_000));
        assert_eq!(c.max_body, Bytes::new(8_000_000));
        assert!(c.max_rates.is_empty());
        assert_eq!(c.params(), Params::default());
        assert_eq!(c.haproxy.binary, "haproxy");
    }

    #[test]
    fn an_offload_section_parses_units_strategy_names_rates_and_haproxy() {
        use model::offload::OffloadStrategy;
        let text = format!(
            "{MINIMAL}\n[offload]\nstrategy = \"node-margin\"\ndata_plane = \"haproxy\"\n\
             control_interval = \"100 ms\"\nmax_body = \"1 KB\"\nhysteresis = 0.1\n\
             [offload.max_rates]\necho = 25\n\"fogfn-x\" = 2.5\n\
             [offload.haproxy]\nbinary = \"/usr/sbin/haproxy\"\nsocket = \"/run/h.sock\"\n\
             listen = \"127.0.0.1:8081\"\n"
        );
        let c = Config::from_toml(&text).unwrap().offload;
        assert_eq!(c.strategy, OffloadStrategy::NodeMargin);
        assert_eq!(c.data_plane, DataPlane::Haproxy);
        assert_eq!(c.control_interval, Latency::from_millis(100));
        assert_eq!(c.max_body_bytes(), 1000);
        assert_eq!(c.max_rates["echo"], 25.0);
        assert_eq!(c.params().hysteresis, 0.1);
        assert_eq!(c.haproxy.listen.as_deref(), Some("127.0.0.1:8081"));
    }

    #[test]
    fn bad_offload_values_name_their_field_and_reason() {
        let cases = [
            ("strategy = \"fastest\"", "strategy", "node_margin"),
            ("data_plane = \"envoy\"", "data_plane", "native"),
            (
                "control_interval = \"soon\"",
                "control_interval",
                "duration",
            ),
            (
                "control_interval = \"1 ms\"",
                "offload.control_interval",
                "10 ms",
            ),
            ("max_body = \"8 parsecs\"", "max_body", "unit"),
            (
                "max_concurrency = 0",
                "offload.max_concurrency",
                "at least 1",
            ),
            ("max_hops = 99", "offload.max_hops", "at most"),
            ("hysteresis = 2.0", "offload.hysteresis", "0.9"),
            (
                "static_local_share = -1.0",
                "offload.static_local_share",
                "between",
            ),
            ("usage_low = 90.0", "offload.usage_low", "usage_high"),
            ("max_rates = { echo = -3 }", "offload.max_rates.echo", "> 0"),
            ("max_rate = 3", "max_rate", "unknown field"),
            ("haproxy = { bin = \"x\" }", "bin", "unknown field"),
        ];
        for (line, field, reason) in cases {
            let text = format!("{MINIMAL}\n[offload]\n{line}\n");
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{line}: {err}");
            assert!(err.contains(reason), "{line}: {err}");
        }
    }
}
