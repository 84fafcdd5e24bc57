"""Background tasks: queued by the app in Redis, run by Celery workers, state in PostgreSQL.

Everything here is real: the PostgreSQL cluster of the session, a Redis of
each test's own (labapp_support.RedisServer), and ``celery --app
labapp.worker worker`` subprocesses.
"""

import collections
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid

import markdown
import psycopg2
import pytest
from labapp import create_app, jobs, sweep
from labapp.db import NaiveDatabase
from labapp.schema import POSTS
from labapp_support import (
    CeleryWorker,
    ServerProcess,
    app_env,
    children,
    connect,
    free_port,
    http_json,
    rss_kib,
)

# The queue the app publishes to: a Redis list of this name.
QUEUE = "labapp.tasks"
POST_BODY = {post_id: body for post_id, _, body in POSTS}
# Short limits for the tests that kill workers: Redis gives an unacknowledged
# task to another worker after 5 s instead of 60.
SHORT_LIMITS = {"task_time_limit": 3, "task_visibility_timeout": 5}


@pytest.fixture(autouse=True)
def no_orphan_tasks(database_url):
    """Each test starts without unfinished rows: those of earlier tests belong to a
    Redis that is gone, and a worker's sweep (labapp/sweep.py) would run them."""
    with connect(database_url) as cur:
        cur.execute("DELETE FROM task WHERE status IN ('queued', 'running')")


@pytest.fixture
def broker_app(make_app, redis_server):
    """An app that publishes to this test's Redis (``broker_app(**config)``)."""

    def make(**overrides):
        return make_app(BROKER_URL=redis_server.url, **overrides)

    return make


@pytest.fixture
def client(broker_app):
    return broker_app().test_client()


def post_task(client, body=None):
    return client.post("/tasks", json=body)


