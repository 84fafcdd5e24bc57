"""report.py: fixture run in, hand-computed table, ceilings and page out."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Every fixture cell ran 10 s: the stats history has users running from T0+1 to
# T0+10, so the measured window is [T0+1, T0+10] and the sampler rows inside it
# are the nine at T0+1.5 ... T0+9.5 (8 s apart). Rows outside the window carry
# idle CPU and decoy DB connection counts that must not show up below.
EXPECTED = {
    "uwsgi--sleep--u50": {
        "config": "uwsgi",
        "endpoint": "sleep",
        "users": 50,
        "requests": 952,
        "failures": 0,
        "failure_ratio": 0.0,
        "rps": 95.2,
        "p50_ms": 520,
        "p95_ms": 580,
        "p99_ms": 640,
        "max_ms": 1630.5,
        "ceiling_model": "littles_law",
        # min(50 users, 16 server slots, 10 pooled connections) / 0.1 s
        "ceiling_rps": 100.0,
        # 95.2 / 100
        "efficiency": 0.952,
        # unit usage grows 300,000 us per second in the window: 0.3 cores; 0.3 / 95.2
        "app_cpu_cores": 0.3,
        "app_cpu_source": "unit",
        "cpu_s_per_request": 0.003151,
        # nr_throttled flat; nr_periods +10/s over 8 s = 80
        "throttled_periods": 0,
        "throttled_ratio": 0.0,
        "throttled_s": 0.0,
        # 10-11 inside the window, 25 outside it
        "peak_db_connections": 11,
        # loadgen1 20,22,24,26,28,30,31,25,23: peak 31, mean 229 / 9
        "loadgen_cpu_peak_pct": 31.0,
        "loadgen_cpu_mean_pct": 25.4,
        "loadgen_process_cores": 0.2,
        "generator_saturated": False,
        "top_failure": None,
        "note": None,
    },
    "gunicorn--json--u20": {
        "config": "gunicorn",
        "endpoint": "json",
        "users": 20,
        "requests": 8000,
        "failures": 0,
        "failure_ratio": 0.0,
        "rps": 800.0,
        "p50_ms": 24,
        "p95_ms": 40,
        "p99_ms": 55,
        "max_ms": 210.3,
        "ceiling_model": "cpu",
        # 0.8 cores / 800 req/s = 0.001 CPU-s per request; 1 CPU / 0.001 = 1000 req/s
        "app_cpu_cores": 0.8,
        "app_cpu_source": "unit",
        "cpu_s_per_request": 0.001,
        "ceiling_rps": 1000.0,
        "efficiency": 0.8,
        # nr_throttled +3/s, nr_periods +10/s, throttled_usec +20,000/s, over 8 s
        "throttled_periods": 24,
        "throttled_ratio": 0.3,
        "throttled_s": 0.16,
        "peak_db_connections": 0,
        # loadgen1 40,45,50,55,62.5,50,50,47.5,50: peak 62.5, mean 450 / 9
        "loadgen_cpu_peak_pct": 62.5,
        "loadgen_cpu_mean_pct": 50.0,
        "loadgen_process_cores": 0.5,
        "generator_saturated": False,
        "top_failure": None,
        "note": None,
    },
    "gevent--db--u200": {
        "config": "gevent",
        "endpoint": "db",
        "users": 200,
        "requests": 4000,
        "failures": 0,
        "rps": 400.0,
        "p50_ms": 480,
        "p95_ms": 700,
        "p99_ms": 900,
        "ceiling_model": "cpu",
        # 0.5 cores / 400 req/s = 0.00125; 1 / 0.00125 = 800
        "app_cpu_cores": 0.5,
        "cpu_s_per_request": 0.00125,
        "ceiling_rps": 800.0,
        "efficiency": 0.5,
        # no quota: no periods, so no ratio
        "throttled_periods": 0,
        "throttled_ratio": None,
        "throttled_s": 0.0,
        "peak_db_connections": 201,
        # loadgen1 92,95,96,97,99,95,94,93,94: mean 855 / 9 = 95 > 90
        "loadgen_cpu_peak_pct": 99.0,
        "loadgen_cpu_mean_pct": 95.0,
        # busiest Locust process: mean 8.55 / 9 = 0.95 > 0.9
        "loadgen_process_cores": 0.95,
        "generator_saturated": True,
    },
    "flask--render--u10": {
        "config": "flask",
        "endpoint": "render",
        "users": 10,
        "requests": 555,
        "failures": 3,
        # 3 / 555 = 0.005405...
        "failure_ratio": 0.0054,
        "rps": 55.5,
        "ceiling_model": "cpu",
        # the app host's samples have no unit columns: no ceiling, host CPU instead
        "ceiling_rps": None,
        "efficiency": None,
        "cpu_s_per_request": None,
        "app_cpu_cores": 0.9,
        "app_cpu_source": "host",
        "throttled_periods": None,
        "throttled_ratio": None,
        "throttled_s": None,
        "peak_db_connections": 1,
        "generator_saturated": False,
        "top_failure": "GET /render: CatchResponseError('HTTP 500, expected 200')",
        "note": "no ceiling: no cgroup CPU accounting for the app unit",
    },
}


@pytest.fixture(scope="module")
def written(report, tmp_path_factory):
    """The fixture run, copied and reported on once for the tests that only read the output."""
    run_dir = tmp_path_factory.mktemp("reports") / "20261121-140000"
    shutil.copytree(FIXTURES / "run", run_dir)
    assert report.main([str(run_dir)]) == 0
    return run_dir


def test_summary_json_holds_the_hand_computed_numbers(written):
    document = json.loads((written / "summary.json").read_text())
    rows = {row["cell"]: row for row in document["cells"]}
    assert set(rows) == set(EXPECTED)
    for cell, expected in EXPECTED.items():
        actual = {key: rows[cell][key] for key in expected}
        assert actual == expected, cell
    assert document["environment"]["git_commit"] == "0123abc"


def test_cells_are_ordered_by_endpoint_as_in_the_design(written):
    document = json.loads((written / "summary.json").read_text())
    assert [row["endpoint"] for row in document["cells"]] == ["json", "db", "sleep", "render"]


def test_summary_csv_has_every_column_and_matches_json(report, written):
    with (written / "summary.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == report.SUMMARY_COLUMNS
        rows = {row["cell"]: row for row in reader}
    assert rows["gunicorn--json--u20"]["efficiency"] == "0.8"
    assert rows["gunicorn--json--u20"]["ceiling_rps"] == "1000.0"
    assert rows["flask--render--u10"]["efficiency"] == ""
    assert rows["gevent--db--u200"]["generator_saturated"] == "True"


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
    saturated_row = re.search(r'<tr class="saturated">.*?</tr>', page, re.S).group(0)
    assert "gevent--db--u200" in saturated_row
    assert "SATURATED" in saturated_row
    assert page.count('<tr class="saturated">') == 1
    assert "Saturated load generator" in page
    assert "n/a" in page
    # the environment heads the page, with the verdict on unit limits
    assert page.index("Environment") < page.index("<svg")
    assert "0123abc" in page
    assert "NOT enforced" in page
    assert "2.47.0" in page


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
    ],
)
def test_littles_law_ceiling(report, cell, expected):
    result = report.littles_law_ceiling({"db_mode": "pool", "delay_s": 0.1, **cell})
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def _minimal_cell(run_dir, name, cell, stats=True):
    cell_dir = run_dir / name
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(json.dumps(cell))
    if stats:
        source = FIXTURES / "run" / "gunicorn--json--u20" / "locust_stats.csv"
        shutil.copy(source, cell_dir / "locust_stats.csv")
    return cell_dir


def test_cell_without_samples_reports_na_not_numbers(report, tmp_path):
    _minimal_cell(
        tmp_path,
        "gunicorn--json--u20",
        {"server": "gunicorn", "endpoint": "json", "users": 20, "app_cpus": 1},
    )
    environment, rows = report.summarize_run(tmp_path)
    assert environment is None
    (row,) = rows
    assert row["rps"] == 800.0
    assert row["ceiling_rps"] is None
    assert row["efficiency"] is None
    assert row["generator_saturated"] is None
    assert "no cgroup CPU accounting" in row["note"]
    assert "no load-generator samples" in row["note"]
    page = report.render_html(tmp_path, environment, rows)
    assert "environment.json is missing" in page


def test_a_busy_locust_process_alone_flags_the_generator(report, tmp_path):
    cell_dir = _minimal_cell(
        tmp_path, "c", {"server": "gevent", "endpoint": "json", "users": 1, "loadgen_hosts": ["lg"]}
    )
    (cell_dir / "samples").mkdir()
    # the host has 4 CPUs and is 25 % busy, but its one Locust process uses a whole core
    (cell_dir / "samples" / "lg.csv").write_text(
        "time,cpu_percent,proc_count,proc_max_cores\n1,25.0,1,0.97\n2,25.0,1,0.99\n"
    )
    (row,) = report.summarize_run(tmp_path)[1]
    assert row["loadgen_cpu_mean_pct"] == 25.0
    assert row["loadgen_process_cores"] == 0.98
    assert row["generator_saturated"] is True


def test_a_server_run_in_both_db_modes_is_labelled_by_mode(report, tmp_path):
    for mode in ("pool", "naive"):
        cell = {"server": "uwsgi", "endpoint": "db", "users": 10, "db_mode": mode}
        _minimal_cell(tmp_path, f"uwsgi--db--u10--{mode}", cell)
    _minimal_cell(
        tmp_path,
        "flask--db--u10",
        {"server": "flask", "endpoint": "db", "users": 10, "db_mode": "pool"},
    )
    rows = report.summarize_run(tmp_path)[1]
    assert [row["config"] for row in rows] == ["flask", "uwsgi [naive]", "uwsgi [pool]"]


def test_named_hosts_without_samples_are_noted(report, tmp_path):
    cell = {"server": "uwsgi", "endpoint": "json", "users": 1, "app_hosts": ["app1", "app2"]}
    _minimal_cell(tmp_path, "c", cell)
    (row,) = report.summarize_run(tmp_path)[1]
    assert "no samples from app host app1, app2" in row["note"]
    assert row["app_cpu_cores"] is None


def test_a_cell_that_lost_a_worker_is_flagged_as_partial(report, tmp_path):
    cell = {"server": "uwsgi", "endpoint": "json", "users": 20, "workers_lost": ["loadgen2_ab12"]}
    _minimal_cell(tmp_path, "uwsgi--json--u20", cell)
    _minimal_cell(
        tmp_path, "gevent--json--u20", {"server": "gevent", "endpoint": "json", "users": 20}
    )
    environment, rows = report.summarize_run(tmp_path)
    by_cell = {row["cell"]: row for row in rows}
    assert by_cell["uwsgi--json--u20"]["workers_lost"] == 1
    assert "1 Locust worker(s) lost mid-run" in by_cell["uwsgi--json--u20"]["note"]
    assert by_cell["gevent--json--u20"]["workers_lost"] == 0
    page = report.render_html(tmp_path, environment, rows)
    assert "worker lost mid-run</strong> in uwsgi--json--u20:" in page


def test_counter_restart_does_not_go_negative(report):
    # the unit restarted between the 2nd and 3rd sample
    assert report.counter_increase([(0, 100), (1, 300), (2, 50), (3, 150)]) == 300


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
def test_bad_run_dir_fails_with_a_clear_message(report, tmp_path, capsys, setup, message):
    setup(tmp_path)
    assert report.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("report: ")
    assert message in err
    assert not (tmp_path / "index.html").exists()


def test_missing_run_dir(report, tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
