//! Tests of the FaaS system: faas-sim's semantics, its two bugs avoided, determinism.

use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn system() -> (Engine<FaasEvent>, FaasSystem) {
    (Engine::new(7), FaasSystem::default())
}

fn add_nodes(engine: &mut Engine<FaasEvent>, faas: &mut FaasSystem, n: usize) {
    for i in 0..n {
        faas.add_node(
            engine,
            format!("n{i}"),
            Cpu::from_cores(4),
            Bytes::from_mib(4096),
        );
    }
}

/// 500 m / 128 MiB, scale 1..=10, 500 ms cold start, 100 ms fixed execution, concurrency 1.
fn function(name: &str) -> FunctionDeployment {
    FunctionDeployment {
        cpu: Cpu::from_millis(500),
        memory: Bytes::from_mib(128),
        scale_min: 1,
        scale_max: 10,
        startup: MS(500),
        exec: ExecTime::Fixed(MS(100)),
        concurrency: 1,
        ..FunctionDeployment::new(name, "img")
    }
}

fn at(ms: u64) -> SimTime {
    SimTime::from_millis(ms)
}

fn record(faas: &FaasSystem, request: RequestId) -> &InvocationRecord {
    let found: Vec<_> = faas
        .records()
        .iter()
        .filter(|r| r.request == request)
        .collect();
    assert_eq!(found.len(), 1, "exactly one record for {request}");
    found[0]
}

fn running(faas: &FaasSystem, name: &str) -> Vec<ReplicaId> {
    faas.discover(name).unwrap().iter().map(|r| r.id).collect()
}

#[test]
fn deploy_creates_scale_min_replicas_that_run_after_startup() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 2);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 2,
            ..function("f")
        },
    )
    .unwrap();
    let starting = faas
        .get_replicas("f", Some(ReplicaState::Starting))
        .unwrap();
    assert_eq!(starting.len(), 2);
    assert!(faas.discover("f").unwrap().is_empty());
    faas.run_until(&mut engine, at(499));
    assert!(faas.discover("f").unwrap().is_empty());
    faas.run_until(&mut engine, at(500));
    let up = faas.discover("f").unwrap();
    assert_eq!(up.len(), 2);
    assert!(up.iter().all(|r| r.running_at == Some(at(500))));
    assert_eq!(faas.get_deployments().len(), 1);
    assert_eq!(faas.get_deployments()[0].name, "f");
}

#[test]
fn cold_start_first_invoke_waits_startup_then_runs_marked_cold() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            ..function("f")
        },
    )
    .unwrap();
    assert!(faas.get_replicas("f", None).unwrap().is_empty());
    faas.run_until(&mut engine, at(1000));
    let cold = faas.invoke(&mut engine, "f").unwrap();
    assert_eq!(faas.waiting(), 1);
    faas.run_until(&mut engine, at(3000));
    let warm = faas.invoke(&mut engine, "f").unwrap();
    faas.run(&mut engine);

    let r = record(&faas, cold);
    assert_eq!(r.outcome, Outcome::Ok);
    assert!(r.cold);
    // 500 ms startup is a multiple of the 100 ms poll interval: no rounding.
    assert_eq!(r.start, Some(at(1500)));
    assert_eq!(r.end, at(1600));
    assert_eq!(r.wait(), Some(MS(500)));
    let r = record(&faas, warm);
    assert_eq!(r.outcome, Outcome::Ok);
    assert!(!r.cold);
    assert_eq!(r.wait(), Some(Duration::ZERO));
    assert_eq!(faas.waiting(), 0);
}

#[test]
fn cold_start_wait_is_rounded_up_to_the_poll_interval() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            startup: MS(430),
            ..function("f")
        },
    )
    .unwrap();
    let req = faas.invoke(&mut engine, "f").unwrap();
    faas.run(&mut engine);
    assert_eq!(record(&faas, req).start, Some(at(500)));
}

