"""Topology files as the deployment reads them, and the link constraints they imply.

The format is that of ``testbed/topologies/*.toml`` (docs/ARCHITECTURE.md, "Topology files"):
a tree of ``[[node]]`` tables, each non-root node naming its ``parent``, the one-way
``latency`` of the link to it, and optionally its ``rate`` and ``loss`` (percent).

Between every pair of fog nodes, traffic follows the tree path, as GIRAFF's testbed does: the
pair gets the summed one-way latency of the path, the minimum rate on it and the compounded
loss ``1 - prod(1 - l_i)``. On Grid'5000 these become EnosLib ``NetemHTB`` constraints.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

_LATENCY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s)\s*$")
_LATENCY_US = {"ns": 0.001, "us": 1.0, "µs": 1.0, "ms": 1000.0, "s": 1_000_000.0}
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(bit|bps|b)(?:/s)?\s*$")
_RATE_FACTOR = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the node and the field."""


def parse_latency_us(text: str, *, where: str) -> float:
    """``"12 ms"``, ``"4500 us"``, ``"1.5 ms"`` -> microseconds."""
    m = _LATENCY.match(str(text))
    if not m:
        raise TopologyError(f"{where}: `{text}` is not a latency (e.g. \"12 ms\", \"450 us\")")
    return float(m.group(1)) * _LATENCY_US[m.group(2)]


def parse_rate_bps(text: str, *, where: str) -> int:
    """``"1 Gbit"``, ``"500 Mbit"``, ``"10mbit"`` -> bits per second."""
    m = _RATE.match(str(text))
    if not m:
        raise TopologyError(f"{where}: `{text}` is not a rate (e.g. \"1 Gbit\", \"100 Mbit\")")
    value = float(m.group(1)) * _RATE_FACTOR[m.group(2).lower()]
    if value <= 0:
        raise TopologyError(f"{where}: the rate must be above zero, not `{text}`")
    return int(value)


@dataclass(frozen=True)
class Node:
    name: str
    parent: str | None
    latency_us: float
    rate_bps: int | None
    loss_percent: float
    tags: tuple[str, ...]


@dataclass(frozen=True)
class PathConstraint:
    """What traffic between two fog nodes meets on its tree path (``a`` < ``b`` by name)."""

    a: str
    b: str
    delay_us: float
    rate_bps: int | None
    loss_percent: float

    def netem_delay(self) -> str:
        """The delay as EnosLib's NetemHTB takes it: milliseconds (``"19.5ms"``)."""
        return f"{self.delay_us / 1000:.3f}".rstrip("0").rstrip(".") + "ms"

    def netem_rate(self, default_bps: int) -> str:
        """The rate as NetemHTB takes it, in the largest of gbit, mbit, kbit that divides it
        (``"100mbit"``); ``default_bps`` where the path is unlimited."""
        bps = self.rate_bps if self.rate_bps is not None else default_bps
        for unit, factor in (("gbit", 10**9), ("mbit", 10**6)):
            if bps % factor == 0:
                return f"{bps // factor}{unit}"
        return f"{max(1, bps // 1000)}kbit"

    def netem_loss(self) -> str | None:
        """The loss with an explicit ``%`` (tc would read a bare ``0.05`` as 0.05 %), or None."""
        if self.loss_percent <= 0:
            return None
        return f"{self.loss_percent:.6g}%"


class Topology:
    """A fog tree: nodes by name, each with its link to its parent."""

    def __init__(self, nodes: list[Node], marketplace: dict, path: Path | None = None):
        self.path = path
        self.nodes = nodes
        self.marketplace = marketplace
        self._by_name = {n.name: n for n in nodes}

    @staticmethod
    def load(path: str | Path) -> "Topology":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise TopologyError(f"cannot read the topology file {path}: {e}") from e
        topology = Topology.parse(text, source=str(path))
        topology.path = path
        return topology

    @staticmethod
    def parse(text: str, *, source: str = "topology") -> "Topology":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise TopologyError(f"{source}: not TOML: {e}") from e
        tables = raw.get("node")
        if not isinstance(tables, list) or not tables:
            raise TopologyError(f"{source}: no [[node]] table")
        nodes: list[Node] = []
        seen: set[str] = set()
        for i, t in enumerate(tables):
            name = t.get("name")
            if not isinstance(name, str) or not name:
                raise TopologyError(f"{source}: node #{i + 1}: `name` is missing")
            if name in seen:
                raise TopologyError(f"{source}: node `{name}` appears twice")
            seen.add(name)
            where = f"{source}: node `{name}`"
            parent = t.get("parent")
            latency_us = 0.0
            if parent is not None:
                if "latency" not in t:
                    raise TopologyError(f"{where}: `latency` to its parent is missing")
                latency_us = parse_latency_us(t["latency"], where=f"{where}, field `latency`")
            rate = t.get("rate")
            rate_bps = None if rate is None else parse_rate_bps(rate, where=f"{where}, field `rate`")
            loss = t.get("loss", 0.0)
            if not isinstance(loss, (int, float)) or not 0 <= loss < 100:
                raise TopologyError(f"{where}, field `loss`: a percentage in [0, 100), not `{loss}`")
            nodes.append(
                Node(name, parent, latency_us, rate_bps, float(loss), tuple(t.get("tags", [])))
            )
        names = {n.name for n in nodes}
        for n in nodes:
            if n.parent is not None and n.parent not in names:
                raise TopologyError(f"{source}: node `{n.name}`: parent `{n.parent}` does not exist")
        roots = [n for n in nodes if n.parent is None]
        if len(roots) != 1:
            raise TopologyError(f"{source}: exactly one node must have no parent, not {len(roots)}")
        topo = Topology(nodes, raw.get("marketplace", {}))
        for n in nodes:  # every node reaches the root: no cycle
            topo._ancestors(n.name)
        return topo

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def _ancestors(self, name: str) -> list[str]:
        """``name`` and every node above it, up to the root."""
        chain = [name]
        while (parent := self._by_name[chain[-1]].parent) is not None:
            if parent in chain:
                raise TopologyError(f"node `{name}`: its parents form a cycle through `{parent}`")
            chain.append(parent)
        return chain

    def path_links(self, a: str, b: str) -> list[Node]:
        """The nodes whose link to their parent lies on the tree path between ``a`` and ``b``."""
        up_a, up_b = self._ancestors(a), self._ancestors(b)
        common = next(x for x in up_a if x in set(up_b))
        links = up_a[: up_a.index(common)] + up_b[: up_b.index(common)]
        return [self._by_name[x] for x in links]

    def constraint(self, a: str, b: str) -> PathConstraint:
        a, b = sorted((a, b))
        links = self.path_links(a, b)
        delivered = 1.0
        for n in links:
            delivered *= 1.0 - n.loss_percent / 100.0
        rates = [n.rate_bps for n in links if n.rate_bps is not None]
        return PathConstraint(
            a=a,
            b=b,
            delay_us=sum(n.latency_us for n in links),
            rate_bps=min(rates) if rates else None,
            loss_percent=(1.0 - delivered) * 100.0,
        )

    def constraints(self) -> list[PathConstraint]:
        """Every unordered pair of fog nodes, ``a`` < ``b``, in name order."""
        names = sorted(self.names())
        return [self.constraint(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