def poll(get_status, timeout=20.0):
    """Statuses seen while polling a task, ending with its first non-202 and that body."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = get_status()
        seen.append(status)
        if status != 202:
            return seen, body
        time.sleep(0.05)
    pytest.fail(f"task still 202 after {timeout}s: {seen[-5:]}, last body {body}")


def poll_client(client, location, timeout=20.0):
    def get():
        response = client.get(location)
        return response.status_code, response.json

    return poll(get, timeout)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"not {what} after {timeout}s")


def task_rows(database_url, ids=None):
    """{id: (status, attempts)} of the given tasks, or the number of all rows."""
    with connect(database_url) as cur:
        if ids is None:
            cur.execute("SELECT count(*) FROM task")
            return cur.fetchone()[0]
        cur.execute(
            "SELECT id::text, status, attempts FROM task WHERE id = ANY(%s::uuid[])", (list(ids),)
        )
        return {row[0]: row[1:] for row in cur.fetchall()}


def delete_tasks(database_url, ids):
    with connect(database_url) as cur:
        cur.execute("DELETE FROM task WHERE id = ANY(%s::uuid[])", (list(ids),))


def status_of(client, location):
    return client.get(location).json["status"]


# --- 1. the lifecycle ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"kind": "render", "n": 100, "post": 1}, {"kind": "upstream", "delay": 0.5}],
    ids=["render", "upstream"],
)
def test_lifecycle(client, start_worker, body):
    # fast=False: exactly the command line the roles run, nothing added.
    worker = start_worker(fast=False)
    response = post_task(client, body)
    assert response.status_code == 202, response.json
    task_id = response.json["id"]
    assert response.json == {"id": task_id, "status": "queued"}
    location = response.headers["Location"]
    assert location == f"/tasks/{task_id}"

    first = client.get(location)
    assert first.status_code == 202, first.json
    assert first.headers["Retry-After"] == "1"
    assert first.json["status"] in ("queued", "running")

    seen, done = poll_client(client, location)
    assert seen[0] == 202
    assert seen[-1] == 200
    assert done["status"] == "done", done
    assert done["error"] is None
    assert done["attempts"] == 1
    assert done["kind"] == body["kind"]
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    result = done["result"]
    # The work ran in a pool process of the worker, not in the app's process.
    assert result["pid"] != os.getpid()
    assert result["pid"] in worker.pool_pids()
    assert result["hostname"] == socket.gethostname()
    assert result["worker"].startswith("worker@")
    if body["kind"] == "render":
        html = markdown.markdown(POST_BODY[1], extensions=["extra", "toc"])
        assert (result["post"], result["n"]) == (1, 100)
        assert result["html_length"] == len(html)
        assert result["html_sha256"] == hashlib.sha256(html.encode()).hexdigest()
    else:
        assert result["upstream"]["delay"] == 0.5
        assert result["elapsed"] >= 0.5


def test_render_defaults_to_some_post(client, start_worker):
    start_worker()
    response = post_task(client)
    assert response.status_code == 202
    _, done = poll_client(client, response.headers["Location"])
    assert done["status"] == "done", done
    assert done["params"] == {"n": jobs.DEFAULT_RENDER_TIMES, "post": None}
    assert done["result"]["post"] in POST_BODY
    assert done["result"]["n"] == jobs.DEFAULT_RENDER_TIMES


# --- 2. a worker killed mid-task ----------------------------------------------


def start_slow_task(client, delay=2):
    """A task that runs ``delay`` seconds; returns its Location once it is running."""
    response = post_task(client, {"kind": "upstream", "delay": delay})
    assert response.status_code == 202, response.json
    location = response.headers["Location"]
    wait_for(lambda: status_of(client, location) == "running", 15, "running")
    return location


def test_killed_worker_task_is_redelivered(client, start_worker):
    first = start_worker(concurrency=1, name="first", **SHORT_LIMITS)
    location = start_slow_task(client)
    pool = first.pool_pids()
    os.kill(first.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    first.proc.wait(10)
    # Its pool process dies with it (Celery sets PR_SET_PDEATHSIG): the work is lost.
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in pool), 10, "pool gone")
    assert status_of(client, location) == "running"

    second = start_worker(concurrency=1, name="second", **SHORT_LIMITS)
    _, done = poll_client(client, location, timeout=30)
    redelivered_in = time.monotonic() - killed_at
    assert done["status"] == "done", done
    assert done["attempts"] == 2
    assert done["result"]["worker"].startswith("second@")
    assert done["result"]["pid"] in second.pool_pids()
    print(f"\ntask done {redelivered_in:.1f} s after its worker was killed (visibility 5 s)")
    # Within the visibility timeout, a sweep, a worker start and the 2 s of work.
    assert redelivered_in < 5 + 1 + 10 + 2


def test_killed_pool_process_task_is_redelivered(client, start_worker):
    # Limits longer than the detection: the pool notices a dead process on its
    # 5 s maintenance tick, then hands the task back (task_reject_on_worker_lost).
    worker = start_worker(concurrency=1, task_time_limit=20, task_visibility_timeout=30)
    location = start_slow_task(client)
    (child,) = worker.pool_pids()
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()
    _, done = poll_client(client, location, timeout=25)
    redelivered_in = time.monotonic() - killed_at
    assert done["status"] == "done", done
    assert done["attempts"] == 2
    assert done["result"]["pid"] != child
    assert done["result"]["pid"] in worker.pool_pids()
    print(f"\ntask done {redelivered_in:.1f} s after its pool process was killed")
    # Well before the 30 s visibility timeout: the same worker ran it again.
    assert redelivered_in < 5 + 1 + 2 + 5


# --- the row makes the work idempotent ------------------------------------------


def insert_task(database_url, kind="render", params='{"n": 1, "post": 2}', **columns):
    task_id = str(uuid.uuid4())
    names = ", ".join(["id", "kind", "params", *columns])
    values = ", ".join(["%s"] * (3 + len(columns)))
    with connect(database_url) as cur:
        cur.execute(
            f"INSERT INTO task ({names}) VALUES ({values})",  # noqa: S608 -- test constants
            (task_id, kind, params, *columns.values()),
        )
    return task_id


def test_a_second_delivery_changes_nothing(make_app, database_url):
    app = make_app()
    database = app.extensions["labapp.db"]
    task_id = insert_task(database_url)
    kind, params, attempts = jobs.start(database, task_id, max_attempts=4)
    assert (kind, params, attempts) == ("render", {"n": 1, "post": 2}, 1)
    result = jobs.execute(database, app.config, kind, params)
    assert jobs.finish(database, task_id, result)

    # The same task delivered again (its worker died before acknowledging it):
    # nothing to run, and a late finish or failure of the first run is a no-op.
    assert jobs.start(database, task_id, max_attempts=4) is None
    assert not jobs.finish(database, task_id, {"other": "result"})
    assert not jobs.fail(database, task_id, "too late")
    with connect(database_url) as cur:
        cur.execute("SELECT status, result, error, attempts FROM task WHERE id = %s", (task_id,))
        status, stored, error, attempts = cur.fetchone()
    assert (status, error, attempts) == ("done", None, 1)
    assert stored["html_sha256"] == result["html_sha256"]


def test_a_task_whose_worker_keeps_dying_fails(make_app, database_url):
    database = make_app().extensions["labapp.db"]
    task_id = insert_task(database_url, status="running", attempts=4)
    assert jobs.start(database, task_id, max_attempts=4) is None
    with connect(database_url) as cur:
        cur.execute("SELECT status, error, attempts FROM task WHERE id = %s", (task_id,))
        status, error, attempts = cur.fetchone()
    assert (status, attempts) == ("failed", 5)
    assert error.startswith("gave up after 4 attempts that never finished")


def test_a_task_without_its_row_is_dropped_at_once(make_app):
    database = make_app().extensions["labapp.db"]
    started = time.monotonic()
    assert jobs.start(database, str(uuid.uuid4()), max_attempts=4) is None
    assert time.monotonic() - started < 1


@contextlib.contextmanager
def publishing(database_url, task_id, insert=True):
    """What POST /tasks does between BEGIN and COMMIT: the row's lock, then the row."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            jobs.lock_row(cur, task_id)
            if insert:
                cur.execute(
                    "INSERT INTO task (id, kind, params) VALUES (%s, 'render', %s)",
                    (task_id, '{"n": 1, "post": 2}'),
                )
        yield conn
    finally:
        conn.close()


