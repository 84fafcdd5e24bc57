"""The Vagrantfile and the inventories for VMs and real hosts, checked without
booting anything: Vagrant validates offline and prints the machines it would
make (FDL_VAGRANT_PLAN=1), which must be the topology's."""

import ipaddress
import json
import math
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from flask_deploy_lab import vagrant_e2e
from tests.conftest import ROOT, ansible, topology

VAGRANT = shutil.which("vagrant")
needs_vagrant = pytest.mark.skipif(VAGRANT is None, reason="vagrant is not installed (make setup)")

KNOWN_GROUPS = ["db", "upstream", "broker", "app", "worker", "proxy", "loadgen"]
NETWORK = ipaddress.ip_network("192.168.56.0/24")
FLASK_APP_SPEC = ROOT / "roles" / "flask_app" / "meta" / "argument_specs.yml"
# The user's own switches would change the plan under test.
USER_SWITCHES = [
    "FDL_TOPOLOGY",
    "FDL_BOX",
    "FDL_BOX_BOOT_DIR",
    "FDL_EMULATE",
    "FDL_VAGRANT_PLAN",
    "SERVER",
    "DB_MODE",
    "VAGRANT_CWD",
    "VAGRANT_VAGRANTFILE",
    "VAGRANT_DEFAULT_PROVIDER",
]


@pytest.fixture(scope="session")
def vagrant_env(tmp_path_factory):
    """Vagrant's home and the project's .vagrant/ in a temporary directory:
    the tests write nothing in the repository or the user's home."""
    state = tmp_path_factory.mktemp("vagrant")
    env = {k: v for k, v in os.environ.items() if k not in USER_SWITCHES}
    env.update(
        VAGRANT_HOME=str(state / "home"),
        VAGRANT_DOTFILE_PATH=str(state / "dotfile"),
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_COLOR="1",
    )
    return env


