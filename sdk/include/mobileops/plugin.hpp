// Header-only C++ helper for writing mobileops plugins.
//
//   #include <mobileops/plugin.hpp>
//
//   class Hello : public mobileops::sdk::Plugin {
//   public:
//       void init() override {
//           method("greet", "return a greeting", [](const std::string &args) {
//               return std::string(R"({"greeting":"hello"})");
//           });
//           feature("hello.greet");
//       }
//   };
//   MOBILEOPS_PLUGIN(Hello, "hello", "1.0.0", "says hello")
//
// Exceptions never cross the C boundary: each trampoline catches them and turns
// mobileops::sdk::Error into its code and anything else into MO_E_INTERNAL.
//
// Needs C++20 (MOBILEOPS_PLUGIN uses __VA_OPT__); mobileops_add_plugin sets it. The plugin
// class is constructed by the host's call to init, before host() is available: acquire
// resources in init(), not in the constructor. The descriptor declares abi_minor =
// MO_ABI_MINOR of the headers it is built with, so a plugin built with newer headers needs
// a host at least that new.
#ifndef MOBILEOPS_PLUGIN_HPP
#define MOBILEOPS_PLUGIN_HPP

#include <mobileops/mobileops.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mobileops::sdk {

// An error with an ABI code (MO_E_* or -errno) and a message.
class Error : public std::runtime_error {
public:
    Error(int code, const std::string &message) : std::runtime_error(message), _code(code) {}
    int code() const noexcept { return _code; }

private:
    int _code;
};

// The result of a probe.
struct Probe {
    bool usable = true;
    std::string reason;
};

class Plugin {
public:
    using Method = std::function<std::string(const std::string &args_json)>;

    virtual ~Plugin() = default;

    // Register services, methods and features here. Throw Error to refuse loading.
    virtual void init() = 0;
    // Usable on this host? Default: yes.
    virtual Probe probe() { return {}; }

    const mo_host_api &host() const { return *_host; }
    mo_plugin *handle() const { return _handle; }

    void log(int level, const std::string &message) const {
        _host->log(_handle, level, message.c_str());
    }

    // A configuration value, or `fallback` when unset.
    std::string config(const char *key, const std::string &fallback = {}) const {
        const char *value = _host->config_get(_handle, key);
        return value ? std::string(value) : fallback;
    }

    // Register a JSON method. `summary` and `params` are copied and kept alive here. `fn`
    // receives the argument JSON ("{}" when the caller gave none) and returns the result
    // JSON; it reports errors by throwing Error (anything else becomes MO_E_INTERNAL).
    void method(const std::string &name, const std::string &summary, Method fn,
                const std::string &params = {}) {
        auto entry = std::make_unique<MethodEntry>();
        entry->name = name;
        entry->summary = summary;
        entry->params = params;
        entry->fn = std::move(fn);
        entry->host = _host;
        mo_method m{};
        m.size = sizeof m;
        m.name = entry->name.c_str();
        m.summary = entry->summary.c_str();
        m.params = entry->params.empty() ? nullptr : entry->params.c_str();
        m.call = &Plugin::callMethod;
        m.self = entry.get();
        // Owned before the host sees it, so the host never holds a pointer to a freed entry.
        _methods.push_back(std::move(entry));
        try {
            check(_host->register_method(_handle, &m, &_error));
        } catch (...) {
            _methods.pop_back();
            throw;
        }
    }

    void feature(const char *name) { check(_host->register_feature(_handle, name, &_error)); }

    // Register a service; `iface` must outlive the plugin (make it a member).
    template <typename Iface>
    void service(uint32_t kind, const char *provider, const Iface *iface) {
        check(_host->register_service(_handle, kind, provider, iface, &_error));
    }

    // Look up another plugin's service (NULL provider: the default one).
    template <typename Iface> const Iface *lookup(uint32_t kind, const char *provider = nullptr) {
        mo_error err = MO_ERROR_INIT;
        const void *iface = _host->service_lookup(_handle, kind, provider, &err);
        if (!iface) throw Error(err.code ? err.code : MO_E_NOT_FOUND, err.message);
        return static_cast<const Iface *>(iface);
    }

