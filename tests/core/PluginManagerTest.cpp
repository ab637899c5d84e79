// The loader and the service registry, against the fixture plugins in
// tests/fixtures/plugins (each built into its own directory).
#include "mobileops/core/PluginManager.h"
#include "TestUtil.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Store.h"

#include <gtest/gtest.h>

#include <memory>

using namespace mobileops::core;
using mobileops::test::fixtureDir;
using mobileops::test::TempDir;

namespace {

class Loader : public ::testing::Test {
protected:
    std::unique_ptr<PluginManager> manager(const std::vector<std::string> &cases) {
        Paths p;
        p.rootDir = _tmp.path() + "/root";
        p.runDir = _tmp.path() + "/run";
        for (auto &c : cases) p.pluginDirs.push_back(fixtureDir(c));
        _config = std::make_unique<Config>(p, std::map<std::string, std::string>{});
        return std::make_unique<PluginManager>(*_config, [this]() -> Store & {
            if (!_store) _store = Store::open(_tmp.path() + "/root/mobileops.db");
            return *_store;
        });
    }

    // The error loading `name` reports, from the record and from load().
    std::string loadError(const std::string &name) {
        auto pm = manager({name});
        pm->scan();
        PluginRecord *rec = pm->plugins().empty() ? nullptr : pm->plugins().front();
        EXPECT_NE(rec, nullptr);
        try {
            pm->load(rec ? rec->name : name);
        } catch (const Error &e) {
            EXPECT_EQ(rec->state, PluginRecord::State::Failed);
            std::string msg = e.what();
            EXPECT_NE(msg.find(rec->path), std::string::npos) << "message names the file: " << msg;
            return msg;
        }
        ADD_FAILURE() << name << " loaded";
        return {};
    }

