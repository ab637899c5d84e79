// The guest's boot assets, built once and cached (`mobileops vm prepare`): an uncompressed
// vmlinux extracted from a Debian linux-image kernel (booted directly through its PVH
// entry: a bzImage costs seconds more under TCG), and an uncompressed initramfs (newc
// cpio) holding the static guest init (guest/init.c, built as
// libexec/mobileops/mobileops-guest-init) and the kernel modules it loads, in dependency
// order, listed in /modules/order: virtio_mmio, virtio_console, 9pnet, 9pnet_virtio,
// netfs (where it exists), 9p, overlay.
//
// Cache: <cacheDir>/<kernel version>-<key>/{vmlinux, initramfs.cpio, assets.json}, where
// key covers the kernel image, the modules, the guest init and this format; written under
// a temporary name and renamed, so a killed prepare leaves nothing half made.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace mobileops::krun {

struct GuestAssets {
    std::string kernelVersion;     // "6.1.0-56-amd64"
    std::string kernel;            // path of the vmlinux
    std::string initramfs;         // path of the cpio
    std::string dir;               // the cache entry
    nlohmann::json toJson() const; // {kernelVersion, kernel, initramfs, dir}
};

struct AssetOptions {
    std::string cacheDir;    // e.g. <root>/vm/assets
    std::string guestInit;   // the static guest init binary
    std::string kernelImage; // /boot/vmlinuz-<ver>; empty: the newest with modules
    std::string modulesRoot = "/lib/modules";
    bool quiet = true; // no progress on the terminal
};

// Build the assets unless an up-to-date cache entry exists; returns them. Throws
// common::Error naming what is missing (no kernel image: "install linux-image-amd64"; no
// guest init; a module not found) or broken (a kernel image without a recognisable
// compressed payload).
GuestAssets prepareAssets(const AssetOptions &options);

// The cache entry prepareAssets would return, without building anything; nullopt when
// it is missing or stale.
std::optional<GuestAssets> findAssets(const AssetOptions &options);

// The vmlinux inside a bzImage (gzip, xz, zstd, lz4 or uncompressed payload), written to
// `output`. Throws naming the image when no payload decompresses to an ELF file.
void extractVmlinux(const std::string &bzImage, const std::string &output);

} // namespace mobileops::krun
