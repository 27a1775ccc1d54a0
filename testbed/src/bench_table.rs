//! The README's performance table (`testbed bench table`, `just bench-table`): one table of
//! every benchmark's headline figures, its goal and whether it was met, the commit and the
//! machine, read from the result files (`bench/results/<name>.json`) and written into the README
//! between [`START`] and [`END`].
//!
//! A benchmark without a result file is left out and named on a line under the table; a file
//! whose layout is not the expected one (an older version, a field missing or of another type)
//! gives a row saying `unreadable:` and why, naming the field. `--check` changes nothing and
//! fails when the README's table is not what the files give.

use crate::bench_faas::{COLD_START_P50_AIM_MS, THROUGHPUT_RATIO_AIM};
use crate::bench_footprint::GOAL_MB;
use anyhow::Context;
use measure::markdown::{MarkdownTable, left};
use serde_json::Value;
use std::path::Path;

/// The line before the table in the README.
pub const START: &str = "<!-- bench-table:start -->";
/// The line after the table in the README.
pub const END: &str = "<!-- bench-table:end -->";
/// The benchmarks of the table, in its order: `<name>.json` in the results directory.
pub const BENCHMARKS: [&str; 8] = [
    "auction",
    "faas",
    "proxy",
    "offload",
    "faults",
    "footprint",
    "sim",
    "giraff",
];
/// The offloading strategy whose success the offload rows show (the nodes' default).
pub const OFFLOAD_HEADLINE_STRATEGY: &str = "lease";
/// The baseline the GIRAFF row compares the auction's spending with.
pub const GIRAFF_BASELINE: &str = "edge_first";

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub benchmark: String,
    pub headline: String,
    pub goal: String,
    /// `met`, `not met`, or `-` without a goal.
    pub met: String,
    pub commit: String,
    pub machine: String,
}

/// What the results directory holds for one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// No `<name>.json`.
    Missing,
    /// A file that is not readable JSON, and why.
    Unreadable(String),
    Json(Value),
}

/// The field at `path` (`placement.p50_ms`), or why there is none.
fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    path.split('.').try_fold(v, |cur, key| {
        cur.get(key).ok_or_else(|| format!("`{path}`: missing"))
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn num(v: &Value, path: &str) -> Result<f64, String> {
    let found = field(v, path)?;
    found
        .as_f64()
        .ok_or_else(|| format!("`{path}`: not a number ({})", kind(found)))
}

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let found = field(v, path)?;
    found
        .as_str()
        .ok_or_else(|| format!("`{path}`: not a string ({})", kind(found)))
}

fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, String> {
    let found = field(v, path)?;
    found
        .as_array()
        .ok_or_else(|| format!("`{path}`: not an array ({})", kind(found)))
}

/// `items[i].path` as a path for errors.
fn item_path(items: &str, i: usize, path: &str) -> String {
    format!("{items}[{i}].{path}")
}

/// A number field of `items[i]`, its errors naming the whole path.
fn item_num(item: &Value, items: &str, i: usize, path: &str) -> Result<f64, String> {
    num(item, path).map_err(|e| {
        e.replace(
            &format!("`{path}`"),
            &format!("`{}`", item_path(items, i, path)),
        )
    })
}

fn item_text<'a>(item: &'a Value, items: &str, i: usize, path: &str) -> Result<&'a str, String> {
    text(item, path).map_err(|e| {
        e.replace(
            &format!("`{path}`"),
            &format!("`{}`", item_path(items, i, path)),
        )
    })
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "not met" }.to_string()
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// The commit column: the commit, `unknown` when the run could not tell it.
fn commit_of(json: &Value) -> Result<String, String> {
    let found = field(json, "commit")?;
    match found {
        Value::Null => Ok("unknown".to_string()),
        Value::String(s) => Ok(format!("`{s}`")),
        other => Err(format!("`commit`: not a string ({})", kind(other))),
    }
}

/// The machine column: CPU model and cores; results of the simulator record no machine.
fn machine_of(json: &Value) -> Result<String, String> {
    if json.get("machine").is_none() {
        return Ok("not recorded".to_string());
    }
    let cores = num(json, "machine.cores")?;
    let cpu = text(json, "machine.cpu_model")?;
    Ok(format!("{cpu}, {cores:.0} cores"))
}

/// The headline, goal and met columns of each row of one benchmark's results.
type Cells = (String, String, String, String);

