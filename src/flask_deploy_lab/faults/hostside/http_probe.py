#!/usr/bin/env python3
"""Ask a URL `count` times, `gap` seconds apart, and print one line per answer.

    http_probe.py http://10.0.10.31/db 250 0.1 --at 1795274634.5

Each line is ``<unix time> <status> <Retry-After or ->``; status 0 is no HTTP
answer at all (then the third field names the error). With ``--body`` a fourth
field says what the body was: ``json-error`` (a JSON object with an
``error``), ``json`` (other JSON), ``other`` (not JSON) or ``-`` (none). With ``--at`` it waits
until that Unix time before the first request. It stops after ``count``
requests or ``--max-seconds`` (default: count x gap + 30 s), whichever comes
first; the count, the wait and the time are capped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

MAX_COUNT = 2000
MAX_SECONDS = 600
# One request's own limit: a stalled answer delays the next one this much at most.
REQUEST_TIMEOUT_S = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("gap", type=float, help="seconds between two requests")
    parser.add_argument("--at", type=float, help="Unix time of the first request")
    parser.add_argument("--max-seconds", type=float, help="seconds in all, from --at")
    parser.add_argument("--body", action="store_true", help="say what each body was")
    args = parser.parse_args(argv)
    if not args.url.startswith("http://"):
        parser.error(f"url must be http://..., got {args.url}")
    if not 0 < args.count <= MAX_COUNT:
        parser.error(f"count must be 1..{MAX_COUNT}")
    if args.gap < 0:
        parser.error("gap must be >= 0")
    if args.at is not None and args.at - time.time() > MAX_SECONDS:
        parser.error(f"--at must be at most {MAX_SECONDS} s from now")
    if args.max_seconds is None:
        args.max_seconds = min(args.count * args.gap + 30, MAX_SECONDS)
    if not 0 < args.max_seconds <= MAX_SECONDS:
        parser.error(f"--max-seconds must be > 0 and <= {MAX_SECONDS}")
    return args


def body_kind(data: bytes) -> str:
    """json-error, json, other or - (no body)."""
    if not data:
        return "-"
    try:
        found = json.loads(data)
    except ValueError:
        return "other"
    return "json-error" if isinstance(found, dict) and "error" in found else "json"


def ask(url):
    """(status, Retry-After or '-', the body's kind); status 0 and the error's name
    without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 - http only, checked
            retry = response.headers.get("Retry-After") or "-"
            return response.status, retry, body_kind(response.read())
    except urllib.error.HTTPError as error:
        retry = error.headers.get("Retry-After") or "-"
        try:
            data = error.read()
        except OSError:
            data = b""
        return error.code, retry, body_kind(data)
    except OSError as error:
        return 0, type(error).__name__, "-"


def run(args, out=sys.stdout):
    if args.at is not None:
        time.sleep(max(0.0, args.at - time.time()))
    deadline = time.monotonic() + args.max_seconds
    for _ in range(args.count):
        if time.monotonic() >= deadline:
            break
        status, retry, kind = ask(args.url)
        extra = f" {kind}" if args.body else ""
        print(f"{time.time():.3f} {status} {retry}{extra}", file=out, flush=True)
        time.sleep(args.gap)


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
