"""What the faults read of the stack: the deployment fact, a unit's properties,
the probe's answers, PostgreSQL's connections, nginx's answers per second, and
the URLs of the catalogue's endpoints."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from flask_deploy_lab.faults import FaultError
from flask_deploy_lab.faults.executor import Reply
from flask_deploy_lab.faults.stack import (
    NGINX_DEFAULTS,
    Answer,
    Stack,
    UnitState,
    deployment,
    endpoint_url,
    nginx_status_url,
    parse_answers,
    parse_pg_connections,
    parse_unit,
    rate_between,
    unit_argv,
    with_retry_after,
)

FACT = {
    "server": "gunicorn-gthread", "unit": "labapp-gunicorn.service", "db_mode": "pool",
    "protocol": "http", "port": 8000, "cpus": 1.0, "processes": 3, "threads": 50,
    "greenlets": 1000, "slots": 150, "db_pool_max": 10, "cpu_quota": "100%", "memory_max": "384M",
}  # fmt: skip


def test_the_deployment_is_read_from_the_app_hosts_fact():
    read = deployment("app1", FACT)
    assert (read.server, read.unit, read.db_mode) == (
        "gunicorn-gthread",
        "labapp-gunicorn.service",
        "pool",
    )
    assert (read.processes, read.db_pool_max, read.port) == (3, 10, 8000)
    with pytest.raises(FaultError, match="app host app1 has no deployment fact"):
        deployment("app1", None)


def test_a_units_properties_are_read_from_systemctl_show():
    assert unit_argv("labapp.service") == [
        "systemctl", "show", "--property=MainPID", "--property=NRestarts",
        "--property=CanReload", "labapp.service",
    ]  # fmt: skip
    assert parse_unit("MainPID=812\nNRestarts=2\nCanReload=yes\n") == UnitState(812, 2, True)
    assert parse_unit("MainPID=0\nCanReload=no\n") == UnitState(0, 0, False)


def test_the_probes_answers_are_read_line_by_line():
    text = "1795274634.100 503 1\n1795274634.200 0 URLError\nTraceback (most recent call)\n"
    assert parse_answers(text) == [
        Answer(1795274634.1, 503, "1"),
        Answer(1795274634.2, 0, "URLError"),
    ]
    answers = [(1.0, 200, "-"), (2.0, 503, "1"), (3.0, 503, "-")]
    matching, with_header = with_retry_after(answers)
    assert len(matching) == 2
    assert with_header == [(2.0, 503, "1")]


def test_rates_are_counted_in_whole_second_windows():
    times = [100.0, 100.0, 101.0, 102.0, 102.0, 102.0, 105.0]
    answered = {}
    for moment in times:
        answered[int(moment)] = answered.get(int(moment), 0) + 1
    assert rate_between(answered, 100, 103) == 2.0
    assert rate_between(answered, 103, 105) == 0.0
    assert rate_between(answered, 105, 106) == 1.0


def test_postgresqls_connections_are_counted_by_state():
    assert parse_pg_connections("idle|6\nactive|1\n") == {"idle": 6, "active": 1}
    assert parse_pg_connections("") == {}


def test_the_urls_are_the_catalogues_paths_at_the_target():
    assert endpoint_url("http://10.0.0.3", "db") == "http://10.0.0.3/db"
    assert endpoint_url("http://10.0.0.3", "sleep", 0.5) == "http://10.0.0.3/sleep?delay=0.5"
    # an endpoint without a delay takes none
    assert endpoint_url("http://10.0.0.3", "json", 0.5) == "http://10.0.0.3/json"


def test_nginx_status_is_on_the_inventorys_port_else_the_roles_default():
    default = yaml.safe_load(NGINX_DEFAULTS.read_text())["nginx_status_port"]
    assert nginx_status_url(None) == f"http://127.0.0.1:{default}/nginx_status"
    assert nginx_status_url(8081) == "http://127.0.0.1:8081/nginx_status"


class OutageExecutor:
    """Answers the outage script with `reply` and records every command."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def script(self, host, path, argv, **_):
        self.calls.append(("script", host, path.name, [str(a) for a in argv]))
        return self.reply

    def run_one(self, host, argv, **_):
        self.calls.append(("run_one", host, argv))
        return Reply(host, 0)


def outage(reply):
    executor = OutageExecutor(reply)
    stack = SimpleNamespace(executor=executor)
    call = Stack.outage.__get__(stack)
    return executor, lambda: call(
        "db1", "pg.service", at=0.0, down_s=5, ready_argv=["pg_isready"], ready_timeout=60,
        what="PostgreSQL", label="pg-restart",
    )  # fmt: skip


def test_an_outage_returns_its_times_and_starts_nothing_more_when_it_went_well():
    times = {"stopping_at": 1.0, "down_at": 1.2, "starting_at": 6.2, "ready_at": 7.0}
    executor, run = outage(Reply("db1", 0, stdout=json.dumps(times)))
    assert run() == times
    (call,) = executor.calls
    assert call[:3] == ("script", "db1", "outage.py")
    assert call[3][call[3].index("--") + 1 :] == ["pg_isready"]
    assert call[3][:2] == ["--unit", "pg.service"]


def test_an_outage_that_failed_starts_the_unit_again_and_says_why():
    executor, run = outage(Reply("db1", 1, stderr="systemctl: unit pg.service not found"))
    with pytest.raises(FaultError, match=r"the outage of pg\.service on db1 failed: .*not found"):
        run()
    assert executor.calls[-1] == ("run_one", "db1", ["systemctl", "start", "pg.service"])


def test_an_outage_whose_service_never_answered_is_an_error():
    times = {"stopping_at": 1.0, "down_at": 1.2, "starting_at": 6.2, "ready_at": None}
    executor, run = outage(Reply("db1", 0, stdout=json.dumps(times)))
    with pytest.raises(FaultError, match="PostgreSQL did not answer within 60 s"):
        run()
    # the outage itself started the unit: no second start
    assert [call[0] for call in executor.calls] == ["script"]
