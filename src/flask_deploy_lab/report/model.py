"""A run directory read into summary rows: each cell's numbers against its
ceiling, whether they are results at all (the validity rules, VALIDITY_RULES),
and the errors of a run that breaks the layout (see the package's docstring
for all three)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from flask_deploy_lab import catalogue
from flask_deploy_lab.report import hdr, hey, locust, proxy, tasks
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.samples import (
    MIN_SAMPLES,
    HostSamples,
    counter_increase,
    counter_rate,
    in_window,
    read_samples,
)
from flask_deploy_lab.report.summary import Row
from flask_deploy_lab.targets import IDENTITY_TOLERANCE, ROUNDING_SLACK, clients_agree

# A load generator above either in any sample is measuring itself rather than the server.
SATURATED_CPU_PERCENT = 90.0
SATURATED_PROCESS_CORES = 0.9  # one Locust process cannot use more than one core
# the share of its CPUs a host's kernel found busy (mean over the window) from
# which the cell's note says the servers waited for CPUs they shared
BUSY_MACHINE_SHARE = 0.9
# Throughput further above its ceiling than this says the ceiling is wrong.
MAX_EFFICIENCY = 1.02

REQUIRED_CELL_KEYS = ("server", "endpoint", "users")

# What the page says about each ceiling model (Row.ceiling_model).
CEILING_MODELS = {
    "littles_law": "Delay-bound: ceiling = min(users, server slots, pool size when the "
    "request holds a pooled connection) / delay (Little's law); users / delay on a server "
    "that holds any number of requests.",
    "cpu": "CPU-bound: ceiling = app CPUs / CPU-seconds per request of the app alone, from the "
    "app called in-process on the app host (no server, no socket; the same code, database "
    "and limits). Each server's own CPU-seconds per request, from the app unit's cgroup "
    "accounting, and its overhead over the in-process cost are in the table.",
}


# --------------------------------------------------------------------------- validity
# A cell is valid when none of these rules holds: its figures are then results.
# Each rule reads the row's own (rounded) columns, so a reader of summary.json
# can check it, and flask_deploy_lab.targets takes the verdict from here.


def _saturated_generator(row: Row) -> list[str]:
    reasons = []
    if row.loadgen_cpu_peak_pct is not None and row.loadgen_cpu_peak_pct > SATURATED_CPU_PERCENT:
        reasons.append(
            f"load generator at {row.loadgen_cpu_peak_pct:g} % CPU in a sample "
            f"(above {SATURATED_CPU_PERCENT:g} %)"
        )
    peak_cores = row.loadgen_process_peak_cores
    if peak_cores is not None and peak_cores > SATURATED_PROCESS_CORES:
        reasons.append(
            f"a Locust process at {peak_cores:g} cores in a sample "
            f"(above {SATURATED_PROCESS_CORES:g})"
        )
    if row.locust_cpu_warning:
        reasons.append(f"Locust's CPU warning in {locust.LOG}")
    if not reasons and row.generator_saturated:
        # a row of an older summary.json, which says no more than that
        reasons.append("load generator saturated")
    return reasons


# In-flight requests older than the p99 at the stop, as a share of the requests
# measured, above which the percentiles understate the tail (rule cut_off).
CUT_OFF_SHARE = 0.01


def _worker_lost(row: Row) -> list[str]:
    return [f"{row.workers_lost} Locust worker(s) lost mid-run"] if row.workers_lost else []


def _cut_off(row: Row) -> list[str]:
    # a closed loop always stops with a request per user in flight, and one of
    # them may have waited past the p99 by chance (the slowest 1 % do); more
    # than CUT_OFF_SHARE of the requests measured would move the p99 itself
    if not row.cutoff_requests or row.cutoff_requests <= CUT_OFF_SHARE * (row.requests or 0):
        return []
    return [
        f"{row.cutoff_requests} request(s) in flight at the stop had waited longer than "
        f"p99 {row.p99_ms:g} ms (oldest {row.unfinished_oldest_ms:g} ms), more than "
        f"{CUT_OFF_SHARE:.0%} of the {row.requests or 0} measured"
    ]


def _efficiency_above_one(row: Row) -> list[str]:
    if row.efficiency is None or row.efficiency <= MAX_EFFICIENCY + ROUNDING_SLACK:
        return []
    return [f"efficiency {row.efficiency:g} above {MAX_EFFICIENCY:g}"]


def _no_ceiling(row: Row) -> list[str]:
    return ["no ceiling"] if row.ceiling_rps is None else []


def _identity_broken(row: Row) -> list[str]:
    reasons = []
    ratios = (("identity", row.identity_ratio), ("hey identity", row.hey_identity_ratio))
    for label, ratio in ratios:
        if ratio is not None and abs(ratio - 1) > IDENTITY_TOLERANCE + ROUNDING_SLACK:
            reasons.append(f"{label} {ratio:g} off 1 by more than {IDENTITY_TOLERANCE * 100:g} %")
    return reasons


@dataclass(frozen=True)
class ValidityRule:
    """A reason a cell's figures are not results: what the page calls it, what
    it means, and the function that gives its reasons for a row (none: the
    rule does not hold)."""

    name: str
    title: str
    meaning: str
    reasons: Callable[[Row], list[str]]

    def cells(self, rows: list[Row]) -> list[str]:
        """The cells the rule holds for."""
        return [row.cell for row in rows if self.reasons(row)]


VALIDITY_RULES = (
    ValidityRule(
        "generator_saturated",
        "Saturated load generator",
        f"a load generator above {SATURATED_CPU_PERCENT:g} % CPU, or a Locust process above "
        f"{SATURATED_PROCESS_CORES:g} of a core, in a sample of the window (or Locust's own "
        "CPU warning): these numbers measure the generator, not the server.",
        _saturated_generator,
    ),
    ValidityRule(
        "workers_lost",
        "Load generator worker lost mid-run",
        "Locust restarted its statistics then, so these figures cover only the rest of the run.",
        _worker_lost,
    ),
    ValidityRule(
        "cut_off",
        "Latency cut off by the end of the run",
        "requests still in flight when the run stopped had already waited longer than the "
        f"p99, more than {CUT_OFF_SHARE:.0%} of the requests measured: Locust counted none of "
        "them, so the percentiles understate the tail.",
        _cut_off,
    ),
    ValidityRule(
        "efficiency_above_one",
        "Throughput above the ceiling",
        f"efficiency above {MAX_EFFICIENCY:g}: the ceiling is wrong, so the efficiency says "
        "nothing.",
        _efficiency_above_one,
    ),
    ValidityRule(
        "no_ceiling",
        "No ceiling",
        "nothing to measure the throughput against (the note says what is missing).",
        _no_ceiling,
    ),
    ValidityRule(
        "identity_broken",
        "Closed-loop identity broken",
        f"users / throughput is off the mean latency by more than {IDENTITY_TOLERANCE * 100:g} "
        "% (Locust's or hey's): time the measurement does not see.",
        _identity_broken,
    ),
)


def invalid_reasons(row: Row) -> list[str]:
    """Every reason the row's figures are not results, rule by rule; empty when valid."""
    return [reason for rule in VALIDITY_RULES for reason in rule.reasons(row)]


