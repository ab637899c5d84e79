#include "Assets.h"

#include "Backup.h"
#include "Digest.h"
#include "Quota.h"
#include <mobileops/common/Progress.h>

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Integrity.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

namespace mobileops::storage {

using common::quote;
using common::sysError;
using common::wrap;
using nlohmann::json;

namespace {

constexpr const char *kKind = "asset";

std::string lockName(const std::string &name) { return "asset/" + name; }

std::string baseName(const std::string &path) { return path.substr(path.rfind('/') + 1); }
std::string dirName(const std::string &path) {
    auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

std::string typeOf(mode_t mode) {
    if (S_ISREG(mode)) return "file";
    if (S_ISDIR(mode)) return "directory";
    if (S_ISLNK(mode)) return "symlink";
    if (S_ISFIFO(mode)) return "fifo";
    if (S_ISCHR(mode)) return "char-device";
    if (S_ISBLK(mode)) return "block-device";
    return "other";
}

json entryOf(const struct stat &st) {
    return {{"type", typeOf(st.st_mode)},
            {"mode", st.st_mode & 07777},
            {"uid", st.st_uid},
            {"gid", st.st_gid}};
}

void walk(const std::string &path, const std::string &rel, json &out) {
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) throw sysError("read " + quote(path), errno);
    if (S_ISSOCK(st.st_mode)) return; // the archives skip sockets too
    json e = entryOf(st);
    if (S_ISREG(st.st_mode)) {
        e["size"] = static_cast<uint64_t>(st.st_size);
        e["sha256"] = sha256File(path);
    } else if (S_ISLNK(st.st_mode)) {
        std::string target(PATH_MAX, '\0');
        ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
        if (n < 0) throw sysError("read link " + quote(path), errno);
        target.resize(static_cast<size_t>(n));
        e["target"] = target;
    }
    if (!rel.empty()) out[rel] = e;
    if (!S_ISDIR(st.st_mode)) return;
    DIR *d = ::opendir(path.c_str());
    if (!d) throw sysError("read " + quote(path), errno);
    std::vector<std::string> names;
    while (struct dirent *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto &n : names) walk(path + "/" + n, rel.empty() ? n : rel + "/" + n, out);
}

std::string readFile(const std::string &path) {
    std::ifstream in(path);
    if (!in) throw sysError("read " + quote(path), errno ? errno : EIO);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void writeFileAtomically(const std::string &path, const std::string &content) {
    std::string tmp = path + ".partial";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << content;
        out.flush();
        if (!out) throw sysError("write " + quote(tmp), errno ? errno : EIO);
    }
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw sysError("rename " + quote(tmp) + " to " + quote(path), err);
    }
}

bool under(const std::string &path, const std::string &dir) {
    return path == dir || path.rfind(dir + "/", 0) == 0;
}

// The asset's path in a directory a backup can archive: the directory itself, or for a
// file a fresh directory beside it holding a hard link to it (the same inode: owner, mode
// and xattrs as they are), removed afterwards.
class Staged {
public:
    Staged(const json &rec) {
        std::string path = rec["path"];
        if (rec["type"] == "directory") {
            _dir = path;
            return;
        }
        _tmp = fsutil::tempDir(dirName(path), "." + baseName(path) + ".backup-");
        _dir = _tmp;
        if (::link(path.c_str(), (_tmp + "/" + baseName(path)).c_str()) < 0) {
            int err = errno;
            ::rmdir(_tmp.c_str());
            throw sysError("link " + quote(path) + " for its backup", err);
        }
    }
    ~Staged() {
        if (_tmp.empty()) return;
        try {
            fsutil::removeTree(_tmp);
        } catch (...) {
        }
    }
    Staged(const Staged &) = delete;
    Staged &operator=(const Staged &) = delete;
    const std::string &dir() const { return _dir; }

private:
    std::string _dir, _tmp;
};

} // namespace

json manifestOfTree(const std::string &path) {
    json out = json::object();
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) throw sysError("read " + quote(path), errno);
    walk(path, S_ISDIR(st.st_mode) ? "" : baseName(path), out);
    return out;
}

