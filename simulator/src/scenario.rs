//! An IoT scenario (`iot_emulation/scenarios/*.toml`) simulated on a topology, with the IoT
//! emulator's own code for everything that is not the federation: its latency classes
//! (`iot_emulation::plan::resolve_latencies`), placement order and chains
//! (`scenario::placement_order`), request schedule (`plan::plan_requests`: the same seeded
//! arrivals and `fn-spin` execution times), SLA judgement (`Record::judge`), report
//! (`Report::compute`) and plots. A simulated run and a real run of the same scenario and seed
//! send the same requests at the same offsets and are reported the same way, so they can be
//! read side by side.
//!
//! The federation is the simulator's: placements through the [`Market`], one FaaS system per
//! fog node, requests travelling the tree path from the access node to the host and back.
//! Functions other than `fn-spin` take the execution time of [`exec_time`] (measured orders of
//! magnitude of the catalog's functions), and replicas start in [`COLD_START`].

use crate::engine::{Engine, Owned, SimTime};
use crate::faas::{
    ExecTime, FaasConfig, FaasEvent, FaasSystem, FunctionDeployment, FunctionId, Outcome,
};
use crate::market::{Market, MarketSettings, NodeDesc};
use iot_emulation::placement::{Placement, Winner};
use iot_emulation::plan::{plan_requests, resolve_latencies};
use iot_emulation::record::{Record, outcome};
use iot_emulation::report::{PlacementsFile, Report};
use iot_emulation::scenario::{Scenario, Target, placement_order};
use model::time::Timestamp;
use model::{Sla, SlaId};
use std::collections::HashMap;
use std::time::Duration;

/// How long a replica of the embedded gateway takes to start.
pub const COLD_START: Duration = Duration::from_millis(50);

/// The execution time of a request to a catalog function other than `spin` (which asks for
/// its own).
pub fn exec_time(catalog_name: &str) -> Duration {
    match catalog_name {
        "echo" => Duration::from_micros(200),
        "shasum" | "figlet" => Duration::from_millis(1),
        "sentiment" => Duration::from_millis(2),
        "image-resize" => Duration::from_millis(15),
        _ => Duration::from_millis(1),
    }
}

/// A simulated run: what the emulator would have written.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    pub placements: PlacementsFile,
    pub records: Vec<Record>,
    pub report: Report,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Faas {
        node: u32,
        event: FaasEvent,
    },
    /// Planned request `i` leaves its device.
    Send {
        i: u32,
    },
    /// Planned request `i` reaches its host.
    Deliver {
        i: u32,
    },
}

impl From<(u32, FaasEvent)> for Event {
    fn from((node, event): (u32, FaasEvent)) -> Event {
        Event::Faas { node, event }
    }
}

/// The engine as fog node `node`'s FaaS system sees it.
type At<'a> = Owned<'a, Event>;

/// Where a placed function runs.
struct Hosted {
    node: u32,
    id: FunctionId,
    /// One-way latency from the access node, ms.
    one_way_ms: f64,
    access: String,
    host: String,
}

