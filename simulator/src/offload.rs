//! DFaaS-style offloading between the hosts of one function, simulated with `model::offload`'s
//! own code: each host's arrival rate (`RateWindow`), learned throughput
//! (`ThroughputEstimator`), weights (`compute_weights`) and capacity offers (`offers_to_peers`),
//! recomputed every control interval from what the peers reported at their last step; each
//! request arriving at a host is served there, forwarded to a peer or rejected as the weights
//! draw it (`Weights::select`), a refused forward tried once more down `fallback_order`, as the
//! fog node's data plane does. A host runs at most `max_concurrency` requests at once, queues
//! up to `queue_capacity` more for at most `queue_timeout`, and refuses the rest (429). A
//! forward to a peer takes the one-way latency of the tree path each way, as the benchmark's
//! emulated links do.
//!
//! It runs the scenarios of `just bench offload` ([`model::offload::scenario`]: DFaaS's
//! CloudNet'21 demo and `issue48`, and `hot3`, `burst`, `far`, `shift`) for a strategy, so
//! their outcomes can be compared with the real runs, and judges the same aims (99 % success
//! in every second from the second second on, p95 latency at most 3 × the execution time).

use crate::engine::{Engine, SimTime};
use measure::stats::Latencies;
use model::FieldError;
use model::ids::NodeId;
use model::offload::scenario::{AimCheck, LoadScenario, SETTLE, per_second_offsets, sized};
use model::offload::{
    CapacityOffer, Decision, FunctionLoad, OffloadStrategy, Params, PeerView, RateWindow,
    ThroughputEstimator, Weights, compute_weights, margin_for_peers, offers_to_peers,
};
use rand::Rng;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;
use uuid::Uuid;

/// One host of the function.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub max_concurrency: u32,
    /// Configured sustainable rate (`[offload] max_rates`), req/s.
    pub max_rate: Option<f64>,
}

/// A scenario: the hosts, the load, the links.
#[derive(Debug, Clone)]
pub struct OffloadScenario {
    pub name: String,
    pub hosts: Vec<Host>,
    /// The function's own execution time.
    pub exec: Duration,
    /// Requests per second arriving at each host, one rate per second of the run (spaced as
    /// the benchmark's per-second schedule spaces them).
    pub rates: Vec<Vec<f64>>,
    /// One-way latency between any two hosts (by index): the tree path's.
    pub one_way: Vec<Vec<Duration>>,
    pub duration: Duration,
}

impl OffloadScenario {
    /// `scenario` with every call taking `exec`, for `duration`: each host's calls in flight
    /// and configured max rate from its capacity ([`sized`]), the loads summed per host.
    pub fn from_load_scenario(
        scenario: &LoadScenario,
        exec: Duration,
        duration: Duration,
    ) -> Result<OffloadScenario, FieldError> {
        scenario.validate()?;
        let seconds = LoadScenario::seconds(duration);
        let hosts = scenario
            .hosts
            .iter()
            .map(|h| {
                let (max_concurrency, capacity) = sized(h.capacity, exec);
                Host {
                    name: h.name.clone(),
                    max_concurrency,
                    max_rate: Some(capacity),
                }
            })
            .collect();
        let rates = scenario
            .hosts
            .iter()
            .map(|h| (0..seconds).map(|s| scenario.rate_at(&h.name, s)).collect())
            .collect();
        let one_way = scenario
            .hosts
            .iter()
            .map(|a| {
                scenario
                    .hosts
                    .iter()
                    .map(|b| scenario.path_latency(&a.name, &b.name).unwrap_or_default())
                    .collect()
            })
            .collect();
        Ok(OffloadScenario {
            name: scenario.name.clone(),
            hosts,
            exec,
            rates,
            one_way,
            duration,
        })
    }
}

/// Data-plane and control settings (the fog node's defaults).
#[derive(Debug, Clone)]
pub struct DataPlane {
    pub control_interval: Duration,
    pub queue_capacity: usize,
    pub queue_timeout: Duration,
}

