"""What the two gevent.pywsgi servers share: --bind parsing and a graceful stop."""

import argparse
import logging
import signal

import gevent

log = logging.getLogger(__name__)


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
