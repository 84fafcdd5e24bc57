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


def test_a_converge_with_diff_does_not_print_the_password(password):
    # Without the app's env file the template task must write it again: the
    # change --diff would show, content and all.
    podman("exec", container("app1"), "rm", "-f", "/etc/labapp/labapp.env")
    proc = site("--diff", "--tags", "app", "-v", timeout=1200)
    output = proc.stdout + proc.stderr
    assert "labapp.env" in output, "the env file was not rewritten: the check saw nothing"
    assert password not in output


def test_a_converge_with_diff_does_not_print_the_broker_password(password, broker_password):
    # Redis's configuration and the worker's environment, written again.
    podman("exec", container("db1"), "rm", "-f", "/etc/redis/redis.conf")
    podman("exec", container("app1"), "rm", "-f", "/etc/labapp/celery.env")
    proc = site("--diff", "--tags", "broker,worker", "-v", timeout=1200)
    output = proc.stdout + proc.stderr
    assert "redis.conf" in output and "celery.env" in output, "no file was rewritten"
    assert broker_password not in output
    assert password not in output


def test_no_file_under_reports_holds_the_password(password):
    reports = ROOT / "reports"
    leaked = [
        str(path.relative_to(ROOT))
        for path in (reports.rglob("*") if reports.exists() else [])
        if path.is_file() and password.encode() in path.read_bytes()
    ]
    assert not leaked, f"the database password is written in {leaked}"
