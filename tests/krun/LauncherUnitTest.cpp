// mobileops-vmm, the process a VM container runs on the host, with the libkrun backend
// against the recording stand-in library (libkrun is not packaged for Debian 12): the
// description the namespace runtime writes (vm.json) becomes libkrun's calls, the VM's exit
// status the launcher's, and a signal to the launcher reaches the VM. No privilege needed.
#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

using nlohmann::json;

namespace {

class LauncherWithLibkrunStandIn : public ::testing::Test {
protected:
    void SetUp() override {
        std::filesystem::create_directories(dir.path() + "/root");
        description = {{"backend", "libkrun"},
                       {"library", FAKE_LIBKRUN},
                       {"vcpus", 1},
                       {"memory", 256 << 20},
                       {"rootfs", dir.path() + "/root"},
                       {"readonly", false},
                       {"hostname", "guest"},
                       {"mounts", json::array()},
                       {"process",
                        {{"args", {"/bin/echo", "hello"}},
                         {"env", {"PATH=/bin", "A=1"}},
                         {"cwd", "/tmp"},
                         {"uid", 0},
                         {"gid", 0},
                         {"groups", json::array()},
                         {"rlimits", json::array()}}},
                       {"id", "0123"},
                       {"workDir", dir.path() + "/vm"}};
    }

    std::string write() {
        std::string path = dir.path() + "/vm.json";
        std::ofstream(path) << description.dump();
        return path;
    }

    // What the launcher told the runtime about the program's end (vm-exit.json).
    json exitReport() {
        std::ifstream in(dir.path() + "/vm-exit.json");
        if (!in) return nullptr;
        return json::parse(in, nullptr, false);
    }

    std::string calls() {
        std::ifstream in(dir.path() + "/calls.log");
        return std::string((std::istreambuf_iterator<char>(in)), {});
    }

    mobileops::test::TempDir dir;
    json description;
};

TEST_F(LauncherWithLibkrunStandIn, TheDescriptionBecomesLibkrunsCallsAndTheExitStatusComesBack) {
    auto r = mobileops::test::run(
        {MOBILEOPS_VMM, write()},
        {{"FAKE_LIBKRUN_LOG", dir.path() + "/calls.log"}, {"FAKE_LIBKRUN_EXIT", "3"}});
    EXPECT_EQ(r.status, 3) << r.err;
    std::string log = calls();
    EXPECT_NE(log.find("krun_set_vm_config 1 1 256"), std::string::npos) << log;
    EXPECT_NE(log.find("krun_set_root 1 " + dir.path() + "/root"), std::string::npos) << log;
    EXPECT_NE(log.find("krun_set_workdir 1 /tmp"), std::string::npos) << log;
    EXPECT_NE(log.find("krun_set_exec 1 /bin/echo [hello] envp [PATH=/bin] [A=1]"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("krun_start_enter"), std::string::npos) << log;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/vm")) << "the launcher's scratch is gone";
    EXPECT_EQ(exitReport(), (json{{"exitCode", 3}, {"signal", 0}}));
}

TEST_F(LauncherWithLibkrunStandIn, ASignalToTheLauncherReachesTheVm) {
    std::string path = write();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::setenv("FAKE_LIBKRUN_LOG", (dir.path() + "/calls.log").c_str(), 1);
        ::setenv("FAKE_LIBKRUN_HANG", "1", 1);
        ::execl(MOBILEOPS_VMM, MOBILEOPS_VMM, path.c_str(), nullptr);
        ::_exit(127);
    }
    // Once the VM is entered, SIGTERM to the launcher goes on to the VM's process.
    for (int i = 0; i < 500 && calls().find("krun_start_enter") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ::kill(pid, SIGTERM);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
    // Killed by the signal, not exited with 143: the runtime can record the signal.
    EXPECT_EQ(exitReport(), (json{{"exitCode", 128 + SIGTERM}, {"signal", SIGTERM}}));
}

TEST_F(LauncherWithLibkrunStandIn, ABrokenDescriptionExits125NamingWhy) {
    description.erase("rootfs");
    // A report of an earlier run goes; a failure to make the VM writes none.
    std::ofstream(dir.path() + "/vm-exit.json") << R"({"exitCode":0,"signal":0})";
    auto r = mobileops::test::run({MOBILEOPS_VMM, write()});
    EXPECT_EQ(r.status, 125);
    EXPECT_TRUE(exitReport().is_null()) << exitReport().dump();
    EXPECT_NE(r.err.find("mobileops-vmm: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("rootfs"), std::string::npos) << r.err;
    r = mobileops::test::run({MOBILEOPS_VMM});
    EXPECT_EQ(r.status, 2);
}

} // namespace
