#!/usr/bin/env bash
# logs-bench.sh: container output capture beside podman's default log path (conmon
# writing the k8s-file log), and search latency over 1M and 10M lines; one run, hyperfine.
#
#   1. capture: a busybox container writing flat out, from `start` to its exit recorded
#      (every line stored by then), for
#        - 1M short lines (`seq 1 1000000`, 6.9 MB), and
#        - 200k lines of 500 bytes (100 MB);
#      mobileops: `container start && container wait` (the monitor reads the pipes into the
#      log service); podman: `podman run -d && podman wait` (conmon writes ctr.log),
#      podman with --runtime runc, --cgroup-manager cgroupfs, vfs storage, in a root of its
#      own. The same commands with `/bin/true` are measured too, so the start-up cost of
#      each can be taken out: "net" is the capture alone.
#   2. search: `mobileops logs search` for a word on one line among 1M and among 10M lines
#      (in-process time from --json, and the whole command), and a phrase common to many
#      lines; `grep -c` over podman's 1M-line ctr.log beside it.
#
# Options: --runs N (default 5), --warmup N (default 1), --mobileops PATH, --keep,
#          --no-10m (skip the 10M-line journal: it takes ~40 s to write and index)
set -euo pipefail
BENCH_NAME=logs-bench
runs=5
warmup=1
big=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-10m) big=0; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
bench_options '2,19p' ${args[@]+"${args[@]}"}
bench_outer hyperfine podman runc python3

"$source_dir/tools/make-rootfs.sh" "$work/rootfs" >/dev/null
export MOBILEOPS_ROOT=$work/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
mo="$mobileops"

# podman in a root of its own; --ulimit within this machine's hard limits (podman raises
# RLIMIT_NOFILE/NPROC to its defaults otherwise, which needs CAP_SYS_RESOURCE).
P="podman --root $work/podman/root --runroot $work/podman/run --storage-driver vfs"
P="$P --cgroup-manager cgroupfs --events-backend none --runtime runc"
U="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
$P import "$work/rootfs.tar" localhost/logs-bench >/dev/null
cleanup_podman() { $P rm -af >/dev/null 2>&1 || true; $P rmi -af >/dev/null 2>&1 || true; }
trap 'cleanup_podman; [ "$keep" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT

long=$(printf 'x%.0s' $(seq 1 499))
declare -A work_cmd=(
    [short]="/bin/busybox seq 1 1000000"
    [long]="/bin/busybox yes $long | /bin/busybox head -n 200000"
)

# Each workload twice: writing to stdout (captured) and to /dev/null (the same work with
# nothing captured); the difference is what capturing costs, whatever else each engine
# does around the container. The mobileops containers are created once and started again
# each run (the journal grows by one run each time, within a 1Gi retention); podman makes
# a new container each run (hyperfine's --prepare does not run before warm-ups, so a fixed
# name would clash), all removed at the end.
cmds=()
for w in short long; do
    "$mo" container create --log-max-size 1Gi "$w" "$work/rootfs" /bin/sh -c "${work_cmd[$w]}" >/dev/null
    "$mo" container create "$w-null" "$work/rootfs" /bin/sh -c "${work_cmd[$w]} >/dev/null" >/dev/null
    for v in "$w" "$w-null"; do
        cmds+=(-n "mobileops $v" "$mo container start $v && $mo container wait $v")
    done
    for v in "$w" "$w-null"; do
        redirect=""
        [ "$v" = "$w-null" ] && redirect=" >/dev/null"
        cmds+=(-n "podman $v" "n=p\$(date +%s%N); $P run -d --name \$n --label bench=$v $U localhost/logs-bench /bin/sh -c '${work_cmd[$w]}$redirect' >/dev/null && $P wait \$n")
    done
done
hyperfine --runs "$runs" --warmup "$warmup" --export-json "$work/capture.json" "${cmds[@]}"

