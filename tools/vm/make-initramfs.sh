#!/bin/sh
# make-initramfs.sh KERNEL_VERSION OUTPUT
# Build the cgroup v2 test guest's initramfs: busybox-static, tools/vm/guest-init as /init
# and the modules (with their dependencies, in load order) for 9p over virtio-pci, taken
# from /lib/modules/KERNEL_VERSION.
set -eu

kver=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
moddir=/lib/modules/$kver
busybox=${MO_VM_BUSYBOX:-/bin/busybox}
wanted="virtio_pci 9pnet_virtio 9p"

[ -f "$moddir/modules.dep" ] || { echo "make-initramfs: no \`$moddir/modules.dep\`" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' ||
    { echo "make-initramfs: \`$busybox\` is not statically linked (install busybox-static)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/modules"
cp "$busybox" "$stage/bin/busybox"
cp "$here/guest-init" "$stage/init"
chmod 755 "$stage/init"

# Resolve a module name to its modules.dep line's path (names may use - or _).
path_of() {
    awk -F: -v want="$1" '{
        n = $1; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n); gsub(/-/, "_", n)
        w = want; gsub(/-/, "_", w)
        if (n == w) { print $1; exit }
    }' "$moddir/modules.dep"
}
deps_of() {
    awk -F: -v p="$1" '$1 == p { print $2; exit }' "$moddir/modules.dep"
}
# Depth-first, dependencies before dependants, each module once.
: > "$stage/modules/order"
add() {
    ko=$(basename "$1" | sed -E 's/\.(xz|zst|gz)$//')
    grep -qxF "$ko" "$stage/modules/order" && return 0
    for d in $(deps_of "$1"); do add "$d"; done
    ko=$(basename "$1" | sed -E 's/\.(xz|zst|gz)$//')
    case "$1" in
        *.ko.xz) xz -dc "$moddir/$1" > "$stage/modules/$ko" ;;
        *.ko.zst) zstd -qdc "$moddir/$1" > "$stage/modules/$ko" ;;
        *.ko.gz) gzip -dc "$moddir/$1" > "$stage/modules/$ko" ;;
        *) cp "$moddir/$1" "$stage/modules/$ko" ;;
    esac
    echo "$ko" >> "$stage/modules/order"
}
for m in $wanted; do
    p=$(path_of "$m")
    if [ -z "$p" ]; then
        # Built in: nothing to load.
        grep -q "/$m.ko" "$moddir/modules.builtin" 2>/dev/null && continue
        echo "make-initramfs: module \`$m\` not found in \`$moddir\`" >&2
        exit 1
    fi
    add "$p"
done

mkdir -p "$(dirname "$out")"
tmp=$out.tmp.$$
if command -v cpio > /dev/null; then
    (cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -9 > "$tmp"
else
    (cd "$stage" && find . | "$busybox" cpio -o -H newc) | gzip -9 > "$tmp"
fi
mv "$tmp" "$out"
