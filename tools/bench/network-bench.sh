#!/usr/bin/env bash
# network-bench.sh: what bridge networking costs, beside podman's (netavark) in one run.
# Everything runs inside a network namespace this script makes and deletes, so the
# machine's own interfaces and firewall are never touched.
#
#   1. start: `container run --rm ROOTFS /bin/true` with --network none and with the
#      default bridge network (address lease, veth pair, rules, hosts file, and the
#      detach at exit), for mobileops and for podman (runc, cgroupfs, vfs); the ratio
#      bridge/none is what networking adds to a start.
#   2. throughput: 2 GiB over TCP between two containers on one bridge network, against
#      the same over loopback in the namespace itself; both with tcpblast.c (built here,
#      static, so the busybox rootfs runs the same binary as the host).
#
# Options: --runs N (default 10), --warmup N (default 2), --mobileops PATH, --keep
set -euo pipefail
BENCH_NAME=network-bench
runs=10
warmup=2
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
bench_options '2,15p' "$@"
bench_outer hyperfine podman runc ip nsenter python3 cc

ns=mobench$$
ip netns add "$ns"
N="nsenter --net=/run/netns/$ns"
$N ip link set lo up
"$source_dir/tools/make-rootfs.sh" "$work/rootfs" >/dev/null
export MOBILEOPS_ROOT=$work/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
mo="$N $mobileops"
P="$N podman --root $work/podman/root --runroot $work/podman/run --storage-driver vfs"
P="$P --cgroup-manager cgroupfs --events-backend none --runtime runc"
U="--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
$P import "$work/rootfs.tar" localhost/net-bench >/dev/null
cleanup() {
    $mo container delete --force srv >/dev/null 2>&1 || true
    $P rm -af >/dev/null 2>&1 || true
    $P rmi -af >/dev/null 2>&1 || true
    ip netns delete "$ns" 2>/dev/null || true
    [ "$keep" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

hyperfine --runs "$runs" --warmup "$warmup" --export-json "$work/start.json" \
    -n "mobileops --network none" "$mo container run --rm --network none $work/rootfs /bin/true" \
    -n "mobileops bridge" "$mo container run --rm --network bridge $work/rootfs /bin/true" \
    -n "podman --network none" "$P run --rm $U --network none localhost/net-bench /bin/true" \
    -n "podman bridge" "$P run --rm $U localhost/net-bench /bin/true"

# Throughput: a sink container, a source container sending 2 GiB.
cc -O2 -static -o "$work/rootfs/bin/tcpblast" "$here/tcpblast.c"
$mo network create --subnet 10.66.0.0/24 benchnet >/dev/null
$mo container boot --network benchnet srv "$work/rootfs" /bin/tcpblast -l 5001 >/dev/null
$N "$work/rootfs/bin/tcpblast" -l 5002 >/dev/null &
sink=$!
sleep 0.3
srv=$($mo network inspect benchnet | python3 -c 'import json,sys; print(json.load(sys.stdin)["containers"][0]["addresses"][0].split("/")[0])')
hyperfine --runs 3 --warmup 1 --export-json "$work/tcp.json" \
    -n "bridge: container to container" \
    "$mo container run --rm --network benchnet $work/rootfs /bin/tcpblast $srv 5001 2048" \
    -n "loopback in the namespace" "$N $work/rootfs/bin/tcpblast 127.0.0.1 5002 2048"
kill "$sink"
echo "the sink container received (bytes per run): $($mo logs show srv | tr '\n' ' ')"

python3 - "$work/start.json" "$work/tcp.json" <<'PY'
import json, sys
s = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
print("\nstart (container run --rm /bin/true)        mean        +-")
for name, r in s.items():
    print("  %-30s %9.1f ms %6.1f" % (name, r["mean"] * 1e3, r["stddev"] * 1e3))
for who in ("mobileops", "podman"):
    none, bridge = s[who + " --network none"]["mean"], s[who + " bridge"]["mean"]
    print("  %-9s bridge adds %6.1f ms (%.2fx of --network none)" % (who, (bridge - none) * 1e3, bridge / none))
print("  mobileops bridge start / podman bridge start: %.2fx" % (s["mobileops bridge"]["mean"] / s["podman bridge"]["mean"]))
t = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
print("\nTCP, 2 GiB (tcpblast)                         time      MB/s")
for name, r in t.items():
    print("  %-36s %6.2f s %8.0f" % (name, r["mean"], 2048 / r["mean"]))
b, l = t["bridge: container to container"]["mean"], t["loopback in the namespace"]["mean"]
print("  bridge/loopback throughput: %.2f" % (l / b))
PY
