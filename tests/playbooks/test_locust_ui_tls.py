"""The locust_ui role's certificate, on the controller: the user's own pair
checked before the host changes (a key of another pair fails naming both
files), or a self-signed one generated once, naming the host, its address,
localhost and 127.0.0.1, and made anew only when those change.

No host is contacted: the inventory's master is an address that refuses at
once, so a run whose checks pass stops, unreachable, at the role's first task
on the host."""

import pytest
import yaml
from cryptography import x509

from flask_deploy_lab.ansible import run_playbook
from tests.playbooks.test_postgresql_tls import _certificate, _key, _write

HOST = "loadgen1"
PASSWORD = "a-test-password-of-24-ch"
SALT = "saltsaltsalt1234"


def converge(tmp_path, address="192.0.2.13", **role_vars):
    inventory = tmp_path / "hosts.yml"
    host = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": 9,
        "node_address": address,
    }
    inventory.write_text(
        yaml.safe_dump({"all": {"children": {"loadgen": {"hosts": {HOST: host}}}}})
    )
    play = tmp_path / "ui.yml"
    role = {
        "role": "locust_ui",
        "locust_ui_password": PASSWORD,
        "locust_ui_password_salt": SALT,
        **role_vars,
    }
    play.write_text(
        yaml.safe_dump(
            [{"name": "The UI's TLS", "hosts": "loadgen", "gather_facts": False, "roles": [role]}]
        )
    )
    return run_playbook(play, inventory=inventory, timeout=300)


def assert_reached_the_host(result):
    assert result.stats[HOST].failures == 0, result.reason
    assert result.stats[HOST].unreachable == 1, result.reason


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ui-pki")
    key, other = _key(), _key()
    cert = _certificate(HOST, HOST, key.public_key(), key, 30, names=[HOST])
    return {
        "cert": _write(d / "ui.crt", cert),
        "key": _write(d / "ui.key", key),
        "other_key": _write(d / "other.key", other),
    }


def test_a_pair_that_belongs_together_passes(tmp_path, pair):
    result = converge(
        tmp_path, locust_ui_tls_cert_src=pair["cert"], locust_ui_tls_key_src=pair["key"]
    )
    assert_reached_the_host(result)


def test_a_key_of_another_pair_fails_naming_both_files_before_the_host(tmp_path, pair):
    result = converge(
        tmp_path, locust_ui_tls_cert_src=pair["cert"], locust_ui_tls_key_src=pair["other_key"]
    )
    assert not result.ok
    assert f"{pair['other_key']} is not the key of {pair['cert']}" in result.reason
    assert result.stats[HOST].unreachable == 0
    assert result.stats[HOST].changed == 0


def test_a_certificate_without_its_key_is_refused(tmp_path, pair):
    result = converge(tmp_path, locust_ui_tls_cert_src=pair["cert"])
    assert not result.ok
    assert "given together or not at all" in result.reason
    assert result.stats[HOST].unreachable == 0


def test_a_short_password_is_refused(tmp_path):
    result = converge(tmp_path, locust_ui_password="short", locust_ui_tls_dir=str(tmp_path / "tls"))
    assert not result.ok
    assert "12 characters or more" in result.reason
    assert not (tmp_path / "tls").exists()


def test_the_generated_certificate_names_the_host_and_is_kept(tmp_path):
    tls = tmp_path / "tls"
    assert_reached_the_host(converge(tmp_path, locust_ui_tls_dir=str(tls)))
    cert_path = tls / f"{HOST}.crt"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(["localhost", HOST])
    assert sorted(str(a) for a in names.get_values_for_type(x509.IPAddress)) == [
        "127.0.0.1",
        "192.0.2.13",
    ]
    assert oct((tls / f"{HOST}.key").stat().st_mode & 0o777) == "0o600"
    first = cert_path.read_bytes()
    # a second run keeps it; a new address makes it anew with the same key
    second = converge(tmp_path, locust_ui_tls_dir=str(tls))
    assert_reached_the_host(second)
    assert second.stats[HOST].changed == 0
    assert cert_path.read_bytes() == first
    key = (tls / f"{HOST}.key").read_bytes()
    assert_reached_the_host(converge(tmp_path, address="192.0.2.14", locust_ui_tls_dir=str(tls)))
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ips = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.14" in [str(a) for a in ips.get_values_for_type(x509.IPAddress)]
    assert (tls / f"{HOST}.key").read_bytes() == key
