from enoslib.objects import DefaultNetwork, Host, IPAddress, NetDevice

from conftest import TOPOLOGIES
from fogmarket_enos import links
from fogmarket_enos.topology import Topology


def hosts_on(names, network):
    hosts = {}
    for i, name in enumerate(names):
        h = Host(f"10.0.{i // 250}.{i % 250 + 2}", alias=name)
        h.net_devices = {NetDevice("eth0", {IPAddress(f"{h.address}/16", network)})}
        hosts[name] = h
    return hosts


def test_netem_htb_gets_one_constraint_each_way_per_pair_with_the_path_values():
    topology = Topology.load(TOPOLOGIES / "giraff-small.toml")
    network = DefaultNetwork("10.0.0.0/16")
    hosts = hosts_on(topology.names(), network)
    constraints = topology.constraints()
    service = links.netem(constraints, lambda n: [hosts[n]], [network])
    by_pair = {}
    for host, source in service.sources.items():
        for c in source.constraints:
            by_pair[(host.address, c.target)] = c
    n = len(topology.names())
    assert len(by_pair) == n * (n - 1)
    for pc in constraints:
        for src, dst in ((pc.a, pc.b), (pc.b, pc.a)):
            c = by_pair[(hosts[src].address, hosts[dst].address)]
            assert c.device == "eth0"
            assert c.delay == pc.netem_delay()
            assert c.rate == pc.netem_rate(default_bps=links.UNLIMITED_BPS)
            assert c.loss == pc.netem_loss()


def test_interfaces_off_the_deployment_network_are_not_shaped():
    topology = Topology.load(TOPOLOGIES / "local.toml")
    network = DefaultNetwork("10.0.0.0/16")
    elsewhere = DefaultNetwork("192.168.0.0/24")
    hosts = hosts_on(topology.names(), network)
    service = links.netem(topology.constraints(), lambda n: [hosts[n]], [elsewhere])
    assert all(not s.constraints for s in service.sources.values())
