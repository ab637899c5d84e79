// Container security end to end (real root, busybox rootfs): seccomp, capabilities,
// no_new_privs, privileged mode, exec, and regression tests named after the CVEs they
// guard against. A static probe (probe/SecurityProbe.c) inside the rootfs makes the
// syscalls and prints what the kernel answered.
#include "Exec.h"
#include "Launcher.h"
#include "ProcFs.h"
#include "Process.h"
#include "TestSupport.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <filesystem>
#include <fstream>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using nlohmann::json;

namespace {

const char *const kProbe = "/bin/security-probe";
const char *const kSuidProbe = "/bin/security-probe-suid";

// The shared rootfs, plus the probe and a setuid-root copy of it.
class SecurityEnvironment : public RootfsEnvironment {
public:
    void SetUp() override {
        RootfsEnvironment::SetUp();
        if (rootfsPath().empty()) return;
        namespace fs = std::filesystem;
        std::error_code ec;
        for (const char *to : {kProbe, kSuidProbe})
            fs::copy_file(SECURITY_PROBE_PATH, rootfsPath() + to,
                          fs::copy_options::overwrite_existing, ec);
        fs::create_directories(rootfsPath() + "/mnt", ec);
        ::chown((rootfsPath() + kSuidProbe).c_str(), 0, 0);
        ::chmod((rootfsPath() + kSuidProbe).c_str(), 04755);
        if (ec) rootfsPath().clear();
    }
};

using Output = Captured;

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// The capability lines of /proc/self/status in kernel order.
std::string capLines(uint64_t inh, uint64_t prm, uint64_t eff, uint64_t bnd, uint64_t amb) {
    return "CapInh:\t" + hex(inh) + "\nCapPrm:\t" + hex(prm) + "\nCapEff:\t" + hex(eff) +
           "\nCapBnd:\t" + hex(bnd) + "\nCapAmb:\t" + hex(amb) + "\n";
}

const std::string kStatusLines = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status";

// A descriptor deliberately leaked into whatever this process starts: no CLOEXEC.
struct LeakedFd {
    int fd;
    explicit LeakedFd(const char *path) : fd(::open(path, O_RDONLY | O_DIRECTORY)) {}
    ~LeakedFd() { ::close(fd); }
};

class Security : public ::testing::Test {
protected:
    void SetUp() override { REQUIRE_ROOT_AND_ROOTFS(); }
    void TearDown() override {
        if (rootfsPath().empty() || ::geteuid() != 0) return;
        EXPECT_EQ(hostMountsUnder(rootfsPath()), 0) << "a mount leaked into the host namespace";
        EXPECT_TRUE(noChildren()) << "a container process was left behind";
    }

    json spec(std::vector<std::string> args, json extra = json::object()) {
        json j = {{"rootfs", rootfsPath()}, {"hostname", "sectest"}, {"process", {{"args", args}}}};
        j.merge_patch(extra);
        return j;
    }
    ContainerSpec prepared(const json &j) {
        ContainerSpec s = parseSpec(j);
        prepareSpec(s);
        return s;
    }
    Output run(const json &j) { return runCaptured(prepared(j)); }
    Output probe(const std::string &verb, json extra = json::object()) {
        return run(spec({kProbe, verb}, extra));
    }
    Output sh(const std::string &script, json extra = json::object()) {
        return run(spec({"/bin/sh", "-c", script}, extra));
    }

    // A running container (sleep) for exec tests; killed and reaped by the destructor.
    struct Running {
        ChildProcess init;
        ContainerSpec spec;
        ~Running() {
            init.kill(SIGKILL);
            init.wait();
        }
        Output exec(std::vector<std::string> args, json processExtra = json::object(),
                    const std::function<void(pid_t)> &afterClone = {}) {
            json p = {{"args", args}};
            p.merge_patch(processExtra);
            ProcessSpec defaults = spec.process;
            ProcessSpec process = parseProcess(p, defaults);
            prepareProcess(process, spec.rootfs);
            Capture out, err;
            Stdio stdio;
            stdio.out = out.fd;
            stdio.err = err.fd;
            Output r;
            r.status = execInContainer(RealSyscalls::instance(), init.pid(),
                                       processStartTime(init.pid()).value_or(0), process, stdio,
                                       afterClone);
            r.out = out.text();
            r.err = err.text();
            return r;
        }
    };
    std::unique_ptr<Running> start(json extra = json::object()) {
        auto r = std::make_unique<Running>();
        // Exec uses the spec as recorded: parsed, not prepared (as Runtime::exec).
        json j = spec({"/bin/sleep", "60"}, extra);
        r->spec = parseSpec(j);
        ContainerSpec launched = prepared(j);
        ChildIo io;
        r->init = launch(RealSyscalls::instance(), launched, io);
        return r;
    }
};

} // namespace

