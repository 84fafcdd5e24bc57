"""Compare the cells of one load-test run against their ceilings.

    python loadtest/report.py reports/<run-id>

writes ``index.html``, ``summary.csv`` and ``summary.json`` into that directory
and exits non-zero, saying why, when the directory holds no cells or a cell
breaks the layout below.

Input layout (written by the load-test playbook)
================================================

::

    reports/<run-id>/
      environment.json
      <cell-id>/                      one per measured cell, e.g. uwsgi--slow--u100
        cell.json
        locust_stats.csv              Locust --csv=<cell-id>/locust --csv-full-history
        locust_stats_history.csv
        locust_failures.csv
        locust_exceptions.csv
        locust_report.html            Locust --html (linked from the page)
        samples/<host>.csv            loadtest/sampler.py, one file per host

Run ``sampler.py`` on every host from just before the measured run to a few
seconds after it (``--duration`` = duration_s + slack, ``--interval 1``): on app
hosts with ``--unit <the app's unit>``, on db hosts with ``--pg-psql-user
postgres``, on load generators with ``--proc-name locust``. Name each file
after the inventory host, as cell.json's host lists do.

``environment.json`` (every key optional; shown at the top of the page)::

    {"run_id": "20260101-120000", "started": "<ISO 8601>", "finished": "<ISO 8601>",
     "git_commit": "abc1234", "git_dirty": false, "substrate": "lab",
     "versions": {"locust": "2.47.0", "postgresql": "15.10", ...},  # name -> version
     "limits": {"unit_cpu_quota": "20%", "unit_memory_max": "200M",
                "unit_limits_enforced": false, "cgroup_version": 1},
     "hosts": [{"name": "app1", "groups": ["app"], "node_cpus": 1, "node_memory_mb": 512}]}

``cell.json``::

    server          str, required   the `server` switch value, e.g. "gunicorn-gthread"
    endpoint        str, required   healthz json slow db queries fortunes sleep render tasks
    users           int, required   concurrent Locust users (closed loop, wait 0)
    spawn_rate      number          users started per second
    duration_s      number          length of the measured run
    warmup_s        number          length of the separate, unrecorded warm-up run
    delay_s         number | null   ?delay= of /slow and /sleep; null for other endpoints
    queries         int | null      ?n= of /queries
    server_slots    int | null      requests all app hosts can hold at once:
                                    workers * threads, workers * greenlets, 1 for flask
    pool_size       int | null      connections the app's pools can hold in total
                                    (db_pool_max * pools); null in naive mode
    db_mode         "naive" | "pool"
    app_cpus        number | null   CPUs the app may use, summed over app hosts:
                                    min(node_cpus, CPUQuota if unit limits are enforced)
    app_hosts       [str]           hosts whose samples carry the app unit's cgroup
    db_hosts        [str]           hosts whose samples carry pg_stat_activity counts
    loadgen_hosts   [str]           hosts running Locust
    workers         int             Locust worker processes
    workers_lost    [str]           workers the master lost before the run time was
                                    up; Locust then restarted its statistics, so the
                                    CSVs cover only the rest of the run
    config          str, optional   label for the configuration; default: the server,
                                    plus [db_mode] when the run has that server in both modes

The measured run is the one Locust writes the CSVs for. Warm-up is a separate
short run before it whose output is discarded, and the measured run should be
started with ``--reset-stats`` so its numbers exclude its own ramp-up. The
report then takes throughput (``Requests/s``) and latency percentiles from the
``Aggregated`` row of ``locust_stats.csv`` as they are. The stats history only
fixes the measured window -- from the first second with all users running to
the last row -- and only sampler rows inside it count (all rows if fewer than
two fall inside).

Numbers per cell
================

- app CPU: cores the app unit used, from the unit's CPU counter on the app
  hosts (summed): its cgroup's, or where a container cannot see that, the
  CPU time of the unit's processes (see sampler.py); without either, the app
  hosts' whole CPU (``app_cpu_source`` says ``unit`` or ``host``).
- ceiling: for ``slow`` and ``sleep`` Little's law, ``min(users, server_slots,
  pool_size if db_mode is pool and the endpoint holds a connection) / delay_s``;
  for every other endpoint ``app_cpus / cpu_s_per_request`` with
  ``cpu_s_per_request = unit CPU cores / requests per second``. Without the
  inputs (no unit cgroup accounting, no delay, no app_cpus) it is null and the
  page says n/a -- never an estimate.
- efficiency: requests per second / ceiling.
- throttling: increase of ``nr_throttled`` (and ``nr_periods``, throttled
  seconds) over the window, summed over app hosts.
- generator_saturated: a load generator whose mean CPU over the window was
  above 90 % of what it may use, or whose busiest Locust process used more
  than 0.9 of a core (one Locust process cannot use more than one).

Output: ``summary.csv`` has one row per cell with the columns of
``SUMMARY_COLUMNS`` (empty = not measured); ``summary.json`` is
``{"run", "environment", "cells": [the same rows]}``. Units: ``rps`` and
``ceiling_rps`` requests/s, ``*_ms`` milliseconds, ``*_cores`` CPUs,
``throttled_s`` seconds, ``*_pct`` percent of what the host may use.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

ENDPOINTS = ["healthz", "json", "slow", "db", "queries", "fortunes", "sleep", "render", "tasks"]
DELAY_BOUND = {"slow", "sleep"}
# endpoints that hold a pooled database connection for the whole delay
HOLDS_DB_CONNECTION = {"sleep"}
SATURATED_CPU_PERCENT = 90.0
SATURATED_PROCESS_CORES = 0.9
REQUIRED_CELL_KEYS = ("server", "endpoint", "users")

SUMMARY_COLUMNS = [
    "cell",
    "config",
    "server",
    "db_mode",
    "endpoint",
    "users",
    "requests",
    "failures",
    "failure_ratio",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "ceiling_model",
    "ceiling_rps",
    "efficiency",
    "cpu_s_per_request",
    "app_cpu_cores",
    "app_cpu_source",
    "app_cpus",
    "throttled_periods",
    "throttled_ratio",
    "throttled_s",
    "peak_db_connections",
    "loadgen_cpu_peak_pct",
    "loadgen_cpu_mean_pct",
    "loadgen_process_cores",
    "generator_saturated",
    "workers_lost",
    "delay_s",
    "server_slots",
    "pool_size",
    "top_failure",
    "note",
]


class ReportError(Exception):
    """The run directory does not follow the layout; the message says how."""


# --------------------------------------------------------------------------- reading


def _number(text):
    """A CSV field as int or float; '', 'N/A' and the like -> None."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and "." not in text else value


