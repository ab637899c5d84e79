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
    // The cgroup tests below give the host's cgroups; the others read none.
    spec.cgroupMount = CgroupMount::None;
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

namespace {

// This project's hybrid host: a tmpfs on /sys/fs/cgroup, v1 hierarchies (cpu and cpuacct
// co-mounted here), name=systemd and cgroup2 at unified. The container was given cgroups
// on cpu,cpuacct, memory and cgroup2 only; its launcher is in the top ones.
const char *kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
    "rw,xattr,release_agent=/x,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "50 23 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory\n"
    "51 23 0:40 / /srv/elsewhere rw,relatime - cgroup cgroup rw,pids\n";
const char *kHybridSelf = "9:name=systemd:/\n5:devices:/\n4:memory:/mobileops/c1\n"
                          "2:cpuacct,cpu:/mobileops/c1\n0::/mobileops/c1\n";
const char *kHybridLauncher = "9:name=systemd:/\n5:devices:/\n4:memory:/\n2:cpuacct,cpu:/\n0::/\n";

CgroupHost hybridHost() { return {kHybridMountinfo, kHybridSelf, kHybridLauncher}; }

ContainerSpec cgroupSpec(CgroupMount mode = CgroupMount::ReadOnly) {
    ContainerSpec spec = baseSpec();
    spec.cgroupMount = mode;
    return spec;
}

} // namespace

TEST(CgroupHierarchies, HybridHostNamesOptionsOwnershipAndHostDirectories) {
    auto hs = cgroupHierarchies(hybridHost());
    ASSERT_EQ(hs.size(), 5u); // one per hierarchy below /sys/fs/cgroup
    EXPECT_EQ(hs[0].name, "cpu,cpuacct");
    EXPECT_EQ(hs[0].options, "cpu,cpuacct");
    EXPECT_TRUE(hs[0].own);
    EXPECT_EQ(hs[0].hostDir, "/sys/fs/cgroup/cpu,cpuacct/mobileops/c1");
    EXPECT_EQ(hs[1].name, "memory");
    EXPECT_TRUE(hs[1].own);
    EXPECT_EQ(hs[2].name, "devices");
    EXPECT_FALSE(hs[2].own) << "still in its launcher's cgroup";
    EXPECT_EQ(hs[3].name, "systemd");
    EXPECT_EQ(hs[3].options, "name=systemd");
    EXPECT_FALSE(hs[3].own);
    EXPECT_EQ(hs[4].name, "unified");
    EXPECT_EQ(hs[4].version, 2);
    EXPECT_TRUE(hs[4].own);
    EXPECT_EQ(hs[4].hostDir, "/sys/fs/cgroup/unified/mobileops/c1");
}

