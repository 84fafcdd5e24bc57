"""locustfile.py under real Locust, headless, against a stand-in app on 127.0.0.1.

Every run stops by itself (-t, and a subprocess timeout behind it). Runs that
drive load go one at a time, so none starves another of CPU and the assertions
hold on a slow CI machine; the whole module takes about fifteen seconds.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flask_deploy_lab import catalogue

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE.parents[1] / "loadtest" / "locustfile.py"
FAKE_APP = HERE / "loadtest_fake_app.py"
ENDPOINTS = list(catalogue.load().endpoints)
ALL_NAMES = {f"/{e}" for e in ENDPOINTS} | {"/tasks/[id]"}
# the columns the report reads; Locust 2.47 writes exactly these
STATS_COLUMNS = [
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Average Content Size",
    "Requests/s",
    "Failures/s",
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
]
TIMEOUT = 60


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeApp:
    """loadtest_fake_app.py in a process of its own; its request log read back after."""

    def __init__(self, directory, broken=False):
        self.log = directory / "requests.log"
        command = [sys.executable, str(FAKE_APP), "--log", str(self.log)]
        self.process = subprocess.Popen(
            [*command, "--broken"] if broken else command, stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        finally:
            self.process.kill()
            self.process.stdout.close()

    @property
    def requests(self):
        return [tuple(json.loads(line)) for line in self.log.read_text().splitlines()]


def _locust(*args, cwd, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _headless(app, out, users, seconds, *extra):
    return (
        "--headless",
        "--host",
        app.url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--csv",
        str(out / "locust"),
        "--json-file",
        str(out / "final"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        *extra,
    )


class Run:
    def __init__(self, app, out, process):
        self.app, self.out, self.process = app, out, process
        self.returncode = self.output = None

    def finish(self):
        try:
            self.output, _ = self.process.communicate(timeout=TIMEOUT)
        finally:
            self.process.kill()
        self.returncode = self.process.returncode

    def csv_stats(self):
        """locust_stats.csv: Locust rewrites it every second, so it may lag the end a little."""
        with (self.out / "locust_stats.csv").open(newline="") as handle:
            reader = csv.DictReader(handle)
            return reader.fieldnames, {row["Name"]: row for row in reader}

    def stats(self):
        """Final per-name totals, from --json-file (written once the run has ended)."""
        entries = json.loads((self.out / "final.json").read_text())
        return {e["name"]: e for e in entries}

    def queries(self, path):
        return Counter(tuple(sorted(q.items())) for p, q in self.app.requests if p == path)


def _finish(runs):
    for run in runs:
        run.finish()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every Locust run of this module, finished, keyed by name."""
    base = tmp_path_factory.mktemp("locust")
    names = ["all", "by_class", "broken", "distributed", "worker", "list", "bad"]
    out = {name: base / name for name in names}
    for path in out.values():
        path.mkdir()
    apps, result = {}, {}
    try:
        for name in ("all", "by_class", "broken", "distributed"):
            apps[name] = FakeApp(out[name], broken=name == "broken")

        def start(name, *args, env=None):
            result[name] = Run(apps.get(name), out[name], _locust(*args, cwd=out[name], env=env))
            return result[name]

        report_html = str(out["all"] / "locust_report.html")
        _finish(
            [
                start(
                    "all",
                    *_headless(
                        apps["all"], out["all"], 9, 3, "--reset-stats", "--html", report_html
                    ),
                    env={
                        "LOADTEST_DELAY": "0.05",
                        "LOADTEST_TASK_POLL": "0.05",
                        "LOADTEST_TASK_SECONDS": "0.2",
                    },
                ),
                # one user waiting on /sleep, and two runs without load: light enough to share
                start(
                    "by_class",
                    *_headless(apps["by_class"], out["by_class"], 1, 2, "SleepUser"),
                    env={"LOADTEST_DELAY": "0.02"},
                ),
                start("list", "--list"),
                start("bad", "--headless", "-t", "1s", "--loadtest-delay", "-1"),
            ]
        )
        _finish([start("broken", *_headless(apps["broken"], out["broken"], 9, 3))])
        port = _free_port()
        _finish(
            [
                start(
                    "distributed",
                    *_headless(
                        apps["distributed"],
                        out["distributed"],
                        2,
                        2,
                        "--master",
                        "--expect-workers",
                        "1",
                        "--master-bind-host",
                        "127.0.0.1",
                        "--master-bind-port",
                        str(port),
                        "--loadtest-queries",
                        "5",
                    ),
                    env={"LOCUST_USER_CLASSES": "QueriesUser"},
                ),
                # the worker gets no parameters of its own: the master forwards them
                start(
                    "worker",
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                    "--loglevel",
                    "WARNING",
                ),
            ]
        )
    finally:
        for run in result.values():
            run.process.kill()
        for app in apps.values():
            app.stop()
    return result


