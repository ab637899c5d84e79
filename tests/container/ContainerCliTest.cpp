// `mobileops container ...` through the dispatcher, the workflow script and the nsruntime
// plugin, on a busybox rootfs built by tools/make-rootfs.sh. Needs root.
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <fstream>
#include <unistd.h>

using namespace mobileops::test;

namespace {

class ContainerCli : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, mounts)";
        Result r = run({MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh", _tmp.path() + "/rootfs"});
        ASSERT_EQ(r.status, 0) << r.err;
        _rootfs = _tmp.path() + "/rootfs";
    }

    void TearDown() override {
        if (_rootfs.empty()) return;
        // Whatever a failed test left: delete every container of this root.
        Result r = mo({"container", "list", "--all", "--json"});
        for (size_t p = 0; (p = r.out.find("\"name\": \"", p)) != std::string::npos;) {
            p += 9;
            std::string name = r.out.substr(p, r.out.find('"', p) - p);
            mo({"container", "delete", "--force", name});
        }
        std::ifstream mounts("/proc/self/mountinfo");
        std::string line;
        while (std::getline(mounts, line))
            EXPECT_EQ(line.find(_tmp.path()), std::string::npos) << "mount left behind: " << line;
    }

    Result mo(const std::vector<std::string> &args) {
        std::vector<std::string> argv{dispatcher()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, {{"MOBILEOPS_ROOT", _tmp.path() + "/root"},
                          {"MOBILEOPS_RUN", _tmp.path() + "/run"},
                          {"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    }

    TempDir _tmp;
    std::string _rootfs;
};

TEST_F(ContainerCli, RunShowsOutputAndExitsWithTheContainersStatus) {
    Result r = mo({"container", "run", "--rm", "--hostname", "box", _rootfs, "/bin/sh", "-c",
                   "echo pid=$$ host=$(hostname); exit 3"});
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_EQ(r.out, "pid=1 host=box\n");
}

TEST_F(ContainerCli, MissingCommandExits127WithOneLine) {
    Result r = mo({"container", "run", "--rm", _rootfs, "/bin/nosuch"});
    EXPECT_EQ(r.status, 127);
    EXPECT_EQ(r.err, "mobileops: exec `/bin/nosuch`: No such file or directory\n");
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

TEST_F(ContainerCli, KilledBySignalGives128PlusN) {
    Result r =
        mo({"container", "run", "--rm", "--init", _rootfs, "/bin/sh", "-c", "kill -TERM $$"});
    EXPECT_EQ(r.status, 128 + 15) << r.err;
}

TEST_F(ContainerCli, BadInputIsNamed) {
    Result r = mo({"container", "run", "--rm", _tmp.path() + "/nope", "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("rootfs `" + _tmp.path() + "/nope`: No such file or directory"),
              std::string::npos)
        << r.err;
    r = mo({"container", "run", "--rm", "--ulimit", "nofile=abc", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--ulimit `nofile=abc`"), std::string::npos) << r.err;
    r = mo({"container", "run", "--rm", "--user", "x:y:z", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--user `x:y:z`"), std::string::npos) << r.err;
    r = mo({"container", "create", "a/b", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("a/b"), std::string::npos) << r.err;
    r = mo({"container", "run", "--bogus", _rootfs});
    EXPECT_EQ(r.status, 2);
}

TEST_F(ContainerCli, BootListExecStopDelete) {
    Result r = mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "boot", "web", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("`web` is already in use"), std::string::npos) << r.err;
    r = mo({"container", "list"});
    EXPECT_NE(r.out.find("web"), std::string::npos);
    EXPECT_NE(r.out.find("running"), std::string::npos) << r.out;
    r = mo({"container", "exec", "web", "/bin/sh", "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; exit 4"});
    EXPECT_EQ(r.status, 4) << r.err;
    EXPECT_EQ(r.out, "/bin/sleep 1000 ");
    r = mo({"container", "delete", "web"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("running"), std::string::npos) << r.err;
    r = mo({"container", "stop", "--time", "1", "web"}); // sleep as PID 1 ignores SIGTERM
    EXPECT_EQ(r.status, 0) << r.err;
    r = mo({"container", "inspect", "web"});
    EXPECT_NE(r.out.find("\"status\": \"stopped\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"exit_code\": 137"), std::string::npos) << r.out;
    r = mo({"container", "delete", "web"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

} // namespace
