"""Locust's results for one cell: the one reader of them in the package.

Locust runs with ``--csv=<cell>/locust --csv-full-history --html
<cell>/locust_report.html`` and writes, beside the cell's cell.json:

    locust_stats.csv          one row per request name, and an ``Aggregated`` row
    locust_stats_history.csv  every second, one row per name and an ``Aggregated``
                              row, cumulative since the statistics were last reset
    locust_failures.csv       one row per (method, name, error) with its occurrences
    locust_report.html        Locust's own page
    locust.log                the master's log (the single process's, run without
                              workers); read for Locust's CPU warning only
    locust_requests.csv       written by the lab's locustfile (see its docstring),
                              not by Locust: one row per request of the whole run,
                              ramp-up included, in the order they completed, under
                              the header ``start,response_time_ms,failed,name,stopped_at,
                              status,content_length,body_bytes,retry_after,error``:
                              start in Unix seconds with six decimals, the response
                              time in milliseconds with three, failed 0 or 1,
                              stopped_at empty, then what it was answered (the
                              faults read those; see the locustfile); then one
                              row per request still in flight when the run
                              stopped, oldest first: its start,
                              response_time_ms and failed empty, stopped_at the
                              Unix time the stop found it waiting (six decimals)
    locust_latency.hlog       written by the lab's locustfile too: the same
                              requests' response times in HdrHistograms, one per
                              second of completion (read by report.hdr)

The request log's layout, checked strictly (`read_requests`)
    The header is one of three: the one above; ``start,response_time_ms,failed,
    name,stopped_at`` (a log written before the locustfile kept what each request
    was answered: the faults read those five columns, the report does not); or
    ``start,response_time_ms,failed,name`` (before it listed the requests in
    flight at the stop; its rows are all completed requests, and whether any was
    cut off is unknown). Every row has
    as many fields as its header. A completed row: start and response_time_ms
    non-negative numbers, failed 0 or 1, stopped_at empty. An in-flight row:
    start and stopped_at non-negative numbers, stopped_at not before start,
    response_time_ms and failed empty. Anything else is a ReportError naming
    the file and the line.

Requests in flight at the stop (`cut_off`)
    Locust kills the requests in flight when a run stops and counts none of
    them, so a request stuck for longer than the run is in no figure. Their
    age at the stop (stopped_at - start) says whether the tail was cut off: one
    that had already waited longer than the cell's p99 is latency the
    percentiles do not hold, and the report marks the cell invalid (see
    report.model). None of them counts in the rate or the percentiles below.

Figures from locust_requests.csv (`request_figures`)
    Locust's statistics are coarse for a short window. The history's cumulative
    count moves only when a worker reports (every 3 s) and its timestamps are
    whole seconds, so a rate over 15 s of it can be 20 % off; its percentiles
    are rounded into buckets. The request log has every request, so its figures
    are exact, computed as report.hey computes hey's, over this window:

        allowance  A = max(1 s, the mean response time of every request in the file)
        start      = (when all users were running) + A
        end        = (the last completion in the file) - A

    "When all users were running" is the end of the first whole second of the
    stats history whose Aggregated row shows all of the cell's users (its
    timestamp + 1 s: the timestamp is the second the row was written in,
    truncated), and never earlier than the first request's start; without such
    a row, the first request's start. The start leaves out the ramp-up and the
    first round of requests of a closed loop that has just started. The end
    allows for how a run stops: Locust kills the requests then in flight, one
    per user, with no response time. A killed request that had run for less
    than A started after the window's end, so the window misses nothing of
    it; only one that had run for longer than A leaves out its part between
    its start and the window's end: nothing in a cell whose requests all take
    less than A, next to nothing where they all take about A, as in the
    delay-bound cells. (The killed requests are in the log, as in-flight rows,
    for `cut_off`: a cell where one had waited longer than the p99 is invalid
    whatever these figures say.) Over the window, the completed requests:

        requests   the requests that completed in it, both ends included
        failures   of them, those Locust counted as failed
        rps        the requests' work done in the window / its length: each
                   request counts the share of its own time (start to
                   completion) inside the window, so the rate does not depend
                   on where an edge cuts a burst of completions
        mean, p50, p95, p99, max latency, in milliseconds: exact, over the
                   requests completed in the window (nearest rank)

    Times are whole microseconds, as the file writes them (A rounded to one),
    so the window's edges are exact. With less than MIN_STEADY_S seconds
    between start and end there are no figures. The starts come from the
    clocks of the hosts that ran the users and the history's seconds from the
    master's: on different hosts they agree as well as those clocks do. A
    worker lost mid-run takes the requests it had not yet reported with it (up
    to 3 s of its users'); such a cell is invalid anyway (cell.json's
    workers_lost, report.model).

Figures from Locust's own statistics
    Without a request log, or with one that spans less than MIN_STEADY_S once
    the window is cut, the report falls back on Locust's statistics for the
    rate and the mean (the percentiles and the max come from the latency
    histograms when the cell has them: report.hdr).
    Locust's own ``Requests/s`` divides every request by the whole run,
    start-up included. Its users form a closed loop that starts all at once,
    and nothing completes for the first mean latency: the figure comes out low
    by about latency / duration (5 % at a 1 s delay over 20 s). `steady_rate`
    takes the rate from the stats history's cumulative count instead, over the
    rows past that transient.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flask_deploy_lab.report.csvfile import checked_rows, number, read_rows
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.exact import Latencies, share_inside
from flask_deploy_lab.report.exact import latencies as exact_latencies

STATS = "locust_stats.csv"
HISTORY = "locust_stats_history.csv"
FAILURES = "locust_failures.csv"
HTML_REPORT = "locust_report.html"
REQUESTS = "locust_requests.csv"
LOG = "locust.log"
# the request log's header, and an older log's, which has no in-flight rows
REQUESTS_HEADER = (
    "start", "response_time_ms", "failed", "name", "stopped_at", "status", "content_length",
    "body_bytes", "retry_after", "error",
)  # fmt: skip
# older logs: without what each request was answered, and before that without
# the requests in flight at the stop
REQUESTS_HEADER_V2 = REQUESTS_HEADER[:5]
REQUESTS_HEADER_V1 = REQUESTS_HEADER[:4]

# What Locust logs when a process of the run goes above its CPU threshold (90 %):
# the process itself ("CPU usage above 90%!", and at the end "CPU usage was too
# high"), and the master of a worker whose heartbeat said so ("Worker <id>
# (index <n>) exceeded cpu threshold", and at the end "CPU usage threshold was
# exceeded on workers").
CPU_WARNING = re.compile(
    r"CPU usage above \d+%|CPU usage was too high|exceeded cpu threshold"
    r"|CPU usage threshold was exceeded"
)

# the Name of the row that sums every request name
AGGREGATED = "Aggregated"

# The least stretch of stats history, past the start-up transient, that
# `steady_rate` takes a rate from; with less, Locust's own figure stands.
MIN_STEADY_S = 5.0

# The least allowance A at either end of the request log's window.
MIN_ALLOWANCE_S = 1.0

US_PER_S = 1_000_000


@dataclass(frozen=True)
class Stats(Latencies):
    """The Aggregated row of locust_stats.csv; None: the field is empty or missing."""

    requests: int | None = None
    failures: int | None = None
    rps: float | None = None
    mean_ms: float | None = None


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
                p90_ms=number(row.get("90%")),
                p95_ms=number(row.get("95%")),
                p99_ms=number(row.get("99%")),
                p999_ms=number(row.get("99.9%")),
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


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One completed request of locust_requests.csv, its times in whole
    microseconds, as written."""

    start_us: int  # Unix time the request started
    response_time_us: int
    failed: bool
    name: str

    @property
    def completed_us(self) -> int:
        """Unix time the response was read."""
        return self.start_us + self.response_time_us


