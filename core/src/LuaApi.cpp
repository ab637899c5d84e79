// The Lua API: one description per function. The engine binds each entry with argument
// checks generated from its params, `mobileops features` lists them, and
// `mobileops --lua-api-docs` renders docs/lua-api.md from the same table.
#include "LuaInternal.h"
#include "SystemInfo.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Log.h"
#include "mobileops/core/OciSpec.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Spec.h"
#include "mobileops/core/Store.h"

#include <mobileops/services.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace mobileops::core {

using json = nlohmann::json;
using lua::protect;
using lua::str;

int l_service(lua_State *L);

namespace {

Session &session(lua_State *L) { return LuaEngine::from(L).session(); }
PluginManager &plugins(lua_State *L) { return *session(L).plugins; }

std::string joinArgs(lua_State *L, int from) {
    std::string out;
    int n = lua_gettop(L);
    lua_getglobal(L, "tostring");
    for (int i = from; i <= n; ++i) {
        lua_pushvalue(L, -1);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        size_t len = 0;
        const char *s = lua_tolstring(L, -1, &len);
        if (i > from) out += '\t';
        if (s) out.append(s, len);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return out;
}

int l_print(lua_State *L) {
    std::string line = joinArgs(L, 1) + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    return 0;
}

int l_eprint(lua_State *L) {
    std::fflush(stdout);
    std::string line = joinArgs(L, 1) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    return 0;
}

int l_warn(lua_State *L) {
    std::fflush(stdout);
    std::fflush(stderr);
    log::write(log::Level::Warning, str(L, 1)); // stderr, or the sink (`mobileops-runc --log`)
    return 0;
}

int l_json_encode(lua_State *L) {
    return protect(L, [&] {
        json j = luaToJson(L, 1);
        std::string s = lua_toboolean(L, 2) ? j.dump(2) : j.dump();
        lua_pushlstring(L, s.data(), s.size());
        return 1;
    });
}

int l_json_decode(lua_State *L) {
    return protect(L, [&] {
        json j;
        try {
            j = json::parse(str(L, 1));
        } catch (const json::parse_error &e) {
            throw Error(MO_E_INVALID, std::string("invalid JSON: ") + e.what());
        }
        pushJson(L, j);
        return 1;
    });
}

json featuresJson(PluginManager &pm, bool loadPlugins) {
    json out;
    out["core"] = PluginManager::coreFeatures();
    json api = json::array();
    for (const ApiFunction &f : luaApi())
        api.push_back(
            {{"name", std::string(f.module).empty() ? std::string("mo.") + f.name
                                                    : std::string("mo.") + f.module + "." + f.name},
             {"since", f.since}});
    out["api"] = api;
    json pluginFeatures = json::object();
    if (loadPlugins) pm.loadAll();
    for (PluginRecord *p : pm.plugins())
        if (p->state == PluginRecord::State::Loaded) pluginFeatures[p->name] = p->features;
    out["plugins"] = pluginFeatures;
    return out;
}

int l_features(lua_State *L) {
    return protect(L, [&] {
        pushJson(L, featuresJson(plugins(L), true));
        return 1;
    });
}

int l_has(lua_State *L) {
    return protect(L, [&] {
        std::string name = str(L, 1);
        auto &core = PluginManager::coreFeatures();
        bool found = std::find(core.begin(), core.end(), name) != core.end();
        if (!found) {
            // Plugin features are named "<plugin>.<feature>": load only that plugin.
            auto dot = name.find('.');
            PluginRecord *p =
                dot == std::string::npos ? nullptr : plugins(L).find(name.substr(0, dot));
            if (!p) {
                plugins(L).scan();
                p = dot == std::string::npos ? nullptr : plugins(L).find(name.substr(0, dot));
            }
            if (p) {
                try {
                    plugins(L).load(p->name);
                    found = std::find(p->features.begin(), p->features.end(), name) !=
                            p->features.end();
                } catch (const Error &) {
                }
            }
        }
        lua_pushboolean(L, found);
        return 1;
    });
}

json pluginJson(PluginRecord &p) {
    json provides = json::array();
    for (auto &[kind, provider] : p.provides)
        provides.push_back(std::string(serviceKindName(kind)) + ":" + provider);
    const char *state = p.state == PluginRecord::State::Loaded   ? "loaded"
                        : p.state == PluginRecord::State::Failed ? "failed"
                                                                 : "available";
    json j = {{"name", p.name},
              {"version", p.version},
              {"description", p.description},
              {"path", p.path},
              {"abi", std::to_string(p.abiMajor) + "." + std::to_string(p.abiMinor)},
              {"state", state},
              {"provides", provides}};
    if (!p.error.empty()) j["error"] = p.error;
    if (!p.shadowedPath.empty()) j["shadows"] = p.shadowedPath;
    return j;
}

int l_plugin_list(lua_State *L) {
    return protect(L, [&] {
        json out = json::array();
        for (PluginRecord *p : plugins(L).plugins()) out.push_back(pluginJson(*p));
        pushJson(L, out);
        return 1;
    });
}

int l_plugin_info(lua_State *L) {
    return protect(L, [&] {
        std::string name = str(L, 1);
        PluginManager &pm = plugins(L);
        pm.scan();
        PluginRecord *p = pm.find(name);
        if (!p) throw Error(MO_E_NOT_FOUND, "no plugin named " + quote(name));
        try {
            pm.load(name);
        } catch (const Error &) {
            // reported in the result's state and error
        }
        json j = pluginJson(*p);
        if (p->state == PluginRecord::State::Loaded) {
            json methods = json::array();
            for (auto &[n, m] : p->methods)
                methods.push_back({{"name", n}, {"summary", m.summary}, {"params", m.params}});
            j["methods"] = methods;
            j["features"] = p->features;
            const mo_probe &probe = pm.probe(*p);
            j["probe"] = {{"usable", probe.usable != 0}, {"reason", probe.reason}};
        }
        pushJson(L, j);
        return 1;
    });
}

int l_doctor(lua_State *L) {
    return protect(L, [&] {
        PluginManager &pm = plugins(L);
        pm.loadAll();
        json out = json::array();
        for (PluginRecord *p : pm.plugins()) {
            json j = pluginJson(*p);
            if (p->state == PluginRecord::State::Loaded) {
                const mo_probe &probe = pm.probe(*p);
                j["usable"] = probe.usable != 0;
                j["reason"] = probe.reason;
            } else {
                j["usable"] = false;
                j["reason"] = p->error;
            }
            out.push_back(j);
        }
        pushJson(L, out);
        return 1;
    });
}

int l_system_info(lua_State *L) {
    return protect(L, [&] {
        Session &s = session(L);
        json j = systemInfo();
        j["root_dir"] = s.config->paths().rootDir;
        j["run_dir"] = s.config->paths().runDir;
        j["plugin_dirs"] = s.config->paths().pluginDirs;
        j["script_dirs"] = s.config->paths().scriptDirs;
        j["config_file"] = s.config->paths().configFile;
        pushJson(L, j);
        return 1;
    });
}

int l_providers(lua_State *L) {
    return protect(L, [&] {
        std::string kindName = str(L, 1);
        auto kind = serviceKindFromName(kindName);
        if (!kind) throw Error(MO_E_INVALID, "unknown service kind " + quote(kindName));
        PluginManager &pm = plugins(L);
        std::string def = pm.defaultProvider(*kind);
        json out = json::array();
        for (auto &[provider, plugin] : pm.providers(*kind))
            out.push_back(
                {{"provider", provider}, {"plugin", plugin}, {"default", provider == def}});
        pushJson(L, out);
        return 1;
    });
}

int l_config(lua_State *L) {
    auto v = session(L).config->get(str(L, 1));
    if (v)
        lua_pushlstring(L, v->data(), v->size());
    else
        lua_pushnil(L);
    return 1;
}

int l_abspath(lua_State *L) {
    return protect(L, [&] {
        std::string path = str(L, 1);
        if (path.empty()) throw Error(MO_E_INVALID, "mo.abspath: invalid 'path': empty");
        if (path[0] != '/') {
            char cwd[4096];
            if (!::getcwd(cwd, sizeof cwd)) throw systemError("the working directory");
            path = std::string(cwd) + "/" + path;
        }
        // lexically: "." and ".." components and doubled slashes go
        std::vector<std::string> parts;
        std::stringstream ss(path);
        for (std::string c; std::getline(ss, c, '/');) {
            if (c.empty() || c == ".") continue;
            if (c == "..") {
                if (!parts.empty()) parts.pop_back();
            } else {
                parts.push_back(c);
            }
        }
        std::string out;
        for (const auto &c : parts) out += "/" + c;
        lua_pushstring(L, out.empty() ? "/" : out.c_str());
        return 1;
    });
}

int l_isatty(lua_State *L) {
    lua_pushboolean(L, ::isatty(static_cast<int>(lua_tointeger(L, 1))));
    return 1;
}

int l_sleep(lua_State *L) {
    double seconds = lua_tonumber(L, 1);
    if (seconds > 0) {
        struct timespec ts;
        ts.tv_sec = static_cast<time_t>(seconds);
        ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
        while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
    return 0;
}

int l_now(lua_State *L) {
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9);
    return 1;
}

int l_error(lua_State *L) {
    int code = lua_isnumber(L, 2) ? static_cast<int>(lua_tointeger(L, 2)) : MO_E_INVALID;
    lua::raise(L, code, str(L, 1));
}

// --- event log ---------------------------------------------------------------------------

// An options table's fields, each checked. Unknown keys are refused: a misspelt filter
// must not silently widen a query or a deletion.
class TableArg {
public:
    // `where` is "mo.events: invalid 'query"; messages add ".field': expected ...".
    TableArg(lua_State *L, int idx, std::string where)
        : _L(L), _idx(idx), _where(std::move(where)) {}

    void only(std::initializer_list<const char *> known) const {
        if (!lua_istable(_L, _idx)) return;
        lua_pushnil(_L);
        while (lua_next(_L, _idx)) {
            lua_pop(_L, 1);
            std::string key = lua_type(_L, -1) == LUA_TSTRING ? lua_tostring(_L, -1) : "?";
            if (std::none_of(known.begin(), known.end(), [&](const char *k) { return key == k; })) {
                std::string names;
                for (const char *k : known) names += (names.empty() ? "" : ", ") + std::string(k);
                throw Error(MO_E_INVALID,
                            _where + "." + key + "': unknown field (known: " + names + ")");
            }
        }
    }

    std::optional<double> number(const char *key, const std::string &expected) const {
        if (!push(key)) return std::nullopt;
        bool ok = lua_type(_L, -1) == LUA_TNUMBER && std::isfinite(lua_tonumber(_L, -1));
        double n = lua_tonumber(_L, -1);
        lua_pop(_L, 1);
        if (!ok) bad(key, expected);
        return n;
    }

    std::optional<int64_t> integer(const char *key, int64_t min, int64_t max,
                                   const std::string &expected) const {
        auto n = number(key, expected);
        if (!n) return std::nullopt;
        // 2^63 would pass a comparison with INT64_MAX as a double, and not convert
        if (*n != std::floor(*n) || *n < static_cast<double>(min) ||
            *n > static_cast<double>(max) || *n >= 0x1p63)
            bad(key, expected);
        return static_cast<int64_t>(*n);
    }

    std::optional<bool> boolean(const char *key) const {
        if (!push(key)) return std::nullopt;
        bool ok = lua_type(_L, -1) == LUA_TBOOLEAN;
        bool b = lua_toboolean(_L, -1);
        lua_pop(_L, 1);
        if (!ok) bad(key, "true or false");
        return b;
    }

    std::optional<std::string> string(const char *key, const std::string &expected) const {
        if (!push(key)) return std::nullopt;
        bool ok = lua_type(_L, -1) == LUA_TSTRING;
        std::string s = ok ? lua::str(_L, -1) : std::string();
        lua_pop(_L, 1);
        if (!ok || s.empty()) bad(key, expected);
        return s;
    }

private:
    bool push(const char *key) const {
        if (!lua_istable(_L, _idx)) return false;
        lua_getfield(_L, _idx, key);
        if (!lua_isnil(_L, -1)) return true;
        lua_pop(_L, 1);
        return false;
    }

    [[noreturn]] void bad(const char *key, const std::string &expected) const {
        throw Error(MO_E_INVALID, _where + "." + key + "': expected " + expected);
    }

    lua_State *_L;
    int _idx;
    std::string _where;
};

// Seconds since the epoch (a Lua number) to nanoseconds, saturating: a bound far out of
// range still means "before everything" or "after everything".
int64_t epochNanoseconds(double seconds) {
    double ns = std::round(seconds * 1e9);
    if (ns >= 9.2e18) return INT64_MAX;
    if (ns <= -9.2e18) return INT64_MIN;
    return static_cast<int64_t>(ns);
}

constexpr int64_t kMaxEventsLimit = 100000;

int l_events(lua_State *L) {
    return protect(L, [&] {
        TableArg query(L, 1, "mo.events: invalid 'query");
        query.only({"after", "since", "until", "type", "limit", "newest"});
        Store::EventQuery q;
        q.after =
            query.integer("after", 0, INT64_MAX, "a sequence number (an integer >= 0)").value_or(0);
        const char *seconds = "seconds since the epoch (a number)";
        if (auto since = query.number("since", seconds)) q.since = epochNanoseconds(*since);
        if (auto until = query.number("until", seconds)) q.until = epochNanoseconds(*until);
        q.type = query
                     .string("type", "an event type such as `container.exit`, or a prefix "
                                     "ending in a dot such as `container.`")
                     .value_or("");
        q.limit = static_cast<size_t>(
            query.integer("limit", 1, kMaxEventsLimit, "an integer from 1 to 100000")
                .value_or(1000));
        q.newest = query.boolean("newest").value_or(false);

        std::vector<Store::Event> events = plugins(L).store().events(q);
        lua_createtable(L, static_cast<int>(events.size()), 0);
        int i = 1;
        for (const Store::Event &e : events) {
            json payload = json::parse(e.payload, nullptr, false);
            if (payload.is_discarded())
                throw Error(MO_E_STORE, "event " + std::to_string(e.seq) +
                                            " in the state store: the payload is not JSON");
            lua_createtable(L, 0, 5);
            lua_pushnumber(L, static_cast<lua_Number>(e.seq));
            lua_setfield(L, -2, "seq");
            lua_pushlstring(L, e.time.data(), e.time.size());
            lua_setfield(L, -2, "time");
            lua_pushlstring(L, e.type.data(), e.type.size());
            lua_setfield(L, -2, "type");
            lua_pushlstring(L, e.source.data(), e.source.size());
            lua_setfield(L, -2, "source");
            pushJson(L, payload);
            lua_setfield(L, -2, "payload");
            lua_rawseti(L, -2, i++);
        }
        if (events.empty()) {
            luaL_getmetatable(L, "mobileops.array");
            lua_setmetatable(L, -2);
        }
        return 1;
    });
}

int l_events_prune(lua_State *L) {
    return protect(L, [&] {
        TableArg opts(L, 1, "mo.events_prune: invalid 'opts");
        opts.only({"max_age", "max_rows"});
        auto maxAge = opts.integer("max_age", 0, INT64_MAX, "seconds (an integer >= 0)");
        auto maxRows = opts.integer("max_rows", 0, INT64_MAX, "a number of events (>= 0)");
        if (!maxAge && !maxRows)
            throw Error(MO_E_INVALID,
                        "mo.events_prune: invalid 'opts': expected max_age or max_rows");
        lua_pushnumber(L, static_cast<lua_Number>(plugins(L).store().pruneEvents(maxAge, maxRows)));
        return 1;
    });
}

// --- runtime service -------------------------------------------------------------------

struct Call {
    lua_State *L;
    mo_error err = MO_ERROR_INIT;
    mo_buffer out = MO_BUFFER_INIT;
    ~Call() { free(out.data); }
};

std::string providerOf(lua_State *L) {
    // Upvalue 2 of the binding closure: the provider name, or nil for the default.
    return lua::optStr(L, lua_upvalueindex(2), "");
}

const mo_runtime_service &runtime(lua_State *L) {
    return *static_cast<const mo_runtime_service *>(
        plugins(L).service(MO_SERVICE_RUNTIME, providerOf(L)));
}

template <typename F> F need(lua_State *L, F fn, const char *name) {
    if (!fn) {
        std::string provider = providerOf(L);
        if (provider.empty()) provider = plugins(L).defaultProvider(MO_SERVICE_RUNTIME);
        throw Error(MO_E_UNSUPPORTED,
                    "the " + quote(provider) + " runtime does not support " + quote(name));
    }
    return fn;
}

// Turn a service call's result into Lua results or a Lua error.
int finish(lua_State *L, int rc, Call &c, bool pushBuffer) {
    if (rc < 0) {
        std::string provider = providerOf(L);
        if (provider.empty()) provider = plugins(L).defaultProvider(MO_SERVICE_RUNTIME);
        throw Error(rc, c.err.message[0] ? c.err.message : "failed without a message");
    }
    if (!pushBuffer) return 0;
    if (!c.out.data) {
        lua_pushnil(L);
        return 1;
    }
    json j;
    try {
        j = json::parse(c.out.data, c.out.data + c.out.len);
    } catch (const json::parse_error &e) {
        throw Error(MO_E_INTERNAL, std::string("the runtime returned invalid JSON: ") + e.what());
    }
    pushJson(L, j);
    return 1;
}

std::string jsonArg(lua_State *L, int idx) { return luaToJson(L, idx).dump(); }

mo_stdio stdioFrom(lua_State *L, int idx) {
    mo_stdio io{sizeof(mo_stdio), 0, 1, 2, 0};
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "tty");
        if (lua_toboolean(L, -1)) io.flags |= MO_STDIO_TTY;
        lua_getfield(L, idx, "interactive");
        if (lua_toboolean(L, -1)) io.flags |= MO_STDIO_INTERACTIVE;
        lua_pop(L, 2);
    }
    std::fflush(stdout); // the container writes to the same fd
    std::fflush(stderr);
    return io;
}

