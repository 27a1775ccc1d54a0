//! The fault campaign (`testbed faults`, `just faults`): each scenario runs on a fresh local
//! federation under open-loop load sent to the function's access node, injects one fault, and
//! counts from the client's side what it cost: requests sent, ok and failed, the time from the
//! fault to the first success and to the success rate of before the fault, and the placements
//! lost. Results go to `faults.json` and `faults.md`.

use crate::bench::{Machine, commit_hash, write_results};
use crate::bench_offload::{echo_sla, place_function};
use crate::launcher::{Federation, LaunchOptions};
use crate::load::{self, LoadOptions, RequestRecord, Schedule, Stream};
use crate::topology::{Topology, TopologyFileExt};
use anyhow::Context;
use measure::markdown::{MarkdownTable, left, right};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The node the devices of every scenario are attached to (the function's access node).
pub const ACCESS_NODE: &str = "edge-factory";

/// One fault and how it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// `kill -9` of the function's host (of its first host when it has several).
    KillHost,
    /// `kill -9` of the access node's parent in the overlay.
    KillAccessParent,
    /// `kill -9` of the marketplace, started again 5 s later on the same database.
    KillMarketplace,
    /// `SIGSTOP` of the host for 20 s, then `SIGCONT`.
    StopHost,
    /// `kill -9` of the host, started again 5 s later on its address and state.
    RestartDeadHost,
}

/// One scenario: a fault on a function placed on `copies` nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub fault: Fault,
    pub copies: usize,
}

/// The scenarios of `just faults`, in order.
pub const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "kill-host",
        fault: Fault::KillHost,
        copies: 1,
    },
    Scenario {
        name: "kill-host-2-copies",
        fault: Fault::KillHost,
        copies: 2,
    },
    Scenario {
        name: "kill-access-parent",
        fault: Fault::KillAccessParent,
        copies: 1,
    },
    Scenario {
        name: "kill-marketplace",
        fault: Fault::KillMarketplace,
        copies: 1,
    },
    Scenario {
        name: "sigstop-host-20s",
        fault: Fault::StopHost,
        copies: 1,
    },
    Scenario {
        name: "restart-dead-host",
        fault: Fault::RestartDeadHost,
        copies: 1,
    },
];

/// How the campaign runs.
#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub topology: PathBuf,
    /// Requests per second sent to the access node.
    pub rate: f64,
    /// Load before the fault (the first 3 s are a warm-up left out of the baseline).
    pub before: Duration,
    /// Load after the fault.
    pub after: Duration,
    /// Only the scenarios with these names (all when empty).
    pub only: Vec<String>,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
}

/// What one scenario cost, counted from the client's side.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// The node the fault hit.
    pub target: String,
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    /// Failed requests due after the fault.
    pub failed_after_fault: usize,
    /// Success ratio over the settled part before the fault.
    pub baseline_success: f64,
    /// From the fault to the first successful request due after it.
    pub first_success_ms: Option<f64>,
    /// From the fault to the start of the first second from which every second is at least
    /// as successful as before the fault (minus one point).
    pub recovered_ms: Option<f64>,
    /// Placements not active any more (neither live, provisioning, reserved nor degraded) at
    /// the end.
    pub placements_lost: usize,
}

/// The campaign's results (`faults.json`).
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub benchmark: &'static str,
    pub machine: Machine,
    pub commit: Option<String>,
    pub rate_per_s: f64,
    pub before_s: f64,
    pub after_s: f64,
    pub scenarios: Vec<ScenarioResult>,
}

