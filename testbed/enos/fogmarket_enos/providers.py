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
    #: The cluster's site; None asks the Grid'5000 API.
    site: str | None = None
    walltime: str = "02:00:00"
    reservation: str | None = None
    #: Pack fog nodes as VMs on fewer machines (GIRAFF's way for hundreds of nodes).
    vms: bool = False
    #: VM size when ``vms``.
    vm_cores: int = 2
    vm_memory_mb: int = 4096
    #: The operating system deployed on physical machines.
    environment: str = "debian12-min"


def g5k_description(plan: Plan, settings: G5kSettings, site: str) -> dict:
    """The EnosLib configuration as a dictionary (``en.G5kConf.from_dictionary`` or
    ``en.VMonG5kConf.from_dictionary``): one machine (or VM) per host of the plan, with its
    roles. Building the configuration object asks the Grid'5000 API about the cluster; this
    dictionary is what it is built from."""
    common: dict = {"job_name": settings.job_name, "walltime": settings.walltime}
    if settings.reservation:
        common["reservation"] = settings.reservation
    if settings.vms:
        machines = [
            {
                "roles": list(host.roles),
                "cluster": settings.cluster,
                "number": 1,
                "flavour_desc": {"core": settings.vm_cores, "mem": settings.vm_memory_mb},
            }
            for host in plan.hosts()
        ]
        return {**common, "resources": {"machines": machines, "networks": ["fogmarket"]}}
    machines = [
        {"roles": list(host.roles), "cluster": settings.cluster, "nodes": 1, "primary_network": "fogmarket"}
        for host in plan.hosts()
    ]
    network = {"id": "fogmarket", "type": "prod", "roles": ["fogmarket"], "site": site}
    return {
        **common,
        "job_type": ["deploy"],
        "env_name": settings.environment,
        "resources": {"machines": machines, "networks": [network]},
    }


class G5kProvider:
    def __init__(self, plan: Plan, settings: G5kSettings):
        self.plan = plan
        self.settings = settings
        site = settings.site
        if site is None:
            from enoslib.infra.enos_g5k.g5k_api_utils import get_cluster_site

            site = get_cluster_site(settings.cluster)
        description = g5k_description(plan, settings, site)
        if settings.vms:
            self.provider = en.VMonG5k(en.VMonG5kConf.from_dictionary(description))
        else:
            self.provider = en.G5k(en.G5kConf.from_dictionary(description))

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
