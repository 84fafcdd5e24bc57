#!/usr/bin/python3
"""Start, await and stop the Locust units of this host, one call per step of a run.

    locustctl start < master.env  # the master (if here) with these settings, then the workers
    locustctl wait --timeout 90   # on the master's host: wait for a headless run to end
    locustctl stop                # stop everything, check that no Locust process is left;
                                  # a master it stopped (the web UI's) leaves its files archived

Each prints one JSON object on stdout. The locust role installs it, with its
settings in /etc/locust/locustctl.json, so that Ansible spends one task per
step of a run instead of one per unit and file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

CONFIG = Path("/etc/locust/locustctl.json")
GAVE_UP = "Gave up waiting for workers to connect"
CONNECTED = re.compile(r"ready, (\d+) of \d+ connected")
# A worker the master lost: it quit, or stopped sending heartbeats.
WORKER_LOST = re.compile(r"Worker '?([^' ]+)'? (?:\(index \d+\) quit|failed to send heartbeat)")
RUN_TIME_REACHED = "--run-time limit reached"
STOP_GRACE_SECONDS = 15
ANY_UNIT = ("locust-master.service", "locust-worker@*.service")


def systemctl(*args, check=True):
    return subprocess.run(
        ["systemctl", *args], capture_output=True, text=True, check=check, timeout=60
    )


def is_active(unit):
    return systemctl("is-active", "--quiet", unit, check=False).returncode == 0


def processes(user):
    """'pid command' of every process of `user`."""
    found = subprocess.run(["pgrep", "-a", "-u", user], capture_output=True, text=True, check=False)
    return found.stdout.splitlines()


def start(config):
    master, workers = config["master_unit"], config["worker_units"]
    archive = Path(config["archive"])
    archive.unlink(missing_ok=True)
    if master:
        settings = sys.stdin.read()
        if not settings.strip():
            raise SystemExit("locustctl start: the master's settings are expected on stdin")
        env_file = Path(config["master_env"])
        partial = env_file.with_suffix(".new")
        partial.write_text(settings)
        partial.chmod(0o644)
        partial.replace(env_file)
        # before the workers: they connect to it
        systemctl("restart", master)
    if workers:
        systemctl("restart", *workers)
    return {"started": ([master] if master else []) + workers}


def lost_workers(log):
    """Workers that left before the run time was up, in the order they went.

    The master hands their users to the workers left and, as it runs with
    --reset-stats, restarts its statistics then: the CSVs cover only the part
    of the run after the loss. Workers quitting after the run time are the
    normal end of a run.
    """
    during_run = log.split(RUN_TIME_REACHED, 1)[0]
    return list(dict.fromkeys(WORKER_LOST.findall(during_run)))


def wait(config, timeout):
    master, run_dir = config["master_unit"], Path(config["run_dir"])
    if not master:
        raise SystemExit("locustctl wait: the master does not run on this host")
    started = time.monotonic()
    while is_active(master) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    ended = not is_active(master)
    status = systemctl("show", "--property", "ExecMainStatus", "--value", master, check=False)
    log_path = run_dir / "locust.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    counts = CONNECTED.findall(log)
    stats = (run_dir / "locust_stats.csv").is_file()
    archive = make_archive(config) if ended else None
    return {
        "ended": ended,
        "seconds": round(time.monotonic() - started, 1),
        "exit_status": status.stdout.strip(),
        "workers_gave_up": GAVE_UP in log,
        "workers_connected": int(counts[-1]) if counts else None,
        "workers_lost": lost_workers(log),
        "stats": stats,
        "archive": archive,
        "log_tail": log.splitlines()[-15:],
    }


def make_archive(config):
    """The run directory's files (statistics, reports, log) as one archive for
    the controller to fetch; its path, or None when there is no run directory."""
    run_dir, archive = Path(config["run_dir"]), Path(config["archive"])
    archive.unlink(missing_ok=True)
    if not run_dir.is_dir():
        return None
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(run_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return str(archive)


def stop(config):
    units = [u for u in [config["master_unit"], *config["worker_units"]] if u]
    was_running = [u for u in units if is_active(u)]
    # the target takes every unit bound to it along; the pattern, any loaded worker
    systemctl("stop", config["target"], *ANY_UNIT, check=False)
    # a run with failed requests exits non-zero; forget it
    systemctl("reset-failed", *ANY_UNIT, check=False)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    left = processes(config["user"])
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes(config["user"])
    # A master this stop ended (the web UI's; a headless one ends by itself
    # and `wait` archives it) wrote its files as it quit: keep them.
    master = config["master_unit"]
    archive = make_archive(config) if master and master in was_running else None
    return {"stopped": was_running, "left": left, "archive": archive}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start the master (settings on stdin) and the workers")
    waiting = commands.add_parser("wait", help="wait for the master's headless run to end")
    waiting.add_argument("--timeout", type=float, required=True, help="seconds at most")
    commands.add_parser("stop", help="stop every Locust unit of this host")
    args = parser.parse_args(argv)
    config = json.loads(CONFIG.read_text())
    if args.command == "start":
        result = start(config)
    elif args.command == "wait":
        result = wait(config, args.timeout)
    else:
        result = stop(config)
    print(json.dumps(result))
    return 1 if result.get("left") else 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
