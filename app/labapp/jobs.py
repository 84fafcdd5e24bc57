"""The work behind ``POST /tasks`` and the ``task`` row it moves through its states.

Free of Celery: ``labapp.worker`` calls these. A row goes ``queued`` ->
``running`` -> ``done`` or ``failed``, back to ``queued`` between the
attempts of a transient failure. Every transition but the first start is
guarded by the status, so a task delivered twice (its worker died after
doing the work) changes nothing the second time, and the first ``done`` or
``failed`` stays.
"""

import hashlib
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import markdown
import psycopg2.errors
from psycopg2.extras import Json

log = logging.getLogger(__name__)

KINDS = ("render", "upstream")
# render: how many times the post is rendered.
RENDER_TIMES = (1, 1000)
DEFAULT_RENDER_TIMES = 20
# upstream: the delay asked of the slow API, seconds.
MAX_UPSTREAM_DELAY = 30.0
DEFAULT_UPSTREAM_DELAY = 1.0
# Extra seconds the upstream gets on top of its delay (as /slow gives it).
UPSTREAM_GRACE = 5.0
# The app commits a task's row right after publishing it, so a fast worker can
# receive the task first. From before the publish to its commit or rollback the
# app holds a transaction-scoped advisory lock keyed by the task's id; a worker
# that finds no row waits on that lock, then looks once more: the row is there
# (committed) or never will be (rolled back, or the app's connection died).
# No timer decides, so a slow commit cannot drop a task its client was told of.
ROW_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# Seconds a worker waits on that lock before it retries the task instead.
ROW_LOCK_TIMEOUT = 30.0
# Seconds of the first retry's backoff, doubled each time.
BACKOFF_BASE = 0.5

_upstream_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PermanentError(Exception):
    """Retrying cannot help: the task fails at once with this reason."""


class TransientError(Exception):
    """Retrying may help; ``what`` names the failure ("upstream unreachable")."""

    def __init__(self, what, detail):
        super().__init__(f"{what}: {detail}")
        self.what = what
        self.detail = detail


def backoff(attempt, time_limit, visibility_timeout):
    """Seconds before attempt ``attempt + 1``: doubling, and capped so that the wait
    plus a whole run stays inside the visibility timeout (a retry waits in the
    worker, unacknowledged, until it is due)."""
    cap = max(0.1, (visibility_timeout - time_limit) / 2)
    return min(BACKOFF_BASE * 2 ** (attempt - 1), cap)


# --- the task row -------------------------------------------------------------


def lock_row(cur, task_id):
    """Called by the app in the transaction that inserts the row, before it publishes."""
    cur.execute(ROW_LOCK, (str(task_id),))


def start(database, task_id, max_attempts):
    """Mark the task running and count the attempt; (kind, params, attempts), or None
    when there is nothing to do (already finished, or the row was never committed).
    TransientError when the app holds the row's lock past ROW_LOCK_TIMEOUT."""
    row, existing = _claim(database, task_id)
    if row is None and existing is None:
        _wait_for_commit(database, task_id)
        row, existing = _claim(database, task_id)
    if row is not None:
        kind, params, attempts = row
        if attempts > max_attempts:
            # Started more often than it may be retried: the earlier runs
            # never finished (their worker died), so this one may not either.
            reason = (
                f"gave up after {attempts - 1} attempts that never finished "
                "(the worker running it was lost each time)"
            )
            fail(database, task_id, reason)
            return None
        return kind, params, attempts
    if existing is not None:
        log.info("task %s is already %s: nothing to do", task_id, existing[0])
    else:
        log.warning("task %s: its row was never committed (the POST failed), dropped", task_id)
    return None


