"""Locust load for the Flask Deploy Lab: one user class per endpoint.

Choosing the endpoint
    Each endpoint of the app has its own user class, named after the endpoint
    with a capital first letter and ``User`` appended (``json`` -> ``JsonUser``,
    ``queries`` -> ``QueriesUser``). Name the class at the end of the locust
    command line, or in ``LOCUST_USER_CLASSES``, on the master (or the single
    headless process)::

        locust -f loadtest/locustfile.py --headless --host http://<proxy> \\
            -u 100 -r 20 -t 60s --csv reports/run/cell/locust SlowUser
        LOCUST_USER_CLASSES=SlowUser locust -f loadtest/locustfile.py ...

    The master hands users out to its workers by class name, so workers need
    only ``-f loadtest/locustfile.py --worker --master-host ...``. With no class
    named, Locust runs all of them at once (a mixed load, not a lab cell).
    ``USER_CLASSES`` maps each endpoint name to its class.

Parameters
    Each has a command-line option and an environment variable; give them to
    the master, which forwards them to its workers with every spawn message.

    ``--loadtest-delay`` / ``LOADTEST_DELAY``
        seconds of ``?delay=`` for ``/slow`` and ``/sleep`` (default 0.1)
    ``--loadtest-queries`` / ``LOADTEST_QUERIES``
        ``?n=`` for ``/queries`` (default 20; the app clamps it to 1..500)
    ``--loadtest-task-kind`` / ``LOADTEST_TASK_KIND``
        the background work each ``POST /tasks`` asks the Celery workers for:
        ``render`` (a stored post's markdown rendered ``n`` times, CPU-bound;
        the default) or ``upstream`` (a call to the slow API with
        ``--loadtest-delay``, I/O-bound)
    ``--loadtest-task-n`` / ``LOADTEST_TASK_N``
        ``n`` of a render task (default 20, the app's own default)
    ``--loadtest-task-poll`` / ``LOADTEST_TASK_POLL``
        seconds between polls of ``GET /tasks/<id>`` (default 0.1)
    ``--loadtest-task-timeout`` / ``LOADTEST_TASK_TIMEOUT``
        seconds a task may stay ``202`` before the poll counts as a failure
        (default 30)
    ``--loadtest-allowed-hosts`` / ``LOADTEST_ALLOWED_HOSTS``
        comma-separated host names or addresses a test may target (default
        empty: any). A test against another host (the web UI's Host field is
        editable) is stopped by the master at its start, and each worker's
        users stop before their first request.
    ``--loadtest-max-run-time`` / ``LOADTEST_MAX_RUN_TIME``
        seconds after which the master stops a test by itself, even one the
        web UI started without a run time (default 0: no limit)
    ``--loadtest-in-step`` / ``LOADTEST_IN_STEP``
        users of ``/slow`` and ``/sleep`` send their first request at once
        (default: each after a random share of one delay; below)

    The target is Locust's own ``--host``; nothing here names a lab.

Users start out of step
    Locust's master hands out every user of a second in one message (all of a
    cell's, at its default spawn rate) and a worker starts them at once, so a
    closed loop of users waiting on the same delay sends its requests in
    bursts, which fade only as the users drift apart, over 15-20 s (the
    figures: docs/bench.md, "Users out of step"). A user of a delay-bound
    endpoint (``/slow``, ``/sleep``) therefore waits a random share of one
    delay before its first request: from one delay after the start on, the
    users' rounds are spread evenly over it, as those of independent clients
    are, and every user has a request in flight. The report's window begins
    a second or a mean response time after all users run, whichever is
    longer; a request of these endpoints takes at least its delay, so the
    window begins past that wait.

Measured runs
    Add ``--reset-stats`` (master and workers) so the CSVs leave out the
    ramp-up, and ``--csv <cell>/locust --csv-full-history --html
    <cell>/locust_report.html``: the layout the report (``flask_deploy_lab.report``) reads.

    With ``--csv <prefix>``, the master (or the single headless process) also
    writes ``<prefix>_requests.csv``, the request log: one row per request of
    the run, ramp-up included (``--reset-stats`` does not apply to it; a
    process that runs several tests, as the web UI can, logs them all), sorted
    by completion, under the header ``start,response_time_ms,failed,name,stopped_at``:
    ``start`` is when the request started, in Unix seconds with six decimals
    (the ``start_time`` Locust's request event passes, from the clock of the
    host that ran the user), ``response_time_ms`` Locust's response time in
    milliseconds with three, ``failed`` 1 when Locust counted the request as
    a failure, else 0, ``name`` its Locust name, and ``stopped_at`` empty.
    After them come the requests that were still in flight when the test
    stopped, oldest first, one row each: ``start`` when the user began it (the
    time taken just before Locust's own), ``response_time_ms`` and ``failed``
    empty, ``name``, and ``stopped_at`` when the process that ran the user
    stopped the test (Unix seconds, six decimals): ``stopped_at - start`` is
    how long it had waited. Locust's statistics round response times into
    buckets, its history counts move only when a worker reports, and it counts
    no request it killed at the stop; the report takes its exact figures from
    this file instead, and from the in-flight rows whether the stop cut off
    latency the percentiles do not hold. (A log written before the in-flight
    rows existed has the header ``start,response_time_ms,failed,name`` and no
    such rows; the report reads both.) Without ``--csv`` nothing is written.

    How the requests in flight are known: every user's HTTP client notes each
    request it begins and forgets it once it returns, answered or failed
    (`InFlight`); a request Locust kills when it stops the users never
    returns. On ``test_stop``, which fires once the users are stopped, the
    process (a worker, or a single process) moves what is still noted into
    its request log with the time, and a worker's next report (the final one)
    carries them to the master.

    How the rows travel: each worker keeps the requests it recorded since its
    last report to the master and adds them to that report (the
    ``report_to_master`` event: the periodic reports every 3 s and the final
    one a worker sends when the master tells it to quit); the master collects
    them as the reports arrive (``worker_report``). It writes the file on
    Locust's ``quit`` event, which fires after the master has told its
    workers to quit and waited (0.5 s) for their final reports, however the
    run ended. ``test_stop`` fires on the master before it tells the workers
    to quit, and ``quitting``, when the master is stopped by a signal, before
    it has waited. The file therefore holds the requests Locust's own final
    statistics count (and, with ``--reset-stats``, also those that completed
    before the reset): a report arriving too late for Locust is missing from
    both. The requests in flight when the users were stopped, which Locust
    kills without counting them, are the file's in-flight rows.

    Memory: the process that writes the file keeps about 21 bytes a request,
    a worker only those since its last report. At most ``REQUEST_LOG_CAP``
    requests (``LOADTEST_REQUEST_LOG_CAP``, default 2,000,000: about 42 MB,
    and some 80 bytes a request more for a moment while they are sorted, so
    160 MB at the cap) are kept, and a worker keeps at most as many between
    two reports. Past that the log is abandoned (a worker's, and with it the
    master's), a warning goes to Locust's log, and no file is written (a file
    of that name left from an earlier run is removed), so that no partial log
    passes for a whole one. The in-flight rows, at most one per user, are
    kept beside the cap.

    With ``--csv <prefix>`` the same process also writes, at the same moment,
    ``<prefix>_latency.hlog``: every completed request's response time in
    HdrHistograms (the ``hdrhistogram`` package), one per second of
    completion, as an HdrHistogram interval log (format version 1.2: a
    ``#[StartTime: ...]`` line, a legend, then one line per interval,
    ``start,length,max,histogram``, sorted by start). An interval is a whole
    Unix second, ``[s, s + 1)``: ``start`` is s in absolute Unix seconds,
    ``length`` 1, ``max`` the interval's largest value in whole milliseconds
    (floored, as hdrh's writer does), and ``histogram`` the interval's
    histogram, compressed and base64-encoded by its own ``encode()``. Values
    are microseconds (the response time rounded to one), from 1 us to an hour
    (a longer one is recorded as an hour) with 3 significant digits: a value
    reads back within 0.1 % of what was recorded. A request belongs to the
    second its completion falls in, reckoned as the request log reckons it
    (start + response time, in whole microseconds), so the two files agree
    on which second holds which request; failed requests are recorded too,
    as in the request log (a failure's latency is latency the client waited),
    and the requests in flight at the stop, which have no response time, are
    not. The file is written like the request log (whole or not at all, the
    ramp-up included, ``--reset-stats`` not applied) but is never abandoned:
    its memory grows with the run's seconds, not with its requests, so it
    holds every request of a run however long the request log's cap cut it.
    The report (``flask_deploy_lab.report``) shows its figures beside the
    request log's, and takes its percentiles from it where there is no
    request log.

    How the histograms travel: each worker (or the single process) records
    into the histogram of its request's second, and closes a second's
    histogram (encodes it) once the second is over; with its users stopped
    (a worker at ``test_stop``, the single process when it writes the files)
    it closes them all. A worker's report to the master carries
    the seconds it closed since the last one (``[start, encoded]`` pairs; none
    is an empty list), beside its request-log rows; the master merges every
    worker's histograms of a second into one, whichever report brought them:
    a request whose event came after its second had been sent (a slow
    greenlet) goes in a later report and is merged into the same second. The
    master keeps each second's merged histogram encoded, a few kilobytes,
    and a worker only its open seconds (about 190 kB each, rarely more than
    two): memory bounded whatever the request rate. A report arriving after
    the master wrote the files (a worker lost, a final report later than
    Locust's wait) is missing from both.

Measurement rules
    Every user waits 0 s between requests: the load is a closed loop of
    ``users`` clients, so throughput = users / latency, which is what the
    Little's-law ceiling of the report assumes. Requests are named by
    endpoint (``/slow``, ``/tasks/[id]``), never by query string, so Locust's
    statistics hold one row per endpoint. Failure messages carry no ids, so
    ``locust_failures.csv`` groups them.

Checks (a response that fails one counts as a Locust failure)
    /healthz, /slow, /sleep   200
    /json                     200, a non-empty JSON object
    /db                       200, a JSON object with "id"
    /queries                  200, a JSON list of n rows (n clamped to 1..500), with "id"
    /fortunes                 200, Content-Type text/html
    /render                   200, a non-empty body
    /tasks                    POST 202 with Location; GET its path (202 meanwhile) until 200
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import itertools
import logging
import math
import os
import random
import time
from array import array
from datetime import UTC, datetime
from urllib.parse import urlsplit

import gevent
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
from locust.runners import (
    STATE_INIT,
    STATE_RUNNING,
    STATE_STOPPED,
    STATE_STOPPING,
    MasterRunner,
    WorkerRunner,
)

# POST /tasks's kinds of work, and the bounds of a render task's n (the app's)
TASK_KINDS = ("render", "upstream")
TASK_N_MAX = 1000

DEFAULTS = {
    "loadtest_delay": 0.1,
    "loadtest_queries": 20,
    "loadtest_task_kind": "render",
    "loadtest_task_n": 20,
    "loadtest_task_poll": 0.1,
    "loadtest_task_timeout": 30.0,
    "loadtest_allowed_hosts": "",
    "loadtest_max_run_time": 0.0,
    "loadtest_in_step": False,
}
QUERIES_MIN, QUERIES_MAX = 1, 500

REQUEST_LOG_SUFFIX = "_requests.csv"
# what each completed request was answered: the status (0: no HTTP answer), the
# declared Content-Length (empty: none), the body bytes received, Retry-After
# (empty: none) and Locust's failure message (empty: a success); the faults
# judge every failed response by them
REQUEST_LOG_ANSWER = ("status", "content_length", "body_bytes", "retry_after", "error")
REQUEST_LOG_HEADER = (
    "start", "response_time_ms", "failed", "name", "stopped_at", *REQUEST_LOG_ANSWER,
)  # fmt: skip
# a failure message is kept to this many characters
ERROR_TEXT_MAX = 200
REQUEST_LOG_CAP = int(os.environ.get("LOADTEST_REQUEST_LOG_CAP") or 2_000_000)
# the key of a worker's report that carries its requests to the master
REQUEST_LOG_KEY = "request_log"

LATENCY_LOG_SUFFIX = "_latency.hlog"
# the key of a worker's report that carries its closed seconds' histograms
LATENCY_KEY = "latency_intervals"
# the histograms' range, in microseconds, and precision: 1 us to an hour, 3 significant digits
HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_SIGNIFICANT_DIGITS = 3
# the histogram log's max column is in milliseconds
HDR_MAX_UNIT_RATIO = 1000.0
US_PER_S = 1_000_000

logger = logging.getLogger(__name__)


def _non_negative(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _task_n(text):
    value = int(text)
    if not 1 <= value <= TASK_N_MAX:
        raise argparse.ArgumentTypeError(f"must be 1 to {TASK_N_MAX}, got {text}")
    return value


@events.init_command_line_parser.add_listener
def _add_arguments(parser):
    group = parser.add_argument_group("Flask Deploy Lab")
    group.add_argument(
        "--loadtest-delay",
        type=_non_negative,
        env_var="LOADTEST_DELAY",
        default=DEFAULTS["loadtest_delay"],
        help="seconds of ?delay= for /slow and /sleep",
    )
    group.add_argument(
        "--loadtest-queries",
        type=int,
        env_var="LOADTEST_QUERIES",
        default=DEFAULTS["loadtest_queries"],
        help="?n= for /queries",
    )
    group.add_argument(
        "--loadtest-task-kind",
        choices=TASK_KINDS,
        env_var="LOADTEST_TASK_KIND",
        default=DEFAULTS["loadtest_task_kind"],
        help="the work each POST /tasks asks for: render (CPU) or upstream (the slow API)",
    )
    group.add_argument(
        "--loadtest-task-n",
        type=_task_n,
        env_var="LOADTEST_TASK_N",
        default=DEFAULTS["loadtest_task_n"],
        help="how many times a render task renders its post",
    )
    group.add_argument(
        "--loadtest-task-poll",
        type=_positive,
        env_var="LOADTEST_TASK_POLL",
        default=DEFAULTS["loadtest_task_poll"],
        help="seconds between polls of GET /tasks/<id>",
    )
    group.add_argument(
        "--loadtest-task-timeout",
        type=_positive,
        env_var="LOADTEST_TASK_TIMEOUT",
        default=DEFAULTS["loadtest_task_timeout"],
        help="seconds a task may stay 202 before its poll fails",
    )
    group.add_argument(
        "--loadtest-allowed-hosts",
        env_var="LOADTEST_ALLOWED_HOSTS",
        default=DEFAULTS["loadtest_allowed_hosts"],
        help="comma-separated host names or addresses a test may target (empty: any); "
        "a test against another host is stopped before its users send anything",
    )
    group.add_argument(
        "--loadtest-max-run-time",
        type=_non_negative,
        env_var="LOADTEST_MAX_RUN_TIME",
        default=DEFAULTS["loadtest_max_run_time"],
        help="seconds after which a test stops by itself, whatever the web UI asked (0: no limit)",
    )
    group.add_argument(
        "--loadtest-in-step",
        action="store_true",
        env_var="LOADTEST_IN_STEP",
        default=DEFAULTS["loadtest_in_step"],
        help="users of /slow and /sleep send their first request at once, not each after a "
        "random share of one delay",
    )


def _option(environment, name):
    """A --loadtest-* value; the environment variable when Locust parsed no options."""
    options = environment.parsed_options
    if options is not None and getattr(options, name, None) is not None:
        return getattr(options, name)
    default = DEFAULTS[name]
    raw = os.environ.get(name.upper())
    if raw in (None, ""):
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return type(default)(raw)


def _local_path(location):
    """Path and query of a Location header, so polls go to --host even if it is absolute."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _json(resp):
    try:
        return resp.json()
    except (TypeError, ValueError):
        return None


