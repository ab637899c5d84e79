// The plugin through its C ABI: dlopen, entry, init with a minimal host table, the
// registered service, features and method, probe, and error paths. Touches nothing: the
// configured parent does not exist and nothing is created.
#include <mobileops/mobileops.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

struct Recorded {
    std::map<uint32_t, const void *> services;
    std::vector<std::string> features;
    std::vector<mo_method> methods;
    std::string parent;
};
Recorded rec;

void hostLog(mo_plugin *, int, const char *) {}
void errorSet(mo_error *err, int32_t code, const char *message) {
    err->code = code;
    std::snprintf(err->message, sizeof err->message, "%s", message);
}
int bufferSet(mo_buffer *buf, const char *data, size_t len) {
    std::free(buf->data);
    buf->data = static_cast<char *>(std::malloc(len + 1));
    std::memcpy(buf->data, data, len);
    buf->data[len] = 0;
    buf->len = len;
    return 0;
}
void bufferFree(mo_buffer *buf) {
    std::free(buf->data);
    buf->data = nullptr;
    buf->len = 0;
}
const char *configGet(mo_plugin *, const char *key) {
    return std::strcmp(key, "cgroup.parent") == 0 ? rec.parent.c_str() : nullptr;
}
int registerService(mo_plugin *, uint32_t kind, const char *, const void *iface, mo_error *) {
    rec.services[kind] = iface;
    return 0;
}
int registerMethod(mo_plugin *, const mo_method *m, mo_error *) {
    rec.methods.push_back(*m);
    return 0;
}
int registerFeature(mo_plugin *, const char *name, mo_error *) {
    rec.features.push_back(name);
    return 0;
}

class PluginAbi : public ::testing::Test {
protected:
    void SetUp() override {
        rec = {};
        rec.parent = "/mobileops-unit-" + std::to_string(::getpid()) + "-absent";
        _dl = ::dlopen(CGROUP_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
        ASSERT_NE(_dl, nullptr) << ::dlerror();
        auto entry = reinterpret_cast<mo_plugin_entry_fn>(::dlsym(_dl, MO_PLUGIN_ENTRY_SYMBOL));
        ASSERT_NE(entry, nullptr);
        _desc = entry();
        std::memset(&_host, 0, sizeof _host);
        _host.size = sizeof _host;
        _host.abi_major = MO_ABI_MAJOR;
        _host.abi_minor = MO_ABI_MINOR;
        _host.log = hostLog;
        _host.error_set = errorSet;
        _host.buffer_set = bufferSet;
        _host.buffer_free = bufferFree;
        _host.config_get = configGet;
        _host.register_service = registerService;
        _host.register_method = registerMethod;
        _host.register_feature = registerFeature;
        mo_error err = MO_ERROR_INIT;
        ASSERT_EQ(_desc->init(&_host, reinterpret_cast<mo_plugin *>(this), &_user, &err), 0)
            << err.message;
        _cg = static_cast<const mo_cgroup_service *>(rec.services[MO_SERVICE_CGROUP]);
        ASSERT_NE(_cg, nullptr);
    }
    void TearDown() override {
        if (_desc && _user) _desc->fini(_user);
        if (_dl) ::dlclose(_dl);
    }

    void *_dl = nullptr;
    const mo_plugin_descriptor *_desc = nullptr;
    mo_host_api _host;
    void *_user = nullptr;
    const mo_cgroup_service *_cg = nullptr;
};

TEST_F(PluginAbi, DescriptorAndRegistrations) {
    EXPECT_STREQ(_desc->name, "cgroup");
    EXPECT_STREQ(_desc->provides[0], "cgroup:cgroup");
    EXPECT_EQ(_desc->provides[1], nullptr);
    EXPECT_EQ(_cg->size, sizeof(mo_cgroup_service));
    for (auto fn : {(void *)_cg->create, (void *)_cg->attach, (void *)_cg->update,
                    (void *)_cg->stats, (void *)_cg->freeze, (void *)_cg->thaw, (void *)_cg->kill,
                    (void *)_cg->pids, (void *)_cg->destroy})
        EXPECT_NE(fn, nullptr);
    ASSERT_EQ(rec.methods.size(), 1u);
    EXPECT_STREQ(rec.methods[0].name, "layout");
    mo_buffer out = MO_BUFFER_INIT;
    mo_error err = MO_ERROR_INIT;
    ASSERT_EQ(rec.methods[0].call(rec.methods[0].self, "{}", &out, &err), 0) << err.message;
    auto layout = nlohmann::json::parse(out.data);
    bufferFree(&out);
    EXPECT_EQ(layout["parent"], rec.parent);
    EXPECT_TRUE(layout.contains("mode"));
    // Features match the layout the plugin found.
    EXPECT_EQ(layout["features"].size(), rec.features.size());
}

TEST_F(PluginAbi, ProbeDescribesTheLayout) {
    mo_probe p{};
    p.size = sizeof p;
    ASSERT_EQ(_desc->probe(_user, &p), 0);
    EXPECT_GT(std::strlen(p.reason), 0u);
}

TEST_F(PluginAbi, ErrorsComeBackThroughTheSlot) {
    mo_error err = MO_ERROR_INIT;
    EXPECT_EQ(_cg->create(_cg->self, "../x", "{}", &err), MO_E_INVALID);
    EXPECT_STREQ(err.message, "invalid cgroup path `../x`: `.` and `..` are not allowed");
    err = MO_ERROR_INIT;
    EXPECT_EQ(_cg->create(_cg->self, "ct", "{nope", &err), MO_E_INVALID);
    EXPECT_EQ(std::string(err.message).rfind("resources: invalid JSON: ", 0), 0u) << err.message;
    err = MO_ERROR_INIT;
    EXPECT_EQ(_cg->create(_cg->self, "ct", R"({"limits":{"memory":1024}})", &err), MO_E_INVALID);
    EXPECT_STREQ(err.message, "invalid `limits.memory`: `1024` is below the 4Mi minimum");
    err = MO_ERROR_INIT;
    EXPECT_EQ(_cg->create(_cg->self, nullptr, "{}", &err), MO_E_INVALID);
    EXPECT_STREQ(err.message, "no cgroup path given");
    err = MO_ERROR_INIT;
    mo_buffer out = MO_BUFFER_INIT;
    int rc = _cg->stats(_cg->self, "ct", &out, &err);
    if (rc != MO_E_UNSUPPORTED) { // a host without cgroups says so instead
        EXPECT_EQ(rc, MO_E_NOT_FOUND);
        EXPECT_STREQ(err.message, "cgroup `ct` does not exist");
    }
    EXPECT_EQ(out.data, nullptr);
    err = MO_ERROR_INIT;
    if (rc != MO_E_UNSUPPORTED) {
        EXPECT_EQ(_cg->destroy(_cg->self, "ct", &err), 0) << err.message;
    }
}

} // namespace
