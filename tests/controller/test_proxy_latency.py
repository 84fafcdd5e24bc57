"""report.proxy's split of a request's time: nginx's and the upstream's latencies
from the proxy's access log, beside the req/s per app host of the same pass,
and how the row, summary.csv / summary.json and the page carry them.

The log lines are written here in the nginx role's ``timed`` format. The
window is whole seconds 1 and 2 after T0 unless a test says otherwise; the
percentiles are nearest rank (report.exact.percentile): of n sorted values the
ceil(p / 100 * n)-th.
"""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime

import pytest

from flask_deploy_lab.report import html, locust, model, proxy, summary

T0 = 1_800_000_000  # a whole Unix second
APP1, APP2 = "10.0.0.1:8000", "10.0.0.2:8000"


def line(second, rt, urt, ua=APP1, path="/slow?delay=0.5", status=200, st=None):
    """A line of the role's format; `st` (the app's Server-Timing) appended when given,
    as nginx writes it now (a line without it is one of an older log)."""
    stamp = datetime.fromtimestamp(T0 + second, UTC).strftime(proxy.TIME_FORMAT)
    return (
        f'10.89.0.9 [{stamp}] "GET {path} HTTP/1.1" {status} 42 rt={rt} urt={urt} '
        f'ua="{ua}" us="{status}"' + ("" if st is None else f' st="{st}"')
    )


LINES = [
    line(0, "9.000", "9.000"),  # before the window's first whole second
    line(1, "0.010", "0.008"),
    line(1, "0.020", "0.017", ua=APP2),
    # retried: the first try (2 ms, APP2) failed, the last (501 ms, APP1) answered
    line(2, "0.503", "0.002, 0.501", ua=f"{APP2}, {APP1}"),
    line(2, "0.000", "-", ua="-", status=502),  # no upstream answered: nginx's time only
    # an internal redirect: the groups' times are " : "-separated, the last answered
    line(2, "0.040", "0.001 : 0.040"),
    line(2, "5.000", "5.000", path="/healthz"),  # the playbook's drain check
    line(3, "7.000", "7.000", ua=APP2),  # the window's last second is not whole
    "a line of another format",
]
WINDOW = (T0 + 0.5, T0 + 3.5)


def test_one_pass_counts_the_hosts_and_keeps_the_times_of_the_windows_lines():
    counted = proxy.tally(LINES, *WINDOW)
    assert counted.seconds == 2
    # the retried request counts for the host that answered it, the 502 for none
    assert counted.counts == {APP1: 3, APP2: 1}
    # every request in the window, the 502 too; /healthz and the edges left out
    assert counted.proxy_ms == [10.0, 20.0, 503.0, 0.0, 40.0]
    # the last try's time, "-" left out
    assert counted.upstream_ms == [8.0, 17.0, 501.0, 40.0]


def test_the_percentiles_are_nearest_rank_over_the_lines_used():
    latency, why_not = proxy.proxy_latency(proxy.tally(LINES, *WINDOW))
    assert why_not is None
    # proxy: 0, 10, 20, 40, 503 -> p50 the 3rd, p99 the 5th
    # upstream: 8, 17, 40, 501 -> p50 the 2nd, p99 the 4th (the first try's 2 ms is
    # not a figure of the app: taking it would give 8 and 40)
    assert latency == proxy.ProxyLatency(
        requests=5,
        proxy_p50_ms=20.0,
        proxy_p99_ms=503.0,
        upstream_p50_ms=17.0,
        upstream_p99_ms=501.0,
    )


def test_a_hundred_requests_give_a_value_of_the_log_never_an_interpolation():
    lines = [line(1, f"{ms / 1000:.3f}", f"{(ms - 1) / 1000:.3f}") for ms in range(1, 101)]
    latency, _ = proxy.proxy_latency(proxy.tally(lines, *WINDOW))
    # interpolated they would be 50.5 and 99.01 (and 49.5, 98.01)
    assert (latency.proxy_p50_ms, latency.proxy_p99_ms) == (50.0, 99.0)
    assert (latency.upstream_p50_ms, latency.upstream_p99_ms) == (49.0, 98.0)
    assert latency.requests == 100


def test_the_apps_own_split_is_read_from_its_server_timing_answer():
    lines = [
        line(1, "0.520", "0.518", st="queue;dur=12.5, app;dur=505.0"),
        line(1, "0.900", "0.898", st="queue;dur=390.0, app;dur=507.5"),
        line(2, "0.510", "0.509", st="queue;dur=-0.4, app;dur=508.1"),
        # a stamp the app could not read: its own time alone
        line(2, "0.505", "0.504", st="app;dur=503.9"),
        # no answer's header ("-"), and a line of an older log without st=
        line(2, "0.004", "-", ua="-", status=502, st="-"),
        line(2, "0.506", "0.505"),
        line(2, "0.001", "0.001", path="/healthz", st="queue;dur=900.0, app;dur=900.0"),
    ]
    counted = proxy.tally(lines, *WINDOW)
    assert counted.queue_ms == [12.5, 390.0, -0.4]
    assert counted.app_ms == [505.0, 507.5, 508.1, 503.9]
    # every line in the window counted by nginx, the app's split where it has one
    assert len(counted.proxy_ms) == 6
    latency, why_not = proxy.proxy_latency(counted)
    assert why_not is None
    assert (latency.app_queue_p50_ms, latency.app_queue_p99_ms) == (12.5, 390.0)
    assert (latency.app_p50_ms, latency.app_p99_ms) == (505.0, 508.1)