def _judge(resp, expected_status, check=None):
    """Mark resp failed unless it has the expected status and check(resp) returns no complaint.

    A transport error (status 0) is left alone: Locust reports the exception itself.
    """
    if resp.status_code == 0:
        return
    if resp.status_code != expected_status:
        resp.failure(f"HTTP {resp.status_code}, expected {expected_status}")
        return
    complaint = check(resp) if check else None
    if complaint:
        resp.failure(complaint)
    else:
        resp.success()


def _json_object(resp):
    body = _json(resp)
    if not isinstance(body, dict) or not body:
        return "body is not a non-empty JSON object"
    return None


def _world_row(resp):
    body = _json(resp)
    if not isinstance(body, dict) or "id" not in body:
        return "body is not a JSON row with an id"
    return None


def _html(resp):
    content_type = (resp.headers or {}).get("Content-Type", "")
    if not content_type.startswith("text/html") or not resp.content:
        return f"body is not HTML (Content-Type {content_type or 'missing'})"
    return None


def _non_empty(resp):
    return None if resp.content else "empty body"


class InFlight:
    """The requests this process's users have begun and not yet seen return."""

    def __init__(self):
        self._begun = {}  # token -> (Unix time begun, name)
        self._tokens = itertools.count()

    def __len__(self):
        return len(self._begun)

    def tracking(self, request):
        """`request` (an HTTP client's request method), noting each call here
        while it runs. A call that returns or raises an error is forgotten; one
        killed (GreenletExit, as Locust stops its users) stays noted."""

        @functools.wraps(request)
        def tracked(method, url, *args, name=None, **kwargs):
            token = next(self._tokens)
            self._begun[token] = (time.time(), name or url)
            try:
                response = request(method, url, *args, name=name, **kwargs)
            except Exception:
                self._begun.pop(token, None)
                raise
            self._begun.pop(token, None)
            return response

        return tracked

    def take(self):
        """[(Unix time begun, name)] of what is noted, oldest first; forgets them."""
        begun = sorted(self._begun.values(), key=lambda item: item[0])
        self._begun.clear()
        return begun


