// Archive extraction and writing as root: ownership, setuid/setgid/sticky modes and xattrs
// (security.capability included) through a round trip, device nodes, and the overlayfs
// forms of whiteouts checked by mounting real overlays of extracted layers.
#include "Archive.h"
#include "ArchiveTestSupport.h"
#include "TestUtil.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace mobileops::storage {
namespace {

using namespace test_support;

namespace fs = std::filesystem;
using test::TempDir;

std::string xattrs(const std::string &path) {
    std::string names(4096, '\0');
    ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
    if (n <= 0) return "";
    names.resize(static_cast<size_t>(n));
    std::map<std::string, std::string> all;
    for (size_t p = 0; p < names.size();) {
        std::string name(names.c_str() + p);
        p += name.size() + 1;
        if (name.rfind("trusted.overlay.", 0) == 0 && name != "trusted.overlay.opaque") continue;
        if (name == "security.selinux") continue;
        std::string value(4096, '\0');
        ssize_t m = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
        value.resize(m > 0 ? static_cast<size_t>(m) : 0);
        std::ostringstream hex;
        for (unsigned char c : value) hex << std::hex << (c >> 4) << (c & 15);
        all[name] = hex.str();
    }
    std::string out;
    for (auto &[k, v] : all) out += " " + k + "=" + v;
    return out;
}

// Every path below `root`: type, mode, owner, size and content digest or target, xattrs.
std::map<std::string, std::string> tree(const std::string &root) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        std::string rel = it->path().lexically_relative(root).string();
        struct stat st;
        ::lstat(it->path().c_str(), &st);
        std::ostringstream d;
        d << std::oct << (st.st_mode & 07777) << std::dec << ' ' << st.st_uid << ':' << st.st_gid
          << ' ';
        if (S_ISDIR(st.st_mode))
            d << "dir";
        else if (S_ISLNK(st.st_mode))
            d << "-> " << fs::read_symlink(it->path()).string();
        else if (S_ISREG(st.st_mode))
            d << "file " << std::hash<std::string>()(slurp(it->path()));
        else if (S_ISCHR(st.st_mode))
            d << "chr " << major(st.st_rdev) << '/' << minor(st.st_rdev);
        else if (S_ISBLK(st.st_mode))
            d << "blk " << major(st.st_rdev) << '/' << minor(st.st_rdev);
        else if (S_ISFIFO(st.st_mode))
            d << "fifo";
        d << xattrs(it->path());
        out[rel] = d.str();
    }
    return out;
}

// security.capability for cap_net_raw+ep (what `setcap cap_net_raw+ep` writes).
std::string netRawCapability() {
    vfs_cap_data cap{};
    cap.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
    cap.data[0].permitted = 1u << CAP_NET_RAW;
    return std::string(reinterpret_cast<const char *>(&cap), XATTR_CAPS_SZ_2);
}

struct Mount {
    std::string path;
    ~Mount() {
        if (!path.empty()) ::umount2(path.c_str(), MNT_DETACH);
    }
};

// Entry names and xattr names of an archive, read back with libarchive.
std::vector<std::string> listing(const std::string &file) {
    std::vector<std::string> out;
    archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    EXPECT_EQ(archive_read_open_filename(a, file.c_str(), 65536), ARCHIVE_OK);
    archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        std::string line = archive_entry_pathname(e);
        const char *name;
        const void *value;
        size_t size;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
            line += std::string(" ") + name;
        out.push_back(line);
    }
    archive_read_free(a);
    return out;
}

