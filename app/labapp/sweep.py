"""The sweep: a task whose message Redis no longer holds is published again.

The ``task`` row is the record of the work; the message in Redis only asks a
worker to do it. Redis can lose the message while the row stays ``queued``: a
worker takes it from the queue just as Redis stops, cannot record it as
unacknowledged, and cannot give it back either (the worker logs "Restoring 1
unacknowledged message(s)" with Redis gone). Nothing would ever run the task.

So the worker runs a sweep every ``interval`` seconds, in a thread of its
own. One worker sweeps at a time (a PostgreSQL advisory lock): it lists the
unfinished rows untouched for an interval and asks Redis, in one atomic
script, which of them it holds (in the queue's lists, or delivered and not
yet acknowledged). A row Redis did not hold in two of this worker's sweeps
in a row, with the same status and attempts both times, is published again
under its own id. Two sweeps, because a message is in neither place for the
moment between a worker's taking it and its recording it as unacknowledged,
and a retried task's row is queued a moment before its next message is
published. Publishing again is safe: the row decides what runs
(labapp/jobs.py), and a delivery of a finished task changes nothing.

Its cost: a query on a partial index when nothing waits; while rows older
than an interval wait (a backlog), one pass of Redis's script over the
queue per sweep, which decodes every message in it and blocks Redis
meanwhile: 90-117 ms for 10,000 messages of 1 kB on the machine this was
written on, so about 1 % of Redis's time at one sweep in 10 s.
"""

import logging
import threading

from celery import bootsteps

from labapp import broker
from labapp.broker import QUEUE
from labapp.db import Unavailable

log = logging.getLogger(__name__)

# Rows looked at per sweep, oldest first.
BATCH = 1000
SWEEP_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('labapp.sweep', 0))"
# KEYS: the queue's lists (one per priority), then the hash of the delivered
# and unacknowledged messages ([message, exchange, routing key]); ARGV: task
# ids. Returns the ids among them that some message carries (headers.id).
HELD_SCRIPT = """
local wanted, held = {}, {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local function look(raw)
  local ok, message = pcall(cjson.decode, raw)
  if not ok or type(message) ~= 'table' then return end
  if type(message[1]) == 'table' then message = message[1] end
  local headers = message.headers
  local id = type(headers) == 'table' and headers.id
  if id and wanted[id] then
    held[#held + 1] = id
    wanted[id] = nil
  end
end
for i = 1, #KEYS - 1 do
  for _, raw in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do look(raw) end
end
for _, raw in ipairs(redis.call('HVALS', KEYS[#KEYS])) do look(raw) end
return held
"""


def interval_for(visibility_timeout):
    """Seconds between sweeps: a few per visibility timeout, 1 to 10."""
    return max(1, min(10, visibility_timeout // 5))


class Sweeper:
    def __init__(self, database, celery, interval):
        self.database = database
        self.celery = celery
        self.interval = interval
        # {task id: (status, attempts)} that Redis did not hold at the last sweep
        self.suspects = {}

    def sweep(self):
        """One sweep; the ids published again, or None when another worker holds the lock."""
        # the connection is closed afterwards, which ends the transaction and its lock
        with self.database.connection() as conn, conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(SWEEP_LOCK)
            if not cur.fetchone()[0]:
                return None
            cur.execute(
                "SELECT id::text, status, attempts FROM task "
                "WHERE status IN ('queued', 'running') "
                "AND greatest(created_at, started_at) < now() - make_interval(secs => %s) "
                "ORDER BY created_at LIMIT %s",
                (self.interval, BATCH),
            )
            unfinished = {task_id: (status, attempts) for task_id, status, attempts in cur}
            held = self._held(unfinished) if unfinished else set()
            missing = {t: state for t, state in unfinished.items() if t not in held}
            lost = [t for t, state in missing.items() if self.suspects.get(t) == state]
            for task_id in lost:
                broker.publish(self.celery, task_id)
                log.warning(
                    "task %s: %s, attempts %d, and Redis lost its message: published again",
                    task_id,
                    *missing[task_id],
                )
            self.suspects = {t: state for t, state in missing.items() if t not in lost}
            cur.execute("COMMIT")
        return lost

    def _held(self, task_ids):
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            client = channel.client
            # the transport's own names for the queue's priority lists (a private
            # helper of kombu's Redis channel: named here, not spelled again)
            keys = [
                *dict.fromkeys(channel._q_for_pri(QUEUE, pri) for pri in channel.priority_steps),
                channel.unacked_key,
            ]
            held = client.register_script(HELD_SCRIPT)(keys=keys, args=list(task_ids))
        return {item.decode() if isinstance(item, bytes) else item for item in held}


def step_for(sweeper):
    """The worker's bootstep running ``sweeper``: ``celery.steps["worker"].add(step_for(s))``."""
    return type("TaskSweep", (SweepStep,), {"sweeper": sweeper})


class SweepStep(bootsteps.StartStopStep):
    """Runs ``sweeper.sweep()`` every ``sweeper.interval`` seconds in a thread
    from the worker's start to its stop."""

    sweeper = None

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stopping = threading.Event()
        self.thread = None

    def start(self, worker):
        self.thread = threading.Thread(
            target=self._run, args=(self.sweeper,), name="labapp-sweep", daemon=True
        )
        self.thread.start()

    def stop(self, worker):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _run(self, sweeper):
        while not self.stopping.wait(sweeper.interval):
            try:
                sweeper.sweep()
            except (Unavailable, broker.BrokerUnavailable, *broker.PUBLISH_ERRORS) as exc:
                # the next sweep tries again; the suspects are kept
                log.warning("task sweep skipped: %s", " ".join(str(exc).split()))
            except Exception:
                # a defect, not an outage: said loudly, and the sweeps go on
                log.exception("task sweep failed")