def start_in_thread(database, task_id):
    """jobs.start in a thread: (thread, {"value": ..., "error": ..., "took": s})."""
    outcome = {}

    def run():
        began = time.monotonic()
        try:
            outcome["value"] = jobs.start(database, task_id, max_attempts=4)
        except Exception as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - began

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("hold", [0.5, 6.0])
def test_a_worker_faster_than_the_commit_waits_for_it(make_app, database_url, hold):
    """However late the POST commits (6 s is longer than the old fixed wait of 5 s),
    a worker that got the task first runs it."""
    database = make_app().extensions["labapp.db"]
    task_id = str(uuid.uuid4())
    with publishing(database_url, task_id) as conn:
        thread, outcome = start_in_thread(database, task_id)
        time.sleep(hold)
        assert thread.is_alive(), outcome
        conn.commit()
        thread.join(10)
    assert outcome["value"] == ("render", {"n": 1, "post": 2}, 1), outcome
    assert outcome["took"] >= hold
    assert task_rows(database_url, [task_id]) == {task_id: ("running", 1)}
    delete_tasks(database_url, [task_id])


def test_a_worker_drops_a_task_whose_post_rolled_back(make_app, database_url):
    database = make_app().extensions["labapp.db"]
    task_id = str(uuid.uuid4())
    with publishing(database_url, task_id) as conn:
        thread, outcome = start_in_thread(database, task_id)
        time.sleep(0.3)
        conn.rollback()
        thread.join(10)
    assert outcome == {"value": None, "took": pytest.approx(0.3, abs=0.5)}
    assert task_rows(database_url, [task_id]) == {}


def test_a_post_holding_its_row_too_long_means_a_retry(make_app, database_url, monkeypatch):
    monkeypatch.setattr(jobs, "ROW_LOCK_TIMEOUT", 0.3)
    database = make_app().extensions["labapp.db"]
    task_id = str(uuid.uuid4())
    with (
        publishing(database_url, task_id, insert=False),
        pytest.raises(jobs.TransientError, match=r"held the row for over 0\.3 s"),
    ):
        jobs.start(database, task_id, max_attempts=4)


def test_backoff_doubles_within_the_visibility_timeout():
    assert [jobs.backoff(n, 30, 60) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 15]
    assert jobs.backoff(3, 3, 5) == 1


# --- 3. Redis down, then back -------------------------------------------------


