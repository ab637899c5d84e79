// CLI flags on top of a runtime spec: `container create/boot/run` options win over the
// VirtualRoot file they may come with.
#include "mobileops/core/Log.h"
#include "mobileops/core/Spec.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace mobileops::core::spec {

using json = nlohmann::json;

namespace {

const char *const kNameRule = "expected 1 to 128 letters, digits, `_`, `.`, `-`, starting with a "
                              "letter or digit";

// "env_file" -> "--env-file"
std::string flagName(const std::string &key) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
}

[[noreturn]] void badFlag(const std::string &key, const std::string &value,
                          const std::string &reason) {
    throw Error(MO_E_INVALID, "invalid " + flagName(key) + " " + quote(value) + ": " + reason);
}

[[noreturn]] void badFlag(const std::string &key, const InvalidValue &e) {
    badFlag(key, e.value(), e.brief());
}

[[noreturn]] void badType(const std::string &key, const char *expected) {
    throw Error(MO_E_INVALID, "invalid " + flagName(key) + ": expected " + expected);
}

class Options {
public:
    explicit Options(const json &opts) : _opts(opts) {}

    // Absent, null and empty tables (`{}` from Lua) are all "not given".
    const json *get(const char *key) const {
        auto it = _opts.find(key);
        if (it == _opts.end() || it->is_null() || (it->is_object() && it->empty())) return nullptr;
        return &*it;
    }

    std::optional<std::string> string(const char *key) const {
        const json *v = get(key);
        if (!v) return std::nullopt;
        if (!v->is_string()) badType(key, "a string");
        return checked(key, v->get<std::string>());
    }

    // A repeatable flag: one string or a list of them.
    std::vector<std::string> strings(const char *key) const {
        std::vector<std::string> out;
        const json *v = get(key);
        if (!v) return out;
        if (v->is_string()) return {checked(key, v->get<std::string>())};
        if (!v->is_array()) badType(key, "a string or a list of strings");
        for (const auto &item : *v) {
            if (!item.is_string()) badType(key, "a string or a list of strings");
            out.push_back(checked(key, item.get<std::string>()));
        }
        return out;
    }

    std::optional<bool> boolean(const char *key) const {
        const json *v = get(key);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) badType(key, "true or false");
        return v->get<bool>();
    }

    // A number given as a JSON number or as the flag's text.
    std::optional<std::string> numberText(const char *key) const {
        const json *v = get(key);
        if (!v) return std::nullopt;
        if (v->is_string()) return checked(key, v->get<std::string>());
        if (v->is_number()) return v->dump();
        badType(key, "a number");
    }

private:
    static const std::string &checked(const char *key, const std::string &value) {
        if (!isValidUtf8(value)) badType(key, "UTF-8 text");
        return value;
    }

    const json &_opts;
};

