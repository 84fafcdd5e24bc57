"""loadtest.yml: its in-process step's parameters are checked before any host is
touched, its defaults follow the catalogue, and the command it runs on an app
host is made of the app unit's own settings. No host is contacted: the
inventory's hosts are unreachable addresses, and templates are rendered on
the controller alone (ansible.builtin.debug)."""

from pathlib import Path

import pytest
import yaml

from flask_deploy_lab import catalogue
from flask_deploy_lab.ansible import PLAYBOOK_DIR, run_module
from tests.conftest import ansible, playbook

CATALOGUE = catalogue.load()
# by what the catalogue says of them, never by name
DELAY_BOUND = next(n for n, e in CATALOGUE.endpoints.items() if e.delay_param)
CPU_BOUND = next(n for n, e in CATALOGUE.endpoints.items() if e.bound == "db" and not e.params)
NOT_GET = next(n for n, e in CATALOGUE.endpoints.items() if e.method != "GET")
TASKS = PLAYBOOK_DIR / "tasks" / "loadtest_inprocess.yml"


@pytest.fixture
def unreachable(tmp_path):
    """An inventory with the groups a load test needs, on a port that refuses at once."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n"
        "  vars: {ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 9}\n"
        "  children:\n"
        "    loadgen: {hosts: {loadgen1: }}\n"
        "    proxy: {hosts: {proxy1: }}\n"
        "    app: {hosts: {app1: }}\n"
    )
    return str(inventory)


def loadtest(inventory, *args):
    return playbook("loadtest.yml", *args, inventory=inventory, check=False, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["loadtest_inprocess_requests=0"],
            "loadtest_inprocess_requests=0 is not valid: loadtest_inprocess_requests must be "
            "a whole number > 0",
        ),
        (
            ["loadtest_inprocess_requests=many"],
            "argument 'loadtest_inprocess_requests' is of type str and we were unable to "
            "convert to int",
        ),
        (
            ["loadtest_inprocess_warmup=-1"],
            "loadtest_inprocess_warmup=-1 is not valid: loadtest_inprocess_warmup must be a "
            "whole number >= 0",
        ),
        (
            ["loadtest_inprocess_timeout=0"],
            "loadtest_inprocess_timeout=0 is not valid: loadtest_inprocess_timeout must be a "
            "whole number of seconds > 0",
        ),
        (
            ["loadtest_inprocess=maybe"],
            "argument 'loadtest_inprocess' is of type str and we were unable to convert to bool",
        ),
        # loadtest_inprocess's default reads the catalogue: an unknown endpoint is
        # still the spec's to refuse
        (
            ["endpoint=bogus"],
            f"value of endpoint must be one of: {', '.join(CATALOGUE.endpoints)}, got: bogus",
        ),
        # Little's law gives a delay-bound endpoint's ceiling; labapp.cost calls with GET
        (
            [f"endpoint={DELAY_BOUND}", "loadtest_inprocess=true"],
            "loadtest_inprocess=true is not valid: loadtest_inprocess must be false on an "
            "endpoint whose time is a delay",
        ),
        (
            [f"endpoint={NOT_GET}", "loadtest_inprocess=true"],
            "loadtest_inprocess=true is not valid",
        ),
        # the repeat the bench gives its cells (--r<repeat>)
        (["repeat=0"], "repeat=0 is not valid: repeat must be empty (not repeated) or a whole"),
        (["repeat=two"], "repeat=two is not valid"),
    ],
)
def test_bad_in_process_parameters_are_refused_before_any_host(unreachable, args, message):
    result = loadtest(unreachable, *args)
    assert not result.ok
    assert message in result.reason, result.reason
    # only the controller's checks ran
    assert set(result.stats) == {"localhost"}


@pytest.mark.parametrize(
    "args",
    [
        [f"endpoint={CPU_BOUND}"],
        [f"endpoint={DELAY_BOUND}"],
        [f"endpoint={CPU_BOUND}", "loadtest_inprocess=false"],
        [f"endpoint={CPU_BOUND}", "loadtest_inprocess_requests=1", "loadtest_inprocess_warmup=0"],
        [f"endpoint={DELAY_BOUND}", "repeat=3"],
    ],
)
def test_good_parameters_pass_the_checks(unreachable, args):
    result = loadtest(unreachable, *args)
    # past the checks, to the hosts, which cannot be reached
    assert result.stats["localhost"].failures == 0
    assert {h for h, s in result.stats.items() if s.unreachable} == {
        "loadgen1",
        "proxy1",
        "app1",
    }


def render(template, **variables):
    """A template rendered on the controller with loadtest.yml's variables (its
    defaults and its run play's wiring), the catalogue, and `variables`."""
    defaults = {}
    for name in ("loadtest.yml", "loadtest_run.yml"):
        defaults |= yaml.safe_load((PLAYBOOK_DIR / "vars" / name).read_text())
    result = run_module(
        "localhost",
        "ansible.builtin.debug",
        {"msg": template},
        inventory="localhost,",
        extra_vars={"ansible_connection": "local", **defaults, **variables},
        timeout=120,
    )
    assert result.ok, result.reason
    return result.results["ansible.builtin.debug"]["localhost"]["msg"]


