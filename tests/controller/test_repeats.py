"""report.repeats: cell ids with a repeat suffix, and the statistics of repeated figures.

The expected numbers are computed by hand: [10, 12, 14] has mean 12 and
standard deviation sqrt((4 + 0 + 4) / 2) = 2; t(0.975, 2) = 4.303, so the 95 %
interval's half-width is 4.303 * 2 / sqrt(3) = 4.969.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from flask_deploy_lab.report import repeats
from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.repeats import aggregate, distinguishable, split_cell_id, stats
from flask_deploy_lab.report.summary import Row
from tests.controller.summary_rows import summary_row

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "bench-20261130-054548" / "summary.json"


@pytest.mark.parametrize(
    ("cell_id", "expected"),
    [
        ("uwsgi--slow--d1--u100--r2", ("uwsgi--slow--d1--u100", 2)),
        ("uwsgi--slow--d0.5--u100--r1", ("uwsgi--slow--d0.5--u100", 1)),
        ("gunicorn--db--u100--r12", ("gunicorn--db--u100", 12)),
        ("uwsgi--slow--d1--u100", ("uwsgi--slow--d1--u100", 1)),
        # a last segment that is not r<digits> is part of the id
        ("gunicorn--reads--u10", ("gunicorn--reads--u10", 1)),
        ("gunicorn--u10--rx", ("gunicorn--u10--rx", 1)),
        ("cell-r2", ("cell-r2", 1)),
    ],
)
def test_split_cell_id(cell_id, expected):
    assert split_cell_id(cell_id) == expected


@pytest.mark.parametrize(
    ("cell_id", "message"),
    [
        ("uwsgi--db--u100--r0", "malformed repeat suffix --r0"),
        ("uwsgi--db--u100--r01", "malformed repeat suffix --r01"),
        ("uwsgi--db--u100--r", "malformed repeat suffix --r:"),
        ("--r2", "is not valid"),
        ("", "is not valid"),
        ("uwsgi db", "is not valid"),
        ("uwsgi/../x", "is not valid"),
        (None, "must be a string, got None"),
        (3, "must be a string, got 3"),
    ],
)
def test_a_bad_cell_id_is_refused_saying_why(cell_id, message):
    with pytest.raises(ReportError) as caught:
        split_cell_id(cell_id)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_the_t_table():
    assert len(repeats.T_975) == 30
    assert repeats.t_quantile(1) == 12.706
    assert repeats.t_quantile(2) == 4.303
    assert repeats.t_quantile(10) == 2.228
    assert repeats.t_quantile(30) == 2.042
    assert repeats.t_quantile(31) == repeats.t_quantile(1000) == 1.96
    # each value lies between its neighbours: t falls towards the normal 1.96
    assert all(a > b for a, b in zip(repeats.T_975, repeats.T_975[1:], strict=False))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="degrees of freedom"):
            repeats.t_quantile(bad)


def test_the_t_interval_of_10_12_14():
    s = stats([10, 12, 14])
    assert (s.n, s.mean, s.sd) == (3, 12.0, 2.0)
    assert s.half_width == pytest.approx(4.969, abs=5e-4)
    assert s.low == pytest.approx(12 - 4.969, abs=5e-4)
    assert s.high == pytest.approx(12 + 4.969, abs=5e-4)
    assert s.cov == pytest.approx(2 / 12)
    assert s.has_interval
    assert s.values == (10.0, 12.0, 14.0)


def test_coefficient_of_variation():
    # [15, 25]: mean 20, sd sqrt((25 + 25) / 1) = 7.071, CoV 7.071 / 20 = 0.354
    assert stats([15, 25]).cov == pytest.approx(0.354, abs=5e-4)
    assert stats([3, 3, 3]).cov == 0.0
    # undefined for a mean of 0, and for a single value
    assert stats([-1, 1]).cov is None
    assert stats([5]).cov is None


def test_missing_figures_are_left_out_and_n_counts_the_rest():
    s = stats([10, None, 14, None])
    assert (s.n, s.mean) == (2, 12.0)
    assert s.sd == pytest.approx(math.sqrt(8))
    # t(1) = 12.706: 12.706 * 2.828 / 1.414 = 25.412
    assert s.half_width == pytest.approx(25.412)


def test_one_value_is_a_mean_without_an_interval():
    s = stats([None, 42.5])
    assert (s.n, s.mean, s.sd, s.half_width, s.low, s.high) == (1, 42.5, None, None, None, None)
    assert not s.has_interval


def test_no_value_is_no_mean():
    for values in ([], [None, None]):
        s = stats(values)
        assert (s.n, s.mean, s.sd, s.half_width) == (0, None, None, None)


def test_identical_repeats_have_an_interval_of_width_zero():
    s = stats([7, 7, 7])
    assert (s.sd, s.half_width, s.low, s.high) == (0.0, 0.0, 7.0, 7.0)


@pytest.mark.parametrize("value", ["12", True, float("nan"), float("inf")])
def test_a_figure_must_be_a_finite_number(value):
    with pytest.raises((TypeError, ValueError), match="figure must be"):
        stats([1, value])


def test_overlapping_intervals_are_not_distinguishable():
    # 12 +- 4.969 and 15 +- 4.969 overlap
    assert distinguishable(stats([10, 12, 14]), stats([13, 15, 17])) is False
    assert distinguishable(stats([13, 15, 17]), stats([10, 12, 14])) is False


def test_separate_intervals_are_distinguishable():
    # [7.031, 16.969] and [27.031, 36.969]
    assert distinguishable(stats([10, 12, 14]), stats([30, 32, 34])) is True
    assert distinguishable(stats([30, 32, 34]), stats([10, 12, 14])) is True
    # 17.0 is beyond 16.969: the intervals just miss each other
    assert distinguishable(stats([10, 12, 14]), stats([21.969, 22.0, 22.031])) is True


def test_without_an_interval_on_either_side_nothing_is_judged():
    assert distinguishable(stats([10]), stats([30, 32, 34])) is None
    assert distinguishable(stats([10, 12, 14]), stats([None])) is None


_row = summary_row


def test_aggregate_groups_repeats_by_base_id_in_order():
    rows = [
        _row("uwsgi--slow--u100--r2", rps=12.0),
        _row("gevent--slow--u100", rps=50.0),
        _row("uwsgi--slow--u100--r1", rps=10.0),
        _row("uwsgi--slow--u100--r3", rps=14.0, hey_rps=11.0),
    ]
    uwsgi, gevent = aggregate(rows)
    assert uwsgi.base == "uwsgi--slow--u100"
    assert uwsgi.cells == tuple(f"uwsgi--slow--u100--r{k}" for k in (1, 2, 3))
    assert uwsgi.repeats == (1, 2, 3)
    assert uwsgi.n == 3
    assert uwsgi.valid
    assert uwsgi.first["cell"] == "uwsgi--slow--u100--r1"
    assert set(uwsgi.figures) == set(repeats.FIGURES)
    rps = uwsgi.figures["rps"]
    assert (rps.n, rps.mean, rps.sd) == (3, 12.0, 2.0)
    assert rps.half_width == pytest.approx(4.969, abs=5e-4)
    # hey measured in one repeat only
    assert (uwsgi.figures["hey_rps"].n, uwsgi.figures["hey_rps"].mean) == (1, 11.0)
    assert uwsgi.figures["hey_p99_ms"].n == 0
    assert (gevent.base, gevent.n, gevent.repeats) == ("gevent--slow--u100", 1, (1,))
    assert gevent.figures["rps"].mean == 50.0
    assert not gevent.figures["rps"].has_interval


def test_a_repeat_marked_invalid_makes_the_configuration_invalid():
    rows = [
        _row("uwsgi--slow--u100--r1"),
        _row("uwsgi--slow--u100--r2", valid=False, invalid_reasons=["load generator saturated"]),
        _row("uwsgi--slow--u100--r3", valid=False, invalid_reasons="workers lost"),
        _row("gevent--slow--u100", valid=False),
        _row("granian--slow--u100", valid=True, invalid_reasons=[]),
    ]
    uwsgi, gevent, granian = aggregate(rows)
    assert not uwsgi.valid
    assert uwsgi.invalid_reasons == (
        "uwsgi--slow--u100--r2: load generator saturated",
        "uwsgi--slow--u100--r3: workers lost",
    )
    assert uwsgi.figures["rps"].n == 3  # still counted in the figures
    assert gevent.invalid_reasons == ("gevent--slow--u100: invalid (no reason given)",)
    assert granian.valid


def test_aggregate_takes_summary_rows_too():
    (agg,) = aggregate([Row.from_dict(_row("uwsgi--slow--u100--r1", rps=5.0))])
    assert (agg.base, agg.figures["rps"].mean) == ("uwsgi--slow--u100", 5.0)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [_row("uwsgi--slow--u100"), _row("uwsgi--slow--u100--r1")],
            "cells 'uwsgi--slow--u100' and 'uwsgi--slow--u100--r1' are both repeat 1 of "
            "'uwsgi--slow--u100'",
        ),
        (
            [_row("uwsgi--slow--u100--r1"), _row("uwsgi--slow--u100--r2", users=200)],
            "are repeats of 'uwsgi--slow--u100' but differ in users: 100 and 200",
        ),
        ([_row("uwsgi--slow--u100--r1", rps="fast")], "rps must be a number or null, got 'fast'"),
        ([_row("uwsgi--slow--u100--r0")], "malformed repeat suffix"),
        ([{"rps": 1.0}], "must be a string, got None"),
        (["uwsgi--slow--u100"], "a row must be an object"),
    ],
)
def test_aggregate_refuses_rows_that_do_not_add_up(rows, message):
    with pytest.raises(ReportError) as caught:
        aggregate(rows)
    assert message in str(caught.value)


def test_a_real_run_without_repeats_is_one_configuration_per_cell():
    cells = json.loads(RESULTS.read_text())["cells"]
    aggregates = aggregate(cells)
    assert len({a.base for a in aggregates}) == len(aggregates)
    assert sum(a.n for a in aggregates) == len(cells)
    rps = {c["cell"]: c["rps"] for c in cells}
    for agg in aggregates:
        if agg.n == 1:
            assert agg.figures["rps"].mean == rps[agg.cells[0]]


def _unmeasured(cell):
    """The bench's placeholder of a failed cell, as its row reads: no figure."""
    row = _row(cell, config="uwsgi (FAILED)", db_mode=None, valid=False)
    row.update(dict.fromkeys(repeats.FIGURES), invalid_reasons=["no ceiling"])
    return row


