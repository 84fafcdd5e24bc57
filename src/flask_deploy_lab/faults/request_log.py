"""What every client saw, request by request: the load's request log
(``locust_requests.csv``, written by loadtest/locustfile.py), read for the
judges, and the figures they take from it.

The verdicts are computed from this log, not from Locust's statistics: its
rows have each request's start, latency, status and body, so a judge can count
exactly what it bounds (failures, cut-off bodies, 503s without Retry-After,
throughput per second, latency of the requests that started in a window).

The columns, read by name (any order; a column the log lacks is None in every
row, and a judge that needs it says "cannot judge: the request log lacks
<column>", a FAIL):

    start             Unix seconds the request started
    response_time_ms  its latency; empty for a request in flight at the stop
    failed            1 when Locust counted it as a failure, else 0
    name              Locust's name of it (/db, /slow, ...)
    stopped_at        for a request in flight at the stop: when the stop found it
    status            the HTTP status; 0 when no HTTP answer came (reset, refused)
    content_length    the Content-Length the response declared; empty: none
    body_bytes        the bytes of body the client received
    retry_after       the response's Retry-After header; empty: none
    error             Locust's failure message; empty for a success

The first five are what the locustfile writes today; the last five are the
addition the faults need (docs/faults.md, "What the load must log").
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.faults.outcome import FaultError

REQUEST_LOG = "locust_requests.csv"
BASE_FIELDS = ("start", "response_time_ms", "failed", "name")
STATUS = "status"
CONTENT_LENGTH = "content_length"
BODY_BYTES = "body_bytes"
RETRY_AFTER = "retry_after"
ERROR = "error"
# what a judge of the body needs, and of a refusal
BODY_FIELDS = (STATUS, CONTENT_LENGTH, BODY_BYTES)
REFUSAL_FIELDS = (STATUS, RETRY_AFTER)

# How a completed request ended, for the client (`outcome`).
OK = "ok"
# an error the client can see in the status: not 2xx, or no HTTP answer (0)
STATUS_ERROR = "status"
# a 2xx whose body is shorter than its declared Content-Length: the client can tell
SHORT_BODY = "short"
# a 2xx that Locust failed on its body (not a complete answer) while the length
# gave no sign of it: the client was told OK and handed half an answer
TRUNCATED_OK = "truncated"


@dataclass(frozen=True, slots=True)
class Request:
    """One row of the request log."""

    start: float
    # None: in flight when the run stopped (then stopped_at is set)
    response_time_ms: float | None
    failed: bool
    name: str
    stopped_at: float | None = None
    status: int | None = None
    content_length: int | None = None
    body_bytes: int | None = None
    retry_after: str | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.response_time_ms is not None

    @property
    def end(self) -> float:
        """When it completed (or the stop found it still waiting)."""
        if self.response_time_ms is not None:
            return self.start + self.response_time_ms / 1000
        return self.stopped_at if self.stopped_at is not None else self.start

    @property
    def latency_ms(self) -> float:
        """Its latency; for one in flight at the stop, how long it had waited (at least)."""
        if self.response_time_ms is not None:
            return self.response_time_ms
        return round((self.end - self.start) * 1000, 3)

    @property
    def told_ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> str:
        """OK, STATUS_ERROR, SHORT_BODY or TRUNCATED_OK (for a completed request)."""
        if not self.told_ok:
            return STATUS_ERROR if self.failed or self.status is not None else OK
        declared, got = self.content_length, self.body_bytes
        if declared is not None and got is not None and got < declared:
            return SHORT_BODY
        return TRUNCATED_OK if self.failed else OK

    @property
    def refused_with_retry_after(self) -> bool:
        return self.status == 503 and bool(self.retry_after)


@dataclass(frozen=True)
class RequestLog:
    requests: tuple[Request, ...]
    # the columns the file has
    fields: frozenset[str]

    def lacks(self, *fields) -> list[str]:
        return [name for name in fields if name not in self.fields]

    @property
    def completed(self) -> list[Request]:
        return [r for r in self.requests if r.finished]

    @property
    def last_end(self) -> float | None:
        """When the last completed request ended (Unix time); None without one."""
        return max((r.end for r in self.completed), default=None)

    @property
    def unfinished(self) -> list[Request]:
        return [r for r in self.requests if not r.finished]

    def by_outcome(self) -> Counter:
        return Counter(r.outcome for r in self.completed)

    def failures(self) -> list[Request]:
        """The completed requests that did not end OK for the client."""
        return [r for r in self.completed if r.outcome != OK]

    def in_flight_at(self, moment: float) -> int:
        """Requests begun before `moment` and not completed by then."""
        return sum(1 for r in self.requests if r.start <= moment < r.end)


def cannot_judge(log: RequestLog | None, *fields) -> str | None:
    """Why the log cannot judge what needs `fields` (a FAIL reason), or None."""
    if log is None:
        return f"cannot judge: the run left no {REQUEST_LOG}"
    missing = log.lacks(*fields)
    if missing:
        return f"cannot judge: the request log lacks {', '.join(missing)}"
    return None


def _number(text, kind, path, line, column):
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = kind(text) if kind is float else int(float(text))
    except ValueError:
        raise FaultError(f"{path}: line {line}: {column} {text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise FaultError(f"{path}: line {line}: {column} {text!r} is not a number")
    return value


def parse_request_log(path: Path) -> RequestLog:
    """The rows of a request log; FaultError for a file without the base columns
    or with a row that is not numbers where numbers go."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = frozenset(name.strip() for name in reader.fieldnames or ())
        missing = [name for name in BASE_FIELDS if name not in fields]
        if missing:
            raise FaultError(f"{path}: no column {', '.join(missing)}")
        found = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "") for k, v in row.items()}

            def num(column, kind=float, row=row, line=line):
                return _number(row.get(column), kind, path, line, column)

            start = num("start")
            if start is None:
                raise FaultError(f"{path}: line {line}: no start")
            retry = row.get(RETRY_AFTER, "").strip()
            found.append(
                Request(
                    start=start,
                    response_time_ms=num("response_time_ms"),
                    failed=row.get("failed", "").strip() == "1",
                    name=row.get("name", ""),
                    stopped_at=num("stopped_at"),
                    status=num(STATUS, int),
                    content_length=num(CONTENT_LENGTH, int),
                    body_bytes=num(BODY_BYTES, int),
                    retry_after=retry or None,
                    error=row.get(ERROR, "").strip(),
                )
            )
    return RequestLog(tuple(found), fields)


