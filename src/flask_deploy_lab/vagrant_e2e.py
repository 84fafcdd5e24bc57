"""`vagrant up` for real, end to end, every step timed (make vagrant-up-test).

    fdl-vagrant-e2e [--topology inventory/topology-pair.yml] [--server uwsgi]

1. checks before anything is made: the programs of scripts/prerequisites-vm.txt,
   the topology and the box (the Vagrantfile's own checks, through
   ``vagrant status``), Vagrant's state of an earlier run (destroyed first);
2. starts libvirt when it is not running (virtlogd and libvirtd, each under
   ``tini -s``, which reaps the qemu processes libvirt daemonizes where PID 1
   does not), and at the end stops only what it started;
3. ``vagrant up``: the VMs of the topology, and Vagrant's Ansible provisioner
   converging the whole stack (playbooks/site.yml);
4. the inventory Vagrant generated, read by ``ansible-inventory``: the groups,
   addresses and sizes of the topology;
5. the switch: ``ansible-playbook playbooks/site.yml -e server=<server>`` on
   that inventory;
6. one short load-test cell through nginx (playbooks/loadtest.yml) and the
   report; the cell must come from the switched server, with requests and no
   failures;
7. ``vagrant destroy -f``, whatever happened before.

Vagrant's state lives in its own directory (.vagrant-e2e/), so the run never
touches the machines of a ``vagrant up`` of your own. The box is the local one
(``make vagrant-box``) unless FDL_BOX says otherwise; FDL_EMULATE is passed to
the Vagrantfile. Exit status: 0 when every step passed, 1 when one failed, 2 when
a check failed before anything was made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask_deploy_lab import PROJECT_DIR
from flask_deploy_lab.ansible import run_playbook
from flask_deploy_lab.catalogue import load as load_catalogue
from flask_deploy_lab.topology import STACK_GROUPS, TopologyError, plan

DEFAULT_TOPOLOGY = PROJECT_DIR / "inventory" / "topology-pair.yml"
DOTFILE_DIR = PROJECT_DIR / ".vagrant-e2e"
VM_PREREQUISITES = PROJECT_DIR / "scripts" / "prerequisites-vm.txt"
LIBVIRT_URI = "qemu:///system"
# Minutes each step may take under software emulation on a 2-core machine.
TIMEOUTS = {"up": 120 * 60, "switch": 45 * 60, "loadtest": 20 * 60, "destroy": 10 * 60}


class CheckFailed(Exception):
    """Something to fix before anything is made: the message says what."""


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    detail: str = ""


@dataclass
class Run:
    run_id: str
    topology: str
    server: str
    emulate: bool | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)


def clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def vagrant_env(topology: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FDL_TOPOLOGY=str(topology),
        VAGRANT_DOTFILE_PATH=str(DOTFILE_DIR),
        VAGRANT_DEFAULT_PROVIDER="libvirt",
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_COLOR="1",
    )
    env.setdefault("FDL_BOX", "local")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for switch in ("SERVER", "DB_MODE"):  # the first converge takes the defaults
        env.pop(switch, None)
    return env


def generated_inventory() -> Path:
    return DOTFILE_DIR / "provisioners" / "ansible" / "inventory" / "vagrant_ansible_inventory"


def check_programs() -> None:
    doctor = subprocess.run(
        [PROJECT_DIR / "scripts" / "doctor.sh", "--programs-only"],
        env=dict(os.environ, FDL_PREREQUISITES=str(VM_PREREQUISITES)),
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if doctor.returncode != 0:
        missing = [line for line in doctor.stdout.splitlines() if line.startswith("MISSING")]
        raise CheckFailed(
            "what vagrant up with libvirt needs is missing (run 'make vagrant-packages'):\n  "
            + "\n  ".join(missing or [doctor.stdout.strip() or doctor.stderr.strip()])
        )


def vagrant(args: list[str], env: dict, log=None, timeout=None) -> subprocess.CompletedProcess:
    """Runs vagrant in the project; with `log`, its output goes there line by line,
    without the progress bars of a box upload."""
    command = ["vagrant", *args]
    if log is None:
        return subprocess.run(
            command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    proc = subprocess.Popen(
        command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True, preexec_fn=_sigint_default,
    )  # fmt: skip
    # A Vagrant that hangs prints nothing: the deadline is kept by a timer, not
    # by the lines it reads. SIGINT first (Vagrant cleans up), SIGKILL a minute on.
    fired: list[int] = []
    timers = [
        threading.Timer(delay, _signal_group, (proc, sig, fired))
        for delay, sig in ((timeout, signal.SIGINT), ((timeout or 0) + 60, signal.SIGKILL))
    ] if timeout else []  # fmt: skip
    for timer in timers:
        timer.daemon = True
        timer.start()
    tail: list[str] = []
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            for line in raw.replace("\r", "\n").splitlines():
                if "Progress:" in line or not line.strip():
                    continue
                log.write(line + "\n")
                tail = [*tail[-39:], line]
            log.flush()
        returncode = proc.wait()
    finally:
        for timer in timers:
            timer.cancel()
    if fired:
        tail.append(f"stopped after {timeout} s")
        returncode = returncode or 1
    return subprocess.CompletedProcess(command, returncode, "\n".join(tail), "")


def _sigint_default() -> None:
    """In the child before exec: SIGINT does what it does by default. Started from
    a background job (`make test &`, nohup) it would inherit SIGINT ignored, and a
    shell cannot undo that: the deadline's SIGINT would do nothing for a minute."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_group(proc: subprocess.Popen, sig: int, fired: list[int]) -> None:
    if proc.poll() is None:
        fired.append(sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


class Libvirt:
    """libvirt reachable for the run: started (and later stopped) only when it is not."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    @staticmethod
    def reachable() -> bool:
        proc = subprocess.run(
            ["virsh", "-c", LIBVIRT_URI, "uri"], capture_output=True, text=True, check=False,
            timeout=30,
        )  # fmt: skip
        return proc.returncode == 0

    def __enter__(self) -> Libvirt:
        if self.reachable():
            return self
        if os.geteuid() != 0:
            raise CheckFailed(
                f"libvirt is not running ({LIBVIRT_URI}) and starting it needs root: "
                "start libvirtd (systemctl start libvirtd), or run as root"
            )
        for daemon in ("virtlogd", "libvirtd"):
            with open(self.log_dir / f"{daemon}.log", "w") as log:
                daemon_proc = subprocess.Popen(
                    ["tini", "-s", "--", daemon], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            self.started.append(daemon_proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.reachable():
                return self
            if any(p.poll() is not None for p in self.started):
                break
            time.sleep(1)
        self.__exit__(None, None, None)
        last = (self.log_dir / "libvirtd.log").read_text(errors="replace").strip().splitlines()
        raise CheckFailed(
            f"libvirtd did not start ({LIBVIRT_URI} unreachable after 60 s): "
            + (last[-1] if last else "no output")
        )

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.started = []


def check_inventory(path: Path, machines) -> list[str]:
    """What is wrong with the inventory Vagrant generated, read as Ansible reads it:
    every machine with its address and sizes, every group with its members."""
    if not path.is_file():
        return [f"Vagrant wrote no inventory at {path}"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        return [f"ansible-inventory cannot read {path}: {proc.stderr.strip()}"]
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    problems = []
    if sorted(hostvars) != sorted(m.name for m in machines):
        problems.append(f"hosts {sorted(hostvars)}, the topology has {[m.name for m in machines]}")
    for m in machines:
        v = hostvars.get(m.name, {})
        want = {
            "node_address": m.address,
            "node_cpus": float(m.node_cpus),
            "node_memory_mb": m.memory_mb,
            "ansible_become": "true",
        }
        have = {
            "node_address": v.get("node_address"),
            "node_cpus": float(v.get("node_cpus", "nan")),
            "node_memory_mb": int(v.get("node_memory_mb", -1)),
            "ansible_become": str(v.get("ansible_become")).lower(),
        }
        problems += [
            f"{m.name}: {key}={have[key]}, the topology says {want[key]}"
            for key in want
            if have[key] != want[key]
        ]
    for group in STACK_GROUPS:
        members = sorted(m.name for m in machines if group in m.groups)
        listed = sorted(data.get(group, {}).get("hosts", []))
        if listed != members:
            problems.append(f"group {group}: {listed}, the topology has {members}")
    return problems


def check_cell(run_dir: Path, server: str) -> str:
    """'' when the report has a cell of `server` with requests and no failures."""
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return f"no report at {summary}"
    cells = json.loads(summary.read_text())["cells"]
    if not cells:
        return "the report has no cell"
    problems = []
    for cell in cells:
        if cell["server"] != server:
            problems.append(f"{cell['cell']} ran on {cell['server']}, not {server}")
        if not cell["requests"]:
            problems.append(f"{cell['cell']}: no requests")
        if cell["failures"]:
            problems.append(f"{cell['cell']}: {cell['failures']} failures ({cell['top_failure']})")
    return "; ".join(problems)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="fdl-vagrant-e2e", description=__doc__.split("\n")[0])
    parser.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    parser.add_argument("--server", default="uwsgi", help="the server to switch to (uwsgi)")
    parser.add_argument("--users", type=int, default=20, help="Locust users of the cell (20)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of the cell (20)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs up at the end")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run(
        run_id="vagrant-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        topology=str(args.topology.resolve().relative_to(PROJECT_DIR))
        if args.topology.resolve().is_relative_to(PROJECT_DIR)
        else str(args.topology),
        server=args.server,
    )
    try:
        servers = load_catalogue().servers
        if args.server not in servers:
            raise CheckFailed(
                f"--server {args.server} is not a server of catalogue.yml: {', '.join(servers)}"
            )
        machines = plan(args.topology)
        check_programs()
    except (CheckFailed, TopologyError) as error:
        print(f"vagrant e2e: {error}", file=sys.stderr)
        return 2
    run_dir = PROJECT_DIR / "reports" / run.run_id
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = vagrant_env(args.topology.resolve())

    started = time.monotonic()
    with open(run_dir / "logs" / "vagrant.log", "w") as log:
        print(f"vagrant e2e {run.run_id}: {len(machines)} VMs from {run.topology}; "
              f"Vagrant's output: {log.name}", flush=True)  # fmt: skip
        try:
            with Libvirt(run_dir / "logs"):
                status = vagrant(["status", "--machine-readable"], env, timeout=300)
                if status.returncode != 0:
                    raise CheckFailed((status.stderr or status.stdout).strip().splitlines()[-1])
                run.emulate = _emulating(env)
                try:
                    _steps(run, args, env, log, machines, run_dir)
                finally:
                    if not args.keep:
                        _step(run, "vagrant destroy -f", lambda: _destroy(env, log))
        except CheckFailed as error:
            print(f"vagrant e2e: {error}", file=sys.stderr)
            return 2
    total = time.monotonic() - started
    (run_dir / "vagrant-e2e.json").write_text(
        json.dumps({**asdict(run), "total_s": round(total, 1)}, indent=2) + "\n"
    )
    mode = "software emulation" if run.emulate else "KVM"
    verdict = "passed" if run.ok else "FAILED"
    print(f"vagrant e2e {run.run_id}: {verdict} in {clock(total)} ({mode}); "
          f"{run_dir}/vagrant-e2e.json")  # fmt: skip
    return 0 if run.ok else 1


def _emulating(env) -> bool | None:
    proc = vagrant(["validate", "--ignore-provider"], dict(env, FDL_VAGRANT_PLAN="1"), timeout=120)
    try:
        start = proc.stdout.index("{")
        return json.JSONDecoder().raw_decode(proc.stdout[start:])[0].get("emulate")
    except ValueError:
        return None


def _step(run: Run, name: str, action) -> bool:
    """Runs one step: action() returns '' when it passed, else why it did not."""
    print(f"  {name} ...", flush=True)
    began = time.monotonic()
    try:
        detail = action()
    except subprocess.TimeoutExpired as error:
        detail = f"timed out after {error.timeout} s"
    step = Step(name, round(time.monotonic() - began, 1), not detail, detail or "")
    run.steps.append(step)
    print(f"  {name}: {'ok' if step.ok else 'FAILED'} in {clock(step.seconds)}"
          + (f": {step.detail}" if step.detail else ""), flush=True)  # fmt: skip
    return step.ok


def _destroy(env, log) -> str:
    proc = vagrant(["destroy", "-f"], env, log=log, timeout=TIMEOUTS["destroy"])
    return "" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stdout[-500:]}"


def _steps(run, args, env, log, machines, run_dir) -> None:
    # Machines left by an aborted run of this target are its own: start clean.
    _step(run, "destroy what an earlier run left", lambda: _destroy(env, log))

    def up():
        proc = vagrant(["up", "--provider=libvirt"], env, log=log, timeout=TIMEOUTS["up"])
        return "" if proc.returncode == 0 else f"exit {proc.returncode}:\n{proc.stdout}"

    if not _step(run, f"vagrant up: {len(machines)} VMs, the whole stack provisioned", up):
        return
    inventory = generated_inventory()

    def inventory_matches():
        return "; ".join(check_inventory(inventory, machines))

    if not _step(run, "Vagrant's generated inventory", inventory_matches):
        return

    def switch():
        result = run_playbook(
            "site.yml", inventory=inventory, extra_vars={"server": args.server},
            log_path=run_dir / "logs" / "switch.jsonl", timeout=TIMEOUTS["switch"],
        )  # fmt: skip
        return "" if result.ok else result.reason

    if not _step(run, f"switch: site.yml -e server={args.server}", switch):
        return

    def loadtest():
        result = run_playbook(
            "loadtest.yml", inventory=inventory,
            extra_vars={"run_id": run.run_id, "endpoint": "slow", "users": args.users,
                        "duration": args.duration, "warmup": 5},
            log_path=run_dir / "logs" / "loadtest.jsonl", timeout=TIMEOUTS["loadtest"],
        )  # fmt: skip
        if not result.ok:
            return result.reason
        report = subprocess.run(
            [sys.executable, "-m", "flask_deploy_lab.report", str(run_dir)],
            cwd=PROJECT_DIR, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        # the report's own verdicts judge a lab of measured capacity; under
        # emulation the figures are slow, not wrong: this step asks that the
        # cell ran on the switched server, answered, and failed nothing
        if not (run_dir / "summary.json").is_file():
            return f"the report failed: {(report.stderr or report.stdout).strip()[-500:]}"
        return check_cell(run_dir, args.server)

    _step(run, "a load-test cell through nginx, and the report", loadtest)


if __name__ == "__main__":
    sys.exit(main())
