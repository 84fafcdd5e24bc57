"""Fixtures of the end-to-end suite: the converged lab stack, driven through the playbooks.

The suite expects the lab of the inventory ansible uses (``make lab-up``; the
default lab, or ``ANSIBLE_INVENTORY``'s: make test gives it the two-app lab)
and converges the stack with ``playbooks/site.yml`` first, so that the lab
runs this checkout with its credentials (a second converge changes nothing);
with ``--lab-converged`` it takes the stack as make test's
``fdl-faults --converge-only`` left it.
Every converge of the suite adds the settings fdl-faults gives its own (two
app workers), so that make test's faults and two-app suite run on the stack
this suite leaves, without converging it again.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from flask_deploy_lab.faults.cli import DEFAULT_ARGS as FAULTS_ARGS
from tests.conftest import ansible, podman

LAB_PREFIX = "fdl-"
LOADGENS = ["loadgen1", "loadgen2"]
HEALTHZ = (
    "import sys, urllib.request; "
    "sys.exit(0 if urllib.request.urlopen('http://proxy1/healthz', timeout=5).status == 200 else 1)"
)


def container(host):
    return LAB_PREFIX + host


def site(*args, check=True, timeout=1800):
    """playbooks/site.yml with fdl-faults' settings before `args`."""
    return ansible(
        "ansible-playbook", "playbooks/site.yml", *FAULTS_ARGS, *args, check=check, timeout=timeout
    )


def inventory_hosts():
    """The hosts of the inventory ansible uses, sorted (ansible-inventory --list)."""
    out = ansible("ansible-inventory", "--list").stdout
    return sorted(json.loads(out)["_meta"]["hostvars"])


def stack_answers():
    """True when nginx on proxy1 answers /healthz, asked from a load generator."""
    try:
        probe = podman("exec", container(LOADGENS[0]), "python3", "-c", HEALTHZ, check=False)
        return probe.returncode == 0
    except subprocess.SubprocessError:
        return False


def locust_processes(host):
    """Command lines on `host` that mention locust (the units or a sampler watching them)."""
    result = podman("exec", container(host), "pgrep", "-af", "locust", check=False)
    return result.stdout.splitlines()


@pytest.fixture(scope="session")
def stack(request):
    """The lab, up and converged (with --lab-converged: found converged)."""
    running = podman("ps", "--format", "{{.Names}}", check=False).stdout.split()
    missing = [h for h in inventory_hosts() if container(h) not in running]
    if missing:
        names = ", ".join(container(h) for h in missing)
        pytest.fail(f"the lab is not up (no {names}): run make lab-up")
    if request.config.getoption("--lab-converged"):
        # make test converged it with this checkout and fdl-faults' settings
        # (fdl-faults --converge-only) while Molecule ran
        assert stack_answers(), "--lab-converged, but the stack does not answer /healthz"
        return LOADGENS
    # Always: the lab may hold an earlier checkout's deployment and secrets (a
    # clean clone generates its own credentials); on a converged lab this
    # changes nothing.
    site()
    assert stack_answers(), "the stack does not answer /healthz through the proxy after site.yml"
    return LOADGENS


def loadtest(*extra, check=True, timeout=900):
    args = []
    for item in extra:
        args += ["-e", item]
    return ansible(
        "ansible-playbook", "playbooks/loadtest.yml", *args, check=check, timeout=timeout
    )