impl FaultReport {
    pub fn markdown(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.0}"));
        let mut table = MarkdownTable::new([
            left("scenario"),
            left("fault hit"),
            right("sent"),
            right("ok"),
            right("failed"),
            right("failed after fault"),
            right("baseline ok %"),
            right("first success ms"),
            right("recovered ms"),
            right("placements lost"),
        ]);
        for r in &self.scenarios {
            table.row([
                r.scenario.name.to_string(),
                r.target.clone(),
                r.sent.to_string(),
                r.ok.to_string(),
                r.failed.to_string(),
                r.failed_after_fault.to_string(),
                format!("{:.1}", r.baseline_success * 100.0),
                ms(r.first_success_ms),
                ms(r.recovered_ms),
                r.placements_lost.to_string(),
            ]);
        }
        format!(
            "# Fault campaign\n\n\
             Open-loop POSTs to the access node `{ACCESS_NODE}` at {} req/s, {} s before the fault \
             and {} s after it, each scenario on a fresh local federation; commit {}, on {} \
             ({}, {} cores).\n\n{}",
            self.rate_per_s,
            self.before_s,
            self.after_s,
            self.commit.as_deref().unwrap_or("unknown"),
            self.machine.hostname,
            self.machine.cpu_model,
            self.machine.cores,
            table.render()
        )
    }
}

/// Runs the scenarios one after the other and writes the results into `options.out`.
pub async fn run_faults(options: &FaultOptions) -> anyhow::Result<FaultReport> {
    let mut results = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| options.only.is_empty() || options.only.iter().any(|o| o == s.name))
    {
        eprintln!("--- {}", scenario.name);
        let result = run_scenario(options, *scenario)
            .await
            .with_context(|| format!("scenario {}", scenario.name))?;
        eprintln!(
            "{}: {} sent, {} ok, first success {:?} ms, recovered {:?} ms, {} placements lost",
            scenario.name,
            result.sent,
            result.ok,
            result.first_success_ms.map(|v| v.round()),
            result.recovered_ms.map(|v| v.round()),
            result.placements_lost
        );
        results.push(result);
    }
    let report = FaultReport {
        benchmark: "faults",
        machine: Machine::detect(),
        commit: commit_hash(),
        rate_per_s: options.rate,
        before_s: options.before.as_secs_f64(),
        after_s: options.after.as_secs_f64(),
        scenarios: results,
    };
    write_results(&options.out, "faults", &report, &report.markdown())?;
    Ok(report)
}

async fn run_scenario(
    options: &FaultOptions,
    scenario: Scenario,
) -> anyhow::Result<ScenarioResult> {
    let topology = Topology::from_file(&options.topology)?;
    let parent = topology
        .node(ACCESS_NODE)
        .and_then(|n| n.parent.clone())
        .with_context(|| format!("the topology has no node `{ACCESS_NODE}` with a parent"))?;
    let dir = tempfile::Builder::new()
        .prefix("fogmarket-faults-")
        .tempdir()?;
    let mut launch = LaunchOptions::new(dir.path().join("run"))?;
    launch.bin_dir = options.bin_dir.clone();
    launch.readiness_deadline = Duration::from_secs(60);
    launch.emulate_links = true;
    let mut fed = Federation::start(topology, launch).await?;
    let client = fed.client().clone();
    let placed = place_function(
        &client,
        &fed.marketplace_url(),
        echo_sla(scenario.copies),
        ACCESS_NODE,
    )
    .await?;
    let host = placed
        .hosts
        .iter()
        .find(|h| h.as_str() != ACCESS_NODE)
        .or_else(|| placed.hosts.first())
        .cloned()
        .context("the placement has no host")?;
    let target = match scenario.fault {
        Fault::KillAccessParent => parent,
        Fault::KillMarketplace => "marketplace".to_string(),
        _ => host,
    };
    // The load measures a working function: wait until the access node routes it.
    crate::poll::poll(
        Duration::from_secs(15),
        Duration::from_millis(50),
        async || {
            let answer = client.post(&placed.invoke_url).body("ping").send().await;
            Ok(match answer {
                Ok(r) if r.status().is_success() => crate::poll::Check::Done(()),
                Ok(r) => crate::poll::Check::NotYet(format!("HTTP {}", r.status())),
                Err(e) => crate::poll::Check::NotYet(e.to_string()),
            })
        },
        |seen| anyhow::anyhow!("the access node never served the function (last: {seen})"),
    )
    .await?;
    let after = match scenario.fault {
        // The host stays stopped for 20 s; watch 10 s more once it continues.
        Fault::StopHost => options.after.max(Duration::from_secs(30)),
        _ => options.after,
    };
    let start = Instant::now() + Duration::from_millis(200);
    let streams = vec![Stream::post(
        ACCESS_NODE,
        placed.invoke_url.clone(),
        "ping",
        Schedule::Constant {
            rate: options.rate,
            duration: options.before + after,
        },
    )];
    let load_options = LoadOptions {
        request_timeout: Duration::from_secs(2),
        start: Some(start),
        ..LoadOptions::default()
    };
    let load_client = load::load_client()?;
    let load = tokio::spawn(async move { load::run(&load_client, streams, &load_options).await });

    tokio::time::sleep_until(start + options.before).await;
    inject(&mut fed, scenario.fault, &target).await?;
    let result = load.await.context("the load task")??;

    let lost = placements_lost(&client, &fed.marketplace_url(), &placed.sla_id).await;
    let outcome = tally(scenario, target, &result.records, options.before, lost);
    fed.stop().await?;
    Ok(outcome)
}

