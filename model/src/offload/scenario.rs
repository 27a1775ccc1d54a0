//! Load scenarios for offloading, shared by the offload benchmark (`testbed bench offload`, a real
//! federation) and the simulator (`simulator::offload`, the same strategy code in simulated
//! time), so both run exactly the same shapes.
//!
//! A scenario is the hosts of one function with the requests per second each sustains, the tree
//! that links them (each host's parent and the one-way latency of that link), and one or more
//! loads, each arriving at one host at a rate that changes every second. A load is a cycle of
//! per-second rates repeated for the length of a run (one rate: a constant load).
//!
//! Every shipped scenario has enough capacity in aggregate at every second; what differs is
//! where the load lands and how it moves:
//!
//! | name | shape |
//! |---|---|
//! | `demo` | DFaaS CloudNet'21 demo: 50 req/s at a node sustaining 10, two peers of 25 |
//! | `issue48` | DFaaS's overload of two nodes: 110 req/s at one of two nodes of 100 |
//! | `hot3` | three neighbouring nodes of six at 1.5 × their capacity together |
//! | `burst` | 2-s bursts of 3 × a node's capacity every 6 s on a base load |
//! | `far` | spare capacity only 3 hops (45 ms) away, the nearby peers 90 % busy |
//! | `shift` | a 2 × load that moves to another access node every 4 s |
//!
//! The aims ([`SUCCESS_AIM`], [`LATENCY_AIM_FACTOR`]): at least 99 % of the requests due in
//! every second from the second second on succeed, and the 95th percentile latency of those
//! that succeed is at most 3 × the function's execution time.

use crate::sla::FieldError;
use crate::topology::tree_path;
use crate::units::Latency;
use serde::Serialize;
use std::time::Duration;

/// Share of the requests due in every second (from the second second on) that must succeed.
pub const SUCCESS_AIM: f64 = 0.99;
/// The 95th percentile latency of the successful requests must be at most this many times the
/// function's execution time.
pub const LATENCY_AIM_FACTOR: f64 = 3.0;
/// Requests due before this are left out of the settled figures and of the aims.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Names [`LoadScenario::named`] knows, in the order the benchmark runs them.
pub const SCENARIOS: &[&str] = &["demo", "issue48", "hot3", "burst", "far", "shift"];

/// One host of the function.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioHost {
    pub name: String,
    /// Requests per second it sustains (rounded to whole calls in flight by [`sized`]).
    pub capacity: f64,
    /// Its parent in the tree; `None` for the root.
    pub parent: Option<String>,
    /// One-way latency of the link to the parent (zero for the root).
    pub latency: Latency,
}

/// Requests arriving at one host, one rate per second.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioLoad {
    /// The host the requests arrive at (their access node).
    pub node: String,
    /// Requests per second in seconds 0, 1, …, repeated for as long as the run lasts.
    pub cycle: Vec<f64>,
}

/// Hosts, tree and loads of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadScenario {
    pub name: String,
    pub description: String,
    pub hosts: Vec<ScenarioHost>,
    pub loads: Vec<ScenarioLoad>,
}

/// Calls in flight that make a host sustain about `capacity` req/s when each call takes
/// `exec` (the nearest whole number, at least one), and the capacity that gives.
pub fn sized(capacity: f64, exec: Duration) -> (u32, f64) {
    let per_call = exec.as_secs_f64().max(0.001);
    let calls = if capacity.is_finite() {
        (capacity * per_call)
            .round()
            .clamp(1.0, f64::from(u32::MAX)) as u32
    } else {
        1
    };
    (calls, f64::from(calls) / per_call)
}

/// The latency aim for a function taking `exec`: [`LATENCY_AIM_FACTOR`] × `exec`, in ms.
pub fn latency_aim_ms(exec: Duration) -> f64 {
    LATENCY_AIM_FACTOR * exec.as_micros() as f64 / 1000.0
}

