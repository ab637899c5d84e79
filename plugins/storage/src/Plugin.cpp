// The plugin's C surface: the descriptor, the mo_storage_service trampolines and the JSON
// methods the image, volume, storage and assets workflows call.
#include <mobileops/plugin.hpp>

namespace mobileops::storage {
namespace {

class StoragePlugin : public sdk::Plugin {
public:
    void init() override {}
};

} // namespace
} // namespace mobileops::storage

MOBILEOPS_PLUGIN(mobileops::storage::StoragePlugin, "storage", "0.1.0",
                 "images, layers, volumes, storage classes, snapshots and backups",
                 "storage:storage")
