"""The faults' one way to the hosts: Ansible, through the package's runner.

Whatever the inventory holds (the podman lab, Vagrant VMs, real hosts over
SSH), the faults reach it the same way: every step is one ad-hoc ``ansible``
run (flask_deploy_lab.ansible.run_module, its event stream read as data and
kept in ``logs/hosts/``), so the inventory's connection, user and become
settings apply. Nothing here opens a connection itself; the one place podman
appears is taking a lab host away (a lab host is a container: the lab's podman
stops and starts it, run through Ansible on the controller), where a VM or a
real host is rebooted instead.

One round trip is one such run: one module, on one host or on several at once
(in parallel, up to ansible.cfg's forks), e.g. ``run({"app1": [...], "proxy1":
[...]})``. A round trip costs about a second or two, so whatever needs
sub-second timing on a host runs there as one bounded program
(flask_deploy_lab.faults.hostside, sent with the ``script`` module): a probe 10
times a second, a kill and the wait for the worker's replacement. Those can be
started in the background (``start_script``) and read when they end.

Module arguments are templated by Ansible like a task's; everything sent here
is literal (a command line is never a template), so ``literal()`` fences what
Jinja would read, and the command module does not expand ``$VARS``.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask_deploy_lab.ansible import PlaybookResult, RunningPlaybook, start_module
from flask_deploy_lab.faults.outcome import FaultError

COMMAND = "ansible.builtin.command"
SCRIPT = "ansible.builtin.script"
SETUP = "ansible.builtin.setup"
DEBUG = "ansible.builtin.debug"
REBOOT = "ansible.builtin.reboot"
# The extra variable that carries each host's command line in a run on several hosts.
ARGV_VAR = "faults_argv"
# How the lab's hosts are reached (inventory/lab/group_vars/lab.yml): they are
# podman containers on the controller, stopped and started with the lab's podman.
PODMAN_CONNECTION = "containers.podman.podman"
# The interpreter of the host-side programs: every host Ansible manages has one.
HOST_PYTHON = "python3"
# How a host is taken away and brought back (Executor.restart_host).
PODMAN_STOP = "podman stop"
REBOOT_HOST = "reboot"
# Seconds a stopped lab container gets to shut down before podman kills it.
STOP_GRACE_S = 10
# Seconds a rebooted VM or host may take to answer again.
REBOOT_TIMEOUT_S = 600

# What one host says about itself, once its facts are known (node_address is
# playbooks/group_vars/all's: the inventory's, else the default-route address).
DISCOVER = (
    "{{ {'groups': group_names, 'address': node_address | default(''),"
    " 'connection': ansible_connection | default('ssh'),"
    " 'container': ansible_host | default(inventory_hostname),"
    " 'podman': ansible_podman_executable | default('podman'),"
    " 'nginx_status_port': nginx_status_port | default(none),"
    " 'db_name': db_name | default('labapp'),"
    " 'order': groups} }}"
)
JINJA_OPENERS = ("{{", "{%", "{#")


def literal(text: str) -> str:
    """`text` as Ansible templates it back to itself."""
    text = str(text)
    if not any(opener in text for opener in JINJA_OPENERS):
        return text
    if "{% endraw %}" in text:
        raise ValueError(f"cannot send {text!r} literally: it closes a raw block")
    return "{% raw %}" + text + "{% endraw %}"


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]
    # where the other hosts of the stack reach it (node_address)
    address: str
    connection: str
    # the lab's container and podman, for a lab host (ansible_host, ansible_podman_executable)
    container: str
    podman: str
    nginx_status_port: int | None = None
    # the app's database (playbooks/group_vars/all: db_name)
    db_name: str = "labapp"

    @property
    def in_lab(self) -> bool:
        return self.connection == PODMAN_CONNECTION


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, Host]
    # every group's hosts in inventory order (the first db, app and proxy host
    # are the ones the stack uses; the first loadgen host runs Locust's master)
    groups: dict[str, list[str]]

    def members(self, group: str) -> list[str]:
        return list(self.groups.get(group) or [])

    def first(self, group: str) -> str:
        members = self.members(group)
        if not members:
            raise FaultError(f"the inventory has no host in group '{group}'")
        return members[0]


@dataclass(frozen=True)
class Reply:
    """One host's answer to one command or script."""

    host: str
    # None: no exit status (unreachable, or Ansible could not run it)
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    message: str = ""
    # seconds the command ran on the host, and when it started in the host's
    # local time (the command module's delta and start)
    seconds: float | None = None
    started: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def why(self) -> str:
        """Why it failed, in one line."""
        text = (self.stderr or self.message or self.stdout).strip()
        return " ".join(text.split())[-300:] or f"exit status {self.rc}"

    def json(self):
        """The last line of stdout as JSON (what the host-side programs print)."""
        lines = self.stdout.strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError:
            return None