# the requests in flight of this process's users
IN_FLIGHT = InFlight()


def _allowed_hosts(environment):
    """The host names a test may target, as a set; empty: any."""
    raw = _option(environment, "loadtest_allowed_hosts")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


def _target_refused(environment, host):
    """Why a test must not load host (a URL), or None when it may."""
    allowed = _allowed_hosts(environment)
    name = (urlsplit(host or "").hostname or "").lower()
    if allowed and name not in allowed:
        return f"the target {host!r} is not one of {', '.join(sorted(allowed))}"
    return None


@events.test_start.add_listener
def _guard_test(environment, **_kwargs):
    """On the master (or a single process): a test against a host the run does
    not allow is stopped at once (the web UI's Host field is editable), and
    every test stops by itself after --loadtest-max-run-time, even one the
    web UI started without a run time."""
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    refused = _target_refused(environment, environment.host)
    if refused:
        logger.error("%s: the test is stopped", refused)
        gevent.spawn(_stop_once_spawned, runner)
        return
    limit = _option(environment, "loadtest_max_run_time")
    if limit > 0:
        # a limit belongs to the test that set it: a later test gets its own
        _TESTS_STARTED[0] += 1
        test = _TESTS_STARTED[0]

        def stop_if_still_running():
            running = runner.state not in (STATE_INIT, STATE_STOPPING, STATE_STOPPED)
            if running and _TESTS_STARTED[0] == test:
                logger.warning("the test ran for its limit of %g s: stopped", limit)
                runner.stop()

        gevent.spawn_later(limit, stop_if_still_running)


