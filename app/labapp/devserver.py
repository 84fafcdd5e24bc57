"""Werkzeug's development server, a thread per request, with a listen backlog:
``python -m labapp.devserver --bind HOST:PORT --backlog N``.

The server ``flask --app labapp.wsgi run --with-threads`` starts (Werkzeug's
ThreadedWSGIServer, the request log on stderr), with one difference: Werkzeug
listens with a fixed backlog of 128 (werkzeug.serving.LISTEN_QUEUE) and
neither ``flask run`` nor ``run_simple`` takes another. Behind nginx, which
opens a connection per request, 400 clients overflowed it (the kernel's
ListenOverflows rose by 1,872 in 20 s) and each dropped SYN came back a second
later, retransmitted: p99 2.7 s against a 1 s ideal. Here the backlog is the
one the role gives every server (flask_app_listen_backlog).
"""

import argparse
import logging

from werkzeug.serving import ThreadedWSGIServer

from labapp.serving import bind_address, positive_int

log = logging.getLogger("labapp.devserver")


def make_server(host, port, app, backlog):
    """A threaded Werkzeug server on (host, port), listening with `backlog`."""

    class Server(ThreadedWSGIServer):
        # what socketserver passes to listen(); Werkzeug's is LISTEN_QUEUE
        request_queue_size = backlog

    return Server(host, port, app)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m labapp.devserver", description=__doc__)
    parser.add_argument("--bind", type=bind_address, default=("127.0.0.1", 8000))
    parser.add_argument(
        "--backlog",
        type=positive_int,
        default=1024,
        help="connections waiting to be accepted (default 1024)",
    )
    args = parser.parse_args(argv)
    # the request log, as `flask run` shows it
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from labapp.wsgi import app

    server = make_server(*args.bind, app, args.backlog)
    log.info("serving on http://%s:%d, a thread per request, backlog %d", *args.bind, args.backlog)
    # SIGTERM ends the process, as it ends `flask run`
    server.serve_forever()


if __name__ == "__main__":
    main()
