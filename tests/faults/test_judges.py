"""Each fault's judge on fabricated observations: the targets of make faults,
at and around their limits, and when a fault does not apply."""

from __future__ import annotations

from types import SimpleNamespace

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
from flask_deploy_lab.faults.loadgen_stop import LoadgenStop
from flask_deploy_lab.faults.pg_restart import PgRestart
from flask_deploy_lab.faults.pool_exhaustion import PoolExhaustion
from flask_deploy_lab.faults.reload import Reload
from flask_deploy_lab.faults.slow_clients import SlowClients
from flask_deploy_lab.faults.stack import Answer, UnitState
from flask_deploy_lab.report.samples import HostSamples
from tests.faults import fabricated as f


def test_the_faults_run_in_their_order_under_their_names():
    assert NAMES == (
        "kill-worker", "pg-restart", "pool-exhaustion", "reload", "slow-clients", "loadgen-stop",
        "celery-kill", "redis-restart", "upstream-stop", "app-host-stop",
    )  # fmt: skip
    assert [fault.name for fault in FAULTS] == list(NAMES)


def test_the_targets_are_those_of_make_faults():
    assert kill_worker.MAX_TRUNCATED_OK == 0
    assert kill_worker.REPLACE_TIMEOUT_S == reload.REPLACE_TIMEOUT_S == 30
    assert pg_restart.MAX_RECOVERY_S == 5.0
    assert pg_restart.PG_DOWN_S == 5
    assert (pg_restart.RECOVERY_WINDOW_S, pg_restart.RECOVERED_SHARE) == (3, 0.9)
    assert (pg_restart.PROBE_COUNT, pg_restart.PROBE_GAP_S) == (250, 0.1)
    assert (reload.MAX_P99_RATIO, reload.MIN_WINDOW_S) == (2.0, 2.0)
    assert (slow_clients.SPREAD_SDS, slow_clients.MIN_ALLOWED_DROP) == (3, 0.05)
    assert slow_clients.BASELINE_WINDOWS >= 3
    assert slow_clients.SLOW_CLIENTS == 200
    assert slow_clients.CLIENTS_PER_SLOT == 10
    assert slow_clients.MIN_HELD_SHARE == slow_clients.MIN_REACHED_SHARE == 0.9
    assert pool_exhaustion.POOL_SIZE == 2
    assert (pool_exhaustion.LOAD.users, pool_exhaustion.LOAD.delay) == (30, 0.5)


def verdict(outcome):
    return outcome.verdict, list(outcome.reasons)


# ---------------------------------------------------------------- kill-worker


def test_kill_worker_passes_with_as_many_failures_as_the_worker_held():
    # 7 connections held: 5 x 502, a reset (no answer) and a 200 shorter than its
    # Content-Length (the client can tell) make 7 failures
    failed = [f.req(1009.7, status=502)] * 5 + [
        f.req(1009.7, status=0, error="ConnectionResetError(104)"),
        f.req(1009.7, failed=True, length=32, got=12, error="body is not a JSON row with an id"),
    ]
    seen = f.kill_seen(requests=f.kill_requests(*failed))
    outcome = KillWorker.judge(f.KILL_DONE, seen)
    assert verdict(outcome) == (Verdict.PASS, [])
    assert (seen.failed, seen.truncated, seen.nginx_retried) == (7, 0, 13)


def test_kill_worker_fails_on_one_failure_more_than_the_worker_held():
    failed = [f.req(1009.7, status=502)] * 8
    outcome = KillWorker.judge(f.KILL_DONE, f.kill_seen(requests=f.kill_requests(*failed)))
    assert verdict(outcome) == (
        Verdict.FAIL, ["8 requests failed, more than the 7 the killed worker held"]
    )  # fmt: skip


@pytest.mark.parametrize(
    "cut",
    [
        # the whole declared length arrived, but not a whole JSON row
        f.req(1009.7, failed=True, length=12, got=12, error="body is not a JSON row with an id"),
        # no Content-Length (chunked) and a body cut short
        f.req(1009.7, failed=True, length=None, got=9, error="body is not a JSON row with an id"),
    ],
    ids=["length matches", "no length"],
)
def test_a_200_with_a_cut_off_body_the_client_cannot_tell_fails_kill_worker(cut):
    seen = f.kill_seen(requests=f.kill_requests(cut))
    assert (seen.failed, seen.truncated) == (1, 1)
    outcome = KillWorker.judge(f.KILL_DONE, seen)
    assert verdict(outcome) == (
        Verdict.FAIL, ["1 200s with a cut-off body (told OK, handed half an answer)"]
    )  # fmt: skip