# tests started in this process, so that a limit stops only its own test
_TESTS_STARTED = [0]
# how long a refused test may take to finish spawning before it is stopped
_SPAWN_WAIT_S = 10


def _stop_once_spawned(runner):
    """Stop a test once its start has gone through (a stop while the master
    still hands out users is overtaken by the spawning, which then reports
    the test running); its users have sent nothing (each refuses at its start)."""
    deadline = time.monotonic() + _SPAWN_WAIT_S
    while runner.state != STATE_RUNNING and time.monotonic() < deadline:
        gevent.sleep(0.1)
    runner.stop()


class _EndpointUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    endpoint = ""
    # the option whose seconds are one round of a request (a delay-bound
    # endpoint's ?delay=): the first request waits a random share of it
    round_option = None

    def __init__(self, environment):
        super().__init__(environment)
        # every request of the user goes through client.request (get, post, ...)
        self.client.request = IN_FLIGHT.tracking(self.client.request)

    def on_start(self):
        # The worker's own check, before the first request: the master's
        # comes when the test has already started.
        refused = _target_refused(self.environment, self.host)
        if refused:
            logger.error("%s: this user sends nothing", refused)
            raise StopUser()
        if self.round_option and not self.option("loadtest_in_step"):
            # out of step with the users started with it (the module's docstring)
            gevent.sleep(random.random() * self.option(self.round_option))  # noqa: S311

    def option(self, name):
        return _option(self.environment, name)

    def get_checked(self, path, check=None, **params):
        with self.client.get(path, params=params or None, name=path, catch_response=True) as resp:
            _judge(resp, 200, check)


