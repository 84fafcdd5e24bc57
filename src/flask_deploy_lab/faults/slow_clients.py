"""slow-clients: one /slow run in six windows: three without slow clients (the
baseline, repeated to know its spread), the control, one with them, one without
again, after a warm-up round of the control's requests that is not measured.
The control's window and theirs last DRAIN_S longer than the clients do, for
the Celery tasks their POSTs queued to run in. The slow clients reach the
app: POST /tasks bodies sent a byte at a time, opened over a few seconds as
independent clients would be (the app reads the body; nginx holds it until it
is whole) and slow readers of the app's largest answer (/queries?n=500, read a
few bytes at a time through a small receive buffer), from the last load
generator (hostside/slow_clients.py). The control sends the same requests, as
many, at full speed, timed to reach the app when the slow ones do: the work the
clients bring without their slowness.

Target: /slow's throughput in the window with them (requests completed OK per
second, from the request log) is at least the baseline's mean minus max(3 x its
standard deviation, 5 % of it), the baseline being the four windows without
any. When the control itself falls under that (the work costs), the bar is the
control's rate minus the same allowance instead: slowness may cost nothing the
same requests sent fast do not. The slow clients and the control must have
reached the app (90 % of the body connections answered, 90 % of the readers saw
their answer's status) and the slow ones been held (90 % of each at once), and
the broker's queue be empty at the end of the warm-up, the control's window and
theirs (the sampler's reading). Comparing windows of one run keeps the noise of a shared
machine out of the comparison as far as it can; the spread of the repeated
baseline says how much noise is left.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.fault import Fault
from flask_deploy_lab.faults.hostside import slow_clients
from flask_deploy_lab.faults.load import CONTROLLER_SETTLE_S, LoadFigures, LoadSpec
from flask_deploy_lab.faults.outcome import FaultError, Outcome
from flask_deploy_lab.faults.request_log import (
    RequestLog,
    cannot_judge,
    mean_and_sd,
    mean_rate,
    per_second,
)
from flask_deploy_lab.faults.stack import Stack
from flask_deploy_lab.report.samples import HostSamples, in_window, read_samples

NAME = "slow-clients"
# The allowance under the baseline's mean: the larger of 3 standard deviations
# and this share of it.
MIN_ALLOWED_DROP = 0.05
SPREAD_SDS = 3
# Slow clients: POST bodies a byte every BODY_INTERVAL_S, and slow readers.
SLOW_BODIES = 180
SLOW_READERS = 20
SLOW_CLIENTS = SLOW_BODIES + SLOW_READERS
BODY_ENDPOINT = "tasks"
# the body (hostside DEFAULT_BODY, 32 bytes) takes 32 x 0.15 = 4.8 s of the 8 s window
BODY_INTERVAL_S = 0.15
BODY_S = len(slow_clients.DEFAULT_BODY) * BODY_INTERVAL_S
# The bodies' openings are spread over this many seconds, so they end over as
# many, as independent clients' would, and every one inside the window
# (4.8 + 2.4 < 8 s). Opened in the same tick, all 180 ended in the same tick
# too: a burst of 180 POSTs at once, which held uwsgi-gevent's /slow for about
# a second (faults-20261201-152737) and measured the burst, not the slowness.
BODY_STAGGER_S = 2.4
# A server that holds few requests at once (Gunicorn's sync workers, one each)
# meets CLIENTS_PER_SLOT slow clients per slot instead: as many would hold each
# of its slots ten times over, were they to reach it slowly (what nginx keeps
# from happening), and the work they bring fits in a window beside the load.
# Two sync workers answer /slow?delay=0.2 at 10 req/s: 180 bodies and 20
# readers a window were more than they could answer (58 of 180 bodies with
# them, 73 sent fast; faults-20261201-200821), which measured capacity.
CLIENTS_PER_SLOT = 10
# A whole request waits in the listen backlog behind the load's own requests
# beyond the slots (Little's law: (users - slots) x delay / slots). The bodies'
# last end this long before the window does, after that wait.
ANSWER_MARGIN_S = 0.8
READER_ENDPOINT = "queries"
READER_QUERIES = 500
READER_INTERVAL_S = 0.5
READER_BYTES = 64
READER_RCVBUF = 4096
# What nginx answers itself: the body did not reach the app.
NGINX_STATUSES = (408, 413, 499, 502, 504)
# Of the connections asked for, the share that must have been held at once, and
# that must have reached the app (bodies answered, readers' status seen).
MIN_HELD_SHARE = 0.9
MIN_REACHED_SHARE = 0.9
# An I/O-bound endpoint (its throughput is users / delay while the machine
# keeps up), in one run of six windows: three baseline, the control, with
# them, after. WINDOW_S is a window without clients, and the clients' own time.
WINDOW_S = 8
BASELINE_WINDOWS = 3
CONTROL, WITH_THEM, AFTER = BASELINE_WINDOWS, BASELINE_WINDOWS + 1, BASELINE_WINDOWS + 2
WINDOWS = BASELINE_WINDOWS + 3
# The control's window and theirs go on DRAIN_S after the clients' WINDOW_S:
# each POST queues a Celery task, which runs on the app host after the POST
# was answered. With 8 s windows the control's tasks ran in the window with
# the slow clients and theirs in the one after (the broker's queue: 156-170
# tasks at the control's end, empty 5-9 s later; faults-20261201-212535, where
# granian's /slow fell 8.8 % with them against 2.1 % in the control), so each
# window was charged with the other's work. Now each holds its own, and the
# judge checks that the queue was empty at its end.
DRAIN_S = 10
WINDOW_LENGTHS = tuple(
    WINDOW_S + DRAIN_S if n in (CONTROL, WITH_THEM) else WINDOW_S for n in range(WINDOWS)
)
# Before the first window the same requests are sent once, fast, and their tasks
# run: a warm-up, not measured. The first POSTs of a run cost the app more than
# the same POSTs later: in every run of faults-20261201-214739 and -220635 but
# Gunicorn's sync one, /slow dipped in the second the control's bodies began
# to arrive (54-86 req/s against 80-99 in the same second with the slow
# clients), and the control fell 2.1-6.1 % where the slow clients cost 0.8-2.7 %,
# which lowered the bar for the slow clients wherever it came from the control.
WARMUP_S = WINDOW_S + DRAIN_S
# A window after a change leaves out its first second.
SKIP_S = 1
# The warm-up, then the windows, begin once the fault's own launches have
# settled: five Ansible runs started together (then four generators, one for
# the two readings; six generators now) kept the machine's two CPUs 1.4-2.0
# busy for about 5 s (0.3-0.6 before and after) and took gevent's /slow from
# 100 to 61 req/s inside the first baseline window (faults-20261201-185049),
# which was lower than the two after it in 13 of the 14 runs kept, by 0.6-9.8
# req/s. LAUNCH_SETTLE_S after the launch: 2 s more than one launch needs.
LAUNCH_SETTLE_S = CONTROLLER_SETTLE_S + 2
# The wait for the measured run returns up to about 5.3 s after it began; the
# windows must end inside the run, with its last whole second.
LOAD = LoadSpec("slow", duration=WARMUP_S + sum(WINDOW_LENGTHS) + 16, delay=0.2)
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
class Clients:
    """The slow clients a server meets, sized by its slots."""

    bodies: int
    readers: int
    # the seconds the bodies' openings are spread over
    stagger_s: float
    # the wait a whole request has in the listen backlog behind the load's
    queue_wait_s: float


def clients_for(slots: int | None, load: LoadSpec = LOAD) -> Clients:
    """SLOW_CLIENTS (nine bodies to a reader), or CLIENTS_PER_SLOT a slot where that
    is fewer; the bodies' stagger shortened by the backlog's wait so that every body,
    once whole, is answered inside its window. `slots` None: a thread per request."""
    total = SLOW_CLIENTS if slots is None else min(SLOW_CLIENTS, CLIENTS_PER_SLOT * slots)
    readers = max(1, round(total * SLOW_READERS / SLOW_CLIENTS))
    wait = 0.0 if slots is None else max(0, load.users - slots) * (load.delay or 0) / slots
    stagger = min(BODY_STAGGER_S, WINDOW_S - BODY_S - ANSWER_MARGIN_S - wait)
    if stagger < 0:
        raise FaultError(
            f"cannot judge: a whole body waits {wait:.1f} s in the backlog behind {load.users} "
            f"users on {slots} slot{'s' if slots > 1 else ''}, so none sent slowly can be "
            f"answered inside its window of {WINDOW_S} s"
        )
    return Clients(total - readers, readers, round(stagger, 2), round(wait, 2))


@dataclass(frozen=True)
class Done:
    load: LoadSpec
    bodies: int
    readers: int
    prober: str
    window_s: int
    stagger_s: float
    queue_wait_s: float


@dataclass(frozen=True)
class Observation:
    load: LoadFigures
    # the windows' bounds, Unix seconds: baseline [b0, b1), [b1, b2), [b2, b3),
    # the control [b3, b4), with them [b4, b5), without them again [b5, b6)
    windows: tuple[int, ...]
    # every request of the run (None: the run left no request log)
    requests: RequestLog | None
    # the generators' summaries (hostside/slow_clients.py), {} without one
    bodies: dict
    readers: dict
    control_bodies: dict
    control_readers: dict
    # the warm-up's, the same requests as the control's
    warmup_bodies: dict
    warmup_readers: dict
    nginx_active_connections: int | None
    app_established_connections: int
    # tasks in the broker's queue at the end of the warm-up, the control's window
    # and theirs (the sampler's last reading before each; None: not sampled)
    queued_at_end: tuple[int | None, ...] = (None, None, None)

    def rate(self, index: int) -> float:
        """/slow's rate in window `index`; a window after a change leaves out its first second."""
        counts = per_second(self.requests.requests) if self.requests else {}
        start, end = self.windows[index], self.windows[index + 1]
        skip = SKIP_S if index >= BASELINE_WINDOWS else 0
        return round(mean_rate(counts, start + skip, end), 1)

    @property
    def run_end(self) -> float | None:
        """When the run's last request completed (Unix time); None without one."""
        return self.requests.last_end if self.requests else None

    @property
    def rates(self) -> list[float]:
        return [self.rate(i) for i in range(len(self.windows) - 1)]

    @property
    def baseline(self) -> list[float]:
        """The windows without any of them: the first three and the last."""
        rates = self.rates
        return rates[:BASELINE_WINDOWS] + rates[AFTER:]

    @property
    def with_them(self) -> float:
        return self.rates[WITH_THEM]

    @property
    def control(self) -> float:
        return self.rates[CONTROL]

    @property
    def mean_sd(self) -> tuple[float, float]:
        mean, sd = mean_and_sd(self.baseline)
        return round(mean, 1), round(sd, 2)

    @property
    def allowance(self) -> float:
        """How far under the baseline or the control the rate with them may be."""
        mean, sd = mean_and_sd(self.baseline)
        return max(SPREAD_SDS * sd, MIN_ALLOWED_DROP * mean)

    @property
    def baseline_bound(self) -> float:
        mean, _ = mean_and_sd(self.baseline)
        return round(mean - self.allowance, 1)

    @property
    def control_bound(self) -> float:
        return round(self.control - self.allowance, 1)

    @property
    def work_costs(self) -> bool:
        """The same requests sent fast took /slow under the baseline's bound."""
        return self.control < self.baseline_bound

    @property
    def bound(self) -> float:
        """The least rate with them that passes: the baseline's bound, or the control's
        when the work itself costs more than the baseline's allowance."""
        return self.control_bound if self.work_costs else self.baseline_bound

    def against_baseline(self, rate: float) -> float:
        """A rate against the baseline's mean, as a fraction (-1: no baseline)."""
        mean, _ = mean_and_sd(self.baseline)
        return round((rate - mean) / mean, 4) + 0.0 if mean else -1.0

    @property
    def change(self) -> float:
        return self.against_baseline(self.with_them)

    @property
    def control_change(self) -> float:
        return self.against_baseline(self.control)

    @property
    def held(self) -> tuple[int, int]:
        return self.bodies.get("open_max", 0), self.readers.get("open_max", 0)

    @property
    def reached(self) -> tuple[int, int]:
        """(bodies the app answered, readers that saw their answer's 2xx status)."""
        return reached(self.bodies, self.readers)

    @property
    def control_reached(self) -> tuple[int, int]:
        return reached(self.control_bodies, self.control_readers)

    @property
    def warmup_reached(self) -> tuple[int, int]:
        return reached(self.warmup_bodies, self.warmup_readers)


