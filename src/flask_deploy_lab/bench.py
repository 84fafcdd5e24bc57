"""Measure every server of a matrix on every endpoint, then write the comparison report.

    make bench                                   # the default matrix
    make bench SERVERS="uwsgi gevent" ENDPOINTS=slow LADDER="1 4" DELAYS=1 DURATION=30
    make bench REPEATS=3                         # every cell three times, interleaved
    fdl-bench --servers uwsgi --endpoints slow db --duration 20

For each server: converge the app hosts and the proxy to it (``playbooks/site.yml
-e server=...``; the first converge is a full one, later ones only ``--tags
app,proxy``), read the slots it was given (the app hosts' deployment fact), then
one ``playbooks/loadtest.yml`` cell per step into ``reports/<run-id>/``. An
endpoint whose time is a delay (the catalogue's delay_param, /slow) is measured
on a concurrency ladder: each delay of DELAYS at each multiple of LADDER times
the server's slots (below, at and above them; a server with unbounded threads
takes the sizing's expected concurrency instead), by Locust and then by hey, the
independent client. Every other endpoint is one cell of USERS users. A cell that
fails is recorded and the bench goes on; at the end the report
(``flask_deploy_lab.report``) writes ``reports/<run-id>/index.html``, each
target's verdict is printed (``flask_deploy_lab.targets``), then each invalid
cell of any endpoint with why (the report's validity rules: its figures are
not results), and the exit status is 1 if any cell failed, missed a target or
is invalid. Server and endpoint names are the
catalogue's (catalogue.yml); an unknown one stops the bench before anything runs.

With REPEATS=N (N > 1) every cell is measured N times, in rounds: round k
converges and measures every server (each of its cells named with the suffix
``--r<k>``, ``loadtest.yml -e repeat=k``) before round k + 1 begins, and every
other round takes the servers in the reverse order (a b c, c b a, a b c, ...).
A drift of the machine over the run (a background job, heat) then falls on
every server alike: with the same order each round the first server would
always be measured early in its round and the last late, a bias of up to a
round's length that no number of repeats removes; reversing every other
round cancels a steady drift exactly for an even N and leaves 1/N of it for
an odd N. (Rotating the order by one server a round cancels it only when N
is a multiple of the number of servers.) Each time a server comes up it is
converged (only the bench's first converge is a full one) and its slots read
again. The report (report.repeats) gives each configuration's mean, 95 %
interval and coefficient of variation; with N = 1 nothing changes: no
suffix, no repeat variable.

Every option has an environment variable (the make variables of the same name):

    SERVERS    servers, space- or comma-separated (default: the catalogue's bench: true)
    ENDPOINTS  endpoints (default: the catalogue's bench: true)
    LADDER     multiples of a server's slots, the users of each step (default 0.5 1 2 4)
    DELAYS     ?delay= of the ladder's endpoints, in seconds (default 1 0.5)
    USERS      concurrent Locust users of the other endpoints (default 100)
    DURATION   seconds of each measured run, Locust's and hey's (default 15)
    WARMUP     seconds of the discarded warm-up before each (default 5)
    REPEATS    times each cell is measured, interleaved as above (default 1)
    DB_MODE    pool or naive (default: the playbooks', pool)
    RUN_ID     the directory under reports/ (default: bench-<UTC timestamp>)
    INVENTORY  an inventory other than ansible.cfg's (the lab)

Each playbook's event stream goes to ``reports/<run-id>/logs/`` (with
``--r<k>`` in its name when REPEATS > 1); the terminal gets the plan with the
estimated time of the whole bench (scaled by REPEATS), then one line per step
with the elapsed and the estimated remaining time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_deploy_lab import PROJECT_DIR, catalogue, targets
from flask_deploy_lab.ansible import run_module, run_playbook
from flask_deploy_lab.cell import AppDeployment, FactsError
from flask_deploy_lab.report import locust, model
from flask_deploy_lab.report.model import ReportError, summarize_run
from flask_deploy_lab.report.summary import Row

DEFAULT_LADDER = "0.5 1 2 4"
DEFAULT_DELAYS = "1 0.5"
# A first guess at how long a converge and a cell take, until one has been timed.
GUESS_CONVERGE_S = 45
GUESS_CELL_OVERHEAD_S = 45
SETUP = "ansible.builtin.setup"


def _words(text):
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def _positive_numbers(parser, name, values):
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        parser.error(f"{name} must be numbers, got {' '.join(values)}")
    if not numbers or any(n <= 0 or not math.isfinite(n) for n in numbers):
        parser.error(f"{name} must be one or more numbers > 0, got {' '.join(values)}")
    return sorted(set(numbers))


def _whole_number(parser, name, text, minimum=1):
    """A whole number >= minimum written in digits ("3"; not "3.0", "-1", "three")."""
    text = str(text).strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
        parser.error(f"{name} must be a whole number >= {minimum}, got {text!r}")
    return int(text)


def parse_args(argv=None):
    env = os.environ.get
    known = catalogue.load()
    parser = argparse.ArgumentParser(
        description="Converge, load-test and compare servers; writes reports/<run-id>/index.html."
    )
    parser.add_argument(
        "--servers", nargs="+", default=_words(env("SERVERS")) or known.bench_servers()
    )
    parser.add_argument(
        "--endpoints", nargs="+", default=_words(env("ENDPOINTS")) or known.bench_endpoints()
    )
    parser.add_argument("--ladder", nargs="+", default=_words(env("LADDER") or DEFAULT_LADDER))
    parser.add_argument("--delays", nargs="+", default=_words(env("DELAYS") or DEFAULT_DELAYS))
    parser.add_argument("--users", type=int, default=int(env("USERS") or 100))
    parser.add_argument("--duration", type=int, default=int(env("DURATION") or 15))
    parser.add_argument("--warmup", type=int, default=int(env("WARMUP") or 5))
    parser.add_argument(
        "--repeats",
        default=env("REPEATS") or "1",
        help="measure every cell this many times, the servers interleaved (default 1)",
    )
    parser.add_argument("--db-mode", default=env("DB_MODE") or None)
    parser.add_argument("--run-id", default=env("RUN_ID") or None)
    parser.add_argument("--inventory", default=env("INVENTORY") or None)
    args = parser.parse_args(argv)
    args.servers = [w for s in args.servers for w in _words(s)]
    args.endpoints = [w.lstrip("/") for s in args.endpoints for w in _words(s)]
    args.ladder = _positive_numbers(parser, "LADDER", [w for s in args.ladder for w in _words(s)])
    args.delays = _positive_numbers(parser, "DELAYS", [w for s in args.delays for w in _words(s)])
    args.delays.reverse()  # the longest delay first: its cells are the ones the targets name
    if args.users < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("USERS and DURATION must be > 0, WARMUP >= 0")
    args.repeats = _whole_number(parser, "REPEATS", args.repeats)
    try:
        for name in args.servers:
            known.server(name)
        for name in args.endpoints:
            known.endpoint(name)
    except catalogue.CatalogueError as error:
        parser.error(str(error))
    args.run_id = args.run_id or "bench-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return args


@dataclass(frozen=True)
class Step:
    """One cell of the bench: an endpoint at a number of users (and a delay), in
    repeat k of a bench with REPEATS > 1 (None: a bench without repeats)."""

    server: str
    endpoint: str
    users: int
    delay_s: float | None = None
    repeat: int | None = None

    @property
    def cell_id(self) -> str:
        """The playbook's name for the cell: <server>--<endpoint>[--d<delay>]--u<users>,
        and --r<k> with the playbook's `repeat` variable."""
        delay = f"--d{self.delay_s:g}" if self.delay_s is not None else ""
        return f"{self.server}--{self.endpoint}{delay}--u{self.users}{_suffix(self.repeat)}"


