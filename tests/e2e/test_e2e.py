"""End to end through the lab: a short distributed Locust run, its files, the report
and its plots in a real browser; bad input and a worker that never connects.

Every load goes to the lab's own containers and ends by itself within seconds.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from flask_deploy_lab import catalogue
from tests.conftest import ROOT, podman
from tests.e2e.conftest import (
    LOADGENS,
    container,
    inventory_hosts,
    loadtest,
    locust_processes,
    site,
    stack_answers,
)
from tests.e2e.png import colour_stats, decode

pytestmark = pytest.mark.lab

CHROMIUM = Path("/usr/bin/chromium")
# The report's first configuration is drawn in matplotlib's first tab10 colour.
PLOT_COLOUR = (0x1F, 0x77, 0xB4)
DURATION = 10


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory):
    """One distributed cell: 10 users on /slow for 10 s after a 2 s warm-up."""
    reports = tmp_path_factory.mktemp("reports")
    run_id = time.strftime("e2e-%Y%m%d-%H%M%S")
    started = time.monotonic()
    proc = loadtest(
        f"reports_dir={reports}",
        f"run_id={run_id}",
        "cell_id=smoke",
        "endpoint=slow",
        "users=10",
        "spawn_rate=10",
        f"duration={DURATION}",
        "warmup=2",
        "delay_s=0.1",
    )
    run_dir = reports / run_id
    return {
        "dir": run_dir,
        "cell": run_dir / "smoke",
        "output": proc.stdout,
        "seconds": time.monotonic() - started,
    }


def aggregated(cell_dir):
    with (cell_dir / "locust_stats.csv").open(newline="") as handle:
        return next(r for r in csv.DictReader(handle) if r["Name"] == "Aggregated")


def test_the_run_was_distributed_over_two_workers(run):
    cell = json.loads((run["cell"] / "cell.json").read_text())
    assert cell["workers"] == 2
    assert cell["loadgen_hosts"] == LOADGENS
    log = (run["cell"] / "locust.log").read_text()
    assert "2 workers connected" in log
    assert "to 2 ready workers" in log


def test_the_csv_shows_requests_and_no_failures(run):
    row = aggregated(run["cell"])
    assert int(row["Request Count"]) > 0
    assert int(row["Failure Count"]) == 0
    # 10 users on a 0.1 s delay: the closed loop cannot exceed 100 req/s
    assert 0 < float(row["Requests/s"]) <= 110
    history = (run["cell"] / "locust_stats_history.csv").read_text().splitlines()
    assert len(history) > 2


def test_the_independent_client_ran_the_same_load(run):
    meta = json.loads((run["cell"] / "hey.json").read_text())
    assert (meta["client"], meta["connections"], meta["duration_s"]) == ("hey", 10, DURATION)
    assert meta["url"].endswith("/slow?delay=0.1")
    with (run["cell"] / "hey.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # 10 connections, 0.1 s a request, 12 s: about 1,200 requests, every one a 200
    assert len(rows) > 600
    assert {row["status-code"] for row in rows} == {"200"}
    assert all(float(row["response-time"]) >= 0.1 for row in rows)


def test_the_locust_html_report_exists(run):
    report = run["cell"] / "locust_report.html"
    assert report.stat().st_size > 10_000
    assert "<html" in report.read_text(errors="replace")[:2000].lower()


def test_every_host_was_sampled(run):
    samples = sorted(p.stem for p in (run["cell"] / "samples").glob("*.csv"))
    assert samples == inventory_hosts()
    for path in (run["cell"] / "samples").glob("*.csv"):
        assert len(path.read_text().splitlines()) >= DURATION // 2, path.name


def test_the_environment_is_recorded(run):
    environment = json.loads((run["dir"] / "environment.json").read_text())
    assert environment["versions"]["locust"] == "2.47.0"
    # every server family of the catalogue is a package of the app's venv
    families = {server.family for server in catalogue.load().servers.values()}
    assert {"flask", "postgresql", "nginx"} | families <= set(environment["versions"])
    assert isinstance(environment["limits"]["unit_limits_enforced"], bool)
    assert sorted(h["name"] for h in environment["hosts"]) == inventory_hosts()


def test_no_locust_process_is_left(run):
    for host in LOADGENS:
        assert locust_processes(host) == [], host


@pytest.fixture(scope="module")
def page(run):
    """The report of the run, generated and then rendered by headless Chromium."""
    generated = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report", str(run["dir"])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    index = run["dir"] / "index.html"
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: make setup installs Debian's chromium")
    profile = run["dir"].parent / "chromium-profile"
    screenshot = run["dir"].parent / "index.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={screenshot}",
            "--window-size=1280,2000",
            index.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
    return {"index": index, "png": screenshot.read_bytes() if screenshot.is_file() else b""}


def test_the_report_generator_wrote_the_page(page):
    text = page["index"].read_text()
    assert "<svg" in text
    assert "smoke" in text


def test_chromium_renders_the_report_with_its_plots(page):
    width, height, rows = decode(page["png"])
    assert (width, height) == (1280, 2000)
    colours, not_background = colour_stats(page["png"])
    assert colours > 50, "the screenshot is (nearly) one colour"
    assert not_background > 0.02, "the screenshot is (nearly) blank"
    plot_pixels = sum(
        1
        for row in rows[::2]
        for x in range(0, len(row) - 2, 6)
        if all(abs(row[x + i] - PLOT_COLOUR[i]) <= 8 for i in range(3))
    )
    assert plot_pixels > 200, "no bar of the throughput plot in the screenshot"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("users=0", "users=0"),
        ("endpoint=bogus", "value of endpoint must be one of: healthz, json, slow, db"),
        ("users=many", "argument 'users' is of type str and we were unable to convert to int"),
        ("duration=0", "duration=0"),
        ("spawn_rate=0", "spawn_rate=0"),
        ('{"ladder": [10, 0]}', "ladder=[10, 0] is not valid"),
        ('{"delays": [1, -0.5]}', "delays=[1, -0.5] is not valid"),
    ],
)
def test_bad_input_stops_before_any_load(setting, named):
    proc = loadtest(setting, check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert named in " ".join(out.split())
    assert "is not valid" in out or "must be one of" in out or "unable to convert" in out
    # nothing past the checks on the controller ran
    assert "PLAY [The run]" not in out
    assert "PLAY [Facts of every host" not in out


def test_a_worker_that_never_connects_fails_the_run_and_leaves_nothing(stack, tmp_path):
    started = time.monotonic()
    proc = loadtest(
        f"reports_dir={tmp_path}",
        "run_id=no-workers",
        "locust_expect_workers=5",
        "locust_expect_workers_max_wait=5",
        "warmup=0",
        "duration=5",
        "loadtest_install=false",
        check=False,
        timeout=600,
    )
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "of 5 Locust workers connected" in out
    assert "within 5 s" in out
    assert time.monotonic() - started < 300
    for host in LOADGENS:
        assert locust_processes(host) == [], host
    assert not list(tmp_path.glob("no-workers/*/cell.json"))


# where the playbooks keep generated secrets (group_vars: db_credentials_dir)
CREDENTIALS = Path(os.environ.get("FDL_CREDENTIALS_DIR") or ROOT / "credentials")


def ui_request(path, password=None, form=None):
    """GET (or POST a form to) path of the Locust web UI through nginx on the
    controller's loopback, over TLS checked against the generated
    certificate: (status, body)."""
    cafile = CREDENTIALS / "locust-ui" / f"{LOADGENS[0]}.crt"
    context = ssl.create_default_context(cafile=str(cafile))
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(f"https://127.0.0.1:8089{path}", data=data)
    if password is not None:
        token = base64.b64encode(f"locust:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def ui_stats(password):
    status, body = ui_request("/stats/requests", password=password)
    assert status == 200, body
    return json.loads(body)


def ui_swarm(password, host, seconds):
    form = {"user_count": 20, "spawn_rate": 20, "host": host, "user_classes": "SlowUser"}
    status, body = ui_request("/swarm", password=password, form={**form, "run_time": f"{seconds}s"})
    assert status == 200 and json.loads(body)["success"], body


def test_the_web_ui_wants_its_password_loads_the_lab_only_and_keeps_its_run(stack, tmp_path):
    password = (CREDENTIALS / "locust_ui_password").read_text().strip()
    loadtest(
        "locust_ui=true", "loadtest_install=false", "endpoint=slow", "delay_s=0.2",
        "run_id=ui-e2e", f"reports_dir={tmp_path}", timeout=300,
    )  # fmt: skip
    try:
        assert ui_request("/stats/requests")[0] == 401
        assert ui_request("/stats/requests", password="not-" + password)[0] == 401
        stats = ui_stats(password)
        assert stats["state"] == "ready"
        assert len(stats["workers"]) == 2
        # the page itself comes through the proxy too
        status, body = ui_request("/", password=password)
        assert status == 200 and b"<html" in body.lower()
        # the master's own UI is on loopback only
        listening = podman("exec", container(LOADGENS[0]), "ss", "-Hltn").stdout
        addresses = [line.split()[3] for line in listening.splitlines()]
        assert {a for a in addresses if a.endswith(":8089")} == {"127.0.0.1:8089"}, listening
        # and its workers' port on its node address only
        workers_port = [a for a in addresses if a.endswith(":5557")]
        assert len(workers_port) == 1, listening
        assert not workers_port[0].startswith(("0.0.0.0", "*", "[::]")), listening

        # the Host field pointed elsewhere: stopped, nothing sent
        ui_swarm(password, "http://192.0.2.10", 30)
        deadline = time.monotonic() + 20
        while ui_stats(password)["state"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.5)
        stats = ui_stats(password)
        assert stats["state"] == "stopped"
        assert stats["stats"][-1]["num_requests"] == 0

        # a test of the lab's proxy runs, and stops at its run time
        ui_swarm(password, "http://proxy1", 6)
        time.sleep(10)
        stats = ui_stats(password)
        assert stats["state"] == "stopped"
        assert stats["stats"][-1]["num_requests"] > 100
    finally:
        loadtest("locust_state=stopped", f"reports_dir={tmp_path}", timeout=300)
    for host in LOADGENS:
        assert locust_processes(host) == [], host
    # the stop kept the UI's run like a headless cell, and the report read it
    cell = tmp_path / "ui-e2e" / "ui"
    for name in ("locust_stats.csv", "locust_report.html", "locust_requests.csv", "cell.json"):
        assert (cell / name).is_file(), name
    assert sorted(p.stem for p in (cell / "samples").glob("*.csv")) == inventory_hosts()
    summary = json.loads((tmp_path / "ui-e2e" / "summary.json").read_text())
    (row,) = summary["cells"]
    assert row["cell"] == "ui" and row["users"] == 20 and row["requests"] > 100


def test_a_pg_hba_postgresql_cannot_parse_is_put_back_before_the_reload(stack):
    # a client no pg_hba.conf can hold: the run fails naming the line, the
    # previous file is back, and the app still gets in (over TLS)
    hba = "/etc/postgresql/15/main/pg_hba.conf"
    before = podman("exec", container("db1"), "cat", hba).stdout
    result = site("--tags", "db", "-e", '{"postgresql_clients": ["10.0.0.0/99"]}', check=False,
                  timeout=600)  # fmt: skip
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "had errors (line" in out and "the previous file is back in place" in out
    assert podman("exec", container("db1"), "cat", hba).stdout == before
    assert stack_answers()
    ok = podman("exec", container(LOADGENS[0]), "python3", "-c", DB_THROUGH_NGINX, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


DB_THROUGH_NGINX = (
    "import sys, urllib.request; "
    "sys.exit(0 if urllib.request.urlopen('http://proxy1/db', timeout=10).status == 200 else 1)"
)
