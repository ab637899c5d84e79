// What the bridge plugin's root tests share: the core's host table over a store of the
// test's own, and a process parked in a network namespace of its own.
#pragma once

#include "mobileops/core/Config.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <mobileops/common/Host.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace mobileops::test {

// The core as a command sees it, over the store under `dir`: the plugin directory is
// empty, so a plugin record of our own stands for the bridge plugin (the host table finds
// the manager, and so the store and configuration, through it).
class CoreHost {
public:
    explicit CoreHost(const std::string &dir) {
        mobileops::core::Paths paths;
        paths.rootDir = dir + "/root";
        paths.runDir = dir + "/run";
        paths.pluginDirs = {dir + "/plugins"};
        for (auto &d : {paths.rootDir, paths.runDir, paths.pluginDirs[0]})
            std::filesystem::create_directories(d);
        _config = std::make_unique<mobileops::core::Config>(
            paths, std::map<std::string, std::string>{{"root_dir", paths.rootDir},
                                                      {"run_dir", paths.runDir}});
        _manager = std::make_unique<mobileops::core::PluginManager>(
            *_config, [this, dir]() -> mobileops::core::Store & {
                if (!_store) _store = mobileops::core::Store::open(dir + "/root/mobileops.db");
                return *_store;
            });
        _record.name = "bridge";
        _record.manager = _manager.get();
        _host = std::make_unique<common::Host>(_manager->hostApi(), plugin());
    }

    const common::Host &host() const { return *_host; }
    mobileops::core::Config &config() { return *_config; }
    const mo_host_api *api() const { return _manager->hostApi(); }
    mo_plugin *plugin() { return reinterpret_cast<mo_plugin *>(&_record); }

private:
    std::unique_ptr<mobileops::core::Config> _config;
    std::unique_ptr<mobileops::core::Store> _store;
    std::unique_ptr<mobileops::core::PluginManager> _manager;
    mobileops::core::PluginRecord _record;
    std::unique_ptr<common::Host> _host;
};

// A process parked in a network namespace of its own (a stand-in for a container),
// killed and reaped when the test ends, also on failure.
class NetnsChild {
public:
    NetnsChild() {
        int ready[2], hold[2];
        if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(hold, O_CLOEXEC) != 0) return;
        _pid = ::fork();
        if (_pid == 0) {
            ::close(ready[0]);
            ::close(hold[1]);
            char c = ::unshare(CLONE_NEWNET) == 0 ? 'k' : 'e';
            if (::write(ready[1], &c, 1) != 1) ::_exit(1);
            // Returns at EOF: when the test closes its end, or dies.
            while (::read(hold[0], &c, 1) < 0 && errno == EINTR) {
            }
            ::_exit(0);
        }
        ::close(ready[1]);
        ::close(hold[0]);
        _hold = hold[1];
        char c = 0;
        _ok = _pid > 0 && ::read(ready[0], &c, 1) == 1 && c == 'k';
        ::close(ready[0]);
    }
    ~NetnsChild() {
        if (_pid > 0) {
            ::kill(_pid, SIGKILL);
            ::waitpid(_pid, nullptr, 0);
        }
        if (_hold >= 0) ::close(_hold);
    }
    NetnsChild(const NetnsChild &) = delete;
    NetnsChild &operator=(const NetnsChild &) = delete;
    pid_t pid() const { return _pid; }
    bool ok() const { return _ok; }

private:
    pid_t _pid = -1;
    int _hold = -1;
    bool _ok = false;
};

} // namespace mobileops::test
