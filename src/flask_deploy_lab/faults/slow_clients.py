"""slow-clients: one /slow run in three 12 s windows: without, with, and again
without 200 connections to nginx that dribble a header byte a second
(hostside/slow_clients.py, from the last load generator).

Target: /slow's answers (counted per second in nginx's access log) with them
stay within 10 % of the windows without them, and the generator held (nearly)
all its connections. Comparing windows of one run rather than two runs keeps
the noise of a shared machine out of the comparison as far as it can.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import slow_clients
from flask_deploy_lab.faults.load import LoadFigures, LoadSpec
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.stack import NGINX_ACCESS_LOG, Stack, rate_between

NAME = "slow-clients"
MAX_THROUGHPUT_DROP = 0.10
SLOW_CLIENTS = 200
# Of the connections asked for, the share the generator must have held at once.
MIN_HELD_SHARE = 0.9
# An I/O-bound endpoint (its throughput is users / delay while the machine
# keeps up), in one run of three windows.
WINDOW_S = 12
LOAD = LoadSpec("slow", duration=3 * WINDOW_S + 4, delay=0.2)
# What stops a generator left running (its command line on the prober).
CLIENTS_PATTERN = r"^python3 .*slow_clients\.py"
# The connections nginx and the app hold, read in the middle of the window with
# the slow clients. Both wait on their hosts until then, so that no Ansible run
# starts on the controller (which shares the lab's CPUs) inside the windows.
NGINX_STATUS_AT = (
    "import sys, time, urllib.request as u; time.sleep(max(0.0, float(sys.argv[2]) - time.time()));"
    " print(u.urlopen(sys.argv[1], timeout=5).read())"
)
SOCKETS_AT = (
    "import subprocess, sys, time; time.sleep(max(0.0, float(sys.argv[1]) - time.time()));"
    " subprocess.run(['ss', '-Htn', 'state', 'established', sys.argv[2]], check=False)"
)


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    connections: int
    prober: str
    window_s: int


@dataclass(frozen=True)
class Observation:
    load: LoadFigures
    # the windows' bounds, Unix seconds: without them [w0, w1), with them
    # [w1 + 1, w2), without them again [w2 + 1, w3)
    windows: tuple[int, int, int, int]
    # 200s of /slow nginx logged, per Unix second
    answered: dict[int, int]
    # the generator's summary (hostside/slow_clients.py), {} without one
    summary: dict
    nginx_active_connections: int | None
    app_established_connections: int

    @property
    def without(self) -> tuple[float, float]:
        w0, w1, w2, w3 = self.windows
        return rate_between(self.answered, w0, w1), rate_between(self.answered, w2 + 1, w3)

    @property
    def with_them(self) -> float:
        _, w1, w2, _ = self.windows
        return rate_between(self.answered, w1 + 1, w2)

    @property
    def change(self) -> float:
        """With them against the mean of the windows without them (-1: no baseline)."""
        baseline = sum(self.without) / 2
        return round((self.with_them - baseline) / baseline, 4) + 0.0 if baseline else -1.0

    @property
    def held(self) -> int:
        return self.summary.get("open_max", 0)


@dataclass(frozen=True)
class _Injected:
    load: object
    windows: tuple[int, int, int, int]
    access_mark: int
    summary: dict
    nginx_status: str
    app_sockets: str


class SlowClients(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        mark = stack.log_marks(stack.start_log_marks(label=f"{NAME}-mark"))[NGINX_ACCESS_LOG]
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        w0 = int(t0) + 2
        w1, w2, w3 = (w0 + n * WINDOW_S for n in (1, 2, 3))
        clients = stack.executor.start_script(
            stack.prober, Path(slow_clients.__file__),
            ["--url", stack.url("json"), "--connections", SLOW_CLIENTS, "--interval", 1,
             "--at", w1, "--duration", w2 - w1],
            label=f"{NAME}-clients", timeout=w2 - t0 + 180,
        )  # fmt: skip
        middle = f"{w1 + WINDOW_S / 2:.3f}"
        readings = stack.executor.start_run(
            {
                stack.proxy: ["python3", "-c", NGINX_STATUS_AT, stack.status_url(), middle],
                stack.app: ["python3", "-c", SOCKETS_AT, middle,
                            f"( sport = :{stack.deployment.port} )"],
            },
            label=f"{NAME}-connections", timeout=w2 - t0 + 180,
        )  # fmt: skip
        summary = None
        try:
            seen = readings.replies()
            summary = clients.reply().json()
        finally:
            if summary is None:
                # it did not end by itself with its summary (or this fault broke off)
                stack.executor.run_one(
                    stack.prober, ["pkill", "-TERM", "-f", CLIENTS_PATTERN], label=f"{NAME}-stop"
                )
                clients.reply()
        done = Done(LOAD, SLOW_CLIENTS, stack.prober, WINDOW_S)
        injected = _Injected(
            load, (w0, w1, w2, w3), mark, summary if isinstance(summary, dict) else {},
            seen[stack.proxy].stdout, seen[stack.app].stdout,
        )  # fmt: skip
        return done, injected

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        if not result.ok:
            raise FaultError(f"the load test with slow clients failed: {result.reason}")
        active = parse_active(injected.nginx_status)
        return Observation(
            load=injected.load.figures(),
            windows=injected.windows,
            answered=stack.answered(injected.access_mark, "slow", label=f"{NAME}-answered"),
            summary=injected.summary,
            nginx_active_connections=active,
            app_established_connections=len(injected.app_sockets.splitlines()),
        )

    @staticmethod
    def judge(done: Done, seen: Observation) -> Outcome:
        missed = []
        if seen.change < -MAX_THROUGHPUT_DROP:
            missed.append(
                f"/slow answered {seen.change:+.1%} with them, "
                f"more than {MAX_THROUGHPUT_DROP:.0%} less"
            )
        if seen.held < MIN_HELD_SHARE * SLOW_CLIENTS:
            missed.append(f"the generator held {seen.held} of {SLOW_CLIENTS} connections")
        return Outcome.judged(NAME, done, seen, missed)


def parse_active(status: str) -> int | None:
    """Active connections from nginx's stub_status page."""
    found = re.search(r"Active connections:\s*(\d+)", status)
    return int(found.group(1)) if found else None
