// The example and fixture plugins against a fake host built from the SDK headers alone:
// each does what its documentation says, seen from the ABI. The real loader's handling
// of them is tested with the core.
#include <mobileops/mobileops.h>

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const std::string fixtureDir = MOBILEOPS_FIXTURE_PLUGIN_DIR;

// What a plugin registered with the fake host.
struct FakePlugin {
    std::map<std::string, mo_method> methods;
    std::vector<std::string> features;
    std::map<std::pair<uint32_t, std::string>, const void *> services;
    std::vector<std::string> logs;
};

FakePlugin *fake(mo_plugin *p) { return reinterpret_cast<FakePlugin *>(p); }

int unsupported(mo_error *err) {
    std::snprintf(err->message, sizeof err->message, "not in the fake host");
    return err->code = MO_E_UNSUPPORTED;
}

mo_host_api makeHost() {
    mo_host_api h{};
    h.size = sizeof h;
    h.abi_major = MO_ABI_MAJOR;
    h.abi_minor = MO_ABI_MINOR;
    h.log = [](mo_plugin *p, int, const char *m) { fake(p)->logs.emplace_back(m); };
    h.error_set = [](mo_error *err, int32_t code, const char *m) {
        err->code = code;
        std::snprintf(err->message, sizeof err->message, "%s", m);
    };
    h.buffer_set = [](mo_buffer *buf, const char *data, size_t len) {
        auto *copy = static_cast<char *>(std::malloc(len + 1));
        if (!copy) return -ENOMEM;
        std::memcpy(copy, data, len);
        copy[len] = '\0';
        std::free(buf->data);
        buf->data = copy;
        buf->len = len;
        return 0;
    };
    h.buffer_free = [](mo_buffer *buf) {
        if (!buf) return;
        std::free(buf->data);
        buf->data = nullptr;
        buf->len = 0;
    };
    h.config_get = [](mo_plugin *, const char *) -> const char * { return nullptr; };
    h.register_service = [](mo_plugin *p, uint32_t kind, const char *provider, const void *iface,
                            mo_error *) {
        fake(p)->services[{kind, provider}] = iface;
        return 0;
    };
    h.register_method = [](mo_plugin *p, const mo_method *m, mo_error *) {
        mo_method copy{};
        std::memcpy(&copy, m, std::min<size_t>(m->size, sizeof copy));
        fake(p)->methods[m->name] = copy;
        return 0;
    };
    h.register_feature = [](mo_plugin *p, const char *name, mo_error *) {
        fake(p)->features.emplace_back(name);
        return 0;
    };
    h.service_lookup = [](mo_plugin *, uint32_t, const char *, mo_error *err) -> const void * {
        unsupported(err);
        return nullptr;
    };
    h.event_emit = [](mo_plugin *, const char *, const char *, mo_error *err) {
        return unsupported(err);
    };
    h.store_get = [](mo_plugin *, const char *, const char *, mo_buffer *, mo_error *err) {
        return unsupported(err);
    };
    h.store_find = h.store_get;
    h.store_put = [](mo_plugin *, const char *, const char *, const char *, const char *, uint32_t,
                     mo_error *err) { return unsupported(err); };
    h.store_delete = [](mo_plugin *, const char *, const char *, mo_error *err) {
        return unsupported(err);
    };
    h.store_list = [](mo_plugin *, const char *, mo_buffer *, mo_error *err) {
        return unsupported(err);
    };
    h.store_begin = [](mo_plugin *, mo_error *err) { return unsupported(err); };
    h.store_commit = h.store_begin;
    h.store_rollback = [](mo_plugin *) {};
    h.lock = [](mo_plugin *, const char *, uint32_t, mo_lock **, mo_error *err) {
        return unsupported(err);
    };
    h.unlock = [](mo_lock *) {};
    return h;
}

const mo_host_api host = makeHost();

// A dlopen()ed plugin file.
class Library {
public:
    explicit Library(const std::string &path)
        : _handle(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        if (!_handle) throw std::runtime_error(dlerror());
    }
    ~Library() { dlclose(_handle); }
    Library(const Library &) = delete;
    Library &operator=(const Library &) = delete;

