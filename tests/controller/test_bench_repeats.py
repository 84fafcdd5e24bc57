"""REPEATS: the bench's rounds, their order and cell ids, without the lab.

The bench's loop is run here with its playbooks, the deployment facts, the
report and the verdicts replaced by stand-ins that record what they were
asked: the order of the converges and load tests is the bench's own.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from flask_deploy_lab import bench as bench_module
from flask_deploy_lab.cell import AppDeployment

SETTINGS = (
    "SERVERS", "ENDPOINTS", "LADDER", "DELAYS", "USERS", "DURATION", "WARMUP", "RUN_ID",
    "REPEATS", "DB_MODE", "INVENTORY",
)  # fmt: skip


@pytest.fixture()
def bench(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return bench_module


def deployment(slots):
    return AppDeployment(
        server="s", unit="u", db_mode="pool", processes=1, slots=slots, db_pool_max=10,
        cpus=1.0, cpu_quota="100%", memory_max="384M", port=8000, concurrency=200,
    )  # fmt: skip


def order(turns):
    return [(t.repeat, t.server) for t in turns]


def test_without_repeats_the_plan_is_the_servers_once_and_nothing_is_suffixed(bench):
    turns = bench.plan(["a", "b", "c"], 1)
    assert order(turns) == [(None, "a"), (None, "b"), (None, "c")]
    assert [t.first for t in turns] == [True, False, False]
    assert [t.suffix for t in turns] == ["", "", ""]
    args = bench.parse_args(["--endpoints", "slow", "db", "--run-id", "r"])
    assert args.repeats == 1
    steps = turns[0].steps(args.endpoints, 200, args)
    assert steps == bench.steps_for("a", args.endpoints, 200, args)
    assert [s.cell_id for s in steps][:2] == ["a--slow--d1--u100", "a--slow--d1--u200"]
    assert "repeat" not in bench.loadtest_vars(args, steps[:4], install=True)


def test_repeats_run_in_rounds_every_other_one_reversed(bench):
    turns = bench.plan(["a", "b", "c"], 3)
    assert order(turns) == [
        (1, "a"), (1, "b"), (1, "c"),
        (2, "c"), (2, "b"), (2, "a"),
        (3, "a"), (3, "b"), (3, "c"),
    ]  # fmt: skip
    # only the bench's first converge is the whole stack
    assert [t.first for t in turns] == [True] + [False] * 8
    assert {t.suffix for t in turns if t.repeat == 2} == {"--r2"}


@pytest.mark.parametrize("repeats", [2, 4, 6])
def test_an_even_number_of_rounds_cancels_a_steady_drift(bench, repeats):
    """Each server's mean position in the run is the same: a drift that grows
    steadily with time adds the same to every server's mean."""
    servers = [f"s{i}" for i in range(5)]
    turns = bench.plan(servers, repeats)
    assert len(turns) == len(servers) * repeats
    mean_time = {s: sum(i for i, t in enumerate(turns) if t.server == s) / repeats for s in servers}
    assert len(set(mean_time.values())) == 1
    # every round holds every server once
    for k in range(1, repeats + 1):
        assert sorted(t.server for t in turns if t.repeat == k) == servers


def test_an_odd_number_of_rounds_leaves_a_fraction_of_the_drift(bench):
    """With the same order every round the first and the last server's mean
    positions lie a whole round apart less one; reversing every other round of
    three leaves a third of that."""
    servers = [f"s{i}" for i in range(10)]
    turns = bench.plan(servers, 3)
    mean_time = [sum(i for i, t in enumerate(turns) if t.server == s) / 3 for s in servers]
    assert max(mean_time) - min(mean_time) == pytest.approx((len(servers) - 1) / 3)


def test_each_repeats_cells_end_in_its_suffix(bench):
    args = bench.parse_args(["--endpoints", "slow", "db", "--delays", "1", "--repeats", "2"])
    assert args.repeats == 2
    turns = bench.plan(["uwsgi", "gevent"], args.repeats)
    ids = [s.cell_id for t in turns for s in t.steps(args.endpoints, 200, args)]
    assert ids == [
        "uwsgi--slow--d1--u100--r1", "uwsgi--slow--d1--u200--r1", "uwsgi--slow--d1--u400--r1",
        "uwsgi--slow--d1--u800--r1", "uwsgi--db--u100--r1",
        "gevent--slow--d1--u100--r1", "gevent--slow--d1--u200--r1", "gevent--slow--d1--u400--r1",
        "gevent--slow--d1--u800--r1", "gevent--db--u100--r1",
        "gevent--slow--d1--u100--r2", "gevent--slow--d1--u200--r2", "gevent--slow--d1--u400--r2",
        "gevent--slow--d1--u800--r2", "gevent--db--u100--r2",
        "uwsgi--slow--d1--u100--r2", "uwsgi--slow--d1--u200--r2", "uwsgi--slow--d1--u400--r2",
        "uwsgi--slow--d1--u800--r2", "uwsgi--db--u100--r2",
    ]  # fmt: skip
    assert len(set(ids)) == len(ids)


