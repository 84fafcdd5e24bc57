"""site.yml refuses bad switches and incomplete inventories before any host
changes, with a message that says what is valid."""

import json
import textwrap

import pytest
import yaml

from flask_deploy_lab import catalogue
from tests.conftest import ROOT, ansible, playbook

SERVERS = ", ".join(catalogue.load().servers)


def site(*args, inventory="inventory/lab"):
    """site.yml with extra vars given as "-e", "key=value" pairs."""
    extra = [arg for arg in args if arg != "-e"]
    return playbook("site.yml", *extra, inventory=inventory, check=False)


@pytest.fixture(autouse=True)
def throwaway_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("FDL_CREDENTIALS_DIR", str(tmp_path / "credentials"))


def assert_refused_before_hosts(result, message):
    assert not result.ok
    assert message in result.reason, result.reason
    # only the controller's check ran: no lab host was contacted, let alone changed
    assert set(result.stats) == {"localhost"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "server=bogus"], f"value of server must be one of: {SERVERS}, got: bogus"),
        (["-e", "server=Gunicorn"], "value of server must be one of"),
        (["-e", "db_mode=bogus"], "value of db_mode must be one of: naive, pool, got: bogus"),
        (["-e", "app_port=http"], "argument 'app_port' is of type str and we were unable"),
        (
            ["-e", "server=gunicorn", "-e", "app_protocol=uwsgi"],
            "app_protocol=uwsgi is not valid with server=gunicorn",
        ),
        (
            ["-e", "flask_app_workers=abc"],
            "argument 'flask_app_workers' is of type str and we were unable to convert to int",
        ),
        (
            ["-e", "flask_app_workers=0"],
            "flask_app_workers=0 is not valid; flask_app_workers must be a whole number >= 1",
        ),
        (["-e", "flask_app_threads=0"], "flask_app_threads=0 is not valid"),
        (
            ["-e", "flask_app_cpu_quota=50"],
            "flask_app_cpu_quota=50 is not valid; flask_app_cpu_quota must be a percentage",
        ),
        (["-e", "flask_app_memory_max=lots"], "flask_app_memory_max=lots is not valid"),
        (["-e", "flask_app_db_pool_timeout=-1"], "flask_app_db_pool_timeout=-1 is not valid"),
        (
            ["-e", "flask_app_db_pool_min=5", "-e", "flask_app_db_pool_max=2"],
            "flask_app_db_pool_min=5 is above flask_app_db_pool_max=2",
        ),
        (["-e", "broker_port=redis"], "broker_port=redis is not valid"),
        (
            ["-e", "task_time_limit=60"],
            "task_visibility_timeout=60 must be above task_time_limit=60",
        ),
    ],
)
def test_bad_switch_is_refused(args, message):
    assert_refused_before_hosts(site(*args), message)


@pytest.mark.parametrize("missing", ["db", "app", "proxy", "upstream"])
def test_missing_group_is_named(tmp_path, missing):
    groups = {"db": "db1", "upstream": "db1", "app": "app1", "proxy": "proxy1"}
    del groups[missing]
    children = "\n".join(f"    {g}: {{hosts: {{{h}: }}}}" for g, h in groups.items())
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(textwrap.dedent("all:\n  children:\n") + children + "\n")
    proc = site(inventory=str(inventory))
    assert_refused_before_hosts(proc, f"the inventory has no host in group '{missing}'")


def test_site_passes_syntax_check():
    ansible("ansible-playbook", "--syntax-check", "playbooks/site.yml")


GROUPS_PLAY = "The broker and worker groups, the inventory's or else the db and app hosts"


@pytest.mark.parametrize(
    ("inventory", "expected"),
    [
        # no broker or worker group: Redis on the db hosts, a worker per app host
        ("inventory/topology-pair.yml", {"broker": ["stack1"], "worker": ["stack1"]}),
        ("inventory/topology.yml", {"broker": ["db1"], "worker": ["app1"]}),
        # the lab's inventory names both groups empty, around the topology's
        ("inventory/lab", {"broker": ["db1"], "worker": ["app1"]}),
        (
            """\
            all:
              children:
                db: {hosts: {db1: }}
                upstream: {hosts: {db1: }}
                app: {hosts: {app1: , app2: }}
                worker: {hosts: {tasks1: }}
                proxy: {hosts: {proxy1: }}
            """,
            {"broker": ["db1"], "worker": ["tasks1"]},
        ),
    ],
    ids=["pair", "topology", "lab", "worker-only"],
)
def test_broker_and_worker_default_to_the_db_and_app_hosts(tmp_path, inventory, expected):
    """site.yml's own play, then the groups it leaves: no host is contacted."""
    if "\n" in inventory:
        path = tmp_path / "hosts.yml"
        path.write_text(textwrap.dedent(inventory))
        inventory = str(path)
    site_plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    groups_play = next(play for play in site_plays if play["name"] == GROUPS_PLAY)
    written = tmp_path / "groups.json"
    show = {
        "name": "Write the groups",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "ansible_connection": "local",
            "found": {name: f"{{{{ groups['{name}'] }}}}" for name in ("broker", "worker")},
        },
        "tasks": [
            {
                "name": "Write them",
                "ansible.builtin.copy": {
                    "content": "{{ found | to_json }}",
                    "dest": str(written),
                    "mode": "0644",
                },
            }
        ],
    }
    check = tmp_path / "groups.yml"
    check.write_text(yaml.safe_dump([groups_play, show]))
    ansible("ansible-playbook", "-i", inventory, str(check))
    assert {k: sorted(v) for k, v in json.loads(written.read_text()).items()} == expected
