#include "FakeCgroupFs.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace mobileops::cgroup::testing {

namespace {

std::string joinList(const std::set<std::string> &s, const char *sep) {
    std::string out;
    for (const std::string &c : s) out += (out.empty() ? "" : sep) + c;
    return out;
}

std::set<std::string> words(const std::string &text) {
    std::set<std::string> out;
    std::istringstream in(text);
    for (std::string w; in >> w;) out.insert(w);
    return out;
}

} // namespace

std::vector<FakeMount> hybridMounts() {
    return {{1, "/sys/fs/cgroup/cpu", {"cpu"}},
            {1, "/sys/fs/cgroup/cpuacct", {"cpuacct"}},
            {1, "/sys/fs/cgroup/cpuset", {"cpuset"}},
            {1, "/sys/fs/cgroup/memory", {"memory"}, "/process_api/abc"},
            {1, "/sys/fs/cgroup/devices", {"devices"}},
            {1, "/sys/fs/cgroup/freezer", {"freezer"}},
            {1, "/sys/fs/cgroup/blkio", {"blkio"}},
            {1, "/sys/fs/cgroup/pids", {"pids"}},
            {1, "/sys/fs/cgroup/systemd", {}},
            {2, "/sys/fs/cgroup/unified", {"hugetlb"}}};
}

std::vector<FakeMount> unifiedMounts() {
    return {
        {2, "/sys/fs/cgroup", {"cpu", "cpuset", "io", "memory", "pids", "hugetlb"}, "/user.slice"}};
}

std::vector<FakeMount> legacyMounts() {
    return {{1, "/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"}},
            {1, "/sys/fs/cgroup/memory", {"memory"}},
            {1, "/sys/fs/cgroup/pids", {"pids"}},
            {1, "/sys/fs/cgroup/freezer", {"freezer"}}};
}

FakeCgroupFs::FakeCgroupFs(std::vector<FakeMount> mounts) : _mounts(std::move(mounts)) {
    char tmpl[] = "/tmp/cgroup-fake-XXXXXX";
    _root = ::mkdtemp(tmpl);
    fs::create_directories(_root + "/proc/self");
    std::ofstream mi(_root + "/proc/self/mountinfo"), cg(_root + "/proc/self/cgroup");
    mi << "25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw\n";
    int id = 30, hid = 1;
    for (FakeMount &m : _mounts) {
        std::string dir = _root + m.mountpoint;
        fs::create_directories(dir);
        if (m.version == 2) {
            mi << id << " 25 0:" << id << " / " << m.mountpoint
               << " rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
            cg << "0::" << m.own << "\n";
            ++id;
            put(dir + "/cgroup.controllers", joinList(m.controllers, " "));
            put(dir + "/cgroup.subtree_control", "");
            put(dir + "/cgroup.procs", "");
        } else {
            std::string opts =
                m.controllers.empty() ? "name=systemd" : joinList(m.controllers, ",");
            mi << id << " 25 0:" << id << " / " << m.mountpoint
               << " rw,relatime - cgroup cgroup rw," << opts << "\n";
            cg << hid++ << ":" << opts << ":" << m.own << "\n";
            ++id;
            put(dir + "/cgroup.procs", "");
            if (m.controllers.count("cpuset")) {
                put(dir + "/cpuset.cpus", "0-3");
                put(dir + "/cpuset.mems", "0");
            }
        }
        if (m.own != "/") {
            fs::create_directories(dir + m.own);
            mkdir(dir + m.own); // populate the files (EEXIST is fine)
        }
    }
}

FakeCgroupFs::~FakeCgroupFs() {
    std::error_code ec;
    fs::remove_all(_root, ec);
}

const FakeMount *FakeCgroupFs::mountOf(const std::string &path) const {
    const FakeMount *best = nullptr;
    for (const FakeMount &m : _mounts) {
        std::string mp = _root + m.mountpoint;
        if (path.compare(0, mp.size() + 1, mp + "/") == 0 &&
            (!best || m.mountpoint.size() > best->mountpoint.size()))
            best = &m;
    }
    return best;
}

