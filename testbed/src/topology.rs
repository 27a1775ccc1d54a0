//! Topology files: a whole federation (marketplace settings and a tree of fog nodes) in one TOML
//! file. Parsing, validation, paths and links and the generators are pure and live in
//! [`model::topology`], re-exported here so that `testbed::topology::...` paths keep working;
//! this module adds reading a file ([`TopologyFileExt::from_file`]), the one part that does I/O.

pub use model::topology::*;

use std::path::Path;

/// Reading a topology file from disk, which `model` (no I/O) leaves to its callers. In scope,
/// `Topology::from_file(path)` reads like an inherent method.
pub trait TopologyFileExt: Sized {
    /// Reads and validates a topology file.
    fn from_file(path: impl AsRef<Path>) -> Result<Self, TopologyError>;
}

impl TopologyFileExt for Topology {
    fn from_file(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Topology::parse(&text)
    }
}

/// The shipped topology files (`testbed/topologies/`): they belong to this crate, so their
/// checks stay here; the parser's own tests are in `model::topology`.
#[cfg(test)]
mod tests {
    use super::*;
    use model::units::Latency;
    use std::collections::BTreeSet;

    #[test]
    fn a_path_latency_sums_the_links_through_the_closest_common_ancestor() {
        let t = Topology::parse(include_str!("../topologies/local.toml")).unwrap();
        let ms = |a: &str, b: &str| t.path_latency(a, b).map(|l| l.as_millis_f64());
        // Siblings: up 4 ms to regional-north, down 6 ms.
        assert_eq!(ms("edge-factory", "edge-campus"), Some(10.0));
        // Across the root: 4 + 12 up, 18 + 8 down.
        assert_eq!(ms("edge-factory", "edge-farm"), Some(42.0));
        assert_eq!(ms("edge-farm", "edge-factory"), Some(42.0));
        // An ancestor, either way round.
        assert_eq!(ms("cloud", "edge-harbour"), Some(21.0));
        assert_eq!(ms("edge-harbour", "cloud"), Some(21.0));
        assert_eq!(ms("cloud", "cloud"), Some(0.0));
        assert_eq!(ms("cloud", "nowhere"), None);
    }

    #[test]
    fn links_without_rate_or_loss_make_an_unlimited_lossless_path() {
        let t = Topology::parse(include_str!("../topologies/local.toml")).unwrap();
        let path = t.path_link("edge-factory", "edge-farm").unwrap();
        assert_eq!(path.latency, Latency::from_millis(42));
        assert_eq!(path.rate, None);
        assert_eq!(path.loss_percent, 0.0);
    }

    #[test]
    fn the_shipped_local_topology_is_valid_and_spans_three_tiers_and_four_owners() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/local.toml");
        let t = Topology::from_file(path).unwrap();
        assert!(t.nodes().len() >= 7);
        let max_depth = t.nodes().iter().filter_map(|n| t.depth(&n.name)).max();
        assert_eq!(max_depth, Some(2));
        let owners: BTreeSet<_> = t.nodes().iter().map(|n| n.owner.as_str()).collect();
        assert!(owners.len() >= 4, "{owners:?}");
        for n in t.nodes() {
            if let Some(l) = n.latency {
                let ms = l.as_millis_f64();
                let range = match t.depth(&n.name) {
                    Some(1) => 10.0..=20.0,
                    _ => 3.0..=8.0,
                };
                assert!(range.contains(&ms), "{}: {ms} ms", n.name);
            }
        }
    }
}
