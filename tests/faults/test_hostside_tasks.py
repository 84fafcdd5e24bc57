"""The host-side programs of the task and host faults, without a lab: the task
table's reads (a fake psql), the connection count (a fake /proc), nginx's
answers per app host, the kill of a unit's main process, the probe's bodies."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flask_deploy_lab.faults.hostside import connections, http_probe, nginx_log, task_table, workers
from flask_deploy_lab.faults.stack import parse_answers


def test_the_task_table_is_read_until_nothing_is_pending():
    reads = iter([
        [["a", "running", "1", "1000.5", "1000.6", "", ""]],
        [["a", "done", "2", "1000.5", "1070.1", "1072.25", ""]],
    ])  # fmt: skip
    args = task_table.parse_args(
        ["wait", "--db", "labapp", "--since", "999", "--until", "1031",
         "--deadline", str(time.time() + 30), "--gap", "0.05"]
    )  # fmt: skip
    found = task_table.run(args, read=lambda _args, sql: next(reads))
    assert found["rows"] == [["a", "done", 2, 1000.5, 1070.1, 1072.25, ""]]
    assert found["pending"] == 0


def test_the_wait_for_the_task_table_ends_at_its_deadline():
    args = task_table.parse_args(
        ["wait", "--db", "labapp", "--since", "999", "--until", "1031",
         "--deadline", str(time.time() + 0.3), "--gap", "0.1"]
    )  # fmt: skip
    started = time.monotonic()
    found = task_table.run(args, read=lambda *_: [["a", "queued", "0", "1000", "", "", ""]])
    assert found["pending"] == 1 and time.monotonic() - started < 2


def test_the_task_table_is_read_with_psql_as_csv(tmp_path):
    psql = tmp_path / "psql"
    psql.write_text(
        '#!/bin/sh\necho "$@" > "$0.args"\nprintf \'a,done,2,1000.5,1070.1,1072.25,\\n\'\n'
    )
    psql.chmod(0o755)
    args = task_table.parse_args(
        ["wait", "--db", "labapp", "--since", "999", "--until", "1031",
         "--deadline", str(time.time() + 30), "--psql", str(psql)]
    )  # fmt: skip
    assert task_table.run(args)["rows"] == [["a", "done", 2, 1000.5, 1070.1, 1072.25, ""]]
    called = (tmp_path / "psql.args").read_text()
    assert called.startswith("-X -q -v ON_ERROR_STOP=1 -d labapp -c COPY (SELECT id::text")


def test_the_task_table_sql_takes_numbers_only():
    sql = task_table.window_sql(999.5, 1031.25)
    assert "to_timestamp(999.500000)" in sql and "to_timestamp(1031.250000)" in sql
    with pytest.raises(SystemExit):
        task_table.parse_args(["wait", "--db", "x", "--since", "1", "--until", "2",
                               "--deadline", str(time.time() + 3600)])  # fmt: skip


def tcp(remote, state="01"):
    return f"   0: 1600000A:D431 {remote} {state} 00000000:00000000 00:00000000 00000000 0 0 1 1"


def test_the_established_connections_to_a_host_are_counted(tmp_path):
    net = tmp_path / "net"
    net.mkdir()
    # 10.0.10.22:8000 is 160A000A:1F40 in the kernel's order
    (net / "tcp").write_text(
        "header\n"
        + "\n".join([tcp("160A000A:1F40")] * 3 + [tcp("160A000A:1F40", "06"), tcp("150A000A:1F40")])
    )
    (net / "tcp6").write_text("header\n" + tcp("0000000000000000FFFF0000160A000A:1F40") + "\n")
    args = connections.parse_args(["--address", "10.0.10.22"])
    assert connections.run(args, proc=tmp_path)["established"] == 4
    args = connections.parse_args(["--address", "10.0.10.22", "--port", "9000"])
    assert connections.run(args, proc=tmp_path)["established"] == 0
    with pytest.raises(SystemExit):
        connections.parse_args(["--address", "app2"])


def test_nginx_answers_are_counted_per_second_and_per_app_host(tmp_path):
    log = tmp_path / "access.log"
    line = (
        '10.0.10.41 [21/Nov/2026:16:50:{s} +0000] "GET /slow?delay=0.5 HTTP/1.1" {st} 20 '
        'rt=0.5 urt=0.5 ua="{ua}" us="{us}"'
    )
    log.write_text("\n".join([
        line.format(s="17", st=200, ua="10.0.10.21:8000", us="200"),
        line.format(s="17", st=200, ua="10.0.10.22:8000, 10.0.10.21:8000", us="502, 200"),
        line.format(s="18", st=502, ua="10.0.10.22:8000", us="502"),
        line.format(s="18", st=502, ua="-", us="-"),
    ]) + "\n")  # fmt: skip
    found = nginx_log.run(nginx_log.parse_args(["upstreams", str(log), "--after", "0"]))
    first = "1795279817"
    assert found[first] == {"10.0.10.21": [2, 2]}
    assert found[str(int(first) + 1)] == {"10.0.10.22": [1, 0], "-": [1, 0]}


SLEEPER = "import time; time.sleep(60)"


@pytest.fixture
def start_unit(tmp_path, monkeypatch):
    """start_unit(children): a service whose main process runs these children (Python
    code each), and a systemctl that restarts it after a kill."""
    started = []

    def start(children):
        main = subprocess.Popen([sys.executable, "-c", (
            "import subprocess,sys,time\n"
            f"c=[subprocess.Popen([sys.executable,'-c',code]) for code in {children!r}]\n"
            "time.sleep(60)"
        )])  # fmt: skip
        started.append(main)
        pid_file = tmp_path / "pid"
        pid_file.write_text(str(main.pid))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        # MainPID: the recorded one while it lives, else a new one (systemd's restart)
        (bin_dir / "systemctl").write_text(
            f"#!/bin/sh\npid=$(cat {pid_file})\n"
            'case "$2" in --property=TimeoutStopUSec) echo 45s;;\n'
            "--property=NRestarts) if kill -0 $pid 2>/dev/null; then echo 0; "
            "else echo 1; fi;;\n"
            f"*) if kill -0 $pid 2>/dev/null; then echo $pid; else echo {os.getpid()}; fi;; esac\n"
        )
        (bin_dir / "systemctl").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        deadline = time.monotonic() + 10
        while len(workers.children(main.pid)) < len(children) and time.monotonic() < deadline:
            time.sleep(0.05)
        # reaped as soon as it dies, as systemd reaps its services
        threading.Thread(target=main.wait, daemon=True).start()
        return main

    yield start
    for main in started:
        for child in workers.children(main.pid):
            os.kill(child, 9)
        main.kill()


def alive(pid):
    """Running, not a zombie."""
    try:
        return workers.stat_fields(Path(f"/proc/{pid}/stat").read_text())[0] != "Z"
    except OSError:
        return False


def test_the_worker_is_killed_with_its_pool_and_its_restart_timed(start_unit):
    main = start_unit([SLEEPER, SLEEPER])
    pool = workers.children(main.pid)
    args = workers.parse_args(["kill-main", "--unit", "labapp-celery.service", "--timeout", "5",
                               "--gap", "0.05"])  # fmt: skip
    found = workers.run(args)
    assert found["victim"] == main.pid and found["main_pid"] == main.pid
    assert found["workers_before"] == pool and not any(alive(pid) for pid in pool)
    assert found["main_pid_after"] == os.getpid()
    assert found["restarted_s"] is not None and found["restarted_s"] < 2
    assert (found["n_restarts_before"], found["n_restarts_after"]) == (0, 1)
    assert found["stop_timeout_s"] == 45.0
    assert (found["busy_connections"], found["busy_waited_s"]) == (None, None)
    # the other actions still need their worker count, and only kill-main waits for a task
    with pytest.raises(SystemExit):
        workers.parse_args(["reload", "--unit", "u"])
    with pytest.raises(SystemExit):
        workers.parse_args(["reload", "--unit", "u", "--expected", "2", "--busy-port", "80"])


def test_the_worker_is_killed_once_a_pool_process_calls_the_upstream(start_unit):
    # the upstream: a listener whose handshakes the kernel completes unaccepted
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        port = upstream.getsockname()[1]
        caller = (
            "import socket,time; time.sleep(0.6); "
            f"c=socket.create_connection(('127.0.0.1',{port})); time.sleep(60)"
        )
        main = start_unit([SLEEPER, caller])
        args = workers.parse_args(["kill-main", "--unit", "labapp-celery.service", "--timeout",
                                   "5", "--gap", "0.05", "--busy-port", str(port)])  # fmt: skip
        found = workers.run(args)
    assert found["busy_connections"] == 1
    assert 0.3 < found["busy_waited_s"] < 5
    assert found["victim"] == main.pid and found["main_pid_after"] == os.getpid()


def test_a_worker_that_calls_nothing_is_killed_at_the_busy_timeout(start_unit):
    main = start_unit([SLEEPER])
    args = workers.parse_args(["kill-main", "--unit", "labapp-celery.service", "--timeout", "5",
                               "--busy-port", "1", "--busy-timeout", "0.5"])  # fmt: skip
    found = workers.run(args)
    assert found["busy_connections"] == 0 and 0.5 <= found["busy_waited_s"] < 2
    assert found["victim"] == main.pid


def test_the_probe_says_what_each_body_was(http_server):
    out = __import__("io").StringIO()
    http_probe.run(http_probe.parse_args([f"{http_server}/busy", "1", "0", "--body"]), out=out)
    answers = parse_answers(out.getvalue())
    assert [(a.status, a.retry_after, a.body) for a in answers] == [(503, "1", "-")]
    assert [http_probe.body_kind(b) for b in (b'{"error": "x"}', b"[1]", b"<html>", b"")] == [
        "json-error", "json", "other", "-"
    ]  # fmt: skip
    assert json.loads('{"a": 1}')  # the standard library's reader, as on the host


def test_systemd_time_spans_are_read_as_seconds():
    assert workers.timespan_s("45s") == 45.0
    assert workers.timespan_s("1min 30s") == 90.0
    assert workers.timespan_s("1h 2min 500ms") == 3720.5
    assert workers.timespan_s("infinity") is None
    assert workers.timespan_s("") is None
    with pytest.raises(ValueError, match="not a systemd time span"):
        workers.timespan_s("45 parsecs")


CGROUP_V1 = (
    "tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
)
CGROUP_V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"


@pytest.mark.parametrize(
    ("mounts", "container", "seen"),
    [
        (CGROUP_V2, True, True),  # a container on a cgroup v2 host
        (CGROUP_V2, False, True),  # a VM or a real host on v2
        (CGROUP_V1, False, True),  # v1 or hybrid outside a container: the release agent
        (CGROUP_V1, True, False),  # the podman lab on a v1 or hybrid host
    ],
)
def test_systemd_sees_a_cgroup_empty_except_in_a_container_on_cgroup_v1(
    tmp_path, mounts, container, seen
):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mounts").write_text(mounts)
    if container:
        (tmp_path / "run/systemd").mkdir(parents=True)
        (tmp_path / "run/systemd/container").write_text("podman\n")
    assert workers.cgroup_empty_seen(tmp_path) is seen
