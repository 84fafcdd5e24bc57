#!/usr/bin/env python3
"""Sample one lab host's CPU, memory, cgroup throttling and PostgreSQL connections.

Runs on every lab host (Debian 12, systemd; a VM, a real host or a container)
for the length of one measured Locust run, and writes one CSV row per interval.
Standard library only, so it runs with the system python3.

    sampler.py --duration 70 --interval 1 --out samples/app1.csv \\
        [--unit labapp-uwsgi.service] [--pg-psql-user postgres | --pg-dsn DSN] \\
        [--proc-name locust]

It stops by itself after --duration seconds, or earlier on SIGTERM/SIGINT, and
flushes every row as it goes. Anything it cannot read (no cgroup file, no
systemctl, psql failing) leaves the field empty; it never stops sampling.

Columns (every file has all of them; empty when not measured):

    time                 Unix time of the sample, seconds
    elapsed_s            seconds since the sampler started
    cpu_limit_cores      CPUs this host may use: min(CPUs in its affinity mask,
                         the CFS quota of its cgroup root, else --cpus)
    cpu_busy_cores       CPUs busy over the interval; from the cgroup root's usage
                         counter (in a container: the container); in a container
                         that cannot read it, its own processes' CPU time (a
                         ProcessLedger); else /proc/stat
    cpu_percent          100 * cpu_busy_cores / cpu_limit_cores
    cpu_source           "cgroup", "procfs" or "procstat": where cpu_busy_cores
                         came from
    procstat_cpus        CPUs /proc/stat lists (inside a container the whole
                         machine's, which procstat_busy_cores is a share of)
    procstat_busy_cores  CPUs busy by /proc/stat (the kernel's view: inside a
                         container this is the whole machine)
    mem_used_mb          memory in use: cgroup root usage minus inactive file
                         cache, else /proc/meminfo MemTotal - MemAvailable
    mem_limit_mb         min(cgroup root memory limit, MemTotal)
    unit_cpu_usage_usec  --unit: the unit cgroup's cumulative CPU time; where the
                         cpu controller does not show the unit, the CPU time of
                         the unit's processes, each counted by its increase
                         between two reads (a ProcessLedger: never falls)
    unit_cpu_source      --unit: "cgroup" or "procfs", where that came from
    unit_cpu_cores       --unit: CPUs the unit used over the interval
    unit_nr_periods      --unit: cumulative CFS periods (cpu.stat)
    unit_nr_throttled    --unit: cumulative throttled periods (cpu.stat)
    unit_throttled_usec  --unit: cumulative throttled time (v1 throttled_time
                         is in ns and converted)
    unit_mem_mb          --unit: the unit cgroup's memory minus inactive file cache
    pg_connections       --pg-*: client backends in pg_stat_activity (not ours)
    pg_active            --pg-*: of those, state = 'active'
    broker_queued        --redis-config: messages waiting in the Celery queue
                         (the Redis lists of --redis-queue and its priority
                         steps), read from the broker on this host
    broker_unacked       --redis-config: messages delivered to a worker and not
                         yet acknowledged (tasks running, late acknowledgement)
    proc_count           --proc-name: processes running that program
    proc_cpu_cores       --proc-name: CPUs those processes used together
    proc_max_cores       --proc-name: CPUs of the busiest one (a Locust process
                         is single-threaded: near 1.0 means it is saturated)

Cumulative counters (unit_cpu_usage_usec, unit_nr_*) are written raw so a
reader can take deltas over any window; the *_cores columns are per interval.
The unit's cgroup comes from `systemctl show -p ControlGroup --value UNIT` and
is read under cgroup v2 (/sys/fs/cgroup/<path>/cpu.stat, memory.current) or v1
(the cpu,cpuacct and memory hierarchies).

A systemd container on a cgroup-v1 host (the podman lab on such a machine) sees
the host's cpu hierarchy read-only and without its own or its units' groups;
only systemd's named hierarchy has the unit, with its process list. There the
unit's CPU time is summed from /proc/<pid>/stat of those processes (utime,
stime and the times of children they reaped, so worker restarts keep the
counter whole), the container's from all its processes, and its CPU limit is
--cpus. Throttling is not visible there, and not enforced either.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

COLUMNS = [
    "time",
    "elapsed_s",
    "cpu_limit_cores",
    "cpu_busy_cores",
    "cpu_percent",
    "cpu_source",
    "procstat_cpus",
    "procstat_busy_cores",
    "mem_used_mb",
    "mem_limit_mb",
    "unit_cpu_usage_usec",
    "unit_cpu_cores",
    "unit_cpu_source",
    "unit_nr_periods",
    "unit_nr_throttled",
    "unit_throttled_usec",
    "unit_mem_mb",
    "pg_connections",
    "pg_active",
    "broker_queued",
    "broker_unacked",
    "proc_count",
    "proc_cpu_cores",
    "proc_max_cores",
]

PG_CONNECTIONS_SQL = (
    "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)
# v1 controllers are mounted either co-mounted or apart, depending on the distro;
# systemd's own named hierarchy lists every unit's processes
V1_PROCS_DIRS = ("systemd", "unified", "cpu,cpuacct", "cpuacct,cpu", "cpuacct", "memory")
V1_CPUACCT_DIRS = ("cpu,cpuacct", "cpuacct,cpu", "cpuacct")
V1_CPU_DIRS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")
# v1 reports "no limit" as a page-aligned LONG_MAX
V1_NO_MEMORY_LIMIT = 1 << 60
MB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path):
    try:
        return Path(path).read_text()
    except (OSError, ValueError):
        return None


def _read_int(path):
    text = _read(path)
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


def parse_keyed(text):
    """'key value' lines (cpu.stat, memory.stat) -> {key: int}; unparsable lines skipped."""
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                values[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return values


class Cgroups:
    """Reads cgroup v2 or v1 files under one mount point; paths are cgroup paths ("" = root)."""

    def __init__(self, mount="/sys/fs/cgroup"):
        self.mount = Path(mount)
        if (self.mount / "cgroup.controllers").exists():
            self.version = 2
        elif any((self.mount / d).is_dir() for d in V1_CPUACCT_DIRS):
            self.version = 1
        else:
            self.version = None

    def _dir(self, path, controllers=()):
        relative = path.strip("/")
        if self.version == 2:
            return self.mount / relative
        for controller in controllers:
            candidate = self.mount / controller / relative
            if candidate.is_dir():
                return candidate
        return None

    def cpu(self, path=""):
        """{usage_usec, nr_periods, nr_throttled, throttled_usec}; a missing value is None."""
        result = dict.fromkeys(("usage_usec", "nr_periods", "nr_throttled", "throttled_usec"))
        if self.version == 2:
            stat = parse_keyed(_read(self._dir(path) / "cpu.stat"))
            result["usage_usec"] = stat.get("usage_usec")
            result["nr_periods"] = stat.get("nr_periods")
            result["nr_throttled"] = stat.get("nr_throttled")
            result["throttled_usec"] = stat.get("throttled_usec")
        elif self.version == 1:
            acct = self._dir(path, V1_CPUACCT_DIRS)
            usage_ns = _read_int(acct / "cpuacct.usage") if acct else None
            result["usage_usec"] = usage_ns // 1000 if usage_ns is not None else None
            cpu = self._dir(path, V1_CPU_DIRS)
            stat = parse_keyed(_read(cpu / "cpu.stat")) if cpu else {}
            result["nr_periods"] = stat.get("nr_periods")
            result["nr_throttled"] = stat.get("nr_throttled")
            throttled_ns = stat.get("throttled_time")
            result["throttled_usec"] = throttled_ns // 1000 if throttled_ns is not None else None
        return result

    def pids(self, path):
        """Process ids in the cgroup at `path`, or None when no hierarchy has it."""
        directory = self._dir(path, V1_PROCS_DIRS)
        text = _read(directory / "cgroup.procs") if directory else None
        if text is None:
            return None
        return [int(line) for line in text.split() if line.isdigit() and line != "0"]

    def cpu_quota_cores(self, path=""):
        """The CFS quota as CPUs, or None when unlimited or unreadable."""
        if self.version == 2:
            text = _read(self._dir(path) / "cpu.max")
            parts = text.split() if text else []
            if len(parts) == 2 and parts[0] != "max":
                try:
                    return int(parts[0]) / int(parts[1])
                except (ValueError, ZeroDivisionError):
                    return None
            return None
        if self.version == 1:
            cpu = self._dir(path, V1_CPU_DIRS)
            if cpu is None:
                return None
            quota = _read_int(cpu / "cpu.cfs_quota_us")
            period = _read_int(cpu / "cpu.cfs_period_us")
            if quota is not None and quota > 0 and period:
                return quota / period
        return None

    def memory(self, path=""):
        """(bytes in use minus inactive file cache, limit in bytes); either may be None."""
        if self.version == 2:
            directory = self._dir(path)
            usage = _read_int(directory / "memory.current")
            inactive = parse_keyed(_read(directory / "memory.stat")).get("inactive_file", 0)
            limit_text = (_read(directory / "memory.max") or "").strip()
            limit = int(limit_text) if limit_text.isdigit() else None
        elif self.version == 1:
            directory = self._dir(path, ("memory",))
            if directory is None:
                return None, None
            usage = _read_int(directory / "memory.usage_in_bytes")
            stat = parse_keyed(_read(directory / "memory.stat"))
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            limit = _read_int(directory / "memory.limit_in_bytes")
            if limit is not None and limit >= V1_NO_MEMORY_LIMIT:
                limit = None
        else:
            return None, None
        if usage is not None:
            usage = max(usage - inactive, 0)
        return usage, limit


def parse_proc_stat(text):
    """(busy ticks, total ticks) of the aggregate cpu line of /proc/stat."""
    for line in (text or "").splitlines():
        if line.startswith("cpu "):
            fields = [int(v) for v in line.split()[1:]]
            # guest time is already counted in user/nice
            fields = (fields + [0] * 10)[:8]
            user, nice, system, idle, iowait, irq, softirq, steal = fields
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    return None


def proc_stat_cpus(text):
    """How many CPUs /proc/stat lists (its cpu0, cpu1, ... lines); None when unreadable."""
    count = sum(
        1 for line in (text or "").splitlines() if line.startswith("cpu") and line[3:4].isdigit()
    )
    return count or None


def parse_meminfo(text):
    """(used bytes, total bytes) from /proc/meminfo; None when unreadable."""
    values = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    if "MemTotal" not in values or "MemAvailable" not in values:
        return None
    return values["MemTotal"] - values["MemAvailable"], values["MemTotal"]


def unit_cgroup_path(unit):
    """The unit's cgroup path from systemd, or None (no systemctl, unit not running)."""
    try:
        result = subprocess.run(
            ["systemctl", "show", "-p", "ControlGroup", "--value", unit],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    path = result.stdout.strip()
    return path if result.returncode == 0 and path else None


def psql_command(psql_user=None, dsn=None):
    """argv that prints '<connections>|<active>' for the connection sampling query."""
    query = ["psql", "-X", "-A", "-t", "-c", PG_CONNECTIONS_SQL]
    if dsn:
        return [*query[:1], dsn, *query[1:]]
    if psql_user and os.geteuid() == 0:
        return ["runuser", "-u", psql_user, "--", *query]
    return query


def parse_pg_counts(output):
    """'12|3' -> (12, 3); anything else -> (None, None)."""
    parts = (output or "").strip().split("|")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None, None


# kombu's Redis transport keeps a queue's messages of priority step 0 under the
# queue's name and those of steps 3, 6 and 9 under name + "\x06\x16" + step;
# delivered but unacknowledged ones in the hash "unacked".
REDIS_PRIORITY_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)
REDIS_UNACKED = "unacked"


