// Error helpers: the engine throws mobileops::sdk::Error (code + message); the plugin's
// C entry points turn it into the caller's mo_error.
#pragma once

#include <mobileops/plugin.hpp>

#include <cstring>
#include <string>

namespace mobileops::cgroup {

using Error = mobileops::sdk::Error;

// `value` in backticks.
inline std::string quote(const std::string &value) { return "`" + value + "`"; }

// "what: strerror(err)" with code -err. `err` is a positive errno.
inline Error sysError(const std::string &what, int err) {
    return Error(-err, what + ": " + std::strerror(err));
}

// The same error with "context: " in front.
inline Error wrap(const Error &e, const std::string &context) {
    return Error(e.code(), context + ": " + e.what());
}

} // namespace mobileops::cgroup