class _GetUser(_EndpointUser):
    """GET /<endpoint> in a loop: the class says how to check the answer and
    which of the run's options become query parameters."""

    abstract = True
    check = None  # a function(response) -> a failure message or None
    params = ()  # (query parameter, option name) pairs

    # not `json`: Locust's web UI calls User.json() on every class
    @task
    def get_endpoint(self):
        params = {name: self.option(option) for name, option in self.params}
        self.get_checked(f"/{self.endpoint}", self.check, **params)


class HealthzUser(_GetUser):
    endpoint = "healthz"


class JsonUser(_GetUser):
    endpoint = "json"
    check = staticmethod(_json_object)


class SlowUser(_GetUser):
    endpoint = "slow"
    params = (("delay", "loadtest_delay"),)
    round_option = "loadtest_delay"


class DbUser(_GetUser):
    endpoint = "db"
    check = staticmethod(_world_row)


class QueriesUser(_EndpointUser):
    endpoint = "queries"

    @task
    def queries(self):
        n = self.option("loadtest_queries")
        expected = min(max(n, QUERIES_MIN), QUERIES_MAX)

        def rows(resp):
            body = _json(resp)
            if not isinstance(body, list) or len(body) != expected:
                return f"body is not a JSON list of {expected} rows"
            if not isinstance(body[0], dict) or "id" not in body[0]:
                return "rows have no id"
            return None

        self.get_checked("/queries", rows, n=n)


class FortunesUser(_GetUser):
    endpoint = "fortunes"
    check = staticmethod(_html)


class SleepUser(_GetUser):
    endpoint = "sleep"
    params = (("delay", "loadtest_delay"),)
    round_option = "loadtest_delay"


class RenderUser(_GetUser):
    endpoint = "render"
    check = staticmethod(_non_empty)


def _task_done(response):
    """None when a 200 of GET /tasks/<id> says the task is done, else why not."""
    body = _json(response)
    if not isinstance(body, dict):
        return "body is not a JSON object"
    if body.get("status") != "done":
        return f"task {body.get('status')}: {body.get('error') or 'no reason given'}"
    return None


class TasksUser(_EndpointUser):
    """POST /tasks, then poll its Location until 200; each poll is one /tasks/[id] request."""

    endpoint = "tasks"

    @task
    def start_task_and_poll(self):
        kind = self.option("loadtest_task_kind")
        body = {"kind": kind}
        if kind == "render":
            body["n"] = self.option("loadtest_task_n")
        else:
            body["delay"] = self.option("loadtest_delay")
        with self.client.post("/tasks", json=body, name="/tasks", catch_response=True) as resp:
            location = (resp.headers or {}).get("Location") if resp.status_code == 202 else None
            _judge(resp, 202, lambda r: None if location else "202 without a Location header")
        if not location:
            return
        poll_path = _local_path(location)
        deadline = time.monotonic() + self.option("loadtest_task_timeout")
        while True:
            with self.client.get(poll_path, name="/tasks/[id]", catch_response=True) as resp:
                if resp.status_code != 202:
                    # 200 with status failed: the work failed, and the client is told why
                    _judge(resp, 200, _task_done)
                    return
                if time.monotonic() > deadline:
                    resp.failure("task still 202 after LOADTEST_TASK_TIMEOUT")
                    return
                resp.success()
            # locust monkey-patches time.sleep to yield to other users
            time.sleep(self.option("loadtest_task_poll"))


