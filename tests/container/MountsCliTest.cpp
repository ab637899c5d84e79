// Volumes, hostile rootfs trees, --volatile and --rootfs-img through `mobileops container`
// and `mobileops image create-img` end to end (dispatcher, workflow scripts, nsruntime).
// Needs root. Every test checks that no mount and no loop device is left behind.
#include "../nsruntime/TreeSum.h"
#include "CliFixture.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace mobileops::test;
using mobileops::testing::treeSum;

namespace {

// Loop devices whose backing file is under `dir` (/sys/block/loop*/loop/backing_file).
std::vector<std::string> loopsUnder(const std::string &dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto &e : std::filesystem::directory_iterator("/sys/block", ec)) {
        std::string name = e.path().filename().string();
        if (name.rfind("loop", 0) != 0) continue;
        std::ifstream in(e.path() / "loop" / "backing_file");
        std::string backing;
        std::getline(in, backing);
        if (!backing.empty() && backing.rfind(dir, 0) == 0) out.push_back(name + " " + backing);
    }
    return out;
}

class MountsCli : public CliTest {
protected:
    void SetUp() override {
        // readable by the users a container's process may run as
        std::filesystem::permissions(_tmp.path(), std::filesystem::perms(0755));
        CliTest::SetUp();
    }

    void TearDown() override {
        CliTest::TearDown();
        if (_rootfs.empty()) return;
        for (const auto &l : loopsUnder(_tmp.path())) ADD_FAILURE() << "loop device left: " << l;
    }

    // `container run --rm FLAGS ROOTFS sh -c SCRIPT`
    Result inside(const std::vector<std::string> &flags, const std::string &script) {
        std::vector<std::string> args{"container", "run", "--rm"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.insert(args.end(), {_rootfs, "/bin/sh", "-c", script});
        return mo(args);
    }

    std::string hostDir(const std::string &name) {
        std::string d = _tmp.path() + "/" + name;
        std::filesystem::create_directories(d);
        std::ofstream(d + "/marker") << "host";
        return d;
    }

    std::string makeImage(const std::string &name) {
        std::string img = _tmp.path() + "/" + name;
        Result r = mo({"image", "create-img", _rootfs, img, "--size", "64Mi"});
        EXPECT_EQ(r.status, 0) << r.err;
        return img;
    }

    // Wait (bounded) for the container's loop devices to go; they go with its namespace.
    std::vector<std::string> loopsAfterStop() {
        for (int i = 0; i < 100 && !loopsUnder(_tmp.path()).empty(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return loopsUnder(_tmp.path());
    }
};

TEST_F(MountsCli, VolumeReadOnlyAndReadWrite) {
    std::string ro = hostDir("ro"), rw = hostDir("rw");
    Result r = inside({"-v", ro + ":/ro:ro", "--volume", rw + ":/rw"},
                      "cat /ro/marker; echo; touch /ro/x 2>&1; echo rc=$?; echo w > /rw/new && "
                      "echo rw-ok");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "host\ntouch: /ro/x: Read-only file system\nrc=1\nrw-ok\n");
    EXPECT_FALSE(std::filesystem::exists(ro + "/x"));
    EXPECT_TRUE(std::filesystem::exists(rw + "/new"));
    // z/Z (SELinux relabelling) are accepted and ignored; propagation options apply.
    r = inside({"-v", ro + ":/data:ro,Z,rshared"},
               "grep ' /data ' /proc/self/mountinfo | grep -c shared:");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1\n");
}

TEST_F(MountsCli, BadVolumesAreNamed) {
    std::string vol = hostDir("vol");
    Result r = inside({"-v", vol + ":/a/../etc"}, "true");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err,
              "mobileops: invalid --volume `" + vol + ":/a/../etc`: `/a/../etc` contains `..`\n");
    r = inside({"-v", vol + ":data"}, "true");
    EXPECT_NE(r.err.find("`data` is not an absolute path"), std::string::npos) << r.err;
    r = inside({"-v", vol + ":/data:rw,bogus"}, "true");
    EXPECT_NE(r.err.find("unknown option `bogus`"), std::string::npos) << r.err;
    r = inside({"-v", "na/me:/data"}, "true");
    EXPECT_NE(r.err.find("`na/me` is neither a volume name"), std::string::npos) << r.err;
    std::vector<std::string> flags;
    for (int i = 0; i < 65; ++i) flags.insert(flags.end(), {"-v", vol + ":/v" + std::to_string(i)});
    r = inside(flags, "true");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("65 bind mounts, at most 64 per container"), std::string::npos) << r.err;
    flags.resize(128);
    r = inside(flags, "ls /v63");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "marker\n");
}

