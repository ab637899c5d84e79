// Seccomp profiles, capability sets and the container entry without root: the profile
// parser's errors, the default profile's content, and real filters loaded in forked
// children (no_new_privs lets any user install one) to see what the kernel answers.
#include "Seccomp.h"
#include "Capabilities.h"
#include "Errors.h"
#include "Process.h"
#include "RecordingSyscalls.h"
#include "Security.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace mobileops::nsruntime;
using mobileops::nsruntime::testing::RecordingSyscalls;
using nlohmann::json;

namespace {

std::string profileError(const json &profile) {
    try {
        checkSeccompProfile(profile, "p");
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        return e.what();
    }
    return "accepted";
}

json withRule(json rule) {
    return {{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", json::array({rule})}};
}

// Install `program` in a forked child, run `probe` there and return its exit status.
template <typename Fn> int underFilter(const SeccompProgram &program, Fn &&probe) {
    pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (loadSeccomp(RealSyscalls::instance(), program) < 0) ::_exit(200);
        ::_exit(probe());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// errno of a failed syscall as an exit status; 0 when it succeeded.
int errnoOf(long r) { return r < 0 ? errno : 0; }

const SeccompProgram &defaultProgram() {
    static const SeccompProgram p =
        compileSeccomp(defaultSeccompProfile(), defaultCapabilities(), "default");
    return p;
}

long syscall32(long nr, long a, long b) {
#if defined(__x86_64__)
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r;
#else
    (void)nr, (void)a, (void)b;
    return -ENOSYS;
#endif
}

} // namespace

TEST(SeccompProfile, RefusesWhatIsNotAProfile) {
    EXPECT_EQ(profileError(json::array()), "p: expected a JSON object");
    EXPECT_EQ(profileError(json::object()), "p: defaultAction: required field is missing");
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscall", json::array()}}),
              "p: syscall: unknown field");
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_ALLOW"}, {"syscalls", json::object()}}),
              "p: syscalls: expected an array");
}

TEST(SeccompProfile, RefusesUnknownSyscallNamingIt) {
    EXPECT_EQ(
        profileError(withRule({{"names", {"read", "keyctll"}}, {"action", "SCMP_ACT_ERRNO"}})),
        "p: syscalls[0].names[1]: unknown system call `keyctll`");
    EXPECT_EQ(profileError(withRule({{"name", "nosuchcall"}, {"action", "SCMP_ACT_ERRNO"}})),
              "p: syscalls[0].name: unknown system call `nosuchcall`");
    EXPECT_EQ(profileError(withRule({{"names", json::array()}, {"action", "SCMP_ACT_ERRNO"}})),
              "p: syscalls[0].names: no system call named");
}

TEST(SeccompProfile, RefusesBadAction) {
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_DENY"}}),
              "p: defaultAction: `SCMP_ACT_DENY` is not an action (SCMP_ACT_ALLOW, "
              "SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, "
              "SCMP_ACT_TRAP, SCMP_ACT_TRACE, SCMP_ACT_LOG)");
    EXPECT_EQ(profileError(withRule({{"names", {"read"}}})),
              "p: syscalls[0].action: required field is missing");
    EXPECT_EQ(profileError(withRule({{"names", {"read"}}, {"action", "SCMP_ACT_NOTIFY"}})),
              "p: syscalls[0].action: `SCMP_ACT_NOTIFY`: seccomp user notification is not "
              "supported");
    EXPECT_EQ(profileError(withRule(
                  {{"names", {"read"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 5000}})),
              "p: syscalls[0].errnoRet: expected an integer from 0 to 4095");
}

TEST(SeccompProfile, RefusesBadArgument) {
    json rule = {{"names", {"socket"}},
                 {"action", "SCMP_ACT_ERRNO"},
                 {"args", {{{"index", 0}, {"value", 40}, {"op", "SCMP_CMP_ALMOST"}}}}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].args[0].op: `SCMP_CMP_ALMOST` is not a comparison (SCMP_CMP_NE, "
              "SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, "
              "SCMP_CMP_MASKED_EQ)");
    rule["args"] = {{{"index", 6}, {"value", 1}, {"op", "SCMP_CMP_EQ"}}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].args[0].index: expected an integer from 0 to 5");
    rule["args"] = {{{"index", 0}, {"value", -1}, {"op", "SCMP_CMP_EQ"}}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].args[0].value: expected an integer from 0 to 18446744073709551615");
    rule["args"] = {{{"index", 0}, {"value", 1}}};
    EXPECT_EQ(profileError(withRule(rule)), "p: syscalls[0].args[0].op: required field is missing");
}

TEST(SeccompProfile, RefusesBadScopesAndArchitectures) {
    json rule = {{"names", {"mount"}}, {"action", "SCMP_ACT_ALLOW"}};
    rule["includes"] = {{"caps", {"CAP_SYS_ADMN"}}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].includes.caps[0]: `CAP_SYS_ADMN` is not a capability");
    rule["includes"] = {{"minKernel", "four"}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].includes.minKernel: `four` is not a kernel version such as 5.10");
    rule["includes"] = {{"arches", {"vax"}}};
    EXPECT_EQ(profileError(withRule(rule)),
              "p: syscalls[0].includes.arches[0]: `vax` is not an architecture such as amd64 or "
              "arm64");
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_ALLOW"},
                            {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"}}}),
              "p: architectures[1]: `SCMP_ARCH_PDP11` is not an architecture such as "
              "SCMP_ARCH_X86_64");
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_ALLOW"}, {"flags", {"FLAG_FAST"}}}),
              "p: flags[0]: `FLAG_FAST` is not a seccomp filter flag");
    EXPECT_EQ(profileError({{"defaultAction", "SCMP_ACT_ALLOW"}, {"listenerPath", "/run/x"}}),
              "p: listenerPath: seccomp user notification is not supported");
}

