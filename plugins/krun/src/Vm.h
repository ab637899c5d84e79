// What a micro-VM runs, as every backend (qemu, libkrun) takes it: the container's root,
// the program and its environment, volumes, and the VM's size. Filled by the plugin from
// the runtime spec; backends turn it into their own form (the qemu backend: a job file on
// a share, see guest/protocol.h; libkrun: krun_set_* calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
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

// The program's capability sets, bit N for capability N (linux/capability.h).
struct VmCapabilities {
    uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
    bool operator==(const VmCapabilities &) const = default;
};

// A seccomp filter for the program: classic BPF (struct sock_filter, 8 bytes each)
// compiled on the host for its own architecture, which is the guest's.
struct VmSeccomp {
    std::string program; // the instructions' bytes
    unsigned flags = 0;  // SECCOMP_FILTER_FLAG_*
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
    unsigned umask = 022;
    // Unset: the program keeps root's full set (the guest is its own machine).
    std::optional<VmCapabilities> capabilities;
    bool noNewPrivileges = false;
    std::optional<VmSeccomp> seccomp;
    std::vector<std::pair<std::string, std::string>> sysctls; // "net.ipv4.ip_forward", "1"
    std::string hostname;
    std::vector<VmMount> mounts;
    unsigned vcpus = 2;
    uint64_t memory = 512ull << 20;     // bytes
    std::chrono::seconds timeout{3600}; // hard limit on the VM's life; then it is killed
    std::string workDir;                // a fresh host directory the backend may use (job
                                        // share, console log, sockets); removed by the caller
};

} // namespace mobileops::krun
