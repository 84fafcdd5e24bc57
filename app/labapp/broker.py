"""The Celery application both sides share: the app publishes, ``labapp.worker`` consumes.

One configuration, built from the app's settings (``LABAPP_*``), so that the
web servers and the worker cannot disagree about the broker, the queue or the
delivery guarantees:

- at-least-once delivery: a task is acknowledged after it ran
  (``task_acks_late``), and a worker process that dies mid-task gives it back
  (``task_reject_on_worker_lost``); a worker that dies altogether leaves it
  unacknowledged in Redis, which hands it out again after the visibility
  timeout. The work is idempotent with respect to its ``task`` row.
- bounded: each worker process reserves one task at a time
  (``worker_prefetch_multiplier = 1``); the backlog waits in Redis, not in
  the app or the worker.
- a publish fails fast: short socket timeouts, no publish retries, a bounded
  wait for a pooled connection; the request gets a 503 instead of hanging.
"""

from celery import Celery
from celery.exceptions import CeleryError
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

# The one task the worker registers, and the queue (a Redis list of that name).
TASK_NAME = "labapp.run_task"
QUEUE = "labapp.tasks"

# Seconds to open a TCP connection to Redis, then for any reply; Redis on the
# same network answers in milliseconds, so a publish gives up within about
# PUBLISH_CONNECT_TIMEOUT when Redis is down and PUBLISH_SOCKET_TIMEOUT when it hangs.
PUBLISH_CONNECT_TIMEOUT = 1.0
PUBLISH_SOCKET_TIMEOUT = 2.0
# Seconds a request waits for a free pooled broker connection before a 503.
POOL_ACQUIRE_TIMEOUT = 0.5
# Pooled broker connections per app process (Celery's default): enough, since a
# publish holds one for about a millisecond.
POOL_LIMIT = 10
# Seconds the worker waits for the result of a pool process that died before
# it hands the task back (Celery's default, 10 s, outlasts short time limits,
# which then fail the task instead); the result travels over a local pipe.
WORKER_LOST_WAIT = 1.0
# A soft time limit (SoftTimeLimitExceeded in the task, which records
# "failed") at this fraction of TASK_TIME_LIMIT, the hard one at the limit.
SOFT_LIMIT_FRACTION = 0.9

# What a failed publish raises: Redis refusing, timing out or gone, kombu's
# wrappers of those, and Celery's "no pooled connection in time".
PUBLISH_ERRORS = (RedisError, KombuError, CeleryError, OSError)


class BrokerUnavailable(Exception):
    """The task could not be handed to the broker."""


def make_celery(config):
    """A Celery app for the settings of a Flask config, or None without LABAPP_BROKER_URL."""
    url = config["BROKER_URL"]
    if not url:
        return None
    time_limit = config["TASK_TIME_LIMIT"]
    visibility = config["TASK_VISIBILITY_TIMEOUT"]
    celery = Celery("labapp", set_as_current=False)
    celery.conf.update(
        broker_url=url,
        broker_transport_options={
            "visibility_timeout": visibility,
            # kombu scans the unacknowledged tasks for expired ones every
            # interval * throttle seconds (100 by default): far longer than the
            # visibility timeout. Scan a few times per visibility timeout.
            "unacked_restore_interval": max(1, min(10, visibility // 5)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": PUBLISH_CONNECT_TIMEOUT,
            "socket_timeout": PUBLISH_SOCKET_TIMEOUT,
            "retry_on_timeout": False,
            # Connection.default_channel: one try, no reconnect loop.
            "max_retries": 0,
        },
        broker_connection_timeout=PUBLISH_CONNECT_TIMEOUT,
        broker_pool_limit=POOL_LIMIT,
        broker_pool_acquire_timeout=POOL_ACQUIRE_TIMEOUT,
        # The worker waits for Redis at start and after losing it.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_publish_retry=False,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        # The state lives in PostgreSQL's task table: no result backend.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_lost_wait=WORKER_LOST_WAIT,
        task_time_limit=time_limit,
        task_soft_time_limit=round(time_limit * SOFT_LIMIT_FRACTION, 3),
        # Celery's own log format carries the task id; keep the app's loggers.
        worker_hijack_root_logger=True,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return celery


def publish(celery, task_id):
    """Queue the task ``task_id``, once; BrokerUnavailable when Redis does not take it."""
    try:
        celery.send_task(TASK_NAME, args=[str(task_id)], task_id=str(task_id), retry=False)
    except PUBLISH_ERRORS as exc:
        raise BrokerUnavailable(" ".join(str(exc).split()) or type(exc).__name__) from exc
