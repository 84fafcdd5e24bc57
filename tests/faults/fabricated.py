"""Observations and Locust files made up for the judges and the renderer: what a
fault would have seen, without a lab."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from flask_deploy_lab.faults import (
    app_host_stop,
    celery_kill,
    kill_worker,
    loadgen_stop,
    pg_restart,
    pool_exhaustion,
    redis_restart,
    reload,
    slow_clients,
    upstream_stop,
)
from flask_deploy_lab.faults.executor import PODMAN_STOP, REBOOT_HOST, HostRestart
from flask_deploy_lab.faults.load import LoadFigures, LocustFailure
from flask_deploy_lab.faults.request_log import Request, RequestLog
from flask_deploy_lab.faults.stack import Answer, UnitState
from flask_deploy_lab.faults.task_rows import TaskRow, TaskSettings
from flask_deploy_lab.report.samples import HostSamples

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


def pg_requests(after=(50, 80, 95, 95), then=100, extra=(), early=100):
    """100 OK a second before the stop (991-999; `early` a second in 990-993),
    200 503s with Retry-After a second while it is down (1000-1005), then `after`
    OK a second from 1006 on and `then` up to 1019."""
    found = steady(990, 994, early) + steady(994, 1000, 100)
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
        "app_samples": app_samples(),
    }
    return reload.Observation(**(seen | changes))


def app_samples(busy=((990, 0.9, 0.02), (1000, 1.0, 0.3), (1002, 0.9, 0.02)), until=1010):
    """The app host's sampler rows every 0.25 s from 990 s: from each (time, CPUs
    the unit uses, seconds throttled per second) of `busy` on, the unit's counters
    grow at that rate; the host uses 1.0 of its 1.0 CPUs, the machine 1.9."""
    rows, usage, throttled, step = [], 0.0, 0.0, 0.25
    for i in range(int((until - busy[0][0]) / step) + 1):
        t = busy[0][0] + i * step
        rows.append({
            "time": f"{t:.2f}", "unit_cpu_usage_usec": f"{usage:.0f}",
            "unit_throttled_usec": f"{throttled:.0f}", "cpu_busy_cores": "1.0",
            "cpu_limit_cores": "1.0", "procstat_busy_cores": "1.9",
        })  # fmt: skip
        cores, share = next((c, s) for start, c, s in reversed(busy) if start <= t)
        usage += cores * step * 1e6
        throttled += share * step * 1e6
    return HostSamples("app1", rows)


def reload_requests(before_ms=10.0, during=(15.0,) * 100, extra=()):
    """100 requests of `before_ms` started in [998, 1000), one of each of `during`'s
    latencies started in [1000, 1002), 100 of `before_ms` in [1004, 1006) (the run
    goes on after the reload), and `extra`."""
    before = [req(998 + i / 50, before_ms) for i in range(100)]
    inside = [req(1000 + i / len(during) * 1.9, ms) for i, ms in enumerate(during)]
    after = [req(1004 + i / 50, before_ms) for i in range(100)]
    return log(before + inside + after + list(extra))


# ---------------------------------------------------------------- slow-clients

SLOW_DONE = slow_clients.Done(
    slow_clients.LOAD,
    bodies=180,
    readers=20,
    prober="loadgen2",
    window_s=8,
    stagger_s=2.4,
    queue_wait_s=0.0,
)
WINDOWS = (1002, 1010, 1018, 1026, 1044, 1062, 1070)
BODIES = {"kind": "body", "open_max": 180, "statuses": {"202": 181}, "responses": {"202": 180}}
READERS = {"kind": "reader", "open_max": 20, "statuses": {"200": 20}, "responses": {}}
# the control: the same requests once each, at full speed
CONTROL_BODIES = dict(BODIES, begun=180, statuses={"202": 180}, fast=True)
CONTROL_READERS = dict(READERS, begun=20, responses={"200": 20}, fast=True)


def slow_requests(*rates):
    """/slow at each window's rate (requests a second), one request log."""
    found = []
    for (start, end), rate in zip(pairwise(WINDOWS), rates, strict=True):
        found += steady(start, end, rate, ms=50.0, name="/slow")
    # the run goes on for a few seconds after its last window, as the load asks
    found += steady(WINDOWS[-1], WINDOWS[-1] + 4, rates[-1], ms=50.0, name="/slow")
    return log(found)


