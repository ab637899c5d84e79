// Named volumes and per-container scratch areas: creation in a storage class with a real
// size limit (Quota.h), the users (containers) of each volume, removal, backup to a
// tar.zst and atomic restore, and the hooks the storage service gives the runtime
// (prepareVolumes / releaseVolumes) and `mobileops system gc` (gcVolumes).
//
// State: one store record per volume (kind "volume", key and name = the volume's name):
//   {name, class, size, sizeText, quota, area, labels, users, created, status, backup?}
// where status is "creating" until the volume is complete (a record left "creating" by a
// killed command is garbage for gc) and users are container ids. Each backup written is
// also recorded under kind "volume-backup" (key = the hex of its sha256) with its path,
// and its digest written beside it (FILE.sha256), so a restore refuses an archive changed
// since, even after the volume is gone, and knows the class and size to recreate it in.
//
// Locks: "volume/<name>" around every change of one volume.
#pragma once

#include "Classes.h"
#include "Quota.h"
#include <mobileops/common/Progress.h>

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>

namespace mobileops::common {
class Host;
}

namespace mobileops::storage {

class Paths;
using Progress = common::Progress;

struct VolumeRequest {
    std::string name;
    std::string className;           // empty: the default class
    std::optional<std::string> size; // empty: the class's default size
    std::map<std::string, std::string> labels;
};

// The storage classes as configured for this host: `storage.classes` or the default
// file; a missing default file gives the built-in classes.
StorageClasses loadStorageClasses(const common::Host &host, const Paths &paths);

class Volumes {
public:
    // Without `classes`, they are loaded from the configuration on first use, so commands
    // that need none (rm, inspect) work while the class file is broken.
    Volumes(const common::Host &host, const Paths &paths,
            std::optional<StorageClasses> classes = std::nullopt);

    const StorageClasses &classes() const;

    // All-or-nothing: a failure leaves no image, mount, loop device, directory or record.
    nlohmann::json create(const VolumeRequest &request);
    nlohmann::json list() const;
    // The record with its live facts: mountpoint, mounted, used, available, users with
    // their container names. A loop volume is mounted again if it is not (a reboot).
    nlohmann::json inspect(const std::string &name);
    // Refused while a container that still exists uses it, unless `force`.
    void remove(const std::string &name, bool force);
    // Remove every volume no existing container uses; {removed: [names], reclaimed}.
    nlohmann::json prune();

    // {volume, file, sha256, size, created}
    nlohmann::json backup(const std::string &name, const std::string &output, Progress &progress);
    // Replace the volume's data with the archive's, atomically; a volume that does not
    // exist is created first (class and size from `ifMissing`, else from the backup's
    // record, else the defaults) and removed again if the restore fails. The archive's
    // sha256 must match a backup recorded here or its FILE.sha256, unless `unverified`.
    nlohmann::json restore(const std::string &name, const std::string &archive,
                           const VolumeRequest &ifMissing, bool unverified, Progress &progress);

    // The storage service's prepare_volumes: spec entries, short or as the runtime spec
    // holds them (docs/volumes.md):
    //   {"name": "shared", "containerPath": "/app/shared", "readOnly": false}
    //   {"type": "volume", "source": "shared", "containerPath": ...}
    //   {"ephemeral": {"size": "5Gi"}, "containerPath": "/scratch"}
    //   {"type": "emptyDir", "sizeLimit": 5368709120, "medium"?: "Memory", ...}
    //   {"hostPath": "/srv/x", "containerPath": "/x"}   (passed through)
    // to host mounts [{"source", "destination", "readOnly"}]; the container becomes a user
    // of each named volume (created in the default class on first use). Scratch areas are
    // loop-mounted images under containers/<id>/ephemeral/<n> (a tmpfs for Memory).
    // Idempotent (the runtime calls it at every start; a reboot's lost mounts come back);
    // a failure undoes only what this call made.
    nlohmann::json prepare(const std::string &containerId, const nlohmann::json &volumes);
    // Idempotent: drops the container from every volume's users, unmounts and deletes its
    // scratch areas.
    void release(const std::string &containerId);
    // For `mobileops system gc`: scratch areas and users of containers that no longer
    // exist, volumes a killed command left half-made or half-restored, loop volumes not
    // mounted. {released: ["what was done", ...]}
    nlohmann::json gc();

private:
    std::optional<nlohmann::json> record(const std::string &name) const;
    nlohmann::json mustRecord(const std::string &name) const;
    nlohmann::json createLocked(const VolumeRequest &request);
    void destroy(const nlohmann::json &rec);
    bool containerExists(const std::string &id) const;
    std::vector<std::string> liveUsers(const nlohmann::json &rec) const;
    std::string ephemeralDir(const std::string &containerId) const;
    std::vector<std::string> releaseEphemeral(const std::string &containerId);
    void removeArea(const std::string &home);

    const common::Host &_host;
    const Paths &_paths;
    mutable std::optional<StorageClasses> _classes;
};

} // namespace mobileops::storage