    void *symbol(const char *name) const { return dlsym(_handle, name); }
    const mo_plugin_descriptor *descriptor() const {
        auto entry = reinterpret_cast<mo_plugin_entry_fn>(symbol(MO_PLUGIN_ENTRY_SYMBOL));
        if (!entry) throw std::runtime_error("no entry point");
        return entry();
    }

private:
    void *_handle;
};

// A result or an error from a method call.
struct Call {
    int rc = 0;
    std::string result;
    int32_t code = 0;
    std::string message;
};

// A loaded and initialised plugin.
class Loaded {
public:
    explicit Loaded(const std::string &path) : _lib(path), _d(*_lib.descriptor()) {
        mo_error err = MO_ERROR_INIT;
        _rc = _d.init(&host, reinterpret_cast<mo_plugin *>(&_fake), &_user, &err);
        _initError = err.message;
    }
    ~Loaded() {
        if (_rc == 0 && _d.fini) _d.fini(_user);
    }

    int initRc() const { return _rc; }
    const std::string &initError() const { return _initError; }
    const mo_plugin_descriptor &descriptor() const { return _d; }
    FakePlugin &registered() { return _fake; }

    mo_probe probe() {
        mo_probe p{};
        p.size = sizeof p;
        EXPECT_EQ(_d.probe(_user, &p), 0);
        return p;
    }

    Call call(const std::string &method, const char *args) {
        Call c;
        auto it = _fake.methods.find(method);
        if (it == _fake.methods.end()) throw std::runtime_error("no method " + method);
        mo_buffer out = MO_BUFFER_INIT;
        mo_error err = MO_ERROR_INIT;
        c.rc = it->second.call(it->second.self, args, &out, &err);
        if (out.data) c.result.assign(out.data, out.len);
        c.code = err.code;
        c.message = err.message;
        host.buffer_free(&out);
        return c;
    }

private:
    Library _lib;
    mo_plugin_descriptor _d;
    FakePlugin _fake;
    void *_user = nullptr;
    int _rc = 0;
    std::string _initError;
};

std::string fixture(const std::string &name) {
    return fixtureDir + "/" + name + "/" + name + ".so";
}

// --- the examples ------------------------------------------------------------------------

class Example : public ::testing::TestWithParam<const char *> {
protected:
    void SetUp() override {
#ifndef MOBILEOPS_EXAMPLE_PLUGIN_DIR
        GTEST_SKIP() << "examples not built (MOBILEOPS_BUILD_EXAMPLES is OFF)";
#else
        plugin = std::make_unique<Loaded>(std::string(MOBILEOPS_EXAMPLE_PLUGIN_DIR) + "/" +
                                          GetParam() + ".so");
        ASSERT_EQ(plugin->initRc(), 0) << plugin->initError();
#endif
    }
    std::unique_ptr<Loaded> plugin;
};

TEST_P(Example, DescribesItself) {
    const auto &d = plugin->descriptor();
    EXPECT_EQ(d.size, sizeof(mo_plugin_descriptor));
    EXPECT_EQ(d.abi_major, uint32_t(MO_ABI_MAJOR));
    EXPECT_LE(d.abi_minor, uint32_t(MO_ABI_MINOR));
    EXPECT_STREQ(d.name, GetParam());
    EXPECT_EQ(d.provides == nullptr || d.provides[0] == nullptr, true);
    EXPECT_EQ(plugin->registered().features,
              std::vector<std::string>{std::string(GetParam()) + ".greet"});
    ASSERT_EQ(plugin->registered().methods.count("greet"), 1u);
    EXPECT_EQ(plugin->registered().methods["greet"].size, sizeof(mo_method));
    mo_probe p = plugin->probe();
    EXPECT_EQ(p.usable, 1);
    EXPECT_STRNE(p.reason, "");
}

TEST_P(Example, Greets) {
    Call c = plugin->call("greet", R"({"name": "world"})");
    EXPECT_EQ(c.rc, 0) << c.message;
    EXPECT_EQ(c.result, R"({"greeting":"hello, world"})");
}