impl Default for DataPlane {
    fn default() -> Self {
        DataPlane {
            control_interval: Duration::from_millis(250),
            queue_capacity: 256,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Latency of the successful requests due from [`SETTLE`] on, milliseconds (arrival at the
/// access node to the answer back there).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimLatency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// What came of one run.
#[derive(Debug, Clone, Serialize)]
pub struct OffloadOutcome {
    pub scenario: String,
    pub strategy: String,
    pub scheduled: u64,
    pub ok: u64,
    pub success_rate: f64,
    /// Success over the requests due from the second second on.
    pub settled_success_rate: f64,
    /// The worst second from the second second on; `None` when no request was due then.
    pub worst_second_success: Option<f64>,
    /// Success of each second from second 0 (1 for a second with nothing due).
    pub per_second_success: Vec<f64>,
    /// `None` when no settled request succeeded.
    pub settled_latency: Option<SimLatency>,
    /// The aims, judged on the figures above.
    pub aims: AimCheck,
    /// Successful requests per host.
    pub served: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    /// Second of arrival (for the settled figure).
    second: u32,
    /// The host it arrived at.
    origin: u32,
    /// Already retried once after a refused forward.
    retried: bool,
    /// When it reached its access node.
    arrived: SimTime,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// The `k`-th device request reaches host `h`.
    Arrival { h: u32, k: u32 },
    /// A forwarded request reaches host `h`.
    Forwarded { h: u32, req: Request },
    /// A forward to `from` was refused; the answer is back at the origin.
    Refused { from: u32, req: Request },
    /// A request finished on host `h`.
    Done { h: u32, req: Request },
    /// Host `h`'s control step.
    Control { h: u32 },
}

struct HostState {
    id: NodeId,
    arrivals: RateWindow,
    throughput: ThroughputEstimator,
    in_flight: u32,
    queue: VecDeque<(SimTime, Request)>,
    saturated: bool,
    weights: Weights,
    /// What this host offers each peer (by peer index), with its margin.
    offers: Vec<Option<CapacityOffer>>,
    margin: Option<f64>,
    served: u64,
}

/// Runs `scenario` with every host on `strategy`.
pub fn simulate(
    scenario: &OffloadScenario,
    strategy: OffloadStrategy,
    params: &Params,
    plane: &DataPlane,
    seed: u64,
) -> OffloadOutcome {
    let n = scenario.hosts.len();
    let mut engine: Engine<Event> = Engine::new(seed);
    let epoch = model::Timestamp::from_millis(1_000_000);
    let ts = |t: SimTime| t.to_timestamp_from(epoch);
    let mut hosts: Vec<HostState> = (0..n)
        .map(|i| HostState {
            id: NodeId(Uuid::from_u128(i as u128 + 1)),
            arrivals: RateWindow::default(),
            throughput: ThroughputEstimator::default(),
            in_flight: 0,
            queue: VecDeque::new(),
            saturated: false,
            weights: Weights::all_local(),
            offers: vec![None; n],
            margin: None,
            served: 0,
        })
        .collect();
    // Each host's send offsets, as the benchmark's per-second schedule has them.
    let arrivals: Vec<Vec<Duration>> = (0..n)
        .map(|h| {
            let rates = scenario.rates.get(h).map_or(&[][..], Vec::as_slice);
            let mut offsets = per_second_offsets(rates);
            offsets.retain(|o| *o < scenario.duration);
            offsets
        })
        .collect();
    for (h, offsets) in arrivals.iter().enumerate() {
        if let Some(first) = offsets.first() {
            engine.schedule_in(*first, Event::Arrival { h: h as u32, k: 0 });
        }
    }
    for h in 0..n {
        engine.schedule_in(plane.control_interval, Event::Control { h: h as u32 });
    }
    let one_way = |a: usize, b: usize| {
        scenario
            .one_way
            .get(a)
            .and_then(|row| row.get(b))
            .copied()
            .unwrap_or_default()
    };
    let seconds = scenario.duration.as_secs_f64().ceil().max(1.0) as usize + 1;
    let mut due = vec![0u64; seconds];
    let mut ok_by_second = vec![0u64; seconds];
    let mut latencies = Latencies::new();
    let index_of = |hosts: &[HostState], id: NodeId| hosts.iter().position(|x| x.id == id);

    // Admits a request on host `h` (served here): runs it, queues it, or refuses it.
    fn admit(
        engine: &mut Engine<Event>,
        hosts: &mut [HostState],
        scenario: &OffloadScenario,
        plane: &DataPlane,
        h: usize,
        req: Request,
    ) -> bool {
        let host = &mut hosts[h];
        if host.in_flight < scenario.hosts[h].max_concurrency {
            host.in_flight += 1;
            if host.in_flight == scenario.hosts[h].max_concurrency {
                host.saturated = true;
            }
            engine.schedule_in(scenario.exec, Event::Done { h: h as u32, req });
            return true;
        }
        host.saturated = true;
        if host.queue.len() >= plane.queue_capacity {
            return false;
        }
        host.queue.push_back((engine.now(), req));
        true
    }

    while let Some((now, event)) = engine.pop() {
        match event {
            Event::Arrival { h, k } => {
                let hi = h as usize;
                // The open-loop schedule: every send at its offset, whatever the answers do.
                if let Some(next) = arrivals[hi].get(k as usize + 1) {
                    let at = SimTime::from_duration(*next).max(now);
                    // `at` is never before now: scheduling cannot fail.
                    let _ = engine.schedule_at(at, Event::Arrival { h, k: k + 1 });
                }
                let second = (arrivals[hi][k as usize].as_secs() as usize).min(seconds - 1);
                due[second] += 1;
                hosts[hi].arrivals.record(ts(now));
                let req = Request {
                    second: second as u32,
                    origin: h,
                    retried: false,
                    arrived: now,
                };
                let roll: u32 = engine.rng().random();
                match hosts[hi].weights.select(roll) {
                    Decision::Local => {
                        admit(&mut engine, &mut hosts, scenario, plane, hi, req);
                    }
                    Decision::Forward(peer) => match index_of(&hosts, peer) {
                        Some(p) => engine
                            .schedule_in(one_way(hi, p), Event::Forwarded { h: p as u32, req }),
                        None => {
                            admit(&mut engine, &mut hosts, scenario, plane, hi, req);
                        }
                    },
                    Decision::Reject => {}
                }
            }
            Event::Forwarded { h, req } => {
                // Forwarded-in requests are served here, or refused.
                if !admit(&mut engine, &mut hosts, scenario, plane, h as usize, req) {
                    let back = one_way(h as usize, req.origin as usize);
                    engine.schedule_in(back, Event::Refused { from: h, req });
                }
            }
            Event::Refused { from, req } => {
                if req.retried {
                    continue;
                }
                let o = req.origin as usize;
                let req = Request {
                    retried: true,
                    ..req
                };
                let failed = Decision::Forward(hosts[from as usize].id);
                let next = hosts[o]
                    .weights
                    .fallback_order(failed)
                    .into_iter()
                    .find(|d| *d != failed);
                match next {
                    Some(Decision::Forward(peer)) => {
                        if let Some(p) = index_of(&hosts, peer) {
                            engine
                                .schedule_in(one_way(o, p), Event::Forwarded { h: p as u32, req });
                        }
                    }
                    Some(Decision::Local) | None => {
                        admit(&mut engine, &mut hosts, scenario, plane, o, req);
                    }
                    Some(Decision::Reject) => {}
                }
            }
            Event::Done { h, req } => {
                let hi = h as usize;
                let host = &mut hosts[hi];
                host.in_flight -= 1;
                host.throughput.record_completion(ts(now));
                host.served += 1;
                ok_by_second[req.second as usize] += 1;
                if Duration::from_secs(u64::from(req.second)) >= SETTLE {
                    // The answer travels back to the access node.
                    let back = one_way(hi, req.origin as usize);
                    latencies.record(now.since(req.arrived) + back);
                }
                // The next queued request that has not timed out.
                while let Some((queued_at, next)) = host.queue.pop_front() {
                    if now.since(queued_at) > plane.queue_timeout {
                        continue;
                    }
                    host.in_flight += 1;
                    engine.schedule_in(scenario.exec, Event::Done { h, req: next });
                    break;
                }
            }
            Event::Control { h } => {
                let hi = h as usize;
                if now < SimTime::from_duration(scenario.duration)
                    || hosts.iter().any(|x| x.in_flight > 0 || !x.queue.is_empty())
                {
                    engine.schedule_in(plane.control_interval, Event::Control { h });
                }
                let t = ts(now);
                let saturated = std::mem::take(&mut hosts[hi].saturated)
                    || !hosts[hi].queue.is_empty()
                    || hosts[hi].in_flight >= scenario.hosts[hi].max_concurrency;
                hosts[hi].throughput.sample(t, saturated);
                let learned = hosts[hi].throughput.capacity();
                let load = FunctionLoad {
                    local_rate: hosts[hi].arrivals.rate(t),
                    capacity: scenario.hosts[hi].max_rate.or(learned),
                    in_flight: hosts[hi].in_flight,
                    queue_len: hosts[hi].queue.len() as u32,
                    node_usage: None,
                };
                // What each peer reported at its last step.
                let views: Vec<PeerView> = (0..n)
                    .filter(|&p| p != hi)
                    .map(|p| PeerView {
                        node: hosts[p].id,
                        rtt: one_way(hi, p) * 2,
                        alive: true,
                        hosts_function: true,
                        offer: hosts[p].offers[hi],
                        margin: hosts[p].margin,
                    })
                    .collect();
                let prev = hosts[hi].weights.clone();
                let weights = compute_weights(strategy, &load, &views, params, Some(&prev), t);
                let offers = offers_to_peers(strategy, &load, &views, params, Some(&prev), t);
                let mut by_peer = vec![None; n];
                for (peer, offer) in offers {
                    if let Some(p) = index_of(&hosts, peer) {
                        by_peer[p] = Some(offer);
                    }
                }
                let host = &mut hosts[hi];
                host.margin = load.usage().map(|u| margin_for_peers(u, views.len()));
                host.offers = by_peer;
                host.weights = weights;
            }
        }
    }

    let settle = SETTLE.as_secs() as usize;
    let scheduled: u64 = due.iter().sum();
    let ok: u64 = ok_by_second.iter().sum();
    let settled_due: u64 = due.iter().skip(settle).sum();
    let settled_ok: u64 = ok_by_second.iter().skip(settle).sum();
    let per_second_success: Vec<f64> = due
        .iter()
        .zip(&ok_by_second)
        .map(|(&d, &o)| if d == 0 { 1.0 } else { o as f64 / d as f64 })
        .collect();
    let worst_second_success = due
        .iter()
        .zip(&per_second_success)
        .skip(settle)
        .filter(|(d, _)| **d > 0)
        .map(|(_, s)| *s)
        .min_by(f64::total_cmp);
    let settled_latency = (!latencies.is_empty()).then(|| SimLatency {
        p50_ms: latencies.quantile_ms(0.5),
        p95_ms: latencies.quantile_ms(0.95),
        p99_ms: latencies.quantile_ms(0.99),
    });
    OffloadOutcome {
        scenario: scenario.name.clone(),
        strategy: strategy.name().to_string(),
        scheduled,
        ok,
        success_rate: ok as f64 / scheduled.max(1) as f64,
        settled_success_rate: settled_ok as f64 / settled_due.max(1) as f64,
        worst_second_success,
        aims: AimCheck::of(
            worst_second_success,
            settled_latency.map(|l| l.p95_ms),
            scenario.exec,
        ),
        per_second_success,
        settled_latency,
        served: scenario
            .hosts
            .iter()
            .zip(&hosts)
            .map(|(h, s)| (h.name.clone(), s.served))
            .collect(),
    }
}

/// A scenario of `just bench offload` by name ([`model::offload::scenario::SCENARIOS`]), with
/// the function delayed `delay` per request as the benchmark's echo is; `None` for an unknown
/// name.
pub fn bench_scenario(name: &str, delay: Duration, duration: Duration) -> Option<OffloadScenario> {
    let scenario = LoadScenario::named(name).ok()?;
    OffloadScenario::from_load_scenario(&scenario, delay, duration).ok()
}

/// Every strategy on every scenario (by name), each host of a run on one strategy, the function
/// delayed `delay`, for `duration`, with `seed`: the outcomes in scenario-major order.
pub fn compare(
    scenarios: &[&str],
    strategies: &[OffloadStrategy],
    delay: Duration,
    duration: Duration,
    seed: u64,
) -> Result<Vec<OffloadOutcome>, FieldError> {
    let mut out = Vec::new();
    for name in scenarios {
        let scenario = LoadScenario::named(name)?;
        let simulated = OffloadScenario::from_load_scenario(&scenario, delay, duration)?;
        for strategy in strategies {
            out.push(simulate(
                &simulated,
                *strategy,
                &Params::default(),
                &DataPlane::default(),
                seed,
            ));
        }
    }
    Ok(out)
}

/// A markdown table of `outcomes`: success, worst settled second, latency percentiles, requests
/// served per host and the aims.
pub fn outcomes_markdown(outcomes: &[OffloadOutcome], delay: Duration) -> String {
    use measure::markdown::{MarkdownTable, left, right};
    let mut table = MarkdownTable::new([
        left("scenario"),
        left("strategy"),
        right("success"),
        right("from s1"),
        right("worst second from s1"),
        right("p50 ms"),
        right("p95 ms"),
        right("p99 ms"),
        left("served"),
        left("≥ 99 % every second"),
        left(format!(
            "p95 ≤ {:.0} ms",
            model::offload::scenario::latency_aim_ms(delay)
        )),
    ]);
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let yes_no = |x: Option<bool>| match x {
        Some(true) => "met",
        Some(false) => "not met",
        None => "-",
    };
    for o in outcomes {
        let l = o.settled_latency;
        let ms = |f: fn(&SimLatency) -> f64| {
            l.as_ref()
                .map_or("-".to_string(), |l| format!("{:.0}", f(l)))
        };
        table.row([
            o.scenario.clone(),
            o.strategy.clone(),
            pct(o.success_rate),
            pct(o.settled_success_rate),
            o.worst_second_success.map_or("-".to_string(), pct),
            ms(|l| l.p50_ms),
            ms(|l| l.p95_ms),
            ms(|l| l.p99_ms),
            o.served
                .iter()
                .map(|(n, c)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            yes_no(o.aims.success_every_second).to_string(),
            yes_no(o.aims.p95_latency).to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, strategy: OffloadStrategy) -> OffloadOutcome {
        let s = bench_scenario(name, Duration::from_millis(200), Duration::from_secs(30)).unwrap();
        simulate(&s, strategy, &Params::default(), &DataPlane::default(), 1)
    }

    #[test]
    fn static_weights_overload_the_hot_node_of_the_demo_while_the_adaptive_strategies_do_not() {
        let st = run("demo", OffloadStrategy::Static);
        assert!(st.settled_success_rate < 0.8, "{st:?}");
        for s in [
            OffloadStrategy::Recalc,
            OffloadStrategy::NodeMargin,
            OffloadStrategy::Lease,
        ] {
            let o = run("demo", s);
            assert!(o.settled_success_rate > 0.97, "{o:?}");
        }
    }

    #[test]
    fn every_strategy_carries_the_issue48_overload() {
        for s in [
            OffloadStrategy::Static,
            OffloadStrategy::Recalc,
            OffloadStrategy::NodeMargin,
            OffloadStrategy::Lease,
        ] {
            let o = run("issue48", s);
            assert!(o.settled_success_rate > 0.97, "{o:?}");
            assert_eq!(o.scheduled, 3300, "{o:?}");
        }
    }

    #[test]
    fn a_bench_scenario_is_the_models_with_rates_per_host_and_tree_latencies() {
        let exec = Duration::from_millis(200);
        let far = bench_scenario("far", exec, Duration::from_secs(10)).unwrap();
        let names: Vec<&str> = far.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3", "n4", "n5"]);
        assert_eq!(far.hosts[3].max_concurrency, 8);
        assert_eq!(far.hosts[3].max_rate, Some(40.0));
        // n1 to n4: 10 + 15 + 20 ms; n5 to n4 one link more.
        assert_eq!(far.one_way[0][3], Duration::from_millis(45));
        assert_eq!(far.one_way[3][0], Duration::from_millis(45));
        assert_eq!(far.one_way[4][3], Duration::from_millis(55));
        assert_eq!(far.one_way[2][2], Duration::ZERO);
        assert_eq!(far.rates[0], vec![30.0; 10]);
        assert_eq!(far.rates[3], vec![0.0; 10]);
        let burst = bench_scenario("burst", exec, Duration::from_secs(7)).unwrap();
        assert_eq!(burst.rates[0], [10.0, 10.0, 60.0, 60.0, 10.0, 10.0, 10.0]);
        let shift = bench_scenario("shift", exec, Duration::from_millis(8500)).unwrap();
        assert_eq!(shift.rates[1].len(), 9);
        assert_eq!(shift.rates[1][4], 40.0);
        assert!(bench_scenario("tornado", exec, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn every_request_of_the_per_second_schedules_is_simulated_once() {
        let o = run("burst", OffloadStrategy::Lease);
        // n1: 5 periods of 10 + 10 + 60 + 60 + 10 + 10; four others at 5 req/s.
        assert_eq!(o.scheduled, 5 * 160 + 4 * 5 * 30, "{o:?}");
        assert_eq!(o.per_second_success.len(), 31);
        let shift = run("shift", OffloadStrategy::Lease);
        assert_eq!(shift.scheduled, 55 * 30, "{shift:?}");
    }

    #[test]
    fn the_outcome_judges_the_worst_second_and_the_p95_against_three_executions() {
        // Static weights drop requests at the demo's hot node in every second.
        let st = run("demo", OffloadStrategy::Static);
        let worst = st.worst_second_success.unwrap();
        assert!(worst < 0.99, "{st:?}");
        assert_eq!(st.aims.success_every_second, Some(false));
        assert!(!st.aims.met());
        // issue48 under lease: nearly everything served at once, well within 600 ms.
        let lease = run("issue48", OffloadStrategy::Lease);
        let l = lease.settled_latency.unwrap();
        assert!(l.p50_ms >= 200.0 && l.p95_ms < 300.0, "{l:?}");
        assert!(l.p50_ms <= l.p95_ms && l.p95_ms <= l.p99_ms, "{l:?}");
        assert_eq!(lease.worst_second_success, Some(1.0));
        assert!(lease.aims.met(), "{lease:?}");
        let text = outcomes_markdown(&[st, lease], Duration::from_millis(200));
        assert!(text.contains("| p95 ≤ 600 ms |"), "{text}");
        assert!(text.contains("| not met "), "{text}");
    }

    #[test]
    fn the_default_strategy_meets_both_aims_on_every_scenario_with_every_seed_tried() {
        assert_eq!(OffloadStrategy::default(), OffloadStrategy::Lease);
        for seed in 1..=3 {
            let outcomes = compare(
                model::offload::scenario::SCENARIOS,
                &[OffloadStrategy::default()],
                Duration::from_millis(200),
                Duration::from_secs(30),
                seed,
            )
            .unwrap();
            assert_eq!(outcomes.len(), 6);
            for o in outcomes {
                assert!(
                    o.aims.met(),
                    "{} with seed {seed}: worst second {:?}, p95 {:?}, served {:?}",
                    o.scenario,
                    o.worst_second_success,
                    o.settled_latency,
                    o.served
                );
            }
        }
    }

    #[test]
    fn lease_uses_the_idle_peers_behind_the_hot_ones_and_the_far_spare_capacity() {
        // hot3: n3 and n6 (5 req/s of their own) serve well beyond it for n2, n4, n5.
        let hot3 = run("hot3", OffloadStrategy::Lease);
        let served = |o: &OffloadOutcome, n: &str| {
            o.served.iter().find(|(h, _)| h == n).map_or(0, |(_, c)| *c)
        };
        for idle in ["n3", "n6"] {
            assert!(
                served(&hot3, idle) > 2 * 5 * 30,
                "{idle}: {:?}",
                hot3.served
            );
        }
        // far: n4, 45 ms away and idle, serves most of n1's excess of 10 req/s.
        let far = run("far", OffloadStrategy::Lease);
        assert!(served(&far, "n4") > 6 * 30, "{:?}", far.served);
    }

    #[test]
    fn the_same_seed_gives_the_same_outcome() {
        let a = run("demo", OffloadStrategy::Static);
        let b = run("demo", OffloadStrategy::Static);
        assert_eq!((a.ok, a.served.clone()), (b.ok, b.served.clone()));
    }
}
