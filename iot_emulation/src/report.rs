//! The experiment's report, computed from the request records and the placements (pure), and
//! written as `report.json` and `report.md`.
//!
//! - Ratios are over every planned request (dropped and unplaced ones included): success = 2xx,
//!   SLA respected = [`Record::sla_met`].
//! - Latency percentiles (nearest rank, within 0.1 %: `measure::stats`) are over successful
//!   (2xx) requests.
//! - Spending of a function = the sum of what its winners are paid; earnings of a node = the
//!   sum of what it is paid over its placements; Jain's fairness index
//!   `J = (Σx)² / (n Σx²)` is over the earnings of every node of the federation (nodes that won
//!   nothing count as 0), undefined when nobody earned anything.
//! - Per node, from the answers' `X-Fogmarket-Path`: every node but the last forwarded the
//!   request; the last one served it (2xx) or rejected it (any other status).

use crate::placement::Placement;
use crate::record::{Record, outcome};
use measure::markdown::{MarkdownTable, left, right};
use measure::stats::Latencies;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// What `placements.json` holds: the experiment and how each function was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementsFile {
    pub experiment: String,
    pub seed: u64,
    pub duration_ms: f64,
    /// Every node of the federation (for the fairness index); may be empty.
    pub nodes: Vec<String>,
    pub placements: Vec<Placement>,
}

/// Jain's fairness index of `x`: 1 when all are equal, 1/n when one has everything. `None`
/// for an empty or all-zero vector.
pub fn jain_index(x: &[f64]) -> Option<f64> {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    if x.is_empty() || squares == 0.0 {
        return None;
    }
    Some(sum * sum / (x.len() as f64 * squares))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (ms; not finite numbers left out), read from an
    /// HDR histogram (`measure::stats`: within 0.1 %); `None` without values.
    pub fn of(values: &[f64]) -> Option<Percentiles> {
        let latencies = Latencies::from_ms(values.iter().copied());
        if latencies.is_empty() {
            return None;
        }
        Some(Percentiles {
            count: latencies.len() as usize,
            mean: latencies.mean_ms(),
            p50: latencies.quantile_ms(0.5),
            p95: latencies.quantile_ms(0.95),
            p99: latencies.quantile_ms(0.99),
            max: latencies.max_ms(),
        })
    }
}

/// Counts and ratios over a group of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub requests: usize,
    pub sent: usize,
    pub ok: usize,
    pub sla_met: usize,
    pub dropped: usize,
    pub success_ratio: f64,
    pub sla_met_ratio: f64,
    /// Latency of successful requests, ms.
    pub latency_ms: Option<Percentiles>,
}