/// The auction's goals: at this many nodes, placements per second and p99 with 16 in flight,
/// and p50 with one.
const AUCTION_GOAL_NODES: u64 = 50;
const AUCTION_GOAL_PER_S: f64 = 300.0;
const AUCTION_GOAL_P99_MS: f64 = 100.0;
const AUCTION_GOAL_P50_MS: f64 = 3.0;
/// The data plane's goals: the fog node over HAProxy in front of the same gateway, and the
/// gateway over HAProxy in front of the same replica (ok/s).
const PROXY_FOG_GOAL: f64 = 1.0;
const PROXY_GATEWAY_GOAL: f64 = 0.8;

fn auction(json: &Value) -> Result<Vec<Cells>, String> {
    // A `series` of runs (one per federation size), or a single run at the top level.
    let runs: Vec<(String, &Value)> = match json.get("series") {
        Some(_) => array(json, "series")?
            .iter()
            .enumerate()
            .map(|(i, run)| (format!("series[{i}]."), run))
            .collect(),
        None => vec![(String::new(), json)],
    };
    let mut rows = Vec::new();
    for (prefix, run) in runs {
        let at = |path: &str| -> Result<f64, String> {
            num(run, path)
                .map_err(|e| e.replace(&format!("`{path}`"), &format!("`{prefix}{path}`")))
        };
        // The concurrency of a series may be the whole run's.
        let concurrency = match run.get("concurrency") {
            Some(_) => at("concurrency")?,
            None => num(json, "concurrency")?,
        };
        let (nodes, throughput) = (at("nodes")?, at("throughput_per_s")?);
        let (p50, p99) = (at("placement.p50_ms")?, at("placement.p99_ms")?);
        // The goals are set at 50 nodes: 16 in flight for throughput and tail, 1 for p50.
        let (goal, reached) = match (nodes as u64, concurrency as u64) {
            (AUCTION_GOAL_NODES, 16) => (
                format!(">= {AUCTION_GOAL_PER_S:.0}/s, p99 <= {AUCTION_GOAL_P99_MS:.0} ms"),
                met(throughput >= AUCTION_GOAL_PER_S && p99 <= AUCTION_GOAL_P99_MS),
            ),
            (AUCTION_GOAL_NODES, 1) => (
                format!("p50 <= {AUCTION_GOAL_P50_MS:.0} ms"),
                met(p50 <= AUCTION_GOAL_P50_MS),
            ),
            _ => ("-".to_string(), "-".to_string()),
        };
        rows.push((
            format!("auction ({nodes:.0} nodes, {concurrency:.0} in flight)"),
            format!("{throughput:.1} placements/s, p50 {p50:.1} ms, p99 {p99:.1} ms"),
            goal,
            reached,
        ));
    }
    Ok(rows)
}

fn faas(json: &Value) -> Result<Vec<Cells>, String> {
    let cold = num(json, "cold_start.p50_ms")?;
    let ratio = num(json, "throughput_ratio")?;
    let cold_met = cold < COLD_START_P50_AIM_MS;
    let ratio_met = ratio >= THROUGHPUT_RATIO_AIM;
    Ok(vec![(
        "faas".to_string(),
        format!("cold start p50 {cold:.2} ms; gateway / direct throughput {ratio:.2}x"),
        format!(
            "cold start p50 < {COLD_START_P50_AIM_MS:.0} ms; gateway >= {THROUGHPUT_RATIO_AIM:.1}x direct"
        ),
        format!("{}; {}", met(cold_met), met(ratio_met)),
    )])
}

