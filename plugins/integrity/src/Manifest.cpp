#include "Manifest.h"

#include "Hash.h"
#include "Walk.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>

namespace mobileops::integrity {

using common::quote;

namespace {

// Component-wise order: '/' sorts before every other byte, so "/a/b" < "/a b" and a
// directory's subtree follows it without a gap.
struct PathLess {
    bool operator()(const std::string &a, const std::string &b) const {
        const size_t n = std::min(a.size(), b.size());
        for (size_t i = 0; i < n; ++i) {
            const unsigned char x = a[i] == '/' ? 0 : static_cast<unsigned char>(a[i]);
            const unsigned char y = b[i] == '/' ? 0 : static_cast<unsigned char>(b[i]);
            if (x != y) return x < y;
        }
        return a.size() < b.size();
    }
};

bool entryLess(const Entry &a, const Entry &b) { return PathLess{}(a.path, b.path); }

// True when `path` lies strictly below the directory `dir`.
bool isBelow(const std::string &path, const std::string &dir) {
    if (dir == "/") return path.size() > 1;
    return path.size() > dir.size() && path[dir.size()] == '/' && path.starts_with(dir);
}

std::string parentOf(const std::string &path) {
    const size_t slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string nameOf(const std::string &path) { return path.substr(path.rfind('/') + 1); }

bool validPath(const std::string &path) {
    if (path == "/") return true;
    if (path.empty() || path[0] != '/' || path.back() == '/') return false;
    if (path.find('\0') != std::string::npos) return false;
    for (size_t at = 1; at <= path.size();) {
        size_t end = path.find('/', at);
        if (end == std::string::npos) end = path.size();
        const std::string_view part(path.data() + at, end - at);
        if (part.empty() || part == "." || part == "..") return false;
        at = end + 1;
    }
    return true;
}

bool isHex64(const std::string &s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

bool isWhiteout(const Entry &e) { return e.type == EntryType::CharDevice && e.rdev == 0; }

// The node hash format; signatures cover the root, so this must never change without a new
// `algorithm` name.
//
//   record(e) = str(name) str(type) u32(mode) u32(uid) u32(gid) u64(size) u64(rdev)
//               str(target) str(digest) str(xattrs) u8(opaque)
//   node(e)   = sha256(record(e) || for each child c of e in path order: str(name(c)) node(c))
//
// Integers are big-endian, str(s) is u32(length of s) followed by the bytes of s, name is the
// last path component ("" for "/"), type is typeName(), digest and xattrs are their 64
// lowercase hex characters or empty, node(c) is the child's 32 raw bytes. A leaf's node is
// sha256(record(e)). The xattrs digest is itself sha256 over, for each attribute in byte
// order of its name (trusted.overlay.* left out), str(name) str(value).
std::string record(const Entry &e) {
    Canonical enc;
    enc.str(e.path == "/" ? "" : nameOf(e.path))
        .str(typeName(e.type))
        .u32(e.mode)
        .u32(e.uid)
        .u32(e.gid)
        .u64(e.size)
        .u64(e.rdev)
        .str(e.target)
        .str(e.digest)
        .str(e.xattrs)
        .u8(e.opaque ? 1 : 0);
    return enc.bytes();
}

// nlohmann keeps 5 as a signed integer when built in memory and as unsigned when parsed.
std::optional<uint64_t> unsignedOf(const nlohmann::json &v) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0)
        return static_cast<uint64_t>(v.get<int64_t>());
    return std::nullopt;
}

sdk::Error invalidEntry(size_t index, const std::string &path, const std::string &what) {
    std::string at = "manifest entry " + std::to_string(index);
    if (!path.empty()) at += " (" + quote(path) + ")";
    return sdk::Error(MO_E_INVALID, at + ": " + what);
}

std::string octal(uint32_t mode) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", mode);
    return buf;
}

std::string device(uint64_t rdev) {
    return std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
}

nlohmann::json orNull(const std::string &s) {
    return s.empty() ? nlohmann::json() : nlohmann::json(s);
}

std::optional<Change> changeOf(const Entry &a, const Entry &b) {
    Change c;
    c.path = a.path;
    auto differ = [&](const char *what, const char *key, nlohmann::json before,
                      nlohmann::json after) {
        c.what.emplace_back(what);
        c.before[key] = std::move(before);
        c.after[key] = std::move(after);
    };
    if (a.type != b.type) {
        differ("type", "type", typeName(a.type), typeName(b.type));
        return c;
    }
    const bool digests = !a.digest.empty() && !b.digest.empty();
    if (a.size != b.size || (digests && a.digest != b.digest))
        differ("content", "digest", orNull(a.digest), orNull(b.digest));
    if (a.size != b.size) differ("size", "size", a.size, b.size);
    if (a.mode != b.mode) differ("mode", "mode", octal(a.mode), octal(b.mode));
    if (a.uid != b.uid || a.gid != b.gid) {
        c.what.emplace_back("owner");
        c.before["uid"] = a.uid;
        c.before["gid"] = a.gid;
        c.after["uid"] = b.uid;
        c.after["gid"] = b.gid;
    }
    if (a.target != b.target) differ("link", "target", a.target, b.target);
    if (a.rdev != b.rdev) differ("device", "rdev", device(a.rdev), device(b.rdev));
    if (a.xattrs != b.xattrs) differ("xattrs", "xattrs", orNull(a.xattrs), orNull(b.xattrs));
    if (a.opaque != b.opaque) differ("opaque", "opaque", a.opaque, b.opaque);
    if (c.what.empty()) return std::nullopt;
    return c;
}

// The entries an overlay of `layers` (bottom first) shows, in path order.
std::vector<Entry> overlay(const std::vector<const Manifest *> &layers) {
    std::map<std::string, Entry, PathLess> tree;
    auto eraseBelow = [&](const std::string &dir) {
        for (auto it = tree.upper_bound(dir); it != tree.end() && isBelow(it->first, dir);)
            it = tree.erase(it);
    };
    for (const Manifest *layer : layers) {
        for (const Entry &e : layer->entries) {
            auto it = tree.find(e.path);
            if (isWhiteout(e)) {
                if (it == tree.end()) continue;
                eraseBelow(e.path);
                tree.erase(it);
                continue;
            }
            if (it == tree.end()) {
                tree.emplace(e.path, e);
                continue;
            }
            // A directory over a directory merges with it unless opaque; anything else
            // replaces the lower path and all it had below.
            const bool merges = it->second.type == EntryType::Directory &&
                                e.type == EntryType::Directory && !e.opaque;
            if (!merges) eraseBelow(e.path);
            it->second = e;
        }
    }
    std::vector<Entry> out;
    out.reserve(tree.size());
    for (auto &[path, e] : tree) {
        e.opaque = false; // the mount does not show trusted.overlay.* attributes
        e.node.clear();
        out.push_back(std::move(e));
    }
    return out;
}

unsigned defaultThreads() {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<unsigned>(n) : 1;
}

std::vector<Entry> scanDirectory(int fd, const std::string &root, const ScanOptions &options,
                                 ProgressMeter &meter) {
    if (!options.content) return Walker(fd, root, nullptr, nullptr).run();
    HashQueue queue(fd, root, options.threads ? options.threads : defaultThreads(), meter);
    Walker walker(
        fd, root,
        [&](size_t entry, const std::string &path, uint64_t dev, uint64_t ino) {
            queue.push(entry, path, dev, ino);
        },
        [&] { return queue.failed(); });
    std::vector<Entry> entries = walker.run();
    for (const auto &job : queue.finish()) {
        entries[job.entry].digest = job.digest;
        entries[job.entry].size = job.size;
    }
    return entries;
}

std::vector<Entry> scanFile(int pathfd, const std::string &root, const struct statx &stx,
                            const ScanOptions &options, ProgressMeter &meter) {
    const std::string where = quote(root);
    const std::string proc = "/proc/self/fd/" + std::to_string(pathfd);
    int fd = ::open(proc.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::open(proc.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw common::sysError("open " + where, errno);
    common::Fd file(fd);
    Entry e = entryOf(stx, "/");
    Xattrs x = readXattrs(fd, where);
    e.xattrs = x.digest;
    if (options.content) {
        Sha256 sha;
        std::vector<char> buffer(kHashChunk);
        e.size = hashFd(fd, where, sha, buffer, meter);
        e.digest = sha.finishHex();
        meter.add(0, 1);
    }
    return {std::move(e)};
}

} // namespace

const char *typeName(EntryType type) {
    switch (type) {
    case EntryType::File:
        return "file";
    case EntryType::Directory:
        return "dir";
    case EntryType::Symlink:
        return "symlink";
    case EntryType::CharDevice:
        return "char";
    case EntryType::BlockDevice:
        return "block";
    case EntryType::Fifo:
        return "fifo";
    case EntryType::Socket:
        return "socket";
    }
    return "file";
}

EntryType typeFromName(const std::string &name) {
    static const std::pair<const char *, EntryType> types[] = {
        {"file", EntryType::File},         {"dir", EntryType::Directory},
        {"symlink", EntryType::Symlink},   {"char", EntryType::CharDevice},
        {"block", EntryType::BlockDevice}, {"fifo", EntryType::Fifo},
        {"socket", EntryType::Socket}};
    for (const auto &[word, type] : types)
        if (name == word) return type;
    throw std::invalid_argument("unknown entry type " + quote(name) +
                                " (expected file, dir, symlink, char, block, fifo or socket)");
}

const Entry *Manifest::find(const std::string &path) const {
    auto it = std::lower_bound(
        entries.begin(), entries.end(), path,
        [](const Entry &e, const std::string &p) { return PathLess{}(e.path, p); });
    return it != entries.end() && it->path == path ? &*it : nullptr;
}

void computeTree(Manifest &m) {
    if (!std::is_sorted(m.entries.begin(), m.entries.end(), entryLess))
        std::sort(m.entries.begin(), m.entries.end(), entryLess);
    if (m.entries.empty() || m.entries.front().path != "/")
        throw sdk::Error(MO_E_INVALID, "manifest has no root entry `/`");

    // One open hash per directory on the path from "/" to the current entry.
    std::vector<size_t> open;
    std::vector<std::unique_ptr<Sha256>> hashes;
    auto close = [&] {
        const size_t index = open.back();
        const Sha256::Raw node = hashes[open.size() - 1]->finish();
        m.entries[index].node = toHex(node);
        open.pop_back();
        if (!open.empty()) {
            Canonical child;
            child.str(nameOf(m.entries[index].path)).raw(node);
            hashes[open.size() - 1]->update(child.bytes());
        }
    };
    m.files = m.bytes = 0;
    for (size_t i = 0; i < m.entries.size(); ++i) {
        Entry &e = m.entries[i];
        if (!validPath(e.path)) throw invalidEntry(i, e.path, "not a clean absolute path");
        if (i > 0) {
            if (e.path == m.entries[i - 1].path) throw invalidEntry(i, e.path, "duplicate path");
            const std::string parent = parentOf(e.path);
            while (!open.empty() && m.entries[open.back()].path != parent) close();
            if (open.empty())
                throw invalidEntry(i, e.path,
                                   "its parent " + quote(parent) +
                                       " is not a directory of the manifest");
        }
        if (e.type == EntryType::File) ++m.files, m.bytes += e.size;
        if (e.type == EntryType::Directory) {
            if (hashes.size() == open.size()) hashes.push_back(std::make_unique<Sha256>());
            open.push_back(i);
            hashes[open.size() - 1]->update(record(e));
            continue;
        }
        Sha256 leaf;
        leaf.update(record(e));
        const Sha256::Raw node = leaf.finish();
        e.node = toHex(node);
        if (!open.empty()) {
            Canonical child;
            child.str(nameOf(e.path)).raw(node);
            hashes[open.size() - 1]->update(child.bytes());
        }
    }
    while (!open.empty()) close();
    m.root = m.entries.front().node;
}

// The stored form keeps the entries as one string, a line per entry of tab-separated
// fields (path, type, mode in octal, uid, gid, size, rdev, target, digest, xattrs, opaque
// 0|1), '%', tab and newline in path and target written %25, %09, %0a: a JSON array of
// arrays costs ten times more to parse, and a store of many images reads these often.
namespace {

void appendEscaped(std::string &out, const std::string &text) {
    for (char c : text) {
        if (c == '%')
            out += "%25";
        else if (c == '\t')
            out += "%09";
        else if (c == '\n')
            out += "%0a";
        else
            out += c;
    }
}

std::optional<std::string> unescape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        std::string_view code = text.substr(i + 1, 2);
        if (code == "25")
            out += '%';
        else if (code == "09")
            out += '\t';
        else if (code == "0a")
            out += '\n';
        else
            return std::nullopt;
        i += 2;
    }
    return out;
}

std::optional<uint64_t> numberOf(std::string_view text, int base) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, base);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return v;
}

} // namespace

