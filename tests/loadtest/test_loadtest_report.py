"""flask_deploy_lab.report: fixture runs in, hand-computed table, ceilings and page out."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from flask_deploy_lab import catalogue
from flask_deploy_lab.report import cli, exact, hey, html, locust, model, plots, samples, summary
from flask_deploy_lab.report.errors import ReportError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CATALOGUE = catalogue.load()
# servers by what the catalogue says of them, never by name
UNBOUNDED = next(n for n, s in CATALOGUE.servers.items() if s.per_process == "unbounded")
BOUNDED = next(n for n, s in CATALOGUE.servers.items() if s.per_process == "threads")

# What the note says of a cell without locust_requests.csv: its figures are Locust's.
HISTORY_NOTE = (
    "no locust_requests.csv: req/s from locust_stats_history.csv, "
    "latencies Locust's own (percentiles rounded to its buckets)"
)

# Every fixture cell ran 10 s: the stats history has users running from T0+1 to
# T0+10, so the measured window is [T0+1, T0+10] and the sampler rows inside it
# are the nine at T0+1.5 ... T0+9.5 (8 s apart). Rows outside the window carry
# idle CPU and decoy DB connection counts that must not show up below.
# Throughput is the stats history's Total Request Count from the first row at
# or after T0+1 + the mean latency (T0+2 in every cell) to T0+10, over 8 s, and
# the latencies are Locust's: no cell has a request log (locust_requests.csv),
# so none says what was in flight at the stop, and none has a locust.log.
# Validity: uwsgi--sleep--u50's loadgen2 has one sample at 93 % (its mean 19.2,
# its host's busiest sample), gevent--db--u200's loadgen1 is above 90 % in
# every sample, flask--render--u10 has no ceiling; gunicorn--json--u20 is valid,
# though its loadgen1 has a sample at 99 % (and a Locust process at 0.99) just
# after the window.
NO_INPROCESS_NOTE = (
    "no ceiling: no in-process CPU-seconds per request of the app "
    "(cell.json's inprocess_cpu_s_per_request, from inprocess.json)"
)
NOT_LOGGED = {
    "unfinished_requests": None,
    "unfinished_oldest_ms": None,
    "cutoff_requests": None,
    "locust_cpu_warning": None,
}
EXPECTED = {
    "uwsgi--sleep--u50": {
        "config": "uwsgi",
        "endpoint": "sleep",
        "users": 50,
        "valid": False,
        "invalid_reasons": ["load generator at 93 % CPU in a sample (above 90 %)"],
        **NOT_LOGGED,
        "requests": 952,
        "failures": 0,
        "failure_ratio": 0.0,
        # (952 at T0+10 - 190 at T0+2) / 8 s; Locust's own figure is 95.2
        "rps": 95.25,
        "locust_rps_reported": 95.2,
        "mean_ms": 525.3,
        "p50_ms": 520,
        "p95_ms": 580,
        "p99_ms": 640,
        "max_ms": 1630.5,
        # 0.1 s * 50 users / min(16 slots, 10 connections)
        "ideal_latency_ms": 500.0,
        # (50 / 95.25) / 0.52531 s
        "identity_ratio": 0.999,
        # no hey in this run
        "hey_rps": None,
        "hey_requests": None,
        "clients_agree": None,
        "ceiling_model": "littles_law",
        # min(50 users, 16 server slots, 10 pooled connections) / 0.1 s
        "ceiling_rps": 100.0,
        # 95.25 / 100
        "efficiency": 0.953,
        # unit usage grows 300,000 us per second in the window: 0.3 cores; 0.3 / 95.25
        "app_cpu_cores": 0.3,
        "app_cpu_source": "unit",
        "cpu_s_per_request": 0.00315,
        # a delay-bound cell: nothing measured in-process, so no overhead
        "inprocess_cpu_s_per_request": None,
        "server_overhead_us": None,
        # nr_throttled flat; nr_periods +10/s over 8 s = 80
        "throttled_periods": 0,
        "throttled_ratio": 0.0,
        "throttled_s": 0.0,
        # 10-11 inside the window, 25 outside it
        "peak_db_connections": 11,
        # loadgen1 20,22,24,26,28,30,31,25,23: peak 31, mean 229 / 9 = 25.4;
        # loadgen2 10 but one 93: peak 93, mean 173 / 9 = 19.2. The busiest
        # sample is loadgen2's, the busiest mean loadgen1's, both below 90
        "loadgen_cpu_peak_pct": 93.0,
        "loadgen_cpu_mean_pct": 25.4,
        "loadgen_process_cores": 0.2,
        "loadgen_process_peak_cores": 0.2,
        # one sample above 90 % is enough
        "generator_saturated": True,
        "top_failure": None,
        "note": HISTORY_NOTE,
    },
    "gunicorn--json--u20": {
        "config": "gunicorn",
        "endpoint": "json",
        "users": 20,
        "valid": True,
        "invalid_reasons": [],
        **NOT_LOGGED,
        "requests": 8000,
        "failures": 0,
        "failure_ratio": 0.0,
        # (8000 - 1600) / 8 s, as Locust's own figure
        "rps": 800.0,
        "locust_rps_reported": 800.0,
        "mean_ms": 24.8,
        "p50_ms": 24,
        "p95_ms": 40,
        "p99_ms": 55,
        "max_ms": 210.3,
        # not delay-bound: no ideal latency; (20 / 800) / 0.0248 s
        "ideal_latency_ms": None,
        "identity_ratio": 1.008,
        "ceiling_model": "cpu",
        # the app alone, in-process: 0.0008 CPU-s per request (cell.json);
        # 1 CPU / 0.0008 = 1250 req/s, and 800 / 1250 = 0.64
        "inprocess_cpu_s_per_request": 0.0008,
        "ceiling_rps": 1250.0,
        "efficiency": 0.64,
        # the server: 0.8 cores / 800 req/s = 0.001 CPU-s per request, of which
        # (0.001 - 0.0008) x 1e6 = 200 us are the server's own
        "app_cpu_cores": 0.8,
        "app_cpu_source": "unit",
        "cpu_s_per_request": 0.001,
        "server_overhead_us": 200.0,
        # nr_throttled +3/s, nr_periods +10/s, throttled_usec +20,000/s, over 8 s
        "throttled_periods": 24,
        "throttled_ratio": 0.3,
        "throttled_s": 0.16,
        "peak_db_connections": 0,
        # loadgen1 40,45,50,55,62.5,50,50,47.5,50: peak 62.5, mean 450 / 9; its
        # 99 % (and 0.99 cores) at T0+10.5 is after the window
        "loadgen_cpu_peak_pct": 62.5,
        "loadgen_cpu_mean_pct": 50.0,
        "loadgen_process_cores": 0.5,
        "loadgen_process_peak_cores": 0.5,
        "generator_saturated": False,
        "top_failure": None,
        "note": HISTORY_NOTE,
    },
    "gevent--db--u200": {
        "config": "gevent",
        "endpoint": "db",
        "users": 200,
        "valid": False,
        "invalid_reasons": [
            "load generator at 99 % CPU in a sample (above 90 %)",
            "a Locust process at 0.99 cores in a sample (above 0.9)",
        ],
        "requests": 4000,
        "failures": 0,
        "rps": 400.0,
        "p50_ms": 480,
        "p95_ms": 700,
        "p99_ms": 900,
        "ceiling_model": "cpu",
        # in-process 0.001 CPU-s per request: 1 / 0.001 = 1000 req/s; 400 / 1000
        "inprocess_cpu_s_per_request": 0.001,
        "ceiling_rps": 1000.0,
        "efficiency": 0.4,
        # 0.5 cores / 400 req/s = 0.00125; (0.00125 - 0.001) x 1e6 = 250 us
        "app_cpu_cores": 0.5,
        "cpu_s_per_request": 0.00125,
        "server_overhead_us": 250.0,
        # no quota: no periods, so no ratio
        "throttled_periods": 0,
        "throttled_ratio": None,
        "throttled_s": 0.0,
        "peak_db_connections": 201,
        # loadgen1 92,95,96,97,99,95,94,93,94: mean 855 / 9 = 95 > 90
        "loadgen_cpu_peak_pct": 99.0,
        "loadgen_cpu_mean_pct": 95.0,
        # busiest Locust process: .90,.95,.96,.97,.99,.95,.94,.93,.96: mean 8.55 / 9
        # = 0.95, busiest sample 0.99 > 0.9
        "loadgen_process_cores": 0.95,
        "loadgen_process_peak_cores": 0.99,
        "generator_saturated": True,
    },
    "flask--render--u10": {
        "config": "flask",
        "endpoint": "render",
        "users": 10,
        # no ceiling: nothing to measure its throughput against
        "valid": False,
        "invalid_reasons": ["no ceiling"],
        "requests": 555,
        "failures": 3,
        # 3 / 555 = 0.005405...
        "failure_ratio": 0.0054,
        "rps": 55.5,
        "ceiling_model": "cpu",
        # no in-process figure in cell.json: no ceiling; the app host's samples
        # have no unit columns: no CPU-s per request of the server, host CPU instead
        "inprocess_cpu_s_per_request": None,
        "ceiling_rps": None,
        "efficiency": None,
        "cpu_s_per_request": None,
        "server_overhead_us": None,
        "app_cpu_cores": 0.9,
        "app_cpu_source": "host",
        "throttled_periods": None,
        "throttled_ratio": None,
        "throttled_s": None,
        "peak_db_connections": 1,
        "generator_saturated": False,
        "top_failure": "GET /render: CatchResponseError('HTTP 500, expected 200')",
        "note": f"{HISTORY_NOTE}; {NO_INPROCESS_NOTE}; "
        "no CPU-seconds per request of the server: no cgroup CPU accounting for the app unit",
    },
}


# The files' columns and the page's table, pinned: the schema (summary.Row)
# generates all three, and readers (bench.py, spreadsheets) rely on them.
SUMMARY_CSV_COLUMNS = [
    "cell", "config", "server", "db_mode", "endpoint", "users", "valid", "invalid_reasons",
    "requests", "failures", "failure_ratio", "rps", "locust_rps_reported", "app_hosts_rps",
    "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "hdr_requests",
    "hdr_p50_ms", "hdr_p90_ms", "hdr_p95_ms", "hdr_p99_ms", "hdr_p999_ms", "hdr_max_ms",
    "locust_p50_ms", "locust_p90_ms", "locust_p95_ms", "locust_p99_ms", "locust_p999_ms",
    "locust_max_ms", "ideal_latency_ms", "identity_ratio", "unfinished_requests",
    "unfinished_oldest_ms", "cutoff_requests", "hey_requests", "hey_failures", "hey_rps",
    "hey_mean_ms", "hey_p50_ms", "hey_p90_ms", "hey_p99_ms", "hey_p999_ms", "hey_identity_ratio",
    "clients_agree", "proxy_requests", "proxy_p50_ms", "proxy_p99_ms", "upstream_p50_ms",
    "upstream_p99_ms", "app_queue_p50_ms", "app_queue_p99_ms", "app_p50_ms", "app_p99_ms",
    "ceiling_model", "ceiling_rps", "efficiency", "cpu_s_per_request",
    "inprocess_cpu_s_per_request", "server_overhead_us", "app_cpu_cores", "app_cpu_source",
    "app_cpus", "throttled_periods", "throttled_ratio", "throttled_s", "peak_db_connections",
    "tasks_done", "tasks_failed", "tasks_unfinished", "task_p50_ms", "task_p99_ms",
    "broker_queue_max", "broker_queue_mean", "loadgen_cpu_peak_pct", "loadgen_cpu_mean_pct",
    "loadgen_process_cores", "loadgen_process_peak_cores", "machine_busy_cores", "machine_cpus",
    "locust_cpu_warning",
    "generator_saturated", "workers_lost", "delay_s", "server_slots", "pool_size", "top_failure",
    "note",
]  # fmt: skip
TABLE_HEADERS = [
    "cell", "configuration", "endpoint", "users", "valid", "invalid because", "generator",
    "workers lost", "req/s", "Locust req/s", "req/s per app host", "hey req/s", "clients agree",
    "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "HDR p50 ms", "HDR p99 ms", "HDR max ms",
    "Locust p50 ms", "Locust p99 ms", "Locust max ms", "ideal ms", "identity", "in flight at stop",
    "oldest in flight ms", "cut off", "hey mean ms", "hey p50 ms", "hey p99 ms", "hey identity",
    "nginx p50 ms", "nginx p99 ms", "upstream p50 ms", "upstream p99 ms", "app queue p99 ms",
    "app p99 ms", "requests", "failures",
    "fail ratio", "HDR requests", "hey requests", "hey non-2xx", "nginx requests",
    "ceiling model", "ceiling req/s", "efficiency", "CPU s/req", "in-process CPU s/req",
    "server overhead µs", "app CPU cores", "app CPU from", "app CPUs", "throttled periods",
    "throttled ratio", "throttled s", "peak DB conns", "tasks done", "tasks failed",
    "tasks unfinished", "task p50 ms", "task p99 ms", "queue max", "queue mean",
    "loadgen CPU peak %", "loadgen CPU mean %", "busiest Locust proc cores",
    "busiest Locust proc peak cores", "machine busy CPUs", "machine CPUs", "Locust CPU warning",
    "db mode", "delay s", "server slots",
    "pool size", "top failure", "note",
]  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The fixture run, copied and reported on once for the tests that only read the output."""
    run_dir = tmp_path_factory.mktemp("reports") / "20261121-140000"
    shutil.copytree(FIXTURES / "run", run_dir)
    assert cli.main([str(run_dir)]) == 0
    return run_dir


