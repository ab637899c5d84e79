// The volume engine as the storage service runs it (real root: loop devices, mounts,
// archives), over an in-memory store (VolumeTestHost.h): all-or-nothing create, users and
// in-use refusal, per-container scratch areas, gc after kills and reboots, and backup ->
// remove -> restore byte for byte, with corrupt and truncated archives refused and the
// data left untouched.
#include "Classes.h"
#include "Paths.h"
#include <mobileops/common/Progress.h>
#include "TestUtil.h"
#include "VolumeTestHost.h"
#include "VolumeTestTree.h"
#include "Volumes.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace mobileops::storage {
namespace {

using nlohmann::json;
using test::readAll;
using test::snapshot;
using test::writeAll;

constexpr uint64_t kMiB = 1 << 20;

class Volume : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mounts)";
        ASSERT_EQ(::mkdir((_tmp.path() + "/locks").c_str(), 0700), 0);
        _fake = std::make_unique<test::VolumeTestHost>(_tmp.path() + "/locks");
        _host = std::make_unique<common::Host>(_fake->host());
        _paths = std::make_unique<Paths>(_tmp.path() + "/storage");
        _paths->create();
        useClasses("classes:\n"
                   "  - name: plain\n"
                   "    quota: none\n"
                   "  - name: sized\n"
                   "    defaultSize: 8Mi\n");
    }
    void TearDown() override {
        if (!_host) return;
        // Whatever a failed test left, through the engine first.
        try {
            for (const auto &v : volumes().list()) volumes().remove(v["name"], true);
        } catch (const std::exception &e) {
            ADD_FAILURE() << "clean-up: " << e.what();
        }
        for (const auto &m : test::mountsUnder(_tmp.path())) {
            ADD_FAILURE() << "mount left behind: " << m;
            ::umount2(m.c_str(), MNT_DETACH);
        }
        for (const auto &l : test::loopsUnderSettled(_tmp.path()))
            ADD_FAILURE() << "loop device left: " << l;
    }

    void useClasses(const std::string &yaml) {
        _classes =
            std::make_unique<StorageClasses>(StorageClasses::parse(*_paths, yaml, "test.yaml"));
    }
    Volumes volumes() { return Volumes(*_host, *_paths, *_classes); }
    json inspect(const std::string &name) { return volumes().inspect(name); }
    std::string data(const std::string &name) { return inspect(name)["mountpoint"]; }
    std::string errorOf(const std::function<void()> &fn) {
        try {
            fn();
        } catch (const std::exception &e) {
            return e.what();
        }
        return "";
    }
    json restore(const std::string &name, const std::string &file, bool unverified = false) {
        Progress quiet(false);
        return volumes().restore(name, file, {}, unverified, quiet);
    }
    json backup(const std::string &name, const std::string &file) {
        Progress quiet(false);
        return volumes().backup(name, file, quiet);
    }

    test::TempDir _tmp;
    std::unique_ptr<test::VolumeTestHost> _fake;
    std::unique_ptr<common::Host> _host;
    std::unique_ptr<Paths> _paths;
    std::unique_ptr<StorageClasses> _classes;
};

TEST_F(Volume, CreateListInspectRemove) {
    json v = volumes().create({"data", "", std::string("16Mi"), {{"app", "web"}}});
    EXPECT_EQ(v["class"], "standard");
    EXPECT_EQ(v["quota"], "loop");
    EXPECT_EQ(v["size"], 16 * kMiB);
    EXPECT_EQ(v["labels"]["app"], "web");
    json i = inspect("data");
    EXPECT_EQ(i["mounted"], true);
    EXPECT_EQ(i["mountpoint"], _paths->volumes() + "/standard/data/data");
    EXPECT_LT(i["used"].get<uint64_t>(), kMiB);
    EXPECT_EQ(volumes().list().size(), 1u);

    EXPECT_NE(errorOf([&] {
                  volumes().create({"data", "", std::nullopt, {}});
              }).find("already exists"),
              std::string::npos);
    EXPECT_NE(errorOf([&] {
                  volumes().create({"../x", "", std::nullopt, {}});
              }).find("volume name `../x`"),
              std::string::npos);
    EXPECT_NE(errorOf([&] {
                  volumes().create({"p", "plain", std::string("1G"), {}});
              }).find("quota: none"),
              std::string::npos);
    EXPECT_NE(errorOf([&] {
                  volumes().create({"p", "nope", std::nullopt, {}});
              }).find("class `nope` does not exist"),
              std::string::npos);

    // The class's default size applies; no size in a loop class is a plain directory.
    EXPECT_EQ(volumes().create({"defaulted", "sized", std::nullopt, {}})["size"], 8 * kMiB);
    EXPECT_EQ(volumes().create({"unlimited", "", std::nullopt, {}})["quota"], "none");

    volumes().remove("data", false);
    EXPECT_TRUE(test::mountsUnder(_paths->volumes() + "/standard/data").empty());
    EXPECT_EQ(::access((_paths->volumes() + "/standard/data").c_str(), F_OK), -1);
    EXPECT_NE(errorOf([&] { inspect("data"); }).find("does not exist"), std::string::npos);
}

