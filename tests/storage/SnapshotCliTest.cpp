// `container snapshot`, `container restore` and `container snapshots` through the CLI: a
// restore gives back exactly the tree the snapshot saw (new files gone, deleted ones back,
// whiteouts and opaque directories as they were), refuses a running container and a
// corrupt archive (the container untouched), and snapshots go with their container.
// Needs root.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>

using namespace mobileops::test;
using nlohmann::json;

namespace {

// Every path of the container's root filesystem with its type, mode, owner, size and
// link target (not times: a restore keeps files' mtimes, a directory's may differ).
const char *kTree = "find / -xdev | sort | while read -r f; do "
                    "stat -c '%n %F %a %u:%g %s %N' \"$f\"; done; cat /etc/motd";

class SnapshotCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        Result r = mo({"image", "build-rootfs", "-q", _rootfs, "bb:1"});
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"container", "boot", "c", "bb:1", "sleep", "100000"});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    Result sh(const std::string &script) {
        return mo({"container", "exec", "c", "sh", "-c", script});
    }

    std::string tree() {
        Result r = sh(kTree);
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out;
    }

    json snapshots() {
        Result r = mo({"container", "snapshots", "--json", "c"});
        EXPECT_EQ(r.status, 0) << r.err;
        return json::parse(r.out, nullptr, false);
    }
};

TEST_F(SnapshotCli, RestoreGivesBackTheSnapshotsTree) {
    // files, a deleted image file (a whiteout), an opaque directory, a symlink, modes
    Result r = sh("echo saved > /etc/motd && mkdir -p /data/sub && echo x > /data/sub/f && "
                  "rm /bin/vi && rm -r /home && mkdir /home && touch /home/new && "
                  "ln -s /data/sub /link && chmod 0700 /data && chown 1000:1000 /data/sub/f");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string before = tree();
    r = mo({"container", "snapshot", "c", "s1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "s1\n");

    r = sh("echo changed > /etc/motd && rm -r /data /link && touch /bin/vi /after && "
           "rm /home/new && echo y > /etc/passwd");
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_NE(tree(), before);

    r = mo({"container", "restore", "c", "s1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("the container is running: stop it first"), std::string::npos) << r.err;
    ASSERT_EQ(mo({"container", "stop", "-t", "1", "c"}).status, 0);
    r = mo({"container", "restore", "c", "s1"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"container", "start", "c"}).status, 0);
    EXPECT_EQ(tree(), before);
    r = sh("cat /etc/motd; test ! -e /bin/vi && test ! -e /after && grep -c root /etc/passwd");
    EXPECT_EQ(r.out, "saved\n1\n") << r.err;
}

TEST_F(SnapshotCli, ACorruptSnapshotIsRefusedAndTheContainerUntouched) {
    ASSERT_EQ(sh("echo one > /state").status, 0);
    ASSERT_EQ(mo({"container", "snapshot", "c", "s1"}).status, 0);
    ASSERT_EQ(sh("echo two > /state").status, 0);
    json list = snapshots();
    ASSERT_EQ(list.size(), 1u);
    std::string file = list[0].value("file", "");
    ASSERT_TRUE(std::filesystem::exists(file)) << list.dump();
    {
        // one byte in the middle
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(file) / 2));
        f.put('\x55');
    }
    ASSERT_EQ(mo({"container", "stop", "-t", "1", "c"}).status, 0);
    Result r = mo({"container", "restore", "c", "s1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("is corrupt"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("the container is untouched"), std::string::npos) << r.err;
    // truncated
    std::filesystem::resize_file(file, 100);
    r = mo({"container", "restore", "c", "s1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("is corrupt"), std::string::npos) << r.err;
    ASSERT_EQ(mo({"container", "start", "c"}).status, 0);
    EXPECT_EQ(sh("cat /state").out, "two\n");
}

TEST_F(SnapshotCli, NamesListingAndErrors) {
    Result r = mo({"container", "snapshot", "c"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(std::regex_match(r.out, std::regex("[0-9]{8}T[0-9]{6}Z(-[0-9]+)?\n"))) << r.out;
    std::string stamped = r.out.substr(0, r.out.size() - 1);
    ASSERT_EQ(mo({"container", "snapshot", "c", "s1"}).status, 0);
    r = mo({"container", "snapshot", "c", "s1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("already has a snapshot `s1`"), std::string::npos) << r.err;
    r = mo({"container", "snapshot", "c", "../x"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("invalid snapshot name `../x`"), std::string::npos) << r.err;
    ASSERT_EQ(mo({"container", "stop", "-t", "1", "c"}).status, 0);
    r = mo({"container", "restore", "c", "nope"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("has no snapshot `nope`"), std::string::npos) << r.err;

    json list = snapshots();
    ASSERT_EQ(list.size(), 2u) << list.dump();
    EXPECT_EQ(list[0]["snapshot"], stamped);
    EXPECT_EQ(list[1]["snapshot"], "s1");
    EXPECT_EQ(list[1]["sha256"].get<std::string>().rfind("sha256:", 0), 0u);
    r = mo({"container", "snapshots", "c"});
    EXPECT_NE(r.out.find("SNAPSHOT"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("s1"), std::string::npos) << r.out;

    // a container on a rootfs directory has no layer of its own to save
    ASSERT_EQ(mo({"container", "create", "dir", _rootfs, "true"}).status, 0);
    r = mo({"container", "snapshot", "dir"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("does not run from an image"), std::string::npos) << r.err;

    // they go with the container
    std::string dir = _tmp.path() + "/root/storage/snapshots";
    EXPECT_FALSE(std::filesystem::is_empty(dir));
    ASSERT_EQ(mo({"container", "delete", "--force", "c"}).status, 0);
    EXPECT_TRUE(std::filesystem::is_empty(dir));
}

} // namespace
