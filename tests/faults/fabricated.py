"""Observations and Locust files made up for the judges and the renderer: what a
fault would have seen, without a lab."""

from __future__ import annotations

from itertools import pairwise
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
from flask_deploy_lab.faults.request_log import Request, RequestLog
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


# ---------------------------------------------------------------- request logs

# every column the judges read: what the locustfile writes, and the addition
FIELDS = frozenset(
    ("start", "response_time_ms", "failed", "name", "stopped_at", "status", "content_length",
     "body_bytes", "retry_after", "error")
)  # fmt: skip
# what the locustfile writes today
TODAY = frozenset(("start", "response_time_ms", "failed", "name", "stopped_at"))
BODY = 32  # bytes of a /db answer


def req(start, ms=1.0, status=200, failed=None, name="/db", length=BODY, got=None, retry=None,
        error=""):  # fmt: skip
    """One completed request; a non-2xx is failed unless told otherwise."""
    if failed is None:
        failed = not 200 <= status < 300
    if status != 200 and length == BODY:
        length = got = 0 if status == 0 else 20
    return Request(start, ms, failed, name, None, status, length,
                   length if got is None else got, retry, error)  # fmt: skip


def waiting(start, stopped, name="/db"):
    """One request in flight when the run stopped."""
    return Request(start, None, False, name, stopped)


def steady(first, last, rate, ms=1.0, **kw):
    """`rate` requests in each whole second of [first, last), each completed in its second
    (`ms` under 100)."""
    return [req(s + 0.9 * i / rate, ms, **kw) for s in range(first, last) for i in range(rate)]


def log(requests, fields=FIELDS):
    return RequestLog(tuple(requests), frozenset(fields))


# ---------------------------------------------------------------- kill-worker

KILL_DONE = kill_worker.Done(
    kill_worker.LOAD, victim_pid=28657, cpu_share_percent=55, at_s=9.6, victim_connections=7,
    at=1009.6,
)  # fmt: skip


def kill_requests(*extra):
    """26,317 requests at 1,315 a second, all OK, and `extra` ones."""
    return log(steady(1000, 1020, 1315) + [req(1009.0)] * 17 + list(extra))


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
        "requests": kill_requests(),
        "in_flight": 7,
        "nginx_retries": {"requests": 26330, "retried": 13, "retried_then_ok": 13,
                          "tries": {"502, 200": 13}, "upstream_status_logged": True},
        "in_flight_stack": 20,
    }  # fmt: skip
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


T0 = 990.0


def pg_requests(after=(50, 80, 95, 95), then=100, extra=()):
    """100 OK a second before the stop (991-999), 200 503s with Retry-After a second
    while it is down (1000-1005), then `after` OK a second from 1006 on and `then`
    up to 1019."""
    found = steady(990, 1000, 100)
    found += steady(1000, 1006, 200, status=503, retry="1")
    for i, rate in enumerate(after):
        found += steady(1006 + i, 1007 + i, rate)
    found += steady(1006 + len(after), 1020, then)
    return log(found + list(extra))


def pg_seen(**changes):
    seen = {
        "load": figures(27232, 5427, 1089.3, [refused(5427, first=DOWN, last=BACK - 1)]),
        "down_at": DOWN,
        "starting_at": STARTING,
        "back_at": BACK,
        "answers": probe_answers(),
        "app_before": APP,
        "app_after": APP,
        "requests": pg_requests(),
        "t0": T0,
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
        "requests": pool_requests(),
    }
    return pool_exhaustion.Observation(**(seen | changes))


def pool_requests(*extra):
    """234 OK, 714 503s with Retry-After (/sleep), and `extra`."""
    ok = [req(100 + i / 100, 500, name="/sleep") for i in range(234)]
    refused_ = [req(100 + i / 100, 500, 503, name="/sleep", retry="1") for i in range(714)]
    return log(ok + refused_ + list(extra))


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
        "requests": reload_requests(),
        "t0": 990.0,
        "reload_at": 1000.0,
    }
    return reload.Observation(**(seen | changes))


def reload_requests(before_ms=10.0, during=(15.0,) * 100, extra=()):
    """100 requests of `before_ms` started in [998, 1000), one of each of `during`'s
    latencies started in [1000, 1002), and `extra`."""
    before = [req(998 + i / 50, before_ms) for i in range(100)]
    inside = [req(1000 + i / len(during) * 1.9, ms) for i, ms in enumerate(during)]
    return log(before + inside + list(extra))


# ---------------------------------------------------------------- slow-clients

SLOW_DONE = slow_clients.Done(
    slow_clients.LOAD, bodies=180, readers=20, prober="loadgen2", window_s=8
)
WINDOWS = (1002, 1010, 1018, 1026, 1034, 1042)
BODIES = {"kind": "body", "open_max": 180, "statuses": {"202": 181}, "responses": {"202": 180}}
READERS = {"kind": "reader", "open_max": 20, "statuses": {"200": 20}, "responses": {}}


def slow_requests(*rates):
    """/slow at each window's rate (requests a second), one request log."""
    found = []
    for (start, end), rate in zip(pairwise(WINDOWS), rates, strict=True):
        found += steady(start, end, rate, ms=50.0, name="/slow")
    return log(found)


def slow_seen(rates=(100, 98, 102, 97, 100), **changes):
    seen = {
        "load": figures(3880, 0, 97.0),
        "windows": WINDOWS,
        "requests": slow_requests(*rates),
        "bodies": BODIES,
        "readers": READERS,
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
