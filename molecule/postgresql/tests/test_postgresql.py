"""The postgresql role alone: its parameters reach the server, only the listed
client gets in, only over TLS and only with the password, and the server's
certificate verifies for its name with the scenario's CA; the server runs in
a sandbox.

`pytest -s` shows systemd-analyze's exposure of the unit."""

import datetime
import os
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.systemd_units import exposure, main_process, proc_status, show

PASSWORD = "molecule-shopper-password"
TLS_DIR = "/etc/postgresql/15/main/tls"


def psql(host, sql, password=PASSWORD, user="shopper"):
    return host.run("PGPASSWORD=%s psql -h 127.0.0.1 -U %s -d shop -XAtc %s", password, user, sql)


def test_the_server_runs_and_listens_on_loopback_only(host):
    """The role's default: loopback, not every interface (site.yml adds the node address)."""
    assert host.service("postgresql@15-main").is_running
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_the_settings_file_is_named_by_the_caller(host):
    conf = host.file("/etc/postgresql/15/main/conf.d/molecule.conf")
    assert conf.exists
    assert "log_min_duration_statement = '250'" in conf.content_string
    shown = host.check_output("runuser -u postgres -- psql -XAtc 'SHOW log_min_duration_statement'")
    assert shown == "250ms"


def test_the_user_owns_its_database_and_gets_in_with_its_password(host):
    result = psql(host, "SELECT current_user, current_database()")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "shopper|shop"


def test_a_wrong_password_is_refused(host):
    result = psql(host, "SELECT 1", password="wrong")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_passwords_are_stored_as_scram(host):
    stored = host.check_output(
        'runuser -u postgres -- psql -XAtc "SELECT rolpassword FROM pg_authid '
        "WHERE rolname = 'shopper'\""
    )
    assert stored.startswith("SCRAM-SHA-256$")


def test_only_loopback_and_the_listed_client_are_admitted(host):
    hba = host.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    network = [r for r in rules if r[0] in ("host", "hostssl")]
    assert all(r[-1] == "scram-sha-256" for r in network), hba
    # over TLS only (postgresql_tls), loopback included
    assert network and all(r[0] == "hostssl" for r in network), hba
    remote = [r[1:4] for r in network if r[3] not in ("127.0.0.1/32", "::1/128")]
    # the client reaches its database as its user, and nothing else
    assert remote == [["shop", "shopper", "192.0.2.10/32"]], hba


# --- TLS: the role's certificate, signed by the scenario's CA ------------------


def connect(host, conninfo, sql="SELECT 1"):
    """psql over TCP as the scenario's user, with libpq's `conninfo` words."""
    return host.run(
        "PGPASSWORD=%s psql %s -XAtc %s", PASSWORD, f"dbname=shop user=shopper {conninfo}", sql
    )


