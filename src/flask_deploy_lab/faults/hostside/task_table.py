#!/usr/bin/env python3
"""Read the app's ``task`` table on the db host (as the postgres user, with psql).

    task_table.py wait --db labapp --since 1795274600 --until 1795274700 --deadline 1795274760

``wait``: the tasks created in [``--since``, ``--until``) (Unix times, the
db host's clock), read every ``--gap`` seconds until none of them is
``queued`` or ``running`` any more, or until ``--deadline`` (a Unix time, at
most MAX_WAIT_S from now). Prints ``{"rows": [[id, status, attempts,
created, started, finished, error], ...], "pending": n, "read_at": t}``:
the times are Unix seconds (null when not set), ``pending`` how many were
still queued or running at the last read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time

MAX_WAIT_S = 600
PENDING = ("queued", "running")
COLUMNS = (
    "id::text, status, attempts, extract(epoch FROM created_at), "
    "extract(epoch FROM started_at), extract(epoch FROM finished_at), coalesce(error, '')"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    wait = commands.add_parser("wait")
    wait.add_argument("--db", required=True)
    wait.add_argument("--since", type=float, required=True)
    wait.add_argument("--until", type=float, required=True)
    wait.add_argument("--deadline", type=float, required=True)
    wait.add_argument("--gap", type=float, default=1.0, help="seconds between two reads")
    wait.add_argument("--psql", default="runuser -u postgres -- psql", help="the psql command")
    args = parser.parse_args(argv)
    if args.deadline - time.time() > MAX_WAIT_S:
        parser.error(f"--deadline must be at most {MAX_WAIT_S} s from now")
    if not 0 < args.gap <= 10:
        parser.error("--gap must be in (0, 10] seconds")
    return args


def query(args, sql):
    """The rows of a COPY ... TO STDOUT (csv) of `sql`."""
    command = [*args.psql.split(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", args.db, "-c",
               f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"psql failed ({out.returncode}): {' '.join(out.stderr.split())[:300]}")
    return list(csv.reader(io.StringIO(out.stdout)))


def number(text, kind=float):
    return kind(float(text)) if text not in ("", None) else None


def task_rows(rows):
    """[id, status, attempts, created, started, finished, error] with numbers as numbers."""
    return [
        [r[0], r[1], number(r[2], int), number(r[3]), number(r[4]), number(r[5]), r[6]]
        for r in rows
        if len(r) >= 7
    ]


def pending(rows):
    return sum(1 for r in rows if r[1] in PENDING)


def window_sql(since, until):
    """The rows created in [since, until): two floats, formatted as numbers."""
    # no text goes in, only two numbers
    where = f"created_at >= to_timestamp({since:.6f}) AND created_at < to_timestamp({until:.6f})"
    return f"SELECT {COLUMNS} FROM task WHERE {where} ORDER BY created_at"  # noqa: S608


def run(args, read=query):
    while True:
        rows = task_rows(read(args, window_sql(args.since, args.until)))
        read_at = time.time()
        if not pending(rows) or read_at >= args.deadline:
            return {"rows": rows, "pending": pending(rows), "read_at": round(read_at, 3)}
        time.sleep(min(args.gap, max(0.0, args.deadline - read_at)))


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