def test_broker_down_gives_503_fast_and_back_works(
    client, redis_server, start_worker, database_url
):
    before = [post_task(client, {"kind": "render", "n": 1, "post": 2}) for _ in range(3)]
    assert [r.status_code for r in before] == [202] * 3
    # let the append-only file take them (appendfsync everysec), then a crash
    time.sleep(1.1)
    redis_server.kill()
    rows = task_rows(database_url)

    latencies = []
    for _ in range(3):
        started = time.monotonic()
        response = post_task(client, {"kind": "render"})
        latencies.append(time.monotonic() - started)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json["error"] == "task broker unavailable"
    print(f"\n503 with Redis down in {max(latencies) * 1000:.1f} ms at most")
    assert max(latencies) < 2
    assert task_rows(database_url) == rows, "a refused task left its row behind"
    # The rest of the app does not depend on Redis.
    assert client.get("/db").status_code == 200

    redis_server.start()
    assert redis_server.client().llen(QUEUE) == 3, "the queued tasks did not survive the crash"
    after = post_task(client, {"kind": "render", "n": 1, "post": 2})
    assert after.status_code == 202, after.json

    start_worker()
    for response in [*before, after]:
        _, done = poll_client(client, response.headers["Location"])
        assert done["status"] == "done", done


def test_hung_broker_gives_503_within_the_socket_timeout(client, redis_server, database_url):
    assert post_task(client, {"kind": "render"}).status_code == 202  # a pooled connection
    rows = task_rows(database_url)
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        response = post_task(client, {"kind": "render"})
        elapsed = time.monotonic() - started
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    print(f"\n503 with Redis hung in {elapsed:.2f} s")
    assert elapsed < 3
    assert task_rows(database_url) == rows


def test_no_broker_configured_is_503(make_app):
    client = make_app(BROKER_URL=None).test_client()
    response = post_task(client, {"kind": "render"})
    assert response.status_code == 503
    assert "no task broker is configured" in response.json["error"]
    assert client.get("/json").status_code == 200
    assert client.get(f"/tasks/{uuid.uuid4()}").status_code == 404


# --- 3b. a message Redis lost: the sweep (labapp/sweep.py) ------------------------


def queued_ids(redis_client):
    """The task ids of the messages in the queue, oldest first."""
    raw = redis_client.lrange(QUEUE, 0, -1)
    return [json.loads(item)["headers"]["id"] for item in reversed(raw)]


@pytest.fixture
def sweeper(broker_app, database_url):
    """A Sweeper in this process (interval 0.2 s), as the worker runs one."""
    app = broker_app()
    return sweep.Sweeper(
        NaiveDatabase(database_url, 5), app.extensions["labapp.celery"], interval=0.2
    ), app.test_client()


def test_the_sweep_publishes_again_only_what_redis_lost(sweeper, redis_server):
    sweeper, client = sweeper
    ids = [post_task(client, {"kind": "render", "n": 1, "post": 2}).json["id"] for _ in range(3)]
    redis = redis_server.client()
    assert queued_ids(redis) == ids
    lost = redis.rpop(QUEUE)  # the oldest: taken, and never recorded as unacknowledged
    assert json.loads(lost)["headers"]["id"] == ids[0]
    time.sleep(0.3)  # older than the interval

    # Missing once is a suspicion (a worker may be between taking it and
    # recording it); missing twice with the same state, a loss.
    assert sweeper.sweep() == []
    assert sweeper.sweep() == [ids[0]]
    assert queued_ids(redis) == ids[1:] + ids[:1]
    # Redis holds it again: nothing more, and no copy of the others.
    assert sweeper.sweep() == []
    assert sweeper.sweep() == []
    assert queued_ids(redis) == ids[1:] + ids[:1]


def test_the_sweep_leaves_a_row_that_changed_between_sweeps(sweeper, redis_server, database_url):
    sweeper, client = sweeper
    task_id = post_task(client, {"kind": "render", "n": 1, "post": 2}).json["id"]
    redis = redis_server.client()
    redis.delete(QUEUE)
    time.sleep(0.3)
    assert sweeper.sweep() == []
    # a worker claimed it between the two sweeps: another attempt, not a loss yet
    with connect(database_url) as cur:
        cur.execute(
            "UPDATE task SET status = 'running', attempts = 1, started_at = now() - "
            "interval '1 s' WHERE id = %s",
            (task_id,),
        )
    assert sweeper.sweep() == []
    assert sweeper.sweep() == [task_id]
    assert queued_ids(redis) == [task_id]