TEST_F(Security, SeccompDefaultDeniesKeyctlWithEperm) {
    auto r = probe("keyctl");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "errno 1\n");
    EXPECT_EQ(sh(kStatusLines + " | grep -E 'NoNew|Seccomp'").out, "NoNewPrivs:\t1\nSeccomp:\t2\n");
}

TEST_F(Security, SeccompFiltersThe32BitAbis) {
#if !defined(__x86_64__)
    GTEST_SKIP() << "x86_64 only";
#endif
    EXPECT_EQ(probe("getpid32").out, "ok\n") << "the x86 ABI is in the filter, not killed";
    EXPECT_EQ(probe("keyctl32").out, "errno 1\n");
    EXPECT_EQ(probe("keyctlx32").out, "errno 1\n");
}

TEST_F(Security, SeccompAllowsNormalPrograms) {
    auto r = sh("ls / > /dev/null && wc -l < /etc/passwd > /dev/null && date > /dev/null && "
                "echo a | sed s/a/b/ && (sleep 0; true) && " +
                std::string(kProbe) + " fork && " + kProbe + " unshare-files && " + kProbe +
                " personality");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "b\nok\nok\nok\n");
}

TEST_F(Security, SeccompRefusesNewNamespacesAndMounts) {
    EXPECT_EQ(probe("unshare-user").out, "errno 1\n");
    EXPECT_EQ(probe("clone-user").out, "errno 1\n");
    EXPECT_EQ(probe("clone3").out, "errno 38\n") << "ENOSYS: glibc falls back to clone";
    EXPECT_EQ(probe("mount").out, "errno 1\n");
    EXPECT_EQ(probe("newer").out, "errno 38\n") << "syscalls the profile does not name";
}

TEST_F(Security, CapSysAdminOpensMountAndNamespaces) {
    json admin = {{"security", {{"capabilities", {{"add", {"CAP_SYS_ADMIN"}}}}}}};
    EXPECT_EQ(probe("mount", admin).out, "ok\n");
    EXPECT_EQ(probe("unshare-user", admin).out, "ok\n");
}

TEST_F(Security, SeccompUnconfinedHasNoFilter) {
    auto r = sh(kStatusLines + " | grep Seccomp:",
                {{"security", {{"seccomp", {{"mode", "unconfined"}}}}}});
    EXPECT_EQ(r.out, "Seccomp:\t0\n");
    EXPECT_NE(probe("keyctl", {{"security", {{"seccomp", {{"mode", "unconfined"}}}}}}).out,
              "errno 1\n");
}

TEST_F(Security, SeccompCustomProfile) {
    json profile = {{"defaultAction", "SCMP_ACT_ALLOW"},
                    {"syscalls",
                     {{{"names", {"mkdir", "mkdirat"}},
                       {"action", "SCMP_ACT_ERRNO"},
                       {"errnoRet", EOPNOTSUPP}}}}};
    auto r = sh("ls / > /dev/null && echo listed; mkdir /dev/shm/x",
                {{"security", {{"seccomp", {{"mode", "profile"}, {"profile", profile}}}}}});
    EXPECT_EQ(r.out, "listed\n");
    EXPECT_NE(r.err.find("Operation not supported"), std::string::npos) << r.err;
    EXPECT_EQ(
        probe("keyctl", {{"security", {{"seccomp", {{"mode", "profile"}, {"profile", profile}}}}}})
            .out,
        "ok\n")
        << "only the profile's rules apply";
}

TEST_F(Security, SeccompBadProfileRefusedBeforeCloning) {
    json bad = {{"defaultAction", "SCMP_ACT_ERRNO"},
                {"syscalls", {{{"names", {"read", "keyctll"}}, {"action", "SCMP_ACT_ALLOW"}}}}};
    try {
        prepared(
            spec({"/bin/true"},
                 {{"security",
                   {{"seccomp",
                     {{"mode", "profile"}, {"profile", bad}, {"source", "/etc/bad.json"}}}}}}));
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_STREQ(e.what(),
                     "seccomp profile `/etc/bad.json`: syscalls[0].names[1]: unknown system call "
                     "`keyctll`");
    }
}

