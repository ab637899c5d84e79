#include "Security.h"

#include "Errors.h"

#include <seccomp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

Error invalid(const std::string &message) { return Error(MO_E_INVALID, message); }

const json *field(const json &obj, const char *key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool boolean(const json &v, const std::string &path) {
    if (!v.is_boolean()) throw invalid(path + ": expected true or false");
    return v.get<bool>();
}

std::vector<std::string> names(const json &v, const std::string &path) {
    if (v.is_object() && v.empty()) return {}; // an empty Lua table
    if (!v.is_array()) throw invalid(path + ": expected an array of capability names");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string())
            throw invalid(path + "[" + std::to_string(i) + "]: expected a capability name");
        out.push_back(v[i].get<std::string>());
    }
    return out;
}

std::string gCacheDir;

// FNV-1a: names a cache file. The file holds the whole key, compared on every read, so
// a collision costs a compile, never a wrong filter.
uint64_t fnv1a(const std::string &s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

constexpr char kCacheMagic[8] = {'m', 'o', 's', 'e', 'c', 'c', '0', '1'};

bool readAll(int fd, void *buf, size_t len) {
    auto *p = static_cast<char *>(buf);
    while (len > 0) {
        ssize_t n = ::read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

std::shared_ptr<const SeccompProgram> readCached(const std::string &path, const std::string &key) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return nullptr;
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st;
    // Only a file this user wrote and nobody else may change is trusted.
    if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
        (st.st_mode & 022))
        return nullptr;
    char magic[sizeof kCacheMagic];
    uint32_t head[3]; // key length, flags, instructions
    if (!readAll(fd, magic, sizeof magic) || std::memcmp(magic, kCacheMagic, sizeof magic) ||
        !readAll(fd, head, sizeof head) || head[0] != key.size() || head[2] == 0 ||
        head[2] > BPF_MAXINSNS)
        return nullptr;
    std::string stored(head[0], '\0');
    if (!readAll(fd, stored.data(), stored.size()) || stored != key) return nullptr;
    auto program = std::make_shared<SeccompProgram>();
    program->flags = head[1];
    program->code.resize(head[2]);
    if (!readAll(fd, program->code.data(), head[2] * sizeof(sock_filter))) return nullptr;
    return program;
}

void writeCached(const std::string &path, const std::string &key, const SeccompProgram &p) {
    if (::mkdir(gCacheDir.c_str(), 0700) < 0 && errno == ENOENT) {
        ::mkdir(gCacheDir.substr(0, gCacheDir.rfind('/')).c_str(), 0700);
        ::mkdir(gCacheDir.c_str(), 0700);
    }
    std::string tmp = path + ".tmp" + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return; // a cache: failing to write it only costs the next compile
    uint32_t head[3] = {static_cast<uint32_t>(key.size()), p.flags,
                        static_cast<uint32_t>(p.code.size())};
    std::string data(kCacheMagic, sizeof kCacheMagic);
    data.append(reinterpret_cast<const char *>(head), sizeof head);
    data += key;
    data.append(reinterpret_cast<const char *>(p.code.data()), p.code.size() * sizeof(sock_filter));
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    ok = ::close(fd) == 0 && ok;
    if (!ok || ::rename(tmp.c_str(), path.c_str()) < 0) ::unlink(tmp.c_str());
}

// Compiling with libseccomp costs ~20 ms for the default profile on x86_64 (three
// architectures, ~400 syscalls): the result is kept per process and, when the runtime
// set a cache directory, on disk, keyed by everything the filter depends on.
// `text` is the profile as JSON text (the key); `profile` gives it parsed, only needed
// when it must be compiled.
std::shared_ptr<const SeccompProgram> compiled(std::string_view text,
                                               const std::function<const json &()> &profile,
                                               uint64_t caps, const std::string &what) {
    static std::mutex lock;
    static std::map<std::string, std::shared_ptr<const SeccompProgram>> memory;
    const scmp_version *v = seccomp_version();
    struct utsname u = {};
    ::uname(&u);
    char prefix[256];
    std::snprintf(prefix, sizeof prefix, "libseccomp %u.%u.%u kernel %s arch %s caps %llx\n",
                  v->major, v->minor, v->micro, u.release, u.machine,
                  static_cast<unsigned long long>(caps));
    std::string key = prefix;
    key += text;

    std::lock_guard<std::mutex> guard(lock);
    auto &slot = memory[key];
    if (slot) return slot;
    std::string path;
    if (!gCacheDir.empty()) {
        char name[32];
        std::snprintf(name, sizeof name, "/%016llx.bpf",
                      static_cast<unsigned long long>(fnv1a(key)));
        path = gCacheDir + name;
        if ((slot = readCached(path, key))) return slot;
    }
    auto program = std::make_shared<const SeccompProgram>(compileSeccomp(profile(), caps, what));
    if (!path.empty()) writeCached(path, key, *program);
    return slot = program;
}

} // namespace

