"""A run directory read into summary rows: each cell's numbers against its
ceiling, the warnings a cell can carry, and the errors of a run that breaks
the layout (see the package's docstring for both)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from flask_deploy_lab import catalogue
from flask_deploy_lab.report import hey, locust
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.samples import (
    HostSamples,
    counter_increase,
    counter_rate,
    in_window,
    read_samples,
)
from flask_deploy_lab.report.summary import Row
from flask_deploy_lab.targets import clients_agree

# A load generator above either is measuring itself rather than the server.
SATURATED_CPU_PERCENT = 90.0
SATURATED_PROCESS_CORES = 0.9  # one Locust process cannot use more than one core

REQUIRED_CELL_KEYS = ("server", "endpoint", "users")

# What the page says about each ceiling model (Row.ceiling_model).
CEILING_MODELS = {
    "littles_law": "Delay-bound: ceiling = min(users, server slots, pool size when the "
    "request holds a pooled connection) / delay (Little's law); users / delay on a server "
    "that holds any number of requests.",
    "cpu": "CPU-bound: ceiling = app CPUs / CPU-seconds per request, CPU-seconds from the "
    "app unit's cgroup accounting.",
}


@dataclass(frozen=True)
class CellWarning:
    """A flag of Row that means the cell's numbers do not measure the server as
    they should: what the page calls it, and what it means."""

    flag: str
    title: str
    meaning: str

    def cells(self, rows: list[Row]) -> list[str]:
        """The cells that raise the flag."""
        return [row.cell for row in rows if getattr(row, self.flag)]


CELL_WARNINGS = (
    CellWarning(
        "generator_saturated",
        "Saturated load generator",
        "these numbers measure the generator, not the server.",
    ),
    CellWarning(
        "workers_lost",
        "Load generator worker lost mid-run",
        "Locust restarted its statistics then, so these figures cover only the rest of the run.",
    ),
)


def flagged(row: Row) -> bool:
    """Whether any cell warning holds for the row."""
    return any(getattr(row, warning.flag) for warning in CELL_WARNINGS)


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


def cpu_ceiling(app_cpus: float | None, cpu_s_per_request: float | None) -> float | None:
    """app_cpus / CPU-seconds per request; None if either is unknown."""
    if not app_cpus or not cpu_s_per_request:
        return None
    return app_cpus / cpu_s_per_request


# --------------------------------------------------------------------------- one cell


def _mean(values):
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Measured:
    """A cell's throughput and latencies, from whichever source the row uses."""

    rps: float | None
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
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
        """The samples of the role's hosts, cut to the measured window.

        cell.json names the hosts; without it, any host whose samples carry the column.
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
        return [in_window(s, self.window) for s in chosen]

    def row(self) -> Row:
        cell = self.cell
        stats = locust.read_stats(cell.directory)
        if stats is None:
            self.notes.append(f"no Aggregated row in {locust.STATS}")
            stats = locust.Stats()
        measured = self.measured(stats)
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
            ceiling = cpu_ceiling(cell.app_cpus, cpu_s_per_request)
            if ceiling is None:
                self.notes.append(self.why_no_cpu_ceiling(app_cpu_source))

        db_points = [
            v for s in self.hosts("db", "pg_connections") for v in s.values("pg_connections")
        ]
        peak_pct, mean_pct, process_cores, saturated = self.generator_load()

        if cell.workers_lost:
            self.notes.append(
                f"{len(cell.workers_lost)} Locust worker(s) lost mid-run: "
                "the figures cover only the part after it"
            )

        requests, failures = stats.requests, stats.failures
        return Row(
            cell=cell.name,
            config=self.config(),
            server=cell.server,
            db_mode=cell.db_mode,
            endpoint=cell.endpoint,
            users=cell.users,
            requests=requests,
            failures=failures,
            failure_ratio=failures / requests if requests and failures is not None else None,
            rps=rps,
            locust_rps_reported=stats.rps,
            mean_ms=measured.mean_ms,
            p50_ms=measured.p50_ms,
            p95_ms=measured.p95_ms,
            p99_ms=measured.p99_ms,
            max_ms=measured.max_ms,
            ideal_latency_ms=ideal_s * 1000 if ideal_s is not None else None,
            identity_ratio=identity_ratio(cell.users, rps, measured.mean_ms),
            hey_requests=hey_result.requests if hey_result else None,
            hey_failures=hey_result.non_2xx if hey_result else None,
            hey_rps=hey_result.rps if hey_result else None,
            hey_mean_ms=hey_result.mean_ms if hey_result else None,
            hey_p50_ms=hey_result.p50_ms if hey_result else None,
            hey_p99_ms=hey_result.p99_ms if hey_result else None,
            hey_identity_ratio=hey_result.identity_ratio if hey_result else None,
            clients_agree=clients_agree(rps, hey_result.rps if hey_result else None),
            ceiling_model=ceiling_model,
            ceiling_rps=ceiling,
            efficiency=rps / ceiling if ceiling and rps is not None else None,
            cpu_s_per_request=cpu_s_per_request,
            app_cpu_cores=app_cpu_cores,
            app_cpu_source=app_cpu_source,
            app_cpus=cell.app_cpus,
            throttled_periods=throttled_periods,
            throttled_ratio=throttled_ratio,
            throttled_s=throttled_s,
            peak_db_connections=max(db_points) if db_points else None,
            loadgen_cpu_peak_pct=peak_pct,
            loadgen_cpu_mean_pct=mean_pct,
            loadgen_process_cores=process_cores,
            generator_saturated=saturated,
            workers_lost=len(cell.workers_lost),
            delay_s=cell.delay_s,
            server_slots=cell.server_slots,
            pool_size=cell.pool_size,
            top_failure=locust.read_top_failure(cell.directory),
            note="; ".join(self.notes) or None,
        )

    def measured(self, stats: locust.Stats) -> Measured:
        """The row's rate and latencies: exact, from locust_requests.csv over its
        window (report.locust), when the cell has one that spans long enough;
        else Locust's statistics -- the rate over the steady window of the stats
        history, or Locust's own Requests/s, and Locust's latencies -- noting
        which and why."""
        requests = locust.read_requests(self.cell.directory)
        if requests is None:
            why_not = f"no {locust.REQUESTS}"
        else:
            running = locust.users_running_from(self.history, self.cell.users)
            figures, why_not = locust.request_figures(requests, running)
            if figures is not None:
                return Measured(
                    rps=figures.rps,
                    mean_ms=figures.mean_ms,
                    p50_ms=figures.p50_ms,
                    p95_ms=figures.p95_ms,
                    p99_ms=figures.p99_ms,
                    max_ms=figures.max_ms,
                )
        latencies = "latencies Locust's own (percentiles rounded to its buckets)"
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
            p50_ms=stats.p50_ms,
            p95_ms=stats.p95_ms,
            p99_ms=stats.p99_ms,
            max_ms=stats.max_ms,
        )

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

    def why_no_cpu_ceiling(self, app_cpu_source: str | None) -> str:
        if app_cpu_source != "unit":
            return "no ceiling: no cgroup CPU accounting for the app unit"
        if not self.cell.app_cpus:
            return "no ceiling: app_cpus unknown"
        return "no ceiling: no requests served"

    def generator_load(self):
        """(peak CPU %, mean CPU %, busiest Locust process cores, saturated) of the
        busiest load generator; saturated is None without load-generator samples."""
        peaks, means, process_cores = [], [], []
        for s in self.hosts("loadgen", "proc_count"):
            percent = s.values("cpu_percent")
            if percent:
                peaks.append(max(percent))
                means.append(_mean(percent))
            busiest = s.values("proc_max_cores")
            if busiest:
                process_cores.append(_mean(busiest))
        saturated = None
        if means or process_cores:
            saturated = any(m > SATURATED_CPU_PERCENT for m in means) or any(
                c > SATURATED_PROCESS_CORES for c in process_cores
            )
        else:
            self.notes.append("no load-generator samples")
        return (
            max(peaks) if peaks else None,
            max(means) if means else None,
            max(process_cores) if process_cores else None,
            saturated,
        )


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
