#include "VolumeMethods.h"

#include "Assets.h"
#include "Paths.h"
#include <mobileops/common/Progress.h>
#include "Quota.h"
#include "QuotaInternal.h"
#include "Volumes.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/plugin.hpp>

#include <sys/statvfs.h>
#include <unistd.h>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

namespace {

json parseArgs(const std::string &text) {
    if (text.empty()) return json::object();
    json a = json::parse(text, nullptr, false);
    if (!a.is_object()) throw sdk::Error(MO_E_INVALID, "arguments: expected an object");
    return a;
}

std::string str(const json &a, const char *key, bool required = false) {
    auto it = a.find(key);
    if (it == a.end() || it->is_null()) {
        if (required) throw sdk::Error(MO_E_INVALID, std::string("missing '") + key + "'");
        return {};
    }
    if (!it->is_string())
        throw sdk::Error(MO_E_INVALID, std::string("invalid '") + key + "': expected a string");
    return it->get<std::string>();
}

bool flag(const json &a, const char *key) {
    auto it = a.find(key);
    if (it == a.end() || it->is_null()) return false;
    if (!it->is_boolean())
        throw sdk::Error(MO_E_INVALID,
                         std::string("invalid '") + key + "': expected true or false");
    return it->get<bool>();
}

// A list of strings, or one string.
std::vector<std::string> strings(const json &a, const char *key) {
    std::vector<std::string> out;
    auto it = a.find(key);
    // An empty Lua table arrives as {}.
    if (it == a.end() || it->is_null() || (it->is_object() && it->empty())) return out;
    if (it->is_string()) return {it->get<std::string>()};
    bool ok = it->is_array();
    if (ok)
        for (const auto &v : *it) ok = ok && v.is_string();
    if (!ok)
        throw sdk::Error(MO_E_INVALID,
                         std::string("invalid '") + key + "': expected a list of strings");
    for (const auto &v : *it) out.push_back(v.get<std::string>());
    return out;
}

// Labels as ["k=v", ...] (the CLI's --label) or {"k": "v"}.
std::map<std::string, std::string> labels(const json &a) {
    std::map<std::string, std::string> out;
    auto it = a.find("labels");
    if (it != a.end() && it->is_object()) {
        for (const auto &[k, v] : it->items()) {
            if (!v.is_string())
                throw sdk::Error(MO_E_INVALID, "label " + quote(k) + ": expected a string value");
            out[k] = v.get<std::string>();
        }
        return out;
    }
    for (const auto &l : strings(a, "labels")) {
        auto eq = l.find('=');
        if (eq == 0 || l.empty())
            throw sdk::Error(MO_E_INVALID, "label " + quote(l) + ": expected KEY=VALUE");
        out[l.substr(0, eq)] = eq == std::string::npos ? "" : l.substr(eq + 1);
    }
    return out;
}

VolumeRequest volumeRequest(const json &a) {
    VolumeRequest r;
    r.name = str(a, "name");
    r.className = str(a, "class");
    if (a.contains("size") && a["size"].is_number_unsigned())
        r.size = std::to_string(a["size"].get<uint64_t>());
    else if (std::string s = str(a, "size"); !s.empty())
        r.size = s;
    r.labels = labels(a);
    return r;
}

json classJson(const StorageClasses &classes, const StorageClass &c, const common::Host &host) {
    json j = c.toJson();
    j["default"] = c.name == classes.defaultName();
    json volumes = json::array();
    for (const auto &v : host.list("volume"))
        if (v.value("class", "") == c.name) volumes.push_back(v["name"]);
    j["volumes"] = volumes;
    return j;
}

} // namespace

