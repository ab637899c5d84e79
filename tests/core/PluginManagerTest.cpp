// The loader and the service registry, against the fixture plugins in
// tests/fixtures/plugins (each built into its own directory).
#include "mobileops/core/PluginManager.h"
#include "TestUtil.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Store.h"

#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

using namespace mobileops::core;
using mobileops::test::fixtureDir;
using mobileops::test::run;
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

// plugins.verify = manifest, on copies of the fixture plugins installed in a temporary
// prefix with a toolbox manifest of our own.
class Verify : public Loader {
protected:
    std::string prefix() const { return _tmp.path() + "/prefix"; }
    std::string pluginDir() const { return prefix() + "/lib/mobileops/plugins"; }
    std::string manifestPath() const { return prefix() + "/lib/mobileops/toolbox.json"; }

    std::string install(const std::string &name) {
        std::filesystem::create_directories(pluginDir());
        std::string to = pluginDir() + "/" + name + ".so";
        std::filesystem::copy_file(fixtureDir(name) + "/" + name + ".so", to,
                                   std::filesystem::copy_options::overwrite_existing);
        return to;
    }

    static std::string sha256(const std::string &path) {
        auto r = run({"/usr/bin/sha256sum", path});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out.substr(0, 64);
    }

    // The manifest lists `digests` by plugin file name.
    void writeManifest(const std::map<std::string, std::string> &digests) {
        std::ostringstream files;
        for (auto &[name, digest] : digests)
            files << (files.tellp() > 0 ? "," : "") << "\"lib/mobileops/plugins/" << name
                  << ".so\": {\"sha256\": \"" << digest << "\", \"size\": 1, \"mode\": \"0755\"}";
        std::ofstream(manifestPath()) << R"({"format": 1, "algorithm": "sha256", "created": "x", )"
                                      << R"("files": {)" << files.str() << "}}";
    }

    std::unique_ptr<PluginManager> verifying(std::map<std::string, std::string> values = {}) {
        Paths p;
        p.prefix = prefix();
        p.rootDir = _tmp.path() + "/root";
        p.runDir = _tmp.path() + "/run";
        p.pluginDirs = {pluginDir()};
        values.emplace("plugins.verify", "manifest");
        _config = std::make_unique<Config>(p, values);
        return std::make_unique<PluginManager>(*_config, [this]() -> Store & {
            if (!_store) _store = Store::open(_tmp.path() + "/root/mobileops.db");
            return *_store;
        });
    }

    static bool mapped(const std::string &path) {
        std::ifstream maps("/proc/self/maps");
        std::stringstream all;
        all << maps.rdbuf();
        return all.str().find(path) != std::string::npos;
    }

    // Append to the installed copy: still a loadable ELF, with other bytes.
    static void tamper(const std::string &path) {
        std::ofstream(path, std::ios::app) << "tampered";
    }
};

TEST_F(Verify, ListedPluginLoads) {
    std::string file = install("good");
    writeManifest({{"good", sha256(file)}});
    auto pm = verifying(); // plugins.manifest: the prefix's toolbox.json
    EXPECT_EQ(pm->load("good").state, PluginRecord::State::Loaded);
}

TEST_F(Verify, ChangedPluginIsRefusedNamingDigestAndManifest) {
    std::string file = install("good");
    writeManifest({{"good", sha256(file)}});
    tamper(file);
    const std::string expected = "sha256 `" + sha256(file) + "` is not in the toolbox manifest `" +
                                 manifestPath() + "` or plugins.allow";
    auto pm = verifying();
    ASSERT_EQ(pm->plugins().size(), 1u);
    PluginRecord *rec = pm->find("good");
    ASSERT_NE(rec, nullptr);
    EXPECT_EQ(rec->state, PluginRecord::State::Failed); // listed as failed, without a load
    EXPECT_EQ(rec->error, expected);
    try {
        pm->load("good");
        FAIL() << "loaded";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "plugin `good` (`" + file + "`): " + expected);
    }
    EXPECT_EQ(rec->handle, nullptr);
    EXPECT_FALSE(mapped(file)) << "the refused file was opened by the dynamic loader";
}

TEST_F(Verify, AllowListAdmitsIt) {
    std::string file = install("good");
    writeManifest({{"good", sha256(file)}});
    tamper(file);
    std::string digest = sha256(file);
    for (char &c : digest) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto pm = verifying(
        {{"plugins.allow", " sha256:" + std::string(64, '0') + " , sha256:" + digest + ","}});
    EXPECT_EQ(pm->load("good").state, PluginRecord::State::Loaded);
}

TEST_F(Verify, MissingManifestRefusesEveryPlugin) {
    install("good");
    install("provides_runtime");
    auto pm = verifying({{"plugins.manifest", _tmp.path() + "/nope.json"}});
    for (PluginRecord *p : pm->plugins()) {
        EXPECT_EQ(p->state, PluginRecord::State::Failed) << p->name;
        EXPECT_EQ(p->error, "toolbox manifest `" + _tmp.path() +
                                "/nope.json`: No such file or directory (plugins.verify = "
                                "manifest admits no plugin without it)");
    }
    EXPECT_THROW(pm->load("good"), Error);
    EXPECT_FALSE(mapped(pluginDir() + "/good.so"));
}

TEST_F(Verify, WarmCacheDoesNotSkipTheHash) {
    std::string file = install("good");
    {
        auto pm = verifying({{"plugins.verify", "off"}});
        pm->load("good"); // writes the cache entry for this very file
    }
    writeManifest({{"good", std::string(64, 'a')}});
    auto pm = verifying();
    EXPECT_EQ(pm->find("good"), nullptr); // not scanned yet
    pm->scan();
    ASSERT_NE(pm->find("good"), nullptr);
    EXPECT_EQ(pm->find("good")->state, PluginRecord::State::Failed);
    EXPECT_THROW(pm->load("good"), Error);
}

TEST_F(Verify, FileReplacedAfterTheScanIsHashedAgainBeforeLoading) {
    std::string file = install("good");
    writeManifest({{"good", sha256(file)}});
    {
        auto pm = verifying();
        pm->scan(); // warm the cache: the next scan opens nothing
    }
    auto pm = verifying();
    pm->scan();
    ASSERT_EQ(pm->find("good")->state, PluginRecord::State::Found);
    // Replaced between the scan and the load, as an attacker would.
    std::filesystem::copy_file(file, file + ".new");
    tamper(file + ".new");
    std::filesystem::rename(file + ".new", file);
    try {
        pm->load("good");
        FAIL() << "loaded";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("is not in the toolbox manifest"), std::string::npos)
            << e.what();
    }
}

TEST_F(Verify, BadSettingsAreClearErrors) {
    install("good");
    try {
        verifying({{"plugins.verify", "yes"}})->scan();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_EQ(std::string(e.what()),
                  "invalid plugins.verify `yes`: expected `off` or `manifest`");
    }
    try {
        verifying({{"plugins.allow", "md5:abc"}})->scan();
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_EQ(std::string(e.what()),
                  "invalid plugins.allow entry `md5:abc`: expected sha256:<64 hex digits>");
    }
}

} // namespace
