#include "Libkrun.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>
#include <mobileops/common/rlimits.h>

#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <type_traits>

namespace mobileops::krun {

using common::Error;
using common::quote;

namespace {

// Signatures as in libkrun's include/libkrun.h. krun_add_virtiofs3 is the only way to share
// a directory read-only, for a volume or, with KRUN_FS_ROOT_TAG, the root. krun_set_env is
// not looked up: krun_set_exec takes the environment too.
struct Calls {
    int32_t (*createCtx)() = nullptr;
    int32_t (*freeCtx)(uint32_t) = nullptr;
    int32_t (*setVmConfig)(uint32_t, uint8_t, uint32_t) = nullptr;
    int32_t (*setRoot)(uint32_t, const char *) = nullptr;
    int32_t (*setWorkdir)(uint32_t, const char *) = nullptr;
    int32_t (*setExec)(uint32_t, const char *, const char *const[], const char *const[]) = nullptr;
    int32_t (*startEnter)(uint32_t) = nullptr;
    int32_t (*addVirtiofs)(uint32_t, const char *, const char *) = nullptr;
    int32_t (*addVirtiofs3)(uint32_t, const char *, const char *, uint64_t, bool) = nullptr;
    int32_t (*setPortMap)(uint32_t, const char *const[]) = nullptr;
    int32_t (*setRlimits)(uint32_t, const char *const[]) = nullptr;
    int32_t (*setLogLevel)(uint32_t) = nullptr;
};

} // namespace

struct Libkrun::Api : Calls {};

namespace {

constexpr const char *kRootTag = "/dev/root"; // KRUN_FS_ROOT_TAG
constexpr uint32_t kLogError = 1;             // KRUN_LOG_LEVEL_ERROR

// Everything the child passes to libkrun, built before fork so the child allocates nothing
// of its own between fork and krun_start_enter.
struct Plan {
    uint8_t vcpus = 0;
    uint32_t ramMib = 0;
    std::string rootfs, cwd;
    bool rootReadOnly = false;
    std::string execPath;
    std::deque<std::string> strings; // storage behind the pointer arrays below: a deque
                                     // never moves its elements
    std::vector<const char *> argv, envp, rlimits;
    struct Share {
        std::string tag, path;
        bool readOnly;
    };
    std::vector<Share> shares;
    unsigned alarmSeconds = 0;
};

std::string unavailable(const std::string &why) { return "libkrun support not available: " + why; }

int rlimitResource(const std::string &name) {
    int resource = mo_rlimit_resource(name.c_str());
    if (resource < 0) throw Error(MO_E_INVALID, "rlimit " + quote(name) + ": unknown resource");
    return resource;
}

// libkrun's init hands these to setrlimit(2) in the guest: "RESOURCE=SOFT:HARD" with the
// numeric RLIMIT_* id and RLIM_INFINITY for unlimited.
std::string rlimitString(const VmRlimit &limit) {
    int resource = rlimitResource(limit.name);
    auto value = [&](int64_t v, const char *which) -> rlim_t {
        if (v == -1) return RLIM_INFINITY;
        if (v < 0)
            throw Error(MO_E_INVALID, "rlimit " + quote(limit.name) + ": " + which + " limit " +
                                          quote(std::to_string(v)) + " is negative");
        return static_cast<rlim_t>(v);
    };
    rlim_t soft = value(limit.soft, "soft"), hard = value(limit.hard, "hard");
    if (soft > hard)
        throw Error(MO_E_INVALID, "rlimit " + quote(limit.name) + ": soft limit " +
                                      quote(std::to_string(limit.soft)) + " exceeds hard limit " +
                                      quote(std::to_string(limit.hard)));
    return std::to_string(resource) + "=" + std::to_string(soft) + ":" + std::to_string(hard);
}

void requireDirectory(const std::string &what, const std::string &path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw Error(MO_E_INVALID, what + " " + quote(path) + ": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode))
        throw Error(MO_E_INVALID, what + " " + quote(path) + ": not a directory");
}

const char *keep(Plan &plan, std::string s) {
    plan.strings.push_back(std::move(s));
    return plan.strings.back().c_str();
}

Plan makePlan(const VmConfig &config, bool hasVirtiofs3) {
    if (config.args.empty())
        throw Error(MO_E_INVALID, "args: empty: the VM needs a program to run");
    requireDirectory("rootfs", config.rootfs);
    if (config.vcpus < 1 || config.vcpus > UINT8_MAX)
        throw Error(MO_E_INVALID,
                    "vcpus " + quote(std::to_string(config.vcpus)) + ": libkrun takes 1 to 255");
    constexpr uint64_t MiB = 1 << 20;
    uint64_t mib = config.memory / MiB + (config.memory % MiB != 0);
    if (mib < 1 || mib > UINT32_MAX)
        throw Error(MO_E_INVALID,
                    "memory " + quote(std::to_string(config.memory)) + ": out of libkrun's range");
    // libkrun's init runs the program as the guest's root and has no way to be told
    // otherwise; running a non-root user as root would be worse than refusing.
    if (config.uid != 0 || config.gid != 0)
        throw Error(MO_E_UNSUPPORTED,
                    "libkrun runs the program as root: user " +
                        quote(std::to_string(config.uid) + ":" + std::to_string(config.gid)) +
                        " is not supported");
    // Its init writes no sysctl; capabilities, no_new_privs, the seccomp filter and the
    // umask it cannot apply either (docs/vm.md): the guest kernel is the boundary there.
    if (!config.sysctls.empty())
        throw Error(MO_E_UNSUPPORTED, "libkrun's init cannot set sysctls in the guest (" +
                                          quote(config.sysctls.front().first) + ")");
    if (config.rootReadOnly && !hasVirtiofs3)
        throw Error(MO_E_UNSUPPORTED,
                    "a read-only root needs krun_add_virtiofs3, which this libkrun lacks");

    Plan plan;
    plan.vcpus = static_cast<uint8_t>(config.vcpus);
    plan.ramMib = static_cast<uint32_t>(mib);
    plan.rootfs = config.rootfs;
    plan.rootReadOnly = config.rootReadOnly;
    plan.cwd = config.cwd.empty() ? "/" : config.cwd;
    // krun_set_exec takes the program apart from its arguments: the guest's init puts
    // exec_path back in argv[0].
    plan.execPath = config.args.front();
    for (size_t i = 1; i < config.args.size(); ++i) plan.argv.push_back(keep(plan, config.args[i]));
    plan.argv.push_back(nullptr);
    // Always a non-null envp: libkrun fills a null one from the host's environment.
    bool hasHostname = false;
    for (const auto &e : config.env) {
        plan.envp.push_back(keep(plan, e));
        hasHostname = hasHostname || e.rfind("HOSTNAME=", 0) == 0;
    }
    // libkrun's init takes the guest's hostname from $HOSTNAME.
    if (!config.hostname.empty() && !hasHostname)
        plan.envp.push_back(keep(plan, "HOSTNAME=" + config.hostname));
    plan.envp.push_back(nullptr);
    for (const auto &limit : config.rlimits)
        plan.rlimits.push_back(keep(plan, rlimitString(limit)));
    plan.rlimits.push_back(nullptr);

    for (size_t i = 0; i < config.mounts.size(); ++i) {
        const auto &m = config.mounts[i];
        requireDirectory("volume", m.source);
        if (m.readOnly && !hasVirtiofs3)
            throw Error(MO_E_UNSUPPORTED,
                        "read-only volume " + quote(m.target) +
                            " needs krun_add_virtiofs3, which this libkrun lacks");
        plan.shares.push_back({"mo-vol" + std::to_string(i), m.source, m.readOnly});
    }
    auto seconds = config.timeout.count();
    if (seconds > 0)
        plan.alarmSeconds = static_cast<unsigned>(std::min<int64_t>(seconds, UINT_MAX));
    return plan;
}

// In the forked child: report a failed krun_* call and end with 125, the status libkrun
// itself uses when the VM cannot be set up. Only write(2): the parent's stdio buffers are
// not ours to flush.
[[noreturn]] void fail(const char *call, int32_t r) {
    char line[256];
    int n = std::snprintf(line, sizeof line, "libkrun: %s: %s\n", call, std::strerror(-r));
    if (n > 0) {
        ssize_t ignored =
            ::write(2, line, std::min<size_t>(static_cast<size_t>(n), sizeof line - 1));
        (void)ignored;
    }
    ::_exit(125);
}

void call(int32_t r, const char *name) {
    if (r < 0) fail(name, r);
}

// The child: configure the context created by the parent and become the VM. Never returns.
[[noreturn]] void enter(const Calls &api, uint32_t ctx, const Plan &plan) {
    // The caller may block signals for a signalfd; the VMM must die of the usual ones.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (api.setLogLevel) call(api.setLogLevel(kLogError), "krun_set_log_level");
    call(api.setVmConfig(ctx, plan.vcpus, plan.ramMib), "krun_set_vm_config");
    if (plan.rootReadOnly)
        call(api.addVirtiofs3(ctx, kRootTag, plan.rootfs.c_str(), 0, true), "krun_add_virtiofs3");
    else
        call(api.setRoot(ctx, plan.rootfs.c_str()), "krun_set_root");
    call(api.setWorkdir(ctx, plan.cwd.c_str()), "krun_set_workdir");
    call(api.setExec(ctx, plan.execPath.c_str(), plan.argv.data(), plan.envp.data()),
         "krun_set_exec");
    // libkrun's own init mounts no share but the root: the tags are for the guest to mount.
    for (const auto &s : plan.shares) {
        if (s.readOnly)
            call(api.addVirtiofs3(ctx, s.tag.c_str(), s.path.c_str(), 0, true),
                 "krun_add_virtiofs3");
        else
            call(api.addVirtiofs(ctx, s.tag.c_str(), s.path.c_str()), "krun_add_virtiofs");
    }
    // Without a port map libkrun exposes every port the guest listens on; an empty one
    // exposes none, as for a namespace container that publishes nothing.
    const char *const noPorts[] = {nullptr};
    if (api.setPortMap) call(api.setPortMap(ctx, noPorts), "krun_set_port_map");
    if (plan.rlimits.size() > 1) call(api.setRlimits(ctx, plan.rlimits.data()), "krun_set_rlimits");
    // krun_start_enter does not return while the VM runs, so the hard limit on the VM's
    // life is an alarm in the process that becomes the VMM.
    ::signal(SIGALRM, SIG_DFL);
    if (plan.alarmSeconds) ::alarm(plan.alarmSeconds);
    fail("krun_start_enter", api.startEnter(ctx));
}

} // namespace

Libkrun::Libkrun(const std::string &library) {
    _handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!_handle) {
        const char *err = ::dlerror();
        std::string why = err ? err : "";
        // Only the library itself missing is "not found"; a missing dependency of it is
        // named by dlerror in the same words, but for the dependency.
        if (why.rfind(library + ": cannot open shared object file: No such file", 0) == 0)
            throw Error(MO_E_UNSUPPORTED, unavailable(library + " not found"));
        throw Error(MO_E_UNSUPPORTED, unavailable("cannot load " + library + ": " + why));
    }
    auto api = std::make_unique<Api>();
    auto lookup = [&](auto &fn, const char *name, bool required) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(_handle, name));
        if (!fn && required) {
            ::dlclose(_handle);
            _handle = nullptr;
            throw Error(MO_E_UNSUPPORTED, unavailable(library + " lacks " + quote(name) +
                                                      ": too old or not libkrun"));
        }
    };
    lookup(api->createCtx, "krun_create_ctx", true);
    lookup(api->freeCtx, "krun_free_ctx", true);
    lookup(api->setVmConfig, "krun_set_vm_config", true);
    lookup(api->setRoot, "krun_set_root", true);
    lookup(api->setWorkdir, "krun_set_workdir", true);
    lookup(api->setExec, "krun_set_exec", true);
    lookup(api->startEnter, "krun_start_enter", true);
    lookup(api->addVirtiofs, "krun_add_virtiofs", false);
    lookup(api->addVirtiofs3, "krun_add_virtiofs3", false);
    lookup(api->setPortMap, "krun_set_port_map", false);
    lookup(api->setRlimits, "krun_set_rlimits", false);
    lookup(api->setLogLevel, "krun_set_log_level", false);
    _api = api.release();
}

