"""The stack the faults break: which host is which (the inventory), what is
deployed on the app hosts (their deployment fact), and the readings several
faults take of it, each one round trip through the executor."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from flask_deploy_lab import PROJECT_DIR, catalogue
from flask_deploy_lab.ansible import PlaybookResult, run_playbook
from flask_deploy_lab.cell import AppDeployment, FactsError
from flask_deploy_lab.faults.executor import Background, Executor, Inventory, Reply
from flask_deploy_lab.faults.hostside import (
    connections,
    http_probe,
    nginx_log,
    outage,
    task_table,
)
from flask_deploy_lab.faults.load import Load, LoadSpec
from flask_deploy_lab.faults.outcome import FaultError
from flask_deploy_lab.faults.task_rows import (
    CELERY_UNIT,
    TaskRow,
    TaskSettings,
    parse_rows,
    parse_settings,
    settings_argv,
)

# nginx's logs on the proxy host (roles/nginx/templates/nginx.conf.j2): one
# access line per request ("timed" format, to the second), and in the error
# log a line for each request towards the app that failed.
NGINX_ACCESS_LOG = "/var/log/nginx/access.log"
NGINX_ERROR_LOG = "/var/log/nginx/error.log"
# stub_status, on the proxy host's loopback (the nginx role's status server)
NGINX_STATUS_PATH = "/nginx_status"
NGINX_DEFAULTS = PROJECT_DIR / "roles" / "nginx" / "defaults" / "main.yml"
SLOW_API_DEFAULTS = PROJECT_DIR / "roles" / "slow_api" / "defaults" / "main.yml"
# The properties of a unit the faults read.
UNIT_PROPERTIES = ("MainPID", "NRestarts", "CanReload")
PG_CONNECTIONS_SQL = (
    "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1"
)


def deployment(host: str, fact: dict | None) -> AppDeployment:
    """What an app host runs, from its deployment fact: the reader cell.json uses."""
    try:
        return AppDeployment.from_fact(host, fact)
    except FactsError as error:
        raise FaultError(str(error)) from None


@dataclass(frozen=True)
class UnitState:
    main_pid: int
    n_restarts: int
    can_reload: bool


class Answer(NamedTuple):
    """One answer of the HTTP probe: when, its status (0: none), its Retry-After (- if
    none), and with --body what its body was (json-error, json, other, -; "" unread)."""

    time: float
    status: int
    retry_after: str
    body: str = ""


def unit_argv(unit: str) -> list[str]:
    return ["systemctl", "show", *[f"--property={p}" for p in UNIT_PROPERTIES], unit]


def parse_unit(text: str) -> UnitState:
    state = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return UnitState(
        main_pid=int(state.get("MainPID") or 0),
        n_restarts=int(state.get("NRestarts") or 0),
        can_reload=state.get("CanReload") == "yes",
    )


def parse_answers(text: str) -> list[Answer]:
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) in (3, 4) and parts[1].isdigit():
            found.append(Answer(float(parts[0]), int(parts[1]), *parts[2:]))
    return found


def with_retry_after(answers, status=503):
    """(answers with that status, those of them with a Retry-After header)."""
    matching = [a for a in answers if a[1] == status]
    return matching, [a for a in matching if a[2] != "-"]


def rate_between(answered: dict[int, int], start: int, end: int) -> float:
    """Requests per second answered in [start, end) of whole seconds, from the
    answers counted per second."""
    return sum(n for second, n in answered.items() if start <= second < end) / max(end - start, 1)


def parse_pg_connections(text: str) -> dict[str, int]:
    return {state: int(n) for state, _, n in (ln.partition("|") for ln in text.splitlines() if ln)}


def endpoint_url(target: str, endpoint: str, delay: float | None = None) -> str:
    """The URL of one of the catalogue's endpoints at `target`, with its ?delay= if given."""
    entry = catalogue.load().endpoint(endpoint)
    query = f"?{entry.delay_param}={delay}" if delay is not None and entry.delay_param else ""
    return f"{target}{entry.path}{query}"


def converge(executor: Executor, logs: Path, label, extra=None, tags=None) -> PlaybookResult:
    """playbooks/site.yml with the run's -e and -i, and `extra`."""
    return run_playbook(
        "site.yml", extra_vars={**executor.extra_vars, **(extra or {})} or None,
        inventory=executor.inventory, tags=tags, log_path=logs / f"{label}.log", timeout=1200,
    )  # fmt: skip


@functools.cache
def role_default(path: Path, name: str):
    return yaml.safe_load(path.read_text())[name]


def nginx_status_url(port: int | None) -> str:
    """nginx's stub_status on the proxy host's loopback: the inventory's
    nginx_status_port, else the nginx role's default."""
    if port is None:
        port = role_default(NGINX_DEFAULTS, "nginx_status_port")
    return f"http://127.0.0.1:{port}{NGINX_STATUS_PATH}"


