// Manifests of real temporary trees: what a scan records, what compare() names, the Merkle
// root, the JSON form, overlay merges and drift, and that a scan never reads outside its root.
#include "Hash.h"
#include "Manifest.h"
#include "Walk.h"

#include "TestUtil.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

namespace mobileops::integrity {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// A small tree with one of everything an unprivileged user can make.
void populate(const TempDir &dir) {
    dir.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    dir.file("etc/hostname", "box\n");
    dir.file("bin/tool", std::string(300 * 1024, 'x')); // more than one read chunk
    dir.file("a b", "space\n");
    dir.file("a/b", "nested\n");
    dir.file("empty", "");
    fs::create_directories(dir.path() + "/var/empty");
    fs::create_symlink("../etc/passwd", dir.path() + "/bin/passwd-link");
    ASSERT_EQ(::mkfifo((dir.path() + "/fifo").c_str(), 0600), 0);
    ::chmod((dir.path() + "/bin/tool").c_str(), 0755);
}

const Change *changeAt(const Diff &d, const std::string &path) {
    for (const auto &c : d.modified)
        if (c.path == path) return &c;
    return nullptr;
}

int codeOf(const std::function<void()> &f) {
    try {
        f();
    } catch (const sdk::Error &e) {
        return e.code();
    }
    return 0;
}

std::string messageOf(const std::function<void()> &f) {
    try {
        f();
    } catch (const std::exception &e) {
        return e.what();
    }
    return "";
}

std::vector<std::string> paths(const Manifest &m) {
    std::vector<std::string> out;
    for (const auto &e : m.entries) out.push_back(e.path);
    return out;
}

Entry make(const std::string &path, EntryType type, std::string digest = "") {
    Entry e;
    e.path = path;
    e.type = type;
    e.mode = type == EntryType::Directory ? 0755 : 0644;
    if (type == EntryType::File) {
        e.size = digest.size();
        e.digest = sha256Hex(digest);
    }
    return e;
}

Manifest layer(std::vector<Entry> entries) {
    Manifest m;
    m.entries = std::move(entries);
    computeTree(m);
    return m;
}

// IN_OPEN / IN_ACCESS events on a file, so a test can prove the scan never touched it.
class Watch {
public:
    explicit Watch(const std::string &path) : _fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
        EXPECT_GE(::inotify_add_watch(_fd.fd, path.c_str(), IN_OPEN | IN_ACCESS), 0);
    }
    bool touched() const {
        alignas(inotify_event) char buf[4096];
        return ::read(_fd.fd, buf, sizeof buf) > 0;
    }

private:
    common::Fd _fd;
};

TEST(Manifest, RecordsEveryTypeWithItsMetadata) {
    TempDir dir;
    populate(dir);
    Manifest m = scan(dir.path());
    EXPECT_EQ(paths(m),
              (std::vector<std::string>{"/", "/a", "/a/b", "/a b", "/bin", "/bin/passwd-link",
                                        "/bin/tool", "/empty", "/etc", "/etc/hostname",
                                        "/etc/passwd", "/fifo", "/var", "/var/empty"}));
    const Entry *tool = m.find("/bin/tool");
    ASSERT_TRUE(tool);
    EXPECT_EQ(tool->type, EntryType::File);
    EXPECT_EQ(tool->mode, 0755u);
    EXPECT_EQ(tool->uid, ::getuid());
    EXPECT_EQ(tool->size, 300u * 1024);
    EXPECT_EQ(tool->digest, sha256Hex(std::string(300 * 1024, 'x')));
    EXPECT_EQ(m.find("/empty")->digest, sha256Hex(""));
    const Entry *link = m.find("/bin/passwd-link");
    EXPECT_EQ(link->type, EntryType::Symlink);
    EXPECT_EQ(link->target, "../etc/passwd");
    EXPECT_EQ(link->digest, "");
    EXPECT_EQ(m.find("/fifo")->type, EntryType::Fifo);
    EXPECT_EQ(m.find("/var/empty")->type, EntryType::Directory);
    EXPECT_EQ(m.files, 6u);
    EXPECT_EQ(m.bytes, 300u * 1024 + 30 + 4 + 6 + 7);
    EXPECT_EQ(m.root, m.entries.front().node);
    EXPECT_EQ(m.find("/nope"), nullptr);
}

