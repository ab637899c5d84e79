// The container's filesystem view, built in its own mount namespace: the rootfs bound
// onto itself (or an image, or a volatile overlay, assembled on spec.mountPoint), /proc,
// /sys, its cgroups at /sys/fs/cgroup, /dev, the spec's mounts, pivot_root into it, then the OCI
// default masked and read-only paths and the read-only root. Runs in the child; nothing here ever
// touches the host's mount namespace.
#pragma once

#include "Pty.h"
#include "Spec.h"
#include "Syscalls.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mobileops::nsruntime {

// OCI defaults (runtime-spec config-linux.md, as podman and crun apply them).
const std::vector<std::string> &maskedPaths();
const std::vector<std::string> &readonlyPaths();

struct MountOptions {
    unsigned long flags = 0;       // MS_* applied at mount time
    unsigned long propagation = 0; // MS_PRIVATE, MS_SHARED, ... applied afterwards
    bool bind = false, recursive = false;
    std::string data; // filesystem options (size=, mode=, ...)
};
MountOptions parseMountOptions(const std::vector<std::string> &options);

// One host cgroup hierarchy as a container gets it below /sys/fs/cgroup (mountCgroups).
struct CgroupHierarchy {
    int version = 1;
    // The directory it goes on, named as on the host: "memory", "cpu,cpuacct", "systemd",
    // "unified"; empty on a cgroup2-only host, whose hierarchy is /sys/fs/cgroup itself.
    std::string name;
    std::string options; // v1: the mount data naming the hierarchy ("cpu,cpuacct", "name=systemd")
    std::string hostDir; // the container's cgroup in the host's mount, for a bind; may be empty
    // The container has a cgroup of its own there: not the one of the process that
    // launched it (a hierarchy the cgroup service does not use, or no cgroup service).
    bool own = false;
};

// What the hierarchies are read from, in the container's namespaces before anything is
// mounted: /proc/self/mountinfo, /proc/self/cgroup and the launcher's /proc/PID/cgroup.
struct CgroupHost {
    std::string mountinfo, self, launcher;
};
CgroupHost readCgroupHost();
// The hierarchies mounted at or directly below /sys/fs/cgroup, one per hierarchy. A
// cgroup2 mount on /sys/fs/cgroup itself (a cgroup2-only host) is the only one returned.
std::vector<CgroupHierarchy> cgroupHierarchies(const CgroupHost &host);

// Create `dir` (and its parents) for Mounts to assemble a volatile or image root on; run
// in the caller, before cloning. Only ever mounted on inside containers' namespaces.
void prepareMountPoint(const std::string &dir);

class Mounts {
public:
    // `console`: path of the pty slave to bind on /dev/console, empty for none.
    Mounts(Syscalls &sys, const ContainerSpec &spec, std::string console = {});
    // Give the container a terminal of its own (runc's way): right after its devpts is
    // mounted, a pty is opened from it and its slave bound on /dev/console; takeConsole
    // hands the pair over (the caller owns both fds). Call before prepareRoot.
    void allocateConsole() { _ownConsole = true; }
    ContainerPty takeConsole() { return std::exchange(_pty, ContainerPty{}); }
    ~Mounts();
    Mounts(const Mounts &) = delete;
    Mounts &operator=(const Mounts &) = delete;

    void setup() {
        prepareRoot();
        pivot();
        applySysctls();
        finish();
    }
    // Before pivot_root: private propagation, rootfs bind, /proc, /sys, /sys/fs/cgroup,
    // /dev, spec mounts.
    void prepareRoot();
    // pivot_root(".", ".") and a lazy unmount of the old root.
    void pivot();
    // After pivot_root: masked paths, read-only paths, read-only root.
    void finish();
    // spec.sysctl, written into the container's /proc/sys (after pivot_root, before
    // finish makes it read-only).
    void applySysctls();

    // Resolve `path` inside the rootfs without leaving it (symlinks are resolved as if
    // the rootfs were /), creating missing directories — and the last component as a
    // file when `file` — on the way, also where a dangling symlink points (inside the
    // rootfs). Returns an O_PATH fd owned by the caller.
    int resolve(const std::string &path, bool create, bool file = false, int depth = 0);

    // Tests: the host's cgroups as given instead of read from /proc.
    void setCgroupHost(CgroupHost host) { _cgroupHost = std::move(host); }

private:
    std::string fdPath(int fd) const { return "/proc/self/fd/" + std::to_string(fd); }
    // The root as the spec asks: the rootfs bound onto itself, or on a tmpfs at
    // spec.mountPoint the image's mount and/or the volatile overlay. Sets _root.
    void mountRoot();
    void mountImage(int dir);
    void mountOverlay(int lower, const std::string &lowerName, int base);
    // /proc, /sys and /dev of the rootfs must be directories (or absent), not symlinks.
    void checkSpecialDir(const std::string &path);
    // After a bind: the destination, resolved again inside the rootfs, must show the
    // source (same device and inode).
    void verifyBind(const std::string &what, const std::string &dest, const struct stat &source);
    void mountAt(const std::string &what, const char *source, const std::string &dest,
                 const char *type, unsigned long flags, const std::string &data, bool file = false);
    void mountProc();
    void mountSys();
    void mountDev();
    // allocateConsole's pty, once /dev/pts is mounted.
    void makeConsole();
    // hardwareAccess and initSystem (SystemMode.h).
    void mountHardwareSys(unsigned long flags);
    void mountHardwareDev();
    void mountInitSystem();
    void mountCgroupForInit();
    // spec.cgroupMount: the container's own cgroups at /sys/fs/cgroup.
    void mountCgroups();
    void mountHierarchy(const CgroupHierarchy &h, const std::string &dest);
    void mountSpec(const MountSpec &m);
    // An extra node of spec.devices: mknod, or the host's node bound under a userns.
    void mountDevice(const DeviceSpec &d);
    void remountReadonly(const std::string &what, const char *target, unsigned long extra);
    void maskPath(const std::string &path);
    void readonlyPath(const std::string &path);

    Syscalls &_sys;
    const ContainerSpec &_spec;
    std::string _console;
    bool _ownConsole = false;
    ContainerPty _pty;
    int _root = -1;
    std::optional<CgroupHost> _cgroupHost;
    // The tmpfs holding the v1 hierarchies (an O_PATH fd of its root): made read-only after
    // the spec's mounts, which may create their mount points below it.
    int _cgroupTmpfs = -1;
};

} // namespace mobileops::nsruntime
