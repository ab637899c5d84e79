// Test helper: the error code (and message) of what a call throws.
#pragma once

#include "Errors.h"

#include <functional>
#include <string>

namespace mobileops::cgroup::testing {

// The code of the mobileops error `fn` throws (its message into `message`), 0 when none.
inline int codeOf(const std::function<void()> &fn, std::string *message = nullptr) {
    try {
        fn();
    } catch (const Error &e) {
        if (message) *message = e.what();
        return e.code();
    }
    return 0;
}

} // namespace mobileops::cgroup::testing