TEST_F(Security, CapabilitySetsMatchTheRequest) {
    const uint64_t def = defaultCapabilities(), all = allCapabilities();
    const uint64_t chown = 1ull << CAP_CHOWN, admin = 1ull << CAP_NET_ADMIN;
    auto caps = [&](json extra) { return sh(kStatusLines + " | grep ^Cap", extra).out; };
    EXPECT_EQ(caps(json::object()), capLines(0, def, def, def, 0)) << "root: podman's default set";
    EXPECT_EQ(caps({{"security", {{"capabilities", {{"drop", {"ALL"}}, {"add", {"CAP_CHOWN"}}}}}}}),
              capLines(0, chown, chown, chown, 0));
    EXPECT_EQ(caps({{"security", {{"capabilities", {{"add", {"CAP_NET_ADMIN"}}}}}}}),
              capLines(0, def | admin, def | admin, def | admin, 0));
    // Another user: nothing unless added; what is added is also inheritable and ambient.
    json user = {{"process", {{"user", {{"uid", 1000}, {"gid", 1000}}}}}};
    EXPECT_EQ(caps(user), capLines(0, 0, 0, def, 0));
    user["security"] = {{"capabilities", {{"add", {"CAP_NET_ADMIN"}}}}};
    EXPECT_EQ(caps(user), capLines(admin, admin, admin, def | admin, admin));
    EXPECT_EQ(caps({{"security", {{"privileged", true}}}}), capLines(0, all, all, all, 0));
}

TEST_F(Security, CapDropAllPreventsChown) {
    std::string script = "touch /dev/shm/f && " + std::string(kProbe) + " chown /dev/shm/f 1";
    EXPECT_EQ(sh(script).out, "ok\n");
    EXPECT_EQ(sh(script, {{"security", {{"capabilities", {{"drop", {"ALL"}}}}}}}).out, "errno 1\n");
}

TEST_F(Security, NoNewPrivsBlocksSetuidEscalation) {
    json user = {{"process", {{"user", {{"uid", 1000}, {"gid", 1000}}}}}};
    auto r = run(spec({kSuidProbe, "euid"}, user));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1000\n") << "no_new_privs is on by default";
    user["security"] = {{"noNewPrivileges", false}};
    EXPECT_EQ(run(spec({kSuidProbe, "euid"}, user)).out, "0\n")
        << "the setuid bit works when asked for (the test means something)";
}

TEST_F(Security, PrivilegedHasNoFilterAndNoMaskedPaths) {
    auto r = sh(kStatusLines + " | grep -E 'NoNew|Seccomp'; wc -c < /proc/timer_list | "
                               "grep -qv '^0$' && echo unmasked; echo x > /proc/sys/kernel/nosuch "
                               "2>&1 | grep -c 'Read-only'",
                {{"security", {{"privileged", true}}}});
    EXPECT_EQ(r.out, "NoNewPrivs:\t0\nSeccomp:\t0\nunmasked\n0\n") << r.err;
    EXPECT_EQ(sh("wc -c < /proc/timer_list").out, "0\n") << "masked without --privileged";
}

TEST_F(Security, ExecGetsTheContainersSettings) {
    auto c = start({{"security", {{"capabilities", {{"drop", {"ALL"}}, {"add", {"CAP_KILL"}}}}}}});
    const uint64_t kill = 1ull << CAP_KILL;
    auto r = c->exec({"/bin/sh", "-c", kStatusLines});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, capLines(0, kill, kill, kill, 0) + "NoNewPrivs:\t1\nSeccomp:\t2\n");
    EXPECT_EQ(c->exec({kProbe, "keyctl"}).out, "errno 1\n");
    // exec --privileged: every capability, the container's filter stays
    r = c->exec({"/bin/sh", "-c", kStatusLines + " | grep -E 'CapEff|NoNew|Seccomp'"},
                {{"security", {{"privileged", true}}}});
    EXPECT_EQ(r.out, "CapEff:\t" + hex(allCapabilities()) + "\nNoNewPrivs:\t0\nSeccomp:\t2\n");
    r = c->exec({"/bin/sh", "-c", kStatusLines + " | grep CapEff"},
                {{"security", {{"capabilities", {{"add", {"CAP_CHOWN"}}}}}}});
    EXPECT_EQ(r.out, "CapEff:\t" + hex(kill | (1ull << CAP_CHOWN)) + "\n");
}

