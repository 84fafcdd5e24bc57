#!/usr/bin/env python3
"""Faults under load: break one thing at a time in the lab while Locust loads it, and measure.

    make faults                                     # the default lab, every fault
    python scripts/faults.py --only kill-worker reload
    python scripts/faults.py -- -e lab_name_prefix=fdl-x- -e lab_network=fdl-x   # another lab
    FAULTS_ANSIBLE_ARGS="-e server=uwsgi" make faults

Needs the podman lab up (``make lab-up``); the stack is converged first with
``playbooks/site.yml`` (skip that with ``--no-converge``). Each fault runs
one bounded Locust cell through ``playbooks/loadtest.yml`` (the run's files
land in ``reports/<run-id>/<fault>/``), does one thing to the lab's own
containers while it runs, measures, puts the lab back as it was, and prints
one line: PASS, FAIL or SKIP, what was done, what was measured.

    kill-worker      kill -9 of one app worker process 8 s into /db load: at most 0.5 % of
                     the run's requests fail, the server starts a new worker (same number
                     of workers afterwards, same master).
    pg-restart       PostgreSQL stopped for 5 s under /db load, then started: the failures
                     while it is down are 503s with Retry-After (a probe asks 10 times a
                     second), never 500; none later than 5 s after it accepts connections
                     again; the app unit is not restarted (same MainPID, same NRestarts).
    pool-exhaustion  the app converged with a pool of 2 connections per process, /sleep
                     with more users than the pools hold: the failures are 503s with
                     Retry-After, never 500; afterwards PostgreSQL has no more client
                     connections than pool size x processes and none still active. The app
                     is converged back to its defaults.
    reload           ``systemctl reload`` of the app unit under /db load: 0 failed requests,
                     every worker replaced, same master. Servers without a graceful reload
                     are reported as SKIP with the reason.
    slow-clients     one /slow run in three 12 s windows: without, with, and again without
                     200 connections to nginx that dribble a header byte a second
                     (loadtest/slow_clients.py on the last load generator): /slow answers
                     (counted per second in nginx's access log) stay within 10 % of the
                     windows without them.
    loadgen-stop     ``podman stop`` of the last load generator 8 s into a run, then
                     ``podman start``: the run finishes or fails with a message that says
                     why, and no Locust or sampler process is left on any host.

Arguments after ``--`` (and the words of FAULTS_ANSIBLE_ARGS) go to every
``ansible`` and ``ansible-playbook`` command: ``-e``/``-i`` select another lab
or inventory, ``-e server=...`` another server. FAULTS (names or numbers,
space-separated) is ``--only``. Exit status: 0 when no fault failed (a SKIP
is not a failure), 1 when one did, 2 when the lab is missing or the stack
could not be converged. ``reports/<run-id>/faults.json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask_deploy_lab import catalogue

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ["kill-worker", "pg-restart", "pool-exhaustion", "reload", "slow-clients", "loadgen-stop"]

# The targets.
MAX_FAILED_SHARE = 0.005
MAX_RECOVERY_S = 5.0
MAX_THROUGHPUT_DROP = 0.10

# The load of each fault: closed-loop users on one endpoint, seconds of the
# measured run, and when (seconds into it) the fault is done.
LOAD_USERS = 20
LOAD_SECONDS = 20
FAULT_AT_S = 8
PG_DOWN_S = 5
# stop, 5 s down, start: room after it to see the recovery
PG_SECONDS = 25
# More users than 2 connections x processes can serve, each holding one for 0.5 s.
POOL_SIZE = 2
POOL_USERS = 30
POOL_DELAY_S = 0.5
POOL_SECONDS = 20
# An I/O-bound endpoint (its throughput is users / delay while the machine
# keeps up), in one run of three windows: without the slow clients, with
# them, without them again. Comparing windows of one run rather than two runs
# keeps the noise of a shared machine out of the comparison as far as it can.
SLOW_DELAY_S = 0.2
SLOW_WINDOW_S = 12
SLOW_SECONDS = 3 * SLOW_WINDOW_S + 4
SLOW_CLIENTS = 200
LOADGEN_STOP_AT_S = 8
LOADGEN_SECONDS = 25
# Seconds to wait for a worker to be replaced, for the measured run to start.
REPLACE_TIMEOUT_S = 30
START_TIMEOUT_S = 300
# nginx's stub_status on the proxy host's loopback (roles/nginx: nginx_status_port),
# and its error log, where each request it retried on the app is a line.
NGINX_STATUS_URL = "http://127.0.0.1:8080/nginx_status"
NGINX_ERROR_LOG = "/var/log/nginx/error.log"
# Its access log ("timed" format): one line per request, to the second.
NGINX_ACCESS_LOG = "/var/log/nginx/access.log"
ACCESS_LINE = re.compile(r'\[(\d+/\w+/\d+:\d+:\d+:\d+ [+-]\d{4})\] "(\S+) (\S+)[^"]*" (\d{3}) ')
# Where the slow-client generator is copied on the load generator, and what
# a leftover process of a run would look like on any host.
SLOW_CLIENTS_PATH = "/run/faults-slow-clients.py"
LEFTOVER_PATTERN = r"locust|sampler\.py|faults-slow-clients"

# Asks a URL `count` times from a lab host, one line per answer:
# "<unix time> <status> <Retry-After or ->" (status 0: no HTTP answer).
PROBE = """
import sys, time, urllib.error, urllib.request
url, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for _ in range(count):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status, retry = r.status, r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        status, retry = e.code, e.headers.get("Retry-After")
    except OSError as e:
        status, retry = 0, type(e).__name__
    print(f"{time.time():.3f} {status} {retry or '-'}", flush=True)
    time.sleep(gap)
