"""The end of `make bench`: the targets' verdicts, every invalid cell with why, the exit status."""

from __future__ import annotations

import json
import shutil

from flask_deploy_lab import bench
from tests.loadtest.conftest import FIXTURES


def _copy(tmp_path, name):
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    return run_dir


def test_a_run_whose_cells_are_valid_and_meet_every_target_exits_0(tmp_path, capsys):
    verdicts, rows = bench.judge(_copy(tmp_path, "ladder"))
    out = capsys.readouterr().out
    assert len(rows) == 4 and verdicts and all(v.met for v in verdicts)
    assert "  all 4 cells valid\n" in out
    assert "INVALID" not in out
    assert bench.exit_status([], 0, verdicts, rows) == 0
    assert capsys.readouterr().out == ""


def test_an_invalid_cell_is_printed_with_why_and_fails_the_bench(tmp_path, capsys):
    """Three cells of the fixture run are invalid: a load generator above 90 % in
    one sample (/sleep, delay-bound: its verdict misses too) or in all (/db), and
    no ceiling (/render). The two of CPU-bound endpoints have no verdict, and fail
    the bench on their own."""
    verdicts, rows = bench.judge(_copy(tmp_path, "run"))
    out = capsys.readouterr().out
    assert [(v.cell, v.met) for v in verdicts] == [("uwsgi--sleep--u50", False)]
    assert (
        "  INVALID uwsgi--sleep--u50: load generator at 93 % CPU in a sample (above 90 %)\n" in out
    )
    assert (
        "  INVALID gevent--db--u200: load generator at 99 % CPU in a sample (above 90 %); "
        "a Locust process at 0.99 cores in a sample (above 0.9)\n" in out
    )
    assert "  INVALID flask--render--u10: no ceiling\n" in out
    assert "gunicorn--json--u20" not in out
    assert bench.exit_status([], 0, verdicts, rows) == 1
    assert capsys.readouterr().out == (
        "1 of 1 verdicts missed a target\n3 of 4 cells invalid: their figures are not results\n"
    )


def test_an_invalid_delay_bound_cell_also_misses_its_verdicts(tmp_path, capsys):
    run_dir = _copy(tmp_path, "ladder")
    cell_dir = next(p for p in sorted(run_dir.iterdir()) if (p / "hey.json").is_file())
    meta = json.loads((cell_dir / "hey.json").read_text())
    (cell_dir / "hey.json").write_text(json.dumps({**meta, "connections": 3}))
    verdicts, rows = bench.judge(run_dir)
    out = capsys.readouterr().out
    reason = "hey identity 1.5 off 1 by more than 5 %"
    assert f"  INVALID {cell_dir.name}: {reason}\n" in out
    assert f"MISSED {cell_dir.name} [locust]: " in out
    assert out.count(f"MISSED: invalid: {reason}") == 2
    assert bench.exit_status([], 0, verdicts, rows) == 1
    assert capsys.readouterr().out == (
        "2 of 6 verdicts missed a target\n1 of 4 cells invalid: their figures are not results\n"
    )


def test_a_failed_cell_or_report_alone_fails_the_bench(capsys):
    assert bench.exit_status([("c", "boom")], 0, [], []) == 1
    assert bench.exit_status([], 2, [], []) == 1
    assert bench.exit_status([], 0, [], []) == 0
