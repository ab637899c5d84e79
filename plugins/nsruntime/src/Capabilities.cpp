#include "Capabilities.h"

#include "Errors.h"

#include <mobileops/capabilities.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace mobileops::nsruntime {

namespace {

// Index = capability number (linux/capability.h).
const char *const *const kNames = mo_capability_names;
constexpr int kNamed = MO_CAPABILITY_COUNT;
static_assert(kNamed == CAP_LAST_CAP + 1, "a capability of linux/capability.h has no name here");

bool isAll(const std::string &name) {
    std::string n = name;
    for (auto &c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return n == "ALL";
}

uint64_t maskOf(const std::vector<std::string> &names, const std::string &path) {
    uint64_t mask = 0;
    for (size_t i = 0; i < names.size(); ++i) {
        if (isAll(names[i])) continue;
        int cap = capabilityNumber(names[i]);
        if (cap < 0)
            throw Error(MO_E_INVALID, path + "[" + std::to_string(i) + "]: " + quote(names[i]) +
                                          " is not a capability");
        mask |= uint64_t(1) << cap;
    }
    return mask;
}

} // namespace

int capabilityNumber(const std::string &name) {
    std::string n = name;
    for (auto &c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (n.rfind("CAP_", 0) == 0) n = n.substr(4);
    for (int i = 0; i < kNamed; ++i)
        if (n == kNames[i]) return i;
    return -1;
}

std::string capabilityName(int cap) {
    if (cap >= 0 && cap < kNamed) return std::string("CAP_") + kNames[cap];
    return "CAP_" + std::to_string(cap);
}

std::string capabilityList(uint64_t mask) {
    std::string out;
    for (int cap = 0; cap < 64; ++cap) {
        if (!(mask & (uint64_t(1) << cap))) continue;
        if (!out.empty()) out += ',';
        out += capabilityName(cap);
    }
    return out;
}

uint64_t defaultCapabilities() {
    const int caps[] = {CAP_CHOWN,   CAP_DAC_OVERRIDE,     CAP_FOWNER,    CAP_FSETID,
                        CAP_KILL,    CAP_NET_BIND_SERVICE, CAP_SETFCAP,   CAP_SETGID,
                        CAP_SETPCAP, CAP_SETUID,           CAP_SYS_CHROOT};
    uint64_t mask = 0;
    for (int c : caps) mask |= uint64_t(1) << c;
    return mask;
}

uint64_t allCapabilities() {
    static const uint64_t all = [] {
        int last = CAP_LAST_CAP;
        if (int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC); fd >= 0) {
            char buf[16] = {};
            if (::read(fd, buf, sizeof buf - 1) > 0) {
                int n = std::atoi(buf);
                if (n > 0 && n < 64) last = n;
            }
            ::close(fd);
        }
        uint64_t known = last == 63 ? ~uint64_t(0) : (uint64_t(1) << (last + 1)) - 1;
        // What this process cannot hand out (a runtime started with a reduced bounding
        // set), no container gets: podman's privileged set is its own bounding set too.
        for (int cap = 0; cap <= last; ++cap)
            if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 0) known &= ~(uint64_t(1) << cap);
        return known;
    }();
    return all;
}

uint64_t applyCapabilityChanges(uint64_t base, const std::vector<std::string> &add,
                                const std::vector<std::string> &drop, const std::string &path) {
    const uint64_t added = maskOf(add, path + "add");
    const uint64_t dropped = maskOf(drop, path + "drop");
    if (uint64_t missing = added & ~allCapabilities())
        throw Error(MO_E_INVALID, path + "add: " + quote(capabilityList(missing)) +
                                      " is not in the bounding set of this runtime (or the "
                                      "kernel does not know it)");
    if (std::any_of(add.begin(), add.end(), isAll)) return allCapabilities() & ~dropped;
    if (std::any_of(drop.begin(), drop.end(), isAll)) return added;
    return (base & ~dropped) | added;
}

} // namespace mobileops::nsruntime