def test_a_log_without_the_apps_split_has_none_of_it():
    latency, _ = proxy.proxy_latency(proxy.tally(LINES, *WINDOW))
    assert (latency.app_queue_p50_ms, latency.app_queue_p99_ms) == (None, None)
    assert (latency.app_p50_ms, latency.app_p99_ms) == (None, None)


def test_a_window_of_healthz_and_upstreamless_requests_says_why():
    only_health = [line(1, "0.001", "0.001", path="/healthz")]
    latency, why_not = proxy.proxy_latency(proxy.tally(only_health, *WINDOW))
    assert latency == proxy.ProxyLatency(0, None, None, None, None)
    assert why_not == "the proxy log holds no request in the measured window"
    unanswered = [line(1, "0.004", "-", ua="-", status=502), line(2, "0.003", "-", ua="-")]
    latency, why_not = proxy.proxy_latency(proxy.tally(unanswered, *WINDOW))
    assert latency == proxy.ProxyLatency(2, 3.0, 4.0, None, None)
    assert why_not == "no upstream answered a request of the measured window"


def write_log(cell_dir, lines, host="proxy1"):
    (cell_dir / proxy.DIRECTORY).mkdir(parents=True, exist_ok=True)
    with gzip.open(cell_dir / proxy.DIRECTORY / f"{host}.log.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def test_proxy_figures_reads_every_proxy_hosts_log_once_for_both_figures(tmp_path):
    write_log(tmp_path, LINES[:4])
    write_log(tmp_path, LINES[4:], host="proxy2")
    figures = proxy.proxy_figures(tmp_path, WINDOW, {"app1": "10.0.0.1", "app2": "10.0.0.2"})
    assert figures.app_hosts_rps == ("app1=1.5", "app2=0.5")
    assert figures.app_hosts_why_not is None
    assert figures.latency == proxy.ProxyLatency(5, 20.0, 503.0, 17.0, 501.0)
    assert figures.latency_why_not is None


def test_without_the_log_or_a_window_there_is_no_latency(tmp_path):
    # a cell without a proxy log (an older run): nothing, and nothing to say
    assert proxy.proxy_figures(tmp_path, WINDOW, {}) == proxy.ProxyFigures()
    write_log(tmp_path, LINES)
    assert proxy.proxy_figures(tmp_path, None, {}) == proxy.ProxyFigures(
        app_hosts_why_not="no measured window", latency_why_not="no measured window"
    )
    no_second = proxy.proxy_figures(tmp_path, (T0 + 0.2, T0 + 0.9), {})
    assert no_second.latency is None
    assert no_second.latency_why_not == "the measured window holds no whole second"


# --------------------------------------------------------------------------- the row

STATS = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
    ",Aggregated,8,0,24,24.8,1.1,600,16.0,2.0,0.0,24,26,28,29,33,40,48,510,600,600,600\n"
)
FACTS = {
    "hosts": {
        "app1": {"groups": ["app"], "address": "10.0.0.1"},
        "app2": {"groups": ["app"], "address": "10.0.0.2"},
        "proxy1": {"groups": ["proxy"], "address": "10.0.0.9"},
    }
}


def cell(run_dir, name, lines=None, history=True):
    """A cell of 2 users on /json; a stats history from T0 to T0+3 (the window
    [T0, T0+3]: seconds 0, 1 and 2 whole) when `history`, its proxy log when
    `lines`."""
    cell_dir = run_dir / name
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(
        json.dumps({"server": "gevent", "endpoint": "json", "users": 2})
    )
    (cell_dir / locust.STATS).write_text(STATS)
    (cell_dir / "facts.json").write_text(json.dumps(FACTS))
    if history:
        rows = ["Timestamp,User Count,Type,Name,Total Request Count"]
        rows += [f"{T0 + t},2,,Aggregated,{2 * t}" for t in range(4)]
        (cell_dir / locust.HISTORY).write_text("\n".join(rows) + "\n")
    if lines is not None:
        write_log(cell_dir, lines)
    return cell_dir


PROXY_COLUMNS = ("proxy_requests", "proxy_p50_ms", "proxy_p99_ms", "upstream_p50_ms",
                 "upstream_p99_ms")  # fmt: skip
APP_COLUMNS = ("app_queue_p50_ms", "app_queue_p99_ms", "app_p50_ms", "app_p99_ms")


def figures(row):
    return tuple(getattr(row, name) for name in PROXY_COLUMNS)