bool field(lua_State *L, int idx, const char *name) {
    if (!lua_istable(L, idx)) return false;
    lua_getfield(L, idx, name);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

int rt_create(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string spec = jsonArg(L, 1);
        auto &rt = runtime(L);
        return finish(L, need(L, rt.create, "create")(rt.self, spec.c_str(), &c.out, &c.err), c,
                      true);
    });
}

int rt_start(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.start, "start")(rt.self, str(L, 1).c_str(), &c.err), c, false);
    });
}

// run and exec: a container that could not start still says what to exit with.
int finishStatus(lua_State *L, int rc, Call &c, int status) {
    if (rc < 0 && status > 0) {
        std::string message = c.err.message[0] ? c.err.message : "failed without a message";
        lua::raise(L, rc, message, {}, status);
    }
    finish(L, rc, c, false);
    lua_pushinteger(L, status);
    return 1;
}

int rt_run(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string spec = jsonArg(L, 1);
        mo_stdio io = stdioFrom(L, 2);
        uint32_t flags = field(L, 2, "rm") ? MO_RUNTIME_AUTOREMOVE : 0;
        int status = 0;
        auto &rt = runtime(L);
        int rc = need(L, rt.run, "run")(rt.self, spec.c_str(), &io, flags, &status, &c.err);
        return finishStatus(L, rc, c, status);
    });
}

