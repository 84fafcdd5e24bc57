"""sampler.py: a real bounded run on this machine, and its parsers on fixture files."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
SAMPLER = HERE.parents[1] / "roles" / "sampler" / "files" / "sampler.py"
FIXTURES = HERE / "fixtures"
UNIT_PATH = "/system.slice/labapp-uwsgi.service"
MB = 1024 * 1024


def _rows(path):
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_bounded_run_on_this_host(sampler, tmp_path):
    out = tmp_path / "samples" / "host.csv"
    # a process to find by name; psql pointed at a closed port and an unknown unit
    # must leave their columns empty, not stop the sampler
    with subprocess.Popen(["sleep", "30"]) as decoy:
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                str(SAMPLER),
                "--duration",
                "2",
                "--interval",
                "0.5",
                "--out",
                str(out),
                "--unit",
                "no-such-unit-for-the-sampler-test.service",
                "--pg-dsn",
                "postgresql://127.0.0.1:1/none?connect_timeout=1",
                "--proc-name",
                "sleep",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        elapsed = time.monotonic() - started
        decoy.kill()
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    columns, rows = _rows(out)
    assert columns == sampler.COLUMNS
    # a row every 0.5 s for 2 s; a busy machine may skip a tick, never add one
    assert 2 <= len(rows) <= 4
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times)
    assert 1.9 <= float(rows[-1]["elapsed_s"]) < 5
    for row in rows:
        assert float(row["cpu_limit_cores"]) > 0
        assert float(row["cpu_busy_cores"]) >= 0
        assert float(row["cpu_percent"]) >= 0
        assert row["cpu_source"] in ("cgroup", "procstat")
        assert float(row["procstat_busy_cores"]) >= 0
        # the kernel's CPUs: what this (uncontained) test's machine has online
        assert int(row["procstat_cpus"]) == os.cpu_count()
        assert float(row["procstat_busy_cores"]) <= int(row["procstat_cpus"]) + 0.05
        assert float(row["mem_used_mb"]) > 0
        assert float(row["mem_limit_mb"]) >= float(row["mem_used_mb"])
        assert int(row["proc_count"]) >= 1
        assert float(row["proc_max_cores"]) <= float(row["proc_cpu_cores"]) + 1e-9
        for column in (
            "unit_cpu_usage_usec",
            "unit_nr_throttled",
            "unit_throttled_usec",
            "pg_connections",
            "pg_active",
        ):
            assert row[column] == "", column
    assert f"wrote {len(rows)} rows" in result.stderr


def test_sigterm_ends_the_run_early_and_keeps_the_rows(tmp_path):
    out = tmp_path / "host.csv"
    command = [sys.executable, str(SAMPLER), "--duration", "60", "--interval", "0.3"]
    with subprocess.Popen([*command, "--out", str(out)], stderr=subprocess.PIPE) as process:
        time.sleep(1.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    _, rows = _rows(out)
    assert 1 <= len(rows) <= 5


@pytest.mark.parametrize("args", [["--duration", "0"], ["--duration", "1", "--interval", "-1"]])
def test_bad_arguments_are_refused(tmp_path, args):
    result = subprocess.run(
        [sys.executable, str(SAMPLER), *args, "--out", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "must be > 0" in result.stderr


def test_cgroup_v2_files(sampler):
    cgroups = sampler.Cgroups(FIXTURES / "cgroup_v2")
    assert cgroups.version == 2
    assert cgroups.cpu(UNIT_PATH) == {
        "usage_usec": 4_500_000,
        "nr_periods": 1200,
        "nr_throttled": 300,
        "throttled_usec": 15_000_000,
    }
    assert cgroups.cpu_quota_cores(UNIT_PATH) == 0.2
    # 200 MiB in use, 20 MiB of it inactive file cache; memory.max "max"
    assert cgroups.memory(UNIT_PATH) == (180 * MB, None)
    assert cgroups.cpu("")["usage_usec"] == 123_456_789
    assert cgroups.cpu_quota_cores("") == 1.0
    assert cgroups.memory("") == (536_870_912 - 104_857_600, 1_073_741_824)


def test_cgroup_v1_files(sampler):
    cgroups = sampler.Cgroups(FIXTURES / "cgroup_v1")
    assert cgroups.version == 1
    # cpuacct.usage and throttled_time are nanoseconds
    assert cgroups.cpu(UNIT_PATH) == {
        "usage_usec": 4_500_000,
        "nr_periods": 1200,
        "nr_throttled": 300,
        "throttled_usec": 15_000_000,
    }
    assert cgroups.cpu_quota_cores(UNIT_PATH) == 0.2
    # total_inactive_file (hierarchical) is the one subtracted
    assert cgroups.memory(UNIT_PATH) == (180 * MB, 200 * MB)
    assert cgroups.cpu("")["usage_usec"] == 98_765_432
    # cfs_quota_us -1: no limit; limit_in_bytes near LONG_MAX: no limit
    assert cgroups.cpu_quota_cores("") is None
    assert cgroups.memory("") == (1024 * MB, None)


def test_cgroup_v1_with_cpu_and_cpuacct_mounted_apart(sampler, tmp_path):
    unit_acct = tmp_path / "cpuacct" / UNIT_PATH.strip("/")
    unit_cpu = tmp_path / "cpu" / UNIT_PATH.strip("/")
    unit_acct.mkdir(parents=True)
    unit_cpu.mkdir(parents=True)
    (unit_acct / "cpuacct.usage").write_text("2000000\n")
    (unit_cpu / "cpu.stat").write_text("nr_periods 10\nnr_throttled 4\nthrottled_time 8000\n")
    cgroups = sampler.Cgroups(tmp_path)
    assert cgroups.version == 1
    assert cgroups.cpu(UNIT_PATH) == {
        "usage_usec": 2000,
        "nr_periods": 10,
        "nr_throttled": 4,
        "throttled_usec": 8,
    }
    # no memory hierarchy at all
    assert cgroups.memory(UNIT_PATH) == (None, None)


@pytest.mark.parametrize("mount", ["cgroup_v1", "cgroup_v2", "no-such-dir"])
def test_missing_cgroup_files_give_none(sampler, mount):
    cgroups = sampler.Cgroups(FIXTURES / mount)
    missing = "/system.slice/not-there.service"
    assert cgroups.cpu(missing) == dict.fromkeys(
        ("usage_usec", "nr_periods", "nr_throttled", "throttled_usec")
    )
    assert cgroups.cpu_quota_cores(missing) is None
    assert cgroups.memory(missing) == (None, None)


def test_proc_parsers(sampler):
    stat = "cpu  100 5 50 800 20 3 2 10 7 0\ncpu0 50 2 25 400 10 1 1 5 3 0\n"
    # busy = user+nice+system+irq+softirq+steal; guest is already inside user
    assert sampler.parse_proc_stat(stat) == (170, 990)
    assert sampler.parse_proc_stat("") is None
    assert sampler.proc_stat_cpus(stat) == 1
    assert sampler.proc_stat_cpus(stat + "cpu1 1 2 3 4 5 6 7 8 0 0\nintr 1 2\nctxt 3\n") == 2
    assert sampler.proc_stat_cpus("cpu  1 2 3\n") is None
    assert sampler.proc_stat_cpus(None) is None
    meminfo = "MemTotal:  2048000 kB\nMemFree:  100 kB\nMemAvailable:  1024000 kB\n"
    assert sampler.parse_meminfo(meminfo) == (1024000 * 1024, 2048000 * 1024)
    assert sampler.parse_meminfo("MemTotal: 1 kB\n") is None
    assert sampler.parse_keyed("usage_usec 10\nbad line here\nx y\n") == {"usage_usec": 10}


def write_stat(proc, pid, utime, stime=0, cutime=0):
    (proc / str(pid)).mkdir(parents=True, exist_ok=True)
    (proc / str(pid) / "stat").write_text(
        f"{pid} (uwsgi) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} 0 20 0 1 0"
    )


def test_the_process_ledger_never_falls_when_workers_exit_and_are_reaped(sampler, tmp_path):
    # a master (10) and two workers (11, 12); 12 exits (a reload), then the
    # master reaps it (its cutime takes 12's 500 ticks), and 13 replaces it
    ledger, usec = sampler.ProcessLedger(), lambda ticks: ticks * 1_000_000 // sampler.CLOCK_TICKS
    write_stat(tmp_path, 10, 100)
    write_stat(tmp_path, 11, 400)
    write_stat(tmp_path, 12, 500)
    assert ledger.usec([10, 11, 12], tmp_path) == usec(1000)
    write_stat(tmp_path, 11, 450)
    # 12 gone from cgroup.procs (a zombie): its time is not taken away
    assert ledger.usec([10, 11], tmp_path) == usec(1050)
    write_stat(tmp_path, 10, 110, cutime=500)
    write_stat(tmp_path, 13, 30)
    # reaped: the master's cutime does not count it twice; 13 counts whole
    assert ledger.usec([10, 11, 13], tmp_path) == usec(1090)
    # a pid used again by a new process counts from zero
    write_stat(tmp_path, 11, 5)
    assert ledger.usec([10, 11, 13], tmp_path) == usec(1095)


def test_process_parsers(sampler):
    # the comm field may hold spaces and parentheses
    stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0"
    assert sampler.process_cpu_ticks(stat) == 300
    locust = "/opt/venv/bin/python3\0/opt/venv/bin/locust\0-f\0locustfile.py\0--worker\0"
    assert "locust" in sampler.process_program_names(locust)
    shell = "/bin/sh\0-c\0locust -f locustfile.py\0"
    assert "locust" not in sampler.process_program_names(shell)
    sampler_itself = "python3\0sampler.py\0--proc-name\0locust\0"
    assert "locust" not in sampler.process_program_names(sampler_itself)


def test_pg_commands_and_output(sampler, monkeypatch):
    assert sampler.parse_pg_counts("12|3\n") == (12, 3)
    assert sampler.parse_pg_counts("") == (None, None)
    assert sampler.parse_pg_counts("psql: error") == (None, None)
    dsn_command = sampler.psql_command(dsn="host=db1 user=bench")
    assert dsn_command[:2] == ["psql", "host=db1 user=bench"]
    assert dsn_command[-1] == sampler.PG_CONNECTIONS_SQL
    monkeypatch.setattr(sampler.os, "geteuid", lambda: 0)
    assert sampler.psql_command(psql_user="postgres")[:4] == ["runuser", "-u", "postgres", "--"]


def _fake_systemctl(bin_dir, output):
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(f"#!/bin/sh\necho '{output}'\n")
    script.chmod(0o755)


def test_unit_cgroup_path_from_systemctl(sampler, tmp_path, monkeypatch):
    _fake_systemctl(tmp_path / "bin", UNIT_PATH)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert sampler.unit_cgroup_path("labapp-uwsgi.service") == UNIT_PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert sampler.unit_cgroup_path("labapp-uwsgi.service") is None


def test_rows_carry_the_unit_counters_and_rates(sampler, tmp_path, monkeypatch):
    mount = tmp_path / "cgroup"
    shutil.copytree(FIXTURES / "cgroup_v2", mount)
    _fake_systemctl(tmp_path / "bin", UNIT_PATH)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    args = SimpleNamespace(
        unit="labapp-uwsgi.service", pg_psql_user=None, pg_dsn=None, proc_name=None, interval=1.0
    )
    probe = sampler.Sampler(args, cgroups=sampler.Cgroups(mount))
    first = probe.read()
    stat = mount / UNIT_PATH.strip("/") / "cpu.stat"
    stat.write_text(
        "usage_usec 5000000\nnr_periods 1210\nnr_throttled 305\nthrottled_usec 15250000\n"
    )
    second = probe.read()
    second["mono"] = first["mono"] + 2.0  # as if two seconds had passed
    row = probe.row(first, second)
    assert row["unit_cpu_usage_usec"] == "5000000"
    assert row["unit_cpu_cores"] == "0.250"  # 500,000 us over 2 s
    assert row["unit_nr_periods"] == "1210"
    assert row["unit_nr_throttled"] == "305"
    assert row["unit_throttled_usec"] == "15250000"
    assert row["unit_mem_mb"] == "180.0"
    assert row["cpu_limit_cores"] == "1.000"  # the fixture root's cpu.max
    assert row["cpu_source"] == "cgroup"
    assert row["pg_connections"] == ""
    assert set(row) == set(sampler.COLUMNS)


def _proc_stat(pid, utime, stime, cutime=0, cstime=0):
    # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt
    # majflt cmajflt utime stime cutime cstime ...
    return f"{pid} (gunicorn: worker) S 1 1 1 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0"


def test_a_v1_container_counts_the_units_processes_and_its_own(sampler, tmp_path):
    # A systemd container on a cgroup-v1 host: the cpu hierarchy is the host's,
    # read-only, without the container's or its units' groups; systemd's named
    # hierarchy has the unit and its processes.
    mount, proc = tmp_path / "cgroup", tmp_path / "proc"
    (mount / "cpu,cpuacct").mkdir(parents=True)
    unit = mount / "systemd" / "libpod_parent" / "libpod-1" / UNIT_PATH.strip("/")
    unit.mkdir(parents=True)
    (unit / "cgroup.procs").write_text("20\n21\n")
    ticks = sampler.CLOCK_TICKS
    stats = {1: (ticks, 0, ticks, 0), 20: (ticks, ticks, 2 * ticks, 0), 21: (ticks, 0, 0, 0)}

    def write_proc(stats):
        for pid, times in stats.items():
            (proc / str(pid)).mkdir(parents=True, exist_ok=True)
            (proc / str(pid) / "stat").write_text(_proc_stat(pid, *times))
        (proc / "stat").write_text(
            "cpu  100 0 100 800 0 0 0 0 0 0\n"
            "cpu0 50 0 50 400 0 0 0 0 0 0\ncpu1 50 0 50 400 0 0 0 0 0 0\n"
        )

    write_proc(stats)
    args = SimpleNamespace(
        unit="labapp-uwsgi.service",
        pg_psql_user=None,
        pg_dsn=None,
        proc_name=None,
        interval=1.0,
        cpus=1.0,
    )
    probe = sampler.Sampler(args, cgroups=sampler.Cgroups(mount), proc=proc, container=True)
    probe.unit_path = "/libpod_parent/libpod-1" + UNIT_PATH
    first = probe.read()
    # unit: its two processes' own 2 + 1 s (what 20 reaped before was never seen)
    assert first["unit_cpu"]["usage_usec"] == 3_000_000
    # the worker 21 exited and was reaped by 20 (its time moves into cutime, not
    # counted again); 20 used 1 s more
    stats[20] = (2 * ticks, ticks, 3 * ticks + ticks, 0)
    del stats[21]
    (proc / "21" / "stat").unlink()
    (proc / "21").rmdir()
    (unit / "cgroup.procs").write_text("20\n")
    write_proc(stats)
    second = probe.read()
    second["mono"] = first["mono"] + 2.0
    row = probe.row(first, second)
    assert row["unit_cpu_usage_usec"] == "4000000"
    # 1 s over 2 s: what 21 used after the first read is lost with it (at most
    # an interval of an exiting process), and nothing swings when it is reaped
    assert row["unit_cpu_cores"] == "0.500"
    assert row["unit_cpu_source"] == "procfs"
    assert row["unit_nr_throttled"] == ""
    # the container: its own processes (the same ledger), against the CPUs it was given
    assert row["cpu_source"] == "procfs"
    assert row["cpu_limit_cores"] == "1.000"
    assert row["cpu_busy_cores"] == "0.500"
    assert row["cpu_percent"] == "50.0"
    # the kernel's view, the machine's: its CPUs beside the busy ones
    assert row["procstat_cpus"] == "2"
    assert row["procstat_busy_cores"] == "0.000"


def test_outside_a_container_the_machine_counts(sampler, tmp_path):
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "environ").write_text("HOME=/\0TERM=linux\0")
    assert sampler.in_container(proc) is (
        Path("/run/.containerenv").exists() or Path("/.dockerenv").exists()
    )
    (proc / "1" / "environ").write_text("container=podman\0HOME=/\0")
    assert sampler.in_container(proc) is True


# --------------------------------------------------------------------------- the broker's queue


def test_redis_settings_come_from_redis_conf(sampler):
    conf = 'bind 127.0.0.1\n# requirepass commented\nport 6390\nrequirepass "s3cret"\n'
    assert sampler.redis_settings(conf) == (6390, "s3cret")
    assert sampler.redis_settings("bind 127.0.0.1\n") == (6379, None)


def test_resp_commands_and_replies(sampler):
    assert sampler.resp_command("LLEN", "celery") == b"*2\r\n$4\r\nLLEN\r\n$6\r\ncelery\r\n"
    assert sampler.resp_replies(b"+OK\r\n:3\r\n-WRONGPASS no\r\n:0\r\n", 4) == [
        "OK", 3, "-WRONGPASS no", 0,
    ]  # fmt: skip
    # a reply not yet complete is not read as one
    assert sampler.resp_replies(b"+OK\r\n:3", 2) == ["OK", 3]
    assert sampler.resp_replies(b"+OK\r\n", 2) == ["OK"]


@pytest.fixture
def redis_server(tmp_path):
    """A throwaway Redis with a password on a free loopback port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: make setup installs it (Debian's redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nrequirepass s3cret\nsave ''\nappendonly no\ndir {tmp_path}\n"
    )
    process = subprocess.Popen([server, str(conf)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield conf, port
    finally:
        process.terminate()
        process.wait(10)


def test_the_queue_is_counted_over_its_priority_steps_and_unacked(sampler, redis_server):
    conf, port = redis_server
    cli = ["redis-cli", "-p", str(port), "-a", "s3cret", "--no-auth-warning"]
    subprocess.run([*cli, "RPUSH", "celery", "a", "b", "c"], check=True, capture_output=True)
    subprocess.run([*cli, "RPUSH", "celery\x06\x163", "d", "e"], check=True, capture_output=True)
    subprocess.run([*cli, "RPUSH", "other", "x"], check=True, capture_output=True)
    subprocess.run([*cli, "HSET", "unacked", "tag1", "m"], check=True, capture_output=True)

    settings = sampler.redis_settings(conf.read_text())
    assert settings == (port, "s3cret")
    assert sampler.redis_queue_counts(*settings, "celery") == ((5, 1), None)
    assert sampler.redis_queue_counts(*settings, "empty") == ((0, 1), None)
    (counts, error) = sampler.redis_queue_counts(port, "wrong", "celery")
    assert counts == (None, None) and "WRONGPASS" in error
    (counts, error) = sampler.redis_queue_counts(port, None, "celery")
    assert counts == (None, None) and "NOAUTH" in error


def test_a_broker_that_does_not_answer_leaves_the_columns_empty(sampler, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    counts, error = sampler.redis_queue_counts(closed, "pw", "celery", timeout=0.5)
    assert counts == (None, None) and error
