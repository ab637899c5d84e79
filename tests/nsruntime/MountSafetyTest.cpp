// Bind mounts, hostile rootfs trees, volatile roots and rootfs images through the engine
// API (no state store). Needs root. Every test works on its own copy of the busybox
// rootfs, and checks that no mount, loop device or child process is left behind.
#include "Launcher.h"
#include "Errors.h"
#include "TestSupport.h"
#include "TreeSum.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using mobileops::testing::treeSum;
using nlohmann::json;

namespace {

using Result = Captured;

// The contents and mtime of one file.
uint64_t fileSum(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    uint64_t h = 14695981039346656037ull;
    char buf[65536];
    while (in.read(buf, sizeof buf) || in.gcount() > 0)
        h = mobileops::testing::fnv(h, buf, static_cast<size_t>(in.gcount()));
    struct stat st;
    if (::stat(path.c_str(), &st) == 0)
        h = mobileops::testing::fnv(h, &st.st_mtim, sizeof st.st_mtim);
    return h;
}

std::string message(const std::function<void()> &fn) {
    try {
        fn();
    } catch (const Error &e) {
        return e.what();
    }
    return "(no error)";
}

class MountSafety : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_ROOT_AND_ROOTFS();
        char tmpl[] = "/tmp/nsruntime-mounts-XXXXXX";
        ASSERT_TRUE(::mkdtemp(tmpl));
        _dir = tmpl;
        ::chmod(_dir.c_str(), 0755);
        _rootfs = _dir + "/rootfs";
        ASSERT_EQ(std::system(("cp -a " + rootfsPath() + " " + _rootfs).c_str()), 0);
        _mountPoint = _dir + "/mnt";
    }
    void TearDown() override {
        if (_dir.empty()) return;
        EXPECT_EQ(hostMountsUnder(_dir), 0) << "a mount leaked into the host namespace";
        EXPECT_TRUE(noChildren()) << "a container process was left behind";
        for (const auto &image : _images)
            EXPECT_TRUE(loopDevicesOf(image).empty()) << "a loop device still holds " << image;
        std::system(("rm -rf " + _dir).c_str());
    }

    json spec(std::vector<std::string> args) {
        return {{"rootfs", _rootfs}, {"hostname", "mnt"}, {"process", {{"args", args}}}};
    }
    json sh(const std::string &script) { return spec({"/bin/sh", "-c", script}); }
    ContainerSpec prepared(const json &j) {
        ContainerSpec s = parseSpec(j);
        s.mountPoint = _mountPoint;
        prepareSpec(s);
        return s;
    }
    Result run(const json &j) { return runCaptured(prepared(j)); }
    std::string hostDir(const std::string &name) {
        std::string d = _dir + "/" + name;
        std::filesystem::create_directories(d);
        std::ofstream(d + "/marker") << "host";
        return d;
    }
    std::string image(const std::string &name, const std::string &size = "64M") {
        std::string file = _dir + "/" + name;
        ImageRequest req;
        req.dir = _rootfs;
        req.file = file;
        req.size = size;
        createImage(req);
        _images.push_back(file);
        return file;
    }
    json imageSpec(const std::string &file, const std::string &script) {
        json j = sh(script);
        j.erase("rootfs");
        j["rootfsImage"] = file;
        return j;
    }

    std::string _dir, _rootfs, _mountPoint;
    std::vector<std::string> _images;
};

// --- hostile rootfs: /proc, /sys, /dev as symlinks to host paths

class SpecialDirSymlink : public MountSafety, public ::testing::WithParamInterface<const char *> {};

TEST_P(SpecialDirSymlink, IsRefusedAndTheHostPathStaysUntouched) {
    const std::string name = GetParam();
    std::string host = hostDir("host-" + name);
    uint64_t before = treeSum(host);
    std::filesystem::remove_all(_rootfs + "/" + name);
    ASSERT_EQ(::symlink(host.c_str(), (_rootfs + "/" + name).c_str()), 0);
    std::string err = message([&] { run(sh("echo started")); });
    EXPECT_NE(
        err.find("rootfs `/" + name + "` is a symlink to `" + host + "`: it must be a directory"),
        std::string::npos)
        << err;
    EXPECT_EQ(treeSum(host), before);
    EXPECT_EQ(hostMountsUnder(host), 0);
}

INSTANTIATE_TEST_SUITE_P(ProcSysDev, SpecialDirSymlink, ::testing::Values("proc", "sys", "dev"));

