#include "Images.h"

#include "Digest.h"
#include "Reference.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>
#include <mobileops/common/Integrity.h>
#include <mobileops/common/Loop.h>
#include <mobileops/common/Mounts.h>
#include <mobileops/common/Time.h>
#include <mobileops/services.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char *kImage = "image";
constexpr const char *kName = "image-name";
constexpr const char *kRootfs = "rootfs";
constexpr const char *kContainer = "container";

sdk::Error notFound(const std::string &ref) {
    return sdk::Error(MO_E_NOT_FOUND, "image " + quote(ref) +
                                          " is not in the store (mobileops image pull, load or "
                                          "import it first)");
}

// RFC 3339 with nanoseconds, as docker writes `created`: two imports of the same tree
// in one second are still two images.
using common::nowRfc3339;

bool isHex(const std::string &s) {
    return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

void writeFile(const std::string &path, const std::string &bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw common::sysError("write " + quote(path), errno ? errno : EIO);
}

void removeTree(const std::string &path) {
    std::error_code ec;
    fs::remove_all(path, ec);
}

void makeDir(const std::string &path, mode_t mode = 0700) {
    if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
        throw common::sysError("create " + quote(path), errno);
}

void unmount(const std::string &path) {
    for (int i = 0; i < 8 && common::isMountPoint(path); ++i)
        if (::umount2(path.c_str(), 0) < 0) {
            if (errno == EBUSY) {
                ::umount2(path.c_str(), MNT_DETACH);
            } else if (errno != EINVAL && errno != ENOENT) {
                throw common::sysError("unmount " + quote(path), errno);
            }
        }
}

// The overlay: lower layers top first. The new mount API takes one lower layer at a time
// ("lowerdir+", Linux 6.8), so no option string limits the number of layers; older
// kernels get the classic mount(2) with a joined option string.
void mountOverlay(const std::vector<std::string> &lowers, const std::string &upper,
                  const std::string &work, const std::string &target) {
    int fsfd = ::fsopen("overlay", FSOPEN_CLOEXEC);
    if (fsfd >= 0) {
        bool ok = true;
        for (const std::string &lower : lowers)
            ok = ok && ::fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", lower.c_str(), 0) == 0;
        if (ok) {
            ok = ::fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", upper.c_str(), 0) == 0 &&
                 ::fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", work.c_str(), 0) == 0;
            if (!ok) {
                int err = errno;
                ::close(fsfd);
                throw common::sysError("overlay for " + quote(target), err);
            }
            if (::fsconfig(fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
                int err = errno;
                ::close(fsfd);
                throw common::sysError("overlay for " + quote(target), err);
            }
            int mfd = ::fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
            int err = errno;
            ::close(fsfd);
            if (mfd < 0) throw common::sysError("overlay for " + quote(target), err);
            int rc = ::move_mount(mfd, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
            err = errno;
            ::close(mfd);
            if (rc < 0) throw common::sysError("mount overlay on " + quote(target), err);
            return;
        }
        ::close(fsfd);
    }
    std::string options = "lowerdir=";
    for (size_t i = 0; i < lowers.size(); ++i) options += (i ? ":" : "") + lowers[i];
    options += ",upperdir=" + upper + ",workdir=" + work;
    if (::mount("overlay", target.c_str(), "overlay", 0, options.c_str()) < 0)
        throw common::sysError("mount overlay on " + quote(target) + " (" +
                                   std::to_string(lowers.size()) + " layers)",
                               errno);
}

bool pidAlive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// The compression of a file by its first bytes.
enum class Magic { None, Gzip, Zstd, Other };
Magic magicOf(const std::string &file) {
    unsigned char b[6] = {};
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw common::sysError("open " + quote(file), errno);
    ssize_t n = ::read(fd, b, sizeof b);
    ::close(fd);
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return Magic::Gzip;
    if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) return Magic::Zstd;
    if (n >= 6 && b[0] == 0xfd && b[1] == '7' && b[2] == 'z' && b[3] == 'X') return Magic::Other;
    if (n >= 3 && b[0] == 'B' && b[1] == 'Z' && b[2] == 'h') return Magic::Other;
    return Magic::None;
}

} // namespace

std::string shortId(const std::string &digest) {
    std::string hex = digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
    return hex.substr(0, 12);
}

ImageStore::ImageStore(const common::Host &host, const Paths &paths) : _host(host), _paths(paths) {
    _paths.create();
}

ImageStore::~ImageStore() {
    if (!_ingestMarker.empty()) ::unlink(_ingestMarker.c_str());
}

void ImageStore::protect(const std::string &digest) {
    std::string line = digestHex(digest) + "\n";
    if (_ingestMarker.empty())
        _ingestMarker = _paths.tmp() + "/" + std::to_string(::getpid()) + "-ingest";
    int fd = ::open(_ingestMarker.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw common::sysError("write " + quote(_ingestMarker), errno);
    ssize_t n = ::write(fd, line.data(), line.size());
    int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(line.size()))
        throw common::sysError("write " + quote(_ingestMarker), n < 0 ? err : EIO);
}

std::set<std::string> ImageStore::protectedDigests() const {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(_paths.tmp(), ec)) {
        std::string file = entry.path().filename().string();
        if (file.size() < 7 || file.compare(file.size() - 7, 7, "-ingest") != 0) continue;
        if (!pidAlive(static_cast<pid_t>(std::atoi(file.c_str())))) continue;
        std::ifstream in(entry.path());
        for (std::string hex; std::getline(in, hex);) out.insert(hex);
    }
    return out;
}

