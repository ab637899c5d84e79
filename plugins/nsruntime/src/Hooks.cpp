#include "Hooks.h"

#include "Errors.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

Error invalid(const std::string &m) { return Error(MO_E_INVALID, m); }

std::vector<std::string> strings(const json &obj, const char *key, const std::string &path) {
    std::vector<std::string> out;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return out;
    if (it->is_object() && it->empty()) return out; // an empty Lua table
    if (!it->is_array()) throw invalid(path + key + ": expected an array of strings");
    for (const auto &e : *it) {
        if (!e.is_string()) throw invalid(path + key + ": expected an array of strings");
        out.push_back(e.get<std::string>());
    }
    return out;
}

std::vector<Hook> parseList(const json &doc, const char *kind) {
    std::vector<Hook> out;
    auto it = doc.find(kind);
    if (it == doc.end() || it->is_null() || (it->is_object() && it->empty())) return out;
    const std::string base = std::string("hooks.") + kind;
    if (!it->is_array()) throw invalid(base + ": expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
        const json &h = (*it)[i];
        const std::string p = base + "[" + std::to_string(i) + "].";
        if (!h.is_object()) throw invalid(base + ": expected objects");
        Hook hook;
        auto path = h.find("path");
        if (path == h.end() || !path->is_string() || path->get<std::string>().empty() ||
            path->get<std::string>()[0] != '/')
            throw invalid(p + "path: expected an absolute path");
        hook.path = path->get<std::string>();
        hook.args = strings(h, "args", p);
        hook.env = strings(h, "env", p);
        for (const auto &e : hook.env)
            if (e.find('=') == std::string::npos || e[0] == '=')
                throw invalid(p + "env: " + quote(e) + " is not NAME=VALUE");
        if (auto t = h.find("timeout"); t != h.end() && !t->is_null()) {
            if (!t->is_number_integer() || t->get<int64_t>() < 1 || t->get<int64_t>() > 86400)
                throw invalid(p + "timeout: expected seconds from 1 to 86400");
            hook.timeout = t->get<int>();
        }
        out.push_back(std::move(hook));
    }
    return out;
}

std::vector<char *> cstrings(const std::vector<std::string> &v) {
    std::vector<char *> out;
    for (const auto &s : v) out.push_back(const_cast<char *>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

void runHook(const Hook &h, const std::string &what, const std::string &state) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0) throw sysError(what + ": pipe", errno);
    if (::pipe2(out, O_CLOEXEC) < 0) {
        ::close(in[0]);
        ::close(in[1]);
        throw sysError(what + ": pipe", errno);
    }
    std::vector<std::string> args = h.args.empty() ? std::vector<std::string>{h.path} : h.args;
    auto argv = cstrings(args);
    auto envp = cstrings(h.env);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int s = 1; s < NSIG; ++s)
            if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
        ::execve(h.path.c_str(), argv.data(), envp.data());
        const char *m = "exec failed: ";
        ::write(2, m, std::strlen(m));
        ::write(2, std::strerror(errno), std::strlen(std::strerror(errno)));
        ::_exit(127);
    }
    int err = errno;
    ::close(in[0]);
    ::close(out[1]);
    if (pid < 0) {
        ::close(in[1]);
        ::close(out[0]);
        throw sysError(what + ": fork", err);
    }
    // The state is small (far below a pipe's buffer); a hook that does not read it must
    // not kill us with SIGPIPE.
    struct sigaction ignore = {}, old;
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old);
    ssize_t wrote = ::write(in[1], state.data(), state.size());
    (void)wrote;
    ::close(in[1]);
    ::sigaction(SIGPIPE, &old, nullptr);

    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    std::string output;
    bool exited = false, timedOut = false;
    struct timespec start;
    ::clock_gettime(CLOCK_MONOTONIC, &start);
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {pidfd, POLLIN, 0}};
    while (!exited || fds[0].fd >= 0) {
        int wait = -1;
        if (h.timeout && !exited) {
            struct timespec now;
            ::clock_gettime(CLOCK_MONOTONIC, &now);
            long elapsed =
                (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
            long left = *h.timeout * 1000L - elapsed;
            if (left <= 0) {
                timedOut = true;
                ::kill(pid, SIGKILL);
                break;
            }
            wait = static_cast<int>(left);
        }
        if (exited) wait = 100; // what it left behind may hold the pipe
        int n = ::poll(fds, 2, wait);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (exited) break;
            continue;
        }
        if (fds[0].fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[4096];
            ssize_t r = ::read(out[0], buf, sizeof buf);
            if (r > 0 && output.size() < 4096) output.append(buf, static_cast<size_t>(r));
            if (r == 0 || (r < 0 && errno != EINTR)) fds[0].fd = -1;
        }
        if (fds[1].fd >= 0 && (fds[1].revents & POLLIN)) {
            exited = true;
            fds[1].fd = -1;
        }
        if (pidfd < 0 && fds[0].fd < 0) break;
    }
    ::close(out[0]);
    if (pidfd >= 0) ::close(pidfd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    std::string said = output.empty() ? std::string() : ": " + output.substr(0, 512);
    if (timedOut)
        throw Error(-ETIMEDOUT, what + " " + quote(h.path) + " did not finish within " +
                                    std::to_string(*h.timeout) + " s and was killed" + said);
    if (WIFSIGNALED(status))
        throw Error(-EIO, what + " " + quote(h.path) + " was killed by signal " +
                              std::to_string(WTERMSIG(status)) + said);
    if (WEXITSTATUS(status) != 0)
        throw Error(-EIO, what + " " + quote(h.path) + " exited with status " +
                              std::to_string(WEXITSTATUS(status)) + said);
}

} // namespace

Hooks parseHooks(const json &doc) {
    if (!doc.is_object()) throw invalid("hooks: expected an object");
    static const char *kKinds[] = {"prestart",       "createRuntime", "createContainer",
                                   "startContainer", "poststart",     "poststop"};
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        bool known = false;
        for (const char *k : kKinds) known = known || it.key() == k;
        if (!known) throw invalid("hooks." + it.key() + ": unknown hook kind");
    }
    Hooks h;
    h.prestart = parseList(doc, "prestart");
    h.createRuntime = parseList(doc, "createRuntime");
    h.createContainer = parseList(doc, "createContainer");
    h.startContainer = parseList(doc, "startContainer");
    h.poststart = parseList(doc, "poststart");
    h.poststop = parseList(doc, "poststop");
    return h;
}

std::string hookState(const std::string &id, const char *status, pid_t pid,
                      const std::string &bundle, const json &annotations) {
    json s = {{"ociVersion", "1.0.2"}, {"id", id}, {"status", status}, {"bundle", bundle}};
    if (pid > 0) s["pid"] = pid;
    s["annotations"] = annotations.is_object() ? annotations : json::object();
    return s.dump();
}

void runHooks(const std::vector<Hook> &hooks, const std::string &kind, const std::string &state) {
    for (size_t i = 0; i < hooks.size(); ++i)
        runHook(hooks[i], kind + " hook " + std::to_string(i), state);
}

pid_t pidInProc() {
    char buf[32];
    ssize_t n = ::readlink("/proc/self", buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = 0;
    return static_cast<pid_t>(std::atol(buf));
}

} // namespace mobileops::nsruntime
