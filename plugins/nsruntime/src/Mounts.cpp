#include "Mounts.h"

#include "Errors.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <map>
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

} // namespace

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
}

int Mounts::resolve(const std::string &path, bool create, bool file) {
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
    check(
        _sys.mount(_spec.rootfs.c_str(), _spec.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr),
        "bind rootfs " + quote(_spec.rootfs));
    _root =
        static_cast<int>(check(_sys.open(_spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                               "rootfs " + quote(_spec.rootfs)));
    mountProc();
    mountSys();
    mountDev();
    for (const auto &m : _spec.mounts) mountSpec(m);
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
    mountAt("/sys", "sysfs", "/sys", "sysfs", flags | MS_RDONLY, {});
}

void Mounts::mountDev() {
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

    bool gid5 = !_spec.userns();
    for (const auto &m : _spec.gidMappings)
        gid5 = gid5 || (m.containerId <= 5 && 5 < uint64_t(m.containerId) + m.size);
    mountAt("/dev/pts", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
            std::string("newinstance,ptmxmode=0666,mode=0620") + (gid5 ? ",gid=5" : ""));
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

void Mounts::mountSpec(const MountSpec &m) {
    MountOptions o = parseMountOptions(m.options);
    const std::string what = m.destination;
    if (m.type == "bind" || o.bind) {
        struct stat st;
        Fd src(_sys, _sys.open(m.source.c_str(), O_PATH | O_CLOEXEC));
        if (src.get() < 0)
            throw sysError("mount " + quote(what) + ": source " + quote(m.source), -src.get());
        check(_sys.fstat(src.get(), &st), "mount " + quote(what) + ": source " + quote(m.source));
        mountAt(what, m.source.c_str(), m.destination, nullptr,
                MS_BIND | (o.recursive || m.type == "bind" ? MS_REC : 0), {}, !S_ISDIR(st.st_mode));
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
    for (const auto &p : maskedPaths()) maskPath(p);
    for (const auto &p : readonlyPaths()) readonlyPath(p);
    if (_spec.readonly) remountReadonly("/", "/", 0);
}

} // namespace mobileops::nsruntime
