// The volume, storage and assets workflows through the `mobileops` dispatcher (real root,
// the real state store): class files, volume create/list/inspect/rm with a size enforced
// for real, backup -> rm -> restore byte for byte, corrupt backups refused, volumes used
// by containers, and the asset workflow's backup/verify/restore.
#include "CliFixture.h"
#include "VolumeTestTree.h"

#include <nlohmann/json.hpp>

#include <sys/mount.h>

namespace mobileops::test {
namespace {

using nlohmann::json;

constexpr size_t kMiB = 1 << 20;

class VolumeCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped()) return;
        _classes = _tmp.path() + "/classes.yaml";
        writeAll(_tmp.path() + "/none.conf", "[storage]\nclasses = " + _classes + "\n");
        writeAll(_classes, "classes:\n"
                           "  - name: plain\n"
                           "    quota: none\n"
                           "  - name: fast\n"
                           "    mountOptions: [noatime]\n"
                           "    defaultSize: 16Mi\n"
                           "    description: small and quick\n");
    }
    void TearDown() override {
        if (!_rootfs.empty()) {
            // Containers first (they use volumes), then what volumes a failed test left.
            Result c = mo({"container", "list", "--all", "--json"});
            for (const auto &ct : json::parse(c.out.empty() ? "[]" : c.out))
                mo({"container", "delete", "--force", ct["name"]});
            Result r = mo({"volume", "list", "--json"});
            for (const auto &v : json::parse(r.out.empty() ? "[]" : r.out))
                mo({"volume", "rm", "--force", v["name"]});
            for (const auto &l : loopsUnderSettled(_tmp.path()))
                ADD_FAILURE() << "loop device left: " << l;
        }
        CliTest::TearDown();
        for (const auto &m : mountsUnder(_tmp.path())) ::umount2(m.c_str(), MNT_DETACH);
    }

    json moJson(const std::vector<std::string> &args) {
        std::vector<std::string> a = args;
        a.push_back("--json");
        Result r = mo(a);
        EXPECT_EQ(r.status, 0) << r.err;
        return json::parse(r.out.empty() ? "null" : r.out);
    }
    std::string mountpoint(const std::string &volume) {
        return moJson({"volume", "inspect", volume})["mountpoint"];
    }

    std::string _classes;
};

TEST_F(VolumeCli, StorageClassesComeFromTheConfiguredFile) {
    json list = moJson({"storage", "class", "list"});
    std::vector<std::string> names;
    for (const auto &c : list) names.push_back(c["name"]);
    EXPECT_EQ(names,
              (std::vector<std::string>{"high-performance", "standard", "cold", "plain", "fast"}));
    json fast = moJson({"storage", "class", "inspect", "fast"});
    EXPECT_EQ(fast["defaultSize"], 16 * kMiB);
    EXPECT_EQ(fast["mountOptions"], json::array({"noatime"}));
    EXPECT_EQ(fast["file"], _classes);
    EXPECT_EQ(fast["backing"]["directory"], _tmp.path() + "/root/storage/volumes/fast");
    Result table = mo({"storage", "class", "list"});
    EXPECT_NE(table.out.find("standard (default)"), std::string::npos) << table.out;

    writeAll(_classes, "classes:\n  - name: fast\n    quota: lop\n");
    Result bad = mo({"storage", "class", "list"});
    EXPECT_EQ(bad.status, 1);
    EXPECT_EQ(bad.err,
              "mobileops: " + _classes +
                  ":3: class `fast`: field `quota`: `lop` is not one of `loop`, `project`, "
                  "`none`\n");
    Result none = mo({"storage", "class", "inspect", "gold"});
    EXPECT_EQ(none.status, 1);
}

