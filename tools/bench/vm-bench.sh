#!/bin/bash
# vm-bench.sh [--runs N] [--warmup N] [--mobileops PATH] [--keep]
#
# Micro-VM containers (the krun runtime): boot-to-exit of
#   mobileops container run --rm --runtime krun ROOTFS /bin/true
# beside the very qemu command mobileops builds for that VM (`mobileops vm command`), run
# by hand with its stdout, stderr and control fds set up the same way: the ratio is
# mobileops's overhead (dispatcher, spec, record, cgroup, monitor, log, launcher). Then
# the host memory of an idle VM container (`sleep` in the guest): qemu's RSS and PSS and
# the launcher's and monitor's. Runs alternate, so drift hits both sides alike.
# Needs root, qemu-system-x86 and linux-image-amd64; prints the accelerator it used.
set -euo pipefail
BENCH_NAME=vm-bench
runs=10
warmup=1
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
bench_options 2,11p "$@"
bench_outer qemu-system-x86_64 python3

rootfs=$work/rootfs
"$source_dir/tools/make-rootfs.sh" "$rootfs" >/dev/null
export MOBILEOPS_ROOT=$work/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
: >"$MOBILEOPS_CONFIG"
"$mobileops" vm prepare -q | sed -n 2p
"$mobileops" vm command --dir "$work/hand" "$rootfs" /bin/true >"$work/hand.cmd"
"$mobileops" --json vm command --dir "$work/hand" "$rootfs" /bin/true >"$work/hand.json"
echo "by hand: $(cut -c1-200 "$work/hand.cmd") ..."

python3 - "$mobileops" "$rootfs" "$work/hand.json" "$runs" "$warmup" <<'EOF'
import json, os, select, socket, statistics, subprocess, sys, time

mobileops, rootfs, hand_file, runs, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
work = os.path.dirname(hand_file)
argv = json.load(open(hand_file))["argv"]

def by_hand():
    # fd 3, 4: the guest's stdout and stderr (pipes we drain); fd 5: the control socket
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    def setup():
        # out of the way first: a source may sit on 3, 4 or 5
        high = [os.dup2(src, 20 + i) for i, src in enumerate((out_w, err_w, theirs.fileno()))]
        for src, dst in zip(high, (3, 4, 5)):
            os.dup2(src, dst)
    start = time.perf_counter()
    p = subprocess.Popen(argv, preexec_fn=setup, pass_fds=(3, 4, 5), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(out_w); os.close(err_w); theirs.close()
    # Drain the guest's output and answer its "drain <out> <err>" once that much arrived
    # (guest/protocol.h), as the launcher does.
    got = {out_r: 0, err_r: 0}
    want, control, open_fds = None, b"", {out_r, err_r, ours.fileno()}
    while out_r in open_fds or err_r in open_fds:
        ready, _, _ = select.select(list(open_fds), [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
            elif fd in got:
                got[fd] += len(data)
            else:
                control += data
                if b"\n" in control and control.startswith(b"drain "):
                    _, a, b = control.split(b"\n")[0].split()
                    want, control = (int(a), int(b)), b""
        if want and got[out_r] >= want[0] and got[err_r] >= want[1]:
            os.write(ours.fileno(), b"drained\n")
            want = None
    p.wait()
    elapsed = time.perf_counter() - start
    os.close(out_r); os.close(err_r); ours.close()
    console = open(os.path.join(work, "hand", "console.log"), errors="replace").read()
    if p.returncode != 0 or "mobileops-exit: 0" not in console:
        sys.exit(f"qemu by hand failed (status {p.returncode}); console:\n{console[-2000:]}")
    return elapsed

def through_mobileops():
    start = time.perf_counter()
    r = subprocess.run([mobileops, "container", "run", "--rm", "--runtime", "krun", rootfs, "/bin/true"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit("mobileops run failed: " + r.stderr.decode())
    return elapsed

for _ in range(warmup):
    by_hand(); through_mobileops()
hand, ours = [], []
for _ in range(runs):
    hand.append(by_hand())
    ours.append(through_mobileops())

def show(name, xs):
    print(f"{name:<44} mean {statistics.mean(xs)*1000:7.0f} ms  median {statistics.median(xs)*1000:7.0f} ms"
          f"  min {min(xs)*1000:7.0f} ms  sd {statistics.pstdev(xs)*1000:5.0f} ms  ({len(xs)} runs)")
show("qemu by hand (the same command line)", hand)
show("mobileops container run --rm --runtime krun", ours)
print(f"ratio mobileops / by hand: {statistics.median(ours)/statistics.median(hand):.2f}x (medians),"
      f" {statistics.mean(ours)/statistics.mean(hand):.2f}x (means)")
EOF

# Idle memory: a VM container whose program sleeps.
"$mobileops" container boot --runtime krun idle "$rootfs" /bin/sh -c 'echo ready; exec sleep 1000' >/dev/null
for _ in $(seq 600); do
    "$mobileops" logs show idle 2>/dev/null | grep -q ready && break
    sleep 0.1
done
sleep 2 # let the guest settle after its boot
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/$3"; }
total_rss=0
total_pss=0
echo "idle VM container (default 2 vCPUs, 512 MiB):"
for pid in $("$mobileops" --json container top idle | python3 -c 'import json,sys; print(" ".join(str(p["pid"]) for p in json.load(sys.stdin)))') \
           $("$mobileops" --json container inspect idle | python3 -c 'import json,sys; print(json.load(sys.stdin)["monitor_pid"])'); do
    [ -r "/proc/$pid/smaps_rollup" ] || continue
    rss=$(kib "$pid" Rss smaps_rollup)
    pss=$(kib "$pid" Pss smaps_rollup)
    total_rss=$((total_rss + rss))
    total_pss=$((total_pss + pss))
    printf '  %-22s RSS %7d KiB  PSS %7d KiB\n' "$(cut -c1-22 "/proc/$pid/comm")" "$rss" "$pss"
done
printf '  %-22s RSS %7d KiB  PSS %7d KiB\n' total "$total_rss" "$total_pss"
"$mobileops" container delete --force idle >/dev/null