@pytest.mark.parametrize("endpoint", list(CATALOGUE.endpoints))
def test_the_in_process_default_follows_the_catalogue(endpoint):
    spec = CATALOGUE.endpoints[endpoint]
    expected = spec.delay_param is None and spec.bound in ("cpu", "db")
    assert render("{{ loadtest_inprocess | bool }}", endpoint=endpoint) is expected


def test_the_in_process_target_is_the_endpoint_as_the_users_request_it():
    assert render("{{ loadtest_inprocess_target }}", endpoint=CPU_BOUND) == (
        CATALOGUE.endpoints[CPU_BOUND].path
    )
    assert render("{{ loadtest_inprocess_target }}", endpoint="queries", queries=7) == (
        "/queries?n=7"
    )


# What `systemctl show` says of the app's unit, as the role writes it.
UNIT_SHOW = [
    "User=labapp",
    "Group=labapp",
    "WorkingDirectory=/opt/labapp/app",
    "EnvironmentFiles=/etc/labapp/labapp.env (ignore_errors=no)",
    "EnvironmentFiles=/etc/labapp/extra.env (ignore_errors=yes)",
    "Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
]


def _in_process_task():
    tasks = yaml.safe_load(TASKS.read_text())
    (task,) = [t for t in tasks if "systemd-run" in str(t.get("ansible.builtin.command"))]
    return task


def test_the_in_process_run_is_the_app_units_user_environment_and_limits():
    task = _in_process_task()
    argv = render(
        task["ansible.builtin.command"]["argv"],
        **task["vars"],
        endpoint=CPU_BOUND,
        loadtest_app_unit={"stdout_lines": UNIT_SHOW},
        ansible_local={"labapp": {"cpu_quota": "100%", "memory_max": "384M"}},
    )
    path = CATALOGUE.endpoints[CPU_BOUND].path
    assert argv == [
        "systemd-run", "--wait", "--pipe", "--quiet", "--collect",
        "--unit=loadtest-inprocess.service",
        f"--description=In-process cost of {path} (load test)",
        "--uid=labapp", "--gid=labapp", "--working-directory=/opt/labapp/app",
        "--property=EnvironmentFile=/etc/labapp/labapp.env",
        "--property=EnvironmentFile=-/etc/labapp/extra.env",
        "--property=Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
        "--property=CPUQuota=100%", "--property=MemoryMax=384M", "--property=RuntimeMaxSec=120",
        "--", "/opt/labapp/venv/bin/python", "-m", "labapp.cost", "--endpoint", path,
        "--requests", "2000", "--warmup", "200",
    ]  # fmt: skip


def test_a_unit_without_user_or_environment_adds_none():
    task = _in_process_task()
    argv = render(
        task["ansible.builtin.command"]["argv"],
        **task["vars"],
        endpoint=CPU_BOUND,
        loadtest_app_unit={
            "stdout_lines": ["User=", "Group=", "WorkingDirectory=", "Environment="]
        },
        ansible_local={"labapp": {"cpu_quota": "50%", "memory_max": "infinity"}},
        loadtest_inprocess_requests=10,
        loadtest_inprocess_warmup=0,
    )
    assert not [a for a in argv if a.startswith(("--uid", "--gid", "--working", "--property=Env"))]
    assert "--property=CPUQuota=50%" in argv
    assert argv[-4:] == ["--requests", "10", "--warmup", "0"]


def test_the_playbook_passes_its_syntax_check():
    ansible("ansible-playbook", "--syntax-check", "playbooks/loadtest.yml")


def test_the_tasks_file_is_where_the_step_includes_it():
    step = yaml.safe_load((PLAYBOOK_DIR / "tasks" / "loadtest_step.yml").read_text())
    names = [t.get("ansible.builtin.include_tasks") for t in step]
    # before the measured run
    assert names.index(Path(TASKS).name) == names.index("loadtest_locust.yml", 1) - 1
