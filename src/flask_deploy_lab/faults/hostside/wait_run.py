#!/usr/bin/env python3
"""Wait, on the Locust master's host, until the measured run has all its users.

    wait_run.py --users 20 --since 1795274600.2 --timeout 20

Reads where the master writes its run (``run_dir`` of the locust role's
/etc/locust/locustctl.json) and, every half second, its
locust_stats_history.csv: the first ``Aggregated`` row with ``--users`` users
and a time at or after ``--since`` (rows of an earlier run are older) is the
start. The whole file, not its last rows: a wait that began late would take a
later row for the start (3 s late in a run, which put a fault's last window
past the end of the run). Prints ``{"started": <its Unix time, or null after --timeout s>}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

# What the locust role installs on every load generator (roles/locust: locustctl.json).
CONFIG = Path("/etc/locust/locustctl.json")
HISTORY = "locust_stats_history.csv"
POLL_S = 0.5
MAX_TIMEOUT_S = 600


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--since", type=float, required=True, help="Unix time the run was asked")
    parser.add_argument("--timeout", type=float, required=True, help="seconds to wait at most")
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= MAX_TIMEOUT_S:
        parser.error(f"--timeout must be > 0 and <= {MAX_TIMEOUT_S}")
    return args


def read_rows(path):
    """A CSV file's rows as lists of fields; [] while it is missing."""
    try:
        with path.open(newline="", errors="replace") as handle:
            return list(csv.reader(handle))
    except OSError:
        return []


def started(rows, users, since):
    """The time of the first Aggregated row at full strength, at or after `since`."""
    for row in rows:
        if len(row) < 4 or row[3] != "Aggregated" or row[1] != str(users):
            continue
        try:
            moment = float(row[0])
        except ValueError:
            continue
        if moment >= since:
            return moment
    return None


def history_path(config):
    try:
        return Path(json.loads(config.read_text())["run_dir"]) / HISTORY
    except (OSError, ValueError, KeyError):
        return None


def run(args):
    deadline = time.monotonic() + args.timeout
    while True:
        path = history_path(args.config)
        found = started(read_rows(path), args.users, args.since) if path else None
        if found is not None or time.monotonic() >= deadline:
            return {"started": found}
        time.sleep(POLL_S)


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
