// The cgroup manager behind mo_cgroup_service: one container cgroup (`path`, relative to
// the configured parent) spread over every hierarchy we use, each controller handled by
// the backend of the hierarchy that owns it.
#pragma once

#include "Backend.h"
#include "CgroupFs.h"
#include "Errors.h"
#include "Layout.h"
#include "Resources.h"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace mobileops::cgroup {

struct Options {
    // Where container cgroups go. Absolute ("/", "/mobileops.slice"): from each
    // hierarchy's root. Relative ("mobileops-test-42"): below this process's own cgroup
    // in each hierarchy (tests, nested setups).
    std::string parent = "/";
    // Longest wait for processes to leave after SIGKILL, and for rmdir to stop failing
    // with EBUSY while the kernel finishes tearing exited tasks down.
    unsigned killTimeoutMs = 5000;
    unsigned destroyRetryMs = 5000; // v1 cpu cgroups can stay busy for a while after heavy load
};

class Cgroups {
public:
    Cgroups(Layout layout, CgroupFs &fs, Options options = {});

    const Layout &layout() const { return _layout; }
    const Options &options() const { return _options; }

    // Make the cgroup on every hierarchy we use (idempotent) and apply `s`. On failure
    // removes what it made. A field this host cannot apply is an error (MO_E_UNSUPPORTED)
    // unless s.ignoreUnsupported; then it is left out and listed in `skipped`.
    void create(const std::string &path, const Settings &s,
                std::vector<Unsupported> *skipped = nullptr);
    void attach(const std::string &path, pid_t pid);
    void update(const std::string &path, const Settings &s,
                std::vector<Unsupported> *skipped = nullptr);
    // Requested against applied, field by field: {layout, fields: [{field, requested,
    // applied, file, value, note}]}; `note` says why the two differ.
    nlohmann::json report(const std::string &path, const Settings &requested);
    // Where a new process can be placed at clone time (clone3 CLONE_INTO_CGROUP): the
    // cgroup's directory on the cgroup2 hierarchy and whether joining it alone puts the
    // process into every hierarchy we use (a pure v2 host).
    struct Placement {
        std::string unifiedDir;
        bool complete = false;
    };
    Placement placement(const std::string &path);
    // The fields of `s` this host cannot apply to `path`: controller missing; once the
    // cgroup exists, a file missing too.
    std::vector<Unsupported> unsupported(const std::string &path, const Settings &s);
    nlohmann::json stats(const std::string &path);
    void freeze(const std::string &path);
    void thaw(const std::string &path);
    bool frozen(const std::string &path);
    // Signal every process of the cgroup and its descendants. SIGKILL returns once the
    // cgroup is empty: cgroup.kill where the kernel has it, else freeze, signal, thaw.
    void kill(const std::string &path, int signal);
    // Sorted, without duplicates, over every hierarchy and child cgroup.
    std::vector<pid_t> pids(const std::string &path);
    // Remove the cgroup (child cgroups first) on every hierarchy. MO_E_STATE when
    // processes remain. Idempotent.
    void destroy(const std::string &path);
    bool exists(const std::string &path);

    // The directory of `path` on each hierarchy we use.
    std::vector<std::string> dirs(const std::string &path);
    // The directory of `path` on the hierarchy owning `controller`, or "".
    std::string dirFor(const std::string &path, const std::string &controller);
    // Which features this layout supports: "cgroup.v1", "cgroup.freeze", ...
    std::vector<std::string> features() const;
    // Can we make cgroups under the parent? (only looks: access(2) on existing directories)
    bool canCreate(std::string &why) const;

    // Throws MO_E_INVALID unless `path` is relative, non-empty, made of
    // [A-Za-z0-9_.:@-] components other than "." and "..".
    static void checkPath(const std::string &path);

private:
    struct Place {
        const Hierarchy *hierarchy;
        Backend *backend;
        std::string base; // the parent's directory on this hierarchy
        std::string dir;  // the cgroup's
    };
    std::vector<Place> places(const std::string &path);
    Place placeOf(const std::string &path, const Hierarchy *h);
    Backend *backendOf(const Hierarchy *h) const;
    std::string parentPath(const Hierarchy &h) const;
    // The backend owning `controller`, or MO_E_UNSUPPORTED naming `what`.
    Place owner(const std::string &path, const char *controller, const std::string &what);
    void apply(const std::string &path, const Settings &s);
    // `s` without what this host cannot apply, or MO_E_UNSUPPORTED naming the first.
    Settings settle(const std::string &path, const Settings &s, std::vector<Unsupported> *skipped);
    Place freezer(const std::string &path);
    void requireExists(const std::string &path);
    void collect(const std::string &dir, std::vector<pid_t> &out);
    int removeTree(const std::string &dir);
    void signalAll(const std::string &path, int signal);

    Layout _layout;
    CgroupFs &_fs;
    Options _options;
    std::vector<std::pair<const Hierarchy *, std::unique_ptr<Backend>>> _backends;
};

} // namespace mobileops::cgroup
