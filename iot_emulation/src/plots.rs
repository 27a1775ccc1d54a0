//! SVG plots of a run (plotters' SVG backend: text is left to the SVG viewer, so no system font
//! is needed):
//!
//! - `latency_cdf.svg`: CDF of successful requests' latency per latency class (log scale), with
//!   each class's `latencyMax` as a vertical line;
//! - `sla_over_time.svg`: SLA-respected ratio per time bin, overall and per class;
//! - `node_activity.svg`: requests served, forwarded and rejected per node per time bin;
//! - `spending_earnings.svg`: client spending per function and earnings per node.

use crate::record::Record;
use crate::report::Report;
use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files [`write_all`] writes.
pub const FILES: [&str; 4] = [
    "latency_cdf.svg",
    "sla_over_time.svg",
    "node_activity.svg",
    "spending_earnings.svg",
];

fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// Writes every plot into `dir`; returns their paths.
pub fn write_all(dir: &Path, records: &[Record], report: &Report) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    latency_cdf(&paths[0], records)?;
    sla_over_time(&paths[1], report)?;
    node_activity(&paths[2], report)?;
    spending_earnings(&paths[3], report)?;
    Ok(paths)
}

/// Latency CDF per class.
pub fn latency_cdf(path: &Path, records: &[Record]) -> Result<()> {
    let mut classes: BTreeMap<&str, (f64, Vec<f64>)> = BTreeMap::new();
    for r in records {
        let e = classes
            .entry(r.latency_class.as_str())
            .or_insert((r.latency_max_ms, Vec::new()));
        if r.is_success()
            && let Some(l) = r.latency_ms
        {
            e.1.push(l.max(0.01));
        }
    }
    for (_, v) in classes.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    let all = classes
        .values()
        .flat_map(|(m, v)| v.iter().copied().chain([*m]));
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo * 0.8, hi * 1.25)
    } else {
        (0.1, 1000.0)
    };

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency CDF per latency class (successful requests)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.02)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of requests")
        .draw()
        .map_err(pe)?;
    for (i, (class, (latency_max, values))) in classes.iter().enumerate() {
        let c = color(i);
        let n = values.len() as f64;
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(k, v)| (*v, (k + 1) as f64 / n))
            .collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(pe)?
            .label(format!("{class} (n = {})", values.len()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                vec![(*latency_max, 0.0), (*latency_max, 1.02)],
                c.mix(0.5).stroke_width(1),
            ))
            .map_err(pe)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

/// SLA-respected ratio over time.
pub fn sla_over_time(path: &Path, report: &Report) -> Result<()> {
    let end = report.sla_over_time.len() as f64 * report.bin_s;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("SLA respected per {} s bin", report.bin_s),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..end.max(1.0), 0.0..1.05)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc("time since the start of sending (s)")
        .y_desc("SLA-respected ratio")
        .draw()
        .map_err(pe)?;
    let mid = |i: usize| (i as f64 + 0.5) * report.bin_s;
    let overall: Vec<(f64, f64)> = report
        .sla_over_time
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.sla_met_ratio.map(|r| (mid(i), r)))
        .collect();
    chart
        .draw_series(LineSeries::new(overall, BLACK.stroke_width(3)))
        .map_err(pe)?
        .label("all requests")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    for (i, class) in report.per_class.keys().enumerate() {
        let c = color(i);
        let points: Vec<(f64, f64)> = report
            .sla_over_time
            .iter()
            .enumerate()
            .filter_map(|(k, b)| b.per_class.get(class).map(|r| (mid(k), *r)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(1)))
            .map_err(pe)?
            .label(class.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    root.present().map_err(pe)?;
    Ok(())
}

/// Served, forwarded and rejected requests per node over time, one panel per node.
pub fn node_activity(path: &Path, report: &Report) -> Result<()> {
    let nodes: Vec<(&String, &Vec<crate::report::NodeBin>)> = report.node_activity.iter().collect();
    let cols = 2usize;
    let rows = nodes.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1000, (260 * rows + 50) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let root = root
        .titled(
            &format!(
                "Requests per node per {} s bin: served (green), forwarded (blue), rejected (red)",
                report.bin_s
            ),
            ("sans-serif", 18),
        )
        .map_err(pe)?;
    if nodes.is_empty() {
        root.draw(&Text::new(
            "no request reached a node",
            (40, 40),
            ("sans-serif", 16),
        ))
        .map_err(pe)?;
        root.present().map_err(pe)?;
        return Ok(());
    }
    let panels = root.split_evenly((rows, cols));
    let end = report.sla_over_time.len() as f64 * report.bin_s;
    for ((name, bins), panel) in nodes.iter().zip(panels.iter()) {
        let max = bins
            .iter()
            .map(|b| b.served.max(b.forwarded).max(b.rejected))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(name.as_str(), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..end.max(1.0), 0.0..max * 1.1)
            .map_err(pe)?;
        chart
            .configure_mesh()
            .x_desc("s")
            .y_desc("requests")
            .draw()
            .map_err(pe)?;
        let series = |f: fn(&crate::report::NodeBin) -> usize| -> Vec<(f64, f64)> {
            bins.iter()
                .enumerate()
                .map(|(i, b)| ((i as f64 + 0.5) * report.bin_s, f(b) as f64))
                .collect()
        };
        let green = RGBColor(0, 150, 60);
        let blue = RGBColor(30, 90, 200);
        let red = RGBColor(210, 40, 40);
        chart
            .draw_series(LineSeries::new(series(|b| b.served), green.stroke_width(2)))
            .map_err(pe)?;
        chart
            .draw_series(LineSeries::new(
                series(|b| b.forwarded),
                blue.stroke_width(2),
            ))
            .map_err(pe)?;
        chart
            .draw_series(LineSeries::new(series(|b| b.rejected), red.stroke_width(2)))
            .map_err(pe)?;
    }
    root.present().map_err(pe)?;
    Ok(())
}

fn bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    items: &[(String, f64)],
    fill: RGBColor,
) -> Result<()> {
    let n = items.len().max(1);
    let max = items.iter().map(|i| i.1).fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..max)
        .map_err(pe)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_style(("sans-serif", 11))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                items.get(*i).map(|x| x.0.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .y_desc(y_desc)
        .draw()
        .map_err(pe)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                fill.mix(0.8).filled(),
            )
        }))
        .map_err(pe)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{v:.3}"),
                (SegmentValue::CenterOf(i), *v),
                ("sans-serif", 13),
            )
        }))
        .map_err(pe)?;
    Ok(())
}

