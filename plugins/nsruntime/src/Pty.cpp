#include "Pty.h"

#include "Errors.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

namespace mobileops::nsruntime {

namespace {

// Closes an fd on scope exit.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

void copyWindowSize(int from, int to) {
    struct winsize ws;
    if (from >= 0 && ::ioctl(from, TIOCGWINSZ, &ws) == 0) ::ioctl(to, TIOCSWINSZ, &ws);
}

// `id` of the user namespace of `pid` as seen from ours (an id map file); nullopt when
// it is not mapped.
std::optional<uint32_t> hostId(pid_t pid, const char *mapFile, uint32_t id) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + mapFile);
    uint64_t inside, outside, count;
    while (in >> inside >> outside >> count)
        if (id >= inside && id - inside < count)
            return static_cast<uint32_t>(outside + id - inside);
    return std::nullopt;
}

} // namespace

Pty Pty::open(int sizeFrom) {
    Pty p;
    p._master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p._master < 0) throw sysError("open a pseudo-terminal", errno);
    if (::grantpt(p._master) < 0 || ::unlockpt(p._master) < 0)
        throw sysError("unlock the pseudo-terminal", errno);
    char name[128];
    if (::ptsname_r(p._master, name, sizeof name) != 0) throw sysError("ptsname", errno);
    p._slavePath = name;
    p._slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p._slave < 0) throw sysError("open " + quote(p._slavePath), errno);
    copyWindowSize(sizeFrom, p._slave);
    return p;
}

Pty Pty::openInContainer(pid_t pid, int pidfd, uid_t uid, int sizeFrom) {
    Pty p;
    FdGuard root{::open(("/proc/" + std::to_string(pid) + "/root").c_str(),
                        O_PATH | O_DIRECTORY | O_CLOEXEC)};
    if (root.fd < 0) return p;
    // Alive now, so `pid` was not reused before `root` was opened.
    if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) < 0)
        throw Error(MO_E_STATE, "the container is not running");
    // The container owns its /dev: resolve within its root and do not block on a
    // device that is not what it claims to be; only a pty master answers TIOCGPTN.
    struct open_how how = {};
    how.flags = O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    FdGuard master{static_cast<int>(::syscall(SYS_openat2, root.fd, "dev/ptmx", &how, sizeof how))};
    unsigned int number = 0;
    if (master.fd < 0 || ::ioctl(master.fd, TIOCGPTN, &number) < 0) return p;
    int unlock = 0;
    if (::ioctl(master.fd, TIOCSPTLCK, &unlock) < 0)
        throw sysError("unlock the pseudo-terminal", errno);
    int flags = ::fcntl(master.fd, F_GETFL);
    if (flags < 0 || ::fcntl(master.fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        throw sysError("set up the pseudo-terminal", errno);
    p._master = master.fd;
    master.fd = -1;
    p._slavePath = "/dev/pts/" + std::to_string(number);
    p._slave = ::ioctl(p._master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p._slave < 0) throw sysError("open " + quote(p._slavePath), errno);
    // Created by us (host root, unmapped in a user namespace): give it to the process
    // user as a login would, so that it can reopen and chmod its terminal.
    if (auto owner = hostId(pid, "uid_map", uid))
        if (::fchown(p._slave, *owner, static_cast<gid_t>(-1)) < 0)
            throw sysError("chown " + quote(p._slavePath), errno);
    copyWindowSize(sizeFrom, p._slave);
    return p;
}

Pty Pty::receive(int sock, int sizeFrom) {
    char name[64] = {};
    struct iovec iov = {name, sizeof name - 1};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) throw sysError("receive the container's terminal", errno);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (n == 0 || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        throw Error(MO_E_INTERNAL, "the container's init sent no terminal");
    Pty p;
    std::memcpy(&p._master, CMSG_DATA(c), sizeof(int));
    p._slavePath.assign(name, static_cast<std::size_t>(n));
    copyWindowSize(sizeFrom, p._master);
    return p;
}

ContainerPty openFromDevpts(int ptsDir) {
    ContainerPty out;
    struct open_how how = {};
    how.flags = O_RDWR | O_NOCTTY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    FdGuard master{static_cast<int>(::syscall(SYS_openat2, ptsDir, "ptmx", &how, sizeof how))};
    if (master.fd < 0) throw sysError("open the container's /dev/pts/ptmx", errno);
    unsigned int number = 0;
    if (::ioctl(master.fd, TIOCGPTN, &number) < 0)
        throw sysError("the container's /dev/pts/ptmx is not a pty multiplexer", errno);
    int unlock = 0;
    if (::ioctl(master.fd, TIOCSPTLCK, &unlock) < 0)
        throw sysError("unlock the pseudo-terminal", errno);
    out.name = "/dev/pts/" + std::to_string(number);
    out.slave = ::ioctl(master.fd, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (out.slave < 0) throw sysError("open " + quote(out.name), errno);
    out.master = master.fd;
    master.fd = -1;
    return out;
}

void sendMaster(int sock, int master, const std::string &name) {
    struct iovec iov = {const_cast<char *>(name.data()), name.size()};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &master, sizeof master);
    ssize_t n;
    do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) throw sysError("send the pty", errno);
}

