// The toolbox manifest: written by cmake/ToolboxManifest.cmake (run here as the build and
// install run it) over a fake prefix, checked by checkToolbox().
#include "TestUtil.h"
#include "Toolbox.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mobileops::integrity;
using mobileops::common::Error;
using mobileops::test::run;
using mobileops::test::TempDir;
using json = nlohmann::json;

namespace {

std::string cmake() {
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
    std::istringstream dirs(path + ":/usr/bin:/usr/local/bin");
    for (std::string d; std::getline(dirs, d, ':');)
        if (!d.empty() && ::access((d + "/cmake").c_str(), X_OK) == 0) return d + "/cmake";
    return "cmake";
}

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

ino_t inodeOf(const std::string &path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
}

class Toolbox : public ::testing::Test {
protected:
    void SetUp() override {
        put("bin/mobileops", "dispatcher", 0755);
        put("bin/mobileops-helper", "helper tool", 0755);
        put("bin/mobileops_core_tests", "a test binary, not shipped", 0755);
        put("bin/other", "not ours", 0755);
        put("lib/mobileops/plugins/storage.so", "storage plugin", 0755);
        put("lib/mobileops/plugins/bridge.so", "bridge plugin", 0755);
        put("lib/mobileops/plugins/README", "not a plugin", 0644);
        put("lib/mobileops/modules/storage-registry.so", "module", 0755);
        put("libexec/mobileops/mobileops-seccomp-profile", "libexec", 0755);
        put("share/mobileops/scripts/container.lua", "return {}", 0644);
        put("share/mobileops/scripts/notes.txt", "not a script", 0644);
        std::filesystem::create_directories(_tmp.path() + "/libexec/mobileops/subdir");
    }

    void put(const std::string &rel, const std::string &content, mode_t mode) {
        std::string path = _tmp.file(rel, content);
        ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
    }

    std::string prefix() const { return _tmp.path(); }
    std::string manifest() const { return prefix() + "/lib/mobileops/toolbox.json"; }

    void generate(const std::vector<std::string> &extra = {}) {
        std::vector<std::string> argv = {cmake(), "-DPREFIX=" + prefix()};
        argv.insert(argv.end(), extra.begin(), extra.end());
        argv.push_back("-P");
        argv.push_back(MOBILEOPS_SOURCE_DIR "/cmake/ToolboxManifest.cmake");
        auto r = run(argv);
        ASSERT_EQ(r.status, 0) << r.out << r.err;
    }

    json check() { return checkToolbox(prefix(), manifest()); }

