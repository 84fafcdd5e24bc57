"""Fixtures for the app tests: a throwaway PostgreSQL cluster, apps, the slow API,
and for the background tasks a throwaway Redis and Celery workers.

The cluster is real (initdb + pg_ctl from the PostgreSQL server package) and
lives in a temporary directory for one test session. Its binaries are found
through ``PG_BINDIR``, then ``pg_config --bindir``, then
``/usr/lib/postgresql/<newest>/bin``, then ``PATH``. Redis is real too
(redis-server from the Debian package of that name), one per test that asks
for it: password, loopback, a random port, an append-only file.
"""

import os
import sys

import pytest
from labapp_support import (
    APP_DIR,
    TEST_DATABASE,
    CeleryWorker,
    PostgresCluster,
    RedisServer,
    ServerProcess,
    app_env,
    find_pg_bindir,
    find_redis_server,
    free_port,
)

# The roles run the app with app/ on the Python path; so do the tests.
sys.path.insert(0, str(APP_DIR))

from labapp import create_app
from labapp.schema import init_db


@pytest.fixture(scope="session", autouse=True)
def no_servers_left_behind():
    yield
    for process in list(ServerProcess.running):
        process.stop()


@pytest.fixture(scope="session")
def postgres():
    bindir = find_pg_bindir()
    if bindir is None:
        where = f" in PG_BINDIR={os.environ['PG_BINDIR']}" if os.environ.get("PG_BINDIR") else ""
        pytest.skip(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found{where}; install the "
            "Debian package postgresql or point PG_BINDIR at their directory"
        )
    cluster = PostgresCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def database_url(postgres):
    """A database seeded by init-db, shared by the session."""
    url = postgres.create_database(TEST_DATABASE)
    init_db(url)
    return url


@pytest.fixture
def make_app(database_url):
    """Build apps against the test database; their pools are closed afterwards."""
    apps = []

    def make(**overrides):
        config = {"DATABASE_URL": database_url, "DB_MODE": "naive", "TESTING": True}
        app = create_app(config | overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["labapp.db"].close()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@pytest.fixture(scope="session")
def upstream():
    """The slow API, for the app's /slow and for its own tests."""
    port = free_port()
    argv = [sys.executable, "-m", "labapp.slow_api", "--bind", f"127.0.0.1:{port}"]
    with ServerProcess(argv, port) as server:
        yield server


@pytest.fixture
def redis_server():
    """A Redis of this test's own (the broker of POST /tasks), removed afterwards."""
    binary = find_redis_server()
    if binary is None:
        # Not a skip: the task tests are the only proof of the broker contract.
        pytest.fail(
            "redis-server not found: install the Debian package redis-server "
            "('make setup' does; scripts/install-packages.sh lists it)"
        )
    server = RedisServer(binary)
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.fixture
def worker_env(database_url, upstream, redis_server):
    """The LABAPP_* environment of a worker (and of app servers): ``worker_env(**settings)``."""

    def env(**settings):
        settings = {"broker_url": redis_server.url} | settings
        return app_env(database_url, settings.pop("upstream_url", upstream.url), **settings)

    return env


@pytest.fixture
def start_worker(worker_env):
    """Start Celery workers (``start_worker(concurrency=2, **LABAPP settings)``), stopped after."""
    workers = []

    def start(concurrency=2, name="worker", fast=True, **settings):
        worker = CeleryWorker(worker_env(**settings), concurrency, name, fast=fast)
        workers.append(worker)
        return worker.start(timeout=30)

    yield start
    for worker in workers:
        worker.stop()
