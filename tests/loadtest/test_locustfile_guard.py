"""The locustfile's two safety rails, on real single-process Locust runs
against the fake app: a test against a host the run does not allow sends
nothing, and a test stops by itself at --loadtest-max-run-time whatever run
time it was given. Every run ends by itself (-t), with a subprocess timeout
behind it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loadtest.test_loadtest_locustfile import LOCUSTFILE, FakeApp

TIMEOUT = 60


def run(app, out, seconds, env):
    """A headless SlowUser run of 2 users for `seconds`: (exit code, output, request log rows)."""
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "SlowUser",
        "--headless", "--host", app.url, "-u", "2", "-r", "2", "-t", f"{seconds}s",
        "--csv", str(out / "locust"), "--only-summary", "--loglevel", "INFO",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=out,
        env={**os.environ, "LOADTEST_DELAY": "0.02", **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    with open(out / "locust_requests.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["response_time_ms"]]
    return done.returncode, done.stdout + done.stderr, rows


@pytest.fixture
def app(tmp_path):
    fake = FakeApp(tmp_path)
    yield fake
    fake.stop()


def test_a_host_that_is_not_allowed_gets_no_request(app, tmp_path: Path):
    _, output, rows = run(app, tmp_path, 2, {"LOADTEST_ALLOWED_HOSTS": "proxy1, 192.0.2.10"})
    assert app.requests == []
    assert rows == []
    assert "is not one of 192.0.2.10, proxy1: the test is stopped" in output


def test_an_allowed_host_is_loaded(app, tmp_path: Path):
    # the fake app's host is 127.0.0.1; names compare without case
    code, output, rows = run(app, tmp_path, 2, {"LOADTEST_ALLOWED_HOSTS": "PROXY1,127.0.0.1"})
    assert code == 0, output
    assert len(rows) > 10
    # the app also saw the requests in flight at the stop, at most one a user
    assert len(rows) <= len(app.requests) <= len(rows) + 2


def test_a_test_stops_at_its_limit_whatever_its_run_time(app, tmp_path: Path):
    code, output, rows = run(app, tmp_path, 5, {"LOADTEST_MAX_RUN_TIME": "1"})
    assert code == 0, output
    assert "the test ran for its limit of 1 s: stopped" in output
    starts = sorted(float(r["start"]) for r in rows)
    assert len(starts) > 10
    # 1 s of load (and a request in flight at the stop), not the 5 s asked
    assert starts[-1] - starts[0] < 1.5
