// A size-limited data area: the directory a volume (or a container's scratch space) keeps
// its files in, and the mechanism that holds it to its size. One backend per mechanism:
//   loop     QuotaLoop.cpp     an ext4 image (sparse file) loop-mounted on the data dir
//   project  QuotaProject.cpp  an ext4/XFS project id with a block limit on a plain dir
//   none     Quota.cpp         a plain directory, unlimited
// The layout of an area's home directory:
//   <home>/volume.img   the image (loop only)
//   <home>/data/        the data: the image's mount point, or the plain directory
#pragma once

#include <mobileops/common/Mounts.h>

#include "Classes.h"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::storage {

struct Area {
    std::string home;
    QuotaMechanism mechanism = QuotaMechanism::None;
    uint64_t size = 0;                     // bytes; 0 when unlimited
    std::vector<std::string> mountOptions; // loop only
    uint32_t projectId = 0;                // project only

    std::string data() const { return home + "/data"; }
    std::string image() const { return home + "/volume.img"; }

    // {home, data, mechanism, size, image?, projectId?, mountOptions?}
    nlohmann::json toJson() const;
    static Area fromJson(const nlohmann::json &j);
};

struct Usage {
    uint64_t used = 0;
    std::optional<uint64_t> available; // nullopt: bounded by the host filesystem only
};

class QuotaBackend {
public:
    virtual ~QuotaBackend() = default;
    // Make the area's data directory (empty, 0755) and its limit. On failure nothing of
    // it is left. `area.home` exists and is empty.
    virtual void create(Area &area) = 0;
    // Make the data directory usable: mount the image when it is not mounted (after a
    // reboot). A no-op for plain directories. Returns whether it did something.
    virtual bool activate(const Area &area) = 0;
    // Unmount (loop); the data stays.
    virtual void deactivate(const Area &area) = 0;
    // Remove the data and the limit; the home directory stays, empty.
    virtual void destroy(const Area &area) = 0;
    virtual Usage usage(const Area &area) = 0;
    // Whether the data directory is ready to be used now (mounted for loop).
    virtual bool active(const Area &area) = 0;
    // Replace the area's data by the tree `fill` writes into the directory it is given,
    // atomically: `fill` works on a fresh directory with the same limit on the same
    // filesystem, and only once it returns is that swapped in and the old data removed.
    // If `fill` throws, the old data is untouched and the fresh one removed. `area` may
    // change (a new project id).
    virtual void replace(Area &area, const std::function<void(const std::string &)> &fill) = 0;
};

std::unique_ptr<QuotaBackend> makeLoopQuota();
std::unique_ptr<QuotaBackend> makeProjectQuota();
std::unique_ptr<QuotaBackend> makeNoQuota();
std::unique_ptr<QuotaBackend> quotaBackend(QuotaMechanism mechanism);

// For `quota: project` classes: whether `dir` (or its nearest existing parent) is on a
// filesystem that enforces project quotas; the reason when it does not.
bool projectQuotaSupported(const std::string &dir, std::string *why);

// Helpers the backends and the volume engine share.
namespace fsutil {
// mkdir -p; the last component with `mode`.
void makeDirs(const std::string &path, mode_t mode);
// rm -rf that never crosses into another filesystem (a mount left below refuses).
void removeTree(const std::string &path);
// Bytes allocated below `path` (hard links counted once), like `du -s`.
uint64_t diskUsage(const std::string &path);
using common::isMountPoint;
using common::mountsBelow;
// A new unique directory "<parent>/<prefix>XXXXXX" (0700).
std::string tempDir(const std::string &parent, const std::string &prefix);
} // namespace fsutil

} // namespace mobileops::storage
