"""A rolling reload of Gunicorn's workers, one at a time: the unit's ExecReload.

Gunicorn's own SIGHUP starts all the new workers and stops all the old ones at
once: until the new ones have imported the app and opened their pools, no
worker accepts, and the requests wait in the listen backlog (the reload fault
measured the p99 of the requests started then at 3 to 28 times the p99 before
it). This replaces the workers one after the other with Gunicorn's own
signals, the way uWSGI's chain reload does:

1. SIGTTIN to the master: one worker more, which imports the app afresh;
2. wait until it is ready: gunicorn.conf.py's ``post_worker_init`` hook
   creates ``<run dir>/ready.<pid>`` once the worker has loaded the app;
3. SIGTTOU: one worker fewer; Gunicorn stops the oldest gracefully (it
   finishes the requests it holds);
4. wait until it has gone, then the next one.

    python -m labapp.rolling_reload --master PID --run-dir DIR --graceful-timeout S

Exits 0 once every worker it found is replaced, 1 with the reason when a new
worker is not ready within --graceful-timeout seconds, or an old one has not
gone STOP_SLACK_S after that (Gunicorn's graceful_timeout: then it kills
it). No worker is stopped before its successor is ready.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

PROC = Path("/proc")
POLL_S = 0.05
# on top of the graceful timeout, for Gunicorn to kill a worker and reap it
STOP_SLACK_S = 10.0


def ready_file(run_dir, pid):
    """What the post_worker_init hook creates for a worker that has loaded the app."""
    return Path(run_dir) / f"ready.{pid}"


def children(pid, proc=PROC):
    """The pids of a process's children (every thread's, /proc/<pid>/task/*/children)."""
    found = set()
    for task in (proc / str(pid) / "task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue  # the thread ended meanwhile
    return found


def wait_for(check, timeout, what):
    """check()'s first true value within `timeout` seconds, else SystemExit naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise SystemExit(f"rolling reload: {what} within {timeout:g} s")
        time.sleep(POLL_S)


def roll(master, run_dir, timeout, proc=PROC, send=os.kill):
    """Replace each worker of `master` in turn; the new workers' pids."""
    old = children(master, proc)
    if not old:
        raise SystemExit(f"rolling reload: process {master} has no workers")
    for _ in range(len(old)):
        before = children(master, proc)
        send(master, signal.SIGTTIN)
        wait_for(
            lambda before=before: {
                pid for pid in children(master, proc) - before if ready_file(run_dir, pid).exists()
            },
            timeout,
            "no new worker was ready",
        )
        send(master, signal.SIGTTOU)
        wait_for(
            lambda: len(children(master, proc)) <= len(old),
            timeout + STOP_SLACK_S,
            "the oldest worker did not stop",
        )
    now = children(master, proc)
    if now & old:
        raise SystemExit(f"rolling reload: workers {sorted(now & old)} are still the old ones")
    return now


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", type=int, required=True, help="Gunicorn's master pid")
    parser.add_argument("--run-dir", required=True, help="where the workers' ready files are")
    parser.add_argument(
        "--graceful-timeout", type=float, required=True,
        help="Gunicorn's graceful_timeout: how long an old worker may finish its requests",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.graceful_timeout <= 0:
        parser.error("--graceful-timeout must be above 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    new = roll(args.master, args.run_dir, args.graceful_timeout)
    print(f"rolling reload: {len(new)} workers replaced, one at a time", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
