import json
import subprocess

import pytest

from conftest import TOPOLOGIES
from fogmarket_enos.topology import PathConstraint, Topology, TopologyError

TREE = """
[[node]]
name = "root"
owner = "o"
cpu = "1 cpu"
memory = "1 GiB"

[[node]]
name = "mid"
parent = "root"
latency = "15 ms"
rate = "1 Gbit"
loss = 1.0
owner = "o"
cpu = "1 cpu"
memory = "1 GiB"

[[node]]
name = "leaf"
parent = "mid"
latency = "4500 us"
rate = "100 Mbit"
loss = 10.0
owner = "o"
cpu = "1 cpu"
memory = "1 GiB"

[[node]]
name = "other"
parent = "root"
latency = "2 ms"
owner = "o"
cpu = "1 cpu"
memory = "1 GiB"
"""


@pytest.mark.parametrize("name", ["local.toml", "giraff-small.toml"])
def test_every_pair_matches_the_testbed_listing_of_path_links(name, testbed_bin):
    path = TOPOLOGIES / name
    listing = subprocess.run(
        [str(testbed_bin), "topology", "links", "--topology", str(path), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    expected = {(row["a"], row["b"]): row for row in json.loads(listing)}
    ours = Topology.load(path).constraints()
    assert len(ours) == len(expected) > 0
    for c in ours:
        row = expected[(c.a, c.b)]
        assert c.delay_us == pytest.approx(row["delay_us"], abs=1), (c, row)
        assert c.rate_bps == row["rate_bps"], (c, row)
        assert c.loss_percent == pytest.approx(row["loss_percent"], abs=1e-5), (c, row)


def test_a_path_sums_latencies_takes_the_smallest_rate_and_compounds_losses():
    t = Topology.parse(TREE)
    c = t.constraint("leaf", "other")
    assert (c.a, c.b) == ("leaf", "other")
    assert c.delay_us == pytest.approx(21_500)
    assert c.rate_bps == 100_000_000
    assert c.loss_percent == pytest.approx(100 * (1 - 0.99 * 0.90))
    up = t.constraint("mid", "root")
    assert (up.delay_us, up.rate_bps, up.loss_percent) == (15_000, 10**9, pytest.approx(1.0))
    assert t.constraint("other", "root").rate_bps is None
    assert len(t.constraints()) == 6


def test_constraints_are_written_as_netem_htb_takes_them():
    c = PathConstraint("a", "b", delay_us=19_500, rate_bps=100_000_000, loss_percent=10.9)
    assert c.netem_delay() == "19.5ms"
    assert c.netem_rate(default_bps=1) == "100mbit"
    assert c.netem_loss() == "10.9%"
    assert PathConstraint("a", "b", 12_000, None, 0.0).netem_rate(default_bps=10**10) == "10gbit"
    assert PathConstraint("a", "b", 12_000, 1_500_000, 0.0).netem_rate(default_bps=1) == "1500kbit"
    assert PathConstraint("a", "b", 12_000, None, 0.0).netem_delay() == "12ms"
    assert PathConstraint("a", "b", 12_000, None, 0.0).netem_loss() is None


@pytest.mark.parametrize(
    "change, words",
    [
        (('rate = "100 Mbit"', 'rate = "fast"'), ["leaf", "rate", "fast"]),
        (("loss = 10.0", "loss = 120.0"), ["leaf", "loss", "120"]),
        (('latency = "4500 us"', 'latency = "soon"'), ["leaf", "latency"]),
        (('parent = "mid"', 'parent = "nowhere"'), ["leaf", "nowhere"]),
    ],
)
def test_a_bad_link_is_refused_naming_the_node_and_the_field(change, words):
    with pytest.raises(TopologyError) as e:
        Topology.parse(TREE.replace(*change))
    for w in words:
        assert w in str(e.value)
