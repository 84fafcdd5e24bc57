"""celery-kill: kill -9 of the Celery worker (its main process and its pool
at once) on a worker host, mid-task: from 8 s into a load of upstream tasks
(2 s each), at the first moment a pool process holds a connection to the slow
upstream (the task's call, a connection per call), looked for every 20 ms on
the worker host for at most BUSY_TIMEOUT_S.

The worker acknowledges a task after it ran (late acks): the tasks the killed
worker held stay unacknowledged in Redis, which hands them out again once the
visibility timeout is over; systemd restarts the unit (Restart=always).

Targets, from the ``task`` table on the db host (the rows created during the
run, read once none is queued or running, or at the deadline): every task
reaches ``done`` within the visibility timeout + the time limit + SLACK_S of
the kill (of its creation, for one created after the kill): none ``failed``,
none left ``queued`` or ``running``; at least one task was in flight at the
kill (the pool's connections to the upstream, counted with every process
stopped just before the SIGKILL: else the kill hit an idle worker), and each of
them was delivered again (as many tasks with attempts > 1: else the kill
measured nothing, or a task was lost);
systemd started a new main process (a new MainPID) within RESTART_LIMIT_S of
the kill (RestartSec=1); where systemd cannot see the unit's cgroup empty (in
a container on a cgroup v1 or hybrid host: it waits in stop-sigkill for the
unit's TimeoutStopSec, see hostside/workers.py) within TimeoutStopSec +
RESTART_LIMIT_S, and the line says so;
no ``POST /tasks`` failed (the broker was up: from the request log). Reported:
the tasks redelivered and how long after the kill they were done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import workers
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import STATUS, RequestLog, cannot_judge
from flask_deploy_lab.faults.stack import Stack
from flask_deploy_lab.faults.task_rows import (
    CELERY_UNIT,
    DONE,
    FAILED,
    PENDING,
    TaskRow,
    TaskSettings,
)

NAME = "celery-kill"
# A few users, each posting an upstream task of 2 s and polling it: the two pool
# processes of the worker are busy most of the time.
LOAD = LoadSpec("tasks", users=4, duration=30, delay=2.0, task_kind="upstream")
# Seconds systemd has to start a new main process after the kill (RestartSec=1,
# and the exec), on top of TimeoutStopSec where it cannot see the cgroup empty.
RESTART_LIMIT_S = 5.0
# Seconds the worker host looks for the new main process (and TimeoutStopSec more
# where systemd cannot see the cgroup empty).
RESTART_TIMEOUT_S = 30
# On top of the visibility timeout and one run's time limit: kombu's scan for
# expired tasks (every visibility/5 s, at most 10 s), the unit's restart and
# the worker's reconnection.
SLACK_S = 20.0
# Seconds from FAULT_AT_S the worker host waits for a task in flight to kill.
BUSY_TIMEOUT_S = 10.0
# The name of the request log's POSTs (the locustfile's TasksUser).
POST_NAME = "/tasks"


def bound_s(settings: TaskSettings) -> float:
    """The visibility timeout, one run's time limit and the slack."""
    return settings.visibility_timeout_s + settings.time_limit_s + SLACK_S


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    worker: str
    unit: str
    main_pid: int
    pool_processes: int
    # seconds into the measured run, and the Unix time (the worker host's clock)
    at_s: float
    at: float


@dataclass(frozen=True)
class Observation:
    settings: TaskSettings
    # Unix time of the kill
    kill_at: float
    main_pid_before: int
    # the new main process (None: none within RESTART_TIMEOUT_S) and when it came
    main_pid_after: int | None
    restarted_s: float | None
    n_restarts_before: int = 0
    n_restarts_after: int = 0
    # whether systemd on the worker host sees a cgroup empty at once, and the
    # unit's TimeoutStopSec (None: infinity, or not read)
    cgroup_empty_seen: bool = True
    stop_timeout_s: float | None = None
    # tasks in flight at the kill: the pool's connections to the upstream then
    # (None: not read)
    held_at_kill: int | None = None
    # the rows created during the run, as the wait left them
    rows: tuple[TaskRow, ...] = ()
    # Unix time of the last read of the rows
    read_at: float | None = None
    load: LoadFigures | None = None
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None

    @property
    def bound_s(self) -> float:
        """Seconds from the kill (or its creation) a task has to be done."""
        return bound_s(self.settings)

    def deadline(self, row: TaskRow) -> float:
        return max(row.created, self.kill_at) + self.bound_s

    @property
    def failed(self) -> list[TaskRow]:
        return [r for r in self.rows if r.status == FAILED]

    @property
    def pending(self) -> list[TaskRow]:
        return [r for r in self.rows if r.status in PENDING]

    @property
    def late(self) -> list[TaskRow]:
        """Done, but later than the bound."""
        return [
            r for r in self.rows
            if r.status == DONE and r.finished is not None and r.finished > self.deadline(r)
        ]  # fmt: skip

    @property
    def done(self) -> list[TaskRow]:
        return [r for r in self.rows if r.status == DONE]

    @property
    def redelivered(self) -> list[TaskRow]:
        return [r for r in self.rows if r.attempts > 1]

    @property
    def redelivery_s(self) -> list[float]:
        """finished_at - the kill of the redelivered tasks that finished."""
        return sorted(
            round(r.finished - self.kill_at, 1) for r in self.redelivered if r.finished is not None
        )

    @property
    def restarted(self) -> bool:
        return self.main_pid_after not in (None, 0, self.main_pid_before)

    @property
    def restart_waits_stop_timeout(self) -> bool:
        """systemd restarts the unit only after its TimeoutStopSec (the substrate's)."""
        return not self.cgroup_empty_seen and self.stop_timeout_s is not None

    @property
    def restart_limit_s(self) -> float:
        return RESTART_LIMIT_S + (self.stop_timeout_s if self.restart_waits_stop_timeout else 0)

    @property
    def restart_waited_s(self) -> float:
        """How long the worker host looked for a new main process."""
        if not self.restart_waits_stop_timeout:
            return RESTART_TIMEOUT_S
        return RESTART_TIMEOUT_S + min(self.stop_timeout_s, workers.MAX_TIMEOUT_S)

    @property
    def posts(self):
        return [r for r in self.requests.completed if r.name == POST_NAME] if self.requests else []

    @property
    def failed_posts(self):
        return [r for r in self.posts if r.status != 202]

    @property
    def failed_polls(self):
        if not self.requests:
            return []
        return [r for r in self.requests.failures() if r.name != POST_NAME]