def test_the_sweep_leaves_a_running_task_alone(sweeper, redis_server, start_worker):
    sweeper, client = sweeper
    start_worker(concurrency=1)
    location = start_slow_task(client, delay=2)
    # delivered, not acknowledged: in Redis's hash of those, not in the queue
    redis = redis_server.client()
    assert redis.llen(QUEUE) == 0
    assert redis.hlen("unacked") == 1
    time.sleep(0.3)
    assert sweeper.sweep() == []
    assert sweeper.sweep() == []
    assert status_of(client, location) == "running"


def test_one_worker_sweeps_at_a_time(sweeper, database_url):
    sweeper, _ = sweeper
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sweep.SWEEP_LOCK)  # another worker's sweep, its transaction open
            assert cur.fetchone()[0]
            assert sweeper.sweep() is None
    finally:
        conn.close()
    assert sweeper.sweep() is not None


def test_a_task_redis_lost_is_run_by_the_workers_sweep(client, redis_server, start_worker):
    # Redis loses a message: the worker took it and could neither record nor
    # restore it (Redis stopped). Its row stays queued with nothing to run it.
    kept, lost = (post_task(client, {"kind": "render", "n": 1, "post": 2}) for _ in range(2))
    redis = redis_server.client()
    assert redis.lrem(QUEUE, 1, redis.lindex(QUEUE, 0)) == 1  # the newest: `lost`
    assert queued_ids(redis) == [kept.json["id"]]
    worker = start_worker(concurrency=1, **SHORT_LIMITS)  # visibility 5 s: a sweep a second
    started = time.monotonic()
    for response in (kept, lost):
        _, done = poll_client(client, response.headers["Location"], timeout=20)
        assert done["status"] == "done", done
        assert done["attempts"] == 1
    took = time.monotonic() - started
    print(f"\nthe lost task done {took:.1f} s after its worker started (a sweep a second)")
    # untouched for a sweep's interval, then missing in two sweeps
    assert took < 1 + 3 * sweep.interval_for(SHORT_LIMITS["task_visibility_timeout"]) + 5
    published = re.findall(r"task (\S+): queued, attempts 0, and Redis lost", worker.output())
    assert published == [lost.json["id"]]


# --- 4. failures --------------------------------------------------------------


def test_missing_post_fails_at_once(client, start_worker):
    start_worker()
    response = post_task(client, {"kind": "render", "post": 999_999})
    assert response.status_code == 202
    seen, done = poll_client(client, response.headers["Location"])
    assert seen[-1] == 200
    assert done["status"] == "failed"
    assert done["error"] == "no post with id 999999"
    assert done["attempts"] == 1
    assert done["result"] is None
    assert done["finished_at"] is not None


def test_unreachable_upstream_fails_after_its_retries(client, start_worker):
    closed = f"http://127.0.0.1:{free_port()}"
    start_worker(upstream_url=closed, task_max_retries=2)
    response = post_task(client, {"kind": "upstream", "delay": 0})
    assert response.status_code == 202
    started = time.monotonic()
    _, done = poll_client(client, response.headers["Location"], timeout=20)
    assert done["status"] == "failed", done
    assert done["attempts"] == 3  # max_retries + 1
    assert done["error"].startswith("upstream unreachable after 3 attempts: "), done["error"]
    assert "refused" in done["error"]
    # Two backoffs of 0.5 and 1 s between the three attempts.
    assert time.monotonic() - started >= 1.5


def test_default_retries_are_three(client, start_worker):
    start_worker(upstream_url=f"http://127.0.0.1:{free_port()}")
    response = post_task(client, {"kind": "upstream", "delay": 0})
    _, done = poll_client(client, response.headers["Location"], timeout=20)
    assert (done["status"], done["attempts"]) == ("failed", 4)
    assert done["error"].startswith("upstream unreachable after 4 attempts: ")


def test_time_limit_fails_the_task(client, start_worker):
    start_worker(**SHORT_LIMITS)
    response = post_task(client, {"kind": "upstream", "delay": 5})
    _, done = poll_client(client, response.headers["Location"], timeout=20)
    assert done["status"] == "failed", done
    assert done["error"].startswith("time limit exceeded")
    assert done["attempts"] == 1


# --- 5. a burst ---------------------------------------------------------------


