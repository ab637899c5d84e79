#include "Dispatcher.h"

#include "mobileops/core/Cli.h"
#include "mobileops/core/Config.h"
#include "mobileops/core/Error.h"
#include "mobileops/core/Log.h"
#include "mobileops/core/Lua.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <lua.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace mobileops {

using namespace mobileops::core;

namespace {

// A failure with its own exit status (a container that could not start: 125-127).
class ExitError : public Error {
public:
    ExitError(const std::string &message, int status, int code = MO_E_INVALID)
        : Error(code, message), status(status) {}
    int status;
};

// The ABI code of an error name for programs (MOBILEOPS_ERROR_FORMAT=json).
const char *codeName(int code) {
    switch (code) {
    case MO_E_INVALID:
        return "invalid";
    case MO_E_NOT_FOUND:
        return "not_found";
    case MO_E_EXISTS:
        return "exists";
    case MO_E_STATE:
        return "state";
    case MO_E_UNSUPPORTED:
        return "unsupported";
    case MO_E_ABI:
        return "abi";
    case MO_E_INTERNAL:
        return "internal";
    case MO_E_BUSY:
        return "busy";
    case MO_E_STORE:
        return "store";
    default:
        return code < 0 && code > MO_E_INVALID ? "system" : "internal";
    }
}

// -errno: a system error (the MO_E_* codes start at MO_E_INVALID, -1000).
int errnoOf(int code) { return code < 0 && code > MO_E_INVALID ? -code : 0; }

// The one line a failure prints on stderr: `mobileops: MESSAGE`, or with
// MOBILEOPS_ERROR_FORMAT=json `{"code":"not_found","message":"...","exit":1}` for a
// program that drives the CLI (the API server maps the code to an HTTP status); a
// system error adds its errno.
int reportError(const GlobalFlags &flags, const char *code, const std::string &message, int status,
                int err = 0) {
    std::fflush(stdout);
    if (flags.onError) flags.onError(message);
    const char *format = std::getenv("MOBILEOPS_ERROR_FORMAT");
    if (format && std::string(format) == "json")
        std::fprintf(stderr, "{\"code\":\"%s\",\"message\":%s,\"exit\":%d%s}\n", code,
                     jsonString(message).c_str(), status,
                     err > 0 ? (",\"errno\":" + std::to_string(err)).c_str() : "");
    else
        std::fprintf(stderr, "mobileops: %s\n", message.c_str());
    return status;
}

struct Script {
    std::string name, path;
};

// Workflows on the script path; later directories win, with a warning when a user's
// script shadows a built-in one.
std::map<std::string, Script> findScripts(const Config &config, bool warn,
                                          const std::string &only = {}) {
    std::map<std::string, Script> out;
    for (const std::string &dir : config.paths().scriptDirs) {
        std::vector<std::string> names;
        if (!only.empty()) {
            struct stat st {};
            if (::stat((dir + "/" + only + ".lua").c_str(), &st) == 0 && S_ISREG(st.st_mode))
                names.push_back(only + ".lua");
        } else if (DIR *d = ::opendir(dir.c_str())) {
            while (dirent *e = ::readdir(d)) {
                std::string n = e->d_name;
                if (n.size() > 4 && n.compare(n.size() - 4, 4, ".lua") == 0 && n[0] != '.')
                    names.push_back(n);
            }
            ::closedir(d);
        }
        for (const std::string &n : names) {
            std::string name = n.substr(0, n.size() - 4);
            auto it = out.find(name);
            if (it != out.end() && warn &&
                it->second.path.rfind(config.paths().builtinScriptDir, 0) == 0)
                log::warning("workflow " + quote(name) + " from " + quote(dir + "/" + n) +
                             " shadows the built-in one");
            out[name] = {name, dir + "/" + n};
        }
    }
    return out;
}

std::string generalHelp(LuaEngine &lua, const Config &config) {
    lua_State *L = lua.state();
    std::string out = "Usage: mobileops [--json] [--debug] WORKFLOW VERB [ARGS...]\n\n"
                      "mobileops runs applications in isolated virtual roots: containers and "
                      "micro-VMs.\n\nWorkflows:\n";
    std::vector<std::pair<std::string, std::string>> rows;
    for (auto &[name, script] : findScripts(config, false)) {
        std::string summary;
        try {
            lua.loadWorkflow(script.path, name);
            summary = cli::tableString(L, lua_gettop(L), "summary");
            lua_pop(L, 1);
        } catch (const Error &e) {
            summary = std::string("(broken: ") + e.what() + ")";
        }
        rows.emplace_back(name, summary);
    }
    size_t w = 0;
    for (auto &r : rows) w = std::max(w, r.first.size());
    for (auto &r : rows)
        out += "  " + r.first + std::string(w - r.first.size() + 2, ' ') + r.second + "\n";
    out += "\nGlobal options:\n"
           "  --json     machine-readable output\n"
           "  --debug    verbose diagnostics; errors name the script and line\n"
           "  --version  version and built-in features\n"
           "\nRun `mobileops WORKFLOW --help` for its verbs.\n";
    return out;
}

int runVerb(LuaEngine &lua, const std::string &wfName, const std::vector<std::string> &argv,
            GlobalFlags &flags) {
    lua_State *L = lua.state();
    int wf = lua_gettop(L);
    std::string verb;
    size_t next = 1;
    if (argv.size() > 1 && argv[1] != "--help" && argv[1] != "-h" &&
        !(argv[1].size() > 1 && argv[1][0] == '-')) {
        verb = argv[1];
        next = 2;
    } else if (argv.size() > 1 && (argv[1] == "--help" || argv[1] == "-h")) {
        std::fputs(cli::workflowHelp(L, wf).c_str(), stdout);
        return 0;
    } else {
        verb = cli::tableString(L, wf, "default");
        if (verb.empty()) {
            std::fputs(cli::workflowHelp(L, wf).c_str(), stderr);
            return 2;
        }
    }
    lua_getfield(L, wf, "verbs");
    lua_getfield(L, -1, verb.c_str());
    if (!lua_istable(L, -1))
        throw cli::UsageError("unknown verb " + quote(verb) + " for workflow " + quote(wfName) +
                              "; see `mobileops " + wfName + " --help`");
    int verbIdx = lua_gettop(L);
    const std::string command = wfName + " " + verb;
    std::vector<std::string> rest(argv.begin() + static_cast<long>(next), argv.end());
    bool json = flags.json, debug = flags.debug;
    if (!cli::parseVerbArgs(L, verbIdx, command, rest, json, debug)) {
        std::fputs(cli::verbHelp(L, verbIdx, command).c_str(), stdout);
        return 0;
    }
    if (json != flags.json || debug != flags.debug) {
        // Flags given after the verb: update what the module and the logger see.
        flags.json = json;
        flags.debug = debug;
        lua.session().json = json;
        lua.session().debug = debug;
        if (debug) log::setLevel(log::Level::Debug);
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "loaded");
        lua_getfield(L, -1, "mobileops");
        if (lua_istable(L, -1)) {
            lua_pushboolean(L, json);
            lua_setfield(L, -2, "json");
            lua_pushboolean(L, debug);
            lua_setfield(L, -2, "debug");
        }
        lua_pop(L, 3);
    }
    // Stack: ... verbs verb opts args
    int argsIdx = lua_gettop(L);
    lua_getfield(L, verbIdx, "run");
    lua_pushvalue(L, argsIdx - 1);
    lua_pushvalue(L, argsIdx);
    int rc = lua_pcall(L, 2, 1, 0);
    if (rc != 0) {
        // The error table's ABI code (a plugin's MO_E_*, or mo.error's), kept for
        // MOBILEOPS_ERROR_FORMAT=json; a bare string is a script's runtime error (a bug,
        // the workflows raise tables through mo.error).
        int code = lua_istable(L, -1) ? MO_E_INVALID : MO_E_INTERNAL;
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "code");
            if (lua_isnumber(L, -1)) code = static_cast<int>(lua_tointeger(L, -1));
            lua_pop(L, 1);
        }
        std::string message = lua.popErrorMessage(debug);
        if (lua.lastErrorExit() > 0) throw ExitError(message, lua.lastErrorExit(), code);
        throw Error(code, message);
    }
    int status = 0;
    if (lua_isnumber(L, -1))
        status = static_cast<int>(lua_tointeger(L, -1));
    else if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
        status = 1;
    lua_pop(L, 1);
    return status;
}

} // namespace

