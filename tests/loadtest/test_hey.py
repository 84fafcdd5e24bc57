"""flask_deploy_lab.report.hey: hey's CSV and JSON in, the figures of its window out."""

from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal

import pytest

from flask_deploy_lab.report import hey
from flask_deploy_lab.report.errors import ReportError
from tests.loadtest.conftest import FIXTURES

# fixtures/hey/window: 2 connections, warm-up 1 s, window 4 s, so [1, 5]. Of its
# 16 rows (completion = offset + response-time), two complete in the warm-up
# (0.5, 0.9999), two after the window (5.0001, 5.3) and twelve inside it, both
# ends included (1.0000 and 5.0000); one of the twelve is a 503.
WINDOW = FIXTURES / "hey" / "window"


def test_the_window_keeps_only_requests_completed_inside_it():
    result = hey.read_hey(WINDOW)
    assert result.connections == 2
    assert (result.warmup_s, result.duration_s) == (1.0, 4.0)
    assert result.requests == 12
    assert result.non_2xx == 1
    # 12 requests' work / 4 s (the share of the requests straddling an edge: 3e-4)
    assert result.rps == pytest.approx(3.0, abs=1e-3)
    # in the window, sorted: 400, 500 x6, 600, 700, 700, 900.1, 1200 ms
    assert result.mean_ms == pytest.approx(7500.1 / 12)
    # nearest rank: ceil(0.50 * 12) = 6th; ceil(0.90 * 12) = 11th; ceil(0.95 * 12) =
    # ceil(0.99 * 12) = ceil(0.999 * 12) = 12th
    assert result.p50_ms == 500.0
    assert result.p90_ms == 900.1
    assert result.p95_ms == 1200.0
    assert result.p99_ms == 1200.0
    assert result.p999_ms == 1200.0
    assert result.max_ms == 1200.0
    # Little's law: 3 req/s * 0.6250083 s
    assert result.in_flight_estimate == pytest.approx(3.0 * 7500.1 / 12 / 1000, rel=1e-4)
    assert result.identity_ratio == pytest.approx(2 / (3.0 * 7500.1 / 12 / 1000), rel=1e-4)
    assert result.version == "0.1.4-2+b4"
    assert result.url == "http://proxy1/slow?delay=0.5"


def test_the_warm_up_would_change_every_figure():
    """The same file with no warm-up and a window holding every row: the figures differ."""
    requests = hey.read_requests(WINDOW / hey.CSV)
    assert len(requests) == 16
    everything = hey.summarize(requests, connections=2, warmup_s=0, duration_s=6)
    assert everything.requests == 16
    assert everything.p99_ms == 1200.0
    assert hey.read_hey(WINDOW).requests == 12


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        # nearest rank, never an interpolation: the median of 1..4 is 2, not 2.5
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 75, 3),
        ([1, 2, 3, 4], 76, 4),
        ([1, 2, 3, 4], 100, 4),
        # ceil(0.99 * 100) = 99: the 99th of 100
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 99.5, 100),
        # ceil(0.95 * 20) = 19, exactly (no float rounding up to 20)
        (list(range(1, 21)), 95, 19),
        ([7], 1, 7),
        ([], 50, None),
    ],
)
def test_percentile_is_nearest_rank(values, p, expected):
    assert hey.percentile(values, p) == expected


def test_percentile_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="not in"):
        hey.percentile([1, 2], 0)


def test_a_window_with_no_completed_request():
    result = hey.summarize([], connections=4, warmup_s=5, duration_s=20)
    assert result.requests == 0
    assert result.rps == 0.0
    assert result.mean_ms is result.p50_ms is result.p99_ms is result.max_ms is None
    assert result.identity_ratio is None


def test_times_are_exact_at_the_window_edges():
    # 0.1 + 0.2 is not 0.3 in binary floating point; in the file's decimals it is
    request = hey.Request(Decimal("0.2000"), 200, Decimal("0.1000"))
    inside = hey.summarize([request], connections=1, warmup_s=0, duration_s=0.3)
    assert inside.requests == 1
    assert inside.p50_ms == 200.0


def test_a_cell_without_hey_has_none(tmp_path):
    assert hey.read_hey(tmp_path) is None


@pytest.fixture
def cell(tmp_path):
    shutil.copy(WINDOW / hey.CSV, tmp_path / hey.CSV)
    shutil.copy(WINDOW / hey.META, tmp_path / hey.META)
    return tmp_path


