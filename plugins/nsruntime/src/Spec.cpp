#include "Spec.h"

#include "Errors.h"
#include "Mounts.h"
#include "SystemMode.h"

#include <mobileops/common/rlimits.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

Error invalid(const std::string &message) { return Error(MO_E_INVALID, message); }

bool parseNumber(std::string_view s, uint64_t &out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    if (!s.empty() && s.back() == sep) out.emplace_back();
    return out;
}

std::string limitText(uint64_t v) {
    return v == RLIM_INFINITY ? std::string("unlimited") : std::to_string(v);
}

std::string ulimitText(const Rlimit &l) {
    std::string s = l.name + "=" + limitText(l.soft);
    if (l.soft != l.hard) s += ":" + limitText(l.hard);
    return s;
}

bool hasDotDot(const std::string &path) {
    for (const auto &c : split(path, '/'))
        if (c == "..") return true;
    return false;
}

bool hasCapability(int cap) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) < 0) return false;
    return data[cap / 32].effective & (1u << (cap % 32));
}

// Typed field readers: the message names the field's path.
const json *field(const json &obj, const char *key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}
bool getBool(const json &obj, const char *key, const std::string &path, bool fallback) {
    const json *v = field(obj, key);
    if (!v) return fallback;
    if (!v->is_boolean()) throw invalid(path + key + ": expected true or false");
    return v->get<bool>();
}
std::string getString(const json &obj, const char *key, const std::string &path,
                      const std::string &fallback = {}) {
    const json *v = field(obj, key);
    if (!v) return fallback;
    if (!v->is_string()) throw invalid(path + key + ": expected a string");
    return v->get<std::string>();
}
uint64_t getUnsigned(const json &obj, const char *key, const std::string &path, uint64_t fallback,
                     uint64_t max = UINT32_MAX) {
    const json *v = field(obj, key);
    if (!v) return fallback;
    if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<uint64_t>() > max)
        throw invalid(path + key + ": expected an integer from 0 to " + std::to_string(max));
    return v->get<uint64_t>();
}
// A resource limit: the core writes "unlimited" as -1 (Lua numbers cannot hold 2^64-1);
// both -1 and 2^64-1 read as RLIM_INFINITY.
uint64_t getLimit(const json &obj, const char *key, const std::string &path, uint64_t fallback) {
    const json *v = field(obj, key);
    if (!v) return fallback;
    if (v->is_number_unsigned()) {
        uint64_t n = v->get<uint64_t>();
        return n == UINT64_MAX ? RLIM_INFINITY : n;
    }
    if (v->is_number_integer() && v->get<int64_t>() >= -1) {
        int64_t n = v->get<int64_t>();
        return n == -1 ? RLIM_INFINITY : static_cast<uint64_t>(n);
    }
    throw invalid(path + key + ": expected a non-negative integer, or -1 for unlimited");
}
std::vector<std::string> getStrings(const json &obj, const char *key, const std::string &path) {
    std::vector<std::string> out;
    const json *v = field(obj, key);
    if (!v) return out;
    if (!v->is_array()) throw invalid(path + key + ": expected an array of strings");
    for (const auto &e : *v) {
        if (!e.is_string()) throw invalid(path + key + ": expected an array of strings");
        out.push_back(e.get<std::string>());
    }
    return out;
}

std::vector<IdMapping> parseMappings(const json &obj, const char *key) {
    std::vector<IdMapping> out;
    const json *v = field(obj, key);
    if (!v) return out;
    std::string path = std::string("userns.") + key;
    if (!v->is_array()) throw invalid(path + ": expected an array");
    for (size_t i = 0; i < v->size(); ++i) {
        const json &m = (*v)[i];
        std::string p = path + "[" + std::to_string(i) + "].";
        if (!m.is_object()) throw invalid(path + ": expected objects");
        IdMapping map;
        map.containerId = getUnsigned(m, "containerID", p, 0);
        map.hostId = getUnsigned(m, "hostID", p, 0);
        map.size = getUnsigned(m, "size", p, 0);
        if (map.size == 0) throw invalid(p + "size: must be at least 1");
        out.push_back(map);
    }
    return out;
}

void addGid(std::vector<gid_t> &gids, gid_t gid) {
    if (std::find(gids.begin(), gids.end(), gid) == gids.end()) gids.push_back(gid);
}

// A group name looked up in the contents of the container's /etc/group.
gid_t groupId(const std::string &name, const std::string &group) {
    std::istringstream in(group);
    for (std::string line; std::getline(in, line);) {
        auto f = split(line, ':');
        uint64_t gid;
        if (f.size() >= 3 && f[0] == name && parseNumber(f[2], gid) && gid < UINT32_MAX)
            return static_cast<gid_t>(gid);
    }
    throw invalid("group " + quote(name) + " not found in the container's /etc/group");
}

} // namespace

int rlimitResource(const std::string &name) {
    std::string n = name;
    if (n.rfind("RLIMIT_", 0) == 0) {
        n = n.substr(7);
        for (auto &c : n) c = static_cast<char>(std::tolower(c));
    }
    return mo_rlimit_resource(n.c_str());
}

