"""kill-worker: kill -9 of the busiest app worker, 8 s into /db load: the one holding
the most connections on the app's port, of those the one using the most CPU.

Targets, from the request log (request_log.py): no more requests fail than the
killed worker held at the kill (its established connections the moment before
the SIGKILL, counted on the app host: a request it was serving holds one), and
it held at least one (the kill waits, a few seconds at most, for a worker that
does: a kill that cuts nothing off measures nothing); not one ``200`` with a
cut-off body (told OK, handed half an answer: a client must get a complete body
or an error it can see, a status or a length that does not match); the server
starts a new worker (the same number of workers afterwards, under the same
master). How many requests nginx sent to the app again (its access log's
``$upstream_addr`` with more than one try) is reported. A server that runs one
process is a SKIP: kill -9 of it is a crash (systemd restarts the unit), not a
worker replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import workers
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    BODY_FIELDS,
    SHORT_BODY,
    STATUS_ERROR,
    TRUNCATED_OK,
    RequestLog,
    cannot_judge,
)
from flask_deploy_lab.faults.stack import NGINX_ACCESS_LOG, NGINX_ERROR_LOG, Stack

NAME = "kill-worker"
# 200s with a cut-off body the clients may be handed: none
MAX_TRUNCATED_OK = 0
# Seconds the server has to replace the worker.
REPLACE_TIMEOUT_S = 30
# Seconds the kill may wait for a worker that holds a request once stopped
# (hostside/workers.py): a kill of one that holds none cuts nothing off.
BUSY_TIMEOUT_S = 5
LOAD = LoadSpec("db")


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    victim_pid: int
    # the victim's share of the workers' CPU time over the second before
    cpu_share_percent: int
    # seconds into the measured run
    at_s: float
    # the victim's established connections the moment before the kill (None: unread)
    victim_connections: int | None = None
    # Unix time of the kill (the app host's clock)
    at: float | None = None
    # workers stopped and counted until one held a connection, and the seconds
    # from the first look to the kill's (None: not reported)
    looks: int | None = None
    busy_waited_s: float | None = None


@dataclass(frozen=True)
class Observation:
    server: str
    # worker processes of the deployment
    processes: int
    load: LoadFigures | None = None
    # seconds until the server had all its workers again (None: not within the timeout)
    replaced_s: float | None = None
    workers_after: int | None = None
    main_pid_before: int | None = None
    main_pid_after: int | None = None
    nginx_upstream_errors: int | None = None
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None
    # the victim's established connections at the kill (None: not counted)
    in_flight: int | None = None
    # nginx_log.py retries: the requests nginx sent to the app more than once
    nginx_retries: dict | None = None
    # requests in flight in the whole stack at the kill (from the request log)
    in_flight_stack: int | None = None

    @property
    def counts(self):
        return self.requests.by_outcome() if self.requests else {}

    @property
    def failed(self) -> int:
        """Requests that did not end OK for their client: a status error, a short
        body or a cut-off 200."""
        return sum(self.counts.get(k, 0) for k in (STATUS_ERROR, SHORT_BODY, TRUNCATED_OK))

    @property
    def truncated(self) -> int:
        return self.counts.get(TRUNCATED_OK, 0)

    @property
    def nginx_retried(self) -> int | None:
        return None if self.nginx_retries is None else self.nginx_retries.get("retried")


@dataclass(frozen=True)
class _Injected:
    load: object
    main_pid: int
    error_mark: int
    killed: dict
    access_mark: int = 0


class KillWorker(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        deployed = stack.deployment
        if deployed.processes < 2:
            return self.judge(None, Observation(deployed.server, deployed.processes))
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        deployed = stack.deployment
        before = stack.app_unit(label=f"{NAME}-unit")
        running = stack.children(before.main_pid, label=f"{NAME}-workers")
        if len(running) != deployed.processes:
            raise FaultError(
                f"{deployed.unit} has {len(running)} worker processes, "
                f"its fact says {deployed.processes}"
            )
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        marks = stack.log_marks(stack.start_log_marks(label=f"{NAME}-mark"))
        # on the app host: a second of CPU sampling from 1 s before the fault's
        # moment, the kill, then the wait for the new worker
        killed = stack.executor.script_json(
            stack.app, Path(workers.__file__),
            ["kill-busiest", "--unit", deployed.unit, "--expected", deployed.processes,
             "--port", deployed.port, "--at", f"{t0 + FAULT_AT_S - 1:.3f}",
             "--timeout", REPLACE_TIMEOUT_S, "--busy-timeout", BUSY_TIMEOUT_S],
            label=f"{NAME}-kill", timeout=FAULT_AT_S + BUSY_TIMEOUT_S + REPLACE_TIMEOUT_S + 180,
        )  # fmt: skip
        note(f"killed worker {killed['victim']}")
        done = Done(
            LOAD, killed["victim"], killed["cpu_share_percent"], killed["at"] - t0,
            killed.get("victim_connections"), killed["at"], killed.get("looks"),
            killed.get("busy_waited_s"),
        )  # fmt: skip
        injected = _Injected(
            load, before.main_pid, marks[NGINX_ERROR_LOG], killed, marks[NGINX_ACCESS_LOG]
        )
        return done, injected

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        errors = stack.start_upstream_errors(injected.error_mark, label=f"{NAME}-upstream")
        retries = stack.start_retries(injected.access_mark, label=f"{NAME}-retries")
        after = stack.app_unit(label=f"{NAME}-unit-after")
        cut_off = errors.reply().json()
        retried = retries.reply().json()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        requests = injected.load.requests()
        at = injected.killed["at"]
        return Observation(
            server=stack.deployment.server,
            processes=stack.deployment.processes,
            load=injected.load.figures(),
            replaced_s=injected.killed["replaced_s"],
            workers_after=len(injected.killed["workers_after"]),
            main_pid_before=injected.main_pid,
            main_pid_after=after.main_pid,
            nginx_upstream_errors=cut_off,
            requests=requests,
            in_flight=injected.killed.get("victim_connections"),
            nginx_retries=retried if isinstance(retried, dict) else None,
            in_flight_stack=requests.in_flight_at(at) if requests else None,
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        if seen.processes < 2:
            return Outcome.skipped(
                NAME, seen,
                f"{seen.server} runs one process: kill -9 of it is a crash "
                "(systemd restarts the unit), not a worker replacement",
            )  # fmt: skip
        missed = []
        why = cannot_judge(seen.requests, *BODY_FIELDS)
        if why:
            missed.append(why)
        elif seen.in_flight is None:
            missed.append("cannot judge: the killed worker's connections were not counted")
        elif seen.in_flight == 0:
            missed.append(
                f"cannot judge: the killed worker held no connection (none of the workers "
                f"stopped in {BUSY_TIMEOUT_S} s did): the kill cut nothing off"
            )
        elif seen.failed > seen.in_flight:
            missed.append(
                f"{seen.failed} requests failed, more than the {seen.in_flight} "
                "the killed worker held"
            )
        if not why and seen.truncated > MAX_TRUNCATED_OK:
            missed.append(
                f"{seen.truncated} 200s with a cut-off body (told OK, handed half an answer)"
            )
        if seen.replaced_s is None:
            missed.append(f"the worker was not replaced within {REPLACE_TIMEOUT_S} s")
        if seen.workers_after != seen.processes:
            missed.append(f"{seen.workers_after} workers afterwards, not {seen.processes}")
        if seen.main_pid_after != seen.main_pid_before:
            missed.append("the master changed")
        return Outcome.judged(NAME, done, seen, missed)