def stranger_ca():
    """A CA certificate that signed nothing on the host."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A stranger's CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def roots(host):
    """Paths on the host of the CA certificates a client may trust: the
    scenario's, which the role made on the controller and which signed the
    server's certificate, and a stranger's."""
    pems = {
        "ca": Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "tls", "ca.crt").read_text(),
        "stranger": stranger_ca(),
    }
    paths = {name: f"/root/molecule-{name}.crt" for name in pems}
    for name, pem in pems.items():
        host.check_output("printf %%s %s > %s", pem, paths[name])
    yield paths
    host.run("rm -f %s %s", *paths.values())


def test_the_server_uses_the_roles_certificate_and_key(host):
    out = host.check_output(
        "runuser -u postgres -- psql -XAtc %s",
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('ssl', 'ssl_cert_file', 'ssl_key_file', 'ssl_min_protocol_version')",
    )
    assert dict(line.split("|") for line in out.splitlines()) == {
        "ssl": "on",
        "ssl_cert_file": f"{TLS_DIR}/server.crt",
        "ssl_key_file": f"{TLS_DIR}/server.key",
        "ssl_min_protocol_version": "TLSv1.2",
    }
    key = host.file(f"{TLS_DIR}/server.key")
    # PostgreSQL refuses a key its group or others may read
    assert (key.user, key.mode) == ("postgres", 0o600)


def test_a_connection_over_tls_gets_in(host):
    result = connect(
        host,
        "host=127.0.0.1 sslmode=require",
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    assert result.rc == 0, result.stderr
    ssl, version = result.stdout.strip().split("|")
    assert ssl == "t"
    assert version in ("TLSv1.2", "TLSv1.3")


def test_a_connection_without_tls_is_refused(host):
    result = connect(host, "host=127.0.0.1 sslmode=disable")
    assert result.rc != 0
    assert (
        'no pg_hba.conf entry for host "127.0.0.1", user "shopper", database "shop", no encryption'
    ) in result.stderr


def test_the_certificate_verifies_for_the_hosts_names_with_the_ca(host, roots):
    # host: the name the certificate must hold; hostaddr: where to connect
    # (PostgreSQL listens on loopback only). The role's default names: the
    # inventory name and the container's default-route address.
    route = host.check_output("ip -4 -o route get 8.8.8.8").split()
    for name in ("pg1", route[route.index("src") + 1]):
        result = connect(
            host, f"host={name} hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={roots['ca']}"
        )
        assert result.rc == 0, f"{name}: {result.stderr}"


def test_the_certificate_fails_for_another_name_or_another_ca(host, roots):
    other_name = connect(
        host,
        f"host=elsewhere.invalid hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={roots['ca']}",
    )
    assert other_name.rc != 0
    assert 'does not match host name "elsewhere.invalid"' in other_name.stderr
    other_ca = connect(
        host, f"host=pg1 hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={roots['stranger']}"
    )
    assert other_ca.rc != 0
    assert "certificate verify failed" in other_ca.stderr


# --- the sandbox: postgresql@15-main.service.d/sandbox.conf ---------------------

UNIT = "postgresql@15-main.service"
DROP_IN = "/etc/systemd/system/postgresql@15-main.service.d/sandbox.conf"
# systemd-analyze security: stock Debian postgresql@.service is 9.6; the
# sandbox reaches about 1.5 (network, no MemoryDenyWriteExecute for the JIT).
MAX_EXPOSURE = 2.5


def test_the_sandbox_drop_in_is_loaded(host):
    props = show(
        host,
        UNIT,
        "DropInPaths",
        "User",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "NoNewPrivileges",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "SystemCallArchitectures",
        "RestrictAddressFamilies",
        "ReadWritePaths",
    )
    assert DROP_IN in props["DropInPaths"].split(), props["DropInPaths"]
    assert props["User"] == "postgres"
    assert props["CapabilityBoundingSet"] == ""
    assert props["AmbientCapabilities"] == ""
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    for name in (
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "NoNewPrivileges",
        "LockPersonality",
    ):
        assert props[name] == "yes", name
    # the LLVM JIT writes the code it runs
    assert props["MemoryDenyWriteExecute"] == "no"
    assert props["RestrictNamespaces"] == "yes"
    assert props["SystemCallArchitectures"]  # native: stock units allow any
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert set(props["ReadWritePaths"].split()) == {
        "/var/lib/postgresql",
        "/run/postgresql",
        "/var/log/postgresql",
    }


def test_the_running_postmaster_is_the_sandboxed_one(host):
    # started (or restarted) after the drop-in: the limits are on the process
    pid, proc = main_process(host, UNIT)
    assert host.check_output("ps -o user= -p %s", pid).strip() == "postgres"
    assert int(proc["CapBnd"], 16) == 0
    assert proc["NoNewPrivs"] == "1"
    # systemd's filters on top of the container's own (kernels >= 5.9 count them)
    if "Seccomp_filters" in proc:
        init = proc_status(host, "1")
        assert int(proc["Seccomp_filters"]) > int(init["Seccomp_filters"])


def explain(host, sql, **settings):
    """EXPLAIN ANALYZE of a query as the app's user, with session settings."""
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    return host.run(
        "PGOPTIONS=%s PGPASSWORD=%s psql -h 127.0.0.1 -U shopper -d shop -XAtc %s",
        options,
        PASSWORD,
        # with COSTS OFF, EXPLAIN leaves out its JIT section
        f"EXPLAIN (ANALYZE) {sql}",
    )


def test_the_sandboxed_server_writes_queries_and_reloads(host):
    try:
        for sql in (
            "CREATE TABLE sandbox_probe (n int)",
            "INSERT INTO sandbox_probe SELECT generate_series(1, 1000)",
        ):
            result = psql(host, sql)
            assert result.rc == 0, result.stderr
        assert psql(host, "SELECT sum(n) FROM sandbox_probe").stdout.strip() == "500500"
    finally:
        psql(host, "DROP TABLE IF EXISTS sandbox_probe")
    host.check_output("systemctl reload %s", UNIT)
    assert psql(host, "SELECT 1").stdout.strip() == "1"


def test_parallel_workers_get_their_shared_memory(host):
    # dynamic shared memory lives in /dev/shm, which PrivateDevices keeps
    plan = explain(
        host,
        "SELECT count(*) FROM generate_series(1, 1000)",
        force_parallel_mode="on",
        parallel_setup_cost=0,
    )
    assert plan.rc == 0, plan.stderr
    assert re.search(r"Workers Launched: [1-9]", plan.stdout), plan.stdout


def test_the_jit_still_compiles(host):
    # the reason the sandbox has no MemoryDenyWriteExecute
    assert psql(host, "SELECT pg_jit_available()").stdout.strip() == "t"
    plan = explain(
        host, "SELECT sum(x) FROM generate_series(1, 1000) x", jit="on", jit_above_cost=0
    )
    assert plan.rc == 0, plan.stderr
    assert re.search(r"JIT:\s+Functions: [1-9]", plan.stdout), plan.stdout


def test_the_sandbox_denied_postgresql_nothing_it_needed(host):
    log = "/var/log/postgresql/postgresql-15-main.log"
    assert host.file(log).contains("ready to accept connections")
    denied = host.run("grep -E %s %s", "Permission denied|Read-only file system", log)
    assert denied.rc == 1, denied.stdout


def test_the_sandbox_lowers_the_exposure(host):
    assert exposure(host, UNIT) <= MAX_EXPOSURE
