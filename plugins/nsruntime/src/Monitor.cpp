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

// How long the output may stay quiet before a held partial line (a prompt) is stored.
constexpr int kQuietFlushMs = 250;

[[noreturn]] void monitorMain(const Host &host, Syscalls &sys, const ContainerSpec &spec,
                              const std::string &id, const mo_log_service *logService,
                              const json &logOptions, int report, const LaunchOptions &options) {
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

        // Before the launch, so that a log that cannot be opened fails the start cleanly;
        // the service starts threads only once output comes, after the clone.
        LogSink log(logService, id, logOptions);
        log.warn = [&host, &id](const std::string &w) {
            host.log(MO_LOG_WARNING, "the log of " + quote(id.substr(0, 12)) + ": " + w);
        };
        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0)
            throw sysError("pipe", errno);
        Pty pty;
        ChildIo io;
        io.out = out[1];
        io.err = err[1];
        if (spec.process.terminal) io.ownTerminal = &pty;
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
            // Here, not in the caller: a container that exits at once must not have its
            // exit recorded before its start.
            emitStart(host, *rec);
        }
        writeReport(report, 0, child.pid(), "");
        ::close(report);

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
        static char buf[65536];
        bool quiet = true;
        while (open > 0) {
            int n = ::poll(fds, 3, quiet ? -1 : kQuietFlushMs);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            if (n == 0) {
                log.flush();
                quiet = true;
                continue;
            }
            for (int i = 0; i < 2; ++i) {
                if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
                if (r > 0) {
                    log.write(i + 1, buf, static_cast<size_t>(r));
                    quiet = false;
                } else if (r == 0 || errno != EINTR) {
                    fds[i].fd = -1;
                    --open;
                }
            }
            if (fds[2].fd >= 0 && (fds[2].revents & POLLIN)) {
                fds[2].fd = -1;
                reap();
            }
        }
        log.flush();
        if (!child.waited()) reap();
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        json exited;
        {
            Host::Transaction tx(host);
            if (auto rec = host.get(kContainerKind, id);
                rec && rec->value("pid", 0) == child.pid()) {
                markStopped(*rec, code, signal);
                rec->update(exit);
                host.put(kContainerKind, id, rec->value("name", ""), *rec);
                exited = *rec;
            }
            tx.commit();
        }
        if (!exited.is_null()) emitExit(host, exited);
        // Last: a follower of the log stops when the writer is gone, and by then the
        // store says how the container ended.
        log.close();
        ::_exit(0);
    } catch (...) {
        failChild(report);
    }
}

} // namespace

LogSink::LogSink(const mo_log_service *service, const std::string &id, const json &options) {
    if (!service || !service->open) return;
    mo_error err = MO_ERROR_INIT;
    std::string text = options.dump();
    if (int rc = service->open(service->self, id.c_str(), text.c_str(), &_writer, &err); rc < 0) {
        _writer = nullptr;
        throw Error(rc, "open the log of " + quote(id.substr(0, 12)) + ": " + err.message);
    }
    _service = service;
}

LogSink::~LogSink() {
    try {
        close();
    } catch (...) {
    }
}

LogSink::LogSink(LogSink &&o) noexcept
    : warn(std::move(o.warn)), _service(o._service), _writer(o._writer) {
    o._writer = nullptr;
}

LogSink &LogSink::operator=(LogSink &&o) noexcept {
    if (this != &o) {
        close();
        warn = std::move(o.warn);
        _service = o._service;
        _writer = o._writer;
        o._writer = nullptr;
    }
    return *this;
}

void LogSink::failed(const mo_error &err) {
    if (warn) warn(err.message);
    mo_error ignored = MO_ERROR_INIT;
    _service->close(_service->self, _writer, &ignored);
    _writer = nullptr;
}

void LogSink::write(int stream, const char *data, size_t len) {
    if (!_writer) return;
    mo_error err = MO_ERROR_INIT;
    if (_service->write(_service->self, _writer, stream, 0, data, len, &err) < 0) failed(err);
}

void LogSink::flush() {
    if (!_writer || !_service->flush) return;
    mo_error err = MO_ERROR_INIT;
    if (_service->flush(_service->self, _writer, &err) < 0) failed(err);
}

void LogSink::close() {
    if (!_writer) return;
    mo_error err = MO_ERROR_INIT;
    mo_log_writer *w = _writer;
    _writer = nullptr;
    if (_service->close(_service->self, w, &err) < 0 && warn) warn(err.message);
}

void emitStart(const Host &host, const json &record) {
    try {
        host.event("container.start",
                   {{"id", record.value("id", "")}, {"name", record.value("name", "")}});
    } catch (const Error &e) {
        host.log(MO_LOG_WARNING, std::string("record the start event: ") + e.what());
    }
}

void emitExit(const Host &host, const json &record) {
    json payload = {{"id", record.value("id", "")},
                    {"name", record.value("name", "")},
                    {"exit_code", record.value("exit_code", -1)}};
    if (int sig = record.value("signal", 0); sig > 0) payload["signal"] = sig;
    bool oom = record.value("oom_killed", false);
    if (oom) payload["oom_killed"] = true;
    try {
        host.event("container.exit", payload);
        if (oom) host.event("container.oom", payload);
    } catch (const Error &e) {
        host.log(MO_LOG_WARNING, std::string("record the exit event: ") + e.what());
    }
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
                   const std::string &id, const mo_log_service *log, const json &logOptions,
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
        monitorMain(host, sys, spec, id, log, logOptions, p[1], options);
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
