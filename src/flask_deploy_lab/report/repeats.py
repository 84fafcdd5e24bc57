"""Repeated cells: one configuration measured N times, and the statistics of its figures.

A run made with REPEATS=N holds N cells per configuration, each id ending in
``--r<k>`` (k = 1..N), e.g. ``uwsgi--slow--d1--u100--r2``; an id without the
suffix is repeat 1 of 1. ``aggregate(rows)`` groups the rows of a run (the
"cells" of summary.json) by the id without the suffix, the base id, into one
``Aggregate`` per configuration holding the ``Interval`` of each of FIGURES:

    n           the repeats that measured the figure (a None is left out)
    mean        their mean (None when n is 0)
    sd          their standard deviation, n - 1 in the denominator (n >= 2)
    half_width  of the 95 % confidence interval of the mean, Student's t:
                t(0.975, n - 1) * sd / sqrt(n) (n >= 2)
    cov         coefficient of variation, sd / |mean| (None for a mean of 0)

One value gives a mean with no interval: one run says nothing about how much
the next would differ. ``distinguishable(a, b)`` is False when two intervals
overlap ("not distinguishable"), True when they do not, None when either has
none.

A configuration with a repeat marked ``"valid": false`` (its
``invalid_reasons`` say why) is invalid as a whole: its aggregate says so,
with each repeat's reasons, and the repeats still count in its figures.

A repeat that measured none of FIGURES (the bench's placeholder of a cell
that failed: "<server> (FAILED)", no db_mode) still belongs to the
configuration its id names and makes it invalid, but is not held to its
IDENTITY_FIELDS, and the configuration's fields are those of its first
repeat that measured something.

``as_dict(aggregate)`` is a configuration as report.cli writes it into
summary.json ("configurations") and, flattened (CSV_FIELDS), into
configurations.csv; ``groups(aggregates)`` are the configurations measured at
the same endpoint, delay and users, whose figures can be set side by side.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.report.errors import ReportError

# The figures of a row that get statistics, in the order pages show them.
FIGURES = ("rps", "p50_ms", "p99_ms", "efficiency", "hey_rps", "hey_p99_ms")
# Fields that name the configuration: every repeat of one must agree on them.
IDENTITY_FIELDS = ("config", "server", "db_mode", "endpoint", "users", "delay_s")
# Fields that say where a configuration's figures can be compared with another's.
GROUP_FIELDS = ("endpoint", "delay_s", "users")

# A cell id as the load-test playbook accepts it (playbooks/loadtest.yml).
_CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The last "--" segment of an id that looks like a repeat suffix: r and digits.
_REPEAT_SEGMENT = re.compile(r"r(?P<k>[0-9]*)")
_SUFFIX = "--"

# Two-sided 95 % critical values of Student's t, t(0.975, df), for df = 1..30:
# NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.2 "Critical
# Values of the Student's t Distribution", column 0.975 (upper-tail 0.025),
# https://www.itl.nist.gov/div898/handbook/eda/section3/eda3672.htm
# Beyond df 30 the normal quantile 1.96 stands in (t(40) = 2.021, t(120) =
# 1.980: the interval is at most about 4 % narrower than Student's there).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z_975 = 1.96


class CellIdError(ReportError, ValueError):
    """A cell id that is not a cell id, or whose repeat suffix is malformed."""


def split_cell_id(cell_id: str) -> tuple[str, int]:
    """(base id, repeat index) of a cell id: "x--r2" -> ("x", 2), "x" -> ("x", 1).

    A last segment of ``r`` and digits is a repeat suffix and must be a whole
    number from 1 without leading zeros; any other id is a base id of repeat 1.
    """
    if not isinstance(cell_id, str):
        raise CellIdError(f"a cell id must be a string, got {cell_id!r}")
    if not _CELL_ID.fullmatch(cell_id):
        raise CellIdError(
            f"cell id {cell_id!r} is not valid: letters, digits, '.', '_' and '-', "
            "starting with a letter or a digit"
        )
    base, separator, last = cell_id.rpartition(_SUFFIX)
    repeat = _REPEAT_SEGMENT.fullmatch(last) if separator else None
    if repeat is None:
        return cell_id, 1
    digits = repeat["k"]
    if not digits or digits.startswith("0"):
        raise CellIdError(
            f"cell id {cell_id!r} ends in a malformed repeat suffix {_SUFFIX}{last}: "
            f"expected {_SUFFIX}r<k> with k = 1, 2, ..."
        )
    return base, int(digits)


def t_quantile(df: int) -> float:
    """t(0.975, df): the two-sided 95 % critical value (1.96 beyond df 30)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a whole number >= 1, got {df!r}")
    return T_975[df - 1] if df <= len(T_975) else Z_975


