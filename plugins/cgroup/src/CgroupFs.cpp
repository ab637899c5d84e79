#include "CgroupFs.h"

#include "DeviceBpf.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace mobileops::cgroup {

int RealCgroupFs::mkdir(const std::string &path) {
    return ::mkdir(path.c_str(), 0755) < 0 ? -errno : 0;
}

int RealCgroupFs::rmdir(const std::string &path) { return ::rmdir(path.c_str()) < 0 ? -errno : 0; }

int RealCgroupFs::write(const std::string &path, const std::string &value) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_TRUNC);
    if (fd < 0) return -errno;
    ssize_t n = ::write(fd, value.data(), value.size());
    int err = n < 0 ? errno : 0;
    ::close(fd);
    if (err) return -err;
    return static_cast<size_t>(n) == value.size() ? 0 : -EIO;
}

int RealCgroupFs::read(const std::string &path, std::string &out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    out.clear();
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            return -err;
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return 0;
}

bool RealCgroupFs::exists(const std::string &path) { return ::access(path.c_str(), F_OK) == 0; }

int RealCgroupFs::subdirs(const std::string &dir, std::vector<std::string> &out) {
    DIR *d = ::opendir(dir.c_str());
    if (!d) return -errno;
    out.clear();
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        if (e->d_type == DT_DIR) {
            out.push_back(name);
        } else if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISDIR(st.st_mode))
                out.push_back(name);
        }
    }
    ::closedir(d);
    return 0;
}

int RealCgroupFs::kill(pid_t pid, int signal) { return ::kill(pid, signal) < 0 ? -errno : 0; }

void RealCgroupFs::sleepMs(unsigned ms) {
    struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

CgroupFs &realFs() {
    static RealCgroupFs fs;
    return fs;
}

int RealCgroupFs::setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                                   std::string &detail) {
    return mobileops::cgroup::setDeviceProgram(dir, rules, detail);
}

} // namespace mobileops::cgroup
