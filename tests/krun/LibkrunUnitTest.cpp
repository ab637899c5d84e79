// The libkrun backend against a recording stand-in library (tests/krun/fake_libkrun.c,
// built as libkrun.so.1: libkrun is not packaged for Debian 12). No VM boots here: the
// stand-in writes each call it gets to a log and its krun_start_enter exits like a VMM
// whose program ended, so these tests check what the backend asks of libkrun, in which
// order and from which process, and what comes back.
#include "Libkrun.h"
#include "TestUtil.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

namespace mobileops::krun {
namespace {

using common::Error;

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// The code and message of what `f` throws; fails the test when it throws nothing.
template <class F> std::pair<int, std::string> errorOf(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return {e.code(), e.what()};
    }
    ADD_FAILURE() << "no error thrown";
    return {0, ""};
}

class LibkrunStandIn : public ::testing::Test {
protected:
    void SetUp() override {
        ::setenv("FAKE_LIBKRUN_LOG", logPath.c_str(), 1);
        ::mkdir(root.c_str(), 0755);
    }
    void TearDown() override {
        for (const char *name :
             {"FAKE_LIBKRUN_LOG", "FAKE_LIBKRUN_FAIL", "FAKE_LIBKRUN_EXIT", "FAKE_LIBKRUN_HANG"})
            ::unsetenv(name);
    }

    VmConfig config() const {
        VmConfig c;
        c.rootfs = root;
        c.args = {"/bin/true"};
        c.workDir = dir.path();
        return c;
    }

    std::string volume(const std::string &name) const {
        std::string path = dir.path() + "/" + name;
        ::mkdir(path.c_str(), 0755);
        return path;
    }

    // Start the VM with the child's stderr in a file.
    pid_t startCapturing(Libkrun &lib, const VmConfig &c) {
        int file = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int saved = ::dup(2);
        ::dup2(file, 2);
        ::close(file);
        pid_t pid = -1;
        try {
            pid = lib.start(c);
        } catch (...) {
            ::dup2(saved, 2);
            ::close(saved);
            throw;
        }
        ::dup2(saved, 2);
        ::close(saved);
        return pid;
    }

    // The wait status. Not a measure of time: a guard so that a VM the backend failed to
    // bound fails the test instead of hanging it.
    static int waitFor(pid_t pid) {
        int status = 0;
        for (int polls = 0; polls < 6000; ++polls) {
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid) return status;
            if (r < 0) {
                ADD_FAILURE() << "waitpid: " << std::strerror(errno);
                return status;
            }
            ::usleep(10000);
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "the VM process was still running after a minute: killed";
        return status;
    }

    int startAndWait(Libkrun &lib, const VmConfig &c) { return waitFor(startCapturing(lib, c)); }

    std::vector<std::string> calls() const {
        std::vector<std::string> lines;
        std::istringstream in(slurp(logPath));
        for (std::string line; std::getline(in, line);) lines.push_back(line);
        return lines;
    }

    // The calls with the context id the stand-in handed out replaced by "N" and the
    // parent's krun_free_ctx taken out: it races with the child's calls. Checks it was
    // there, exactly once.
    std::vector<std::string> childCalls() const {
        std::vector<std::string> lines = calls();
        if (lines.empty() || lines[0].rfind("krun_create_ctx ", 0) != 0) {
            ADD_FAILURE() << "the first call is not krun_create_ctx";
            return lines;
        }
        std::string id = lines[0].substr(std::string("krun_create_ctx ").size());
        for (auto &line : lines) {
            // The context is every call's first argument, but for krun_set_log_level's.
            auto begin = line.find(' ') + 1, end = line.find(' ', begin);
            if (begin != 0 && line.rfind("krun_set_log_level", 0) != 0 &&
                line.substr(begin, end - begin) == id)
                line.replace(begin, id.size(), "N");
        }
        auto frees = std::count(lines.begin(), lines.end(), "krun_free_ctx N");
        EXPECT_EQ(frees, 1) << "the parent frees its context once";
        lines.erase(std::remove(lines.begin(), lines.end(), "krun_free_ctx N"), lines.end());
        return lines;
    }

