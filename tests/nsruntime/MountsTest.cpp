// The rootfs setup sequence, checked over the recording fake: no root needed.
#include "Mounts.h"
#include "Errors.h"
#include "RecordingSyscalls.h"

#include <gtest/gtest.h>

using namespace mobileops::nsruntime;
using mobileops::nsruntime::testing::RecordingSyscalls;

namespace {

ContainerSpec baseSpec() {
    ContainerSpec spec;
    spec.rootfs = "/rootfs";
    spec.process.args = {"/bin/true"};
    return spec;
}

RecordingSyscalls fakeKernel() {
    RecordingSyscalls sys;
    for (const char *d :
         {"/rootfs", "/rootfs/proc", "/rootfs/sys", "/rootfs/dev", "/rootfs/etc",
          "/rootfs/proc/acpi", "/rootfs/proc/sys", "/rootfs/proc/bus", "/rootfs/sys/firmware",
          "/rootfs/dev/pts", "/rootfs/dev/shm", "/rootfs/dev/mqueue"})
        sys.addDir(d);
    for (const char *f : {"/rootfs/proc/kcore", "/rootfs/proc/keys", "/rootfs/proc/sysrq-trigger",
                          "/rootfs/etc/passwd", "/rootfs/dev/null"})
        sys.addFile(f);
    return sys;
}

} // namespace

TEST(Mounts, SequenceMakesRootPrivateBindsPivotsAndDetachesOldRoot) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    Mounts(sys, spec).setup();

    ASSERT_FALSE(sys.calls.empty());
    EXPECT_EQ(sys.calls[0], "mount - / - REC|PRIVATE");
    EXPECT_EQ(sys.calls[1], "mount /rootfs /rootfs - BIND|REC");
    int proc = sys.indexOf("mount proc /rootfs/proc proc");
    int sysfs = sys.indexOf("mount sysfs /rootfs/sys sysfs");
    int dev = sys.indexOf("mount tmpfs /rootfs/dev tmpfs");
    int pivot = sys.indexOf("pivot_root . .");
    int detach = sys.indexOf("umount2 . DETACH");
    ASSERT_GE(proc, 0);
    ASSERT_GE(sysfs, 0);
    ASSERT_GE(dev, 0);
    ASSERT_GE(pivot, 0);
    EXPECT_LT(proc, pivot);
    EXPECT_LT(dev, pivot);
    EXPECT_EQ(sys.calls[pivot - 1], "fchdir /rootfs");
    EXPECT_EQ(detach, pivot + 1);
    EXPECT_EQ(sys.calls[detach + 1], "chdir /");
    EXPECT_EQ(sys.calls[proc], "mount proc /rootfs/proc proc NOSUID|NODEV|NOEXEC");
    EXPECT_EQ(sys.calls[sysfs], "mount sysfs /rootfs/sys sysfs RDONLY|NOSUID|NODEV|NOEXEC");
    // Nothing is mounted on a host path: every target is under the rootfs, or relative to
    // the new root after pivot_root.
    for (int i = 2; i < pivot; ++i) {
        if (sys.calls[i].rfind("mount ", 0) == 0) {
            EXPECT_NE(sys.calls[i].find(" /rootfs/"), std::string::npos) << sys.calls[i];
        }
    }
}

TEST(Mounts, DevHasNodesPtsShmMqueueAndLinks) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    Mounts(sys, spec).setup();
    for (const char *n : {"null", "zero", "full", "random", "urandom", "tty"})
        EXPECT_TRUE(sys.has(std::string("mknod /rootfs/dev/") + n)) << n;
    EXPECT_TRUE(sys.has("mount devpts /rootfs/dev/pts devpts NOSUID|NOEXEC "
                        "newinstance,ptmxmode=0666,mode=0620,gid=5"));
    EXPECT_TRUE(
        sys.has("mount shm /rootfs/dev/shm tmpfs NOSUID|NODEV|NOEXEC mode=1777,size=65536k"));
    EXPECT_TRUE(sys.has("mount mqueue /rootfs/dev/mqueue mqueue NOSUID|NODEV|NOEXEC"));
    EXPECT_TRUE(sys.has("symlink /rootfs/dev/ptmx -> pts/ptmx"));
    EXPECT_TRUE(sys.has("symlink /rootfs/dev/fd -> /proc/self/fd"));
    EXPECT_TRUE(sys.has("symlink /rootfs/dev/stdin -> /proc/self/fd/0"));
    EXPECT_TRUE(sys.has("symlink /rootfs/dev/stderr -> /proc/self/fd/2"));
    EXPECT_EQ(sys.indexOf("mount /dev/pts"), -1) << "no console without a terminal";
}

TEST(Mounts, ConsoleIsTheTerminalBoundOnDevConsole) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    Mounts(sys, spec, "/dev/pts/7").setup();
    EXPECT_TRUE(sys.has("create /rootfs/dev/console"));
    EXPECT_TRUE(sys.has("mount /dev/pts/7 /rootfs/dev/console - BIND"));
}

TEST(Mounts, UserNamespaceBindsDevicesAndSkipsUnmappedTtyGroup) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    spec.namespaces.user = true;
    spec.uidMappings = spec.gidMappings = {{0, 100000, 1}};
    Mounts(sys, spec).setup();
    EXPECT_EQ(sys.indexOf("mknod"), -1);
    EXPECT_TRUE(sys.has("mount /dev/null /rootfs/dev/null - BIND"));
    EXPECT_TRUE(sys.has("mount /dev/urandom /rootfs/dev/urandom - BIND"));
    EXPECT_TRUE(sys.has("mount devpts /rootfs/dev/pts devpts NOSUID|NOEXEC "
                        "newinstance,ptmxmode=0666,mode=0620"));
}

