"""The deployment's steps, the same for every provider: install, start, links, experiment,
collect, stop.

Everything happens on the hosts through EnosLib (``en.actions``, ``en.run_command``, Ansible
over SSH); the controller only prepares files (binaries, the fog nodes' configuration files
written by ``testbed hosts-config``) and reads results back. What differs between providers is
passed in, never branched on by provider name: how services run (``systemd`` or ``process``,
see ``services``) and whether the links are shaped for real (``NetemHTB``) or emulated inside
the fog nodes.
"""

from __future__ import annotations

import json
import logging
import secrets
import shlex
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from contextlib import contextmanager

import enoslib as en
from enoslib.errors import EnosFailedHostsError, EnosUnreachableHostsError

from . import links, openfaas
from .plan import (
    BINARIES,
    FOG_PORT,
    JAEGER_OTLP_PORT,
    MARKETPLACE_PORT,
    POSTGRES_PORT,
    Plan,
    fog_role,
)
from .services import Service

log = logging.getLogger(__name__)

#: Jaeger all-in-one, pinned (https://github.com/jaegertracing/jaeger/releases); its UI
#: listens on port 16686 of the jaeger host. Fetched over HTTPS by version, not by checksum.
JAEGER_VERSION = "1.62.0"
JAEGER_URL = (
    f"https://github.com/jaegertracing/jaeger/releases/download/v{JAEGER_VERSION}/"
    f"jaeger-{JAEGER_VERSION}-linux-amd64.tar.gz"
)

#: How long each kind of wait may take before the step fails.
SERVICE_START_S = 120
IOT_GRACE_S = 180


class DeployError(RuntimeError):
    """A step failed; the message names the step and the host."""


@dataclass
class Options:
    #: Directory holding the release (or debug) binaries on the controller.
    bin_dir: Path
    #: Local folder where the results and logs land.
    results_dir: Path
    #: ``systemd`` or ``process``: how services run on the hosts.
    manager: str
    #: Shape the links between fog nodes with NetemHTB (Grid'5000). Without, the fog nodes
    #: emulate the topology's latencies in process.
    real_links: bool
    #: The ``testbed`` binary (writes the fog nodes' configuration files).
    testbed_bin: Path
    #: Overrides of the scenario.
    duration: str | None = None
    seed: int | None = None
    enrollment_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    db_password: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass
class Summary:
    hosts: int
    fog_nodes: int
    placements: int
    ok: int
    sent: int
    links: str
    results_dir: Path

    def last_line(self, label: str) -> str:
        return (
            f"{label}: {self.hosts} hosts, {self.fog_nodes} fog nodes, {self.placements} "
            f"placements, {self.ok}/{self.sent} invocations ok"
        )


def _describe(records) -> str:
    return "; ".join(
        f"{r.host}: "
        + (r.payload.get("stderr") or r.payload.get("msg") or r.payload.get("stdout") or "").strip()[-600:]
        for r in records
    )


def _check(results, step: str) -> None:
    failed = [r for r in results if r.status not in ("OK", "SKIPPED")]
    if failed:
        raise DeployError(f"{step} failed on {_describe(failed)}")


@contextmanager
def _actions(roles, step: str):
    """``en.actions`` whose failures are a ``DeployError`` naming the step and the hosts."""
    try:
        with en.actions(roles=roles, gather_facts=False) as a:
            yield a
    except (EnosFailedHostsError, EnosUnreachableHostsError) as e:
        raise DeployError(f"{step} failed on {_describe(e.hosts)}") from None
    _check(a.results, step)


def _run(cmd: str, roles, step: str, **kwargs):
    try:
        results = en.run_command(cmd, roles=roles, task_name=step, **kwargs)
    except (EnosFailedHostsError, EnosUnreachableHostsError) as e:
        raise DeployError(f"{step} failed on {_describe(e.hosts)}") from None
    _check(results, step)
    return results


def _copy_binary(src: Path, dst: Path) -> None:
    """Copies a binary without its debug information (a tenth of its size, less to send to
    every host); a plain copy where objcopy is missing or the file is not an executable."""
    if shutil.which("objcopy") and src.name != "catalog.toml":
        done = subprocess.run(["objcopy", "--strip-debug", str(src), str(dst)], capture_output=True)
        if done.returncode == 0:
            shutil.copymode(src, dst)
            return
    shutil.copy2(src, dst)


