"""fdl-report reports/<run-id>: the report of one run (see the package's docstring).

fdl-report --by-second <cell dir> [--path PREFIX]: a cell's proxy log split by
second, as CSV on stdout (report.proxy.by_second)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from flask_deploy_lab.report import proxy, repeats, summary
from flask_deploy_lab.report.html import render_html
from flask_deploy_lab.report.model import ReportError, summarize_run

CONFIGURATIONS_CSV = "configurations.csv"
_REPEAT_SUFFIX = re.compile(r"--r[0-9]+\Z")


def configurations(rows: list[summary.Row]) -> list[repeats.Aggregate] | None:
    """The run's configurations (report.repeats) when any was measured more than
    once; None for a run without repeats. Raises ReportError when the repeats do
    not add up (report.repeats.aggregate); a run none of whose cell ids ends in
    --r<k> is not read for them at all, so it reports as it always did."""
    if not any(_REPEAT_SUFFIX.search(row.cell) for row in rows):
        return None
    aggregates = repeats.aggregate([row.as_dict() for row in rows])
    return aggregates if any(agg.n > 1 for agg in aggregates) else None


def write_report(run_dir: Path) -> list[summary.Row]:
    """Writes summary.csv, summary.json and index.html into run_dir, and for a run
    with repeats configurations.csv and summary.json's "configurations" (a run
    without has neither, and loses a configurations.csv left by an earlier
    report); returns the rows."""
    run_dir = Path(run_dir)
    environment, rows = summarize_run(run_dir)
    aggregates = configurations(rows)
    summary.write_csv(rows, run_dir / "summary.csv")
    summary.write_json(
        run_dir.name,
        environment,
        rows,
        run_dir / "summary.json",
        configurations=None if aggregates is None else [repeats.as_dict(a) for a in aggregates],
    )
    if aggregates is None:
        (run_dir / CONFIGURATIONS_CSV).unlink(missing_ok=True)
    else:
        repeats.write_csv(aggregates, run_dir / CONFIGURATIONS_CSV)
    page = render_html(run_dir, environment, rows, aggregates)
    (run_dir / "index.html").write_text(page, encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    """0 with the report written; 2, saying why on stderr, when the run breaks the layout."""
    parser = argparse.ArgumentParser(
        prog="fdl-report",
        description=(
            "Write index.html, summary.csv and summary.json for a load-test run "
            "(and configurations.csv when its cells were repeated)."
        ),
    )
    parser.add_argument("run_dir", nargs="?", help="reports/<run-id>")
    parser.add_argument(
        "--by-second",
        metavar="CELL_DIR",
        help="instead: print the cell's proxy log split by second (requests, p50 and p99 of "
        "nginx's time, the upstream's and each part of the app's Server-Timing) as CSV",
    )
    parser.add_argument(
        "--path",
        default="",
        metavar="PREFIX",
        help="with --by-second: only the requests whose path starts with PREFIX",
    )
    args = parser.parse_args(argv)
    if args.by_second is not None:
        if args.run_dir is not None:
            parser.error("give a run directory or --by-second CELL_DIR, not both")
        try:
            proxy.write_by_second(Path(args.by_second), args.path)
        except FileNotFoundError as exc:
            print(f"report: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # the reader had enough (| head): not an error; nothing more to flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.run_dir is None:
        parser.error("a run directory (reports/<run-id>) or --by-second CELL_DIR is needed")
    if args.path:
        parser.error("--path goes with --by-second")
    try:
        rows = write_report(args.run_dir)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(rows)} cells -> {Path(args.run_dir) / 'index.html'}")
    return 0
