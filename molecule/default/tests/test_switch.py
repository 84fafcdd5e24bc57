"""`-e server=NAME` on the same hosts, for every server name in turn: the old
unit ends inactive and disabled, the new one active, and the app answers."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import inventory_dir

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "roles" / "flask_app" / "meta" / "argument_specs.yml"
# The order visits every server and every family change; the stack's own
# server (gunicorn-gthread) comes last, leaving the lab as converged.
ORDER = [
    "flask",
    "uwsgi",
    "gunicorn",
    "gevent",
    "uwsgi-gevent",
    "flask-threaded",
    "gunicorn-gevent",
    "gunicorn-gthread",
]


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


def test_order_covers_every_server():
    import yaml

    spec = yaml.safe_load(SPEC.read_text())
    choices = spec["argument_specs"]["main"]["options"]["flask_app_server"]["choices"]
    assert sorted(ORDER) == sorted(choices)


@pytest.mark.parametrize("server", ORDER)
def test_switch(server, group, http):
    app = group("app")[0]
    before = json.loads(app.file("/etc/ansible/facts.d/labapp.fact").content_string)["unit"]
    seconds = converge(server)
    unit = f"labapp-{server}.service"
    assert app.service(unit).is_running
    assert app.service(unit).is_enabled
    if before != unit:
        assert not app.service(before).is_running
        assert not app.service(before).is_enabled
    active = app.check_output("systemctl list-units --state=active --plain --no-legend 'labapp-*'")
    assert [line.split()[0] for line in active.splitlines()] == [unit]
    for path in ("/healthz", "/json", "/db", "/slow?delay=0.1"):
        status, _, body = http(path)
        assert status == 200, (server, path, body)
    print(f"switch to {server}: {seconds:.1f} s")
