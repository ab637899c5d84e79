// One run of the mobileops command line for a request: posix_spawn (never a shell) with
// a fixed argv, the body on stdin, stdout and stderr collected; killed past a deadline.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace mobileops::api {

struct ChildResult {
    int exitStatus = -1; // the exit status, or 128 + the signal that ended it
    bool timedOut = false;
    bool tooLarge = false; // stdout passed the output limit (the child was killed)
    std::string out, err;
};

class Child {
public:
    // Start `exe` with argv (argv[0] included) in its own process group, cwd `/`, the
    // environment `env`, a default signal mask; stdin is a pipe when `withStdin`, else
    // /dev/null.
    Child(const std::string &exe, const std::vector<std::string> &argv,
          const std::vector<std::string> &env, bool withStdin);
    ~Child(); // kills and reaps a child still running
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;

    pid_t pid() const { return _pid; }
    int stdoutFd() const { return _out; }
    int stderrFd() const { return _err; }

    // Feed `input`, collect the output until the child exits; past `timeoutMs` (0: no
    // limit) it is killed.
    ChildResult run(const std::string &input, int timeoutMs, size_t maxOutput);
    // Signal the child, wait up to graceMs, then SIGKILL; returns the status as run's.
    int stop(int signal, int graceMs);
    // Reap the child (blocking); returns the status as run's.
    int wait();

private:
    pid_t _pid = -1;
    int _in = -1, _out = -1, _err = -1;
    bool _reaped = false;
    int _status = -1;
    void closeAll();
    bool reapNoHang();
};

} // namespace mobileops::api