TEST(Manifest, OneByteChangedIsContent) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path());
    std::fstream f(dir.path() + "/bin/tool", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200 * 1024);
    f.put('y');
    f.close();
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    const Change *c = changeAt(d, "/bin/tool");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->what, std::vector<std::string>{"content"});
    EXPECT_EQ(c->before["digest"], before.find("/bin/tool")->digest);
    EXPECT_EQ(d.first(5), std::vector<std::string>{"/bin/tool (content)"});
    EXPECT_FALSE(d.clean());
}

TEST(Manifest, OneModeBitIsMode) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path());
    ::chmod((dir.path() + "/etc/passwd").c_str(), 0645);
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].path, "/etc/passwd");
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"mode"});
    EXPECT_EQ(d.modified[0].before, (nlohmann::json{{"mode", "0644"}}));
    EXPECT_EQ(d.modified[0].after, (nlohmann::json{{"mode", "0645"}}));
}

TEST(Manifest, AddedAndRemovedFiles) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path());
    dir.file("etc/new", "n\n");
    fs::remove(dir.path() + "/etc/hostname");
    Diff d = compare(before, scan(dir.path()));
    EXPECT_EQ(d.added, std::vector<std::string>{"/etc/new"});
    EXPECT_EQ(d.removed, std::vector<std::string>{"/etc/hostname"});
    // The directory's own metadata (mode, owner) did not change; only its children did.
    EXPECT_TRUE(d.modified.empty());
    EXPECT_EQ(d.first(5),
              (std::vector<std::string>{"/etc/hostname (removed)", "/etc/new (added)"}));
    EXPECT_EQ(d.toJson()["added"], nlohmann::json::array({"/etc/new"}));
    EXPECT_EQ(d.toJson()["clean"], false);
}

TEST(Manifest, SymlinkTargetSwappedIsLink) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path());
    fs::remove(dir.path() + "/bin/passwd-link");
    fs::create_symlink("/etc/shadow", dir.path() + "/bin/passwd-link");
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"link"});
    EXPECT_EQ(d.modified[0].before["target"], "../etc/passwd");
    EXPECT_EQ(d.modified[0].after["target"], "/etc/shadow");
}

TEST(Manifest, TypeChangeIsTypeAndItsChildrenAreAdded) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path());
    fs::remove(dir.path() + "/empty");
    dir.file("empty/inside", "i");
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.modified.size(), 1u);
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"type"});
    EXPECT_EQ(d.modified[0].before["type"], "file");
    EXPECT_EQ(d.modified[0].after["type"], "dir");
    EXPECT_EQ(d.added, std::vector<std::string>{"/empty/inside"});
}

TEST(Manifest, SizeChangeIsSizeAndContentEvenWithoutDigests) {
    TempDir dir;
    populate(dir);
    Manifest before = scan(dir.path(), {.threads = 1, .content = false, .progress = {}});
    EXPECT_EQ(before.find("/etc/passwd")->digest, "");
    dir.file("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].what, (std::vector<std::string>{"content", "size"}));
    EXPECT_EQ(d.modified[0].before["digest"], nullptr);
}

TEST(Manifest, XattrChangeIsXattrs) {
    TempDir dir;
    populate(dir);
    const std::string file = dir.path() + "/etc/passwd";
    if (::setxattr(file.c_str(), "user.origin", "a", 1, 0) != 0)
        GTEST_SKIP() << "no user.* extended attributes on " << dir.path();
    Manifest before = scan(dir.path());
    EXPECT_EQ(before.find("/etc/passwd")->xattrs.size(), 64u);
    ::setxattr(file.c_str(), "user.origin", "b", 1, 0);
    Diff d = compare(before, scan(dir.path()));
    ASSERT_EQ(d.count(), 1u);
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"xattrs"});
    ::removexattr(file.c_str(), "user.origin");
    EXPECT_EQ(scan(dir.path()).find("/etc/passwd")->xattrs, "");
}