def with_validity(row: Row) -> Row:
    """The row with its valid and invalid_reasons columns worked out from the others."""
    reasons = invalid_reasons(row)
    return dataclasses.replace(row, valid=not reasons, invalid_reasons=tuple(reasons))


@dataclass(frozen=True)
class Cell:
    """A cell's cell.json (the keys the report uses), with its directory and samples."""

    directory: Path
    server: str
    endpoint: str
    users: int
    config: str | None = None
    db_mode: str | None = None
    delay_s: float | None = None
    server_slots: int | None = None
    pool_size: int | None = None
    app_cpus: float | None = None
    inprocess_cpu_s_per_request: float | None = None
    app_hosts: list[str] = field(default_factory=list)
    db_hosts: list[str] = field(default_factory=list)
    loadgen_hosts: list[str] = field(default_factory=list)
    workers_lost: list[str] = field(default_factory=list)
    samples: dict[str, HostSamples] = field(default_factory=dict)

    @classmethod
    def load(cls, cell_dir: Path) -> Cell:
        """The cell in cell_dir; ReportError when its cell.json breaks the layout."""
        path = cell_dir / "cell.json"
        data = read_json(path)
        if not isinstance(data, dict):
            raise ReportError(f"{path}: expected a JSON object")
        missing = [k for k in REQUIRED_CELL_KEYS if data.get(k) in (None, "")]
        if missing:
            raise ReportError(f"{path}: missing {', '.join(missing)}")
        if not isinstance(data["users"], int) or data["users"] < 1:
            raise ReportError(f"{path}: users must be a positive integer")
        # cell.json holds more (spawn_rate, duration_s, ...) than the report uses;
        # a key that is null reads as absent (an empty host list, no config)
        optional = {f.name for f in fields(cls)} - {"directory", "samples", *REQUIRED_CELL_KEYS}
        return cls(
            directory=cell_dir,
            server=data["server"],
            endpoint=data["endpoint"],
            users=data["users"],
            samples=read_samples(cell_dir),
            **{k: data[k] for k in optional if data.get(k) is not None},
        )

    @property
    def name(self) -> str:
        return self.directory.name


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc


