#!/bin/sh
# The SDK as a third party sees it: install the build tree into a fresh prefix, build the
# hello example against that prefix alone (CMake package) and the C example with
# pkg-config, check both export nothing but the entry point, then run a user workflow that
# calls them through the build tree's dispatcher.
#
#   sdk_out_of_tree.sh SOURCE_DIR BUILD_DIR CMAKE CC NM PKG_CONFIG VERSION
#
# The build tree's plugin directory also holds the in-tree builds of `hello` and
# `hello_c`; a plugin found on $MOBILEOPS_PLUGIN_PATH shadows a built-in one of the same
# name, so the dispatcher runs the copies built here.
set -eu

if [ $# -ne 7 ]; then
    echo "usage: $0 SOURCE_DIR BUILD_DIR CMAKE CC NM PKG_CONFIG VERSION" >&2
    exit 2
fi
src=$1 build=$2 cmake=$3 cc=$4 nm=$5 pkgconfig=$6 version=$7

umask 022
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mobileops-sdk.XXXXXX")
cleanup() {
    chmod -R u+rwX "$tmp" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

step() { printf '\n== %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
# run LOG CMD...: run quietly, show the log when it fails.
run() {
    log=$1
    shift
    rc=0
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$log" >&2
        fail "\`$*\` exited with status $rc"
    fi
}
# Exactly one dynamic symbol defined, and it is the entry point.
check_exports() {
    syms=$("$nm" -D --defined-only "$1" | awk '{ print $NF }')
    [ "$syms" = "mobileops_plugin_entry" ] ||
        fail "$1 must export only \`mobileops_plugin_entry\`, exports: $(echo "$syms" | tr '\n' ' ')"
    echo "ok: $1 exports only mobileops_plugin_entry"
}

# DESTDIR keeps an install rule with an absolute destination (/etc/...) inside $tmp.
step "install the build tree"
prefix=/opt/mobileops
root=$tmp/install$prefix
run "$tmp/install.log" env "DESTDIR=$tmp/install" "$cmake" --install "$build" --prefix "$prefix"
for h in abi.h host.h plugin.h services.h mobileops.h plugin.hpp; do
    [ -f "$root/include/mobileops/$h" ] || fail "not installed: include/mobileops/$h"
done
config=$(find "$root" -path '*/cmake/mobileops/mobileopsConfig.cmake' | head -n 1)
[ -n "$config" ] || fail "not installed: lib/cmake/mobileops/mobileopsConfig.cmake"
pc=$(find "$root" -path '*/pkgconfig/mobileops.pc' | head -n 1)
[ -n "$pc" ] || fail "not installed: lib/pkgconfig/mobileops.pc"
echo "ok: headers, $config, $pc"

# A copy of the example, so nothing can reach the source tree by a relative path.
step "build sdk/examples/hello with find_package(mobileops)"
mkdir -p "$tmp/src"
cp -R "$src/sdk/examples/hello" "$src/sdk/examples/hello-c" "$tmp/src/"
run "$tmp/hello-configure.log" env -u CMAKE_PREFIX_PATH -u mobileops_DIR -u mobileops_ROOT \
    "$cmake" -S "$tmp/src/hello" -B "$tmp/hello-build" "-DCMAKE_PREFIX_PATH=$root"
found=$(sed -n 's/^mobileops_DIR:PATH=//p' "$tmp/hello-build/CMakeCache.txt")
[ "$found" = "$(dirname "$config")" ] ||
    fail "find_package(mobileops) found \`$found\`, expected \`$(dirname "$config")\`"
run "$tmp/hello-build.log" "$cmake" --build "$tmp/hello-build"
if grep -rlF "$src/sdk" "$tmp/hello-build" >/dev/null 2>&1; then
    fail "the out-of-tree build refers to the source tree: $(grep -rlF "$src/sdk" "$tmp/hello-build")"
fi
run "$tmp/hello-install.log" "$cmake" --install "$tmp/hello-build" --prefix "$tmp/user"
hello=$(find "$tmp/user" -path '*/mobileops/plugins/hello.so' | head -n 1)
[ -n "$hello" ] || fail "hello.so not installed under <prefix>/lib/mobileops/plugins: $(find "$tmp/user")"
plugindir=$(dirname "$hello")
echo "ok: $hello"
check_exports "$hello"

step "build sdk/examples/hello-c with pkg-config"
pcdir=$(dirname "$pc")
pkg() { PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir "$pkgconfig" "$@" mobileops; }
got=$(pkg --modversion) || fail "pkg-config does not find mobileops in $pcdir"
[ "$got" = "$version" ] || fail "pkg-config --modversion: \`$got\`, expected \`$version\`"
cflags=$(pkg --cflags | sed "s/ *$//")
[ "$cflags" = "-I$root/include" ] || [ "$(realpath -m "${cflags#-I}")" = "$root/include" ] ||
    fail "pkg-config --cflags: \`$cflags\`, expected \`-I$root/include\`"
got=$(realpath -m "$(pkg --variable=plugindir)")
want=$(realpath -m "$pcdir/../mobileops/plugins")
[ "$got" = "$want" ] || fail "pkg-config plugindir: \`$got\`, expected \`$want\`"
echo "ok: version $version, cflags $cflags, plugindir $got"
# shellcheck disable=SC2086 # cflags is a list of flags
run "$tmp/hello-c.log" "$cc" -std=c11 -Wall -Wextra -Werror -shared -fPIC $cflags \
    -o "$plugindir/hello_c.so" "$tmp/src/hello-c/hello.c"
check_exports "$plugindir/hello_c.so"

step "run a user workflow calling both through the dispatcher"
mobileops=$build/bin/mobileops
[ -x "$mobileops" ] || fail "no dispatcher: \`$mobileops\` is missing"
mkdir -p "$tmp/scripts" "$tmp/root" "$tmp/run"
cat >"$tmp/scripts/hellotest.lua" <<'EOF'
local mo = require("mobileops")
local wf = mo.workflow{ name = "hellotest", summary = "test the hello plugin" }
wf:verb{ name = "greet", summary = "greet someone",
  args = { { name = "NAME", summary = "who" } },
  run = function(opts, args)
    local r = mo.plugins.hello.greet{ name = args.NAME }
    mo.print(r.greeting)
  end }
wf:verb{ name = "greetc", summary = "greet someone from the C plugin",
  args = { { name = "NAME", summary = "who" } },
  run = function(opts, args)
    local r = mo.plugins.hello_c.greet{ name = args.NAME }
    mo.print(r.greeting)
  end }
return wf
EOF
# mo ARGS...: the dispatcher with this test's directories only; status in $status.
mo() {
    status=0
    MOBILEOPS_PLUGIN_PATH=$plugindir MOBILEOPS_SCRIPT_PATH=$tmp/scripts \
        MOBILEOPS_ROOT=$tmp/root MOBILEOPS_RUN=$tmp/run MOBILEOPS_CONFIG=$tmp/none.conf \
        "$mobileops" "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
}
for verb in greet greetc; do
    mo hellotest "$verb" world
    [ "$status" -eq 0 ] || { cat "$tmp/err" >&2; fail "\`mobileops hellotest $verb world\` exited $status"; }
    [ "$(cat "$tmp/out")" = "hello, world" ] ||
        fail "\`mobileops hellotest $verb world\` printed \`$(cat "$tmp/out")\`, expected \`hello, world\`"
    echo "ok: mobileops hellotest $verb world -> hello, world"

    mo hellotest "$verb" ""
    [ "$status" -eq 1 ] || fail "\`mobileops hellotest $verb ''\` exited $status, expected 1"
    lines=$(wc -l <"$tmp/err")
    line=$(cat "$tmp/err")
    [ "$lines" -eq 1 ] || fail "expected one line on stderr, got $lines: $line"
    case $line in
    "mobileops: "*"invalid 'name'"*) ;;
    *) fail "stderr \`$line\`, expected \`mobileops: ...invalid 'name'...\`" ;;
    esac
    echo "ok: mobileops hellotest $verb '' -> exit 1, $line"
done

echo "PASS"