TEST_F(VolumeCli, VolumeLifecycleWithARealSizeLimit) {
    Result c = mo({"volume", "create", "data", "--class", "fast", "--label", "app=web"});
    ASSERT_EQ(c.status, 0) << c.err;
    EXPECT_EQ(c.out, "data\n");
    json list = moJson({"volume", "list"});
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0]["size"], 16 * kMiB) << "the class's default size";
    EXPECT_EQ(list[0]["labels"]["app"], "web");
    json v = moJson({"volume", "inspect", "data"});
    EXPECT_EQ(v["quota"], "loop");
    EXPECT_EQ(v["mounted"], true);
    std::string mnt = v["mountpoint"];
    EXPECT_EQ(mountsUnder(mnt).size(), 1u);

    EXPECT_EQ(fillFile(mnt + "/big", 32 * kMiB), ENOSPC);
    EXPECT_GT(moJson({"volume", "inspect", "data"})["used"].get<uint64_t>(), 8 * kMiB);

    Result dup = mo({"volume", "create", "data"});
    EXPECT_EQ(dup.status, 1);
    EXPECT_EQ(dup.err, "mobileops: volume `data` already exists\n");
    Result sized = mo({"volume", "create", "p", "--class", "plain", "--size", "1G"});
    EXPECT_EQ(sized.status, 1);
    EXPECT_NE(sized.err.find("class `plain` has `quota: none`"), std::string::npos) << sized.err;

    ASSERT_EQ(mo({"volume", "rm", "data"}).status, 0);
    EXPECT_TRUE(mountsUnder(_tmp.path()).empty());
    EXPECT_TRUE(moJson({"volume", "list"}).empty());
    EXPECT_EQ(mo({"volume", "rm", "data"}).err, "mobileops: volume `data` does not exist\n");
}

TEST_F(VolumeCli, BackupRemoveRestoreGivesTheSameBytes) {
    ASSERT_EQ(mo({"volume", "create", "db", "--size", "24Mi"}).status, 0);
    std::string mnt = mountpoint("db");
    makeSampleTree(mnt);
    auto before = snapshot(mnt);
    std::string file = _tmp.path() + "/db.tar.zst";
    json b = moJson({"volume", "backup", "db", "-o", file});
    EXPECT_EQ(b["file"], file);
    ASSERT_EQ(mo({"volume", "rm", "db"}).status, 0);

    json r = moJson({"volume", "restore", "db", file});
    EXPECT_EQ(r["created"], true);
    EXPECT_EQ(moJson({"volume", "inspect", "db"})["size"], 24 * kMiB);
    EXPECT_EQ(snapshot(mountpoint("db")), before);

    // A copy with one byte changed, its FILE.sha256 beside it: refused, data untouched.
    writeAll(mountpoint("db") + "/later", "after the backup\n");
    before = snapshot(mountpoint("db"));
    std::string bytes = readAll(file), bad = _tmp.path() + "/bad.tar.zst";
    bytes[bytes.size() / 2] ^= 1;
    writeAll(bad, bytes);
    writeAll(bad + ".sha256", readAll(file + ".sha256"));
    Result refused = mo({"volume", "restore", "db", bad});
    EXPECT_EQ(refused.status, 1);
    EXPECT_NE(refused.err.find("does not match"), std::string::npos) << refused.err;
    writeAll(bad, bytes.substr(0, bytes.size() / 3));
    refused = mo({"volume", "restore", "db", bad, "--unverified"});
    EXPECT_EQ(refused.status, 1);
    EXPECT_NE(refused.err.find("runcated"), std::string::npos) << refused.err;
    EXPECT_EQ(snapshot(mountpoint("db")), before);
}