def test_the_playbook_is_given_the_repeat(bench):
    args = bench.parse_args(["--endpoints", "slow", "db", "--run-id", "r", "--repeats", "3"])
    steps = bench.plan(["uwsgi"], 3)[1].steps(args.endpoints, 200, args)
    slow = bench.loadtest_vars(args, [s for s in steps if s.endpoint == "slow"], install=False)
    assert slow["repeat"] == 2
    assert slow["ladder"] == [100, 200, 400, 800]
    db = bench.loadtest_vars(args, [s for s in steps if s.endpoint == "db"], install=False)
    assert (db["repeat"], db["users"]) == (2, 100)
    # one run is one repeat of one server's endpoint
    other = bench.Step("uwsgi", "slow", 100, 1.0, repeat=3)
    with pytest.raises(ValueError, match="one server, endpoint and repeat"):
        bench.loadtest_vars(args, [steps[0], other], install=False)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "2.0", "3x", "٣"])
def test_bad_repeats_are_refused_before_anything_runs(bench, monkeypatch, capsys, value):
    monkeypatch.setenv("REPEATS", value)
    with pytest.raises(SystemExit) as caught:
        bench.parse_args([])
    assert caught.value.code == 2
    assert f"REPEATS must be a whole number >= 1, got {value!r}" in capsys.readouterr().err
    monkeypatch.delenv("REPEATS")
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", value])
    assert "REPEATS must be a whole number >= 1" in capsys.readouterr().err


def test_repeats_from_the_environment_or_the_option(bench, monkeypatch):
    monkeypatch.setenv("REPEATS", " 3 ")
    assert bench.parse_args([]).repeats == 3
    assert bench.parse_args(["--repeats", "5"]).repeats == 5
    monkeypatch.setenv("REPEATS", "")  # make bench REPEATS= : the default
    assert bench.parse_args([]).repeats == 1


def test_the_estimate_scales_with_the_repeats(bench):
    args = bench.parse_args(["--servers", "uwsgi", "gevent", "--endpoints", "slow", "db"])
    per_turn = bench.cells_per_server(args)
    assert per_turn == 1 + 2 * 4
    one = bench.remaining_seconds(2, 2 * per_turn, args)
    # a converge, and a cell with Locust's and hey's warm-up and run, at first guesses
    cell = bench.GUESS_CELL_OVERHEAD_S + 2 * (args.warmup + args.duration)
    assert one == 2 * bench.GUESS_CONVERGE_S + 2 * per_turn * cell
    assert bench.remaining_seconds(6, 6 * per_turn, args) == 3 * one
    # once timed, the times measured
    assert bench.remaining_seconds(1, 2, args, [10, 30], [5]) == 20 + 2 * 5


class FakeLab:
    """The bench's playbooks, facts, report and verdicts, recorded instead of run."""

    def __init__(self, monkeypatch, tmp_path, fail=()):
        self.calls = []
        self.fail = set(fail)  # (playbook, log name) that fail
        monkeypatch.setattr(bench_module, "PROJECT_DIR", tmp_path)
        monkeypatch.setattr(bench_module, "ansible_playbook", self.playbook)
        monkeypatch.setattr(bench_module, "read_deployments", self.deployments)
        monkeypatch.setattr(bench_module.subprocess, "run", self.report)
        monkeypatch.setattr(bench_module, "judge", lambda run_dir: ([], []))

    def playbook(self, args, playbook, extra, log_path, tags=None):
        self.calls.append((playbook, log_path.name, dict(extra), tags))
        if (playbook, log_path.name) in self.fail:
            return False, "boom"
        if playbook == "loadtest.yml":  # the playbook makes the run's directory
            (bench_module.PROJECT_DIR / "reports" / extra["run_id"]).mkdir(
                parents=True, exist_ok=True
            )
        return True, None

    def deployments(self, args, log_path):
        return [deployment(4)]

    def report(self, command, **kwargs):
        return subprocess.CompletedProcess(command, 0, "report: written", "")


