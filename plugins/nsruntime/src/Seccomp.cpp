#include "Seccomp.h"

#include "Capabilities.h"
#include "Errors.h"

#include <seccomp.h>

#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace mobileops::nsruntime {

using nlohmann::json;

// seccomp/default.json, embedded at build time (cmake/Embed.cmake).
extern const unsigned char kDefaultSeccompProfileJson[];
extern const size_t kDefaultSeccompProfileJsonSize;

namespace {

// ---------------------------------------------------------------------------------------
// Parsing: the profile as data, every field checked and named on error.

// Syscalls newer than some libseccomp releases: a profile may name them (docker's
// does), and with a libseccomp that does not know them they are skipped, not refused.
const char *const kRecentSyscalls[] = {
    "epoll_pwait2",      "mount_setattr",
    "quotactl_fd",       "landlock_create_ruleset",
    "landlock_add_rule", "landlock_restrict_self",
    "memfd_secret",      "process_mrelease",
    "futex_waitv",       "set_mempolicy_home_node",
    "cachestat",         "fchmodat2",
    "map_shadow_stack",  "futex_wake",
    "futex_wait",        "futex_requeue",
    "statmount",         "listmount",
    "lsm_get_self_attr", "lsm_set_self_attr",
    "lsm_list_modules",  "mseal",
    "setxattrat",        "getxattrat",
    "listxattrat",       "removexattrat",
    "open_tree_attr",    "file_getattr",
    "file_setattr",      "uretprobe",
};

struct Condition {
    unsigned index = 0;
    scmp_compare op = SCMP_CMP_EQ;
    uint64_t value = 0, valueTwo = 0;
};

struct Scope {
    uint64_t caps = 0;
    bool anyCaps = false;
    std::vector<std::string> arches;
    int minKernel[2] = {-1, -1};
};

struct Rule {
    std::string path;
    std::vector<std::string> names;
    uint32_t action = SCMP_ACT_ALLOW;
    std::vector<Condition> args;
    Scope includes, excludes;
};

struct Profile {
    uint32_t defaultAction = SCMP_ACT_ALLOW;
    std::vector<uint32_t> arches;
    std::vector<Rule> rules;
    unsigned flags = 0;
};

// The docker/Go names of an architecture in `includes.arches`.
struct ArchName {
    uint32_t token;
    std::initializer_list<const char *> names;
};
const ArchName kArchNames[] = {
    {SCMP_ARCH_X86_64, {"amd64", "x86_64"}},
    {SCMP_ARCH_X86, {"x86", "386", "i386"}},
    {SCMP_ARCH_X32, {"x32"}},
    {SCMP_ARCH_ARM, {"arm"}},
    {SCMP_ARCH_AARCH64, {"arm64", "aarch64"}},
    {SCMP_ARCH_MIPS, {"mips"}},
    {SCMP_ARCH_MIPSEL, {"mipsle", "mipsel"}},
    {SCMP_ARCH_MIPS64, {"mips64"}},
    {SCMP_ARCH_MIPSEL64, {"mips64le", "mipsel64"}},
    {SCMP_ARCH_MIPS64N32, {"mips64n32"}},
    {SCMP_ARCH_MIPSEL64N32, {"mips64len32", "mipsel64n32"}},
    {SCMP_ARCH_PPC, {"ppc"}},
    {SCMP_ARCH_PPC64, {"ppc64"}},
    {SCMP_ARCH_PPC64LE, {"ppc64le"}},
    {SCMP_ARCH_S390, {"s390"}},
    {SCMP_ARCH_S390X, {"s390x"}},
    {SCMP_ARCH_RISCV64, {"riscv64"}},
};

bool nativeArchIs(const std::string &name) {
    const uint32_t native = seccomp_arch_native();
    for (const auto &a : kArchNames)
        if (a.token == native)
            for (const char *n : a.names)
                if (name == n) return true;
    return false;
}

bool knownArchName(const std::string &name) {
    for (const auto &a : kArchNames)
        for (const char *n : a.names)
            if (name == n) return true;
    return name == "loong64";
}

struct Kernel {
    int major = 0, minor = 0;
};
const Kernel &runningKernel() {
    static const Kernel k = [] {
        Kernel out;
        struct utsname u;
        if (::uname(&u) == 0) std::sscanf(u.release, "%d.%d", &out.major, &out.minor);
        return out;
    }();
    return k;
}

class Parser {
public:
    explicit Parser(std::string what) : _what(std::move(what)) {}