def test_burst_is_bounded(broker_app, redis_server, start_worker, database_url):
    """10,000 POSTs: all 202, the backlog waits in Redis, the worker does not grow."""
    burst = 10_000
    task_body = {"kind": "render", "n": 20, "post": 1}
    app = broker_app(DB_MODE="pool", DB_POOL_MIN=8, DB_POOL_MAX=8)
    worker = start_worker(concurrency=2)
    # Warm up first: in its first tasks a pool process allocates what it then
    # reuses and copies pages it shared with the main process.
    warm_up = app.test_client()
    warm_body = task_body | {"n": 1}
    locations = [warm_up.post("/tasks", json=warm_body).headers["Location"] for _ in range(60)]
    for location in locations:
        assert poll_client(warm_up, location)[1]["status"] == "done"
    local = threading.local()
    worker_pss = [worker.pss_kib()]
    main_rss = [rss_kib(worker.proc.pid)]
    app_rss = [rss_kib(os.getpid())]
    queue = redis_server.client()
    peak_queue = [0]
    done_sampling = threading.Event()

    def sample():
        while not done_sampling.wait(0.25):
            peak_queue[0] = max(peak_queue[0], queue.llen(QUEUE))
            worker_pss.append(worker.pss_kib())
            main_rss.append(rss_kib(worker.proc.pid))
            app_rss.append(rss_kib(os.getpid()))

    def one(_):
        if not hasattr(local, "client"):
            local.client = app.test_client()
        response = local.client.post("/tasks", json=task_body)
        return response.status_code, response.json.get("id")

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(burst)))
    finally:
        done_sampling.set()
        sampler.join()
    elapsed = time.monotonic() - started
    app_rss.append(rss_kib(os.getpid()))
    worker_pss.append(worker.pss_kib())
    main_rss.append(rss_kib(worker.proc.pid))
    backlog = queue.llen(QUEUE)
    ids = [task_id for _, task_id in outcomes if task_id]
    warm_ids = [location.rpartition("/")[2] for location in locations]
    try:
        statuses = {}
        for status, _ in outcomes:
            statuses[status] = statuses.get(status, 0) + 1
        assert statuses == {202: burst}
        # counted after the backlog: a task that left the queue since is counted here
        started = sum(
            1 for status, _ in task_rows(database_url, ids).values() if status != "queued"
        )
        print(
            f"\n{burst} POSTs in {elapsed:.1f} s ({burst / elapsed:.0f}/s); queue "
            f"{backlog} after the burst (peak sampled {peak_queue[0]}), {started} started; "
            f"worker memory (PSS of main + 2 pool processes) {worker_pss[0] / 1024:.0f} -> max "
            f"{max(worker_pss) / 1024:.0f} MiB, its main process RSS {main_rss[0] / 1024:.0f} -> "
            f"max {max(main_rss) / 1024:.0f} MiB; test process RSS {app_rss[0] / 1024:.0f} -> "
            f"{app_rss[-1] / 1024:.0f} MiB"
        )
        # The backlog is in Redis: every task the worker has not started is
        # queued there, but the one each pool process has reserved.
        assert backlog + started >= burst - 2
        assert backlog >= burst * 0.8
        # Three processes that share what they imported before the fork (the
        # app, Flask, Celery, Markdown): 100 MiB measured idle, 133 MiB after
        # hundreds of these tasks, where it stays; each holds one task.
        assert max(worker_pss) < 150 * 1024
        assert max(worker_pss) - worker_pss[0] < 30 * 1024
        # The main process holds the Redis connection: with a prefetch of one it
        # does not take the backlog in.
        assert max(main_rss) - main_rss[0] < 10 * 1024
        # The app keeps nothing per task: no thread, no queue, no result. Its
        # threads, pools and first requests cost about 20 MiB at once (and
        # the 10,000 ids the test keeps); then it stays flat.
        assert app_rss[-1] - app_rss[0] < 40 * 1024
        assert app_rss[-1] - app_rss[len(app_rss) // 4] < 10 * 1024

        purged = app.extensions["labapp.celery"].control.purge()
        assert purged >= backlog - started
        assert queue.llen(QUEUE) == 0
    finally:
        worker.stop()
        delete_tasks(database_url, ids + warm_ids)


# --- 6. a reload during a burst -----------------------------------------------


def test_reload_during_burst_loses_nothing(worker_env, start_worker, database_url):
    env = worker_env(db_mode="pool")
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--threads", "4", "--graceful-timeout", "10", "labapp.wsgi:app"]  # fmt: skip
    start_worker()
    with ServerProcess(argv, port, env) as server:
        workers_before = children(server.proc.pid)
        body = b'{"kind": "render", "n": 1, "post": 2}'
        headers = {"Content-Type": "application/json"}

        def one(i):
            if i == 150:
                server.proc.send_signal(signal.SIGHUP)
            status, _, reply = http_json(
                f"{server.url}/tasks", method="POST", data=body, headers=headers, timeout=30
            )
            return status, reply.get("id")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(400)))
        # The reload happened: new gunicorn workers took over.
        wait_for(lambda: set(children(server.proc.pid)).isdisjoint(workers_before), 20, "reloaded")
    ids = [task_id for status, task_id in outcomes if status == 202]
    assert len(ids) == len(outcomes), [status for status, _ in outcomes if status != 202]
    try:
        wait_for(
            lambda: all(status == "done" for status, _ in task_rows(database_url, ids).values()),
            60,
            "all done",
        )
        assert len(task_rows(database_url, ids)) == len(ids)
    finally:
        delete_tasks(database_url, ids)