#[test]
fn suspend_leaves_zero_running_replicas_and_frees_node_capacity() {
    // faas-sim's bug: suspend called scale_down without running it, so nothing happened.
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 3,
            ..function("f")
        },
    )
    .unwrap();
    faas.run_until(&mut engine, at(1000));
    assert_eq!(running(&faas, "f").len(), 3);
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::from_millis(1500));
    assert_eq!(faas.nodes()[0].used_memory(), Bytes::from_mib(384));

    assert_eq!(faas.suspend(&mut engine, "f").unwrap(), 3);

    assert!(faas.discover("f").unwrap().is_empty());
    assert!(!faas.poll_available_replica("f").unwrap());
    assert!(
        faas.get_replicas("f", Some(ReplicaState::Running))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        faas.get_replicas("f", Some(ReplicaState::Suspended))
            .unwrap()
            .len(),
        3
    );
    assert_eq!(faas.nodes()[0].free_cpu(), Cpu::from_cores(4));
    assert_eq!(faas.nodes()[0].free_memory(), Bytes::from_mib(4096));
    assert!(
        faas.get_replicas("f", None)
            .unwrap()
            .iter()
            .all(|r| !r.holds_capacity())
    );
}

#[test]
fn invoke_after_suspend_scales_from_zero_and_is_served() {
    // faas-sim's bug: invoke polled for a replica but kept the stale empty list and failed.
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(&mut engine, function("f")).unwrap();
    faas.run_until(&mut engine, at(1000));
    let before = running(&faas, "f");
    assert_eq!(before.len(), 1);
    faas.suspend(&mut engine, "f").unwrap();

    let req = faas.invoke(&mut engine, "f").unwrap();
    faas.run(&mut engine);

    let r = record(&faas, req);
    assert_eq!(r.outcome, Outcome::Ok, "served, not failed: {r:?}");
    assert!(r.cold);
    assert_eq!(r.start, Some(at(1500)));
    let after = running(&faas, "f");
    assert_eq!(after.len(), 1);
    assert_ne!(
        after, before,
        "a new replica, the suspended one stays suspended"
    );
    assert_eq!(r.replica, Some(after[0]));
}

#[test]
fn round_robin_spreads_invocations_over_running_replicas() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 3);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 3,
            ..function("f")
        },
    )
    .unwrap();
    faas.run_until(&mut engine, at(1000));
    let replicas = running(&faas, "f");
    assert_eq!(replicas.len(), 3);

    let reqs: Vec<_> = (0..6)
        .map(|_| faas.invoke(&mut engine, "f").unwrap())
        .collect();
    faas.run(&mut engine);

    let served: Vec<_> = reqs
        .iter()
        .map(|r| record(&faas, *r).replica.unwrap())
        .collect();
    let expected: Vec<_> = replicas.iter().chain(&replicas).copied().collect();
    assert_eq!(served, expected);
    // One replica per node (equal free CPU: the first added node wins each tie in turn).
    let nodes: Vec<_> = reqs
        .iter()
        .map(|r| record(&faas, *r).node.unwrap())
        .collect();
    assert_eq!(nodes[..3], [NodeIdx(0), NodeIdx(1), NodeIdx(2)]);
    // Concurrency 1: the second round queues behind the first, even though it is pure
    // round robin (no replica is skipped for being busy).
    let waits: Vec<_> = reqs
        .iter()
        .map(|r| record(&faas, *r).wait().unwrap())
        .collect();
    assert_eq!(
        waits,
        [
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            MS(100),
            MS(100),
            MS(100)
        ]
    );
}

#[test]
fn scheduler_places_on_the_node_with_the_most_free_cpu_that_fits() {
    let (mut engine, mut faas) = system();
    faas.add_node(
        &mut engine,
        "small",
        Cpu::from_millis(1000),
        Bytes::from_mib(4096),
    );
    faas.add_node(
        &mut engine,
        "big",
        Cpu::from_millis(3000),
        Bytes::from_mib(4096),
    );
    faas.add_node(
        &mut engine,
        "big-no-memory",
        Cpu::from_millis(8000),
        Bytes::from_mib(64),
    );
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 5,
            ..function("f")
        },
    )
    .unwrap();
    let nodes: Vec<_> = faas
        .get_replicas("f", None)
        .unwrap()
        .iter()
        .map(|r| r.node.unwrap())
        .collect();
    // big: 3000 free -> 2500 -> 2000 -> 1500 -> 1000 (tie with small: first added wins).
    assert_eq!(
        nodes,
        [NodeIdx(1), NodeIdx(1), NodeIdx(1), NodeIdx(1), NodeIdx(0)]
    );
}