TEST_F(VolumeCli, AVolumeInUseIsKeptAndOutlivesItsContainer) {
    Result c = mo({"container", "create", "app1", "-v", "shared:/data", _rootfs, "/bin/true"});
    if (c.status != 0 && c.err.find("not applied") != std::string::npos)
        GTEST_SKIP() << "the runtime does not hand named volumes to the storage service yet";
    ASSERT_EQ(c.status, 0) << c.err;
    Result run = mo({"container", "run", "--rm", "-v", "shared:/data", _rootfs, "/bin/sh", "-c",
                     "echo kept > /data/file"});
    ASSERT_EQ(run.status, 0) << run.err;
    Result rm = mo({"volume", "rm", "shared"});
    EXPECT_EQ(rm.status, 1);
    EXPECT_NE(rm.err.find("in use by `app1`"), std::string::npos) << rm.err;
    ASSERT_EQ(mo({"container", "delete", "app1"}).status, 0);
    EXPECT_TRUE(moJson({"volume", "inspect", "shared"})["users"].empty());
    EXPECT_EQ(readAll(mountpoint("shared") + "/file"), "kept\n");
    EXPECT_EQ(mo({"volume", "rm", "shared"}).status, 0);
}

TEST_F(VolumeCli, AssetsBackUpVerifyAndRestore) {
    std::string dir = _tmp.path() + "/site", file = _tmp.path() + "/app.conf";
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    makeSampleTree(dir);
    writeAll(file, "listen = 8080\n");
    ASSERT_EQ(mo({"assets", "add", dir, "cold", "the web site"}).status, 0);
    ASSERT_EQ(mo({"assets", "add", file, "plain", "its config", "--name", "conf"}).status, 0);
    Result dupe = mo({"assets", "add", dir, "cold", "again", "--name", "other"});
    EXPECT_NE(dupe.err.find("is already asset `site`"), std::string::npos) << dupe.err;
    auto siteBefore = snapshot(dir);

    json b = moJson({"assets", "backup"});
    ASSERT_EQ(b["backups"].size(), 2u);
    std::string archive = b["backups"][0]["file"];
    EXPECT_EQ(archive.rfind(_tmp.path() + "/root/storage/volumes/cold/assets/site/", 0), 0u)
        << archive;
    EXPECT_EQ(mo({"assets", "verify"}).status, 0);

    // Changed, added, removed: named, exit status 1.
    writeAll(dir + "/etc/config", "name = other\n");
    writeAll(dir + "/new-file", "x");
    ASSERT_EQ(::unlink((dir + "/blob-again").c_str()), 0);
    writeAll(file, "listen = 9090\n");
    Result v = mo({"assets", "verify"});
    EXPECT_EQ(v.status, 1);
    EXPECT_NE(v.out.find("changed  etc/config (content)"), std::string::npos) << v.out;
    EXPECT_NE(v.out.find("added    new-file"), std::string::npos) << v.out;
    EXPECT_NE(v.out.find("removed  blob-again"), std::string::npos) << v.out;
    EXPECT_NE(v.out.find("changed  app.conf (content)"), std::string::npos) << v.out;

    ASSERT_EQ(mo({"assets", "restore", "site"}).status, 0);
    ASSERT_EQ(mo({"assets", "restore", "conf"}).status, 0);
    EXPECT_EQ(snapshot(dir), siteBefore);
    EXPECT_EQ(readAll(file), "listen = 8080\n");
    EXPECT_EQ(mo({"assets", "verify"}).status, 0);

    // A changed archive: verify names it, restore refuses and leaves the path alone.
    std::string bytes = readAll(archive);
    bytes[bytes.size() / 2] ^= 1;
    writeAll(archive, bytes);
    writeAll(dir + "/new-file", "x");
    auto now = snapshot(dir);
    json report = json::parse(mo({"assets", "verify", "--json", "site"}).out);
    EXPECT_EQ(report["ok"], false);
    EXPECT_EQ(report["assets"][0]["archives"][0]["status"], "changed");
    Result restore = mo({"assets", "restore", "site"});
    EXPECT_EQ(restore.status, 1);
    EXPECT_NE(restore.err.find("has changed since the backup"), std::string::npos) << restore.err;
    EXPECT_EQ(snapshot(dir), now);
    EXPECT_EQ(moJson({"assets", "list"}).size(), 2u);
}

} // namespace
} // namespace mobileops::test
