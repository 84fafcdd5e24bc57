"""What a request costs the app alone: the WSGI application called in-process.

    python -m labapp.cost --endpoint /db [--endpoint '/queries?n=20'] [--requests N] [--warmup W]

No server and no socket: the app is the one every threaded and process server
loads (``labapp.wsgi``: ``create_app()`` configured from the ``LABAPP_*``
environment, the same database and upstream), and each request is one call of
its WSGI callable with a WSGI environ (built once per endpoint by Werkzeug's
``EnvironBuilder``, copied for each call) whose body is read to the end and
closed, as a server would. For each endpoint, in the order given: W calls to
warm up (connections, caches, the pool), then N measured calls. Every
response must be a 200.

The CPU seconds are the process's (``time.process_time()``: user and system
time of every thread of the process, so work the app handed to a thread would
count too; for these endpoints it starts none), the wall seconds
``time.perf_counter()``'s, both over the N measured calls. PostgreSQL's own
work is its server's, not this process's, as it is not the app unit's either.

Prints one JSON object on one line::

    {"/db": {"requests": 2000, "cpu_s_per_request": 0.00041, "wall_s_per_request": 0.00062}}

Exit status: 0; 1 when the app cannot be built or a response is not a 200
(the message names the endpoint, the call, the status and the start of the
body); 2 for bad usage (an unknown option, N < 1, W < 0, an endpoint that is
not a path).

The load test runs it on the app hosts, as the app unit's user with the unit's
environment and limits, for the CPU ceiling of a CPU-bound cell: app CPUs /
CPU seconds per request (flask_deploy_lab.report).
"""

import argparse
import io
import json
import sys
import time

DEFAULT_REQUESTS = 2000
DEFAULT_WARMUP = 200
# How much of a failed response's body the error shows.
BODY_SHOWN = 300


class CallFailed(Exception):
    """A response that was not a 200; the message says which call and what came back."""


def environ_template(target):
    """The WSGI environ of GET <target> (a path with an optional query string)."""
    from werkzeug.test import EnvironBuilder

    path, _, query = target.partition("?")
    builder = EnvironBuilder(path=path, query_string=query, method="GET")
    try:
        return builder.get_environ()
    finally:
        builder.close()


def call(app, template):
    """One request: (status code, body) of the WSGI callable given a copy of the environ."""
    environ = dict(template)
    environ["wsgi.input"] = io.BytesIO()
    started = []

    def start_response(status, headers, exc_info=None):
        started[:] = [status]
        return _discard

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(started[0].split(" ", 1)[0]), body


def _discard(data):
    """The write() callable start_response returns (the app uses none)."""


def measure(app, target, requests=DEFAULT_REQUESTS, warmup=DEFAULT_WARMUP):
    """{"requests", "cpu_s_per_request", "wall_s_per_request"} of `requests` calls of
    GET <target> after `warmup` calls; CallFailed at the first response not a 200."""
    template = environ_template(target)
    for index in range(warmup):
        _checked(app, template, target, "warm-up", index, warmup)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for index in range(requests):
        _checked(app, template, target, "measured", index, requests)
    cpu_s = time.process_time() - cpu_started
    wall_s = time.perf_counter() - wall_started
    return {
        "requests": requests,
        "cpu_s_per_request": cpu_s / requests,
        "wall_s_per_request": wall_s / requests,
    }


def _checked(app, template, target, phase, index, count):
    status, body = call(app, template)
    if status != 200:
        shown = body[:BODY_SHOWN].decode("utf-8", "replace").strip()
        more = " ..." if len(body) > BODY_SHOWN else ""
        raise CallFailed(
            f"GET {target} answered {status}, not 200, in call {index + 1} of {count} "
            f"of the {phase}: {shown}{more}"
        )


def _count(minimum, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}; got {value}")
        return value

    return parse


def _target(text):
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a path (it must start with /)")
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m labapp.cost",
        description="CPU and wall seconds per request of the WSGI app called in-process "
        "(no server, no socket), as one JSON object.",
    )
    parser.add_argument(
        "--endpoint",
        dest="endpoints",
        action="append",
        required=True,
        type=_target,
        metavar="PATH",
        help="a path with its query string, e.g. /db or '/queries?n=20'; may be repeated",
    )
    parser.add_argument(
        "--requests",
        type=_count(1, "--requests"),
        default=DEFAULT_REQUESTS,
        metavar="N",
        help=f"measured calls per endpoint (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--warmup",
        type=_count(0, "--warmup"),
        default=DEFAULT_WARMUP,
        metavar="W",
        help=f"calls per endpoint before the measured ones (default {DEFAULT_WARMUP})",
    )
    args = parser.parse_args(argv)
    repeated = sorted({e for e in args.endpoints if args.endpoints.count(e) > 1})
    if repeated:
        parser.error(f"--endpoint {', '.join(repeated)} given more than once")
    return args


def main(argv=None):
    args = parse_args(argv)  # exits 2 on bad usage, before the app is built
    try:
        # the WSGI entry of the threaded and process servers, as they import it
        from labapp.wsgi import app
    except Exception as exc:  # the settings' ValueError, or anything the factory raises
        print(f"cost: the app could not be built: {exc}", file=sys.stderr)
        return 1
    results = {}
    try:
        for target in args.endpoints:
            results[target] = measure(app, target, args.requests, args.warmup)
    except CallFailed as exc:
        print(f"cost: {exc}", file=sys.stderr)
        return 1
    finally:
        app.extensions["labapp.db"].close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
