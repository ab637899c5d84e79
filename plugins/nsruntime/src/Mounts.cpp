#include "Mounts.h"

#include "Errors.h"
#include "SystemMode.h"

#include <mobileops/common/Mounts.h>

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace mobileops::nsruntime {

namespace {

// RAII for an fd obtained through Syscalls.
class Fd {
public:
    Fd(Syscalls &sys, int fd) : _sys(sys), _fd(fd) {}
    ~Fd() {
        if (_fd >= 0) _sys.close(_fd);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const { return _fd; }

private:
    Syscalls &_sys;
    int _fd;
};

constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

// Flags a user namespace may not clear on a remount (mount_too_revealing / MNT_LOCK_*).
unsigned long lockedFlags(Syscalls &sys, int fd) {
    struct statvfs st;
    if (sys.fstatvfs(fd, &st) < 0) return 0;
    unsigned long f = 0;
    if (st.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (st.f_flag & ST_NODEV) f |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (st.f_flag & ST_RDONLY) f |= MS_RDONLY;
    if (st.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

std::vector<std::string> components(const std::string &path) {
    std::vector<std::string> out;
    std::istringstream in(path);
    for (std::string c; std::getline(in, c, '/');)
        if (!c.empty() && c != ".") out.push_back(c);
    return out;
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string part; std::getline(in, part, sep);) out.push_back(part);
    return out;
}

// The kernel log from now on (/dev/kmsg, readable by the host's root): what a failing
// mount printed there. Not available (no CAP_SYSLOG, dmesg_restrict in a user namespace),
// it reads nothing and the caller explains the errno instead.
class KernelLog {
public:
    KernelLog() : _fd(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
        if (_fd >= 0) ::lseek(_fd, 0, SEEK_END);
    }
    ~KernelLog() {
        if (_fd >= 0) ::close(_fd);
    }
    KernelLog(const KernelLog &) = delete;
    KernelLog &operator=(const KernelLog &) = delete;

    // New records containing `tag` ("overlayfs:"), "; "-joined, from the tag on.
    std::string lines(const std::string &tag) const {
        std::string out;
        char buf[8192];
        for (int i = 0; _fd >= 0 && i < 256; ++i) {
            ssize_t n = ::read(_fd, buf, sizeof buf - 1);
            if (n < 0 && errno == EPIPE) continue; // overwritten records: go on
            if (n <= 0) break;
            std::string record(buf, static_cast<size_t>(n));
            // "PRIO,SEQ,USEC,FLAGS;MESSAGE\n" and continuation lines.
            auto semi = record.find(';');
            std::string text = record.substr(semi == std::string::npos ? 0 : semi + 1);
            text = text.substr(0, text.find('\n'));
            if (auto at = text.find(tag); at != std::string::npos)
                out += (out.empty() ? "" : "; ") + text.substr(at);
        }
        return out;
    }

private:
    int _fd;
};

// What the kernel said when it refused to create a `type` filesystem with `options`:
// the same request made again through fsopen(2), whose context logs the reasons that
// filesystems report with the fs_context API. Empty when there is nothing to read.
std::string kernelReason(const char *type, const std::string &source, const std::string &options) {
    int fs = ::fsopen(type, FSOPEN_CLOEXEC);
    if (fs < 0) return {};
    bool ok =
        source.empty() || ::fsconfig(fs, FSCONFIG_SET_STRING, "source", source.c_str(), 0) == 0;
    for (const auto &o : split(options, ',')) {
        if (!ok || o.empty()) continue;
        auto eq = o.find('=');
        ok = eq == std::string::npos ? ::fsconfig(fs, FSCONFIG_SET_FLAG, o.c_str(), nullptr, 0) == 0
                                     : ::fsconfig(fs, FSCONFIG_SET_STRING, o.substr(0, eq).c_str(),
                                                  o.substr(eq + 1).c_str(), 0) == 0;
    }
    if (ok) ::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
    std::string reason;
    char buf[1024];
    for (ssize_t n; (n = ::read(fs, buf, sizeof buf - 1)) > 0;) {
        std::string line(buf, static_cast<size_t>(n));
        while (!line.empty() && line.back() == '\n') line.pop_back();
        // "e overlayfs: ..." errors, "w ..." warnings, "i ..." information.
        if (line.size() > 2 && (line[0] == 'e' || line[0] == 'w') && line[1] == ' ')
            reason += (reason.empty() ? "" : "; ") + line.substr(2);
    }
    ::close(fs);
    return reason;
}

// `text` with every occurrence of `from` replaced by `to`.
std::string replaced(std::string text, const std::string &from, const std::string &to) {
    for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size())
        text.replace(at, from.size(), to);
    return text;
}

// When dmesg is all the kernel said: what an overlay mount's errno usually means.
std::string overlayErrno(int err) {
    switch (err) {
    case ENODEV:
        return "this kernel has no overlay filesystem (load the `overlay` module)";
    case EINVAL:
        return "the kernel does not accept it as a lower layer (overlayfs cannot stack on this "
               "filesystem, or it is an overlayfs itself whose options forbid nesting)";
    case EPERM:
    case EACCES:
        return "permission denied (a user namespace cannot use this directory as a layer)";
    case ELOOP:
        return "the layers overlap";
    case ENAMETOOLONG:
        return "its filesystem's names are too long for overlayfs";
    default:
        return std::strerror(err);
    }
}

constexpr const char *kCgroupTop = "/sys/fs/cgroup";

std::string readText(const std::string &path) {
    std::ifstream in(path);
    std::ostringstream s;
    if (in) s << in.rdbuf();
    return s.str();
}

// A v1 hierarchy's names as a sorted list: /proc/PID/cgroup and mountinfo order them
// differently ("cpu,cpuacct" beside "cpuacct,cpu").
std::string hierarchyKey(const std::string &names) {
    auto parts = split(names, ',');
    std::sort(parts.begin(), parts.end());
    std::string out;
    for (const auto &p : parts) out += (out.empty() ? "" : ",") + p;
    return out;
}

// /proc/PID/cgroup ("ID:controllers:path" lines, cgroup2 as "0::path"): hierarchy key
// ("" for cgroup2) -> path.
std::map<std::string, std::string> cgroupPaths(const std::string &text) {
    std::map<std::string, std::string> out;
    for (const auto &line : split(text, '\n')) {
        auto a = line.find(':');
        auto b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos) continue;
        out[hierarchyKey(line.substr(a + 1, b - a - 1))] = line.substr(b + 1);
    }
    return out;
}

// `path` below a mount whose root is `root` ("/" for a whole hierarchy), empty when the
// mount does not show it.
std::string belowRoot(const std::string &path, const std::string &root) {
    if (root == "/") return path;
    if (path == root) return "/";
    if (path.compare(0, root.size() + 1, root + "/") == 0) return path.substr(root.size());
    return {};
}

} // namespace

CgroupHost readCgroupHost() {
    CgroupHost host;
    host.mountinfo = readText("/proc/self/mountinfo");
    host.self = readText("/proc/self/cgroup");
    // Before pivot_root /proc is still the host's: the launcher's pid as the host sees it
    // (getppid() says 0 in a new PID namespace).
    pid_t launcher = 0;
    std::istringstream status(readText("/proc/self/status"));
    for (std::string line; std::getline(status, line);)
        if (line.compare(0, 5, "PPid:") == 0) launcher = static_cast<pid_t>(std::atol(&line[5]));
    const std::string file = "/proc/" + std::to_string(launcher) + "/cgroup";
    if (launcher > 0) host.launcher = readText(file);
    if (host.mountinfo.empty() || host.self.empty() || host.launcher.empty())
        throw Error(MO_E_UNSUPPORTED, "mount " + quote(kCgroupTop) + ": cannot read " +
                                          quote("/proc/self/mountinfo") + ", " +
                                          quote("/proc/self/cgroup") + " or " + quote(file));
    return host;
}

std::vector<CgroupHierarchy> cgroupHierarchies(const CgroupHost &host) {
    static const std::set<std::string> notControllers = {
        "rw",    "ro",           "noprefix",       "clone_children",
        "xattr", "favordynmods", "nofavordynmods", "cpuset_v2_mode"};
    const std::string top = kCgroupTop;
    const auto self = cgroupPaths(host.self), launcher = cgroupPaths(host.launcher);
    std::vector<CgroupHierarchy> out;
    std::set<std::string> seen; // superblocks: the first mount of a hierarchy wins
    for (const auto &line : split(host.mountinfo, '\n')) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        auto pre = split(line.substr(0, dash), ' ');
        auto post = split(line.substr(dash + 3), ' ');
        if (pre.size() < 5 || post.size() < 3) continue;
        if (post[0] != "cgroup" && post[0] != "cgroup2") continue;
        const std::string point = common::unescapeMountinfo(pre[4]);
        const std::string root = common::unescapeMountinfo(pre[3]);
        const bool whole = point == top;
        if (!whole && (point.compare(0, top.size() + 1, top + "/") != 0 ||
                       point.find('/', top.size() + 1) != std::string::npos))
            continue;
        CgroupHierarchy h;
        h.version = post[0] == "cgroup2" ? 2 : 1;
        if (whole && h.version == 1) continue; // one v1 hierarchy as the whole tree: not a layout
        if (!seen.insert(pre[2]).second) continue;
        h.name = whole ? "" : point.substr(top.size() + 1);
        if (h.version == 1)
            for (const auto &o : split(post[2], ','))
                if (o.compare(0, 5, "name=") == 0 ||
                    (!notControllers.count(o) && o.find('=') == std::string::npos))
                    h.options += (h.options.empty() ? "" : ",") + o;
        const std::string key = h.version == 2 ? "" : hierarchyKey(h.options);
        auto mine = self.find(key), theirs = launcher.find(key);
        if (mine == self.end()) continue;
        // Where the cgroup service put the container it is no longer in its launcher's
        // cgroup; elsewhere it still is, and that cgroup is not the container's to show.
        h.own = theirs == launcher.end() || theirs->second != mine->second;
        if (std::string rel = belowRoot(mine->second, root); !rel.empty())
            h.hostDir = rel == "/" ? point : point + rel;
        if (whole) return {h};
        out.push_back(std::move(h));
    }
    return out;
}

void prepareMountPoint(const std::string &dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw sysError("create the root mount point " + quote(dir), ec.value());
    struct stat st;
    if (::lstat(dir.c_str(), &st) < 0) throw sysError("root mount point " + quote(dir), errno);
    if (!S_ISDIR(st.st_mode))
        throw Error(MO_E_INVALID, "root mount point " + quote(dir) + " is not a directory");
}

const std::vector<std::string> &maskedPaths() {
    static const std::vector<std::string> paths = {
        "/proc/acpi",        "/proc/kcore",
        "/proc/keys",        "/proc/latency_stats",
        "/proc/timer_list",  "/proc/timer_stats",
        "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware",     "/sys/devices/virtual/powercap"};
    return paths;
}

const std::vector<std::string> &readonlyPaths() {
    static const std::vector<std::string> paths = {
        "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
    return paths;
}

MountOptions parseMountOptions(const std::vector<std::string> &options) {
    struct Flag {
        unsigned long set, clear;
    };
    static const std::map<std::string, Flag> flags = {
        {"ro", {MS_RDONLY, 0}},           {"rw", {0, MS_RDONLY}},
        {"nosuid", {MS_NOSUID, 0}},       {"suid", {0, MS_NOSUID}},
        {"nodev", {MS_NODEV, 0}},         {"dev", {0, MS_NODEV}},
        {"noexec", {MS_NOEXEC, 0}},       {"exec", {0, MS_NOEXEC}},
        {"sync", {MS_SYNCHRONOUS, 0}},    {"async", {0, MS_SYNCHRONOUS}},
        {"dirsync", {MS_DIRSYNC, 0}},     {"noatime", {MS_NOATIME, 0}},
        {"atime", {0, MS_NOATIME}},       {"nodiratime", {MS_NODIRATIME, 0}},
        {"diratime", {0, MS_NODIRATIME}}, {"relatime", {MS_RELATIME, 0}},
        {"norelatime", {0, MS_RELATIME}}, {"strictatime", {MS_STRICTATIME, 0}},
    };
    static const std::map<std::string, unsigned long> propagation = {
        {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
        {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
        {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
        {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
    };
    MountOptions out;
    for (const auto &o : options) {
        if (o == "bind" || o == "rbind") {
            out.bind = true;
            out.recursive = out.recursive || o == "rbind";
        } else if (auto f = flags.find(o); f != flags.end()) {
            out.flags = (out.flags | f->second.set) & ~f->second.clear;
        } else if (auto p = propagation.find(o); p != propagation.end()) {
            out.propagation = p->second;
        } else if (o == "defaults") {
        } else {
            if (!out.data.empty()) out.data += ",";
            out.data += o;
        }
    }
    return out;
}

Mounts::Mounts(Syscalls &sys, const ContainerSpec &spec, std::string console)
    : _sys(sys), _spec(spec), _console(std::move(console)) {}

Mounts::~Mounts() {
    if (_root >= 0) _sys.close(_root);
    if (_cgroupTmpfs >= 0) _sys.close(_cgroupTmpfs);
    for (int fd : {_pty.master, _pty.slave})
        if (fd >= 0) ::close(fd);
}

int Mounts::resolve(const std::string &path, bool create, bool file, int depth) {
    if (depth > 40) throw sysError(quote(path), ELOOP);
    auto comps = components(path);
    if (comps.empty())
        return static_cast<int>(
            check(_sys.openat2(_root, ".", O_PATH | O_CLOEXEC, 0, kResolve), "open " + quote("/")));
    std::string prefix;
    int parent = static_cast<int>(
        check(_sys.openat2(_root, ".", O_PATH | O_CLOEXEC, 0, kResolve), "open " + quote("/")));
    for (size_t i = 0; i < comps.size(); ++i) {
        Fd dir(_sys, parent);
        bool last = i + 1 == comps.size();
        prefix += "/" + comps[i];
        int fd = _sys.openat2(_root, prefix.c_str(), O_PATH | O_CLOEXEC, 0, kResolve);
        if (fd == -ENOENT && create) {
            int r;
            if (last && file) {
                r = _sys.openat2(dir.get(), comps[i].c_str(),
                                 O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644,
                                 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
                if (r >= 0) _sys.close(r);
            } else {
                r = _sys.mkdirat(dir.get(), comps[i].c_str(), 0755);
            }
            if (r < 0 && r != -EEXIST) throw sysError("create " + quote(prefix), -r);
            fd = _sys.openat2(_root, prefix.c_str(), O_PATH | O_CLOEXEC, 0, kResolve);
            char target[4096];
            ssize_t n;
            if (fd == -ENOENT && r == -EEXIST &&
                (n = ::readlinkat(dir.get(), comps[i].c_str(), target, sizeof target - 1)) > 0) {
                // A dangling symlink: create what it points at, inside the rootfs (as
                // runc's MkdirAllInRoot and crun do).
                std::string to(target, static_cast<size_t>(n));
                std::string next =
                    to[0] == '/' ? to : prefix.substr(0, prefix.rfind('/')) + "/" + to;
                for (size_t j = i + 1; j < comps.size(); ++j) next += "/" + comps[j];
                return resolve(next, create, file, depth + 1);
            }
        }
        if (fd < 0) throw sysError(quote(prefix), -fd);
        parent = fd;
    }
    return parent;
}

void Mounts::mountAt(const std::string &what, const char *source, const std::string &dest,
                     const char *type, unsigned long flags, const std::string &data, bool file) {
    Fd target(_sys, resolve(dest, true, file));
    int r = _sys.mount(source, fdPath(target.get()).c_str(), type, flags,
                       data.empty() ? nullptr : data.c_str());
    if (r < 0) throw sysError("mount " + quote(what), -r);
}

void Mounts::remountReadonly(const std::string &what, const char *target, unsigned long extra) {
    // A fresh fd on the target: the mount just made sits on top of what the old fd saw.
    Fd fd(_sys, _sys.open(target, O_PATH | O_CLOEXEC));
    unsigned long locked = fd.get() >= 0 ? lockedFlags(_sys, fd.get()) : 0;
    int r = _sys.mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | extra | locked,
                       nullptr);
    if (r < 0) throw sysError("remount " + quote(what) + " read-only", -r);
}

void Mounts::prepareRoot() {
    // Private propagation first: nothing below may leak to the host, and pivot_root
    // refuses shared mounts.
    check(_sys.mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr),
          "make " + quote("/") + " private");
    mountRoot();
    for (const char *dir : {"/proc", "/sys", "/dev"}) checkSpecialDir(dir);
    mountProc();
    mountSys();
    mountCgroups();
    mountDev();
    if (_spec.initSystem) mountInitSystem();
    for (const auto &m : _spec.mounts) mountSpec(m);
    if (_cgroupTmpfs >= 0 && _spec.cgroupMount == CgroupMount::ReadOnly)
        remountReadonly(kCgroupTop, fdPath(_cgroupTmpfs).c_str(), MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

void Mounts::mountRoot() {
    if (!_spec.volatileRoot && _spec.rootfsImage.empty()) {
        check(_sys.mount(_spec.rootfs.c_str(), _spec.rootfs.c_str(), nullptr, MS_BIND | MS_REC,
                         nullptr),
              "bind rootfs " + quote(_spec.rootfs));
        _root = static_cast<int>(
            check(_sys.open(_spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                  "rootfs " + quote(_spec.rootfs)));
        return;
    }
    // A tmpfs of this namespace only: the image's mount point, the overlay's upper and
    // work directories. It goes with the namespace, whatever kills the container.
    const std::string &point = _spec.mountPoint;
    check(_sys.mount("mobileops-root", point.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
          "mount a tmpfs on the root mount point " + quote(point));
    Fd base(_sys, static_cast<int>(check(_sys.open(point.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                                         "root mount point " + quote(point))));
    auto dir = [&](const char *name) {
        check(_sys.mkdirat(base.get(), name, 0755), "create " + quote(point + "/" + name));
        return static_cast<int>(
            check(_sys.openat2(base.get(), name, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
                  "open " + quote(point + "/" + name)));
    };
    int lower;
    std::string lowerName;
    if (!_spec.rootfsImage.empty()) {
        lower = dir("image");
        lowerName = _spec.rootfsImage;
        mountImage(lower);
        // The fd named the directory under the mount: reopen it on the image's root.
        _sys.close(lower);
        lower = static_cast<int>(
            check(_sys.openat2(base.get(), "image", O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
                  "open the image root"));
    } else {
        lowerName = _spec.rootfs;
        lower = static_cast<int>(
            check(_sys.open(_spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                  "rootfs " + quote(_spec.rootfs)));
    }
    if (!_spec.volatileRoot) {
        _root = lower;
        return;
    }
    Fd lowerFd(_sys, lower);
    mountOverlay(lowerFd.get(), lowerName, base.get());
    _root =
        static_cast<int>(check(_sys.openat2(base.get(), "root", O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
                               "open the volatile root"));
}

void Mounts::mountImage(int dir) {
    const bool readOnly = _spec.volatileRoot || _spec.readonly;
    // The device's only user is the mount below: AUTOCLEAR releases it with the mount.
    LoopDevice loop(_spec.rootfsImage, readOnly);
    const std::string what = "mount the rootfs image " + quote(_spec.rootfsImage);
    KernelLog log;
    int r = _sys.mount(loop.path().c_str(), fdPath(dir).c_str(), "ext4", readOnly ? MS_RDONLY : 0,
                       nullptr);
    if (r < 0) {
        std::string reason = log.lines("EXT4-fs");
        if (reason.empty()) reason = kernelReason("ext4", loop.path(), readOnly ? "ro" : "");
        throw Error(r, what + " (" + loop.path() +
                           "): " + (reason.empty() ? std::strerror(-r) : reason));
    }
}

void Mounts::mountOverlay(int lower, const std::string &lowerName, int base) {
    auto dir = [&](const char *name) {
        check(_sys.mkdirat(base, name, 0755), "create " + quote(_spec.mountPoint + "/" + name));
        return static_cast<int>(check(_sys.openat2(base, name, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
                                      "open " + quote(_spec.mountPoint + "/" + name)));
    };
    Fd upper(_sys, dir("upper")), work(_sys, dir("work")), root(_sys, dir("root"));
    // Layers by fd: any character in the rootfs's path is fine, and the container's
    // mountinfo shows no host path.
    std::string options = "lowerdir=" + fdPath(lower) + ",upperdir=" + fdPath(upper.get()) +
                          ",workdir=" + fdPath(work.get());
    if (_spec.userns()) options += ",userxattr";
    KernelLog log;
    int r = _sys.mount("overlay", fdPath(root.get()).c_str(), "overlay", 0, options.c_str());
    if (r < 0) {
        std::string reason = log.lines("overlayfs:");
        if (reason.empty()) reason = kernelReason("overlay", "overlay", options);
        reason = replaced(reason, fdPath(lower), lowerName);
        throw Error(r, "volatile root: overlayfs refused " + quote(lowerName) +
                           " as its lower layer: " + (reason.empty() ? overlayErrno(-r) : reason));
    }
}

void Mounts::checkSpecialDir(const std::string &path) {
    // Not followed, not even inside the rootfs: procfs and sysfs belong on a real
    // directory (as runc insists since CVE-2019-19921), and so does our /dev.
    Fd fd(_sys, _sys.openat2(_root, path.c_str() + 1, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0,
                             RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS));
    if (fd.get() == -ENOENT) return; // created as a directory by mountAt
    if (fd.get() < 0) throw sysError("rootfs " + quote(path), -fd.get());
    struct stat st;
    check(_sys.fstat(fd.get(), &st), "rootfs " + quote(path));
    if (S_ISDIR(st.st_mode)) return;
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = ::readlinkat(fd.get(), "", target, sizeof target - 1);
        std::string to = n > 0 ? " to " + quote(std::string(target, static_cast<size_t>(n))) : "";
        throw Error(MO_E_INVALID,
                    "rootfs " + quote(path) + " is a symlink" + to + ": it must be a directory");
    }
    throw Error(MO_E_INVALID, "rootfs " + quote(path) + " is not a directory");
}

void Mounts::verifyBind(const std::string &what, const std::string &dest,
                        const struct stat &source) {
    Fd target(_sys, resolve(dest, false));
    struct stat st;
    check(_sys.fstat(target.get(), &st), "mount " + quote(what));
    if (st.st_dev != source.st_dev || st.st_ino != source.st_ino)
        throw Error(MO_E_INVALID, "mount " + quote(what) +
                                      ": the mount did not land at the destination inside the "
                                      "rootfs (was it moved while mounting?)");
}

void Mounts::mountProc() {
    mountAt("/proc", "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, {});
}

void Mounts::mountSys() {
    const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    // sysfs may only be mounted by the owner of the network namespace; a user namespace
    // sharing the host's network gets a read-only bind of the host's /sys instead.
    if (_spec.userns() && !_spec.namespaces.network) {
        mountAt("/sys", "/sys", "/sys", nullptr, MS_BIND | MS_REC, {});
        Fd fd(_sys, resolve("/sys", false));
        remountReadonly("/sys", fdPath(fd.get()).c_str(), flags);
        return;
    }
    if (_spec.hardwareAccess) {
        mountHardwareSys(flags);
        return;
    }
    mountAt("/sys", "sysfs", "/sys", "sysfs", flags | MS_RDONLY, {});
}

// Read-write binds of the device tree under a read-only /sys (hardwareSysPaths): the
// binds are made while sysfs is still writable, then only its top goes read-only.
void Mounts::mountHardwareSys(unsigned long flags) {
    mountAt("/sys", "sysfs", "/sys", "sysfs", flags, {});
    for (const auto &path : hardwareSysPaths()) {
        int fd = _sys.openat2(_root, path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kResolve);
        if (fd == -ENOENT) continue;
        if (fd < 0) throw sysError("bind " + quote(path) + " read-write", -fd);
        Fd dir(_sys, fd);
        std::string at = fdPath(dir.get());
        check(_sys.mount(at.c_str(), at.c_str(), nullptr, MS_BIND, nullptr),
              "bind " + quote(path) + " read-write");
    }
    Fd top(_sys, resolve("/sys", false));
    remountReadonly("/sys", fdPath(top.get()).c_str(), flags);
}

// The host's devtmpfs on /dev. It is one filesystem for the whole machine: nothing is
// created in it, mounts go only on directories it already has.
void Mounts::mountHardwareDev() {
    mountAt("/dev", "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, {});
    auto present = [&](const char *path) {
        int fd = _sys.openat2(_root, path, O_PATH | O_CLOEXEC, 0, kResolve);
        if (fd >= 0) _sys.close(fd);
        return fd >= 0;
    };
    // The host's console is not the container's: a terminal's pty, or nothing.
    if (!_console.empty())
        mountAt("/dev/console", _console.c_str(), "/dev/console", nullptr, MS_BIND, {}, true);
    else if (!_ownConsole && present("/dev/console"))
        mountAt("/dev/console", "/dev/null", "/dev/console", nullptr, MS_BIND, {});
    for (const char *dir : {"/dev/pts", "/dev/shm"})
        if (!present(dir))
            throw Error(MO_E_UNSUPPORTED, "hardware access: the host's /dev has no " + quote(dir) +
                                              " directory to mount on");
    mountAt("/dev/pts", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5");
    if (_ownConsole) makeConsole();
    mountAt("/dev/shm", "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "mode=1777,size=65536k");
    if (_spec.namespaces.ipc && present("/dev/mqueue"))
        mountAt("/dev/mqueue", "mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                {});
}

void Mounts::makeConsole() {
    Fd pts(_sys, resolve("/dev/pts", false));
    _pty = openFromDevpts(pts.get());
    mountAt("/dev/console", fdPath(_pty.slave).c_str(), "/dev/console", nullptr, MS_BIND, {}, true);
}

// What an init system expects to find mounted (systemd's "API filesystems" that a
// container manager provides): tmpfs on /run, /run/lock and /tmp, /run/systemd/container
// naming the manager, and a cgroup2 hierarchy it may write.
void Mounts::mountInitSystem() {
    mountAt("/run", "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
            "mode=755,size=20%,nr_inodes=800k");
    mountAt("/run/lock", "tmpfs", "/run/lock", "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_STRICTATIME, "mode=1777,size=5120k");
    mountAt("/tmp", "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
            "mode=1777,size=50%,nr_inodes=1m");
    {
        Fd file(_sys, resolve("/run/systemd/container", true, true));
        check(_sys.writeFile(fdPath(file.get()).c_str(), std::string(kContainerManager) + "\n"),
              "write " + quote("/run/systemd/container"));
    }
    mountCgroupForInit();
}

// cgroup2 on /sys/fs/cgroup, read-write. Mounted in the container's cgroup namespace its
// root is the container's own cgroup (mobileops/<id>, made by the cgroup service), which
// systemd then divides (unified mode; on a hybrid host that is the controller-less v2
// hierarchy beside the v1 controllers). Refused when the namespace's root is the host's
// top cgroup: the init system would write the host's tree.
void Mounts::mountCgroupForInit() {
    const std::string what = "cgroup2 on " + quote("/sys/fs/cgroup");
    mountAt("/sys/fs/cgroup", "cgroup2", "/sys/fs/cgroup", "cgroup2",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME, {});
    Fd mine(_sys, resolve("/sys/fs/cgroup", false));
    struct stat own;
    check(_sys.fstat(mine.get(), &own), what);
    bool hostHasV2 = false;
    for (const auto &path : hostCgroup2Paths()) {
        // The same superblock is the host's cgroup2 mount; the same inode, the same cgroup.
        Fd host(_sys, _sys.open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        struct stat st;
        if (host.get() < 0 || _sys.fstat(host.get(), &st) < 0 || st.st_dev != own.st_dev) continue;
        hostHasV2 = true;
        if (st.st_ino == own.st_ino)
            throw Error(MO_E_UNSUPPORTED,
                        "init system: the container has no cgroup of its own to hand to its "
                        "init (its cgroup namespace starts at the host's " +
                            quote(path) + "); it needs the cgroup service");
    }
    if (!hostHasV2)
        throw Error(MO_E_UNSUPPORTED, "init system: this host mounts no cgroup2 hierarchy (at " +
                                          quote("/sys/fs/cgroup") + " or " +
                                          quote("/sys/fs/cgroup/unified") +
                                          "); an init system needs one it can write");
}

// The container's own cgroups, as runc, crun and podman show them: on a cgroup2-only host
// cgroup2 on /sys/fs/cgroup; on a v1 or hybrid host a tmpfs there with a directory per
// hierarchy, named as on the host ("cpu,cpuacct" and its "cpu" and "cpuacct" links,
// "memory", "unified"). Only hierarchies where the container has a cgroup of its own
// appear; with none, the tmpfs stays empty. The tmpfs goes read-only after the spec's
// mounts (prepareRoot).
void Mounts::mountCgroups() {
    if (_spec.cgroupMount == CgroupMount::None || _spec.initSystem) return;
    const auto hierarchies = cgroupHierarchies(_cgroupHost ? *_cgroupHost : readCgroupHost());
    const std::string top = kCgroupTop;
    if (hierarchies.size() == 1 && hierarchies[0].name.empty() && hierarchies[0].own) {
        mountHierarchy(hierarchies[0], top);
        return;
    }
    mountAt(top, "tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755");
    // The tmpfs's own root, whatever the spec's mounts stack on it later.
    _cgroupTmpfs = resolve(top, false);
    for (const auto &h : hierarchies) {
        if (!h.own || h.name.empty()) continue;
        mountHierarchy(h, top + "/" + h.name);
        if (h.name.find(',') == std::string::npos) continue;
        for (const auto &link : split(h.name, ',')) {
            int r = _sys.symlinkat(h.name.c_str(), _cgroupTmpfs, link.c_str());
            if (r < 0 && r != -EEXIST) throw sysError("symlink " + quote(top + "/" + link), -r);
        }
    }
}

void Mounts::mountHierarchy(const CgroupHierarchy &h, const std::string &dest) {
    const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME;
    const bool ro = _spec.cgroupMount == CgroupMount::ReadOnly;
    if (_spec.namespaces.cgroup) {
        // Mounted inside the container's cgroup namespace, the hierarchy's root is the
        // namespace's: the container's own cgroup (the cgroup service moved the container
        // there before the namespace was made).
        const char *type = h.version == 2 ? "cgroup2" : "cgroup";
        mountAt(dest, type, dest, type, flags | (ro ? MS_RDONLY : 0),
                h.version == 2 ? std::string() : h.options);
        return;
    }
    // No cgroup namespace of its own: the container's directory in the host's mount.
    if (h.hostDir.empty())
        throw Error(MO_E_UNSUPPORTED, "mount " + quote(dest) +
                                          ": the container's cgroup is outside the host's "
                                          "mount of its hierarchy");
    mountAt(dest, h.hostDir.c_str(), dest, nullptr, MS_BIND, {});
    Fd target(_sys, resolve(dest, false));
    unsigned long locked = lockedFlags(_sys, target.get()) & ~MS_RDONLY;
    check(_sys.mount(nullptr, fdPath(target.get()).c_str(), nullptr,
                     MS_BIND | MS_REMOUNT | flags | locked | (ro ? MS_RDONLY : 0), nullptr),
          "remount " + quote(dest));
}

void Mounts::mountDev() {
    if (_spec.hardwareAccess) {
        mountHardwareDev();
        return;
    }
    mountAt("/dev", "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    Fd dev(_sys, resolve("/dev", false));
    struct Node {
        const char *name;
        unsigned major, minor;
    };
    static const Node nodes[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                                 {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    for (const auto &n : nodes) {
        std::string path = std::string("/dev/") + n.name;
        if (!_spec.userns()) {
            int r = _sys.mknodat(dev.get(), n.name, S_IFCHR | 0666, makedev(n.major, n.minor));
            if (r < 0) throw sysError("mknod " + quote(path), -r);
        } else {
            // mknod is refused in a user namespace: bind the host's node instead.
            mountAt(path, path.c_str(), path, nullptr, MS_BIND, {}, true);
        }
    }
    if (!_console.empty())
        mountAt("/dev/console", _console.c_str(), "/dev/console", nullptr, MS_BIND, {}, true);
    for (const auto &d : _spec.devices) mountDevice(d);

    bool gid5 = !_spec.userns();
    for (const auto &m : _spec.gidMappings)
        gid5 = gid5 || (m.containerId <= 5 && 5 < uint64_t(m.containerId) + m.size);
    mountAt("/dev/pts", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
            std::string("newinstance,ptmxmode=0666,mode=0620") + (gid5 ? ",gid=5" : ""));
    if (_ownConsole) makeConsole();
    mountAt("/dev/shm", "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "mode=1777,size=65536k");
    // mqueue belongs to the IPC namespace; without our own, the host's would show.
    if (_spec.namespaces.ipc)
        mountAt("/dev/mqueue", "mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                {});
    static const std::pair<const char *, const char *> links[] = {
        {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}};
    for (const auto &[target, name] : links) {
        int r = _sys.symlinkat(target, dev.get(), name);
        if (r < 0) throw sysError("symlink " + quote(std::string("/dev/") + name), -r);
    }
}

void Mounts::mountDevice(const DeviceSpec &d) {
    const mode_t type = d.type == 'b' ? S_IFBLK : d.type == 'p' ? S_IFIFO : S_IFCHR;
    const dev_t number = d.type == 'p' ? 0 : makedev(d.major, d.minor);
    const std::string what = "device " + quote(d.path);
    if (_spec.userns() && d.type != 'p') {
        // mknod is refused in a user namespace: bind the host's node, which must be the
        // device the spec names.
        struct stat st;
        if (::stat(d.path.c_str(), &st) < 0)
            throw sysError(what + ": the host's node (bound under a user namespace)", errno);
        if ((st.st_mode & S_IFMT) != type || st.st_rdev != number)
            throw Error(MO_E_INVALID, what + ": the host's node is another device");
        mountAt(d.path, d.path.c_str(), d.path, nullptr, MS_BIND, {}, true);
        return;
    }
    auto slash = d.path.rfind('/');
    Fd dir(_sys, resolve(d.path.substr(0, slash), true));
    const std::string name = d.path.substr(slash + 1);
    int r = _sys.mknodat(dir.get(), name.c_str(), type | d.mode, number);
    if (r == -EEXIST) throw Error(MO_E_EXISTS, what + " exists already");
    if (r < 0) throw sysError("mknod " + quote(d.path), -r);
    if (::fchownat(dir.get(), name.c_str(), d.uid, d.gid, AT_SYMLINK_NOFOLLOW) < 0)
        throw sysError("chown " + quote(d.path), errno);
}

void Mounts::applySysctls() {
    for (const auto &[key, value] : _spec.sysctl) {
        std::string path = "/proc/sys/" + key;
        std::replace(path.begin() + 10, path.end(), '.', '/');
        int r = _sys.writeFile(path.c_str(), value);
        if (r < 0) throw sysError("sysctl " + quote(key) + " = " + quote(value), -r);
    }
}

void Mounts::mountSpec(const MountSpec &m) {
    MountOptions o = parseMountOptions(m.options);
    const std::string what = m.destination;
    if (m.type == "bind" || o.bind) {
        struct stat st;
        Fd src(_sys, _sys.open(m.source.c_str(), O_PATH | O_CLOEXEC));
        // prepareSpec dropped the soft mounts it found missing; this one went since.
        if (src.get() == -ENOENT && _spec.softMounts) return;
        if (src.get() < 0)
            throw sysError("mount " + quote(what) + ": source " + quote(m.source), -src.get());
        check(_sys.fstat(src.get(), &st), "mount " + quote(what) + ": source " + quote(m.source));
        mountAt(what, m.source.c_str(), m.destination, nullptr,
                MS_BIND | (o.recursive || m.type == "bind" ? MS_REC : 0), {}, !S_ISDIR(st.st_mode));
        // Also catches a source path swapped since it was opened.
        verifyBind(what, m.destination, st);
        Fd target(_sys, resolve(m.destination, false));
        std::string path = fdPath(target.get());
        if (o.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)) {
            unsigned long locked = lockedFlags(_sys, target.get()) & ~MS_RDONLY;
            check(_sys.mount(nullptr, path.c_str(), nullptr,
                             MS_BIND | MS_REMOUNT | o.flags | locked, nullptr),
                  "remount " + quote(what));
        }
        if (o.propagation)
            check(_sys.mount(nullptr, path.c_str(), nullptr, o.propagation, nullptr),
                  "set propagation of " + quote(what));
        return;
    }
    std::string source = m.source.empty() ? m.type : m.source;
    mountAt(what, source.c_str(), m.destination, m.type.c_str(), o.flags, o.data);
    if (o.propagation) {
        Fd target(_sys, resolve(m.destination, false));
        check(_sys.mount(nullptr, fdPath(target.get()).c_str(), nullptr, o.propagation, nullptr),
              "set propagation of " + quote(what));
    }
}

void Mounts::pivot() {
    check(_sys.fchdir(_root), "chdir to the rootfs");
    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only
    // the rootfs, with no directory needed for the old root (as runc and crun do).
    check(_sys.pivotRoot(".", "."), "pivot_root");
    check(_sys.umount2(".", MNT_DETACH), "unmount the old root");
    check(_sys.chdir("/"), "chdir " + quote("/"));
}

void Mounts::maskPath(const std::string &path) {
    Fd fd(_sys, _sys.open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() == -ENOENT) return;
    if (fd.get() < 0) throw sysError("mask " + quote(path), -fd.get());
    struct stat st;
    check(_sys.fstat(fd.get(), &st), "mask " + quote(path));
    int r = S_ISDIR(st.st_mode)
                ? _sys.mount("tmpfs", path.c_str(), "tmpfs", MS_RDONLY, "size=0k,mode=755")
                : _sys.mount("/dev/null", path.c_str(), nullptr, MS_BIND, nullptr);
    if (r < 0) throw sysError("mask " + quote(path), -r);
}

void Mounts::readonlyPath(const std::string &path) {
    int r = _sys.mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr);
    if (r == -ENOENT) return;
    if (r < 0) throw sysError("bind " + quote(path), -r);
    remountReadonly(path, path.c_str(), 0);
}

void Mounts::finish() {
    // --privileged: the kernel's /proc and /sys as they are (podman's rule).
    // Lists the spec gives replace the defaults, also under --privileged.
    const bool defaults = !_spec.process.security.privileged;
    if (_spec.maskedPaths || defaults)
        for (const auto &p : _spec.maskedPaths ? *_spec.maskedPaths : maskedPaths()) maskPath(p);
    if (_spec.readonlyPaths || defaults)
        for (const auto &p : _spec.readonlyPaths ? *_spec.readonlyPaths : readonlyPaths())
            readonlyPath(p);
    if (_spec.readonly) remountReadonly("/", "/", 0);
}

} // namespace mobileops::nsruntime