TEST(Manifest, EqualTreesHaveEqualRootsAndAnyChangeMovesTheRoot) {
    TempDir one, two;
    populate(one);
    populate(two);
    Manifest a = scan(one.path());
    Manifest b = scan(two.path());
    ASSERT_EQ(a.root, b.root);
    EXPECT_TRUE(compare(a, b).clean());

    {
        two.file("a/b", "nested!\n");
        Manifest c = scan(two.path());
        EXPECT_NE(c.root, a.root);
        // Every directory above the change moves, its siblings do not.
        EXPECT_NE(c.find("/a")->node, a.find("/a")->node);
        EXPECT_NE(c.find("/a/b")->node, a.find("/a/b")->node);
        EXPECT_EQ(c.find("/etc")->node, a.find("/etc")->node);
        EXPECT_EQ(c.find("/a b")->node, a.find("/a b")->node);
    }
    // A rename keeps every content but still changes the root.
    two.file("a/b", "nested\n");
    ASSERT_EQ(scan(two.path()).root, a.root);
    fs::rename(two.path() + "/etc/hostname", two.path() + "/etc/hostnamf");
    EXPECT_NE(scan(two.path()).root, a.root);
}

TEST(Manifest, EveryFieldIsInTheRoot) {
    Manifest base = layer({make("/", EntryType::Directory), make("/f", EntryType::File, "x")});
    std::vector<std::function<void(Entry &)>> edits = {
        [](Entry &e) { e.mode ^= 1; },
        [](Entry &e) { e.uid = 1; },
        [](Entry &e) { e.gid = 1; },
        [](Entry &e) { e.size += 1; },
        [](Entry &e) { e.digest[0] ^= 1; },
        [](Entry &e) { e.xattrs = sha256Hex("x"); },
        [](Entry &e) { e.type = EntryType::Fifo; },
    };
    for (size_t i = 0; i < edits.size(); ++i) {
        Manifest m = base;
        edits[i](m.entries[1]);
        computeTree(m);
        EXPECT_NE(m.root, base.root) << "edit " << i;
    }
    Manifest link = layer({make("/", EntryType::Directory), make("/l", EntryType::Symlink)});
    Manifest other = link;
    other.entries[1].target = "x";
    computeTree(other);
    EXPECT_NE(other.root, link.root);
    Manifest opaque = link;
    opaque.entries[0].opaque = true;
    computeTree(opaque);
    EXPECT_NE(opaque.root, link.root);
}

TEST(Manifest, ThreadCountsGiveTheSameManifest) {
    TempDir dir;
    populate(dir);
    for (int i = 0; i < 200; ++i) dir.file("many/f" + std::to_string(i), std::to_string(i));
    Manifest one = scan(dir.path(), {.threads = 1, .content = true, .progress = {}});
    Manifest two = scan(dir.path(), {.threads = 2, .content = true, .progress = {}});
    Manifest eight = scan(dir.path(), {.threads = 8, .content = true, .progress = {}});
    EXPECT_EQ(one.entries, two.entries);
    EXPECT_EQ(one.entries, eight.entries);
    EXPECT_EQ(one.root, eight.root);
}

TEST(Manifest, ProgressEndsWithTheTotals) {
    TempDir dir;
    populate(dir);
    uint64_t lastBytes = 0, lastFiles = 0;
    int calls = 0;
    Manifest m =
        scan(dir.path(), {.threads = 2, .content = true, .progress = [&](uint64_t b, uint64_t f) {
                              ++calls;
                              EXPECT_GE(b, lastBytes);
                              EXPECT_GE(f, lastFiles);
                              lastBytes = b;
                              lastFiles = f;
                          }});
    EXPECT_GE(calls, 1);
    EXPECT_EQ(lastBytes, m.bytes);
    EXPECT_EQ(lastFiles, m.files);
}

TEST(Manifest, AFileIsAManifestOfOneEntry) {
    TempDir dir;
    const std::string file = dir.file("asset.bin", "payload");
    Manifest m = scan(file);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].path, "/");
    EXPECT_EQ(m.entries[0].type, EntryType::File);
    EXPECT_EQ(m.entries[0].digest, sha256Hex("payload"));
    EXPECT_EQ(m.files, 1u);
    EXPECT_EQ(Manifest::fromJson(m.toJson()).root, m.root);
}