TEST_F(Volume, CreateIsAllOrNothing) {
    auto nothingLeft = [&](const std::string &cls, const std::string &name) {
        EXPECT_FALSE(_host->get("volume", name).has_value());
        EXPECT_TRUE(test::mountsUnder(_tmp.path()).empty());
        EXPECT_TRUE(test::loopsUnderSettled(_tmp.path()).empty());
        EXPECT_EQ(snapshot(_paths->volumes() + "/" + cls).size(), 1u)
            << "the class directory is empty";
    };
    // Fails in mkfs (below the smallest image).
    EXPECT_NE(errorOf([&] {
                  volumes().create({"tiny", "", std::string("1Mi"), {}});
              }).find("4Mi"),
              std::string::npos);
    nothingLeft("standard", "tiny");
    // Fails at the mount, after the image and its loop device exist: an ext4 option the
    // kernel refuses.
    useClasses("classes:\n  - name: odd\n    mountOptions: [commit=-1]\n");
    std::string err = errorOf([&] { volumes().create({"odd", "odd", std::string("8Mi"), {}}); });
    EXPECT_NE(err.find("create volume `odd`: mount"), std::string::npos) << err;
    nothingLeft("odd", "odd");
}

TEST_F(Volume, NamedVolumeIsSharedAndOutlivesItsContainers) {
    _fake->addContainer("c1", "app1");
    _fake->addContainer("c2", "app2");
    json spec = json::array({{{"name", "shared"}, {"containerPath", "/app/shared"}}});
    json m1 = volumes().prepare("c1", spec);
    json m2 = volumes().prepare("c2", json::array({{{"type", "volume"},
                                                    {"name", "x"},
                                                    {"source", "shared"},
                                                    {"containerPath", "/data"},
                                                    {"readOnly", true}}}));
    ASSERT_EQ(m1.size(), 1u);
    EXPECT_EQ(m1[0]["destination"], "/app/shared");
    EXPECT_EQ(m1[0]["readOnly"], false);
    EXPECT_EQ(m2[0]["readOnly"], true);
    EXPECT_EQ(m1[0]["source"], m2[0]["source"]);
    EXPECT_EQ(inspect("shared")["class"], "standard")
        << "created in the default class on first use";

    writeAll(m1[0]["source"].get<std::string>() + "/note", "from app1\n");
    EXPECT_EQ(readAll(m2[0]["source"].get<std::string>() + "/note"), "from app1\n");
    // Idempotent: the runtime prepares again at every start.
    EXPECT_EQ(volumes().prepare("c1", spec), m1);
    EXPECT_EQ(inspect("shared")["users"].size(), 2u);

    // In use: refused naming the containers.
    std::string err = errorOf([&] { volumes().remove("shared", false); });
    EXPECT_NE(err.find("in use by `app1`, `app2`"), std::string::npos) << err;

    volumes().release("c1");
    volumes().release("c1"); // idempotent
    _fake->removeContainer("c1");
    err = errorOf([&] { volumes().remove("shared", false); });
    EXPECT_NE(err.find("`app2`"), std::string::npos) << err;
    EXPECT_EQ(err.find("`app1`"), std::string::npos) << err;
    volumes().release("c2");
    _fake->removeContainer("c2");
    EXPECT_EQ(readAll(m1[0]["source"].get<std::string>() + "/note"), "from app1\n");
    EXPECT_TRUE(inspect("shared")["users"].empty());
    volumes().remove("shared", false);
}

TEST_F(Volume, ForceRemovesAVolumeInUse) {
    _fake->addContainer("c1", "app1");
    volumes().prepare("c1", json::array({{{"name", "v"}, {"containerPath", "/v"}}}));
    volumes().remove("v", true);
    EXPECT_FALSE(_host->get("volume", "v").has_value());
}