/// The two aims of one run, `None` where there was nothing to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AimCheck {
    /// At least [`SUCCESS_AIM`] success in every second from [`SETTLE`] on.
    pub success_every_second: Option<bool>,
    /// The settled 95th percentile latency at most [`LATENCY_AIM_FACTOR`] × execution time.
    pub p95_latency: Option<bool>,
}

impl AimCheck {
    /// Judges the worst settled second's success and the settled p95 (ms, `None` without
    /// successful requests) of a run whose function takes `exec`.
    pub fn of(worst_second: Option<f64>, p95_ms: Option<f64>, exec: Duration) -> AimCheck {
        AimCheck {
            success_every_second: worst_second.map(|s| s >= SUCCESS_AIM),
            p95_latency: p95_ms.map(|p| p <= latency_aim_ms(exec)),
        }
    }

    /// Both aims met.
    pub fn met(&self) -> bool {
        self.success_every_second == Some(true) && self.p95_latency == Some(true)
    }
}

/// Send offsets of a load at `rates` per second, from time zero: request `k` leaves when the
/// integral of the rate reaches `k`, evenly spaced within a second; a fractional rate carries
/// over to the next second (2.5 then 2.5 sends 5 requests in two seconds). Negative, NaN or
/// infinite rates count as 0.
pub fn per_second_offsets(rates: &[f64]) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut cumulative = 0.0_f64;
    let mut k = 0u64;
    for (second, rate) in rates.iter().enumerate() {
        let rate = if rate.is_finite() && *rate > 0.0 {
            *rate
        } else {
            0.0
        };
        let end = cumulative + rate;
        while rate > 0.0 && (k as f64) < end - 1e-9 {
            let within = ((k as f64 - cumulative) / rate).max(0.0);
            out.push(Duration::from_secs_f64(second as f64 + within));
            k += 1;
        }
        cumulative = end;
    }
    out
}

fn host(name: &str, capacity: f64, parent: Option<(&str, u64)>) -> ScenarioHost {
    ScenarioHost {
        name: name.to_string(),
        capacity,
        parent: parent.map(|(p, _)| p.to_string()),
        latency: Latency::from_millis(parent.map_or(0, |(_, ms)| ms)),
    }
}

fn load(node: &str, cycle: &[f64]) -> ScenarioLoad {
    ScenarioLoad {
        node: node.to_string(),
        cycle: cycle.to_vec(),
    }
}

impl ScenarioLoad {
    /// Its rate in `second`.
    pub fn rate_at(&self, second: usize) -> f64 {
        if self.cycle.is_empty() {
            return 0.0;
        }
        self.cycle[second % self.cycle.len()]
    }

    /// Its rates for `seconds` seconds.
    pub fn rates(&self, seconds: usize) -> Vec<f64> {
        (0..seconds).map(|s| self.rate_at(s)).collect()
    }

    /// One rate for every second.
    pub fn is_constant(&self) -> bool {
        self.cycle.windows(2).all(|w| w[0] == w[1])
    }
}

impl LoadScenario {
    /// DFaaS CloudNet'21 demo: 50 req/s at `n1` sustaining 10, its peers `n2` and `n3`
    /// sustaining 25 each; a star around `n2` over 2 ms links.
    pub fn dfaas_demo() -> LoadScenario {
        LoadScenario {
            name: "demo".into(),
            description: "DFaaS CloudNet'21 demo".into(),
            hosts: vec![
                host("n1", 10.0, Some(("n2", 2))),
                host("n2", 25.0, None),
                host("n3", 25.0, Some(("n2", 2))),
            ],
            loads: vec![load("n1", &[50.0])],
        }
    }

    /// DFaaS's `issue48`: two nodes sustaining 100 req/s each over a 2 ms link, 110 req/s at
    /// `n1`.
    pub fn dfaas_overload_of_two() -> LoadScenario {
        LoadScenario {
            name: "issue48".into(),
            description: "DFaaS overload of two nodes".into(),
            hosts: vec![host("n1", 100.0, Some(("n2", 2))), host("n2", 100.0, None)],
            loads: vec![load("n1", &[110.0])],
        }
    }