std::string FakeCgroupFs::get(const std::string &path) const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    std::string out = s.str();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

void FakeCgroupFs::put(const std::string &path, const std::string &value) const {
    std::ofstream(path, std::ios::trunc) << value;
}

int FakeCgroupFs::mkdir(const std::string &path) {
    const FakeMount *m = mountOf(path);
    if (!m) return -EACCES;
    int rc = ::mkdir(path.c_str(), 0755);
    if (rc < 0 && errno != EEXIST) return -errno;
    bool existed = rc < 0;
    std::map<std::string, std::string> files = {{"cgroup.procs", ""}};
    if (m->version == 2) {
        std::string parent = path.substr(0, path.rfind('/'));
        std::set<std::string> enabled = words(get(parent + "/cgroup.subtree_control"));
        files["cgroup.controllers"] = joinList(enabled, " ");
        files["cgroup.subtree_control"] = "";
        files["cgroup.events"] = "populated 0\nfrozen 0";
        files["cgroup.freeze"] = "0";
        files["cgroup.kill"] = "";
        files["cpu.stat"] = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500";
        if (enabled.count("cpu")) {
            files["cpu.max"] = "max 100000";
            files["cpu.weight"] = "100";
        }
        if (enabled.count("memory")) {
            files["memory.max"] = "max";
            files["memory.low"] = "0";
            files["memory.current"] = "4096";
            files["memory.peak"] = "8192";
            files["memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0";
            files["memory.swap.max"] = "max";
        }
        if (enabled.count("pids")) {
            files["pids.max"] = "max";
            files["pids.current"] = "0";
        }
        if (enabled.count("cpuset")) files["cpuset.cpus"] = "";
        if (enabled.count("io")) {
            files["io.stat"] = "";
            files["io.max"] = "";
            files["io.bfq.weight"] = "default 100"; // a bfq host: no blk-iocost io.weight
        }
    } else {
        files["tasks"] = "";
        const auto &c = m->controllers;
        if (c.count("cpu")) {
            files["cpu.cfs_quota_us"] = "-1";
            files["cpu.cfs_period_us"] = "100000";
            files["cpu.shares"] = "1024";
            files["cpu.stat"] = "nr_periods 0\nnr_throttled 0\nthrottled_time 0";
        }
        if (c.count("cpuacct")) {
            files["cpuacct.usage"] = "123456";
            files["cpuacct.stat"] = "user 10\nsystem 5";
        }
        if (c.count("memory")) {
            files["memory.limit_in_bytes"] = "9223372036854771712";
            files["memory.soft_limit_in_bytes"] = "9223372036854771712";
            files["memory.usage_in_bytes"] = "4096";
            files["memory.max_usage_in_bytes"] = "8192";
            files["memory.oom_control"] = "oom_kill_disable 0\nunder_oom 0\noom_kill 0";
            files["memory.memsw.limit_in_bytes"] = "9223372036854771712";
            files["memory.swappiness"] = "60";
        }
        if (c.count("pids")) {
            files["pids.max"] = "max";
            files["pids.current"] = "0";
        }
        if (c.count("cpuset")) {
            files["cpuset.cpus"] = "";
            files["cpuset.mems"] = "";
        }
        if (c.count("freezer")) files["freezer.state"] = "THAWED";
        if (c.count("devices")) {
            files["devices.allow"] = "";
            files["devices.deny"] = "";
            files["devices.list"] = "a *:* rwm";
        }
        if (c.count("blkio")) {
            files["blkio.throttle.io_service_bytes_recursive"] =
                "8:0 Read 4096\n8:0 Write 8192\nTotal 12288";
            files["blkio.throttle.io_serviced_recursive"] = "8:0 Read 1\n8:0 Write 2\nTotal 3";
            files["blkio.bfq.weight"] = "100"; // a bfq host: no cfq blkio.weight
            for (const char *f : {"read_bps", "write_bps", "read_iops", "write_iops"})
                files[std::string("blkio.throttle.") + f + "_device"] = "";
        }
    }
    for (const auto &[name, value] : files)
        if (!existed || !fs::exists(path + "/" + name)) put(path + "/" + name, value);
    return existed ? -EEXIST : 0;
}

int FakeCgroupFs::rmdir(const std::string &path) {
    if (!fs::is_directory(path)) return -ENOENT;
    if (!get(path + "/cgroup.procs").empty()) return -EBUSY;
    for (const auto &e : fs::directory_iterator(path))
        if (e.is_directory()) return -EBUSY;
    std::error_code ec;
    fs::remove_all(path, ec);
    return ec ? -EIO : 0;
}

int FakeCgroupFs::write(const std::string &path, const std::string &value) {
    int rc = apply(path, value);
    if (rc == 0 && afterWrite) afterWrite(path, value);
    return rc;
}

int FakeCgroupFs::apply(const std::string &path, const std::string &value) {
    std::string file = path.substr(path.rfind('/') + 1);
    std::string dir = path.substr(0, path.rfind('/'));
    if (auto it = _fail.find(file); it != _fail.end()) return -it->second;
    if (!fs::exists(path)) return -ENOENT;
    writes.emplace_back(path, value);
    if (file == "cgroup.subtree_control") {
        std::set<std::string> on = words(get(path));
        for (const std::string &w : words(value)) {
            if (w[0] == '+') on.insert(w.substr(1));
            if (w[0] == '-') on.erase(w.substr(1));
        }
        put(path, joinList(on, " "));
    } else if (file == "cgroup.freeze") {
        put(path, value);
        put(dir + "/cgroup.events",
            std::string("populated 0\nfrozen ") + (value == "1" ? "1" : "0"));
    } else if (file == "cgroup.kill") {
        std::istringstream in(get(dir + "/cgroup.procs"));
        for (pid_t pid; in >> pid;) removePid(pid);
    } else if (file == "cgroup.procs") {
        // A process is in one cgroup per hierarchy: move it.
        const FakeMount *m = mountOf(path);
        pid_t pid = std::atoi(value.c_str());
        for (const auto &e : fs::recursive_directory_iterator(_root + m->mountpoint)) {
            if (e.path().filename() != "cgroup.procs") continue;
            std::string text = get(e.path()), out;
            std::istringstream in(text);
            for (pid_t p; in >> p;)
                if (p != pid) out += std::to_string(p) + "\n";
            put(e.path(), out);
        }
        put(path, get(path) + (get(path).empty() ? "" : "\n") + value);
    } else {
        put(path, value);
    }
    return 0;
}

void FakeCgroupFs::removePid(pid_t pid) {
    for (const auto &e : fs::recursive_directory_iterator(_root + "/sys")) {
        if (e.path().filename() != "cgroup.procs") continue;
        std::string text = get(e.path()), out;
        std::istringstream in(text);
        for (pid_t p; in >> p;)
            if (p != pid) out += std::to_string(p) + "\n";
        put(e.path(), out);
    }
}

int FakeCgroupFs::kill(pid_t pid, int signal) {
    signals.emplace_back(pid, signal);
    if (signal == SIGKILL && killable.count(pid)) removePid(pid);
    return 0;
}

int FakeCgroupFs::setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                                   std::string &detail) {
    const FakeMount *m = mountOf(dir + "/x");
    if (!m || m->version != 2 || !fs::is_directory(dir)) {
        detail = "attach the device program to `" + dir + "`";
        return -EBADF;
    }
    devicePrograms[dir] = rules;
    return 0;
}

} // namespace mobileops::cgroup::testing
