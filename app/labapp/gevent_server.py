"""The app on gevent.pywsgi: ``python -m labapp.gevent_server --bind HOST:PORT``.

Monkey-patching comes first, before any other import, so that Flask,
psycopg2, urllib and threading all get the cooperative versions.
"""

# ruff: noqa: E402 -- the imports below must come after monkey-patching

from gevent import monkey

monkey.patch_all()

import argparse
import logging

from gevent.pool import Pool
from psycogreen.gevent import patch_psycopg

from labapp.serving import NoDelayWSGIServer, bind_address, positive_int, stop_on_signals

log = logging.getLogger("labapp.gevent_server")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m labapp.gevent_server", description=__doc__)
    parser.add_argument("--bind", type=bind_address, default=("127.0.0.1", 8000))
    parser.add_argument(
        "--greenlets",
        type=positive_int,
        default=1000,
        help="requests served at once (default 1000)",
    )
    parser.add_argument(
        "--backlog",
        type=positive_int,
        default=1024,
        help="connections waiting to be accepted (default 1024)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds requests in flight get after SIGTERM (default 10)",
    )
    args = parser.parse_args(argv)

    patch_psycopg()
    from labapp import create_app

    app = create_app()
    # No access log, like the other servers' defaults; errors still go to stderr.
    server = NoDelayWSGIServer(
        args.bind, app, spawn=Pool(args.greenlets), log=None, backlog=args.backlog
    )
    stop_on_signals(server, args.graceful_timeout)
    log.info("serving on %s:%d with up to %d greenlets", *args.bind, args.greenlets)
    server.serve_forever()
    app.extensions["labapp.db"].close()
    log.info("stopped")


if __name__ == "__main__":
    main()