Rlimit parseUlimit(const std::string &text) {
    auto eq = text.find('=');
    if (eq == std::string::npos)
        throw invalid("ulimit " + quote(text) + ": expected NAME=SOFT[:HARD]");
    Rlimit l;
    l.name = text.substr(0, eq);
    l.resource = rlimitResource(l.name);
    if (l.resource < 0) throw invalid("ulimit " + quote(text) + ": unknown limit " + quote(l.name));
    auto parts = split(text.substr(eq + 1), ':');
    if (parts.empty() || parts.size() > 2)
        throw invalid("ulimit " + quote(text) + ": expected NAME=SOFT[:HARD]");
    uint64_t v[2];
    for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i] == "unlimited" || parts[i] == "-1")
            v[i] = RLIM_INFINITY;
        else if (!parseNumber(parts[i], v[i]))
            throw invalid("ulimit " + quote(text) + ": " + quote(parts[i]) + " is not a number");
    }
    l.soft = v[0];
    l.hard = parts.size() == 2 ? v[1] : v[0];
    if (l.soft > l.hard)
        throw invalid("ulimit " + quote(text) + ": the soft limit exceeds the hard limit");
    return l;
}

void checkRlimit(const Rlimit &l) {
    if (l.soft > l.hard)
        throw invalid("ulimit " + quote(ulimitText(l)) + ": the soft limit exceeds the hard limit");
    struct rlimit cur;
    if (::getrlimit(static_cast<__rlimit_resource>(l.resource), &cur) < 0)
        throw sysError("ulimit " + quote(ulimitText(l)), errno);
    if (l.hard > cur.rlim_max && !hasCapability(CAP_SYS_RESOURCE))
        throw invalid("ulimit " + quote(ulimitText(l)) + ": exceeds the hard limit " +
                      limitText(cur.rlim_max) + " of this host");
    if (l.resource == RLIMIT_NOFILE && l.hard != RLIM_INFINITY) {
        // The kernel refuses nofile above fs.nr_open even with CAP_SYS_RESOURCE.
        uint64_t nrOpen = 1048576;
        if (int fd = ::open("/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC); fd >= 0) {
            char buf[32] = {};
            ssize_t n = ::read(fd, buf, sizeof buf - 1);
            ::close(fd);
            if (n > 0)
                parseNumber(std::string_view(buf, n).substr(0, n - (buf[n - 1] == '\n')), nrOpen);
        }
        if (l.hard > nrOpen)
            throw invalid("ulimit " + quote(ulimitText(l)) + ": exceeds fs.nr_open " +
                          std::to_string(nrOpen) + " of this host");
    }
}

User parseUser(const std::string &text, const std::string &passwd, const std::string &group) {
    if (text.empty()) throw invalid("user: must not be empty");
    auto colon = text.find(':');
    std::string u = text.substr(0, colon);
    std::optional<std::string> g;
    if (colon != std::string::npos) g = text.substr(colon + 1);
    if (u.empty() || (g && g->empty()))
        throw invalid("user " + quote(text) + ": expected UID[:GID] or NAME[:GROUP]");

    User user;
    std::string userName;
    uint64_t n;
    bool numeric = parseNumber(u, n);
    if (numeric && n >= UINT32_MAX) throw invalid("user " + quote(text) + ": uid out of range");
    bool found = false;
    std::istringstream pw(passwd);
    for (std::string line; std::getline(pw, line);) {
        auto f = split(line, ':');
        if (f.size() < 7) continue;
        uint64_t uid, gid;
        if (!parseNumber(f[2], uid) || !parseNumber(f[3], gid)) continue;
        if (numeric ? uid == n : f[0] == u) {
            user.uid = static_cast<uid_t>(uid);
            user.gid = static_cast<gid_t>(gid);
            user.home = f[5];
            userName = f[0];
            found = true;
            break;
        }
    }
    if (!found) {
        if (!numeric)
            throw invalid("user " + quote(u) + ": no such user in the container's /etc/passwd");
        user.uid = static_cast<uid_t>(n);
        user.gid = 0;
    }

    std::istringstream gr(group);
    bool groupFound = false;
    bool gNumeric = g && parseNumber(*g, n);
    if (gNumeric) {
        if (n >= UINT32_MAX) throw invalid("user " + quote(text) + ": gid out of range");
        user.gid = static_cast<gid_t>(n);
        groupFound = true;
    }
    for (std::string line; std::getline(gr, line);) {
        auto f = split(line, ':');
        if (f.size() < 3) continue;
        uint64_t gid;
        if (!parseNumber(f[2], gid)) continue;
        if (g && !gNumeric && f[0] == *g) {
            user.gid = static_cast<gid_t>(gid);
            groupFound = true;
        }
        if (!userName.empty() && f.size() >= 4) {
            for (const auto &member : split(f[3], ','))
                if (member == userName) user.additionalGids.push_back(static_cast<gid_t>(gid));
        }
    }
    if (g && !groupFound)
        throw invalid("group " + quote(*g) + ": no such group in the container's /etc/group");
    return user;
}

std::string readInRoot(const std::string &rootfs, const std::string &path) {
    int root = ::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return {};
    struct open_how how = {};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(::syscall(SYS_openat2, root, path.c_str(), &how, sizeof how));
    ::close(root);
    if (fd < 0) return {};
    std::string out;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && out.size() < (1u << 20)) out.append(buf, n);
    ::close(fd);
    return out;
}