def _lines(path):
    return path.read_text().splitlines()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / hey.CSV).write_text(""), "expected hey's CSV header"),
        (
            lambda d: (d / hey.CSV).write_text("latency,status\n0.5,200\n"),
            "expected hey's CSV header response-time,DNS+dialup,",
        ),
        (
            lambda d: (d / hey.CSV).write_text(
                "\n".join([*_lines(d / hey.CSV)[:3], "0.5000,0,0,0,0.5000,0,200"]) + "\n"
            ),
            "line 4: expected 8 fields, got 7",
        ),
        (
            lambda d: (d / hey.CSV).write_text(
                "\n".join([*_lines(d / hey.CSV)[:2], "0.5000,0,0,0,0.5000,0,OK,1.0"]) + "\n"
            ),
            "line 3: status-code 'OK' is not an integer",
        ),
        (
            lambda d: (d / hey.CSV).write_text(
                "\n".join([*_lines(d / hey.CSV)[:2], "fast,0,0,0,0.5000,0,200,1.0"]) + "\n"
            ),
            "line 3: response-time 'fast' is not a number of seconds",
        ),
        (
            lambda d: (d / hey.CSV).write_text(
                "\n".join([*_lines(d / hey.CSV)[:2], "0.5,0,0,0,0.5,0,200,-1.0"]) + "\n"
            ),
            "line 3: offset '-1.0' is not a number of seconds",
        ),
        (
            lambda d: (d / hey.CSV).write_text(
                "\n".join([*_lines(d / hey.CSV)[:2], "NaN,0,0,0,0.5,0,200,1.0"]) + "\n"
            ),
            "response-time 'NaN' is not a number of seconds",
        ),
    ],
)
def test_a_malformed_csv_is_an_error_naming_the_file(cell, change, message):
    change(cell)
    with pytest.raises(ReportError, match=f"^{re.escape(str(cell / hey.CSV))}: ") as raised:
        hey.read_hey(cell)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ({"client": "wrk", "connections": 2, "warmup_s": 1, "duration_s": 4}, "client is 'wrk'"),
        ({"warmup_s": 1, "duration_s": 4}, "connections must be a positive integer"),
        ({"connections": 0, "warmup_s": 1, "duration_s": 4}, "connections must be"),
        ({"connections": True, "warmup_s": 1, "duration_s": 4}, "connections must be"),
        ({"connections": 2, "duration_s": 4}, "warmup_s must be a number >= 0, got None"),
        ({"connections": 2, "warmup_s": 1, "duration_s": 0}, "duration_s must be a number > 0"),
        ({"connections": 2, "warmup_s": 1, "duration_s": "20"}, "duration_s must be a number"),
    ],
)
def test_a_malformed_json_is_an_error_naming_the_file(cell, meta, message):
    text = meta if isinstance(meta, str) else json.dumps(meta)
    (cell / hey.META).write_text(text)
    with pytest.raises(ReportError, match=f"^{re.escape(str(cell / hey.META))}: ") as raised:
        hey.read_hey(cell)
    assert message in str(raised.value)


def test_one_file_without_the_other_is_an_error(cell):
    (cell / hey.META).unlink()
    with pytest.raises(ReportError, match=r"hey\.csv: no hey\.json beside it"):
        hey.read_hey(cell)
    (cell / hey.CSV).unlink()
    (cell / hey.META).write_text((WINDOW / hey.META).read_text())
    with pytest.raises(ReportError, match=r"hey\.json: no hey\.csv beside it"):
        hey.read_hey(cell)


def test_a_file_of_only_the_header_is_a_run_where_nothing_got_through(cell):
    (cell / hey.CSV).write_text(",".join(hey.HEADER) + "\n")
    result = hey.read_hey(cell)
    assert result.requests == 0
    assert result.rps == 0.0


def test_the_rate_does_not_depend_on_where_the_window_cuts_a_burst():
    # 100 connections started at once, every request 1.02 s: completions come in
    # bursts of 100; a 12 s window holds 11 or 12 bursts depending on its phase
    latency = Decimal("1.02")
    requests = [
        hey.Request(response_time=latency, status=200, offset=latency * k)
        for k in range(20)
        for _ in range(100)
    ]
    for warmup in (5.0, 5.5):
        result = hey.summarize(requests, connections=100, warmup_s=warmup, duration_s=12.0)
        assert result.rps == pytest.approx(100 / 1.02, rel=1e-6)
        assert result.identity_ratio == pytest.approx(1.0, rel=1e-6)
