#include "LuaInternal.h"
#include "mobileops/core/Error.h"

#include <cstring>
#include <fstream>
#include <sstream>

#ifndef MOBILEOPS_VERSION
#define MOBILEOPS_VERSION "0.0.0"
#endif

namespace mobileops::core {

extern const char *const kLuaPrelude;

using json = nlohmann::json;

namespace {

const char kEngineKey = 0;    // registry key: the LuaEngine
const char kTracebackKey = 0; // registry key: debug.traceback, hidden from scripts
const char kModuleKey = 0;    // registry key: the mobileops module table

// Restrictions for workflow scripts: no native code, no processes, source text only.
const char *const kSandbox = R"LUA(
local loadfile_, load_ = loadfile, load
local function loadfile_text(path, mode, env)
  local f, e = loadfile_(path, "t")
  if f and env then setfenv(f, env) end
  return f, e
end
loadfile = loadfile_text
load = function(chunk, name, mode, env)
  local f, e = load_(chunk, name, "t")
  if f and env then setfenv(f, env) end
  return f, e
end
loadstring = function(s, name) return load_(s, name, "t") end
dofile = function(path)
  local f, e = loadfile_text(path)
  if not f then error(e, 2) end
  return f()
end
os.execute, os.exit, io.popen, package.loadlib, string.dump = nil, nil, nil, nil, nil
package.cpath = ""
package.preload.ffi, package.loaded.ffi = nil, nil
package.loaded.debug, debug = nil, nil
local preload = package.loaders[1]
package.loaders = { preload, function(name)
  local path, err = package.searchpath(name, package.path)
  if not path then return err end
  local f, e = loadfile_text(path)
  if not f then error(e, 0) end
  return f
end }
)LUA";

int errorToString(lua_State *L) {
    lua_getfield(L, 1, "message");
    return 1;
}

bool matches(lua_State *L, int idx, const char *type) {
    if (std::strcmp(type, "any") == 0) return true;
    int t = lua_type(L, idx);
    if (std::strcmp(type, "string") == 0) return t == LUA_TSTRING;
    if (std::strcmp(type, "table") == 0) return t == LUA_TTABLE;
    if (std::strcmp(type, "boolean") == 0) return t == LUA_TBOOLEAN;
    if (std::strcmp(type, "function") == 0) return t == LUA_TFUNCTION;
    if (std::strcmp(type, "number") == 0) return t == LUA_TNUMBER;
    if (std::strcmp(type, "integer") == 0) {
        if (t != LUA_TNUMBER) return false;
        lua_Number n = lua_tonumber(L, idx);
        return n == static_cast<lua_Number>(static_cast<long long>(n));
    }
    return true;
}

std::string fullName(const ApiFunction &f) {
    return std::string(f.module).empty() ? std::string("mo.") + f.name
                                         : std::string("mo.") + f.module + "." + f.name;
}

int bindingCall(lua_State *L) {
    auto *f = static_cast<const ApiFunction *>(lua_touserdata(L, lua_upvalueindex(1)));
    int i = 1;
    for (const ApiParam &p : f->params) {
        if (std::strcmp(p.name, "...") == 0) break;
        std::string type = p.type;
        bool optional = !type.empty() && type.back() == '?';
        if (optional) type.pop_back();
        if (!(optional && lua_isnoneornil(L, i)) && !matches(L, i, type.c_str())) {
            lua::raise(L, MO_E_INVALID,
                       fullName(*f) + ": invalid '" + p.name + "': expected " + type + ", got " +
                           (type == "integer" && lua_type(L, i) == LUA_TNUMBER
                                ? "a fraction"
                                : luaL_typename(L, i)));
        }
        ++i;
    }
    return f->impl(L);
}

int methodCall(lua_State *L) {
    auto *m = static_cast<const MethodInfo *>(lua_touserdata(L, lua_upvalueindex(1)));
    std::string plugin = lua_tostring(L, lua_upvalueindex(2));
    std::string args;
    int code = 0;
    std::string message;
    try {
        args = lua_isnoneornil(L, 1) ? std::string("{}") : luaToJson(L, 1).dump();
    } catch (const Error &e) {
        code = e.code();
        message = "mo.plugins." + plugin + "." + m->name + ": invalid 'args': " + e.what();
    }
    if (code) lua::raise(L, code, message);
    mo_error err = MO_ERROR_INIT;
    mo_buffer out = MO_BUFFER_INIT;
    int rc = m->call(m->self, args.c_str(), &out, &err);
    if (rc < 0) {
        std::free(out.data);
        lua::raise(L, rc, err.message[0] ? err.message : "method " + m->name + " failed", plugin);
    }
    if (!out.data || out.len == 0) { // an empty result is "nothing" (host.h), not bad JSON
        std::free(out.data);
        return 0;
    }
    json result;
    bool ok = true;
    try {
        result = json::parse(out.data, out.data + out.len);
    } catch (const json::parse_error &) {
        ok = false;
    }
    std::free(out.data);
    if (!ok) lua::raise(L, MO_E_INTERNAL, "method " + m->name + " returned invalid JSON", plugin);
    pushJson(L, result);
    return 1;
}

// mo.plugins.<name>: a table whose fields are the plugin's methods.
int pluginIndex(lua_State *L) {
    std::string plugin = lua_tostring(L, lua_upvalueindex(1));
    std::string method = luaL_checkstring(L, 2);
    PluginManager &pm = *LuaEngine::from(L).session().plugins;
    PluginRecord *rec = pm.find(plugin);
    auto it = rec->methods.find(method);
    if (it == rec->methods.end())
        lua::raise(L, MO_E_NOT_FOUND, "plugin " + quote(plugin) + " has no method " + quote(method),
                   plugin);
    lua_pushlightuserdata(L, &it->second);
    lua_pushstring(L, plugin.c_str());
    lua_pushcclosure(L, methodCall, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, method.c_str());
    return 1;
}

int pluginsIndex(lua_State *L) {
    std::string name = luaL_checkstring(L, 2);
    PluginManager &pm = *LuaEngine::from(L).session().plugins;
    std::string message;
    int code = 0;
    try {
        pm.load(name);
    } catch (const Error &e) {
        code = e.code();
        message = e.what();
    }
    if (code) lua::raise(L, code, message, name);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushstring(L, name.c_str());
    lua_pushcclosure(L, pluginIndex, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, name.c_str());
    return 1;
}

int requireModule(lua_State *L) {
    lua_pushlightuserdata(L, const_cast<char *>(&kModuleKey));
    lua_rawget(L, LUA_REGISTRYINDEX);
    return 1;
}

void runChunk(lua_State *L, const char *code, const char *name, int nargs, int nresults) {
    if (luaL_loadbuffer(L, code, std::strlen(code), name) != 0)
        throw Error(MO_E_INTERNAL, std::string(name) + ": " + lua_tostring(L, -1));
    if (nargs) lua_insert(L, -(nargs + 1));
    if (lua_pcall(L, nargs, nresults, 0) != 0)
        throw Error(MO_E_INTERNAL, std::string(name) + ": " + lua_tostring(L, -1));
}

} // namespace