void makeDirInRoot(const std::string &rootfs, const std::string &path) {
    int root = ::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) throw sysError("rootfs " + quote(rootfs), errno);
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closeRoot{root};
    auto open = [&](const std::string &dir) {
        struct open_how how = {};
        how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        return static_cast<int>(
            ::syscall(SYS_openat2, root, dir.empty() ? "." : dir.c_str(), &how, sizeof how));
    };
    std::string parent;
    for (const auto &comp : split(path, '/')) {
        if (comp.empty() || comp == ".") continue;
        std::string next = parent + "/" + comp;
        int fd = open(next);
        if (fd < 0 && errno == ENOENT) {
            int dir = open(parent);
            if (dir < 0) throw sysError("create " + quote(path) + " in the root", errno);
            int r = ::mkdirat(dir, comp.c_str(), 0755);
            int err = errno;
            ::close(dir);
            if (r < 0 && err != EEXIST)
                throw sysError("create " + quote(next) + " in the root", err);
            fd = open(next);
        }
        if (fd < 0) throw sysError("cwd " + quote(path) + ": " + quote(next), errno);
        ::close(fd);
        parent = next;
    }
}

ProcessSpec parseProcess(const json &p, const ProcessSpec &defaults) {
    const std::string path = "process.";
    if (!p.is_object()) throw invalid("process: expected an object");
    ProcessSpec out = defaults;
    if (field(p, "args")) out.args = getStrings(p, "args", path);
    if (out.args.empty() || out.args[0].empty()) throw invalid("process.args: no command given");
    if (field(p, "env")) out.env = getStrings(p, "env", path);
    for (const auto &e : out.env)
        if (e.find('=') == std::string::npos || e[0] == '=')
            throw invalid("process.env: " + quote(e) + " is not NAME=VALUE");
    out.cwd = getString(p, "cwd", path, out.cwd);
    if (out.cwd.empty() || out.cwd[0] != '/')
        throw invalid("process.cwd: " + quote(out.cwd) + " is not an absolute path");
    if (const json *u = field(p, "user")) {
        out.additionalGroups.clear();
        if (u->is_string()) {
            out.userName = u->get<std::string>();
            out.user = {};
        } else if (u->is_object()) {
            out.userName.reset();
            out.user = {};
            out.user.uid = getUnsigned(*u, "uid", "process.user.", 0, UINT32_MAX - 1);
            out.user.gid = getUnsigned(*u, "gid", "process.user.", 0, UINT32_MAX - 1);
            if (const json *a = field(*u, "additionalGids")) {
                if (!a->is_array()) throw invalid("process.user.additionalGids: expected an array");
                for (const auto &g : *a) {
                    if (!g.is_number_integer() || g.get<int64_t>() < 0 ||
                        g.get<uint64_t>() >= UINT32_MAX)
                        throw invalid("process.user.additionalGids: expected gids");
                    out.user.additionalGids.push_back(g.get<gid_t>());
                }
            }
            out.additionalGroups = getStrings(*u, "additionalGroups", "process.user.");
            for (const auto &g : out.additionalGroups)
                if (g.empty())
                    throw invalid("process.user.additionalGroups: a group name is empty");
            if (const json *n = field(*u, "name"); n && n->is_string())
                out.userName = n->get<std::string>();
        } else {
            throw invalid("process.user: expected an object or a string");
        }
    }
    if (const json *o = field(p, "oomScoreAdj")) {
        if (!o->is_number_integer() || o->get<int64_t>() < -1000 || o->get<int64_t>() > 1000)
            throw invalid("process.oomScoreAdj: expected an integer from -1000 to 1000");
        out.oomScoreAdj = o->get<int>();
    }
    if (const json *m = field(p, "umask")) {
        if (!m->is_number_integer() || m->get<int64_t>() < 0 || m->get<int64_t>() > 0777)
            throw invalid("process.umask: expected an integer from 0 to 0777 (511)");
        out.umask = m->get<unsigned>();
    }
    out.terminal = getBool(p, "terminal", path, out.terminal);
    out.stdinOpen = getBool(p, "stdin", path, out.stdinOpen);
    out.init = getBool(p, "init", path, out.init);
    if (field(p, "noNewPrivileges"))
        out.security.noNewPrivileges = getBool(p, "noNewPrivileges", path, false);
    if (const json *sec = field(p, "security"))
        out.security = parseExecSecurity(*sec, "process.security.", out.security); // exec
    out.noNewPrivileges = noNewPrivileges(out.security);
    if (const json *r = field(p, "rlimits")) {
        if (!r->is_array()) throw invalid("process.rlimits: expected an array");
        out.rlimits.clear();
        for (size_t i = 0; i < r->size(); ++i) {
            const json &e = (*r)[i];
            std::string rp = "process.rlimits[" + std::to_string(i) + "].";
            if (!e.is_object()) throw invalid("process.rlimits: expected objects");
            Rlimit l;
            std::string type = getString(e, "type", rp);
            l.resource = rlimitResource(type);
            if (l.resource < 0) throw invalid(rp + "type: unknown limit " + quote(type));
            l.name = type.rfind("RLIMIT_", 0) == 0 ? type.substr(7) : type;
            for (auto &c : l.name) c = static_cast<char>(std::tolower(c));
            l.soft = getLimit(e, "soft", rp, 0);
            l.hard = getLimit(e, "hard", rp, l.soft);
            out.rlimits.push_back(l);
        }
    }
    return out;
}