VolumeHooks registerVolumeMethods(sdk::Plugin &plugin, const common::Host &host,
                                  const Paths &paths) {
    const common::Host *h = &host;
    const Paths *p = &paths;
    auto volumes = [h, p]() { return Volumes(*h, *p); };
    auto assets = [h, p]() { return Assets(*h, loadStorageClasses(*h, *p)); };

    plugin.method("class_list", "the storage classes (built-in and configured)",
                  [=](const std::string &) {
                      StorageClasses classes = loadStorageClasses(*h, *p);
                      json out = json::array();
                      for (const auto &c : classes.all()) out.push_back(classJson(classes, c, *h));
                      return out.dump();
                  });
    plugin.method(
        "class_inspect", "one storage class with its backing filesystem and volumes",
        [=](const std::string &t) {
            json a = parseArgs(t);
            StorageClasses classes = loadStorageClasses(*h, *p);
            const StorageClass &c = classes.get(str(a, "name", true));
            json j = classJson(classes, c, *h);
            json backing = {{"directory", c.directory},
                            {"exists", ::access(c.directory.c_str(), F_OK) == 0}};
            if (auto m = fsutil::mountOf(c.directory)) {
                backing["filesystem"] = m->fstype;
                backing["mountPoint"] = m->mountPoint;
                struct statvfs st;
                if (::statvfs(m->mountPoint.c_str(), &st) == 0)
                    backing["free"] = st.f_bavail * st.f_frsize;
            }
            if (c.quota == QuotaMechanism::Project) {
                std::string why;
                backing["projectQuota"] = projectQuotaSupported(c.directory, &why);
                if (!why.empty()) backing["problem"] = why;
            }
            j["backing"] = backing;
            j["file"] = classes.file().empty() ? json(nullptr) : json(classes.file());
            return j.dump();
        },
        "{name}");

    plugin.method(
        "volume_create", "create a named volume in a storage class",
        [=](const std::string &t) { return volumes().create(volumeRequest(parseArgs(t))).dump(); },
        "{name, class, size (\"5Gi\"), labels ([\"k=v\"] or {k: v})}");
    plugin.method("volume_list", "the named volumes",
                  [=](const std::string &) { return volumes().list().dump(); });
    plugin.method(
        "volume_inspect", "a volume with its usage, mount point and users",
        [=](const std::string &t) {
            return volumes().inspect(str(parseArgs(t), "name", true)).dump();
        },
        "{name}");
    plugin.method(
        "volume_rm", "remove a volume (refused while in use unless force)",
        [=](const std::string &t) {
            json a = parseArgs(t);
            volumes().remove(str(a, "name", true), flag(a, "force"));
            return std::string("{}");
        },
        "{name, force}");
    plugin.method("volume_prune", "remove every volume no container uses",
                  [=](const std::string &) { return volumes().prune().dump(); });
    plugin.method(
        "volume_backup", "a volume's data as tar.zst",
        [=](const std::string &t) {
            json a = parseArgs(t);
            Progress progress = Progress::forTerminal(flag(a, "quiet"));
            return volumes().backup(str(a, "name", true), str(a, "output", true), progress).dump();
        },
        "{name, output, quiet}");
    plugin.method(
        "volume_restore", "replace a volume's data with a backup, atomically",
        [=](const std::string &t) {
            json a = parseArgs(t);
            Progress progress = Progress::forTerminal(flag(a, "quiet"));
            VolumeRequest ifMissing = volumeRequest(a);
            return volumes()
                .restore(str(a, "name", true), str(a, "file", true), ifMissing,
                         flag(a, "unverified"), progress)
                .dump();
        },
        "{name, file, class, size (for a volume that does not exist), unverified, quiet}");
    plugin.method(
        "volume_prepare",
        "host mounts for a container's volumes (the storage service's prepare_volumes)",
        [=](const std::string &t) {
            json a = parseArgs(t);
            return volumes()
                .prepare(str(a, "container", true), a.value("volumes", json::array()))
                .dump();
        },
        "{container, volumes: [{name|hostPath|ephemeral: {size}, containerPath, readOnly}]}");
    plugin.method(
        "volume_release", "drop a container's use of volumes, remove its scratch areas",
        [=](const std::string &t) {
            volumes().release(str(parseArgs(t), "container", true));
            return std::string("{}");
        },
        "{container}");

    plugin.method(
        "asset_add", "register a host file or directory as an asset",
        [=](const std::string &t) {
            json a = parseArgs(t);
            return assets()
                .add(str(a, "path", true), str(a, "class", true), str(a, "description"),
                     str(a, "name"))
                .dump();
        },
        "{path, class, description, name}");
    plugin.method("asset_list", "the registered assets",
                  [=](const std::string &) { return assets().list().dump(); });
    plugin.method(
        "asset_inspect", "an asset with its backups",
        [=](const std::string &t) {
            return assets().inspect(str(parseArgs(t), "name", true)).dump();
        },
        "{name}");
    plugin.method(
        "asset_rm", "forget an asset (purge: and delete its backups)",
        [=](const std::string &t) {
            json a = parseArgs(t);
            assets().remove(str(a, "name", true), flag(a, "purge"));
            return std::string("{}");
        },
        "{name, purge}");
    plugin.method(
        "asset_backup", "back up assets (all when none named)",
        [=](const std::string &t) {
            json a = parseArgs(t);
            Progress progress = Progress::forTerminal(flag(a, "quiet"));
            return assets().backup(strings(a, "names"), progress).dump();
        },
        "{names, quiet}");
    plugin.method(
        "asset_restore", "put an asset back from a backup, atomically",
        [=](const std::string &t) {
            json a = parseArgs(t);
            Progress progress = Progress::forTerminal(flag(a, "quiet"));
            return assets().restore(str(a, "name", true), str(a, "backup"), progress).dump();
        },
        "{name, backup (an id; default the newest), quiet}");
    plugin.method(
        "asset_verify", "re-hash backups and compare assets with their last backup",
        [=](const std::string &t) {
            return assets().verify(strings(parseArgs(t), "names")).dump();
        },
        "{names}");

    VolumeHooks hooks;
    hooks.prepare = [=](const std::string &id, const json &spec) {
        return volumes().prepare(id, spec);
    };
    hooks.release = [=](const std::string &id) { volumes().release(id); };
    hooks.gc = [=]() { return volumes().gc(); };
    return hooks;
}

} // namespace mobileops::storage
