"""upstream-stop: the slow API (the upstream of /slow) stopped for 8 s under
/slow load, then started.

The app answers a refused or failed upstream with a JSON 502 (504 for a
timeout) at once: it must not wait for its upstream timeout (delay + 5 s) and
pile the requests up behind it.

Targets, from the request log (request_log.py): every failure is a 502, 503
or 504 (no 500, no answerless failure); the p99 latency of the failures is at
most MAX_FAILED_P99_S; no failure is answered outside the outage (from the
stop being asked to its answering again, WINDOW_SLACK_S either side); the
requests do not pile up: at no moment of the outage are more than MAX_STUCK
requests in flight for longer than STUCK_S of it (a closed loop never has more
in flight than its users; a pile-up shows as requests that wait; a request
sent before the stop counts from the stop, as a server with fewer slots than
users, Gunicorn's sync workers, queues requests for seconds in normal running:
only the wait the outage adds counts); the first
success of a request started after the stop comes at most MAX_RESUME_S after
the slow API answers again; and at least one request failed (the outage was
seen). A probe from a load generator, 10 a second while it is down, must see
only failures with a JSON body that has an ``error`` (the request log keeps
no bodies).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.load import FAULT_AT_S, LoadFigures, LoadSpec, note
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    OK,
    STATUS,
    RequestLog,
    cannot_judge,
    most_in_flight,
    percentile,
)
from flask_deploy_lab.faults.stack import Answer, Stack

NAME = "upstream-stop"
SLOW_API_UNIT = "slow-api.service"
LOAD = LoadSpec("slow", users=20, duration=30, delay=0.5)
DOWN_S = 8
READY_TIMEOUT_S = 60
FAILED_STATUSES = (502, 503, 504)
MAX_FAILED_P99_S = 1.0
WINDOW_SLACK_S = 1.0
MAX_RESUME_S = 5.0
# A request in flight this long (twice the delay and a half second) is waiting
# on something; at most this many such at once during the outage.
STUCK_S = 2 * LOAD.delay + 0.5
MAX_STUCK = LOAD.users // 10
P99 = 0.99
# The probe: 10 a second from a second after the stop to a second before the start.
PROBE_GAP_S = 0.1
PROBE_COUNT = int((DOWN_S - 2) / PROBE_GAP_S)
READY_CODE = (
    "import sys,urllib.request\n"
    "o=urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
    "sys.exit(0 if o.open(sys.argv[1],timeout=2).status==200 else 1)"
)


def ready_argv(url: str) -> list[str]:
    return ["python3", "-c", READY_CODE, url]


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    upstream: str
    unit: str
    at_s: float
    down_s: float


@dataclass(frozen=True)
class Observation:
    # Unix times: stop asked, stopped, start asked, answering again (the upstream host's clock)
    stopping_at: float
    down_at: float
    starting_at: float
    back_at: float
    users: int = LOAD.users
    answers: tuple[Answer, ...] = ()
    load: LoadFigures | None = None
    requests: RequestLog | None = None

    @property
    def failures(self):
        return self.requests.failures() if self.requests else []

    @property
    def wrong(self):
        return [r for r in self.failures if r.status not in FAILED_STATUSES]

    @property
    def failed_p99_s(self) -> float | None:
        p99 = percentile([r.latency_ms for r in self.failures], P99)
        return None if p99 is None else round(p99 / 1000, 3)

    @property
    def window(self) -> tuple[float, float]:
        return self.stopping_at - WINDOW_SLACK_S, self.back_at + WINDOW_SLACK_S

    @property
    def outside(self):
        """Failures answered outside the outage window."""
        start, end = self.window
        return [r for r in self.failures if not start <= r.end <= end]

    @property
    def stuck(self) -> int:
        """The most requests in flight for longer than STUCK_S of the outage at any
        moment of it (a request sent before the stop counted from the stop)."""
        if not self.requests:
            return 0
        return most_in_flight(
            self.requests.requests, self.stopping_at, self.back_at, STUCK_S, since=self.stopping_at
        )

    @property
    def in_flight_max(self) -> int:
        if not self.requests:
            return 0
        return most_in_flight(self.requests.requests, self.stopping_at, self.back_at)

    @property
    def resume_s(self) -> float | None:
        """Seconds from the slow API answering again to the first success of a request
        started after it had stopped; None when none."""
        ends = [
            r.end for r in (self.requests.completed if self.requests else [])
            if r.outcome == OK and r.start >= self.down_at
        ]  # fmt: skip
        return round(max(0.0, min(ends) - self.back_at), 1) if ends else None

    @property
    def probe_failures(self) -> list[Answer]:
        return [
            a for a in self.answers
            if self.down_at <= a.time <= self.starting_at and not 200 <= a.status < 300
        ]  # fmt: skip

    @property
    def probe_bare(self) -> list[Answer]:
        """The probe's failures while down without a JSON error body."""
        return [a for a in self.probe_failures if a.body != "json-error"]


