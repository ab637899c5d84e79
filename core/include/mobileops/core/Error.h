// The core's exception type: an ABI error code (MO_E_* or -errno) plus a message in the
// project's style (lowercase, no trailing period, values in backticks). Context is added
// on the way up with `wrap`: "start `web`: mount `/proc`: Permission denied".
#pragma once

#include <mobileops/abi.h>

#include <cerrno>
#include <stdexcept>
#include <string>

namespace mobileops::core {

class Error : public std::runtime_error {
public:
    Error(int code, const std::string &message) : std::runtime_error(message), _code(code) {}

    int code() const noexcept { return _code; }

    // The same error with "context: " in front of the message.
    Error wrap(const std::string &context) const { return Error(_code, context + ": " + what()); }

private:
    int _code;
};

// "what: <strerror(err)>" with code -err.
Error systemError(const std::string &what, int err = errno);

// Wrap any exception escaping `fn` with context, keeping Error codes.
template <typename Fn> auto withContext(const std::string &context, Fn &&fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const Error &e) {
        throw e.wrap(context);
    }
}

// `value` in backticks, as messages quote values.
inline std::string quote(const std::string &value) { return "`" + value + "`"; }

} // namespace mobileops::core
