#include "Volumes.h"

#include "Backup.h"
#include "Digest.h"
#include "Paths.h"
#include <mobileops/common/Progress.h>

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Loop.h>

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <set>

namespace mobileops::storage {

using common::quote;
using common::sysError;
using common::wrap;
using nlohmann::json;

namespace {

constexpr const char *kKind = "volume";
constexpr const char *kBackupKind = "volume-backup";
constexpr const char *kContainerKind = "container";
constexpr const char *kDefaultClassFile = "/etc/mobileops/storage-classes.yaml";

std::string lockName(const std::string &volume) { return "volume/" + volume; }

std::vector<std::string> listDir(const std::string &dir) {
    std::vector<std::string> out;
    DIR *d = ::opendir(dir.c_str());
    if (!d) return out;
    while (struct dirent *e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string absolute(const std::string &path) {
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved)) return resolved;
    // Not there yet: its parent resolved, and the last component.
    auto slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "."
                         : slash == 0               ? "/"
                                                    : path.substr(0, slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (!::realpath(parent.c_str(), resolved)) throw sysError("directory " + quote(parent), errno);
    return std::string(resolved) + (std::string(resolved) == "/" ? "" : "/") + base;
}

bool under(const std::string &path, const std::string &dir) {
    return path == dir || path.rfind(dir + "/", 0) == 0;
}

// A spec entry's `containerPath`: absolute, no `..`.
std::string containerPath(const json &entry, const std::string &where) {
    if (!entry.contains("containerPath") || !entry["containerPath"].is_string())
        throw sdk::Error(MO_E_INVALID, where + ": no `containerPath`");
    std::string p = entry["containerPath"];
    if (p.empty() || p[0] != '/')
        throw sdk::Error(MO_E_INVALID, where + ": containerPath " + quote(p) + " is not absolute");
    for (size_t s = 0; s != std::string::npos; s = p.find('/', s + 1))
        if (p.compare(s, 4, "/../") == 0 || (p.size() - s == 3 && p.compare(s, 3, "/..") == 0))
            throw sdk::Error(MO_E_INVALID,
                             where + ": containerPath " + quote(p) + " climbs with `..`");
    return p;
}

bool readOnly(const json &entry, const std::string &where) {
    if (!entry.contains("readOnly")) return false;
    if (!entry["readOnly"].is_boolean())
        throw sdk::Error(MO_E_INVALID, where + ": readOnly is not true or false");
    return entry["readOnly"];
}

} // namespace

StorageClasses loadStorageClasses(const common::Host &host, const Paths &paths) {
    std::string configured = host.config("storage.classes");
    return StorageClasses::load(paths, configured.empty() ? kDefaultClassFile : configured,
                                !configured.empty());
}

Volumes::Volumes(const common::Host &host, const Paths &paths,
                 std::optional<StorageClasses> classes)
    : _host(host), _paths(paths), _classes(std::move(classes)) {}

const StorageClasses &Volumes::classes() const {
    if (!_classes) _classes = loadStorageClasses(_host, _paths);
    return *_classes;
}

std::optional<json> Volumes::record(const std::string &name) const {
    return _host.get(kKind, name);
}

json Volumes::mustRecord(const std::string &name) const {
    checkName("volume name", name);
    auto rec = record(name);
    if (!rec) throw sdk::Error(MO_E_NOT_FOUND, "volume " + quote(name) + " does not exist");
    return *rec;
}

bool Volumes::containerExists(const std::string &id) const {
    return _host.get(kContainerKind, id).has_value();
}

std::vector<std::string> Volumes::liveUsers(const json &rec) const {
    std::vector<std::string> out;
    for (const auto &u : rec.value("users", json::array()))
        if (containerExists(u.get<std::string>())) out.push_back(u);
    return out;
}

json Volumes::create(const VolumeRequest &request) {
    checkName("volume name", request.name);
    auto lock = _host.lock(lockName(request.name));
    return createLocked(request);
}

json Volumes::createLocked(const VolumeRequest &request) {
    const std::string &name = request.name;
    const StorageClass &cls =
        request.className.empty() ? classes().defaultClass() : classes().get(request.className);
    for (const auto &[k, v] : request.labels)
        if (k.empty())
            throw sdk::Error(MO_E_INVALID, "label " + quote(k + "=" + v) + ": empty key");

    Area area;
    area.home = cls.directory + "/" + name;
    area.mechanism = cls.quota;
    std::string sizeText = cls.defaultSizeText;
    if (request.size && !request.size->empty()) {
        if (cls.quota == QuotaMechanism::None)
            throw sdk::Error(MO_E_INVALID,
                             "volume " + quote(name) + ": size " + quote(*request.size) +
                                 ": class " + quote(cls.name) +
                                 " has `quota: none` and cannot hold a volume to a "
                                 "size (use a class with `quota: loop` or `project`)");
        area.size = common::parseSize(*request.size);
        sizeText = *request.size;
    } else if (cls.defaultSize) {
        area.size = *cls.defaultSize;
    }
    if (!area.size) area.mechanism = QuotaMechanism::None, sizeText = "none";
    if (area.mechanism == QuotaMechanism::Loop) area.mountOptions = cls.mountOptions;

    json rec = {{"name", name},
                {"class", cls.name},
                {"size", area.size ? json(area.size) : json(nullptr)},
                {"sizeText", sizeText},
                {"quota", toString(area.mechanism)},
                {"area", area.toJson()},
                {"labels", request.labels},
                {"users", json::array()},
                {"created", timestamp()},
                {"status", "creating"}};
    // The record first, as "creating": it takes the name (a concurrent create of the same
    // name fails here) and marks what gc may clean after a kill.
    try {
        _host.put(kKind, name, name, rec, true);
    } catch (const sdk::Error &e) {
        if (e.code() == MO_E_EXISTS)
            throw sdk::Error(MO_E_EXISTS, "volume " + quote(name) + " already exists");
        throw;
    }
    bool madeHome = false;
    try {
        fsutil::makeDirs(cls.directory, 0700);
        if (::mkdir(area.home.c_str(), 0700) < 0) {
            if (errno == EEXIST)
                throw sdk::Error(MO_E_EXISTS, quote(area.home) +
                                                  " exists but no volume record names it (left by "
                                                  "another installation? remove it by hand)");
            throw sysError("create " + quote(area.home), errno);
        }
        madeHome = true;
        quotaBackend(area.mechanism)->create(area);
        rec["area"] = area.toJson();
        rec["status"] = "ready";
        _host.put(kKind, name, name, rec);
    } catch (...) {
        if (madeHome) {
            try {
                quotaBackend(area.mechanism)->destroy(area);
            } catch (...) {
            }
            ::rmdir(area.home.c_str());
        }
        _host.remove(kKind, name);
        try {
            throw;
        } catch (const sdk::Error &e) {
            throw wrap(e, "create volume " + quote(name));
        }
    }
    _host.event("volume.create", {{"name", name}, {"class", cls.name}});
    return rec;
}

json Volumes::list() const {
    json out = json::array();
    for (auto &rec : _host.list(kKind)) out.push_back(rec);
    return out;
}

json Volumes::inspect(const std::string &name) {
    json rec = mustRecord(name);
    Area area = Area::fromJson(rec["area"]);
    auto backend = quotaBackend(area.mechanism);
    if (rec.value("status", "") == "ready") {
        auto lock = _host.lock(lockName(name));
        backend->activate(area);
    }
    rec["mountpoint"] = area.data();
    rec["mounted"] = backend->active(area);
    if (rec["mounted"]) {
        Usage u = backend->usage(area);
        rec["used"] = u.used;
        rec["available"] = u.available ? json(*u.available) : json(nullptr);
    }
    json users = json::array();
    for (const auto &id : rec.value("users", json::array())) {
        auto c = _host.get(kContainerKind, id.get<std::string>());
        users.push_back(
            {{"id", id}, {"name", c ? c->value("name", "") : ""}, {"exists", c.has_value()}});
    }
    rec["users"] = users;
    return rec;
}

void Volumes::destroy(const json &rec) {
    Area area = Area::fromJson(rec["area"]);
    quotaBackend(area.mechanism)->destroy(area);
    if (::rmdir(area.home.c_str()) < 0 && errno != ENOENT) {
        // Leftovers of an interrupted restore: ours to remove.
        for (const auto &n : listDir(area.home))
            if (n.rfind(".restore-", 0) == 0) fsutil::removeTree(area.home + "/" + n);
        if (::rmdir(area.home.c_str()) < 0 && errno != ENOENT)
            throw sysError("remove " + quote(area.home), errno);
    }
}

void Volumes::remove(const std::string &name, bool force) {
    checkName("volume name", name);
    auto lock = _host.lock(lockName(name));
    json rec = mustRecord(name);
    if (auto users = liveUsers(rec); !users.empty() && !force) {
        std::string list;
        for (const auto &id : users) {
            auto c = _host.get(kContainerKind, id);
            list += (list.empty() ? "" : ", ") + quote(c ? c->value("name", id) : id);
        }
        throw sdk::Error(MO_E_STATE, "volume " + quote(name) + " is in use by " + list +
                                         " (delete them first, or --force)");
    }
    try {
        destroy(rec);
    } catch (const sdk::Error &e) {
        throw wrap(e, "remove volume " + quote(name));
    }
    _host.remove(kKind, name);
    _host.event("volume.remove", {{"name", name}});
}

json Volumes::prune() {
    json removed = json::array();
    uint64_t reclaimed = 0;
    for (const auto &rec : _host.list(kKind)) {
        std::string name = rec["name"];
        if (!liveUsers(rec).empty() || rec.value("status", "") != "ready") continue;
        try {
            uint64_t used = 0;
            try {
                used = inspect(name).value("used", uint64_t(0));
            } catch (...) {
            }
            remove(name, false);
            removed.push_back(name);
            reclaimed += used;
        } catch (const sdk::Error &e) {
            // In use by now, or busy: the others still go.
            _host.log(MO_LOG_WARNING, std::string("prune: ") + e.what());
        }
    }
    return {{"removed", removed}, {"reclaimed", reclaimed}};
}

json Volumes::backup(const std::string &name, const std::string &output, Progress &progress) {
    checkName("volume name", name);
    auto lock = _host.lock(lockName(name));
    json rec = mustRecord(name);
    Area area = Area::fromJson(rec["area"]);
    quotaBackend(area.mechanism)->activate(area);
    std::string file = absolute(output);
    if (under(file, area.home))
        throw sdk::Error(MO_E_INVALID, "backup " + quote(output) +
                                           " would be written into volume " + quote(name) +
                                           " itself");
    json result;
    try {
        result = writeBackup(area.data(), file, progress, "volume " + name);
    } catch (const sdk::Error &e) {
        throw wrap(e, "back up volume " + quote(name));
    }
    result["volume"] = name;
    std::string digest = result["sha256"];
    writeChecksumFile(file, digest);
    rec["backup"] = result;
    _host.put(kKind, name, name, rec);
    _host.put(kBackupKind, digestHex(digest), "",
              {{"file", file},
               {"sha256", digest},
               {"size", result["size"]},
               {"created", result["created"]},
               {"volume", name},
               {"class", rec["class"]},
               {"volumeSize", rec["size"]},
               {"volumeSizeText", rec["sizeText"]}});
    return result;
}

json Volumes::restore(const std::string &name, const std::string &archive,
                      const VolumeRequest &ifMissing, bool unverified, Progress &progress) {
    checkName("volume name", name);
    auto lock = _host.lock(lockName(name));
    std::string file = absolute(archive);
    struct stat st;
    if (::stat(file.c_str(), &st) < 0) throw sysError("backup " + quote(archive), errno);
    if (!S_ISREG(st.st_mode))
        throw sdk::Error(MO_E_INVALID, "backup " + quote(archive) + " is not a file");

    // Only an archive known to be what was written is restored: its digest recorded here
    // by `volume backup`, or in its FILE.sha256. A changed byte in a stored zstd block
    // would otherwise go unnoticed (libarchive writes no zstd checksum).
    std::string digest = sha256File(file);
    auto known = _host.get(kBackupKind, digestHex(digest));
    if (!known && !unverified) {
        std::string sidecar = readChecksumFile(file);
        std::string recorded;
        for (const auto &b : _host.list(kBackupKind))
            if (b.value("file", "") == file) recorded = b.value("sha256", "");
        if (!recorded.empty())
            throw sdk::Error(MO_E_INVALID,
                             "backup " + quote(archive) + " has changed since it was written (" +
                                 digest + ", recorded " + recorded + "): refusing to restore it");
        if (!sidecar.empty() && sidecar != digest)
            throw sdk::Error(MO_E_INVALID, "backup " + quote(archive) + " does not match " +
                                               quote(archive + ".sha256") + " (" + digest +
                                               ", expected " + sidecar +
                                               "): refusing to restore it");
        if (sidecar.empty())
            throw sdk::Error(MO_E_INVALID, "backup " + quote(archive) + " (" + digest +
                                               ") is not a backup recorded here and has no " +
                                               quote(archive + ".sha256") +
                                               " to check it against (--unverified restores it "
                                               "anyway)");
    }
    auto rec = record(name);
    bool created = false;
    if (!rec) {
        VolumeRequest req = ifMissing;
        req.name = name;
        if (req.className.empty() && known) req.className = known->value("class", "");
        if (!req.size && known && (*known)["volumeSize"].is_number())
            req.size = known->value("volumeSizeText", "");
        if (!req.className.empty()) {
            try {
                classes().get(req.className);
            } catch (const sdk::Error &) {
                if (!ifMissing.className.empty()) throw;
                req.className.clear(); // the backup's class is not configured here
            }
        }
        rec = createLocked(req);
        created = true;
    } else if (auto users = liveUsers(*rec); !users.empty()) {
        throw sdk::Error(MO_E_STATE, "volume " + quote(name) + " is in use by " +
                                         std::to_string(users.size()) +
                                         " container(s): stop and delete them before a restore");
    }
    Area area = Area::fromJson((*rec)["area"]);
    auto backend = quotaBackend(area.mechanism);
    try {
        backend->activate(area);
        backend->replace(area, [&](const std::string &dir) {
            restoreBackup(file, dir, progress, "volume " + name);
        });
    } catch (const sdk::Error &e) {
        if (created) {
            try {
                destroy(*rec);
            } catch (...) {
            }
            _host.remove(kKind, name);
        }
        throw wrap(e, "restore volume " + quote(name) + " from " + quote(archive));
    }
    (*rec)["area"] = area.toJson();
    (*rec)["restored"] = {{"file", file}, {"sha256", digest}, {"at", timestamp()}};
    _host.put(kKind, name, name, *rec);
    return {{"volume", name},
            {"file", file},
            {"sha256", digest},
            {"created", created},
            {"verified", !unverified || known.has_value()},
            {"mountpoint", area.data()}};
}

std::string Volumes::ephemeralDir(const std::string &containerId) const {
    return _paths.container(containerId) + "/ephemeral";
}

namespace {

// One entry of the spec's volumes, in either form the runtime may pass: the runtime spec's
// ({"type": "volume"|"emptyDir"|..., "name", "source", "sizeLimit", "medium", ...}) or
// the short one ({"name"}, {"ephemeral": {"size"}}, {"hostPath"}).
struct VolumeEntry {
    enum Kind { Named, Scratch, Bind } kind = Named;
    std::string volume;      // Named: the volume's name
    std::string hostPath;    // Bind
    std::string scratchName; // Scratch: its directory below ephemeral/
    uint64_t size = 0;       // Scratch: 0 for unlimited
    bool memory = false;     // Scratch: a tmpfs
    std::string destination;
    bool readOnly = false;
};

uint64_t sizeOf(const json &v, const std::string &where) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_string()) {
        try {
            return common::parseSize(v.get<std::string>());
        } catch (const sdk::Error &e) {
            throw wrap(e, where);
        }
    }
    throw sdk::Error(MO_E_INVALID, where + ": expected a size such as `5Gi` or a number of bytes");
}

VolumeEntry parseEntry(const json &v, size_t index) {
    std::string where = "volumes[" + std::to_string(index) + "]";
    if (!v.is_object()) throw sdk::Error(MO_E_INVALID, where + ": expected an object");
    static const std::set<std::string> kKeys = {"name",          "type",      "source",
                                                "containerPath", "readOnly",  "ephemeral",
                                                "hostPath",      "sizeLimit", "medium"};
    for (const auto &[k, _] : v.items())
        if (!kKeys.count(k))
            throw sdk::Error(MO_E_INVALID, where + ": field " + quote(k) + " is not supported");
    auto text = [&](const char *key) {
        if (!v.contains(key)) return std::string();
        if (!v[key].is_string())
            throw sdk::Error(MO_E_INVALID, where + "." + key + ": expected a string");
        return v[key].get<std::string>();
    };
    VolumeEntry e;
    e.destination = containerPath(v, where);
    e.readOnly = readOnly(v, where);
    std::string type = text("type");
    if (type.empty())
        type = v.contains("ephemeral")  ? "emptyDir"
               : v.contains("hostPath") ? "hostPath"
                                        : "volume";
    if (type == "volume") {
        e.kind = VolumeEntry::Named;
        e.volume = v.contains("source") ? text("source") : text("name");
        if (e.volume.empty()) throw sdk::Error(MO_E_INVALID, where + ": no volume name");
        try {
            checkName("volume name", e.volume);
        } catch (const sdk::Error &err) {
            throw wrap(err, where);
        }
    } else if (type == "emptyDir") {
        e.kind = VolumeEntry::Scratch;
        e.scratchName = std::to_string(index);
        if (v.contains("ephemeral")) {
            const json &eph = v["ephemeral"];
            if (!eph.is_object())
                throw sdk::Error(MO_E_INVALID, where + ".ephemeral: expected an object");
            for (const auto &[k, _] : eph.items())
                if (k != "size" && k != "medium")
                    throw sdk::Error(MO_E_INVALID, where + ".ephemeral: field " + quote(k) +
                                                       " is not supported (size, medium)");
            if (eph.contains("size")) e.size = sizeOf(eph["size"], where + ".ephemeral.size");
            if (eph.contains("medium")) e.memory = eph["medium"] == "Memory";
        }
        if (v.contains("sizeLimit")) e.size = sizeOf(v["sizeLimit"], where + ".sizeLimit");
        std::string medium = text("medium");
        if (!medium.empty() && medium != "Memory")
            throw sdk::Error(MO_E_INVALID,
                             where + ".medium: " + quote(medium) + " is not `Memory` or empty");
        e.memory = e.memory || medium == "Memory";
        if (e.size && !e.memory && e.size < (4u << 20))
            throw sdk::Error(MO_E_INVALID,
                             where + ": an ephemeral volume on disk holds at least `4Mi`");
    } else if (type == "hostPath") {
        e.kind = VolumeEntry::Bind;
        e.hostPath = v.contains("hostPath") ? text("hostPath") : text("source");
        if (e.hostPath.empty() || e.hostPath[0] != '/')
            throw sdk::Error(MO_E_INVALID, where + ": the host path is not absolute");
    } else {
        throw sdk::Error(MO_E_UNSUPPORTED,
                         where + ": " + quote(type) +
                             " volumes are not supported (volume, emptyDir, hostPath)");
    }
    return e;
}

// A scratch area's data on a tmpfs of `size` bytes (0: the kernel's default, half of RAM).
void mountTmpfs(const std::string &target, uint64_t size) {
    std::string options = "mode=0755" + (size ? ",size=" + std::to_string(size) : std::string());
    if (::mount("tmpfs", target.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) < 0)
        throw sysError("mount a tmpfs on " + quote(target), errno);
}

} // namespace