def test_a_repeat_that_measured_nothing_joins_its_configuration():
    rows = [
        _unmeasured("uwsgi--slow--u100--r1"),
        _row("uwsgi--slow--u100--r2", rps=10.0),
        _row("uwsgi--slow--u100--r3", rps=14.0),
    ]
    (agg,) = aggregate(rows)
    assert (agg.n, agg.figures["rps"].n, agg.figures["rps"].mean) == (3, 2, 12.0)
    # its fields are a measured repeat's, and it makes the configuration invalid
    assert (agg.first["cell"], agg.first["config"]) == ("uwsgi--slow--u100--r2", "uwsgi")
    assert agg.invalid_reasons == ("uwsgi--slow--u100--r1: no ceiling",)
    # measured repeats are still held to agree
    with pytest.raises(ReportError, match="differ in db_mode"):
        aggregate([*rows, _row("uwsgi--slow--u100--r4", db_mode="naive")])
    # a configuration none of whose repeats measured is its first repeat's
    (agg,) = aggregate([_unmeasured("x--r1"), _unmeasured("x--r2")])
    assert (agg.n, agg.first["cell"], agg.figures["rps"].n) == (2, "x--r1", 0)


def test_groups_are_the_points_measured_by_more_than_one_configuration():
    rows = [
        _row("uwsgi--slow--u100--r1"),
        _row("gevent--slow--u100--r1"),
        _row("uwsgi--slow--u200--r1", users=200),
        _row("gevent--slow--d0.5--u100--r1", delay_s=0.5),
        _row("granian--slow--u100--r1"),
    ]
    (point, aggs), *others = repeats.groups(aggregate(rows))
    assert others == []
    assert point == ("slow", 1.0, 100)
    assert [a.base for a in aggs] == [
        "uwsgi--slow--u100", "gevent--slow--u100", "granian--slow--u100",
    ]  # fmt: skip


