import enoslib as en
import pytest
from enoslib.infra.enos_g5k.schema import SCHEMA_USER
from enoslib.infra.enos_vmong5k.schema import SCHEMA as VM_SCHEMA

from conftest import TOPOLOGIES
from fogmarket_enos.plan import Plan, fog_role
from fogmarket_enos.providers import G5kSettings, g5k_description
from fogmarket_enos.topology import Topology


def plan(**kw) -> Plan:
    return Plan(Topology.load(TOPOLOGIES / "local.toml"), TOPOLOGIES / "x.toml", **kw)


def test_every_fog_node_gets_a_host_of_its_own_beside_the_marketplace_and_the_iot_host():
    hosts = plan().hosts()
    aliases = [h.alias for h in hosts]
    assert aliases[:2] == ["marketplace", "iot"]
    assert len(hosts) == 2 + 7
    edge = next(h for h in hosts if h.alias == fog_role("edge-farm"))
    assert edge.roles == ("fog", "fog-edge-farm") and edge.kind == "fog"
    assert len(set(aliases)) == len(aliases)
    assert "jaeger" in [h.alias for h in plan(jaeger=True).hosts()]


def test_the_database_is_postgresql_on_the_marketplace_host_unless_sqlite_is_asked():
    assert plan().database_url("pw") == "postgres://fogmarket:pw@127.0.0.1:5432/fogmarket"
    assert plan(database="sqlite").database_url("pw").startswith("sqlite:///opt/fogmarket/state/")
    with pytest.raises(ValueError, match="--database"):
        plan(database="mysql")
    with pytest.raises(ValueError, match="--backend"):
        plan(backend="lambda")


def test_the_grid5000_reservation_asks_one_deployed_machine_per_host():
    settings = G5kSettings(cluster="gros", walltime="03:00:00", reservation="2026-12-24 19:00:00")
    d = g5k_description(plan(), settings, "nancy")
    en.G5kConf.validate(d, SCHEMA_USER)
    machines = d["resources"]["machines"]
    assert len(machines) == 9
    assert all(m["cluster"] == "gros" and m["nodes"] == 1 for m in machines)
    assert {tuple(m["roles"]) for m in machines} == {h.roles for h in plan().hosts()}
    assert d["reservation"] == "2026-12-24 19:00:00" and d["walltime"] == "03:00:00"
    assert d["job_type"] == ["deploy"] and d["env_name"] == "debian12-min"
    assert d["resources"]["networks"][0]["site"] == "nancy"


def test_vms_on_grid5000_are_one_vm_per_host_with_the_asked_flavour():
    settings = G5kSettings(vms=True, vm_cores=4, vm_memory_mb=8192)
    d = g5k_description(plan(), settings, "rennes")
    en.VMonG5kConf.validate(d, VM_SCHEMA)
    machines = d["resources"]["machines"]
    assert len(machines) == 9
    assert all(m["number"] == 1 and m["flavour_desc"] == {"core": 4, "mem": 8192} for m in machines)
    assert "reservation" not in d
