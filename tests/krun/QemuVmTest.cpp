// Real micro-VMs (label vm): each test boots a qemu guest from the prepared assets (under
// TCG on a host whose /dev/kvm cannot boot it, a few seconds each) with a busybox root.
#include "Assets.h"
#include "Qemu.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace mobileops::krun {
namespace {

// How long a test waits for a guest's output before giving up: a safety net for a hung
// guest, not a measure (the VM's own timeout is longer still).
constexpr auto kPatience = std::chrono::seconds(120);

struct Machine {
    std::string skip; // why no guest can boot here
    std::string base; // holds the rootfs
    std::string rootfs;
    GuestAssets assets;
    Accel accel;
};

Machine &machine() {
    static Machine m;
    return m;
}

// Builds the busybox root and the guest assets once, and probes the accelerator (the
// verdict is cached in the build tree: the first run on a PVM host pays a 10 s probe).
class VmEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
        Machine &m = machine();
        std::string why;
        if (::geteuid() != 0) {
            m.skip = "needs root: the shares keep owners (9p passthrough)";
            return;
        }
        if (!findQemu(&why)) {
            m.skip = why;
            return;
        }
        char tmpl[] = "/tmp/krun-vm-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            m.skip = "mkdtemp failed";
            return;
        }
        m.base = tmpl;
        m.rootfs = m.base + "/rootfs";
        std::string make = MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh " + m.rootfs;
        if (std::system(make.c_str()) != 0) {
            m.skip = "tools/make-rootfs.sh failed: is busybox-static installed?";
            return;
        }
        // The volumes' mount points: the tests share this root read-only.
        std::filesystem::create_directories(m.rootfs + "/data/rw");
        std::filesystem::create_directories(m.rootfs + "/data/ro");
        AssetOptions options;
        options.cacheDir = MOBILEOPS_BINARY_DIR "/tests/krun/vm-assets";
        options.guestInit = MOBILEOPS_GUEST_INIT;
        try {
            m.assets = prepareAssets(options);
            m.accel = probeAccel(m.assets, options.cacheDir + "/accel.json");
        } catch (const std::exception &e) {
            m.skip = std::string("no guest assets: ") + e.what();
            return;
        }
        std::cout << "[ vm       ] " << m.accel.name << ": " << m.accel.why << "\n";
    }
    void TearDown() override {
        std::error_code ec;
        if (!machine().base.empty()) std::filesystem::remove_all(machine().base, ec);
    }
};

[[maybe_unused]] const auto *const gEnvironment =
    ::testing::AddGlobalTestEnvironment(new VmEnvironment);

// A guest's stdout and stderr, read on a thread while the test waits or signals.
class Output {
public:
    explicit Output(const QemuVm &vm)
        : _thread([this, &vm] { pump(vm.stdoutFd(), vm.stderrFd()); }) {}
    ~Output() {
        _stop = true;
        _thread.join();
    }
    Output(const Output &) = delete;
    Output &operator=(const Output &) = delete;

    // True once stdout holds `text`.
    bool waitFor(const std::string &text) {
        std::unique_lock lock(_mutex);
        return _changed.wait_for(lock, kPatience, [&] {
            return _out.find(text) != std::string::npos || _closed;
        }) && _out.find(text) != std::string::npos;
    }
    // Everything, once both streams closed (qemu is gone).
    std::pair<std::string, std::string> all() {
        std::unique_lock lock(_mutex);
        _changed.wait_for(lock, kPatience, [&] { return _closed; });
        return {_out, _err};
    }

private:
    void pump(int out, int err) {
        struct pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
        int open = 2;
        char buf[65536];
        while (open > 0 && !_stop) {
            if (::poll(fds, 2, 100) <= 0) continue;
            for (int i = 0; i < 2; ++i) {
                if (fds[i].fd < 0 || !fds[i].revents) continue;
                ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                std::lock_guard lock(_mutex);
                if (n > 0) {
                    (i == 0 ? _out : _err).append(buf, static_cast<size_t>(n));
                } else if (n == 0 || errno != EINTR) {
                    fds[i].fd = -1;
                    --open;
                }
                _changed.notify_all();
            }
        }
        std::lock_guard lock(_mutex);
        _closed = true;
        _changed.notify_all();
    }

    std::mutex _mutex;
    std::condition_variable _changed;
    std::string _out, _err;
    bool _closed = false;
    std::atomic<bool> _stop{false};
    std::thread _thread;
};

