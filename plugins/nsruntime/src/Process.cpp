#include "Process.h"

#include "Errors.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace mobileops::nsruntime {

void writeReport(int fd, int code, int exitStatus, const std::string &message) noexcept {
    ChildReport r;
    r.code = code;
    r.exitStatus = exitStatus;
    std::strncpy(r.message, message.c_str(), sizeof r.message - 1);
    ssize_t n;
    do n = ::write(fd, &r, sizeof r);
    while (n < 0 && errno == EINTR);
}

bool readReport(int fd, ChildReport &out) {
    size_t got = 0;
    auto *p = reinterpret_cast<char *>(&out);
    while (got < sizeof out) {
        ssize_t n = ::read(fd, p + got, sizeof out - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<size_t>(n);
    }
    if (got == 0) return false;
    if (got < sizeof out) {
        out = {};
        out.code = MO_E_INTERNAL;
        out.exitStatus = kExitSetupFailed;
        std::strcpy(out.message, "the container process died during setup");
    }
    out.message[sizeof out.message - 1] = 0;
    return true;
}

uint64_t defaultCapabilities() {
    const int caps[] = {CAP_CHOWN,   CAP_DAC_OVERRIDE,     CAP_FOWNER,    CAP_FSETID,
                        CAP_KILL,    CAP_NET_BIND_SERVICE, CAP_SETFCAP,   CAP_SETGID,
                        CAP_SETPCAP, CAP_SETUID,           CAP_SYS_CHROOT};
    uint64_t mask = 0;
    for (int c : caps) mask |= uint64_t(1) << c;
    return mask;
}

void applyProcessSettings(Syscalls &sys, const ProcessSpec &process) {
    const uint64_t keep = defaultCapabilities();
    for (int cap = 0; cap < 64; ++cap) {
        if (keep & (uint64_t(1) << cap)) continue;
        int r = sys.prctl(PR_CAPBSET_DROP, static_cast<unsigned long>(cap));
        if (r == -EINVAL) break; // past CAP_LAST_CAP of this kernel
        if (r < 0) throw sysError("drop capability " + std::to_string(cap), -r);
    }
    const User &u = process.user;
    check(sys.setgroups(u.additionalGids), "setgroups");
    check(sys.setresgid(u.gid, u.gid, u.gid), "setgid " + quote(std::to_string(u.gid)));
    check(sys.setresuid(u.uid, u.uid, u.uid), "setuid " + quote(std::to_string(u.uid)));
    // A non-root uid lost every capability in setresuid; root keeps the default set.
    // Inheritable stays empty (CVE-2022-27651).
    if (u.uid == 0) check(sys.capset(keep, keep, 0), "set capabilities");
    check(sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
          "clear ambient capabilities");
    for (const auto &l : process.rlimits) {
        struct rlimit rl = {l.soft, l.hard};
        int r = sys.setrlimit(l.resource, rl);
        if (r < 0) throw sysError("ulimit " + quote(l.name), -r);
    }
    if (process.noNewPrivileges)
        check(sys.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
}

namespace {
std::vector<char *> cstrings(const std::vector<std::string> &v) {
    std::vector<char *> out;
    out.reserve(v.size() + 1);
    for (const auto &s : v) out.push_back(const_cast<char *>(s.c_str()));
    out.push_back(nullptr);
    return out;
}
} // namespace

int execSearch(Syscalls &sys, const ProcessSpec &process, std::string &what) {
    auto argv = cstrings(process.args);
    auto envp = cstrings(process.env);
    const std::string &cmd = process.args[0];
    what = cmd;
    if (cmd.find('/') != std::string::npos)
        return sys.execve(cmd.c_str(), argv.data(), envp.data());
    std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (const auto &e : process.env)
        if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
    int result = -ENOENT;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        std::string full = (dir.empty() ? std::string(".") : dir) + "/" + cmd;
        int r = sys.execve(full.c_str(), argv.data(), envp.data());
        // As execvp: keep looking past missing entries, remember a permission error.
        if (r == -EACCES)
            result = r;
        else if (r != -ENOENT && r != -ENOTDIR && r != -ELOOP && r != -ENAMETOOLONG)
            return r;
        start = end + 1;
    }
    return result;
}

[[noreturn]] void failChild(int reportFd) noexcept {
    try {
        throw;
    } catch (const Error &e) {
        writeReport(reportFd, e.code(), kExitSetupFailed, e.what());
    } catch (const std::exception &e) {
        writeReport(reportFd, MO_E_INTERNAL, kExitSetupFailed, e.what());
    } catch (...) {
        writeReport(reportFd, MO_E_INTERNAL, kExitSetupFailed,
                    "unknown error in the container setup");
    }
    ::_exit(kExitSetupFailed);
}

[[noreturn]] void execContainerProcess(Syscalls &sys, const ProcessSpec &process, int reportFd) {
    try {
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int s = 1; s < NSIG; ++s)
            if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
        ::umask(022);
        int r = sys.chdir(process.cwd.c_str());
        if (r < 0) throw sysError("cwd " + quote(process.cwd), -r);
        // Whatever the caller leaked must not reach the container.
        ::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
        std::string what;
        r = execSearch(sys, process, what);
        int status = r == -ENOENT ? kExitNotFound : kExitCannotExec;
        writeReport(reportFd, r, status, "exec " + quote(what) + ": " + std::strerror(-r));
        ::_exit(status);
    } catch (...) {
        failChild(reportFd);
    }
}

} // namespace mobileops::nsruntime
