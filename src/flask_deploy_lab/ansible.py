"""The one way the controller runs Ansible: ansible-playbook, and ad-hoc
ansible, with the ``ansible.posix.jsonl`` callback, read as events, never as text.

    result = run_playbook("site.yml", extra_vars={"server": "uwsgi"}, log_path=...)
    if not result.ok:
        print(result.reason)
    result.stats["app1"].changed
    uptime = run_module("app", "ansible.builtin.command", {"argv": ["uptime"]})
    uptime.results["ansible.builtin.command"]["app1"]["stdout"]

The event stream (one JSON object per line) is also the log: written to
``log_path`` as it arrives, so a long run can be followed with ``tail -f``.
Lines that are not JSON (profile_tasks' timing table, from ansible.cfg) stay
in the log for people and are skipped when reading.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask_deploy_lab import PROJECT_DIR

PLAYBOOK_DIR = PROJECT_DIR / "playbooks"


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookResult:
    command: list[str]
    returncode: int
    stats: dict[str, HostStats] = field(default_factory=dict)
    # every failed task, in order, ignored ones included (the callback does not
    # mark them; stats count them): the fatal one that ended a play is the last
    failures: list[TaskFailure] = field(default_factory=list)
    # results of tasks that registered something useful, by task name then host
    results: dict[str, dict[str, dict]] = field(default_factory=dict)
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def reason(self) -> str:
        """Why it failed, in one line: the last failed task's message."""
        if self.failures:
            last = self.failures[-1]
            return " ".join(last.message.split())
        if self.ok:
            return ""
        tail = self.stderr.strip().splitlines()[-1:] or ["no message"]
        return f"ansible-playbook exited {self.returncode}: {tail[0]}"

    @property
    def messages(self) -> list[str]:
        return [" ".join(f.message.split()) for f in self.failures]

    def changed(self, host: str | None = None) -> int:
        hosts = [host] if host else list(self.stats)
        return sum(self.stats[h].changed for h in hosts if h in self.stats)


def _message(result: dict) -> str:
    # a loop fails as a whole ("One or more items failed"): say which items and why
    failed_items = [item for item in result.get("results") or [] if item.get("failed")]
    if failed_items:
        return "; ".join(_message(item) for item in failed_items)
    for key in ("msg", "message", "reason", "stderr", "module_stderr"):
        value = result.get(key)
        if value:
            return value if isinstance(value, str) else json.dumps(value)
    return json.dumps({k: v for k, v in result.items() if not k.startswith("_")})[:500]


def read_events(lines, command=(), returncode=0, stderr="") -> PlaybookResult:
    """A PlaybookResult from the callback's JSON lines."""
    result = PlaybookResult(command=list(command), returncode=returncode, stderr=stderr)
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("_event", "")
        task = event.get("task", {}).get("name", "")
        for host, body in (event.get("hosts") or {}).items():
            if kind in ("v2_runner_on_failed", "v2_runner_on_unreachable"):
                result.failures.append(
                    TaskFailure(host, task, _message(body), kind == "v2_runner_on_unreachable")
                )
            if kind in ("v2_runner_on_ok", "v2_runner_on_failed"):
                result.results.setdefault(task, {})[host] = body
        if kind == "v2_playbook_on_stats":
            known = HostStats.__annotations__
            result.stats = {
                host: HostStats(**{k: v for k, v in counts.items() if k in known})
                for host, counts in event.get("stats", {}).items()
            }
    return result


def playbook_command(playbook, *, extra_vars=None, inventory=None, tags=None, limit=None,
                     diff=False, check=False) -> list[str]:  # fmt: skip
    path = Path(playbook)
    if not path.is_absolute() and not path.exists():
        path = PLAYBOOK_DIR / path
    command = [str(Path(sys.executable).parent / "ansible-playbook"), str(path)]
    if inventory:
        command += ["-i", str(inventory)]
    if tags:
        command += ["--tags", tags]
    if limit:
        command += ["--limit", limit]
    if diff:
        command.append("--diff")
    if check:
        command.append("--check")
    if extra_vars:
        # one JSON document keeps types (numbers stay numbers) and needs no quoting
        command += ["-e", json.dumps(extra_vars)]
    return command


