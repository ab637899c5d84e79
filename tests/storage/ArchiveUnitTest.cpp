// Archive extraction and writing without privilege: digests, every hostile-archive refusal
// (each leaving nothing behind), multi-layer Apply with whiteouts, writeTree round trips
// and ArchiveWriter. Ownership, device nodes, xattrs and overlay mounts are in ArchiveTest.
#include "Archive.h"
#include "ArchiveTestSupport.h"
#include "Digest.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace mobileops::storage {
namespace {

using namespace test_support;

namespace fs = std::filesystem;

class Dir {
public:
    Dir() {
        char tmpl[] = "/tmp/mo-archive-XXXXXX";
        if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
        _path = tmpl;
    }
    ~Dir() {
        std::error_code ec;
        fs::remove_all(_path, ec);
    }
    std::string operator/(const std::string &name) const { return _path + "/" + name; }
    const std::string &path() const { return _path; }

private:
    std::string _path;
};

// Output of a shell command (stdout only).
std::string sh(const std::string &cmd) {
    std::string out;
    FILE *p = ::popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
    return out;
}

std::string sha256sum(const std::string &cmd) {
    std::string out = sh(cmd + " | sha256sum");
    return "sha256:" + out.substr(0, 64);
}

// One entry of a hand-built archive.
struct E {
    std::string name;
    unsigned type = AE_IFREG;
    std::string data;
    std::string symlink;
    std::string hardlink;
    mode_t perm = 0644;
    int64_t size = -1; // header size when it must differ from data
    time_t mtime = 1600000000;
    unsigned major = 0, minor = 0;
};

E dir(const std::string &name, mode_t perm = 0755) {
    E e;
    e.name = name;
    e.type = AE_IFDIR;
    e.perm = perm;
    return e;
}
E file(const std::string &name, const std::string &data = "x", mode_t perm = 0644) {
    E e;
    e.name = name;
    e.data = data;
    e.perm = perm;
    return e;
}
E symlink(const std::string &name, const std::string &target) {
    E e;
    e.name = name;
    e.type = AE_IFLNK;
    e.symlink = target;
    e.perm = 0777;
    return e;
}
E hardlink(const std::string &name, const std::string &target) {
    E e;
    e.name = name;
    e.hardlink = target;
    return e;
}

// A pax tar of `entries`. `cut`: stop right after the last entry's header (its data and the
// end of the archive missing), as a truncated download would.
void writeTar(const std::string &path, const std::vector<E> &entries, bool cut = false) {
    archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (cut) archive_write_set_bytes_per_block(a, 0);
    ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
    for (size_t i = 0; i < entries.size(); ++i) {
        const E &s = entries[i];
        archive_entry *e = archive_entry_new();
        archive_entry_copy_pathname(e, s.name.c_str());
        archive_entry_set_filetype(e, s.type);
        archive_entry_set_perm(e, s.perm);
        archive_entry_set_mtime(e, s.mtime, 0);
        if (!s.symlink.empty()) archive_entry_copy_symlink(e, s.symlink.c_str());
        if (!s.hardlink.empty()) archive_entry_copy_hardlink(e, s.hardlink.c_str());
        if (s.type == AE_IFCHR || s.type == AE_IFBLK)
            archive_entry_set_rdev(e, makedev(s.major, s.minor));
        archive_entry_set_size(e, s.size >= 0 ? s.size
                                  : s.type == AE_IFREG && s.hardlink.empty()
                                      ? static_cast<int64_t>(s.data.size())
                                      : 0);
        ASSERT_GE(archive_write_header(a, e), ARCHIVE_WARN) << archive_error_string(a);
        archive_entry_free(e);
        if (cut && i + 1 == entries.size()) {
            archive_write_fail(a);
            archive_write_free(a);
            return;
        }
        if (!s.data.empty()) archive_write_data(a, s.data.data(), s.data.size());
    }
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

// Every path below `root` with its type, mode, content or target, sorted.
std::map<std::string, std::string> tree(const std::string &root, bool withTimes = false) {
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        std::string rel = it->path().lexically_relative(root).string();
        struct stat st;
        ::lstat(it->path().c_str(), &st);
        std::ostringstream d;
        d << std::oct << (st.st_mode & 07777) << std::dec << ' ';
        if (S_ISDIR(st.st_mode))
            d << "dir";
        else if (S_ISLNK(st.st_mode))
            d << "-> " << fs::read_symlink(it->path()).string();
        else if (S_ISREG(st.st_mode))
            d << "file " << slurp(it->path().string()).size() << ' '
              << sha256Of(slurp(it->path().string())).substr(7, 12);
        else if (S_ISFIFO(st.st_mode))
            d << "fifo";
        else if (S_ISCHR(st.st_mode))
            d << "chr " << major(st.st_rdev) << '/' << minor(st.st_rdev);
        else
            d << "other";
        if (withTimes) d << " t" << st.st_mtim.tv_sec << '.' << st.st_mtim.tv_nsec;
        out[rel] = d.str();
    }
    return out;
}

// The call fails with `code` and a message containing `text`.
void expectError(const std::function<void()> &fn, int code, const std::string &text) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected: " << text;
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(text), std::string::npos)
            << "message: " << e.what() << "\nexpected: " << text;
    }
}

