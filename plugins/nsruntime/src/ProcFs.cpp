#include "ProcFs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace mobileops::nsruntime {

namespace {

std::string readSmall(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && out.size() < 65536) out.append(buf, n);
    ::close(fd);
    return out;
}

// Fields after "(comm)" of /proc/<pid>/stat; comm may hold spaces and parentheses.
std::vector<std::string> statFields(pid_t pid) {
    std::string s = readSmall("/proc/" + std::to_string(pid) + "/stat");
    auto close = s.rfind(')');
    std::vector<std::string> out;
    if (close == std::string::npos) return out;
    size_t i = close + 2;
    while (i < s.size()) {
        size_t j = s.find(' ', i);
        if (j == std::string::npos) j = s.size();
        out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

} // namespace

std::optional<uint64_t> processStartTime(pid_t pid) {
    if (pid <= 0) return std::nullopt;
    auto f = statFields(pid);
    // Fields from 3 on: state is 3, starttime is 22.
    if (f.size() < 20) return std::nullopt;
    return std::strtoull(f[19].c_str(), nullptr, 10);
}

bool processAlive(pid_t pid, uint64_t startTime) {
    auto st = processStartTime(pid);
    if (!st) return false;
    if (startTime && *st != startTime) return false;
    auto f = statFields(pid);
    return !f.empty() && f[0] != "Z" && f[0] != "X";
}

uint64_t namespaceInode(pid_t pid, const char *ns) {
    struct stat st;
    std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
    if (::stat(path.c_str(), &st) < 0) return 0;
    return st.st_ino;
}

std::vector<pid_t> processesInPidNamespace(uint64_t pidnsInode) {
    std::vector<pid_t> out;
    if (!pidnsInode) return out;
    DIR *d = ::opendir("/proc");
    if (!d) return out;
    while (auto *e = ::readdir(d)) {
        char *end;
        long pid = std::strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        if (namespaceInode(static_cast<pid_t>(pid), "pid") == pidnsInode)
            out.push_back(static_cast<pid_t>(pid));
    }
    ::closedir(d);
    return out;
}

std::optional<ProcessInfo> processInfo(pid_t pid) {
    auto f = statFields(pid);
    if (f.size() < 2) return std::nullopt;
    ProcessInfo info;
    info.pid = pid;
    info.state = f[0].empty() ? '?' : f[0][0];
    info.ppid = static_cast<pid_t>(std::strtol(f[1].c_str(), nullptr, 10));
    struct stat st;
    if (::stat(("/proc/" + std::to_string(pid)).c_str(), &st) == 0) info.uid = st.st_uid;
    std::string cmd = readSmall("/proc/" + std::to_string(pid) + "/cmdline");
    while (!cmd.empty() && cmd.back() == 0) cmd.pop_back();
    for (auto &c : cmd)
        if (c == 0) c = ' ';
    if (cmd.empty()) {
        std::string s = readSmall("/proc/" + std::to_string(pid) + "/stat");
        auto a = s.find('('), b = s.rfind(')');
        if (a != std::string::npos && b != std::string::npos && b > a)
            cmd = "[" + s.substr(a + 1, b - a - 1) + "]";
    }
    info.command = cmd;
    return info;
}

} // namespace mobileops::nsruntime
