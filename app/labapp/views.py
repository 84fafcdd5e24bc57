"""The benchmark endpoints (the endpoint table in app/README.md)."""

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request

import markdown
from flask import Blueprint, abort, current_app, jsonify, render_template, request

from labapp import params, timing
from labapp.db import get_db
from labapp.errors import UpstreamError
from labapp.schema import WORLD_ROWS

bp = Blueprint("bench", __name__)

MAX_QUERIES = 500
DEFAULT_POST_ID = 1
# Extra seconds /slow gives the upstream on top of the delay it asked for.
UPSTREAM_GRACE = 5.0
# The upstream is always reached directly, whatever *_proxy variables the host has.
_upstream_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def random_world_id():
    return random.randint(1, WORLD_ROWS)  # noqa: S311 -- benchmark data, not a secret


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/json")
def hello_json():
    return jsonify(message="Hello, World!")


@bp.get("/slow")
def slow():
    delay = params.seconds(request.args, "delay")
    base = current_app.config["UPSTREAM_URL"].rstrip("/")
    url = f"{base}/?{urllib.parse.urlencode({'delay': f'{delay:g}'})}"
    began = time.perf_counter()
    try:
        with _upstream_opener.open(url, timeout=delay + UPSTREAM_GRACE) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise UpstreamError(f"upstream answered {exc.code}") from exc
    except (OSError, ValueError) as exc:
        # urllib wraps a connect timeout in URLError; a read timeout arrives bare.
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise UpstreamError("upstream timed out", status=504) from exc
        raise UpstreamError(f"upstream request failed: {reason}") from exc
    timing.record(request.environ, "api", (time.perf_counter() - began) * 1000)
    if isinstance(body, dict) and isinstance(body.get("slept"), int | float):
        timing.record(request.environ, "api-sleep", body["slept"] * 1000)
    return jsonify(body)


@bp.get("/db")
def single_query():
    with get_db().connection() as conn, conn.cursor() as cur:
        return jsonify(_fetch_world(cur, random_world_id()))


@bp.get("/queries")
def multiple_queries():
    # TechEmpower clamps the count into 1..500; only non-numbers are a 400 here.
    count = min(max(params.integer(request.args, "n", default=1), 1), MAX_QUERIES)
    with get_db().connection() as conn, conn.cursor() as cur:
        worlds = [_fetch_world(cur, random_world_id()) for _ in range(count)]
    return jsonify(worlds)


def _fetch_world(cur, world_id):
    cur.execute("SELECT id, randomnumber FROM world WHERE id = %s", (world_id,))
    row_id, number = cur.fetchone()
    return {"id": row_id, "randomNumber": number}


@bp.get("/fortunes")
def fortunes():
    with get_db().connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, message FROM fortune")
        rows = cur.fetchall()
    rows.append((0, "Additional fortune added at request time."))
    rows.sort(key=lambda row: row[1])
    return render_template("fortunes.html", fortunes=rows)


@bp.get("/sleep")
def sleep():
    delay = params.seconds(request.args, "delay")
    with get_db().connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_sleep(%s)", (delay,))
    return jsonify(slept=delay)


@bp.get("/render")
def render():
    post_id = params.integer(request.args, "id", default=DEFAULT_POST_ID)
    with get_db().connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT title, body FROM post WHERE id = %s", (post_id,))
        row = cur.fetchone()
    if row is None:
        abort(404, description=f"no post with id {post_id}")
    title, body = row
    html = markdown.markdown(body, extensions=["extra", "toc"])
    return render_template("post.html", title=title, body=html)
