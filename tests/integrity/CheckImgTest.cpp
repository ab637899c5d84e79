// `integrity check-img`: e2fsck -n over real ext4 images made with mkfs.ext4, damaged with
// debugfs, and one attached to a loop device and mounted (root).
#include "CheckImg.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Loop.h>

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

using namespace mobileops::integrity;
using mobileops::common::Error;
using mobileops::test::run;
using mobileops::test::TempDir;

namespace {

std::string program(const std::string &name) {
    for (const char *dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
        std::string p = std::string(dir) + "/" + name;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

class CheckImg : public ::testing::Test {
protected:
    void SetUp() override {
        for (const char *tool : {"mkfs.ext4", "debugfs", "e2fsck", "truncate"})
            if (program(tool).empty()) GTEST_SKIP() << tool << " is not installed (e2fsprogs)";
    }

    // A clean 32 MiB ext4 image.
    std::string makeImage(const std::string &name) {
        std::string file = _tmp.path() + "/" + name;
        auto r = run({program("truncate"), "-s", "32M", file});
        EXPECT_EQ(r.status, 0) << r.err;
        r = run({program("mkfs.ext4"), "-q", "-F", file});
        EXPECT_EQ(r.status, 0) << r.out << r.err;
        return file;
    }

    void debugfs(const std::string &file, const std::string &request) {
        auto r = run({program("debugfs"), "-w", "-R", request, file});
        ASSERT_EQ(r.status, 0) << r.out << r.err;
    }

    TempDir _tmp;
};

TEST_F(CheckImg, FreshImageIsClean) {
    std::string file = makeImage("clean.img");
    ImageCheck c = checkImage(file);
    EXPECT_TRUE(c.clean);
    EXPECT_EQ(c.exitCode, 0);
    EXPECT_EQ(c.verdict, "clean");
    EXPECT_EQ(c.file, file);
    EXPECT_FALSE(c.mounted);
    EXPECT_NE(c.output.find("Pass 5"), std::string::npos) << c.output;
    auto j = c.toJson();
    EXPECT_EQ(j["clean"], true);
    EXPECT_EQ(j["exitCode"], 0);
    EXPECT_EQ(j["file"], file);
    EXPECT_EQ(j["mounted"], false);
}

TEST_F(CheckImg, RelativePathIsMadeAbsolute) {
    std::string file = makeImage("rel.img");
    std::string cwd = std::filesystem::current_path();
    std::filesystem::current_path(_tmp.path());
    ImageCheck c = checkImage("./rel.img");
    std::filesystem::current_path(cwd);
    EXPECT_EQ(c.file, file);
    EXPECT_TRUE(c.clean);
}

TEST_F(CheckImg, WrongLinkCountIsAnErrorLeftUncorrected) {
    std::string file = makeImage("links.img");
    debugfs(file, "sif <11> links_count 7"); // lost+found
    ImageCheck c = checkImage(file);
    EXPECT_FALSE(c.clean);
    EXPECT_EQ(c.exitCode, 4);
    EXPECT_EQ(c.verdict, "errors found: Inode 11 ref count is 7, should be 2");
    // -n: nothing was written.
    EXPECT_EQ(checkImage(file).exitCode, 4);
}

TEST_F(CheckImg, ClearedRootInodeIsReportedWithTheFirstProblem) {
    std::string file = makeImage("root.img");
    debugfs(file, "clri <2>");
    ImageCheck c = checkImage(file);
    EXPECT_FALSE(c.clean);
    EXPECT_TRUE(c.exitCode & 4) << c.exitCode;
    EXPECT_EQ(c.verdict.rfind("errors found: Root inode is not a directory (and ", 0), 0u)
        << c.verdict;
}

TEST_F(CheckImg, NonExtFileIsNotAnImage) {
    std::string junk = _tmp.file("junk.img", std::string(2 << 20, 'x'));
    ImageCheck c = checkImage(junk);
    EXPECT_FALSE(c.clean);
    EXPECT_EQ(c.exitCode, 8);
    EXPECT_EQ(c.verdict, "not an ext2/3/4 image");
    EXPECT_NE(c.output.find("Bad magic number"), std::string::npos) << c.output;

    ImageCheck empty = checkImage(_tmp.file("empty.img", ""));
    EXPECT_FALSE(empty.clean);
    EXPECT_EQ(empty.verdict, "not an ext2/3/4 image");
}

TEST_F(CheckImg, MissingFileAndDirectoryAreErrors) {
    try {
        checkImage(_tmp.path() + "/nope.img");
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
        EXPECT_EQ(std::string(e.what()), "image `" + _tmp.path() + "/nope.img`: no such file");
    }
    try {
        checkImage(_tmp.path());
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_EQ(std::string(e.what()), "image `" + _tmp.path() + "`: not a regular file");
    }
}

TEST_F(CheckImg, MountedImageIsFlagged) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mount)";
    std::string file = makeImage("mounted.img");
    std::string dir = _tmp.path() + "/mnt";
    std::filesystem::create_directories(dir);
    {
        mobileops::common::LoopDevice loop(file, true);
        ASSERT_EQ(::mount(loop.path().c_str(), dir.c_str(), "ext4", MS_RDONLY, nullptr), 0)
            << std::strerror(errno);
        struct Unmount {
            std::string dir;
            ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
        } unmount{dir};
        ImageCheck c = checkImage(file);
        EXPECT_TRUE(c.mounted);
        EXPECT_TRUE(c.toJson()["mounted"]);
    }
    // The autoclear device went with the mount.
    EXPECT_FALSE(checkImage(file).mounted);
}

} // namespace