    // For the trampolines of a service interface whose `self` is the plugin object: runs
    // fn(plugin) and returns 0, or turns what it threw into `err` and returns the code.
    template <typename P, typename Fn>
    static int guard(void *self, mo_error *err, Fn &&fn) noexcept {
        P &plugin = *static_cast<P *>(self);
        try {
            fn(plugin);
            return 0;
        } catch (...) {
            return fail(plugin.host(), err);
        }
    }

    // Fill an error slot from the current exception. Use in catch (...) blocks of C
    // callbacks you write by hand.
    static int fail(const mo_host_api &host, mo_error *err) noexcept {
        try {
            throw;
        } catch (const Error &e) {
            host.error_set(err, e.code(), e.what());
            return e.code();
        } catch (const std::bad_alloc &) {
            host.error_set(err, -ENOMEM, "out of memory");
            return -ENOMEM;
        } catch (const std::exception &e) {
            host.error_set(err, MO_E_INTERNAL, e.what());
            return MO_E_INTERNAL;
        } catch (...) {
            host.error_set(err, MO_E_INTERNAL, "unknown error");
            return MO_E_INTERNAL;
        }
    }

    // Glue used by MOBILEOPS_PLUGIN; not for direct use.
    template <typename T>
    static int initTrampoline(const mo_host_api *host, mo_plugin *handle, void **user,
                              mo_error *err) noexcept {
        try {
            auto plugin = std::make_unique<T>();
            plugin->_host = host;
            plugin->_handle = handle;
            plugin->init();
            *user = plugin.release();
            return 0;
        } catch (...) {
            return fail(*host, err);
        }
    }
    static void finiTrampoline(void *user) noexcept { delete static_cast<Plugin *>(user); }
    static int probeTrampoline(void *user, mo_probe *out) noexcept {
        auto *plugin = static_cast<Plugin *>(user);
        try {
            Probe p = plugin->probe();
            out->usable = p.usable ? 1 : 0;
            std::snprintf(out->reason, sizeof out->reason, "%s", p.reason.c_str());
        } catch (const std::exception &e) {
            out->usable = 0;
            std::snprintf(out->reason, sizeof out->reason, "probe failed: %s", e.what());
        } catch (...) {
            out->usable = 0;
            std::snprintf(out->reason, sizeof out->reason, "probe failed: unknown error");
        }
        return 0;
    }

protected:
    void check(int rc) const {
        if (rc < 0) throw Error(rc, _error.message);
    }

private:
    struct MethodEntry {
        std::string name, summary, params;
        Method fn;
        const mo_host_api *host = nullptr;
    };

    static int callMethod(void *self, const char *args, mo_buffer *out, mo_error *err) noexcept {
        auto *entry = static_cast<MethodEntry *>(self);
        try {
            std::string result = entry->fn(args ? args : "{}");
            int rc = entry->host->buffer_set(out, result.data(), result.size());
            if (rc < 0) entry->host->error_set(err, rc, "out of memory");
            return rc;
        } catch (...) {
            return fail(*entry->host, err);
        }
    }

    const mo_host_api *_host = nullptr;
    mo_plugin *_handle = nullptr;
    mutable mo_error _error = MO_ERROR_INIT;
    std::vector<std::unique_ptr<MethodEntry>> _methods;
};

} // namespace mobileops::sdk

// Define the plugin's entry point. Extra arguments: "kind:provider" strings it registers.
#define MOBILEOPS_PLUGIN(Class, Name, Version, Description, ...)                                   \
    extern "C" MO_EXPORT const mo_plugin_descriptor *mobileops_plugin_entry(void) {                \
        static const char *const provides[] = {__VA_ARGS__ __VA_OPT__(, ) nullptr};                \
        static const mo_plugin_descriptor descriptor = {                                           \
            sizeof(mo_plugin_descriptor),                                                          \
            MO_ABI_MAJOR,                                                                          \
            MO_ABI_MINOR,                                                                          \
            Name,                                                                                  \
            Version,                                                                               \
            Description,                                                                           \
            provides,                                                                              \
            &mobileops::sdk::Plugin::initTrampoline<Class>,                                        \
            &mobileops::sdk::Plugin::finiTrampoline,                                               \
            &mobileops::sdk::Plugin::probeTrampoline,                                              \
        };                                                                                         \
        return &descriptor;                                                                        \
    }

#endif // MOBILEOPS_PLUGIN_HPP
