#include "Child.h"

#include <mobileops/abi.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace mobileops::api {

namespace {

using Clock = std::chrono::steady_clock;

int statusOf(int ws) {
    if (WIFEXITED(ws)) return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
    return -1;
}

void closeFd(int &fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

} // namespace

Child::Child(const std::string &exe, const std::vector<std::string> &argv,
             const std::vector<std::string> &env, bool withStdin) {
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    auto fail = [&](const char *what, int e) {
        for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]})
            if (fd >= 0) ::close(fd);
        throw std::runtime_error(std::string(what) + ": " + std::strerror(e));
    };
    if ((withStdin && ::pipe2(in, O_CLOEXEC) != 0) || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0)
        fail("pipe", errno);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (withStdin)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addchdir_np(&fa, "/");
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    // Its own process group: a Ctrl-C at the server's terminal does not cut a command
    // short; the server waits for the commands under way.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_USEVFORK);
    std::vector<char *> av, ev;
    for (const auto &a : argv) av.push_back(const_cast<char *>(a.c_str()));
    av.push_back(nullptr);
    for (const auto &e : env) ev.push_back(const_cast<char *>(e.c_str()));
    ev.push_back(nullptr);
    int rc = ::posix_spawn(&_pid, exe.c_str(), &fa, &attr, av.data(), ev.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) fail("spawn", rc);
    if (withStdin) ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    _in = in[1];
    _out = out[0];
    _err = err[0];
}

Child::~Child() {
    if (_pid > 0 && !_reaped) stop(SIGKILL, 0);
    closeAll();
}

void Child::closeAll() {
    closeFd(_in);
    closeFd(_out);
    closeFd(_err);
}

bool Child::reapNoHang() {
    if (_reaped) return true;
    int ws = 0;
    pid_t r = ::waitpid(_pid, &ws, WNOHANG);
    if (r == _pid) {
        _reaped = true;
        _status = statusOf(ws);
    }
    return _reaped;
}

int Child::wait() {
    while (!_reaped) {
        int ws = 0;
        pid_t r = ::waitpid(_pid, &ws, 0);
        if (r == _pid) {
            _reaped = true;
            _status = statusOf(ws);
        } else if (r < 0 && errno != EINTR) {
            _reaped = true;
        }
    }
    return _status;
}

int Child::stop(int signal, int graceMs) {
    if (_reaped) return _status;
    ::kill(_pid, signal);
    auto deadline = Clock::now() + std::chrono::milliseconds(graceMs);
    while (!reapNoHang() && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!_reaped) ::kill(_pid, SIGKILL);
    return wait();
}

ChildResult Child::run(const std::string &input, int timeoutMs, size_t maxOutput) {
    ChildResult r;
    size_t written = 0;
    if (_in >= 0 && input.empty()) closeFd(_in);
    if (_in >= 0) ::fcntl(_in, F_SETFL, ::fcntl(_in, F_GETFL) | O_NONBLOCK);
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    char buf[65536];
    while (_out >= 0 || _err >= 0) {
        pollfd fds[3];
        int n = 0, iOut = -1, iErr = -1, iIn = -1;
        if (_out >= 0) fds[iOut = n++] = {_out, POLLIN, 0};
        if (_err >= 0) fds[iErr = n++] = {_err, POLLIN, 0};
        if (_in >= 0) fds[iIn = n++] = {_in, POLLOUT, 0};
        int wait = 1000;
        if (timeoutMs > 0) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())
                    .count();
            if (left <= 0) {
                r.timedOut = true;
                break;
            }
            wait = static_cast<int>(std::min<long long>(left, 1000));
        }
        int pr = ::poll(fds, static_cast<nfds_t>(n), wait);
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        auto drain = [&](int idx, int &fd, std::string &to) {
            if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
            ssize_t got = ::read(fd, buf, sizeof buf);
            if (got > 0)
                to.append(buf, static_cast<size_t>(got));
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                closeFd(fd);
        };
        drain(iOut, _out, r.out);
        drain(iErr, _err, r.err);
        if (r.out.size() > maxOutput || r.err.size() > maxOutput) {
            r.tooLarge = true;
            break;
        }
        if (iIn >= 0 && (fds[iIn].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = ::write(_in, input.data() + written, input.size() - written);
            if (w > 0) written += static_cast<size_t>(w);
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size())
                closeFd(_in);
        }
    }
    closeAll();
    r.exitStatus = (r.timedOut || r.tooLarge) ? stop(SIGKILL, 0) : wait();
    return r;
}

} // namespace mobileops::api
