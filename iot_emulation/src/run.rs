//! A whole experiment: load the scenario, place the functions, send the planned requests
//! open-loop, cancel the placements, and write the records, the report and the plots.
//!
//! Output directory: `requests.csv` (one row per request), `placements.json` (the experiment,
//! the federation's nodes and each placement with winners, prices and time to place),
//! `report.json`, `report.md` and the SVG plots listed in [`crate::plots::FILES`].

use crate::dispatch::{
    DispatchOptions, Target, device_client, device_client_trusting, dispatch, progress_bar,
};
use crate::payload::prepare;
use crate::placement::{Placement, cancel, fog_nodes, place};
use crate::plan::{plan_requests, resolve_latencies};
use crate::plots;
use crate::record::{read_csv_file, write_csv_file};
use crate::report::{PlacementsFile, Report};
use crate::rng::{Stream, stream};
use crate::scenario::{Scenario, Target as ScenarioTarget, placement_order};
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `iot-emulation run` was asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: PathBuf,
    /// Overrides `experiment.marketplace_url`.
    pub marketplace_url: Option<String>,
    /// Default: `target/iot-emulation/<name>-<unix seconds>`.
    pub out: Option<PathBuf>,
    /// Overrides `experiment.duration`.
    pub duration: Option<Duration>,
    /// Overrides `experiment.seed`.
    pub seed: Option<u64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// PEM file of the CA to trust for `https://` marketplaces and nodes (`testbed run --tls`).
    pub tls_ca: Option<PathBuf>,
    /// The client API token, when the marketplace requires one (`marketplace token create`).
    /// Sent to the marketplace only, never to fog nodes.
    pub token: Option<String>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub out_dir: PathBuf,
    pub report: Report,
    pub placements: Vec<Placement>,
    pub requests: usize,
}

/// Loads the scenario, applies the overrides and runs it.
pub async fn run(opts: RunOptions) -> Result<RunOutcome> {
    let mut scenario = Scenario::load(&opts.scenario)?;
    if let Some(url) = &opts.marketplace_url {
        scenario.experiment.marketplace_url = url.trim_end_matches('/').to_string();
    }
    if let Some(d) = opts.duration {
        anyhow::ensure!(!d.is_zero(), "--duration must be more than 0");
        scenario.experiment.duration = d;
    }
    if let Some(seed) = opts.seed {
        scenario.experiment.seed = seed;
    }
    let out_dir = opts.out.clone().unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("target/iot-emulation").join(format!("{}-{now}", scenario.experiment.name))
    });
    let client = device_client_trusting(opts.tls_ca.as_deref())?;
    run_scenario_with(
        &scenario,
        &out_dir,
        opts.progress,
        client,
        opts.token.as_deref(),
    )
    .await
}

/// Runs a parsed scenario, writing everything into `out_dir`.
pub async fn run_scenario(
    scenario: &Scenario,
    out_dir: &Path,
    progress: bool,
) -> Result<RunOutcome> {
    run_scenario_with(scenario, out_dir, progress, device_client(), None).await
}

