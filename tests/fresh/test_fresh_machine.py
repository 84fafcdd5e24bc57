"""`make setup`'s package step on a pristine Debian 12: a new container of the
lab's base image (debootstrap minbase, nothing of this machine's packages),
the project's scripts mounted read-only, install-packages.sh as root, then
doctor.sh. Takes minutes (it downloads Chromium, Vagrant, PostgreSQL, the
compilers): `make test-fresh`, not part of `make test`, whose
tests/repo/test_prerequisites.py proves the same from Debian's metadata.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.conftest import PODMAN, ROOT

IMAGE = os.environ.get("LAB_IMAGE", "localhost/flask-deploy-lab/debian:bookworm")


@pytest.fixture(scope="module")
def fresh():
    started = time.monotonic()
    proc = subprocess.run(
        [PODMAN, "run", "--rm", "--network", "podman",
         "-v", f"{ROOT / 'scripts'}:/project/scripts:ro", IMAGE, "bash", "-c",
         "/project/scripts/install-packages.sh && /project/scripts/doctor.sh --programs-only"],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    print(f"package step on a pristine container: {seconds:.0f} s")
    return proc, seconds


def test_the_package_step_installs_every_program(fresh):
    proc, _ = fresh
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "MISSING"))]
    assert lines, proc.stdout
    assert all(line.startswith("ok ") for line in lines), proc.stdout


def test_the_image_was_pristine(fresh):
    proc, _ = fresh
    # it had to install, so the packages were not there before
    assert "packages: installing" in proc.stdout
