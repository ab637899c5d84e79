# Shared by the crun/runc comparison benchmarks (run-bench.sh, security-bench.sh), sourced
# after `set -euo pipefail` with BENCH_NAME set. Parses the common options into `runs`,
# `warmup`, `keep`, `mobileops`, `inner` and `work`; bench_outer checks root and the tools,
# finds the dispatcher and makes the work directory (removed on exit unless --keep).

here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
keep=0
inner=
mobileops=${MOBILEOPS:-}

# bench_options HELP_LINES "$@"
bench_options() {
    local help=$1
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --runs) runs=$2; shift 2 ;;
            --warmup) warmup=$2; shift 2 ;;
            --mobileops) mobileops=$2; shift 2 ;;
            --keep) keep=1; shift ;;
            --inner) inner=1; work=$2; shift 2 ;;
            -h | --help) sed -n "$help" "$0"; exit 0 ;;
            *) echo "$BENCH_NAME: unknown option \`$1\`" >&2; exit 2 ;;
        esac
    done
}

# bench_outer TOOL... : root, the tools, the dispatcher, a work directory.
bench_outer() {
    [ "$(id -u)" = 0 ] || { echo "$BENCH_NAME: needs root" >&2; exit 1; }
    local tool candidate
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$BENCH_NAME: \`$tool\` not found" >&2; exit 1; }
    done
    if [ -z "$mobileops" ]; then
        for candidate in "$source_dir"/build*/bin/mobileops "$(command -v mobileops || true)"; do
            [ -x "$candidate" ] && { mobileops=$candidate; break; }
        done
    fi
    [ -x "$mobileops" ] || { echo "$BENCH_NAME: no mobileops dispatcher (--mobileops PATH)" >&2; exit 1; }
    work=$(mktemp -d "/tmp/mobileops-$BENCH_NAME.XXXXXX")
    chmod 755 "$work"
    trap '[ "$keep" = 1 ] && echo "kept $work" || rm -rf "$work"' EXIT
}
