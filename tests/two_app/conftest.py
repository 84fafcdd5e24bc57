"""Fixtures of the two-app-host suite: the lab of inventory/topology-two-app.yml.

The suite brings up the lab of that topology (the default lab's containers
plus ``app2``), converges the whole stack on it, and at the end removes
``app2`` again, so that the default lab it leaves behind is the default
topology's. With ``--lab-converged`` (make test: its end-to-end suite has
just converged this lab) it checks that the lab's hosts are up instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.conftest import PODMAN, ansible, podman, topology

INVENTORY = "inventory/lab-two-app"
LAB_PREFIX = "fdl-"
APP_HOSTS = ["app1", "app2"]
PROXY = "proxy1"
LOADGEN = "loadgen1"
APP_PORT = 8000


def container(host):
    return LAB_PREFIX + host


def address(host):
    """The host's address on the lab network, as podman gave it."""
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return podman("inspect", container(host), "--format", fmt).stdout.strip()


def exec_(host, *argv, check=True, timeout=120):
    """Runs argv in the host's container."""
    return subprocess.run(
        [PODMAN, "exec", container(host), *argv],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def passive_opens(host):
    """The host's TCP passive opens (connections it accepted), from its own kernel:
    nginx opens one connection per request to a server whose connections hold a
    slot, so this counts the requests an app host was given."""
    snmp = exec_(host, "cat", "/proc/net/snmp").stdout.splitlines()
    header, values = [line.split() for line in snmp if line.startswith("Tcp:")][:2]
    return int(values[header.index("PassiveOpens")])


def nginx_log_lines():
    """nginx's access log on the proxy, one line per request, its buffer flushed
    first (the role logs with flush=5s; USR1 reopens the log, writing it out)."""
    exec_(PROXY, "systemctl", "kill", "--signal=USR1", "--kill-whom=main", "nginx.service")
    time.sleep(0.5)
    return exec_(PROXY, "cat", "/var/log/nginx/access.log").stdout.splitlines()


def upstreams_of(lines):
    """{upstream address: requests} from nginx's ``ua="..."`` field; a request nginx
    retried lists every upstream it tried, comma-separated, and counts for each."""
    counts: dict[str, int] = {}
    for line in lines:
        match = re.search(r'ua="([^"]*)"', line)
        if not match:
            continue
        for tried in match.group(1).split(","):
            tried = tried.strip()
            if tried and tried != "-":
                counts[tried] = counts.get(tried, 0) + 1
    return counts


def hey(url, *options, timeout=180):
    """hey (Debian's) on the load generator against `url`; its per-request CSV rows
    as dicts (a request that failed below HTTP is not among them)."""
    out = exec_(LOADGEN, "hey", *options, "-o", "csv", url, timeout=timeout).stdout
    return parse_hey_csv(out)


def parse_hey_csv(text):
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]


def app_unit(host):
    """The app server's unit on the host, from its deployment fact (the Celery
    worker's unit is a labapp-* unit too)."""
    fact = exec_(host, "cat", "/etc/ansible/facts.d/labapp.fact").stdout
    return json.loads(fact)["unit"]


def wait_for_unit(host, pattern, timeout=120):
    """Waits until the host's systemd is up and a unit matching `pattern` is active."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        probe = exec_(
            host,
            "sh",
            "-c",
            f"systemctl is-system-running --wait >/dev/null; systemctl list-units --state=active "
            f"--no-legend --plain '{pattern}'",
            check=False,
            timeout=90,
        )
        last = probe.stdout + probe.stderr
        if probe.returncode == 0 and probe.stdout.strip():
            return probe.stdout.split()[0]
        time.sleep(1)
    pytest.fail(f"no active {pattern} on {host} after {timeout}s: {last}")


@pytest.fixture(scope="session")
def two_app_stack(request):
    """The two-app-host lab, up and converged (with --lab-converged: found so); app2
    is removed afterwards."""
    if request.config.getoption("--lab-converged"):
        running = podman("ps", "--format", "{{.Names}}").stdout.split()
        hosts = sorted(topology(INVENTORY))
        missing = [container(h) for h in hosts if container(h) not in running]
        if missing:
            pytest.fail(
                f"--lab-converged, but {', '.join(missing)} is not running: bring the lab up "
                f"and converge it (make lab-up INVENTORY={INVENTORY}, then ansible-playbook "
                f"-i {INVENTORY} playbooks/site.yml), or run without --lab-converged"
            )
    else:
        ansible("ansible-playbook", "-i", INVENTORY, "playbooks/lab.yml", timeout=600)
        ansible("ansible-playbook", "-i", INVENTORY, "playbooks/site.yml", timeout=2400)
    yield {host: address(host) for host in APP_HOSTS}
    podman("rm", "--force", "--time", "0", container("app2"), check=False)


@pytest.fixture(scope="session")
def app_units(two_app_stack):
    """{app host: its app server's unit}, read while every host is up."""
    return {host: app_unit(host) for host in two_app_stack}
