"""fdl-compare RUN_A RUN_B: what changed from one run to the next, and a regression gate.

    fdl-compare reports/<run-a> reports/<run-b>
    fdl-compare reports/<run-a> reports/<run-b> --threshold 0.10 --out DIR
    make compare A=reports/<run-a> B=reports/<run-b>

Reads each run's summary.json (fdl-report writes it), groups each run's cells
into configurations by their id without the repeat suffix ``--r<k>``
(flask_deploy_lab.report.repeats) and, for each configuration both runs hold
and each of COMPARED, puts B beside A:

change
    B's mean - A's mean, and that over A's mean (relative).
significance
    ``significant`` when both runs have a 95 % interval (at least two repeats
    measured the figure) and the two do not overlap; ``not distinguishable``
    when they overlap; ``not judged (1 run)`` when either side has a single
    value.
verdict
    ``regression``: worse (lower for a throughput or an efficiency, higher
    for a latency) by more than the threshold (relative, 0.05 by default) and
    significant. A worsening that cannot be judged (a single run on a side)
    is ``worse, not judged (1 run)`` and does not fail the gate, unless
    ``--gate-single-runs`` is given: then it is a regression on the
    threshold alone. A worsening whose intervals overlap is ``worse, not
    distinguishable`` and never fails it. ``improvement`` and ``better, ...``
    likewise the other way; ``within threshold``; ``not measured in A`` (or
    B, or both); ``invalid`` when either run marked a repeat of the
    configuration ``"valid": false`` (its ``invalid_reasons`` are shown):
    never a regression nor an improvement.

Configurations only one run holds are listed apart. Writes ``compare.csv``
and ``compare.html`` (templates/compare.html.j2) into ``--out`` (default:
RUN_B/compare-<RUN_A's name>), prints the table in Markdown, and exits 1 when
a figure regressed, 0 when none did, 2 (saying why, on stderr) when a run
cannot be read: no directory, no or a broken summary.json, no cells, a
malformed cell id, or no configuration the two runs share.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.report import repeats
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.html import TEMPLATES
from flask_deploy_lab.report.repeats import Aggregate, Interval
from flask_deploy_lab.report.summary import COLUMNS

HIGHER = "higher"
LOWER = "lower"
# The figures compared and which way is better. hey_rps only where a run has it.
COMPARED = (
    ("rps", HIGHER),
    ("efficiency", HIGHER),
    ("p50_ms", LOWER),
    ("p99_ms", LOWER),
    ("hey_rps", HIGHER),
)
OPTIONAL = {"hey_rps"}
DEFAULT_THRESHOLD = 0.05

SIGNIFICANT = "significant"
NOT_DISTINGUISHABLE = "not distinguishable"
NOT_JUDGED = "not judged (1 run)"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
WITHIN = "within threshold"
INVALID = "invalid"
ONLY_IN = "only in {}"

CSV_FIELDS = (
    "cell", "figure", "better",
    "a_n", "a_mean", "a_sd", "a_low", "a_high", "a_cov",
    "b_n", "b_mean", "b_sd", "b_low", "b_high", "b_cov",
    "change", "relative", "significance", "verdict", "invalid_reasons",
)  # fmt: skip

# A change at the threshold is not beyond it: figures are rounded (rps to
# 0.01), and 0.95 / 1.0 - 1 is a hair beyond -0.05 in binary.
_SLACK = 1e-9
_COLUMNS = {c.name: c for c in COLUMNS}
# environment.json keys whose difference between the runs the page shows
_ENV_KEYS = ("substrate", "git_commit", "git_dirty")
_ENV_GROUPS = ("versions", "limits")


@dataclass(frozen=True)
class Run:
    label: str  # "A" or "B"
    path: Path
    environment: dict | None
    aggregates: list[Aggregate]
    cells: int

    @property
    def name(self) -> str:
        return self.path.resolve().name


@dataclass(frozen=True)
class Change:
    """One figure of one configuration both runs hold, B against A."""

    cell: str  # the base id
    figure: str
    better: str  # HIGHER or LOWER
    a: Interval
    b: Interval
    change: float | None
    relative: float | None
    significance: str  # SIGNIFICANT, NOT_DISTINGUISHABLE, NOT_JUDGED, or "" (a side has none)
    verdict: str
    invalid_reasons: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    a: Run
    b: Run
    threshold: float
    gate_single_runs: bool
    changes: list[Change]
    only_a: list[Aggregate]
    only_b: list[Aggregate]
    invalid: list[tuple[str, tuple[str, ...]]]  # (base id, reasons) of common configurations

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == REGRESSION]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == IMPROVEMENT]

    @property
    def common(self) -> int:
        return len(dict.fromkeys(c.cell for c in self.changes))


def load_run(path: Path | str, label: str) -> Run:
    """A run directory's summary.json, its cells grouped into configurations."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"run {label}: {path} is not a directory")
    file = path / "summary.json"
    if not file.is_file():
        raise ReportError(
            f"run {label}: {file} is missing (fdl-report {path} writes it from the run's cells)"
        )
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"run {label}: {file} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise ReportError(f"run {label}: {file} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ReportError(f"run {label}: {file} must be an object with run, environment and cells")
    cells = document.get("cells")
    if not isinstance(cells, list):
        raise ReportError(f"run {label}: {file} has no list of cells")
    if not cells:
        raise ReportError(f"run {label}: {file} holds no cells")
    for index, row in enumerate(cells):
        if not isinstance(row, dict) or not isinstance(row.get("cell"), str):
            raise ReportError(f"run {label}: {file}: cells[{index}] is not a row with a cell id")
    try:
        aggregates = repeats.aggregate(cells)
    except ReportError as error:
        raise ReportError(f"run {label}: {file}: {error}") from None
    environment = document.get("environment")
    return Run(
        label=label,
        path=path,
        environment=environment if isinstance(environment, dict) else None,
        aggregates=aggregates,
        cells=len(cells),
    )


