// The size limits of data areas, for real (root): a loop-mounted ext4 image refuses writes
// past its size with ENOSPC, a project quota with EDQUOT; a replace swaps a whole new tree
// in or leaves the old one untouched. No mount or loop device outlives a test.
#include "Quota.h"
#include "TestUtil.h"
#include "VolumeTestTree.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Loop.h>

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mobileops::storage {
namespace {

using test::fillFile;
using test::readAll;
using test::snapshot;
using test::writeAll;

constexpr uint64_t kMiB = 1 << 20;

class Quota : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mounts, quotas)";
    }
    void TearDown() override {
        // A failed test may leave its mounts: report them, then take them away so that the
        // temporary directory can go.
        for (const auto &m : test::mountsUnder(_tmp.path())) {
            ADD_FAILURE() << "mount left behind: " << m;
            ::umount2(m.c_str(), MNT_DETACH);
        }
        for (const auto &l : test::loopsUnderSettled(_tmp.path()))
            ADD_FAILURE() << "loop device left: " << l;
    }

    Area area(const std::string &name, QuotaMechanism mechanism, uint64_t size) {
        Area a;
        a.home = _tmp.path() + "/" + name;
        a.mechanism = mechanism;
        a.size = size;
        EXPECT_EQ(::mkdir(a.home.c_str(), 0700), 0);
        return a;
    }

    test::TempDir _tmp;
};

TEST_F(Quota, LoopAreaRefusesWritesPastItsSizeWithENOSPC) {
    Area a = area("v", QuotaMechanism::Loop, 16 * kMiB);
    auto backend = quotaBackend(a.mechanism);
    backend->create(a);
    EXPECT_TRUE(backend->active(a));
    EXPECT_TRUE(test::mountsUnder(a.data()).size() == 1);
    // Fresh and empty, as a plain directory would be.
    EXPECT_EQ(snapshot(a.data()).size(), 1u);

    size_t written = 0;
    EXPECT_EQ(fillFile(a.data() + "/big", 32 * kMiB, &written), ENOSPC);
    EXPECT_LT(written, 16 * kMiB);
    EXPECT_GT(written, 8 * kMiB);
    Usage u = backend->usage(a);
    EXPECT_LE(u.used, 16 * kMiB);
    ASSERT_TRUE(u.available.has_value());

    backend->destroy(a);
    EXPECT_TRUE(test::mountsUnder(a.home).empty());
    EXPECT_TRUE(test::loopsUnderSettled(a.home).empty());
    EXPECT_EQ(snapshot(a.home).size(), 1u) << "the home holds nothing any more";
}

TEST_F(Quota, LoopAreaComesBackAfterItsMountIsGone) {
    Area a = area("v", QuotaMechanism::Loop, 8 * kMiB);
    auto backend = quotaBackend(a.mechanism);
    backend->create(a);
    writeAll(a.data() + "/kept", "survives the unmount\n");
    backend->deactivate(a); // what a reboot does
    EXPECT_FALSE(backend->active(a));
    EXPECT_TRUE(test::loopsUnderSettled(a.home).empty());
    EXPECT_TRUE(backend->activate(a));
    EXPECT_FALSE(backend->activate(a)) << "a second activate has nothing to do";
    EXPECT_EQ(readAll(a.data() + "/kept"), "survives the unmount\n");
    backend->destroy(a);
}

TEST_F(Quota, LoopReplaceSwapsInTheNewTreeOrLeavesTheOldOne) {
    Area a = area("v", QuotaMechanism::Loop, 16 * kMiB);
    auto backend = quotaBackend(a.mechanism);
    backend->create(a);
    test::makeSampleTree(a.data());
    auto before = snapshot(a.data());

    // A fill that fails half-way: nothing of it shows, nothing of it stays.
    EXPECT_THROW(backend->replace(a,
                                  [](const std::string &dir) {
                                      writeAll(dir + "/partial", "half");
                                      throw sdk::Error(MO_E_INVALID, "archive is truncated");
                                  }),
                 sdk::Error);
    EXPECT_EQ(snapshot(a.data()), before);
    EXPECT_EQ(snapshot(a.home).size(), before.size() + 2) << "home: data/ and volume.img only";

    // A fill bigger than the size fails the same way (ENOSPC inside the fresh image).
    EXPECT_THROW(backend->replace(a,
                                  [](const std::string &dir) {
                                      int err = fillFile(dir + "/huge", 32 * kMiB);
                                      if (err) throw common::sysError("write", err);
                                  }),
                 sdk::Error);
    EXPECT_EQ(snapshot(a.data()), before);

    backend->replace(a, [](const std::string &dir) { writeAll(dir + "/new", "the new tree\n"); });
    auto after = snapshot(a.data());
    EXPECT_EQ(after.size(), 2u);
    EXPECT_EQ(readAll(a.data() + "/new"), "the new tree\n");
    EXPECT_EQ(test::mountsUnder(a.home).size(), 1u);
    backend->destroy(a);
}

