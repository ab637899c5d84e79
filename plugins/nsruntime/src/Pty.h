// Pseudo-terminals for -t: the pair, the user's terminal modes, and the copy loop.
#pragma once

#include <sys/types.h>
#include <termios.h>

#include <functional>
#include <initializer_list>
#include <string>

namespace mobileops::nsruntime {

class Pty {
public:
    // Open a new pty pair on the host's devpts; the slave gets the window size of
    // `sizeFrom` when it is a tty.
    static Pty open(int sizeFrom);
    // Open the pair from the devpts instance of the container whose init is `pid`
    // (`pidfd` refers to it), so that the slave has a name inside it (ttyname, `tty`) as
    // with runc and podman. The slave is owned by `uid` of the container (mapped through
    // the init's uid_map). An empty Pty (master() < 0) when the container has no devpts
    // of its own.
    static Pty openInContainer(pid_t pid, int pidfd, uid_t uid, int sizeFrom);
    // The master a container's init sent over `sock` (sendMaster), as runc's init does:
    // its pty comes from the container's own devpts, so the slave is /dev/pts/N inside.
    // The slave is not ours (slave() < 0). Throws when the init sent none. The window
    // size of `sizeFrom` (a tty, or -1) is copied to the master.
    static Pty receive(int sock, int sizeFrom);
    Pty() = default;
    Pty(Pty &&other) noexcept;
    Pty &operator=(Pty &&other) noexcept;
    ~Pty();

    int master() const { return _master; }
    int slave() const { return _slave; }
    const std::string &slavePath() const { return _slavePath; }
    void closeSlave();

private:
    int _master = -1, _slave = -1;
    std::string _slavePath;
};

// A pty from the devpts instance mounted at `ptsDir` (an O_PATH fd of the container's
// /dev/pts): master and slave, and the slave's name as the container sees it.
struct ContainerPty {
    int master = -1, slave = -1;
    std::string name; // "/dev/pts/0"
};
ContainerPty openFromDevpts(int ptsDir);

// Send `master` over the connected unix socket `sock` with SCM_RIGHTS, `name` as the
// payload (runc's console protocol).
void sendMaster(int sock, int master, const std::string &name);

// The first of `fds` that is a terminal, -1 if none.
int firstTerminal(std::initializer_list<int> fds);

// The user's terminal while a pty is pumped, so that what reaches it is exactly what the
// container's pty produced: `in` (when input is forwarded) gets cfmakeraw settings, `out`
// loses output processing (OPOST: no second \n -> \r\n). Without forwarded input the
// input side stays cooked, so ^C still signals us and is forwarded. Restored by the
// destructor and, for signals that would kill us, by a handler. One at a time.
class TerminalModes {
public:
    TerminalModes(int in, int out);
    ~TerminalModes();
    TerminalModes(const TerminalModes &) = delete;
    TerminalModes &operator=(const TerminalModes &) = delete;
};

// Copy in -> master and master -> out until the process behind `pidfd` exits and the
// master has drained. `in` < 0: no input. The window size of `sizeFrom` (a tty, or -1) is
// copied to the master at the start and on each SIGWINCH.
void pumpPty(int master, int in, int out, int pidfd, int sizeFrom,
             const std::function<void(const char *, size_t)> &copy = {});

} // namespace mobileops::nsruntime