json manifestOfArchive(const std::string &file) {
    std::unique_ptr<struct archive, int (*)(struct archive *)> a(archive_read_new(),
                                                                 archive_read_free);
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    auto fail = [&](const std::string &entry) {
        return sdk::Error(
            MO_E_INVALID,
            "archive " + quote(file) + (entry.empty() ? "" : ": entry " + quote(entry)) + ": " +
                (archive_error_string(a.get()) ? archive_error_string(a.get()) : "unreadable"));
    };
    if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK) throw fail("");
    json out = json::object();
    struct archive_entry *entry;
    for (;;) {
        int r = archive_read_next_header(a.get(), &entry);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) throw fail("");
        std::string name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
        while (name.rfind("./", 0) == 0) name.erase(0, 2);
        while (!name.empty() && name.back() == '/') name.pop_back();
        if (name.empty() || name == ".") {
            archive_read_data_skip(a.get());
            continue;
        }
        json e = {{"type", typeOf(archive_entry_filetype(entry))},
                  {"mode", archive_entry_perm(entry) & 07777},
                  {"uid", archive_entry_uid(entry)},
                  {"gid", archive_entry_gid(entry)}};
        if (const char *link = archive_entry_hardlink(entry)) {
            std::string target = link;
            while (target.rfind("./", 0) == 0) target.erase(0, 2);
            if (!out.contains(target)) throw fail(name);
            out[name] = out[target];
            archive_read_data_skip(a.get());
            continue;
        }
        if (e["type"] == "file") {
            Sha256 hash;
            uint64_t size = 0;
            char buf[1 << 16];
            for (;;) {
                la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
                if (n < 0) throw fail(name);
                if (n == 0) break;
                hash.update(buf, static_cast<size_t>(n));
                size += static_cast<uint64_t>(n);
            }
            e["size"] = size;
            e["sha256"] = hash.finish();
        } else if (e["type"] == "symlink") {
            const char *target = archive_entry_symlink(entry);
            e["target"] = target ? target : "";
        }
        out[name] = e;
    }
    return out;
}

json compareManifests(const json &recorded, const json &live) {
    json changed = json::array(), added = json::array(), removed = json::array();
    for (const auto &[path, was] : recorded.items()) {
        if (!live.contains(path)) {
            removed.push_back(path);
            continue;
        }
        const json &now = live[path];
        std::vector<std::string> what;
        if (was["type"] != now["type"])
            what.push_back("type");
        else if (was.contains("sha256") && was["sha256"] != now.value("sha256", ""))
            what.push_back("content");
        else if (was.contains("target") && was["target"] != now.value("target", ""))
            what.push_back("target");
        if (was["mode"] != now["mode"]) what.push_back("mode");
        if (was["uid"] != now["uid"] || was["gid"] != now["gid"]) what.push_back("owner");
        if (!what.empty()) {
            std::string joined;
            for (const auto &w : what) joined += (joined.empty() ? "" : ",") + w;
            changed.push_back({{"path", path}, {"what", joined}});
        }
    }
    for (const auto &[path, _] : live.items())
        if (!recorded.contains(path)) added.push_back(path);
    return {{"changed", changed}, {"added", added}, {"removed", removed}};
}

Assets::Assets(const common::Host &host, StorageClasses classes)
    : _host(host), _classes(std::move(classes)) {}

json Assets::mustRecord(const std::string &name) const {
    checkName("asset name", name);
    auto rec = _host.get(kKind, name);
    if (!rec) throw sdk::Error(MO_E_NOT_FOUND, "asset " + quote(name) + " does not exist");
    return *rec;
}

std::string Assets::directoryOf(const json &rec) const {
    return _classes.get(rec["class"]).directory + "/assets/" + rec["name"].get<std::string>();
}

std::vector<json> Assets::selected(const std::vector<std::string> &names) const {
    std::vector<json> out;
    if (names.empty()) return _host.list(kKind);
    for (const auto &n : names) out.push_back(mustRecord(n));
    return out;
}

