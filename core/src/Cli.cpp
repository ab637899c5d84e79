#include "mobileops/core/Cli.h"

#include <lua.hpp>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

namespace mobileops::core::cli {

namespace {

struct Option {
    std::string name, shortName, type, metavar, summary;
    bool hasDefault = false;
    int defaultRef = LUA_NOREF;
};

struct Arg {
    std::string name, summary;
    bool optional = false, variadic = false;
    // An option that takes this argument's place: given, the argument is skipped (run's
    // ROOTFS with --rootfs-img), so the next word starts the command.
    std::string unless;
};

bool boolField(lua_State *L, int idx, const char *field) {
    lua_getfield(L, idx, field);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

std::vector<Option> options(lua_State *L, int verbIdx) {
    std::vector<Option> out;
    lua_getfield(L, verbIdx, "options");
    int n = lua_istable(L, -1) ? static_cast<int>(lua_objlen(L, -1)) : 0;
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        int o = lua_gettop(L);
        Option opt;
        opt.name = tableString(L, o, "name");
        opt.shortName = tableString(L, o, "short");
        opt.type = tableString(L, o, "type");
        if (opt.type.empty()) opt.type = "flag";
        opt.metavar = tableString(L, o, "metavar");
        opt.summary = tableString(L, o, "summary");
        lua_getfield(L, o, "default");
        opt.hasDefault = !lua_isnil(L, -1);
        lua_pop(L, 1);
        out.push_back(opt);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return out;
}

std::vector<Arg> args(lua_State *L, int verbIdx) {
    std::vector<Arg> out;
    lua_getfield(L, verbIdx, "args");
    int n = lua_istable(L, -1) ? static_cast<int>(lua_objlen(L, -1)) : 0;
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        int a = lua_gettop(L);
        out.push_back({tableString(L, a, "name"), tableString(L, a, "summary"),
                       boolField(L, a, "optional"), boolField(L, a, "variadic"),
                       tableString(L, a, "unless")});
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return out;
}

std::string key(const std::string &name) {
    std::string k = name;
    std::replace(k.begin(), k.end(), '-', '_');
    return k;
}

std::string metavar(const Option &o) {
    if (o.type == "flag") return "";
    if (!o.metavar.empty()) return o.metavar;
    if (o.type == "int" || o.type == "number") return "N";
    std::string m = key(o.name);
    std::transform(m.begin(), m.end(), m.begin(), ::toupper);
    return m;
}

std::string usageLine(const std::string &command, const std::vector<Option> &opts,
                      const std::vector<Arg> &as) {
    std::string u = "Usage: mobileops " + command;
    if (!opts.empty()) u += " [OPTIONS]";
    for (const Arg &a : as) {
        std::string n = a.name + (a.variadic ? "..." : "");
        u += " " + (a.optional || a.variadic ? "[" + n + "]" : n);
    }
    return u;
}

} // namespace

std::string tableString(lua_State *L, int idx, const char *field) {
    lua_getfield(L, idx, field);
    std::string v = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    lua_pop(L, 1);
    return v;
}

bool parseVerbArgs(lua_State *L, int verbIdx, const std::string &command,
                   const std::vector<std::string> &argv, bool &json, bool &debug) {
    const std::vector<Option> opts = options(L, verbIdx);
    const std::vector<Arg> as = args(L, verbIdx);
    const std::string hint = "; see `mobileops " + command + " --help`";

    lua_newtable(L);
    int optsIdx = lua_gettop(L);
    // Defaults: flags false, lists empty, declared defaults.
    lua_getfield(L, verbIdx, "options");
    for (size_t i = 0; i < opts.size(); ++i) {
        const Option &o = opts[i];
        if (o.hasDefault) {
            lua_rawgeti(L, -1, static_cast<int>(i + 1));
            lua_getfield(L, -1, "default");
            lua_setfield(L, optsIdx, key(o.name).c_str());
            lua_pop(L, 1);
        } else if (o.type == "flag") {
            lua_pushboolean(L, 0);
            lua_setfield(L, optsIdx, key(o.name).c_str());
        } else if (o.type == "list") {
            lua_newtable(L);
            lua_setfield(L, optsIdx, key(o.name).c_str());
        }
    }
    lua_pop(L, 1);

    auto findLong = [&](const std::string &n) -> const Option * {
        for (auto &o : opts)
            if (o.name == n) return &o;
        return nullptr;
    };
    auto findShort = [&](const std::string &n) -> const Option * {
        for (auto &o : opts)
            if (!o.shortName.empty() && o.shortName == n) return &o;
        return nullptr;
    };
    auto setValue = [&](const Option &o, const std::string &flag, const std::string &value) {
        std::string k = key(o.name);
        if (o.type == "int" || o.type == "number") {
            char *end = nullptr;
            errno = 0;
            double d = std::strtod(value.c_str(), &end);
            if (value.empty() || *end || errno ||
                (o.type == "int" && d != static_cast<long long>(d)))
                throw UsageError("invalid " + flag + " " + quote(value) + ": expected " +
                                 (o.type == "int" ? "an integer" : "a number"));
            lua_pushnumber(L, d);
            lua_setfield(L, optsIdx, k.c_str());
        } else if (o.type == "list") {
            lua_getfield(L, optsIdx, k.c_str());
            lua_pushlstring(L, value.data(), value.size());
            lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2)) + 1);
            lua_pop(L, 1);
        } else {
            lua_pushlstring(L, value.data(), value.size());
            lua_setfield(L, optsIdx, k.c_str());
        }
    };

    std::vector<std::string> positional;
    std::set<std::string> given; // long names of the options seen
    auto skipped = [&](const Arg &a) { return !a.unless.empty() && given.count(a.unless) > 0; };
    bool hasVariadic = std::any_of(as.begin(), as.end(), [](const Arg &a) { return a.variadic; });
    // Positional args before a variadic one, less those an option given so far replaced.
    auto fixed = [&] {
        size_t n = 0;
        for (const Arg &a : as) {
            if (a.variadic) break;
            if (!skipped(a)) ++n;
        }
        return n;
    };
    bool optionsDone = false;
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string &a = argv[i];
        // Once the variadic part (a command and its arguments) starts, everything is its.
        if (optionsDone || a.size() < 2 || a[0] != '-') {
            positional.push_back(a);
            if (hasVariadic && positional.size() > fixed()) optionsDone = true;
            continue;
        }
        if (a == "--") {
            optionsDone = true;
            continue;
        }
        if (a == "--help" || a == "-h") {
            lua_pop(L, 1);
            return false;
        }
        if (a == "--json") {
            json = true;
            continue;
        }
        if (a == "--debug") {
            debug = true;
            continue;
        }
        if (a.rfind("--", 0) == 0) {
            std::string name = a.substr(2), value;
            bool inlineValue = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                inlineValue = true;
            }
            const Option *o = findLong(name);
            if (!o) throw UsageError(command + ": unknown option " + quote("--" + name) + hint);
            given.insert(o->name);
            if (o->type == "flag") {
                if (inlineValue)
                    throw UsageError(command + ": option " + quote("--" + name) +
                                     " takes no value");
                lua_pushboolean(L, 1);
                lua_setfield(L, optsIdx, key(o->name).c_str());
                continue;
            }
            if (!inlineValue) {
                if (i + 1 >= argv.size())
                    throw UsageError(command + ": option " + quote("--" + name) + " needs a value" +
                                     hint);
                value = argv[++i];
            }
            setValue(*o, "--" + name, value);
            continue;
        }
        // Short options, bundled flags allowed: -it, -e K=V, -eK=V.
        for (size_t j = 1; j < a.size(); ++j) {
            std::string s(1, a[j]);
            const Option *o = findShort(s);
            if (!o) throw UsageError(command + ": unknown option " + quote("-" + s) + hint);
            given.insert(o->name);
            if (o->type == "flag") {
                lua_pushboolean(L, 1);
                lua_setfield(L, optsIdx, key(o->name).c_str());
                continue;
            }
            std::string value;
            if (j + 1 < a.size()) {
                value = a.substr(j + 1);
            } else {
                if (i + 1 >= argv.size())
                    throw UsageError(command + ": option " + quote("-" + s) + " needs a value" +
                                     hint);
                value = argv[++i];
            }
            setValue(*o, "-" + s, value);
            break;
        }
    }

    lua_newtable(L);
    int argsIdx = lua_gettop(L);
    size_t p = 0;
    for (const Arg &a : as) {
        if (skipped(a)) continue;
        if (a.variadic) {
            lua_newtable(L);
            int n = 1;
            for (; p < positional.size(); ++p) {
                lua_pushstring(L, positional[p].c_str());
                lua_rawseti(L, -2, n++);
            }
            if (n == 1 && !a.optional) throw UsageError(command + ": missing " + a.name + hint);
            lua_setfield(L, argsIdx, a.name.c_str());
            continue;
        }
        if (p >= positional.size()) {
            if (a.optional) continue;
            throw UsageError(command + ": missing " + a.name + hint);
        }
        lua_pushstring(L, positional[p++].c_str());
        lua_setfield(L, argsIdx, a.name.c_str());
    }
    if (p < positional.size())
        throw UsageError(command + ": unexpected argument " + quote(positional[p]) + hint);
    return true;
}

