// The fixture the container CLI suites share: a temporary MOBILEOPS_ROOT and RUN, a
// busybox rootfs (tools/make-rootfs.sh), `mo(args)` running the dispatcher against them,
// and a tear-down that deletes every container the test left and fails on a mount left
// below the temporary directory. Needs root.
#pragma once

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

namespace mobileops::test {

class CliTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, mounts, cgroups)";
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
            mo({"container", "delete", "--force", r.out.substr(p, r.out.find('"', p) - p)});
        }
        std::ifstream mounts("/proc/self/mountinfo");
        for (std::string line; std::getline(mounts, line);)
            EXPECT_EQ(line.find(_tmp.path()), std::string::npos) << "mount left behind: " << line;
    }

    // The environment `mo` runs the dispatcher in.
    std::map<std::string, std::string> env() const {
        return {{"MOBILEOPS_ROOT", _tmp.path() + "/root"},
                {"MOBILEOPS_RUN", _tmp.path() + "/run"},
                {"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}};
    }

    Result mo(const std::vector<std::string> &args) {
        std::vector<std::string> argv{dispatcher()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, env());
    }

    TempDir _tmp;
    std::string _rootfs;
};

} // namespace mobileops::test