    test::TempDir dir;
    std::string root = dir.path() + "/root";
    std::string logPath = dir.path() + "/calls.log";
    std::string errPath = dir.path() + "/stderr";
};

TEST_F(LibkrunStandIn, MissingLibraryGivesTheExactMessage) {
    void *real = ::dlopen("libkrun.so.1", RTLD_NOW | RTLD_LOCAL);
    if (real) {
        ::dlclose(real);
        GTEST_SKIP() << "a real libkrun.so.1 is installed here";
    }
    auto [code, message] = errorOf([] { Libkrun lib; });
    EXPECT_EQ(code, MO_E_UNSUPPORTED);
    EXPECT_EQ(message, "libkrun support not available: libkrun.so.1 not found");
    auto [available, why] = Libkrun::probe();
    EXPECT_FALSE(available);
    EXPECT_EQ(why, "libkrun support not available: libkrun.so.1 not found");

    std::string path = dir.path() + "/nowhere/libkrun.so.1";
    EXPECT_EQ(errorOf([&] { Libkrun lib(path); }).second,
              "libkrun support not available: " + path + " not found");
}

TEST_F(LibkrunStandIn, UnloadableFileIsNotCalledMissing) {
    std::string path = dir.file("libkrun.so.1", "not an ELF file\n");
    auto [code, message] = errorOf([&] { Libkrun lib(path); });
    EXPECT_EQ(code, MO_E_UNSUPPORTED);
    EXPECT_EQ(message.rfind("libkrun support not available: cannot load " + path + ": ", 0), 0u)
        << message;
}

TEST_F(LibkrunStandIn, MissingRequiredSymbolIsNamed) {
    auto [code, message] = errorOf([] { Libkrun lib(FAKE_LIBKRUN_BROKEN); });
    EXPECT_EQ(code, MO_E_UNSUPPORTED);
    EXPECT_EQ(message, std::string("libkrun support not available: ") + FAKE_LIBKRUN_BROKEN +
                           " lacks `krun_start_enter`: too old or not libkrun");
    auto [available, why] = Libkrun::probe(FAKE_LIBKRUN_BROKEN);
    EXPECT_FALSE(available);
    EXPECT_EQ(why, message);
}

TEST_F(LibkrunStandIn, ProbeAcceptsTheStandInWhereKvmOpens) {
    auto [available, why] = Libkrun::probe(FAKE_LIBKRUN);
    if (::access("/dev/kvm", R_OK | W_OK) != 0) {
        EXPECT_FALSE(available);
        EXPECT_NE(why.find("/dev/kvm"), std::string::npos) << why;
        GTEST_SKIP() << "no usable /dev/kvm: " << why;
    }
    EXPECT_TRUE(available) << why;
    EXPECT_TRUE(calls().empty()) << "a probe calls nothing in the library";
}

TEST_F(LibkrunStandIn, CallOrderAndArguments) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig c = config();
    c.args = {"/bin/echo", "hello", "world"};
    c.env = {"PATH=/usr/bin:/bin", "GREETING=two words"};
    c.cwd = "/srv";
    c.hostname = "vm1";
    c.vcpus = 3;
    c.memory = 768ull << 20;
    std::string data = volume("data"), config = volume("config");
    c.mounts = {{data, "/data", false}, {config, "/etc/app", true}};
    c.rlimits = {{"nofile", 1024, 2048}};

    int status = startAndWait(lib, c);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    std::vector<std::string> expected = {
        "krun_create_ctx N",
        "krun_set_log_level 1",
        "krun_set_vm_config N 3 768",
        "krun_set_root N " + root,
        "krun_set_workdir N /srv",
        "krun_set_exec N /bin/echo [hello] [world] envp [PATH=/usr/bin:/bin] [GREETING=two "
        "words] [HOSTNAME=vm1]",
        "krun_add_virtiofs N mo-vol0 " + data,
        "krun_add_virtiofs3 N mo-vol1 " + config + " 0 ro",
        "krun_set_port_map N",
        "krun_set_rlimits N [7=1024:2048]",
        "krun_start_enter N",
    };
    EXPECT_EQ(childCalls(), expected);
    EXPECT_EQ(slurp(errPath), "");
}

TEST_F(LibkrunStandIn, ExitStatusComesBackFromTheChild) {
    Libkrun lib(FAKE_LIBKRUN);
    for (int code : {0, 3, 42}) {
        ::setenv("FAKE_LIBKRUN_EXIT", std::to_string(code).c_str(), 1);
        int status = startAndWait(lib, config());
        ASSERT_TRUE(WIFEXITED(status)) << code;
        EXPECT_EQ(WEXITSTATUS(status), code);
    }
}

TEST_F(LibkrunStandIn, FailingCallExits125AndNamesIt) {
    Libkrun lib(FAKE_LIBKRUN);
    ::setenv("FAKE_LIBKRUN_FAIL", "krun_set_root", 1);
    int status = startAndWait(lib, config());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 125);
    EXPECT_EQ(slurp(errPath), "libkrun: krun_set_root: Invalid argument\n");
    std::vector<std::string> got = childCalls();
    EXPECT_EQ(got.back(), "krun_set_root N " + root) << "nothing after the failed call";
}