def _answer(response):
    """(status, declared Content-Length or -1, Retry-After or "") of a Locust
    response; (0, -1, "") when there was none."""
    if response is None:
        return 0, -1, ""
    headers = getattr(response, "headers", None) or {}
    try:
        length = int(headers.get("Content-Length", -1))
    except (TypeError, ValueError):
        length = -1
    status = getattr(response, "status_code", 0) or 0
    return min(max(int(status), 0), 65535), length, str(headers.get("Retry-After") or "")


class RequestLog:
    """Requests kept in columns (about 47 bytes each), at most `cap` of them,
    and beside them the requests in flight when a test stopped (`unfinished`:
    Unix time begun, Unix time stopped, name).

    One more than the cap abandons the log: what it holds is dropped, and it
    only counts the requests it is handed from then on (`overflowed`).
    """

    def __init__(self, cap=REQUEST_LOG_CAP):
        self.cap = cap
        self.overflowed = False
        self.seen = 0
        self._clear()

    def _clear(self):
        self.starts = array("d")  # Unix seconds
        self.response_times = array("d")  # milliseconds
        self.failed = bytearray()
        self.name_ids = array("I")  # indexes into names
        self.names = []
        self._name_id = {}
        self.statuses = array("H")  # 0: no HTTP answer
        self.content_lengths = array("q")  # -1: no Content-Length
        self.body_bytes = array("q")
        # Retry-After values and failure messages, each held once: indexes into
        # texts, whose first entry "" is none
        self.retry_after_ids = array("I")
        self.error_ids = array("I")
        self.texts = [""]
        self._text_id = {"": 0}
        self.unfinished = []  # (start, stopped, name) of each request in flight at a stop

    def __len__(self):
        return len(self.starts)

    def _text(self, text):
        text_id = self._text_id.get(text)
        if text_id is None:
            text_id = self._text_id[text] = len(self.texts)
            self.texts.append(text)
        return text_id

    def add(
        self, start, response_time, failed, name, status=0, content_length=-1, body_bytes=0,
        retry_after="", error="",
    ):  # fmt: skip
        self.seen += 1
        if self.overflowed:
            return
        if len(self) >= self.cap:
            self._overflow()
            return
        name_id = self._name_id.get(name)
        if name_id is None:
            name_id = self._name_id[name] = len(self.names)
            self.names.append(name)
        self.starts.append(start)
        self.response_times.append(response_time)
        self.failed.append(1 if failed else 0)
        self.name_ids.append(name_id)
        self.statuses.append(status)
        self.content_lengths.append(content_length)
        self.body_bytes.append(body_bytes)
        self.retry_after_ids.append(self._text(retry_after))
        self.error_ids.append(self._text(error))

    def add_unfinished(self, begun, stopped):
        """The requests in flight when the test stopped: InFlight.take()'s
        (start, name) pairs, and the Unix time of the stop."""
        if not self.overflowed:
            self.unfinished += [(start, stopped, name) for start, name in begun]

    def _overflow(self):
        logger.warning(
            "more than %d requests: the request log is abandoned and no %s will be written",
            self.cap,
            REQUEST_LOG_SUFFIX,
        )
        self.overflowed = True
        self._clear()

    def on_request(
        self, name, response_time, exception=None, start_time=None, response=None,
        response_length=0, **_kwargs,
    ):  # fmt: skip
        """Listener of Locust's request event. A request without a response
        time (none of this file's users make one) is not kept; one without a
        start time is taken to have started response_time before now."""
        if response_time is None:
            return
        if start_time is None:
            start_time = time.time() - response_time / 1000
        status, content_length, retry_after = _answer(response)
        error = "" if exception is None else (str(exception) or type(exception).__name__)
        error = error[:ERROR_TEXT_MAX]
        self.add(
            start_time, response_time, exception is not None, name, status, content_length,
            response_length or 0, retry_after, error,
        )  # fmt: skip

    def take(self):
        """The requests held, as a message for the master, and an empty log."""
        message = {
            "start": self.starts.tolist(),
            "response_time": self.response_times.tolist(),
            "failed": list(self.failed),
            "name": self.name_ids.tolist(),
            "names": self.names,
            "status": self.statuses.tolist(),
            "content_length": self.content_lengths.tolist(),
            "body_bytes": self.body_bytes.tolist(),
            "retry_after": self.retry_after_ids.tolist(),
            "error": self.error_ids.tolist(),
            "texts": self.texts,
            "unfinished": [list(item) for item in self.unfinished],
            "seen": self.seen,
            "overflowed": self.overflowed,
        }
        self.overflowed = False
        self.seen = 0
        self._clear()
        return message

    def merge(self, message):
        """Add the requests of a message from take() (a worker's report); a
        message from a log that was abandoned abandons this one."""
        if not message:
            return
        if message["overflowed"]:
            if not self.overflowed:
                self._overflow()
            self.seen += message["seen"]
            return
        names, texts = message["names"], message.get("texts", [""])
        count = len(message["start"])
        # a report without the answers (an older locustfile's): none known
        answers = [
            message.get(key, [default] * count)
            for key, default in (
                ("status", 0), ("content_length", -1), ("body_bytes", 0), ("retry_after", 0),
                ("error", 0),
            )
        ]  # fmt: skip
        for row in zip(
            message["start"],
            message["response_time"],
            message["failed"],
            message["name"],
            *answers,
            strict=True,
        ):
            start, response_time, failed, name_id, status, length, received, retry, error = row
            self.add(
                start, response_time, failed, names[name_id], status, length, received,
                texts[retry], texts[error],
            )  # fmt: skip
        if not self.overflowed:
            self.unfinished += [tuple(item) for item in message.get("unfinished", ())]

    def write(self, path):
        """The requests, sorted by completion, then those in flight at a stop,
        oldest first, into the CSV file at path (written whole or not at all);
        nothing, and no stale file there, once abandoned."""
        if self.overflowed:
            logger.warning(
                "the request log went over its cap (%d requests seen, a process keeps at "
                "most %d): %s not written",
                self.seen,
                self.cap,
                path,
            )
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return
        starts, response_times = self.starts, self.response_times
        order = sorted(range(len(self)), key=lambda i: starts[i] + response_times[i] / 1000)
        partial = f"{path}.partial"
        with open(partial, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(REQUEST_LOG_HEADER)
            for i in order:
                length = self.content_lengths[i]
                writer.writerow(
                    (
                        f"{starts[i]:.6f}",
                        f"{response_times[i]:.3f}",
                        self.failed[i],
                        self.names[self.name_ids[i]],
                        "",
                        self.statuses[i],
                        "" if length < 0 else length,
                        self.body_bytes[i],
                        self.texts[self.retry_after_ids[i]],
                        self.texts[self.error_ids[i]],
                    )
                )
            blank = ("",) * len(REQUEST_LOG_ANSWER)
            for start, stopped, name in sorted(self.unfinished):
                writer.writerow((f"{start:.6f}", "", "", name, f"{stopped:.6f}", *blank))
        os.replace(partial, path)
        logger.info(
            "wrote %d requests and %d in flight at the stop to %s",
            len(self),
            len(self.unfinished),
            path,
        )


def _histogram():
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)


