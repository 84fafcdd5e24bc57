"""``POST /tasks`` queues work for the Celery worker; any process reports on it.

The state lives in PostgreSQL's ``task`` table, so whichever server process
takes ``GET /tasks/<id>`` can answer; the work runs in ``labapp.worker``
(labapp/jobs.py does it), handed over through Redis.
"""

import contextlib
import logging
import uuid

import psycopg2
from flask import Blueprint, abort, current_app, jsonify, request, url_for
from psycopg2.extras import Json

from labapp import broker, jobs, params
from labapp.db import get_db

log = logging.getLogger(__name__)

bp = Blueprint("tasks", __name__, url_prefix="/tasks")

# Seconds a client should wait before polling a task, or retrying a refused POST.
POLL_AFTER = 1
RETRY_AFTER_BROKER_DOWN = 2
# The parameters each kind accepts, besides "kind".
KIND_PARAMETERS = {"render": ("n", "post"), "upstream": ("delay",)}
MAX_POST_ID = 2**31 - 1


@bp.post("")
def start_task():
    kind, task_params = _parse(_task_parameters())
    celery = current_app.extensions["labapp.celery"]
    if celery is None:
        response = jsonify(
            error="no task broker is configured (LABAPP_BROKER_URL is not set)", status=503
        )
        response.status_code = 503
        return response
    task_id = uuid.uuid4()
    with get_db().connection() as conn, conn.cursor() as cur:
        # The row is committed only once Redis has the task: a refused publish
        # leaves nothing behind. A worker that is faster waits on the row's lock
        # (labapp/jobs.py) until this transaction ends.
        cur.execute("BEGIN")
        try:
            jobs.lock_row(cur, task_id)
            cur.execute(
                "INSERT INTO task (id, kind, params) VALUES (%s, %s, %s)",
                (str(task_id), kind, Json(task_params)),
            )
            broker.publish(celery, task_id)
        except BaseException:
            with contextlib.suppress(psycopg2.Error):
                cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
    response = jsonify(id=str(task_id), status="queued")
    response.status_code = 202
    response.headers["Location"] = url_for("tasks.task_status", task_id=task_id)
    return response


@bp.errorhandler(broker.BrokerUnavailable)
def _broker_unavailable(exc):
    log.warning("503: task broker unavailable (%s)", exc)
    response = jsonify(error="task broker unavailable", status=503)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_BROKER_DOWN)
    return response


def _task_parameters():
    if not request.is_json:
        return request.values
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise params.BadParameter("body", "the JSON body must be an object")
    return body


def _parse(values):
    """(kind, parameters of that kind) from the body; BadParameter on anything else."""
    kind = params.choice(values, "kind", jobs.KINDS, default="render")
    allowed = ("kind", *KIND_PARAMETERS[kind])
    params.only(values, allowed, context=f"for kind={kind}")
    if kind == "render":
        low, high = jobs.RENDER_TIMES
        return kind, {
            "n": params.bounded_integer(values, "n", jobs.DEFAULT_RENDER_TIMES, low, high),
            "post": params.bounded_integer(values, "post", None, 1, MAX_POST_ID),
        }
    delay = params.seconds(
        values, "delay", default=jobs.DEFAULT_UPSTREAM_DELAY, maximum=jobs.MAX_UPSTREAM_DELAY
    )
    return kind, {"delay": delay}


@bp.get("/<uuid:task_id>")
def task_status(task_id):
    with get_db().connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT kind, params, status, attempts, result, error, created_at, started_at, "
            "finished_at FROM task WHERE id = %s",
            (str(task_id),),
        )
        row = cur.fetchone()
    if row is None:
        abort(404, description=f"no task with id {task_id}")
    kind, task_params, status, attempts, result, error, created_at, started_at, finished_at = row
    body = {
        "id": str(task_id),
        "kind": kind,
        "params": task_params,
        "status": status,
        "attempts": attempts,
        "result": result,
        "error": error,
        "created_at": _iso(created_at),
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
    }
    response = jsonify(body)
    if status in ("queued", "running"):
        response.status_code = 202
        response.headers["Retry-After"] = str(POLL_AFTER)
    return response


def _iso(moment):
    return moment.isoformat() if moment else None
