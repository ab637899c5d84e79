// The guest init (guest/init.c) without booting a kernel: the built binary runs in its
// --test mode as PID 1 of fresh mount, pid and uts namespaces, with bind mounts for the
// 9p shares and plain files for the ports (found by name in a stand-in for
// /sys/class/virtio-ports), on a busybox root. It parses real job files, mounts real
// volumes and runs real programs; the exit code is checked where the host would read it
// (the exit file and the console's marker line) and as init's status.
#include "TestUtil.h"
#include "protocol.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

namespace mobileops::krun {
namespace {

namespace fs = std::filesystem;
using test::Result;
using test::run;
using test::TempDir;

const char *const kUnshare = "/usr/bin/unshare";

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// One record of a job file (protocol.h).
std::string record(const std::string &key, const std::string &value) {
    return key + " " + std::to_string(value.size()) + "\n" + value + "\n";
}

// A job file as the host writes it.
class Job {
public:
    Job &add(const std::string &key, const std::string &value) {
        _text += record(key, value);
        return *this;
    }
    Job &args(std::initializer_list<std::string> argv) {
        for (const auto &a : argv) add("arg", a);
        return *this;
    }
    const std::string &text() const { return _text; }

private:
    std::string _text;
};

class GuestInit : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (::geteuid() != 0 || !fs::exists(MOBILEOPS_GUEST_INIT)) return;
        _rootfsDir = std::make_unique<TempDir>();
        _rootfs = _rootfsDir->path() + "/rootfs";
        auto r = run({"/bin/sh", MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh", _rootfs});
        ASSERT_EQ(r.status, 0) << r.err;
        std::ofstream(_rootfs + "/bin/notexec") << "#!/bin/sh\necho never\n";
        ::chmod((_rootfs + "/bin/notexec").c_str(), 0644);
        fs::create_directories(_rootfs + "/srv");
        fs::create_directories(_rootfs + kSymlinkTarget);
        fs::create_symlink(kSymlinkTarget, _rootfs + "/srv/abs");
    }
    static void TearDownTestSuite() { _rootfsDir.reset(); }

    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount, pid and uts namespaces)";
        if (!fs::exists(kUnshare)) GTEST_SKIP() << "needs " << kUnshare << " (util-linux)";
        ASSERT_FALSE(_rootfs.empty()) << "no guest init at " MOBILEOPS_GUEST_INIT;
        fs::create_directories(share(MO_TAG_JOB));
        fs::create_symlink(_rootfs, share(MO_TAG_ROOT));
        // Numbered unlike qemu's order: init must go by the names.
        addPort("vport0p3", MO_PORT_STDOUT);
        addPort("vport0p1", MO_PORT_STDERR);
        addPort("vport0p2", MO_PORT_CONTROL);
    }

    // A virtio-serial port as init looks for it: a device whose sysfs name is `name`.
    void addPort(const std::string &dev, const std::string &name) {
        fs::create_directories(share("sys/class/virtio-ports/" + dev));
        std::ofstream(share("sys/class/virtio-ports/" + dev + "/name")) << name << "\n";
        fs::create_directories(share("dev"));
        std::ofstream(share("dev/" + dev)).flush();
    }

    std::string share(const std::string &name) const { return _dir.path() + "/" + name; }
    std::string out() const { return slurp(share("dev/vport0p3")); }
    std::string err() const { return slurp(share("dev/vport0p1")); }

    Result boot(const Job &job) { return boot(job.text()); }
    Result boot(const std::string &jobText) {
        std::ofstream(share(MO_TAG_JOB) + "/" MO_JOB_FILE) << jobText;
        return runInit();
    }
    Result runInit() {
        return run({kUnshare, "--mount", "--pid", "--fork", "--uts", "--propagation", "private",
                    MOBILEOPS_GUEST_INIT, "--test", _dir.path()});
    }

