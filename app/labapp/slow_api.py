"""Stand-in for a slow third-party API: ``python -m labapp.slow_api --bind HOST:PORT``.

``GET /?delay=s`` answers after s seconds. Each waiting request is one
greenlet, so a single core holds thousands of them; no monkey-patching is
needed because nothing here blocks except ``gevent.sleep``.
"""

import argparse
import json
import logging
import time
from http import HTTPStatus
from urllib.parse import parse_qsl

import gevent

from labapp.params import BadParameter, seconds
from labapp.serving import NoDelayWSGIServer, bind_address, stop_on_signals

log = logging.getLogger("labapp.slow_api")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path not in ("/", "/healthz"):
        return _json(start_response, 404, {"error": "Not Found", "status": 404})
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        body = {"error": "Method Not Allowed", "status": 405}
        return _json(start_response, 405, body, [("Allow", "GET, HEAD")])
    if path == "/healthz":
        return _json(start_response, 200, {"status": "ok"})

    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    try:
        delay = seconds(query, "delay")
    except BadParameter as exc:
        return _json(start_response, 400, {"error": exc.message, "parameter": exc.parameter})
    started = time.monotonic()
    gevent.sleep(delay)
    return _json(
        start_response, 200, {"delay": delay, "slept": round(time.monotonic() - started, 4)}
    )


def _json(start_response, status, body, headers=()):
    data = json.dumps(body).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m labapp.slow_api", description=__doc__)
    parser.add_argument("--bind", type=bind_address, default=("127.0.0.1", 8081))
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=5.0,
        help="seconds requests in flight get after SIGTERM (default 5)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # A deep accept backlog so that a burst of thousands of connects is not
    # dropped and retried by the clients' TCP stacks a second later.
    server = NoDelayWSGIServer(args.bind, app, log=None, backlog=4096)
    stop_on_signals(server, args.graceful_timeout)
    log.info("slow API serving on %s:%d", *args.bind)
    server.serve_forever()
    log.info("stopped")


if __name__ == "__main__":
    main()