def _claim(database, task_id):
    """(the claimed row or None, (status,) of a row that is not to run or None)."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE task SET status = 'running', started_at = now(), "
            "attempts = attempts + 1, error = NULL "
            "WHERE id = %s AND status IN ('queued', 'running') "
            "RETURNING kind, params, attempts",
            (task_id,),
        )
        row = cur.fetchone()
        if row is not None:
            return row, None
        cur.execute("SELECT status FROM task WHERE id = %s", (task_id,))
        return None, cur.fetchone()


def _wait_for_commit(database, task_id):
    """Return once no transaction that may still insert the row is open."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(
            "SELECT set_config('lock_timeout', %s, true)", (f"{ROW_LOCK_TIMEOUT * 1000:.0f}",)
        )
        try:
            lock_row(cur, task_id)
        except psycopg2.errors.LockNotAvailable as exc:
            cur.execute("ROLLBACK")
            raise TransientError(
                "task row not committed", f"its POST held the row for over {ROW_LOCK_TIMEOUT:g} s"
            ) from exc
        cur.execute("COMMIT")


def finish(database, task_id, result):
    """Record the result, unless the task already finished (a second run changes nothing)."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE task SET status = 'done', result = %s, error = NULL, finished_at = now() "
            "WHERE id = %s AND status IN ('queued', 'running')",
            (Json(result), task_id),
        )
        return cur.rowcount == 1


def fail(database, task_id, error):
    """Record the failure, unless the task already finished."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE task SET status = 'failed', error = %s, finished_at = now() "
            "WHERE id = %s AND status IN ('queued', 'running')",
            (error, task_id),
        )
        return cur.rowcount == 1


def requeue(database, task_id, error):
    """Back to queued between attempts, with the reason of the last one."""
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE task SET status = 'queued', error = %s WHERE id = %s AND status = 'running'",
            (error, task_id),
        )


# --- the work -----------------------------------------------------------------


def execute(database, config, kind, params):
    """Do the work of one task; its result (a JSON-able dict)."""
    started = time.monotonic()
    if kind == "render":
        result = _render(database, params.get("n", DEFAULT_RENDER_TIMES), params.get("post"))
    elif kind == "upstream":
        delay = params.get("delay", DEFAULT_UPSTREAM_DELAY)
        result = _upstream(config["UPSTREAM_URL"], delay)
    else:
        raise PermanentError(f"unknown task kind {kind!r}")
    result |= {
        "kind": kind,
        "elapsed": round(time.monotonic() - started, 3),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
    return result


def _render(database, times, post_id):
    """CPU-bound: the post's markdown to HTML, ``times`` times."""
    with database.connection() as conn, conn.cursor() as cur:
        if post_id is None:
            cur.execute("SELECT id, body FROM post ORDER BY random() LIMIT 1")
        else:
            cur.execute("SELECT id, body FROM post WHERE id = %s", (post_id,))
        row = cur.fetchone()
    if row is None:
        raise PermanentError(
            "there are no posts" if post_id is None else f"no post with id {post_id}"
        )
    post_id, body = row
    html = ""
    for _ in range(times):
        html = markdown.markdown(body, extensions=["extra", "toc"])
    return {
        "post": post_id,
        "n": times,
        "html_length": len(html),
        "html_sha256": hashlib.sha256(html.encode()).hexdigest(),
    }


def _upstream(base_url, delay):
    """I/O-bound: one call to the slow API, as /slow makes it."""
    url = f"{base_url.rstrip('/')}/?{urllib.parse.urlencode({'delay': f'{delay:g}'})}"
    timeout = delay + UPSTREAM_GRACE
    try:
        with _upstream_opener.open(url, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TransientError("upstream failed", f"it answered {exc.code}") from exc
        raise PermanentError(f"upstream refused the request: it answered {exc.code}") from exc
    except OSError as exc:
        # urllib wraps a connect timeout in URLError; a read timeout arrives bare.
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise TransientError("upstream timed out", f"no answer in {timeout:g} s") from exc
        raise TransientError("upstream unreachable", str(reason) or type(reason).__name__) from exc
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise TransientError("upstream failed", "its answer is not JSON") from exc
    return {"delay": delay, "upstream": body}
