"""The postgresql role's TLS files, on the controller: generated once and
issued again only when the host's names change, or the user's own, checked
before the host changes. A certificate, key or CA that do not belong together
fail the run with the file's name, and the db host is never contacted.

No host is: the inventory's db host is an address that refuses at once, so a
run whose checks pass stops, unreachable, at the role's first task on the host."""

import datetime
import hashlib
import os
import stat

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flask_deploy_lab.ansible import run_playbook

HOST = "db1"


# --- certificates made here, as a user's own -----------------------------------


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject, issuer, public_key, signer, days, ca=False, names=()):
    """Valid for `days` from now; with days < 0, expired that many days ago."""
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(days=days)
    start = min(now, end) - datetime.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path, obj):
    if isinstance(obj, x509.Certificate):
        data = obj.public_bytes(serialization.Encoding.PEM)
    else:
        data = obj.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """{name: path} of a CA, the host's key and certificate it signed, and
    the wrong ones: another CA, another key, an expired certificate and one
    that names another host."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_ca_key, key = _key(), _key(), _key()
    ca = _certificate("Test CA", "Test CA", ca_key.public_key(), ca_key, 30, ca=True)
    other_ca = _certificate(
        "Other CA", "Other CA", other_ca_key.public_key(), other_ca_key, 30, ca=True
    )

    def issue(days, names):
        """A certificate for `key`, signed by the CA."""
        return _certificate(names[0], "Test CA", key.public_key(), ca_key, days, names=names)

    return {
        "ca": _write(d / "ca.crt", ca),
        "cert": _write(d / "db1.crt", issue(30, [HOST])),
        "key": _write(d / "db1.key", key),
        "other_ca": _write(d / "other-ca.crt", other_ca),
        "other_key": _write(d / "other.key", _key()),
        "expired": _write(d / "expired.crt", issue(-1, [HOST])),
        "elsewhere": _write(d / "db2.crt", issue(30, ["db2"])),
    }


# --- the role, with the host out of reach ---------------------------------------


def converge(tmp_path, inventory_vars=None, **role_vars):
    """The postgresql role with postgresql_tls and `role_vars`, on a db host that
    refuses connections (`inventory_vars`: the inventory's for all hosts);
    returns the PlaybookResult."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": inventory_vars or {},
                    "children": {
                        "db": {
                            "hosts": {
                                HOST: {
                                    "ansible_connection": "ssh",
                                    "ansible_host": "127.0.0.1",
                                    "ansible_port": 9,
                                }
                            }
                        }
                    },
                }
            }
        )
    )
    play = tmp_path / "tls.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "The postgresql role's TLS",
                    "hosts": "db",
                    "gather_facts": False,
                    "roles": [{"role": "postgresql", "postgresql_tls": True, **role_vars}],
                }
            ]
        )
    )
    return run_playbook(play, inventory=inventory, timeout=300)


def own_files(pki, cert="cert", key="key", ca="ca"):
    return {
        "postgresql_tls_cert_src": pki[cert],
        "postgresql_tls_key_src": pki[key],
        "postgresql_tls_ca_src": pki[ca],
    }


def digest(paths):
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


def assert_reached_the_host(result):
    """The checks passed: the run went on to the host, which refuses."""
    assert result.stats[HOST].failures == 0, result.reason
    assert result.stats[HOST].unreachable == 1, result.reason
    assert result.failures[-1].task == "postgresql : Install the PostgreSQL packages"


def assert_refused_before_the_host(result, *words):
    assert not result.ok
    for word in words:
        assert word in result.reason, result.reason
    # a check failed; the host was neither contacted nor changed
    assert result.stats[HOST].unreachable == 0
    assert result.stats[HOST].changed == 0
    assert not any(f.unreachable for f in result.failures)


# --- the user's own files --------------------------------------------------------


def test_files_that_belong_together_pass_the_checks(tmp_path, pki):
    before = digest(pki.values())
    assert_reached_the_host(converge(tmp_path, **own_files(pki)))
    assert digest(pki.values()) == before


@pytest.mark.parametrize(
    ("files", "words"),
    [
        # a key of another pair
        (
            {"key": "other_key"},
            ["the key {other_key} does not belong to the certificate {cert}"],
        ),
        # a CA that did not sign the certificate
        (
            {"ca": "other_ca"},
            ["the CA {other_ca}", "did not sign the certificate {cert}", "Test CA"],
        ),
        ({"cert": "expired"}, ["{expired} expired on"]),
        ({"cert": "elsewhere"}, ["the certificate {elsewhere} does not name DNS:db1"]),
        # a file that is not what its variable says
        ({"key": "cert"}, ["{cert} is not a readable unencrypted PEM key"]),
        ({"cert": "key"}, ["{key} is not a readable PEM certificate"]),
        ({"ca": "other_key"}, ["{other_key} is not a readable PEM certificate"]),
    ],
    ids=[
        "mismatched-key",
        "foreign-ca",
        "expired",
        "other-name",
        "cert-as-key",
        "key-as-cert",
        "key-as-ca",
    ],
)
def test_files_that_do_not_belong_together_are_refused_by_name(tmp_path, pki, files, words):
    before = digest(pki.values())
    result = converge(tmp_path, **own_files(pki, **files))
    assert_refused_before_the_host(result, *(w.format(**pki) for w in words))
    assert digest(pki.values()) == before