class LatencyIntervals:
    """This process's requests' response times, one HdrHistogram per whole
    Unix second of completion (an interval, ``[start, start + 1)``), until
    the master has them.

    A second is open while it may still get requests and closed (encoded, its
    histogram dropped) once it is over; `take` hands the closed ones on. A
    request whose event comes after its second was closed opens that second
    again: the master merges both by their start.
    """

    def __init__(self):
        self._open = {}  # start (Unix second) -> HdrHistogram
        self._closed = []  # [start, encoded histogram], in the order closed

    def __len__(self):
        """The seconds held, open or closed."""
        return len(self._open) + len(self._closed)

    def record(self, completed_us, response_time_us):
        """One request that completed at completed_us (Unix time, whole
        microseconds) after response_time_us; a value past the histogram's
        range is recorded as its highest (an hour)."""
        start = completed_us // US_PER_S
        histogram = self._open.get(start)
        if histogram is None:
            histogram = self._open[start] = _histogram()
        histogram.record_value(min(max(response_time_us, 0), HDR_HIGHEST_US))

    def on_request(self, response_time, exception=None, start_time=None, **_kwargs):
        """Listener of Locust's request event, failures included. The second is
        the request log's completion (start + response time, each in whole
        microseconds); a request without a start time completed now, and one
        without a response time (none of this file's users make one) is not
        recorded."""
        if response_time is None:
            return
        response_time_us = round(response_time * 1000)
        if start_time is None:
            completed_us = round(time.time() * US_PER_S)
        else:
            completed_us = round(start_time * US_PER_S) + response_time_us
        self.record(completed_us, response_time_us)

    def close(self, now=None):
        """Close the seconds that are over by now (Unix time, default the
        clock's); math.inf closes every one."""
        now = time.time() if now is None else now
        for start in sorted(self._open):
            if start + 1 <= now:
                histogram = self._open.pop(start)
                self._closed.append([start, histogram.encode().decode("ascii")])

    def close_all(self, **_kwargs):
        """A test_stop listener: the users are stopped, so no second gets more."""
        self.close(math.inf)

    def take(self, now=None):
        """The seconds closed by now (`close`), as a message for the master
        (a list of [start, encoded histogram]); forgets them."""
        self.close(now)
        closed, self._closed = self._closed, []
        return closed