int rt_kill(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        int sig = lua_isnumber(L, 2) ? static_cast<int>(lua_tointeger(L, 2)) : 15;
        uint32_t flags = lua_toboolean(L, 3) ? MO_RUNTIME_ALL : 0;
        auto &rt = runtime(L);
        return finish(L, need(L, rt.kill, "kill")(rt.self, str(L, 1).c_str(), sig, flags, &c.err),
                      c, false);
    });
}

int rt_stop(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        lua_Integer t = lua_isnumber(L, 2) ? lua_tointeger(L, 2) : 10;
        if (t < 0)
            throw Error(MO_E_INVALID, "mo.runtime.stop: invalid 'timeout': expected a number >= 0");
        auto &rt = runtime(L);
        return finish(
            L,
            need(L, rt.stop, "stop")(rt.self, str(L, 1).c_str(), static_cast<uint32_t>(t), &c.err),
            c, false);
    });
}

int rt_remove(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        uint32_t flags = lua_toboolean(L, 2) ? MO_RUNTIME_FORCE : 0;
        auto &rt = runtime(L);
        return finish(L, need(L, rt.remove, "remove")(rt.self, str(L, 1).c_str(), flags, &c.err), c,
                      false);
    });
}

int rt_state(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.state, "state")(rt.self, str(L, 1).c_str(), &c.out, &c.err), c,
                      true);
    });
}