nlohmann::json Manifest::toJson() const {
    std::string rows;
    rows.reserve(entries.size() * 120);
    char number[32];
    auto field = [&](uint64_t v, int base) {
        auto [end, ec] = std::to_chars(number, number + sizeof number, v, base);
        rows.append(number, end);
        rows += '\t';
    };
    for (const Entry &e : entries) {
        appendEscaped(rows, e.path);
        rows += '\t';
        rows += typeName(e.type);
        rows += '\t';
        field(e.mode, 8);
        field(e.uid, 10);
        field(e.gid, 10);
        field(e.size, 10);
        field(e.rdev, 10);
        appendEscaped(rows, e.target);
        rows += '\t';
        rows += e.digest;
        rows += '\t';
        rows += e.xattrs;
        rows += '\t';
        rows += e.opaque ? '1' : '0';
        rows += '\n';
    }
    return {{"algorithm", algorithm},
            {"root", root},
            {"files", files},
            {"bytes", bytes},
            {"entries", std::move(rows)}};
}

Manifest Manifest::fromJson(const nlohmann::json &doc) {
    using nlohmann::json;
    auto invalid = [](const std::string &what) {
        return sdk::Error(MO_E_INVALID, "manifest: " + what);
    };
    if (!doc.is_object()) throw invalid("expected an object");
    auto field = [&](const char *key, json::value_t kind) -> const json & {
        auto it = doc.find(key);
        if (it == doc.end()) throw invalid(std::string("missing ") + quote(key));
        const bool ok = kind == json::value_t::number_unsigned ? unsignedOf(*it).has_value()
                                                               : it->type() == kind;
        if (!ok) throw invalid(quote(key) + " has the wrong type");
        return *it;
    };
    Manifest m;
    m.algorithm = field("algorithm", json::value_t::string).get<std::string>();
    if (m.algorithm != "sha256")
        throw invalid("algorithm " + quote(m.algorithm) + " is not supported (expected `sha256`)");
    const std::string root = field("root", json::value_t::string).get<std::string>();
    if (!isHex64(root)) throw invalid("root " + quote(root) + " is not 64 lowercase hex digits");
    const uint64_t files = *unsignedOf(field("files", json::value_t::number_unsigned));
    const uint64_t bytes = *unsignedOf(field("bytes", json::value_t::number_unsigned));
    const std::string &rows =
        field("entries", json::value_t::string).get_ref<const std::string &>();

    std::string_view rest(rows);
    for (size_t i = 0; !rest.empty(); ++i) {
        size_t eol = rest.find('\n');
        if (eol == std::string_view::npos) throw invalidEntry(i, "", "the last line has no end");
        std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(eol + 1);
        std::string_view row[11];
        size_t n = 0;
        for (; n < 11 && !line.empty(); ++n) {
            size_t tab = line.find('\t');
            row[n] = line.substr(0, tab);
            line = tab == std::string_view::npos ? std::string_view() : line.substr(tab + 1);
        }
        if (n != 11 || !line.empty())
            throw invalidEntry(i, "",
                               "expected 11 fields: path, type, mode, uid, gid, size, rdev, "
                               "target, digest, xattrs, opaque");
        const std::optional<std::string> path = unescape(row[0]);
        auto bad = [&](const std::string &what) {
            return invalidEntry(i, path ? *path : std::string(row[0]), what);
        };
        auto number = [&](size_t k, const char *name, uint64_t max, int base = 10) {
            const std::optional<uint64_t> v = numberOf(row[k], base);
            if (!v || *v > max)
                throw bad(std::string(name) + " " + quote(std::string(row[k])) +
                          " is out of range");
            return *v;
        };
        auto hash = [&](size_t k, const char *name) {
            std::string h(row[k]);
            if (!h.empty() && !isHex64(h))
                throw bad(std::string(name) + " " + quote(h) + " is not 64 lowercase hex digits");
            return h;
        };
        Entry e;
        if (!path) throw bad("bad escape in the path");
        e.path = *path;
        if (!validPath(e.path)) throw bad("not a clean absolute path");
        try {
            e.type = typeFromName(std::string(row[1]));
        } catch (const std::invalid_argument &err) {
            throw bad(err.what());
        }
        e.mode = static_cast<uint32_t>(number(2, "mode", 07777, 8));
        e.uid = static_cast<uint32_t>(number(3, "uid", UINT32_MAX));
        e.gid = static_cast<uint32_t>(number(4, "gid", UINT32_MAX));
        e.size = number(5, "size", UINT64_MAX);
        e.rdev = number(6, "rdev", UINT64_MAX);
        const std::optional<std::string> target = unescape(row[7]);
        if (!target) throw bad("bad escape in the link target");
        e.target = *target;
        e.digest = hash(8, "digest");
        e.xattrs = hash(9, "xattrs");
        if (row[10] != "0" && row[10] != "1") throw bad("opaque is not 0 or 1");
        e.opaque = row[10] == "1";

        const bool device = e.type == EntryType::CharDevice || e.type == EntryType::BlockDevice;
        if (e.type != EntryType::File && (e.size || !e.digest.empty()))
            throw bad("only a file has a size and a digest");
        if (!device && e.rdev) throw bad("only a device has a device number");
        if (e.type != EntryType::Symlink && !e.target.empty())
            throw bad("only a symlink has a target");
        if (e.type != EntryType::Directory && e.opaque) throw bad("only a directory can be opaque");
        if (!m.entries.empty()) {
            const std::string &prev = m.entries.back().path;
            if (prev == e.path) throw bad("duplicate path");
            if (!PathLess{}(prev, e.path)) throw bad("out of order after " + quote(prev));
        }
        m.entries.push_back(std::move(e));
    }
    computeTree(m);
    if (m.files != files || m.bytes != bytes)
        throw invalid("files " + quote(std::to_string(files)) + " and bytes " +
                      quote(std::to_string(bytes)) + " do not match the entries (" +
                      std::to_string(m.files) + " files of " + std::to_string(m.bytes) + " bytes)");
    if (m.root != root)
        throw sdk::Error(MO_E_STATE, "manifest: root " + quote(root) +
                                         " does not match its entries (they hash to " +
                                         quote(m.root) + ")");
    return m;
}

