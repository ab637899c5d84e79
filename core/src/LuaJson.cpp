#include "mobileops/core/Error.h"
#include "mobileops/core/Lua.h"

#include <lua.hpp>

#include <cmath>

namespace mobileops::core {

using json = nlohmann::json;

namespace {

// A table is an array when its keys are exactly 1..n, or when it is empty and carries
// the metatable mo.array() gives it.
bool isArray(lua_State *L, int idx, size_t &n) {
    n = lua_objlen(L, idx);
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        ++count;
        if (lua_type(L, -2) != LUA_TNUMBER) {
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    if (count == 0) {
        if (!lua_getmetatable(L, idx)) return false;
        lua_getfield(L, -1, "__jsontype");
        bool array = lua_isstring(L, -1) && std::string(lua_tostring(L, -1)) == "array";
        lua_pop(L, 2);
        return array;
    }
    return count == n;
}

json convert(lua_State *L, int idx, int depth) {
    if (depth > 64) throw Error(MO_E_INVALID, "table nested too deeply to convert to JSON");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return nullptr;
    case LUA_TBOOLEAN:
        return static_cast<bool>(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9007199254740992.0)
            return static_cast<int64_t>(d);
        if (!std::isfinite(d)) throw Error(MO_E_INVALID, "cannot convert NaN or infinity to JSON");
        return d;
    }
    case LUA_TSTRING: {
        size_t len = 0;
        const char *s = lua_tolstring(L, idx, &len);
        return std::string(s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == nullptr) return nullptr; // mo.null
        break;
    case LUA_TTABLE: {
        if (idx < 0) idx = lua_gettop(L) + idx + 1;
        size_t n = 0;
        if (isArray(L, idx, n)) {
            json arr = json::array();
            for (size_t i = 1; i <= n; ++i) {
                lua_rawgeti(L, idx, static_cast<int>(i));
                arr.push_back(convert(L, lua_gettop(L), depth + 1));
                lua_pop(L, 1);
            }
            return arr;
        }
        json obj = json::object();
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            std::string key;
            if (lua_type(L, -2) == LUA_TSTRING) {
                key = lua_tostring(L, -2);
            } else if (lua_type(L, -2) == LUA_TNUMBER) {
                lua_pushvalue(L, -2);
                key = lua_tostring(L, -1);
                lua_pop(L, 1);
            } else {
                lua_pop(L, 2);
                throw Error(MO_E_INVALID, "table key of type " + std::string(luaL_typename(L, -2)) +
                                              " cannot become JSON");
            }
            obj[key] = convert(L, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        return obj;
    }
    default:
        break;
    }
    throw Error(MO_E_INVALID, std::string("a ") + luaL_typename(L, idx) + " cannot become JSON");
}

} // namespace

json luaToJson(lua_State *L, int idx) { return convert(L, idx, 0); }

void pushJson(lua_State *L, const json &value) {
    switch (value.type()) {
    case json::value_t::null:
        lua_pushlightuserdata(L, nullptr);
        break;
    case json::value_t::boolean:
        lua_pushboolean(L, value.get<bool>());
        break;
    case json::value_t::number_integer:
        lua_pushnumber(L, static_cast<lua_Number>(value.get<int64_t>()));
        break;
    case json::value_t::number_unsigned:
        lua_pushnumber(L, static_cast<lua_Number>(value.get<uint64_t>()));
        break;
    case json::value_t::number_float:
        lua_pushnumber(L, value.get<double>());
        break;
    case json::value_t::string: {
        const auto &s = value.get_ref<const std::string &>();
        lua_pushlstring(L, s.data(), s.size());
        break;
    }
    case json::value_t::array: {
        lua_createtable(L, static_cast<int>(value.size()), 0);
        int i = 1;
        for (const auto &v : value) {
            pushJson(L, v);
            lua_rawseti(L, -2, i++);
        }
        if (value.empty()) {
            luaL_getmetatable(L, "mobileops.array");
            lua_setmetatable(L, -2);
        }
        break;
    }
    case json::value_t::object: {
        lua_createtable(L, 0, static_cast<int>(value.size()));
        for (auto it = value.begin(); it != value.end(); ++it) {
            if (it.value().is_null()) continue; // absent, as Lua sees it
            pushJson(L, it.value());
            lua_setfield(L, -2, it.key().c_str());
        }
        break;
    }
    default:
        lua_pushnil(L);
    }
}

} // namespace mobileops::core