std::string verbHelp(lua_State *L, int verbIdx, const std::string &command) {
    const auto opts = options(L, verbIdx);
    const auto as = args(L, verbIdx);
    std::ostringstream out;
    out << usageLine(command, opts, as) << "\n\n" << tableString(L, verbIdx, "summary") << "\n";
    std::string desc = tableString(L, verbIdx, "description");
    if (!desc.empty()) out << "\n" << desc << "\n";
    if (!as.empty()) {
        out << "\nArguments:\n";
        size_t w = 0;
        for (auto &a : as) w = std::max(w, a.name.size());
        for (auto &a : as)
            out << "  " << a.name << std::string(w - a.name.size() + 2, ' ') << a.summary << "\n";
    }
    std::vector<std::pair<std::string, std::string>> rows;
    for (auto &o : opts) {
        std::string left = o.shortName.empty() ? "    " : "-" + o.shortName + ", ";
        left += "--" + o.name;
        std::string m = metavar(o);
        if (!m.empty()) left += " " + m;
        std::string right = o.summary;
        if (o.type == "list") right += " (repeatable)";
        rows.emplace_back(left, right);
    }
    rows.emplace_back("    --json", "print machine-readable JSON");
    rows.emplace_back("    --debug", "verbose diagnostics; errors name the script and line");
    rows.emplace_back("-h, --help", "show this help");
    size_t w = 0;
    for (auto &r : rows) w = std::max(w, r.first.size());
    out << "\nOptions:\n";
    for (auto &r : rows)
        out << "  " << r.first << std::string(w - r.first.size() + 2, ' ') << r.second << "\n";
    return out.str();
}