TEST_P(Example, ReadsEscapesAndSkipsOtherMembers) {
    Call c = plugin->call(
        "greet",
        R"( { "x": [1, {"name": "no"}, "}"], "y": null, "name" : "a\"b\\c\u00e9\ud83d\ude00\n" } )");
    EXPECT_EQ(c.rc, 0) << c.message;
    EXPECT_EQ(c.result, "{\"greeting\":\"hello, a\\\"b\\\\c\xc3\xa9\xf0\x9f\x98\x80\\u000a\"}");
}

TEST_P(Example, RefusesAMissingOrEmptyName) {
    for (const char *args :
         {"{}", R"({"name": ""})", R"({"name": null})", R"({"name": 5})", R"({"nam": "x"})"}) {
        Call c = plugin->call("greet", args);
        EXPECT_EQ(c.rc, MO_E_INVALID) << args;
        EXPECT_EQ(c.code, MO_E_INVALID) << args;
        EXPECT_EQ(c.message, "invalid 'name': expected a non-empty string") << args;
        EXPECT_EQ(c.result, "") << args;
    }
}

TEST_P(Example, RefusesWhatIsNotAJsonObject) {
    for (const char *args : {"", "[]", "\"name\"", R"({"name": "x")", R"({"name": "x"} x)",
                             R"({"name": "\ud800"})", R"({"name": "a\qb"})"}) {
        Call c = plugin->call("greet", args);
        EXPECT_EQ(c.rc, MO_E_INVALID) << args;
        EXPECT_EQ(c.message, "invalid arguments: expected a JSON object") << args;
    }
}

INSTANTIATE_TEST_SUITE_P(Sdk, Example, ::testing::Values("hello", "hello_c"));

// --- the fixtures ------------------------------------------------------------------------

TEST(Fixtures, ListedCasesAreBuilt) {
    std::ifstream list(fixtureDir + "/fixtures.txt");
    ASSERT_TRUE(list) << fixtureDir << "/fixtures.txt";
    std::vector<std::string> cases;
    for (std::string line; std::getline(list, line);) cases.push_back(line);
    EXPECT_EQ(cases.size(), 14u);
    for (const auto &name : cases) {
        struct stat st {};
        EXPECT_EQ(stat(fixture(name).c_str(), &st), 0) << fixture(name);
    }
}

TEST(Fixtures, GoodAnswersPing) {
    Loaded p(fixture("good"));
    ASSERT_EQ(p.initRc(), 0) << p.initError();
    EXPECT_STREQ(p.descriptor().name, "good");
    EXPECT_EQ(p.descriptor().provides, nullptr);
    EXPECT_EQ(p.registered().features, std::vector<std::string>{"good.ping"});
    EXPECT_TRUE(p.registered().services.empty());
    Call c = p.call("ping", "{}");
    EXPECT_EQ(c.rc, 0);
    EXPECT_EQ(c.result, R"({"pong":true})");
    EXPECT_EQ(p.probe().usable, 1);
}

TEST(Fixtures, VersionCasesDifferOnlyInVersion) {
    Library major(fixture("wrong_major")), minor(fixture("newer_minor"));
    EXPECT_EQ(major.descriptor()->abi_major, uint32_t(MO_ABI_MAJOR + 1));
    EXPECT_EQ(major.descriptor()->abi_minor, uint32_t(MO_ABI_MINOR));
    EXPECT_EQ(minor.descriptor()->abi_major, uint32_t(MO_ABI_MAJOR));
    EXPECT_EQ(minor.descriptor()->abi_minor, uint32_t(MO_ABI_MINOR + 1));
    for (const Library *lib : {&major, &minor}) {
        EXPECT_EQ(lib->descriptor()->size, sizeof(mo_plugin_descriptor));
        EXPECT_NE(lib->descriptor()->init, nullptr);
        EXPECT_NE(lib->descriptor()->probe, nullptr);
    }
}

TEST(Fixtures, OversizedIsReallyPadded) {
    Library lib(fixture("oversized"));
    const mo_plugin_descriptor *d = lib.descriptor();
    ASSERT_EQ(d->size, sizeof(mo_plugin_descriptor) + 64);
    const auto *tail = reinterpret_cast<const unsigned char *>(d) + sizeof *d;
    for (int i = 0; i < 64; ++i) EXPECT_EQ(tail[i], 0xa5) << i;
    Loaded p(fixture("oversized"));
    EXPECT_EQ(p.initRc(), 0) << p.initError();
}

