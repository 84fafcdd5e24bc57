"""The bench without the lab: its settings, its ladder, a failed cell's row."""

from __future__ import annotations

import json

import pytest

from flask_deploy_lab import bench as bench_module
from flask_deploy_lab import catalogue
from flask_deploy_lab.cell import AppDeployment, FactsError

SETTINGS = (
    "SERVERS", "ENDPOINTS", "LADDER", "DELAYS", "USERS", "DURATION", "WARMUP", "RUN_ID", "REPEATS",
)  # fmt: skip


@pytest.fixture()
def bench(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return bench_module


def deployment(slots, concurrency=200):
    return AppDeployment(
        server="s", unit="u", db_mode="pool", processes=1, slots=slots, db_pool_max=10,
        cpus=1.0, cpu_quota="100%", memory_max="384M", port=8000, concurrency=concurrency,
    )  # fmt: skip


def test_defaults_are_the_issue_matrix(bench):
    args = bench.parse_args([])
    known = catalogue.load()
    assert args.servers == known.bench_servers()
    assert args.endpoints == known.bench_endpoints()
    # below, at and above the slots, up to four times them; the 1 s delay first
    assert args.ladder == [0.5, 1.0, 2.0, 4.0]
    assert args.delays == [1.0, 0.5]
    assert args.users == 100
    assert args.duration + args.warmup <= 35
    assert args.run_id.startswith("bench-")


def test_make_variables_override(bench, monkeypatch):
    monkeypatch.setenv("SERVERS", "uwsgi, gevent")
    monkeypatch.setenv("ENDPOINTS", "/slow json")
    monkeypatch.setenv("LADDER", "4 1 1")
    monkeypatch.setenv("DELAYS", "0.2")
    monkeypatch.setenv("USERS", "7")
    monkeypatch.setenv("DURATION", "9")
    args = bench.parse_args([])
    assert args.servers == ["uwsgi", "gevent"]
    assert args.endpoints == ["slow", "json"]
    assert (args.ladder, args.delays) == ([1.0, 4.0], [0.2])
    assert (args.users, args.duration) == (7, 9)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("USERS", "0", "USERS and DURATION must be > 0"),
        ("LADDER", "1 -2", "LADDER must be one or more numbers > 0"),
        ("LADDER", "two", "LADDER must be numbers"),
        ("DELAYS", "0", "DELAYS must be one or more numbers > 0"),
    ],
)
def test_bad_numbers_are_refused(bench, monkeypatch, capsys, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        bench.parse_args([])
    assert message in capsys.readouterr().err


def test_unknown_names_are_refused_with_the_valid_ones(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--servers", "uwsgi", "Gunicorn"])
    assert "server 'Gunicorn' is not known; valid: flask, " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--endpoints", "/nope"])
    assert "endpoint 'nope' is not known" in capsys.readouterr().err


def test_the_ladder_multiplies_the_slots_and_the_other_endpoints_take_users(bench):
    args = bench.parse_args(["--endpoints", "slow", "db"])
    steps = bench.steps_for("uwsgi", args.endpoints, 201, args)
    slow = [(s.delay_s, s.users) for s in steps if s.endpoint == "slow"]
    assert slow == [(d, u) for d in (1.0, 0.5) for u in (101, 201, 402, 804)]
    assert [(s.endpoint, s.users, s.delay_s) for s in steps if s.endpoint != "slow"] == [
        ("db", 100, None)
    ]
    assert steps[0].cell_id == "uwsgi--slow--d1--u101"
    assert steps[-1].cell_id == "uwsgi--db--u100"


def test_one_slot_gives_a_ladder_of_distinct_users(bench):
    args = bench.parse_args(["--endpoints", "slow", "--delays", "1"])
    assert [s.users for s in bench.steps_for("flask", args.endpoints, 1, args)] == [1, 2, 4]


def test_the_ladder_reference_is_the_slots_else_the_expected_concurrency(bench):
    assert bench.ladder_reference([deployment(200), deployment(100)]) == 300
    # a thread per request: no slots, the sizing's expected concurrency instead
    assert bench.ladder_reference([deployment(None, concurrency=200)]) == 200
    with pytest.raises(FactsError, match="neither slots nor concurrency"):
        bench.ladder_reference([deployment(None, concurrency=None)])


def test_a_failed_cell_keeps_a_row_in_the_report(bench, tmp_path):
    args = bench.parse_args(["--servers", "uwsgi", "--endpoints", "slow"])
    step = bench.Step("uwsgi", "slow", 400, 1.0)
    bench.write_placeholder_cell(tmp_path / step.cell_id, step, args)
    cell = json.loads((tmp_path / "uwsgi--slow--d1--u400" / "cell.json").read_text())
    assert cell["config"] == "uwsgi (FAILED)"
    assert (cell["server"], cell["endpoint"], cell["users"], cell["delay_s"]) == (
        "uwsgi", "slow", 400, 1.0,
    )  # fmt: skip
    bench.record_failures(tmp_path, [(step.cell_id, "converge failed: boom")])
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["failed_cells"] == "uwsgi--slow--d1--u400: converge failed: boom"


def test_one_run_of_the_playbook_measures_an_endpoints_ladder(bench):
    args = bench.parse_args(["--endpoints", "slow", "db", "--run-id", "r1"])
    steps = bench.steps_for("uwsgi", args.endpoints, 200, args)
    slow = bench.loadtest_vars(args, [s for s in steps if s.endpoint == "slow"], install=True)
    assert slow == {
        "run_id": "r1", "endpoint": "slow", "duration": 15, "warmup": 5,
        "loadtest_install": True, "delays": [1.0, 0.5], "ladder": [100, 200, 400, 800],
    }  # fmt: skip
    db = bench.loadtest_vars(args, [s for s in steps if s.endpoint == "db"], install=False)
    assert (db["users"], db["loadtest_install"]) == (100, False)
    assert "ladder" not in db
    # the playbook names the cells <server>--<endpoint>--d<delay>--u<users>, %g of the delay
    assert [s.cell_id for s in steps[:5]] == [
        "uwsgi--slow--d1--u100", "uwsgi--slow--d1--u200", "uwsgi--slow--d1--u400",
        "uwsgi--slow--d1--u800", "uwsgi--slow--d0.5--u100",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="every delay times every rung"):
        bench.loadtest_vars(args, [steps[0], steps[5]], install=False)
