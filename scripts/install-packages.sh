#!/usr/bin/env bash
# Installs the Debian packages the controller needs, and only those missing:
# a machine that has them all costs one dpkg-query. Without root, or without
# apt, it installs nothing and doctor.sh says what is missing, one line per
# program, with the package that provides it.
#
# scripts/prerequisites.txt lists the programs the project calls;
# tests/repo/test_prerequisites.py proves that each comes from a package in
# the Depends closure of this list (`install-packages.sh --list` prints it).
#
#   install-packages.sh [--vm]          install (--vm: also what `vagrant up`
#                                       with libvirt needs, scripts/prerequisites-vm.txt)
#   install-packages.sh --list [--vm]   print the packages
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
packages=(
    make git
    # the local lab: containers running systemd, a base image made here;
    # netavark needs iptables, which podman only suggests
    podman runc netavark aardvark-dns iptables debootstrap
    # the controller's virtualenv; uWSGI and psycopg2 compile from source
    python3-venv python3-dev gcc libpq-dev
    # the app's tests start a throwaway PostgreSQL, and a Redis (the task broker)
    postgresql redis-server
    # the Vagrantfile is validated offline; Ansible reaches VMs over SSH
    vagrant openssh-client
    # the report is rendered in a headless browser by the end-to-end test
    chromium fonts-dejavu-core
)
# Vagrant VMs on this machine: libvirt, its qemu driver and networks, and
# what the local box is built with (make vagrant-box). Not in `make setup`:
# only `make vagrant-packages` and the Vagrant targets need them.
vm_packages=(
    vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils dnsmasq-base e2fsprogs
    # reaps the qemu processes libvirtd daemonizes, where PID 1 does not
    tini
)
list=false
for arg in "$@"; do
    case "$arg" in
        --list) list=true ;;
        --vm) packages+=("${vm_packages[@]}") ;;
        *) echo "usage: install-packages.sh [--list] [--vm]" >&2; exit 2 ;;
    esac
done
if $list; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "packages: present"
    exit 0
fi
if ! command -v apt-get >/dev/null || ((EUID != 0)); then
    why="this needs root and apt-get (Debian 12): run 'sudo make setup'"
    command -v apt-get >/dev/null || why="this script knows apt-get only (Debian 12)"
    "$here/doctor.sh" --programs-only | grep -v '^ok ' || true
    echo "packages: missing ${missing[*]}; $why" >&2
    exit 1
fi
echo "packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
