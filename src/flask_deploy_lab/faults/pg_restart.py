"""pg-restart: PostgreSQL stopped for 5 s under /db load, then started.

Targets, from the request log (request_log.py): every failed response is a
503 with Retry-After (never a 500); none later than 5 s after PostgreSQL
accepts connections again; the throughput comes back: counted in 1 s buckets
(requests completed OK), some 3 s sliding window after it is back reaches 90 %
of the mean of the 5 whole seconds before the stop, within the run (the time
it took is reported, and the rate from then on). Those 5 s, not the whole run
before the stop, and 5 s that begin once the fault's own machinery has
settled (load.CONTROLLER_SETTLE_S after the probe and the stop, each an
Ansible run on the controller, are launched): it takes CPU from the load on a
small machine. Judged on the whole run before, make test's run was a FAIL
(700-800 req/s in the first seconds, 370-560 once they started, 520 after
PostgreSQL was back); judged on the 5 s in which they started, the rate
before was 921.6 req/s and 1,168.2 after (faults-20261201-152737). A
probe from a load generator (10 times a second) must see 503s with
Retry-After while it is down. The app unit is not restarted (the same
MainPID, the same NRestarts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import LoadFigures, LoadSpec, fault_moment, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    REFUSAL_FIELDS,
    RequestLog,
    cannot_judge,
    mean_rate,
    per_second,
)
from flask_deploy_lab.faults.stack import (
    NGINX_ACCESS_LOG,
    Answer,
    Stack,
    UnitState,
    parse_unit,
    unit_argv,
    with_retry_after,
)

NAME = "pg-restart"
MAX_RECOVERY_S = 5.0
PG_DOWN_S = 5
# stop (some 14 s in, after the baseline), 5 s down, start: room after it (some
# 15 s) to see the throughput recover
LOAD = LoadSpec("db", duration=34)
# Recovered: a sliding window of this many 1 s buckets after it is back reaches
# this share of the mean rate before the stop.
RECOVERY_WINDOW_S = 3
RECOVERED_SHARE = 0.9
# The rate before: the mean of this many whole seconds before the stop.
BASELINE_S = 5
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
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None
    # Unix time the measured run had all its users
    t0: float = 0.0

    @property
    def failures(self):
        return self.requests.failures() if self.requests else []

    @property
    def wrong(self):
        """Failed responses that are not 503s."""
        return [r for r in self.failures if r.status != 503]

    @property
    def without_retry_after(self):
        """503s without a Retry-After header."""
        return [r for r in self.failures if r.status == 503 and not r.retry_after]

    @property
    def recovery_s(self) -> float | None:
        """Seconds from accepting connections to the completion of the last failure
        (0 when none came after it); None without a failure."""
        if not self.failures:
            return None
        last = max(r.end for r in self.failures)
        return round(max(0.0, last - self.back_at), 1)

    @property
    def buckets(self):
        """{Unix second: requests completed OK in it}."""
        return per_second(self.requests.requests) if self.requests else {}

    @property
    def last_second(self) -> int:
        """The last whole second of the run (the one the stop fell in is partial)."""
        end = self.requests.last_end if self.requests else None
        return int(end) - 1 if end is not None else int(self.back_at)

    @property
    def rps_before(self) -> float:
        """Mean rate over the BASELINE_S whole seconds before the stop (from the
        run's first whole second, when it started later)."""
        end = int(self.down_at)
        return round(mean_rate(self.buckets, max(int(self.t0) + 1, end - BASELINE_S), end), 1)

    @property
    def recovered_at(self) -> int | None:
        """The first second (at or after it was back) that starts a window of
        RECOVERY_WINDOW_S buckets with a mean of RECOVERED_SHARE of the rate before;
        None when none does within the run."""
        target, buckets = RECOVERED_SHARE * self.rps_before, self.buckets
        first = math.ceil(self.back_at)
        for second in range(first, self.last_second - RECOVERY_WINDOW_S + 2):
            if target > 0 and mean_rate(buckets, second, second + RECOVERY_WINDOW_S) >= target:
                return second
        return None

    @property
    def throughput_recovery_s(self) -> float | None:
        """Seconds from accepting connections to the recovered window's start."""
        at = self.recovered_at
        return None if at is None else round(at - self.back_at, 1)

    @property
    def rps_after(self) -> float:
        """Mean rate from the recovery (else from it was back) to the run's end."""
        start = self.recovered_at or math.ceil(self.back_at)
        return round(mean_rate(self.buckets, start, self.last_second + 1), 1)

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
        down_at = fault_moment(t0, BASELINE_S)
        probe = stack.start_probe(
            stack.url("db"), PROBE_COUNT, PROBE_GAP_S, down_at - 1, label=f"{NAME}-probe"
        )
        # on the db host: the stop, the 5 s, the start and the wait for it, timed there
        times = stack.outage(
            stack.db, pg_unit, at=down_at, down_s=PG_DOWN_S, ready_argv=PG_READY,
            ready_timeout=READY_TIMEOUT_S, what="PostgreSQL", label=NAME,
        )  # fmt: skip
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
        times = injected.times
        down, back = times["down_at"], times["ready_at"]
        return Observation(
            load=injected.load.figures(),
            down_at=down,
            starting_at=times["starting_at"],
            back_at=back,
            answers=tuple(answers),
            app_before=injected.app_before,
            app_after=after,
            requests=injected.load.requests(),
            t0=injected.t0,
        )

    @staticmethod
    def judge(done: Done, seen: Observation) -> Outcome:
        missed = []
        why = cannot_judge(seen.requests, *REFUSAL_FIELDS)
        if why:
            missed.append(why)
        else:
            missed += judge_requests(seen)
        down = seen.probe_while_down
        refused, with_header = with_retry_after(down)
        if not refused:
            missed.append("the probe got no 503 while it was down")
        elif len(refused) != len(down):
            missed.append(
                f"only {len(refused)} of the probe's {len(down)} answers while down were 503"
            )
        if len(with_header) != len(refused):
            missed.append(
                f"{len(refused) - len(with_header)} of the probe's 503s without Retry-After"
            )
        if seen.app_restarted:
            missed.append("the app unit was restarted")
        return Outcome.judged(NAME, done, seen, missed)


def judge_requests(seen: Observation) -> list[str]:
    """The targets the request log judges."""
    missed = []
    if not seen.failures:
        missed.append("no request failed: PostgreSQL's outage was not seen")
    if seen.wrong:
        statuses = sorted({r.status for r in seen.wrong})
        missed.append(
            f"{len(seen.wrong)} failures other than 503 (status {', '.join(map(str, statuses))})"
        )
    bare = seen.without_retry_after
    if bare:
        refused = len(seen.failures) - len(seen.wrong)
        missed.append(f"{len(bare)} of {refused} 503s without Retry-After")
    recovery = seen.recovery_s
    if recovery is not None and recovery > MAX_RECOVERY_S:
        missed.append(f"a failure {recovery} s after it was back, more than {MAX_RECOVERY_S:g} s")
    if seen.recovered_at is None:
        missed.append(
            f"the throughput never came back to {RECOVERED_SHARE:.0%} of {seen.rps_before} "
            f"req/s within the run (from then on: {seen.rps_after} req/s)"
        )
    return missed
