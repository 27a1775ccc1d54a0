//! GIRAFF-like topologies: a seeded random 4-tier fog tree, written as a topology file
//! (`testbed topology generate --giraff --size-multiplier M --seed S`).
//!
//! The tiers follow GIRAFF's Grid'5000 testbed (its `testbed/definitions.py`), see [`TIERS`]:
//!
//! | tier | tag | nodes | link to parent | rate | loss | cpu / memory |
//! |---|---|---|---|---|---|---|
//! | 1 | `cloud` | 1-4 | 1-3 ms | 1 Gbit | - | 34 / 80 GiB |
//! | 2 | `tier2` | 1-3 under each tier-1 node | 15-30 ms | 500 Mbit-1 Gbit | - | 16 / 32 GiB |
//! | 3 | `tier3` | 4-8 x M in all | 15-30 ms | 100 Mbit-1 Gbit | - | 8 / 16 GiB |
//! | 4 | `edge` | 4-8 x M in all | 5-10 ms | 10 Mbit-1 Gbit | 1-10 % | 6 / 8 GiB |
//!
//! Choices where GIRAFF's shape does not fit ours:
//!
//! - **One root.** GIRAFF hangs its tier-1 nodes under a virtual `market` root; the marketplace
//!   is not a fog node here. So the first cloud node `t1-0` is the root and the other cloud
//!   nodes hang under it with tier-1 links (1-3 ms, 1 Gbit): the cloud is one well-connected
//!   provider region.
//! - **Size multiplier M.** Tier-3 and tier-4 counts are totals for the whole tree, each drawn
//!   uniformly in `4M..=8M`, so the tree grows linearly with M (about `7.5 + 12 M` nodes):
//!   M = 1 gives 10 to 32 nodes, and GIRAFF's largest experiment (663 nodes) is
//!   `--size-multiplier 55 --seed 126` (`testbed/topologies/giraff-663.toml`). A tier-3 or tier-4
//!   node's parent is drawn among the tier above: each parent gets one child while there are
//!   nodes to give, then parents are drawn uniformly, so no tier-2 (tier-3) node is left
//!   childless when the tier below is at least as wide.
//! - **Owners.** Every node has an owner of its own (`owner-<name>`), as in GIRAFF where each
//!   VM bids, earns and is compared (Jain's index) on its own.
//! - **Pricing.** GIRAFF's per-tier pricing parameters (quadratic model): cloud and tier 2
//!   `aa = 0.01, bb = 0.1, electricity = 0.9`; tier 3 `aa ~ U(0, 0.1), bb ~ U(0.2, 0.4),
//!   electricity = 0.95`; edge `aa ~ U(0, 0.3), bb ~ U(0.3, 0.6), electricity = 1.0`. As the
//!   quadratic bid scales with the share `cpu / capacity` of the node, the same one-core
//!   function costs least in the cloud and most at the edge on idle nodes, tier by tier.
//! - **Draws.** Latencies in tenths of a millisecond, rates in whole Mbit, losses in tenths of
//!   a percent, pricing parameters to 4 decimals: readable files, exact round trips.
//!
//! Names are DNS-1123 labels that spell the path from the root: `t1-0` (root), `t1-1`,
//! `t2-<cloud>-<i>`, `t3-<cloud>-<i>-<j>`, `t4-<cloud>-<i>-<j>-<k>`. The same (M, seed) gives
//! the same text with the `rand` version in `Cargo.lock` (`StdRng` is not promised stable
//! across `rand` releases: regenerate, do not rely on the seed alone, after an upgrade).
//!
//! Pure: [`giraff`] returns the file's text; writing it out is the caller's (`testbed`, which
//! re-exports this module as `testbed::topology_gen` and checks that the shipped files are what
//! their commands generate).