def test_a_missing_file_is_named(tmp_path, pki):
    missing = str(tmp_path / "nowhere.crt")
    result = converge(tmp_path, **(own_files(pki) | {"postgresql_tls_ca_src": missing}))
    assert_refused_before_the_host(result, f"{missing} is not a readable PEM certificate")


def test_the_names_the_clients_use_are_checked(tmp_path, pki):
    result = converge(tmp_path, **own_files(pki), postgresql_tls_names=[HOST, "192.0.2.7"])
    assert_refused_before_the_host(
        result, f"the certificate {pki['cert']} does not name IP:192.0.2.7"
    )


@pytest.mark.parametrize(
    ("role_vars", "words"),
    [
        (
            lambda pki: {"postgresql_tls_cert_src": pki["cert"]},
            lambda pki: ["go together", f"set: postgresql_tls_cert_src={pki['cert']}"],
        ),
        (
            lambda pki: own_files(pki) | {"postgresql_tls_cert_src": "db1.crt"},
            lambda pki: [
                "each an absolute path on the controller",
                "postgresql_tls_cert_src=db1.crt",
            ],
        ),
        (lambda pki: {}, lambda pki: ["postgresql_tls=true needs postgresql_tls_dir"]),
    ],
    ids=["incomplete", "relative", "nowhere-to-generate"],
)
def test_an_incomplete_setting_is_refused(tmp_path, pki, role_vars, words):
    assert_refused_before_the_host(converge(tmp_path, **role_vars(pki)), *words(pki))


# --- generated files ---------------------------------------------------------------


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)] + [
        f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)
    ]


def test_generated_once_and_issued_again_when_the_names_change(tmp_path):
    tls = tmp_path / "tls"
    names = [HOST, "192.0.2.7"]

    first = converge(tmp_path, postgresql_tls_dir=str(tls), postgresql_tls_names=names)
    assert_reached_the_host(first)
    # the directory, the CA's key and certificate, the host's key and certificate
    assert first.stats[HOST].changed == 5
    assert {p.name for p in tls.iterdir()} == {"ca.key", "ca.crt", f"{HOST}.key", f"{HOST}.crt"}
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for secret in ("ca.key", f"{HOST}.key"):
        assert stat.S_IMODE((tls / secret).stat().st_mode) == 0o600, secret
    ca, cert = load(tls / "ca.crt"), load(tls / f"{HOST}.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert.verify_directly_issued_by(ca)
    assert sorted(sans(cert)) == ["DNS:db1", "IP:192.0.2.7"]
    kept = digest([tls / "ca.key", tls / "ca.crt", tls / f"{HOST}.key"])

    second = converge(tmp_path, postgresql_tls_dir=str(tls), postgresql_tls_names=names)
    assert_reached_the_host(second)
    assert second.stats[HOST].changed == 0
    assert load(tls / f"{HOST}.crt") == cert

    # a lab-up gives the host another address: the certificate is issued again
    moved = converge(
        tmp_path, postgresql_tls_dir=str(tls), postgresql_tls_names=[HOST, "192.0.2.8"]
    )
    assert_reached_the_host(moved)
    assert moved.stats[HOST].changed == 1
    reissued = load(tls / f"{HOST}.crt")
    assert sorted(sans(reissued)) == ["DNS:db1", "IP:192.0.2.8"]
    reissued.verify_directly_issued_by(ca)
    assert digest([tls / "ca.key", tls / "ca.crt", tls / f"{HOST}.key"]) == kept


def test_the_controllers_work_does_not_become_where_the_inventory_says_so(tmp_path, pki):
    # inventory/production sets ansible_become for all hosts, and the implicit
    # localhost takes the vars of all: the files stay the user's, no sudo on
    # the controller. (To nobody by su, which fails at once if it is used.)
    become = {
        "ansible_become": True,
        "ansible_become_user": "nobody",
        "ansible_become_method": "su",
    }
    tls = tmp_path / "tls"
    assert_reached_the_host(converge(tmp_path, become, postgresql_tls_dir=str(tls)))
    assert {p.stat().st_uid for p in tls.iterdir()} == {os.getuid()}
    assert_reached_the_host(converge(tmp_path, become, **own_files(pki)))
