"""The latency histograms: the locustfile's per-second HdrHistograms, merged over
workers into locust_latency.hlog, and the report's figures from that file
(flask_deploy_lab.report.hdr), against hand-computed values.

What the hand computations use: the histograms hold microseconds at 3
significant digits, 2048 sub-buckets, so a value below 2048 us reads back as
itself and one in [2^k, 2^(k+1)) above it as the highest value of its bucket
of 2^(k-10) us: 10,000 us -> 10,007; 1,000,000 -> 1,000,447 (buckets of 512);
1,020,000 -> 1,020,415 (512); 2,000,000 -> 2,000,895 (1024). A percentile p
of n values is the value at rank p / 100 x n rounded half up (at least 1).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from flask_deploy_lab.report import cli, hdr, locust, model
from flask_deploy_lab.report.errors import ReportError

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE.parents[1] / "loadtest" / "locustfile.py"
FIXTURES = HERE / "fixtures"
TIMEOUT = 60
T = 1795290000
US = 1_000_000

# --------------------------------------------------------------------------- the locustfile
# LatencyIntervals and LatencyLog in a process of their own (importing Locust
# patches the process). Three workers and one without requests; second T gets
# 100 requests: a's 49 of 1 ms and a 50th whose event came after a had sent
# second T, b's 40 of 2 ms (one failed), c's 9 of 10 ms and one of 1000 ms
# that started in the second before; second T+1 gets b's 10 of 1.5 ms, the
# first completing at T+1 exactly.
LATENCY_SCRIPT = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("locustfile", sys.argv[1])
lf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lf)
out, T = sys.argv[2], int(sys.argv[3])
result = {}

a, b, c, idle = (lf.LatencyIntervals() for _ in range(4))
for k in range(49):
    a.on_request(name="/a", response_time=1.0, start_time=T + 0.1 + k / 100)
for k in range(40):
    failed = ValueError("a failure") if k == 0 else None
    b.on_request(name="/b", response_time=2.0, start_time=T + 0.2 + k / 100, exception=failed)
for k in range(9):
    c.on_request(name="/c", response_time=10.0, start_time=T + 0.3 + k / 100)
c.on_request(name="/c", response_time=1000.0, start_time=T - 0.5)
b.on_request(name="/b", response_time=1.5, start_time=T + 1 - 0.0015)
for k in range(9):
    b.on_request(name="/b", response_time=1.5, start_time=T + 1.5 + k / 100)
# no response time: nothing to record
a.on_request(name="/a", response_time=None, start_time=T + 0.3)

# the periodic reports: a second is sent once it is over, not before
result["early"] = a.take(now=T + 0.999)
reports = [a.take(now=T + 1), b.take(now=T + 1.5), c.take(now=T + 0.9), idle.take(now=T + 5)]
result["periodic"] = [[start for start, _ in report] for report in reports]
# a's 50th request of second T: its event after a sent that second
a.on_request(name="/a", response_time=1.0, start_time=T + 0.95)
result["reopened"] = len(a)
# test_stop closes every second; the final reports carry the rest
for worker in (a, b, c, idle):
    worker.close_all()
finals = [worker.take(now=T + 2) for worker in (a, b, c, idle)]
result["final"] = [[start for start, _ in report] for report in finals]
result["emptied"] = [len(worker) for worker in (a, b, c, idle)]
# what travels is plain data: [int, str] pairs
result["types"] = sorted(
    {f"{type(s).__name__},{type(e).__name__}" for r in reports + finals for s, e in r}
)
json.dumps(reports + finals)

master = lf.LatencyLog()
for report in reports + finals:
    master.merge(report)
master.merge(None)  # a report without the key (an older worker)
master.merge([])
result["seconds"] = {}
for start in (T, T + 1):
    histogram = master.histogram(start)
    result["seconds"][start] = {
        "count": histogram.get_total_count(),
        "percentiles": histogram.get_percentile_to_value_dict([50, 90, 95, 99, 99.9]),
        "max": histogram.get_max_value(),
    }
master.write(os.path.join(out, "merged.hlog"))
empty = lf.LatencyLog()
empty.write(os.path.join(out, "empty.hlog"))

# a response time past the histogram's range is kept, as its highest value
long = lf.LatencyIntervals()
long.on_request(name="/x", response_time=2 * 3600 * 1000.0, start_time=T)
(start, encoded), = long.take(now=float("inf"))
beyond = lf.HdrHistogram.decode(encoded)
result["beyond"] = [start - T, beyond.get_total_count(), beyond.get_max_value()]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def latency_script(tmp_path_factory):
    out = tmp_path_factory.mktemp("hdr")
    done = subprocess.run(
        [sys.executable, "-c", LATENCY_SCRIPT, str(LOCUSTFILE), str(out), str(T)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout.splitlines()[-1])


def test_each_worker_sends_the_seconds_it_closed_and_the_master_merges_them(latency_script):
    _, result = latency_script
    assert result["early"] == []
    # a: second T, over at T+1; b at T+1.5: T, T+1 still open; c at T+0.9 and the idle
    # worker: nothing
    assert result["periodic"] == [[T], [T], [], []]
    # a's late request opened second T again; the final reports: a's late one, b's open
    # second, c's, and nothing from the idle worker
    assert result["reopened"] == 1
    assert result["final"] == [[T], [T + 1], [T], []]
    assert result["emptied"] == [0, 0, 0, 0]
    assert result["types"] == ["int,str"]


def test_the_merged_seconds_hold_the_hand_computed_percentiles(latency_script):
    _, result = latency_script
    second = result["seconds"][str(T)]
    # 50 x 1000 us (ranks 1-50), 40 x 2000 (51-90), 9 x 10000 -> 10007 (91-99), and
    # 1000000 -> 1000447 (100): the failed request and the late one counted
    assert second["count"] == 100
    assert second["percentiles"] == {
        "50": 1000, "90": 2000, "95": 10007, "99": 10007, "99.9": 1000447,
    }  # fmt: skip
    assert second["max"] == 1000447
    # the request completing at T+1 exactly is in [T+1, T+2)
    after = result["seconds"][str(T + 1)]
    assert after["count"] == 10
    assert set(after["percentiles"].values()) == {1500}


def test_a_response_time_past_the_range_is_kept_as_its_highest_value(latency_script):
    _, result = latency_script
    # 2 h, completing at T + 7200; 3.6e9 us is in [2^31, 2^32): buckets of 2^21
    # us, its highest 1716 x 2^21 + 2^21 - 1
    assert result["beyond"] == [7200, 1, 1716 * 2**21 + 2**21 - 1]


def test_the_interval_log_is_hdrhistograms_standard_text(latency_script):
    out, _ = latency_script
    lines = (out / "merged.hlog").read_text().splitlines()
    assert lines[0] == "#[Histogram log format version 1.2]"
    assert lines[2] == f"#[StartTime: {T}.000 (seconds since epoch), 2026-11-21T19:40:00+00:00]"
    assert (
        lines[3]
        == '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    )
    # start (absolute Unix seconds), length, max in whole milliseconds, the histogram
    assert [line.split(",")[:3] for line in lines[4:]] == [
        [f"{T}.000000", "1.000000", "1000.000000"],
        [f"{T + 1}.000000", "1.000000", "1.000000"],
    ]
    assert all(line.split(",")[3].startswith("HISTF") for line in lines[4:])
    assert not (out / "merged.hlog.partial").exists()
    # hdrh's own reader finds the intervals at their absolute times
    reader = HistogramLogReader(str(out / "merged.hlog"), HdrHistogram(1, 3_600_000_000, 3))
    read = []
    while (histogram := reader.get_next_interval_histogram(absolute=True)) is not None:
        read.append(
            (
                histogram.get_start_time_stamp() / 1000,
                histogram.get_end_time_stamp() / 1000,
                histogram.get_total_count(),
            )
        )
    reader.close()
    assert read == [(T, T + 1, 100), (T + 1, T + 2, 10)]
    # a run without a completed request: the header alone
    assert (out / "empty.hlog").read_text().splitlines() == [
        "#[Histogram log format version 1.2]",
        lines[1],
        lines[3],
    ]


def test_the_report_reads_back_what_the_locustfile_wrote(latency_script, tmp_path):
    out, _ = latency_script
    shutil.copy(out / "merged.hlog", tmp_path / hdr.LATENCY_LOG)
    log = hdr.read_latency_log(tmp_path)
    assert log.intervals == [hdr.Interval(T, T + 1, 100), hdr.Interval(T + 1, T + 2, 10)]
    # both seconds: 50 x 1000 (1-50), 10 x 1500 (51-60), 40 x 2000 (61-100), 9 x 10007
    # (101-109), 1000447 (110); ranks 55, 99, 105, 109, 110
    figures, why_not = hdr.figures(log, T, T + 2)
    assert why_not is None
    assert figures == hdr.HdrFigures(
        window_start=T, window_end=T + 2, intervals=2, requests=110, p50_ms=1.5,
        p90_ms=2.0, p95_ms=10.007, p99_ms=10.007, p999_ms=1000.447, max_ms=1000.447,
    )  # fmt: skip
    # the mean of every value, each its bucket's middle: 50 x 1000 + 10 x 1500 + 40 x 2000
    # + 9 x 10004 + 1000192 (1,000,000's bucket of 512 from 999,936)
    assert log.mean_ms == pytest.approx((50_000 + 15_000 + 80_000 + 90_036 + 1_000_192) / 110e3)
    shutil.copy(out / "empty.hlog", tmp_path / hdr.LATENCY_LOG)
    assert hdr.read_latency_log(tmp_path) == hdr.LatencyLog(tmp_path / hdr.LATENCY_LOG, [], None)


# --------------------------------------------------------------------------- the report


def _write_hlog(path, seconds):
    """An interval log as the locustfile writes it, with hdrh's writer: one
    interval [start, start + 1) per key of {start: [values in us]}."""
    with path.open("w") as handle:
        writer = HistogramLogWriter(handle)
        writer.output_log_format_version()
        if seconds:
            writer.output_comment(f"[StartTime: {min(seconds):.3f} (seconds since epoch), x]")
        writer.output_legend()
        for start in sorted(seconds):
            histogram = HdrHistogram(1, 3_600_000_000, 3)
            for value in seconds[start]:
                histogram.record_value(value)
            writer.output_interval_histogram(histogram, start, start + 1, 1000.0)


def _seconds(cell_dir):
    """{second of completion: [response times, us]} of the cell's request log."""
    seconds = {}
    for request in locust.read_requests(cell_dir).completed:
        seconds.setdefault(request.completed_us // US, []).append(request.response_time_us)
    return seconds


# uwsgi--slow--d1--u10 (see test_loadtest_report.py): bursts of 10 requests of
# 1020 ms completing at T + 1.02 k, k = 1..15, so second T + k holds burst k.
# 1,020,000 us reads back as 1,020,415 (1020.415 ms), its bucket's middle 1,020,160.
SLOW = "uwsgi--slow--d1--u10"


def _slow_cell(tmp_path, edit=None, request_log=True):
    """The fixture cell with an interval log of its own requests (edited by edit)."""
    cell_dir = tmp_path / SLOW
    shutil.copytree(FIXTURES / "requests" / SLOW, cell_dir)
    seconds = _seconds(cell_dir)
    _write_hlog(cell_dir / hdr.LATENCY_LOG, edit(seconds) if edit else seconds)
    if not request_log:
        (cell_dir / locust.REQUESTS).unlink()
    return cell_dir


def test_the_window_keeps_the_intervals_whole_inside_it():
    intervals = [hdr.Interval(T + k, T + k + 1, 1) for k in range(5)]
    # [T+0.5, T+4]: T+1..T+3 lie inside, [T+3, T+4) ending on the edge; [T, T+1)
    # starts before and [T+4, T+5) ends after
    inside = hdr.window_intervals(intervals, T + 0.5, T + 4)
    assert [i.start for i in inside] == [T + 1, T + 2, T + 3]
    # an edge on an interval's start keeps it
    assert [i.start for i in hdr.window_intervals(intervals, T + 1, T + 3.999)] == [T + 1, T + 2]
    assert hdr.window_intervals(intervals, T + 0.5, T + 1.5) == []


def test_with_the_request_log_the_histograms_cover_its_window(tmp_path):
    _slow_cell(tmp_path)
    (row,) = model.summarize_run(tmp_path)[1]
    # the log's window [T+2.02, T+14.28]: seconds T+3 .. T+13 whole inside (bursts
    # 3..13), T+2 and T+14 cut: 110 of the log's 130
    assert row.hdr_requests == 110
    assert (row.hdr_p50_ms, row.hdr_p90_ms, row.hdr_p95_ms) == (1020.415,) * 3
    assert (row.hdr_p99_ms, row.hdr_p999_ms, row.hdr_max_ms) == (1020.415,) * 3
    # the headline stays the exact figures, Locust's own beside them
    assert (row.p50_ms, row.p99_ms, row.max_ms, row.rps) == (1020.0, 1020.0, 1020.0, 9.8)
    assert (row.locust_p50_ms, row.locust_p99_ms, row.locust_max_ms) == (1000, 1000, 1020.0)
    # 1020.415 is within 0.1 % of 1020: no disagreement
    assert row.note == "no load-generator samples"
    assert row.valid is True


def test_a_histogram_p99_off_the_exact_one_gets_a_note_not_an_invalid_flag(tmp_path):
    # second T+5's requests (burst 5) said to take 2 s
    _slow_cell(tmp_path, lambda seconds: {**seconds, T + 5: [2_000_000] * 10})
    (row,) = model.summarize_run(tmp_path)[1]
    # 100 x 1020415 and 10 x 2000895: the 109th is 2000.895
    assert row.hdr_p99_ms == 2000.895
    assert row.hdr_p50_ms == 1020.415
    assert row.p99_ms == 1020.0
    # ranks 109 .. 109 + 20 of the log's 130, all 1020 ms, +- 0.1 %
    assert row.note == (
        "HDR p99 2000.895 ms disagrees with the exact p99 1020 ms: outside 1018.98..1021.02 ms, "
        "what the request log's window allows for the 20 request(s) the histogram's whole "
        "seconds do not share and its 0.1% precision; no load-generator samples"
    )
    assert row.valid is True


def test_the_agreement_band_allows_for_the_unshared_requests_and_the_precision():
    ordered = [1000 * i for i in range(1, 101)]  # 1 .. 100 ms
    # 90 of the 100 in the histograms: p99 at rank 89 of them, so between the 89th and
    # the 99th of the 100, whichever 10 the edges cut
    assert hdr.agreement_band(ordered, 90, 99) == (89_000, 99_000)
    # the histograms holding 10 more: rank 109 of 110, between the 99th and the 100th
    assert hdr.agreement_band(ordered, 110, 99) == (99_000, 100_000)
    # the same requests: the exact p99 itself
    assert hdr.agreement_band(ordered, 100, 99) == (99_000, 99_000)
    # then 0.1 % either way, the edges inside
    assert hdr.within_precision(88_911, 89_000, 99_000)
    assert hdr.within_precision(99_099, 89_000, 99_000)
    assert not hdr.within_precision(88_910, 89_000, 99_000)
    assert not hdr.within_precision(99_100, 89_000, 99_000)
    assert hdr.agreement_band([], 10, 99) is None
    assert hdr.agreement_band(ordered, 0, 99) is None

    def figures(p99_ms, requests=90):
        return hdr.HdrFigures(T, T + 10, 10, requests, p99_ms=p99_ms)

    # inside, on either edge: no note
    assert hdr.disagreement(ordered, 99.0, figures(88.911)) is None
    assert hdr.disagreement(ordered, 99.0, figures(99.099)) is None
    assert hdr.disagreement(ordered, 99.0, figures(99.1)).startswith(
        "HDR p99 99.1 ms disagrees with the exact p99 99 ms: outside 88.911..99.099 ms"
    )
    assert hdr.disagreement(ordered, 99.0, figures(88.9)) is not None
    assert hdr.disagreement(ordered, None, figures(88.9)) is None
    assert hdr.disagreement(ordered, 99.0, figures(None)) is None


def test_the_rank_is_hdrhistograms():
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for value in range(1, 200):  # 1 .. 199 us, each exact
        histogram.record_value(value)
    # 99 % of 199 = 197.01: half up 197 (nearest rank would say 198)
    assert hdr.hdr_rank(99, 199) == 197 == histogram.get_value_at_percentile(99)
    assert hdr.hdr_rank(50, 199) == 100 == histogram.get_value_at_percentile(50)
    assert hdr.hdr_rank(99.9, 1) == 1


def test_without_the_request_log_the_headline_percentiles_are_the_histograms(tmp_path):
    # as when the log went over its cap (no file) or the run is older than it
    _slow_cell(tmp_path, request_log=False)
    (row,) = model.summarize_run(tmp_path)[1]
    # their own window: A = max(1 s, mean 1020.16 ms); from users running (T+1, the
    # history's first second at full strength ends) + A to the last second's start
    # (T+15) - A: [T+2.02016, T+13.97984], seconds T+3 .. T+12 whole inside
    assert row.hdr_requests == 100
    assert (row.p50_ms, row.p90_ms, row.p95_ms, row.p99_ms, row.p999_ms) == (1020.415,) * 5
    assert row.max_ms == 1020.4  # the column's one decimal
    assert row.hdr_max_ms == 1020.415
    # the rate from the stats history and the mean Locust's, as without the histograms
    assert (row.rps, row.mean_ms) == (9.23, 1020.0)
    assert (row.locust_p99_ms, row.locust_max_ms) == (1000, 1020.0)
    assert row.note.startswith(
        f"no {locust.REQUESTS}: req/s from {locust.HISTORY}, percentiles and max from the HDR "
        f"histograms ({hdr.LATENCY_LOG}) over their own window, mean Locust's"
    )
    # nothing to say what was in flight at the stop
    assert row.unfinished_requests is None


def test_a_short_interval_log_leaves_the_percentiles_to_locust(tmp_path):
    # only bursts 1..6: A = 1.02016 s, [T+2.02016, T+6 - 1.02016]: 2.96 s
    _slow_cell(tmp_path, lambda seconds: {s: v for s, v in seconds.items() if s <= T + 6}, False)
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.hdr_requests is None
    assert row.p50_ms == 1000  # Locust's
    assert row.note.startswith(
        f"no HDR figures: {hdr.LATENCY_LOG} spans 2.96 s once the ramp-up and the end are left "
        f"out, fewer than 5; no {locust.REQUESTS}: req/s from {locust.HISTORY}, latencies "
        "Locust's own"
    )


def test_histograms_outside_the_window_give_no_figures_and_say_so(tmp_path):
    # only the first and the last burst's seconds, both outside [T+2.02, T+14.28]
    _slow_cell(tmp_path, lambda seconds: {s: v for s, v in seconds.items() if s in (T + 1, T + 15)})
    (row,) = model.summarize_run(tmp_path)[1]
    assert row.hdr_requests is None
    assert row.p99_ms == 1020.0
    assert row.note == (
        f"no HDR figures: no interval of {hdr.LATENCY_LOG} lies whole inside the window; "
        "no load-generator samples"
    )


def test_an_older_run_without_the_interval_log_reports_nulls():
    _, rows = model.summarize_run(FIXTURES / "run")
    hdr_columns = [f"hdr_{name}" for name in ("requests", *hdr.PERCENTILES, "max_ms")]
    for row in rows:
        assert all(getattr(row, column) is None for column in hdr_columns), row.cell
        assert "HDR" not in (row.note or ""), row.cell
    # Locust's own figures beside the headline, which they are without either file
    gunicorn = next(row for row in rows if row.cell == "gunicorn--json--u20")
    assert (gunicorn.locust_p50_ms, gunicorn.locust_p99_ms) == (gunicorn.p50_ms, gunicorn.p99_ms)
    assert hdr.read_latency_log(FIXTURES / "run" / "gunicorn--json--u20") is None


def test_the_histograms_figures_reach_the_files_and_the_page(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _slow_cell(run_dir)
    assert cli.main([str(run_dir)]) == 0
    (cell,) = json.loads((run_dir / "summary.json").read_text())["cells"]
    assert (cell["hdr_requests"], cell["hdr_p99_ms"], cell["locust_p99_ms"]) == (
        110,
        1020.415,
        1000,
    )
    summary_csv = (run_dir / "summary.csv").read_text().splitlines()
    header, values = summary_csv[0].split(","), summary_csv[1].split(",")
    assert dict(zip(header, values, strict=True))["hdr_p999_ms"] == "1020.415"
    page = (run_dir / "index.html").read_text()
    assert '<th title="99th percentile latency from the HDR histograms' in page
    assert page.count('<td class="num fig">1020.415</td>') == 3  # HDR p50, p99, max


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"{T}.000000,1.000000,1.0,HISTFAAAAnotahistogram\n",
            "interval 1: not an HdrHistogram interval",
        ),
        (",1.000000,1.0,HISTF\n", "interval 1: not an HdrHistogram interval"),
    ],
)
def test_a_malformed_interval_log_is_an_error_naming_file_and_interval(tmp_path, text, message):
    path = tmp_path / hdr.LATENCY_LOG
    path.write_text(
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n' + text
    )
    with pytest.raises(ReportError) as raised:
        hdr.read_latency_log(tmp_path)
    assert str(raised.value).startswith(f"{path}: {message}")


def test_values_past_an_hour_are_an_error_naming_the_file(tmp_path):
    # another writer's histogram, with a range to 10^12 us and a value of 10^11 in it
    path = tmp_path / hdr.LATENCY_LOG
    with path.open("w") as handle:
        histogram = HdrHistogram(1, 10**12, 3)
        histogram.record_value(10**11)
        HistogramLogWriter(handle).output_interval_histogram(histogram, T, T + 1, 1000.0)
    with pytest.raises(ReportError) as raised:
        hdr.read_latency_log(tmp_path)
    assert str(raised.value).startswith(f"{path}: values past the histograms' range of an hour")


def test_a_malformed_interval_log_fails_the_report(tmp_path, capsys):
    cell_dir = _slow_cell(tmp_path)
    path = cell_dir / hdr.LATENCY_LOG
    path.write_text(path.read_text() + f"{T + 16}.000000,1.000000,1.0,HISTFnot\n")
    assert cli.main([str(tmp_path)]) == 2
    # the 15 seconds of the fixture, then the broken one
    assert capsys.readouterr().err.startswith(
        f"report: {path}: interval 16: not an HdrHistogram interval"
    )
