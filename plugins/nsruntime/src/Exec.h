// Foreground processes (run, exec): the caller's stdio connected directly or through a
// pty, signals the caller receives forwarded to the process, the exit status returned.
#pragma once

#include "Launcher.h"
#include "Pty.h"
#include "Spec.h"
#include "Syscalls.h"

#include <signal.h>
#include <sys/types.h>

#include <cstdint>

namespace mobileops::nsruntime {

// The caller's streams (mo_stdio): fds may be -1 (nothing), `tty` asks for a pty,
// `interactive` keeps stdin connected.
// `log`, when set (run, not exec), also gets everything the process writes: its stdout
// and stderr then go through pipes this process copies from, or the pty's output is
// copied as it is pumped.
class LogSink;
struct Stdio {
    int in = -1, out = -1, err = -1;
    bool tty = false, interactive = false;
    LogSink *log = nullptr;
};

// The pipes a logged foreground process writes to instead of the caller's fds.
class OutputPipes {
public:
    OutputPipes() = default;
    ~OutputPipes();
    OutputPipes(const OutputPipes &) = delete;
    OutputPipes &operator=(const OutputPipes &) = delete;
    // Puts the pipes' write ends in io.out and io.err.
    void open(ChildIo &io);
    void closeWriteEnds();
    bool active() const { return _out[0] >= 0; }
    // Copy both pipes to stdio.out/err and stdio.log until they close, or until the
    // process behind pidfd exited and no more output came for a moment (processes it
    // left behind may hold the pipes).
    void pump(const Stdio &stdio, int pidfd);

private:
    int _out[2] = {-1, -1}, _err[2] = {-1, -1};
};

// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 received by this process to
// `pid` while alive; restores the previous handlers afterwards. One at a time.
class SignalForwarder {
public:
    explicit SignalForwarder(pid_t pid);
    ~SignalForwarder();
    SignalForwarder(const SignalForwarder &) = delete;
    SignalForwarder &operator=(const SignalForwarder &) = delete;
};

// Run the container in the foreground: `beforeWait` is called with the running child
// (to record it) before waiting. Returns the exit status (128+N for signal N).
template <typename Fn>
int runForeground(Syscalls &sys, const ContainerSpec &spec, const Stdio &stdio, Fn &&beforeWait,
                  int *signal = nullptr, LaunchOptions options = {});

// The non-template core of runForeground and execInContainer. childIoFor opens a host
// pty unless `pty` is open already.
ChildIo childIoFor(const Stdio &stdio, bool terminal, Pty &pty);
int superviseForeground(ChildProcess &child, const Stdio &stdio, Pty *pty, int *signal,
                        OutputPipes *pipes = nullptr);

// Run `process` inside the container whose init is `pid` (started at `startTime`).
// `afterClone` as for launchInside (the cgroup attach).
int execInContainer(Syscalls &sys, pid_t pid, uint64_t startTime, const ProcessSpec &process,
                    const Stdio &stdio, const std::function<void(pid_t)> &afterClone = {});

template <typename Fn>
int runForeground(Syscalls &sys, const ContainerSpec &spec, const Stdio &stdio, Fn &&beforeWait,
                  int *signal, LaunchOptions options) {
    Pty pty;
    const bool terminal = spec.process.terminal || stdio.tty;
    ChildIo io;
    if (terminal) {
        io.ownTerminal = &pty; // the container's own, from its devpts
        struct winsize ws;
        if (int from = firstTerminal({stdio.in, stdio.out, stdio.err});
            from >= 0 && ::ioctl(from, TIOCGWINSZ, &ws) == 0)
            io.ttySize = ws;
    } else
        io = childIoFor(stdio, false, pty);
    OutputPipes pipes;
    if (stdio.log && !terminal) pipes.open(io);
    options.dieWithParent = true;
    ChildProcess child = launch(sys, spec, io, options);
    pty.closeSlave();
    pipes.closeWriteEnds();
    try {
        beforeWait(child);
    } catch (...) {
        child.kill(SIGKILL);
        child.wait();
        throw;
    }
    return superviseForeground(child, stdio, terminal ? &pty : nullptr, signal, &pipes);
}

} // namespace mobileops::nsruntime
