"""scripts/faults.py without a lab: its arguments, how it reads Ansible's and Locust's output."""

from __future__ import annotations

import pytest

HISTORY_HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
    "99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
    "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
    "Total Average Content Size"
)
STATS = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,"
    "75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
    ",Aggregated,2580,0,110,110,101,440,28,180.0,0.0,110,110,110,110,120,120,140,140,430,440,440\n"
)


def test_faults_are_chosen_by_name_or_number_in_their_order(faults):
    args = faults.parse_args(["--only", "6", "kill-worker,2", "6"])
    assert args.faults == ["kill-worker", "pg-restart", "loadgen-stop"]
    assert faults.parse_args([]).faults == faults.FAULTS


def test_an_unknown_fault_is_refused_with_the_valid_names(faults, capsys):
    with pytest.raises(SystemExit):
        faults.parse_args(["--only", "bogus"])
    assert "valid: kill-worker, pg-restart" in capsys.readouterr().err


def test_ansible_arguments_come_from_the_environment_and_after_the_double_dash(faults, monkeypatch):
    monkeypatch.setenv("FAULTS_ANSIBLE_ARGS", "-e lab_name_prefix=fdl-x- -e 'a=b c'")
    monkeypatch.setenv("FAULTS", "3")
    args = faults.parse_args(["--no-converge", "--", "-e", "lab_network=fdl-x"])
    assert args.passthrough == [
        "-e",
        "lab_name_prefix=fdl-x-",
        "-e",
        "a=b c",
        "-e",
        "lab_network=fdl-x",
    ]
    assert args.faults == ["pool-exhaustion"]
    assert args.no_converge
    assert args.run_id.startswith("faults-")


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            "TASK [x]\n[ERROR]: Task failed: Action failed: users=0 is not valid\nfailed: [a]",
            "users=0 is not valid",
        ),
        ("fatal: [loadgen2]: UNREACHABLE! => changed=false\n", "host loadgen2 became unreachable"),
        (
            "fatal: [app1]: FAILED! =>\n    changed: false\n    msg: 'the app did not answer'\n",
            "the app did not answer",
        ),
        ("PLAY RECAP\n", "ansible-playbook failed (see its log)"),
    ],
)
def test_the_reason_of_a_failed_playbook_is_one_line(faults, output, reason):
    assert faults.failure_reason(output) == reason


def test_rates_are_counted_in_whole_second_windows(faults):
    times = [100.0, 100.0, 101.0, 102.0, 102.0, 102.0, 105.0]
    assert faults.rate_between(times, 100, 103) == 2.0
    assert faults.rate_between(times, 103, 105) == 0.0


def test_locust_failure_times_and_statuses_are_read(faults):
    assert faults.seen("2026-11-21T15:23:54Z") == pytest.approx(1795274634.0)
    assert faults.seen("1795274634.5") == 1795274634.5
    assert faults.seen("") is None
    failures = [
        {"status": 503, "count": 5, "error": "CatchResponseError('HTTP 503, expected 200')"},
        {"status": 0, "count": 1, "error": "CatchResponseError('body is not a JSON row')"},
        {"status": 503, "count": 2, "error": "CatchResponseError('HTTP 503, expected 200')"},
        {"status": 0, "count": 3, "error": "ConnectionResetError(104, 'Connection reset')"},
    ]
    assert faults.by_status(failures) == (
        '"ConnectionResetError(104, \'Connection reset\')" x3, "body is not a JSON row" x1, 503 x7'
    )
    assert faults.by_status([]) == "none"
    answers = [(1.0, 200, "-"), (2.0, 503, "1"), (3.0, 503, "-")]
    matching, with_header = faults.with_retry_after(answers)
    assert len(matching) == 2
    assert with_header == [(2.0, 503, "1")]


def test_a_worker_lost_mid_run_is_described_from_the_master_log(faults, tmp_path):
    cell = tmp_path / "loadgen-stop"
    cell.mkdir()
    (cell / "locust.log").write_text(
        "[..] Sending spawn jobs of 20 users at 20.00 spawn rate to 2 ready workers\n"
        "[..] Resetting stats\n"
        "[..] Sending spawn jobs of 20 users at 20.00 spawn rate to 1 ready workers\n"
        "[..] Resetting stats\n"
        "[..] Worker 'loadgen2_87546e32' (index 1) quit. 0 workers ready.\n"
        "[..] --run-time limit reached, shutting down\n"
        "[..] Worker 'loadgen1_23cc5edf' (index 0) quit. 0 workers ready.\n"
    )
    rows = [(100, 20, 0), (103, 20, 300), (106, 20, 900), (107, 20, 100), (110, 20, 700)]
    rows += [(125, 0, 2580)]
    body = "\n".join(f"{t},{u},,Aggregated,0,0{',0' * 11},{n},0,0,0,0,0,0" for t, u, n in rows)
    (cell / "locust_stats_history.csv").write_text(HISTORY_HEADER + "\n" + body + "\n")
    (cell / "locust_stats.csv").write_text(STATS)
    (cell / "cell.json").write_text('{"workers_lost": ["loadgen2_87546e32"]}')
    load = object.__new__(faults.Load)
    load.cell_dir, load.duration, load.users = cell, 25, 20
    figures = {}
    text = faults.rebalance(load, "loadgen2", figures)
    assert text.startswith(
        "2580 requests, 0 failed; Locust sent all 20 users to the 1 worker(s) left"
    )
    assert "cover only the last 18 of 25 s; cell.json names the lost worker" in text
    assert figures["flagged_in_cell"] is True
    assert figures["worker_quit_logged"] is True
    assert figures["stats_reset_at"] == [107.0]

    (cell / "cell.json").write_text('{"workers_lost": []}')
    assert "NOT flagged in cell.json" in faults.rebalance(load, "loadgen2", {})


def test_a_result_is_one_line(faults):
    result = faults.Result(1, "kill-worker", "PASS", "did this", "measured that")
    assert result.line() == "PASS  1 kill-worker      did this  =>  measured that"
    assert "\n" not in result.line()