TEST_F(Security, CVE_2019_5736_HostBinaryNotWritable) {
    // The classic vector: the container's command is /proc/self/exe, which in the process
    // that entered the container was the host's runtime binary (here: this test binary).
    auto r = run(spec({"/proc/self/exe", "--gtest_list_tests"}));
    EXPECT_EQ(r.status, 126);
    EXPECT_EQ(r.out.find("Security."), std::string::npos) << "the host binary ran inside";
    EXPECT_NE(r.err.find("container entry: not a command"), std::string::npos) << r.err;
    auto c = start();
    r = c->exec({"/proc/self/exe", "--gtest_list_tests"});
    EXPECT_EQ(r.status, 126);
    EXPECT_EQ(r.out.find("Security."), std::string::npos) << "the host binary ran inside";
}

TEST_F(Security, CVE_2019_5736_RuntimeProcessNotReachable) {
    // With --init, PID 1 stays the runtime's own image (the host's binary) for the
    // container's life, with the container's capabilities: a container process must not
    // open its /proc/1/exe (then write the binary once it is free). The same applies to
    // every process between entering the container and the exec.
    auto r = run(spec({kProbe, "open-exe", "1"}, {{"process", {{"init", true}}}}));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "errno 13\n") << "the runtime process inside was dumpable";
    auto sibling = sh(std::string(kProbe) + " open-exe $$", {{"process", {{"init", true}}}});
    EXPECT_EQ(sibling.out, "ok\n") << "a dumpable process is reachable: the check means something";
    // exec'd into a container with --init: the same from the exec side
    auto c = start({{"process", {{"init", true}}}});
    EXPECT_EQ(c->exec({kProbe, "open-exe", "1"}).out, "errno 13\n");
    EXPECT_EQ(::prctl(PR_GET_DUMPABLE), 1) << "the caller got its dumpability back";
}

TEST_F(Security, CVE_2024_21626_NoLeakedFds) {
    LeakedFd dir("/"), tmp("/tmp");
    ASSERT_GE(dir.fd, 0);
    auto r = probe("fds");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0 1 2\n");
    auto c = start();
    r = c->exec({kProbe, "fds"});
    EXPECT_EQ(r.out, "0 1 2\n");
    r = c->exec({kProbe, "fds"}, {{"terminal", true}});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.substr(0, 5), "0 1 2") << "a terminal exec, through the pty";
}

TEST_F(Security, CVE_2024_21626_WorkdirOutsideRootRefused) {
    LeakedFd dir("/tmp");
    ASSERT_GE(dir.fd, 0);
    const std::string cwd = "/proc/self/fd/" + std::to_string(dir.fd);
    const std::string expected = "cwd `" + cwd + "` is outside the container's root filesystem";
    try {
        run(spec({"/bin/pwd"}, {{"process", {{"cwd", cwd}}}}));
        FAIL() << "a cwd through a leaked fd was accepted";
    } catch (const LaunchError &e) {
        EXPECT_EQ(e.exitStatus(), 125);
        EXPECT_EQ(std::string(e.what()), expected);
    }
    auto c = start();
    try {
        c->exec({"/bin/pwd"}, {{"cwd", cwd}});
        FAIL() << "a cwd through a leaked fd was accepted by exec";
    } catch (const LaunchError &e) {
        EXPECT_EQ(std::string(e.what()), expected);
    }
}

// ---------------------------------------------------------------------------------------
// The flags through `mobileops container` (dispatcher, workflow script, core, plugin).

