#!/usr/bin/env python3
"""Slow clients: hold many connections that are slow on purpose, bounded in time.

    slow_clients.py --url http://proxy1/json --connections 200 --interval 1 --duration 25
    slow_clients.py --kind body --url http://10.0.10.31/tasks --connections 180 \
        --interval 0.3 --duration 24 --at 1795274634
    slow_clients.py --kind reader --url 'http://10.0.10.31/queries?n=500' --connections 20 \
        --interval 0.5 --read-bytes 64 --stagger 4 --duration 24

Opens ``--connections`` TCP connections to the URL's host and port, each a
slow client of one ``--kind``:

``header`` (the default)
    sends the request line and the Host header, then one more byte of endless
    header lines every ``--interval`` seconds: the request is never complete
    (a "slowloris" client); a proxy that reads whole headers never passes it on.
``body``
    a ``POST`` of ``--body`` (JSON, with its Content-Length, ``Connection:
    close``): the head at once, then one byte of the body every
    ``--interval`` seconds. The request is complete once the body is, so it
    reaches the app (slowly); the answer is read and the connection closed.
``reader``
    a ``GET`` sent at once (``Connection: close``), with a small receive buffer
    (``--rcvbuf`` bytes), then ``--read-bytes`` of the answer read every
    ``--interval`` seconds: a slow reader of a large response, which the app
    serves in full while the client takes its time.

A connection the server closes is counted and opened again, so the number
held stays at ``--connections``; ``--stagger`` spreads the first openings over
that many seconds (the openings themselves, not the connections held: a fast
request is answered and closed at once). ``--total`` caps the connections opened in all (none is
opened again after that), and ``--fast`` makes a ``body`` or ``reader``
client an ordinary one: the whole request at once, the answer read as it
comes. Both together send the same requests as slow clients would, at full
speed: the control that tells the work they bring from their slowness.
With ``--at`` (a Unix time) it waits until then before it opens any. After
``--duration`` seconds (or on SIGTERM/SIGINT) every socket is closed and one
JSON object is printed on stdout::

    {"kind": "header", "target": "proxy1:80", "connections": 200, "total": null,
     "fast": false, "interval_s": 1.0, "duration_s": 25.0, "seconds": 25.0,
     "opened": 400, "begun": 400, "connect_errors": 0,
     "closed_by_server": 200, "responses": {"408": 0}, "statuses": {}, "open_max": 200,
     "open_at_end": 200, "bytes_sent": 9000, "bytes_read": 0, "lifetime_s_avg": 10.0}

``begun`` counts the connections it tried to open, ``opened`` those that
connected; ``statuses`` counts the status line of each answer as it arrives (a slow
reader has its status long before the end of its body: it reached the app),
``responses`` the status of what the server answered before it closed a
connection (nginx answers a header timeout by closing, without one);
``lifetime_s_avg`` is how long the server kept the closed ones open.
Standard library only, so it runs with a lab host's system python3 (the
faults send it with Ansible's script module). It is meant for the project's
own lab hosts: the duration, the wait before it and the number of
connections are capped.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import signal
import socket
import sys
import time
from urllib.parse import urlsplit

MAX_CONNECTIONS = 5000
MAX_DURATION_S = 600
# How often the loop wakes up to send the bytes that are due.
TICK_S = 0.05
# Header lines that never end with the blank line: one byte of them per interval.
DRIBBLE = b"X-Slow-Client: 1\r\n"
KINDS = ("header", "body", "reader")
# A body the lab's POST /tasks reads: a task of (next to) no work.
DEFAULT_BODY = '{"kind": "upstream", "delay": 0}'
MAX_READ_BYTES = 65536


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://host[:port]/path")
    parser.add_argument("--kind", choices=KINDS, default="header")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--body", default=DEFAULT_BODY, help="the body of --kind body")
    parser.add_argument("--read-bytes", type=int, default=64, help="read per interval (reader)")
    parser.add_argument("--rcvbuf", type=int, default=4096, help="receive buffer (reader)")
    parser.add_argument("--stagger", type=float, default=0.0, help="seconds to open them over")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--duration", type=float, required=True, help="seconds in all")
    parser.add_argument("--at", type=float, help="Unix time to start at (default: now)")
    parser.add_argument("--total", type=int, help="connections to open in all (default: no cap)")
    parser.add_argument(
        "--fast", action="store_true", help="body or reader: the request and answer at full speed"
    )
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or not parts.hostname:
        parser.error(f"--url must be http://host[:port]/path, got {args.url}")
    if not 0 < args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be 1..{MAX_CONNECTIONS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be > 0 and <= {MAX_DURATION_S} s")
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    if args.at is not None and args.at - time.time() > MAX_DURATION_S:
        parser.error(f"--at must be at most {MAX_DURATION_S} s from now")
    if not 0 < args.read_bytes <= MAX_READ_BYTES:
        parser.error(f"--read-bytes must be 1..{MAX_READ_BYTES}")
    if not 0 <= args.stagger <= args.duration:
        parser.error("--stagger must be between 0 and the duration")
    if args.total is not None and not 0 < args.total <= MAX_CONNECTIONS:
        parser.error(f"--total must be 1..{MAX_CONNECTIONS}")
    if args.fast and args.kind == "header":
        parser.error("--fast is for --kind body or reader: a header client is slow by nature")
    args.host, args.port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    args.head, args.payload = request(args.kind, path, args.host, args.body.encode())
    if args.fast:
        args.head, args.payload = args.head + args.payload, b""
    # a reader that reads a few bytes an interval, on its own schedule
    args.slow_reader = args.kind == "reader" and not args.fast
    return args


def request(kind, path, host, body):
    """(what is sent at once, what is dribbled after it) for a kind of client."""
    if kind == "header":
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode(), b""
    if kind == "body":
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode(), body
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(), b""


class Slow:
    """One slow connection: the request head at once, then a byte per interval."""

    def __init__(self, address, head, now, payload=b"", rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect: the window the server is offered
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setblocking(False)
        # the body still to dribble (kind body)
        self.payload = payload
        self.status_seen = False
        self.registered = True
        self.opened = now
        self.connected = False
        self.pending = head
        self.dribbled = 0
        self.next_send = now
        self.received = b""
        code = self.sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(code, errno.errorcode.get(code, "connect failed"))


class Clients:
    def __init__(self, args):
        self.args = args
        self.address = (socket.gethostbyname(args.host), args.port)
        self.selector = selectors.DefaultSelector()
        self.open = {}
        self.stats = {
            "statuses": {},
            "bytes_read": 0,
            "opened": 0,
            "begun": 0,
            "connect_errors": 0,
            "closed_by_server": 0,
            "responses": {},
            "open_max": 0,
            "bytes_sent": 0,
        }
        self.lifetimes = []
        # Connections established and not closed yet.
        self.connected = 0
        # After a failed connect, no new one before this time (no reconnect storm).
        self.hold_until = 0.0
        self.started = time.monotonic()

    def allowed(self, now):
        """Connections it may hold by now: all, or with --stagger a share growing to all."""
        args = self.args
        if not args.stagger or now - self.started >= args.stagger:
            return args.connections
        share = (now - self.started) / args.stagger
        return min(args.connections, int(share * args.connections) + 1)

    def may_open(self, now):
        """Whether one more connection may be opened now: fewer than --connections
        open and, during the stagger, fewer begun than its share so far. Counting
        only those open, a fast request, answered and closed at once, made room for
        the next in the same tick: the control's 180 bodies, meant to reach the app
        over 2.4 s, reached it within 70 ms."""
        args = self.args
        if len(self.open) >= args.connections or now < self.hold_until:
            return False
        ramping = args.stagger and now - self.started < args.stagger
        return not ramping or self.stats["begun"] < self.allowed(now)

    def top_up(self, now):
        rcvbuf = self.args.rcvbuf if self.args.slow_reader else None
        total = self.args.total
        while self.may_open(now):
            if total is not None and self.stats["begun"] >= total:
                return
            try:
                slow = Slow(self.address, self.args.head, now, self.args.payload, rcvbuf)
            except OSError:
                self.connect_failed(now)
                return
            self.stats["begun"] += 1
            self.open[slow.sock.fileno()] = slow
            self.selector.register(slow.sock, selectors.EVENT_WRITE | selectors.EVENT_READ, slow)

    def connect_failed(self, now):
        self.stats["connect_errors"] += 1
        self.hold_until = now + self.args.interval

    def drop(self, slow, now, by_server):
        if slow.registered:
            self.selector.unregister(slow.sock)
        self.open.pop(slow.sock.fileno(), None)
        slow.sock.close()
        if slow.connected:
            self.connected -= 1
        if by_server:
            self.stats["closed_by_server"] += 1
            self.lifetimes.append(now - slow.opened)
            status = slow.received.split(b" ", 2)[1:2]
            if status and status[0].isdigit():
                key = status[0].decode()
                self.stats["responses"][key] = self.stats["responses"].get(key, 0) + 1

    def saw(self, slow, data):
        """Counts the status line of an answer the first time its bytes arrive."""
        self.stats["bytes_read"] += len(data)
        slow.received += data
        if not slow.status_seen and b"\r\n" in slow.received:
            slow.status_seen = True
            status = slow.received.split(b" ", 2)[1:2]
            if status and status[0].isdigit():
                key = status[0].decode()
                self.stats["statuses"][key] = self.stats["statuses"].get(key, 0) + 1

    def read_due(self, now):
        """A slow reader's few bytes, once an interval."""
        for slow in list(self.open.values()):
            if not slow.connected or slow.pending or now < slow.next_send:
                continue  # not connected, its request not sent yet, or not due
            try:
                data = slow.sock.recv(self.args.read_bytes)
            except BlockingIOError:
                slow.next_send = now + self.args.interval
                continue
            except OSError:
                data = b""
            if not data:
                self.drop(slow, now, by_server=True)
                continue
            self.saw(slow, data)
            slow.next_send = now + self.args.interval

    def send_due(self, now):
        if self.args.slow_reader:
            self.read_due(now)
        for slow in list(self.open.values()):
            if not slow.connected or now < slow.next_send:
                continue
            if self.args.kind == "body":
                if not slow.pending and not slow.payload:
                    continue  # all sent: its answer is awaited
                data = slow.pending or slow.payload[:1]
            elif self.args.kind == "header":
                at = slow.dribbled % len(DRIBBLE)
                data = slow.pending or DRIBBLE[at : at + 1]
            else:
                if not slow.pending:
                    continue  # the request is sent: it is read from now on
                data = slow.pending
            try:
                sent = slow.sock.send(data)
            except BlockingIOError:
                continue
            except OSError:
                self.drop(slow, now, by_server=True)
                continue
            self.stats["bytes_sent"] += sent
            if slow.pending:
                slow.pending = slow.pending[sent:]
            elif self.args.kind == "body":
                slow.payload = slow.payload[sent:]
            else:
                slow.dribbled += sent
            slow.next_send = now + (0 if slow.pending else self.args.interval)

    def handle_events(self, timeout):
        for key, events in self.selector.select(timeout):
            slow = key.data
            now = time.monotonic()
            if events & selectors.EVENT_WRITE and not slow.connected:
                error = slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self.connect_failed(now)
                    self.drop(slow, now, by_server=False)
                    continue
                slow.connected = True
                self.connected += 1
                self.stats["opened"] += 1
                self.stats["open_max"] = max(self.stats["open_max"], self.connected)
                if self.args.slow_reader:
                    # read on its own schedule (read_due), not when data is there
                    self.selector.unregister(slow.sock)
                    slow.registered = False
                    continue
                self.selector.modify(slow.sock, selectors.EVENT_READ, slow)
            if events & selectors.EVENT_READ:
                try:
                    data = slow.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.saw(slow, data)
                    if self.args.kind != "header":
                        continue  # the answer, read until the server closes
                self.drop(slow, now, by_server=True)

    def close(self):
        for slow in list(self.open.values()):
            if slow.registered:
                self.selector.unregister(slow.sock)
            slow.sock.close()
        self.open.clear()
        self.selector.close()


def run(args):
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.append(True))
    # the controller starts it early; it opens its connections at the chosen moment
    while args.at is not None and not stop and time.time() < args.at:
        time.sleep(min(TICK_S, max(0.0, args.at - time.time())))
    clients = Clients(args)
    started = time.monotonic()
    deadline = started + args.duration
    open_at_end = 0
    try:
        while not stop and time.monotonic() < deadline:
            now = time.monotonic()
            clients.top_up(now)
            clients.send_due(now)
            clients.handle_events(TICK_S)
        open_at_end = clients.connected
    finally:
        clients.close()
    lifetimes = clients.lifetimes
    return {
        "kind": args.kind,
        "target": f"{args.host}:{args.port}",
        "connections": args.connections,
        "total": args.total,
        "fast": args.fast,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "seconds": round(time.monotonic() - started, 1),
        **clients.stats,
        "open_at_end": open_at_end,
        "lifetime_s_avg": round(sum(lifetimes) / len(lifetimes), 1) if lifetimes else None,
    }


def main(argv=None):
    args = parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
