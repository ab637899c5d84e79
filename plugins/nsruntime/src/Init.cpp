#include "Init.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace mobileops::nsruntime {

[[noreturn]] void runInit(pid_t child) {
    sigset_t all;
    sigfillset(&all);
    for (;;) {
        siginfo_t info;
        int sig = ::sigwaitinfo(&all, &info);
        if (sig < 0) {
            if (errno == EINTR) continue;
            ::_exit(125);
        }
        if (sig != SIGCHLD) {
            ::kill(child, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            if (pid != child) continue;
            // The kernel kills what is left of the namespace when PID 1 exits.
            ::_exit(WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
        }
    }
}

} // namespace mobileops::nsruntime
