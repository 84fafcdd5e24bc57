"""The load under which a fault is done: one bounded loadtest.yml cell in the
background (flask_deploy_lab.ansible.start_playbook), and what Locust measured,
read with the report's readers (flask_deploy_lab.report)."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from flask_deploy_lab.ansible import PlaybookResult, start_playbook
from flask_deploy_lab.faults.hostside import wait_run
from flask_deploy_lab.faults.outcome import FaultError
from flask_deploy_lab.faults.request_log import RequestLog, read_request_log
from flask_deploy_lab.report import locust
from flask_deploy_lab.report.csvfile import number, read_rows

# Closed-loop users on one endpoint, seconds of the measured run, and when
# (seconds into it) the fault is done.
LOAD_USERS = 20
LOAD_SECONDS = 20
FAULT_AT_S = 8
# The fault's own runs (ansible on the controller, which shares the lab's CPUs)
# take CPU for about this long once launched: in faults-20261201-152737 the
# machine was 0.44-0.77 CPUs busier than the lab's hosts for the 5 s after
# pg-restart launched its probe and its outage, and 0.1-0.3 after; the app host
# got 0.59-0.87 CPUs in those seconds and 0.9-1.0 after. A window measured
# before a fault, to compare with, starts once they have settled.
CONTROLLER_SETTLE_S = 5.0
# Seconds for the measured run to start (the first run installs Locust), and
# of each wait for it on the master's host (one round trip each).
START_TIMEOUT_S = 300
WAIT_CHUNK_S = 20
# A failure Locust counted against an HTTP status says so in its error.
HTTP_STATUS = re.compile(r"HTTP (\d{3})")


def note(message):
    """Progress, on stderr: stdout keeps one line per fault."""
    print(f"   .. {message}", file=sys.stderr, flush=True)


def sleep_until(moment):
    time.sleep(max(0.0, moment - time.time()))


def quiet_after_launch() -> float:
    """When the runs the caller launches now have settled (Unix time)."""
    return time.time() + CONTROLLER_SETTLE_S


def fault_moment(t0: float, before_s: float) -> float:
    """When to do a fault whose runs are launched now, with `before_s` seconds
    before it to compare with: FAULT_AT_S into the measured run (Unix time `t0`),
    or later, so that those seconds begin once the runs have settled."""
    return max(t0 + FAULT_AT_S, quiet_after_launch() + before_s)


@dataclass(frozen=True)
class LoadSpec:
    """What a fault loads the stack with."""

    endpoint: str
    users: int = LOAD_USERS
    duration: int = LOAD_SECONDS
    # ?delay= of a delay-bound endpoint (loadtest.yml's delay_s; for /tasks the
    # delay of an upstream task); None: its default
    delay: float | None = None
    # what each POST /tasks asks for (loadtest.yml's task_kind, task_n); None: its default
    task_kind: str | None = None
    task_n: int | None = None
    # seconds between the samplers' rows (the sampler role's sampler_interval);
    # None: its default
    sampler_interval: float | None = None


@dataclass(frozen=True)
class LocustFailure:
    """A row of locust_failures.csv."""

    # the HTTP status it names, 0 when it names none
    status: int
    error: str
    count: int
    # when it was first and last seen, Unix time to the second (None: not recorded)
    first: float | None = None
    last: float | None = None


@dataclass(frozen=True)
class LoadFigures:
    """What Locust measured over the measured run (the Aggregated row, the failures)."""

    requests: int
    failures: int
    rps: float
    errors: tuple[LocustFailure, ...] = ()

    @property
    def failed_share(self) -> float:
        return self.failures / max(self.requests, 1)

    def totals(self) -> dict:
        return {"requests": self.requests, "failures": self.failures, "rps": self.rps}


def seen(text):
    """A Locust failure's First/Last Seen (ISO 8601 to the second, or Unix time) as Unix time."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


def read_failures(cell_dir: Path) -> tuple[LocustFailure, ...]:
    rows = read_rows(cell_dir / locust.FAILURES)
    if rows is None:
        raise FaultError(f"the run left no {locust.FAILURES} in {cell_dir}")
    found = []
    for row in rows:
        status = HTTP_STATUS.search(row.get("Error") or "")
        found.append(
            LocustFailure(
                status=int(status.group(1)) if status else 0,
                error=row.get("Error") or "",
                count=int(number(row.get("Occurrences")) or 0),
                first=seen(row.get("First Seen")),
                last=seen(row.get("Last Seen")),
            )
        )
    return tuple(found)


