// Where things are and what the configuration says. Paths are found relative to the
// running binary, so the build tree (which mirrors the install layout) and an installed
// prefix behave the same.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::core {

struct Paths {
    std::string prefix;                  // <prefix> of bin/mobileops
    std::string rootDir;                 // $MOBILEOPS_ROOT or /var/lib/mobileops
    std::string runDir;                  // $MOBILEOPS_RUN or /run/mobileops
    std::string libexecDir;              // <prefix>/libexec/mobileops
    std::string configFile;              // $MOBILEOPS_CONFIG or /etc/mobileops/mobileops.conf
    std::vector<std::string> pluginDirs; // built-in first, then $MOBILEOPS_PLUGIN_PATH
    std::vector<std::string> scriptDirs; // built-in, /etc/mobileops/scripts, $MOBILEOPS_SCRIPT_PATH
    std::string builtinScriptDir;
};

class Config {
public:
    // Read the environment and the configuration file (missing file: defaults).
    static Config load();
    // For tests: explicit paths and values.
    Config(Paths paths, std::map<std::string, std::string> values);

    const Paths &paths() const { return _paths; }
    std::optional<std::string> get(const std::string &key) const;
    std::string get(const std::string &key, const std::string &fallback) const;
    void set(const std::string &key, const std::string &value);
    const std::map<std::string, std::string> &values() const { return _values; }

    // The directory of the running executable's prefix (bin/..).
    static std::string executablePrefix();
    static std::vector<std::string> splitPath(const std::string &list);

private:
    Paths _paths;
    std::map<std::string, std::string> _values;
};

} // namespace mobileops::core