def redis_settings(config_text):
    """(port, password) from a redis.conf: the first `port` and `requirepass`
    lines (port 6379, no password when absent)."""
    port, password = 6379, None
    for line in config_text.splitlines():
        words = line.split(None, 1)
        if len(words) != 2 or words[0].startswith("#"):
            continue
        key, value = words[0].lower(), words[1].strip().strip('"')
        if key == "port":
            port = int(value)
        elif key == "requirepass":
            password = value
    return port, password


def resp_command(*words):
    """One Redis command in RESP, the protocol's request form."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode() if isinstance(word, str) else word
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def resp_replies(data, count):
    """The first `count` simple replies of a RESP stream (+OK, -ERR ..., :int) as
    str or int; a reply not yet complete ends the list early."""
    replies = []
    for line in data.split(b"\r\n"):
        if len(replies) == count or not line:
            break
        kind, rest = line[:1], line[1:].decode(errors="replace")
        replies.append(int(rest) if kind == b":" else (rest if kind == b"+" else f"-{rest}"))
    return replies


def redis_queue_counts(port, password, queue, timeout=1.0, host="127.0.0.1"):
    """(messages waiting in `queue`, messages unacknowledged) from the Redis on
    this host; (None, None) and the reason when it cannot be asked."""
    keys = [queue] + [f"{queue}{REDIS_PRIORITY_SEP}{step}" for step in REDIS_PRIORITY_STEPS]
    commands = ([resp_command("AUTH", password)] if password else []) + [
        resp_command("LLEN", key) for key in keys
    ]
    commands.append(resp_command("HLEN", REDIS_UNACKED))
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"".join(commands))
            data = b""
            while data.count(b"\r\n") < len(commands):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return (None, None), str(exc)
    replies = resp_replies(data, len(commands))
    errors = [r for r in replies if isinstance(r, str) and r.startswith("-")]
    if errors or len(replies) < len(commands):
        return (None, None), errors[0][1:] if errors else "no complete reply"
    counts = replies[1:] if password else replies
    return (sum(counts[: len(keys)]), counts[len(keys)]), None


def process_program_names(cmdline):
    """The names a process runs as: argv[0], and argv[1] when argv[0] is an interpreter."""
    argv = [a for a in cmdline.split("\0") if a]
    return {os.path.basename(a) for a in argv[:2] if not a.startswith("-")}


def process_cpu_ticks(stat_text):
    """utime + stime from /proc/<pid>/stat (the comm field may contain spaces)."""
    fields = stat_text.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


class ProcessLedger:
    """A cumulative CPU counter of a changing set of processes, from /proc: each
    process's own utime + stime, counted by its increase since the last read,
    and whole for a process new since then. A process that exits takes nothing
    away; what it used after the last read is lost with it (at most one
    interval of its CPU). (A sum of the living processes' times, their reaped children's
    included, fell when a worker exited, since cgroup.procs no longer lists a
    zombie, and came back only when its parent reaped it: around a server's
    reload the rate swung by tens of CPUs between two rows.)"""

    def __init__(self):
        self.seen = {}
        self.ticks = 0

    def usec(self, pids, proc="/proc"):
        now = {}
        for pid in pids:
            try:
                now[pid] = process_cpu_ticks(_read(Path(proc) / str(pid) / "stat"))
            except (AttributeError, IndexError, ValueError):
                continue  # it exited while we read
        for pid, ticks in now.items():
            before = self.seen.get(pid)
            # a pid used again by a new process starts below the old one's count
            self.ticks += ticks - before if before is not None and ticks >= before else ticks
        self.seen = now
        return self.ticks * 1_000_000 // CLOCK_TICKS


def all_pids(proc="/proc"):
    return [int(entry.name) for entry in Path(proc).iterdir() if entry.name.isdigit()]


def in_container(proc="/proc"):
    """True in a container (podman, docker, nspawn, lxc), where /proc/stat is the machine's."""
    if Path("/run/.containerenv").exists() or Path("/.dockerenv").exists():
        return True
    environ = _read(Path(proc) / "1" / "environ") or ""
    return any(item.startswith("container=") for item in environ.split("\0"))