#[test]
fn scale_down_removes_the_newest_and_never_goes_below_zero() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 3,
            ..function("f")
        },
    )
    .unwrap();
    faas.run_until(&mut engine, at(1000));
    let all = running(&faas, "f");

    assert_eq!(faas.scale_down(&mut engine, "f", 1).unwrap(), 1);
    assert_eq!(running(&faas, "f"), all[..2]);
    assert_eq!(faas.scale_down(&mut engine, "f", 5).unwrap(), 2);
    assert_eq!(faas.scale_down(&mut engine, "f", 1).unwrap(), 0);
    assert!(running(&faas, "f").is_empty());
    assert_eq!(faas.get_replicas("f", None).unwrap().len(), 3);
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::ZERO);
}

#[test]
fn scale_up_stops_at_scale_max() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 2);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_max: 3,
            ..function("f")
        },
    )
    .unwrap();
    assert_eq!(faas.scale_up(&mut engine, "f", 5).unwrap(), 2);
    assert_eq!(faas.scale_up(&mut engine, "f", 1).unwrap(), 0);
    faas.run_until(&mut engine, at(1000));
    assert_eq!(running(&faas, "f").len(), 3);
}

#[test]
fn invocations_queue_fifo_when_concurrency_is_exceeded() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            concurrency: 2,
            ..function("f")
        },
    )
    .unwrap();
    faas.run_until(&mut engine, at(1000));
    let reqs: Vec<_> = (0..5)
        .map(|_| faas.invoke(&mut engine, "f").unwrap())
        .collect();
    let replica = faas.discover("f").unwrap()[0];
    assert_eq!(replica.in_flight(), 2);
    assert_eq!(replica.queued(), 3);
    faas.run(&mut engine);

    let starts: Vec<_> = reqs
        .iter()
        .map(|r| record(&faas, *r).start.unwrap())
        .collect();
    assert_eq!(starts, [at(1000), at(1000), at(1100), at(1100), at(1200)]);
    assert!(
        reqs.iter()
            .all(|r| record(&faas, *r).outcome == Outcome::Ok)
    );
    assert_eq!(record(&faas, reqs[4]).end, at(1300));
}

#[test]
fn scale_down_lets_executing_invocations_finish_and_drops_queued_ones() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(&mut engine, function("f")).unwrap();
    faas.run_until(&mut engine, at(1000));
    let executing = faas.invoke(&mut engine, "f").unwrap();
    let queued = faas.invoke(&mut engine, "f").unwrap();
    faas.run_until(&mut engine, at(1050));

    assert_eq!(faas.scale_down(&mut engine, "f", 1).unwrap(), 1);
    // Still holding its capacity while the executing invocation drains.
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::from_millis(500));
    let r = record(&faas, queued);
    assert_eq!(
        (r.outcome, r.end, r.start),
        (Outcome::Dropped, at(1050), None)
    );

    faas.run(&mut engine);
    let r = record(&faas, executing);
    assert_eq!((r.outcome, r.end), (Outcome::Ok, at(1100)));
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::ZERO);
}

#[test]
fn a_replica_suspended_during_its_cold_start_never_runs() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(&mut engine, function("f")).unwrap();
    faas.run_until(&mut engine, at(200));
    faas.suspend(&mut engine, "f").unwrap();
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::ZERO);
    faas.run(&mut engine);
    let replicas = faas.get_replicas("f", None).unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].state, ReplicaState::Suspended);
    assert_eq!(replicas[0].running_at, None);
}