def _suffix(repeat: int | None) -> str:
    return "" if repeat is None else f"--r{repeat}"


@dataclass(frozen=True)
class Turn:
    """A server's turn in the bench: converge it, read its slots, measure its cells."""

    server: str
    repeat: int | None  # k of REPEATS > 1; None without repeats (no suffix anywhere)
    first: bool  # the bench's first converge: the whole stack, not only app and proxy

    @property
    def suffix(self) -> str:
        """What the turn's cells and logs are named with after the usual name."""
        return _suffix(self.repeat)

    def steps(self, endpoints, reference, args) -> list[Step]:
        return steps_for(self.server, endpoints, reference, args, repeat=self.repeat)


def plan(servers: list[str], repeats: int) -> list[Turn]:
    """The bench's turns in order: every server in round 1, then every server in
    round 2, and so on; every other round in the reverse order (a b c, c b a,
    a b c), so that a drift of the machine over the run falls on each server
    alike. Without repeats (1), one turn per server in the given order."""
    turns = []
    for k in range(1, repeats + 1):
        order = servers if k % 2 else servers[::-1]
        for server in order:
            turns.append(Turn(server, k if repeats > 1 else None, first=not turns))
    return turns


def ladder_users(reference: int, ladder: list[float]) -> list[int]:
    """The users of each rung: multiples of the reference (at least 1), each once."""
    return sorted({max(1, math.ceil(multiple * reference)) for multiple in ladder})


