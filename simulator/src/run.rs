//! One simulated experiment: a federation, a workload, a seed, and what came of it.
//!
//! Every function of the workload is placed once at the start through the [`Market`] (relay,
//! bids, auction), deployed on each winning node's own FaaS system (one per fog node, as each
//! fog node runs its own gateway), then invoked by a seeded Poisson process at its target
//! (access) node. An invocation travels the tree path from the access node to its host, runs
//! there (cold starts, queueing, execution as the FaaS system simulates them) and travels back;
//! its SLA is met when the request succeeded within `latencyMax` (round trip or one way, as the
//! SLA says). When an SLA's lifetime ends, its function is removed and its reservation released.
//!
//! Records are folded into counters and a latency histogram as the run goes (every simulated
//! second), so memory stays flat however many invocations a run makes.

use crate::engine::{Engine, Owned, SimTime};
use crate::faas::{
    ExecTime, FaasConfig, FaasError, FaasEvent, FaasSystem, FunctionDeployment, FunctionId, Outcome,
};
use crate::market::{Market, MarketError, MarketSettings, NodeDesc};
use measure::stats::Latencies;
use model::time::Timestamp;
use model::{LatencyKind, Sla};
use rand_distr::{Distribution, Exp};
use std::collections::HashMap;
use std::time::Duration;

/// One function of the workload.
#[derive(Debug, Clone)]
pub struct FunctionLoad {
    pub name: String,
    pub sla: Sla,
    /// The access node its requests arrive at (and the placement's target).
    pub target: String,
    /// Mean requests per second (Poisson arrivals).
    pub rate: f64,
    pub exec: ExecTime,
    /// Cold start of a replica.
    pub startup: Duration,
    /// Requests one replica runs at once.
    pub concurrency: u32,
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Workload {
    pub functions: Vec<FunctionLoad>,
    /// How long requests are sent.
    pub duration: Duration,
    /// Nodes that die during the run.
    pub failures: Vec<NodeFailure>,
}

/// A node that dies at `at` (and stays dead): it serves nothing from then on, its neighbours
/// stop relaying to it, and once the marketplace notices (`liveness_timeout`), every function
/// it hosted is placed again from the function's target, as the marketplace's healing does.
#[derive(Debug, Clone)]
pub struct NodeFailure {
    pub node: String,
    pub at: Duration,
}

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Market(#[from] MarketError),
    #[error("function `{function}`: {source}")]
    Faas {
        function: String,
        #[source]
        source: FaasError,
    },
    #[error("function `{function}`, field `rate`: {reason}")]
    Rate { function: String, reason: String },
    #[error("failure of node `{0}`: no such node in the federation")]
    UnknownNode(String),
}

/// What came of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub nodes: usize,
    pub placements_tried: usize,
    pub placements_ok: usize,
    /// Functions placed again after a host died.
    pub replacements: usize,
    /// Requests sent by the devices.
    pub invocations: u64,
    /// Requests answered successfully.
    pub ok: u64,
    /// Successful requests within their SLA's latency.
    pub sla_met: u64,
    /// What clients pay for every placement (sum of the winners' prices).
    pub spending: f64,
    /// Jain's fairness index of the nodes' earnings (every node of the federation counts);
    /// `None` when nobody earned anything.
    pub jain_earnings: Option<f64>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    /// Simulated time to place, mean over placements, ms.
    pub mean_time_to_place_ms: f64,
    /// Events the engine processed.
    pub events: u64,
    /// Per placement: function, winners with the price paid.
    pub placements: Vec<PlacementRecord>,
}

/// One placement in the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlacementRecord {
    pub function: String,
    pub winners: Vec<(String, f64)>,
}

