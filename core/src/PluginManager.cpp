#include "mobileops/core/PluginManager.h"

#include "Host.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#ifndef MOBILEOPS_REL_PLUGINDIR
#define MOBILEOPS_REL_PLUGINDIR "lib/mobileops/plugins"
#endif

namespace mobileops::core {

using json = nlohmann::json;

namespace {

struct KindInfo {
    uint32_t kind;
    const char *name;
    size_t size;
    const char *defaultProvider;
};

const KindInfo kKinds[] = {
    {MO_SERVICE_RUNTIME, "runtime", sizeof(mo_runtime_service), "namespace"},
    {MO_SERVICE_CGROUP, "cgroup", sizeof(mo_cgroup_service), "cgroup"},
    {MO_SERVICE_NETWORK, "network", sizeof(mo_network_service), "bridge"},
    {MO_SERVICE_STORAGE, "storage", sizeof(mo_storage_service), "storage"},
    {MO_SERVICE_INTEGRITY, "integrity", sizeof(mo_integrity_service), "integrity"},
    {MO_SERVICE_LOG, "log", sizeof(mo_log_service), "logcollector"},
};

const KindInfo *kindInfo(uint32_t kind) {
    for (auto &k : kKinds)
        if (k.kind == kind) return &k;
    return nullptr;
}

bool validName(const char *name) {
    if (!name || !*name || std::strlen(name) > 64) return false;
    if (!(name[0] >= 'a' && name[0] <= 'z')) return false;
    for (const char *c = name; *c; ++c)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return true;
}

std::string versionString(uint32_t major, uint32_t minor) {
    return std::to_string(major) + "." + std::to_string(minor);
}

std::string cacheKey(const struct stat &st) {
    return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// The part of the descriptor we can read before trusting its size.
constexpr size_t kDescriptorHeader = 3 * sizeof(uint32_t);

// OpenSSL's one-shot digest, looked up only when plugins.verify needs it: linking
// libcrypto would cost every command ~0.6 ms at start.
struct Crypto {
    using DigestFn = int (*)(const void *data, size_t count, unsigned char *md, unsigned int *size,
                             const void *type, void *impl);
    using MdFn = const void *(*)();
    DigestFn digest = nullptr;
    MdFn sha256 = nullptr;
    std::string error;
};

const Crypto &crypto() {
    static const Crypto c = [] {
        Crypto c;
        // Never closed: the integrity plugin links the same library.
        void *lib = ::dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = ::dlerror();
            c.error = std::string("plugins.verify = manifest needs OpenSSL's `libcrypto.so.3`: ") +
                      (e ? e : "cannot load it");
            return c;
        }
        c.digest = reinterpret_cast<Crypto::DigestFn>(::dlsym(lib, "EVP_Digest"));
        c.sha256 = reinterpret_cast<Crypto::MdFn>(::dlsym(lib, "EVP_sha256"));
        if (!c.digest || !c.sha256)
            c.error = "plugins.verify = manifest: `libcrypto.so.3` has no `EVP_Digest` or "
                      "`EVP_sha256`";
        return c;
    }();
    return c;
}

// What identifies the content of a file that was hashed once in this process.
struct FileId {
    dev_t dev;
    ino_t ino;
    off_t size;
    long mtimeSec, mtimeNsec, ctimeSec, ctimeNsec;
    bool operator==(const FileId &) const = default;
};

FileId fileId(const struct stat &st) {
    return {st.st_dev,          st.st_ino,         st.st_size,        st.st_mtim.tv_sec,
            st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec};
}

std::string trim(const std::string &s) {
    auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

bool isSha256Hex(const std::string &s) {
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

namespace {

struct Hashed {
    FileId id{};
    std::string digest; // hex; "" when the file could not be hashed
    std::string why;
};

// The file's sha256 and the identity of the inode that was hashed.
Hashed hashFile(const Crypto &c, const std::string &path) {
    Hashed h;
    auto failed = [&](const std::string &why) {
        h.why = "cannot hash it for plugins.verify: " + why;
        return h;
    };
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return failed(std::strerror(errno));
    struct stat st {};
    int rc = ::fstat(fd, &st);
    size_t size = static_cast<size_t>(st.st_size);
    void *data = rc == 0 && size ? ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
    int err = errno;
    ::close(fd);
    if (rc < 0 || data == MAP_FAILED) return failed(std::strerror(err));
    unsigned char md[32];
    unsigned int len = 0;
    int ok = c.digest(data ? data : "", size, md, &len, c.sha256(), nullptr);
    if (data) ::munmap(data, size);
    if (ok != 1 || len != sizeof md) return failed("EVP_Digest failed");
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned char b : md) {
        h.digest += hex[b >> 4];
        h.digest += hex[b & 0xf];
    }
    h.id = fileId(st);
    return h;
}

} // namespace

// plugins.verify = manifest: which digests a plugin file may have.
class PluginVerifier {
public:
    PluginVerifier(std::string manifest, std::set<std::string> allowed)
        : _manifest(std::move(manifest)), _allowed(std::move(allowed)) {}

    // Hash `paths` on all CPUs ahead of refusal(): a scan hashes every plugin file.
    void prehash(const std::vector<std::string> &paths) {
        if (!ready()) return;
        std::vector<Hashed> out(paths.size());
        std::atomic<size_t> next{0};
        auto work = [&] {
            for (size_t i; (i = next.fetch_add(1)) < paths.size();)
                out[i] = hashFile(crypto(), paths[i]);
        };
        size_t threads = std::min<size_t>(std::thread::hardware_concurrency(), paths.size());
        std::vector<std::thread> pool;
        for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
        work();
        for (auto &t : pool) t.join();
        for (size_t i = 0; i < paths.size(); ++i)
            if (!out[i].digest.empty()) _hashed[paths[i]] = std::move(out[i]);
    }

    // Why the file at `path` may not be opened, or "" when its digest is admitted.
    std::string refusal(const std::string &path) {
        if (!ready()) return _broken.empty() ? crypto().error : _broken;
        // Hashed again unless this process hashed the same unchanged inode already.
        struct stat st {};
        auto memo = _hashed.find(path);
        if (memo == _hashed.end() || ::stat(path.c_str(), &st) < 0 ||
            !(memo->second.id == fileId(st)))
            memo = _hashed.insert_or_assign(path, hashFile(crypto(), path)).first;
        const Hashed &h = memo->second;
        if (h.digest.empty()) {
            std::string why = h.why;
            _hashed.erase(memo);
            return why;
        }
        auto listed = _listed.find(path.substr(path.rfind('/') + 1));
        if ((listed != _listed.end() && listed->second == h.digest) || _allowed.count(h.digest))
            return {};
        return "sha256 " + quote(h.digest) + " is not in the toolbox manifest " + quote(_manifest) +
               " or plugins.allow";
    }

private:
    // A readable manifest and libcrypto: files can be hashed and judged.
    bool ready() {
        if (!_read) readManifest();
        return _broken.empty() && crypto().error.empty();
    }

    void readManifest() {
        _read = true;
        auto broken = [&](const std::string &why) {
            _broken = "toolbox manifest " + quote(_manifest) + ": " + why +
                      " (plugins.verify = manifest admits no plugin without it)";
        };
        struct stat st {};
        if (::stat(_manifest.c_str(), &st) < 0) return broken(std::strerror(errno));
        if (st.st_mode & S_IWOTH) return broken("world-writable, not trusted");
        std::ifstream in(_manifest);
        if (!in) return broken(std::strerror(errno));
        json m = json::parse(in, nullptr, false);
        if (m.is_discarded() || !m.is_object() || !m.contains("files") || !m["files"].is_object())
            return broken("not a toolbox manifest (no `files` object)");
        const std::string dir = MOBILEOPS_REL_PLUGINDIR "/";
        for (auto &[rel, entry] : m["files"].items()) {
            if (rel.compare(0, dir.size(), dir) != 0 || rel.find('/', dir.size()) != rel.npos)
                continue;
            if (!entry.is_object() || !entry.contains("sha256") || !entry["sha256"].is_string())
                return broken(quote("files." + rel + ".sha256") + " is not a string");
            _listed[rel.substr(dir.size())] = entry["sha256"].get<std::string>();
        }
    }

    std::string _manifest;
    std::set<std::string> _allowed;
    bool _read = false;
    std::string _broken;                        // why every plugin is refused
    std::map<std::string, std::string> _listed; // plugin file name -> sha256
    std::map<std::string, Hashed> _hashed;      // path -> what this process hashed
};

namespace {

// The verifier plugins.verify asks for (null for `off`); throws MO_E_INVALID for a bad
// plugins.verify or plugins.allow.
std::unique_ptr<PluginVerifier> makeVerifier(const Config &config) {
    const std::string mode = config.get("plugins.verify", "off");
    if (mode == "off") return nullptr;
    if (mode != "manifest")
        throw Error(MO_E_INVALID,
                    "invalid plugins.verify " + quote(mode) + ": expected `off` or `manifest`");
    std::set<std::string> allowed;
    std::istringstream list(config.get("plugins.allow", ""));
    for (std::string item; std::getline(list, item, ',');) {
        item = trim(item);
        if (item.empty()) continue;
        std::string hex = item.rfind("sha256:", 0) == 0 ? item.substr(7) : std::string();
        for (char &ch : hex) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (!isSha256Hex(hex))
            throw Error(MO_E_INVALID, "invalid plugins.allow entry " + quote(item) +
                                          ": expected sha256:<64 hex digits>");
        allowed.insert(hex);
    }
    const std::string pluginDir = MOBILEOPS_REL_PLUGINDIR;
    std::string manifest = config.get("plugins.manifest", "");
    if (manifest.empty())
        manifest = config.paths().prefix + "/" + pluginDir.substr(0, pluginDir.rfind('/')) +
                   "/toolbox.json";
    return std::make_unique<PluginVerifier>(manifest, std::move(allowed));
}

} // namespace

const char *serviceKindName(uint32_t kind) {
    auto *k = kindInfo(kind);
    return k ? k->name : "unknown";
}

std::optional<uint32_t> serviceKindFromName(const std::string &name) {
    for (auto &k : kKinds)
        if (name == k.name) return k.kind;
    return std::nullopt;
}

size_t serviceInterfaceSize(uint32_t kind) {
    auto *k = kindInfo(kind);
    return k ? k->size : 0;
}

const std::vector<std::string> &PluginManager::coreFeatures() {
    // Append only: names once published are never removed or renamed.
    static const std::vector<std::string> features = {
        "abi-1.0",          "plugin-loader",   "lazy-plugins", "service-registry",
        "state-store",      "state-store-wal", "lua-api",      "lua-sandbox",
        "workflow-scripts", "json-output",     "features",     "doctor",
    };
    return features;
}

PluginManager::PluginManager(Config &config, StoreProvider store)
    : _config(config), _store(std::move(store)) {}

PluginManager::~PluginManager() { unloadAll(); }

void PluginManager::unloadAll() {
    // Finalise in reverse load order; keep the objects mapped: a plugin may have left a
    // thread or an atexit handler behind, and unmapping its code under it would crash.
    for (auto it = _loadOrder.rbegin(); it != _loadOrder.rend(); ++it) {
        PluginRecord *p = find(*it);
        if (p && p->state == PluginRecord::State::Loaded && p->descriptor.fini) {
            try {
                p->descriptor.fini(p->user);
            } catch (...) {
                log::write(log::Level::Warning, "fini threw an exception", p->name);
            }
            p->user = nullptr;
        }
    }
    _loadOrder.clear();
}

void PluginManager::loadCache() {
    std::ifstream in(_config.paths().runDir + "/plugins.cache");
    if (!in) return;
    try {
        json j = json::parse(in);
        if (j.value("format", 0) != 1) return;
        for (auto &[path, entry] : j["entries"].items()) _cache[path] = entry.dump();
    } catch (const std::exception &) {
        _cache.clear(); // a broken cache is rebuilt, never trusted
    }
}

void PluginManager::saveCache() {
    if (!_cacheDirty) return;
    const std::string dir = _config.paths().runDir;
    json entries = json::object();
    for (auto &[path, entry] : _cache) entries[path] = json::parse(entry);
    std::string data = json{{"format", 1}, {"entries", entries}}.dump();
    std::string tmp = dir + "/plugins.cache." + std::to_string(::getpid());
    if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) return;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return; // not root, read-only run dir: work without the cache
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), (dir + "/plugins.cache").c_str()) < 0) ::unlink(tmp.c_str());
    _cacheDirty = false;
}

