#!/bin/sh
# make-debian-rootfs.sh DIR: a Debian 12 (bookworm) rootfs with systemd, for the
# init-system tests. Built once with debootstrap (apt-get install debootstrap) and kept:
# a second call finds DIR complete and returns at once. The mirror is the first
# Debian URI of this machine's apt sources (MIRROR overrides it).
set -eu

usage() { echo "usage: make-debian-rootfs.sh DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
dir=$1
suite=${SUITE:-bookworm}

# A finished build leaves this stamp last: anything without it is a broken attempt (or
# one of an older recipe: bump the version when the steps below change).
stamp="$dir/.mobileops-rootfs-v2"
if [ -f "$stamp" ]; then exit 0; fi
parent=$(dirname "$dir")
mkdir -p "$parent"
# One build at a time; a second caller waits and then finds the stamp.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$parent/.make-debian-rootfs.lock"
    flock 9
    if [ -f "$stamp" ]; then exit 0; fi
fi

command -v debootstrap >/dev/null 2>&1 ||
    { echo "make-debian-rootfs.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "make-debian-rootfs.sh: needs root" >&2; exit 1; }

mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
    # deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...).
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        [ -n "$mirror" ] && break
    done
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rm -rf "$dir"
work=$(mktemp -d "$parent/.debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

echo "make-debian-rootfs.sh: debootstrap $suite from $mirror into $dir (a few minutes)" >&2
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$suite" "$work" "$mirror" >&2

# A container has no consoles to log in on, no hardware clock and no kernel modules.
for unit in getty@tty1.service console-getty.service systemd-timesyncd.service; do
    rm -f "$work/etc/systemd/system/getty.target.wants/$unit" \
        "$work/etc/systemd/system/sysinit.target.wants/$unit" \
        "$work/etc/systemd/system/multi-user.target.wants/$unit"
done
echo "mobileops-debian" > "$work/etc/hostname"
: > "$work/etc/machine-id" # systemd makes one at the first boot
# The journal in memory (/run/log/journal): boots leave nothing growing in the rootfs.
mkdir -p "$work/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' > "$work/etc/systemd/journald.conf.d/volatile.conf"
rm -rf "$work/var/log/journal"
rm -rf "$work/var/cache/apt/archives"/*.deb "$work/var/lib/apt/lists"/* 2>/dev/null || true

chmod 755 "$work" # mktemp made it 0700
touch "$work/.mobileops-rootfs-v2"
mv "$work" "$dir"
trap - EXIT INT TERM