// The archive is refused with `text`, and the target is gone.
void expectRefused(const std::vector<E> &entries, const std::string &text,
                   ExtractOptions options = opts(), int code = MO_E_INVALID) {
    Dir d;
    writeTar(d / "a.tar", entries);
    expectError([&] { extract(d / "a.tar", d / "out", options); }, code, text);
    EXPECT_FALSE(fs::exists(fs::symlink_status(d / "out"))) << "target left behind";
}

// --- digests -----------------------------------------------------------------------------

TEST(Digest, KnownVectors) {
    EXPECT_EQ(sha256Of(""),
              "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256Of("abc"),
              "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 h;
    h.update("a", 1);
    h.update("bc", 2);
    EXPECT_EQ(h.finish(), sha256Of("abc"));
    EXPECT_EQ(h.finish(), sha256Of("")); // reset after finish
}

TEST(Digest, FileMatchesSha256sum) {
    Dir d;
    std::string big(3 << 20, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 4096);
    spit(d / "f", big);
    EXPECT_EQ(sha256File(d / "f"), sha256sum("cat " + d / "f"));
    expectError([&] { sha256File(d / "missing"); }, -ENOENT, "hash `" + d / "missing" + "`");
}

// --- extraction --------------------------------------------------------------------------

std::vector<E> sampleLayer() {
    E fifo;
    fifo.name = "run/fifo";
    fifo.type = AE_IFIFO;
    fifo.perm = 0600;
    std::string big(300000, 'b');
    for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>(i);
    return {dir("./"),
            dir("./bin"),
            file("./bin/busybox", big, 0755),
            symlink("./bin/sh", "/bin/busybox"),
            symlink("./bin/ls", "busybox"),
            dir("./etc", 0750),
            file("./etc/hostname", "box\n", 0640),
            hardlink("./etc/hostname2", "./etc/hostname"),
            file("./nodir/implicit", "parents created\n"),
            fifo,
            file("./empty", "", 0600)};
}

TEST(Extract, TreeTimesAndDigests) {
    Dir d;
    writeTar(d / "l.tar", sampleLayer());
    ExtractResult r = extract(d / "l.tar", d / "out", opts());
    auto t = tree(d / "out");
    std::vector<std::string> expected = {
        "bin",          "bin/busybox",   "bin/ls", "bin/sh",         "empty", "etc",
        "etc/hostname", "etc/hostname2", "nodir",  "nodir/implicit", "run",   "run/fifo"};
    EXPECT_EQ(names(t), expected);
    EXPECT_EQ(t["bin/sh"], "777 -> /bin/busybox");
    EXPECT_EQ(t["etc"], "750 dir");
    EXPECT_EQ(t["etc/hostname"].substr(0, 10), "640 file 4");
    EXPECT_EQ(t["run/fifo"], "600 fifo");
    EXPECT_EQ(t["bin/busybox"].substr(0, 15), "755 file 300000");
    EXPECT_EQ(slurp(d / "out/bin/busybox"), sampleLayer()[2].data);
    struct stat a, b;
    ::lstat((d / "out/etc/hostname").c_str(), &a);
    ::lstat((d / "out/etc/hostname2").c_str(), &b);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_mtim.tv_sec, 1600000000);
    ::lstat((d / "out/bin/sh").c_str(), &a);
    EXPECT_EQ(a.st_mtim.tv_sec, 1600000000) << "symlink mtime";
    ::lstat((d / "out/etc").c_str(), &a);
    EXPECT_EQ(a.st_mtim.tv_sec, 1600000000) << "directory mtime after its contents";
    ::lstat((d / "out").c_str(), &a);
    EXPECT_EQ(a.st_mtim.tv_sec, 1600000000) << "the root's own entry";

    EXPECT_EQ(r.digest, sha256sum("cat " + d / "l.tar"));
    EXPECT_EQ(r.diffId, r.digest);
    EXPECT_EQ(r.size, fs::file_size(d / "l.tar"));
    EXPECT_EQ(r.entries, 11u);
    EXPECT_EQ(r.unpackedSize, 300000u + 4 + 16);
}