#[test]
fn a_replica_that_fits_nowhere_stays_conceived_and_invocations_end_with_no_replica() {
    let (mut engine, mut faas) = system();
    faas.add_node(
        &mut engine,
        "tiny",
        Cpu::from_millis(1000),
        Bytes::from_mib(4096),
    );
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            cpu: Cpu::from_millis(2000),
            ..function("big")
        },
    )
    .unwrap();
    faas.run_until(&mut engine, at(250));
    let req = faas.invoke(&mut engine, "big").unwrap();
    faas.run(&mut engine);

    let r = record(&faas, req);
    assert_eq!(r.outcome, Outcome::NoReplica);
    assert!(r.cold);
    assert_eq!(r.start, None);
    assert_eq!(r.response_time(), Duration::from_secs(30));
    let replicas = faas.get_replicas("big", None).unwrap();
    assert_eq!(
        replicas.len(),
        1,
        "one scale-from-zero replica, not one per poll"
    );
    assert_eq!(replicas[0].state, ReplicaState::Conceived);
    assert_eq!(replicas[0].node, None);
    assert_eq!(faas.waiting(), 0);
}

#[test]
fn a_conceived_replica_is_placed_when_a_node_with_room_is_added() {
    let (mut engine, mut faas) = system();
    faas.deploy(&mut engine, function("f")).unwrap();
    assert_eq!(
        faas.get_replicas("f", Some(ReplicaState::Conceived))
            .unwrap()
            .len(),
        1
    );
    let req = faas.invoke(&mut engine, "f").unwrap();
    faas.run_until(&mut engine, at(1000));
    faas.add_node(
        &mut engine,
        "late",
        Cpu::from_cores(1),
        Bytes::from_mib(1024),
    );
    faas.run(&mut engine);
    let r = record(&faas, req);
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.start, Some(at(1500)));
    assert_eq!(r.node, Some(NodeIdx(0)));
}

#[test]
fn freed_capacity_places_waiting_replicas_of_another_function() {
    let (mut engine, mut faas) = system();
    faas.add_node(
        &mut engine,
        "one",
        Cpu::from_millis(500),
        Bytes::from_mib(4096),
    );
    faas.deploy(&mut engine, function("a")).unwrap();
    faas.deploy(&mut engine, function("b")).unwrap();
    assert_eq!(
        faas.get_replicas("b", Some(ReplicaState::Conceived))
            .unwrap()
            .len(),
        1
    );
    faas.suspend(&mut engine, "a").unwrap();
    assert_eq!(
        faas.get_replicas("b", Some(ReplicaState::Starting))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn remove_drops_waiting_invocations_and_frees_the_name() {
    let (mut engine, mut faas) = system();
    add_nodes(&mut engine, &mut faas, 1);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            ..function("f")
        },
    )
    .unwrap();
    let req = faas.invoke(&mut engine, "f").unwrap();
    faas.run_until(&mut engine, at(250));
    faas.remove(&mut engine, "f").unwrap();
    assert!(matches!(
        faas.invoke(&mut engine, "f"),
        Err(FaasError::UnknownFunction { op: "invoke", .. })
    ));
    assert!(faas.get_deployments().is_empty());
    faas.run(&mut engine);
    let r = record(&faas, req).clone();
    assert_eq!((r.outcome, r.end), (Outcome::Dropped, at(250)));
    assert_eq!(faas.nodes()[0].used_cpu(), Cpu::ZERO);
    // The name can be deployed again, as a new function.
    let id = faas.deploy(&mut engine, function("f")).unwrap();
    assert_ne!(id, r.function);
}