TEST(SeccompProfile, AcceptsTheDockerAndOciForms) {
    json docker = {
        {"defaultAction", "SCMP_ACT_ERRNO"},
        {"defaultErrnoRet", 1},
        {"archMap",
         {{{"architecture", "SCMP_ARCH_X86_64"},
           {"subArchitectures", {"SCMP_ARCH_X86", "SCMP_ARCH_X32"}}}}},
        {"syscalls",
         {{{"names", {"read", "write", "exit_group", "mseal", "statmount"}},
           {"action", "SCMP_ACT_ALLOW"},
           {"args", json::array()},
           {"comment", ""},
           {"includes", json::object()},
           {"excludes", json::object()}},
          {{"name", "clone"},
           {"action", "SCMP_ACT_ALLOW"},
           {"args",
            {{{"index", 0}, {"value", 2114060288}, {"valueTwo", 0}, {"op", "SCMP_CMP_MASKED_EQ"}}}},
           {"excludes", {{"caps", {"CAP_SYS_ADMIN"}}, {"arches", {"s390", "s390x"}}}}},
          {{"names", {"ptrace"}},
           {"action", "SCMP_ACT_ALLOW"},
           {"includes", {{"minKernel", "4.8"}}}}}}};
    EXPECT_EQ(profileError(docker), "accepted");
    json oci = {
        {"defaultAction", "SCMP_ACT_ALLOW"},
        {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86"}},
        {"flags", {"SECCOMP_FILTER_FLAG_SPEC_ALLOW"}},
        {"syscalls", {{{"names", {"keyctl"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}}}}};
    EXPECT_EQ(profileError(oci), "accepted");
    SeccompProgram p = compileSeccomp(oci, defaultCapabilities(), "oci");
    EXPECT_GT(p.code.size(), 3u);
}

TEST(SeccompProfile, DefaultProfileDeniesWithEpermAndDefaultsToEnosys) {
    const json &p = defaultSeccompProfile();
    EXPECT_EQ(profileError(p), "accepted");
    EXPECT_EQ(p["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_EQ(p["defaultErrnoRet"], ENOSYS);
    EXPECT_EQ(p["archMap"][0]["architecture"], "SCMP_ARCH_X86_64");
    EXPECT_EQ(p["archMap"][0]["subArchitectures"], json({"SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
    auto deniedWith = [&](const std::string &name) {
        for (const auto &r : p["syscalls"])
            if (r["action"] == "SCMP_ACT_ERRNO" && !r.contains("args") &&
                std::find(r["names"].begin(), r["names"].end(), name) != r["names"].end())
                return r["errnoRet"].get<int>();
        return 0;
    };
    for (const char *name : {"keyctl", "add_key", "request_key", "kexec_load", "init_module",
                             "finit_module", "delete_module", "bpf", "perf_event_open", "mount",
                             "umount2", "reboot", "swapon", "swapoff", "setns"})
        EXPECT_EQ(deniedWith(name), EPERM) << name;
    EXPECT_EQ(deniedWith("clone3"), ENOSYS);
    SeccompProgram program = defaultProgram();
    EXPECT_GT(program.code.size(), 100u);
    EXPECT_LE(program.code.size(), static_cast<size_t>(BPF_MAXINSNS));
}

TEST(SeccompFilter, DefaultDeniesKeyctlAndNewNamespacesAllowsTheRest) {
    const SeccompProgram &p = defaultProgram();
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::syscall(SYS_keyctl, 0, -3, 0)); }), EPERM);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::unshare(CLONE_NEWUSER)); }), EPERM);
    EXPECT_EQ(
        underFilter(
            p, [] { return errnoOf(::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)); }),
        EPERM);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::syscall(SYS_clone3, nullptr, 0)); }), ENOSYS);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::syscall(457)); }), ENOSYS)
        << "a syscall the profile does not name: ENOSYS, so libc falls back";
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::syscall(SYS_perf_event_open, 0, 0, 0, 0, 0)); }),
              EPERM);
    // ordinary work
    EXPECT_EQ(underFilter(p,
                          [] {
                              pid_t pid = ::fork();
                              if (pid == 0) ::_exit(7);
                              int st = 0;
                              ::waitpid(pid, &st, 0);
                              int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
                              char buf[64];
                              bool ok = fd >= 0 && ::read(fd, buf, sizeof buf) > 0 &&
                                        ::unshare(CLONE_FILES) == 0 && WEXITSTATUS(st) == 7;
                              return ok ? 0 : 1;
                          }),
              0);
}