def judge(
    cell: str,
    figure: str,
    better: str,
    a: Interval,
    b: Interval,
    *,
    threshold: float,
    gate_single_runs: bool = False,
    invalid_reasons: tuple[str, ...] = (),
) -> Change:
    """B's figure against A's: the change, its significance and the verdict."""
    change = relative = None
    if a.n and b.n:
        change = b.mean - a.mean
        relative = change / abs(a.mean) if a.mean else None
    distinct = repeats.distinguishable(a, b)
    if not (a.n and b.n):
        significance = ""
    elif distinct is None:
        significance = NOT_JUDGED
    else:
        significance = SIGNIFICANT if distinct else NOT_DISTINGUISHABLE

    if invalid_reasons:
        verdict = INVALID
    elif not a.n or not b.n:
        missing = [run for run, figure_of in (("A", a), ("B", b)) if not figure_of.n]
        verdict = "not measured in " + " and ".join(missing)
    elif relative is None:
        verdict = WITHIN if change == 0 else "not judged (A is 0)"
    else:
        gain = relative if better == HIGHER else -relative
        if abs(gain) <= threshold + _SLACK:
            verdict = WITHIN
        else:
            counted = significance == SIGNIFICANT or (
                significance == NOT_JUDGED and gate_single_runs
            )
            if gain < 0:
                verdict = REGRESSION if counted else f"worse, {significance}"
            else:
                verdict = IMPROVEMENT if counted else f"better, {significance}"
    return Change(
        cell=cell,
        figure=figure,
        better=better,
        a=a,
        b=b,
        change=change,
        relative=relative,
        significance=significance,
        verdict=verdict,
        invalid_reasons=tuple(invalid_reasons),
    )


def compare(
    a: Run, b: Run, *, threshold: float = DEFAULT_THRESHOLD, gate_single_runs: bool = False
) -> Comparison:
    """Every compared figure of every configuration both runs hold, in A's order."""
    in_b = {agg.base: agg for agg in b.aggregates}
    in_a = {agg.base for agg in a.aggregates}
    changes = []
    invalid = []
    for agg_a in a.aggregates:
        agg_b = in_b.get(agg_a.base)
        if agg_b is None:
            continue
        reasons = tuple(f"A {r}" for r in agg_a.invalid_reasons) + tuple(
            f"B {r}" for r in agg_b.invalid_reasons
        )
        if reasons:
            invalid.append((agg_a.base, reasons))
        for figure, better in COMPARED:
            fa, fb = agg_a.figures[figure], agg_b.figures[figure]
            if figure in OPTIONAL and not (fa.n or fb.n):
                continue
            changes.append(
                judge(
                    agg_a.base,
                    figure,
                    better,
                    fa,
                    fb,
                    threshold=threshold,
                    gate_single_runs=gate_single_runs,
                    invalid_reasons=reasons,
                )
            )
    only_a = [agg for agg in a.aggregates if agg.base not in in_b]
    only_b = [agg for agg in b.aggregates if agg.base not in in_a]
    if not changes:
        raise ReportError(
            f"the runs share no configuration: {len(only_a)} only in A ({a.path}), "
            f"{len(only_b)} only in B ({b.path})"
        )
    return Comparison(
        a=a,
        b=b,
        threshold=threshold,
        gate_single_runs=gate_single_runs,
        changes=changes,
        only_a=only_a,
        only_b=only_b,
        invalid=invalid,
    )