Libkrun::~Libkrun() {
    delete _api;
    if (_handle) ::dlclose(_handle);
}

std::pair<bool, std::string> Libkrun::probe(const std::string &library) {
    try {
        Libkrun lib(library);
    } catch (const Error &e) {
        return {false, e.what()};
    }
    // libkrun runs its guests on KVM only; without it every start would fail.
    if (::access("/dev/kvm", R_OK | W_OK) != 0)
        return {false, unavailable("/dev/kvm: " + std::string(std::strerror(errno)))};
    return {true, library + " loaded and /dev/kvm present"};
}

pid_t Libkrun::start(const VmConfig &config) {
    if (!config.mounts.empty() && !_api->addVirtiofs)
        throw Error(MO_E_UNSUPPORTED, "volumes need krun_add_virtiofs, which this libkrun lacks");
    if (!config.rlimits.empty() && !_api->setRlimits)
        throw Error(MO_E_UNSUPPORTED, "rlimits need krun_set_rlimits, which this libkrun lacks");
    Plan plan = makePlan(config, _api->addVirtiofs3 != nullptr);

    // Created here, before the caller enters any namespace, as libkrun wants it.
    int32_t ctx = _api->createCtx();
    if (ctx < 0) throw common::sysError("libkrun: krun_create_ctx", -ctx);
    pid_t pid = ::fork();
    if (pid == 0) enter(*_api, static_cast<uint32_t>(ctx), plan);
    int forkErr = errno;
    // The child has its own copy of the context; this one is the parent's to release.
    _api->freeCtx(static_cast<uint32_t>(ctx));
    if (pid < 0) throw common::sysError("libkrun: fork", forkErr);
    return pid;
}

} // namespace mobileops::krun