std::string PluginManager::verifyRefusal(const std::string &path) {
    return _verifier ? _verifier->refusal(path) : std::string();
}

void PluginManager::scan() {
    if (_scanned) return;
    _verifier = makeVerifier(_config);
    _scanned = true;
    loadCache();
    std::map<std::string, PluginRecord *> byName;
    std::map<std::string, std::string> seen; // fresh cache: only files that still exist
    std::vector<std::pair<std::string, std::vector<std::string>>> listing;
    for (const std::string &dir : _config.paths().pluginDirs) {
        DIR *d = ::opendir(dir.c_str());
        if (!d) continue;
        std::vector<std::string> files;
        while (dirent *e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) files.push_back(n);
        }
        ::closedir(d);
        std::sort(files.begin(), files.end());
        listing.emplace_back(dir, std::move(files));
    }
    if (_verifier) {
        std::vector<std::string> paths;
        for (auto &[dir, files] : listing)
            for (auto &file : files) paths.push_back(dir + "/" + file);
        _verifier->prehash(paths);
    }
    for (const auto &[dir, files] : listing) {
        struct stat dst {};
        bool dirWritable = ::stat(dir.c_str(), &dst) == 0 && (dst.st_mode & S_IWOTH);
        for (const std::string &file : files) {
            auto rec = std::make_unique<PluginRecord>();
            rec->manager = this;
            rec->path = dir + "/" + file;
            rec->name = file.substr(0, file.size() - 3);
            struct stat st {};
            if (::stat(rec->path.c_str(), &st) < 0) continue;
            if (dirWritable) {
                rec->state = PluginRecord::State::Failed;
                rec->error = "refusing plugin in world-writable directory `" + dir + "`";
            } else if (st.st_mode & S_IWOTH) {
                rec->state = PluginRecord::State::Failed;
                rec->error = "refusing world-writable plugin file";
            } else {
                // Hashed whatever the cache says: the cache only saves opening the file.
                const std::string refused = verifyRefusal(rec->path);
                std::string key = cacheKey(st);
                auto cached = _cache.find(rec->path);
                json entry;
                if (cached != _cache.end() &&
                    (entry = json::parse(cached->second)).value("key", "") == key) {
                    rec->name = entry.value("name", rec->name);
                    rec->version = entry.value("version", "");
                    rec->description = entry.value("description", "");
                    rec->abiMajor = entry.value("abi_major", 0u);
                    rec->abiMinor = entry.value("abi_minor", 0u);
                    rec->error = entry.value("error", "");
                    for (auto &p : entry.value("provides", json::array()))
                        rec->provides.emplace_back(p[0].get<uint32_t>(), p[1].get<std::string>());
                    if (!rec->error.empty()) rec->state = PluginRecord::State::Failed;
                } else if (refused.empty()) {
                    inspectFile(*rec, true);
                    json prov = json::array();
                    for (auto &[k, n] : rec->provides) prov.push_back({k, n});
                    entry = {{"key", key},
                             {"name", rec->name},
                             {"version", rec->version},
                             {"description", rec->description},
                             {"abi_major", rec->abiMajor},
                             {"abi_minor", rec->abiMinor},
                             {"provides", prov},
                             {"error", rec->error}};
                    _cacheDirty = true;
                } else {
                    entry = json(); // refused unopened: nothing learnt, nothing to cache
                }
                if (!entry.is_null()) seen[rec->path] = entry.dump();
                if (!refused.empty()) {
                    rec->state = PluginRecord::State::Failed;
                    rec->error = refused;
                }
            }
            auto prev = byName.find(rec->name);
            if (prev != byName.end()) {
                // Later directories ($MOBILEOPS_PLUGIN_PATH) override earlier ones.
                log::debug("plugin `" + rec->name + "` in `" + rec->path + "` shadows `" +
                           prev->second->path + "`");
                rec->shadowedPath = prev->second->path;
                auto it = std::find_if(_plugins.begin(), _plugins.end(),
                                       [&](auto &p) { return p.get() == prev->second; });
                if ((*it)->handle) ::dlclose((*it)->handle);
                _plugins.erase(it);
            }
            byName[rec->name] = rec.get();
            _plugins.push_back(std::move(rec));
        }
    }
    if (seen.size() != _cache.size()) _cacheDirty = true;
    _cache = std::move(seen);
    saveCache();
}

