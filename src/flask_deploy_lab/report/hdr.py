"""The cell's latency histograms, locust_latency.hlog: percentiles from every
request of the run, whatever the request log's cap did.

The file (written by the lab's locustfile, see its docstring) is an
HdrHistogram interval log: one histogram per second of completion, of every
completed request's response time in microseconds (3 significant digits),
failures included, merged over the workers. `read_latency_log` reads it with
hdrh's own reader: each interval's start and length (absolute Unix seconds)
and count, the histograms themselves decoded again only to merge them
(`merged`), so a long run costs no more memory than two histograms.

Which intervals count (`window_intervals`)
    The figures cover a window of completion time, [start, end]. An interval
    counts when the whole of it lies inside: start <= its start and its start
    + length <= end; one the window cuts is left out whole, since which of its
    requests completed inside is not known. With the request log's window
    (report.locust) this leaves out up to one second at either end: the
    histogram's figures cover fewer requests than the request log's, all of
    them among the log's.

The window without a request log (`own_window`)
    The request log's rule, with what the histograms know: the allowance A =
    max(1 s, the mean of every value in the file); start = when all users
    were running (report.locust's `users_running_from`, never earlier than
    the first interval's start; the first interval's start without it) + A;
    end = the last interval's start - A. The last completion lies in the last
    interval, so this end is never later than the request log's would be.
    With less than report.locust.MIN_STEADY_S seconds between start and end
    there are no figures.

The figures (`figures`)
    Over the merged histogram of the intervals inside: requests (its count),
    p50, p90, p95, p99, p99.9 and max, in milliseconds, as HdrHistogram gives
    them: the value at rank round-half-up(p / 100 x n) (at least 1), reported
    as the highest value its bucket holds, so within 0.1 % of the recorded one
    (`PRECISION`).

The exact p99 against the histogram's (`disagreement`)
    When a cell has both, the two are records of the same requests: the
    histogram's intervals inside the request log's window hold a subset of the
    log's requests there, short by k = requests - hdr_requests (the requests
    of the cut seconds at the edges). The histogram's p99 at rank r among its
    n - k values lies between the r-th and the (r + k)-th smallest of the
    log's n, whichever k it lacks; its bucket puts it within PRECISION of that
    value. So the two agree when

        exact[r] x (1 - PRECISION) <= hdr p99 <= exact[min(r + k, n)] x (1 + PRECISION)

    (exact[i] the i-th smallest latency of the log's window; with k < 0, the
    histogram holding more, the ranks r + k .. r). A histogram p99 outside
    that band cannot come from the same requests, whichever the edges cut
    out: a note says so. It is a note and not a validity rule: the headline
    (the request log's) is not in doubt, the second record is.
"""

from __future__ import annotations

import binascii
import itertools
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.exact import PERCENTILES, Latencies
from flask_deploy_lab.report.locust import MIN_ALLOWANCE_S, MIN_STEADY_S

LATENCY_LOG = "locust_latency.hlog"

# The histograms' range and precision, as the locustfile records them; each
# decoded histogram carries its own, these only make the reader's reference.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
# A value read back is within this share of the one recorded (3 significant digits).
PRECISION = 10.0**-SIGNIFICANT_DIGITS

# The percentiles of the figures, by the field they go into.

US_PER_MS = 1000

# What a broken payload raises in hdrh's decoder.
_DECODE_ERRORS = (
    binascii.Error,
    HdrCookieException,
    HdrHistogramSettingsException,
    HdrLengthException,
    TypeError,
    ValueError,
    zlib.error,
)


@dataclass(frozen=True)
class Interval:
    """One line of the interval log: [start, end) in Unix seconds, and how
    many values its histogram holds."""

    start: float
    end: float
    count: int


@dataclass(frozen=True)
class LatencyLog:
    """locust_latency.hlog: its intervals in file order, and the mean of every
    value in them (None for none)."""

    path: Path
    intervals: list[Interval]
    mean_ms: float | None


@dataclass(frozen=True)
class HdrFigures(Latencies):
    """The histogram's figures over a window (see the module's docstring);
    the latencies are None when its intervals hold no value."""

    window_start: float  # Unix time
    window_end: float
    intervals: int  # whole intervals inside the window
    requests: int


def _reference() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _intervals(path: Path):
    """(Interval, histogram) of each interval of the log, in file order; a
    ReportError naming the file and the interval (its place among them)
    when one does not decode. Lines that are no interval, comment or legend
    are passed over, as hdrh's reader does."""
    reader = HistogramLogReader(str(path), _reference())
    try:
        for index in itertools.count(1):
            try:
                # absolute: every interval, wherever it lies against the StartTime
                histogram = reader.get_next_interval_histogram(0.0, sys.maxsize, absolute=True)
            except _DECODE_ERRORS as exc:
                why = str(exc) or type(exc).__name__
                raise ReportError(
                    f"{path}: interval {index}: not an HdrHistogram interval ({why})"
                ) from exc
            if histogram is None:
                return
            # the reader stamps each with its absolute start and end, in milliseconds
            interval = Interval(
                start=histogram.get_start_time_stamp() / 1000,
                end=histogram.get_end_time_stamp() / 1000,
                count=histogram.get_total_count(),
            )
            yield interval, histogram
    finally:
        reader.close()


def _add(total: HdrHistogram, histogram: HdrHistogram, path: Path) -> None:
    try:
        total.add(histogram)
    except IndexError as exc:  # hdrh's word for values past the reference's range
        raise ReportError(f"{path}: values past the histograms' range of an hour ({exc})") from exc


