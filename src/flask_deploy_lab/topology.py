"""The topology (inventory/topology.yml, or any inventory of the same shape),
read by Ansible's own inventory code and checked once for the lab, the
Vagrantfile and the tests.

    python -m flask_deploy_lab.topology [SOURCE ...]   # the machines as JSON, or exit 2
    python -m flask_deploy_lab.topology --subnet 10.89.0.0/24 [SOURCE ...]

Every host needs ``node_cpus`` (> 0, a fraction is fine) and a whole
``node_memory_mb`` (>= 128), and belongs to at least one of the stack's
groups and to no other (``lab``, the lab inventory's own group, aside).
Machines come in topology order with the address Vagrant gives them: a host
added at the end of the file leaves the others' addresses alone. With
``--subnet`` (the lab network's) each machine also gets ``lab_address``: the
same host number in that subnet, the fixed address of its lab container, so
that a container stopped and started again keeps it like a VM or a real host.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from flask_deploy_lab import PROJECT_DIR

STACK_GROUPS = ("db", "upstream", "broker", "app", "worker", "proxy", "loadgen")
# groups an inventory may add around the stack's: Ansible's own, and the lab's
STRUCTURAL_GROUPS = {"all", "ungrouped", "lab"}
DEFAULT_TOPOLOGY = PROJECT_DIR / "inventory" / "topology.yml"
# 192.168.56.0/24 sits inside VirtualBox's default host-only range; the
# hosts take .10 upwards in topology order.
NETWORK_PREFIX = "192.168.56."
ADDRESSES = [f"{NETWORK_PREFIX}{n}" for n in range(10, 255)]


class TopologyError(ValueError):
    """The topology cannot make machines; the message names the host and why."""


@dataclass(frozen=True)
class Machine:
    name: str
    address: str
    node_cpus: float | int
    cpus: int  # whole vCPUs of a VM
    cpu_cap: int  # VirtualBox's --cpuexecutioncap: the share of each vCPU it may use
    memory_mb: int
    groups: list[str]


def _number(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_inventory(paths: list[Path]):
    """[(host, vars, groups)] in topology order, as Ansible reads the inventory."""
    for path in paths:
        if not path.exists():
            raise TopologyError(
                f"cannot read the topology: {path}: no such file (set FDL_TOPOLOGY to another file)"
            )
    # An inventory Ansible cannot parse is an error, not an empty inventory.
    os.environ["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"
    os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "false")
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    try:
        inventory = InventoryManager(loader=loader, sources=[str(p) for p in paths])
    except AnsibleError as error:
        message = " ".join(str(error).split())
        where = ", ".join(map(str, paths))
        raise TopologyError(f"topology {where} is not a valid inventory: {message}") from None
    variables = VariableManager(loader=loader, inventory=inventory)
    hosts = []
    for host in inventory.get_hosts():
        host_vars = variables.get_vars(host=host, include_hostvars=False)
        groups = [g.name for g in host.get_groups()]
        hosts.append((host.name, host_vars, groups))
    return hosts


def plan(*paths: Path) -> list[Machine]:
    """The machines of the topology (one inventory, or several sources as
    Ansible merges them); TopologyError naming every bad host."""
    paths = [Path(p) for p in paths] or [DEFAULT_TOPOLOGY]
    path = ", ".join(map(str, paths))
    hosts = read_inventory(paths)
    errors = []
    if not hosts:
        errors.append(f"topology {path} has no hosts")
    if len(hosts) > len(ADDRESSES):
        extra = [name for name, _, _ in hosts[len(ADDRESSES) :]]
        errors.append(
            f"topology host '{extra[0]}' has no address left: {ADDRESSES[0]}-"
            f"{ADDRESSES[-1].rsplit('.', 1)[1]} holds {len(ADDRESSES)} hosts and the topology "
            f"has {len(hosts)} ({', '.join(extra)} left over)"
        )
    machines = []
    for index, (name, host_vars, groups) in enumerate(hosts[: len(ADDRESSES)]):
        in_groups = [g for g in groups if g not in STRUCTURAL_GROUPS]
        cpus = _number(host_vars.get("node_cpus"))
        memory = _number(host_vars.get("node_memory_mb"))
        if not (
            cpus is not None
            and cpus > 0
            and memory is not None
            and memory >= 128
            and memory == math.floor(memory)
            and in_groups
            and set(in_groups) <= set(STACK_GROUPS)
        ):
            errors.append(
                f"topology host '{name}' needs node_cpus (> 0), node_memory_mb (>= 128) and "
                f"groups from {', '.join(STACK_GROUPS)}; it has "
                f"node_cpus={host_vars.get('node_cpus', 'missing')}, "
                f"node_memory_mb={host_vars.get('node_memory_mb', 'missing')}, "
                f"groups={','.join(in_groups) or 'none'}"
            )
            continue
        whole = math.ceil(cpus)
        machines.append(
            Machine(
                name=name,
                address=ADDRESSES[index],
                node_cpus=int(cpus) if cpus == int(cpus) else cpus,
                cpus=whole,
                cpu_cap=min(100, max(1, math.floor(cpus * 100 / whole + 0.5))),
                memory_mb=int(memory),
                groups=[g for g in STACK_GROUPS if g in in_groups],
            )
        )
    if errors:
        raise TopologyError(f"{path}:\n  " + "\n  ".join(errors))
    return machines


def lab_addresses(machines: list[Machine], subnet: str) -> dict[str, str]:
    """{name: the machine's host number (.10 upwards) in `subnet`}; TopologyError
    when the subnet is not an IPv4 network with room for every host number."""
    if not subnet:
        raise TopologyError("the lab network has no IPv4 subnet (podman network inspect)")
    try:
        network = ipaddress.IPv4Network(subnet)
    except ValueError as error:
        raise TopologyError(f"lab subnet {subnet!r} is not an IPv4 network: {error}") from None
    found = {}
    for machine in machines:
        number = int(machine.address.rsplit(".", 1)[1])
        if number >= network.num_addresses - 1:
            raise TopologyError(
                f"lab subnet {subnet} has no host number {number} for '{machine.name}' "
                f"(it holds .1-.{network.num_addresses - 2}): use a /24 or larger"
            )
        found[machine.name] = str(network.network_address + number)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flask_deploy_lab.topology",
        description="Check a topology and print its machines as JSON.",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, help="inventory sources (default: the topology)"
    )
    parser.add_argument("--subnet", help="the lab network's subnet: add each lab_address")
    args = parser.parse_args(argv)
    try:
        machines = plan(*args.paths)
        lab = lab_addresses(machines, args.subnet) if args.subnet is not None else {}
    except TopologyError as error:
        print(error, file=sys.stderr)
        return 2
    found = [asdict(m) | ({"lab_address": lab[m.name]} if lab else {}) for m in machines]
    print(json.dumps({"machines": found}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