TEST(Manifest, BadRootsAreNamed) {
    TempDir dir;
    EXPECT_EQ(codeOf([&] { scan(dir.path() + "/missing"); }), MO_E_NOT_FOUND);
    EXPECT_NE(messageOf([&] { scan(dir.path() + "/missing"); }).find("/missing`"),
              std::string::npos);
    ASSERT_EQ(::mkfifo((dir.path() + "/fifo").c_str(), 0600), 0);
    EXPECT_EQ(codeOf([&] { scan(dir.path() + "/fifo"); }), MO_E_INVALID);
}

TEST(Manifest, PathOrderIsComponentWise) {
    TempDir dir;
    for (const char *name : {"a b", "a-b", "a.b", "a/b c", "a0", "ab", "a/b/c/d"})
        dir.file(name, "x");
    std::vector<std::string> expected = {"/",    "/a",   "/a/b", "/a/b/c", "/a/b/c/d", "/a/b c",
                                         "/a b", "/a-b", "/a.b", "/a0",    "/ab"};
    Manifest m = scan(dir.path());
    EXPECT_EQ(paths(m), expected);
    // computeTree sorts a shuffled manifest into the same order and root.
    Manifest shuffled = m;
    std::mt19937 rng(7);
    std::shuffle(shuffled.entries.begin(), shuffled.entries.end(), rng);
    computeTree(shuffled);
    EXPECT_EQ(paths(shuffled), expected);
    EXPECT_EQ(shuffled.root, m.root);
}

TEST(Manifest, TreeShapeIsChecked) {
    EXPECT_EQ(codeOf([] { layer({make("/a", EntryType::File, "x")}); }), MO_E_INVALID);
    EXPECT_NE(messageOf([] {
                  layer({make("/", EntryType::Directory), make("/a/b", EntryType::File, "x")});
              }).find("`/a/b`"),
              std::string::npos);
    EXPECT_EQ(codeOf([] {
                  layer({make("/", EntryType::Directory), make("/f", EntryType::File, "x"),
                         make("/f/g", EntryType::File, "y")});
              }),
              MO_E_INVALID);
    EXPECT_EQ(codeOf([] {
                  layer({make("/", EntryType::Directory), make("/f", EntryType::File, "x"),
                         make("/f", EntryType::File, "x")});
              }),
              MO_E_INVALID);
    EXPECT_EQ(codeOf([] {
                  layer({make("/", EntryType::Directory), make("/../x", EntryType::File)});
              }),
              MO_E_INVALID);
}

// The stored entries as rows of fields, and back (docs: Manifest::toJson).
using Rows = std::vector<std::vector<std::string>>;

Rows rowsOf(const nlohmann::json &doc) {
    Rows rows;
    std::istringstream in(doc["entries"].get<std::string>());
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> fields;
        size_t start = 0;
        for (size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1)
            fields.push_back(line.substr(start, tab - start));
        fields.push_back(line.substr(start));
        rows.push_back(fields);
    }
    return rows;
}

void setRows(nlohmann::json &doc, const Rows &rows) {
    std::string text;
    for (const auto &fields : rows) {
        for (size_t i = 0; i < fields.size(); ++i) text += (i ? "\t" : "") + fields[i];
        text += '\n';
    }
    doc["entries"] = text;
}

TEST(Manifest, JsonRoundTrip) {
    TempDir dir;
    populate(dir);
    // names that collide with the stored form's separators and escapes
    std::ofstream(dir.path() + "/tab\there") << "t";
    std::ofstream(dir.path() + "/line\nbreak%0a") << "n";
    fs::create_symlink("to\tthe%25\nend", dir.path() + "/odd-link");
    Manifest m = scan(dir.path());
    nlohmann::json doc = m.toJson();
    EXPECT_EQ(doc["algorithm"], "sha256");
    EXPECT_EQ(rowsOf(doc)[0].size(), 11u);
    Manifest back = Manifest::fromJson(nlohmann::json::parse(doc.dump()));
    EXPECT_EQ(back.entries, m.entries);
    EXPECT_EQ(back.root, m.root);
    EXPECT_EQ(back.files, m.files);
    EXPECT_EQ(back.bytes, m.bytes);
    ASSERT_NE(back.find("/line\nbreak%0a"), nullptr);
    EXPECT_EQ(back.find("/odd-link")->target, "to\tthe%25\nend");
}