/// Applies `fault` to `target`, returning once it is in place (for the timed ones, once it
/// is over).
async fn inject(fed: &mut Federation, fault: Fault, target: &str) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    match fault {
        Fault::KillHost | Fault::KillAccessParent => fed.kill_node(target).await?,
        Fault::KillMarketplace => {
            fed.kill_marketplace().await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            fed.restart_marketplace().await?;
        }
        Fault::StopHost => {
            let pid = fed
                .node_pid(target)
                .and_then(|p| i32::try_from(p).ok())
                .map(nix::unistd::Pid::from_raw)
                .with_context(|| format!("`{target}` does not run"))?;
            kill(pid, Signal::SIGSTOP).context("SIGSTOP")?;
            tokio::time::sleep(Duration::from_secs(20)).await;
            kill(pid, Signal::SIGCONT).context("SIGCONT")?;
        }
        Fault::RestartDeadHost => {
            fed.kill_node(target).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            fed.restart_node(target).await?;
        }
    }
    Ok(())
}

/// 1 when the placement is over or gone, 0 while it is active (even degraded).
async fn placements_lost(client: &reqwest::Client, marketplace: &str, sla_id: &str) -> usize {
    // The marketplace may just have restarted: give it a moment to answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client
            .get(format!("{marketplace}/api/function/{sla_id}"))
            .send()
            .await;
        if let Ok(r) = answer {
            let found = r.status().is_success();
            let state = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["state"].as_str().map(str::to_string))
                .unwrap_or_default();
            let active = found
                && matches!(
                    state.as_str(),
                    "live" | "provisioning" | "reserved" | "degraded"
                );
            return usize::from(!active);
        }
        if Instant::now() >= deadline {
            return 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The client-side figures of one scenario, from its records (times are since the start of
/// the load; the fault came at `fault`).
pub fn tally(
    scenario: Scenario,
    target: String,
    records: &[RequestRecord],
    fault: Duration,
    placements_lost: usize,
) -> ScenarioResult {
    let warm_up = Duration::from_secs(3).min(fault);
    let sent: Vec<&RequestRecord> = records.iter().filter(|r| r.sent.is_some()).collect();
    let ok = sent.iter().filter(|r| r.outcome.is_success()).count();
    let ratio = |rs: &[&RequestRecord]| {
        let ok = rs.iter().filter(|r| r.outcome.is_success()).count();
        if rs.is_empty() {
            1.0
        } else {
            ok as f64 / rs.len() as f64
        }
    };
    let before: Vec<&RequestRecord> = sent
        .iter()
        .copied()
        .filter(|r| r.scheduled >= warm_up && r.scheduled < fault)
        .collect();
    let baseline = ratio(&before);
    let after: Vec<&RequestRecord> = sent
        .iter()
        .copied()
        .filter(|r| r.scheduled >= fault)
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let first_success_ms = after
        .iter()
        .find(|r| r.outcome.is_success())
        .map(|r| ms(r.scheduled.saturating_sub(fault)));
    // Whole seconds after the fault; recovered from the first one after which none falls
    // below the baseline (one point of slack).
    let last = after
        .last()
        .map_or(0, |r| r.scheduled.saturating_sub(fault).as_secs());
    let seconds: Vec<f64> = (0..=last)
        .map(|s| {
            let in_second: Vec<&RequestRecord> = after
                .iter()
                .copied()
                .filter(|r| r.scheduled.saturating_sub(fault).as_secs() == s)
                .collect();
            ratio(&in_second)
        })
        .collect();
    let recovered_ms = (0..seconds.len())
        .find(|&s| seconds[s..].iter().all(|&r| r + 0.01 >= baseline))
        .map(|s| (s as f64) * 1000.0);
    ScenarioResult {
        scenario,
        target,
        sent: sent.len(),
        ok,
        failed: sent.len() - ok,
        failed_after_fault: after.iter().filter(|r| !r.outcome.is_success()).count(),
        baseline_success: baseline,
        first_success_ms,
        recovered_ms,
        placements_lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

    fn record(at_ms: u64, ok: bool) -> RequestRecord {
        RequestRecord {
            stream: 0,
            scheduled: Duration::from_millis(at_ms),
            sent: Some(Duration::from_millis(at_ms)),
            outcome: if ok {
                Outcome::Status(200)
            } else {
                Outcome::Status(503)
            },
            latency: Some(Duration::from_millis(1)),
            served_by: None,
            path: None,
            decision: None,
            reject_reason: None,
        }
    }

    #[test]
    fn the_tally_counts_the_outage_from_the_fault_to_the_first_success_and_to_recovery() {
        // 10 req/s; fault at 5 s; everything fails from 5.0 s to 7.3 s, then succeeds.
        let records: Vec<RequestRecord> = (0..100)
            .map(|i| {
                let at = i * 100;
                record(at, !(5_000..7_300).contains(&at))
            })
            .collect();
        let r = tally(
            SCENARIOS[0],
            "h".into(),
            &records,
            Duration::from_secs(5),
            0,
        );
        assert_eq!(r.sent, 100);
        assert_eq!(r.failed, 23);
        assert_eq!(r.failed_after_fault, 23);
        assert_eq!(r.baseline_success, 1.0);
        assert_eq!(r.first_success_ms, Some(2_300.0));
        // Second 2 (7.0-8.0 s) still has 3 failures: recovered from second 3.
        assert_eq!(r.recovered_ms, Some(3_000.0));
    }

    #[test]
    fn a_fault_nobody_notices_costs_nothing() {
        let records: Vec<RequestRecord> = (0..50).map(|i| record(i * 100, true)).collect();
        let r = tally(
            SCENARIOS[2],
            "p".into(),
            &records,
            Duration::from_secs(2),
            0,
        );
        assert_eq!(r.failed, 0);
        assert_eq!(r.first_success_ms, Some(0.0));
        assert_eq!(r.recovered_ms, Some(0.0));
    }

    #[test]
    fn a_function_that_never_comes_back_never_recovers() {
        let records: Vec<RequestRecord> = (0..50).map(|i| record(i * 100, i < 20)).collect();
        let r = tally(
            SCENARIOS[0],
            "h".into(),
            &records,
            Duration::from_secs(2),
            1,
        );
        assert_eq!(r.first_success_ms, None);
        assert_eq!(r.recovered_ms, None);
        assert_eq!(r.placements_lost, 1);
    }

    #[test]
    fn the_markdown_names_every_scenario_and_says_never_for_no_recovery() {
        let records: Vec<RequestRecord> = (0..50).map(|i| record(i * 100, i < 20)).collect();
        let report = FaultReport {
            benchmark: "faults",
            machine: Machine::detect(),
            commit: None,
            rate_per_s: 10.0,
            before_s: 2.0,
            after_s: 3.0,
            scenarios: vec![tally(
                SCENARIOS[0],
                "h".into(),
                &records,
                Duration::from_secs(2),
                1,
            )],
        };
        let md = report.markdown();
        assert!(md.contains("kill-host"), "{md}");
        assert!(md.contains("never"), "{md}");
    }
}
