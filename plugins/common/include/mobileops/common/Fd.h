// A file descriptor closed when it goes out of scope.
#pragma once

#include <unistd.h>

namespace mobileops::common {

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
};

} // namespace mobileops::common
