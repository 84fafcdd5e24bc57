"""The slow-client generator (flask_deploy_lab.faults.hostside.slow_clients) against
servers on loopback: it holds its connections, dribbles requests that never end,
reopens what the server closes, starts when asked and stops in time."""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import threading
import time

import pytest

from flask_deploy_lab.faults import slow_clients as fault
from flask_deploy_lab.faults.hostside import slow_clients


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


@pytest.fixture
def server(request):
    """A loopback server; `answer_after` seconds (None: never) it sends a 408 and closes."""
    answer_after = getattr(request, "param", None)
    received, lock, stop = {}, threading.Lock(), threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(0.05)
            opened = time.monotonic()
            data = b""
            while not stop.is_set():
                if answer_after is not None and time.monotonic() - opened > answer_after:
                    self.request.sendall(b"HTTP/1.1 408 Request Time-out\r\n\r\n")
                    break
                try:
                    chunk = self.request.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            with lock:
                received[id(self)] = data

    srv = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], received
    stop.set()
    srv.shutdown()
    srv.server_close()


def run(port, **options):
    argv = [f"--url=http://127.0.0.1:{port}/json"]
    argv += [f"--{key}={value}" for key, value in options.items()]
    started = time.monotonic()
    summary = slow_clients.run(slow_clients.parse_args(argv))
    return summary, time.monotonic() - started


def test_it_holds_every_connection_and_never_finishes_a_request(server):
    port, received = server
    summary, seconds = run(port, connections=20, interval=0.2, duration=1.5)
    assert seconds < 3, summary
    assert summary["open_max"] == 20, summary
    assert summary["open_at_end"] == 20
    assert summary["opened"] == 20
    assert summary["connect_errors"] == 0
    assert summary["closed_by_server"] == 0
    time.sleep(0.3)
    assert len(received) == 20
    for data in received.values():
        assert data.startswith(b"GET /json HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # the head, then about one byte per interval: never the blank line that ends it
        assert b"\r\n\r\n" not in data
        assert 2 <= len(data) - len(b"GET /json HTTP/1.1\r\nHost: 127.0.0.1\r\n") <= 10


@pytest.mark.parametrize("server", [0.3], indirect=True)
def test_what_the_server_closes_is_counted_and_opened_again(server):
    port, _ = server
    summary, _ = run(port, connections=10, interval=0.1, duration=1.2)
    assert summary["closed_by_server"] >= 10
    assert summary["responses"].get("408", 0) >= 10
    assert summary["opened"] >= 20
    assert summary["open_max"] == 10
    assert 0.2 <= summary["lifetime_s_avg"] <= 0.8


def test_a_refused_connection_is_retried_once_an_interval_not_in_a_storm():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    summary, seconds = run(port, connections=5, interval=0.25, duration=1)
    assert seconds < 2
    assert summary["opened"] == 0
    # at most one attempt per connection and interval: 5 x (1 / 0.25 + 1)
    assert 5 <= summary["connect_errors"] <= 25


@pytest.mark.parametrize(
    "argv",
    [
        ["--url=https://127.0.0.1/", "--duration=1"],
        ["--url=http://127.0.0.1/", "--duration=601"],
        ["--url=http://127.0.0.1/", "--duration=0"],
        ["--url=http://127.0.0.1/", "--duration=1", "--connections=0"],
        ["--url=http://127.0.0.1/", "--duration=1", "--connections=5001"],
        ["--url=http://127.0.0.1/", "--duration=1", "--interval=0"],
        ["--url=http://127.0.0.1/", "--duration=1", f"--at={time.time() + 3600}"],
    ],
)
def test_it_refuses_unbounded_or_bad_settings(argv, capsys):
    with pytest.raises(SystemExit):
        slow_clients.parse_args(argv)
    assert "must be" in capsys.readouterr().err


def test_it_opens_its_connections_at_the_time_asked_for(server):
    port, _ = server
    at = time.time() + 0.8
    started = time.monotonic()
    summary, seconds = run(port, connections=5, interval=0.2, duration=0.5, at=at)
    # the wait, then the whole duration: it ends on time after starting late
    assert 1.2 <= seconds < 2.5
    assert summary["seconds"] == pytest.approx(0.5, abs=0.2)
    assert summary["open_max"] == 5
    assert time.monotonic() - started >= 1.2


@pytest.fixture
def app_like():
    """A loopback HTTP server like the app behind nginx: POST reads its whole body and
    answers 202; GET answers 200 with a body of 200 kB. Records the bodies it read."""
    import http.server

    bodies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(200_000))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"x" * 200_000)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], bodies
    server.shutdown()
    server.server_close()


