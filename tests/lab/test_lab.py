"""Smoke test of the local lab: a second lab beside any running one, made
from the real topology, checked, and removed without a trace."""

import json
import textwrap

import pytest

from tests.conftest import ansible, playbook, podman, topology

PREFIX = "fdl-test-"
NETWORK = "fdl-test"
NAMES = ["-e", f"lab_name_prefix={PREFIX}", "-e", f"lab_network={NETWORK}"]
# No published UI port: it would clash with a lab the user keeps running.
LAB_VARS = [f"lab_name_prefix={PREFIX}", f"lab_network={NETWORK}", "lab_locust_ui_port="]
LAB = ["ansible-playbook", "playbooks/lab.yml", *NAMES, "-e", "lab_locust_ui_port="]


def lab_playbook(*extra, check=True):
    return playbook("lab.yml", *LAB_VARS, *extra, check=check)


def lab_containers():
    out = podman(
        "ps", "--all", "--filter", f"label=flask-deploy-lab={NETWORK}", "--format", "{{.Names}}"
    ).stdout
    return sorted(out.split())


@pytest.fixture(scope="module")
def lab():
    ansible(*LAB)
    yield topology()
    ansible(*LAB, "-e", "lab_state=absent", check=False)


def test_lab_up_twice_changes_nothing(lab):
    again = lab_playbook()
    assert again.stats["localhost"].changed == 0


def test_one_container_per_topology_host(lab):
    assert lab_containers() == sorted(PREFIX + h for h in lab)


def test_every_host_answers_ping(lab):
    out = ansible("ansible", "all", "-m", "ansible.builtin.ping", *NAMES).stdout
    for host in lab:
        assert f"{host} | SUCCESS" in out


def test_systemd_is_running_everywhere(lab):
    out = ansible(
        "ansible",
        "all",
        "-m",
        "ansible.builtin.command",
        "-a",
        "systemctl is-system-running",
        *NAMES,
        check=False,
    ).stdout
    for host in lab:
        assert f"{host} | CHANGED | rc=0 >>\nrunning" in out, out


def test_node_limits_are_the_topology(lab):
    for host, spec in lab.items():
        inspect = json.loads(podman("inspect", PREFIX + host).stdout)[0]["HostConfig"]
        assert inspect["NanoCpus"] == int(float(spec["vars"]["node_cpus"]) * 1e9), host
        assert inspect["Memory"] == int(spec["vars"]["node_memory_mb"]) * 1024 * 1024, host


def test_hosts_reach_each_other_by_name(lab):
    app = sorted(h for h in lab if "app" in lab[h]["groups"])[0]
    db = sorted(h for h in lab if "db" in lab[h]["groups"])[0]
    out = podman("exec", PREFIX + app, "getent", "hosts", db).stdout
    assert out.split()[0].count(".") == 3


def network_identity(container):
    """(IPv4 address, MAC) of a container on the lab network, as podman holds them."""
    networks = json.loads(podman("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    return networks[NETWORK]["IPAddress"], networks[NETWORK]["MacAddress"]


# A TCP connection to a port nobody listens on: the host's kernel refuses it at
# once when the packets reach it; unanswered (a stale MAC), it times out.
REACHED = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(1)\n"
    "try:\n    s.connect((sys.argv[1], 9))\n"
    "except ConnectionRefusedError:\n    sys.exit(0)\n"
    "except OSError as e:\n    sys.exit(f'not reached: {e}')\n"
    "sys.exit('port 9 answered')\n"
)


def test_a_host_started_again_keeps_its_address_and_mac_and_is_reached_at_once(lab):
    """As a VM's NIC or a real host's: the neighbours' ARP caches stay true, so a
    peer reaches it with no wait for an entry to expire (podman otherwise draws
    a new MAC at each start)."""
    app = sorted(h for h in lab if "app" in lab[h]["groups"])[0]
    proxy = sorted(h for h in lab if "proxy" in lab[h]["groups"])[0]
    before = network_identity(PREFIX + app)
    address = before[0]
    # the proxy learns the app host's MAC before the restart
    podman("exec", PREFIX + proxy, "python3", "-c", REACHED, address)
    podman("kill", PREFIX + app)
    podman("start", PREFIX + app)
    assert network_identity(PREFIX + app) == before
    neighbour = podman("exec", PREFIX + proxy, "ip", "neigh", "show", address).stdout
    assert before[1] in neighbour, neighbour
    reached = podman("exec", PREFIX + proxy, "python3", "-c", REACHED, address, check=False)
    assert reached.returncode == 0, reached.stderr


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("ghost: {node_memory_mb: 512}", "topology host 'ghost' needs node_cpus"),
        ("ghost: {node_cpus: 1}", "topology host 'ghost' needs node_cpus"),
        ("ghost: {node_cpus: 1, node_memory_mb: 512}", "groups=none"),
    ],
)
def test_bad_topology_is_refused_with_the_host_name(tmp_path, hosts, message):
    (tmp_path / "hosts.yml").write_text(
        textwrap.dedent(f"""\
        all:
          hosts:
            {hosts}
            ok1: {{node_cpus: 1, node_memory_mb: 512}}
          children:
            app: {{hosts: {{ok1: }}}}
        """)
    )
    proc = ansible(
        "ansible-playbook",
        "-i",
        str(tmp_path / "hosts.yml"),
        "playbooks/lab.yml",
        *NAMES,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert lab_containers() == [] or all("ghost" not in c for c in lab_containers())


def test_host_in_an_unknown_group_is_refused(tmp_path):
    (tmp_path / "hosts.yml").write_text(
        textwrap.dedent("""\
        all:
          children:
            app: {hosts: {ok1: {node_cpus: 1, node_memory_mb: 512}}}
            cache: {hosts: {redis1: {node_cpus: 1, node_memory_mb: 512}}}
        """)
    )
    proc = ansible(
        "ansible-playbook",
        "-i",
        str(tmp_path / "hosts.yml"),
        "playbooks/lab.yml",
        *NAMES,
        check=False,
    )
    assert proc.returncode != 0
    assert "topology host 'redis1'" in proc.stdout and "groups=cache" in proc.stdout


def test_missing_podman_is_one_clear_line():
    result = lab_playbook("lab_podman=/nonexistent/podman", check=False)
    assert not result.ok
    assert "podman is not usable here" in result.reason
    assert "apt-get install podman runc" in result.reason
    assert "Traceback" not in result.reason + result.stderr


def test_lab_down_removes_everything_and_is_repeatable(lab):
    first = lab_playbook("lab_state=absent")
    assert first.stats["localhost"].changed > 0
    assert lab_containers() == []
    networks = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert NETWORK not in networks
    second = lab_playbook("lab_state=absent")
    assert second.ok and second.stats["localhost"].failures == 0