@dataclass(frozen=True, slots=True)
class UnfinishedRequest:
    """One request of locust_requests.csv still in flight when the run stopped."""

    start_us: int  # Unix time the request started
    stopped_us: int  # Unix time the stop found it waiting
    name: str

    @property
    def age_us(self) -> int:
        """How long it had waited when the run stopped."""
        return self.stopped_us - self.start_us


@dataclass(frozen=True)
class RequestLog:
    """locust_requests.csv: the completed requests and those in flight at the
    stop; unfinished is None for a log of the older layout, which does not
    list them."""

    completed: list[LoggedRequest]
    unfinished: list[UnfinishedRequest] | None


@dataclass(frozen=True)
class RequestFigures(Latencies):
    """The figures of locust_requests.csv over its measured window (see the
    module's docstring). The latencies are None when no request completed in it."""

    window_start: float  # Unix time
    window_end: float
    requests: int
    failures: int
    rps: float
    mean_ms: float | None
    # the latencies of the requests completed in the window, ascending, in
    # microseconds: what report.hdr compares the histogram's p99 with
    latencies_us: list[int] = field(default_factory=list, repr=False, compare=False)

    @property
    def duration_s(self) -> float:
        return self.window_end - self.window_start


def read_requests(cell_dir: Path) -> RequestLog | None:
    """The cell's locust_requests.csv; None when it has none; a ReportError,
    naming the file and line, when it breaks the layout (the module's
    docstring: either header, as many fields as it, a completed or an
    in-flight row)."""
    path = cell_dir / REQUESTS
    if not path.is_file():
        return None
    header = _requests_header(path)
    completed, unfinished = [], []
    for line, fields in checked_rows(path, header, "the header"):
        start, response_time_ms, failed, name = fields[:4]
        stopped_at = fields[4] if len(fields) > 4 else ""
        if stopped_at.strip():
            for field, text in (("response_time_ms", response_time_ms), ("failed", failed)):
                if text.strip():
                    raise ReportError(
                        f"{path}: line {line}: {field} {text!r} in a request in flight at "
                        "the stop (stopped_at set)"
                    )
            request = UnfinishedRequest(
                start_us=_microseconds(path, line, "start", start, 6),
                stopped_us=_microseconds(path, line, "stopped_at", stopped_at, 6),
                name=name,
            )
            if request.stopped_us < request.start_us:
                raise ReportError(f"{path}: line {line}: stopped_at {stopped_at!r} before start")
            unfinished.append(request)
            continue
        if failed.strip() not in ("0", "1"):
            raise ReportError(f"{path}: line {line}: failed {failed!r} is not 0 or 1")
        completed.append(
            LoggedRequest(
                start_us=_microseconds(path, line, "start", start, 6),
                response_time_us=_microseconds(path, line, "response_time_ms", response_time_ms, 3),
                failed=failed.strip() == "1",
                name=name,
            )
        )
    return RequestLog(completed, None if header == REQUESTS_HEADER_V1 else unfinished)