    TempDir _tmp;
};

TEST_F(Toolbox, ManifestListsExactlyTheCoveredFilesAndChecksClean) {
    generate();
    json m = json::parse(slurp(manifest()));
    EXPECT_EQ(m["format"], 1);
    EXPECT_EQ(m["algorithm"], "sha256");
    EXPECT_TRUE(m["created"].is_string());
    std::vector<std::string> paths;
    for (auto &[path, entry] : m["files"].items()) paths.push_back(path);
    EXPECT_EQ(paths, (std::vector<std::string>{"bin/mobileops", "bin/mobileops-helper",
                                               "lib/mobileops/modules/storage-registry.so",
                                               "lib/mobileops/plugins/bridge.so",
                                               "lib/mobileops/plugins/storage.so",
                                               "libexec/mobileops/mobileops-seccomp-profile",
                                               "share/mobileops/scripts/container.lua"}));
    // As sha256sum prints it.
    auto sum = run({"/usr/bin/sha256sum", prefix() + "/bin/mobileops"});
    ASSERT_EQ(sum.status, 0);
    EXPECT_EQ(m["files"]["bin/mobileops"]["sha256"], sum.out.substr(0, 64));
    EXPECT_EQ(m["files"]["bin/mobileops"]["size"], 10);
    EXPECT_EQ(m["files"]["share/mobileops/scripts/container.lua"]["mode"], "0644");

    json r = check();
    EXPECT_TRUE(r["ok"]) << r.dump(2);
    EXPECT_EQ(r["checked"], 7);
    EXPECT_EQ(r["manifest"], manifest());
    EXPECT_EQ(r["prefix"], prefix());
    EXPECT_TRUE(r["changed"].empty() && r["missing"].empty() && r["extra"].empty());
}

TEST_F(Toolbox, UnchangedFilesLeaveTheManifestAlone) {
    generate();
    ino_t before = inodeOf(manifest());
    std::string text = slurp(manifest());
    generate();
    EXPECT_EQ(inodeOf(manifest()), before);
    EXPECT_EQ(slurp(manifest()), text);
    put("lib/mobileops/plugins/bridge.so", "bridge plugin v2", 0755);
    generate();
    EXPECT_NE(slurp(manifest()), text);
    EXPECT_TRUE(check()["ok"]);
}

TEST_F(Toolbox, ReplacedPluginIsNamed) {
    generate();
    put("lib/mobileops/plugins/storage.so", "storage plugiN", 0755); // same size
    json r = check();
    EXPECT_FALSE(r["ok"]);
    ASSERT_EQ(r["changed"].size(), 1u) << r.dump(2);
    const json &c = r["changed"][0];
    EXPECT_EQ(c["path"], "lib/mobileops/plugins/storage.so");
    EXPECT_EQ(c["what"], json({"content"}));
    EXPECT_NE(c["expected"]["sha256"], c["actual"]["sha256"]);
    EXPECT_EQ(c["actual"]["size"], 14);

    put("lib/mobileops/plugins/storage.so", "a much longer replacement", 0755);
    r = check();
    ASSERT_EQ(r["changed"].size(), 1u);
    EXPECT_EQ(r["changed"][0]["what"], json({"content", "size"}));
}

TEST_F(Toolbox, RemovedFileIsMissing) {
    generate();
    ASSERT_EQ(::unlink((prefix() + "/libexec/mobileops/mobileops-seccomp-profile").c_str()), 0);
    json r = check();
    EXPECT_FALSE(r["ok"]);
    EXPECT_EQ(r["missing"], json({"libexec/mobileops/mobileops-seccomp-profile"}));
    EXPECT_EQ(r["checked"], 6);
    EXPECT_TRUE(r["changed"].empty());
}

TEST_F(Toolbox, DroppedInPluginIsExtra) {
    generate();
    put("lib/mobileops/plugins/evil.so", "dropped in later", 0755);
    put("lib/mobileops/plugins/notes.md", "ignored", 0644);
    put("share/mobileops/scripts/late.lua", "return {}", 0644);
    json r = check();
    EXPECT_FALSE(r["ok"]);
    EXPECT_EQ(r["extra"],
              json({"lib/mobileops/plugins/evil.so", "share/mobileops/scripts/late.lua"}));
}

TEST_F(Toolbox, ModeChangeIsNamed) {
    generate();
    ASSERT_EQ(::chmod((prefix() + "/bin/mobileops").c_str(), 04755), 0);
    json r = check();
    EXPECT_FALSE(r["ok"]);
    ASSERT_EQ(r["changed"].size(), 1u);
    EXPECT_EQ(r["changed"][0]["path"], "bin/mobileops");
    EXPECT_EQ(r["changed"][0]["what"], json({"mode"}));
    EXPECT_EQ(r["changed"][0]["expected"]["mode"], "0755");
    EXPECT_EQ(r["changed"][0]["actual"]["mode"], "4755");
}

TEST_F(Toolbox, MultiarchLibdirFollowsTheManifestsPlace) {
    const std::string lib = "lib/x86_64-linux-gnu";
    put(lib + "/mobileops/plugins/cgroup.so", "cgroup plugin", 0755);
    generate({"-DLIBDIR=" + lib});
    const std::string file = prefix() + "/" + lib + "/mobileops/toolbox.json";
    json m = json::parse(slurp(file));
    EXPECT_TRUE(m["files"].contains(lib + "/mobileops/plugins/cgroup.so"));
    EXPECT_FALSE(m["files"].contains("lib/mobileops/plugins/storage.so"));
    json r = checkToolbox(prefix(), file);
    EXPECT_TRUE(r["ok"]) << r.dump(2);
    put(lib + "/mobileops/plugins/late.so", "x", 0755);
    EXPECT_EQ(checkToolbox(prefix(), file)["extra"], json({lib + "/mobileops/plugins/late.so"}));
}

TEST_F(Toolbox, MissingOrBrokenManifestIsAClearError) {
    try {
        check();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
        EXPECT_NE(std::string(e.what()).find("toolbox manifest `" + manifest() + "`"),
                  std::string::npos)
            << e.what();
    }
    auto invalid = [&](const std::string &content, const std::string &expected) {
        _tmp.file("lib/mobileops/toolbox.json", content);
        try {
            check();
            ADD_FAILURE() << content;
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), MO_E_INVALID);
            EXPECT_EQ(std::string(e.what()), "toolbox manifest `" + manifest() + "`: " + expected);
        }
    };
    invalid("{not json", "not valid JSON");
    invalid(R"({"format": 2, "algorithm": "sha256", "files": {}})", "expected `format` 1");
    invalid(R"({"format": 1, "algorithm": "md5", "files": {}})",
            "unsupported `algorithm` (expected `sha256`)");
    invalid(R"({"format": 1, "algorithm": "sha256", "files": []})", "`files` is not an object");
    invalid(R"({"format": 1, "algorithm": "sha256", "files": {"../etc/passwd": )"
            R"({"sha256": "00", "size": 1, "mode": "0644"}}})",
            "`files.../etc/passwd`: not a path inside the prefix");
    invalid(R"({"format": 1, "algorithm": "sha256", "files": {"bin/mobileops": {"size": 1}}})",
            "`files.bin/mobileops`: expected {sha256, size, mode}");
}

} // namespace