void PluginManager::inspectFile(PluginRecord &rec, bool keepOpen) {
    auto fail = [&](const std::string &why) {
        rec.state = PluginRecord::State::Failed;
        rec.error = why;
        if (rec.handle && !keepOpen) {
            ::dlclose(rec.handle);
            rec.handle = nullptr;
        }
    };
    if (!rec.handle) {
        if (std::string refused = verifyRefusal(rec.path); !refused.empty()) return fail(refused);
        rec.handle = ::dlopen(rec.path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!rec.handle) {
            const char *e = ::dlerror();
            return fail(std::string("cannot load: ") + (e ? e : "unknown dlopen error"));
        }
    }
    auto entry = reinterpret_cast<mo_plugin_entry_fn>(::dlsym(rec.handle, MO_PLUGIN_ENTRY_SYMBOL));
    if (!entry) return fail("missing entry symbol `" MO_PLUGIN_ENTRY_SYMBOL "`");
    const mo_plugin_descriptor *d = entry();
    if (!d) return fail("entry symbol returned no descriptor");
    if (d->size < kDescriptorHeader) return fail("descriptor is too small to hold its ABI version");
    rec.abiMajor = d->abi_major;
    rec.abiMinor = d->abi_minor;
    const std::string theirs = versionString(d->abi_major, d->abi_minor);
    const std::string ours = versionString(MO_ABI_MAJOR, MO_ABI_MINOR);
    if (d->abi_major != MO_ABI_MAJOR)
        return fail("built for ABI " + theirs + ", this mobileops offers ABI " + ours +
                    " (major versions differ)");
    if (d->abi_minor > MO_ABI_MINOR)
        return fail("needs ABI " + theirs + ", this mobileops offers ABI " + ours +
                    " (newer minor)");
    if (d->size > sizeof(mo_plugin_descriptor))
        return fail("descriptor is " + std::to_string(d->size) + " bytes, larger than the " +
                    std::to_string(sizeof(mo_plugin_descriptor)) + " bytes of ABI " + ours);
    // Copy what the plugin knows; fields appended after its build read as zero.
    std::memset(&rec.descriptor, 0, sizeof rec.descriptor);
    std::memcpy(&rec.descriptor, d, d->size);
    const auto &desc = rec.descriptor;
    if (!validName(desc.name)) return fail("descriptor has no valid name ([a-z][a-z0-9_-]*)");
    rec.name = desc.name;
    rec.version = desc.version ? desc.version : "";
    rec.description = desc.description ? desc.description : "";
    if (!desc.init) return fail("missing required callback `init`");
    if (!desc.probe) return fail("missing required callback `probe`");
    rec.provides.clear();
    for (const char *const *p = desc.provides; p && *p; ++p) {
        std::string item = *p;
        auto colon = item.find(':');
        auto kind = serviceKindFromName(item.substr(0, colon));
        if (colon == std::string::npos || !kind)
            return fail("bad `provides` entry `" + item + "`: expected KIND:PROVIDER");
        rec.provides.emplace_back(*kind, item.substr(colon + 1));
    }
    if (!keepOpen) {
        ::dlclose(rec.handle);
        rec.handle = nullptr;
    }
}

