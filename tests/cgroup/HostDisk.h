// Test helper: a real block device of this host for the device-rule tests.
#pragma once

#include <utility>

namespace mobileops::cgroup::testing {

// A real block device this process can open ({major, minor}): the one holding `/` when
// it can, else the first of /sys/dev/block it can (a sandbox may already deny the root
// disk, and a device nobody may open proves nothing); {0, 0} when none.
std::pair<unsigned, unsigned> hostDisk();

} // namespace mobileops::cgroup::testing