Pty::Pty(Pty &&o) noexcept
    : _master(o._master), _slave(o._slave), _slavePath(std::move(o._slavePath)) {
    o._master = o._slave = -1;
}

Pty &Pty::operator=(Pty &&o) noexcept {
    if (this != &o) {
        this->~Pty();
        new (this) Pty(std::move(o));
    }
    return *this;
}

Pty::~Pty() {
    if (_master >= 0) ::close(_master);
    closeSlave();
}

void Pty::closeSlave() {
    if (_slave >= 0) ::close(_slave);
    _slave = -1;
}

int firstTerminal(std::initializer_list<int> fds) {
    for (int fd : fds)
        if (fd >= 0 && ::isatty(fd)) return fd;
    return -1;
}

namespace {

// What TerminalModes changed, for the destructor and the signal handler.
struct SavedMode {
    int fd;
    struct termios mode;
};
SavedMode gModes[2];
std::atomic<int> gModeCount{0}; // lock-free: read by the signal handler

// Signals whose default action ends the process (the forwarded ones aside): the terminal
// is restored before it ends.
const int kFatal[] = {SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGPWR, SIGABRT,
                      SIGSEGV, SIGBUS,    SIGFPE,  SIGILL,  SIGSYS,  SIGTRAP};
bool gFatalHandled[std::size(kFatal)];

void restoreModes(int when) {
    for (int i = gModeCount.load(); i-- > 0;) ::tcsetattr(gModes[i].fd, when, &gModes[i].mode);
    gModeCount = 0;
}

void restoreAndRaise(int sig) {
    int saved = errno;
    restoreModes(TCSANOW);
    ::signal(sig, SIG_DFL); // handled only where the default was in place
    ::raise(sig);           // delivered on return
    errno = saved;
}

bool saveMode(int fd, struct termios &mode) {
    if (fd < 0 || !::isatty(fd) || ::tcgetattr(fd, &mode) < 0) return false;
    gModes[gModeCount] = {fd, mode};
    return true;
}

bool sameTerminal(int a, int b) {
    struct stat sa, sb;
    return a >= 0 && b >= 0 && ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 &&
           sa.st_rdev == sb.st_rdev;
}

} // namespace

TerminalModes::TerminalModes(int in, int out) {
    struct termios mode;
    bool inRaw = false;
    if (saveMode(in, mode)) {
        ::cfmakeraw(&mode);
        if (::tcsetattr(in, TCSANOW, &mode) == 0) {
            ++gModeCount;
            inRaw = true;
        }
    }
    if (!(inRaw && sameTerminal(in, out)) && saveMode(out, mode)) {
        mode.c_oflag &= ~OPOST;
        if (::tcsetattr(out, TCSANOW, &mode) == 0) ++gModeCount;
    }
    if (gModeCount == 0) return;
    for (size_t i = 0; i < std::size(kFatal); ++i) {
        struct sigaction old;
        gFatalHandled[i] = ::sigaction(kFatal[i], nullptr, &old) == 0 && old.sa_handler == SIG_DFL;
        if (gFatalHandled[i]) ::signal(kFatal[i], restoreAndRaise);
    }
}

