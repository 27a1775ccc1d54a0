//! The configuration file of each fog node the launcher starts: typed, with the keys fog-node's
//! `Config` reads (docs/ARCHITECTURE.md), written as TOML into the run directory.
//!
//! `[links]` holds the parent's link latency under the parent's name and each child's link
//! latency under the child's name, so both ends of a link know it. The topology's `[pricing]`,
//! `[chaos]` and `[offload]` tables pass through as they are.

use crate::topology::{NodeSpec, Topology};
use model::units::{Bytes, Cpu, Latency};
use serde::{Deserialize, Serialize};
use signed_http::tls::TlsFiles;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One fog node's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub name: String,
    pub owner: String,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Always port 0: the node prints the port it bound.
    pub listen: SocketAddr,
    pub marketplace_url: String,
    pub enrollment_secret: String,
    pub state_dir: PathBuf,
    pub strategy: String,
    /// Many nodes share this machine: one HTTP worker each keeps threads near the core count,
    /// unless the topology asks for more (benchmarks of a single node's data plane).
    pub http_workers: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auctions_in_flight: Option<u64>,
    pub capacity: Capacity,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub pricing: toml::Table,
    /// One-way latency of each of the node's links, by the neighbour's name.
    pub links: BTreeMap<String, Latency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<toml::Table>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<toml::Table>,
    /// With [`LaunchOptions::emulate_links`](super::LaunchOptions::emulate_links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_emulation: Option<LinkEmulation>,
    /// With [`LaunchOptions::tls`](super::LaunchOptions::tls): the node's certificate and key,
    /// and the run's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// `[faas]`: the FaaS backend, when it is not the embedded gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faas: Option<toml::Table>,
}

/// `[capacity]`: what the node offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu: Cpu,
    pub memory: Bytes,
}

/// `[link_emulation]`: the one-way latency of the overlay path to every other node of the tree,
/// by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkEmulation {
    pub one_way: BTreeMap<String, Latency>,
}

impl LinkEmulation {
    /// The paths from `node` to every other node of `topology`.
    pub fn of(topology: &Topology, node: &NodeSpec) -> LinkEmulation {
        let one_way = topology
            .nodes()
            .iter()
            .filter(|other| other.name != node.name)
            .filter_map(|other| {
                let latency = topology.path_latency(&node.name, &other.name)?;
                Some((other.name.clone(), latency))
            })
            .collect();
        LinkEmulation { one_way }
    }
}

