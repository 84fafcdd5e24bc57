"""cell.json and environment.json from the facts a load-test run gathers."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime

import pytest

from flask_deploy_lab import cell as cell_module
from flask_deploy_lab.cell import FactsError, compute
from flask_deploy_lab.report.model import Cell as ReportCell

APP_FACT = {
    "server": "uwsgi", "unit": "labapp-uwsgi.service", "db_mode": "pool", "protocol": "http",
    "port": 8000, "cpus": 1.0, "processes": 3, "threads": 50, "greenlets": 1000, "slots": 150,
    "db_pool_max": 10, "cpu_quota": "50%", "memory_max": "384M",
}  # fmt: skip

FACTS = {
    "params": {
        "endpoint": "slow", "users": "100", "spawn_rate": "100", "duration": "20",
        "warmup": "5", "delay_s": "0.5", "queries": "20", "run_id": "r1",
        "started": "2026-11-30T01:00:00Z", "target": "http://10.88.0.4", "substrate": "lab",
    },
    "locust": {"workers": "2", "workers_lost": []},
    "controller": {"ansible_core": "2.19.14"},
    "hosts": {
        "db1": {"groups": ["db", "upstream"], "node_cpus": 1, "node_memory_mb": 1024,
                "labapp": None, "probes": ["postgresql==15.14"]},
        "app1": {"groups": ["app"], "node_cpus": 1, "node_memory_mb": 512, "labapp": APP_FACT,
                 "virtualization_role": "guest", "virtualization_type": "podman",
                 "python_version": "3.11.2", "kernel": "6.1.0",
                 "probes": ["cgroup-fs==tmpfs", "Flask==3.1.3", "uWSGI==2.0.31", "pip==23.0"]},
        "proxy1": {"groups": ["proxy"], "probes": ["nginx==1.22.1"]},
        "loadgen1": {"groups": ["loadgen"], "probes": ["locust==2.47.0"]},
        "loadgen2": {"groups": ["loadgen"], "probes": []},
    },
}  # fmt: skip
NOW = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)


def test_a_cell_from_the_facts():
    cell, _ = compute(FACTS, now=NOW)
    assert (cell.server, cell.endpoint, cell.users, cell.spawn_rate) == (
        "uwsgi",
        "slow",
        100,
        100.0,
    )
    assert (cell.delay_s, cell.queries) == (0.5, None)  # /slow has a delay, no ?n=
    assert (cell.server_slots, cell.pool_size, cell.db_mode) == (150, 30, "pool")
    assert cell.app_hosts == ["app1"] and cell.db_hosts == ["db1"]
    assert cell.loadgen_hosts == ["loadgen1", "loadgen2"] and cell.workers == 2
    # a cgroup-v1 container: the unit's CPUQuota is written, not enforced
    assert cell.app_cpus == 1.0


def test_the_environment_from_the_facts():
    _, environment = compute(FACTS, now=NOW)
    assert environment.finished == "2026-11-30T01:02:03Z"
    assert environment.limits.cgroup_version == 1 and environment.limits.in_container
    assert not environment.limits.unit_limits_enforced
    versions = environment.versions
    assert versions["flask"] == "3.1.3" and versions["uwsgi"] == "2.0.31"
    assert versions["postgresql"] == "15.14" and versions["nginx"] == "1.22.1"
    assert versions["ansible-core"] == "2.19.14" and versions["kernel"] == "6.1.0"
    assert "pip" not in versions and "cgroup-fs" not in versions
    assert [h["name"] for h in environment.hosts] == list(FACTS["hosts"])
    assert environment.hosts[0]["groups"] == ["db", "upstream"]


def test_enforced_limits_cap_the_app_cpus():
    facts = copy.deepcopy(FACTS)
    facts["hosts"]["app1"]["probes"][0] = "cgroup-fs==cgroup2fs"
    cell, environment = compute(facts, now=NOW)
    assert environment.limits.unit_limits_enforced
    assert cell.app_cpus == 0.5


def test_unbounded_servers_naive_mode_and_queries():
    facts = copy.deepcopy(FACTS)
    facts["params"]["endpoint"] = "queries"
    facts["hosts"]["app1"]["labapp"] = dict(
        APP_FACT, server="flask-threaded", slots=None, db_mode="naive"
    )
    cell, _ = compute(facts, now=NOW)
    assert (cell.server_slots, cell.pool_size, cell.delay_s, cell.queries) == (None, None, None, 20)


def test_two_app_hosts_add_up():
    facts = copy.deepcopy(FACTS)
    facts["hosts"]["app2"] = copy.deepcopy(facts["hosts"]["app1"])
    cell, _ = compute(facts, now=NOW)
    assert (cell.server_slots, cell.pool_size, cell.app_cpus) == (300, 60, 2.0)
    assert cell.app_hosts == ["app1", "app2"]


def test_an_earlier_cell_of_the_run_is_kept():
    before = {"started": "2026-11-30T00:00:00Z", "failed_cells": "x: boom",
              "versions": {"flask": "3.0"}, "limits": {"cgroup_version": 2}}  # fmt: skip
    facts = copy.deepcopy(FACTS)
    for host in facts["hosts"].values():
        host["probes"] = []
    _, environment = compute(facts, before, now=NOW)
    assert environment.started == "2026-11-30T00:00:00Z"
    assert environment.failed_cells == "x: boom"
    assert environment.versions == {"flask": "3.0"}
    assert environment.limits.cgroup_version == 2


def test_an_undeployed_app_host_is_named():
    facts = copy.deepcopy(FACTS)
    facts["hosts"]["app1"]["labapp"] = None
    with pytest.raises(FactsError, match="app host app1 has no deployment fact"):
        compute(facts)


def test_the_command_writes_both_files(tmp_path):
    cell_dir = tmp_path / "r1" / "uwsgi--slow--u100"
    cell_dir.mkdir(parents=True)
    (cell_dir / "facts.json").write_text(json.dumps(FACTS))
    assert cell_module.main([str(cell_dir)]) == 0
    written = json.loads((cell_dir / "cell.json").read_text())
    assert written["server_slots"] == 150 and written["workers_lost"] == []
    environment = json.loads((tmp_path / "r1" / "environment.json").read_text())
    assert environment["run_id"] == "r1" and "git_commit" in environment
    # the report reads what was written
    assert ReportCell.load(cell_dir).server_slots == 150
    assert cell_module.main([str(tmp_path / "nowhere")]) == 2


# ---------------------------------------------------------------- inprocess.json


def _inprocess(endpoint="/db", **hosts):
    """inprocess.json as the playbook writes it: each host's labapp.cost figures."""
    return {
        "endpoint": endpoint, "requests": 2000, "warmup": 200,
        "hosts": {
            host: {"requests": 2000, "cpu_s_per_request": cost, "wall_s_per_request": 2 * cost}
            for host, cost in hosts.items()
        },
    }  # fmt: skip


