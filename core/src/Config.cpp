#include "mobileops/core/Config.h"

#include "mobileops/core/Error.h"

#include <climits>
#include <cstdlib>
#include <fstream>
#include <unistd.h>

#ifndef MOBILEOPS_REL_PLUGINDIR
#define MOBILEOPS_REL_PLUGINDIR "lib/mobileops/plugins"
#endif
#ifndef MOBILEOPS_REL_LIBEXECDIR
#define MOBILEOPS_REL_LIBEXECDIR "libexec/mobileops"
#endif
#ifndef MOBILEOPS_REL_SCRIPTDIR
#define MOBILEOPS_REL_SCRIPTDIR "share/mobileops/scripts"
#endif

namespace mobileops::core {

namespace {

std::string env(const char *name, const std::string &fallback) {
    const char *v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

std::string trim(const std::string &s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

// key = value lines, [section] prefixes keys with "section.", # comments.
void parseConfigFile(const std::string &path, std::map<std::string, std::string> &out) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, section;
    int lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        line = trim(line);
        if (line.empty() || line[0] == '#' || line[0] == ';') continue;
        if (line.front() == '[' && line.back() == ']') {
            section = trim(line.substr(1, line.size() - 2));
            continue;
        }
        auto eq = line.find('=');
        if (eq == std::string::npos)
            throw Error(MO_E_INVALID, "config `" + path + "` line " + std::to_string(lineno) +
                                          ": expected `key = value`");
        std::string key = trim(line.substr(0, eq));
        out[section.empty() ? key : section + "." + key] = trim(line.substr(eq + 1));
    }
}

} // namespace

std::vector<std::string> Config::splitPath(const std::string &list) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= list.size()) {
        auto end = list.find(':', start);
        if (end == std::string::npos) end = list.size();
        if (end > start) out.push_back(list.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

std::string Config::executablePrefix() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "/usr";
    std::string exe(buf, static_cast<size_t>(n));
    auto slash = exe.rfind('/');
    std::string bin = slash == std::string::npos ? "." : exe.substr(0, slash);
    slash = bin.rfind('/');
    return slash == std::string::npos || slash == 0 ? "/" : bin.substr(0, slash);
}

Config::Config(Paths paths, std::map<std::string, std::string> values)
    : _paths(std::move(paths)), _values(std::move(values)) {}

Config Config::load() {
    Paths p;
    p.prefix = executablePrefix();
    p.rootDir = env("MOBILEOPS_ROOT", "/var/lib/mobileops");
    p.runDir = env("MOBILEOPS_RUN", "/run/mobileops");
    p.libexecDir = p.prefix + "/" MOBILEOPS_REL_LIBEXECDIR;
    p.configFile = env("MOBILEOPS_CONFIG", "/etc/mobileops/mobileops.conf");
    p.pluginDirs.push_back(p.prefix + "/" MOBILEOPS_REL_PLUGINDIR);
    for (auto &d : splitPath(env("MOBILEOPS_PLUGIN_PATH", ""))) p.pluginDirs.push_back(d);
    p.builtinScriptDir = p.prefix + "/" MOBILEOPS_REL_SCRIPTDIR;
    p.scriptDirs.push_back(p.builtinScriptDir);
    p.scriptDirs.push_back("/etc/mobileops/scripts");
    for (auto &d : splitPath(env("MOBILEOPS_SCRIPT_PATH", ""))) p.scriptDirs.push_back(d);

    std::map<std::string, std::string> values;
    parseConfigFile(p.configFile, values);
    values["prefix"] = p.prefix;
    values["root_dir"] = p.rootDir;
    values["run_dir"] = p.runDir;
    values["libexec_dir"] = p.libexecDir;
    values["plugin_dir"] = p.pluginDirs.front();
    return Config(std::move(p), std::move(values));
}

std::optional<std::string> Config::get(const std::string &key) const {
    auto it = _values.find(key);
    if (it == _values.end()) return std::nullopt;
    return it->second;
}

std::string Config::get(const std::string &key, const std::string &fallback) const {
    auto v = get(key);
    return v ? *v : fallback;
}

void Config::set(const std::string &key, const std::string &value) { _values[key] = value; }

} // namespace mobileops::core