def reached(bodies: dict, readers: dict) -> tuple[int, int]:
    """A body is the app's to answer once nginx has it whole: any status but nginx's
    own (NGINX_STATUSES: a body timeout, too large, no upstream) says it got there;
    a reader got there when it saw a 2xx status."""
    answered = sum(
        n
        for s, n in (bodies.get("statuses") or {}).items()
        if str(s).isdigit() and int(s) not in NGINX_STATUSES
    )
    seen = sum(n for s, n in (readers.get("statuses") or {}).items() if str(s).startswith("2"))
    return answered, seen


@dataclass(frozen=True)
class _Injected:
    load: object
    windows: tuple[int, ...]
    # the summaries of the slow bodies, slow readers, the control's two, the warm-up's two
    summaries: tuple[dict, dict, dict, dict, dict, dict]
    nginx_status: str
    app_sockets: str


def generator_args(kind, url, connections, interval, at, duration, extra=()):
    return ["--kind", kind, "--url", url, "--connections", connections, "--interval", interval,
            "--at", at, "--duration", duration, *extra]  # fmt: skip


class SlowClients(Fault):
    name = NAME

    def run(self, stack: Stack) -> Outcome:
        done, injected = self.inject(stack)
        return self.judge(done, self.observe(stack, injected))

    def inject(self, stack: Stack) -> tuple[Done, _Injected]:
        clients = clients_for(stack.deployment.slots)
        load = stack.load(NAME, LOAD)
        t0 = load.wait_measuring()
        windows = window_bounds(time.time())
        w_start, w_end = windows[WITH_THEM], windows[WITH_THEM + 1]
        timeout = w_end - t0 + 180
        body_url = stack.url(BODY_ENDPOINT)
        reader_url = f"{stack.url(READER_ENDPOINT)}?n={READER_QUERIES}"
        # The control: as many requests of each, once each, reaching the app when the
        # slow ones do: the readers' at once, from the window's start over half of it;
        # the bodies' once whole, BODY_S in, over the same stagger. Sent earlier, they
        # would pile onto the readers' queries, which the slow ones never meet.
        c_start, warm = windows[CONTROL], warmup_start(windows)
        fast = {
            start: {
                "bodies": generator_args(
                    "body", body_url, clients.bodies, BODY_INTERVAL_S, start + BODY_S,
                    WINDOW_S - BODY_S,
                    ["--stagger", clients.stagger_s, "--total", clients.bodies, "--fast"]),
                "readers": generator_args(
                    "reader", reader_url, clients.readers, READER_INTERVAL_S, start, WINDOW_S,
                    ["--stagger", WINDOW_S / 2, "--total", clients.readers, "--fast"]),
            }
            for start in (c_start, warm)
        }  # fmt: skip
        argvs = {
            "bodies": generator_args(
                "body", body_url, clients.bodies, BODY_INTERVAL_S, w_start, WINDOW_S,
                ["--stagger", clients.stagger_s]),
            "readers": generator_args(
                "reader", reader_url, clients.readers, READER_INTERVAL_S, w_start, WINDOW_S,
                ["--read-bytes", READER_BYTES, "--rcvbuf", READER_RCVBUF,
                 "--stagger", WINDOW_S / 2]),
            "control-bodies": fast[c_start]["bodies"],
            "control-readers": fast[c_start]["readers"],
            "warmup-bodies": fast[warm]["bodies"],
            "warmup-readers": fast[warm]["readers"],
        }  # fmt: skip
        script = Path(slow_clients.__file__)
        generators = [
            stack.executor.start_script(
                stack.prober, script, argv, label=f"{NAME}-{what}", timeout=timeout
            )
            for what, argv in argvs.items()
        ]
        middle = f"{w_start + WINDOW_S / 2:.3f}"
        readings = stack.executor.start_run(
            {
                stack.proxy: ["python3", "-c", NGINX_STATUS_AT, stack.status_url(), middle],
                stack.app: ["python3", "-c", SOCKETS_AT, middle,
                            f"( sport = :{stack.deployment.port} )"],
            },
            label=f"{NAME}-connections", timeout=timeout,
        )  # fmt: skip
        summaries = None
        try:
            seen = readings.replies()
            summaries = [generator.reply().json() for generator in generators]
        finally:
            if summaries is None or None in summaries:
                # one did not end by itself with its summary (or this fault broke off)
                stack.executor.run_one(
                    stack.prober, ["pkill", "-TERM", "-f", CLIENTS_PATTERN], label=f"{NAME}-stop"
                )
                for generator in generators:
                    generator.reply()
        summaries = [x if isinstance(x, dict) else {} for x in summaries or [{}] * len(argvs)]
        done = Done(LOAD, clients.bodies, clients.readers, stack.prober, WINDOW_S,
                    clients.stagger_s, clients.queue_wait_s)  # fmt: skip
        injected = _Injected(
            load, windows, tuple(summaries), seen[stack.proxy].stdout, seen[stack.app].stdout
        )
        return done, injected

    def observe(self, stack: Stack, injected: _Injected) -> Observation:
        result = injected.load.finish()
        if not result.ok:
            raise FaultError(f"the load test with slow clients failed: {result.reason}")
        active = parse_active(injected.nginx_status)
        samples = read_samples(injected.load.cell_dir)
        return Observation(
            load=injected.load.figures(),
            windows=injected.windows,
            requests=injected.load.requests(),
            bodies=injected.summaries[0],
            readers=injected.summaries[1],
            control_bodies=injected.summaries[2],
            control_readers=injected.summaries[3],
            warmup_bodies=injected.summaries[4],
            warmup_readers=injected.summaries[5],
            nginx_active_connections=active,
            app_established_connections=len(injected.app_sockets.splitlines()),
            queued_at_end=tuple(
                queued_at(samples, injected.windows[n]) for n in (0, CONTROL + 1, WITH_THEM + 1)
            ),
        )

    @staticmethod
    def judge(done: Done, seen: Observation) -> Outcome:
        missed = []
        why = cannot_judge(seen.requests)
        if why:
            missed.append(why)
        else:
            mean, sd = seen.mean_sd
            end = seen.run_end
            if not mean:
                missed.append("cannot judge: /slow answered nothing in the windows without them")
            elif end is None or seen.windows[-1] > int(end):
                # the second the run stopped in is partial: a window holding it counts too little
                missed.append(
                    f"cannot judge: the run ended at {end or 0:.1f}, before the end of its last "
                    f"window ({seen.windows[-1]})"
                )
            elif seen.with_them < seen.bound and seen.work_costs:
                missed.append(
                    f"/slow at {seen.with_them} req/s with them, under {seen.bound}: the control "
                    f"(the same requests sent fast) at {seen.control}, minus the baseline's "
                    f"allowance max({SPREAD_SDS} x sd {sd}, {MIN_ALLOWED_DROP:.0%} of {mean}): "
                    "the slowness costs more than the work"
                )
            elif seen.with_them < seen.bound:
                missed.append(
                    f"/slow at {seen.with_them} req/s with them, under {seen.bound} (the "
                    f"baseline's {mean} - max({SPREAD_SDS} x sd {sd}, {MIN_ALLOWED_DROP:.0%})); "
                    f"the same requests sent fast: {seen.control}"
                )
        for name, queued in zip(QUEUED_WINDOWS, seen.queued_at_end, strict=True):
            if queued is None:
                missed.append(
                    f"cannot judge: the broker's queue was not sampled at the end of {name} window"
                )
            elif queued:
                missed.append(
                    f"cannot judge: {queued} tasks still queued at the end of {name} window: "
                    "their work fell into the next one"
                )
        for kind, asked, held, reached, what in (
            ("body", done.bodies, seen.held[0], seen.reached[0], "answered by the app"),
            ("reader", done.readers, seen.held[1], seen.reached[1], "saw a 2xx status"),
        ):
            if held < MIN_HELD_SHARE * asked:
                missed.append(f"the generator held {held} of {asked} slow {kind} connections")
            if reached < MIN_REACHED_SHARE * asked:
                missed.append(
                    f"only {reached} slow {kind} requests {what} (of {asked} connections): "
                    "they did not reach the app"
                )
        # a warm-up that did not reach the app leaves the first POSTs' cost in the control
        for which, (bodies, readers) in (
            ("the control's", seen.control_reached),
            ("the warm-up's", seen.warmup_reached),
        ):
            for kind, asked, reached in (
                ("body", done.bodies, bodies),
                ("reader", done.readers, readers),
            ):
                if reached < MIN_REACHED_SHARE * asked:
                    missed.append(
                        f"cannot judge: only {reached} of {which} {asked} {kind} requests "
                        "reached the app"
                    )
        return Outcome.judged(NAME, done, seen, missed)


