"""reload: ``systemctl reload`` of the app unit under /db load, some 18 s in.

Targets: no failed request, and no latency in their place: the p99 latency of
the requests that started in the reload window (from the reload until every
worker was replaced, at least MIN_WINDOW_S) is at most twice the p99 of those
that started in as long a window just before it, but not before the reload's
own Ansible run has settled (load.CONTROLLER_SETTLE_S after its launch: its
CPU would slow the requests before and flatter the ratio; from the request log,
request_log.py; a request still in flight when the run stopped counts with
how long it had waited). Every worker replaced, the same master. A server
without a graceful reload (its unit cannot reload: the catalogue gives it no
reload signal) is a SKIP, with the reason.

Where the time went is reported beside the verdict, from the app host's
sampler (a row every 0.25 s in this fault): the CPU the app unit used in each
window, the share of it its cgroup spent throttled by its CPU quota, and how
busy the app host and the whole machine were. A reload costs CPU (each new
worker imports the app and opens its pool); on a host already at its quota
that time comes out of the requests in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab import catalogue
from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import workers
from flask_deploy_lab.faults.load import (
    LoadFigures,
    LoadSpec,
    fault_moment,
    note,
    quiet_after_launch,
)
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    RequestLog,
    cannot_judge,
    percentile,
    started_between,
)
from flask_deploy_lab.faults.stack import NGINX_ERROR_LOG, Stack
from flask_deploy_lab.report.samples import HostSamples, counter_rate, read_samples

NAME = "reload"
REPLACE_TIMEOUT_S = 30
# rows every 0.25 s: the reload window lasts 2 to 7 s, and begins some 18 s in
# (after BEFORE_S once the reload's own run has settled)
LOAD = LoadSpec("db", duration=28, sampler_interval=0.25)
# Seconds before the reload kept free of the reload's own launch: the window
# before it is as long as the reload's, which took 3 to 7 s in the matrices.
BEFORE_S = 6.0
# The reload window lasts until every worker is new, and at least this long.
MIN_WINDOW_S = 2.0
# p99 of the requests started in the window / p99 of those started before it
MAX_P99_RATIO = 2.0
P99 = 0.99
# Why a server family of the catalogue has no graceful reload (reload: null).
NO_RELOAD_WHY = {
    "werkzeug": "Werkzeug's development server has no reload signal; a restart drops requests",
    "gevent": "gevent.pywsgi is one process, no master starts new workers: a reload is a restart",
    "waitress": "Waitress is one process with no reload signal and no graceful stop",
}


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    unit: str
    # seconds into the measured run
    at_s: float


@dataclass(frozen=True)
class CpuUse:
    """Where the CPU went in one window, from one host's sampler (None: not sampled)."""

    # CPUs the app unit used (its cgroup's usage counter)
    unit_cores: float | None
    # seconds its cgroup was throttled by its CPU quota, per second
    throttled: float | None
    # CPUs the app host (a container: the container) used, and may use
    host_cores: float | None
    host_limit: float | None
    # CPUs busy on the whole machine (/proc/stat)
    machine_cores: float | None


def cpu_use(samples: HostSamples | None, window: tuple[float, float]) -> CpuUse | None:
    """The CPU figures of `window` (Unix times): a counter's increase between the
    last row at or before its start and the first at or after its end, per
    second; a per-interval column's mean over the rows inside it."""
    if samples is None or not samples.rows:
        return None
    start, end = window

    def rate(column, scale):
        points = samples.column(column)
        before = [p for p in points if p[0] <= start]
        after = [p for p in points if p[0] >= end]
        if not before or not after:
            return None
        first, last = before[-1][0], after[0][0]
        per_second = counter_rate([p for p in points if first <= p[0] <= last])
        return None if per_second is None else per_second / scale

    def mean(column):
        values = [v for t, v in samples.column(column) if start < t <= end]
        return sum(values) / len(values) if values else None

    return CpuUse(
        unit_cores=rate("unit_cpu_usage_usec", 1e6),
        throttled=rate("unit_throttled_usec", 1e6),
        host_cores=mean("cpu_busy_cores"),
        host_limit=mean("cpu_limit_cores"),
        machine_cores=mean("procstat_busy_cores"),
    )


@dataclass(frozen=True)
class Observation:
    server: str
    unit: str
    # the unit can reload (systemd's CanReload)
    can_reload: bool
    load: LoadFigures | None = None
    # seconds until every worker was a new one (None: not within the timeout)
    replaced_s: float | None = None
    workers_before: tuple[int, ...] = ()
    workers_after: tuple[int, ...] = ()
    main_pid_before: int | None = None
    main_pid_after: int | None = None
    nginx_upstream_errors: int | None = None
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None = None
    # Unix times: the run had all its users, the reload was asked for, the
    # reload's own run on the controller had settled
    t0: float | None = None
    reload_at: float | None = None
    quiet_from: float = 0.0
    # the app host's sampler rows (None: none came back)
    app_samples: HostSamples | None = None

    @property
    def failed(self) -> int:
        return len(self.requests.failures()) if self.requests else self.load.failures

    @property
    def window(self) -> tuple[float, float]:
        """[start, end) of the reload window (Unix times)."""
        length = max(self.replaced_s if self.replaced_s is not None else REPLACE_TIMEOUT_S,
                     MIN_WINDOW_S)  # fmt: skip
        return self.reload_at, self.reload_at + length

    @property
    def window_before(self) -> tuple[float, float]:
        """As long a window just before it, from one second after the run's start
        and the reload's own run settled on."""
        start, end = self.window
        return max(start - (end - start), (self.t0 or 0) + 1, self.quiet_from), start

    @property
    def run_end(self) -> float | None:
        """When the run's last request completed (Unix time); None without one."""
        return self.requests.last_end if self.requests else None

    def p99_ms(self, window) -> tuple[float | None, int]:
        """(p99 latency of the requests started in the window, how many there were)."""
        begun = started_between(self.requests.requests, *window) if self.requests else []
        return percentile([r.latency_ms for r in begun], P99), len(begun)

    @property
    def p99_ratio(self) -> float | None:
        during, _ = self.p99_ms(self.window)
        before, _ = self.p99_ms(self.window_before)
        return round(during / before, 2) if during is not None and before else None

    def cpu(self, window) -> CpuUse | None:
        return cpu_use(self.app_samples, window)

    @property
    def no_reload_why(self) -> str:
        family = catalogue.load().server(self.server).family
        return NO_RELOAD_WHY.get(family, "the catalogue gives it no reload signal")