TEST_F(MountsCli, MissingSourceFailsOrIsSkippedWithSoftMounts) {
    const std::string missing = _tmp.path() + "/missing";
    Result r = inside({"-v", missing + ":/data"}, "true");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err,
              "mobileops: mount `/data`: source `" + missing + "`: No such file or directory\n");
    r = inside({"--soft-mounts", "-v", missing + ":/data"}, "test -e /data || echo skipped");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "skipped\n");
    EXPECT_NE(r.err.find("warning: [nsruntime] mount `/data`: source `" + missing +
                         "` does not exist; skipped (soft mounts)"),
              std::string::npos)
        << r.err;
    // The same through a VirtualRoot file.
    std::string spec = _tmp.file("soft.yaml", "apiVersion: v1\nkind: VirtualRoot\n"
                                              "metadata: { name: soft }\n"
                                              "spec:\n  rootfs: " +
                                                  _rootfs +
                                                  "\n"
                                                  "  command: [/bin/sh, -c, echo ran]\n"
                                                  "  softMounts: true\n"
                                                  "  volumes:\n"
                                                  "    - { name: gone, hostPath: " +
                                                  missing + ", containerPath: /data }\n");
    r = mo({"container", "run", "--rm", "-f", spec});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "ran\n");
}

TEST_F(MountsCli, HostileRootfsCannotReachTheHost) {
    std::string host = hostDir("hostdir");
    uint64_t before = treeSum(host);
    std::filesystem::remove_all(_rootfs + "/proc");
    std::filesystem::create_symlink(host, _rootfs + "/proc");
    Result r = inside({}, "true");
    EXPECT_EQ(r.status, 125) << r.err;
    EXPECT_NE(r.err.find("rootfs `/proc` is a symlink to `" + host + "`: it must be a directory"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(treeSum(host), before);

    // A volume target symlinked to the host's /etc lands on the rootfs's /etc.
    std::filesystem::remove(_rootfs + "/proc");
    std::filesystem::create_directory(_rootfs + "/proc");
    std::filesystem::create_symlink("../../../../../../etc", _rootfs + "/data");
    uint64_t etc = treeSum("/etc");
    r = inside({"-v", host + ":/data"}, "cat /etc/marker");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "host");
    EXPECT_EQ(treeSum("/etc"), etc);
    EXPECT_FALSE(std::filesystem::exists("/etc/marker"));
}

TEST_F(MountsCli, VolatileWritesVanishAcrossRestarts) {
    uint64_t before = treeSum(_rootfs);
    Result r = inside({"--volatile"}, "echo x > /etc/new && rm /bin/ls && cat /etc/new");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "x\n");
    EXPECT_EQ(treeSum(_rootfs), before);

    r = mo({"container", "boot", "--volatile", "vol", _rootfs, "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "exec", "vol", "/bin/sh", "-c", "echo y > /written; cat /written"});
    EXPECT_EQ(r.out, "y\n") << r.err;
    EXPECT_EQ(mo({"container", "stop", "--time", "1", "vol"}).status, 0);
    r = mo({"container", "start", "vol"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "exec", "vol", "/bin/sh", "-c",
            "test -e /written && echo kept || echo gone"});
    EXPECT_EQ(r.out, "gone\n") << r.err;
    EXPECT_EQ(mo({"container", "delete", "--force", "vol"}).status, 0);
    EXPECT_EQ(treeSum(_rootfs), before);
    // Only the empty mount point is on the host.
    EXPECT_TRUE(std::filesystem::is_empty(_tmp.path() + "/run/rootfs"));
}

TEST_F(MountsCli, ImageCreateBootStopRestart) {
    std::string img = _tmp.path() + "/root.img";
    Result r = mo({"image", "create-img", _rootfs, img, "--size", "64Mi"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("created " + img + ": ext4, 64.0 MiB (sparse: "), std::string::npos)
        << r.out;
    struct stat st;
    ASSERT_EQ(::stat(img.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 64 << 20);
    EXPECT_LT(st.st_blocks * 512, st.st_size) << "not sparse";

    r = mo({"container", "boot", "--rootfs-img", img, "imgbox", "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(loopsUnder(_tmp.path()).size(), 1u);
    r = mo({"container", "exec", "imgbox", "/bin/sh", "-c",
            "echo persisted > /kept; grep -c ' / / .* - ext4 /dev/loop' /proc/self/mountinfo"});
    EXPECT_EQ(r.out, "1\n") << r.err;
    r = mo({"container", "list"});
    EXPECT_NE(r.out.find(img), std::string::npos) << r.out;
    EXPECT_EQ(mo({"container", "stop", "--time", "1", "imgbox"}).status, 0);
    EXPECT_TRUE(loopsAfterStop().empty()) << "the loop device outlived the container";

    r = mo({"container", "start", "imgbox"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "exec", "imgbox", "/bin/cat", "/kept"});
    EXPECT_EQ(r.out, "persisted\n") << r.err;
    // A read-write image serves one container at a time.
    r = mo({"container", "run", "--rm", "--rootfs-img", img, "/bin/true"});
    EXPECT_EQ(r.status, 125);
    EXPECT_NE(r.err.find("is in use by `/dev/loop"), std::string::npos) << r.err;
    EXPECT_EQ(mo({"container", "delete", "--force", "imgbox"}).status, 0);
    EXPECT_TRUE(loopsAfterStop().empty());

    // Foreground, with a command that has options after `--`.
    // the image takes ROOTFS's place: the next word starts the command, options and all
    r = mo({"container", "run", "--rm", "--rootfs-img", img, "/bin/sh", "-c", "cat /kept"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "persisted\n");
    EXPECT_TRUE(loopsAfterStop().empty());

    // The init reached the loop devices to mount its root; the program cannot, even with
    // CAP_MKNOD: neither /dev/loop-control nor its own root's loop device.
    r = mo({"container", "run", "--rm", "--cap-add", "MKNOD", "--rootfs-img", img, "/bin/sh", "-c",
            "mknod /lc c 10 237 && { (exec 3<>/lc) 2>/dev/null && echo control=open || "
            "echo control=denied; }; "
            "d=$(awk '$5==\"/\" {print $3; exit}' /proc/self/mountinfo); "
            "mknod /root.dev b ${d%:*} ${d#*:} && { dd if=/root.dev of=/dev/null count=1 "
            "2>/dev/null && echo loop=open || echo loop=denied; }; rm -f /lc /root.dev"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "control=denied\nloop=denied\n") << r.err;
    EXPECT_TRUE(loopsAfterStop().empty());
}

TEST_F(MountsCli, VolatileImageSharesReadOnly) {
    std::string img = makeImage("root.img");
    Result r =
        mo({"container", "boot", "--volatile", "--rootfs-img", img, "a", "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "run", "--rm", "--volatile", "--rootfs-img", img, "--", "/bin/sh", "-c",
            "echo x > /f && cat /f"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "x\n");
    EXPECT_EQ(mo({"container", "delete", "--force", "a"}).status, 0);
    EXPECT_TRUE(loopsAfterStop().empty());
}

TEST_F(MountsCli, CreateImgErrors) {
    std::string img = makeImage("root.img");
    Result r = mo({"image", "create-img", _rootfs, img, "--size", "64Mi"});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err, "creating " + img + " (64Mi) from " + _rootfs + " ...\nmobileops: `" + img +
                         "` exists (--force replaces it)\n");
    r = mo({"image", "create-img", _rootfs, img, "--size", "64Mi", "--force"});
    EXPECT_EQ(r.status, 0) << r.err;
    r = mo({"image", "create-img", _rootfs, _tmp.path() + "/x.img", "--size", "2X"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("size `2X`: unknown unit"), std::string::npos) << r.err;
    r = mo({"image", "create-img", _rootfs, _tmp.path() + "/x.img"});
    EXPECT_NE(r.err.find("no --size given"), std::string::npos) << r.err;
    // Too small for the tree: no file is left.
    std::ofstream(_rootfs + "/blob") << std::string(12 << 20, 'x');
    r = mo({"image", "create-img", _rootfs, _tmp.path() + "/small.img", "--size", "8M"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("give a larger --size"), std::string::npos) << r.err;
    for (const auto &e : std::filesystem::directory_iterator(_tmp.path()))
        EXPECT_EQ(e.path().filename().string().find("small.img"), std::string::npos) << e.path();
}

TEST_F(MountsCli, CorruptImageIsRefusedWithoutALoopDevice) {
    std::string img = _tmp.path() + "/corrupt.img";
    // Not an ext4 filesystem at all: e2fsck finds no superblock, primary or backup.
    { std::ofstream(img) << std::string(8 << 20, '\0'); }
    Result r = mo({"container", "run", "--rm", "--rootfs-img", img, "/bin/true"});
    EXPECT_EQ(r.status, 125);
    EXPECT_NE(r.err.find("rootfs image `" + img + "` failed its check (e2fsck exit status "),
              std::string::npos)
        << r.err;
    EXPECT_TRUE(loopsUnder(_tmp.path()).empty());
}

} // namespace