def scan_processes(name, proc="/proc"):
    """{pid: cpu ticks} of processes whose program is `name`, except this one."""
    found = {}
    own = os.getpid()
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        cmdline = _read(entry / "cmdline")
        if not cmdline or name not in process_program_names(cmdline):
            continue
        stat = _read(entry / "stat")
        try:
            found[int(entry.name)] = process_cpu_ticks(stat)
        except (AttributeError, IndexError, ValueError):
            continue
    return found


def _rate(new, old, seconds):
    if new is None or old is None or seconds <= 0:
        return None
    return max(new - old, 0) / seconds


def _fmt(value, digits=3):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class Sampler:
    def __init__(self, args, cgroups=None, proc="/proc", container=None):
        self.args = args
        self.cgroups = cgroups or Cgroups()
        self.proc = Path(proc)
        self.container = in_container(proc) if container is None else container
        self.unit_path = None
        self.pg_warned = False
        self.redis_warned = False
        self.redis = None
        if getattr(args, "redis_config", None):
            self.redis = redis_settings(_read(args.redis_config) or "")
        self.started = time.time()
        self.unit_ledger, self.node_ledger = ProcessLedger(), ProcessLedger()

    def _unit_cgroup(self):
        # looked up until found: the unit may (re)start while we sample
        if self.args.unit and self.unit_path is None:
            self.unit_path = unit_cgroup_path(self.args.unit)
        return self.unit_path

    def _cpu_limit(self):
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        quota = self.cgroups.cpu_quota_cores("") or getattr(self.args, "cpus", None)
        return min(cores, quota) if quota else float(cores)

    def _pg_counts(self):
        if not (self.args.pg_psql_user or self.args.pg_dsn):
            return None, None
        command = psql_command(self.args.pg_psql_user, self.args.pg_dsn)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                cwd="/",
                timeout=max(1.0, min(self.args.interval, 5.0)),
                check=False,
            )
            output, error = result.stdout, result.stderr
        except (OSError, subprocess.SubprocessError) as exc:
            output, error = "", str(exc)
        counts = parse_pg_counts(output)
        if counts[0] is None and not self.pg_warned:
            print(f"sampler: cannot count PostgreSQL connections: {error.strip()}", file=sys.stderr)
            self.pg_warned = True
        return counts

    def _broker_counts(self):
        if self.redis is None:
            return None, None
        counts, error = redis_queue_counts(*self.redis, self.args.redis_queue)
        if error and not self.redis_warned:
            print(f"sampler: cannot count the broker's queue: {error}", file=sys.stderr)
            self.redis_warned = True
        return counts

    def read(self):
        """Raw counters now; rows are made from two of these."""
        unit_path = self._unit_cgroup()
        unit_cpu = self.cgroups.cpu(unit_path) if unit_path else {}
        if unit_path:
            unit_cpu["source"] = "cgroup"
            if unit_cpu["usage_usec"] is None:
                pids = self.cgroups.pids(unit_path)
                if pids:
                    unit_cpu["usage_usec"] = self.unit_ledger.usec(pids, self.proc)
                    unit_cpu["source"] = "procfs"
                else:
                    unit_cpu["source"] = None
        unit_mem = self.cgroups.memory(unit_path)[0] if unit_path else None
        node_usage, node_source = self.cgroups.cpu("")["usage_usec"], "cgroup"
        if node_usage is None and self.container:
            node_usage = self.node_ledger.usec(all_pids(self.proc), self.proc)
            node_source = "procfs"
        used, limit = self.cgroups.memory("")
        meminfo = parse_meminfo(_read(self.proc / "meminfo"))
        proc_stat = _read(self.proc / "stat")
        if used is None and meminfo:
            used = meminfo[0]
        if meminfo:
            limit = min(limit, meminfo[1]) if limit else meminfo[1]
        return {
            "time": time.time(),
            "mono": time.monotonic(),
            "node_usage_usec": node_usage,
            "node_source": node_source,
            "proc_stat": parse_proc_stat(proc_stat),
            "proc_stat_cpus": proc_stat_cpus(proc_stat),
            "mem_used": used,
            "mem_limit": limit,
            "unit_cpu": unit_cpu,
            "unit_mem": unit_mem,
            "procs": scan_processes(self.args.proc_name, self.proc)
            if self.args.proc_name
            else None,
        }

    def row(self, old, new):
        seconds = new["mono"] - old["mono"]
        limit = self._cpu_limit()
        procstat = None
        if old["proc_stat"] and new["proc_stat"]:
            procstat = _rate(new["proc_stat"][0], old["proc_stat"][0], seconds * CLOCK_TICKS)
        busy = _rate(new["node_usage_usec"], old["node_usage_usec"], seconds * 1e6)
        source = new["node_source"] if busy is not None else "procstat"
        if busy is None:
            busy = procstat
        unit_cpu = new["unit_cpu"]
        unit_cores = _rate(
            unit_cpu.get("usage_usec"), old["unit_cpu"].get("usage_usec"), seconds * 1e6
        )
        pg_connections, pg_active = self._pg_counts()
        broker_queued, broker_unacked = self._broker_counts()
        proc_count = proc_cores = proc_max = None
        if new["procs"] is not None:
            # a process seen for the first time has no interval to measure yet
            per_process = [
                _rate(ticks, old["procs"].get(pid), seconds * CLOCK_TICKS) or 0.0
                for pid, ticks in new["procs"].items()
            ]
            proc_count = len(per_process)
            proc_cores = sum(per_process)
            proc_max = max(per_process, default=0.0)
        values = {
            "time": _fmt(new["time"]),
            "elapsed_s": _fmt(new["time"] - self.started),
            "cpu_limit_cores": _fmt(limit),
            "cpu_busy_cores": _fmt(busy),
            "cpu_percent": _fmt(100 * busy / limit if busy is not None else None, 1),
            "cpu_source": source if busy is not None else "",
            "procstat_cpus": _fmt(new["proc_stat_cpus"]),
            "procstat_busy_cores": _fmt(procstat),
            "mem_used_mb": _fmt(new["mem_used"] / MB if new["mem_used"] is not None else None, 1),
            "mem_limit_mb": _fmt(
                new["mem_limit"] / MB if new["mem_limit"] is not None else None, 1
            ),
            "unit_cpu_usage_usec": _fmt(unit_cpu.get("usage_usec")),
            "unit_cpu_cores": _fmt(unit_cores),
            "unit_cpu_source": unit_cpu.get("source") or "",
            "unit_nr_periods": _fmt(unit_cpu.get("nr_periods")),
            "unit_nr_throttled": _fmt(unit_cpu.get("nr_throttled")),
            "unit_throttled_usec": _fmt(unit_cpu.get("throttled_usec")),
            "unit_mem_mb": _fmt(new["unit_mem"] / MB if new["unit_mem"] is not None else None, 1),
            "pg_connections": _fmt(pg_connections),
            "pg_active": _fmt(pg_active),
            "broker_queued": _fmt(broker_queued),
            "broker_unacked": _fmt(broker_unacked),
            "proc_count": _fmt(proc_count),
            "proc_cpu_cores": _fmt(proc_cores),
            "proc_max_cores": _fmt(proc_max),
        }
        return values

    def run(self, out, stop):
        """Write one row per interval until duration has passed or `stop` is set.

        Rows fall on a fixed grid (start + k * interval, the last one at the
        deadline) so slow reads do not make the intervals drift; a tick missed
        while reading is skipped rather than caught up with a burst of rows.
        """
        previous = self.read()
        start = time.monotonic()
        deadline = start + self.args.duration
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        out.flush()
        rows = tick = 0
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            tick = max(tick + 1, math.floor((now - start) / self.args.interval) + 1)
            if stop.wait(min(start + tick * self.args.interval, deadline) - now):
                break
            current = self.read()
            writer.writerow(self.row(previous, current))
            out.flush()
            previous = current
            rows += 1
        return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Sample this host's CPU, memory, cgroup throttling and PostgreSQL "
        "connections into a CSV, one row per interval, for a bounded time."
    )
    parser.add_argument("--duration", type=float, required=True, help="seconds to sample")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rows")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--unit", help="systemd unit whose cgroup CPU and throttling to record")
    pg = parser.add_mutually_exclusive_group()
    pg.add_argument("--pg-psql-user", help="count connections with psql run as this local user")
    pg.add_argument("--pg-dsn", help="count connections with psql connecting to this DSN")
    parser.add_argument(
        "--redis-config",
        help="count the Celery queue of the Redis on this host (its port and password from "
        "this redis.conf)",
    )
    parser.add_argument(
        "--redis-queue", default="celery", help="the Celery queue's name (default celery)"
    )
    parser.add_argument(
        "--proc-name", help="record CPU of processes running this program (e.g. locust)"
    )
    parser.add_argument(
        "--cpus",
        type=float,
        help="CPUs this host was given (node_cpus); its CPU limit when no cgroup quota is readable",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.interval <= 0:
        parser.error("--duration and --interval must be > 0")
    if args.cpus is not None and args.cpus <= 0:
        parser.error("--cpus must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    stop = threading.Event()

    def request_stop(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as out:
        rows = Sampler(args).run(out, stop)
    print(f"sampler: wrote {rows} rows to {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