@pytest.fixture
def run(tmp_path):
    """A run of four cells: timed by the proxy, without a proxy log, without a
    window, and one whose window holds only requests no upstream answered."""
    # seconds 0..2 are the window's: LINES' second 3 (7 s) and T0-1 fall outside
    cell(tmp_path, "a--timed", [line(-1, "9.000", "9.000"), *LINES])
    cell(tmp_path, "b--unlogged")
    cell(tmp_path, "c--no-window", LINES, history=False)
    cell(tmp_path, "d--unanswered", [line(1, "0.004", "-", ua="-", status=502)])
    cell(
        tmp_path,
        "e--split",
        [line(1, "0.520", "0.518", st="queue;dur=12.5, app;dur=505.0"),
         line(2, "0.900", "0.898", st="queue;dur=390.0, app;dur=507.5")],
    )  # fmt: skip
    environment, rows = model.summarize_run(tmp_path)
    return tmp_path, environment, {row.cell: row for row in rows}


def test_the_row_holds_nginxs_and_the_upstreams_figures(run):
    _, _, rows = run
    row = rows["a--timed"]
    # the window's seconds 0, 1, 2: LINES' 9 s at second 0 joins the five of 1 and 2
    assert figures(row) == (6, 20.0, 9000.0, 40.0, 9000.0)
    assert row.app_hosts_rps == ("app1=1.3", "app2=0.3")
    assert "nginx" not in (row.note or "")


def test_the_row_holds_the_apps_own_split_where_the_log_has_it(run):
    _, _, rows = run
    assert tuple(getattr(rows["e--split"], n) for n in APP_COLUMNS) == (
        12.5, 390.0, 505.0, 507.5
    )  # fmt: skip
    # LINES are of an older log: no split
    assert tuple(getattr(rows["a--timed"], n) for n in APP_COLUMNS) == (None,) * 4


def test_a_cell_without_a_proxy_log_has_none_and_no_note(run):
    _, _, rows = run
    row = rows["b--unlogged"]
    assert figures(row) == (None,) * 5
    assert row.app_hosts_rps is None
    assert "nginx" not in (row.note or "")
    assert "app host" not in (row.note or "")


def test_the_note_says_why_once_for_both_proxy_figures(run):
    _, _, rows = run
    row = rows["c--no-window"]
    assert figures(row) == (None,) * 5
    assert "no req/s per app host nor nginx latencies: no measured window" in row.note
    assert "no req/s per app host: " not in row.note
    unanswered = rows["d--unanswered"]
    assert figures(unanswered) == (1, 4.0, 4.0, None, None)
    assert "no nginx latencies: no upstream answered a request of the measured window" in (
        unanswered.note
    )


def test_summary_csv_and_json_carry_the_columns_after_clients_agree(run, tmp_path_factory):
    _, environment, rows = run
    out = tmp_path_factory.mktemp("out")
    ordered = [rows[name] for name in sorted(rows)]
    summary.write_csv(ordered, out / "summary.csv")
    summary.write_json("r", environment, ordered, out / "summary.json")
    with (out / "summary.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        by_cell = {r["cell"]: r for r in reader}
    start = header.index("clients_agree") + 1
    assert tuple(header[start : start + 5]) == PROXY_COLUMNS
    assert [by_cell["a--timed"][name] for name in PROXY_COLUMNS] == [
        "6", "20.0", "9000.0", "40.0", "9000.0"
    ]  # fmt: skip
    assert [by_cell["b--unlogged"][name] for name in PROXY_COLUMNS] == [""] * 5
    cells = {c["cell"]: c for c in json.loads((out / "summary.json").read_text())["cells"]}
    assert [cells["a--timed"][name] for name in PROXY_COLUMNS] == [6, 20.0, 9000.0, 40.0, 9000.0]
    assert [cells["b--unlogged"][name] for name in PROXY_COLUMNS] == [None] * 5
    # an older summary.json, without them, reads as not measured
    older = {k: v for k, v in cells["a--timed"].items() if k not in PROXY_COLUMNS}
    assert figures(summary.Row.from_dict(older)) == (None,) * 5


def test_the_page_shows_them_beside_the_clients_latencies_and_says_what_they_split(run):
    run_dir, environment, rows = run
    page = html.render_html(run_dir, environment, list(rows.values()))
    headers = [c.header for c in summary.TABLE_COLUMNS]
    at = headers.index("hey identity")
    assert headers[at + 1 : at + 5] == [
        "nginx p50 ms", "nginx p99 ms", "upstream p50 ms", "upstream p99 ms"
    ]  # fmt: skip
    assert headers[at + 5 : at + 7] == ["app queue p99 ms", "app p99 ms"]
    assert "nginx requests" in headers
    assert "a wait for a slot, one in the app's own is the work" in page
    assert "Where a request's time goes" in page
    assert "time spent in the client or the network" in page
    # without a timed cell the page has no such paragraph
    untimed = html.render_html(run_dir, environment, [rows["b--unlogged"]])
    assert "Where a request's time goes" not in untimed