def window_bounds(launch: float) -> tuple[int, ...]:
    """The windows' bounds (whole Unix seconds) for launches made at `launch`, after
    the warm-up, which begins once they have settled."""
    b0 = math.ceil(launch + LAUNCH_SETTLE_S) + WARMUP_S
    return tuple(itertools.accumulate(WINDOW_LENGTHS, initial=b0))


def warmup_start(windows: tuple[int, ...]) -> int:
    return windows[0] - WARMUP_S


# the windows at whose end the broker's queue is read, as the judge names them
QUEUED_WINDOWS = ("the warm-up's", "the control's", "the slow clients'")


# The sampler's reading of the queue that counts for a window's end: the last
# one at most this long before it (the sampler reads every second).
QUEUE_READING_S = 2.0


def queued_at(samples: dict[str, HostSamples], end: float) -> int | None:
    """Tasks in the broker's queue at `end`: the last reading of the host that
    samples it, in the QUEUE_READING_S before; None without one."""
    readings = [
        point
        for host in samples.values()
        for point in in_window(host, (end - QUEUE_READING_S, end)).column("broker_queued")
    ]
    return int(max(readings)[1]) if readings else None


def parse_active(status: str) -> int | None:
    """Active connections from nginx's stub_status page."""
    found = re.search(r"Active connections:\s*(\d+)", status)
    return int(found.group(1)) if found else None
