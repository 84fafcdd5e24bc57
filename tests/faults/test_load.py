"""What the faults read of a load run: Locust's files of the cell (with the
report's readers), and whether a run that failed said why."""

from __future__ import annotations

import pytest

from flask_deploy_lab.ansible import read_events
from flask_deploy_lab.faults import FaultError, render
from flask_deploy_lab.faults.load import (
    CONTROLLER_SETTLE_S,
    FAULT_AT_S,
    LocustFailure,
    fault_moment,
    read_figures,
    read_request_history,
    read_totals,
    seen,
)
from flask_deploy_lab.faults.loadgen_stop import read_rebalance, says_why
from tests.faults.fabricated import HTTP_503, cell_files


def test_locust_failure_times_are_read():
    assert seen("2026-11-21T15:23:54Z") == pytest.approx(1795274634.0)
    assert seen("1795274634.5") == 1795274634.5
    assert seen("") is None


def test_a_cell_is_read_with_its_failures_by_status(tmp_path):
    cell = tmp_path / "pg-restart"
    cell_files(
        cell, requests=27232, failures=5430, rps=1089.27,
        failure_rows=[
            (HTTP_503, 5427, "2026-11-21T15:23:54Z", "1795274640"),
            ("CatchResponseError('body is not a JSON row')", 3, "", ""),
        ],
    )  # fmt: skip
    found = read_figures(cell)
    assert found.totals() == {"requests": 27232, "failures": 5430, "rps": 1089.3}
    assert found.errors == (
        LocustFailure(503, HTTP_503, 5427, pytest.approx(1795274634.0), 1795274640.0),
        LocustFailure(0, "CatchResponseError('body is not a JSON row')", 3, None, None),
    )
    assert found.failed_share == pytest.approx(5430 / 27232)
    assert render.by_status(found.errors) == '"body is not a JSON row" x3, 503 x5427'


def test_a_run_without_its_files_cannot_be_judged(tmp_path):
    with pytest.raises(FaultError, match=r"the run left no locust_stats\.csv"):
        read_totals(tmp_path)
    cell_files(tmp_path)
    (tmp_path / "locust_failures.csv").unlink()
    with pytest.raises(FaultError, match=r"the run left no locust_failures\.csv"):
        read_figures(tmp_path)


def test_a_worker_lost_mid_run_is_described_from_the_master_log(tmp_path):
    cell = tmp_path / "loadgen-stop"
    rows = [(100, 20, 0), (103, 20, 300), (106, 20, 900), (107, 20, 100), (110, 20, 700)]
    cell_files(cell, history=[*rows, (125, 0, 2580)])
    (cell / "locust.log").write_text(
        "[..] Sending spawn jobs of 20 users at 20.00 spawn rate to 2 ready workers\n"
        "[..] Resetting stats\n"
        "[..] Sending spawn jobs of 20 users at 20.00 spawn rate to 1 ready workers\n"
        "[..] Resetting stats\n"
        "[..] Worker 'loadgen2_87546e32' (index 1) quit. 0 workers ready.\n"
        "[..] --run-time limit reached, shutting down\n"
        "[..] Worker 'loadgen1_23cc5edf' (index 0) quit. 0 workers ready.\n"
    )
    (cell / "cell.json").write_text('{"workers_lost": ["loadgen2_87546e32"]}')
    rebalance = read_rebalance(cell, "loadgen2")
    text, figures = render.rebalance_words(rebalance, "loadgen2", 25)
    assert text.startswith(
        "2580 requests, 0 failed; Locust sent all 20 users to the 1 worker(s) left"
    )
    assert "cover only the last 18 of 25 s; cell.json names the lost worker" in text
    assert figures["flagged_in_cell"] is True
    assert figures["worker_quit_logged"] is True
    assert figures["stats_reset_at"] == [107.0]
    assert (figures["respawns"], figures["stats_cover_s"]) == (1, 18)
    # the worker that quit after the run time is the normal end of a run
    assert not read_rebalance(cell, "loadgen1").worker_quit_logged

    (cell / "cell.json").write_text('{"workers_lost": []}')
    text, _ = render.rebalance_words(read_rebalance(cell, "loadgen2"), "loadgen2", 25)
    assert "NOT flagged in cell.json" in text


def test_the_request_history_keeps_the_aggregated_rows(tmp_path):
    cell_files(tmp_path, history=[(100, 20, 0), (103, 20, 300)])
    assert read_request_history(tmp_path) == [(100.0, 20, 0), (103.0, 20, 300)]


def events(*lines):
    return [line.replace("'", '"') for line in lines]


@pytest.mark.parametrize(
    ("lines", "returncode", "stderr", "clear", "reason"),
    [
        (
            events(
                "{'_event': 'v2_runner_on_failed', 'task': {'name': 'Check'}, "
                "'hosts': {'localhost': {'msg': 'users=0 is not valid'}}}"
            ),
            2, "", True, "users=0 is not valid",
        ),
        (
            events(
                "{'_event': 'v2_runner_on_unreachable', 'task': {'name': 'Stop'}, "
                "'hosts': {'loadgen2': {'msg': 'host loadgen2 became unreachable'}}}"
            ),
            4, "", True, "host loadgen2 became unreachable",
        ),
        ([], 1, "[ERROR]: the playbook could not be parsed\n", True,
         "ansible-playbook exited 1: [ERROR]: the playbook could not be parsed"),
        ([], -9, "\nansible-playbook was stopped after 445 s", True,
         "ansible-playbook exited -9: ansible-playbook was stopped after 445 s"),
        ([], 2, "", False, "ansible-playbook exited 2: no message"),
        ([], 0, "", True, ""),
    ],
    ids=["a task failed", "unreachable", "an error", "stopped", "nothing said", "finished"],
)  # fmt: skip
def test_a_failed_run_says_why_unless_only_its_status_is_known(
    lines, returncode, stderr, clear, reason
):
    result = read_events(lines, returncode=returncode, stderr=stderr)
    assert says_why(result) is clear
    assert result.reason == reason


def test_a_fault_waits_for_its_own_launch_to_settle_before_its_baseline(monkeypatch):
    monkeypatch.setattr("flask_deploy_lab.faults.load.time.time", lambda: 1000.0)
    # launched 2 s into the run: the 5 s before the fault begin once the runs settled
    assert fault_moment(998.0, 5) == 1000.0 + CONTROLLER_SETTLE_S + 5
    # launched well before the run (t0 still to come): FAULT_AT_S into the run
    assert fault_moment(1005.0, 5) == 1005.0 + FAULT_AT_S
