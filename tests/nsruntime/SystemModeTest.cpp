// System-container modes: init system (initSystem) and hardware access (hardwareAccess).
// The spec rules and the mount sequences over the recording fake (no root), then real
// containers through the engine (root): what an init sees, what a hardware-access
// container sees, and that the host's /dev is left as it was.
#include "SystemMode.h"
#include "Launcher.h"
#include "Mounts.h"
#include "RecordingSyscalls.h"
#include "TestSupport.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using nlohmann::json;

namespace {

std::string errorOf(const std::function<void()> &fn) {
    try {
        fn();
    } catch (const Error &e) {
        return e.what();
    }
    return "(no error)";
}

json minimal() { return {{"rootfs", "/r"}, {"process", {{"args", {"/bin/true"}}}}}; }

// The recording fake with device and inode numbers for the cgroup2 mounts (the
// container's fresh one and the host's), and writes shown by the path they resolve to.
class SystemKernel : public RecordingSyscalls {
public:
    std::map<std::string, std::pair<dev_t, ino_t>> ids; // path -> (st_dev, st_ino)

    int fstat(int fd, struct stat *st) override {
        int r = RecordingSyscalls::fstat(fd, st);
        if (r < 0) return r;
        if (auto it = ids.find(fds[fd]); it != ids.end()) {
            st->st_dev = it->second.first;
            st->st_ino = it->second.second;
        }
        return r;
    }
    int writeFile(const char *path, const std::string &content) override {
        return record("write " + shown(path) + " " + content);
    }
};

SystemKernel systemKernel() {
    SystemKernel sys;
    for (const char *d :
         {"/rootfs", "/rootfs/proc", "/rootfs/sys", "/rootfs/dev", "/rootfs/run", "/rootfs/tmp",
          "/rootfs/sys/fs", "/rootfs/sys/fs/cgroup", "/rootfs/sys/devices", "/rootfs/sys/bus",
          "/rootfs/sys/class", "/rootfs/sys/block", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"})
        sys.addDir(d);
    // A hybrid host: tmpfs on /sys/fs/cgroup, cgroup2 (device 40) beside it; the container's
    // fresh cgroup2 mount shows its own cgroup, not the top (inode 1).
    sys.ids["/sys/fs/cgroup"] = {20, 1};
    sys.ids["/sys/fs/cgroup/unified"] = {40, 1};
    sys.ids["/rootfs/sys/fs/cgroup"] = {40, 4711};
    return sys;
}

ContainerSpec initSpec() {
    ContainerSpec spec;
    spec.rootfs = "/rootfs";
    spec.process.args = {"/sbin/init"};
    spec.initSystem = true;
    return spec;
}

} // namespace

TEST(SystemModeSpec, InitSystemDefaults) {
    json doc = {{"rootfs", "/r"}, {"initSystem", true}, {"process", json::object()}};
    ContainerSpec s = parseSpec(doc);
    EXPECT_TRUE(s.initSystem);
    EXPECT_EQ(s.process.args, std::vector<std::string>{"/sbin/init"});
    EXPECT_EQ(s.process.env.back(), "container=mobileops");
    EXPECT_EQ(s.stopSignal, SIGRTMIN + 3);
    EXPECT_EQ(initStopSignal(), SIGRTMIN + 3);
    EXPECT_FALSE(s.process.init);

    // What the spec says wins: its command, its container=, its stop signal.
    doc["process"] = {{"args", {"/lib/systemd/systemd"}}, {"env", {"container=podman"}}};
    doc["stopSignal"] = 15;
    s = parseSpec(doc);
    EXPECT_EQ(s.process.args, std::vector<std::string>{"/lib/systemd/systemd"});
    EXPECT_EQ(s.process.env, std::vector<std::string>{"container=podman"});
    EXPECT_EQ(s.stopSignal, 15);

    // Without it: SIGTERM, no container=.
    s = parseSpec(minimal());
    EXPECT_FALSE(s.initSystem);
    EXPECT_FALSE(s.hardwareAccess);
    EXPECT_EQ(s.stopSignal, SIGTERM);
    for (const auto &e : s.process.env) EXPECT_NE(e.rfind("container=", 0), 0u) << e;
}

TEST(SystemModeSpec, BadInputIsNamed) {
    json doc = minimal();
    doc["initSystem"] = "yes";
    EXPECT_EQ(errorOf([&] { parseSpec(doc); }), "initSystem: expected true or false");
    doc = minimal();
    doc["hardwareAccess"] = 1;
    EXPECT_EQ(errorOf([&] { parseSpec(doc); }), "hardwareAccess: expected true or false");
    doc = minimal();
    doc["initSystem"] = true;
    doc["process"]["init"] = true;
    EXPECT_EQ(errorOf([&] { parseSpec(doc); }),
              "process.init: the init system is PID 1 (initSystem); it cannot run under the "
              "built-in init (--init)");
    doc = minimal();
    doc["hardwareAccess"] = true;
    doc["userns"] = {{"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}};
    EXPECT_EQ(errorOf([&] { parseSpec(doc); }),
              "hardwareAccess: the host's devices cannot be given to a container with a user "
              "namespace (devtmpfs needs the host's root)");
}

TEST(SystemModeMounts, InitSystemGetsRunTmpContainerFileAndItsCgroup) {
    auto sys = systemKernel();
    auto spec = initSpec();
    spec.mounts = {{"/tmp/cache", "", "tmpfs", {}}};
    Mounts(sys, spec).setup();
    int dev = sys.indexOf("mount tmpfs /rootfs/dev tmpfs");
    int run = sys.indexOf("mount tmpfs /rootfs/run tmpfs NOSUID|NODEV|STRICTATIME "
                          "mode=755,size=20%,nr_inodes=800k");
    int lock = sys.indexOf("mount tmpfs /rootfs/run/lock tmpfs NOSUID|NODEV|NOEXEC|STRICTATIME "
                           "mode=1777,size=5120k");
    int tmp = sys.indexOf("mount tmpfs /rootfs/tmp tmpfs NOSUID|NODEV|STRICTATIME "
                          "mode=1777,size=50%,nr_inodes=1m");
    int file = sys.indexOf("write /rootfs/run/systemd/container mobileops\n");
    int cgroup = sys.indexOf("mount cgroup2 /rootfs/sys/fs/cgroup cgroup2 NOSUID|NODEV|NOEXEC");
    int specMount = sys.indexOf("mount tmpfs /rootfs/tmp/cache");
    int pivot = sys.indexOf("pivot_root");
    ASSERT_GE(dev, 0);
    EXPECT_GT(run, dev);
    EXPECT_GT(lock, run) << "/run/lock lies on the new /run";
    EXPECT_GT(tmp, dev);
    EXPECT_GT(file, run) << "written into the tmpfs, not the rootfs";
    EXPECT_TRUE(sys.has("mkdir /rootfs/run/systemd"));
    EXPECT_TRUE(sys.has("create /rootfs/run/systemd/container"));
    EXPECT_GT(cgroup, sys.indexOf("mount sysfs /rootfs/sys"));
    EXPECT_GT(specMount, tmp) << "the spec's mounts go on top";
    EXPECT_LT(cgroup, pivot);
    EXPECT_LT(specMount, pivot);
    // The host's cgroup2 mount is looked at, never mounted on.
    EXPECT_TRUE(sys.has("open /sys/fs/cgroup/unified"));
    for (const auto &c : sys.calls)
        EXPECT_EQ(c.find(" /sys/fs/cgroup/unified "), std::string::npos) << c;
}

TEST(SystemModeMounts, WithoutInitSystemNoneOfIt) {
    auto sys = systemKernel();
    auto spec = initSpec();
    spec.initSystem = false;
    Mounts(sys, spec).setup();
    for (const char *line : {"mount tmpfs /rootfs/run ", "mount tmpfs /rootfs/tmp ",
                             "mount cgroup2", "write /rootfs/run/systemd/container"})
        EXPECT_EQ(sys.indexOf(line), -1) << line;
}

TEST(SystemModeMounts, InitSystemRefusedWhenItsCgroupIsTheHostsTop) {
    // No cgroup service moved the container: its cgroup namespace starts at the host's top.
    auto sys = systemKernel();
    sys.ids["/rootfs/sys/fs/cgroup"] = {40, 1};
    auto spec = initSpec();
    EXPECT_EQ(errorOf([&] { Mounts(sys, spec).setup(); }),
              "init system: the container has no cgroup of its own to hand to its init (its "
              "cgroup namespace starts at the host's `/sys/fs/cgroup/unified`); it needs the "
              "cgroup service");
    EXPECT_EQ(sys.indexOf("pivot_root"), -1);

    // A host without cgroup2 (v1 only): nothing to delegate.
    auto v1 = systemKernel();
    v1.ids["/sys/fs/cgroup/unified"] = {21, 1};
    EXPECT_EQ(errorOf([&] { Mounts(v1, spec).setup(); }),
              "init system: this host mounts no cgroup2 hierarchy (at `/sys/fs/cgroup` or "
              "`/sys/fs/cgroup/unified`); an init system needs one it can write");
}

TEST(SystemModeMounts, HardwareAccessMountsTheHostsDevtmpfsAndCreatesNothingInIt) {
    auto sys = systemKernel();
    for (const char *d : {"/rootfs/dev/pts", "/rootfs/dev/shm"}) sys.addDir(d);
    for (const char *f : {"/rootfs/dev/console", "/rootfs/dev/null"}) sys.addFile(f);
    auto spec = initSpec();
    spec.initSystem = false;
    spec.hardwareAccess = true;
    Mounts(sys, spec).setup();
    EXPECT_TRUE(sys.has("mount devtmpfs /rootfs/dev devtmpfs NOSUID"));
    EXPECT_EQ(sys.indexOf("mount tmpfs /rootfs/dev "), -1);
    EXPECT_TRUE(sys.has("mount /dev/null /rootfs/dev/console - BIND")) << "not the host's console";
    EXPECT_TRUE(sys.has("mount devpts /rootfs/dev/pts devpts NOSUID|NOEXEC "
                        "newinstance,ptmxmode=0666,mode=0620,gid=5"));
    EXPECT_TRUE(
        sys.has("mount shm /rootfs/dev/shm tmpfs NOSUID|NODEV|NOEXEC mode=1777,size=65536k"));
    EXPECT_EQ(sys.indexOf("mount mqueue"), -1) << "no /dev/mqueue in the host's /dev: skipped";
    for (const auto &c : sys.calls) {
        bool creates = c.rfind("mknod", 0) == 0 || c.rfind("symlink", 0) == 0 ||
                       c.rfind("mkdir /rootfs/dev", 0) == 0 ||
                       c.rfind("create /rootfs/dev", 0) == 0;
        EXPECT_FALSE(creates) << "writes into the host's devtmpfs: " << c;
    }

    // With a terminal its pty is the console.
    auto tty = systemKernel();
    for (const char *d : {"/rootfs/dev/pts", "/rootfs/dev/shm"}) tty.addDir(d);
    tty.addFile("/rootfs/dev/console");
    Mounts(tty, spec, "/dev/pts/3").setup();
    EXPECT_TRUE(tty.has("mount /dev/pts/3 /rootfs/dev/console - BIND"));
}

TEST(SystemModeMounts, HardwareAccessNeedsPtsAndShmInTheHostsDev) {
    auto sys = systemKernel();
    sys.addDir("/rootfs/dev/shm");
    auto spec = initSpec();
    spec.initSystem = false;
    spec.hardwareAccess = true;
    EXPECT_EQ(errorOf([&] { Mounts(sys, spec).setup(); }),
              "hardware access: the host's /dev has no `/dev/pts` directory to mount on");
}

TEST(SystemModeMounts, HardwareAccessBindsTheDeviceTreeWritableUnderReadOnlySys) {
    auto sys = systemKernel();
    for (const char *d : {"/rootfs/dev/pts", "/rootfs/dev/shm"}) sys.addDir(d);
    auto spec = initSpec();
    spec.initSystem = false;
    spec.hardwareAccess = true;
    Mounts(sys, spec).setup();
    int sysfs = sys.indexOf("mount sysfs /rootfs/sys sysfs NOSUID|NODEV|NOEXEC");
    int ro = sys.indexOf("mount - /rootfs/sys - RDONLY|NOSUID|NODEV|NOEXEC|REMOUNT|BIND");
    ASSERT_GE(sysfs, 0);
    EXPECT_GT(ro, sysfs);
    for (const char *d : {"devices", "bus", "class", "block"}) {
        std::string path = std::string("/rootfs/sys/") + d;
        // The source is the O_PATH fd the target was resolved to, the same directory.
        int bind = -1;
        for (size_t i = 0; i < sys.calls.size() && bind < 0; ++i)
            if (sys.calls[i].rfind("mount /proc/self/fd/", 0) == 0 &&
                sys.calls[i].find(" " + path + " - BIND") != std::string::npos)
                bind = static_cast<int>(i);
        EXPECT_GT(bind, sysfs) << d;
        EXPECT_LT(bind, ro) << d << ": bound while sysfs is writable, before its top goes ro";
    }
    for (const auto &c : sys.calls)
        EXPECT_EQ(c.find(" /rootfs/sys/dev - "), std::string::npos) << "absent: skipped; " << c;
    EXPECT_EQ(sys.indexOf("mount /rootfs/sys/kernel"), -1);
    EXPECT_EQ(hardwareSysPaths(),
              (std::vector<std::string>{"/sys/devices", "/sys/bus", "/sys/class", "/sys/block",
                                        "/sys/dev"}));
}

// Real containers through the engine.
namespace {

using Result = Captured;

std::set<std::string> listing(const std::string &dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); ++it)
        out.insert(it->path().filename());
    return out;
}

// The host's cgroup2 mount point ("" when there is none).
std::string cgroup2Mount() {
    std::istringstream in(slurp("/proc/self/mountinfo"));
    for (std::string line; std::getline(in, line);) {
        auto dash = line.find(" - cgroup2 ");
        if (dash == std::string::npos) continue;
        std::istringstream f(line);
        std::string id, parent, devno, root, point;
        f >> id >> parent >> devno >> root >> point;
        return point;
    }
    return {};
}

class SystemModeEngine : public ::testing::Test {
protected:
    void SetUp() override { REQUIRE_ROOT_AND_ROOTFS(); }
    void TearDown() override {
        if (!_cgroup.empty()) {
            ::rmdir((_cgroup + "/init.scope").c_str());
            ::rmdir(_cgroup.c_str());
        }
        if (rootfsPath().empty() || ::geteuid() != 0) return;
        EXPECT_EQ(hostMountsUnder(rootfsPath()), 0) << "a mount leaked into the host namespace";
        EXPECT_TRUE(noChildren()) << "a container process was left behind";
    }

    Result run(json doc, const LaunchOptions &options = {}) {
        doc["rootfs"] = rootfsPath();
        doc["hostname"] = "systest";
        ContainerSpec spec = parseSpec(doc);
        prepareSpec(spec);
        return launchCaptured(spec, options);
    }
    Result sh(const std::string &script, json extra = json::object(),
              const LaunchOptions &options = {}) {
        json doc = {{"process", {{"args", {"/bin/sh", "-c", script}}}}};
        doc.merge_patch(extra);
        return run(doc, options);
    }

    // A cgroup2 directory of the test's own that the container is moved to before it
    // makes its cgroup namespace, as the cgroup service does for `mobileops/<id>`.
    LaunchOptions ownCgroup() {
        std::string mount = cgroup2Mount();
        if (mount.empty()) return {};
        _cgroup = mount + "/mobileops-systemmode-test-" + std::to_string(::getpid());
        ::mkdir(_cgroup.c_str(), 0755);
        LaunchOptions o;
        std::string procs = _cgroup + "/cgroup.procs";
        o.afterClone = [procs](pid_t pid) { std::ofstream(procs) << pid << "\n"; };
        return o;
    }

    std::string _cgroup;
};

} // namespace

TEST_F(SystemModeEngine, HardwareAccessShowsHostDevicesAndWritableDeviceTree) {
    auto before = listing("/dev");
    // A node of the host's that the private /dev lacks (loop-control needs the loop module).
    const std::string node = before.count("loop-control") ? "loop-control" : "kmsg";
    // `: >>` opens for writing and writes nothing: no device state changes.
    const std::string probe =
        "test -c /dev/" + node +
        " && echo host-node; "
        "awk '$5 ~ /^\\/(dev|sys|sys\\/class)$/ {print $5, $9, substr($6, 1, 2)}' "
        "/proc/self/mountinfo; "
        "(: >> /sys/class/net/lo/tx_queue_len) 2>/dev/null && echo class-writable; "
        "touch /sys/probe 2>/dev/null || echo sys-top-read-only; "
        "test -e /dev/console && stat -c 'console %t:%T' /dev/console; echo done";
    Result hw = sh(probe, {{"hardwareAccess", true}});
    EXPECT_EQ(hw.status, 0) << hw.err;
    EXPECT_EQ(hw.out, "host-node\n/sys sysfs ro\n/sys/class sysfs rw\n/dev devtmpfs rw\n"
                      "class-writable\nsys-top-read-only\nconsole 1:3\ndone\n");
    EXPECT_EQ(listing("/dev"), before) << "the host's devtmpfs was changed";

    Result plain = sh(probe);
    EXPECT_EQ(plain.status, 0) << plain.err;
    EXPECT_EQ(plain.out, "/sys sysfs ro\n/dev tmpfs rw\nsys-top-read-only\ndone\n");
}

TEST_F(SystemModeEngine, InitSystemWithoutItsOwnCgroupIsRefused) {
    Result r = sh("true", {{"initSystem", true}});
    EXPECT_EQ(r.status, 125);
    EXPECT_NE(r.err.find("init system: the container has no cgroup of its own"), std::string::npos)
        << r.err;
}

TEST_F(SystemModeEngine, InitSystemSeesWhatAnInitNeeds) {
    LaunchOptions options = ownCgroup();
    if (!options.afterClone) GTEST_SKIP() << "this host mounts no cgroup2 hierarchy";
    std::filesystem::remove_all(rootfsPath() + "/run/systemd");
    Result r =
        sh("echo pid=$$ container=$container; cat /run/systemd/container; "
           "grep -E ' /(run|run/lock|tmp|sys/fs/cgroup) ' /proc/self/mountinfo | "
           "awk '{print $5, $9, substr($6, 1, 2)}'; "
           "cat /proc/self/cgroup | grep '^0::'; "
           "mkdir /sys/fs/cgroup/init.scope && echo $$ > /sys/fs/cgroup/init.scope/cgroup.procs "
           "&& grep '^0::' /proc/self/cgroup",
           {{"initSystem", true}}, options);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "pid=1 container=mobileops\nmobileops\n/run tmpfs rw\n/run/lock tmpfs rw\n"
                     "/tmp tmpfs rw\n/sys/fs/cgroup cgroup2 rw\n0::/\n0::/init.scope\n");
    EXPECT_FALSE(std::filesystem::exists(rootfsPath() + "/run/systemd"))
        << "/run/systemd/container was written into the rootfs";
    // What the init made is in the test's cgroup: its subtree, nothing above.
    EXPECT_TRUE(std::filesystem::is_directory(_cgroup + "/init.scope"));
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