std::string workflowHelp(lua_State *L, int wf) {
    std::ostringstream out;
    std::string name = tableString(L, wf, "name");
    out << "Usage: mobileops " << name << " VERB [OPTIONS] [ARGS...]\n\n"
        << tableString(L, wf, "summary") << "\n";
    std::string desc = tableString(L, wf, "description");
    if (!desc.empty()) out << "\n" << desc << "\n";
    out << "\nVerbs:\n";
    lua_getfield(L, wf, "order");
    lua_getfield(L, wf, "verbs");
    int n = static_cast<int>(lua_objlen(L, -2));
    std::vector<std::pair<std::string, std::string>> rows;
    for (int i = 1; i <= n; ++i) {
        lua_rawgeti(L, -2, i);
        std::string verb = lua_tostring(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, -1, verb.c_str());
        if (!boolField(L, lua_gettop(L), "hidden"))
            rows.emplace_back(verb, tableString(L, lua_gettop(L), "summary"));
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    size_t w = 0;
    for (auto &r : rows) w = std::max(w, r.first.size());
    for (auto &r : rows)
        out << "  " << r.first << std::string(w - r.first.size() + 2, ' ') << r.second << "\n";
    out << "\nRun `mobileops " << name << " VERB --help` for a verb's options.\n";
    return out.str();
}

} // namespace mobileops::core::cli
