#include "Syscalls.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mobileops::nsruntime {

namespace {
int ret(long r) { return r < 0 ? -errno : static_cast<int>(r); }
} // namespace

RealSyscalls &RealSyscalls::instance() {
    static RealSyscalls real;
    return real;
}

int RealSyscalls::mount(const char *source, const char *target, const char *type,
                        unsigned long flags, const char *data) {
    return ret(::mount(source, target, type, flags, data));
}
int RealSyscalls::umount2(const char *target, int flags) { return ret(::umount2(target, flags)); }
int RealSyscalls::pivotRoot(const char *newRoot, const char *putOld) {
    return ret(::syscall(SYS_pivot_root, newRoot, putOld));
}
int RealSyscalls::open(const char *path, int flags, mode_t mode) {
    return ret(::open(path, flags, mode));
}
int RealSyscalls::openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                          uint64_t resolve) {
    struct open_how how = {};
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    long r;
    do r = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (r < 0 && errno == EAGAIN);
    return ret(r);
}
int RealSyscalls::close(int fd) { return ret(::close(fd)); }
int RealSyscalls::fstat(int fd, struct stat *st) { return ret(::fstat(fd, st)); }
int RealSyscalls::fstatvfs(int fd, struct statvfs *st) { return ret(::fstatvfs(fd, st)); }
int RealSyscalls::mkdirat(int dirfd, const char *path, mode_t mode) {
    return ret(::mkdirat(dirfd, path, mode));
}
int RealSyscalls::mknodat(int dirfd, const char *path, mode_t mode, dev_t dev) {
    return ret(::mknodat(dirfd, path, mode, dev));
}
int RealSyscalls::symlinkat(const char *target, int dirfd, const char *linkPath) {
    return ret(::symlinkat(target, dirfd, linkPath));
}
int RealSyscalls::chdir(const char *path) { return ret(::chdir(path)); }
int RealSyscalls::fchdir(int fd) { return ret(::fchdir(fd)); }
int RealSyscalls::writeFile(const char *path, const std::string &content) {
    int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = ::write(fd, content.data(), content.size());
    int e = n < 0 ? errno : (static_cast<size_t>(n) != content.size() ? EIO : 0);
    ::close(fd);
    return -e;
}
long RealSyscalls::clone3(struct clone_args *args) {
    long r = ::syscall(SYS_clone3, args, sizeof *args);
    return r < 0 ? -errno : r;
}
int RealSyscalls::unshare(int flags) { return ret(::unshare(flags)); }
int RealSyscalls::setns(int fd, int nstype) { return ret(::setns(fd, nstype)); }
int RealSyscalls::sethostname(const std::string &name) {
    return ret(::sethostname(name.data(), name.size()));
}
int RealSyscalls::setgroups(const std::vector<gid_t> &groups) {
    // The raw syscall: glibc's wrapper would broadcast to all threads (setxid), which is
    // what we want in a single-threaded child either way.
    return ret(::syscall(SYS_setgroups, groups.size(), groups.data()));
}
int RealSyscalls::setresgid(gid_t r, gid_t e, gid_t s) {
    return ret(::syscall(SYS_setresgid, r, e, s));
}
int RealSyscalls::setresuid(uid_t r, uid_t e, uid_t s) {
    return ret(::syscall(SYS_setresuid, r, e, s));
}
int RealSyscalls::setrlimit(int resource, const struct rlimit &limit) {
    return ret(::setrlimit(static_cast<__rlimit_resource>(resource), &limit));
}
int RealSyscalls::prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                        unsigned long a5) {
    return ret(::prctl(option, a2, a3, a4, a5));
}
int RealSyscalls::capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {};
    data[0].effective = static_cast<uint32_t>(effective);
    data[1].effective = static_cast<uint32_t>(effective >> 32);
    data[0].permitted = static_cast<uint32_t>(permitted);
    data[1].permitted = static_cast<uint32_t>(permitted >> 32);
    data[0].inheritable = static_cast<uint32_t>(inheritable);
    data[1].inheritable = static_cast<uint32_t>(inheritable >> 32);
    return ret(::syscall(SYS_capset, &header, data));
}
int RealSyscalls::execve(const char *path, char *const argv[], char *const envp[]) {
    return ret(::execve(path, argv, envp));
}
int RealSyscalls::loopbackUp() {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct ifreq ifr = {};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int r = ::ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (r == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ::ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    int e = r < 0 ? errno : 0;
    ::close(fd);
    return -e;
}

} // namespace mobileops::nsruntime