@dataclass(frozen=True)
class Interval:
    """The statistics of one figure over the repeats that measured it."""

    values: tuple[float, ...]
    n: int
    mean: float | None
    sd: float | None
    half_width: float | None

    @property
    def has_interval(self) -> bool:
        return self.half_width is not None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def cov(self) -> float | None:
        """Coefficient of variation, sd / |mean|; None without sd or for a mean of 0."""
        if self.sd is None or not self.mean:
            return None
        return self.sd / abs(self.mean)


def stats(values: Iterable[float | int | None]) -> Interval:
    """n, mean, sd (n - 1), 95 % t-interval of the mean; None values are left out."""
    present = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a figure must be a number or None, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"a figure must be finite, got {value!r}")
        present.append(float(value))
    n = len(present)
    if n == 0:
        return Interval((), 0, None, None, None)
    mean = math.fsum(present) / n
    if n == 1:
        return Interval(tuple(present), 1, mean, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (n - 1))
    return Interval(tuple(present), n, mean, sd, t_quantile(n - 1) * sd / math.sqrt(n))


def distinguishable(a: Interval, b: Interval) -> bool | None:
    """False when the two 95 % intervals overlap, True when they do not, None when
    either has no interval (fewer than two values)."""
    if not (a.has_interval and b.has_interval):
        return None
    return a.high < b.low or b.high < a.low


@dataclass(frozen=True)
class Aggregate:
    """One configuration of a run: its repeats and the statistics of each figure."""

    base: str
    cells: tuple[str, ...]  # the repeats' cell ids, in repeat order
    repeats: tuple[int, ...]  # their repeat indices
    first: Mapping  # the row of the first repeat that measured a figure (else of repeat
    # 1): the configuration's fields
    figures: Mapping[str, Interval]  # FIGURES -> Interval
    invalid_reasons: tuple[str, ...]  # "<cell>: <reason>" of each invalid repeat

    @property
    def n(self) -> int:
        return len(self.cells)

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons


def _as_mapping(row) -> Mapping:
    if isinstance(row, Mapping):
        return row
    if hasattr(row, "as_dict"):  # a summary.Row
        return row.as_dict()
    raise ReportError(f"a row must be an object of the summary's columns, got {row!r}")