fn proxy(json: &Value) -> Result<Vec<Cells>, String> {
    let arms = array(json, "arms")?;
    let ok_per_s = |name: &str| -> Result<f64, String> {
        let (i, arm) = arms
            .iter()
            .enumerate()
            .find(|(_, a)| a.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("`arms`: no arm named `{name}`"))?;
        item_num(arm, "arms", i, "result.ok_per_s")
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (fog, haproxy_gateway) = (ok_per_s("fog")?, ok_per_s("haproxy_gateway")?);
    let (gateway, haproxy) = (ok_per_s("gateway")?, ok_per_s("haproxy")?);
    Ok(vec![(
        "proxy".to_string(),
        format!(
            "ok/s: fog node / HAProxy -> gateway {:.2}x ({fog:.0} / {haproxy_gateway:.0}); \
             gateway / HAProxy {:.2}x ({gateway:.0} / {haproxy:.0})",
            ratio(fog, haproxy_gateway),
            ratio(gateway, haproxy)
        ),
        format!("fog node >= {PROXY_FOG_GOAL:.1}x; gateway >= {PROXY_GATEWAY_GOAL:.1}x"),
        format!(
            "{}; {}",
            met(ratio(fog, haproxy_gateway) >= PROXY_FOG_GOAL),
            met(ratio(gateway, haproxy) >= PROXY_GATEWAY_GOAL)
        ),
    )])
}

fn offload(json: &Value) -> Result<Vec<Cells>, String> {
    let aim = num(json, "aim")?;
    let settle = num(json, "settle_s")?;
    let runs = array(json, "runs")?;
    let mut scenarios: Vec<&str> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let scenario = item_text(run, "runs", i, "scenario")?;
        if !scenarios.contains(&scenario) {
            scenarios.push(scenario);
        }
    }
    let strategy = OFFLOAD_HEADLINE_STRATEGY;
    let goal = format!(
        "{strategy}: >= {} from s{settle:.0} on, in every second",
        pct(aim)
    );
    let mut rows = Vec::new();
    for scenario in scenarios {
        let found = runs.iter().enumerate().find(|(_, r)| {
            r.get("scenario").and_then(Value::as_str) == Some(scenario)
                && r.get("strategy").and_then(Value::as_str) == Some(strategy)
        });
        let name = format!("offload `{scenario}`");
        let Some((i, run)) = found else {
            rows.push((
                name,
                format!("no `{strategy}` run"),
                goal.clone(),
                "-".to_string(),
            ));
            continue;
        };
        if run.get("summary").is_none_or(Value::is_null) {
            let error = run
                .get("error")
                .and_then(Value::as_str)
                .and_then(|e| e.lines().next())
                .unwrap_or("no summary");
            rows.push((
                name,
                format!("{strategy}: failed: {error}"),
                goal.clone(),
                met(false),
            ));
            continue;
        }
        let settled = item_num(run, "runs", i, "summary.settled_success_rate")?;
        let worst = item_num(run, "runs", i, "summary.settled_min_second_success")?;
        rows.push((
            name,
            format!(
                "{strategy}: {} success from s{settle:.0}, worst second {}",
                pct(settled),
                pct(worst)
            ),
            goal.clone(),
            met(settled >= aim && worst >= aim),
        ));
    }
    Ok(rows)
}

fn faults(json: &Value) -> Result<Vec<Cells>, String> {
    let scenarios = array(json, "scenarios")?;
    let mut lost = 0.0;
    let mut failed = 0.0;
    let mut slowest: Option<(f64, &str)> = None;
    for (i, s) in scenarios.iter().enumerate() {
        lost += item_num(s, "scenarios", i, "placements_lost")?;
        failed += item_num(s, "scenarios", i, "failed_after_fault")?;
        let name = item_text(s, "scenarios", i, "scenario.name")?;
        // `null`: no request succeeded after the fault.
        let first = match field(s, "first_success_ms") {
            Ok(Value::Null) => f64::INFINITY,
            _ => item_num(s, "scenarios", i, "first_success_ms")?,
        };
        if slowest.is_none_or(|(ms, _)| first > ms) {
            slowest = Some((first, name));
        }
    }
    let slowest = match slowest {
        Some((ms, name)) if ms.is_finite() => {
            format!(
                "; slowest first success after a fault {:.1} s (`{name}`)",
                ms / 1000.0
            )
        }
        Some((_, name)) => format!("; no success after the fault in `{name}`"),
        None => String::new(),
    };
    Ok(vec![(
        "faults".to_string(),
        format!(
            "{} scenarios: {failed:.0} requests failed after the faults, {lost:.0} placements lost{slowest}",
            scenarios.len()
        ),
        "-".to_string(),
        "-".to_string(),
    )])
}

fn footprint(json: &Value) -> Result<Vec<Cells>, String> {
    let largest = num(json, "max_node_mb")?;
    let goal = match json.get("goal_mb") {
        Some(_) => num(json, "goal_mb")?,
        None => GOAL_MB,
    };
    let readings = array(json, "readings")?;
    let mean = match readings.last() {
        Some(r) => item_num(r, "readings", readings.len() - 1, "summary.mean_node_mb")?,
        None => return Err("`readings`: empty".to_string()),
    };
    Ok(vec![(
        "footprint".to_string(),
        format!("idle fog node with its gateway: largest {largest:.1} MB, mean {mean:.1} MB"),
        format!("< {goal:.0} MB"),
        met(largest < goal),
    )])
}