    // The code the host would see, checked where it would look.
    // `signal`: the program was killed by it, and the report says so.
    void expectExit(const Result &r, int code, int signal = 0) {
        EXPECT_EQ(r.status, code) << "console:\n" << r.err << "program stderr:\n" << err();
        std::string report =
            std::to_string(code) + (signal ? " signal " + std::to_string(signal) : "") + "\n";
        EXPECT_EQ(slurp(share(MO_TAG_JOB) + "/" MO_EXIT_FILE), report);
        EXPECT_NE(r.err.find(MO_EXIT_MARKER + report), std::string::npos) << r.err;
    }

    static constexpr const char *kSymlinkTarget = "/mo-guest-init-test-symlink-target";
    static inline std::unique_ptr<TempDir> _rootfsDir;
    static inline std::string _rootfs;
    TempDir _dir;
};

TEST_F(GuestInit, TrueExitsZero) {
    expectExit(boot(Job().args({"/bin/true"})), 0);
    EXPECT_EQ(out(), "");
}

TEST_F(GuestInit, ExitCodeComesBack) {
    expectExit(boot(Job().args({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"})), 3);
    EXPECT_EQ(out(), "out\n");
    EXPECT_EQ(err(), "err\n");
}

TEST_F(GuestInit, MissingProgramIs127) {
    expectExit(boot(Job().args({"nosuchprogram"}).add("env", "PATH=/bin:/usr/bin")), 127);
    EXPECT_EQ(err(), "nosuchprogram: not found\n");
}

TEST_F(GuestInit, NonExecutableProgramIs126) {
    expectExit(boot(Job().args({"/bin/notexec"})), 126);
    EXPECT_EQ(err(), "/bin/notexec: Permission denied\n");
}

TEST_F(GuestInit, DeathBySignalIs128PlusN) {
    expectExit(boot(Job().args({"/bin/sh", "-c", "kill -9 $$"})), 128 + 9, 9);
    // An exit with the same number is an exit, not a death by signal.
    expectExit(boot(Job().args({"/bin/sh", "-c", "exit 137"})), 137);
}

TEST_F(GuestInit, ProgramSearchUsesTheJobsPath) {
    expectExit(
        boot(Job().args({"hostname"}).add("env", "PATH=/nowhere:/bin").add("hostname", "vm-test")),
        0);
    EXPECT_EQ(out(), "vm-test\n");
}

TEST_F(GuestInit, EnvCwdUserGroupsAndRlimitsApply) {
    Job job;
    job.args({"/bin/sh", "-c",
              "echo \"$FOO\"; pwd; id -u; id -g; id -G; ulimit -n; ulimit -Hn; cat; echo end"})
        .add("env", "FOO=bar baz")
        .add("env", "PATH=/bin")
        .add("cwd", "/tmp/work")
        .add("user", "1000:1001")
        .add("groups", "10 20")
        .add("rlimit", "nofile 123 456");
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "bar baz\n/tmp/work\n1000\n1001\n1001 10 20\n123\n456\nend\n");
}

// The program's security as the namespace runtime would set it: capability sets (a
// non-root user keeping NET_RAW through the ambient set), no_new_privs, a seccomp filter
// (here: mkdir and mkdirat fail with EPERM) and the umask, read back from the kernel.
TEST_F(GuestInit, CapabilitiesNoNewPrivsSeccompAndUmaskApply) {
    const sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mkdir, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mkdirat, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    std::string hex;
    const auto *bytes = reinterpret_cast<const unsigned char *>(code);
    for (size_t i = 0; i < sizeof code; ++i) {
        char two[3];
        std::snprintf(two, sizeof two, "%02x", bytes[i]);
        hex += two;
    }
    Job job;
    job.args({"/bin/sh", "-c",
              "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; umask; "
              "mkdir /tmp/d; echo mkdir=$?"})
        .add("env", "PATH=/bin")
        .add("user", "1000:1000")
        .add("umask", "0027")
        .add("caps", "2001 2000 2000 2000 2000")
        .add("nonewprivs", "1")
        .add("seccomp", "0 " + hex);
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "CapEff:\t0000000000002000\n"
                     "CapBnd:\t0000000000002001\n"
                     "CapAmb:\t0000000000002000\n"
                     "NoNewPrivs:\t1\n"
                     "Seccomp:\t2\n"
                     "0027\n"
                     "mkdir=1\n");
    EXPECT_NE(err().find("Operation not permitted"), std::string::npos) << err();
}

// Root without a caps record keeps every capability; with one it gets exactly its sets.
TEST_F(GuestInit, RootGetsTheBoundingSetItIsGiven) {
    Job job;
    job.args({"/bin/sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"})
        .add("caps", "20 20 20 0 0");
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "CapEff:\t0000000000000020\n"
                     "CapBnd:\t0000000000000020\n"
                     "NoNewPrivs:\t0\n"
                     "Seccomp:\t0\n");
}

// The guest is its own kernel: init writes each sysctl under /proc/sys before the
// program runs (in --test mode, below the test's directory), and a key the kernel does
// not have is a setup failure that names it.
TEST_F(GuestInit, SysctlsAreWrittenBeforeTheProgram) {
    fs::create_directories(share("mnt/proc/sys/net/ipv4"));
    std::ofstream(share("mnt/proc/sys/net/ipv4/ping_group_range")) << "1\t0\n";
    expectExit(
        boot(Job().args({"/bin/true"}).add("sysctl", "net.ipv4.ping_group_range 0 2147483647")), 0);
    EXPECT_EQ(slurp(share("mnt/proc/sys/net/ipv4/ping_group_range")), "0 2147483647");

    Result r = boot(Job().args({"/bin/true"}).add("sysctl", "kernel.nosuchkey 1"));
    expectExit(r, MO_EXIT_SETUP_FAILED);
    EXPECT_NE(r.err.find("mobileops-init: sysctl `kernel.nosuchkey`: No such file or directory"),
              std::string::npos)
        << r.err;
    r = boot(Job().args({"/bin/true"}).add("sysctl", "../../etc/passwd x"));
    expectExit(r, MO_EXIT_SETUP_FAILED);
    EXPECT_NE(r.err.find("sysctl `../../etc/passwd` is not a sysctl name"), std::string::npos)
        << r.err;
}

TEST_F(GuestInit, RootHasKernelFileSystemsAndFreshTmp) {
    expectExit(
        boot(Job().args({"/bin/sh", "-c",
                         "test -c /dev/null && test -f /proc/self/status && test -d /sys/kernel && "
                         "grep -c -E ' /(tmp|run|dev/shm) tmpfs ' /proc/mounts && ls -A /tmp"})),
        0);
    EXPECT_EQ(out(), "3\n");
}

TEST_F(GuestInit, ReadWriteAndReadOnlyVolumes) {
    fs::create_directories(share("mo-vol0"));
    fs::create_directories(share("mo-vol1"));
    std::ofstream(share("mo-vol1") + "/g") << "from the host\n";
    // The read-only one sits below /tmp: volumes are mounted after the fresh /tmp.
    Job job;
    job.args({"/bin/sh", "-c",
              "echo hi > /srv/rw/f && cat /tmp/ro/g && ! touch /tmp/ro/x 2>/dev/null"})
        .add("mount", "mo-vol0 /srv/rw rw")
        .add("mount", "mo-vol1 /tmp/ro ro");
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "from the host\n");
    EXPECT_EQ(slurp(share("mo-vol0") + "/f"), "hi\n");
    EXPECT_FALSE(fs::exists(share("mo-vol1") + "/x"));
}

