// Shared by the root tests: one busybox rootfs per test binary (tools/make-rootfs.sh),
// output capture through memfds, and leak checks (mounts, children).
#pragma once

#include "Launcher.h"
#include "Spec.h"
#include "Syscalls.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace mobileops::nsruntime::testing {

inline std::string &rootfsPath() {
    static std::string path;
    return path;
}

// Builds the rootfs before the first test and removes it after the last.
class RootfsEnvironment : public ::testing::Environment {
public:
    void SetUp() override {
        if (::geteuid() != 0) return;
        char tmpl[] = "/tmp/nsruntime-rootfs-XXXXXX";
        if (!::mkdtemp(tmpl)) return;
        ::chmod(tmpl, 0755); // a user namespace's root must be able to walk it
        std::string dir = std::string(tmpl) + "/rootfs";
        std::string cmd = std::string(MOBILEOPS_SOURCE_DIR) + "/tools/make-rootfs.sh " + dir;
        if (std::system(cmd.c_str()) == 0) rootfsPath() = dir;
        _base = tmpl;
    }
    void TearDown() override {
        if (!_base.empty()) std::system(("rm -rf " + _base).c_str());
    }

private:
    std::string _base;
};

inline std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::string readFd(int fd) {
    std::string out;
    ::lseek(fd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
}

// An in-memory file to capture a container's output.
struct Capture {
    int fd = ::memfd_create("capture", MFD_CLOEXEC);
    ~Capture() { ::close(fd); }
    std::string text() const { return readFd(fd); }
};

// A container's exit status and output.
struct Captured {
    int status = -1;
    std::string out, err;
};

// Run `spec` in the foreground to its end (runContainer), capturing stdout and stderr.
inline Captured runCaptured(const ContainerSpec &spec) {
    Capture out, err;
    ChildIo io;
    io.out = out.fd;
    io.err = err.fd;
    Captured r;
    r.status = runContainer(RealSyscalls::instance(), spec, io);
    r.out = out.text();
    r.err = err.text();
    return r;
}

// Launch `spec` (the launcher alone: no monitor, no record) and wait for its end,
// capturing stdout and stderr; a failed launch gives its exit status and message.
inline Captured launchCaptured(const ContainerSpec &spec, const LaunchOptions &options = {}) {
    Capture out, err;
    ChildIo io;
    io.out = out.fd;
    io.err = err.fd;
    Captured r;
    try {
        ChildProcess child = launch(RealSyscalls::instance(), spec, io, options);
        r.status = child.wait();
    } catch (const LaunchError &e) {
        r.status = e.exitStatus();
        r.err = e.what();
        return r;
    }
    r.out = out.text();
    r.err = err.text();
    return r;
}

// Host mounts mentioning `path`: must stay 0, containers mount only in their namespace.
inline int hostMountsUnder(const std::string &path) {
    std::istringstream in(slurp("/proc/self/mountinfo"));
    int n = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find(path) != std::string::npos) ++n;
    return n;
}

// True when this process has no child left, reaped or not.
inline bool noChildren() {
    int st;
    pid_t r = ::waitpid(-1, &st, WNOHANG);
    return r < 0 && errno == ECHILD;
}

#define REQUIRE_ROOT_AND_ROOTFS()                                                                  \
    do {                                                                                           \
        if (::geteuid() != 0) GTEST_SKIP() << "needs root: creates namespaces and mounts";         \
        if (::mobileops::nsruntime::testing::rootfsPath().empty())                                 \
            GTEST_SKIP() << "tools/make-rootfs.sh failed: is busybox-static installed?";           \
    } while (0)

} // namespace mobileops::nsruntime::testing