Manifest scan(const std::string &root, const ScanOptions &options) {
    int pathfd = ::open(root.c_str(), O_PATH | O_CLOEXEC);
    if (pathfd < 0 && errno == ENOENT)
        throw sdk::Error(MO_E_NOT_FOUND, "scan " + quote(root) + ": no such file or directory");
    if (pathfd < 0) throw common::sysError("scan " + quote(root), errno);
    common::Fd path(pathfd);
    struct statx stx {};
    if (::statx(pathfd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS | STATX_MNT_ID,
                &stx) < 0)
        throw common::sysError("scan " + quote(root), errno);

    ProgressMeter meter(options.progress);
    Manifest m;
    if (S_ISDIR(stx.stx_mode)) {
        int fd = ::openat(pathfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) throw common::sysError("scan " + quote(root), errno);
        common::Fd dir(fd);
        m.entries = scanDirectory(fd, root, options, meter);
    } else if (S_ISREG(stx.stx_mode)) {
        m.entries = scanFile(pathfd, root, stx, options, meter);
    } else {
        throw sdk::Error(MO_E_INVALID,
                         "scan " + quote(root) + ": not a directory or a regular file");
    }
    computeTree(m);
    meter.final();
    return m;
}

nlohmann::json Diff::toJson() const {
    nlohmann::json changes = nlohmann::json::array();
    for (const Change &c : modified)
        changes.push_back(
            {{"path", c.path}, {"what", c.what}, {"before", c.before}, {"after", c.after}});
    return {{"clean", clean()}, {"added", added}, {"removed", removed}, {"modified", changes}};
}