    /// Six nodes of 20 req/s; `n2` and its children `n4` and `n5` receive 30 req/s each
    /// (1.5 × capacity) at once, `n1`, `n3`, `n6` 5 req/s each: 105 of 120 req/s. The
    /// overloaded nodes are each other's nearest peers (5 ms links).
    pub fn three_hot() -> LoadScenario {
        LoadScenario {
            name: "hot3".into(),
            description: "Three neighbouring nodes of six overloaded together".into(),
            hosts: vec![
                host("n1", 20.0, None),
                host("n2", 20.0, Some(("n1", 5))),
                host("n3", 20.0, Some(("n1", 5))),
                host("n4", 20.0, Some(("n2", 5))),
                host("n5", 20.0, Some(("n2", 5))),
                host("n6", 20.0, Some(("n3", 5))),
            ],
            loads: vec![
                load("n2", &[30.0]),
                load("n4", &[30.0]),
                load("n5", &[30.0]),
                load("n1", &[5.0]),
                load("n3", &[5.0]),
                load("n6", &[5.0]),
            ],
        }
    }

    /// Five nodes of 20 req/s (5 ms links); `n1` receives 10 req/s with 2-s bursts of 60
    /// (3 × its capacity) every 6 s, in seconds 2-3 of each period; the others 5 req/s each.
    /// At most 80 of 100 req/s.
    pub fn bursts() -> LoadScenario {
        LoadScenario {
            name: "burst".into(),
            description: "2-s bursts of 3 × a node's capacity every 6 s on a base load".into(),
            hosts: vec![
                host("n1", 20.0, Some(("n2", 5))),
                host("n2", 20.0, None),
                host("n3", 20.0, Some(("n2", 5))),
                host("n4", 20.0, Some(("n2", 5))),
                host("n5", 20.0, Some(("n1", 5))),
            ],
            loads: vec![
                load("n1", &[10.0, 10.0, 60.0, 60.0, 10.0, 10.0]),
                load("n2", &[5.0]),
                load("n3", &[5.0]),
                load("n4", &[5.0]),
                load("n5", &[5.0]),
            ],
        }
    }

    /// A chain `n5 – n1 – n2 – n3 – n4` (10, 10, 15 and 20 ms links): `n1` (20 req/s)
    /// receives 30 req/s; `n5`, `n2`, `n3` (20 req/s each) are 90 % busy with 18 req/s of
    /// their own; the only large spare capacity is `n4` (40 req/s, idle), 3 hops and 45 ms
    /// from `n1`. 84 of 120 req/s.
    pub fn far_spare() -> LoadScenario {
        LoadScenario {
            name: "far".into(),
            description: "A hot node whose spare capacity is 3 hops (45 ms) away".into(),
            hosts: vec![
                host("n1", 20.0, Some(("n2", 10))),
                host("n2", 20.0, Some(("n3", 15))),
                host("n3", 20.0, Some(("n4", 20))),
                host("n4", 40.0, None),
                host("n5", 20.0, Some(("n1", 10))),
            ],
            loads: vec![
                load("n1", &[30.0]),
                load("n2", &[18.0]),
                load("n3", &[18.0]),
                load("n5", &[18.0]),
            ],
        }
    }

    /// Four nodes of 20 req/s (5 ms links); a load of 40 req/s (2 × capacity) moves from
    /// `n1` to `n2`, `n3`, `n4` and back every 4 s; the three others receive 5 req/s each.
    /// 55 of 80 req/s.
    pub fn shifting() -> LoadScenario {
        let names = ["n1", "n2", "n3", "n4"];
        let cycle = |i: usize| -> Vec<f64> {
            (0..16)
                .map(|s| if s / 4 == i { 40.0 } else { 5.0 })
                .collect()
        };
        LoadScenario {
            name: "shift".into(),
            description: "A load that moves to another access node every 4 s".into(),
            hosts: vec![
                host("n1", 20.0, None),
                host("n2", 20.0, Some(("n1", 5))),
                host("n3", 20.0, Some(("n1", 5))),
                host("n4", 20.0, Some(("n2", 5))),
            ],
            loads: names
                .iter()
                .enumerate()
                .map(|(i, n)| load(n, &cycle(i)))
                .collect(),
        }
    }