# --- output ---------------------------------------------------------------------------


def _digits(figure: str) -> int:
    column = _COLUMNS.get(figure)
    return column.digits if column is not None and column.digits is not None else 3


def header(figure: str) -> str:
    column = _COLUMNS.get(figure)
    return column.header if column is not None else figure


def fmt_number(value: float | None, figure: str, *, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:{'+' if sign else ''}.{_digits(figure)}f}"


def fmt_interval(interval: Interval, figure: str) -> str:
    """The mean, ± the interval's half-width, and n: 12.00 ± 4.97 (n=3) for req/s
    (the schema's digits; 3 where it keeps all), 12.00 (n=1), or n/a."""
    if not interval.n:
        return "n/a"
    text = fmt_number(interval.mean, figure)
    if interval.has_interval:
        text += f" ± {fmt_number(interval.half_width, figure)}"
    return f"{text} (n={interval.n})"


def fmt_change(change: Change) -> str:
    if change.change is None:
        return "n/a"
    text = fmt_number(change.change, change.figure, sign=True)
    if change.relative is not None:
        text += f" ({change.relative:+.1%})"
    return text


def _csv_number(value: float | None) -> str | float:
    return "" if value is None else round(value, 6)


def _csv_interval(interval: Interval) -> list:
    return [
        interval.n,
        *(_csv_number(v) for v in (interval.mean, interval.sd, interval.low, interval.high)),
        _csv_number(interval.cov),
    ]


def write_csv(comparison: Comparison, path: Path) -> None:
    """compare.csv: a row per compared figure, then a row per configuration in one run only."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for c in comparison.changes:
            writer.writerow(
                [
                    c.cell,
                    c.figure,
                    c.better,
                    *_csv_interval(c.a),
                    *_csv_interval(c.b),
                    _csv_number(c.change),
                    _csv_number(c.relative),
                    c.significance,
                    c.verdict,
                    "; ".join(c.invalid_reasons),
                ]
            )
        empty = [""] * 6
        for label, aggregates in (("A", comparison.only_a), ("B", comparison.only_b)):
            for agg in aggregates:
                counts = [agg.n, *[""] * 5]
                sides = [*counts, *empty] if label == "A" else [*empty, *counts]
                writer.writerow([agg.base, "", "", *sides, "", "", "", ONLY_IN.format(label), ""])


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown(comparison: Comparison) -> str:
    """The comparison as a Markdown table, with the lists that do not fit in it."""
    a, b = comparison.a, comparison.b
    lines = [
        f"| cell | figure | A: {_md(a.name)} | B: {_md(b.name)} | change | significance "
        "| verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparison.changes:
        cells = (
            c.cell,
            header(c.figure),
            fmt_interval(c.a, c.figure),
            fmt_interval(c.b, c.figure),
            fmt_change(c),
            c.significance or "-",
            f"**{c.verdict}**" if c.verdict == REGRESSION else c.verdict,
        )
        lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
    for base, reasons in comparison.invalid:
        lines.append(f"\ninvalid, not judged: {base}: " + "; ".join(reasons))
    for label, run, aggregates in (("A", a, comparison.only_a), ("B", b, comparison.only_b)):
        if aggregates:
            names = ", ".join(agg.base for agg in aggregates)
            lines.append(f"\nonly in {label} ({run.name}), not compared: {names}")
    return "\n".join(lines)


def _plain(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def environment_differences(a: dict | None, b: dict | None) -> list[tuple[str, str, str]]:
    """(key, A's, B's) of the environment keys that differ: version, limits, commit."""
    a, b = a or {}, b or {}
    pairs = {key: (a.get(key), b.get(key)) for key in _ENV_KEYS}
    for group in _ENV_GROUPS:
        ga = a.get(group) if isinstance(a.get(group), dict) else {}
        gb = b.get(group) if isinstance(b.get(group), dict) else {}
        for key in dict.fromkeys([*ga, *gb]):
            pairs[f"{group}.{key}"] = (ga.get(key), gb.get(key))
    return [(key, _plain(x), _plain(y)) for key, (x, y) in pairs.items() if x != y]


def _repeat_counts(run: Run) -> str:
    counts = sorted({agg.n for agg in run.aggregates})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


def _run_card(run: Run, out_dir: Path) -> dict:
    index = run.path / "index.html"
    environment = run.environment or {}
    return {
        "label": run.label,
        "name": run.name,
        "link": os.path.relpath(index, out_dir) if index.is_file() else None,
        "started": _plain(environment.get("started")),
        "git_commit": _plain(environment.get("git_commit")),
        "substrate": _plain(environment.get("substrate")),
        "cells": run.cells,
        "configurations": len(run.aggregates),
        "repeats": _repeat_counts(run),
    }


def _values_title(interval: Interval, figure: str) -> str:
    if not interval.n:
        return "not measured"
    values = ", ".join(fmt_number(v, figure) for v in interval.values)
    cov = f"; CoV {interval.cov:.1%}" if interval.cov is not None else ""
    return f"values: {values}{cov}"


def _verdict_class(verdict: str) -> str:
    if verdict in (REGRESSION, IMPROVEMENT, INVALID):
        return verdict
    if verdict.startswith(("worse", "better")):
        return "unjudged"
    return "plain"


def render_html(comparison: Comparison, out_dir: Path) -> str:
    """compare.html, with links to each run's index.html relative to out_dir."""
    a, b = comparison.a, comparison.b
    rows = [
        {
            "cell": c.cell,
            "anchor": f"{c.cell}--{c.figure}",
            "figure": header(c.figure),
            "figure_title": f"{c.better} is better",
            "a": fmt_interval(c.a, c.figure),
            "a_title": _values_title(c.a, c.figure),
            "b": fmt_interval(c.b, c.figure),
            "b_title": _values_title(c.b, c.figure),
            "change": fmt_change(c),
            "significance": c.significance or "-",
            "verdict": c.verdict,
            "verdict_class": _verdict_class(c.verdict),
            "reasons": "; ".join(c.invalid_reasons),
        }
        for c in comparison.changes
    ]
    return TEMPLATES.get_template("compare.html.j2").render(
        title=f"Flask Deploy Lab — {a.name} → {b.name}",
        runs=[_run_card(a, out_dir), _run_card(b, out_dir)],
        threshold=f"{comparison.threshold:.1%}",
        gate_single_runs=comparison.gate_single_runs,
        common=comparison.common,
        regressions=[r for r in rows if r["verdict"] == REGRESSION],
        improvements=[r for r in rows if r["verdict"] == IMPROVEMENT],
        invalid=comparison.invalid,
        rows=rows,
        only=[
            (label, run.name, [agg.base for agg in aggregates])
            for label, run, aggregates in (
                ("A", a, comparison.only_a),
                ("B", b, comparison.only_b),
            )
            if aggregates
        ],
        environment=environment_differences(a.environment, b.environment),
    )


