#include "HostDisk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace mobileops::cgroup::testing {

std::pair<unsigned, unsigned> hostDisk() {
    std::vector<std::string> candidates;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::string id, parent, dev, root, point;
        f >> id >> parent >> dev >> root >> point;
        if (point == "/") candidates.push_back(dev);
    }
    std::error_code ec;
    for (const auto &e : std::filesystem::directory_iterator("/sys/dev/block", ec))
        candidates.push_back(e.path().filename().string());
    for (const std::string &dev : candidates) {
        unsigned major = 0, minor = 0;
        if (std::sscanf(dev.c_str(), "%u:%u", &major, &minor) != 2 || !major) continue;
        std::ifstream uevent("/sys/dev/block/" + dev + "/uevent");
        std::string name;
        for (std::string line; std::getline(uevent, line);)
            if (line.rfind("DEVNAME=", 0) == 0) name = line.substr(8);
        struct stat st;
        std::string path = "/dev/" + name;
        if (name.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode) ||
            st.st_rdev != makedev(major, minor))
            continue;
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ::close(fd);
        return {major, minor};
    }
    return {0, 0};
}

} // namespace mobileops::cgroup::testing
