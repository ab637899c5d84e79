#include "Layout.h"

#include <mobileops/common/Mounts.h>

#include "CgroupFs.h"
#include "Errors.h"

#include <fstream>
#include <map>
#include <sstream>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

std::vector<std::string> split(const std::string &text, char sep) {
    std::vector<std::string> out;
    std::string item;
    std::istringstream in(text);
    while (std::getline(in, item, sep)) out.push_back(item);
    return out;
}

std::string readText(const std::string &path) {
    std::ifstream in(path);
    if (!in) return {};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// v1 and v2 names for one controller.
std::string alias(const std::string &controller) {
    if (controller == "blkio") return "io";
    if (controller == "io") return "blkio";
    return {};
}

} // namespace

std::string normalizePath(const std::string &path) {
    std::string out;
    for (const std::string &part : split(path, '/'))
        if (!part.empty() && part != ".") out += "/" + part;
    return out.empty() ? "/" : out;
}

std::string joinPath(const std::string &base, const std::string &rel) {
    return normalizePath(base + "/" + rel);
}

std::string Hierarchy::dirOf(const std::string &path) const {
    std::string p = normalizePath(path);
    std::string root = normalizePath(mountRoot);
    if (root != "/") {
        // Only the part below the mount's root is visible (a bind mount, a cgroup
        // namespace): strip it; a path outside it is shown from the mount's top.
        if (p == root)
            p = "/";
        else if (p.compare(0, root.size() + 1, root + "/") == 0)
            p = p.substr(root.size());
    }
    return p == "/" ? mountpoint : mountpoint + p;
}

const char *modeName(Mode mode) {
    switch (mode) {
    case Mode::Legacy:
        return "v1";
    case Mode::Unified:
        return "v2";
    case Mode::Hybrid:
        return "hybrid";
    case Mode::None:
        break;
    }
    return "none";
}

Layout Layout::parse(const std::string &mountinfo, const std::string &selfCgroup,
                     const std::string &root) {
    // /proc/self/cgroup: "ID:controllers:path"; v2 is "0::path".
    std::map<std::string, std::string> own; // controller list ("" for v2) -> path
    for (const std::string &line : split(selfCgroup, '\n')) {
        auto a = line.find(':');
        auto b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        own[line.substr(a + 1, b - a - 1)] = line.substr(b + 1);
    }

    Layout layout;
    std::set<std::string> seen; // v1 controller sets and "cgroup2", first mount wins
    for (const std::string &line : split(mountinfo, '\n')) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        std::vector<std::string> pre = split(line.substr(0, dash), ' ');
        std::vector<std::string> post = split(line.substr(dash + 3), ' ');
        if (pre.size() < 5 || post.size() < 3) continue;
        const std::string &fstype = post[0];
        if (fstype != "cgroup" && fstype != "cgroup2") continue;
        Hierarchy h;
        h.version = fstype == "cgroup2" ? 2 : 1;
        h.mountRoot = common::unescapeMountinfo(pre[3]);
        h.mountpoint = root + common::unescapeMountinfo(pre[4]);
        std::string key = "cgroup2";
        if (h.version == 1) {
            std::vector<std::string> names;
            for (const std::string &opt : split(post[2], ',')) {
                if (opt == "rw" || opt == "ro" || opt.find('=') != std::string::npos) {
                    if (opt.compare(0, 5, "name=") == 0) names.push_back(opt);
                    continue;
                }
                if (opt == "noprefix" || opt == "clone_children" || opt == "xattr" ||
                    opt == "cpuset_v2_mode" || opt == "favordynmods")
                    continue;
                h.controllers.insert(opt);
                names.push_back(opt);
            }
            key.clear();
            for (const std::string &n : names) key += (key.empty() ? "" : ",") + n;
            // /proc/self/cgroup names the hierarchy by its controllers in mount order.
            for (const auto &[list, path] : own) {
                if (list.empty()) continue;
                std::set<std::string> listed;
                for (const std::string &c : split(list, ',')) listed.insert(c);
                std::set<std::string> mine(names.begin(), names.end());
                if (listed == mine) h.ownPath = path;
            }
        } else {
            for (const std::string &c :
                 split(readText(h.mountpoint + "/cgroup.controllers"), ' ')) {
                std::string name = c;
                while (!name.empty() && (name.back() == '\n' || name.back() == ' '))
                    name.pop_back();
                if (!name.empty()) h.controllers.insert(name);
            }
            auto it = own.find("");
            if (it != own.end()) h.ownPath = it->second;
        }
        if (h.ownPath.empty()) h.ownPath = "/";
        if (!seen.insert(key).second) continue;
        layout._hierarchies.push_back(std::move(h));
    }
    layout.classify();
    return layout;
}

