// One backend per cgroup version (V1.cpp, V2.cpp), each working on the directories of one
// hierarchy. The manager (Cgroups.cpp) decides which hierarchy owns which controller and
// calls the backend of that hierarchy; a backend never looks at another hierarchy.
#pragma once

#include "CgroupFs.h"
#include "Layout.h"
#include "Resources.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::cgroup {

class Backend {
public:
    Backend(CgroupFs &fs, const Hierarchy &hierarchy) : _fs(fs), _h(hierarchy) {}
    virtual ~Backend() = default;

    const Hierarchy &hierarchy() const { return _h; }
    CgroupFs &fs() const { return _fs; }

    // Before `child` is made below `dir` (v2: enable our controllers in `dir`).
    virtual void beforeChild(const std::string &dir) = 0;
    // After `dir` was made by us below `parent` (v1 cpuset: copy cpus and mems).
    virtual void afterCreate(const std::string &parent, const std::string &dir) = 0;

    // Apply the settings of one controller; only called on the controller's owner.
    virtual void setCpu(const std::string &dir, const Settings &s) = 0;
    virtual void setMemory(const std::string &dir, const Settings &s) = 0;
    // pids.max: the same file on v1 and v2.
    void setPids(const std::string &dir, const Settings &s);
    // blkio (v1) / io (v2): weight and per-device throttles.
    virtual void setIo(const std::string &dir, const Settings &s) = 0;
    // Device access rules: v1 devices.deny/allow (only on the devices hierarchy), v2 a
    // BPF device program on the cgroup's directory.
    virtual void setDevices(const std::string &dir, const std::vector<DeviceRule> &rules) = 0;
    // Refuse settings this version has no file for, before anything is made or written.
    virtual void check(const Settings &) {}
    // The fields of `s` (of controllers this hierarchy owns) that `dir`, an existing
    // cgroup, has no file for, each with why.
    virtual std::vector<Unsupported> unsupported(const std::string &dir, const Settings &s) = 0;
    // What the kernel holds for each field of `s` this hierarchy owns: objects
    // {field, file, value (the file's text), applied (in the request's unit: millicores,
    // bytes, count; null for "no limit")}, appended to `out`.
    virtual void applied(const std::string &dir, const Settings &s, nlohmann::json &out) = 0;
    virtual void setCpuset(const std::string &parent, const std::string &dir,
                           const Settings &s) = 0;

    // Fill the stats object's "cpu", "memory", "pids", "io" members for what it owns.
    virtual void cpuStats(const std::string &dir, nlohmann::json &out) = 0;
    virtual void memoryStats(const std::string &dir, nlohmann::json &out) = 0;
    // The pids controller has the same files on v1 and v2.
    void pidsStats(const std::string &dir, nlohmann::json &out);
    virtual void ioStats(const std::string &dir, nlohmann::json &out) = 0;

    // Freezer: v1 freezer.state, v2 cgroup.freeze. Both wait until the kernel reports
    // every process frozen (bounded; ETIMEDOUT after thawing back).
    virtual bool canFreeze(const std::string &dir) = 0;
    virtual bool frozen(const std::string &dir) = 0;
    virtual void freeze(const std::string &dir) = 0;
    virtual void thaw(const std::string &dir) = 0;

    // v2 cgroup.kill (Linux 5.14): SIGKILL every process of the subtree at once.
    virtual bool canKillAll(const std::string &) { return false; }
    virtual void killAll(const std::string &) {}

    // --- shared helpers ---
    // The I/O weight file of `dir`: the plain one or the bfq scheduler's, nullptr for none.
    const char *weightFile(const std::string &dir) const;
    // Why there is none: "neither `blkio.weight` nor `blkio.bfq.weight` exists (...)".
    std::string noWeightFile() const;
    // One entry of applied(): `value` the file's text (null when unreadable).
    nlohmann::json appliedEntry(const std::string &field, const std::string &dir,
                                const std::string &file, const nlohmann::json &applied);
    // A weight file: "100", or "default 100" followed by per-device lines.
    std::optional<std::uint64_t> readWeight(const std::string &dir, const std::string &file);
    // Throws "write `file` = `value`: strerror" with -errno.
    void write(const std::string &dir, const std::string &file, const std::string &value);
    // Trimmed contents, or nullopt when the file is missing or unreadable.
    std::optional<std::string> read(const std::string &dir, const std::string &file);
    // An integer file; nullopt for "max", a v1 "no limit" value, or a missing file.
    std::optional<std::uint64_t> readNumber(const std::string &dir, const std::string &file);
    // "key value" lines (cpu.stat, memory.stat, memory.events) -> value of `key`.
    std::optional<std::uint64_t> readKey(const std::string &dir, const std::string &file,
                                         const std::string &key);

protected:
    // This version's weight files and what they need.
    struct WeightFiles {
        const char *plain, *bfq, *needs;
    };
    virtual WeightFiles weightFiles() const = 0;

    CgroupFs &_fs;
    const Hierarchy &_h;
};

std::unique_ptr<Backend> makeV1Backend(CgroupFs &fs, const Hierarchy &h);
std::unique_ptr<Backend> makeV2Backend(CgroupFs &fs, const Hierarchy &h);

// v1 writes "no limit" as a huge page-rounded number; anything at or above this reads as
// unlimited.
inline constexpr std::uint64_t kV1Unlimited = 1ULL << 62;
// How long freezing may take before we give up and thaw again.
inline constexpr unsigned kFreezeTimeoutMs = 5000;

} // namespace mobileops::cgroup
