#include "Classes.h"

#include "Paths.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Loop.h>

#include <sys/mount.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

std::string toString(QuotaMechanism mechanism) {
    switch (mechanism) {
    case QuotaMechanism::Loop:
        return "loop";
    case QuotaMechanism::Project:
        return "project";
    case QuotaMechanism::None:
        return "none";
    }
    return "none";
}

std::optional<QuotaMechanism> parseQuotaMechanism(const std::string &text) {
    if (text == "loop") return QuotaMechanism::Loop;
    if (text == "project") return QuotaMechanism::Project;
    if (text == "none") return QuotaMechanism::None;
    return std::nullopt;
}

json StorageClass::toJson() const {
    return {{"name", name},
            {"description", description},
            {"directory", directory},
            {"mountOptions", mountOptions},
            {"defaultSize", defaultSize ? json(*defaultSize) : json(nullptr)},
            {"defaultSizeText", defaultSizeText},
            {"quota", toString(quota)},
            {"source", source}};
}

namespace {

struct Option {
    const char *name;
    unsigned long set, clear;
};

// The generic mount flags a class may ask for; anything else must be an ext4 option
// below, so a typo fails when the file is read, not at the first volume's mount.
constexpr Option kFlags[] = {
    {"noatime", MS_NOATIME, MS_RELATIME | MS_STRICTATIME},
    {"nodiratime", MS_NODIRATIME, 0},
    {"relatime", MS_RELATIME, MS_NOATIME | MS_STRICTATIME},
    {"strictatime", MS_STRICTATIME, MS_NOATIME | MS_RELATIME},
    {"lazytime", MS_LAZYTIME, 0},
    {"nosuid", MS_NOSUID, 0},
    {"nodev", MS_NODEV, 0},
    {"noexec", MS_NOEXEC, 0},
    {"sync", MS_SYNCHRONOUS, 0},
    {"dirsync", MS_DIRSYNC, 0},
};
const std::set<std::string> kExt4Options = {"discard",
                                            "nodiscard",
                                            "barrier",
                                            "nobarrier",
                                            "journal_checksum",
                                            "nodelalloc",
                                            "delalloc",
                                            "auto_da_alloc",
                                            "noauto_da_alloc",
                                            "user_xattr",
                                            "acl",
                                            "noacl",
                                            "init_itable",
                                            "noinit_itable",
                                            "block_validity",
                                            "noblock_validity",
                                            "dioread_nolock",
                                            "dioread_lock"};
const std::set<std::string> kExt4ValueOptions = {
    "commit",         "data",           "errors",
    "barrier",        "stripe",         "max_batch_time",
    "min_batch_time", "journal_ioprio", "inode_readahead_blks",
    "init_itable"};

} // namespace

MountOptions parseMountOptions(const std::vector<std::string> &options) {
    MountOptions out;
    for (const auto &o : options) {
        bool known = false;
        for (const auto &f : kFlags) {
            if (o == f.name) {
                out.flags = (out.flags & ~f.clear) | f.set;
                known = true;
            }
        }
        if (known) continue;
        auto eq = o.find('=');
        bool ext4 = eq == std::string::npos
                        ? kExt4Options.count(o) > 0
                        : eq + 1 < o.size() && kExt4ValueOptions.count(o.substr(0, eq)) > 0;
        if (!ext4)
            throw sdk::Error(MO_E_INVALID,
                             "mount option " + quote(o) +
                                 " is not known (generic: noatime, nodiratime, relatime, "
                                 "strictatime, lazytime, nosuid, nodev, noexec, sync, dirsync; "
                                 "or an ext4 option such as discard or commit=30)");
        out.data += (out.data.empty() ? "" : ",") + o;
    }
    return out;
}

