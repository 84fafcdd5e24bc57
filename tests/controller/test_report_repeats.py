"""The report of a run with repeats: summary.json's "configurations",
configurations.csv and the page's Repeats section.

The run is the ladder fixture (tests/loadtest/fixtures/ladder) with each cell
copied to --r1, --r2, --r3 and one repeat's figures edited: a request fewer in
the stats history's last row lowers the steady rate, and a longer mean keeps
the closed loop's identity (users / req/s = mean latency), so that every
repeat stays valid. At 2 users both servers measure 2.0, 1.8 and 2.0 req/s in
some order: mean 1.9333, sd 0.11547, and with t(0.975, 2) = 4.303 a 95 %
interval of +- 4.303 * 0.11547 / sqrt(3) = 0.2869, the same for both: not
distinguishable. At 8 users uwsgi (4 slots) serves about 4 req/s and
flask-threaded 8: intervals far apart.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil

import pytest

from flask_deploy_lab import bench
from flask_deploy_lab.report import cli, repeats, summary
from tests.loadtest.conftest import FIXTURES

LADDER = FIXTURES / "ladder"
U2 = ("uwsgi--slow--d1--u2", "flask-threaded--slow--d1--u2")
U8 = ("uwsgi--slow--d1--u8", "flask-threaded--slow--d1--u8")
# base id -> per repeat: (the history's last Total Request Count, the mean ms) or None
EDITS = {
    "uwsgi--slow--d1--u2": [None, (15, 1110), None],
    "flask-threaded--slow--d1--u2": [(15, 1110), None, None],
    "uwsgi--slow--d1--u8": [None, (35, 2060), (34, 2120)],
    "flask-threaded--slow--d1--u8": [None, (71, 1015), (70, 1030)],
}


def _rewrite(path, edit):
    rows = list(csv.reader(path.open(newline="")))
    edit(rows[0], rows[1:])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue())


def edit_cell(cell_dir, last_count=None, mean_ms=None):
    """The stats history's last Total Request Count, and Locust's mean latency."""

    def history(header, rows):
        column = header.index("Total Request Count")
        for row in rows:
            if row[0] == rows[-1][0]:
                row[column] = str(last_count)

    def stats(header, rows):
        for row in rows:
            row[header.index("Average Response Time")] = str(mean_ms)

    if last_count is not None:
        _rewrite(cell_dir / "locust_stats_history.csv", history)
    if mean_ms is not None:
        _rewrite(cell_dir / "locust_stats.csv", stats)


def repeated_run(run_dir, edits=EDITS):
    """Every cell of the ladder fixture three times, --r1 to --r3, edited as `edits` says."""
    run_dir.mkdir(parents=True)
    for base, changes in edits.items():
        for k, change in enumerate(changes, 1):
            shutil.copytree(LADDER / base, run_dir / f"{base}--r{k}")
            if change:
                edit_cell(run_dir / f"{base}--r{k}", *change)
    return run_dir


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run_dir = repeated_run(tmp_path_factory.mktemp("reports") / "repeats")
    assert cli.main([str(run_dir)]) == 0
    return run_dir


def document(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def by_base(run_dir):
    return {c["base"]: c for c in document(run_dir)["configurations"]}


def group_row(page, anchor):
    """The cells of the Repeats section's row of one endpoint, delay and users."""
    row = re.search(rf'<tr id="{anchor}">(.*?)</tr>', page, re.S)
    assert row, anchor
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)


def test_summary_json_has_a_configuration_per_base_id(written):
    doc = document(written)
    assert len(doc["cells"]) == 12
    configurations = by_base(written)
    assert set(configurations) == set(EDITS)
    uwsgi = configurations["uwsgi--slow--d1--u2"]
    assert {k: uwsgi[k] for k in ("server", "endpoint", "users", "delay_s", "n", "valid")} == {
        "server": "uwsgi", "endpoint": "slow", "users": 2, "delay_s": 1.0, "n": 3, "valid": True,
    }  # fmt: skip
    assert uwsgi["cells"] == [f"uwsgi--slow--d1--u2--r{k}" for k in (1, 2, 3)]
    assert uwsgi["invalid_reasons"] == []
    assert set(repeats.FIGURES) <= set(uwsgi)