TEST_F(Quota, PlainAreaRefusesASizeAndReplacesByExchange) {
    Area sized = area("sized", QuotaMechanism::None, 16 * kMiB);
    EXPECT_THROW(quotaBackend(QuotaMechanism::None)->create(sized), sdk::Error);

    Area a = area("plain", QuotaMechanism::None, 0);
    auto backend = quotaBackend(a.mechanism);
    backend->create(a);
    test::makeSampleTree(a.data());
    auto before = snapshot(a.data());
    EXPECT_THROW(
        backend->replace(a, [](const std::string &) { throw sdk::Error(MO_E_INVALID, "bad"); }),
        sdk::Error);
    EXPECT_EQ(snapshot(a.data()), before);
    EXPECT_EQ(snapshot(a.home).size(), before.size() + 1) << "no .restore-* left";
    backend->replace(a, [](const std::string &dir) { writeAll(dir + "/only", "x"); });
    EXPECT_EQ(snapshot(a.data()).size(), 2u);
    EXPECT_GT(backend->usage(a).used, 0u);
    backend->destroy(a);
}

TEST_F(Quota, ProjectAreaIsRefusedWhereTheFilesystemEnforcesNoProjectQuota) {
    Area a = area("p", QuotaMechanism::Project, 16 * kMiB);
    try {
        quotaBackend(a.mechanism)->create(a);
        FAIL() << "created a project-quota area on a filesystem without prjquota";
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("prjquota"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(a.home), std::string::npos) << e.what();
    }
    EXPECT_EQ(::access(a.data().c_str(), F_OK), -1) << "nothing is left";
    std::string why;
    EXPECT_FALSE(projectQuotaSupported(a.home, &why));
    EXPECT_NE(why.find("quota: loop"), std::string::npos) << why;
}

// An ext4 made with project quotas, mounted -o prjquota: where the kernel has them.
class ProjectQuota : public Quota {
protected:
    void SetUp() override {
        Quota::SetUp();
        if (IsSkipped()) return;
        _image = _tmp.path() + "/prj.img";
        _mnt = _tmp.path() + "/prj";
        ASSERT_EQ(::mkdir(_mnt.c_str(), 0755), 0);
        test::Result r = test::run({common::findProgram("mkfs.ext4"), "-q", "-F", "-I", "256", "-O",
                                    "quota,project", _image, "64M"});
        ASSERT_EQ(r.status, 0) << r.out << r.err;
        common::LoopDevice dev(_image, false);
        if (::mount(dev.path().c_str(), _mnt.c_str(), "ext4", 0, "prjquota") < 0) {
            int err = errno;
            GTEST_SKIP() << "this kernel cannot mount ext4 with project quotas ("
                         << std::strerror(err) << "): it needs CONFIG_QUOTA and CONFIG_QFMT_V2";
        }
    }
    void TearDown() override {
        if (!_mnt.empty() && ::umount2(_mnt.c_str(), 0) < 0 && errno != EINVAL)
            ADD_FAILURE() << "unmount " << _mnt << ": " << std::strerror(errno);
        Quota::TearDown();
    }
    Area projectArea(const std::string &name, uint64_t size) {
        Area a;
        a.home = _mnt + "/" + name;
        a.mechanism = QuotaMechanism::Project;
        a.size = size;
        EXPECT_EQ(::mkdir(a.home.c_str(), 0700), 0);
        return a;
    }
    // Write as an unprivileged user: ext4 lets CAP_SYS_RESOURCE past a hard limit.
    int fillAsNobody(const std::string &path, size_t bytes) {
        pid_t pid = ::fork();
        if (pid == 0) {
            if (::setgid(65534) < 0 || ::setuid(65534) < 0) ::_exit(200);
            ::_exit(fillFile(path, bytes));
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::string _image, _mnt;
};

TEST_F(ProjectQuota, ProjectAreaRefusesWritesPastItsSizeWithEDQUOT) {
    Area a = projectArea("v", 16 * kMiB);
    auto backend = quotaBackend(a.mechanism);
    std::string why;
    ASSERT_TRUE(projectQuotaSupported(a.home, &why)) << why;
    backend->create(a);
    EXPECT_NE(a.projectId, 0u);
    ASSERT_EQ(::chown(a.data().c_str(), 65534, 65534), 0);
    EXPECT_EQ(fillAsNobody(a.data() + "/big", 32 * kMiB), EDQUOT);
    EXPECT_LE(backend->usage(a).used, 16 * kMiB + 64 * 1024);

    // A replace gets an id of its own; the old one's limit is let go.
    uint32_t old = a.projectId;
    backend->replace(a, [](const std::string &dir) { writeAll(dir + "/small", "x"); });
    EXPECT_NE(a.projectId, old);
    EXPECT_EQ(snapshot(a.data()).size(), 2u);
    backend->destroy(a);
}

} // namespace
} // namespace mobileops::storage
