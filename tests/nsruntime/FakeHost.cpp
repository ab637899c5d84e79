#include "FakeHost.h"

#include <nlohmann/json.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

struct mo_lock {
    int fd;
};

namespace mobileops::nsruntime::testing {

namespace {

FakeHost *gHost = nullptr;
int gDepth = 0;
int gTxFd = -1;
pid_t gTxPid = 0;

std::string storeDir() { return gHost->dir() + "/store"; }
std::string docPath(const std::string &kind, const std::string &key) {
    return storeDir() + "/" + kind + "/" + key + ".json";
}
std::string namePath(const std::string &kind, const std::string &name) {
    return storeDir() + "/" + kind + ".names/" + name;
}

bool readFile(const std::string &path, std::string &out) {
    std::ifstream in(path);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

void writeFile(const std::string &path, const std::string &data) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp);
        out << data;
    }
    ::rename(tmp.c_str(), path.c_str());
}

// The store's lock: held for a call, or from begin to commit.
struct StoreGuard {
    int fd = -1;
    StoreGuard() {
        if (gDepth > 0 && gTxPid == ::getpid()) return;
        fd = ::open((storeDir() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        ::flock(fd, LOCK_EX);
    }
    ~StoreGuard() {
        if (fd >= 0) ::close(fd);
    }
};

void setError(mo_error *err, int32_t code, const char *message) {
    if (!err) return;
    err->code = code;
    std::snprintf(err->message, sizeof err->message, "%s", message ? message : "");
}

int bufferSet(mo_buffer *buf, const char *data, size_t len) {
    std::free(buf->data);
    buf->data = static_cast<char *>(std::malloc(len + 1));
    if (!buf->data) return -ENOMEM;
    std::memcpy(buf->data, data, len);
    buf->data[len] = 0;
    buf->len = len;
    return 0;
}

void bufferFree(mo_buffer *buf) {
    if (!buf) return;
    std::free(buf->data);
    buf->data = nullptr;
    buf->len = 0;
}

void hostLog(mo_plugin *, int level, const char *message) {
    if (level <= MO_LOG_WARNING) std::fprintf(stderr, "fake host log: %s\n", message);
}

const char *configGet(mo_plugin *, const char *key) {
    static thread_local std::string value;
    if (std::strcmp(key, "root_dir") == 0)
        value = gHost->dir() + "/root";
    else if (std::strcmp(key, "run_dir") == 0)
        value = gHost->dir() + "/run";
    else
        return nullptr;
    return value.c_str();
}

const void *gServices[MO_SERVICE_KIND_COUNT + 1] = {};
int registerService(mo_plugin *, uint32_t kind, const char *, const void *iface, mo_error *) {
    if (kind <= MO_SERVICE_KIND_COUNT) gServices[kind] = iface;
    return 0;
}
int registerMethod(mo_plugin *, const mo_method *, mo_error *) { return 0; }
int registerFeature(mo_plugin *, const char *, mo_error *) { return 0; }
const void *serviceLookup(mo_plugin *, uint32_t kind, const char *, mo_error *err) {
    setError(err, MO_E_NOT_FOUND,
             kind == MO_SERVICE_CGROUP ? "no cgroup service" : "no such service");
    return nullptr;
}
int eventEmit(mo_plugin *, const char *, const char *, mo_error *) { return 0; }

int storeGet(mo_plugin *, const char *kind, const char *key, mo_buffer *out, mo_error *err) {
    StoreGuard g;
    std::string data;
    if (!readFile(docPath(kind, key), data)) {
        setError(err, MO_E_NOT_FOUND, "not found");
        return MO_E_NOT_FOUND;
    }
    return bufferSet(out, data.data(), data.size());
}

int storeFind(mo_plugin *p, const char *kind, const char *name, mo_buffer *out, mo_error *err) {
    std::string key;
    {
        StoreGuard g;
        if (!readFile(namePath(kind, name), key)) {
            setError(err, MO_E_NOT_FOUND, "not found");
            return MO_E_NOT_FOUND;
        }
    }
    return storeGet(p, kind, key.c_str(), out, err);
}

int storePut(mo_plugin *, const char *kind, const char *key, const char *name, const char *json,
             uint32_t flags, mo_error *err) {
    StoreGuard g;
    ::mkdir((storeDir() + "/" + kind).c_str(), 0700);
    ::mkdir((storeDir() + "/" + kind + ".names").c_str(), 0700);
    std::string existing, owner;
    bool exists = readFile(docPath(kind, key), existing);
    if ((flags & MO_STORE_CREATE) && exists) {
        setError(err, MO_E_EXISTS, "key exists");
        return MO_E_EXISTS;
    }
    if (name && readFile(namePath(kind, name), owner) && owner != key) {
        setError(err, MO_E_EXISTS, "name exists");
        return MO_E_EXISTS;
    }
    if (exists) {
        auto old = nlohmann::json::parse(existing, nullptr, false);
        std::string oldName = old.is_object() ? old.value("name", "") : "";
        if (!oldName.empty() && (!name || oldName != name))
            ::unlink(namePath(kind, oldName).c_str());
    }
    if (name) writeFile(namePath(kind, name), key);
    writeFile(docPath(kind, key), json);
    return 0;
}

int storeDelete(mo_plugin *, const char *kind, const char *key, mo_error *err) {
    StoreGuard g;
    std::string existing;
    if (!readFile(docPath(kind, key), existing)) {
        setError(err, MO_E_NOT_FOUND, "not found");
        return MO_E_NOT_FOUND;
    }
    auto doc = nlohmann::json::parse(existing, nullptr, false);
    if (doc.is_object() && !doc.value("name", "").empty())
        ::unlink(namePath(kind, doc.value("name", "")).c_str());
    ::unlink(docPath(kind, key).c_str());
    return 0;
}

int storeList(mo_plugin *, const char *kind, mo_buffer *out, mo_error *) {
    StoreGuard g;
    nlohmann::json arr = nlohmann::json::array();
    std::vector<std::string> names;
    if (DIR *d = ::opendir((storeDir() + "/" + kind).c_str())) {
        while (auto *e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() > 5 && n.substr(n.size() - 5) == ".json") names.push_back(n);
        }
        ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const auto &n : names) {
        std::string data;
        if (readFile(storeDir() + "/" + kind + "/" + n, data)) {
            auto doc = nlohmann::json::parse(data, nullptr, false);
            if (!doc.is_discarded()) arr.push_back(doc);
        }
    }
    std::string text = arr.dump();
    return bufferSet(out, text.data(), text.size());
}

int storeBegin(mo_plugin *, mo_error *) {
    if (gTxPid != ::getpid()) {
        gDepth = 0; // a forked child does not inherit the parent's transaction
        gTxFd = -1;
    }
    if (gDepth++ == 0) {
        gTxPid = ::getpid();
        gTxFd = ::open((storeDir() + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        ::flock(gTxFd, LOCK_EX);
    }
    return 0;
}

int storeCommit(mo_plugin *, mo_error *) {
    if (gDepth > 0 && --gDepth == 0) {
        ::close(gTxFd);
        gTxFd = -1;
    }
    return 0;
}

void storeRollback(mo_plugin *) {
    if (gDepth > 0) {
        gDepth = 0;
        ::close(gTxFd);
        gTxFd = -1;
    }
}

int lockFn(mo_plugin *, const char *name, uint32_t flags, mo_lock **out, mo_error *err) {
    std::string file;
    for (const char *c = name; *c; ++c) file += *c == '/' ? '_' : *c;
    std::string path = gHost->dir() + "/run/locks/" + file + ".lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        setError(err, -errno, "lock");
        return -errno;
    }
    if (::flock(fd, LOCK_EX | (flags & MO_LOCK_NOWAIT ? LOCK_NB : 0)) < 0) {
        ::close(fd);
        setError(err, MO_E_BUSY, "locked by another command");
        return MO_E_BUSY;
    }
    *out = new mo_lock{fd};
    return 0;
}

void unlockFn(mo_lock *l) {
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
    lockFn,
    unlockFn,
};

} // namespace

FakeHost::FakeHost(const std::string &dir) : _dir(dir) {
    for (const char *sub : {"", "/store", "/root", "/run", "/run/locks"})
        ::mkdir((dir + sub).c_str(), 0755);
    gHost = this;
}

FakeHost::~FakeHost() { gHost = nullptr; }

const mo_host_api *FakeHost::api() const { return &kApi; }

const void *FakeHost::registered(uint32_t kind) const {
    return kind <= MO_SERVICE_KIND_COUNT ? gServices[kind] : nullptr;
}

} // namespace mobileops::nsruntime::testing