TEST_F(LibkrunStandIn, FailingStartEnterExits125) {
    Libkrun lib(FAKE_LIBKRUN);
    ::setenv("FAKE_LIBKRUN_FAIL", "krun_start_enter", 1);
    int status = startAndWait(lib, config());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 125);
    EXPECT_EQ(slurp(errPath), "libkrun: krun_start_enter: Invalid argument\n");
}

TEST_F(LibkrunStandIn, ContextCreationFailureThrowsWithoutForking) {
    Libkrun lib(FAKE_LIBKRUN);
    ::setenv("FAKE_LIBKRUN_FAIL", "krun_create_ctx", 1);
    auto [code, message] = errorOf([&] { lib.start(config()); });
    EXPECT_EQ(code, -EINVAL);
    EXPECT_EQ(message, "libkrun: krun_create_ctx: Invalid argument");
    EXPECT_EQ(calls().size(), 1u) << "only the failed krun_create_ctx";
}

TEST_F(LibkrunStandIn, MinimalLibraryRefusesVolumesAndRlimitsBeforeAnyCall) {
    Libkrun lib(FAKE_LIBKRUN_MINIMAL);
    VmConfig withVolume = config();
    withVolume.mounts = {{volume("data"), "/data", false}};
    auto [code, message] = errorOf([&] { lib.start(withVolume); });
    EXPECT_EQ(code, MO_E_UNSUPPORTED);
    EXPECT_EQ(message, "volumes need krun_add_virtiofs, which this libkrun lacks");

    VmConfig withRlimit = config();
    withRlimit.rlimits = {{"nofile", 64, 64}};
    EXPECT_EQ(errorOf([&] { lib.start(withRlimit); }).first, MO_E_UNSUPPORTED);

    VmConfig readOnlyRoot = config();
    readOnlyRoot.rootReadOnly = true;
    EXPECT_EQ(errorOf([&] { lib.start(readOnlyRoot); }).second,
              "a read-only root needs krun_add_virtiofs3, which this libkrun lacks");
    EXPECT_TRUE(calls().empty()) << "refused before a context was created";
}

TEST_F(LibkrunStandIn, MinimalLibrarySkipsTheOptionalCalls) {
    Libkrun lib(FAKE_LIBKRUN_MINIMAL);
    int status = startAndWait(lib, config());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    std::vector<std::string> expected = {
        "krun_create_ctx N",    "krun_set_vm_config N 2 512",     "krun_set_root N " + root,
        "krun_set_workdir N /", "krun_set_exec N /bin/true envp", "krun_start_enter N",
    };
    EXPECT_EQ(childCalls(), expected);
}

TEST_F(LibkrunStandIn, RlimitsInLibkrunsStringForm) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig c = config();
    c.rlimits = {{"nproc", 10, 20}, {"core", 0, -1}, {"stack", -1, -1}};
    int status = startAndWait(lib, c);
    ASSERT_TRUE(WIFEXITED(status));
    std::string unlimited = std::to_string(RLIM_INFINITY);
    std::vector<std::string> got = childCalls();
    std::string expected = "krun_set_rlimits N [" + std::to_string(RLIMIT_NPROC) + "=10:20] [" +
                           std::to_string(RLIMIT_CORE) + "=0:" + unlimited + "] [" +
                           std::to_string(RLIMIT_STACK) + "=" + unlimited + ":" + unlimited + "]";
    EXPECT_NE(std::find(got.begin(), got.end(), expected), got.end()) << expected;
    EXPECT_EQ(std::to_string(RLIMIT_NPROC) + "=10:20", "6=10:20") << "libkrun's own example";
}

TEST_F(LibkrunStandIn, BadRlimitsAreRefusedByName) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig unknown = config();
    unknown.rlimits = {{"bogus", 1, 1}};
    auto [code, message] = errorOf([&] { lib.start(unknown); });
    EXPECT_EQ(code, MO_E_INVALID);
    EXPECT_EQ(message, "rlimit `bogus`: unknown resource");

    VmConfig inverted = config();
    inverted.rlimits = {{"nofile", 4096, 1024}};
    EXPECT_EQ(errorOf([&] { lib.start(inverted); }).second,
              "rlimit `nofile`: soft limit `4096` exceeds hard limit `1024`");

    VmConfig negative = config();
    negative.rlimits = {{"nofile", -5, 10}};
    EXPECT_EQ(errorOf([&] { lib.start(negative); }).second,
              "rlimit `nofile`: soft limit `-5` is negative");
    EXPECT_TRUE(calls().empty());
}