def read_totals(cell_dir: Path) -> LoadFigures:
    """The Aggregated row's requests, failures and rate (no failure rows)."""
    stats = locust.read_stats(cell_dir)
    if stats is None:
        raise FaultError(f"the run left no {locust.STATS} in {cell_dir}")
    return LoadFigures(
        requests=int(stats.requests or 0),
        failures=int(stats.failures or 0),
        rps=round(float(stats.rps or 0), 1),
    )


def read_figures(cell_dir: Path) -> LoadFigures:
    return replace(read_totals(cell_dir), errors=read_failures(cell_dir))


def read_request_history(cell_dir: Path) -> list[tuple[float, int, int]]:
    """[(Unix time, users, total requests so far)] of the Aggregated rows of the
    stats history (read_history's points, with the request count a reset shows in)."""
    rows = read_rows(cell_dir / locust.HISTORY)
    if rows is None:
        raise FaultError(f"the run left no {locust.HISTORY} in {cell_dir}")
    return [
        (
            float(number(row.get("Timestamp")) or 0),
            int(number(row.get("User Count")) or 0),
            int(number(row.get("Total Request Count")) or 0),
        )
        for row in rows
        if row.get("Name") == locust.AGGREGATED and number(row.get("Timestamp")) is not None
    ]


class Load:
    """One loadtest.yml cell in the background, and its results once it ended."""

    def __init__(self, stack, cell: str, spec: LoadSpec):
        self.stack, self.cell, self.spec = stack, cell, spec
        self.cell_dir = stack.run_dir / cell
        extra = {
            **stack.extra_vars,
            "run_id": stack.run_id,
            "cell_id": cell,
            "endpoint": spec.endpoint,
            "users": spec.users,
            "duration": spec.duration,
            # no warm-up: a fault is timed from the start of the measured run
            "warmup": 0,
            "loadtest_install": not stack.locust_installed,
            # Locust's run is what a fault is timed against: no hey after it,
            # no in-process cost before it
            "loadtest_hey": False,
            "loadtest_inprocess": False,
        }
        if spec.delay is not None:
            extra["delay_s"] = spec.delay
        if spec.task_kind is not None:
            extra["task_kind"] = spec.task_kind
        if spec.task_n is not None:
            extra["task_n"] = spec.task_n
        if spec.sampler_interval is not None:
            extra["sampler_interval"] = spec.sampler_interval
        note(f"load: /{spec.endpoint} x{spec.users} users for {spec.duration} s ({cell})")
        # the master's files of an earlier run stay until this one starts
        self.launched = time.time()
        self._running = start_playbook(
            "loadtest.yml", extra_vars=extra, inventory=stack.inventory_source,
            log_path=stack.logs / f"{cell}.log",
            timeout=START_TIMEOUT_S + spec.duration + 120,
        )  # fmt: skip
        self._result: PlaybookResult | None = None

    def wait_measuring(self) -> float:
        """Waits for the measured run with all its users; returns its Unix start time
        (the master's clock). A bounded wait on the master's host, repeated."""
        master = self.stack.master
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self._running.running():
                result = self.finish()
                why = result.reason if not result.ok else "no run"
                raise FaultError(f"the load test ended before its measured run: {why}")
            chunk = round(max(1.0, min(WAIT_CHUNK_S, deadline - time.monotonic())), 1)
            args = ["--users", self.spec.users, "--since", f"{self.launched:.3f}"]
            found = self.stack.executor.script_json(
                master, Path(wait_run.__file__), [*args, "--timeout", chunk],
                label=f"{self.cell}-wait-run", timeout=chunk + 120,
            )  # fmt: skip
            if found.get("started") is not None:
                started = float(found["started"])
                note(f"measured run started {time.time() - started:.1f} s ago")
                return started
        raise FaultError(f"the measured run did not start within {START_TIMEOUT_S} s")

    def finish(self) -> PlaybookResult:
        """Waits for the end of the run (bounded by its timeout)."""
        if self._result is None:
            self._result = self._running.wait()
            if self._result.ok:
                self.stack.locust_installed = True
        return self._result

    def figures(self) -> LoadFigures:
        return read_figures(self.cell_dir)

    def requests(self) -> RequestLog | None:
        """Every request of the run (request_log.py); None without a request log."""
        return read_request_log(self.cell_dir)
