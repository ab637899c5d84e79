#include "Process.h"

#include "Errors.h"
#include "Seccomp.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>

namespace mobileops::nsruntime {

namespace {

// linux/memfd.h and fcntl.h of kernels before 6.3.
constexpr unsigned kMfdExec = 0x0010U; // MFD_EXEC
constexpr int kSealExec = 0x0020;      // F_SEAL_EXEC

int gEntryFd = -1;

std::vector<char *> cstrings(const std::vector<std::string> &v) {
    std::vector<char *> out;
    out.reserve(v.size() + 1);
    for (const auto &s : v) out.push_back(const_cast<char *>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

std::string searchPath(const ProcessSpec &process) {
    std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (const auto &e : process.env)
        if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
    return path;
}

// After chdir: a cwd reached through an fd of the host (`-w /proc/self/fd/N`) lies
// outside our root, and the kernel's getcwd says so with "(unreachable)" (CVE-2024-21626).
void checkCwdInRoot(const std::string &cwd) {
    char buf[PATH_MAX + 1];
    long n = ::syscall(SYS_getcwd, buf, sizeof buf);
    if (n < 0 && errno != ENOENT) throw sysError("cwd " + quote(cwd), errno);
    if (n < 0 || buf[0] != '/')
        throw Error(MO_E_INVALID,
                    "cwd " + quote(cwd) + " is outside the container's root filesystem");
}

} // namespace

// Checked before the OCI gate, so create fails as runc's does.
void checkCommand(const ProcessSpec &process, int rootFd,
                  const std::function<bool(const std::string &)> &unknowable) {
    const std::string &cmd = process.args[0];
    auto usable = [&](const std::string &p) {
        if (unknowable && unknowable(p)) return true;
        struct stat st;
        if (rootFd < 0)
            return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                   ::access(p.c_str(), X_OK) == 0;
        struct open_how how = {};
        how.flags = O_PATH | O_CLOEXEC;
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        int fd = static_cast<int>(::syscall(SYS_openat2, rootFd, p.c_str(), &how, sizeof how));
        if (fd < 0) return false;
        bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
        ::close(fd);
        if (!ok) errno = EACCES;
        return ok;
    };
    errno = 0;
    if (cmd.find('/') != std::string::npos) {
        const std::string path =
            cmd[0] == '/' || rootFd < 0 ? cmd : (process.cwd == "/" ? "" : process.cwd) + "/" + cmd;
        if (usable(path)) return;
        int err = errno ? errno : EACCES;
        throw Error(-err, "exec " + quote(cmd) + ": " + std::strerror(err));
    }
    std::string path = searchPath(process);
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find(':', start);
        if (end == std::string::npos) end = path.size();
        std::string dir = path.substr(start, end - start);
        if (usable((dir.empty() ? std::string(".") : dir) + "/" + cmd)) return;
        start = end + 1;
    }
    throw Error(-ENOENT, "exec " + quote(cmd) + ": not found in PATH " + quote(path));
}

namespace {

void exitOnSignal(int sig) { ::_exit(128 + sig); }

// The OCI start gate: the creator sees EOF on the report pipe (the container is
// created), then we block opening the FIFO for writing until `start` opens it for
// reading, and tell it we passed with one byte. Terminating signals end us meanwhile
// (as PID 1 of a namespace we would otherwise ignore them), so `kill` works in created.
void passGate(const ProcessSpec &process, int &reportFd) {
    checkCommand(process);
    struct sigaction sa = {};
    sa.sa_handler = exitOnSignal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE})
        ::sigaction(s, &sa, nullptr);
    // We may wait long, and we outlive the creator: keep none of its files open (its
    // store, its pipes), only stdio, the gate and the container entry. The report pipe
    // goes last: its EOF tells the creator we are created, and by then we hold nothing.
    int entry = entryFd();
    int keep[3] = {process.gateFd, entry >= 0 ? entry : process.gateFd, reportFd};
    std::sort(std::begin(keep), std::end(keep));
    unsigned from = 3;
    for (int k : keep) {
        if (k >= static_cast<int>(from) + 1)
            ::syscall(SYS_close_range, from, static_cast<unsigned>(k - 1), 0);
        from = std::max(from, static_cast<unsigned>(k + 1));
    }
    ::syscall(SYS_close_range, from, ~0U, 0);
    ::close(reportFd);
    reportFd = -1;
    const std::string fifo = "/proc/self/fd/" + std::to_string(process.gateFd);
    int fd;
    do fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) throw sysError("open the start gate", errno);
    ssize_t n;
    do n = ::write(fd, "0", 1);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    ::close(process.gateFd);
    if (n != 1) throw sysError("pass the start gate", errno);
    if (process.afterGate) process.afterGate();
    for (int s = 1; s < NSIG; ++s)
        if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
}

} // namespace

