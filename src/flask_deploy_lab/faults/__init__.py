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
each: PASS, FAIL or SKIP, what was done, what was measured.

    kill-worker      kill -9 of one app worker process 8 s into /db load: at most 0.5 % of
                     the run's requests fail, the server starts a new worker (same number
                     of workers afterwards, same master).
    pg-restart       PostgreSQL stopped for 5 s under /db load, then started: the failures
                     while it is down are 503s with Retry-After (a probe asks 10 times a
                     second), never 500; none later than 5 s after it accepts connections
                     again; the app unit is not restarted (same MainPID, same NRestarts).
    pool-exhaustion  the app converged with a pool of 2 connections per process, /sleep
                     with more users than the pools hold: the failures are 503s with
                     Retry-After, never 500; afterwards PostgreSQL has no more client
                     connections than pool size x processes and none still active. The app
                     is converged back to its defaults.
    reload           ``systemctl reload`` of the app unit under /db load: 0 failed requests,
                     every worker replaced, same master. Servers without a graceful reload
                     are reported as SKIP with the reason.
    slow-clients     one /slow run in three 12 s windows: without, with, and again without
                     200 connections to nginx that dribble a header byte a second
                     (hostside/slow_clients.py on the last load generator): /slow answers
                     (counted per second in nginx's access log) stay within 10 % of the
                     windows without them, with at least 90 % of the connections held.
    loadgen-stop     the last load generator taken away 8 s into a run and brought back
                     (lab: podman stop, podman start; VMs and hosts: a reboot): the run
                     finishes or fails with a message that says why, and no Locust or
                     sampler process is left on any host.

One module per fault, each with inject, observe and judge steps; judge returns
an Outcome (outcome.py); render.py words the lines and writes faults.json;
cli.py is fdl-faults (python -m flask_deploy_lab.faults).
"""

from flask_deploy_lab.faults.kill_worker import KillWorker
from flask_deploy_lab.faults.loadgen_stop import LoadgenStop
from flask_deploy_lab.faults.outcome import FaultError, Outcome, Verdict
from flask_deploy_lab.faults.pg_restart import PgRestart
from flask_deploy_lab.faults.pool_exhaustion import PoolExhaustion
from flask_deploy_lab.faults.reload import Reload
from flask_deploy_lab.faults.slow_clients import SlowClients

# In the order they run (and are numbered).
FAULTS = (KillWorker, PgRestart, PoolExhaustion, Reload, SlowClients, LoadgenStop)
NAMES = tuple(fault.name for fault in FAULTS)

__all__ = ["FAULTS", "NAMES", "FaultError", "Outcome", "Verdict"]
