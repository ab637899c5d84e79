// The last step before a runtime spec goes to the runtime service: defaults, and the checks
// that need the host (the rootfs and the bind mount sources exist).
#include "mobileops/core/Spec.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>

namespace mobileops::core::spec {

using json = nlohmann::json;

namespace {

Error invalid(const std::string &message) { return Error(MO_E_INVALID, message); }

// An empty table that went through Lua may come back as `[]` where `{}` was meant, or
// the other way round: empty is empty.
json &objectAt(json &parent, const char *key, const char *path) {
    json &value = parent[key];
    if (value.is_null() || (value.is_array() && value.empty())) value = json::object();
    if (!value.is_object()) throw invalid(std::string(path) + ": expected an object");
    return value;
}

json &arrayAt(json &parent, const char *key, const char *path) {
    json &value = parent[key];
    if (value.is_null() || (value.is_object() && value.empty())) value = json::array();
    if (!value.is_array()) throw invalid(std::string(path) + ": expected a list");
    return value;
}

template <typename T> void byDefault(json &parent, const char *key, T value) {
    if (!parent.contains(key) || parent[key].is_null()) parent[key] = value;
}

std::string stringAt(const json &parent, const char *key, const char *path) {
    const json &value = parent[key];
    if (!value.is_string()) throw invalid(std::string(path) + ": expected a string");
    return value.get<std::string>();
}

// The canonical path of an existing directory (or any file when `directory` is false).
std::string canonical(const std::string &path, const std::string &what, bool directory) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) throw systemError(what + " " + quote(path));
    if (directory && !S_ISDIR(st.st_mode))
        throw invalid(what + " " + quote(path) + " is not a directory");
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved)) throw systemError(what + " " + quote(path));
    return resolved;
}

bool present(const json &spec, const char *key) {
    auto it = spec.find(key);
    return it != spec.end() && !it->is_null() &&
           !(it->is_string() && it->get<std::string>().empty());
}

// An image root: `imageId` (the storage service's id of the image, "sha256:<hex>") takes
// the place of a rootfs; the runtime asks the storage service for the root.
void checkImageId(json &spec) {
    std::string id = stringAt(spec, "imageId", "imageId");
    bool ok = id.size() == 71 && id.rfind("sha256:", 0) == 0 &&
              id.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
    if (!ok)
        throw invalid("imageId: " + quote(id) + " is not `sha256:` and 64 lowercase hex digits");
    if (present(spec, "rootfs") || present(spec, "rootfsImage"))
        throw invalid("give either a rootfs directory (rootfs, rootfsImage) or an image "
                      "(imageId), not both");
    spec.erase("rootfs");
    spec.erase("rootfsImage");
    byDefault(spec, "image", id);
}