def test_the_statistics_are_the_hand_computed_ones(written):
    configurations = by_base(written)
    half_width = 4.303 * math.sqrt(((2 - 1.9333) ** 2 * 2 + (1.8 - 1.9333) ** 2) / 2) / math.sqrt(3)
    assert half_width == pytest.approx(0.2869, abs=1e-4)
    for base in U2:
        rps = configurations[base]["rps"]
        assert sorted(rps["values"]) == [1.8, 2.0, 2.0]
        assert rps["n"] == 3
        assert rps["mean"] == pytest.approx(1.9333, abs=1e-4)
        assert rps["sd"] == pytest.approx(0.11547, abs=1e-5)
        assert rps["ci95"] == pytest.approx([1.9333 - 0.2869, 1.9333 + 0.2869], abs=1e-4)
        assert rps["cov"] == pytest.approx(0.11547 / 1.9333, abs=1e-4)
    # the p99 did not move: an interval of width 0, a CoV of 0
    p99 = configurations[U2[0]]["p99_ms"]
    assert (p99["mean"], p99["ci95"], p99["cov"]) == (1000.0, [1000.0, 1000.0], 0.0)
    # hey ran beside Locust for uwsgi only
    assert configurations[U2[0]]["hey_rps"]["n"] == 3
    assert configurations[U2[1]]["hey_rps"] == {
        "n": 0, "mean": None, "sd": None, "ci95": None, "cov": None, "values": []
    }  # fmt: skip


def test_a_configurations_values_are_its_cells_figures(written):
    doc = document(written)
    cells = {c["cell"]: c for c in doc["cells"]}
    for configuration in doc["configurations"]:
        for figure in repeats.FIGURES:
            values = [cells[cell][figure] for cell in configuration["cells"]]
            assert configuration[figure]["values"] == [v for v in values if v is not None]


