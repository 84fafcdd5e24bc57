"""PostgreSQL access in the two modes the lab compares.

Both modes hand out connections through ``connection()``, a context manager
that turns "PostgreSQL cannot serve this request now" into ``Unavailable``
(a 503 for the client) and always gives the connection back or closes it.
"""

import logging
import threading
from contextlib import contextmanager

import psycopg2
import psycopg2.pool
from flask import current_app
from psycopg2 import extensions

log = logging.getLogger(__name__)

# Errors that mean the server is unreachable, restarting or the connection is
# gone, as opposed to a bug in our SQL (which stays a 500).
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class Unavailable(Exception):
    """The database cannot serve this request right now; the client may retry."""

    def __init__(self, reason, retry_after=1):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class NaiveDatabase:
    """One connection per request, closed afterwards: the common "worst way" this lab compares."""

    def __init__(self, dsn, connect_timeout):
        self.dsn = dsn
        self.connect_timeout = connect_timeout

    @contextmanager
    def connection(self):
        conn = _connect(self.dsn, self.connect_timeout)
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            raise Unavailable("database connection failed") from exc
        finally:
            conn.close()

    def close(self):
        pass


class PooledDatabase:
    """A ``ThreadedConnectionPool`` per process, created on first use, or by a
    server's hook in a new worker before it accepts (``open_database``).

    Creating it lazily keeps connections out of a pre-fork master (uWSGI,
    gunicorn --preload) and lets the app start while PostgreSQL is down.
    """

    def __init__(self, dsn, connect_timeout, minconn, maxconn, wait_timeout):
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.minconn = minconn
        self.maxconn = maxconn
        self.wait_timeout = wait_timeout
        self._pool = None
        self._pool_lock = threading.Lock()
        # psycopg2's pool raises at once when exhausted; the semaphore gives
        # requests a short, bounded wait for a slot instead.
        self._slots = threading.BoundedSemaphore(maxconn)

    @contextmanager
    def connection(self):
        # The pool first, then a slot: a new worker's first requests wait for
        # the pool being created without holding slots, so the requests
        # queued behind them (after a reload) are not refused as "exhausted"
        # while its connections are still being opened.
        pool = self._get_pool()
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise Unavailable("database connection pool exhausted")
        try:
            try:
                conn = pool.getconn()
            except CONNECTION_ERRORS as exc:
                raise Unavailable("database unreachable") from exc
            try:
                conn.autocommit = True
                yield conn
            except CONNECTION_ERRORS as exc:
                raise Unavailable("database connection failed") from exc
            finally:
                pool.putconn(conn, close=_is_broken(conn))
        finally:
            self._slots.release()

    def _get_pool(self):
        if self._pool is not None:
            return self._pool
        # Another request is creating the pool; it gives up after about
        # connect_timeout per connection, so wait at most that long here.
        if not self._pool_lock.acquire(timeout=self.connect_timeout * max(self.minconn, 1)):
            raise Unavailable("database connection pool starting")
        try:
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self.minconn,
                        self.maxconn,
                        self.dsn,
                        connect_timeout=self.connect_timeout,
                    )
                except CONNECTION_ERRORS as exc:
                    raise Unavailable("database unreachable") from exc
                log.info("connection pool ready (min=%d, max=%d)", self.minconn, self.maxconn)
            return self._pool
        finally:
            self._pool_lock.release()

    def close(self):
        with self._pool_lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


def _connect(dsn, connect_timeout):
    try:
        conn = psycopg2.connect(dsn, connect_timeout=connect_timeout)
    except CONNECTION_ERRORS as exc:
        raise Unavailable("database unreachable") from exc
    # Every statement the app runs stands alone, so there is never a
    # transaction left open on a connection that goes back to the pool.
    conn.autocommit = True
    return conn


def _is_broken(conn):
    # A connection the server dropped (restart, crash) reports closed or an
    # unknown transaction state; anything mid-transaction or mid-query (a
    # greenlet killed during a query) is not safe to hand to the next request.
    return bool(conn.closed) or (conn.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE)


def get_db():
    """The database of the application handling the current request."""
    return current_app.extensions["labapp.db"]


def open_database(app):
    """Open the app's connection pool now: a server's hook calls it in a new
    worker before the worker accepts requests (its first requests would wait
    for the pool's connections; on a busy host a new worker's first answers
    took 225 ms during a rolling reload). PostgreSQL unreachable: a warning,
    and the pool opens on first use as before. The naive mode has nothing to
    open."""
    database = app.extensions["labapp.db"]
    if not isinstance(database, PooledDatabase):
        return False
    try:
        database._get_pool()
    except Unavailable as exc:
        log.warning("connection pool not opened at start (%s): it opens on first use", exc)
        return False
    return True


def make_database(config):
    if config["DB_MODE"] == "pool":
        return PooledDatabase(
            config["DATABASE_URL"],
            config["DB_CONNECT_TIMEOUT"],
            config["DB_POOL_MIN"],
            config["DB_POOL_MAX"],
            config["DB_POOL_TIMEOUT"],
        )
    return NaiveDatabase(config["DATABASE_URL"], config["DB_CONNECT_TIMEOUT"])
