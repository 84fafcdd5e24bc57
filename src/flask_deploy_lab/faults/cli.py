"""fdl-faults (make faults): every fault, or some, one line each; with
``--servers``, against each of several servers (a matrix), then a table.

    fdl-faults [--only NAME|NUMBER ...] [--servers all|NAME ...] [--no-converge]
               [--run-id ID] [-- ANSIBLE ARGS]
    fdl-faults --converge-only [--servers NAME] [-- ANSIBLE ARGS]

``--servers all`` (SERVERS=all) is every concurrent server of the catalogue
(its ``concurrency`` is not ``serial``), in the catalogue's order; names pick
some. Each server is converged once (``-e server=NAME`` after every other
``-e``), then every chosen fault runs against it: one line per (server,
fault), and at the end a table of server x fault with each verdict and its
key figure. Without ``--servers`` the faults run against what ``-e server=``
(or the default) deploys, as before.

Arguments after ``--`` (and the words of FAULTS_ANSIBLE_ARGS) go to every
``ansible`` and ``ansible-playbook`` command: ``-e`` (key=value, JSON or YAML,
@file) selects another lab or another server, ``-i`` another inventory (the
Vagrant VMs, real hosts). Before them comes ``-e flask_app_workers=2``
(DEFAULT_ARGS): kill-worker needs a worker with a sibling under a master, and
the sizing gives a one-CPU app host one process; a later ``-e`` overrides
it. FAULTS (names or numbers, space-separated) is
``--only``. Exit status: 0 when no fault failed (a SKIP, or an N/A: a fault the
inventory does not allow, is not a failure), 1 when one did, 2 when the hosts
do not answer or the stack could not be converged.
``reports/<run-id>/faults.json`` keeps every figure.

``--converge-only`` converges the stack as a run would (its settings, the
passthrough) and exits: 0 when it converged, 2 when not. Later runs then
take it with ``--no-converge`` (make test converges its lab so while
Molecule runs).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from ansible.parsing.splitter import parse_kv

from flask_deploy_lab import PROJECT_DIR, catalogue
from flask_deploy_lab.faults import FAULTS, NAMES, render
from flask_deploy_lab.faults.executor import Executor
from flask_deploy_lab.faults.load import note
from flask_deploy_lab.faults.outcome import FaultError, Outcome, Verdict
from flask_deploy_lab.faults.stack import Stack, converge

# Given to every command before the user's arguments (which override them).
DEFAULT_ARGS = ["-e", "flask_app_workers=2"]


@dataclass
class AnsibleArgs:
    """The ``-i`` and ``-e`` of the passthrough, as the package's runner takes them."""

    inventory: str | None = None
    extra_vars: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, words) -> AnsibleArgs:
        """As ansible reads them: each -e is key=value pairs, JSON or YAML, or @file,
        merged in order (a later key wins); ValueError names what cannot be passed."""
        parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
        parser.add_argument("-e", "--extra-vars", action="append", default=[])
        parser.add_argument("-i", "--inventory", action="append", default=[])
        try:
            found, unknown = parser.parse_known_args(list(words))
        except argparse.ArgumentError as error:
            raise ValueError(str(error)) from None
        if unknown:
            raise ValueError(
                f"only -e and -i go to Ansible, not {shlex.join(unknown)} "
                "(a connection setting goes in as -e, e.g. -e ansible_user=NAME)"
            )
        if len(found.inventory) > 1:
            raise ValueError("one -i at most")
        extra = {}
        for text in found.extra_vars:
            extra.update(cls._extra(text))
        return cls(found.inventory[0] if found.inventory else None, extra)

    @staticmethod
    def _extra(text: str) -> dict:
        if text.startswith("@"):
            data = yaml.safe_load(Path(text[1:]).read_text())
        elif text[:1] in ("/", "."):
            raise ValueError(f"-e {text}: a file of variables is given as @{text}")
        elif text[:1] in ("{", "["):
            data = yaml.safe_load(text)
        else:
            data = parse_kv(text)
        if not isinstance(data, dict):
            raise ValueError(f"-e {text}: not a set of variables")
        return data


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1 :]
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="fdl-faults",
        description="Inject faults into the stack under load; one PASS/FAIL line per fault.",
        epilog="Arguments after -- go to every ansible command (e.g. -e lab_name_prefix=fdl-x-).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=(env("FAULTS") or "").split() or None,
        help=f"faults by name or number: {' '.join(NAMES)}",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        default=(env("SERVERS") or "").split() or None,
        help="run every chosen fault against each of these servers (all: every concurrent "
        "server of the catalogue)",
    )
    parser.add_argument(
        "--no-converge",
        action="store_true",
        help="skip the first site.yml (the stack is converged)",
    )
    parser.add_argument(
        "--converge-only",
        action="store_true",
        help="converge the stack with the faults' settings and exit (for later --no-converge runs)",
    )
    parser.add_argument(
        "--no-skip",
        action="store_true",
        help="exit 1 when a fault is SKIP or N/A too: every fault chosen must be measured "
        "(make test's, whose stack could otherwise leave one unmeasured unnoticed)",
    )
    parser.add_argument("--run-id", default=env("RUN_ID") or None)
    args = parser.parse_args(argv)
    args.passthrough = DEFAULT_ARGS + shlex.split(env("FAULTS_ANSIBLE_ARGS") or "") + passthrough
    try:
        args.ansible = AnsibleArgs.parse(args.passthrough)
    except (ValueError, OSError, yaml.YAMLError) as error:
        parser.error(f"ansible arguments: {error}")
    chosen = []
    for word in [w for item in (args.only or NAMES) for w in re.split(r"[\s,]+", item) if w]:
        name = NAMES[int(word) - 1] if word.isdigit() and 1 <= int(word) <= len(NAMES) else word
        if name not in NAMES:
            parser.error(f"unknown fault {word!r}; valid: {', '.join(NAMES)} (or 1-{len(NAMES)})")
        if name not in chosen:
            chosen.append(name)
    args.faults = [f for f in NAMES if f in chosen]
    try:
        args.servers = choose_servers(args.servers)
    except ValueError as error:
        parser.error(str(error))
    if args.servers and args.no_converge and len(args.servers) > 1:
        parser.error("--no-converge with several servers: each must be converged")
    if args.converge_only and args.no_converge:
        parser.error("--converge-only and --no-converge exclude each other")
    if args.converge_only and args.servers and len(args.servers) > 1:
        parser.error("--converge-only takes one server: the stack holds one at a time")
    args.run_id = args.run_id or "faults-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return args