# --------------------------------------------------------------------------- ceilings


def _endpoint(name: str) -> catalogue.Endpoint | None:
    # an endpoint the catalogue does not know is reported on as CPU-bound
    return catalogue.load().endpoints.get(name)


def unbounded_server(server: str) -> bool:
    """Whether the server holds any number of requests at once (the catalogue's
    per_process: unbounded, a thread per request). For app hosts running
    different servers ("a+b"), whether any of them does; a server the
    catalogue does not know is not."""
    servers = catalogue.load().servers
    return any(servers[n].per_process == "unbounded" for n in server.split("+") if n in servers)


def concurrency_limit(cell) -> float | None:
    """The most requests the configuration serves at once, users aside:
    min(server_slots, pool_size when it bounds the endpoint); math.inf when
    nothing bounds them (a server without a bound, no pool in the way); None
    when unknown (a bounded server without server_slots).

    The pool bounds it only when the endpoint holds a pooled connection for the
    whole delay (the catalogue's holds_db_connection) and db_mode is pool.
    `cell` is a Cell or a Row: anything with server, endpoint, server_slots,
    pool_size and db_mode.
    """
    limits = []
    if cell.server_slots:
        limits.append(cell.server_slots)
    elif not unbounded_server(cell.server):
        return None
    endpoint = _endpoint(cell.endpoint)
    holds_connection = endpoint is not None and endpoint.holds_db_connection
    if cell.db_mode == "pool" and holds_connection and cell.pool_size:
        limits.append(cell.pool_size)
    return min(limits, default=math.inf)


def littles_law_ceiling(cell) -> float | None:
    """min(users, concurrency_limit) / delay for delay-bound endpoints; None if unknown.

    A server without a bound (server_slots null, the catalogue's per_process
    unbounded) gives users / delay, or min(users, pool) / delay where the pool
    bounds the endpoint.
    """
    if not cell.delay_s or cell.delay_s <= 0:
        return None
    limit = concurrency_limit(cell)
    if limit is None:
        return None
    return min(cell.users, limit) / cell.delay_s


def ideal_latency_s(cell) -> float | None:
    """The latency a perfect server gives the closed loop of a delay-bound cell:
    delay * max(1, users / concurrency_limit) -- the delay, plus the wait of
    the users beyond the limit; the delay alone when nothing bounds it. None if
    unknown."""
    if not cell.delay_s or cell.delay_s <= 0:
        return None
    limit = concurrency_limit(cell)
    if limit is None:
        return None
    return cell.delay_s * max(1.0, cell.users / limit)


def cpu_ceiling(app_cpus: float | None, inprocess_cpu_s_per_request: float | None) -> float | None:
    """app_cpus / the CPU-seconds a request costs the app called in-process; None
    if either is unknown.

    The cost is the app's alone, measured on the app host with no server
    (labapp.cost), so the ceiling is the same for every server: a server that
    spends more CPU on a request serves fewer and scores lower. (Never the
    server's own CPU-seconds per request, app CPU cores / req/s: then
    req/s / ceiling = app CPU cores / app_cpus, the app's CPU utilisation,
    whatever it served.)
    """
    if not app_cpus or not inprocess_cpu_s_per_request or inprocess_cpu_s_per_request <= 0:
        return None
    return app_cpus / inprocess_cpu_s_per_request


def server_overhead_us(
    cpu_s_per_request: float | None, inprocess_cpu_s_per_request: float | None
) -> float | None:
    """What the server itself costs a request, in CPU-microseconds: (the server's
    CPU-seconds per request, from the unit's cgroup accounting, - the app's
    in-process cost) x 1e6. None if either is unknown; below zero only within
    the noise of the two measurements."""
    if cpu_s_per_request is None or inprocess_cpu_s_per_request is None:
        return None
    return (cpu_s_per_request - inprocess_cpu_s_per_request) * 1e6


# --------------------------------------------------------------------------- one cell


