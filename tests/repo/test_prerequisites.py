"""Every program the project calls comes from a package that `make setup` installs.

A machine that already has a package hides a missing install step: the test
below asks Debian, not this machine's state. For each line of
scripts/prerequisites.txt it finds the package that owns the file (dpkg -S)
and checks that this package is in the Depends closure (no Recommends, no
Suggests) of the packages scripts/install-packages.sh installs. A scan of the
project's Python code then checks that every program it runs is listed.
"""

from __future__ import annotations

import ast
import functools
import glob
import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

MANIFEST = ROOT / "scripts" / "prerequisites.txt"
# what `vagrant up` with libvirt needs on top: install-packages.sh --vm
VM_MANIFEST = ROOT / "scripts" / "prerequisites-vm.txt"
DOCTOR = ROOT / "scripts" / "doctor.sh"
VENV_BIN = ROOT / ".venv" / "bin"

# Programs the project's code runs on the lab hosts, not on the controller:
# the base image (scripts/build-image.sh) or the roles install them there.
ON_LAB_HOSTS = {
    "systemctl": "systemd, in the base image",
    "psql": "postgresql-client, installed by the postgresql role",
    "pgrep": "procps, in the base image",
}


def manifest(path=MANIFEST):
    """[(name, package, path glob, note)] of scripts/prerequisites.txt (or `path`)."""
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, package, path, note = line.split(None, 3)
            entries.append((name, package, path, note))
    return entries


