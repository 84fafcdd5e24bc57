"""The four faults of the background tasks and the hosts behind the app
(celery-kill, redis-restart, upstream-stop, app-host-stop): each judge on
fabricated observations, passing and failing at its bounds; their lines; the
N/A verdict of app-host-stop with one app host."""

from __future__ import annotations

import pytest

from flask_deploy_lab.faults import (
    Verdict,
    app_host_stop,
    celery_kill,
    cli,
    redis_restart,
    render,
    upstream_stop,
)
from flask_deploy_lab.faults.app_host_stop import AppHostStop
from flask_deploy_lab.faults.celery_kill import CeleryKill
from flask_deploy_lab.faults.redis_restart import RedisRestart
from flask_deploy_lab.faults.stack import Answer
from flask_deploy_lab.faults.task_rows import (
    TaskSettings,
    parse_rows,
    parse_settings,
    settings_argv,
)
from flask_deploy_lab.faults.upstream_stop import UpstreamStop
from tests.faults import fabricated as f


def verdict(outcome):
    return outcome.verdict, list(outcome.reasons)


def test_the_targets_are_those_of_the_brief():
    assert celery_kill.SLACK_S == 20.0 and celery_kill.RESTART_TIMEOUT_S == 30
    assert (celery_kill.LOAD.task_kind, celery_kill.LOAD.delay) == ("upstream", 2.0)
    assert (redis_restart.LOAD.task_kind, redis_restart.DOWN_S) == ("render", 5)
    assert (redis_restart.MAX_POST_P99_S, redis_restart.MAX_RECOVERY_S) == (2.0, 5.0)
    assert (upstream_stop.LOAD.delay, upstream_stop.DOWN_S) == (0.5, 8)
    assert (upstream_stop.MAX_FAILED_P99_S, upstream_stop.WINDOW_SLACK_S) == (1.0, 1.0)
    assert (upstream_stop.STUCK_S, upstream_stop.MAX_STUCK) == (1.5, 2)
    assert app_host_stop.MAX_REJOIN_S == 30.0
    # the run lasts long enough after the start to see the host rejoin within its bound
    start = 8 + app_host_stop.DOWN_S
    assert app_host_stop.LOAD.duration - start >= app_host_stop.MAX_REJOIN_S


# ---------------------------------------------------------------- the task table


def test_the_workers_settings_are_read_from_two_lines_of_its_env_file():
    assert settings_argv() == [
        "grep", "-E", "^(LABAPP_TASK_TIME_LIMIT|LABAPP_TASK_VISIBILITY_TIMEOUT)=",
        "/etc/labapp/celery.env",
    ]  # fmt: skip
    text = "LABAPP_TASK_TIME_LIMIT=20\nLABAPP_TASK_VISIBILITY_TIMEOUT=45\n"
    assert parse_settings(text) == TaskSettings(20.0, 45.0)
    # a file without them: the role's defaults
    assert parse_settings("") == TaskSettings(30.0, 60.0)


def test_the_rows_are_read_from_what_the_db_host_printed():
    found = {"rows": [["a", "done", 2, 1000.5, 1070.1, 1072.2, ""],
                      ["b", "queued", 0, 1001.0, None, None, ""]], "pending": 1}  # fmt: skip
    rows = parse_rows(found)
    assert [(r.id, r.status, r.attempts, r.finished) for r in rows] == [
        ("a", "done", 2, 1072.2), ("b", "queued", 0, None)
    ]  # fmt: skip


# ---------------------------------------------------------------- celery-kill


def test_celery_kill_passes_when_every_task_is_done_within_its_bound():
    seen = f.celery_seen()
    assert verdict(CeleryKill.judge(f.CELERY_DONE, seen)) == (Verdict.PASS, [])
    assert seen.bound_s == 110.0
    assert seen.redelivery_s == [70.0, 71.0]
    assert len(seen.redelivered) == 2
    assert len(seen.failed_polls) == 2  # the clients gave up; the tasks did not fail


