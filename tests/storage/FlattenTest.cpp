// Flattened images for micro-VMs, through the image engine as the storage service runs it
// (real root: extraction with owners and device nodes, overlay mounts) over an in-memory
// store (VolumeTestHost.h): a three-layer image flattens to exactly the tree the layers'
// overlay shows, a root over the flattened copy shows it too, concurrent first uses build
// it once, and image removal and gc release it.
#include "Images.h"
#include "Paths.h"
#include "TestUtil.h"
#include "VolumeTestHost.h"
#include "VolumeTestTree.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

namespace mobileops::storage {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// One line per entry below `root`: type, mode, owner, size, content, device numbers, link
// target, xattrs (overlayfs' own trusted.overlay.* excepted), file mtime, and which other
// names share its inode (hard links). Directory times are left out: overlayfs shows the
// upper-most directory's, which says nothing about the tree.
std::map<std::string, std::string> walk(const std::string &root) {
    std::map<std::string, std::string> out;
    std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> inodes;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        const std::string path = it->path().string();
        const std::string rel = path.substr(root.size() + 1);
        struct stat st;
        if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat " + path);
        std::ostringstream line;
        line << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid;
        if (S_ISREG(st.st_mode)) {
            std::ifstream in(path, std::ios::binary);
            std::stringstream content;
            content << in.rdbuf();
            line << " size=" << st.st_size << " data=" << content.str().substr(0, 64)
                 << " mtime=" << st.st_mtim.tv_sec;
            inodes[{st.st_dev, st.st_ino}].push_back(rel);
        } else if (S_ISLNK(st.st_mode)) {
            line << " -> " << fs::read_symlink(path).string();
        } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
            line << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
        }
        char names[4096];
        ssize_t n = ::llistxattr(path.c_str(), names, sizeof names);
        for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
            std::string name = names + i;
            if (name.rfind("trusted.overlay.", 0) == 0) continue;
            char value[256];
            ssize_t v = ::lgetxattr(path.c_str(), name.c_str(), value, sizeof value);
            line << " xattr:" << name << "=" << std::string(value, v > 0 ? v : 0);
        }
        out[rel] = line.str();
    }
    for (const auto &[inode, names] : inodes)
        if (names.size() > 1)
            for (const auto &n : names) {
                std::string group;
                for (const auto &other : names) group += " " + other;
                out[n] += " links:" + group;
            }
    return out;
}

class Flatten : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (owners, device nodes, overlay mounts)";
        ASSERT_EQ(::mkdir((_tmp.path() + "/locks").c_str(), 0700), 0);
        _fake = std::make_unique<test::VolumeTestHost>(_tmp.path() + "/locks");
        _host = std::make_unique<common::Host>(_fake->host());
        _paths = std::make_unique<Paths>(_tmp.path() + "/storage");
        _store = std::make_unique<ImageStore>(*_host, *_paths);
        const std::string layout = _tmp.path() + "/layout";
        test::Result r =
            test::run({"/usr/bin/python3", MOBILEOPS_SOURCE_DIR "/tests/storage/archives.py",
                       "flatten-layout", layout});
        ASSERT_EQ(r.status, 0) << r.err;
        IngestOptions io;
        io.allowDevices = true;
        io.quiet = true;
        json loaded = _store->load(layout, "", io);
        _image = _store->resolve("example.test/flat:1").value("id", "");
        ASSERT_FALSE(_image.empty()) << loaded.dump();
    }
    void TearDown() override {
        if (!_store) return;
        for (const std::string &c : _containers) try {
                _store->releaseRootfs(c);
            } catch (const std::exception &e) {
                ADD_FAILURE() << "clean-up: " << e.what();
            }
        for (const auto &m : test::mountsUnder(_tmp.path())) {
            ADD_FAILURE() << "mount left behind: " << m;
            ::umount2(m.c_str(), MNT_DETACH);
        }
    }

    // A container's root from the image; `flatten` as the runtime asks for a micro-VM.
    json root(const std::string &id, bool flatten) {
        _containers.push_back(id);
        _fake->addContainer(id, id);
        return _store->prepareRootfs(id, _image, {{"flatten", flatten}});
    }
    std::string flatDir() const { return _paths->flat(_image); }

    test::TempDir _tmp;
    std::unique_ptr<test::VolumeTestHost> _fake;
    std::unique_ptr<common::Host> _host;
    std::unique_ptr<Paths> _paths;
    std::unique_ptr<ImageStore> _store;
    std::string _image;
    std::vector<std::string> _containers;
};