StorageClasses::StorageClasses(const Paths &paths) {
    auto builtIn = [&](const std::string &name, const std::string &description,
                       std::vector<std::string> options) {
        StorageClass c;
        c.name = name;
        c.description = description;
        c.directory = paths.volumes() + "/" + name;
        c.mountOptions = std::move(options);
        c.defaultSizeText = "none";
        c.quota = QuotaMechanism::Loop;
        c.source = "built-in";
        _classes.push_back(std::move(c));
    };
    builtIn("high-performance", "fast local storage; no access-time writes", {"noatime"});
    builtIn("standard", "general-purpose storage (the default class)", {});
    builtIn("cold", "rarely used data and backups; no access-time writes", {"noatime"});
}

StorageClass &StorageClasses::put(StorageClass c) {
    for (auto &existing : _classes)
        if (existing.name == c.name) return existing = std::move(c);
    return _classes.emplace_back(std::move(c));
}

const StorageClass &StorageClasses::get(const std::string &name) const {
    for (const auto &c : _classes)
        if (c.name == name) return c;
    std::string known;
    for (const auto &c : _classes) known += (known.empty() ? "" : ", ") + c.name;
    throw sdk::Error(MO_E_NOT_FOUND,
                     "storage class " + quote(name) + " does not exist (known: " + known + ")");
}

namespace {

// Errors while reading a class file: "FILE:LINE: class `x`: field `y`: reason".
class Reader {
public:
    explicit Reader(std::string source) : _source(std::move(source)) {}

    [[noreturn]] void fail(const YAML::Node &at, const std::string &where,
                           const std::string &why) const {
        std::string line;
        if (at.IsDefined() && at.Mark().line >= 0) line = ":" + std::to_string(at.Mark().line + 1);
        throw sdk::Error(MO_E_INVALID,
                         _source + line + ": " + (where.empty() ? "" : where + ": ") + why);
    }

    std::string scalar(const YAML::Node &node, const std::string &where) const {
        if (!node.IsScalar()) fail(node, where, "expected a string");
        return node.Scalar();
    }

    // The keys of a mapping, refusing duplicates and those not in `allowed`.
    void checkKeys(const YAML::Node &map, const std::string &where,
                   const std::set<std::string> &allowed) const {
        std::set<std::string> seen;
        for (const auto &kv : map) {
            std::string key = scalar(kv.first, where);
            std::string field = (where.empty() ? "" : where + ": ") + "field " + quote(key);
            if (!allowed.count(key)) {
                std::string list;
                for (const auto &a : allowed) list += (list.empty() ? "" : ", ") + a;
                fail(kv.first, "", field + " is not known (expected one of " + list + ")");
            }
            if (!seen.insert(key).second) fail(kv.first, "", field + " is given twice");
        }
    }