def installed_packages(*flags):
    """What scripts/install-packages.sh installs (with `flags`, e.g. --vm)."""
    out = subprocess.run(
        [ROOT / "scripts" / "install-packages.sh", "--list", *flags],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout.split()


def _depends(packages):
    """{package: [[choice, ...], ...]} of one recursive apt-cache call, for `packages`
    and everything they may pull in: for each Depends or PreDepends, the first of its
    alternatives, or a virtual package's providers."""
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", *packages],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    deps, current, alternative, providers = {}, None, False, None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.strip().strip("<>")
            deps.setdefault(current, [])
            alternative, providers = False, None
            continue
        match = re.match(r"^\s+(\|?)(Pre)?Depends: (<?)([^>]+)>?$", line)
        if match:
            first_of_group = not alternative
            alternative = match.group(1) == "|"
            providers = None
            if first_of_group and match.group(3) == "<":
                providers = []
                deps[current].append(providers)
            elif first_of_group:
                deps[current].append([match.group(4)])
        elif providers is not None and line.startswith("    "):
            providers.append(line.strip())
    return deps


def depends_closure(packages):
    """What apt installs for `packages` without Recommends: a virtual dependency is
    met by a provider asked for by name, else apt takes the first provider."""
    wanted = set(packages)
    graph = _depends(sorted(packages))
    closure, frontier = set(), set(packages)
    while frontier:
        closure |= frontier
        chosen = set()
        for package in frontier:
            for choices in graph.get(package, []):
                if choices and not wanted & set(choices):
                    chosen.add(choices[0])
        frontier = chosen - closure
    return closure


def owners(path):
    """The Debian packages that ship `path` (after symlinks and alternatives)."""
    real = os.path.realpath(path)
    # merged /usr: PATH finds /usr/bin/sleep where dpkg knows /bin/sleep
    for candidate in (real, real.removeprefix("/usr")):
        out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if out.returncode == 0:
            break
    else:
        return []
    # "diversion by X from/to: ..." lines say who diverted a file, not who ships it.
    lines = [line for line in out.stdout.splitlines() if not line.startswith("diversion by")]
    return [name.strip() for line in lines for name in line.split(":", 1)[0].split(",")]


@functools.cache
def closure_of(package):
    return depends_closure([package])


@functools.cache
def closure_of_setup(*flags):
    return depends_closure(installed_packages(*flags))


@pytest.mark.parametrize(
    ("flags", "name", "package", "pattern"),
    [((), n, p, g) for n, p, g, _ in manifest()]
    + [(("--vm",), n, p, g) for n, p, g, _ in manifest(VM_MANIFEST)],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_each_program_comes_from_an_installed_dependency(flags, name, package, pattern):
    closure = closure_of_setup(*flags)
    paths = sorted(glob.glob(pattern))
    assert paths, f"{name} ({pattern}) is missing: run 'make setup' (Debian package {package})"
    shippers = owners(paths[-1])
    assert shippers, f"{name}: no Debian package owns {os.path.realpath(paths[-1])}"
    shipped_by = next((p for p in shippers if p in closure), shippers[0])
    assert shipped_by in closure, (
        f"{name} ({os.path.realpath(paths[-1])}) comes from the Debian package '{shipped_by}', "
        f"which 'install-packages.sh {' '.join(flags)}' does not install: add '{shipped_by}' "
        f"for {name} to the packages of scripts/install-packages.sh"
    )
    assert package in shippers or shipped_by in closure_of(package), (
        f"{name}: scripts/prerequisites.txt names the package '{package}', "
        f"but '{shipped_by}' ships it"
    )


def test_the_closure_follows_depends_only():
    # podman only suggests netavark's firewall backend: without iptables named,
    # a pristine machine had none and no container could start.
    without = [p for p in installed_packages() if p != "iptables"]
    assert "iptables" not in depends_closure(without)
    assert {"conmon", "golang-github-containers-common"} <= depends_closure(without)


def _called_programs(tree):
    """Names of programs a module runs: subprocess calls whose argument list starts
    with a literal, and shutil.which("name")."""
    runners = {"run", "Popen", "check_call", "check_output", "call"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name in runners and isinstance(first, ast.List) and first.elts:
            head = first.elts[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                yield head.value, node.lineno
        elif name == "which" and isinstance(first, ast.Constant):
            yield first.value, node.lineno


def _project_python_files():
    skip = {".venv", ".git", ".cache", "reports", ".ansible"}
    for path in ROOT.rglob("*.py"):
        if not skip & set(path.relative_to(ROOT).parts):
            yield path


def _in_every_debian(program):
    """True when `program` comes from an Essential or required package: debootstrap's
    minbase has it, so every Debian machine does."""
    found = shutil.which(program, path="/usr/bin:/bin:/usr/sbin:/sbin")
    # merged /usr: dpkg knows /bin/sleep, PATH finds /usr/bin/sleep
    package = (owners(found) or [None])[0] if found else None
    if not package:
        return False
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Essential} ${Priority}", package],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    essential, _, priority = out.stdout.partition(" ")
    return essential == "yes" or priority.strip() == "required"


def test_every_program_the_code_runs_is_listed():
    listed = {name for name, _, _, _ in manifest() + manifest(VM_MANIFEST)}
    unlisted = []
    for path in _project_python_files():
        for program, lineno in _called_programs(ast.parse(path.read_text())):
            if (
                program in listed
                or program in ON_LAB_HOSTS
                or (VENV_BIN / program).exists()
                or program.startswith(("-", "/"))
                or _in_every_debian(program)
            ):
                continue
            unlisted.append(f"{path.relative_to(ROOT)}:{lineno} runs '{program}'")
    assert not unlisted, (
        "programs the code runs that scripts/prerequisites.txt does not list (add each with "
        "the Debian package that ships it):\n" + "\n".join(unlisted)
    )


def test_the_scan_sees_a_program_call():
    code = "import subprocess, shutil\nsubprocess.run(['wrk', '-c', '1'])\nshutil.which('hey')\n"
    assert [p for p, _ in _called_programs(ast.parse(code))] == ["wrk", "hey"]


def test_doctor_names_the_missing_program_and_its_package(tmp_path):
    fake = tmp_path / "prerequisites.txt"
    fake.write_text(
        "# a comment\n"
        "sh        dash       /bin/sh                     a shell\n"
        "nosuchprg nosuch-pkg /usr/bin/fdl-no-such-prog   a program that is not here\n"
    )
    out = subprocess.run(
        [DOCTOR, "--programs-only"], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, FDL_PREREQUISITES=str(fake)),
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ok") and "(dash)" in lines[0]
    assert len(lines) == 2
    missing = lines[1]
    assert missing.startswith("MISSING") and "nosuchprg" in missing
    assert missing.endswith("apt-get install nosuch-pkg")


def test_doctor_passes_on_this_machine():
    out = subprocess.run([DOCTOR], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert len(out.stdout.splitlines()) == len(manifest()) + 2
