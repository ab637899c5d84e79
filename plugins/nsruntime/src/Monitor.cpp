#include "Monitor.h"

#include "Launcher.h"
#include "Process.h"
#include "Pty.h"
#include "State.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

std::string nanoTimestamp() {
    struct timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    ::gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
    return buf;
}

constexpr size_t kMaxLine = 16384;

void writeAll(int fd, const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; // a full disk must not stop the container
        off += static_cast<size_t>(n);
    }
}

[[noreturn]] void monitorMain(const Host &host, Syscalls &sys, const ContainerSpec &spec,
                              const std::string &id, const std::string &logPath, int report,
                              const LaunchOptions &options) {
    try {
        ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        ::prctl(PR_SET_NAME, reinterpret_cast<unsigned long>("mobileops-mon"), 0, 0, 0);
        ::signal(SIGPIPE, SIG_IGN);
        ::signal(SIGHUP, SIG_IGN);
        ::signal(SIGINT, SIG_IGN);
        int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 0; i < 3 && devNull >= 0; ++i) ::dup2(devNull, i);
        if (devNull > 2) ::close(devNull);
        dropInheritedLocks();

        int logFd = ::open(logPath.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (logFd < 0) throw sysError("open the log " + quote(logPath), errno);
        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0)
            throw sysError("pipe", errno);
        Pty pty;
        ChildIo io;
        io.out = out[1];
        io.err = err[1];
        if (spec.process.terminal) {
            pty = Pty::open(-1);
            io.tty = pty.slave();
            io.ttyPath = pty.slavePath();
        }
        ChildProcess child;
        try {
            child = launch(sys, spec, io, options);
        } catch (const LaunchError &e) {
            if (options.afterExit) options.afterExit(0);
            Host::Transaction tx(host);
            if (auto rec = host.get(kContainerKind, id)) {
                markStopped(*rec, e.exitStatus(), 0);
                (*rec)["error"] = e.what();
                host.put(kContainerKind, id, rec->value("name", ""), *rec);
            }
            tx.commit();
            writeReport(report, e.code(), e.exitStatus(), e.what());
            ::_exit(0);
        }
        ::close(out[1]);
        ::close(err[1]);
        pty.closeSlave();

        {
            Host::Transaction tx(host);
            auto rec = host.get(kContainerKind, id);
            if (!rec) {
                child.kill(SIGKILL);
                child.wait();
                if (options.afterExit) options.afterExit(SIGKILL);
                writeReport(report, MO_E_NOT_FOUND, kExitSetupFailed,
                            "container " + quote(id.substr(0, 12)) + " was removed while starting");
                ::_exit(0);
            }
            json self = processIdentity(::getpid());
            (*rec)["status"] = status::running;
            (*rec)["pid"] = child.pid();
            (*rec)["pid_start"] = processIdentity(child.pid())["start"];
            (*rec)["monitor_pid"] = self["pid"];
            (*rec)["monitor_start"] = self["start"];
            (*rec)["started"] = nowTimestamp();
            rec->erase("finished");
            rec->erase("exit_code");
            rec->erase("signal");
            rec->erase("error");
            rec->erase("oom_killed");
            host.put(kContainerKind, id, rec->value("name", ""), *rec);
            tx.commit();
        }
        writeReport(report, 0, child.pid(), "");
        ::close(report);

        LogWriter log(logFd);
        // The init's exit is watched too: processes it left behind (no PID namespace) may
        // hold the output pipes open, and only the cgroup's release ends them.
        struct pollfd fds[3] = {{spec.process.terminal ? pty.master() : out[0], POLLIN, 0},
                                {err[0], POLLIN, 0},
                                {options.afterExit ? child.pidfd() : -1, POLLIN, 0}};
        int open = 2;
        int signal = 0, code = 0;
        json exit = json::object();
        auto reap = [&] {
            code = child.wait(&signal);
            if (options.afterExit) exit = options.afterExit(signal);
        };
        char buf[16384];
        while (open > 0) {
            int n = ::poll(fds, 3, -1);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            for (int i = 0; i < 2; ++i) {
                if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
                if (r > 0) {
                    log.write(i + 1, buf, static_cast<size_t>(r));
                } else if (r == 0 || errno != EINTR) {
                    log.flush(i + 1);
                    fds[i].fd = -1;
                    --open;
                }
            }
            if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) {
                fds[2].fd = -1;
                reap();
            }
        }
        if (!child.waited()) reap();
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        Host::Transaction tx(host);
        if (auto rec = host.get(kContainerKind, id); rec && rec->value("pid", 0) == child.pid()) {
            markStopped(*rec, code, signal);
            rec->update(exit);
            host.put(kContainerKind, id, rec->value("name", ""), *rec);
        }
        tx.commit();
        ::_exit(0);
    } catch (...) {
        failChild(report);
    }
}

} // namespace

