// Every privileged or namespace-changing system call the engine makes goes through this
// interface, so unit tests can record the sequence (mounts, pivot_root, credentials)
// without root. Functions return 0 (or an fd) on success and -errno on failure; they
// never throw.
#pragma once

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

struct clone_args;

namespace mobileops::nsruntime {

class Syscalls {
public:
    virtual ~Syscalls() = default;

    virtual int mount(const char *source, const char *target, const char *type, unsigned long flags,
                      const char *data) = 0;
    virtual int umount2(const char *target, int flags) = 0;
    virtual int pivotRoot(const char *newRoot, const char *putOld) = 0;

    virtual int open(const char *path, int flags, mode_t mode = 0) = 0;
    // openat2(2); `resolve` is a RESOLVE_* mask.
    virtual int openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                        uint64_t resolve) = 0;
    virtual int close(int fd) = 0;
    virtual int fstat(int fd, struct stat *st) = 0;
    virtual int fstatvfs(int fd, struct statvfs *st) = 0;
    virtual int mkdirat(int dirfd, const char *path, mode_t mode) = 0;
    virtual int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) = 0;
    virtual int symlinkat(const char *target, int dirfd, const char *linkPath) = 0;
    virtual int chdir(const char *path) = 0;
    virtual int fchdir(int fd) = 0;
    // Write `content` to an existing file (uid_map, gid_map, setgroups).
    virtual int writeFile(const char *path, const std::string &content) = 0;

    virtual long clone3(struct clone_args *args) = 0;
    virtual int unshare(int flags) = 0;
    virtual int setns(int fd, int nstype) = 0;
    virtual int sethostname(const std::string &name) = 0;

    virtual int setgroups(const std::vector<gid_t> &groups) = 0;
    virtual int setresgid(gid_t r, gid_t e, gid_t s) = 0;
    virtual int setresuid(uid_t r, uid_t e, uid_t s) = 0;
    virtual int setrlimit(int resource, const struct rlimit &limit) = 0;
    virtual int prctl(int option, unsigned long a2, unsigned long a3 = 0, unsigned long a4 = 0,
                      unsigned long a5 = 0) = 0;
    // Set effective, permitted and inheritable capability sets (bit masks).
    virtual int capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) = 0;
    virtual int execve(const char *path, char *const argv[], char *const envp[]) = 0;
    // Bring the loopback interface of the current network namespace up.
    virtual int loopbackUp() = 0;
};

// The real kernel.
class RealSyscalls final : public Syscalls {
public:
    static RealSyscalls &instance();

    int mount(const char *source, const char *target, const char *type, unsigned long flags,
              const char *data) override;
    int umount2(const char *target, int flags) override;
    int pivotRoot(const char *newRoot, const char *putOld) override;
    int open(const char *path, int flags, mode_t mode) override;
    int openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                uint64_t resolve) override;
    int close(int fd) override;
    int fstat(int fd, struct stat *st) override;
    int fstatvfs(int fd, struct statvfs *st) override;
    int mkdirat(int dirfd, const char *path, mode_t mode) override;
    int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) override;
    int symlinkat(const char *target, int dirfd, const char *linkPath) override;
    int chdir(const char *path) override;
    int fchdir(int fd) override;
    int writeFile(const char *path, const std::string &content) override;
    long clone3(struct clone_args *args) override;
    int unshare(int flags) override;
    int setns(int fd, int nstype) override;
    int sethostname(const std::string &name) override;
    int setgroups(const std::vector<gid_t> &groups) override;
    int setresgid(gid_t r, gid_t e, gid_t s) override;
    int setresuid(uid_t r, uid_t e, uid_t s) override;
    int setrlimit(int resource, const struct rlimit &limit) override;
    int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
              unsigned long a5) override;
    int capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) override;
    int execve(const char *path, char *const argv[], char *const envp[]) override;
    int loopbackUp() override;
};

} // namespace mobileops::nsruntime