def test_kill_worker_fails_on_each_target_it_misses():
    seen = f.kill_seen(
        requests=f.kill_requests(*[f.req(1009.7, status=502)] * 9),
        replaced_s=None, workers_after=2, main_pid_after=999,
    )  # fmt: skip
    outcome = KillWorker.judge(f.KILL_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reasons == (
        "9 requests failed, more than the 7 the killed worker held",
        "the worker was not replaced within 30 s",
        "2 workers afterwards, not 3",
        "the master changed",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requests": None}, "cannot judge: the run left no locust_requests.csv"),
        (
            {"requests": f.log([], f.TODAY)},
            "cannot judge: the request log lacks status, content_length, body_bytes",
        ),
        ({"in_flight": None}, "cannot judge: the killed worker's connections were not counted"),
        (
            {"in_flight": 0},
            "cannot judge: the killed worker held no connection (none of the workers stopped "
            "in 5 s did): the kill cut nothing off",
        ),
    ],
    ids=["no log", "today's log", "not counted", "cut nothing off"],
)
def test_kill_worker_cannot_judge_without_its_data_and_says_so(change, reason):
    outcome = KillWorker.judge(f.KILL_DONE, f.kill_seen(**change))
    assert verdict(outcome) == (Verdict.FAIL, [reason])


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
    # the last 503 completed before it was back
    assert seen.recovery_s == 0.0
    assert seen.probe_recovery_s == 0.0
    assert not seen.app_restarted
    assert len(seen.failures) == 1200 and not seen.wrong and not seen.without_retry_after


def test_pg_restart_measures_how_long_the_throughput_took_to_recover():
    seen = f.pg_seen()
    # 100 a second over 991..999; back at 1005.9; 50, 80, 95, 95, then 100 from 1006 on:
    # the window 1006-1008 has a mean of 75, 1007-1009 of 90 (90 % of 100)
    assert seen.rps_before == 100.0
    assert seen.last_second == 1018
    assert seen.recovered_at == 1007
    assert seen.throughput_recovery_s == 1.1
    # (80 + 95 + 95 + 9 x 100) / 12
    assert seen.rps_after == 97.5


def test_pg_restart_compares_with_the_seconds_just_before_the_stop():
    # 150 a second until the fault's machinery started (994), 100 from then on:
    # the 5 s before the stop (995-999) are the baseline, not the run's 120 mean
    seen = f.pg_seen(requests=f.pg_requests(early=150))
    assert seen.rps_before == 100.0
    assert PgRestart.judge(f.PG_DONE, seen).verdict is Verdict.PASS


def test_pg_restart_fails_when_the_throughput_never_recovers_within_the_run():
    # the run of the issue: 1,652 req/s before, 1,015 after
    seen = f.pg_seen(requests=f.pg_requests(after=(), then=60))
    assert seen.recovered_at is None
    outcome = PgRestart.judge(f.PG_DONE, seen)
    assert verdict(outcome) == (
        Verdict.FAIL,
        ["the throughput never came back to 90% of 100.0 req/s within the run "
         "(from then on: 60.0 req/s)"],
    )  # fmt: skip


def test_pg_restart_passes_at_exactly_90_percent_and_fails_just_under():
    assert f.pg_seen(requests=f.pg_requests(after=(), then=90)).recovered_at == 1006
    assert f.pg_seen(requests=f.pg_requests(after=(), then=89)).recovered_at is None


def test_pg_restart_passes_with_the_last_failure_5_s_after_it_was_back():
    late = f.req(f.BACK + 4.9, 100.0, 503, retry="1")
    seen = f.pg_seen(requests=f.pg_requests(extra=[late]))
    assert seen.recovery_s == 5.0
    assert PgRestart.judge(f.PG_DONE, seen).verdict is Verdict.PASS