std::vector<PluginRecord *> PluginManager::plugins() {
    scan();
    std::vector<PluginRecord *> out;
    for (auto &p : _plugins) out.push_back(p.get());
    std::sort(out.begin(), out.end(), [](auto *a, auto *b) { return a->name < b->name; });
    return out;
}

PluginRecord *PluginManager::find(const std::string &name) {
    for (auto &p : _plugins)
        if (p->name == name) return p.get();
    return nullptr;
}

PluginRecord &PluginManager::load(const std::string &name) {
    scan();
    PluginRecord *rec = find(name);
    if (!rec) throw Error(MO_E_NOT_FOUND, "no plugin named " + quote(name));
    auto failure = [&] {
        return Error(MO_E_ABI,
                     "plugin " + quote(rec->name) + " (" + quote(rec->path) + "): " + rec->error);
    };
    if (rec->state == PluginRecord::State::Loaded) return *rec;
    if (rec->state == PluginRecord::State::Failed) throw failure();
    if (!rec->handle || !rec->descriptor.init) inspectFile(*rec, true);
    if (rec->state == PluginRecord::State::Failed) throw failure();

    log::debug("load plugin " + quote(rec->name) + " from " + quote(rec->path));
    mo_error err = MO_ERROR_INIT;
    int rc = 0;
    PluginRecord *outer = _initialising;
    _initialising = rec;
    try {
        rc = rec->descriptor.init(hostApi(), reinterpret_cast<mo_plugin *>(rec), &rec->user, &err);
    } catch (const std::exception &e) {
        rc = MO_E_INTERNAL;
        std::snprintf(err.message, sizeof err.message, "exception escaped init: %s", e.what());
    } catch (...) {
        rc = MO_E_INTERNAL;
        std::snprintf(err.message, sizeof err.message, "exception escaped init");
    }
    _initialising = outer;
    if (rc != 0) {
        // Forget whatever the plugin registered before it failed.
        std::erase_if(_services, [&](auto &s) { return s->plugin == rec->name; });
        rec->methods.clear();
        rec->features.clear();
        rec->state = PluginRecord::State::Failed;
        rec->error =
            std::string("init failed: ") + (err.message[0] ? err.message : "no reason given");
        throw failure();
    }
    rec->state = PluginRecord::State::Loaded;
    _loadOrder.push_back(rec->name);
    return *rec;
}

