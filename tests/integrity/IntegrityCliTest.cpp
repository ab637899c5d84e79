// The integrity workflow through the dispatcher, on real images, containers and files:
// manifests recorded at import, every kind of tampering found and named, --verify=strict
// refusing and lazy reporting, signatures, the toolbox check and the loader's refusal of
// a plugin the manifest does not list, audits, and ext4 image checks. Needs root.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

using namespace mobileops::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

json jsonOf(const Result &r) {
    try {
        return json::parse(r.out);
    } catch (const json::exception &e) {
        ADD_FAILURE() << "not JSON: " << e.what() << "\n" << r.out << r.err;
        return json::object();
    }
}

class IntegrityCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        Result r = mo({"image", "build-rootfs", "-q", _rootfs, "bb:1"});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    // The directory of the image's only layer, where the store keeps its files.
    std::string layerDir(const std::string &image = "bb:1") {
        Result r = mo({"integrity", "show", image, "--json"});
        EXPECT_EQ(r.status, 0) << r.err;
        json m = jsonOf(r);
        EXPECT_EQ(m["layers"].size(), 1u) << r.out;
        return m["layers"].empty() ? "" : m["layers"][0].value("path", "");
    }

    void config(const std::string &text) { std::ofstream(_tmp.path() + "/none.conf") << text; }

    // The first change report for `path` in a verify report (any layer).
    static json changeOf(const json &report, const std::string &path) {
        for (const json &layer : report.value("layers", json::array()))
            for (const json &c : layer["diff"].value("modified", json::array()))
                if (c["path"] == path) return c;
        return nullptr;
    }

    static bool listed(const json &report, const char *list, const std::string &path) {
        for (const json &layer : report.value("layers", json::array()))
            for (const json &p : layer["diff"].value(list, json::array()))
                if (p == path) return true;
        return false;
    }
};