def steps_for(server, endpoints, reference, args, repeat=None) -> list[Step]:
    """The server's cells: a ladder per delay for the delay-bound endpoints, else one
    cell; of repeat k when it is given (their ids end in --r<k>)."""
    known = catalogue.load()
    steps = []
    for endpoint in endpoints:
        if known.endpoint(endpoint).delay_bound:
            steps += [
                Step(server, endpoint, users, delay, repeat)
                for delay in args.delays
                for users in ladder_users(reference, args.ladder)
            ]
        else:
            steps.append(Step(server, endpoint, args.users, repeat=repeat))
    return steps


def cells_per_server(args) -> int:
    """About how many cells a server's turn measures (a ladder's rungs may fall
    together on few slots: then fewer)."""
    known = catalogue.load()
    ladders = sum(1 for e in args.endpoints if known.endpoint(e).delay_bound)
    return len(args.endpoints) - ladders + ladders * len(args.delays) * len(args.ladder)


def remaining_seconds(turns_left, cells_left, args, converge_times=(), cell_times=()) -> float:
    """The time turns_left converges and cells_left cells take: at the mean of those
    timed so far, else at a first guess (a cell: Locust's and hey's runs)."""
    converge = (sum(converge_times) / len(converge_times)) if converge_times else None
    cell = (sum(cell_times) / len(cell_times)) if cell_times else None
    converge = converge or GUESS_CONVERGE_S
    cell = cell or GUESS_CELL_OVERHEAD_S + 2 * (args.warmup + args.duration)
    return turns_left * converge + cells_left * cell


def ladder_reference(deployments: list[AppDeployment]) -> int:
    """What the ladder multiplies: the app hosts' slots, or where a server starts a
    thread per request (no slots), the sizing's expected concurrency."""
    if all(d.slots is not None for d in deployments):
        return sum(d.slots for d in deployments)
    if all(d.concurrency for d in deployments):
        return sum(d.concurrency for d in deployments)
    raise FactsError("the app hosts' deployment facts give neither slots nor concurrency")


def read_deployments(args, log_path) -> list[AppDeployment]:
    """Every app host's deployment fact (what the converge gave it)."""
    result = run_module(
        "app", SETUP, {"filter": ["ansible_local"]}, inventory=args.inventory,
        log_path=log_path, timeout=120,
    )  # fmt: skip
    if not result.ok:
        raise FactsError(f"cannot read the app hosts' deployment facts: {result.reason}")
    return [
        AppDeployment.from_fact(
            host, answer["ansible_facts"].get("ansible_local", {}).get("labapp")
        )
        for host, answer in sorted(result.results[SETUP].items())
    ]


def loadtest_vars(args, steps: list[Step], install: bool) -> dict:
    """loadtest.yml's variables for the steps of one endpoint: one run that measures
    them one after the other (its cells are named as Step.cell_id names them; with
    `repeat`, the playbook appends --r<repeat> to each)."""
    first = steps[0]
    if {(s.server, s.endpoint, s.repeat) for s in steps} != {
        (first.server, first.endpoint, first.repeat)
    }:
        raise ValueError("the steps of a run must be of one server, endpoint and repeat")
    extra = {
        "run_id": args.run_id,
        "endpoint": first.endpoint,
        "duration": args.duration,
        "warmup": args.warmup,
        "loadtest_install": install,
    }
    if first.repeat is not None:
        extra["repeat"] = first.repeat
    if first.delay_s is None:
        extra["users"] = first.users
    else:
        extra["delays"] = list(dict.fromkeys(step.delay_s for step in steps))
        extra["ladder"] = list(dict.fromkeys(step.users for step in steps))
        expected = [(d, u) for d in extra["delays"] for u in extra["ladder"]]
        if expected != [(step.delay_s, step.users) for step in steps]:
            raise ValueError("the steps of a run must be every delay times every rung, in order")
    return extra


