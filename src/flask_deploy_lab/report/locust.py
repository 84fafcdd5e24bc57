"""Locust's results for one cell: the one reader of them in the package.

Locust runs with ``--csv=<cell>/locust --csv-full-history --html
<cell>/locust_report.html`` and writes, beside the cell's cell.json:

    locust_stats.csv          one row per request name, and an ``Aggregated`` row
    locust_stats_history.csv  every second, one row per name and an ``Aggregated``
                              row, cumulative since the statistics were last reset
    locust_failures.csv       one row per (method, name, error) with its occurrences
    locust_report.html        Locust's own page

Locust's own ``Requests/s`` divides every request by the whole run, start-up
included. Its users form a closed loop that starts all at once, and nothing
completes for the first mean latency: the figure comes out low by about
latency / duration (5 % at a 1 s delay over 20 s). `steady_rate` takes the
rate from the stats history's cumulative count instead, over the rows past
that transient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.report.csvfile import number, read_rows

STATS = "locust_stats.csv"
HISTORY = "locust_stats_history.csv"
FAILURES = "locust_failures.csv"
HTML_REPORT = "locust_report.html"

# the Name of the row that sums every request name
AGGREGATED = "Aggregated"

# The least stretch of stats history, past the start-up transient, that
# `steady_rate` takes a rate from; with less, Locust's own figure stands.
MIN_STEADY_S = 5.0


@dataclass(frozen=True)
class Stats:
    """The Aggregated row of locust_stats.csv; None: the field is empty or missing."""

    requests: int | None = None
    failures: int | None = None
    rps: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


@dataclass(frozen=True)
class HistoryPoint:
    """One Aggregated row of locust_stats_history.csv."""

    time: float  # Unix time
    users: int  # users running at that second
    requests: int | None = None  # Total Request Count: completed since the last reset


def read_stats(cell_dir: Path) -> Stats | None:
    """The Aggregated row of the cell's locust_stats.csv; None without one."""
    for row in read_rows(cell_dir / STATS) or []:
        if row.get("Name") == AGGREGATED:
            return Stats(
                requests=number(row.get("Request Count")),
                failures=number(row.get("Failure Count")),
                rps=number(row.get("Requests/s")),
                mean_ms=number(row.get("Average Response Time")),
                p50_ms=number(row.get("50%")),
                p95_ms=number(row.get("95%")),
                p99_ms=number(row.get("99%")),
                max_ms=number(row.get("Max Response Time")),
            )
    return None


def read_history(cell_dir: Path) -> list[HistoryPoint]:
    """The Aggregated rows of the cell's stats history that carry a time, in file order."""
    points = []
    for row in read_rows(cell_dir / HISTORY) or []:
        if row.get("Name") != AGGREGATED:
            continue
        time = number(row.get("Timestamp"))
        if time is not None:
            points.append(
                HistoryPoint(
                    time,
                    number(row.get("User Count")) or 0,
                    number(row.get("Total Request Count")),
                )
            )
    return points


def measured_window(history: list[HistoryPoint], users: int) -> tuple[float, float] | None:
    """(first second with all users running, last second) of the history, or None.

    Without a second at full strength the window starts at the first row.
    """
    if not history:
        return None
    full = [point.time for point in history if point.users >= users]
    return (full[0] if full else history[0].time), history[-1].time


def steady_rate(
    history: list[HistoryPoint], users: int, mean_ms: float | None
) -> tuple[float | None, str | None]:
    """(requests per second past the start-up transient, None) from the stats
    history's cumulative count, or (None, why not).

    The window starts at the first row at or after (first second with all
    users running + mean_ms), Locust's mean response time of the run, and
    ends at the last row; the rate is the count's increase over it divided by
    the time between the two rows. A drop in the count (the statistics
    restarted, as when a worker is lost) starts the window no earlier than the
    row after the last drop. With fewer than MIN_STEADY_S seconds between the
    two rows there is no rate.
    """
    counted = [point for point in history if point.requests is not None]
    if not counted:
        return None, f"no Total Request Count in {HISTORY}"
    if mean_ms is None:
        return None, f"no Average Response Time in {STATS}"
    full = [point.time for point in history if point.users >= users]
    if not full:
        return None, f"no row of {HISTORY} with all {users} users running"
    for index in range(len(counted) - 1, 0, -1):
        if counted[index].requests < counted[index - 1].requests:
            counted = counted[index:]
            break
    settled = full[0] + mean_ms / 1000
    start = next((point for point in counted if point.time >= settled), None)
    end = counted[-1]
    seconds = end.time - start.time if start is not None else 0
    if start is None or seconds < MIN_STEADY_S:
        return None, (
            f"{HISTORY} holds {max(seconds, 0):g} s past the start-up transient, "
            f"fewer than {MIN_STEADY_S:g}"
        )
    return (end.requests - start.requests) / seconds, None


def read_top_failure(cell_dir: Path) -> str | None:
    """The cell's most frequent failure as 'METHOD name: error', or None."""
    best = None
    for row in read_rows(cell_dir / FAILURES) or []:
        count = number(row.get("Occurrences")) or 0
        # the first of equally frequent failures wins, as Locust lists them
        if best is None or count > best[0]:
            best = (count, f"{row.get('Method', '')} {row.get('Name', '')}: {row.get('Error', '')}")
    return best[1].strip() if best else None


def has_html_report(cell_dir: Path) -> bool:
    return (cell_dir / HTML_REPORT).is_file()
