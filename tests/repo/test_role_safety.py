"""What keeps the roles safe on real hosts, read from the roles themselves: no
nginx file goes live without `nginx -t`, and a changed systemd drop-in
(nginx, PostgreSQL, Redis, the Celery worker) reloads systemd and restarts
its service."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT

ROLES = ROOT / "roles"
TEMPLATE_MODULES = {"ansible.builtin.template", "template"}
COPY_MODULES = {"ansible.builtin.copy", "copy"}
SERVICE_MODULES = {"ansible.builtin.systemd_service", "ansible.builtin.systemd"}
BLOCK_KEYS = ("block", "rescue", "always")
SITES_INCLUDE = "include /etc/nginx/sites-enabled/*;"


def tasks_of(role, kind="tasks"):
    """Every task of a role's tasks/ (or handlers/) files, blocks opened."""

    def walk(tasks):
        for task in tasks or []:
            if any(key in task for key in BLOCK_KEYS):
                for key in BLOCK_KEYS:
                    yield from walk(task.get(key))
            else:
                yield task

    for path in sorted((ROLES / role / kind).glob("*.yml")):
        yield from walk(yaml.safe_load(path.read_text()))


def module_of(task, modules):
    """The task's arguments when it calls one of `modules`, else None."""
    for name in modules:
        if name in task:
            return task[name] or {}
    return None


def role_vars(role):
    found = {}
    for kind in ("defaults", "vars"):
        path = ROLES / role / kind / "main.yml"
        if path.exists():
            found.update(yaml.safe_load(path.read_text()) or {})
    return found


def resolve(value, variables):
    """A value that is exactly "{{ name }}" as the role's own variable, else itself."""
    match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", str(value).strip())
    return variables[match.group(1)] if match else value


def nginx_file_tasks():
    """The nginx role's tasks that write a file from a template or content."""
    for task in tasks_of("nginx"):
        args = module_of(task, TEMPLATE_MODULES | COPY_MODULES)
        if args is not None and str(args.get("dest", "")).startswith("/etc/nginx/"):
            yield task["name"], args


def test_the_nginx_role_writes_configuration_files():
    # the check below must have something to check
    assert len(list(nginx_file_tasks())) >= 2


@pytest.mark.parametrize(("name", "args"), list(nginx_file_tasks()))
def test_every_nginx_file_is_tested_before_it_goes_live(name, args):
    validate = args.get("validate")
    assert validate, f"'{name}' writes {args['dest']} without validate: (nginx -t)"
    command = resolve(validate, role_vars("nginx"))
    assert "%s" in command, f"'{name}': validate does not test the candidate (%s)"
    assert re.search(r"\bnginx -t\b", command), f"'{name}': validate is not nginx -t"
    # Python's %-formatting of the command by the copy module: one %s and no other %
    assert command.count("%") == 1, f"'{name}': a stray % in validate"


def test_the_site_check_replaces_the_include_the_main_file_has():
    """The site's candidate is tested in a copy of nginx.conf whose include of
    sites-enabled/ is replaced: that line must be in nginx.conf as written."""
    main = (ROLES / "nginx" / "templates" / "nginx.conf.j2").read_text()
    assert SITES_INCLUDE in [line.strip() for line in main.splitlines()]
    command = role_vars("nginx")["nginx_site_validate"]
    assert "/etc/nginx/sites-enabled/\\*;" in command


def test_nginx_templates_include_absolute_paths_only():
    # the candidate main file is tested from a temporary directory, and nginx
    # resolves a relative include from the main file's directory
    relative = []
    for path in sorted((ROLES / "nginx" / "templates").glob("*.j2")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*include\s+[^/\s]", line):
                relative.append(f"{path.name}:{number}: {line.strip()}")
    assert not relative, relative


def test_the_whole_nginx_configuration_is_checked_on_every_run():
    checks = [
        task
        for task in tasks_of("nginx")
        if re.search(r"\bnginx -t\b", str(task.get("ansible.builtin.command", "")))
    ]
    assert checks, "no task runs nginx -t on the live configuration"
    # every run, changed or not: not a handler, not skipped when nothing changed
    assert all("when" not in task and task.get("changed_when") is False for task in checks)


@pytest.mark.parametrize("role", ["nginx", "postgresql", "redis", "celery_worker"])
def test_a_changed_drop_in_reloads_systemd_and_restarts_the_service(role):
    handlers = {task["name"]: task for task in tasks_of(role, "handlers")}
    drop_ins = [
        task
        for task in tasks_of(role)
        if module_of(task, TEMPLATE_MODULES) is not None
        and ".service.d/" in str(module_of(task, TEMPLATE_MODULES).get("dest", ""))
    ]
    assert drop_ins, f"{role} writes no systemd drop-in"
    for task in drop_ins:
        notify = task.get("notify")
        notified = [notify] if isinstance(notify, str) else list(notify or [])
        restarts = [
            module_of(handlers[name], SERVICE_MODULES)
            for name in notified
            if module_of(handlers[name], SERVICE_MODULES) is not None
        ]
        assert any(
            args.get("state") == "restarted" and args.get("daemon_reload") is True
            for args in restarts
        ), f"'{task['name']}' does not notify a daemon-reload and restart"
