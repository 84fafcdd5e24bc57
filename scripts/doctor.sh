#!/usr/bin/env bash
# make doctor: one line per prerequisite of the controller (present or
# MISSING, its version, the Debian package that provides it, what it is for;
# for a missing one, the command that installs it). Exits 1 when anything is
# missing. Reads scripts/prerequisites.txt; needs nothing but bash and dpkg.
#
#   doctor.sh                  programs, the virtualenv and the lab's image
#   doctor.sh --programs-only  programs only (before the venv exists)
#   doctor.sh --summary        the missing lines and a count (make setup)
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
manifest="${FDL_PREREQUISITES:-$here/prerequisites.txt}"
mode="${1:-}"
missing=0
present=0

line() {  # state name version source note
    if [[ "$1" == ok ]]; then
        present=$((present + 1))
        [[ "$mode" == --summary ]] && return
    else
        missing=$((missing + 1))
    fi
    printf '%-8s %-13s %-28s %-20s %s\n' "$1" "$2" "$3" "$4" "$5"
}

while read -r name package path note; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    # PATH may be a glob (PostgreSQL's binaries live under its major version).
    found=""
    for candidate in $path; do
        [[ -e "$candidate" ]] && { found="$candidate"; break; }
    done
    if [[ -n "$found" ]]; then
        version="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null)"
        line ok "$name" "${version:-?}" "($package)" "$note"
    else
        line MISSING "$name" "-" "($package)" "$note: apt-get install $package"
    fi
done < "$manifest"

if [[ "$mode" != --programs-only ]]; then
    if [[ -f "$root/.venv/.installed" ]]; then
        line ok venv "$("$root/.venv/bin/python" -c 'import platform; print(platform.python_version())')" "(requirements)" "the pinned Python toolchain in .venv"
    else
        line MISSING venv "-" "(requirements)" "the pinned Python toolchain: make venv"
    fi
    image="${LAB_IMAGE:-localhost/flask-deploy-lab/debian:bookworm}"
    if [[ -x /usr/bin/podman ]] && "$root/lab/podman" image exists "$image" 2>/dev/null; then
        line ok image "bookworm" "(debootstrap)" "the lab's base image $image"
    else
        line MISSING image "-" "(debootstrap)" "the lab's base image $image: make image"
    fi
fi
[[ "$mode" == --summary ]] && echo "doctor: $present present, $missing missing"
((missing == 0))