@pytest.fixture(scope="session")
def vagrant(vagrant_env):
    if VAGRANT is None:
        pytest.skip("vagrant is not installed (make setup)")

    def run(*args, **switches):
        return subprocess.run(
            [VAGRANT, *args],
            cwd=ROOT,
            env={**vagrant_env, **switches},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def read_plan(vagrant, **switches):
    proc = vagrant("validate", "--ignore-provider", FDL_VAGRANT_PLAN="1", **switches)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    start = proc.stdout.index("{")
    plan, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    return plan


@pytest.fixture(scope="session")
def plan(vagrant):
    return read_plan(vagrant)


@pytest.fixture(scope="session")
def topo():
    return topology()


def write_topology(tmp_path, text):
    path = tmp_path / "topology.yml"
    path.write_text(textwrap.dedent(text))
    return path


def assert_plan_is_topology(plan, topo):
    machines = {m["name"]: m for m in plan["machines"]}
    assert sorted(machines) == sorted(topo)
    for host, spec in topo.items():
        m = machines[host]
        node_cpus = float(spec["vars"]["node_cpus"])
        assert m["node_cpus"] == node_cpus, host
        assert m["cpus"] == math.ceil(node_cpus), host
        # rounded half up, as Ruby rounds
        assert m["cpu_cap"] == math.floor(node_cpus * 100 / math.ceil(node_cpus) + 0.5), host
        assert m["memory_mb"] == int(spec["vars"]["node_memory_mb"]), host
        assert sorted(m["groups"]) == sorted(g for g in spec["groups"] if g != "ungrouped"), host


@needs_vagrant
def test_vagrantfile_validates_without_a_provider(vagrant):
    proc = vagrant("validate", "--ignore-provider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    # the plan is printed only when asked for
    assert "{" not in proc.stdout


@needs_vagrant
def test_machines_sizes_and_groups_are_the_topology(plan, topo):
    assert plan["topology"] == "inventory/topology.yml"
    assert_plan_is_topology(plan, topo)


@needs_vagrant
def test_addresses_are_private_unique_and_in_topology_order(plan):
    addresses = [ipaddress.ip_address(m["address"]) for m in plan["machines"]]
    assert all(a in NETWORK for a in addresses)
    assert addresses == [NETWORK[10 + i] for i in range(len(addresses))]


@needs_vagrant
def test_the_box_defaults_to_debian_and_is_overridable(plan, vagrant):
    assert plan["box"] == "debian/bookworm64"
    assert read_plan(vagrant, FDL_BOX="generic/debian12")["box"] == "generic/debian12"


def add_fake_box(home, name):
    """What `vagrant box add` leaves for a libvirt box, as far as the Vagrantfile looks."""
    box = home / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "0" / "libvirt"
    box.mkdir(parents=True)
    (box / "metadata.json").write_text('{"provider": "libvirt"}')


@needs_vagrant
def test_the_local_box_is_taken_when_it_is_the_only_one(vagrant, tmp_path):
    home, boot = tmp_path / "home", tmp_path / "boot"
    boot.mkdir()
    add_fake_box(home, "flask-deploy-lab/bookworm")
    switches = {"VAGRANT_HOME": str(home), "FDL_BOX_BOOT_DIR": str(boot)}
    # its kernel is not where make vagrant-box puts it: one line saying so
    proc = vagrant("validate", "--ignore-provider", **switches)
    assert proc.returncode != 0
    assert "run 'make vagrant-box'" in proc.stderr and str(boot) in proc.stderr
    assert "Traceback" not in proc.stderr and ".rb:" not in proc.stderr
    (boot / "flask-deploy-lab-bookworm.vmlinuz").write_text("kernel")
    assert read_plan(vagrant, **switches)["box"] == "flask-deploy-lab/bookworm"
    # with the public box there too, the public one, unless asked
    add_fake_box(home, "debian/bookworm64")
    assert read_plan(vagrant, **switches)["box"] == "debian/bookworm64"
    assert read_plan(vagrant, FDL_BOX="local", **switches)["box"] == "flask-deploy-lab/bookworm"


@needs_vagrant
def test_asking_for_the_local_box_without_it_is_one_clear_line(vagrant):
    proc = vagrant("validate", "--ignore-provider", FDL_BOX="local")
    assert proc.returncode != 0
    assert "FDL_BOX=local" in proc.stderr and "run 'make vagrant-box'" in proc.stderr
    assert "Traceback" not in proc.stderr


def cpu_offers_kvm():
    flags = Path("/proc/cpuinfo").read_text().split()
    return os.path.exists("/dev/kvm") and bool({"vmx", "svm"} & set(flags))


@needs_vagrant
def test_software_emulation_when_kvm_is_unusable_or_asked_for(plan, vagrant):
    assert plan["emulate"] is (not cpu_offers_kvm())
    assert read_plan(vagrant, FDL_EMULATE="1")["emulate"] is True
    assert read_plan(vagrant, FDL_EMULATE="0")["emulate"] is False
    proc = vagrant("validate", "--ignore-provider", FDL_EMULATE="maybe")
    assert proc.returncode != 0
    assert "FDL_EMULATE=maybe" in proc.stderr and "Traceback" not in proc.stderr


@needs_vagrant
def test_one_provisioner_on_the_last_machine_converges_everything(plan, topo):
    prov = plan["provisioner"]
    assert prov["machine"] == plan["machines"][-1]["name"]
    assert prov["limit"] == "all"
    assert prov["playbook"] == "playbooks/site.yml"
    assert prov["become"] is True
    assert prov["compatibility_mode"] == "2.0"
    # unset SERVER/DB_MODE: the playbook's own defaults apply
    assert prov["extra_vars"] == {}
    for m in plan["machines"]:
        assert prov["host_vars"][m["name"]] == {
            "node_address": m["address"],
            "node_cpus": m["node_cpus"],
            "node_memory_mb": m["memory_mb"],
        }
    for group in KNOWN_GROUPS:
        members = sorted(h for h in topo if group in topo[h]["groups"])
        assert sorted(prov["groups"].get(group, [])) == members, group


@needs_vagrant
def test_server_and_db_mode_come_from_the_environment(vagrant):
    plan = read_plan(vagrant, SERVER="uwsgi", DB_MODE="naive")
    assert plan["provisioner"]["extra_vars"] == {"server": "uwsgi", "db_mode": "naive"}


@needs_vagrant
@pytest.mark.skipif(not FLASK_APP_SPEC.exists(), reason="roles/flask_app is not there yet")
@pytest.mark.parametrize(("switch", "value"), [("SERVER", "unicorn"), ("DB_MODE", "pooled")])
def test_an_unknown_switch_fails_before_any_vm_boots(vagrant, switch, value):
    proc = vagrant("validate", "--ignore-provider", **{switch: value})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{switch}={value} is not known; valid: " in out
    assert ("gunicorn-gthread" if switch == "SERVER" else "naive, pool") in out


@needs_vagrant
def test_fractions_group_vars_and_ranges_are_read_as_ansible_reads_them(vagrant, tmp_path):
    path = write_topology(
        tmp_path,
        """\
        all:
          vars:
            node_memory_mb: 256
          hosts:
            db1: {node_cpus: 1.5, node_memory_mb: 2048}
          children:
            db:
              hosts:
                db1:
            upstream:
              hosts:
                db1:
            app:
              vars:
                node_cpus: 0.2
              hosts:
                app[1:3]:
            proxy:
              hosts:
                proxy1: {node_cpus: 2}
            loadgen:
              hosts:
                loadgen[01:02]: {node_cpus: 1}
        """,
    )
    plan = read_plan(vagrant, FDL_TOPOLOGY=str(path))
    assert_plan_is_topology(plan, topology(str(path)))
    caps = {m["name"]: (m["cpus"], m["cpu_cap"]) for m in plan["machines"]}
    assert caps == {
        "db1": (2, 75),
        "app1": (1, 20),
        "app2": (1, 20),
        "app3": (1, 20),
        "proxy1": (2, 100),
        "loadgen01": (1, 100),
        "loadgen02": (1, 100),
    }


@needs_vagrant
def test_a_host_added_at_the_end_leaves_the_other_addresses_alone(plan, vagrant, tmp_path):
    data = yaml.safe_load((ROOT / "inventory" / "topology.yml").read_text())
    data["all"]["hosts"]["app99"] = {"node_cpus": 1, "node_memory_mb": 512}
    data["all"]["children"]["app"]["hosts"]["app99"] = None
    path = write_topology(tmp_path, yaml.safe_dump(data, sort_keys=False))
    grown = read_plan(vagrant, FDL_TOPOLOGY=str(path))
    before = {m["name"]: m["address"] for m in plan["machines"]}
    after = {m["name"]: m["address"] for m in grown["machines"]}
    assert {h: after[h] for h in before} == before
    assert after["app99"] == str(NETWORK[10 + len(before)])
    assert "app99" in grown["provisioner"]["groups"]["app"]


@needs_vagrant
@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("ghost: {node_memory_mb: 512}", "node_cpus=missing"),
        ("ghost: {node_cpus: 1}", "node_memory_mb=missing"),
        ("ghost: {node_cpus: 0, node_memory_mb: 512}", "node_cpus=0,"),
        ("ghost: {node_cpus: 1, node_memory_mb: 512}", "groups=none"),
    ],
)
def test_a_bad_host_is_refused_by_name(vagrant, tmp_path, hosts, message):
    path = write_topology(
        tmp_path,
        f"""\
        all:
          hosts:
            {hosts}
            ok1: {{node_cpus: 1, node_memory_mb: 512}}
          children:
            app: {{hosts: {{ok1: }}}}
        """,
    )
    proc = vagrant("validate", "--ignore-provider", FDL_TOPOLOGY=str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "topology host 'ghost' needs node_cpus" in out
    assert message in out
    assert "ok1" not in out
    assert "Traceback" not in out and ".rb:" not in out


@needs_vagrant
def test_a_host_in_an_unknown_group_is_refused(vagrant, tmp_path):
    path = write_topology(
        tmp_path,
        """\
        all:
          children:
            app: {hosts: {ok1: {node_cpus: 1, node_memory_mb: 512}}}
            cache: {hosts: {redis1: {node_cpus: 1, node_memory_mb: 512}}}
        """,
    )
    proc = vagrant("validate", "--ignore-provider", FDL_TOPOLOGY=str(path))
    assert proc.returncode != 0
    assert "topology host 'redis1'" in proc.stdout + proc.stderr
    assert "groups=cache" in proc.stdout + proc.stderr


@needs_vagrant
def test_more_hosts_than_addresses_is_refused(vagrant, tmp_path):
    path = write_topology(
        tmp_path,
        """\
        all:
          children:
            loadgen:
              hosts:
                lg[001:250]: {node_cpus: 1, node_memory_mb: 256}
        """,
    )
    proc = vagrant("validate", "--ignore-provider", FDL_TOPOLOGY=str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "topology host 'lg246' has no address left" in out


@needs_vagrant
def test_a_missing_topology_file_is_one_clear_line(vagrant, tmp_path):
    proc = vagrant("validate", "--ignore-provider", FDL_TOPOLOGY=str(tmp_path / "nope.yml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot read the topology" in out and "nope.yml" in out
    assert "Traceback" not in out


def test_inventory_vagrant_is_the_inventory_vagrant_generates():
    link = ROOT / "inventory" / "vagrant" / "hosts"
    assert link.is_symlink()
    target = Path(os.readlink(link))
    assert not target.is_absolute()
    generated = ROOT / ".vagrant" / "provisioners" / "ansible" / "inventory"
    assert (link.parent / target).resolve() == (generated / "vagrant_ansible_inventory").resolve()


GENERATED = Path(__file__).parent / "generated" / "topology-pair.ini"


def test_the_generated_inventory_carries_groups_addresses_and_sizes():
    # What Vagrant wrote in a real `vagrant up` of the pair topology (make
    # vagrant-up-test checks the same on the inventory of each run).
    machines = vagrant_e2e.plan(ROOT / "inventory" / "topology-pair.yml")
    assert vagrant_e2e.check_inventory(GENERATED, machines) == []
    ansible("ansible-playbook", "--syntax-check", "-i", str(GENERATED), "playbooks/site.yml")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (("node_address=192.168.56.11", "node_address=192.168.56.12"), "loadgen1: node_address"),
        (("node_memory_mb=2048", "node_memory_mb=1024"), "stack1: node_memory_mb=1024"),
        (("[proxy]\nstack1", "[proxy]\nloadgen1"), "group proxy: ['loadgen1']"),
        (("ansible_become=true", "ansible_become=false"), "ansible_become=false"),
    ],
    ids=["address", "memory", "group", "become"],
)
def test_an_inventory_unlike_the_topology_is_reported(tmp_path, edit, problem):
    machines = vagrant_e2e.plan(ROOT / "inventory" / "topology-pair.yml")
    changed = tmp_path / "inventory.ini"
    changed.write_text(GENERATED.read_text().replace(*edit))
    problems = vagrant_e2e.check_inventory(changed, machines)
    assert any(problem in p for p in problems), problems


@pytest.fixture(scope="module")
def production():
    return topology("inventory/production")


def test_production_inventory_has_several_app_and_loadgen_hosts(production):
    graph = ansible("ansible-inventory", "-i", "inventory/production", "--graph").stdout
    hosts = production
    for group in KNOWN_GROUPS:
        assert f"@{group}:" in graph
    assert sum("app" in h["groups"] for h in hosts.values()) >= 2
    assert sum("loadgen" in h["groups"] for h in hosts.values()) >= 2


def test_production_hosts_say_how_they_are_reached_and_sized(production):
    hosts = production
    addresses = [h["vars"]["node_address"] for h in hosts.values()]
    assert len(set(addresses)) == len(hosts)
    for name, h in hosts.items():
        v = h["vars"]
        assert name.endswith(".example.com")
        assert v["ansible_connection"] == "ssh" and v["ansible_become"] is True, name
        assert float(v["node_cpus"]) > 0 and int(v["node_memory_mb"]) >= 128, name
        ipaddress.ip_address(v["node_address"])
        assert set(h["groups"]) <= set(KNOWN_GROUPS), name


def test_site_playbook_parses_against_the_production_inventory():
    ansible(
        "ansible-playbook", "--syntax-check", "-i", "inventory/production", "playbooks/site.yml"
    )