# Every line is there: the last run of each, counted.
short_lines=$("$mo" logs show short --tail 1000000 | wc -l)
long_lines=$("$mo" logs show long --tail 200000 | wc -l)
pshort=$($P ps -a --filter label=bench=short --format '{{.Names}}' | head -n 1)
podman_log=$($P inspect "$pshort" --format '{{.HostConfig.LogConfig.Path}}')
podman_lines=$(wc -l < "$podman_log")
echo "stored: mobileops short $short_lines (last run), long $long_lines; podman short $podman_lines records in $(basename "$podman_log")"

# Search: 1M lines with a needle in the middle, and 10M.
needle() {
    local name=$1 n=$2
    "$mo" container create --log-max-size 2Gi "$name" "$work/rootfs" /bin/sh -c \
        "/bin/busybox seq 1 $((n / 2)); echo 'disk quota xyzzy exceeded on /dev/sdz' >&2; /bin/busybox seq $((n / 2 + 1)) $n" >/dev/null
    "$mo" container start "$name" >/dev/null
    "$mo" container wait "$name" >/dev/null
    local t0=$(date +%s.%N)
    "$mo" logs search --container "$name" xyzzy >/dev/null # indexes what the monitor did not
    local t1=$(date +%s.%N)
    echo "$name: first search (index catch-up) $(python3 -c "print('%.2f s' % ($t1 - $t0))")"
}
needle n1m 1000000
[ "$big" = 1 ] && needle n10m 10000000
search_ms() {
    python3 - "$@" <<'PY'
import json, subprocess, sys, statistics
cmd = sys.argv[1:]
ms = [json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)["milliseconds"]
      for _ in range(20)]
print("%-40s in-process %.2f ms (median of 20, min %.2f, max %.2f)" %
      (" ".join(cmd[2:]), statistics.median(ms), min(ms), max(ms)))
PY
}
search_ms "$mo" --json logs search --container n1m xyzzy
search_ms "$mo" --json logs search --container n1m "exceeded on"
search_ms "$mo" --json logs search --container n1m --limit 100 777
[ "$big" = 1 ] && search_ms "$mo" --json logs search --container n10m xyzzy
[ "$big" = 1 ] && search_ms "$mo" --json logs search --container n10m --limit 100 7777

cmds=(-n "mobileops logs search (1M)" "$mo logs search --container n1m xyzzy")
[ "$big" = 1 ] && cmds+=(-n "mobileops logs search (10M)" "$mo logs search --container n10m xyzzy")
cmds+=(-n "grep -c over podman's 1M ctr.log" "grep -c xyzzy $podman_log || true")
hyperfine --runs $((runs * 4)) --warmup "$warmup" --export-json "$work/search.json" -i "${cmds[@]}"

python3 - "$work/capture.json" "$work/search.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
work = {"short": ("1M lines of 1-7 digits", 1_000_000, 6_888_896),
        "long": ("200k lines of 500 B", 200_000, 200_000 * 500)}
print("\ncapture: start to exit recorded (mean)      stdout    /dev/null   capture cost   lines/s    MB/s")
for w, (what, lines, size) in work.items():
    cost = {}
    for who in ("mobileops", "podman"):
        out, null = r["%s %s" % (who, w)], r["%s %s-null" % (who, w)]
        cost[who] = out
        print("  %-9s %-24s %9.0f ms %9.0f ms %+11.0f ms %9.0f %7.1f" % (
            who, what, out * 1e3, null * 1e3, (out - null) * 1e3, lines / out, size / out / 1e6))
    print("  mobileops/podman, start to exit: %.2fx" % (cost["mobileops"] / cost["podman"]))
s = {x["command"]: x for x in json.load(open(sys.argv[2]))["results"]}
print("\nsearch (whole command)")
for name, x in s.items():
    print("  %-36s %7.1f ms +- %.1f" % (name, x["mean"] * 1e3, x["stddev"] * 1e3))
PY
