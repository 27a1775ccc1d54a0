"""``fogmarket-enos``: deploy a federation on Grid'5000 or on this machine, run an IoT scenario,
bring the results back.

- ``local``: hosts are network namespaces of this machine (root, openssh-server); the last line
  is ``enos-local: H hosts, N fog nodes, P placements, OK/SENT invocations ok``.
- ``g5k``: reserves Grid'5000 machines (or VMs), same steps; the job is kept for inspection
  until ``g5k-destroy``.
- ``g5k-destroy``: releases the job.
- ``local-clean``: removes namespaces and links an interrupted local run left.
- ``links``: the pairwise link constraints of a topology.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import netns
from .deploy import DeployError, Options, run
from .plan import Plan
from .providers import G5kProvider, G5kSettings, LocalProvider
from .topology import Topology, TopologyError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topology", type=Path, default=Path("testbed/topologies/local.toml"))
    p.add_argument("--scenario", type=Path, default=Path("iot_emulation/scenarios/enos-local.toml"))
    p.add_argument("--bin-dir", type=Path, default=Path("target/release"),
                   help="the built binaries (default: target/release)")
    p.add_argument("--testbed-bin", type=Path, help="the testbed binary (default: BIN_DIR/testbed)")
    p.add_argument("--results", type=Path, help="local results folder (default: .run/<kind>-<time>)")
    p.add_argument("--duration", help="how long the scenario sends requests (overrides it), e.g. '30 s'")
    p.add_argument("--seed", type=int, help="the scenario's seed (overrides it)")
    p.add_argument("--database", choices=["postgres", "sqlite"], default="postgres",
                   help="the marketplace's database (default: PostgreSQL on its host)")
    p.add_argument("--require-ok", type=float, default=None, metavar="RATIO",
                   help="fail unless at least this share of invocations succeeded")
    p.add_argument("--require-sent", type=int, default=None, metavar="N",
                   help="fail unless at least N invocations were sent")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="fogmarket-enos", description=__doc__.split("\n\n")[0])
    sub = root.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="hosts are network namespaces of this machine")
    _common(local)
    g5k = sub.add_parser("g5k", help="hosts are Grid'5000 machines or VMs")
    _common(g5k)
    g5k.add_argument("--cluster", default="paravance")
    g5k.add_argument("--site", help="the cluster's site (default: asked from the Grid'5000 API)")
    g5k.add_argument("--walltime", default="02:00:00")
    g5k.add_argument("--reservation", help="start time of an advance reservation, 'YYYY-MM-DD HH:MM:SS'")
    g5k.add_argument("--job-name", default="fogmarket")
    g5k.add_argument("--vms", action="store_true", help="pack the hosts as VMs (en.VMonG5k)")
    g5k.add_argument("--backend", choices=["embedded", "openfaas"], default="embedded",
                     help="the FaaS backend of each fog node (openfaas: k3s + OpenFaaS on every host)")
    g5k.add_argument("--jaeger", action="store_true", help="a Jaeger host receiving every service's traces")
    destroy = sub.add_parser("g5k-destroy", help="release the Grid'5000 job")
    destroy.add_argument("--job-name", default="fogmarket")
    destroy.add_argument("--cluster", default="paravance")
    destroy.add_argument("--walltime", default="02:00:00")
    sub.add_parser("local-clean", help="remove what an interrupted local run left")
    links = sub.add_parser("links", help="the pairwise link constraints of a topology")
    links.add_argument("--topology", type=Path, required=True)
    links.add_argument("--json", action="store_true")
    return root


def _options(args, kind: str) -> Options:
    results = (args.results or Path(".run") / f"{kind}-{int(time.time())}").resolve()
    bin_dir = args.bin_dir.resolve()
    testbed_bin = (args.testbed_bin or bin_dir / "testbed").resolve()
    results.mkdir(parents=True, exist_ok=True)
    # EnosLib writes each playbook into the working directory: keep them out of the checkout.
    os.chdir(results)
    return Options(
        bin_dir=bin_dir,
        results_dir=results,
        manager="process",
        real_links=False,
        testbed_bin=testbed_bin,
        duration=args.duration,
        seed=args.seed,
    )


def _finish(summary, args, label: str) -> int:
    print(summary.last_line(label), flush=True)
    failures = []
    if args.require_sent is not None and summary.sent < args.require_sent:
        failures.append(f"{summary.sent} invocations sent, fewer than {args.require_sent}")
    if args.require_ok is not None and (summary.sent == 0 or summary.ok / summary.sent < args.require_ok):
        failures.append(f"{summary.ok}/{summary.sent} ok, below {args.require_ok:.0%}")
    for f in failures:
        print(f"{label}: FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "links":
            constraints = Topology.load(args.topology).constraints()
            if args.json:
                print(json.dumps([c.__dict__ for c in constraints], indent=1))
            else:
                for c in constraints:
                    rate = c.netem_rate(default_bps=1) if c.rate_bps else "unlimited"
                    print(f"{c.a} <-> {c.b}: delay {c.netem_delay()}, rate {rate}, loss {c.netem_loss() or '0%'}")
            return 0
        if args.command == "local-clean":
            removed = netns.cleanup_all()
            print(f"local-clean: removed {len(removed)}: {' '.join(removed) or 'nothing'}")
            return 0
        if args.command == "g5k-destroy":
            import enoslib as en

            conf = en.G5kConf.from_settings(job_name=args.job_name, walltime=args.walltime)
            conf.add_machine(roles=["any"], cluster=args.cluster, nodes=1)
            en.G5k(conf.finalize()).destroy()
            print(f"g5k-destroy: job {args.job_name} released")
            return 0
        topology = Topology.load(args.topology.resolve())
        args.scenario = args.scenario.resolve()
        if not args.scenario.is_file():
            raise ValueError(f"--scenario: {args.scenario} is not a file")
        if args.command == "local":
            label = "enos-local"
            plan = Plan(topology=topology, scenario=args.scenario, database=args.database)
            options = _options(args, "enos-local")
            provider = LocalProvider(plan, options.results_dir / "netns")
            with provider as provided:
                options.manager, options.real_links = provided.manager, provided.real_links
                summary = run(plan, provided.roles, provided.networks, options, label)
            left = netns.leftovers(provider.hosts.tag, provider.hosts.run_dir)
            if left:
                print(f"{label}: left behind: {' '.join(left)}", file=sys.stderr)
                return 1
            return _finish(summary, args, label)
        label = "g5k"
        plan = Plan(topology=topology, scenario=args.scenario, database=args.database,
                    backend=args.backend, jaeger=args.jaeger)
        settings = G5kSettings(job_name=args.job_name, cluster=args.cluster, site=args.site, walltime=args.walltime,
                               reservation=args.reservation, vms=args.vms)
        options = _options(args, "g5k")
        with G5kProvider(plan, settings) as provided:
            options.manager, options.real_links = provided.manager, provided.real_links
            summary = run(plan, provided.roles, provided.networks, options, label)
        return _finish(summary, args, label)
    except (TopologyError, DeployError, netns.HostsError, netns.Interrupted, ValueError) as e:
        print(f"fogmarket-enos: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