class LatencyLog:
    """The master's (or the single process's) intervals: every process's
    histograms of a second merged into one, kept encoded (a few kilobytes a
    second) until it writes the interval log."""

    def __init__(self):
        self._merged = {}  # start -> encoded histogram

    def __len__(self):
        return len(self._merged)

    def merge(self, intervals):
        """Add a message of `LatencyIntervals.take` (a worker's report; None,
        a report without the key, adds nothing) to the seconds of the same
        start."""
        for start, encoded in intervals or ():
            histogram = HdrHistogram.decode(encoded)
            earlier = self._merged.get(start)
            if earlier is not None:
                histogram.add(HdrHistogram.decode(earlier))
            self._merged[start] = histogram.encode().decode("ascii")

    def histogram(self, start):
        """The merged histogram of the second that starts at `start`, or None."""
        encoded = self._merged.get(start)
        return HdrHistogram.decode(encoded) if encoded is not None else None

    def write(self, path):
        """The HdrHistogram interval log, seconds sorted by start, into the
        file at path (written whole or not at all)."""
        starts = sorted(self._merged)
        partial = f"{path}.partial"
        with open(partial, "w") as handle:
            writer = HistogramLogWriter(handle)
            writer.output_log_format_version()
            writer.output_comment(
                "[every request's response time in microseconds, one interval per second "
                "of completion; max in milliseconds]"
            )
            if starts:
                # written here: hdrh 0.10.8's output_start_time reads its milliseconds as seconds
                iso = datetime.fromtimestamp(starts[0], UTC).isoformat()
                writer.output_comment(f"[StartTime: {starts[0]:.3f} (seconds since epoch), {iso}]")
            writer.output_legend()
            for start in starts:
                writer.output_interval_histogram(
                    self.histogram(start), start, start + 1, HDR_MAX_UNIT_RATIO
                )
        os.replace(partial, path)
        logger.info("wrote %d seconds of latency histograms to %s", len(starts), path)


def _take_unfinished(log):
    """A test_stop listener: the requests still in flight once the users are stopped."""

    def on_test_stop(**_kwargs):
        log.add_unfinished(IN_FLIGHT.take(), time.time())

    return on_test_stop


@events.init.add_listener
def _log_requests(environment, **_kwargs):
    """Record every request, and those in flight when a test stops: a worker
    for its next report to the master, the master or a single process for the
    request log and the latency histograms it writes when it quits."""
    runner = environment.runner
    if runner is None:
        return
    if isinstance(runner, WorkerRunner):
        since_report = RequestLog()
        intervals = LatencyIntervals()
        environment.events.request.add_listener(since_report.on_request)
        environment.events.request.add_listener(intervals.on_request)
        environment.events.test_stop.add_listener(_take_unfinished(since_report))
        environment.events.test_stop.add_listener(intervals.close_all)

        def on_report_to_master(client_id, data, **_kwargs):
            data[REQUEST_LOG_KEY] = since_report.take()
            data[LATENCY_KEY] = intervals.take()

        environment.events.report_to_master.add_listener(on_report_to_master)
        return
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    if not prefix:
        return
    log, latencies = RequestLog(), LatencyLog()
    own = None  # a single process's own seconds
    if isinstance(runner, MasterRunner):

        def on_worker_report(client_id, data, **_kwargs):
            log.merge(data.get(REQUEST_LOG_KEY))
            latencies.merge(data.get(LATENCY_KEY))

        environment.events.worker_report.add_listener(on_worker_report)
    else:
        own = LatencyIntervals()
        environment.events.request.add_listener(log.on_request)
        environment.events.request.add_listener(own.on_request)
        environment.events.test_stop.add_listener(_take_unfinished(log))

    def on_quit(**_kwargs):
        log.write(prefix + REQUEST_LOG_SUFFIX)
        if own is not None:
            # every second, the one still open included: the users are stopped
            latencies.merge(own.take(math.inf))
        latencies.write(prefix + LATENCY_LOG_SUFFIX)

    environment.events.quit.add_listener(on_quit)


USER_CLASSES = {
    cls.endpoint: cls
    for cls in (
        HealthzUser,
        JsonUser,
        SlowUser,
        DbUser,
        QueriesUser,
        FortunesUser,
        SleepUser,
        RenderUser,
        TasksUser,
    )
}
