"""The app's background tasks as the faults judge them: the rows of PostgreSQL's
``task`` table (read on the db host by hostside/task_table.py) and the worker's
delivery settings (read from its environment file on a worker host).

A task is judged by its row, not by what its client saw: the client polls for
LOADTEST_TASK_TIMEOUT (30 s) at most, a task redelivered after the visibility
timeout finishes later, and a task is lost only when its row never gets to
``done``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flask_deploy_lab.faults.outcome import FaultError

DONE = "done"
FAILED = "failed"
PENDING = ("queued", "running")
# The worker's unit and environment file (roles/celery_worker/vars/main.yml),
# and the settings of it the faults read (its other lines hold passwords: only
# these two lines are ever read).
CELERY_UNIT = "labapp-celery.service"
CELERY_ENV_FILE = "/etc/labapp/celery.env"
TIME_LIMIT = "LABAPP_TASK_TIME_LIMIT"
VISIBILITY_TIMEOUT = "LABAPP_TASK_VISIBILITY_TIMEOUT"
# the celery_worker role's defaults, for a file that lacks a line
DEFAULT_TIME_LIMIT_S = 30.0
DEFAULT_VISIBILITY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TaskRow:
    """One row of the task table (times in Unix seconds, the db host's clock)."""

    id: str
    status: str
    attempts: int
    created: float
    started: float | None = None
    finished: float | None = None
    error: str = ""


@dataclass(frozen=True)
class TaskSettings:
    """What the worker was started with: the hard time limit of one run and the
    broker's visibility timeout (a task unacknowledged that long is delivered again)."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S


def settings_argv() -> list[str]:
    """grep of the two settings' lines, and nothing else, of the worker's env file."""
    return ["grep", "-E", f"^({TIME_LIMIT}|{VISIBILITY_TIMEOUT})=", CELERY_ENV_FILE]


def parse_settings(text: str) -> TaskSettings:
    found = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        if name in (TIME_LIMIT, VISIBILITY_TIMEOUT):
            try:
                found[name] = float(value.strip().strip("\"'"))
            except ValueError:
                raise FaultError(f"{CELERY_ENV_FILE}: {name}={value!r} is not seconds") from None
    return TaskSettings(
        found.get(TIME_LIMIT, DEFAULT_TIME_LIMIT_S),
        found.get(VISIBILITY_TIMEOUT, DEFAULT_VISIBILITY_TIMEOUT_S),
    )


def parse_rows(found) -> tuple[TaskRow, ...]:
    """The rows task_table.py wait printed; FaultError for anything else."""
    if not isinstance(found, dict) or not isinstance(found.get("rows"), list):
        raise FaultError(f"the task table could not be read: {found!r:.200}")
    rows = []
    for row in found["rows"]:
        task_id, status, attempts, created, started, finished, error = row
        rows.append(
            TaskRow(str(task_id), str(status), int(attempts or 0), float(created),
                    started, finished, error or "")
        )  # fmt: skip
    return tuple(rows)


def by_status(rows) -> Counter:
    return Counter(r.status for r in rows)


def status_text(rows) -> str:
    """'118 done, 2 failed' of the rows, in the order of a task's life."""
    counts = by_status(rows)
    order = [DONE, FAILED, *PENDING]
    names = order + sorted(set(counts) - set(order))
    return ", ".join(f"{counts[n]} {n}" for n in names if counts[n]) or "no task"


def errors_text(rows, most=2) -> str:
    """The most frequent errors of the failed rows, quoted."""
    counts = Counter(r.error for r in rows if r.status == FAILED)
    return "; ".join(f'"{e}" x{n}' for e, n in counts.most_common(most))
