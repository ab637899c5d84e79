// Error helpers shared by the plugins: the engines throw mobileops::sdk::Error (code +
// message); the plugins' C entry points turn it into the caller's mo_error.
#pragma once

#include <mobileops/plugin.hpp>

#include <cstring>
#include <string>

namespace mobileops::common {

using Error = mobileops::sdk::Error;

// `value` in backticks.
inline std::string quote(const std::string &value) { return "`" + value + "`"; }

// "what: strerror(err)" with code -err. `err` is a positive errno.
inline Error sysError(const std::string &what, int err) {
    return Error(-err, what + ": " + std::strerror(err));
}

// Throw sysError(what, -r) when r < 0; returns r otherwise.
inline long check(long r, const std::string &what) {
    if (r < 0) throw sysError(what, static_cast<int>(-r));
    return r;
}

// The same error with "context: " in front.
inline Error wrap(const Error &e, const std::string &context) {
    return Error(e.code(), context + ": " + e.what());
}

} // namespace mobileops::common