def ansible_environment(extra=None) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.jsonl",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.setdefault("CONTAINERS_CONF", str(PROJECT_DIR / "lab" / "containers.conf"))
    env.update(extra or {})
    return env


class RunningPlaybook:
    """A playbook started in the background (start_playbook); wait() gives its result.

    Its event stream goes to ``log_path`` as it arrives (or to a temporary file)."""

    def __init__(self, command, log_path=None, timeout=None, env=None):
        self.command = command
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in wait()
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "w+")  # noqa: SIM115 - closed in wait()
        else:
            self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in wait()
        self._log.write(json.dumps({"_command": shlex.join(command)}) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=ansible_environment(env), stdout=self._log,
            stderr=self._stderr, text=True,
        )  # fmt: skip
        self._deadline = time.monotonic() + timeout if timeout else None

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self) -> PlaybookResult:
        """Waits for the end (killing the run past its timeout) and reads the events."""
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        stopped = False
        try:
            self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            stopped = True
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._stderr.close()
        if stopped:
            stderr += f"\nansible-playbook was stopped after {self.timeout} s"
        if stderr:
            self._log.write(json.dumps({"_stderr": stderr}) + "\n")
        self._log.seek(0)
        lines = self._log.read().splitlines()
        self._log.close()
        return read_events(lines, self.command, self.proc.returncode, stderr)


def start_playbook(
    playbook, *, log_path=None, timeout=None, env=None, **options
) -> RunningPlaybook:
    """Starts one playbook in the background; the same options as run_playbook."""
    return RunningPlaybook(playbook_command(playbook, **options), log_path, timeout, env)


def run_playbook(playbook, *, log_path=None, timeout=None, env=None, **options) -> PlaybookResult:
    """Runs one playbook from the project directory; never raises for a failed play.

    A run past ``timeout`` seconds is killed and reported as failed."""
    return start_playbook(playbook, log_path=log_path, timeout=timeout, env=env, **options).wait()


def module_command(host_pattern, module, args=None, *, inventory=None, extra_vars=None,
                   playbook_dir=PLAYBOOK_DIR) -> list[str]:  # fmt: skip
    """An ad-hoc ``ansible`` command: one module on the hosts of a pattern.

    ``args`` as a dict goes as one JSON object (ansible parses an argument
    string that is one), so values keep their types and need no quoting; they
    are still templated, like a task's. ``playbook_dir`` gives the run the
    variables the playbooks see (playbooks/group_vars), as if it were a play.
    """
    command = [str(Path(sys.executable).parent / "ansible"), host_pattern, "-m", module]
    if args is not None:
        command += ["-a", args if isinstance(args, str) else json.dumps(args)]
    if inventory:
        command += ["-i", str(inventory)]
    if playbook_dir:
        command += ["--playbook-dir", str(playbook_dir)]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    return command


def start_module(
    host_pattern, module, args=None, *, log_path=None, timeout=None, env=None, **options
) -> RunningPlaybook:
    """Starts one ad-hoc module run in the background; the same options as run_module."""
    # ad-hoc runs use the stdout callback only when told to load callbacks
    env = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", **(env or {})}
    command = module_command(host_pattern, module, args, **options)
    return RunningPlaybook(command, log_path, timeout, env)


def run_module(
    host_pattern, module, args=None, *, log_path=None, timeout=None, env=None, **options
) -> PlaybookResult:
    """Runs one module on the hosts of a pattern (ad-hoc), read from the same event
    stream as a playbook: each host's result is ``result.results[module][host]``
    (the ad-hoc task is named after the module as given), an unreachable host is
    in ``result.failures``. Never raises for a failed host; a run past ``timeout``
    seconds is killed and reported as failed."""
    return start_module(
        host_pattern, module, args, log_path=log_path, timeout=timeout, env=env, **options
    ).wait()
