"""Each fault's judge on fabricated observations: the targets of make faults,
at and around their limits, and when a fault does not apply."""

from __future__ import annotations

import pytest

from flask_deploy_lab.faults import (
    FAULTS,
    NAMES,
    Verdict,
    kill_worker,
    loadgen_stop,
    pg_restart,
    pool_exhaustion,
    reload,
    slow_clients,
)
from flask_deploy_lab.faults.kill_worker import KillWorker
from flask_deploy_lab.faults.load import LocustFailure
from flask_deploy_lab.faults.loadgen_stop import LoadgenStop
from flask_deploy_lab.faults.pg_restart import PgRestart
from flask_deploy_lab.faults.pool_exhaustion import PoolExhaustion
from flask_deploy_lab.faults.reload import Reload
from flask_deploy_lab.faults.slow_clients import SlowClients
from flask_deploy_lab.faults.stack import Answer, UnitState
from tests.faults import fabricated as f


def test_the_faults_run_in_their_order_under_their_names():
    assert NAMES == (
        "kill-worker", "pg-restart", "pool-exhaustion", "reload", "slow-clients", "loadgen-stop"
    )  # fmt: skip
    assert [fault.name for fault in FAULTS] == list(NAMES)


def test_the_targets_are_those_of_make_faults():
    assert kill_worker.MAX_FAILED_SHARE == 0.005
    assert kill_worker.REPLACE_TIMEOUT_S == reload.REPLACE_TIMEOUT_S == 30
    assert pg_restart.MAX_RECOVERY_S == 5.0
    assert pg_restart.PG_DOWN_S == 5
    assert (pg_restart.PROBE_COUNT, pg_restart.PROBE_GAP_S) == (250, 0.1)
    assert slow_clients.MAX_THROUGHPUT_DROP == 0.10
    assert slow_clients.SLOW_CLIENTS == 200
    assert slow_clients.MIN_HELD_SHARE == 0.9
    assert pool_exhaustion.POOL_SIZE == 2
    assert (pool_exhaustion.LOAD.users, pool_exhaustion.LOAD.delay) == (30, 0.5)


def verdict(outcome):
    return outcome.verdict, list(outcome.reasons)


# ---------------------------------------------------------------- kill-worker


def test_kill_worker_passes_at_the_limit_of_failed_requests():
    outcome = KillWorker.judge(f.KILL_DONE, f.kill_seen(load=f.figures(10000, 50)))
    assert verdict(outcome) == (Verdict.PASS, [])
    assert outcome.done is f.KILL_DONE
    assert outcome.figures.load.failures == 50


