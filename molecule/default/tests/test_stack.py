"""Behaviour of the converged stack, through nginx and on each host."""

import json
import re
import time

import pytest
from conftest import fact

from flask_deploy_lab import catalogue

WORKER_UNIT = "labapp-celery.service"


def runs_catalogue_command(server, cmdline):
    """Whether a process's cmdline is the catalogue's command line of `server`:
    its program (a script is run by the venv's python) and every literal word,
    whatever the sizing placeholders became."""
    program, *args = catalogue.load().server(server).command.split()
    words = cmdline.split()
    name = program.rsplit("/", 1)[-1]
    return any(w == name or w.endswith("/" + name) for w in words) and all(
        a in words for a in args if "{" not in a
    )


def node_address(host):
    """The site's node_address: Ansible's default_ipv4, the source of the default route."""
    route = host.check_output("ip -4 -o route get 8.8.8.8").split()
    return route[route.index("src") + 1]


def psql(host, sql):
    return host.check_output("runuser -u postgres -- psql -d labapp -Atc %s", sql)


@pytest.mark.parametrize(
    ("path", "status", "check"),
    [
        ("/healthz", 200, lambda b: json.loads(b) == {"status": "ok"}),
        ("/json", 200, lambda b: json.loads(b) == {"message": "Hello, World!"}),
        ("/db", 200, lambda b: 1 <= json.loads(b)["id"] <= 10000),
        ("/queries?n=3", 200, lambda b: len(json.loads(b)) == 3),
        ("/queries?n=0", 200, lambda b: len(json.loads(b)) == 1),
        ("/queries?n=900", 200, lambda b: len(json.loads(b)) == 500),
        (
            "/fortunes",
            200,
            lambda b: "Additional fortune added at request time." in b and "&lt;script&gt;" in b,
        ),
        ("/render", 200, lambda b: "<h1" in b or "<p>" in b),
        ("/slow?delay=0.2", 200, lambda b: json.loads(b)["delay"] == 0.2),
        ("/sleep?delay=0.1", 200, lambda b: "0.1" in b),
        ("/queries?n=abc", 400, lambda b: json.loads(b)["parameter"] == "n"),
        ("/slow?delay=-1", 400, lambda b: json.loads(b)["parameter"] == "delay"),
        ("/sleep?delay=x", 400, lambda b: json.loads(b)["parameter"] == "delay"),
        ("/nowhere", 404, lambda b: json.loads(b)["status"] == 404),
    ],
)
def test_endpoint_through_nginx(http, path, status, check):
    got, headers, body = http(path)
    assert got == status, body
    assert check(body), body
    assert "Server" not in headers or headers["Server"] == "nginx"  # server_tokens off


def test_background_task_lifecycle(http):
    # queued on the broker, run by a Celery worker (test_tasks.py has the rest)
    status, headers, _ = http("/tasks", method="POST", json_body={"kind": "render"})
    assert status == 202
    location = headers["Location"]
    assert re.search(r"/tasks/\w+", location)
    path = "/" + location.split("/", 3)[-1] if location.startswith("http") else location
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, _, body = http(path)
        if status == 200:
            break
        assert status == 202
        time.sleep(0.3)
    assert status == 200, body


def test_every_app_host_runs_the_same_deployment(group, deployment):
    assert [fact(app) for app in group("app")] == [deployment] * len(group("app"))


def test_only_the_chosen_server_runs(group, deployment):
    for app in group("app"):
        units = app.check_output(
            "systemctl list-units --all --plain --no-legend 'labapp-*.service'"
        ).splitlines()
        # the Celery worker's unit (test_tasks.py) is no app server
        active = [
            u.split()[0] for u in units if " active " in f" {u} " and u.split()[0] != WORKER_UNIT
        ]
        assert active == [deployment["unit"]], app
        main_pid = app.check_output("systemctl show -p MainPID --value %s", deployment["unit"])
        cmdline = app.file(f"/proc/{main_pid}/cmdline").content_string.replace("\0", " ")
        assert runs_catalogue_command(deployment["server"], cmdline), cmdline


