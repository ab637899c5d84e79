// The last steps of a container process, in the child: credentials, capabilities,
// rlimits, no_new_privs, cwd, signals, exec. A failure travels to the parent over a
// CLOEXEC pipe as one fixed-size report (errno-style code, exit status, message); EOF on
// that pipe means exec succeeded.
#pragma once

#include "Capabilities.h"
#include "Spec.h"
#include "Syscalls.h"

#include <cstddef>
#include <cstdint>
#include <functional>
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

// Read a report: true when the child failed and `out` holds why, false on EOF. A
// message ending in ": " (the container entry's) gets strerror(-code) appended.
bool readReport(int fd, ChildReport &out);

// Credentials and limits of `process`, in order: not dumpable, the seccomp filter when
// no_new_privs is off (it must go in while CAP_SYS_ADMIN is held), bounding set, groups,
// gid, uid, capabilities (root: the bounding set; another user: `security.added`, also
// as inheritable and ambient set), rlimits, no_new_privs. Throws Error.
void applyProcessSettings(Syscalls &sys, const ProcessSpec &process);

// The container entry (src/entry/Entry.c), embedded at build time; empty on
// architectures it does not support, where the command is exec'd directly.
extern const unsigned char kEntryBinary[];
extern const size_t kEntryBinarySize;

// A sealed memfd (no write, shrink, grow or new seals) holding the container entry,
// created once per process and inherited by forks. -errno on failure.
int entryFd() noexcept;

// The command of `process` exists and may be executed: an absolute or relative path, or
// a name found in the PATH of its env. With `rootFd` the paths are resolved inside that
// root (openat2 RESOLVE_IN_ROOT; a relative command from the process's cwd); a path for
// which `unknowable` says true counts as found (it lies where a mount will be). Throws
// Error(-errno) naming the command and the PATH searched.
void checkCommand(const ProcessSpec &process, int rootFd = -1,
                  const std::function<bool(const std::string &)> &unknowable = nullptr);

// Search PATH of the process's env (like execvp, but with the container's PATH) and exec.
// Returns only on failure, with -errno, filling `what` with the name that failed.
int execSearch(Syscalls &sys, const ProcessSpec &process, std::string &what);

// Reset signal mask and dispositions, mark every fd but stdio CLOEXEC, chdir to cwd
// and refuse it outside the root (CVE-2024-21626), load the seccomp filter when
// no_new_privs is on, then exec the command through the container entry (CVE-2019-5736).
// On failure writes a report to `reportFd` and exits 127/126/125. Never returns.
[[noreturn]] void execContainerProcess(Syscalls &sys, const ProcessSpec &process, int reportFd);

// Report the current exception on `reportFd` and _exit. For catch blocks in children.
[[noreturn]] void failChild(int reportFd) noexcept;

} // namespace mobileops::nsruntime
