// `mobileops container ... --init-system / --hw-access` end to end through the dispatcher,
// the workflow script, the nsruntime plugin and the cgroup service. Needs root.
// SystemModeCli.Systemd* boot Debian 12 with systemd (tools/make-debian-rootfs.sh, cached
// under /var/cache/mobileops-test): CTest labels `slow` and `root`.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

using namespace mobileops::test;
using nlohmann::json;

namespace {

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::set<std::string> listing(const std::string &dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); ++it)
        out.insert(it->path().filename());
    return out;
}

// Hierarchies under /sys/fs/cgroup that hold the container's cgroup `mobileops/<id>`.
std::vector<std::string> cgroupDirsOf(const std::string &id) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto &h : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
        auto dir = h.path() / "mobileops" / id;
        if (std::filesystem::exists(dir)) out.push_back(dir);
    }
    if (std::filesystem::exists("/sys/fs/cgroup/mobileops/" + id))
        out.push_back("/sys/fs/cgroup/mobileops/" + id);
    return out;
}

class SystemModeCli : public CliTest {
protected:
    json inspect(const std::string &name) {
        Result r = mo({"container", "inspect", name});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.status == 0 ? json::parse(r.out) : json::object();
    }

    // Run `check` until `ok` accepts its result or `seconds` pass; the last result.
    template <typename Check, typename Ok>
    auto poll(Check check, Ok ok, int seconds) -> decltype(check()) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        for (;;) {
            auto r = check();
            if (ok(r) || std::chrono::steady_clock::now() > deadline) return r;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }

    void writeScript(const std::string &path, const std::string &text) {
        std::ofstream(_rootfs + path) << text;
        ::chmod((_rootfs + path).c_str(), 0755);
    }
};

// An init that reports what it was given, then waits for signals: the one `stop` sends
// ends it (recorded in the rootfs's /var/tmp, which outlives the container's tmpfs /run).
const char *const kTrapInit = R"(#!/bin/sh
for s in 37 38 TERM INT HUP USR1 USR2; do trap "echo $s > /var/tmp/stop-signal; exit 0" $s; done
while :; do sleep 1 & wait $!; done
)";

} // namespace