void checkRootfs(json &spec) {
    if (present(spec, "imageId")) return checkImageId(spec);
    spec.erase("imageId");
    if (spec.contains("rootfsImage") && !spec["rootfsImage"].is_null()) {
        std::string image = stringAt(spec, "rootfsImage", "rootfsImage");
        if (spec.contains("rootfs") && !spec["rootfs"].is_null())
            throw invalid("give either a rootfs directory or a rootfs image (rootfsImage), not "
                          "both");
        spec.erase("rootfs");
        image = canonical(image, "rootfs image", false);
        struct stat st;
        if (::stat(image.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            throw invalid("rootfs image " + quote(image) + " is not a regular file");
        spec["rootfsImage"] = image;
        byDefault(spec, "image", image); // what `container list` shows
        return;
    }
    const json *rootfs = spec.contains("rootfs") ? &spec["rootfs"] : nullptr;
    if (!rootfs || rootfs->is_null() ||
        (rootfs->is_string() && rootfs->get<std::string>().empty())) {
        if (spec.contains("image") && spec["image"].is_string())
            throw invalid("image " + quote(spec["image"].get<std::string>()) +
                          " is not resolved (no imageId): resolve it in the image store "
                          "(mo.plugins.storage.image_resolve) or give a rootfs directory "
                          "(spec.rootfs or ROOTFS)");
        throw invalid("no rootfs given: give a rootfs directory (spec.rootfs or ROOTFS)");
    }
    spec["rootfs"] = canonical(stringAt(spec, "rootfs", "rootfs"), "rootfs", true);
}

// The strings of an image config's list field (absent and null: none).
std::vector<std::string> configStrings(const json &config, const char *key,
                                       const std::string &where) {
    std::vector<std::string> out;
    auto it = config.find(key);
    if (it == config.end() || it->is_null() || (it->is_object() && it->empty())) return out;
    if (!it->is_array()) throw invalid(where + " " + key + ": expected a list of strings");
    for (const auto &v : *it) {
        if (!v.is_string()) throw invalid(where + " " + key + ": expected a list of strings");
        out.push_back(v.get<std::string>());
    }
    return out;
}

std::string configString(const json &config, const char *key, const std::string &where) {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return {};
    if (!it->is_string()) throw invalid(where + " " + key + ": expected a string");
    return it->get<std::string>();
}

json &listOrEmpty(json &parent, const char *key) {
    json &value = parent[key];
    if (value.is_null() || (value.is_object() && value.empty())) value = json::array();
    return value;
}

// The command and the image's defaults, as the OCI image spec maps an image config to a
// runtime config (podman, crun): process.command (the VirtualRoot's `command`) replaces
// the image's Entrypoint, process.args (CMD, the VirtualRoot's `args`) its Cmd; the image's
// Env comes first and the spec's entries win per name; WorkingDir, User and StopSignal
// apply unless the spec sets them. `imageConfig` (the config's `config` object, from
// storage.image_resolve) is consumed here.
void applyImageConfig(json &spec) {
    json config = json::object();
    if (spec.contains("imageConfig")) {
        json &c = spec["imageConfig"];
        if (c.is_array() && c.empty()) c = json::object();
        if (!c.is_null() && !c.is_object()) throw invalid("imageConfig: expected an object");
        if (c.is_object()) config = c;
        spec.erase("imageConfig");
    }
    const std::string where =
        "image " + quote(spec.value("image", spec.value("imageId", std::string("config")))) +
        ": config";
    json &process = objectAt(spec, "process", "process");

    json &command = listOrEmpty(process, "command");
    json &args = listOrEmpty(process, "args");
    if (!command.is_array()) throw invalid("process.command: expected a list of strings");
    if (!args.is_array()) throw invalid("process.args: expected a list of strings");
    json full = json::array();
    bool ownCommand = !command.empty();
    if (ownCommand)
        full = command;
    else
        for (const auto &a : configStrings(config, "Entrypoint", where)) full.push_back(a);
    if (!args.empty())
        full.insert(full.end(), args.begin(), args.end());
    else if (!ownCommand)
        for (const auto &a : configStrings(config, "Cmd", where)) full.push_back(a);
    process.erase("command");
    process["args"] = full;

    auto imageEnv = configStrings(config, "Env", where);
    if (!imageEnv.empty()) {
        json &env = listOrEmpty(process, "env");
        if (!env.is_array()) throw invalid("process.env: expected a list");
        json merged = json::array();
        for (const auto &e : imageEnv) {
            if (e.find('=') == std::string::npos || e[0] == '=')
                throw invalid(where + " Env: " + quote(e) + " is not NAME=VALUE");
            merged.push_back(e);
        }
        for (const auto &entry : env) {
            if (!entry.is_string()) throw invalid("process.env: expected a list of strings");
            const std::string &e = entry.get_ref<const std::string &>();
            if (e.find('=') == std::string::npos) { // finalizeProcess names it
                merged.push_back(e);
                continue;
            }
            std::string prefix = e.substr(0, e.find('=') + 1);
            auto same = std::find_if(merged.begin(), merged.end(), [&](const json &m) {
                return m.get_ref<const std::string &>().rfind(prefix, 0) == 0;
            });
            if (same != merged.end())
                *same = e;
            else
                merged.push_back(e);
        }
        env = merged;
    }

    std::string workdir = configString(config, "WorkingDir", where);
    if (!workdir.empty() && (!process.contains("cwd") || process["cwd"].is_null())) {
        if (workdir[0] != '/')
            throw invalid(where + " WorkingDir: " + quote(workdir) + " is not an absolute path");
        process["cwd"] = workdir;
    }

    std::string user = configString(config, "User", where);
    json &specUser = process["user"];
    if (specUser.is_null() || (specUser.is_array() && specUser.empty())) specUser = json::object();
    if (!user.empty() && specUser.is_object() && !specUser.contains("uid") &&
        !specUser.contains("name")) {
        json parsed;
        try {
            parsed = parseUser(user);
        } catch (const InvalidValue &e) {
            throw invalid(where + " User: " + e.what());
        }
        for (auto &[key, value] : parsed.items()) specUser[key] = value;
    }

    std::string signal = configString(config, "StopSignal", where);
    if (!signal.empty() && (!spec.contains("stopSignal") || spec["stopSignal"].is_null())) {
        try {
            spec["stopSignal"] = parseSignal(signal);
        } catch (const InvalidValue &e) {
            throw invalid(where + " StopSignal: " + e.what());
        }
    }
}

bool numeric(const std::string &s) {
    return !s.empty() && s.size() <= 10 && s.find_first_not_of("0123456789") == std::string::npos;
}

// With a user namespace, the ids the process runs as must be mapped inside it.
void checkMapped(const json &userns, const json &user) {
    auto mapped = [](const json &mappings, std::uint64_t id) {
        for (const auto &m : mappings) {
            std::uint64_t first = m.value("containerID", 0ull), size = m.value("size", 0ull);
            if (id >= first && id < first + size) return true;
        }
        return false;
    };
    auto check = [&](const char *kind, const char *list, std::optional<std::uint64_t> id) {
        if (!id) return;
        const json &mappings = userns.contains(list) ? userns[list] : userns["uidMappings"];
        if (!mappings.is_array())
            throw invalid(std::string("userns.") + list + ": expected a list");
        if (!mapped(mappings, *id))
            throw invalid(std::string(kind) + " " + quote(std::to_string(*id)) +
                          " is not mapped in the user namespace (userns." + list + ")");
    };
    std::optional<std::uint64_t> uid, gid;
    auto id = [&](const char *key, std::optional<std::uint64_t> &out) {
        if (user.contains(key) && user[key].is_number_integer() &&
            user[key].get<std::int64_t>() >= 0)
            out = user[key].get<std::uint64_t>();
    };
    id("uid", uid);
    id("gid", gid);
    if (user.contains("name") && user["name"].is_string()) {
        std::string name = user["name"].get<std::string>();
        std::string u = name.substr(0, name.find(':'));
        std::string g = name.find(':') == std::string::npos ? "" : name.substr(name.find(':') + 1);
        if (numeric(u)) uid = std::stoull(u);
        if (numeric(g)) gid = std::stoull(g);
    }
    check("uid", "uidMappings", uid);
    check("gid", "gidMappings", gid);
}

void finalizeProcess(json &spec) {
    json &process = objectAt(spec, "process", "process");
    json &args = arrayAt(process, "args", "process.args");
    if (args.empty()) throw invalid("no command given and the image has none");
    for (const auto &arg : args)
        if (!arg.is_string()) throw invalid("process.args: expected a list of strings");
    if (args[0].get<std::string>().empty())
        throw invalid("invalid command: the program name is empty");

    json &env = arrayAt(process, "env", "process.env");
    bool hasPath = false;
    for (const auto &entry : env) {
        if (!entry.is_string() || entry.get<std::string>().find('=') == std::string::npos)
            throw invalid("process.env: " + quote(entry.dump()) + " is not NAME=VALUE");
        hasPath = hasPath || entry.get<std::string>().rfind("PATH=", 0) == 0;
    }
    if (!hasPath) env.insert(env.begin(), std::string("PATH=") + kDefaultPath);

    byDefault(process, "cwd", "/");
    std::string cwd = stringAt(process, "cwd", "process.cwd");
    if (cwd.empty() || cwd[0] != '/')
        throw invalid("process.cwd: " + quote(cwd) + " is not an absolute path");

    json &user = objectAt(process, "user", "process.user");
    if (!user.contains("uid") && !user.contains("name")) {
        user["uid"] = 0;
        byDefault(user, "gid", 0);
    }
    arrayAt(user, "additionalGids", "process.user.additionalGids");

    byDefault(process, "terminal", false);
    byDefault(process, "stdin", false);
    byDefault(process, "init", false);
    arrayAt(process, "rlimits", "process.rlimits");
}

// An init system as PID 1 (initSystem): /sbin/init unless a command was given, no
// --init shim, `container=mobileops` for systemd, and systemd's halt signal SIGRTMIN+3
// (computed: the C library reserves the first real-time signals) unless one was given.
void finalizeSystemModes(json &spec) {
    for (const char *key : {"initSystem", "hardwareAccess"})
        if (spec.contains(key) && !spec[key].is_null() && !spec[key].is_boolean())
            throw invalid(std::string(key) + ": expected true or false");
    if (!spec.contains("initSystem") || !spec["initSystem"].is_boolean() ||
        !spec["initSystem"].get<bool>())
        return;
    json &process = objectAt(spec, "process", "process");
    json &args = arrayAt(process, "args", "process.args");
    if (args.empty()) args.push_back("/sbin/init");
    if (process.contains("init") && process["init"] == true)
        throw invalid("process.init: the built-in init (--init) cannot run an init system "
                      "(--init-system): the init system is PID 1");
    json &env = arrayAt(process, "env", "process.env");
    bool named = false;
    for (const auto &entry : env)
        named =
            named || (entry.is_string() && entry.get<std::string>().rfind("container=", 0) == 0);
    if (!named) env.push_back("container=mobileops");
    byDefault(spec, "stopSignal", SIGRTMIN + 3);
}

void finalizeMounts(json &spec) {
    const bool soft = spec.value("softMounts", false);
    for (auto &mount : arrayAt(spec, "mounts", "mounts")) {
        if (!mount.is_object()) throw invalid("mounts: expected a list of objects");
        std::string destination = stringAt(mount, "destination", "mounts[].destination");
        if (destination.empty() || destination[0] != '/')
            throw invalid("mount " + quote(destination) + ": not an absolute path");
        if (mount.value("type", "bind") != "bind") continue;
        std::string source = stringAt(mount, "source", "mounts[].source");
        struct stat st;
        // Soft mounts: a missing source is skipped with a warning when the container starts.
        if (soft && ::stat(source.c_str(), &st) < 0 && errno == ENOENT) continue;
        mount["source"] = canonical(source, "mount " + quote(destination) + ": source", false);
    }
}

} // namespace

void finalize(json &spec) {
    if (spec.is_null()) spec = json::object();
    if (!spec.is_object()) throw invalid("spec: expected an object");
    try {
        if (spec.contains("name")) {
            std::string name = stringAt(spec, "name", "name");
            if (!isValidName(name))
                throw invalid("invalid container name " + quote(name) +
                              ": expected 1 to 128 letters, digits, `_`, `.`, `-`, starting with "
                              "a letter or digit");
        }
        checkRootfs(spec);
        applyImageConfig(spec);
        finalizeSystemModes(spec);
        finalizeProcess(spec);

        // The host's UTS namespace (--uts host) keeps the host's name: none by default,
        // and one given is refused where the namespace is known (the runtime).
        const json *ns = spec.contains("namespaces") ? &spec["namespaces"] : nullptr;
        const bool hostUts = ns && ns->is_object() && ns->contains("uts") &&
                             (*ns)["uts"].is_boolean() && !(*ns)["uts"].get<bool>();
        if (!spec.contains("hostname") && spec.contains("name") && !hostUts)
            spec["hostname"] = spec["name"].get<std::string>().substr(0, 64);
        if (spec.contains("hostname") && !isValidHostname(stringAt(spec, "hostname", "hostname")))
            throw invalid("invalid hostname " + quote(spec["hostname"].get<std::string>()));
        byDefault(spec, "readonly", false);
        for (const char *key : {"volatile", "softMounts"})
            if (spec.contains(key) && !spec[key].is_null() && !spec[key].is_boolean())
                throw invalid(std::string(key) + ": expected true or false");

        json &network = objectAt(spec, "network", "network");
        byDefault(network, "mode", "private");
        std::string mode = stringAt(network, "mode", "network.mode");
        if (mode != "private" && mode != "host" && mode != "none")
            throw invalid("network.mode: " + quote(mode) + " is not `private`, `host` or `none`");

        bool userns = spec.contains("userns") && !spec["userns"].is_null();
        if (userns) {
            json &u = objectAt(spec, "userns", "userns");
            if (!u.contains("uidMappings")) throw invalid("userns: no uidMappings");
            byDefault(u, "gidMappings", u["uidMappings"]);
            checkMapped(u, spec["process"]["user"]);
        } else {
            spec.erase("userns");
        }
        // pid, uts and ipc may be the caller's (an OCI config.json that leaves them out)
        json given = spec.contains("namespaces") ? spec["namespaces"] : json::object();
        if (!given.is_object()) throw invalid("namespaces: expected an object");
        auto own = [&given](const char *type) {
            if (!given.contains(type)) return true;
            if (!given[type].is_boolean())
                throw invalid(std::string("namespaces.") + type + ": expected true or false");
            return given[type].get<bool>();
        };
        spec["namespaces"] = {
            {"pid", own("pid")},         {"mount", true},  {"uts", own("uts")}, {"ipc", own("ipc")},
            {"network", mode != "host"}, {"cgroup", true}, {"user", userns}};

        finalizeMounts(spec);
        objectAt(spec, "resources", "resources");
        objectAt(spec, "security", "security");
        objectAt(spec, "annotations", "annotations");
        arrayAt(spec, "unapplied", "unapplied");
        byDefault(spec, "stopSignal", 15);
        byDefault(spec, "stopTimeout", 10);
        if (spec.value("isolation", "") == "auto" && spec.contains("runtime"))
            throw invalid("isolation: `auto` picks the runtime; do not name one too");
        if (spec.value("isolation", "") != "auto") byDefault(spec, "runtime", "namespace");
        if (spec.contains("vm") && spec.value("runtime", "") == "namespace")
            throw invalid("vm: micro-VM settings need a VM runtime (--runtime krun, "
                          "--isolation vm or auto)");
    } catch (const json::exception &e) {
        throw Error(MO_E_INVALID, std::string("invalid runtime spec: ") + e.what());
    }
}

} // namespace mobileops::core::spec
