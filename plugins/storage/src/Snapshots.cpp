#include "Snapshots.h"

#include "Archive.h"
#include "Backup.h"
#include "Digest.h"
#include "Quota.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Names.h>
#include <mobileops/plugin.hpp>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

namespace {

constexpr const char *kContainer = "container"; // the runtime's records
constexpr const char *kRootfs = "rootfs";       // the image store's container roots
constexpr const char *kSnapshot = "snapshot";

bool isHex64(const std::string &s) {
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

void checkSnapshotName(const std::string &name) { common::checkName("snapshot name", name); }

std::string display(const std::string &name, const std::string &id) {
    return quote(name.empty() ? id.substr(0, 12) : name);
}

bool isDirectory(const std::string &path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

} // namespace

Snapshots::Container Snapshots::container(const std::string &ref, bool mustExist) const {
    if (ref.empty()) throw sdk::Error(MO_E_INVALID, "no container given");
    std::optional<json> rec;
    if (isHex64(ref)) rec = _host.get(kContainer, ref);
    if (!rec) rec = _host.find(kContainer, ref);
    if (!rec) {
        if (!mustExist && isHex64(ref)) return {ref, "", ""};
        throw sdk::Error(MO_E_NOT_FOUND, "no such container " + quote(ref));
    }
    return {rec->value("id", ""), rec->value("name", ""), rec->value("status", "")};
}

json Snapshots::rootfs(const Container &c) const {
    auto rec = _host.get(kRootfs, c.id);
    if (!rec || !(*rec)["upper"].is_string())
        throw sdk::Error(MO_E_STATE, "container " + display(c.name, c.id) +
                                         " has no writable layer in the image store: it does "
                                         "not run from an image");
    std::string upper = (*rec)["upper"];
    if (!isDirectory(upper))
        throw sdk::Error(MO_E_STATE, "container " + display(c.name, c.id) +
                                         ": its writable layer " + quote(upper) + " is missing");
    return *rec;
}

std::string Snapshots::file(const std::string &id, const std::string &snapshot) const {
    return _paths.snapshots() + "/" + id + "/" + snapshot + ".tar.zst";
}

json Snapshots::create(const std::string &ref, const std::string &snapshot) {
    if (!snapshot.empty()) checkSnapshotName(snapshot);
    Container c = container(ref);
    auto lock = _host.lock("container/" + c.id);
    auto layer = _host.lock("storage/rootfs/" + c.id);
    const std::string upper = rootfs(c)["upper"];

    std::string name = snapshot;
    if (name.empty()) {
        // two snapshots in one second get a suffix
        const std::string base = fileTimestamp();
        name = base;
        for (int n = 2; _host.get(kSnapshot, c.id + "/" + name); ++n)
            name = base + "-" + std::to_string(n);
    } else if (_host.get(kSnapshot, c.id + "/" + name)) {
        throw sdk::Error(MO_E_EXISTS, "container " + display(c.name, c.id) +
                                          " already has a snapshot " + quote(name));
    }

    _paths.create();
    const std::string dir = _paths.snapshots() + "/" + c.id;
    if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST)
        throw common::sysError("create " + quote(dir), errno);
    const std::string out = file(c.id, name);
    WriteOptions options;
    options.compression = Compression::Zstd;
    options.overlayWhiteouts = true;
    options.rootEntry = true; // the mode and owner of the container's `/`
    WriteResult written;
    try {
        written = writeTree(upper, out, options);
    } catch (const sdk::Error &e) {
        throw common::wrap(e, "snapshot " + quote(name) + " of " + display(c.name, c.id));
    }
    json rec = {{"container", c.id},
                {"containerName", c.name},
                {"snapshot", name},
                {"file", out},
                {"sha256", written.digest},
                {"size", written.size},
                {"created", timestamp()},
                {"image", _host.get(kRootfs, c.id).value_or(json::object()).value("image", "")}};
    try {
        _host.put(kSnapshot, c.id + "/" + name, "", rec, true);
    } catch (...) {
        ::unlink(out.c_str());
        throw;
    }
    return rec;
}

json Snapshots::restore(const std::string &ref, const std::string &snapshot) {
    if (snapshot.empty()) throw sdk::Error(MO_E_INVALID, "no snapshot given");
    checkSnapshotName(snapshot);
    Container c = container(ref);
    const std::string what = "restore snapshot " + quote(snapshot) + " of " + display(c.name, c.id);
    // Under the container's lock nothing starts it while its layer is swapped.
    auto lock = _host.lock("container/" + c.id);
    auto record = _host.get(kContainer, c.id);
    if (!record) throw sdk::Error(MO_E_NOT_FOUND, "no such container " + quote(ref));
    std::string status = record->value("status", "");
    pid_t pid = record->value("pid", 0);
    if ((status == "running" || status == "paused") && pid > 0 &&
        (::kill(pid, 0) == 0 || errno == EPERM))
        throw sdk::Error(MO_E_STATE, what + ": the container is running: stop it first");
    if (status == "creating")
        throw sdk::Error(MO_E_STATE, what + ": the container is still being created");

    auto rec = _host.get(kSnapshot, c.id + "/" + snapshot);
    if (!rec)
        throw sdk::Error(MO_E_NOT_FOUND, "container " + display(c.name, c.id) +
                                             " has no snapshot " + quote(snapshot) +
                                             " (see `mobileops container snapshots " +
                                             (c.name.empty() ? c.id : c.name) + "`)");
    const std::string archive = rec->value("file", file(c.id, snapshot));
    std::string digest;
    try {
        digest = sha256File(archive);
    } catch (const sdk::Error &e) {
        throw common::wrap(e, what);
    }
    if (digest != rec->value("sha256", ""))
        throw sdk::Error(MO_E_INVALID, what + ": the archive " + quote(archive) + " is corrupt (" +
                                           "sha256 " + quote(digest) + ", recorded " +
                                           quote(rec->value("sha256", "")) +
                                           "); the container is untouched");

    auto layer = _host.lock("storage/rootfs/" + c.id);
    json root = rootfs(c);
    const std::string upper = root["upper"];
    // Next to the layer: the same filesystem (the loop-mounted one under a disk limit),
    // so the swap is one rename.
    const std::string fresh = upper + ".restore-" + std::to_string(::getpid());
    fsutil::removeTree(fresh); // a restore killed before its swap
    ExtractOptions options;
    options.whiteouts = Whiteouts::Overlay;
    options.allowDevices = true; // the archive hashed to what this store wrote
    try {
        extract(archive, fresh, options);
    } catch (const sdk::Error &e) {
        throw sdk::Error(e.code(), what + ": " + e.what() + "; the container is untouched");
    }
    // overlayfs must not see its upper layer change under it: the next start mounts again.
    const std::string merged = root.value("path", "");
    if (!merged.empty() && fsutil::isMountPoint(merged) && ::umount2(merged.c_str(), 0) < 0) {
        int err = errno;
        fsutil::removeTree(fresh);
        throw common::sysError(
            what + ": unmount its root " + quote(merged) + " (the container is untouched)", err);
    }
    if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, upper.c_str(), RENAME_EXCHANGE) < 0) {
        int err = errno;
        fsutil::removeTree(fresh);
        throw common::sysError(what + ": swap in the restored layer", err);
    }
    try {
        fsutil::removeTree(fresh); // the old layer, under the temporary name now
    } catch (const sdk::Error &e) {
        _host.log(MO_LOG_WARNING,
                  what + ": the old layer stays at " + quote(fresh) + ": " + e.what());
    }
    return {{"container", c.id},
            {"containerName", c.name},
            {"snapshot", snapshot},
            {"sha256", digest},
            {"restored", timestamp()}};
}