def _read_csv(path):
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_json(path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc


def aggregated_stats(rows):
    """The Aggregated row of locust_stats.csv, as numbers."""
    for row in rows or []:
        if row.get("Name") == "Aggregated":
            return {
                "requests": _number(row.get("Request Count")),
                "failures": _number(row.get("Failure Count")),
                "rps": _number(row.get("Requests/s")),
                "p50_ms": _number(row.get("50%")),
                "p95_ms": _number(row.get("95%")),
                "p99_ms": _number(row.get("99%")),
                "max_ms": _number(row.get("Max Response Time")),
            }
    return None


def measured_window(history, users):
    """(first second with all users running, last second) of the stats history, or None."""
    rows = [r for r in history or [] if r.get("Name") == "Aggregated"]
    stamps = [(_number(r.get("Timestamp")), _number(r.get("User Count")) or 0) for r in rows]
    stamps = [(t, n) for t, n in stamps if t is not None]
    if not stamps:
        return None
    full = [t for t, n in stamps if n >= users]
    start = full[0] if full else stamps[0][0]
    return start, stamps[-1][0]


def top_failure(rows):
    """The most frequent failure as 'METHOD name: error', or None."""
    best = None
    for row in rows or []:
        count = _number(row.get("Occurrences")) or 0
        if best is None or count > best[0]:
            best = (count, f"{row.get('Method', '')} {row.get('Name', '')}: {row.get('Error', '')}")
    return best[1].strip() if best else None


@dataclass
class HostSamples:
    host: str
    rows: list = field(default_factory=list)

    def column(self, name):
        """(time, value) of the rows that have a value in `name`."""
        points = []
        for row in self.rows:
            t, v = _number(row.get("time")), _number(row.get(name))
            if t is not None and v is not None:
                points.append((t, v))
        return points

    def has(self, name):
        return bool(self.column(name))


def in_window(samples, window):
    """The samples whose time falls inside the window; all of them if fewer than two do."""
    if window is None:
        return samples
    start, end = window
    inside = [r for r in samples.rows if start <= (_number(r.get("time")) or -1) <= end]
    return HostSamples(samples.host, inside) if len(inside) >= 2 else samples


def counter_increase(points):
    """Increase of a cumulative counter; a drop (the unit restarted) restarts the count."""
    return sum(max(b - a, 0) for (_, a), (_, b) in itertools.pairwise(points))


def counter_rate(points):
    """Increase per second of a cumulative counter, or None with fewer than two points."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return counter_increase(points) / (points[-1][0] - points[0][0])


def _mean(values):
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------- numbers


def littles_law_ceiling(cell):
    """min(users, server_slots, pool) / delay for delay-bound endpoints; None if unknown."""
    delay, slots = cell.get("delay_s"), cell.get("server_slots")
    if not delay or delay <= 0 or not slots:
        return None
    concurrency = [cell["users"], slots]
    if (
        cell.get("db_mode") == "pool"
        and cell["endpoint"] in HOLDS_DB_CONNECTION
        and cell.get("pool_size")
    ):
        concurrency.append(cell["pool_size"])
    return min(concurrency) / delay


def cpu_ceiling(app_cpus, cpu_s_per_request):
    if not app_cpus or not cpu_s_per_request:
        return None
    return app_cpus / cpu_s_per_request


def _round(value, digits):
    return None if value is None else round(value, digits)


def summarize_cell(cell_dir, cell, samples, mixed_db_modes=False):
    """One summary row from a cell's files; see the module docstring for the rules."""
    notes = []
    stats = aggregated_stats(_read_csv(cell_dir / "locust_stats.csv"))
    if stats is None:
        notes.append("no Aggregated row in locust_stats.csv")
        stats = dict.fromkeys(("requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms"))
        stats["max_ms"] = None
    window = measured_window(_read_csv(cell_dir / "locust_stats_history.csv"), cell["users"])

    def hosts(role, column):
        # cell.json names the hosts; without it, any host whose samples carry the column
        names = cell.get(f"{role}_hosts")
        if names:
            chosen = [samples[h] for h in names if h in samples]
            missing = [h for h in names if h not in samples]
            if missing:
                notes.append(f"no samples from {role} host {', '.join(missing)}")
        else:
            chosen = [s for s in samples.values() if s.has(column)]
        return [in_window(s, window) for s in chosen]

    rps = stats["rps"]
    app = hosts("app", "unit_cpu_usage_usec")
    unit_rates = [counter_rate(s.column("unit_cpu_usage_usec")) for s in app]
    app_cpu_cores, app_cpu_source = None, None
    if app and all(r is not None for r in unit_rates):
        app_cpu_cores, app_cpu_source = sum(unit_rates) / 1e6, "unit"
    else:
        host_means = [_mean([v for _, v in s.column("cpu_busy_cores")]) for s in app]
        if app and all(m is not None for m in host_means):
            app_cpu_cores, app_cpu_source = sum(host_means), "host"

    throttled = [s.column("unit_nr_throttled") for s in app]
    periods = [s.column("unit_nr_periods") for s in app]
    throttled_usec = [s.column("unit_throttled_usec") for s in app]
    throttled_periods = throttled_ratio = throttled_s = None
    if app and all(len(p) >= 2 for p in throttled):
        throttled_periods = sum(counter_increase(p) for p in throttled)
        total_periods = sum(counter_increase(p) for p in periods if len(p) >= 2)
        throttled_ratio = throttled_periods / total_periods if total_periods else None
        if all(len(p) >= 2 for p in throttled_usec):
            throttled_s = sum(counter_increase(p) for p in throttled_usec) / 1e6

    endpoint = cell["endpoint"]
    cpu_s_per_request = None
    if app_cpu_source == "unit" and rps:
        cpu_s_per_request = app_cpu_cores / rps
    if endpoint in DELAY_BOUND:
        ceiling_model = "littles_law"
        ceiling = littles_law_ceiling(cell)
        if ceiling is None:
            notes.append("no ceiling: delay_s or server_slots missing")
    else:
        ceiling_model = "cpu"
        ceiling = cpu_ceiling(cell.get("app_cpus"), cpu_s_per_request)
        if ceiling is None:
            if app_cpu_source != "unit":
                notes.append("no ceiling: no cgroup CPU accounting for the app unit")
            elif not cell.get("app_cpus"):
                notes.append("no ceiling: app_cpus unknown")
            else:
                notes.append("no ceiling: no requests served")
    efficiency = rps / ceiling if ceiling and rps is not None else None

    db_points = [v for s in hosts("db", "pg_connections") for _, v in s.column("pg_connections")]

    loadgen_peaks, loadgen_means, process_cores = [], [], []
    for s in hosts("loadgen", "proc_count"):
        percent = [v for _, v in s.column("cpu_percent")]
        if percent:
            loadgen_peaks.append(max(percent))
            loadgen_means.append(_mean(percent))
        busiest = [v for _, v in s.column("proc_max_cores")]
        if busiest:
            process_cores.append(_mean(busiest))
    saturated = None
    if loadgen_means or process_cores:
        saturated = any(m > SATURATED_CPU_PERCENT for m in loadgen_means) or any(
            c > SATURATED_PROCESS_CORES for c in process_cores
        )
    else:
        notes.append("no load-generator samples")

    lost = cell.get("workers_lost") or []
    if lost:
        notes.append(
            f"{len(lost)} Locust worker(s) lost mid-run: the figures cover only the part after it"
        )

    requests, failures = stats["requests"], stats["failures"]
    failure_ratio = failures / requests if requests and failures is not None else None
    db_mode = cell.get("db_mode")
    config = cell.get("config") or (
        f"{cell['server']} [{db_mode}]" if mixed_db_modes and db_mode else cell["server"]
    )
    return {
        "cell": cell_dir.name,
        "config": config,
        "server": cell["server"],
        "db_mode": db_mode,
        "endpoint": endpoint,
        "users": cell["users"],
        "requests": requests,
        "failures": failures,
        "failure_ratio": _round(failure_ratio, 4),
        "rps": _round(rps, 2),
        "p50_ms": stats["p50_ms"],
        "p95_ms": stats["p95_ms"],
        "p99_ms": stats["p99_ms"],
        "max_ms": _round(stats["max_ms"], 1),
        "ceiling_model": ceiling_model,
        "ceiling_rps": _round(ceiling, 2),
        "efficiency": _round(efficiency, 3),
        "cpu_s_per_request": _round(cpu_s_per_request, 6),
        "app_cpu_cores": _round(app_cpu_cores, 3),
        "app_cpu_source": app_cpu_source,
        "app_cpus": cell.get("app_cpus"),
        "throttled_periods": throttled_periods,
        "throttled_ratio": _round(throttled_ratio, 3),
        "throttled_s": _round(throttled_s, 3),
        "peak_db_connections": max(db_points) if db_points else None,
        "loadgen_cpu_peak_pct": _round(max(loadgen_peaks), 1) if loadgen_peaks else None,
        "loadgen_cpu_mean_pct": _round(max(loadgen_means), 1) if loadgen_means else None,
        "loadgen_process_cores": _round(max(process_cores), 3) if process_cores else None,
        "generator_saturated": saturated,
        "workers_lost": len(lost),
        "delay_s": cell.get("delay_s"),
        "server_slots": cell.get("server_slots"),
        "pool_size": cell.get("pool_size"),
        "top_failure": top_failure(_read_csv(cell_dir / "locust_failures.csv")),
        "note": "; ".join(notes) or None,
    }


def load_cell(cell_dir):
    cell = read_json(cell_dir / "cell.json")
    if not isinstance(cell, dict):
        raise ReportError(f"{cell_dir / 'cell.json'}: expected a JSON object")
    missing = [k for k in REQUIRED_CELL_KEYS if cell.get(k) in (None, "")]
    if missing:
        raise ReportError(f"{cell_dir / 'cell.json'}: missing {', '.join(missing)}")
    if not isinstance(cell["users"], int) or cell["users"] < 1:
        raise ReportError(f"{cell_dir / 'cell.json'}: users must be a positive integer")
    samples = {}
    for path in sorted((cell_dir / "samples").glob("*.csv")):
        samples[path.stem] = HostSamples(path.stem, _read_csv(path) or [])
    return cell, samples


def _sort_key(row):
    endpoint_rank = ENDPOINTS.index(row["endpoint"]) if row["endpoint"] in ENDPOINTS else 99
    return (endpoint_rank, row["endpoint"], row["config"], row["users"], row["cell"])


def summarize_run(run_dir):
    """(environment, summary rows) of a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory")
    cell_dirs = sorted(p.parent for p in run_dir.glob("*/cell.json"))
    if not cell_dirs:
        raise ReportError(
            f"{run_dir} holds no cells: expected <cell-id>/cell.json beside the Locust CSVs "
            "(see the docstring of loadtest/report.py)"
        )
    env_path = run_dir / "environment.json"
    environment = read_json(env_path) if env_path.is_file() else None
    cells = [(d, *load_cell(d)) for d in cell_dirs]
    modes = {}
    for _, cell, _ in cells:
        modes.setdefault(cell["server"], set()).add(cell.get("db_mode"))
    rows = [
        summarize_cell(d, c, s, mixed_db_modes=len(modes[c["server"]]) > 1) for d, c, s in cells
    ]
    return environment, sorted(rows, key=_sort_key)


# --------------------------------------------------------------------------- writing


def write_csv(rows, path):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in SUMMARY_COLUMNS})


def write_json(run_dir, environment, rows, path):
    document = {"run": Path(run_dir).name, "environment": environment, "cells": rows}
    path.write_text(json.dumps(document, indent=2) + "\n")


def _svg(figure):
    """A matplotlib figure as an inline <svg> element."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def endpoint_plot(rows):
    """One inline SVG for one endpoint: throughput, latency and efficiency of each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "flask-deploy-lab"
    configs = list(dict.fromkeys(r["config"] for r in rows))
    palette = plt.get_cmap("tab10")
    colours = [palette(configs.index(r["config"]) % 10) for r in rows]
    positions = list(range(len(rows)))
    figure, (top, middle, bottom) = plt.subplots(
        3, 1, sharex=True, figsize=(max(6.5, 0.8 * len(rows) + 2.5), 8.4)
    )
    for ax in (top, middle, bottom):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.set_xlim(-0.6, len(rows) - 0.4)
    bottom.set_xticks(positions)
    bottom.set_xticklabels([f"{r['config']}\nu{r['users']}" for r in rows], fontsize=8)

    def hatch_saturated(bars):
        for bar, row in zip(bars, rows, strict=True):
            if row["generator_saturated"]:
                bar.set_hatch("//")
                bar.set_edgecolor("#b00020")

    top.set_title("Throughput, requests/s (black line: ceiling)", fontsize=10, loc="left")
    throughput = [r["rps"] or 0 for r in rows]
    hatch_saturated(top.bar(positions, throughput, width=0.6, color=colours))
    highest = max(throughput, default=0)
    for position, row in zip(positions, rows, strict=True):
        if row["ceiling_rps"] is not None:
            top.hlines(row["ceiling_rps"], position - 0.4, position + 0.4, color="black", lw=2)
            top.annotate(
                f"{row['ceiling_rps']:g}",
                (position, row["ceiling_rps"]),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=7,
            )
            highest = max(highest, row["ceiling_rps"])
    top.set_ylim(0, highest * 1.18 or 1)

    middle.set_title("Latency, ms (log scale)", fontsize=10, loc="left")
    p50 = [r["p50_ms"] or math.nan for r in rows]
    p99 = [r["p99_ms"] or math.nan for r in rows]
    middle.vlines(positions, p50, p99, color="#9aa0a6", lw=2)
    for key, marker, colour in (
        ("p50_ms", "o", "#9ecae1"),
        ("p95_ms", "s", "#4292c6"),
        ("p99_ms", "^", "#08519c"),
    ):
        values = [r[key] or math.nan for r in rows]
        middle.scatter(positions, values, marker=marker, color=colour, s=36, zorder=3)
        middle.scatter([], [], marker=marker, color=colour, label=key.removesuffix("_ms"))
    known = [v for r in rows for v in (r["p50_ms"], r["p99_ms"]) if v]
    if known:
        middle.set_yscale("log")
        middle.set_ylim(min(known) / 1.6, max(known) * 1.6)
        plain = FuncFormatter(lambda value, _pos: f"{value:g}")
        middle.yaxis.set_major_formatter(plain)
        middle.yaxis.set_minor_formatter(plain)
        middle.tick_params(axis="y", which="minor", labelsize=7)
    middle.legend(fontsize=8, loc="upper left", ncols=3, frameon=False)

    bottom.set_title("Efficiency = throughput / ceiling", fontsize=10, loc="left")
    efficiencies = [r["efficiency"] or 0 for r in rows]
    hatch_saturated(bottom.bar(positions, efficiencies, width=0.6, color=colours))
    for position, row in zip(positions, rows, strict=True):
        if row["efficiency"] is None:
            bottom.text(position, 0.03, "n/a", ha="center", va="bottom", fontsize=9)
    bottom.axhline(1.0, color="black", linewidth=1, linestyle="--")
    bottom.set_ylim(0, max([1.15, *[e * 1.1 for e in efficiencies]]))
    figure.tight_layout()
    return _svg(figure)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1400px; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 2px solid #e3e3e8;
     padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .4rem; }
.sub { color: #666; margin-top: 0; }
.env { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; }
.card { background: #f7f7fa; border: 1px solid #e3e3e8; border-radius: 8px; padding: .6rem 1rem;
        overflow-x: auto; }
.card table td, .card table th { padding: .1rem .6rem .1rem 0; border: 0; background: none; }
.warn { background: #fff4e5; border: 1px solid #f0b429; border-radius: 8px; padding: .6rem 1rem;
        margin: 1rem 0; }
.bad { background: #fde7e9; border-color: #d93025; }
.plot svg { max-width: 100%; height: auto; }
.model { color: #555; font-size: .92rem; margin: .2rem 0 .6rem; }
table.summary { border-collapse: collapse; font-size: .85rem; width: 100%; }
table.summary th, table.summary td { border-bottom: 1px solid #e3e3e8; padding: .3rem .5rem;
        white-space: nowrap; }
table.summary th { background: #f0f0f5; text-align: left; position: sticky; top: 0; }
table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary tr:nth-child(even) td { background: #fafafc; }
table.summary tr.saturated td { background: #fde7e9; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .78rem;
         background: #d93025; color: white; font-weight: 600; }
.na { color: #999; }
.scroll { overflow-x: auto; }
footer { margin-top: 2rem; color: #666; font-size: .85rem; }
"""

TABLE_COLUMNS = [
    ("cell", "cell"),
    ("config", "configuration"),
    ("endpoint", "endpoint"),
    ("users", "users"),
    ("generator_saturated", "generator"),
    ("workers_lost", "workers lost"),
    ("rps", "req/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("requests", "requests"),
    ("failures", "failures"),
    ("failure_ratio", "fail ratio"),
    ("ceiling_model", "ceiling model"),
    ("ceiling_rps", "ceiling req/s"),
    ("efficiency", "efficiency"),
    ("cpu_s_per_request", "CPU s/req"),
    ("app_cpu_cores", "app CPU cores"),
    ("app_cpu_source", "app CPU from"),
    ("app_cpus", "app CPUs"),
    ("throttled_periods", "throttled periods"),
    ("throttled_ratio", "throttled ratio"),
    ("throttled_s", "throttled s"),
    ("peak_db_connections", "peak DB conns"),
    ("loadgen_cpu_peak_pct", "loadgen CPU peak %"),
    ("loadgen_cpu_mean_pct", "loadgen CPU mean %"),
    ("loadgen_process_cores", "busiest Locust proc cores"),
    ("db_mode", "db mode"),
    ("delay_s", "delay s"),
    ("server_slots", "server slots"),
    ("pool_size", "pool size"),
    ("top_failure", "top failure"),
    ("note", "note"),
]

# Cells whose numbers do not measure the server as they should: the flag, what
# the page calls it, what it means.
CELL_WARNINGS = [
    (
        "generator_saturated",
        "Saturated load generator",
        "these numbers measure the generator, not the server.",
    ),
    (
        "workers_lost",
        "Load generator worker lost mid-run",
        "Locust restarted its statistics then, so these figures cover only the rest of the run.",
    ),
]

MODEL_TEXT = {
    "littles_law": "Delay-bound: ceiling = min(users, server slots, pool size when the "
    "request holds a pooled connection) / delay (Little's law).",
    "cpu": "CPU-bound: ceiling = app CPUs / CPU-seconds per request, CPU-seconds from the "
    "app unit's cgroup accounting.",
}


def _cell_html(key, value):
    esc = html.escape
    if key == "generator_saturated":
        if value is None:
            return '<td class="na">n/a</td>'
        return '<td><span class="badge">SATURATED</span></td>' if value else "<td>ok</td>"
    if value is None:
        return '<td class="na">n/a</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int | float):
        return f'<td class="num">{esc(str(value))}</td>'
    return f"<td>{esc(str(value))}</td>"


def _kv_table(mapping):
    esc = html.escape
    rows = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(_plain(v))}</td></tr>" for k, v in mapping.items()
    )
    return f"<table>{rows}</table>"


