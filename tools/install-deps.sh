#!/bin/sh
# Install everything mobileops needs to build, test and run on Debian 12. Idempotent.
set -eu

packages="
  build-essential cmake ninja-build pkg-config git
  libluajit-5.1-dev luajit
  libsqlite3-dev sqlite3
  nlohmann-json3-dev libyaml-cpp-dev
  libseccomp-dev libarchive-dev libpoco-dev libssl-dev
  libnl-3-dev libnl-route-3-dev libnftables-dev nftables
  libgtest-dev libgmock-dev googletest
  busybox-static debootstrap
  crun runc hyperfine wrk openssl
  docker-registry podman conmon containerd umoci zstd xz-utils bzip2 python3
  python3-grpcio python3-grpc-tools python3-protobuf
  qemu-system-x86 linux-image-amd64 cpio
  iproute2 util-linux procps e2fsprogs
  clang-format clang-tidy
"

missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi
