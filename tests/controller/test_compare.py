"""report.compare: two runs' summary.json side by side, and the regression gate.

Runs are written here as summary.json documents, the numbers chosen so that
every verdict can be checked by hand: with three repeats t(0.975, 2) = 4.303,
so [100, 101, 99] is 100 +- 4.303 * 1 / sqrt(3) = 100 +- 2.484.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import metadata

import pytest

from flask_deploy_lab.report import compare
from tests.controller.summary_rows import summary_row

BASE = "uwsgi--slow--d1--u100"


row = summary_row


def repeated(base, figure, values, **figures):
    """One row per value, cells base--r1, base--r2, ...; the figure takes each value."""
    return [row(f"{base}--r{k}", **{figure: v}, **figures) for k, v in enumerate(values, 1)]


def write_run(directory, cells, environment=None):
    directory.mkdir(parents=True)
    document = {"run": directory.name, "environment": environment, "cells": cells}
    (directory / "summary.json").write_text(json.dumps(document))
    return directory


def run_compare(tmp_path, cells_a, cells_b, *options):
    a = write_run(tmp_path / "run-a", cells_a)
    b = write_run(tmp_path / "run-b", cells_b)
    return compare.main([str(a), str(b), *options])


def compare_csv(tmp_path):
    path = tmp_path / "run-b" / "compare-run-a" / "compare.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def verdicts(tmp_path):
    return {(r["cell"], r["figure"]): r["verdict"] for r in compare_csv(tmp_path)}


def test_a_significant_regression_beyond_the_threshold_exits_1(tmp_path, capsys):
    # 100 +- 2.484 against 80 +- 2.484: -20 %, the intervals far apart
    rc = run_compare(
        tmp_path,
        repeated(BASE, "rps", [100.0, 101.0, 99.0]),
        repeated(BASE, "rps", [80.0, 81.0, 79.0]),
    )
    assert rc == 1
    out = capsys.readouterr().out
    assert f"| {BASE} | req/s | 100.00 ± 2.48 (n=3) | 80.00 ± 2.48 (n=3) | -20.00 (-20.0%) " in out
    assert "| significant | **regression** |" in out
    assert "1 regressions" in out
    (rps,) = [r for r in compare_csv(tmp_path) if r["figure"] == "rps"]
    assert rps["verdict"] == "regression"
    assert rps["significance"] == "significant"
    assert (rps["a_n"], rps["a_mean"], rps["a_sd"], rps["b_mean"]) == ("3", "100.0", "1.0", "80.0")
    assert float(rps["a_low"]) == pytest.approx(100 - 2.484, abs=5e-4)
    assert (float(rps["change"]), float(rps["relative"])) == (-20.0, -0.2)
    # the other figures did not move
    others = {r["figure"]: r["verdict"] for r in compare_csv(tmp_path) if r["figure"] != "rps"}
    assert others == {"efficiency": "within threshold", "p50_ms": "within threshold",
                      "p99_ms": "within threshold"}  # fmt: skip
    page = (tmp_path / "run-b" / "compare-run-a" / "compare.html").read_text()
    assert "1 regression</strong>" in page
    assert f'href="#{BASE}--rps"' in page and f'id="{BASE}--rps"' in page


def test_an_improvement_exits_0(tmp_path, capsys):
    rc = run_compare(
        tmp_path,
        repeated(BASE, "rps", [100.0, 101.0, 99.0]),
        repeated(BASE, "rps", [120.0, 121.0, 119.0]),
    )
    assert rc == 0
    assert verdicts(tmp_path)[(BASE, "rps")] == "improvement"
    assert "0 regressions and 1 improvements" in capsys.readouterr().out
    assert "No regression" in (tmp_path / "run-b" / "compare-run-a" / "compare.html").read_text()


def test_latency_is_better_lower(tmp_path):
    # identical repeats: intervals of width 0, 1010 against 1200 (+18.8 %) and 950 (-5.9 %)
    rc = run_compare(
        tmp_path,
        repeated(BASE, "p99_ms", [1010.0, 1010.0, 1010.0], p50_ms=1000.0),
        repeated(BASE, "p99_ms", [1200.0, 1200.0, 1200.0], p50_ms=940.0),
    )
    assert rc == 1
    found = verdicts(tmp_path)
    assert found[(BASE, "p99_ms")] == "regression"
    assert found[(BASE, "p50_ms")] == "improvement"


def test_a_worsening_that_the_intervals_do_not_separate_exits_0(tmp_path, capsys):
    # 100 +- 24.84 against 90 +- 24.84 (sd 10): -10 % but the intervals overlap
    rc = run_compare(
        tmp_path,
        repeated(BASE, "rps", [100.0, 110.0, 90.0]),
        repeated(BASE, "rps", [90.0, 100.0, 80.0]),
    )
    assert rc == 0
    assert verdicts(tmp_path)[(BASE, "rps")] == "worse, not distinguishable"
    out = capsys.readouterr().out
    assert "| -10.00 (-10.0%) | not distinguishable | worse, not distinguishable |" in out


def test_single_runs_are_not_judged_unless_the_gate_is_asked_for(tmp_path, capsys):
    cells_a, cells_b = [row(BASE, rps=100.0)], [row(BASE, rps=80.0)]
    assert run_compare(tmp_path, cells_a, cells_b) == 0
    assert verdicts(tmp_path)[(BASE, "rps")] == "worse, not judged (1 run)"
    out = capsys.readouterr().out
    assert "| 100.00 (n=1) | 80.00 (n=1) | -20.00 (-20.0%) | not judged (1 run) |" in out

    a, b = tmp_path / "run-a", tmp_path / "run-b"
    assert compare.main([str(a), str(b), "--gate-single-runs"]) == 1
    (rps,) = [r for r in compare_csv(tmp_path) if r["figure"] == "rps"]
    assert (rps["significance"], rps["verdict"]) == ("not judged (1 run)", "regression")
    page = (b / "compare-run-a" / "compare.html").read_text()
    assert "gates single runs on the threshold alone" in page


def test_one_repeat_against_three_is_not_judged(tmp_path):
    rc = run_compare(tmp_path, [row(BASE, rps=100.0)], repeated(BASE, "rps", [80.0, 81.0, 79.0]))
    assert rc == 0
    assert verdicts(tmp_path)[(BASE, "rps")] == "worse, not judged (1 run)"


@pytest.mark.parametrize(
    ("rps_b", "options", "verdict", "rc"),
    [
        (97.0, [], "within threshold", 0),
        (95.0, ["--gate-single-runs"], "within threshold", 0),  # at the threshold, not beyond
        (95.0, ["--gate-single-runs", "--threshold", "0.04"], "regression", 1),
        (95.0, ["--gate-single-runs", "--threshold", "4%"], "regression", 1),
        (85.0, ["--gate-single-runs", "--threshold", "0.2"], "within threshold", 0),
        (105.5, [], "better, not judged (1 run)", 0),
        (105.5, ["--gate-single-runs"], "improvement", 0),
    ],
)
def test_the_threshold_is_relative_to_a(tmp_path, rps_b, options, verdict, rc):
    assert run_compare(tmp_path, [row(BASE)], [row(BASE, rps=rps_b)], *options) == rc
    assert verdicts(tmp_path)[(BASE, "rps")] == verdict


def test_an_invalid_configuration_is_shown_and_never_counted(tmp_path, capsys):
    cells_b = repeated(BASE, "rps", [40.0, 41.0, 39.0])
    cells_b[1].update(valid=False, invalid_reasons=["load generator <saturated>"])
    rc = run_compare(
        tmp_path,
        [*repeated(BASE, "rps", [100.0, 101.0, 99.0]), row("gevent--slow--d1--u100", rps=5.0)],
        [*cells_b, row("gevent--slow--d1--u100", rps=1.0, valid=False, invalid_reasons="lost")],
        "--gate-single-runs",
    )
    assert rc == 0
    found = verdicts(tmp_path)
    assert {found[(BASE, f)] for f in ("rps", "efficiency", "p50_ms", "p99_ms")} == {"invalid"}
    assert found[("gevent--slow--d1--u100", "rps")] == "invalid"
    reasons = {r["cell"]: r["invalid_reasons"] for r in compare_csv(tmp_path)}
    assert reasons[BASE] == f"B {BASE}--r2: load generator <saturated>"
    assert reasons["gevent--slow--d1--u100"] == "B gevent--slow--d1--u100: lost"
    out = capsys.readouterr().out
    assert f"invalid, not judged: {BASE}: B {BASE}--r2: load generator <saturated>" in out
    assert "0 regressions and 0 improvements beyond 5.0%, 2 invalid" in out
    page = (tmp_path / "run-b" / "compare-run-a" / "compare.html").read_text()
    assert "load generator &lt;saturated&gt;" in page
    assert "<saturated>" not in page
    assert "REGRESSION" not in page


def test_an_invalid_run_a_is_not_counted_either(tmp_path):
    cells_a = [row(BASE, rps=100.0, valid=False, invalid_reasons=["workers lost"])]
    rc = run_compare(tmp_path, cells_a, [row(BASE, rps=10.0)], "--gate-single-runs")
    assert rc == 0
    assert verdicts(tmp_path)[(BASE, "rps")] == "invalid"


def test_cells_in_only_one_run_are_listed_apart(tmp_path, capsys):
    shared = "gevent--slow--d1--u100"
    cells_a = [row(shared), *repeated(BASE, "rps", [1.0, 2.0])]
    cells_b = [row(shared), row("granian--slow--d1--u100", rps=1.0)]
    assert run_compare(tmp_path, cells_a, cells_b, "--gate-single-runs") == 0
    out = capsys.readouterr().out
    assert f"only in A (run-a), not compared: {BASE}\n" in out
    assert "only in B (run-b), not compared: granian--slow--d1--u100" in out
    assert "1 configurations in common" in out and "1 only in A, 1 only in B" in out
    rows = compare_csv(tmp_path)
    assert {r["cell"] for r in rows if r["figure"]} == {shared}
    only = {r["cell"]: (r["verdict"], r["a_n"], r["b_n"]) for r in rows if not r["figure"]}
    assert only == {BASE: ("only in A", "2", ""), "granian--slow--d1--u100": ("only in B", "", "1")}
    page = (tmp_path / "run-b" / "compare-run-a" / "compare.html").read_text()
    assert "Only in A (run-a): not compared" in page and "Only in B (run-b)" in page


def test_hey_is_compared_where_a_run_has_it_and_a_missing_figure_is_not_counted(tmp_path):
    db = "uwsgi--db--u100"
    cells_a = [row(BASE, hey_rps=100.0), row(db, endpoint="db", delay_s=None)]
    cells_b = [row(BASE, hey_rps=None), row(db, endpoint="db", delay_s=None, p99_ms=None)]
    assert run_compare(tmp_path, cells_a, cells_b, "--gate-single-runs") == 0
    found = verdicts(tmp_path)
    assert found[(BASE, "hey_rps")] == "not measured in B"
    assert (db, "hey_rps") not in found
    assert found[(db, "p99_ms")] == "not measured in B"


def test_the_default_output_is_beside_run_b_and_out_moves_it(tmp_path, capsys):
    a = write_run(tmp_path / "run-a", [row(BASE)])
    b = write_run(tmp_path / "run-b", [row(BASE)])
    assert compare.main([str(a), str(b)]) == 0
    assert (b / "compare-run-a" / "compare.csv").is_file()
    assert (b / "compare-run-a" / "compare.html").is_file()
    assert f"-> {b / 'compare-run-a' / 'compare.html'}" in capsys.readouterr().out
    out = tmp_path / "elsewhere" / "cmp"
    assert compare.main([str(a), str(b), "--out", str(out)]) == 0
    assert (out / "compare.html").is_file()


def test_the_page_links_each_runs_report(tmp_path):
    a = write_run(tmp_path / "run-a", [row(BASE)], environment={"versions": {"uwsgi": "2.0.30"}})
    b = write_run(tmp_path / "run-b", [row(BASE)], environment={"versions": {"uwsgi": "2.0.31"}})
    (a / "index.html").write_text("report")
    assert compare.main([str(a), str(b)]) == 0
    page = (b / "compare-run-a" / "compare.html").read_text()
    assert '<a href="../../run-a/index.html">run-a</a>' in page
    assert "<th>versions.uwsgi</th><td>2.0.30</td><td>2.0.31</td>" in page


def test_environment_differences():
    a = {"git_commit": "abc", "versions": {"uwsgi": "1", "nginx": "2"}, "limits": {"q": "1"}}
    b = {"git_commit": "abc", "versions": {"uwsgi": "1", "nginx": "3", "granian": "4"}}
    assert compare.environment_differences(a, b) == [
        ("versions.nginx", "2", "3"),
        ("versions.granian", "n/a", "4"),
        ("limits.q", "1", "n/a"),
    ]
    assert compare.environment_differences(None, None) == []


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda a: None, "run A: {a} is not a directory"),
        (lambda a: a.mkdir(), "run A: {a}/summary.json is missing (fdl-report {a} writes it"),
        (lambda a: _write(a / "summary.json", "{not json"), "summary.json is not valid JSON: "),
        (lambda a: _write(a / "summary.json", "[]"), "must be an object with run, environment"),
        (lambda a: _write(a / "summary.json", '{"run": "x"}'), "has no list of cells"),
        (lambda a: _write(a / "summary.json", '{"cells": {}}'), "has no list of cells"),
        (lambda a: _write(a / "summary.json", '{"cells": []}'), "summary.json holds no cells"),
        (lambda a: _write(a / "summary.json", '{"cells": [{"rps": 1}]}'), "cells[0] is not a row"),
        (
            lambda a: _write(a / "summary.json", json.dumps({"cells": [row(f"{BASE}--r0")]})),
            f"cell id '{BASE}--r0' ends in a malformed repeat suffix --r0",
        ),
        (
            lambda a: _write(a / "summary.json", json.dumps({"cells": [row(BASE, rps="x")]})),
            f"cell '{BASE}': rps must be a number or null, got 'x'",
        ),
        (lambda a: _write_bytes(a / "summary.json", b"\xff{}"), "summary.json cannot be read: "),
        (
            lambda a: _write(a / "summary.json", json.dumps({"cells": [row("gevent--db--u1")]})),
            "the runs share no configuration: 1 only in A",
        ),
    ],
)
def test_bad_input_exits_2_saying_why(tmp_path, capsys, setup, message):
    a = tmp_path / "run-a"
    setup(a)
    b = write_run(tmp_path / "run-b", [row(BASE)])
    assert compare.main([str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("compare: ")
    assert message.format(a=a) in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not (b / "compare-run-a").exists()


def test_a_broken_run_b_is_named_as_b(tmp_path, capsys):
    a = write_run(tmp_path / "run-a", [row(BASE)])
    _write(tmp_path / "run-b" / "summary.json", '{"cells": []}')
    assert compare.main([str(a), str(tmp_path / "run-b")]) == 2
    assert capsys.readouterr().err.startswith("compare: run B: ")


def test_an_output_directory_that_cannot_be_made_exits_2(tmp_path, capsys):
    a = write_run(tmp_path / "run-a", [row(BASE)])
    b = write_run(tmp_path / "run-b", [row(BASE)])
    _write(tmp_path / "file", "not a directory")
    assert compare.main([str(a), str(b), "--out", str(tmp_path / "file" / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"compare: cannot write into {tmp_path}/file/out")


@pytest.mark.parametrize("threshold", ["-0.1", "abc", "nan"])
def test_a_bad_threshold_is_a_usage_error(tmp_path, capsys, threshold):
    with pytest.raises(SystemExit) as caught:
        compare.main([str(tmp_path), str(tmp_path), "--threshold", threshold])
    assert caught.value.code == 2
    assert "--threshold" in capsys.readouterr().err


def test_python_m_and_the_console_script(tmp_path):
    a = write_run(tmp_path / "run-a", repeated(BASE, "rps", [100.0, 101.0, 99.0]))
    b = write_run(tmp_path / "run-b", repeated(BASE, "rps", [80.0, 81.0, 79.0]))
    done = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report.compare", str(a), str(b)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "**regression**" in done.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "flask_deploy_lab.report.compare", str(a), str(tmp_path / "no")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 2
    assert failed.stderr == f"compare: run B: {tmp_path / 'no'} is not a directory\n"
    (script,) = metadata.entry_points(group="console_scripts", name="fdl-compare")
    assert script.value == "flask_deploy_lab.report.compare:main"