def test_summary_json_holds_the_hand_computed_numbers(written):
    document = json.loads((written / "summary.json").read_text())
    rows = {row["cell"]: row for row in document["cells"]}
    assert set(rows) == set(EXPECTED)
    for cell, expected in EXPECTED.items():
        actual = {key: rows[cell][key] for key in expected}
        assert actual == expected, cell
    assert document["environment"]["git_commit"] == "0123abc"


def test_cells_are_ordered_by_endpoint_as_in_the_catalogue(written, monkeypatch):
    # (the order is catalogue.yml's: json, db, sleep, render for this run; no list of
    # endpoint names here, tests/repo/test_catalogue.py allows none outside it)
    order = list(catalogue.load().endpoints)
    fixture_endpoints = {cell["endpoint"] for cell in EXPECTED.values()}
    document = json.loads((written / "summary.json").read_text())
    endpoints = [row["endpoint"] for row in document["cells"]]
    assert len(endpoints) == len(fixture_endpoints) == 4
    assert endpoints == sorted(fixture_endpoints, key=order.index)
    # reverse the catalogue and the rows follow it
    real = catalogue.load()
    reversed_endpoints = dict(reversed(real.endpoints.items()))
    monkeypatch.setattr(
        catalogue, "load", lambda: dataclasses.replace(real, endpoints=reversed_endpoints)
    )
    rows = model.summarize_run(written)[1]
    assert [row.endpoint for row in rows] == endpoints[::-1]


def test_summary_csv_has_every_column_and_matches_json(written):
    with (written / "summary.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == [column.name for column in summary.COLUMNS]
        assert reader.fieldnames == SUMMARY_CSV_COLUMNS
        rows = {row["cell"]: row for row in reader}
    assert rows["gunicorn--json--u20"]["efficiency"] == "0.64"
    assert rows["gunicorn--json--u20"]["ceiling_rps"] == "1250.0"
    assert rows["gunicorn--json--u20"]["inprocess_cpu_s_per_request"] == "0.0008"
    assert rows["gunicorn--json--u20"]["server_overhead_us"] == "200.0"
    assert rows["flask--render--u10"]["server_overhead_us"] == ""
    assert rows["flask--render--u10"]["efficiency"] == ""
    assert rows["gevent--db--u200"]["generator_saturated"] == "True"
    # validity: two columns, the reasons joined by "; "
    assert rows["gevent--db--u200"]["valid"] == "False"
    assert rows["gevent--db--u200"]["invalid_reasons"] == (
        "load generator at 99 % CPU in a sample (above 90 %); "
        "a Locust process at 0.99 cores in a sample (above 0.9)"
    )
    assert rows["gunicorn--json--u20"]["valid"] == "True"
    assert rows["gunicorn--json--u20"]["invalid_reasons"] == ""


def test_page_is_self_contained_with_plots_table_and_flags(written):
    page = (written / "index.html").read_text()
    # one figure (three panels) per endpoint, inline
    assert page.count("<svg") == 4
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    for cell in EXPECTED:
        assert f"<td>{cell}</td>" in page or f">{cell}</a>" in page
    assert '<a href="gunicorn--json--u20/locust_report.html">' in page
    # no locust_report.html in that cell: no dead link
    assert "flask--render--u10/locust_report.html" not in page
    # every invalid cell is marked, says why, and its figures are struck through
    invalid_rows = re.findall(
        r'<tr class="invalid" title="invalid: ([^"]*)">(.*?)</tr>', page, re.S
    )
    assert len(invalid_rows) == 3
    by_cell = {
        re.search(r">([^<]+--[^<]+)<", row).group(1): (title, row) for title, row in invalid_rows
    }
    assert set(by_cell) == {"uwsgi--sleep--u50", "gevent--db--u200", "flask--render--u10"}
    title, row = by_cell["gevent--db--u200"]
    assert title == (
        "load generator at 99 % CPU in a sample (above 90 %); "
        "a Locust process at 0.99 cores in a sample (above 0.9)"
    )
    assert '<span class="badge">INVALID</span>' in row
    assert '<span class="badge">SATURATED</span>' in row
    assert f'<td class="reasons">{title}</td>' in row
    # its figures: throughput, latency, efficiency, all struck (class fig)
    assert '<td class="num fig">400.0</td>' in row
    assert '<td class="num fig">0.5</td>' in row
    # not its parameters, nor what the rules read of the load generator
    assert '<td class="num">200</td>' in row
    assert '<td class="num">99.0</td>' in row
    assert '<td class="num fig">200</td>' not in row
    assert "no ceiling</td>" in by_cell["flask--render--u10"][1]
    valid_row = re.search(r"<tr>(<td><a href=\"gunicorn--json--u20/.*?)</tr>", page, re.S).group(1)
    assert "INVALID" not in valid_row
    assert '<td class="reasons"></td>' in valid_row
    # the rules that mark them head the page, each with its cells
    assert "3 of 4 cells invalid</strong>" in page
    assert "Saturated load generator</strong> in gevent--db--u200, uwsgi--sleep--u50:" in page
    assert "No ceiling</strong> in flask--render--u10:" in page
    assert "Closed-loop identity broken" not in page
    # the figures hatch them
    assert "Hatched bars: invalid cells" in page
    assert "n/a" in page
    # the environment heads the page, with the verdict on unit limits
    assert page.index("Environment") < page.index("<svg")
    assert "0123abc" in page
    assert "NOT enforced" in page
    assert "2.47.0" in page
    # no cell of this run is a step of a ladder: the page keeps its old layout
    assert "Concurrency ladder" not in page


def test_the_pages_table_is_the_schemas(written):
    page = (written / "index.html").read_text()
    table = page[page.index('<table class="summary">') :]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers == [column.header for column in summary.TABLE_COLUMNS] == TABLE_HEADERS
    # the positions run 0..n-1: each used once, none skipped
    assert [c.table for c in summary.TABLE_COLUMNS] == list(range(len(TABLE_HEADERS)))
    # each heading explains its column
    for column in summary.TABLE_COLUMNS:
        assert f'title="{column.title}"' in table.replace("&#39;", "'"), column.name
    # one <td> per column in every row
    for row in re.findall(r"<tr[^>]*>(<td.*?)</tr>", table, re.S):
        assert row.count("<td") == len(TABLE_HEADERS)


def test_the_page_escapes_what_the_run_says(tmp_path):
    _minimal_cell(
        tmp_path,
        "c",
        {"server": "uwsgi", "endpoint": "json", "users": 1, "config": "<b>uwsgi</b> & co"},
    )
    (tmp_path / "environment.json").write_text(json.dumps({"run_id": "<script>x</script>"}))
    environment, rows = model.summarize_run(tmp_path)
    page = html.render_html(tmp_path, environment, rows)
    assert "&lt;b&gt;uwsgi&lt;/b&gt; &amp; co" in page
    assert "<b>uwsgi" not in page
    assert "<script" not in page


def test_rows_are_rounded_by_the_schema():
    row = summary.Row(**{**dict.fromkeys(SUMMARY_CSV_COLUMNS), "rps": 95.2049, "p50_ms": 24.55})
    assert row.rps == 95.2  # digits=2
    assert row.p50_ms == 24.55  # as Locust wrote it


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        # /slow calls the upstream API and holds no DB connection: the pool does not bound it
        ({"endpoint": "slow", "users": 50, "server_slots": 16, "pool_size": 10}, 160.0),
        ({"endpoint": "sleep", "users": 50, "server_slots": 16, "pool_size": 10}, 100.0),
        ({"endpoint": "sleep", "users": 5, "server_slots": 16, "pool_size": 10}, 50.0),
        ({"endpoint": "sleep", "users": 50, "server_slots": 16, "db_mode": "naive"}, 160.0),
        ({"endpoint": "sleep", "users": 50, "server_slots": None}, None),
        ({"endpoint": "sleep", "users": 50, "server_slots": 16, "delay_s": None}, None),
        ({"endpoint": "sleep", "users": 50, "server_slots": 16, "delay_s": 0}, None),
        # a server with no bound: the users (and the pool, where it applies) bound it
        ({"server": UNBOUNDED, "endpoint": "slow", "users": 50, "server_slots": None}, 500.0),
        ({"server": UNBOUNDED, "endpoint": "sleep", "users": 50, "pool_size": 10}, 100.0),
        ({"server": UNBOUNDED, "endpoint": "sleep", "users": 5, "pool_size": 10}, 50.0),
    ],
)
def test_littles_law_ceiling(cell, expected):
    result = model.littles_law_ceiling(_cell({"db_mode": "pool", "delay_s": 0.1, **cell}))
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def _cell(values):
    """A cell as cell.json would give it, for the ceiling functions."""
    return model.Cell(**{"directory": Path("c"), "server": BOUNDED, **values})


