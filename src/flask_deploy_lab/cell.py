"""A measured cell and the run's environment, computed from the raw facts the
load-test playbook gathers.

playbooks/loadtest.yml starts, waits, stops and fetches; at the end it writes
what it saw into ``<cell>/facts.json`` and runs

    python -m flask_deploy_lab.cell reports/<run-id>/<cell-id>

which writes ``cell.json`` beside it and ``environment.json`` in the run's
directory (merged with what earlier cells of the run wrote). The report
(flask_deploy_lab.report) reads both; their keys are documented there.

A CPU-bound cell also has ``<cell>/inprocess.json``, what a request cost the
app called in-process on each app host (labapp.cost, run by the playbook just
before the cell's measured run)::

    {"endpoint": "/db", "requests": 2000, "warmup": 200,
     "hosts": {"<app host>": {"requests": 2000, "cpu_s_per_request": float,
                              "wall_s_per_request": float}}}

from which cell.json's ``inprocess_cpu_s_per_request`` comes: the cost per
request of the app hosts as one, ``app_cpus / sum(cpus_h / cost_h)`` over the
app hosts h (each host's CPUs serve cpus_h / cost_h requests a second, so the
hosts together serve app_cpus / that; the cost itself where every host has
the same). null when a host has no figure.

facts.json::

    {"params": {"endpoint", "users", "spawn_rate", "duration", "warmup", "delay_s",
                "queries", "run_id", "started", "target", "substrate"},
     "locust": {"workers": int, "workers_lost": [str]},
     "controller": {"ansible_core": str},
     "hosts": {"<host>": {"groups": [str], "node_cpus", "node_memory_mb",
                          "labapp": the app host's deployment fact or null,
                          "virtualization_role", "virtualization_type",
                          "python_version", "kernel",
                          "probes": ["name==version", ...]}}}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask_deploy_lab import PROJECT_DIR, catalogue

STACK_GROUPS = ("db", "upstream", "app", "proxy", "loadgen")
CONTAINER_TYPES = {"container", "podman", "docker", "lxc", "systemd-nspawn", "containerd"}
# pip's own tools say nothing about the stack
IGNORED_PACKAGES = {"pip", "setuptools", "wheel"}


INPROCESS = "inprocess.json"


class FactsError(ValueError):
    """facts.json (or inprocess.json) lacks what a cell needs."""


@dataclass(frozen=True)
class AppDeployment:
    """One app host's deployment fact (roles/flask_app/templates/labapp.fact.j2)."""

    server: str
    unit: str
    db_mode: str
    processes: int
    slots: int | None
    db_pool_max: int
    cpus: float
    cpu_quota: str
    memory_max: str
    port: int
    # the sizing's expected concurrency (flask_app_concurrency); None in older facts
    concurrency: int | None = None

    @classmethod
    def from_fact(cls, host: str, fact: dict | None) -> AppDeployment:
        if not fact or "unit" not in fact:
            raise FactsError(
                f"app host {host} has no deployment fact (/etc/ansible/facts.d/labapp.fact): "
                "converge it first with ansible-playbook playbooks/site.yml"
            )
        return cls(**{k: fact.get(k) for k in cls.__dataclass_fields__})

    def cpu_share(self, limits_enforced: bool) -> float:
        """CPUs the app may use: the node's, or less under an enforced CPUQuota."""
        quota = float(str(self.cpu_quota).rstrip("%") or 0) / 100
        if limits_enforced and quota > 0:
            return min(float(self.cpus), quota)
        return float(self.cpus)


@dataclass(frozen=True)
class Limits:
    unit_cpu_quota: str
    unit_memory_max: str
    unit_limits_enforced: bool
    cgroup_version: int
    in_container: bool


@dataclass
class Cell:
    """cell.json."""

    server: str
    endpoint: str
    users: int
    # users started per second; None for a web UI run (the UI set it)
    spawn_rate: float | None
    duration_s: int
    warmup_s: int
    delay_s: float | None
    queries: int | None
    server_slots: int | None
    pool_size: int | None
    db_mode: str
    app_cpus: float
    app_hosts: list[str]
    db_hosts: list[str]
    loadgen_hosts: list[str]
    workers: int
    workers_lost: list[str] = field(default_factory=list)
    # CPU seconds a request costs the app called in-process (inprocess.json)
    inprocess_cpu_s_per_request: float | None = None


