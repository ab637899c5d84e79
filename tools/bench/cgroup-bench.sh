#!/bin/sh
# Start-up cost of resource limits: `mobileops container run --rm ROOTFS /bin/true`
# without limits beside the same with --memory, --cpus and --pids-limit, interleaved.
# Usage: tools/bench/cgroup-bench.sh [BUILD_DIR] [RUNS]   (needs root and hyperfine)
set -eu
build=$(cd "${1:-build}" && pwd)
runs=${2:-30}
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
"$src/tools/make-rootfs.sh" "$tmp/rootfs" >/dev/null
export MOBILEOPS_ROOT="$tmp/root" MOBILEOPS_RUN="$tmp/run"
mo="$build/bin/mobileops"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$tmp/r.json" \
  "$mo container run --rm $tmp/rootfs /bin/true" \
  "$mo container run --rm --memory 256Mi --cpus 1 --pids-limit 100 $tmp/rootfs /bin/true" >/dev/null
python3 - "$tmp/r.json" <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
m = [statistics.median(r["times"]) * 1000 for r in res]
print(f"no limits:   {m[0]:7.2f} ms (median)")
print(f"with limits: {m[1]:7.2f} ms (median), ratio {m[1] / m[0]:.2f}x")
PY
