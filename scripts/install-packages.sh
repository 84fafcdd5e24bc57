#!/usr/bin/env bash
# Installs the Debian packages the project needs on the controller, and only
# those missing: a machine that has them all costs one dpkg-query.
set -euo pipefail

packages=(
    # the local lab: containers running systemd, a base image made here
    podman runc debootstrap netavark aardvark-dns
    # the controller's virtualenv; uWSGI and psycopg2 compile from source
    python3-venv python3-dev gcc libpq-dev
    # the app's tests start a throwaway PostgreSQL
    postgresql
    # the Vagrantfile is validated offline
    vagrant
    # the report is rendered in a headless browser by the end-to-end test
    chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "packages: present"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "missing packages: ${missing[*]}; this script knows apt-get only (Debian 12)" >&2
    exit 1
fi
if ((EUID != 0)); then
    echo "missing packages: ${missing[*]}; run 'sudo make setup' or install them" >&2
    exit 1
fi
echo "packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged PostgreSQL cluster; the tests bring their own.