def test_slow_bodies_reach_the_app_whole_and_are_answered(app_like):
    port, bodies = app_like
    argv = [f"--url=http://127.0.0.1:{port}/tasks", "--kind=body", "--connections=5",
            "--interval=0.05", "--duration=2"]  # fmt: skip
    summary = slow_clients.run(slow_clients.parse_args(argv))
    assert summary["kind"] == "body"
    # 32 bytes a 0.05 s: about 1.6 s a request, so each connection is answered
    assert summary["statuses"].get("202", 0) >= 5, summary
    assert summary["responses"].get("202", 0) >= 5
    assert summary["open_max"] == 5
    # each answered request had its whole body (those cut by the end are partial)
    whole = slow_clients.DEFAULT_BODY.encode()
    assert sum(body == whole for body in bodies) >= summary["responses"]["202"]
    assert all(whole.startswith(body) for body in bodies)


def test_slow_readers_see_their_status_and_read_a_few_bytes_an_interval(app_like):
    port, _ = app_like
    argv = [f"--url=http://127.0.0.1:{port}/queries?n=500", "--kind=reader",
            "--connections=4", "--interval=0.1", "--read-bytes=100", "--duration=1.2",
            "--stagger=0.4"]  # fmt: skip
    summary = slow_clients.run(slow_clients.parse_args(argv))
    assert summary["statuses"] == {"200": 4}, summary
    # never the whole 200 kB: at most 100 bytes every 0.1 s each
    assert 4 * 100 <= summary["bytes_read"] <= 4 * 100 * 13
    assert summary["closed_by_server"] == 0
    assert summary["open_max"] == 4


def test_the_control_sends_the_same_requests_once_each_at_full_speed(app_like):
    port, bodies = app_like
    argv = [f"--url=http://127.0.0.1:{port}/tasks", "--kind=body", "--connections=5",
            "--interval=0.15", "--duration=1.5", "--stagger=0.2", "--total=5",
            "--fast"]  # fmt: skip
    started = time.monotonic()
    summary = slow_clients.run(slow_clients.parse_args(argv))
    assert time.monotonic() - started < 1.5 + 1.0  # it stops by itself at its duration
    # five requests, each whole and answered, none opened again after its answer
    assert (summary["begun"], summary["opened"], summary["total"]) == (5, 5, 5), summary
    assert summary["statuses"] == {"202": 5}
    assert bodies == [slow_clients.DEFAULT_BODY.encode()] * 5
    readers = [f"--url=http://127.0.0.1:{port}/queries?n=500", "--kind=reader",
               "--connections=2", "--interval=0.5", "--read-bytes=64", "--duration=1.5",
               "--total=2", "--fast"]  # fmt: skip
    summary = slow_clients.run(slow_clients.parse_args(readers))
    # the whole 200 kB answer each, read as it came (a slow reader reads 64 B / 0.5 s)
    assert summary["statuses"] == {"200": 2}, summary
    assert summary["bytes_read"] > 2 * 200_000
    assert summary["begun"] == 2


