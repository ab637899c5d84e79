#include "Exec.h"

#include "Errors.h"
#include "Monitor.h"
#include "ProcFs.h"

#include <fcntl.h>
#include <poll.h>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace mobileops::nsruntime {

namespace {

std::atomic<pid_t> gForwardTo{0};
const int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
struct sigaction gSaved[sizeof kForwarded / sizeof kForwarded[0]];

void forward(int sig) {
    pid_t pid = gForwardTo.load();
    if (pid > 0) ::kill(pid, sig);
}

} // namespace

SignalForwarder::SignalForwarder(pid_t pid) {
    gForwardTo = pid;
    struct sigaction sa = {};
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(kForwarded); ++i) ::sigaction(kForwarded[i], &sa, &gSaved[i]);
}

SignalForwarder::~SignalForwarder() {
    for (size_t i = 0; i < std::size(kForwarded); ++i)
        ::sigaction(kForwarded[i], &gSaved[i], nullptr);
    gForwardTo = 0;
}

ChildIo childIoFor(const Stdio &stdio, bool terminal, Pty &pty) {
    ChildIo io;
    if (terminal || stdio.tty) {
        if (pty.master() < 0) pty = Pty::open(firstTerminal({stdio.in, stdio.out, stdio.err}));
        io.tty = pty.slave();
        io.ttyPath = pty.slavePath();
        return io;
    }
    io.in = stdio.interactive ? stdio.in : -1;
    io.out = stdio.out;
    io.err = stdio.err;
    return io;
}

OutputPipes::~OutputPipes() {
    for (int fd : {_out[0], _out[1], _err[0], _err[1]})
        if (fd >= 0) ::close(fd);
}

void OutputPipes::open(ChildIo &io) {
    if (::pipe2(_out, O_CLOEXEC) < 0) throw sysError("pipe", errno);
    if (::pipe2(_err, O_CLOEXEC) < 0) throw sysError("pipe", errno);
    io.out = _out[1];
    io.err = _err[1];
}

void OutputPipes::closeWriteEnds() {
    for (int *fd : {&_out[1], &_err[1]})
        if (*fd >= 0) {
            ::close(*fd);
            *fd = -1;
        }
}

namespace {

void writeAll(int &fd, const char *p, size_t n) {
    while (fd >= 0 && n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fd = -1; // the caller's output is gone (EPIPE): keep logging
            return;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

} // namespace

void OutputPipes::pump(const Stdio &stdio, int pidfd) {
    // SIGPIPE is ignored while pumping: a closed terminal or pipe must not kill us with
    // the container still writing.
    struct sigaction ignore = {}, old;
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, &old);
    int targets[3] = {-1, stdio.out, stdio.err >= 0 ? stdio.err : stdio.out};
    struct pollfd fds[3] = {{_out[0], POLLIN, 0}, {_err[0], POLLIN, 0}, {pidfd, POLLIN, 0}};
    int open = 2;
    bool exited = false, quiet = true;
    static char buf[65536];
    while (open > 0) {
        int timeout = exited ? 100 : (quiet ? -1 : 250);
        int n = ::poll(fds, 3, timeout);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        if (n == 0) {
            if (stdio.log) stdio.log->flush();
            quiet = true;
            if (exited) break; // what stays behind holds the pipes; its output is not ours
            continue;
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
            if (r > 0) {
                if (stdio.log) stdio.log->write(i + 1, buf, static_cast<size_t>(r));
                writeAll(targets[i + 1], buf, static_cast<size_t>(r));
                quiet = false;
            } else if (r == 0 || errno != EINTR) {
                fds[i].fd = -1;
                --open;
            }
        }
        if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) {
            fds[2].fd = -1;
            exited = true;
        }
    }
    if (stdio.log) stdio.log->flush();
    ::sigaction(SIGPIPE, &old, nullptr);
}

int superviseForeground(ChildProcess &child, const Stdio &stdio, Pty *pty, int *signal,
                        OutputPipes *pipes) {
    SignalForwarder forwarder(child.pid());
    if (pty) {
        int in = stdio.interactive ? stdio.in : -1;
        TerminalModes modes(in, stdio.out);
        std::function<void(const char *, size_t)> copy;
        if (stdio.log) copy = [&](const char *p, size_t n) { stdio.log->write(1, p, n); };
        pumpPty(pty->master(), in, stdio.out, child.pidfd(),
                firstTerminal({stdio.in, stdio.out, stdio.err}), copy);
        if (stdio.log) stdio.log->flush();
    } else if (pipes && pipes->active()) {
        pipes->pump(stdio, child.pidfd());
    }
    return child.wait(signal);
}

int execInContainer(Syscalls &sys, pid_t pid, uint64_t startTime, const ProcessSpec &process,
                    const Stdio &stdio, const std::function<void(pid_t)> &afterClone) {
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) throw Error(MO_E_STATE, "the container is not running");
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{pidfd};
    // The pidfd pins the process: checking the start time after opening it rules out a
    // reused pid for the rest of the exec.
    if (!processAlive(pid, startTime)) throw Error(MO_E_STATE, "the container is not running");
    const bool terminal = process.terminal || stdio.tty;
    Pty pty;
    if (terminal)
        pty = Pty::openInContainer(pid, pidfd, process.user.uid,
                                   firstTerminal({stdio.in, stdio.out, stdio.err}));
    ChildIo io = childIoFor(stdio, terminal, pty);
    ChildProcess child = launchInside(sys, pid, pidfd, process, io, afterClone);
    pty.closeSlave();
    return superviseForeground(child, stdio, terminal ? &pty : nullptr, nullptr);
}

} // namespace mobileops::nsruntime
