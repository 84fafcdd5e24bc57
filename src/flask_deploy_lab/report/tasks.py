"""A tasks cell's background tasks: how long each took from POST to done.

For a cell of the ``tasks`` endpoint the load-test playbook keeps, from the
database, every task created from the start of the measured Locust run
(``<cell>/tasks.csv``, PostgreSQL's CSV with a header)::

    id,status,created,finished

``created`` and ``finished`` are Unix seconds (``finished`` empty while the
task is queued or running); ``status`` is queued, running, done or failed.
The figures are over the tasks created inside the measured window:

    tasks_done        how many were done when the cell ended
    tasks_failed      how many had failed (retries exhausted, or a permanent error)
    tasks_unfinished  how many were still queued or running: their latency is
                      not in the percentiles, which then understate the tail
    task_p50_ms, task_p99_ms, task_max_ms
                      the latency of the done tasks, finished - created (enqueue
                      to done, the queue's wait included): exact, nearest rank

The broker's queue length comes from the samples (``broker_queued``, sampled
each second on the broker host), not from this file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from flask_deploy_lab.report.errors import ReportError
from flask_deploy_lab.report.exact import percentile

TASKS = "tasks.csv"
HEADER = ["id", "status", "created", "finished"]
STATUSES = {"queued", "running", "done", "failed"}


@dataclass(frozen=True)
class TaskFigures:
    done: int
    failed: int
    unfinished: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def read_tasks(cell_dir: Path) -> list[tuple[str, float, float | None]] | None:
    """[(status, created, finished or None)] of the cell's tasks.csv; None without
    one; ReportError naming the file and line when it breaks the layout."""
    path = cell_dir / TASKS
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != HEADER:
            raise ReportError(f"{path}: expected the header {','.join(HEADER)}, got {header}")
        tasks = []
        for number, row in enumerate(reader, start=2):
            try:
                _, status, created, finished = row
                if status not in STATUSES:
                    raise ValueError(f"status {status!r}")
                tasks.append((status, float(created), float(finished) if finished else None))
            except ValueError as exc:
                raise ReportError(f"{path}:{number}: {exc}") from None
    return tasks


def figures(
    tasks: list[tuple[str, float, float | None]], window: tuple[float, float]
) -> TaskFigures:
    """The figures of the tasks created inside the window (see the module's docstring)."""
    start, end = window
    inside = [t for t in tasks if start <= t[1] <= end]
    latencies = sorted(
        (finished - created) * 1000
        for status, created, finished in inside
        if status == "done" and finished is not None
    )
    return TaskFigures(
        done=len(latencies),
        failed=sum(1 for t in inside if t[0] == "failed"),
        unfinished=sum(1 for t in inside if t[0] in ("queued", "running")),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else None,
    )