def test_the_controls_fast_requests_are_spread_over_the_stagger():
    """Answered and closed at once, the fast requests must still be sent over the
    stagger, as the slow ones are opened: counting the connections open, all 180 of
    the control's were sent within 70 ms."""
    import http.server

    arrivals = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            arrivals.append(time.monotonic())
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        argv = [f"--url=http://127.0.0.1:{server.server_address[1]}/tasks", "--kind=body",
                "--connections=60", "--interval=0.15", "--duration=2.5", "--stagger=1.5",
                "--total=60", "--fast"]  # fmt: skip
        summary = slow_clients.run(slow_clients.parse_args(argv))
    finally:
        server.shutdown()
        server.server_close()
    assert summary["statuses"] == {"202": 60}, summary
    arrivals.sort()
    # over the 1.5 s, a tick's share at a time: no more than a few in any 0.1 s
    assert 1.2 <= arrivals[-1] - arrivals[0] <= 1.5 + 0.3
    assert max(sum(1 for a in arrivals if t <= a < t + 0.1) for t in arrivals) <= 8


def test_fast_is_not_for_a_header_client_and_the_total_is_bounded(capsys):
    for argv in (["--fast"], ["--total=0"], [f"--total={slow_clients.MAX_CONNECTIONS + 1}"]):
        with pytest.raises(SystemExit):
            slow_clients.parse_args(["--url=http://127.0.0.1:9/", "--duration=1", *argv])
    assert "--fast is for --kind body or reader" in capsys.readouterr().err


def test_a_stagger_opens_the_connections_over_its_seconds(server):
    port, _ = server
    args = slow_clients.parse_args(
        [f"--url=http://127.0.0.1:{port}/", "--connections=10", "--duration=2", "--stagger=1"]
    )
    clients = slow_clients.Clients(args)
    try:
        start = clients.started
        assert clients.allowed(start) == 1
        assert clients.allowed(start + 0.55) == 6
        assert clients.allowed(start + 1) == 10
    finally:
        clients.close()


def openings(args):
    """When (seconds from its start) the generator opens each of its connections."""
    clients = slow_clients.Clients(args)
    try:
        opened, at = [], clients.started
        while len(opened) < args.connections:
            opened += [at - clients.started] * (clients.allowed(at) - len(opened))
            at += slow_clients.TICK_S
    finally:
        clients.close()
    return opened


# the fault's slow bodies, as it starts them
FAULT_BODIES = ["--url=http://127.0.0.1:9/tasks", "--kind=body",
                f"--connections={fault.SLOW_BODIES}", f"--interval={fault.BODY_INTERVAL_S}",
                f"--stagger={fault.BODY_STAGGER_S}"]  # fmt: skip


def test_the_faults_bodies_end_over_seconds_and_all_inside_their_window():
    """The fault's own settings: opened in one tick, every body would end in one
    tick too, a burst of 180 requests at the app rather than 180 slow clients."""
    args = slow_clients.parse_args([*FAULT_BODIES, f"--duration={fault.WINDOW_S}"])
    body_s = len(args.payload) * fault.BODY_INTERVAL_S
    ends = [t + body_s for t in openings(args)]
    assert len(ends) == fault.SLOW_BODIES
    assert max(ends) - min(ends) >= fault.BODY_STAGGER_S - slow_clients.TICK_S
    # no tick ends more than a few of them, and the last ends with a second to spare
    assert max(ends.count(t) for t in ends) <= 0.05 * fault.SLOW_BODIES
    assert max(ends) <= fault.WINDOW_S - 0.5


def test_the_controls_bodies_reach_the_app_when_the_slow_ones_do():
    """The control's bodies, sent whole from BODY_S into the window over the same
    stagger, arrive over the seconds in which the slow ones end."""
    slow = slow_clients.parse_args([*FAULT_BODIES, f"--duration={fault.WINDOW_S}"])
    fast = slow_clients.parse_args(
        [*FAULT_BODIES, f"--duration={fault.WINDOW_S - fault.BODY_S}", "--fast",
         f"--total={fault.SLOW_BODIES}"]
    )  # fmt: skip
    slow_ends = [t + len(slow.payload) * fault.BODY_INTERVAL_S for t in openings(slow)]
    fast_arrivals = [fault.BODY_S + t for t in openings(fast)]
    assert fast.payload == b"" and fast.head.endswith(slow.payload)
    assert fast_arrivals == pytest.approx(slow_ends)


