#include "mobileops/core/Error.h"

#include <cstring>

namespace mobileops::core {

Error systemError(const std::string &what, int err) {
    return Error(-err, what + ": " + std::strerror(err));
}

} // namespace mobileops::core