void PluginManager::loadAll() {
    for (PluginRecord *p : plugins()) {
        if (p->state != PluginRecord::State::Found) continue;
        try {
            load(p->name);
        } catch (const Error &) {
            // recorded on the record; reported by `plugin list` and `system doctor`
        }
    }
}

const mo_probe &PluginManager::probe(PluginRecord &plugin) {
    if (!plugin.probed && plugin.state == PluginRecord::State::Loaded) {
        plugin.probe = mo_probe{};
        plugin.probe.size = sizeof plugin.probe;
        try {
            int rc = plugin.descriptor.probe(plugin.user, &plugin.probe);
            if (rc < 0) {
                plugin.probe.usable = 0;
                if (!plugin.probe.reason[0])
                    std::snprintf(plugin.probe.reason, sizeof plugin.probe.reason,
                                  "probe failed with code %d", rc);
            }
        } catch (...) {
            plugin.probe.usable = 0;
            std::snprintf(plugin.probe.reason, sizeof plugin.probe.reason,
                          "probe threw an exception");
        }
        plugin.probe.reason[sizeof plugin.probe.reason - 1] = 0;
        plugin.probed = true;
    }
    return plugin.probe;
}

void PluginManager::registerService(PluginRecord &plugin, uint32_t kind, const char *provider,
                                    const void *iface) {
    const KindInfo *k = kindInfo(kind);
    if (!k) throw Error(MO_E_INVALID, "unknown service kind " + std::to_string(kind));
    if (!provider || !validName(provider))
        throw Error(MO_E_INVALID, "invalid provider name for the " + quote(k->name) + " service");
    if (!iface)
        throw Error(MO_E_INVALID, "no interface given for the " + quote(k->name) + " service");
    uint32_t size = *static_cast<const uint32_t *>(iface);
    if (size < sizeof(uint32_t) + sizeof(void *) || size > k->size)
        throw Error(MO_E_ABI, "the " + quote(k->name) + " interface is " + std::to_string(size) +
                                  " bytes, this mobileops expects at most " +
                                  std::to_string(k->size));
    for (auto &s : _services)
        if (s->kind == kind && s->provider == provider)
            throw Error(MO_E_EXISTS, "the " + quote(k->name) + " provider " + quote(provider) +
                                         " is already registered by plugin " + quote(s->plugin));
    auto entry = std::make_unique<ServiceEntry>();
    entry->kind = kind;
    entry->provider = provider;
    entry->plugin = plugin.name;
    entry->iface = std::make_unique<std::byte[]>(k->size);
    std::memset(entry->iface.get(), 0, k->size);
    std::memcpy(entry->iface.get(), iface, size);
    _services.push_back(std::move(entry));
    bool declared = std::any_of(plugin.provides.begin(), plugin.provides.end(),
                                [&](auto &p) { return p.first == kind && p.second == provider; });
    if (!declared)
        log::debug("plugin " + quote(plugin.name) + " registers " + k->name + ":" + provider +
                   " without declaring it in `provides`; it cannot be loaded lazily");
}