#[test]
fn invalid_deployments_name_the_field() {
    let (mut engine, mut faas) = system();
    let err = |fd| match FaasSystem::default().deploy(&mut Engine::<FaasEvent>::new(1), fd) {
        Err(FaasError::InvalidDeployment { field, .. }) => field,
        other => panic!("expected InvalidDeployment, got {other:?}"),
    };
    assert_eq!(err(function("")), "name");
    assert_eq!(
        err(FunctionDeployment {
            scale_max: 0,
            scale_min: 0,
            ..function("f")
        }),
        "scale_max"
    );
    assert_eq!(
        err(FunctionDeployment {
            scale_min: 11,
            ..function("f")
        }),
        "scale_min"
    );
    assert_eq!(
        err(FunctionDeployment {
            concurrency: 0,
            ..function("f")
        }),
        "concurrency"
    );
    assert_eq!(
        err(FunctionDeployment {
            exec: ExecTime::LogNormal {
                mu: 0.0,
                sigma: -1.0
            },
            ..function("f")
        }),
        "exec"
    );
    assert_eq!(
        err(FunctionDeployment {
            exec: ExecTime::LogNormal {
                mu: f64::NAN,
                sigma: 1.0
            },
            ..function("f")
        }),
        "exec"
    );
    faas.deploy(&mut engine, function("f")).unwrap();
    assert_eq!(
        faas.deploy(&mut engine, function("f")),
        Err(FaasError::AlreadyDeployed { name: "f".into() })
    );
    assert!(matches!(
        FaasSystem::new(FaasConfig {
            poll_interval: Duration::ZERO,
            ..FaasConfig::default()
        }),
        Err(FaasError::InvalidConfig {
            field: "poll_interval",
            ..
        })
    ));
    assert!(matches!(
        faas.scale_up(&mut engine, "nope", 1),
        Err(FaasError::UnknownFunction { op: "scale_up", .. })
    ));
}

fn lognormal_run(seed: u64) -> Vec<InvocationRecord> {
    let mut engine = Engine::new(seed);
    let mut faas = FaasSystem::default();
    add_nodes(&mut engine, &mut faas, 2);
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            scale_max: 4,
            concurrency: 2,
            exec: ExecTime::LogNormal {
                mu: -3.0,
                sigma: 1.0,
            },
            ..function("f")
        },
    )
    .unwrap();
    faas.deploy(&mut engine, function("g")).unwrap();
    for i in 0..500u64 {
        faas.run_until(&mut engine, at(i * 7));
        faas.invoke(&mut engine, if i % 3 == 0 { "g" } else { "f" })
            .unwrap();
        if i == 100 {
            faas.scale_up(&mut engine, "f", 3).unwrap();
        }
        if i == 300 {
            faas.scale_down(&mut engine, "f", 2).unwrap();
        }
    }
    faas.run(&mut engine);
    assert_eq!(faas.records().len(), 500);
    faas.take_records()
}

#[test]
fn same_seed_gives_identical_records_and_a_different_seed_different_exec_times() {
    let a = lognormal_run(11);
    let b = lognormal_run(11);
    let c = lognormal_run(12);
    assert_eq!(a, b);
    let exec = |rs: &[InvocationRecord]| rs.iter().map(|r| r.exec()).collect::<Vec<_>>();
    assert_ne!(exec(&a), exec(&c));
}

#[test]
fn an_outer_simulator_embeds_faas_events_in_its_own_enum() {
    enum Event {
        Faas(FaasEvent),
        Arrival(&'static str),
    }
    impl From<FaasEvent> for Event {
        fn from(e: FaasEvent) -> Self {
            Event::Faas(e)
        }
    }
    let mut engine: Engine<Event> = Engine::new(3);
    let mut faas = FaasSystem::default();
    faas.add_node(&mut engine, "n", Cpu::from_cores(2), Bytes::from_mib(1024));
    faas.deploy(
        &mut engine,
        FunctionDeployment {
            scale_min: 0,
            ..function("f")
        },
    )
    .unwrap();
    for ms in [0, 10, 2_000] {
        engine.schedule_at(at(ms), Event::Arrival("f")).unwrap();
    }
    while let Some((_, event)) = engine.pop() {
        match event {
            Event::Faas(e) => faas.handle(&mut engine, e),
            Event::Arrival(name) => {
                faas.invoke(&mut engine, name).unwrap();
            }
        }
    }
    let outcomes: Vec<_> = faas.records().iter().map(|r| (r.cold, r.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (true, Outcome::Ok),
            (true, Outcome::Ok),
            (false, Outcome::Ok)
        ]
    );
}

#[test]
fn faas_events_stay_small() {
    assert!(
        std::mem::size_of::<FaasEvent>() <= 40,
        "{}",
        std::mem::size_of::<FaasEvent>()
    );
}
