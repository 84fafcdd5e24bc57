"""Measure every server of a matrix on every endpoint, then write the comparison report.

    make bench                                   # the default matrix
    make bench SERVERS="uwsgi gevent" ENDPOINTS=slow USERS=200 DURATION=60
    fdl-bench --servers uwsgi --endpoints slow db --duration 20

For each server: converge the app hosts to it (``playbooks/site.yml -e
server=...``; the first converge is a full one, later ones only ``--tags
app``), then one ``playbooks/loadtest.yml`` cell per endpoint into
``reports/<run-id>/``. A cell that fails is recorded and the bench goes on;
at the end the report (``flask_deploy_lab.report``) writes
``reports/<run-id>/index.html``, the targets are checked, and the exit status
is 1 if any cell failed or missed a target. Server and endpoint names are the catalogue's
(catalogue.yml); an unknown one stops the bench before anything runs.

Every option has an environment variable (the make variables of the same name):

    SERVERS    servers, space- or comma-separated (default: the catalogue's bench: true)
    ENDPOINTS  endpoints (default: the catalogue's bench: true)
    USERS      concurrent Locust users (default 100)
    DURATION   seconds of each measured run (default 20)
    WARMUP     seconds of the discarded warm-up before each (default 5)
    DELAY      ?delay= of /slow and /sleep in seconds (default 0.5)
    DB_MODE    pool or naive (default: the playbooks', pool)
    RUN_ID     the directory under reports/ (default: bench-<UTC timestamp>)
    INVENTORY  an inventory other than ansible.cfg's (the lab)

Each playbook's event stream goes to ``reports/<run-id>/logs/``; the terminal
gets one line per step with the elapsed and the estimated remaining time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

from flask_deploy_lab import PROJECT_DIR, catalogue
from flask_deploy_lab.ansible import run_playbook
from flask_deploy_lab.report import locust

TARGET_EFFICIENCY = 0.95
TARGET_P99_FACTOR = 1.2
# A first guess at how long a converge and a cell take, until one has been timed.
GUESS_CONVERGE_S = 45
GUESS_CELL_OVERHEAD_S = 40


def _words(text):
    return [w for w in re.split(r"[\s,]+", text or "") if w]


def serves_one_at_a_time(server):
    """One process holding one request (flask): /slow's ceiling is 1/delay whatever
    the users, so the efficiency target does not apply; its rate is checked instead."""
    entry = catalogue.load().server(server)
    return entry.processes == "one" and entry.per_process == "one"


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
    parser.add_argument("--users", type=int, default=int(env("USERS") or 100))
    parser.add_argument("--duration", type=int, default=int(env("DURATION") or 20))
    parser.add_argument("--warmup", type=int, default=int(env("WARMUP") or 5))
    parser.add_argument("--delay", type=float, default=float(env("DELAY") or 0.5))
    parser.add_argument("--db-mode", default=env("DB_MODE") or None)
    parser.add_argument("--run-id", default=env("RUN_ID") or None)
    parser.add_argument("--inventory", default=env("INVENTORY") or None)
    args = parser.parse_args(argv)
    args.servers = [w for s in args.servers for w in _words(s)]
    args.endpoints = [w.lstrip("/") for s in args.endpoints for w in _words(s)]
    if args.users < 1 or args.duration < 1 or args.warmup < 0 or args.delay < 0:
        parser.error("USERS and DURATION must be > 0, WARMUP and DELAY >= 0")
    try:
        for name in args.servers:
            known.server(name)
        for name in args.endpoints:
            known.endpoint(name)
    except catalogue.CatalogueError as error:
        parser.error(str(error))
    args.run_id = args.run_id or "bench-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return args


def clock(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def ansible_playbook(args, playbook, extra, log_path, tags=None):
    """Runs one playbook, its event stream into log_path; returns (ok, the reason it failed)."""
    result = run_playbook(
        playbook, extra_vars=extra, inventory=args.inventory, tags=tags, log_path=log_path
    )
    return result.ok, (None if result.ok else result.reason)


def write_placeholder_cell(cell_dir, server, endpoint, args):
    """A failed cell keeps a cell.json so the report lists it (with n/a numbers)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    path = cell_dir / "cell.json"
    if path.is_file():
        return
    cell = {
        "server": server,
        "endpoint": endpoint,
        "users": args.users,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "delay_s": args.delay if catalogue.load().endpoint(endpoint).delay_bound else None,
        "config": f"{server} (FAILED)",
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


def check_targets(summary_path, delay):
    """Lines saying how each /slow cell did against the targets."""
    if not summary_path.is_file():
        return []
    rows = json.loads(summary_path.read_text()).get("cells", [])
    lines = []
    for row in rows:
        if row["endpoint"] != "slow" or row.get("rps") is None:
            continue
        p99_s = (row.get("p99_ms") or 0) / 1000
        if serves_one_at_a_time(row["server"]):
            expected = 1 / delay if delay else None
            verdict = (
                f"{row['server']} one request at a time: {row['rps']} req/s, 1/delay = {expected:g}"
            )
        else:
            misses = []
            efficiency = row.get("efficiency")
            if efficiency is None or efficiency < TARGET_EFFICIENCY:
                misses.append(f"efficiency {efficiency} < {TARGET_EFFICIENCY}")
            if p99_s > TARGET_P99_FACTOR * delay:
                misses.append(f"p99 {p99_s:.3f}s > {TARGET_P99_FACTOR} x delay")
            if row.get("failures"):
                misses.append(f"{row['failures']} failures")
            verdict = ("MISSED: " + "; ".join(misses)) if misses else "met"
            verdict = (
                f"{row['rps']} req/s of {row.get('ceiling_rps')}, efficiency {efficiency}, "
                f"p99 {row.get('p99_ms')} ms: {verdict}"
            )
        if row.get("generator_saturated"):
            verdict += " (load generator saturated)"
        lines.append(f"  {row['cell']}: {verdict}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    run_dir = PROJECT_DIR / "reports" / args.run_id
    logs = run_dir / "logs"
    cells = [(s, e) for s in args.servers for e in args.endpoints]
    total = len(cells)
    print(
        f"bench {args.run_id}: {len(args.servers)} servers x {len(args.endpoints)} endpoints "
        f"= {total} cells, {args.users} users, {args.warmup}+{args.duration} s each",
        flush=True,
    )
    started = time.monotonic()
    converge_times, cell_times, failures = [], [], []
    done = 0
    locust_installed = False

    def remaining(servers_left, cells_left):
        converge = (sum(converge_times) / len(converge_times)) if converge_times else None
        cell = (sum(cell_times) / len(cell_times)) if cell_times else None
        converge = converge or GUESS_CONVERGE_S
        cell = cell or GUESS_CELL_OVERHEAD_S + args.warmup + args.duration
        return servers_left * converge + cells_left * cell

    for index, server in enumerate(args.servers):
        extra = {"server": server}
        if args.db_mode:
            extra["db_mode"] = args.db_mode
        step = time.monotonic()
        print(f"converge {server} ({index + 1}/{len(args.servers)})", flush=True)
        # the first converge is the whole stack; then only the app hosts change
        ok, why = ansible_playbook(
            args,
            "site.yml",
            extra,
            logs / f"converge--{server}.log",
            tags=None if index == 0 else "app",
        )
        converge_times.append(time.monotonic() - step)
        server_cells = [e for s, e in cells if s == server]
        if not ok:
            print(f"  converge failed: {why}", flush=True)
            for endpoint in server_cells:
                cell_id = f"{server}--{endpoint}--u{args.users}"
                failures.append((cell_id, f"converge failed: {why}"))
                write_placeholder_cell(run_dir / cell_id, server, endpoint, args)
                done += 1
            continue
        for endpoint in server_cells:
            cell_id = f"{server}--{endpoint}--u{args.users}"
            done += 1
            elapsed = time.monotonic() - started
            left = remaining(len(args.servers) - index - 1, total - done + 1)
            print(
                f"cell {done}/{total} {cell_id}: elapsed {clock(elapsed)}, "
                f"about {clock(left)} left",
                flush=True,
            )
            step = time.monotonic()
            ok, why = ansible_playbook(
                args,
                "loadtest.yml",
                {
                    "run_id": args.run_id,
                    "cell_id": cell_id,
                    "endpoint": endpoint,
                    "users": args.users,
                    "duration": args.duration,
                    "warmup": args.warmup,
                    "delay_s": args.delay,
                    "loadtest_install": not locust_installed,
                },
                logs / f"{cell_id}.log",
            )
            cell_times.append(time.monotonic() - step)
            if ok:
                locust_installed = True
                print(
                    f"  done in {clock(cell_times[-1])}: {aggregated(run_dir / cell_id)}",
                    flush=True,
                )
            else:
                print(f"  FAILED: {why}", flush=True)
                failures.append((cell_id, why))
                write_placeholder_cell(run_dir / cell_id, server, endpoint, args)

    record_failures(run_dir, failures)
    report = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    print((report.stdout + report.stderr).strip(), flush=True)
    print(
        f"targets (/slow: efficiency >= {TARGET_EFFICIENCY}, p99 <= {TARGET_P99_FACTOR} x delay):"
    )
    target_lines = check_targets(run_dir / "summary.json", args.delay)
    for line in target_lines or ["  no /slow cells"]:
        print(line)
    print(
        f"bench {args.run_id}: {total - len(failures)} of {total} cells "
        f"in {clock(time.monotonic() - started)}"
    )
    for cell_id, why in failures:
        print(f"  FAILED {cell_id}: {why}")
    index_html = run_dir / "index.html"
    if index_html.is_file():
        print(f"report: {index_html}")
    missed = [line for line in target_lines if "MISSED" in line]
    if missed:
        print(f"{len(missed)} cell(s) missed a target")
    return 1 if failures or report.returncode or missed else 0


def aggregated(cell_dir):
    """'N req/s, p99 M ms, F failures of R' from a cell's Locust statistics."""
    stats = locust.read_stats(cell_dir)
    if stats is None:
        return "no statistics"
    return (
        f"{stats.rps or 0:.1f} req/s, p99 {stats.p99_ms:g} ms, "
        f"{stats.failures} failures of {stats.requests}"
    )


if __name__ == "__main__":
    sys.exit(main())