def test_kill_worker_fails_on_each_target_it_misses():
    seen = f.kill_seen(
        load=f.figures(10000, 51), replaced_s=None, workers_after=2, main_pid_after=999
    )
    outcome = KillWorker.judge(f.KILL_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reasons == (
        "0.51% of the requests failed, more than 0.5%",
        "the worker was not replaced within 30 s",
        "2 workers afterwards, not 3",
        "the master changed",
    )


@pytest.mark.parametrize(
    "change",
    [{"replaced_s": None}, {"workers_after": 4}, {"main_pid_after": 813}],
    ids=["not replaced", "a worker too many", "new master"],
)
def test_kill_worker_fails_on_one_target_missed(change):
    assert KillWorker.judge(f.KILL_DONE, f.kill_seen(**change)).verdict is Verdict.FAIL


def test_kill_worker_skips_a_server_of_one_process():
    outcome = KillWorker.judge(None, kill_worker.Observation("gevent", 1))
    assert outcome.verdict is Verdict.SKIP
    assert outcome.reasons == (
        "gevent runs one process: kill -9 of it is a crash (systemd restarts the unit), "
        "not a worker replacement",
    )


# ---------------------------------------------------------------- pg-restart


def test_pg_restart_passes_with_503s_and_a_quick_recovery():
    outcome = PgRestart.judge(f.PG_DONE, f.pg_seen())
    assert verdict(outcome) == (Verdict.PASS, [])
    seen = outcome.figures
    # the probe's answers between the stop and the start, all 503 with the header
    assert len(seen.probe_while_down) == 51
    assert seen.recovery_s == 0.0
    assert seen.probe_recovery_s == 0.0
    assert not seen.app_restarted


def test_pg_restart_passes_with_the_last_failure_5_s_after_it_was_back():
    late = f.refused(10, last=f.BACK + 4)
    seen = f.pg_seen(load=f.figures(20000, 10, errors=[late]))
    assert seen.recovery_s == 5.0
    assert PgRestart.judge(f.PG_DONE, seen).verdict is Verdict.PASS


PG_MISSES = {
    "slow recovery": (
        f.pg_seen(load=f.figures(20000, 10, errors=[f.refused(10, last=f.BACK + 4.5)])),
        "a failure 5.5 s after it was back, more than 5 s",
    ),
    "a 500": (
        f.pg_seen(
            load=f.figures(
                20000, 12, errors=[f.refused(10, last=f.BACK), LocustFailure(500, f.HTTP_500, 2)]
            )
        ),
        "failures other than 503 (status 500)",
    ),
    "no failure": (
        f.pg_seen(load=f.figures(20000, 0)),
        "no request failed: PostgreSQL's outage was not seen",
    ),
    "probe 200": (
        f.pg_seen(answers=f.probe_answers(down_status=200)),
        "the probe got no 503 while it was down",
    ),
    "no Retry-After": (
        f.pg_seen(answers=f.probe_answers(retry="-")),
        "51 503s without Retry-After",
    ),
    "probe 500": (
        f.pg_seen(answers=(*f.probe_answers(), Answer(f.DOWN + 0.05, 500, "-"))),
        "only 51 of the probe's 52 answers while down were 503",
    ),
    "restarted": (
        f.pg_seen(app_after=UnitState(813, 1, True)),
        "the app unit was restarted",
    ),
    "no time": (
        f.pg_seen(load=f.figures(20000, 10, errors=[f.refused(10)])),
        "Locust recorded no time for the failures: no recovery time",
    ),
}


@pytest.mark.parametrize(("seen", "reason"), PG_MISSES.values(), ids=PG_MISSES.keys())
def test_pg_restart_fails_on_each_target_it_misses(seen, reason):
    outcome = PgRestart.judge(f.PG_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert reason in outcome.reasons


def test_a_restart_counted_by_systemd_is_a_restart_even_with_the_same_pid():
    seen = f.pg_seen(app_after=UnitState(812, 1, True))
    assert seen.app_restarted
    assert PgRestart.judge(f.PG_DONE, seen).verdict is Verdict.FAIL


# ---------------------------------------------------------------- pool-exhaustion


def test_pool_exhaustion_passes_with_503s_and_idle_connections_within_the_pools():
    assert verdict(PoolExhaustion.judge(f.POOL_DONE, f.pool_seen())) == (Verdict.PASS, [])


def test_pool_exhaustion_fails_on_each_target_it_misses():
    seen = f.pool_seen(
        load=f.figures(948, 720, errors=[f.refused(714), LocustFailure(500, f.HTTP_500, 6)]),
        answers=(Answer(100.0, 200, "-"),),
        connections={"idle": 5, "active": 2},
    )
    outcome = PoolExhaustion.judge(f.POOL_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reasons == (
        "failures other than 503 (status 500)",
        "the probe got no 503",
        "7 client connections afterwards, more than 6",
        "2 connections still busy afterwards",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"load": f.figures(948, 0)},
        {"answers": (Answer(100.0, 503, "1"), Answer(100.1, 503, "-"))},
        {"connections": {"idle": 7}},
        {"connections": {"idle": 5, "idle in transaction": 1}},
    ],
    ids=["no failure", "a 503 without Retry-After", "too many", "one stuck"],
)
def test_pool_exhaustion_fails_on_one_target_missed(change):
    assert PoolExhaustion.judge(f.POOL_DONE, f.pool_seen(**change)).verdict is Verdict.FAIL


def test_pool_exhaustion_skips_without_a_pool():
    outcome = PoolExhaustion.judge(None, pool_exhaustion.Observation("naive"))
    assert verdict(outcome) == (Verdict.SKIP, ["db_mode=naive: there is no pool to exhaust"])


# ---------------------------------------------------------------- reload


def test_reload_passes_with_no_failure_and_every_worker_new():
    assert verdict(Reload.judge(f.RELOAD_DONE, f.reload_seen())) == (Verdict.PASS, [])


def test_reload_fails_on_each_target_it_misses():
    seen = f.reload_seen(
        load=f.figures(20755, 3), replaced_s=None, workers_after=(902, 977, 978),
        main_pid_after=900,
    )  # fmt: skip
    outcome = Reload.judge(f.RELOAD_DONE, seen)
    assert outcome.reasons == (
        "3 requests failed",
        "the workers were not all replaced within 30 s (1 old left)",
        "the master changed",
    )
    assert outcome.verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("server", "why"),
    [
        ("flask", "Werkzeug's development server has no reload signal; a restart drops requests"),
        (
            "gevent",
            "gevent.pywsgi is one process, no master starts new workers: a reload is a restart",
        ),
        ("waitress", "Waitress is one process with no reload signal and no graceful stop"),
        ("gunicorn", "the catalogue gives it no reload signal"),
    ],
)
def test_reload_skips_a_unit_that_cannot_reload_with_the_reason(server, why):
    outcome = Reload.judge(None, reload.Observation(server, "labapp.service", can_reload=False))
    assert verdict(outcome) == (Verdict.SKIP, [why])