namespace {

// `vm` (VmSpec): what a micro-VM container can be made of. What only a namespace
// container has is refused by name rather than silently dropped.
VmSpec parseVm(const json &vm, const ContainerSpec &s) {
    if (!vm.is_object()) throw invalid("vm: expected an object");
    VmSpec out;
    out.launcher = getStrings(vm, "launcher", "vm.");
    if (out.launcher.empty() || out.launcher[0].empty() || out.launcher[0][0] != '/')
        throw invalid("vm.launcher: expected the absolute path of a VMM launcher");
    out.settings = vm;
    out.settings.erase("launcher");
    auto refuse = [](const std::string &what) {
        return Error(MO_E_UNSUPPORTED, what + " is not supported in a micro-VM container");
    };
    if (s.userns()) throw refuse("a user namespace (userns)");
    if (!s.rootfsImage.empty()) throw refuse("an ext4 image root (rootfsImage)");
    if (s.volatileRoot) throw refuse("a volatile root");
    if (s.initSystem) throw refuse("an init system (initSystem)");
    if (s.hardwareAccess) throw refuse("host hardware access (hardwareAccess)");
    if (s.process.terminal)
        throw Error(MO_E_UNSUPPORTED,
                    "a terminal (process.terminal, -t, --console-socket) is not supported in a "
                    "micro-VM container yet (the guest has no agent to hold a tty)");
    if (s.networkMode == "host") throw refuse("the host's network (network.mode host)");
    for (auto [own, name] : {std::pair{s.namespaces.pid, "PID"}, std::pair{s.namespaces.ipc, "IPC"},
                             std::pair{s.namespaces.uts, "UTS"}})
        if (!own)
            throw refuse(std::string("the host's ") + name +
                         " namespace (the program runs in the guest's own)");
    if (const json *n = field(s.raw, "network"); n && n->is_object())
        if (!getString(*n, "attach", "network.").empty())
            throw refuse("a network attachment (network.attach: the guest has no network "
                         "device yet)");
    for (size_t i = 0; i < s.mounts.size(); ++i)
        if (s.mounts[i].type != "bind")
            throw refuse("mounts[" + std::to_string(i) + "]: a " + quote(s.mounts[i].type) +
                         " mount (only bind mounts become shares)");
    return out;
}

std::string absolutePath(const json &obj, const char *key, const std::string &path) {
    std::string v = getString(obj, key, path);
    if (v.empty()) return v;
    if (v[0] != '/' || v.find('\0') != std::string::npos)
        throw invalid(path + key + ": " + quote(v) + " is not an absolute path");
    if (hasDotDot(v)) throw invalid(path + key + ": " + quote(v) + " contains `..`");
    return v;
}

} // namespace

std::string parseCgroupsPath(const std::string &value) {
    const std::string what = "cgroupsPath " + quote(value) + ": ";
    if (value.find('/') == std::string::npos && std::count(value.begin(), value.end(), ':') == 2)
        throw Error(MO_E_UNSUPPORTED,
                    what + "the systemd form slice:prefix:name is not supported (the namespace "
                           "runtime manages cgroupfs paths: give /a/b)");
    std::string out;
    for (const auto &c : split(value, '/')) {
        if (c.empty()) continue;
        if (c == "." || c == "..") throw invalid(what + "`.` and `..` are not allowed");
        out += (out.empty() ? "" : "/") + c;
    }
    if (out.empty()) throw invalid(what + "names the root cgroup, not a container's own");
    return out;
}

namespace {

// A sysctl the container may set: one its own namespaces hold.
void checkSysctl(const ContainerSpec &s, const std::string &key) {
    const std::string what = "sysctl " + quote(key) + ": ";
    if (key.empty() || key.front() == '.' || key.back() == '.' ||
        key.find("..") != std::string::npos)
        throw invalid(what + "not a sysctl name");
    for (char c : key)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
            throw invalid(what + "not a sysctl name (letters, digits, `._-`)");
    if (s.vm) return; // the guest's init writes it to the guest's own kernel
    auto starts = [&](const char *p) { return key.rfind(p, 0) == 0; };
    if (starts("kernel.shm") || starts("kernel.msg") || key == "kernel.sem" ||
        starts("fs.mqueue.")) {
        if (!s.namespaces.ipc) throw invalid(what + "needs the container's own IPC namespace");
        return;
    }
    if (key == "kernel.hostname" || key == "kernel.domainname") {
        if (!s.namespaces.uts) throw invalid(what + "needs the container's own UTS namespace");
        return;
    }
    if (starts("net.")) {
        if (!s.namespaces.network)
            throw invalid(what + "needs the container's own network namespace");
        return;
    }
    throw invalid(what + "not a namespaced sysctl: it would change the host");
}

DeviceSpec parseDevice(const json &e, const std::string &p) {
    if (!e.is_object()) throw invalid(p.substr(0, p.size() - 1) + ": expected an object");
    DeviceSpec d;
    d.path = getString(e, "path", p);
    if (d.path.rfind("/dev/", 0) != 0 || d.path.size() <= 5 || hasDotDot(d.path) ||
        d.path.back() == '/')
        throw invalid(p + "path: " + quote(d.path) + " is not a path under /dev without `..`");
    std::string type = getString(e, "type", p);
    if (type != "c" && type != "u" && type != "b" && type != "p")
        throw invalid(p + "type: " + quote(type) + " is not one of c, b, u, p");
    d.type = type == "u" ? 'c' : type[0];
    d.major = static_cast<uint32_t>(getUnsigned(e, "major", p, 0, 4095));
    d.minor = static_cast<uint32_t>(getUnsigned(e, "minor", p, 0, 1048575));
    d.mode = static_cast<uint32_t>(getUnsigned(e, "fileMode", p, 0666, 07777)) & 0777;
    d.uid = static_cast<uint32_t>(getUnsigned(e, "uid", p, 0, UINT32_MAX - 1));
    d.gid = static_cast<uint32_t>(getUnsigned(e, "gid", p, 0, UINT32_MAX - 1));
    return d;
}

} // namespace

