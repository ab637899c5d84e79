#include "Supervise.h"

#include <mobileops/common/Errors.h>

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

namespace mobileops::krun {

sigset_t forwardedSignals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM})
        sigaddset(&set, s);
    return set;
}

namespace {

// Write all of it; false once the reader is gone.
bool writeAll(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t w = ::write(fd, data, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        data += w;
        size -= static_cast<size_t>(w);
    }
    return true;
}

} // namespace

int superviseVm(QemuVm &vm, int outFd, int errFd, int signalFd) {
    pollfd fds[3] = {{vm.stdoutFd(), POLLIN, 0}, {vm.stderrFd(), POLLIN, 0}, {signalFd, POLLIN, 0}};
    int targets[2] = {outFd, errFd};
    char buf[65536];
    int open = 2;
    while (open > 0) {
        if (::poll(fds, signalFd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw common::sysError("vm: wait for output", errno);
        }
        if (signalFd >= 0 && (fds[2].revents & POLLIN)) {
            signalfd_siginfo info;
            if (::read(signalFd, &info, sizeof info) == static_cast<ssize_t>(sizeof info))
                vm.signal(static_cast<int>(info.ssi_signo));
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                fds[i].fd = -1;
                --open;
                continue;
            }
            if (targets[i] >= 0 && !writeAll(targets[i], buf, static_cast<size_t>(n)))
                targets[i] = -1;
        }
    }
    return vm.wait();
}

} // namespace mobileops::krun
