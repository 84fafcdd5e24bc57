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
    ``--loadtest-task-seconds`` / ``LOADTEST_TASK_SECONDS``
        ``{"seconds": ...}`` of background work each ``POST /tasks`` asks for
        (default 1.0, the app's own default)
    ``--loadtest-task-poll`` / ``LOADTEST_TASK_POLL``
        seconds between polls of ``GET /tasks/<id>`` (default 0.1)
    ``--loadtest-task-timeout`` / ``LOADTEST_TASK_TIMEOUT``
        seconds a task may stay ``202`` before the poll counts as a failure
        (default 30)

    The target is Locust's own ``--host``; nothing here names a lab.

Measured runs
    Add ``--reset-stats`` (master and workers) so the CSVs leave out the
    ramp-up, and ``--csv <cell>/locust --csv-full-history --html
    <cell>/locust_report.html``: the layout the report (``flask_deploy_lab.report``) reads.

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
import os
import time
from urllib.parse import urlsplit

from locust import FastHttpUser, constant, events, task

DEFAULTS = {
    "loadtest_delay": 0.1,
    "loadtest_queries": 20,
    "loadtest_task_seconds": 1.0,
    "loadtest_task_poll": 0.1,
    "loadtest_task_timeout": 30.0,
}
QUERIES_MIN, QUERIES_MAX = 1, 500


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
        "--loadtest-task-seconds",
        type=_non_negative,
        env_var="LOADTEST_TASK_SECONDS",
        default=DEFAULTS["loadtest_task_seconds"],
        help="seconds of background work each POST /tasks asks for",
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


def _option(environment, name):
    """A --loadtest-* value; the environment variable when Locust parsed no options."""
    options = environment.parsed_options
    if options is not None and getattr(options, name, None) is not None:
        return getattr(options, name)
    default = DEFAULTS[name]
    raw = os.environ.get(name.upper())
    return type(default)(raw) if raw not in (None, "") else default


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


class _EndpointUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)
    endpoint = ""

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


class RenderUser(_GetUser):
    endpoint = "render"
    check = staticmethod(_non_empty)


class TasksUser(_EndpointUser):
    """POST /tasks, then poll its Location until 200; each poll is one /tasks/[id] request."""

    endpoint = "tasks"

    @task
    def start_task_and_poll(self):
        body = {"seconds": self.option("loadtest_task_seconds")}
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
                    _judge(resp, 200)
                    return
                if time.monotonic() > deadline:
                    resp.failure("task still 202 after LOADTEST_TASK_TIMEOUT")
                    return
                resp.success()
            # locust monkey-patches time.sleep to yield to other users
            time.sleep(self.option("loadtest_task_poll"))


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
