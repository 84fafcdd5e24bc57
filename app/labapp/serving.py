"""What the two gevent.pywsgi servers share: the server, --bind parsing and a graceful stop."""

import argparse
import logging
import signal
import socket

import gevent
from gevent.pywsgi import WSGIServer

log = logging.getLogger(__name__)


class NoDelayWSGIServer(WSGIServer):
    """gevent.pywsgi with TCP_NODELAY on every connection it accepts.

    pywsgi sends a response in more than one write. On a connection kept
    alive (nginx's upstream pool) Nagle's algorithm holds back the last write
    until the client acknowledges the first, and the client delays that ACK:
    every request after a connection's first took 40 ms longer.
    """

    def handle(self, sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def bind_address(value):
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a (host, port) tuple for argparse."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def positive_int(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def stop_on_signals(server, timeout):
    """Stop accepting on SIGTERM/SIGINT and give requests in flight ``timeout`` seconds."""

    def stop():
        log.info("stopping: waiting up to %gs for requests in flight", timeout)
        server.stop(timeout=timeout)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop)