json Snapshots::list(const std::string &ref) const {
    Container c = container(ref, false);
    std::vector<json> out;
    for (auto &r : _host.list(kSnapshot))
        if (r.value("container", "") == c.id) out.push_back(std::move(r));
    std::sort(out.begin(), out.end(), [](const json &a, const json &b) {
        return std::make_pair(a.value("created", ""), a.value("snapshot", "")) <
               std::make_pair(b.value("created", ""), b.value("snapshot", ""));
    });
    return out;
}

json Snapshots::remove(const std::string &ref, const std::string &snapshot) {
    if (!snapshot.empty()) checkSnapshotName(snapshot);
    Container c = container(ref, false);
    json removed = json::array();
    auto drop = [&](const json &rec) {
        std::string name = rec.value("snapshot", "");
        std::string path = rec.value("file", file(c.id, name));
        if (::unlink(path.c_str()) < 0 && errno != ENOENT)
            throw common::sysError("remove snapshot " + quote(name) + ": " + quote(path), errno);
        _host.remove(kSnapshot, c.id + "/" + name);
        removed.push_back(name);
    };
    if (!snapshot.empty()) {
        auto rec = _host.get(kSnapshot, c.id + "/" + snapshot);
        if (!rec)
            throw sdk::Error(MO_E_NOT_FOUND, "container " + display(c.name, c.id) +
                                                 " has no snapshot " + quote(snapshot));
        drop(*rec);
    } else {
        for (const auto &rec : list(c.id)) drop(rec);
    }
    ::rmdir((_paths.snapshots() + "/" + c.id).c_str()); // once empty
    return {{"container", c.id}, {"removed", removed}};
}

void registerSnapshotMethods(sdk::Plugin &plugin, const common::Host &host, const Paths &paths) {
    auto snapshots = std::make_shared<Snapshots>(host, paths);
    auto args = [](const std::string &text) {
        json a = text.empty() ? json::object() : json::parse(text, nullptr, false);
        if (a.is_discarded() || !a.is_object())
            throw sdk::Error(MO_E_INVALID, "arguments: expected a JSON object");
        return a;
    };
    auto str = [](const json &a, const char *key) {
        auto it = a.find(key);
        if (it == a.end() || it->is_null()) return std::string();
        if (!it->is_string())
            throw sdk::Error(MO_E_INVALID, std::string("invalid '") + key + "': expected a string");
        return it->get<std::string>();
    };
    plugin.method(
        "container_snapshot", "save a container's writable layer as a snapshot",
        [=](const std::string &t) {
            json a = args(t);
            return snapshots->create(str(a, "container"), str(a, "snapshot")).dump();
        },
        "{container (name or id), snapshot (default: the UTC time)}");
    plugin.method(
        "container_restore", "put a snapshot back as a stopped container's writable layer",
        [=](const std::string &t) {
            json a = args(t);
            return snapshots->restore(str(a, "container"), str(a, "snapshot")).dump();
        },
        "{container, snapshot}");
    plugin.method(
        "container_snapshots", "a container's snapshots, oldest first",
        [=](const std::string &t) { return snapshots->list(str(args(t), "container")).dump(); },
        "{container}");
    plugin.method(
        "container_snapshot_rm", "remove a container's snapshot, or all of them",
        [=](const std::string &t) {
            json a = args(t);
            return snapshots->remove(str(a, "container"), str(a, "snapshot")).dump();
        },
        "{container (name or id, also of a deleted container), snapshot (default: all)}");
}

} // namespace mobileops::storage
