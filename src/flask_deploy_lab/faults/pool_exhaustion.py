"""pool-exhaustion: the app converged with a pool of 2 connections per process,
then /sleep with more users than the pools hold; then converged back.

Targets: every failed response of the load is a 503 with Retry-After, never a
500 (from the request log, request_log.py; a probe asks 10 times as well and
must see 503s with it); afterwards PostgreSQL has no more client connections than pool
size x processes, and none still active. Without a pool (db_mode naive) there
is nothing to exhaust: a SKIP. So too on a server that holds no more requests
per process than the pool has connections (Gunicorn's sync workers: one), whose
requests wait for a worker, never for a connection: nothing is converged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import REFUSAL_FIELDS, RequestLog, cannot_judge
from flask_deploy_lab.faults.stack import Answer, Stack, with_retry_after

NAME = "pool-exhaustion"
# More users than 2 connections x processes can serve, each holding one for 0.5 s.
POOL_SIZE = 2
LOAD = LoadSpec("sleep", users=30, duration=20, delay=0.5)
PROBE_COUNT = 10
PROBE_GAP_S = 0.1
# Seconds after the run before PostgreSQL's connections are counted.
SETTLE_S = 2


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    pool_size: int
    # client connections the pools may hold in all: pool x processes x app hosts
    limit: int


@dataclass(frozen=True)
class Observation:
    # the app's db_mode once converged with the small pool
    db_mode: str
    # requests the server holds at once per process (None: no bound)
    per_process: float | None = None
    load: LoadFigures | None = None
    answers: tuple[Answer, ...] = ()
    # PostgreSQL's client connections after the run, by state
    connections: dict[str, int] | None = None
    limit: int | None = None
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None

    @property
    def failures(self):
        return self.requests.failures() if self.requests else []

    @property
    def wrong(self):
        """Failed responses that are not 503s."""
        return [r for r in self.failures if r.status != 503]

    @property
    def without_retry_after(self):
        return [r for r in self.failures if r.status == 503 and not r.retry_after]

    @property
    def total(self) -> int:
        return sum(self.connections.values())

    @property
    def stuck(self) -> int:
        """Connections still doing something after the run."""
        return sum(n for state, n in self.connections.items() if state != "idle")


@dataclass(frozen=True)
class _Injected:
    load: object
    probe: object


class PoolExhaustion(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        deployed = stack.deployment
        per_process = deployed.slots / deployed.processes if deployed.slots else None
        if per_process is not None and per_process <= POOL_SIZE:
            return self.judge(None, Observation(deployed.db_mode, per_process))
        pool = {"flask_app_db_pool_max": POOL_SIZE, "flask_app_db_pool_min": POOL_SIZE}
        note(f"converge the app with a pool of {POOL_SIZE}")
        converged = stack.converge(f"{NAME}--converge", pool, tags="app")
        try:
            if not converged.ok:
                raise FaultError(
                    f"the converge with a pool of {POOL_SIZE} failed: {converged.reason}"
                )
            stack.refresh()
            if stack.deployment.db_mode != "pool":
                return self.judge(None, Observation(stack.deployment.db_mode))
            done, injected = self.inject(stack)
            seen = self.observe(stack, done, injected)
        finally:
            note("converge the app back to its defaults")
            restored = stack.converge(f"{NAME}--restore", tags="app")
            stack.refresh()
        if not restored.ok:
            raise FaultError(
                f"the app could not be converged back to its defaults: {restored.reason}"
            )
        return self.judge(done, seen)

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        deployed = stack.deployment
        limit = deployed.db_pool_max * deployed.processes * len(stack.inventory.members("app"))
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        # the load exhausts the pools; the probe's 10 requests see what a client gets
        probe = stack.start_probe(
            stack.url("sleep", delay=LOAD.delay), PROBE_COUNT, PROBE_GAP_S, t0 + FAULT_AT_S / 2,
            label=f"{NAME}-probe",
        )  # fmt: skip
        return Done(LOAD, POOL_SIZE, limit), _Injected(load, probe)

    def observe(self, stack: Stack, done: Done, injected: _Injected) -> Observation:
        answers = stack.answers(injected.probe)
        result = injected.load.finish()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        time.sleep(SETTLE_S)
        connections = stack.pg_connections(label=f"{NAME}-connections")
        return Observation(
            db_mode=stack.deployment.db_mode,
            load=injected.load.figures(),
            answers=tuple(answers),
            connections=connections,
            limit=done.limit,
            requests=injected.load.requests(),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        if seen.db_mode != "pool":
            return Outcome.skipped(
                NAME, seen, f"db_mode={seen.db_mode}: there is no pool to exhaust"
            )
        if seen.per_process is not None and seen.per_process <= POOL_SIZE:
            return Outcome.skipped(
                NAME,
                seen,
                f"the server holds {seen.per_process:g} request(s) per process, no more than a "
                f"pool of {POOL_SIZE}: its requests wait for a worker, never for a connection",
            )
        missed = []
        why = cannot_judge(seen.requests, *REFUSAL_FIELDS)
        if why:
            missed.append(why)
        else:
            if not seen.failures:
                missed.append("no request failed: the pool was not exhausted")
            if seen.wrong:
                statuses = sorted({r.status for r in seen.wrong})
                missed.append(
                    f"{len(seen.wrong)} failures other than 503 "
                    f"(status {', '.join(map(str, statuses))})"
                )
            bare = seen.without_retry_after
            if bare:
                refused = len(seen.failures) - len(seen.wrong)
                missed.append(f"{len(bare)} of {refused} 503s without Retry-After")
        refused, with_header = with_retry_after(seen.answers)
        if not refused:
            missed.append("the probe got no 503")
        if len(with_header) != len(refused):
            missed.append(
                f"{len(refused) - len(with_header)} of the probe's 503s without Retry-After"
            )
        if seen.total > seen.limit:
            missed.append(f"{seen.total} client connections afterwards, more than {seen.limit}")
        if seen.stuck:
            missed.append(f"{seen.stuck} connections still busy afterwards")
        return Outcome.judged(NAME, done, seen, missed)
