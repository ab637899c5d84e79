// Names the operator gives (containers, volumes, snapshots, classes, assets): one rule
// everywhere, the one docker uses for container names.
#pragma once

#include <string>

namespace mobileops::common {

// [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}: never a path, never hidden.
bool isValidName(const std::string &name);

// Throws MO_E_INVALID "invalid WHAT `NAME`: expected 1 to 128 letters, digits, ...".
void checkName(const std::string &what, const std::string &name);

} // namespace mobileops::common
