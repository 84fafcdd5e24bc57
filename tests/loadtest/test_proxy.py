"""report.proxy: each app host's share of a cell, from the proxy's access log."""

import gzip
from datetime import UTC, datetime

import pytest

from flask_deploy_lab.report import cli, proxy

T0 = 1_800_000_000  # a whole Unix second


def line(second, upstream, path="/slow?delay=1", status=200):
    stamp = datetime.fromtimestamp(T0 + second, UTC).strftime(proxy.TIME_FORMAT)
    return (
        f'10.89.0.9 [{stamp}] "GET {path} HTTP/1.1" {status} 42 rt=1.001 urt=1.000 '
        f'ua="{upstream}" us="200"'
    )


LINES = [
    line(0, "10.0.0.1:8000"),  # before the window's first whole second
    line(1, "10.0.0.1:8000"),
    line(1, "10.0.0.2:8000"),
    line(2, "10.0.0.1:8000"),
    line(2, "10.0.0.2:8000, 10.0.0.1:8000"),  # retried: the last one answered
    line(2, "10.0.0.1:8000", path="/healthz"),  # the playbook's drain check
    line(3, "-", status=504),  # nginx answered itself
    line(3, "10.0.0.2:8000"),  # the window's last second is not whole
    "a line of another format",
]


def test_the_tally_counts_the_whole_seconds_inside_the_window_by_the_last_upstream():
    counted = proxy.tally(LINES, T0 + 0.5, T0 + 3.5)
    counts, seconds = counted.counts, counted.seconds
    # seconds 1 and 2 are whole inside [0.5, 3.5]; 3 is not (it ends at 4)
    assert seconds == 2
    assert counts == {"10.0.0.1:8000": 3, "10.0.0.2:8000": 1}


def test_a_window_of_whole_seconds_keeps_both_edges_right():
    counted = proxy.tally(LINES, T0, T0 + 4)
    counts, seconds = counted.counts, counted.seconds
    assert seconds == 4
    assert counts == {"10.0.0.1:8000": 4, "10.0.0.2:8000": 2}


def app_host_rps(cell_dir, window, addresses):
    """(each app host's req/s, why not) of a cell's proxy log."""
    figures = proxy.proxy_figures(cell_dir, window, addresses)
    return figures.app_hosts_rps, figures.app_hosts_why_not