TEST_F(Flatten, CopyIsExactlyTheTreeTheLayersOverlayShows) {
    json layered = root("layered", false);
    json flat = root("flat", true);
    ASSERT_TRUE(flat.contains("flat")) << flat.dump();
    EXPECT_TRUE(flat["flat"].value("built", false));
    const std::string copy = flat["flat"].value("path", "");
    EXPECT_EQ(copy, flatDir() + "/fs");

    auto expected = walk(layered.value("path", ""));
    // What the layers must have come to, spelled out, so that a wrong overlay or a wrong
    // copy cannot agree with each other unnoticed.
    EXPECT_EQ(expected.count("a/sub"), 0u);                             // whiteout of a directory
    EXPECT_NE(expected["a/gone"].find("data=back"), std::string::npos); // made again
    EXPECT_EQ(expected.count("o/old"), 0u);                             // opaque directory
    EXPECT_EQ(expected.count("o/olddir"), 0u);
    EXPECT_EQ(expected["o"].substr(0, 6), "40750 ");  // its changed mode
    EXPECT_EQ(expected["m"].substr(0, 7), "100600 "); // changed mode
    EXPECT_EQ(expected["setuid"].substr(0, 7), "104755 ");
    EXPECT_NE(expected["own"].find(" 1000:1002 "), std::string::npos);
    EXPECT_NE(expected["x"].find("xattr:user.note=hello"), std::string::npos);
    EXPECT_NE(expected["dev/null"].find("dev=1,3"), std::string::npos);
    EXPECT_NE(expected["h/f1"].find("data=two"), std::string::npos); // link broken above
    EXPECT_NE(expected["h/f2"].find("data=one"), std::string::npos);
    EXPECT_EQ(expected["h/f1"].find("links:"), std::string::npos);
    EXPECT_NE(expected["h/g1"].find("links: h/g1 h/g2"), std::string::npos); // kept

    EXPECT_EQ(walk(copy), expected) << "the flattened copy differs from the layers' overlay";
    EXPECT_EQ(walk(flat.value("path", "")), expected)
        << "a root over the flattened copy differs from one over the layers";
    // No whiteout or overlay marker survives in the copy: it is a plain tree.
    for (const auto &entry : fs::recursive_directory_iterator(copy)) {
        char value[8];
        EXPECT_LT(::lgetxattr(entry.path().c_str(), "trusted.overlay.opaque", value, sizeof value),
                  0)
            << entry.path();
        EXPECT_EQ(entry.path().filename().string().rfind(".wh.", 0), std::string::npos);
    }

    // The root's own writes stay in its writable layer, never in the shared copy.
    test::writeAll(flat.value("path", "") + "/a/keep", "changed\n");
    EXPECT_EQ(test::readAll(copy + "/a/keep"), "keep\n");
    json again = root("flat2", true);
    EXPECT_FALSE(again["flat"].value("built", true)) << "the copy was made twice";
    EXPECT_EQ(test::readAll(again.value("path", "") + "/a/keep"), "keep\n");

    // The store's reports show it.
    json inspected = _store->inspect(_image);
    EXPECT_EQ(inspected["flattened"].value("path", ""), copy);
    EXPECT_GT(inspected["flattened"].value("entries", 0), 10);
    EXPECT_GT(inspected["flattened"].value("bytes", 0), 0);
    bool listed = false;
    for (const json &i : _store->list())
        listed |= i.value("id", "") == _image && i["flattened"].is_object();
    EXPECT_TRUE(listed);
}

TEST_F(Flatten, ConcurrentFirstUsesBuildItOnce) {
    constexpr int kUsers = 4;
    std::atomic<int> built{0}, failed{0};
    std::vector<std::string> paths(kUsers);
    std::vector<std::thread> users;
    for (int i = 0; i < kUsers; ++i)
        users.emplace_back([&, i] {
            try {
                json r = _store->ensureFlat(_image);
                built += r.value("built", false) ? 1 : 0;
                paths[i] = r.value("path", "");
            } catch (const std::exception &e) {
                ++failed;
                ADD_FAILURE() << e.what();
            }
        });
    for (auto &t : users) t.join();
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(built, 1);
    for (const auto &p : paths) EXPECT_EQ(p, flatDir() + "/fs");
    // Nothing half-made is left beside it.
    size_t leftovers = 0;
    for (const auto &e : fs::directory_iterator(_paths->tmp()))
        leftovers += e.path().filename().string().find("flat") != std::string::npos;
    EXPECT_EQ(leftovers, 0u);
}