def _reasons(row: Mapping, cell: str) -> list[str]:
    """The row's invalid reasons as "<cell>: <reason>"; none for a valid row."""
    if row.get("valid") is not False:
        return []
    reasons = row.get("invalid_reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    reasons = [str(r) for r in reasons or [] if str(r).strip()]
    return [f"{cell}: {r}" for r in reasons or ["invalid (no reason given)"]]


def _figure(row: Mapping, cell: str, name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportError(f"cell {cell!r}: {name} must be a number or null, got {value!r}")
    return value


def aggregate(rows: Iterable) -> list[Aggregate]:
    """One Aggregate per base id, in the order the rows first name it.

    Raises ReportError for a row without a valid cell id, two rows that are the
    same repeat of one configuration, repeats that disagree on what they
    measured (IDENTITY_FIELDS), and a figure that is not a number or null.
    """
    groups: dict[str, dict[int, tuple[str, Mapping]]] = {}
    for row in rows:
        row = _as_mapping(row)
        cell = row.get("cell")
        base, k = split_cell_id(cell)
        repeats = groups.setdefault(base, {})
        if k in repeats:
            raise ReportError(
                f"cells {repeats[k][0]!r} and {cell!r} are both repeat {k} of {base!r}"
            )
        repeats[k] = (cell, row)
    aggregates = []
    for base, repeats in groups.items():
        ordered = [repeats[k] for k in sorted(repeats)]
        # a repeat that measured nothing (a failed cell) names no configuration
        measured = [(cell, row) for cell, row in ordered if _measured(row)] or ordered[:1]
        (first_cell, first), *others = measured
        for cell, row in others:
            for name in IDENTITY_FIELDS:
                if row.get(name) != first.get(name):
                    raise ReportError(
                        f"cells {first_cell!r} and {cell!r} are repeats of {base!r} but "
                        f"differ in {name}: {first.get(name)!r} and {row.get(name)!r}"
                    )
        figures = {
            name: stats(_figure(row, cell, name) for cell, row in ordered) for name in FIGURES
        }
        aggregates.append(
            Aggregate(
                base=base,
                cells=tuple(cell for cell, _ in ordered),
                repeats=tuple(sorted(repeats)),
                first=first,
                figures=figures,
                invalid_reasons=tuple(r for cell, row in ordered for r in _reasons(row, cell)),
            )
        )
    return aggregates


def _measured(row: Mapping) -> bool:
    return any(row.get(name) is not None for name in FIGURES)


def groups(aggregates: Iterable[Aggregate]) -> list[tuple[tuple, list[Aggregate]]]:
    """(endpoint, delay_s, users) and the configurations measured there, for each
    such point that holds more than one, in the order the aggregates first name it."""
    points: dict[tuple, list[Aggregate]] = {}
    for agg in aggregates:
        points.setdefault(tuple(agg.first.get(name) for name in GROUP_FIELDS), []).append(agg)
    return [(point, aggs) for point, aggs in points.items() if len(aggs) > 1]


# --- output: summary.json's "configurations", configurations.csv --------------------

# A configuration's fields, as summary.json's "configurations" and configurations.csv
# name them: the base id, then the first measured repeat's IDENTITY_FIELDS.
CONFIGURATION_FIELDS = ("base", *IDENTITY_FIELDS)
# Each figure's statistics, in configurations.csv a column <figure>_<statistic>.
STATISTICS = ("n", "mean", "sd", "ci95_low", "ci95_high", "cov")
CSV_FIELDS = (
    *CONFIGURATION_FIELDS,
    "n",
    "cells",
    "valid",
    "invalid_reasons",
    *(f"{figure}_{statistic}" for figure in FIGURES for statistic in STATISTICS),
)


def _number(value: float | None) -> float | None:
    # six decimals, as compare.csv: no binary noise (12.000000000000002) in the files
    return None if value is None else round(value, 6)


def interval_dict(interval: Interval) -> dict:
    """{"n", "mean", "sd", "ci95": [low, high] or null, "cov", "values"}."""
    return {
        "n": interval.n,
        "mean": _number(interval.mean),
        "sd": _number(interval.sd),
        "ci95": None
        if not interval.has_interval
        else [_number(interval.low), _number(interval.high)],
        "cov": _number(interval.cov),
        "values": list(interval.values),
    }


def as_dict(agg: Aggregate) -> dict:
    """One configuration of summary.json: its base id and fields, n (its repeats),
    their cells, valid (every repeat valid) and the invalid repeats' reasons, then
    each of FIGURES with interval_dict's statistics."""
    document = {"base": agg.base}
    document.update({name: agg.first.get(name) for name in IDENTITY_FIELDS})
    document.update(
        n=agg.n,
        cells=list(agg.cells),
        valid=agg.valid,
        invalid_reasons=list(agg.invalid_reasons),
    )
    document.update({name: interval_dict(agg.figures[name]) for name in FIGURES})
    return document


def csv_row(agg: Aggregate) -> list:
    """A line of configurations.csv, in CSV_FIELDS' order; empty = None."""
    document = as_dict(agg)
    values = [document[name] for name in CONFIGURATION_FIELDS]
    values += [agg.n, "; ".join(agg.cells), agg.valid, "; ".join(agg.invalid_reasons)]
    for name in FIGURES:
        interval = agg.figures[name]
        values += [
            interval.n,
            *(_number(v) for v in (interval.mean, interval.sd, interval.low, interval.high)),
            _number(interval.cov),
        ]
    return ["" if value is None else value for value in values]


def write_csv(aggregates: Iterable[Aggregate], path: Path) -> None:
    """configurations.csv: a header of CSV_FIELDS, then one line per configuration."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        writer.writerows(csv_row(agg) for agg in aggregates)