@dataclass(frozen=True)
class _Injected:
    load: object
    times: dict
    probe: object


class UpstreamStop(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        upstream = stack.upstream
        address = stack.inventory.hosts[upstream].address or "127.0.0.1"
        port = stack.upstream_port
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        down_at = t0 + FAULT_AT_S
        probe = stack.start_probe(
            stack.url("slow", delay=LOAD.delay), PROBE_COUNT, PROBE_GAP_S, down_at + 1,
            label=f"{NAME}-probe", body=True,
        )  # fmt: skip
        times = stack.outage(
            upstream, SLOW_API_UNIT, at=down_at, down_s=DOWN_S,
            ready_argv=ready_argv(f"http://{address}:{port}/?delay=0"),
            ready_timeout=READY_TIMEOUT_S, what="the slow API", label=NAME,
        )  # fmt: skip
        note(f"the slow API answering {times['ready_at'] - times['down_at']:.1f} s after the stop")
        done = Done(LOAD, upstream, SLOW_API_UNIT, times["down_at"] - t0, DOWN_S)
        return done, _Injected(load, times, probe)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        load, times = injected.load, injected.times
        result = load.finish()
        answers = stack.answers(injected.probe)
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        return Observation(
            stopping_at=times.get("stopping_at", times["down_at"]),
            down_at=times["down_at"],
            starting_at=times["starting_at"],
            back_at=times["ready_at"],
            answers=tuple(answers),
            load=load.figures(),
            requests=load.requests(),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        missed = []
        why = cannot_judge(seen.requests, STATUS)
        if why:
            missed.append(why)
        else:
            missed += judge_requests(seen)
        if not seen.probe_failures:
            missed.append("the probe saw no failure while the slow API was down")
        elif seen.probe_bare:
            missed.append(
                f"{len(seen.probe_bare)} of the probe's {len(seen.probe_failures)} failures "
                "while down without a JSON error body"
            )
        return Outcome.judged(NAME, done, seen, missed)


def judge_requests(seen: Observation) -> list[str]:
    missed = []
    if not seen.failures:
        missed.append("no request failed: the slow API's outage was not seen")
    if seen.wrong:
        statuses = sorted({r.status for r in seen.wrong})
        missed.append(
            f"{len(seen.wrong)} failures other than 502/503/504 "
            f"(status {', '.join(map(str, statuses))})"
        )
    p99 = seen.failed_p99_s
    if p99 is not None and p99 > MAX_FAILED_P99_S:
        missed.append(
            f"p99 {p99:g} s of the {len(seen.failures)} failures, more than "
            f"{MAX_FAILED_P99_S:g} s: they waited for the upstream's timeout"
        )
    if seen.outside:
        missed.append(f"{len(seen.outside)} failures outside the outage (+-{WINDOW_SLACK_S:g} s)")
    if seen.stuck > MAX_STUCK:
        missed.append(
            f"{seen.stuck} requests in flight for more than {STUCK_S:g} s of the outage at "
            f"once, more than {MAX_STUCK}: they piled up"
        )
    resume = seen.resume_s
    if resume is None:
        missed.append("no request succeeded after the slow API was back")
    elif resume > MAX_RESUME_S:
        missed.append(
            f"the first success {resume} s after the slow API was back, more than "
            f"{MAX_RESUME_S:g} s"
        )
    return missed