void writeReport(int fd, int code, int exitStatus, const std::string &message) noexcept {
    if (fd < 0) {
        // Past the OCI start gate nobody reads reports: the message goes to stderr.
        std::string line = "mobileops: " + message;
        if (code < 0 && line.size() >= 2 && line.compare(line.size() - 2, 2, ": ") == 0)
            line += std::strerror(-code);
        line += '\n';
        ssize_t n;
        do n = ::write(2, line.data(), line.size());
        while (n < 0 && errno == EINTR);
        return;
    }
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
    size_t len = std::strlen(out.message);
    if (len >= 2 && out.message[len - 2] == ':' && out.message[len - 1] == ' ' && out.code < 0)
        std::strncat(out.message, std::strerror(-out.code), sizeof out.message - len - 1);
    return true;
}

void applyProcessSettings(Syscalls &sys, const ProcessSpec &process) {
    const SecuritySpec &sec = process.security;
    if (process.oomScoreAdj) {
        int r = sys.writeFile("/proc/self/oom_score_adj", std::to_string(*process.oomScoreAdj));
        if (r < 0)
            throw sysError("process.oomScoreAdj " + std::to_string(*process.oomScoreAdj) +
                               (r == -EACCES ? " (lowering it needs CAP_SYS_RESOURCE)" : ""),
                           -r);
    }
    // Until the exec this process is the host's mobileops image: not dumpable, its
    // /proc/<pid>/exe, mem and fd need CAP_SYS_PTRACE over the host (CVE-2019-5736).
    check(sys.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the process not dumpable");
    if (sec.filter && !process.noNewPrivileges) {
        // Without no_new_privs only CAP_SYS_ADMIN lets us install the filter, so it goes
        // in now (runc's order) and the steps below run under it. The entry's memfd is
        // made first, in case the profile refuses memfd_create.
        int fd = entryFd();
        if (fd < 0 && fd != -ENOTSUP) throw sysError("create the container entry", -fd);
        int r = loadSeccomp(sys, *sec.filter);
        if (r < 0) throw sysError("load the seccomp filter", -r);
    }
    for (int cap = 0; cap < 64; ++cap) {
        if (sec.bounding & (uint64_t(1) << cap)) continue;
        int r = sys.prctl(PR_CAPBSET_DROP, static_cast<unsigned long>(cap));
        if (r == -EINVAL) break; // past CAP_LAST_CAP of this kernel
        if (r < 0) throw sysError("drop capability " + capabilityName(cap), -r);
    }
    const User &u = process.user;
    const CapabilitySets caps = processCapabilities(sec, u.uid);
    // A non-root uid loses every capability in setresuid unless they are kept.
    if (u.uid != 0 && (caps.permitted | caps.inheritable | caps.ambient))
        check(sys.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities across the uid change");
    check(sys.setgroups(u.additionalGids), "setgroups");
    check(sys.setresgid(u.gid, u.gid, u.gid), "setgid " + quote(std::to_string(u.gid)));
    check(sys.setresuid(u.uid, u.uid, u.uid), "setuid " + quote(std::to_string(u.uid)));
    // A non-root user with nothing to keep has no capability left after setresuid.
    if (u.uid == 0 || sec.sets || (caps.permitted | caps.inheritable))
        check(sys.capset(caps.effective, caps.permitted, caps.inheritable), "set capabilities");
    check(sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
          "clear ambient capabilities");
    for (int cap = 0; cap < 64 && caps.ambient; ++cap)
        if (caps.ambient & (uint64_t(1) << cap))
            check(sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<unsigned long>(cap),
                            0, 0),
                  "raise ambient capability " + capabilityName(cap));
    for (const auto &l : process.rlimits) {
        struct rlimit rl = {l.soft, l.hard};
        int r = sys.setrlimit(l.resource, rl);
        if (r < 0) throw sysError("ulimit " + quote(l.name), -r);
    }
    if (process.noNewPrivileges)
        check(sys.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
    // A uid change resets dumpability to fs.suid_dumpable: say it again.
    if (u.uid != 0) check(sys.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the process not dumpable");
}

int entryFd() noexcept {
    if (gEntryFd >= 0) return gEntryFd;
    if (kEntryBinarySize == 0) return -ENOTSUP;
    // MFD_EXEC (6.3): executable even where vm.memfd_noexec makes memfds noexec.
    int fd = ::memfd_create("mobileops-entry", MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec);
    if (fd < 0 && errno == EINVAL)
        fd = ::memfd_create("mobileops-entry", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    size_t done = 0;
    while (done < kEntryBinarySize) {
        ssize_t n = ::write(fd, kEntryBinary + done, kEntryBinarySize - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            ::close(fd);
            return -e;
        }
        done += static_cast<size_t>(n);
    }
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int e = errno;
        ::close(fd);
        return -e;
    }
    ::fcntl(fd, F_ADD_SEALS, kSealExec); // no chmod either, where the kernel has the seal
    ::fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL);
    gEntryFd = fd;
    return fd;
}

int execSearch(Syscalls &sys, const ProcessSpec &process, std::string &what) {
    auto argv = cstrings(process.args);
    auto envp = cstrings(process.env);
    const std::string &cmd = process.args[0];
    what = cmd;
    if (cmd.find('/') != std::string::npos)
        return sys.execve(cmd.c_str(), argv.data(), envp.data());
    std::string path = searchPath(process);
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
        ::umask(static_cast<mode_t>(process.umask));
        // Whatever the caller leaked must not reach the container (CVE-2024-21626).
        ::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
        int r = sys.chdir(process.cwd.c_str());
        if (r < 0) throw sysError("cwd " + quote(process.cwd), -r);
        checkCwdInRoot(process.cwd);
        if (process.gateFd >= 0) passGate(process, reportFd);

        const int entry = entryFd();
        if (entry < 0 && entry != -ENOTSUP) throw sysError("create the container entry", -entry);
        std::vector<std::string> args;
        if (entry >= 0) {
            args = {"mobileops-entry", reportFd >= 0 ? std::to_string(reportFd) : "-",
                    process.args[0].find('/') == std::string::npos ? searchPath(process) : ""};
            args.insert(args.end(), process.args.begin(), process.args.end());
        }
        auto argv = cstrings(args);
        auto envp = cstrings(process.env);
        // The last step before the exec: nothing of ours runs under the filter.
        if (process.security.filter && process.noNewPrivileges) {
            r = loadSeccomp(sys, *process.security.filter);
            if (r < 0) throw sysError("load the seccomp filter", -r);
        }
        if (entry < 0) {
            std::string what;
            r = execSearch(sys, process, what);
            int status = r == -ENOENT ? kExitNotFound : kExitCannotExec;
            writeReport(reportFd, r, status, "exec " + quote(what) + ": " + std::strerror(-r));
            ::_exit(status);
        }
        // The report pipe stays open for the entry, which closes it on its own exec.
        if (reportFd >= 0) ::fcntl(reportFd, F_SETFD, 0);
        ::syscall(SYS_execveat, entry, "", argv.data(), envp.data(), AT_EMPTY_PATH);
        int err = errno;
        if (reportFd >= 0) ::fcntl(reportFd, F_SETFD, FD_CLOEXEC);
        writeReport(reportFd, -err, kExitCannotExec,
                    std::string("exec the container entry: ") + std::strerror(err) +
                        (err == EACCES ? " (does vm.memfd_noexec forbid executable memfds?)" : ""));
        ::_exit(kExitCannotExec);
    } catch (...) {
        failChild(reportFd);
    }
}

} // namespace mobileops::nsruntime