TEST(SeccompFilter, DefaultFiltersThe32BitAbis) {
#if !defined(__x86_64__)
    GTEST_SKIP() << "x86_64 only";
#else
    const SeccompProgram &p = defaultProgram();
    // getpid through int $0x80 works: the x86 architecture is in the filter (not killed)
    EXPECT_EQ(underFilter(p, [] { return syscall32(20, 0, 0) > 0 ? 0 : 1; }), 0);
    // i386 keyctl (288)
    EXPECT_EQ(underFilter(p, [] { return static_cast<int>(-syscall32(288, 0, -3)); }), EPERM);
    // x32 keyctl
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::syscall(0x40000000L | SYS_keyctl, 0, -3, 0)); }),
              EPERM);
#endif
}

TEST(SeccompFilter, CapabilityConditionalEntries) {
    SeccompProgram admin = compileSeccomp(defaultSeccompProfile(),
                                          defaultCapabilities() | (1ull << CAP_SYS_ADMIN), "d");
    EXPECT_NE(admin.code.size(), defaultProgram().code.size());
    // CAP_SYS_ADMIN opens clone3 to the kernel, which then judges the arguments itself
    EXPECT_NE(underFilter(admin, [] { return errnoOf(::syscall(SYS_clone3, nullptr, 0)); }),
              ENOSYS);
}

TEST(SeccompFilter, CustomProfileErrnoAndArgumentRules) {
    json profile = {
        {"defaultAction", "SCMP_ACT_ALLOW"},
        {"syscalls",
         {{{"names", {"mkdir", "mkdirat"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", EOPNOTSUPP}},
          // two conditions on one argument: either matches (runc's rule)
          {{"names", {"dup3"}},
           {"action", "SCMP_ACT_ERRNO"},
           {"errnoRet", EXDEV},
           {"args",
            {{{"index", 1}, {"value", 50}, {"op", "SCMP_CMP_EQ"}},
             {{"index", 1}, {"value", 51}, {"op", "SCMP_CMP_EQ"}}}}}}}};
    SeccompProgram p = compileSeccomp(profile, defaultCapabilities(), "custom");
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::mkdir("/tmp/never-made", 0700)); }), EOPNOTSUPP);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::dup3(0, 50, 0)); }), EXDEV);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::dup3(0, 51, 0)); }), EXDEV);
    EXPECT_EQ(underFilter(p, [] { return errnoOf(::dup3(0, 52, 0)); }), 0);
}

