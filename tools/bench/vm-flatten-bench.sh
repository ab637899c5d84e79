#!/bin/bash
# vm-flatten-bench.sh [--runs N] [--warmup N] [--mobileops PATH] [--keep]
#
# What a micro-VM gains from a flattened image root: boot-to-exit of `mobileops vm run`
# on the root a container gets from a layered image (busybox below 9 layers of small
# files, each whiting out and replacing some of the one below), once as the overlay of
# the image's layers (a namespace container's root) and once as an overlay whose only
# lower layer is the image's flattened copy (what the storage service's `flatten` option
# mounts). Two programs: /bin/true (boot and exit) and a walk of the whole root over 9p
# (`find / -xdev`, stat of every entry). Runs alternate, so drift hits both sides alike.
# Needs root, qemu-system-x86 and linux-image-amd64.
set -euo pipefail
BENCH_NAME=vm-flatten-bench
runs=5
warmup=1
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
bench_options 2,11p "$@"
bench_outer qemu-system-x86_64 python3 tar

export MOBILEOPS_ROOT=$work/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
: >"$MOBILEOPS_CONFIG"
"$source_dir/tools/make-rootfs.sh" "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/base.tar" .

# The layered image: an OCI layout of the base and 9 layers of 300 files each.
python3 - "$work/layout" "$work/base.tar" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, base = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "blobs", "sha256"))
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(out, "blobs", "sha256", d), "wb").write(data)
    return "sha256:" + d
def layer(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data=b"", kind=tarfile.REGTYPE):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        add("data", kind=tarfile.DIRTYPE)
        for d in range(10):
            add(f"data/d{d}", kind=tarfile.DIRTYPE)
            for f in range(30):
                add(f"data/d{d}/l{n}-f{f}", f"layer {n} file {f}\n".encode())
            if n > 1:
                add(f"data/d{d}/.wh.l{n-1}-f0")  # whiteout one file of the layer below
                add(f"data/d{d}/l{n-1}-f1", b"replaced\n")
    return buf.getvalue()
raws = [open(base, "rb").read()] + [layer(n) for n in range(1, 10)]
layers, diffs = [], []
for raw in raws:
    gz = gzip.compress(raw, mtime=0)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz), "size": len(gz)})
    diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
                       "layers": layers}).encode()
m = blob(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": len(manifest),
           "annotations": {"org.opencontainers.image.ref.name": "bench.test/layered:1"}}]}, open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
"$mobileops" image load -q "$work/layout" >/dev/null
"$mobileops" vm prepare -q | sed -n 2p

flat=$work/over/merged
cleanup() {
    umount "$flat" 2>/dev/null || true
    "$mobileops" container delete --force layered >/dev/null 2>&1 || true
}
trap 'cleanup; [ "$keep" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT

# The overlay of the layers: a created container's root (mounted at create).
"$mobileops" container create layered bench.test/layered:1 /bin/true >/dev/null
layered=$("$mobileops" --json container inspect layered | python3 -c 'import json,sys; print(json.load(sys.stdin)["rootfs"])')
# The same over the flattened copy: one lower layer, a writable layer of its own.
"$mobileops" image unpack bench.test/layered:1 "$work/flat" >/dev/null
mkdir -p "$work/over/upper" "$work/over/work" "$work/over/merged"
mount -t overlay overlay -o "lowerdir=$work/flat,upperdir=$work/over/upper,workdir=$work/over/work" "$work/over/merged"
entries=$("$mobileops" vm run "$flat" /bin/sh -c 'find / -xdev | wc -l')
[ "$entries" = "$("$mobileops" vm run "$layered" /bin/sh -c 'find / -xdev | wc -l')" ] ||
    { echo "$BENCH_NAME: the two roots differ" >&2; exit 1; }
echo "image: 10 layers; the guest sees $entries entries on its root"

python3 - "$mobileops" "$layered" "$flat" "$runs" "$warmup" <<'EOF'
import os, statistics, subprocess, sys, time
mobileops, layered, flat, runs, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
programs = {"/bin/true": ["/bin/true"],
            "find / -xdev (stat every entry)": ["/bin/sh", "-c", "find / -xdev -exec stat -c %s {} + >/dev/null"]}
def once(root, argv):
    start = time.perf_counter()
    r = subprocess.run([mobileops, "vm", "run", root] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit("vm run failed: " + r.stderr.decode())
    return time.perf_counter() - start
# The host's share of a walk: what qemu's 9p server does for the guest (an lstat of every
# entry through the overlay), without the guest and TCG around it.
def host_walk(root):
    start = time.perf_counter()
    for _ in range(20):
        for d, dirs, files in os.walk(root):
            for n in dirs + files:
                os.lstat(os.path.join(d, n))
    return (time.perf_counter() - start) / 20
a = [host_walk(layered) for _ in range(5)]
b = [host_walk(flat) for _ in range(5)]
print(f"{'host walk (lstat every entry)':<32} {'overlay of the 10 layers':<32} median {statistics.median(a)*1000:7.2f} ms")
print(f"{'host walk (lstat every entry)':<32} {'overlay over the flattened copy':<32} median {statistics.median(b)*1000:7.2f} ms")
print(f"{'host walk (lstat every entry)':<32} ratio flattened / layers: {statistics.median(b)/statistics.median(a):.2f}x (medians)")
for name, argv in programs.items():
    for _ in range(warmup):
        once(layered, argv); once(flat, argv)
    a, b = [], []
    for _ in range(runs):
        a.append(once(layered, argv)); b.append(once(flat, argv))
    for label, xs in (("overlay of the 10 layers", a), ("overlay over the flattened copy", b)):
        print(f"{name:<32} {label:<32} median {statistics.median(xs)*1000:7.0f} ms  mean {statistics.mean(xs)*1000:7.0f} ms"
              f"  min {min(xs)*1000:7.0f} ms  ({len(xs)} runs)")
    print(f"{name:<32} ratio flattened / layers: {statistics.median(b)/statistics.median(a):.2f}x (medians)")
EOF