def _mean(values):
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Measured:
    """A cell's throughput and latencies, from whichever source the row uses."""

    rps: float | None
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None


class _CellReader:
    """Works out one cell's row, collecting notes on what is missing as it goes
    (the note column lists them in that order)."""

    def __init__(self, cell: Cell, mixed_db_modes: bool):
        self.cell = cell
        self.mixed_db_modes = mixed_db_modes
        self.notes: list[str] = []
        self.history = locust.read_history(cell.directory)
        self.window = locust.measured_window(self.history, cell.users)

    def hosts(self, role: str, column: str) -> list[HostSamples]:
        """The samples of the role's hosts inside the measured window.

        cell.json names the hosts; without it, any host whose samples carry the
        column. A host with fewer than MIN_SAMPLES rows in the window (or a cell
        without a window) keeps none, and the note says so: no figure of it comes
        from outside the measured run.
        """
        names = getattr(self.cell, f"{role}_hosts")
        samples = self.cell.samples
        if names:
            chosen = [samples[h] for h in names if h in samples]
            missing = [h for h in names if h not in samples]
            if missing:
                self.notes.append(f"no samples from {role} host {', '.join(missing)}")
        else:
            chosen = [s for s in samples.values() if s.has(column)]
        inside = [in_window(s, self.window) for s in chosen]
        few = [s.host for s in inside if len(s.rows) < MIN_SAMPLES]
        if few and self.window is None:
            self.notes.append(
                f"no measured window ({locust.HISTORY} has no row): no samples used from "
                f"{role} host {', '.join(few)}"
            )
        elif few:
            self.notes.append(
                f"fewer than two samples in the window from {role} host {', '.join(few)}"
            )
        return [s if len(s.rows) >= MIN_SAMPLES else HostSamples(s.host, []) for s in inside]

    def row(self) -> Row:
        cell = self.cell
        stats = locust.read_stats(cell.directory)
        if stats is None:
            self.notes.append(f"no Aggregated row in {locust.STATS}")
            stats = locust.Stats()
        measured, request_log, histograms = self.measured(stats)
        rps = measured.rps
        hey_result = hey.read_hey(cell.directory)

        app = self.hosts("app", "unit_cpu_usage_usec")
        app_cpu_cores, app_cpu_source = self.app_cpu(app)
        throttled_periods, throttled_ratio, throttled_s = self.throttling(app)

        cpu_s_per_request = None
        if app_cpu_source == "unit" and rps:
            cpu_s_per_request = app_cpu_cores / rps
        endpoint = _endpoint(cell.endpoint)
        if endpoint is not None and endpoint.delay_bound:
            ceiling_model, ceiling = "littles_law", littles_law_ceiling(cell)
            ideal_s = ideal_latency_s(cell)
            if ceiling is None:
                self.notes.append("no ceiling: delay_s or server_slots missing")
        else:
            ceiling_model, ideal_s = "cpu", None
            ceiling = cpu_ceiling(cell.app_cpus, cell.inprocess_cpu_s_per_request)
            if ceiling is None:
                self.notes.append(self.why_no_cpu_ceiling())
            if cpu_s_per_request is None:
                why = "no requests served"
                if app_cpu_source != "unit":
                    why = "no cgroup CPU accounting for the app unit"
                self.notes.append(f"no CPU-seconds per request of the server: {why}")

        db_points = [
            v for s in self.hosts("db", "pg_connections") for v in s.values("pg_connections")
        ]
        generator = self.generator_load()
        machine_busy, machine_cpus = self.machine_load()
        cpu_warning = locust.read_cpu_warning(cell.directory)
        in_flight = self.in_flight(request_log, measured.p99_ms)

        from_proxy = self.proxy_figures()
        latency = from_proxy.latency

        task_figures = self.task_figures()
        queue = [
            v
            for s in self.cell.samples.values()
            if s.has("broker_queued")
            for v in in_window(s, self.window).values("broker_queued")
        ]

        requests, failures = stats.requests, stats.failures
        row = Row(
            cell=cell.name,
            config=self.config(),
            server=cell.server,
            db_mode=cell.db_mode,
            endpoint=cell.endpoint,
            users=cell.users,
            valid=None,
            invalid_reasons=None,
            requests=requests,
            failures=failures,
            failure_ratio=failures / requests if requests and failures is not None else None,
            rps=rps,
            app_hosts_rps=from_proxy.app_hosts_rps,
            locust_rps_reported=stats.rps,
            mean_ms=measured.mean_ms,
            p50_ms=measured.p50_ms,
            p90_ms=measured.p90_ms,
            p95_ms=measured.p95_ms,
            p99_ms=measured.p99_ms,
            p999_ms=measured.p999_ms,
            max_ms=measured.max_ms,
            hdr_requests=histograms.requests if histograms else None,
            hdr_p50_ms=histograms.p50_ms if histograms else None,
            hdr_p90_ms=histograms.p90_ms if histograms else None,
            hdr_p95_ms=histograms.p95_ms if histograms else None,
            hdr_p99_ms=histograms.p99_ms if histograms else None,
            hdr_p999_ms=histograms.p999_ms if histograms else None,
            hdr_max_ms=histograms.max_ms if histograms else None,
            locust_p50_ms=stats.p50_ms,
            locust_p90_ms=stats.p90_ms,
            locust_p95_ms=stats.p95_ms,
            locust_p99_ms=stats.p99_ms,
            locust_p999_ms=stats.p999_ms,
            locust_max_ms=stats.max_ms,
            ideal_latency_ms=ideal_s * 1000 if ideal_s is not None else None,
            identity_ratio=identity_ratio(cell.users, rps, measured.mean_ms),
            unfinished_requests=in_flight.in_flight if in_flight else None,
            unfinished_oldest_ms=in_flight.oldest_ms if in_flight else None,
            cutoff_requests=in_flight.cut_off if in_flight else None,
            hey_requests=hey_result.requests if hey_result else None,
            hey_failures=hey_result.non_2xx if hey_result else None,
            hey_rps=hey_result.rps if hey_result else None,
            hey_mean_ms=hey_result.mean_ms if hey_result else None,
            hey_p50_ms=hey_result.p50_ms if hey_result else None,
            hey_p90_ms=hey_result.p90_ms if hey_result else None,
            hey_p99_ms=hey_result.p99_ms if hey_result else None,
            hey_p999_ms=hey_result.p999_ms if hey_result else None,
            hey_identity_ratio=hey_result.identity_ratio if hey_result else None,
            clients_agree=clients_agree(rps, hey_result.rps if hey_result else None),
            proxy_requests=latency.requests if latency else None,
            proxy_p50_ms=latency.proxy_p50_ms if latency else None,
            proxy_p99_ms=latency.proxy_p99_ms if latency else None,
            upstream_p50_ms=latency.upstream_p50_ms if latency else None,
            upstream_p99_ms=latency.upstream_p99_ms if latency else None,
            app_queue_p50_ms=latency.app_queue_p50_ms if latency else None,
            app_queue_p99_ms=latency.app_queue_p99_ms if latency else None,
            app_p50_ms=latency.app_p50_ms if latency else None,
            app_p99_ms=latency.app_p99_ms if latency else None,
            ceiling_model=ceiling_model,
            ceiling_rps=ceiling,
            efficiency=rps / ceiling if ceiling and rps is not None else None,
            cpu_s_per_request=cpu_s_per_request,
            inprocess_cpu_s_per_request=cell.inprocess_cpu_s_per_request,
            server_overhead_us=server_overhead_us(
                cpu_s_per_request, cell.inprocess_cpu_s_per_request
            ),
            app_cpu_cores=app_cpu_cores,
            app_cpu_source=app_cpu_source,
            app_cpus=cell.app_cpus,
            throttled_periods=throttled_periods,
            throttled_ratio=throttled_ratio,
            throttled_s=throttled_s,
            peak_db_connections=max(db_points) if db_points else None,
            tasks_done=task_figures.done if task_figures else None,
            tasks_failed=task_figures.failed if task_figures else None,
            tasks_unfinished=task_figures.unfinished if task_figures else None,
            task_p50_ms=task_figures.p50_ms if task_figures else None,
            task_p99_ms=task_figures.p99_ms if task_figures else None,
            broker_queue_max=int(max(queue)) if queue else None,
            broker_queue_mean=sum(queue) / len(queue) if queue else None,
            loadgen_cpu_peak_pct=generator.peak_pct,
            loadgen_cpu_mean_pct=generator.mean_pct,
            loadgen_process_cores=generator.process_mean_cores,
            loadgen_process_peak_cores=generator.process_peak_cores,
            machine_busy_cores=machine_busy,
            machine_cpus=machine_cpus,
            locust_cpu_warning=cpu_warning,
            generator_saturated=None,
            workers_lost=len(cell.workers_lost),
            delay_s=cell.delay_s,
            server_slots=cell.server_slots,
            pool_size=cell.pool_size,
            top_failure=locust.read_top_failure(cell.directory),
            note="; ".join(self.notes) or None,
        )
        # saturated by any of the first rule's signs; unknown only with neither
        # samples nor the warning
        saturated = bool(_saturated_generator(row)) or (False if generator.sampled else None)
        return with_validity(dataclasses.replace(row, generator_saturated=saturated))

    def proxy_figures(self) -> proxy.ProxyFigures:
        """The proxy log's req/s per app host and nginx's latencies (report.proxy),
        noting why either is missing: once when both miss for the same reason."""
        figures = proxy.proxy_figures(self.cell.directory, self.window, self.app_addresses())
        hosts_why, latency_why = figures.app_hosts_why_not, figures.latency_why_not
        if hosts_why and hosts_why == latency_why:
            self.notes.append(f"no req/s per app host nor nginx latencies: {hosts_why}")
            return figures
        if hosts_why:
            self.notes.append(f"no req/s per app host: {hosts_why}")
        if latency_why:
            self.notes.append(f"no nginx latencies: {latency_why}")
        return figures

    def in_flight(
        self, request_log: locust.RequestLog | None, p99_ms: float | None
    ) -> locust.CutOff | None:
        """The requests in flight at the stop against the row's p99 (report.locust's
        cut_off); None, noting why, when the request log does not list them."""
        if request_log is None:
            return None  # the note already says there is no request log
        if request_log.unfinished is None:
            self.notes.append(
                f"{locust.REQUESTS} has no stopped_at column (an older log): the requests "
                "in flight at the stop are unknown"
            )
            return None
        figures = locust.cut_off(request_log.unfinished, p99_ms)
        if figures.in_flight and figures.cut_off is None:
            self.notes.append("no p99 to compare the requests in flight at the stop with")
        return figures

    def measured(
        self, stats: locust.Stats
    ) -> tuple[Measured, locust.RequestLog | None, hdr.HdrFigures | None]:
        """(the row's rate and latencies, the cell's request log or None, the
        latency histograms' figures or None).

        The figures are exact, from locust_requests.csv over its window
        (report.locust), when the cell has one that spans long enough; the
        histograms' (report.hdr) cover the seconds whole inside that window,
        and a note says when their p99 disagrees with the exact one. Else
        `fallback` says where they come from.
        """
        request_log = locust.read_requests(self.cell.directory)
        latency_log = hdr.read_latency_log(self.cell.directory)
        running = locust.users_running_from(self.history, self.cell.users)
        if request_log is None:
            why_not = f"no {locust.REQUESTS}"
        else:
            figures, why_not = locust.request_figures(request_log.completed, running)
            if figures is not None:
                window = (figures.window_start, figures.window_end)
                histograms = self.histograms(latency_log, window)
                if histograms is not None:
                    disagreement = hdr.disagreement(
                        figures.latencies_us, figures.p99_ms, histograms
                    )
                    if disagreement:
                        self.notes.append(disagreement)
                measured = Measured(
                    rps=figures.rps,
                    mean_ms=figures.mean_ms,
                    p50_ms=figures.p50_ms,
                    p90_ms=figures.p90_ms,
                    p95_ms=figures.p95_ms,
                    p99_ms=figures.p99_ms,
                    p999_ms=figures.p999_ms,
                    max_ms=figures.max_ms,
                )
                return measured, request_log, histograms
        histograms = None
        if latency_log is not None:
            window, why_no_window = hdr.own_window(latency_log, running)
            if window is None:
                self.notes.append(f"no HDR figures: {why_no_window}")
            histograms = self.histograms(latency_log, window)
        return self.fallback(stats, why_not, histograms), request_log, histograms

    def fallback(
        self, stats: locust.Stats, why_not: str, histograms: hdr.HdrFigures | None
    ) -> Measured:
        """The figures of a cell without a request log that gives them (why_not
        says why): Locust's rate -- over the steady window of the stats
        history, or its own Requests/s -- and mean; the histograms'
        percentiles and max over their own window when they hold requests,
        else Locust's. The notes say which and why."""
        latencies = "latencies Locust's own (percentiles rounded to its buckets)"
        headline = stats
        if histograms is not None and histograms.requests:
            latencies = (
                f"percentiles and max from the HDR histograms ({hdr.LATENCY_LOG}) over "
                "their own window, mean Locust's"
            )
            headline = histograms
        rate, why_not_steady = locust.steady_rate(self.history, self.cell.users, stats.mean_ms)
        if rate is not None:
            self.notes.append(f"{why_not}: req/s from {locust.HISTORY}, {latencies}")
        else:
            rate = stats.rps
            self.notes.append(f"{why_not}: {latencies}")
            if rate is not None:
                self.notes.append(f"req/s is Locust's own Requests/s: {why_not_steady}")
        return Measured(
            rps=rate,
            mean_ms=stats.mean_ms,
            p50_ms=headline.p50_ms,
            p90_ms=headline.p90_ms,
            p95_ms=headline.p95_ms,
            p99_ms=headline.p99_ms,
            p999_ms=headline.p999_ms,
            max_ms=headline.max_ms,
        )

    def histograms(
        self, latency_log: hdr.LatencyLog | None, window: tuple[float, float] | None
    ) -> hdr.HdrFigures | None:
        """The latency histograms' figures over the window; None for a cell
        without them (an older run: nothing to note) or without a window, and
        None, noting why, when none of their seconds lies whole inside it."""
        if latency_log is None or window is None:
            return None
        figures, why_not = hdr.figures(latency_log, *window)
        if figures is None:
            self.notes.append(f"no HDR figures: {why_not}")
        return figures

    def task_figures(self) -> tasks.TaskFigures | None:
        """A tasks cell's task figures over the measured window; None for a cell
        without tasks.csv, noting why when it has one but no window."""
        rows = tasks.read_tasks(self.cell.directory)
        if rows is None:
            return None
        if self.window is None:
            self.notes.append(f"no task figures: no measured window for {tasks.TASKS}")
            return None
        figures = tasks.figures(rows, self.window)
        if figures.unfinished:
            self.notes.append(
                f"{figures.unfinished} tasks still queued or running at the end: the task "
                "percentiles leave them out"
            )
        return figures

    def app_addresses(self) -> dict[str, str]:
        """{app host: its address} from facts.json (each host's `address`);
        empty for a cell without them."""
        facts = self.cell.directory / "facts.json"
        hosts = (read_json(facts) or {}).get("hosts", {}) if facts.exists() else {}
        return {
            name: host["address"]
            for name, host in hosts.items()
            if isinstance(host, dict) and "app" in host.get("groups", []) and host.get("address")
        }

    def config(self) -> str:
        cell = self.cell
        if cell.config:
            return cell.config
        if self.mixed_db_modes and cell.db_mode:
            return f"{cell.server} [{cell.db_mode}]"
        return cell.server

    @staticmethod
    def app_cpu(app: list[HostSamples]) -> tuple[float | None, str | None]:
        """(cores the app used, "unit" or "host"): the unit's CPU counter on every
        app host if each has one, else the hosts' whole CPU; (None, None) without."""
        unit_rates = [counter_rate(s.column("unit_cpu_usage_usec")) for s in app]
        if app and all(r is not None for r in unit_rates):
            return sum(unit_rates) / 1e6, "unit"
        host_means = [_mean(s.values("cpu_busy_cores")) for s in app]
        if app and all(m is not None for m in host_means):
            return sum(host_means), "host"
        return None, None

    @staticmethod
    def throttling(app: list[HostSamples]) -> tuple[int | None, float | None, float | None]:
        """(throttled periods, their share of all CFS periods, throttled seconds)
        over the window, summed over the app hosts; None where not sampled."""
        throttled = [s.column("unit_nr_throttled") for s in app]
        if not app or not all(len(p) >= 2 for p in throttled):
            return None, None, None
        periods = [s.column("unit_nr_periods") for s in app]
        throttled_usec = [s.column("unit_throttled_usec") for s in app]
        throttled_periods = sum(counter_increase(p) for p in throttled)
        total_periods = sum(counter_increase(p) for p in periods if len(p) >= 2)
        ratio = throttled_periods / total_periods if total_periods else None
        seconds = None
        if all(len(p) >= 2 for p in throttled_usec):
            seconds = sum(counter_increase(p) for p in throttled_usec) / 1e6
        return throttled_periods, ratio, seconds

    def why_no_cpu_ceiling(self) -> str:
        inprocess = self.cell.inprocess_cpu_s_per_request
        if not inprocess or inprocess <= 0:
            return (
                "no ceiling: no in-process CPU-seconds per request of the app "
                "(cell.json's inprocess_cpu_s_per_request, from inprocess.json)"
            )
        return "no ceiling: app_cpus unknown"

    def machine_load(self) -> tuple[float | None, int | None]:
        """(CPUs busy, CPUs) by the kernel's /proc/stat, the mean over the window
        of the host busiest for its CPUs: in the lab's containers every host's is
        the one machine's (load generators, proxy, database and app hosts
        together), on VMs or real hosts each host's own. (None, None) for samples
        without the columns (a run before them); a note when that host's CPUs
        were nearly all busy, which no figure of the cell is free of."""
        busiest = None
        for s in self.cell.samples.values():
            inside = in_window(s, self.window)
            busy, cpus = _mean(inside.values("procstat_busy_cores")), inside.values("procstat_cpus")
            if len(inside.rows) < MIN_SAMPLES or busy is None or not cpus:
                continue
            load = (busy / max(cpus), busy, int(max(cpus)), s.host)
            busiest = max(busiest or load, load)
        if busiest is None:
            return None, None
        share, busy, cpus, host = busiest
        if share >= BUSY_MACHINE_SHARE:
            self.notes.append(
                f"{host}'s kernel found {busy:.2f} of its {cpus} CPUs busy (mean): the "
                "servers waited for CPUs they shared"
            )
        return busy, cpus

    def generator_load(self) -> GeneratorLoad:
        """The load generators' CPU over the window, each figure the highest of
        any of them: the busiest sample, the mean, and the busiest Locust
        process's mean and busiest sample. Every sample is judged by the first
        validity rule, not the mean."""
        peaks, means, process_means, process_peaks = [], [], [], []
        for s in self.hosts("loadgen", "proc_count"):
            percent = s.values("cpu_percent")
            if percent:
                peaks.append(max(percent))
                means.append(_mean(percent))
            busiest = s.values("proc_max_cores")
            if busiest:
                process_means.append(_mean(busiest))
                process_peaks.append(max(busiest))
        sampled = bool(peaks or process_peaks)
        if not sampled:
            self.notes.append("no load-generator samples")
        return GeneratorLoad(
            peak_pct=max(peaks, default=None),
            mean_pct=max(means, default=None),
            process_mean_cores=max(process_means, default=None),
            process_peak_cores=max(process_peaks, default=None),
            sampled=sampled,
        )


