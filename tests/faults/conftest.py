"""The fast parts of `make faults`: the slow-client generator and the fault script's parsing.

Both files are scripts, not modules of a package; they are loaded from their
paths under names of their own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(path, module_name):
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def faults():
    return load_script("scripts/faults.py", "faults_script")


@pytest.fixture(scope="session")
def slow_clients():
    return load_script("loadtest/slow_clients.py", "loadtest_slow_clients")
