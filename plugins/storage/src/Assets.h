// Assets: host files and directories an operator registers under a storage class to have
// them backed up, restored and checked (`mobileops assets add|backup|restore|verify`).
//
// State: one store record per asset (kind "asset", key and name = the asset's name):
//   {name, path, class, description, type ("file"|"directory"), created, backups: [...]}
// and per backup, under <class directory>/assets/<name>/:
//   <id>.tar.zst        the archive (id: a UTC timestamp, 20240501T120000Z)
//   <id>.manifest.json  {files: {"rel/path": {type, size, sha256, mode, uid, gid, target}}}
//                       read back from the archive, so it lists exactly what was saved
// The record keeps each archive's and manifest's sha256: verify re-hashes both, then
// compares the live path with the newest manifest.
#pragma once

#include "Classes.h"
#include <mobileops/common/Progress.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::common {
class Host;
}

namespace mobileops::storage {

using Progress = common::Progress;

class Assets {
public:
    Assets(const common::Host &host, StorageClasses classes);

    // `name` empty: the path's last component.
    nlohmann::json add(const std::string &path, const std::string &className,
                       const std::string &description, const std::string &name);
    nlohmann::json list() const;
    nlohmann::json inspect(const std::string &name) const;
    // Drops the record; with `purge` also its archives.
    void remove(const std::string &name, bool purge);

    // Back up the named assets (all when empty): one archive each. {backups: [...]}
    nlohmann::json backup(const std::vector<std::string> &names, Progress &progress);
    // Put the asset's path back as the backup `id` (default: the newest) holds it, in one
    // atomic rename; a changed or corrupt archive is refused and the path left untouched.
    nlohmann::json restore(const std::string &name, const std::string &id, Progress &progress);
    // {ok, assets: [{name, path, ok, archives: [{id, file, status}], live: {status,
    // changed: [{path, what}], added, removed}}]}; ok is false when anything differs.
    nlohmann::json verify(const std::vector<std::string> &names);

private:
    nlohmann::json mustRecord(const std::string &name) const;
    std::vector<nlohmann::json> selected(const std::vector<std::string> &names) const;
    std::string directoryOf(const nlohmann::json &rec) const;

    const common::Host &_host;
    StorageClasses _classes;
};

// The manifest of a tree on disk (`path` a directory, or a file listed under its own
// name) and of a backup archive, in the same form: {"rel/path": {type, ...}}.
nlohmann::json manifestOfTree(const std::string &path);
nlohmann::json manifestOfArchive(const std::string &archive);
// Differences from `recorded` to `live`: {changed: [{path, what}], added, removed}.
nlohmann::json compareManifests(const nlohmann::json &recorded, const nlohmann::json &live);

} // namespace mobileops::storage
