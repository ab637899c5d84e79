// The last steps of a container process, in the child: credentials, capabilities,
// rlimits, no_new_privs, cwd, signals, exec. A failure travels to the parent over a
// CLOEXEC pipe as one fixed-size report (errno-style code, exit status, message); EOF on
// that pipe means exec succeeded.
#pragma once

#include "Spec.h"
#include "Syscalls.h"

#include <cstdint>
#include <string>

namespace mobileops::nsruntime {

// Exit statuses of a failed start, as podman uses them.
enum : int { kExitSetupFailed = 125, kExitCannotExec = 126, kExitNotFound = 127 };

struct ChildReport {
    int32_t code = 0;       // -errno or MO_E_*
    int32_t exitStatus = 0; // what `run` exits with
    char message[1536] = {};
};
static_assert(sizeof(ChildReport) <= 4096, "a report must be written atomically (PIPE_BUF)");

// Write a report; async-signal-safe apart from the message formatting done by the caller.
void writeReport(int fd, int code, int exitStatus, const std::string &message) noexcept;
// Read a report: true when the child failed and `out` holds why, false on EOF.
bool readReport(int fd, ChildReport &out);

// The capabilities a container's root keeps (podman's default set).
uint64_t defaultCapabilities();

// Credentials and limits of `process`, in order: bounding set, groups, gid, uid,
// capabilities, rlimits, no_new_privs. Throws Error.
void applyProcessSettings(Syscalls &sys, const ProcessSpec &process);

// Search PATH of the process's env (like execvp, but with the container's PATH) and exec.
// Returns only on failure, with -errno, filling `what` with the name that failed.
int execSearch(Syscalls &sys, const ProcessSpec &process, std::string &what);

// Reset signal mask and dispositions, chdir to cwd, mark every fd CLOEXEC and exec.
// On failure writes a report to `reportFd` and exits 127/126/125. Never returns.
[[noreturn]] void execContainerProcess(Syscalls &sys, const ProcessSpec &process, int reportFd);

// Report the current exception on `reportFd` and _exit. For catch blocks in children.
[[noreturn]] void failChild(int reportFd) noexcept;

} // namespace mobileops::nsruntime
