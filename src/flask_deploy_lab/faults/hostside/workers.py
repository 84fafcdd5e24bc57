#!/usr/bin/env python3
"""Replace an app server's workers, on the app host, and time their replacement.

    workers.py kill-busiest --unit labapp-gunicorn.service --expected 3 --at 1795274641
    workers.py reload --unit labapp-gunicorn.service --expected 3 --at 1795274642
    workers.py kill-main --unit labapp-celery.service --at 1795274642

The workers are the children of the unit's MainPID. ``kill-busiest`` samples
their CPU time for ``--sample`` seconds from ``--at`` on, counts each one's
established connections on ``--port`` and sends SIGKILL to the one that holds
the most, of those the one that used the most CPU (``connections_seen``:
each worker's count then); ``reload`` runs ``systemctl reload`` of the unit at
``--at``. Then, every ``--gap`` seconds for at most ``--timeout`` seconds, it
looks for ``--expected`` workers again with none of the ones it replaced among
them. Prints one JSON object:

    {"main_pid": 812, "workers_before": [901, 902, 903], "victim": 902,
     "cpu_share_percent": 55, "victim_connections": 7,
     "connections_seen": {"901": 3, "902": 7, "903": 5}, "looks": 1,
     "busy_waited_s": 0.0, "at": 1795274642.01, "replaced_s": 0.3,
     "workers_after": [901, 903, 977]}

``victim_connections`` is how many established TCP connections the victim held
on the server's port (--port) at the SIGKILL: the victim is stopped (SIGSTOP),
counted, then killed, so that it accepts nothing in between (its socket
descriptors in /proc/<pid>/fd, read as the victim's owner where root may not
read them, found in state ESTABLISHED in /proc/net/tcp and tcp6, local port
--port: not its own connections to the database): a request the worker was
serving holds one, so it bounds the requests the kill can cut off (an idle
kept-alive connection from nginx counts too: an upper bound). It is null when
the victim's descriptors cannot be read. A kill of a worker that holds none
cuts nothing off and measures nothing: with ``--port``, a victim that holds no
connection once stopped is let go on (SIGCONT) and the workers looked at again
every 20 ms, for at most ``--busy-timeout`` seconds (``looks``: how many times
it looked; ``busy_waited_s``: from the first look to the kill's). A victim that
exited between its look and its stop (a server that recycles its workers) is
passed over, and the workers living then looked at again.
``replaced_s`` is null when they were not all replaced in time; ``victim``,
``cpu_share_percent``, ``victim_connections``, ``connections_seen``, ``looks``
and ``busy_waited_s`` are null for a reload.
``asked_at`` is when the kill or the reload was asked for, ``at`` when it had
been done (the reload command returned).

``kill-main`` sends SIGKILL to the unit's main process and its children at
once (a crash of the whole service, which systemd is to restart: a pool
process left alive would finish the task it holds, and nothing would be lost
to recover), then waits for a new MainPID:

    {"main_pid": 812, "workers_before": [901, 902], "victim": 812,
     "n_restarts_before": 0, "at": 1795274642.01, "main_pid_after": 1003,
     "restarted_s": 1.2, "n_restarts_after": 1, "workers_after": [1010, 1011],
     "busy_connections": 1, "busy_waited_s": 0.4}

With ``--busy-port``, it kills only once a child holds an established
connection to that remote port (a task in flight: the Celery task's call to
the slow upstream, a connection per call), looking every 20 ms from ``--at``
for at most ``--busy-timeout`` seconds; ``busy_connections`` counts them
with every process stopped (SIGSTOP) just before the SIGKILL, and
``busy_waited_s`` says how long it looked (null both without the option).

``restarted_s`` and ``main_pid_after`` are null when no new main process came
within ``--timeout`` seconds, or within ``--timeout`` + the unit's
TimeoutStopSec where systemd cannot see the unit's cgroup empty (then
``cgroup_empty_seen`` is false). systemd restarts a unit whose main process
died once the processes it killed have left the cgroup. It learns that at once
on cgroup v2, and on cgroup v1 outside a container. Inside a container on a
cgroup v1 or hybrid host it waits in ``stop-sigkill`` for TimeoutStopSec: the
container never gets the event. ``stop_timeout_s`` is that TimeoutStopSec, in
seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_WAIT_S = 600
MAX_TIMEOUT_S = 120
# seconds between two looks for a busy worker or child
BUSY_LOOK_S = 0.02
PROC = Path("/proc")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["kill-busiest", "reload", "kill-main"])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--expected", type=int, help="workers the unit runs")
    parser.add_argument(
        "--port", type=int, help="count only the victim's connections on this local port"
    )
    parser.add_argument("--at", type=float, help="Unix time to begin (default: now)")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds of CPU sampling")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for them")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two looks")
    parser.add_argument(
        "--busy-port", type=int,
        help="kill-main: wait until a child holds a connection to this remote port",
    )  # fmt: skip
    parser.add_argument(
        "--busy-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a busy child (kill-main) or worker (kill-busiest)",
    )
    args = parser.parse_args(argv)
    if args.action != "kill-main" and args.expected is None:
        parser.error(f"{args.action} needs --expected")
    if args.at is not None and args.at - time.time() > MAX_WAIT_S:
        parser.error(f"--at must be at most {MAX_WAIT_S} s from now")
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        parser.error(f"--timeout must be > 0 and <= {MAX_TIMEOUT_S}")
    if args.busy_port is not None and args.action != "kill-main":
        parser.error("--busy-port is kill-main's")
    if not 0 < args.busy_timeout <= MAX_TIMEOUT_S:
        parser.error(f"--busy-timeout must be > 0 and <= {MAX_TIMEOUT_S}")
    if not 0 < args.sample <= 10 or not 0 < args.gap <= 5:
        parser.error("--sample must be in (0, 10] and --gap in (0, 5] seconds")
    return args


def unit_property(unit, name):
    out = subprocess.run(
        ["systemctl", "show", f"--property={name}", "--value", unit],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    text = out.stdout.strip()
    return int(text) if text.isdigit() else 0


def main_pid(unit):
    return unit_property(unit, "MainPID")


TIMESPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def timespan_s(text):
    """Seconds of a systemd time span as `systemctl show` prints it ("1min 30s",
    "45s", "500ms"); None for "infinity" or an empty value."""
    total, parts = 0.0, text.split()
    if not parts or parts == ["infinity"]:
        return None
    for part in parts:
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = part[len(number) :] or "s"
        if unit not in TIMESPAN_UNITS or not number:
            raise ValueError(f"not a systemd time span: {text!r}")
        total += float(number) * TIMESPAN_UNITS[unit]
    return round(total, 6)


def stop_timeout_s(unit):
    out = subprocess.run(
        ["systemctl", "show", "--property=TimeoutStopUSec", "--value", unit],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return timespan_s(out.stdout.strip())


def cgroup_empty_seen(root=Path("/")):
    """Whether systemd here learns at once that a unit's cgroup has emptied: on
    cgroup v2 (/sys/fs/cgroup is a cgroup2 mount), or outside a container
    (/run/systemd/container, which systemd writes in one, is absent)."""
    in_container = (root / "run/systemd/container").exists()
    try:
        mounts = (root / "proc/self/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    unified = any(
        line.split()[1:3] == ["/sys/fs/cgroup", "cgroup2"] for line in mounts if line.strip()
    )
    return unified or not in_container


def stat_fields(text):
    """The fields of /proc/<pid>/stat after the command name, which may hold spaces."""
    return text.rpartition(") ")[2].split()


def children(parent, proc=PROC):
    """The living pids whose parent is `parent`, from /proc/<pid>/stat (a child
    that exited and is not yet reaped, state Z, is not one)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields((entry / "stat").read_text())
        except OSError:
            continue  # it ended meanwhile
        if len(fields) > 1 and fields[1] == str(parent) and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pids, proc=PROC):
    """{pid: user + system clock ticks used so far}; a pid that ended is left out."""
    ticks = {}
    for pid in pids:
        try:
            fields = stat_fields((proc / str(pid) / "stat").read_text())
        except OSError:
            continue
        if len(fields) > 12:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def busiest(before, after, pids, held=None):
    """(the victim, its share in % of the ticks the workers used between two samples).

    The victim is the worker holding the most established connections (`held`,
    {pid: count or None}: one whose count is unknown ranks below 0), then the one
    that used the most ticks: a kill of a worker that holds requests measures
    what a crash costs, one of an idle worker measures nothing."""
    used = {pid: after.get(pid, 0) - before.get(pid, 0) for pid in pids}
    held = held or {}

    def rank(pid):
        count = held.get(pid)
        return (-1 if count is None else count, used[pid])

    victim = max(pids, key=rank)
    return victim, round(100 * used[victim] / max(sum(used.values()), 1))