def _plain(value):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def environment_html(environment):
    esc = html.escape
    if not environment:
        return '<div class="warn">environment.json is missing: versions and limits unknown.</div>'
    run = {
        k: environment.get(k)
        for k in ("run_id", "substrate", "started", "finished", "git_commit", "git_dirty")
        if k in environment
    }
    limits = environment.get("limits") or {}
    enforced = limits.get("unit_limits_enforced")
    if enforced is True:
        verdict = "Unit limits (CPUQuota/MemoryMax) were enforced."
    elif enforced is False:
        verdict = (
            "Unit limits were written but NOT enforced: the node limits (node_cpus, "
            "node_memory_mb) are the ones that applied."
        )
    else:
        verdict = "Whether unit limits were enforced is not recorded."
    hosts = environment.get("hosts") or []
    host_rows = "".join(
        "<tr>"
        f"<td>{esc(str(h.get('name', '?')))}</td>"
        f"<td>{esc(', '.join(h.get('groups') or []))}</td>"
        f"<td>{esc(_plain(h.get('node_cpus')))}</td>"
        f"<td>{esc(_plain(h.get('node_memory_mb')))}</td>"
        "</tr>"
        for h in hosts
    )
    host_table = (
        "<table><tr><th>host</th><th>groups</th><th>CPUs</th><th>memory MB</th></tr>"
        f"{host_rows}</table>"
        if hosts
        else "<p>no hosts recorded</p>"
    )
    extra = {
        k: v
        for k, v in environment.items()
        if k not in {*run, "limits", "hosts", "versions"} and not isinstance(v, dict | list)
    }
    return (
        '<div class="env">'
        f'<div class="card"><h3>Run</h3>{_kv_table({**run, **extra})}</div>'
        f'<div class="card"><h3>Versions</h3>{_kv_table(environment.get("versions") or {})}</div>'
        f'<div class="card"><h3>Limits</h3>{_kv_table(limits)}<p><strong>{esc(verdict)}</strong>'
        "</p></div>"
        f'<div class="card"><h3>Hosts (node limits)</h3>{host_table}</div>'
        "</div>"
    )


