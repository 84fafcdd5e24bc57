"""The summary row of a cell, declared once.

Each field of `Row` is one column: of summary.csv (in field order), of
summary.json's rows (the same keys, in the same order) and, where the field
says `table=`, of the page's table. `column()` describes it:

    header   the heading of the page's table
    tooltip  what the number is, shown when hovering the heading
    unit     what it counts in (None: a name, a count or a ratio)
    digits   decimals kept, in every output (None: as measured)
    table    position in the page's table, which leads with the cell, its
             validity, flags and throughput and ends with the cell's
             parameters (None: only in the files)
    badge    for a flag: the word shown, in red, when it is raised ("ok" when
             it is not)
    badge_on the value that raises the flag (True, or for `valid`, False)
    result   whether the column is a figure of what was measured, which the
             page strikes through in an invalid cell (False: the cell's
             parameters, and what the validity rules read of the load
             generators and of the stop, which stay legible)

A list (`invalid_reasons`) is a JSON list in summary.json and its items
joined by "; " in summary.csv and on the page.

None anywhere means not measured: an empty CSV field, JSON null, "n/a".
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

_COLUMN = "column"


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    tooltip: str
    unit: str | None = None
    digits: int | None = None
    table: int | None = None
    badge: str | None = None
    badge_on: bool = True
    result: bool = True

    @property
    def title(self) -> str:
        """The tooltip with its unit, as the heading's title attribute."""
        return f"{self.tooltip} [{self.unit}]" if self.unit else self.tooltip


def column(
    header, tooltip, *, unit=None, digits=None, table=None, badge=None, badge_on=True, result=True
):
    """A Row field, described as a column (its name is the field's)."""
    description = {
        "header": header, "tooltip": tooltip, "unit": unit, "digits": digits,
        "table": table, "badge": badge, "badge_on": badge_on, "result": result,
    }  # fmt: skip
    return field(metadata={_COLUMN: description})


# the end of the headline percentiles' tooltips: where they come from without the log
_FALLBACK = (
    "without the log, from the HDR histograms (locust_latency.hlog) over their window; "
    "without either, Locust's, rounded to its buckets"
)
# the end of the nginx and upstream columns' tooltips
_NGINX = (
    " ($request_time in the proxy's access log: from its first byte read of the request "
    "to its last written of the answer, to the ms), exact (nearest rank) over the "
    "requests whose second lies whole inside the measured window, /healthz left out"
)
_UPSTREAM = (
    ", as nginx waited for it ($upstream_response_time in the proxy's access log, of "
    "the try that answered: the last; to the ms), exact (nearest rank) over the "
    "requests whose second lies whole inside the measured window that an upstream "
    "answered, /healthz left out"
)
# the end of the app's own columns' tooltips (its Server-Timing answer, logged by nginx)
_APP_SPLIT = (
    " (the app's Server-Timing answer in the proxy's access log, labapp.timing; to 0.1 ms), "
    "exact (nearest rank) over the requests of the nginx columns that have it (n/a: an app "
    "or a log from before it)"
)
_APP_QUEUE = (
    ": from nginx's send to the app's first look at the request, its wait in the server's "
    "backlog or for a free worker, thread or greenlet (with the network; on hosts with "
    "their own clocks, their offset)" + _APP_SPLIT
)
_APP_OWN = ": from its first look at the request to its answer's headers" + _APP_SPLIT
# the end of the HDR and Locust columns' tooltips
_HDR = (
    " from the HDR histograms of every request (locust_latency.hlog: one per second of "
    "completion, 3 significant digits, so within 0.1 %), over their seconds whole inside "
    "the request log's window (without the log, their own)"
)
_LOCUST = (
    ", Locust's own (locust_stats.csv): rounded to its buckets, over the run since its last reset"
)


