"""The locust role's locustctl: what it reads from the master's log, and what its stop keeps."""

from __future__ import annotations

import tarfile
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


def _config(tmp_path, master="locust-master.service"):
    run_dir = tmp_path / "last-run"
    run_dir.mkdir()
    (run_dir / "locust_stats.csv").write_text("Type,Name\n")
    return {
        "user": "locust",
        "target": "locust.target",
        "master_unit": master,
        "worker_units": ["locust-worker@1.service"],
        "master_env": str(tmp_path / "master.env"),
        "run_dir": str(run_dir),
        "archive": str(tmp_path / "last-run.tar.gz"),
    }


def _fake_units(monkeypatch, locustctl, active):
    calls = []
    monkeypatch.setattr(locustctl, "is_active", lambda unit: unit in active)
    monkeypatch.setattr(locustctl, "systemctl", lambda *args, check=True: calls.append(args))
    monkeypatch.setattr(locustctl, "processes", lambda user: [])
    return calls


def test_stopping_a_running_master_keeps_its_files(locustctl, tmp_path, monkeypatch):
    # the web UI's master writes its statistics as it quits; stop archives them
    config = _config(tmp_path)
    calls = _fake_units(monkeypatch, locustctl, {"locust-master.service"})
    result = locustctl.stop(config)
    assert result["stopped"] == ["locust-master.service"]
    assert result["archive"] == config["archive"]
    with tarfile.open(result["archive"]) as tar:
        assert tar.getnames() == ["locust_stats.csv"]
    assert ("stop", "locust.target", *locustctl.ANY_UNIT) in calls


def test_stopping_nothing_or_only_workers_archives_nothing(locustctl, tmp_path, monkeypatch):
    config = _config(tmp_path)
    (tmp_path / "last-run.tar.gz").write_text("an earlier run's")
    _fake_units(monkeypatch, locustctl, {"locust-worker@1.service"})
    result = locustctl.stop(config)
    assert result["archive"] is None
    # a worker host has no master: nothing to archive either
    _fake_units(monkeypatch, locustctl, set())
    assert locustctl.stop({**config, "master_unit": ""})["archive"] is None