bool contains(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(ArchiveRoot, OwnershipModesAndCapabilitiesRoundTrip) {
    TempDir d;
    std::string src = d.path() + "/src";
    fs::create_directories(src + "/shared");
    fs::create_directories(src + "/group");
    spit(src + "/bin/ping", "ping");
    spit(src + "/bin/su", "su");
    spit(src + "/home/user/notes", "mine");
    spit(src + "/group/file", "g");
    ::symlink("notes", (src + "/home/user/link").c_str());
    ::mknod((src + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3));
    ::mknod((src + "/loop9").c_str(), S_IFBLK | 0660, makedev(7, 9));

    std::string cap = netRawCapability();
    ASSERT_EQ(::chown((src + "/bin/ping").c_str(), 0, 1234), 0);
    ASSERT_EQ(::chmod((src + "/bin/ping").c_str(), 0750), 0);
    ASSERT_EQ(
        ::setxattr((src + "/bin/ping").c_str(), "security.capability", cap.data(), cap.size(), 0),
        0);
    ASSERT_EQ(::setxattr((src + "/bin/ping").c_str(), "user.note", "hi", 2, 0), 0);
    ASSERT_EQ(::chmod((src + "/bin/su").c_str(), 04755), 0);
    ASSERT_EQ(::chown((src + "/home/user").c_str(), 1000, 1000), 0);
    ASSERT_EQ(::chown((src + "/home/user/notes").c_str(), 1000, 1000), 0);
    ASSERT_EQ(::chmod((src + "/home/user/notes").c_str(), 0600), 0);
    ASSERT_EQ(::lchown((src + "/home/user/link").c_str(), 1000, 1001), 0);
    ASSERT_EQ(::chmod((src + "/shared").c_str(), 01777), 0);
    ASSERT_EQ(::chown((src + "/group").c_str(), 0, 50), 0);
    ASSERT_EQ(::chmod((src + "/group").c_str(), 02775), 0);
    ASSERT_EQ(::chown((src + "/group/file").c_str(), 33, 50), 0);
    ASSERT_EQ(::chmod((src + "/group/file").c_str(), 02755), 0);
    ASSERT_EQ(::setxattr((src + "/group").c_str(), "trusted.mine", "t", 1, 0), 0);
    auto before = tree(src);
    ASSERT_NE(before["bin/ping"].find("security.capability="), std::string::npos);

    WriteOptions w;
    w.compression = Compression::Zstd;
    writeTree(src, d.path() + "/a.tar.zst", w);
    ExtractOptions o = opts();
    o.allowDevices = true;
    extract(d.path() + "/a.tar.zst", d.path() + "/back", o);
    EXPECT_EQ(tree(d.path() + "/back"), before);
    auto getcap = test::run({"/usr/sbin/getcap", d.path() + "/back/bin/ping"});
    EXPECT_NE(getcap.out.find("cap_net_raw=ep"), std::string::npos) << getcap.out << getcap.err;
}

TEST(ArchiveRoot, HandBuiltOwnersAndDevices) {
    TempDir d;
    std::string tar = d.path() + "/a.tar";
    archive *a = archive_write_new();
    archive_write_set_format_pax(a);
    ASSERT_EQ(archive_write_open_filename(a, tar.c_str()), ARCHIVE_OK);
    auto add = [&](const char *name, mode_t mode, int uid, int gid, dev_t rdev = 0,
                   const std::string &data = "") {
        archive_entry *e = archive_entry_new();
        archive_entry_copy_pathname(e, name);
        archive_entry_set_mode(e, mode);
        archive_entry_set_uid(e, uid);
        archive_entry_set_gid(e, gid);
        archive_entry_set_rdev(e, rdev);
        archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
        if (std::string(name) == "sbin/cap") {
            std::string cap = netRawCapability();
            archive_entry_xattr_add_entry(e, "security.capability", cap.data(), cap.size());
        }
        if (std::string(name) == "dir")
            archive_entry_xattr_add_entry(e, "trusted.overlay.opaque", "y", 1);
        archive_write_header(a, e);
        if (!data.empty()) archive_write_data(a, data.data(), data.size());
        archive_entry_free(e);
    };
    add("dir", AE_IFDIR | 0755, 0, 0);
    add("dev/null", AE_IFCHR | 0666, 0, 0, makedev(1, 3));
    add("dev/loop0", AE_IFBLK | 0660, 0, 6, makedev(7, 0));
    add("sbin/cap", AE_IFREG | 04755, 4242, 4343, 0, "binary");
    add("tmp", AE_IFDIR | 01777, 0, 0);
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);

    ExtractOptions o = opts();
    o.allowDevices = true;
    extract(tar, d.path() + "/out", o);
    auto t = tree(d.path() + "/out");
    EXPECT_EQ(t["dev/null"], "666 0:0 chr 1/3");
    EXPECT_EQ(t["dev/loop0"], "660 0:6 blk 7/0");
    // Setuid and the capability survive the chown to 4242 (which would clear them after).
    EXPECT_EQ(t["sbin/cap"].substr(0, 20), "4755 4242:4343 file ");
    EXPECT_NE(t["sbin/cap"].find("security.capability=0"), std::string::npos) << t["sbin/cap"];
    EXPECT_EQ(t["tmp"], "1777 0:0 dir");
    // trusted.overlay.* from an archive is never applied: only our own whiteout conversion sets it.
    EXPECT_EQ(t["dir"], "755 0:0 dir");
}

