"""What the hosts refuse: PostgreSQL admits the app hosts only, the units are
sandboxed, nginx says little about itself."""

from tests.systemd_units import exposure

# A PostgreSQL StartupMessage (protocol 3.0, user and database "labapp"), sent
# from a host; the first byte of the answer says whether pg_hba let it in:
# "R" (an authentication request) or "E" (an error, e.g. no pg_hba.conf entry).
PROBE = """
import socket, struct, sys
params = b"user\\0labapp\\0database\\0labapp\\0\\0"
msg = struct.pack("!ii", 8 + len(params), 196608) + params
s = socket.create_connection((sys.argv[1], 5432), timeout=10)
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
    # firewall drops them (test_firewall.py).
    db = sorted(inventory["db"]["hosts"])[0]
    answer = probe(group("db")[0], db)
    assert answer.startswith("E"), answer
    assert "no pg_hba.conf entry" in answer


def test_app_unit_exposure_is_low(group, deployment):
    assert exposure(group("app")[0], deployment["unit"]) <= 4.0


def test_slow_api_unit_exposure_is_low(group):
    assert exposure(group("upstream")[0], "slow-api.service") <= 4.0


def test_environment_file_is_not_world_readable(group):
    env = group("app")[0].file("/etc/labapp/labapp.env")
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
