// Plugin loader and service registry.
//
// scan() finds candidate files on the plugin path and learns what each provides from a
// cache in the run directory (keyed by path, inode, size and mtime), opening only files
// it has not seen; nothing is initialised until a service, method or plugin is asked
// for. A broken plugin is reported (file, reason) and skipped, never fatal to the others.
//
// `plugins.verify = manifest` (default `off`) admits only plugin files whose sha256 is the
// toolbox manifest's (`plugins.manifest`, default <prefix>/lib/mobileops/toolbox.json)
// for a plugin file of that name, or is listed in `plugins.allow` ("sha256:<hex>,...").
// Every file is hashed on each scan, whatever the cache says, and before any dlopen.
#pragma once

#include <mobileops/plugin.h>

#include "mobileops/core/Config.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::core {

class Store;

const char *serviceKindName(uint32_t kind);
std::optional<uint32_t> serviceKindFromName(const std::string &name);
// sizeof the host's interface struct for `kind` (0 for an unknown kind).
size_t serviceInterfaceSize(uint32_t kind);

struct MethodInfo {
    std::string name, summary, params;
    mo_method_fn call = nullptr;
    void *self = nullptr;
};

struct ServiceEntry {
    uint32_t kind = 0;
    std::string provider;
    std::string plugin;
    std::unique_ptr<std::byte[]> iface; // padded copy of the host's size of the interface
};

struct PluginRecord {
    // From the file (and the cache).
    std::string path;
    std::string name;
    std::string version;
    std::string description;
    uint32_t abiMajor = 0, abiMinor = 0;
    std::vector<std::pair<uint32_t, std::string>> provides;
    // Load state.
    enum class State { Found, Loaded, Failed } state = State::Found;
    std::string error; // why it failed
    bool probed = false;
    mo_probe probe{};
    std::vector<std::string> features;
    std::map<std::string, MethodInfo> methods;
    std::string shadowedPath; // a plugin of the same name that this one hides

    // Runtime.
    class PluginManager *manager = nullptr;
    void *handle = nullptr;
    mo_plugin_descriptor descriptor{};
    void *user = nullptr;
};

class PluginVerifier;

class PluginManager {
public:
    using StoreProvider = std::function<Store &()>;

    PluginManager(Config &config, StoreProvider store);
    ~PluginManager();
    PluginManager(const PluginManager &) = delete;
    PluginManager &operator=(const PluginManager &) = delete;

    // Find plugin files on the search path (cheap; uses the cache).
    void scan();
    // All known plugins, in name order, including broken ones.
    std::vector<PluginRecord *> plugins();
    PluginRecord *find(const std::string &name);

    // Load and initialise a plugin by name; throws Error naming file and reason.
    PluginRecord &load(const std::string &name);
    // Load every plugin; failures are recorded on the record, not thrown.
    void loadAll();
    // Run a loaded plugin's probe (once).
    const mo_probe &probe(PluginRecord &plugin);

    // The interface of `kind` from `provider` (empty: the default), loading its plugin.
    const void *service(uint32_t kind, const std::string &provider = {});
    // Providers of a kind among scanned plugins: (provider, plugin).
    std::vector<std::pair<std::string, std::string>> providers(uint32_t kind);
    std::string defaultProvider(uint32_t kind);

    // Registered features: core's built-in list plus loaded plugins'.
    static const std::vector<std::string> &coreFeatures();

    Config &config() { return _config; }
    Store &store() { return _store(); }
    const mo_host_api *hostApi() const;
    // Names of plugins initialised in this process, in load order (for --debug and tests).
    const std::vector<std::string> &loadOrder() const { return _loadOrder; }

    // Host-table entry points (called by Host.cpp with the plugin's handle).
    void registerService(PluginRecord &plugin, uint32_t kind, const char *provider,
                         const void *iface);
    void registerMethod(PluginRecord &plugin, const mo_method &method);
    void registerFeature(PluginRecord &plugin, const char *name);

private:
    void inspectFile(PluginRecord &record, bool keepOpen);
    // Why plugins.verify refuses the file at `path` ("" when it may be opened).
    std::string verifyRefusal(const std::string &path);
    void loadCache();
    void saveCache();
    void unloadAll();

    Config &_config;
    StoreProvider _store;
    bool _scanned = false;
    bool _cacheDirty = false;
    std::vector<std::unique_ptr<PluginRecord>> _plugins;
    std::map<std::string, std::string> _cache; // path -> serialized entry
    std::vector<std::unique_ptr<ServiceEntry>> _services;
    std::vector<std::string> _loadOrder;
    PluginRecord *_initialising = nullptr;
    std::unique_ptr<PluginVerifier> _verifier; // null: plugins.verify = off
};

} // namespace mobileops::core
