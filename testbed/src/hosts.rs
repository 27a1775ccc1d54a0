//! Configuration files for a federation whose members run on hosts of their own (Grid'5000
//! machines or VMs, the network namespaces of `just enos-local`): every fog node listens on its
//! host's address at one fixed port, and the deployment package `testbed/enos` copies the files
//! it gets from here (`testbed hosts-config`) to the hosts. The fog node's configuration is the
//! launcher's [`NodeConfig`], so a node on a host reads the same file as a node of `just run`.

use crate::launcher::{LinkEmulation, NodeConfig};
use crate::topology::Topology;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where each member of the federation runs: the deployment's inventory as this module reads it
/// (`hosts.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The marketplace's URL as the fog nodes reach it.
    pub marketplace_url: String,
    /// Each fog node's host address, by node name.
    pub nodes: BTreeMap<String, IpAddr>,
}

/// How the files are written.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// The port every fog node listens on, on its host's address.
    pub port: u16,
    /// The node's state directory on its host.
    pub state_dir: PathBuf,
    /// Emulate the topology's latencies in process (no real link shaping on the hosts).
    pub emulate_links: bool,
    /// The enrollment secret every node presents.
    pub enrollment_secret: String,
    /// `Some(url)`: a real OpenFaaS gateway on each host at `url`, with basic-auth user `admin`
    /// (the password reaches the node through `FOG_NODE_FAAS__PASSWORD`).
    pub openfaas_gateway_url: Option<String>,
}

/// Why the files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("hosts file: node `{0}` of the topology has no address")]
    MissingNode(String),
    #[error("hosts file: node `{0}` is not in the topology")]
    UnknownNode(String),
    #[error("node `{node}`: cannot write its configuration: {reason}")]
    Config { node: String, reason: String },
}

/// Each fog node's configuration file text, by node name.
pub fn node_configs(
    topology: &Topology,
    inventory: &Inventory,
    settings: &HostSettings,
) -> Result<BTreeMap<String, String>, HostsError> {
    if let Some(unknown) = inventory
        .nodes
        .keys()
        .find(|name| topology.node(name).is_none())
    {
        return Err(HostsError::UnknownNode(unknown.clone()));
    }
    let mut files = BTreeMap::new();
    for spec in topology.nodes() {
        let address = inventory
            .nodes
            .get(&spec.name)
            .ok_or_else(|| HostsError::MissingNode(spec.name.clone()))?;
        let mut config = NodeConfig::of(
            topology,
            spec,
            &inventory.marketplace_url,
            &settings.enrollment_secret,
            &settings.state_dir,
        );
        config.listen = SocketAddr::new(*address, settings.port);
        if settings.emulate_links {
            config.link_emulation = Some(LinkEmulation::of(topology, spec));
        }
        if let Some(url) = &settings.openfaas_gateway_url {
            let mut faas = toml::Table::new();
            faas.insert("backend".into(), "openfaas".into());
            faas.insert("gateway_url".into(), url.clone().into());
            faas.insert("username".into(), "admin".into());
            config.faas = Some(faas);
        }
        let text = config.to_toml().map_err(|e| HostsError::Config {
            node: spec.name.clone(),
            reason: e.to_string(),
        })?;
        files.insert(spec.name.clone(), text);
    }
    Ok(files)
}

/// Writes `<dir>/<node>.toml` for every node.
pub fn write_node_configs(dir: &Path, files: &BTreeMap<String, String>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.toml")), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = r#"
[[node]]
name = "cloud"
owner = "c"
cpu = "4 cpu"
memory = "4 GiB"

[[node]]
name = "edge"
owner = "e"
parent = "cloud"
latency = "5 ms"
cpu = "1 cpu"
memory = "1 GiB"
"#;

    fn inventory() -> Inventory {
        serde_json::from_str(
            r#"{"marketplace_url": "http://10.0.0.2:8000",
                "nodes": {"cloud": "10.0.0.3", "edge": "10.0.0.4"}}"#,
        )
        .unwrap()
    }

    fn settings() -> HostSettings {
        HostSettings {
            port: 8080,
            state_dir: "/opt/fogmarket/state".into(),
            emulate_links: true,
            enrollment_secret: "s3cret".into(),
            openfaas_gateway_url: None,
        }
    }

    fn parsed(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn each_node_listens_on_its_own_host_at_the_fixed_port() {
        let t = Topology::parse(TREE).unwrap();
        let files = node_configs(&t, &inventory(), &settings()).unwrap();
        assert_eq!(files.len(), 2);
        let edge = parsed(&files["edge"]);
        assert_eq!(edge["listen"].as_str(), Some("10.0.0.4:8080"));
        assert_eq!(
            edge["marketplace_url"].as_str(),
            Some("http://10.0.0.2:8000")
        );
        assert_eq!(edge["state_dir"].as_str(), Some("/opt/fogmarket/state"));
        assert_eq!(
            edge["link_emulation"]["one_way"]["cloud"].as_str(),
            Some("5 ms")
        );
        assert!(edge.get("faas").is_none());
        assert_eq!(
            parsed(&files["cloud"])["listen"].as_str(),
            Some("10.0.0.3:8080")
        );
    }

    #[test]
    fn real_links_turn_the_in_process_emulation_off() {
        let t = Topology::parse(TREE).unwrap();
        let mut s = settings();
        s.emulate_links = false;
        let files = node_configs(&t, &inventory(), &s).unwrap();
        assert!(parsed(&files["edge"]).get("link_emulation").is_none());
        // The auctions still know the link's latency.
        assert_eq!(
            parsed(&files["edge"])["links"]["cloud"].as_str(),
            Some("5 ms")
        );
    }

    #[test]
    fn the_openfaas_backend_names_the_gateway_and_leaves_the_password_to_the_environment() {
        let t = Topology::parse(TREE).unwrap();
        let mut s = settings();
        s.openfaas_gateway_url = Some("http://127.0.0.1:31112".into());
        let files = node_configs(&t, &inventory(), &s).unwrap();
        let faas = parsed(&files["cloud"])["faas"].as_table().unwrap().clone();
        assert_eq!(faas["backend"].as_str(), Some("openfaas"));
        assert_eq!(faas["gateway_url"].as_str(), Some("http://127.0.0.1:31112"));
        assert_eq!(faas["username"].as_str(), Some("admin"));
        assert!(faas.get("password").is_none());
    }

    #[test]
    fn a_node_without_an_address_or_an_address_without_a_node_is_refused() {
        let t = Topology::parse(TREE).unwrap();
        let mut missing = inventory();
        missing.nodes.remove("edge");
        let err = node_configs(&t, &missing, &settings()).unwrap_err();
        assert!(err.to_string().contains("`edge`"), "{err}");
        let mut extra = inventory();
        extra
            .nodes
            .insert("ghost".into(), "10.0.0.9".parse().unwrap());
        let err = node_configs(&t, &extra, &settings()).unwrap_err();
        assert!(err.to_string().contains("`ghost`"), "{err}");
    }
}