TEST(CgroupHierarchies, Cgroup2OnlyHostIsOneHierarchyOnTheTopDirectory) {
    auto hs = cgroupHierarchies({"30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                                 "0::/mobileops/c1\n", "0::/user.slice\n"});
    ASSERT_EQ(hs.size(), 1u);
    EXPECT_EQ(hs[0].name, "");
    EXPECT_EQ(hs[0].version, 2);
    EXPECT_TRUE(hs[0].own);
    EXPECT_EQ(hs[0].hostDir, "/sys/fs/cgroup/mobileops/c1");
    // In its own cgroup namespace the container's cgroup is "/", its launcher's above it.
    auto ns = cgroupHierarchies({"30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n",
                                 "0::/../../user.slice\n"});
    ASSERT_EQ(ns.size(), 1u);
    EXPECT_TRUE(ns[0].own);
    // A mount showing only part of the hierarchy: nothing to bind outside it.
    auto part = cgroupHierarchies(
        {"30 23 0:26 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/b/c\n", "0::/\n"});
    ASSERT_EQ(part.size(), 1u);
    EXPECT_EQ(part[0].hostDir, "");
}

TEST(Mounts, HybridHostGetsATmpfsWithItsOwnHierarchiesAllReadOnly) {
    auto sys = fakeKernel();
    auto spec = cgroupSpec();
    spec.mounts = {{"/sys/fs/cgroup/extra", "", "tmpfs", {}}};
    Mounts m(sys, spec);
    m.setCgroupHost(hybridHost());
    m.setup();
    const std::string ro = "RDONLY|NOSUID|NODEV|NOEXEC";
    int sysfs = sys.indexOf("mount sysfs /rootfs/sys sysfs");
    int tmpfs = sys.indexOf("mount tmpfs /rootfs/sys/fs/cgroup tmpfs NOSUID|NODEV|NOEXEC mode=755");
    int cpu =
        sys.indexOf("mount cgroup /rootfs/sys/fs/cgroup/cpu,cpuacct cgroup " + ro + " cpu,cpuacct");
    int memory = sys.indexOf("mount cgroup /rootfs/sys/fs/cgroup/memory cgroup " + ro + " memory");
    int unified = sys.indexOf("mount cgroup2 /rootfs/sys/fs/cgroup/unified cgroup2 " + ro);
    int extra = sys.indexOf("mount tmpfs /rootfs/sys/fs/cgroup/extra tmpfs");
    int readonly = sys.indexOf("mount - /rootfs/sys/fs/cgroup - " + ro + "|REMOUNT|BIND");
    ASSERT_GE(sysfs, 0);
    ASSERT_GE(tmpfs, 0);
    EXPECT_LT(sysfs, tmpfs);
    EXPECT_LT(tmpfs, cpu);
    EXPECT_LT(cpu, memory);
    EXPECT_LT(memory, unified);
    EXPECT_TRUE(sys.has("symlink /rootfs/sys/fs/cgroup/cpu -> cpu,cpuacct"));
    EXPECT_TRUE(sys.has("symlink /rootfs/sys/fs/cgroup/cpuacct -> cpu,cpuacct"));
    // Not the container's: no mount, no directory.
    EXPECT_EQ(sys.indexOf("mount cgroup /rootfs/sys/fs/cgroup/devices"), -1);
    EXPECT_EQ(sys.indexOf("mount cgroup /rootfs/sys/fs/cgroup/systemd"), -1);
    EXPECT_EQ(sys.indexOf("mkdir /rootfs/sys/fs/cgroup/devices"), -1);
    // The spec's mount below it first, then the tmpfs goes read-only, before pivot_root.
    EXPECT_LT(unified, extra);
    EXPECT_LT(extra, readonly);
    EXPECT_LT(readonly, sys.indexOf("pivot_root"));
}

TEST(Mounts, RwCgroupMountLeavesEverythingWritable) {
    auto sys = fakeKernel();
    auto spec = cgroupSpec(CgroupMount::ReadWrite);
    Mounts m(sys, spec);
    m.setCgroupHost(hybridHost());
    m.setup();
    EXPECT_TRUE(sys.has("mount cgroup /rootfs/sys/fs/cgroup/memory cgroup NOSUID|NODEV|NOEXEC "
                        "memory"));
    EXPECT_EQ(sys.indexOf("mount - /rootfs/sys/fs/cgroup - RDONLY"), -1);
}

TEST(Mounts, WithoutACgroupNamespaceTheContainersDirectoriesAreBoundAndRemounted) {
    auto sys = fakeKernel();
    auto spec = cgroupSpec();
    spec.namespaces.cgroup = false;
    Mounts m(sys, spec);
    m.setCgroupHost(hybridHost());
    m.setup();
    EXPECT_EQ(sys.indexOf("mount cgroup"), -1);
    int bind =
        sys.indexOf("mount /sys/fs/cgroup/memory/mobileops/c1 /rootfs/sys/fs/cgroup/memory - BIND");
    int ro = sys.indexOf(
        "mount - /rootfs/sys/fs/cgroup/memory - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND");
    ASSERT_GE(bind, 0);
    EXPECT_LT(bind, ro);
    EXPECT_TRUE(sys.has("mount /sys/fs/cgroup/unified/mobileops/c1 /rootfs/sys/fs/cgroup/unified "
                        "- BIND"));
}

TEST(Mounts, Cgroup2OnlyHostMountsCgroup2OnTheTopDirectory) {
    auto sys = fakeKernel();
    auto spec = cgroupSpec();
    Mounts m(sys, spec);
    m.setCgroupHost({"30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n",
                     "0::/../../user.slice\n"});
    m.setup();
    EXPECT_TRUE(sys.has("mount cgroup2 /rootfs/sys/fs/cgroup cgroup2 RDONLY|NOSUID|NODEV|NOEXEC"));
    EXPECT_EQ(sys.indexOf("mount tmpfs /rootfs/sys/fs/cgroup"), -1);
}

TEST(Mounts, NoCgroupOfItsOwnGivesAnEmptyReadOnlyTmpfs) {
    auto sys = fakeKernel();
    auto spec = cgroupSpec();
    Mounts m(sys, spec);
    m.setCgroupHost({kHybridMountinfo, kHybridLauncher, kHybridLauncher});
    m.setup();
    EXPECT_TRUE(sys.has("mount tmpfs /rootfs/sys/fs/cgroup tmpfs NOSUID|NODEV|NOEXEC mode=755"));
    EXPECT_TRUE(sys.has("mount - /rootfs/sys/fs/cgroup - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND"));
    EXPECT_EQ(sys.indexOf("mount cgroup"), -1);
    EXPECT_EQ(sys.indexOf("symlink /rootfs/sys/fs/cgroup"), -1);
}

TEST(Mounts, CgroupMountNoneAndInitSystemMakeNoCgroupTmpfs) {
    for (bool init : {false, true}) {
        auto sys = fakeKernel();
        auto spec = cgroupSpec(init ? CgroupMount::ReadOnly : CgroupMount::None);
        Mounts m(sys, spec);
        m.setCgroupHost(hybridHost());
        spec.initSystem = init;
        try {
            m.prepareRoot();
        } catch (const Error &) {
            // the fake has no host cgroup2 for the init's own (SystemModeTest checks that)
        }
        EXPECT_EQ(sys.indexOf("mount tmpfs /rootfs/sys/fs/cgroup"), -1) << init;
        EXPECT_EQ(sys.indexOf("mount cgroup /rootfs/sys/fs/cgroup/"), -1) << init;
    }
}

TEST(Mounts, CgroupMountFailureNamesTheHierarchy) {
    auto sys = fakeKernel();
    sys.failOn["mount cgroup /rootfs/sys/fs/cgroup/memory"] = EBUSY;
    auto spec = cgroupSpec();
    Mounts m(sys, spec);
    m.setCgroupHost(hybridHost());
    try {
        m.setup();
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "mount `/sys/fs/cgroup/memory`: Device or resource busy");
    }
    EXPECT_EQ(sys.indexOf("pivot_root"), -1);
}

TEST(Spec, CgroupMountValues) {
    auto doc = [](const char *v) {
        return nlohmann::json{
            {"rootfs", "/r"}, {"process", {{"args", {"/bin/true"}}}}, {"cgroupMount", v}};
    };
    EXPECT_EQ(parseSpec(doc("ro")).cgroupMount, CgroupMount::ReadOnly);
    EXPECT_EQ(parseSpec(doc("rw")).cgroupMount, CgroupMount::ReadWrite);
    EXPECT_EQ(parseSpec(doc("none")).cgroupMount, CgroupMount::None);
    nlohmann::json plain = {{"rootfs", "/r"}, {"process", {{"args", {"/bin/true"}}}}};
    EXPECT_EQ(parseSpec(plain).cgroupMount, CgroupMount::ReadOnly);
    try {
        parseSpec(doc("yes"));
        FAIL() << "accepted";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cgroupMount: `yes` is not one of ro, rw, none");
    }
}