OciSpec parseOci(const json &doc, const std::string &path) {
    if (!doc.is_object()) throw invalid(path.substr(0, path.size() - 1) + ": expected an object");
    OciSpec out;
    out.pidFile = absolutePath(doc, "pidFile", path);
    out.consoleSocket = absolutePath(doc, "consoleSocket", path);
    out.bundle = absolutePath(doc, "bundle", path);
    return out;
}

ContainerSpec parseSpec(const json &doc) {
    if (!doc.is_object()) throw invalid("spec: expected a JSON object");
    ContainerSpec s;
    s.raw = doc;
    s.name = getString(doc, "name", "");
    s.image = getString(doc, "image", "");
    s.rootfs = getString(doc, "rootfs", "");
    s.rootfsImage = getString(doc, "rootfsImage", "");
    s.imageId = getString(doc, "imageId", "");
    if (!s.imageId.empty() && (!s.rootfs.empty() || !s.rootfsImage.empty()))
        throw invalid("imageId: give either an image or a rootfs (rootfs, rootfsImage), not both");
    if (s.rootfs.empty() && s.rootfsImage.empty() && s.imageId.empty())
        throw invalid("rootfs: no root filesystem given");
    if (!s.rootfs.empty() && !s.rootfsImage.empty())
        throw invalid("rootfsImage: give either rootfs or rootfsImage, not both");
    if (!s.rootfs.empty() && s.rootfs[0] != '/')
        throw invalid("rootfs " + quote(s.rootfs) + " is not an absolute path");
    if (!s.rootfsImage.empty() && s.rootfsImage[0] != '/')
        throw invalid("rootfsImage " + quote(s.rootfsImage) + " is not an absolute path");
    s.volatileRoot = getBool(doc, "volatile", "", false);
    s.softMounts = getBool(doc, "softMounts", "", false);
    s.readonly = getBool(doc, "readonly", "", false);
    s.hostname = getString(doc, "hostname", "");
    if (s.hostname.size() > 64) throw invalid("hostname " + quote(s.hostname) + " is too long");

    s.initSystem = getBool(doc, "initSystem", "", false);
    s.hardwareAccess = getBool(doc, "hardwareAccess", "", false);
    if (const std::string cg = getString(doc, "cgroupMount", "", "ro"); cg == "ro")
        s.cgroupMount = CgroupMount::ReadOnly;
    else if (cg == "rw")
        s.cgroupMount = CgroupMount::ReadWrite;
    else if (cg == "none")
        s.cgroupMount = CgroupMount::None;
    else
        throw invalid("cgroupMount: " + quote(cg) + " is not one of ro, rw, none");
    ProcessSpec defaults;
    defaults.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    if (s.initSystem) defaults.args = {kInitSystemCommand};
    const json *p = field(doc, "process");
    if (!p) throw invalid("process: no command given");
    s.process = parseProcess(*p, defaults);

    if (const json *ns = field(doc, "namespaces")) {
        if (!ns->is_object()) throw invalid("namespaces: expected an object");
        const std::string np = "namespaces.";
        s.namespaces.pid = getBool(*ns, "pid", np, true);
        s.namespaces.mount = getBool(*ns, "mount", np, true);
        s.namespaces.uts = getBool(*ns, "uts", np, true);
        s.namespaces.ipc = getBool(*ns, "ipc", np, true);
        s.namespaces.network = getBool(*ns, "network", np, true);
        s.namespaces.cgroup = getBool(*ns, "cgroup", np, true);
        s.namespaces.user = getBool(*ns, "user", np, false);
        if (!s.namespaces.mount)
            throw invalid("namespaces.mount: the namespace runtime always uses a mount namespace");
        if (!s.namespaces.uts && !s.hostname.empty())
            throw invalid("hostname " + quote(s.hostname) +
                          ": the host's UTS namespace (namespaces.uts false, --uts host) keeps "
                          "the host's name");
    }
    if (const json *u = field(doc, "userns")) {
        if (!u->is_object()) throw invalid("userns: expected an object");
        s.uidMappings = parseMappings(*u, "uidMappings");
        s.gidMappings = parseMappings(*u, "gidMappings");
        if (s.gidMappings.empty()) s.gidMappings = s.uidMappings;
        if (!s.uidMappings.empty() && !field(doc, "namespaces")) s.namespaces.user = true;
    }
    if (s.namespaces.user && s.uidMappings.empty())
        throw invalid("namespaces.user: a user namespace needs userns.uidMappings");

    if (const json *n = field(doc, "network")) {
        if (!n->is_object()) throw invalid("network: expected an object");
        s.networkMode = getString(*n, "mode", "network.", "private");
        if (s.networkMode != "private" && s.networkMode != "host" && s.networkMode != "none")
            throw invalid("network.mode: " + quote(s.networkMode) +
                          " is not one of private, host, none");
    }
    if (s.networkMode == "host") s.namespaces.network = false;

    if (const json *m = field(doc, "mounts")) {
        if (!m->is_array()) throw invalid("mounts: expected an array");
        for (size_t i = 0; i < m->size(); ++i) {
            const json &e = (*m)[i];
            std::string mp = "mounts[" + std::to_string(i) + "].";
            if (!e.is_object()) throw invalid("mounts: expected objects");
            MountSpec ms;
            ms.destination = getString(e, "destination", mp);
            ms.source = getString(e, "source", mp);
            ms.type = getString(e, "type", mp, "bind");
            ms.options = getStrings(e, "options", mp);
            if (ms.destination.empty() || ms.destination[0] != '/')
                throw invalid(mp + "destination: " + quote(ms.destination) +
                              " is not an absolute path");
            if (hasDotDot(ms.destination))
                throw invalid(mp + "destination: " + quote(ms.destination) + " contains `..`");
            if (ms.type == "bind" && (ms.source.empty() || ms.source[0] != '/'))
                throw invalid(mp + "source: " + quote(ms.source) + " is not an absolute path");
            s.mounts.push_back(std::move(ms));
        }
        size_t binds = std::count_if(s.mounts.begin(), s.mounts.end(),
                                     [](const MountSpec &ms) { return ms.type == "bind"; });
        if (binds > kMaxVolumes)
            throw invalid("mounts: " + std::to_string(binds) + " bind mounts, at most " +
                          std::to_string(kMaxVolumes) + " per container");
    }
    if (const json *v = field(doc, "volumes")) {
        if (!v->is_array()) throw invalid("volumes: expected an array");
        for (const auto &e : *v)
            if (!e.is_object()) throw invalid("volumes: expected objects");
        s.volumes = *v;
    }
    if (const json *res = field(doc, "resources"); res && res->is_object())
        if (const json *limits = field(*res, "limits"); limits && limits->is_object())
            if (field(*limits, "storage"))
                s.diskLimit = getUnsigned(*limits, "storage", "resources.limits.", 0, UINT64_MAX);
    if (!s.rootfsImage.empty() && s.userns())
        throw Error(MO_E_UNSUPPORTED, "rootfsImage: an image root cannot be used with a user "
                                      "namespace (mounting ext4 needs the host's root)");
    if (const json *sec = field(doc, "security")) {
        s.process.security = parseSecurity(*sec, "security.", s.process.security);
        s.process.noNewPrivileges = noNewPrivileges(s.process.security);
        if (const json *r = field(*sec, "readOnlyRootFilesystem"); r && r->is_boolean())
            s.readonly = s.readonly || r->get<bool>();
    }
    int sig = static_cast<int>(getUnsigned(doc, "stopSignal", "", SIGTERM, 64));
    if (sig < 1) throw invalid("stopSignal: " + std::to_string(sig) + " is not a signal");
    s.stopSignal = sig;
    s.stopTimeout = static_cast<uint32_t>(getUnsigned(doc, "stopTimeout", "", 10));
    if (s.initSystem) applyInitSystem(s, field(doc, "stopSignal") != nullptr);
    if (s.hardwareAccess) checkHardwareAccess(s);
    if (const json *vm = field(doc, "vm")) s.vm = parseVm(*vm, s);
    for (auto [key, target] :
         {std::pair{"maskedPaths", &s.maskedPaths}, std::pair{"readonlyPaths", &s.readonlyPaths}}) {
        const json *v = field(doc, key);
        if (!v) continue;
        // An empty Lua table reaches us as {}: none.
        if (v->is_object() && v->empty()) {
            *target = std::vector<std::string>{};
            continue;
        }
        *target = getStrings(doc, key, "");
        for (const auto &path : **target)
            if (path.empty() || path[0] != '/' || hasDotDot(path) ||
                path.find('\0') != std::string::npos)
                throw invalid(std::string(key) + ": " + quote(path) +
                              " is not an absolute path without `..`");
    }
    if (const json *sc = field(doc, "sysctl")) {
        if (!sc->is_object()) throw invalid("sysctl: expected an object of key: value");
        for (auto it = sc->begin(); it != sc->end(); ++it) {
            checkSysctl(s, it.key());
            const json &v = it.value();
            if (v.is_string())
                s.sysctl[it.key()] = v.get<std::string>();
            else if (v.is_number_integer())
                s.sysctl[it.key()] = v.dump();
            else
                throw invalid("sysctl " + quote(it.key()) + ": expected a string value");
        }
    }
    if (const json *dv = field(doc, "devices")) {
        if (!dv->is_array() && !(dv->is_object() && dv->empty()))
            throw invalid("devices: expected an array");
        for (size_t i = 0; i < dv->size() && dv->is_array(); ++i)
            s.devices.push_back(parseDevice((*dv)[i], "devices[" + std::to_string(i) + "]."));
    }
    if (const json *cg = field(doc, "cgroupsPath")) {
        if (!cg->is_string()) throw invalid("cgroupsPath: expected a string");
        s.cgroupsPath = parseCgroupsPath(cg->get<std::string>());
    }
    if (const json *np = field(doc, "namespacePaths"); np && !(np->is_object() && np->empty())) {
        if (!np->is_object()) throw invalid("namespacePaths: expected an object");
        for (auto it = np->begin(); it != np->end(); ++it) {
            const std::string &k = it.key();
            const std::string p = "namespacePaths." + k;
            if (k == "mount")
                throw Error(MO_E_UNSUPPORTED,
                            p + ": joining a mount namespace is not supported (the runtime "
                                "pivots the root inside it, which would move every process "
                                "there)");
            bool *flag = k == "pid"       ? &s.namespaces.pid
                         : k == "uts"     ? &s.namespaces.uts
                         : k == "ipc"     ? &s.namespaces.ipc
                         : k == "network" ? &s.namespaces.network
                         : k == "cgroup"  ? &s.namespaces.cgroup
                         : k == "user"    ? &s.namespaces.user
                                          : nullptr;
            if (!flag)
                throw invalid(p + ": unknown namespace (pid, uts, ipc, network, cgroup, user)");
            if (!it->is_string() || it->get<std::string>().empty() ||
                it->get<std::string>()[0] != '/' || hasDotDot(it->get<std::string>()))
                throw invalid(p + ": expected an absolute path without `..`");
            if (k == "network" && s.networkMode == "host")
                throw invalid(p + ": given with network.mode host");
            if (k == "user" && !s.uidMappings.empty())
                throw invalid(p + ": a joined user namespace has its own maps (no userns)");
            if (k != "user") *flag = true;
            s.namespacePaths[k] = it->get<std::string>();
        }
    }
    if (const json *h = field(doc, "hooks")) s.hooks = parseHooks(*h);
    if (const json *oci = field(doc, "oci")) {
        s.oci = parseOci(*oci, "oci.");
        // runc's rules: a terminal needs somewhere to send it, a socket needs a terminal.
        if (s.process.terminal && s.oci->consoleSocket.empty())
            throw invalid("oci.consoleSocket: process.terminal needs a console socket to send "
                          "the pty to");
        if (!s.process.terminal && !s.oci->consoleSocket.empty())
            throw invalid("oci.consoleSocket: given without process.terminal");
    }
    if (!s.hooks.empty() && !s.oci)
        throw Error(MO_E_UNSUPPORTED, "hooks: only with `oci` (runc's process model)");
    // A VM container's process is the VMM on the host: there is no container root to run
    // these in; the guest's would need a guest agent.
    if (s.vm && !s.hooks.createContainer.empty())
        throw Error(MO_E_UNSUPPORTED,
                    "hooks.createContainer: not supported in a micro-VM container (the "
                    "program's root is the guest's)");
    if (s.vm && !s.hooks.startContainer.empty())
        throw Error(MO_E_UNSUPPORTED,
                    "hooks.startContainer: not supported in a micro-VM container (the "
                    "program's root is the guest's)");
    return s;
}