@dataclass(frozen=True)
class HostRestart:
    """How a host was taken away and brought back (Executor.restart_host)."""

    host: str
    # PODMAN_STOP (a lab container, started again) or REBOOT_HOST (a VM or a host)
    method: str
    stopped_at: float  # Unix time, on the controller, when it was asked to go
    stop_s: float | None  # seconds the stop took (a lab container)
    back_at: float  # Unix time, on the controller, when it was started or answered again


def _local_time(text: str) -> float | None:
    """The command module's start ("2026-11-21 16:50:17.123456", the host's local
    time) as Unix time, for a command that ran on the controller."""
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def _seconds(delta: str | None) -> float | None:
    """The command module's delta ("0:00:01.234567") in seconds."""
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", delta or "")
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


def replies(result: PlaybookResult, module: str, hosts) -> dict[str, Reply]:
    """Each host's Reply from one run's events; a host with no event did not answer."""
    bodies = result.results.get(module, {})
    unreachable = {f.host: f.message for f in result.failures if f.unreachable}
    found = {}
    for host in hosts:
        body = bodies.get(host)
        if body is None:
            why = unreachable.get(host) or result.reason or "no answer"
            found[host] = Reply(host, None, message=why)
            continue
        rc = body.get("rc")
        if rc is None and not body.get("failed"):
            rc = 0
        message = body.get("msg")
        found[host] = Reply(
            host,
            rc,
            stdout=body.get("stdout") or "",
            stderr=body.get("stderr") or body.get("module_stderr") or "",
            message=message if isinstance(message, str) else "",
            seconds=_seconds(body.get("delta")),
            started=body.get("start") or "",
        )
    return found


def command_args(commands: dict[str, list[str]]) -> tuple[str, dict, dict]:
    """(host pattern, module arguments, extra vars) of one command module run that
    gives each host its own command line."""
    if not commands:
        raise ValueError("no command to run")
    pattern = ":".join(commands)
    args = {"argv": "{{ " + ARGV_VAR + "[inventory_hostname] }}", "expand_argument_vars": False}
    extra = {ARGV_VAR: {host: [literal(a) for a in argv] for host, argv in commands.items()}}
    return pattern, args, extra


def script_args(script: Path, args) -> dict:
    """The script module's arguments: the program and its arguments, run with python3."""
    return {"cmd": literal(shlex.join([str(script), *map(str, args)])), "executable": HOST_PYTHON}


class Background:
    """Commands or a script started in the background (Executor.start_run, start_script)."""

    def __init__(self, running: RunningPlaybook, module: str, hosts):
        self._running, self._module, self.hosts = running, module, list(hosts)
        self._replies: dict[str, Reply] | None = None

    def replies(self) -> dict[str, Reply]:
        """Waits for the end (each run is bounded by its timeout); each host's reply."""
        if self._replies is None:
            self._replies = replies(self._running.wait(), self._module, self.hosts)
        return self._replies

    def reply(self) -> Reply:
        """The reply of the first (or only) host."""
        return self.replies()[self.hosts[0]]


