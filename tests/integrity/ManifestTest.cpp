// Manifests of what only root can make: owners, device nodes, trusted.* and
// security.capability attributes, overlay whiteouts and opaque directories, mounts inside
// the tree, and a real overlay mount checked against merge().
#include "Manifest.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace mobileops::integrity {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

class ManifestRoot : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown, mknod, trusted.* attributes)";
    }
};

// Unmounted (lazily, so a failed test cannot leave it busy) before its directory goes away.
struct Mount {
    std::string target;
    Mount(const std::string &source, const std::string &where, const char *type,
          unsigned long flags, const std::string &options)
        : target(where) {
        if (::mount(source.c_str(), where.c_str(), type, flags,
                    options.empty() ? nullptr : options.c_str()) != 0) {
            ADD_FAILURE() << "mount " << type << " on " << where << ": " << std::strerror(errno);
            target.clear();
        }
    }
    ~Mount() {
        if (!target.empty()) ::umount2(target.c_str(), MNT_DETACH);
    }
    explicit operator bool() const { return !target.empty(); }
};

void setXattr(const std::string &path, const std::string &name, const std::string &value) {
    ASSERT_EQ(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0), 0)
        << name << " on " << path << ": " << std::strerror(errno);
}

void whiteout(const std::string &path) {
    ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)), 0) << path;
}

std::vector<std::string> paths(const Manifest &m) {
    std::vector<std::string> out;
    for (const auto &e : m.entries) out.push_back(e.path);
    return out;
}

TEST_F(ManifestRoot, OwnerChangeIsOwner) {
    TempDir dir;
    const std::string file = dir.file("etc/shadow", "root:*:1::::::\n");
    Manifest before = scan(dir.path());
    EXPECT_EQ(before.find("/etc/shadow")->uid, 0u);
    ASSERT_EQ(::chown(file.c_str(), 1234, 5678), 0);
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].path, "/etc/shadow");
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"owner"});
    EXPECT_EQ(d.modified[0].before, (nlohmann::json{{"uid", 0}, {"gid", 0}}));
    EXPECT_EQ(d.modified[0].after, (nlohmann::json{{"uid", 1234}, {"gid", 5678}}));
    EXPECT_EQ(d.first(1), std::vector<std::string>{"/etc/shadow (owner)"});
}

TEST_F(ManifestRoot, DeviceNodesAreRecordedWithTheirNumbersAndNeverOpened) {
    TempDir dir;
    fs::create_directories(dir.path() + "/dev");
    const std::string null = dir.path() + "/dev/null";
    ASSERT_EQ(::mknod(null.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(::chmod(null.c_str(), 0666), 0); // past the umask
    ASSERT_EQ(::mknod((dir.path() + "/dev/loop0").c_str(), S_IFBLK | 0660, makedev(7, 0)), 0);
    whiteout(dir.path() + "/dev/gone");
    int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ASSERT_GE(::inotify_add_watch(watch, null.c_str(), IN_OPEN), 0);

    Manifest before = scan(dir.path());
    char event[4096];
    EXPECT_LT(::read(watch, event, sizeof event), 0) << "the scan opened a device node";
    ::close(watch);
    const Entry *chr = before.find("/dev/null");
    EXPECT_EQ(chr->type, EntryType::CharDevice);
    EXPECT_EQ(chr->rdev, makedev(1, 3));
    EXPECT_EQ(chr->mode, 0666u);
    EXPECT_EQ(chr->digest, "");
    EXPECT_EQ(before.find("/dev/loop0")->type, EntryType::BlockDevice);
    EXPECT_EQ(before.find("/dev/loop0")->rdev, makedev(7, 0));
    EXPECT_EQ(before.find("/dev/gone")->rdev, 0u);
    EXPECT_EQ(Manifest::fromJson(before.toJson()).root, before.root);

    fs::remove(null);
    ASSERT_EQ(::mknod(null.c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
    ASSERT_EQ(::chmod(null.c_str(), 0666), 0);
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"device"});
    EXPECT_EQ(d.modified[0].before["rdev"], "1:3");
    EXPECT_EQ(d.modified[0].after["rdev"], "1:5");
}

TEST_F(ManifestRoot, TrustedAndCapabilityAttributesAreXattrs) {
    TempDir dir;
    const std::string bin = dir.file("bin/ping", "ping");
    const std::string lib = dir.file("lib/libc.so", "libc");
    setXattr(lib, "trusted.mo.label", "a");
    Manifest before = scan(dir.path());
    EXPECT_EQ(before.find("/lib/libc.so")->xattrs.size(), 64u);
    EXPECT_EQ(before.find("/bin/ping")->xattrs, "");

    setXattr(lib, "trusted.mo.label", "b");
    vfs_cap_data cap{};
    cap.magic_etc = VFS_CAP_REVISION_2;
    cap.data[0].permitted = 1u << CAP_NET_RAW;
    setXattr(bin, "security.capability",
             std::string(reinterpret_cast<const char *>(&cap), XATTR_CAPS_SZ_2));
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.modified.size(), 2u);
    EXPECT_EQ(d.modified[0].path, "/bin/ping");
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"xattrs"});
    EXPECT_EQ(d.modified[0].before["xattrs"], nullptr);
    EXPECT_EQ(d.modified[1].path, "/lib/libc.so");
    EXPECT_EQ(d.modified[1].what, std::vector<std::string>{"xattrs"});
}

