#!/bin/sh
# Build mobileops and run the whole test suite (needs root for the integration tests).
set -eu
cd "$(dirname "$0")/.."
tools/install-deps.sh
build=${MOBILEOPS_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build"
cd "$build"
exec ctest --output-on-failure --timeout 300 "$@"
