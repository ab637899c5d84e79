#!/usr/bin/env bash
# integrity-bench.sh: manifest creation and verification throughput beside sha256sum, and
# what --verify adds to a container's start; one run, hyperfine.
#
#   1. throughput, on an image of ~100 MB of real files (libraries, binaries and docs
#      copied from this host's /usr, over a busybox rootfs), page cache warm:
#        - `integrity record --again IMAGE` (a manifest: walk, stat, xattrs, sha256 of every
#          file, Merkle root, stored in the state store),
#        - `integrity verify IMAGE` with integrity.threads = 1 and the default (one per
#          CPU),
#        - `sha256sum` over the same files, single-threaded (find | xargs -0 sha256sum),
#      reported as MB/s and files/s;
#   2. start-up: `container run --rm --verify=off|lazy|strict IMAGE /bin/true`, for the
#      busybox image (2 MB) and the 100 MB image; each start waits until the verifier a
#      lazy start left has finished.
#
# Options: --runs N (default 5), --warmup N (default 1), --mobileops PATH, --keep,
#          --size MB (default 100)
set -euo pipefail
BENCH_NAME=integrity-bench
runs=5
warmup=1
size_mb=100
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size_mb=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
bench_options '2,17p' ${args[@]+"${args[@]}"}
bench_outer hyperfine python3 sha256sum

"$source_dir/tools/make-rootfs.sh" "$work/rootfs" >/dev/null
export MOBILEOPS_ROOT=$work/root MOBILEOPS_RUN=$work/run MOBILEOPS_CONFIG=$work/none.conf
mo="$mobileops"
: > "$work/none.conf"

# ~size_mb of real files: as they come from /usr/lib, /usr/bin and /usr/share, in order.
cp -a "$work/rootfs" "$work/big"
python3 - "$work/big/payload" "$size_mb" <<'PY'
import os, shutil, sys
dest, limit = sys.argv[1], int(sys.argv[2]) * 1000 * 1000
total = 0
for top in ("/usr/share", "/usr/lib/x86_64-linux-gnu", "/usr/bin"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            src = os.path.join(root, name)
            if os.path.islink(src) or not os.path.isfile(src):
                continue
            size = os.path.getsize(src)
            # a distribution's mix: many small files, no single library over 2 MB
            if size > 2 * 1000 * 1000 or total + size > limit:
                continue
            target = os.path.join(dest, os.path.relpath(src, "/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(src, target)
            total += size
            if total >= limit * 0.99:
                sys.exit(0)
PY
"$mo" image build-rootfs -q "$work/rootfs" bb:1 >/dev/null
"$mo" image build-rootfs -q "$work/big" big:1 >/dev/null
layer=$("$mo" integrity show big:1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["path"])')
files=$(find "$layer" -type f | wc -l)
bytes=$(find "$layer" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "image big:1: $files files, $((bytes / 1000000)) MB in $layer"
echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

threads1=$work/threads1.conf
printf '[integrity]\nthreads = 1\n' > "$threads1"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/throughput.json" \
    -n "record (manifest creation)" "$mo integrity record --again big:1" \
    -n "verify, 1 thread" "env MOBILEOPS_CONFIG=$threads1 $mo integrity verify -q big:1" \
    -n "verify, $(nproc) threads" "$mo integrity verify -q big:1" \
    -n "sha256sum, 1 thread" "sh -c 'cd $layer && find . -type f -print0 | xargs -0 sha256sum >/dev/null'"

python3 - "$work/throughput.json" "$files" "$bytes" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
files, size = int(sys.argv[2]), int(sys.argv[3])
base = next(r["mean"] for r in results if r["command"].startswith("sha256sum"))
print()
print(f"{'':28} {'mean':>9} {'MB/s':>8} {'files/s':>9} {'vs sha256sum':>13}")
for r in results:
    m = r["mean"]
    print(f"{r['command']:28} {m*1000:7.1f}ms {size/m/1e6:8.0f} {files/m:9.0f} {base/m:12.2f}x")
PY

echo
# each start waits for the previous lazy verifier to finish: a start is measured beside at
# most its own verifier, as when containers are not started back to back
quiet="while pgrep -f '[i]ntegrity verify' >/dev/null; do sleep 0.02; done"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$work/start.json" \
    --prepare "sh -c \"$quiet\"" \
    -n "bb off" "$mo container run --rm --verify=off bb:1 /bin/true" \
    -n "bb lazy" "$mo container run --rm --verify=lazy bb:1 /bin/true" \
    -n "bb strict" "$mo container run --rm --verify=strict bb:1 /bin/true" \
    -n "big off" "$mo container run --rm --verify=off big:1 /bin/true" \
    -n "big lazy" "$mo container run --rm --verify=lazy big:1 /bin/true" \
    -n "big strict" "$mo container run --rm --verify=strict big:1 /bin/true"
sh -c "$quiet"
python3 - "$work/start.json" <<'PY'
import json, sys
results = {r["command"]: r["mean"] for r in json.load(open(sys.argv[1]))["results"]}
print()
for image in ("bb", "big"):
    off = results[f"{image} off"]
    for mode in ("lazy", "strict"):
        m = results[f"{image} {mode}"]
        print(f"{image:4} {mode:7} {m*1000:7.1f} ms  (+{(m-off)*1000:6.1f} ms, {m/off:5.2f}x off)")
PY