bool vmShare(const MountSpec &mount) {
    struct stat st;
    return ::stat(mount.source.c_str(), &st) != 0 || S_ISDIR(st.st_mode);
}

json vmDescription(const ContainerSpec &spec) {
    json out = spec.vm ? spec.vm->settings : json::object();
    out["rootfs"] = spec.rootfs;
    out["readonly"] = spec.readonly;
    out["hostname"] = spec.hostname;
    json mounts = json::array();
    for (const auto &m : spec.mounts) {
        if (!vmShare(m)) continue;
        bool ro = std::find(m.options.begin(), m.options.end(), "ro") != m.options.end();
        mounts.push_back({{"source", m.source}, {"destination", m.destination}, {"readOnly", ro}});
    }
    out["mounts"] = mounts;
    const ProcessSpec &p = spec.process;
    json rlimits = json::array();
    for (const auto &l : p.rlimits)
        rlimits.push_back({{"name", l.name},
                           {"soft", l.soft == RLIM_INFINITY ? -1 : static_cast<int64_t>(l.soft)},
                           {"hard", l.hard == RLIM_INFINITY ? -1 : static_cast<int64_t>(l.hard)}});
    out["process"] = {{"args", p.args},     {"env", p.env},      {"cwd", p.cwd},
                      {"uid", p.user.uid},  {"gid", p.user.gid}, {"groups", p.user.additionalGids},
                      {"rlimits", rlimits}, {"umask", p.umask}};
    // What the namespace runtime applies to its process, the guest's init applies to the
    // program: the same capability sets, no_new_privs and seccomp filter (compiled here
    // for this machine's architecture, which is the guest's), and the sysctls.
    const CapabilitySets caps = processCapabilities(p.security, p.user.uid);
    out["process"]["capabilities"] = {{"bounding", caps.bounding},
                                      {"effective", caps.effective},
                                      {"permitted", caps.permitted},
                                      {"inheritable", caps.inheritable},
                                      {"ambient", caps.ambient}};
    out["process"]["noNewPrivileges"] = p.noNewPrivileges;
    if (const auto &filter = p.security.filter) {
        static const char digits[] = "0123456789abcdef";
        std::string hex;
        const auto *bytes = reinterpret_cast<const unsigned char *>(filter->code.data());
        const size_t size = filter->code.size() * sizeof(sock_filter);
        hex.reserve(size * 2);
        for (size_t i = 0; i < size; ++i) {
            hex += digits[bytes[i] >> 4];
            hex += digits[bytes[i] & 15];
        }
        out["process"]["seccomp"] = {{"flags", filter->flags}, {"filter", hex}};
    }
    out["sysctl"] = spec.sysctl;
    return out;
}

