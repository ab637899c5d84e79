// Detached containers: a monitor process, double-forked from the CLI (so it is nobody's
// child but init's), session leader and subreaper, is the parent of the container's
// init. It captures stdout/stderr into the container's log, records running and then
// the exit (code, signal, time) in the state store, and exits with the container.
#pragma once

#include "Errors.h"
#include "Launcher.h"
#include "Spec.h"
#include "Syscalls.h"

#include <sys/types.h>

#include <string>

namespace mobileops::nsruntime {

// Writes the CRI log format: "<RFC 3339 nano time> <stream> <F|P> <line>", F for a full
// line, P for a part of a longer one.
class LogWriter {
public:
    explicit LogWriter(int fd) : _fd(fd) {}
    void write(int stream, const char *data, size_t len); // stream: 1 stdout, 2 stderr
    void flush(int stream);

private:
    void emit(int stream, const std::string &line, bool full);
    int _fd;
    std::string _partial[3];
};

// One decoded log line.
struct LogLine {
    std::string time, stream, text; // text includes the newline of a full line
};
bool parseLogLine(const std::string &line, LogLine &out);

// Fork the monitor for container `id` (whose record must exist) and return the pid of
// the container's init once it runs. Throws LaunchError when it could not start (the
// record then says why). Runs in the calling CLI process.
pid_t startMonitor(const Host &host, Syscalls &sys, const ContainerSpec &spec,
                   const std::string &id, const std::string &logPath,
                   const LaunchOptions &options = {});

// Close fds holding flock/OFD locks inherited from the parent, so the monitor does not
// keep the CLI's per-container lock for the container's lifetime.
void dropInheritedLocks();

} // namespace mobileops::nsruntime
