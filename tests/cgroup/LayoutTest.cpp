// Layout detection from mountinfo and /proc/self/cgroup text, and on fake trees.
#include "Layout.h"
#include "FakeCgroupFs.h"

#include <gtest/gtest.h>

namespace mobileops::cgroup {
namespace {

using testing::FakeCgroupFs;

TEST(Layout, HybridPlacesEachControllerOnItsOwner) {
    FakeCgroupFs fake(testing::hybridMounts());
    Layout l = fake.layout();
    EXPECT_EQ(l.mode(), Mode::Hybrid);
    ASSERT_NE(l.unified(), nullptr);
    EXPECT_EQ(l.unified()->mountpoint, fake.root() + "/sys/fs/cgroup/unified");
    ASSERT_NE(l.owner("memory"), nullptr);
    EXPECT_EQ(l.owner("memory")->version, 1);
    EXPECT_EQ(l.owner("memory")->mountpoint, fake.root() + "/sys/fs/cgroup/memory");
    EXPECT_EQ(l.owner("memory")->ownPath, "/process_api/abc");
    EXPECT_EQ(l.owner("io"), l.owner("blkio"));
    EXPECT_EQ(l.owner("io")->version, 1);
    EXPECT_EQ(l.owner("hugetlb"), l.unified());
    EXPECT_NE(l.owner("cpu"), l.owner("cpuacct"));
    // cpu cpuacct cpuset memory devices freezer blkio pids + unified; not name=systemd.
    EXPECT_EQ(l.used().size(), 9u);
    EXPECT_EQ(l.withoutUnified().mode(), Mode::Legacy);
    EXPECT_EQ(l.withoutUnified().unified(), nullptr);
    EXPECT_NE(l.summary().find("hybrid: v1"), std::string::npos) << l.summary();
    EXPECT_NE(l.summary().find("cgroup2 at"), std::string::npos) << l.summary();
    EXPECT_EQ(l.describe()["mode"], "hybrid");
}

TEST(Layout, UnifiedOwnsEverything) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Layout l = fake.layout();
    EXPECT_EQ(l.mode(), Mode::Unified);
    for (const char *c : {"cpu", "cpuacct", "memory", "pids", "cpuset", "blkio", "io"}) {
        ASSERT_NE(l.owner(c), nullptr) << c;
        EXPECT_EQ(l.owner(c)->version, 2) << c;
    }
    EXPECT_EQ(l.owner("freezer"), nullptr); // cgroup.freeze is core, not a controller
    EXPECT_EQ(l.unified()->ownPath, "/user.slice");
    EXPECT_EQ(l.used().size(), 1u);
}

TEST(Layout, LegacyCoMountedCpuAndCpuacct) {
    FakeCgroupFs fake(testing::legacyMounts());
    Layout l = fake.layout();
    EXPECT_EQ(l.mode(), Mode::Legacy);
    EXPECT_EQ(l.owner("cpu"), l.owner("cpuacct"));
    EXPECT_EQ(l.owner("cpuset"), nullptr);
    EXPECT_EQ(l.unified(), nullptr);
    EXPECT_EQ(l.used().size(), 4u);
}

TEST(Layout, NoneWithoutCgroupMounts) {
    Layout l = Layout::parse("22 1 0:21 / /proc rw - proc proc rw\n", "");
    EXPECT_EQ(l.mode(), Mode::None);
    EXPECT_TRUE(l.used().empty());
    EXPECT_EQ(l.summary(), "no cgroup hierarchy is mounted");
}

TEST(Layout, MountRootAndEscapesAndOptionalFields) {
    // A cgroup namespace or bind mount shows only part of the hierarchy; a space in the
    // mountpoint is \040; optional fields (shared:N) come before the separator.
    std::string mi = "40 31 0:35 /docker/abc /sys/fs/cgroup/my\\040pids rw,relatime shared:9 "
                     "master:2 - cgroup cgroup rw,pids\n";
    Layout l = Layout::parse(mi, "8:pids:/docker/abc\n");
    ASSERT_EQ(l.hierarchies().size(), 1u);
    const Hierarchy &h = l.hierarchies()[0];
    EXPECT_EQ(h.mountpoint, "/sys/fs/cgroup/my pids");
    EXPECT_EQ(h.ownPath, "/docker/abc");
    EXPECT_EQ(h.dirOf("/docker/abc/ct"), "/sys/fs/cgroup/my pids/ct");
    EXPECT_EQ(h.dirOf("/docker/abc"), "/sys/fs/cgroup/my pids");
}

TEST(Layout, FirstMountOfAHierarchyWins) {
    std::string mi = "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                     "90 80 0:29 / /mnt/again rw - cgroup cgroup rw,memory\n";
    Layout l = Layout::parse(mi, "4:memory:/\n");
    ASSERT_EQ(l.hierarchies().size(), 1u);
    EXPECT_EQ(l.hierarchies()[0].mountpoint, "/sys/fs/cgroup/memory");
}

TEST(Layout, Paths) {
    EXPECT_EQ(normalizePath(""), "/");
    EXPECT_EQ(normalizePath("a//b/"), "/a/b");
    EXPECT_EQ(joinPath("/", "mobileops/x"), "/mobileops/x");
    EXPECT_EQ(joinPath("/process_api/abc", "t/ct"), "/process_api/abc/t/ct");
}

TEST(Layout, ThisHostParses) {
    Layout l = Layout::detect();
    // Whatever the host is, detection must not throw and must describe itself.
    EXPECT_FALSE(l.summary().empty());
}

} // namespace
} // namespace mobileops::cgroup