std::string jsonString(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    return out + "\"";
}

int dispatch(const std::vector<std::string> &argv, GlobalFlags flags) {
    if (flags.debug) log::setLevel(log::Level::Debug);
    int status = 1;
    try {
        Config config = Config::load();
        std::unique_ptr<Store> store;
        PluginManager plugins(config, [&]() -> Store & {
            if (!store) {
                ::mkdir(config.paths().rootDir.c_str(), 0700);
                store = Store::open(config.paths().rootDir + "/mobileops.db");
            }
            return *store;
        });
        LuaEngine lua(Session{&config, &plugins, flags.json, flags.debug});
        const std::string &first = argv[0];
        if (first == "help") {
            if (argv.size() > 1) {
                auto scripts = findScripts(config, true, argv[1]);
                auto it = scripts.find(argv[1]);
                if (it == scripts.end())
                    throw cli::UsageError("unknown workflow " + quote(argv[1]) +
                                          "; see `mobileops help`");
                lua.loadWorkflow(it->second.path, it->first);
                std::fputs(cli::workflowHelp(lua.state(), lua_gettop(lua.state())).c_str(), stdout);
            } else {
                std::fputs(generalHelp(lua, config).c_str(), stdout);
            }
            status = 0;
        } else {
            auto scripts = findScripts(config, true, first);
            auto it = scripts.find(first);
            if (it == scripts.end())
                throw cli::UsageError("unknown workflow " + quote(first) +
                                      "; see `mobileops help`");
            lua.loadWorkflow(it->second.path, it->first);
            status = runVerb(lua, first, argv, flags);
        }
        std::fflush(stdout);
        if (flags.debug && !plugins.loadOrder().empty()) {
            std::string loaded;
            for (auto &n : plugins.loadOrder()) loaded += " " + n;
            log::debug("plugins loaded:" + loaded);
        }
    } catch (const ExitError &e) {
        return reportError(flags, codeName(e.code()), e.what(), e.status, errnoOf(e.code()));
    } catch (const cli::UsageError &e) {
        return reportError(flags, "usage", e.what(), 2);
    } catch (const Error &e) {
        return reportError(flags, codeName(e.code()), e.what(), 1, errnoOf(e.code()));
    } catch (const std::exception &e) {
        return reportError(flags, "internal", std::string("internal error: ") + e.what(), 1);
    }
    return status;
}

} // namespace mobileops
