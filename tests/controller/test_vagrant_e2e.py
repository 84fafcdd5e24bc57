"""make vagrant-up-test's checks that need no VM: its bad input, how it judges
the cell, how it starts and stops libvirt. The run itself is `make
vagrant-up-test` (tens of minutes under emulation); tests/vagrant reads the
inventory Vagrant generated in one."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from flask_deploy_lab import vagrant_e2e
from tests.controller.summary_rows import summary_row


def write_summary(run_dir, *rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({"cells": list(rows)}))


def test_a_cell_of_the_switched_server_with_requests_and_no_failures_passes(tmp_path):
    write_summary(tmp_path, summary_row("uwsgi--slow--u20", requests=300, failures=0))
    assert vagrant_e2e.check_cell(tmp_path, "uwsgi") == ""


@pytest.mark.parametrize(
    ("figures", "problem"),
    [
        ({"server": "gunicorn", "requests": 300, "failures": 0}, "ran on gunicorn, not uwsgi"),
        ({"requests": 0, "failures": 0}, "no requests"),
        ({"requests": 300, "failures": 4, "top_failure": "502"}, "4 failures (502)"),
    ],
    ids=["other-server", "no-requests", "failures"],
)
def test_a_cell_that_proves_nothing_fails(tmp_path, figures, problem):
    write_summary(tmp_path, summary_row("uwsgi--slow--u20", **figures))
    assert problem in vagrant_e2e.check_cell(tmp_path, "uwsgi")


def test_no_report_or_no_cell_fails(tmp_path):
    assert "no report" in vagrant_e2e.check_cell(tmp_path, "uwsgi")
    write_summary(tmp_path)
    assert vagrant_e2e.check_cell(tmp_path, "uwsgi") == "the report has no cell"


def no_vagrant(*args, **kwargs):
    raise AssertionError("vagrant ran although the input was bad")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server", "nope"], "--server nope is not a server of catalogue.yml"),
        (["--topology", "no-such-topology.yml"], "no-such-topology.yml"),
    ],
    ids=["server", "topology"],
)
def test_bad_input_is_one_line_before_anything_is_made(monkeypatch, tmp_path, capsys, argv,
                                                        message):  # fmt: skip
    monkeypatch.setattr(vagrant_e2e, "vagrant", no_vagrant)
    monkeypatch.setattr(vagrant_e2e, "PROJECT_DIR", tmp_path)
    assert vagrant_e2e.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_missing_programs_name_the_target_that_installs_them(monkeypatch, tmp_path):
    manifest = tmp_path / "prerequisites-vm.txt"
    manifest.write_text("nosuchvirt nosuch-virt /usr/sbin/fdl-no-such-virt  a hypervisor\n")
    monkeypatch.setattr(vagrant_e2e, "VM_PREREQUISITES", manifest)
    with pytest.raises(vagrant_e2e.CheckFailed) as error:
        vagrant_e2e.check_programs()
    assert "make vagrant-packages" in str(error.value)
    assert "nosuchvirt" in str(error.value) and "apt-get install nosuch-virt" in str(error.value)


class FakeDaemons:
    """virsh answers once `up_after` daemons were started; Popen starts sleepers."""

    def __init__(self, monkeypatch, up_after):
        self.started = []
        real_popen = subprocess.Popen

        def popen(command, **kwargs):
            assert command[:3] == ["tini", "-s", "--"]
            self.started.append(command[3])
            return real_popen(["sleep", "60"], **kwargs)

        def run(command, **kwargs):
            assert command[0] == "virsh"
            ok = up_after is not None and len(self.started) >= up_after
            return subprocess.CompletedProcess(command, 0 if ok else 1, "", "")

        monkeypatch.setattr(vagrant_e2e.subprocess, "Popen", popen)
        monkeypatch.setattr(vagrant_e2e.subprocess, "run", run)
        monkeypatch.setattr(vagrant_e2e.os, "geteuid", lambda: 0)


def test_libvirt_already_running_is_left_alone(monkeypatch, tmp_path):
    daemons = FakeDaemons(monkeypatch, up_after=0)
    with vagrant_e2e.Libvirt(tmp_path) as libvirt:
        assert libvirt.started == []
    assert daemons.started == []


def test_libvirt_started_here_is_stopped_here(monkeypatch, tmp_path):
    daemons = FakeDaemons(monkeypatch, up_after=2)
    with vagrant_e2e.Libvirt(tmp_path) as libvirt:
        procs = list(libvirt.started)
        assert daemons.started == ["virtlogd", "libvirtd"]
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_libvirt_that_does_not_start_is_one_clear_line(monkeypatch, tmp_path):
    FakeDaemons(monkeypatch, up_after=None)
    monkeypatch.setattr(vagrant_e2e.time, "sleep", lambda s: None)
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(vagrant_e2e.time, "monotonic", lambda: next(clock))
    (tmp_path / "libvirtd.log").write_text("error : cannot bind the socket\n")
    with pytest.raises(vagrant_e2e.CheckFailed) as error:
        vagrant_e2e.Libvirt(tmp_path).__enter__()
    assert "libvirtd did not start" in str(error.value)


def test_a_vagrant_that_hangs_silently_is_stopped_at_its_deadline(monkeypatch, tmp_path):
    # a stand-in for `vagrant` that prints one line and then nothing, forever
    fake = tmp_path / "vagrant"
    fake.write_text("#!/bin/sh\necho '==> stack1: Updating domain definition'\nexec sleep 600\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    with open(tmp_path / "vagrant.log", "w") as log:
        began = time.monotonic()
        proc = vagrant_e2e.vagrant(["up"], env, log=log, timeout=2)
    assert time.monotonic() - began < 30
    assert proc.returncode != 0
    assert "stopped after 2 s" in proc.stdout
    assert "Updating domain definition" in (tmp_path / "vagrant.log").read_text()