class Stack:
    """The inventory's stack, for the faults: its hosts, its deployment, the loads
    run against it, and the readings of it they share."""

    def __init__(
        self, executor: Executor, inventory: Inventory, run_dir: Path, run_id: str,
        cell_prefix: str = "",
    ):  # fmt: skip
        self.executor = executor
        self.inventory = inventory
        self.run_dir, self.run_id = run_dir, run_id
        # the executor's logs: one directory per server of a matrix
        self.logs = executor.logs
        # before each load's cell name: the server's, in a matrix
        self.cell_prefix = cell_prefix
        self.locust_installed = False
        self.loads: list[Load] = []
        self.app = inventory.first("app")
        self.db = inventory.first("db")
        self.proxy = inventory.first("proxy")
        self.master = inventory.first("loadgen")
        self.loadgens = inventory.members("loadgen")
        # the faults' own requests come from the last load generator
        self.prober = self.loadgens[-1]
        address = inventory.hosts[self.proxy].address
        if not address:
            raise FaultError(f"{self.proxy} has no node_address (and no default-route address)")
        # where the load generators reach nginx (loadtest.yml's loadtest_target)
        self.target = f"http://{address}"
        self.refresh()

    @property
    def extra_vars(self) -> dict:
        return self.executor.extra_vars

    @property
    def inventory_source(self) -> str | None:
        return self.executor.inventory

    def refresh(self):
        """Re-reads what the last converge deployed."""
        facts = self.executor.local_facts([self.app], label="deployment")
        self.deployment = deployment(self.app, facts[self.app].get("labapp"))

    # ------------------------------------------------------------ what runs

    def load(self, cell: str, spec: LoadSpec) -> Load:
        load = Load(self, self.cell_prefix + cell, spec)
        self.loads.append(load)
        return load

    def converge(self, label, extra=None, tags=None) -> PlaybookResult:
        return converge(self.executor, self.logs, label, extra, tags)

    def stop_locust(self, label) -> PlaybookResult:
        """Stops Locust and the samplers on every host (loadtest.yml locust_state=stopped)."""
        return run_playbook(
            "loadtest.yml", extra_vars={**self.extra_vars, "locust_state": "stopped"},
            inventory=self.inventory_source, log_path=self.logs / f"{label}.log", timeout=600,
        )  # fmt: skip

    def url(self, endpoint: str, delay: float | None = None) -> str:
        return endpoint_url(self.target, endpoint, delay)

    def status_url(self) -> str:
        return nginx_status_url(self.inventory.hosts[self.proxy].nginx_status_port)

    # ------------------------------------------------------------ readings

    def app_unit(self, label) -> UnitState:
        return parse_unit(
            self.executor.check(self.app, unit_argv(self.deployment.unit), label=label)
        )

    def children(self, pid: int, label) -> list[int]:
        reply = self.executor.run_one(self.app, ["pgrep", "-P", str(pid)], label=label)
        if reply.rc is None:
            raise FaultError(f"cannot list the processes of {self.app}: {reply.why}")
        return sorted(int(p) for p in reply.stdout.split())

    def outage(self, host, unit, *, at, down_s, ready_argv, ready_timeout, what, label) -> dict:
        """Stops `unit` on `host` at Unix time `at` for `down_s` seconds, starts it
        and waits until `ready_argv` succeeds there (hostside/outage.py); its
        times ({"down_at", "ready_at", ...}). However that ends, the unit is asked
        to run again; FaultError when the outage failed or `what` (the service,
        for the message) did not answer within `ready_timeout` seconds."""
        reply = None
        try:
            reply = self.executor.script(
                host, Path(outage.__file__),
                ["--unit", unit, "--at", f"{at:.3f}", "--down", down_s,
                 "--ready-timeout", ready_timeout, "--", *ready_argv],
                label=f"{label}-outage", timeout=max(0.0, at - time.time()) + down_s
                + ready_timeout + 300,
            )  # fmt: skip
        finally:
            if reply is None or not reply.ok:
                self.executor.run_one(host, ["systemctl", "start", unit], label=f"{label}-start")
        times = reply.json() if reply.ok else None
        if not times:
            raise FaultError(f"the outage of {unit} on {host} failed: {reply.why}")
        if times.get("ready_at") is None:
            raise FaultError(f"{what} did not answer within {ready_timeout} s of {unit} start")
        return times

    def pg_unit(self, reply: Reply) -> str:
        """The PostgreSQL unit from `systemctl list-units postgresql@*` on the db host."""
        units = [line.split()[0] for line in reply.stdout.splitlines() if line.strip()]
        if not reply.ok or not units:
            raise FaultError(f"no postgresql@ unit on {self.db}: {reply.why}")
        return units[0]

    def pg_connections(self, label) -> dict[str, int]:
        argv = ["runuser", "-u", "postgres", "--", "psql", "-XAtc", PG_CONNECTIONS_SQL]
        return parse_pg_connections(self.executor.check(self.db, argv, label=label))

    def start_log_marks(self, label) -> Background:
        """Lines in nginx's access and error logs so far (marks to read from)."""
        return self.executor.start_script(
            self.proxy, Path(nginx_log.__file__), ["lines", NGINX_ACCESS_LOG, NGINX_ERROR_LOG],
            label=label, timeout=120,
        )  # fmt: skip

    def log_marks(self, background: Background) -> dict[str, int]:
        found = background.reply().json()
        if not isinstance(found, dict):
            raise FaultError(f"cannot read nginx's logs on {self.proxy}: {background.reply().why}")
        return found

    def answered(self, mark: int, endpoint: str, label) -> dict[int, int]:
        """{Unix second: 200s} nginx logged for an endpoint since `mark`."""
        # nginx writes its buffered lines within 5 s (flush=5s); the run ended longer ago
        path = catalogue.load().endpoint(endpoint).path
        found = self.executor.script_json(
            self.proxy, Path(nginx_log.__file__),
            ["answered", NGINX_ACCESS_LOG, "--after", mark, "--path", path], label=label,
        )  # fmt: skip
        return {int(second): n for second, n in found.items()}

    def start_upstream_errors(self, mark: int, label) -> Background:
        """Errors towards the app nginx logged since `mark` (each retried, or passed on)."""
        return self.executor.start_script(
            self.proxy, Path(nginx_log.__file__),
            ["upstream-errors", NGINX_ERROR_LOG, "--after", mark], label=label, timeout=120,
        )  # fmt: skip

    def start_retries(self, mark: int, label) -> Background:
        """The requests nginx sent to the app more than once since line `mark` of its
        access log (nginx_log.py retries)."""
        return self.executor.start_script(
            self.proxy, Path(nginx_log.__file__),
            ["retries", NGINX_ACCESS_LOG, "--after", mark], label=label, timeout=120,
        )  # fmt: skip

    def start_probe(self, url, count, gap, at, label, body=False) -> Background:
        """`count` requests from the prober, `gap` s apart from Unix time `at` on (with
        `body`, each answer says what its body was)."""
        return self.executor.start_script(
            self.prober, Path(http_probe.__file__),
            [url, count, gap, "--at", f"{at:.3f}", *(["--body"] if body else [])],
            label=label, timeout=max(0.0, at - time.time()) + count * gap + 180,
        )  # fmt: skip

    @staticmethod
    def answers(probe: Background) -> list[Answer]:
        return parse_answers(probe.reply().stdout)

    # ------------------------------------------------------------ background tasks

    def first_of(self, group: str, fallback: str) -> str:
        """The first host of `group`, else of `fallback` (site.yml's defaults: the
        worker group is the app hosts, the broker and upstream groups the db hosts)."""
        members = self.inventory.members(group) or self.inventory.members(fallback)
        if not members:
            raise FaultError(f"the inventory has no host in group '{group}' nor '{fallback}'")
        return members[0]

    @property
    def worker(self) -> str:
        return self.first_of("worker", "app")

    @property
    def broker(self) -> str:
        return self.first_of("broker", "db")

    @property
    def upstream(self) -> str:
        return self.first_of("upstream", "db")

    @property
    def upstream_port(self) -> int:
        """The slow API's port (the slow_api role's)."""
        return int(role_default(SLOW_API_DEFAULTS, "slow_api_port"))

    @property
    def db_name(self) -> str:
        return self.inventory.hosts[self.db].db_name

    def task_settings(self, label) -> TaskSettings:
        """The worker's time limit and visibility timeout (two lines of its env file)."""
        reply = self.executor.run_one(self.worker, settings_argv(), label=label)
        if reply.rc is None or reply.rc > 1:  # grep: 1 is no line, the defaults then
            raise FaultError(f"cannot read the worker's settings on {self.worker}: {reply.why}")
        return parse_settings(reply.stdout)

    def celery_unit(self, label) -> UnitState:
        return parse_unit(self.executor.check(self.worker, unit_argv(CELERY_UNIT), label=label))

    def wait_tasks(self, since: float, until: float, deadline: float, label) -> list[TaskRow]:
        """The task rows created in [since, until), once none is queued or running
        any more, or at `deadline` (Unix times)."""
        found = self.executor.script_json(
            self.db, Path(task_table.__file__),
            ["wait", "--db", self.db_name, "--since", f"{since:.3f}", "--until", f"{until:.3f}",
             "--deadline", f"{deadline:.3f}"],
            label=label, timeout=max(0.0, deadline - time.time()) + 180,
        )  # fmt: skip
        return list(parse_rows(found))

    def start_connections(self, host: str, to: str, at: float, label) -> Background:
        """On `host`, its established connections to `to`'s address at Unix time `at`."""
        address = self.inventory.hosts[to].address
        if not address:
            raise FaultError(f"{to} has no node_address")
        return self.executor.start_script(
            host, Path(connections.__file__), ["--address", address, "--at", f"{at:.3f}"],
            label=label, timeout=max(0.0, at - time.time()) + 180,
        )  # fmt: skip

    def upstreams(self, mark: int, label) -> dict[int, dict[str, list[int]]]:
        """{Unix second: {app host address: [requests, 2xx]}} from nginx's access log
        since line `mark` (nginx_log.py upstreams)."""
        found = self.executor.script_json(
            self.proxy, Path(nginx_log.__file__),
            ["upstreams", NGINX_ACCESS_LOG, "--after", mark], label=label,
        )  # fmt: skip
        return {int(second): hosts for second, hosts in found.items()}