@dataclass(frozen=True)
class _Injected:
    load: object
    killed: dict
    settings: TaskSettings


class CeleryKill(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        settings = stack.task_settings(label=f"{NAME}-settings")
        before = stack.celery_unit(label=f"{NAME}-unit")
        if not before.main_pid:
            raise FaultError(f"{CELERY_UNIT} is not running on {stack.worker}")
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        killed = stack.executor.script_json(
            stack.worker, Path(workers.__file__),
            ["kill-main", "--unit", CELERY_UNIT, "--at", f"{t0 + FAULT_AT_S:.3f}",
             "--timeout", RESTART_TIMEOUT_S, "--busy-port", stack.upstream_port,
             "--busy-timeout", BUSY_TIMEOUT_S],
            label=f"{NAME}-kill",
            timeout=FAULT_AT_S + BUSY_TIMEOUT_S + RESTART_TIMEOUT_S + 180,
        )  # fmt: skip
        note(
            f"killed {CELERY_UNIT} (main process {killed['victim']} and its pool) on "
            f"{stack.worker}, {killed.get('busy_connections')} tasks in flight"
        )
        done = Done(
            LOAD, stack.worker, CELERY_UNIT, killed["victim"], len(killed["workers_before"]),
            killed["at"] - t0, killed["at"],
        )  # fmt: skip
        return done, _Injected(load, killed, settings)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        load, killed = injected.load, injected.killed
        result = load.finish()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        bound = bound_s(injected.settings)
        note(f"wait for the run's tasks (at most {bound:.0f} s after the kill)")
        found = stack.wait_tasks(
            load.launched - 1, time.time(), killed["at"] + bound + 5, label=f"{NAME}-tasks"
        )
        return Observation(
            settings=injected.settings,
            kill_at=killed["at"],
            main_pid_before=killed["victim"],
            main_pid_after=killed.get("main_pid_after"),
            restarted_s=killed.get("restarted_s"),
            n_restarts_before=killed.get("n_restarts_before") or 0,
            n_restarts_after=killed.get("n_restarts_after") or 0,
            cgroup_empty_seen=killed.get("cgroup_empty_seen", True),
            stop_timeout_s=killed.get("stop_timeout_s"),
            held_at_kill=killed.get("busy_connections"),
            rows=tuple(found),
            read_at=time.time(),
            load=load.figures(),
            requests=load.requests(),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        missed = []
        if seen.held_at_kill is None:
            missed.append("cannot judge: the tasks in flight at the kill were not counted")
        elif not seen.held_at_kill:
            missed.append(
                f"no task was in flight at the kill: no pool process called the upstream "
                f"within {BUSY_TIMEOUT_S:g} s"
            )
        elif len(seen.redelivered) < seen.held_at_kill:
            missed.append(
                f"{seen.held_at_kill} tasks were in flight at the kill, "
                f"{len(seen.redelivered)} delivered again (attempts > 1)"
            )
        if not seen.rows:
            missed.append("no task was created during the run")
        if seen.failed:
            missed.append(f"{len(seen.failed)} of {len(seen.rows)} tasks failed")
        if seen.pending:
            missed.append(
                f"{len(seen.pending)} of {len(seen.rows)} tasks still queued or running "
                f"{seen.bound_s:.0f} s after the kill"
            )
        if seen.late:
            worst = max(r.finished - max(r.created, seen.kill_at) for r in seen.late)
            missed.append(
                f"{len(seen.late)} tasks done later than {seen.bound_s:.0f} s after the kill "
                f"(the latest {worst:.1f} s)"
            )
        if not seen.restarted:
            missed.append(
                f"systemd did not start a new main process within {seen.restart_waited_s:g} s"
            )
        elif seen.restarted_s is None or seen.restarted_s > seen.restart_limit_s:
            missed.append(
                f"systemd started a new main process {seen.restarted_s} s after the kill, "
                f"later than {seen.restart_limit_s:g} s"
            )
        why = cannot_judge(seen.requests, STATUS)
        if why:
            missed.append(why)
        elif seen.failed_posts:
            statuses = sorted({r.status for r in seen.failed_posts})
            missed.append(
                f"{len(seen.failed_posts)} POST /tasks failed while the broker was up "
                f"(status {', '.join(map(str, statuses))})"
            )
        return Outcome.judged(NAME, done, seen, missed)
