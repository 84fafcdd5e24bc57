"""The scenario's one container, reached with `podman exec` (see molecule/default)."""

import pytest
import testinfra


@pytest.fixture(scope="session")
def host():
    return testinfra.get_host("podman://fdl-mol-web-web1")
