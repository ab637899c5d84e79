// config.json (OCI runtime-spec 1.0.0 to 1.1.x) -> runtime spec. Everything is checked
// here, before anything exists, so a bad bundle fails `create` naming the JSON path. The
// OCI spec says unknown properties must be ignored: they are listed in `unapplied`, so the
// CLI warns instead of dropping them silently.
#include "mobileops/core/OciSpec.h"

#include "mobileops/core/Error.h"
#include "mobileops/core/Spec.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

namespace mobileops::core::spec {

using json = nlohmann::json;

namespace {

constexpr std::size_t kMaxPath = 4096;

[[noreturn]] void fail(const std::string &path, const std::string &reason) {
    throw Error(MO_E_INVALID,
                (path.rfind("resources", 0) == 0 ? "" : "config.json: ") + path + ": " + reason);
}

std::string child(const std::string &path, const std::string &key) {
    return path.empty() ? key : path + "." + key;
}

std::string index(const std::string &path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

std::string kindOf(const json &v) {
    switch (v.type()) {
    case json::value_t::null:
        return "null";
    case json::value_t::boolean:
        return "a boolean";
    case json::value_t::string:
        return "a string";
    case json::value_t::array:
        return "an array";
    case json::value_t::object:
        return "an object";
    case json::value_t::number_float:
        return "a fraction";
    default:
        return "a number";
    }
}

std::string show(const json &v) {
    std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    return quote(s);
}

const json &object(const json &v, const std::string &path) {
    if (!v.is_object()) fail(path, "expected an object, not " + kindOf(v));
    return v;
}

const json &array(const json &v, const std::string &path) {
    if (!v.is_array()) fail(path, "expected an array, not " + kindOf(v));
    return v;
}

std::string string(const json &v, const std::string &path) {
    if (!v.is_string()) fail(path, "expected a string, not " + kindOf(v));
    std::string s = v.get<std::string>();
    if (s.find('\0') != std::string::npos) fail(path, "contains a NUL byte");
    if (!isValidUtf8(s)) fail(path, "is not UTF-8");
    return s;
}

bool boolean(const json &v, const std::string &path) {
    if (!v.is_boolean()) fail(path, "expected true or false, not " + kindOf(v));
    return v.get<bool>();
}

std::vector<std::string> strings(const json &v, const std::string &path) {
    std::vector<std::string> out;
    std::size_t i = 0;
    for (const auto &e : array(v, path)) out.push_back(string(e, index(path, i++)));
    return out;
}

// An integer in [lo, hi]; OCI's uint64 fields may carry 2^64-1.
std::int64_t integer(const json &v, const std::string &path, std::int64_t lo, std::int64_t hi) {
    if (v.is_number_unsigned()) {
        std::uint64_t u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(hi))
            fail(path, show(v) + " is above the maximum " + std::to_string(hi));
        if (static_cast<std::int64_t>(u) < lo)
            fail(path, show(v) + " is below the minimum " + std::to_string(lo));
        return static_cast<std::int64_t>(u);
    }
    if (!v.is_number_integer()) fail(path, "expected an integer, not " + kindOf(v));
    std::int64_t n = v.get<std::int64_t>();
    if (n < lo) fail(path, show(v) + " is below the minimum " + std::to_string(lo));
    if (n > hi) fail(path, show(v) + " is above the maximum " + std::to_string(hi));
    return n;
}

bool hasDotDot(const std::string &path) {
    std::size_t start = 0;
    while (start <= path.size()) {
        std::size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        if (path.compare(start, end - start, "..") == 0 && end - start == 2) return true;
        start = end + 1;
    }
    return false;
}

// An absolute path with no `..` component: what a container-side path must be.
std::string containerPath(const json &v, const std::string &path) {
    std::string s = string(v, path);
    if (s.empty() || s[0] != '/') fail(path, show(v) + " is not an absolute path");
    if (hasDotDot(s)) fail(path, show(v) + " contains `..`");
    if (s.size() > kMaxPath) fail(path, "is longer than 4096 bytes");
    return s;
}

// "/a//b/" -> "/a/b"
std::string clean(const std::string &path) {
    std::string out;
    for (char c : path)
        if (!(c == '/' && !out.empty() && out.back() == '/')) out += c;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    return out;
}

bool under(const std::string &path, const std::string &dir) {
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           path[dir.size()] == '/');
}

const std::set<std::string> kCapabilities = {"CAP_CHOWN",
                                             "CAP_DAC_OVERRIDE",
                                             "CAP_DAC_READ_SEARCH",
                                             "CAP_FOWNER",
                                             "CAP_FSETID",
                                             "CAP_KILL",
                                             "CAP_SETGID",
                                             "CAP_SETUID",
                                             "CAP_SETPCAP",
                                             "CAP_LINUX_IMMUTABLE",
                                             "CAP_NET_BIND_SERVICE",
                                             "CAP_NET_BROADCAST",
                                             "CAP_NET_ADMIN",
                                             "CAP_NET_RAW",
                                             "CAP_IPC_LOCK",
                                             "CAP_IPC_OWNER",
                                             "CAP_SYS_MODULE",
                                             "CAP_SYS_RAWIO",
                                             "CAP_SYS_CHROOT",
                                             "CAP_SYS_PTRACE",
                                             "CAP_SYS_PACCT",
                                             "CAP_SYS_ADMIN",
                                             "CAP_SYS_BOOT",
                                             "CAP_SYS_NICE",
                                             "CAP_SYS_RESOURCE",
                                             "CAP_SYS_TIME",
                                             "CAP_SYS_TTY_CONFIG",
                                             "CAP_MKNOD",
                                             "CAP_LEASE",
                                             "CAP_AUDIT_WRITE",
                                             "CAP_AUDIT_CONTROL",
                                             "CAP_SETFCAP",
                                             "CAP_MAC_OVERRIDE",
                                             "CAP_MAC_ADMIN",
                                             "CAP_SYSLOG",
                                             "CAP_WAKE_ALARM",
                                             "CAP_BLOCK_SUSPEND",
                                             "CAP_AUDIT_READ",
                                             "CAP_PERFMON",
                                             "CAP_BPF",
                                             "CAP_CHECKPOINT_RESTORE"};

// Sysctls a container may set: those its own namespaces hold (runc's list).
bool namespacedSysctl(const std::string &key, bool ownNetwork, bool ownIpc, bool ownUts) {
    static const std::set<std::string> ipc = {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"};
    if (ipc.count(key) || key.rfind("fs.mqueue.", 0) == 0) return ownIpc;
    if (key.rfind("net.", 0) == 0) return ownNetwork;
    if (key == "kernel.domainname") return ownUts;
    return false;
}

class Converter {
public:
    Converter(const json &config, std::string bundle) : _in(config), _bundle(std::move(bundle)) {}

    json convert() {
        object(_in, "(top level)");
        version();
        _out = json::object();
        _out["oci"] = {{"bundle", _bundle}};
        _out["cgroupMount"] = "none"; // unless config.json mounts cgroups (standard())
        for (auto it = _in.begin(); it != _in.end(); ++it) {
            const std::string &k = it.key();
            const json &v = it.value();
            if (k == "ociVersion" || k == "linux" || k == "process" || k == "mounts") {
                // in order below: mounts need the namespaces
            } else if (k == "root") {
                root(v);
            } else if (k == "hostname") {
                std::string h = string(v, k);
                if (!h.empty()) {
                    if (!isValidHostname(h)) fail(k, show(v) + " is not a valid hostname");
                    _out["hostname"] = h;
                }
            } else if (k == "domainname") {
                if (!string(v, k).empty()) unapplied(k);
            } else if (k == "hooks") {
                hooks(v);
            } else if (k == "annotations") {
                annotations(v);
            } else {
                unapplied(k + " (unknown to this runtime)");
            }
        }
        if (!_out.contains("rootfs")) fail("root", "required field is missing");
        if (_in.contains("linux")) linux(_in["linux"]);
        if (!_sawMountNs) fail("linux.namespaces", "no `mount` namespace: a container needs one");
        if (_out.contains("hostname") && !_sawUts)
            fail("hostname", "setting a hostname needs the container's own `uts` namespace (it "
                             "would rename the host)");
        if (!_in.contains("process")) fail("process", "required field is missing");
        process(_in["process"]);
        if (_in.contains("mounts")) mounts(_in["mounts"]);
        _out["security"] = _security;
        if (!_resources.empty()) _out["resources"] = _resources;
        return _out;
    }

private:
    void unapplied(const std::string &field) { addUnapplied(_out, field); }

    void version() {
        if (!_in.contains("ociVersion")) fail("ociVersion", "required field is missing");
        std::string v = string(_in["ociVersion"], "ociVersion");
        std::size_t dot = v.find('.');
        std::string major = v.substr(0, dot);
        bool digits = !major.empty() && std::all_of(major.begin(), major.end(), ::isdigit);
        if (!digits || dot == std::string::npos)
            fail("ociVersion", show(v) + " is not a version such as `1.0.2`");
        if (major != "1")
            fail("ociVersion", show(v) +
                                   ": this runtime reads version 1 of the runtime spec "
                                   "(1.0.0 to 1.1.x), not version " +
                                   major);
    }

    void root(const json &v) {
        object(v, "root");
        std::string path;
        for (auto it = v.begin(); it != v.end(); ++it) {
            std::string p = child("root", it.key());
            if (it.key() == "path") {
                path = string(it.value(), p);
                if (path.empty()) fail(p, "is empty");
            } else if (it.key() == "readonly") {
                _out["readonly"] = boolean(it.value(), p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (path.empty()) fail("root.path", "required field is missing");
        _out["rootfs"] = path[0] == '/' ? path : _bundle + "/" + path;
    }

    void annotations(const json &v) {
        json out = json::object();
        for (auto it = object(v, "annotations").begin(); it != v.end(); ++it) {
            std::string p = "annotations." + it.key();
            std::string value = string(it.value(), p);
            if (it.key() == "run.oci.handler") {
                if (value != "krun")
                    fail(p, show(value) + " is not a handler of this runtime (`krun`)");
                _out["runtime"] = "krun";
            }
            out[it.key()] = value;
        }
        _out["annotations"] = out;
    }

    void hooks(const json &v) {
        static const std::set<std::string> kinds = {"prestart",        "createRuntime",
                                                    "createContainer", "startContainer",
                                                    "poststart",       "poststop"};
        json out = json::object();
        for (auto it = object(v, "hooks").begin(); it != v.end(); ++it) {
            std::string p = "hooks." + it.key();
            if (!kinds.count(it.key())) {
                unapplied(p + " (unknown to this runtime)");
                continue;
            }
            json list = json::array();
            std::size_t i = 0;
            for (const auto &h : array(it.value(), p)) {
                std::string hp = index(p, i++);
                json hook = json::object();
                for (auto f = object(h, hp).begin(); f != h.end(); ++f) {
                    std::string fp = child(hp, f.key());
                    if (f.key() == "path") {
                        std::string path = string(f.value(), fp);
                        if (path.empty() || path[0] != '/')
                            fail(fp, show(path) + " is not an absolute path");
                        hook["path"] = path;
                    } else if (f.key() == "args" || f.key() == "env") {
                        hook[f.key()] = strings(f.value(), fp);
                    } else if (f.key() == "timeout") {
                        hook["timeout"] = integer(f.value(), fp, 1, 86400);
                    } else {
                        fail(fp, "unknown field");
                    }
                }
                if (!hook.contains("path")) fail(child(hp, "path"), "required field is missing");
                list.push_back(hook);
            }
            out[it.key()] = list;
        }
        _out["hooks"] = out;
    }

    // --- process --------------------------------------------------------------------------

    void process(const json &v) {
        object(v, "process");
        json out = json::object();
        bool sawArgs = false, sawCwd = false;
        for (auto it = v.begin(); it != v.end(); ++it) {
            const std::string &k = it.key();
            const json &f = it.value();
            std::string p = "process." + k;
            if (k == "args") {
                auto args = strings(f, p);
                if (args.empty() || args[0].empty()) fail(p, "no command given");
                out["args"] = args;
                sawArgs = true;
            } else if (k == "env") {
                auto env = strings(f, p);
                for (std::size_t i = 0; i < env.size(); ++i)
                    if (env[i].find('=') == std::string::npos || env[i][0] == '=')
                        fail(index(p, i), show(env[i]) + " is not NAME=VALUE");
                out["env"] = env;
            } else if (k == "cwd") {
                out["cwd"] = containerPath(f, p);
                sawCwd = true;
            } else if (k == "terminal") {
                out["terminal"] = boolean(f, p);
            } else if (k == "consoleSize") {
                // a console is sized by whoever holds its master
            } else if (k == "user") {
                user(f, out);
            } else if (k == "rlimits") {
                out["rlimits"] = rlimits(f, p);
            } else if (k == "noNewPrivileges") {
                _security["noNewPrivileges"] = boolean(f, p);
            } else if (k == "capabilities") {
                _caps = f;
            } else if (k == "oomScoreAdj") {
                out["oomScoreAdj"] = integer(f, p, -1000, 1000);
            } else if (k == "apparmorProfile" || k == "selinuxLabel") {
                if (!string(f, p).empty()) unapplied(p);
            } else if (k == "commandLine") {
                fail(p, "is for Windows containers");
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (!sawArgs) fail("process.args", "required field is missing");
        if (!sawCwd) fail("process.cwd", "required field is missing");
        if (!out.contains("user")) out["user"] = {{"uid", 0}, {"gid", 0}};
        // OCI: no_new_privs only when asked (the runtime's own default is on)
        if (!_security.contains("noNewPrivileges")) _security["noNewPrivileges"] = false;
        capabilities();
        _out["process"] = out;
    }

    void user(const json &v, json &process) {
        json out = {{"uid", 0}, {"gid", 0}};
        for (auto it = object(v, "process.user").begin(); it != v.end(); ++it) {
            std::string p = "process.user." + it.key();
            if (it.key() == "uid" || it.key() == "gid") {
                out[it.key()] = integer(it.value(), p, 0, kMaxId);
            } else if (it.key() == "additionalGids") {
                json gids = json::array();
                std::size_t i = 0;
                for (const auto &g : array(it.value(), p))
                    gids.push_back(integer(g, index(p, i++), 0, kMaxId));
                if (gids.size() > 65536) fail(p, "more than 65536 groups");
                out["additionalGids"] = gids;
            } else if (it.key() == "umask") {
                process["umask"] = integer(it.value(), p, 0, 0777);
            } else if (it.key() == "username") {
                // Windows only
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        process["user"] = out;
    }

    json rlimits(const json &v, const std::string &path) {
        json out = json::array();
        std::set<std::string> seen;
        std::size_t i = 0;
        for (const auto &r : array(v, path)) {
            std::string p = index(path, i++);
            object(r, p);
            std::string type;
            std::int64_t soft = 0, hard = 0;
            bool haveSoft = false, haveHard = false;
            for (auto it = r.begin(); it != r.end(); ++it) {
                std::string fp = child(p, it.key());
                if (it.key() == "type") {
                    try {
                        type = rlimitType(string(it.value(), fp));
                    } catch (const InvalidValue &e) {
                        fail(fp, e.what());
                    }
                    if (!seen.insert(type).second) fail(fp, quote(type) + " is given twice");
                } else if (it.key() == "soft" || it.key() == "hard") {
                    if (!it.value().is_number_integer() && !it.value().is_number_unsigned())
                        fail(fp, "expected an integer, not " + kindOf(it.value()));
                    // RLIM_INFINITY is 2^64-1; anything past 2^63 can only mean it
                    std::int64_t n = -1;
                    if (it.value().is_number_unsigned()) {
                        std::uint64_t u = it.value().get<std::uint64_t>();
                        if (u <=
                            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                            n = static_cast<std::int64_t>(u);
                    } else {
                        n = it.value().get<std::int64_t>();
                        if (n < 0) fail(fp, show(it.value()) + " is negative");
                    }
                    (it.key() == "soft" ? soft : hard) = n;
                    (it.key() == "soft" ? haveSoft : haveHard) = true;
                } else {
                    fail(fp, "unknown field");
                }
            }
            if (type.empty()) fail(child(p, "type"), "required field is missing");
            if (!haveSoft) fail(child(p, "soft"), "required field is missing");
            if (!haveHard) fail(child(p, "hard"), "required field is missing");
            if (hard != -1 && (soft == -1 || soft > hard))
                fail(p, "the soft limit is above the hard limit");
            out.push_back({{"type", type}, {"soft", soft}, {"hard", hard}});
        }
        return out;
    }

    // OCI's five sets go to the runtime as they are (security.capabilities with explicit
    // sets); it checks the subset rules and that it holds each one.
    void capabilities() {
        if (_caps.is_null()) return;
        json sets = json::object();
        for (auto it = object(_caps, "process.capabilities").begin(); it != _caps.end(); ++it) {
            std::string p = "process.capabilities." + it.key();
            static const std::set<std::string> known = {"bounding", "effective", "inheritable",
                                                        "permitted", "ambient"};
            if (!known.count(it.key())) fail(p, "unknown capability set");
            auto names = strings(it.value(), p);
            for (std::size_t i = 0; i < names.size(); ++i)
                if (!kCapabilities.count(names[i]))
                    fail(index(p, i), show(names[i]) + " is not a capability");
            sets[it.key()] = names;
        }
        // an ambient capability outside permitted and inheritable cannot be raised (the
        // kernel refuses it): runc's default spec has such entries, and runc skips them
        if (sets.contains("ambient")) {
            auto in = [&](const char *set, const json &name) {
                if (!sets.contains(set)) return false;
                for (const auto &n : sets[set])
                    if (n == name) return true;
                return false;
            };
            json kept = json::array();
            for (const auto &n : sets["ambient"]) {
                if (in("permitted", n) && in("inheritable", n))
                    kept.push_back(n);
                else
                    unapplied("process.capabilities.ambient " + n.get<std::string>() +
                              " (not in permitted and inheritable)");
            }
            sets["ambient"] = kept;
        }
        _security["capabilities"] = sets;
    }

    // --- linux --------------------------------------------------------------------------

    void linux(const json &v) {
        object(v, "linux");
        // namespaces first: mounts, sysctls and mappings depend on them
        if (v.contains("namespaces")) namespaces(v["namespaces"]);
        for (auto it = v.begin(); it != v.end(); ++it) {
            const std::string &k = it.key();
            const json &f = it.value();
            std::string p = "linux." + k;
            if (k == "namespaces") {
            } else if (k == "uidMappings" || k == "gidMappings") {
                if (!_userns) fail(p, "id mappings need a `user` namespace in linux.namespaces");
                _out["userns"][k] = mappings(f, p);
            } else if (k == "cgroupsPath") {
                std::string c = string(f, p);
                if (hasDotDot(c)) fail(p, show(c) + " contains `..`");
                if (c.size() > kMaxPath) fail(p, "is longer than 4096 bytes");
                if (!c.empty()) _out["cgroupsPath"] = c;
            } else if (k == "resources") {
                resources(f);
            } else if (k == "seccomp") {
                seccomp(f);
            } else if (k == "maskedPaths" || k == "readonlyPaths") {
                json paths = json::array();
                std::size_t i = 0;
                for (const auto &e : array(f, p)) paths.push_back(containerPath(e, index(p, i++)));
                _out[k] = paths;
            } else if (k == "sysctl") {
                sysctl(f);
            } else if (k == "devices") {
                devices(f);
            } else if (k == "rootfsPropagation") {
                std::string prop = string(f, p);
                static const std::set<std::string> ok = {"private",    "rprivate",   "slave",
                                                         "rslave",     "shared",     "rshared",
                                                         "unbindable", "runbindable"};
                if (!ok.count(prop)) fail(p, show(prop) + " is not a mount propagation");
                if (prop != "private" && prop != "rprivate") unapplied(p);
            } else if (k == "mountLabel" || k == "intelRdt" || k == "personality" ||
                       k == "timeOffsets") {
                if (!(f.is_string() && f.get<std::string>().empty())) unapplied(p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (_userns && !_out["userns"].contains("uidMappings"))
            fail("linux.uidMappings", "a new `user` namespace needs uid mappings");
    }

    void namespaces(const json &v) {
        static const std::set<std::string> types = {"pid", "network", "mount", "ipc",
                                                    "uts", "user",    "cgroup"};
        std::set<std::string> seen;
        json paths = json::object();
        std::size_t i = 0;
        for (const auto &ns : array(v, "linux.namespaces")) {
            std::string p = index("linux.namespaces", i++);
            std::string type, path;
            for (auto it = object(ns, p).begin(); it != ns.end(); ++it) {
                std::string fp = child(p, it.key());
                if (it.key() == "type") {
                    type = string(it.value(), fp);
                    if (type == "time") fail(fp, "a time namespace is not supported");
                    if (!types.count(type)) fail(fp, show(type) + " is not a namespace type");
                    if (!seen.insert(type).second) fail(fp, show(type) + " is given twice");
                } else if (it.key() == "path") {
                    path = string(it.value(), fp);
                    if (!path.empty())
                        path = containerPath(it.value(), fp); // host path, same rules
                } else {
                    fail(fp, "unknown field");
                }
            }
            if (type.empty()) fail(child(p, "type"), "required field is missing");
            if (!path.empty()) paths[type] = path;
            if (type == "user" && path.empty()) _userns = true;
        }
        _sawMountNs = seen.count("mount") > 0;
        _ownNetwork = seen.count("network") && !paths.contains("network");
        _ownIpc = seen.count("ipc") && !paths.contains("ipc");
        _sawUts = seen.count("uts") > 0;
        _ownUts = _sawUts && !paths.contains("uts");
        if (paths.contains("mount"))
            fail("linux.namespaces", "joining a `mount` namespace by path is not supported");
        if (!seen.count("network")) _out["network"] = {{"mode", "host"}};
        // A namespace left out is the caller's (podman --pid/--ipc/--uts host). No cgroup
        // namespace (podman and containerd on cgroup v1 ask for none): the container gets
        // one anyway, so it sees its own cgroup as the root; not listed.
        json own = json::object();
        for (const char *t : {"pid", "ipc", "uts"})
            if (!seen.count(t)) own[t] = false;
        if (!own.empty()) _out["namespaces"] = own;
        if (!paths.empty()) _out["namespacePaths"] = paths;
        if (_userns) _out["userns"] = json::object();
    }

    json mappings(const json &v, const std::string &path) {
        json out = json::array();
        std::size_t i = 0;
        for (const auto &m : array(v, path)) {
            std::string p = index(path, i++);
            json e = json::object();
            for (auto it = object(m, p).begin(); it != m.end(); ++it) {
                std::string fp = child(p, it.key());
                if (it.key() == "containerID" || it.key() == "hostID")
                    e[it.key()] = integer(it.value(), fp, 0, kMaxId);
                else if (it.key() == "size")
                    e["size"] = integer(it.value(), fp, 1, std::int64_t(kMaxId) + 1);
                else
                    fail(fp, "unknown field");
            }
            for (const char *k : {"containerID", "hostID", "size"})
                if (!e.contains(k)) fail(child(p, k), "required field is missing");
            out.push_back(e);
        }
        if (out.empty()) fail(path, "is empty");
        return out;
    }

    void sysctl(const json &v) {
        json out = json::object();
        for (auto it = object(v, "linux.sysctl").begin(); it != v.end(); ++it) {
            std::string p = "linux.sysctl." + it.key();
            const std::string &key = it.key();
            bool ok = !key.empty() && key.size() < 256 && key.find("..") == std::string::npos &&
                      key[0] != '.' && key[0] != '/';
            for (char c : key)
                ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                            c == '-' || c == '/');
            if (!ok) fail(p, "is not a sysctl name");
            if (!namespacedSysctl(key, _ownNetwork, _ownIpc, _ownUts))
                fail(p, "not a sysctl of the container's own namespaces (it would change the "
                        "host)");
            out[key] = string(it.value(), p);
        }
        if (!out.empty()) _out["sysctl"] = out;
    }

    void devices(const json &v) {
        json out = json::array();
        std::size_t i = 0;
        for (const auto &d : array(v, "linux.devices")) {
            std::string p = index("linux.devices", i++);
            json e = json::object();
            for (auto it = object(d, p).begin(); it != d.end(); ++it) {
                std::string fp = child(p, it.key());
                const std::string &k = it.key();
                if (k == "path") {
                    std::string path = clean(containerPath(it.value(), fp));
                    if (!under(path, "/dev") || path == "/dev")
                        fail(fp, show(path) + " is not below /dev");
                    e["path"] = path;
                } else if (k == "type") {
                    std::string t = string(it.value(), fp);
                    if (t != "c" && t != "b" && t != "u" && t != "p")
                        fail(fp, show(t) + " is not a device type (c, b, u, p)");
                    e["type"] = t;
                } else if (k == "major" || k == "minor") {
                    e[k] = integer(it.value(), fp, 0, 0xfffff);
                } else if (k == "fileMode") {
                    e[k] = integer(it.value(), fp, 0, 07777);
                } else if (k == "uid" || k == "gid") {
                    e[k] = integer(it.value(), fp, 0, kMaxId);
                } else {
                    fail(fp, "unknown field");
                }
            }
            if (!e.contains("path")) fail(child(p, "path"), "required field is missing");
            if (!e.contains("type")) fail(child(p, "type"), "required field is missing");
            if (e["type"] != "p" && (!e.contains("major") || !e.contains("minor")))
                fail(p, "a device node needs `major` and `minor`");
            out.push_back(e);
        }
        _out["devices"] = out;
    }

    void seccomp(const json &v) {
        object(v, "linux.seccomp");
        if (v.contains("listenerPath") &&
            !(v["listenerPath"].is_string() && v["listenerPath"].get<std::string>().empty()))
            fail("linux.seccomp.listenerPath", "seccomp notification agents are not supported");
        if (!v.contains("defaultAction"))
            fail("linux.seccomp.defaultAction", "required field is missing");
        json profile = v;
        profile.erase("listenerPath");
        profile.erase("listenerMetadata");
        _security["seccomp"] = {
            {"mode", "profile"}, {"profile", profile}, {"source", "config.json linux.seccomp"}};
    }

    // --- resources ----------------------------------------------------------------------

    json &limits() { return _resources["limits"]; }
    json &requests() { return _resources["requests"]; }

public:
    json resourcesOnly(const json &v) {
        _out = json::object();
        // device rules are fixed at create (runc's update leaves them too)
        json copy = object(v, "resources");
        copy.erase("devices");
        resources(copy, "resources");
        for (const auto &u : _out.value("unapplied", json::array()))
            fail(u.get<std::string>(), "cannot be changed by this runtime");
        return _resources;
    }

private:
    void resources(const json &v, const std::string &base = "linux.resources") {
        _resources = json::object();
        for (auto it = object(v, base).begin(); it != v.end(); ++it) {
            const std::string &k = it.key();
            const json &f = it.value();
            std::string p = base + "." + k;
            if (f.is_null()) continue;
            if (k == "memory") {
                memory(f, p);
            } else if (k == "cpu") {
                cpu(f, p);
            } else if (k == "pids") {
                for (auto e = object(f, p).begin(); e != f.end(); ++e) {
                    if (e.key() != "limit") fail(child(p, e.key()), "unknown field");
                    std::int64_t n = integer(e.value(), child(p, "limit"), -1, kMaxPids);
                    if (n > 0) limits()["pids"] = n;
                }
            } else if (k == "blockIO") {
                blockIO(f, p);
            } else if (k == "devices") {
                deviceRules(f, p);
            } else if (k == "hugepageLimits" || k == "network" || k == "rdma" || k == "unified") {
                if (!(f.is_array() || f.is_object()) || !f.empty()) unapplied(p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
    }

    // OCI byte counts: -1 (and 0) mean no limit.
    std::optional<std::int64_t> bytes(const json &v, const std::string &p) {
        std::int64_t n = integer(v, p, -1, std::numeric_limits<std::int64_t>::max());
        if (n <= 0) return std::nullopt;
        if (n < static_cast<std::int64_t>(kMinMemory))
            fail(p, show(v) + " is below the minimum 4194304 (4Mi)");
        if (static_cast<std::uint64_t>(n) > kMaxMemory)
            fail(p, show(v) + " is above the maximum 1Pi");
        return n;
    }

    void memory(const json &v, const std::string &path) {
        for (auto it = object(v, path).begin(); it != v.end(); ++it) {
            std::string p = child(path, it.key());
            const std::string &k = it.key();
            if (it.value().is_null()) continue;
            if (k == "limit") {
                if (auto n = bytes(it.value(), p)) limits()["memory"] = *n;
            } else if (k == "reservation") {
                if (auto n = bytes(it.value(), p)) requests()["memory"] = *n;
            } else if (k == "swap") {
                std::int64_t n =
                    integer(it.value(), p, -1, std::numeric_limits<std::int64_t>::max());
                if (n == -1)
                    _resources["memorySwap"] = -1;
                else if (auto b = bytes(it.value(), p))
                    _resources["memorySwap"] = *b;
            } else if (k == "swappiness") {
                // podman and containerd send 2^64-1 (or nothing) for "not set"
                if (it.value().is_number_unsigned() &&
                    it.value().get<std::uint64_t>() >
                        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                    continue;
                _resources["memorySwappiness"] = integer(it.value(), p, 0, 100);
            } else if (k == "kernel" || k == "kernelTCP") {
                integer(it.value(), p, -1, std::numeric_limits<std::int64_t>::max());
                unapplied(p + " (deprecated by the kernel)");
            } else if (k == "disableOOMKiller") {
                if (boolean(it.value(), p)) unapplied(p);
            } else if (k == "useHierarchy" || k == "checkBeforeUpdate") {
                boolean(it.value(), p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (_resources.contains("memorySwap") && !limits().contains("memory"))
            fail(child(path, "swap"), "needs a memory limit");
        if (_resources.contains("memorySwap") && _resources["memorySwap"] != -1 &&
            _resources["memorySwap"].get<std::int64_t>() < limits()["memory"].get<std::int64_t>())
            fail(child(path, "swap"), "is below the memory limit (it counts memory plus swap)");
    }

    void cpu(const json &v, const std::string &path) {
        std::int64_t quota = 0, period = 100000;
        for (auto it = object(v, path).begin(); it != v.end(); ++it) {
            std::string p = child(path, it.key());
            const std::string &k = it.key();
            const json &f = it.value();
            if (f.is_null()) continue;
            if (k == "quota") {
                quota = integer(f, p, -1, std::numeric_limits<std::int64_t>::max());
            } else if (k == "period") {
                period = integer(f, p, 0, 1000000);
                if (period == 0) period = 100000;
                if (period < 1000) fail(p, show(f) + " is below the minimum 1000 (1ms)");
            } else if (k == "shares") {
                std::int64_t s = integer(f, p, 0, 262144);
                if (s > 0) {
                    if (s < 2) fail(p, show(f) + " is below the minimum 2");
                    requests()["cpu"] = std::max<std::int64_t>(1, s * 1000 / 1024);
                }
            } else if (k == "cpus") {
                std::string set = string(f, p);
                if (!set.empty()) {
                    if (!isValidCpuList(set))
                        fail(p, show(set) + " is not a CPU list such as `0-3,6`");
                    _resources["cpuset"] = set;
                }
            } else if (k == "mems") {
                if (!string(f, p).empty()) unapplied(p);
            } else if (k == "realtimeRuntime" || k == "realtimePeriod" || k == "idle" ||
                       k == "burst") {
                integer(f, p, -1, std::numeric_limits<std::int64_t>::max());
                unapplied(p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (quota > 0) {
            std::int64_t millis = (quota * 1000 + period - 1) / period;
            if (millis > kMaxMillicores)
                fail(child(path, "quota"),
                     "above " + std::to_string(kMaxMillicores / 1000) + " CPUs");
            limits()["cpu"] = millis;
        }
        if (requests().contains("cpu") && limits().contains("cpu") &&
            requests()["cpu"].get<std::int64_t>() > limits()["cpu"].get<std::int64_t>())
            requests()["cpu"] = limits()["cpu"]; // shares are a weight, not a floor
    }

    void blockIO(const json &v, const std::string &path) {
        json throttle = json::object(); // "major:minor" -> entry
        for (auto it = object(v, path).begin(); it != v.end(); ++it) {
            std::string p = child(path, it.key());
            const std::string &k = it.key();
            const json &f = it.value();
            if (f.is_null()) continue;
            static const std::map<std::string, std::pair<const char *, bool>> rates = {
                {"throttleReadBpsDevice", {"readBps", true}},
                {"throttleWriteBpsDevice", {"writeBps", true}},
                {"throttleReadIOPSDevice", {"readIops", false}},
                {"throttleWriteIOPSDevice", {"writeIops", false}}};
            if (k == "weight") {
                std::int64_t w = integer(f, p, 0, 1000);
                if (w > 0) {
                    if (w < 10) fail(p, show(f) + " is below the minimum 10");
                    _resources["blkioWeight"] = w;
                }
            } else if (auto r = rates.find(k); r != rates.end()) {
                std::size_t i = 0;
                for (const auto &d : array(f, p)) {
                    std::string dp = index(p, i++);
                    std::int64_t major = -1, minor = -1, rate = -1;
                    for (auto e = object(d, dp).begin(); e != d.end(); ++e) {
                        std::string ep = child(dp, e.key());
                        if (e.key() == "major")
                            major = integer(e.value(), ep, 0, 0xfffff);
                        else if (e.key() == "minor")
                            minor = integer(e.value(), ep, 0, 0xfffff);
                        else if (e.key() == "rate")
                            rate = integer(e.value(), ep, 1, 1000000000000);
                        else
                            fail(ep, "unknown field");
                    }
                    if (major < 0 || minor < 0 || rate < 0)
                        fail(dp, "needs `major`, `minor` and `rate`");
                    std::string key = std::to_string(major) + ":" + std::to_string(minor);
                    json &e = throttle[key];
                    e["device"] = key;
                    e["major"] = major;
                    e["minor"] = minor;
                    e[r->second.first] = rate;
                }
            } else if (k == "leafWeight" || k == "weightDevice") {
                unapplied(p);
            } else {
                unapplied(p + " (unknown to this runtime)");
            }
        }
        if (!throttle.empty()) {
            json list = json::array();
            for (auto &[_, e] : throttle.items()) list.push_back(e);
            _resources["deviceThrottle"] = list;
        }
    }

    // linux.resources.devices: the device cgroup rules, checked and handed to the cgroup
    // service as resources.devices [{allow, type, major, minor, access}] (null numbers and
    // -1 are "any", as is an absent type `a`; an absent access is `rwm`). The runtime puts
    // them after its "deny all" and before the standard nodes and linux.devices, as runc.
    void deviceRules(const json &v, const std::string &path) {
        std::size_t i = 0;
        json out = json::array();
        for (const auto &r : array(v, path)) {
            std::string p = index(path, i++);
            json rule = {{"allow", false}, {"type", "a"}, {"access", "rwm"}};
            bool allowGiven = false;
            for (auto it = object(r, p).begin(); it != r.end(); ++it) {
                std::string fp = child(p, it.key());
                const std::string &k = it.key();
                if (k == "allow") {
                    rule["allow"] = boolean(it.value(), fp);
                    allowGiven = true;
                } else if (k == "type") {
                    std::string type = string(it.value(), fp);
                    if (type != "a" && type != "c" && type != "b")
                        fail(fp, show(type) + " is not a device type (a, c, b)");
                    rule["type"] = type;
                } else if (k == "major" || k == "minor") {
                    if (!it.value().is_null()) {
                        std::int64_t n = integer(it.value(), fp, -1, 0xfffff);
                        if (n >= 0) rule[k] = n;
                    }
                } else if (k == "access") {
                    std::string access = string(it.value(), fp);
                    if (access.empty() || access.find_first_not_of("rwm") != std::string::npos)
                        fail(fp, show(access) + " is not an access such as `rwm`");
                    rule["access"] = access;
                } else {
                    fail(fp, "unknown field");
                }
            }
            if (!allowGiven) fail(child(p, "allow"), "required field is missing");
            out.push_back(rule);
        }
        if (!out.empty()) _resources["devices"] = out;
    }

    // --- mounts -------------------------------------------------------------------------

    void mounts(const json &v) {
        json out = json::array();
        std::size_t i = 0;
        for (const auto &m : array(v, "mounts")) {
            std::string p = index("mounts", i++);
            std::string destination, source, type;
            std::vector<std::string> options;
            for (auto it = object(m, p).begin(); it != m.end(); ++it) {
                std::string fp = child(p, it.key());
                const std::string &k = it.key();
                if (k == "destination")
                    destination = clean(containerPath(it.value(), fp));
                else if (k == "source")
                    source = string(it.value(), fp);
                else if (k == "type")
                    type = string(it.value(), fp);
                else if (k == "options")
                    options = strings(it.value(), fp);
                else if (k == "uidMappings" || k == "gidMappings")
                    fail(fp, "id-mapped mounts are not supported");
                else
                    unapplied(fp + " (unknown to this runtime)");
            }
            if (destination.empty()) fail(child(p, "destination"), "required field is missing");
            bool bind = type == "bind";
            for (const auto &o : options) bind = bind || o == "bind" || o == "rbind";
            if (bind && type != "bind" && type != "none" && !type.empty())
                fail(child(p, "type"), show(type) + " with a `bind` option");
            if (standard(destination, type, bind, options, p)) continue;
            if (destination == "/") fail(child(p, "destination"), "`/` is the root itself");
            for (const char *dir : {"/proc", "/sys", "/dev/pts"})
                if (under(destination, dir))
                    fail(child(p, "destination"),
                         show(destination) + " is below " + dir + ", which the runtime owns");
            json e = {{"destination", destination}};
            if (bind) {
                e["type"] = "bind";
                e["source"] = bindSource(source, child(p, "source"));
            } else if (type == "tmpfs") {
                e["type"] = "tmpfs";
                e["source"] = "tmpfs";
            } else if (type.empty()) {
                fail(child(p, "type"), "required field is missing (or a `bind` option)");
            } else {
                fail(child(p, "type"),
                     show(type) + " is not supported here (bind and tmpfs "
                                  "mounts; /proc, /sys, /dev and their standard mounts are "
                                  "the runtime's)");
            }
            e["options"] = mountOptions(options, bind, child(p, "options"));
            out.push_back(e);
        }
        if (!out.empty()) _out["mounts"] = out;
    }

    // A standard mount the runtime makes itself: skipped. A mount on a standard path of
    // another kind is refused unless it is /dev/shm (podman binds its own).
    bool standard(const std::string &destination, const std::string &type, bool bind,
                  const std::vector<std::string> &options, const std::string &p) {
        static const std::map<std::string, std::set<std::string>> kinds = {
            {"/proc", {"proc"}},
            {"/dev", {"tmpfs", "devtmpfs"}},
            {"/dev/pts", {"devpts"}},
            {"/dev/shm", {"tmpfs", "shm"}},
            {"/dev/mqueue", {"mqueue"}},
            {"/sys", {"sysfs"}},
            {"/sys/fs/cgroup", {"cgroup", "cgroup2"}}};
        auto it = kinds.find(destination);
        if (it == kinds.end()) return false;
        if (!bind && it->second.count(type)) {
            // the container's own cgroups (runtime spec `cgroupMount`): read-only unless
            // the mount asks `rw`, the last of `ro` and `rw` winning
            if (destination == "/sys/fs/cgroup") {
                std::string mode = "ro";
                for (const auto &o : options)
                    if (o == "ro" || o == "rw") mode = o;
                _out["cgroupMount"] = mode;
            }
            return true;
        }
        if (destination == "/dev/shm" || destination == "/dev/mqueue") return false;
        // rootless engines bind the host's /sys when they cannot mount sysfs
        if (bind && destination == "/sys") return true;
        fail(child(p, "type"), "a " + show(bind ? std::string("bind") : type) + " mount on " +
                                   quote(destination) + " (the runtime mounts " +
                                   *it->second.begin() + " there)");
    }

    std::string bindSource(const std::string &source, const std::string &p) {
        if (source.empty()) fail(p, "a bind mount needs a source");
        if (hasDotDot(source)) fail(p, show(source) + " contains `..`");
        std::string s = clean(source[0] == '/' ? source : _bundle + "/" + source);
        if (under(s, "/proc"))
            fail(p, show(source) + " is below /proc (a process's files are not a mount source)");
        return s;
    }

    json mountOptions(const std::vector<std::string> &options, bool bind, const std::string &p) {
        static const std::set<std::string> flags = {
            "ro",         "rw",          "nosuid",   "suid",     "nodev",      "dev",
            "noexec",     "exec",        "sync",     "async",    "dirsync",    "noatime",
            "atime",      "nodiratime",  "diratime", "relatime", "norelatime", "strictatime",
            "private",    "rprivate",    "shared",   "rshared",  "slave",      "rslave",
            "unbindable", "runbindable", "defaults"};
        // podman's own options, applied before the bundle exists (copy-up, relabel, chown)
        static const std::set<std::string> engine = {
            "tmpcopyup", "notmpcopyup", "copy", "nocopy", "z", "Z", "U", "rro", "rrw"};
        static const std::set<std::string> tmpfsData = {"size",      "mode", "nr_inodes",
                                                        "nr_blocks", "uid",  "gid"};
        json out = json::array();
        for (std::size_t i = 0; i < options.size(); ++i) {
            const std::string &o = options[i];
            std::string op = index(p, i);
            if (o == "bind" || o == "rbind") {
                out.push_back(o);
            } else if (flags.count(o)) {
                out.push_back(o);
            } else if (engine.count(o)) {
                if (o == "rro") out.push_back("ro");
            } else if (!bind && o.find('=') != std::string::npos &&
                       tmpfsData.count(o.substr(0, o.find('=')))) {
                std::string value = o.substr(o.find('=') + 1);
                bool ok = !value.empty() && value.size() < 32;
                for (char c : value)
                    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '%');
                if (!ok) fail(op, show(o) + " has a bad value");
                out.push_back(o);
            } else {
                fail(op, show(o) + " is not a mount option this runtime accepts");
            }
        }
        return out;
    }

    const json &_in;
    std::string _bundle;
    json _out;
    json _security = json::object();
    json _resources = json::object();
    json _caps;
    bool _userns = false, _sawMountNs = false, _ownNetwork = false, _ownIpc = false,
         _ownUts = false, _sawUts = false;
};

} // namespace

json fromOci(const json &config, const std::string &bundle) {
    if (bundle.empty() || bundle[0] != '/')
        throw Error(MO_E_INVALID, "bundle " + quote(bundle) + " is not an absolute path");
    try {
        return Converter(config, clean(bundle)).convert();
    } catch (const json::exception &e) {
        throw Error(MO_E_INVALID, std::string("config.json: ") + e.what());
    }
}

json fromOciResources(const json &resources) {
    static const json none = json::object();
    try {
        return Converter(none, "/").resourcesOnly(resources);
    } catch (const json::exception &e) {
        throw Error(MO_E_INVALID, std::string("resources: ") + e.what());
    }
}

json defaultOciConfig(bool rootless) {
    json caps = json::array({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"});
    json config = {
        {"ociVersion", "1.0.2"},
        {"process",
         {{"terminal", true},
          {"user", {{"uid", 0}, {"gid", 0}}},
          {"args", json::array({"sh"})},
          {"env", json::array({std::string("PATH=") + kDefaultPath, "TERM=xterm"})},
          {"cwd", "/"},
          {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
          {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
          {"noNewPrivileges", true}}},
        {"root", {{"path", "rootfs"}, {"readonly", true}}},
        {"hostname", "mobileops"},
        {"mounts",
         json::array(
             {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
              {{"destination", "/dev"},
               {"type", "tmpfs"},
               {"source", "tmpfs"},
               {"options", json::array({"nosuid", "strictatime", "mode=755", "size=65536k"})}},
              {{"destination", "/dev/pts"},
               {"type", "devpts"},
               {"source", "devpts"},
               {"options", json::array({"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                        "mode=0620", "gid=5"})}},
              {{"destination", "/dev/shm"},
               {"type", "tmpfs"},
               {"source", "shm"},
               {"options", json::array({"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"})}},
              {{"destination", "/dev/mqueue"},
               {"type", "mqueue"},
               {"source", "mqueue"},
               {"options", json::array({"nosuid", "noexec", "nodev"})}},
              {{"destination", "/sys"},
               {"type", "sysfs"},
               {"source", "sysfs"},
               {"options", json::array({"nosuid", "noexec", "nodev", "ro"})}}})},
        {"linux",
         {{"resources", {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}}},
          {"namespaces", json::array({{{"type", "pid"}},
                                      {{"type", "network"}},
                                      {{"type", "ipc"}},
                                      {{"type", "uts"}},
                                      {{"type", "mount"}},
                                      {{"type", "cgroup"}}})},
          {"maskedPaths",
           json::array({"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"})},
          {"readonlyPaths", json::array({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                         "/proc/sysrq-trigger"})}}}};
    if (rootless) {
        config["linux"]["namespaces"].push_back({{"type", "user"}});
        config["linux"]["uidMappings"] =
            json::array({{{"containerID", 0}, {"hostID", ::getuid()}, {"size", 1}}});
        config["linux"]["gidMappings"] =
            json::array({{{"containerID", 0}, {"hostID", ::getgid()}, {"size", 1}}});
    }
    return config;
}

} // namespace mobileops::core::spec
