"""The faults' words and file: one line per outcome, in the shape make faults has
always printed (docs/faults.md shows the lines), and faults.json."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from flask_deploy_lab import catalogue
from flask_deploy_lab.faults import NAMES, Outcome, Verdict, render
from flask_deploy_lab.faults.kill_worker import KillWorker
from flask_deploy_lab.faults.load import LocustFailure
from flask_deploy_lab.faults.loadgen_stop import LoadgenStop
from flask_deploy_lab.faults.loadgen_stop import Observation as StopObservation
from flask_deploy_lab.faults.pg_restart import PgRestart
from flask_deploy_lab.faults.pool_exhaustion import Observation as PoolObservation
from flask_deploy_lab.faults.pool_exhaustion import PoolExhaustion
from flask_deploy_lab.faults.reload import Observation as ReloadObservation
from flask_deploy_lab.faults.reload import Reload
from flask_deploy_lab.faults.slow_clients import SlowClients
from flask_deploy_lab.faults.stack import Answer
from tests.faults import fabricated as f


def line(number, outcome):
    return render.result(number, outcome).line()


def test_a_result_is_one_line():
    result = render.Result(1, "kill-worker", "PASS", "did this", "measured that")
    assert result.line() == "PASS  1 kill-worker      did this  =>  measured that"
    assert "\n" not in result.line()


def test_failures_are_counted_by_status_else_by_locusts_error():
    failures = [
        LocustFailure(503, "CatchResponseError('HTTP 503, expected 200')", 5),
        LocustFailure(0, "CatchResponseError('body is not a JSON row')", 1),
        LocustFailure(503, "CatchResponseError('HTTP 503, expected 200')", 2),
        LocustFailure(0, "ConnectionResetError(104, 'Connection reset')", 3),
    ]
    assert render.by_status(failures) == (
        '"ConnectionResetError(104, \'Connection reset\')" x3, "body is not a JSON row" x1, 503 x7'
    )
    assert render.by_status([]) == "none"


def test_the_kill_worker_line_says_when_the_victim_was_found_on_a_later_look():
    done = dataclasses.replace(f.KILL_DONE, looks=4, busy_waited_s=0.093)
    result = render.result(1, KillWorker.judge(done, f.kill_seen()))
    assert (
        "(the busiest of 3, 55 % of their CPU, 7 connections, stopped on look 4 after 0.093 s)"
        in (result.did)
    )
    assert (result.figures["victim_looks"], result.figures["victim_busy_waited_s"]) == (4, 0.093)


def test_the_kill_worker_line_is_the_one_make_faults_prints():
    outcome = KillWorker.judge(f.KILL_DONE, f.kill_seen())
    assert line(1, outcome) == (
        "PASS  1 kill-worker      kill -9 of gunicorn-gthread worker pid 28657 (the busiest of 3, "
        "55 % of their CPU, 7 connections) 10 s into /db x20 users, 20 s  =>  0 of 26317 "
        "requests failed (none), limit 7 (the killed worker's connections; 20 requests in flight "
        "in all); 0 200s with a cut-off body (limit 0); nginx sent 13 requests to the app again "
        "(13 then answered OK; tries 502, 200 x13), 13 upstream errors logged; workers 3 -> 3, "
        "replaced in 0.3 s; master unchanged"
    )
    figures = render.result(1, outcome).figures
    assert figures["key"] == "0/7 failed, 0 cut"
    assert (figures["failed"], figures["failed_limit"], figures["truncated_200"]) == (0, 7, 0)
    assert figures["nginx_retries"]["retried"] == 13


def test_failures_are_named_by_status_or_by_what_was_wrong_with_the_body():
    requests = f.kill_requests(
        f.req(1009.7, status=502),
        f.req(1009.7, status=502),
        f.req(1009.7, status=0, error="ConnectionResetError(104, 'Connection reset')"),
        f.req(1009.7, failed=True, got=12),
        f.req(1009.7, failed=True, length=None, got=9),
    )
    assert render.failures_text(requests) == (
        "5 of 26322 requests failed (\"ConnectionResetError(104, 'Connection reset')\" x1, "
        "200 shorter than its Content-Length x1, 200 with a cut-off body x1, 502 x2)"
    )
    assert render.failures_text(None) == "no request log"


def test_a_failed_kill_says_what_went_wrong_in_capitals():
    seen = f.kill_seen(replaced_s=None, workers_after=2, main_pid_after=999, nginx_retries=None)
    text = line(1, KillWorker.judge(f.KILL_DONE, seen))
    assert text.startswith("FAIL  1 kill-worker ")
    assert "nginx's retries not counted" in text
    assert text.endswith("workers 3 -> 2, NOT replaced; MASTER CHANGED")


def test_the_pg_restart_line_is_the_one_make_faults_prints():
    down = tuple(Answer(f.DOWN + i * 0.13, 503, "1") for i in range(38))
    outcome = PgRestart.judge(f.PG_DONE, f.pg_seen(answers=down))
    assert line(2, outcome) == (
        "PASS  2 pg-restart       systemctl stop postgresql@15-main.service 9 s into /db x20 "
        "users, 34 s, start 5 s later (accepting again 5.9 s after the stop)  =>  1200 of 3520 "
        "requests failed (503 x1200), 1200 of 1200 503s with Retry-After (1); probe while down: "
        "38 of 38 answers 503, 38 with Retry-After; last failure 0.0 s after it was back (limit "
        "5 s; probe: 0.0 s); /db 100.0 req/s before; 90% of it again 1.1 s after it was back "
        "(3 s window), 97.5 req/s from then on; app not restarted (same MainPID, NRestarts 0)"
    )
    figures = render.result(2, outcome).figures
    assert figures["probe_while_down"] == {"answers": 38, "503": 38}
    assert figures["probe_retry_after"] == ["1"]
    assert (figures["down_s"], figures["recovery_s"], figures["app_restarted"]) == (5.9, 0.0, False)
    assert (figures["rps_before"], figures["throughput_recovery_s"]) == (100.0, 1.1)
    assert figures["key"] == "back in 1.1 s"
    never = PgRestart.judge(f.PG_DONE, f.pg_seen(requests=f.pg_requests(after=(), then=60)))
    assert "NEVER 90% of it again within the run (60.0 req/s after it was back)" in line(2, never)
    assert render.result(2, never).figures["key"] == "never back"


def test_the_pool_exhaustion_line():
    result = render.result(3, PoolExhaustion.judge(f.POOL_DONE, f.pool_seen()))
    assert result.did == (
        "app converged with a pool of 2 per process (6 connections in all), "
        "/sleep?delay=0.5 x30 users for 20 s, then converged back to the defaults"
    )
    assert result.measured == (
        "714 of 948 requests failed (503 x714), 714 of 714 503s with Retry-After (1); probe: 10 "
        "of 10 were 503, 10 with Retry-After; afterwards 6 client connections (limit 6), 0 not "
        "idle (idle 6)"
    )
    assert result.figures["pg_connections_after"] == {"idle": 6}
    assert result.figures["key"] == "714 503, 0 bare, 0 other"


def test_the_reload_lines():
    result = render.result(4, Reload.judge(f.RELOAD_DONE, f.reload_seen()))
    assert result.did == "systemctl reload labapp-gunicorn.service 8 s into /db x20 users, 28 s"
    assert result.measured == (
        "0 of 300 requests failed (none); p99 15 ms of the 100 requests started in the 2.0 s "
        "reload window vs 10 ms of the 100 before (x1.5, limit x2); all 3 workers replaced in "
        "1.7 s; master unchanged; nginx logged 0 upstream errors from the reload on; CPU "
        "before -> in the window: app unit 0.9 -> 1.0 CPUs, throttled by its quota 0.02 s/s -> "
        "0.3 s/s; app host 1.0 -> 1.0 of 1.0 CPUs; machine 1.9 -> 1.9 CPUs busy"
    )
    assert result.figures["key"] == "0 failed, p99 x1.5"
    assert result.figures["cpu_window"]["throttled"] == pytest.approx(0.3)
    unsampled = render.result(4, Reload.judge(f.RELOAD_DONE, f.reload_seen(app_samples=None)))
    assert unsampled.measured.endswith("from the reload on; CPU not sampled on the app host")
    failed = f.reload_seen(requests=f.reload_requests(extra=[f.req(1000.5, status=503)] * 2),
                           replaced_s=None, workers_after=(901, 977, 978))  # fmt: skip
    assert render.result(4, Reload.judge(f.RELOAD_DONE, failed)).measured.startswith(
        "2 of 302 requests failed (503 x2); p99 15 ms of the 202 requests started in the 30.0 s "
        "reload window vs 10 ms of the 100 before (x1.5, limit x2); workers NOT all replaced "
        "(1 old left); master unchanged"
    )


def test_the_slow_clients_line_says_how_few_slots_sized_them():
    done = dataclasses.replace(f.SLOW_DONE, bodies=18, readers=2, stagger_s=0.6, queue_wait_s=1.8)
    result = render.result(5, SlowClients.judge(done, f.slow_seen()))
    assert result.did.startswith(
        "18 slow POST /tasks bodies (a byte every 0.15 s, opened over 0.6 s; 1.8 s in the "
        "backlog behind the load's) and 2 slow readers of /queries?n=500"
    )
    assert (result.figures["bodies_stagger_s"], result.figures["queue_wait_s"]) == (0.6, 1.8)


def test_the_slow_clients_line():
    result = render.result(5, SlowClients.judge(f.SLOW_DONE, f.slow_seen()))
    assert result.did == (
        "180 slow POST /tasks bodies (a byte every 0.15 s, opened over 2.4 s) and 20 slow "
        "readers of /queries?n=500 (64 bytes every 0.5 s) from loadgen2 in window 5 of 6 "
        "(8 s each; the control's and theirs 18 s, for the tasks they queued) of /slow x20 "
        "users, 102 s (/slow?delay=0.2); the same requests at full speed in window 4, and once "
        "before the first (a warm-up)"
    )
    assert result.measured == (
        "/slow at 97.0 req/s with them, limit 95.0 (baseline 100 98 102 100: mean 100.0, sd "
        "1.63; -3.0 %; the same requests fast: 99.0 req/s, -1.0 %); 0 of 7128 requests failed "
        "(none); held 180 bodies, 20 readers; 181 bodies answered by the app, 20 readers saw a "
        "2xx status (fast: 180, 20; the warm-up: 180, 20); tasks queued at the end of the "
        "warm-up, the control's window and theirs: 0, 0, 0; nginx active connections 221, app "
        "connections 20"
    )
    assert result.figures["change_percent"] == -3.0
    assert result.figures["windows"] == list(f.WINDOWS)
    assert result.figures["control_change_percent"] == -1.0
    assert result.figures["rps_windows"] == [100.0, 98.0, 102.0, 99.0, 97.0, 100.0]
    assert result.figures["key"] == "-3.0 % (limit 95.0)"


def test_the_loadgen_stop_lines_in_the_lab_and_on_hosts():
    result = render.result(6, LoadgenStop.judge(f.STOP_DONE, f.stop_seen()))
    assert result.did == (
        "podman stop fdl-loadgen2 8 s into /slow x20 users, 25 s (stopped in 0.6 s), podman "
        "start, systemd running 1 s after the stop"
    )
    assert result.measured == (
        "the run finished: 2754 requests, 0 failed; Locust sent all 20 users to the 1 worker(s) "
        "left and, with --reset-stats, restarted its statistics then: the CSVs cover only the "
        "last 14 of 25 s; cell.json names the lost worker, so the report marks the cell; no "
        "Locust or sampler process left on any host"
    )
    assert list(result.figures) == [
        "load", "finished", "message", "worker_quit_logged", "respawns", "stats_reset_at",
        "requests", "failures", "rps", "stats_cover_s", "flagged_in_cell", "leftovers",
        "host_state", "back_s", "key",
    ]  # fmt: skip
    assert result.figures["key"] == "finished, none left"
    rebooted = f.STOP_DONE.__class__(f.STOP_DONE.load, "loadgen2", f.REBOOT, 8.3, "loadgen2")
    seen = f.stop_seen(finished=False, message="loadgen2 became unreachable", rebalance=None,
                       back_s=32.0, leftovers={"loadgen1": ["77 locust"]})  # fmt: skip
    result = render.result(6, LoadgenStop.judge(rebooted, seen))
    assert result.did == (
        "reboot of loadgen2 8 s into /slow x20 users, 25 s, systemd running 32 s after it was asked"
    )
    assert result.measured == (
        'the run failed: loadgen2 became unreachable; LEFT RUNNING: {"loadgen1": ["77 locust"]}'
    )
    assert result.figures["key"] == "failed, 1 left"


def test_a_matrix_line_names_its_server():
    result = render.result(1, KillWorker.judge(f.KILL_DONE, f.kill_seen()), "uwsgi")
    assert result.line().startswith("PASS  uwsgi             1 kill-worker      kill -9 of ")
    assert result.server == "uwsgi"


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            KillWorker.judge(None, f.kill_worker.Observation("flask", 1)),
            "SKIP  1 kill-worker      flask runs one process: kill -9 of it is a crash (systemd "
            "restarts the unit), not a worker replacement; use a multi-process server (...)  =>  "
            "not measured",
        ),
        (
            PoolExhaustion.judge(None, PoolObservation("naive")),
            "SKIP  3 pool-exhaustion  db_mode=naive: there is no pool to exhaust  =>  not measured",
        ),
        (
            Reload.judge(None, ReloadObservation("gevent", "labapp-gevent.service", False)),
            "SKIP  4 reload           systemctl reload labapp-gevent.service: gevent cannot reload "
            "gracefully  =>  gevent.pywsgi is one process, no master starts new workers: a reload "
            "is a restart",
        ),
        (
            LoadgenStop.judge(None, StopObservation(1, "podman stop")),
            "SKIP  6 loadgen-stop     podman stop of a load generator  =>  the inventory has one "
            "load generator, which runs the master",
        ),
    ],
    ids=["kill-worker", "pool-exhaustion", "reload", "loadgen-stop"],
)
def test_a_skip_says_why(outcome, expected):
    text = line(NAMES.index(outcome.fault) + 1, outcome)
    # the servers to use instead are the catalogue's (the next test)
    assert re.sub(r"server \([^)]*\)", "server (...)", text) == expected


def test_the_skip_names_the_multi_process_servers_of_the_catalogue():
    text = line(1, KillWorker.judge(None, f.kill_worker.Observation("flask", 1)))
    named = re.search(r"use a multi-process server \(([^)]*)\)", text).group(1).split(", ")
    multi = [n for n, s in catalogue.load().servers.items() if s.processes == "workers"]
    assert named == multi
    assert "gunicorn-gthread" in named
    assert "flask" not in named


def test_a_fault_that_could_not_be_carried_out_is_a_fail_that_says_why():
    outcome = Outcome.not_carried_out("reload", "the load test failed: users=0 is not valid")
    result = render.result(4, outcome)
    assert result.line() == (
        "FAIL  4 reload           could not be carried out  =>  the load test failed: "
        "users=0 is not valid"
    )
    assert result.figures == {}
    assert result.reasons == ["the load test failed: users=0 is not valid"]


def test_faults_json_keeps_every_line_and_figure(tmp_path):
    results = [
        render.result(1, KillWorker.judge(f.KILL_DONE, f.kill_seen())),
        render.result(4, Reload.judge(None, ReloadObservation("flask", "labapp.service", False))),
    ]
    path = tmp_path / "run" / "faults.json"
    render.write_results(path, "faults-x", ["-e", "server=uwsgi"], results)
    body = json.loads(path.read_text())
    assert body["run_id"] == "faults-x"
    assert body["ansible_args"] == ["-e", "server=uwsgi"]
    assert [fault["name"] for fault in body["faults"]] == ["kill-worker", "reload"]
    first = body["faults"][0]
    assert set(first) == {"number", "name", "status", "did", "measured", "figures", "reasons",
                          "line"}  # fmt: skip
    assert first["line"] == results[0].line()
    assert body["faults"][1]["figures"] == {"server": "flask"}
    assert body["faults"][1]["status"] == Verdict.SKIP.value


def test_the_last_line_counts_each_verdict():
    results = [
        render.Result(1, "kill-worker", "PASS", "", ""),
        render.Result(2, "pg-restart", "FAIL", "", ""),
        render.Result(4, "reload", "SKIP", "", ""),
    ]
    assert render.summary_line("faults-x", results, 563, "reports/faults-x/faults.json") == (
        "faults faults-x: 1 passed, 1 failed, 1 skipped in 9m23s; "
        "figures in reports/faults-x/faults.json"
    )
