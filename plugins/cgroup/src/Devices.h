// Device access rules (spec.resources.devices, the OCI linux.resources.devices form) and
// how each cgroup version applies them: v1 through devices.deny / devices.allow, v2
// through a BPF_PROG_TYPE_CGROUP_DEVICE program (DeviceBpf.h).
//
//   "devices": [{"allow": false, "access": "rwm"},
//               {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
//               {"allow": true, "type": "c", "major": 136, "access": "rwm"}]
//
// The list is ordered and the last rule matching an access decides it, bit by bit as the
// v1 controller holds them: an open for reading and writing needs both `r` and `w`, each
// allowed by the last rule naming it for that device. (runc's program matches a rule only
// when its access covers the whole request, so there `deny c 1:3 w` after `allow c 1:3 rwm`
// lets an open for reading and writing through; not here.) What no rule names is denied. `type` is
// a (all, the default), c or b; `major`/`minor` absent, null or -1 match any number; `access` is a
// non-empty subset of "rwm" (default "rwm").
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mobileops::cgroup {

// Access bits, as the kernel's BPF_DEVCG_ACC_* (mknod 1, read 2, write 4).
inline constexpr unsigned kDevMknod = 1, kDevRead = 2, kDevWrite = 4, kDevAll = 7;

struct DeviceRule {
    bool allow = false;
    char type = 'a';         // a, c or b
    std::int64_t major = -1; // -1: any
    std::int64_t minor = -1;
    unsigned access = kDevAll;

    bool operator==(const DeviceRule &) const = default;
    // Every device, every access: "a *:* rwm".
    bool all() const { return type == 'a' && major < 0 && minor < 0 && access == kDevAll; }
    // The kernel's form without the verdict: "c 1:3 rwm", "b *:* m", "a *:* rwm".
    std::string text() const;
};

// Throws Error(MO_E_INVALID) naming the field: "invalid `devices[2].access`: ...".
std::vector<DeviceRule> parseDeviceRules(const nlohmann::json &value);
nlohmann::json deviceRulesJson(const std::vector<DeviceRule> &rules);

// What the list decides for one access (`type` c or b, `access` one or more kDev* bits,
// each of which must be allowed): the reference the v1 writes and the BPF program follow.
bool deviceAllowed(const std::vector<DeviceRule> &rules, char type, std::uint32_t major,
                   std::uint32_t minor, unsigned access);

// The v1 devices controller has one default (allow all or deny all) plus a list of
// exceptions, and a rule written to devices.allow/deny only adds or removes an exception of
// exactly the same type and numbers. The writes, in order, that make a fresh cgroup hold
// `rules`: {"devices.deny", "a"} (or allow), then one write per later rule ("c 1:3 rwm";
// a rule of type `a` with numbers is written once as c and once as b).
//
// What v1 cannot hold: with a deny-all default, a deny that narrows an earlier, wider
// allow (allow `c *:* rwm`, then deny `c 1:3 w`) would stay allowed: refused with
// MO_E_UNSUPPORTED naming the rule. With an allow-all default (allow all, then deny some:
// written as "a" to devices.allow and each deny as an exception), an allow that narrows an
// earlier, wider deny stays denied: v1 is stricter than asked there, which is safe, and the
// BPF program on a cgroup2 hierarchy applies the list exactly.
std::vector<std::pair<std::string, std::string>>
v1DeviceWrites(const std::vector<DeviceRule> &rules);

} // namespace mobileops::cgroup