use super::{Topology, TopologyError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::ops::RangeInclusive;

/// Beyond this the tree has about 12,000 nodes: far more than any testbed runs.
pub const MAX_SIZE_MULTIPLIER: u32 = 1000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiraffOptions {
    /// M: tiers 3 and 4 have `4M..=8M` nodes each.
    pub size_multiplier: u32,
    pub seed: u64,
}

/// Why nothing was generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("size multiplier: {value} must be between 1 and {MAX_SIZE_MULTIPLIER}")]
    SizeMultiplier { value: u32 },
    #[error("the generated topology does not parse back: {0}")]
    Invalid(#[from] TopologyError),
}

/// How many nodes a tier has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierCount {
    /// Drawn once for the whole tree.
    Total(RangeInclusive<u32>),
    /// Drawn for each node of the tier above.
    PerParent(RangeInclusive<u32>),
    /// `4M..=8M` for the whole tree: `Total(lo * M..=hi * M)`.
    TotalTimesMultiplier(RangeInclusive<u32>),
}

/// Pricing parameters of a tier (quadratic model); `lo == hi` is a fixed value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierPricing {
    pub aa: (f64, f64),
    pub bb: (f64, f64),
    pub electricity: f64,
}

/// One row of GIRAFF's testbed table.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Tier number, 1 (cloud) to 4 (edge); also the name prefix `t<n>-`.
    pub number: u32,
    /// The node's tag.
    pub tag: &'static str,
    pub count: TierCount,
    /// One-way latency of the link to the parent, in ms (drawn in tenths of a ms).
    pub latency_ms: RangeInclusive<u32>,
    /// Rate of the link to the parent, in Mbit/s (drawn in whole Mbit).
    pub rate_mbit: RangeInclusive<u64>,
    /// Packet loss of the link to the parent, in percent (drawn in tenths); `None`: no loss.
    pub loss_percent: Option<RangeInclusive<u32>>,
    pub cores: u64,
    pub memory_gib: u64,
    pub pricing: TierPricing,
}

/// GIRAFF's four tiers, cloud first.
pub const TIERS: [Tier; 4] = [
    Tier {
        number: 1,
        tag: "cloud",
        count: TierCount::Total(1..=4),
        latency_ms: 1..=3,
        rate_mbit: 1000..=1000,
        loss_percent: None,
        cores: 34,
        memory_gib: 80,
        pricing: TierPricing {
            aa: (0.01, 0.01),
            bb: (0.1, 0.1),
            electricity: 0.9,
        },
    },
    Tier {
        number: 2,
        tag: "tier2",
        count: TierCount::PerParent(1..=3),
        latency_ms: 15..=30,
        rate_mbit: 500..=1000,
        loss_percent: None,
        cores: 16,
        memory_gib: 32,
        pricing: TierPricing {
            aa: (0.01, 0.01),
            bb: (0.1, 0.1),
            electricity: 0.9,
        },
    },
    Tier {
        number: 3,
        tag: "tier3",
        count: TierCount::TotalTimesMultiplier(4..=8),
        latency_ms: 15..=30,
        rate_mbit: 100..=1000,
        loss_percent: None,
        cores: 8,
        memory_gib: 16,
        pricing: TierPricing {
            aa: (0.0, 0.1),
            bb: (0.2, 0.4),
            electricity: 0.95,
        },
    },
    Tier {
        number: 4,
        tag: "edge",
        count: TierCount::TotalTimesMultiplier(4..=8),
        latency_ms: 5..=10,
        rate_mbit: 10..=1000,
        loss_percent: Some(1..=10),
        cores: 6,
        memory_gib: 8,
        pricing: TierPricing {
            aa: (0.0, 0.3),
            bb: (0.3, 0.6),
            electricity: 1.0,
        },
    },
];

/// A generated topology: the file's text and what it parses to.
#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    pub topology: Topology,
}

/// One node before it is written out.
struct Draft {
    name: String,
    /// Index into the drafts; `None` for the root.
    parent: Option<usize>,
    tier: &'static Tier,
    /// What follows `t<n>-` in the name; children append `-<i>` to it.
    path: String,
    children: u32,
}

/// The command that regenerates a topology (written in its header).
pub fn command(options: GiraffOptions) -> String {
    format!(
        "testbed topology generate --giraff --size-multiplier {} --seed {}",
        options.size_multiplier, options.seed
    )
}

