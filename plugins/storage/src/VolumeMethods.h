// The JSON methods of the volume, storage-class and assets workflows (scripts/volume.lua,
// storage.lua, assets.lua), and the volume engine's hooks for the storage service.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace mobileops::sdk {
class Plugin;
}
namespace mobileops::common {
class Host;
}

namespace mobileops::storage {

class Paths;

struct VolumeHooks {
    // prepare_volumes / release_volumes of the storage service, and its part of gc.
    std::function<nlohmann::json(const std::string &containerId, const nlohmann::json &volumes)>
        prepare;
    std::function<void(const std::string &containerId)> release;
    std::function<nlohmann::json()> gc;
};

// Registers class_*, volume_* and asset_* methods on `plugin`; `host` and `paths` must
// outlive it.
VolumeHooks registerVolumeMethods(sdk::Plugin &plugin, const common::Host &host,
                                  const Paths &paths);

} // namespace mobileops::storage