class Deployment:
    """One federation on the hosts of ``roles`` (EnosLib roles named as ``Plan.hosts``)."""

    def __init__(self, plan: Plan, roles, networks, options: Options):
        self.plan = plan
        self.roles = roles
        self.networks = networks
        self.options = options
        self.layout = plan.layout
        self.staging = options.results_dir / "staging"
        self.addresses: dict[str, str] = {}
        self.services_started: list[tuple[list, Service]] = []
        self.netem = None
        self.openfaas_passwords: dict[str, str] = {}

    # -- addresses -----------------------------------------------------------------------------

    def resolve_addresses(self) -> None:
        """Each host's IPv4 address. Facts are gathered only where the link shaping needs the
        hosts' interfaces (gathering them costs seconds per host); otherwise a host's address
        is its SSH address, resolved by name if it is one."""
        if self.options.real_links:
            self.roles = en.sync_info(self.roles, self.networks)
        for host_role in self.plan.hosts():
            host = self._host(host_role.alias)
            # A host variable: one task can send every host the file staged under its alias.
            # Roles may hold distinct objects for one host: set it on each.
            for hosts in self.roles.values():
                for h in hosts:
                    if h.address == host.address:
                        h.set_extra(fogmarket_alias=host_role.alias)
            ips = []
            if self.options.real_links and self._networks():
                found = host.filter_addresses(self._networks())
                ips = [str(a.ip.ip) for a in found if a.ip and a.ip.version == 4]
            if not ips:
                try:
                    ips = [socket.gethostbyname(host.address)]
                except OSError as e:
                    raise DeployError(f"host {host_role.alias}: cannot resolve {host.address}: {e}") from None
            self.addresses[host_role.alias] = ips[0]

    def _networks(self) -> list:
        """Every network the provider gave, as one list (what EnosLib's filters take)."""
        if not self.networks:
            return []
        seen, flat = set(), []
        for nets in self.networks.values():
            for n in nets:
                if id(n) not in seen:
                    seen.add(id(n))
                    flat.append(n)
        return flat

    def _host(self, alias: str):
        hosts = self.roles[alias]
        if not hosts:
            raise DeployError(f"role `{alias}` has no host")
        return hosts[0]

    def marketplace_url(self) -> str:
        return f"http://{self.addresses['marketplace']}:{MARKETPLACE_PORT}"

    # -- install ---------------------------------------------------------------------------------

    def stage(self) -> None:
        """Prepares what goes to the hosts, on the controller: binaries and node configs."""
        if self.staging.exists():
            shutil.rmtree(self.staging)
        for kind, names in BINARIES.items():
            target = self.staging / kind / "bin"
            target.mkdir(parents=True)
            wanted = list(names)
            if kind == "fog":
                wanted += sorted(
                    p.name for p in self.options.bin_dir.glob("fn-*") if p.is_file() and p.stat().st_mode & 0o111
                )
                catalog = self.options.bin_dir / "catalog.toml"
                if catalog.exists():
                    wanted.append(catalog.name)
            for name in wanted:
                src = self.options.bin_dir / name
                if not src.exists():
                    raise DeployError(
                        f"binary `{name}` is missing from {self.options.bin_dir} (build the "
                        "workspace first: cargo build --release --workspace --bins)"
                    )
                _copy_binary(src, target / name)
            # One file per host to send: one transfer instead of one per binary.
            # Fast gzip: a third of the bytes on the wire for half a second of compression.
            with tarfile.open(self.staging / f"{kind}.tar.gz", "w:gz", compresslevel=1) as t:
                t.add(target, arcname="bin")
        hosts_file = self.staging / "hosts.json"
        hosts_file.write_text(
            json.dumps(
                {
                    "marketplace_url": self.marketplace_url(),
                    "nodes": {n: self.addresses[fog_role(n)] for n in self.plan.topology.names()},
                },
                indent=2,
            )
        )
        args = [
            str(self.options.testbed_bin),
            "hosts-config",
            "--topology",
            str(self.plan.topology.path),
            "--hosts",
            str(hosts_file),
            "--out",
            str(self.staging / "nodes"),
            "--port",
            str(FOG_PORT),
            "--state-dir",
            self.layout.state,
        ]
        if self.options.real_links:
            args.append("--no-link-emulation")
        self.configs = self.staging / "nodes"
        if self.plan.backend == "openfaas":
            args += ["--openfaas-gateway-url", f"http://127.0.0.1:{openfaas.GATEWAY_NODE_PORT}"]
        env = {"FOGMARKET_ENROLLMENT_SECRET": self.options.enrollment_secret, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise DeployError(f"testbed hosts-config failed: {done.stderr.strip()}")
        shutil.copy2(self.plan.scenario, self.staging / "iot" / "scenario.toml")
        # Named by host alias, so one task sends each fog host its own file.
        for name in self.plan.topology.names():
            (self.configs / f"{name}.toml").rename(self.configs / f"{fog_role(name)}.toml")

    def install(self) -> None:
        """Directories, binaries, configuration files; PostgreSQL; OpenFaaS when asked."""
        L = self.layout
        dirs = " ".join([L.root, L.bin, L.etc, L.state, L.log, L.results, L.run])
        _run(f"mkdir -p {dirs} && chmod 700 {L.etc}", self.roles.all(), "creating the directories")
        for kind in BINARIES:
            roles = self.roles["fog"] if kind == "fog" else self.roles[kind]
            with _actions(roles, f"copying the {kind} binaries") as a:
                a.copy(src=str(self.staging / f"{kind}.tar.gz"), dest=f"{L.root}/{kind}.tar.gz",
                       task_name=f"binaries of the {kind} hosts")
                a.shell(f"tar -xzf {L.root}/{kind}.tar.gz -C {L.root} && rm -f {L.root}/{kind}.tar.gz",
                        task_name=f"unpacking the {kind} binaries")
                if kind == "iot":
                    a.copy(src=str(self.staging / "iot" / "scenario.toml"),
                           dest=f"{L.etc}/scenario.toml", mode="0644", task_name="the scenario")
                if kind == "fog":
                    a.copy(src=f"{self.configs}/{{{{ fogmarket_alias }}}}.toml",
                           dest=f"{L.etc}/fog-node.toml", mode="0600",
                           task_name="each fog node's configuration")
        if self.plan.database == "postgres":
            self._install_postgres()
        if self.plan.backend == "openfaas":
            self._install_openfaas()
        if self.plan.jaeger:
            self._install_jaeger()

    def _install_jaeger(self) -> None:
        """Jaeger all-in-one on the jaeger host, receiving OTLP over HTTP from every service."""
        L = self.layout
        with _actions(self.roles["jaeger"], "installing Jaeger") as a:
            a.get_url(url=JAEGER_URL, dest=f"{L.root}/jaeger.tar.gz", task_name="fetching Jaeger")
            a.shell(f"tar -xzf {L.root}/jaeger.tar.gz -C {L.bin} --strip-components=1 --wildcards '*/jaeger-all-in-one'",
                    task_name="unpacking Jaeger")
        self._start_service(
            "jaeger",
            Service("jaeger", (f"{L.bin}/jaeger-all-in-one",),
                    env={"COLLECTOR_OTLP_ENABLED": "true", "SPAN_STORAGE_TYPE": "memory"}),
        )
    def _install_postgres(self) -> None:
        """A PostgreSQL cluster of the deployment's own, on the marketplace host's loopback, with
        its socket in the deployment's run directory (never the distribution's default cluster)."""
        L = self.layout
        pw_file = f"{L.root}/pg-password"
        script = f"""
set -euo pipefail
cd {L.root}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
ln -sfn "$bin" {L.root}/pgbin
umask 077
printf '%s' {shlex.quote(self.options.db_password)} > {pw_file}
chown postgres {pw_file}
mkdir -p {L.pg}
chown postgres {L.pg} {L.run}
chmod 700 {L.pg}
if [ ! -f {L.pg}/PG_VERSION ]; then
  runuser -u postgres -- "$bin/initdb" -D {L.pg} -U fogmarket --pwfile={pw_file} \\
    --auth=scram-sha-256 --encoding=UTF8 >/dev/null
fi
rm -f {pw_file}
"""
        _run(f"bash -c {shlex.quote(script)}", self.roles["marketplace"], "installing PostgreSQL")
        postgres = Service(
            "postgres",
            (
                f"{L.root}/pgbin/postgres", "-D", L.pg, "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={POSTGRES_PORT}", "-c", f"unix_socket_directories={L.run}",
            ),
            user="postgres",
        )
        self._start_service("marketplace", postgres)
        wait_db = f"""
for i in $(seq 1 {SERVICE_START_S * 10}); do
  if PGPASSWORD={shlex.quote(self.options.db_password)} {L.root}/pgbin/psql -h 127.0.0.1 -p {POSTGRES_PORT} -U fogmarket -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    PGPASSWORD={shlex.quote(self.options.db_password)} {L.root}/pgbin/psql -h 127.0.0.1 -p {POSTGRES_PORT} -U fogmarket -d postgres -Atc "select 1 from pg_database where datname='fogmarket'" | grep -q 1 \\
      || PGPASSWORD={shlex.quote(self.options.db_password)} {L.root}/pgbin/createdb -h 127.0.0.1 -p {POSTGRES_PORT} -U fogmarket fogmarket
    exit 0
  fi
  sleep 0.1
done
echo "PostgreSQL did not accept connections within {SERVICE_START_S} s" >&2; tail -n 20 {postgres.log_file(L)} >&2; exit 1
"""
        _run(f"bash -c {shlex.quote(wait_db)}", self.roles["marketplace"], "waiting for PostgreSQL")

    def _install_openfaas(self) -> None:
        tasks_by_host = {}
        for name in self.plan.topology.names():
            ip = self.addresses[fog_role(name)]
            tasks_by_host[name] = openfaas.install_tasks(node_ip=ip)
        for name, tasks in tasks_by_host.items():
            with _actions(self.roles[fog_role(name)], f"installing k3s and OpenFaaS on fog node {name}") as a:
                openfaas.add_tasks(a, tasks)
            passwords = openfaas.passwords_by_host(a.results)
            password = next(iter(passwords.values()), None)
            if not password:
                raise DeployError(f"fog node {name}: the OpenFaaS gateway password could not be read")
            self.openfaas_passwords[name] = password

    # -- services --------------------------------------------------------------------------------

    def _start_service(self, role: str, service: Service) -> None:
        self._start_services({role: service})

    def _start_services(self, services: dict[str, Service]) -> None:
        """Starts one service on several hosts at once (``services``: by host alias); only its
        environment may differ from host to host."""
        L = self.layout
        first = next(iter(services.values()))
        if any((s.name, s.command, s.user, s.kind) != (first.name, first.command, first.user, first.kind)
               for s in services.values()):
            raise ValueError(f"service {first.name}: the hosts must run the same command")
        staged = self.staging / "services"
        for alias, service in services.items():
            (staged / alias).mkdir(parents=True, exist_ok=True)
            (staged / alias / f"{service.name}.env").write_text(service.env_text())
        hosts = [h for alias in services for h in self.roles[alias]]
        with _actions(hosts, f"starting {first.name}") as a:
            a.copy(src=f"{staged}/{{{{ fogmarket_alias }}}}/{first.name}.env", dest=first.env_file(L),
                   mode="0600", task_name=f"environment of {first.name}")
            if self.options.manager == "systemd":
                a.copy(content=first.unit(L), dest=f"/etc/systemd/system/{first.unit_name()}",
                       mode="0644", task_name=f"unit of {first.name}")
            a.shell(first.start_command(self.options.manager, L), task_name=f"starting {first.name}")
        self.services_started.append((hosts, first))

    def _wait_http(self, role: str, url: str, what: str, expect: str | None = None) -> None:
        """Polls ``url`` from the host of ``role`` until it answers 200 (and, with ``expect``,
        until the answer passes that Python expression over ``body``)."""
        check = expect or "True"
        probe = f"""
import json, sys, time, urllib.request
deadline = time.monotonic() + {SERVICE_START_S}
last = ""
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen({url!r}, timeout=2) as r:
            body = json.loads(r.read() or b"null")
            if {check}:
                sys.exit(0)
            last = "answered, not yet ready"
    except Exception as e:
        last = str(e)
    time.sleep(0.2)
print({what!r} + " not ready within {SERVICE_START_S} s: " + last, file=sys.stderr)
sys.exit(1)
"""
        _run(f"python3 -c {shlex.quote(probe)}", self.roles[role], f"waiting for {what}")

    def start(self) -> None:
        """The marketplace, then every fog node; returns once every node is enrolled."""
        L = self.layout
        url = self.plan.database_url(self.options.db_password)
        settings = self.plan.topology.marketplace
        env = {
            "FOGMARKET_LISTEN": f"{self.addresses['marketplace']}:{MARKETPLACE_PORT}",
            "DATABASE_URL": url,
            "FOGMARKET_ENROLLMENT_SECRET": self.options.enrollment_secret,
            "FOGMARKET_AUCTION_RULE": str(settings.get("auction_rule", "vickrey")),
            "FOGMARKET_AUCTION_TIMEOUT_MS": str(settings.get("auction_timeout_ms", 2000)),
            "NO_COLOR": "1",
        }
        if "heartbeat_interval_ms" in settings:
            env["FOGMARKET_HEARTBEAT_INTERVAL_MS"] = str(settings["heartbeat_interval_ms"])
        env.update(self._tracing_env("marketplace"))
        self._start_service(
            "marketplace", Service("marketplace", (f"{L.bin}/marketplace",), env=env)
        )
        self._wait_http("marketplace", f"{self.marketplace_url()}/api/health", "the marketplace")
        fog_nodes = {}
        for name in self.plan.topology.names():
            env = {"NO_COLOR": "1", **self._tracing_env(f"fog-node-{name}")}
            if name in self.openfaas_passwords:
                env["FOG_NODE_FAAS__PASSWORD"] = self.openfaas_passwords[name]
            fog_nodes[fog_role(name)] = Service(
                "fog-node", (f"{L.bin}/fog-node", "--config", f"{L.etc}/fog-node.toml"), env=env
            )
        self._start_services(fog_nodes)
        count = len(self.plan.topology.names())
        self._wait_http(
            "marketplace",
            f"{self.marketplace_url()}/api/fog",
            f"the enrolment of all {count} fog nodes",
            expect=f"len(body if isinstance(body, list) else body.get('nodes', [])) >= {count}",
        )

    def _tracing_env(self, service: str) -> dict[str, str]:
        if not self.plan.jaeger:
            return {}
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.addresses['jaeger']}:{JAEGER_OTLP_PORT}",
            "OTEL_SERVICE_NAME": service,
        }

    # -- links -----------------------------------------------------------------------------------

    def shape_links(self) -> str:
        """Shapes the links between fog nodes for real, or says that the nodes emulate them."""
        constraints = self.plan.topology.constraints()
        pairs = len(constraints)
        if not self.options.real_links:
            return (
                f"links: {pairs} pairwise NetemHTB constraints computed from the topology, not "
                "deployed (no netem here); the fog nodes emulate the latencies in process"
            )
        netem = links.netem(constraints, lambda n: self.roles[fog_role(n)], self._networks())
        netem.deploy()
        netem.validate(output_dir=str(self.options.results_dir / "netem"))
        self.netem = netem
        return f"links: {pairs} pairwise NetemHTB constraints deployed (tc htb + netem)"

    # -- the experiment --------------------------------------------------------------------------

    def experiment(self) -> None:
        """A client token, then the IoT scenario on the IoT host, until its report exists."""
        L = self.layout
        token_cmd = (
            f"set -a && . {L.etc}/marketplace.env && set +a && "
            f"{L.bin}/marketplace token create --client iot-emulation --rotate"
        )
        res = _run(f"bash -c {shlex.quote(token_cmd)}", self.roles["marketplace"], "a client token")
        token = res[0].payload.get("stdout", "").strip().split("\n")[-1]
        if not token:
            raise DeployError("the marketplace printed no client token")
        out = f"{L.results}/iot"
        command = [f"{L.bin}/iot-emulation", "run", "--scenario", f"{L.etc}/scenario.toml",
                   "--marketplace", self.marketplace_url(), "--out", out, "--quiet"]
        if self.options.duration:
            command += ["--duration", self.options.duration]
        if self.options.seed is not None:
            command += ["--seed", str(self.options.seed)]
        env = {"FOGMARKET_TOKEN": token, "NO_COLOR": "1", **self._tracing_env("iot-emulation")}
        iot = Service("iot", tuple(command), env=env, kind="oneshot")
        _run(f"rm -rf {out}", self.roles["iot"], "clearing earlier results")
        self._start_service("iot", iot)
        alive = iot.alive_command(self.options.manager, L)
        wait = f"""
for i in $(seq 1 {(IOT_GRACE_S + self._scenario_seconds()) * 2}); do
  [ -f {out}/report.json ] && exit 0
  if ! ( {alive} ); then
    sleep 1; [ -f {out}/report.json ] && exit 0
    echo "the IoT emulator stopped without a report:" >&2; tail -n 30 {iot.log_file(L)} >&2; exit 1
  fi
  sleep 0.5
done
echo "no report within the scenario's time and {IOT_GRACE_S} s" >&2; exit 1
"""
        log.info("IoT scenario running on the iot host")
        _run(f"bash -c {shlex.quote(wait)}", self.roles["iot"], "the IoT scenario")

    def _scenario_seconds(self) -> int:
        import re
        import tomllib

        text = self.options.duration
        if text is None:
            exp = tomllib.loads(self.plan.scenario.read_text()).get("experiment", {})
            text = str(exp.get("duration", "60 s"))
        m = re.match(r"^\s*([0-9.]+)\s*(ms|s|min|m|h)?\s*$", text)
        if not m:
            return 600
        factor = {"ms": 0.001, "s": 1, None: 1, "min": 60, "m": 60, "h": 3600}[m.group(2)]
        return int(float(m.group(1)) * factor) + 1

    # -- results ---------------------------------------------------------------------------------

    def collect(self) -> None:
        """Brings back every host's logs and results into ``results_dir/<host>/``."""
        L = self.layout
        # On the host's own disk: hosts of one machine may share /tmp.
        archive = f"{L.root}/collected.tar.gz"
        pack = f"mkdir -p {L.log} {L.results} && tar -czf {archive} -C {L.root} log results"
        with _actions(self.roles.all(), "collecting the results") as a:
            a.shell(pack, task_name="packing logs and results")
            a.fetch(src=archive, dest=f"{self.options.results_dir}/hosts/{{{{ inventory_hostname }}}}.tar.gz",
                    flat=True, task_name="fetching logs and results")
            a.file(path=archive, state="absent", task_name="removing the archive")
        for tarball in (self.options.results_dir / "hosts").glob("*.tar.gz"):
            target = self.options.results_dir / tarball.name.removesuffix(".tar.gz")
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tarball) as t:
                t.extractall(target, filter="data")
            tarball.unlink()
        (self.options.results_dir / "hosts").rmdir()
        iot = self.options.results_dir / "iot" / "results" / "iot"
        if iot.exists():
            link = self.options.results_dir / "report"
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to(iot.relative_to(self.options.results_dir))

    def summary(self, links: str) -> Summary:
        report_dir = self.options.results_dir / "iot" / "results" / "iot"
        try:
            report = json.loads((report_dir / "report.json").read_text())
        except (OSError, ValueError) as e:
            raise DeployError(f"the IoT report could not be read from {report_dir}: {e}") from e
        placements = 0
        placements_file = report_dir / "placements.json"
        if placements_file.exists():
            placements = len(json.loads(placements_file.read_text()).get("placements", []))
        overall = report.get("overall", {})
        return Summary(
            hosts=len(self.plan.hosts()),
            fog_nodes=len(self.plan.topology.names()),
            placements=placements,
            ok=int(overall.get("ok", 0)),
            sent=int(overall.get("sent", 0)),
            links=links,
            results_dir=self.options.results_dir,
        )

    # -- stop --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stops every service started, in reverse order, and removes the link shaping. Never
        raises: it runs on the way out of a failed step too."""
        for hosts, service in reversed(self.services_started):
            try:
                en.run_command(
                    service.stop_command(self.options.manager, self.layout),
                    roles=hosts,
                    task_name=f"stopping {service.name}",
                    on_error_continue=True,
                )
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("stopping %s: %s", service.name, e)
        self.services_started = []
        if self.netem is not None:
            try:
                self.netem.destroy()
            except Exception as e:  # noqa: BLE001
                log.warning("removing the link shaping: %s", e)
            self.netem = None


def run(plan: Plan, roles, networks, options: Options, label: str) -> Summary:
    """The whole experiment on hosts a provider handed out: the one code path of every
    provider."""
    options.results_dir.mkdir(parents=True, exist_ok=True)
    d = Deployment(plan, roles, networks, options)
    started = time.monotonic()
    try:
        d.resolve_addresses()
        print(f"{label}: hosts: " + ", ".join(f"{k}={v}" for k, v in sorted(d.addresses.items())), flush=True)
        d.stage()
        d.install()
        print(f"{label}: installed in {time.monotonic() - started:.0f} s", flush=True)
        d.start()
        print(f"{label}: marketplace and {len(plan.topology.names())} fog nodes up", flush=True)
        link_note = d.shape_links()
        print(f"{label}: {link_note}", flush=True)
        d.experiment()
        print(f"{label}: scenario done", flush=True)
    finally:
        try:
            d.collect()
        except Exception as e:  # noqa: BLE001 - the run's own error matters more
            log.warning("collecting the results: %s", e)
        d.stop()
    summary = d.summary(link_note)
    print(f"{label}: results in {summary.results_dir}", flush=True)
    return summary
