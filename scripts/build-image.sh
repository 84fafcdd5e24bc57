#!/usr/bin/env bash
# Builds the lab's base image locally: Debian bookworm with systemd, python3
# and sudo, from debootstrap, imported into podman. Does nothing when the
# image is already there, so a cached run costs one `podman image exists`.
#
# LAB_IMAGE names the image; set it to an image you can pull instead and this
# script only checks that it exists.
set -euo pipefail

source "$(dirname "$0")/lib/rootfs.sh"

here="$(cd "$(dirname "$0")/.." && pwd)"
podman="$here/lab/podman"
image="${LAB_IMAGE:-localhost/flask-deploy-lab/debian:bookworm}"
suite="${LAB_SUITE:-bookworm}"
mirror="${LAB_MIRROR:-http://deb.debian.org/debian}"

if "$podman" image exists "$image"; then
    echo "image $image: present"
    exit 0
fi
if [[ "$image" != localhost/* ]]; then
    echo "image $image: pulling"
    exec "$podman" pull "$image"
fi

command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: run 'make setup' (or apt-get install debootstrap)" >&2
    exit 1
}

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/lab-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT

echo "image $image: debootstrap $suite (about a minute)"
# python3-apt and ca-certificates save every converge a bootstrap step;
# procps and iproute2 are what testinfra and the sampler read.
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,iproute2,procps,ca-certificates \
    "$suite" "$rootfs" "$mirror" >/dev/null

rootfs_trust_host_cas "$rootfs"
rootfs_apt_sources "$rootfs" "$mirror" "$suite"
# A container has no consoles or hardware to wait for.
chroot "$rootfs" systemctl mask \
    getty@tty1.service console-getty.service systemd-udevd.service \
    systemd-remount-fs.service sys-kernel-config.mount >/dev/null 2>&1 || true
# Package lists as of the build, so that the roles' apt tasks (cache valid
# for an hour) start from a complete cache instead of an empty one.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" apt-get -o APT::Sandbox::User=root update -qq
rm -f "$rootfs"/var/cache/apt/archives/*.deb "$rootfs/etc/resolv.conf"
: > "$rootfs/etc/machine-id"

tar -C "$rootfs" -c . | "$podman" import \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null 2>&1
echo "image $image: built"
