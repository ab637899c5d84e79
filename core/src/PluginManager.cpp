#include "mobileops/core/PluginManager.h"

#include "Host.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

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

void PluginManager::scan() {
    if (_scanned) return;
    _scanned = true;
    loadCache();
    std::map<std::string, PluginRecord *> byName;
    std::map<std::string, std::string> seen; // fresh cache: only files that still exist
    for (const std::string &dir : _config.paths().pluginDirs) {
        DIR *d = ::opendir(dir.c_str());
        if (!d) continue;
        struct stat dst {};
        bool dirWritable = ::stat(dir.c_str(), &dst) == 0 && (dst.st_mode & S_IWOTH);
        std::vector<std::string> files;
        while (dirent *e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) files.push_back(n);
        }
        ::closedir(d);
        std::sort(files.begin(), files.end());
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
                } else {
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
                }
                seen[rec->path] = entry.dump();
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