int rt_list(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        uint32_t flags = lua_toboolean(L, 1) ? MO_RUNTIME_ALL : 0;
        auto &rt = runtime(L);
        return finish(L, need(L, rt.list, "list")(rt.self, flags, &c.out, &c.err), c, true);
    });
}

int rt_exec(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string process = jsonArg(L, 2);
        mo_stdio io = stdioFrom(L, 3);
        int status = 0;
        auto &rt = runtime(L);
        finish(L,
               need(L, rt.exec, "exec")(rt.self, str(L, 1).c_str(), process.c_str(), &io, &status,
                                        &c.err),
               c, false);
        lua_pushinteger(L, status);
        return 1;
    });
}

int rt_attach(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        mo_stdio io = stdioFrom(L, 2);
        auto &rt = runtime(L);
        return finish(L, need(L, rt.attach, "attach")(rt.self, str(L, 1).c_str(), &io, &c.err), c,
                      false);
    });
}

int rt_top(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.top, "top")(rt.self, str(L, 1).c_str(), &c.out, &c.err), c,
                      true);
    });
}

int rt_pause(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.pause, "pause")(rt.self, str(L, 1).c_str(), &c.err), c, false);
    });
}

int rt_resume(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.resume, "resume")(rt.self, str(L, 1).c_str(), &c.err), c,
                      false);
    });
}

