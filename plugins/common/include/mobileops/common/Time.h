// Times as the plugins record them: RFC 3339 in UTC with nanoseconds
// ("2026-11-23T05:12:33.727227470Z"), the form docker and podman write, so two records
// made in one second still sort apart.
#pragma once

#include <cstdio>
#include <ctime>
#include <string>

namespace mobileops::common {

inline std::string nowRfc3339() {
    struct timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    std::tm tm{};
    ::gmtime_r(&ts.tv_sec, &tm);
    char buf[48];
    size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", static_cast<long>(ts.tv_nsec));
    return buf;
}

} // namespace mobileops::common
