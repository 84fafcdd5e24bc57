"""Shared helpers for the load-test tooling tests.

The sampler is a file the sampler role copies to each host, not a package
module: it is loaded from its path under a name of its own. The report is the
package flask_deploy_lab.report, which its tests import as users do. The
locustfile is only ever run by Locust in a subprocess, because importing
Locust here would monkey-patch this pytest process with gevent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script as load_project_script

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def sampler():
    # a file the sampler role copies to each host, not a module of a package
    return load_project_script("roles/sampler/files/sampler.py", "sampler_role_sampler")
