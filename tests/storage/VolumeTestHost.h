// A host table for the volume engine's root tests, which link the engine without the
// core: the state store kept in memory (the CLI tests run the real SQLite store),
// advisory locks as flock(2) on files below a temporary directory, configuration from a
// map. Everything else the engine does (loop devices, mounts, archives) is real.
#pragma once

#include <mobileops/common/Host.h>
#include <mobileops/mobileops.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace mobileops::test {

class VolumeTestHost {
public:
    explicit VolumeTestHost(std::string lockDir) : _lockDir(std::move(lockDir)) {
        self() = this;
        _api.size = sizeof _api;
        _api.abi_major = MO_ABI_MAJOR;
        _api.abi_minor = MO_ABI_MINOR;
        _api.log = [](mo_plugin *, int, const char *) {};
        _api.error_set = [](mo_error *err, int32_t code, const char *message) {
            err->code = code;
            std::snprintf(err->message, sizeof err->message, "%s", message);
        };
        _api.buffer_set = [](mo_buffer *buf, const char *data, size_t len) {
            std::free(buf->data);
            buf->data = static_cast<char *>(std::malloc(len + 1));
            std::memcpy(buf->data, data, len);
            buf->data[len] = 0;
            buf->len = len;
            return 0;
        };
        _api.buffer_free = [](mo_buffer *buf) {
            std::free(buf->data);
            buf->data = nullptr;
            buf->len = 0;
        };
        _api.config_get = [](mo_plugin *, const char *key) -> const char * {
            auto it = self()->config.find(key);
            return it == self()->config.end() ? nullptr : it->second.c_str();
        };
        _api.event_emit = [](mo_plugin *, const char *, const char *, mo_error *) { return 0; };
        _api.store_get = [](mo_plugin *, const char *kind, const char *key, mo_buffer *out,
                            mo_error *err) {
            for (const auto &d : self()->_docs)
                if (d.kind == kind && d.key == key)
                    return self()->_api.buffer_set(out, d.json.data(), d.json.size());
            self()->_api.error_set(err, MO_E_NOT_FOUND, "not found");
            return int(MO_E_NOT_FOUND);
        };
        _api.store_find = [](mo_plugin *, const char *kind, const char *name, mo_buffer *out,
                             mo_error *err) {
            for (const auto &d : self()->_docs)
                if (d.kind == kind && d.name == name)
                    return self()->_api.buffer_set(out, d.json.data(), d.json.size());
            self()->_api.error_set(err, MO_E_NOT_FOUND, "not found");
            return int(MO_E_NOT_FOUND);
        };
        _api.store_put = [](mo_plugin *, const char *kind, const char *key, const char *name,
                            const char *json, uint32_t flags, mo_error *err) {
            for (auto &d : self()->_docs) {
                bool same = d.kind == kind && (d.key == key || (name && d.name == name));
                if (!same) continue;
                if (flags & MO_STORE_CREATE) {
                    self()->_api.error_set(err, MO_E_EXISTS, "exists");
                    return int(MO_E_EXISTS);
                }
                d.key = key;
                d.name = name ? name : "";
                d.json = json;
                return 0;
            }
            self()->_docs.push_back({kind, key, name ? name : "", json});
            return 0;
        };
        _api.store_delete = [](mo_plugin *, const char *kind, const char *key, mo_error *err) {
            auto &docs = self()->_docs;
            for (auto it = docs.begin(); it != docs.end(); ++it)
                if (it->kind == kind && it->key == key) {
                    docs.erase(it);
                    return 0;
                }
            self()->_api.error_set(err, MO_E_NOT_FOUND, "not found");
            return int(MO_E_NOT_FOUND);
        };
        _api.store_list = [](mo_plugin *, const char *kind, mo_buffer *out, mo_error *) {
            std::string all = "[";
            for (const auto &d : self()->_docs)
                if (d.kind == kind) all += (all.size() > 1 ? "," : "") + d.json;
            all += "]";
            return self()->_api.buffer_set(out, all.data(), all.size());
        };
        _api.store_begin = [](mo_plugin *, mo_error *) { return 0; };
        _api.store_commit = [](mo_plugin *, mo_error *) { return 0; };
        _api.store_rollback = [](mo_plugin *) {};
        _api.lock = [](mo_plugin *, const char *name, uint32_t flags, mo_lock **out,
                       mo_error *err) {
            std::string file = self()->_lockDir + "/";
            for (const char *c = name; *c; ++c) file += *c == '/' ? '_' : *c;
            int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0 || ::flock(fd, LOCK_EX | ((flags & MO_LOCK_NOWAIT) ? LOCK_NB : 0)) < 0) {
                if (fd >= 0) ::close(fd);
                self()->_api.error_set(err, MO_E_BUSY, "busy");
                return int(MO_E_BUSY);
            }
            *out = reinterpret_cast<mo_lock *>(static_cast<intptr_t>(fd + 1));
            return 0;
        };
        _api.unlock = [](mo_lock *lock) {
            ::close(static_cast<int>(reinterpret_cast<intptr_t>(lock)) - 1);
        };
    }
    ~VolumeTestHost() { self() = nullptr; }
    VolumeTestHost(const VolumeTestHost &) = delete;
    VolumeTestHost &operator=(const VolumeTestHost &) = delete;

    common::Host host() const { return common::Host(&_api, nullptr); }
    // A container record, as the runtime keeps it, so the engine sees it exist.
    void addContainer(const std::string &id, const std::string &name) {
        _docs.push_back(
            {"container", id, name, "{\"id\":\"" + id + "\",\"name\":\"" + name + "\"}"});
    }
    void removeContainer(const std::string &id) {
        mo_error err = MO_ERROR_INIT;
        _api.store_delete(nullptr, "container", id.c_str(), &err);
    }

    std::map<std::string, std::string> config;

private:
    struct Doc {
        std::string kind, key, name, json;
    };
    static VolumeTestHost *&self() {
        static VolumeTestHost *instance = nullptr;
        return instance;
    }

    mo_host_api _api{};
    std::string _lockDir;
    std::vector<Doc> _docs;
};

} // namespace mobileops::test
