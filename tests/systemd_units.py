"""What testinfra reads of a systemd unit on a lab host, for the Molecule
scenarios (their verifiers put the project on PYTHONPATH): its properties,
its main process, and systemd-analyze security's exposure."""

from __future__ import annotations

import re


def show(host, unit, *names):
    """systemctl show's properties of a unit, as a dict."""
    args = " ".join(f"-p {name}" for name in names)
    out = host.check_output(f"systemctl show {args} %s", unit)
    return dict(line.split("=", 1) for line in out.splitlines())


def proc_status(host, pid):
    """/proc/<pid>/status as a dict."""
    status = host.file(f"/proc/{pid}/status").content_string
    fields = (line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return {name: value.strip() for name, value in fields}


def main_process(host, unit):
    """The unit's main process: its pid, and its /proc status lines as a dict."""
    pid = host.check_output("systemctl show -p MainPID --value %s", unit)
    assert pid != "0", f"{unit} has no main process"
    return pid, proc_status(host, pid)


def exposure(host, unit):
    """systemd-analyze security's overall exposure of a unit (0 safe .. 10 exposed),
    printed (pytest -s shows it)."""
    out = host.check_output("systemd-analyze security --no-pager %s", unit)
    print(f"\n{unit}: {out.splitlines()[-1]}")
    return float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))
