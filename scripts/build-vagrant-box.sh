#!/usr/bin/env bash
# make vagrant-box: builds a libvirt box of Debian bookworm locally, for
# machines that cannot download one, and adds it to Vagrant. Does nothing when
# the box is already there, so a cached run costs one `vagrant box list`.
#
# The box boots its kernel directly (vagrant-libvirt's kernel/initrd/cmd_line,
# set by the box's own Vagrantfile): the disk is one ext4 file system, made
# from the debootstrap tree with `mkfs.ext4 -d`, without mounting anything or
# installing a bootloader. Inside: systemd, openssh-server, sudo, python3 and
# the `vagrant` user with Vagrant's well-known insecure key, which `vagrant up`
# replaces with a key of its own on first boot. eth0 takes DHCP (Vagrant's
# management network); the private network is left to Vagrant's Debian guest
# support, which writes a systemd-networkd file for it.
#
#   scripts/build-vagrant-box.sh           build and add, unless present
#   FDL_LOCAL_BOX=NAME                     the box's name (flask-deploy-lab/bookworm)
#   LAB_SUITE, LAB_MIRROR                  as for the lab's image
set -euo pipefail

source "$(dirname "$0")/lib/rootfs.sh"

here="$(cd "$(dirname "$0")/.." && pwd)"
box="${FDL_LOCAL_BOX:-flask-deploy-lab/bookworm}"
suite="${LAB_SUITE:-bookworm}"
mirror="${LAB_MIRROR:-http://deb.debian.org/debian}"
disk_gb="${FDL_BOX_DISK_GB:-8}"

die() { echo "vagrant-box: $*" >&2; exit 1; }

for program in vagrant debootstrap mkfs.ext4 qemu-img; do
    command -v "$program" >/dev/null ||
        die "$program is missing: run 'make vagrant-packages' (scripts/install-packages.sh --vm)"
done
((EUID == 0)) || die "debootstrap needs root: run 'sudo make vagrant-box'"
# Vagrant reads the Vagrantfile of the directory it runs in; the box needs none.
cd /

# The kernel and initrd live where libvirt's qemu user can read them
# (/var/lib/libvirt/boot, as virt-install does): a box directory under a home
# of mode 0700 is out of its reach. The box carries them too.
boot_dir="${FDL_BOX_BOOT_DIR:-/var/lib/libvirt/boot}"
boot_name="${box//\//-}"
kernel="$boot_dir/$boot_name.vmlinuz"
initrd="$boot_dir/$boot_name.initrd.img"

if vagrant box list --machine-readable 2>/dev/null |
    awk -F, -v box="$box" '$3 == "box-name" && $4 == box { found = 1 } END { exit !found }'; then
    if [[ ! -r "$kernel" || ! -r "$initrd" ]]; then
        boxes="${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/${box//\//-VAGRANTSLASH-}"
        from="$(compgen -G "$boxes/*/libvirt/vmlinuz" | tail -1)"
        [[ -n "$from" ]] || die "the box $box has no kernel: remove it (vagrant box remove $box) and run this again"
        install -D -m 0644 "$from" "$kernel"
        install -D -m 0644 "$(dirname "$from")/initrd.img" "$initrd"
        echo "vagrant-box $box: kernel and initrd put back in $boot_dir"
    fi
    echo "vagrant-box $box: present"
    exit 0
fi

# Vagrant's insecure public key, from the Vagrant that will replace it.
insecure_key="$(compgen -G '/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub' ||
    compgen -G '/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub' || true)"
insecure_key="${insecure_key%%$'\n'*}"
[[ -n "$insecure_key" ]] || die "Vagrant's insecure key (keys/vagrant.pub) is not where Vagrant keeps it"

work="$(mktemp -d "${TMPDIR:-/tmp}/vagrant-box.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
started=$SECONDS

echo "vagrant-box $box: debootstrap $suite with a kernel (about 2 minutes)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,systemd-resolved,dbus,udev,kmod,linux-image-amd64,initramfs-tools,openssh-server,sudo,python3,python3-apt,iproute2,procps,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

rootfs_trust_host_cas "$rootfs"
rootfs_apt_sources "$rootfs" "$mirror" "$suite"

echo "/dev/vda / ext4 defaults,errors=remount-ro 0 1" > "$rootfs/etc/fstab"
echo "debian" > "$rootfs/etc/hostname"

# Only the first interface is configured here: Vagrant writes
# 50-vagrant-eth1.network for the private network, and a catch-all match in
# the box would take that interface first (systemd-networkd applies the
# first file that matches).
cat > "$rootfs/etc/systemd/network/10-eth0.network" <<'NETWORK'
[Match]
Name=eth0

[Network]
DHCP=ipv4
NETWORK

# Every VM of the box gets host keys of its own, made on its first boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat > "$rootfs/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Generate this machine's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
UNIT
cat > "$rootfs/etc/ssh/sshd_config.d/vagrant.conf" <<'SSHD'
# Vagrant connects by key; no reverse lookups of the NAT address.
PasswordAuthentication no
UseDNS no
SSHD

chroot "$rootfs" useradd --create-home --shell /bin/bash vagrant
install -d -m 0700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$insecure_key" "$rootfs/home/vagrant/.ssh/authorized_keys"
echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$rootfs/etc/sudoers.d/vagrant"
chmod 0440 "$rootfs/etc/sudoers.d/vagrant"

chroot "$rootfs" systemctl enable systemd-networkd systemd-resolved ssh-host-keys.service >/dev/null 2>&1
# Package lists as of the build, as in the lab's image; the VM resolves
# through systemd-resolved, the chroot through the builder's resolver.
rm -f "$rootfs/etc/resolv.conf"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
chroot "$rootfs" apt-get -o APT::Sandbox::User=root update -qq
ln -sf /run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
rm -f "$rootfs"/var/cache/apt/archives/*.deb
# A machine-id of its own per VM (systemd makes one on first boot): the DHCP
# client identifier derives from it.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"

boxdir="$work/box"
mkdir -p "$boxdir"
cp "$(readlink -f "$rootfs/vmlinuz")" "$boxdir/vmlinuz"
cp "$(readlink -f "$rootfs/initrd.img")" "$boxdir/initrd.img"
echo "vagrant-box $box: disk image (${disk_gb} GB, sparse)"
truncate -s "${disk_gb}G" "$work/root.raw"
mkfs.ext4 -q -L root -d "$rootfs" "$work/root.raw"
qemu-img convert -O qcow2 "$work/root.raw" "$boxdir/box.img"
rm -f "$work/root.raw"

cat > "$boxdir/metadata.json" <<METADATA
{"provider": "libvirt", "format": "qcow2", "virtual_size": $disk_gb}
METADATA
install -D -m 0644 "$boxdir/vmlinuz" "$kernel"
install -D -m 0644 "$boxdir/initrd.img" "$initrd"
cat > "$boxdir/Vagrantfile" <<VAGRANTFILE
# The box's own settings: its kernel and initrd (installed by the script that
# built it; copies are in the box) boot the disk directly.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = "$kernel"
    libvirt.initrd = "$initrd"
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
    libvirt.disk_bus = "virtio"
    libvirt.graphics_type = "none"
  end
end
VAGRANTFILE
tar -C "$boxdir" -cf "$work/box.box" metadata.json Vagrantfile box.img vmlinuz initrd.img
vagrant box add --force --name "$box" "$work/box.box" >/dev/null
echo "vagrant-box $box: added in $((SECONDS - started)) s ($(du -h "$work/box.box" | cut -f1))"
