#!/bin/bash
# run-bench.sh: `mobileops container run --rm ROOTFS /bin/true` beside `crun run` and
# `runc run` on the same busybox rootfs with the same namespaces (pid, net, ipc, uts,
# mount, cgroup), runs interleaved, medians and ratios printed. Needs root.
#
#   tools/bench/run-bench.sh [--runs N] [--warmup N] [--mobileops PATH] [--keep]
#
# This host has hybrid cgroups (v1 controllers + cgroup2 at /sys/fs/cgroup/unified with
# `hugetlb` listed in its cgroup.controllers). crun refuses that layout before looking at
# its cgroup manager ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2", libcrun/cgroup.c), so the whole benchmark runs in a private mount namespace
# where /dev/null is bound over that one file, and crun uses --cgroup-manager=disabled.
# runc has no way to skip cgroups: it creates (and removes) v1 cgroups on every run.
# The config.json comes from `crun spec` with the resources and the /sys/fs/cgroup mount
# dropped and a cgroup namespace added. Nothing on the host is changed.
set -euo pipefail

BENCH_NAME=run-bench
runs=30
warmup=3
# shellcheck source=tools/bench/common.sh
. "$(dirname "$0")/common.sh"
bench_options '2,8p' "$@"

if [ -z "${inner:-}" ]; then
    bench_outer crun runc jq unshare

    "$source_dir/tools/make-rootfs.sh" "$work/bundle/rootfs"
    (cd "$work/bundle" && crun spec)
    jq '.process.args = ["/bin/true"] | .process.terminal = false
        | del(.linux.resources) | del(.linux.cgroupsPath)
        | .linux.namespaces = [{"type":"pid"},{"type":"network"},{"type":"ipc"},
                               {"type":"uts"},{"type":"mount"},{"type":"cgroup"}]
        | .mounts |= map(select(.destination != "/sys/fs/cgroup"))' \
        "$work/bundle/config.json" > "$work/config.json"
    mv "$work/config.json" "$work/bundle/config.json"
    mkdir -p "$work/crun" "$work/runc" "$work/mo-root" "$work/mo-run"
    echo "$mobileops" > "$work/mobileops-path"
    echo "$runs $warmup" > "$work/params"

    unshare -m --propagation private "$0" --inner "$work"
    exit $?
fi

# --- inside the private mount namespace ---
# cgroupfs files report size 0: test the content.
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    mount --bind /dev/null /sys/fs/cgroup/unified/cgroup.controllers
fi
read -r runs warmup < "$work/params"
mobileops=$(cat "$work/mobileops-path")
bundle=$work/bundle

run_one() {
    case "$1" in
        crun) crun --root "$work/crun" --cgroup-manager=disabled run --bundle "$bundle" "bench-crun-$i" ;;
        runc) runc --root "$work/runc" run --bundle "$bundle" "bench-runc-$i" ;;
        mobileops) MOBILEOPS_ROOT="$work/mo-root" MOBILEOPS_RUN="$work/mo-run" \
                       "$mobileops" container run --rm "$bundle/rootfs" /bin/true ;;
    esac
}

names=(crun runc)
i=probe
if [ -z "$mobileops" ] || [ ! -x "$mobileops" ]; then
    echo "note: no mobileops dispatcher found (build it, or pass --mobileops PATH); measuring crun and runc only"
elif ! probe=$(run_one mobileops 2>&1 </dev/null); then
    echo "note: \`$mobileops container run\` does not work yet ($probe); measuring crun and runc only"
else
    names+=(mobileops)
fi

# Milliseconds of one run, measured with bash's clock (no extra fork per sample).
time_one() {
    local t0 t1
    t0=$EPOCHREALTIME
    if ! run_one "$1" </dev/null >"$work/out" 2>&1; then
        echo "run-bench.sh: \`$1\` failed:" >&2
        cat "$work/out" >&2
        exit 1
    fi
    t1=$EPOCHREALTIME
    echo "$t0 $t1" | awk '{printf "%.3f\n", ($2 - $1) * 1000}'
}

for ((w = 0; w < warmup; w++)); do
    for n in "${names[@]}"; do i="w$w"; time_one "$n" >/dev/null; done
done
for ((r = 0; r < runs; r++)); do
    for n in "${names[@]}"; do
        i=$r
        time_one "$n" >> "$work/times-$n"
    done
done

median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
stats() { sort -n "$1" | awk '{s += $1; a[NR] = $1} END {printf "%8.2f %8.2f %8.2f", s / NR, a[1], a[NR]}'; }

echo
echo "$runs runs each, interleaved, after $warmup warm-up rounds ($(nproc) cpus, kernel $(uname -r))"
printf "%-10s %9s %8s %8s %8s\n" runtime "median ms" mean min max
declare -A med
for n in "${names[@]}"; do
    med[$n]=$(median "$work/times-$n")
    printf "%-10s %9.2f %s\n" "$n" "${med[$n]}" "$(stats "$work/times-$n")"
done
echo
awk -v c="${med[crun]}" -v r="${med[runc]}" 'BEGIN {printf "runc / crun:      %.2fx\n", r / c}'
if [ -n "${med[mobileops]:-}" ]; then
    awk -v m="${med[mobileops]}" -v c="${med[crun]}" -v r="${med[runc]}" \
        'BEGIN {printf "mobileops / crun: %.2fx (target <= 1.5x)\nmobileops / runc: %.2fx (target < 1x)\n", m / c, m / r}'
fi