@dataclass(frozen=True)
class GeneratorLoad:
    """The load generators' CPU over the window (each the highest of any host)."""

    peak_pct: float | None
    mean_pct: float | None
    process_mean_cores: float | None
    process_peak_cores: float | None
    sampled: bool  # whether any load generator had samples in the window


def identity_ratio(users: int, rps: float | None, mean_ms: float | None) -> float | None:
    """(users / rps) / mean latency: a closed loop with no wait between requests
    keeps every user in a request all the time, so this is 1.0 when the rate and
    the latency are measured right; above 1.0 is time each user spends that the
    latency does not hold. None without a rate or a latency."""
    if not rps or not mean_ms:
        return None
    return users / rps / (mean_ms / 1000)


def summarize_cell(cell: Cell, mixed_db_modes: bool = False) -> Row:
    """The summary row of one cell; see the package's docstring for the rules."""
    return _CellReader(cell, mixed_db_modes).row()


# --------------------------------------------------------------------------- the run


def _sort_key(row: Row):
    # endpoints in the catalogue's order, unknown ones last
    order = list(catalogue.load().endpoints)
    rank = order.index(row.endpoint) if row.endpoint in order else len(order)
    return (rank, row.endpoint, row.config, row.users, row.cell)


def summarize_run(run_dir: Path) -> tuple[dict | None, list[Row]]:
    """(environment.json or None, the rows of every cell) of a run directory.

    Every cell.json is checked before any cell is read, so a broken one fails
    the whole report with its message.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory")
    cell_dirs = sorted(p.parent for p in run_dir.glob("*/cell.json"))
    if not cell_dirs:
        raise ReportError(
            f"{run_dir} holds no cells: expected <cell-id>/cell.json beside the Locust CSVs "
            "(see the docstring of flask_deploy_lab.report)"
        )
    env_path = run_dir / "environment.json"
    environment = read_json(env_path) if env_path.is_file() else None
    cells = [Cell.load(d) for d in cell_dirs]
    modes: dict[str, set] = {}
    for cell in cells:
        modes.setdefault(cell.server, set()).add(cell.db_mode)
    rows = [summarize_cell(c, mixed_db_modes=len(modes[c.server]) > 1) for c in cells]
    return environment, sorted(rows, key=_sort_key)