TEST(Manifest, TamperedJsonIsRejectedNamingTheEntry) {
    TempDir dir;
    populate(dir);
    const nlohmann::json doc = scan(dir.path()).toJson();
    const Rows rows = rowsOf(doc);
    auto index = [&](const std::string &path) {
        for (size_t i = 0; i < rows.size(); ++i)
            if (rows[i][0] == path) return i;
        return size_t(0);
    };
    const size_t passwd = index("/etc/passwd");
    auto reject = [&](const std::function<void(Rows &)> &edit,
                      const std::function<void(nlohmann::json &)> &editDoc = {}) {
        nlohmann::json bad = doc;
        Rows r = rows;
        edit(r);
        setRows(bad, r);
        if (editDoc) editDoc(bad);
        try {
            Manifest::fromJson(bad);
        } catch (const sdk::Error &e) {
            return std::make_pair(e.code(), std::string(e.what()));
        }
        return std::make_pair(0, std::string("accepted"));
    };
    auto none = [](Rows &) {};

    // A changed digest no longer hashes to the recorded root.
    auto [code, msg] = reject([&](Rows &r) { r[passwd][8] = sha256Hex("evil"); });
    EXPECT_EQ(code, MO_E_STATE) << msg;
    EXPECT_NE(msg.find("root"), std::string::npos) << msg;
    // ... unless the root is recomputed too, which is what a signature is for.
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][8] = "abc"; });
    EXPECT_EQ(code, MO_E_INVALID);
    EXPECT_NE(msg.find("(`/etc/passwd`): digest `abc`"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][2] = "10000"; });
    EXPECT_NE(msg.find("`/etc/passwd`): mode"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][1] = "door"; });
    EXPECT_NE(msg.find("`door`"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][3] = "-1"; });
    EXPECT_NE(msg.find("uid `-1`"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd].pop_back(); });
    EXPECT_NE(msg.find("manifest entry " + std::to_string(passwd)), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { std::swap(r[1], r[2]); });
    EXPECT_NE(msg.find("out of order"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r.insert(r.begin() + 2, r[2]); });
    EXPECT_NE(msg.find("duplicate"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][7] = "/x"; });
    EXPECT_NE(msg.find("only a symlink has a target"), std::string::npos) << msg;
    std::tie(code, msg) = reject([&](Rows &r) { r[passwd][0] = "/etc/pass%zzwd"; });
    EXPECT_NE(msg.find("bad escape in the path"), std::string::npos) << msg;
    std::tie(code, msg) = reject(none, [](nlohmann::json &d) {
        d["entries"] = d["entries"].get<std::string>() + "/z\tfile";
    });
    EXPECT_NE(msg.find("the last line has no end"), std::string::npos) << msg;
    std::tie(code, msg) = reject(none, [](nlohmann::json &d) { d["files"] = 1; });
    EXPECT_NE(msg.find("files `1`"), std::string::npos) << msg;
    std::tie(code, msg) = reject(none, [](nlohmann::json &d) { d["algorithm"] = "md5"; });
    EXPECT_NE(msg.find("`md5`"), std::string::npos) << msg;
    std::tie(code, msg) = reject(none, [](nlohmann::json &d) { d.erase("root"); });
    EXPECT_NE(msg.find("missing `root`"), std::string::npos) << msg;
    EXPECT_EQ(code, MO_E_INVALID);
}

TEST(Manifest, SymlinksOutsideTheTreeAreRecordedNotFollowed) {
    TempDir dir, outside;
    const std::string secret = outside.file("secret", "do not read");
    fs::create_symlink(secret, dir.path() + "/abs");
    fs::create_symlink("../../../../../../" + secret, dir.path() + "/rel");
    fs::create_symlink(outside.path(), dir.path() + "/dir");
    Watch watch(secret);
    Manifest m = scan(dir.path());
    EXPECT_EQ(paths(m), (std::vector<std::string>{"/", "/abs", "/dir", "/rel"}));
    EXPECT_EQ(m.find("/abs")->target, secret);
    EXPECT_EQ(m.find("/dir")->type, EntryType::Symlink);
    EXPECT_EQ(m.files, 0u);
    EXPECT_FALSE(watch.touched());
    // The watch does see a read of the secret.
    std::ifstream(secret).get();
    EXPECT_TRUE(watch.touched());
}

