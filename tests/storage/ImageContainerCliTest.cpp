// Containers from images through the CLI: `container run/create/boot IMAGE`, the image's
// config as defaults (Entrypoint, Cmd, Env, WorkingDir, StopSignal), a writable layer per
// container, named volumes shared between containers, scratch areas that go with the
// container, and nothing left on the host after delete. Needs root.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/mount.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

using namespace mobileops::test;
using nlohmann::json;

namespace {

class ImageContainerCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        Result r = mo({"image", "build-rootfs", "-q", _rootfs, "bb:1"});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    std::string storage() const { return _tmp.path() + "/root/storage"; }

    // Container directories the image store holds (containers/<id>).
    size_t containerDirs() const {
        size_t n = 0;
        std::error_code ec;
        for (auto it = std::filesystem::directory_iterator(storage() + "/containers", ec);
             !ec && it != std::filesystem::directory_iterator(); ++it)
            ++n;
        return n;
    }

    // Mounts below the test's temporary directory.
    size_t mountsHere() const {
        std::ifstream in("/proc/self/mountinfo");
        size_t n = 0;
        for (std::string line; std::getline(in, line);)
            n += line.find(_tmp.path()) != std::string::npos;
        return n;
    }

    std::string sha256(const std::string &file) {
        Result r = run({"/usr/bin/sha256sum", file});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out.substr(0, 64);
    }

    // Store `bytes` as a blob of an OCI layout; returns its descriptor.
    json blob(const std::string &layout, const std::string &mediaType, const std::string &file) {
        std::string hex = sha256(file);
        std::filesystem::copy_file(file, layout + "/blobs/sha256/" + hex,
                                   std::filesystem::copy_options::overwrite_existing);
        return {{"mediaType", mediaType},
                {"digest", "sha256:" + hex},
                {"size", std::filesystem::file_size(file)}};
    }