TerminalModes::~TerminalModes() {
    if (gModeCount == 0) return;
    for (size_t i = 0; i < std::size(kFatal); ++i)
        if (gFatalHandled[i]) ::signal(kFatal[i], SIG_DFL);
    restoreModes(TCSADRAIN);
}

namespace {
bool writeAll(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            ::poll(&pf, 1, 1000);
            continue;
        }
        if (w <= 0) return false;
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}
} // namespace

namespace {

std::atomic<int> gWinchWrite{-1};

void onWinch(int) {
    int saved = errno;
    char c = 0;
    if (::write(gWinchWrite.load(), &c, 1) < 0) {
    } // full: a size change is already pending
    errno = saved;
}

// SIGWINCH wakes the pump through a pipe; SIGPIPE is ignored so that a closed output
// ends in EPIPE instead of killing us with the terminal still raw.
class PumpSignals {
public:
    PumpSignals() {
        int p[2];
        if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) throw sysError("pipe", errno);
        _read = p[0];
        _write = p[1];
        gWinchWrite = _write;
        struct sigaction sa = {};
        sa.sa_handler = onWinch;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGWINCH, &sa, &_oldWinch);
        sa.sa_handler = SIG_IGN;
        ::sigaction(SIGPIPE, &sa, &_oldPipe);
    }
    ~PumpSignals() {
        ::sigaction(SIGPIPE, &_oldPipe, nullptr);
        ::sigaction(SIGWINCH, &_oldWinch, nullptr);
        gWinchWrite = -1;
        ::close(_read);
        ::close(_write);
    }
    PumpSignals(const PumpSignals &) = delete;
    PumpSignals &operator=(const PumpSignals &) = delete;
    int winch() const { return _read; }
    void drain() const {
        char buf[64];
        while (::read(_read, buf, sizeof buf) > 0) {
        }
    }

private:
    int _read = -1, _write = -1;
    struct sigaction _oldWinch, _oldPipe;
};

} // namespace

void pumpPty(int master, int in, int out, int pidfd, int sizeFrom,
             const std::function<void(const char *, size_t)> &copy) {
    PumpSignals signals;
    copyWindowSize(sizeFrom, master); // it may have changed since the pty was opened
    char buf[16384];
    bool inOpen = in >= 0;
    bool exited = false;
    for (;;) {
        struct pollfd fds[4] = {
            {master, POLLIN, 0}, {pidfd, POLLIN, 0}, {signals.winch(), POLLIN, 0}, {in, POLLIN, 0}};
        int n = ::poll(fds, inOpen ? 4 : 3, exited ? 0 : -1);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) {
            if (exited) break; // drained
            continue;
        }
        if (fds[2].revents & POLLIN) {
            signals.drain();
            copyWindowSize(sizeFrom, master);
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = ::read(master, buf, sizeof buf);
            if (r > 0) {
                if (copy) copy(buf, static_cast<size_t>(r));
                if (out >= 0 && !writeAll(out, buf, static_cast<size_t>(r))) out = -1;
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                break; // EIO: every slave is closed
            }
        }
        if (fds[1].revents & POLLIN) exited = true;
        if (inOpen && (fds[3].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = ::read(in, buf, sizeof buf);
            if (r > 0)
                writeAll(master, buf, static_cast<size_t>(r));
            else if (r == 0 || errno != EINTR) {
                inOpen = false;
                // End of input: send the terminal's EOF character, as a keyboard would.
                struct termios t;
                char eof = ::tcgetattr(master, &t) == 0 ? static_cast<char>(t.c_cc[VEOF]) : 4;
                writeAll(master, &eof, 1);
            }
        }
    }
}

} // namespace mobileops::nsruntime