SecuritySpec parseSecurity(const json &doc, const std::string &path, SecuritySpec out) {
    if (!doc.is_object()) throw invalid(path.substr(0, path.size() - 1) + ": expected an object");
    out.resolved = false;
    out.filter.reset();
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &key = it.key();
        const json &v = it.value();
        const std::string p = path + key;
        if (v.is_null()) continue;
        if (key == "privileged") {
            out.privileged = boolean(v, p);
        } else if (key == "noNewPrivileges") {
            out.noNewPrivileges = boolean(v, p);
        } else if (key == "allowPrivilegeEscalation") {
            // the VirtualRoot name, found in specs recorded before `noNewPrivileges`
            out.noNewPrivileges = !boolean(v, p);
        } else if (key == "capabilities") {
            if (!v.is_object()) throw invalid(p + ": expected an object with add and drop");
            static const std::pair<const char *, uint64_t CapabilitySets::*> kSets[] = {
                {"bounding", &CapabilitySets::bounding},
                {"effective", &CapabilitySets::effective},
                {"permitted", &CapabilitySets::permitted},
                {"inheritable", &CapabilitySets::inheritable},
                {"ambient", &CapabilitySets::ambient}};
            for (const auto &[name, member] : kSets) {
                auto it = v.find(name);
                if (it == v.end()) continue;
                if (v.contains("add") || v.contains("drop"))
                    throw invalid(p + ": give either add/drop or the OCI sets, not both");
                if (!out.sets) out.sets = CapabilitySets{};
                const uint64_t held = allCapabilities();
                uint64_t mask = 0;
                for (const auto &n : names(*it, p + "." + name)) {
                    int cap = capabilityNumber(n);
                    if (cap < 0) throw invalid(p + "." + name + ": unknown capability " + quote(n));
                    if (!(held & (uint64_t(1) << cap)))
                        throw invalid(p + "." + name + ": " + capabilityName(cap) +
                                      " is not held by this runtime");
                    mask |= uint64_t(1) << cap;
                }
                (*out.sets).*member = mask;
            }
            if (out.sets) {
                const CapabilitySets &c = *out.sets;
                auto subset = [&](uint64_t a, uint64_t b, const char *what) {
                    if (a & ~b) throw invalid(p + "." + what + ": " + capabilityList(a & ~b));
                };
                subset(c.effective, c.permitted, "effective: not in permitted");
                subset(c.ambient, c.permitted & c.inheritable,
                       "ambient: not in both permitted and inheritable");
                subset(c.permitted, c.bounding, "permitted: not in bounding");
                out.capAdd.clear();
                out.capDrop.clear();
                continue;
            }
            for (auto c = v.begin(); c != v.end(); ++c) {
                if (c.key() == "add") {
                    auto add = names(c.value(), p + ".add");
                    out.capAdd.insert(out.capAdd.end(), add.begin(), add.end());
                } else if (c.key() == "drop") {
                    auto drop = names(c.value(), p + ".drop");
                    out.capDrop.insert(out.capDrop.end(), drop.begin(), drop.end());
                } else {
                    throw invalid(p + "." + c.key() + ": unknown field");
                }
            }
            // Names are checked here, so the error names the field.
            applyCapabilityChanges(0, out.capAdd, out.capDrop, p + ".");
        } else if (key == "seccomp") {
            if (!v.is_object()) throw invalid(p + ": expected an object");
            std::string mode;
            if (const json *m = field(v, "mode"); m && m->is_string())
                mode = m->get<std::string>();
            else
                throw invalid(p + ".mode: expected `default`, `unconfined` or `profile`");
            for (auto s = v.begin(); s != v.end(); ++s)
                if (s.key() != "mode" && s.key() != "profile" && s.key() != "source")
                    throw invalid(p + "." + s.key() + ": unknown field");
            const json *profile = field(v, "profile");
            if (mode == "default" || mode == "unconfined") {
                if (profile) throw invalid(p + ".profile: only allowed with mode `profile`");
                out.seccomp = mode == "default" ? SeccompMode::Default : SeccompMode::Unconfined;
            } else if (mode == "profile") {
                if (!profile) throw invalid(p + ".profile: required with mode `profile`");
                out.seccomp = SeccompMode::Profile;
                out.seccompProfile = *profile;
                out.seccompSource.clear();
                if (const json *src = field(v, "source")) {
                    if (!src->is_string()) throw invalid(p + ".source: expected a string");
                    out.seccompSource = src->get<std::string>();
                }
                checkSeccompProfile(out.seccompProfile,
                                    out.seccompSource.empty()
                                        ? p + ".profile"
                                        : "seccomp profile " + quote(out.seccompSource));
            } else {
                throw invalid(p + ".mode: " + quote(mode) +
                              " is not `default`, `unconfined` or `profile`");
            }
        } else if (key == "runAsUser" || key == "runAsGroup" || key == "supplementalGroups" ||
                   key == "readOnlyRootFilesystem" || key == "seccompProfile") {
            // VirtualRoot fields of specs recorded before the runtime form: applied
            // elsewhere (process.user, readonly) or, for seccompProfile, never before.
        } else {
            throw invalid(p + ": unknown field");
        }
    }
    return out;
}

