"""The background tasks: Redis as the broker on the broker hosts (a password,
loopback and the node address only, append-only, no eviction) and the Celery
worker on the worker hosts (a limited, sandboxed unit that systemd brings back
after a kill -9), end to end through nginx."""

import json
import re
import time

import pytest
from conftest import group_members

from tests.systemd_units import main_process, show

WORKER_UNIT = "labapp-celery.service"
REDIS_PORT = 6379

# Redis spoken from a host with a socket (the app hosts have no redis-cli):
# the broker URL of the app's environment file, its commands given in turn as
# arguments, AUTH first unless "--no-auth". Prints each reply's first line.
RESP = """
import json, socket, sys
from urllib.parse import urlsplit
with open("/etc/labapp/labapp.env") as env:
    url = next(l.split("=", 1)[1].strip() for l in env if l.startswith("LABAPP_BROKER_URL="))
url = urlsplit(url)
commands = sys.argv[1:]
if commands and commands[0] == "--no-auth":
    commands = commands[1:]
else:
    commands = ["AUTH " + url.password] + commands
replies = []
with socket.create_connection((url.hostname, url.port), timeout=10) as s:
    stream = s.makefile("rb")
    for command in commands:
        words = command.split()
        s.sendall(b"*%d\\r\\n" % len(words) + b"".join(
            b"$%d\\r\\n%s\\r\\n" % (len(w), w.encode()) for w in words))
        line = stream.readline().decode().rstrip()
        if line.startswith("$") and int(line[1:]) >= 0:
            line = stream.read(int(line[1:]) + 2).decode().rstrip()
        replies.append(line)
print(json.dumps(replies))
"""


def redis(host, *commands):
    """Redis's replies to the commands, sent from `host` with the app's broker URL."""
    return json.loads(host.check_output("python3 -c %s" + " %s" * len(commands), RESP, *commands))


def node_address(host):
    # node_address is Ansible's default_ipv4: the source of the default route
    route = host.check_output("ip -4 -o route get 8.8.8.8").split()
    return route[route.index("src") + 1]


def post_task(http, body):
    status, headers, reply = http("/tasks", method="POST", json_body=body)
    assert status == 202, reply
    location = headers["Location"]
    assert re.search(r"/tasks/[0-9a-f-]+$", location), location
    return "/" + location.split("/", 3)[-1] if location.startswith("http") else location