std::string ImageStore::tempPath(const std::string &what) const {
    static std::mt19937_64 rng(std::random_device{}());
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
    return _paths.tmp() + "/" + std::to_string(::getpid()) + "-" + buf + "-" + what;
}

// --- names and lookups ---

std::string ImageStore::qualify(const std::string &name) { return Reference::parse(name).str(); }

std::string ImageStore::familiar(const std::string &name) {
    try {
        return Reference::parse(name).familiar();
    } catch (...) {
        return name;
    }
}

json ImageStore::record(const std::string &id) const {
    auto doc = _host.get(kImage, id);
    if (!doc) throw notFound(id);
    return *doc;
}

std::optional<json> ImageStore::find(const std::string &ref) const {
    if (ref.empty()) return std::nullopt;
    // An id, whole or abbreviated (at least 12 hex digits, as image lists show them).
    std::string hex = ref.rfind("sha256:", 0) == 0 ? ref.substr(7) : ref;
    if (isHex(hex) && hex.size() >= 12) {
        if (hex.size() == 64) {
            if (auto doc = _host.get(kImage, "sha256:" + hex)) return doc;
        } else {
            std::optional<json> match;
            for (json &doc : _host.list(kImage)) {
                if (doc.value("id", "").compare(7, hex.size(), hex) != 0) continue;
                if (match)
                    throw sdk::Error(MO_E_INVALID,
                                     "image id " + quote(ref) + " matches more than one image");
                match = std::move(doc);
            }
            if (match) return match;
        }
    }
    std::string name;
    try {
        Reference r = Reference::parse(ref);
        if (!r.digest.empty()) {
            // name@digest: the manifest digest identifies the image
            for (json &doc : _host.list(kImage))
                if (doc.value("digest", "") == r.digest) return std::move(doc);
            return std::nullopt;
        }
        name = r.str();
        if (auto n = _host.get(kName, name)) return _host.get(kImage, n->value("id", ""));
        // "myapp" also finds what podman calls localhost/myapp
        if (ref.find('/') == std::string::npos) {
            Reference local = r;
            local.registry = "localhost";
            local.repository = ref.substr(0, ref.find(':'));
            if (auto n = _host.get(kName, local.str()))
                return _host.get(kImage, n->value("id", ""));
        }
    } catch (const sdk::Error &) {
        if (!(isHex(hex) && hex.size() >= 12)) throw;
    }
    return std::nullopt;
}

json ImageStore::resolve(const std::string &ref) const {
    auto doc = find(ref);
    if (!doc) throw notFound(ref);
    return *doc;
}

std::vector<std::string> ImageStore::namesOf(const std::string &id) const {
    std::vector<std::string> names;
    for (const json &n : _host.list(kName))
        if (n.value("id", "") == id) names.push_back(n.value("name", ""));
    std::sort(names.begin(), names.end());
    return names;
}

json ImageStore::list() const {
    json out = json::array();
    for (json doc : _host.list(kImage)) {
        doc["names"] = namesOf(doc.value("id", ""));
        json familiarNames = json::array();
        for (const auto &n : doc["names"]) familiarNames.push_back(familiar(n.get<std::string>()));
        doc["familiarNames"] = familiarNames;
        doc.erase("configBlob");
        doc["flattened"] = flatInfo(doc.value("id", ""));
        out.push_back(doc);
    }
    return out;
}

json ImageStore::inspect(const std::string &ref) const {
    json doc = resolve(ref);
    doc["names"] = namesOf(doc.value("id", ""));
    try {
        doc["config"] = json::parse(readBlob(doc.value("id", "")));
    } catch (const json::exception &) {
    }
    json users = json::array();
    for (const json &c : _host.list(kContainer))
        if (c.contains("spec") && c["spec"].value("imageId", "") == doc.value("id", ""))
            users.push_back(c.value("name", c.value("id", "")));
    doc["containers"] = users;
    doc["flattened"] = flatInfo(doc.value("id", ""));
    return doc;
}

json ImageStore::tag(const std::string &ref, const std::string &name) {
    json image = resolve(ref);
    std::string full = qualify(name);
    if (!Reference::parse(full).digest.empty())
        throw sdk::Error(MO_E_INVALID, "tag " + quote(name) + ": a name cannot carry a digest");
    auto lock = _host.lock("storage/images");
    _host.put(kName, full, full, {{"name", full}, {"id", image.value("id", "")}});
    return {{"id", image.value("id", "")}, {"name", full}};
}

