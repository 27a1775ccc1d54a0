"""Which host runs what, and where things live on every host.

Every fog node gets a host of its own (role ``fog`` and ``fog-<name>``), plus one host for the
marketplace (role ``marketplace``), one for the IoT emulator (role ``iot``) and, optionally,
one for Jaeger (role ``jaeger``). Paths and ports are the same on every host, whatever the
provider: only the addresses differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .topology import Topology

#: Where everything of the deployment lives on a host.
ROOT = "/opt/fogmarket"
MARKETPLACE_PORT = 8000
FOG_PORT = 8080
POSTGRES_PORT = 5432
JAEGER_OTLP_PORT = 4318

#: The binaries each kind of host needs, from the build's target directory. Fog hosts also get
#: every ``fn-*`` function executable: the embedded gateway runs them.
BINARIES = {
    "marketplace": ["marketplace"],
    "iot": ["iot-emulation"],
    "fog": ["fog-node"],
}


@dataclass(frozen=True)
class Layout:
    """Paths on every host."""

    root: str = ROOT

    @property
    def bin(self) -> str:
        return f"{self.root}/bin"

    @property
    def etc(self) -> str:
        return f"{self.root}/etc"

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def log(self) -> str:
        return f"{self.root}/log"

    @property
    def results(self) -> str:
        return f"{self.root}/results"

    @property
    def run(self) -> str:
        return f"{self.root}/run"

    @property
    def pg(self) -> str:
        return f"{self.root}/pg"


def fog_role(node: str) -> str:
    return f"fog-{node}"


@dataclass(frozen=True)
class HostRole:
    """One host to ask the provider for: its alias and its roles."""

    alias: str
    roles: tuple[str, ...]
    kind: str  # marketplace | iot | fog | jaeger


@dataclass
class Plan:
    """What a deployment runs, before any host exists."""

    topology: Topology
    scenario: Path
    database: str = "postgres"  # postgres | sqlite
    backend: str = "embedded"  # embedded | openfaas
    jaeger: bool = False
    layout: Layout = field(default_factory=Layout)

    def __post_init__(self) -> None:
        if self.database not in ("postgres", "sqlite"):
            raise ValueError(f"--database: `{self.database}` is neither postgres nor sqlite")
        if self.backend not in ("embedded", "openfaas"):
            raise ValueError(f"--backend: `{self.backend}` is neither embedded nor openfaas")

    def hosts(self) -> list[HostRole]:
        hosts = [
            HostRole("marketplace", ("marketplace",), "marketplace"),
            HostRole("iot", ("iot",), "iot"),
        ]
        if self.jaeger:
            hosts.append(HostRole("jaeger", ("jaeger",), "jaeger"))
        hosts += [HostRole(fog_role(n), ("fog", fog_role(n)), "fog") for n in self.topology.names()]
        return hosts

    def database_url(self, password: str) -> str:
        if self.database == "sqlite":
            return f"sqlite://{self.layout.state}/marketplace.db?mode=rwc"
        return f"postgres://fogmarket:{password}@127.0.0.1:{POSTGRES_PORT}/fogmarket"