def test_configurations_csv_is_the_json_flattened(written):
    with (written / "configurations.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == repeats.CSV_FIELDS
        rows = {row["base"]: row for row in reader}
    configurations = by_base(written)
    assert set(rows) == set(configurations)
    for base, row in rows.items():
        configuration = configurations[base]
        assert row["n"] == "3"
        assert row["valid"] == "True"
        assert row["cells"] == "; ".join(configuration["cells"])
        rps = configuration["rps"]
        assert float(row["rps_mean"]) == rps["mean"]
        assert [float(row["rps_ci95_low"]), float(row["rps_ci95_high"])] == rps["ci95"]
        assert float(row["rps_cov"]) == rps["cov"]
    # not measured: empty
    assert rows[U2[1]]["hey_rps_n"] == "0"
    assert rows[U2[1]]["hey_rps_mean"] == rows[U2[1]]["hey_rps_ci95_low"] == ""


def test_the_page_has_a_repeats_section(written):
    page = (written / "index.html").read_text()
    assert '<h2 id="repeats">Repeats</h2>' in page
    assert page.index('id="repeats"') < page.index('id="summary"')
    # mean ± half-width and CoV of req/s, p99 and efficiency
    assert "1.93 ± 0.29</td>" in page
    assert "1000.0 ± 0.0</td>" in page
    assert "6.0%</td>" in page
    assert 'href="configurations.csv"' in page


def test_overlapping_servers_are_not_distinguishable_and_separated_ones_are(written):
    page = (written / "index.html").read_text()
    endpoint, delay, users, ranking, same, apart, unjudged = group_row(
        page, "repeats--slow--d1--u2"
    )
    assert (endpoint, delay, users) == ("/slow", "1 s", "2")
    assert same in ("uwsgi and flask-threaded", "flask-threaded and uwsgi")
    assert (apart, unjudged) == ("none", "none")
    *_, ranking, same, apart, unjudged = group_row(page, "repeats--slow--d1--u8")
    assert ranking.startswith("flask-threaded 7.")
    assert same == "none"
    assert apart == "flask-threaded and uwsgi"
    assert unjudged == "none"
    # the verdicts are report.repeats'
    configurations = {c.base: c for c in cli.configurations(_rows(written))}
    rps = [configurations[base].figures["rps"] for base in U2]
    assert repeats.distinguishable(*rps) is False
    rps = [configurations[base].figures["rps"] for base in U8]
    assert repeats.distinguishable(*rps) is True


def _rows(run_dir):
    return [summary.Row.from_dict(c) for c in document(run_dir)["cells"]]


def test_a_run_without_repeats_reports_as_before(tmp_path):
    run_dir = tmp_path / "ladder"
    shutil.copytree(LADDER, run_dir)
    # a configurations.csv of an earlier report is not left to describe other cells
    (run_dir / "configurations.csv").write_text("stale\n")
    assert cli.main([str(run_dir)]) == 0
    doc = document(run_dir)
    assert list(doc) == ["run", "environment", "cells"]
    assert not (run_dir / "configurations.csv").exists()
    page = (run_dir / "index.html").read_text()
    assert 'id="repeats"' not in page
    assert "not distinguishable" not in page
    assert "configurations.csv" not in page


def test_write_json_adds_configurations_only_when_given(tmp_path):
    rows = _rows_of_ladder(tmp_path)
    summary.write_json("r", None, rows, tmp_path / "a.json")
    assert "configurations" not in json.loads((tmp_path / "a.json").read_text())
    summary.write_json("r", None, rows, tmp_path / "b.json", configurations=[{"base": "x"}])
    assert json.loads((tmp_path / "b.json").read_text())["configurations"] == [{"base": "x"}]


def _rows_of_ladder(tmp_path):
    run_dir = tmp_path / "ladder"
    shutil.copytree(LADDER, run_dir)
    assert cli.main([str(run_dir)]) == 0
    return _rows(run_dir)


def test_an_invalid_repeat_makes_its_configuration_invalid_and_unjudged(tmp_path, capsys):
    edits = {**EDITS, "uwsgi--slow--d1--u2": [None, None, (None, 1500)]}
    run_dir = repeated_run(tmp_path / "run", edits)
    assert cli.main([str(run_dir)]) == 0
    uwsgi = by_base(run_dir)["uwsgi--slow--d1--u2"]
    assert uwsgi["valid"] is False
    (reason,) = uwsgi["invalid_reasons"]
    assert reason.startswith("uwsgi--slow--d1--u2--r3: identity 0.")
    assert uwsgi["rps"]["n"] == 3  # still counted
    page = (run_dir / "index.html").read_text()
    *_, same, apart, unjudged = group_row(page, "repeats--slow--d1--u2")
    assert (same, apart) == ("none", "none")
    assert "(invalid)" in unjudged
    assert re.search(r'<tr class="invalid"><td>uwsgi</td><td[^>]*>uwsgi--slow--d1--u2</td>', page)


def test_a_failed_repeat_joins_its_configuration(tmp_path):
    """The bench's placeholder of a failed cell ("uwsgi (FAILED)", no db_mode, no
    figures) counts as a repeat that measured nothing, not as another configuration."""
    edits = {base: changes[:2] for base, changes in EDITS.items()}
    run_dir = repeated_run(tmp_path / "run", edits)
    args = bench.parse_args(["--servers", "uwsgi", "--endpoints", "slow", "--duration", "10"])
    step = bench.Step("uwsgi", "slow", 2, 1.0, repeat=3)
    bench.write_placeholder_cell(run_dir / step.cell_id, step, args)
    assert cli.main([str(run_dir)]) == 0
    uwsgi = by_base(run_dir)["uwsgi--slow--d1--u2"]
    assert uwsgi["n"] == 3
    assert uwsgi["rps"]["n"] == 2
    assert uwsgi["valid"] is False
    assert uwsgi["invalid_reasons"] == ["uwsgi--slow--d1--u2--r3: no ceiling"]
    # the configuration's fields are those of a repeat that measured
    assert (uwsgi["db_mode"], uwsgi["config"]) == ("pool", "uwsgi [pool]")


def test_repeats_that_do_not_add_up_fail_the_report_saying_why(tmp_path, capsys):
    run_dir = repeated_run(tmp_path / "run", {"uwsgi--slow--d1--u2": [None, None]})
    shutil.copytree(LADDER / "uwsgi--slow--d1--u2", run_dir / "uwsgi--slow--d1--u2")
    assert cli.main([str(run_dir)]) == 2
    assert (
        "cells 'uwsgi--slow--d1--u2' and 'uwsgi--slow--d1--u2--r1' are both repeat 1"
        in capsys.readouterr().err
    )
