"""What the hosts refuse: PostgreSQL admits the app hosts only, over TLS only,
and the app verifies its certificate; the units are sandboxed, nginx says
little about itself."""

import json

import pytest

from tests.systemd_units import exposure

# A PostgreSQL StartupMessage (protocol 3.0, user and database "labapp"), sent
# from a host in TLS (the certificate unchecked: pg_hba is what is probed, the
# app's verification is tested below); the first byte of the answer says
# whether pg_hba let it in: "R" (an authentication request) or "E" (an error,
# e.g. no pg_hba.conf entry).
PROBE = """
import socket, ssl, struct, sys
params = b"user\\0labapp\\0database\\0labapp\\0\\0"
msg = struct.pack("!ii", 8 + len(params), 196608) + params
s = socket.create_connection((sys.argv[1], 5432), timeout=10)
# SSLRequest: "S", the server goes on in TLS
s.sendall(struct.pack("!ii", 8, 80877103))
if s.recv(1) != b"S":
    sys.exit("the server offers no TLS")
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
s = context.wrap_socket(s)
s.sendall(msg)
answer = s.recv(4096)
print(answer[:1].decode(), answer[5:].replace(b"\\0", b" ").decode(errors="replace"))
"""


def probe(host, db):
    return host.check_output("python3 -c %s %s", PROBE, db)


def test_postgresql_admits_the_app_host(inventory, group):
    db = sorted(inventory["db"]["hosts"])[0]
    assert probe(group("app")[0], db).startswith("R")


def test_postgresql_refuses_an_address_it_does_not_list(inventory, group):
    # pg_hba alone, behind the firewall: the db host connects to its own node
    # address, which is no app host's (the kernel sends it through loopback,
    # which the firewall lets in). Other hosts never get this far: the
    # firewall drops them (test_firewall.py). In TLS: the address is what is
    # refused, not the lack of encryption.
    db = sorted(inventory["db"]["hosts"])[0]
    answer = probe(group("db")[0], db)
    assert answer.startswith("E"), answer
    assert "no pg_hba.conf entry" in answer and "SSL encryption" in answer, answer


# The app's own connection, from an app host as the app's user: the database
# URL of its environment file, with libpq options given as key=value
# arguments on top ("{host}": the URL's host). Prints "connected <ssl>" or
# "refused <why>".
CONNECT = """
import sys
import psycopg2
from psycopg2.extensions import parse_dsn
with open("/etc/labapp/labapp.env") as env:
    url = next(l.split("=", 1)[1].strip() for l in env if l.startswith("LABAPP_DATABASE_URL="))
options = {k: v.format(**parse_dsn(url)) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
try:
    conn = psycopg2.connect(url, connect_timeout=10, **options)
except psycopg2.OperationalError as error:
    print("refused", " ".join(str(error).split()))
else:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        print("connected", cur.fetchone()[0])
    conn.close()
"""
APP_PYTHON = "/opt/labapp/venv/bin/python"


def connect_as_the_app(app, *options):
    return app.check_output(
        "runuser -u labapp -- %s -c %s" + " %s" * len(options), APP_PYTHON, CONNECT, *options
    )


def test_postgresql_refuses_the_app_host_without_tls(group):
    answer = connect_as_the_app(group("app")[0], "sslmode=disable")
    assert answer.startswith("refused"), answer
    assert "no pg_hba.conf entry" in answer and "no encryption" in answer, answer


def test_the_app_connects_over_tls_and_verifies_the_server(group):
    app = group("app")[0]
    # as configured: sslmode=verify-full, with the CA the role installed
    assert connect_as_the_app(app) == "connected True"
    # the name is checked: the same server, reached under a name its
    # certificate does not hold, is refused
    answer = connect_as_the_app(app, "host=elsewhere.invalid", "hostaddr={host}")
    assert answer.startswith("refused"), answer
    assert 'does not match host name "elsewhere.invalid"' in answer, answer


def test_the_apps_own_connections_are_encrypted(http, group, deployment):
    # the pool keeps its connections open between requests, to be seen
    assert deployment["db_mode"] == "pool", deployment
    for _ in range(5):
        status, _, body = http("/db")
        assert status == 200, body
    rows = group("db")[0].check_output(
        "runuser -u postgres -- psql -d labapp -XAtc %s",
        "SELECT coalesce(json_agg(ssl), '[]') FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
        "WHERE usename = 'labapp' AND backend_type = 'client backend'",
    )
    ssl = json.loads(rows)
    assert ssl and all(ssl), ssl


# systemd-analyze security of every unit the stack runs, printed (pytest -s)
# and held to what the sandboxes reach (Debian's own nginx and PostgreSQL
# units alone score 9.6).
UNIT_BOUNDS = [
    ("upstream", "slow-api.service", 1.7),
    ("worker", "labapp-celery.service", 1.7),
    # Debian's own unit, which comes sandboxed
    ("broker", "redis-server.service", 1.5),
    ("loadgen", "locust-master.service", 1.7),
    ("loadgen", "locust-worker@1.service", 1.7),
    ("db", "postgresql@15-main.service", 2.5),
    ("proxy", "nginx.service", 3.5),
]


def test_app_unit_exposure_stays_at_its_sandbox(group, deployment):
    score = exposure(group("app")[0], deployment["unit"])
    print(f"{deployment['unit']}: exposure {score}")
    assert score <= 1.7


@pytest.mark.parametrize(("group_name", "unit", "bound"), UNIT_BOUNDS)
def test_every_unit_of_the_stack_is_sandboxed(group, group_name, unit, bound):
    score = exposure(group(group_name)[0], unit)
    print(f"{unit} on the {group_name} host: exposure {score}")
    assert score <= bound


@pytest.mark.parametrize(
    ("group_name", "path"),
    [("app", "/etc/labapp/labapp.env"), ("worker", "/etc/labapp/celery.env")],
)
def test_environment_file_is_not_world_readable(group, group_name, path):
    env = group(group_name)[0].file(path)
    assert env.mode & 0o007 == 0
    assert env.user == "root"
    assert env.group == "labapp"


def test_nginx_hides_its_version_and_sends_api_headers(http):
    _, headers, _ = http("/json")
    assert headers.get("Server") == "nginx"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("X-Frame-Options") == "DENY"


def test_nginx_refuses_oversized_bodies(http):
    # 2 MB against client_max_body_size 1m: nginx answers, the app never sees it
    status, _, _ = http("/tasks", method="POST", body_bytes=2 * 1024 * 1024)
    assert status == 413