void PluginManager::registerMethod(PluginRecord &plugin, const mo_method &m) {
    if (!validName(m.name) || std::strchr(m.name, '-'))
        throw Error(MO_E_INVALID, "invalid method name (expected [a-z][a-z0-9_]*)");
    if (!m.call) throw Error(MO_E_INVALID, "method " + quote(m.name) + " has no function");
    if (plugin.methods.count(m.name))
        throw Error(MO_E_EXISTS, "method " + quote(m.name) + " is already registered");
    plugin.methods[m.name] =
        MethodInfo{m.name, m.summary ? m.summary : "", m.params ? m.params : "", m.call, m.self};
}

void PluginManager::registerFeature(PluginRecord &plugin, const char *name) {
    if (!name || !*name) throw Error(MO_E_INVALID, "empty feature name");
    if (std::find(plugin.features.begin(), plugin.features.end(), name) == plugin.features.end())
        plugin.features.push_back(name);
}

std::vector<std::pair<std::string, std::string>> PluginManager::providers(uint32_t kind) {
    scan();
    std::vector<std::pair<std::string, std::string>> out;
    for (PluginRecord *p : plugins())
        for (auto &[k, provider] : p->provides)
            if (k == kind) out.emplace_back(provider, p->name);
    for (auto &s : _services)
        if (s->kind == kind &&
            std::none_of(out.begin(), out.end(), [&](auto &o) { return o.first == s->provider; }))
            out.emplace_back(s->provider, s->plugin);
    return out;
}