/// Client spending per function next to earnings per node.
pub fn spending_earnings(path: &Path, report: &Report) -> Result<()> {
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let (left, right) = root.split_horizontally(520);
    let spending: Vec<(String, f64)> = report
        .per_function
        .iter()
        .map(|(k, f)| (k.clone(), f.spending))
        .collect();
    let earnings: Vec<(String, f64)> = report
        .nodes
        .iter()
        .map(|(k, n)| (k.clone(), n.earnings))
        .collect();
    bars(
        &left,
        &format!(
            "Client spending per function (total {:.3})",
            report.spending_total
        ),
        "price paid",
        &spending,
        RGBColor(200, 120, 30),
    )?;
    let jain = report
        .earnings_jain
        .map_or("undefined".to_string(), |j| format!("{j:.3}"));
    bars(
        &right,
        &format!("Earnings per node (Jain's index {jain})"),
        "price earned",
        &earnings,
        RGBColor(40, 110, 190),
    )?;
    root.present().map_err(pe)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::synthetic;

    #[test]
    fn every_plot_of_a_synthetic_run_is_a_non_trivial_svg() {
        let (records, placements) = synthetic();
        let report = Report::compute("synthetic", &records, Some(&placements));
        let dir = tempfile::tempdir().unwrap();
        let paths = write_all(dir.path(), &records, &report).unwrap();
        assert_eq!(paths.len(), 4);
        for p in &paths {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(svg.starts_with("<svg"), "{}", p.display());
            assert!(
                svg.len() > 2_000,
                "{} is only {} bytes",
                p.display(),
                svg.len()
            );
            assert!(
                svg.contains("<polyline") || svg.contains("<rect"),
                "{}",
                p.display()
            );
        }
        let cdf = std::fs::read_to_string(&paths[0]).unwrap();
        assert!(
            cdf.contains("normal (n = 4)") && cdf.contains("low (n = 3)"),
            "{cdf}"
        );
        let nodes = std::fs::read_to_string(&paths[2]).unwrap();
        for n in ["edge-a", "edge-b", "cloud"] {
            assert!(nodes.contains(n), "node_activity lacks {n}");
        }
        let money = std::fs::read_to_string(&paths[3]).unwrap();
        assert!(money.contains("Jain") && money.contains("idle"), "{money}");
        assert!(money.matches("<rect").count() >= 6, "bars are drawn");
    }

    #[test]
    fn plots_of_an_empty_run_are_still_written() {
        let report = Report::compute("empty", &[], None);
        let dir = tempfile::tempdir().unwrap();
        let paths = write_all(dir.path(), &[], &report).unwrap();
        assert!(paths.iter().all(|p| p.is_file()));
    }
}