def test_every_endpoint_is_requested_checked_and_grouped(runs):
    run = runs["all"]
    assert run.returncode == 0, run.output
    stats = run.stats()
    # one entry per endpoint, named by path: no query strings, no task ids
    assert set(stats) == ALL_NAMES
    assert all(entry["num_requests"] > 0 for entry in stats.values()), stats
    assert sum(entry["num_failures"] for entry in stats.values()) == 0, run.output
    assert stats["/tasks"]["method"] == "POST"
    # parameters reach the app
    assert set(run.queries("/slow")) == {(("delay", "0.05"),)}
    assert set(run.queries("/sleep")) == {(("delay", "0.05"),)}
    assert set(run.queries("/queries")) == {(("n", "20"),)}
    assert set(run.queries("/tasks")) == {(("seconds", 0.2),)}
    # polls follow the absolute Location header's path on --host, not its own host
    assert any(path.startswith("/tasks/") for path, _ in run.app.requests)
    # the files the report reads are there, in Locust 2.47's format
    columns, csv_stats = run.csv_stats()
    assert columns == STATS_COLUMNS
    assert "Aggregated" in csv_stats
    with (run.out / "locust_stats_history.csv").open(newline="") as handle:
        history = list(csv.DictReader(handle))
    assert {"Timestamp", "User Count", "Name", "Total Request Count"} <= set(history[0])
    for name in ("locust_failures.csv", "locust_exceptions.csv", "locust_report.html"):
        assert (run.out / name).stat().st_size > 0, name


def test_a_class_named_on_the_command_line_selects_the_endpoint(runs):
    run = runs["by_class"]
    assert run.returncode == 0, run.output
    assert set(run.stats()) == {"/sleep"}
    assert set(run.queries("/sleep")) == {(("delay", "0.02"),)}
    assert {path for path, _ in run.app.requests} == {"/sleep"}


def test_bad_bodies_are_failures_with_groupable_messages(runs):
    run = runs["broken"]
    assert run.returncode == 1, run.output
    stats = run.stats()
    for name in ("/healthz", "/slow", "/sleep"):
        assert stats[name]["num_failures"] == 0, name
    for name in ("/json", "/db", "/queries", "/fortunes", "/render", "/tasks"):
        assert stats[name]["num_failures"] == stats[name]["num_requests"] > 0, name
    # messages carry no ids, so each endpoint's failures group into one line
    with (run.out / "locust_failures.csv").open(newline="") as handle:
        failures = list(csv.DictReader(handle))
    assert Counter(row["Name"] for row in failures) == Counter(
        ["/json", "/db", "/queries", "/fortunes", "/render", "/tasks"]
    )
    errors = {row["Name"]: row["Error"] for row in failures}
    assert "body is not a JSON row with an id" in errors["/db"]
    assert "body is not a JSON list of 20 rows" in errors["/queries"]
    assert "body is not a non-empty JSON object" in errors["/json"]
    assert "body is not HTML (Content-Type application/json)" in errors["/fortunes"]
    assert "empty body" in errors["/render"]
    assert "202 without a Location header" in errors["/tasks"]


def test_distributed_master_selects_by_env_and_forwards_parameters(runs):
    master, worker = runs["distributed"], runs["worker"]
    assert master.returncode == 0, master.output
    assert worker.returncode == 0, worker.output
    # LOCUST_USER_CLASSES chose the class; --loadtest-queries given to the master only
    assert set(master.stats()) == {"/queries"}
    assert set(master.queries("/queries")) == {(("n", "5"),)}


def test_one_user_class_per_endpoint_named_after_it(runs):
    assert runs["list"].returncode == 0, runs["list"].output
    listed = set(runs["list"].output.split())
    assert {f"{e.capitalize()}User" for e in ENDPOINTS} <= listed


def test_bad_parameter_is_refused_at_start(runs):
    assert runs["bad"].returncode == 2
    assert "must be >= 0" in runs["bad"].output