def test_a_configuration_as_summary_json_and_configurations_csv_hold_it(tmp_path):
    # 12 +- 4.303 * 2 / sqrt(3) = 12 +- 4.968676
    rows = [_row(f"uwsgi--slow--u100--r{k}", rps=v) for k, v in ((1, 10), (2, 12), (3, 14))]
    (agg,) = aggregate(rows)
    document = repeats.as_dict(agg)
    assert list(document)[:12] == [
        "base", "config", "server", "db_mode", "endpoint", "users", "delay_s",
        "n", "cells", "valid", "invalid_reasons", "rps",
    ]  # fmt: skip
    assert document["base"] == "uwsgi--slow--u100"
    assert document["rps"] == {
        "n": 3, "mean": 12.0, "sd": 2.0, "ci95": [7.031324, 16.968676],
        "cov": 0.166667, "values": [10.0, 12.0, 14.0],
    }  # fmt: skip
    assert document["hey_rps"]["ci95"] is None
    json.dumps(document)  # plain JSON
    repeats.write_csv([agg], tmp_path / "configurations.csv")
    with (tmp_path / "configurations.csv").open(newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["rps_mean"], line["rps_ci95_low"], line["rps_cov"]) == (
        "12.0", "7.031324", "0.166667",
    )  # fmt: skip
    assert (line["hey_rps_n"], line["hey_rps_mean"], line["valid"]) == ("0", "", "True")