@pytest.mark.parametrize(
    ("cell", "expected_s"),
    [
        # the delay, plus the wait of the users beyond the slots: 0.1 * 50 / 16
        ({"endpoint": "slow", "users": 50, "server_slots": 16}, 0.3125),
        ({"endpoint": "slow", "users": 8, "server_slots": 16}, 0.1),
        # the pool bounds /sleep: 0.1 * 50 / 10
        ({"endpoint": "sleep", "users": 50, "server_slots": 16}, 0.5),
        ({"server": UNBOUNDED, "endpoint": "slow", "users": 400, "server_slots": None}, 0.1),
        ({"endpoint": "slow", "users": 50, "server_slots": None}, None),
        ({"endpoint": "slow", "users": 50, "server_slots": 16, "delay_s": 0}, None),
    ],
)
def test_ideal_latency(cell, expected_s):
    result = model.ideal_latency_s(
        _cell({"db_mode": "pool", "pool_size": 10, "delay_s": 0.1, **cell})
    )
    if expected_s is None:
        assert result is None
    else:
        assert result == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("app_cpus", "inprocess_s", "expected"),
    [
        # 1 CPU, 0.8 ms of CPU a request in-process: 1 / 0.0008
        (1, 0.0008, 1250.0),
        # 2 CPUs, 0.5 ms: 2 / 0.0005
        (2, 0.0005, 4000.0),
        # half a CPU (an enforced CPUQuota=50%), 1 ms: 0.5 / 0.001
        (0.5, 0.001, 500.0),
        (None, 0.001, None),
        (1, None, None),
        (1, 0.0, None),
    ],
)
def test_cpu_ceiling(app_cpus, inprocess_s, expected):
    result = model.cpu_ceiling(app_cpus, inprocess_s)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize(
    ("server_s", "inprocess_s", "expected_us"),
    [
        # the server's 1 ms of CPU a request against the app's 0.8 ms alone
        (0.001, 0.0008, 200.0),
        (0.00125, 0.001, 250.0),
        # no overhead
        (0.0005, 0.0005, 0.0),
        # below the in-process cost: said as it is (the noise of the two figures)
        (0.00079, 0.0008, -10.0),
        (None, 0.0008, None),
        (0.001, None, None),
    ],
)
def test_server_overhead_us(server_s, inprocess_s, expected_us):
    result = model.server_overhead_us(server_s, inprocess_s)
    if expected_us is None:
        assert result is None
    else:
        assert result == pytest.approx(expected_us)


def _cpu_bound_cell(run_dir, name, *, rps, cores, users, inprocess_s, app_cpus=1):
    """A /json cell served at `rps` while the app unit used `cores` CPUs: a stats
    history at a steady `rps` and the unit's CPU counter rising `cores` a second,
    from t=100 to t=110 (the measured window)."""
    server = name.split("--")[0]
    cell = {
        "server": server, "endpoint": "json", "users": users, "app_cpus": app_cpus,
        "app_hosts": ["app1"], "inprocess_cpu_s_per_request": inprocess_s,
    }  # fmt: skip
    cell_dir = _minimal_cell(run_dir, name, cell)
    lines = ["Timestamp,User Count,Type,Name,Total Request Count"]
    lines += [f"{100 + t},{users},,Aggregated,{rps * t}" for t in range(11)]
    (cell_dir / locust.HISTORY).write_text("\n".join(lines) + "\n")
    rows = [f"{100.5 + t},{round(cores * 1e6 * t)}" for t in range(10)]
    _samples(cell_dir, "app1", "time,unit_cpu_usage_usec", rows)
    return cell_dir


def test_efficiency_follows_throughput_not_the_cpu_a_server_burns(tmp_path):
    """Two servers of the same app on the same CPU: one serves 1000 req/s using 0.6
    of the CPU, the other 500 req/s using 0.9 of it. The app alone costs 0.5 ms of
    CPU a request, so the ceiling of both is 1 CPU / 0.0005 s = 2000 req/s, and the
    one that serves more is the more efficient: 0.5 against 0.25.

    The old ceiling, app CPUs / the server's own CPU-seconds per request, made
    efficiency the CPU utilisation -- 0.6 against 0.9 -- and ranked the server
    that burnt more CPU on each request first."""
    # users: req/s x Locust's mean latency of the copied stats (24.8 ms), rounded
    _cpu_bound_cell(tmp_path, "lean--json", rps=1000, cores=0.6, users=25, inprocess_s=0.0005)
    _cpu_bound_cell(tmp_path, "heavy--json", rps=500, cores=0.9, users=12, inprocess_s=0.0005)
    rows = {row.cell: row for row in model.summarize_run(tmp_path)[1]}
    lean, heavy = rows["lean--json"], rows["heavy--json"]
    assert (lean.rps, heavy.rps) == (1000.0, 500.0)
    assert (lean.app_cpu_cores, heavy.app_cpu_cores) == (0.6, 0.9)
    # the servers' CPU-seconds per request: 0.6 / 1000 and 0.9 / 500
    assert (lean.cpu_s_per_request, heavy.cpu_s_per_request) == (0.0006, 0.0018)
    assert lean.ceiling_model == heavy.ceiling_model == "cpu"
    assert lean.ceiling_rps == heavy.ceiling_rps == 2000.0
    # 1000 / 2000 and 500 / 2000
    assert (lean.efficiency, heavy.efficiency) == (0.5, 0.25)
    # what each server costs a request beyond the app: (0.0006 - 0.0005) x 1e6 and
    # (0.0018 - 0.0005) x 1e6 CPU-microseconds
    assert (lean.server_overhead_us, heavy.server_overhead_us) == (100.0, 1300.0)
    assert lean.inprocess_cpu_s_per_request == heavy.inprocess_cpu_s_per_request == 0.0005
    # efficiency ranks the servers as their throughput does, and is not utilisation
    by_efficiency = sorted(rows.values(), key=lambda r: r.efficiency)
    assert by_efficiency == sorted(rows.values(), key=lambda r: r.rps)
    for row in rows.values():
        assert row.efficiency != pytest.approx(row.app_cpu_cores / row.app_cpus)
        assert row.valid, row.invalid_reasons


def test_a_cpu_bound_cell_without_its_in_process_cost_has_no_ceiling(tmp_path):
    """The unit's CPU counter gives the server's CPU-seconds per request, never the
    ceiling: without the in-process figure there is none, and the cell is invalid."""
    _cpu_bound_cell(tmp_path, "lean--json", rps=1000, cores=0.6, users=25, inprocess_s=None)
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.cpu_s_per_request == 0.0006
    assert row.ceiling_rps is row.efficiency is row.server_overhead_us is None
    assert NO_INPROCESS_NOTE in row.note
    assert row.invalid_reasons == ("no ceiling",)


def test_the_in_process_cost_gives_the_ceiling_without_the_units_counter(tmp_path):
    """No unit CPU counter (only the host's CPU): the ceiling stands, the server's
    CPU-seconds per request and its overhead are unknown, and the note says why."""
    cell = {
        "server": "uwsgi", "endpoint": "db", "users": 25, "app_cpus": 2, "app_hosts": ["app1"],
        "inprocess_cpu_s_per_request": 0.0004,
    }  # fmt: skip
    cell_dir = _minimal_cell(tmp_path, "uwsgi--db", cell)
    _history(cell_dir, 100, 10, 25)
    _samples(cell_dir, "app1", "time,cpu_busy_cores", [f"{100.5 + t},0.7" for t in range(10)])
    (row,) = model.summarize_run(tmp_path)[1]
    # 2 CPUs / 0.0004 s; the history's 10 req/s of it
    assert (row.ceiling_rps, row.efficiency) == (5000.0, 0.002)
    assert (row.app_cpu_source, row.cpu_s_per_request, row.server_overhead_us) == (
        "host", None, None,
    )  # fmt: skip
    assert "no CPU-seconds per request of the server: no cgroup CPU accounting" in row.note