"""
PG_CONNECTIONS_SQL = (
    "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1"
)
# Why a server family of the catalogue has no graceful reload (reload: null).
NO_RELOAD_WHY = {
    "werkzeug": "Werkzeug's development server has no reload signal; a restart drops requests",
    "gevent": "gevent.pywsgi is one process, no master starts new workers: a reload is a restart",
    "waitress": "Waitress is one process with no reload signal and no graceful stop",
}


class FaultError(Exception):
    """A fault could not be carried out or measured; its line says why."""


def note(message):
    """Progress, on stderr: stdout keeps one line per fault."""
    print(f"   .. {message}", file=sys.stderr, flush=True)


def clock(seconds):
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def sleep_until(moment):
    time.sleep(max(0.0, moment - time.time()))


def failure_reason(output):
    """The message of the last failed task in an ansible-playbook output, on one line."""
    errors = re.findall(r"^\[ERROR\]: (.*)$", output, re.M)
    if errors:
        text = errors[-1]
        for prefix in ("Task failed: ", "Action failed: "):
            text = text.removeprefix(prefix)
        return text[:500]
    unreachable = re.findall(r"^fatal: \[(\S+)\]: UNREACHABLE!", output, re.M)
    if unreachable:
        return f"host {unreachable[-1]} became unreachable"
    messages = re.findall(r"^\s+msg: (.*)$", output, re.M)
    if messages:
        return messages[-1].strip("'\"")[:500]
    return "ansible-playbook failed (see its log)"


# ---------------------------------------------------------------- Ansible


class Ansible:
    """ansible and ansible-playbook from the project root, with the passthrough arguments."""

    def __init__(self, passthrough, logs):
        self.passthrough = passthrough
        self.logs = logs
        venv_bin = str(Path(sys.executable).parent)
        self.path = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            PATH=self.path,
        )

    def tool(self, name):
        found = shutil.which(name, path=self.path)
        if not found:
            raise FaultError(f"{name} is not installed: run make setup")
        return found

    def command(self, playbook, extra, tags=None):
        command = [self.tool("ansible-playbook"), f"playbooks/{playbook}", *self.passthrough]
        if tags:
            command += ["--tags", tags]
        for key, value in extra.items():
            command += ["-e", f"{key}={value}"]
        return command

    def start(self, playbook, extra, log_name, tags=None):
        """The playbook in the background, its output into logs/<log_name>.log."""
        command = self.command(playbook, extra, tags)
        log_path = self.logs / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            log.write("$ " + shlex.join(command) + "\n\n")
            log.flush()
            proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return proc, log_path

    def run(self, playbook, extra, log_name, tags=None, timeout=1200):
        """Runs a playbook to its end; returns (ok, why it failed)."""
        proc, log_path = self.start(playbook, extra, log_name, tags)
        return finish(proc, log_path, timeout)

    def hosts(self):
        """{host: {"container", "connection", "podman", "groups"}} and groups in inventory order."""
        # no spaces: ad-hoc arguments are split on them
        expression = (
            "{'container':ansible_host|default(inventory_hostname),"
            "'connection':ansible_connection|default(''),"
            "'podman':ansible_podman_executable|default('podman'),"
            "'groups':group_names,'order':groups}"
        )
        env = dict(
            self.env,
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        )
        command = [self.tool("ansible"), "all", *self.passthrough]
        command += ["-m", "ansible.builtin.debug", "-a", f"var={expression}"]
        proc = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        start = proc.stdout.find("{\n")
        if proc.returncode != 0 or start < 0:
            raise FaultError(f"ansible cannot read the inventory: {proc.stderr.strip()[-300:]}")
        result, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
        found = result["plays"][0]["tasks"][0]["hosts"]
        hosts = {name: body[expression] for name, body in found.items()}
        order = next(iter(hosts.values()))["order"] if hosts else {}
        return hosts, order


def finish(proc, log_path, timeout):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
        return False, f"still running after {timeout} s; stopped (see {log_path})"
    if proc.returncode == 0:
        return True, None
    return False, failure_reason(log_path.read_text(errors="replace"))


# ---------------------------------------------------------------- the lab


class Lab:
    """The lab's containers, reached with podman exec (the inventory says which they are)."""

    def __init__(self, ansible):
        hosts, order = ansible.hosts()
        not_lab = sorted(
            h for h, v in hosts.items() if v["connection"] != "containers.podman.podman"
        )
        if not hosts or not_lab:
            raise FaultError(
                "faults run on the podman lab only; "
                + (f"not lab hosts: {', '.join(not_lab)}" if not_lab else "the inventory is empty")
            )
        self.containers = {h: v["container"] for h, v in hosts.items()}
        self.podman_bin = next(iter(hosts.values()))["podman"]
        if "/" not in self.podman_bin:
            self.podman_bin = shutil.which(self.podman_bin) or self.podman_bin
        self.groups = {g: list(members) for g, members in order.items()}
        for group in ("db", "app", "proxy", "loadgen"):
            if not self.groups.get(group):
                raise FaultError(f"the inventory has no host in group '{group}'")
        running = self.podman("ps", "--format", "{{.Names}}").stdout.split()
        down = [c for c in self.containers.values() if c not in running]
        if down:
            raise FaultError(f"the lab is not up (not running: {', '.join(down)}): make lab-up")

    def first(self, group):
        return self.groups[group][0]

    def podman(self, *args, timeout=120, check=False):
        return subprocess.run(
            [self.podman_bin, *args], capture_output=True, text=True, timeout=timeout, check=check
        )

    def run(self, host, *argv, stdin=None, timeout=60, check=True):
        interactive = ["-i"] if stdin is not None else []
        proc = subprocess.run(
            [self.podman_bin, "exec", *interactive, self.containers[host], *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            why = (proc.stderr or proc.stdout).strip()[-300:]
            raise FaultError(f"on {host}: {shlex.join(argv)} failed ({proc.returncode}): {why}")
        return proc

    def spawn(self, host, *argv):
        return subprocess.Popen(
            [self.podman_bin, "exec", self.containers[host], *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def unit(self, host, unit):
        """MainPID, NRestarts, ActiveState, CanReload of a unit."""
        props = ["MainPID", "NRestarts", "ActiveState", "CanReload"]
        args = ["systemctl", "show", *[f"--property={p}" for p in props], unit]
        out = self.run(host, *args).stdout
        state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        state["MainPID"] = int(state.get("MainPID") or 0)
        state["NRestarts"] = int(state.get("NRestarts") or 0)
        return state

    def children(self, host, pid):
        out = self.run(host, "pgrep", "-P", str(pid), check=False).stdout
        return sorted(int(p) for p in out.split())

    def probe(self, host, url, count, gap):
        """Starts `count` requests from `host`, `gap` s apart; .answers() reads them."""
        return Probe(self.spawn(host, "python3", "-c", PROBE, url, str(count), str(gap)))

    def leftovers(self):
        """{host: [processes]} of Locust, samplers and slow clients still running."""
        found = {}
        for host in self.containers:
            out = self.run(host, "pgrep", "-af", LEFTOVER_PATTERN, check=False).stdout
            if out.strip():
                found[host] = out.strip().splitlines()
        return found


class Probe:
    def __init__(self, proc):
        self.proc = proc

    def answers(self, timeout=120):
        """[(unix time, status, Retry-After)] once every request is answered."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        found = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                found.append((float(parts[0]), int(parts[1]), parts[2]))
        return found


def with_retry_after(answers, status=503):
    """(answers with that status, those of them with a Retry-After header)."""
    matching = [a for a in answers if a[1] == status]
    return matching, [a for a in matching if a[2] != "-"]


def seen(text):
    """A Locust failure's First/Last Seen (ISO 8601 to the second, or Unix time) as Unix time."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------- a load run


class Load:
    """One loadtest.yml cell in the background, and its results once it ended."""

    def __init__(self, ctx, cell, endpoint, users, duration, warmup=0, delay=None):
        self.ctx, self.cell, self.users, self.duration = ctx, cell, users, duration
        self.endpoint = endpoint
        self.cell_dir = ctx.run_dir / cell
        extra = {
            "run_id": ctx.run_id,
            "cell_id": cell,
            "endpoint": endpoint,
            "users": users,
            "duration": duration,
            "warmup": warmup,
            "loadtest_install": str(not ctx.locust_installed).lower(),
        }
        if delay is not None:
            extra["delay_s"] = delay
        self.timeout = START_TIMEOUT_S + warmup + duration + 120
        note(f"load: /{endpoint} x{users} users for {duration} s ({cell})")
        # the master's files of an earlier run stay until this one starts
        self.launched = time.time()
        self.proc, self.log_path = ctx.ansible.start("loadtest.yml", extra, cell)
        self.result = None

    @property
    def what(self):
        return f"/{self.endpoint} x{self.users} users, {self.duration} s"

    def _ended_early(self):
        if self.proc.poll() is None:
            return
        ok, why = self.finish()
        raise FaultError(
            f"the load test ended before its measured run: {why if not ok else 'no run'}"
        )

    def wait_measuring(self):
        """Waits for the measured run with all its users; returns its Unix start time."""
        master = self.ctx.lab.first("loadgen")
        history = f"{self.ctx.locust_run_dir}/locust_stats_history.csv"
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            self._ended_early()
            tail = self.ctx.lab.run(master, "tail", "-n", "4", history, check=False).stdout
            for row in csv.reader(tail.splitlines()):
                if len(row) < 4 or row[3] != "Aggregated" or row[1] != str(self.users):
                    continue
                started = float(row[0])
                if started >= self.launched:
                    note(f"measured run started {time.time() - started:.1f} s ago")
                    return started
            time.sleep(0.5)
        raise FaultError(f"the measured run did not start within {START_TIMEOUT_S} s")

    def finish(self):
        if self.result is None:
            self.result = finish(self.proc, self.log_path, self.timeout)
            if self.result[0]:
                self.ctx.locust_installed = True
        return self.result

    def _rows(self, name):
        path = self.cell_dir / name
        if not path.is_file():
            raise FaultError(f"the run left no {name} in {self.cell_dir}")
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def totals(self):
        """{"requests", "failures", "rps"} of the Aggregated row."""
        row = next(r for r in self._rows("locust_stats.csv") if r["Name"] == "Aggregated")
        return {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "rps": round(float(row["Requests/s"]), 1),
        }

    def failures(self):
        """[{"status", "error", "count", "first", "last"}]; status 0 when not an HTTP status."""
        found = []
        for row in self._rows("locust_failures.csv"):
            status = re.search(r"HTTP (\d{3})", row["Error"])
            found.append(
                {
                    "status": int(status.group(1)) if status else 0,
                    "error": row["Error"],
                    "count": int(row["Occurrences"]),
                    "first": seen(row.get("First Seen")),
                    "last": seen(row.get("Last Seen")),
                }
            )
        return found

    def history(self):
        """[(unix time, users, total requests, total failures)] of the Aggregated rows."""
        return [
            (
                float(r["Timestamp"]),
                int(r["User Count"]),
                int(r["Total Request Count"]),
                int(r["Total Failure Count"]),
            )
            for r in self._rows("locust_stats_history.csv")
            if r["Name"] == "Aggregated"
        ]


def by_status(failures):
    """'503 x120, "body is not ..." x2' from failures(): the status, else Locust's error."""
    counts = {}
    for f in failures:
        label = str(f["status"]) if f["status"] else error_text(f["error"])
        counts[label] = counts.get(label, 0) + f["count"]
    return ", ".join(f"{label} x{n}" for label, n in sorted(counts.items())) or "none"


def error_text(error):
    """A Locust error without its exception wrapper: CatchResponseError('x') -> "x"."""
    inner = re.fullmatch(r"\w+\((['\"])(.*)\1\)", error.strip())
    return f'"{inner.group(2) if inner else error.strip()}"'


# ---------------------------------------------------------------- the faults


@dataclass
class Result:
    number: int
    name: str
    status: str
    did: str
    measured: str
    figures: dict = field(default_factory=dict)

    def line(self):
        return f"{self.status:<4}  {self.number} {self.name:<15}  {self.did}  =>  {self.measured}"


class Context:
    def __init__(self, args, ansible, lab):
        self.args, self.ansible, self.lab = args, ansible, lab
        self.run_id = args.run_id
        self.run_dir = ROOT / "reports" / args.run_id
        self.locust_installed = False
        self.loads = []
        self.app = lab.first("app")
        self.db = lab.first("db")
        self.proxy = lab.first("proxy")
        self.loadgens = lab.groups["loadgen"]
        self.prober = self.loadgens[-1]
        self.locust_run_dir = "/var/lib/locust/last-run"
        self.refresh()

    def refresh(self):
        """Re-reads what the last converge deployed."""
        fact = self.lab.run(self.app, "cat", "/etc/ansible/facts.d/labapp.fact", check=False)
        if fact.returncode != 0:
            raise FaultError(
                f"{self.app} has no deployment fact: converge it with playbooks/site.yml"
            )
        self.fact = json.loads(fact.stdout)
        self.unit = self.fact["unit"]
        self.server = self.fact["server"]

    def locust_config(self):
        """Where the Locust master writes its files, as the locust role installed it."""
        out = self.lab.run(self.loadgens[0], "cat", "/etc/locust/locustctl.json", check=False)
        if out.returncode == 0:
            config = json.loads(out.stdout)
            self.locust_run_dir = config.get("run_dir") or self.locust_run_dir

    def load(self, cell, endpoint, users=LOAD_USERS, duration=LOAD_SECONDS, **kwargs):
        load = Load(self, cell, endpoint, users, duration, **kwargs)
        self.loads.append(load)
        return load

    def url(self, path):
        return f"http://{self.proxy}{path}"

    def workers(self):
        state = self.lab.unit(self.app, self.unit)
        return state, self.lab.children(self.app, state["MainPID"])

    def cpu_ticks(self, pids):
        """{pid: CPU clock ticks used so far} from /proc/<pid>/stat."""
        paths = [f"/proc/{pid}/stat" for pid in pids]
        out = self.lab.run(self.app, "cat", *paths, check=False).stdout
        ticks = {}
        for line in out.splitlines():
            pid, _, rest = line.partition(" (")
            fields = rest.rpartition(") ")[2].split()
            if pid.isdigit() and len(fields) > 12:
                ticks[int(pid)] = int(fields[11]) + int(fields[12])
        return ticks

    def busiest(self, workers):
        """The worker that used the most CPU over the last second, and its share of it."""
        before = self.cpu_ticks(workers)
        time.sleep(1)
        after = self.cpu_ticks(workers)
        used = {pid: after.get(pid, 0) - before.get(pid, 0) for pid in workers}
        victim = max(workers, key=lambda pid: used[pid])
        return victim, round(100 * used[victim] / max(sum(used.values()), 1))

    def wait_workers(self, main_pid, gone, since):
        """Seconds until none of `gone` is a worker and all workers are back; None on timeout."""
        expected = self.fact["processes"]
        while time.time() < since + REPLACE_TIMEOUT_S:
            now = self.lab.children(self.app, main_pid)
            if len(now) == expected and not set(now) & set(gone):
                return round(time.time() - since, 1), now
            time.sleep(0.2)
        return None, self.lab.children(self.app, main_pid)

    def nginx_mark(self):
        return self.log_mark(NGINX_ERROR_LOG)

    def log_mark(self, path):
        """Lines in one of nginx's logs so far."""
        out = self.lab.run(self.proxy, "wc", "-l", path, check=False).stdout.split()
        return int(out[0]) if out and out[0].isdigit() else 0

    def access_times(self, mark, path):
        """Unix times (to the second) of the 200s for `path` nginx logged since `mark`."""
        # nginx writes its buffered lines within 5 s (flush=5s); the run ended longer ago
        out = self.lab.run(self.proxy, "tail", "-n", f"+{mark + 1}", NGINX_ACCESS_LOG, timeout=120)
        times = []
        for match in ACCESS_LINE.finditer(out.stdout):
            stamp, _, target, status = match.groups()
            if status == "200" and target.split("?")[0] == path:
                times.append(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp())
        return times

    def nginx_upstream_errors(self, mark):
        """Errors towards the app nginx logged since `mark` (each retried, or passed on)."""
        out = self.lab.run(self.proxy, "tail", "-n", f"+{mark + 1}", NGINX_ERROR_LOG, check=False)
        return sum(1 for line in out.stdout.splitlines() if "upstream" in line)

    def wait_booted(self, host, timeout=90):
        """systemd's state on a host that was just started: running, degraded, or why not."""
        deadline = time.time() + timeout
        state = "not answering"
        while time.time() < deadline:
            probe = self.lab.run(
                host, "timeout", "30", "systemctl", "is-system-running", "--wait", check=False
            )
            state = probe.stdout.strip() or (probe.stderr.strip().splitlines() or ["?"])[-1]
            if state in ("running", "degraded"):
                return state
            time.sleep(1)
        return state

    def pg_unit(self):
        out = self.lab.run(
            self.db, "systemctl", "list-units", "postgresql@*", "--plain", "--no-legend", "--all"
        ).stdout
        units = [line.split()[0] for line in out.splitlines() if line.strip()]
        if not units:
            raise FaultError(f"no postgresql@ unit on {self.db}")
        return units[0]

    def pg_connections(self):
        out = self.lab.run(
            self.db, "runuser", "-u", "postgres", "--", "psql", "-XAtc", PG_CONNECTIONS_SQL
        ).stdout
        return {
            state: int(n) for state, _, n in (ln.partition("|") for ln in out.splitlines() if ln)
        }


def kill_worker(ctx):
    processes = ctx.fact["processes"]
    if processes < 2:
        return "SKIP", (
            f"{ctx.server} runs one process: kill -9 of it is a crash (systemd restarts the unit), "
            "not a worker replacement; use a multi-process server (gunicorn-*, uwsgi*)",
            "not measured",
            {},
        )
    state, workers = ctx.workers()
    if len(workers) != processes:
        raise FaultError(
            f"{ctx.unit} has {len(workers)} worker processes, its fact says {processes}"
        )
    load = ctx.load("kill-worker", "db")
    t0 = load.wait_measuring()
    sleep_until(t0 + FAULT_AT_S - 1)
    _, workers = ctx.workers()
    victim, cpu_share = ctx.busiest(workers)
    mark = ctx.nginx_mark()
    ctx.lab.run(ctx.app, "kill", "-9", str(victim))
    killed = time.time()
    note(f"killed worker {victim}")
    replaced_s, after = ctx.wait_workers(state["MainPID"], [victim], killed)
    ok, why = load.finish()
    cut_off = ctx.nginx_upstream_errors(mark)
    if not ok:
        raise FaultError(f"the load test failed: {why}")
    totals = load.totals()
    share = totals["failures"] / max(totals["requests"], 1)
    main_after = ctx.lab.unit(ctx.app, ctx.unit)["MainPID"]
    passed = (
        share <= MAX_FAILED_SHARE
        and replaced_s is not None
        and len(after) == processes
        and main_after == state["MainPID"]
    )
    did = (
        f"kill -9 of {ctx.server} worker pid {victim} (the busiest of {processes}, {cpu_share} % "
        "of their CPU) "
        f"{killed - t0:.0f} s into {load.what}"
    )
    measured = (
        f"{totals['failures']} of {totals['requests']} requests failed ({100 * share:.2f} %, "
        f"limit {100 * MAX_FAILED_SHARE:g} %; {by_status(load.failures())}); nginx logged "
        f"{cut_off} upstream errors from the kill on, retrying what had no answer yet; "
        f"workers {processes} -> {len(after)}"
        + (f", replaced in {replaced_s} s" if replaced_s is not None else ", NOT replaced")
        + ("; master unchanged" if main_after == state["MainPID"] else "; MASTER CHANGED")
    )
    figures = {
        "load": load.what,
        **totals,
        "failed_percent": round(100 * share, 3),
        "victim_cpu_share_percent": cpu_share,
        "nginx_upstream_errors": cut_off,
        "workers_before": processes,
        "workers_after": len(after),
        "replaced_s": replaced_s,
        "failures_by_status": by_status(load.failures()),
    }
    return "PASS" if passed else "FAIL", (did, measured, figures)


def pg_restart(ctx):
    before = ctx.lab.unit(ctx.app, ctx.unit)
    pg_unit = ctx.pg_unit()
    mark = ctx.log_mark(NGINX_ACCESS_LOG)
    load = ctx.load("pg-restart", "db", duration=PG_SECONDS)
    t0 = load.wait_measuring()
    sleep_until(t0 + FAULT_AT_S - 1)
    # 10 requests a second from a load generator, from 1 s before the stop until well after
    probe = ctx.lab.probe(ctx.prober, ctx.url("/db"), int((PG_DOWN_S + 20) / 0.1), 0.1)
    try:
        sleep_until(t0 + FAULT_AT_S)
        ctx.lab.run(ctx.db, "systemctl", "stop", pg_unit)
        down = time.time()
        note(f"{pg_unit} stopped")
        sleep_until(down + PG_DOWN_S)
    finally:
        starting = time.time()
        # the moment it accepts connections again, read on the db host's clock
        # (the controller's); then the start job is awaited as well
        ready = ctx.lab.run(
            ctx.db,
            "sh",
            "-c",
            f"systemctl start --no-block {pg_unit} && for i in $(seq 900); do "
            "pg_isready -q && { date +%s.%N; exec systemctl start " + pg_unit + "; }; "
            "sleep 0.1; done; exit 1",
            timeout=150,
            check=False,
        )
    if ready.returncode != 0 or not ready.stdout.strip():
        raise FaultError(f"PostgreSQL did not accept connections within 90 s of {pg_unit} start")
    back = float(ready.stdout.split()[0])
    note(f"{pg_unit} accepting connections {back - down:.1f} s after the stop")
    ok, why = load.finish()
    answers = probe.answers()
    if not ok:
        raise FaultError(f"the load test failed: {why}")
    totals = load.totals()
    failures = load.failures()
    after = ctx.lab.unit(ctx.app, ctx.unit)
    wrong = [f for f in failures if f["status"] != 503]
    # Locust records when a failure was last seen to the second: an upper bound
    last = max((f["last"] for f in failures if f["last"]), default=None)
    recovery_s = round(max(0.0, last + 1 - back), 1) if last else None
    while_down, down_retry = with_retry_after([a for a in answers if down <= a[0] <= starting])
    down_total = [a for a in answers if down <= a[0] <= starting]
    late = [a[0] for a in answers if a[0] > back and a[1] != 200]
    probe_recovery_s = round(max(late) - back, 1) if late else 0.0
    restarted = after["MainPID"] != before["MainPID"] or after["NRestarts"] != before["NRestarts"]
    # /db answered 200 through nginx, per second (Locust's history has 3 s steps)
    answered = ctx.access_times(mark, "/db")
    rate_before = round(rate_between(answered, int(t0) + 1, int(down)), 1)
    rate_after = round(rate_between(answered, int(back) + 2, int(t0) + load.duration - 1), 1)
    passed = (
        bool(failures)
        and not wrong
        and bool(while_down)
        and len(while_down) == len(down_total)
        and len(down_retry) == len(while_down)
        and recovery_s is not None
        and recovery_s <= MAX_RECOVERY_S
        and not restarted
    )
    if restarted or before["NRestarts"]:
        app_state = (
            f"app MainPID {before['MainPID']} -> {after['MainPID']}, "
            f"NRestarts {before['NRestarts']} -> {after['NRestarts']}"
        )
    else:
        app_state = "app not restarted (same MainPID, NRestarts 0)"
    did = (
        f"systemctl stop {pg_unit} {down - t0:.0f} s into {load.what}, start {PG_DOWN_S} s "
        f"later (accepting again {back - down:.1f} s after the stop)"
    )
    measured = "; ".join(
        [
            f"Locust failures {by_status(failures)} ({totals['failures']} of {totals['requests']})",
            f"probe while down: {len(while_down)} of {len(down_total)} answers 503, "
            f"{len(down_retry)} with Retry-After",
            (
                f"last failure <= {recovery_s} s after it was back (limit {MAX_RECOVERY_S:g} s; "
                f"probe: {probe_recovery_s} s)"
                if recovery_s is not None
                else "no failure, so no recovery time"
            ),
            f"/db answered {rate_before} req/s before, {rate_after} after",
            app_state,
        ]
    )
    figures = {
        "load": load.what,
        **totals,
        "failures_by_status": by_status(failures),
        "down_s": round(back - down, 1),
        "recovery_s": recovery_s,
        "probe_recovery_s": probe_recovery_s,
        "probe_while_down": {"answers": len(down_total), "503": len(while_down)},
        "probe_retry_after": sorted({a[2] for a in while_down}),
        "rps_before": rate_before,
        "rps_after": rate_after,
        "app_restarted": restarted,
    }
    return "PASS" if passed else "FAIL", (did, measured, figures)


def pool_exhaustion(ctx):
    pool = {"flask_app_db_pool_max": POOL_SIZE, "flask_app_db_pool_min": POOL_SIZE}
    note(f"converge the app with a pool of {POOL_SIZE}")
    ok, why = ctx.ansible.run("site.yml", pool, "pool-exhaustion--converge", tags="app")
    try:
        if not ok:
            raise FaultError(f"the converge with a pool of {POOL_SIZE} failed: {why}")
        ctx.refresh()
        if ctx.fact["db_mode"] != "pool":
            return "SKIP", (
                f"db_mode={ctx.fact['db_mode']}: there is no pool to exhaust",
                "not measured",
                {},
            )
        limit = ctx.fact["db_pool_max"] * ctx.fact["processes"] * len(ctx.lab.groups["app"])
        load = ctx.load("pool-exhaustion", "sleep", POOL_USERS, POOL_SECONDS, delay=POOL_DELAY_S)
        t0 = load.wait_measuring()
        sleep_until(t0 + FAULT_AT_S / 2)
        probe = ctx.lab.probe(ctx.prober, ctx.url(f"/sleep?delay={POOL_DELAY_S}"), 10, 0.1)
        answers = probe.answers()
        ok, why = load.finish()
        if not ok:
            raise FaultError(f"the load test failed: {why}")
        time.sleep(2)
        connections = ctx.pg_connections()
    finally:
        note("converge the app back to its defaults")
        restored, restore_why = ctx.ansible.run(
            "site.yml", {}, "pool-exhaustion--restore", tags="app"
        )
        ctx.refresh()
    if not restored:
        raise FaultError(f"the app could not be converged back to its defaults: {restore_why}")
    totals = load.totals()
    failures = load.failures()
    wrong = [f for f in failures if f["status"] != 503]
    probe_503, retry_after = with_retry_after(answers)
    total = sum(connections.values())
    stuck = sum(n for state, n in connections.items() if state != "idle")
    passed = (
        bool(failures)
        and not wrong
        and probe_503
        and len(retry_after) == len(probe_503)
        and total <= limit
        and stuck == 0
    )
    did = (
        f"app converged with a pool of {POOL_SIZE} per process ({limit} connections in all), "
        f"/sleep?delay={POOL_DELAY_S} x{POOL_USERS} users for {POOL_SECONDS} s, "
        "then converged back to the defaults"
    )
    measured = (
        f"{totals['failures']} of {totals['requests']} requests failed: {by_status(failures)}; "
        f"probe: {len(probe_503)} of {len(answers)} were 503, {len(retry_after)} with "
        f"Retry-After; afterwards {total} client connections (limit {limit}), "
        f"{stuck} not idle ({', '.join(f'{s} {n}' for s, n in sorted(connections.items()))})"
    )
    figures = {
        "load": load.what,
        **totals,
        "failures_by_status": by_status(failures),
        "probe": {"answers": len(answers), "503": len(probe_503)},
        "probe_retry_after": sorted({a[2] for a in probe_503}),
        "pg_connections_after": connections,
        "pg_connections_limit": limit,
    }
    return "PASS" if passed else "FAIL", (did, measured, figures)


def reload(ctx):
    state, workers = ctx.workers()
    if state.get("CanReload") != "yes":
        family = catalogue.load().server(ctx.server).family
        why = NO_RELOAD_WHY.get(family, "the catalogue gives it no reload signal")
        return "SKIP", (
            f"systemctl reload {ctx.unit}: {ctx.server} cannot reload gracefully",
            why,
            {"server": ctx.server},
        )
    load = ctx.load("reload", "db")
    t0 = load.wait_measuring()
    sleep_until(t0 + FAULT_AT_S)
    _, workers = ctx.workers()
    mark = ctx.nginx_mark()
    ctx.lab.run(ctx.app, "systemctl", "reload", ctx.unit)
    reloaded = time.time()
    note(f"reloaded {ctx.unit}")
    replaced_s, after = ctx.wait_workers(state["MainPID"], workers, reloaded)
    ok, why = load.finish()
    cut_off = ctx.nginx_upstream_errors(mark)
    if not ok:
        raise FaultError(f"the load test failed: {why}")
    totals = load.totals()
    main_after = ctx.lab.unit(ctx.app, ctx.unit)["MainPID"]
    passed = totals["failures"] == 0 and replaced_s is not None and main_after == state["MainPID"]
    did = f"systemctl reload {ctx.unit} {reloaded - t0:.0f} s into {load.what}"
    measured = (
        f"{totals['failures']} of {totals['requests']} requests failed"
        + (f" ({by_status(load.failures())})" if totals["failures"] else "")
        + (
            f"; all {len(after)} workers replaced in {replaced_s} s"
            if replaced_s is not None
            else f"; workers NOT all replaced ({len(set(after) & set(workers))} old left)"
        )
        + ("; master unchanged" if main_after == state["MainPID"] else "; MASTER CHANGED")
        + f"; nginx logged {cut_off} upstream errors from the reload on"
    )
    figures = {
        "load": load.what,
        **totals,
        "replaced_s": replaced_s,
        "server": ctx.server,
        "nginx_upstream_errors": cut_off,
    }
    return "PASS" if passed else "FAIL", (did, measured, figures)


def slow_clients(ctx):
    load = ctx.load("slow-clients", "slow", LOAD_USERS, SLOW_SECONDS, delay=SLOW_DELAY_S)
    source = (ROOT / "loadtest" / "slow_clients.py").read_text()
    ctx.lab.run(ctx.prober, "sh", "-c", f"cat > {SLOW_CLIENTS_PATH}", stdin=source)
    mark = ctx.log_mark(NGINX_ACCESS_LOG)
    clients = None
    try:
        t0 = load.wait_measuring()
        # without them [w0, w1), with them [w1 + 1, w2), without them again [w2 + 1, w3)
        w0 = int(t0) + 2
        w1, w2, w3 = (w0 + n * SLOW_WINDOW_S for n in (1, 2, 3))
        sleep_until(w1)
        clients = ctx.lab.spawn(
            ctx.prober,
            "python3",
            SLOW_CLIENTS_PATH,
            *("--url", ctx.url("/json"), "--connections", str(SLOW_CLIENTS)),
            *("--interval", "1", "--duration", f"{w2 - time.time():.1f}"),
        )
        sleep_until(w1 + SLOW_WINDOW_S / 2)
        status = ctx.lab.run(
            ctx.proxy,
            "python3",
            "-c",
            "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read())",
            NGINX_STATUS_URL,
            check=False,
        ).stdout
        active = re.search(r"Active connections:\s*(\d+)", status)
        app_port = f"sport = :{ctx.fact['port']}"
        established = ctx.lab.run(
            ctx.app, "ss", "-Htn", "state", "established", f"( {app_port} )", check=False
        ).stdout
        summary = slow_summary(clients, timeout=w2 - time.time() + 30)
        ok, why = load.finish()
    finally:
        ctx.lab.run(ctx.prober, "pkill", "-TERM", "-f", SLOW_CLIENTS_PATH, check=False)
        if clients is not None and clients.poll() is None:
            clients.kill()
        ctx.lab.run(ctx.prober, "rm", "-f", SLOW_CLIENTS_PATH, check=False)
    if not ok:
        raise FaultError(f"the load test with slow clients failed: {why}")
    answered = ctx.access_times(mark, "/slow")
    without = [rate_between(answered, w0, w1), rate_between(answered, w2 + 1, w3)]
    with_them = rate_between(answered, w1 + 1, w2)
    baseline = sum(without) / 2
    change = round((with_them - baseline) / baseline, 4) + 0.0 if baseline else -1.0
    held = summary.get("open_max", 0)
    passed = change >= -MAX_THROUGHPUT_DROP and held >= 0.9 * SLOW_CLIENTS
    totals = load.totals()
    did = (
        f"{SLOW_CLIENTS} connections from {ctx.prober} dribbling a header byte a second to nginx "
        f"for the middle {SLOW_WINDOW_S} s of {load.what} (/slow?delay={SLOW_DELAY_S})"
    )
    measured = (
        f"/slow answered {with_them:.1f} req/s with them vs {without[0]:.1f} before and "
        f"{without[1]:.1f} after ({100 * change:+.1f} %, limit -{100 * MAX_THROUGHPUT_DROP:g} %); "
        f"{totals['failures']} of {totals['requests']} requests failed; slow connections "
        f"held {held}, nginx timed out {summary.get('closed_by_server', '?')} of them after "
        f"{summary.get('lifetime_s_avg', '?')} s; nginx active connections "
        f"{active.group(1) if active else '?'}, app connections {len(established.splitlines())}"
    )
    figures = {
        "load": load.what,
        **totals,
        "rps_without_before": round(without[0], 1),
        "rps_with": round(with_them, 1),
        "rps_without_after": round(without[1], 1),
        "change_percent": round(100 * change, 1),
        "slow_clients": summary,
        "nginx_active_connections": int(active.group(1)) if active else None,
        "app_established_connections": len(established.splitlines()),
    }
    return "PASS" if passed else "FAIL", (did, measured, figures)


def slow_summary(clients, timeout):
    """The JSON line slow_clients.py prints when it ends (SIGTERM ends it early)."""
    try:
        out, _ = clients.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {}
    lines = out.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


def rate_between(times, start, end):
    """Requests per second answered in [start, end) of whole seconds."""
    return sum(1 for t in times if start <= t < end) / max(end - start, 1)


def loadgen_stop(ctx):
    if len(ctx.loadgens) < 2:
        return "SKIP", (
            "podman stop of a load generator",
            "the inventory has one load generator, which runs the master",
            {},
        )
    victim = ctx.loadgens[-1]
    container = ctx.lab.containers[victim]
    load = ctx.load("loadgen-stop", "slow", duration=LOADGEN_SECONDS, delay=0.1)
    t0 = load.wait_measuring()
    try:
        sleep_until(t0 + LOADGEN_STOP_AT_S)
        stopped = time.time()
        ctx.lab.podman("stop", "--time", "10", container, check=True)
        stop_s = time.time() - stopped
        note(f"{container} stopped in {stop_s:.1f} s")
    finally:
        ctx.lab.podman("start", container, check=True)
        host_state = ctx.wait_booted(victim)
    back_s = time.time() - stopped
    note(f"{container} started again, systemd {host_state}")
    ok, why = load.finish()
    left = ctx.lab.leftovers()
    if left:
        note("leftover processes: stopping Locust on every load generator")
        ctx.ansible.run("loadtest.yml", {"locust_state": "stopped"}, "loadgen-stop--cleanup")
    # a failed run must say why; the fallback text of failure_reason() says nothing
    clear = ok or bool(why and "see its log" not in why)
    figures = {"load": load.what, "finished": ok, "message": why}
    if ok:
        outcome = "the run finished: " + rebalance(load, victim, figures)
    else:
        outcome = f"the run failed: {why}"
    # a run that finished after losing a worker must say so in its cell
    flagged = figures.get("flagged_in_cell", True) or not (
        figures.get("worker_quit_logged") or figures.get("respawns")
    )
    passed = clear and flagged and not left and host_state in ("running", "degraded")
    did = (
        f"podman stop {container} {stopped - t0:.0f} s into {load.what} "
        f"(stopped in {stop_s:.1f} s), podman start, systemd {host_state} "
        f"{back_s:.0f} s after the stop"
    )
    measured = outcome + (
        "; no Locust or sampler process left on any host"
        if not left
        else f"; LEFT RUNNING: {json.dumps(left)}"
    )
    figures |= {"leftovers": left, "host_state": host_state, "back_s": round(back_s, 1)}
    return "PASS" if passed else "FAIL", (did, measured, figures)


def rebalance(load, victim, figures):
    """What Locust did when a worker went away, from the master's log and the stats history."""
    log = (load.cell_dir / "locust.log").read_text(errors="replace")
    run_end = log.find("--run-time limit reached")
    during = log[: run_end if run_end >= 0 else len(log)]
    quit_seen = bool(re.search(rf"Worker '{re.escape(victim)}_\w+' \(index \d+\) quit", during))
    spawns = re.findall(r"Sending spawn jobs of (\d+) users .* to (\d+) ready workers", during)
    history = load.history()
    resets = [history[i][0] for i in range(1, len(history)) if history[i][2] < history[i - 1][2]]
    totals = load.totals()
    figures |= {
        "worker_quit_logged": quit_seen,
        "respawns": len(spawns) - 1,
        "stats_reset_at": resets,
        **totals,
    }
    text = f"{totals['requests']} requests, {totals['failures']} failed"
    if len(spawns) > 1:
        users, workers = spawns[-1]
        text += f"; Locust sent all {users} users to the {workers} worker(s) left"
    elif quit_seen:
        text += f"; {victim}'s worker quit and its users were not replaced"
    if resets and history:
        covered = history[-1][0] - resets[-1]
        figures["stats_cover_s"] = round(covered)
        text += (
            f" and, with --reset-stats, restarted its statistics then: the CSVs cover only "
            f"the last {covered:.0f} of {load.duration} s"
        )
    # loadtest.yml names the workers lost mid-run in cell.json; the report marks the cell
    cell_path = load.cell_dir / "cell.json"
    cell = json.loads(cell_path.read_text()) if cell_path.is_file() else {}
    flagged = any(w.startswith(f"{victim}_") for w in cell.get("workers_lost") or [])
    figures["flagged_in_cell"] = flagged
    if quit_seen or len(spawns) > 1:
        text += (
            "; cell.json names the lost worker, so the report marks the cell"
            if flagged
            else "; NOT flagged in cell.json (workers_lost)"
        )
    return text


STEPS = {
    "kill-worker": kill_worker,
    "pg-restart": pg_restart,
    "pool-exhaustion": pool_exhaustion,
    "reload": reload,
    "slow-clients": slow_clients,
    "loadgen-stop": loadgen_stop,
}


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1 :]
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Inject faults into the lab under load; one PASS/FAIL line per fault.",
        epilog="Arguments after -- go to every ansible command (e.g. -e lab_name_prefix=fdl-x-).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=(env("FAULTS") or "").split() or None,
        help=f"faults by name or number: {' '.join(FAULTS)}",
    )
    parser.add_argument(
        "--no-converge",
        action="store_true",
        help="skip the first site.yml (the stack is converged)",
    )
    parser.add_argument("--run-id", default=env("RUN_ID") or None)
    args = parser.parse_args(argv)
    args.passthrough = shlex.split(env("FAULTS_ANSIBLE_ARGS") or "") + passthrough
    chosen = []
    for word in [w for item in (args.only or FAULTS) for w in re.split(r"[\s,]+", item) if w]:
        name = FAULTS[int(word) - 1] if word.isdigit() and 1 <= int(word) <= len(FAULTS) else word
        if name not in FAULTS:
            parser.error(f"unknown fault {word!r}; valid: {', '.join(FAULTS)} (or 1-{len(FAULTS)})")
        if name not in chosen:
            chosen.append(name)
    args.faults = [f for f in FAULTS if f in chosen]
    args.run_id = args.run_id or "faults-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.monotonic()
    run_dir = ROOT / "reports" / args.run_id
    ansible = Ansible(args.passthrough, run_dir / "logs")
    print(f"faults {args.run_id}: {', '.join(args.faults)}", flush=True)
    try:
        lab = Lab(ansible)
        if not args.no_converge:
            note("converge the stack (playbooks/site.yml)")
            ok, why = ansible.run("site.yml", {}, "converge")
            if not ok:
                raise FaultError(f"the stack could not be converged: {why}")
        ctx = Context(args, ansible, lab)
        ctx.locust_config()
    except (FaultError, subprocess.SubprocessError, OSError) as exc:
        print(f"faults: {exc}", flush=True)
        return 2

    results = []
    for name in args.faults:
        number = FAULTS.index(name) + 1
        note(f"fault {number} {name}")
        step = time.monotonic()
        try:
            status, (did, measured, figures) = STEPS[name](ctx)
        except FaultError as exc:
            status, did, measured, figures = "FAIL", "could not be carried out", str(exc), {}
        except Exception as exc:  # one fault's bug must not hide the others' results
            why = f"{type(exc).__name__}: {exc}"
            status, did, measured, figures = "FAIL", "could not be carried out", why, {}
        # a load test that is still running (its fault broke off) ends before the next fault
        for load in ctx.loads:
            load.finish()
        ctx.loads.clear()
        figures["seconds"] = round(time.monotonic() - step)
        if status != "SKIP":
            ctx.locust_config()
        result = Result(number, name, status, did, measured, figures)
        results.append(result)
        print(result.line(), flush=True)
        write_results(run_dir, args, results)

    failed = [r for r in results if r.status == "FAIL"]
    skipped = [r for r in results if r.status == "SKIP"]
    print(
        f"faults {args.run_id}: {len(results) - len(failed) - len(skipped)} passed, "
        f"{len(failed)} failed, {len(skipped)} skipped in {clock(time.monotonic() - started)}; "
        f"figures in {run_dir.relative_to(ROOT) / 'faults.json'}",
        flush=True,
    )
    return 1 if failed else 0


def write_results(run_dir, args, results):
    run_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "run_id": args.run_id,
        "ansible_args": args.passthrough,
        "faults": [asdict(r) | {"line": r.line()} for r in results],
    }
    (run_dir / "faults.json").write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
