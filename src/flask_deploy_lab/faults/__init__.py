"""Faults under load: break one thing at a time in the stack while Locust loads
it, measure, put it back, and judge.

    fdl-faults                                     # make faults: every fault
    fdl-faults --only kill-worker reload
    fdl-faults -- -e lab_name_prefix=fdl-x- -e lab_network=fdl-x   # another lab
    fdl-faults -- -i inventory/vagrant             # the Vagrant VMs
    FAULTS_ANSIBLE_ARGS="-e server=uwsgi" make faults

The inventory decides where (the podman lab, Vagrant VMs, real hosts): every
step reaches the hosts through Ansible (executor). The stack is converged first
with playbooks/site.yml (not with ``--no-converge``). Each fault runs one
bounded Locust cell through playbooks/loadtest.yml (its files land in
``reports/<run-id>/<fault>/``), does one thing to the stack's own hosts while
it runs, measures, puts the stack back as it was, and is judged; one line
each: PASS, FAIL, SKIP or N/A (not applicable to the inventory), what was done,
what was measured.

    kill-worker      kill -9 of the busiest app worker 8 s into /db load: no more requests
                     fail than the worker held (its established connections at the kill),
                     no 200 with a cut-off body, a new worker under the same master;
                     nginx's retries reported.
    pg-restart       PostgreSQL stopped for 5 s under /db load: every failed response a 503
                     with Retry-After, none later than 5 s after it is back, the throughput
                     back to 90 % of before (3 s window) within the run, no app restart.
    pool-exhaustion  a pool of 2 per process, /sleep with more users than the pools hold:
                     every failed response a 503 with Retry-After; afterwards no more
                     connections than pool x processes, none busy; converged back.
    reload           systemctl reload under /db load: no failed request, the p99 of the
                     requests started in the reload window at most 2 x the window's
                     before, every worker replaced, same master (SKIP without a reload).
    slow-clients     /slow in six windows, three without slow clients, the same requests
                     at full speed (the control), one with them (slow POST bodies and slow
                     readers, which reach the app), one without: the rate with them within
                     the baseline's spread (3 sd, at least 5 %), or the control's where the
                     work itself costs more.
    loadgen-stop     the last load generator taken away mid-run: the run finishes, or
                     fails with a message that names it and its loss; no process left.
    celery-kill      kill -9 of the Celery worker's main process under upstream tasks:
                     every task of the run done within visibility timeout + time limit
                     + 20 s of the kill, none failed, a new MainPID; redeliveries reported.
    redis-restart    Redis stopped for 5 s under render tasks: every failed POST a 503
                     with Retry-After, p99 of the POSTs while down <= 2 s, a 202 again
                     <= 5 s after it is back, every task that got a 202 done.
    upstream-stop    the slow API stopped for 8 s under /slow: failures only 502/503/504,
                     quick (p99 <= 1 s), JSON bodies, only in the outage, no pile-up,
                     successes again <= 5 s after it is back.
    app-host-stop    one of two app hosts' unit stopped for 10 s under /slow: failures <=
                     nginx's connections to it, the other serves, it rejoins <= 30 s
                     (N/A with one app host: neither a pass nor a failure).

Every verdict is computed from the load's request log (request_log.py).
``--servers all`` runs them against every concurrent server (a matrix).

One module per fault, each with inject, observe and judge steps; judge returns
an Outcome (outcome.py); render.py words the lines and writes faults.json;
cli.py is fdl-faults (python -m flask_deploy_lab.faults).
"""

from flask_deploy_lab.faults.app_host_stop import AppHostStop
from flask_deploy_lab.faults.celery_kill import CeleryKill
from flask_deploy_lab.faults.kill_worker import KillWorker
from flask_deploy_lab.faults.loadgen_stop import LoadgenStop
from flask_deploy_lab.faults.outcome import FaultError, Outcome, Verdict
from flask_deploy_lab.faults.pg_restart import PgRestart
from flask_deploy_lab.faults.pool_exhaustion import PoolExhaustion
from flask_deploy_lab.faults.redis_restart import RedisRestart
from flask_deploy_lab.faults.reload import Reload
from flask_deploy_lab.faults.slow_clients import SlowClients
from flask_deploy_lab.faults.upstream_stop import UpstreamStop

# In the order they run (and are numbered).
FAULTS = (
    KillWorker, PgRestart, PoolExhaustion, Reload, SlowClients, LoadgenStop,
    CeleryKill, RedisRestart, UpstreamStop, AppHostStop,
)  # fmt: skip
NAMES = tuple(fault.name for fault in FAULTS)

__all__ = ["FAULTS", "NAMES", "FaultError", "Outcome", "Verdict"]
