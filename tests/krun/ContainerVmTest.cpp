// VM containers through the dispatcher (label vm): `container run|boot --runtime krun`
// boots a real qemu micro-VM (TCG here) under the namespace runtime's monitor, with the
// container CLI fixture's busybox root. The guest assets and the accelerator verdict are
// kept in the build tree (krun.dir) so only the first test of a run prepares them.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

using namespace mobileops::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

class ContainerVm : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (run({"/bin/sh", "-c", "command -v qemu-system-x86_64"}).status != 0)
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
        config("");
    }

    void config(const std::string &extra) {
        std::ofstream(_tmp.path() + "/none.conf")
            << "[krun]\ndir = " MOBILEOPS_BINARY_DIR "/tests/krun/vm-cli\n"
            << extra;
    }

    json jsonOf(const Result &r) {
        json j = json::parse(r.out, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.out << r.err;
        return j;
    }

    // Poll the container's log until `text` shows up (a safety net of two minutes for a
    // guest booting under TCG, not a measure).
    bool awaitLog(const std::string &name, const std::string &text) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
        while (std::chrono::steady_clock::now() < deadline) {
            if (mo({"logs", "show", name}).out.find(text) != std::string::npos) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        return false;
    }
};

TEST_F(ContainerVm, RunEchoesAndReturnsTheExactExitCode) {
    Result r = mo({"container", "run", "--rm", "--runtime", "krun", _rootfs, "/bin/sh", "-c",
                   "echo hello from $(uname -r); exit 3"});
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_NE(r.out.find("hello from "), std::string::npos) << r.out << r.err;
    // The guest's kernel, not the host's.
    Result host = run({"/bin/uname", "-r"});
    EXPECT_EQ(r.out.find(host.out.substr(0, host.out.size() - 1)), std::string::npos) << r.out;

    r = mo({"container", "run", "--rm", "--isolation", "vm", _rootfs, "/no/such/program"});
    EXPECT_EQ(r.status, 127) << r.out << r.err;
    r = mo({"container", "run", "--rm", "--runtime", "krun", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    r = mo({"container", "run", "--rm", "--runtime", "krun", _rootfs, "/bin/sh", "-c",
            "kill -USR1 $$"});
    EXPECT_EQ(r.status, 128 + SIGUSR1) << r.out << r.err;
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out.find("krun"), std::string::npos);
}

// A VM container's program gets what a namespace container's would: podman's rule for a
// non-root user with --cap-add, no_new_privs and the default seccomp profile; a sysctl
// goes to the guest's own kernel, so any key is the program's (vm.* too).
TEST_F(ContainerVm, CapabilitiesAndTheDefaultSeccompProfileApplyInTheGuest) {
    Result r =
        mo({"container", "run", "--rm", "--runtime", "krun", "--user", "1000", "--cap-drop", "ALL",
            "--cap-add", "NET_RAW", "--sysctl", "vm.swappiness=7", _rootfs, "/bin/sh", "-c",
            "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; "
            "umask; id -u; cat /proc/sys/vm/swappiness"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "CapEff:\t0000000000002000\n"
                     "CapBnd:\t0000000000002000\n"
                     "CapAmb:\t0000000000002000\n"
                     "NoNewPrivs:\t1\n"
                     "Seccomp:\t2\n"
                     "0022\n"
                     "1000\n"
                     "7\n")
        << r.err;
}

TEST_F(ContainerVm, EnvironmentWorkdirSizeAndVolumes) {
    fs::create_directories(_tmp.path() + "/rw");
    fs::create_directories(_tmp.path() + "/ro");
    std::ofstream(_tmp.path() + "/ro/given") << "from the host\n";
    Result r = mo({"container",
                   "run",
                   "--rm",
                   "--runtime",
                   "krun",
                   "--vcpus",
                   "1",
                   "--vm-memory",
                   "300Mi",
                   "-e",
                   "GREETING=hi there",
                   "-w",
                   "/tmp",
                   "-v",
                   _tmp.path() + "/rw:/data/rw",
                   "-v",
                   _tmp.path() + "/ro:/data/ro:ro",
                   _rootfs,
                   "/bin/sh",
                   "-c",
                   "echo \"$GREETING\"; pwd; grep -c ^processor /proc/cpuinfo; "
                   "grep MemTotal /proc/meminfo; cat /data/ro/given; echo made > /data/rw/out; "
                   "touch /data/ro/x 2>&1; echo ro=$?"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("hi there\n/tmp\n1\n"), std::string::npos) << r.out;
    // 300 MiB less what the kernel keeps for itself
    auto mem = r.out.find("MemTotal:");
    ASSERT_NE(mem, std::string::npos) << r.out;
    long kb = std::stol(r.out.substr(mem + 9));
    EXPECT_GT(kb, 200 * 1024);
    EXPECT_LE(kb, 300 * 1024);
    EXPECT_NE(r.out.find("from the host"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Read-only file system"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("ro=1"), std::string::npos) << r.out;
    std::ifstream made(_tmp.path() + "/rw/out");
    std::string line;
    EXPECT_TRUE(std::getline(made, line) && line == "made");
    EXPECT_FALSE(fs::exists(_tmp.path() + "/ro/x"));
}

TEST_F(ContainerVm, BootLogsInspectStopOfAProgramIgnoringTermAndDeleteLeavesNothing) {
    Result r = mo({"container", "boot", "--runtime", "krun", "--memory", "900Mi", "vm1", _rootfs,
                   "/bin/sh", "-c", "trap '' TERM; echo started; while true; do sleep 1; done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(awaitLog("vm1", "started")) << mo({"logs", "show", "vm1"}).err;

    json state = jsonOf(mo({"container", "inspect", "vm1"}));
    EXPECT_EQ(state.value("runtime", ""), "krun");
    EXPECT_EQ(state.value("status", ""), "running");
    const std::string id = state.value("id", "");
    EXPECT_NE(mo({"container", "list"}).out.find("vm1"), std::string::npos);

    // The VMM runs in the container's cgroup.
    json top = jsonOf(mo({"container", "top", "vm1", "--json"}));
    pid_t qemu = 0;
    for (const json &p : top)
        if (p.value("command", "").find("qemu") != std::string::npos) qemu = p.value("pid", 0);
    ASSERT_GT(qemu, 0) << top.dump();
    std::ifstream cg("/proc/" + std::to_string(qemu) + "/cgroup");
    std::string cgroups((std::istreambuf_iterator<char>(cg)), {});
    EXPECT_NE(cgroups.find("mobileops/" + id), std::string::npos) << cgroups;

    r = mo({"container", "exec", "vm1", "/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("guest agent"), std::string::npos) << r.err;

    r = mo({"container", "stop", "-t", "1", "vm1"});
    EXPECT_EQ(r.status, 0) << r.err;
    state = jsonOf(mo({"container", "inspect", "vm1"}));
    EXPECT_EQ(state.value("status", ""), "stopped");
    EXPECT_EQ(state.value("exit_code", 0), 128 + SIGKILL);
    EXPECT_NE(::kill(qemu, 0), 0) << "qemu outlived its container";
    EXPECT_NE(mo({"logs", "show", "vm1"}).out.find("started"), std::string::npos);

    r = mo({"container", "delete", "vm1"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(fs::exists(_tmp.path() + "/root/containers/" + id));
    EXPECT_EQ(mo({"container", "list", "--all"}).out.find("vm1"), std::string::npos);
    for (const auto &e : fs::directory_iterator("/proc")) {
        std::ifstream cmd(e.path() / "cmdline");
        std::string text((std::istreambuf_iterator<char>(cmd)), {});
        EXPECT_EQ(text.find(id), std::string::npos) << "left running: " << e.path();
    }
}

TEST_F(ContainerVm, StopSignalReachesTheProgramInTheGuest) {
    Result r = mo({"container", "boot", "--runtime", "krun", "vm2", _rootfs, "/bin/sh", "-c",
                   "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 1; done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(awaitLog("vm2", "ready"));
    r = mo({"container", "stop", "-t", "60", "vm2"});
    EXPECT_EQ(r.status, 0) << r.err;
    json state = jsonOf(mo({"container", "inspect", "vm2"}));
    EXPECT_EQ(state.value("exit_code", 0), 7) << state.dump();
    EXPECT_NE(mo({"logs", "show", "vm2"}).out.find("got TERM"), std::string::npos);
    EXPECT_EQ(mo({"container", "wait", "vm2"}).status, 7);
}

// A program that does not handle TERM dies of it, as in a namespace container: through
// `kill --all` (which signals qemu too) and through `stop`, the exit is 128+15.
TEST_F(ContainerVm, KillAllAndStopOfAProgramDyingOfTermRecord143) {
    for (const char *how : {"kill", "stop"}) {
        const std::string name = std::string("vm-") + how;
        Result r = mo({"container", "boot", "--runtime", "krun", name, _rootfs, "/bin/sh", "-c",
                       "echo ready; while true; do sleep 1; done"});
        ASSERT_EQ(r.status, 0) << r.err;
        ASSERT_TRUE(awaitLog(name, "ready"));
        r = std::string(how) == "kill" ? mo({"container", "kill", "--all", "-s", "TERM", name})
                                       : mo({"container", "stop", "-t", "60", name});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(mo({"container", "wait", name}).status, 128 + SIGTERM) << how;
        json state = jsonOf(mo({"container", "inspect", name}));
        EXPECT_EQ(state.value("status", ""), "stopped") << how;
        EXPECT_EQ(state.value("exit_code", 0), 128 + SIGTERM) << how << ": " << state.dump();
        EXPECT_EQ(state.value("signal", 0), SIGTERM) << how << ": " << state.dump();
        EXPECT_EQ(mo({"logs", "show", name}).out.find("mobileops-vmm"), std::string::npos)
            << mo({"logs", "show", name}).out;
        EXPECT_EQ(mo({"container", "delete", name}).status, 0);
    }
}

TEST_F(ContainerVm, AnImageRootIsSharedIntoTheGuest) {
    ASSERT_EQ(mo({"image", "build-rootfs", "-q", _rootfs, "bb:vm"}).status, 0);
    Result r = mo({"container", "run", "--rm", "--runtime", "krun", "bb:vm", "/bin/sh", "-c",
                   "echo written > /made-in-guest && cat /made-in-guest && ls /bin/busybox"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("written\n/bin/busybox"), std::string::npos) << r.out;
}

// A layered image (busybox below three layers with whiteouts, an opaque directory, hard
// links, changed modes and owners) looks the same in a VM container as in a namespace
// container, and in a VM booted on the store's flattened copy (`image unpack`).
TEST_F(ContainerVm, AVmSeesTheImageFlattenedExactlyAsTheOverlayShowsIt) {
    const std::string base = _tmp.path() + "/base.tar";
    ASSERT_EQ(run({"/usr/bin/tar", "-C", _rootfs, "-cf", base, "."}).status, 0);
    ASSERT_EQ(run({"/usr/bin/python3", MOBILEOPS_SOURCE_DIR "/tests/storage/archives.py",
                   "flatten-layout", _tmp.path() + "/layout", base})
                  .status,
              0);
    Result r = mo({"image", "load", "-q", "--allow-devices", _tmp.path() + "/layout"});
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string list =
        "cd / && for f in $(find a o h m own x p s setuid | sort); do "
        "stat -c '%n %a %u:%g %s %F' $f; done; cat a/gone h/f1 h/f2 h/g2 o/fresh";
    Result ns = mo({"container", "run", "--rm", "example.test/flat:1", "/bin/sh", "-c", list});
    ASSERT_EQ(ns.status, 0) << ns.err;
    EXPECT_NE(ns.out.find("a/gone 644 0:0 5 regular file"), std::string::npos) << ns.out;
    EXPECT_EQ(ns.out.find("a/sub"), std::string::npos) << ns.out;
    EXPECT_EQ(ns.out.find("o/old"), std::string::npos) << ns.out;
    EXPECT_NE(ns.out.find("m 600 "), std::string::npos) << ns.out;
    EXPECT_NE(ns.out.find("own 640 1000:1002"), std::string::npos) << ns.out;
    EXPECT_NE(ns.out.find("back\ntwo\none\nsame\nfresh\n"), std::string::npos) << ns.out;

    EXPECT_TRUE(jsonOf(mo({"image", "inspect", "example.test/flat:1"}))["flattened"].is_null());
    Result vm = mo({"container", "run", "--rm", "--runtime", "krun", "example.test/flat:1",
                    "/bin/sh", "-c", list});
    EXPECT_EQ(vm.status, 0) << vm.err;
    EXPECT_EQ(vm.out, ns.out);
    // The VM container's root is the overlay over the image's flattened copy, made once.
    json flattened = jsonOf(mo({"image", "inspect", "example.test/flat:1"}))["flattened"];
    ASSERT_TRUE(flattened.is_object());
    EXPECT_TRUE(fs::exists(flattened.value("path", "") + "/own")) << flattened.dump();

    ASSERT_EQ(mo({"image", "unpack", "example.test/flat:1", _tmp.path() + "/flat"}).status, 0);
    Result flat = mo({"vm", "run", _tmp.path() + "/flat", "/bin/sh", "-c", list});
    EXPECT_EQ(flat.status, 0) << flat.err;
    EXPECT_EQ(flat.out, ns.out);
}

// `vm run` in the foreground: a ^C (SIGINT to the command) reaches the program in the
// guest, which dies of it; the command exits 130 and leaves no VM directory behind.
TEST_F(ContainerVm, InterruptingVmRunStopsTheProgramInTheGuest) {
    auto vmDirs = [] {
        std::set<std::string> dirs;
        std::error_code ec;
        for (auto it = fs::directory_iterator(MOBILEOPS_BINARY_DIR "/tests/krun/vm-cli/run", ec);
             !ec && it != fs::directory_iterator(); ++it)
            dirs.insert(it->path().string());
        return dirs;
    };
    const auto before = vmDirs();
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    std::vector<std::string> args = {dispatcher(),
                                     "vm",
                                     "run",
                                     _rootfs,
                                     "/bin/sh",
                                     "-c",
                                     "echo ready; while true; do sleep 1; done"};
    std::vector<char *> argv;
    for (auto &a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    auto environment = env();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        for (const auto &[k, v] : environment) ::setenv(k.c_str(), v.c_str(), 1);
        ::dup2(out[1], 1);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string got;
    char buf[256];
    // Up to two minutes for a TCG boot (a safety net, not a measure).
    for (int i = 0; i < 1200 && got.find("ready\n") == std::string::npos; ++i) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (::poll(&p, 1, 100) == 1) {
            ssize_t n = ::read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            got.append(buf, static_cast<size_t>(n));
        }
    }
    EXPECT_NE(got.find("ready\n"), std::string::npos) << got;
    ::kill(pid, SIGINT);
    int status = 0;
    int waited = 0;
    for (; waited < 1200 && ::waitpid(pid, &status, WNOHANG) == 0; ++waited)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (waited == 1200) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        ADD_FAILURE() << "vm run did not end on SIGINT";
    }
    ::close(out[0]);
    EXPECT_TRUE(WIFEXITED(status)) << "the command died of the signal itself";
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
    EXPECT_EQ(vmDirs(), before) << "vm run left its VM directory";
}

TEST_F(ContainerVm, AutoFallsBackToNamespacesWithItsReason) {
    config("kernel = /nonexistent/vmlinuz\n");
    Result r = mo({"container", "run", "--rm", "--isolation", "auto", _rootfs, "/bin/sh", "-c",
                   "echo in $(uname -r)"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("isolation: namespaces (no micro-VM: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("/nonexistent/vmlinuz"), std::string::npos) << r.err;
    Result host = run({"/bin/uname", "-r"});
    EXPECT_NE(r.out.find("in " + host.out), std::string::npos) << r.out;
}

TEST_F(ContainerVm, WhatAVmCannotDoIsRefusedByName) {
    struct Case {
        std::vector<std::string> flags;
        std::string message;
    } cases[] = {
        {{"--vcpus", "0"}, "--vcpus"},
        {{"--vm-memory", "1Mi"}, "below the minimum `64Mi`"},
        {{"--isolation", "bogus"}, "expected `vm`, `namespace` or `auto`"},
        {{"--isolation", "vm", "--runtime", "namespace"}, "conflicts with --runtime"},
        {{"--runtime", "namespace", "--vcpus", "2"}, "need a VM runtime"},
        {{"--runtime", "krun", "--userns", "100000:65536"}, "user namespace"},
        {{"--runtime", "krun", "--volatile"}, "volatile root"},
        {{"--runtime", "krun", "--network", "host"}, "host's network"},
        {{"--runtime", "krun", "-t"}, "terminal"},
    };
    for (const auto &c : cases) {
        std::vector<std::string> args = {"container", "run", "--rm"};
        args.insert(args.end(), c.flags.begin(), c.flags.end());
        args.insert(args.end(), {_rootfs, "/bin/true"});
        Result r = mo(args);
        EXPECT_NE(r.status, 0) << c.flags[0];
        EXPECT_NE(r.err.find(c.message), std::string::npos) << c.flags[0] << ": " << r.err;
    }
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

} // namespace
