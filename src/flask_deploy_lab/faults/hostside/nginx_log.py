#!/usr/bin/env python3
"""Read nginx's logs on the proxy host, so that counts travel instead of the logs.

    nginx_log.py lines /var/log/nginx/access.log /var/log/nginx/error.log
    nginx_log.py answered /var/log/nginx/access.log --after 81234 --path /slow
    nginx_log.py upstream-errors /var/log/nginx/error.log --after 212

``lines``: {log: its number of lines}, a mark to read from later.
``answered``: the 200s nginx logged for a path (query string aside) after line
``--after`` of its access log ("timed" format), counted per second:
{"<unix second>": count}. ``upstream-errors``: how many lines after line
``--after`` of its error log are about the upstream (each a request towards
the app that failed, and was retried or passed on).
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


def run(args):
    if args.command == "lines":
        return {str(log): count_lines(log) for log in args.logs}
    if args.command == "answered":
        return answered(lines_after(args.log, args.after), args.path, args.status)
    return upstream_errors(lines_after(args.log, args.after))


def main(argv=None):
    print(json.dumps(run(parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