fn sim(json: &Value) -> Result<Vec<Cells>, String> {
    // The largest size: of the `series` when there is one, else the run at the top level.
    let (nodes, rate) = match json.get("series") {
        Some(_) => {
            let series = array(json, "series")?;
            let mut largest: Option<(f64, f64)> = None;
            for (i, run) in series.iter().enumerate() {
                let nodes = item_num(run, "series", i, "nodes")?;
                let rate = item_num(run, "series", i, "invocations_per_s")?;
                if largest.is_none_or(|(n, _)| nodes > n) {
                    largest = Some((nodes, rate));
                }
            }
            largest.ok_or_else(|| "`series`: empty".to_string())?
        }
        None => (num(json, "nodes")?, num(json, "invocations_per_s")?),
    };
    let reference = json
        .get("faas_sim")
        .and_then(|f| f.get("reference_invocations_per_s"))
        .and_then(Value::as_f64)
        .filter(|r| *r > 0.0)
        .map(|r| format!(" ({:.0}x faas-sim's outside figure of {r:.0}/s)", rate / r))
        .unwrap_or_default();
    Ok(vec![(
        "sim".to_string(),
        format!("{rate:.0} invocations/s at {nodes:.0} nodes{reference}"),
        "-".to_string(),
        "-".to_string(),
    )])
}

fn giraff(json: &Value) -> Result<Vec<Cells>, String> {
    let strategies = array(json, "strategies")?;
    let of = |name: &str| -> Result<(f64, f64), String> {
        let (i, s) = strategies
            .iter()
            .enumerate()
            .find(|(_, s)| s.get("strategy").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("`strategies`: no strategy `{name}`"))?;
        Ok((
            item_num(s, "strategies", i, "spending_per_placement.mean")?,
            item_num(s, "strategies", i, "sla_respected.mean")?,
        ))
    };
    let (spend, sla) = of("auction")?;
    let (base_spend, base_sla) = of(GIRAFF_BASELINE)?;
    let times = if spend > 0.0 { base_spend / spend } else { 0.0 };
    Ok(vec![(
        "giraff".to_string(),
        format!(
            "auction pays {times:.1}x less per placement than {GIRAFF_BASELINE} ({spend:.2} / {base_spend:.2}); SLA respected {} / {}",
            pct(sla),
            pct(base_sla)
        ),
        "-".to_string(),
        "-".to_string(),
    )])
}

/// The rows of one benchmark's results, or why they cannot be read (naming the field).
pub fn rows_of(name: &str, json: &Value) -> Result<Vec<Row>, String> {
    let benchmark = text(json, "benchmark")?;
    if benchmark != name {
        return Err(format!("`benchmark`: `{benchmark}`, expected `{name}`"));
    }
    let cells = match name {
        "auction" => auction(json)?,
        "faas" => faas(json)?,
        "proxy" => proxy(json)?,
        "offload" => offload(json)?,
        "faults" => faults(json)?,
        "footprint" => footprint(json)?,
        "sim" => sim(json)?,
        "giraff" => giraff(json)?,
        other => return Err(format!("no headline is known for `{other}`")),
    };
    let commit = commit_of(json)?;
    let machine = machine_of(json)?;
    Ok(cells
        .into_iter()
        .map(|(benchmark, headline, goal, met)| Row {
            benchmark,
            headline,
            goal,
            met,
            commit: commit.clone(),
            machine: machine.clone(),
        })
        .collect())
}

