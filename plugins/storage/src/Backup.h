// Backups of a directory tree as tar.zst, shared by volumes and assets: written with the
// tree's root entry (owner and mode of the directory itself) under a temporary name, the
// archive's sha256 returned for the record; restored by extracting into an empty directory
// the caller then swaps in (Quota.h, QuotaBackend::replace). A corrupt or truncated
// archive fails the extraction and the caller discards the half-filled directory.
#pragma once

#include <mobileops/common/Progress.h>
#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::storage {

using Progress = common::Progress;

// "2024-05-01T12:00:00Z"
std::string timestamp();
// "20240501T120000Z": for file names.
std::string fileTimestamp();

// tar.zst of the tree below `source` at `file` (replaced atomically); `label` names the
// line on the progress display. {file, sha256, size, created}
nlohmann::json writeBackup(const std::string &source, const std::string &file, Progress &progress,
                           const std::string &label);

// The archive's digest beside it, in FILE.sha256 (`sha256sum -c` reads it): libarchive
// writes zstd frames without a content checksum, so a changed byte in a stored block would
// otherwise restore silently; this travels with the archive to another host.
void writeChecksumFile(const std::string &file, const std::string &digest);
// "sha256:<hex>" from FILE.sha256, or empty when there is none.
std::string readChecksumFile(const std::string &file);

// Extract `archive` into the existing directory `target`. Whiteout entries and device
// nodes are refused; errors name the archive and the entry.
void restoreBackup(const std::string &archive, const std::string &target, Progress &progress,
                   const std::string &label);

} // namespace mobileops::storage