def slow_seen(rates=(100, 98, 102, 99, 97, 100), **changes):
    """Rates: the three baseline windows, the control, with them, after."""
    seen = {
        "load": figures(3880, 0, 97.0),
        "windows": WINDOWS,
        "requests": slow_requests(*rates),
        "bodies": BODIES,
        "readers": READERS,
        "control_bodies": CONTROL_BODIES,
        "control_readers": CONTROL_READERS,
        "warmup_bodies": CONTROL_BODIES,
        "warmup_readers": CONTROL_READERS,
        "nginx_active_connections": 221,
        "app_established_connections": 20,
        "queued_at_end": (0, 0, 0),
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


# ---------------------------------------------------------------- background tasks

SETTINGS = TaskSettings(time_limit_s=30.0, visibility_timeout_s=60.0)
KILL_AT = 1008.0


def task(n, status="done", created=1000.0, finished=None, attempts=1, error=""):
    """A task row; done 2.5 s after its creation unless told."""
    if finished is None and status in ("done", "failed"):
        finished = created + 2.5
    return TaskRow(f"t{n:03d}", status, attempts, created, created + 0.1, finished, error)


def posts(first, last, rate, status=202, ms=20.0, retry=None):
    """`rate` POST /tasks a second over [first, last), answered `status`."""
    return steady(first, last, rate, ms=ms, status=status, name="/tasks", length=60, retry=retry)


# ---------------------------------------------------------------- celery-kill

CELERY_DONE = celery_kill.Done(
    celery_kill.LOAD, "app1", "labapp-celery.service", 812, 2, at_s=8.0, at=KILL_AT
)


def celery_rows(late=0, failed=0, pending=0):
    """40 tasks created 1000..1030; t001, t002 in flight at the kill, redelivered and done
    70 s later; `late` done 120 s after the kill, `failed`, `pending` ones."""
    rows = [
        task(1, created=1006.0, finished=KILL_AT + 70, attempts=2),
        task(2, created=1007.0, finished=KILL_AT + 71, attempts=2),
    ]
    rows += [task(i, created=1000 + i * 0.7) for i in range(3, 41)]
    rows += [task(100 + i, created=1005.0, finished=KILL_AT + 120) for i in range(late)]
    rows += [task(200 + i, "failed", error="upstream timed out") for i in range(failed)]
    rows += [task(300 + i, "running", finished=None) for i in range(pending)]
    return tuple(rows)


def celery_seen(**changes):
    seen = {
        "settings": SETTINGS,
        "kill_at": KILL_AT,
        "main_pid_before": 812,
        "main_pid_after": 1003,
        "restarted_s": 1.2,
        "n_restarts_before": 0,
        "n_restarts_after": 1,
        "held_at_kill": 2,
        "rows": celery_rows(),
        "read_at": KILL_AT + 72,
        "load": figures(160, 2, 5.3),
        "requests": log(posts(1000, 1030, 1)
                        + [req(1030.0, 30000.0, 202, True, "/tasks/[id]", length=60,
                               error="task still 202 after LOADTEST_TASK_TIMEOUT")] * 2),
    }  # fmt: skip
    return celery_kill.Observation(**(seen | changes))


# ---------------------------------------------------------------- redis-restart

R_STOP, R_DOWN, R_START, R_BACK = 1008.0, 1008.1, 1013.1, 1013.3
REDIS_DONE = redis_restart.Done(redis_restart.LOAD, "db1", "redis-server.service", 8.1, 5)


def redis_requests(down_ms=1005.0, extra=()):
    """10 202s a second before the stop, 10 503s with Retry-After a second while it is down
    (each `down_ms`: the publish's timeout), 202s again from 1014."""
    found = posts(1000, 1008, 10)
    found += posts(1008, 1013, 10, status=503, ms=down_ms, retry="2")
    found += posts(1014, 1030, 10)
    return log(found + list(extra))


def redis_seen(**changes):
    seen = {
        "stopping_at": R_STOP,
        "down_at": R_DOWN,
        "starting_at": R_START,
        "back_at": R_BACK,
        "settings": SETTINGS,
        "rows": tuple(task(i, created=1000 + i * 0.1) for i in range(240)),
        "load": figures(290, 50, 9.7),
        "requests": redis_requests(),
    }
    return redis_restart.Observation(**(seen | changes))


# ---------------------------------------------------------------- upstream-stop

U_STOP, U_DOWN, U_START, U_BACK = 1008.0, 1008.5, 1016.5, 1017.0
UPSTREAM_DONE = upstream_stop.Done(upstream_stop.LOAD, "db1", "slow-api.service", 8.0, 8)


def slow(first, last, rate, status=200, ms=505.0):
    return steady(first, last, rate, ms=ms, status=status, name="/slow")


def upstream_requests(fail_ms=8.0, extra=()):
    """/slow at 40 a second, 502s (`fail_ms` each) at 400 a second while it is down."""
    found = slow(1000, 1008, 40) + slow(1009, 1016, 400, status=502, ms=fail_ms)
    found += slow(1017, 1030, 40)
    return log(found + list(extra))


def upstream_answers(body="json-error"):
    return tuple(Answer(1009.5 + i / 10, 502, "-", body) for i in range(60))


def upstream_seen(**changes):
    seen = {
        "stopping_at": U_STOP,
        "down_at": U_DOWN,
        "starting_at": U_START,
        "back_at": U_BACK,
        "answers": upstream_answers(),
        "load": figures(3900, 2800, 130.0),
        "requests": upstream_requests(),
    }
    return upstream_stop.Observation(**(seen | changes))


# ---------------------------------------------------------------- app-host-stop

A_STOP, A_DOWN, A_START, A_BACK = 1008.0, 1008.6, 1018.6, 1019.0
APP_ADDRESSES = {"app1": "10.0.10.21", "app2": "10.0.10.22"}
APP_STOP_DONE = app_host_stop.Done(app_host_stop.LOAD, "app2", "labapp-gunicorn.service", 8.0, 10)


def app_upstreams(victim_down=0, rejoin_at=1022, others=20):
    """nginx's answers per second: both hosts until the stop, app1 alone until
    `rejoin_at` (app2 `victim_down` in each second it is down), then both."""
    found = {}
    for second in range(1000, 1050):
        if second < 1009:
            found[second] = {"10.0.10.21": [20, 20], "10.0.10.22": [20, 20]}
        elif second < rejoin_at:
            found[second] = {"10.0.10.21": [others, others]}
            if victim_down and 1010 <= second < 1018:
                found[second]["10.0.10.22"] = [victim_down, victim_down]
        else:
            found[second] = {"10.0.10.21": [20, 20], "10.0.10.22": [20, 20]}
    return found


def app_stop_seen(**changes):
    seen = {
        "app_hosts": ("app1", "app2"),
        "victim": "app2",
        "addresses": APP_ADDRESSES,
        "in_flight": 10,
        "stopping_at": A_STOP,
        "down_at": A_DOWN,
        "starting_at": A_START,
        "back_at": A_BACK,
        "upstreams": app_upstreams(),
        "load": figures(2000, 0, 40.0),
        "requests": log(slow(1000, 1050, 40)),
    }
    return app_host_stop.Observation(**(seen | changes))