def test_a_server_without_a_bound_is_told_by_the_catalogue(monkeypatch):
    """server_slots null gives a ceiling only for a server whose catalogue entry
    has no bound; change the entry and the ceiling follows."""
    cell = _cell({"endpoint": "slow", "users": 50, "server_slots": None, "delay_s": 0.5})
    assert model.littles_law_ceiling(cell) is None
    real = catalogue.load()
    servers = {
        **real.servers,
        BOUNDED: dataclasses.replace(real.servers[BOUNDED], per_process="unbounded"),
    }
    monkeypatch.setattr(catalogue, "load", lambda: dataclasses.replace(real, servers=servers))
    assert model.littles_law_ceiling(cell) == pytest.approx(100.0)
    # app hosts running different servers, one of them without a bound
    combined = dataclasses.replace(cell, server=f"{BOUNDED}+no-such-server")
    assert model.littles_law_ceiling(combined) == pytest.approx(100.0)


def test_endpoint_facts_come_from_the_catalogue(monkeypatch):
    """The report keeps no endpoint list: change the catalogue and the ceiling follows."""
    real = catalogue.load()
    delay = catalogue.Param(name="delay", type="float")
    endpoints = {
        **real.endpoints,
        # /slow now holding a pooled connection: the pool bounds it
        "slow": dataclasses.replace(real.endpoints["slow"], holds_db_connection=True),
        # /json now delay-bound: Little's law
        "json": dataclasses.replace(
            real.endpoints["json"], params={"delay": delay}, delay_param="delay"
        ),
    }
    monkeypatch.setattr(catalogue, "load", lambda: dataclasses.replace(real, endpoints=endpoints))
    cell = {"db_mode": "pool", "delay_s": 0.1, "users": 50, "server_slots": 16, "pool_size": 10}
    assert model.littles_law_ceiling(_cell({"endpoint": "slow", **cell})) == pytest.approx(100.0)
    row = model.summarize_cell(
        _cell({"endpoint": "json", **cell, "directory": FIXTURES / "run" / "gunicorn--json--u20"})
    )
    assert row.ceiling_model == "littles_law"
    # min(50 users, 16 slots) / 0.1 s: /json holds no connection, so the pool does not count
    assert row.ceiling_rps == 160.0


def test_cells_of_endpoints_the_catalogue_does_not_know_come_last(tmp_path):
    for name, endpoint in (("a", "no-such-endpoint"), ("b", "tasks"), ("c", "healthz")):
        _minimal_cell(tmp_path, name, {"server": "uwsgi", "endpoint": endpoint, "users": 1})
    rows = model.summarize_run(tmp_path)[1]
    assert [row.endpoint for row in rows] == ["healthz", "tasks", "no-such-endpoint"]
    assert rows[-1].ceiling_model == "cpu"


def _minimal_cell(run_dir, name, cell, stats=True):
    cell_dir = run_dir / name
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(json.dumps(cell))
    if stats:
        source = FIXTURES / "run" / "gunicorn--json--u20" / "locust_stats.csv"
        shutil.copy(source, cell_dir / "locust_stats.csv")
    return cell_dir


def test_cell_without_samples_reports_na_not_numbers(tmp_path):
    _minimal_cell(
        tmp_path,
        "gunicorn--json--u20",
        {"server": "gunicorn", "endpoint": "json", "users": 20, "app_cpus": 1},
    )
    environment, rows = model.summarize_run(tmp_path)
    assert environment is None
    (row,) = rows
    assert row.rps == 800.0
    # without a stats history the rate is Locust's own, and the note says so
    assert "req/s is Locust's own Requests/s: no Total Request Count" in row.note
    assert row.ceiling_rps is None
    assert row.efficiency is None
    assert row.generator_saturated is None
    assert "no cgroup CPU accounting" in row.note
    assert "no load-generator samples" in row.note
    page = html.render_html(tmp_path, environment, rows)
    assert "environment.json is missing" in page


def _history(cell_dir, start, seconds, users):
    """A stats history of Aggregated rows, one a second from `start`, all users running."""
    lines = ["Timestamp,User Count,Type,Name,Total Request Count"]
    lines += [f"{start + t},{users},,Aggregated,{10 * t}" for t in range(seconds + 1)]
    (cell_dir / locust.HISTORY).write_text("\n".join(lines) + "\n")


def _samples(cell_dir, host, header, rows):
    (cell_dir / "samples").mkdir(exist_ok=True)
    (cell_dir / "samples" / f"{host}.csv").write_text("\n".join([header, *rows]) + "\n")


def test_a_busy_locust_process_alone_flags_the_generator(tmp_path):
    cell_dir = _minimal_cell(
        tmp_path, "c", {"server": "gevent", "endpoint": "json", "users": 1, "loadgen_hosts": ["lg"]}
    )
    # the window is [100, 105]
    _history(cell_dir, 100, 5, 1)
    # the host has 4 CPUs and is 25 % busy; its one Locust process uses half a core
    # but for one second, 0.98 of one (and 0.99 after the window, which does not count)
    _samples(
        cell_dir,
        "lg",
        "time,cpu_percent,proc_count,proc_max_cores",
        ["101,25.0,1,0.50", "102,25.0,1,0.50", "103,25.0,1,0.98", "104,25.0,1,0.50",
         "106,95.0,1,0.99"],
    )  # fmt: skip
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.loadgen_cpu_mean_pct == row.loadgen_cpu_peak_pct == 25.0
    # mean 2.48 / 4 = 0.62, below 0.9; its busiest sample is above
    assert row.loadgen_process_cores == 0.62
    assert row.loadgen_process_peak_cores == 0.98
    assert row.generator_saturated is True
    assert row.valid is False
    assert "a Locust process at 0.98 cores in a sample (above 0.9)" in row.invalid_reasons


def test_the_machine_is_the_host_busiest_for_its_cpus_and_a_busy_one_is_noted(tmp_path):
    cell = {"server": "gevent", "endpoint": "json", "users": 1, "loadgen_hosts": ["lg"]}
    cell_dir = _minimal_cell(tmp_path, "c", cell)
    # the window is [100, 105]
    _history(cell_dir, 100, 5, 1)
    header = "time,cpu_percent,proc_count,proc_max_cores,procstat_cpus,procstat_busy_cores"
    # a VM of 4 CPUs, 3.0 of them busy (0.75), and one of 2 CPUs with 1.9 busy
    # (0.95) in the window; the 2.0 after it does not count
    _samples(cell_dir, "lg", header, [f"{t},20.0,1,0.2,4,3.0" for t in (101, 102, 103)])
    _samples(
        cell_dir, "app1", "time,procstat_cpus,procstat_busy_cores",
        ["101,2,1.8", "102,2,2.0", "103,2,1.9", "106,2,2.0"],
    )  # fmt: skip
    (busy,) = model.summarize_run(tmp_path)[1]
    assert (busy.machine_busy_cores, busy.machine_cpus) == (1.9, 2)
    assert "app1's kernel found 1.90 of its 2 CPUs busy (mean)" in busy.note
    # below 0.9 of its CPUs: the figure, no note
    _samples(cell_dir, "app1", "time,procstat_cpus,procstat_busy_cores", ["101,2,1.0", "102,2,1.2"])
    (calm,) = model.summarize_run(tmp_path)[1]
    assert (calm.machine_busy_cores, calm.machine_cpus) == (3.0, 4)
    assert "CPUs busy" not in (calm.note or "")
    # a note, not a verdict: the busy machine changes no rule's outcome
    assert busy.invalid_reasons == calm.invalid_reasons
    # samples from before the columns: not known
    _samples(cell_dir, "app1", "time,cpu_busy_cores", ["101,1.0", "102,1.2"])
    _samples(cell_dir, "lg", "time,cpu_percent", ["101,20.0", "102,20.0"])
    (row,) = model.summarize_run(tmp_path)[1]
    assert (row.machine_busy_cores, row.machine_cpus) == (None, None)


def test_one_sample_above_90_percent_invalidates_a_cell_whose_mean_is_below(written):
    """uwsgi--sleep--u50: 25.4 % and 19.2 % on average, one second of loadgen2 at 93 %."""
    (row,) = [r for r in model.summarize_run(written)[1] if r.cell == "uwsgi--sleep--u50"]
    assert row.loadgen_cpu_mean_pct == 25.4
    assert row.loadgen_cpu_peak_pct == 93.0
    assert row.generator_saturated is True
    assert row.valid is False
    assert row.invalid_reasons == ("load generator at 93 % CPU in a sample (above 90 %)",)


def test_in_window_keeps_only_what_is_inside_however_few():
    host = samples.HostSamples("lg", [{"time": str(t), "cpu_percent": "50"} for t in (1, 2, 5, 9)])
    assert [r["time"] for r in samples.in_window(host, (2, 5)).rows] == ["2", "5"]
    # one row inside: that one, never all four
    assert [r["time"] for r in samples.in_window(host, (4, 6)).rows] == ["5"]
    assert samples.in_window(host, (6, 8)).rows == []
    # no window: nothing is known to be inside the run
    assert samples.in_window(host, None).rows == []


def test_a_host_with_fewer_than_two_samples_in_the_window_gives_no_figure(tmp_path):
    cell = {
        "server": "uwsgi", "endpoint": "json", "users": 1, "app_cpus": 1,
        "app_hosts": ["app1"], "loadgen_hosts": ["lg"],
    }  # fmt: skip
    cell_dir = _minimal_cell(tmp_path, "c", cell)
    _history(cell_dir, 100, 5, 1)
    # one row each inside [100, 105]; the busy ones outside it are not the run's
    _samples(
        cell_dir,
        "lg",
        "time,cpu_percent,proc_count,proc_max_cores",
        ["98,99.0,1,0.99", "99,99.0,1,0.99", "103,20.0,1,0.20", "107,99.0,1,0.99"],
    )
    _samples(
        cell_dir,
        "app1",
        "time,cpu_busy_cores,unit_cpu_usage_usec",
        ["98,1.0,0", "103,0.5,500000", "107,1.0,4500000"],
    )
    (row,) = model.summarize_run(tmp_path)[1]
    for figure in (
        "loadgen_cpu_peak_pct", "loadgen_cpu_mean_pct", "loadgen_process_cores",
        "loadgen_process_peak_cores", "generator_saturated", "app_cpu_cores", "app_cpu_source",
        "cpu_s_per_request", "ceiling_rps",
    ):  # fmt: skip
        assert getattr(row, figure) is None, figure
    assert "fewer than two samples in the window from app host app1" in row.note
    assert "fewer than two samples in the window from loadgen host lg" in row.note
    assert "no load-generator samples" in row.note
    # the 99 % outside the window does not make it invalid (having no ceiling does)
    assert "no ceiling" in row.invalid_reasons
    assert not any("load generator" in reason for reason in row.invalid_reasons)