    TempDir _tmp;
    std::unique_ptr<Config> _config;
    std::unique_ptr<Store> _store;
};

TEST_F(Loader, GoodPluginLoadsWithMethodFeatureAndProbe) {
    auto pm = manager({"good"});
    PluginRecord &rec = pm->load("good");
    EXPECT_EQ(rec.state, PluginRecord::State::Loaded);
    EXPECT_EQ(rec.methods.count("ping"), 1u);
    ASSERT_FALSE(rec.features.empty());
    const mo_probe &probe = pm->probe(rec);
    EXPECT_EQ(probe.usable, 1);
    mo_error err = MO_ERROR_INIT;
    mo_buffer out = MO_BUFFER_INIT;
    auto &m = rec.methods["ping"];
    ASSERT_EQ(m.call(m.self, "{}", &out, &err), 0) << err.message;
    EXPECT_STREQ(out.data, R"({"pong":true})");
    pm->hostApi()->buffer_free(&out);
}

TEST_F(Loader, WrongMajorIsRefusedNamingBothVersions) {
    std::string msg = loadError("wrong_major");
    EXPECT_NE(msg.find("built for ABI 2.0, this mobileops offers ABI 1.0"), std::string::npos)
        << msg;
}

TEST_F(Loader, NewerMinorIsRefused) {
    std::string msg = loadError("newer_minor");
    EXPECT_NE(msg.find("needs ABI 1.1, this mobileops offers ABI 1.0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("plugin `newer_minor`"), std::string::npos) << msg;
}

TEST_F(Loader, OversizedDescriptorIsRefused) {
    std::string msg = loadError("oversized");
    EXPECT_NE(msg.find("larger than the"), std::string::npos) << msg;
}

TEST_F(Loader, MissingEntrySymbolIsRefused) {
    std::string msg = loadError("no_entry");
    EXPECT_NE(msg.find("missing entry symbol `mobileops_plugin_entry`"), std::string::npos) << msg;
}

TEST_F(Loader, InitFailureIsReportedWithThePluginsMessage) {
    std::string msg = loadError("init_fails");
    EXPECT_NE(msg.find("init failed: fixture refuses to start"), std::string::npos) << msg;
}

TEST_F(Loader, ExceptionEscapingInitIsCaught) {
    std::string msg = loadError("init_throws");
    EXPECT_NE(msg.find("init failed"), std::string::npos) << msg;
}

TEST_F(Loader, MissingRequiredCallbacksAreRefused) {
    EXPECT_NE(loadError("no_init").find("missing required callback `init`"), std::string::npos);
    EXPECT_NE(loadError("no_probe").find("missing required callback `probe`"), std::string::npos);
    EXPECT_NE(loadError("null_name").find("no valid name"), std::string::npos);
}

TEST_F(Loader, WorldWritableFileAndDirectoryAreRefused) {
    EXPECT_NE(loadError("world_writable").find("world-writable plugin file"), std::string::npos);
    EXPECT_NE(loadError("world_writable_dir").find("world-writable directory"), std::string::npos);
}

TEST_F(Loader, BrokenPluginsDoNotStopTheOthers) {
    auto pm = manager({"wrong_major", "init_fails", "no_entry", "good", "init_throws"});
    pm->loadAll();
    int loaded = 0, failed = 0;
    for (PluginRecord *p : pm->plugins()) {
        if (p->state == PluginRecord::State::Loaded) ++loaded;
        if (p->state == PluginRecord::State::Failed) {
            ++failed;
            EXPECT_FALSE(p->error.empty()) << p->name;
        }
    }
    EXPECT_EQ(loaded, 1);
    EXPECT_EQ(failed, 4);
    EXPECT_EQ(pm->find("good")->state, PluginRecord::State::Loaded);
}

TEST_F(Loader, ScanWithAWarmCacheOpensNoFile) {
    {
        auto pm = manager({"good", "provides_runtime"});
        pm->scan(); // cold: opens each file, writes the cache
    }
    auto pm = manager({"good", "provides_runtime"});
    pm->scan();
    ASSERT_NE(pm->find("provides_runtime"), nullptr);
    EXPECT_EQ(pm->find("good")->handle, nullptr);
    EXPECT_EQ(pm->find("provides_runtime")->handle, nullptr);
    ASSERT_EQ(pm->find("provides_runtime")->provides.size(), 1u);
    EXPECT_EQ(pm->find("provides_runtime")->provides[0].second, "fixture");
    EXPECT_TRUE(pm->loadOrder().empty());
}

TEST_F(Loader, ServiceLookupLoadsOnlyTheProvider) {
    auto pm = manager({"good", "provides_runtime", "wrong_major"});
    auto *rt = static_cast<const mo_runtime_service *>(pm->service(MO_SERVICE_RUNTIME));
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(pm->loadOrder(), std::vector<std::string>{"provides_runtime"});
    ASSERT_NE(rt->state, nullptr);
    EXPECT_EQ(rt->create, nullptr); // the fixture leaves it out: padded with NULLs
    mo_error err = MO_ERROR_INIT;
    mo_buffer out = MO_BUFFER_INIT;
    ASSERT_EQ(rt->state(rt->self, "x", &out, &err), 0) << err.message;
    EXPECT_STREQ(out.data, R"({"id":"fixture"})");
    pm->hostApi()->buffer_free(&out);
    EXPECT_EQ(pm->defaultProvider(MO_SERVICE_RUNTIME), "fixture");
    EXPECT_EQ(pm->service(MO_SERVICE_RUNTIME, "fixture"), rt);
}

TEST_F(Loader, UnknownProviderAndKindAreClearErrors) {
    auto pm = manager({"provides_runtime"});
    try {
        pm->service(MO_SERVICE_RUNTIME, "nosuch");
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "no `runtime` service provider named `nosuch`");
    }
    try {
        pm->service(MO_SERVICE_NETWORK);
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "no plugin provides the `network` service");
    }
}

TEST_F(Loader, ConfiguredDefaultProviderWins) {
    auto pm = manager({"provides_runtime"});
    _config->set("services.runtime", "other");
    EXPECT_EQ(pm->defaultProvider(MO_SERVICE_RUNTIME), "other");
}

TEST_F(Loader, HostTableStoreRoundTripThroughAPlugin) {
    auto pm = manager({"good"});
    PluginRecord &rec = pm->load("good");
    const mo_host_api *host = pm->hostApi();
    auto *handle = reinterpret_cast<mo_plugin *>(&rec);
    mo_error err = MO_ERROR_INIT;
    ASSERT_EQ(
        host->store_put(handle, "container", "k1", "web", R"({"a":1})", MO_STORE_CREATE, &err), 0)
        << err.message;
    EXPECT_EQ(
        host->store_put(handle, "container", "k2", "web", R"({"a":2})", MO_STORE_CREATE, &err),
        MO_E_EXISTS);
    mo_buffer out = MO_BUFFER_INIT;
    ASSERT_EQ(host->store_find(handle, "container", "web", &out, &err), 0) << err.message;
    EXPECT_STREQ(out.data, R"({"a":1})");
    EXPECT_EQ(host->store_get(handle, "container", "nope", &out, &err), MO_E_NOT_FOUND);
    host->buffer_free(&out);
    mo_lock *lock = nullptr;
    ASSERT_EQ(host->lock(handle, "container/k1", 0, &lock, &err), 0) << err.message;
    mo_lock *second = nullptr;
    EXPECT_EQ(host->lock(handle, "container/k1", MO_LOCK_NOWAIT, &second, &err), MO_E_BUSY);
    host->unlock(lock);
    ASSERT_EQ(host->lock(handle, "container/k1", MO_LOCK_NOWAIT, &second, &err), 0) << err.message;
    host->unlock(second);
}

} // namespace
