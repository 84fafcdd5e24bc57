"""locustfile.py under real Locust, headless, against a stand-in app on 127.0.0.1.

Every run stops by itself (-t, and a subprocess timeout behind it), but one
whose master is stopped by SIGTERM a few seconds into its load. Runs that
drive load go one at a time, so none starves another of CPU and the assertions
hold on a slow CI machine (the light ones, a user or two waiting on a delay,
share a batch); the whole module takes about thirty seconds.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

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
REQUEST_LOG_HEADER = [
    "start", "response_time_ms", "failed", "name", "stopped_at", "status", "content_length",
    "body_bytes", "retry_after", "error",
]  # fmt: skip
# a request of the stuck runs: far longer than they run
STUCK_DELAY_S = 30
# the users of the run whose first requests spread over a delay of 1 s
SPREAD_USERS = 20
# the request log writes the start in whole microseconds and the response time in
# thousandths of a millisecond: half a unit either way
START_ROUNDING_S = 0.5e-6
RESPONSE_TIME_ROUNDING_MS = 0.5e-3


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
    def __init__(self, app, out, process, started):
        self.app, self.out, self.process = app, out, process
        # Unix time before the process started, and once it had exited
        self.started, self.ended = started, None
        self.returncode = self.output = None

    def finish(self):
        try:
            self.output, _ = self.process.communicate(timeout=TIMEOUT)
        finally:
            self.process.kill()
        self.ended = time.time()
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

    def request_log(self):
        """(header, rows) of locust_requests.csv, each row (start s, response time ms,
        failed, name) of a completed request; the in-flight rows: `in_flight()`."""
        header, completed, _ = self._request_log()
        return header, completed

    def in_flight(self):
        """(start s, stopped_at s, name) of each request in flight at the stop."""
        return self._request_log()[2]

    def latency_log(self):
        """[(start s, length s, histogram)] of each interval of locust_latency.hlog,
        read by hdrh's own reader."""
        reader = HistogramLogReader(
            str(self.out / "locust_latency.hlog"), HdrHistogram(1, 3_600_000_000, 3)
        )
        intervals = []
        while (histogram := reader.get_next_interval_histogram(absolute=True)) is not None:
            start = histogram.get_start_time_stamp() / 1000
            intervals.append((start, histogram.get_end_time_stamp() / 1000 - start, histogram))
        reader.close()
        return intervals

    def _request_log(self):
        completed, in_flight = [], []
        with (self.out / "locust_requests.csv").open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            for start, response_time, failed, name, stopped_at, *_answer in reader:
                if stopped_at:
                    # strictly: no response time, no failed flag
                    assert (response_time, failed) == ("", ""), (response_time, failed)
                    in_flight.append((float(start), float(stopped_at), name))
                else:
                    assert not in_flight, "a completed request after the in-flight ones"
                    failed = {"0": False, "1": True}[failed]
                    completed.append((float(start), float(response_time), failed, name))
        return header, completed, in_flight