json Volumes::prepare(const std::string &containerId, const json &volumes) {
    if (containerId.empty() || containerId.find('/') != std::string::npos || containerId == "." ||
        containerId == "..")
        throw sdk::Error(MO_E_INVALID, "container id " + quote(containerId) + " is not valid");
    if (!volumes.is_array()) throw sdk::Error(MO_E_INVALID, "volumes: expected a list");
    // Every entry is checked before anything is touched.
    std::vector<VolumeEntry> entries;
    for (size_t i = 0; i < volumes.size(); ++i) entries.push_back(parseEntry(volumes[i], i));

    // Called again at every start: what exists is reused (and mounted again after a
    // reboot); only what this call made is undone when it fails.
    json mounts = json::array();
    std::vector<std::string> usersAdded, volumesCreated, areasMade;
    try {
        for (const auto &e : entries) {
            std::string source;
            if (e.kind == VolumeEntry::Bind) {
                source = e.hostPath;
            } else if (e.kind == VolumeEntry::Scratch) {
                Area area;
                area.home = ephemeralDir(containerId) + "/" + e.scratchName;
                area.size = e.memory ? 0 : e.size;
                area.mechanism = area.size ? QuotaMechanism::Loop : QuotaMechanism::None;
                source = area.data();
                fsutil::makeDirs(ephemeralDir(containerId), 0700);
                if (::mkdir(area.home.c_str(), 0700) == 0) {
                    areasMade.push_back(area.home);
                    if (e.memory) {
                        if (::mkdir(area.data().c_str(), 0755) < 0)
                            throw sysError("create " + quote(area.data()), errno);
                        mountTmpfs(area.data(), e.size);
                    } else {
                        quotaBackend(area.mechanism)->create(area);
                    }
                } else if (errno != EEXIST) {
                    throw sysError("create " + quote(area.home), errno);
                } else if (e.memory) {
                    if (!fsutil::isMountPoint(area.data())) mountTmpfs(area.data(), e.size);
                } else {
                    quotaBackend(area.mechanism)->activate(area);
                }
            } else {
                const std::string &name = e.volume;
                auto lock = _host.lock(lockName(name));
                auto rec = record(name);
                if (!rec) {
                    rec = createLocked({name, "", std::nullopt, {}});
                    volumesCreated.push_back(name);
                }
                if (rec->value("status", "") != "ready")
                    throw sdk::Error(MO_E_STATE, "volume " + quote(name) + " is " +
                                                     rec->value("status", "") +
                                                     " (run `mobileops system gc`?)");
                Area area = Area::fromJson((*rec)["area"]);
                try {
                    quotaBackend(area.mechanism)->activate(area);
                } catch (const sdk::Error &err) {
                    throw wrap(err, "volume " + quote(name));
                }
                json &users = (*rec)["users"];
                if (std::find(users.begin(), users.end(), containerId) == users.end()) {
                    users.push_back(containerId);
                    _host.put(kKind, name, name, *rec);
                    usersAdded.push_back(name);
                }
                source = area.data();
            }
            mounts.push_back(
                {{"source", source}, {"destination", e.destination}, {"readOnly", e.readOnly}});
        }
    } catch (...) {
        for (const auto &name : usersAdded) {
            try {
                auto lock = _host.lock(lockName(name));
                if (auto rec = record(name)) {
                    json &users = (*rec)["users"];
                    users.erase(std::remove(users.begin(), users.end(), containerId), users.end());
                    _host.put(kKind, name, name, *rec);
                }
            } catch (...) {
            }
        }
        for (const auto &name : volumesCreated) {
            try {
                auto lock = _host.lock(lockName(name));
                if (auto rec = record(name)) {
                    destroy(*rec);
                    _host.remove(kKind, name);
                }
            } catch (...) {
            }
        }
        for (const auto &home : areasMade) {
            try {
                removeArea(home);
            } catch (...) {
            }
        }
        ::rmdir(ephemeralDir(containerId).c_str());
        throw;
    }
    return mounts;
}

