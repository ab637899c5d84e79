#include <mobileops/common/Mounts.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace mobileops::common {

std::string unescapeMountinfo(const std::string &s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' &&
            s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out +=
                static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::vector<MountEntry> mountTable() {
    std::vector<MountEntry> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        MountEntry e;
        std::string id, parent, devno, root, options, field;
        fields >> id >> parent >> devno >> root >> e.mountPoint >> options;
        // Optional fields up to " - ", then fstype, source, super options.
        while (fields >> field && field != "-") {
        }
        fields >> e.fstype >> e.source >> e.superOptions;
        e.mountPoint = unescapeMountinfo(e.mountPoint);
        e.source = unescapeMountinfo(e.source);
        e.options = options;
        unsigned major = 0, minor = 0;
        if (std::sscanf(devno.c_str(), "%u:%u", &major, &minor) == 2)
            e.device = makedev(major, minor);
        out.push_back(std::move(e));
    }
    return out;
}

bool isMountPoint(const std::string &path) {
    for (const auto &m : mountTable())
        if (m.mountPoint == path) return true;
    return false;
}

std::vector<std::string> mountsBelow(const std::string &path) {
    std::vector<std::string> out;
    for (const auto &m : mountTable())
        if (m.mountPoint == path || m.mountPoint.rfind(path + "/", 0) == 0)
            out.push_back(m.mountPoint);
    std::sort(out.begin(), out.end(),
              [](const std::string &a, const std::string &b) { return a.size() > b.size(); });
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::optional<MountEntry> mountOf(const std::string &path) {
    struct stat st;
    std::string p = path;
    while (::stat(p.c_str(), &st) < 0) {
        if (errno != ENOENT || p == "/" || p.empty()) return std::nullopt;
        auto slash = p.rfind('/');
        p = slash == 0 ? "/" : p.substr(0, slash);
    }
    // The mount of that device whose point is the longest prefix of the path; any mount
    // of the device when the path reached it through a symlink.
    std::optional<MountEntry> found, any;
    for (auto &m : mountTable()) {
        if (m.device != st.st_dev) continue;
        if (!any) any = m;
        bool prefix =
            m.mountPoint == "/" || p == m.mountPoint || p.rfind(m.mountPoint + "/", 0) == 0;
        if (prefix && (!found || m.mountPoint.size() > found->mountPoint.size())) found = m;
    }
    if (!found) found = any;
    return found;
}

} // namespace mobileops::common
