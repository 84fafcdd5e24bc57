"""Background tasks whose state lives in PostgreSQL, so any worker can report on them."""

import logging
import os
import threading
import time
import uuid

from flask import Blueprint, abort, jsonify, request, url_for
from psycopg2.extras import Json

from labapp import params
from labapp.db import Unavailable, get_db

log = logging.getLogger(__name__)

bp = Blueprint("tasks", __name__, url_prefix="/tasks")

DEFAULT_SECONDS = 1.0
# Attempts to record a finished task while the database is unavailable.
SAVE_ATTEMPTS = 5


@bp.post("")
def start_task():
    seconds = params.seconds(_task_parameters(), "seconds", default=DEFAULT_SECONDS)
    task_id = uuid.uuid4()
    database = get_db()
    with database.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO task (id, seconds) VALUES (%s, %s)", (str(task_id), seconds))
    # A thread, not a process-local queue: under the gevent servers it is a
    # greenlet, and its result goes to the database for whichever worker asks.
    threading.Thread(target=_run, args=(database, task_id, seconds), daemon=True).start()
    response = jsonify(id=str(task_id), status="running")
    response.status_code = 202
    response.headers["Location"] = url_for("tasks.task_status", task_id=task_id)
    return response


def _task_parameters():
    if not request.is_json:
        return request.values
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise params.BadParameter("body", "the JSON body must be an object")
    return body


@bp.get("/<uuid:task_id>")
def task_status(task_id):
    with get_db().connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, seconds, result, created_at, finished_at FROM task WHERE id = %s",
            (str(task_id),),
        )
        row = cur.fetchone()
    if row is None:
        abort(404, description=f"no task with id {task_id}")
    status, seconds, result, created_at, finished_at = row
    body = {
        "id": str(task_id),
        "status": status,
        "seconds": seconds,
        "created_at": created_at.isoformat(),
        "finished_at": finished_at.isoformat() if finished_at else None,
        "result": result,
    }
    if status == "running":
        response = jsonify(body)
        response.status_code = 202
        response.headers["Retry-After"] = "1"
        return response
    return jsonify(body)


def _run(database, task_id, seconds):
    """The background work: wait, then record who did it."""
    started = time.monotonic()
    time.sleep(seconds)
    result = {"pid": os.getpid(), "elapsed": round(time.monotonic() - started, 3)}
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            with database.connection() as conn, conn.cursor() as cur:
                cur.execute(
                    "UPDATE task SET status = 'done', result = %s, finished_at = now() "
                    "WHERE id = %s",
                    (Json(result), str(task_id)),
                )
            return
        except Unavailable as exc:
            log.warning("task %s: cannot save result (attempt %d): %s", task_id, attempt, exc)
            time.sleep(attempt)
    log.error("task %s: result lost after %d attempts", task_id, SAVE_ATTEMPTS)
