// The pieces of runc's process model (docs/runtime-spec.md, `oci`) that are not the
// launch itself: the start gate (exec.fifo), the console socket and the pid file.
#pragma once

#include <sys/types.h>

#include <string>

namespace mobileops::nsruntime {

// Make the FIFO `path` (mode 0622, so a container user can open it for writing through
// its fd) and return an O_PATH fd of it for the container's init (LaunchOptions::gateFd).
int makeGate(const std::string &path);

// `start`: open the gate for reading and wait until the init whose pidfd is `pidfd` has
// passed it (its byte arrived), then remove the FIFO. Throws MO_E_STATE when the init
// exited first or the gate is gone (started already).
void openGate(const std::string &path, int pidfd, const std::string &what);

// runc's console protocol (utils.SendFd): connect to the unix socket `socketPath` and
// send `fd` with SCM_RIGHTS in one sendmsg whose payload is `name` (the pty's path).
void sendConsole(const std::string &socketPath, int fd, const std::string &name);

// Write `pid` to `path` atomically: a temporary file in the same directory, renamed.
void writePidFile(const std::string &path, pid_t pid);

} // namespace mobileops::nsruntime