/// A table cell: a `|` would end it.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The text between the markers: the table of `found` (in [`BENCHMARKS`] order), then a line
/// naming the benchmarks without a result file.
pub fn section(found: &[(&str, Found)]) -> String {
    let mut table = MarkdownTable::new([
        left("benchmark"),
        left("headline"),
        left("goal"),
        left("met"),
        left("commit"),
        left("machine"),
    ]);
    let mut missing = Vec::new();
    let mut rows = 0;
    for (name, result) in found {
        let read = match result {
            Found::Missing => {
                missing.push(*name);
                continue;
            }
            Found::Unreadable(reason) => Err(reason.clone()),
            Found::Json(json) => rows_of(name, json),
        };
        match read {
            Ok(read) => {
                for r in read {
                    table.row([
                        cell(&r.benchmark),
                        cell(&r.headline),
                        cell(&r.goal),
                        cell(&r.met),
                        cell(&r.commit),
                        cell(&r.machine),
                    ]);
                    rows += 1;
                }
            }
            Err(reason) => {
                table.row([
                    cell(name),
                    cell(&format!("unreadable: {reason}")),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                ]);
                rows += 1;
            }
        }
    }
    let mut s = String::from(
        "<!-- written by `just bench-table` from bench/results/*.json: edit those, not this -->\n\n",
    );
    if rows > 0 {
        s.push_str(&table.render());
    } else {
        s.push_str("No benchmark results yet.\n");
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
        s.push_str(&format!(
            "\nNo result file for {} (`just bench <name>` writes it).\n",
            names.join(", ")
        ));
    }
    s
}

/// Reads `<name>.json` of every benchmark in `dir`.
pub fn read_results(dir: &Path) -> Vec<(&'static str, Found)> {
    BENCHMARKS
        .iter()
        .map(|&name| {
            let path = dir.join(format!("{name}.json"));
            let found = match std::fs::read_to_string(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Missing,
                Err(e) => Found::Unreadable(format!("cannot read {name}.json: {e}")),
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(json) => Found::Json(json),
                    Err(e) => Found::Unreadable(format!("{name}.json is not JSON: {e}")),
                },
            };
            (name, found)
        })
        .collect()
}

/// `readme` with the text between its markers replaced by `section`.
pub fn replace_section(readme: &str, section: &str) -> Result<String, String> {
    let (before, after_start) = split_once_only(readme, START)?;
    let (_, after_end) = split_once_only(after_start, END)?;
    Ok(format!("{before}{START}\n{section}{END}{after_end}"))
}

/// The text between the markers.
pub fn current_section(readme: &str) -> Result<&str, String> {
    let (_, after_start) = split_once_only(readme, START)?;
    let (inside, _) = split_once_only(after_start, END)?;
    Ok(inside.strip_prefix('\n').unwrap_or(inside))
}

/// `text` split at `marker`, which must be there exactly once.
fn split_once_only<'a>(text: &'a str, marker: &str) -> Result<(&'a str, &'a str), String> {
    match text.matches(marker).count() {
        0 => Err(format!("no `{marker}` marker")),
        1 => text
            .split_once(marker)
            .ok_or_else(|| format!("no `{marker}` marker")),
        n => Err(format!("`{marker}` appears {n} times, not once")),
    }
}

/// What [`update_readme`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The table already was what the files give.
    Unchanged,
    Rewritten,
    /// `check`: the table differs; the first line that does.
    Stale {
        first_difference: String,
    },
}

/// The first line where `have` and `want` differ, for the `--check` message.
fn first_difference(have: &str, want: &str) -> String {
    let (mut a, mut b) = (have.lines(), want.lines());
    for line in 1.. {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => break,
            (x, y) => {
                return format!(
                    "line {line} of the table: the README has {}, the results give {}",
                    x.map_or_else(|| "nothing".to_string(), |x| format!("`{x}`")),
                    y.map_or_else(|| "nothing".to_string(), |y| format!("`{y}`")),
                );
            }
        }
    }
    "only in line endings".to_string()
}