def _requests_header(path: Path) -> tuple[str, ...]:
    """Which of the two headers the file has; a ReportError naming both otherwise."""
    with path.open(newline="") as handle:
        found = next(csv.reader(handle), None)
    stripped = tuple(field.strip() for field in found) if found else None
    if stripped in (REQUESTS_HEADER, REQUESTS_HEADER_V2, REQUESTS_HEADER_V1):
        return stripped
    raise ReportError(
        f"{path}: expected the header {','.join(REQUESTS_HEADER)} (or an older log's "
        f"{','.join(REQUESTS_HEADER_V2)} or {','.join(REQUESTS_HEADER_V1)}), got "
        + (",".join(found) if found else "an empty file")
    )


def _microseconds(path: Path, line: int, name: str, text: str, places: int) -> int:
    """A field of seconds (places=6) or milliseconds (places=3) as whole microseconds."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise ReportError(f"{path}: line {line}: {name} {text!r} is not a non-negative number")
    return int(value.scaleb(places).to_integral_value())


def users_running_from(history: list[HistoryPoint], users: int) -> float | None:
    """The end of the first second of the stats history with all users running
    (its timestamp + 1 s), or None when no row shows them all."""
    return next((point.time + 1 for point in history if point.users >= users), None)


def request_figures(
    requests: list[LoggedRequest], users_running: float | None
) -> tuple[RequestFigures | None, str | None]:
    """(the figures of the request log over its window, None), or (None, why
    there are none); users_running is when all users were running (Unix time,
    see `users_running_from`) or None. The window is the module docstring's."""
    if not requests:
        return None, f"{REQUESTS} holds no request"
    mean_all_us = sum(r.response_time_us for r in requests) / len(requests)
    allowance = max(round(mean_all_us), round(MIN_ALLOWANCE_S * US_PER_S))
    first_start = min(r.start_us for r in requests)
    running = first_start
    if users_running is not None:
        running = max(first_start, round(users_running * US_PER_S))
    start = running + allowance
    end = max(r.completed_us for r in requests) - allowance
    seconds = (end - start) / US_PER_S
    if seconds < MIN_STEADY_S:
        return None, (
            f"{REQUESTS} spans {max(seconds, 0):.3g} s once the ramp-up and the end are "
            f"left out, fewer than {MIN_STEADY_S:g}"
        )
    inside = [r for r in requests if start <= r.completed_us <= end]
    latencies = sorted(r.response_time_us for r in inside)
    work = sum(share_inside(r.start_us, r.response_time_us, start, end) for r in requests)

    def ms(us):
        return us / 1000 if us is not None else None

    return (
        RequestFigures(
            window_start=start / US_PER_S,
            window_end=end / US_PER_S,
            requests=len(inside),
            failures=sum(1 for r in inside if r.failed),
            rps=work / seconds,
            mean_ms=ms(sum(latencies) / len(latencies)) if latencies else None,
            **exact_latencies(latencies, ms),
            latencies_us=latencies,
        ),
        None,
    )


@dataclass(frozen=True)
class CutOff:
    """The requests in flight when the run stopped, against the cell's p99."""

    in_flight: int
    # of them, those that had waited longer than p99 by the stop; None without a p99
    cut_off: int | None
    # the longest any had waited by the stop; None when none was in flight
    oldest_ms: float | None


def cut_off(unfinished: list[UnfinishedRequest], p99_ms: float | None) -> CutOff:
    """How many requests were in flight at the stop, how many of them had
    waited longer than p99_ms (the cell's reported p99) by then, and the
    oldest's age: a request still waiting past the p99 is latency the
    percentiles do not hold."""
    ages_ms = [request.age_us / 1000 for request in unfinished]
    return CutOff(
        in_flight=len(ages_ms),
        cut_off=None if p99_ms is None else sum(1 for age in ages_ms if age > p99_ms),
        oldest_ms=max(ages_ms, default=None),
    )


def read_cpu_warning(cell_dir: Path) -> bool | None:
    """Whether the cell's locust.log holds Locust's CPU warning (CPU_WARNING);
    None when the cell has no locust.log."""
    path = cell_dir / LOG
    if not path.is_file():
        return None
    return CPU_WARNING.search(path.read_text(errors="replace")) is not None


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