def test_without_a_measured_window_no_sample_is_used(tmp_path):
    cell_dir = _minimal_cell(
        tmp_path, "c", {"server": "gevent", "endpoint": "json", "users": 1, "loadgen_hosts": ["lg"]}
    )
    _samples(
        cell_dir,
        "lg",
        "time,cpu_percent,proc_count,proc_max_cores",
        ["1,95.0,1,0.5", "2,95.0,1,0.5"],
    )
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.loadgen_cpu_peak_pct is None
    assert row.generator_saturated is None
    assert (
        f"no measured window ({locust.HISTORY} has no row): no samples used from loadgen host lg"
        in row.note
    )


def test_a_server_run_in_both_db_modes_is_labelled_by_mode(tmp_path):
    for mode in ("pool", "naive"):
        cell = {"server": "uwsgi", "endpoint": "db", "users": 10, "db_mode": mode}
        _minimal_cell(tmp_path, f"uwsgi--db--u10--{mode}", cell)
    _minimal_cell(
        tmp_path,
        "flask--db--u10",
        {"server": "flask", "endpoint": "db", "users": 10, "db_mode": "pool"},
    )
    rows = model.summarize_run(tmp_path)[1]
    assert [row.config for row in rows] == ["flask", "uwsgi [naive]", "uwsgi [pool]"]


def test_named_hosts_without_samples_are_noted(tmp_path):
    cell = {"server": "uwsgi", "endpoint": "json", "users": 1, "app_hosts": ["app1", "app2"]}
    _minimal_cell(tmp_path, "c", cell)
    (row,) = model.summarize_run(tmp_path)[1]
    assert "no samples from app host app1, app2" in row.note
    assert row.app_cpu_cores is None


def test_a_cell_that_lost_a_worker_is_invalid(tmp_path):
    cell = {"server": "uwsgi", "endpoint": "json", "users": 20, "workers_lost": ["loadgen2_ab12"]}
    _minimal_cell(tmp_path, "uwsgi--json--u20", cell)
    _minimal_cell(
        tmp_path, "gevent--json--u20", {"server": "gevent", "endpoint": "json", "users": 20}
    )
    environment, rows = model.summarize_run(tmp_path)
    by_cell = {row.cell: row for row in rows}
    lost = by_cell["uwsgi--json--u20"]
    assert lost.workers_lost == 1
    assert lost.valid is False
    # (neither cell has a ceiling: no app samples)
    assert lost.invalid_reasons == ("1 Locust worker(s) lost mid-run", "no ceiling")
    assert by_cell["gevent--json--u20"].workers_lost == 0
    assert by_cell["gevent--json--u20"].invalid_reasons == ("no ceiling",)
    page = html.render_html(tmp_path, environment, rows)
    assert "worker lost mid-run</strong> in uwsgi--json--u20:" in page


def test_counter_restart_does_not_go_negative():
    # the unit restarted between the 2nd and 3rd sample
    assert samples.counter_increase([(0, 100), (1, 300), (2, 50), (3, 150)]) == 300


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "holds no cells"),
        (lambda d: (d / "x").mkdir(), "holds no cells"),
        (lambda d: _write(d / "c" / "cell.json", "{not json"), "not valid JSON"),
        (lambda d: _write(d / "c" / "cell.json", '{"server": "uwsgi"}'), "missing endpoint, users"),
        (
            lambda d: _write(
                d / "c" / "cell.json", '{"server": "uwsgi", "endpoint": "json", "users": 0}'
            ),
            "users must be a positive integer",
        ),
    ],
)
def test_bad_run_dir_fails_with_a_clear_message(tmp_path, capsys, setup, message):
    setup(tmp_path)
    assert cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("report: ")
    assert message in err
    assert not (tmp_path / "index.html").exists()


def test_missing_run_dir(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_python_m_and_the_console_script(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "run", run_dir)
    done = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"report: 4 cells -> {run_dir / 'index.html'}\n"
    assert (run_dir / "index.html").is_file()
    failed = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("report: ") and "is not a directory" in failed.stderr
    (script,) = metadata.entry_points(group="console_scripts", name="fdl-report")
    assert script.value == "flask_deploy_lab.report.cli:main"


# --------------------------------------------------------------------------- ladders
# fixtures/ladder: /slow at a 1 s delay, 2 and 8 users, on a server with 4 slots
# (with hey) and on one without a bound (Locust only). Each cell's closed loop
# starts all its users at T0 and completes nothing before T0+1; from then on its
# rate is min(users, slots) a second: the history's count at T0+k is that rate
# times (k - 1). Locust's own Requests/s (count / 10 s) is 10 % low.

LADDER = {
    f"{BOUNDED}--slow--d1--u2": {
        "users": 2,
        # (18 at T0+10 - 2 at T0+2, the first row past T0 + 1.005 s) / 8 s
        "rps": 2.0,
        "locust_rps_reported": 1.8,
        "ceiling_rps": 2.0,
        "efficiency": 1.0,
        "ideal_latency_ms": 1000.0,
        # (2 / 2.0) / 1.005 s
        "identity_ratio": 0.995,
        # hey: 2 connections, 1.001 s a request; completions at k * 1.001 s, of
        # which 2.002 ... 7.007 fall in [2, 8]: 6 x 2 = 12 requests; their work in
        # the window: 2 connections x 6 s / 1.001 s = 11.988, over 6 s
        "hey_requests": 12,
        "hey_failures": 0,
        "hey_rps": 2.0,
        "hey_mean_ms": 1001.0,
        "hey_p50_ms": 1001.0,
        "hey_p99_ms": 1001.0,
        # (2 / 1.998) / 1.001 s
        "hey_identity_ratio": 1.0,
        "clients_agree": True,
    },
    f"{BOUNDED}--slow--d1--u8": {
        "users": 8,
        # (36 - 4) / 8 s; Locust's own 3.6 would disagree with hey by 10 %
        "rps": 4.0,
        "locust_rps_reported": 3.6,
        # min(8 users, 4 slots) / 1 s
        "ceiling_rps": 4.0,
        "efficiency": 1.0,
        # 1 s * 8 users / 4 slots
        "ideal_latency_ms": 2000.0,
        # (8 / 4.0) / 1.995 s
        "identity_ratio": 1.003,
        # hey: four at a time, each waiting for one turn: 2.002 s; 6 x 4 complete
        # in the window; their work there: 8 connections x 6 s / 2.002 s = 23.98
        "hey_requests": 24,
        "hey_rps": 4.0,
        "hey_p50_ms": 2002.0,
        "hey_p99_ms": 2002.0,
        # (8 / 3.996) / 2.002 s
        "hey_identity_ratio": 1.0,
        "clients_agree": True,
    },
    f"{UNBOUNDED}--slow--d1--u2": {
        "users": 2,
        "server_slots": None,
        "rps": 2.0,
        "locust_rps_reported": 1.8,
        # no bound: users / delay
        "ceiling_rps": 2.0,
        "ideal_latency_ms": 1000.0,
        "hey_rps": None,
        "clients_agree": None,
    },
    f"{UNBOUNDED}--slow--d1--u8": {
        "users": 8,
        "server_slots": None,
        # (72 - 8) / 8 s
        "rps": 8.0,
        "locust_rps_reported": 7.2,
        "ceiling_rps": 8.0,
        "efficiency": 1.0,
        "ideal_latency_ms": 1000.0,
        # (8 / 8.0) / 1.002 s
        "identity_ratio": 0.998,
    },
}


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reports") / "ladder"
    shutil.copytree(FIXTURES / "ladder", run_dir)
    assert cli.main([str(run_dir)]) == 0
    return run_dir


def test_ladder_cells_hold_the_hand_computed_numbers(ladder_run):
    document = json.loads((ladder_run / "summary.json").read_text())
    rows = {row["cell"]: row for row in document["cells"]}
    assert set(rows) == set(LADDER)
    for cell, expected in LADDER.items():
        actual = {key: rows[cell][key] for key in expected}
        assert actual == expected, cell


def test_the_steady_window_rate_removes_the_start_up_transient(ladder_run):
    """Locust's own figure is low by latency / duration and would make the clients
    disagree; the rate past the transient agrees with hey."""
    rows = {row.cell: row for row in model.summarize_run(ladder_run)[1]}
    row = rows[f"{BOUNDED}--slow--d1--u8"]
    assert abs(row.locust_rps_reported - row.hey_rps) / row.hey_rps == pytest.approx(0.1)
    assert row.rps == row.hey_rps == 4.0
    assert row.clients_agree is True


def test_steady_rate_window_starts_one_mean_latency_after_full_users():
    history = [
        locust.HistoryPoint(100, 3, 0),
        locust.HistoryPoint(101, 10, 0),  # all users running
        locust.HistoryPoint(102, 10, 5),
        locust.HistoryPoint(103, 10, 15),  # the first row at or after 101 + 1.5 s
        locust.HistoryPoint(104, 10, 25),
        locust.HistoryPoint(105, 10, 35),
        locust.HistoryPoint(106, 10, 45),
        locust.HistoryPoint(107, 10, 55),
        locust.HistoryPoint(108, 10, 65),
    ]
    assert locust.steady_rate(history, 10, 1500) == (10.0, None)
    # a mean latency that ends exactly on a row starts the window at that row
    assert locust.steady_rate(history, 10, 1000) == (pytest.approx(60 / 6), None)
    # fewer than 5 s left past the transient: no rate, and why
    rate, why = locust.steady_rate(history, 10, 3500)
    assert rate is None
    assert why == f"{locust.HISTORY} holds 3 s past the start-up transient, fewer than 5"
    rate, why = locust.steady_rate(history, 20, 1500)
    assert rate is None and "with all 20 users running" in why


def test_steady_rate_counts_from_the_last_restart_of_the_statistics():
    history = [locust.HistoryPoint(100 + t, 10, 10 * t) for t in range(6)]
    # a worker lost at 106: Locust restarts the count
    history += [locust.HistoryPoint(106 + t, 10, 7 * t) for t in range(7)]
    assert locust.steady_rate(history, 10, 500) == (7.0, None)


def test_a_short_history_falls_back_to_locusts_own_figure(tmp_path):
    source = FIXTURES / "ladder" / f"{BOUNDED}--slow--d1--u2"
    cell_dir = tmp_path / source.name
    shutil.copytree(source, cell_dir)
    history = cell_dir / locust.HISTORY
    # keep T0 ... T0+6: the window past the transient would be T0+2 ... T0+6, 4 s
    lines = history.read_text().splitlines()
    kept = [line for line in lines[1:] if int(line.split(",")[0]) - 1795280000 <= 6]
    history.write_text("\n".join([lines[0], *kept]) + "\n")
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.rps == row.locust_rps_reported == 1.8
    assert (
        f"req/s is Locust's own Requests/s: {locust.HISTORY} holds 4 s past the start-up "
        "transient, fewer than 5" in row.note
    )
    assert row.clients_agree is False


def test_ladders_are_the_delay_bound_cells_of_more_than_one_users_value(ladder_run):
    rows = model.summarize_run(ladder_run)[1]
    ((endpoint, delay, ladder_rows),) = plots.ladders(rows)
    assert (endpoint, delay) == ("slow", 1.0)
    assert len(ladder_rows) == 4
    # one users value of an endpoint and delay is no ladder
    assert plots.ladders([r for r in rows if r.users == 8]) == []
    # the old fixture run has none
    assert plots.ladders(model.summarize_run(FIXTURES / "run")[1]) == []


def test_the_page_has_a_concurrency_ladder_section(ladder_run):
    page = (ladder_run / "index.html").read_text()
    assert '<h2 id="ladder">Concurrency ladder</h2>' in page
    section = page[page.index('<h2 id="ladder">') : page.index('<h2 id="summary">')]
    assert "/slow, delay 1 s" in section
    assert section.count("<svg") == 1
    # the figure names both bounds: 4 slots and none
    assert "4 slots" in section
    assert "no bound" in section
    # the endpoint's own figure stays
    assert page.count("<svg") == 2
    assert page.index('id="endpoint-slow"') < page.index('id="ladder"')


def test_the_ladder_plot_draws_each_client_and_bound():
    rows = model.summarize_run(FIXTURES / "ladder")[1]
    svg = plots.ladder_plot(rows)
    assert svg.startswith("<svg")
    for text in ("Locust", "hey", "ceiling / ideal", "Throughput", "p99 latency"):
        assert text in svg
    # an invalid cell's points are boxed, and the legend says they are no result
    assert "invalid cell" not in svg
    invalid = [dataclasses.replace(rows[0], valid=False, invalid_reasons=("x",)), *rows[1:]]
    assert "invalid cell: not a result" in plots.ladder_plot(invalid)


def test_the_endpoint_plot_hatches_invalid_cells_only():
    rows = model.summarize_run(FIXTURES / "ladder")[1]
    assert all(row.valid for row in rows)
    assert "<pattern" not in plots.endpoint_plot(rows)
    invalid = [dataclasses.replace(rows[0], valid=False, invalid_reasons=("x",)), *rows[1:]]
    assert "<pattern" in plots.endpoint_plot(invalid)


def test_a_malformed_hey_file_fails_the_report_naming_it(tmp_path, capsys):
    source = FIXTURES / "ladder" / f"{BOUNDED}--slow--d1--u2"
    shutil.copytree(source, tmp_path / source.name)
    hey_csv = tmp_path / source.name / "hey.csv"
    hey_csv.write_text(hey_csv.read_text() + "1.0010,0.0000,0.0000,0.0000,1.0010,0.0000,200\n")
    assert cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"report: {hey_csv}: line 18: expected 8 fields, got 7")
    assert not (tmp_path / "index.html").exists()


