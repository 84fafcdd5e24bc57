"""Every server of the catalogue (catalogue.yml) serving the app, as a real subprocess.

Each one runs its catalogue command line, with the placeholders filled in as
the flask_app role fills them; where its family has a config file, the file is
the role's own template rendered into a temporary directory.
"""

import http.client
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jinja2
import pytest
from labapp_support import (
    APP_DIR,
    ServerProcess,
    app_env,
    client_backends,
    free_port,
    http_get,
    http_json,
)

from flask_deploy_lab import catalogue
from flask_deploy_lab.faults.hostside.workers import children

SERVERS = catalogue.load().servers
TEMPLATES = Path(__file__).resolve().parents[2] / "roles" / "flask_app" / "templates"
# A small sizing, the same for every server; the role's defaults are bigger.
WORKERS, THREADS, GREENLETS, GRACEFUL_TIMEOUT = 2, 10, 50, 5
# Requests a test sends at once, each waiting 0.5 s.
AT_ONCE = 10


def placeholders(server):
    """The placeholders its command line uses."""
    return catalogue.placeholders(server.command)


def slots(server):
    return server.slots(WORKERS, THREADS, GREENLETS)


def render_config(server, values, config_dir):
    """The family's config file, from the role's template, with the role's variable names."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,  # as Ansible's template module renders
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 -- config files, not HTML
    )
    context = {
        "ansible_managed": "rendered by tests/app/test_wsgi_servers.py",
        "flask_app_home": APP_DIR.parent,  # its app/ is the code
        "flask_app_server": server.name,
        "flask_app_protocol": "http",
        "flask_app_workers": values["workers"],
        "flask_app_threads": values["threads"],
        "flask_app_greenlets": values["greenlets"],
        "flask_app_graceful_timeout": values["graceful_timeout"],
        "flask_app_listen_backlog": 128,
        "__flask_app_this": server,
        "__flask_app_venv": values["venv"],
        "__flask_app_bind": values["bind"],
        "__flask_app_health_port": values["port"],
        "__flask_app_run_dir": values["run_dir"],
    }
    text = templates.get_template(f"{server.config}.j2").render(context)
    (config_dir / server.config).write_text(text)


def placeholder_values(server, port, config_dir):
    """What the role fills the placeholders with, on 127.0.0.1:port, with this
    interpreter's environment as the venv and config_dir as the runtime directory too."""
    return {
        "venv": sys.prefix,
        "host": "127.0.0.1",
        "port": port,
        "bind": f"127.0.0.1:{port}",
        "config_dir": config_dir,
        "workers": WORKERS,
        "threads": THREADS,
        "greenlets": GREENLETS,
        "app": server.app,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "backlog": 1024,
        "run_dir": config_dir,
    }


def command(server, port, config_dir):
    """Its ExecStart on 127.0.0.1:port (placeholder_values)."""
    values = placeholder_values(server, port, config_dir)
    if server.config:
        render_config(server, values, config_dir)
    return shlex.split(server.command_line(**values))


