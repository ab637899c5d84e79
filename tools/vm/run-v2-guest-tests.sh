#!/bin/sh
# run-v2-guest-tests.sh BUILD_DIR [GTEST_ARGS...]
#
# Run a root test binary (default: the cgroup plugin's cgroup_root_tests; the container
# CLI suite too, see tests/vm) in a qemu guest booted with Debian's linux-image-amd64
# kernel and `cgroup_no_v1=all`, so the v2 code paths run on a real, pure cgroup2
# hierarchy whatever this host mounts. The guest sees the host root read-only over
# virtio-9p and makes it its root mount, so the test binary runs unchanged.
# Prints the guest's output; exits with the test binary's status, 77 when something it
# needs is missing (ctest SKIP_RETURN_CODE), 1 when the guest fails to report.
#
# Environment:
#   MO_VM_TEST_BIN   test binary (default BUILD_DIR/bin/cgroup_root_tests)
#   MO_VM_KERNEL     kernel image (default the newest /boot/vmlinuz-* with its modules)
#   MO_VM_ACCEL      qemu accelerator (default tcg: the /dev/kvm here cannot boot a stock
#                    kernel; set kvm where it can)
#   MO_VM_TIMEOUT    seconds before the guest is killed (default 600)
#   MO_VM_MEMORY     guest memory (default 1G), MO_VM_CPUS guest cpus (default 2)
set -eu

skip() {
    echo "SKIP: $*"
    exit 77
}
die() {
    echo "run-v2-guest-tests: $*" >&2
    exit 1
}

[ $# -ge 1 ] || die "usage: $0 BUILD_DIR [GTEST_ARGS...]"
build=$(cd "$1" 2>/dev/null && pwd) || die "no build directory \`$1\`"
shift
here=$(cd "$(dirname "$0")" && pwd)

bin=${MO_VM_TEST_BIN:-$build/bin/cgroup_root_tests}
[ -x "$bin" ] || skip "no test binary \`$bin\` (build the cgroup_root_tests target)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

if [ -n "${MO_VM_KERNEL:-}" ]; then
    kernel=$MO_VM_KERNEL
else
    kernel=
    for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V); do
        [ -f "/lib/modules/${k#/boot/vmlinuz-}/modules.dep" ] && kernel=$k
    done
fi
[ -n "$kernel" ] && [ -r "$kernel" ] ||
    skip "no kernel image with modules in /boot (apt-get install linux-image-amd64)"
kver=${kernel##*/vmlinuz-}
[ -f "/lib/modules/$kver/modules.dep" ] || skip "no modules for \`$kver\` in /lib/modules"

busybox=${MO_VM_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || skip "no busybox (apt-get install busybox-static)"
[ "$(id -u)" -eq 0 ] || skip "needs root (9p passthrough of the host root)"

vm=$build/vm
mkdir -p "$vm"
# One guest at a time per build (they share the initramfs and two cores).
exec 9> "$vm/.lock"
flock 9

# The initramfs is rebuilt when the kernel, busybox or the guest scripts change.
initrd=$vm/initramfs-$kver.cpio.gz
key=$( (
    echo "$kver"
    cat "$here/guest-init" "$here/make-initramfs.sh" "$busybox"
) | sha256sum | cut -d' ' -f1)
if [ ! -f "$initrd" ] || [ "$(cat "$initrd.key" 2>/dev/null)" != "$key" ]; then
    echo "building $initrd"
    MO_VM_BUSYBOX=$busybox sh "$here/make-initramfs.sh" "$kver" "$initrd"
    echo "$key" > "$initrd.key"
fi

name=$(basename "$bin")
results=$vm/results-$name
rm -rf "$results"
mkdir -p "$results"
xml=$results/$name.xml
# The job: sourced by the guest's /init. JOB_ARGV holds one argument per line.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
# The guest's console is a terminal whatever ours is: colour only when ours is one too.
color=no
[ -t 1 ] && color=yes
argv=$(
    printf '%s\n' "$bin" "--gtest_output=xml:$xml" "--gtest_color=$color" "$@"
)
case "$argv" in *"'"*) die "arguments must not contain single quotes" ;; esac
{
    echo "JOB_BIN=$(quote "$bin")"
    echo "JOB_RESULTS=$(quote "$results")"
    echo "JOB_ARGV=$(quote "$argv")"
} > "$results/job"

accel=${MO_VM_ACCEL:-tcg}
case "$accel" in tcg) accel=tcg,thread=multi ;; esac
timeout_s=${MO_VM_TIMEOUT:-600}
echo "booting $kernel (accel $accel, timeout ${timeout_s}s): $bin $*"
start=$(date +%s)
set +e
timeout -k 10 "$timeout_s" "$qemu" \
    -accel "$accel" -cpu max -smp "${MO_VM_CPUS:-2}" -m "${MO_VM_MEMORY:-1G}" \
    -machine q35 -nodefaults -no-user-config -display none -monitor none -serial stdio \
    -no-reboot \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 cgroup_no_v1=all" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    -virtfs "local,path=$results,mount_tag=results,security_model=passthrough,multidevs=remap" \
    < /dev/null
rc=$?
set -e
echo "guest ran $(($(date +%s) - start))s"

[ $rc -eq 124 ] || [ $rc -eq 137 ] && die "guest timed out after ${timeout_s}s"
[ $rc -eq 0 ] || die "qemu exited with status $rc"
[ -f "$results/guest-error" ] && die "guest setup failed: $(cat "$results/guest-error")"
[ -f "$results/status" ] || die "the guest did not report the tests' status"
status=$(cat "$results/status")
echo "$name in the v2 guest exited with $status (report: $xml)"
exit "$status"