/// [`run_scenario`] with the given HTTP client (e.g. one trusting a federation's CA) and
/// client API token.
pub async fn run_scenario_with(
    scenario: &Scenario,
    out_dir: &Path,
    progress: bool,
    client: reqwest::Client,
    token: Option<&str>,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let exp = &scenario.experiment;
    let marketplace = exp.marketplace_url.as_str();
    let health = client
        .get(format!("{marketplace}/api/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match health {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => anyhow::bail!(
            "the marketplace at {marketplace} is not healthy (GET /api/health answered {})",
            r.status()
        ),
        Err(e) => anyhow::bail!(
            "no marketplace at {marketplace} ({e}); start the local federation with `just run`, \
             or pass --marketplace URL"
        ),
    }

    // Every node of the federation, for the fairness index (best effort).
    let nodes = match fog_nodes(&client, marketplace).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "warning: cannot list the federation's nodes ({e}); the fairness index covers winners only"
            );
            Vec::new()
        }
    };

    // Place the functions, chains in order.
    let resolved = resolve_latencies(&scenario.functions, exp.seed);
    let order = placement_order(&scenario.functions)?;
    let mut placements: Vec<Option<Placement>> = vec![None; scenario.functions.len()];
    for i in order {
        let spec = &scenario.functions[i];
        let r = &resolved[i];
        let access = match &spec.target {
            ScenarioTarget::Node(n) => Ok(n.clone()),
            ScenarioTarget::ChainAfter(prev) => {
                let j = scenario
                    .function_index(prev)
                    .context("chain predecessor exists (checked when parsing)")?;
                match placements[j]
                    .as_ref()
                    .and_then(|p| p.host().map(str::to_string))
                {
                    Some(host) => Ok(host),
                    None => Err(format!("its chain predecessor `{prev}` was not placed")),
                }
            }
        };
        let p = match access {
            Ok(node) => {
                place(
                    &client,
                    marketplace,
                    token,
                    spec,
                    &node,
                    &r.class,
                    r.latency_max,
                )
                .await
            }
            Err(e) => Placement::failed(spec, "", &r.class, r.latency_max.as_millis_f64(), e),
        };
        match (&p.error, p.host()) {
            (None, Some(host)) => eprintln!(
                "placed {} ({}, {}) for devices at {} on {} for {:.4} in {:.0} ms via {}",
                p.function,
                r.class,
                r.latency_max,
                p.access_node,
                host,
                p.spending(),
                p.time_to_place_ms,
                p.invoke_via.as_deref().unwrap_or("?")
            ),
            (Some(e), _) => eprintln!("could not place {}: {e}", p.function),
            (None, None) => eprintln!("placed {} with no winner?", p.function),
        }
        placements[i] = Some(p);
    }
    let placements: Vec<Placement> = placements.into_iter().flatten().collect();
    let by_function = |name: &str| placements.iter().find(|p| p.function == name);

    // The plan and where each function's requests go.
    let plan = plan_requests(&scenario.functions, exp.duration, exp.seed);
    let targets: Vec<Target> = scenario
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = by_function(&f.name);
            let usable = p.filter(|p| p.error.is_none());
            Target {
                function: f.name.clone(),
                sla_id: p.and_then(|p| p.sla_id.clone()).unwrap_or_default(),
                latency_class: resolved[i].class.clone(),
                latency_max_ms: resolved[i].latency_max.as_millis_f64(),
                access_node: p.map(|p| p.access_node.clone()).unwrap_or_default(),
                url: usable.and_then(|p| p.invoke_url.clone()),
                query: f.query.clone(),
                payload: prepare(&f.payload, &mut stream(exp.seed, Stream::Payload, i as u64)),
                tags: f.name.clone(),
                not_placed: p.and_then(|p| p.error.clone()),
            }
        })
        .collect();
    let total = plan.len();
    eprintln!(
        "sending {total} requests over {:?} (open loop, at most {} in flight)",
        exp.duration, exp.max_in_flight
    );
    let bar = if progress {
        progress_bar(total as u64)
    } else {
        ProgressBar::hidden()
    };
    let records = dispatch(
        client.clone(),
        Arc::new(targets),
        plan,
        DispatchOptions {
            max_in_flight: exp.max_in_flight,
            request_timeout: exp.request_timeout,
        },
        bar,
    )
    .await;

    if !exp.keep_functions {
        for p in &placements {
            if let Some(id) = &p.sla_id
                && let Err(e) = cancel(&client, marketplace, token, id).await
            {
                eprintln!("warning: cancelling {} ({id}): {e}", p.function);
            }
        }
    }

    let file = PlacementsFile {
        experiment: exp.name.clone(),
        seed: exp.seed,
        duration_ms: exp.duration.as_secs_f64() * 1000.0,
        nodes,
        placements: placements.clone(),
    };
    write_csv_file(&records, &out_dir.join("requests.csv"))?;
    std::fs::write(
        out_dir.join("placements.json"),
        serde_json::to_string_pretty(&file).context("serializing placements")?,
    )
    .context("writing placements.json")?;
    let report = Report::compute(&exp.name, &records, Some(&file));
    report.write(out_dir)?;
    plots::write_all(out_dir, &records, &report)?;
    Ok(RunOutcome {
        out_dir: out_dir.to_path_buf(),
        report,
        placements,
        requests: records.len(),
    })
}

/// `iot-emulation report`: re-renders the report and plots from a records file (and the
/// `placements.json` beside it, when there is one).
pub fn render_report(records_path: &Path, out_dir: &Path) -> Result<Report> {
    let records = read_csv_file(records_path)?;
    let beside = records_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("placements.json");
    let placements: Option<PlacementsFile> = if beside.is_file() {
        let text = std::fs::read_to_string(&beside)
            .with_context(|| format!("reading {}", beside.display()))?;
        Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", beside.display()))?)
    } else {
        None
    };
    let name = placements.as_ref().map_or_else(
        || {
            records_path
                .parent()
                .and_then(|p| p.file_name())
                .map_or("experiment".to_string(), |n| {
                    n.to_string_lossy().into_owned()
                })
        },
        |p| p.experiment.clone(),
    );
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let report = Report::compute(&name, &records, placements.as_ref());
    report.write(out_dir)?;
    plots::write_all(out_dir, &records, &report)?;
    Ok(report)
}

/// Writes the records of a cron server (and their report and plots) into `out_dir`.
pub fn write_cron_records(records: &[crate::record::Record], out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    write_csv_file(records, &out_dir.join("requests.csv"))?;
    let report = Report::compute("cron", records, None);
    report.write(out_dir)?;
    plots::write_all(out_dir, records, &report)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::write_csv_file;
    use crate::report::tests::synthetic;

    #[test]
    fn the_report_command_re_renders_from_a_records_file_and_its_placements() {
        let (records, placements) = synthetic();
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("requests.csv");
        write_csv_file(&records, &csv).unwrap();
        std::fs::write(
            dir.path().join("placements.json"),
            serde_json::to_string(&placements).unwrap(),
        )
        .unwrap();
        let out = dir.path().join("again");
        let report = render_report(&csv, &out).unwrap();
        assert_eq!(report.experiment, "synthetic");
        assert_eq!(report.spending_total, 5.0);
        assert_eq!(report.overall.ok, 7);
        for f in ["report.json", "report.md"]
            .iter()
            .chain(plots::FILES.iter())
        {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["overall"]["sla_met_ratio"], 0.5);
    }
}