def concurrent_servers() -> list[str]:
    """The catalogue's servers that serve more than one request at a time, in its order."""
    return [n for n, s in catalogue.load().servers.items() if s.concurrency != "serial"]


def choose_servers(words) -> list[str] | None:
    """The servers of --servers in the catalogue's order (all: the concurrent ones);
    None without any; ValueError naming the valid ones."""
    if not words:
        return None
    known = list(catalogue.load().servers)
    chosen = set()
    for word in [w for item in words for w in re.split(r"[\s,]+", item) if w]:
        if word == "all":
            chosen.update(concurrent_servers())
        elif word in known:
            chosen.add(word)
        else:
            raise ValueError(f"unknown server {word!r}; valid: all, {', '.join(known)}")
    return [name for name in known if name in chosen]


def run_fault(fault, stack: Stack) -> Outcome:
    """One fault's outcome; a fault that cannot be carried out is a FAIL that says why."""
    try:
        return fault().run(stack)
    except FaultError as error:
        return Outcome.not_carried_out(fault.name, str(error))
    except Exception as error:  # one fault's bug must not hide the others' results
        return Outcome.not_carried_out(fault.name, f"{type(error).__name__}: {error}")
    finally:
        # a load test or a host-side program that is still running (its fault broke
        # off) ends before the next fault
        for load in stack.loads:
            load.finish()
        stack.loads.clear()
        stack.executor.reap()


