// `image push` and `image pull` through the dispatcher against Debian's docker-registry
// on loopback (RegistryServer.h): a round trip gives back the same image, layers and tree;
// a missing tag fails naming it and leaves nothing in the store.
#include "CliFixture.h"
#include "RegistryServer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace mobileops::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class ImageRegistryCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (::access("/usr/bin/docker-registry", X_OK) != 0) GTEST_SKIP() << "no docker-registry";
    }
    size_t count(const std::string &sub) const {
        std::error_code ec;
        size_t n = 0;
        for (auto it = fs::directory_iterator(_tmp.path() + "/root/storage/" + sub, ec);
             it != fs::directory_iterator(); ++it)
            ++n;
        return n;
    }
    std::string tree(const std::string &dir) {
        return run({"/bin/sh", "-c", "cd '" + dir + "' && find . -printf '%p %m %s %l\\n' | sort"})
            .out;
    }
};

TEST_F(ImageRegistryCli, PushThenPullGivesTheSameImage) {
    RegistryServer registry;
    ASSERT_EQ(mo({"image", "build-rootfs", _rootfs, "localhost/pp:1"}).status, 0);
    json before = json::parse(mo({"--json", "image", "inspect", "localhost/pp:1"}).out);
    const std::string remote = registry.host() + "/team/pp:1";
    Result r = mo({"--json", "image", "push", "localhost/pp:1", remote});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["digest"], before["digest"]);

    ASSERT_EQ(mo({"image", "rm", "localhost/pp:1"}).status, 0);
    EXPECT_EQ(count("layers"), 0u);
    r = mo({"--json", "image", "pull", remote});
    ASSERT_EQ(r.status, 0) << r.err;
    json pulled = json::parse(r.out);
    EXPECT_EQ(pulled["id"], before["id"]);
    EXPECT_EQ(pulled["layers"], before["layers"]);

    std::string out = _tmp.path() + "/pulled";
    ASSERT_EQ(mo({"image", "unpack", remote, out}).status, 0);
    EXPECT_EQ(tree(out), tree(_rootfs));

    // A second pull finds every blob present and transfers none.
    r = mo({"--json", "image", "pull", remote});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["pulled"], 0);
}

TEST_F(ImageRegistryCli, MultiLayerImageSurvivesTheRoundTrip) {
    RegistryServer registry;
    std::string layout = _tmp.path() + "/layout";
    ASSERT_EQ(run({"/usr/bin/python3", MOBILEOPS_SOURCE_DIR "/tests/storage/archives.py", "layout",
                   layout})
                  .status,
              0);
    ASSERT_EQ(mo({"image", "load", layout}).status, 0);
    const std::string remote = registry.host() + "/layered:1";
    Result r = mo({"image", "push", "example.test/layered:1", remote});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"image", "rm", "example.test/layered:1"}).status, 0);
    r = mo({"image", "pull", remote});
    ASSERT_EQ(r.status, 0) << r.err;
    std::string out = _tmp.path() + "/tree";
    ASSERT_EQ(mo({"image", "unpack", remote, out}).status, 0);
    EXPECT_EQ(run({"/bin/sh", "-c", "cd '" + out + "' && find . | sort"}).out,
              ".\n./a\n./a/keep\n./a/new\n./bin\n./bin/tool\n./o\n./o/fresh\n");
}

TEST_F(ImageRegistryCli, MissingTagFailsAndLeavesNothing) {
    RegistryServer registry;
    const std::string remote = registry.host() + "/nothing/here:1";
    Result r = mo({"image", "pull", remote});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("nothing/here"), std::string::npos) << r.err;
    EXPECT_EQ(count("layers"), 0u);
    EXPECT_EQ(count("blobs/sha256"), 0u);
    EXPECT_EQ(mo({"--json", "image", "list"}).out.find("nothing"), std::string::npos);
}

} // namespace
} // namespace mobileops::test
