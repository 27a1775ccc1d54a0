"""The links between fog nodes as EnosLib's ``NetemHTB`` shapes them: one symmetric
constraint per pair of fog nodes, with the delay, rate and loss of the pair's tree path
(``topology.Topology.constraints``)."""

from __future__ import annotations

from typing import Callable, Iterable

import enoslib as en

from .topology import PathConstraint

#: The rate of a path on which no link names one: faster than any NIC of the testbeds.
UNLIMITED_BPS = 10 * 10**9


def netem(
    constraints: Iterable[PathConstraint],
    hosts_of: Callable[[str], list],
    networks: list | None,
) -> en.NetemHTB:
    """The service, not yet deployed. ``hosts_of(node)`` gives the EnosLib hosts of a fog node;
    only interfaces on ``networks`` are shaped."""
    service = en.NetemHTB()
    for c in constraints:
        service.add_constraints(
            src=hosts_of(c.a),
            dest=hosts_of(c.b),
            delay=c.netem_delay(),
            rate=c.netem_rate(default_bps=UNLIMITED_BPS),
            loss=c.netem_loss(),
            networks=networks,
            symmetric=True,
        )
    return service
