#include "SystemInfo.h"

#include <mobileops/abi.h>

#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifndef MOBILEOPS_VERSION
#define MOBILEOPS_VERSION "0.0.0"
#endif

namespace mobileops::core {

using json = nlohmann::json;

namespace {

json cgroupInfo() {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    json v1 = json::object();
    std::string v2;
    while (std::getline(in, line)) {
        // "... mountpoint opts - fstype source superopts"
        std::istringstream ls(line);
        std::string id, parent, dev, root, mountpoint, opts, field;
        ls >> id >> parent >> dev >> root >> mountpoint >> opts;
        while (ls >> field && field != "-") {
        }
        std::string fstype, source, superopts;
        ls >> fstype >> source >> superopts;
        if (fstype == "cgroup2" && v2.empty()) v2 = mountpoint;
        if (fstype == "cgroup") {
            std::istringstream so(superopts);
            std::string opt;
            while (std::getline(so, opt, ','))
                if (opt != "rw" && opt != "ro" && opt.rfind("name=", 0) != 0 &&
                    opt.find('=') == std::string::npos && opt != "clone_children" &&
                    opt != "noprefix" && opt != "nsdelegate" && opt != "xattr")
                    v1[opt] = mountpoint;
        }
    }
    json out;
    std::string layout =
        v1.empty() ? (v2.empty() ? "none" : "unified") : (v2.empty() ? "legacy" : "hybrid");
    out["layout"] = layout;
    out["v1"] = v1;
    if (!v2.empty()) {
        out["v2_mount"] = v2;
        std::ifstream ctl(v2 + "/cgroup.controllers");
        std::string c;
        json ctrls = json::array();
        while (ctl >> c) ctrls.push_back(c);
        out["v2_controllers"] = ctrls;
    }
    return out;
}

} // namespace

json systemInfo() {
    json j;
    j["version"] = MOBILEOPS_VERSION;
    j["abi"] = std::to_string(MO_ABI_MAJOR) + "." + std::to_string(MO_ABI_MINOR);
    struct utsname u {};
    if (::uname(&u) == 0) {
        j["kernel"] = std::string(u.release);
        j["arch"] = std::string(u.machine);
        j["hostname"] = std::string(u.nodename);
    }
    j["cgroup"] = cgroupInfo();
    json ns = json::object();
    for (const char *n : {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}) {
        struct stat st {};
        ns[n] = ::stat((std::string("/proc/self/ns/") + n).c_str(), &st) == 0;
    }
    j["namespaces"] = ns;
    struct stat st {};
    j["kvm"] = ::stat("/dev/kvm", &st) == 0;
    j["euid"] = ::geteuid();
    return j;
}

} // namespace mobileops::core
