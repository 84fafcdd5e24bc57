"""The one topology validator (the lab, the Vagrantfile and the tests use it)."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from flask_deploy_lab import topology
from flask_deploy_lab.topology import TopologyError
from tests.conftest import ROOT


def write(tmp_path, text):
    path = tmp_path / "hosts.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_default_topology_in_file_order():
    machines = topology.plan()
    assert [m.name for m in machines] == ["db1", "app1", "proxy1", "loadgen1", "loadgen2"]
    assert [m.address for m in machines][:2] == ["192.168.56.10", "192.168.56.11"]
    assert machines[0].groups == ["db", "upstream", "broker"]
    assert machines[1].groups == ["app", "worker"]


def test_the_lab_inventory_is_the_same_machines():
    # the lab's own group (and its group_vars) do not change the machines
    assert topology.plan(ROOT / "inventory" / "lab") == topology.plan()


def test_group_vars_fractions_and_ranges(tmp_path):
    path = write(
        tmp_path,
        """\
        all:
          vars: {node_memory_mb: 256}
          children:
            loadgen:
              hosts:
                lg[1:3]: {node_cpus: 0.5}
        """,
    )
    machines = topology.plan(path)
    assert [m.name for m in machines] == ["lg1", "lg2", "lg3"]
    assert {(m.node_cpus, m.cpus, m.cpu_cap, m.memory_mb) for m in machines} == {(0.5, 1, 50, 256)}


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("ghost: {node_memory_mb: 256}", "node_cpus=missing"),
        ("ghost: {node_cpus: 0, node_memory_mb: 256}", "node_cpus=0"),
        ("ghost: {node_cpus: 1, node_memory_mb: 64}", "node_memory_mb=64"),
    ],
)
def test_a_bad_host_is_named_with_what_it_has(tmp_path, host, said):
    path = write(
        tmp_path,
        f"""\
        all:
          children:
            app:
              hosts:
                ok1: {{node_cpus: 1, node_memory_mb: 256}}
                {host}
        """,
    )
    with pytest.raises(TopologyError) as error:
        topology.plan(path)
    assert "topology host 'ghost' needs node_cpus (> 0)" in str(error.value)
    assert said in str(error.value) and "'ok1'" not in str(error.value)


def test_an_unknown_group_is_refused(tmp_path):
    path = write(
        tmp_path,
        "all: {children: {cache: {hosts: {r1: {node_cpus: 1, node_memory_mb: 256}}}}}\n",
    )
    with pytest.raises(TopologyError, match="groups=cache"):
        topology.plan(path)


def test_the_command_prints_json_or_one_clear_error(tmp_path, capsys):
    assert topology.main([]) == 0
    assert len(json.loads(capsys.readouterr().out)["machines"]) == 5
    assert topology.main([str(tmp_path / "nope.yml")]) == 2
    assert "cannot read the topology" in capsys.readouterr().err


def test_lab_containers_take_the_vagrant_host_numbers_in_the_lab_subnet():
    machines = topology.plan()
    found = topology.lab_addresses(machines, "10.89.3.0/24")
    assert found == {m.name: "10.89.3." + m.address.rsplit(".", 1)[1] for m in machines}
    assert found["db1"] == "10.89.3.10"
    # the two-app topology adds app2 last: every other host keeps its address
    two = topology.lab_addresses(
        topology.plan(ROOT / "inventory" / "topology-two-app.yml"), "10.89.3.0/24"
    )
    assert {name: two[name] for name in found} == found
    assert two["app2"] not in found.values()


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("", "the lab network has no IPv4 subnet"),
        ("fd00::/64", "is not an IPv4 network"),
        ("10.0.0.0/29", "has no host number 10 for 'db1' (it holds .1-.6)"),
    ],
)
def test_a_lab_subnet_without_room_is_refused(subnet, message):
    with pytest.raises(TopologyError, match=re.escape(message)):
        topology.lab_addresses(topology.plan(), subnet)


def test_the_validator_prints_lab_addresses_with_a_subnet(capsys):
    assert topology.main(["--subnet", "10.89.0.0/24"]) == 0
    machines = json.loads(capsys.readouterr().out)["machines"]
    assert [m["lab_address"] for m in machines][:2] == ["10.89.0.10", "10.89.0.11"]
    assert topology.main(["--subnet", "10.0.0.0/29"]) == 2
    assert "use a /24 or larger" in capsys.readouterr().err
