#include "Oci.h"

#include "Errors.h"
#include "Pty.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace mobileops::nsruntime {

namespace {

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

} // namespace

int makeGate(const std::string &path) {
    if (::mkfifo(path.c_str(), 0622) < 0) throw sysError("create " + quote(path), errno);
    if (::chmod(path.c_str(), 0622) < 0) throw sysError("chmod " + quote(path), errno);
    int fd = ::open(path.c_str(), O_PATH | O_CLOEXEC);
    if (fd < 0) throw sysError("open " + quote(path), errno);
    return fd;
}

void openGate(const std::string &path, int pidfd, const std::string &what) {
    // Not blocking: an init that died would never open its end.
    Fd fifo{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
    if (fifo.fd < 0) {
        if (errno == ENOENT)
            throw Error(MO_E_STATE, what + " has no start gate: it was started already");
        throw sysError("open " + quote(path), errno);
    }
    struct stat st;
    if (::fstat(fifo.fd, &st) < 0 || !S_ISFIFO(st.st_mode))
        throw Error(MO_E_INTERNAL, quote(path) + " is not a FIFO");
    struct pollfd fds[2] = {{fifo.fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    for (;;) {
        int n = ::poll(fds, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("wait for " + what, errno);
        if (fds[0].revents & POLLIN) {
            char c = 0;
            ssize_t r;
            do r = ::read(fifo.fd, &c, 1);
            while (r < 0 && errno == EINTR);
            if (r == 1 && c == '0') break;
            if (r < 0 && errno == EAGAIN) continue;
            throw Error(MO_E_STATE, what + " closed its start gate without passing it");
        }
        if (fds[1].revents & POLLIN)
            throw Error(MO_E_STATE, what + " exited before it was started");
        if (fds[0].revents & (POLLHUP | POLLERR)) // a writer came and went without a byte
            throw Error(MO_E_STATE, what + " closed its start gate without passing it");
    }
    ::unlink(path.c_str());
}

void sendConsole(const std::string &socketPath, int fd, const std::string &name) {
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (socketPath.size() >= sizeof addr.sun_path)
        throw Error(MO_E_INVALID, "console socket " + quote(socketPath) + ": path too long");
    std::memcpy(addr.sun_path, socketPath.c_str(), socketPath.size() + 1);
    Fd sock{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (sock.fd < 0) throw sysError("console socket: socket", errno);
    int r;
    do r = ::connect(sock.fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof addr);
    while (r < 0 && errno == EINTR);
    if (r < 0) throw sysError("connect to the console socket " + quote(socketPath), errno);
    try {
        sendMaster(sock.fd, fd, name);
    } catch (const Error &e) {
        throw Error(e.code(),
                    std::string(e.what()) + " to the console socket " + quote(socketPath));
    }
}

void writePidFile(const std::string &path, pid_t pid) {
    auto slash = path.rfind('/');
    std::string dir = path.substr(0, slash == 0 ? 1 : slash);
    std::string tmpl = dir + (dir == "/" ? "" : "/") + "." + path.substr(slash + 1) + ".XXXXXX";
    int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0) throw sysError("pid file " + quote(path), errno);
    std::string text = std::to_string(pid);
    bool ok = ::fchmod(fd, 0644) == 0 &&
              ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int err = errno;
    ok = ::close(fd) == 0 && ok;
    if (ok && ::rename(tmpl.c_str(), path.c_str()) == 0) return;
    err = ok ? errno : err;
    ::unlink(tmpl.c_str());
    throw sysError("pid file " + quote(path), err);
}

} // namespace mobileops::nsruntime
