"""``flask --app labapp.wsgi init-db``: creates the schema once, then changes nothing."""

import os
import subprocess
import sys
import uuid

import pytest
from labapp import create_app
from labapp.schema import FORTUNES, POSTS, WORLD_ROWS
from labapp_support import APP_DIR, connect


@pytest.fixture
def empty_database(postgres):
    name = "labapp_init_db"
    url = postgres.create_database(name)
    yield url
    with connect(postgres.url()) as cur:
        cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def init_db(url):
    result = create_app({"DATABASE_URL": url}).test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def snapshot(url):
    """Row counts and contents that a second init-db must leave alone."""
    with connect(url) as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM world),"
            " (SELECT sum(id::bigint * randomnumber) FROM world),"
            " (SELECT count(*) FROM fortune),"
            " (SELECT count(*) FROM post),"
            " (SELECT count(*) FROM task)"
        )
        return cur.fetchone()


def test_first_run_creates_and_second_changes_nothing(empty_database):
    assert init_db(empty_database) == "created"
    first = snapshot(empty_database)
    assert first[0] == WORLD_ROWS
    assert first[2:] == (len(FORTUNES), len(POSTS), 0)

    assert init_db(empty_database) == "unchanged"
    assert snapshot(empty_database) == first


def test_repairs_drifted_rows(empty_database):
    init_db(empty_database)
    with connect(empty_database) as cur:
        cur.execute("DELETE FROM world WHERE id > 9990")
        cur.execute("UPDATE fortune SET message = 'edited' WHERE id = 12")
        cur.execute("INSERT INTO fortune VALUES (13, 'extra')")
        cur.execute("DELETE FROM post WHERE id = 2")

    assert init_db(empty_database) == "updated"
    with connect(empty_database) as cur:
        cur.execute("SELECT count(*) FROM world")
        assert cur.fetchone() == (WORLD_ROWS,)
        cur.execute("SELECT id, message FROM fortune ORDER BY id")
        assert cur.fetchall() == FORTUNES
        cur.execute("SELECT id, title, body FROM post ORDER BY id")
        assert cur.fetchall() == POSTS
    assert init_db(empty_database) == "unchanged"


def run_flask_cli(url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABAPP_")}
    env |= {"PYTHONPATH": str(APP_DIR), "LABAPP_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "labapp.wsgi", "init-db"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flask_command_line(empty_database):
    """The exact command the flask_app role runs, with its changed_when contract."""
    first, second = run_flask_cli(empty_database), run_flask_cli(empty_database)
    assert (first.returncode, first.stdout) == (0, "created\n"), first.stderr
    assert (second.returncode, second.stdout) == (0, "unchanged\n"), second.stderr


def test_unreachable_database_fails_with_a_message():
    result = run_flask_cli("postgresql://postgres@127.0.0.1:9/labapp?connect_timeout=2")
    assert result.returncode == 1
    assert "cannot initialise the database" in result.stderr
    assert "Traceback" not in result.stderr


# The task table of the thread-based version, as existing deployments have it.
THREAD_TASK_TABLE = """
    CREATE TABLE task (
        id uuid PRIMARY KEY,
        seconds double precision NOT NULL,
        status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
        result jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
    )
"""


def test_migrates_the_thread_task_table(empty_database):
    init_db(empty_database)
    done_id, running_id = str(uuid.uuid4()), str(uuid.uuid4())
    with connect(empty_database) as cur:
        cur.execute("DROP TABLE task")
        cur.execute(THREAD_TASK_TABLE)
        cur.execute(
            "INSERT INTO task (id, seconds, status, result, finished_at) VALUES "
            "(%s, 1.5, 'done', '{\"pid\": 42}', now()), (%s, 2, 'running', NULL, NULL)",
            (done_id, running_id),
        )

    assert init_db(empty_database) == "updated"
    with connect(empty_database) as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'task' "
            "ORDER BY ordinal_position"
        )
        columns = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT id::text, kind, params, status, result, error, attempts FROM task")
        rows = {row[0]: row[1:] for row in cur.fetchall()}
        # what the Celery version writes is accepted
        cur.execute(
            "INSERT INTO task (id, kind) VALUES (%s, 'render') RETURNING status, params",
            (str(uuid.uuid4()),),
        )
        assert cur.fetchone() == ("queued", {})
    assert columns == {
        "id", "kind", "params", "status", "result", "error", "attempts",
        "created_at", "started_at", "finished_at",
    }  # fmt: skip
    assert rows[done_id] == ("sleep", {"seconds": 1.5}, "done", {"pid": 42}, None, 1)
    kind, params, status, result, error, attempts = rows[running_id]
    assert (kind, params, status, result, attempts) == ("sleep", {"seconds": 2}, "failed", None, 1)
    assert error.startswith("lost: ")

    assert init_db(empty_database) == "unchanged"
    app = create_app({"DATABASE_URL": empty_database})
    body = app.test_client().get(f"/tasks/{running_id}").json
    assert (body["status"], body["kind"]) == ("failed", "sleep")