json Assets::add(const std::string &path, const std::string &className,
                 const std::string &description, const std::string &givenName) {
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved)) throw sysError("asset path " + quote(path), errno);
    std::string abs = resolved;
    struct stat st;
    if (::lstat(abs.c_str(), &st) < 0) throw sysError("asset path " + quote(path), errno);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        throw sdk::Error(MO_E_INVALID, "asset path " + quote(path) + " is a " + typeOf(st.st_mode) +
                                           ", not a file or a directory");
    if (abs == "/")
        throw sdk::Error(MO_E_INVALID, "asset path " + quote(path) + ": not the whole root");
    const StorageClass &cls = _classes.get(className);
    std::string name = givenName.empty() ? baseName(abs) : givenName;
    checkName("asset name", name);
    std::string dir = cls.directory + "/assets/" + name;
    if (S_ISDIR(st.st_mode) && under(dir, abs))
        throw sdk::Error(MO_E_INVALID, "asset " + quote(name) + ": its backups would go to " +
                                           quote(dir) +
                                           ", inside the asset itself (choose another class)");
    for (const auto &other : _host.list(kKind))
        if (other["path"] == abs)
            throw sdk::Error(MO_E_EXISTS, quote(abs) + " is already asset " + quote(other["name"]));
    json rec = {{"name", name},
                {"path", abs},
                {"class", cls.name},
                {"description", description},
                {"type", S_ISDIR(st.st_mode) ? "directory" : "file"},
                {"created", timestamp()},
                {"backups", json::array()}};
    try {
        _host.put(kKind, name, name, rec, true);
    } catch (const sdk::Error &e) {
        if (e.code() == MO_E_EXISTS)
            throw sdk::Error(MO_E_EXISTS,
                             "asset " + quote(name) + " already exists (--name gives another)");
        throw;
    }
    if (auto manifest = common::recordManifest(_host, "asset:" + name, abs))
        rec["manifest"] = manifest->value("root", "");
    return rec;
}

json Assets::list() const {
    json out = json::array();
    for (auto &rec : _host.list(kKind)) {
        const json &backups = rec["backups"];
        rec["lastBackup"] = backups.empty() ? json(nullptr) : backups.back()["created"];
        rec["backupCount"] = backups.size();
        out.push_back(rec);
    }
    return out;
}

json Assets::inspect(const std::string &name) const {
    json rec = mustRecord(name);
    rec["backupDirectory"] = directoryOf(rec);
    return rec;
}

void Assets::remove(const std::string &name, bool purge) {
    auto lock = _host.lock(lockName(name));
    json rec = mustRecord(name);
    if (purge) {
        std::string dir = directoryOf(rec);
        for (const auto &b : rec["backups"]) {
            ::unlink(b["file"].get<std::string>().c_str());
            ::unlink(b["manifest"].get<std::string>().c_str());
        }
        ::rmdir(dir.c_str());
    }
    _host.remove(kKind, name);
}

json Assets::backup(const std::vector<std::string> &names, Progress &progress) {
    json done = json::array();
    for (const auto &listed : selected(names)) {
        std::string name = listed["name"];
        auto lock = _host.lock(lockName(name));
        json rec = mustRecord(name);
        std::string dir = directoryOf(rec);
        try {
            fsutil::makeDirs(dir, 0700);
            std::string id = fileTimestamp();
            for (int n = 2; ::access((dir + "/" + id + ".tar.zst").c_str(), F_OK) == 0; ++n)
                id = fileTimestamp() + "-" + std::to_string(n);
            std::string file = dir + "/" + id + ".tar.zst";
            json written;
            {
                Staged staged(rec);
                written = writeBackup(staged.dir(), file, progress, "asset " + name);
            }
            json manifest = manifestOfArchive(file);
            std::string manifestFile = dir + "/" + id + ".manifest.json";
            std::string manifestText =
                json{{"asset", name}, {"archive", file}, {"files", manifest}}.dump(1) + "\n";
            writeFileAtomically(manifestFile, manifestText);
            json b = {{"id", id},
                      {"file", file},
                      {"sha256", written["sha256"]},
                      {"size", written["size"]},
                      {"created", written["created"]},
                      {"manifest", manifestFile},
                      {"manifestSha256", sha256Of(manifestText)},
                      {"files", manifest.size()}};
            rec["backups"].push_back(b);
            _host.put(kKind, name, name, rec);
            b["asset"] = name;
            done.push_back(b);
        } catch (const sdk::Error &e) {
            throw wrap(e, "back up asset " + quote(name));
        }
    }
    return {{"backups", done}};
}

