"""Shared helpers for the suites that drive Ansible and the podman lab."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flask_deploy_lab.ansible import run_playbook

ROOT = Path(__file__).resolve().parent.parent
PODMAN = str(ROOT / "lab" / "podman")


def load_script(path, module_name):
    """A script of the project (not a package module), loaded from its path under
    a name of its own, so that nothing else called `report` or `bench` shadows it."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def ansible(*args, check=True, timeout=900):
    """Runs an ansible command from the project root; returns the completed process."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        # the venv's ansible, also when pytest is called without activating it
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(
        list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def playbook(name, *args, check=True, timeout=900, **options):
    """Runs playbooks/<name> through the controller package's runner; `args` are
    extra vars as "key=value" strings. Returns its PlaybookResult."""
    extra = dict(arg.split("=", 1) for arg in args)
    result = run_playbook(name, extra_vars=extra or None, timeout=timeout, **options)
    if check and not result.ok:
        pytest.fail(f"{name} {' '.join(args)} failed: {result.reason}\n{result.stderr[-2000:]}")
    return result


def podman(*args, check=True):
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, check=check, timeout=120)


def topology(inventory="inventory/topology.yml"):
    """The topology as {host: {"vars": {...}, "groups": [...]}} through ansible-inventory."""
    data = json.loads(ansible("ansible-inventory", "-i", inventory, "--list").stdout)
    hosts = {h: {"vars": v, "groups": []} for h, v in data["_meta"]["hostvars"].items()}
    for group, body in data.items():
        for host in body.get("hosts", []) if isinstance(body, dict) else []:
            hosts[host]["groups"].append(group)
    return hosts


def pytest_addoption(parser):
    parser.addoption(
        "--lab-converged",
        action="store_true",
        help="the lab is up and converged with this checkout (make test's end-to-end suite "
        "did it): a lab suite checks that its hosts are there instead of bringing them up "
        "and converging them again",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under make (FDL_NO_SKIP=1) a skip is a failure: a test skipped for a missing
    program would let a machine without it pass."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("FDL_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and make allows no skip (FDL_NO_SKIP=1): {reason}"