impl NodeConfig {
    /// The configuration of `node` enrolling with `marketplace_url`, keeping its state in
    /// `state_dir`; no link emulation and no TLS.
    pub fn of(
        topology: &Topology,
        node: &NodeSpec,
        marketplace_url: &str,
        enrollment_secret: &str,
        state_dir: &Path,
    ) -> NodeConfig {
        let mut links: BTreeMap<String, Latency> = BTreeMap::new();
        if let (Some(p), Some(l)) = (&node.parent, node.latency) {
            links.insert(p.clone(), l);
        }
        for child in topology.children(&node.name) {
            if let Some(l) = child.latency {
                links.insert(child.name.clone(), l);
            }
        }
        NodeConfig {
            name: node.name.clone(),
            owner: node.owner.clone(),
            tags: node.tags.clone(),
            parent: node.parent.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            marketplace_url: marketplace_url.to_string(),
            enrollment_secret: enrollment_secret.to_string(),
            state_dir: state_dir.to_path_buf(),
            strategy: node.strategy.clone(),
            // A TOML integer is an i64.
            http_workers: node.http_workers.unwrap_or(1).min(i64::MAX as u64),
            max_auctions_in_flight: node.max_auctions_in_flight,
            capacity: Capacity {
                cpu: node.cpu,
                memory: node.memory,
            },
            pricing: node.pricing.clone(),
            links,
            chaos: node.chaos.clone(),
            offload: node.offload.clone(),
            link_emulation: None,
            tls: None,
            faas: None,
        }
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A three-tier tree with pricing at the root and chaos at the edge.
    pub(in crate::launcher) const TREE: &str = r#"
[[node]]
name = "cloud"
owner = "c"
cpu = "4 cpu"
memory = "4 GiB"
pricing = { model = "quadratic", aa = 0.01, bb = 0.1, electricity = 0.9 }

[[node]]
name = "r1"
owner = "m"
parent = "cloud"
latency = "15 ms"
cpu = "2 cpu"
memory = "2 GiB"

[[node]]
name = "e1"
owner = "a"
parent = "r1"
latency = "4.5 ms"
cpu = "1 cpu"
memory = "1 GiB"
chaos = { refuse_accept = true }
"#;

    fn config_of(t: &Topology, name: &str) -> NodeConfig {
        let dir = Path::new("/tmp/x");
        NodeConfig::of(t, t.node(name).unwrap(), "http://127.0.0.1:1", "s", dir)
    }

    /// The file as fog-node reads it: a TOML table.
    fn written(c: &NodeConfig) -> toml::Table {
        toml::from_str(&c.to_toml().unwrap()).unwrap()
    }

    #[test]
    fn link_emulation_lists_the_path_latency_to_every_other_node() {
        let t = Topology::parse(TREE).unwrap();
        let e1 = LinkEmulation::of(&t, t.node("e1").unwrap());
        assert_eq!(e1.one_way.len(), 2, "{e1:?}");
        assert_eq!(e1.one_way["r1"].to_string(), "4500 us");
        assert_eq!(e1.one_way["cloud"].to_string(), "19500 us");
        let cloud = LinkEmulation::of(&t, t.node("cloud").unwrap());
        assert_eq!(cloud.one_way["e1"].to_string(), "19500 us");
        assert!(!cloud.one_way.contains_key("cloud"));
        let mut c = config_of(&t, "e1");
        c.link_emulation = Some(e1);
        assert_eq!(
            written(&c)["link_emulation"]["one_way"]["cloud"].as_str(),
            Some("19500 us")
        );
    }

    #[test]
    fn both_ends_of_a_link_know_its_latency() {
        let t = Topology::parse(TREE).unwrap();
        let r1 = written(&config_of(&t, "r1"));
        let links = r1["links"].as_table().unwrap();
        assert_eq!(links["cloud"].as_str(), Some("15 ms"));
        assert_eq!(links["e1"].as_str(), Some("4500 us"));
        let cloud = written(&config_of(&t, "cloud"));
        assert_eq!(cloud["links"]["r1"].as_str(), Some("15 ms"));
        assert!(cloud.get("parent").is_none());
        let e1 = written(&config_of(&t, "e1"));
        assert_eq!(e1["links"].as_table().unwrap().len(), 1);
        assert_eq!(e1["chaos"]["refuse_accept"].as_bool(), Some(true));
    }

    #[test]
    fn a_node_config_has_every_contract_field() {
        let t = Topology::parse(TREE).unwrap();
        let config = NodeConfig::of(
            &t,
            t.node("cloud").unwrap(),
            "http://127.0.0.1:9",
            "secret",
            Path::new("/tmp/state"),
        );
        let c = written(&config);
        assert_eq!(c["name"].as_str(), Some("cloud"));
        assert_eq!(c["owner"].as_str(), Some("c"));
        assert_eq!(c["listen"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(c["marketplace_url"].as_str(), Some("http://127.0.0.1:9"));
        assert_eq!(c["enrollment_secret"].as_str(), Some("secret"));
        assert_eq!(c["state_dir"].as_str(), Some("/tmp/state"));
        assert_eq!(c["strategy"].as_str(), Some("auction"));
        assert_eq!(c["http_workers"].as_integer(), Some(1));
        assert_eq!(c["capacity"]["cpu"].as_str(), Some("4 cpu"));
        assert_eq!(c["capacity"]["memory"].as_str(), Some("4 GiB"));
        assert_eq!(c["pricing"]["model"].as_str(), Some("quadratic"));
        for absent in ["chaos", "offload", "link_emulation", "tls", "parent"] {
            assert!(c.get(absent).is_none(), "{absent}");
        }
        // The written text parses back to the same configuration.
        let back: NodeConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn offload_and_http_workers_reach_the_node_config() {
        let mut t = Topology::parse(TREE).unwrap();
        let offload: toml::Table =
            toml::from_str("strategy = \"recalc\"\nmax_rates = { echo = 10 }").unwrap();
        t.set_offload("r1", offload.clone()).unwrap();
        t.set_http_workers("r1", 2).unwrap();
        let r1 = written(&config_of(&t, "r1"));
        assert_eq!(r1["offload"].as_table(), Some(&offload));
        assert_eq!(r1["http_workers"].as_integer(), Some(2));
        let e1 = written(&config_of(&t, "e1"));
        assert!(e1.get("offload").is_none());
        assert_eq!(e1["http_workers"].as_integer(), Some(1));
    }

    #[test]
    fn a_tls_section_names_the_certificate_key_and_ca_files() {
        let t = Topology::parse(TREE).unwrap();
        let mut c = config_of(&t, "e1");
        c.tls = Some(TlsFiles {
            cert: Some("/run/tls/node-e1.pem".into()),
            key: Some("/run/tls/node-e1.key".into()),
            ca: Some("/run/tls/ca.pem".into()),
        });
        let tls = written(&c)["tls"].as_table().unwrap().clone();
        assert_eq!(tls["cert"].as_str(), Some("/run/tls/node-e1.pem"));
        assert_eq!(tls["key"].as_str(), Some("/run/tls/node-e1.key"));
        assert_eq!(tls["ca"].as_str(), Some("/run/tls/ca.pem"));
    }
}
