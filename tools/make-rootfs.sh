#!/bin/sh
# make-rootfs.sh DIR: a small complete busybox rootfs for tests and benchmarks, built from
# the host's busybox-static (Debian: apt-get install busybox-static). Nothing is fetched.
set -eu

usage() { echo "usage: make-rootfs.sh DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
dir=$1

busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
    if [ -x "$candidate" ] && file -L "$candidate" 2>/dev/null | grep -q "statically linked"; then
        busybox=$candidate
        break
    fi
done
if [ -z "$busybox" ]; then
    # `file` may be missing: trust a busybox that needs no loader.
    for candidate in /bin/busybox /usr/bin/busybox; do
        if [ -x "$candidate" ] && ! ldd "$candidate" >/dev/null 2>&1; then busybox=$candidate; break; fi
    done
fi
[ -n "$busybox" ] || { echo "make-rootfs.sh: no static busybox found (install busybox-static)" >&2; exit 1; }

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root home/user tmp proc sys dev run var/tmp
chmod 1777 tmp var/tmp
chmod 700 root
cp "$busybox" bin/busybox
chmod 755 bin/busybox
# As root, busybox installs its own applet links in one process (0.1 s instead of ~3 s
# for a link per applet); otherwise link each applet by its install path.
if [ "$(id -u)" = 0 ] && chroot . /bin/busybox --install -s 2>/dev/null; then
    rm -f linuxrc # an initrd's entry point, not wanted in a container
else
    ./bin/busybox --list-full | while read -r applet; do
        case "$applet" in
            bin/busybox) continue ;;
            bin/*) target=busybox ;;
            sbin/*) target=../bin/busybox ;;
            usr/bin/* | usr/sbin/*) target=../../bin/busybox ;;
            *) continue ;;
        esac
        [ -e "$applet" ] || ln -s "$target" "$applet"
    done
fi

cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
daemon:x:1:
tty:x:5:
users:x:100:user
user:x:1000:
nogroup:x:65534:
GROUP
chown 1000:1000 home/user
echo "mobileops" > etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > etc/hosts
: > etc/resolv.conf