def clock(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def ansible_playbook(args, playbook, extra, log_path, tags=None):
    """Runs one playbook, its event stream into log_path; returns (ok, the reason it failed)."""
    result = run_playbook(
        playbook, extra_vars=extra, inventory=args.inventory, tags=tags, log_path=log_path
    )
    return result.ok, (None if result.ok else result.reason)


def write_placeholder_cell(cell_dir, step, args):
    """A failed cell keeps a cell.json so the report lists it (with n/a numbers)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    path = cell_dir / "cell.json"
    if path.is_file():
        return
    cell = {
        "server": step.server,
        "endpoint": step.endpoint,
        "users": step.users,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "delay_s": step.delay_s,
        "config": f"{step.server} (FAILED)",
    }
    path.write_text(json.dumps(cell, indent=2) + "\n")


def record_failures(run_dir, failures):
    """Adds the failed cells to environment.json, which heads the report."""
    path = run_dir / "environment.json"
    environment = json.loads(path.read_text()) if path.is_file() else {"run_id": run_dir.name}
    if failures:
        environment["failed_cells"] = "; ".join(f"{cell}: {why}" for cell, why in failures)
    else:
        environment.pop("failed_cells", None)
    path.write_text(json.dumps(environment, indent=4) + "\n")


def main(argv=None):
    args = parse_args(argv)
    run_dir = PROJECT_DIR / "reports" / args.run_id
    logs = run_dir / "logs"
    turns = plan(args.servers, args.repeats)
    per_turn = cells_per_server(args)
    repeats = f" x {args.repeats} repeats (interleaved)" if args.repeats > 1 else ""
    print(
        f"bench {args.run_id}: {len(args.servers)} servers x {len(args.endpoints)} endpoints"
        f"{repeats}, about {per_turn * len(turns)} cells "
        f"(ladder {' '.join(f'{m:g}' for m in args.ladder)} x slots at delays "
        f"{' '.join(f'{d:g}' for d in args.delays)} s; {args.users} users elsewhere), "
        f"{args.warmup}+{args.duration} s each, "
        f"about {clock(remaining_seconds(len(turns), per_turn * len(turns), args))} in all",
        flush=True,
    )
    started = time.monotonic()
    converge_times, cell_times, failures = [], [], []
    done = total = 0
    locust_installed = False
    references = {}  # server -> the ladder's reference read after its last good converge

    for index, turn in enumerate(turns):
        server = turn.server
        extra = {"server": server}
        if args.db_mode:
            extra["db_mode"] = args.db_mode
        step_started = time.monotonic()
        where = f"{index + 1}/{len(turns)}"
        if turn.repeat is not None:
            where = f"repeat {turn.repeat}/{args.repeats}, {where}"
        print(f"converge {server} ({where})", flush=True)
        # the first converge is the whole stack; then the app hosts and the proxy
        # (whose keep-alive to the app follows the server)
        ok, why = ansible_playbook(
            args,
            "site.yml",
            extra,
            logs / f"converge--{server}{turn.suffix}.log",
            tags=None if turn.first else "app,proxy",
        )
        steps = []
        if ok:
            try:
                reference = ladder_reference(
                    read_deployments(args, logs / f"deployment--{server}{turn.suffix}.log")
                )
                references[server] = reference
                steps = turn.steps(args.endpoints, reference, args)
            except FactsError as error:
                ok, why = False, str(error)
        converge_times.append(time.monotonic() - step_started)
        if not ok:
            print(f"  converge failed: {why}", flush=True)
            # named as an earlier repeat's cells were, so that the report groups them
            steps = turn.steps(args.endpoints, references.get(server, 1), args)
            for step in steps:
                failures.append((step.cell_id, f"converge failed: {why}"))
                write_placeholder_cell(run_dir / step.cell_id, step, args)
            total += len(steps)
            done += len(steps)
            continue
        total += len(steps)
        turns_left = len(turns) - index - 1
        for endpoint in args.endpoints:
            run_steps = [step for step in steps if step.endpoint == endpoint]
            done += len(run_steps)
            elapsed = time.monotonic() - started
            left = remaining_seconds(
                turns_left,
                total - done + len(run_steps) + turns_left * per_turn,
                args,
                converge_times,
                cell_times,
            )
            names = ", ".join(step.cell_id for step in run_steps)
            print(f"cells {names}: elapsed {clock(elapsed)}, about {clock(left)} left", flush=True)
            step_started = time.monotonic()
            ok, why = ansible_playbook(
                args, "loadtest.yml", loadtest_vars(args, run_steps, not locust_installed),
                logs / f"{server}--{endpoint}{turn.suffix}.log",
            )  # fmt: skip
            cell_times += [(time.monotonic() - step_started) / len(run_steps)] * len(run_steps)
            if ok:
                locust_installed = True
                print(f"  done in {clock(time.monotonic() - step_started)}", flush=True)
                for step in run_steps:
                    print(f"  {step.cell_id}: {aggregated(run_dir / step.cell_id)}", flush=True)
            else:
                print(f"  FAILED: {why}", flush=True)
                for step in run_steps:
                    failures.append((step.cell_id, why))
                    write_placeholder_cell(run_dir / step.cell_id, step, args)

    record_failures(run_dir, failures)
    report = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    print((report.stdout + report.stderr).strip(), flush=True)
    verdicts, rows = judge(run_dir)
    print(f"bench {args.run_id}: {total - len(failures)} of {total} cells in "
          f"{clock(time.monotonic() - started)}")  # fmt: skip
    for cell_id, why in failures:
        print(f"  FAILED {cell_id}: {why}")
    index_html = run_dir / "index.html"
    if index_html.is_file():
        print(f"report: {index_html}")
    return exit_status(failures, report.returncode, verdicts, rows)


def exit_status(failures, report_returncode, verdicts, rows) -> int:
    """1 when a cell failed, the report could not be written, a verdict missed a
    target or a cell is invalid (saying how many of each of the last two); else 0."""
    missed = [v for v in verdicts if not v.met]
    if missed:
        print(f"{len(missed)} of {len(verdicts)} verdicts missed a target")
    invalid = [row for row in rows if row.valid is False]
    if invalid:
        print(f"{len(invalid)} of {len(rows)} cells invalid: their figures are not results")
    return 1 if failures or report_returncode or missed or invalid else 0


def judge(run_dir) -> tuple[list[targets.Verdict], list[Row]]:
    """Prints each target's verdict for the run's cells, then each invalid cell
    (of any endpoint) and why; returns (the verdicts, every row)."""
    try:
        _, rows = summarize_run(run_dir)
    except ReportError as error:
        print(f"targets: cannot read the run: {error}")
        return [], []
    verdicts = targets.check(rows)
    print(
        f"targets (delay-bound cells, Locust and hey): throughput >= {targets.TARGET_EFFICIENCY} "
        f"of min(users, slots) / delay (one-at-a-time servers: within "
        f"{targets.SERIAL_TOLERANCE:.0%} of 1 / delay), p99 <= {targets.TARGET_P99_FACTOR} x the "
        f"closed-loop ideal, 0 failures, the clients within {targets.CLIENTS_AGREE:.0%}; "
        "an invalid cell is not judged and misses"
    )
    for verdict in verdicts or []:
        print(f"  {'met   ' if verdict.met else 'MISSED'} {verdict.line}")
    if not verdicts:
        print("  no delay-bound cells to judge")
    invalid = [row for row in rows if row.valid is False]
    print(
        f"validity (every cell): no load generator above {model.SATURATED_CPU_PERCENT:g} % CPU "
        f"or Locust process above {model.SATURATED_PROCESS_CORES:g} of a core in any sample, nor "
        "Locust's CPU warning; no worker lost; no request in flight at the stop older than the "
        f"p99; efficiency <= {model.MAX_EFFICIENCY:g}; a ceiling; users / throughput within "
        f"{targets.IDENTITY_TOLERANCE:.0%} of the mean latency (Locust's, hey's)"
    )
    for row in invalid:
        print(f"  INVALID {row.cell}: {'; '.join(row.invalid_reasons)}")
    if not invalid:
        print(f"  all {len(rows)} cells valid")
    return verdicts, rows


def aggregated(cell_dir):
    """'N req/s, p99 M ms, F failures of R' from a cell's Locust statistics."""
    stats = locust.read_stats(cell_dir)
    if stats is None:
        return "no statistics"
    return (
        f"Locust {stats.rps or 0:.1f} req/s, p99 {stats.p99_ms:g} ms, "
        f"{stats.failures} failures of {stats.requests}"
    )


if __name__ == "__main__":
    sys.exit(main())
