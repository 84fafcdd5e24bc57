"""Figures from one row per request, shared by the readers of hey's and Locust's
request logs (report.hey, report.locust): exact percentiles, and how much of a
request's time lies inside a measured window."""

from __future__ import annotations

import math
from decimal import Decimal


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
