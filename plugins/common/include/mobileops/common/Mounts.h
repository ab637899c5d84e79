// The mount table of this mount namespace (/proc/self/mountinfo), for the plugins that
// mount (storage roots and volumes) and those that read mounts (cgroup hierarchies).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::common {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescapeMountinfo(const std::string &field);

struct MountEntry {
    std::string mountPoint, fstype, source, options, superOptions;
    dev_t device = 0;
};
std::vector<MountEntry> mountTable();

// Whether `path` is a mount point.
bool isMountPoint(const std::string &path);
// The mount points at or below `path`, deepest first.
std::vector<std::string> mountsBelow(const std::string &path);
// The mount holding `path` (or its nearest existing parent).
std::optional<MountEntry> mountOf(const std::string &path);

} // namespace mobileops::common
