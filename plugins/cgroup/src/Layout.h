// Which cgroup hierarchies this host has and which controller lives on which: cgroup v2
// unified, v1 (one hierarchy per controller or a few co-mounted), or hybrid (v1
// controllers plus a cgroup2 mount owning the rest, often none). Detected from
// /proc/self/mountinfo and /proc/self/cgroup, like crun and youki.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mobileops::cgroup {

// The controllers mobileops uses. v1 names; on v2 "blkio" is "io" and cpuacct is part of cpu,
// and v2 has no "devices" (a BPF program on the cgroup instead).
inline constexpr const char *kUsedControllers[] = {"cpu",   "cpuacct", "cpuset",  "memory", "pids",
                                                   "blkio", "io",      "freezer", "devices"};

struct Hierarchy {
    int version = 1;                   // 1 or 2
    std::string mountpoint;            // absolute, with the layout's root prefix in front
    std::string mountRoot;             // the part of the hierarchy the mount shows ("/" normally)
    std::string ownPath;               // this process's cgroup in it, as /proc/self/cgroup says
    std::set<std::string> controllers; // v1: the mount's; v2: the root's cgroup.controllers

    bool has(const std::string &controller) const { return controllers.count(controller) > 0; }
    // The directory of absolute cgroup path `path` (relative to the hierarchy's root).
    std::string dirOf(const std::string &path) const;
};

enum class Mode { None, Legacy, Unified, Hybrid };

const char *modeName(Mode mode);

class Layout {
public:
    // Parses mountinfo and /proc/self/cgroup text. `root` is prepended to every mountpoint
    // (a fake cgroupfs tree in tests, "" for the host); v2 controllers are read from
    // root + mountpoint + "/cgroup.controllers".
    static Layout parse(const std::string &mountinfo, const std::string &selfCgroup,
                        const std::string &root = "");
    // The host's layout; with a non-empty `root`, reads root/proc/self/{mountinfo,cgroup}.
    static Layout detect(const std::string &root = "");

    Mode mode() const { return _mode; }
    const std::vector<Hierarchy> &hierarchies() const { return _hierarchies; }
    // The cgroup2 hierarchy, if mounted.
    const Hierarchy *unified() const;
    // The hierarchy owning `controller` (a v1 mount naming it, else v2 if it offers it;
    // "blkio"/"io" and "cpuacct"/"cpu" are matched across versions), or nullptr.
    const Hierarchy *owner(const std::string &controller) const;
    // Hierarchies mobileops creates cgroups on: every v1 one with a controller we use, and
    // the v2 one (it tracks processes, and gives cgroup.kill and cgroup.freeze).
    std::vector<const Hierarchy *> used() const;

    // The same layout without its cgroup2 hierarchy (tests of the v1-only paths on a
    // hybrid host).
    Layout withoutUnified() const;

    // {"mode": "hybrid", "hierarchies": [{"version", "mountpoint", "controllers"}...]}
    nlohmann::json describe() const;
    // One line: "hybrid: v1 cpu cpuacct ... at /sys/fs/cgroup, cgroup2 at ...".
    std::string summary() const;

private:
    void classify();

    Mode _mode = Mode::None;
    std::vector<Hierarchy> _hierarchies;
};

// "a/b" and "/a/b/" -> "/a/b"; "" and "/" -> "/".
std::string normalizePath(const std::string &path);
// Joins absolute cgroup path `base` with relative `rel`.
std::string joinPath(const std::string &base, const std::string &rel);

} // namespace mobileops::cgroup
