// What the quota backends share and nothing else needs: the mount table and the
// exchange-based replace of a plain data directory.
#pragma once

#include "Quota.h"

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::storage {

namespace fsutil {

using common::MountEntry;
using common::mountOf;
using common::mountTable;

} // namespace fsutil

// Replace area.data() by a fresh sibling directory: `prepare` it (a project id), `fill`
// it, swap the two with renameat2(RENAME_EXCHANGE), remove the old tree. On a failure
// before the swap, the fresh directory is removed and `discard` called for it.
void exchangeReplace(const Area &area, const std::function<void(const std::string &)> &prepare,
                     const std::function<void(const std::string &)> &fill,
                     const std::function<void(const std::string &)> &discard);

} // namespace mobileops::storage