impl Group {
    fn of<'a>(records: impl Iterator<Item = &'a Record>) -> Group {
        let (mut requests, mut sent, mut ok, mut met, mut dropped) = (0, 0, 0, 0, 0);
        let mut latencies = Vec::new();
        for r in records {
            requests += 1;
            sent += usize::from(r.sent_ms.is_some());
            dropped += usize::from(r.outcome == outcome::DROPPED);
            met += usize::from(r.sla_met);
            if r.is_success() {
                ok += 1;
                latencies.extend(r.latency_ms);
            }
        }
        let ratio = |n: usize| {
            if requests == 0 {
                0.0
            } else {
                n as f64 / requests as f64
            }
        };
        Group {
            requests,
            sent,
            ok,
            sla_met: met,
            dropped,
            success_ratio: ratio(ok),
            sla_met_ratio: ratio(met),
            latency_ms: Percentiles::of(&latencies),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionReport {
    #[serde(flatten)]
    pub group: Group,
    pub latency_class: String,
    pub access_node: String,
    pub sla_id: Option<String>,
    pub hosts: Vec<String>,
    pub spending: f64,
    pub time_to_place_ms: Option<f64>,
    pub placement_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub served: usize,
    pub forwarded: usize,
    pub rejected: usize,
    pub placements: usize,
    pub earnings: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeBin {
    pub start_s: f64,
    pub requests: usize,
    pub sla_met: usize,
    pub sla_met_ratio: Option<f64>,
    /// SLA-met ratio per latency class in this bin.
    pub per_class: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeBin {
    pub served: usize,
    pub forwarded: usize,
    pub rejected: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub experiment: String,
    pub overall: Group,
    /// Requests per outcome (`ok`, `http_error`, `timeout`, `transport_error`, `dropped`,
    /// `not_placed`).
    pub outcomes: BTreeMap<String, usize>,
    pub per_class: BTreeMap<String, Group>,
    pub per_function: BTreeMap<String, FunctionReport>,
    pub nodes: BTreeMap<String, NodeReport>,
    pub spending_total: f64,
    /// Jain's fairness index of node earnings, over `earnings_nodes` nodes.
    pub earnings_jain: Option<f64>,
    pub earnings_nodes: usize,
    pub time_to_place_ms: Option<Percentiles>,
    pub placements_failed: usize,
    /// Width of the time bins, s.
    pub bin_s: f64,
    pub sla_over_time: Vec<TimeBin>,
    /// Per node, per bin: served, forwarded, rejected.
    pub node_activity: BTreeMap<String, Vec<NodeBin>>,
}

/// The bin width for an experiment of `duration_s`: about 60 bins, whole seconds.
pub fn bin_width(duration_s: f64) -> f64 {
    (duration_s / 60.0).ceil().max(1.0)
}

/// How a request involved each node: (node, served | forwarded | rejected).
fn node_roles(r: &Record) -> Vec<(&str, Role)> {
    if r.status == 0 {
        return Vec::new();
    }
    let mut nodes = r.path_nodes();
    if nodes.is_empty() {
        match r.served_by.as_deref() {
            Some(s) => nodes.push(s),
            None => nodes.push(r.access_node.as_str()),
        }
    }
    let last = nodes.len() - 1;
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let role = if i < last {
                Role::Forwarded
            } else if r.is_success() {
                Role::Served
            } else {
                Role::Rejected
            };
            (n, role)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Served,
    Forwarded,
    Rejected,
}

impl Report {
    /// Computes the report. `placements` adds spending, earnings, hosts and time to place.
    pub fn compute(
        experiment: &str,
        records: &[Record],
        placements: Option<&PlacementsFile>,
    ) -> Report {
        let overall = Group::of(records.iter());
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for r in records {
            *outcomes.entry(r.outcome.clone()).or_default() += 1;
        }
        let classes: BTreeSet<&str> = records.iter().map(|r| r.latency_class.as_str()).collect();
        let per_class = classes
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    Group::of(records.iter().filter(|r| r.latency_class == *c)),
                )
            })
            .collect();

        let placed: Vec<&Placement> = placements
            .map(|p| p.placements.iter().collect())
            .unwrap_or_default();
        let mut names: BTreeSet<&str> = records.iter().map(|r| r.function.as_str()).collect();
        names.extend(placed.iter().map(|p| p.function.as_str()));
        let per_function = names
            .iter()
            .map(|name| {
                let rs: Vec<&Record> = records.iter().filter(|r| r.function == *name).collect();
                let p = placed.iter().find(|p| p.function == *name);
                let first = rs.first();
                let report = FunctionReport {
                    group: Group::of(rs.iter().copied()),
                    latency_class: p
                        .map(|p| p.latency_class.clone())
                        .or_else(|| first.map(|r| r.latency_class.clone()))
                        .unwrap_or_default(),
                    access_node: p
                        .map(|p| p.access_node.clone())
                        .or_else(|| first.map(|r| r.access_node.clone()))
                        .unwrap_or_default(),
                    sla_id: p
                        .and_then(|p| p.sla_id.clone())
                        .or_else(|| first.map(|r| r.sla_id.clone()).filter(|s| !s.is_empty())),
                    hosts: p
                        .map(|p| p.winners.iter().map(|w| w.node.clone()).collect())
                        .unwrap_or_default(),
                    spending: p.map_or(0.0, |p| p.spending()),
                    time_to_place_ms: p.filter(|p| p.sla_id.is_some()).map(|p| p.time_to_place_ms),
                    placement_error: p.and_then(|p| p.error.clone()),
                };
                (name.to_string(), report)
            })
            .collect();

        let mut nodes: BTreeMap<String, NodeReport> = BTreeMap::new();
        for n in placements.map(|p| p.nodes.as_slice()).unwrap_or_default() {
            nodes.entry(n.clone()).or_default();
        }
        for p in &placed {
            for w in &p.winners {
                let n = nodes.entry(w.node.clone()).or_default();
                n.earnings += w.price;
                n.placements += 1;
            }
        }
        let duration_s = records
            .iter()
            .map(|r| r.scheduled_ms / 1000.0)
            .fold(0.0, f64::max)
            .max(placements.map_or(0.0, |p| p.duration_ms / 1000.0));
        let bin_s = bin_width(duration_s);
        let bins = ((duration_s / bin_s).floor() as usize + 1).max(1);
        let bin_of = |r: &Record| ((r.scheduled_ms / 1000.0 / bin_s) as usize).min(bins - 1);
        let mut node_activity: BTreeMap<String, Vec<NodeBin>> = BTreeMap::new();
        for r in records {
            for (node, role) in node_roles(r) {
                let n = nodes.entry(node.to_string()).or_default();
                let series = node_activity
                    .entry(node.to_string())
                    .or_insert_with(|| vec![NodeBin::default(); bins]);
                let b = &mut series[bin_of(r)];
                match role {
                    Role::Served => {
                        n.served += 1;
                        b.served += 1;
                    }
                    Role::Forwarded => {
                        n.forwarded += 1;
                        b.forwarded += 1;
                    }
                    Role::Rejected => {
                        n.rejected += 1;
                        b.rejected += 1;
                    }
                }
            }
        }
        let earnings: Vec<f64> = nodes.values().map(|n| n.earnings).collect();
        let mut sla_over_time: Vec<TimeBin> = (0..bins)
            .map(|i| TimeBin {
                start_s: i as f64 * bin_s,
                requests: 0,
                sla_met: 0,
                sla_met_ratio: None,
                per_class: BTreeMap::new(),
            })
            .collect();
        let mut class_bins: BTreeMap<(&str, usize), (usize, usize)> = BTreeMap::new();
        for r in records {
            let i = bin_of(r);
            sla_over_time[i].requests += 1;
            sla_over_time[i].sla_met += usize::from(r.sla_met);
            let e = class_bins.entry((r.latency_class.as_str(), i)).or_default();
            e.0 += 1;
            e.1 += usize::from(r.sla_met);
        }
        for ((class, i), (n, met)) in class_bins {
            sla_over_time[i]
                .per_class
                .insert(class.to_string(), met as f64 / n as f64);
        }
        for b in &mut sla_over_time {
            b.sla_met_ratio = (b.requests > 0).then(|| b.sla_met as f64 / b.requests as f64);
        }
        let times: Vec<f64> = placed
            .iter()
            .filter(|p| p.sla_id.is_some())
            .map(|p| p.time_to_place_ms)
            .collect();
        Report {
            experiment: experiment.to_string(),
            overall,
            outcomes,
            per_class,
            per_function,
            spending_total: placed.iter().map(|p| p.spending()).sum(),
            earnings_jain: jain_index(&earnings),
            earnings_nodes: earnings.len(),
            nodes,
            time_to_place_ms: Percentiles::of(&times),
            placements_failed: placed.iter().filter(|p| p.sla_id.is_none()).count(),
            bin_s,
            sla_over_time,
            node_activity,
        }
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        let lat = |p: &Option<Percentiles>| match p {
            Some(p) => [p.p50, p.p95, p.p99].map(|ms| format!("{ms:.1}")),
            None => ["-", "-", "-"].map(String::from),
        };
        let _ = writeln!(s, "# IoT emulation report: {}\n", self.experiment);
        let o = &self.overall;
        let _ = writeln!(
            s,
            "- Requests: {} planned, {} sent, {} successful (2xx), {} dropped",
            o.requests, o.sent, o.ok, o.dropped
        );
        let _ = writeln!(s, "- **SLA respected: {}**", pct(o.sla_met_ratio));
        let _ = writeln!(s, "- **Success ratio: {}**", pct(o.success_ratio));
        if let Some(p) = &o.latency_ms {
            let _ = writeln!(
                s,
                "- Latency of successful requests: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms (max {:.1} ms)",
                p.p50, p.p95, p.p99, p.max
            );
        }
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "- Outcomes: {}", outcomes.join(", "));
        let _ = writeln!(s, "- Client spending: {:.4}", self.spending_total);
        match self.earnings_jain {
            Some(j) => {
                let _ = writeln!(
                    s,
                    "- Jain's fairness index of node earnings: {j:.3} (over {} nodes)",
                    self.earnings_nodes
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "- Jain's fairness index of node earnings: undefined (no earnings)"
                );
            }
        }
        if let Some(t) = &self.time_to_place_ms {
            let _ = writeln!(
                s,
                "- Time to place (auction + accept + provisioning): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms over {} placements; {} failed",
                t.p50, t.p95, t.max, t.count, self.placements_failed
            );
        } else if self.placements_failed > 0 {
            let _ = writeln!(s, "- Placements failed: {}", self.placements_failed);
        }

        let _ = writeln!(s, "\n## Per latency class\n");
        let group_columns = || {
            [
                right("requests"),
                right("SLA respected"),
                right("success"),
                right("p50 ms"),
                right("p95 ms"),
                right("p99 ms"),
            ]
        };
        let mut classes = MarkdownTable::new([left("class")].into_iter().chain(group_columns()));
        for (c, g) in &self.per_class {
            classes.row(
                [
                    c.clone(),
                    g.requests.to_string(),
                    pct(g.sla_met_ratio),
                    pct(g.success_ratio),
                ]
                .into_iter()
                .chain(lat(&g.latency_ms)),
            );
        }
        s.push_str(&classes.render());

        let _ = writeln!(s, "\n## Per function\n");
        let mut functions = MarkdownTable::new(
            [
                left("function"),
                left("class"),
                left("access node"),
                left("hosts"),
            ]
            .into_iter()
            .chain(group_columns())
            .chain([right("spending"), right("time to place ms")]),
        );
        for (name, f) in &self.per_function {
            let hosts = if f.hosts.is_empty() {
                f.placement_error
                    .clone()
                    .map_or("-".into(), |e| format!("not placed: {e}"))
            } else {
                f.hosts.join(", ")
            };
            functions.row(
                [
                    name.clone(),
                    f.latency_class.clone(),
                    f.access_node.clone(),
                    hosts.replace('|', "/"),
                    f.group.requests.to_string(),
                    pct(f.group.sla_met_ratio),
                    pct(f.group.success_ratio),
                ]
                .into_iter()
                .chain(lat(&f.group.latency_ms))
                .chain([
                    format!("{:.4}", f.spending),
                    f.time_to_place_ms.map_or("-".into(), |t| format!("{t:.0}")),
                ]),
            );
        }
        s.push_str(&functions.render());

        let _ = writeln!(s, "\n## Per node\n");
        let mut nodes = MarkdownTable::new([
            left("node"),
            right("placements"),
            right("earnings"),
            right("served"),
            right("forwarded"),
            right("rejected"),
        ]);
        for (name, n) in &self.nodes {
            nodes.row([
                name.clone(),
                n.placements.to_string(),
                format!("{:.4}", n.earnings),
                n.served.to_string(),
                n.forwarded.to_string(),
                n.rejected.to_string(),
            ]);
        }
        s.push_str(&nodes.render());
        let _ = writeln!(
            s,
            "\nPlots: `latency_cdf.svg`, `sla_over_time.svg`, `node_activity.svg`, `spending_earnings.svg`."
        );
        s
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let json = serde_json::to_string_pretty(self).context("serializing the report")?;
        std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
        std::fs::write(dir.join("report.md"), self.to_markdown()).context("writing report.md")?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::placement::Winner;

    /// `measured` is `exact` within the histogram's precision (3 significant digits).
    fn close(measured: f64, exact: f64) -> bool {
        measure::stats::within_precision(measured, exact)
    }

    #[test]
    fn percentiles_are_the_nearest_rank_within_the_histograms_precision() {
        // Nearest rank: p50 of 1..=100 is 50, p95 is 95, p99 is 99; read back from the
        // histogram, each is exact to 0.1 % rather than to the bit.
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v).unwrap();
        assert_eq!(p.count, 100);
        for (measured, exact) in [(p.p50, 50.0), (p.p95, 95.0), (p.p99, 99.0), (p.max, 100.0)] {
            assert!(close(measured, exact), "{p:?}");
        }
        assert!(close(Percentiles::of(&[7.0]).unwrap().p99, 7.0));
        assert!(close(
            Percentiles::of(&[1.0, 2.0, 3.0, 4.0]).unwrap().p50,
            2.0
        ));
        assert_eq!(Percentiles::of(&[]), None);
        let p = Percentiles::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!(p.count, 3);
        assert!(
            close(p.p50, 2.0) && close(p.max, 3.0) && close(p.mean, 2.0),
            "{p:?}"
        );
    }

    #[test]
    fn jains_index_is_one_for_equal_shares_and_one_over_n_for_a_monopoly() {
        assert_eq!(jain_index(&[2.0, 2.0, 2.0, 2.0]), Some(1.0));
        assert_eq!(jain_index(&[5.0, 0.0, 0.0, 0.0]), Some(0.25));
        // (1+2+3)^2 / (3 * (1+4+9)) = 36 / 42
        let j = jain_index(&[1.0, 2.0, 3.0]).unwrap();
        assert!((j - 36.0 / 42.0).abs() < 1e-12, "{j}");
        assert_eq!(jain_index(&[]), None);
        assert_eq!(jain_index(&[0.0, 0.0]), None);
    }

    fn rec(
        t_ms: f64,
        function: &str,
        class: &str,
        status: u16,
        latency: f64,
        path: &str,
        met: bool,
    ) -> Record {
        Record {
            scheduled_ms: t_ms,
            sent_ms: (status != 0).then_some(t_ms),
            function: function.into(),
            sla_id: format!("sla-{function}"),
            latency_class: class.into(),
            latency_max_ms: 100.0,
            access_node: "edge-a".into(),
            served_by: (status == 200).then(|| path.rsplit('>').next().unwrap().to_string()),
            hops: Some(path.split('>').count() as u32 - 1),
            path: (status != 0).then(|| path.to_string()),
            decision: None,
            reject_reason: None,
            status,
            outcome: match status {
                200 => outcome::OK,
                0 => outcome::DROPPED,
                _ => outcome::HTTP_ERROR,
            }
            .into(),
            latency_ms: (status != 0).then_some(latency),
            exec_ms: None,
            sla_met: met,
            error: None,
        }
    }

    /// 10 requests: f (normal) 6 served at edge-a or forwarded to cloud, g (low) 4.
    pub(crate) fn synthetic() -> (Vec<Record>, PlacementsFile) {
        let records = vec![
            rec(0.0, "f", "normal", 200, 10.0, "edge-a", true),
            rec(1000.0, "f", "normal", 200, 20.0, "edge-a", true),
            rec(2000.0, "f", "normal", 200, 30.0, "edge-a>cloud", true),
            rec(3000.0, "f", "normal", 200, 200.0, "edge-a>cloud", false),
            rec(4000.0, "f", "normal", 429, 1.0, "edge-a", false),
            rec(5000.0, "f", "normal", 0, 0.0, "", false),
            rec(0.0, "g", "low", 200, 5.0, "edge-b", true),
            rec(2500.0, "g", "low", 200, 15.0, "edge-b", true),
            rec(5000.0, "g", "low", 200, 50.0, "edge-b", false),
            rec(9000.0, "g", "low", 503, 2.0, "edge-b", false),
        ];
        let placement = |f: &str, winners: Vec<Winner>, ms: f64| Placement {
            function: f.into(),
            image: "echo".into(),
            access_node: "edge-a".into(),
            latency_class: if f == "f" { "normal" } else { "low" }.into(),
            latency_max_ms: 100.0,
            sla_id: Some(format!("sla-{f}")),
            invoke_url: Some("http://x".into()),
            invoke_via: Some("access_node".into()),
            winners,
            bids: 3,
            time_to_place_ms: ms,
            error: None,
        };
        let file = PlacementsFile {
            experiment: "synthetic".into(),
            seed: 1,
            duration_ms: 10_000.0,
            nodes: vec![
                "edge-a".into(),
                "edge-b".into(),
                "cloud".into(),
                "idle".into(),
            ],
            placements: vec![
                placement(
                    "f",
                    vec![Winner {
                        node: "edge-a".into(),
                        price: 3.0,
                    }],
                    400.0,
                ),
                placement(
                    "g",
                    vec![
                        Winner {
                            node: "edge-b".into(),
                            price: 1.0,
                        },
                        Winner {
                            node: "cloud".into(),
                            price: 1.0,
                        },
                    ],
                    200.0,
                ),
            ],
        };
        (records, file)
    }

    #[test]
    fn the_report_of_synthetic_records_has_the_right_numbers() {
        let (records, placements) = synthetic();
        let r = Report::compute("synthetic", &records, Some(&placements));
        assert_eq!(r.overall.requests, 10);
        assert_eq!(r.overall.ok, 7);
        assert_eq!(r.overall.sla_met, 5);
        assert_eq!(r.overall.dropped, 1);
        assert_eq!(r.overall.sent, 9);
        assert!((r.overall.success_ratio - 0.7).abs() < 1e-12);
        assert!((r.overall.sla_met_ratio - 0.5).abs() < 1e-12);
        assert_eq!(r.outcomes["ok"], 7);
        assert_eq!(r.outcomes["http_error"], 2);
        assert_eq!(r.outcomes["dropped"], 1);

        let normal = &r.per_class["normal"];
        assert_eq!((normal.requests, normal.ok, normal.sla_met), (6, 4, 3));
        let l = normal.latency_ms.as_ref().unwrap();
        // Successful latencies 10, 20, 30, 200 (nearest rank, within the histogram's precision).
        for (measured, exact) in [
            (l.p50, 20.0),
            (l.p95, 200.0),
            (l.p99, 200.0),
            (l.max, 200.0),
        ] {
            assert!(close(measured, exact), "{l:?}");
        }
        let low = &r.per_class["low"];
        assert!(close(low.latency_ms.as_ref().unwrap().p50, 15.0));
        assert!((low.sla_met_ratio - 0.5).abs() < 1e-12);

        let g = &r.per_function["g"];
        assert_eq!(g.spending, 2.0);
        assert_eq!(g.hosts, ["edge-b", "cloud"]);
        assert_eq!(g.time_to_place_ms, Some(200.0));
        assert_eq!(r.per_function["f"].spending, 3.0);
        assert_eq!(r.spending_total, 5.0);

        assert_eq!(r.nodes["edge-a"].earnings, 3.0);
        assert_eq!(r.nodes["cloud"].earnings, 1.0);
        assert_eq!(r.nodes["idle"].earnings, 0.0);
        // Earnings (edge-a 3, edge-b 1, cloud 1, idle 0): 25 / (4 * 11).
        assert_eq!(r.earnings_nodes, 4);
        assert!((r.earnings_jain.unwrap() - 25.0 / 44.0).abs() < 1e-12);

        // edge-a served 2, forwarded 2, rejected 1; cloud served 2; edge-b served 3, rejected 1.
        assert_eq!(
            (
                r.nodes["edge-a"].served,
                r.nodes["edge-a"].forwarded,
                r.nodes["edge-a"].rejected
            ),
            (2, 2, 1)
        );
        assert_eq!(r.nodes["cloud"].served, 2);
        assert_eq!(
            (r.nodes["edge-b"].served, r.nodes["edge-b"].rejected),
            (3, 1)
        );

        let t = r.time_to_place_ms.as_ref().unwrap();
        assert_eq!(t.count, 2);
        assert!(close(t.p50, 200.0) && close(t.max, 400.0), "{t:?}");

        // 1 s bins over 10 s: bin 0 has f@0 (met) and g@0 (met).
        assert_eq!(r.bin_s, 1.0);
        assert_eq!(r.sla_over_time[0].requests, 2);
        assert_eq!(r.sla_over_time[0].sla_met_ratio, Some(1.0));
        assert_eq!(r.sla_over_time[5].sla_met_ratio, Some(0.0));
        assert_eq!(r.sla_over_time[6].sla_met_ratio, None);
        assert_eq!(r.node_activity["edge-a"][2].forwarded, 1);
        assert_eq!(r.node_activity["cloud"][3].served, 1);

        let md = measure::markdown::squeeze_spaces(&r.to_markdown());
        assert!(md.contains("SLA respected: 50.0 %"), "{md}");
        assert!(
            md.contains("| g | low | edge-a | edge-b, cloud | 4 |"),
            "{md}"
        );
    }

    #[test]
    fn a_report_without_placements_still_has_ratios_and_latencies() {
        let (records, _) = synthetic();
        let r = Report::compute("no placements", &records, None);
        assert_eq!(r.overall.ok, 7);
        assert_eq!(r.spending_total, 0.0);
        assert_eq!(r.earnings_jain, None);
        assert_eq!(r.per_function["f"].sla_id.as_deref(), Some("sla-f"));
        assert!(r.to_markdown().contains("undefined"));
    }
}
