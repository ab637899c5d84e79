#include "Resources.h"

#include "Errors.h"

#include <algorithm>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

[[noreturn]] void invalid(const std::string &field, const std::string &why) {
    throw Error(MO_E_INVALID, "invalid " + quote(field) + ": " + why);
}

const char *kindOf(const json &v) {
    if (v.is_string()) return "a string";
    if (v.is_boolean()) return "a boolean";
    if (v.is_object()) return "an object";
    if (v.is_array()) return "an array";
    if (v.is_number_float()) return "a fractional number";
    return "a number";
}

Setting integer(const json &v, const std::string &field, const char *unit, std::int64_t min,
                std::int64_t max, const std::string &minText) {
    if (v.is_null()) return std::optional<std::int64_t>();
    if (!v.is_number_integer())
        invalid(field, std::string("expected an integer number of ") + unit + ", not " + kindOf(v));
    std::int64_t n = v.is_number_unsigned() && v.get<std::uint64_t>() > INT64_MAX
                         ? INT64_MAX
                         : v.get<std::int64_t>();
    if (n < min) invalid(field, quote(std::to_string(n)) + " is below the " + minText + " minimum");
    if (n > max)
        invalid(field,
                quote(std::to_string(n)) + " is above the maximum " + quote(std::to_string(max)));
    return std::optional<std::int64_t>(n);
}

void object(const json &v, const std::string &field) {
    if (!v.is_object()) invalid(field, std::string("expected an object, not ") + kindOf(v));
}

void unknown(const std::string &field) {
    throw Error(MO_E_INVALID, "unknown resources field " + quote(field));
}

std::vector<DeviceThrottle> deviceThrottle(const json &value) {
    std::vector<DeviceThrottle> out;
    if (value.is_null()) return out;
    if (!value.is_array())
        invalid("deviceThrottle", std::string("expected an array, not ") + kindOf(value));
    for (size_t i = 0; i < value.size(); ++i) {
        const json &item = value[i];
        std::string at = "deviceThrottle[" + std::to_string(i) + "]";
        object(item, at);
        DeviceThrottle t;
        bool major = false, minor = false;
        auto rate = [&](const json &v, const std::string &field, const char *unit) {
            Setting n = integer(v, field, unit, 0, INT64_MAX, "`0`");
            return *n ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(**n))
                      : std::optional<std::uint64_t>();
        };
        for (const auto &[name, v] : item.items()) {
            std::string field = at + "." + name;
            if (name == "device") {
                if (!v.is_string())
                    invalid(field, std::string("expected a device path, not ") + kindOf(v));
                t.device = v.get<std::string>();
            } else if (name == "major" || name == "minor") {
                Setting n = integer(v, field, "device numbers", 0, 0xfffff, "`0`");
                if (!*n) invalid(field, "expected a device number, not null");
                (name == "major" ? t.major : t.minor) = static_cast<std::uint32_t>(**n);
                (name == "major" ? major : minor) = true;
            } else if (name == "readBps") {
                t.readBps = rate(v, field, "bytes per second");
            } else if (name == "writeBps") {
                t.writeBps = rate(v, field, "bytes per second");
            } else if (name == "readIops") {
                t.readIops = rate(v, field, "operations per second");
            } else if (name == "writeIops") {
                t.writeIops = rate(v, field, "operations per second");
            } else {
                unknown(field);
            }
        }
        if (!major || !minor) invalid(at, "expected `major` and `minor` device numbers");
        if (t.device.empty()) t.device = std::to_string(t.major) + ":" + std::to_string(t.minor);
        out.push_back(t);
    }
    return out;
}

} // namespace

bool isCpuList(const std::string &text) {
    if (text.empty()) return false;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = std::min(text.find(',', start), text.size());
        std::string item = text.substr(start, end - start);
        size_t dash = item.find('-');
        std::string lo = item.substr(0, dash);
        std::string hi = dash == std::string::npos ? lo : item.substr(dash + 1);
        auto digits = [](const std::string &s) {
            return !s.empty() && s.size() < 6 &&
                   std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        };
        if (!digits(lo) || !digits(hi) || std::stoi(lo) > std::stoi(hi)) return false;
        start = end + 1;
    }
    return true;
}

