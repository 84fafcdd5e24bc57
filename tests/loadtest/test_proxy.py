"""report.proxy: each app host's share of a cell, from the proxy's access log."""

import gzip
from datetime import UTC, datetime

from flask_deploy_lab.report import proxy

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
    (tmp_path / "proxy").mkdir()
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