int rt_update(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string res = jsonArg(L, 2);
        auto &rt = runtime(L);
        return finish(L,
                      need(L, rt.update, "update")(rt.self, str(L, 1).c_str(), res.c_str(), &c.err),
                      c, false);
    });
}

int rt_wait(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        int status = 0;
        auto &rt = runtime(L);
        finish(L, need(L, rt.wait, "wait")(rt.self, str(L, 1).c_str(), &status, &c.err), c, false);
        lua_pushinteger(L, status);
        return 1;
    });
}

int rt_stats(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.stats, "stats")(rt.self, str(L, 1).c_str(), &c.out, &c.err), c,
                      true);
    });
}

int rt_gc(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        auto &rt = runtime(L);
        return finish(L, need(L, rt.gc, "gc")(rt.self, &c.out, &c.err), c, true);
    });
}

// --- integrity service ---------------------------------------------------------------------

const mo_integrity_service &integrity(lua_State *L) {
    return *static_cast<const mo_integrity_service *>(
        plugins(L).service(MO_SERVICE_INTEGRITY, providerOf(L)));
}

// Drift is an answer, not an error: the report comes back with clean = false.
int in_verify(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string target = str(L, 1);
        std::string options = lua_isnoneornil(L, 2) ? "{}" : jsonArg(L, 2);
        auto &svc = integrity(L);
        int rc = svc.verify(svc.self, target.c_str(), options.c_str(), &c.out, &c.err);
        if (rc == MO_E_STATE && c.out.data) rc = 0;
        return finish(L, rc, c, true);
    });
}

int in_record(lua_State *L) {
    return protect(L, [&] {
        Call c{L};
        std::string target = str(L, 1);
        std::string path = lua::optStr(L, 2, "");
        auto &svc = integrity(L);
        return finish(L, svc.record(svc.self, target.c_str(), path.c_str(), &c.out, &c.err), c,
                      true);
    });
}

// --- spec model --------------------------------------------------------------------------

int spec_load(lua_State *L) {
    return protect(L, [&] {
        std::string path = str(L, 1);
        std::ifstream in(path);
        if (!in) throw systemError("spec file " + quote(path));
        std::stringstream ss;
        ss << in.rdbuf();
        pushJson(L, spec::parseVirtualRoot(ss.str(), path));
        return 1;
    });
}

int spec_parse(lua_State *L) {
    return protect(L, [&] {
        pushJson(L, spec::parseVirtualRoot(str(L, 1), lua::optStr(L, 2, "spec")));
        return 1;
    });
}

int spec_apply_options(lua_State *L) {
    return protect(L, [&] {
        json s = lua_isnoneornil(L, 1) ? json::object() : luaToJson(L, 1);
        if (s.is_array() && s.empty()) s = json::object();
        spec::applyOptions(s, luaToJson(L, 2));
        pushJson(L, s);
        return 1;
    });
}

int spec_finalize(lua_State *L) {
    return protect(L, [&] {
        json s = luaToJson(L, 1);
        spec::finalize(s);
        pushJson(L, s);
        return 1;
    });
}

// config.json is read here, not through Lua: a Lua number would turn OCI's 2^64-1 into a
// fraction.
int spec_from_oci(lua_State *L) {
    return protect(L, [&] {
        std::string bundle = str(L, 1);
        std::string text;
        if (lua_isstring(L, 2)) {
            text = str(L, 2);
        } else {
            std::string path = bundle + "/config.json";
            std::ifstream in(path);
            if (!in) throw systemError("bundle " + quote(bundle) + ": " + quote(path));
            std::stringstream ss;
            ss << in.rdbuf();
            text = ss.str();
        }
        json config = json::parse(text, nullptr, false);
        if (config.is_discarded())
            throw Error(MO_E_INVALID,
                        "bundle " + quote(bundle) + ": config.json is not valid JSON");
        pushJson(L, spec::fromOci(config, bundle));
        return 1;
    });
}

int spec_oci_resources(lua_State *L) {
    return protect(L, [&] {
        json resources = json::parse(str(L, 1), nullptr, false);
        if (resources.is_discarded()) throw Error(MO_E_INVALID, "resources: not valid JSON");
        pushJson(L, spec::fromOciResources(resources));
        return 1;
    });
}

int spec_default_oci(lua_State *L) {
    return protect(L, [&] {
        pushJson(L, spec::defaultOciConfig(lua_toboolean(L, 1)));
        return 1;
    });
}

int l_signal(lua_State *L) {
    return protect(L, [&] {
        lua_pushinteger(L,
                        spec::parseSignal(lua_isnumber(L, 1) ? std::to_string(lua_tointeger(L, 1))
                                                             : str(L, 1)));
        return 1;
    });
}