def test_app_does_not_run_as_root(group, deployment):
    for app in group("app"):
        main_pid = app.check_output("systemctl show -p MainPID --value %s", deployment["unit"])
        users = app.check_output("ps -o user= --ppid %s -p %s", main_pid, main_pid).split()
        assert users and set(users) == {"labapp"}, app


def test_unit_limits_are_configured(group, deployment):
    quota_percent = int(deployment["cpu_quota"].rstrip("%"))
    memory = int(deployment["memory_max"].rstrip("M")) * 1024 * 1024
    for app in group("app"):
        props = app.check_output(
            "systemctl show -p CPUQuotaPerSecUSec -p MemoryMax %s", deployment["unit"]
        )
        assert f"CPUQuotaPerSecUSec={quota_percent / 100:g}s" in props, app
        assert f"MemoryMax={memory}" in props, app


def test_nginx_sends_to_every_app_host(group):
    """The upstream block lists each app host's node address, and no other."""
    conf = group("proxy")[0].check_output("nginx -T 2>/dev/null")
    block = re.search(r"upstream\s+\w+\s*\{(.*?)\}", conf, re.S).group(1)
    servers = re.findall(r"^\s*server\s+([\d.]+):\d+", block, re.M)
    assert sorted(servers) == sorted(node_address(app) for app in group("app")), block


def test_psycopg2_is_built_from_source_against_the_hosts_libpq(group):
    app = group("app")[0]
    python = "/opt/labapp/venv/bin/python"
    libpq = app.check_output("%s -c 'import psycopg2; print(psycopg2.__libpq_version__)'", python)
    host_libpq = app.check_output("dpkg-query -W -f '${Version}' libpq5")
    major, minor = re.match(r"(\d+)\.(\d+)", host_libpq).groups()
    assert int(libpq) == int(major) * 10000 + int(minor)
    packages = app.check_output("%s -m pip list --format freeze", python).lower()
    assert "psycopg2-binary" not in packages
    so = app.check_output("%s -c 'import psycopg2._psycopg as m; print(m.__file__)'", python)
    # a wheel would bring its own libpq beside it; the source build links the host's
    linked = app.check_output("ldd %s | grep libpq", so)
    assert re.search(r"=> /(usr/)?lib/\S+/libpq\.so\.5 ", linked), linked


def test_world_has_ten_thousand_rows(group):
    assert psql(group("db")[0], "SELECT count(*) FROM world") == "10000"


def test_postgresql_uses_scram_and_no_trust(group):
    db = group("db")[0]
    assert psql(db, "SHOW password_encryption") == "scram-sha-256"
    rules = psql(db, "SELECT auth_method FROM pg_hba_file_rules").split()
    assert "trust" not in rules


def test_nginx_configuration_is_valid(group):
    proxy = group("proxy")[0]
    assert proxy.run("nginx -t").rc == 0
    assert proxy.file("/etc/nginx/sites-enabled/default").exists is False


def test_nginx_status_is_on_loopback_only(group):
    proxy = group("proxy")[0]
    listening = proxy.check_output("ss -Hltn")
    assert "127.0.0.1:8080" in listening
    assert "0.0.0.0:8080" not in listening


@pytest.mark.parametrize(("group_name", "port"), [("app", 8000), ("upstream", 8081)])
def test_app_and_slow_api_listen_on_the_node_address_only(group, group_name, port):
    # nginx reaches the app, and the app the slow API, by the node address: no
    # other interface (Vagrant's NAT, a public one) may bypass nginx.
    for host in group(group_name):
        address = node_address(host)
        listening = {line.split()[3] for line in host.check_output("ss -Hltn").splitlines()}
        ours = {a for a in listening if a.rsplit(":", 1)[1] == str(port)}
        assert ours == {f"{address}:{port}"}, listening


def test_slow_api_runs_unprivileged(group):
    upstream = group("upstream")[0]
    assert upstream.service("slow-api").is_running
    pid = upstream.check_output("systemctl show -p MainPID --value slow-api")
    assert upstream.check_output("ps -o user= -p %s", pid).strip() == "labapp"
