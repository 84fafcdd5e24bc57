"""The locust role's locustctl: what it reads from the master's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

MASTER_LOGS = Path(__file__).resolve().parent / "fixtures" / "master-logs"


@pytest.fixture(scope="module")
def locustctl():
    return load_script("roles/locust/files/locustctl.py", "locust_role_locustctl")


def test_workers_quitting_at_the_end_of_the_run_are_not_lost(locustctl):
    log = (MASTER_LOGS / "normal.log").read_text()
    assert "quit" in log
    assert locustctl.lost_workers(log) == []


def test_a_worker_that_quit_mid_run_is_named(locustctl):
    # loadgen2 was stopped 11 s into a 25 s run (Locust 2.47's own log)
    log = (MASTER_LOGS / "worker-lost.log").read_text()
    assert locustctl.lost_workers(log) == ["loadgen2_ff78e0f92390412e86a94a99680f2d4a"]


def test_a_worker_that_stopped_sending_heartbeats_is_named_once(locustctl):
    log = "\n".join(
        [
            "[t] master/INFO/locust.main: Run time limit set to 20 seconds",
            "[t] master/INFO/locust.runners: "
            "Worker lg2_abc failed to send heartbeat, setting state to missing.",
            "[t] master/INFO/locust.runners: Worker 'lg2_abc' (index 1) quit. 1 workers ready.",
            "[t] master/INFO/locust.main: --run-time limit reached, shutting down",
            "[t] master/INFO/locust.runners: Worker 'lg1_def' (index 0) quit. 0 workers ready.",
        ]
    )
    assert locustctl.lost_workers(log) == ["lg2_abc"]
