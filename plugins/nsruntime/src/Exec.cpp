#include "Exec.h"

#include "Errors.h"
#include "ProcFs.h"

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

int superviseForeground(ChildProcess &child, const Stdio &stdio, Pty *pty, int *signal) {
    SignalForwarder forwarder(child.pid());
    if (pty) {
        int in = stdio.interactive ? stdio.in : -1;
        TerminalModes modes(in, stdio.out);
        pumpPty(pty->master(), in, stdio.out, child.pidfd(),
                firstTerminal({stdio.in, stdio.out, stdio.err}));
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