TEST_F(LibkrunStandIn, EnvironmentIsPassedAndNeverInheritedFromTheHost) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig none = config();
    ASSERT_TRUE(WIFEXITED(startAndWait(lib, none)));
    std::vector<std::string> got = childCalls();
    // A null envp would make libkrun copy the host's environment into the guest.
    EXPECT_NE(std::find(got.begin(), got.end(), "krun_set_exec N /bin/true envp"), got.end());

    ::unlink(logPath.c_str());
    VmConfig own = config();
    own.hostname = "ignored";
    own.env = {"HOSTNAME=mine", "EMPTY="};
    own.args = {"/bin/sh", "-c", "echo $HOSTNAME"};
    ASSERT_TRUE(WIFEXITED(startAndWait(lib, own)));
    got = childCalls();
    EXPECT_NE(std::find(got.begin(), got.end(),
                        "krun_set_exec N /bin/sh [-c] [echo $HOSTNAME] envp [HOSTNAME=mine] "
                        "[EMPTY=]"),
              got.end());
}

TEST_F(LibkrunStandIn, ReadOnlyRootIsTheRootTagShared) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig c = config();
    c.rootReadOnly = true;
    ASSERT_TRUE(WIFEXITED(startAndWait(lib, c)));
    std::vector<std::string> got = childCalls();
    EXPECT_NE(std::find(got.begin(), got.end(), "krun_add_virtiofs3 N /dev/root " + root + " 0 ro"),
              got.end());
    EXPECT_EQ(std::count_if(got.begin(), got.end(),
                            [](const std::string &l) { return l.rfind("krun_set_root", 0) == 0; }),
              0);
}

TEST_F(LibkrunStandIn, BadConfigIsRefusedBeforeAnyCall) {
    Libkrun lib(FAKE_LIBKRUN);
    VmConfig noArgs = config();
    noArgs.args.clear();
    EXPECT_EQ(errorOf([&] { lib.start(noArgs); }),
              std::make_pair(int(MO_E_INVALID), std::string("args: empty: the VM needs a "
                                                            "program to run")));

    VmConfig noRoot = config();
    noRoot.rootfs = dir.path() + "/missing";
    EXPECT_EQ(errorOf([&] { lib.start(noRoot); }).second,
              "rootfs `" + noRoot.rootfs + "`: No such file or directory");

    VmConfig fileRoot = config();
    fileRoot.rootfs = dir.file("plain", "x");
    EXPECT_EQ(errorOf([&] { lib.start(fileRoot); }).second,
              "rootfs `" + fileRoot.rootfs + "`: not a directory");

    VmConfig badVolume = config();
    badVolume.mounts = {{dir.path() + "/absent", "/data", false}};
    EXPECT_EQ(errorOf([&] { lib.start(badVolume); }).second,
              "volume `" + dir.path() + "/absent`: No such file or directory");

    VmConfig zeroCpus = config();
    zeroCpus.vcpus = 0;
    EXPECT_EQ(errorOf([&] { lib.start(zeroCpus); }).second, "vcpus `0`: libkrun takes 1 to 255");

    VmConfig user = config();
    user.uid = 1000;
    user.gid = 1000;
    auto [code, message] = errorOf([&] { lib.start(user); });
    EXPECT_EQ(code, MO_E_UNSUPPORTED);
    EXPECT_EQ(message, "libkrun runs the program as root: user `1000:1000` is not supported");
    EXPECT_TRUE(calls().empty());
}

TEST_F(LibkrunStandIn, TimeoutKillsTheVm) {
    Libkrun lib(FAKE_LIBKRUN);
    ::setenv("FAKE_LIBKRUN_HANG", "1", 1);
    VmConfig c = config();
    c.timeout = std::chrono::seconds(1);
    int status = startAndWait(lib, c);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGALRM);
}

TEST_F(LibkrunStandIn, TimeoutFiresEvenWhenTheCallerBlocksSignals) {
    Libkrun lib(FAKE_LIBKRUN);
    ::setenv("FAKE_LIBKRUN_HANG", "1", 1);
    sigset_t all, old;
    sigfillset(&all);
    ::sigprocmask(SIG_BLOCK, &all, &old);
    VmConfig c = config();
    c.timeout = std::chrono::seconds(1);
    pid_t pid = startCapturing(lib, c);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    int status = waitFor(pid);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGALRM);
}

} // namespace
} // namespace mobileops::krun