def test_celery_kill_passes_with_a_task_done_at_its_bound_and_fails_just_after():
    at_bound = f.task(99, created=1001.0, finished=f.KILL_AT + 110.0, attempts=2)
    rows = (*f.celery_rows(), at_bound)
    assert CeleryKill.judge(f.CELERY_DONE, f.celery_seen(rows=rows)).verdict is Verdict.PASS
    after = f.task(99, created=1001.0, finished=f.KILL_AT + 110.5, attempts=2)
    outcome = CeleryKill.judge(f.CELERY_DONE, f.celery_seen(rows=(*f.celery_rows(), after)))
    assert verdict(outcome) == (
        Verdict.FAIL, ["1 tasks done later than 110 s after the kill (the latest 110.5 s)"]
    )  # fmt: skip


def test_a_task_created_after_the_kill_is_timed_from_its_creation():
    late_born = f.task(98, created=1028.0, finished=1028.0 + 100)
    seen = f.celery_seen(rows=(*f.celery_rows(), late_born))
    assert not seen.late


def test_celery_kill_allows_the_stop_timeout_only_where_systemd_cannot_see_the_cgroup_empty():
    at_limit = f.celery_seen(restarted_s=5.0)
    assert CeleryKill.judge(f.CELERY_DONE, at_limit).verdict is Verdict.PASS
    lab = f.celery_seen(restarted_s=45.7, cgroup_empty_seen=False, stop_timeout_s=45.0)
    assert (lab.restart_limit_s, lab.restart_waited_s) == (50.0, 75.0)
    assert CeleryKill.judge(f.CELERY_DONE, lab).verdict is Verdict.PASS
    # the same restart where systemd sees the cgroup empty is a failure
    vm = f.celery_seen(restarted_s=45.7, cgroup_empty_seen=True, stop_timeout_s=45.0)
    assert vm.restart_limit_s == 5.0
    assert CeleryKill.judge(f.CELERY_DONE, vm).verdict is Verdict.FAIL


CELERY_MISSES = {
    "failed": (f.celery_seen(rows=f.celery_rows(failed=2)), "2 of 42 tasks failed"),
    "left running": (
        f.celery_seen(rows=f.celery_rows(pending=1)),
        "1 of 41 tasks still queued or running 110 s after the kill",
    ),
    "late": (
        f.celery_seen(rows=f.celery_rows(late=3)),
        "3 tasks done later than 110 s after the kill (the latest 120.0 s)",
    ),
    "not restarted": (
        f.celery_seen(main_pid_after=None, restarted_s=None),
        "systemd did not start a new main process within 30 s",
    ),
    "restarted late": (
        f.celery_seen(restarted_s=5.5),
        "systemd started a new main process 5.5 s after the kill, later than 5 s",
    ),
    "not restarted, in a container on cgroup v1": (
        f.celery_seen(
            main_pid_after=None, restarted_s=None, cgroup_empty_seen=False, stop_timeout_s=45.0
        ),
        "systemd did not start a new main process within 75 s",
    ),
    "restarted after its stop timeout, in a container on cgroup v1": (
        f.celery_seen(restarted_s=50.5, cgroup_empty_seen=False, stop_timeout_s=45.0),
        "systemd started a new main process 50.5 s after the kill, later than 50 s",
    ),
    "same pid": (
        f.celery_seen(main_pid_after=812),
        "systemd did not start a new main process within 30 s",
    ),
    "idle worker": (
        f.celery_seen(held_at_kill=0),
        "no task was in flight at the kill: no pool process called the upstream within 10 s",
    ),
    "not counted": (
        f.celery_seen(held_at_kill=None),
        "cannot judge: the tasks in flight at the kill were not counted",
    ),
    "a held task not delivered again": (
        f.celery_seen(held_at_kill=3),
        "3 tasks were in flight at the kill, 2 delivered again (attempts > 1)",
    ),
    "no task": (f.celery_seen(rows=()), "no task was created during the run"),
    "a POST failed": (
        f.celery_seen(
            requests=f.log(
                [*f.posts(1000, 1030, 1), f.req(1010.0, 5, 503, name="/tasks", retry="2")]
            )
        ),
        "1 POST /tasks failed while the broker was up (status 503)",
    ),
    "no log": (f.celery_seen(requests=None), "cannot judge: the run left no locust_requests.csv"),
}


