// What /proc tells about processes: start times (so a reused pid is not mistaken for the
// container), namespaces, and the processes inside a PID namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::nsruntime {

// Field 22 of /proc/<pid>/stat (clock ticks since boot); nullopt when the pid is gone.
std::optional<uint64_t> processStartTime(pid_t pid);
// True when `pid` runs and started at `startTime` (0: any start time).
bool processAlive(pid_t pid, uint64_t startTime);
// Inode of /proc/<pid>/ns/<ns>; 0 when unavailable.
uint64_t namespaceInode(pid_t pid, const char *ns);
// Host pids of every process whose PID namespace is `pidnsInode`.
std::vector<pid_t> processesInPidNamespace(uint64_t pidnsInode);

struct ProcessInfo {
    pid_t pid = 0, ppid = 0;
    uid_t uid = 0;
    char state = '?';
    std::string command;
};
std::optional<ProcessInfo> processInfo(pid_t pid);

} // namespace mobileops::nsruntime
