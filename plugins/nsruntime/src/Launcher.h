// Starting a container process: clone3 into new namespaces, write the user namespace
// maps from the parent, let the child build its root and exec. `launch` returns once the
// exec succeeded (EOF on the report pipe) or throws LaunchError with the child's reason.
#pragma once

#include "Errors.h"
#include "Pty.h"
#include "Spec.h"
#include "Syscalls.h"

#include <nlohmann/json.hpp>

#include <sys/ioctl.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace mobileops::nsruntime {

// A failed start: the child's message, and the status `run` should exit with (127 for a
// missing command, 126 when it cannot be executed, 125 for anything else).
class LaunchError : public Error {
public:
    LaunchError(int code, const std::string &message, int exitStatus)
        : Error(code, message), _exitStatus(exitStatus) {}
    int exitStatus() const { return _exitStatus; }

private:
    int _exitStatus;
};

// The child's standard streams: fds of the caller, -1 for /dev/null. With a terminal,
// `tty` is the pty slave and the others are ignored.
struct ChildIo {
    int in = -1, out = -1, err = -1;
    int tty = -1;
    std::string ttyPath; // bound on /dev/console
    // launch only: give the container a terminal of its own, as runc does. The child
    // opens a pty from the container's devpts once it is mounted (so `tty` inside names
    // /dev/pts/0), binds the slave on /dev/console, makes it its stdio and controlling
    // terminal, and sends the master back over a socketpair (consoleSocket, the child's
    // end); launch stores it here (Pty::receive). The other fields are then unused.
    Pty *ownTerminal = nullptr;
    int consoleSocket = -1;
    // The window size ownTerminal starts with (the user's terminal), set before the exec
    // so the program never sees 0x0: a size sent after the master arrives comes too late.
    std::optional<struct winsize> ttySize;
};

struct LaunchOptions {
    bool dieWithParent = false; // PR_SET_PDEATHSIG(SIGKILL): foreground run
    // Called in the parent after the clone, before the child may build its root or exec
    // (the cgroup service attaches the pid here). Throwing aborts the launch. With it, a
    // new cgroup namespace is made by the child only after this returned, so its root is
    // the cgroup the child was moved to.
    std::function<void(pid_t)> afterClone;
    // Called in the parent once the child's namespaces and id maps exist and before it
    // builds its root or execs (the network service plugs its interfaces in here).
    // Throwing aborts the launch.
    std::function<void(pid_t)> beforeStart;
    // A cgroup2 directory (O_PATH fd) holding every controller the container uses: the
    // child is born in it (clone3 CLONE_INTO_CGROUP, Linux 5.7), so no cgroup.procs write
    // stands between clone and exec. afterClone is then skipped, and used instead when the
    // kernel refuses to place at clone time.
    int cgroupFd = -1;
    std::shared_ptr<void> cgroupFdOwner; // closes cgroupFd with the last copy
    // Called by whoever reaped the container's init (the monitor, a foreground run) with
    // the signal that killed it (0: it exited, or never started); returns fields to add
    // to the recorded exit ({"oom_killed": true}). Releases the container's cgroup.
    std::function<nlohmann::json(int signal)> afterExit;
    // Called in the parent once the child has built its root (a root image is mounted)
    // and before it pivots into it and execs; the child waits for it. The device rules
    // that would have kept the child from the image's loop device are applied here.
    // Throwing aborts the launch.
    std::function<void(pid_t)> afterRoot;
    // The OCI start gate (ProcessSpec::gateFd): an O_PATH fd of the container's exec.fifo.
    // `launch` then returns once the child is ready to exec and blocks on the gate; the
    // child drops the flock and OFD locks it inherited, as it outlives the caller.
    int gateFd = -1;
    // Called in the child, in the container's namespaces with its root prepared but
    // before pivot_root (createContainer hooks), with its pid in the host's PID namespace.
    // Throwing fails the launch.
    std::function<void(pid_t)> beforePivot;
    // Called in the container's process right after it passed the gate, before the exec
    // (startContainer hooks), with its host pid. Throwing ends it (message on stderr).
    std::function<void(pid_t)> afterGate;
};

// A running child (container init or exec'd process). Owns its pidfd; does not kill on
// destruction (callers decide), but a child never waited for is reaped by `wait`.
class ChildProcess {
public:
    ChildProcess() = default;
    ChildProcess(pid_t pid, int pidfd) : _pid(pid), _pidfd(pidfd) {}
    ChildProcess(ChildProcess &&o) noexcept;
    ChildProcess &operator=(ChildProcess &&o) noexcept;
    ~ChildProcess();

    pid_t pid() const { return _pid; }
    int pidfd() const { return _pidfd; }
    // Block until it exits: the exit code, or 128+N when killed by signal N. Sets
    // *signal to N (0 when it exited).
    int wait(int *signal = nullptr);
    void kill(int sig);
    bool waited() const { return _waited; }

private:
    pid_t _pid = -1;
    int _pidfd = -1;
    bool _waited = false;
};

// Check the spec's namespacePaths: each an nsfs file of its kind (ioctl NS_GET_NSTYPE),
// else Error(MO_E_INVALID) naming the key and path. `launch` checks again as it opens them.
void checkNamespacePaths(const ContainerSpec &spec);

// Namespace clone flags for the spec.
unsigned long cloneFlags(const ContainerSpec &spec);

// "0 100000 65536\n" lines of an id map file.
std::string idMapText(const std::vector<IdMapping> &maps);

// Start the container's init (the spec's process, or the built-in init forking it).
ChildProcess launch(Syscalls &sys, const ContainerSpec &spec, const ChildIo &io,
                    const LaunchOptions &options = {});

// Start `process` inside the namespaces of the running container whose init is `pid`
// (`pidfd` refers to it). `afterClone` (the cgroup service's attach) runs in the parent
// before the child joins any namespace.
ChildProcess launchInside(Syscalls &sys, pid_t pid, int pidfd, const ProcessSpec &process,
                          const ChildIo &io, const std::function<void(pid_t)> &afterClone = {});

// launch + wait: the engine's foreground run without any state. Returns the exit status.
int runContainer(Syscalls &sys, const ContainerSpec &spec, const ChildIo &io);

} // namespace mobileops::nsruntime
