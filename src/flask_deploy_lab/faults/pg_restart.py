"""pg-restart: PostgreSQL stopped for 5 s under /db load, then started.

Targets: the failures while it is down are 503s with Retry-After (a probe from
a load generator asks 10 times a second), never 500; none later than 5 s
after it accepts connections again; the app unit is not restarted (the same
MainPID, the same NRestarts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import outage
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.stack import (
    NGINX_ACCESS_LOG,
    Answer,
    Stack,
    UnitState,
    parse_unit,
    rate_between,
    unit_argv,
    with_retry_after,
)

NAME = "pg-restart"
MAX_RECOVERY_S = 5.0
PG_DOWN_S = 5
# stop, 5 s down, start: room after it to see the recovery
LOAD = LoadSpec("db", duration=25)
# The probe: 10 requests a second from 1 s before the stop until well after it.
PROBE_GAP_S = 0.1
PROBE_COUNT = int((PG_DOWN_S + 20) / PROBE_GAP_S)
# Seconds PostgreSQL has to accept connections again once started.
READY_TIMEOUT_S = 90
PG_READY = ["pg_isready", "-q"]


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    pg_unit: str
    # seconds into the measured run it was stopped, and for how long it was asked to be
    at_s: float
    down_s: float


@dataclass(frozen=True)
class Observation:
    load: LoadFigures
    # Unix times: stopped, start asked, accepting connections again (the db host's clock)
    down_at: float
    starting_at: float
    back_at: float
    # the probe's answers (the prober's clock)
    answers: tuple[Answer, ...]
    app_before: UnitState
    app_after: UnitState
    # /db answered 200 through nginx per second, before the stop and after it was back
    rps_before: float
    rps_after: float

    @property
    def wrong(self):
        """Locust's failures that are not 503s."""
        return [f for f in self.load.errors if f.status != 503]

    @property
    def recovery_s(self) -> float | None:
        """Seconds from accepting connections to the last failure, at most (Locust
        records when a failure was last seen to the second: an upper bound)."""
        last = max((f.last for f in self.load.errors if f.last), default=None)
        return round(max(0.0, last + 1 - self.back_at), 1) if last else None

    @property
    def probe_while_down(self) -> list[Answer]:
        return [a for a in self.answers if self.down_at <= a.time <= self.starting_at]

    @property
    def probe_recovery_s(self) -> float:
        late = [a.time for a in self.answers if a.time > self.back_at and a.status != 200]
        return round(max(late) - self.back_at, 1) if late else 0.0

    @property
    def app_restarted(self) -> bool:
        before, after = self.app_before, self.app_after
        return after.main_pid != before.main_pid or after.n_restarts != before.n_restarts


@dataclass(frozen=True)
class _Injected:
    load: object
    t0: float
    access_mark: int
    app_before: UnitState
    times: dict
    probe: object


class PgRestart(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        marks = stack.start_log_marks(label=f"{NAME}-mark")
        first = stack.executor.run(
            {
                stack.app: unit_argv(stack.deployment.unit),
                stack.db: ["systemctl", "list-units", "postgresql@*", "--plain", "--no-legend",
                           "--all"],
            },
            label=f"{NAME}-units",
        )  # fmt: skip
        if not first[stack.app].ok:
            raise FaultError(f"cannot read {stack.deployment.unit}: {first[stack.app].why}")
        app_before = parse_unit(first[stack.app].stdout)
        pg_unit = stack.pg_unit(first[stack.db])
        access_mark = stack.log_marks(marks)[NGINX_ACCESS_LOG]
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        down_at = t0 + FAULT_AT_S
        probe = stack.start_probe(
            stack.url("db"), PROBE_COUNT, PROBE_GAP_S, down_at - 1, label=f"{NAME}-probe"
        )
        # on the db host: the stop, the 5 s, the start and the wait for it, timed there
        reply = None
        try:
            reply = stack.executor.script(
                stack.db, Path(outage.__file__),
                ["--unit", pg_unit, "--at", f"{down_at:.3f}", "--down", PG_DOWN_S,
                 "--ready-timeout", READY_TIMEOUT_S, "--", *PG_READY],
                label=f"{NAME}-outage", timeout=FAULT_AT_S + PG_DOWN_S + READY_TIMEOUT_S + 300,
            )  # fmt: skip
        finally:
            if reply is None or not reply.ok:
                # however the outage ended, PostgreSQL is asked to run again
                stack.executor.run_one(
                    stack.db, ["systemctl", "start", pg_unit], label=f"{NAME}-start"
                )
        times = reply.json() if reply.ok else None
        if not times:
            raise FaultError(f"the outage of {pg_unit} on {stack.db} failed: {reply.why}")
        if times.get("ready_at") is None:
            raise FaultError(
                f"PostgreSQL did not accept connections within {READY_TIMEOUT_S} s "
                f"of {pg_unit} start"
            )
        back_after = times["ready_at"] - times["down_at"]
        note(f"{pg_unit} accepting connections {back_after:.1f} s after the stop")
        done = Done(LOAD, pg_unit, times["down_at"] - t0, PG_DOWN_S)
        return done, _Injected(load, t0, access_mark, app_before, times, probe)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        answers = stack.answers(injected.probe)
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        after = stack.app_unit(label=f"{NAME}-unit-after")
        answered = stack.answered(injected.access_mark, "db", label=f"{NAME}-answered")
        t0, times = injected.t0, injected.times
        down, back = times["down_at"], times["ready_at"]
        # /db answered 200 through nginx, per second (Locust's history has 3 s steps)
        end = int(t0) + injected.load.spec.duration - 1
        return Observation(
            load=injected.load.figures(),
            down_at=down,
            starting_at=times["starting_at"],
            back_at=back,
            answers=tuple(answers),
            app_before=injected.app_before,
            app_after=after,
            rps_before=round(rate_between(answered, int(t0) + 1, int(down)), 1),
            rps_after=round(rate_between(answered, int(back) + 2, end), 1),
        )

    @staticmethod
    def judge(done: Done, seen: Observation) -> Outcome:
        missed = []
        if not seen.load.errors:
            missed.append("no request failed: PostgreSQL's outage was not seen")
        if seen.wrong:
            statuses = sorted({f.status for f in seen.wrong})
            missed.append(f"failures other than 503 (status {', '.join(map(str, statuses))})")
        down = seen.probe_while_down
        refused, with_header = with_retry_after(down)
        if not refused:
            missed.append("the probe got no 503 while it was down")
        elif len(refused) != len(down):
            missed.append(
                f"only {len(refused)} of the probe's {len(down)} answers while down were 503"
            )
        if len(with_header) != len(refused):
            missed.append(f"{len(refused) - len(with_header)} 503s without Retry-After")
        recovery = seen.recovery_s
        if recovery is None:
            if seen.load.errors:
                missed.append("Locust recorded no time for the failures: no recovery time")
        elif recovery > MAX_RECOVERY_S:
            missed.append(
                f"a failure {recovery} s after it was back, more than {MAX_RECOVERY_S:g} s"
            )
        if seen.app_restarted:
            missed.append("the app unit was restarted")
        return Outcome.judged(NAME, done, seen, missed)
