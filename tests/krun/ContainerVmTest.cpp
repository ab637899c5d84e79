// VM containers through the dispatcher (label vm): `container run|boot --runtime krun`
// boots a real qemu micro-VM (TCG here) under the namespace runtime's monitor, with the
// container CLI fixture's busybox root. The guest assets and the accelerator verdict are
// kept in the build tree (krun.dir) so only the first test of a run prepares them.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
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

TEST_F(ContainerVm, AnImageRootIsSharedIntoTheGuest) {
    ASSERT_EQ(mo({"image", "build-rootfs", "-q", _rootfs, "bb:vm"}).status, 0);
    Result r = mo({"container", "run", "--rm", "--runtime", "krun", "bb:vm", "/bin/sh", "-c",
                   "echo written > /made-in-guest && cat /made-in-guest && ls /bin/busybox"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("written\n/bin/busybox"), std::string::npos) << r.out;
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
