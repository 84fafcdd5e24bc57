"""Helpers shared by the app tests: the PostgreSQL cluster, HTTP, server processes."""

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import psycopg2
import pytest
import redis

APP_DIR = Path(__file__).resolve().parents[2] / "app"

TEST_DATABASE = "labapp_test"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_pg_bindir():
    """The directory with initdb and pg_ctl, or None; PG_BINDIR, when set, is the only choice."""
    if os.environ.get("PG_BINDIR"):
        candidates = [Path(os.environ["PG_BINDIR"])]
    else:
        candidates = []
        pg_config = shutil.which("pg_config")
        if pg_config:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            candidates.append(Path(out.stdout.strip()))
        # Debian's layout, newest major version first.
        installed = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(installed, key=lambda p: _major_version(p.parent.name), reverse=True)
        if shutil.which("initdb"):
            candidates.append(Path(shutil.which("initdb")).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _major_version(name):
    return int(re.sub(r"\D", "", name) or 0)


class PostgresCluster:
    """A PostgreSQL server in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self, bindir):
        self.bindir = bindir
        self._user = {}
        account = None
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to own the cluster")
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="labapp-pg-"))
        if account:
            os.chown(self.base, account.pw_uid, account.pw_gid)
        self.datadir = self.base / "data"
        self.logfile = self.base / "server.log"

    def _pg(self, program, *args, timeout=60):
        result = subprocess.run(
            [str(self.bindir / program), *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **self._user,
        )
        if result.returncode:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(f"{program} failed:\n{result.stdout}{result.stderr}\n{log}")
        return result

    def init(self):
        self._pg(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self):
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c max_connections=300"
        )
        self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options,
                 "-w", "-t", "30", "start")  # fmt: skip

    def stop(self):
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "30", "stop")

    def is_running(self):
        status = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"],
            capture_output=True,
            timeout=10,
            check=False,
            **self._user,
        )
        return status.returncode == 0

    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name):
        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def remove(self):
        try:
            if self.datadir.exists() and self.is_running():
                self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def connect(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def client_backends(url):
    """Client connections to the database of ``url``, not counting the one asking."""
    with connect(url) as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return cur.fetchone()[0]


# Straight to 127.0.0.1, whatever *_proxy variables the environment has.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url, timeout=10.0, method="GET", data=None, headers=None):
    """(status, headers, body) of one request, error statuses included."""
    # Only ever http://127.0.0.1 URLs built by the tests.
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def http_json(url, **kwargs):
    status, headers, body = http_get(url, **kwargs)
    return status, headers, json.loads(body)


class ServerProcess:
    """A server subprocess on 127.0.0.1, started in its own session and always stopped."""

    # Every process not yet stopped, so that the session can stop what a test left behind.
    running: ClassVar[set] = set()

    def __init__(self, argv, port, env=None):
        self.argv = [str(arg) for arg in argv]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env or {}
        self.proc = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by __exit__

    def start(self, timeout=20.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABAPP_")}
        env |= {"PYTHONPATH": str(APP_DIR), "PYTHONUNBUFFERED": "1"} | self.env
        self.proc = subprocess.Popen(
            self.argv,
            cwd=APP_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ServerProcess.running.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv} exited early:\n{self.output()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.argv} not ready after {timeout}s:\n{self.output()}")

    def ready(self):
        with contextlib.suppress(OSError):
            return http_get(f"{self.url}/healthz", timeout=1)[0] == 200
        return False

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL to the whole process group if it does not go."""
        if self.proc is None:
            return None
        ServerProcess.running.discard(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout)
        return self.proc.returncode

    def output(self):
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.stop()
        self._log.close()


def app_env(database_url, upstream_url, **settings):
    """Environment for an app server subprocess: the LABAPP_* variables the roles set."""
    env = {"LABAPP_DATABASE_URL": database_url, "LABAPP_UPSTREAM_URL": upstream_url}
    env |= {f"LABAPP_{key.upper()}": str(value) for key, value in settings.items()}
    return env


class CeleryWorker(ServerProcess):
    """``celery --app labapp.worker worker`` (the command the roles run), ready when it says so."""

    def __init__(self, env, concurrency=2, name="worker", fast=True):
        argv = [
            sys.executable, "-m", "celery", "--app", "labapp.worker", "worker",
            "--concurrency", concurrency, "--loglevel", "INFO", "--hostname", f"{name}@%h",
        ]  # fmt: skip
        if fast:
            # the optional flags of labapp/worker.py's docstring: a second less to start
            argv += ["--without-mingle", "--without-gossip"]
        super().__init__(argv, port=None, env=env)

    def ready(self):
        return " ready." in self.output()

    def pool_pids(self):
        return children(self.proc.pid)

    def pss_kib(self):
        """Memory of the main process and its pool processes (KiB): the sum of their
        proportional set sizes, so the pages they share since the fork count once."""
        return sum(pss_kib(pid) for pid in [self.proc.pid, *self.pool_pids()])


def children(pid):
    """Process ids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # the command name (2nd field) may contain spaces: split after its ")"
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def pss_kib(pid):
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def find_redis_server():
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")


class RedisServer:
    """A password-protected Redis on 127.0.0.1 with an append-only file in a temporary directory.

    ``kill()`` then ``start()`` is a crash and a restart on the same port and
    data: what the AOF kept comes back.
    """

    def __init__(self, binary):
        self.binary = binary
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.base = Path(tempfile.mkdtemp(prefix="labapp-redis-"))
        self.config = self.base / "redis.conf"
        # No RDB snapshots: whatever survives a restart survives through the AOF.
        self.config.write_text(
            f"bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\n"
            f'dir {self.base}\nappendonly yes\nappendfsync everysec\nsave ""\n'
            f"daemonize no\nlogfile {self.base / 'redis.log'}\n"
        )
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(
            [self.binary, str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()}")
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server not ready after {timeout}s:\n{self.log()}")

    def client(self):
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password,
            socket_timeout=5, socket_connect_timeout=2,
        )  # fmt: skip

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None

    def log(self):
        path = self.base / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self):
        try:
            self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