TEST(Fixtures, NoEntryHasOnlyANearMiss) {
    Library lib(fixture("no_entry"));
    EXPECT_EQ(lib.symbol(MO_PLUGIN_ENTRY_SYMBOL), nullptr);
    EXPECT_NE(lib.symbol("mobileops_plugin_init"), nullptr);
}

TEST(Fixtures, InitFailsWithAMessage) {
    Loaded p(fixture("init_fails"));
    EXPECT_EQ(p.initRc(), MO_E_UNSUPPORTED);
    EXPECT_EQ(p.initError(), "fixture refuses to start");
}

// What the core relies on to survive init_throws: the exception reaches a C++ caller.
TEST(Fixtures, InitThrowsAnExceptionACallerCanCatch) {
    EXPECT_THROW(
        {
            try {
                Loaded p(fixture("init_throws"));
            } catch (const std::runtime_error &e) {
                EXPECT_STREQ(e.what(), "fixture throws in init");
                throw;
            }
        },
        std::runtime_error);
}

TEST(Fixtures, MissingCallbacksAndName) {
    Library noInit(fixture("no_init")), noProbe(fixture("no_probe")),
        nullName(fixture("null_name"));
    EXPECT_EQ(noInit.descriptor()->init, nullptr);
    EXPECT_NE(noInit.descriptor()->probe, nullptr);
    EXPECT_NE(noProbe.descriptor()->init, nullptr);
    EXPECT_EQ(noProbe.descriptor()->probe, nullptr);
    EXPECT_EQ(nullName.descriptor()->name, nullptr);
    EXPECT_NE(nullName.descriptor()->init, nullptr);
}

TEST(Fixtures, WorldWritableModes) {
    struct stat st {};
    ASSERT_EQ(stat(fixture("world_writable").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0666u);
    ASSERT_EQ(stat((fixtureDir + "/world_writable_dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777u);
    ASSERT_EQ(stat(fixture("world_writable_dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0002, 0u);
    for (const char *name : {"world_writable", "world_writable_dir"}) {
        Loaded p(fixture(name));
        EXPECT_EQ(p.initRc(), 0);
        EXPECT_STREQ(p.descriptor().name, name);
        EXPECT_EQ(p.call("ping", "{}").result, R"({"pong":true})");
    }
}

TEST(Fixtures, MethodErrorFails) {
    Loaded p(fixture("method_error"));
    ASSERT_EQ(p.initRc(), 0) << p.initError();
    Call c = p.call("fail", R"({"x":"y"})");
    EXPECT_EQ(c.rc, MO_E_INVALID);
    EXPECT_EQ(c.code, MO_E_INVALID);
    EXPECT_EQ(c.message, "invalid 'x': expected a number");
}

TEST(Fixtures, ProvidesRuntime) {
    Loaded p(fixture("provides_runtime"));
    ASSERT_EQ(p.initRc(), 0) << p.initError();
    const char *const *provides = p.descriptor().provides;
    ASSERT_NE(provides, nullptr);
    EXPECT_STREQ(provides[0], "runtime:fixture");
    EXPECT_EQ(provides[1], nullptr);
    auto &services = p.registered().services;
    ASSERT_EQ(services.count({MO_SERVICE_RUNTIME, "fixture"}), 1u);
    auto *rt = static_cast<const mo_runtime_service *>(services[{MO_SERVICE_RUNTIME, "fixture"}]);
    EXPECT_EQ(rt->size, sizeof(mo_runtime_service));
    EXPECT_EQ(rt->create, nullptr);
    EXPECT_EQ(rt->start, nullptr);
    ASSERT_NE(rt->state, nullptr);
    mo_buffer out = MO_BUFFER_INIT;
    mo_error err = MO_ERROR_INIT;
    EXPECT_EQ(rt->state(rt->self, "anything", &out, &err), 0);
    EXPECT_STREQ(out.data, R"({"id":"fixture"})");
    host.buffer_free(&out);
}

} // namespace
