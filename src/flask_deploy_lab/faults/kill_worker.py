"""kill-worker: kill -9 of the busiest app worker process, 8 s into /db load.

Targets: at most 0.5 % of the run's requests fail; the server starts a new
worker (the same number of workers afterwards, under the same master). A
server that runs one process is a SKIP: kill -9 of it is a crash (systemd
restarts the unit), not a worker replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import workers
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.stack import NGINX_ERROR_LOG, Stack

NAME = "kill-worker"
MAX_FAILED_SHARE = 0.005
# Seconds the server has to replace the worker.
REPLACE_TIMEOUT_S = 30
LOAD = LoadSpec("db")


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    victim_pid: int
    # the victim's share of the workers' CPU time over the second before
    cpu_share_percent: int
    # seconds into the measured run
    at_s: float


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


@dataclass(frozen=True)
class _Injected:
    load: object
    main_pid: int
    error_mark: int
    killed: dict


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
             "--at", f"{t0 + FAULT_AT_S - 1:.3f}", "--timeout", REPLACE_TIMEOUT_S],
            label=f"{NAME}-kill", timeout=FAULT_AT_S + REPLACE_TIMEOUT_S + 180,
        )  # fmt: skip
        note(f"killed worker {killed['victim']}")
        done = Done(LOAD, killed["victim"], killed["cpu_share_percent"], killed["at"] - t0)
        return done, _Injected(load, before.main_pid, marks[NGINX_ERROR_LOG], killed)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        errors = stack.start_upstream_errors(injected.error_mark, label=f"{NAME}-upstream")
        after = stack.app_unit(label=f"{NAME}-unit-after")
        cut_off = errors.reply().json()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        return Observation(
            server=stack.deployment.server,
            processes=stack.deployment.processes,
            load=injected.load.figures(),
            replaced_s=injected.killed["replaced_s"],
            workers_after=len(injected.killed["workers_after"]),
            main_pid_before=injected.main_pid,
            main_pid_after=after.main_pid,
            nginx_upstream_errors=cut_off,
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
        if seen.load.failed_share > MAX_FAILED_SHARE:
            missed.append(
                f"{seen.load.failed_share:.2%} of the requests failed, "
                f"more than {MAX_FAILED_SHARE:.1%}"
            )
        if seen.replaced_s is None:
            missed.append(f"the worker was not replaced within {REPLACE_TIMEOUT_S} s")
        if seen.workers_after != seen.processes:
            missed.append(f"{seen.workers_after} workers afterwards, not {seen.processes}")
        if seen.main_pid_after != seen.main_pid_before:
            missed.append("the master changed")
        return Outcome.judged(NAME, done, seen, missed)