namespace {

class SecurityCli : public ::testing::Test {
protected:
    void SetUp() override { REQUIRE_ROOT_AND_ROOTFS(); }
    void TearDown() override {
        if (rootfsPath().empty() || ::geteuid() != 0) return;
        mo({"container", "delete", "--force", "sec-cli"});
    }
    mobileops::test::Result mo(std::vector<std::string> args) {
        args.insert(args.begin(), mobileops::test::dispatcher());
        return mobileops::test::run(args, {{"MOBILEOPS_ROOT", _tmp.path() + "/root"},
                                           {"MOBILEOPS_RUN", _tmp.path() + "/run"},
                                           {"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    }
    mobileops::test::Result runIn(std::vector<std::string> flags, std::vector<std::string> cmd) {
        std::vector<std::string> args{"container", "run", "--rm"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.push_back(rootfsPath());
        args.insert(args.end(), cmd.begin(), cmd.end());
        return mo(args);
    }
    mobileops::test::TempDir _tmp;
};

} // namespace

TEST_F(SecurityCli, CapabilityFlags) {
    auto r = runIn({"--cap-drop", "ALL", "--cap-add", "chown"},
                   {"/bin/sh", "-c", "grep -E 'CapEff|CapBnd' /proc/self/status"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "CapEff:\t0000000000000001\nCapBnd:\t0000000000000001\n");
    r = runIn({"--cap-add", "CAP_NOPE"}, {"/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("invalid --cap-add `CAP_NOPE`"), std::string::npos) << r.err;
}

TEST_F(SecurityCli, PrivilegedWarnsLoudly) {
    auto r = runIn({"--privileged"}, {"/bin/sh", "-c", "grep Seccomp: /proc/self/status"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "Seccomp:\t0\n");
    EXPECT_NE(r.err.find("warning: PRIVILEGED"), std::string::npos) << r.err;
    EXPECT_EQ(runIn({}, {"/bin/true"}).err, "") << "no warning without it";
}

TEST_F(SecurityCli, SecurityOpts) {
    auto r =
        runIn({"--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges=false"},
              {"/bin/sh", "-c", "grep -E 'NoNew|Seccomp:' /proc/self/status"});
    EXPECT_EQ(r.out, "NoNewPrivs:\t0\nSeccomp:\t0\n") << r.err;
    std::string good = _tmp.file("good.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]})");
    r = runIn({"--security-opt", "seccomp=" + good}, {"/bin/mkdir", "/dev/shm/x"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("Operation not supported"), std::string::npos) << r.err;
    std::string bad = _tmp.file("bad.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]})");
    r = runIn({"--security-opt", "seccomp=" + bad}, {"/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("seccomp profile `" + bad +
                         "`: syscalls[0].args[0].op: `SCMP_CMP_SOMETIMES` is not a comparison"),
              std::string::npos)
        << r.err;
    std::string notJson = _tmp.file("nope.json", "{ not json");
    r = runIn({"--security-opt", "seccomp=" + notJson}, {"/bin/true"});
    EXPECT_NE(r.err.find("is not a JSON seccomp profile"), std::string::npos) << r.err;
    r = runIn({"--security-opt", "label=disable"}, {"/bin/true"});
    EXPECT_NE(r.err.find("invalid --security-opt `label=disable`"), std::string::npos) << r.err;
}

TEST_F(SecurityCli, CVE_2024_21626_LeakedFdsAndWorkdir) {
    // This process leaks a directory fd into the dispatcher it starts.
    LeakedFd dir("/tmp");
    ASSERT_GE(dir.fd, 0);
    auto r = runIn({}, {kProbe, "fds"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0 1 2\n");
    r = runIn({"-w", "/proc/self/fd/" + std::to_string(dir.fd)}, {"/bin/pwd"});
    EXPECT_EQ(r.status, 125);
    EXPECT_NE(r.err.find("is outside the container's root filesystem"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
}

TEST_F(SecurityCli, ExecFlags) {
    auto r =
        mo({"container", "boot", "--cap-drop", "ALL", "sec-cli", rootfsPath(), "/bin/sleep", "60"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "exec", "sec-cli", "/bin/sh", "-c",
            "grep -E 'CapEff|Seccomp:' /proc/self/status"});
    EXPECT_EQ(r.out, "CapEff:\t0000000000000000\nSeccomp:\t2\n") << r.err;
    r = mo({"container", "exec", "--cap-add", "NET_RAW", "sec-cli", "/bin/sh", "-c",
            "grep CapEff /proc/self/status"});
    EXPECT_EQ(r.out, "CapEff:\t" + hex(1ull << CAP_NET_RAW) + "\n") << r.err;
    r = mo({"container", "exec", "--privileged", "sec-cli", "/bin/sh", "-c",
            "grep -E 'CapEff|Seccomp:' /proc/self/status"});
    EXPECT_EQ(r.out, "CapEff:\t" + hex(allCapabilities()) + "\nSeccomp:\t2\n") << r.err;
    r = mo({"container", "exec", "sec-cli", kProbe, "fds"});
    EXPECT_EQ(r.out, "0 1 2\n") << r.err;
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new SecurityEnvironment);
    return RUN_ALL_TESTS();
}