@dataclass
class Environment:
    """environment.json: what held for the whole run."""

    run_id: str
    started: str
    finished: str
    git_commit: str | None
    git_dirty: bool
    substrate: str
    target: str
    versions: dict[str, str]
    limits: Limits
    hosts: list[dict]
    failed_cells: str | None = None


def _versions(hosts: dict) -> dict[str, str]:
    found = {}
    for facts in hosts.values():
        for line in facts.get("probes") or []:
            name, sep, version = line.partition("==")
            if sep and version and name.lower() not in IGNORED_PACKAGES:
                found[name.lower()] = version.strip()
    return found


def _cgroup_version(versions: dict[str, str]) -> int | None:
    fs = versions.get("cgroup-fs")
    return None if fs is None else (2 if fs == "cgroup2fs" else 1)


def _git():
    def git(*args):
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else None

    return git("rev-parse", "--short", "HEAD"), bool(git("status", "--porcelain"))


def inprocess_cost(
    inprocess: dict | None, cpus: dict[str, float], path: str | None = None
) -> float | None:
    """CPU seconds per request of the app hosts as one, from inprocess.json:
    sum(cpus) / sum(cpus_h / cost_h) -- the cost at which their CPUs together
    serve what each host's serve at its own. None without the file or when an
    app host has no figure; FactsError when the file breaks its layout or
    measured another endpoint than `path`."""
    if inprocess is None:
        return None
    hosts = inprocess.get("hosts") if isinstance(inprocess, dict) else None
    if not isinstance(hosts, dict):
        raise FactsError(f"{INPROCESS} has no hosts object")
    endpoint = str(inprocess.get("endpoint") or "")
    if path is not None and endpoint.partition("?")[0] != path:
        raise FactsError(f"{INPROCESS} measured {endpoint or 'no endpoint'}, not the cell's {path}")
    served = 0.0
    for host, share in cpus.items():
        figure = hosts.get(host)
        if figure is None:
            return None
        cost = figure.get("cpu_s_per_request") if isinstance(figure, dict) else None
        if isinstance(cost, bool) or not isinstance(cost, int | float) or cost <= 0:
            raise FactsError(
                f"{INPROCESS}: host {host} has no cpu_s_per_request > 0 (got {cost!r})"
            )
        served += share / cost
    total = sum(cpus.values())
    return total / served if served and total else None