@dataclass(frozen=True)
class Row:
    # what was measured
    cell: str = column(
        "cell", "the cell's directory in the run (links to Locust's report)", table=0
    )
    config: str = column(
        "configuration",
        "cell.json's config, else the server, with [db_mode] when the run has it in both modes",
        table=1,
    )
    server: str = column("server", "the `server` switch value")
    db_mode: str | None = column("db mode", "naive (a connection per request) or pool", table=73)
    endpoint: str = column("endpoint", "the endpoint under load", table=2)
    users: int = column(
        "users", "concurrent Locust users (closed loop, wait 0)", table=3, result=False
    )
    # whether the figures are results (report.model's validity rules); None: an
    # older summary.json that does not say
    valid: bool | None = column(
        "valid",
        "whether the cell's figures are results: false when any validity rule holds (a "
        "load generator above 90 % CPU or a Locust process above 0.9 of a core in any "
        "sample, or Locust's CPU warning; a worker lost; a request in flight at the stop "
        "older than the p99; efficiency above 1.02; no ceiling; users / req/s off the mean "
        "latency by more than 5 %, Locust's or hey's). An invalid cell's figures are struck "
        "through",
        table=4,
        badge="INVALID",
        badge_on=False,
    )
    invalid_reasons: tuple[str, ...] | None = column(
        "invalid because",
        "one short reason per validity rule the cell breaks; empty when it is valid",
        table=5,
    )
    # Locust: its request log (locust_requests.csv) where the cell has one, else the
    # Aggregated row of locust_stats.csv and its stats history (report.locust)
    requests: int | None = column(
        "requests",
        "requests in the measured run: Locust's Request Count (locust_stats.csv)",
        table=39,
    )
    failures: int | None = column(
        "failures",
        "failed requests in the measured run: Locust's Failure Count (locust_stats.csv)",
        table=40,
    )
    failure_ratio: float | None = column("fail ratio", "failures / requests", digits=4, table=41)
    rps: float | None = column(
        "req/s",
        "throughput, the headline figure. From the request log (locust_requests.csv) when "
        "the cell has one: the requests' work in its window / the window's length, each "
        "request counting the share of its time inside the window, which runs from all "
        "users running + A to the last completion - A, A = max(1 s, mean response time). "
        "Without one (or with less than 5 s in that window): Locust's completed requests "
        "per second over the steady window of its stats history (from the first second "
        "with all users running plus one mean latency to the end); Locust's own "
        "Requests/s when the history holds less than 5 s of it. The note says which",
        unit="requests/s",
        digits=2,
        table=8,
    )
    locust_rps_reported: float | None = column(
        "Locust req/s",
        "Locust's own Requests/s: the whole run, start-up transient included",
        unit="requests/s",
        digits=2,
        table=9,
    )
    # with more than one app host: which served how much (report.proxy)
    app_hosts_rps: tuple[str, ...] | None = column(
        "req/s per app host",
        "requests each app host answered per second of the measured window, from the "
        "proxy's access log (the last upstream nginx tried), to the second: host=req/s",
        table=10,
    )
    mean_ms: float | None = column(
        "mean ms",
        "mean latency of the request log's requests completed in its window; without "
        "the log, Locust's Average Response Time",
        unit="ms",
        digits=1,
        table=13,
    )
    p50_ms: float | None = column(
        "p50 ms",
        "median latency: exact (nearest rank) over the request log's window; " + _FALLBACK,
        unit="ms",
        table=14,
    )
    p90_ms: float | None = column(
        "p90 ms",
        "90th percentile latency: exact (nearest rank) over the request log's window; " + _FALLBACK,
        unit="ms",
    )
    p95_ms: float | None = column(
        "p95 ms",
        "95th percentile latency: exact (nearest rank) over the request log's window; " + _FALLBACK,
        unit="ms",
        table=15,
    )
    p99_ms: float | None = column(
        "p99 ms",
        "99th percentile latency: exact (nearest rank) over the request log's window; " + _FALLBACK,
        unit="ms",
        table=16,
    )
    p999_ms: float | None = column(
        "p99.9 ms",
        "99.9th percentile latency: exact (nearest rank) over the request log's window; "
        + _FALLBACK,
        unit="ms",
    )
    max_ms: float | None = column(
        "max ms",
        "slowest request completed in the request log's window; without the log, the HDR "
        "histograms' over their window; without either, Locust's Max Response Time",
        unit="ms",
        digits=1,
        table=17,
    )
    # the latency histograms (locust_latency.hlog, report.hdr)
    hdr_requests: int | None = column(
        "HDR requests",
        "requests in the HDR histograms' seconds whole inside the window (the request log's, "
        "else their own): fewer than the log's there by the edges' seconds; n/a: no "
        "locust_latency.hlog (an older run)",
        table=42,
    )
    hdr_p50_ms: float | None = column(
        "HDR p50 ms", "median latency" + _HDR, unit="ms", digits=3, table=18
    )
    hdr_p90_ms: float | None = column(
        "HDR p90 ms", "90th percentile latency" + _HDR, unit="ms", digits=3
    )
    hdr_p95_ms: float | None = column(
        "HDR p95 ms", "95th percentile latency" + _HDR, unit="ms", digits=3
    )
    hdr_p99_ms: float | None = column(
        "HDR p99 ms",
        "99th percentile latency" + _HDR + ". A note says when it lies further from the "
        "exact p99 than the histogram's precision and the edges' seconds allow",
        unit="ms",
        digits=3,
        table=19,
    )
    hdr_p999_ms: float | None = column(
        "HDR p99.9 ms", "99.9th percentile latency" + _HDR, unit="ms", digits=3
    )
    hdr_max_ms: float | None = column(
        "HDR max ms", "slowest request" + _HDR, unit="ms", digits=3, table=20
    )
    # Locust's own, for comparison: the Aggregated row of locust_stats.csv
    locust_p50_ms: float | None = column(
        "Locust p50 ms", "median latency" + _LOCUST, unit="ms", table=21
    )
    locust_p90_ms: float | None = column(
        "Locust p90 ms", "90th percentile latency" + _LOCUST, unit="ms"
    )
    locust_p95_ms: float | None = column(
        "Locust p95 ms", "95th percentile latency" + _LOCUST, unit="ms"
    )
    locust_p99_ms: float | None = column(
        "Locust p99 ms", "99th percentile latency" + _LOCUST, unit="ms", table=22
    )
    locust_p999_ms: float | None = column(
        "Locust p99.9 ms", "99.9th percentile latency" + _LOCUST, unit="ms"
    )
    locust_max_ms: float | None = column(
        "Locust max ms", "Max Response Time" + _LOCUST, unit="ms", digits=1, table=23
    )
    ideal_latency_ms: float | None = column(
        "ideal ms",
        "closed-loop latency of a perfect server, delay-bound endpoints: "
        "delay * max(1, users / min(slots, pool)); delay when the server has no bound",
        unit="ms",
        digits=1,
        table=24,
    )
    identity_ratio: float | None = column(
        "identity",
        "(users / req/s) / mean latency, both from the same source: 1.0 in a closed loop "
        "whose measurement sees all of each user's time",
        digits=3,
        table=25,
    )
    # the requests Locust killed at the stop (locust_requests.csv's in-flight rows)
    unfinished_requests: int | None = column(
        "in flight at stop",
        "requests still waiting when the run stopped, which Locust kills uncounted (the "
        "request log's in-flight rows; n/a: no request log, or an older one without them)",
        table=26,
        result=False,
    )
    unfinished_oldest_ms: float | None = column(
        "oldest in flight ms",
        "how long the oldest request in flight at the stop had waited by then",
        unit="ms",
        digits=1,
        table=27,
        result=False,
    )
    cutoff_requests: int | None = column(
        "cut off",
        "requests in flight at the stop that had already waited longer than the p99: "
        "latency the percentiles do not hold (any makes the cell invalid)",
        table=28,
        result=False,
    )
    # hey, the second client of the I/O-bound cells (hey.csv, hey.json)
    hey_requests: int | None = column(
        "hey requests", "hey's requests completed in its measured window", table=43
    )
    hey_failures: int | None = column(
        "hey non-2xx",
        "of hey's requests in the window, those with a status outside 2xx "
        "(requests that failed below HTTP are not in hey.csv: see hey identity)",
        table=44,
    )
    hey_rps: float | None = column(
        "hey req/s",
        "hey's requests' work in its window / the window's duration, each request "
        "counting the share of its time inside the window",
        unit="requests/s",
        digits=2,
        table=11,
    )
    hey_mean_ms: float | None = column(
        "hey mean ms", "hey's mean latency over the window", unit="ms", digits=1, table=29
    )
    hey_p50_ms: float | None = column(
        "hey p50 ms", "hey's median latency, exact (nearest rank)", unit="ms", digits=1, table=30
    )
    hey_p90_ms: float | None = column(
        "hey p90 ms", "hey's 90th percentile latency, exact (nearest rank)", unit="ms", digits=1
    )
    hey_p99_ms: float | None = column(
        "hey p99 ms",
        "hey's 99th percentile latency, exact (nearest rank)",
        unit="ms",
        digits=1,
        table=31,
    )
    hey_p999_ms: float | None = column(
        "hey p99.9 ms",
        "hey's 99.9th percentile latency, exact (nearest rank)",
        unit="ms",
        digits=1,
    )
    hey_identity_ratio: float | None = column(
        "hey identity",
        "(hey connections / hey req/s) / hey mean latency: below 1.0 is time hey.csv does "
        "not hold, such as requests that failed below HTTP",
        digits=3,
        table=32,
    )
    clients_agree: bool | None = column(
        "clients agree",
        "|req/s - hey req/s| / hey req/s at most 0.05 (n/a: no hey run)",
        table=12,
    )
    # nginx's own timing of the same requests, from the proxy's access log (report.proxy)
    proxy_requests: int | None = column(
        "nginx requests",
        "requests in the proxy's access log whose second lies whole inside the measured "
        "window (/healthz left out): what the nginx and upstream percentiles are of "
        "(n/a: no proxy log, an older run)",
        table=45,
    )
    proxy_p50_ms: float | None = column(
        "nginx p50 ms", "median of nginx's own time for a request" + _NGINX, unit="ms", table=33
    )
    proxy_p99_ms: float | None = column(
        "nginx p99 ms",
        "99th percentile of nginx's own time for a request" + _NGINX + ". Beside the "
        "clients' p99: the gap is time spent in the client or the network",
        unit="ms",
        table=34,
    )
    upstream_p50_ms: float | None = column(
        "upstream p50 ms", "median of the app's answer time" + _UPSTREAM, unit="ms", table=35
    )
    upstream_p99_ms: float | None = column(
        "upstream p99 ms",
        "99th percentile of the app's answer time" + _UPSTREAM + ". Beside nginx's p99: "
        "the gap is time spent in nginx",
        unit="ms",
        table=36,
    )
    # the app's own split of the upstream's time (Server-Timing, labapp.timing)
    app_queue_p50_ms: float | None = column(
        "app queue p50 ms", "median of the app's queue" + _APP_QUEUE, unit="ms"
    )
    app_queue_p99_ms: float | None = column(
        "app queue p99 ms",
        "99th percentile of the app's queue" + _APP_QUEUE + ". Beside the upstream's p99: a "
        "tail made of waiting for a worker, not of the work",
        unit="ms",
        table=37,
    )
    app_p50_ms: float | None = column(
        "app p50 ms", "median of the app's own time for a request" + _APP_OWN, unit="ms"
    )
    app_p99_ms: float | None = column(
        "app p99 ms",
        "99th percentile of the app's own time for a request" + _APP_OWN + ". Beside the "
        "app queue's: the tail is the work itself (the view and what it calls)",
        unit="ms",
        table=38,
    )
    # the ceiling
    ceiling_model: str = column(
        "ceiling model",
        "littles_law for delay-bound endpoints, cpu for the others",
        table=46,
    )
    ceiling_rps: float | None = column(
        "ceiling req/s",
        "the most the configuration could serve: min(users, slots, pool) / delay "
        "(users / delay on a server with no bound), or app CPUs / in-process CPU-seconds "
        "per request (the app alone, the same for every server)",
        unit="requests/s",
        digits=2,
        table=47,
    )
    efficiency: float | None = column("efficiency", "req/s / ceiling", digits=3, table=48)
    cpu_s_per_request: float | None = column(
        "CPU s/req",
        "the server's CPU-seconds per request: app CPU cores / req/s, from the unit's CPU "
        "counter (the app and the server under test together)",
        unit="CPU-seconds",
        digits=6,
        table=49,
    )
    inprocess_cpu_s_per_request: float | None = column(
        "in-process CPU s/req",
        "CPU-seconds a request costs the app alone: its WSGI callable called in-process on "
        "the app host, no server, no socket (labapp.cost, run before the cell; the app "
        "hosts as one). The denominator of a CPU-bound cell's ceiling",
        unit="CPU-seconds",
        digits=7,
        table=50,
    )
    server_overhead_us: float | None = column(
        "server overhead µs",
        "what the server itself costs a request: (CPU s/req - in-process CPU s/req) x 1e6",
        unit="CPU-microseconds",
        digits=1,
        table=51,
    )
    # the app hosts' samples
    app_cpu_cores: float | None = column(
        "app CPU cores",
        "CPUs the app used, summed over the app hosts",
        unit="CPUs",
        digits=3,
        table=52,
    )
    app_cpu_source: str | None = column(
        "app CPU from",
        "unit: the app unit's CPU counter; host: the app hosts' whole CPU",
        table=53,
    )
    app_cpus: float | None = column(
        "app CPUs",
        "CPUs the app may use, summed over the app hosts",
        unit="CPUs",
        table=54,
        result=False,
    )
    throttled_periods: int | None = column(
        "throttled periods", "increase of the unit's nr_throttled over the window", table=55
    )
    throttled_ratio: float | None = column(
        "throttled ratio", "throttled periods / CFS periods", digits=3, table=56
    )
    throttled_s: float | None = column(
        "throttled s",
        "time the unit was throttled over the window",
        unit="s",
        digits=3,
        table=57,
    )
    # the db and load-generator hosts' samples
    peak_db_connections: int | None = column(
        "peak DB conns", "most client backends in pg_stat_activity over the window", table=58
    )
    # a tasks cell: the background tasks and the broker's queue (report.tasks)
    tasks_done: int | None = column(
        "tasks done", "tasks created in the window and done when the cell ended", table=59
    )
    tasks_failed: int | None = column(
        "tasks failed", "tasks created in the window that failed (status failed)", table=60
    )
    tasks_unfinished: int | None = column(
        "tasks unfinished",
        "tasks created in the window still queued or running when the cell ended: their "
        "latency is not in the task percentiles",
        table=61,
    )
    task_p50_ms: float | None = column(
        "task p50 ms",
        "median time from POST to done of the done tasks (the queue's wait included)",
        unit="ms",
        digits=1,
        table=62,
    )
    task_p99_ms: float | None = column(
        "task p99 ms", "p99 of the time from POST to done of the done tasks", unit="ms",
        digits=1, table=63,
    )  # fmt: skip
    broker_queue_max: int | None = column(
        "queue max",
        "most task messages waiting in the broker's queue in a 1-s sample of the window",
        table=64,
    )
    broker_queue_mean: float | None = column(
        "queue mean",
        "mean of the broker queue's samples in the window",
        digits=1,
        table=65,
    )
    loadgen_cpu_peak_pct: float | None = column(
        "loadgen CPU peak %",
        "busiest sample of the busiest load generator",
        unit="% of what the host may use",
        digits=1,
        table=66,
        result=False,
    )
    loadgen_cpu_mean_pct: float | None = column(
        "loadgen CPU mean %",
        "mean over the window of the busiest load generator",
        unit="% of what the host may use",
        digits=1,
        table=67,
        result=False,
    )
    loadgen_process_cores: float | None = column(
        "busiest Locust proc cores",
        "mean CPU of the busiest Locust process (one process cannot use more than 1)",
        unit="CPUs",
        digits=3,
        table=68,
        result=False,
    )
    loadgen_process_peak_cores: float | None = column(
        "busiest Locust proc peak cores",
        "busiest sample of the busiest Locust process",
        unit="CPUs",
        digits=3,
        table=69,
        result=False,
    )
    machine_busy_cores: float | None = column(
        "machine busy CPUs",
        "CPUs busy by the kernel's /proc/stat, mean over the window, on the host busiest for "
        "its CPUs: in the lab's containers the whole machine's (load generators, proxy, "
        "database and app together), on VMs or real hosts that host's own",
        unit="CPUs",
        digits=2,
        table=70,
        result=False,
    )
    machine_cpus: int | None = column(
        "machine CPUs",
        "CPUs that host's /proc/stat lists (in the lab's containers the machine's)",
        table=71,
        result=False,
    )
    locust_cpu_warning: bool | None = column(
        "Locust CPU warning",
        "Locust's own warning of a process above 90 % CPU, in locust.log (the master's, "
        "which also reports a worker's; n/a: the cell has no locust.log)",
        table=72,
        result=False,
    )
    generator_saturated: bool | None = column(
        "generator",
        "a load generator above 90 % of its CPU in any sample of the window, a Locust "
        "process above 0.9 of a core in any sample, or Locust's CPU warning in locust.log "
        "(n/a: no load-generator samples in the window)",
        table=6,
        badge="SATURATED",
    )
    workers_lost: int = column(
        "workers lost",
        "Locust workers lost mid-run: the figures cover only the rest of the run",
        table=7,
        result=False,
    )
    # the cell's parameters
    delay_s: float | None = column(
        "delay s", "?delay= of /slow and /sleep", unit="s", table=74, result=False
    )
    server_slots: int | None = column(
        "server slots",
        "requests all app hosts can hold at once (None: no bound)",
        table=75,
        result=False,
    )
    pool_size: int | None = column(
        "pool size", "connections the app's pools can hold in total", table=76, result=False
    )
    top_failure: str | None = column(
        "top failure", "the most frequent failure: METHOD name: error", table=77
    )
    note: str | None = column("note", "why a number is missing or partial", table=78)

    def __post_init__(self):
        # Rounded here, once, so the files and the page show the same figure.
        # (A frozen dataclass is set through object.__setattr__ in __post_init__.)
        if self.app_hosts_rps is not None:
            object.__setattr__(self, "app_hosts_rps", tuple(self.app_hosts_rps))
        if self.invalid_reasons is not None:
            # summary.json gives a list
            object.__setattr__(self, "invalid_reasons", tuple(self.invalid_reasons))
        for col in COLUMNS:
            value = getattr(self, col.name)
            if col.digits is not None and value is not None:
                object.__setattr__(self, col.name, round(value, col.digits))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        """A row of summary.json; a column the document lacks (an older report) is None."""
        return cls(**{col.name: data.get(col.name) for col in COLUMNS})


COLUMNS = tuple(Column(name=f.name, **f.metadata[_COLUMN]) for f in fields(Row))
TABLE_COLUMNS = tuple(sorted((c for c in COLUMNS if c.table is not None), key=lambda c: c.table))


def write_csv(rows: list[Row], path: Path) -> None:
    """summary.csv: a header of the column names, then one line per row; empty =
    None, a list's items joined by "; "."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(c.name for c in COLUMNS)
        for row in rows:
            writer.writerow(_csv_field(value) for value in row.as_dict().values())


def _csv_field(value):
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "; ".join(value)
    return value


def write_json(
    run: str,
    environment: dict | None,
    rows: list[Row],
    path: Path,
    configurations: list[dict] | None = None,
) -> None:
    """summary.json: {"run", "environment", "cells": [the rows, keyed by column name]},
    and "configurations" (report.repeats.as_dict of each) when they are given: a run
    with repeats. A run without has no such key."""
    document = {"run": run, "environment": environment, "cells": [r.as_dict() for r in rows]}
    if configurations is not None:
        document["configurations"] = configurations
    path.write_text(json.dumps(document, indent=2) + "\n")