// Whatever is mounted there (a loop image, a tmpfs), then the files.
void Volumes::removeArea(const std::string &home) {
    for (const auto &m : fsutil::mountsBelow(home))
        if (::umount2(m.c_str(), UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
            throw sysError("unmount " + quote(m), errno);
    fsutil::removeTree(home);
}

std::vector<std::string> Volumes::releaseEphemeral(const std::string &containerId) {
    std::vector<std::string> done;
    std::string dir = ephemeralDir(containerId);
    for (const auto &n : listDir(dir)) {
        removeArea(dir + "/" + n);
        done.push_back(dir + "/" + n);
    }
    if (::rmdir(dir.c_str()) < 0 && errno != ENOENT) throw sysError("remove " + quote(dir), errno);
    // The container's directory is the rootfs code's; remove it only if we emptied it.
    ::rmdir(_paths.container(containerId).c_str());
    return done;
}

void Volumes::release(const std::string &containerId) {
    for (const auto &listed : _host.list(kKind)) {
        const json &users = listed.value("users", json::array());
        if (std::find(users.begin(), users.end(), containerId) == users.end()) continue;
        std::string name = listed["name"];
        auto lock = _host.lock(lockName(name));
        auto rec = record(name);
        if (!rec) continue;
        json &u = (*rec)["users"];
        u.erase(std::remove(u.begin(), u.end(), containerId), u.end());
        _host.put(kKind, name, name, *rec);
    }
    releaseEphemeral(containerId);
}

json Volumes::gc() {
    json released = json::array();
    auto note = [&](const std::string &what) { released.push_back(what); };

    // Scratch areas of containers that are gone.
    for (const auto &id : listDir(_paths.containers())) {
        struct stat st;
        if (::stat(ephemeralDir(id).c_str(), &st) < 0 || containerExists(id)) continue;
        try {
            for (const auto &home : releaseEphemeral(id)) note("ephemeral volume " + home);
        } catch (const sdk::Error &e) {
            note(std::string("ephemeral volumes of ") + id + ": " + e.what());
        }
    }

    // Records of backups whose archive is gone.
    for (const auto &b : _host.list(kBackupKind)) {
        std::string file = b.value("file", "");
        if (::access(file.c_str(), F_OK) == 0 || errno != ENOENT) continue;
        _host.remove(kBackupKind, digestHex(b.value("sha256", "")));
        note("backup record of " + file + " (archive gone)");
    }

    for (const auto &listed : _host.list(kKind)) {
        std::string name = listed["name"];
        common::Host::Lock lock;
        try {
            lock = _host.lock(lockName(name), true);
        } catch (const sdk::Error &) {
            continue; // a command is working on it
        }
        auto rec = record(name);
        if (!rec) continue;
        Area area = Area::fromJson((*rec)["area"]);
        if (rec->value("status", "") == "creating") {
            // Its create was killed: the lock is free, nobody will finish it.
            try {
                destroy(*rec);
            } catch (...) {
            }
            ::rmdir(area.home.c_str());
            _host.remove(kKind, name);
            note("volume " + name + " (left half-created)");
            continue;
        }
        json &users = (*rec)["users"];
        json kept = json::array();
        for (const auto &u : users) {
            if (containerExists(u))
                kept.push_back(u);
            else
                note("volume " + name + ": user " + u.get<std::string>() + " (container gone)");
        }
        if (kept.size() != users.size()) {
            users = kept;
            _host.put(kKind, name, name, *rec);
        }
        // An interrupted restore leaves its fresh copy beside the data.
        for (const auto &n : listDir(area.home)) {
            if (n.rfind(".restore-", 0) != 0) continue;
            std::string path = area.home + "/" + n;
            try {
                if (fsutil::isMountPoint(path)) ::umount2(path.c_str(), MNT_DETACH);
                fsutil::removeTree(path);
                note("volume " + name + ": " + path + " (left by an interrupted restore)");
            } catch (const sdk::Error &e) {
                note("volume " + name + ": " + e.what());
            }
        }
        try {
            if (quotaBackend(area.mechanism)->activate(area))
                note("volume " + name + ": mounted again");
        } catch (const sdk::Error &e) {
            note("volume " + name + ": " + e.what());
        }
    }
    return {{"released", released}};
}

} // namespace mobileops::storage