def _wait_for_load(app, seconds):
    """Return `seconds` after the app got its first request (None if it got none in time)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if app.log.is_file() and app.log.stat().st_size > 0:
            time.sleep(seconds)
            return
        time.sleep(0.1)


def _finish(runs):
    for run in runs:
        run.finish()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every Locust run of this module, finished, keyed by name."""
    base = tmp_path_factory.mktemp("locust")
    names = [
        "all", "by_class", "capped", "broken", "distributed", "worker", "signalled",
        "signalled_worker", "list", "bad", "stuck", "stuck_worker", "stuck_single", "spread",
    ]  # fmt: skip
    out = {name: base / name for name in names}
    for path in out.values():
        path.mkdir()
    apps, result = {}, {}
    try:
        for name in (
            "all", "by_class", "capped", "broken", "distributed", "signalled", "stuck",
            "stuck_single", "spread",
        ):  # fmt: skip
            apps[name] = FakeApp(out[name], broken=name == "broken")

        def start(name, *args, env=None):
            started = time.time()
            process = _locust(*args, cwd=out[name], env=env)
            result[name] = Run(apps.get(name), out[name], process, started)
            return result[name]

        # a request log left from an earlier run, which the capped run must not leave behind
        (out["capped"] / "locust_requests.csv").write_text("start,response_time_ms,failed,name\n")

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
                        "LOADTEST_TASK_N": "3",
                    },
                ),
                # one user waiting on /sleep, and two runs without load: light enough to share
                start(
                    "by_class",
                    *_headless(apps["by_class"], out["by_class"], 1, 2, "SleepUser"),
                    env={"LOADTEST_DELAY": "0.02"},
                ),
                # the request log allowed 5 requests: it makes more, so it writes none
                start(
                    "capped",
                    *_headless(apps["capped"], out["capped"], 1, 4, "SleepUser"),
                    env={"LOADTEST_DELAY": "0.02", "LOADTEST_REQUEST_LOG_CAP": "5"},
                ),
                # users waiting 1 s each: their first requests spread over one delay
                start(
                    "spread",
                    *_headless(apps["spread"], out["spread"], SPREAD_USERS, 3, "SlowUser"),
                    env={"LOADTEST_DELAY": "1"},
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
        # master and worker again, the master stopped by SIGTERM (as `locustctl stop`
        # does) after 3.5 s of load: past the worker's first periodic report
        port = _free_port()
        signalled = [
            start(
                "signalled",
                *_headless(
                    apps["signalled"],
                    out["signalled"],
                    3,
                    TIMEOUT // 2,
                    "--master",
                    "--expect-workers",
                    "1",
                    "--master-bind-host",
                    "127.0.0.1",
                    "--master-bind-port",
                    str(port),
                    "SlowUser",
                ),
                env={"LOADTEST_DELAY": "0.05"},
            ),
            start(
                "signalled_worker",
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--loglevel",
                "WARNING",
            ),
        ]
        _wait_for_load(apps["signalled"], 3.5)
        signalled[0].process.send_signal(signal.SIGTERM)
        _finish(signalled)
        # every request waits far longer than the run: all of them in flight at the
        # stop, a master and its worker beside a single process (no load: together)
        port = _free_port()
        # in step: each user's first request at once, not after a share of 30 s
        stuck = {"LOADTEST_DELAY": str(STUCK_DELAY_S), "LOADTEST_IN_STEP": "true"}
        _finish(
            [
                start(
                    "stuck",
                    *_headless(
                        apps["stuck"],
                        out["stuck"],
                        3,
                        2,
                        "--master",
                        "--expect-workers",
                        "1",
                        "--master-bind-host",
                        "127.0.0.1",
                        "--master-bind-port",
                        str(port),
                        "SlowUser",
                    ),
                    env=stuck,
                ),
                start(
                    "stuck_worker",
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                    "--loglevel",
                    "WARNING",
                ),
                start(
                    "stuck_single",
                    *_headless(apps["stuck_single"], out["stuck_single"], 2, 2, "SlowUser"),
                    env=stuck,
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
    assert set(run.queries("/tasks")) == {(("kind", "render"), ("n", 3))}
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


# --------------------------------------------------------------------------- the request log
# How its count relates to Locust's: both see the same requests. The log takes
# each request from Locust's request event, as Locust's statistics do, and a
# worker hands both to the master in the same report. Neither counts the
# requests in flight when the users were stopped (Locust kills them uncounted):
# the log lists them apart, as in-flight rows. So, without --reset-stats, the
# log's completed requests are exactly those of Locust's final statistics
# (--json-file, written once the run has ended).
# locust_stats.csv holds the same counts as they stood at its last rewrite:
# Locust rewrites it every second and not at the end, so it may lag, never lead.


def _by_name(rows):
    named = {}
    for row in rows:
        named.setdefault(row[3], []).append(row)
    return named


def _answers(run):
    """The completed rows of the run's request log, as dicts."""
    with (run.out / "locust_requests.csv").open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if not row["stopped_at"]]


def test_each_request_is_logged_with_what_it_was_answered(runs):
    rows = _answers(runs["all"])
    assert rows
    for row in rows:
        # the fake app answers every request whole, with its length, and no failure
        # (202: POST /tasks, and polls of a task still running)
        assert row["status"] == "200" or (row["status"] == "202" and "/tasks" in row["name"])
        assert row["content_length"] == row["body_bytes"] != "0", row
        assert (row["failed"], row["error"], row["retry_after"]) == ("0", "", ""), row
    broken = _answers(runs["broken"])
    failed = [row for row in broken if row["failed"] == "1"]
    assert failed
    # a complete 200 whose body the check refused: the status and length say nothing,
    # the error says why
    assert all(row["error"] for row in failed)
    assert any(
        row["status"] == "200" and row["content_length"] == row["body_bytes"]
        and row["error"] == "body is not a JSON row with an id"
        for row in failed
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "users", "returncode"),
    [
        # single processes
        ("by_class", 1, 0),
        ("broken", None, 1),
        # a master and a worker: the run time reached, and the master stopped by SIGTERM
        ("distributed", 2, 0),
        ("signalled", 3, 0),
    ],
)
def test_the_request_log_holds_each_request_locust_counted(runs, name, users, returncode):
    run = runs[name]
    assert run.returncode == returncode, run.output
    header, rows = run.request_log()
    assert header == REQUEST_LOG_HEADER
    assert rows
    stats = run.stats()
    logged = _by_name(rows)
    assert set(logged) == set(stats)
    for request_name, entry in stats.items():
        times = [response_time for _, response_time, _, _ in logged[request_name]]
        failures = sum(1 for _, _, failed, _ in logged[request_name] if failed)
        assert len(times) == entry["num_requests"], request_name
        assert failures == entry["num_failures"], request_name
        # the response times are Locust's own, to the log's three decimals
        assert sum(times) == pytest.approx(
            entry["total_response_time"], abs=len(times) * RESPONSE_TIME_ROUNDING_MS
        )
        assert min(times) == pytest.approx(entry["min_response_time"], abs=1e-3)
        assert max(times) == pytest.approx(entry["max_response_time"], abs=1e-3)
    _, csv_stats = run.csv_stats()
    assert int(csv_stats["Aggregated"]["Request Count"]) <= len(rows)
    # every request started and completed while Locust ran, and the rows come in the
    # order the requests completed (to the rounding of the two times)
    completions = [start + response_time / 1000 for start, response_time, _, _ in rows]
    assert run.started <= min(start for start, *_ in rows)
    assert max(completions) <= run.ended
    assert all(a <= b + 4 * START_ROUNDING_S for a, b in itertools.pairwise(completions))
    # the requests in flight at the stop: at most one per user, each begun while
    # Locust ran and stopped no earlier than it began
    in_flight = run.in_flight()
    for start, stopped_at, request_name in in_flight:
        assert run.started <= start <= stopped_at + START_ROUNDING_S <= run.ended
        assert request_name in ALL_NAMES
    if users:
        assert len(in_flight) <= users
        # the app got each logged request, and at most the requests in flight
        # besides (one may have been stopped before it reached the app)
        (path,) = stats
        received = sum(1 for p, _ in run.app.requests if p == path)
        assert len(rows) <= received <= len(rows) + len(in_flight)


@pytest.mark.parametrize(("name", "users"), [("stuck_single", 2), ("stuck", 3)])
def test_requests_in_flight_at_the_stop_are_logged_with_their_age(runs, name, users):
    """Every request takes 30 s and the run 2: none completes, each user's first is
    in flight when Locust stops it, and the log says how long it had waited."""
    run = runs[name]
    assert run.returncode == 0, run.output
    header, completed = run.request_log()
    assert header == REQUEST_LOG_HEADER
    assert completed == []
    in_flight = run.in_flight()
    assert len(in_flight) == users
    assert {request_name for *_, request_name in in_flight} == {"/slow"}
    # oldest first
    assert [start for start, *_ in in_flight] == sorted(start for start, *_ in in_flight)
    for start, stopped_at, _ in in_flight:
        # begun once the users were spawned, stopped at the end of the 2 s run time
        assert run.started <= start < stopped_at <= run.ended
        assert 0.5 < stopped_at - start < 2 + TIMEOUT / 10
    # Locust counted none of them
    assert sum(entry["num_requests"] for entry in run.stats().values()) == 0
    assert len(run.app.requests) == users
    # in step (LOADTEST_IN_STEP): the users started together sent theirs together
    starts = [start for start, *_ in in_flight]
    assert max(starts) - min(starts) < 0.5


def test_users_of_a_delay_send_their_first_requests_out_of_step(runs):
    """20 users of /slow?delay=1, started at once: each sends its first request after
    a random share of the delay, so the first requests spread over about a second
    (all within 50 ms of one another in step; 20 draws over 1 s span less than 0.5 s
    once in about 25,000 runs)."""
    run = runs["spread"]
    assert run.returncode == 0, run.output
    _, completed = run.request_log()
    starts = sorted([start for start, *_ in completed] + [s for s, _, _ in run.in_flight()])
    # each user's second request starts a delay after its first, so the first
    # requests are those that start within a delay of the earliest
    first = [start for start in starts if start < starts[0] + 1]
    assert len(first) == SPREAD_USERS
    assert 0.5 < first[-1] - first[0] < 1


def test_the_signalled_run_sent_its_requests_in_more_than_one_report(runs):
    """The worker reports every 3 s: a log spanning more than that came to the master
    in periodic reports and the final one, and (above) none of them was missed."""
    assert runs["signalled_worker"].returncode == 0, runs["signalled_worker"].output
    _, rows = runs["signalled"].request_log()
    completions = [start + response_time / 1000 for start, response_time, _, _ in rows]
    assert max(completions) - min(completions) > 3


def test_with_reset_stats_the_request_log_keeps_every_request(runs):
    """--reset-stats clears Locust's statistics once every user is running; the
    log keeps what completed before that, so it never holds fewer requests of a
    name than Locust counts. (In this run every user starts at once, so the
    reset comes before all but a few requests, if any, have completed; with a
    slower spawn rate the log alone keeps the ramp-up's requests.)"""
    run = runs["all"]
    header, rows = run.request_log()
    assert header == REQUEST_LOG_HEADER
    stats = run.stats()
    logged = Counter(name for *_, name in rows)
    assert set(logged) == set(stats)
    assert all(logged[name] >= entry["num_requests"] for name, entry in stats.items())
    assert run.started <= min(start for start, *_ in rows)


def test_a_request_log_over_its_cap_is_written_not_at_all(runs):
    run = runs["capped"]
    assert run.returncode == 0, run.output
    assert run.stats()["/sleep"]["num_requests"] > 5
    # not even the earlier run's file: no partial or stale log passes for this run's
    assert not (run.out / "locust_requests.csv").exists()
    assert "more than 5 requests: the request log is abandoned" in run.output
    assert "the request log went over its cap" in run.output
    assert "locust_requests.csv not written" in run.output


# --------------------------------------------------------------------------- the latency log
# locust_latency.hlog holds the same requests as the request log, one histogram
# per second of completion: the worker records both from the request event and
# sends both in the same report. Unlike the request log it has no cap.


@pytest.mark.parametrize("name", ["by_class", "broken", "distributed", "signalled", "all"])
def test_the_latency_log_holds_each_request_of_the_request_log_by_second(runs, name):
    run = runs[name]
    _, rows = run.request_log()
    intervals = run.latency_log()
    assert intervals
    # whole Unix seconds, in order, each once
    starts = [start for start, _, _ in intervals]
    assert starts == sorted(set(starts))
    assert all(start == int(start) and length == 1 for start, length, _ in intervals)
    assert sum(histogram.get_total_count() for _, _, histogram in intervals) == len(rows)
    # each second holds the requests that completed in it, and their slowest (to the
    # histogram's 0.1 %, and the microsecond each file rounds to)
    by_second = {}
    for start, response_time, _, _ in rows:
        by_second.setdefault(int(start + response_time / 1000), []).append(response_time)
    completions = [start + response_time / 1000 for start, response_time, _, _ in rows]
    if not any(abs(c - round(c)) < 2e-6 for c in completions):  # none on a boundary
        counts = {int(start): h.get_total_count() for start, _, h in intervals}
        assert counts == {second: len(times) for second, times in by_second.items()}
        for start, _, histogram in intervals:
            slowest_us = round(max(by_second[int(start)]) * 1000)
            assert slowest_us - 1 <= histogram.get_max_value() <= (slowest_us + 1) * 1.001
    # every interval started while Locust ran
    assert run.started - 1 <= starts[0] and starts[-1] <= run.ended


def test_the_latency_log_is_kept_past_the_request_logs_cap(runs):
    run = runs["capped"]
    assert not (run.out / "locust_requests.csv").exists()
    intervals = run.latency_log()
    counted = run.stats()["/sleep"]["num_requests"]
    assert counted > 5
    assert sum(histogram.get_total_count() for _, _, histogram in intervals) == counted


@pytest.mark.parametrize("name", ["stuck", "stuck_single"])
def test_a_run_that_completed_no_request_writes_a_latency_log_without_intervals(runs, name):
    run = runs[name]
    assert run.latency_log() == []
    assert "StartTimestamp" in (run.out / "locust_latency.hlog").read_text()


# RequestLog itself, in a process of its own (importing Locust patches the process)
REQUEST_LOG_SCRIPT = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("locustfile", sys.argv[1])
lf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lf)
out = sys.argv[2]
result = {}

# two workers' reports, each with its own table of names, merged and sorted
first, second, master = lf.RequestLog(cap=5), lf.RequestLog(cap=5), lf.RequestLog(cap=5)
class Answer:
    def __init__(self, status, headers):
        self.status_code, self.headers = status, headers

ok = Answer(200, {"Content-Length": "12"})
first.on_request(name="/a", response_time=500.0, start_time=100.0, response=ok,
                 response_length=12)  # completes 100.5
first.on_request(name="/b", response_time=100.0, start_time=100.1,
                 exception=ValueError("HTTP 503, expected 200"),
                 response=Answer(503, {"Retry-After": "2", "Content-Length": "40"}),
                 response_length=40)
# a 200 cut short: fewer bytes than its Content-Length, no response for a transport error
second.on_request(name="/b", response_time=300.0, start_time=100.05, response=ok,
                  response_length=5)  # completes 100.35
# and in flight when each stopped its test
first.add_unfinished([(100.2, "/a")], 101.0)
second.add_unfinished([(99.5, "/b"), (100.6, "/b")], 101.25)
master.merge(first.take())
master.merge(second.take())
master.merge(None)
result["emptied"] = len(first) + len(second) + len(first.unfinished) + len(second.unfinished)
master.write(os.path.join(out, "merged.csv"))

# a report of a worker that lists none (an older locustfile's) merges as before
older = lf.RequestLog(cap=5)
older.on_request(name="/a", response_time=1.0, start_time=1.0)
message = older.take()
for key in ("unfinished", "status", "content_length", "body_bytes", "retry_after", "error",
            "texts"):
    del message[key]
master = lf.RequestLog(cap=5)
master.merge(message)
result["older_report"] = [len(master), master.unfinished]

# a worker over its cap abandons the master's log too, which writes no file
worker, master = lf.RequestLog(cap=1), lf.RequestLog(cap=5)
master.on_request(name="/a", response_time=1.0, start_time=1.0)
for start in (2.0, 3.0, 4.0):
    worker.on_request(name="/a", response_time=1.0, start_time=start)
worker.add_unfinished([(4.5, "/a")], 5.0)
master.merge(worker.take())
result["overflow_unfinished"] = master.unfinished
stale = os.path.join(out, "stale.csv")
open(stale, "w").close()
master.write(stale)
result["worker_overflow"] = [master.overflowed, master.seen, os.path.exists(stale)]

# so does the master's own cap
worker, master = lf.RequestLog(cap=5), lf.RequestLog(cap=2)
for start in (1.0, 2.0, 3.0):
    worker.on_request(name="/a", response_time=1.0, start_time=start)
master.merge(worker.take())
result["master_overflow"] = [master.overflowed, master.seen, len(master)]
print(json.dumps(result))
"""


def test_the_request_log_merges_reports_sorts_and_gives_up_past_its_cap(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", REQUEST_LOG_SCRIPT, str(LOCUSTFILE), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["emptied"] == 0
    assert (tmp_path / "merged.csv").read_text().splitlines() == [
        "start,response_time_ms,failed,name,stopped_at,status,content_length,body_bytes,"
        "retry_after,error",
        '100.100000,100.000,1,/b,,503,40,40,2,"HTTP 503, expected 200"',
        "100.050000,300.000,0,/b,,200,12,5,,",
        "100.000000,500.000,0,/a,,200,12,12,,",
        # the requests in flight at the stops, oldest first, each with its stop
        "99.500000,,,/b,101.250000,,,,,",
        "100.200000,,,/a,101.000000,,,,,",
        "100.600000,,,/b,101.250000,,,,,",
    ]
    assert result["older_report"] == [1, []]
    # an abandoned log keeps no in-flight rows either
    assert result["overflow_unfinished"] == []
    assert not (tmp_path / "merged.csv.partial").exists()
    # 1 of its own and 3 of the worker's
    assert result["worker_overflow"] == [True, 4, False]
    assert result["master_overflow"] == [True, 3, 0]
    assert "more than 1 requests: the request log is abandoned" in done.stderr
    assert "went over its cap (4 requests seen, a process keeps at most 5)" in done.stderr


# InFlight, in a process of its own: a tracked request is noted while it runs,
# forgotten when it returns or raises, and kept when its greenlet is killed, as
# Locust kills its users at the stop
IN_FLIGHT_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("locustfile", sys.argv[1])
lf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lf)
import gevent

in_flight = lf.InFlight()
seen = []

def request(method, url, name=None, **kwargs):
    seen.append((method, url, name, kwargs, len(in_flight)))
    if url == "/error":
        raise ValueError("a failure below HTTP")
    if url.startswith("/slow"):
        gevent.sleep(30)
    return "answer"

tracked = in_flight.tracking(request)
result = {"answer": tracked("GET", "/ok", name="/ok", catch_response=True)}
result["after_answer"] = len(in_flight)
try:
    tracked("GET", "/error", name="/error")
except ValueError:
    result["after_error"] = len(in_flight)
stuck = [gevent.spawn(tracked, "GET", "/slow?delay=30", name="/slow"),
         gevent.spawn(tracked, "GET", "/slow?delay=31")]
gevent.sleep(0.1)
result["while_waiting"] = len(in_flight)
gevent.killall(stuck, block=True)
result["after_kill"] = len(in_flight)
taken = in_flight.take()
result["taken"] = [name for _, name in taken]
result["ordered"] = [start for start, _ in taken] == sorted(start for start, _ in taken)
result["after_take"] = len(in_flight)
# each call reached the request with its arguments, counted in flight while it ran
result["seen"] = [[m, u, n, k, c] for m, u, n, k, c in seen]
print(json.dumps(result))
"""


def test_requests_in_flight_are_noted_until_they_return_and_kept_when_killed():
    done = subprocess.run(
        [sys.executable, "-c", IN_FLIGHT_SCRIPT, str(LOCUSTFILE)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["answer"] == "answer"
    assert result["after_answer"] == result["after_error"] == 0
    assert result["while_waiting"] == result["after_kill"] == 2
    # named by Locust's name, else by the URL
    assert result["taken"] == ["/slow", "/slow?delay=31"]
    assert result["ordered"] is True
    assert result["after_take"] == 0
    assert result["seen"] == [
        ["GET", "/ok", "/ok", {"catch_response": True}, 1],
        ["GET", "/error", "/error", {}, 1],
        ["GET", "/slow?delay=30", "/slow", {}, 1],
        ["GET", "/slow?delay=31", None, {}, 2],
    ]


# _option without Locust's parse (its environment variable), in a process of its own
OPTION_SCRIPT = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("locustfile", sys.argv[1])
lf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lf)
class Environment:
    parsed_options = None
found = {}
for raw in ("true", "1", "yes", "false", "0", "", None):
    if raw is None:
        os.environ.pop("LOADTEST_IN_STEP", None)
    else:
        os.environ["LOADTEST_IN_STEP"] = raw
    found[str(raw)] = lf._option(Environment, "loadtest_in_step")
os.environ["LOADTEST_DELAY"] = "0.5"
found["delay"] = lf._option(Environment, "loadtest_delay")
print(json.dumps(found))
"""


def test_an_option_locust_did_not_parse_comes_from_its_environment_variable():
    # a flag's "false" is false (bool("false") would be true), a number a number
    out = subprocess.run(
        [sys.executable, "-c", OPTION_SCRIPT, str(LOCUSTFILE)],
        capture_output=True, text=True, check=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert json.loads(out.stdout.splitlines()[-1]) == {
        "true": True, "1": True, "yes": True, "false": False, "0": False, "": False,
        "None": False, "delay": 0.5,
    }  # fmt: skip
