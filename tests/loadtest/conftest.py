"""Shared helpers for the load-test tooling tests.

The modules under loadtest/ are scripts, not a package; they are loaded from
their paths under names of their own so nothing else called `sampler` shadows
them. The report is the package flask_deploy_lab.report, which its tests
import as users do. The locustfile is only ever run by Locust in a subprocess,
because importing Locust here would monkey-patch this pytest process with gevent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script as load_project_script

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_script(name):
    return load_project_script(f"loadtest/{name}.py", f"loadtest_{name}")


@pytest.fixture(scope="session")
def sampler():
    return load_script("sampler")