@dataclass(frozen=True)
class _Injected:
    load: object
    main_pid: int
    error_mark: int
    reloaded: dict
    t0: float = 0.0
    quiet_from: float = 0.0


class Reload(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        deployed = stack.deployment
        state = stack.app_unit(label=f"{NAME}-unit")
        if not state.can_reload:
            return self.judge(None, Observation(deployed.server, deployed.unit, False))
        done, injected = self.inject(stack, state.main_pid)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack, main_pid: int) -> tuple[Done, _Injected]:
        deployed = stack.deployment
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        marks = stack.log_marks(stack.start_log_marks(label=f"{NAME}-mark"))
        # on the app host: the reload at the fault's moment, then the wait for new workers
        quiet_from, at = quiet_after_launch(), fault_moment(t0, BEFORE_S)
        reloaded = stack.executor.script_json(
            stack.app, Path(workers.__file__),
            ["reload", "--unit", deployed.unit, "--expected", deployed.processes,
             "--at", f"{at:.3f}", "--timeout", REPLACE_TIMEOUT_S],
            label=f"{NAME}-reload", timeout=at - t0 + REPLACE_TIMEOUT_S + 180,
        )  # fmt: skip
        note(f"reloaded {deployed.unit}")
        # when it was asked for: a rolling reload's command returns once it is done
        done = Done(LOAD, deployed.unit, reloaded.get("asked_at", reloaded["at"]) - t0)
        return done, _Injected(load, main_pid, marks[NGINX_ERROR_LOG], reloaded, t0, quiet_from)

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        errors = stack.start_upstream_errors(injected.error_mark, label=f"{NAME}-upstream")
        after = stack.app_unit(label=f"{NAME}-unit-after")
        cut_off = errors.reply().json()
        if not result.ok:
            raise FaultError(f"the load test failed: {result.reason}")
        return Observation(
            server=stack.deployment.server,
            unit=stack.deployment.unit,
            can_reload=True,
            load=injected.load.figures(),
            replaced_s=injected.reloaded["replaced_s"],
            workers_before=tuple(injected.reloaded["workers_before"]),
            workers_after=tuple(injected.reloaded["workers_after"]),
            main_pid_before=injected.main_pid,
            main_pid_after=after.main_pid,
            nginx_upstream_errors=cut_off,
            requests=injected.load.requests(),
            t0=injected.t0,
            quiet_from=injected.quiet_from,
            reload_at=injected.reloaded.get("asked_at", injected.reloaded["at"]),
            app_samples=read_samples(injected.load.cell_dir).get(stack.app),
        )

    @staticmethod
    def judge(done: Done | None, seen: Observation) -> Outcome:
        if not seen.can_reload:
            return Outcome.skipped(NAME, seen, seen.no_reload_why)
        missed = []
        why = cannot_judge(seen.requests)
        if why:
            missed.append(why)
        else:
            if seen.failed:
                missed.append(f"{seen.failed} requests failed")
            missed += judge_latency(seen)
        if seen.replaced_s is None:
            old = len(set(seen.workers_after) & set(seen.workers_before))
            missed.append(
                f"the workers were not all replaced within {REPLACE_TIMEOUT_S} s ({old} old left)"
            )
        if seen.main_pid_after != seen.main_pid_before:
            missed.append("the master changed")
        return Outcome.judged(NAME, done, seen, missed)


def judge_latency(seen: Observation) -> list[str]:
    """The reload window's p99 against the window's before."""
    during, n_during = seen.p99_ms(seen.window)
    before, n_before = seen.p99_ms(seen.window_before)
    if not n_during or not n_before:
        return [
            f"cannot judge the latency: {n_before} requests started before the reload, "
            f"{n_during} in its window"
        ]
    run_end = seen.run_end
    if seen.replaced_s is not None and run_end is not None and seen.window[1] > run_end:
        # the window's last seconds had no request started in them to judge
        return [
            f"cannot judge the latency: the reload window ended "
            f"{seen.window[1] - run_end:.1f} s after the run"
        ]
    if during > MAX_P99_RATIO * before:
        return [
            f"p99 {during:.0f} ms for the requests started in the reload window, more than "
            f"{MAX_P99_RATIO:g} x the {before:.0f} ms before it"
        ]
    return []