def concurrently(urls, timeout=10.0):
    """(statuses, seconds) for fetching all urls at the same time."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        statuses = list(pool.map(lambda url: http_get(url, timeout=timeout)[0], urls))
    return statuses, time.monotonic() - started


@pytest.fixture(scope="module")
def start_server(database_url, upstream, tmp_path_factory):
    def start(name, **settings):
        server = SERVERS[name]
        port = free_port()
        config_dir = tmp_path_factory.mktemp(name)
        argv = command(server, port, config_dir)
        env = app_env(database_url, upstream.url, **settings)
        process = ServerProcess(argv, port, env).start(timeout=30)
        process.name = name
        process.values = placeholder_values(server, port, config_dir)
        return process

    return start


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request, start_server):
    process = start_server(request.param, db_mode="pool", db_pool_min=5, db_pool_max=20)
    yield process
    # systemd stops the unit with SIGTERM: every server must exit on it, promptly.
    # (The Werkzeug dev server and Waitress simply die of it.)
    assert process.stop() in (0, -signal.SIGTERM), process.output()


def test_serves_every_kind_of_endpoint(server):
    assert http_json(f"{server.url}/json")[::2] == (200, {"message": "Hello, World!"})
    assert http_json(f"{server.url}/db")[0] == 200
    assert len(http_json(f"{server.url}/queries?n=3")[2]) == 3
    assert http_get(f"{server.url}/fortunes")[0] == 200
    assert http_get(f"{server.url}/render")[0] == 200
    assert http_json(f"{server.url}/slow?delay=0")[0] == 200
    status, _, body = http_json(f"{server.url}/sleep?delay=x")
    assert (status, body["parameter"]) == (400, "delay")
    assert http_json(f"{server.url}/nowhere")[0] == 404


def test_kept_alive_connections_do_not_stall(server):
    # nginx keeps its upstream connections open to the servers whose catalogue
    # entry says keepalive: true, and any client may keep one open to any
    # server (the others close it after each response; http.client reopens).
    # A server that sends a response in two writes without TCP_NODELAY makes
    # every request after the first on a connection wait for the peer's
    # delayed ACK (40 ms on Linux).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    seconds = []
    try:
        for _ in range(7):
            started = time.perf_counter()
            connection.request("GET", "/json")
            response = connection.getresponse()
            response.read()
            seconds.append(time.perf_counter() - started)
            assert response.status == 200
    finally:
        connection.close()
    assert statistics.median(seconds[1:]) < 0.03, f"{server.name}: {seconds}"


# The catalogue's slots (processes x per_process) are what Little's law counts
# on: a server with room for AT_ONCE requests holds them all at once.
@pytest.mark.parametrize(
    "server",
    [name for name, entry in SERVERS.items() if slots(entry) is None or slots(entry) >= AT_ONCE],
    indirect=True,
)
def test_servers_with_the_slots_overlap_waits(server):
    for path in ["/sleep?delay=0.5", "/slow?delay=0.5"]:
        statuses, elapsed = concurrently([f"{server.url}{path}"] * AT_ONCE)
        assert statuses == [200] * AT_ONCE
        assert elapsed < 2.5, f"{AT_ONCE} x {path} took {elapsed:.2f} s on {server.name}"


# A naive connect per request must not block the other greenlets either.
@pytest.mark.parametrize(
    "name", [name for name, entry in SERVERS.items() if entry.concurrency == "green"]
)
def test_green_servers_overlap_waits_in_naive_mode(start_server, name):
    with start_server(name, db_mode="naive") as process:
        statuses, elapsed = concurrently([f"{process.url}/sleep?delay=0.5"] * AT_ONCE)
    assert statuses == [200] * AT_ONCE
    assert elapsed < 2.5


# A server whose command line is given the graceful timeout promises to let
# the requests in flight finish when systemd stops it.
@pytest.mark.parametrize(
    "name", [name for name, entry in SERVERS.items() if "graceful_timeout" in placeholders(entry)]
)
def test_servers_finish_requests_in_flight_on_sigterm(start_server, name):
    process = start_server(name, db_mode="pool")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(http_get, f"{process.url}/sleep?delay=1", timeout=10)
            time.sleep(0.3)
            process.proc.send_signal(signal.SIGTERM)
            assert in_flight.result(timeout=10)[0] == 200
        assert process.proc.wait(timeout=10) == 0
    finally:
        process.stop()


# Granian's worker, stopped gracefully, closes the connections it has accepted
# but whose request it has not read yet: a client on a fresh connection sees it
# closed without a response, rarely (1 of 17,232 requests in one run, about one
# run of this test in ten). Behind nginx the app's connections are kept alive
# and nginx sends a request that failed on a cached connection again, so the
# reload fault counts none. Here, for granian, such closes are allowed: at most
# one per asking thread for each worker stopped, and no other failure.
CLOSED_UNREAD = {"granian"}
ASKING = 2


def closed_without_response(exc):
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, ConnectionResetError)  # http.client.RemoteDisconnected too


# systemctl reload runs the catalogue's ExecReload: every worker is replaced
# under the same master while requests keep coming, and none of them fails.
@pytest.mark.parametrize("name", [name for name, entry in SERVERS.items() if entry.reload])
def test_servers_reload_gracefully_with_their_exec_reload(start_server, name):
    process = start_server(name, db_mode="pool", db_pool_min=2, db_pool_max=10)
    try:
        master = process.proc.pid
        before = children(master)
        assert len(before) >= WORKERS, f"{name}: workers {before}"
        line = SERVERS[name].reload_line(**process.values)
        statuses, closed, now, stop = [], [], before, threading.Event()

        def keep_asking():
            while not stop.is_set():
                try:
                    statuses.append(http_get(f"{process.url}/json", timeout=10)[0])
                except (ConnectionResetError, urllib.error.URLError) as exc:
                    if name not in CLOSED_UNREAD or not closed_without_response(exc):
                        raise
                    closed.append(repr(exc))

        with ThreadPoolExecutor(max_workers=ASKING) as pool:
            busy = [pool.submit(keep_asking) for _ in range(ASKING)]
            try:
                time.sleep(0.3)
                argv = shlex.split(line.replace("$MAINPID", str(master)))
                # in the app's directory, as the unit's WorkingDirectory
                subprocess.run(argv, check=True, timeout=60, cwd=APP_DIR)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    now = children(master)
                    if len(now) >= WORKERS and not set(now) & set(before):
                        break
                    time.sleep(0.05)
                time.sleep(0.5)  # and the new workers answer
            finally:
                stop.set()
            for future in busy:
                future.result()
        assert process.proc.poll() is None, process.output()
        assert not set(now) & set(before), f"{name}: workers {before} -> {now}"
        assert len(statuses) > 20 and set(statuses) == {200}, (
            f"{name}: {len(statuses)} requests, statuses {sorted(set(statuses))}"
        )
        assert len(closed) <= ASKING * WORKERS, f"{name}: closed without a response: {closed}"
    finally:
        process.stop()


# Gunicorn's post_worker_init hook opens each worker's pool before the worker
# accepts, and only then marks it ready for labapp.rolling_reload.
@pytest.mark.parametrize(
    "name", [name for name, entry in SERVERS.items() if entry.family == "gunicorn"]
)
def test_gunicorn_workers_open_their_pool_before_they_are_ready(start_server, database_url, name):
    baseline = client_backends(database_url)
    process = start_server(name, db_mode="pool", db_pool_min=2, db_pool_max=4)
    try:
        workers, ready = children(process.proc.pid), []
        deadline = time.monotonic() + 20
        # start() saw one worker answer; the others may still be starting
        while time.monotonic() < deadline and len(ready) < len(workers):
            time.sleep(0.1)
            ready = sorted(p.name for p in Path(process.values["run_dir"]).glob("ready.*"))
        assert len(workers) == WORKERS
        assert ready == sorted(f"ready.{pid}" for pid in workers)
        # before any request to the database (start() asked /healthz only)
        assert client_backends(database_url) == baseline + 2 * len(workers)
    finally:
        process.stop()


def test_the_dev_server_listens_with_the_backlog_it_is_given(monkeypatch):
    # Werkzeug's own is a fixed 128 (LISTEN_QUEUE), which nginx's connection
    # per request overflowed: the devserver's reason to exist
    import socket

    from labapp import devserver
    from werkzeug.serving import LISTEN_QUEUE

    listened = []
    real_listen = socket.socket.listen
    monkeypatch.setattr(
        socket.socket, "listen", lambda sock, n: (listened.append(n), real_listen(sock, n))[1]
    )
    server = devserver.make_server("127.0.0.1", 0, lambda environ, start: [], 1024)
    try:
        assert listened == [1024] != [LISTEN_QUEUE]
        assert server.multithread
    finally:
        server.server_close()


def test_the_dev_server_refuses_a_backlog_below_one(capsys):
    from labapp import devserver

    with pytest.raises(SystemExit) as stop:
        devserver.main(["--backlog", "0"])
    assert stop.value.code == 2
    assert "expected a positive number, got '0'" in capsys.readouterr().err