TEST(Capabilities, DockerRulesForAddAndDrop) {
    const uint64_t base = defaultCapabilities();
    const uint64_t chown = 1ull << CAP_CHOWN, raw = 1ull << CAP_NET_RAW;
    EXPECT_EQ(applyCapabilityChanges(base, {"CHOWN"}, {"ALL"}, "c."), chown);
    EXPECT_EQ(applyCapabilityChanges(base, {}, {"all"}, "c."), 0u);
    EXPECT_EQ(applyCapabilityChanges(base, {"ALL"}, {"net_raw"}, "c."), allCapabilities() & ~raw);
    EXPECT_EQ(applyCapabilityChanges(base, {"cap_net_raw"}, {"CHOWN"}, "c."),
              (base & ~chown) | raw);
    try {
        applyCapabilityChanges(base, {"CHOWN", "CAP_FLY"}, {}, "security.capabilities.");
        FAIL();
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "security.capabilities.add[1]: `CAP_FLY` is not a capability");
    }
    EXPECT_EQ(capabilityNumber("CAP_SYS_ADMIN"), CAP_SYS_ADMIN);
    EXPECT_EQ(capabilityName(CAP_CHECKPOINT_RESTORE), "CAP_CHECKPOINT_RESTORE");
    EXPECT_EQ(capabilityList(chown | raw), "CAP_CHOWN,CAP_NET_RAW");
}

TEST(SecuritySpec, ParseAndResolve) {
    SecuritySpec s = parseSecurity(json::object(), "security.");
    bool nnp = false;
    resolveSecurity(s, nnp);
    EXPECT_TRUE(nnp) << "no_new_privs by default";
    EXPECT_EQ(s.bounding, defaultCapabilities());
    EXPECT_EQ(s.added, 0u);
    ASSERT_TRUE(s.filter);

    s = parseSecurity({{"privileged", true}}, "security.");
    resolveSecurity(s, nnp);
    EXPECT_FALSE(nnp);
    EXPECT_EQ(s.bounding, allCapabilities());
    EXPECT_FALSE(s.filter) << "privileged: unconfined";

    s = parseSecurity(
        {{"privileged", true}, {"noNewPrivileges", true}, {"seccomp", {{"mode", "default"}}}},
        "security.");
    resolveSecurity(s, nnp);
    EXPECT_TRUE(nnp);
    EXPECT_TRUE(s.filter) << "an explicit profile wins over privileged";

    s = parseSecurity({{"capabilities", {{"drop", {"ALL"}}, {"add", {"CAP_CHOWN"}}}}}, "security.");
    resolveSecurity(s, nnp);
    EXPECT_EQ(s.bounding, 1ull << CAP_CHOWN);
    EXPECT_EQ(s.added, 1ull << CAP_CHOWN);
}

TEST(SecuritySpec, ExecPrivilegesKeepTheContainersFilter) {
    SecuritySpec container = parseSecurity({{"capabilities", {{"drop", {"ALL"}}}}}, "security.");
    SecuritySpec exec = parseExecSecurity({{"privileged", true}}, "process.security.", container);
    bool nnp = true;
    resolveSecurity(exec, nnp);
    EXPECT_EQ(exec.bounding, allCapabilities());
    EXPECT_TRUE(exec.filter);
    EXPECT_FALSE(nnp);
}