TEST_F(SystemModeCli, InitSystemGivesTheInitWhatItNeedsAndStopsItWithSigrtmin3) {
    writeScript("/sbin/trap-init", kTrapInit);
    Result r = mo({"container", "boot", "--init-system", "sys", _rootfs, "/sbin/trap-init"});
    ASSERT_EQ(r.status, 0) << r.err;
    json state = inspect("sys");
    EXPECT_EQ(state["spec"]["stopSignal"], SIGRTMIN + 3);
    EXPECT_EQ(state["spec"]["initSystem"], true);
    const std::string id = state.value("id", "");

    r = mo({"container", "exec", "sys", "/bin/sh", "-c",
            "tr '\\0' '\\n' < /proc/1/environ | grep ^container=; "
            "cat /run/systemd/container; "
            "grep -E ' /(run|run/lock|tmp|sys/fs/cgroup) ' /proc/self/mountinfo | "
            "awk '{print $5, $9, substr($6, 1, 2)}'; "
            "mkdir /sys/fs/cgroup/probe && rmdir /sys/fs/cgroup/probe && echo cgroup-writable; "
            "stat -L -c 'stdin %t:%T' /proc/1/fd/0"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "container=mobileops\nmobileops\n/run tmpfs rw\n/run/lock tmpfs rw\n"
                     "/tmp tmpfs rw\n/sys/fs/cgroup cgroup2 rw\ncgroup-writable\nstdin 1:3\n");
    EXPECT_FALSE(std::filesystem::exists(_rootfs + "/run/systemd"))
        << "/run/systemd/container went into the rootfs";
    EXPECT_FALSE(cgroupDirsOf(id).empty()) << "the container has its own cgroup";

    r = mo({"container", "stop", "--time", "60", "sys"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(slurp(_rootfs + "/var/tmp/stop-signal"), std::to_string(SIGRTMIN + 3) + "\n");
    state = inspect("sys");
    EXPECT_EQ(state["status"], "stopped");
    EXPECT_EQ(state["exit_code"], 0) << "the init exited by itself, before the stop timeout";
    EXPECT_EQ(state["signal"], 0);
    EXPECT_EQ(cgroupDirsOf(id), std::vector<std::string>{}) << "its cgroup is gone";
}

TEST_F(SystemModeCli, InitSystemRunsSbinInitByDefaultAndKeepsTheUsersStopSignal) {
    // busybox init: its sysinit action proves it ran; SIGUSR2 is its power-off.
    std::ofstream(_rootfs + "/etc/inittab")
        << "::sysinit:/bin/touch /var/tmp/sysinit-ran\n::respawn:/bin/sleep 1000\n";
    std::string spec = _tmp.file("box.yaml", "apiVersion: v1\nkind: VirtualRoot\n"
                                             "spec:\n  initSystem: true\n  stopSignal: SIGUSR2\n");
    Result r = mo({"container", "boot", "-f", spec, "box", _rootfs});
    ASSERT_EQ(r.status, 0) << r.err;
    json state = inspect("box");
    EXPECT_EQ(state["spec"]["process"]["args"], json::array({"/sbin/init"}));
    EXPECT_EQ(state["spec"]["stopSignal"], SIGUSR2);
    r = poll(
        [&] {
            return mo({"container", "exec", "box", "/bin/cat", "/proc/1/comm"});
        },
        [&](const Result &) { return std::filesystem::exists(_rootfs + "/var/tmp/sysinit-ran"); },
        30);
    EXPECT_EQ(r.out, "init\n");
    EXPECT_TRUE(std::filesystem::exists(_rootfs + "/var/tmp/sysinit-ran"));
    r = mo({"container", "stop", "--time", "60", "box"});
    EXPECT_EQ(r.status, 0) << r.err;
    state = inspect("box");
    // busybox init powered off on SIGUSR2 (reboot(2) in a PID namespace ends its init);
    // SIGRTMIN+3, which busybox does not know, would have waited for the SIGKILL.
    EXPECT_EQ(state["exit_code"], 0) << state.dump();
    EXPECT_EQ(state["signal"], 0) << state.dump();
}

TEST_F(SystemModeCli, InitAndInitSystemExcludeEachOther) {
    Result r = mo({"container", "run", "--rm", "--init", "--init-system", _rootfs});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err, "mobileops: process.init: the built-in init (--init) cannot run an init "
                     "system (--init-system): the init system is PID 1\n");
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

TEST_F(SystemModeCli, HardwareAccessShowsTheHostsDevicesWithALoudWarning) {
    auto before = listing("/dev");
    // A node of the host's that the private /dev lacks (loop-control needs the loop module).
    const std::string node = before.count("loop-control") ? "loop-control" : "kmsg";
    // `: >>` opens the attribute for writing and writes nothing: no device changes state.
    const std::string probe = "test -c /dev/" + node +
                              " && echo host-node; "
                              "awk '$5 == \"/dev\" {print $9}' /proc/self/mountinfo; "
                              "(: >> /sys/class/net/lo/tx_queue_len) 2>/dev/null && "
                              "echo class-rw; "
                              "(: >> /sys/devices/virtual/net/lo/tx_queue_len) 2>/dev/null && "
                              "echo devices-rw; touch /sys/probe 2>/dev/null || echo sys-ro";
    Result r = mo({"container", "run", "--rm", "--hw-access", _rootfs, "/bin/sh", "-c", probe});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "host-node\ndevtmpfs\nclass-rw\ndevices-rw\nsys-ro\n") << node;
    EXPECT_NE(r.err.find("warning: HARDWARE ACCESS"), std::string::npos) << r.err;
    EXPECT_EQ(listing("/dev"), before) << "the host's /dev changed";

    r = mo({"container", "run", "--rm", _rootfs, "/bin/sh", "-c", probe});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "tmpfs\nsys-ro\n");
    EXPECT_EQ(r.err.find("HARDWARE"), std::string::npos) << r.err;
}

TEST_F(SystemModeCli, SystemdBootsToRunningAndHaltsOnStop) {
    const char *cached = std::getenv("MOBILEOPS_DEBIAN_ROOTFS");
    const std::string debian = cached ? cached : "/var/cache/mobileops-test/debian-bookworm";
    auto t0 = std::chrono::steady_clock::now();
    Result made = run({MOBILEOPS_SOURCE_DIR "/tools/make-debian-rootfs.sh", debian});
    if (made.status != 0)
        GTEST_SKIP() << "no Debian rootfs (tools/make-debian-rootfs.sh " << debian
                     << "): " << made.err.substr(made.err.size() > 400 ? made.err.size() - 400 : 0);
    auto seconds = [](auto from) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
    };
    std::cout << "[ info ] Debian rootfs ready in " << seconds(t0) << " s\n";

    auto t1 = std::chrono::steady_clock::now();
    Result r = mo({"container", "boot", "--init-system", "deb", debian});
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string id = inspect("deb").value("id", "");
    r = poll(
        [&] {
            return mo({"container", "exec", "deb", "systemctl", "is-system-running"});
        },
        [](const Result &x) { return x.out == "running\n" || x.out == "degraded\n"; }, 120);
    EXPECT_TRUE(r.out == "running\n" || r.out == "degraded\n") << r.out << r.err;
    std::cout << "[ info ] systemd reached `" << r.out.substr(0, r.out.find('\n')) << "` in "
              << seconds(t1) << " s\n";
    if (r.out == "degraded\n")
        std::cout << mo({"container", "exec", "deb", "systemctl", "--failed", "--no-pager"}).out;

    r = mo({"container", "exec", "deb", "systemd-detect-virt", "--container"});
    EXPECT_EQ(r.out, "container-other\n") << r.err; // systemd 252 knows no `mobileops`
    r = mo({"container", "exec", "deb", "sh", "-c",
            "systemctl show --property=ActiveState multi-user.target; cat /proc/1/comm"});
    EXPECT_EQ(r.out, "ActiveState=active\nsystemd\n") << r.err;

    auto t2 = std::chrono::steady_clock::now();
    r = mo({"container", "stop", "--time", "60", "deb"});
    EXPECT_EQ(r.status, 0) << r.err;
    std::cout << "[ info ] stopped in " << seconds(t2) << " s\n";
    json state = inspect("deb");
    EXPECT_EQ(state["status"], "stopped");
    // systemd halted and exited by itself on SIGRTMIN+3: not SIGKILLed at the timeout.
    EXPECT_EQ(state["exit_code"], 0) << state.dump();
    EXPECT_EQ(state["signal"], 0);
    EXPECT_EQ(cgroupDirsOf(id), std::vector<std::string>{}) << "its cgroup is gone";
}
