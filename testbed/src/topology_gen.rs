//! GIRAFF-like topologies: a seeded random 4-tier fog tree, written as a topology file
//! (`testbed topology generate --giraff --size-multiplier M --seed S`).
//!
//! The generator is pure and lives in [`model::topology::giraff`] (tiers, links, prices and the
//! choices made are documented there); it is re-exported here so that
//! `testbed::topology_gen::...` paths keep working. Writing the text to a file is `testbed`'s.

pub use model::topology::giraff::*;

/// The shipped GIRAFF-like files (`testbed/topologies/giraff-*.toml`) are what their commands
/// generate, byte for byte.
#[cfg(test)]
mod tests {
    use super::*;

    fn generate(size_multiplier: u32, seed: u64) -> Generated {
        giraff(GiraffOptions {
            size_multiplier,
            seed,
        })
        .unwrap()
    }

    #[test]
    fn the_shipped_giraff_topologies_are_what_their_commands_generate() {
        for (file, m, nodes) in [
            (include_str!("../topologies/giraff-small.toml"), 1, None),
            (include_str!("../topologies/giraff-663.toml"), 55, Some(663)),
        ] {
            let seed: u64 = file
                .split("--seed ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .expect("the header names the seed");
            let g = generate(m, seed);
            assert_eq!(g.text, file, "M = {m}, seed {seed}");
            if let Some(nodes) = nodes {
                assert_eq!(g.topology.nodes().len(), nodes);
            }
        }
    }
}
