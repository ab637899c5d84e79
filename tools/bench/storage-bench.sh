#!/usr/bin/env bash
# storage-bench.sh: image unpacking and container start from an image, beside the
# reference tools in one run (hyperfine), as ratios.
#
#   1. unpack a multi-layer OCI image (a Debian 12 rootfs in 4 gzip layers, ~155 MB):
#        tar -xzf of each layer in turn        the practical limit
#        umoci unpack                          the reference image tool
#        mobileops image load                  into a fresh store: blobs copied and
#                                              verified, each layer extracted once
#        mobileops image unpack                every layer applied into one directory
#   2. start a container: `container run --rm IMAGE /bin/true` (overlay of the image's
#      layers) against `container run --rm DIR /bin/true` (a directory)
#
# Options: --runs N (default 5), --warmup N (default 1), --mobileops PATH, --keep,
#          --rootfs DIR (default /var/cache/mobileops-test/debian-bookworm, made by
#          tools/make-debian-rootfs.sh when missing), --tmpfs (unpack into a tmpfs: the
#          CPU cost alone, without the disk's metadata writeback, which dominates and
#          varies by seconds between runs on a small VM disk)
#
# Each unpack starts after `sync`, so no run pays for the previous run's deletions.
set -euo pipefail
BENCH_NAME=storage-bench
runs=5
warmup=1
rootfs=/var/cache/mobileops-test/debian-bookworm
args=()
tmpfs=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rootfs) rootfs=$2; shift 2 ;;
        --tmpfs) tmpfs=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
bench_options '2,23p' ${args[@]+"${args[@]}"}
bench_outer hyperfine umoci python3 tar

if [ ! -d "$rootfs/usr" ]; then
    echo "making the Debian rootfs in $rootfs (debootstrap, a few minutes)" >&2
    "$source_dir/tools/make-debian-rootfs.sh" "$rootfs" >&2
fi
layout=$work/layout
python3 "$here/make-layered-image.py" "$rootfs" "$layout" 4
out=$work
if [ "$tmpfs" = 1 ]; then
    out=$work/tmpfs
    mkdir "$out"
    mount -t tmpfs -o size=4g mobileops-bench "$out"
    trap 'umount "$out"; [ "$keep" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT
fi

export MOBILEOPS_ROOT=$out/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
layers=$(python3 -c '
import json, sys
index = json.load(open(sys.argv[1] + "/index.json"))
m = json.load(open(sys.argv[1] + "/blobs/sha256/" + index["manifests"][0]["digest"][7:]))
print(" ".join(l["digest"][7:] for l in m["layers"]))' "$layout")
untar="mkdir $out/out-tar"
for l in $layers; do untar="$untar && tar -xzf $layout/blobs/sha256/$l -C $out/out-tar"; done

# A second store, loaded once, for `image unpack`.
MOBILEOPS_ROOT=$out/root2 "$mobileops" image load --quiet --allow-devices --name bench:1 "$layout" >/dev/null

hyperfine --runs "$runs" --warmup "$warmup" --export-json "$work/unpack.json" \
    --prepare "rm -rf $out/out-tar $out/out-umoci $out/out-mo $out/root; sync" \
    -n "tar -x" "$untar" \
    -n "umoci unpack" "umoci unpack --image $layout:bench $out/out-umoci" \
    -n "mobileops image load" "$mobileops image load --quiet --allow-devices --name bench:1 $layout" \
    -n "mobileops image unpack" "MOBILEOPS_ROOT=$out/root2 $mobileops image unpack bench:1 $out/out-mo"

# Container start: the busybox rootfs as a directory and as an image.
"$source_dir/tools/make-rootfs.sh" "$work/busybox" >/dev/null
"$mobileops" image build-rootfs --quiet "$work/busybox" bench-busybox:1 >/dev/null
hyperfine --runs $((runs * 4)) --warmup "$warmup" --export-json "$work/start.json" \
    -n "run from a directory" "$mobileops container run --rm $work/busybox /bin/true" \
    -n "run from an image" "$mobileops container run --rm bench-busybox:1 /bin/true"

python3 - "$work/unpack.json" "$work/start.json" <<'PY'
import json, sys
for path, base in ((sys.argv[1], "tar -x"), (sys.argv[2], "run from a directory")):
    results = {r["command"]: r for r in json.load(open(path))["results"]}
    ref = results[base]["mean"]
    for name, r in results.items():
        print("%-24s %8.1f ms  +- %5.1f   %.2fx of %s" % (name, r["mean"] * 1e3, r["stddev"] * 1e3,
                                                       r["mean"] / ref, base))
    print()
PY
