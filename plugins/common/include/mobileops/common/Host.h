// The host table (mo_host_api) seen from C++: store, locks, configuration, logging and
// service lookup, throwing Error instead of returning codes.
#pragma once

#include <mobileops/common/Errors.h>

#include <mobileops/mobileops.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::common {

class Host {
public:
    Host(const mo_host_api *api, mo_plugin *plugin) : _api(api), _plugin(plugin) {}

    const mo_host_api *api() const { return _api; }
    mo_plugin *plugin() const { return _plugin; }

    std::optional<nlohmann::json> get(const std::string &kind, const std::string &key) const;
    std::optional<nlohmann::json> find(const std::string &kind, const std::string &name) const;
    // Throws MO_E_EXISTS when `create` and the key or name is taken.
    void put(const std::string &kind, const std::string &key, const std::string &name,
             const nlohmann::json &doc, bool create = false) const;
    // False when there was nothing to delete.
    bool remove(const std::string &kind, const std::string &key) const;
    std::vector<nlohmann::json> list(const std::string &kind) const;

    // An immediate store transaction; rolled back unless committed.
    class Transaction {
    public:
        explicit Transaction(const Host &host);
        ~Transaction();
        Transaction(const Transaction &) = delete;
        Transaction &operator=(const Transaction &) = delete;
        void commit();

    private:
        const Host &_host;
        bool _done = false;
    };

    class Lock {
    public:
        Lock() = default;
        Lock(const mo_host_api *api, mo_lock *lock) : _api(api), _lock(lock) {}
        Lock(Lock &&o) noexcept : _api(o._api), _lock(o._lock) { o._lock = nullptr; }
        Lock &operator=(Lock &&o) noexcept;
        ~Lock();
        Lock(const Lock &) = delete;
        Lock &operator=(const Lock &) = delete;

    private:
        const mo_host_api *_api = nullptr;
        mo_lock *_lock = nullptr;
    };
    Lock lock(const std::string &name, bool nowait = false) const;

    std::string config(const char *key, const std::string &fallback = {}) const;
    void log(int level, const std::string &message) const;
    // The service of `kind` or nullptr (with the reason in *why).
    const void *lookup(uint32_t kind, std::string *why = nullptr) const;
    void event(const std::string &type, const nlohmann::json &payload) const;

private:
    void check(int rc, const mo_error &err) const;

    const mo_host_api *_api;
    mo_plugin *_plugin;
};

} // namespace mobileops::common
