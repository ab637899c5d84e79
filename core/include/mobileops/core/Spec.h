// The container spec model. Every source of configuration (a VirtualRoot document in YAML
// or JSON, CLI flags, an OCI bundle: OciSpec.h) becomes one JSON document, the runtime spec of
// docs/runtime-spec.md; docs/virtualroot-spec.md is the reference of the VirtualRoot form.
//
//     json spec = parseVirtualRoot(text, "app.yaml"); // or json::object() without a file
//     applyOptions(spec, opts);                       // CLI flags win
//     finalize(spec);                                 // defaults and host checks
//
// Bad input throws Error(MO_E_INVALID, ...) naming the field or flag and the value.
#pragma once

#include <mobileops/core/Error.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mobileops::core::spec {

// Parse a VirtualRoot document (YAML, or JSON which is read as YAML) into a runtime spec
// that holds only what the document sets. `source` names the document in messages
// ("app.yaml:12: spec.resources.limits.memory: `4Gx` is not a quantity"); when it names
// an existing file, relative paths in the document are relative to that file's directory.
nlohmann::json parseVirtualRoot(const std::string &text, const std::string &source);

// Apply CLI flags on top of `spec` (flags win). `opts` is the object the dispatcher builds:
// {"name", "hostname", "env", "env_file", "workdir", "user", "group_add", "read_only",
// "network", "init", "ulimit", "userns", "interactive", "tty", "rootfs", "command",
// "memory", "cpus", "pids_limit", "memory_reservation", "cpu_shares", "cpuset_cpus",
// "memory_swap", "memory_swappiness", "blkio_weight", "device_read_bps",
// "device_write_bps", "device_read_iops", "device_write_iops", "stop_timeout", "runtime"}.
// Other keys are ignored. The device flags ("/dev/vda:1mb") are resolved with stat(2) to
// resources.deviceThrottle [{"device", "major", "minor", "readBps", ...}].
void applyOptions(nlohmann::json &spec, const nlohmann::json &opts);

// Fill defaults, check the rootfs (exists, is a directory; made canonical), the name, the
// command and the bind mount sources. Run once everything else has been applied.
void finalize(nlohmann::json &spec);

// A bad value. what() is the full message: "`4Gx` is not a quantity" when the reason is
// a predicate ("is ...", "contains ..."), else "`nofile=x`: expected NAME=SOFT[:HARD]".
// value() and reason() let callers put the value in their own context, as in
// "invalid --memory `4Gx`: not a quantity".
class InvalidValue : public Error {
public:
    InvalidValue(const std::string &value, const std::string &reason);

    const std::string &value() const noexcept { return _value; }
    const std::string &reason() const noexcept { return _reason; }
    // The reason without a leading "is ", for "invalid --flag `VALUE`: <brief>".
    std::string brief() const;

private:
    std::string _value;
    std::string _reason;
};

// Bounds refused as absurd.
inline constexpr std::uint64_t kMinMemory = 4ull << 20;  // 4Mi
inline constexpr std::uint64_t kMaxMemory = 1ull << 50;  // 1Pi
inline constexpr std::uint64_t kMinStorage = 1ull << 20; // 1Mi
inline constexpr std::uint64_t kMaxStorage = 1ull << 53; // 8Pi: still exact as a Lua number
inline constexpr std::int64_t kMaxMillicores = 4096 * 1000;
inline constexpr std::int64_t kMaxPids = 4194304;    // PID_MAX_LIMIT
inline constexpr std::uint32_t kMaxId = 4294967294u; // (uid_t)-1 means "no change"
inline constexpr std::int64_t kMaxStopTimeout = 86400;
// Micro-VM containers (`vm`, --vcpus, --vm-memory): qemu's microvm takes up to 288 vCPUs;
// below 64Mi a Debian kernel does not boot.
inline constexpr std::int64_t kMaxVcpus = 256;
inline constexpr std::uint64_t kMinVmMemory = 64ull << 20; // 64Mi
inline constexpr std::uint64_t kMaxVmMemory = 1ull << 40;  // 1Ti
inline constexpr const char *kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// A byte quantity in the Kubernetes form: a decimal number (fraction allowed) with an
// optional suffix Ki Mi Gi Ti Pi Ei (powers of 1024), k M G T P E (powers of 1000) or an
// exponent (1e9). Fractional bytes round up. Negative, malformed ("4Gx", "512m") and
// values above 2^64-1 are refused.
std::uint64_t parseQuantity(const std::string &text);

