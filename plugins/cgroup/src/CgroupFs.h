// Every file-system operation and signal the cgroup engine makes goes through this
// interface, so unit tests can run the backends on a fake cgroupfs tree (a plain
// directory whose mkdir also creates the interface files, as the kernel would) and record
// what was written. Functions return 0 on success and -errno on failure; they never throw.
#pragma once

#include "Devices.h"

#include <sys/types.h>

#include <string>
#include <vector>

namespace mobileops::cgroup {

class CgroupFs {
public:
    virtual ~CgroupFs() = default;

    virtual int mkdir(const std::string &path) = 0;
    virtual int rmdir(const std::string &path) = 0;
    // Write `value` to an existing file in one write(2), as cgroupfs expects.
    virtual int write(const std::string &path, const std::string &value) = 0;
    virtual int read(const std::string &path, std::string &out) = 0;
    virtual bool exists(const std::string &path) = 0;
    // Names of the subdirectories of `dir` (child cgroups).
    virtual int subdirs(const std::string &dir, std::vector<std::string> &out) = 0;
    virtual int kill(pid_t pid, int signal) = 0;
    virtual void sleepMs(unsigned ms) = 0;
    // cgroup2: replace the device program of the cgroup directory `dir` with one for
    // `rules` (DeviceBpf.h); `detail` names the failed step and carries the verifier's log.
    virtual int setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                                 std::string &detail) = 0;
};

// The real thing: system calls on the paths as given.
class RealCgroupFs : public CgroupFs {
public:
    int mkdir(const std::string &path) override;
    int rmdir(const std::string &path) override;
    int write(const std::string &path, const std::string &value) override;
    int read(const std::string &path, std::string &out) override;
    bool exists(const std::string &path) override;
    int subdirs(const std::string &dir, std::vector<std::string> &out) override;
    int kill(pid_t pid, int signal) override;
    void sleepMs(unsigned ms) override;
    int setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                         std::string &detail) override;
};

// The process-wide real instance.
CgroupFs &realFs();

} // namespace mobileops::cgroup