def read_latency_log(cell_dir: Path) -> LatencyLog | None:
    """The cell's locust_latency.hlog; None when it has none; a ReportError,
    naming the file and the interval, when an interval does not decode."""
    path = cell_dir / LATENCY_LOG
    if not path.is_file():
        return None
    intervals, everything = [], _reference()
    for interval, histogram in _intervals(path):
        intervals.append(interval)
        _add(everything, histogram, path)
    mean_ms = everything.get_mean_value() / US_PER_MS if everything.get_total_count() else None
    return LatencyLog(path, intervals, mean_ms)


def _inside(interval: Interval, start: float, end: float) -> bool:
    return start <= interval.start and interval.end <= end


def window_intervals(intervals: list[Interval], start: float, end: float) -> list[Interval]:
    """The intervals that lie whole inside [start, end]: start <= their start
    and their end <= end; one the window cuts is left out."""
    return [interval for interval in intervals if _inside(interval, start, end)]


def merged(log: LatencyLog, start: float, end: float) -> HdrHistogram:
    """The sum of the histograms of the intervals whole inside [start, end]
    (`window_intervals`), decoded from the file again one at a time."""
    total = _reference()
    for interval, histogram in _intervals(log.path):
        if _inside(interval, start, end):
            _add(total, histogram, log.path)
    return total


def own_window(
    log: LatencyLog, users_running: float | None
) -> tuple[tuple[float, float] | None, str | None]:
    """((start, end), None) of the window the log gives itself without a
    request log (the module's docstring), or (None, why not); users_running
    is when all users were running (Unix time) or None."""
    if not log.intervals:
        return None, f"{LATENCY_LOG} holds no interval"
    allowance = max(MIN_ALLOWANCE_S, (log.mean_ms or 0) / US_PER_MS)
    first = min(i.start for i in log.intervals)
    running = first if users_running is None else max(first, users_running)
    start = running + allowance
    end = max(i.start for i in log.intervals) - allowance
    if end - start < MIN_STEADY_S:
        return None, (
            f"{LATENCY_LOG} spans {max(end - start, 0):.3g} s once the ramp-up and the end "
            f"are left out, fewer than {MIN_STEADY_S:g}"
        )
    return (start, end), None


def figures(log: LatencyLog, start: float, end: float) -> tuple[HdrFigures | None, str | None]:
    """(the histogram's figures over [start, end], None), or (None, why there
    are none: no interval lies whole inside)."""
    inside = window_intervals(log.intervals, start, end)
    if not inside:
        return None, f"no interval of {LATENCY_LOG} lies whole inside the window"
    histogram = merged(log, start, end)
    count = histogram.get_total_count()
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values())) if count else {}

    def ms(us):
        return us / US_PER_MS if us is not None else None

    return (
        HdrFigures(
            window_start=start,
            window_end=end,
            intervals=len(inside),
            requests=count,
            **{name: ms(values.get(p)) for name, p in PERCENTILES.items()},
            max_ms=ms(histogram.get_max_value()) if count else None,
        ),
        None,
    )


def hdr_rank(p: float, count: int) -> int:
    """The rank (from 1) of HdrHistogram's p-th percentile of count values:
    p / 100 x count rounded half up, at least 1 (hdrh's
    get_target_count_at_percentile)."""
    return max(int(p * count / 100 + 0.5), 1)


def agreement_band(ordered_us: list[int], hdr_requests: int, p: float) -> tuple[int, int] | None:
    """(lowest, highest) of the request log's window latencies (ordered_us,
    ascending, microseconds) that the histogram's p-th percentile of
    hdr_requests values can stand for, whichever requests the edges' seconds
    cut (the module's docstring), before the histogram's precision; None
    without either."""
    n = len(ordered_us)
    if not n or not hdr_requests:
        return None
    rank = hdr_rank(p, hdr_requests)
    missing = n - hdr_requests
    low = min(max(rank + min(missing, 0), 1), n)
    high = min(max(rank + max(missing, 0), 1), n)
    return ordered_us[low - 1], ordered_us[high - 1]


def within_precision(value_us: int, low_us: int, high_us: int) -> bool:
    """low_us x (1 - PRECISION) <= value_us <= high_us x (1 + PRECISION), in
    whole numbers, so that a value on an edge is inside."""
    scale = 10**SIGNIFICANT_DIGITS
    return low_us * (scale - 1) <= value_us * scale <= high_us * (scale + 1)


def _ms(value: float) -> str:
    """Milliseconds to the microsecond, as the columns keep them: 1020.415, 1020."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def disagreement(ordered_us: list[int], exact_p99_ms: float | None, hdr: HdrFigures) -> str | None:
    """A note when the histogram's p99 lies outside `agreement_band` of the
    request log's window (ordered_us, its latencies sorted) widened by the
    histogram's precision; None when it lies inside or either has no p99."""
    if exact_p99_ms is None or hdr.p99_ms is None:
        return None
    band = agreement_band(ordered_us, hdr.requests, 99.0)
    if band is None or within_precision(round(hdr.p99_ms * US_PER_MS), *band):
        return None
    low, high = (band[0] * (1 - PRECISION), band[1] * (1 + PRECISION))
    return (
        f"HDR p99 {_ms(hdr.p99_ms)} ms disagrees with the exact p99 {_ms(exact_p99_ms)} ms: "
        f"outside {_ms(low / US_PER_MS)}..{_ms(high / US_PER_MS)} ms, what the request log's "
        f"window allows for the {abs(len(ordered_us) - hdr.requests)} request(s) the "
        f"histogram's whole seconds do not share and its {PRECISION:.1%} precision"
    )