TEST(Extract, CompressedDigestsAndProgress) {
    Dir d;
    writeTar(d / "l.tar", sampleLayer());
    struct Variant {
        const char *compress, *cat, *ext;
    };
    for (auto v : {Variant{"gzip -c", "zcat", "gz"}, Variant{"zstd -q -c", "zstdcat", "zst"},
                   Variant{"xz -c", "xzcat", "xz"}, Variant{"bzip2 -c", "bzcat", "bz2"}}) {
        SCOPED_TRACE(v.ext);
        std::string file = d / (std::string("l.tar.") + v.ext);
        sh(std::string(v.compress) + " " + d / "l.tar > " + file);
        uint64_t lastRead = 0, lastTotal = 0, calls = 0;
        ExtractOptions o = opts();
        o.progress = [&](uint64_t read, uint64_t total) {
            EXPECT_GE(read, lastRead);
            lastRead = read;
            lastTotal = total;
            ++calls;
        };
        std::string out = d / (std::string("out-") + v.ext);
        ExtractResult r = extract(file, out, o);
        EXPECT_EQ(r.digest, sha256sum(std::string("cat ") + file));
        EXPECT_EQ(r.diffId, sha256sum(std::string(v.cat) + " " + file));
        EXPECT_EQ(r.diffId, sha256File(d / "l.tar"));
        EXPECT_EQ(r.size, fs::file_size(file));
        EXPECT_GT(calls, 0u);
        EXPECT_EQ(lastRead, r.size);
        EXPECT_EQ(lastTotal, r.size);
        EXPECT_EQ(slurp(out + "/bin/busybox"), sampleLayer()[2].data);
    }
}

TEST(Extract, LaterEntryReplacesEarlier) {
    Dir d;
    writeTar(d / "a.tar", {file("x", "first"), file("x", "second"), file("y"), symlink("y", "x"),
                           dir("z"), file("z/in"), file("z", "file now"), symlink("w", "x"),
                           dir("w"), file("w/in", "inside")});
    extract(d / "a.tar", d / "out", opts());
    auto t = tree(d / "out");
    EXPECT_EQ(slurp(d / "out/x"), "second");
    EXPECT_EQ(t["y"], "777 -> x");
    EXPECT_EQ(slurp(d / "out/z"), "file now");
    EXPECT_EQ(t["w"], "755 dir");
    EXPECT_EQ(slurp(d / "out/w/in"), "inside");
    EXPECT_EQ(slurp(d / "out/x"), "second") << "writing through the replaced symlink";
}

TEST(Extract, TargetMustNotExist) {
    Dir d;
    writeTar(d / "a.tar", {file("f")});
    fs::create_directory(d / "out");
    spit(d / "out/keep", "mine");
    expectError([&] { extract(d / "a.tar", d / "out", opts()); }, MO_E_EXISTS,
                "extract into `" + d / "out" + "`: it already exists");
    EXPECT_EQ(slurp(d / "out/keep"), "mine");
}

TEST(Extract, EmptyLayers) {
    // Image configs with only ENV or CMD changes give layers of just the end-of-archive
    // blocks; some writers give an empty file.
    Dir d;
    spit(d / "end.tar", std::string(1024, '\0'));
    spit(d / "zero.tar", "");
    sh("gzip -c " + d / "end.tar > " + d / "end.tgz");
    for (auto name : {"end.tar", "zero.tar", "end.tgz"}) {
        SCOPED_TRACE(name);
        std::string out = d / (std::string("out-") + name);
        ExtractResult r = extract(d / name, out, opts());
        EXPECT_EQ(r.entries, 0u);
        EXPECT_TRUE(fs::is_empty(out));
        EXPECT_EQ(r.digest, sha256sum("cat " + d / name));
    }
    fs::create_directory(d / "emptydir");
    WriteResult w = writeTree(d / "emptydir", d / "empty-out.tar", {});
    EXPECT_EQ(fs::file_size(d / "empty-out.tar"), 1024u);
    EXPECT_EQ(extract(d / "empty-out.tar", d / "back", opts()).digest, w.digest);
}