TEST(Mounts, UserNamespaceWithHostNetworkBindsSysReadOnly) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    spec.namespaces.user = true;
    spec.namespaces.network = false;
    spec.uidMappings = spec.gidMappings = {{0, 100000, 65536}};
    Mounts(sys, spec).setup();
    EXPECT_EQ(sys.indexOf("mount sysfs"), -1);
    EXPECT_TRUE(sys.has("mount /sys /rootfs/sys - BIND|REC"));
    EXPECT_GE(sys.indexOf("mount - /rootfs/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND"), 0);
}

TEST(Mounts, MaskedPathsFilesGetDevNullDirsReadOnlyTmpfsMissingSkipped) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    Mounts(sys, spec).setup();
    int pivot = sys.indexOf("pivot_root");
    int kcore = sys.indexOf("mount /dev/null /proc/kcore - BIND");
    EXPECT_GT(kcore, pivot);
    EXPECT_TRUE(sys.has("mount /dev/null /proc/keys - BIND"));
    EXPECT_TRUE(sys.has("mount tmpfs /proc/acpi tmpfs RDONLY size=0k,mode=755"));
    EXPECT_TRUE(sys.has("mount tmpfs /sys/firmware tmpfs RDONLY size=0k,mode=755"));
    EXPECT_EQ(sys.indexOf("mount /dev/null /proc/timer_list"), -1) << "absent paths are skipped";
    EXPECT_EQ(maskedPaths().size(), 10u);
}

TEST(Mounts, ReadonlyPathsAreBoundAndRemountedReadOnly) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    Mounts(sys, spec).setup();
    for (const char *p : {"/proc/sys", "/proc/bus", "/proc/sysrq-trigger"}) {
        int bind = sys.indexOf(std::string("mount ") + p + " " + p + " - BIND|REC");
        int ro = sys.indexOf(std::string("mount - ") + p + " - RDONLY|REMOUNT|BIND");
        EXPECT_GE(bind, 0) << p;
        EXPECT_GT(ro, bind) << p;
    }
    EXPECT_EQ(sys.indexOf("mount /proc/irq"), -1) << "absent paths are skipped";
}

TEST(Mounts, ReadonlyRootIsTheLastRemount) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    spec.readonly = true;
    Mounts(sys, spec).setup();
    EXPECT_EQ(sys.calls.back(), "mount - / - RDONLY|REMOUNT|BIND");
    spec.readonly = false;
    auto sys2 = fakeKernel();
    Mounts(sys2, spec).setup();
    EXPECT_EQ(sys2.indexOf("mount - / - RDONLY"), -1);
}

TEST(Mounts, SpecBindReadOnlyAndTmpfs) {
    auto sys = fakeKernel();
    sys.addDir("/srv/data");
    auto spec = baseSpec();
    spec.mounts = {{"/data", "/srv/data", "bind", {"rbind", "ro"}},
                   {"/scratch", "", "tmpfs", {"size=1m", "mode=700", "nodev"}}};
    Mounts(sys, spec).setup();
    EXPECT_TRUE(sys.has("mkdir /rootfs/data"));
    int bind = sys.indexOf("mount /srv/data /rootfs/data - BIND|REC");
    int ro = sys.indexOf("mount - /rootfs/data - RDONLY|REMOUNT|BIND");
    EXPECT_GE(bind, 0);
    EXPECT_GT(ro, bind);
    EXPECT_TRUE(sys.has("mount tmpfs /rootfs/scratch tmpfs NODEV size=1m,mode=700"));
    EXPECT_LT(ro, sys.indexOf("pivot_root"));
}

TEST(Mounts, DestinationsAreResolvedInsideTheRootfs) {
    auto sys = fakeKernel();
    auto spec = baseSpec();
    spec.mounts = {{"/../../etc/evil", "", "tmpfs", {}}};
    Mounts(sys, spec).setup();
    // ".." at the root stays at the root (RESOLVE_IN_ROOT): the mount lands in the rootfs.
    EXPECT_TRUE(sys.has("mount tmpfs /rootfs/etc/evil tmpfs 0"));
}

TEST(Mounts, FailureNamesTheMount) {
    auto sys = fakeKernel();
    sys.failOn["mount proc"] = EPERM;
    auto spec = baseSpec();
    try {
        Mounts(sys, spec).setup();
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "mount `/proc`: Operation not permitted");
        EXPECT_EQ(e.code(), -EPERM);
    }
    EXPECT_EQ(sys.indexOf("pivot_root"), -1);
}

TEST(Mounts, PivotFailureIsReported) {
    auto sys = fakeKernel();
    sys.failOn["pivot_root"] = EINVAL;
    auto spec = baseSpec();
    EXPECT_THROW(Mounts(sys, spec).setup(), Error);
    EXPECT_EQ(sys.indexOf("umount2"), -1);
}

TEST(MountOptions, Parse) {
    auto o = parseMountOptions({"rbind", "ro", "nosuid", "rprivate", "size=10m", "mode=755"});
    EXPECT_TRUE(o.bind);
    EXPECT_TRUE(o.recursive);
    EXPECT_EQ(o.flags, MS_RDONLY | MS_NOSUID);
    EXPECT_EQ(o.propagation, MS_PRIVATE | MS_REC);
    EXPECT_EQ(o.data, "size=10m,mode=755");
    auto rw = parseMountOptions({"ro", "rw", "bind"});
    EXPECT_EQ(rw.flags, 0u);
    EXPECT_FALSE(rw.recursive);
}