TEST_F(MountSafety, RelativeSymlinkedProcIsRefusedToo) {
    std::filesystem::remove_all(_rootfs + "/proc");
    ASSERT_EQ(::symlink("../../../../../../proc", (_rootfs + "/proc").c_str()), 0);
    std::string err = message([&] { run(sh("true")); });
    EXPECT_NE(err.find("rootfs `/proc` is a symlink"), std::string::npos) << err;
}

// --- hostile volumes: destinations that are symlinks out of the rootfs

TEST_F(MountSafety, VolumeTargetSymlinkedOutOfTheRootfsLandsInside) {
    std::string vol = hostDir("vol");
    uint64_t hostEtc = treeSum("/etc");
    std::string rootEtc = _rootfs + "/etc";
    ASSERT_EQ(::symlink("../../../../../../../../etc", (_rootfs + "/data").c_str()), 0);
    ASSERT_EQ(::symlink("/etc", (_rootfs + "/abs").c_str()), 0);
    json j = sh("cat /data/marker /etc/marker; grep -c ' /etc ' /proc/self/mountinfo");
    j["mounts"] = {{{"destination", "/data"}, {"source", vol}, {"type", "bind"}}};
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    // Mounted on the rootfs's own /etc: the container sees the volume there.
    EXPECT_EQ(r.out, "hosthost1\n");
    EXPECT_EQ(treeSum("/etc"), hostEtc);
    EXPECT_FALSE(std::filesystem::exists("/etc/marker"));
    EXPECT_FALSE(std::filesystem::exists(rootEtc + "/marker"));

    j["mounts"] = {{{"destination", "/abs/sub"}, {"source", vol}, {"type", "bind"}}};
    j["process"]["args"] = {"/bin/sh", "-c", "cat /etc/sub/marker"};
    r = run(j);
    EXPECT_EQ(r.out, "host");
    EXPECT_FALSE(std::filesystem::exists("/etc/sub")) << "created on the host";
    EXPECT_TRUE(std::filesystem::is_directory(rootEtc + "/sub"));
}

TEST_F(MountSafety, AbsoluteSymlinkToAHostDirIsResolvedInTheRootfs) {
    std::string vol = hostDir("vol");
    std::string hostTarget = _dir + "/outside";
    std::filesystem::create_directories(hostTarget);
    ASSERT_EQ(::symlink(hostTarget.c_str(), (_rootfs + "/data").c_str()), 0);
    json j = sh("cat /data/marker");
    j["mounts"] = {{{"destination", "/data"}, {"source", vol}, {"type", "bind"}}};
    Result r = run(j);
    EXPECT_EQ(r.out, "host") << r.err;
    EXPECT_TRUE(std::filesystem::is_empty(hostTarget)) << "the host directory was used";
    EXPECT_TRUE(std::filesystem::is_directory(_rootfs + hostTarget));
}

TEST_F(MountSafety, DotDotInADestinationIsRefused) {
    json j = sh("true");
    j["mounts"] = {{{"destination", "/data/../../etc"}, {"source", "/tmp"}, {"type", "bind"}}};
    EXPECT_EQ(message([&] { parseSpec(j); }),
              "mounts[0].destination: `/data/../../etc` contains `..`");
}

TEST_F(MountSafety, AtMost64Volumes) {
    std::string vol = hostDir("vol");
    json j = sh("ls /v63/marker");
    j["mounts"] = json::array();
    for (int i = 0; i < 64; ++i)
        j["mounts"].push_back(
            {{"destination", "/v" + std::to_string(i)}, {"source", vol}, {"type", "bind"}});
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "/v63/marker\n");
    j["mounts"].push_back({{"destination", "/v64"}, {"source", vol}, {"type", "bind"}});
    EXPECT_EQ(message([&] { parseSpec(j); }), "mounts: 65 bind mounts, at most 64 per container");
}

TEST_F(MountSafety, MissingSourceIsAnErrorOrASoftMountWarning) {
    std::string vol = hostDir("vol");
    const std::string missing = _dir + "/nonexistent";
    json j = sh("ls /data /present 2>&1; true");
    j["mounts"] = {{{"destination", "/data"}, {"source", missing}, {"type", "bind"}},
                   {{"destination", "/present"}, {"source", vol}, {"type", "bind"}}};
    EXPECT_EQ(message([&] { prepared(j); }),
              "mount `/data`: source `" + missing + "`: No such file or directory");

    j["softMounts"] = true;
    ContainerSpec s = prepared(j);
    ASSERT_EQ(s.warnings.size(), 1u);
    EXPECT_EQ(s.warnings[0],
              "mount `/data`: source `" + missing + "` does not exist; skipped (soft mounts)");
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("marker"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("/data: No such file or directory"), std::string::npos) << r.out;
}