# --------------------------------------------------------------------------- request logs
# fixtures/requests: two /slow cells whose locust_requests.csv a closed loop
# would write. T0 = 1795290000. Their Locust statistics (locust_stats.csv, the
# history) are deliberately what Locust would make of them: rounded latencies,
# counts that move every 3 s. The row must take none of its rate or latencies
# from them.
#
# uwsgi--slow--d0.5--u4: 4 users spawned 0.5 s apart from T0 (the history shows
# 1, 3, then from T0+2 all 4 running). Each user's first request takes 1.5 s
# (the ramp), every later one 0.5 s, except user 2's from T0+7 to T0+8 (1 s).
# Locust stopped at T0+12.25: the requests begun at T0+12 are not in the log,
# which has the older header (no stopped_at), so nothing says what was in
# flight at the stop. 81 requests, 4 failed: user 0's first, user 1's completing at T0+6 and
# T0+6.5, user 3's last (at T0+12). Mean of all: 45000 / 81 = 555.6 ms, so the
# allowance is 1 s. All users running from T0+2 + 1 s; the window is
# [T0+3 + 1, T0+12 - 1] = [T0+4, T0+11], 7 s.
#
# uwsgi--slow--d1--u10: 10 users started at T0, every request 1.02 s, Locust
# stopped at T0+15.5: completions in bursts of 10 at T0 + 1.02 k, k = 1..15.
# Allowance 1.02 s; window [T0+1 + 1.02, T0+15.3 - 1.02] = [T0+2.02, T0+14.28].
# The log's last 10 rows are the requests begun at T0+15.3 and in flight at
# the stop, T0+15.5: 200 ms old, younger than the p99 (1020 ms).
REQUESTS_RUN = FIXTURES / "requests"
T0 = 1795290000

REQUEST_LOG_CELLS = {
    "uwsgi--slow--d0.5--u4": {
        "users": 4,
        # Locust's own, as they are: whole run after the reset
        "requests": 80,
        "failures": 3,
        "locust_rps_reported": 6.53,
        # the work in the window: 14 requests from each of users 0, 1 and 3, 13
        # from user 2 (6 + its 1 s request + 6); 55 / 7 s. (The history's count
        # says 64 / 9 s = 7.11, Locust's own 6.53.)
        "rps": 7.86,
        # completed in the window: 15 each for users 0, 1, 3 and 14 for user 2:
        # 58 at 500 ms and one at 1000 ms; nearest rank: the 30th, 54th, 57th, 59th
        # and 59th
        "mean_ms": 508.5,
        "p50_ms": 500.0,
        "p90_ms": 500.0,
        "p95_ms": 500.0,
        "p99_ms": 1000.0,
        "p999_ms": 1000.0,
        # the ramp's 1500 ms requests completed before the window
        "max_ms": 1000.0,
        # (4 / 7.857) / 0.50847 s
        "identity_ratio": 1.001,
        # min(4 users, 8 slots) / 0.5 s
        "ceiling_rps": 8.0,
        "efficiency": 0.982,
        "unfinished_requests": None,
        "unfinished_oldest_ms": None,
        "cutoff_requests": None,
        "valid": True,
        # no note on the figures' source: only the samples, and the in-flight rows
        "note": "no load-generator samples; locust_requests.csv has no stopped_at column "
        "(an older log): the requests in flight at the stop are unknown",
    },
    "uwsgi--slow--d1--u10": {
        "users": 10,
        "requests": 150,
        "locust_rps_reported": 9.68,
        # every user always in a request: 10 x 12.26 s / 1.02 s of work over 12.26 s
        # = 9.804. Counting the 130 completions in the window would say 10.60; the
        # history's count 120 / 13 s = 9.23.
        "rps": 9.8,
        "mean_ms": 1020.0,
        "p50_ms": 1020.0,
        "p99_ms": 1020.0,
        "max_ms": 1020.0,
        "identity_ratio": 1.0,
        "ceiling_rps": 10.0,
        "efficiency": 0.98,
        "unfinished_requests": 10,
        "unfinished_oldest_ms": 200.0,
        "cutoff_requests": 0,
        "valid": True,
        "invalid_reasons": (),
        "note": "no load-generator samples",
    },
}


def test_cells_with_a_request_log_take_its_exact_figures():
    rows = {row.cell: row.as_dict() for row in model.summarize_run(REQUESTS_RUN)[1]}
    assert set(rows) == set(REQUEST_LOG_CELLS)
    for cell, expected in REQUEST_LOG_CELLS.items():
        actual = {key: rows[cell][key] for key in expected}
        assert actual == expected, cell


def _log(cell):
    cell_dir = REQUESTS_RUN / cell
    requests = locust.read_requests(cell_dir).completed
    users = REQUEST_LOG_CELLS[cell]["users"]
    return requests, locust.users_running_from(locust.read_history(cell_dir), users)


def test_the_request_log_lists_the_requests_in_flight_at_the_stop():
    log = locust.read_requests(REQUESTS_RUN / "uwsgi--slow--d1--u10")
    assert len(log.completed) == 150
    assert (
        log.unfinished
        == [
            locust.UnfinishedRequest(
                start_us=(T0 + 15) * 1_000_000 + 300_000,
                stopped_us=(T0 + 15) * 1_000_000 + 500_000,
                name="/slow",
            )
        ]
        * 10
    )
    assert log.unfinished[0].age_us == 200_000
    # the older layout reads as before, and says nothing of them
    older = locust.read_requests(REQUESTS_RUN / "uwsgi--slow--d0.5--u4")
    assert len(older.completed) == 81
    assert older.unfinished is None


def test_cut_off_counts_the_requests_that_had_waited_longer_than_the_p99():
    def waiting(*ages_ms):
        return [locust.UnfinishedRequest(0, round(age * 1000), "/") for age in ages_ms]

    # older than 1020 ms: 2500 and 1020.001, not 1020 itself
    assert locust.cut_off(waiting(200, 1020, 1020.001, 2500), 1020) == locust.CutOff(
        in_flight=4, cut_off=2, oldest_ms=2500.0
    )
    assert locust.cut_off([], 1020) == locust.CutOff(in_flight=0, cut_off=0, oldest_ms=None)
    # without a p99 there is nothing to compare with
    assert locust.cut_off(waiting(200), None) == locust.CutOff(1, None, 200.0)


