"""testinfra hosts for Molecule's lab, reached with `podman exec`.

testinfra's ansible backend has no native mapping for the podman connection
and would run every command through Ansible; the podman backend is the same
connection, a hundred times faster.
"""

import json
import os
import subprocess

import pytest
import testinfra


def inventory_dir():
    """Molecule's inventory directory: its own file beside the linked topology."""
    return os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])


def _inventory():
    out = subprocess.run(
        ["ansible-inventory", "-i", inventory_dir(), "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="session")
def inventory():
    return _inventory()


@pytest.fixture(scope="session")
def hosts(inventory):
    """{inventory name: testinfra host} for every topology host."""
    hostvars = inventory["_meta"]["hostvars"]
    return {
        name: testinfra.get_host(f"podman://{hv['lab_name_prefix']}{name}")
        for name, hv in hostvars.items()
    }


# What site.yml makes of an inventory without these groups.
DEFAULT_GROUPS = {"broker": "db", "worker": "app"}


def group_members(inventory, name):
    """The inventory names of a group's hosts, as site.yml deploys it."""
    if not inventory.get(name, {}).get("hosts") and name in DEFAULT_GROUPS:
        name = DEFAULT_GROUPS[name]
    return sorted(inventory[name]["hosts"])


@pytest.fixture(scope="session")
def group(inventory, hosts):
    def members(name):
        return [hosts[h] for h in group_members(inventory, name)]

    return members


def fact(app):
    """An app host's record of what was deployed (the flask_app role's local fact)."""
    return json.loads(app.file("/etc/ansible/facts.d/labapp.fact").content_string)


@pytest.fixture(scope="session")
def deployment(group):
    """The first app host's record of what was deployed (test_stack.py checks that
    every app host's is the same)."""
    return fact(group("app")[0])


@pytest.fixture(scope="session")
def http(inventory, group):
    """GET/POST through nginx from a load-generator host: (status, headers, body)."""
    client = group("loadgen")[0]
    # the lab's DNS knows each container by its topology name
    proxy = sorted(inventory["proxy"]["hosts"])[0]

    def request(path, method="GET", body_bytes=0, json_body=None, headers=None):
        """json_body: a POST's body as JSON (else body_bytes of "x"); headers: the
        request's own."""
        sent = dict(headers or {})
        if json_body is not None:
            data = f"{json.dumps(json.dumps(json_body))}.encode()"
            sent["Content-Type"] = "application/json"
        else:
            data = f"b'x' * {body_bytes}" if method == "POST" else "None"
        script = (
            "import json, urllib.request, urllib.error\n"
            f"url = 'http://{proxy}{path}'\n"
            f"req = urllib.request.Request(url, method='{method}', data={data},"
            f" headers={sent!r})\n"
            "try:\n    r = urllib.request.urlopen(req, timeout=20)\n"
            "except urllib.error.HTTPError as e:\n    r = e\n"
            "print(json.dumps([r.status, dict(r.headers), r.read().decode('utf-8')]))\n"
        )
        out = client.check_output("python3 -c %s", script)
        status, headers, body = json.loads(out)
        return status, headers, body

    return request