    const std::string &source() const { return _source; }

private:
    std::string _source;
};

StorageClass parseClass(const Reader &r, const YAML::Node &node, const Paths &paths) {
    if (!node.IsMap()) r.fail(node, "classes", "each class is a mapping with a `name`");
    if (!node["name"]) r.fail(node, "classes", "a class has no `name`");
    StorageClass c;
    c.name = r.scalar(node["name"], "class name");
    try {
        checkName("class name", c.name);
    } catch (const sdk::Error &e) {
        r.fail(node["name"], "", e.what());
    }
    const std::string where = "class " + quote(c.name);
    r.checkKeys(node, where,
                {"name", "description", "directory", "mountOptions", "defaultSize", "quota"});
    auto field = [&](const char *name) { return where + ": field " + quote(name); };

    c.source = r.source();
    c.description = node["description"] ? r.scalar(node["description"], field("description")) : "";
    c.directory = paths.volumes() + "/" + c.name;
    if (auto d = node["directory"]) {
        c.directory = r.scalar(d, field("directory"));
        if (c.directory.empty() || c.directory[0] != '/')
            r.fail(d, field("directory"), quote(c.directory) + " is not an absolute path");
        while (c.directory.size() > 1 && c.directory.back() == '/') c.directory.pop_back();
    }
    if (auto m = node["mountOptions"]) {
        // A list, or one comma-separated string as in fstab.
        if (m.IsSequence()) {
            for (const auto &o : m) c.mountOptions.push_back(r.scalar(o, field("mountOptions")));
        } else if (!m.IsNull()) {
            std::istringstream in(r.scalar(m, field("mountOptions")));
            for (std::string o; std::getline(in, o, ',');)
                if (!o.empty()) c.mountOptions.push_back(o);
        }
        try {
            parseMountOptions(c.mountOptions);
        } catch (const sdk::Error &e) {
            r.fail(m, field("mountOptions"), e.what());
        }
    }
    c.defaultSizeText = "none";
    if (auto s = node["defaultSize"]; s && !s.IsNull()) {
        std::string text = r.scalar(s, field("defaultSize"));
        if (text != "none") {
            try {
                c.defaultSize = common::parseSize(text);
            } catch (const sdk::Error &e) {
                r.fail(s, field("defaultSize"), e.what());
            }
            c.defaultSizeText = text;
        }
    }
    if (auto q = node["quota"]) {
        std::string text = r.scalar(q, field("quota"));
        auto mechanism = parseQuotaMechanism(text);
        if (!mechanism)
            r.fail(q, field("quota"), quote(text) + " is not one of `loop`, `project`, `none`");
        c.quota = *mechanism;
    }
    if (c.quota == QuotaMechanism::None && c.defaultSize)
        r.fail(node["defaultSize"], field("defaultSize"),
               "a class with `quota: none` cannot limit sizes (use `loop` or `project`)");
    // Only a loop volume has a filesystem of ours to mount; the others live on the
    // operator's filesystem as it is mounted.
    if (c.quota != QuotaMechanism::Loop && !c.mountOptions.empty())
        r.fail(node["mountOptions"], field("mountOptions"),
               "only `quota: loop` volumes are mounted by mobileops; set the options where " +
                   c.directory + " is mounted");
    return c;
}

} // namespace

StorageClasses StorageClasses::parse(const Paths &paths, const std::string &text,
                                     const std::string &source) {
    Reader r(source);
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception &e) {
        throw sdk::Error(MO_E_INVALID,
                         source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    StorageClasses out(paths);
    out._file = source;
    if (doc.IsNull()) return out; // an empty file: the built-in classes
    if (!doc.IsMap()) r.fail(doc, "", "expected a mapping with `classes` (and `default`)");
    r.checkKeys(doc, "", {"apiVersion", "kind", "default", "classes"});
    if (auto v = doc["apiVersion"]; v && r.scalar(v, "field `apiVersion`") != "v1")
        r.fail(v, "field `apiVersion`", quote(v.Scalar()) + " is not supported (expected `v1`)");
    if (auto k = doc["kind"]; k && r.scalar(k, "field `kind`") != "StorageClasses")
        r.fail(k, "field `kind`", quote(k.Scalar()) + " is not `StorageClasses`");
    if (auto classes = doc["classes"]; classes && !classes.IsNull()) {
        if (!classes.IsSequence()) r.fail(classes, "field `classes`", "expected a list of classes");
        std::set<std::string> seen;
        for (const auto &node : classes) {
            StorageClass c = parseClass(r, node, paths);
            if (!seen.insert(c.name).second)
                r.fail(node["name"], "class " + quote(c.name), "defined twice");
            out.put(std::move(c));
        }
    }
    if (auto d = doc["default"]) {
        out._default = r.scalar(d, "field `default`");
        try {
            out.get(out._default);
        } catch (const sdk::Error &e) {
            r.fail(d, "field `default`", e.what());
        }
    }
    return out;
}

StorageClasses StorageClasses::load(const Paths &paths, const std::string &file, bool required) {
    std::ifstream in(file);
    if (!in) {
        int err = errno;
        if (err == ENOENT && !required) return StorageClasses(paths);
        throw common::sysError("storage class file " + quote(file) + " (storage.classes)", err);
    }
    std::stringstream text;
    text << in.rdbuf();
    return parse(paths, text.str(), file);
}

} // namespace mobileops::storage