@pytest.mark.parametrize(("seen", "reason"), CELERY_MISSES.values(), ids=CELERY_MISSES.keys())
def test_celery_kill_fails_on_each_target_it_misses(seen, reason):
    outcome = CeleryKill.judge(f.CELERY_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert reason in outcome.reasons


def test_the_celery_kill_line():
    line = render.result(7, CeleryKill.judge(f.CELERY_DONE, f.celery_seen())).line()
    assert line.startswith(
        "PASS  7 celery-kill      kill -9 of labapp-celery.service's main process (pid 812) "
        "and its 2 pool processes on app1 8.0 s into /tasks x4 users, 30 s (upstream tasks of "
        "2 s)  =>  40 tasks: 40 done (limit: done <= 110 s after the kill: visibility 60 + time "
        "limit 30 + 20 s); 2 in flight at the kill (the pool's calls to the upstream); "
        "2 redelivered (attempts > 1), done 70-71 s after the kill; "
        "new MainPID 1003 1.2 s after the kill (NRestarts 0 -> 1)"
    )


# ---------------------------------------------------------------- redis-restart


def test_redis_restart_passes_with_quick_503s_and_every_accepted_task_done():
    seen = f.redis_seen()
    assert verdict(RedisRestart.judge(f.REDIS_DONE, seen)) == (Verdict.PASS, [])
    assert (seen.accepted, len(seen.failed_posts), len(seen.while_down)) == (240, 50, 50)
    assert seen.p99_while_down_s == 1.005
    assert seen.first_accepted_s == 0.7
    assert seen.last_failure_s == 0.5


def test_redis_restart_passes_at_a_p99_of_2_s_and_fails_above():
    assert RedisRestart.judge(
        f.REDIS_DONE, f.redis_seen(requests=f.redis_requests(down_ms=2000.0))
    ).verdict is Verdict.PASS  # fmt: skip
    outcome = RedisRestart.judge(
        f.REDIS_DONE, f.redis_seen(requests=f.redis_requests(down_ms=2100.0))
    )
    assert "p99 2.1 s of the 50 POSTs started while Redis was down, more than 2 s" in (
        outcome.reasons
    )


def test_a_post_hanging_at_the_end_of_the_run_counts_with_its_wait():
    hung = [f.waiting(1010.0, 1030.0, name="/tasks")]
    seen = f.redis_seen(requests=f.redis_requests(extra=hung))
    assert seen.p99_while_down_s == 20.0
    assert RedisRestart.judge(f.REDIS_DONE, seen).verdict is Verdict.FAIL


REDIS_MISSES = {
    "a 500": (
        f.redis_seen(requests=f.redis_requests(extra=[f.req(1010.0, 5, 500, name="/tasks")])),
        "1 failed POSTs other than 503 (status 500)",
    ),
    "no answer": (
        f.redis_seen(requests=f.redis_requests(extra=[f.req(1010.0, 5, 0, name="/tasks")])),
        "1 failed POSTs other than 503 (status 0)",
    ),
    "a bare 503": (
        f.redis_seen(requests=f.redis_requests(extra=[f.req(1010.0, 5, 503, name="/tasks")])),
        "1 of 51 503s without Retry-After",
    ),
    "not seen": (
        f.redis_seen(requests=f.log(f.posts(1000, 1030, 10))),
        "no POST /tasks was refused: Redis's outage was not seen",
    ),
    "slow to accept again": (
        f.redis_seen(
            requests=f.log(
                f.posts(1000, 1008, 10)
                + f.posts(1008, 1019, 10, status=503, retry="2")
                + f.posts(1019, 1030, 10)
            )
        ),
        "the first 202 5.7 s after Redis was back, more than 5 s",
    ),
    "never accepts again": (
        f.redis_seen(
            requests=f.log(f.posts(1000, 1008, 10) + f.posts(1008, 1030, 10, status=503, retry="2"))
        ),
        "no POST was answered 202 after Redis was back",
    ),
    "a task lost": (
        f.redis_seen(rows=tuple(f.task(i) for i in range(238))),
        "2 tasks answered 202 have no row (240 202s, 238 rows)",
    ),
    "a task failed": (
        f.redis_seen(rows=(*tuple(f.task(i) for i in range(239)), f.task(999, "failed"))),
        "1 of 240 tasks failed",
    ),
    "a task never finished": (
        f.redis_seen(
            rows=(*tuple(f.task(i) for i in range(239)), f.task(999, "queued", finished=None))
        ),
        "1 of 240 tasks never finished",
    ),
    "today's log": (
        f.redis_seen(requests=f.log([], f.TODAY)),
        "cannot judge: the request log lacks status, retry_after",
    ),
}


@pytest.mark.parametrize(("seen", "reason"), REDIS_MISSES.values(), ids=REDIS_MISSES.keys())
def test_redis_restart_fails_on_each_target_it_misses(seen, reason):
    outcome = RedisRestart.judge(f.REDIS_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert reason in outcome.reasons


def test_the_redis_restart_line():
    line = render.result(8, RedisRestart.judge(f.REDIS_DONE, f.redis_seen())).line()
    assert line == (
        "PASS  8 redis-restart    systemctl stop redis-server.service on db1 8 s into /tasks x10 "
        "users, 30 s (render tasks, n=5), start 5 s later (answering again 5.2 s after the "
        "stop)  =>  POST /tasks: 50 of 290 failed (50 of 50 503s with Retry-After (2), 0 other); "
        "p99 1.005 s of the 50 POSTs started while it was down (limit 2 s); first 202 0.7 s "
        "after it was back, last failure 0.5 s after (limit 5 s); 240 answered 202; 240 tasks: "
        "240 done"
    )


# ---------------------------------------------------------------- upstream-stop


def test_upstream_stop_passes_with_quick_json_502s_only_in_the_outage():
    seen = f.upstream_seen()
    assert verdict(UpstreamStop.judge(f.UPSTREAM_DONE, seen)) == (Verdict.PASS, [])
    assert len(seen.failures) == 2800
    assert seen.failed_p99_s == 0.008
    assert seen.stuck == 0
    assert seen.resume_s == 0.5
    assert len(seen.probe_failures) == 60


def test_failures_that_waited_for_the_upstreams_timeout_fail_it_and_pile_up():
    # each failure waited 5.5 s (delay + the app's grace): 20 users all stuck
    piled = f.log(f.slow(1000, 1008, 40) + f.slow(1009, 1016, 4, status=504, ms=5500.0)
                  + f.slow(1017, 1030, 40))  # fmt: skip
    seen = f.upstream_seen(requests=piled)
    outcome = UpstreamStop.judge(f.UPSTREAM_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert (
        "p99 5.5 s of the 28 failures, more than 1 s: they waited for the upstream's timeout"
        in (outcome.reasons)
    )
    assert seen.stuck > upstream_stop.MAX_STUCK
    assert any("piled up" in r for r in outcome.reasons)


def test_upstream_stop_passes_with_two_stuck_requests_and_fails_with_three():
    def with_stuck(n):
        stuck = [f.req(1010.0 + i / 10, 3000.0, 502, name="/slow") for i in range(n)]
        return f.upstream_seen(requests=f.upstream_requests(extra=stuck))

    assert with_stuck(2).stuck == 2
    assert UpstreamStop.judge(f.UPSTREAM_DONE, with_stuck(2)).verdict is Verdict.PASS
    outcome = UpstreamStop.judge(f.UPSTREAM_DONE, with_stuck(3))
    assert verdict(outcome) == (
        Verdict.FAIL,
        ["3 requests in flight for more than 1.5 s of the outage at once, more than 2: "
         "they piled up"],
    )  # fmt: skip


def test_a_queue_from_before_the_stop_counts_only_what_the_outage_adds():
    # Gunicorn's sync workers: 2 slots for 20 users, so requests wait ~4 s in the
    # backlog in normal running; at the stop 18 were queued, and all were
    # answered (a quick 502) within 0.4 s of it: no wait the outage added
    stop = f.U_STOP
    waits = [(stop - 4.0 + i / 10, stop + 0.02 * i) for i in range(18)]
    queued = [f.req(start, (end - start) * 1000, 502, name="/slow") for start, end in waits]
    seen = f.upstream_seen(requests=f.upstream_requests(extra=queued))
    assert seen.stuck == 0
    assert UpstreamStop.judge(f.UPSTREAM_DONE, seen).verdict is Verdict.PASS
    # three of them held 2 s into the outage: that wait is the outage's
    held = [f.req(stop - 4.0, 6000.0, 502, name="/slow") for _ in range(3)]
    seen = f.upstream_seen(requests=f.upstream_requests(extra=queued + held))
    assert seen.stuck == 3
    assert any("piled up" in r for r in UpstreamStop.judge(f.UPSTREAM_DONE, seen).reasons)


UPSTREAM_MISSES = {
    "a 500": (
        f.upstream_seen(requests=f.upstream_requests(extra=[f.req(1010.0, 5, 500, name="/slow")])),
        "1 failures other than 502/503/504 (status 500)",
    ),
    "a failure after the outage": (
        f.upstream_seen(requests=f.upstream_requests(extra=[f.req(1020.0, 5, 502, name="/slow")])),
        "1 failures outside the outage (+-1 s)",
    ),
    "a failure before it": (
        f.upstream_seen(requests=f.upstream_requests(extra=[f.req(1005.0, 5, 502, name="/slow")])),
        "1 failures outside the outage (+-1 s)",
    ),
    "slow to resume": (
        f.upstream_seen(
            requests=f.log(
                f.slow(1000, 1008, 40)
                + f.slow(1009, 1023, 400, status=502, ms=8.0)
                + f.slow(1023, 1030, 40)
            )
        ),
        "the first success 6.5 s after the slow API was back, more than 5 s",
    ),
    "not seen": (
        f.upstream_seen(requests=f.log(f.slow(1000, 1030, 40))),
        "no request failed: the slow API's outage was not seen",
    ),
    "nginx's html": (
        f.upstream_seen(answers=f.upstream_answers(body="other")),
        "60 of the probe's 60 failures while down without a JSON error body",
    ),
    "probe saw nothing": (
        f.upstream_seen(answers=(Answer(1010.0, 200, "-", "json"),)),
        "the probe saw no failure while the slow API was down",
    ),
}


@pytest.mark.parametrize(("seen", "reason"), UPSTREAM_MISSES.values(), ids=UPSTREAM_MISSES.keys())
def test_upstream_stop_fails_on_each_target_it_misses(seen, reason):
    outcome = UpstreamStop.judge(f.UPSTREAM_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert reason in outcome.reasons


def test_the_upstream_stop_line():
    line = render.result(9, UpstreamStop.judge(f.UPSTREAM_DONE, f.upstream_seen())).line()
    assert line.startswith(
        "PASS  9 upstream-stop    systemctl stop slow-api.service on db1 8 s into /slow x20 "
        "users, 30 s (/slow?delay=0.5), start 8 s later (answering again 8.5 s after the stop)  "
        "=>  2800 of 3640 requests failed (502 x2800); p99 0.008 s of the failures (limit 1 s)"
    )
    assert "probe while down: 60 of 60 failures with a JSON error body" in line


# ---------------------------------------------------------------- app-host-stop


def test_app_host_stop_passes_when_the_other_host_serves_and_it_rejoins():
    seen = f.app_stop_seen()
    assert verdict(AppHostStop.judge(f.APP_STOP_DONE, seen)) == (Verdict.PASS, [])
    assert seen.down_window == (1010, 1018)
    assert seen.served_while_down == {"10.0.10.21": 160}
    assert seen.rejoin_s == 3.4


def test_app_host_stop_passes_with_as_many_failures_as_were_in_flight_to_it():
    failed = [f.req(1008.1, 5, 502, name="/slow")] * 10
    seen = f.app_stop_seen(requests=f.log(f.slow(1000, 1050, 40) + failed))
    assert AppHostStop.judge(f.APP_STOP_DONE, seen).verdict is Verdict.PASS
    seen = f.app_stop_seen(requests=f.log(f.slow(1000, 1050, 40) + failed + failed[:1]))
    assert verdict(AppHostStop.judge(f.APP_STOP_DONE, seen)) == (
        Verdict.FAIL,
        ["11 requests failed, more than the 10 nginx had in flight to app2 at the stop"],
    )


def test_app_host_stop_passes_at_30_s_to_rejoin_and_fails_after():
    assert f.app_stop_seen(upstreams=f.app_upstreams(rejoin_at=1048)).rejoin_s == 29.4
    late = f.app_stop_seen(upstreams=f.app_upstreams(rejoin_at=1049))
    assert late.rejoin_s == 30.4
    assert verdict(AppHostStop.judge(f.APP_STOP_DONE, late)) == (
        Verdict.FAIL, ["app2 got traffic again 30.4 s after its start, more than 30 s"]
    )  # fmt: skip


APP_MISSES = {
    "answers from the stopped host": (
        f.app_stop_seen(upstreams=f.app_upstreams(victim_down=3)),
        "nginx logged 24 answers from app2 while it was stopped",
    ),
    "nobody served": (
        f.app_stop_seen(upstreams=f.app_upstreams(others=0)),
        "no other app host answered while app2 was stopped",
    ),
    "never back": (
        f.app_stop_seen(upstreams=f.app_upstreams(rejoin_at=1100)),
        "app2 got no traffic again within the run after its start",
    ),
    "not counted": (
        f.app_stop_seen(in_flight=None),
        "cannot judge: nginx's connections to app2 were not counted",
    ),
}


@pytest.mark.parametrize(("seen", "reason"), APP_MISSES.values(), ids=APP_MISSES.keys())
def test_app_host_stop_fails_on_each_target_it_misses(seen, reason):
    outcome = AppHostStop.judge(f.APP_STOP_DONE, seen)
    assert outcome.verdict is Verdict.FAIL
    assert reason in outcome.reasons


def test_app_host_stop_is_not_applicable_with_one_app_host():
    outcome = AppHostStop.judge(None, app_host_stop.Observation(("app1",)))
    assert verdict(outcome) == (
        Verdict.NOT_APPLICABLE,
        ["the inventory has 1 app host (app1): no other to fail over to; use one with two "
         "(inventory/lab-two-app)"],
    )  # fmt: skip
    result = render.result(10, outcome)
    assert result.line().startswith("N/A   10 app-host-stop    systemctl stop of one app host's")
    assert render.cell_text(result) == "N/A 1 app host"


def test_not_applicable_is_neither_a_pass_nor_a_failure(tmp_path, monkeypatch, capsys):
    from flask_deploy_lab.faults.executor import Executor, Inventory
    from tests.faults.test_cli import StubStack

    class OneAppHost(AppHostStop):
        def run(self, stack):
            return self.judge(None, app_host_stop.Observation(("app1",)))

    monkeypatch.setattr(cli, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(cli, "FAULTS", (OneAppHost,))
    monkeypatch.setattr(cli, "NAMES", ("app-host-stop",))
    monkeypatch.setattr(Executor, "discover", lambda self: Inventory({}, {}))
    monkeypatch.setattr(cli, "Stack", lambda executor, *_, **__: StubStack(executor))
    assert cli.main(["--no-converge", "--run-id", "faults-t"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("N/A   1 app-host-stop ")
    assert out[2].startswith("faults faults-t: 0 passed, 0 failed, 0 skipped, 1 not applicable in ")


def test_the_app_host_stop_line():
    line = render.result(10, AppHostStop.judge(f.APP_STOP_DONE, f.app_stop_seen())).line()
    assert line == (
        "PASS  10 app-host-stop    systemctl stop labapp-gunicorn.service on app2 (of 2 app hosts) "
        "8 s into /slow x20 users, 50 s (/slow?delay=0.5), start 10 s later  =>  0 of 2000 "
        "requests failed (none), limit 10 (nginx's connections to app2 at the stop); while it "
        "was down (8 s): answered by 10.0.10.21 x160; app2 answering again 3.4 s after its "
        "start (limit 30 s)"
    )


def test_the_new_faults_are_chosen_by_name_or_number():
    args = cli.parse_args(["--only", "celery-kill", "8", "upstream-stop,10"])
    assert args.faults == ["celery-kill", "redis-restart", "upstream-stop", "app-host-stop"]
