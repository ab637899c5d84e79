#!/bin/sh
# Dispatcher overhead: median wall time of `mobileops --version`, of a trivial workflow
# (Lua state, script load, one plugin call) and of `/bin/true`, interleaved runs.
# Usage: tools/bench/dispatch.sh [BUILD_DIR] [RUNS]
set -eu
build=$(cd "${1:-build}" && pwd)
runs=${2:-300}
command -v hyperfine >/dev/null || { echo "dispatch.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir -p "$tmp/scripts"
cat > "$tmp/scripts/ping.lua" <<'LUA'
local mo = require("mobileops")
local wf = mo.workflow{ name = "ping", summary = "one plugin call" }
wf:verb{ name = "go", summary = "ping", run = function() mo.plugins.good.ping{} end }
return wf
LUA
export MOBILEOPS_ROOT="$tmp/root" MOBILEOPS_RUN="$tmp/run" MOBILEOPS_SCRIPT_PATH="$tmp/scripts"
export MOBILEOPS_PLUGIN_PATH="$build/tests/fixtures/plugins/good"
"$build/bin/mobileops" ping go # warm the plugin cache
hyperfine -N --warmup 50 --runs "$runs" --export-json "$tmp/r.json" \
  /bin/true "$build/bin/mobileops --version" "$build/bin/mobileops ping go" >/dev/null
python3 - "$tmp/r.json" <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: statistics.median(r["times"]) * 1000 for r in res}
base = med["/bin/true"]
for cmd, m in med.items():
    print(f"{m:7.3f} ms  (+{m - base:6.3f} ms over /bin/true)  {cmd.split('/')[-1]}")
PY