impl RunReport {
    pub fn sla_respected_ratio(&self) -> f64 {
        if self.invocations == 0 {
            0.0
        } else {
            self.sla_met as f64 / self.invocations as f64
        }
    }
    pub fn placement_success_ratio(&self) -> f64 {
        if self.placements_tried == 0 {
            0.0
        } else {
            self.placements_ok as f64 / self.placements_tried as f64
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// An event of one fog node's FaaS system.
    Faas { node: u32, event: FaasEvent },
    /// A device sends a request of workload function `f`.
    Arrival { f: u32 },
    /// A request of `f` reaches its host `host` (index in the function's hosts).
    Deliver { f: u32, host: u32 },
    /// The SLA of `f` ends.
    Expire { f: u32 },
    /// Node `node` dies.
    Fail { node: u32 },
    /// The marketplace has noticed that a host of `f` died: place `f` again.
    Replace { f: u32 },
    /// Fold the records so far.
    Fold,
}

impl From<(u32, FaasEvent)> for Event {
    fn from((node, event): (u32, FaasEvent)) -> Event {
        Event::Faas { node, event }
    }
}

/// The engine as fog node `node`'s FaaS system sees it.
type At<'a> = Owned<'a, Event>;

/// A placed function: where it runs and how far.
struct Placed {
    /// Host node index, the FaaS function id there, one-way path latency from the access node.
    hosts: Vec<(u32, FunctionId, f64)>,
    next_host: usize,
    live: bool,
}

struct Totals {
    ok: u64,
    sla_met: u64,
    latencies: Latencies,
}

/// Deploys workload function `load` on fog node `h` (named `node`); returns its FaaS id there
/// and the one-way latency from the function's target, ms.
fn deploy_on(
    load: &FunctionLoad,
    h: u32,
    node: &str,
    market: &Market,
    systems: &mut [FaasSystem],
    engine: &mut Engine<Event>,
) -> Result<(FunctionId, f64), RunError> {
    let fd = FunctionDeployment::for_sla(
        load.name.clone(),
        &load.sla,
        load.startup,
        load.exec,
        load.concurrency,
    );
    let mut at = At { engine, owner: h };
    let id = systems[h as usize]
        .deploy(&mut at, fd)
        .map_err(|source| RunError::Faas {
            function: load.name.clone(),
            source,
        })?;
    let one_way = market
        .path_latency(&load.target, node)
        .map(|l| l.median.max(0.0))
        .unwrap_or(0.0);
    Ok((id, one_way))
}

/// Runs `workload` on the federation of `nodes`: [`prepare`], then [`Prepared::simulate`].
pub fn run(
    nodes: Vec<NodeDesc>,
    settings: MarketSettings,
    workload: &Workload,
    seed: u64,
) -> Result<RunReport, RunError> {
    Ok(prepare(nodes, settings, workload, seed)?.simulate())
}

/// A run whose functions are placed and deployed, its first events scheduled.
pub struct Prepared<'w> {
    workload: &'w Workload,
    names: Vec<String>,
    market: Market,
    engine: Engine<Event>,
    systems: Vec<FaasSystem>,
    placed: Vec<Placed>,
    gaps: Vec<Exp<f64>>,
    served_by: HashMap<(u32, FunctionId), (u32, f64)>,
    spending: f64,
    earnings: Vec<f64>,
    placements: Vec<PlacementRecord>,
    placements_ok: usize,
    time_to_place: Duration,
}

/// Places and deploys every function of `workload` (at simulated time zero) and schedules the
/// devices' first requests and the SLAs' ends.
pub fn prepare<'w>(
    nodes: Vec<NodeDesc>,
    settings: MarketSettings,
    workload: &'w Workload,
    seed: u64,
) -> Result<Prepared<'w>, RunError> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let capacities: Vec<_> = nodes.iter().map(|n| (n.cpu, n.memory)).collect();
    let mut market = Market::new(nodes, settings, seed)?;
    let mut engine: Engine<Event> = Engine::with_capacity(seed, 1 << 16);
    let mut systems: Vec<FaasSystem> = Vec::with_capacity(names.len());
    for (i, (name, (cpu, memory))) in names.iter().zip(capacities).enumerate() {
        let mut faas = FaasSystem::new(FaasConfig::default()).map_err(|source| RunError::Faas {
            function: String::new(),
            source,
        })?;
        let mut at = At {
            engine: &mut engine,
            owner: i as u32,
        };
        faas.add_node(&mut at, name.clone(), cpu, memory);
        systems.push(faas);
    }
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();

    let epoch = Timestamp::from_millis(0);
    let mut placed: Vec<Placed> = Vec::with_capacity(workload.functions.len());
    let mut gaps: Vec<Exp<f64>> = Vec::with_capacity(workload.functions.len());
    let mut spending = 0.0;
    let mut earnings = vec![0.0f64; names.len()];
    let mut placements = Vec::new();
    let mut placements_ok = 0;
    let mut time_to_place = Duration::ZERO;
    // (host node, FaaS function id) -> (workload function, one-way latency ms)
    let mut served_by: HashMap<(u32, FunctionId), (u32, f64)> = HashMap::new();
    for (f, load) in workload.functions.iter().enumerate() {
        let gap = Exp::new(load.rate).map_err(|e| RunError::Rate {
            function: load.name.clone(),
            reason: e.to_string(),
        })?;
        if !(load.rate.is_finite() && load.rate > 0.0) {
            return Err(RunError::Rate {
                function: load.name.clone(),
                reason: format!("{} is not a positive rate", load.rate),
            });
        }
        gaps.push(gap);
        let p = market.place(&load.sla, &load.target, epoch)?;
        time_to_place += p.time_to_place;
        let mut hosts = Vec::new();
        for w in &p.winners {
            let Some(&h) = index.get(w.node.as_str()) else {
                continue;
            };
            spending += w.price.value();
            earnings[h as usize] += w.price.value();
            let (id, one_way) = deploy_on(load, h, &w.node, &market, &mut systems, &mut engine)?;
            served_by.insert((h, id), (f as u32, one_way));
            hosts.push((h, id, one_way));
        }
        if !hosts.is_empty() {
            placements_ok += 1;
        }
        placements.push(PlacementRecord {
            function: load.name.clone(),
            winners: p
                .winners
                .iter()
                .map(|w| (w.node.clone(), w.price.value()))
                .collect(),
        });
        let live = !hosts.is_empty();
        placed.push(Placed {
            hosts,
            next_host: 0,
            live,
        });
        let first = gaps[f].sample(engine.rng());
        engine.schedule_in(
            Duration::from_secs_f64(first),
            Event::Arrival { f: f as u32 },
        );
        engine.schedule_in(
            load.sla.duration.as_duration(),
            Event::Expire { f: f as u32 },
        );
    }
    for failure in &workload.failures {
        let &node = index
            .get(failure.node.as_str())
            .ok_or_else(|| RunError::UnknownNode(failure.node.clone()))?;
        engine.schedule_in(failure.at, Event::Fail { node });
    }
    engine.schedule_in(Duration::from_secs(1), Event::Fold);
    Ok(Prepared {
        workload,
        names,
        market,
        engine,
        systems,
        placed,
        gaps,
        served_by,
        spending,
        earnings,
        placements,
        placements_ok,
        time_to_place,
    })
}