// The race a scan must survive: between the walk finding a regular file and a worker
// opening it, the file becomes a symlink to a secret (or its directory becomes one). The
// worker must fail naming the path and never open the secret.
TEST(Manifest, AFileSwappedForASymlinkAfterTheWalkIsNeverRead) {
    TempDir dir, outside;
    dir.file("etc/shadow", "mine");
    dir.file("etc/passwd", "mine");
    const std::string secret = outside.file("etc/shadow", "secret");
    outside.file("etc/passwd", "secret");
    common::Fd root(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));

    for (const bool swapDirectory : {false, true}) {
        std::vector<std::tuple<size_t, std::string, uint64_t, uint64_t>> found;
        Walker walker(
            root.fd, dir.path(),
            [&](size_t entry, const std::string &path, uint64_t dev, uint64_t ino) {
                found.emplace_back(entry, path, dev, ino);
            },
            nullptr);
        walker.run();
        ASSERT_EQ(found.size(), 2u);
        if (swapDirectory) {
            fs::rename(dir.path() + "/etc", dir.path() + "/etc.old");
            fs::create_symlink(outside.path() + "/etc", dir.path() + "/etc");
        } else {
            fs::remove(dir.path() + "/etc/shadow");
            fs::create_symlink(secret, dir.path() + "/etc/shadow");
        }
        Watch watch(secret);
        ProgressMeter meter(nullptr);
        HashQueue queue(root.fd, dir.path(), 2, meter);
        for (auto &[entry, path, dev, ino] : found) queue.push(entry, path, dev, ino);
        try {
            queue.finish();
            ADD_FAILURE() << "hashed a swapped file";
        } catch (const sdk::Error &e) {
            EXPECT_EQ(e.code(), MO_E_STATE);
            EXPECT_NE(std::string(e.what()).find(dir.path() + "/etc/"), std::string::npos)
                << e.what();
        }
        EXPECT_FALSE(watch.touched());
        if (swapDirectory) {
            fs::remove(dir.path() + "/etc");
            fs::rename(dir.path() + "/etc.old", dir.path() + "/etc");
        } else {
            fs::remove(dir.path() + "/etc/shadow");
            dir.file("etc/shadow", "mine");
        }
    }
}