    Profile parse(const json &doc) {
        if (!doc.is_object()) fail("", "expected a JSON object");
        known(doc, "",
              {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
               "listenerPath", "listenerMetadata", "comment"});
        Profile p;
        const json *def = get(doc, "defaultAction");
        if (!def) fail("defaultAction", "required field is missing");
        const json *defErrno = get(doc, "defaultErrnoRet");
        p.defaultAction = action(*def, "defaultAction", defErrno, "defaultErrnoRet");

        if (const json *a = get(doc, "architectures")) {
            for (size_t i = 0; i < list(*a, "architectures").size(); ++i)
                p.arches.push_back(arch((*a)[i], index("architectures", i)));
        }
        if (const json *m = get(doc, "archMap")) {
            const json &maps = list(*m, "archMap");
            for (size_t i = 0; i < maps.size(); ++i) {
                std::string mp = index("archMap", i);
                if (!maps[i].is_object()) fail(mp, "expected an object");
                known(maps[i], mp + ".", {"architecture", "subArchitectures"});
                const json *main = get(maps[i], "architecture");
                if (!main) fail(mp + ".architecture", "required field is missing");
                uint32_t token = arch(*main, mp + ".architecture");
                std::vector<uint32_t> subs;
                if (const json *s = get(maps[i], "subArchitectures"))
                    for (size_t j = 0; j < list(*s, mp + ".subArchitectures").size(); ++j)
                        subs.push_back(arch((*s)[j], index(mp + ".subArchitectures", j)));
                if (token != seccomp_arch_native()) continue;
                p.arches.push_back(token);
                p.arches.insert(p.arches.end(), subs.begin(), subs.end());
            }
        }
        if (const json *f = get(doc, "flags")) {
            for (size_t i = 0; i < list(*f, "flags").size(); ++i) {
                std::string flag = string((*f)[i], index("flags", i));
                if (flag == "SECCOMP_FILTER_FLAG_LOG")
                    p.flags |= SECCOMP_FILTER_FLAG_LOG;
                else if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
                    p.flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
                else if (flag != "SECCOMP_FILTER_FLAG_TSYNC" &&
                         flag != "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
                    fail(index("flags", i), quote(flag) + " is not a seccomp filter flag");
            }
        }
        if (const json *l = get(doc, "listenerPath"); l && !(l->is_string() && l->empty()))
            fail("listenerPath", "seccomp user notification is not supported");
        if (const json *s = get(doc, "syscalls")) {
            const json &rules = list(*s, "syscalls");
            for (size_t i = 0; i < rules.size(); ++i) p.rules.push_back(rule(rules[i], i));
        }
        return p;
    }

private:
    [[noreturn]] void fail(const std::string &field, const std::string &reason) const {
        throw Error(MO_E_INVALID, _what + ": " + (field.empty() ? "" : field + ": ") + reason);
    }

    static const json *get(const json &obj, const char *key) {
        auto it = obj.find(key);
        return it == obj.end() || it->is_null() ? nullptr : &*it;
    }

    static std::string index(const std::string &path, size_t i) {
        return path + "[" + std::to_string(i) + "]";
    }

    void known(const json &obj, const std::string &prefix,
               std::initializer_list<const char *> keys) const {
        for (auto it = obj.begin(); it != obj.end(); ++it) {
            bool ok = false;
            for (const char *k : keys) ok = ok || it.key() == k;
            if (!ok) fail(prefix + it.key(), "unknown field");
        }
    }

    const json &list(const json &v, const std::string &path) const {
        if (!v.is_array()) fail(path, "expected an array");
        return v;
    }

    std::string string(const json &v, const std::string &path) const {
        if (!v.is_string()) fail(path, "expected a string");
        return v.get<std::string>();
    }

    uint64_t number(const json &v, const std::string &path, uint64_t max = UINT64_MAX) const {
        if (v.is_number_unsigned() && v.get<uint64_t>() <= max) return v.get<uint64_t>();
        if (v.is_number_integer() && v.get<int64_t>() >= 0 &&
            static_cast<uint64_t>(v.get<int64_t>()) <= max)
            return static_cast<uint64_t>(v.get<int64_t>());
        fail(path, "expected an integer from 0 to " + std::to_string(max));
    }

    uint32_t action(const json &v, const std::string &path, const json *errnoRet,
                    const std::string &errnoPath) const {
        std::string a = string(v, path);
        const uint32_t ret =
            errnoRet ? static_cast<uint32_t>(number(*errnoRet, errnoPath, 4095)) : EPERM;
        if (a == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
        if (a == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(ret);
        if (a == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(ret);
        if (a == "SCMP_ACT_KILL" || a == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
        if (a == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
        if (a == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
        if (a == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
        if (a == "SCMP_ACT_NOTIFY")
            fail(path, quote(a) + ": seccomp user notification is not supported");
        fail(path, quote(a) + " is not an action (SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, "
                              "SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, "
                              "SCMP_ACT_TRACE, SCMP_ACT_LOG)");
    }

    uint32_t arch(const json &v, const std::string &path) const {
        std::string a = string(v, path);
        std::string n = a.rfind("SCMP_ARCH_", 0) == 0 ? a.substr(10) : std::string();
        for (auto &c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        uint32_t token = n == "native" ? seccomp_arch_native()
                         : n.empty()   ? 0
                                       : seccomp_arch_resolve_name(n.c_str());
        if (token == 0) fail(path, quote(a) + " is not an architecture such as SCMP_ARCH_X86_64");
        return token;
    }

    Scope scope(const json &v, const std::string &path) const {
        Scope s;
        if (!v.is_object()) fail(path, "expected an object");
        known(v, path + ".", {"caps", "arches", "minKernel"});
        if (const json *c = get(v, "caps")) {
            for (size_t i = 0; i < list(*c, path + ".caps").size(); ++i) {
                std::string name = string((*c)[i], index(path + ".caps", i));
                int cap = capabilityNumber(name);
                if (cap < 0) fail(index(path + ".caps", i), quote(name) + " is not a capability");
                s.caps |= uint64_t(1) << cap;
                s.anyCaps = true;
            }
        }
        if (const json *a = get(v, "arches")) {
            for (size_t i = 0; i < list(*a, path + ".arches").size(); ++i) {
                std::string name = string((*a)[i], index(path + ".arches", i));
                if (!knownArchName(name))
                    fail(index(path + ".arches", i),
                         quote(name) + " is not an architecture such as amd64 or arm64");
                s.arches.push_back(name);
            }
        }
        if (const json *k = get(v, "minKernel")) {
            std::string text = string(*k, path + ".minKernel");
            int major = -1, minor = -1, used = 0;
            if (std::sscanf(text.c_str(), "%d.%d%n", &major, &minor, &used) != 2 || major < 0 ||
                minor < 0 || (text[used] != 0 && text[used] != '.'))
                fail(path + ".minKernel", quote(text) + " is not a kernel version such as 5.10");
            s.minKernel[0] = major;
            s.minKernel[1] = minor;
        }
        return s;
    }

    Rule rule(const json &r, size_t i) const {
        Rule out;
        out.path = index("syscalls", i);
        const std::string &p = out.path;
        if (!r.is_object()) fail(p, "expected an object");
        known(r, p + ".",
              {"names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes"});
        if (const json *n = get(r, "names")) {
            for (size_t j = 0; j < list(*n, p + ".names").size(); ++j)
                out.names.push_back(syscall((*n)[j], index(p + ".names", j)));
        }
        if (const json *n = get(r, "name")) out.names.push_back(syscall(*n, p + ".name"));
        if (out.names.empty()) fail(p + ".names", "no system call named");
        const json *a = get(r, "action");
        if (!a) fail(p + ".action", "required field is missing");
        out.action = action(*a, p + ".action", get(r, "errnoRet"), p + ".errnoRet");
        if (const json *args = get(r, "args")) {
            for (size_t j = 0; j < list(*args, p + ".args").size(); ++j)
                out.args.push_back(condition((*args)[j], index(p + ".args", j)));
        }
        if (const json *s = get(r, "includes")) out.includes = scope(*s, p + ".includes");
        if (const json *s = get(r, "excludes")) out.excludes = scope(*s, p + ".excludes");
        return out;
    }

    std::string syscall(const json &v, const std::string &path) const {
        std::string name = string(v, path);
        if (seccomp_syscall_resolve_name(name.c_str()) != __NR_SCMP_ERROR) return name;
        for (const char *recent : kRecentSyscalls)
            if (name == recent) return name; // newer than this libseccomp: skipped
        fail(path, "unknown system call " + quote(name));
    }

    Condition condition(const json &v, const std::string &path) const {
        if (!v.is_object()) fail(path, "expected an object");
        known(v, path + ".", {"index", "value", "valueTwo", "op"});
        Condition c;
        const json *idx = get(v, "index");
        if (!idx) fail(path + ".index", "required field is missing");
        c.index = static_cast<unsigned>(number(*idx, path + ".index", 5));
        if (const json *x = get(v, "value")) c.value = number(*x, path + ".value");
        if (const json *x = get(v, "valueTwo")) c.valueTwo = number(*x, path + ".valueTwo");
        const json *op = get(v, "op");
        if (!op) fail(path + ".op", "required field is missing");
        static const struct {
            const char *name;
            scmp_compare op;
        } ops[] = {{"SCMP_CMP_NE", SCMP_CMP_NE},
                   {"SCMP_CMP_LT", SCMP_CMP_LT},
                   {"SCMP_CMP_LE", SCMP_CMP_LE},
                   {"SCMP_CMP_EQ", SCMP_CMP_EQ},
                   {"SCMP_CMP_GE", SCMP_CMP_GE},
                   {"SCMP_CMP_GT", SCMP_CMP_GT},
                   {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
        std::string name = string(*op, path + ".op");
        for (const auto &o : ops)
            if (name == o.name) {
                c.op = o.op;
                return c;
            }
        fail(path + ".op", quote(name) +
                               " is not a comparison (SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, "
                               "SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ)");
    }

    std::string _what;
};

// ---------------------------------------------------------------------------------------
// Compiling.

bool kernelAtLeast(const int version[2]) {
    const Kernel &k = runningKernel();
    return k.major > version[0] || (k.major == version[0] && k.minor >= version[1]);
}

bool nativeIn(const std::vector<std::string> &arches) {
    return std::any_of(arches.begin(), arches.end(), nativeArchIs);
}

// docker's rule: every `includes` condition must hold, no `excludes` condition may.
bool applies(const Rule &r, uint64_t caps) {
    const Scope &in = r.includes, &ex = r.excludes;
    if (in.anyCaps && (caps & in.caps) != in.caps) return false;
    if (!in.arches.empty() && !nativeIn(in.arches)) return false;
    if (in.minKernel[0] >= 0 && !kernelAtLeast(in.minKernel)) return false;
    if (ex.anyCaps && (caps & ex.caps) != 0) return false;
    if (!ex.arches.empty() && nativeIn(ex.arches)) return false;
    if (ex.minKernel[0] >= 0 && kernelAtLeast(ex.minKernel)) return false;
    return true;
}

struct Context {
    scmp_filter_ctx ctx;
    explicit Context(uint32_t defaultAction) : ctx(seccomp_init(defaultAction)) {}
    ~Context() {
        if (ctx) seccomp_release(ctx);
    }
};

std::string ruleError(int rc) { return std::strerror(rc < 0 ? -rc : rc); }

} // namespace

json resolveSeccompProfile(const json &doc, uint64_t capabilities, const std::string &what) {
    const Profile profile = Parser(what).parse(doc);
    static const struct {
        uint32_t token;
        const char *name;
    } kOciArches[] = {
        {SCMP_ARCH_X86_64, "SCMP_ARCH_X86_64"},   {SCMP_ARCH_X86, "SCMP_ARCH_X86"},
        {SCMP_ARCH_X32, "SCMP_ARCH_X32"},         {SCMP_ARCH_ARM, "SCMP_ARCH_ARM"},
        {SCMP_ARCH_AARCH64, "SCMP_ARCH_AARCH64"}, {SCMP_ARCH_PPC64LE, "SCMP_ARCH_PPC64LE"},
        {SCMP_ARCH_S390, "SCMP_ARCH_S390"},       {SCMP_ARCH_S390X, "SCMP_ARCH_S390X"},
        {SCMP_ARCH_RISCV64, "SCMP_ARCH_RISCV64"},
    };
    json arches = json::array();
    std::vector<uint32_t> tokens = {seccomp_arch_native()};
    tokens.insert(tokens.end(), profile.arches.begin(), profile.arches.end());
    for (uint32_t t : tokens)
        for (const auto &a : kOciArches)
            if (a.token == t && std::find(arches.begin(), arches.end(), a.name) == arches.end())
                arches.push_back(a.name);
    json out = {{"defaultAction", doc["defaultAction"]}, {"architectures", arches}};
    if (doc.contains("defaultErrnoRet")) out["defaultErrnoRet"] = doc["defaultErrnoRet"];
    if (doc.contains("flags")) out["flags"] = doc["flags"];
    json rules = json::array();
    for (size_t i = 0; i < profile.rules.size(); ++i) {
        if (!applies(profile.rules[i], capabilities)) continue;
        json r = doc["syscalls"][i];
        if (r.contains("name")) r["names"] = json::array({r["name"]});
        for (const char *key : {"name", "includes", "excludes", "comment"}) r.erase(key);
        rules.push_back(r);
    }
    out["syscalls"] = rules;
    return out;
}

std::string_view defaultSeccompProfileText() {
    return {reinterpret_cast<const char *>(kDefaultSeccompProfileJson),
            kDefaultSeccompProfileJsonSize};
}

const json &defaultSeccompProfile() {
    static const json profile = json::parse(defaultSeccompProfileText());
    return profile;
}

void checkSeccompProfile(const json &profile, const std::string &what) {
    Parser(what).parse(profile);
}

SeccompProgram compileSeccomp(const json &doc, uint64_t capabilities, const std::string &what) {
    const Profile profile = Parser(what).parse(doc);
    Context c(profile.defaultAction);
    if (!c.ctx) throw Error(MO_E_INTERNAL, what + ": libseccomp could not start a filter");
    seccomp_attr_set(c.ctx, SCMP_FLTATR_CTL_NNP, 0); // set by us, at the right moment
    seccomp_attr_set(c.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    // A binary tree rather than a list: fewer instructions run per syscall.
    seccomp_attr_set(c.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (uint32_t arch : profile.arches) {
        int rc = seccomp_arch_add(c.ctx, arch);
        if (rc < 0 && rc != -EEXIST)
            throw Error(MO_E_INVALID, what + ": cannot filter architecture " +
                                          std::to_string(arch) + ": " + ruleError(rc));
    }
    for (const Rule &r : profile.rules) {
        if (!applies(r, capabilities) || r.action == profile.defaultAction) continue;
        // Several conditions on one argument cannot be ANDed in one libseccomp rule: like
        // runc, each becomes a rule of its own.
        bool repeated = false;
        for (size_t i = 0; i < r.args.size(); ++i)
            for (size_t j = i + 1; j < r.args.size(); ++j)
                repeated = repeated || r.args[i].index == r.args[j].index;
        std::vector<std::vector<scmp_arg_cmp>> sets;
        std::vector<scmp_arg_cmp> all;
        for (const Condition &a : r.args) {
            scmp_arg_cmp cmp = {a.index, a.op, a.value, a.valueTwo};
            if (repeated)
                sets.push_back({cmp});
            else
                all.push_back(cmp);
        }
        if (!repeated) sets.push_back(all);
        for (const std::string &name : r.names) {
            int nr = seccomp_syscall_resolve_name(name.c_str());
            if (nr == __NR_SCMP_ERROR) continue; // newer than this libseccomp
            for (const auto &cmps : sets) {
                int rc = seccomp_rule_add_array(c.ctx, r.action, nr,
                                                static_cast<unsigned>(cmps.size()), cmps.data());
                if (rc < 0 && nr >= 0)
                    throw Error(MO_E_INVALID, what + ": " + r.path + ": cannot add " + quote(name) +
                                                  ": " + ruleError(rc));
            }
        }
    }
    int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0) throw sysError(what + ": export the filter", errno);
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    int rc = seccomp_export_bpf(c.ctx, fd);
    if (rc < 0) throw Error(MO_E_INTERNAL, what + ": export the filter: " + ruleError(rc));
    off_t size = ::lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % sizeof(sock_filter) != 0 ||
        size > static_cast<off_t>(BPF_MAXINSNS * sizeof(sock_filter)))
        throw Error(MO_E_INVALID, what + ": the compiled filter has " +
                                      std::to_string(size / sizeof(sock_filter)) +
                                      " instructions; the kernel takes at most " +
                                      std::to_string(BPF_MAXINSNS));
    SeccompProgram program;
    program.flags = profile.flags;
    program.code.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    if (::pread(fd, program.code.data(), static_cast<size_t>(size), 0) != size)
        throw sysError(what + ": read the exported filter", errno);
    return program;
}

int loadSeccomp(Syscalls &sys, const SeccompProgram &program) noexcept {
    struct sock_fprog prog = {};
    prog.len = static_cast<unsigned short>(program.code.size());
    prog.filter = const_cast<sock_filter *>(program.code.data());
    if (program.flags == 0)
        return sys.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                         reinterpret_cast<unsigned long>(&prog));
    long r = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, program.flags, &prog);
    return r < 0 ? -errno : 0;
}

} // namespace mobileops::nsruntime
