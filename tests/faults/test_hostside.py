"""The programs the faults run on a host, here: each does its part, starts when
asked, and stops by itself (its waits, counts and times are capped)."""

from __future__ import annotations

import ast
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flask_deploy_lab.faults import hostside
from flask_deploy_lab.faults.hostside import http_probe, nginx_log, outage, wait_run, workers
from flask_deploy_lab.faults.stack import parse_answers

HOSTSIDE = Path(hostside.__file__).parent
PROGRAMS = sorted(p for p in HOSTSIDE.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_each_program_stands_alone_with_the_standard_library(program):
    """A host has its own python3 and none of this package."""
    for node in ast.walk(ast.parse(program.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not node.module.startswith("flask_deploy_lab"), node.module
        elif isinstance(node, ast.Import):
            assert all(not a.name.startswith("flask_deploy_lab") for a in node.names)
    # isolated mode: no site-packages, no current directory, no PYTHON* variables
    out = subprocess.run(
        ["/usr/bin/python3", "-I", str(program), "--help"], capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:")


# ---------------------------------------------------------------- http_probe


def probe(argv):
    out = io.StringIO()
    http_probe.run(http_probe.parse_args(argv), out=out)
    return parse_answers(out.getvalue())


def test_the_probe_prints_each_answer_with_its_time_status_and_retry_after(http_server):
    answers = probe([f"{http_server}/busy", "3", "0"])
    assert [(a.status, a.retry_after) for a in answers] == [(503, "1")] * 3
    # to the millisecond
    assert answers[0].time <= answers[-1].time <= time.time() + 0.001
    assert [a.status for a in probe([f"{http_server}/ok", "1", "0"])] == [200]
    assert [(a.status, a.retry_after) for a in probe([f"{http_server}/bare", "1", "0"])] == [
        (503, "-")
    ]


def test_the_probe_says_0_and_why_without_an_answer():
    answers = probe(["http://127.0.0.1:9/", "2", "0"])
    assert [(a.status, a.retry_after) for a in answers] == [(0, "URLError")] * 2


def test_the_probe_starts_at_the_time_asked_and_stops_in_time(http_server):
    at = time.time() + 0.5
    answers = probe([f"{http_server}/ok", "100", "0.1", "--at", f"{at}", "--max-seconds", "0.55"])
    assert answers[0].time >= at - 0.001
    assert 4 <= len(answers) <= 7
    # by default: count x gap and 30 s
    assert http_probe.parse_args(["http://x/", "250", "0.1"]).max_seconds == pytest.approx(55)


@pytest.mark.parametrize(
    "argv",
    [
        ["https://x/", "1", "0"],
        ["http://x/", "0", "0"],
        ["http://x/", "2001", "0"],
        ["http://x/", "1", "-1"],
        ["http://x/", "1", "0", f"--at={time.time() + 3600}"],
        ["http://x/", "1", "0", "--max-seconds=601"],
    ],
)
def test_the_probe_refuses_unbounded_or_bad_settings(argv, capsys):
    with pytest.raises(SystemExit):
        http_probe.parse_args(argv)
    assert "must be" in capsys.readouterr().err


# ---------------------------------------------------------------- wait_run

HISTORY_HEADER = "Timestamp,User Count,Type,Name,Requests/s"


@pytest.fixture
def master(tmp_path):
    """A load generator's locustctl.json and its run directory."""
    run_dir = tmp_path / "last-run"
    run_dir.mkdir()
    config = tmp_path / "locustctl.json"
    config.write_text(json.dumps({"run_dir": str(run_dir)}))
    return config, run_dir / "locust_stats_history.csv"


def test_the_measured_run_starts_at_its_first_row_with_every_user(master):
    config, history = master
    history.write_text(
        HISTORY_HEADER + "\n"
        "90,20,,Aggregated,5\n"  # an earlier run
        "100,10,,Aggregated,5\n"  # ramping up
        "101,20,GET,/db,5\n"
        "101,20,,Aggregated,5\n"
        "102,20,,Aggregated,5\n"
    )
    args = wait_run.parse_args(
        ["--users", "20", "--since", "95", "--timeout", "1", "--config", str(config)]
    )
    assert wait_run.run(args) == {"started": 101.0}


def test_a_wait_that_begins_late_still_finds_the_first_row(master):
    config, history = master
    rows = [f"{t},20,GET,/db,5\n{t},20,,Aggregated,5\n" for t in range(101, 160)]
    history.write_text(HISTORY_HEADER + "\n100,10,,Aggregated,5\n" + "".join(rows))
    args = wait_run.parse_args(
        ["--users", "20", "--since", "95", "--timeout", "1", "--config", str(config)]
    )
    assert wait_run.run(args) == {"started": 101.0}


def test_the_wait_ends_after_its_timeout_without_a_run(master):
    config, _ = master
    started = time.monotonic()
    args = wait_run.parse_args(
        ["--users", "20", "--since", "95", "--timeout", "1", "--config", str(config)]
    )
    assert wait_run.run(args) == {"started": None}
    assert 1 <= time.monotonic() - started < 2
    # a missing config (Locust not installed yet) is waited for the same way
    config.unlink()
    assert wait_run.run(args) == {"started": None}


def test_the_wait_sees_a_run_that_starts_while_it_waits(master):
    config, history = master
    history.write_text(HISTORY_HEADER + "\n")

    def start_later():
        time.sleep(0.7)
        with history.open("a") as handle:
            handle.write("200,20,,Aggregated,5\n")

    import threading

    thread = threading.Thread(target=start_later)
    thread.start()
    args = wait_run.parse_args(
        ["--users", "20", "--since", "150", "--timeout", "5", "--config", str(config)]
    )
    assert wait_run.run(args) == {"started": 200.0}
    thread.join()


@pytest.mark.parametrize("timeout", ["0", "601"])
def test_the_wait_is_bounded(timeout):
    with pytest.raises(SystemExit):
        wait_run.parse_args(["--users", "1", "--since", "0", "--timeout", timeout])


# ---------------------------------------------------------------- workers

STAT = "{pid} ({name}) {state} {ppid} 1 1 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 5"


def fake_proc(tmp_path, processes):
    """/proc with the stat file of each (pid, command name, parent, user ticks, system
    ticks[, state: S when not given])."""
    proc = tmp_path / "proc"
    for pid, name, ppid, utime, stime, *state in processes:
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(
            STAT.format(
                pid=pid,
                name=name,
                ppid=ppid,
                utime=utime,
                stime=stime,
                state=state[0] if state else "S",
            )
        )
    (proc / "self").mkdir()
    return proc


def test_the_workers_are_the_main_pids_children_with_their_cpu_time(tmp_path):
    proc = fake_proc(
        tmp_path,
        [(812, "gunicorn", 1, 5, 5), (901, "gunicorn: worker", 812, 100, 20),
         (902, "a (weird) name", 812, 300, 60), (903, "gunicorn", 812, 50, 10),
         (950, "other", 1, 0, 0)],
    )  # fmt: skip
    assert workers.children(812, proc) == [901, 902, 903]
    before = workers.cpu_ticks([901, 902, 903, 999], proc)
    assert before == {901: 120, 902: 360, 903: 60}
    after = {901: 130, 902: 390, 903: 60}
    # 30 of the 40 ticks used in between
    assert workers.busiest(before, after, [901, 902, 903]) == (902, 75)
    # the worker holding the most connections first; CPU among equals; an
    # unknown count ranks below 0
    assert workers.busiest(before, after, [901, 902, 903], {901: 4, 902: 2, 903: 4}) == (901, 25)
    assert workers.busiest(before, after, [901, 902, 903], {901: 0, 902: 0, 903: 1}) == (903, 0)
    assert workers.busiest(before, after, [901, 902, 903], {901: 0, 902: None, 903: 0}) == (
        901,
        25,
    )
    assert workers.replaced([901, 903, 977], [902], 3)
    assert not workers.replaced([901, 903], [902], 3)
    assert not workers.replaced([901, 902, 903], [902], 3)


MASTER = textwrap.dedent(
    """\
    import signal, subprocess, sys, time
    # a server's master: 3 workers, a dead one replaced, all of them on HUP
    def worker():
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    children = [worker() for _ in range(3)]
    def reload(*_):
        for child in list(children):
            child.terminate(); child.wait(); children.remove(child); children.append(worker())
    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for _ in range(600):
            for child in list(children):
                if child.poll() is not None:
                    children.remove(child); children.append(worker())
            time.sleep(0.05)
    finally:
        for child in children:
            child.kill()
    """
)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A master with 3 workers, and a systemctl that knows it as labapp.service."""
    master = subprocess.Popen([sys.executable, "-c", MASTER])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\ncase "$1" in show) echo {master.pid};; reload) kill -HUP {master.pid};; esac\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    deadline = time.monotonic() + 10
    while len(workers.children(master.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield master
    master.send_signal(signal.SIGTERM)
    master.wait(timeout=10)


def act(action, at=None, timeout="5", extra=()):
    argv = [action, "--unit", "labapp.service", "--expected", "3", "--timeout", timeout]
    argv += ["--sample", "0.2", "--gap", "0.05"] + (["--at", str(at)] if at else [])
    return workers.run(workers.parse_args([*argv, *extra]))


def process_state(pid):
    """R, S, T (stopped), Z...; None once it is gone."""
    try:
        return workers.stat_fields(Path(f"/proc/{pid}/stat").read_text())[0]
    except OSError:
        return None


def counted_as(monkeypatch, counts):
    """Workers whose connections count as `counts(call, pid)` says; each look counts
    every worker running, then the one it stopped."""
    calls = []

    def connections(pid, proc=workers.PROC, port=None, remote_port=None):
        calls.append((pid, process_state(pid)))
        return counts(len(calls), pid)

    monkeypatch.setattr(workers, "connections", connections)
    return calls


def test_the_kill_waits_for_a_worker_that_holds_a_request_once_stopped(server, monkeypatch):
    # look n (of 3 workers) sees worker n busy; stopped, the first two hold none,
    # the third holds 2
    pids = sorted(workers.children(server.pid))

    def counts(call, pid):
        look, k = divmod(call - 1, 4)
        if k < 3:
            return 1 if pid == pids[look] else 0
        return 2 if look == 2 else 0

    calls = counted_as(monkeypatch, counts)
    found = act("kill-busiest", extra=["--port", "8000", "--busy-timeout", "5"])
    assert (found["looks"], found["victim_connections"]) == (3, 2)
    assert len(calls) == 12
    # each look stopped its busy worker and counted it stopped
    assert [calls[n] for n in (3, 7, 11)] == [(pid, "T") for pid in pids]
    assert found["victim"] == pids[2] not in found["workers_after"]
    # the two that held none were let go on: running again, not stopped
    assert all(process_state(pid) in ("R", "S") for pid in pids[:2])
    assert 2 * workers.BUSY_LOOK_S <= found["busy_waited_s"] < 2
    assert len(found["workers_after"]) == 3


def test_a_victim_that_exits_before_its_stop_is_passed_over(server, monkeypatch):
    # the busiest as counted running exits before it is stopped (a worker
    # recycled); the next look finds the living ones and kills one of them
    pids = sorted(workers.children(server.pid))

    def connections(pid, proc=workers.PROC, port=None, remote_port=None):
        if pid == pids[0]:
            if process_state(pid) not in (None, "Z"):
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while process_state(pid) not in (None, "Z") and time.monotonic() < deadline:
                    time.sleep(0.005)
            return 5
        return 2 if process_state(pid) == "T" else 1

    monkeypatch.setattr(workers, "connections", connections)
    found = act("kill-busiest", extra=["--port", "8000", "--busy-timeout", "5"])
    assert found["looks"] == 2 and found["victim_connections"] == 2
    assert found["victim"] in pids[1:] and str(pids[0]) not in found["connections_seen"]
    assert found["victim"] not in found["workers_after"]
    assert len(found["workers_after"]) == 3


def test_an_exited_worker_is_not_one_of_the_workers(tmp_path):
    proc = fake_proc(
        tmp_path,
        [(812, "gunicorn", 1, 5, 5), (901, "w", 812, 1, 1), (902, "w", 812, 1, 1, "Z"),
         (903, "w", 812, 1, 1, "T")],
    )  # fmt: skip
    assert workers.children(812, proc) == [901, 903]
    assert workers.process_state(902, proc) == "Z" and workers.process_state(999, proc) is None


def test_a_kill_that_finds_no_busy_worker_kills_after_its_timeout(server, monkeypatch):
    counted_as(monkeypatch, lambda call, pid: 0)
    started = time.monotonic()
    found = act("kill-busiest", extra=["--port", "8000", "--busy-timeout", "0.3"])
    assert found["victim_connections"] == 0 and found["looks"] > 1
    assert 0.3 <= found["busy_waited_s"] < 1 and time.monotonic() - started < 3
    assert found["victim"] not in found["workers_after"]


def test_the_busiest_worker_is_killed_and_its_replacement_timed(server):
    at = time.time() + 0.3
    found = act("kill-busiest", at=at)
    assert found["main_pid"] == server.pid
    assert len(found["workers_before"]) == 3
    assert found["victim"] in found["workers_before"]
    assert found["victim"] not in found["workers_after"]
    assert len(found["workers_after"]) == 3
    assert 0 <= found["replaced_s"] < 2
    # sampled from the time asked for, then killed
    assert found["at"] >= at + 0.2
    assert 0 <= found["cpu_share_percent"] <= 100


def test_a_reload_replaces_every_worker(server):
    found = act("reload")
    assert found["victim"] is None
    assert not set(found["workers_before"]) & set(found["workers_after"])
    assert len(found["workers_after"]) == 3
    assert found["replaced_s"] is not None


def test_workers_not_replaced_in_time_are_reported_as_such(server):
    server.send_signal(signal.SIGSTOP)  # a master that does nothing any more
    try:
        started = time.monotonic()
        found = act("kill-busiest", timeout="1")
    finally:
        server.send_signal(signal.SIGCONT)
    assert found["replaced_s"] is None
    # the killed worker, never reaped (a zombie), is not a worker: two are left
    assert found["victim"] not in found["workers_after"]
    assert len(found["workers_after"]) == 2
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "argv",
    [
        ["reload", "--unit", "u", "--expected", "3", "--timeout", "121"],
        ["reload", "--unit", "u", "--expected", "3", "--at", str(time.time() + 3600)],
        ["reload", "--unit", "u", "--expected", "3", "--sample", "11"],
    ],
)
def test_the_worker_tool_is_bounded(argv):
    with pytest.raises(SystemExit):
        workers.parse_args(argv)


# ---------------------------------------------------------------- outage


@pytest.fixture
def units(tmp_path, monkeypatch):
    """A systemctl that logs what it is asked, and a ready check that succeeds on
    its third call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {calls}\n')
    (bin_dir / "ready").write_text(
        f'#!/bin/sh\necho x >> {tmp_path}/tries\n[ "$(wc -l < {tmp_path}/tries)" -ge 3 ]\n'
    )
    for name in ("systemctl", "ready"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_an_outage_stops_waits_starts_and_times_the_unit_ready_again(units):
    at = time.time() + 0.3
    found = outage.run(
        outage.parse_args(["--unit", "pg.service", "--at", str(at), "--down", "0.5", "--", "ready"])
    )
    calls = [line.split(" ", 1) for line in units.read_text().splitlines()]
    assert [what for _, what in calls] == [
        "stop pg.service", "start --no-block pg.service", "start pg.service"
    ]  # fmt: skip
    assert at <= found["down_at"] <= float(calls[1][0])
    assert found["starting_at"] - found["down_at"] == pytest.approx(0.5, abs=0.15)
    # two failed checks 0.1 s apart, then ready
    assert found["ready_at"] - found["starting_at"] == pytest.approx(0.2, abs=0.15)


def test_a_unit_never_ready_is_reported_and_started_all_the_same(units):
    found = outage.run(
        outage.parse_args(
            ["--unit", "pg.service", "--down", "0", "--ready-timeout", "0.3", "--", "false"]
        )
    )
    assert found["ready_at"] is None
    assert units.read_text().splitlines()[-1].endswith(" start pg.service")


@pytest.mark.parametrize(
    "argv",
    [
        ["--unit", "u", "--down", "61", "--", "true"],
        ["--unit", "u", "--down", "1", "--ready-timeout", "301", "--", "true"],
        ["--unit", "u", "--down", "1", "--at", str(time.time() + 3600), "--", "true"],
    ],
)
def test_an_outage_is_bounded(argv):
    with pytest.raises(SystemExit):
        outage.parse_args(argv)


# ---------------------------------------------------------------- nginx_log

ACCESS = (
    '10.0.0.4 - - [21/Nov/2026:16:50:17 +0000] "GET /slow?delay=0.2 HTTP/1.1" 200 27 0.201 "-"\n'
    '10.0.0.4 - - [21/Nov/2026:16:50:17 +0000] "GET /slow?delay=0.2 HTTP/1.1" 200 27 0.202 "-"\n'
    '10.0.0.4 - - [21/Nov/2026:16:50:18 +0000] "GET /slow?delay=0.2 HTTP/1.1" 503 0 0.001 "-"\n'
    '10.0.0.4 - - [21/Nov/2026:16:50:18 +0000] "GET /db HTTP/1.1" 200 40 0.003 "-"\n'
    '10.0.0.4 - - [21/Nov/2026:16:50:19 +0100] "GET /slow HTTP/1.1" 200 27 0.200 "-"\n'
)
ERRORS = (
    "2026/11/21 16:50:17 [error] 7#7: *1 upstream prematurely closed connection\n"
    "2026/11/21 16:50:17 [warn] 7#7: *2 an upstream response is buffered to a temporary file\n"
    "2026/11/21 16:50:18 [error] 7#7: *3 recv() failed (104: Connection reset by peer) while "
    "reading response header from upstream\n"
)


def test_nginx_logs_are_counted_on_the_proxy_host(tmp_path):
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    access.write_text(ACCESS)
    error.write_text(ERRORS)
    run = nginx_log.run
    assert run(nginx_log.parse_args(["lines", str(access), str(error), str(tmp_path / "no")])) == {
        str(access): 5, str(error): 3, str(tmp_path / "no"): 0
    }  # fmt: skip
    answered = run(
        nginx_log.parse_args(["answered", str(access), "--after", "0", "--path", "/slow"])
    )
    # 16:50:17 UTC, and 16:50:19 +0100 (an hour earlier)
    assert answered == {"1795279817": 2, "1795276219": 1}
    after = run(nginx_log.parse_args(["answered", str(access), "--after", "1", "--path", "/slow"]))
    assert after == {"1795279817": 1, "1795276219": 1}
    assert run(nginx_log.parse_args(["upstream-errors", str(error), "--after", "0"])) == 3
    assert run(nginx_log.parse_args(["upstream-errors", str(error), "--after", "2"])) == 1


def test_nginx_retries_are_the_requests_with_more_than_one_upstream_try(tmp_path):
    access = tmp_path / "access.log"
    access.write_text(
        '10.0.10.41 [21/Nov/2026:16:50:17 +0000] "GET /db HTTP/1.1" 200 32 rt=0.004 '
        'urt=0.004 ua="10.0.10.21:8000" us="200"\n'
        '10.0.10.41 [21/Nov/2026:16:50:17 +0000] "GET /db HTTP/1.1" 200 32 rt=0.010 '
        'urt=0.001, 0.004 ua="10.0.10.21:8000, 10.0.10.21:8000" us="502, 200"\n'
        '10.0.10.41 [21/Nov/2026:16:50:17 +0000] "GET /db HTTP/1.1" 502 157 rt=0.010 '
        'urt=0.001, 0.002 ua="10.0.10.21:8000, 10.0.10.21:8000" us="502, 502"\n'
        '10.0.10.41 [21/Nov/2026:16:50:18 +0000] "GET /db HTTP/1.1" 200 32 rt=0.010 '
        'urt=0.001 : 0.004 ua="10.0.10.21:8000 : 10.0.10.22:8000" us="502 : 200"\n'
    )
    run = nginx_log.run
    found = run(nginx_log.parse_args(["retries", str(access), "--after", "0"]))
    assert found == {
        "requests": 4, "retried": 3, "retried_then_ok": 2,
        "tries": {"502, 200": 2, "502, 502": 1}, "upstream_status_logged": True,
    }  # fmt: skip
    assert run(nginx_log.parse_args(["retries", str(access), "--after", "3"]))["retried"] == 1
    # today's format has no us="...": the retries are counted, not what each try got
    old = tmp_path / "old.log"
    old.write_text(ACCESS)
    counted = run(nginx_log.parse_args(["retries", str(old), "--after", "0"]))
    assert counted["upstream_status_logged"] is False


TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"  # noqa: E501


def tcp_line(inode, state, local_port=8000):
    return (
        f"   0: 1F0A000A:{local_port:04X} 2A0A000A:D3B2 {state} 00000000:00000000 00:00000000 "
        "00000000 "
        f"   33        0 {inode} 1 0000000000000000 20 4 30 10 -1\n"
    )


def test_the_victims_established_connections_are_counted_from_its_fds(tmp_path):
    proc = fake_proc(tmp_path, [(901, "gunicorn: worker", 812, 0, 0)])
    fd = proc / "901" / "fd"
    fd.mkdir()
    for number, target in enumerate(
        ["/dev/null", "socket:[1001]", "socket:[1002]", "socket:[1003]", "socket:[1004]",
         "pipe:[77]"]
    ):  # fmt: skip
        (fd / str(number)).symlink_to(target)
    (proc / "net").mkdir()
    # 1001 and 1002 established, 1003 listening (0A), 1004 in tcp6 established, 1005 not
    # ours; 1006 its own connection to PostgreSQL (local port 51000, remote 5432)
    for number, inode in ((6, 1006),):
        (fd / str(number)).symlink_to(f"socket:[{inode}]")
    (proc / "net" / "tcp").write_text(
        TCP_HEADER + tcp_line(1001, "01") + tcp_line(1002, "01") + tcp_line(1003, "0A")
        + tcp_line(1005, "01") + tcp_line(1006, "01", local_port=51000)
    )  # fmt: skip
    (proc / "net" / "tcp6").write_text(TCP_HEADER + tcp_line(1004, "01"))
    assert workers.socket_inodes(901, proc) == {"1001", "1002", "1003", "1004", "1006"}
    assert workers.connections(901, proc) == 4
    # on the server's port only: the requests it holds, not its pool's connections
    assert workers.connections(901, proc, port=8000) == 3
    assert workers.connections(901, proc, port=51000) == 1
    # a process whose descriptors cannot be read: not counted, not 0
    assert workers.connections(999, proc) is None


def test_the_kill_reports_the_victims_connections(server):
    found = act("kill-busiest")
    # the fake workers hold no TCP connection: 0, counted (not null)
    assert found["victim_connections"] == 0
    assert found["connections_seen"] == {str(pid): 0 for pid in found["workers_before"]}
    assert found["asked_at"] <= found["at"]
