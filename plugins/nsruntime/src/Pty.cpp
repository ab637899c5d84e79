#include "Pty.h"

#include "Errors.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace mobileops::nsruntime {

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
    struct winsize ws;
    if (sizeFrom >= 0 && ::ioctl(sizeFrom, TIOCGWINSZ, &ws) == 0)
        ::ioctl(p._slave, TIOCSWINSZ, &ws);
    return p;
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

RawMode::RawMode(int fd) : _fd(fd) {
    if (fd < 0 || !::isatty(fd) || ::tcgetattr(fd, &_saved) < 0) return;
    struct termios raw = _saved;
    ::cfmakeraw(&raw);
    raw.c_oflag = _saved.c_oflag; // keep output processing: \n stays \r\n on the outer tty
    if (::tcsetattr(fd, TCSANOW, &raw) == 0) _active = true;
}

RawMode::~RawMode() {
    if (_active) ::tcsetattr(_fd, TCSANOW, &_saved);
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

void pumpPty(int master, int in, int out, int pidfd) {
    char buf[16384];
    struct winsize last = {};
    bool haveSize = in >= 0 && ::ioctl(in, TIOCGWINSZ, &last) == 0;
    bool inOpen = in >= 0;
    bool exited = false;
    for (;;) {
        struct pollfd fds[3] = {{master, POLLIN, 0}, {pidfd, POLLIN, 0}, {in, POLLIN, 0}};
        int n = ::poll(fds, inOpen ? 3 : 2, exited ? 0 : 250);
        if (n < 0 && errno != EINTR) break;
        if (haveSize) {
            struct winsize ws;
            if (::ioctl(in, TIOCGWINSZ, &ws) == 0 && std::memcmp(&ws, &last, sizeof ws) != 0) {
                last = ws;
                ::ioctl(master, TIOCSWINSZ, &ws);
            }
        }
        if (n <= 0) {
            if (exited) break; // drained
            continue;
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = ::read(master, buf, sizeof buf);
            if (r > 0) {
                if (out >= 0) writeAll(out, buf, static_cast<size_t>(r));
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                break; // EIO: every slave is closed
            }
        }
        if (fds[1].revents & POLLIN) exited = true;
        if (inOpen && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
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