def _request_log_cell(tmp_path, edit=None, cell_json=None):
    """uwsgi--slow--d1--u10 copied, its request log's rows and cell.json edited."""
    source = REQUESTS_RUN / "uwsgi--slow--d1--u10"
    cell_dir = tmp_path / source.name
    shutil.copytree(source, cell_dir)
    if edit:
        log = cell_dir / locust.REQUESTS
        log.write_text("\n".join(edit(log.read_text().splitlines())) + "\n")
    if cell_json:
        path = cell_dir / "cell.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **cell_json}))
    return cell_dir


def _stuck(count):
    # `count` users' last requests began at T0+13 and still waited at T0+15.5:
    # 2500 ms; another's at T0+14.48: 1020 ms, the p99 exactly, which is not longer
    def stuck(lines):
        lines[-1] = f"{T0 + 14}.480000,,,/slow,{T0 + 15}.500000"
        for k in range(2, count + 2):
            lines[-k] = f"{T0 + 13}.000000,,,/slow,{T0 + 15}.500000"
        return lines

    return stuck


def test_requests_in_flight_at_the_stop_older_than_the_p99_make_the_cell_invalid(tmp_path):
    _request_log_cell(tmp_path, _stuck(3))
    (row,) = model.summarize_run(tmp_path)[1]
    # the completed requests, and so every figure, are those of the fixture
    assert (row.rps, row.p99_ms, row.identity_ratio) == (9.8, 1020.0, 1.0)
    assert (row.unfinished_requests, row.unfinished_oldest_ms, row.cutoff_requests) == (
        10, 2500.0, 3,
    )  # fmt: skip
    # 3 of the 150 requests Locust counted: above 1 %
    assert row.requests == 150
    assert row.valid is False
    assert row.invalid_reasons == (
        "3 request(s) in flight at the stop had waited longer than p99 1020 ms "
        "(oldest 2500 ms), more than 1% of the 150 measured",
    )


def test_one_request_in_flight_past_the_p99_is_within_chance(tmp_path):
    # 1 of 150 (0.7 %): one of the slowest 1 % can be in flight at the stop
    _request_log_cell(tmp_path, _stuck(1))
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.cutoff_requests == 1
    assert row.valid is True


def test_efficiency_above_1_02_makes_the_cell_invalid(tmp_path):
    # 9 slots: ceiling min(10 users, 9) / 1 s = 9 req/s; 9.804 / 9 = 1.089
    _request_log_cell(tmp_path, cell_json={"server_slots": 9})
    (row,) = model.summarize_run(tmp_path)[1]
    assert (row.ceiling_rps, row.efficiency) == (9.0, 1.089)
    assert row.invalid_reasons == ("efficiency 1.089 above 1.02",)


def test_no_ceiling_makes_the_cell_invalid(tmp_path):
    # a bounded server without its slots: no ceiling
    _request_log_cell(tmp_path, cell_json={"server_slots": None})
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.ceiling_rps is None
    assert row.invalid_reasons == ("no ceiling",)


@pytest.mark.parametrize(
    "line",
    [
        # the master's, of a worker whose heartbeat said so, and at the end of the test
        "[2026-11-21 15:49:30,101] loadgen1/WARNING/locust.runners: Worker loadgen2_c8bd "
        "(index 0) exceeded cpu threshold (will only log this once per worker)",
        "[2026-11-21 15:49:38,300] loadgen1/WARNING/locust.runners: CPU usage threshold was "
        "exceeded on workers during the test!",
        # a process's own (the master's, or a single process's)
        "[2026-11-21 15:49:30,101] loadgen1/WARNING/root: CPU usage above 90%! This may "
        "constrain your throughput",
        "[2026-11-21 15:49:38,300] loadgen1/WARNING/locust.runners: CPU usage was too high at "
        "some point during the test!",
    ],
)
def test_locusts_cpu_warning_in_its_log_makes_the_cell_invalid(tmp_path, line):
    cell_dir = _request_log_cell(tmp_path)
    normal = (FIXTURES / "master-logs" / "normal.log").read_text()
    (cell_dir / locust.LOG).write_text(normal + line + "\n")
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.locust_cpu_warning is True
    # no samples, but the warning says it: saturated
    assert row.generator_saturated is True
    assert row.invalid_reasons == ("Locust's CPU warning in locust.log",)


def test_a_log_without_the_warning_says_so(tmp_path):
    cell_dir = _request_log_cell(tmp_path)
    shutil.copy(FIXTURES / "master-logs" / "normal.log", cell_dir / locust.LOG)
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.locust_cpu_warning is False
    assert row.generator_saturated is None  # not sampled
    assert row.valid is True
    assert locust.read_cpu_warning(REQUESTS_RUN / "uwsgi--slow--d1--u10") is None


def test_a_broken_hey_identity_makes_the_cell_invalid(tmp_path):
    source = FIXTURES / "ladder" / f"{BOUNDED}--slow--d1--u2"
    cell_dir = tmp_path / source.name
    shutil.copytree(source, cell_dir)
    meta = json.loads((cell_dir / "hey.json").read_text())
    # hey.csv holds 2 connections' requests; said to be 3, a third of their time is missing:
    # (3 / 1.998) / 1.001 s = 1.5
    (cell_dir / "hey.json").write_text(json.dumps({**meta, "connections": 3}))
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.identity_ratio == 0.995
    assert row.hey_identity_ratio == 1.5
    assert row.invalid_reasons == ("hey identity 1.5 off 1 by more than 5 %",)


def test_the_request_window_leaves_out_the_ramp_up_and_the_stop():
    requests, running = _log("uwsgi--slow--d0.5--u4")
    assert len(requests) == 81
    # the first history row with all 4 users is T0+2: running by the end of that second
    assert running == T0 + 3
    figures, why_not = locust.request_figures(requests, running)
    assert why_not is None
    assert (figures.window_start, figures.window_end) == (T0 + 4, T0 + 11)
    assert figures.duration_s == 7
    assert figures.requests == 59
    # of the 4 failures, the ramp's and the one at T0+12 fall outside the window
    assert sum(r.failed for r in requests) == 4
    assert figures.failures == 2
    assert figures.rps == pytest.approx(55 / 7)
    assert figures.mean_ms == pytest.approx(30000 / 59)
    assert figures.max_ms == 1000.0
    # the whole file, ramp and all, would have its 1500 ms requests at the top
    everything, _ = locust.request_figures(requests, None)
    assert everything.window_start == T0 + 1
    assert max(r.response_time_us for r in requests) == 1_500_000


def test_a_window_edge_that_cuts_a_burst_changes_no_figure():
    requests, running = _log("uwsgi--slow--d1--u10")
    figures, _ = locust.request_figures(requests, running)
    # both edges exact: the start between two bursts, the end on the 14th
    assert figures.window_start == pytest.approx(T0 + 2.02, abs=1e-6)
    assert figures.window_end == pytest.approx(T0 + 14.28, abs=1e-6)
    # bursts 2 .. 14 complete inside, the one on the end included
    assert figures.requests == 130
    assert figures.requests / figures.duration_s == pytest.approx(10.60, abs=0.01)
    assert figures.rps == pytest.approx(10 / 1.02)


def test_the_rate_does_not_depend_on_where_the_window_falls():
    # 100 users started at once, every request 1.02 s, stopped at 20.5 s: bursts of 100
    latency = 1_020_000
    requests = [
        locust.LoggedRequest(start_us=latency * k, response_time_us=latency, failed=False, name="/")
        for k in range(20)
        for _ in range(100)
    ]
    for running in (0.0, 0.5, 1.0, 1.7):
        figures, why_not = locust.request_figures(requests, running)
        assert why_not is None
        assert figures.rps == pytest.approx(100 / 1.02, rel=1e-9)
        assert figures.mean_ms == 1020.0


def test_without_a_history_row_at_full_users_the_window_starts_at_the_first_request():
    requests, _ = _log("uwsgi--slow--d1--u10")
    figures, _ = locust.request_figures(requests, None)
    assert figures.window_start == pytest.approx(T0 + 1.02, abs=1e-6)
    # a history that says the users were running before the first request does not count
    early, _ = locust.request_figures(requests, T0 - 5)
    assert early.window_start == figures.window_start


def test_a_short_request_log_leaves_the_figures_to_locust(tmp_path):
    source = REQUESTS_RUN / "uwsgi--slow--d1--u10"
    cell_dir = tmp_path / source.name
    shutil.copytree(source, cell_dir)
    log = cell_dir / locust.REQUESTS
    lines = log.read_text().splitlines()
    # requests begun before T0+6: last completion T0+6.12, window [T0+2.02, T0+5.1]
    kept = [line for line in lines[1:] if float(line.split(",")[0]) < T0 + 6]
    log.write_text("\n".join([lines[0], *kept]) + "\n")
    (row,) = model.summarize_run(tmp_path)[1]
    # the history's rate, Locust's latencies
    assert row.rps == 9.23
    assert row.p50_ms == 1000
    assert row.note.startswith(
        f"{locust.REQUESTS} spans 3.08 s once the ramp-up and the end are left out, fewer "
        f"than 5: req/s from {locust.HISTORY}, latencies Locust's own (percentiles rounded "
        "to its buckets)"
    )


def test_a_request_log_of_only_its_header_leaves_the_figures_to_locust(tmp_path):
    source = REQUESTS_RUN / "uwsgi--slow--d1--u10"
    cell_dir = tmp_path / source.name
    shutil.copytree(source, cell_dir)
    (cell_dir / locust.REQUESTS).write_text("start,response_time_ms,failed,name,stopped_at\n")
    assert locust.read_requests(cell_dir) == locust.RequestLog([], [])
    (cell_dir / locust.REQUESTS).write_text("start,response_time_ms,failed,name\n")
    assert locust.read_requests(cell_dir) == locust.RequestLog([], None)
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.rps == 9.23
    assert row.note.startswith(f"{locust.REQUESTS} holds no request: req/s from")