# --- 7. bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"json": {"kind": "sleep"}}, "kind"),
        ({"json": {"kind": ["render"]}}, "kind"),
        ({"json": {"n": 0}}, "n"),
        ({"json": {"n": 1001}}, "n"),
        ({"json": {"n": "many"}}, "n"),
        ({"json": {"n": True}}, "n"),
        ({"json": {"n": 2.5}}, "n"),
        ({"json": {"post": 0}}, "post"),
        ({"json": {"post": "first"}}, "post"),
        ({"json": {"kind": "upstream", "delay": 31}}, "delay"),
        ({"json": {"kind": "upstream", "delay": -1}}, "delay"),
        ({"json": {"kind": "upstream", "delay": "soon"}}, "delay"),
        ({"json": {"kind": "upstream", "n": 5}}, "n"),
        ({"json": {"kind": "render", "delay": 1}}, "delay"),
        ({"json": {"seconds": 1}}, "seconds"),
        ({"data": {"n": "x"}}, "n"),
        ({"query_string": {"kind": "upstream", "delay": "1e9"}}, "delay"),
        ({"data": "[1]", "content_type": "application/json"}, "body"),
    ],
)  # fmt: skip
def test_bad_input_is_400_and_queues_nothing(client, redis_server, database_url, kwargs, parameter):
    rows = task_rows(database_url)
    response = client.post("/tasks", **kwargs)
    assert response.status_code == 400
    assert response.json["parameter"] == parameter
    assert response.json["error"]
    assert redis_server.client().llen(QUEUE) == 0
    assert task_rows(database_url) == rows


def test_form_and_query_parameters_work_too(client, redis_server):
    assert client.post("/tasks", data={"kind": "upstream", "delay": "0"}).status_code == 202
    assert client.post("/tasks?kind=render&n=1&post=2").status_code == 202
    assert client.post("/tasks").status_code == 202
    assert redis_server.client().llen(QUEUE) == 3


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid", "42"])
def test_unknown_task_is_404(client, task_id):
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 404
    assert response.is_json


# --- any process answers; gevent publishes --------------------------------------


def test_task_state_is_shared_between_processes(worker_env, start_worker, database_url):
    """POST to gunicorn's gevent worker (labapp.green, monkey-patched), poll the
    gevent server: publishing works on greenlets, and any process reports."""
    env = worker_env(db_mode="pool")
    worker = start_worker()
    port_a, port_b = free_port(), free_port()
    starter = ServerProcess(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "--worker-connections", "100",
         "--bind", f"127.0.0.1:{port_a}", "labapp.green:app"],
        port_a,
        env,
    )  # fmt: skip
    reporter = ServerProcess(
        [sys.executable, "-m", "labapp.gevent_server", "--bind", f"127.0.0.1:{port_b}"],
        port_b,
        env,
    )
    with starter, reporter:
        status, headers, task = http_json(
            f"{starter.url}/tasks",
            method="POST",
            data=b'{"kind": "upstream", "delay": 0.5}',
            headers={"Content-Type": "application/json"},
        )
        assert status == 202, task
        location = headers["Location"]

        def status_on_reporter():
            status, _, body = http_json(f"{reporter.url}{location}")
            return status, body

        seen, done = poll(status_on_reporter)
        assert seen[0] == 202
        assert seen[-1] == 200
        assert done["id"] == task["id"]
        assert done["status"] == "done"
        # The work ran in the Celery worker, not in either server.
        assert done["result"]["pid"] in worker.pool_pids()
        assert done["result"]["pid"] not in (starter.proc.pid, reporter.proc.pid)

        # Concurrent publishes from greenlets share the broker connection pool.
        def one(_):
            status, _, reply = http_json(
                f"{starter.url}/tasks",
                method="POST",
                data=b'{"kind": "render", "n": 1, "post": 2}',
                headers={"Content-Type": "application/json"},
            )
            return status, reply.get("id")

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            outcomes = list(pool.map(one, range(200)))
    ids = [task_id for _, task_id in outcomes]
    try:
        assert [status for status, _ in outcomes] == [202] * 200
        all_done = False
        with contextlib.suppress(pytest.fail.Exception):
            all_done = wait_for(
                lambda: [s for s, _ in task_rows(database_url, ids).values()] == ["done"] * 200,
                30,
                "all done",
            )
        if not all_done:
            statuses = collections.Counter(s for s, _ in task_rows(database_url, ids).values())
            noted = [
                line
                for line in worker.output().splitlines()
                if re.search(r"dropped|failed|retrying|WARNING|ERROR", line)
            ]
            pytest.fail(f"not all done after 30 s: {dict(statuses)}; worker said: {noted[-20:]}")
    finally:
        delete_tasks(database_url, ids)