def write_cell(tmp_path, lines):
    (tmp_path / "proxy").mkdir(parents=True)
    with gzip.open(tmp_path / "proxy" / "proxy1.log.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return tmp_path


def test_app_host_rps_names_each_host_by_its_address(tmp_path):
    cell = write_cell(tmp_path, LINES)
    shares, why_not = app_host_rps(
        cell, (T0 + 0.5, T0 + 3.5), {"app2": "10.0.0.2", "app1": "10.0.0.1"}
    )
    assert shares == ("app1=1.5", "app2=0.5")
    assert why_not is None


def test_a_host_that_served_nothing_shows_zero_and_a_stranger_is_noted(tmp_path):
    cell = write_cell(tmp_path, LINES)
    shares, why_not = app_host_rps(
        cell, (T0 + 0.5, T0 + 3.5), {"app1": "10.0.0.1", "app3": "10.0.0.3"}
    )
    assert shares == ("app1=1.5", "app3=0.0")
    assert why_not == "requests answered by upstreams no app host has: ['10.0.0.2']"


def test_without_the_log_or_a_window_there_is_no_figure(tmp_path):
    assert app_host_rps(tmp_path, (T0, T0 + 4), {"app1": "10.0.0.1"}) == (None, None)
    cell = write_cell(tmp_path, LINES)
    assert app_host_rps(cell, None, {"app1": "10.0.0.1"}) == (None, "no measured window")
    assert app_host_rps(cell, (T0 + 0.2, T0 + 0.9), {"app1": "10.0.0.1"}) == (
        None,
        "the measured window holds no whole second",
    )


def timed(second, path, rt, urt, st, method="GET", status=200):
    """A line of the role's format with the app's Server-Timing (st=)."""
    stamp = datetime.fromtimestamp(T0 + second, UTC).strftime(proxy.TIME_FORMAT)
    return (
        f'10.89.0.9 [{stamp}] "{method} {path} HTTP/1.1" {status} 42 rt={rt} urt={urt} '
        f'ua="10.0.0.1:8000" us="200" st="{st}"'
    )


SLOW = "queue;dur={q}, app;dur={a}, api;dur={api}, api-sleep;dur={s}"
TIMED = [
    timed(1, "/slow?delay=0.5", "0.503", "0.502", SLOW.format(q=1.0, a=500.5, api=499.0, s=495.0)),
    timed(1, "/slow?delay=0.5", "0.601", "0.600", SLOW.format(q=90.0, a=510.0, api=508.0, s=500.0)),
    timed(1, "/healthz", "0.001", "0.001", "queue;dur=0.1, app;dur=0.2"),
    timed(3, "/tasks", "0.004", "0.003", "queue;dur=2.0, app;dur=1.5", method="POST", status=202),
    timed(3, "/slow?delay=0.5", "0.050", "-", "", status=504),
    "a line of another format",
]


def test_by_second_splits_each_second_and_every_part_of_the_apps_answer():
    rows = proxy.by_second(TIMED)
    # the seconds that ended a request, in order; the second between is not invented
    assert [row["second"] for row in rows] == [T0 + 1, T0 + 3]
    first, third = rows
    assert list(first) == [
        "second", "requests", "nginx_p50_ms", "nginx_p99_ms", "upstream_p50_ms",
        "upstream_p99_ms", "queue_p50_ms", "queue_p99_ms", "app_p50_ms", "app_p99_ms",
        "api_p50_ms", "api_p99_ms", "api-sleep_p50_ms", "api-sleep_p99_ms",
    ]  # fmt: skip
    # /healthz left out; nearest rank over two: the p50 is the smaller, the p99 the larger
    assert first["requests"] == 2
    assert (first["nginx_p50_ms"], first["nginx_p99_ms"]) == (503.0, 601.0)
    assert (first["queue_p50_ms"], first["queue_p99_ms"]) == (1.0, 90.0)
    assert (first["api-sleep_p50_ms"], first["api-sleep_p99_ms"]) == (495.0, 500.0)
    # nginx's own 504: its time, no upstream's and no app's; the POST's parts alone
    assert third["requests"] == 2
    assert (third["nginx_p50_ms"], third["nginx_p99_ms"]) == (4.0, 50.0)
    assert third["upstream_p99_ms"] == 3.0
    assert (third["queue_p99_ms"], third["app_p99_ms"]) == (2.0, 1.5)
    assert third["api_p50_ms"] is None and third["api_p99_ms"] is None


def test_by_second_keeps_only_the_paths_asked_for():
    rows = proxy.by_second(TIMED, path_prefix="/tasks")
    assert [(row["second"], row["requests"]) for row in rows] == [(T0 + 3, 1)]
    assert "api_p99_ms" not in rows[0]
    assert proxy.by_second(TIMED, path_prefix="/nowhere") == []


def test_fdl_report_by_second_prints_the_cells_split_as_csv(tmp_path, capsys):
    cell = write_cell(tmp_path / "cell", TIMED)
    assert cli.main(["--by-second", str(cell), "--path", "/slow"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("second,requests,nginx_p50_ms,nginx_p99_ms,")
    # second 1's two /slow and second 3's 504, empty where it has no figure
    assert printed[1].startswith(f"{T0 + 1},2,503.0,601.0,502.0,600.0,1.0,90.0,")
    assert printed[2] == f"{T0 + 3},1,50.0,50.0" + ",," * 5
    assert len(printed) == 3
    # a cell without the log: said, no CSV
    (tmp_path / "empty").mkdir()
    assert cli.main(["--by-second", str(tmp_path / "empty")]) == 2
    assert "no proxy log in the cell" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["reports/run", "--by-second", "reports/run/cell"], [], ["reports/run", "--path", "/slow"]],
)
def test_fdl_report_refuses_a_run_and_a_cell_together_or_neither(argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
