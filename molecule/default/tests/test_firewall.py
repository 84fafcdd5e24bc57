"""The firewall: from every host of the lab, each flow of the architecture
reaches its port and every other inbound connection is dropped. Real
connections from each host to every other host's node address (the lab's DNS
name), not the configured rules."""

import json

import pytest
from conftest import DEFAULT_GROUPS, group_members

from tests.systemd_units import exposure

# The architecture's flows: (group that accepts, port, groups admitted; None
# for anyone). The Locust master is the first load generator.
FLOWS = [
    ("proxy", 80, None),
    ("app", 8000, ("proxy",)),
    ("db", 5432, ("app", "worker")),
    ("upstream", 8081, ("app", "worker")),
    ("broker", 6379, ("app", "worker")),
    ("locust-master", 5557, ("loadgen",)),
    ("locust-master", 8443, None),
]
# Ports no other host may reach on any host: the Locust master's own web UI
# (nginx publishes it on 8443), nginx's status page, SSH (the lab has no sshd,
# so a reachable port would answer "refused").
CLOSED = [8089, 8080, 22]

# Connects to each (host, port) at once; prints {"host:port": outcome}: open,
# refused (the host's TCP stack answered: the firewall let it through) or
# timeout (dropped).
PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def connect(target):
    host, port = target
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return "timeout" if isinstance(error, TimeoutError) else "error: %s" % error
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    outcomes = list(pool.map(connect, targets))
print(json.dumps({"%s:%d" % tuple(t): o for t, o in zip(targets, outcomes)}))
"""


def members(inventory, name):
    if name == "locust-master":
        return sorted(inventory["loadgen"]["hosts"])[:1]
    return group_members(inventory, name)


def groups_of(inventory, host):
    named = {name for name, g in inventory.items() if host in g.get("hosts", [])}
    return named | {name for name in DEFAULT_GROUPS if host in group_members(inventory, name)}


def expected(inventory):
    """{(source, destination, port): True if the design admits it}; a host's
    own address is left out (the kernel routes it through loopback)."""
    hosts = sorted(inventory["_meta"]["hostvars"])
    table = {}
    for name, port, admitted in FLOWS:
        for destination in members(inventory, name):
            for source in hosts:
                if source == destination:
                    continue
                allowed = admitted is None or bool(groups_of(inventory, source) & set(admitted))
                key = (source, destination, port)
                table[key] = table.get(key, False) or allowed
    for port in CLOSED:
        for destination in hosts:
            for source in hosts:
                if source != destination:
                    table.setdefault((source, destination, port), False)
    return table


@pytest.fixture(scope="module")
def outcomes(inventory, hosts):
    """{(source, destination, port): outcome}, probed from every host."""
    table = expected(inventory)
    found = {}
    for source in sorted({s for s, _, _ in table}):
        targets = [[d, p] for s, d, p in table if s == source]
        out = json.loads(hosts[source].check_output("python3 -c %s %s", PROBE, json.dumps(targets)))
        for (destination, port), outcome in zip(targets, out.values(), strict=True):
            found[(source, destination, port)] = outcome
    return found


def failing(outcomes, keys, wanted):
    """{"source -> destination:port": outcome} of the keys whose outcome is not wanted."""
    return {
        f"{s} -> {d}:{p}": outcomes[(s, d, p)]
        for s, d, p in keys
        if outcomes[(s, d, p)] not in wanted
    }


def test_every_flow_of_the_design_gets_through(inventory, outcomes):
    allowed = [k for k, ok in expected(inventory).items() if ok]
    assert allowed, "the topology has no flow to test"
    assert not failing(outcomes, allowed, ("open", "refused"))


def test_everything_else_is_dropped(inventory, outcomes):
    denied = [k for k, ok in expected(inventory).items() if not ok]
    first = {
        name: members(inventory, name)[0] for name in ("app", "db", "broker", "proxy", "loadgen")
    }
    # nginx's limits bypassed, the proxy at the database, a host that is no
    # load generator feeding the master, a load generator at the broker
    assert {
        (first["loadgen"], first["app"], 8000),
        (first["proxy"], first["db"], 5432),
        (first["app"], first["loadgen"], 5557),
        (first["loadgen"], first["broker"], 6379),
    } <= set(denied)
    assert not failing(outcomes, denied, ("timeout",))


def test_the_services_answer_where_they_are_admitted(inventory, outcomes):
    # The listening services themselves, not only the firewall: open, not
    # refused (the Locust master listens only during a run: 5557 left out).
    allowed = [k for k, ok in expected(inventory).items() if ok and k[2] != 5557]
    assert not failing(outcomes, allowed, ("open",))


def test_the_firewall_loads_at_boot_and_is_sandboxed(hosts):
    for name, host in sorted(hosts.items()):
        unit = host.service("flask-deploy-lab-firewall")
        assert unit.is_enabled, name
        assert unit.is_running, name
        assert "flask_deploy_lab" in host.check_output("nft list tables"), name
        score = exposure(host, "flask-deploy-lab-firewall.service")
        print(f"{name}: flask-deploy-lab-firewall.service exposure {score}")
        assert score <= 2.5, name
