// A fake cgroupfs for unit tests: a plain directory tree under a temporary root with
// fake /proc/self/{mountinfo,cgroup}, whose mkdir creates the interface files the kernel
// would (per hierarchy version and controller), whose writes are recorded and act like
// the kernel for the files that matter (freezer, cgroup.kill, subtree_control), and whose
// kill() never signals anything.
#pragma once

#include "CgroupFs.h"
#include "Layout.h"

#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mobileops::cgroup::testing {

struct FakeMount {
    int version;            // 1 or 2
    std::string mountpoint; // e.g. "/sys/fs/cgroup/memory"
    std::set<std::string> controllers;
    std::string own = "/"; // this process's cgroup in it
};

class FakeCgroupFs : public RealCgroupFs {
public:
    // Makes a temporary root with the mounts' directories and root files.
    explicit FakeCgroupFs(std::vector<FakeMount> mounts);
    ~FakeCgroupFs() override;

    const std::string &root() const { return _root; }
    Layout layout() const { return Layout::detect(_root); }

    int mkdir(const std::string &path) override;
    int rmdir(const std::string &path) override;
    int write(const std::string &path, const std::string &value) override;
    int kill(pid_t pid, int signal) override;
    void sleepMs(unsigned) override {}
    // Records the rules instead of loading a program.
    int setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                         std::string &detail) override;

    // Contents of a file (trimmed), "" when missing.
    std::string get(const std::string &path) const;
    void put(const std::string &path, const std::string &value) const;
    // Make writes to files named `file` fail with -err.
    void failWrites(const std::string &file, int err) { _fail[file] = err; }

    std::vector<std::pair<std::string, std::string>> writes; // path, value
    std::vector<std::pair<pid_t, int>> signals;
    std::map<std::string, std::vector<DeviceRule>> devicePrograms; // cgroup2 dir -> rules
    std::set<pid_t> killable; // pids a SIGKILL removes from every cgroup.procs
    // Called after each successful write, as the kernel or another process would react.
    std::function<void(const std::string &path, const std::string &value)> afterWrite;

private:
    const FakeMount *mountOf(const std::string &path) const;
    void removePid(pid_t pid);
    int apply(const std::string &path, const std::string &value);

    std::string _root;
    std::vector<FakeMount> _mounts;
    std::map<std::string, int> _fail;
};

// The mounts of this machine: v1 controllers plus a cgroup2 mount owning hugetlb.
std::vector<FakeMount> hybridMounts();
// A pure cgroup2 host with the usual controllers.
std::vector<FakeMount> unifiedMounts();
// A v1 host with cpu and cpuacct co-mounted.
std::vector<FakeMount> legacyMounts();

} // namespace mobileops::cgroup::testing