def _db_facts(**app_hosts):
    """FACTS on /db with these app hosts ({name: CPUs}), all else as app1."""
    facts = copy.deepcopy(FACTS)
    facts["params"]["endpoint"] = "db"
    app1 = facts["hosts"].pop("app1")
    for name, cpus in (app_hosts or {"app1": 1.0}).items():
        facts["hosts"][name] = dict(copy.deepcopy(app1), labapp=dict(APP_FACT, cpus=cpus))
    return facts


def test_the_in_process_cost_of_one_app_host_is_its_figure():
    cell, _ = compute(_db_facts(), now=NOW, inprocess=_inprocess(app1=0.0004))
    assert cell.inprocess_cpu_s_per_request == pytest.approx(0.0004)
    # without inprocess.json: none (the report then has no ceiling for the cell)
    assert compute(_db_facts(), now=NOW)[0].inprocess_cpu_s_per_request is None


def test_app_hosts_of_different_costs_count_as_one():
    # app1: 1 CPU at 1 ms a request serves 1000 req/s; app2: 2 CPUs at 2 ms, 1000 more.
    # together 3 CPUs serve 2000 req/s: 3 / 2000 = 1.5 ms a request (here also the
    # mean of the two costs, by chance: see below)
    cell, _ = compute(
        _db_facts(app1=1.0, app2=2.0), now=NOW, inprocess=_inprocess(app1=0.001, app2=0.002)
    )
    assert cell.app_cpus == 3.0
    assert cell.inprocess_cpu_s_per_request == pytest.approx(0.0015)
    # app1: 3 CPUs at 1 ms = 3000 req/s; app2: 1 CPU at 4 ms = 250 req/s; 4 / 3250 s,
    # where the mean of the two costs would be 2.5 ms
    cell, _ = compute(
        _db_facts(app1=3.0, app2=1.0), now=NOW, inprocess=_inprocess(app1=0.001, app2=0.004)
    )
    assert cell.inprocess_cpu_s_per_request == pytest.approx(4 / 3250)