def test_a_cell_without_a_request_log_has_none():
    assert locust.read_requests(FIXTURES / "run" / "gunicorn--json--u20") is None


HEADERS = (
    "start,response_time_ms,failed,name,stopped_at,status,content_length,body_bytes,"
    "retry_after,error (or an older log's start,response_time_ms,failed,name,stopped_at or "
    "start,response_time_ms,failed,name)"
)
V3 = "start,response_time_ms,failed,name,stopped_at,status,content_length,body_bytes,"
V3 += "retry_after,error\n"
V2 = "start,response_time_ms,failed,name,stopped_at\n"
V1 = "start,response_time_ms,failed,name\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"expected the header {HEADERS}, got an empty file"),
        ("start,latency\n", f"expected the header {HEADERS}, got start,latency"),
        (
            "start,response_time_ms,failed,name,state\n",
            f"expected the header {HEADERS}, got start,response_time_ms,failed,name,state",
        ),
        (V1 + "1.5,2.0,0\n", "line 2: expected 4 fields, got 3"),
        # a row of the older layout under the newer header, and the other way round
        (V2 + "1.5,2.0,0,/\n", "line 2: expected 5 fields, got 4"),
        (V1 + "1.5,2.0,0,/,\n", "line 2: expected 4 fields, got 5"),
        (V1 + "1.5,2.0,0,/\nsoon,2.0,0,/\n", "line 3: start 'soon' is not a non-negative number"),
        (V1 + "1.5,-2.0,0,/\n", "line 2: response_time_ms '-2.0' is not a non-negative number"),
        (V2 + "1.5,NaN,0,/,\n", "line 2: response_time_ms 'NaN' is not a non-negative number"),
        (V1 + "1.5,2.0,True,/\n", "line 2: failed 'True' is not 0 or 1"),
        # a completed row without its figures
        (V2 + "1.5,,,/,\n", "line 2: failed '' is not 0 or 1"),
        # in-flight rows: stopped_at set, no response time, no failed, not before start
        (
            V2 + "1.5,2.0,0,/,\n1.5,2.0,,/,3.0\n",
            "line 3: response_time_ms '2.0' in a request in flight at the stop (stopped_at set)",
        ),
        (
            V2 + "1.5,,0,/,3.0\n",
            "line 2: failed '0' in a request in flight at the stop (stopped_at set)",
        ),
        (V2 + "1.5,,,/,later\n", "line 2: stopped_at 'later' is not a non-negative number"),
        (V2 + "1.5,,,/,1.4\n", "line 2: stopped_at '1.4' before start"),
        (V2 + "soon,,,/,1.4\n", "line 2: start 'soon' is not a non-negative number"),
        # the newest layout: as many fields as its header, the same rules
        (V3 + "1.5,2.0,0,/,\n", "line 2: expected 10 fields, got 5"),
        (
            V3 + "1.5,,0,/,3.0,,,,,\n",
            "line 2: failed '0' in a request in flight at the stop (stopped_at set)",
        ),
    ],
)
def test_a_malformed_request_log_is_an_error_naming_file_and_line(tmp_path, text, message):
    (tmp_path / locust.REQUESTS).write_text(text)
    with pytest.raises(ReportError) as raised:
        locust.read_requests(tmp_path)
    assert str(raised.value) == f"{tmp_path / locust.REQUESTS}: {message}"


def test_a_malformed_request_log_fails_the_report(tmp_path, capsys):
    source = REQUESTS_RUN / "uwsgi--slow--d1--u10"
    shutil.copytree(source, tmp_path / source.name)
    log = tmp_path / source.name / locust.REQUESTS
    log.write_text(log.read_text() + "1795290016.000000,1020.000,0\n")
    assert cli.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    # the header, 150 completed requests, 10 in flight
    assert err.startswith(f"report: {log}: line 162: expected 5 fields, got 3")
    assert not (tmp_path / "index.html").exists()


def test_times_are_read_as_whole_microseconds():
    # 0.1 + 0.2 is not 0.3 in binary floating point; in microseconds it is
    requests = [
        locust.LoggedRequest(start_us=100_000, response_time_us=200_000, failed=False, name="/")
    ]
    assert requests[0].completed_us == 300_000
    assert exact.share_inside(100_000, 200_000, 0, 300_000) == 1
    assert exact.share_inside(100_000, 200_000, 200_000, 300_000) == 0.5
    assert exact.share_inside(100_000, 0, 0, 100_000) == 1
    assert exact.share_inside(100_000, 0, 0, 99_999) == 0


def test_hey_and_locust_share_one_percentile():
    assert hey.percentile is exact.percentile
    assert exact.percentile([1_000, 2_000, 3_000, 4_000], 50) == 2_000


# --------------------------------------------------------------------------- validity
# Each rule on a row that breaks no other: a cell with a ceiling and nothing
# else said. Each rule's limit itself is valid: the figures are rounded by the
# schema (percent to 0.1, cores and ratios to 0.001), and a rule that holds at
# the limit would hold on rounding alone.


def _row(**values) -> summary.Row:
    return summary.Row(**{**dict.fromkeys(SUMMARY_CSV_COLUMNS), "ceiling_rps": 100.0, **values})


@pytest.mark.parametrize(
    ("values", "reasons"),
    [
        ({}, []),
        # 1: the load generator, judged on every sample of the window, not the mean
        ({"loadgen_cpu_peak_pct": 90.0, "loadgen_cpu_mean_pct": 60.0}, []),
        (
            {"loadgen_cpu_peak_pct": 90.1, "loadgen_cpu_mean_pct": 60.0},
            ["load generator at 90.1 % CPU in a sample (above 90 %)"],
        ),
        ({"loadgen_process_peak_cores": 0.9, "loadgen_process_cores": 0.5}, []),
        (
            {"loadgen_process_peak_cores": 0.901, "loadgen_process_cores": 0.5},
            ["a Locust process at 0.901 cores in a sample (above 0.9)"],
        ),
        ({"locust_cpu_warning": False}, []),
        ({"locust_cpu_warning": True}, ["Locust's CPU warning in locust.log"]),
        # a row of an older summary.json says no more than this
        ({"generator_saturated": True}, ["load generator saturated"]),
        # 2: a worker lost
        ({"workers_lost": 0}, []),
        ({"workers_lost": 2}, ["2 Locust worker(s) lost mid-run"]),
        # 3: latency cut off by the stop
        (
            {"p99_ms": 1020.0, "unfinished_requests": 10, "unfinished_oldest_ms": 1020.0,
             "cutoff_requests": 0},
            [],
        ),
        # more than 1 % of the requests measured: 3 of 200 is, 2 of 200 is not
        (
            {"p99_ms": 1020.0, "unfinished_requests": 10, "unfinished_oldest_ms": 2500.0,
             "cutoff_requests": 2, "requests": 200},
            [],
        ),
        (
            {"p99_ms": 1020.0, "unfinished_requests": 10, "unfinished_oldest_ms": 2500.0,
             "cutoff_requests": 3, "requests": 200},
            ["3 request(s) in flight at the stop had waited longer than p99 1020 ms "
             "(oldest 2500 ms), more than 1% of the 200 measured"],
        ),
        # 4: efficiency above 1.02
        ({"efficiency": 1.02}, []),
        ({"efficiency": 1.021}, ["efficiency 1.021 above 1.02"]),
        # 5: no ceiling
        ({"ceiling_rps": None}, ["no ceiling"]),
        # 6: the closed-loop identity, Locust's and hey's, within 5 %
        ({"identity_ratio": 1.05, "hey_identity_ratio": 0.95}, []),
        ({"identity_ratio": 1.051}, ["identity 1.051 off 1 by more than 5 %"]),
        ({"identity_ratio": 0.949}, ["identity 0.949 off 1 by more than 5 %"]),
        ({"hey_identity_ratio": 0.9}, ["hey identity 0.9 off 1 by more than 5 %"]),
        # several at once: every reason, in the rules' order
        (
            {"ceiling_rps": None, "workers_lost": 1, "identity_ratio": 1.2,
             "loadgen_cpu_peak_pct": 97.0},
            ["load generator at 97 % CPU in a sample (above 90 %)",
             "1 Locust worker(s) lost mid-run", "no ceiling",
             "identity 1.2 off 1 by more than 5 %"],
        ),
    ],
)  # fmt: skip
def test_each_validity_rule(values, reasons):
    row = _row(**values)
    assert model.invalid_reasons(row) == reasons
    checked = model.with_validity(row)
    assert checked.valid is (not reasons)
    assert checked.invalid_reasons == tuple(reasons)


def test_the_validity_rules_are_the_pages_headings():
    assert [rule.name for rule in model.VALIDITY_RULES] == [
        "generator_saturated", "workers_lost", "cut_off", "efficiency_above_one", "no_ceiling",
        "identity_broken",
    ]  # fmt: skip
    rows = [_row(cell="a", workers_lost=1), _row(cell="b"), _row(cell="c", ceiling_rps=None)]
    assert [rule.cells(rows) for rule in model.VALIDITY_RULES] == [[], ["a"], [], [], ["c"], []]


def test_validity_survives_summary_json(written):
    document = json.loads((written / "summary.json").read_text())
    rows = model.summarize_run(written)[1]
    assert [summary.Row.from_dict(cell) for cell in document["cells"]] == rows
    # an older summary.json without the columns: validity unknown, not valid
    older = {k: v for k, v in document["cells"][0].items() if k not in ("valid", "invalid_reasons")}
    assert summary.Row.from_dict(older).valid is None


def test_a_request_log_with_the_answers_reads_as_before(tmp_path):
    (tmp_path / locust.REQUESTS).write_text(
        V3 + '1.5,2.0,1,/slow,,503,40,40,2,"HTTP 503, expected 200"\n1.6,,,/slow,3.0,,,,,\n'
    )
    log = locust.read_requests(tmp_path)
    assert [(r.start_us, r.response_time_us, r.failed, r.name) for r in log.completed] == [
        (1_500_000, 2_000, True, "/slow")
    ]
    assert [(r.start_us, r.stopped_us) for r in log.unfinished] == [(1_600_000, 3_000_000)]
