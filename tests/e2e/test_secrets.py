"""The database and broker passwords are never printed: not by a converge with
--diff, not in any file a run keeps under reports/."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, podman
from tests.e2e.conftest import container, site

pytestmark = pytest.mark.lab

PASSWORD_FILE = ROOT / "credentials" / "db_password"
BROKER_PASSWORD_FILE = ROOT / "credentials" / "broker_password"


@pytest.fixture(scope="module")
def password(stack):
    secret = PASSWORD_FILE.read_text().strip()
    assert len(secret) == 32
    return secret


@pytest.fixture(scope="module")
def broker_password(stack):
    secret = BROKER_PASSWORD_FILE.read_text().strip()
    assert len(secret) == 32
    return secret


def test_a_converge_with_diff_prints_neither_password(password, broker_password):
    # Without the files that hold them (the app's and the worker's environment,
    # Redis's configuration) the template tasks must write them again: the
    # changes --diff would show, content and all. One converge of the three
    # plays that write them.
    podman("exec", container("app1"), "rm", "-f", "/etc/labapp/labapp.env")
    podman("exec", container("app1"), "rm", "-f", "/etc/labapp/celery.env")
    podman("exec", container("db1"), "rm", "-f", "/etc/redis/redis.conf")
    proc = site("--diff", "--tags", "app,broker,worker", "-v", timeout=1200)
    output = proc.stdout + proc.stderr
    # the files are there again: the converge wrote them, so --diff had their
    # content to show (a name in -v output alone would also come from an
    # unchanged task)
    for host, path in (
        ("app1", "/etc/labapp/labapp.env"),
        ("app1", "/etc/labapp/celery.env"),
        ("db1", "/etc/redis/redis.conf"),
    ):
        rewritten = podman("exec", container(host), "test", "-s", path, check=False)
        assert rewritten.returncode == 0, f"{path} on {host} was not written again"
        assert path.rsplit("/", 1)[1] in output, f"{path}: the converge's output never names it"
    assert password not in output
    assert broker_password not in output


def test_no_file_under_reports_holds_the_password(password):
    reports = ROOT / "reports"
    leaked = [
        str(path.relative_to(ROOT))
        for path in (reports.rglob("*") if reports.exists() else [])
        if path.is_file() and password.encode() in path.read_bytes()
    ]
    assert not leaked, f"the database password is written in {leaked}"