TEST_F(Volume, ScratchAreasAreLimitedAndGoWithRelease) {
    _fake->addContainer("c1", "app1");
    json mounts = volumes().prepare(
        "c1", json::array({{{"ephemeral", {{"size", "8Mi"}}}, {"containerPath", "/scratch"}},
                           {{"type", "emptyDir"},
                            {"name", "mem"},
                            {"medium", "Memory"},
                            {"sizeLimit", 4 * kMiB},
                            {"containerPath", "/mem"}},
                           {{"hostPath", "/srv"}, {"containerPath", "/srv"}}}));
    ASSERT_EQ(mounts.size(), 3u);
    std::string disk = mounts[0]["source"], mem = mounts[1]["source"];
    EXPECT_EQ(disk.rfind(_paths->container("c1") + "/ephemeral/", 0), 0u) << disk;
    EXPECT_EQ(mounts[2]["source"], "/srv");
    EXPECT_EQ(test::fillFile(disk + "/big", 16 * kMiB), ENOSPC);
    EXPECT_EQ(test::fillFile(mem + "/big", 8 * kMiB), ENOSPC);
    EXPECT_EQ(volumes().prepare("c1", json::array({{{"ephemeral", {{"size", "8Mi"}}},
                                                    {"containerPath", "/scratch"}}}))[0]["source"],
              disk)
        << "a second prepare reuses the area";

    volumes().release("c1");
    EXPECT_TRUE(test::mountsUnder(_paths->container("c1")).empty());
    EXPECT_EQ(::access(_paths->container("c1").c_str(), F_OK), -1);
    volumes().release("c1");
}

TEST_F(Volume, PrepareChecksEverythingFirstAndUndoesOnlyItsOwnWork) {
    _fake->addContainer("c1", "app1");
    std::string err = errorOf([&] {
        volumes().prepare(
            "c1", json::array({{{"name", "fresh"}, {"containerPath", "/a"}},
                               {{"type", "configMap"}, {"name", "cm"}, {"containerPath", "/b"}}}));
    });
    EXPECT_NE(err.find("volumes[1]: `configMap` volumes are not supported"), std::string::npos)
        << err;
    EXPECT_FALSE(_host->get("volume", "fresh").has_value());
    EXPECT_NE(errorOf([&] {
                  volumes().prepare("c1", json::array({{{"name", "v"}, {"containerPath", "rel"}}}));
              }).find("not absolute"),
              std::string::npos);

    // A failure half-way (the second volume is half-made): the first, made by this call, goes.
    _host->put("volume", "stuck", "stuck",
               {{"name", "stuck"},
                {"status", "creating"},
                {"area", {{"home", _tmp.path() + "/nowhere"}, {"mechanism", "none"}}}});
    volumes().create({"existing", "", std::nullopt, {}});
    err = errorOf([&] {
        volumes().prepare("c1",
                          json::array({{{"name", "fresh"}, {"containerPath", "/a"}},
                                       {{"name", "existing"}, {"containerPath", "/e"}},
                                       {{"ephemeral", json::object()}, {"containerPath", "/s"}},
                                       {{"name", "stuck"}, {"containerPath", "/b"}}}));
    });
    EXPECT_NE(err.find("volume `stuck` is creating"), std::string::npos) << err;
    EXPECT_FALSE(_host->get("volume", "fresh").has_value());
    EXPECT_TRUE(inspect("existing")["users"].empty());
    EXPECT_EQ(::access((_paths->container("c1") + "/ephemeral").c_str(), F_OK), -1);
    _host->remove("volume", "stuck");
}

TEST_F(Volume, GcCleansAfterKilledCommandsAndReboots) {
    _fake->addContainer("gone", "was-here");
    _fake->addContainer("alive", "still-here");
    volumes().prepare("gone",
                      json::array({{{"name", "v"}, {"containerPath", "/v"}},
                                   {{"ephemeral", {{"size", "4Mi"}}}, {"containerPath", "/s"}}}));
    volumes().prepare("alive", json::array({{{"name", "v"}, {"containerPath", "/v"}}}));
    volumes().create({"limited", "", std::string("8Mi"), {}});
    writeAll(data("limited") + "/kept", "x");
    _fake->removeContainer("gone");                      // deleted without its release (a kill -9)
    ASSERT_EQ(::umount2(data("limited").c_str(), 0), 0); // what a reboot does

    // A create killed after its record: status "creating", its lock free.
    std::string home = _paths->volumes() + "/standard/halfmade";
    ASSERT_EQ(::mkdir(home.c_str(), 0700), 0);
    _host->put("volume", "halfmade", "halfmade",
               {{"name", "halfmade"},
                {"status", "creating"},
                {"area", {{"home", home}, {"mechanism", "none"}}}});

    json report = volumes().gc()["released"];
    std::string text = report.dump();
    EXPECT_NE(text.find("ephemeral volume"), std::string::npos) << text;
    EXPECT_NE(text.find("user gone"), std::string::npos) << text;
    EXPECT_NE(text.find("halfmade"), std::string::npos) << text;
    EXPECT_EQ(::access(_paths->container("gone").c_str(), F_OK), -1);
    EXPECT_EQ(::access(home.c_str(), F_OK), -1);
    EXPECT_EQ(inspect("v")["users"],
              json::array({{{"id", "alive"}, {"name", "still-here"}, {"exists", true}}}));
    EXPECT_TRUE(test::mountsUnder(_paths->container("gone")).empty());
    EXPECT_EQ(readAll(data("limited") + "/kept"), "x");
    volumes().release("alive");
}

