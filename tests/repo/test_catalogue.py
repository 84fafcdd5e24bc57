"""catalogue.yml is the one list of servers and endpoints: it is complete, what
it names exists, and no other file keeps a list of the same names."""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from flask_deploy_lab import catalogue
from flask_deploy_lab.catalogue import PLACEHOLDERS, CatalogueError
from tests.conftest import ROOT

CATALOGUE = catalogue.load()
SERVERS = set(CATALOGUE.servers)
ENDPOINTS = set(CATALOGUE.endpoints)
SKIP_DIRS = {".venv", ".git", ".cache", "reports", ".ansible", "credentials", ".vagrant"}
# A collection holding this many names of one kind is a list of them.
LIST_THRESHOLD = 3


def project_files(*suffixes):
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & SKIP_DIRS and path.name.endswith(suffixes):
            yield path


def _names_in_python(tree):
    """Each list, tuple, set or dict literal as the strings it holds (dict: its keys)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        yield node.lineno, [i.value for i in items if isinstance(i, ast.Constant)]


def _names_in_yaml(data, where="document"):
    if isinstance(data, dict):
        yield where, [k for k in data if isinstance(k, str)]
        for key, value in data.items():
            yield from _names_in_yaml(value, f"{where}.{key}")
    elif isinstance(data, list):
        yield where, [v for v in data if isinstance(v, str)]
        for index, value in enumerate(data):
            yield from _names_in_yaml(value, f"{where}[{index}]")


def _names_in_text(text):
    """Bracketed lists in other languages (the Vagrantfile's Ruby, shell, Jinja)."""
    for match in re.finditer(r"%w\[([^\]]*)\]|\[([^\[\]]*)\]", text):
        body = match.group(1) if match.group(1) is not None else match.group(2)
        words = re.findall(r"[\w-]+", body)
        yield text.count("\n", 0, match.start()) + 1, words


def collections_of(path):
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        yield from _names_in_python(ast.parse(text))
    elif path.suffix in (".yml", ".yaml"):
        for document in yaml.safe_load_all(text):
            yield from _names_in_yaml(document)
    else:
        yield from _names_in_text(text)


def test_no_other_file_lists_servers_or_endpoints():
    found = []
    suffixes = (".py", ".yml", ".yaml", ".j2", ".sh", "Vagrantfile", "Makefile", ".cfg")
    for path in project_files(*suffixes):
        # the catalogue (and Ansible's link to it), and this file's own examples
        if (
            path.resolve() == ROOT / "catalogue.yml"
            or path == ROOT / "tests/repo/test_catalogue.py"
        ):
            continue
        for where, names in collections_of(path):
            for kind, known in (("servers", SERVERS), ("endpoints", ENDPOINTS)):
                listed = sorted(known & set(names))
                if len(listed) >= LIST_THRESHOLD:
                    found.append(f"{path.relative_to(ROOT)}:{where} lists {kind} {listed}")
    assert not found, "read these from the catalogue (flask_deploy_lab.catalogue):\n" + "\n".join(
        found
    )


def test_the_list_check_sees_lists():
    code = "SERVERS = ['uwsgi', 'gevent', 'flask']\nx = {'db': 1, 'slow': 2, 'json': 3}\n"
    names = [n for _, n in _names_in_python(ast.parse(code))]
    assert ["uwsgi", "gevent", "flask"] in names and ["db", "slow", "json"] in names
    assert ["uwsgi", "gevent"] in [n for _, n in _names_in_text("x = %w[uwsgi gevent]")]


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_each_server_is_complete(name):
    server = CATALOGUE.servers[name]
    for template in (server.command, server.reload or ""):
        unknown = catalogue.placeholders(template) - set(PLACEHOLDERS)
        assert not unknown, f"{name}: unknown placeholders {unknown}"
    if server.config:
        assert (ROOT / "roles" / "flask_app" / "templates" / f"{server.config}.j2").is_file()
    assert server.slots(workers=3, threads=50, greenlets=1000) in (
        None, 1, 3, 50, 150, 1000, 3000,
    )  # fmt: skip


def test_the_role_fills_every_placeholder():
    role_vars = yaml.safe_load((ROOT / "roles" / "flask_app" / "vars" / "main.yml").read_text())
    assert set(role_vars["__flask_app_placeholders"]) == set(PLACEHOLDERS)


def test_the_locustfile_has_one_user_class_per_endpoint():
    tree = ast.parse((ROOT / "loadtest" / "locustfile.py").read_text())
    declared = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                if (
                    isinstance(statement, ast.Assign)
                    and [t.id for t in statement.targets if isinstance(t, ast.Name)] == ["endpoint"]
                    and isinstance(statement.value, ast.Constant)
                    and statement.value.value
                ):
                    declared.add(statement.value.value)
    assert declared == ENDPOINTS


def test_bad_names_are_refused_with_the_valid_ones():
    with pytest.raises(CatalogueError, match="valid: flask, "):
        CATALOGUE.server("Gunicorn")
    with pytest.raises(CatalogueError, match="endpoint 'nope' is not known"):
        CATALOGUE.endpoint("nope")
    assert CATALOGUE.endpoint("/slow").delay_bound


def test_a_malformed_entry_is_refused():
    data = yaml.safe_load((ROOT / "catalogue.yml").read_text())
    data["catalogue"]["servers"]["uwsgi"]["per_process"] = "lots"
    with pytest.raises(CatalogueError, match="per_process='lots'"):
        catalogue.Catalogue.from_data(data)


def test_keepalive_must_be_a_boolean():
    data = yaml.safe_load((ROOT / "catalogue.yml").read_text())
    data["catalogue"]["servers"]["uwsgi"]["keepalive"] = "yes"
    with pytest.raises(CatalogueError, match="keepalive='yes'"):
        catalogue.Catalogue.from_data(data)


def test_keepalive_is_required():
    data = yaml.safe_load((ROOT / "catalogue.yml").read_text())
    del data["catalogue"]["servers"]["uwsgi"]["keepalive"]
    with pytest.raises(CatalogueError, match="keepalive"):
        catalogue.Catalogue.from_data(data)


def test_a_reload_is_a_command_systemd_can_run():
    data = yaml.safe_load((ROOT / "catalogue.yml").read_text())
    data["catalogue"]["servers"]["uwsgi"]["reload"] = "HUP"
    with pytest.raises(CatalogueError, match="reload='HUP' is not a command with an absolute path"):
        catalogue.Catalogue.from_data(data)
    data["catalogue"]["servers"]["uwsgi"]["reload"] = "/bin/kill -HUP {mainpid}"
    with pytest.raises(CatalogueError, match="reload has unknown placeholders mainpid; valid: "):
        catalogue.Catalogue.from_data(data)