# --- settings -------------------------------------------------------------------


def test_task_settings_come_from_the_environment(monkeypatch, redis_server):
    monkeypatch.setenv("LABAPP_BROKER_URL", redis_server.url)
    monkeypatch.setenv("LABAPP_TASK_MAX_RETRIES", "5")
    monkeypatch.setenv("LABAPP_TASK_TIME_LIMIT", "10")
    monkeypatch.setenv("LABAPP_TASK_VISIBILITY_TIMEOUT", "20")
    celery = create_app().extensions["labapp.celery"]
    assert celery.conf.broker_url == redis_server.url
    assert celery.conf.broker_transport_options["visibility_timeout"] == 20
    assert (celery.conf.task_time_limit, celery.conf.task_soft_time_limit) == (10, 9)
    assert celery.conf.task_acks_late is True
    assert celery.conf.task_reject_on_worker_lost is True
    assert celery.conf.worker_prefetch_multiplier == 1


def test_task_defaults():
    app = create_app({"BROKER_URL": "redis://:secret@127.0.0.1:6379/0"})
    config = app.config
    assert (config["TASK_MAX_RETRIES"], config["TASK_TIME_LIMIT"]) == (3, 30)
    assert config["TASK_VISIBILITY_TIMEOUT"] == 60
    assert create_app().extensions["labapp.celery"] is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TASK_TIME_LIMIT": 60, "TASK_VISIBILITY_TIMEOUT": 60}, "must be greater than"),
        ({"TASK_TIME_LIMIT": 90}, "LABAPP_TASK_VISIBILITY_TIMEOUT must be greater"),
        ({"TASK_TIME_LIMIT": 0}, "LABAPP_TASK_TIME_LIMIT must be at least 1"),
        ({"TASK_MAX_RETRIES": -1}, "LABAPP_TASK_MAX_RETRIES must be at least 0"),
        ({"TASK_MAX_RETRIES": "few"}, "LABAPP_TASK_MAX_RETRIES must be a whole number"),
        ({"BROKER_URL": "amqp://guest:secret@rabbit//"}, "LABAPP_BROKER_URL must be a redis"),
    ],
)
def test_bad_task_settings_fail_at_startup(settings, message):
    with pytest.raises(ValueError, match=message) as failure:
        create_app(settings)
    assert "secret" not in str(failure.value)


def test_worker_refuses_to_start_without_a_broker(database_url, upstream):
    env = app_env(database_url, upstream.url)
    worker = CeleryWorker(env)
    with pytest.raises(RuntimeError, match="exited early") as failure:
        worker.start(timeout=30)
    assert "LABAPP_BROKER_URL is not set" in str(failure.value)


def test_worker_refuses_a_visibility_timeout_within_the_time_limit(worker_env):
    env = worker_env(task_time_limit=30, task_visibility_timeout=10)
    with pytest.raises(RuntimeError, match="exited early") as failure:
        CeleryWorker(env).start(timeout=30)
    assert "LABAPP_TASK_VISIBILITY_TIMEOUT must be greater than LABAPP_TASK_TIME_LIMIT" in str(
        failure.value
    )