    /// The scenario called `name` (one of [`SCENARIOS`]).
    pub fn named(name: &str) -> Result<LoadScenario, FieldError> {
        match name {
            "demo" => Ok(Self::dfaas_demo()),
            "issue48" => Ok(Self::dfaas_overload_of_two()),
            "hot3" => Ok(Self::three_hot()),
            "burst" => Ok(Self::bursts()),
            "far" => Ok(Self::far_spare()),
            "shift" => Ok(Self::shifting()),
            other => Err(FieldError::new(
                "scenario",
                format!(
                    "unknown offload scenario `{other}` (known: {})",
                    SCENARIOS.join(", ")
                ),
            )),
        }
    }

    /// Checks the shape: unique non-empty host names, positive finite capacities, one root,
    /// every parent a host and every host reaching the root, loads at hosts with finite
    /// non-negative rates. The error names the field (`hosts[2].parent`) and the reason.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.hosts.is_empty() {
            return Err(FieldError::new(
                "hosts",
                "a scenario needs at least one host",
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let field = |f: &str| format!("hosts[{i}].{f}");
            if h.name.trim().is_empty() {
                return Err(FieldError::new(field("name"), "must not be empty"));
            }
            if self.hosts[..i].iter().any(|o| o.name == h.name) {
                return Err(FieldError::new(
                    field("name"),
                    format!("`{}` names two hosts", h.name),
                ));
            }
            if !(h.capacity.is_finite() && h.capacity > 0.0) {
                return Err(FieldError::new(
                    field("capacity"),
                    "must be a finite number of requests per second > 0",
                ));
            }
            if let Some(p) = &h.parent {
                if p == &h.name {
                    return Err(FieldError::new(
                        field("parent"),
                        "a host cannot be its own parent",
                    ));
                }
                if self.host(p).is_none() {
                    return Err(FieldError::new(
                        field("parent"),
                        format!("no host named `{p}`"),
                    ));
                }
            }
        }
        let roots: Vec<&str> = self
            .hosts
            .iter()
            .filter(|h| h.parent.is_none())
            .map(|h| h.name.as_str())
            .collect();
        if roots.len() != 1 {
            return Err(FieldError::new(
                "hosts",
                format!("the tree needs exactly one root (a host without parent), found {roots:?}"),
            ));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if self.depth(&h.name).is_none() {
                return Err(FieldError::new(
                    format!("hosts[{i}].parent"),
                    format!(
                        "`{}` does not reach the root: its parents form a cycle",
                        h.name
                    ),
                ));
            }
        }
        if self.loads.is_empty() {
            return Err(FieldError::new(
                "loads",
                "a scenario needs at least one load",
            ));
        }
        for (i, l) in self.loads.iter().enumerate() {
            if self.host(&l.node).is_none() {
                return Err(FieldError::new(
                    format!("loads[{i}].node"),
                    format!("no host named `{}`", l.node),
                ));
            }
            if l.cycle.is_empty() {
                return Err(FieldError::new(
                    format!("loads[{i}].cycle"),
                    "needs at least one rate",
                ));
            }
            if let Some(s) = l.cycle.iter().position(|r| !(r.is_finite() && *r >= 0.0)) {
                return Err(FieldError::new(
                    format!("loads[{i}].cycle[{s}]"),
                    "must be a finite number of requests per second >= 0",
                ));
            }
        }
        Ok(())
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&ScenarioHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The root of the tree (the first host without parent).
    pub fn root(&self) -> Option<&ScenarioHost> {
        self.hosts.iter().find(|h| h.parent.is_none())
    }

    /// Links from `name` up to the root; `None` for an unknown host or a cycle.
    pub fn depth(&self, name: &str) -> Option<usize> {
        let mut node = self.host(name)?;
        for depth in 0..=self.hosts.len() {
            match &node.parent {
                None => return Some(depth),
                Some(p) => node = self.host(p)?,
            }
        }
        None
    }

    /// The tree path between two hosts: its links and one-way latency; `None` for an unknown
    /// host.
    pub fn path(&self, a: &str, b: &str) -> Option<(usize, Duration)> {
        tree_path(
            a,
            b,
            self.hosts.len(),
            (0, Duration::ZERO),
            |(h1, l1), (h2, l2)| (h1 + h2, l1 + l2),
            |name| {
                let host = self.host(name)?;
                Some(
                    host.parent
                        .as_deref()
                        .map(|p| (p, (1, host.latency.as_duration()))),
                )
            },
        )
    }

    /// One-way latency of the tree path between two hosts.
    pub fn path_latency(&self, a: &str, b: &str) -> Option<Duration> {
        self.path(a, b).map(|(_, l)| l)
    }

    /// Each host's calls in flight and capacity when a call takes `exec` ([`sized`]).
    pub fn sized_hosts(&self, exec: Duration) -> Vec<(u32, f64)> {
        self.hosts.iter().map(|h| sized(h.capacity, exec)).collect()
    }

    /// Requests per second all hosts sustain together when a call takes `exec`.
    pub fn aggregate_capacity(&self, exec: Duration) -> f64 {
        self.sized_hosts(exec).iter().map(|(_, c)| c).sum()
    }

    /// Seconds after which every load repeats (the least common multiple of the cycles).
    pub fn period(&self) -> usize {
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        self.loads
            .iter()
            .map(|l| l.cycle.len().max(1))
            .fold(1, |acc, n| acc / gcd(acc, n) * n)
    }

    /// Requests per second due in `second`, over every load.
    pub fn demand_at(&self, second: usize) -> f64 {
        self.loads.iter().map(|l| l.rate_at(second)).sum()
    }

    /// Requests per second arriving at `node` in `second`.
    pub fn rate_at(&self, node: &str, second: usize) -> f64 {
        self.loads
            .iter()
            .filter(|l| l.node == node)
            .map(|l| l.rate_at(second))
            .sum()
    }

    /// The highest demand in any second over the aggregate capacity when a call takes
    /// `exec`: at most 1 when capacity suffices at every second.
    pub fn peak_utilisation(&self, exec: Duration) -> f64 {
        let peak = (0..self.period())
            .map(|s| self.demand_at(s))
            .fold(0.0, f64::max);
        peak / self.aggregate_capacity(exec).max(f64::MIN_POSITIVE)
    }

    /// Whole seconds a run of `duration` lasts (rounded up, at least one).
    pub fn seconds(duration: Duration) -> usize {
        (duration.as_secs_f64().ceil() as usize).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: Duration = Duration::from_millis(200);

    fn all() -> Vec<LoadScenario> {
        SCENARIOS
            .iter()
            .map(|n| LoadScenario::named(n).unwrap())
            .collect()
    }

    #[test]
    fn every_named_scenario_is_a_valid_tree_with_loads_at_its_hosts() {
        for s in all() {
            assert_eq!(s.validate(), Ok(()), "{}", s.name);
            assert!(SCENARIOS.contains(&s.name.as_str()));
            assert!(!s.description.is_empty());
            for h in &s.hosts {
                assert_eq!(
                    h.parent.is_some(),
                    !h.latency.as_duration().is_zero(),
                    "{h:?}"
                );
            }
        }
        let err = LoadScenario::named("tornado").unwrap_err();
        assert_eq!(err.field, "scenario");
        assert!(err.reason.contains("hot3, burst, far, shift"), "{err}");
    }

    #[test]
    fn aggregate_capacity_suffices_at_every_second_of_every_scenario() {
        for exec in [EXEC, Duration::from_millis(100)] {
            for s in all() {
                let capacity = s.aggregate_capacity(exec);
                for second in 0..s.period() * 2 {
                    assert!(
                        s.demand_at(second) <= capacity,
                        "{} at {exec:?}, second {second}: {} of {capacity}",
                        s.name,
                        s.demand_at(second)
                    );
                }
                assert!(s.peak_utilisation(exec) <= 0.9, "{}", s.name);
            }
        }
    }

    #[test]
    fn the_dfaas_scenarios_keep_their_published_figures() {
        let d = LoadScenario::dfaas_demo();
        assert_eq!(
            d.sized_hosts(EXEC),
            [(2, 10.0), (5, 25.0), (5, 25.0)],
            "n1 10, n2 25, n3 25 req/s"
        );
        assert_eq!(d.aggregate_capacity(EXEC), 60.0);
        assert_eq!(d.demand_at(7), 50.0);
        assert_eq!(d.rate_at("n1", 0), 50.0);
        assert_eq!(d.root().unwrap().name, "n2");
        let i = LoadScenario::dfaas_overload_of_two();
        assert_eq!(i.sized_hosts(EXEC), [(20, 100.0), (20, 100.0)]);
        assert_eq!(i.demand_at(0), 110.0);
        assert_eq!(i.path_latency("n1", "n2"), Some(Duration::from_millis(2)));
    }

    #[test]
    fn hot3_overloads_three_neighbouring_nodes_of_six_at_once() {
        let s = LoadScenario::three_hot();
        assert_eq!(s.hosts.len(), 6);
        let hot: Vec<&str> = s
            .hosts
            .iter()
            .filter(|h| s.rate_at(&h.name, 0) > h.capacity)
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(hot, ["n2", "n4", "n5"]);
        // n2 is the parent of the other two: each hot node's nearest peers are hot.
        assert_eq!(s.path("n4", "n2"), Some((1, Duration::from_millis(5))));
        assert_eq!(s.path("n4", "n5"), Some((2, Duration::from_millis(10))));
        assert_eq!(s.path("n4", "n6"), Some((4, Duration::from_millis(20))));
        assert_eq!(s.period(), 1);
        assert_eq!(s.demand_at(0), 105.0);
    }

    #[test]
    fn burst_sends_three_times_a_nodes_capacity_for_two_seconds_every_six() {
        let s = LoadScenario::bursts();
        assert_eq!(s.period(), 6);
        let n1: Vec<f64> = s.loads[0].rates(12);
        assert_eq!(
            n1,
            [
                10.0, 10.0, 60.0, 60.0, 10.0, 10.0, 10.0, 10.0, 60.0, 60.0, 10.0, 10.0
            ]
        );
        assert_eq!(s.host("n1").unwrap().capacity * 3.0, 60.0);
        assert_eq!(s.demand_at(2), 80.0);
        assert_eq!(s.demand_at(0), 30.0);
        assert!(!s.loads[0].is_constant() && s.loads[1].is_constant());
    }

    #[test]
    fn far_puts_the_only_large_spare_capacity_three_hops_from_the_hot_node() {
        let s = LoadScenario::far_spare();
        let (hops, latency) = s.path("n1", "n4").unwrap();
        assert_eq!(hops, 3);
        assert_eq!(latency, Duration::from_millis(45));
        for (a, b) in [("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n1", "n5")] {
            let l = s.path_latency(a, b).unwrap();
            assert!(l >= Duration::from_millis(10) && l <= Duration::from_millis(20));
        }
        // Spare capacity by host: only n4 has more than 10 % of its own.
        for h in &s.hosts {
            let spare = h.capacity - s.rate_at(&h.name, 0);
            if h.name == "n4" {
                assert_eq!(spare, 40.0);
            } else {
                assert!(spare <= 0.1 * h.capacity, "{}: {spare}", h.name);
            }
        }
    }

    #[test]
    fn shift_moves_the_hot_access_node_every_four_seconds() {
        let s = LoadScenario::shifting();
        assert_eq!(s.period(), 16);
        let hot_at = |second: usize| -> Vec<&str> {
            s.hosts
                .iter()
                .filter(|h| s.rate_at(&h.name, second) > h.capacity)
                .map(|h| h.name.as_str())
                .collect()
        };
        assert_eq!(hot_at(0), ["n1"]);
        assert_eq!(hot_at(3), ["n1"]);
        assert_eq!(hot_at(4), ["n2"]);
        assert_eq!(hot_at(9), ["n3"]);
        assert_eq!(hot_at(15), ["n4"]);
        assert_eq!(hot_at(16), ["n1"]);
        for second in 0..32 {
            assert_eq!(s.demand_at(second), 55.0);
        }
    }

    #[test]
    fn a_broken_scenario_is_refused_naming_the_field() {
        let mut s = LoadScenario::dfaas_demo();
        s.hosts[0].parent = Some("n9".into());
        assert_eq!(s.validate().unwrap_err().field, "hosts[0].parent");
        let mut s = LoadScenario::dfaas_demo();
        s.hosts[1].parent = Some("n1".into());
        let err = s.validate().unwrap_err();
        assert_eq!(err.field, "hosts");
        assert!(err.reason.contains("exactly one root"), "{err}");
        let mut s = LoadScenario::dfaas_demo();
        s.hosts[2].name = "n1".into();
        assert_eq!(s.validate().unwrap_err().field, "hosts[2].name");
        let mut s = LoadScenario::dfaas_demo();
        s.hosts[1].capacity = f64::NAN;
        assert_eq!(s.validate().unwrap_err().field, "hosts[1].capacity");
        let mut s = LoadScenario::dfaas_demo();
        s.loads[0].node = "n7".into();
        assert_eq!(s.validate().unwrap_err().field, "loads[0].node");
        let mut s = LoadScenario::dfaas_demo();
        s.loads[0].cycle = vec![1.0, -1.0];
        assert_eq!(s.validate().unwrap_err().field, "loads[0].cycle[1]");
        // Two hosts naming each other as parents next to a root: a cycle.
        let mut s = LoadScenario::three_hot();
        s.hosts[3].parent = Some("n5".into());
        s.hosts[4].parent = Some("n4".into());
        let err = s.validate().unwrap_err();
        assert_eq!(err.field, "hosts[3].parent");
        assert!(err.reason.contains("cycle"), "{err}");
    }

    #[test]
    fn capacity_is_rounded_to_whole_calls_in_flight_and_at_least_one() {
        assert_eq!(sized(10.0, EXEC), (2, 10.0));
        assert_eq!(sized(1.0, Duration::from_millis(100)), (1, 10.0));
        assert_eq!(sized(12.0, EXEC), (2, 10.0));
        assert_eq!(sized(f64::NAN, EXEC), (1, 5.0));
        assert_eq!(LoadScenario::seconds(Duration::from_millis(7500)), 8);
        assert_eq!(LoadScenario::seconds(Duration::ZERO), 1);
    }

    #[test]
    fn per_second_offsets_follow_each_seconds_rate_and_carry_fractions() {
        let ms = Duration::from_millis;
        assert_eq!(
            per_second_offsets(&[2.0, 0.0, 4.0]),
            [ms(0), ms(500), ms(2000), ms(2250), ms(2500), ms(2750)]
        );
        assert_eq!(per_second_offsets(&[2.5, 2.5]).len(), 5);
        assert!(per_second_offsets(&[f64::NAN, -1.0]).is_empty());
    }

    #[test]
    fn the_aims_are_ninety_nine_percent_every_second_and_p95_within_three_executions() {
        let a = AimCheck::of(Some(0.99), Some(600.0), EXEC);
        assert_eq!(a.success_every_second, Some(true));
        assert_eq!(a.p95_latency, Some(true));
        assert!(a.met());
        let b = AimCheck::of(Some(0.989), Some(600.1), EXEC);
        assert_eq!(
            (b.success_every_second, b.p95_latency),
            (Some(false), Some(false))
        );
        assert!(!b.met());
        let none = AimCheck::of(None, None, EXEC);
        assert_eq!((none.success_every_second, none.p95_latency), (None, None));
        assert!(!none.met());
        assert_eq!(latency_aim_ms(EXEC), 600.0);
    }
}
