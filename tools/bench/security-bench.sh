#!/bin/bash
# security-bench.sh: what the container security settings cost at start-up.
# `mobileops container run --rm ROOTFS /bin/true` with the defaults (seccomp filter,
# podman's capability set, no_new_privs) beside the same run without them
# (`--security-opt seccomp=unconfined`, and with `--privileged` too: every capability, no
# masked paths), and crun with and without the
# same seccomp profile (mobileops-seccomp-profile --oci) and capability set, on one
# busybox rootfs, measured by hyperfine. Prints means, medians and ratios. Needs root.
#
#   tools/bench/security-bench.sh [--runs N] [--warmup N] [--mobileops PATH] [--keep]
#
# crun refuses this host's hybrid cgroup layout, so as in run-bench.sh everything runs in
# a private mount namespace with /dev/null bound over cgroup2's cgroup.controllers and
# crun's cgroup manager disabled. Nothing on the host is changed.
set -euo pipefail

BENCH_NAME=security-bench
runs=40
warmup=5
# shellcheck source=tools/bench/common.sh
. "$(dirname "$0")/common.sh"
bench_options '2,13p' "$@"

if [ -z "${inner:-}" ]; then
    bench_outer crun hyperfine jq unshare
    profile_tool=$(dirname "$mobileops")/../libexec/mobileops/mobileops-seccomp-profile
    [ -x "$profile_tool" ] || { echo "security-bench.sh: \`$profile_tool\` not built" >&2; exit 1; }

    "$source_dir/tools/make-rootfs.sh" "$work/rootfs" >/dev/null
    caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL",
           "CAP_NET_BIND_SERVICE","CAP_SETFCAP","CAP_SETGID","CAP_SETPCAP","CAP_SETUID",
           "CAP_SYS_CHROOT"]'
    "$profile_tool" --oci > "$work/seccomp.json"
    for variant in seccomp plain; do
        mkdir -p "$work/$variant"
        ln -s ../rootfs "$work/$variant/rootfs"
        (cd "$work/$variant" && crun spec)
        jq --argjson caps "$caps" --slurpfile profile "$work/seccomp.json" --arg v "$variant" '
            .process.args = ["/bin/true"] | .process.terminal = false
            | .process.noNewPrivileges = true
            | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}
            | del(.linux.resources) | del(.linux.cgroupsPath)
            | .linux.namespaces = [{"type":"pid"},{"type":"network"},{"type":"ipc"},
                                   {"type":"uts"},{"type":"mount"},{"type":"cgroup"}]
            | .mounts |= map(select(.destination != "/sys/fs/cgroup"))
            | if $v == "seccomp" then .linux.seccomp = $profile[0] else del(.linux.seccomp) end' \
            "$work/$variant/config.json" > "$work/config.json"
        mv "$work/config.json" "$work/$variant/config.json"
    done
    mkdir -p "$work/crun" "$work/mo-root" "$work/mo-run"
    echo "$mobileops" > "$work/mobileops-path"
    echo "$runs $warmup" > "$work/params"
    unshare -m --propagation private "$0" --inner "$work"
    exit $?
fi

# --- inside the private mount namespace ---
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers
fi
read -r runs warmup < "$work/params"
mobileops=$(cat "$work/mobileops-path")
export MOBILEOPS_ROOT=$work/mo-root MOBILEOPS_RUN=$work/mo-run MOBILEOPS_CONFIG=$work/none.conf

# The runs must work before they are timed.
"$mobileops" container run --rm "$work/rootfs" /bin/sh -c \
    'grep -q "^Seccomp:.2" /proc/self/status' || { echo "mobileops: no seccomp filter?" >&2; exit 1; }
crun --root "$work/crun" --cgroup-manager=disabled run --bundle "$work/seccomp" probe

hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/results.json" \
    -n "mobileops default" "$mobileops container run --rm $work/rootfs /bin/true" \
    -n "mobileops seccomp=unconfined" \
    "$mobileops container run --rm --security-opt seccomp=unconfined $work/rootfs /bin/true" \
    -n "mobileops unconfined+privileged" \
    "$mobileops container run --rm --security-opt seccomp=unconfined --privileged $work/rootfs /bin/true" \
    -n "crun seccomp" "crun --root $work/crun --cgroup-manager=disabled run --bundle $work/seccomp bench" \
    -n "crun no seccomp" "crun --root $work/crun --cgroup-manager=disabled run --bundle $work/plain bench" \
    2> >(grep -v "^Warning: Command took less than" >&2) | grep -E "^Benchmark|Time \(mean"

echo
echo "$runs runs each after $warmup warm-up runs ($(nproc) cpus, kernel $(uname -r)); milliseconds"
jq -r '.results[] | [.command, (.mean * 1000), (.median * 1000), (.min * 1000)] |
       @tsv' "$work/results.json" |
    awk -F'\t' 'BEGIN {printf "%-34s %8s %8s %8s\n", "", "mean", "median", "min"}
                {printf "%-34s %8.2f %8.2f %8.2f\n", $1, $2, $3, $4}'
jq -r '.results | map({(.command): .median}) | add |
    "\nmedian ratios:",
    "mobileops default / unconfined+privileged: \(.["mobileops default"] / .["mobileops unconfined+privileged"] * 100 | round / 100)x",
    "mobileops default / seccomp=unconfined:    \(.["mobileops default"] / .["mobileops seccomp=unconfined"] * 100 | round / 100)x",
    "crun seccomp / crun no seccomp:           \(.["crun seccomp"] / .["crun no seccomp"] * 100 | round / 100)x",
    "mobileops default / crun seccomp:         \(.["mobileops default"] / .["crun seccomp"] * 100 | round / 100)x",
    "cost of the seccomp filter (medians): mobileops \((.["mobileops default"] - .["mobileops seccomp=unconfined"]) * 1e5 | round / 100) ms, crun \((.["crun seccomp"] - .["crun no seccomp"]) * 1e5 | round / 100) ms"' \
    "$work/results.json"
