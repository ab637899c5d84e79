// What a micro-VM runs, as every backend (qemu, libkrun) takes it: the container's root,
// the program and its environment, volumes, and the VM's size. Filled by the plugin from
// the runtime spec; backends turn it into their own form (the qemu backend: a job file on
// a share, see guest/protocol.h; libkrun: krun_set_* calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::krun {

struct VmMount {
    std::string source; // host directory
    std::string target; // absolute path in the guest
    bool readOnly = false;
};

struct VmRlimit {
    std::string name;  // "nofile", "nproc", ... (RLIMIT_ without the prefix, lower case)
    int64_t soft = -1; // -1: unlimited
    int64_t hard = -1;
};

struct VmConfig {
    std::string rootfs; // host directory that becomes the guest's root
    bool rootReadOnly = false;
    std::vector<std::string> args; // argv, at least one
    std::vector<std::string> env;  // "NAME=value"
    std::string cwd = "/";
    uint32_t uid = 0, gid = 0;
    std::vector<uint32_t> groups;
    std::vector<VmRlimit> rlimits;
    std::string hostname;
    std::vector<VmMount> mounts;
    unsigned vcpus = 2;
    uint64_t memory = 512ull << 20;     // bytes
    std::chrono::seconds timeout{3600}; // hard limit on the VM's life; then it is killed
    std::string workDir;                // a fresh host directory the backend may use (job
                                        // share, console log, sockets); removed by the caller
};

} // namespace mobileops::krun
