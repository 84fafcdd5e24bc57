"""Observations and Locust files made up for the judges and the renderer: what a
fault would have seen, without a lab."""

from __future__ import annotations

from pathlib import Path

from flask_deploy_lab.faults import (
    kill_worker,
    loadgen_stop,
    pg_restart,
    pool_exhaustion,
    reload,
    slow_clients,
)
from flask_deploy_lab.faults.executor import PODMAN_STOP, REBOOT_HOST, HostRestart
from flask_deploy_lab.faults.load import LoadFigures, LocustFailure
from flask_deploy_lab.faults.stack import Answer, UnitState

HTTP_503 = "CatchResponseError('HTTP 503, expected 200')"
HTTP_500 = "CatchResponseError('HTTP 500, expected 200')"

STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,"
    "75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
HISTORY_HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
    "99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,"
    "Total Average Response Time,Total Min Response Time,Total Max Response Time,"
    "Total Average Content Size"
)
FAILURES_HEADER = "Method,Name,Error,Occurrences,First Seen,Last Seen"


def figures(requests=20000, failures=0, rps=1000.0, errors=()):
    return LoadFigures(requests, failures, rps, tuple(errors))


def refused(count, last=None, first=None):
    """Locust's row of `count` 503s."""
    return LocustFailure(503, HTTP_503, count, first, last)


def cell_files(cell: Path, requests=2580, failures=0, rps=180.0, history=(), failure_rows=()):
    """A cell's Locust CSVs: the Aggregated stats row, the history's Aggregated rows
    [(time, users, total requests)], the failure rows [(error, count, first, last)]."""
    cell.mkdir(parents=True, exist_ok=True)
    stats = f",Aggregated,{requests},{failures},110,110,101,440,28,{rps},0.0" + ",110" * 11
    (cell / "locust_stats.csv").write_text(STATS_HEADER + "\n" + stats + "\n")
    rows = [f"{t},{u},,Aggregated,0,0{',0' * 11},{n},0,0,0,0,0,0" for t, u, n in history]
    (cell / "locust_stats_history.csv").write_text(HISTORY_HEADER + "\n" + "\n".join(rows) + "\n")
    lines = [f'GET,/db,"{e}",{n},{first},{last}' for e, n, first, last in failure_rows]
    (cell / "locust_failures.csv").write_text(FAILURES_HEADER + "\n" + "\n".join(lines) + "\n")


# ---------------------------------------------------------------- kill-worker

KILL_DONE = kill_worker.Done(kill_worker.LOAD, victim_pid=28657, cpu_share_percent=55, at_s=9.6)


def kill_seen(**changes):
    seen = {
        "server": "gunicorn-gthread",
        "processes": 3,
        "load": figures(26317, 0, 1315.9),
        "replaced_s": 0.3,
        "workers_after": 3,
        "main_pid_before": 812,
        "main_pid_after": 812,
        "nginx_upstream_errors": 13,
    }
    return kill_worker.Observation(**(seen | changes))


# ---------------------------------------------------------------- pg-restart

DOWN, STARTING, BACK = 1000.0, 1005.0, 1005.9
PG_DONE = pg_restart.Done(pg_restart.LOAD, "postgresql@15-main.service", at_s=9.2, down_s=5)
APP = UnitState(main_pid=812, n_restarts=0, can_reload=True)


def probe_answers(down_status=503, retry="1"):
    """Ten a second from 1 s before the stop to 3 s after it was back."""
    answers, moment = [], DOWN - 1
    while moment < BACK + 3:
        status = down_status if DOWN <= moment <= BACK else 200
        answers.append(Answer(round(moment, 1), status, retry if status == 503 else "-"))
        moment += 0.1
    return tuple(answers)


def pg_seen(**changes):
    seen = {
        "load": figures(27232, 5427, 1089.3, [refused(5427, first=DOWN, last=BACK - 1)]),
        "down_at": DOWN,
        "starting_at": STARTING,
        "back_at": BACK,
        "answers": probe_answers(),
        "app_before": APP,
        "app_after": APP,
        "rps_before": 1128.4,
        "rps_after": 970.6,
    }
    return pg_restart.Observation(**(seen | changes))


# ---------------------------------------------------------------- pool-exhaustion

POOL_DONE = pool_exhaustion.Done(pool_exhaustion.LOAD, pool_size=2, limit=6)


def pool_seen(**changes):
    seen = {
        "db_mode": "pool",
        "load": figures(948, 714, 47.4, [refused(714)]),
        "answers": tuple(Answer(100 + i / 10, 503, "1") for i in range(10)),
        "connections": {"idle": 6},
        "limit": 6,
    }
    return pool_exhaustion.Observation(**(seen | changes))


# ---------------------------------------------------------------- reload

RELOAD_DONE = reload.Done(reload.LOAD, "labapp-gunicorn.service", at_s=8.4)


def reload_seen(**changes):
    seen = {
        "server": "gunicorn-gthread",
        "unit": "labapp-gunicorn.service",
        "can_reload": True,
        "load": figures(27539, 0, 1376.9),
        "replaced_s": 1.7,
        "workers_before": (901, 902, 903),
        "workers_after": (977, 978, 979),
        "main_pid_before": 812,
        "main_pid_after": 812,
        "nginx_upstream_errors": 0,
    }
    return reload.Observation(**(seen | changes))


# ---------------------------------------------------------------- slow-clients

SLOW_DONE = slow_clients.Done(slow_clients.LOAD, connections=200, prober="loadgen2", window_s=12)
WINDOWS = (1002, 1014, 1026, 1038)


def per_second(before, with_them, after):
    """{second: answers} at those rates over the three windows."""
    w0, w1, w2, w3 = WINDOWS
    rates = [(w0, w1, before), (w1, w2, with_them), (w2, w3, after)]
    return {s: rate for start, end, rate in rates for s in range(start, end)}


def slow_seen(before=97, with_them=97, after=97, **changes):
    seen = {
        "load": figures(3880, 0, 97.0),
        "windows": WINDOWS,
        "answered": per_second(before, with_them, after),
        "summary": {"open_max": 200, "closed_by_server": 221, "lifetime_s_avg": 10.0},
        "nginx_active_connections": 221,
        "app_established_connections": 20,
    }
    return slow_clients.Observation(**(seen | changes))


# ---------------------------------------------------------------- loadgen-stop

LAB_RESTART = HostRestart("loadgen2", PODMAN_STOP, 1008.0, 0.6, 1009.0)
REBOOT = HostRestart("loadgen2", REBOOT_HOST, 1008.0, None, 1040.0)
STOP_DONE = loadgen_stop.Done(loadgen_stop.LOAD, "loadgen2", LAB_RESTART, 8.3, "fdl-loadgen2")


def rebalance(**changes):
    found = {
        "requests": 2754,
        "failures": 0,
        "rps": 110.2,
        "worker_quit_logged": True,
        "spawns": ((20, 2), (20, 1)),
        "stats_reset_at": (1010.0,),
        "stats_cover_s": 14.0,
        "flagged_in_cell": True,
    }
    return loadgen_stop.Rebalance(**(found | changes))


def stop_seen(**changes):
    seen = {
        "loadgens": 2,
        "method": PODMAN_STOP,
        "finished": True,
        "message": None,
        "said_why": True,
        "rebalance": rebalance(),
        "leftovers": {},
        "host_state": "running",
        "back_s": 1.4,
    }
    return loadgen_stop.Observation(**(seen | changes))
