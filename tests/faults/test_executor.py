"""The executor: the ansible commands it builds, how it reads their answers, and
the real thing against this machine (localhost, the local connection)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flask_deploy_lab.ansible import module_command, read_events, run_module
from flask_deploy_lab.faults import FaultError
from flask_deploy_lab.faults.executor import (
    ARGV_VAR,
    COMMAND,
    PODMAN_CONNECTION,
    PODMAN_STOP,
    REBOOT_HOST,
    SETUP,
    Executor,
    Host,
    Reply,
    command_args,
    inventory_from,
    literal,
    local_facts_from,
    replies,
    script_args,
)
from flask_deploy_lab.faults.hostside import http_probe
from flask_deploy_lab.faults.stack import parse_answers
from tests.faults.conftest import LOCAL

# ---------------------------------------------------------------- what it builds


def test_a_command_line_is_sent_literally():
    assert literal("pg_isready -q") == "pg_isready -q"
    assert literal("{{ x }}") == "{% raw %}{{ x }}{% endraw %}"
    assert literal("{% if %}") == "{% raw %}{% if %}{% endraw %}"
    assert literal("a {#") == "{% raw %}a {#{% endraw %}"
    assert literal("${#x}") == "{% raw %}${#x}{% endraw %}"
    with pytest.raises(ValueError, match="closes a raw block"):
        literal("{{ x }}{% endraw %}")


def test_one_run_gives_each_host_its_own_command_line():
    pattern, args, extra = command_args(
        {"app1": ["systemctl", "show", "labapp.service"], "db1": ["echo", "{{ x }}", "$HOME"]}
    )
    assert pattern == "app1:db1"
    assert args == {"argv": "{{ faults_argv[inventory_hostname] }}", "expand_argument_vars": False}
    assert extra == {
        ARGV_VAR: {
            "app1": ["systemctl", "show", "labapp.service"],
            "db1": ["echo", "{% raw %}{{ x }}{% endraw %}", "$HOME"],
        }
    }
    command = module_command(
        pattern, COMMAND, args, inventory="inventory/vagrant", extra_vars=extra
    )
    assert command[1:4] == ["app1:db1", "-m", "ansible.builtin.command"]
    assert command[command.index("-i") + 1] == "inventory/vagrant"
    with pytest.raises(ValueError):
        command_args({})


def test_a_host_side_program_goes_with_the_script_module_and_python3():
    args = script_args(Path("/pkg/hostside/http_probe.py"), ["http://10.0.0.1/db", 250, 0.1])
    assert args == {"cmd": "/pkg/hostside/http_probe.py http://10.0.0.1/db 250 0.1",
                    "executable": "python3"}  # fmt: skip
    quoted = script_args(Path("/p/x.py"), ["( sport = :8000 )", "{{ no }}"])["cmd"]
    assert quoted == "{% raw %}/p/x.py '( sport = :8000 )' '{{ no }}'{% endraw %}"


def event(kind, module, hosts):
    return json.dumps({"_event": kind, "task": {"name": module}, "hosts": hosts})


def test_each_host_gets_its_reply_from_the_events():
    lines = [
        event("v2_runner_on_ok", COMMAND, {"app1": {
            "rc": 0, "stdout": "MainPID=812", "stderr": "", "delta": "0:00:01.250000",
            "start": "2026-11-21 16:50:17.123456"}}),
        event("v2_runner_on_failed", COMMAND, {"db1": {
            "rc": 1, "stdout": "", "stderr": "pgrep: nothing", "msg": "non-zero return code"}}),
        event("v2_runner_on_unreachable", COMMAND, {"proxy1": {
            "msg": "Failed to create temporary directory", "unreachable": True}}),
    ]  # fmt: skip
    found = replies(read_events(lines, returncode=4), COMMAND, ["app1", "db1", "proxy1", "gen1"])
    assert found["app1"] == Reply(
        "app1", 0, "MainPID=812", "", "", 1.25, "2026-11-21 16:50:17.123456"
    )
    assert found["app1"].ok
    assert (found["db1"].rc, found["db1"].why) == (1, "pgrep: nothing")
    assert found["proxy1"].rc is None
    assert found["proxy1"].why == "Failed to create temporary directory"
    # a host with no event at all did not answer
    assert found["gen1"].rc is None


def test_a_reply_reads_the_json_a_host_side_program_printed_last():
    assert Reply("h", 0, stdout='warming up\n{"started": 12.5}\n').json() == {"started": 12.5}
    assert Reply("h", 0, stdout="7\n").json() == 7
    assert Reply("h", 1, stdout="Traceback ...").json() is None
    assert Reply("h", 0).json() is None


def test_the_inventory_is_read_from_what_each_host_said():
    order = {"all": ["web1", "gen1"], "proxy": ["web1"], "loadgen": ["gen1", "web1"]}
    bodies = {
        "web1": {"msg": {"groups": ["loadgen", "proxy"], "address": "10.9.8.7",
                         "connection": PODMAN_CONNECTION, "container": "fdl-web1",
                         "podman": "/x/lab/podman", "nginx_status_port": 8081, "order": order}},
        "gen1": {"msg": {"groups": ["loadgen"], "address": "10.9.8.8", "connection": "ssh",
                         "container": "gen1", "podman": "podman", "nginx_status_port": None,
                         "order": order}},
    }  # fmt: skip
    inventory = inventory_from(bodies)
    assert inventory.first("proxy") == "web1"
    assert inventory.members("loadgen") == ["gen1", "web1"]
    web1, gen1 = inventory.hosts["web1"], inventory.hosts["gen1"]
    assert (web1.address, web1.container, web1.nginx_status_port) == ("10.9.8.7", "fdl-web1", 8081)
    assert web1.in_lab and not gen1.in_lab
    assert Executor.restart_method(web1) == PODMAN_STOP
    assert Executor.restart_method(gen1) == REBOOT_HOST
    with pytest.raises(FaultError, match="no host in group 'db'"):
        inventory.first("db")


def test_local_facts_are_read_per_host():
    lines = [
        event("v2_runner_on_ok", SETUP, {"app1": {"ansible_facts": {"ansible_local": {
            "labapp": {"unit": "labapp-gunicorn.service"}}}}}),
    ]  # fmt: skip
    found = local_facts_from(read_events(lines), ["app1"])
    assert found == {"app1": {"labapp": {"unit": "labapp-gunicorn.service"}}}
    with pytest.raises(FaultError, match="cannot read the local facts of app2"):
        local_facts_from(read_events(lines), ["app1", "app2"])


# ---------------------------------------------------------------- against this machine


def test_commands_run_literally_and_each_run_is_logged(local, tmp_path):
    reply = local.run_one("localhost", ["echo", "{{ 1 + 1 }}", "$HOME", "a b"], label="echo")
    assert reply.ok
    assert reply.stdout == "{{ 1 + 1 }} $HOME a b"
    assert reply.seconds is not None
    failed = local.run_one("localhost", ["sh", "-c", "echo no >&2; exit 3"], label="fail")
    assert (failed.rc, failed.why) == (3, "no")
    with pytest.raises(FaultError, match="on localhost: false failed"):
        local.check("localhost", ["false"], label="check")
    logs = sorted(p.name for p in (tmp_path / "logs" / "hosts").iterdir())
    assert logs == ["001-echo.jsonl", "002-fail.jsonl", "003-check.jsonl"]


def test_several_hosts_get_their_own_commands_in_one_run(two_hosts):
    found = two_hosts.run({"web1": ["echo", "one"], "gen1": ["echo", "two"]}, label="two")
    assert {h: r.stdout for h, r in found.items()} == {"web1": "one", "gen1": "two"}
    assert len(list((two_hosts.logs / "hosts").iterdir())) == 1


def test_a_host_side_program_runs_on_the_host_and_its_answers_are_read(local, http_server):
    at = time.time() + 2
    reply = local.script(
        "localhost", Path(http_probe.__file__),
        [f"{http_server}/busy", 3, 0.05, "--at", f"{at:.3f}"], label="probe",
    )  # fmt: skip
    assert reply.ok, reply.why
    answers = parse_answers(reply.stdout)
    assert [(a.status, a.retry_after) for a in answers] == [(503, "1")] * 3
    # it waited on the host for the chosen moment, whatever the round trip took
    assert answers[0].time >= at - 0.001


def test_background_programs_are_waited_for_before_the_next_fault(local, http_server):
    started = time.monotonic()
    probe = local.start_script(
        "localhost", Path(http_probe.__file__), [f"{http_server}/ok", 2, 1.0], label="bg",
        timeout=60,
    )  # fmt: skip
    reading = local.start_run({"localhost": ["echo", "read"]}, label="bg-run")
    # started: nothing waited for yet
    assert time.monotonic() - started < 1
    local.reap()
    # the probe's two requests a second apart, and its sleep after the last
    assert time.monotonic() - started >= 2
    assert [a.status for a in parse_answers(probe.reply().stdout)] == [200, 200]
    assert reading.reply().stdout == "read"


def test_a_program_that_fails_or_prints_no_json_is_a_fault_error(local, tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('no json')\nsys.exit(0)\n")
    with pytest.raises(FaultError, match=r"on localhost: broken\.py failed: no json"):
        local.script_json("localhost", script, [], label="broken")


def test_the_inventory_says_who_is_who_and_where_they_are(two_hosts):
    inventory = two_hosts.discover()
    assert set(inventory.hosts) == {"web1", "gen1"}
    assert inventory.first("proxy") == "web1"
    assert inventory.members("loadgen") == ["gen1", "web1"]
    web1, gen1 = inventory.hosts["web1"], inventory.hosts["gen1"]
    # the inventory's node_address, and the templates of the lab's variables resolved
    assert web1.address == "10.9.8.7"
    assert web1.container == "fdl-web1"
    assert web1.podman.endswith("/lab/podman") and "{{" not in web1.podman
    assert web1.nginx_status_port == 8081
    assert (gen1.container, gen1.podman, gen1.nginx_status_port) == ("gen1", "podman", None)
    # without one, playbooks/group_vars' node_address: the default-route address
    facts = run_module(
        "localhost", SETUP, {"gather_subset": ["!all", "!min", "network"]},
        inventory="localhost,", extra_vars=LOCAL, timeout=120,
    )  # fmt: skip
    route = facts.results[SETUP]["localhost"]["ansible_facts"].get("ansible_default_ipv4", {})
    assert gen1.address == route.get("address", "")
    assert not web1.in_lab


def test_hosts_that_do_not_answer_stop_the_run(tmp_path):
    # a host whose Python is missing: Ansible cannot run anything there
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    gone1:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {tmp_path}/no-python\n"
    )
    with pytest.raises(FaultError, match=r"not answering: gone1 .*is the lab up"):
        Executor(tmp_path / "logs", inventory=str(inventory)).discover()


@pytest.fixture
def fake_podman(tmp_path):
    """A podman that logs its arguments; it fails to stop `fdl-stuck`."""
    calls = tmp_path / "podman-calls"
    podman = tmp_path / "podman"
    podman.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        'if [ "$1" = stop ] && [ "$4" = fdl-stuck ]; then echo "cannot stop" >&2; exit 125; fi\n'
        "sleep 0.2\n"
    )
    podman.chmod(0o755)
    return podman, calls


def test_a_lab_host_is_stopped_and_started_with_the_labs_podman(local, fake_podman):
    podman, calls = fake_podman
    host = Host(
        "loadgen2", ("loadgen",), "10.0.0.5", PODMAN_CONNECTION, "fdl-loadgen2", str(podman)
    )
    asked = time.time()
    restart = local.restart_host(host, label="restart")
    assert calls.read_text().splitlines() == ["stop --time 10 fdl-loadgen2", "start fdl-loadgen2"]
    assert restart.method == PODMAN_STOP
    assert restart.stop_s >= 0.2
    assert asked <= restart.stopped_at <= restart.back_at


def test_a_lab_host_that_did_not_stop_is_started_all_the_same(local, fake_podman):
    podman, calls = fake_podman
    host = Host("stuck", ("loadgen",), "10.0.0.6", PODMAN_CONNECTION, "fdl-stuck", str(podman))
    with pytest.raises(FaultError, match="podman stop fdl-stuck failed: cannot stop"):
        local.restart_host(host, label="restart")
    assert calls.read_text().splitlines()[-1] == "start fdl-stuck"


def test_processes_left_running_are_found_by_their_command_line(local):
    marker = f"fdl-test-{uuid.uuid4().hex}"
    # bracketed: this machine is also the controller, whose ansible holds the expression
    pattern = f"[f]{marker[1:]}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        found = local.processes(["localhost"], pattern, label="left")
        assert list(found) == ["localhost"]
        assert [line.split()[0] for line in found["localhost"]] == [str(proc.pid)]
    finally:
        proc.kill()
        proc.wait()
    assert local.processes(["localhost"], pattern, label="none-left") == {}


def test_no_fault_reaches_a_host_but_through_the_executor():
    """Only the executor runs anything (through the package's Ansible runner); the
    host-side programs are the ones that run commands, on their hosts."""
    package = Path(__file__).resolve().parents[2] / "src" / "flask_deploy_lab" / "faults"
    for path in package.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert "subprocess" not in imported, path.name
        assert "podman exec" not in path.read_text(), path.name