// Log retention (spec.logging, --log-max-size, --log-max-age): a byte quantity from 64Ki
// to 1Ti; a duration such as "7d" or "1h30m" in seconds, from 1s to 3650d (whole numbers
// with units w, d, h, m, s, largest first). Both throw InvalidValue.
std::uint64_t parseLogMaxSize(const std::string &text);
std::int64_t parseLogMaxAge(const std::string &text);

// CPU in millicores: "0.5" and "500m" give 500, "2" gives 2000. Finer than 1m is refused.
std::int64_t parseCpu(const std::string &text);

// "nofile" or "RLIMIT_NOFILE" (any case) -> "RLIMIT_NOFILE".
std::string rlimitType(const std::string &name);
// "1024" -> 1024, "unlimited" or "-1" -> -1 (RLIM_INFINITY).
std::int64_t parseRlimitValue(const std::string &text);

struct Rlimit {
    std::string type; // RLIMIT_NOFILE
    std::int64_t soft = 0;
    std::int64_t hard = 0; // -1: unlimited
};
// "nofile=1024:2048", "nproc=512" (hard = soft), "core=-1" or "core=unlimited".
Rlimit parseUlimit(const std::string &text);
nlohmann::json toJson(const Rlimit &limit);

// "UID[:GID]" or "NAME[:GROUP]" (numbers and names may mix) -> process.user:
// {"uid", "gid"} when both are numbers, else {"name": text} for the runtime to resolve
// against the rootfs's /etc/passwd and /etc/group (a lone UID too, so its primary group
// comes from /etc/passwd as with docker).
nlohmann::json parseUser(const std::string &text);
// A uid or gid: 0 to 4294967294.
std::uint32_t parseId(const std::string &text);
// A user or group name as /etc/passwd holds them.
bool isValidUserName(const std::string &name);

// "HOSTID:SIZE" (container ids from 0) or "CONTAINERID:HOSTID:SIZE" -> the runtime spec's
// userns object, the same mapping for uids and gids.
nlohmann::json parseUserns(const std::string &text);

// "K=V" -> {K, V}; "K" -> {K, nullopt} (the caller's value, if it has one).
std::pair<std::string, std::optional<std::string>> parseEnv(const std::string &text);
// Read an env file as docker does: "K=V" lines, "K" lines taken from this process's
// environment (skipped when unset), blank lines and "#" comments skipped. Returns "K=V"
// entries. Errors name "path:line".
std::vector<std::string> readEnvFile(const std::string &path);

// "TERM", "SIGTERM", "15", "RTMIN+2" -> the signal number.
int parseSignal(const std::string &text);
// "net_admin", "CAP_NET_ADMIN" -> "CAP_NET_ADMIN"; "ALL" stays "ALL".
std::string capabilityName(const std::string &text);

// [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}
bool isValidName(const std::string &name);
// Strings in a runtime spec must be UTF-8 (JSON cannot carry other bytes).
bool isValidUtf8(std::string_view text);
// 1 to 64 characters: letters, digits, `-`, `_`, `.`, not starting with `-` or `.`.
bool isValidHostname(const std::string &name);
// A CPU list such as `0-3,6`.
bool isValidCpuList(const std::string &list);

// Editing a runtime spec: set K in process.env (replacing an earlier K).
void setEnv(nlohmann::json &spec, const std::string &name, const std::string &value);
// Record a field accepted but not applied yet (no duplicates).
void addUnapplied(nlohmann::json &spec, const std::string &field);
// Forget the entries for `field` and below it ("spec.resources" also removes
// "spec.resources.limits.cpu" and "spec.networking.mode=bridge" goes with
// "spec.networking.mode").
void removeUnapplied(nlohmann::json &spec, const std::string &field);

} // namespace mobileops::core::spec
