"""The bench without the lab: its settings, the targets it checks, a failed cell's row."""

from __future__ import annotations

import json

import pytest

from flask_deploy_lab import bench as bench_module
from flask_deploy_lab import catalogue


@pytest.fixture(scope="module")
def bench():
    return bench_module


def test_defaults_are_the_issue_matrix(bench, monkeypatch):
    for name in ("SERVERS", "ENDPOINTS", "USERS", "DURATION", "WARMUP", "DELAY", "RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    args = bench.parse_args([])
    known = catalogue.load()
    assert args.servers == known.bench_servers()
    assert args.endpoints == known.bench_endpoints()
    assert (args.users, args.delay) == (100, 0.5)
    assert args.duration + args.warmup <= 35
    assert args.run_id.startswith("bench-")


def test_make_variables_override(bench, monkeypatch):
    monkeypatch.setenv("SERVERS", "uwsgi, gevent")
    monkeypatch.setenv("ENDPOINTS", "/slow json")
    monkeypatch.setenv("USERS", "7")
    monkeypatch.setenv("DURATION", "9")
    monkeypatch.setenv("DELAY", "0.2")
    args = bench.parse_args([])
    assert args.servers == ["uwsgi", "gevent"]
    assert args.endpoints == ["slow", "json"]
    assert (args.users, args.duration, args.delay) == (7, 9, 0.2)


def test_bad_numbers_are_refused(bench, monkeypatch):
    monkeypatch.setenv("USERS", "0")
    with pytest.raises(SystemExit):
        bench.parse_args([])


def test_unknown_names_are_refused_with_the_valid_ones(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--servers", "uwsgi", "Gunicorn"])
    assert "server 'Gunicorn' is not known; valid: flask, " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--endpoints", "/nope"])
    assert "endpoint 'nope' is not known" in capsys.readouterr().err


def test_targets_are_checked_on_slow_cells(bench, tmp_path):
    rows = [
        {"cell": "a", "server": "uwsgi", "endpoint": "slow", "rps": 196.0, "ceiling_rps": 200.0,
         "efficiency": 0.98, "p99_ms": 540, "failures": 0, "generator_saturated": False},
        {"cell": "b", "server": "gevent", "endpoint": "slow", "rps": 150.0, "ceiling_rps": 200.0,
         "efficiency": 0.75, "p99_ms": 900, "failures": 3, "generator_saturated": True},
        {"cell": "c", "server": "flask", "endpoint": "slow", "rps": 1.98, "ceiling_rps": 2.0,
         "efficiency": 0.99, "p99_ms": 19000, "failures": 0, "generator_saturated": False},
        {"cell": "d", "server": "uwsgi", "endpoint": "db", "rps": 900.0},
    ]  # fmt: skip
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"cells": rows}))
    lines = bench.check_targets(summary, 0.5)
    assert len(lines) == 3
    assert lines[0].endswith(": met")
    assert "MISSED" in lines[1]
    assert "efficiency 0.75 < 0.95" in lines[1]
    assert "p99 0.900s > 1.2 x delay" in lines[1]
    assert "3 failures" in lines[1]
    assert "saturated" in lines[1]
    assert "flask one request at a time: 1.98 req/s, 1/delay = 2" in lines[2]


def test_a_failed_cell_keeps_a_row_in_the_report(bench, tmp_path):
    args = bench.parse_args(["--servers", "uwsgi", "--endpoints", "slow"])
    bench.write_placeholder_cell(tmp_path / "uwsgi--slow--u100", "uwsgi", "slow", args)
    cell = json.loads((tmp_path / "uwsgi--slow--u100" / "cell.json").read_text())
    assert cell["config"] == "uwsgi (FAILED)"
    assert (cell["server"], cell["endpoint"], cell["users"]) == ("uwsgi", "slow", 100)
    bench.record_failures(tmp_path, [("uwsgi--slow--u100", "converge failed: boom")])
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["failed_cells"] == "uwsgi--slow--u100: converge failed: boom"