    // An OCI image layout holding the busybox rootfs as one layer and `config` as the
    // image config's `config` object, loaded as `name`.
    void loadImage(const std::string &name, const json &config) {
        const std::string dir = _tmp.path() + "/oci-" + std::to_string(++_images);
        const std::string layout = dir + "/layout";
        std::filesystem::create_directories(layout + "/blobs/sha256");
        ASSERT_EQ(run({"/usr/bin/tar", "-C", _rootfs, "-cf", dir + "/layer.tar", "."}).status, 0);
        json layer = blob(layout, "application/vnd.oci.image.layer.v1.tar", dir + "/layer.tar");
        json imageConfig = {{"architecture", "amd64"},
                            {"os", "linux"},
                            {"config", config},
                            {"rootfs", {{"type", "layers"}, {"diff_ids", {layer["digest"]}}}}};
        std::ofstream(dir + "/config.json") << imageConfig.dump();
        json manifest = {{"schemaVersion", 2},
                         {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                         {"config", blob(layout, "application/vnd.oci.image.config.v1+json",
                                         dir + "/config.json")},
                         {"layers", {layer}}};
        std::ofstream(dir + "/manifest.json") << manifest.dump();
        json index = {
            {"schemaVersion", 2},
            {"manifests",
             {blob(layout, "application/vnd.oci.image.manifest.v1+json", dir + "/manifest.json")}}};
        index["manifests"][0]["annotations"] = {{"org.opencontainers.image.ref.name", "x"}};
        std::ofstream(layout + "/index.json") << index.dump();
        std::ofstream(layout + "/oci-layout") << R"({"imageLayoutVersion": "1.0.0"})";
        Result r = mo({"image", "load", "-q", "--name", name, layout});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    json inspect(const std::string &name) {
        Result r = mo({"container", "inspect", name});
        EXPECT_EQ(r.status, 0) << r.err;
        return json::parse(r.out, nullptr, false);
    }

    int _images = 0;
};

TEST_F(ImageContainerCli, RunsAnImageByName) {
    Result r = mo({"container", "run", "--rm", "bb:1", "sh", "-c", "echo from the image; id -u"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "from the image\n0\n");
    // an id (its first 12 hex digits) works too
    r = mo({"image", "list", "--json"});
    json images = json::parse(r.out);
    ASSERT_EQ(images.size(), 1u) << r.out;
    std::string id = images[0].value("id", "");
    ASSERT_EQ(id.rfind("sha256:", 0), 0u) << r.out;
    r = mo({"container", "run", "--rm", id.substr(7, 12), "true"});
    EXPECT_EQ(r.status, 0) << r.err;

    r = mo({"container", "create", "c", "bb:1", "true"});
    ASSERT_EQ(r.status, 0) << r.err;
    json state = inspect("c");
    EXPECT_EQ(state["image"], "bb:1");
    EXPECT_EQ(state["spec"]["imageId"], id);
    EXPECT_FALSE(state["spec"].contains("rootfs")) << state["spec"].dump();
    EXPECT_EQ(state["rootfs"], storage() + "/containers/" + state.value("id", "") + "/merged");
    r = mo({"container", "list", "--all"});
    EXPECT_NE(r.out.find("bb:1"), std::string::npos) << r.out;
}

TEST_F(ImageContainerCli, AMissingImageIsNamed) {
    Result r = mo({"container", "run", "--rm", "nothere:1", "true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("image `nothere:1` is not in the store"), std::string::npos) << r.err;
    // a path is a rootfs directory, never an image
    r = mo({"container", "run", "--rm", "./missing-dir", "true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("missing-dir`: No such file or directory"), std::string::npos) << r.err;
    EXPECT_EQ(containerDirs(), 0u);
}

TEST_F(ImageContainerCli, ImageConfigGivesTheDefaultsAndFlagsOverrideThem) {
    loadImage("cfg:1", {{"Entrypoint", {"/bin/sh", "-c"}},
                        {"Cmd", {"echo $GREETING $MODE; pwd; id -u"}},
                        {"Env", {"PATH=/usr/bin:/bin:/sbin", "GREETING=hello", "MODE=prod"}},
                        {"WorkingDir", "/srv"},
                        {"User", "user"},
                        {"StopSignal", "SIGUSR1"}});
    Result r = mo({"container", "run", "--rm", "cfg:1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hello prod\n/srv\n1000\n");
    // CMD replaces Cmd after the Entrypoint; --env wins per name; -w and -u win
    r = mo({"container", "run", "--rm", "-e", "MODE=dev", "-w", "/tmp", "-u", "0", "cfg:1",
            "echo $GREETING $MODE; pwd; id -u"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hello dev\n/tmp\n0\n");

    ASSERT_EQ(mo({"container", "create", "c", "cfg:1"}).status, 0);
    json spec = inspect("c")["spec"];
    EXPECT_EQ(spec["stopSignal"], 10); // SIGUSR1
    EXPECT_EQ(spec["process"]["env"][0], "PATH=/usr/bin:/bin:/sbin");

    // The same rules for a VirtualRoot file naming the image: `args` keeps the Entrypoint.
    std::string file = _tmp.file("app.yaml", "apiVersion: v1\nkind: VirtualRoot\n"
                                             "spec:\n  image: cfg:1\n  args: ['echo args']\n");
    r = mo({"container", "run", "--rm", "-f", file});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "args\n");
}

TEST_F(ImageContainerCli, AnImageWithoutACommandNeedsOne) {
    // build-rootfs gives its images `Cmd: [/bin/sh]`, as podman import does
    Result r = mo({"container", "run", "--rm", "bb:1"});
    EXPECT_EQ(r.status, 0) << r.err;
    loadImage("nocmd:1", {{"Env", {"A=1"}}});
    r = mo({"container", "run", "--rm", "nocmd:1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("no command given and the image has none"), std::string::npos) << r.err;
}

TEST_F(ImageContainerCli, EachContainerHasItsOwnWritableLayer) {
    ASSERT_EQ(mo({"container", "boot", "a", "bb:1", "sleep", "1000"}).status, 0);
    ASSERT_EQ(mo({"container", "boot", "b", "bb:1", "sleep", "1000"}).status, 0);
    Result r = mo({"container", "exec", "a", "sh", "-c", "echo only-a > /etc/a.txt; rm /bin/vi"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "exec", "a", "cat", "/etc/a.txt"});
    EXPECT_EQ(r.out, "only-a\n");
    r = mo({"container", "exec", "b", "sh", "-c", "test ! -e /etc/a.txt && test -e /bin/vi"});
    EXPECT_EQ(r.status, 0) << "container b sees a's changes";
    // a's changes are in its own upper layer, none in the image's layer
    std::string upper = storage() + "/containers/" + inspect("a").value("id", "") + "/upper";
    EXPECT_TRUE(std::filesystem::exists(upper + "/etc/a.txt"));
    r = mo({"container", "run", "--rm", "bb:1", "sh", "-c", "test ! -e /etc/a.txt"});
    EXPECT_EQ(r.status, 0);
    // a's layer outlives a stop: the next start sees the file again
    ASSERT_EQ(mo({"container", "stop", "-t", "1", "a"}).status, 0);
    ASSERT_EQ(mo({"container", "start", "a"}).status, 0);
    r = mo({"container", "exec", "a", "cat", "/etc/a.txt"});
    EXPECT_EQ(r.out, "only-a\n") << r.err;
}

// Disk usage (allocated KiB, hard links once) of the whole store.
static long storeKiB(const std::string &dir) {
    Result r = run({"/usr/bin/du", "-skx", dir}); // -x: not through the overlays
    return std::stol(r.out);
}

TEST_F(ImageContainerCli, TwoContainersShareTheImagesLayers) {
    const long image = storeKiB(storage() + "/layers");
    ASSERT_GT(image, 1000) << "the busybox layer should be over a megabyte";
    const long before = storeKiB(storage());
    ASSERT_EQ(mo({"container", "boot", "a", "bb:1", "sleep", "1000"}).status, 0);
    ASSERT_EQ(mo({"container", "boot", "b", "bb:1", "sleep", "1000"}).status, 0);
    // Two roots on the image cost their (empty) upper layers, not a copy each.
    EXPECT_LT(storeKiB(storage()) - before, image / 4);
    // What a container writes lands in its upper layer only.
    Result r =
        mo({"container", "exec", "a", "dd", "if=/dev/zero", "of=/big", "bs=1024", "count=2048"});
    ASSERT_EQ(r.status, 0) << r.err;
    long grown = storeKiB(storage()) - before;
    EXPECT_GE(grown, 2048);
    EXPECT_LT(grown, 2048 + image / 4);
    EXPECT_EQ(storeKiB(storage() + "/layers"), image);
    ASSERT_EQ(mo({"container", "delete", "--force", "a"}).status, 0);
    ASSERT_EQ(mo({"container", "delete", "--force", "b"}).status, 0);
}

TEST_F(ImageContainerCli, DeleteAndFailedCreatesLeaveNothing) {
    ASSERT_EQ(mo({"container", "create", "c", "bb:1", "true"}).status, 0);
    ASSERT_EQ(mo({"container", "boot", "d", "bb:1", "sleep", "1000"}).status, 0);
    EXPECT_EQ(containerDirs(), 2u);
    EXPECT_GE(mountsHere(), 2u);
    ASSERT_EQ(mo({"container", "delete", "c"}).status, 0);
    ASSERT_EQ(mo({"container", "delete", "--force", "d"}).status, 0);
    EXPECT_EQ(containerDirs(), 0u);
    EXPECT_EQ(mountsHere(), 0u);

    // The root is prepared before the user is looked up in it: a failure takes it away.
    Result r = mo({"container", "create", "--user", "nosuchuser", "e", "bb:1", "true"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("user `nosuchuser`"), std::string::npos) << r.err;
    r = mo({"container", "run", "--rm", "--user", "nosuchuser", "bb:1", "true"});
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
    EXPECT_EQ(containerDirs(), 0u);
    EXPECT_EQ(mountsHere(), 0u);
}

TEST_F(ImageContainerCli, StartMountsTheRootAgain) {
    // as after a reboot: nothing mounted, the writable layer still on disk
    ASSERT_EQ(
        mo({"container", "run", "--name", "c", "bb:1", "sh", "-c", "echo kept > /kept"}).status, 0);
    std::string merged = inspect("c").value("rootfs", "");
    ASSERT_EQ(::umount2(merged.c_str(), 0), 0) << merged;
    ASSERT_EQ(mo({"container", "start", "c"}).status, 0);
    ASSERT_EQ(mo({"container", "wait", "c"}).status, 0);
    Result r = mo({"container", "run", "--rm", "bb:1", "cat", "/kept"});
    EXPECT_NE(r.status, 0) << "another container sees c's file";
    ASSERT_EQ(mo({"container", "start", "c"}).status, 0);
    ASSERT_EQ(mo({"container", "wait", "c"}).status, 0); // its command rewrites /kept
    std::ifstream in(merged + "/kept");
    std::string text;
    std::getline(in, text);
    EXPECT_EQ(text, "kept");
}

TEST_F(ImageContainerCli, ReadOnlyAndVolatileOnAnImageRoot) {
    Result r = mo({"container", "run", "--rm", "--read-only", "bb:1", "touch", "/x"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    r = mo({"container", "run", "--name", "v", "--volatile", "bb:1", "sh", "-c",
            "echo gone > /v.txt && cat /v.txt"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "gone\n");
    std::string upper = storage() + "/containers/" + inspect("v").value("id", "") + "/upper";
    EXPECT_FALSE(std::filesystem::exists(upper + "/v.txt")) << "a volatile write reached disk";
}

TEST_F(ImageContainerCli, DiskLimitBoundsTheWritableLayer) {
    Result r = mo({"container", "run", "--rm", "--disk-limit", "16Mi", "bb:1", "sh", "-c",
                   "dd if=/dev/zero of=/big bs=1M count=64"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("not applied"), std::string::npos) << r.err;
    EXPECT_EQ(mountsHere(), 0u);
}

TEST_F(ImageContainerCli, NamedVolumeIsSharedAndOutlivesItsContainers) {
    Result r = mo({"container", "run", "--name", "app1", "-v", "shared:/app/shared", "bb:1", "sh",
                   "-c", "echo from-app1 > /app/shared/f"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("not applied"), std::string::npos) << r.err;
    r = mo({"container", "run", "--rm", "--name", "app2", "-v", "shared:/app/shared:ro", "bb:1",
            "sh", "-c", "cat /app/shared/f; touch /app/shared/g"});
    EXPECT_NE(r.status, 0);
    EXPECT_EQ(r.out, "from-app1\n");
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    ASSERT_EQ(mo({"container", "delete", "app1"}).status, 0);
    r = mo({"container", "run", "--rm", "-v", "shared:/data", "bb:1", "cat", "/data/f"});
    EXPECT_EQ(r.out, "from-app1\n") << r.err;
    EXPECT_EQ(mountsHere(), 0u);
}

TEST_F(ImageContainerCli, EphemeralStorageVanishesWithTheContainer) {
    ASSERT_EQ(mo({"container", "boot", "--ephemeral-storage", "16Mi", "e", "bb:1", "sleep", "1000"})
                  .status,
              0);
    Result r =
        mo({"container", "exec", "e", "sh", "-c", "echo scratch > /scratch/x; cat /scratch/x"});
    EXPECT_EQ(r.out, "scratch\n") << r.err;
    r = mo(
        {"container", "exec", "e", "dd", "if=/dev/zero", "of=/scratch/big", "bs=1M", "count=64"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    // another container's scratch area is its own
    r = mo({"container", "run", "--rm", "--ephemeral-storage", "16Mi", "bb:1", "ls", "/scratch"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "");
    ASSERT_EQ(mo({"container", "delete", "--force", "e"}).status, 0);
    EXPECT_EQ(containerDirs(), 0u);
    EXPECT_EQ(mountsHere(), 0u);
}

} // namespace