/// Rewrites the table of `readme` from the result files in `results`; with `check`, changes
/// nothing and says whether it is stale.
pub fn update_readme(results: &Path, readme: &Path, check: bool) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(readme)
        .with_context(|| format!("cannot read {}", readme.display()))?;
    let want = section(&read_results(results));
    let have = current_section(&text).map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;
    if have == want {
        return Ok(Outcome::Unchanged);
    }
    if check {
        return Ok(Outcome::Stale {
            first_difference: first_difference(have, &want),
        });
    }
    let updated =
        replace_section(&text, &want).map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;
    std::fs::write(readme, updated)
        .with_context(|| format!("cannot write {}", readme.display()))?;
    Ok(Outcome::Rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use measure::markdown::squeeze_spaces;
    use serde_json::json;

    fn machine() -> Value {
        json!({"hostname": "vm", "os": "Debian", "cpu_model": "AMD EPYC", "cores": 2})
    }

    fn auction_run(nodes: u64, throughput: f64) -> Value {
        json!({
            "nodes": nodes,
            "concurrency": 16,
            "throughput_per_s": throughput,
            "placement": {"p50_ms": 138.62, "p99_ms": 521.98},
        })
    }

    fn auction_json() -> Value {
        let mut v = auction_run(50, 103.2);
        v["benchmark"] = json!("auction");
        v["machine"] = machine();
        v["commit"] = json!("cb2e0e7");
        v
    }

    fn rows(name: &str, json: &Value) -> Vec<Row> {
        rows_of(name, json).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn an_auction_run_gives_one_row_with_its_throughput_and_percentiles() {
        let r = rows("auction", &auction_json());
        assert_eq!(
            r,
            vec![Row {
                benchmark: "auction (50 nodes, 16 in flight)".to_string(),
                headline: "103.2 placements/s, p50 138.6 ms, p99 522.0 ms".to_string(),
                goal: ">= 300/s, p99 <= 100 ms".to_string(),
                met: "not met".to_string(),
                commit: "`cb2e0e7`".to_string(),
                machine: "AMD EPYC, 2 cores".to_string(),
            }]
        );
    }

    #[test]
    fn an_auction_series_gives_one_row_per_federation_size() {
        let mut v = json!({
            "benchmark": "auction",
            "machine": machine(),
            "commit": null,
            "concurrency": 8,
            "series": [auction_run(10, 300.0), auction_run(100, 50.0)],
        });
        v["series"][1]
            .as_object_mut()
            .unwrap()
            .remove("concurrency");
        let r = rows("auction", &v);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].benchmark, "auction (10 nodes, 16 in flight)");
        assert_eq!(r[1].benchmark, "auction (100 nodes, 8 in flight)");
        assert!(r[1].headline.starts_with("50.0 placements/s"), "{r:?}");
        assert_eq!(r[0].commit, "unknown");
        // Goals are set at 50 nodes only.
        assert_eq!((r[0].goal.as_str(), r[0].met.as_str()), ("-", "-"));
    }

    #[test]
    fn the_auction_goals_are_checked_at_fifty_nodes_for_sixteen_and_one_in_flight() {
        let mut fast = auction_run(50, 320.0);
        fast["placement"] = json!({"p50_ms": 30.0, "p99_ms": 95.0});
        let mut single = auction_run(50, 400.0);
        single["concurrency"] = json!(1);
        single["placement"] = json!({"p50_ms": 2.5, "p99_ms": 9.0});
        let v = json!({"benchmark": "auction", "machine": machine(), "commit": null,
                       "series": [fast, single]});
        let r = rows("auction", &v);
        assert_eq!(r[0].goal, ">= 300/s, p99 <= 100 ms");
        assert_eq!(r[0].met, "met");
        assert_eq!(r[1].goal, "p50 <= 3 ms");
        assert_eq!(r[1].met, "met");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named_with_its_path() {
        let mut v = auction_json();
        v["placement"].as_object_mut().unwrap().remove("p99_ms");
        assert_eq!(
            rows_of("auction", &v).unwrap_err(),
            "`placement.p99_ms`: missing"
        );
        let mut v = auction_json();
        v["throughput_per_s"] = json!("fast");
        assert_eq!(
            rows_of("auction", &v).unwrap_err(),
            "`throughput_per_s`: not a number (a string)"
        );
        let v = json!({"benchmark": "auction", "series": [{"nodes": 5}], "concurrency": 1});
        assert_eq!(
            rows_of("auction", &v).unwrap_err(),
            "`series[0].throughput_per_s`: missing"
        );
        let v = json!({"benchmark": "faas"});
        assert_eq!(
            rows_of("auction", &v).unwrap_err(),
            "`benchmark`: `faas`, expected `auction`"
        );
    }

    #[test]
    fn faas_is_checked_against_both_of_its_aims() {
        let v = json!({
            "benchmark": "faas", "machine": machine(), "commit": "d5ae72d",
            "cold_start": {"p50_ms": 2.23}, "throughput_ratio": 0.42,
        });
        let r = rows("faas", &v);
        assert_eq!(
            r[0].headline,
            "cold start p50 2.23 ms; gateway / direct throughput 0.42x"
        );
        assert_eq!(r[0].goal, "cold start p50 < 100 ms; gateway >= 0.8x direct");
        assert_eq!(r[0].met, "met; not met");
    }

    #[test]
    fn proxy_shows_the_fog_node_against_haproxy_and_the_gateway_against_haproxy() {
        let arm = |name: &str, ok: f64| json!({"name": name, "result": {"ok_per_s": ok}});
        let v = json!({
            "benchmark": "proxy", "machine": machine(), "commit": "cb2e0e7",
            "arms": [arm("direct", 84000.0), arm("haproxy", 40000.0), arm("gateway", 30000.0),
                     arm("fog", 18000.0), arm("haproxy_gateway", 20000.0)],
        });
        assert_eq!(
            rows("proxy", &v)[0].headline,
            "ok/s: fog node / HAProxy -> gateway 0.90x (18000 / 20000); gateway / HAProxy 0.75x (30000 / 40000)"
        );
        assert_eq!(rows("proxy", &v)[0].met, "not met; not met");
        assert_eq!(
            rows("proxy", &v)[0].goal,
            "fog node >= 1.0x; gateway >= 0.8x"
        );
        let mut without = v.clone();
        without["arms"].as_array_mut().unwrap().remove(4);
        assert_eq!(
            rows_of("proxy", &without).unwrap_err(),
            "`arms`: no arm named `haproxy_gateway`"
        );
    }

    #[test]
    fn offload_gives_the_lease_strategy_of_each_scenario_against_the_aim() {
        let run = |scenario: &str, strategy: &str, settled: f64, worst: f64| {
            json!({"scenario": scenario, "strategy": strategy, "summary": {
                "settled_success_rate": settled, "settled_min_second_success": worst}})
        };
        let v = json!({
            "benchmark": "offload", "machine": machine(), "commit": "d2ebb62",
            "aim": 0.99, "settle_s": 1.0,
            "runs": [run("demo", "static", 0.65, 0.52), run("demo", "lease", 1.0, 1.0),
                     run("issue48", "lease", 0.995, 0.98),
                     {"scenario": "burst", "strategy": "lease", "summary": null, "error": "no federation\nmore"}],
        });
        let r = rows("offload", &v);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].benchmark, "offload `demo`");
        assert_eq!(
            r[0].headline,
            "lease: 100.0 % success from s1, worst second 100.0 %"
        );
        assert_eq!(r[0].goal, "lease: >= 99.0 % from s1 on, in every second");
        assert_eq!(r[0].met, "met");
        assert_eq!(r[1].met, "not met");
        assert_eq!(r[2].headline, "lease: failed: no federation");
    }

    #[test]
    fn footprint_sim_faults_and_giraff_give_their_headlines() {
        let footprint = json!({
            "benchmark": "footprint", "machine": machine(), "commit": "abc",
            "max_node_mb": 14.66, "goal_mb": 50.0,
            "readings": [{"summary": {"mean_node_mb": 11.0}}, {"summary": {"mean_node_mb": 12.34}}],
        });
        let r = rows("footprint", &footprint);
        assert_eq!(
            (
                r[0].headline.as_str(),
                r[0].goal.as_str(),
                r[0].met.as_str()
            ),
            (
                "idle fog node with its gateway: largest 14.7 MB, mean 12.3 MB",
                "< 50 MB",
                "met"
            )
        );
        let sim = json!({
            "benchmark": "sim", "commit": "c213e19",
            "faas_sim": {"reference_invocations_per_s": 46000.0},
            "series": [{"nodes": 102, "invocations_per_s": 1881536.0},
                       {"nodes": 10978, "invocations_per_s": 1173247.0},
                       {"nodes": 1071, "invocations_per_s": 1744615.0}],
        });
        let r = rows("sim", &sim);
        assert_eq!(
            r[0].headline,
            "1173247 invocations/s at 10978 nodes (26x faas-sim's outside figure of 46000/s)"
        );
        assert_eq!(r[0].machine, "not recorded");
        let scenario = |name: &str, first: Value, failed: u64| {
            json!({"scenario": {"name": name}, "first_success_ms": first,
                   "failed_after_fault": failed, "placements_lost": 0})
        };
        let faults = json!({
            "benchmark": "faults", "machine": machine(), "commit": "34e2ded",
            "scenarios": [scenario("kill-host", json!(3750.0), 75),
                          scenario("sigstop-host-20s", json!(5300.0), 106),
                          scenario("kill-marketplace", json!(0.0), 0)],
        });
        assert_eq!(
            rows("faults", &faults)[0].headline,
            "3 scenarios: 181 requests failed after the faults, 0 placements lost; slowest first success after a fault 5.3 s (`sigstop-host-20s`)"
        );
        let strategy = |name: &str, spend: f64, sla: f64| {
            json!({"strategy": name, "spending_per_placement": {"mean": spend},
                   "sla_respected": {"mean": sla}})
        };
        let giraff = json!({
            "benchmark": "giraff", "commit": "c213e19",
            "strategies": [strategy("auction", 0.8764, 0.9989), strategy("edge_first", 5.4284, 1.0)],
        });
        assert_eq!(
            rows("giraff", &giraff)[0].headline,
            "auction pays 6.2x less per placement than edge_first (0.88 / 5.43); SLA respected 99.9 % / 100.0 %"
        );
    }

    #[test]
    fn the_section_skips_missing_files_and_says_which_and_reports_unreadable_ones() {
        let found = [
            ("auction", Found::Json(auction_json())),
            ("faas", Found::Missing),
            (
                "proxy",
                Found::Unreadable("proxy.json is not JSON: EOF".to_string()),
            ),
            ("offload", Found::Missing),
            (
                "sim",
                Found::Json(json!({"benchmark": "sim", "commit": "x"})),
            ),
        ];
        let s = section(&found);
        let squeezed = squeeze_spaces(&s);
        assert!(
            squeezed.contains(
                "| auction (50 nodes, 16 in flight) | 103.2 placements/s, p50 138.6 ms, p99 522.0 ms | >= 300/s, p99 <= 100 ms | not met | `cb2e0e7` | AMD EPYC, 2 cores |"
            ),
            "{s}"
        );
        assert!(
            squeezed.contains("| proxy | unreadable: proxy.json is not JSON: EOF | - |"),
            "{s}"
        );
        assert!(
            squeezed.contains("| sim | unreadable: `nodes`: missing | - |"),
            "{s}"
        );
        assert!(
            s.contains("No result file for `faas`, `offload` (`just bench <name>` writes it)."),
            "{s}"
        );
        let nothing = section(&[("auction", Found::Missing)]);
        assert!(nothing.contains("No benchmark results yet."), "{nothing}");
    }

    #[test]
    fn only_the_text_between_the_markers_is_replaced() {
        let readme = format!("# Title\n\nintro\n{START}\nold table\n{END}\n\n## Next\n");
        let updated = replace_section(&readme, "new table\n").unwrap();
        assert_eq!(
            updated,
            format!("# Title\n\nintro\n{START}\nnew table\n{END}\n\n## Next\n")
        );
        assert_eq!(current_section(&updated).unwrap(), "new table\n");
        assert_eq!(
            replace_section("no markers here", "x").unwrap_err(),
            format!("no `{START}` marker")
        );
        let twice = format!("{START}\n{END}\n{START}\n{END}\n");
        assert_eq!(
            replace_section(&twice, "x").unwrap_err(),
            format!("`{START}` appears 2 times, not once")
        );
    }

    #[test]
    fn check_mode_reports_a_stale_table_without_changing_the_readme() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        std::fs::create_dir(&results).unwrap();
        std::fs::write(results.join("auction.json"), auction_json().to_string()).unwrap();
        let readme = dir.path().join("README.md");
        let original = format!("# B\n{START}\nstale\n{END}\n");
        std::fs::write(&readme, &original).unwrap();

        let outcome = update_readme(&results, &readme, true).unwrap();
        let Outcome::Stale { first_difference } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            first_difference.contains("line 1 of the table"),
            "{first_difference}"
        );
        assert_eq!(std::fs::read_to_string(&readme).unwrap(), original);

        assert_eq!(
            update_readme(&results, &readme, false).unwrap(),
            Outcome::Rewritten
        );
        assert_eq!(
            update_readme(&results, &readme, true).unwrap(),
            Outcome::Unchanged
        );
        let text = std::fs::read_to_string(&readme).unwrap();
        assert!(text.contains("103.2 placements/s"), "{text}");
        assert!(text.ends_with(&format!("{END}\n")), "{text}");
    }

    #[test]
    fn every_benchmark_of_the_table_has_a_reader() {
        for name in BENCHMARKS {
            let err = rows_of(name, &json!({"benchmark": name})).unwrap_err();
            assert!(!err.starts_with("no headline"), "{name}: {err}");
        }
    }
}
