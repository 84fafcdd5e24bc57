"""Figures from one row per request, shared by the readers of hey's and Locust's
request logs (report.hey, report.locust): exact percentiles, and how much of a
request's time lies inside a measured window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

# The latency percentiles every reader reports, by field name.
PERCENTILES = {"p50_ms": 50.0, "p90_ms": 90.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}


@dataclass(frozen=True, kw_only=True)
class Latencies:
    """The latency figures every reader gives (report.hey, report.locust,
    report.hdr), in milliseconds; None: no value (no request, or a field Locust
    left empty)."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None


def latencies(ordered: list, to_ms=float) -> dict:
    """The Latencies fields of values sorted ascending, each through `to_ms`
    (exact nearest-rank percentiles; the maximum is the last value)."""
    figures = {name: percentile(ordered, p) for name, p in PERCENTILES.items()}
    figures["max_ms"] = ordered[-1] if ordered else None
    return {name: None if value is None else to_ms(value) for name, value in figures.items()}


def percentile(ordered: list, p: float):
    """The p-th percentile (0 < p <= 100) of values sorted ascending, by nearest
    rank: the ceil(p / 100 * n)-th smallest of the n values, one of the values
    itself, never an interpolation; None for no values."""
    if not ordered:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    rank = math.ceil(Decimal(str(p)) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def share_inside(start, duration, window_start, window_end):
    """The share (0 to 1) of a request's time, from start to start + duration,
    that lies inside [window_start, window_end]; a request of no measurable
    duration counts whole when it completed inside.

    Every argument is in one unit and of one kind (Decimal seconds, integer
    microseconds): the arithmetic is exact up to the final division.
    """
    completed = start + duration
    if duration <= 0:
        return 1 if window_start <= completed <= window_end else 0
    overlap = min(completed, window_end) - max(start, window_start)
    return max(overlap, 0) / duration
