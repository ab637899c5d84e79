// Command-line parsing and help, driven by the verb declarations of workflow scripts.
#pragma once

#include "mobileops/core/Error.h"

#include <string>
#include <vector>

struct lua_State;

namespace mobileops::core::cli {

// A usage error: exit status 2.
class UsageError : public Error {
public:
    explicit UsageError(const std::string &message) : Error(MO_E_INVALID, message) {}
};

// Parse argv against the verb table at verbIdx; push opts and args tables. Returns false
// (pushing nothing) when --help/-h was given. Global flags (--json, --debug) are
// accepted anywhere before `--` and set the out parameters.
bool parseVerbArgs(lua_State *L, int verbIdx, const std::string &command,
                   const std::vector<std::string> &argv, bool &json, bool &debug);

// Help texts from the declarations.
std::string verbHelp(lua_State *L, int verbIdx, const std::string &command);
std::string workflowHelp(lua_State *L, int workflowIdx);
// "name" and "summary" of a workflow table.
std::string tableString(lua_State *L, int idx, const char *field);

} // namespace mobileops::core::cli
