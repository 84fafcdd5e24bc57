"""The fast parts of `make faults`: the slow-client generator and the fault script's parsing.

Both files are scripts, not modules of a package; they are loaded from their
paths under names of their own.
"""

from __future__ import annotations

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="session")
def faults():
    return load_script("scripts/faults.py", "faults_script")


@pytest.fixture(scope="session")
def slow_clients():
    return load_script("loadtest/slow_clients.py", "loadtest_slow_clients")