# ---------------------------------------------------------------- slow-clients


def test_slow_clients_pass_at_10_percent_less():
    seen = f.slow_seen(before=100, with_them=90, after=100)
    assert seen.change == -0.1
    assert verdict(SlowClients.judge(f.SLOW_DONE, seen)) == (Verdict.PASS, [])


def test_slow_clients_compare_the_window_with_them_to_the_mean_of_the_two_without():
    seen = f.slow_seen(before=100, with_them=95, after=90)
    assert seen.without == (100.0, 90.0)
    # the first second of the later windows is left out: [w1 + 1, w2), [w2 + 1, w3)
    assert seen.with_them == 95.0
    assert seen.change == 0.0


def test_slow_clients_fail_past_10_percent_less_or_with_too_few_connections_held():
    seen = f.slow_seen(before=100, with_them=89, after=100, summary={"open_max": 179})
    outcome = SlowClients.judge(f.SLOW_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reasons == (
        "/slow answered -11.0% with them, more than 10% less",
        "the generator held 179 of 200 connections",
    )


def test_slow_clients_pass_with_90_percent_of_the_connections_held():
    seen = f.slow_seen(summary={"open_max": 180})
    assert SlowClients.judge(f.SLOW_DONE, seen).verdict is Verdict.PASS


def test_slow_clients_fail_without_a_baseline_or_a_summary():
    assert f.slow_seen(before=0, with_them=50, after=0).change == -1.0
    assert SlowClients.judge(f.SLOW_DONE, f.slow_seen(before=0, after=0)).verdict is Verdict.FAIL
    assert SlowClients.judge(f.SLOW_DONE, f.slow_seen(summary={})).verdict is Verdict.FAIL


# ---------------------------------------------------------------- loadgen-stop


def test_loadgen_stop_passes_when_the_run_finished_and_the_cell_names_the_lost_worker():
    assert verdict(LoadgenStop.judge(f.STOP_DONE, f.stop_seen())) == (Verdict.PASS, [])


def test_loadgen_stop_passes_when_the_run_failed_with_a_reason():
    seen = f.stop_seen(
        finished=False, message="host loadgen2 became unreachable", rebalance=None,
        host_state="degraded",
    )  # fmt: skip
    assert LoadgenStop.judge(f.STOP_DONE, seen).verdict is Verdict.PASS


def test_loadgen_stop_fails_on_each_target_it_misses():
    seen = f.stop_seen(
        finished=False, said_why=False, message="ansible-playbook exited 2: no message",
        rebalance=None, leftovers={"loadgen1": ["812 /opt/locust/venv/bin/python ..."]},
        host_state="maintenance",
    )  # fmt: skip
    outcome = LoadgenStop.judge(f.STOP_DONE, seen)
    assert outcome.reasons == (
        "the run failed without saying why",
        "processes left running on loadgen1",
        "loadgen2's systemd is maintenance",
    )


@pytest.mark.parametrize(
    ("rebalance", "passes"),
    [
        (f.rebalance(flagged_in_cell=False), False),
        (f.rebalance(worker_quit_logged=False, spawns=((20, 2),), flagged_in_cell=False), True),
        (f.rebalance(worker_quit_logged=False, flagged_in_cell=False), False),
        # no spawn message at all: as before, the cell must then carry the flag
        (f.rebalance(worker_quit_logged=False, spawns=(), flagged_in_cell=False), False),
        (f.rebalance(worker_quit_logged=False, spawns=(), flagged_in_cell=True), True),
    ],
    ids=["lost, not flagged", "nothing lost", "re-spawned, not flagged", "no spawn, not flagged",
         "no spawn, flagged"],
)  # fmt: skip
def test_a_finished_run_that_lost_a_worker_must_say_so_in_its_cell(rebalance, passes):
    outcome = LoadgenStop.judge(f.STOP_DONE, f.stop_seen(rebalance=rebalance))
    assert (outcome.verdict is Verdict.PASS) is passes


def test_loadgen_stop_skips_with_one_load_generator():
    outcome = LoadgenStop.judge(None, loadgen_stop.Observation(1, "podman stop"))
    assert verdict(outcome) == (
        Verdict.SKIP,
        ["the inventory has one load generator, which runs the master"],
    )