class Executor:
    """Runs the faults' steps on the inventory's hosts through Ansible.

    ``inventory`` and ``extra_vars`` are what every ansible command of the run
    gets (the faults' ``-i`` and ``-e``); each run's event stream goes to
    ``logs/hosts/<n>-<label>.jsonl``."""

    def __init__(self, logs: Path, inventory: str | None = None, extra_vars: dict | None = None):
        self.logs = Path(logs)
        self.inventory = inventory
        self.extra_vars = dict(extra_vars or {})
        self._count = itertools.count(1)
        self._started: list[Background] = []

    # ------------------------------------------------------------ round trips

    def start(self, pattern, module, args, *, label, timeout, extra=None, env=None):
        """One module run on the hosts of `pattern`, in the background."""
        log = self.logs / "hosts" / f"{next(self._count):03d}-{label}.jsonl"
        return start_module(
            pattern, module, args, log_path=log, timeout=timeout, env=env,
            inventory=self.inventory, extra_vars={**self.extra_vars, **(extra or {})},
        )  # fmt: skip

    def module(self, pattern, module, args, *, label, timeout=120, extra=None, env=None):
        """One module run on the hosts of `pattern`, to its end."""
        running = self.start(
            pattern, module, args, label=label, timeout=timeout, extra=extra, env=env
        )
        return running.wait()

    def _commands(self, commands: dict[str, list[str]], *, label, timeout) -> Background:
        pattern, args, extra = command_args(commands)
        running = self.start(pattern, COMMAND, args, label=label, timeout=timeout, extra=extra)
        return Background(running, COMMAND, commands)

    def _script(self, host, script: Path, args, *, label, timeout) -> Background:
        running = self.start(host, SCRIPT, script_args(script, args), label=label, timeout=timeout)
        return Background(running, SCRIPT, [host])

    def _keep(self, background: Background) -> Background:
        self._started.append(background)
        return background

    def start_run(self, commands: dict[str, list[str]], *, label, timeout=120) -> Background:
        """Each host's command line (no shell), all in one round trip, in the background."""
        return self._keep(self._commands(commands, label=label, timeout=timeout))

    def run(self, commands: dict[str, list[str]], *, label, timeout=120) -> dict[str, Reply]:
        """Each host's command line (no shell), all in one round trip."""
        return self._commands(commands, label=label, timeout=timeout).replies()

    def run_one(self, host, argv, *, label, timeout=120) -> Reply:
        return self.run({host: list(argv)}, label=label, timeout=timeout)[host]

    def check(self, host, argv, *, label, timeout=120) -> str:
        """stdout of a command that must succeed; FaultError with its reason if not."""
        reply = self.run_one(host, argv, label=label, timeout=timeout)
        if not reply.ok:
            raise FaultError(f"on {host}: {shlex.join(argv)} failed: {reply.why}")
        return reply.stdout

    def start_script(self, host, script: Path, args, *, label, timeout) -> Background:
        """A host-side program (hostside/) on `host`, in the background."""
        return self._keep(self._script(host, script, args, label=label, timeout=timeout))

    def reap(self):
        """Waits for everything started in the background to end (each is bounded),
        so that nothing of one fault runs into the next."""
        while self._started:
            self._started.pop().replies()

    def script(self, host, script: Path, args, *, label, timeout=120) -> Reply:
        """A host-side program (hostside/) on `host`, to its end."""
        return self._script(host, script, args, label=label, timeout=timeout).reply()

    def script_json(self, host, script: Path, args, *, label, timeout=120):
        """The JSON a host-side program printed; FaultError if it failed or printed none."""
        reply = self.script(host, script, args, label=label, timeout=timeout)
        found = reply.json() if reply.ok else None
        if found is None:
            raise FaultError(f"on {host}: {Path(script).name} failed: {reply.why}")
        return found

    # ------------------------------------------------------------ what the hosts are

    def discover(self) -> Inventory:
        """The inventory's hosts, groups and addresses; FaultError when a host does
        not answer. Two round trips: their network facts into a cache of this run,
        then what each host's variables say with those facts."""
        env = {
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.logs / "facts"),
        }
        facts = self.module(
            "all", SETUP, {"gather_subset": ["!all", "!min", "network"]},
            label="facts", env=env,
        )  # fmt: skip
        if not facts.stats:
            raise FaultError(f"the inventory has no hosts ({facts.reason or 'empty'})")
        down = sorted(h for h, s in facts.stats.items() if s.unreachable or s.failures)
        if down:
            why = next((f.message for f in facts.failures if f.host == down[0]), "")
            raise FaultError(
                f"not answering: {', '.join(down)} ({' '.join(why.split())[:200]}); "
                "is the lab up (make lab-up), or the VMs (vagrant up)?"
            )
        said = self.module("all", DEBUG, {"msg": DISCOVER}, label="inventory", env=env)
        bodies = said.results.get(DEBUG, {})
        if not said.ok or set(bodies) != set(facts.stats):
            raise FaultError(f"cannot read the inventory's variables: {said.reason}")
        return inventory_from(bodies)

    def local_facts(self, hosts, *, label) -> dict[str, dict]:
        """{host: its local facts (ansible_local: /etc/ansible/facts.d)}, one round trip."""
        args = {"gather_subset": ["!all", "!min", "local"], "filter": ["ansible_local"]}
        return local_facts_from(self.module(":".join(hosts), SETUP, args, label=label), hosts)

    # ------------------------------------------------------------ a host away and back

    @staticmethod
    def restart_method(host: Host) -> str:
        return PODMAN_STOP if host.in_lab else REBOOT_HOST

    def restart_host(self, host: Host, *, label) -> HostRestart:
        """Takes a host away and brings it back, as its inventory allows: a lab
        container is stopped (podman stop, as a power cut with a short grace)
        and started again, from the controller; a VM or a real host is rebooted
        (it goes away and comes back by itself)."""
        if not host.in_lab:
            stopped_at = time.time()
            args = {"reboot_timeout": REBOOT_TIMEOUT_S, "msg": "flask-deploy-lab: fault injection"}
            result = self.module(
                host.name, REBOOT, args, label=f"{label}-reboot", timeout=REBOOT_TIMEOUT_S + 60
            )
            if not result.ok:
                raise FaultError(f"the reboot of {host.name} failed: {result.reason}")
            return HostRestart(host.name, self.restart_method(host), stopped_at, None, time.time())
        stop = [host.podman, "stop", "--time", str(STOP_GRACE_S), host.container]
        start = [host.podman, "start", host.container]
        asked_at = time.time()
        try:
            stopped = self.run_one("localhost", stop, label=f"{label}-stop", timeout=120)
        finally:
            # whatever happened to the stop, the host is started again
            started = self.run_one("localhost", start, label=f"{label}-start", timeout=120)
        back_at = time.time()
        if not stopped.ok:
            raise FaultError(f"podman stop {host.container} failed: {stopped.why}")
        if not started.ok:
            raise FaultError(f"podman start {host.container} failed: {started.why}")
        # the controller's own clock: podman ran there
        stopped_at = _local_time(stopped.started) or asked_at
        return HostRestart(
            host.name, self.restart_method(host), stopped_at, stopped.seconds, back_at
        )

    def system_state(self, host, *, label, timeout=90) -> str:
        """systemd's state on a host that was just started: running, degraded, or why not."""
        deadline = time.monotonic() + timeout
        state = "not answering"
        while time.monotonic() < deadline:
            reply = self.run_one(
                host, ["timeout", "30", "systemctl", "is-system-running", "--wait"],
                label=label, timeout=60,
            )  # fmt: skip
            state = reply.stdout.strip() or reply.why
            if state in ("running", "degraded"):
                return state
            time.sleep(1)
        return state

    def processes(self, hosts, pattern: str, *, label) -> dict[str, list[str]]:
        """{host: ["pid command line", ...]} of the processes matching a regular
        expression (pgrep -af), on each host; hosts with none are left out. The
        expression must not match its own text (write "[l]ocust", not "locust"):
        it is on the command line of the controller's ansible."""
        found = self.run({h: ["pgrep", "-af", pattern] for h in hosts}, label=label)
        left = {}
        for host, reply in found.items():
            if reply.rc is None:
                raise FaultError(f"cannot list the processes of {host}: {reply.why}")
            if reply.stdout.strip():
                left[host] = reply.stdout.strip().splitlines()
        return left


