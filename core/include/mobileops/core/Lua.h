// The Lua side: a LuaJIT state with the `mobileops` module, a restricted environment for
// workflow scripts, the generated API (one description per function: bindings, argument
// checks, docs/lua-api.md and `features` all come from it), and verb dispatch.
#pragma once

#include "mobileops/core/Config.h"
#include "mobileops/core/PluginManager.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

struct lua_State;

namespace mobileops::core {

struct ApiParam {
    const char *name;
    const char *type; // string, integer, number, boolean, table, function; "?" suffix: optional
    const char *doc;
};

struct ApiFunction {
    const char *module; // "" for mo.*, else mo.<module>.*
    const char *name;
    const char *since;
    const char *summary;
    std::vector<ApiParam> params;
    const char *returns;
    int (*impl)(lua_State *L); // nullptr: defined in Lua by the prelude
};

const std::vector<ApiFunction> &luaApi();
// docs/lua-api.md, generated from luaApi().
std::string luaApiMarkdown();

// Lua value at idx <-> JSON.
nlohmann::json luaToJson(lua_State *L, int idx);
void pushJson(lua_State *L, const nlohmann::json &value);

struct Session {
    Config *config = nullptr;
    PluginManager *plugins = nullptr;
    bool json = false;
    bool debug = false;
};

class LuaEngine {
public:
    explicit LuaEngine(Session session);
    ~LuaEngine();
    LuaEngine(const LuaEngine &) = delete;
    LuaEngine &operator=(const LuaEngine &) = delete;

    lua_State *state() const { return _L; }
    Session &session() { return _session; }

    // Load a workflow script and leave its workflow table on the stack; throws Error.
    void loadWorkflow(const std::string &path, const std::string &name);
    // Message of the error value on top of the stack (pops it).
    std::string popErrorMessage(bool withLocation);
    // The exit status the last popped error asked for, or -1.
    int lastErrorExit() const { return _lastErrorExit; }

    static LuaEngine &from(lua_State *L);
    // The C function that checks arguments against an ApiFunction (upvalue 1) and calls it.
    static int (*binder())(lua_State *);

private:
    lua_State *_L;
    Session _session;
    int _lastErrorExit = -1;
};

} // namespace mobileops::core