TEST(Extract, NonAsciiNames) {
    Dir d;
    writeTar(d / "a.tar", {file("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac", "utf8")});
    extract(d / "a.tar", d / "out", opts());
    EXPECT_EQ(slurp(d / "out/caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac"), "utf8");
}

// --- hostile archives --------------------------------------------------------------------

TEST(Hostile, DotDotAnywhere) {
    expectRefused({file("../etc/passwd")}, "entry `../etc/passwd`: path climbs out of the root");
    expectRefused({file("ok"), file("a/../../x")},
                  "entry `a/../../x`: path climbs out of the root");
    expectRefused({dir("a/.."), file("x")}, "entry `a/../`: path climbs out of the root");
}

TEST(Hostile, AbsoluteNames) {
    expectRefused({file("/etc/passwd")}, "entry `/etc/passwd`: absolute paths are not allowed");
}

TEST(Hostile, SymlinkClimbingOut) {
    expectRefused({dir("a"), symlink("a/b", "../../../etc")},
                  "symlink `a/b` points outside the root: `../../../etc`");
    expectRefused({symlink("x", "../../..")}, "symlink `x` points outside the root: `../../..`");
    expectRefused({symlink("x", "a/../..")}, "symlink `x` points outside the root");
}

TEST(Hostile, AbsoluteSymlinkIsFollowedInsideTheRoot) {
    // `etc -> /victim` then `etc/passwd`: lands in the target's own /victim, never the host's.
    Dir d, victim;
    std::string inside = victim.path().substr(1); // the same path below the target
    writeTar(d / "a.tar", {dir(inside), symlink("etc", victim.path()), file("etc/passwd", "pwned"),
                           symlink("root", "/"), file("root/x", "root-relative")});
    extract(d / "a.tar", d / "out", opts());
    EXPECT_TRUE(fs::is_empty(victim.path()));
    EXPECT_EQ(slurp(d / "out" + victim.path() + "/passwd"), "pwned");
    EXPECT_EQ(slurp(d / "out/x"), "root-relative");
    EXPECT_EQ(tree(d / "out")["etc"], "777 -> " + victim.path());
}

TEST(Hostile, DanglingAbsoluteSymlinkIsNotFollowedToTheHost) {
    // The host has the directory, the target does not: refused, the host untouched.
    Dir d, victim;
    writeTar(d / "a.tar", {symlink("etc", victim.path()), file("etc/passwd", "pwned")});
    expectError([&] { extract(d / "a.tar", d / "out", opts()); }, -ENOENT,
                "entry `etc/passwd`: open `etc`");
    EXPECT_TRUE(fs::is_empty(victim.path()));
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, SymlinkedParentNeverLeavesTheRoot) {
    // A relative chain that only leaves through a symlink inside the root: `a -> .`,
    // `a/b -> ..` is lexically fine (a/b's parent is `a`), but resolves to the root's parent
    // on the host. RESOLVE_IN_ROOT clamps it to the root.
    Dir d;
    writeTar(d / "a.tar", {symlink("a", "."), symlink("a/b", ".."), file("a/b/escaped", "in")});
    extract(d / "a.tar", d / "out", opts());
    EXPECT_FALSE(fs::exists(d / "escaped"));
    EXPECT_EQ(slurp(d / "out/escaped"), "in");
}

TEST(Hostile, HardLinks) {
    expectRefused({hardlink("x", "/etc/passwd")},
                  "hard link `x` points outside the root: `/etc/passwd`");
    expectRefused({hardlink("x", "../etc/passwd")},
                  "hard link `x` points outside the root: `../etc/passwd`");
    expectRefused({hardlink("x", "etc/passwd")},
                  "hard link `x` names `etc/passwd`, which is not an earlier entry");
    // Through a symlink to the host's /etc: the target was never an entry itself.
    expectRefused({symlink("l", "/etc"), hardlink("x", "l/passwd")},
                  "hard link `x` names `l/passwd`, which is not an earlier entry");
    expectRefused({hardlink("x", "y"), file("y")}, "hard link `x` names `y`");
}