const std::vector<ApiFunction> kApi = {
    // --- workflows and output
    {"",
     "workflow",
     "0.1",
     "Declare a workflow; returns an object whose :verb{} adds verbs.",
     {{"def", "table", "{name, summary, description?, default? (verb run when none is given)}"}},
     "workflow",
     nullptr},
    {"",
     "verb",
     "0.1",
     "Method of a workflow: declare a verb. Options and arguments drive parsing and help.",
     {{"def", "table",
       "{name, summary, description?, hidden?, options = {{name, short?, type = "
       "flag|string|int|number|list, metavar?, summary, default?}}, args = {{name, summary?, "
       "optional?, variadic?, unless? (an option whose presence skips this argument)}}, run = "
       "function(opts, args) -> exit code?}"}},
     "the declaration",
     nullptr},
    {"",
     "print",
     "0.1",
     "Write the arguments, tab-separated, and a newline to stdout.",
     {{"...", "any", "values, converted with tostring"}},
     "nothing",
     l_print},
    {"",
     "printf",
     "0.1",
     "Write a formatted line to stdout.",
     {{"fmt", "string", "string.format format"}, {"...", "any", "values"}},
     "nothing",
     nullptr},
    {"",
     "each",
     "0.1",
     "Run fn for a NAME and its MORE names (`rm a b c`): one name's error is the command's; "
     "with several, each error is printed and the rest go on.",
     {{"first", "string", "the first name"},
      {"more", "table?", "the other names"},
      {"fn", "function", "called with each name"}},
     "1 when any failed (the exit status), else nothing",
     nullptr},
    {"",
     "bytes",
     "0.1",
     "A byte count for people: `1.5GiB`, `512KiB`, `17B` (powers of 1024).",
     {{"n", "number", "bytes"}, {"none", "string?", "what a non-number gives (default `-`)"}},
     "string",
     nullptr},
    {"",
     "eprint",
     "0.1",
     "Write the arguments and a newline to stderr.",
     {{"...", "any", "values"}},
     "nothing",
     l_eprint},
    {"",
     "warn",
     "0.1",
     "Print `mobileops: warning: MESSAGE` on stderr.",
     {{"message", "string", "the warning"}},
     "nothing",
     l_warn},
    {"",
     "output",
     "0.1",
     "Print a result: JSON under --json, else a table when columns are given, else JSON.",
     {{"value", "any", "what to print"},
      {"columns", "table?", "{{key, title?, format?}} for the table form"}},
     "nothing",
     nullptr},
    {"",
     "table",
     "0.1",
     "Print rows as an aligned table with a header.",
     {{"rows", "table", "array of tables"}, {"columns", "table", "{{key, title?, format?}}"}},
     "nothing",
     nullptr},
    {"",
     "array",
     "0.1",
     "Mark a table as a JSON array (so an empty one encodes as []).",
     {{"t", "table?", "the table (default: a new one)"}},
     "the table",
     nullptr},
    {"",
     "json_encode",
     "0.1",
     "Encode a value as JSON.",
     {{"value", "any", "tables, strings, numbers, booleans, mo.null"},
      {"pretty", "boolean?", "indent with two spaces"}},
     "string",
     l_json_encode},
    {"",
     "json_decode",
     "0.1",
     "Decode JSON; null becomes mo.null in arrays and absent in objects.",
     {{"text", "string", "a JSON document"}},
     "value",
     l_json_decode},
    {"",
     "error",
     "0.1",
     "Raise a mobileops error {code, message}.",
     {{"message", "string", "lowercase, values in backticks"},
      {"code", "integer?", "an MO_E_* code (default MO_E_INVALID)"}},
     "does not return",
     l_error},
    // --- features, plugins, system
    {"",
     "has",
     "0.1",
     "Whether a feature is present (core feature or `<plugin>.<name>`).",
     {{"name", "string", "feature name"}},
     "boolean",
     l_has},
    {"",
     "features",
     "0.1",
     "All features: {core = {...}, api = {{name, since}}, plugins = {name = {...}}}.",
     {},
     "table",
     l_features},
    {"",
     "plugin_list",
     "0.1",
     "Plugins on the plugin path, without loading them.",
     {},
     "array of {name, version, description, path, abi, state, provides, error?}",
     l_plugin_list},
    {"",
     "plugin_info",
     "0.1",
     "Load a plugin and describe it, with methods, features and probe.",
     {{"name", "string", "plugin name"}},
     "table",
     l_plugin_info},
    {"",
     "doctor",
     "0.1",
     "Load every plugin and run its probe.",
     {},
     "array of {name, state, usable, reason, ...}",
     l_doctor},
    {"",
     "system_info",
     "0.1",
     "Facts about this host: kernel, cgroup layout, namespaces, paths.",
     {},
     "table",
     l_system_info},
    {"",
     "providers",
     "0.1",
     "Providers of a service kind.",
     {{"kind", "string", "runtime|cgroup|network|storage|integrity|log"}},
     "array of {provider, plugin, default}",
     l_providers},
    {"",
     "service",
     "0.1",
     "A service module bound to a provider other than the default, e.g. mo.service('runtime', "
     "'krun').",
     {{"kind", "string", "service kind"}, {"provider", "string", "provider name"}},
     "table",
     l_service},
    {"",
     "config",
     "0.1",
     "A configuration value (`root_dir`, `run_dir`, `<section>.<key>`).",
     {{"key", "string", "configuration key"}},
     "string or nil",
     l_config},
    {"",
     "sleep",
     "0.1",
     "Wait for a number of seconds (fractions allowed).",
     {{"seconds", "number", "how long"}},
     "nothing",
     l_sleep},
    {"", "now", "0.1", "Monotonic clock in seconds, for measuring intervals.", {}, "number", l_now},
    {"",
     "abspath",
     "0.1",
     "A path made absolute against the working directory, `.` and `..` resolved lexically "
     "(symlinks are not followed).",
     {{"path", "string", "a path"}},
     "string",
     l_abspath},
    {"",
     "isatty",
     "0.1",
     "Whether a file descriptor is a terminal.",
     {{"fd", "integer", "0, 1 or 2"}},
     "boolean",
     l_isatty},
    {"",
     "signal",
     "0.1",
     "A signal's number from its name (`TERM`, `SIGKILL`) or number.",
     {{"sig", "any", "name or number"}},
     "integer",
     l_signal},
    // --- event log
    {"",
     "events",
     "0.1",
     "Events of the state store's event log (container.create, container.exit, ...), oldest "
     "first. Page through with `after` = the last `seq` seen.",
     {{"query", "table?",
       "{after? (a seq: events after it, default 0), since? (seconds since the epoch: events "
       "at or after it), until? (seconds since the epoch: events before it; a Lua keyword, so "
       "`[\"until\"] = t`), type? "
       "(`container.exit` exactly, or every type starting with a prefix that ends in a dot: "
       "`container.`), limit? (default 1000, at most 100000), newest? (true: the newest `limit` "
       "that match, still oldest first)}"}},
     "array of {seq, time (RFC 3339, UTC, nanoseconds), type, source, payload (table)}",
     l_events},
    {"",
     "events_prune",
     "0.1",
     "Delete old events: those older than max_age seconds, then all but the newest max_rows. "
     "Sequence numbers are never reused.",
     {{"opts", "table", "{max_age? (seconds), max_rows?}: at least one"}},
     "the number of events deleted",
     l_events_prune},
    // --- spec model
    {"spec",
     "load",
     "0.1",
     "Read a VirtualRoot file (YAML or JSON) into a runtime spec.",
     {{"path", "string", "file path"}},
     "runtime spec (docs/runtime-spec.md)",
     spec_load},
    {"spec",
     "parse",
     "0.1",
     "Parse VirtualRoot text (YAML or JSON) into a runtime spec.",
     {{"text", "string", "the document"}, {"source", "string?", "name used in errors"}},
     "runtime spec",
     spec_parse},
    {"spec",
     "apply_options",
     "0.1",
     "Apply command-line options (flags win) on top of a spec; errors name the flag.",
     {{"spec", "table?", "a runtime spec, or nil for an empty one"},
      {"opts", "table", "options as parsed from the command line"}},
     "runtime spec",
     spec_apply_options},
    {"spec",
     "finalize",
     "0.1",
     "Fill defaults and check the spec (rootfs exists and is a directory, name, command).",
     {{"spec", "table", "runtime spec"}},
     "the final runtime spec",
     spec_finalize},
    {"spec",
     "from_oci",
     "0.1",
     "Convert an OCI bundle's config.json (runtime-spec 1.0 to 1.1) to a runtime spec; errors "
     "name the JSON path. See docs/oci.md.",
     {{"bundle", "string",
       "the bundle directory (absolute): root.path and relative bind "
       "sources are relative to it"},
      {"config", "string?", "config.json's text (default: read BUNDLE/config.json)"}},
     "runtime spec (without a name; `unapplied` lists what this runtime does not apply)",
     spec_from_oci},
    {"spec",
     "oci_resources",
     "0.1",
     "Convert OCI LinuxResources JSON (`update --resources`) to the spec.resources form.",
     {{"text", "string", "the JSON text"}},
     "spec.resources form",
     spec_oci_resources},
    {"spec",
     "default_oci",
     "0.1",
     "The default config.json of `mobileops oci spec` (runc's, running `sh`).",
     {{"rootless", "boolean?", "add a user namespace mapping this user to root"}},
     "an OCI runtime config",
     spec_default_oci},
    // --- runtime service (mo.runtime: default provider; mo.service('runtime', NAME))
    {"runtime",
     "create",
     "0.1",
     "Create a container from a runtime spec (docs/runtime-spec.md).",
     {{"spec", "table", "runtime spec"}},
     "state table",
     rt_create},
    {"runtime",
     "start",
     "0.1",
     "Start a created container under its monitor.",
     {{"ref", "string", "container name or id"}},
     "nothing",
     rt_start},
    {"runtime",
     "run",
     "0.1",
     "Create, start and wait in the foreground on this process's stdio.",
     {{"spec", "table", "runtime spec"}, {"opts", "table?", "{rm?, tty?, interactive?}"}},
     "exit status (128+N when killed by signal N)",
     rt_run},
    {"runtime",
     "kill",
     "0.1",
     "Send a signal to the container's init, or to all its processes.",
     {{"ref", "string", "container"},
      {"signal", "integer?", "default 15"},
      {"all", "boolean?", "every process"}},
     "nothing",
     rt_kill},
    {"runtime",
     "stop",
     "0.1",
     "Stop: stop signal, then SIGKILL after the timeout.",
     {{"ref", "string", "container"}, {"timeout", "integer?", "seconds, default 10"}},
     "nothing",
     rt_stop},
    {"runtime",
     "remove",
     "0.1",
     "Delete a container and everything it holds.",
     {{"ref", "string", "container"}, {"force", "boolean?", "kill it first if running"}},
     "nothing",
     rt_remove},
    {"runtime",
     "state",
     "0.1",
     "Inspect a container (reconciled with reality).",
     {{"ref", "string", "container"}},
     "state table",
     rt_state},
    {"runtime",
     "list",
     "0.1",
     "List containers.",
     {{"all", "boolean?", "include stopped ones"}},
     "array of state tables",
     rt_list},
    {"runtime",
     "exec",
     "0.1",
     "Run a process in a running container, in the foreground.",
     {{"ref", "string", "container"},
      {"process", "table", "{args, env?, cwd?, user?, terminal?}"},
      {"opts", "table?", "{tty?, interactive?}"}},
     "exit status",
     rt_exec},
    {"runtime",
     "attach",
     "0.1",
     "Follow a running container's output until it exits.",
     {{"ref", "string", "container"}, {"opts", "table?", "{tty?, interactive?}"}},
     "nothing",
     rt_attach},
    {"runtime",
     "top",
     "0.1",
     "Processes of a container.",
     {{"ref", "string", "container"}},
     "array of {pid, ppid, user, state, command}",
     rt_top},
    {"runtime",
     "pause",
     "0.1",
     "Freeze every process of a container.",
     {{"ref", "string", "container"}},
     "nothing",
     rt_pause},
    {"runtime",
     "resume",
     "0.1",
     "Thaw a paused container.",
     {{"ref", "string", "container"}},
     "nothing",
     rt_resume},
    {"runtime",
     "update",
     "0.1",
     "Change the resources of a running container.",
     {{"ref", "string", "container"}, {"resources", "table", "spec.resources form"}},
     "nothing",
     rt_update},
    {"runtime",
     "wait",
     "0.1",
     "Wait until a container stops.",
     {{"ref", "string", "container"}},
     "exit status",
     rt_wait},
    {"runtime",
     "stats",
     "0.1",
     "Resource usage of a container (needs the cgroup service).",
     {{"ref", "string", "container"}},
     "{id, name, cpu = {usage_ns, ...}, memory = {current, peak, limit, ...}, pids, io, frozen}",
     rt_stats},
    {"runtime",
     "gc",
     "0.1",
     "Release what interrupted commands left behind.",
     {},
     "{released = {...}}",
     rt_gc},
    {"integrity",
     "verify",
     "0.1",
     "Verify a target against its recorded manifest; drift is reported, not raised.",
     {{"target", "string", "image:ID, container:ID, layer:DIFFID, asset:NAME, path:/ABS or a path"},
      {"opts", "table?", "{keys = {PUB...}, requireSignature, first = N, quiet}"}},
     "{target, kind, clean, root, problems, first = {...}, diff | layers, changes, signature}",
     in_verify},
    {"integrity",
     "record",
     "0.1",
     "Record the manifest of a target (an image's from its layers' manifests).",
     {{"target", "string", "as for verify"}, {"path", "string?", "the tree (layer:, asset:)"}},
     "{target, root, files, bytes}",
     in_record},
};

} // namespace

