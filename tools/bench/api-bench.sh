#!/bin/sh
# The REST API under load: 100 containers created, then wrk on loopback TCP (bearer token)
# against GET /api/v1/containers (requests/s, p99 latency), beside the same list through
# the CLI (hyperfine) and a route the server answers without a command (/api/v1/version),
# which shows what the server itself costs per request; then where one CLI run spends its time.
# Usage: tools/bench/api-bench.sh [BUILD_DIR] [SECONDS] [CONNECTIONS]   (root, wrk, hyperfine)
set -eu
build=$(cd "${1:-build}" && pwd)
secs=${2:-10}
conns=${3:-8}
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
mo="$build/bin/mobileops"
export MOBILEOPS_ROOT="$tmp/root" MOBILEOPS_RUN="$tmp/run" MOBILEOPS_CONFIG="$tmp/none.conf"
server=""
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  for n in $("$mo" --json container list --all 2>/dev/null | python3 -c 'import json,sys; print(" ".join(c["id"] for c in json.load(sys.stdin)))'); do
    "$mo" container delete --force "$n" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$src/tools/make-rootfs.sh" "$tmp/rootfs" >/dev/null
"$mo" image build-rootfs -q "$tmp/rootfs" bench:1 >/dev/null
i=0
while [ $i -lt 100 ]; do
  "$mo" container create "api-bench-$i" bench:1 sleep 600 >/dev/null
  i=$((i + 1))
done

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/token"
chmod 600 "$tmp/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$mo" serve --listen "127.0.0.1:$port" --token-file "$tmp/token" --max-requests 256 2>"$tmp/serve.log" &
server=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
auth="Authorization: Bearer $(cat "$tmp/token")"
n=$(curl -s -H "$auth" "http://127.0.0.1:$port/api/v1/containers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "containers listed through the API: $n"

for path in /api/v1/containers /api/v1/version; do
  echo "== wrk -c $conns -t 2 -d ${secs}s GET $path"
  wrk -c "$conns" -t 2 -d "${secs}s" --latency -H "$auth" "http://127.0.0.1:$port$path" |
    awk '/Requests\/sec|Latency  |99%|Non-2xx|Socket errors/'
done

echo "== the same list through the CLI, and where one command's time goes (hyperfine)"
# --version: exec and dynamic linking only; events list: plus the workflow, Lua and the
# store; container list: plus the runtime plugin and the state of each container.
hyperfine -N --warmup 3 --runs 40 "$mo --version" "$mo --json events list --limit 1" \
  "$mo --json container list --all" 2>/dev/null | awk '/Benchmark|Time/'