TEST(ArchiveRoot, OverlayLayersMountAsTheMergedTree) {
    TempDir d;
    std::string dir = d.path();
    // Layer 1: a base; layer 2 deletes a/f1 and `gone`, makes d opaque with one new file.
    auto tarOf = [&](const std::string &name, const std::string &build) {
        std::string src = dir + "/src-" + name;
        fs::create_directories(src);
        EXPECT_EQ(test::run({"/bin/sh", "-c", "cd " + src + " && " + build}).status, 0);
        EXPECT_EQ(test::run({"/bin/sh", "-c",
                             "cd " + src + " && tar --format=pax -czf " + dir + "/" + name +
                                 ".tgz --sort=name ."})
                      .status,
                  0);
    };
    tarOf("1", "mkdir -p a d/sub gone && echo 1 > a/f1 && echo 2 > a/f2 && echo old > d/old && "
               "echo deep > d/sub/deep && echo keep > keep && echo x > gone/x");
    tarOf("2", "mkdir -p a d && touch a/.wh.f1 .wh.gone d/.wh..wh..opq && echo new > d/new");

    extract(dir + "/1.tgz", dir + "/l1", opts(Whiteouts::Overlay));
    extract(dir + "/2.tgz", dir + "/l2", opts(Whiteouts::Overlay));
    auto l2 = tree(dir + "/l2");
    EXPECT_EQ(l2["a/f1"], "0 0:0 chr 0/0");
    EXPECT_EQ(l2["gone"], "0 0:0 chr 0/0");
    EXPECT_EQ(l2["d"], "755 0:0 dir trusted.overlay.opaque=79");
    EXPECT_EQ(l2.count("d/.wh..wh..opq"), 0u);

    fs::create_directories(dir + "/merged");
    Mount m;
    std::string options = "lowerdir=" + dir + "/l2:" + dir + "/l1";
    ASSERT_EQ(::mount("overlay", (dir + "/merged").c_str(), "overlay", 0, options.c_str()), 0)
        << std::strerror(errno);
    m.path = dir + "/merged";
    std::vector<std::string> expected = {"a", "a/f2", "d", "d/new", "keep"};
    EXPECT_EQ(names(tree(dir + "/merged")), expected);

    // Apply gives the same tree, flattened.
    extract(dir + "/1.tgz", dir + "/flat", opts(Whiteouts::Apply));
    ExtractOptions apply = opts(Whiteouts::Apply);
    apply.createTarget = false;
    extract(dir + "/2.tgz", dir + "/flat", apply);
    EXPECT_EQ(tree(dir + "/flat"), tree(dir + "/merged"));
}

TEST(ArchiveRoot, OverlayUpperBecomesALayer) {
    TempDir d;
    std::string dir = d.path();
    std::string base = dir + "/base";
    fs::create_directories(base + "/d/sub");
    spit(base + "/a/f1", "1");
    spit(base + "/a/f2", "2");
    spit(base + "/d/old", "old");
    spit(base + "/d/sub/deep", "deep");
    spit(base + "/keep", "keep");
    writeTree(base, dir + "/1.tar", {});
    extract(dir + "/1.tar", dir + "/l1", opts(Whiteouts::Overlay));

    for (auto sub : {"/upper", "/work", "/merged"}) fs::create_directories(dir + sub);
    std::map<std::string, std::string> merged;
    {
        Mount m;
        std::string options =
            "lowerdir=" + dir + "/l1,upperdir=" + dir + "/upper,workdir=" + dir + "/work";
        ASSERT_EQ(::mount("overlay", (dir + "/merged").c_str(), "overlay", 0, options.c_str()), 0)
            << std::strerror(errno);
        m.path = dir + "/merged";
        std::string mm = m.path;
        fs::remove(mm + "/a/f1");
        fs::remove_all(mm + "/d");
        fs::create_directories(mm + "/d");
        spit(mm + "/d/new", "new");
        spit(mm + "/keep", "changed");
        spit(mm + "/added/x", "x");
        ASSERT_EQ(::chown((mm + "/added/x").c_str(), 77, 88), 0);
        std::string cap = netRawCapability();
        ASSERT_EQ(
            ::setxattr((mm + "/added/x").c_str(), "security.capability", cap.data(), cap.size(), 0),
            0);
        merged = tree(mm);
    }
    ASSERT_TRUE(fs::is_character_file(dir + "/upper/a/f1"));

    WriteResult r =
        writeTree(dir + "/upper", dir + "/2.tar.gz", {Compression::Gzip, true, false, {}});
    auto entries = listing(dir + "/2.tar.gz");
    EXPECT_TRUE(contains(entries, "a/.wh.f1")) << ::testing::PrintToString(entries);
    EXPECT_TRUE(contains(entries, "d/.wh..wh..opq")) << ::testing::PrintToString(entries);
    EXPECT_TRUE(contains(entries, "added/x security.capability"));
    for (auto &e : entries) EXPECT_EQ(e.find("trusted.overlay"), std::string::npos) << e;

    // Flattened onto the base, and mounted as a second lower: both give the merged view.
    extract(dir + "/1.tar", dir + "/flat", opts(Whiteouts::Apply));
    ExtractOptions apply = opts(Whiteouts::Apply);
    apply.createTarget = false;
    ExtractResult x = extract(dir + "/2.tar.gz", dir + "/flat", apply);
    EXPECT_EQ(x.diffId, r.diffId);
    EXPECT_EQ(tree(dir + "/flat"), merged);

    extract(dir + "/2.tar.gz", dir + "/l2", opts(Whiteouts::Overlay));
    fs::create_directories(dir + "/merged2");
    Mount m2;
    std::string options = "lowerdir=" + dir + "/l2:" + dir + "/l1";
    ASSERT_EQ(::mount("overlay", (dir + "/merged2").c_str(), "overlay", 0, options.c_str()), 0)
        << std::strerror(errno);
    m2.path = dir + "/merged2";
    EXPECT_EQ(tree(dir + "/merged2"), merged);
}

} // namespace
} // namespace mobileops::storage
