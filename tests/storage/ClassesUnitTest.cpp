// Storage class files: the built-in classes, what a file adds or redefines, and every
// mistake refused with the file, line, class and field named. Also the pieces of the
// volume engine that need no privilege: names, mount options, area records, manifests.
#include "Assets.h"
#include "Classes.h"
#include "Paths.h"
#include "Quota.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <sys/mount.h>

namespace mobileops::storage {
namespace {

using nlohmann::json;

const Paths kPaths("/var/lib/mobileops/storage");

std::string errorOf(const std::string &yaml) {
    try {
        StorageClasses::parse(kPaths, yaml, "/etc/mobileops/storage-classes.yaml");
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        return e.what();
    }
    return "";
}

TEST(Classes, BuiltInClassesWithStandardTheDefault) {
    StorageClasses c(kPaths);
    ASSERT_EQ(c.all().size(), 3u);
    EXPECT_EQ(c.all()[0].name, "high-performance");
    EXPECT_EQ(c.defaultName(), "standard");
    const StorageClass &s = c.defaultClass();
    EXPECT_EQ(s.directory, "/var/lib/mobileops/storage/volumes/standard");
    EXPECT_EQ(s.quota, QuotaMechanism::Loop);
    EXPECT_FALSE(s.defaultSize.has_value());
    EXPECT_EQ(s.source, "built-in");
    EXPECT_EQ(c.get("cold").mountOptions, std::vector<std::string>{"noatime"});
    try {
        c.get("gold");
        FAIL();
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
        EXPECT_STREQ(
            e.what(),
            "storage class `gold` does not exist (known: high-performance, standard, cold)");
    }
}

TEST(Classes, FileAddsAndRedefinesClasses) {
    StorageClasses c = StorageClasses::parse(kPaths,
                                             "apiVersion: v1\n"
                                             "kind: StorageClasses\n"
                                             "default: fast\n"
                                             "classes:\n"
                                             "  - name: fast\n"
                                             "    description: NVMe\n"
                                             "    directory: /mnt/nvme/volumes/\n"
                                             "    mountOptions: noatime,commit=30\n"
                                             "    defaultSize: 10Gi\n"
                                             "  - name: cold\n"
                                             "    quota: none\n"
                                             "  - name: shared\n"
                                             "    quota: project\n"
                                             "    directory: /srv/xfs\n"
                                             "    defaultSize: none\n",
                                             "classes.yaml");
    ASSERT_EQ(c.all().size(), 5u);
    EXPECT_EQ(c.defaultName(), "fast");
    const StorageClass &fast = c.get("fast");
    EXPECT_EQ(fast.directory, "/mnt/nvme/volumes");
    EXPECT_EQ(fast.mountOptions, (std::vector<std::string>{"noatime", "commit=30"}));
    EXPECT_EQ(fast.defaultSize, 10ull << 30);
    EXPECT_EQ(fast.defaultSizeText, "10Gi");
    EXPECT_EQ(fast.source, "classes.yaml");
    EXPECT_EQ(c.get("cold").quota, QuotaMechanism::None);
    EXPECT_EQ(c.get("cold").directory, "/var/lib/mobileops/storage/volumes/cold");
    EXPECT_EQ(c.get("shared").quota, QuotaMechanism::Project);
    EXPECT_FALSE(c.get("shared").defaultSize.has_value());
    EXPECT_EQ(c.get("standard").source, "built-in");

    json j = fast.toJson();
    EXPECT_EQ(j["quota"], "loop");
    EXPECT_EQ(j["defaultSize"], 10ull << 30);
}

TEST(Classes, JsonFilesWork) {
    StorageClasses c = StorageClasses::parse(
        kPaths, R"({"classes": [{"name": "j", "quota": "loop", "defaultSize": "1G"}]})", "c.json");
    EXPECT_EQ(c.get("j").defaultSize, 1ull << 30);
    EXPECT_EQ(StorageClasses::parse(kPaths, "", "empty.yaml").all().size(), 3u);
}

TEST(Classes, MistakesAreRefusedNamingFileLineClassAndField) {
    const std::string f = "/etc/mobileops/storage-classes.yaml";
    EXPECT_EQ(errorOf("classes:\n  - name: fast\n    quota: lop\n"),
              f + ":3: class `fast`: field `quota`: `lop` is not one of `loop`, `project`, `none`");
    EXPECT_EQ(errorOf("classes:\n  - name: fast\n    sise: 1G\n"),
              f + ":3: class `fast`: field `sise` is not known (expected one of defaultSize, "
                  "description, directory, mountOptions, name, quota)");
    EXPECT_EQ(errorOf("classes:\n  - name: fast\n    defaultSize: 1Gx\n"),
              f + ":3: class `fast`: field `defaultSize`: size `1Gx`: unknown unit (expected K, M, "
                  "G, T or P, as in `2G` or `512Mi`)");
    EXPECT_EQ(errorOf("classes:\n  - name: fast\n    directory: relative/dir\n"),
              f + ":3: class `fast`: field `directory`: `relative/dir` is not an absolute path");
    EXPECT_EQ(errorOf("classes:\n  - name: fast\n    mountOptions: [noatim]\n"),
              f + ":3: class `fast`: field `mountOptions`: mount option `noatim` is not known "
                  "(generic: noatime, nodiratime, relatime, strictatime, lazytime, nosuid, nodev, "
                  "noexec, sync, dirsync; or an ext4 option such as discard or commit=30)");
    EXPECT_NE(
        errorOf("classes:\n  - name: c\n    quota: none\n    defaultSize: 1G\n")
            .find(":4: class `c`: field `defaultSize`: a class with `quota: none` cannot limit"),
        std::string::npos);
    EXPECT_NE(errorOf("classes:\n  - name: c\n    quota: project\n    mountOptions: [noatime]\n")
                  .find("class `c`: field `mountOptions`: only `quota: loop` volumes are mounted"),
              std::string::npos);
    EXPECT_EQ(errorOf("classes:\n  - name: a\n  - name: a\n"), f + ":3: class `a`: defined twice");
    EXPECT_EQ(errorOf("classes:\n  - name: a\n    name: b\n"),
              f + ":3: class `a`: field `name` is given twice");
    EXPECT_NE(errorOf("classes:\n  - name: ../x\n").find(":2: invalid class name `../x`: expected"),
              std::string::npos);
    EXPECT_NE(errorOf("classes:\n  - quota: loop\n").find(":2: classes: a class has no `name`"),
              std::string::npos);
    EXPECT_EQ(errorOf("default: nope\n"),
              f + ":1: field `default`: storage class `nope` does not exist (known: "
                  "high-performance, standard, cold)");
    EXPECT_NE(errorOf("clases: []\n").find(":1: field `clases` is not known"), std::string::npos);
    EXPECT_NE(errorOf("classes: {a: 1}\n").find("field `classes`: expected a list of classes"),
              std::string::npos);
    EXPECT_NE(errorOf("- a\n").find("expected a mapping"), std::string::npos);
    EXPECT_NE(errorOf("classes: [\n").find(f + ":2:"), std::string::npos);
    EXPECT_NE(errorOf("apiVersion: v2\n").find("`v2` is not supported"), std::string::npos);
}

TEST(Classes, MissingFileGivesBuiltInsUnlessConfiguredExplicitly) {
    EXPECT_EQ(StorageClasses::load(kPaths, "/nonexistent/classes.yaml", false).all().size(), 3u);
    try {
        StorageClasses::load(kPaths, "/nonexistent/classes.yaml", true);
        FAIL();
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), -ENOENT);
        EXPECT_STREQ(e.what(), "storage class file `/nonexistent/classes.yaml` (storage.classes): "
                               "No such file or directory");
    }
}