def render_html(run_dir, environment, rows):
    esc = html.escape
    run_dir = Path(run_dir)
    title = f"Flask Deploy Lab — run {run_dir.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="sub">{len(rows)} cells · throughput, latency and efficiency against the '
        "theoretical ceiling of each configuration</p>",
        "<h2>Environment</h2>",
        environment_html(environment),
    ]
    for key, title, meaning in CELL_WARNINGS:
        flagged = [r["cell"] for r in rows if r[key]]
        if flagged:
            parts.append(
                f'<div class="warn bad"><strong>{esc(title)}</strong> in '
                f"{esc(', '.join(flagged))}: {esc(meaning)}</div>"
            )
    failing = [r for r in rows if r["failures"]]
    if failing:
        names = ", ".join(f"{r['cell']} ({r['failures']})" for r in failing)
        parts.append(f'<div class="warn"><strong>Failed requests</strong> in {esc(names)}.</div>')

    for endpoint in dict.fromkeys(r["endpoint"] for r in rows):
        endpoint_rows = [r for r in rows if r["endpoint"] == endpoint]
        model = MODEL_TEXT.get(endpoint_rows[0]["ceiling_model"], "")
        parts.append(f'<h2 id="endpoint-{esc(endpoint)}">/{esc(endpoint)}</h2>')
        parts.append(f'<p class="model">{esc(model)} Hatched bars: saturated generator.</p>')
        parts.append(f'<div class="plot">{endpoint_plot(endpoint_rows)}</div>')

    parts.append('<h2 id="summary">All cells</h2><div class="scroll"><table class="summary">')
    parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for _, h in TABLE_COLUMNS) + "</tr>")
    for row in rows:
        css = ' class="saturated"' if row["generator_saturated"] or row["workers_lost"] else ""
        cells = []
        for key, _ in TABLE_COLUMNS:
            if key == "cell" and (run_dir / row["cell"] / "locust_report.html").is_file():
                href = esc(f"{row['cell']}/locust_report.html")
                cells.append(f'<td><a href="{href}">{esc(row["cell"])}</a></td>')
            else:
                cells.append(_cell_html(key, row[key]))
        parts.append(f"<tr{css}>{''.join(cells)}</tr>")
    parts.append("</table></div>")
    parts.append(
        "<footer>Throughput and percentiles: the Aggregated row of each cell's "
        "locust_stats.csv. CPU, throttling, connections and generator CPU: sampler rows "
        "inside the measured window. n/a: not measured, never estimated. "
        'Data: <a href="summary.csv">summary.csv</a>, <a href="summary.json">summary.json'
        "</a>.</footer></body></html>"
    )
    return "\n".join(parts)


def write_report(run_dir):
    run_dir = Path(run_dir)
    environment, rows = summarize_run(run_dir)
    write_csv(rows, run_dir / "summary.csv")
    write_json(run_dir, environment, rows, run_dir / "summary.json")
    (run_dir / "index.html").write_text(render_html(run_dir, environment, rows), encoding="utf-8")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write index.html, summary.csv and summary.json for a load-test run."
    )
    parser.add_argument("run_dir", help="reports/<run-id>")
    args = parser.parse_args(argv)
    try:
        rows = write_report(args.run_dir)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {len(rows)} cells -> {Path(args.run_dir) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
