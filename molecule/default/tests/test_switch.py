"""`-e server=NAME` on the same hosts, for every server name in turn: on every
app host the old unit ends inactive and disabled, the new one active, and the
app answers; where the catalogue gives the server a reload, `systemctl reload`
replaces every worker under the same master."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import fact, inventory_dir

from flask_deploy_lab import catalogue
from flask_deploy_lab.report.proxy import server_timing
from tests.nginx_log import logged

ROOT = Path(__file__).resolve().parents[3]
WORKER_UNIT = "labapp-celery.service"
STACK_SERVER = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "main.yml").read_text())[
    "server"
]


def switch_order():
    """Every server of the catalogue once, families taking turns so that most
    switches change the program; the stack's own server last, leaving the lab
    as converged."""
    families = {}
    for name, server in catalogue.load().servers.items():
        if name != STACK_SERVER:
            families.setdefault(server.family, []).append(name)
    order = []
    while any(families.values()):
        for names in families.values():
            if names:
                order.append(names.pop(0))
    return [*order, STACK_SERVER]


ORDER = switch_order()


def converge(server):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    started = time.monotonic()
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            inventory_dir(),
            str(ROOT / "playbooks" / "site.yml"),
            "--tags",
            "app",
            "-e",
            f"server={server}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return time.monotonic() - started


def workers(app, unit):
    """(main pid, its children's pids) of a unit on an app host."""
    main = app.check_output("systemctl show -p MainPID --value %s", unit)
    return main, sorted(app.check_output("cat /proc/%s/task/*/children", main).split())


def reload_replaces_every_worker(app, unit, timeout=30):
    main, before = workers(app, unit)
    assert before, f"{unit} on {app}: no worker under MainPID {main}"
    app.check_output("systemctl reload %s", unit)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now_main, now = workers(app, unit)
        if len(now) >= len(before) and not set(now) & set(before):
            break
        time.sleep(0.2)
    assert now_main == main, f"{unit} on {app}: the reload replaced the master"
    assert not set(now) & set(before), f"{unit} on {app}: workers {before} -> {now}"


def test_order_covers_every_server():
    assert sorted(ORDER) == sorted(catalogue.load().servers)


@pytest.mark.parametrize("server", ORDER)
def test_switch(server, group, http):
    apps = group("app")
    before = [fact(app)["unit"] for app in apps]
    seconds = converge(server)
    unit = f"labapp-{server}.service"
    # on every app host: the new unit alone, the old one stopped and disabled
    for app, old in zip(apps, before, strict=True):
        assert app.service(unit).is_running, app
        assert app.service(unit).is_enabled, app
        if old != unit:
            assert not app.service(old).is_running, app
            assert not app.service(old).is_enabled, app
        active = app.check_output(
            "systemctl list-units --state=active --plain --no-legend 'labapp-*'"
        )
        # the Celery worker's unit stays: a switch of the app server leaves it alone
        servers = [u for u in (line.split()[0] for line in active.splitlines()) if u != WORKER_UNIT]
        assert servers == [unit], app
    for worker in group("worker"):
        assert worker.service(WORKER_UNIT).is_running, "the switch stopped the Celery worker"
    for path in ("/healthz", "/json", "/db", "/slow?delay=0.1"):
        status, _, body = http(path)
        assert status == 200, (server, path, body)
    # the app's Server-Timing under this server (nginx's uwsgi_pass or
    # proxy_pass): logged by nginx, hidden from the client; a client's own
    # stamp (a valid one, from 2001) is replaced by nginx's
    timed = f"/json?switch={server}-{time.time_ns()}"
    status, headers, _ = http(timed, headers={"X-Request-Start": "t=1000000000.000"})
    assert status == 200, (server, timed)
    assert "server-timing" not in {name.lower() for name in headers}, (server, headers)
    print(f"switch to {server}: {seconds:.1f} s")
    if catalogue.load().servers[server].reload:
        for app in apps:
            reload_replaces_every_worker(app, unit)
        status, _, body = http("/db")
        assert status == 200, (server, "/db after the reload", body)
    timing = server_timing(logged(group("proxy")[0], "GET", timed))
    assert set(timing) == {"queue", "app"}, (server, timing)
    # from nginx's send, not the client's 2001: a wait of ms, not of decades
    assert -5 <= timing["queue"] < 5000, (server, timing)