def write_comparison(comparison: Comparison, out_dir: Path) -> None:
    """compare.csv and compare.html into out_dir (made if missing)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(comparison, out_dir / "compare.csv")
        (out_dir / "compare.html").write_text(render_html(comparison, out_dir), encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot write into {out_dir}: {error}") from None


# --- command line ---------------------------------------------------------------------


def _threshold(text: str) -> float:
    """A relative threshold: 0.05, or 5%."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a fraction such as 0.05 (or 5%), got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a fraction >= 0 such as 0.05, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """0: no regression; 1: a figure regressed beyond the threshold; 2: a run cannot be read."""
    parser = argparse.ArgumentParser(
        prog="fdl-compare",
        description=(
            "Compare two load-test runs (their summary.json) configuration by configuration; "
            "write compare.csv and compare.html; exit 1 when a figure got worse beyond the "
            "threshold and the runs' 95 % intervals do not overlap."
        ),
    )
    parser.add_argument("run_a", metavar="RUN_A", help="the run to compare against (before)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run compared (after)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="where to write compare.csv and compare.html (default: RUN_B/compare-<RUN_A name>)",
    )
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=DEFAULT_THRESHOLD,
        metavar="FRACTION",
        help="relative worsening that counts, e.g. 0.05 or 5%% (default 0.05)",
    )
    parser.add_argument(
        "--gate-single-runs",
        action="store_true",
        help=(
            "also count a worsening beyond the threshold as a regression when a side has a "
            "single run (no interval to judge it by): for a CI gate on runs without REPEATS"
        ),
    )
    args = parser.parse_args(argv)
    try:
        a = load_run(args.run_a, "A")
        b = load_run(args.run_b, "B")
        comparison = compare(a, b, threshold=args.threshold, gate_single_runs=args.gate_single_runs)
        out_dir = args.out or b.path / f"compare-{a.name}"
        write_comparison(comparison, out_dir)
    except ReportError as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    print(markdown(comparison))
    regressions = comparison.regressions
    print(
        f"\ncompare: {comparison.common} configurations in common, "
        f"{len(regressions)} regressions and {len(comparison.improvements)} improvements "
        f"beyond {comparison.threshold:.1%}, {len(comparison.invalid)} invalid, "
        f"{len(comparison.only_a)} only in A, {len(comparison.only_b)} only in B "
        f"-> {out_dir / 'compare.html'}"
    )
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