json Assets::restore(const std::string &name, const std::string &id, Progress &progress) {
    auto lock = _host.lock(lockName(name));
    json rec = mustRecord(name);
    const json &backups = rec["backups"];
    if (backups.empty())
        throw sdk::Error(MO_E_NOT_FOUND, "asset " + quote(name) +
                                             " has no backup (`mobileops assets backup " + name +
                                             "`)");
    json chosen;
    if (id.empty()) {
        chosen = backups.back();
    } else {
        for (const auto &b : backups)
            if (b["id"] == id) chosen = b;
        if (chosen.is_null()) {
            std::string known;
            for (const auto &b : backups)
                known += (known.empty() ? "" : ", ") + b["id"].get<std::string>();
            throw sdk::Error(MO_E_NOT_FOUND, "asset " + quote(name) + " has no backup " +
                                                 quote(id) + " (it has " + known + ")");
        }
    }
    std::string file = chosen["file"];
    std::string path = rec["path"];
    std::string where =
        "restore asset " + quote(name) + " from " + quote(chosen["id"].get<std::string>());
    std::string digest;
    try {
        digest = sha256File(file);
    } catch (const sdk::Error &e) {
        throw wrap(e, where);
    }
    if (digest != chosen["sha256"])
        throw sdk::Error(MO_E_INVALID,
                         where + ": archive " + quote(file) + " has changed since the backup (" +
                             digest + ", recorded " + chosen["sha256"].get<std::string>() + ")");

    // A fresh copy next to the path (same filesystem), swapped in by one rename.
    std::string parent = dirName(path);
    std::string fresh = fsutil::tempDir(parent, "." + baseName(path) + ".restore-");
    try {
        restoreBackup(file, fresh, progress, path);
        if (rec["type"] == "file") {
            std::string extracted = fresh + "/" + baseName(path);
            struct stat st;
            if (::lstat(extracted.c_str(), &st) < 0 || !S_ISREG(st.st_mode))
                throw sdk::Error(MO_E_INVALID, "archive " + quote(file) + " holds no file " +
                                                   quote(baseName(path)));
            if (::rename(extracted.c_str(), path.c_str()) < 0)
                throw sysError("rename into " + quote(path), errno);
        } else if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) <
                   0) {
            if (errno != ENOENT)
                throw sysError("swap " + quote(fresh) + " with " + quote(path), errno);
            if (::rename(fresh.c_str(), path.c_str()) < 0)
                throw sysError("rename " + quote(fresh) + " to " + quote(path), errno);
            fresh.clear();
        }
    } catch (const sdk::Error &e) {
        try {
            fsutil::removeTree(fresh);
        } catch (...) {
        }
        throw wrap(e, where);
    }
    if (!fresh.empty()) fsutil::removeTree(fresh); // the old tree (or what the file left)
    return {{"asset", name}, {"path", path}, {"backup", chosen["id"]}, {"sha256", digest}};
}

json Assets::verify(const std::vector<std::string> &names) {
    json report = json::array();
    bool allOk = true;
    for (const auto &rec : selected(names)) {
        bool ok = true;
        json archives = json::array();
        json recordedFiles;
        for (const auto &b : rec["backups"]) {
            std::string status = "ok";
            std::string file = b["file"];
            if (::access(file.c_str(), F_OK) < 0) {
                status = "missing";
            } else {
                try {
                    if (sha256File(file) != b["sha256"]) status = "changed";
                } catch (const sdk::Error &) {
                    status = "unreadable";
                }
            }
            std::string manifestStatus = "ok";
            json manifest;
            try {
                std::string text = readFile(b["manifest"]);
                if (sha256Of(text) != b["manifestSha256"])
                    manifestStatus = "changed";
                else
                    manifest = json::parse(text).at("files");
            } catch (const std::exception &) {
                manifestStatus = ::access(b["manifest"].get<std::string>().c_str(), F_OK) < 0
                                     ? "missing"
                                     : "unreadable";
            }
            if (status != "ok" || manifestStatus != "ok") ok = false;
            archives.push_back({{"id", b["id"]},
                                {"file", file},
                                {"status", status},
                                {"manifest", manifestStatus}});
            if (manifestStatus == "ok")
                recordedFiles = manifest;
            else
                recordedFiles = nullptr;
        }
        json live;
        std::string path = rec["path"];
        if (rec["backups"].empty()) {
            live = {{"status", "no backup"}};
        } else if (recordedFiles.is_null()) {
            live = {{"status", "no manifest to compare with"}};
            ok = false;
        } else if (::access(path.c_str(), F_OK) < 0 && errno == ENOENT) {
            live = {{"status", "missing"}};
            ok = false;
        } else {
            json diff = compareManifests(recordedFiles, manifestOfTree(path));
            bool same = diff["changed"].empty() && diff["added"].empty() && diff["removed"].empty();
            live = diff;
            live["status"] = same ? "unchanged" : "changed";
            live["backup"] = rec["backups"].back()["id"];
            ok = ok && same;
        }
        allOk = allOk && ok;
        report.push_back({{"name", rec["name"]},
                          {"path", path},
                          {"ok", ok},
                          {"archives", archives},
                          {"live", live}});
    }
    return {{"ok", allOk}, {"assets", report}};
}

} // namespace mobileops::storage