TEST(Hostile, DeviceNodesNeedAllowDevices) {
    E sda;
    sda.name = "dev/sda";
    sda.type = AE_IFBLK;
    sda.major = 8;
    E mem;
    mem.name = "dev/mem";
    mem.type = AE_IFCHR;
    mem.major = 1;
    mem.minor = 1;
    expectRefused({dir("dev"), sda},
                  "entry `dev/sda`: device nodes are not allowed (use --allow-devices)");
    expectRefused({mem}, "entry `dev/mem`: device nodes are not allowed (use --allow-devices)");
}

TEST(Hostile, EntryOverMaxSize) {
    ExtractOptions o = opts();
    o.maxEntrySize = 1000;
    expectRefused({file("small", std::string(1000, 's')), file("big", std::string(2000, 'b'))},
                  "entry `big`: 2000 bytes is over the limit of 1000 bytes per entry", o);
}

TEST(Hostile, EntryLargerThanFreeSpace) {
    // A header claiming 1 EiB, and nothing after it: refused from the header alone.
    Dir d;
    E huge = file("huge", "");
    huge.size = int64_t(1) << 60;
    writeTar(d / "a.tar", {file("ok"), huge}, true);
    expectError([&] { extract(d / "a.tar", d / "out", opts()); }, -ENOSPC,
                "entry `huge`: 1152921504606846976 bytes do not fit in the ");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, TruncatedTar) {
    Dir d;
    writeTar(d / "a.tar", {file("first", "1"), file("second", std::string(100000, 'z'))});
    fs::resize_file(d / "a.tar", 40000);
    expectError([&] { extract(d / "a.tar", d / "out", opts()); }, MO_E_INVALID,
                "entry `second`: corrupt or truncated archive");
    EXPECT_FALSE(fs::exists(d / "out"));

    writeTar(d / "b.tar", {file("first", "1"), file("second", "2")}, true);
    expectError([&] { extract(d / "b.tar", d / "out", opts()); }, MO_E_INVALID,
                "corrupt or truncated archive");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, TruncatedGzip) {
    Dir d;
    writeTar(d / "a.tar", {file("first", "1"), file("second", std::string(100000, 'z'))});
    sh("gzip -c " + d / "a.tar > " + d / "a.tgz");
    fs::resize_file(d / "a.tgz", fs::file_size(d / "a.tgz") - 20);
    expectError([&] { extract(d / "a.tgz", d / "out", opts()); }, MO_E_INVALID,
                "entry `second`: corrupt or truncated archive: gzip: unexpected end of file");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, GzipCrcMismatch) {
    // The data inflates, the trailer's CRC does not match (libarchive alone would accept it).
    Dir d;
    std::string noise(3 << 20, '\0');
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
    writeTar(d / "a.tar", {file("big", noise), file("last", "payload")});
    sh("gzip -c " + d / "a.tar > " + d / "a.tgz");
    std::string bytes = slurp(d / "a.tgz");
    bytes[bytes.size() - 8] ^= 0x55;
    spit(d / "a.tgz", bytes);
    expectError([&] { extract(d / "a.tgz", d / "out", opts()); }, MO_E_INVALID,
                "after entry `last`: corrupt or truncated archive: gzip: incorrect data check");
    EXPECT_FALSE(fs::exists(d / "out"));
    // A small archive inflates in one block: the same, naming its only entry.
    writeTar(d / "b.tar", {file("only", "payload")});
    sh("gzip -c " + d / "b.tar > " + d / "b.tgz");
    bytes = slurp(d / "b.tgz");
    bytes[bytes.size() - 8] ^= 0x55;
    spit(d / "b.tgz", bytes);
    expectError([&] { extract(d / "b.tgz", d / "out", opts()); }, MO_E_INVALID,
                "after entry `only`: corrupt or truncated archive: gzip: incorrect data check");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, CorruptZstdXzBzip2) {
    Dir d;
    std::string noise(1 << 20, '\0');
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
    writeTar(d / "a.tar", {file("one", noise), file("two", noise)});
    for (std::string tool : {"zstd -q", "xz", "bzip2"}) {
        SCOPED_TRACE(tool);
        sh(tool + " -c " + d / "a.tar > " + d / "a.z");
        std::string bytes = slurp(d / "a.z");
        for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 16; ++i) bytes[i] ^= 0xa5;
        spit(d / "a.z", bytes);
        expectError([&] { extract(d / "a.z", d / "out", opts()); }, MO_E_INVALID,
                    "corrupt or truncated archive");
        EXPECT_FALSE(fs::exists(d / "out"));
    }
}

