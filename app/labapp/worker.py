"""The Celery worker that runs ``POST /tasks``: ``celery --app labapp.worker``.

Run it from the app's virtualenv, with ``app/`` on the Python path and the same
``LABAPP_*`` environment as the web servers (it builds the same app, so it
reads the same settings and fails at start on the same bad values)::

    <venv>/bin/celery --app labapp.worker worker --concurrency N --loglevel INFO

``LABAPP_BROKER_URL`` is required here (the worker refuses to start without
it); ``LABAPP_TASK_MAX_RETRIES``, ``LABAPP_TASK_TIME_LIMIT`` and
``LABAPP_TASK_VISIBILITY_TIMEOUT`` apply. Everything else about delivery is
configured in code (labapp/broker.py): late acknowledgement, a task handed
back when its pool process dies, one task reserved per process, the time
limits. Optional flags:

- ``--without-mingle --without-gossip``: start sooner and skip the
  worker-to-worker broadcasts (nothing here relies on them);
- ``--hostname NAME@%h``: a distinct name per worker on one machine.

The default pool is prefork: ``--concurrency`` pool processes, each running
one task at a time. A pool process killed mid-task hands its task back to
the queue once the pool notices (its maintenance tick, at most about 6 s);
one that outruns LABAPP_TASK_TIME_LIMIT is killed and its task recorded as
failed (at 90 % of the limit the task itself records it).

The worker stops on SIGTERM after its running tasks (warm shutdown: give its
unit a stop timeout longer than LABAPP_TASK_TIME_LIMIT); SIGKILL leaves them
unacknowledged in Redis, which gives them to another worker after
LABAPP_TASK_VISIBILITY_TIMEOUT seconds, and a task is run again from the
start (the ``task`` row keeps a finished task from running twice).

A thread of the worker publishes again the tasks whose message Redis lost
(labapp/sweep.py): every LABAPP_TASK_VISIBILITY_TIMEOUT / 5 seconds (1 to
10), one worker at a time.
"""

import contextlib
import logging

from celery import signals
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from labapp import create_app, jobs, sweep
from labapp.broker import TASK_NAME
from labapp.db import NaiveDatabase, Unavailable

log = logging.getLogger(__name__)

flask_app = create_app()
config = flask_app.config
celery = flask_app.extensions["labapp.celery"]
if celery is None:
    raise RuntimeError(
        "LABAPP_BROKER_URL is not set: the worker has no broker to take tasks from "
        "(redis://:PASSWORD@HOST:6379/0)"
    )

# A connection per task, whatever LABAPP_DB_MODE says: a task makes a few
# statements, and a pool made in the main process would be inherited by the
# pool processes it forks.
database = NaiveDatabase(config["DATABASE_URL"], config["DB_CONNECT_TIMEOUT"])
MAX_RETRIES = config["TASK_MAX_RETRIES"]
# Tasks whose message Redis lost are published again (labapp/sweep.py).
sweeper = sweep.Sweeper(database, celery, sweep.interval_for(config["TASK_VISIBILITY_TIMEOUT"]))
celery.steps["worker"].add(sweep.step_for(sweeper))
TIME_LIMIT_EXCEEDED = f"time limit exceeded (LABAPP_TASK_TIME_LIMIT={config['TASK_TIME_LIMIT']} s)"


@celery.task(name=TASK_NAME, bind=True, max_retries=None)
def run_task(self, task_id):
    """Run the task whose ``task`` row has the id ``task_id``."""
    attempt = self.request.retries + 1
    try:
        started = jobs.start(database, task_id, max_attempts=MAX_RETRIES + 1)
        if started is None:
            return
        kind, params, attempts = started
        attempt = max(attempt, attempts)
        result = jobs.execute(database, config, kind, params)
        result |= {"attempt": attempt, "worker": self.request.hostname}
        jobs.finish(database, task_id, result)
    except jobs.PermanentError as exc:
        _fail(task_id, str(exc))
    except SoftTimeLimitExceeded:
        _fail(
            task_id, f"time limit exceeded (LABAPP_TASK_TIME_LIMIT={config['TASK_TIME_LIMIT']} s)"
        )
    except (jobs.TransientError, Unavailable) as exc:
        _retry_or_fail(self, task_id, attempt, exc)


def _retry_or_fail(task, task_id, attempt, exc):
    if isinstance(exc, Unavailable):
        what, detail = exc.reason, " ".join(str(exc.__cause__ or "no detail").split())
    else:
        what, detail = exc.what, exc.detail
    if attempt > MAX_RETRIES:
        _fail(task_id, f"{what} after {attempt} attempts: {detail}")
        return
    delay = jobs.backoff(attempt, config["TASK_TIME_LIMIT"], config["TASK_VISIBILITY_TIMEOUT"])
    log.warning(
        "task %s: attempt %d: %s: %s; retrying in %g s", task_id, attempt, what, detail, delay
    )
    with contextlib.suppress(Unavailable):
        jobs.requeue(database, task_id, f"attempt {attempt}: {what}: {detail}")
    try:
        raise task.retry(countdown=delay, exc=exc)
    except Reject as reject:
        # The retry could not be published (Redis down): hand this delivery
        # back instead of dropping it; Redis redelivers it in any case.
        raise Reject(reject.reason, requeue=True) from exc


def _fail(task_id, reason):
    log.warning("task %s failed: %s", task_id, reason)
    try:
        jobs.fail(database, task_id, reason)
    except Unavailable as exc:
        log.error("task %s: cannot record its failure (%s): %s", task_id, exc.reason, reason)


@signals.task_failure.connect
def _record_unexpected_failure(sender=None, task_id=None, exception=None, args=None, **_):
    """Whatever ``run_task`` did not handle (a bug, the hard time limit, which
    Celery reports from the main process) still ends the row as failed."""
    if getattr(sender, "name", None) != TASK_NAME or not args:
        return
    if isinstance(exception, SoftTimeLimitExceeded | Retry | Reject):
        return
    if isinstance(exception, TimeLimitExceeded):
        _fail(args[0], f"{TIME_LIMIT_EXCEEDED}; the worker killed it")
    else:
        _fail(args[0], f"{type(exception).__name__}: {exception}".rstrip(": "))