std::vector<std::string> Diff::first(size_t n) const {
    std::vector<std::pair<std::string, std::string>> all;
    for (const auto &p : added) all.emplace_back(p, "added");
    for (const auto &p : removed) all.emplace_back(p, "removed");
    for (const Change &c : modified) {
        std::string what;
        for (const auto &w : c.what) what += (what.empty() ? "" : ", ") + w;
        all.emplace_back(c.path, what);
    }
    std::sort(all.begin(), all.end(),
              [](const auto &a, const auto &b) { return PathLess{}(a.first, b.first); });
    std::vector<std::string> out;
    for (size_t i = 0; i < all.size() && i < n; ++i)
        out.push_back(all[i].first + " (" + all[i].second + ")");
    return out;
}

Diff compare(const Manifest &recorded, const Manifest &live) {
    Diff d;
    const auto &a = recorded.entries;
    const auto &b = live.entries;
    PathLess less;
    size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
        if (j == b.size() || (i < a.size() && less(a[i].path, b[j].path))) {
            d.removed.push_back(a[i++].path);
        } else if (i == a.size() || less(b[j].path, a[i].path)) {
            d.added.push_back(b[j++].path);
        } else {
            if (auto c = changeOf(a[i], b[j])) d.modified.push_back(std::move(*c));
            ++i, ++j;
        }
    }
    return d;
}

Manifest merge(const std::vector<Manifest> &layers) {
    if (layers.empty()) throw sdk::Error(MO_E_INVALID, "merge: no layers");
    std::vector<const Manifest *> stack;
    for (const Manifest &layer : layers) stack.push_back(&layer);
    Manifest m;
    m.entries = overlay(stack);
    computeTree(m);
    return m;
}

Diff overlayDrift(const Manifest &image, const Manifest &upper) {
    // Both sides go through the overlay rules, so that opaque flags or whiteouts left in
    // `image` (a single layer passed as is) are not reported as drift.
    Manifest before, after;
    before.entries = overlay({&image});
    after.entries = overlay({&image, &upper});
    return compare(before, after);
}

} // namespace mobileops::integrity
