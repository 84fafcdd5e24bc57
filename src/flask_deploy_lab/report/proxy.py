"""Where a cell's requests went and how long nginx took: the proxy's access log.

With more than one app host nginx spreads the load over them; the load-test
playbook keeps, for each proxy host, the lines nginx appended to its access
log from the start of the cell's measured Locust run to the end of the cell
(after a flush of nginx's log buffer), gzipped:

    <cell>/proxy/<proxy host>.log.gz

one request a line, in the role's ``timed`` format
(roles/nginx/templates/nginx.conf.j2)::

    $remote_addr [$time_local] "$request" $status $body_bytes_sent
    rt=$request_time urt=$upstream_response_time ua="$upstream_addr"
    us="$upstream_status" st="$upstream_http_server_timing"

``$time_local`` is when nginx finished the request, to the second;
``$upstream_addr`` lists every app host nginx tried, comma-separated, and the
last one answered; ``$request_time`` is nginx's whole time for the request
(from the first bytes it read of it to the last it wrote of the answer) and
``$upstream_response_time`` each try's wait for the app, both in seconds to
the millisecond, the tries comma-separated (`-`: no upstream answered; " : "
between the upstream groups of an internal redirect). ``st`` is the app's
own answer's Server-Timing header (labapp.timing: ``queue;dur=12.0,
app;dur=503.4``, ms): the wait from nginx's send to the app's first look at
the request, then the app's own time to its answer's headers (``-`` or
absent: an app or a log from before it, or no answer).

The lines used are those whose second lies whole inside the measured window
(its first whole second to its last), ``/healthz`` (the playbook's drain
checks) left out. One pass over them (`tally`) gives both of this module's
figures:

- a cell's requests per app host: the lines counted by the last upstream
  address, divided by those seconds: 1-second resolution, so within a request
  per second and window second of the exact rate. The addresses map to host
  names through facts.json (each host's ``address``);
- where a request's time goes (`proxy_latency`): the p50 and p99 of ``rt``,
  nginx's time, and of the last ``urt``, the app's answer to the try that
  answered (lines whose last is ``-`` left out of these two), in ms, exact by
  nearest rank (report.exact.percentile), and how many lines were used. Beside
  the clients' latencies they split a request's time: the client's figure
  less nginx's is the client and the network, nginx's less the upstream's is
  nginx. The app's own two from ``st`` split the upstream's: its queue (the
  server's backlog, a wait for a free worker) and the view's time, p50 and
  p99 each, over the lines that have them.

Either is None for a cell without the log (an older run), with a reason
(why_not) when the cell has the log but the figure cannot be had.

`by_second` splits the same lines by the second nginx ended each request
in, the whole log (the window is a question of the reader's), for the
moments a window's percentiles hide: a burst, a dip, a stall. Each second
gives its requests and the p50 and p99 of nginx's time, the upstream's and
each part of the app's Server-Timing (``queue``, ``app``, and what a view
adds: /slow's ``api`` and ``api-sleep``). ``fdl-report --by-second CELL``
prints it as CSV.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from flask_deploy_lab.report.exact import percentile

DIRECTORY = "proxy"
LINE = re.compile(
    r'^\S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)[^"]*" \d{3} \S+ '
    r'rt=(?P<rt>\d+(?:\.\d+)?) urt=(?P<urt>[^"]*?) ua="(?P<ua>[^"]*)"'
    r'(?: us="[^"]*")?(?: st="(?P<st>[^"]*)")?'
)
# one metric of a Server-Timing header: its name and its duration in ms
TIMING = re.compile(r"(?:^|,)\s*([\w-]+);dur=(-?\d+(?:\.\d+)?)")
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
HEALTH = "/healthz"
# what separates the tries of $upstream_response_time: ", " between the servers
# of a group, " : " between the groups of an internal redirect
_TRIES = re.compile(r"[,:]")
NO_WINDOW = "no measured window"
NO_WHOLE_SECOND = "the measured window holds no whole second"


@dataclass
class Tally:
    """The window's lines, read once: requests by the upstream that answered,
    the window's whole seconds, and each request's times in ms, in line order."""

    seconds: int
    counts: dict[str, int] = field(default_factory=dict)
    proxy_ms: list[float] = field(default_factory=list)
    upstream_ms: list[float] = field(default_factory=list)
    # the app's own split (labapp.timing), of the lines that have it
    queue_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ProxyLatency:
    """nginx's own figures of a cell's window (ms; None: no such request)."""

    requests: int
    proxy_p50_ms: float | None
    proxy_p99_ms: float | None
    upstream_p50_ms: float | None
    upstream_p99_ms: float | None
    # the app's wait before its first look at a request, and its own time after
    app_queue_p50_ms: float | None = None
    app_queue_p99_ms: float | None = None
    app_p50_ms: float | None = None
    app_p99_ms: float | None = None


@dataclass(frozen=True)
class ProxyFigures:
    """What a cell's proxy log gives, each figure with why it is missing."""

    app_hosts_rps: tuple[str, ...] | None = None
    app_hosts_why_not: str | None = None
    latency: ProxyLatency | None = None
    latency_why_not: str | None = None


