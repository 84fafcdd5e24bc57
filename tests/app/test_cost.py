"""labapp.cost: the app called in-process, with no server, against the real test
database; the figures it gives, and how it refuses what it cannot measure."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from labapp import cost
from labapp_support import APP_DIR, app_env

# An address that refuses at once: nothing may depend on reaching it.
NOWHERE = "http://127.0.0.1:9"
# A request to this app costs well under this many CPU seconds in-process; a
# figure above it is not a cost per request (a whole run divided wrongly).
PLAUSIBLE_CPU_S = 0.02


def run_cost(*args, env):
    """`python -m labapp.cost ARGS` as the load test runs it on an app host: the
    app's directory as the working directory, its settings from the environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABAPP_")}
    return subprocess.run(
        [sys.executable, "-m", "labapp.cost", *args],
        cwd=APP_DIR,
        env=base | {"PYTHONPATH": str(APP_DIR)} | env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def unit_env(database_url):
    """The LABAPP_* settings the flask_app role writes into the unit's environment file."""
    return app_env(
        database_url, NOWHERE, db_mode="pool", db_pool_min=10, db_pool_max=10, db_pool_timeout=0.5
    )


# --------------------------------------------------------------- the command, real calls


def test_the_cost_of_db_is_a_real_per_request_figure(unit_env):
    done = run_cost("--endpoint", "/db", "--requests", "300", "--warmup", "30", env=unit_env)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert list(figures) == ["/db"]
    db = figures["/db"]
    assert set(db) == {"requests", "cpu_s_per_request", "wall_s_per_request"}
    assert db["requests"] == 300
    assert 0 < db["cpu_s_per_request"] < PLAUSIBLE_CPU_S
    # each call waits for PostgreSQL's answer, which is wall time, not this process's CPU
    assert db["cpu_s_per_request"] < db["wall_s_per_request"] < 1


def test_several_endpoints_with_query_strings_in_the_order_given(unit_env):
    done = run_cost(
        "--endpoint", "/json", "--endpoint", "/queries?n=10", "--requests", "200",
        "--warmup", "20", env=unit_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert list(figures) == ["/json", "/queries?n=10"]
    for figure in figures.values():
        assert figure["requests"] == 200
        assert 0 < figure["cpu_s_per_request"] < PLAUSIBLE_CPU_S
    # ten queries (and their rows serialised) cost more than a small dict
    assert figures["/queries?n=10"]["cpu_s_per_request"] > figures["/json"]["cpu_s_per_request"]


def test_the_output_is_one_json_object_on_stdout_alone(unit_env):
    done = run_cost("--endpoint", "/json", "--requests", "5", "--warmup", "0", env=unit_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    assert isinstance(json.loads(done.stdout), dict)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # an unknown route, in the warm-up's first call
        (
            ["--endpoint", "/nope", "--warmup", "5"],
            "GET /nope answered 404, not 200, in call 1 of 5 of the warm-up:",
        ),
        # no warm-up: the first measured call; the body says why
        (
            ["--endpoint", "/render?id=999", "--warmup", "0", "--requests", "3"],
            "GET /render?id=999 answered 404, not 200, in call 1 of 3 of the measured:",
        ),
        (["--endpoint", "/queries?n=abc", "--warmup", "1"], "answered 400, not 200"),
    ],
)
def test_a_response_that_is_not_200_is_an_error_with_status_and_body(unit_env, args, message):
    done = run_cost(*args, env=unit_env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert message in done.stderr
    assert '"error"' in done.stderr  # the start of the body
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_is_an_error_not_a_figure(unit_env):
    env = unit_env | {"LABAPP_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/labapp"}
    done = run_cost("--endpoint", "/json", "--endpoint", "/db", env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "GET /db answered 503, not 200, in call 1 of 200 of the warm-up:" in done.stderr
    assert "database unreachable" in done.stderr


def test_settings_the_app_refuses_are_an_error(unit_env):
    done = run_cost("--endpoint", "/json", env=unit_env | {"LABAPP_DB_MODE": "pooled"})
    assert done.returncode == 1
    assert "cost: the app could not be built: LABAPP_DB_MODE must be one of" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--endpoint", "/db", "--bogus"], "unrecognized arguments: --bogus"),
        (["--endpoint", "/db", "--requests", "0"], "--requests must be at least 1; got 0"),
        (["--endpoint", "/db", "--requests", "-5"], "--requests must be at least 1; got -5"),
        (["--endpoint", "/db", "--requests", "many"], "'many' is not a whole number"),
        (["--endpoint", "/db", "--warmup", "-1"], "--warmup must be at least 0; got -1"),
        (["--endpoint", "db"], "'db' is not a path (it must start with /)"),
        (["--endpoint", "/db", "--endpoint", "/db"], "--endpoint /db given more than once"),
        ([], "the following arguments are required: --endpoint"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        cost.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("usage: python -m labapp.cost")


def test_bad_usage_from_the_command_line_exits_2(unit_env):
    done = run_cost("--endpoint", "/db", "--requests", "0", env=unit_env)
    assert done.returncode == 2
    assert "--requests must be at least 1; got 0" in done.stderr


# --------------------------------------------------------------- measure(), in-process


def counting(app, seen):
    """The app, noting each call's path and query string: the calls go to it and nowhere else."""

    def wrapper(environ, start_response):
        seen.append((environ["PATH_INFO"], environ["QUERY_STRING"]))
        return app(environ, start_response)

    return wrapper


@pytest.mark.parametrize("mode", ["naive", "pool"])
def test_measure_calls_the_app_warmup_plus_n_times(make_app, mode):
    seen = []
    app = counting(make_app(DB_MODE=mode), seen)
    figures = cost.measure(app, "/db", requests=40, warmup=7)
    assert seen == [("/db", "")] * 47
    assert figures["requests"] == 40
    assert 0 < figures["cpu_s_per_request"] < PLAUSIBLE_CPU_S


def test_a_call_gives_the_status_and_the_whole_body(make_app):
    seen = []
    app = counting(make_app(), seen)
    status, body = cost.call(app, cost.environ_template("/queries?n=3"))
    assert seen == [("/queries", "n=3")]
    assert status == 200
    rows = json.loads(body)
    assert len(rows) == 3 and set(rows[0]) == {"id", "randomNumber"}


def test_every_call_gets_an_environ_of_its_own(make_app):
    """The app may change the environ it is given (Flask does); no call sees another's."""
    template = cost.environ_template("/json")
    keys = set(template)

    def scribbling(environ, start_response):
        environ["scribbled"] = True
        start_response("200 OK", [])
        return [b"ok"]

    assert cost.call(scribbling, template) == (200, b"ok")
    assert set(template) == keys


def test_the_response_iterable_is_closed_as_a_server_closes_it():
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"a", b"b"])

    assert cost.call(app, cost.environ_template("/x")) == (200, b"ab")
    assert closed == [True]


# Synthetic apps whose cost is known: the figures are hand-computed.
COST_S = 0.002


def spin(clock, seconds):
    """Busy until `clock` (a CPU clock) has advanced `seconds`."""
    until = clock() + seconds
    while clock() < until:
        pass


def answering(work):
    def app(environ, start_response):
        work()
        start_response("200 OK", [])
        return [b"{}"]

    return app


def test_cpu_seconds_are_the_cpu_a_request_burns():
    # 2 ms of CPU each: 2 ms per request, plus the call's own few microseconds
    figures = cost.measure(
        answering(lambda: spin(time.process_time, COST_S)), "/x", requests=50, warmup=2
    )
    assert COST_S <= figures["cpu_s_per_request"] < COST_S * 1.5
    assert figures["wall_s_per_request"] >= COST_S


def test_waiting_is_wall_time_not_cpu():
    # 2 ms asleep each: 2 ms of wall per request, next to no CPU
    figures = cost.measure(answering(lambda: time.sleep(COST_S)), "/x", requests=50, warmup=2)
    assert figures["wall_s_per_request"] >= COST_S
    assert figures["cpu_s_per_request"] < COST_S / 4


def test_cpu_burnt_in_another_thread_counts():
    # the app hands 2 ms of CPU to a thread and waits for it: the process's CPU has it
    def in_a_thread():
        worker = threading.Thread(target=spin, args=(time.thread_time, COST_S))
        worker.start()
        worker.join()

    figures = cost.measure(answering(in_a_thread), "/x", requests=50, warmup=2)
    assert COST_S <= figures["cpu_s_per_request"] < COST_S * 1.5


def test_a_failure_in_the_measured_calls_names_the_call_status_and_body():
    calls = []

    def third_measured_fails(environ, start_response):
        calls.append(1)
        # 2 warm-up calls, then the 3rd measured one is the 5th call
        if len(calls) == 5:
            start_response("500 INTERNAL SERVER ERROR", [])
            return [b"boom " * 100]
        start_response("200 OK", [])
        return [b"{}"]

    with pytest.raises(cost.CallFailed) as failed:
        cost.measure(third_measured_fails, "/x?a=1", requests=10, warmup=2)
    message = str(failed.value)
    assert message.startswith("GET /x?a=1 answered 500, not 200, in call 3 of 10 of the measured:")
    # the body, cut at 300 bytes
    assert message.endswith(" ...")
    assert message.count("boom") == 60
    assert len(calls) == 5