TEST_F(IntegrityCli, ImportRecordsAManifestThatVerifiesClean) {
    Result r = mo({"integrity", "verify", "bb:1"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("bb:1: clean"), std::string::npos) << r.out;

    r = mo({"integrity", "list", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json list = jsonOf(r);
    int images = 0, layers = 0;
    for (const json &m : list) {
        std::string t = m["target"];
        images += t.rfind("image:sha256:", 0) == 0;
        layers += t.rfind("layer:sha256:", 0) == 0;
        EXPECT_EQ(m["root"].get<std::string>().size(), 64u);
    }
    EXPECT_EQ(images, 1);
    EXPECT_EQ(layers, 1);
}

TEST_F(IntegrityCli, EveryKindOfTamperingIsFoundAndNamed) {
    std::string fs = layerDir();
    ASSERT_FALSE(fs.empty());
    {
        std::fstream f(fs + "/etc/passwd", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(0);
        f.put('X'); // one byte, same size
    }
    ASSERT_EQ(::chmod((fs + "/etc/group").c_str(), 0646), 0);           // one mode bit
    ASSERT_EQ(::lchown((fs + "/etc/hostname").c_str(), 1234, 1234), 0); // owner
    std::ofstream(fs + "/etc/added") << "new\n";                        // added
    ASSERT_EQ(::unlink((fs + "/etc/hosts").c_str()), 0);                // removed
    ASSERT_EQ(::unlink((fs + "/bin/sh").c_str()), 0);                   // link target swapped
    ASSERT_EQ(::symlink("/tmp/evil", (fs + "/bin/sh").c_str()), 0);

    Result r = mo({"integrity", "verify", "bb:1", "--json"});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    json report = jsonOf(r);
    EXPECT_FALSE(report["clean"].get<bool>());
    EXPECT_EQ(report["problems"], 6) << r.out;

    json c = changeOf(report, "/etc/passwd");
    ASSERT_TRUE(c.is_object()) << r.out;
    EXPECT_NE(std::find(c["what"].begin(), c["what"].end(), "content"), c["what"].end());
    c = changeOf(report, "/etc/group");
    ASSERT_TRUE(c.is_object()) << r.out;
    EXPECT_EQ(c["what"], json::array({"mode"}));
    c = changeOf(report, "/etc/hostname");
    ASSERT_TRUE(c.is_object()) << r.out;
    EXPECT_EQ(c["what"], json::array({"owner"}));
    EXPECT_EQ(c["after"]["uid"], 1234);
    c = changeOf(report, "/bin/sh");
    ASSERT_TRUE(c.is_object()) << r.out;
    EXPECT_EQ(c["what"], json::array({"link"}));
    EXPECT_EQ(c["after"]["target"], "/tmp/evil");
    EXPECT_TRUE(listed(report, "added", "/etc/added")) << r.out;
    EXPECT_TRUE(listed(report, "removed", "/etc/hosts")) << r.out;

    // The text form names each one.
    r = mo({"integrity", "verify", "bb:1"});
    EXPECT_EQ(r.status, 1);
    for (const char *line :
         {"modified /etc/passwd: content", "modified /etc/group: mode 0644 -> 0646",
          "modified /etc/hostname: owner 0:0 -> 1234:1234", "added    /etc/added",
          "removed  /etc/hosts", "modified /bin/sh: link"})
        EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
}

TEST_F(IntegrityCli, StrictRefusesATamperedImageAndLazyReportsIt) {
    std::string fs = layerDir();
    ASSERT_FALSE(fs.empty());
    std::ofstream(fs + "/bin/implant") << "#!/bin/sh\n";

    Result r = mo({"container", "run", "--rm", "--verify=strict", "bb:1", "/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("refusing to start"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("/bin/implant (added)"), std::string::npos) << r.err;
    r = mo({"container", "list", "--all", "--json"});
    EXPECT_EQ(jsonOf(r).size(), 0u) << "a refused start left a container: " << r.out;

    // The configuration's default applies when the flag is absent.
    config("[integrity]\nverify = strict\n");
    r = mo({"container", "boot", "c1", "bb:1", "/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("refusing to start `c1`"), std::string::npos) << r.err;
    config("");

    r = mo({"container", "run", "--rm", "--name", "lazy1", "--verify=lazy", "bb:1", "/bin/echo",
            "started"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "started\n");
    json drift;
    for (int i = 0; i < 600 && drift.is_null(); ++i) {
        Result e = mo({"events", "--type", "integrity.", "--json"});
        for (const json &ev : jsonOf(e))
            if (ev.value("type", "") == "integrity.drift") drift = ev;
        if (drift.is_null()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_FALSE(drift.is_null()) << "no integrity.drift event after a lazy start";
    std::string text = drift.dump();
    EXPECT_NE(text.find("lazy1"), std::string::npos) << text;
    EXPECT_NE(text.find("/bin/implant (added)"), std::string::npos) << text;

    // A clean image starts under strict.
    ASSERT_EQ(::unlink((fs + "/bin/implant").c_str()), 0);
    r = mo({"container", "run", "--rm", "--verify=strict", "bb:1", "/bin/echo", "ok"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "ok\n");
}

TEST_F(IntegrityCli, AContainerIsCheckedThroughItsImageAndItsWritesAreListed) {
    Result r = mo({"container", "run", "--name", "w1", "bb:1", "/bin/sh", "-c",
                   "echo x > /created; rm /bin/ls; chmod 600 /etc/group"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"integrity", "verify", "w1", "--json"});
    EXPECT_EQ(r.status, 0) << "the container's own writes are not drift: " << r.out << r.err;
    json report = jsonOf(r);
    EXPECT_EQ(report["kind"], "container");
    json changes = report["changes"];
    EXPECT_EQ(changes["added"], json::array({"/created"})) << r.out;
    EXPECT_EQ(changes["removed"], json::array({"/bin/ls"})) << r.out;
    bool group = false;
    for (const json &c : changes["modified"])
        group |= c["path"] == "/etc/group" && c["what"] == json::array({"mode"});
    EXPECT_TRUE(group) << r.out;

    r = mo({"integrity", "verify", "w1"});
    EXPECT_NE(r.out.find("the container's own changes"), std::string::npos) << r.out;
    EXPECT_EQ(mo({"container", "delete", "w1"}).status, 0);
}

TEST_F(IntegrityCli, ASignedManifestVerifiesAndATamperedOneDoesNot) {
    std::string key = _tmp.path() + "/signing.key";
    Result r = mo({"integrity", "keygen", key});
    ASSERT_EQ(r.status, 0) << r.err;
    struct stat st;
    ASSERT_EQ(::stat(key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    r = mo({"integrity", "sign", "bb:1", "--key", key});
    ASSERT_EQ(r.status, 0) << r.err;

    r = mo({"integrity", "verify", "bb:1", "--key", key + ".pub"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("signature: signed by ed25519:"), std::string::npos) << r.out;

    // Another key's check fails: there is no signature by it.
    std::string other = _tmp.path() + "/other.key";
    ASSERT_EQ(mo({"integrity", "keygen", other}).status, 0);
    r = mo({"integrity", "verify", "bb:1", "--key", other + ".pub", "--json"});
    EXPECT_EQ(r.status, 1);
    EXPECT_FALSE(jsonOf(r)["signature"]["valid"].get<bool>()) << r.out;

    // The tree changed and its manifest recorded again: the signature no longer covers it.
    std::string fs = layerDir();
    std::ofstream(fs + "/etc/motd") << "changed\n";
    ASSERT_EQ(mo({"integrity", "record", "--again", "bb:1"}).status, 0);
    r = mo({"integrity", "verify", "bb:1", "--key", key + ".pub", "--json"});
    EXPECT_EQ(r.status, 1) << r.out;
    json report = jsonOf(r);
    EXPECT_FALSE(report["signature"]["valid"].get<bool>());
    EXPECT_NE(report["signature"]["message"].get<std::string>().find("does not match"),
              std::string::npos)
        << r.out;

    // Under a policy that requires a signature, strict refuses to start it.
    config("[integrity]\nrequire_signature = true\ntrusted_keys = " + key + ".pub\n");
    r = mo({"container", "run", "--rm", "--verify=strict", "bb:1", "/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("signature:"), std::string::npos) << r.err;
    // ... and starts it once signed again.
    ASSERT_EQ(mo({"integrity", "sign", "bb:1", "--key", key}).status, 0);
    r = mo({"container", "run", "--rm", "--verify=strict", "bb:1", "/bin/true"});
    EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(IntegrityCli, APathAndAnAssetAreRecordedAndVerified) {
    std::string dir = _tmp.path() + "/data";
    fs::create_directories(dir + "/sub");
    std::ofstream(dir + "/sub/file") << "content\n";
    Result r = mo({"integrity", "record", dir});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(mo({"integrity", "verify", dir}).status, 0);
    std::ofstream(dir + "/sub/file") << "CONTENT\n";
    r = mo({"integrity", "verify", dir});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("modified /sub/file: content"), std::string::npos) << r.out;

    r = mo({"assets", "add", dir, "cold", "test data"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(mo({"integrity", "verify", "asset:data"}).status, 0);
    fs::remove(dir + "/sub/file");
    r = mo({"integrity", "verify", "asset:data"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("removed  /sub/file"), std::string::npos) << r.out;
}

TEST_F(IntegrityCli, AnAuditOfAPrivilegedHostNetworkContainerListsItsFindings) {
    ASSERT_EQ(mo({"container", "create", "--privileged", "--network", "host", "-v", "/etc:/hostetc",
                  "bad", _rootfs, "/bin/true"})
                  .status,
              0);
    ASSERT_EQ(mo({"container", "create", "--user", "1000", "--read-only", "--cap-drop", "ALL",
                  "good", _rootfs, "/bin/true"})
                  .status,
              0);
    Result r = mo({"integrity", "audit", "--json", "bad"});
    ASSERT_EQ(r.status, 0) << r.err;
    json bad = jsonOf(r)[0];
    std::set<std::string> ids;
    for (const json &f : bad["findings"]) {
        ids.insert(f["id"]);
        EXPECT_FALSE(f.value("fix", "").empty()) << f.dump();
    }
    for (const char *id :
         {"privileged", "host-network", "sensitive-mount", "root-user", "no-new-privs-off"})
        EXPECT_TRUE(ids.count(id)) << id << " missing in " << r.out;

    r = mo({"integrity", "audit", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json all = jsonOf(r);
    ASSERT_EQ(all.size(), 2u);
    int good = all[0]["name"] == "good" ? all[0]["score"].get<int>() : all[1]["score"].get<int>();
    EXPECT_GT(good, bad["score"].get<int>());

    r = mo({"integrity", "audit", "bad"});
    EXPECT_NE(r.out.find("critical privileged"), std::string::npos) << r.out;
    r = mo({"integrity", "audit", "--min-score", "90", "bad"});
    EXPECT_EQ(r.status, 1);
}

TEST_F(IntegrityCli, CheckImgGivesE2fsckVerdict) {
    std::string img = _tmp.path() + "/root.img";
    Result r = mo({"image", "create-img", _rootfs, img, "--size", "16Mi"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"integrity", "check-img", img});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("clean"), std::string::npos) << r.out;
    // Zero the first block group's descriptors and inode table area.
    ASSERT_EQ(run({"/usr/bin/dd", "if=/dev/zero", "of=" + img, "bs=1024", "seek=2", "count=64",
                   "conv=notrunc", "status=none"})
                  .status,
              0);
    r = mo({"integrity", "check-img", img, "--json"});
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_FALSE(jsonOf(r)["clean"].get<bool>());
    r = mo({"integrity", "check-img", _tmp.path() + "/missing.img"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("missing.img"), std::string::npos) << r.err;
}

// A copy of the built toolbox (binary, plugins, modules, helpers, scripts, manifest), so
// a test can change its files without touching the build tree other tests run from.
class ToolboxCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        std::string build = fs::path(dispatcher()).parent_path().parent_path();
        _prefix = _tmp.path() + "/prefix";
        for (const char *dir : {"bin", "lib/mobileops", "libexec/mobileops", "share/mobileops"}) {
            fs::create_directories(_prefix + "/" + dir);
            if (std::string(dir) == "bin") {
                // What the manifest covers: bin/mobileops and bin/mobileops-* (the
                // mobileops-runc symlink), not the test programs beside them.
                for (const auto &e : fs::directory_iterator(build + "/bin")) {
                    std::string name = e.path().filename();
                    if (name != "mobileops" && name.rfind("mobileops-", 0) != 0) continue;
                    fs::copy(e.path(), _prefix + "/bin/" + name, fs::copy_options::copy_symlinks);
                }
                continue;
            }
            fs::copy(build + "/" + dir, _prefix + "/" + dir, fs::copy_options::recursive);
        }
    }

    Result tool(const std::vector<std::string> &args) {
        std::vector<std::string> argv{_prefix + "/bin/mobileops"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, env());
    }

    std::string _prefix;
};

TEST_F(ToolboxCli, TheCheckNamesAReplacedPlugin) {
    ASSERT_TRUE(fs::exists(_prefix + "/lib/mobileops/toolbox.json"));
    Result r = tool({"integrity", "check"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("toolbox: clean"), std::string::npos) << r.out;

    std::string cgroup = _prefix + "/lib/mobileops/plugins/cgroup.so";
    fs::remove(cgroup);
    fs::copy_file(_prefix + "/lib/mobileops/plugins/bridge.so", cgroup);
    r = tool({"integrity", "check"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("changed  lib/mobileops/plugins/cgroup.so"), std::string::npos) << r.out;
}

TEST_F(ToolboxCli, TheLoaderRefusesAnUnlistedPluginWhenConfigured) {
    std::ofstream(_tmp.path() + "/none.conf") << "[plugins]\nverify = manifest\n";
    Result r = tool({"container", "run", "--rm", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 0) << "listed plugins load: " << r.err;

    std::string runtime = _prefix + "/lib/mobileops/plugins/nsruntime.so";
    std::ofstream(runtime, std::ios::app) << "appended";
    r = tool({"plugin", "list", "--json"});
    json plugins = jsonOf(r);
    for (const json &p : plugins)
        if (p["name"] == "nsruntime") {
            EXPECT_EQ(p["state"], "failed");
            EXPECT_NE(p.value("error", "").find("is not in the toolbox manifest"),
                      std::string::npos)
                << p.dump();
        }
    r = tool({"container", "run", "--rm", _rootfs, "/bin/true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("nsruntime: sha256 `"), std::string::npos) << r.err;
}

} // namespace