def _ms(seconds: str) -> float:
    return float(Decimal(seconds) * 1000)


def _requests(lines):
    """(match, the second nginx ended it) of each line of the role's format,
    ``/healthz`` (the playbook's drain checks) left out."""
    for line in lines:
        match = LINE.match(line)
        if match and not match["path"].startswith(HEALTH):
            yield match, datetime.strptime(match["time"], TIME_FORMAT).timestamp()


def _upstream_ms(match) -> float | None:
    """The last try's $upstream_response_time in ms; None when no upstream answered."""
    waited = _TRIES.split(match["urt"])[-1].strip()
    return _ms(waited) if waited and waited != "-" else None


def server_timing(match) -> dict[str, float]:
    """The app's Server-Timing (st=) as {part: ms}; empty without it."""
    return {name: float(ms) for name, ms in TIMING.findall(match["st"] or "")}


def tally(lines, window_start: float, window_end: float) -> Tally:
    """The lines that lie in the window's whole seconds, ``/healthz`` left out, in
    one pass: each counted by the last upstream address, its ``rt`` and (unless
    ``-``) its last ``urt`` kept."""
    first, last = math.ceil(window_start), math.floor(window_end)
    result = Tally(seconds=max(last - first, 0))
    for match, second in _requests(lines):
        if not first <= second < last:
            continue
        answered = match["ua"].split(",")[-1].strip()
        if answered and answered != "-":
            result.counts[answered] = result.counts.get(answered, 0) + 1
        result.proxy_ms.append(_ms(match["rt"]))
        waited = _upstream_ms(match)
        if waited is not None:
            result.upstream_ms.append(waited)
        timing = server_timing(match)
        if "queue" in timing:
            result.queue_ms.append(timing["queue"])
        if "app" in timing:
            result.app_ms.append(timing["app"])
    return result


def read_lines(cell_dir: Path) -> list[str] | None:
    """Every proxy host's kept lines, or None for a cell without them (an older run)."""
    files = sorted((cell_dir / DIRECTORY).glob("*.log.gz"))
    if not files:
        return None
    lines: list[str] = []
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            lines.extend(handle.read().splitlines())
    return lines


def proxy_figures(
    cell_dir: Path, window: tuple[float, float] | None, addresses: dict[str, str]
) -> ProxyFigures:
    """The cell's requests per app host (`shares`) and nginx's latencies
    (`proxy_latency`) from one read and one pass of its proxy log; all None
    with the reason without a window (or a whole second in it), all None and
    no reason for a cell without the log. `addresses` maps an app host's name
    to its address."""
    if window is None:
        return ProxyFigures(app_hosts_why_not=NO_WINDOW, latency_why_not=NO_WINDOW)
    lines = read_lines(cell_dir)
    if lines is None:
        return ProxyFigures()
    counted = tally(lines, *window)
    if counted.seconds <= 0:
        return ProxyFigures(app_hosts_why_not=NO_WHOLE_SECOND, latency_why_not=NO_WHOLE_SECOND)
    app_hosts_rps, app_hosts_why_not = shares(counted, addresses)
    latency, latency_why_not = proxy_latency(counted)
    return ProxyFigures(app_hosts_rps, app_hosts_why_not, latency, latency_why_not)


