// Detached containers: a monitor process, double-forked from the CLI (so it is nobody's
// child but init's), session leader and subreaper, is the parent of the container's
// init. It captures stdout/stderr into the container's log, records running and then
// the exit (code, signal, time) in the state store, and exits with the container.
#pragma once

#include "Errors.h"
#include "Launcher.h"
#include "Spec.h"
#include "Syscalls.h"

#include <mobileops/services.h>
#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <functional>
#include <string>

namespace mobileops::nsruntime {

// A container's output on its way to the log service (mo_log_service): opened for one run
// of the container, written as it is read from the pipes or the pty, closed when the
// streams end. Without a log service it keeps nothing (`active()` is false).
class LogSink {
public:
    LogSink() = default;
    // Opens the container's journal (options: mo_log_service.open's JSON). Throws Error.
    LogSink(const mo_log_service *service, const std::string &id, const nlohmann::json &options);
    ~LogSink(); // close(), errors dropped
    LogSink(LogSink &&other) noexcept;
    LogSink &operator=(LogSink &&other) noexcept;
    LogSink(const LogSink &) = delete;
    LogSink &operator=(const LogSink &) = delete;

    bool active() const { return _writer != nullptr; }
    // stream: MO_STREAM_STDOUT or MO_STREAM_STDERR. Errors are reported once through
    // `warn` and the sink stops keeping output: the container must not die of its log.
    void write(int stream, const char *data, size_t len);
    void flush();
    void close();
    std::function<void(const std::string &)> warn;

private:
    void failed(const mo_error &err);
    const mo_log_service *_service = nullptr;
    mo_log_writer *_writer = nullptr;
};

// Fork the monitor for container `id` (whose record must exist) and return the pid of
// the container's init once it runs. Throws LaunchError when it could not start (the
// record then says why). Runs in the calling CLI process.
pid_t startMonitor(const Host &host, Syscalls &sys, const ContainerSpec &spec,
                   const std::string &id, const mo_log_service *log,
                   const nlohmann::json &logOptions, const LaunchOptions &options = {});

// Record container.start {id, name} (when the record says running).
void emitStart(const Host &host, const nlohmann::json &record);
// Record the events of an exit: container.exit {id, name, exit_code, signal?,
// oom_killed?} and, when the kernel's OOM killer ended it, container.oom.
void emitExit(const Host &host, const nlohmann::json &record);

// Close fds holding flock/OFD locks inherited from the parent, so the monitor does not
// keep the CLI's per-container lock for the container's lifetime.
void dropInheritedLocks();

} // namespace mobileops::nsruntime
