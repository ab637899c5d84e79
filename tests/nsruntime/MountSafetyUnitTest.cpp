// The volatile-root and volume sequences over the recording fake: no root needed. The
// real-kernel side of the same is MountSafetyTest.cpp.
#include "Errors.h"
#include "Mounts.h"
#include "RecordingSyscalls.h"

#include <gtest/gtest.h>

using namespace mobileops::nsruntime;
using mobileops::nsruntime::testing::RecordingSyscalls;

namespace {

ContainerSpec volatileSpec() {
    ContainerSpec spec;
    spec.rootfs = "/rootfs";
    spec.volatileRoot = true;
    spec.mountPoint = "/run/mo/rootfs";
    spec.process.args = {"/bin/true"};
    return spec;
}

RecordingSyscalls fakeKernel() {
    RecordingSyscalls sys;
    for (const char *d :
         {"/rootfs", "/rootfs/proc", "/rootfs/sys", "/rootfs/dev", "/run/mo/rootfs", "/srv/data"})
        sys.addDir(d);
    return sys;
}

} // namespace

TEST(VolatileRoot, OverlayOnATmpfsOfTheNamespaceThenEverythingOnTheOverlay) {
    auto sys = fakeKernel();
    auto spec = volatileSpec();
    Mounts(sys, spec).setup();

    ASSERT_GE(sys.calls.size(), 6u);
    EXPECT_EQ(sys.calls[0], "mount - / - REC|PRIVATE");
    EXPECT_EQ(sys.calls[1], "mount mobileops-root /run/mo/rootfs tmpfs NOSUID|NODEV mode=0755");
    int upper = sys.indexOf("mkdir /run/mo/rootfs/upper");
    int work = sys.indexOf("mkdir /run/mo/rootfs/work");
    int root = sys.indexOf("mkdir /run/mo/rootfs/root");
    int overlay =
        sys.indexOf("mount overlay /run/mo/rootfs/root overlay 0 lowerdir=/proc/self/fd/");
    ASSERT_GE(upper, 0);
    ASSERT_GE(overlay, 0);
    EXPECT_LT(upper, overlay);
    EXPECT_LT(work, overlay);
    EXPECT_LT(root, overlay);
    // The rootfs is never bound or written: only the overlay's lower layer.
    EXPECT_FALSE(sys.has("mount /rootfs /rootfs - BIND|REC"));
    EXPECT_NE(sys.calls[overlay].find(",upperdir=/proc/self/fd/"), std::string::npos);
    EXPECT_NE(sys.calls[overlay].find(",workdir=/proc/self/fd/"), std::string::npos);
    EXPECT_EQ(sys.calls[overlay].find("userxattr"), std::string::npos);
    int pivot = sys.indexOf("pivot_root . .");
    ASSERT_GE(pivot, 0);
    EXPECT_EQ(sys.calls[pivot - 1], "fchdir /run/mo/rootfs/root");
    // /proc, /sys, /dev go on the overlay, never on the rootfs itself.
    for (int i = overlay + 1; i < pivot; ++i) {
        if (sys.calls[i].rfind("mount ", 0) != 0) continue;
        EXPECT_NE(sys.calls[i].find(" /run/mo/rootfs/root/"), std::string::npos) << sys.calls[i];
    }
}

TEST(VolatileRoot, UserNamespaceOverlayUsesUserXattrs) {
    auto sys = fakeKernel();
    auto spec = volatileSpec();
    spec.namespaces.user = true;
    spec.uidMappings = spec.gidMappings = {{0, 100000, 65536}};
    Mounts(sys, spec).setup();
    int overlay = sys.indexOf("mount overlay ");
    ASSERT_GE(overlay, 0);
    EXPECT_NE(sys.calls[overlay].find(",userxattr"), std::string::npos) << sys.calls[overlay];
}

TEST(VolatileRoot, TmpfsFailureNamesTheMountPoint) {
    auto sys = fakeKernel();
    sys.failOn["mount mobileops-root"] = EACCES;
    auto spec = volatileSpec();
    try {
        Mounts(sys, spec).setup();
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "mount a tmpfs on the root mount point `/run/mo/rootfs`: Permission "
                               "denied");
    }
}

TEST(Volumes, BindIsVerifiedAndReadOnlyRemounted) {
    auto sys = fakeKernel();
    ContainerSpec spec;
    spec.rootfs = "/rootfs";
    spec.process.args = {"/bin/true"};
    spec.mounts = {{"/data", "/srv/data", "bind", {"rbind", "ro", "rslave"}}};
    Mounts(sys, spec).setup();
    int bind = sys.indexOf("mount /srv/data /rootfs/data - BIND|REC");
    int ro = sys.indexOf("mount - /rootfs/data - RDONLY|REMOUNT|BIND");
    int slave = sys.indexOf("mount - /rootfs/data - REC|SLAVE");
    ASSERT_GE(bind, 0);
    EXPECT_GT(ro, bind);
    EXPECT_GT(slave, ro);
}

TEST(Volumes, MissingSoftMountIsSkipped) {
    auto sys = fakeKernel();
    ContainerSpec spec;
    spec.rootfs = "/rootfs";
    spec.process.args = {"/bin/true"};
    spec.softMounts = true;
    spec.mounts = {{"/data", "/srv/gone", "bind", {"rbind"}}};
    Mounts(sys, spec).setup();
    EXPECT_LT(sys.indexOf("mount /srv/gone"), 0);
    spec.softMounts = false;
    auto strict = fakeKernel();
    try {
        Mounts(strict, spec).setup();
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "mount `/data`: source `/srv/gone`: No such file or directory");
    }
}