impl Prepared<'_> {
    /// Runs the events to the end and reports.
    pub fn simulate(self) -> RunReport {
        let Prepared {
            workload,
            names,
            mut market,
            mut engine,
            mut systems,
            mut placed,
            gaps,
            served_by,
            spending,
            earnings,
            placements,
            placements_ok,
            time_to_place,
        } = self;
        let mut spending = spending;
        let mut earnings = earnings;
        let mut served_by = served_by;
        let mut dead = vec![false; names.len()];
        let mut replacements = 0usize;
        let index: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();

        let end = SimTime::from_duration(workload.duration);
        let mut sent: u64 = 0;
        let mut totals = Totals {
            ok: 0,
            sla_met: 0,
            latencies: Latencies::new(),
        };
        let fold = |systems: &mut [FaasSystem],
                    totals: &mut Totals,
                    served_by: &HashMap<(u32, FunctionId), (u32, f64)>| {
            for (h, faas) in systems.iter_mut().enumerate() {
                for r in faas.take_records() {
                    if r.outcome != Outcome::Ok {
                        continue;
                    }
                    let Some(&(f, one_way_ms)) = served_by.get(&(h as u32, r.function)) else {
                        continue;
                    };
                    let sla = &workload.functions[f as usize].sla;
                    let total_ms = r.response_time().as_secs_f64() * 1000.0 + 2.0 * one_way_ms;
                    totals.ok += 1;
                    totals.latencies.record_ms(total_ms);
                    let bound = sla.latency_max.as_duration().as_secs_f64() * 1000.0;
                    let met = match sla.latency_kind {
                        LatencyKind::RoundTrip => total_ms <= bound,
                        LatencyKind::OneWay => one_way_ms <= bound,
                    };
                    if met {
                        totals.sla_met += 1;
                    }
                }
            }
        };

        while let Some((now, event)) = engine.pop() {
            match event {
                Event::Faas { node, event } => {
                    let mut at = At {
                        engine: &mut engine,
                        owner: node,
                    };
                    systems[node as usize].handle(&mut at, event);
                }
                Event::Arrival { f } => {
                    if now >= end {
                        continue;
                    }
                    sent += 1;
                    let fi = f as usize;
                    let gap = gaps[fi].sample(engine.rng());
                    engine.schedule_in(Duration::from_secs_f64(gap), Event::Arrival { f });
                    let p = &mut placed[fi];
                    if !p.live || p.hosts.is_empty() {
                        continue;
                    }
                    let k = p.next_host % p.hosts.len();
                    p.next_host = p.next_host.wrapping_add(1);
                    let one_way = p.hosts[k].2;
                    engine.schedule_in(
                        Duration::from_secs_f64(one_way / 1000.0),
                        Event::Deliver { f, host: k as u32 },
                    );
                }
                Event::Deliver { f, host } => {
                    let p = &placed[f as usize];
                    if !p.live {
                        continue;
                    }
                    let Some(&(h, id, _)) = p.hosts.get(host as usize) else {
                        continue;
                    };
                    if dead[h as usize] {
                        // Sent to a dead host: lost (the device sees a failure).
                        continue;
                    }
                    let mut at = At {
                        engine: &mut engine,
                        owner: h,
                    };
                    // A removed function answers nothing: the request counts as failed.
                    let _ = systems[h as usize].invoke_id(&mut at, id);
                }
                Event::Expire { f } => {
                    let p = &mut placed[f as usize];
                    p.live = false;
                    for &(h, _, _) in &p.hosts {
                        let mut at = At {
                            engine: &mut engine,
                            owner: h,
                        };
                        let _ = systems[h as usize]
                            .remove(&mut at, &workload.functions[f as usize].name);
                    }
                    market.release(workload.functions[f as usize].sla.id);
                }
                Event::Fail { node } => {
                    dead[node as usize] = true;
                    market.set_alive(&names[node as usize], false);
                    let notice = market.settings().liveness_timeout;
                    for (f, p) in placed.iter().enumerate() {
                        if p.live && p.hosts.iter().any(|&(h, _, _)| h == node) {
                            engine.schedule_in(notice, Event::Replace { f: f as u32 });
                        }
                    }
                }
                Event::Replace { f } => {
                    let load = &workload.functions[f as usize];
                    if !placed[f as usize].live {
                        continue;
                    }
                    placed[f as usize]
                        .hosts
                        .retain(|&(h, _, _)| !dead[h as usize]);
                    let Ok(again) = market.place(&load.sla, &load.target, now.to_timestamp())
                    else {
                        continue;
                    };
                    for w in &again.winners {
                        let Some(&h) = index.get(w.node.as_str()) else {
                            continue;
                        };
                        if placed[f as usize].hosts.iter().any(|&(x, _, _)| x == h) {
                            continue;
                        }
                        let Ok((id, one_way)) =
                            deploy_on(load, h, &w.node, &market, &mut systems, &mut engine)
                        else {
                            continue;
                        };
                        spending += w.price.value();
                        earnings[h as usize] += w.price.value();
                        served_by.insert((h, id), (f, one_way));
                        placed[f as usize].hosts.push((h, id, one_way));
                        replacements += 1;
                    }
                }
                Event::Fold => {
                    fold(&mut systems, &mut totals, &served_by);
                    // Folds go on while anything else is pending.
                    if now < end || !engine.is_empty() {
                        engine.schedule_in(Duration::from_secs(1), Event::Fold);
                    }
                }
            }
        }
        fold(&mut systems, &mut totals, &served_by);

        let n = names.len() as f64;
        let sum: f64 = earnings.iter().sum();
        let squares: f64 = earnings.iter().map(|e| e * e).sum();
        let jain_earnings = (squares > 0.0).then(|| sum * sum / (n * squares));
        let q = |p: f64| {
            if totals.latencies.is_empty() {
                0.0
            } else {
                totals.latencies.quantile_ms(p)
            }
        };
        let tried = workload.functions.len();
        RunReport {
            nodes: names.len(),
            placements_tried: tried,
            placements_ok,
            replacements,
            invocations: sent,
            ok: totals.ok,
            sla_met: totals.sla_met,
            spending,
            jain_earnings,
            latency_p50_ms: q(0.5),
            latency_p95_ms: q(0.95),
            latency_p99_ms: q(0.99),
            mean_time_to_place_ms: if tried == 0 {
                0.0
            } else {
                time_to_place.as_secs_f64() * 1000.0 / tried as f64
            },
            events: engine.processed(),
            placements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::SlaId;
    use model::topology::Topology;
    use serde_json::json;

    const LOCAL: &str = include_str!("../../testbed/topologies/local.toml");

    fn sla(latency_max: &str, duration: &str) -> Sla {
        let body = json!({
            "memory": "64 MB", "cpu": "100 millicpu", "latencyMax": latency_max,
            "latencyKind": "roundTrip", "duration": duration, "replicas": 1,
            "functionImage": "echo", "functionLiveName": "echo", "dataFlow": [],
            "envVars": {}, "inputMaxSize": "1 KB"
        });
        Sla::from_json(&body, SlaId::new(), "sla").unwrap()
    }

    fn workload(rate: f64, duration: Duration, sla_lifetime: &str) -> Workload {
        let targets = ["edge-factory", "edge-campus", "edge-harbour", "edge-farm"];
        Workload {
            functions: targets
                .iter()
                .map(|t| FunctionLoad {
                    name: format!("fn-{t}"),
                    sla: sla("150 ms", sla_lifetime),
                    target: t.to_string(),
                    rate,
                    exec: ExecTime::Fixed(Duration::from_millis(5)),
                    startup: Duration::from_millis(500),
                    concurrency: 4,
                })
                .collect(),
            duration,
            failures: Vec::new(),
        }
    }

    fn local() -> (Vec<NodeDesc>, MarketSettings) {
        let t = Topology::parse(LOCAL).unwrap();
        (
            NodeDesc::from_topology(&t).unwrap(),
            MarketSettings::from_topology(&t).unwrap(),
        )
    }

    #[test]
    fn a_light_workload_is_placed_served_and_within_its_sla() {
        let (nodes, settings) = local();
        let r = run(
            nodes,
            settings,
            &workload(3.0, Duration::from_secs(30), "120 s"),
            7,
        )
        .unwrap();
        assert_eq!(r.placements_ok, 4, "{r:?}");
        assert!(r.invocations > 250 && r.invocations < 480, "{r:?}");
        assert_eq!(r.ok, r.invocations, "{r:?}");
        // Only requests that came during the replicas' 500 ms cold start miss the SLA.
        assert!(r.sla_met < r.ok && r.sla_met * 100 >= r.ok * 95, "{r:?}");
        assert!(r.spending > 0.0);
        // Round trips over the tree plus 5 ms of work; the cold starts make the tail.
        assert!(r.latency_p50_ms >= 5.0 && r.latency_p50_ms < 150.0, "{r:?}");
        assert!(r.latency_p99_ms > 150.0, "{r:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_report() {
        let go = |seed| {
            let (nodes, settings) = local();
            let r = run(
                nodes,
                settings,
                &workload(20.0, Duration::from_secs(10), "120 s"),
                seed,
            )
            .unwrap();
            (
                r.invocations,
                r.ok,
                r.sla_met,
                r.placements.clone(),
                r.latency_p95_ms.to_bits(),
            )
        };
        assert_eq!(go(3), go(3));
        assert_ne!(go(3).0, go(4).0);
    }

    #[test]
    fn requests_after_the_sla_ends_are_not_served() {
        let (nodes, settings) = local();
        let r = run(
            nodes,
            settings,
            &workload(10.0, Duration::from_secs(20), "10 s"),
            1,
        )
        .unwrap();
        // About half the requests come after the SLAs ended.
        assert!(r.ok < r.invocations * 3 / 4, "{r:?}");
        assert!(r.ok > r.invocations / 4, "{r:?}");
    }

    #[test]
    fn a_dead_host_loses_requests_until_the_marketplace_places_its_functions_elsewhere() {
        let (nodes, settings) = local();
        let w = workload(10.0, Duration::from_secs(30), "120 s");
        let healthy = run(nodes.clone(), settings.clone(), &w, 5).unwrap();
        let host = healthy.placements[0].winners[0].0.clone();
        let mut broken = w.clone();
        broken.failures.push(NodeFailure {
            node: host.clone(),
            at: Duration::from_secs(10),
        });
        let r = run(nodes, settings, &broken, 5).unwrap();
        // Every function the dead node hosted is placed again, elsewhere, except the one whose
        // devices attach to the dead node itself: they have nowhere to send.
        let targets = ["edge-factory", "edge-campus", "edge-harbour", "edge-farm"];
        let hosted_there: Vec<usize> = healthy
            .placements
            .iter()
            .enumerate()
            .filter(|(_, p)| p.winners.iter().any(|(n, _)| *n == host))
            .map(|(i, _)| i)
            .collect();
        let orphaned = hosted_there.iter().filter(|&&i| targets[i] == host).count();
        assert!(!hosted_there.is_empty());
        assert_eq!(r.replacements, hosted_there.len() - orphaned, "{r:?}");
        assert_eq!(r.invocations, healthy.invocations);
        // Lost: about 3 s of liveness timeout and a cold start, out of 30 s, for each function it
        // hosted; the last 20 s of the orphaned one; nothing of the others.
        let lost = r.invocations - r.ok;
        let per_function = r.invocations as f64 / 4.0;
        let expected = per_function
            * ((hosted_there.len() - orphaned) as f64 * 3.5 / 30.0 + orphaned as f64 * 20.0 / 30.0);
        assert!(
            (lost as f64) > expected * 0.6 && (lost as f64) < expected * 1.4,
            "lost {lost}, expected about {expected:.0}: {r:?}"
        );
        assert!(r.spending > healthy.spending);
    }

    #[test]
    fn a_failure_of_an_unknown_node_is_refused_by_name() {
        let (nodes, settings) = local();
        let mut w = workload(1.0, Duration::from_secs(1), "10 s");
        w.failures.push(NodeFailure {
            node: "atlantis".into(),
            at: Duration::from_secs(1),
        });
        let err = run(nodes, settings, &w, 1).unwrap_err();
        assert!(err.to_string().contains("atlantis"), "{err}");
    }

    #[test]
    fn a_zero_rate_is_refused_naming_the_function() {
        let (nodes, settings) = local();
        let mut w = workload(1.0, Duration::from_secs(1), "10 s");
        w.functions[1].rate = 0.0;
        let err = run(nodes, settings, &w, 1).unwrap_err();
        assert!(err.to_string().contains("fn-edge-campus"), "{err}");
    }
}
