"""The benchmark schema and its seed data, and the idempotent ``init-db`` command."""

import click
import psycopg2
from flask import current_app
from flask.cli import with_appcontext

WORLD_ROWS = 10_000

TABLES = {
    "world": "CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL)",
    "fortune": "CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL)",
    "post": "CREATE TABLE post (id integer PRIMARY KEY, title text NOT NULL, body text NOT NULL)",
    # Task state lives here rather than in a process so that any worker of any
    # server can answer for a task another one started, and the Celery worker
    # (labapp.worker) records its progress: queued -> running -> done | failed.
    "task": """
        CREATE TABLE task (
            id uuid PRIMARY KEY,
            kind text NOT NULL,
            params jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'queued'
                CONSTRAINT task_status_check
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
            result jsonb,
            error text,
            attempts integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz
        )
    """,
}

# The task sweep (labapp/sweep.py) reads the unfinished tasks, oldest first.
INDEXES = {
    "task_unfinished": (
        "CREATE INDEX task_unfinished ON task (created_at) WHERE status IN ('queued', 'running')"
    ),
}

# The task table before Celery: (id, seconds, status running|done|failed, result,
# created_at, finished_at), the work a thread in the server process. Its rows
# are kept as kind 'sleep'; those still 'running' were lost with their thread.
MIGRATE_THREAD_TASKS = [
    "ALTER TABLE task ADD COLUMN IF NOT EXISTS kind text",
    "ALTER TABLE task ADD COLUMN IF NOT EXISTS params jsonb NOT NULL DEFAULT '{}'",
    "ALTER TABLE task ADD COLUMN IF NOT EXISTS error text",
    "ALTER TABLE task ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0",
    "ALTER TABLE task ADD COLUMN IF NOT EXISTS started_at timestamptz",
    """UPDATE task SET kind = 'sleep', params = jsonb_build_object('seconds', seconds),
           attempts = 1, started_at = created_at WHERE kind IS NULL""",
    """UPDATE task SET status = 'failed', finished_at = now(),
           error = 'lost: its thread ended with the server process when tasks moved to Celery'
       WHERE status = 'running'""",
    "ALTER TABLE task ALTER COLUMN kind SET NOT NULL",
    "ALTER TABLE task DROP COLUMN seconds",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_status_check",
    """ALTER TABLE task ADD CONSTRAINT task_status_check
           CHECK (status IN ('queued', 'running', 'done', 'failed'))""",
    "ALTER TABLE task ALTER COLUMN status SET DEFAULT 'queued'",
]

# TechEmpower's fortunes, verbatim: the markup and the non-ASCII rows are the test.
FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. \u2014 Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]

_SECTION = """\
## {title} {n}

Rendering *Markdown* is a **CPU-bound** job: no database wait, no network wait,
just Python turning text into HTML. This paragraph has `inline code`, a
[link](https://example.org/{n}) and sentences long enough to give the inline
patterns something to scan.

- first point of section {n}
- second point, with *emphasis*
    1. a nested, numbered item
    2. and another one

| server | model | slots |
|--------|-------|------:|
| gunicorn | sync | {n} |
| uwsgi | threads | {n}0 |

```python
def section_{n}():
    return {n} * {n}
```

> A quotation closes section {n}.
"""


def _post_body(sections):
    return "\n".join(_SECTION.format(title="Section", n=n) for n in range(1, sections + 1))


# Post 1 is what /render renders by default; the others give a short and a long variant.
POSTS = [
    (1, "The benchmark post", _post_body(8)),
    (2, "A short note", _post_body(1)),
    (3, "A long read", _post_body(40)),
]


def init_db(dsn, connect_timeout=10):
    """Create and fill the schema; return "created", "updated" or "unchanged"."""
    conn = psycopg2.connect(dsn, connect_timeout=connect_timeout)
    try:
        with conn, conn.cursor() as cur:
            # Several app hosts may run init-db at the same moment.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('labapp.init-db'))")
            created = _create_missing(cur, TABLES)
            migrated = _migrate(cur)
            migrated |= _create_missing(cur, INDEXES)
            changed = _seed(cur)
            if created or changed:
                cur.execute("ANALYZE world, fortune, post")
    finally:
        conn.close()
    if created:
        return "created"
    return "updated" if changed or migrated else "unchanged"


def _create_missing(cur, relations):
    """Create the tables or indexes of ``relations`` ({name: DDL}) that do not exist."""
    created = False
    for name, ddl in relations.items():
        cur.execute("SELECT to_regclass(%s)", (name,))
        if cur.fetchone()[0] is None:
            cur.execute(ddl)
            created = True
    return created


def _migrate(cur):
    """Bring an existing task table of the thread-based version up to date; True if it did."""
    cur.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'task' AND column_name = 'seconds'"
    )
    if cur.fetchone() is None:
        return False
    for statement in MIGRATE_THREAD_TASKS:
        cur.execute(statement)
    return True


def _seed(cur):
    """Bring the rows to their reference state; return how many rows that touched."""
    touched = 0
    cur.execute("DELETE FROM world WHERE id NOT BETWEEN 1 AND %s", (WORLD_ROWS,))
    touched += cur.rowcount
    cur.execute(
        """
        INSERT INTO world (id, randomnumber)
        SELECT i, 1 + floor(random() * %(rows)s)::integer FROM generate_series(1, %(rows)s) i
        ON CONFLICT (id) DO NOTHING
        """,
        {"rows": WORLD_ROWS},
    )
    touched += cur.rowcount
    touched += _upsert(cur, "fortune", ("id", "message"), FORTUNES)
    touched += _upsert(cur, "post", ("id", "title", "body"), POSTS)
    return touched


def _upsert(cur, table, columns, rows):
    # Table and column names are our constants, never input; values are parameters.
    keep = [row[0] for row in rows]
    cur.execute(f"DELETE FROM {table} WHERE id <> ALL(%s)", (keep,))  # noqa: S608
    touched = cur.rowcount
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
    placeholders = ", ".join(["%s"] * len(columns))
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in columns[1:])
    cur.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT (id) DO UPDATE SET {updates} WHERE {changed}",
        rows,
    )
    return touched + cur.rowcount


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create and seed the benchmark schema; prints created, updated or unchanged."""
    try:
        config = current_app.config
        outcome = init_db(config["DATABASE_URL"], config["DB_CONNECT_TIMEOUT"])
    except psycopg2.OperationalError as exc:
        raise click.ClickException(f"cannot initialise the database: {exc}".strip()) from exc
    click.echo(outcome)
