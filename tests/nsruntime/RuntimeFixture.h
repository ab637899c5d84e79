// The runtime service as the CLI uses it, for the root tests: the built nsruntime.so
// loaded by the core's PluginManager over the core's host table and SQLite store in a
// temporary root, seen through its C ABI (Service), with leak checks at teardown.
#pragma once

#include "Launcher.h"
#include "ProcFs.h"
#include "Runtime.h"
#include "State.h"
#include "TestSupport.h"

#include "mobileops/core/Config.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <mobileops/plugin.h>

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using nlohmann::json;

namespace {

namespace core = mobileops::core;

// The plugin's mo_runtime_service seen from C++, throwing as the engine does: Error with
// the code and message of the error slot, LaunchError from run and exec (with the exit
// status the C function reports, what the CLI exits with).
class Service {
public:
    Service(const mo_runtime_service *rt, const mo_host_api *api) : _rt(rt), _api(api) {}

    json create(const json &spec) {
        return output([&](mo_buffer *b, mo_error *e) {
            return _rt->create(_rt->self, spec.dump().c_str(), b, e);
        });
    }
    void start(const std::string &ref) {
        call([&](mo_error *e) { return _rt->start(_rt->self, ref.c_str(), e); });
    }
    int run(const json &spec, const Stdio &stdio, bool autoremove) {
        mo_stdio s = cStdio(stdio);
        return status([&](int *st, mo_error *e) {
            return _rt->run(_rt->self, spec.dump().c_str(), &s,
                            autoremove ? MO_RUNTIME_AUTOREMOVE : 0, st, e);
        });
    }
    void kill(const std::string &ref, int signal, bool all) {
        call([&](mo_error *e) {
            return _rt->kill(_rt->self, ref.c_str(), signal, all ? MO_RUNTIME_ALL : 0, e);
        });
    }
    void stop(const std::string &ref, uint32_t timeout) {
        call([&](mo_error *e) { return _rt->stop(_rt->self, ref.c_str(), timeout, e); });
    }
    void remove(const std::string &ref, bool force) {
        call([&](mo_error *e) {
            return _rt->remove(_rt->self, ref.c_str(), force ? MO_RUNTIME_FORCE : 0, e);
        });
    }
    json state(const std::string &ref) {
        return output(
            [&](mo_buffer *b, mo_error *e) { return _rt->state(_rt->self, ref.c_str(), b, e); });
    }
    json list(bool all) {
        return output([&](mo_buffer *b, mo_error *e) {
            return _rt->list(_rt->self, all ? MO_RUNTIME_ALL : 0, b, e);
        });
    }
    int exec(const std::string &ref, const json &process, const Stdio &stdio) {
        mo_stdio s = cStdio(stdio);
        return status([&](int *st, mo_error *e) {
            return _rt->exec(_rt->self, ref.c_str(), process.dump().c_str(), &s, st, e);
        });
    }
    void attach(const std::string &ref, const Stdio &stdio) {
        mo_stdio s = cStdio(stdio);
        call([&](mo_error *e) { return _rt->attach(_rt->self, ref.c_str(), &s, e); });
    }
    json top(const std::string &ref) {
        return output(
            [&](mo_buffer *b, mo_error *e) { return _rt->top(_rt->self, ref.c_str(), b, e); });
    }
    int wait(const std::string &ref) {
        int st = -1;
        call([&](mo_error *e) { return _rt->wait(_rt->self, ref.c_str(), &st, e); });
        return st;
    }
    json gc() {
        return output([&](mo_buffer *b, mo_error *e) { return _rt->gc(_rt->self, b, e); });
    }
    void pause(const std::string &ref) {
        call([&](mo_error *e) { return _rt->pause(_rt->self, ref.c_str(), e); });
    }
    void resume(const std::string &ref) {
        call([&](mo_error *e) { return _rt->resume(_rt->self, ref.c_str(), e); });
    }
    json stats(const std::string &ref) {
        return output(
            [&](mo_buffer *b, mo_error *e) { return _rt->stats(_rt->self, ref.c_str(), b, e); });
    }
    void update(const std::string &ref, const json &resources) {
        call([&](mo_error *e) {
            return _rt->update(_rt->self, ref.c_str(), resources.dump().c_str(), e);
        });
    }

private:
    static mo_stdio cStdio(const Stdio &s) {
        uint32_t flags = (s.tty ? MO_STDIO_TTY : 0) | (s.interactive ? MO_STDIO_INTERACTIVE : 0);
        return {sizeof(mo_stdio), s.in, s.out, s.err, flags};
    }
    template <typename Fn> void call(Fn &&fn) {
        mo_error err = MO_ERROR_INIT;
        if (int rc = fn(&err); rc != 0) throw Error(rc, err.message);
    }
    template <typename Fn> json output(Fn &&fn) {
        mo_buffer buf = MO_BUFFER_INIT;
        struct Free {
            const mo_host_api *api;
            mo_buffer *buf;
            ~Free() { api->buffer_free(buf); }
        } free{_api, &buf};
        call([&](mo_error *e) { return fn(&buf, e); });
        return json::parse(std::string(buf.data, buf.len));
    }
    template <typename Fn> int status(Fn &&fn) {
        mo_error err = MO_ERROR_INIT;
        int st = -1;
        if (int rc = fn(&st, &err); rc != 0) throw LaunchError(rc, err.message, st);
        return st;
    }