const std::vector<ApiFunction> &luaApi() { return kApi; }

int l_service(lua_State *L) {
    return protect(L, [&] {
        std::string kind = str(L, 1);
        std::string provider = str(L, 2);
        if (!serviceKindFromName(kind))
            throw Error(MO_E_INVALID, "unknown service kind " + quote(kind));
        lua_newtable(L);
        for (const ApiFunction &f : kApi) {
            if (kind != f.module || !f.impl) continue;
            lua_pushlightuserdata(L, const_cast<ApiFunction *>(&f));
            lua_pushlstring(L, provider.data(), provider.size());
            lua_pushcclosure(L, LuaEngine::binder(), 2);
            lua_setfield(L, -2, f.name);
        }
        return 1;
    });
}

std::string luaApiMarkdown() {
    std::ostringstream md;
    md << "# The mobileops Lua API\n\n"
       << "Generated by `mobileops --lua-api-docs` from the API description in "
          "`core/src/LuaApi.cpp`; do not edit by hand.\n\n"
       << "Workflow scripts start with `local mo = require(\"mobileops\")`. Tables go in, "
          "tables come out. A wrong argument raises an error naming the parameter; a plugin "
          "error raises an error object `{code, message, plugin}` whose `tostring` is the "
          "message (catch it with `pcall`).\n\n"
       << "Fields: `mo.version` (string), `mo.json` (true under `--json`), `mo.debug` (true "
          "under `--debug`), `mo.null` (JSON null), `mo.plugins.<plugin>.<method>(args)` (a "
          "plugin's named JSON methods).\n\n"
       << "Scripts run in a restricted environment: no `ffi`, `io.popen`, `os.execute`, "
          "`os.exit`, `package.loadlib`, `debug`, `string.dump`, and `load*` accept source "
          "text only.\n";
    std::string current = "-";
    for (const ApiFunction &f : kApi) {
        if (current != f.module) {
            current = f.module;
            md << "\n## " << (current.empty() ? std::string("mo") : "mo." + current) << "\n";
        }
        std::string full = std::string(f.module).empty()
                               ? std::string("mo.") + f.name
                               : std::string("mo.") + f.module + "." + f.name;
        if (std::string(f.name) == "verb") full = "workflow:verb";
        md << "\n### `" << full << "(";
        for (size_t i = 0; i < f.params.size(); ++i) md << (i ? ", " : "") << f.params[i].name;
        md << ")`\n\n" << f.summary << " Since " << f.since << ".\n\n";
        for (const ApiParam &p : f.params)
            md << "- `" << p.name << "` (" << p.type << "): " << p.doc << "\n";
        md << "- returns: " << f.returns << "\n";
    }
    return md.str();
}

} // namespace mobileops::core