void addVolumeMount(std::vector<MountSpec> &mounts, const json &volume) {
    const std::string vp = "volume ";
    if (!volume.is_object()) throw invalid("volumes: the storage service returned a non-object");
    MountSpec m;
    m.destination = getString(volume, "destination", vp);
    m.source = getString(volume, "source", vp);
    m.type = "bind";
    m.options = {"rbind"};
    if (getBool(volume, "readOnly", vp, false)) m.options.push_back("ro");
    if (m.destination.empty() || m.destination[0] != '/' || hasDotDot(m.destination))
        throw invalid("volume " + quote(m.destination) +
                      ": not an absolute container path without `..`");
    if (m.source.empty() || m.source[0] != '/')
        throw invalid("volume " + quote(m.destination) + ": source " + quote(m.source) +
                      " is not an absolute path");
    // /app before /app/config, whatever order the spec listed them in
    auto below = std::find_if(mounts.begin(), mounts.end(), [&](const MountSpec &o) {
        return o.destination.rfind(m.destination + "/", 0) == 0;
    });
    mounts.insert(below, std::move(m));
    size_t binds = std::count_if(mounts.begin(), mounts.end(),
                                 [](const MountSpec &ms) { return ms.type == "bind"; });
    if (binds > kMaxVolumes)
        throw invalid("mounts: " + std::to_string(binds) + " bind mounts and volumes, at most " +
                      std::to_string(kMaxVolumes) + " per container");
}