def wait_for(http, path, statuses, timeout):
    """The task's body once its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        code, _, body = http(path)
        assert code in (200, 202), body
        task = json.loads(body)
        if task["status"] in statuses or time.monotonic() > deadline:
            return task
        time.sleep(0.3)


# --- Redis --------------------------------------------------------------------


def test_redis_listens_on_loopback_and_the_node_address_only(group):
    for broker in group("broker"):
        listening = {line.split()[3] for line in broker.check_output("ss -Hltn").splitlines()}
        ours = {a for a in listening if a.rsplit(":", 1)[1] == str(REDIS_PORT)}
        expected = {f"127.0.0.1:{REDIS_PORT}", f"{node_address(broker)}:{REDIS_PORT}"}
        # IPv6 loopback where the host has it
        assert ours - {f"[::1]:{REDIS_PORT}"} == expected, listening


def test_redis_refuses_a_client_without_the_password(group):
    # from the app host, through the firewall, to the node address
    assert redis(group("app")[0], "--no-auth", "PING") == ["-NOAUTH Authentication required."]


def test_redis_answers_a_client_with_the_password(group):
    assert redis(group("app")[0], "PING") == ["+OK", "+PONG"]


def test_redis_keeps_queued_tasks(group):
    # append-only (queued tasks survive a restart), and a full memory refuses
    # writes instead of evicting tasks
    _, persistence, memory = redis(group("app")[0], "INFO persistence", "INFO memory")
    assert "aof_enabled:1" in persistence.split()
    fields = dict(line.split(":", 1) for line in memory.split() if ":" in line)
    assert fields["maxmemory_policy"] == "noeviction"
    assert int(fields["maxmemory"]) > 0


def test_redis_disables_the_commands_a_broker_client_never_needs(group):
    _, config, flush = redis(group("app")[0], "CONFIG GET maxmemory", "FLUSHALL")
    assert config.startswith("-ERR unknown command 'CONFIG'"), config
    assert flush.startswith("-ERR unknown command 'FLUSHALL'"), flush


def test_redis_configuration_is_readable_by_redis_alone(group):
    # it holds the password
    conf = group("broker")[0].file("/etc/redis/redis.conf")
    assert conf.mode & 0o007 == 0
    assert (conf.user, conf.group) == ("redis", "redis")


def test_redis_unit_is_limited(group):
    props = show(group("broker")[0], "redis-server.service", "CPUQuotaPerSecUSec", "MemoryMax")
    assert props["CPUQuotaPerSecUSec"] != "infinity", props
    assert props["MemoryMax"] != "infinity", props


# --- the worker ---------------------------------------------------------------


def test_worker_unit_runs_with_its_limits(group):
    for worker in group("worker"):
        unit = worker.service(WORKER_UNIT)
        assert unit.is_running and unit.is_enabled
        props = show(
            worker,
            WORKER_UNIT,
            "CPUQuotaPerSecUSec",
            "MemoryMax",
            "TasksMax",
            "Restart",
            "KillMode",
            "TimeoutStopUSec",
        )
        assert re.fullmatch(r"[\d.]+m?s", props["CPUQuotaPerSecUSec"]), props
        assert props["MemoryMax"].isdigit(), props
        assert props["TasksMax"].isdigit(), props
        assert props["Restart"] == "always"
        # SIGTERM to the main process alone: Celery's warm shutdown
        assert props["KillMode"] == "mixed"
        env = dict(
            line.split("=", 1)
            for line in worker.file("/etc/labapp/celery.env").content_string.splitlines()
            if "=" in line and not line.startswith("#")
        )
        stop = re.fullmatch(r"(?:(\d+)min ?)?(?:(\d+)s)?", props["TimeoutStopUSec"])
        assert stop, props
        stop_seconds = int(stop.group(1) or 0) * 60 + int(stop.group(2) or 0)
        assert stop_seconds > int(env["LABAPP_TASK_TIME_LIMIT"])
        assert int(env["LABAPP_TASK_VISIBILITY_TIMEOUT"]) > int(env["LABAPP_TASK_TIME_LIMIT"])
        assert "sslmode=verify-full" in env["LABAPP_DATABASE_URL"]


def test_worker_runs_the_apps_code_unprivileged(group):
    for worker in group("worker"):
        pid, _ = main_process(worker, WORKER_UNIT)
        cmdline = worker.file(f"/proc/{pid}/cmdline").content_string.split("\0")
        assert cmdline[1:5] == ["/opt/labapp/venv/bin/celery", "--app", "labapp.worker", "worker"]
        users = worker.check_output("ps -o user= --ppid %s -p %s", pid, pid).split()
        # the main process and its pool processes
        assert len(users) >= 2 and set(users) == {"labapp"}, users


def test_a_task_runs_on_a_worker(http, inventory):
    path = post_task(http, {"kind": "render"})
    task = wait_for(http, path, ("done", "failed"), timeout=30)
    assert task["status"] == "done", task
    assert task["result"]["hostname"] in group_members(inventory, "worker"), task
    assert task["result"]["html_length"] > 0, task


def seconds(timespan):
    """systemd's time span ("45s", "1min 30s") in seconds."""
    units = {"min": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(min|ms|s)\b", timespan))


def test_a_killed_worker_comes_back_and_its_task_still_finishes(http, group):
    worker = group("worker")[0]
    env = worker.file("/etc/labapp/celery.env").content_string
    visibility = int(re.search(r"^LABAPP_TASK_VISIBILITY_TIMEOUT=(\d+)$", env, re.M).group(1))
    stop_timeout = seconds(show(worker, WORKER_UNIT, "TimeoutStopUSec")["TimeoutStopUSec"])
    started = time.monotonic()
    path = post_task(http, {"kind": "upstream", "delay": 3})
    task = wait_for(http, path, ("running", "done", "failed"), timeout=20)
    assert task["status"] == "running", task
    old_pid, _ = main_process(worker, WORKER_UNIT)
    worker.check_output("kill -9 %s", old_pid)
    # systemd starts it again (Restart=always, a second later). Where the
    # cgroup says nothing when it empties (the lab's containers on a cgroup v1
    # host) systemd waits out TimeoutStopSec after its SIGKILL first.
    deadline = time.monotonic() + stop_timeout + 15
    while time.monotonic() < deadline:
        pid = worker.check_output("systemctl show -p MainPID --value %s", WORKER_UNIT)
        if pid not in ("0", old_pid) and worker.service(WORKER_UNIT).is_running:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"{WORKER_UNIT} was not restarted after kill -9")
    restarted = time.monotonic() - started
    assert int(show(worker, WORKER_UNIT, "NRestarts")["NRestarts"]) >= 1
    # The task was never acknowledged: Redis hands it out again once the
    # visibility timeout is over (kombu looks every few seconds), here to the
    # restarted worker, which runs it to the end.
    task = wait_for(http, path, ("done", "failed"), timeout=visibility + 30)
    assert task["status"] == "done", task
    assert task["attempts"] == 2, task
    print(
        f"killed mid-task: restarted after {restarted:.0f} s, "
        f"done after {time.monotonic() - started:.0f} s: {task['result']}"
    )