def read_request_log(cell_dir: Path) -> RequestLog | None:
    """The cell's request log; None when the run left none."""
    path = Path(cell_dir) / REQUEST_LOG
    return parse_request_log(path) if path.is_file() else None


# ---------------------------------------------------------------- figures


def per_second(requests, name: str | None = None) -> Counter:
    """{Unix second: requests completed OK in it} (of `name` only, if given)."""
    return Counter(
        int(r.end)
        for r in requests
        if r.finished and r.outcome == OK and (name is None or r.name == name)
    )


def mean_rate(counts: Counter, start: int, end: int) -> float:
    """Mean of the per-second counts over the whole seconds [start, end)."""
    return sum(counts.get(s, 0) for s in range(start, end)) / max(end - start, 1)


def percentile(values, share: float) -> float | None:
    """Nearest rank: the smallest value with at least `share` of them at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def started_between(requests, start: float, end: float) -> list[Request]:
    """The requests (completed or in flight at the stop) begun in [start, end)."""
    return [r for r in requests if start <= r.start < end]


def mean_and_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for fewer than two values)."""
    values = list(values)
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def in_flight_longer_than(requests, moment: float, seconds: float, since: float = -math.inf) -> int:
    """Requests in flight at `moment` that had been waiting more than `seconds` then,
    counted from their start or `since`, whichever is later."""
    return sum(1 for r in requests if max(r.start, since) <= moment - seconds and moment < r.end)


def most_in_flight(requests, start: float, end: float, older_than: float = 0.0,
                   step: float = 0.1, since: float = -math.inf) -> int:  # fmt: skip
    """The most requests in flight (waiting longer than `older_than`, counted from
    their start or `since`, whichever is later) at any moment of [start, end),
    looked at every `step` seconds."""
    requests = list(requests)
    count, moment, most = 0, start, 0
    while moment < end:
        most = max(most, in_flight_longer_than(requests, moment, older_than, since))
        count += 1
        moment = start + count * step
    return most
