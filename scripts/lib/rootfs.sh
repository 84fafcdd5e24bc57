# Shared by the scripts that make a Debian tree with debootstrap: the lab's
# image (build-image.sh) and the Vagrant box (build-vagrant-box.sh).
# Source it; the functions take the tree's path and change only the tree.

# Hosts behind a TLS-inspecting proxy trust extra CAs; so must the tree, or
# pip and apt inside it cannot reach their registries.
rootfs_trust_host_cas() {
    local rootfs="$1"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
}

# The suite's main, updates and security archives.
rootfs_apt_sources() {
    local rootfs="$1" mirror="$2" suite="$3"
    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
}