def compute(
    facts: dict,
    before: dict | None = None,
    now: datetime | None = None,
    inprocess: dict | None = None,
):
    """(Cell, Environment) from facts.json (and the cell's inprocess.json, if it
    has one), keeping what an earlier cell of the run recorded (its start,
    versions, and the bench's failed cells)."""
    before = before or {}
    try:
        params, hosts = facts["params"], facts["hosts"]
    except KeyError as missing:
        raise FactsError(f"facts.json has no {missing}") from None
    in_group = {
        g: sorted(h for h, f in hosts.items() if g in f.get("groups", [])) for g in STACK_GROUPS
    }
    if not in_group["app"]:
        raise FactsError("facts.json has no app host")
    apps = [AppDeployment.from_fact(h, hosts[h].get("labapp")) for h in in_group["app"]]
    app_host = hosts[in_group["app"][0]]

    versions = _versions(hosts)
    cgroup_version = _cgroup_version(versions) or before.get("limits", {}).get("cgroup_version", 1)
    versions.pop("cgroup-fs", None)
    in_container = app_host.get("virtualization_role") == "guest" and (
        app_host.get("virtualization_type") in CONTAINER_TYPES
    )
    # unit limits bite on cgroup v2, and on v1 outside a container; inside a
    # container on a v1 host systemd writes them but the container's apply
    limits_enforced = cgroup_version == 2 or not in_container

    endpoint = catalogue.load().endpoint(params["endpoint"])
    db_modes = sorted({a.db_mode for a in apps})
    slots = [a.slots for a in apps]
    cpus = {h: a.cpu_share(limits_enforced) for h, a in zip(in_group["app"], apps, strict=True)}
    cell = Cell(
        server="+".join(sorted({a.server for a in apps})),
        endpoint=endpoint.name,
        users=int(params["users"]),
        spawn_rate=float(params["spawn_rate"]) if params.get("spawn_rate") is not None else None,
        duration_s=int(params["duration"]),
        warmup_s=int(params["warmup"]),
        delay_s=float(params["delay_s"]) if endpoint.delay_bound else None,
        queries=int(params["queries"]) if "n" in endpoint.params else None,
        # requests the app hosts hold at once; None if any server has no bound
        server_slots=None if None in slots else sum(slots),
        pool_size=sum(a.processes * a.db_pool_max for a in apps) if db_modes == ["pool"] else None,
        db_mode="+".join(db_modes),
        app_cpus=round(sum(cpus.values()), 6),
        app_hosts=in_group["app"],
        db_hosts=in_group["db"],
        loadgen_hosts=in_group["loadgen"],
        workers=int(facts.get("locust", {}).get("workers") or 0),
        workers_lost=list(facts.get("locust", {}).get("workers_lost") or []),
        inprocess_cpu_s_per_request=inprocess_cost(inprocess, cpus, endpoint.path),
    )
    commit, dirty = _git()
    stack_versions = {
        "python": app_host.get("python_version"),
        "ansible-core": facts.get("controller", {}).get("ansible_core"),
        "kernel": app_host.get("kernel"),
        **versions,
    }
    environment = Environment(
        run_id=params["run_id"],
        started=before.get("started") or params.get("started") or "",
        finished=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        git_commit=commit,
        git_dirty=dirty,
        substrate=params.get("substrate", ""),
        target=params.get("target", ""),
        versions={k: v for k, v in stack_versions.items() if v}
        if versions
        else before.get("versions", {}),
        limits=Limits(
            unit_cpu_quota=", ".join(sorted({a.cpu_quota for a in apps})),
            unit_memory_max=", ".join(sorted({a.memory_max for a in apps})),
            unit_limits_enforced=limits_enforced,
            cgroup_version=cgroup_version,
            in_container=in_container,
        ),
        hosts=[
            {
                "name": name,
                "groups": [g for g in STACK_GROUPS if g in f.get("groups", [])],
                "node_cpus": f.get("node_cpus"),
                "node_memory_mb": f.get("node_memory_mb"),
            }
            for name, f in hosts.items()
        ],
        failed_cells=before.get("failed_cells"),
    )
    return cell, environment


def write(cell_dir: Path) -> Cell:
    """Reads <cell_dir>/facts.json (and inprocess.json, if there); writes cell.json
    and the run's environment.json."""
    facts = json.loads((cell_dir / "facts.json").read_text())
    env_path = cell_dir.parent / "environment.json"
    before = json.loads(env_path.read_text()) if env_path.is_file() else {}
    inprocess_path = cell_dir / INPROCESS
    inprocess = json.loads(inprocess_path.read_text()) if inprocess_path.is_file() else None
    cell, environment = compute(facts, before, inprocess=inprocess)
    (cell_dir / "cell.json").write_text(json.dumps(asdict(cell), indent=4) + "\n")
    data = {k: v for k, v in asdict(environment).items() if v is not None or k == "git_commit"}
    env_path.write_text(json.dumps(data, indent=4) + "\n")
    return cell


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flask_deploy_lab.cell",
        description="Write cell.json and environment.json from each cell's facts.json.",
    )
    parser.add_argument("cell_dirs", type=Path, nargs="+", metavar="cell_dir")
    args = parser.parse_args(argv)
    for cell_dir in args.cell_dirs:
        try:
            cell = write(cell_dir)
        except (OSError, json.JSONDecodeError, FactsError, catalogue.CatalogueError) as error:
            print(f"cell: {cell_dir.name}: {error}", file=sys.stderr)
            return 2
        print(f"{cell_dir.name}: {cell.server} on /{cell.endpoint}, {cell.users} users")
    return 0


if __name__ == "__main__":
    sys.exit(main())