TEST(Classes, MountOptions) {
    MountOptions o = parseMountOptions({"noatime", "nodev", "commit=30", "discard"});
    EXPECT_EQ(o.flags, static_cast<unsigned long>(MS_NOATIME | MS_NODEV));
    EXPECT_EQ(o.data, "commit=30,discard");
    EXPECT_EQ(parseMountOptions({"noatime", "relatime"}).flags,
              static_cast<unsigned long>(MS_RELATIME));
    EXPECT_THROW(parseMountOptions({"commit="}), sdk::Error);
    EXPECT_THROW(parseMountOptions({"loop"}), sdk::Error);
}

TEST(Classes, Names) {
    for (std::string ok :
         std::vector<std::string>{"a", "data_1", "my-vol.2", std::string(128, 'x')})
        EXPECT_NO_THROW(checkName("volume name", ok)) << ok;
    for (std::string bad : std::vector<std::string>{"", ".hidden", "-x", "a/b", "..", "sp ace",
                                                    std::string(129, 'x')})
        EXPECT_THROW(checkName("volume name", bad), sdk::Error) << bad;
}

TEST(Classes, AreaRecordsRoundTrip) {
    Area a;
    a.home = "/v/x";
    a.mechanism = QuotaMechanism::Loop;
    a.size = 1 << 24;
    a.mountOptions = {"noatime"};
    json j = a.toJson();
    EXPECT_EQ(j["data"], "/v/x/data");
    EXPECT_EQ(j["image"], "/v/x/volume.img");
    Area b = Area::fromJson(j);
    EXPECT_EQ(b.toJson(), j);
}

TEST(Assets, ManifestComparisonNamesWhatChanged) {
    json recorded = {
        {"a", {{"type", "file"}, {"sha256", "1"}, {"mode", 420}, {"uid", 0}, {"gid", 0}}},
        {"b", {{"type", "file"}, {"sha256", "2"}, {"mode", 420}, {"uid", 0}, {"gid", 0}}},
        {"c", {{"type", "symlink"}, {"target", "a"}, {"mode", 511}, {"uid", 0}, {"gid", 0}}},
        {"d", {{"type", "directory"}, {"mode", 493}, {"uid", 0}, {"gid", 0}}}};
    json live = recorded;
    live["a"]["sha256"] = "changed";
    live["c"]["target"] = "b";
    live["d"]["uid"] = 1000;
    live["d"]["mode"] = 448;
    live.erase("b");
    live["e"] = recorded["a"];
    json diff = compareManifests(recorded, live);
    EXPECT_EQ(diff["changed"],
              json::parse(R"([{"path":"a","what":"content"},{"path":"c","what":"target"},
                                              {"path":"d","what":"mode,owner"}])"));
    EXPECT_EQ(diff["added"], json::array({"e"}));
    EXPECT_EQ(diff["removed"], json::array({"b"}));
    json same = compareManifests(recorded, recorded);
    EXPECT_TRUE(same["changed"].empty() && same["added"].empty() && same["removed"].empty());
}

} // namespace
} // namespace mobileops::storage
