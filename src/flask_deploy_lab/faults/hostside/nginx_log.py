#!/usr/bin/env python3
"""Read nginx's logs on the proxy host, so that counts travel instead of the logs.

    nginx_log.py lines /var/log/nginx/access.log /var/log/nginx/error.log
    nginx_log.py answered /var/log/nginx/access.log --after 81234 --path /slow
    nginx_log.py upstream-errors /var/log/nginx/error.log --after 212
    nginx_log.py retries /var/log/nginx/access.log --after 81234
    nginx_log.py upstreams /var/log/nginx/access.log --after 81234

``lines``: {log: its number of lines}, a mark to read from later.
``answered``: the 200s nginx logged for a path (query string aside) after line
``--after`` of its access log ("timed" format), counted per second:
{"<unix second>": count}. ``upstream-errors``: how many lines after line
``--after`` of its error log are about the upstream (each a request towards
the app that failed, and was retried or passed on). ``retries``: of the
access log's lines after ``--after``, those nginx sent to the app more than
once (its ``$upstream_addr`` lists more than one try, ``ua="a, b"``), with
what each try got (``$upstream_status``, ``us="502, 200"``) and what the
client got: {"requests": n, "retried": k, "retried_then_ok": j,
"tries": {"502, 200": j, ...}, "upstream_status_logged": bool}.
``upstreams``: of the access log's lines after ``--after``, per second and
per app host that answered (the last address of ``$upstream_addr``, its port
left out; "-" when nginx answered by itself), the requests and those of them
nginx answered 2xx: {"<unix second>": {"<address>": [requests, ok]}}.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from datetime import datetime
from itertools import islice
from pathlib import Path

# roles/nginx/templates/nginx.conf.j2, log_format timed: the time to the second,
# the request line, the status
ACCESS_LINE = re.compile(r'\[(\d+/\w+/\d+:\d+:\d+:\d+ [+-]\d{4})\] "(\S+) (\S+)[^"]*" (\d{3}) ')
# the upstream addresses tried ($upstream_addr, "a, b" for a retry) and what
# each try got ($upstream_status)
UPSTREAM_ADDR = re.compile(r' ua="([^"]*)"')
UPSTREAM_STATUS = re.compile(r' us="([^"]*)"')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lines = commands.add_parser("lines")
    lines.add_argument("logs", nargs="+", type=Path)
    answered = commands.add_parser("answered")
    answered.add_argument("log", type=Path)
    answered.add_argument("--after", type=int, required=True)
    answered.add_argument("--path", required=True)
    answered.add_argument("--status", default="200")
    upstream = commands.add_parser("upstream-errors")
    upstream.add_argument("log", type=Path)
    upstream.add_argument("--after", type=int, required=True)
    retries = commands.add_parser("retries")
    retries.add_argument("log", type=Path)
    retries.add_argument("--after", type=int, required=True)
    upstreams_ = commands.add_parser("upstreams")
    upstreams_.add_argument("log", type=Path)
    upstreams_.add_argument("--after", type=int, required=True)
    return parser.parse_args(argv)


def count_lines(path):
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def lines_after(path, after):
    with path.open(errors="replace") as handle:
        yield from islice(handle, after, None)


def answered(lines, path, status="200"):
    """{unix second: answers} of the lines for `path` with `status`."""
    seconds = Counter()
    for line in lines:
        match = ACCESS_LINE.search(line)
        if not match:
            continue
        stamp, _, target, code = match.groups()
        if code == status and target.split("?")[0] == path:
            moment = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
            seconds[int(moment)] += 1
    return {str(second): n for second, n in sorted(seconds.items())}


def upstream_errors(lines):
    return sum(1 for line in lines if "upstream" in line)


def tries(text):
    """The tries of one $upstream_addr or $upstream_status ("a, b : c": three)."""
    return [t.strip() for t in re.split(r"[,:](?=\s)", text) if t.strip()]


def retries(lines):
    """The requests nginx sent to the app more than once, and what the tries got."""
    found = {"requests": 0, "retried": 0, "retried_then_ok": 0, "tries": {}}
    logged = False
    for line in lines:
        access = ACCESS_LINE.search(line)
        if not access:
            continue
        found["requests"] += 1
        addr = UPSTREAM_ADDR.search(line)
        status = UPSTREAM_STATUS.search(line)
        logged = logged or status is not None
        if not addr or len(tries(addr.group(1))) < 2:
            continue
        found["retried"] += 1
        if access.group(4).startswith("2"):
            found["retried_then_ok"] += 1
        if status:
            key = ", ".join(tries(status.group(1)))
            found["tries"][key] = found["tries"].get(key, 0) + 1
    found["upstream_status_logged"] = logged
    return found


def answered_by(text):
    """The address (without its port) of the last try of a $upstream_addr; "-" for none."""
    found = tries(text)
    last = found[-1] if found else "-"
    if last.startswith("["):  # [v6]:port
        return last[1:].partition("]")[0]
    return last.rpartition(":")[0] if last.count(":") == 1 else last


def upstreams(lines):
    """{unix second: {address that answered: [requests, 2xx]}}."""
    found = {}
    for line in lines:
        access = ACCESS_LINE.search(line)
        if not access:
            continue
        stamp, _, _, code = access.groups()
        second = str(int(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()))
        addr = UPSTREAM_ADDR.search(line)
        host = answered_by(addr.group(1)) if addr else "-"
        counts = found.setdefault(second, {}).setdefault(host, [0, 0])
        counts[0] += 1
        counts[1] += code.startswith("2")
    return found


def run(args):
    if args.command == "lines":
        return {str(log): count_lines(log) for log in args.logs}
    if args.command == "answered":
        return answered(lines_after(args.log, args.after), args.path, args.status)
    if args.command == "retries":
        return retries(lines_after(args.log, args.after))
    if args.command == "upstreams":
        return upstreams(lines_after(args.log, args.after))
    return upstream_errors(lines_after(args.log, args.after))


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