void setSeccompCacheDir(const std::string &dir) { gCacheDir = dir; }

SecuritySpec parseExecSecurity(const json &doc, const std::string &path, SecuritySpec container) {
    if (!container.seccomp)
        container.seccomp = container.privileged ? SeccompMode::Unconfined : SeccompMode::Default;
    if (const json *p = doc.is_object() ? field(doc, "privileged") : nullptr;
        p && p->is_boolean() && p->get<bool>()) {
        container.capAdd.clear();
        container.capDrop.clear();
        container.sets.reset();
    }
    return parseSecurity(doc, path, std::move(container));
}

CapabilitySets processCapabilities(const SecuritySpec &security, uint32_t uid) {
    if (security.sets) {
        CapabilitySets c = *security.sets;
        c.bounding = security.bounding;
        return c;
    }
    if (uid == 0) return {security.bounding, security.bounding, security.bounding, 0, 0};
    const uint64_t added = security.added;
    return {security.bounding, added, added, added, added};
}

void resolveSecurity(SecuritySpec &s, bool &noNewPrivileges) {
    if (s.resolved) return;
    const uint64_t base = s.privileged ? allCapabilities() : defaultCapabilities();
    if (s.sets) {
        s.bounding = s.sets->bounding;
        s.added = 0;
    } else {
        s.bounding = applyCapabilityChanges(base, s.capAdd, s.capDrop, "security.capabilities.") &
                     allCapabilities();
        s.added =
            applyCapabilityChanges(0, s.capAdd, s.capDrop, "security.capabilities.") & s.bounding;
    }
    noNewPrivileges = nsruntime::noNewPrivileges(s);
    switch (s.seccomp.value_or(s.privileged ? SeccompMode::Unconfined : SeccompMode::Default)) {
    case SeccompMode::Unconfined:
        s.filter.reset();
        break;
    case SeccompMode::Default:
        // The embedded text is the key: no JSON is parsed when the filter is cached.
        s.filter = compiled(defaultSeccompProfileText(), defaultSeccompProfile, s.bounding,
                            "the default seccomp profile");
        break;
    case SeccompMode::Profile:
        s.filter = compiled(
            s.seccompProfile.dump(), [&]() -> const json & { return s.seccompProfile; }, s.bounding,
            s.seccompSource.empty() ? "security.seccomp.profile"
                                    : "seccomp profile " + quote(s.seccompSource));
        break;
    }
    s.resolved = true;
}

} // namespace mobileops::nsruntime