std::int64_t integerFlag(const char *key, const std::string &text, std::int64_t min,
                         std::int64_t max, const std::string &expected) {
    bool negative = !text.empty() && text[0] == '-';
    std::string digits = negative ? text.substr(1) : text;
    if (digits.empty() || digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        badFlag(key, text, expected);
    std::int64_t n = std::stoll(text);
    if (n < min || n > max) badFlag(key, text, expected);
    return n;
}

// Lexically normal, without a trailing slash.
std::string normal(const std::filesystem::path &path) {
    std::string s = path.lexically_normal().string();
    if (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

// A request flag (memory reservation, cpu shares) replaces what the spec file said; it
// must not exceed the limit of the same resource.
void setRequest(json &spec, const char *key, const std::string &text, const char *field,
                std::int64_t value) {
    removeUnapplied(spec, std::string("spec.resources.requests.") + field);
    json &resources = spec["resources"];
    if (!resources.is_object()) resources = json::object();
    auto limits = resources.find("limits");
    if (limits != resources.end() && limits->is_object() && limits->contains(field) &&
        (*limits)[field].get<std::int64_t>() < value)
        badFlag(key, text,
                std::string("above the limit spec.resources.limits.") + field + " (" +
                    (*limits)[field].dump() + ")");
    json &requests = resources["requests"];
    if (!requests.is_object()) requests = json::object();
    requests[field] = value;
    addUnapplied(spec, flagName(key));
}

json &process(json &spec) {
    json &p = spec["process"];
    if (!p.is_object()) p = json::object();
    return p;
}

// A limit flag replaces what the spec file said and is reported under the flag's name
// until the cgroup service applies it.
void setLimit(json &spec, const char *key, const std::string &text, const char *field, json value) {
    removeUnapplied(spec, std::string("spec.resources.limits.") + field);
    removeUnapplied(spec, flagName(key));
    json &resources = spec["resources"];
    if (!resources.is_object()) resources = json::object();
    if (value.is_null()) {
        if (resources.contains("limits") && resources["limits"].is_object())
            resources["limits"].erase(field);
        return;
    }
    auto requests = resources.find("requests");
    if (requests != resources.end() && requests->is_object() && requests->contains(field) &&
        (*requests)[field].get<std::int64_t>() > value.get<std::int64_t>())
        badFlag(key, text,
                std::string("below the request spec.resources.requests.") + field + " (" +
                    (*requests)[field].dump() + ")");
    json &limits = resources["limits"];
    if (!limits.is_object()) limits = json::object();
    limits[field] = value;
    addUnapplied(spec, flagName(key));
}

json &resourcesOf(json &spec) {
    json &resources = spec["resources"];
    if (!resources.is_object()) resources = json::object();
    return resources;
}

// A rate in bytes as docker reads it: a number with an optional unit b, k, kb, kib, m,
// mb, mib, g, ... in any case, all powers of 1024 ("1mb", "10MiB", "512k", "4096").
std::uint64_t parseRate(const char *key, const std::string &flag, const std::string &text) {
    size_t end = 0;
    while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
    std::string number = text.substr(0, end), unit = text.substr(end);
    std::transform(unit.begin(), unit.end(), unit.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();
    if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();
    static const std::string kUnits = "kmgtp";
    int power = 0;
    if (unit.size() == 1 && unit != "b") {
        auto at = kUnits.find(unit[0]);
        if (at == std::string::npos)
            power = -1;
        else
            power = static_cast<int>(at) + 1;
    } else if (!unit.empty() && unit != "b") {
        power = -1;
    }
    bool numeric = !number.empty() && number != "." &&
                   std::count(number.begin(), number.end(), '.') <= 1 && number.size() <= 20;
    if (!numeric || power < 0)
        badFlag(key, flag, quote(text) + " is not a rate in bytes such as `1mb` or `10MiB`");
    double bytes = std::ceil(std::stod(number) * std::pow(1024.0, power));
    if (bytes < 1) badFlag(key, flag, "a rate of at least 1 byte per second is needed");
    if (bytes > static_cast<double>(kMaxStorage))
        badFlag(key, flag, quote(text) + " is above the maximum `8Pi`");
    return static_cast<std::uint64_t>(bytes);
}

// --device-read-bps /dev/vda:1mb -> the device's throttle entry (one per device, the
// runtime spec's resources.deviceThrottle) gets readBps.
void addDeviceThrottle(json &spec, const char *key, const char *field, bool bytes,
                       const std::string &text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
        badFlag(key, text, "expected DEVICE:RATE such as `/dev/vda:1mb`");
    std::string device = text.substr(0, colon), rate = text.substr(colon + 1);
    if (device[0] != '/') badFlag(key, text, quote(device) + " is not an absolute path");
    struct stat st {};
    if (::stat(device.c_str(), &st) != 0)
        badFlag(key, text, quote(device) + ": " + std::strerror(errno));
    if (!S_ISBLK(st.st_mode)) badFlag(key, text, quote(device) + " is not a block device");
    std::int64_t value;
    if (bytes) {
        value = static_cast<std::int64_t>(parseRate(key, text, rate));
    } else {
        bool digits = rate.size() <= 15 && std::all_of(rate.begin(), rate.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
        if (!digits || std::stoll(rate) < 1)
            badFlag(key, text, quote(rate) + " is not a positive number of operations");
        value = std::stoll(rate);
    }
    json &list = resourcesOf(spec)["deviceThrottle"];
    if (!list.is_array()) list = json::array();
    std::int64_t major = ::major(st.st_rdev), minor = ::minor(st.st_rdev);
    for (auto &entry : list) {
        if (entry.is_object() && entry.value("major", -1) == major &&
            entry.value("minor", -1) == minor) {
            entry[field] = value;
            addUnapplied(spec, flagName(key));
            return;
        }
    }
    list.push_back({{"device", device}, {"major", major}, {"minor", minor}, {field, value}});
    addUnapplied(spec, flagName(key));
}

void applyResourceExtras(json &spec, const Options &o) {
    if (auto swap = o.numberText("memory_swap")) {
        json &resources = resourcesOf(spec);
        auto limits = resources.find("limits");
        bool haveMemory = limits != resources.end() && limits->is_object() &&
                          limits->contains("memory") && (*limits)["memory"].is_number();
        if (!haveMemory) badFlag("memory_swap", *swap, "needs a memory limit (--memory) as well");
        if (*swap == "-1") {
            resources["memorySwap"] = -1;
        } else {
            std::uint64_t bytes = 0;
            try {
                bytes = parseQuantity(*swap);
            } catch (const InvalidValue &e) {
                badFlag("memory_swap", e);
            }
            if (bytes > kMaxMemory) badFlag("memory_swap", *swap, "above the maximum `1Pi`");
            auto memory = (*limits)["memory"].get<std::int64_t>();
            if (static_cast<std::int64_t>(bytes) < memory)
                badFlag("memory_swap", *swap,
                        "below the memory limit (" + std::to_string(memory) +
                            "); --memory-swap is memory plus swap, or -1 for unlimited swap");
            resources["memorySwap"] = bytes;
        }
        addUnapplied(spec, "--memory-swap");
    }
    if (auto swappiness = o.numberText("memory_swappiness")) {
        resourcesOf(spec)["memorySwappiness"] =
            integerFlag("memory_swappiness", *swappiness, 0, 100, "expected 0 to 100");
        addUnapplied(spec, "--memory-swappiness");
    }
    if (auto weight = o.numberText("blkio_weight")) {
        resourcesOf(spec)["blkioWeight"] =
            integerFlag("blkio_weight", *weight, 10, 1000, "expected 10 to 1000");
        addUnapplied(spec, "--blkio-weight");
    }
    if (auto ignore = o.boolean("ignore_unsupported"); ignore && *ignore)
        resourcesOf(spec)["ignoreUnsupported"] = true;
    for (const auto &t : o.strings("device_read_bps"))
        addDeviceThrottle(spec, "device_read_bps", "readBps", true, t);
    for (const auto &t : o.strings("device_write_bps"))
        addDeviceThrottle(spec, "device_write_bps", "writeBps", true, t);
    for (const auto &t : o.strings("device_read_iops"))
        addDeviceThrottle(spec, "device_read_iops", "readIops", false, t);
    for (const auto &t : o.strings("device_write_iops"))
        addDeviceThrottle(spec, "device_write_iops", "writeIops", false, t);
}

void applyNetwork(json &spec, const std::string &mode) {
    json &network = spec["network"];
    if (!network.is_object()) network = json::object();
    removeUnapplied(spec, "spec.networking.mode");
    removeUnapplied(spec, "--network");
    network.erase("attach");
    if (mode == "host" || mode == "none" || mode == "private") {
        network["mode"] = mode;
    } else if (isValidName(mode) && mode.size() <= 64) {
        network["mode"] = "private";
        network["attach"] = mode;
        addUnapplied(spec, "--network=" + mode);
    } else {
        badFlag("network", mode, "expected host, none, private, bridge or a network name");
    }
}

// --publish [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp] ("[::1]:8080:80" for IPv6): a port of
// the container reachable on the host's. A container with only its own namespace goes on
// the default bridge network for it.
void applyPublish(json &spec, const std::vector<std::string> &flags) {
    if (flags.empty()) return;
    json &network = spec["network"];
    if (!network.is_object()) network = json::object();
    std::string mode = network.value("mode", "private");
    if (mode != "private")
        badFlag("publish", flags.front(), "needs a bridge network, not --network " + mode);
    if (network.value("attach", "").empty()) network["attach"] = "bridge";
    json &ports = network["ports"];
    if (!ports.is_array()) ports = json::array();
    for (const auto &text : flags) {
        std::string rest = text, proto = "tcp", ip;
        if (auto slash = rest.rfind('/'); slash != std::string::npos) {
            proto = rest.substr(slash + 1);
            rest = rest.substr(0, slash);
            if (proto != "tcp" && proto != "udp")
                badFlag("publish", text, "protocol " + quote(proto) + " is not tcp or udp");
        }
        if (!rest.empty() && rest[0] == '[') {
            auto close = rest.find("]:");
            if (close == std::string::npos)
                badFlag("publish", text, "expected [IPv6]:HOSTPORT:CONTAINERPORT");
            ip = rest.substr(1, close - 1);
            rest = rest.substr(close + 2);
        } else if (std::count(rest.begin(), rest.end(), ':') == 2) {
            ip = rest.substr(0, rest.find(':'));
            rest = rest.substr(rest.find(':') + 1);
        }
        auto colon = rest.find(':');
        if (colon == std::string::npos)
            badFlag("publish", text, "expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]");
        auto port = [&](const std::string &p, const char *which) {
            char *end = nullptr;
            long n = p.empty() ? 0 : std::strtol(p.c_str(), &end, 10);
            if (p.empty() || *end || n < 1 || n > 65535)
                badFlag("publish", text,
                        std::string(which) + " " + quote(p) + " is not a port (1 to 65535)");
            return n;
        };
        long hostPort = port(rest.substr(0, colon), "host port");
        long containerPort = port(rest.substr(colon + 1), "container port");
        unsigned char buf[16];
        if (!ip.empty() && ::inet_pton(AF_INET, ip.c_str(), buf) != 1 &&
            ::inet_pton(AF_INET6, ip.c_str(), buf) != 1)
            badFlag("publish", text, quote(ip) + " is not an IP address");
        for (const auto &p : ports)
            if (p.value("hostPort", 0L) == hostPort && p.value("protocol", "tcp") == proto &&
                p.value("hostIP", "") == ip)
                badFlag("publish", text,
                        "host port " + std::to_string(hostPort) + "/" + proto +
                            " is published twice");
        json entry = {
            {"hostPort", hostPort}, {"containerPort", containerPort}, {"protocol", proto}};
        if (!ip.empty()) entry["hostIP"] = ip;
        ports.push_back(entry);
    }
    addUnapplied(spec, "--publish");
}

void applyUser(json &spec, const std::string &text) {
    json user;
    try {
        user = parseUser(text);
    } catch (const InvalidValue &e) {
        badFlag("user", e);
    }
    json &current = process(spec)["user"];
    for (const char *keep : {"additionalGids", "additionalGroups"})
        if (current.is_object() && current.contains(keep)) user[keep] = current[keep];
    current = user;
}

void addGroup(json &spec, const std::string &group) {
    json &user = process(spec)["user"];
    // no uid yet: finalize takes the image's user, or root
    if (!user.is_object()) user = json::object();
    bool numeric = !group.empty() && std::all_of(group.begin(), group.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; });
    json entry;
    const char *list = "additionalGids";
    if (numeric) {
        try {
            entry = parseId(group);
        } catch (const InvalidValue &e) {
            badFlag("group_add", e);
        }
    } else if (isValidUserName(group)) {
        entry = group;
        list = "additionalGroups";
    } else {
        badFlag("group_add", group, "expected a GID or a group name");
    }
    json &entries = user[list];
    if (!entries.is_array()) entries = json::array();
    if (std::find(entries.begin(), entries.end(), entry) == entries.end()) entries.push_back(entry);
}

void addRlimit(json &spec, const std::string &text) {
    Rlimit limit;
    try {
        limit = parseUlimit(text);
    } catch (const InvalidValue &e) {
        badFlag("ulimit", e);
    }
    json &rlimits = process(spec)["rlimits"];
    if (!rlimits.is_array()) rlimits = json::array();
    for (auto &entry : rlimits) {
        if (entry.is_object() && entry.value("type", "") == limit.type) {
            entry = toJson(limit);
            return;
        }
    }
    rlimits.push_back(toJson(limit));
}

std::vector<std::string> splitOn(const std::string &text, char sep) {
    std::vector<std::string> parts;
    for (std::size_t at = 0; at <= text.size();) {
        std::size_t end = std::min(text.find(sep, at), text.size());
        parts.push_back(text.substr(at, end - at));
        at = end + 1;
    }
    return parts;
}

// A byte quantity flag (--disk-limit, --ephemeral-storage): at least 1Mi, at most 8Pi.
std::uint64_t storageFlag(const char *key, const std::string &text) {
    std::uint64_t bytes = 0;
    try {
        bytes = parseQuantity(text);
    } catch (const InvalidValue &e) {
        badFlag(key, e);
    }
    if (bytes < kMinStorage) badFlag(key, text, "below the minimum `1Mi`");
    if (bytes > kMaxStorage) badFlag(key, text, "above the maximum `8Pi`");
    return bytes;
}

bool isHostPath(const std::string &text) {
    return text[0] == '/' || text == "." || text == ".." || text.rfind("./", 0) == 0 ||
           text.rfind("../", 0) == 0;
}

// --volume HOST:CONTAINER[:OPTIONS] -> a bind mount of the runtime spec; --volume
// NAME:CONTAINER[:ro|rw] -> a `volumes` entry of type `volume` (a named volume, for the
// storage service).
struct VolumeFlag {
    json entry;
    bool named = false;
};

VolumeFlag parseVolumeFlag(const std::string &text) {
    const char *form = "expected HOST:CONTAINER[:OPTIONS] or NAME:CONTAINER[:ro] such as "
                       "`/srv/data:/data:ro`";
    std::vector<std::string> parts = splitOn(text, ':');
    if (parts.size() < 2 || parts.size() > 3) badFlag("volume", text, form);
    const std::string &host = parts[0], &dest = parts[1];
    if (host.empty() || dest.empty()) badFlag("volume", text, form);
    const bool named = !isHostPath(host);
    if (named && (!isValidName(host) || host.find('/') != std::string::npos))
        badFlag("volume", text,
                quote(host) + " is neither a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*) nor a host "
                              "path (absolute, or starting with `./` or `../`)");
    if (dest[0] != '/') badFlag("volume", text, quote(dest) + " is not an absolute path");
    for (const auto &component : splitOn(dest, '/'))
        if (component == "..") badFlag("volume", text, quote(dest) + " contains `..`");
    std::string destination = normal(dest);
    if (destination == "/") badFlag("volume", text, "cannot mount over the container's root");

    json options = json::array();
    std::string access, propagation, recursion = "rbind";
    static const std::vector<std::string> kPropagation = {"private", "rprivate", "shared",
                                                          "rshared", "slave",    "rslave"};
    static const std::vector<std::string> kFlags = {"nosuid", "suid",   "nodev",
                                                    "dev",    "noexec", "exec"};
    if (parts.size() == 3) {
        if (parts[2].empty()) badFlag("volume", text, form);
        for (const auto &opt : splitOn(parts[2], ',')) {
            if (opt == "ro" || opt == "rw") {
                if (!access.empty() && access != opt)
                    badFlag("volume", text, "`ro` and `rw` together");
                access = opt;
            } else if (opt == "z" || opt == "Z") {
                // SELinux relabelling: accepted for podman's and docker's command lines;
                // no SELinux policy is applied here, so there is nothing to relabel.
            } else if (named) {
                badFlag("volume", text,
                        "option " + quote(opt) +
                            " is for host paths; a named volume takes `ro`, `rw`, `z`, `Z`");
            } else if (opt == "bind" || opt == "rbind") {
                recursion = opt;
            } else if (std::find(kPropagation.begin(), kPropagation.end(), opt) !=
                       kPropagation.end()) {
                if (!propagation.empty() && propagation != opt)
                    badFlag("volume", text, "more than one propagation option");
                propagation = opt;
            } else if (std::find(kFlags.begin(), kFlags.end(), opt) != kFlags.end()) {
                options.push_back(opt);
            } else {
                badFlag("volume", text,
                        "unknown option " + quote(opt) +
                            " (known: ro, rw, z, Z, bind, rbind, private, rprivate, shared, "
                            "rshared, slave, rslave, nosuid, nodev, noexec)");
            }
        }
    }
    if (named)
        return {{{"name", host},
                 {"type", "volume"},
                 {"source", host},
                 {"containerPath", destination},
                 {"readOnly", access == "ro"}},
                true};
    options.insert(options.begin(), recursion);
    if (access == "ro") options.push_back("ro");
    if (!propagation.empty()) options.push_back(propagation);
    return {{{"destination", destination},
             {"source", normal(std::filesystem::absolute(host))},
             {"type", "bind"},
             {"options", options}},
            false};
}

json &arrayIn(json &spec, const char *key) {
    json &list = spec[key];
    if (!list.is_array()) list = json::array();
    return list;
}

// --volume, --ephemeral-storage, --soft-mounts, --volatile, --rootfs-img
// (docs/runtime-spec.md). A flag replaces a spec file's mount or volume of the same
// destination.
void applyMounts(json &spec, const Options &o) {
    auto image = o.string("rootfs_img");
    if (image) {
        if (image->empty()) badType("rootfs_img", "an image file");
        if (o.string("rootfs"))
            throw Error(MO_E_INVALID, "give a ROOTFS directory or --rootfs-img, not both");
        if (o.string("image")) throw Error(MO_E_INVALID, "give an IMAGE or --rootfs-img, not both");
        for (const char *key : {"rootfs", "image", "imageId", "imageConfig"}) spec.erase(key);
        spec["rootfsImage"] = normal(std::filesystem::absolute(*image));
    } else if (o.string("rootfs") || o.string("image")) {
        spec.erase("rootfsImage");
    }
    if (auto v = o.boolean("volatile")) spec["volatile"] = *v;
    if (auto soft = o.boolean("soft_mounts")) spec["softMounts"] = *soft;

    auto flags = o.strings("volume");
    auto ephemeral = o.numberText("ephemeral_storage");
    if (flags.empty() && !ephemeral) return;
    json &mounts = arrayIn(spec, "mounts");
    json &volumes = arrayIn(spec, "volumes");
    std::map<std::string, std::string> seen; // destination -> flag
    auto replace = [&](const char *key, const std::string &text, const std::string &destination,
                       const std::string &name) {
        auto [it, fresh] = seen.emplace(destination, text);
        if (!fresh)
            badFlag(key, text, quote(destination) + " is already mounted by " + quote(it->second));
        for (auto m = mounts.begin(); m != mounts.end();)
            m = m->is_object() && m->value("destination", "") == destination ? mounts.erase(m)
                                                                             : m + 1;
        for (auto v = volumes.begin(); v != volumes.end();)
            v = v->is_object() && (v->value("containerPath", "") == destination ||
                                   (!name.empty() && v->value("name", "") == name))
                    ? volumes.erase(v)
                    : v + 1;
    };
    for (const auto &text : flags) {
        VolumeFlag flag = parseVolumeFlag(text);
        const json &e = flag.entry;
        replace("volume", text, e.value(flag.named ? "containerPath" : "destination", ""), "");
        if (flag.named) {
            volumes.push_back(e);
            addUnapplied(spec, "--volume=" + text);
        } else {
            mounts.push_back(e);
        }
    }
    if (ephemeral) {
        std::uint64_t bytes = storageFlag("ephemeral_storage", *ephemeral);
        replace("ephemeral_storage", *ephemeral, "/scratch", "ephemeral");
        volumes.push_back({{"name", "ephemeral"},
                           {"type", "emptyDir"},
                           {"sizeLimit", bytes},
                           {"containerPath", "/scratch"},
                           {"readOnly", false}});
        addUnapplied(spec, "--ephemeral-storage");
    }
    if (volumes.empty()) spec.erase("volumes");
    auto binds = std::count_if(mounts.begin(), mounts.end(), [](const json &m) {
        return m.is_object() && m.value("type", "bind") == "bind";
    });
    // every volume becomes a bind mount too
    if (spec.contains("volumes")) binds += static_cast<long>(spec["volumes"].size());
    if (binds > 64) {
        const char *key = flags.empty() ? "ephemeral_storage" : "volume";
        badFlag(key, flags.empty() ? *ephemeral : flags.back(),
                std::to_string(binds) + " bind mounts, at most 64 per container");
    }
}

// --init-system, --hw-access: the system-container modes (docs/runtime-spec.md).
void applySystemModes(json &spec, const Options &o) {
    if (auto init = o.boolean("init_system")) spec["initSystem"] = *init;
    if (auto hw = o.boolean("hw_access")) spec["hardwareAccess"] = *hw;
}

// --cap-add, --cap-drop, --security-opt, --privileged: the runtime spec's `security`
// (docs/runtime-spec.md). A seccomp profile file is read here and carried in the spec.
void applySecurity(json &spec, const Options &o) {
    auto security = [&]() -> json & {
        json &s = spec["security"];
        if (!s.is_object()) s = json::object();
        return s;
    };
    auto addCaps = [&](const char *key, const char *list) {
        for (const auto &name : o.strings(key)) {
            std::string cap;
            try {
                cap = capabilityName(name);
            } catch (const InvalidValue &e) {
                badFlag(key, e);
            }
            json &caps = security()["capabilities"];
            if (!caps.is_object()) caps = json::object();
            json &names = caps[list];
            if (!names.is_array()) names = json::array();
            if (std::find(names.begin(), names.end(), cap) == names.end()) names.push_back(cap);
        }
    };
    addCaps("cap_add", "add");
    addCaps("cap_drop", "drop");
    for (const auto &opt : o.strings("security_opt")) {
        // docker's old `no-new-privileges:true` form too
        auto sep = opt.find_first_of("=:");
        std::string key = opt.substr(0, sep);
        std::string value = sep == std::string::npos ? "" : opt.substr(sep + 1);
        const bool assigned = sep != std::string::npos && opt[sep] == '=';
        if (key == "no-new-privileges") {
            if (value != "" && value != "true" && value != "false")
                badFlag("security_opt", opt, "expected `no-new-privileges[=true|false]`");
            security()["noNewPrivileges"] = value != "false";
        } else if (key == "seccomp" && assigned && value == "unconfined") {
            security()["seccomp"] = {{"mode", "unconfined"}};
        } else if (key == "seccomp" && assigned && !value.empty()) {
            std::string file = normal(std::filesystem::absolute(value));
            std::ifstream in(file);
            std::stringstream text;
            if (in) text << in.rdbuf();
            if (!in || in.bad())
                badFlag("security_opt", opt, quote(file) + ": " + std::strerror(errno));
            json profile = json::parse(text.str(), nullptr, false);
            if (profile.is_discarded() || !profile.is_object())
                badFlag("security_opt", opt, quote(file) + " is not a JSON seccomp profile");
            security()["seccomp"] = {{"mode", "profile"}, {"profile", profile}, {"source", file}};
        } else {
            badFlag("security_opt", opt,
                    "expected `seccomp=unconfined`, `seccomp=PROFILE.json` or "
                    "`no-new-privileges[=true|false]`");
        }
    }
    if (auto privileged = o.boolean("privileged")) security()["privileged"] = *privileged;
    const json *s = spec.contains("security") ? &spec["security"] : nullptr;
    if (s && s->is_object() && s->value("privileged", false) == true)
        log::warning("PRIVILEGED: the container gets every capability, no seccomp filter and "
                     "no masked or read-only kernel paths: it can take over this host");
}

// --log-max-size, --log-max-age: the log service's retention for this container; each
// replaces the file's spec.logging field of the same name.
void applyLogging(json &spec, const Options &o) {
    auto set = [&](const char *key, const char *field, auto parse) {
        auto text = o.numberText(key);
        if (!text) return;
        json &logging = spec["logging"];
        if (!logging.is_object()) logging = json::object();
        try {
            logging[field] = parse(*text);
        } catch (const InvalidValue &e) {
            badFlag(key, e);
        }
    };
    set("log_max_size", "maxSize", parseLogMaxSize);
    set("log_max_age", "maxAge", parseLogMaxAge);
}

// --isolation vm|namespace|auto, --vcpus, --vm-memory: the runtime (vm: krun) and the
// spec's `vm` settings. `auto` is left for the container workflow, which probes.
void applyVm(json &spec, const Options &o) {
    if (auto isolation = o.string("isolation")) {
        static const std::map<std::string, std::string> runtimes = {
            {"vm", "krun"}, {"namespace", "namespace"}, {"auto", ""}};
        auto it = runtimes.find(*isolation);
        if (it == runtimes.end())
            badFlag("isolation", *isolation, "expected `vm`, `namespace` or `auto`");
        if (auto runtime = o.string("runtime"); runtime && *runtime != it->second)
            badFlag("isolation", *isolation, "conflicts with --runtime " + *runtime);
        if (it->second.empty()) {
            spec["isolation"] = "auto";
            spec.erase("runtime");
        } else {
            spec["runtime"] = it->second;
            spec.erase("isolation");
        }
    }
    auto vm = [&]() -> json & {
        json &v = spec["vm"];
        if (!v.is_object()) v = json::object();
        return v;
    };
    if (auto vcpus = o.numberText("vcpus"))
        vm()["vcpus"] = integerFlag("vcpus", *vcpus, 1, kMaxVcpus,
                                    "expected 1 to " + std::to_string(kMaxVcpus));
    if (auto memory = o.numberText("vm_memory")) {
        std::uint64_t bytes = 0;
        try {
            bytes = parseQuantity(*memory);
        } catch (const InvalidValue &e) {
            badFlag("vm_memory", e);
        }
        if (bytes < kMinVmMemory) badFlag("vm_memory", *memory, "below the minimum `64Mi`");
        if (bytes > kMaxVmMemory) badFlag("vm_memory", *memory, "above the maximum `1Ti`");
        vm()["memory"] = bytes;
    }
}

void applyAll(json &spec, const Options &o) {
    if (auto name = o.string("name")) {
        if (!isValidName(*name)) badFlag("name", *name, kNameRule);
        spec["name"] = *name;
    }
    if (auto hostname = o.string("hostname")) {
        if (!isValidHostname(*hostname))
            badFlag("hostname", *hostname, "expected 1 to 64 letters, digits, `-`, `_`, `.`");
        spec["hostname"] = *hostname;
    }
    // A directory or an image replaces the spec file's root, whichever the file named.
    auto rootfs = o.string("rootfs");
    auto image = o.string("image");
    if (rootfs && image) throw Error(MO_E_INVALID, "give a ROOTFS directory or an IMAGE, not both");
    if (rootfs) {
        if (rootfs->empty()) badType("rootfs", "a directory");
        for (const char *key : {"image", "imageId", "imageConfig"}) spec.erase(key);
        spec["rootfs"] = normal(std::filesystem::absolute(*rootfs));
    }
    if (image) {
        bool blank = std::any_of(image->begin(), image->end(),
                                 [](char c) { return static_cast<unsigned char>(c) <= ' '; });
        if (image->empty() || blank)
            throw Error(MO_E_INVALID, "invalid image reference " + quote(*image) +
                                          ": expected a name such as `busybox:latest` or an "
                                          "image id");
        for (const char *key : {"rootfs", "imageId", "imageConfig"}) spec.erase(key);
        spec["image"] = *image;
    }
    if (const json *command = o.get("command")) {
        auto args = o.strings("command");
        if (!command->is_array()) badType("command", "a list of strings");
        // CMD replaces the file's command and args; an image's Entrypoint stays (podman)
        if (!args.empty()) {
            process(spec).erase("command");
            process(spec)["args"] = args;
        }
    }

    // docker's order: env files first, then --env
    for (const auto &file : o.strings("env_file")) {
        std::vector<std::string> entries;
        try {
            entries = readEnvFile(file);
        } catch (const Error &e) {
            throw Error(MO_E_INVALID, std::string("invalid --env-file ") + e.what());
        }
        for (const auto &entry : entries) {
            auto eq = entry.find('=');
            setEnv(spec, entry.substr(0, eq), entry.substr(eq + 1));
        }
    }
    for (const auto &text : o.strings("env")) {
        std::pair<std::string, std::optional<std::string>> env;
        try {
            env = parseEnv(text);
        } catch (const InvalidValue &e) {
            badFlag("env", e);
        }
        if (env.second) {
            setEnv(spec, env.first, *env.second);
        } else if (const char *value = std::getenv(env.first.c_str())) {
            if (!isValidUtf8(value))
                badFlag("env", text, "the value in the environment is not valid UTF-8");
            setEnv(spec, env.first, value);
        }
    }

    if (auto workdir = o.string("workdir")) {
        if (workdir->empty() || (*workdir)[0] != '/')
            badFlag("workdir", *workdir, "not an absolute path");
        process(spec)["cwd"] = normal(*workdir);
    }
    if (auto user = o.string("user")) applyUser(spec, *user);
    for (const auto &group : o.strings("group_add")) addGroup(spec, group);
    if (auto readOnly = o.boolean("read_only")) spec["readonly"] = *readOnly;
    if (auto network = o.string("network")) applyNetwork(spec, *network);
    applyPublish(spec, o.strings("publish"));
    if (auto init = o.boolean("init")) process(spec)["init"] = *init;
    for (const auto &limit : o.strings("ulimit")) addRlimit(spec, limit);
    // --pid/--ipc/--uts host: the caller's namespace instead of the container's own.
    for (const char *type : {"pid", "ipc", "uts"}) {
        auto mode = o.string(type);
        if (!mode) continue;
        if (*mode != "host" && *mode != "private") badFlag(type, *mode, "expected host or private");
        json &ns = spec["namespaces"];
        if (!ns.is_object()) ns = json::object();
        ns[type] = *mode == "private";
    }
    for (const auto &text : o.strings("sysctl")) {
        auto eq = text.find('=');
        if (eq == std::string::npos || eq == 0) badFlag("sysctl", text, "expected KEY=VALUE");
        json &sysctl = spec["sysctl"];
        if (!sysctl.is_object()) sysctl = json::object();
        sysctl[text.substr(0, eq)] = text.substr(eq + 1);
    }
    if (auto userns = o.string("userns")) {
        if (*userns == "host") {
            spec.erase("userns");
        } else {
            try {
                spec["userns"] = parseUserns(*userns);
            } catch (const InvalidValue &e) {
                badFlag("userns", e);
            }
        }
    }
    if (auto interactive = o.boolean("interactive")) process(spec)["stdin"] = *interactive;
    if (auto tty = o.boolean("tty")) process(spec)["terminal"] = *tty;

    if (auto memory = o.numberText("memory")) {
        std::uint64_t bytes = 0;
        try {
            bytes = parseQuantity(*memory);
        } catch (const InvalidValue &e) {
            badFlag("memory", e);
        }
        if (bytes < kMinMemory) badFlag("memory", *memory, "below the minimum `4Mi`");
        if (bytes > kMaxMemory) badFlag("memory", *memory, "above the maximum `1Pi`");
        setLimit(spec, "memory", *memory, "memory", bytes);
    }
    if (auto cpus = o.numberText("cpus")) {
        std::int64_t millis = 0;
        try {
            millis = parseCpu(*cpus);
        } catch (const InvalidValue &e) {
            badFlag("cpus", e);
        }
        if (millis < 1) badFlag("cpus", *cpus, "below the minimum `1m`");
        if (millis > kMaxMillicores)
            badFlag("cpus", *cpus, "above the maximum " + std::to_string(kMaxMillicores / 1000));
        setLimit(spec, "cpus", *cpus, "cpu", millis);
    }
    if (auto pids = o.numberText("pids_limit")) {
        std::int64_t n = integerFlag("pids_limit", *pids, -1, kMaxPids,
                                     "expected 1 to 4194304, or -1 for no limit");
        if (n == 0) badFlag("pids_limit", *pids, "expected 1 to 4194304, or -1 for no limit");
        setLimit(spec, "pids_limit", *pids, "pids", n < 0 ? json() : json(n));
    }
    if (auto reservation = o.numberText("memory_reservation")) {
        std::uint64_t bytes = 0;
        try {
            bytes = parseQuantity(*reservation);
        } catch (const InvalidValue &e) {
            badFlag("memory_reservation", e);
        }
        if (bytes > kMaxMemory)
            badFlag("memory_reservation", *reservation, "above the maximum `1Pi`");
        setRequest(spec, "memory_reservation", *reservation, "memory",
                   static_cast<std::int64_t>(bytes));
    }
    if (auto shares = o.numberText("cpu_shares")) {
        // docker's shares: 1024 is one CPU's worth of weight; kept as a CPU request
        std::int64_t n = integerFlag("cpu_shares", *shares, 2, 262144, "expected 2 to 262144");
        setRequest(spec, "cpu_shares", *shares, "cpu", std::max<std::int64_t>(1, n * 1000 / 1024));
    }
    if (auto disk = o.numberText("disk_limit"))
        setLimit(spec, "disk_limit", *disk, "storage",
                 static_cast<std::int64_t>(storageFlag("disk_limit", *disk)));
    if (auto cpuset = o.string("cpuset_cpus")) {
        if (!isValidCpuList(*cpuset))
            badFlag("cpuset_cpus", *cpuset, "expected a CPU list such as `0-3,6`");
        json &resources = spec["resources"];
        if (!resources.is_object()) resources = json::object();
        resources["cpuset"] = *cpuset;
        removeUnapplied(spec, "spec.resources.cpuset");
        addUnapplied(spec, "--cpuset-cpus");
    }
    applyResourceExtras(spec, o);
    applySystemModes(spec, o);
    applyMounts(spec, o);
    applySecurity(spec, o);
    applyLogging(spec, o);
    if (auto timeout = o.numberText("stop_timeout"))
        spec["stopTimeout"] = integerFlag("stop_timeout", *timeout, 0, kMaxStopTimeout,
                                          "expected seconds from 0 to 86400");
    if (auto runtime = o.string("runtime")) {
        if (!isValidName(*runtime) || runtime->size() > 64)
            badFlag("runtime", *runtime, "expected a runtime name such as `namespace` or `krun`");
        spec["runtime"] = *runtime;
    }
    applyVm(spec, o);
    if (auto verify = o.string("verify")) {
        if (*verify != "off" && *verify != "lazy" && *verify != "strict")
            badFlag("verify", *verify, "expected `off`, `lazy` or `strict`");
        spec["verify"] = *verify;
    }
}

} // namespace

void applyOptions(json &spec, const json &opts) {
    if (spec.is_null()) spec = json::object();
    if (!spec.is_object()) throw Error(MO_E_INVALID, "spec: expected an object");
    if (opts.is_null()) return;
    if (!opts.is_object()) throw Error(MO_E_INVALID, "options: expected an object");
    try {
        applyAll(spec, Options(opts));
    } catch (const Error &) {
        throw;
    } catch (const std::exception &e) {
        throw Error(MO_E_INTERNAL, std::string("applying options failed: ") + e.what());
    }
}

} // namespace mobileops::core::spec