void prepareProcess(ProcessSpec &process, const std::string &rootfs) {
    std::string group;
    if (process.userName || !process.additionalGroups.empty())
        group = readInRoot(rootfs, "/etc/group");
    if (process.userName) {
        // The user's groups from /etc/group first, then the ones the spec adds.
        User resolved = parseUser(*process.userName, readInRoot(rootfs, "/etc/passwd"), group);
        for (gid_t gid : process.user.additionalGids) addGid(resolved.additionalGids, gid);
        process.user = std::move(resolved);
        process.userName.reset();
    } else if (process.user.home.empty()) {
        // Numeric ids: still pick up HOME when the user exists.
        try {
            User u =
                parseUser(std::to_string(process.user.uid), readInRoot(rootfs, "/etc/passwd"), {});
            process.user.home = u.home;
        } catch (const Error &) {
        }
    }
    for (const auto &name : process.additionalGroups)
        addGid(process.user.additionalGids, groupId(name, group));
    process.additionalGroups.clear();
    bool hasHome = false;
    for (const auto &e : process.env) hasHome = hasHome || e.rfind("HOME=", 0) == 0;
    if (!hasHome)
        process.env.push_back("HOME=" +
                              (process.user.home.empty() ? std::string("/") : process.user.home));
    if (process.terminal) {
        bool hasTerm = false;
        for (const auto &e : process.env) hasTerm = hasTerm || e.rfind("TERM=", 0) == 0;
        if (!hasTerm) process.env.push_back("TERM=xterm");
    }
    for (const auto &l : process.rlimits) checkRlimit(l);
    resolveSecurity(process.security, process.noNewPrivileges);
}

void prepareSpec(ContainerSpec &spec) {
    struct stat st;
    if (!spec.rootfsImage.empty()) {
        checkImage(spec.rootfsImage, spec.volatileRoot || spec.readonly);
        // Users and groups are looked up in the image once the container mounted it.
        for (const auto &l : spec.process.rlimits) checkRlimit(l);
    } else {
        if (::stat(spec.rootfs.c_str(), &st) < 0)
            throw sysError("rootfs " + quote(spec.rootfs), errno);
        if (!S_ISDIR(st.st_mode))
            throw Error(MO_E_INVALID, "rootfs " + quote(spec.rootfs) + " is not a directory");
        prepareProcess(spec.process, spec.rootfs);
    }
    resolveSecurity(spec.process.security, spec.process.noNewPrivileges);
    if (spec.volatileRoot || !spec.rootfsImage.empty()) prepareMountPoint(spec.mountPoint);
    spec.warnings.clear();
    for (auto m = spec.mounts.begin(); m != spec.mounts.end();) {
        if (m->type == "bind" && ::stat(m->source.c_str(), &st) < 0) {
            std::string what = "mount " + quote(m->destination) + ": source " + quote(m->source);
            if (errno != ENOENT || !spec.softMounts) throw sysError(what, errno);
            spec.warnings.push_back(what + " does not exist; skipped (soft mounts)");
            m = spec.mounts.erase(m);
            continue;
        }
        ++m;
    }
}

} // namespace mobileops::nsruntime