std::string PluginManager::defaultProvider(uint32_t kind) {
    const KindInfo *k = kindInfo(kind);
    if (!k) return {};
    if (auto configured = _config.get(std::string("services.") + k->name)) return *configured;
    auto all = providers(kind);
    for (auto &[provider, plugin] : all)
        if (provider == k->defaultProvider) return provider;
    return all.empty() ? std::string() : all.front().first;
}

const void *PluginManager::service(uint32_t kind, const std::string &requested) {
    const KindInfo *k = kindInfo(kind);
    if (!k) throw Error(MO_E_INVALID, "unknown service kind " + std::to_string(kind));
    std::string provider = requested.empty() ? defaultProvider(kind) : requested;
    auto registered = [&]() -> const void * {
        for (auto &s : _services)
            if (s->kind == kind && s->provider == provider) return s->iface.get();
        return nullptr;
    };
    if (provider.empty())
        throw Error(MO_E_NOT_FOUND,
                    std::string("no plugin provides the ") + quote(k->name) + " service");
    if (const void *iface = registered()) return iface;
    for (auto &[prov, pluginName] : providers(kind)) {
        if (prov != provider) continue;
        try {
            load(pluginName);
        } catch (const Error &e) {
            throw Error(e.code(), std::string("the ") + quote(k->name) +
                                      " service is unavailable: " + e.what());
        }
        if (const void *iface = registered()) return iface;
        throw Error(MO_E_NOT_FOUND, "plugin " + quote(pluginName) + " declares " + k->name + ":" +
                                        provider + " but did not register it");
    }
    throw Error(MO_E_NOT_FOUND,
                std::string("no ") + quote(k->name) + " service provider named " + quote(provider));
}

const mo_host_api *PluginManager::hostApi() const { return &host::api(); }

} // namespace mobileops::core