def local_facts_from(result: PlaybookResult, hosts) -> dict[str, dict]:
    """{host: ansible_local} from a setup run; FaultError for a host without them."""
    bodies = result.results.get(SETUP, {})
    found = {}
    for host in hosts:
        body = bodies.get(host)
        if body is None or body.get("failed"):
            raise FaultError(f"cannot read the local facts of {host}: {result.reason}")
        found[host] = body.get("ansible_facts", {}).get("ansible_local", {})
    return found


def inventory_from(bodies: dict[str, dict]) -> Inventory:
    """The Inventory from what DISCOVER said on each host."""
    hosts, order = {}, {}
    for name, body in bodies.items():
        said = body.get("msg") or {}
        order = said.get("order") or order
        port = said.get("nginx_status_port")
        hosts[name] = Host(
            name=name,
            groups=tuple(said.get("groups") or ()),
            address=str(said.get("address") or ""),
            connection=str(said.get("connection") or ""),
            container=str(said.get("container") or name),
            podman=str(said.get("podman") or "podman"),
            nginx_status_port=int(port) if port not in (None, "") else None,
            db_name=str(said.get("db_name") or "labapp"),
        )
    groups = {group: [h for h in members if h in hosts] for group, members in order.items()}
    return Inventory(hosts, groups)