TEST_F(Flatten, HalfBuiltCopyOfAKilledCommandIsNeverUsedAndGcRemovesIt) {
    // What a killed first user leaves: a partial tree below tmp/ under a dead pid.
    const std::string partial = _paths->tmp() + "/999999999-0000000000000000-flat";
    fs::create_directories(partial + "/fs/a");
    json r = _store->ensureFlat(_image);
    EXPECT_TRUE(r.value("built", false));
    EXPECT_EQ(test::readAll(r.value("path", "") + "/a/keep"), "keep\n");
    json gc = _store->gc();
    EXPECT_FALSE(fs::exists(partial)) << gc.dump();
}

TEST_F(Flatten, GcRemovesCopiesNoRootUsesAndImageRemovalItsOwn) {
    json flat = root("user", true);
    ASSERT_TRUE(fs::exists(flatDir()));
    json gc = _store->gc();
    EXPECT_TRUE(fs::exists(flatDir()))
        << "gc removed a copy a container's root uses: " << gc.dump();
    _store->releaseRootfs("user");
    _fake->removeContainer("user");
    _containers.clear();
    gc = _store->gc();
    EXPECT_FALSE(fs::exists(flatDir())) << gc.dump();
    EXPECT_NE(gc.dump().find("flattened copy of image " + shortId(_image)), std::string::npos)
        << gc.dump();
    EXPECT_TRUE(_store->inspect(_image)["flattened"].is_null());

    // Made again on the next use; removing the image takes it along.
    _store->ensureFlat(_image);
    ASSERT_TRUE(fs::exists(flatDir()));
    json removed = _store->remove({_image}, false);
    EXPECT_FALSE(fs::exists(flatDir())) << removed.dump();
    EXPECT_EQ(removed["flattenedRemoved"], json::array({_image}));
}

// Layers are untrusted: a later layer writing or whiting out through an absolute
// symlink an earlier layer planted stays inside the copy (a symlink climbing out with ..
// is refused when the image is loaded).
TEST_F(Flatten, LayersCannotReachTheHostThroughEarlierLayersSymlinks) {
    const std::string host = _tmp.path() + "/host";
    fs::create_directories(host);
    test::writeAll(host + "/sentinel", "still here\n");
    const std::string layout = _tmp.path() + "/hostile";
    test::Result r =
        test::run({"/usr/bin/python3", MOBILEOPS_SOURCE_DIR "/tests/storage/archives.py",
                   "flatten-hostile", layout, host});
    ASSERT_EQ(r.status, 0) << r.err;
    IngestOptions io;
    io.quiet = true;
    _store->load(layout, "", io);
    const std::string id = _store->resolve("example.test/hostile:1").value("id", "");
    // The symlink resolves inside the copy's root, where its target does not exist: the
    // second layer's entry is refused, naming it, and nothing is left.
    try {
        _store->ensureFlat(id);
        ADD_FAILURE() << "a layer wrote through an earlier layer's absolute symlink";
    } catch (const std::exception &e) {
        EXPECT_NE(std::string(e.what()).find("abs/"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(_paths->flat(id)));
    for (const auto &e : fs::directory_iterator(_paths->tmp()))
        EXPECT_EQ(e.path().filename().string().find("flat"), std::string::npos) << e.path();
    EXPECT_EQ(test::readAll(host + "/sentinel"), "still here\n");
    EXPECT_FALSE(fs::exists(host + "/evil"));
    EXPECT_EQ(std::distance(fs::directory_iterator(host), fs::directory_iterator()), 1);
}

TEST_F(Flatten, BadOptionIsRefusedAndLeavesNothing) {
    _fake->addContainer("bad", "bad");
    try {
        _store->prepareRootfs("bad", _image, {{"flatten", "yes"}});
        ADD_FAILURE() << "a non-boolean flatten was accepted";
    } catch (const sdk::Error &e) {
        EXPECT_NE(std::string(e.what()).find("flatten"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(_paths->container("bad")));
    EXPECT_FALSE(fs::exists(flatDir()));
}

} // namespace
} // namespace mobileops::storage
