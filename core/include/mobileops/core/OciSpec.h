// An OCI runtime bundle's config.json (runtime-spec 1.0.0 to 1.1.x) as a runtime spec
// (docs/runtime-spec.md); docs/oci.md is the reference of what maps where.
//
//     json spec = spec::fromOci(config, "/abs/bundle"); // then name it and finalize(spec)
//
// Bad input throws Error(MO_E_INVALID, ...) naming the JSON path in config.json:
// "config.json: linux.resources.memory.limit: `-5` is not a byte count ...". Fields
// accepted but not applied by this runtime are listed in the result's `unapplied`.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::core::spec {

// `bundle` is the bundle directory (absolute); root.path and relative bind sources are
// taken relative to it. The result holds rootfs, readonly, hostname, process, network,
// userns, mounts, resources, security, annotations, runtime and the OCI-only keys
// (`oci.bundle`, `cgroupsPath`, `namespacePaths`, `maskedPaths`, `readonlyPaths`,
// `sysctl`, `devices`, `hooks`, `process.oomScoreAdj`, `process.umask`).
nlohmann::json fromOci(const nlohmann::json &config, const std::string &bundle);

// OCI LinuxResources (`update --resources`) -> the runtime spec's resources form. Paths
// in messages start at `resources`.
nlohmann::json fromOciResources(const nlohmann::json &resources);

// The default config.json `spec` writes (runc's, with `sh` as the command).
nlohmann::json defaultOciConfig(bool rootless);

} // namespace mobileops::core::spec
