"""The postgresql role alone: its parameters reach the server, only the listed
client gets in, and only with the password."""

PASSWORD = "molecule-shopper-password"


def psql(host, sql, password=PASSWORD, user="shopper"):
    return host.run("PGPASSWORD=%s psql -h 127.0.0.1 -U %s -d shop -XAtc %s", password, user, sql)


def test_the_server_runs_and_listens(host):
    assert host.service("postgresql@15-main").is_running
    assert host.socket("tcp://0.0.0.0:5432").is_listening


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
    remote = [r[1:4] for r in network if r[3] not in ("127.0.0.1/32", "::1/128")]
    # the client reaches its database as its user, and nothing else
    assert remote == [["shop", "shopper", "192.0.2.10/32"]], hba