namespace lua {

void raise(lua_State *L, int code, const std::string &message, const std::string &plugin,
           int exitStatus) {
    lua_createtable(L, 0, 5);
    if (exitStatus >= 0) {
        // The status the command should exit with (a container that could not start: 125-127).
        lua_pushinteger(L, exitStatus);
        lua_setfield(L, -2, "exit");
    }
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushlstring(L, message.data(), message.size());
    lua_setfield(L, -2, "message");
    if (!plugin.empty()) {
        lua_pushlstring(L, plugin.data(), plugin.size());
        lua_setfield(L, -2, "plugin");
    }
    luaL_where(L, 1);
    lua_setfield(L, -2, "where");
    luaL_getmetatable(L, "mobileops.error");
    lua_setmetatable(L, -2);
    lua_error(L);
    __builtin_unreachable();
}

std::string str(lua_State *L, int idx) {
    size_t len = 0;
    const char *s = lua_tolstring(L, idx, &len);
    if (!s)
        throw Error(MO_E_INVALID, std::string("expected a string, got ") + luaL_typename(L, idx));
    return std::string(s, len);
}

std::string optStr(lua_State *L, int idx, const std::string &fallback) {
    if (lua_isnoneornil(L, idx)) return fallback;
    return str(L, idx);
}

} // namespace lua

int (*LuaEngine::binder())(lua_State *) { return bindingCall; }

LuaEngine &LuaEngine::from(lua_State *L) {
    lua_pushlightuserdata(L, const_cast<char *>(&kEngineKey));
    lua_rawget(L, LUA_REGISTRYINDEX);
    auto *engine = static_cast<LuaEngine *>(lua_touserdata(L, -1));
    lua_pop(L, 1);
    return *engine;
}