/// A random GIRAFF-like tree (see the module documentation), as topology file text that
/// [`Topology::parse`] reads back (checked before returning).
pub fn giraff(options: GiraffOptions) -> Result<Generated, GenerateError> {
    let m = options.size_multiplier;
    if !(1..=MAX_SIZE_MULTIPLIER).contains(&m) {
        return Err(GenerateError::SizeMultiplier { value: m });
    }
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut drafts: Vec<Draft> = Vec::new();
    let mut above: Vec<usize> = Vec::new();
    for tier in &TIERS {
        let parents_of_tier = parents(tier, &above, m, &mut rng);
        let mut current = Vec::with_capacity(parents_of_tier.len());
        for parent in parents_of_tier {
            let (parent, path) = match parent {
                Some(p) => {
                    let p_draft = &mut drafts[p];
                    let path = format!("{}-{}", p_draft.path, p_draft.children);
                    p_draft.children += 1;
                    (Some(p), path)
                }
                // Tier 1: numbered; the first is the root and the others hang under it.
                None => (current.first().copied(), current.len().to_string()),
            };
            current.push(drafts.len());
            drafts.push(Draft {
                name: format!("t{}-{path}", tier.number),
                parent,
                tier,
                path,
                children: 0,
            });
        }
        above = current;
    }
    // The file lists the tiers in turn; within a tier, by the path from the root (children
    // of one parent together, in the order of their parents).
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_cached_key(|&i| {
        let d = &drafts[i];
        let path: Vec<u32> = d.path.split('-').filter_map(|n| n.parse().ok()).collect();
        (d.tier.number, path)
    });
    let text = render(options, &drafts, &order, &mut rng);
    let topology = Topology::parse(&text)?;
    Ok(Generated { text, topology })
}

/// The parent (index into the drafts) of each node of `tier`; tier 1 has no drawn parents.
fn parents(tier: &Tier, above: &[usize], m: u32, rng: &mut StdRng) -> Vec<Option<usize>> {
    let draw = |range: &RangeInclusive<u32>, rng: &mut StdRng| rng.random_range(range.clone());
    match &tier.count {
        TierCount::Total(range) => vec![None; draw(range, rng) as usize],
        TierCount::PerParent(range) => above
            .iter()
            .flat_map(|&p| {
                let n = draw(range, rng) as usize;
                std::iter::repeat_n(Some(p), n)
            })
            .collect(),
        TierCount::TotalTimesMultiplier(range) => {
            let n = draw(&(range.start() * m..=range.end() * m), rng) as usize;
            if above.is_empty() {
                return Vec::new();
            }
            (0..n)
                .map(|i| {
                    Some(if i < above.len() {
                        above[i]
                    } else {
                        above[rng.random_range(0..above.len())]
                    })
                })
                .collect()
        }
    }
}