Settings parseResources(const json &resources) {
    Settings s;
    if (resources.is_null()) return s;
    object(resources, "resources");
    for (const auto &[key, value] : resources.items()) {
        if (key == "requests" || key == "limits") {
            bool limits = key == "limits";
            if (value.is_null()) continue;
            object(value, key);
            for (const auto &[name, v] : value.items()) {
                std::string field = key + "." + name;
                if (name == "cpu") {
                    (limits ? s.cpuLimit : s.cpuRequest) =
                        integer(v, field, "millicores", 1, kMaxMillicores, "`1m`");
                } else if (name == "memory") {
                    (limits ? s.memoryLimit : s.memoryRequest) =
                        integer(v, field, "bytes", kMinMemory, INT64_MAX, "4Mi");
                } else if (name == "pids" && limits) {
                    s.pidsLimit = integer(v, field, "processes", 1, kMaxPids, "`1`");
                } else if (name == "storage") {
                    // applied by the storage service (quotas), not by cgroups
                } else {
                    unknown(field);
                }
            }
        } else if (key == "cpuset") {
            if (value.is_null()) {
                s.cpuset = "";
                continue;
            }
            if (!value.is_string())
                invalid(key,
                        std::string("expected a CPU list such as `0-3,6`, not ") + kindOf(value));
            std::string list = value.get<std::string>();
            if (!isCpuList(list)) invalid(key, quote(list) + " is not a CPU list such as `0-3,6`");
            s.cpuset = list;
        } else if (key == "memorySwap") {
            if (value.is_number_integer() && value.get<std::int64_t>() == -1)
                s.memorySwap = std::optional<std::int64_t>();
            else
                s.memorySwap = integer(value, key, "bytes", kMinMemory, INT64_MAX, "4Mi");
        } else if (key == "memorySwappiness") {
            s.memorySwappiness = integer(value, key, "percent", 0, 100, "`0`");
        } else if (key == "blkioWeight") {
            s.blkioWeight = integer(value, key, "weight units", 10, 1000, "`10`");
        } else if (key == "deviceThrottle") {
            s.deviceThrottle = deviceThrottle(value);
        } else if (key == "devices") {
            s.devices = parseDeviceRules(value);
        } else if (key == "ignoreUnsupported") {
            if (!value.is_boolean())
                invalid(key, std::string("expected true or false, not ") + kindOf(value));
            s.ignoreUnsupported = value.get<bool>();
        } else {
            unknown(key);
        }
    }
    if (s.memorySwap && *s.memorySwap && s.memoryLimit && *s.memoryLimit &&
        **s.memorySwap < **s.memoryLimit)
        invalid("memorySwap",
                quote(std::to_string(**s.memorySwap)) + " is below the memory limit " +
                    quote(std::to_string(**s.memoryLimit)) + " (it is memory plus swap)");
    return s;
}

std::vector<std::string> fieldsOf(const Settings &s) {
    std::vector<std::string> out;
    if (s.cpuLimit) out.push_back("limits.cpu");
    if (s.cpuRequest) out.push_back("requests.cpu");
    if (s.memoryLimit) out.push_back("limits.memory");
    if (s.memoryRequest) out.push_back("requests.memory");
    if (s.pidsLimit) out.push_back("limits.pids");
    if (s.cpuset) out.push_back("cpuset");
    if (s.memorySwap) out.push_back("memorySwap");
    if (s.memorySwappiness) out.push_back("memorySwappiness");
    if (s.blkioWeight) out.push_back("blkioWeight");
    if (s.deviceThrottle) out.push_back("deviceThrottle");
    if (s.devices) out.push_back("devices");
    return out;
}

void clearField(Settings &s, const std::string &field) {
    if (field == "limits.cpu")
        s.cpuLimit.reset();
    else if (field == "requests.cpu")
        s.cpuRequest.reset();
    else if (field == "limits.memory")
        s.memoryLimit.reset();
    else if (field == "requests.memory")
        s.memoryRequest.reset();
    else if (field == "limits.pids")
        s.pidsLimit.reset();
    else if (field == "cpuset")
        s.cpuset.reset();
    else if (field == "memorySwap")
        s.memorySwap.reset();
    else if (field == "memorySwappiness")
        s.memorySwappiness.reset();
    else if (field == "blkioWeight")
        s.blkioWeight.reset();
    else if (field == "deviceThrottle")
        s.deviceThrottle.reset();
    else if (field == "devices")
        s.devices.reset();
}

const char *controllerOf(const std::string &field) {
    if (field == "limits.cpu" || field == "requests.cpu") return "cpu";
    if (field == "limits.pids") return "pids";
    if (field == "cpuset") return "cpuset";
    if (field == "blkioWeight" || field == "deviceThrottle") return "blkio";
    if (field == "devices") return "devices";
    return "memory";
}

std::uint64_t sharesFromMillis(std::int64_t millis) {
    // Kubernetes' MilliCPUToShares.
    std::uint64_t shares = static_cast<std::uint64_t>(millis) * 1024 / 1000;
    return std::clamp<std::uint64_t>(shares, 2, 262144);
}

std::uint64_t weightFromShares(std::uint64_t shares) {
    // runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] onto [1, 10000] linearly.
    if (shares == 0) return 100;
    shares = std::clamp<std::uint64_t>(shares, 2, 262144);
    return 1 + ((shares - 2) * 9999) / 262142;
}

CpuQuota quotaFromMillis(std::int64_t millis) {
    std::uint64_t m = static_cast<std::uint64_t>(std::max<std::int64_t>(millis, 1));
    // quota = millis/1000 of the period; the kernel refuses quotas below 1000us.
    if (m * 100 >= 1000) return {m * 100, 100000};
    return {m * 1000, 1000000};
}

} // namespace mobileops::cgroup
