#!/usr/bin/env python3
"""Stop a unit for a few seconds, start it again, and time when it is ready.

    outage.py --unit postgresql@15-main.service --at 1795274642 --down 5 -- pg_isready -q

At ``--at`` (a Unix time) ``systemctl stop`` of the unit; ``--down`` seconds
later ``systemctl start --no-block``, then the ready command (after ``--``)
every 0.1 s until it succeeds, for at most ``--ready-timeout`` seconds; then
``systemctl start`` once more to await the start job. Once the stop has been
asked for, the start is always asked for too, also on SIGTERM or an error.
Prints one JSON object, times on this host's clock:

    {"stopping_at": 1795274642.0, "down_at": 1795274642.03, "starting_at": 1795274647.03,
     "ready_at": 1795274647.9}

``stopping_at`` is when the stop was asked for, ``down_at`` when it had
stopped (``systemctl stop`` returned); ``ready_at`` is null when the ready
command never succeeded in time.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time

MAX_WAIT_S = 600
MAX_DOWN_S = 60
MAX_READY_TIMEOUT_S = 300
READY_POLL_S = 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--at", type=float, help="Unix time of the stop (default: now)")
    parser.add_argument("--down", type=float, required=True, help="seconds stopped")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("ready", nargs="+", help="the command that succeeds once it is ready")
    args = parser.parse_args(argv)
    if args.at is not None and args.at - time.time() > MAX_WAIT_S:
        parser.error(f"--at must be at most {MAX_WAIT_S} s from now")
    if not 0 <= args.down <= MAX_DOWN_S:
        parser.error(f"--down must be 0..{MAX_DOWN_S} s")
    if not 0 < args.ready_timeout <= MAX_READY_TIMEOUT_S:
        parser.error(f"--ready-timeout must be > 0 and <= {MAX_READY_TIMEOUT_S}")
    return args


def systemctl(*args, timeout=120):
    subprocess.run(["systemctl", *args], check=True, timeout=timeout)


def ready(command):
    try:
        return subprocess.run(command, check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def run(args):
    def stopped_by_signal(signum, _frame):
        # SystemExit runs the finally below: the unit is started again
        raise SystemExit(f"outage.py ended by signal {signum}")

    signal.signal(signal.SIGTERM, stopped_by_signal)
    if args.at is not None:
        time.sleep(max(0.0, args.at - time.time()))
    stopping_at = time.time()
    systemctl("stop", args.unit)
    down_at = time.time()
    ready_at = None
    try:
        time.sleep(max(0.0, down_at + args.down - time.time()))
    finally:
        starting_at = time.time()
        systemctl("start", "--no-block", args.unit)
    deadline = time.monotonic() + args.ready_timeout
    while time.monotonic() < deadline:
        if ready(args.ready):
            ready_at = time.time()
            break
        time.sleep(READY_POLL_S)
    systemctl("start", args.unit)
    return {
        "stopping_at": round(stopping_at, 3),
        "down_at": round(down_at, 3),
        "starting_at": round(starting_at, 3),
        "ready_at": None if ready_at is None else round(ready_at, 3),
    }


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
