"""naive and pool modes: connection hygiene, exhaustion, and surviving a PostgreSQL restart."""

import threading
import time
import urllib.parse

import psycopg2.pool
import pytest
from labapp import create_app
from labapp.db import open_database
from labapp_support import client_backends, connect


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return result


def assert_unavailable(response):
    assert response.status_code == 503
    assert response.is_json
    assert int(response.headers["Retry-After"]) >= 1


def sleeping_backends(database_url):
    with connect(database_url) as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
        )
        return cur.fetchone()[0]


def in_thread(func, *args):
    """Run func in a thread; the returned list receives its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(func(*args)), daemon=True)
    thread.start()
    return thread, result


def test_unknown_db_mode_fails_at_startup(monkeypatch):
    monkeypatch.setenv("LABAPP_DB_MODE", "pooled")
    with pytest.raises(ValueError, match="LABAPP_DB_MODE must be one of naive, pool"):
        create_app()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("DB_POOL_MAX", 0), ("DB_POOL_MAX", "many"), ("DB_POOL_MIN", 1.5), ("DB_POOL_TIMEOUT", -1)],
)
def test_bad_pool_settings_fail_at_startup(setting, value):
    with pytest.raises(ValueError, match=f"LABAPP_{setting}"):
        create_app({"DB_MODE": "pool", setting: value})


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABAPP_DB_MODE", "pool")
    monkeypatch.setenv("LABAPP_DB_POOL_MAX", "7")
    monkeypatch.setenv("LABAPP_DB_POOL_TIMEOUT", "0.25")
    monkeypatch.setenv("LABAPP_UPSTREAM_URL", "http://upstream.example:8081")
    app = create_app()
    assert app.config["DB_POOL_MAX"] == 7
    assert app.config["DB_POOL_TIMEOUT"] == 0.25
    assert app.config["UPSTREAM_URL"] == "http://upstream.example:8081"
    assert app.extensions["labapp.db"].maxconn == 7


@pytest.mark.parametrize("mode", ["naive", "pool"])
def test_nothing_connects_until_a_request_needs_it(mode):
    # Port 9 on loopback refuses at once: building the app must not notice.
    app = create_app({"DATABASE_URL": "postgresql://127.0.0.1:9/labapp", "DB_MODE": mode})
    client = app.test_client()
    assert client.get("/json").status_code == 200
    assert_unavailable(client.get("/db"))


def test_a_server_hook_opens_the_pool_before_the_first_request(make_app, database_url):
    baseline = client_backends(database_url)
    app = make_app(DB_MODE="pool", DB_POOL_MIN=3, DB_POOL_MAX=3)
    assert open_database(app) is True
    assert client_backends(database_url) == baseline + 3
    assert open_database(app) is True  # once
    assert client_backends(database_url) == baseline + 3
    assert open_database(make_app(DB_MODE="naive")) is False


def test_a_pool_that_cannot_open_at_start_opens_on_first_use(caplog):
    app = create_app({"DATABASE_URL": "postgresql://127.0.0.1:9/labapp", "DB_MODE": "pool"})
    assert open_database(app) is False
    assert "connection pool not opened at start (database unreachable)" in caplog.text
    assert_unavailable(app.test_client().get("/db"))


def test_naive_mode_closes_every_connection(make_app, database_url):
    baseline = client_backends(database_url)
    client = make_app(DB_MODE="naive").test_client()
    for path in ["/db", "/queries?n=5", "/fortunes", "/render", "/sleep?delay=0", "/render?id=999"]:
        for _ in range(5):
            assert client.get(path).status_code in (200, 404)
    assert wait_for(lambda: client_backends(database_url) == baseline, timeout=5)


def test_naive_mode_closes_the_connection_on_errors(make_app, database_url):
    # A statement timeout makes the query itself fail half way through the request.
    options = urllib.parse.quote("-c statement_timeout=50")
    url = f"{database_url}?options={options}"
    baseline = client_backends(database_url)
    client = make_app(DB_MODE="naive", DATABASE_URL=url).test_client()
    for _ in range(5):
        assert_unavailable(client.get("/sleep?delay=1"))
    assert wait_for(lambda: client_backends(database_url) == baseline, timeout=5)


def test_pool_mode_reuses_its_connections(make_app, database_url):
    baseline = client_backends(database_url)
    app = make_app(DB_MODE="pool", DB_POOL_MIN=2, DB_POOL_MAX=2)
    client = app.test_client()
    for _ in range(30):
        assert client.get("/db").status_code == 200
    assert client_backends(database_url) == baseline + 2
    app.extensions["labapp.db"].close()
    assert wait_for(lambda: client_backends(database_url) == baseline, timeout=5)


def test_pool_returns_connections_after_errors(make_app, database_url):
    app = make_app(DB_MODE="pool", DB_POOL_MIN=1, DB_POOL_MAX=1, DB_POOL_TIMEOUT=0.2)
    client = app.test_client()
    for path in ["/render?id=999", "/render?id=x", "/queries?n=x", "/db"]:
        assert client.get(path).status_code in (200, 400, 404)
    # Had any of those leaked the only slot, this would be a 503.
    assert client.get("/db").status_code == 200


def test_exhausted_pool_answers_503_with_retry_after(make_app, database_url):
    app = make_app(DB_MODE="pool", DB_POOL_MIN=1, DB_POOL_MAX=1, DB_POOL_TIMEOUT=0.2)
    holder, result = in_thread(lambda: app.test_client().get("/sleep?delay=1.5").status_code)
    assert wait_for(lambda: sleeping_backends(database_url) == 1, timeout=5)

    started = time.monotonic()
    response = app.test_client().get("/db")
    assert_unavailable(response)
    assert response.json["error"] == "database connection pool exhausted"
    assert time.monotonic() - started < 1.0

    holder.join(timeout=10)
    assert result == [200]
    assert app.test_client().get("/db").status_code == 200


def test_pool_waits_a_bounded_time_for_a_slot(make_app, database_url):
    app = make_app(DB_MODE="pool", DB_POOL_MIN=1, DB_POOL_MAX=1, DB_POOL_TIMEOUT=5)
    holder, result = in_thread(lambda: app.test_client().get("/sleep?delay=0.5").status_code)
    assert wait_for(lambda: sleeping_backends(database_url) == 1, timeout=5)
    assert app.test_client().get("/db").status_code == 200
    holder.join(timeout=10)
    assert result == [200]


def test_requests_waiting_for_a_new_pool_do_not_hold_its_slots(make_app, monkeypatch):
    # A new worker (after a reload) gets a burst of queued requests while its
    # pool is still opening connections. They wait for the pool, not for a
    # slot, so none is refused as "exhausted" for the pool being slow to open.
    class SlowPool(psycopg2.pool.ThreadedConnectionPool):
        def __init__(self, *args, **kwargs):
            time.sleep(0.6)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(psycopg2.pool, "ThreadedConnectionPool", SlowPool)
    app = make_app(DB_MODE="pool", DB_POOL_MIN=2, DB_POOL_MAX=2, DB_POOL_TIMEOUT=0.3)
    burst = [in_thread(lambda: app.test_client().get("/db").status_code) for _ in range(6)]
    for thread, _ in burst:
        thread.join(timeout=10)
    assert [result for _, result in burst] == [[200]] * 6


@pytest.mark.parametrize("mode", ["naive", "pool"])
def test_app_recovers_from_a_postgresql_restart(make_app, postgres, mode):
    app = make_app(DB_MODE=mode, DB_POOL_MIN=3, DB_POOL_MAX=3)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/db").status_code == 200

    postgres.stop()
    try:
        for path in ["/db", "/fortunes", "/sleep?delay=0"]:
            assert_unavailable(client.get(path))
    finally:
        postgres.start()

    # The pool may hand out each connection that died with the old server once
    # more (a 503 each, and then discarded); after that the app is back.
    statuses = []
    assert wait_for(lambda: statuses.append(client.get("/db").status_code) or statuses[-1] == 200)
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) <= 3
    assert all(client.get("/db").status_code == 200 for _ in range(10))