TEST_F(GuestInit, VolumeBehindAnAbsoluteSymlinkLandsInsideTheRoot) {
    fs::create_directories(share("mo-vol0"));
    std::ofstream(share("mo-vol0") + "/g") << "volume\n";
    Job job;
    job.args({"/bin/cat", std::string(kSymlinkTarget) + "/data/g"})
        .add("mount", "mo-vol0 /srv/abs/data rw");
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "volume\n");
    EXPECT_TRUE(fs::is_directory(_rootfs + kSymlinkTarget + "/data"));
    EXPECT_FALSE(fs::exists(kSymlinkTarget)) << "init followed the root's symlink on the host";
}

TEST_F(GuestInit, ReadOnlyRootRefusesWrites) {
    Job job;
    job.args({"/bin/sh", "-c", "touch /ro-test 2>/dev/null; echo $?; touch /tmp/ok && echo tmp-ok"})
        .add("rootro", "1");
    expectExit(boot(job), 0);
    EXPECT_EQ(out(), "1\ntmp-ok\n");
    EXPECT_FALSE(fs::exists(_rootfs + "/ro-test"));
}

TEST_F(GuestInit, ControlPortSignalReachesTheProgram) {
    const std::string control = share("dev/vport0p2");
    fs::remove(control);
    ASSERT_EQ(::mkfifo(control.c_str(), 0600), 0);
    std::thread host([this, &control] {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (out().find("ready") == std::string::npos &&
               std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        int fd = ::open(control.c_str(), O_WRONLY | O_NONBLOCK);
        std::string lines = "bogus\nsignal 15\n";
        ASSERT_GE(fd, 0) << "init never opened the control port";
        EXPECT_EQ(::write(fd, lines.data(), lines.size()), ssize_t(lines.size()));
        ::close(fd);
    });
    Result r = boot(Job().args({"/bin/sh", "-c", "echo ready; exec sleep 30"}));
    host.join();
    expectExit(r, 128 + 15, 15);
    EXPECT_NE(r.err.find("mobileops-init: control: unknown line `bogus`\n"), std::string::npos)
        << r.err;
}

struct BadJob {
    const char *name;
    std::string job;
    std::string message;
};

class GuestInitBadJob : public GuestInit, public ::testing::WithParamInterface<BadJob> {};

TEST_P(GuestInitBadJob, IsASetupFailureNamingTheProblem) {
    Result r = boot(GetParam().job);
    expectExit(r, MO_EXIT_SETUP_FAILED);
    EXPECT_NE(r.err.find("mobileops-init: " + GetParam().message + "\n"), std::string::npos)
        << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Jobs, GuestInitBadJob,
    ::testing::Values(
        BadJob{"UnknownRecord", record("arg", "/bin/true") + record("frob", "x"),
               "job: unknown record `frob`"},
        BadJob{"Truncated", "arg 10\n/bin/true\n", "job: record `arg` is truncated"},
        BadJob{"BadLength", "arg x\n/bin/true\n", "job: bad length in record `arg`"},
        BadJob{"NoArg", record("env", "A=b"), "job: no `arg` record"},
        BadJob{"BadUser", record("arg", "/bin/true") + record("user", "abc"),
               "job: bad `user` record `abc` (want <uid>:<gid>)"},
        BadJob{"DotDotMount", record("arg", "/bin/true") + record("mount", "mo-vol0 /a/../etc rw"),
               "job: mount path `/a/../etc` is not an absolute path below the root without `..`"},
        BadJob{"BadMountMode", record("arg", "/bin/true") + record("mount", "mo-vol0 /data rx"),
               "job: mount `/data`: bad mode `rx` (want ro or rw)"},
        BadJob{"UnknownRlimit", record("arg", "/bin/true") + record("rlimit", "frobs 1 2"),
               "job: unknown rlimit `frobs`"},
        BadJob{"SoftAboveHard", record("arg", "/bin/true") + record("rlimit", "nofile 9 8"),
               "job: rlimit `nofile`: soft limit above the hard limit"},
        BadJob{"MissingShare", record("arg", "/bin/true") + record("mount", "mo-vol7 /data rw"),
               "mount share `mo-vol7` at `/data`: No such file or directory"}),
    [](const auto &info) { return std::string(info.param.name); });

TEST_F(GuestInit, AMissingPortIsASetupFailureNamingIt) {
    fs::remove_all(share("sys/class/virtio-ports/vport0p2"));
    Result r = boot(Job().args({"/bin/true"}));
    expectExit(r, MO_EXIT_SETUP_FAILED);
    EXPECT_NE(r.err.find("mobileops-init: no virtio-serial port named `" MO_PORT_CONTROL "`"),
              std::string::npos)
        << r.err;
}

TEST_F(GuestInit, MissingJobFileIsASetupFailure) {
    Result r = runInit();
    expectExit(r, MO_EXIT_SETUP_FAILED);
    EXPECT_NE(r.err.find("mobileops-init: open the job file `job`: No such file or directory\n"),
              std::string::npos)
        << r.err;
}

} // namespace
} // namespace mobileops::krun