def test_an_enforced_quota_leaves_a_hosts_cost_as_it_is():
    facts = _db_facts()
    facts["hosts"]["app1"]["probes"][0] = "cgroup-fs==cgroup2fs"  # CPUQuota=50% bites
    cell, _ = compute(facts, now=NOW, inprocess=_inprocess(app1=0.0004))
    assert cell.app_cpus == 0.5
    assert cell.inprocess_cpu_s_per_request == pytest.approx(0.0004)


def test_an_app_host_without_a_figure_leaves_none():
    cell, _ = compute(_db_facts(app1=1.0, app2=1.0), now=NOW, inprocess=_inprocess(app1=0.001))
    assert cell.inprocess_cpu_s_per_request is None


def test_query_strings_are_the_endpoints():
    facts = _db_facts()
    facts["params"]["endpoint"] = "queries"
    inprocess = _inprocess("/queries?n=20", app1=0.002)
    assert compute(facts, now=NOW, inprocess=inprocess)[0].inprocess_cpu_s_per_request == 0.002


@pytest.mark.parametrize(
    ("inprocess", "message"),
    [
        (_inprocess("/json", app1=0.001), "inprocess.json measured /json, not the cell's /db"),
        ({"endpoint": "/db"}, "inprocess.json has no hosts object"),
        (_inprocess(app1=0), "host app1 has no cpu_s_per_request > 0 (got 0)"),
        (_inprocess(app1="fast"), "host app1 has no cpu_s_per_request > 0 (got 'fast')"),
        (_inprocess(app1=True), "host app1 has no cpu_s_per_request > 0 (got True)"),
    ],
)
def test_a_broken_inprocess_json_is_named(inprocess, message):
    with pytest.raises(FactsError, match=re.escape(message)):
        compute(_db_facts(), now=NOW, inprocess=inprocess)


def test_the_command_reads_inprocess_json(tmp_path, capsys):
    cell_dir = tmp_path / "r1" / "uwsgi--db--u100"
    cell_dir.mkdir(parents=True)
    (cell_dir / "facts.json").write_text(json.dumps(_db_facts()))
    (cell_dir / "inprocess.json").write_text(json.dumps(_inprocess(app1=0.0004)))
    assert cell_module.main([str(cell_dir)]) == 0
    written = json.loads((cell_dir / "cell.json").read_text())
    assert written["inprocess_cpu_s_per_request"] == pytest.approx(0.0004)
    # the report reads what was written
    assert ReportCell.load(cell_dir).inprocess_cpu_s_per_request == pytest.approx(0.0004)
    # a broken one stops the command, naming the cell
    (cell_dir / "inprocess.json").write_text(json.dumps(_inprocess("/json", app1=0.0004)))
    assert cell_module.main([str(cell_dir)]) == 2
    assert "uwsgi--db--u100: inprocess.json measured /json" in capsys.readouterr().err
