"""The entry points under every server of the switch (README "Servers"), as real subprocesses."""

import http.client
import shutil
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from labapp_support import ServerProcess, app_env, free_port, http_get, http_json

PYTHON = sys.executable
UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
FLASK = [PYTHON, "-m", "flask", "--app", "labapp.wsgi", "run", "--port", "{port}"]
GUNICORN = [PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--graceful-timeout", "5"]
UWSGI_COMMON = ["--home", sys.prefix, "--master", "--die-on-term", "--need-app",
                "--disable-logging"]  # fmt: skip

# One command line per server name of the switch; {port} is filled in per run.
SERVERS = {
    "flask": [*FLASK, "--without-threads"],
    "flask-threaded": [*FLASK, "--with-threads"],
    # sockets as the flask_app role sets them up: HTTP/1.1 keep-alive where
    # uWSGI can do it, "Connection: close" under its gevent loop
    "uwsgi": [UWSGI, "--http11-socket", "127.0.0.1:{port}", *UWSGI_COMMON,
              "--processes", "2", "--threads", "2", "--module", "labapp.wsgi:app"],
    "uwsgi-gevent": [UWSGI, "--http-socket", "127.0.0.1:{port}", "--add-header",
                     "Connection: close", *UWSGI_COMMON, "--processes", "1", "--gevent", "50",
                     "--gevent-monkey-patch", "--module", "labapp.green:app"],
    "gunicorn": [*GUNICORN, "--workers", "2", "labapp.wsgi:app"],
    "gunicorn-gthread": [*GUNICORN, "--workers", "1", "-k", "gthread", "--threads", "4",
                         "labapp.wsgi:app"],
    "gunicorn-gevent": [*GUNICORN, "--workers", "1", "-k", "gevent", "--worker-connections", "50",
                        "labapp.green:app"],
    "gevent": [PYTHON, "-m", "labapp.gevent_server", "--bind", "127.0.0.1:{port}",
               "--greenlets", "50"],
}  # fmt: skip
GREEN = {"uwsgi-gevent", "gunicorn-gevent", "gevent"}


def concurrently(urls, timeout=10.0):
    """(statuses, seconds) for fetching all urls at the same time."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        statuses = list(pool.map(lambda url: http_get(url, timeout=timeout)[0], urls))
    return statuses, time.monotonic() - started


def start_server(name, database_url, upstream_url, **settings):
    if name.startswith("uwsgi") and UWSGI is None:
        pytest.skip("uwsgi is not installed")
    port = free_port()
    argv = [str(arg).format(port=port) for arg in SERVERS[name]]
    env = app_env(database_url, upstream_url, **settings)
    return ServerProcess(argv, port, env).start(timeout=30)


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request, database_url, upstream):
    process = start_server(
        request.param, database_url, upstream.url, db_mode="pool", db_pool_min=5, db_pool_max=20
    )
    process.name = request.param
    yield process
    # systemd stops the unit with SIGTERM: every server must exit on it, promptly.
    # (The Werkzeug dev server simply dies of it.)
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
    # nginx keeps its upstream connections open. A server that sends a
    # response in two writes without TCP_NODELAY makes every request after the
    # first on a connection wait for the peer's delayed ACK (40 ms on Linux).
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


@pytest.mark.parametrize("server", sorted(GREEN), indirect=True)
def test_gevent_servers_overlap_waits(server):
    for path in ["/sleep?delay=0.5", "/slow?delay=0.5"]:
        statuses, elapsed = concurrently([f"{server.url}{path}"] * 10)
        assert statuses == [200] * 10
        assert elapsed < 2.5, f"10 x {path} took {elapsed:.2f} s on {server.name}"


def test_gevent_server_overlaps_waits_in_naive_mode(database_url, upstream):
    with start_server("gevent", database_url, upstream.url, db_mode="naive") as process:
        statuses, elapsed = concurrently([f"{process.url}/sleep?delay=0.5"] * 10)
    assert statuses == [200] * 10
    assert elapsed < 2.5


def test_gevent_server_finishes_requests_in_flight_on_sigterm(database_url, upstream):
    process = start_server("gevent", database_url, upstream.url, db_mode="pool")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(http_get, f"{process.url}/sleep?delay=1", timeout=10)
            time.sleep(0.3)
            process.proc.send_signal(signal.SIGTERM)
            assert in_flight.result(timeout=10)[0] == 200
        assert process.proc.wait(timeout=10) == 0
        assert "stopping" in process.output()
    finally:
        process.stop()