def test_the_bench_converges_each_server_as_it_comes_up_and_names_each_repeat(
    bench, monkeypatch, tmp_path, capsys
):
    lab = FakeLab(monkeypatch, tmp_path)
    argv = ["--servers", "uwsgi", "gevent", "--endpoints", "slow", "db", "--delays", "1"]
    assert bench.main([*argv, "--ladder", "1", "--repeats", "2", "--run-id", "r"]) == 0
    assert [(c[0], c[1], c[3]) for c in lab.calls] == [
        ("site.yml", "converge--uwsgi--r1.log", None),
        ("loadtest.yml", "uwsgi--slow--r1.log", None),
        ("loadtest.yml", "uwsgi--db--r1.log", None),
        ("site.yml", "converge--gevent--r1.log", "app,proxy"),
        ("loadtest.yml", "gevent--slow--r1.log", None),
        ("loadtest.yml", "gevent--db--r1.log", None),
        ("site.yml", "converge--gevent--r2.log", "app,proxy"),
        ("loadtest.yml", "gevent--slow--r2.log", None),
        ("loadtest.yml", "gevent--db--r2.log", None),
        ("site.yml", "converge--uwsgi--r2.log", "app,proxy"),
        ("loadtest.yml", "uwsgi--slow--r2.log", None),
        ("loadtest.yml", "uwsgi--db--r2.log", None),
    ]
    loadtests = [c[2] for c in lab.calls if c[0] == "loadtest.yml"]
    assert [(x["endpoint"], x["repeat"]) for x in loadtests] == [
        ("slow", 1), ("db", 1), ("slow", 1), ("db", 1),
        ("slow", 2), ("db", 2), ("slow", 2), ("db", 2),
    ]  # fmt: skip
    # Locust is installed by the first run only
    assert [x["loadtest_install"] for x in loadtests] == [True] + [False] * 7
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("bench r: 2 servers x 2 endpoints x 2 repeats (interleaved), ")
    assert "about 8 cells" in first
    assert "converge gevent (repeat 2/2, 3/4)" in out
    assert "cells gevent--slow--d1--u4--r2: elapsed" in out
    assert "bench r: 8 of 8 cells in " in out


def test_without_repeats_the_bench_is_unchanged(bench, monkeypatch, tmp_path, capsys):
    lab = FakeLab(monkeypatch, tmp_path)
    argv = ["--servers", "uwsgi", "gevent", "--endpoints", "db", "--run-id", "r"]
    assert bench.main(argv) == 0
    assert [(c[0], c[1], c[3]) for c in lab.calls] == [
        ("site.yml", "converge--uwsgi.log", None),
        ("loadtest.yml", "uwsgi--db.log", None),
        ("site.yml", "converge--gevent.log", "app,proxy"),
        ("loadtest.yml", "gevent--db.log", None),
    ]
    assert all("repeat" not in c[2] for c in lab.calls)
    out = capsys.readouterr().out
    assert out.startswith("bench r: 2 servers x 1 endpoints, about 2 cells ")
    assert "converge gevent (2/2)" in out
    assert "cells gevent--db--u100: elapsed" in out


def test_a_repeat_whose_converge_fails_keeps_its_configurations_cell_ids(
    bench, monkeypatch, tmp_path, capsys
):
    """The failed repeat's placeholders are named with the slots an earlier repeat
    read, so that the report counts them in that configuration."""
    lab = FakeLab(monkeypatch, tmp_path, fail={("site.yml", "converge--uwsgi--r2.log")})
    argv = ["--servers", "uwsgi", "--endpoints", "slow", "--delays", "1", "--ladder", "1", "2"]
    assert bench.main([*argv, "--repeats", "2", "--run-id", "r"]) == 1
    assert [c[1] for c in lab.calls] == [
        "converge--uwsgi--r1.log", "uwsgi--slow--r1.log", "converge--uwsgi--r2.log",
    ]  # fmt: skip
    run_dir = tmp_path / "reports" / "r"
    for cell in ("uwsgi--slow--d1--u4--r2", "uwsgi--slow--d1--u8--r2"):
        assert json.loads((run_dir / cell / "cell.json").read_text())["config"] == "uwsgi (FAILED)"
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["failed_cells"] == (
        "uwsgi--slow--d1--u4--r2: converge failed: boom; "
        "uwsgi--slow--d1--u8--r2: converge failed: boom"
    )
    assert "  FAILED uwsgi--slow--d1--u8--r2: converge failed: boom" in capsys.readouterr().out