def run_faults(args, stack: Stack, server: str | None, results: list, path: Path):
    """Every chosen fault against the stack, a line each, faults.json after each."""
    for name in args.faults:
        fault = FAULTS[NAMES.index(name)]
        number = NAMES.index(name) + 1
        note(f"fault {number} {name}" + (f" on {server}" if server else ""))
        step = time.monotonic()
        result = render.result(number, run_fault(fault, stack), server)
        result.figures["seconds"] = round(time.monotonic() - step)
        results.append(result)
        print(result.line(), flush=True)
        render.write_results(path, args.run_id, args.passthrough, results)


def not_converged(args, server: str, why: str, results: list, path: Path):
    """A server that could not be converged: each of its faults a FAIL that says so."""
    for name in args.faults:
        outcome = Outcome.not_carried_out(name, f"{server} could not be converged: {why}")
        result = render.result(NAMES.index(name) + 1, outcome, server)
        results.append(result)
        print(result.line(), flush=True)
    render.write_results(path, args.run_id, args.passthrough, results)


def server_executor(args, run_dir: Path, server: str) -> Executor:
    """The executor of one server of --servers: -e server=NAME last, so that it wins
    over any of the passthrough's; its logs under logs/<server>/."""
    extra = {**args.ansible.extra_vars, "server": server}
    return Executor(run_dir / "logs" / server, args.ansible.inventory, extra)


def converge_stack(executor: Executor, server: str | None) -> None:
    """site.yml as a run converges the stack; FaultError saying why when it fails."""
    note("converge the stack (playbooks/site.yml)" + (f": {server}" if server else ""))
    converged = converge(executor, executor.logs, "converge")
    if not converged.ok:
        raise FaultError(f"the stack could not be converged: {converged.reason}")


def converge_only(args, executor: Executor, run_dir: Path) -> int:
    """--converge-only: site.yml as a run would converge, and nothing else."""
    server = args.servers[0] if args.servers else None
    if server is not None:
        executor = server_executor(args, run_dir, server)
    try:
        converge_stack(executor, server)
    except FaultError as error:
        print(f"faults: {error} (log: {executor.logs / 'converge.log'})", flush=True)
        return 2
    print(f"faults {args.run_id}: the stack is converged; run the faults with --no-converge")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    run_dir = PROJECT_DIR / "reports" / args.run_id
    servers = args.servers or [None]
    print(
        f"faults {args.run_id}: {', '.join(args.faults)}"
        + (f" on {', '.join(args.servers)}" if args.servers else ""),
        flush=True,
    )
    executor = Executor(run_dir / "logs", args.ansible.inventory, args.ansible.extra_vars)
    try:
        note("ask every host of the inventory")
        inventory = executor.discover()
    except (FaultError, OSError) as error:
        print(f"faults: {error}", flush=True)
        return 2

    if args.converge_only:
        return converge_only(args, executor, run_dir)

    results = []
    path = run_dir / "faults.json"
    for server in servers:
        if server is not None:
            executor = server_executor(args, run_dir, server)
        try:
            if not args.no_converge:
                converge_stack(executor, server)
            prefix = f"{server}-" if server else ""
            stack = Stack(executor, inventory, run_dir, args.run_id, cell_prefix=prefix)
        except (FaultError, OSError) as error:
            if server is None:
                print(f"faults: {error}", flush=True)
                return 2
            not_converged(args, server, str(error), results, path)
            continue
        run_faults(args, stack, server, results, path)

    if args.servers:
        print(render.matrix_table(results, args.servers, args.faults), flush=True)
    print(
        render.summary_line(
            args.run_id, results, time.monotonic() - started, str(path.relative_to(PROJECT_DIR))
        ),
        flush=True,
    )
    failing = {Verdict.FAIL.value}
    if args.no_skip:
        failing |= {Verdict.SKIP.value, Verdict.NOT_APPLICABLE.value}
    return 1 if any(r.status in failing for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
