// Container snapshots: a container's writable layer (the overlay `upper` the image store
// made for it) saved as a zstd tar with overlay whiteouts as OCI `.wh.` entries, and put
// back whole: extracted next to the layer, swapped in with one renameat2(RENAME_EXCHANGE),
// the old layer removed afterwards. A snapshot whose archive does not hash to what was
// recorded, or fails to extract, is refused and the layer stays as it was.
//
// Files: snapshots/<container id>/<snapshot>.tar.zst (Paths.h). Records (state store):
//   kind "snapshot"  key "<container id>/<snapshot>"  {container, containerName, snapshot,
//                    file, sha256, size, created, image}
#pragma once

#include "Paths.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::sdk {
class Plugin;
}
namespace mobileops::common {
class Host;
}

namespace mobileops::storage {

class Snapshots {
public:
    Snapshots(const common::Host &host, const Paths &paths) : _host(host), _paths(paths) {}

    // Save the writable layer of container `ref` (id or name) as `snapshot` (default: the
    // UTC time, "20261122T200000Z"). A running container is read as it is: the caller
    // pauses it first for a consistent copy. Returns the record.
    nlohmann::json create(const std::string &ref, const std::string &snapshot);
    // Replace the writable layer of a container that is not running with `snapshot`.
    // The overlay on the layer is unmounted first (the next start mounts it again).
    nlohmann::json restore(const std::string &ref, const std::string &snapshot);
    // The container's snapshots, oldest first.
    nlohmann::json list(const std::string &ref) const;
    // Remove one snapshot, or all of a container's when `snapshot` is empty; `ref` may be
    // a container id whose container is gone. Returns {removed: [names]}.
    nlohmann::json remove(const std::string &ref, const std::string &snapshot);

private:
    struct Container {
        std::string id, name, status;
    };
    Container container(const std::string &ref, bool mustExist = true) const;
    // The container's writable layer and its overlay, from the image store's record.
    nlohmann::json rootfs(const Container &c) const;
    std::string file(const std::string &id, const std::string &snapshot) const;

    const common::Host &_host;
    const Paths &_paths;
};

// Registers container_snapshot, container_restore, container_snapshots and
// container_snapshot_rm on `plugin`; `host` and `paths` must outlive it.
void registerSnapshotMethods(sdk::Plugin &plugin, const common::Host &host, const Paths &paths);

} // namespace mobileops::storage