fn render(options: GiraffOptions, drafts: &[Draft], order: &[usize], rng: &mut StdRng) -> String {
    let per_tier: Vec<String> = TIERS
        .iter()
        .map(|t| {
            let n = drafts.iter().filter(|d| d.tier.number == t.number).count();
            format!("{} {n}", t.tag)
        })
        .collect();
    let mut out = String::new();
    // The header names `testbed/src/topology_gen.rs` (which re-exports this module): the shipped
    // files carry this text byte for byte, and testbed's tests regenerate them.
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# A GIRAFF-like 4-tier fog tree of {} nodes ({}). Generated by:\n\
         #   {}\n\
         # Tiers, links and prices: testbed/src/topology_gen.rs. Regenerate rather than edit.\n\
         \n\
         [marketplace]\n\
         auction_rule = \"vickrey\"\n\
         auction_timeout_ms = 2000",
        drafts.len(),
        per_tier.join(", "),
        command(options),
    );
    for &i in order {
        let d = &drafts[i];
        let t = d.tier;
        let _ = write!(out, "\n[[node]]\nname = {}\n", quoted(&d.name));
        if let Some(p) = d.parent {
            let tenths = rng.random_range(t.latency_ms.start() * 10..=t.latency_ms.end() * 10);
            let mbit = rng.random_range(t.rate_mbit.clone());
            let _ = write!(
                out,
                "parent = {}\nlatency = \"{} ms\"\nrate = \"{}\"\n",
                quoted(&drafts[p].name),
                tenths_text(tenths),
                rate_text(mbit),
            );
            if let Some(loss) = &t.loss_percent {
                let tenths = rng.random_range(loss.start() * 10..=loss.end() * 10);
                let _ = writeln!(out, "loss = {}", float(f64::from(tenths) / 10.0));
            }
        }
        let uniform = |(lo, hi): (f64, f64), rng: &mut StdRng| {
            if lo < hi {
                (rng.random_range(lo..hi) * 10_000.0).round() / 10_000.0
            } else {
                lo
            }
        };
        let aa = uniform(t.pricing.aa, rng);
        let bb = uniform(t.pricing.bb, rng);
        let _ = write!(
            out,
            "owner = {}\ntags = [{}]\ncpu = \"{} cpu\"\nmemory = \"{} GiB\"\n\
             strategy = \"auction\"\n\
             pricing = {{ model = \"quadratic\", aa = {}, bb = {}, electricity = {} }}\n",
            quoted(&format!("owner-{}", d.name)),
            quoted(t.tag),
            t.cores,
            t.memory_gib,
            float(aa),
            float(bb),
            float(t.pricing.electricity),
        );
    }
    out
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML float (always with a decimal point, so it never reads back as an integer).
fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// 153 -> "15.3", 150 -> "15".
fn tenths_text(tenths: u32) -> String {
    if tenths.is_multiple_of(10) {
        (tenths / 10).to_string()
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

fn rate_text(mbit: u64) -> String {
    if mbit.is_multiple_of(1000) {
        format!("{} Gbit", mbit / 1000)
    } else {
        format!("{mbit} Mbit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{PricingConfig, PricingInput};
    use crate::protocol::Resources;
    use crate::topology::NodeSpec;
    use crate::units::{Bytes, Cpu};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn generate(size_multiplier: u32, seed: u64) -> Generated {
        giraff(GiraffOptions {
            size_multiplier,
            seed,
        })
        .unwrap()
    }

    fn tier_of(node: &NodeSpec) -> &'static Tier {
        TIERS
            .iter()
            .find(|t| node.tags == [t.tag])
            .unwrap_or_else(|| panic!("{}: tags {:?}", node.name, node.tags))
    }

    fn check_tiers_respect_their_ranges(g: &Generated, m: u32) {
        let t = &g.topology;
        assert_eq!(
            g.text.matches("[[node]]").count(),
            t.nodes().len(),
            "same node count"
        );
        assert_eq!(
            t.roots().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["t1-0"]
        );
        let mut per_tier: BTreeMap<u32, usize> = BTreeMap::new();
        for n in t.nodes() {
            let tier = tier_of(n);
            *per_tier.entry(tier.number).or_default() += 1;
            assert!(
                n.name.starts_with(&format!("t{}-", tier.number)),
                "{}",
                n.name
            );
            assert_eq!(n.owner, format!("owner-{}", n.name));
            assert_eq!(n.cpu, Cpu::from_cores(tier.cores), "{}", n.name);
            assert_eq!(n.memory, Bytes::new(tier.memory_gib << 30), "{}", n.name);
            let Some(parent) = n.parent.as_deref() else {
                continue;
            };
            let parent = t.node(parent).expect("every parent exists");
            let parent_tier = tier_of(parent).number;
            let expected_parent_tier = if tier.number == 1 { 1 } else { tier.number - 1 };
            assert_eq!(parent_tier, expected_parent_tier, "{}", n.name);
            let ms = n.latency.unwrap().as_millis_f64();
            let (lo, hi) = (*tier.latency_ms.start(), *tier.latency_ms.end());
            assert!(
                (f64::from(lo)..=f64::from(hi)).contains(&ms),
                "{}: {ms} ms",
                n.name
            );
            let mbit = n.rate.unwrap().bits_per_second() / 1_000_000;
            assert!(tier.rate_mbit.contains(&mbit), "{}: {mbit} Mbit", n.name);
            match (&tier.loss_percent, n.loss) {
                (None, None) => {}
                (Some(range), Some(loss)) => {
                    let range = f64::from(*range.start())..=f64::from(*range.end());
                    assert!(range.contains(&loss.percent()), "{}: {loss}", n.name);
                }
                (range, loss) => panic!("{}: loss {loss:?} for {range:?}", n.name),
            }
        }
        assert!((1..=4).contains(&per_tier[&1]), "{per_tier:?}");
        for cloud in t.nodes().iter().filter(|n| n.tags == ["cloud"]) {
            let tier2 = t
                .children(&cloud.name)
                .filter(|c| c.tags == ["tier2"])
                .count();
            assert!((1..=3).contains(&tier2), "{}: {tier2}", cloud.name);
        }
        for tier in [3, 4] {
            let n = per_tier.get(&tier).copied().unwrap_or(0);
            assert!(
                (4 * m as usize..=8 * m as usize).contains(&n),
                "tier {tier}: {n}"
            );
        }
    }

    #[test]
    fn a_generated_tree_parses_back_with_every_tier_in_its_ranges() {
        for seed in 0..20 {
            check_tiers_respect_their_ranges(&generate(1, seed), 1);
        }
        check_tiers_respect_their_ranges(&generate(3, 5), 3);
    }

    #[test]
    fn the_same_seed_gives_the_same_text_and_another_seed_another() {
        assert_eq!(generate(2, 42).text, generate(2, 42).text);
        assert_ne!(generate(2, 42).text, generate(2, 43).text);
        assert_ne!(generate(1, 42).text, generate(2, 42).text);
    }

    #[test]
    fn the_text_names_the_command_that_regenerates_it() {
        let g = generate(1, 7);
        assert!(
            g.text
                .contains("testbed topology generate --giraff --size-multiplier 1 --seed 7"),
            "{}",
            g.text
        );
    }

    #[test]
    fn a_multiplier_of_one_makes_a_small_tree_and_size_grows_linearly() {
        let sizes: Vec<usize> = (0..50)
            .map(|s| generate(1, s).topology.nodes().len())
            .collect();
        assert!(sizes.iter().all(|n| (10..=32).contains(n)), "{sizes:?}");
        let mean = |m: u32| {
            (0..20)
                .map(|s| generate(m, s).topology.nodes().len())
                .sum::<usize>() as f64
                / 20.0
        };
        // About 7.5 + 12 M.
        let big = mean(20);
        assert!((200.0..290.0).contains(&big), "{big}");
    }

    #[test]
    fn names_are_dns_labels_that_spell_the_path_from_the_root() {
        let g = generate(2, 3);
        for n in g.topology.nodes() {
            assert!(n.name.len() <= 63);
            assert!(
                n.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                n.name
            );
            if let Some(p) = &n.parent
                && n.tags != ["cloud"]
            {
                let (_, own) = n.name.split_once('-').unwrap();
                let (_, parents) = p.split_once('-').unwrap();
                assert_eq!(own.rsplit_once('-').unwrap().0, parents, "{}", n.name);
            }
        }
    }

    #[test]
    fn a_one_core_function_costs_least_in_the_cloud_and_most_at_the_edge() {
        let g = generate(2, 11);
        let mut range_per_tier: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
        for n in g.topology.nodes() {
            let pricing: PricingConfig = toml::Value::Table(n.pricing.clone()).try_into().unwrap();
            let price = pricing
                .price(&PricingInput {
                    request: Resources {
                        cpu: Cpu::from_cores(1),
                        memory: Bytes::new(1 << 30),
                    },
                    capacity: Resources {
                        cpu: n.cpu,
                        memory: n.memory,
                    },
                    committed: &[],
                    duration: Duration::from_secs(60),
                    is_data_source: false,
                })
                .value();
            let r = range_per_tier
                .entry(tier_of(n).number)
                .or_insert((f64::MAX, f64::MIN));
            *r = (r.0.min(price), r.1.max(price));
        }
        let ranges: Vec<(f64, f64)> = range_per_tier.values().copied().collect();
        assert_eq!(ranges.len(), 4, "{range_per_tier:?}");
        for pair in ranges.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{range_per_tier:?}");
        }
    }

    #[test]
    fn a_size_multiplier_out_of_bounds_is_refused() {
        for value in [0, MAX_SIZE_MULTIPLIER + 1] {
            let e = giraff(GiraffOptions {
                size_multiplier: value,
                seed: 1,
            })
            .unwrap_err();
            assert!(e.to_string().contains("size multiplier"), "{e}");
        }
    }
}