void LogWriter::emit(int stream, const std::string &line, bool full) {
    std::string out =
        nanoTimestamp() + (stream == 2 ? " stderr " : " stdout ") + (full ? "F " : "P ");
    out += line;
    out += '\n';
    writeAll(_fd, out);
}

void LogWriter::write(int stream, const char *data, size_t len) {
    std::string &p = _partial[stream];
    for (size_t i = 0; i < len; ++i) {
        if (data[i] == '\n') {
            emit(stream, p, true);
            p.clear();
        } else {
            p += data[i];
            if (p.size() >= kMaxLine) {
                emit(stream, p, false);
                p.clear();
            }
        }
    }
}

void LogWriter::flush(int stream) {
    if (!_partial[stream].empty()) emit(stream, _partial[stream], false);
    _partial[stream].clear();
}

bool parseLogLine(const std::string &line, LogLine &out) {
    auto a = line.find(' ');
    if (a == std::string::npos) return false;
    auto b = line.find(' ', a + 1);
    if (b == std::string::npos || b + 2 > line.size()) return false;
    out.time = line.substr(0, a);
    out.stream = line.substr(a + 1, b - a - 1);
    char tag = line[b + 1];
    out.text = b + 3 <= line.size() ? line.substr(b + 3) : std::string();
    if (tag == 'F') out.text += '\n';
    return out.stream == "stdout" || out.stream == "stderr";
}

void dropInheritedLocks() {
    DIR *d = ::opendir("/proc/self/fdinfo");
    if (!d) return;
    std::vector<int> fds;
    while (auto *e = ::readdir(d)) {
        int fd = std::atoi(e->d_name);
        if (fd <= 2 || fd == ::dirfd(d)) continue;
        std::string path = std::string("/proc/self/fdinfo/") + e->d_name;
        FILE *f = ::fopen(path.c_str(), "re");
        if (!f) continue;
        char line[512];
        bool locked = false;
        while (::fgets(line, sizeof line, f))
            if (std::strncmp(line, "lock:", 5) == 0 &&
                (std::strstr(line, "FLOCK") || std::strstr(line, "OFDLCK")))
                locked = true;
        ::fclose(f);
        if (locked) fds.push_back(fd);
    }
    ::closedir(d);
    for (int fd : fds) ::close(fd);
}

pid_t startMonitor(const Host &host, Syscalls &sys, const ContainerSpec &spec,
                   const std::string &id, const std::string &logPath,
                   const LaunchOptions &options) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) throw sysError("pipe", errno);
    pid_t first = ::fork();
    if (first < 0) {
        int e = errno;
        ::close(p[0]);
        ::close(p[1]);
        throw sysError("fork the monitor", e);
    }
    if (first == 0) {
        ::close(p[0]);
        ::setsid();
        pid_t monitor = ::fork();
        if (monitor != 0) ::_exit(monitor < 0 ? 1 : 0);
        monitorMain(host, sys, spec, id, logPath, p[1], options);
    }
    ::close(p[1]);
    int st;
    while (::waitpid(first, &st, 0) < 0 && errno == EINTR) {
    }
    ChildReport report;
    bool failed = readReport(p[0], report);
    ::close(p[0]);
    if (!failed)
        throw Error(MO_E_INTERNAL, "the monitor of " + quote(id.substr(0, 12)) +
                                       " exited before the container started");
    if (report.code != 0) throw LaunchError(report.code, report.message, report.exitStatus);
    return report.exitStatus;
}

} // namespace mobileops::nsruntime
