"""The catalogue of servers and endpoints (catalogue.yml), as typed data.

Everything on the controller that needs a server or endpoint name, a server's
slots or an endpoint's parameters asks this module; nothing else keeps a list.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flask_deploy_lab import PROJECT_DIR

CATALOGUE_FILE = PROJECT_DIR / "catalogue.yml"

CONCURRENCY = ("serial", "threads", "green")
PROCESSES = ("one", "workers")
PER_PROCESS = ("one", "threads", "greenlets", "unbounded")
BOUND = ("cpu", "db", "io", "none")
PLACEHOLDERS = (
    "venv", "host", "port", "bind", "config_dir", "workers", "threads", "greenlets", "app",
    "graceful_timeout", "backlog", "run_dir",
)  # fmt: skip


class CatalogueError(ValueError):
    """catalogue.yml says something this module cannot use."""


@dataclass(frozen=True)
class Server:
    name: str
    description: str
    family: str
    concurrency: str
    processes: str
    per_process: str
    keepalive: bool
    app: str
    command: str
    reload: str | None = None
    config: str | None = None
    worker: str | None = None
    bench: bool = False

    def __post_init__(self):
        for attr, allowed in (
            ("concurrency", CONCURRENCY),
            ("processes", PROCESSES),
            ("per_process", PER_PROCESS),
        ):
            if getattr(self, attr) not in allowed:
                raise CatalogueError(
                    f"server {self.name}: {attr}={getattr(self, attr)!r}; valid: "
                    + ", ".join(allowed)
                )
        if not isinstance(self.keepalive, bool):
            raise CatalogueError(
                f"server {self.name}: keepalive={self.keepalive!r}; valid: true, false"
            )
        for attr in ("command", "reload"):
            unknown = placeholders(getattr(self, attr) or "") - set(PLACEHOLDERS)
            if unknown:
                raise CatalogueError(
                    f"server {self.name}: {attr} has unknown placeholders "
                    + ", ".join(sorted(unknown))
                    + "; valid: "
                    + ", ".join(PLACEHOLDERS)
                )
        # systemd runs ExecReload's program by its absolute path ({venv} is one)
        absolute = {name: "/" for name in PLACEHOLDERS}
        if self.reload is not None and not str(self.reload).format(**absolute).startswith("/"):
            raise CatalogueError(
                f"server {self.name}: reload={self.reload!r} is not a command with an absolute "
                "path (systemd's ExecReload), nor null"
            )

    def process_count(self, workers: int) -> int:
        return workers if self.processes == "workers" else 1

    def slots(self, workers: int, threads: int, greenlets: int) -> int | None:
        """Requests it holds at once with this sizing; None when unbounded."""
        per_process = {"one": 1, "threads": threads, "greenlets": greenlets}.get(self.per_process)
        if per_process is None:
            return None
        return self.process_count(workers) * per_process

    def command_line(self, **values) -> str:
        """ExecStart with the placeholders filled in; every one must be given."""
        return " ".join(self.command.format(**values).split())

    def reload_line(self, **values) -> str | None:
        """ExecReload with the placeholders filled in; None: no graceful reload."""
        return None if self.reload is None else " ".join(self.reload.format(**values).split())


def placeholders(template: str) -> set[str]:
    """The {names} a command template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool = False
    default: float | int | None = None
    min: float | int | None = None
    max: float | int | None = None
    clamp: bool = False


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    method: str
    bound: str
    description: str
    holds_db_connection: bool = False
    params: dict[str, Param] = field(default_factory=dict)
    delay_param: str | None = None
    bench: bool = False

    def __post_init__(self):
        if self.bound not in BOUND:
            raise CatalogueError(
                f"endpoint {self.name}: bound={self.bound!r}; valid: {', '.join(BOUND)}"
            )
        if self.delay_param and self.delay_param not in self.params:
            raise CatalogueError(
                f"endpoint {self.name}: delay_param {self.delay_param} is not one of its params"
            )

    @property
    def delay_bound(self) -> bool:
        """Its time is a wait the request asks for: Little's law gives its ceiling."""
        return self.delay_param is not None


@dataclass(frozen=True)
class Catalogue:
    servers: dict[str, Server]
    endpoints: dict[str, Endpoint]

    def server(self, name: str) -> Server:
        try:
            return self.servers[name]
        except KeyError:
            raise CatalogueError(
                f"server {name!r} is not known; valid: {', '.join(self.servers)}"
            ) from None

    def endpoint(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name.lstrip("/")]
        except KeyError:
            raise CatalogueError(
                f"endpoint {name!r} is not known; valid: {', '.join(self.endpoints)}"
            ) from None

    def bench_servers(self) -> list[str]:
        return [name for name, server in self.servers.items() if server.bench]

    def bench_endpoints(self) -> list[str]:
        return [name for name, endpoint in self.endpoints.items() if endpoint.bench]

    @classmethod
    def from_data(cls, data: dict) -> Catalogue:
        try:
            body = data["catalogue"]
            servers = {n: Server(name=n, **s) for n, s in body["servers"].items()}
            endpoints = {
                n: Endpoint(
                    name=n,
                    **{k: v for k, v in e.items() if k != "params"},
                    params={p: Param(name=p, **spec) for p, spec in e["params"].items()},
                )
                for n, e in body["endpoints"].items()
            }
        except (KeyError, TypeError) as error:
            raise CatalogueError(f"catalogue.yml is not in the expected shape: {error}") from error
        return cls(servers=servers, endpoints=endpoints)


@functools.cache
def load(path: Path = CATALOGUE_FILE) -> Catalogue:
    with open(path) as handle:
        return Catalogue.from_data(yaml.safe_load(handle))
