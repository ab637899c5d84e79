// The built-in init (--init): PID 1 of the container forks the real process, forwards
// every signal it receives to it, reaps every zombie, and exits with the process's
// status (128+N when it was killed by signal N: PID 1 cannot kill itself with it).
#pragma once

#include <sys/types.h>

namespace mobileops::nsruntime {

// Called in PID 1 with every signal blocked, after fork() returned `child`. Never returns.
[[noreturn]] void runInit(pid_t child);

} // namespace mobileops::nsruntime
