#pragma once

#include <nlohmann/json.hpp>

namespace mobileops::core {

// Kernel, cgroup layout (unified | legacy | hybrid, per-controller placement),
// namespaces this kernel offers, and the version of mobileops.
nlohmann::json systemInfo();

} // namespace mobileops::core
