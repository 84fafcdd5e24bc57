"""redis-restart: Redis, the task broker, stopped for 5 s under a load of render
tasks, then started (systemctl stop, 5 s, systemctl start: a restart with time
to see the outage).

With Redis down ``POST /tasks`` cannot publish: the app answers 503 with
Retry-After in about a second (its publish timeouts) and commits no row.

Targets, from the request log (request_log.py; the POSTs, named ``/tasks``):
every failed POST is a 503 with Retry-After (no 500, no answerless failure);
at least one was refused (the outage was seen); the p99 latency of the POSTs
started while Redis was down is at most MAX_POST_P99_S (a request in flight at
the run's end counts with how long it had waited: no hang); the first 202
comes at most MAX_RECOVERY_S after Redis accepts connections again, and no
POST fails later than that. From the ``task`` table (the rows created during
the run, read once none is pending or at the deadline): no task that got a
202 is lost: at least as many rows as 202s, every row ``done``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask_deploy_lab import PROJECT_DIR
from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    OK,
    REFUSAL_FIELDS,
    RequestLog,
    cannot_judge,
    percentile,
    started_between,
)
from flask_deploy_lab.faults.stack import Stack, role_default
from flask_deploy_lab.faults.task_rows import DONE, FAILED, PENDING, TaskRow, TaskSettings

NAME = "redis-restart"
REDIS_UNIT = "redis-server.service"
REDIS_DEFAULTS = PROJECT_DIR / "roles" / "redis" / "defaults" / "main.yml"
LOAD = LoadSpec("tasks", users=10, duration=30, task_kind="render", task_n=5)
DOWN_S = 5
READY_TIMEOUT_S = 60
MAX_POST_P99_S = 2.0
MAX_RECOVERY_S = 5.0
# On top of the visibility timeout and one run's time limit, for the tasks to finish.
SLACK_S = 20.0
POST_NAME = "/tasks"
P99 = 0.99
# Redis answers on loopback (the redis role always binds it): ready once it
# answers a PING, PONG or the refusal without the password (it is serving).
READY_CODE = (
    "import socket,sys\n"
    "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),1)\n"
    "s.settimeout(1);s.sendall(b'PING\\r\\n');r=s.recv(64)\n"
    "sys.exit(0 if r.startswith((b'+PONG',b'-NOAUTH')) else 1)"
)


def ready_argv(port: int) -> list[str]:
    return ["python3", "-c", READY_CODE, str(port)]


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    broker: str
    unit: str
    # seconds into the measured run it was stopped, and for how long it was asked to be
    at_s: float
    down_s: float


@dataclass(frozen=True)
class Observation:
    # Unix times: stop asked, stopped, start asked, answering again (the broker host's clock)
    stopping_at: float
    down_at: float
    starting_at: float
    back_at: float
    settings: TaskSettings
    rows: tuple[TaskRow, ...] = ()
    load: LoadFigures | None = None
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None

    @property
    def posts(self):
        """Every POST, completed or in flight at the end."""
        return [r for r in self.requests.requests if r.name == POST_NAME] if self.requests else []

    @property
    def failed_posts(self):
        return [r for r in self.posts if r.finished and r.outcome != OK]

    @property
    def wrong(self):
        """Failed POSTs that are not 503s."""
        return [r for r in self.failed_posts if r.status != 503]

    @property
    def without_retry_after(self):
        return [r for r in self.failed_posts if r.status == 503 and not r.retry_after]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.posts if r.finished and r.status == 202)

    @property
    def while_down(self):
        """The POSTs started while Redis was down."""
        return started_between(self.posts, self.stopping_at, self.back_at)

    @property
    def p99_while_down_s(self) -> float | None:
        p99 = percentile([r.latency_ms for r in self.while_down], P99)
        return None if p99 is None else round(p99 / 1000, 3)

    @property
    def first_accepted_s(self) -> float | None:
        """Seconds from Redis answering again to the first 202 of a POST started
        after it stopped; None when none came."""
        ends = [
            r.end for r in self.posts
            if r.finished and r.status == 202 and r.start >= self.down_at
        ]  # fmt: skip
        return round(max(0.0, min(ends) - self.back_at), 1) if ends else None

    @property
    def last_failure_s(self) -> float | None:
        """Seconds from Redis answering again to the last failed POST (0: none after)."""
        if not self.failed_posts:
            return None
        return round(max(0.0, max(r.end for r in self.failed_posts) - self.back_at), 1)

    @property
    def not_done(self) -> list[TaskRow]:
        return [r for r in self.rows if r.status != DONE]

    @property
    def lost(self) -> int:
        """202s without a row: at least this many accepted tasks are gone."""
        return max(0, self.accepted - len(self.rows))


@dataclass(frozen=True)
class _Injected:
    load: object
    times: dict
    settings: TaskSettings


class RedisRestart(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        settings = stack.task_settings(label=f"{NAME}-settings")
        broker = stack.broker
        port = role_default(REDIS_DEFAULTS, "redis_port")
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        down_at = t0 + FAULT_AT_S
        times = stack.outage(
            broker, REDIS_UNIT, at=down_at, down_s=DOWN_S, ready_argv=ready_argv(port),
            ready_timeout=READY_TIMEOUT_S, what="Redis", label=NAME,
        )  # fmt: skip
        note(f"Redis answering {times['ready_at'] - times['down_at']:.1f} s after the stop")
        done = Done(LOAD, broker, REDIS_UNIT, times["down_at"] - t0, DOWN_S)
        return done, _Injected(load, times, settings)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        load, times, settings = injected.load, injected.times, injected.settings
        result = load.finish()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        bound = settings.visibility_timeout_s + settings.time_limit_s + SLACK_S
        note(f"wait for the run's tasks (at most {bound:.0f} s)")
        ended = time.time()
        rows = stack.wait_tasks(load.launched - 1, ended, ended + bound, label=f"{NAME}-tasks")
        return Observation(
            stopping_at=times.get("stopping_at", times["down_at"]),
            down_at=times["down_at"],
            starting_at=times["starting_at"],
            back_at=times["ready_at"],
            settings=settings,
            rows=tuple(rows),
            load=load.figures(),
            requests=load.requests(),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        missed = []
        why = cannot_judge(seen.requests, *REFUSAL_FIELDS)
        if why:
            missed.append(why)
        else:
            missed += judge_posts(seen)
        if seen.lost:
            missed.append(
                f"{seen.lost} tasks answered 202 have no row ({seen.accepted} 202s, "
                f"{len(seen.rows)} rows)"
            )
        failed = [r for r in seen.not_done if r.status == FAILED]
        pending = [r for r in seen.not_done if r.status in PENDING]
        if failed:
            missed.append(f"{len(failed)} of {len(seen.rows)} tasks failed")
        if pending:
            missed.append(f"{len(pending)} of {len(seen.rows)} tasks never finished")
        return Outcome.judged(NAME, done, seen, missed)


def judge_posts(seen: Observation) -> list[str]:
    """The targets the request log judges."""
    missed = []
    refused = [r for r in seen.failed_posts if r.status == 503]
    if not refused:
        missed.append("no POST /tasks was refused: Redis's outage was not seen")
    if seen.wrong:
        statuses = sorted({r.status for r in seen.wrong})
        missed.append(
            f"{len(seen.wrong)} failed POSTs other than 503 "
            f"(status {', '.join(map(str, statuses))})"
        )
    if seen.without_retry_after:
        missed.append(f"{len(seen.without_retry_after)} of {len(refused)} 503s without Retry-After")
    p99 = seen.p99_while_down_s
    if p99 is not None and p99 > MAX_POST_P99_S:
        missed.append(
            f"p99 {p99:g} s of the {len(seen.while_down)} POSTs started while Redis was down, "
            f"more than {MAX_POST_P99_S:g} s"
        )
    first = seen.first_accepted_s
    if first is None:
        missed.append("no POST was answered 202 after Redis was back")
    elif first > MAX_RECOVERY_S:
        missed.append(
            f"the first 202 {first} s after Redis was back, more than {MAX_RECOVERY_S:g} s"
        )
    last = seen.last_failure_s
    if last is not None and last > MAX_RECOVERY_S:
        missed.append(
            f"a failed POST {last} s after Redis was back, more than {MAX_RECOVERY_S:g} s"
        )
    return missed