struct Ran {
    int status = -1;
    int signal = 0; // QemuVm::exitSignal()
    std::string out, err;
};

class QemuVmTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (!machine().skip.empty()) GTEST_SKIP() << machine().skip;
    }
    void TearDown() override {
        // Nothing left running: every qemu this test started is reaped.
        int status;
        EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);
        EXPECT_EQ(errno, ECHILD);
    }

    VmConfig config(std::vector<std::string> args) const {
        VmConfig c;
        c.rootfs = machine().rootfs;
        c.rootReadOnly = true;
        c.args = std::move(args);
        c.env = {"PATH=/bin:/sbin:/usr/bin:/usr/sbin"};
        c.memory = 256ull << 20;
        c.timeout = std::chrono::seconds(300);
        c.workDir = _work.path();
        return c;
    }

    Ran run(const VmConfig &c) const {
        QemuVm vm = QemuVm::launch(c, machine().assets, machine().accel);
        Output output(vm);
        Ran r;
        r.status = vm.wait();
        r.signal = vm.exitSignal();
        std::tie(r.out, r.err) = output.all();
        return r;
    }

    test::TempDir _work;
};

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST_F(QemuVmTest, EchoComesOutOnStdout) {
    Ran r = run(config({"/bin/echo", "hello from a vm"}));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "hello from a vm\n");
    EXPECT_EQ(r.err, "");
}

TEST_F(QemuVmTest, StderrIsSeparateAndTheExitCodeComesBack) {
    Ran r = run(config({"/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"}));
    EXPECT_EQ(r.status, 3);
    EXPECT_EQ(r.out, "to-out\n");
    EXPECT_EQ(r.err, "to-err\n");
}

// A burst sixteen times a default pipe's size, read at once.
TEST_F(QemuVmTest, ABurstOfOutputArrivesWhole) {
    Ran r = run(config({"/bin/dd", "if=/dev/zero", "bs=64k", "count=16"}));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.size(), 16u * 65536);
    EXPECT_EQ(r.out.find_first_not_of('\0'), std::string::npos);
}

