"""cell.json and environment.json from the facts a load-test run gathers."""

from __future__ import annotations

import copy
import json
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