TEST_F(Volume, BackupRemoveRestoreIsByteIdentical) {
    for (std::string cls : {"standard", "plain"}) {
        SCOPED_TRACE(cls);
        std::optional<std::string> size;
        if (cls == "standard") size = "16Mi";
        volumes().create({"db", cls, size, {}});
        std::string dir = data("db");
        test::makeSampleTree(dir);
        ASSERT_EQ(::chown(dir.c_str(), 999, 998), 0);
        ASSERT_EQ(::chmod(dir.c_str(), 0750), 0);
        auto before = snapshot(dir);
        ASSERT_GT(before.size(), 8u);

        std::string file = _tmp.path() + "/db-" + cls + ".tar.zst";
        json b = backup("db", file);
        EXPECT_EQ(b["file"], file);
        EXPECT_EQ(b["sha256"].get<std::string>().rfind("sha256:", 0), 0u);
        EXPECT_NE(readAll(file + ".sha256").find(b["sha256"].get<std::string>().substr(7)),
                  std::string::npos);
        EXPECT_EQ(inspect("db")["backup"]["sha256"], b["sha256"]);

        volumes().remove("db", false);
        json r = restore("db", file);
        EXPECT_EQ(r["created"], true);
        json i = inspect("db");
        EXPECT_EQ(i["class"], cls) << "recreated in the backup's class";
        EXPECT_EQ(i["size"], size ? json(16 * kMiB) : json(nullptr));
        EXPECT_EQ(snapshot(data("db")), before);

        // Restoring over existing data replaces it: what was added goes.
        writeAll(data("db") + "/added-later", "x");
        restore("db", file);
        EXPECT_EQ(snapshot(data("db")), before);
        volumes().remove("db", false);
    }
}

TEST_F(Volume, CorruptOrTruncatedBackupIsRefusedAndTheDataUntouched) {
    volumes().create({"db", "", std::string("16Mi"), {}});
    test::makeSampleTree(data("db"));
    std::string good = _tmp.path() + "/good.tar.zst";
    backup("db", good);
    writeAll(data("db") + "/newer", "written after the backup\n");
    auto before = snapshot(data("db"));
    std::string bytes = readAll(good);
    ASSERT_GT(bytes.size(), kMiB);

    auto refused = [&](const std::string &name, const std::string &content, bool unverified,
                       const std::string &expect) {
        SCOPED_TRACE(name);
        std::string file = _tmp.path() + "/" + name;
        writeAll(file, content);
        std::string err = errorOf([&] { restore("db", file, unverified); });
        EXPECT_NE(err.find(expect), std::string::npos) << err;
        EXPECT_EQ(snapshot(data("db")), before);
        EXPECT_EQ(snapshot(_paths->volumes() + "/standard/db").size(), before.size() + 2)
            << "nothing left beside the data";
    };
    std::string flipped = bytes;
    flipped[bytes.size() / 2] ^= 0x55; // inside the incompressible blob: zstd keeps no checksum
    refused("flipped.tar.zst", flipped, false, "is not a backup recorded here");
    writeAll(_tmp.path() + "/flipped.tar.zst.sha256", readAll(good + ".sha256"));
    refused("flipped.tar.zst", flipped, false, "does not match");
    refused("truncated.tar.zst", bytes.substr(0, bytes.size() / 2), true, "truncated");
    refused("garbage.tar.zst", std::string(4096, 'x'), true, "backup `");
    refused("empty.tar.zst", "", true, "backup `");

    // The archive recorded for this path, changed since.
    writeAll(good, flipped);
    std::string err = errorOf([&] { restore("db", good); });
    EXPECT_NE(err.find("has changed since it was written"), std::string::npos) << err;
    EXPECT_EQ(snapshot(data("db")), before);
}

TEST_F(Volume, BackupRefusesToWriteIntoTheVolume) {
    volumes().create({"v", "", std::string("8Mi"), {}});
    std::string err = errorOf([&] { backup("v", data("v") + "/self.tar.zst"); });
    EXPECT_NE(err.find("into volume `v` itself"), std::string::npos) << err;
}

} // namespace
} // namespace mobileops::storage