TEST_F(MountSafety, ReadOnlyVolumeRefusesWritesInside) {
    std::string vol = hostDir("vol");
    json j = sh("echo x > /data/new; echo rc=$?; grep ' /data ' /proc/self/mountinfo | "
                "cut -d' ' -f6 | cut -d, -f1");
    j["mounts"] = {{{"destination", "/data"},
                    {"source", vol},
                    {"type", "bind"},
                    {"options", {"rbind", "ro"}}}};
    Result r = run(j);
    EXPECT_EQ(r.out, "rc=1\nro\n");
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(vol + "/new"));
}

// --- volatile

TEST_F(MountSafety, VolatileWritesVanishAndTheRootfsIsUnchanged) {
    uint64_t before = treeSum(_rootfs);
    json j = sh("echo new > /newfile && echo root::0:0::/:/bin/sh >> /etc/passwd && "
                "rm /bin/ls && mkdir -p /var/x/y && rm -rf /home && echo wrote; "
                "grep -c ' / / .* - overlay ' /proc/self/mountinfo");
    j["volatile"] = true;
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "wrote\n1\n");
    EXPECT_EQ(treeSum(_rootfs), before) << "the rootfs was modified";
    r = run([&] {
        json k = sh("test -e /newfile || test -e /var/x || echo clean; ls -d /bin/ls /home; "
                    "grep -c root::0 /etc/passwd");
        k["volatile"] = true;
        return k;
    }());
    EXPECT_EQ(r.out, "clean\n/bin/ls\n/home\n0\n") << r.err;
    // The tmpfs and the overlay lived only in the container's namespace.
    EXPECT_TRUE(std::filesystem::is_empty(_mountPoint));
}

TEST_F(MountSafety, VolatileShowsNoHostPathInMountinfo) {
    json j = sh("grep ' / / .* - overlay ' /proc/self/mountinfo");
    j["volatile"] = true;
    Result r = run(j);
    EXPECT_EQ(r.out.find(_rootfs), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("lowerdir="), std::string::npos) << r.out;
}

TEST_F(MountSafety, VolatileWithAUserNamespace) {
    json j = sh("echo x > /newfile && id -u && stat -c %u /newfile");
    j["volatile"] = true;
    j["userns"] = {{"uidMappings", {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}}}};
    uint64_t before = treeSum(_rootfs);
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0\n0\n");
    EXPECT_EQ(treeSum(_rootfs), before);
}

TEST_F(MountSafety, VolatileLowerTheKernelRefusesNamesItAndTheReason) {
    // procfs cannot be an overlay layer: the kernel says why in the fs context's log.
    json j = spec({"/bin/true"});
    j["rootfs"] = "/proc/sys";
    j["volatile"] = true;
    std::string err = message([&] { run(j); });
    EXPECT_NE(err.find("volatile root: overlayfs refused `/proc/sys` as its lower layer: "),
              std::string::npos)
        << err;
    // Root reads the kernel's own words (here from /dev/kmsg).
    EXPECT_NE(err.find("as its lower layer: overlayfs: "), std::string::npos) << err;
}

// --- rootfs images

TEST_F(MountSafety, ImageBootsKeepsWritesAndReleasesItsLoopDevice) {
    std::string img = image("root.img");
    uint64_t rootfsBefore = treeSum(_rootfs);
    Result r = run(imageSpec(img, "echo persisted > /newfile; awk '$5 == \"/\" { for (i = 7; "
                                  "i < NF; i++) if ($i == \"-\") print $(i+1), $(i+2) }' "
                                  "/proc/self/mountinfo | cut -c1-14; echo ok"));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "ext4 /dev/loop\nok\n");
    EXPECT_TRUE(loopDevicesOf(img).empty()) << "the loop device outlived the container";
    r = run(imageSpec(img, "cat /newfile"));
    EXPECT_EQ(r.out, "persisted\n");
    EXPECT_EQ(treeSum(_rootfs), rootfsBefore) << "the image's source tree changed";
}

TEST_F(MountSafety, VolatileImageIsAttachedReadOnlyAndUnchanged) {
    std::string img = image("root.img");
    uint64_t before = fileSum(img);
    json j = imageSpec(img, "echo x > /newfile && cat /newfile");
    j["volatile"] = true;
    ContainerSpec s = prepared(j);
    ChildIo io;
    Capture out;
    io.out = out.fd;
    ChildProcess init = launch(RealSyscalls::instance(), s, io);
    auto devices = loopDevicesOf(img);
    EXPECT_EQ(init.wait(), 0);
    ASSERT_EQ(devices.size(), 1u);
    EXPECT_EQ(out.text(), "x\n");
    Result r;
    EXPECT_EQ(fileSum(img), before) << "a volatile container wrote to its image";
    r = run(imageSpec(img, "test -e /newfile && echo kept || echo gone"));
    EXPECT_EQ(r.out, "gone\n");
}

