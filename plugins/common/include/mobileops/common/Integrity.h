// Recording manifests through the integrity service, for the plugins that bring content in
// (image layers, assets). Optional by design: without an integrity provider nothing is
// recorded, and a failed recording is a warning, never a failed import; `mobileops
// integrity record` records later.
#pragma once

#include <mobileops/common/Host.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace mobileops::common {

// record(target, path) on the integrity service: {target, root, files, bytes}, or nothing
// when no provider is installed or recording failed (logged as a warning naming the target).
std::optional<nlohmann::json> recordManifest(const Host &host, const std::string &target,
                                             const std::string &path);

// Whether the state store holds a manifest for `target` (kind "manifest").
bool hasManifest(const Host &host, const std::string &target);

} // namespace mobileops::common