Layout Layout::detect(const std::string &root) {
    return parse(readText(root + "/proc/self/mountinfo"), readText(root + "/proc/self/cgroup"),
                 root);
}

void Layout::classify() {
    bool v1 = false, v2 = false;
    for (const Hierarchy &h : _hierarchies) {
        if (h.version == 2) v2 = true;
        if (h.version == 1 && !h.controllers.empty()) v1 = true;
    }
    _mode = v1 && v2 ? Mode::Hybrid : v1 ? Mode::Legacy : v2 ? Mode::Unified : Mode::None;
}

const Hierarchy *Layout::unified() const {
    for (const Hierarchy &h : _hierarchies)
        if (h.version == 2) return &h;
    return nullptr;
}

const Hierarchy *Layout::owner(const std::string &controller) const {
    std::string other = alias(controller);
    for (const Hierarchy &h : _hierarchies)
        if (h.version == 1 && (h.has(controller) || (!other.empty() && h.has(other)))) return &h;
    if (const Hierarchy *u = unified()) {
        // cgroup2's cpu controller carries the usage counters cpuacct had.
        std::string v2name = controller == "cpuacct" ? "cpu"
                             : controller == "blkio" ? "io"
                                                     : controller;
        if (u->has(v2name)) return u;
    }
    return nullptr;
}

std::vector<const Hierarchy *> Layout::used() const {
    std::vector<const Hierarchy *> out;
    for (const Hierarchy &h : _hierarchies) {
        bool use = h.version == 2;
        for (const char *c : kUsedControllers) use = use || (h.version == 1 && h.has(c));
        if (use) out.push_back(&h);
    }
    return out;
}

Layout Layout::withoutUnified() const {
    Layout out;
    for (const Hierarchy &h : _hierarchies)
        if (h.version == 1) out._hierarchies.push_back(h);
    out.classify();
    return out;
}

json Layout::describe() const {
    json out = json::object();
    out["mode"] = modeName(_mode);
    json list = json::array();
    for (const Hierarchy &h : _hierarchies) {
        json j = {{"version", h.version},
                  {"mountpoint", h.mountpoint},
                  {"controllers",
                   json(std::vector<std::string>(h.controllers.begin(), h.controllers.end()))}};
        list.push_back(j);
    }
    out["hierarchies"] = list;
    return out;
}

std::string Layout::summary() const {
    std::string v1, v2;
    std::string v1Base;
    for (const Hierarchy &h : _hierarchies) {
        if (h.version == 2) {
            v2 = "cgroup2 at " + h.mountpoint;
            v2 += h.controllers.empty() ? " (no controllers)" : " (";
            if (!h.controllers.empty()) {
                std::string list;
                for (const std::string &c : h.controllers) list += (list.empty() ? "" : " ") + c;
                v2 += list + ")";
            }
        } else if (!h.controllers.empty()) {
            for (const std::string &c : h.controllers) v1 += " " + c;
            auto slash = h.mountpoint.rfind('/');
            if (v1Base.empty() && slash != std::string::npos)
                v1Base = h.mountpoint.substr(0, slash);
        }
    }
    std::string out = modeName(_mode);
    if (_mode == Mode::None) return "no cgroup hierarchy is mounted";
    out += ":";
    if (!v1.empty()) out += " v1" + v1 + " under " + (v1Base.empty() ? "/" : v1Base);
    if (!v1.empty() && !v2.empty()) out += ",";
    if (!v2.empty()) out += " " + v2;
    return out;
}

} // namespace mobileops::cgroup
