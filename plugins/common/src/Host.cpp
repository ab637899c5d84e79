#include <mobileops/common/Host.h>

namespace mobileops::common {

using nlohmann::json;

namespace {
struct Buffer {
    const mo_host_api *api;
    mo_buffer buf = MO_BUFFER_INIT;
    explicit Buffer(const mo_host_api *a) : api(a) {}
    ~Buffer() { api->buffer_free(&buf); }
    std::string str() const { return buf.data ? std::string(buf.data, buf.len) : std::string(); }
};
} // namespace

void Host::check(int rc, const mo_error &err) const {
    if (rc < 0) throw Error(rc, err.message[0] ? err.message : "state store failure");
}

std::optional<json> Host::get(const std::string &kind, const std::string &key) const {
    Buffer out(_api);
    mo_error err = MO_ERROR_INIT;
    int rc = _api->store_get(_plugin, kind.c_str(), key.c_str(), &out.buf, &err);
    if (rc == MO_E_NOT_FOUND) return std::nullopt;
    check(rc, err);
    return json::parse(out.str());
}

std::optional<json> Host::find(const std::string &kind, const std::string &name) const {
    Buffer out(_api);
    mo_error err = MO_ERROR_INIT;
    int rc = _api->store_find(_plugin, kind.c_str(), name.c_str(), &out.buf, &err);
    if (rc == MO_E_NOT_FOUND) return std::nullopt;
    check(rc, err);
    return json::parse(out.str());
}

void Host::put(const std::string &kind, const std::string &key, const std::string &name,
               const json &doc, bool create) const {
    mo_error err = MO_ERROR_INIT;
    std::string text = doc.dump();
    check(_api->store_put(_plugin, kind.c_str(), key.c_str(), name.empty() ? nullptr : name.c_str(),
                          text.c_str(), create ? MO_STORE_CREATE : 0, &err),
          err);
}

bool Host::remove(const std::string &kind, const std::string &key) const {
    mo_error err = MO_ERROR_INIT;
    int rc = _api->store_delete(_plugin, kind.c_str(), key.c_str(), &err);
    if (rc == MO_E_NOT_FOUND) return false;
    check(rc, err);
    return true;
}

std::vector<json> Host::list(const std::string &kind) const {
    Buffer out(_api);
    mo_error err = MO_ERROR_INIT;
    check(_api->store_list(_plugin, kind.c_str(), &out.buf, &err), err);
    json arr = json::parse(out.str().empty() ? std::string("[]") : out.str());
    std::vector<json> docs;
    for (auto &e : arr) docs.push_back(std::move(e));
    return docs;
}

Host::Transaction::Transaction(const Host &host) : _host(host) {
    mo_error err = MO_ERROR_INIT;
    _host.check(_host._api->store_begin(_host._plugin, &err), err);
}

Host::Transaction::~Transaction() {
    if (!_done) _host._api->store_rollback(_host._plugin);
}

void Host::Transaction::commit() {
    mo_error err = MO_ERROR_INIT;
    _done = true;
    _host.check(_host._api->store_commit(_host._plugin, &err), err);
}

Host::Lock &Host::Lock::operator=(Lock &&o) noexcept {
    if (this != &o) {
        if (_lock) _api->unlock(_lock);
        _api = o._api;
        _lock = o._lock;
        o._lock = nullptr;
    }
    return *this;
}

Host::Lock::~Lock() {
    if (_lock) _api->unlock(_lock);
}

Host::Lock Host::lock(const std::string &name, bool nowait) const {
    mo_error err = MO_ERROR_INIT;
    mo_lock *l = nullptr;
    check(_api->lock(_plugin, name.c_str(), nowait ? MO_LOCK_NOWAIT : 0, &l, &err), err);
    return Lock(_api, l);
}

std::string Host::config(const char *key, const std::string &fallback) const {
    const char *v = _api->config_get ? _api->config_get(_plugin, key) : nullptr;
    return v && *v ? std::string(v) : fallback;
}

void Host::log(int level, const std::string &message) const {
    if (_api->log) _api->log(_plugin, level, message.c_str());
}

const void *Host::lookup(uint32_t kind, std::string *why) const {
    mo_error err = MO_ERROR_INIT;
    const void *iface =
        _api->service_lookup ? _api->service_lookup(_plugin, kind, nullptr, &err) : nullptr;
    if (!iface && why) *why = err.message;
    return iface;
}

void Host::event(const std::string &type, const json &payload) const {
    if (!_api->event_emit) return;
    mo_error err = MO_ERROR_INIT;
    std::string text = payload.dump();
    _api->event_emit(_plugin, type.c_str(), text.c_str(), &err); // best effort
}

} // namespace mobileops::common
