//! `testbed topology generate` and `testbed topology links`, run as the built binary.

use std::process::{Command, Output};
use testbed::topology::LinkRow;
use testbed::{Topology, TopologyFileExt};

fn testbed(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(args)
        .output()
        .expect("the testbed binary runs");
    assert!(
        output.status.success(),
        "testbed {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(testbed(args).stdout).expect("UTF-8 output")
}

const LOCAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/local.toml");

#[test]
fn generating_twice_with_the_same_seed_prints_the_same_parsable_topology() {
    let args = [
        "topology",
        "generate",
        "--giraff",
        "--size-multiplier",
        "2",
        "--seed",
        "17",
    ];
    let first = stdout(&args);
    let second = stdout(&args);
    assert_eq!(first, second);
    let t = Topology::parse(&first).expect("the generated text parses");
    assert_eq!(t.roots().count(), 1);
    assert_eq!(first.matches("[[node]]").count(), t.nodes().len());
    assert!(first.contains("testbed topology generate --giraff --size-multiplier 2 --seed 17"));
    let other = stdout(&[
        "topology",
        "generate",
        "--giraff",
        "--size-multiplier",
        "2",
        "--seed",
        "18",
    ]);
    assert_ne!(first, other);
}

#[test]
fn generating_into_a_file_writes_what_standard_output_would_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.toml");
    let path_text = path.to_str().unwrap();
    let args = [
        "topology",
        "generate",
        "--giraff",
        "--size-multiplier",
        "1",
        "--seed",
        "50",
    ];
    let printed = stdout(&args);
    let mut with_out = args.to_vec();
    with_out.extend(["--out", path_text]);
    let quiet = testbed(&with_out);
    assert!(quiet.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), printed);
}

#[test]
fn links_as_json_list_every_pair_with_the_summed_latency_of_its_path() {
    let rows: Vec<LinkRow> = serde_json::from_str(&stdout(&[
        "topology",
        "links",
        "--topology",
        LOCAL,
        "--json",
    ]))
    .expect("a JSON array of links");
    // 7 nodes, 21 unordered pairs, each once with a < b.
    assert_eq!(rows.len(), 21);
    assert!(rows.iter().all(|r| r.a < r.b), "{rows:?}");
    // edge-factory -4 ms- regional-north -12 ms- cloud -18 ms- regional-south -8 ms- edge-farm
    let row = rows
        .iter()
        .find(|r| r.a == "edge-factory" && r.b == "edge-farm")
        .expect("the pair is listed");
    assert_eq!(row.delay_us, 42_000);
    assert_eq!(row.rate_bps, None, "local.toml sets no rates");
    assert_eq!(row.loss_percent, 0.0);
    // The JSON keys are the documented ones, an unlimited rate is null.
    let raw: serde_json::Value = serde_json::from_str(&stdout(&[
        "topology",
        "links",
        "--topology",
        LOCAL,
        "--json",
    ]))
    .unwrap();
    let first = raw[0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys.len(),
        5,
        "{keys:?}: a, b, delay_us, rate_bps, loss_percent"
    );
    assert!(first["rate_bps"].is_null());
}

#[test]
fn links_carry_the_smallest_rate_and_the_compounded_loss_of_generated_edges() {
    let small = concat!(env!("CARGO_MANIFEST_DIR"), "/topologies/giraff-small.toml");
    let rows: Vec<LinkRow> = serde_json::from_str(&stdout(&[
        "topology",
        "links",
        "--topology",
        small,
        "--json",
    ]))
    .unwrap();
    let t = Topology::from_file(small).unwrap();
    let n = t.nodes().len();
    assert_eq!(rows.len(), n * (n - 1) / 2);
    for r in &rows {
        let link = t.path_link(&r.a, &r.b).unwrap();
        assert_eq!(r.delay_us as u128, link.latency.as_duration().as_micros());
        assert_eq!(r.rate_bps, link.rate.map(|x| x.bits_per_second()));
        assert!((r.loss_percent - link.loss_percent).abs() < 1e-5, "{r:?}");
        // Two edge nodes: two lossy links of 1 to 10 % each.
        if r.a.starts_with("t4-") && r.b.starts_with("t4-") {
            assert!((1.99..=19.0).contains(&r.loss_percent), "{r:?}");
        }
    }
}

#[test]
fn links_print_a_table_without_json() {
    let text = stdout(&["topology", "links", "--topology", LOCAL]);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    for column in ["a", "b", "delay_us", "rate_bps", "loss_percent"] {
        assert!(header.split_whitespace().any(|c| c == column), "{header}");
    }
    let row = text
        .lines()
        .find(|l| l.starts_with("edge-factory ") && l.contains(" edge-farm "))
        .expect("the pair is listed");
    assert!(row.split_whitespace().any(|c| c == "42000"), "{row}");
    assert_eq!(lines.count(), 21);
}
