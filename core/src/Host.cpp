// The host function table. Every function is a C entry point: exceptions stop here and
// become an error code plus message in the caller's mo_error.
#include "Host.h"

#include "mobileops/core/Error.h"
#include "mobileops/core/Log.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct mo_lock {
    int fd;
};

namespace mobileops::core::host {

namespace {

PluginRecord &record(mo_plugin *plugin) {
    if (!plugin) throw Error(MO_E_INVALID, "no plugin handle given");
    return *reinterpret_cast<PluginRecord *>(plugin);
}

void setError(mo_error *err, int32_t code, const char *message) {
    if (!err) return;
    // Honour the caller's idea of the struct's size: an older plugin's slot may be smaller.
    size_t size = err->size ? err->size : sizeof(mo_error);
    err->code = code;
    if (size > offsetof(mo_error, message)) {
        size_t room = std::min(size - offsetof(mo_error, message), sizeof err->message);
        std::snprintf(err->message, room, "%s", message ? message : "");
    }
}

// Run fn; turn exceptions into the ABI's return code and error slot.
template <typename Fn> int guard(mo_error *err, Fn &&fn) noexcept {
    try {
        fn();
        return 0;
    } catch (const Error &e) {
        setError(err, e.code(), e.what());
        return e.code();
    } catch (const std::bad_alloc &) {
        setError(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    } catch (const std::exception &e) {
        setError(err, MO_E_INTERNAL, e.what());
        return MO_E_INTERNAL;
    }
}

void hostLog(mo_plugin *plugin, int level, const char *message) {
    try {
        auto lvl = static_cast<log::Level>(std::clamp(level, 0, 3));
        log::write(lvl, message ? message : "", plugin ? record(plugin).name : std::string());
    } catch (...) {
    }
}

int bufferSet(mo_buffer *buf, const char *data, size_t len) {
    if (!buf) return MO_E_INVALID;
    char *copy = static_cast<char *>(std::malloc(len + 1));
    if (!copy) return -ENOMEM;
    if (len) std::memcpy(copy, data, len);
    copy[len] = 0;
    std::free(buf->data);
    buf->data = copy;
    buf->len = len;
    return 0;
}

void bufferFree(mo_buffer *buf) {
    if (!buf) return;
    std::free(buf->data);
    buf->data = nullptr;
    buf->len = 0;
}

const char *configGet(mo_plugin *plugin, const char *key) {
    if (!plugin || !key) return nullptr;
    try {
        auto &values = record(plugin).manager->config().values();
        auto it = values.find(key);
        if (it == values.end()) {
            // "<plugin>.<key>" keys may be given without the plugin prefix by the plugin.
            it = values.find(record(plugin).name + "." + key);
            if (it == values.end()) return nullptr;
        }
        return it->second.c_str();
    } catch (...) {
        return nullptr;
    }
}

int registerService(mo_plugin *plugin, uint32_t kind, const char *provider, const void *iface,
                    mo_error *err) {
    return guard(err, [&] {
        auto &rec = record(plugin);
        rec.manager->registerService(rec, kind, provider, iface);
    });
}

int registerMethod(mo_plugin *plugin, const mo_method *method, mo_error *err) {
    return guard(err, [&] {
        if (!method) throw Error(MO_E_INVALID, "no method given");
        mo_method m{};
        std::memcpy(&m, method, std::min<size_t>(method->size, sizeof m));
        auto &rec = record(plugin);
        rec.manager->registerMethod(rec, m);
    });
}

int registerFeature(mo_plugin *plugin, const char *name, mo_error *err) {
    return guard(err, [&] {
        auto &rec = record(plugin);
        rec.manager->registerFeature(rec, name);
    });
}

const void *serviceLookup(mo_plugin *plugin, uint32_t kind, const char *provider, mo_error *err) {
    const void *out = nullptr;
    guard(err, [&] { out = record(plugin).manager->service(kind, provider ? provider : ""); });
    return out;
}

std::string str(const char *s, const char *what) {
    if (!s) throw Error(MO_E_INVALID, std::string("missing ") + what);
    return s;
}

int eventEmit(mo_plugin *plugin, const char *type, const char *payload, mo_error *err) {
    return guard(err, [&] {
        auto &rec = record(plugin);
        rec.manager->store().appendEvent(str(type, "event type"), rec.name,
                                         payload ? payload : "{}");
    });
}

int storeGet(mo_plugin *plugin, const char *kind, const char *key, mo_buffer *out, mo_error *err) {
    return guard(err, [&] {
        auto data = record(plugin).manager->store().get(str(kind, "kind"), str(key, "key"));
        if (!data) throw Error(MO_E_NOT_FOUND, std::string(kind) + " " + quote(key) + " not found");
        if (bufferSet(out, data->data(), data->size()) < 0) throw std::bad_alloc();
    });
}

int storeFind(mo_plugin *plugin, const char *kind, const char *name, mo_buffer *out,
              mo_error *err) {
    return guard(err, [&] {
        auto obj = record(plugin).manager->store().find(str(kind, "kind"), str(name, "name"));
        if (!obj) throw Error(MO_E_NOT_FOUND, std::string(kind) + " " + quote(name) + " not found");
        if (bufferSet(out, obj->data.data(), obj->data.size()) < 0) throw std::bad_alloc();
    });
}

int storePut(mo_plugin *plugin, const char *kind, const char *key, const char *name,
             const char *data, uint32_t flags, mo_error *err) {
    return guard(err, [&] {
        std::optional<std::string> n;
        if (name) n = name;
        record(plugin).manager->store().put(str(kind, "kind"), str(key, "key"), n,
                                            str(data, "document"), flags & MO_STORE_CREATE);
    });
}

int storeDelete(mo_plugin *plugin, const char *kind, const char *key, mo_error *err) {
    return guard(
        err, [&] { record(plugin).manager->store().remove(str(kind, "kind"), str(key, "key")); });
}

int storeList(mo_plugin *plugin, const char *kind, mo_buffer *out, mo_error *err) {
    return guard(err, [&] {
        std::string result = "[";
        bool first = true;
        for (auto &obj : record(plugin).manager->store().list(str(kind, "kind"))) {
            if (!first) result += ',';
            first = false;
            result += obj.data;
        }
        result += ']';
        if (bufferSet(out, result.data(), result.size()) < 0) throw std::bad_alloc();
    });
}

int storeBegin(mo_plugin *plugin, mo_error *err) {
    return guard(err, [&] { record(plugin).manager->store().begin(); });
}

int storeCommit(mo_plugin *plugin, mo_error *err) {
    return guard(err, [&] { record(plugin).manager->store().commit(); });
}

void storeRollback(mo_plugin *plugin) {
    try {
        record(plugin).manager->store().rollback();
    } catch (...) {
    }
}

int lock(mo_plugin *plugin, const char *name, uint32_t flags, mo_lock **out, mo_error *err) {
    return guard(err, [&] {
        std::string n = str(name, "lock name");
        if (!out) throw Error(MO_E_INVALID, "no output slot for the lock");
        if (n.empty() || n.find("..") != std::string::npos)
            throw Error(MO_E_INVALID, "invalid lock name " + quote(n));
        std::string file;
        for (char c : n) file += (c == '/') ? '_' : c;
        const std::string dir = record(plugin).manager->config().paths().runDir + "/locks";
        std::string parent = record(plugin).manager->config().paths().runDir;
        ::mkdir(parent.c_str(), 0755);
        ::mkdir(dir.c_str(), 0700);
        std::string path = dir + "/" + file + ".lock";
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) throw systemError("lock " + quote(path));
        int op =
            (flags & MO_LOCK_SHARED ? LOCK_SH : LOCK_EX) | (flags & MO_LOCK_NOWAIT ? LOCK_NB : 0);
        while (::flock(fd, op) < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            ::close(fd);
            if (e == EWOULDBLOCK)
                throw Error(MO_E_BUSY, quote(n) + " is locked by another command");
            throw systemError("lock " + quote(path), e);
        }
        *out = new mo_lock{fd};
    });
}

void unlock(mo_lock *l) {
    if (!l) return;
    ::close(l->fd);
    delete l;
}

const mo_host_api kApi = {
    sizeof(mo_host_api),
    MO_ABI_MAJOR,
    MO_ABI_MINOR,
    hostLog,
    setError,
    bufferSet,
    bufferFree,
    configGet,
    registerService,
    registerMethod,
    registerFeature,
    serviceLookup,
    eventEmit,
    storeGet,
    storeFind,
    storePut,
    storeDelete,
    storeList,
    storeBegin,
    storeCommit,
    storeRollback,
    lock,
    unlock,
};

} // namespace

const mo_host_api &api() { return kApi; }

} // namespace mobileops::core::host