LuaEngine::LuaEngine(Session session) : _L(luaL_newstate()), _session(session) {
    if (!_L) throw Error(-ENOMEM, "cannot create a Lua state");
    lua_State *L = _L;
    luaL_openlibs(L);
    lua_pushlightuserdata(L, const_cast<char *>(&kEngineKey));
    lua_pushlightuserdata(L, this);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushlightuserdata(L, const_cast<char *>(&kTracebackKey));
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);

    luaL_newmetatable(L, "mobileops.error");
    lua_pushcfunction(L, errorToString);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, "mobileops.array");
    lua_pushstring(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pop(L, 1);

    // package.path: the script directories and their lib/ folders.
    std::string path;
    for (const std::string &dir : _session.config->paths().scriptDirs) path += dir + "/lib/?.lua;";
    lua_getglobal(L, "package");
    lua_pushstring(L, path.c_str());
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    runChunk(L, kSandbox, "=sandbox", 0, 0);

    // The module.
    lua_newtable(L);
    int mo = lua_gettop(L);
    lua_pushstring(L, MOBILEOPS_VERSION);
    lua_setfield(L, mo, "version");
    lua_pushboolean(L, _session.json);
    lua_setfield(L, mo, "json");
    lua_pushboolean(L, _session.debug);
    lua_setfield(L, mo, "debug");
    lua_pushlightuserdata(L, nullptr);
    lua_setfield(L, mo, "null");
    luaL_getmetatable(L, "mobileops.array");
    lua_setfield(L, mo, "_array_mt");
    for (const ApiFunction &f : luaApi()) {
        if (!f.impl) continue;
        if (std::string(f.module).empty()) {
            lua_pushlightuserdata(L, const_cast<ApiFunction *>(&f));
            lua_pushcclosure(L, bindingCall, 1);
            lua_setfield(L, mo, f.name);
            continue;
        }
        lua_getfield(L, mo, f.module);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, mo, f.module);
        }
        lua_pushlightuserdata(L, const_cast<ApiFunction *>(&f));
        lua_pushnil(L); // provider: the default
        lua_pushcclosure(L, bindingCall, 2);
        lua_setfield(L, -2, f.name);
        lua_pop(L, 1);
    }
    lua_newtable(L); // mo.plugins, filled on first use of each plugin
    lua_newtable(L);
    lua_pushcfunction(L, pluginsIndex);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, mo, "plugins");
    runChunk(L, kLuaPrelude, "=mobileops", 1, 1);
    lua_pushlightuserdata(L, const_cast<char *>(&kModuleKey));
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, requireModule);
    lua_setfield(L, -2, "mobileops");
    lua_pop(L, 2);
}

LuaEngine::~LuaEngine() {
    if (_L) lua_close(_L);
}

void LuaEngine::loadWorkflow(const std::string &path, const std::string &name) {
    lua_State *L = _L;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw systemError("workflow " + quote(name) + ": cannot read " + quote(path));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string code = ss.str();
    std::string chunk = "@" + path;
    // Source text only: precompiled bytecode can break out of the VM.
    if (!code.empty() && code[0] == '\x1b')
        throw Error(MO_E_INVALID, "workflow " + quote(name) + ": " + quote(path) +
                                      " is bytecode, not Lua source");
    if (luaL_loadbuffer(L, code.data(), code.size(), chunk.c_str()) != 0) {
        std::string msg = lua_tostring(L, -1);
        lua_pop(L, 1);
        throw Error(MO_E_INVALID, "workflow " + quote(name) + ": syntax error: " + msg);
    }
    lua_pushlightuserdata(L, const_cast<char *>(&kTracebackKey));
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_insert(L, -2);
    int handler = lua_gettop(L) - 1;
    int rc = lua_pcall(L, 0, 1, _session.debug ? handler : 0);
    lua_remove(L, handler);
    if (rc != 0) {
        std::string msg = popErrorMessage(true);
        throw Error(MO_E_INVALID, "workflow " + quote(name) + ": " + msg);
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        throw Error(MO_E_INVALID, "workflow " + quote(name) + ": " + quote(path) +
                                      " must return the table made by mo.workflow{}");
    }
    lua_getfield(L, -1, "verbs");
    bool ok = lua_istable(L, -1);
    lua_pop(L, 1);
    if (!ok) {
        lua_pop(L, 1);
        throw Error(MO_E_INVALID, "workflow " + quote(name) + ": " + quote(path) +
                                      " must return the table made by mo.workflow{}");
    }
}

std::string LuaEngine::popErrorMessage(bool withLocation) {
    lua_State *L = _L;
    std::string message;
    _lastErrorExit = -1;
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "exit");
        if (lua_isnumber(L, -1)) _lastErrorExit = static_cast<int>(lua_tointeger(L, -1));
        lua_pop(L, 1);
        lua_getfield(L, -1, "message");
        message = lua_isstring(L, -1) ? lua_tostring(L, -1) : "unknown error";
        lua_pop(L, 1);
        if (withLocation) {
            lua_getfield(L, -1, "where");
            std::string where = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
            lua_pop(L, 1);
            if (!where.empty()) message = where + message;
        }
    } else if (lua_isstring(L, -1)) {
        message = lua_tostring(L, -1);
        if (!withLocation) {
            // Strip the "file.lua:12: " Lua puts in front of error("...") messages.
            auto colon = message.find(": ");
            if (colon != std::string::npos) {
                std::string head = message.substr(0, colon);
                auto lc = head.rfind(':');
                if (lc != std::string::npos && lc + 1 < head.size() &&
                    head.find_first_not_of("0123456789", lc + 1) == std::string::npos)
                    message = message.substr(colon + 2);
            }
        }
    } else {
        message = std::string("error object of type ") + luaL_typename(L, -1);
    }
    lua_pop(L, 1);
    return message;
}

} // namespace mobileops::core