// 8 MiB to a host that reads slowly throughout: the guest waits for the reader (flow
// control) and, after the program, for its queued tail to reach the host (the drain).
// Over virtconsoles qemu dropped what the pipe could not take (1.6 MiB arrived); over
// virtserialports without the drain the tail died with the VM (3.4 MiB arrived).
TEST_F(QemuVmTest, ASlowReaderGetsEveryByte) {
    constexpr size_t kTotal = 8u << 20;
    QemuVm vm = QemuVm::launch(
        config({"/bin/sh", "-c", "dd if=/dev/zero bs=1M count=8 2>/dev/null | tr '\\0' a"}),
        machine().assets, machine().accel);
    std::string out, err;
    struct pollfd fds[2] = {{vm.stdoutFd(), POLLIN, 0}, {vm.stderrFd(), POLLIN, 0}};
    std::vector<char> buf(32 << 10);
    auto deadline = std::chrono::steady_clock::now() + kPatience;
    while ((fds[0].fd >= 0 || fds[1].fd >= 0) && std::chrono::steady_clock::now() < deadline) {
        if (::poll(fds, 2, 1000) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
            if (n <= 0) {
                fds[i].fd = -1;
                continue;
            }
            (i == 0 ? out : err).append(buf.data(), static_cast<size_t>(n));
        }
        // 32 KiB per 10 ms at most: far slower than the guest writes.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(vm.wait(), 0) << err;
    EXPECT_EQ(out.size(), kTotal);
    EXPECT_EQ(out.find_first_not_of('a'), std::string::npos);
    EXPECT_EQ(err, "");
}

TEST_F(QemuVmTest, AMissingProgramIs127) {
    Ran r = run(config({"/no/such/program"}));
    EXPECT_EQ(r.status, 127);
    EXPECT_EQ(r.out, "");
}

TEST_F(QemuVmTest, DeathBySignalIs128PlusTheSignal) {
    Ran r = run(config({"/bin/sh", "-c", "kill -KILL $$"}));
    EXPECT_EQ(r.status, 128 + SIGKILL);
    EXPECT_EQ(r.signal, SIGKILL);
    r = run(config({"/bin/sh", "-c", "exit 137"}));
    EXPECT_EQ(r.status, 137);
    EXPECT_EQ(r.signal, 0) << "an exit with 137 is not a death by SIGKILL";
}

TEST_F(QemuVmTest, EnvironmentWorkingDirectoryAndUser) {
    VmConfig c = config({"/bin/sh", "-c", "echo \"$GREETING\"; pwd; id -u; id -g"});
    c.env.push_back("GREETING=hi there");
    c.cwd = "/tmp";
    c.uid = 1000;
    c.gid = 1000;
    Ran r = run(c);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hi there\n/tmp\n1000\n1000\n");
}

TEST_F(QemuVmTest, ReadWriteAndReadOnlyVolumes) {
    test::TempDir rw, ro;
    ro.file("existing", "seen\n");
    VmConfig c = config({"/bin/sh", "-c",
                         "echo written > /data/rw/f && chown 1234:4321 /data/rw/f; "
                         "cat /data/ro/existing; echo x > /data/ro/f; echo \"ro write: $?\""});
    c.mounts = {{rw.path(), "/data/rw", false}, {ro.path(), "/data/ro", true}};
    Ran r = run(c);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("seen\nro write: "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("ro write: 0"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(rw.path() + "/f"), "written\n");
    struct stat st;
    ASSERT_EQ(::stat((rw.path() + "/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1234u); // passthrough: the guest's owners land on the host
    EXPECT_EQ(st.st_gid, 4321u);
    EXPECT_FALSE(std::filesystem::exists(ro.path() + "/f"));
}

TEST_F(QemuVmTest, ASetupFailureIsAnErrorWithItsReason) {
    VmConfig c = config({"/bin/true"});
    c.cwd = "/no/such/dir"; // cannot be made: the root is read-only
    try {
        run(c);
        FAIL() << "a guest without its working directory ran";
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_STATE);
        EXPECT_NE(std::string(e.what()).find("guest setup failed: "), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("Read-only file system"), std::string::npos)
            << e.what();
    }
}

TEST_F(QemuVmTest, SignalReachesAProgramThatTrapsIt) {
    QemuVm vm = QemuVm::launch(
        config({"/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"}),
        machine().assets, machine().accel);
    Output output(vm);
    ASSERT_TRUE(output.waitFor("ready\n"));
    EXPECT_TRUE(vm.signal(SIGTERM));
    EXPECT_EQ(vm.wait(), 42);
    EXPECT_FALSE(vm.signal(SIGTERM)); // the guest is gone
}

// `kill --all TERM` signals every process of the container, qemu too: qemu keeps the
// signals the launcher forwards blocked, so the VM lives on and the program gets the
// signal through the launcher, and dies of it: 128+N with the signal reported.
TEST_F(QemuVmTest, SignalsSentToQemuItselfDoNotEndTheVm) {
    QemuVm vm = QemuVm::launch(config({"/bin/sh", "-c", "echo ready; while :; do sleep 0.1; done"}),
                               machine().assets, machine().accel);
    Output output(vm);
    ASSERT_TRUE(output.waitFor("ready\n"));
    // qemu runs under its own seccomp filter (-sandbox).
    std::ifstream status("/proc/" + std::to_string(vm.pid()) + "/status");
    std::string line, seccomp;
    while (std::getline(status, line))
        if (line.rfind("Seccomp:", 0) == 0) seccomp = line;
    EXPECT_EQ(seccomp, "Seccomp:\t2");
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR2, SIGALRM})
        ASSERT_EQ(::kill(vm.pid(), sig), 0);
    struct pollfd exited = {static_cast<int>(::syscall(SYS_pidfd_open, vm.pid(), 0)), POLLIN, 0};
    EXPECT_EQ(::poll(&exited, 1, 2000), 0) << "qemu ended on a signal meant for the program";
    ::close(exited.fd);
    EXPECT_TRUE(vm.signal(SIGTERM));
    EXPECT_EQ(vm.wait(), 128 + SIGTERM);
    EXPECT_EQ(vm.exitSignal(), SIGTERM);
}

// A supervisor forwards what it receives from a thread of its own while the owner sits
// in wait(); kill() from there too when the guest never got ready.
TEST_F(QemuVmTest, SignalFromAnotherThreadWhileTheOwnerWaits) {
    QemuVm vm = QemuVm::launch(
        config({"/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"}),
        machine().assets, machine().accel);
    Output output(vm);
    int forwarded = 0;
    std::thread supervisor([&] {
        if (!output.waitFor("ready\n")) return vm.kill();
        for (int i = 0; i < 50; ++i) forwarded += vm.signal(SIGWINCH); // ignored by default
        forwarded += vm.signal(SIGTERM);
    });
    int status = vm.wait();
    supervisor.join();
    EXPECT_EQ(forwarded, 51);
    EXPECT_EQ(status, 42);
}

// qemu dies with the process that launched it (PR_SET_PDEATHSIG): a launcher killed with
// SIGKILL, which runs no destructor, leaves no VM behind.
TEST_F(QemuVmTest, QemuDiesWithItsLauncher) {
    int report[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    pid_t launcher = ::fork();
    ASSERT_GE(launcher, 0);
    if (launcher == 0) {
        ::close(report[0]);
        try {
            QemuVm vm = QemuVm::launch(config({"/bin/sh", "-c", "echo ready; exec sleep 60"}),
                                       machine().assets, machine().accel);
            Output output(vm); // the guest is up: what dies is a running VM
            pid_t qemu = vm.pid();
            if (output.waitFor("ready\n") && ::write(report[1], &qemu, sizeof qemu) == sizeof qemu)
                for (;;) ::pause();
        } catch (...) {
        }
        ::_exit(1);
    }
    ::close(report[1]);
    pid_t qemu = -1;
    ssize_t n = ::read(report[0], &qemu, sizeof qemu);
    ::close(report[0]);
    int qemuFd = n == sizeof qemu ? static_cast<int>(::syscall(SYS_pidfd_open, qemu, 0)) : -1;
    ASSERT_EQ(::kill(launcher, SIGKILL), 0);
    int status;
    ASSERT_EQ(::waitpid(launcher, &status, 0), launcher);
    ASSERT_EQ(n, ssize_t(sizeof qemu)) << "the launcher could not start a VM";
    ASSERT_GE(qemuFd, 0) << "qemu was gone before its launcher";
    struct pollfd exited = {qemuFd, POLLIN, 0};
    int ready = ::poll(&exited, 1, 30'000); // a safety net, not a measure
    if (ready != 1) ::syscall(SYS_pidfd_send_signal, qemuFd, SIGKILL, nullptr, 0);
    ::close(qemuFd);
    EXPECT_EQ(ready, 1) << "qemu outlived its launcher";
}

// A stop: the program ignores TERM, so the VM is killed; wait() reports 128+SIGKILL, as
// for a container killed with SIGKILL.
TEST_F(QemuVmTest, KillEndsAProgramThatIgnoresTerm) {
    QemuVm vm = QemuVm::launch(
        config({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"}),
        machine().assets, machine().accel);
    Output output(vm);
    ASSERT_TRUE(output.waitFor("ready\n"));
    EXPECT_TRUE(vm.signal(SIGTERM));
    vm.kill();
    EXPECT_EQ(vm.wait(), 128 + SIGKILL);
    EXPECT_EQ(::kill(vm.pid(), 0), -1); // reaped: no qemu left
}

TEST_F(QemuVmTest, TheTimeoutKillsTheVm) {
    VmConfig c = config({"/bin/sleep", "600"});
    c.timeout = std::chrono::seconds(3);
    QemuVm vm = QemuVm::launch(c, machine().assets, machine().accel);
    Output output(vm);
    try {
        vm.wait();
        FAIL() << "a VM outlived its timeout";
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), -ETIMEDOUT);
        EXPECT_NE(std::string(e.what()).find("vm: no exit within 3 s, killed"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(::kill(vm.pid(), 0), -1);
    // The work directory holds what the backend made there, for the caller to remove.
    std::set<std::string> left;
    for (const auto &entry : std::filesystem::directory_iterator(_work.path()))
        left.insert(entry.path().filename().string());
    EXPECT_EQ(left, (std::set<std::string>{"console.log", "job", "qemu.log"}));
}

TEST_F(QemuVmTest, TheProbeVerdictIsCachedAndExplained) {
    std::string cache = MOBILEOPS_BINARY_DIR "/tests/krun/vm-assets/accel.json";
    Accel again = probeAccel(machine().assets, cache);
    EXPECT_EQ(again.name, machine().accel.name);
    EXPECT_EQ(again.why, machine().accel.why);
    if (::access("/sys/module/kvm_pvm", F_OK) == 0) {
        EXPECT_EQ(again.name, "tcg");
        EXPECT_NE(again.why.find("(PVM)"), std::string::npos) << again.why;
    }
}

} // namespace
} // namespace mobileops::krun