@pytest.mark.parametrize("slots", [None, 20, 200])
def test_a_server_with_slots_for_them_meets_them_all(slots):
    assert fault.clients_for(slots) == fault.Clients(
        bodies=fault.SLOW_BODIES, readers=fault.SLOW_READERS,
        stagger_s=fault.BODY_STAGGER_S, queue_wait_s=0.0,
    )  # fmt: skip


def test_few_slots_meet_ten_slow_clients_each_answered_inside_the_window():
    """Two sync workers: 20 clients, and the bodies end early enough to wait
    behind the 18 queued /slow requests (1.8 s by Little's law) and be answered."""
    clients = fault.clients_for(2)
    assert (clients.bodies, clients.readers) == (18, 2)
    assert clients.queue_wait_s == pytest.approx(18 * fault.LOAD.delay / 2)
    args = slow_clients.parse_args(
        ["--url=http://127.0.0.1:9/tasks", "--kind=body", f"--connections={clients.bodies}",
         f"--interval={fault.BODY_INTERVAL_S}", f"--stagger={clients.stagger_s}",
         f"--duration={fault.WINDOW_S}"]
    )  # fmt: skip
    answered = [t + fault.BODY_S + clients.queue_wait_s for t in openings(args)]
    assert len(answered) == 18
    assert max(answered) <= fault.WINDOW_S - fault.ANSWER_MARGIN_S + slow_clients.TICK_S
    # three slots: 30 clients, a shorter wait, a longer stagger
    three = fault.clients_for(3)
    assert (three.bodies, three.readers) == (27, 3)
    assert three.stagger_s > clients.stagger_s


def test_a_backlog_no_body_can_be_answered_behind_is_refused_before_the_run():
    # one slot: 19 requests of 0.2 s ahead of each body, 3.8 s
    with pytest.raises(
        fault.FaultError, match=r"cannot judge: a whole body waits 3\.8 s .* on 1 slot, "
    ):
        fault.clients_for(1)


@pytest.mark.parametrize("late", [1.0, 3.5, 5.3, 6.0])
def test_the_windows_begin_once_the_launches_settle_and_end_inside_the_run(late):
    # the wait for the measured run (begun at t0) returns `late` seconds after it
    t0 = 1000.4
    launch = t0 + late
    bounds = fault.window_bounds(launch)
    # the warm-up, once the launches have settled, then the windows
    warm = fault.warmup_start(bounds)
    assert warm >= launch + fault.LAUNCH_SETTLE_S
    assert warm - (launch + fault.LAUNCH_SETTLE_S) < 1
    assert bounds[0] - warm == fault.WINDOW_S + fault.DRAIN_S
    assert [b - a for a, b in itertools.pairwise(bounds)] == [8, 8, 8, 18, 18, 8]
    # the last window ends by the run's last whole second
    assert bounds[-1] <= int(t0 + fault.LOAD.duration)


def test_the_requests_of_each_kind():
    assert slow_clients.request("header", "/json", "h", b"") == (
        b"GET /json HTTP/1.1\r\nHost: h\r\n", b""
    )  # fmt: skip
    head, body = slow_clients.request("body", "/tasks", "h", b'{"kind": "upstream", "delay": 0}')
    assert head.endswith(b"Content-Length: 32\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"POST /tasks HTTP/1.1\r\n") and len(body) == 32
    head, body = slow_clients.request("reader", "/queries?n=500", "h", b"")
    assert head == b"GET /queries?n=500 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
