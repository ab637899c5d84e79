// spec.resources (as the core normalizes it: CPU in millicores, memory in bytes) turned
// into per-controller settings, and the arithmetic that maps them onto v1 and v2 files.
//
//   {"requests": {"cpu": 500, "memory": 1073741824, "storage": ...},
//    "limits": {"cpu": 2000, "memory": 4294967296, "storage": ..., "pids": 100},
//    "cpuset": "0-3,6", "memorySwap": 8589934592 (memory plus swap; -1 unlimited),
//    "memorySwappiness": 10, "blkioWeight": 500,
//    "deviceThrottle": [{"device": "/dev/vda", "major": 254, "minor": 0, "readBps": 1048576,
//                        "writeBps": ..., "readIops": ..., "writeIops": ...}],
//    "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c",
//                 "major": 1, "minor": 3, "access": "rwm"}, ...] (Devices.h)}
//
// A field left out is left as it is (create: the kernel's default); on update a field
// given as null is reset to "no limit" (cpu weight back to the default).
#pragma once

#include "Devices.h"
#include "Errors.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::cgroup {

// Absent: leave alone. Present and nullopt: no limit / the default. Present with a value:
// set it.
using Setting = std::optional<std::optional<std::int64_t>>;

// Rate limits of one block device: v1 blkio.throttle.{read,write}_{bps,iops}_device, v2
// io.max. A rate left out is left as it is.
struct DeviceThrottle {
    std::string device; // the path it was given as, for messages
    std::uint32_t major = 0, minor = 0;
    std::optional<std::uint64_t> readBps, writeBps, readIops, writeIops;
};

struct Settings {
    Setting cpuLimit;      // millicores: CFS quota over period (v1 cfs_quota_us, v2 cpu.max)
    Setting cpuRequest;    // millicores: v1 cpu.shares, v2 cpu.weight
    Setting memoryLimit;   // bytes: v1 memory.limit_in_bytes, v2 memory.max
    Setting memoryRequest; // bytes: v1 memory.soft_limit_in_bytes, v2 memory.low
    Setting pidsLimit;     // v1 and v2 pids.max
    std::optional<std::string> cpuset; // cpuset.cpus
    // bytes of memory plus swap: v1 memory.memsw.limit_in_bytes, v2 memory.swap.max (the
    // swap part alone: this minus the memory limit)
    Setting memorySwap;
    Setting memorySwappiness; // v1 memory.swappiness; cgroup v2 has none
    Setting blkioWeight;      // v1 blkio.weight or blkio.bfq.weight, v2 io.weight or io.bfq.weight
    std::optional<std::vector<DeviceThrottle>> deviceThrottle;
    // Device access (Devices.h): v1 devices.deny/devices.allow, v2 a BPF device program;
    // applied on every hierarchy the cgroup has that can hold it (both on a hybrid host).
    std::optional<std::vector<DeviceRule>> devices;
    // Not a setting: skip (with a warning) what this host cannot apply instead of failing.
    bool ignoreUnsupported = false;

    bool empty() const {
        return !cpuLimit && !cpuRequest && !memoryLimit && !memoryRequest && !pidsLimit &&
               !cpuset && !memorySwap && !memorySwappiness && !blkioWeight && !deviceThrottle &&
               !devices;
    }
    bool io() const { return blkioWeight || deviceThrottle; }
};

inline constexpr std::int64_t kMinMemory =
    4 << 20; // what the core accepts, and more than any kernel needs
inline constexpr std::int64_t kMaxPids = 4194304;
inline constexpr std::int64_t kMaxMillicores = 4096 * 1000;

// The fields of `s` that are set, named as in spec.resources: "limits.cpu",
// "requests.cpu", "limits.memory", "requests.memory", "limits.pids", "cpuset",
// "memorySwap", "memorySwappiness", "blkioWeight", "deviceThrottle", "devices".
std::vector<std::string> fieldsOf(const Settings &s);
// Leave the field named as above alone (as if absent).
void clearField(Settings &s, const std::string &field);
// The controller applying a field ("cpu", "memory", "pids", "cpuset", "blkio", "devices";
// cgroup2 has no devices controller: a BPF program there).
const char *controllerOf(const std::string &field);

// A field of a request this host cannot apply, and why.
struct Unsupported {
    std::string field;
    std::string reason;
};

// Throws Error(MO_E_INVALID) naming the field: "invalid `limits.memory`: ...".
Settings parseResources(const nlohmann::json &resources);

// v1 cpu.shares for a CPU request, as Kubernetes computes it (2..262144, 1024 a core).
std::uint64_t sharesFromMillis(std::int64_t millis);
// v2 cpu.weight for v1 shares, as runc and crun convert it: [2, 262144] onto [1, 10000]
// linearly (1024 shares -> 39).
std::uint64_t weightFromShares(std::uint64_t shares);
// CFS period and quota in microseconds for a CPU limit. The period is 100ms unless the
// quota would fall below the kernel's 1ms minimum, then 1s.
struct CpuQuota {
    std::uint64_t quotaUs;
    std::uint64_t periodUs;
};
CpuQuota quotaFromMillis(std::int64_t millis);

// A cpuset list "0-3,6": digits, commas and ranges.
bool isCpuList(const std::string &text);

} // namespace mobileops::cgroup