def shares(counted: Tally, addresses: dict[str, str]) -> tuple[tuple[str, ...], str | None]:
    """(("app1=195.3", "app2=196.0"), why not): each app host's requests per
    second of the tally's seconds, in host order, and a note of the requests
    answered by an upstream no app host has."""
    by_address: dict[str, int] = {}
    for upstream, requests in counted.counts.items():
        address = upstream.rsplit(":", 1)[0]
        by_address[address] = by_address.get(address, 0) + requests
    unknown = sorted(set(by_address) - set(addresses.values()))
    rates = tuple(
        f"{host}={by_address.get(address, 0) / counted.seconds:.1f}"
        for host, address in sorted(addresses.items())
    )
    return rates, (
        f"requests answered by upstreams no app host has: {unknown}" if unknown else None
    )


def proxy_latency(counted: Tally) -> tuple[ProxyLatency, str | None]:
    """nginx's p50 and p99 of its own time and of the upstream's answer, over the
    tally's requests, and why a percentile is missing (None when none is)."""
    proxy_ms, upstream_ms = sorted(counted.proxy_ms), sorted(counted.upstream_ms)
    queue_ms, app_ms = sorted(counted.queue_ms), sorted(counted.app_ms)
    latency = ProxyLatency(
        requests=len(proxy_ms),
        proxy_p50_ms=percentile(proxy_ms, 50),
        proxy_p99_ms=percentile(proxy_ms, 99),
        upstream_p50_ms=percentile(upstream_ms, 50),
        upstream_p99_ms=percentile(upstream_ms, 99),
        app_queue_p50_ms=percentile(queue_ms, 50),
        app_queue_p99_ms=percentile(queue_ms, 99),
        app_p50_ms=percentile(app_ms, 50),
        app_p99_ms=percentile(app_ms, 99),
    )
    why_not = None
    if not proxy_ms:
        why_not = "the proxy log holds no request in the measured window"
    elif not upstream_ms:
        why_not = "no upstream answered a request of the measured window"
    return latency, why_not


# the parts of the app's answer that lead the per-second columns (labapp.timing)
_OWN_PARTS = ("queue", "app")


def by_second(lines, path_prefix: str = "") -> list[dict[str, object]]:
    """One row per second of the log that ended a request (``$time_local``), in
    time order: ``second`` (Unix), ``requests``, and ``<part>_p50_ms`` and
    ``<part>_p99_ms`` (exact, nearest rank) of ``nginx`` ($request_time),
    ``upstream`` (the last $upstream_response_time) and each Server-Timing
    part the lines hold, None where a second has none. ``/healthz`` left out;
    with ``path_prefix`` only the requests whose path starts with it."""
    seconds: dict[int, dict[str, list[float]]] = {}
    parts: list[str] = []
    for match, second in _requests(lines):
        if not match["path"].startswith(path_prefix):
            continue
        times = seconds.setdefault(int(second), {"nginx": [], "upstream": []})
        times["nginx"].append(_ms(match["rt"]))
        waited = _upstream_ms(match)
        if waited is not None:
            times["upstream"].append(waited)
        for name, ms in server_timing(match).items():
            times.setdefault(name, []).append(ms)
            if name not in parts:
                parts.append(name)
    ordered = ["nginx", "upstream"]
    ordered += [p for p in _OWN_PARTS if p in parts] + [p for p in parts if p not in _OWN_PARTS]
    rows = []
    for second in sorted(seconds):
        times = seconds[second]
        row: dict[str, object] = {"second": second, "requests": len(times["nginx"])}
        for part in ordered:
            values = sorted(times.get(part, ()))
            row[f"{part}_p50_ms"] = percentile(values, 50)
            row[f"{part}_p99_ms"] = percentile(values, 99)
        rows.append(row)
    return rows


def write_by_second(cell_dir: Path, path_prefix: str = "", out=None) -> int:
    """`by_second` of a cell's proxy log as CSV on `out` (stdout); the rows
    written. Raises FileNotFoundError for a cell without the log."""
    lines = read_lines(Path(cell_dir))
    if lines is None:
        raise FileNotFoundError(f"{Path(cell_dir) / DIRECTORY}/*.log.gz: no proxy log in the cell")
    rows = by_second(lines, path_prefix)
    header = list(rows[0]) if rows else ["second", "requests"]
    writer = csv.DictWriter(out or sys.stdout, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else _cell(v) for k, v in row.items()})
    return len(rows)


def _cell(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