TEST(SecuritySpec, RefusesBadFieldsNamingThem) {
    auto error = [](const json &doc) {
        try {
            parseSecurity(doc, "security.");
        } catch (const Error &e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(error({{"privileged", "yes"}}), "security.privileged: expected true or false");
    EXPECT_EQ(error({{"capabilities", {{"add", {"CAP_NOPE"}}}}}),
              "security.capabilities.add[0]: `CAP_NOPE` is not a capability");
    EXPECT_EQ(error({{"capabilities", {{"keep", json::array()}}}}),
              "security.capabilities.keep: unknown field");
    EXPECT_EQ(error({{"seccomp", {{"mode", "strict"}}}}),
              "security.seccomp.mode: `strict` is not `default`, `unconfined` or `profile`");
    EXPECT_EQ(error({{"seccomp", {{"mode", "profile"}}}}),
              "security.seccomp.profile: required with mode `profile`");
    EXPECT_EQ(
        error({{"seccomp",
                {{"mode", "profile"},
                 {"source", "/etc/p.json"},
                 {"profile", withRule({{"names", {"nosuch"}}, {"action", "SCMP_ACT_LOG"}})}}}}),
        "seccomp profile `/etc/p.json`: syscalls[0].names[0]: unknown system call `nosuch`");
    EXPECT_EQ(error({{"apparmor", "x"}}), "security.apparmor: unknown field");
}

TEST(Process, NonRootUserGetsAddedCapabilitiesAsAmbient) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"/bin/true"};
    p.user = {1000, 1000, {}, "/"};
    p.security = parseSecurity({{"capabilities", {{"add", {"NET_ADMIN"}}}}}, "security.");
    resolveSecurity(p.security, p.noNewPrivileges);
    p.security.filter.reset(); // the fake cannot take a filter
    applyProcessSettings(sys, p);
    const std::string admin = std::to_string(1ull << CAP_NET_ADMIN);
    int keep = sys.indexOf("prctl " + std::to_string(PR_SET_KEEPCAPS) + " 1");
    int uid = sys.indexOf("setresuid 1000");
    int caps = sys.indexOf("capset " + admin + " " + admin + " " + admin);
    int clear = sys.indexOf("prctl " + std::to_string(PR_CAP_AMBIENT) + " " +
                            std::to_string(PR_CAP_AMBIENT_CLEAR_ALL));
    int raise = sys.indexOf("prctl " + std::to_string(PR_CAP_AMBIENT) + " " +
                            std::to_string(PR_CAP_AMBIENT_RAISE));
    ASSERT_GE(keep, 0);
    EXPECT_LT(keep, uid);
    EXPECT_LT(uid, caps);
    EXPECT_LT(caps, clear);
    EXPECT_LT(clear, raise);
    EXPECT_TRUE(sys.has("prctl " + std::to_string(PR_SET_NO_NEW_PRIVS) + " 1"));
    const std::string notDumpable = "prctl " + std::to_string(PR_SET_DUMPABLE) + " 0";
    EXPECT_EQ(sys.calls.front(), notDumpable) << "not dumpable before anything else";
    EXPECT_EQ(sys.calls.back(), notDumpable) << "again after the uid change reset it";
}

TEST(Process, EntryReportGetsTheErrorText) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    writeReport(p[1], -EACCES, kExitCannotExec, "exec `/etc/passwd`: ");
    ::close(p[1]);
    ChildReport r;
    ASSERT_TRUE(readReport(p[0], r));
    EXPECT_STREQ(r.message, "exec `/etc/passwd`: Permission denied");
    ::close(p[0]);
}

TEST(SecuritySpec, CVE_2019_5736_EntryIsASealedMemfd) {
    if (kEntryBinarySize == 0) GTEST_SKIP() << "no container entry on this architecture";
    int fd = entryFd();
    ASSERT_GE(fd, 0) << std::strerror(-fd);
    EXPECT_EQ(entryFd(), fd) << "made once per process";
    int seals = ::fcntl(fd, F_GET_SEALS);
    EXPECT_EQ(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
              F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    // Reopened through /proc as a container would through /proc/<pid>/exe: no writes.
    int w = ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_WRONLY | O_CLOEXEC);
    if (w >= 0) {
        EXPECT_EQ(::write(w, "x", 1), -1);
        EXPECT_EQ(errno, EPERM);
        EXPECT_EQ(::ftruncate(w, 0), -1);
        ::close(w);
    }
    // Run with no arguments it refuses to do anything.
    pid_t pid = ::fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, 2);
        char *argv[] = {const_cast<char *>("entry"), nullptr};
        char *envp[] = {nullptr};
        ::syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
        ::_exit(99);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 126);
}