// --- blobs ---

bool ImageStore::hasBlob(const std::string &digest) const {
    struct stat st;
    return ::stat(_paths.blob(digest).c_str(), &st) == 0;
}

std::string ImageStore::readBlob(const std::string &digest) const {
    std::ifstream in(_paths.blob(digest), std::ios::binary);
    if (!in) throw sdk::Error(MO_E_NOT_FOUND, "blob " + quote(digest) + " is not in the store");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string ImageStore::putBlobFile(const std::string &file, const std::string &expected,
                                    bool move) {
    std::string digest = sha256File(file);
    if (!expected.empty() && digest != expected)
        throw sdk::Error(MO_E_INVALID, "blob " + quote(expected) + " does not match its digest (" +
                                           quote(file) + " hashes to " + quote(digest) + ")");
    protect(digest);
    std::string dest = _paths.blob(digest);
    if (hasBlob(digest)) {
        if (move) ::unlink(file.c_str());
        return digest;
    }
    if (move && ::rename(file.c_str(), dest.c_str()) == 0) return digest;
    std::string tmp = tempPath("blob");
    std::error_code ec;
    fs::copy_file(file, tmp, ec);
    if (ec) throw sdk::Error(-EIO, "copy " + quote(file) + ": " + ec.message());
    if (::rename(tmp.c_str(), dest.c_str()) < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw common::sysError("store blob " + quote(digest), err);
    }
    if (move) ::unlink(file.c_str());
    return digest;
}

std::string ImageStore::putBlobBytes(const std::string &bytes, const std::string &expected) {
    std::string digest = sha256Of(bytes);
    if (!expected.empty() && digest != expected)
        throw sdk::Error(MO_E_INVALID,
                         "blob " + quote(expected) + " does not match its digest " + quote(digest));
    protect(digest);
    if (hasBlob(digest)) return digest;
    std::string tmp = tempPath("blob");
    writeFile(tmp, bytes);
    if (::rename(tmp.c_str(), _paths.blob(digest).c_str()) < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw common::sysError("store blob " + quote(digest), err);
    }
    return digest;
}

// --- layers ---

std::string ImageStore::ensureLayer(const LayerRef &layer, const IngestOptions &options,
                                    Progress *progress) {
    protect(layer.digest);
    if (!layer.diffId.empty()) protect(layer.diffId);
    struct stat st;
    if (!layer.diffId.empty() && ::stat(_paths.layer(layer.diffId).c_str(), &st) == 0) {
        if (progress) progress->finish(layer.digest, "already present");
        return layer.diffId;
    }
    auto lock = _host.lock("storage/layer/" + digestHex(layer.digest));
    if (!layer.diffId.empty() && ::stat(_paths.layer(layer.diffId).c_str(), &st) == 0)
        return layer.diffId;
    std::string work = tempPath("layer");
    makeDir(work);
    ExtractOptions extractOptions;
    extractOptions.whiteouts = Whiteouts::Overlay;
    extractOptions.allowDevices = options.allowDevices;
    std::string label = "layer " + shortId(layer.digest);
    if (progress && progress->enabled()) {
        progress->start(layer.digest, label, layer.size);
        extractOptions.progress = [progress, &layer](uint64_t done, uint64_t) {
            progress->update(layer.digest, done);
        };
    }
    ExtractResult result;
    try {
        result = extract(_paths.blob(layer.digest), work + "/fs", extractOptions);
    } catch (const sdk::Error &e) {
        removeTree(work);
        if (progress) progress->finish(layer.digest, "failed");
        throw sdk::Error(e.code(), "layer " + quote(layer.digest) + ": " + e.what());
    }
    if (!layer.diffId.empty() && result.diffId != layer.diffId) {
        removeTree(work);
        throw sdk::Error(MO_E_INVALID, "layer " + quote(layer.digest) + " unpacks to " +
                                           quote(result.diffId) + ", but the image says " +
                                           quote(layer.diffId));
    }
    json meta = {{"diffId", result.diffId},
                 {"digest", layer.digest},
                 {"size", result.size},
                 {"unpackedSize", result.unpackedSize},
                 {"entries", result.entries}};
    writeFile(work + "/layer.json", meta.dump());
    protect(result.diffId);
    std::string dest = _paths.layer(result.diffId);
    if (::rename(work.c_str(), dest.c_str()) < 0) {
        int err = errno;
        removeTree(work);
        if (err != EEXIST && err != ENOTEMPTY)
            throw common::sysError("store layer " + quote(result.diffId), err);
    }
    if (progress) progress->finish(layer.digest, "extracted");
    return result.diffId;
}

// --- commit ---

json ImageStore::commit(const std::string &manifestBytes, const std::string &configBytes,
                        const std::vector<LayerRef> &layers, const std::vector<std::string> &names,
                        const std::string &source) {
    json config;
    try {
        config = json::parse(configBytes);
    } catch (const json::exception &e) {
        throw sdk::Error(MO_E_INVALID, std::string("image config is not JSON: ") + e.what());
    }
    std::string manifestDigest = putBlobBytes(manifestBytes);
    std::string id = putBlobBytes(configBytes);
    uint64_t size = 0;
    json layerDocs = json::array();
    for (const LayerRef &l : layers) {
        uint64_t unpacked = 0;
        std::ifstream meta(_paths.layer(l.diffId) + "/layer.json");
        if (meta) {
            try {
                unpacked = json::parse(meta).value("unpackedSize", 0ull);
            } catch (const json::exception &) {
            }
        }
        size += unpacked;
        layerDocs.push_back({{"digest", l.digest},
                             {"diffId", l.diffId},
                             {"mediaType", l.mediaType},
                             {"size", l.size},
                             {"unpackedSize", unpacked}});
    }
    json manifest = json::parse(manifestBytes);
    json doc = {{"id", id},
                {"digest", manifestDigest},
                {"manifestMediaType", manifest.value("mediaType", media::kOciManifest)},
                {"created", config.value("created", nowRfc3339())},
                {"os", config.value("os", "linux")},
                {"architecture", config.value("architecture", "amd64")},
                {"size", size},
                {"layers", layerDocs},
                {"source", source},
                {"stored", nowRfc3339()}};
    auto lock = _host.lock("storage/images");
    common::Host::Transaction tx(_host);
    _host.put(kImage, id, "", doc);
    std::vector<std::string> full;
    for (const std::string &n : names) {
        full.push_back(qualify(n));
        _host.put(kName, full.back(), full.back(), {{"name", full.back()}, {"id", id}});
    }
    tx.commit();
    recordManifests(id, layers);
    doc["names"] = namesOf(id);
    return doc;
}

// The integrity service's manifests of the image's layers (each once: layers are shared)
// and of the image itself, taken right after the layers were extracted from archives
// whose every byte was checked against its digest.
json ImageStore::recordManifests(const std::string &id, const std::vector<LayerRef> &layers,
                                 bool again) {
    if (!_host.lookup(MO_SERVICE_INTEGRITY)) return nullptr;
    for (const LayerRef &l : layers) {
        if (!again && common::hasManifest(_host, "layer:" + l.diffId)) continue;
        if (!common::recordManifest(_host, "layer:" + l.diffId, _paths.layer(l.diffId) + "/fs"))
            return nullptr;
    }
    auto image = common::recordManifest(_host, "image:" + id, "");
    return image ? *image : json(nullptr);
}

json ImageStore::recordManifests(const std::string &ref, bool again) {
    json image = resolve(ref);
    std::vector<LayerRef> layers;
    for (const json &l : image.value("layers", json::array())) {
        LayerRef layer;
        layer.diffId = l.value("diffId", "");
        layer.digest = l.value("digest", "");
        layers.push_back(layer);
    }
    json result = recordManifests(image.value("id", ""), layers, again);
    if (result.is_null())
        throw sdk::Error(MO_E_UNSUPPORTED,
                         "no manifest recorded for image " + quote(ref) +
                             ": the integrity plugin is missing or failed (see the warning)");
    return result;
}

// --- import and build-rootfs ---

json ImageStore::importTarball(const std::string &file, const std::string &name,
                               const IngestOptions &options) {
    struct stat st;
    if (::stat(file.c_str(), &st) < 0) throw common::sysError("import " + quote(file), errno);
    if (!S_ISREG(st.st_mode)) throw sdk::Error(MO_E_INVALID, quote(file) + " is not a file");
    if (!name.empty()) qualify(name); // refuse a bad name before any work

    Progress progress = Progress::forTerminal(options.quiet);
    // Extract first: the tarball is untrusted, and only a tree that extracted whole is
    // worth a blob.
    std::string work = tempPath("import");
    makeDir(work);
    ExtractOptions eo;
    eo.whiteouts = Whiteouts::Refuse;
    eo.allowDevices = options.allowDevices;
    std::string label = "import " + fs::path(file).filename().string();
    progress.start(file, label, static_cast<uint64_t>(st.st_size));
    if (progress.enabled())
        eo.progress = [&progress, &file](uint64_t done, uint64_t) { progress.update(file, done); };
    ExtractResult result;
    try {
        result = extract(file, work + "/fs", eo);
    } catch (...) {
        removeTree(work);
        progress.finish(file, "failed");
        throw;
    }
    progress.finish(file, "extracted");

    // The blob: the file itself when OCI has a media type for its compression, else
    // (xz, bzip2) the tree written again as a plain tar.
    LayerRef layer;
    layer.diffId = result.diffId;
    protect(layer.diffId);
    try {
        Magic magic = magicOf(file);
        if (magic == Magic::Other) {
            // the same tar stream, uncompressed: its digest is the diffID
            decompressBlob(file, work + "/layer.tar");
            layer.digest = putBlobFile(work + "/layer.tar", result.diffId, true);
            layer.mediaType = media::kOciLayer;
            struct stat bst;
            layer.size = ::stat(_paths.blob(layer.digest).c_str(), &bst) == 0
                             ? static_cast<uint64_t>(bst.st_size)
                             : 0;
        } else {
            layer.digest = putBlobFile(file, result.digest, false);
            layer.mediaType = magic == Magic::Gzip   ? media::kOciLayerGzip
                              : magic == Magic::Zstd ? media::kOciLayerZstd
                                                     : media::kOciLayer;
            layer.size = result.size;
        }
        json meta = {{"diffId", layer.diffId},
                     {"digest", layer.digest},
                     {"size", layer.size},
                     {"unpackedSize", result.unpackedSize},
                     {"entries", result.entries}};
        writeFile(work + "/layer.json", meta.dump());
        ::unlink((work + "/layer.tar").c_str());
        struct stat lst;
        if (::stat(_paths.layer(layer.diffId).c_str(), &lst) == 0) {
            removeTree(work);
        } else if (::rename(work.c_str(), _paths.layer(layer.diffId).c_str()) < 0) {
            int err = errno;
            removeTree(work);
            if (err != EEXIST && err != ENOTEMPTY)
                throw common::sysError("store layer " + quote(layer.diffId), err);
        }
    } catch (...) {
        removeTree(work);
        throw;
    }

    struct stat sh;
    bool hasShell = ::lstat((_paths.layer(layer.diffId) + "/fs/bin/sh").c_str(), &sh) == 0;
    json config = {
        {"created", nowRfc3339()},
        {"architecture", "amd64"},
        {"os", "linux"},
        {"config",
         {{"Env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}}},
        {"rootfs", {{"type", "layers"}, {"diff_ids", {layer.diffId}}}},
        {"history", {{{"created", nowRfc3339()}, {"created_by", "mobileops image import"}}}}};
    if (hasShell) config["config"]["Cmd"] = {"/bin/sh"};
    std::string configBytes = config.dump();
    json manifest = {
        {"schemaVersion", 2},
        {"mediaType", media::kOciManifest},
        {"config",
         {{"mediaType", media::kOciConfig},
          {"digest", sha256Of(configBytes)},
          {"size", configBytes.size()}}},
        {"layers",
         {{{"mediaType", layer.mediaType}, {"digest", layer.digest}, {"size", layer.size}}}}};
    std::vector<std::string> names;
    if (!name.empty()) names.push_back(name);
    return commit(manifest.dump(), configBytes, {layer}, names, "import " + file);
}

json ImageStore::buildRootfs(const std::string &dir, const std::string &name,
                             const IngestOptions &options) {
    struct stat st;
    if (::stat(dir.c_str(), &st) < 0) throw common::sysError("build-rootfs " + quote(dir), errno);
    if (!S_ISDIR(st.st_mode)) throw sdk::Error(MO_E_INVALID, quote(dir) + " is not a directory");
    if (!name.empty()) qualify(name);
    std::string tar = tempPath("rootfs.tar");
    Progress progress = Progress::forTerminal(options.quiet);
    WriteOptions wo;
    wo.overlayWhiteouts = false;
    progress.start(dir, "pack " + dir, 0);
    if (progress.enabled()) wo.progress = [&](uint64_t done) { progress.update(dir, done); };
    try {
        writeTree(dir, tar, wo);
        progress.finish(dir, "packed");
        IngestOptions io = options;
        io.quiet = true;
        json out = importTarball(tar, name, io);
        ::unlink(tar.c_str());
        auto doc = _host.get(kImage, out.value("id", ""));
        if (doc) {
            (*doc)["source"] = "build-rootfs " + dir;
            _host.put(kImage, out.value("id", ""), "", *doc);
            out["source"] = (*doc)["source"];
        }
        return out;
    } catch (...) {
        ::unlink(tar.c_str());
        throw;
    }
}

// --- removal ---

void ImageStore::removeImage(const json &image, json &report) {
    const std::string id = image.value("id", "");
    for (const std::string &n : namesOf(id)) _host.remove(kName, n);
    _host.remove(kImage, id);
    report["deleted"].push_back(id);
    if (removeFlat(id)) report["flattenedRemoved"].push_back(id);
}

json ImageStore::remove(const std::vector<std::string> &refs, bool force) {
    json report = {{"untagged", json::array()}, {"deleted", json::array()}};
    for (const std::string &ref : refs) {
        json image = resolve(ref);
        const std::string id = image.value("id", "");
        std::vector<std::string> users;
        for (const json &c : _host.list(kContainer))
            if (c.contains("spec") && c["spec"].value("imageId", "") == id)
                users.push_back(c.value("name", c.value("id", "")));
        auto lock = _host.lock("storage/images");
        std::vector<std::string> names = namesOf(id);
        bool byName = false;
        try {
            std::string full = qualify(ref);
            byName = std::find(names.begin(), names.end(), full) != names.end();
            if (byName && names.size() > 1) {
                _host.remove(kName, full);
                report["untagged"].push_back(full);
                continue;
            }
        } catch (const sdk::Error &) {
        }
        if (!byName && names.size() > 1 && !force) {
            std::string list;
            for (const auto &n : names) list += (list.empty() ? "" : ", ") + quote(familiar(n));
            throw sdk::Error(MO_E_STATE, "image " + quote(ref) + " has " +
                                             std::to_string(names.size()) + " names (" + list +
                                             "): remove them by name, or use --force");
        }
        if (!users.empty()) {
            std::string list;
            for (const auto &u : users) list += (list.empty() ? "" : ", ") + quote(u);
            throw sdk::Error(MO_E_BUSY, "image " + quote(ref) + " is used by container" +
                                            (users.size() > 1 ? "s " : " ") + list +
                                            " (delete them first)");
        }
        for (const auto &n : names) report["untagged"].push_back(n);
        removeImage(image, report);
    }
    json swept = sweep();
    report["layersRemoved"] = swept["layersRemoved"];
    report["blobsRemoved"] = swept["blobsRemoved"];
    report["bytesFreed"] = swept["bytesFreed"];
    return report;
}

json ImageStore::prune() {
    json report = {{"deleted", json::array()}};
    {
        auto lock = _host.lock("storage/images");
        std::set<std::string> used;
        for (const json &c : _host.list(kContainer))
            if (c.contains("spec")) used.insert(c["spec"].value("imageId", ""));
        for (const json &r : _host.list(kRootfs)) used.insert(r.value("image", ""));
        std::set<std::string> named;
        for (const json &n : _host.list(kName)) named.insert(n.value("id", ""));
        for (const json &image : _host.list(kImage)) {
            std::string id = image.value("id", "");
            if (!named.count(id) && !used.count(id)) removeImage(image, report);
        }
    }
    json swept = sweep();
    for (const char *key : {"layersRemoved", "blobsRemoved", "bytesFreed", "tmpRemoved"})
        report[key] = swept[key];
    return report;
}

// Blobs and layers no image references, and work files of processes that are gone.
json ImageStore::sweep() {
    auto lock = _host.lock("storage/images");
    json report = {{"layersRemoved", 0}, {"blobsRemoved", 0}, {"bytesFreed", 0}};
    // What the remaining images reference.
    std::set<std::string> blobs, layers;
    for (const json &image : _host.list(kImage)) {
        blobs.insert(digestHex(image.value("id", "")));
        blobs.insert(digestHex(image.value("digest", "")));
        for (const json &l : image.value("layers", json::array())) {
            blobs.insert(digestHex(l.value("digest", "")));
            layers.insert(digestHex(l.value("diffId", "")));
        }
    }
    // What a load or pull in progress has stored but not yet recorded.
    const std::set<std::string> busy = protectedDigests();
    uint64_t freed = 0;
    auto sweep = [&](const std::string &dir, const std::set<std::string> &keep,
                     const char *counter) {
        std::error_code ec;
        for (const auto &entry : fs::directory_iterator(dir, ec)) {
            std::string file = entry.path().filename().string();
            if (keep.count(file) || busy.count(file)) continue;
            // A download in progress ("<hex>.partial") belongs to a pull that may resume.
            if (file.size() > 8 && file.compare(file.size() - 8, 8, ".partial") == 0) continue;
            std::error_code sec;
            if (entry.is_regular_file(sec)) freed += entry.file_size(sec);
            removeTree(entry.path().string());
            report[counter] = report[counter].get<int>() + 1;
        }
    };
    sweep(_paths.blobs(), blobs, "blobsRemoved");
    sweep(_paths.layers(), layers, "layersRemoved");
    report["bytesFreed"] = freed;
    report["tmpRemoved"] = cleanTmp();
    return report;
}

// --- container roots ---

json ImageStore::prepareRootfs(const std::string &containerId, const std::string &imageRef,
                               const json &options) {
    if (containerId.empty() || containerId.find('/') != std::string::npos || containerId[0] == '.')
        throw sdk::Error(MO_E_INVALID, "container id " + quote(containerId) + " is not valid");
    json image = resolve(imageRef);
    const std::string id = image.value("id", "");
    if (options.contains("flatten") && !options["flatten"].is_boolean())
        throw sdk::Error(MO_E_INVALID, "option `flatten`: expected true or false");
    const bool flatten = options.value("flatten", false);
    std::vector<std::string> lowers;
    const json &layers = image["layers"];
    // The flattened copy is held by its lock until this root's record names it, so gc
    // cannot take it away in between.
    common::Host::Lock flatLock;
    json flat;
    if (flatten) {
        flatLock = _host.lock("storage/flat/" + digestHex(id));
        flat = ensureFlatLocked(image);
        lowers.push_back(flat.value("path", ""));
    }
    for (auto it = layers.rbegin(); !flatten && it != layers.rend(); ++it) {
        std::string dir = _paths.layer(it->value("diffId", "")) + "/fs";
        struct stat st;
        if (::stat(dir.c_str(), &st) < 0)
            throw sdk::Error(MO_E_NOT_FOUND,
                             "image " + quote(imageRef) + ": layer " +
                                 quote(it->value("diffId", "")) +
                                 " is missing from the store (load the image again)");
        lowers.push_back(dir);
    }
    if (lowers.empty()) {
        // overlayfs needs a lower layer; an image without layers gets an empty one
        std::string empty = _paths.layers() + "/empty";
        makeDir(empty, 0755);
        lowers.push_back(empty);
    }
    uint64_t diskLimit = 0;
    if (options.contains("diskLimit") && options["diskLimit"].is_number_unsigned())
        diskLimit = options["diskLimit"].get<uint64_t>();
    else if (options.contains("diskLimit") && options["diskLimit"].is_string())
        diskLimit = common::parseSize(options["diskLimit"].get<std::string>());
    if (diskLimit && diskLimit < (8u << 20))
        throw sdk::Error(MO_E_INVALID,
                         "disk limit " + std::to_string(diskLimit) +
                             " bytes is too small for a writable layer (at least 8Mi)");

    auto lock = _host.lock("storage/rootfs/" + containerId);
    const std::string dir = _paths.container(containerId);
    const bool fresh = ::access(dir.c_str(), F_OK) != 0;
    auto undo = [&] {
        if (!fresh) return;
        unmount(dir + "/merged");
        unmount(dir + "/layer");
        removeTree(dir);
        _host.remove(kRootfs, containerId);
    };
    try {
        makeDir(dir);
        std::string base = dir;
        if (diskLimit) {
            base = dir + "/layer";
            makeDir(base);
            const std::string img = dir + "/layer.img";
            if (::access(img.c_str(), F_OK) != 0) {
                std::string empty = dir + "/empty";
                makeDir(empty);
                common::ImageRequest req;
                req.dir = empty;
                req.file = img;
                req.size = std::to_string(diskLimit);
                common::createImage(req);
                ::rmdir(empty.c_str());
            }
            if (!common::isMountPoint(base)) {
                common::LoopDevice loop(img, false);
                if (::mount(loop.path().c_str(), base.c_str(), "ext4", MS_NOATIME, "") < 0)
                    throw common::sysError("mount the writable layer " + quote(img), errno);
            }
        }
        makeDir(base + "/upper", 0755);
        makeDir(base + "/work", 0700);
        makeDir(dir + "/merged", 0755);
        if (!common::isMountPoint(dir + "/merged"))
            mountOverlay(lowers, base + "/upper", base + "/work", dir + "/merged");
        json doc = {{"container", containerId}, {"image", id},
                    {"path", dir + "/merged"},  {"upper", base + "/upper"},
                    {"work", base + "/work"},   {"diskLimit", diskLimit},
                    {"flat", flatten}};
        _host.put(kRootfs, containerId, "", doc);
        std::vector<std::string> names = namesOf(id);
        json out = {
            {"path", dir + "/merged"},
            {"upper", base + "/upper"},
            {"work", base + "/work"},
            {"diskLimit", diskLimit},
            {"image", {{"id", id}, {"name", names.empty() ? "" : familiar(names.front())}}}};
        if (flatten) out["flat"] = flat;
        return out;
    } catch (...) {
        undo();
        throw;
    }
}

void ImageStore::releaseRootfs(const std::string &containerId) {
    if (containerId.empty() || containerId.find('/') != std::string::npos || containerId[0] == '.')
        return;
    auto lock = _host.lock("storage/rootfs/" + containerId);
    const std::string dir = _paths.container(containerId);
    unmount(dir + "/merged");
    unmount(dir + "/layer");
    removeTree(dir);
    _host.remove(kRootfs, containerId);
}

namespace {

// Every layer of `image` applied in order onto the existing directory `dir`.
void applyLayers(const Paths &paths, const json &image, const std::string &dir) {
    for (const json &l : image["layers"]) {
        ExtractOptions eo;
        eo.whiteouts = Whiteouts::Apply;
        eo.createTarget = false;
        eo.allowDevices = true; // the store already refused what was not allowed
        extract(paths.blob(l.value("digest", "")), dir, eo);
    }
}

// Entries below `dir` and the bytes of its regular files (each hard-linked inode once).
std::pair<uint64_t, uint64_t> measureTree(const std::string &dir) {
    uint64_t entries = 0, bytes = 0;
    std::set<std::pair<dev_t, ino_t>> seen;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
         !ec && it != end; it.increment(ec)) {
        ++entries;
        struct stat st;
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            seen.insert({st.st_dev, st.st_ino}).second)
            bytes += static_cast<uint64_t>(st.st_size);
    }
    if (ec) throw common::sysError("measure " + quote(dir), ec.value());
    return {entries, bytes};
}

} // namespace

json ImageStore::flatten(const std::string &imageRef, const std::string &target) {
    json image = resolve(imageRef);
    if (target.empty()) throw sdk::Error(MO_E_INVALID, "no target directory given");
    const std::string dest = fs::absolute(target).lexically_normal().string();
    if (::access(dest.c_str(), F_OK) == 0)
        throw sdk::Error(MO_E_EXISTS, quote(dest) + " already exists");
    // Next to the target, so the final rename stays on one filesystem.
    std::string work = dest + ".unpacking-" + std::to_string(::getpid());
    removeTree(work);
    makeDir(work, 0755);
    try {
        applyLayers(_paths, image, work);
        if (::rename(work.c_str(), dest.c_str()) < 0)
            throw common::sysError("move the flattened root to " + quote(dest), errno);
    } catch (...) {
        removeTree(work);
        throw;
    }
    return {{"path", dest}, {"image", image.value("id", "")}};
}

json ImageStore::flatInfo(const std::string &imageId) const {
    const std::string dir = _paths.flat(imageId);
    std::ifstream in(dir + "/info.json");
    if (!in) return nullptr;
    json info = json::parse(in, nullptr, false);
    if (!info.is_object()) info = json::object();
    info["image"] = imageId;
    info["path"] = dir + "/fs";
    return info;
}

json ImageStore::ensureFlat(const std::string &imageRef) {
    json image = resolve(imageRef);
    auto lock = _host.lock("storage/flat/" + digestHex(image.value("id", "")));
    return ensureFlatLocked(image);
}

json ImageStore::ensureFlatLocked(const json &image) {
    const std::string id = image.value("id", "");
    if (json info = flatInfo(id); !info.is_null()) {
        info["built"] = false;
        return info;
    }
    // Built below tmp/ (gc removes it when this process dies half-way), then renamed
    // into place whole: flat/<hex> exists only complete.
    const std::string work = tempPath("flat");
    try {
        makeDir(work, 0700);
        makeDir(work + "/fs", 0755);
        applyLayers(_paths, image, work + "/fs");
        auto [entries, bytes] = measureTree(work + "/fs");
        json info = {{"created", nowRfc3339()}, {"entries", entries}, {"bytes", bytes}};
        writeFile(work + "/info.json", info.dump());
        if (common::Fd fd(::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            fd.fd < 0 || ::syncfs(fd.fd) < 0)
            throw common::sysError("sync " + quote(work), errno);
        if (::rename(work.c_str(), _paths.flat(id).c_str()) < 0)
            throw common::sysError("move the flattened copy of " + quote(id) + " into place",
                                   errno);
    } catch (...) {
        removeTree(work);
        throw;
    }
    json info = flatInfo(id);
    info["built"] = true;
    return info;
}

bool ImageStore::removeFlat(const std::string &imageId) {
    auto lock = _host.lock("storage/flat/" + digestHex(imageId));
    return removeFlatLocked(imageId);
}

bool ImageStore::removeFlatLocked(const std::string &imageId) {
    const std::string dir = _paths.flat(imageId);
    if (::access(dir.c_str(), F_OK) != 0) return false;
    // Out of sight first: a half-removed copy must never look complete.
    const std::string doomed = tempPath("flat-removed");
    if (::rename(dir.c_str(), doomed.c_str()) < 0)
        throw common::sysError("remove the flattened copy " + quote(dir), errno);
    removeTree(doomed);
    return true;
}

json ImageStore::gc() {
    json released = json::array();
    std::set<std::string> containers;
    for (const json &c : _host.list(kContainer)) containers.insert(c.value("id", ""));
    std::set<std::string> orphans;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(_paths.containers(), ec))
        orphans.insert(entry.path().filename().string());
    for (const json &r : _host.list(kRootfs)) orphans.insert(r.value("container", ""));
    for (const std::string &id : orphans) {
        if (id.empty() || containers.count(id)) continue;
        releaseRootfs(id);
        released.push_back("root filesystem of deleted container " + id);
    }
    // Flattened copies no container root uses (nor an image any more): a cache.
    for (const auto &entry : fs::directory_iterator(_paths.flats(), ec)) {
        const std::string hex = entry.path().filename().string();
        if (hex.size() != 64 || !isHex(hex)) continue;
        const std::string imageId = "sha256:" + hex;
        auto lock = _host.lock("storage/flat/" + hex);
        bool used = false;
        for (const json &r : _host.list(kRootfs))
            used |= r.value("flat", false) && r.value("image", "") == imageId;
        if (used) continue;
        if (removeFlatLocked(imageId))
            released.push_back("flattened copy of image " + shortId(imageId) + " (unused)");
    }
    if (int n = cleanTmp())
        released.push_back(std::to_string(n) + " unfinished work files in " + _paths.tmp());
    return {{"released", released}};
}

int ImageStore::cleanTmp() {
    int removed = 0;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(_paths.tmp(), ec)) {
        std::string file = entry.path().filename().string();
        pid_t pid = static_cast<pid_t>(std::atoi(file.c_str()));
        if (pidAlive(pid)) continue;
        removeTree(entry.path().string());
        ++removed;
    }
    return removed;
}

} // namespace mobileops::storage
