"""fdl-report reports/<run-id>: the report of one run (see the package's docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask_deploy_lab.report import summary
from flask_deploy_lab.report.html import render_html
from flask_deploy_lab.report.model import ReportError, summarize_run


def write_report(run_dir: Path) -> list[summary.Row]:
    """Writes summary.csv, summary.json and index.html into run_dir; returns the rows."""
    run_dir = Path(run_dir)
    environment, rows = summarize_run(run_dir)
    summary.write_csv(rows, run_dir / "summary.csv")
    summary.write_json(run_dir.name, environment, rows, run_dir / "summary.json")
    (run_dir / "index.html").write_text(render_html(run_dir, environment, rows), encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    """0 with the report written; 2, saying why on stderr, when the run breaks the layout."""
    parser = argparse.ArgumentParser(
        prog="fdl-report",
        description="Write index.html, summary.csv and summary.json for a load-test run.",
    )
    parser.add_argument("run_dir", help="reports/<run-id>")
    args = parser.parse_args(argv)
    try:
        rows = write_report(args.run_dir)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(rows)} cells -> {Path(args.run_dir) / 'index.html'}")
    return 0
