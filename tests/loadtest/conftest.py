"""Shared helpers for the load-test tooling tests.

The modules under loadtest/ are scripts, not a package; they are loaded from
their paths under names of their own so nothing else called `report` shadows
them. The locustfile is only ever run by Locust in a subprocess, because
importing Locust here would monkey-patch this pytest process with gevent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTEST = ROOT / "loadtest"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_script(name):
    module_name = f"loadtest_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LOADTEST / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def report():
    return load_script("report")


@pytest.fixture(scope="session")
def sampler():
    return load_script("sampler")
