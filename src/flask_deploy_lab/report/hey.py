"""hey's results for one cell: the second, independent client of the I/O-bound cells.

For an I/O-bound cell the load-test playbook also runs hey (Debian's hey 0.1.4)
against the same URL, as

    hey -z <warmup_s + duration_s>s -c <connections> -o csv <url>

and keeps, in the cell's directory:

    hey.csv   one row per request that got an HTTP response, in the order they
              completed, under exactly this header::

                  response-time,DNS+dialup,DNS,Request-write,Response-delay,
                  Response-read,status-code,offset

              (one line in the file). Times are seconds with four decimals;
              ``offset`` is when the request started, in seconds since hey
              started. A request that failed below HTTP (refused, reset, timed
              out) is not in the file at all, and neither is any request after
              hey's first 1,000,000 (far more than a run of this lab makes).
    hey.json  {"client": "hey", "version": "0.1.4-2+b4", "connections": <users>,
               "warmup_s": 5, "duration_s": 20, "url": "..."}

hey's ``-c`` clients form a closed loop: each sends its next request as soon as
the last one is answered. The first ``warmup_s`` seconds are its warm-up; the
measured window holds the requests that *completed* (offset + response-time)
within ``[warmup_s, warmup_s + duration_s]``, both ends included, and every
figure below is over those requests alone:

    requests            how many completed in the window
    non_2xx             of them, how many had a status outside 200-299
    rps                 the requests' work done in the window / duration_s: each
                        request counts the share of its own time (offset to
                        completion) that lies inside the window, so a request
                        wholly inside counts 1 and one that straddles an edge a
                        fraction. Counting completions instead would be off by
                        up to a whole round of requests: hey starts every
                        connection at once and a fixed delay keeps their
                        requests in step, so completions come in bursts one
                        latency apart, and a window edge falls before or after
                        a burst (6 % of a 15 s window at 1 s).
    mean, p50, p95, p99, max latency, in milliseconds: exact, from the sorted
                        response times (nearest rank: the p-th percentile of n
                        values is the ceil(p / 100 * n)-th smallest)
    in_flight_estimate  rps * mean latency (Little's law): the requests hey held
                        at once, on average. In a closed loop it equals
                        ``connections``, less the time a connection spends
                        on requests the file does not hold (those that failed
                        below HTTP) and between requests; ``identity_ratio``
                        (connections / in_flight_estimate) is 1.0 when nothing
                        is missing.

A file that breaks this shape fails the report with a ReportError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from flask_deploy_lab.report.csvfile import checked_rows
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.exact import (
    Latencies,
    percentile,  # noqa: F401 -- API here too
    share_inside,
)
from flask_deploy_lab.report.exact import latencies as exact_latencies

CSV = "hey.csv"
META = "hey.json"
HEADER = (
    "response-time", "DNS+dialup", "DNS", "Request-write", "Response-delay", "Response-read",
    "status-code", "offset",
)  # fmt: skip
CLIENT = "hey"


@dataclass(frozen=True)
class Request:
    """One row of hey.csv: what the report uses of it (seconds, exact as written)."""

    response_time: Decimal
    status: int
    offset: Decimal

    @property
    def completed(self) -> Decimal:
        """When the response was read, in seconds since hey started."""
        return self.offset + self.response_time


@dataclass(frozen=True)
class HeyResult(Latencies):
    """hey's figures for one cell over its measured window (see the module's docstring).

    The latencies are None when no request completed in the window.
    """

    connections: int
    warmup_s: float
    duration_s: float
    requests: int
    non_2xx: int
    rps: float
    mean_ms: float | None
    in_flight_estimate: float | None
    version: str | None = None
    url: str | None = None

    @property
    def identity_ratio(self) -> float | None:
        """(connections / rps) / mean latency: 1.0 when the file accounts for the
        whole time of every connection; None without a completed request."""
        if not self.in_flight_estimate:
            return None
        return self.connections / self.in_flight_estimate


def summarize(
    requests: list[Request],
    connections: int,
    warmup_s: float,
    duration_s: float,
    version: str | None = None,
    url: str | None = None,
) -> HeyResult:
    """The figures of the requests that completed in [warmup_s, warmup_s + duration_s]."""
    start, end = Decimal(str(warmup_s)), Decimal(str(warmup_s)) + Decimal(str(duration_s))
    inside = [r for r in requests if start <= r.completed <= end]
    latencies = sorted(float(r.response_time * 1000) for r in inside)
    rps = float(sum(_share_inside(r, start, end) for r in requests)) / duration_s
    mean_ms = sum(latencies) / len(latencies) if latencies else None
    return HeyResult(
        connections=connections,
        warmup_s=warmup_s,
        duration_s=duration_s,
        requests=len(inside),
        non_2xx=sum(1 for r in inside if not 200 <= r.status <= 299),
        rps=rps,
        mean_ms=mean_ms,
        **exact_latencies(latencies),
        in_flight_estimate=rps * mean_ms / 1000 if mean_ms is not None else None,
        version=version,
        url=url,
    )


def _share_inside(request: Request, start: Decimal, end: Decimal) -> Decimal:
    """The share of the request's time (offset to completion) inside [start, end];
    a request of no measurable time counts whole when it completed inside."""
    return Decimal(share_inside(request.offset, request.response_time, start, end))


def read_requests(path: Path) -> list[Request]:
    """The rows of a hey.csv; ReportError, naming the file and line, when one breaks
    the shape (the header, eight fields, non-negative numbers, an integer status)."""
    requests = []
    for line, fields in checked_rows(path, HEADER, "hey's CSV header"):
        values = dict(zip(HEADER, fields, strict=True))
        status_text = values.pop("status-code")
        times = {name: _seconds(path, line, name, text) for name, text in values.items()}
        try:
            status = int(status_text)
        except ValueError:
            raise ReportError(
                f"{path}: line {line}: status-code {status_text!r} is not an integer"
            ) from None
        requests.append(Request(times["response-time"], status, times["offset"]))
    return requests


def _seconds(path: Path, line: int, name: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise ReportError(f"{path}: line {line}: {name} {text!r} is not a number of seconds")
    return value


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: expected a JSON object")
    if meta.get("client", CLIENT) != CLIENT:
        raise ReportError(f"{path}: client is {meta.get('client')!r}, not {CLIENT!r}")
    connections = meta.get("connections")
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ReportError(f"{path}: connections must be a positive integer")
    for key, least in (("warmup_s", 0), ("duration_s", 1e-9)):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < least:
            raise ReportError(
                f"{path}: {key} must be a number {'>= 0' if least == 0 else '> 0'}, got {value!r}"
            )
    return meta


def read_hey(cell_dir: Path) -> HeyResult | None:
    """hey's figures for the cell in cell_dir; None when it holds neither hey.csv
    nor hey.json; ReportError when one is missing or either is malformed."""
    csv_path, meta_path = cell_dir / CSV, cell_dir / META
    if not csv_path.is_file() and not meta_path.is_file():
        return None
    if not meta_path.is_file():
        raise ReportError(f"{csv_path}: no {META} beside it (connections, warm-up, duration)")
    if not csv_path.is_file():
        raise ReportError(f"{meta_path}: no {CSV} beside it")
    meta = _read_meta(meta_path)
    return summarize(
        read_requests(csv_path),
        connections=meta["connections"],
        warmup_s=float(meta["warmup_s"]),
        duration_s=float(meta["duration_s"]),
        version=meta.get("version"),
        url=meta.get("url"),
    )
