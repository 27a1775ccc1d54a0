"""Where the hosts come from. The only part of a deployment that differs between Grid'5000 and
this machine: each provider hands out EnosLib roles and networks for the plan's hosts, and says
how services run there and whether links can be shaped.

- ``G5kProvider``: physical machines (``en.G5k``, deployed with a Debian 12 image so the
  binaries built here run there) or VMs packed on them (``en.VMonG5k``).
- ``LocalProvider``: network namespaces of this machine (``netns.LocalHosts``) handed to
  ``en.Static``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import enoslib as en

from .netns import LocalHosts
from .plan import Plan


@dataclass
class Provided:
    roles: object
    networks: object
    #: ``systemd`` or ``process``.
    manager: str
    #: Whether the links between hosts can be shaped with tc (netem + htb).
    real_links: bool


@dataclass
class G5kSettings:
    job_name: str = "fogmarket"
    cluster: str = "paravance"
    walltime: str = "02:00:00"
    reservation: str | None = None
    #: Pack fog nodes as VMs on fewer machines (GIRAFF's way for hundreds of nodes).
    vms: bool = False
    #: VM size when ``vms``.
    vm_cores: int = 2
    vm_memory_mb: int = 4096
    #: The operating system deployed on physical machines.
    environment: str = "debian12-min"


def g5k_conf(plan: Plan, settings: G5kSettings):
    """The EnosLib configuration: one machine (or VM) per host of the plan, with its roles."""
    if settings.vms:
        conf = en.VMonG5kConf.from_settings(
            job_name=settings.job_name,
            walltime=settings.walltime,
            reservation=settings.reservation,
        )
        for host in plan.hosts():
            conf.add_machine(
                roles=list(host.roles),
                cluster=settings.cluster,
                number=1,
                flavour_desc={"core": settings.vm_cores, "mem": settings.vm_memory_mb},
            )
    else:
        conf = en.G5kConf.from_settings(
            job_name=settings.job_name,
            walltime=settings.walltime,
            reservation=settings.reservation,
            job_type=["deploy"],
            env_name=settings.environment,
        )
        for host in plan.hosts():
            conf.add_machine(roles=list(host.roles), cluster=settings.cluster, nodes=1)
    return conf.finalize()


class G5kProvider:
    def __init__(self, plan: Plan, settings: G5kSettings):
        self.plan = plan
        self.settings = settings
        conf = g5k_conf(plan, settings)
        self.provider = en.VMonG5k(conf) if settings.vms else en.G5k(conf)

    def __enter__(self) -> Provided:
        roles, networks = self.provider.init()
        en.wait_for(roles)
        return Provided(roles, networks, manager="systemd", real_links=True)

    def __exit__(self, *exc) -> None:
        # The job is kept: `just g5k-destroy` releases it (results may still be read on it).
        return None

    def destroy(self) -> None:
        self.provider.destroy()


class LocalProvider:
    """The plan's hosts as network namespaces; everything goes when the block ends."""

    def __init__(self, plan: Plan, run_dir: Path):
        self.plan = plan
        self.hosts = LocalHosts([h.alias for h in plan.hosts()], run_dir)

    def __enter__(self) -> Provided:
        self.hosts.__enter__()
        try:
            roles_of = {h.alias: list(h.roles) for h in self.plan.hosts()}
            conf = en.StaticConf.from_dictionary(self.hosts.static_conf(roles_of))
            roles, networks = en.Static(conf).init()
        except BaseException:
            self.hosts.__exit__(None, None, None)
            raise
        return Provided(roles, networks, manager="process", real_links=False)

    def __exit__(self, *exc) -> None:
        self.hosts.__exit__(*exc)