TEST_F(MountSafety, ImageUserNamesResolveInsideTheImage) {
    std::ofstream(_rootfs + "/etc/passwd", std::ios::app)
        << "imguser:x:4321:4321::/home/user:/bin/sh\n";
    std::string img = image("root.img");
    json j = imageSpec(img, "id -u; echo $HOME");
    j["process"]["user"] = "imguser";
    Result r = run(j);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "4321\n/home/user\n");
}

TEST_F(MountSafety, KilledImageContainerLeavesNoLoopDevice) {
    std::string img = image("root.img");
    ContainerSpec s = prepared(imageSpec(img, "sleep 60"));
    ChildIo io;
    ChildProcess init = launch(RealSyscalls::instance(), s, io);
    EXPECT_EQ(loopDevicesOf(img).size(), 1u);
    init.kill(SIGKILL);
    init.wait();
    EXPECT_TRUE(loopDevicesOf(img).empty());
}

TEST_F(MountSafety, ReadWriteImageServesOneContainerAtATime) {
    std::string img = image("root.img");
    ContainerSpec s = prepared(imageSpec(img, "sleep 60"));
    ChildIo io;
    ChildProcess init = launch(RealSyscalls::instance(), s, io);
    std::string err = message([&] { prepared(imageSpec(img, "true")); });
    init.kill(SIGKILL);
    init.wait();
    EXPECT_NE(err.find("rootfs image `" + img + "` is in use by `/dev/loop"), std::string::npos)
        << err;
}

TEST_F(MountSafety, CorruptImageIsRefusedBeforeAnyLoopDevice) {
    std::string img = _dir + "/corrupt.img";
    _images.push_back(img);
    { std::ofstream(img) << std::string(8 << 20, '\0'); }
    std::string err = message([&] { run(imageSpec(img, "true")); });
    EXPECT_NE(err.find("rootfs image `" + img + "` failed its check (e2fsck exit status 8"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("is it an ext4 image?"), std::string::npos) << err;
}

TEST_F(MountSafety, ImageWithAUserNamespaceIsRefused) {
    json j = imageSpec("/x.img", "true");
    j["userns"] = {{"uidMappings", {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}}}};
    EXPECT_NE(message([&] { parseSpec(j); }).find("cannot be used with a user namespace"),
              std::string::npos);
}

TEST_F(MountSafety, CreateImageRefusesToOverwriteAndCleansUpAFailure) {
    std::string img = image("root.img");
    ImageRequest req{_rootfs, img, "64M", false};
    EXPECT_EQ(message([&] { createImage(req); }), "`" + img + "` exists (--force replaces it)");
    uint64_t before = fileSum(img);
    // Too small for the tree: mkfs fails, the old file stays, no half-made file appears.
    std::string big = _dir + "/big";
    std::filesystem::create_directories(big);
    { std::ofstream(big + "/blob") << std::string(16 << 20, 'x'); }
    req = {big, img, "8M", true};
    std::string err = message([&] { createImage(req); });
    EXPECT_NE(err.find("give a larger --size"), std::string::npos) << err;
    EXPECT_EQ(fileSum(img), before);
    size_t files = 0;
    for (const auto &e : std::filesystem::directory_iterator(_dir))
        files += e.path().filename().string().find(".partial-") != std::string::npos;
    EXPECT_EQ(files, 0u);
}

// --- no root needed

TEST(ImageSize, Forms) {
    EXPECT_EQ(parseSize("2G"), 2ull << 30);
    EXPECT_EQ(parseSize("512Mi"), 512ull << 20);
    EXPECT_EQ(parseSize("512MiB"), 512ull << 20);
    EXPECT_EQ(parseSize("1.5g"), 3ull << 29);
    EXPECT_EQ(parseSize("4096"), 4096u);
    EXPECT_EQ(parseSize("64k"), 64u << 10);
    for (const char *bad : {"", "G", "2X", "1.2.3", "-1", "2 G", "1.5"}) {
        std::string err = message([&] { parseSize(bad); });
        EXPECT_EQ(err.rfind(std::string("size `") + bad + "`: ", 0), 0u) << err;
    }
}

} // namespace

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