    const mo_runtime_service *_rt;
    const mo_host_api *_api;
};

class RuntimeTest : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_ROOT_AND_ROOTFS();
        char tmpl[] = "/tmp/nsruntime-host-XXXXXX";
        ASSERT_TRUE(::mkdtemp(tmpl));
        _dir = tmpl;
        core::Paths paths;
        paths.rootDir = _dir + "/root";
        paths.runDir = _dir + "/run";
        paths.pluginDirs = {MOBILEOPS_BINARY_DIR "/lib/mobileops/plugins"};
        std::filesystem::create_directories(paths.rootDir);
        std::filesystem::create_directories(paths.runDir);
        _config = std::make_unique<core::Config>(
            paths, std::map<std::string, std::string>{{"root_dir", paths.rootDir},
                                                      {"run_dir", paths.runDir}});
        _manager = std::make_unique<core::PluginManager>(*_config, [this]() -> core::Store & {
            if (!_store) _store = core::Store::open(_dir + "/root/mobileops.db");
            return *_store;
        });
        _iface = static_cast<const mo_runtime_service *>(
            _manager->service(MO_SERVICE_RUNTIME, "namespace"));
        ASSERT_TRUE(_iface) << "no runtime `namespace` in " << paths.pluginDirs[0];
        _rt = std::make_unique<Service>(_iface, _manager->hostApi());
    }

    void TearDown() override {
        if (!_rt) return;
        std::set<std::pair<pid_t, uint64_t>> pids;
        for (auto &c : _rt->list(true)) {
            auto raw = host().get(kContainerKind, c["id"]);
            if (raw) {
                pids.insert({raw->value("pid", 0), raw->value("pid_start", uint64_t(0))});
                pids.insert(
                    {raw->value("monitor_pid", 0), raw->value("monitor_start", uint64_t(0))});
            }
            try {
                _rt->remove(c["id"], true);
            } catch (const std::exception &e) {
                ADD_FAILURE() << "cleanup of " << c["name"] << ": " << e.what();
            }
        }
        for (auto [pid, start] : _seen) pids.insert({pid, start});
        for (auto [pid, start] : pids) {
            if (pid <= 0 || pid == ::getpid()) continue; // a foreground run's "monitor" is us
            EXPECT_FALSE(processAlive(pid, start)) << "pid " << pid << " outlived its container";
        }
        EXPECT_EQ(hostMountsUnder(rootfsPath()), 0);
        std::error_code ec;
        EXPECT_TRUE(std::filesystem::directory_iterator(_dir + "/root/containers", ec) ==
                    std::filesystem::directory_iterator())
            << "a container directory was left behind";
        _rt.reset();
        _manager.reset();
        _store.reset();
        _config.reset();
        std::system(("rm -rf " + _dir).c_str());
    }

    // The plugin's own handle and the core's host table: what the plugin's engine uses.
    core::PluginRecord &plugin() { return *_manager->find("nsruntime"); }
    Host host() { return Host(_manager->hostApi(), reinterpret_cast<mo_plugin *>(&plugin())); }
    // The engine over the same host table and store, for what the C ABI does not show.
    Runtime engine() { return Runtime(host()); }
    // The plugin directory is the build's: a cgroup plugin there changes pause and update.
    bool hasCgroupService() { return !_manager->providers(MO_SERVICE_CGROUP).empty(); }
    std::string containerDir(const std::string &id) { return engine().containerDir(id); }
    // The container's output as the log service has it, one "<time> <stream> F|P <line>"
    // per record (the CRI text form the checks below look for).
    std::string logOf(const std::string &id) {
        auto *svc = static_cast<const mo_log_service *>(_manager->service(MO_SERVICE_LOG, ""));
        if (!svc) return "(no log service)";
        char path[] = "/tmp/nsruntime-log-XXXXXX";
        int fd = ::mkstemp(path);
        if (fd < 0) return "(mkstemp failed)";
        mo_error err = MO_ERROR_INIT;
        int rc = svc->read(svc->self, id.c_str(), R"({"json":true})", fd, fd, &err);
        ::close(fd);
        std::string text = slurp(path);
        ::unlink(path);
        if (rc < 0) return std::string("(log: ") + err.message + ")";
        std::string out;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);) {
            json j = json::parse(line);
            out += j["time"].get<std::string>() + " " + j["stream"].get<std::string>() +
                   (j.value("partial", false) ? " P " : " F ") + j["line"].get<std::string>() +
                   "\n";
        }
        return out;
    }

    json spec(const std::string &name, std::vector<std::string> args) {
        return {{"name", name},
                {"rootfs", rootfsPath()},
                {"process", {{"args", args}}},
                {"stopTimeout", 10}};
    }
    json boot(const json &s) {
        json st = _rt->create(s);
        _rt->start(st["id"]);
        json now = _rt->state(st["id"]);
        remember(now);
        return now;
    }
    void remember(const json &state) {
        auto raw = host().get(kContainerKind, state["id"]);
        if (!raw) return;
        _seen.insert({raw->value("pid", 0), raw->value("pid_start", uint64_t(0))});
        _seen.insert({raw->value("monitor_pid", 0), raw->value("monitor_start", uint64_t(0))});
    }
    std::string errorOf(const std::function<void()> &fn) {
        try {
            fn();
        } catch (const Error &e) {
            return e.what();
        }
        return "(no error)";
    }

    std::string _dir;
    std::unique_ptr<core::Config> _config;
    std::unique_ptr<core::Store> _store;
    std::unique_ptr<core::PluginManager> _manager;
    const mo_runtime_service *_iface = nullptr;
    std::unique_ptr<Service> _rt;
    std::set<std::pair<pid_t, uint64_t>> _seen;
};

} // namespace