TEST(Hostile, CorruptGzipData) {
    Dir d;
    std::string noise(200000, '\0');
    for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
    writeTar(d / "a.tar", {file("one", noise), file("two", noise)});
    sh("gzip -c " + d / "a.tar > " + d / "a.tgz");
    std::string bytes = slurp(d / "a.tgz");
    for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 64; ++i) bytes[i] ^= 0xa5;
    spit(d / "a.tgz", bytes);
    expectError([&] { extract(d / "a.tgz", d / "out", opts()); }, MO_E_INVALID,
                "corrupt or truncated archive");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, NotATar) {
    Dir d;
    spit(d / "junk", std::string(5000, 'j'));
    expectError([&] { extract(d / "junk", d / "out", opts()); }, MO_E_INVALID,
                "corrupt or truncated archive");
    EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(Hostile, OverlongNames) {
    std::string longPath;
    while (longPath.size() < PATH_MAX) longPath += "abcdefghij/";
    longPath += "f";
    expectRefused({file(longPath)}, "name longer than PATH_MAX (4096)");
    expectRefused({file("d/" + std::string(NAME_MAX + 1, 'n'))},
                  "component longer than NAME_MAX (255)");
}

TEST(Hostile, WhiteoutsRefusedInPlainArchives) {
    expectRefused({dir("a"), file("a/.wh.b", "")},
                  "entry `a/.wh.b`: whiteout entries are not allowed in this archive");
    expectRefused({file(".wh..wh..opq", "")}, "whiteout entries are not allowed");
}

TEST(Hostile, WhiteoutOfDotDot) {
    ExtractOptions o = opts(Whiteouts::Apply);
    expectRefused({dir("a"), file("a/.wh...", "")}, "entry `a/.wh...`: whiteout of no valid name",
                  o);
    expectRefused({file(".wh..", "")}, "whiteout of no valid name", o);
}

// --- layers ------------------------------------------------------------------------------

TEST(Layers, ApplyWhiteoutsAndOpaqueDirectories) {
    Dir d;
    writeTar(d / "1.tar", {dir("a"), file("a/f1", "1"), file("a/f2", "2"), dir("d"),
                           file("d/old", "old"), dir("d/sub"), file("d/sub/deep", "deep"),
                           file("keep", "keep"), dir("gone"), file("gone/x")});
    writeTar(d / "2.tar", {file("a/.wh.f1", ""), dir("d"), file("d/.wh..wh..opq", ""),
                           file("d/new", "new"), file(".wh.gone", ""), file(".wh.never-was", "")});
    // The opaque marker after entries of its own layer, and an implicit parent (e/x/y).
    writeTar(d / "3.tar", {file("d/new2", "new2"), file("e/x/y", "y"), dir("d/sub"),
                           file("d/sub/fresh", "fresh"), file("d/.wh..wh..opq", ""),
                           file("d/.wh..wh..opq", "")});
    fs::create_directory(d / "root");
    ExtractOptions o = opts(Whiteouts::Apply);
    o.createTarget = false;
    for (auto layer : {"1.tar", "2.tar"}) extract(d / layer, d / "root", o);
    auto t = tree(d / "root");
    std::vector<std::string> after2 = {"a", "a/f2", "d", "d/new", "keep"};
    EXPECT_EQ(names(t), after2);

    extract(d / "3.tar", d / "root", o);
    std::vector<std::string> after3 = {"a",           "a/f2", "d",   "d/new2", "d/sub",
                                       "d/sub/fresh", "e",    "e/x", "e/x/y",  "keep"};
    EXPECT_EQ(names(tree(d / "root")), after3);
}

TEST(Layers, AufsMetadataIsSkipped) {
    Dir d;
    writeTar(d / "a.tar", {file("f"), dir(".wh..wh.plnk"), file(".wh..wh.plnk/123.456", ""),
                           file("a/.wh..wh.aufs", "")});
    extract(d / "a.tar", d / "out", opts(Whiteouts::Apply));
    EXPECT_EQ(names(tree(d / "out")), std::vector<std::string>{"f"});
}

// --- writing -----------------------------------------------------------------------------

void makeSampleTree(const std::string &root) {
    fs::create_directories(root + "/usr/bin");
    fs::create_directories(root + "/etc/empty.d");
    std::string big(3 << 20, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 31) ^ (i >> 11));
    spit(root + "/usr/bin/tool", big);
    ::chmod((root + "/usr/bin/tool").c_str(), 0755);
    spit(root + "/etc/conf", "a=b\n");
    ::chmod((root + "/etc/conf").c_str(), 0640);
    spit(root + "/empty", "");
    ::link((root + "/etc/conf").c_str(), (root + "/etc/conf.bak").c_str());
    ::symlink("/usr/bin/tool", (root + "/usr/bin/alias").c_str());
    ::symlink("../../nowhere", (root + "/usr/bin/dangling").c_str());
    ::mkfifo((root + "/fifo").c_str(), 0600);
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s/sock", root.c_str());
    ::bind(s, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
    ::close(s);
    spit(root + "/caf\xc3\xa9", "utf8");
    timespec t[2] = {{1500000000, 0}, {1500000000, 123456789}};
    for (auto p : {"/usr/bin/tool", "/etc", "/usr", "/etc/conf", "/caf\xc3\xa9"})
        ::utimensat(AT_FDCWD, (root + p).c_str(), t, AT_SYMLINK_NOFOLLOW);
    ::utimensat(AT_FDCWD, (root + "/usr/bin/alias").c_str(), t, AT_SYMLINK_NOFOLLOW);
}

TEST(WriteTree, RoundTripsInEveryCompression) {
    Dir d;
    makeSampleTree(d / "src");
    auto source = tree(d / "src", true);
    source.erase("sock");
    struct Variant {
        Compression c;
        const char *cat, *name;
    };
    for (auto v :
         {Variant{Compression::None, "cat", "none"}, Variant{Compression::Gzip, "zcat", "gzip"},
          Variant{Compression::Zstd, "zstdcat", "zstd"}, Variant{Compression::Xz, "xzcat", "xz"}}) {
        SCOPED_TRACE(v.name);
        std::string out = d / (std::string("layer.") + v.name);
        WriteOptions w;
        w.compression = v.c;
        uint64_t progressed = 0;
        w.progress = [&](uint64_t n) { progressed = n; };
        WriteResult r = writeTree(d / "src", out, w);
        EXPECT_EQ(r.digest, sha256sum("cat " + out));
        EXPECT_EQ(r.diffId, sha256sum(std::string(v.cat) + " " + out));
        EXPECT_EQ(r.size, fs::file_size(out));
        EXPECT_EQ(progressed, r.size);

        std::string back = d / (std::string("back.") + v.name);
        ExtractResult x = extract(out, back, opts());
        EXPECT_EQ(x.digest, r.digest);
        EXPECT_EQ(x.diffId, r.diffId);
        auto got = tree(back, true);
        got.erase(""); // no root entry
        EXPECT_EQ(got, source);
        struct stat a, b;
        ::lstat((back + "/etc/conf").c_str(), &a);
        ::lstat((back + "/etc/conf.bak").c_str(), &b);
        EXPECT_EQ(a.st_ino, b.st_ino) << "hard link kept";
    }
    // Nothing but the outputs in the directory: no temporary files.
    size_t files = 0;
    for (auto &e : fs::directory_iterator(d.path())) files += e.is_regular_file();
    EXPECT_EQ(files, 4u);
}

TEST(WriteTree, SortedRelativeAndReproducible) {
    Dir d;
    makeSampleTree(d / "src");
    WriteOptions w;
    w.compression = Compression::Gzip;
    WriteResult a = writeTree(d / "src", d / "a.tgz", w);
    WriteResult b = writeTree(d / "src", d / "b.tgz", w);
    EXPECT_EQ(a.digest, b.digest);
    std::string gz = slurp(d / "a.tgz");
    EXPECT_EQ(gz.substr(4, 4), std::string(4, '\0')) << "no wall-clock time in the gzip header";
    std::string listing = sh("tar -tzf " + d / "a.tgz");
    EXPECT_EQ(listing,
              "caf\xc3\xa9\nempty\netc/\netc/conf\netc/conf.bak\netc/empty.d/\nfifo\nusr/\n"
              "usr/bin/\nusr/bin/alias\nusr/bin/dangling\nusr/bin/tool\n");
    std::string verbose = sh("tar -tvzf " + d / "a.tgz" + " --numeric-owner");
    EXPECT_NE(verbose.find("etc/conf.bak link to etc/conf"), std::string::npos) << verbose;
    EXPECT_NE(verbose.find("usr/bin/alias -> /usr/bin/tool"), std::string::npos) << verbose;
}

TEST(WriteTree, RootEntryCarriesTheSourceDirectory) {
    Dir d;
    fs::create_directory(d / "src");
    spit(d / "src/f", "x");
    ::chmod((d / "src").c_str(), 0711);
    WriteOptions w;
    w.rootEntry = true;
    writeTree(d / "src", d / "a.tar", w);
    EXPECT_EQ(sh("tar -tf " + d / "a.tar"), "./\nf\n");
    extract(d / "a.tar", d / "back", opts());
    struct stat st;
    ::stat((d / "back").c_str(), &st);
    EXPECT_EQ(st.st_mode & 07777, 0711u);
}

TEST(WriteTree, FailureLeavesNothing) {
    Dir d;
    makeSampleTree(d / "src");
    expectError([&] { writeTree(d / "missing", d / "out.tar", {}); }, -ENOENT,
                "read `" + d / "missing" + "`");
    expectError([&] { writeTree(d / "src", d / "nodir/out.tar", {}); }, -ENOENT,
                "write `" + d / "nodir/out.tar" + "`");
    WriteOptions w;
    w.progress = [](uint64_t n) {
        if (n > (1 << 20)) throw sdk::Error(MO_E_STATE, "stopped by the caller");
    };
    expectError([&] { writeTree(d / "src", d / "out.tar", w); }, MO_E_STATE,
                "stopped by the caller");
    std::vector<std::string> left;
    for (auto &e : fs::directory_iterator(d.path())) left.push_back(e.path().filename());
    EXPECT_EQ(left, std::vector<std::string>{"src"});
}

TEST(WriteTree, OutputInsideTheSourceIsSkipped) {
    Dir d;
    spit(d / "f", "x");
    writeTree(d.path(), d / "self.tar", {});
    EXPECT_EQ(sh("tar -tf " + d / "self.tar"), "f\n");
}

TEST(ArchiveWriter, BuildsEntryByEntry) {
    Dir d;
    spit(d / "blob", std::string(100000, 'q'));
    WriteResult r;
    {
        ArchiveWriter w(d / "image.tar", Compression::None);
        w.addDirectory("blobs");
        w.addDirectory("blobs/sha256");
        w.addFile("blobs/sha256/abc", d / "blob");
        w.addBytes("index.json", "{}", 0600);
        w.addBytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
        w.commit();
        r = w.result();
    }
    EXPECT_EQ(r.digest, sha256sum("cat " + d / "image.tar"));
    EXPECT_EQ(r.size, fs::file_size(d / "image.tar"));
    std::string verbose = sh("tar -tvf " + d / "image.tar" + " --numeric-owner");
    EXPECT_NE(verbose.find("-rw------- 0/0               2 1970-01-01 00:00 index.json"),
              std::string::npos)
        << verbose;
    EXPECT_EQ(sh("tar -tf " + d / "image.tar"),
              "blobs/\nblobs/sha256/\nblobs/sha256/abc\nindex.json\noci-layout\n");
    EXPECT_EQ(sh("tar -xOf " + d / "image.tar" + " blobs/sha256/abc"), std::string(100000, 'q'));

    {
        ArchiveWriter w(d / "abandoned.tar.gz", Compression::Gzip);
        w.addBytes("x", "y");
    }
    std::vector<std::string> left;
    for (auto &e : fs::directory_iterator(d.path())) left.push_back(e.path().filename());
    std::sort(left.begin(), left.end());
    EXPECT_EQ(left, (std::vector<std::string>{"blob", "image.tar"}));
    expectError([&] { ArchiveWriter(d / "x.tar", Compression::None).addBytes("/abs", ""); },
                MO_E_INVALID, "archive entry `/abs`: not a relative name");
}

} // namespace
} // namespace mobileops::storage