def _own_socket_inodes(pid, proc=PROC):
    """The inodes of the sockets a process holds open; None when its fds cannot be
    listed; PermissionError when their targets may not be read (another user's
    process, and no CAP_SYS_PTRACE: root in a container)."""
    try:
        entries = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return None
    inodes = set()
    for entry in entries:
        try:
            target = os.readlink(entry)
        except PermissionError:
            raise
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def socket_inodes(pid, proc=PROC):
    """The inodes of the sockets a process holds open; None when its fds cannot be
    read. Root without CAP_SYS_PTRACE (in a lab container) may not read another
    user's fds: a child that becomes the process's owner reads them."""
    try:
        return _own_socket_inodes(pid, proc)
    except PermissionError:
        if os.geteuid() != 0:
            return None
    try:
        owner = (proc / str(pid)).stat()
    except OSError:
        return None
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child exits without returning
        try:
            os.close(read_end)
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
            inodes = _own_socket_inodes(pid, proc)
            os.write(write_end, json.dumps(None if inodes is None else sorted(inodes)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    try:
        inodes = json.loads(data) if data else None
    except ValueError:
        return None
    return None if inodes is None else set(inodes)


# /proc/net/tcp's state of an established connection
TCP_ESTABLISHED = "01"


def established(inodes, proc=PROC, port=None, remote_port=None):
    """How many of these socket inodes are established TCP connections (with
    `port`: only those whose local port it is, the connections the process
    accepted on the server's port, not its own to the database or upstream;
    with `remote_port`: only those to that port, the process's own calls)."""
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) <= 9 or fields[3] != TCP_ESTABLISHED or fields[9] not in inodes:
                continue
            if port is not None and int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            if remote_port is not None and int(fields[2].rsplit(":", 1)[1], 16) != remote_port:
                continue
            count += 1
    return count


def connections(pid, proc=PROC, port=None, remote_port=None):
    """The established TCP connections of a process (on local `port`, to
    `remote_port`, when given), or None when unreadable."""
    inodes = socket_inodes(pid, proc)
    return None if inodes is None else established(inodes, proc, port, remote_port)


def busy_connections(pids, remote_port, proc=PROC):
    """Their established connections to `remote_port`, all together (the
    unreadable ones count 0)."""
    return sum(connections(pid, proc, remote_port=remote_port) or 0 for pid in pids)


def wait_busy(master, args, proc=PROC):
    """Seconds until a child of `master` holds a connection to --busy-port (at
    most --busy-timeout)."""
    started = time.time()
    while time.time() < started + args.busy_timeout:
        if busy_connections(children(master, proc), args.busy_port, proc):
            break
        time.sleep(BUSY_LOOK_S)
    return round(time.time() - started, 2)


def replaced(now, gone, expected):
    return len(now) == expected and not set(now) & set(gone)


def kill_main(args, proc=PROC):
    """SIGKILL of the unit's main process; the wait for systemd's new one."""
    master = main_pid(args.unit)
    if not master:
        raise SystemExit(f"{args.unit} has no MainPID: is it running?")
    workers = children(master, proc)
    restarts = unit_property(args.unit, "NRestarts")
    seen, stop_timeout = cgroup_empty_seen(), stop_timeout_s(args.unit)
    # at most MAX_TIMEOUT_S more: the controller waits for this script ~3 min
    wait = args.timeout + (0 if seen or stop_timeout is None else min(stop_timeout, MAX_TIMEOUT_S))
    waited = wait_busy(master, args, proc) if args.busy_port else None
    asked = time.time()
    # stopped first, so that no child finishes its task between the count and the kill
    victims = [master, *children(master, proc)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    busy = busy_connections(victims[1:], args.busy_port, proc) if args.busy_port else None
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    at = time.time()
    restarted_s = after = None
    while time.time() < at + wait:
        now = main_pid(args.unit)
        if now and now != master:
            restarted_s, after = round(time.time() - at, 1), now
            break
        time.sleep(args.gap)
    return {
        "main_pid": master,
        "workers_before": workers,
        "victim": master,
        "n_restarts_before": restarts,
        "asked_at": round(asked, 3),
        "at": round(at, 3),
        "main_pid_after": after,
        "restarted_s": restarted_s,
        "n_restarts_after": unit_property(args.unit, "NRestarts"),
        "workers_after": children(after, proc) if after else [],
        "cgroup_empty_seen": seen,
        "stop_timeout_s": stop_timeout,
        "busy_connections": busy,
        "busy_waited_s": waited,
    }


def process_state(pid, proc=PROC):
    """R, S, T (stopped), Z (exited, not reaped)...; None once it is gone."""
    try:
        return stat_fields((proc / str(pid) / "stat").read_text())[0]
    except (OSError, IndexError):
        return None


def wait_stopped(pid, proc=PROC, timeout=0.1):
    """Until the kernel shows the process stopped (state T): SIGSTOP takes effect
    once the process is next scheduled, not when kill() returns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = process_state(pid, proc)
        if state in ("T", "t"):
            return True
        if state in (None, "Z"):
            return False
        time.sleep(0.001)
    return False


def stop_and_count(pid, proc=PROC, port=None):
    """Stop a worker (SIGSTOP) and count its established connections on `port`: the
    requests a kill would cut off. Stopped, it accepts and ends nothing between the
    count and the kill; counted running, the connections swung (2 and 8 held by
    gunicorn-gthread's workers, 0 by the one stopped a moment later; 0 and 0 by
    uWSGI's, 6 by the one stopped), as the count itself takes milliseconds at
    1,000 requests a second. Left stopped: the caller kills or continues it.
    ProcessLookupError when the worker has exited (gone, or a zombie its master
    has not reaped yet) since it was looked at."""
    os.kill(pid, signal.SIGSTOP)
    try:
        if not wait_stopped(pid, proc) and process_state(pid, proc) in (None, "Z"):
            raise ProcessLookupError(f"worker {pid} exited")
        return connections(pid, proc, port)
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise


def run(args, proc=PROC):
    if args.at is not None:
        time.sleep(max(0.0, args.at - time.time()))
    if args.action == "kill-main":
        return kill_main(args, proc)
    master = main_pid(args.unit)
    if not master:
        raise SystemExit(f"{args.unit} has no MainPID: is it running?")
    workers = children(master, proc)
    if not workers:
        raise SystemExit(f"{args.unit} (MainPID {master}) has no worker processes")
    victim = share = held = seen = None
    looks = waited = None
    if args.action == "kill-busiest":
        before = cpu_ticks(workers, proc)
        time.sleep(args.sample)
        after = cpu_ticks(workers, proc)
        started, looks = time.time(), 0
        while True:
            looks += 1
            # the workers now: one may have exited (a server recycling them)
            living = children(master, proc) or workers
            seen = {pid: connections(pid, proc, args.port) for pid in living}
            victim, share = busiest(before, after, living, seen)
            asked = time.time()
            try:
                held = stop_and_count(victim, proc, args.port)
            except ProcessLookupError:
                if asked >= started + args.busy_timeout + args.timeout:
                    raise SystemExit(f"{args.unit}: every worker looked at had exited") from None
                time.sleep(BUSY_LOOK_S)
                continue  # it exited since the look: look again
            if held != 0 or args.port is None or asked >= started + args.busy_timeout:
                break
            # it held none once stopped: a kill would cut nothing off
            os.kill(victim, signal.SIGCONT)
            time.sleep(BUSY_LOOK_S)
        waited = round(asked - started, 3)
        os.kill(victim, signal.SIGKILL)
        gone = [victim]
    else:
        asked = time.time()
        subprocess.run(["systemctl", "reload", args.unit], check=True, timeout=60)
        gone = workers
    at = time.time()
    replaced_s, now = None, children(master, proc)
    while time.time() < at + args.timeout:
        now = children(master, proc)
        if replaced(now, gone, args.expected):
            # from the ask: a reload command may return only once it is done
            replaced_s = round(time.time() - asked, 1)
            break
        time.sleep(args.gap)
    return {
        "main_pid": master,
        "workers_before": workers,
        "victim": victim,
        "cpu_share_percent": share,
        "victim_connections": held,
        "connections_seen": {str(pid): count for pid, count in seen.items()} if seen else None,
        "looks": looks,
        "busy_waited_s": waited,
        "asked_at": round(asked, 3),
        "at": round(at, 3),
        "replaced_s": replaced_s,
        "workers_after": now,
    }


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
