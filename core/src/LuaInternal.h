// Helpers shared by the Lua engine's source files.
#pragma once

#include "mobileops/core/Error.h"
#include "mobileops/core/Lua.h"

#include <lua.hpp>

#include <string>

namespace mobileops::core::lua {

// Raise a structured error {code, message, plugin} (never returns).
[[noreturn]] void raise(lua_State *L, int code, const std::string &message,
                        const std::string &plugin = {}, int exitStatus = -1);
// Run fn, turning C++ exceptions into Lua errors.
template <typename Fn> int protect(lua_State *L, Fn &&fn) {
    int code = 0;
    std::string message;
    try {
        return fn();
    } catch (const Error &e) {
        code = e.code();
        message = e.what();
    } catch (const std::exception &e) {
        code = MO_E_INTERNAL;
        message = e.what();
    }
    raise(L, code, message); // outside the catch: lua_error longjmps
}

std::string str(lua_State *L, int idx);
std::string optStr(lua_State *L, int idx, const std::string &fallback);

} // namespace mobileops::core::lua