TEST(Manifest, AFileThatVanishesOrChangesTypeAfterTheWalkIsNamed) {
    TempDir dir;
    dir.file("gone", "x");
    dir.file("pipe", "x");
    common::Fd root(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    std::vector<std::tuple<size_t, std::string, uint64_t, uint64_t>> found;
    Walker(
        root.fd, dir.path(),
        [&](size_t entry, const std::string &path, uint64_t dev, uint64_t ino) {
            found.emplace_back(entry, path, dev, ino);
        },
        nullptr)
        .run();
    ASSERT_EQ(found.size(), 2u);
    fs::remove(dir.path() + "/gone");
    fs::remove(dir.path() + "/pipe");
    ASSERT_EQ(::mkfifo((dir.path() + "/pipe").c_str(), 0600), 0);

    for (size_t i = 0; i < 2; ++i) {
        ProgressMeter meter(nullptr);
        HashQueue queue(root.fd, dir.path(), 1, meter);
        auto &[entry, path, dev, ino] = found[i];
        queue.push(entry, path, dev, ino);
        try {
            queue.finish();
            ADD_FAILURE() << "hashed " << path;
        } catch (const sdk::Error &e) {
            // A fifo in place of the file must not block the scan.
            EXPECT_EQ(e.code(), i == 0 ? MO_E_NOT_FOUND : MO_E_STATE) << e.what();
            EXPECT_NE(std::string(e.what()).find("`" + dir.path() + path + "`"), std::string::npos)
                << e.what();
        }
    }
}

TEST(Merge, UpperLayersReplaceAddAndWhiteOut) {
    Manifest lower = layer(
        {make("/", EntryType::Directory), make("/bin", EntryType::Directory),
         make("/bin/sh", EntryType::File, "sh"), make("/bin/ls", EntryType::File, "ls"),
         make("/etc", EntryType::Directory), make("/etc/conf.d", EntryType::Directory),
         make("/etc/conf.d/a", EntryType::File, "a"), make("/etc/hosts", EntryType::File, "hosts"),
         make("/opt", EntryType::Directory), make("/opt/app", EntryType::File, "app"),
         make("/var", EntryType::Directory), make("/var/log", EntryType::Directory),
         make("/var/log/old", EntryType::File, "old")});
    Entry whiteout = make("/bin/ls", EntryType::CharDevice);
    Entry opaque = make("/etc/conf.d", EntryType::Directory);
    opaque.opaque = true;
    Entry bigger = make("/etc", EntryType::Directory);
    bigger.mode = 0700;
    Manifest upper = layer(
        {make("/", EntryType::Directory), make("/bin", EntryType::Directory), whiteout,
         make("/bin/sh", EntryType::File, "busybox"), bigger, opaque,
         make("/etc/conf.d/b", EntryType::File, "b"), make("/opt", EntryType::File, "now a file"),
         make("/var", EntryType::Directory), make("/var/log", EntryType::CharDevice)});
    Manifest merged = merge({lower, upper});
    EXPECT_EQ(paths(merged),
              (std::vector<std::string>{"/", "/bin", "/bin/sh", "/etc", "/etc/conf.d",
                                        "/etc/conf.d/b", "/etc/hosts", "/opt", "/var"}));
    EXPECT_EQ(merged.find("/bin/sh")->digest, sha256Hex("busybox"));
    EXPECT_EQ(merged.find("/etc")->mode, 0700u);
    EXPECT_FALSE(merged.find("/etc/conf.d")->opaque); // the mount does not show the flag
    EXPECT_EQ(merged.find("/opt")->type, EntryType::File);
    EXPECT_EQ(merged.root, merged.entries.front().node);

    // A third layer restores what a whiteout removed; a single layer is itself.
    Manifest third = layer({make("/", EntryType::Directory), make("/bin", EntryType::Directory),
                            make("/bin/ls", EntryType::File, "ls")});
    EXPECT_NE(merge({lower, upper, third}).find("/bin/ls"), nullptr);
    EXPECT_EQ(merge({lower}).root, lower.root);
    EXPECT_EQ(codeOf([] { merge({}); }), MO_E_INVALID);
}

TEST(Merge, OverlayDriftNamesWhatTheWritableLayerChanged) {
    Manifest image =
        layer({make("/", EntryType::Directory), make("/etc", EntryType::Directory),
               make("/etc/hosts", EntryType::File, "hosts"),
               make("/etc/passwd", EntryType::File, "passwd"), make("/srv", EntryType::Directory),
               make("/srv/a", EntryType::File, "a"), make("/srv/b", EntryType::File, "b"),
               make("/tmp", EntryType::Directory)});
    Entry chmodded = make("/etc/passwd", EntryType::File, "passwd");
    chmodded.mode = 0666;
    Entry opaque = make("/srv", EntryType::Directory);
    opaque.opaque = true;
    Manifest upper =
        layer({make("/", EntryType::Directory), make("/etc", EntryType::Directory),
               make("/etc/hosts", EntryType::CharDevice), chmodded, opaque,
               make("/srv/b", EntryType::File, "b"), make("/tmp", EntryType::Directory),
               make("/tmp/new", EntryType::File, "new")});
    Diff d = overlayDrift(image, upper);
    EXPECT_EQ(d.added, std::vector<std::string>{"/tmp/new"});
    EXPECT_EQ(d.removed, (std::vector<std::string>{"/etc/hosts", "/srv/a"}));
    ASSERT_EQ(d.modified.size(), 1u);
    EXPECT_EQ(d.modified[0].path, "/etc/passwd");
    EXPECT_EQ(d.modified[0].what, std::vector<std::string>{"mode"});

    // An empty writable layer (only the copied-up root) is no drift.
    EXPECT_TRUE(overlayDrift(image, layer({make("/", EntryType::Directory)})).clean());
}

} // namespace
} // namespace mobileops::integrity