TEST_F(ManifestRoot, SymlinkAttributesAreTheLinksOwn) {
    TempDir dir;
    const std::string target = dir.file("target", "t");
    fs::create_symlink("target", dir.path() + "/link");
    setXattr(target, "trusted.mo.label", "on the target");
    Manifest m = scan(dir.path());
    EXPECT_EQ(m.find("/link")->xattrs, "");
    setXattr(dir.path() + "/link", "trusted.mo.label", "on the link");
    Diff d = compare(m, scan(dir.path()));
    ASSERT_EQ(d.modified.size(), 1u);
    EXPECT_EQ(d.modified[0].path, "/link");
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"xattrs"});
}

TEST_F(ManifestRoot, OverlayAttributesSetOpaqueAndStayOutOfTheDigest) {
    TempDir dir;
    fs::create_directories(dir.path() + "/etc/conf.d");
    const std::string confd = dir.path() + "/etc/conf.d";
    Manifest before = scan(dir.path());
    setXattr(confd, "trusted.overlay.origin", "whatever overlay records");
    EXPECT_TRUE(compare(before, scan(dir.path())).clean());

    setXattr(confd, "trusted.overlay.opaque", "y");
    Manifest opaque = scan(dir.path());
    EXPECT_TRUE(opaque.find("/etc/conf.d")->opaque);
    EXPECT_EQ(opaque.find("/etc/conf.d")->xattrs, "");
    Diff d = compare(before, opaque);
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"opaque"});
    EXPECT_EQ(Manifest::fromJson(opaque.toJson()).root, opaque.root);
}

TEST_F(ManifestRoot, MountsInsideTheTreeAreRecordedNotEntered) {
    TempDir dir;
    dir.file("data/file", "below");
    fs::create_directories(dir.path() + "/mnt");
    fs::create_directories(dir.path() + "/data/self");
    Mount tmpfs("tmpfs", dir.path() + "/mnt", "tmpfs", 0, "mode=0711");
    ASSERT_TRUE(tmpfs);
    dir.file("mnt/inside", "another filesystem");
    // The tree bound inside itself: entering it would never end.
    Mount self(dir.path(), dir.path() + "/data/self", nullptr, MS_BIND, "");
    ASSERT_TRUE(self);
    Manifest m = scan(dir.path());
    EXPECT_EQ(paths(m),
              (std::vector<std::string>{"/", "/data", "/data/file", "/data/self", "/mnt"}));
    EXPECT_EQ(m.find("/mnt")->mode, 0711u); // what the mount shows
}

// Layers made with real whiteouts and an opaque directory, mounted by the kernel: the
// tree merge() predicts is the tree the mount shows, and overlayDrift() names what the
// upper layer and a later copy-up changed.
TEST_F(ManifestRoot, MergeMatchesARealOverlayMount) {
    TempDir dir;
    const std::string lower = dir.path() + "/lower", upper = dir.path() + "/upper";
    for (const char *d :
         {"/lower", "/upper", "/work", "/merged", "/upper/bin", "/upper/var", "/upper/etc/conf.d"})
        fs::create_directories(dir.path() + d);
    for (const char *f :
         {"bin/sh", "bin/ls", "etc/conf.d/a", "etc/hosts", "opt/app", "var/log/old"})
        dir.file(std::string("lower/") + f, f);
    dir.file("upper/bin/sh", "busybox");
    dir.file("upper/etc/conf.d/b", "b");
    dir.file("upper/opt", "now a file");
    whiteout(upper + "/bin/ls");
    whiteout(upper + "/var/log");
    setXattr(upper + "/etc/conf.d", "trusted.overlay.opaque", "y");

    Manifest lowerScan = scan(lower);
    Manifest upperScan = scan(upper);
    Manifest predicted = merge({lowerScan, upperScan});
    EXPECT_EQ(paths(predicted),
              (std::vector<std::string>{"/", "/bin", "/bin/sh", "/etc", "/etc/conf.d",
                                        "/etc/conf.d/b", "/etc/hosts", "/opt", "/var"}));

    const std::string merged = dir.path() + "/merged";
    Mount overlay("overlay", merged, "overlay", 0,
                  "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + dir.path() + "/work");
    ASSERT_TRUE(overlay);
    Manifest mounted = scan(merged);
    Diff d = compare(predicted, mounted);
    EXPECT_TRUE(d.clean()) << d.toJson().dump(2);
    EXPECT_EQ(mounted.root, predicted.root);

    Diff drift = overlayDrift(lowerScan, upperScan);
    EXPECT_EQ(drift.added, std::vector<std::string>{"/etc/conf.d/b"});
    EXPECT_EQ(drift.removed, (std::vector<std::string>{"/bin/ls", "/etc/conf.d/a", "/opt/app",
                                                       "/var/log", "/var/log/old"}));
    ASSERT_EQ(drift.modified.size(), 2u) << drift.toJson().dump(2);
    EXPECT_EQ(drift.modified[0].path, "/bin/sh");
    EXPECT_EQ(drift.modified[0].what, (std::vector<std::string>{"content", "size"}));
    EXPECT_EQ(drift.modified[1].path, "/opt");
    EXPECT_EQ(drift.modified[1].what, std::vector<std::string>{"type"});

    // A chmod through the mount copies the file up with its content: only the mode drifts.
    ASSERT_EQ(::chmod((merged + "/etc/hosts").c_str(), 0600), 0);
    Diff copied = overlayDrift(lowerScan, scan(upper));
    ASSERT_EQ(copied.modified.size(), 3u) << copied.toJson().dump(2);
    EXPECT_EQ(copied.modified[1].path, "/etc/hosts");
    EXPECT_EQ(copied.modified[1].what, std::vector<std::string>{"mode"});
    EXPECT_TRUE(compare(merge({lowerScan, scan(upper)}), scan(merged)).clean());
}

} // namespace
} // namespace mobileops::integrity