PG_MISSES = {
    "slow recovery": (
        f.pg_seen(requests=f.pg_requests(extra=[f.req(f.BACK + 5.0, 100.0, 503, retry="1")])),
        "a failure 5.1 s after it was back, more than 5 s",
    ),
    "a 500": (
        f.pg_seen(requests=f.pg_requests(extra=[f.req(1001.0, status=500)] * 2)),
        "2 failures other than 503 (status 500)",
    ),
    "a 503 without Retry-After": (
        f.pg_seen(requests=f.pg_requests(extra=[f.req(1001.0, status=503)])),
        "1 of 1201 503s without Retry-After",
    ),
    "no failure": (
        f.pg_seen(requests=f.log(f.steady(990, 1020, 100))),
        "no request failed: PostgreSQL's outage was not seen",
    ),
    "no log": (f.pg_seen(requests=None), "cannot judge: the run left no locust_requests.csv"),
    "today's log": (
        f.pg_seen(requests=f.log(f.steady(990, 1020, 100), f.TODAY)),
        "cannot judge: the request log lacks status, retry_after",
    ),
    "probe 200": (
        f.pg_seen(answers=f.probe_answers(down_status=200)),
        "the probe got no 503 while it was down",
    ),
    "probe without Retry-After": (
        f.pg_seen(answers=f.probe_answers(retry="-")),
        "51 of the probe's 503s without Retry-After",
    ),
    "probe 500": (
        f.pg_seen(answers=(*f.probe_answers(), Answer(f.DOWN + 0.05, 500, "-"))),
        "only 51 of the probe's 52 answers while down were 503",
    ),
    "restarted": (
        f.pg_seen(app_after=UnitState(813, 1, True)),
        "the app unit was restarted",
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
    seen = f.pool_seen()
    assert verdict(PoolExhaustion.judge(f.POOL_DONE, seen)) == (Verdict.PASS, [])
    assert len(seen.failures) == 714


def test_pool_exhaustion_fails_on_each_target_it_misses():
    seen = f.pool_seen(
        requests=f.pool_requests(*[f.req(101.0, 5, 500, name="/sleep")] * 6),
        answers=(Answer(100.0, 200, "-"),),
        connections={"idle": 5, "active": 2},
    )
    outcome = PoolExhaustion.judge(f.POOL_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reasons == (
        "6 failures other than 503 (status 500)",
        "the probe got no 503",
        "7 client connections afterwards, more than 6",
        "2 connections still busy afterwards",
    )


def test_every_failed_response_of_the_load_needs_its_retry_after():
    """The probe's ten were fine; one of the load's 715 503s had no header."""
    seen = f.pool_seen(requests=f.pool_requests(f.req(101.0, 5, 503, name="/sleep")))
    outcome = PoolExhaustion.judge(f.POOL_DONE, seen)
    assert verdict(outcome) == (Verdict.FAIL, ["1 of 715 503s without Retry-After"])


@pytest.mark.parametrize(
    "change",
    [
        {"requests": f.log([f.req(100.0, name="/sleep")])},
        {"requests": None},
        {"requests": f.log([], f.TODAY)},
        {"answers": (Answer(100.0, 503, "1"), Answer(100.1, 503, "-"))},
        {"connections": {"idle": 7}},
        {"connections": {"idle": 5, "idle in transaction": 1}},
    ],
    ids=["no failure", "no log", "today's log", "a probe 503 without Retry-After", "too many",
         "one stuck"],
)  # fmt: skip
def test_pool_exhaustion_fails_on_one_target_missed(change):
    assert PoolExhaustion.judge(f.POOL_DONE, f.pool_seen(**change)).verdict is Verdict.FAIL


def test_pool_exhaustion_skips_without_a_pool():
    outcome = PoolExhaustion.judge(None, pool_exhaustion.Observation("naive"))
    assert verdict(outcome) == (Verdict.SKIP, ["db_mode=naive: there is no pool to exhaust"])


def test_pool_exhaustion_skips_a_server_that_holds_no_more_requests_per_process_than_the_pool():
    outcome = PoolExhaustion.judge(None, pool_exhaustion.Observation("pool", per_process=1.0))
    assert verdict(outcome) == (
        Verdict.SKIP,
        ["the server holds 1 request(s) per process, no more than a pool of 2: its requests "
         "wait for a worker, never for a connection"],
    )  # fmt: skip
    # one more than the pool: judged, and here failed (nothing was exhausted)
    seen = f.pool_seen(per_process=3.0, requests=f.log([f.req(100.0, name="/sleep")]))
    assert PoolExhaustion.judge(f.POOL_DONE, seen).verdict is Verdict.FAIL


class PoolStack:
    """What pool-exhaustion reads of a stack before it changes anything."""

    def __init__(self, slots, processes):
        self.deployment = SimpleNamespace(db_mode="pool", slots=slots, processes=processes)
        self.converged = []

    def converge(self, *args, **kwargs):
        self.converged.append(args)
        raise AssertionError("converged a server whose pool cannot be exhausted")


def test_pool_exhaustion_converges_nothing_on_gunicorns_sync_workers():
    # 2 workers, one request each: the sizing's slots
    stack = PoolStack(slots=2, processes=2)
    outcome = PoolExhaustion().run(stack)
    assert outcome.verdict is Verdict.SKIP
    assert "1 request(s) per process" in outcome.reasons[0]
    assert stack.converged == []


# ---------------------------------------------------------------- reload


def test_reload_passes_with_no_failure_and_every_worker_new():
    seen = f.reload_seen()
    assert verdict(Reload.judge(f.RELOAD_DONE, seen)) == (Verdict.PASS, [])
    # the reload window: from the reload until every worker was new (1.7 s), at least 2 s
    assert seen.window == (1000.0, 1002.0)
    assert seen.window_before == (998.0, 1000.0)
    assert seen.p99_ms(seen.window) == (15.0, 100)
    assert seen.p99_ms(seen.window_before) == (10.0, 100)
    assert seen.p99_ratio == 1.5


def test_reload_passes_at_twice_the_p99_before():
    seen = f.reload_seen(requests=f.reload_requests(during=(20.0,) * 100))
    assert Reload.judge(f.RELOAD_DONE, seen).verdict is Verdict.PASS


def test_reload_fails_when_the_failures_became_latency():
    # two of the window's hundred requests waited 30 ms: the p99 (nearest rank:
    # the 99th of 100) is 30 ms, three times the 10 ms before
    seen = f.reload_seen(requests=f.reload_requests(during=(15.0,) * 98 + (30.0, 30.0)))
    assert verdict(Reload.judge(f.RELOAD_DONE, seen)) == (
        Verdict.FAIL,
        ["p99 30 ms for the requests started in the reload window, more than 2 x the 10 ms "
         "before it"],
    )  # fmt: skip


def test_a_request_still_waiting_at_the_stop_counts_with_how_long_it_waited():
    stuck = [f.waiting(1001.0, 1020.0), f.waiting(1001.5, 1020.0)]
    seen = f.reload_seen(requests=f.reload_requests(during=(15.0,) * 98, extra=stuck))
    assert seen.p99_ms(seen.window) == (18500.0, 100)
    assert Reload.judge(f.RELOAD_DONE, seen).verdict is Verdict.FAIL


def test_a_longer_replacement_widens_the_window():
    seen = f.reload_seen(replaced_s=3.5)
    assert seen.window == (1000.0, 1003.5)
    assert seen.window_before == (996.5, 1000.0)
    # never before the run had its users (t0 990) and its first second
    assert f.reload_seen(replaced_s=None).window_before == (991.0, 1000.0)


def test_a_reload_window_that_outlasts_the_run_cannot_be_judged():
    # the fabricated run's last request ends at 1005.99; a 7 s window ends at 1007
    outcome = Reload.judge(f.RELOAD_DONE, f.reload_seen(replaced_s=7.0))
    assert verdict(outcome) == (
        Verdict.FAIL, ["cannot judge the latency: the reload window ended 1.0 s after the run"]
    )  # fmt: skip
    assert Reload.judge(f.RELOAD_DONE, f.reload_seen(replaced_s=5.5)).verdict is Verdict.PASS


def test_the_window_before_never_holds_the_reloads_own_launch():
    # the reload's Ansible run settled at 997.5: the 3.5 s before it are cut to 2.5
    seen = f.reload_seen(replaced_s=3.5, quiet_from=997.5)
    assert seen.window_before == (997.5, 1000.0)
    assert f.reload_seen(replaced_s=3.5, quiet_from=990.0).window_before == (996.5, 1000.0)


def test_the_cpu_of_each_window_comes_from_the_counters_around_it():
    seen = f.reload_seen()
    before, during = seen.cpu(seen.window_before), seen.cpu(seen.window)
    assert (before.unit_cores, before.throttled) == (pytest.approx(0.9), pytest.approx(0.02))
    assert (during.unit_cores, during.throttled) == (pytest.approx(1.0), pytest.approx(0.3))
    assert (during.host_cores, during.host_limit) == (1.0, 1.0)
    assert during.machine_cores == pytest.approx(1.9)
    # a window the rows do not reach on both sides has no counter rate
    late = reload.cpu_use(f.app_samples(until=1001), seen.window)
    assert (late.unit_cores, late.throttled, late.host_cores) == (None, None, 1.0)
    assert seen.cpu((2000.0, 2002.0)) == reload.CpuUse(None, None, None, None, None)
    assert f.reload_seen(app_samples=None).cpu(seen.window) is None


def test_the_cpu_figures_do_not_change_the_verdict():
    assert Reload.judge(f.RELOAD_DONE, f.reload_seen(app_samples=None)).verdict is Verdict.PASS


def test_reload_fails_on_each_target_it_misses():
    seen = f.reload_seen(
        requests=f.reload_requests(extra=[f.req(1000.5, status=503)] * 3), replaced_s=None,
        workers_after=(902, 977, 978), main_pid_after=900,
    )  # fmt: skip
    outcome = Reload.judge(f.RELOAD_DONE, seen)
    assert outcome.reasons == (
        "3 requests failed",
        "the workers were not all replaced within 30 s (1 old left)",
        "the master changed",
    )
    assert outcome.verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("requests", "reason"),
    [
        (None, "cannot judge: the run left no locust_requests.csv"),
        (
            f.log([f.req(1000.5, 15.0)]),
            "cannot judge the latency: 0 requests started before the reload, 1 in its window",
        ),
    ],
    ids=["no log", "nothing before"],
)
def test_reload_cannot_judge_without_requests_in_both_windows(requests, reason):
    outcome = Reload.judge(f.RELOAD_DONE, f.reload_seen(requests=requests))
    assert verdict(outcome) == (Verdict.FAIL, [reason])


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


def test_slow_clients_are_judged_against_the_spread_of_a_repeated_baseline():
    seen = f.slow_seen(rates=(100, 98, 102, 100, 95, 100))
    # the baseline is the three windows before and the one after: 100, 98, 102, 100;
    # mean 100, sd sqrt(8 / 3) = 1.63: 3 sd (4.9) is under 5 %, so the limit is 95
    assert seen.rates == [100.0, 98.0, 102.0, 100.0, 95.0, 100.0]
    assert seen.baseline == [100.0, 98.0, 102.0, 100.0]
    assert seen.mean_sd == (100.0, 1.63)
    assert (seen.baseline_bound, seen.control_bound, seen.bound) == (95.0, 95.0, 95.0)
    assert seen.change == -0.05
    assert verdict(SlowClients.judge(f.SLOW_DONE, seen)) == (Verdict.PASS, [])


def test_slow_clients_cannot_be_judged_when_the_run_ends_inside_the_last_window():
    # a start found late put the windows 5 s later than the run (which ends at
    # 1073.9): the last one holds its partial last second and a second without it
    seen = f.slow_seen(windows=tuple(w + 5 for w in f.WINDOWS))
    assert verdict(SlowClients.judge(f.SLOW_DONE, seen)) == (
        Verdict.FAIL,
        ["cannot judge: the run ended at 1073.9, before the end of its last window (1075)"],
    )
    # 3 s later: the last window ends with the run's last whole second, and is judged
    later = SlowClients.judge(f.SLOW_DONE, f.slow_seen(windows=tuple(w + 3 for w in f.WINDOWS)))
    assert not [r for r in later.reasons if r.startswith("cannot judge")], later.reasons


def test_slow_clients_fail_under_the_baseline_and_the_control_less_the_allowance():
    seen = f.slow_seen(rates=(100, 98, 102, 100, 94, 100))
    assert verdict(SlowClients.judge(f.SLOW_DONE, seen)) == (
        Verdict.FAIL,
        ["/slow at 94.0 req/s with them, under 95.0 (the baseline's 100.0 - max(3 x sd 1.63, "
         "5%)); the same requests sent fast: 100.0"],
    )  # fmt: skip


def test_the_work_the_slow_clients_bring_is_told_from_their_slowness():
    # the same requests sent fast cost 10 %: with them 91 is the work, not the slowness
    work = f.slow_seen(rates=(100, 98, 102, 90, 91, 100))
    assert (work.baseline_bound, work.control_bound, work.bound) == (95.0, 85.0, 85.0)
    assert work.control_change == -0.1
    assert SlowClients.judge(f.SLOW_DONE, work).verdict is Verdict.PASS
    # slowness that costs more than the work: 84 against the control's 90
    slower = f.slow_seen(rates=(100, 98, 102, 90, 84, 100))
    assert verdict(SlowClients.judge(f.SLOW_DONE, slower)) == (
        Verdict.FAIL,
        ["/slow at 84.0 req/s with them, under 85.0: the control (the same requests sent fast) "
         "at 90.0, minus the baseline's allowance max(3 x sd 1.63, 5% of 100.0): the slowness "
         "costs more than the work"],
    )  # fmt: skip
    # a control within the baseline's allowance, or above it, leaves the baseline's bar
    assert f.slow_seen(rates=(100, 98, 102, 96, 95, 100)).bound == 95.0
    assert f.slow_seen(rates=(100, 98, 102, 110, 96, 100)).bound == 95.0


def test_a_control_or_warm_up_that_did_not_reach_the_app_cannot_judge():
    seen = f.slow_seen(
        control_bodies=dict(f.CONTROL_BODIES, statuses={"202": 100, "502": 80}),
        control_readers={},
    )
    assert SlowClients.judge(f.SLOW_DONE, seen).reasons == (
        "cannot judge: only 100 of the control's 180 body requests reached the app",
        "cannot judge: only 0 of the control's 20 reader requests reached the app",
    )
    # the warm-up's too: the first POSTs' cost would fall in the control
    seen = f.slow_seen(warmup_bodies=dict(f.CONTROL_BODIES, statuses={"502": 180}))
    assert SlowClients.judge(f.SLOW_DONE, seen).reasons == (
        "cannot judge: only 0 of the warm-up's 180 body requests reached the app",
    )


def test_a_noisy_baseline_allows_three_of_its_standard_deviations():
    # 100, 90, 110, 100: sd sqrt(200 / 3) = 8.16, 3 sd = 24.5
    seen = f.slow_seen(rates=(100, 90, 110, 100, 80, 100))
    assert seen.bound == 75.5
    assert SlowClients.judge(f.SLOW_DONE, seen).verdict is Verdict.PASS
    assert SlowClients.judge(
        f.SLOW_DONE, f.slow_seen(rates=(100, 90, 110, 100, 75, 100))
    ).verdict is Verdict.FAIL  # fmt: skip


def test_the_window_after_a_change_leaves_out_its_first_second():
    requests = f.slow_requests(100, 100, 100, 100, 100, 100)
    # a burst in the first second of the control and of the window with them does not count
    control, with_them = f.WINDOWS[3], f.WINDOWS[4]
    burst = tuple(
        f.steady(control, control + 1, 400, name="/slow")
        + f.steady(with_them, with_them + 1, 400, name="/slow")
    )
    seen = f.slow_seen(requests=f.log(requests.requests + burst))
    assert (seen.control, seen.with_them) == (100.0, 100.0)


@pytest.mark.parametrize(
    ("queued", "reasons"),
    [
        ((0, 0, 0), []),
        (
            (0, 156, 0),
            ["cannot judge: 156 tasks still queued at the end of the control's window: their "
             "work fell into the next one"],
        ),
        (
            (3, 0, 0),
            ["cannot judge: 3 tasks still queued at the end of the warm-up's window: their "
             "work fell into the next one"],
        ),
        (
            (0, 0, None),
            ["cannot judge: the broker's queue was not sampled at the end of the slow clients' "
             "window"],
        ),
    ],
    ids=["drained", "the control's left", "the warm-up's left", "not sampled"],
)  # fmt: skip
def test_each_window_holds_the_tasks_its_clients_queued(queued, reasons):
    outcome = SlowClients.judge(f.SLOW_DONE, f.slow_seen(queued_at_end=queued))
    assert list(outcome.reasons) == reasons


def test_the_queue_at_a_windows_end_is_the_samplers_last_reading_before_it():
    db = HostSamples(
        "db1",
        [
            {"time": str(t), "broker_queued": str(q)}
            for t, q in ((1040.2, 170), (1041.2, 12), (1042.2, 0), (1043.2, 59))
        ],
    )
    app = HostSamples("app1", [{"time": "1042.5", "broker_queued": ""}])
    samples = {"app1": app, "db1": db}
    assert slow_clients.queued_at(samples, 1043) == 0
    assert slow_clients.queued_at(samples, 1042) == 12
    assert slow_clients.queued_at(samples, 1044) == 59
    # no reading in the 2 s before: not known
    assert slow_clients.queued_at(samples, 1050) is None
    assert slow_clients.queued_at({"app1": app}, 1043) is None


def test_slow_clients_must_reach_the_app_and_be_held():
    seen = f.slow_seen(
        # a 503 is the app's answer (it read the body); a 408 is nginx's
        bodies=dict(f.BODIES, open_max=161, statuses={"202": 100, "503": 50, "408": 30}),
        readers=dict(f.READERS, statuses={}),
    )
    outcome = SlowClients.judge(f.SLOW_DONE, seen)
    assert outcome.reasons == (
        "the generator held 161 of 180 slow body connections",
        "only 150 slow body requests answered by the app (of 180 connections): they did not "
        "reach the app",
        "only 0 slow reader requests saw a 2xx status (of 20 connections): they did not reach "
        "the app",
    )


def test_slow_clients_cannot_judge_without_a_request_log_or_a_baseline():
    assert verdict(SlowClients.judge(f.SLOW_DONE, f.slow_seen(requests=None))) == (
        Verdict.FAIL, ["cannot judge: the run left no locust_requests.csv"]
    )  # fmt: skip
    empty = f.slow_seen(rates=(0, 0, 0, 50, 50, 0))
    assert empty.change == -1.0
    assert verdict(SlowClients.judge(f.SLOW_DONE, empty)) == (
        Verdict.FAIL, ["cannot judge: /slow answered nothing in the windows without them"]
    )  # fmt: skip
    no_summary = f.slow_seen(bodies={}, readers={})
    assert SlowClients.judge(f.SLOW_DONE, no_summary).verdict is Verdict.FAIL


# ---------------------------------------------------------------- loadgen-stop


def test_loadgen_stop_passes_when_the_run_finished_and_the_cell_names_the_lost_worker():
    assert verdict(LoadgenStop.judge(f.STOP_DONE, f.stop_seen())) == (Verdict.PASS, [])


def test_loadgen_stop_passes_when_the_run_failed_with_a_reason():
    seen = f.stop_seen(
        finished=False, message="host loadgen2 became unreachable", rebalance=None,
        host_state="degraded",
    )  # fmt: skip
    assert LoadgenStop.judge(f.STOP_DONE, seen).verdict is Verdict.PASS


@pytest.mark.parametrize(
    ("message", "passes"),
    [
        ("host loadgen2 became unreachable", True),
        ("Worker 'loadgen2_3f2a' (index 1) quit before the run time was up", True),
        ("podman: fdl-loadgen2 stopped", True),
        ("locustctl wait: missing heartbeat from loadgen2", True),
        # specific, but about something else
        ("the load test failed: users=0 is not valid", False),
        # names the host, not its loss
        ("loadgen2: Locust's run took 31 s", False),
        # a loss, not of the host that went away
        ("host loadgen1 became unreachable", False),
        ("host loadgen22 became unreachable", False),
    ],
)
def test_a_failed_run_must_say_that_the_stopped_generator_was_lost(message, passes):
    seen = f.stop_seen(finished=False, message=message, rebalance=None)
    outcome = LoadgenStop.judge(f.STOP_DONE, seen)
    assert (outcome.verdict is Verdict.PASS) is passes, outcome.reasons
    if not passes:
        assert outcome.reasons == (
            f"the run failed, but its message does not say that loadgen2 was lost: {message!r}",
        )


def test_loadgen_stop_fails_on_each_target_it_misses():
    seen = f.stop_seen(
        finished=False, said_why=False, message="ansible-playbook exited 2: no message",
        rebalance=None, leftovers={"loadgen1": ["812 /opt/locust/venv/bin/python ..."]},
        host_state="maintenance",
    )  # fmt: skip
    outcome = LoadgenStop.judge(f.STOP_DONE, seen)
    assert outcome.reasons == (
        "the run failed without saying why",
        "processes left running on loadgen1 (1: 812 /opt/locust/venv/bin/python ...)",
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