/// Simulates `scenario` on the federation of `nodes`.
pub fn simulate(
    scenario: &Scenario,
    nodes: Vec<NodeDesc>,
    settings: MarketSettings,
) -> anyhow::Result<ScenarioRun> {
    let exp = &scenario.experiment;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let capacities: Vec<_> = nodes.iter().map(|n| (n.cpu, n.memory)).collect();
    let index: HashMap<String, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u32))
        .collect();
    let mut market = Market::new(nodes, settings, exp.seed)?;
    let mut engine: Engine<Event> = Engine::with_capacity(exp.seed, 1 << 12);
    let mut systems = Vec::with_capacity(names.len());
    for (i, (name, (cpu, memory))) in names.iter().zip(capacities).enumerate() {
        let mut faas = FaasSystem::new(FaasConfig::default())?;
        let mut at = At {
            engine: &mut engine,
            owner: i as u32,
        };
        faas.add_node(&mut at, name.clone(), cpu, memory);
        systems.push(faas);
    }

    // Placements, in the emulator's order, at the start.
    let resolved = resolve_latencies(&scenario.functions, exp.seed);
    let order = placement_order(&scenario.functions)?;
    let mut placements: Vec<Option<Placement>> = vec![None; scenario.functions.len()];
    let mut hosted: Vec<Option<Hosted>> = (0..scenario.functions.len()).map(|_| None).collect();
    let mut slas: Vec<Option<SlaId>> = vec![None; scenario.functions.len()];
    let t0 = Timestamp::from_millis(0);
    for i in order {
        let spec = &scenario.functions[i];
        let r = &resolved[i];
        let access = match &spec.target {
            Target::Node(n) => Ok(n.clone()),
            Target::ChainAfter(prev) => scenario
                .function_index(prev)
                .and_then(|j| placements[j].as_ref())
                .and_then(|p| p.host().map(str::to_string))
                .ok_or_else(|| format!("its chain predecessor `{prev}` was not placed")),
        };
        let latency_max_ms = r.latency_max.as_millis_f64();
        let access = match access {
            Ok(a) => a,
            Err(e) => {
                placements[i] = Some(Placement::failed(spec, "", &r.class, latency_max_ms, e));
                continue;
            }
        };
        let sla = Sla::from_json(&spec.sla_json(r.latency_max), SlaId::new(), "sla")?;
        let p = market.place(&sla, &access, t0)?;
        let mut placement =
            Placement::failed(spec, &access, &r.class, latency_max_ms, String::new());
        placement.error = None;
        placement.sla_id = Some(sla.id.to_string());
        placement.bids = p.offers.len();
        placement.time_to_place_ms = p.time_to_place.as_secs_f64() * 1000.0;
        placement.winners = p
            .winners
            .iter()
            .map(|w| Winner {
                node: w.node.clone(),
                price: w.price.value(),
            })
            .collect();
        match p.winners.first() {
            None => placement.error = Some("no feasible node".into()),
            Some(w) => {
                let node = *index
                    .get(&w.node)
                    .ok_or_else(|| anyhow::anyhow!("winner `{}` is not a node", w.node))?;
                let exec = match spec.catalog_name() {
                    "spin" => ExecTime::Fixed(Duration::ZERO),
                    other => ExecTime::Fixed(exec_time(other)),
                };
                let fd = FunctionDeployment::for_sla(spec.name.clone(), &sla, COLD_START, exec, 64);
                let mut at = At {
                    engine: &mut engine,
                    owner: node,
                };
                let id = systems[node as usize].deploy(&mut at, fd)?;
                let one_way_ms = market
                    .path_latency(&access, &w.node)
                    .map_or(0.0, |l| l.median.max(0.0));
                hosted[i] = Some(Hosted {
                    node,
                    id,
                    one_way_ms,
                    access: access.clone(),
                    host: w.node.clone(),
                });
                slas[i] = Some(sla.id);
            }
        }
        placements[i] = Some(placement);
    }

    // The same requests at the same offsets as the emulator's. The emulator sends once every
    // function is placed, and a placement returns once its function is ready: sending starts
    // after the replicas' cold start.
    let plan = plan_requests(&scenario.functions, exp.duration, exp.seed);
    let start = SimTime::from_duration(COLD_START);
    for (i, req) in plan.iter().enumerate() {
        engine.schedule_in(COLD_START + req.at, Event::Send { i: i as u32 });
    }
    let mut records: Vec<Record> = plan
        .iter()
        .map(|req| {
            let f = &scenario.functions[req.function];
            let p = placements[req.function].as_ref();
            Record {
                scheduled_ms: req.at.as_secs_f64() * 1000.0,
                sent_ms: None,
                function: f.name.clone(),
                sla_id: slas[req.function]
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                latency_class: resolved[req.function].class.clone(),
                latency_max_ms: resolved[req.function].latency_max.as_millis_f64(),
                access_node: p.map(|p| p.access_node.clone()).unwrap_or_default(),
                served_by: None,
                hops: None,
                path: None,
                decision: None,
                reject_reason: None,
                status: 0,
                outcome: outcome::NOT_PLACED.to_string(),
                latency_ms: None,
                exec_ms: req.exec_ms,
                sla_met: false,
                error: p.and_then(|p| p.error.clone()),
            }
        })
        .collect();
    // (host node, FaaS request id) -> planned request.
    let mut pending: HashMap<(u32, u64), usize> = HashMap::new();
    while let Some((now, event)) = engine.pop() {
        match event {
            Event::Faas { node, event } => {
                let mut at = At {
                    engine: &mut engine,
                    owner: node,
                };
                systems[node as usize].handle(&mut at, event);
            }
            Event::Send { i } => {
                let req = &plan[i as usize];
                let Some(h) = &hosted[req.function] else {
                    continue;
                };
                records[i as usize].sent_ms = Some(now.since(start).as_secs_f64() * 1000.0);
                engine.schedule_in(
                    Duration::from_secs_f64(h.one_way_ms / 1000.0),
                    Event::Deliver { i },
                );
            }
            Event::Deliver { i } => {
                let req = &plan[i as usize];
                let Some(h) = &hosted[req.function] else {
                    continue;
                };
                let exec = req.exec_ms.map(Duration::from_millis);
                let mut at = At {
                    engine: &mut engine,
                    owner: h.node,
                };
                if let Ok(id) = systems[h.node as usize].invoke_with(&mut at, h.id, exec) {
                    pending.insert((h.node, id.0), i as usize);
                }
            }
        }
    }
    for (node, faas) in systems.iter_mut().enumerate() {
        for r in faas.take_records() {
            let Some(&i) = pending.get(&(node as u32, r.request.0)) else {
                continue;
            };
            let req = &plan[i];
            let Some(h) = &hosted[req.function] else {
                continue;
            };
            let rec = &mut records[i];
            let latency_ms = r.response_time().as_secs_f64() * 1000.0 + 2.0 * h.one_way_ms;
            let ok = r.outcome == Outcome::Ok;
            rec.status = if ok { 200 } else { 503 };
            rec.outcome = if ok { outcome::OK } else { outcome::HTTP_ERROR }.to_string();
            rec.latency_ms = Some(latency_ms);
            rec.served_by = Some(h.host.clone());
            let path = if h.access == h.host {
                h.access.clone()
            } else {
                format!("{}>{}", h.access, h.host)
            };
            rec.hops = Some(u32::from(h.access != h.host));
            rec.path = Some(path);
            rec.decision = Some(
                if h.access == h.host {
                    "local"
                } else {
                    "forwarded"
                }
                .into(),
            );
            rec.sla_met =
                Record::judge(rec.status, rec.latency_ms, rec.exec_ms, rec.latency_max_ms);
            rec.error = None;
        }
    }
    let file = PlacementsFile {
        experiment: exp.name.clone(),
        seed: exp.seed,
        duration_ms: exp.duration.as_secs_f64() * 1000.0,
        nodes: names,
        placements: placements.into_iter().flatten().collect(),
    };
    let report = Report::compute(&exp.name, &records, Some(&file));
    Ok(ScenarioRun {
        placements: file,
        records,
        report,
    })
}
