#include "Launcher.h"

#include "Init.h"
#include "Monitor.h"
#include "Mounts.h"
#include "Process.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace mobileops::nsruntime {

namespace {

struct NsKind {
    const char *key, *name;
    int flag;
};
const NsKind kNsKinds[] = {{"user", "user", CLONE_NEWUSER},  {"pid", "pid", CLONE_NEWPID},
                           {"uts", "uts", CLONE_NEWUTS},     {"ipc", "ipc", CLONE_NEWIPC},
                           {"network", "net", CLONE_NEWNET}, {"cgroup", "cgroup", CLONE_NEWCGROUP}};

const char *nsName(int type) {
    for (const auto &k : kNsKinds)
        if (k.flag == type) return k.name;
    return type == CLONE_NEWNS ? "mount" : type == CLONE_NEWTIME ? "time" : "unknown";
}

// Closes an fd on scope exit unless released.
struct OwnedFd {
    int fd = -1;
    OwnedFd() = default;
    explicit OwnedFd(int f) : fd(f) {}
    OwnedFd(const OwnedFd &) = delete;
    OwnedFd &operator=(const OwnedFd &) = delete;
    ~OwnedFd() { reset(); }
    void reset(int f = -1) {
        if (fd >= 0) ::close(fd);
        fd = f;
    }
    int release() {
        int f = fd;
        fd = -1;
        return f;
    }
};

struct Pipe {
    OwnedFd read, write;
    Pipe() {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) throw sysError("pipe", errno);
        read.reset(p[0]);
        write.reset(p[1]);
    }
};

// Put `io` on 0, 1, 2 of the calling child. Sources may collide with targets, so they
// are first moved out of the way.
void setupStdio(const ChildIo &io, int devNull) {
    int src[3];
    if (io.tty >= 0) {
        if (::setsid() < 0) throw sysError("setsid", errno);
        if (::ioctl(io.tty, TIOCSCTTY, 0) < 0)
            throw sysError("set the controlling terminal", errno);
        src[0] = src[1] = src[2] = io.tty;
    } else {
        ::setsid();
        src[0] = io.in >= 0 ? io.in : devNull;
        src[1] = io.out >= 0 ? io.out : devNull;
        src[2] = io.err >= 0 ? io.err : devNull;
    }
    int tmp[3];
    for (int i = 0; i < 3; ++i) {
        tmp[i] = ::fcntl(src[i], F_DUPFD_CLOEXEC, 10);
        if (tmp[i] < 0) throw sysError("dup stdio", errno);
    }
    for (int i = 0; i < 3; ++i)
        if (::dup2(tmp[i], i) < 0) throw sysError("dup stdio", errno);
}

// The container's own pty (ChildIo::consoleSocket) becomes our stdio and controlling
// terminal, owned by the process user as after a login; its master goes to the parent.
void takeTerminal(ContainerPty pty, int sock, uid_t uid,
                  const std::optional<struct winsize> &size) {
    if (::fchown(pty.slave, uid, static_cast<gid_t>(-1)) < 0)
        throw sysError("chown " + quote(pty.name), errno);
    if (size && ::ioctl(pty.slave, TIOCSWINSZ, &*size) < 0)
        throw sysError("set the window size of " + quote(pty.name), errno);
    if (::ioctl(pty.slave, TIOCSCTTY, 0) < 0) throw sysError("set the controlling terminal", errno);
    for (int i = 0; i < 3; ++i)
        if (::dup2(pty.slave, i) < 0) throw sysError("dup stdio", errno);
    ::close(pty.slave);
    sendMaster(sock, pty.master, pty.name);
    ::close(pty.master);
    ::close(sock);
}

// In a new PID namespace getppid() is 0: the parent lives outside it.
bool parentGone(pid_t parent) {
    pid_t p = ::getppid();
    return p != parent && p != 0;
}

[[noreturn]] void execOrInit(Syscalls &sys, const ProcessSpec &process, int report,
                             bool dieWithParent, pid_t parent) {
    applyProcessSettings(sys, process);
    if (dieWithParent) {
        // After the uid change, which clears the parent-death signal.
        check(sys.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "set the parent-death signal");
        if (parentGone(parent)) ::_exit(kExitSetupFailed);
    }
    if (process.init) {
        sigset_t all, old;
        sigfillset(&all);
        ::sigprocmask(SIG_SETMASK, &all, &old);
        pid_t child = ::fork();
        if (child < 0) throw sysError("fork the container process", errno);
        if (child == 0) execContainerProcess(sys, process, report);
        ::close(report);
        runInit(child);
    }
    execContainerProcess(sys, process, report);
}

// A VM container's bind of a file (vmShare false: an engine's /etc/hosts, /etc/hostname,
// /run/.containerenv) cannot be a share of its own: it is bound onto its place in the
// root here, in the VMM's private mount namespace, and the guest sees it through the
// root's share. The place is resolved inside the root, its missing directories and the
// file itself made as runc makes mount points.
void bindFilesIntoRoot(Syscalls &sys, const ContainerSpec &spec) {
    constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    OwnedFd root;
    for (const MountSpec &m : spec.mounts) {
        if (m.type != "bind" || vmShare(m)) continue;
        const std::string what = "mount " + quote(m.destination);
        if (root.fd < 0)
            root.reset(check(sys.open(spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                             "open the root " + quote(spec.rootfs)));
        OwnedFd tree(::open_tree(AT_FDCWD, m.source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
        if (tree.fd < 0) throw sysError(what + ": source " + quote(m.source), errno);
        if (std::find(m.options.begin(), m.options.end(), "ro") != m.options.end()) {
            mount_attr attr = {};
            attr.attr_set = MOUNT_ATTR_RDONLY;
            if (::mount_setattr(tree.fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
                throw sysError(what + ": make it read-only", errno);
        }
        // Each directory on the way, then the file, resolved from the root on every step.
        const std::string rel = m.destination.substr(1);
        OwnedFd dir(
            check(sys.openat2(root.fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kInRoot), what));
        for (size_t start = 0, slash; (slash = rel.find('/', start)) != std::string::npos;
             start = slash + 1) {
            const std::string prefix = rel.substr(0, slash),
                              name = rel.substr(start, slash - start);
            if (name.empty()) continue;
            int fd =
                sys.openat2(root.fd, prefix.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, kInRoot);
            if (fd == -ENOENT) {
                int r = sys.mkdirat(dir.fd, name.c_str(), 0755);
                if (r < 0 && r != -EEXIST) throw sysError(what + ": create " + quote(prefix), -r);
                fd = sys.openat2(root.fd, prefix.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                 kInRoot);
            }
            dir.reset(check(fd, what + ": open " + quote("/" + prefix)));
        }
        int fd = sys.openat2(root.fd, rel.c_str(), O_PATH | O_CLOEXEC, 0, kInRoot);
        if (fd == -ENOENT) {
            const std::string name = rel.substr(rel.rfind('/') + 1);
            int made = sys.openat2(dir.fd, name.c_str(),
                                   O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644,
                                   RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
            if (made < 0 && made != -EEXIST)
                throw sysError(what + ": create the mount point", -made);
            if (made >= 0) sys.close(made);
            fd = sys.openat2(root.fd, rel.c_str(), O_PATH | O_CLOEXEC, 0, kInRoot);
        }
        OwnedFd target(check(fd, what + ": open the mount point"));
        struct stat st;
        check(sys.fstat(target.fd, &st), what);
        if (S_ISDIR(st.st_mode))
            throw Error(MO_E_INVALID, what + ": the source " + quote(m.source) +
                                          " is a file and the destination a directory");
        if (::move_mount(tree.fd, "", target.fd, "",
                         MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            throw sysError(what, errno);
    }
}

// A micro-VM container (VmSpec): the launcher runs on the host's filesystem, in a mount
// namespace whose mounts no longer propagate to the host's, as root with the default
// capabilities and no_new_privs; the spec's process and security are the guest's. An OCI
// container's start gate (runc's model) is passed right before the launcher's exec, so
// the VM boots at `start`.
[[noreturn]] void execVmm(Syscalls &sys, const ContainerSpec &spec, int report, bool dieWithParent,
                          pid_t parent, const LaunchOptions &options, pid_t hostPid) {
    check(sys.mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr),
          "make the VMM's mounts private");
    bindFilesIntoRoot(sys, spec);
    if (options.gateFd >= 0) {
        // An OCI create reports a missing command at once, as for a namespace container:
        // looked up in the guest's root from here (a path below a volume is the guest's).
        OwnedFd root(::open(spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (root.fd < 0) throw sysError("open the root " + quote(spec.rootfs), errno);
        checkCommand(spec.process, root.fd, [&spec](const std::string &path) {
            std::string p = path[0] == '/' ? path : "/" + path;
            return std::any_of(spec.mounts.begin(), spec.mounts.end(), [&p](const MountSpec &m) {
                return m.type == "bind" &&
                       (p == m.destination || p.rfind(m.destination + "/", 0) == 0);
            });
        });
    }
    ProcessSpec vmm;
    vmm.gateFd = options.gateFd;
    if (options.afterGate) vmm.afterGate = [&options, hostPid] { options.afterGate(hostPid); };
    vmm.args = spec.vm->launcher;
    vmm.args.push_back(spec.vm->configFile);
    vmm.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    vmm.security.noNewPrivileges = true;
    vmm.noNewPrivileges = true;
    resolveSecurity(vmm.security, vmm.noNewPrivileges);
    execOrInit(sys, vmm, report, dieWithParent, parent);
}

// Block until the parent wrote its byte on the sync pipe; exit quietly when it gave up.
void awaitParent(int syncRead) {
    char c;
    ssize_t n;
    do n = ::read(syncRead, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(kExitSetupFailed);
    ::close(syncRead);
}

// Open the spec's namespacePaths (user first): each must be an nsfs file of its kind.
std::vector<std::pair<int, int>> openNamespaces(const ContainerSpec &spec) {
    std::vector<std::pair<int, int>> out; // fd, CLONE_NEW*
    try {
        for (const auto &k : kNsKinds) {
            auto it = spec.namespacePaths.find(k.key);
            if (it == spec.namespacePaths.end()) continue;
            const std::string what =
                std::string("namespacePaths.") + k.key + ": " + quote(it->second);
            int fd = ::open(it->second.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) throw sysError(what, errno);
            out.emplace_back(fd, k.flag);
            int type = ::ioctl(fd, NS_GET_NSTYPE);
            if (type < 0) throw Error(MO_E_INVALID, what + " is not a namespace file");
            if (type != k.flag)
                throw Error(MO_E_INVALID,
                            what + " is a " + nsName(type) + " namespace, not " + k.name);
        }
    } catch (...) {
        for (auto &[fd, type] : out) ::close(fd);
        throw;
    }
    return out;
}

// The child's ends of the afterRoot handshake: it writes a byte on `ready` once its root
// is built, then waits for one on `go`.
struct RootHandshake {
    int ready = -1, go = -1;
};

[[noreturn]] void containerChild(Syscalls &sys, const ContainerSpec &spec, const ChildIo &io,
                                 int report, int syncRead, int devNull, bool dieWithParent,
                                 pid_t parent, bool lateCgroupNs, const LaunchOptions &options,
                                 const std::vector<std::pair<int, int>> &joined,
                                 RootHandshake root) {
    const int gateFd = options.gateFd;
    try {
        // Join the namespaces the spec names, user first (the PID one was joined by the
        // parent for us).
        for (const auto &[fd, type] : joined)
            if (type != CLONE_NEWPID)
                check(sys.setns(fd, type), std::string("join the ") + nsName(type) + " namespace");
        if (gateFd >= 0) dropInheritedLocks();
        // Still the host's /proc: our pid as the host sees it, for the hooks' state.
        const pid_t hostPid = options.beforePivot || options.afterGate ? pidInProc() : -1;
        if (syncRead >= 0) {
            // Wait for the parent to write our uid/gid maps and move us to our cgroup.
            awaitParent(syncRead);
            // Only now: the namespace's root is the cgroup we were just moved to.
            if (lateCgroupNs) check(sys.unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace");
            if (spec.userns()) {
                check(sys.setresgid(0, 0, 0), "become root in the user namespace");
                check(sys.setresuid(0, 0, 0), "become root in the user namespace");
            }
        }
        if (dieWithParent) {
            sys.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (parentGone(parent)) ::_exit(kExitSetupFailed);
        }
        setupStdio(io, devNull);
        ::umask(0);
        // A joined UTS namespace keeps the name its owner gave it.
        if (spec.namespaces.uts && !spec.namespacePaths.count("uts") && !spec.hostname.empty())
            check(sys.sethostname(spec.hostname), "set the hostname " + quote(spec.hostname));
        if (spec.vm) execVmm(sys, spec, report, dieWithParent, parent, options, hostPid);
        if (spec.namespaces.network) check(sys.loopbackUp(), "bring the loopback interface up");
        Mounts mounts(sys, spec, io.tty >= 0 ? io.ttyPath : std::string());
        if (io.consoleSocket >= 0) mounts.allocateConsole();
        mounts.prepareRoot();
        if (root.ready >= 0) {
            char c = 1;
            if (::write(root.ready, &c, 1) != 1) ::_exit(kExitSetupFailed);
            ::close(root.ready);
            awaitParent(root.go);
        }
        if (options.beforePivot) options.beforePivot(hostPid);
        mounts.pivot();
        mounts.applySysctls();
        mounts.finish();
        ProcessSpec process = spec.process;
        process.gateFd = gateFd;
        if (options.afterGate)
            process.afterGate = [&options, hostPid] { options.afterGate(hostPid); };
        // An image is readable only now: its users and groups are resolved here.
        if (!spec.rootfsImage.empty()) prepareProcess(process, "/");
        if (io.consoleSocket >= 0)
            takeTerminal(mounts.takeConsole(), io.consoleSocket, process.user.uid, io.ttySize);
        execOrInit(sys, process, report, dieWithParent, parent);
    } catch (...) {
        failChild(report);
    }
}

// Read the child's report; on failure reap it and throw.
void awaitExec(ChildProcess &child, int reportRead) {
    ChildReport report;
    if (!readReport(reportRead, report)) return;
    child.wait();
    throw LaunchError(report.code, report.message, report.exitStatus);
}

} // namespace

ChildProcess::ChildProcess(ChildProcess &&o) noexcept
    : _pid(o._pid), _pidfd(o._pidfd), _waited(o._waited) {
    o._pid = -1;
    o._pidfd = -1;
}

ChildProcess &ChildProcess::operator=(ChildProcess &&o) noexcept {
    if (this != &o) {
        this->~ChildProcess();
        new (this) ChildProcess(std::move(o));
    }
    return *this;
}

ChildProcess::~ChildProcess() {
    if (_pidfd >= 0) ::close(_pidfd);
}

int ChildProcess::wait(int *signal) {
    if (signal) *signal = 0;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(_pid, &status, 0);
        if (r == _pid) break;
        if (r < 0 && errno == EINTR) continue;
        throw sysError("wait for pid " + std::to_string(_pid), errno);
    }
    _waited = true;
    if (WIFSIGNALED(status)) {
        if (signal) *signal = WTERMSIG(status);
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

void ChildProcess::kill(int sig) {
    if (_pidfd >= 0 && !_waited) ::syscall(SYS_pidfd_send_signal, _pidfd, sig, nullptr, 0);
}

void checkNamespacePaths(const ContainerSpec &spec) {
    for (auto &[fd, type] : openNamespaces(spec)) ::close(fd);
}

unsigned long cloneFlags(const ContainerSpec &spec) {
    unsigned long f = CLONE_NEWNS;
    auto own = [&](const char *key) { return !spec.namespacePaths.count(key); };
    if (spec.namespaces.pid && own("pid")) f |= CLONE_NEWPID;
    if (spec.namespaces.uts && own("uts")) f |= CLONE_NEWUTS;
    if (spec.namespaces.ipc && own("ipc")) f |= CLONE_NEWIPC;
    if (spec.namespaces.network && own("network")) f |= CLONE_NEWNET;
    if (spec.namespaces.cgroup && own("cgroup")) f |= CLONE_NEWCGROUP;
    if (spec.userns()) f |= CLONE_NEWUSER;
    return f;
}

std::string idMapText(const std::vector<IdMapping> &maps) {
    std::string s;
    for (const auto &m : maps)
        s += std::to_string(m.containerId) + " " + std::to_string(m.hostId) + " " +
             std::to_string(m.size) + "\n";
    return s;
}

ChildProcess launch(Syscalls &sys, const ContainerSpec &spec, const ChildIo &io,
                    const LaunchOptions &options) {
    Pipe report;
    std::optional<Pipe> sync;
    if (spec.userns() || options.afterClone || options.beforeStart) sync.emplace();
    std::optional<Pipe> rootReady, rootGo; // the afterRoot handshake
    if (options.afterRoot && !spec.vm) {
        rootReady.emplace();
        rootGo.emplace();
    }
    OwnedFd devNull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (devNull.fd < 0) throw sysError("open " + quote("/dev/null"), errno);
    const pid_t parent = ::getpid();
    std::vector<std::pair<int, int>> joined = openNamespaces(spec);
    ChildIo childIo = io;
    OwnedFd terminalOurs, terminalTheirs;
    if (io.ownTerminal) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            throw sysError("socketpair", errno);
        terminalOurs.reset(sv[0]);
        terminalTheirs.reset(sv[1]);
        childIo.consoleSocket = sv[1];
    }
    struct CloseAll {
        std::vector<std::pair<int, int>> &fds;
        ~CloseAll() {
            for (auto &[fd, type] : fds) ::close(fd);
        }
    } closeJoined{joined};
    // A PID namespace is joined for our children only: ours comes back after the clone.
    OwnedFd ownPidns;
    for (const auto &[fd, type] : joined) {
        if (type != CLONE_NEWPID) continue;
        ownPidns.reset(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
        if (ownPidns.fd < 0) throw sysError("open our PID namespace", errno);
        check(sys.setns(fd, CLONE_NEWPID), "join the PID namespace of namespacePaths.pid");
    }

    // Cloned straight into a new cgroup namespace, the child would see the cgroup of
    // its parent (the monitor) as its root rather than its own: unless it is born in its
    // cgroup, it makes the namespace only once the parent moved it.
    int pidfd = -1;
    bool placed = options.cgroupFd >= 0;
    bool lateCgroupNs = false;
    long pid = 0;
    for (;;) {
        lateCgroupNs = options.afterClone && spec.namespaces.cgroup && !placed &&
                       !spec.namespacePaths.count("cgroup");
        struct clone_args args = {};
        args.flags = (cloneFlags(spec) & ~(lateCgroupNs ? CLONE_NEWCGROUP : 0UL)) | CLONE_PIDFD;
        if (placed) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = static_cast<uint64_t>(options.cgroupFd);
        }
        args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
        args.exit_signal = SIGCHLD;
        pid = sys.clone3(&args);
        if (pid == 0) {
            report.read.release();
            RootHandshake root;
            if (rootReady) {
                ::close(rootReady->read.release());
                ::close(rootGo->write.release());
                root = {rootReady->write.fd, rootGo->read.fd};
            }
            containerChild(sys, spec, childIo, report.write.fd, sync ? sync->read.fd : -1,
                           devNull.fd, options.dieWithParent, parent, lateCgroupNs, options, joined,
                           root);
        }
        // Kernels before 5.7 (E2BIG, EINVAL) or a cgroup the kernel will not place into
        // (EOPNOTSUPP, EBUSY): move the child after the clone instead.
        if (placed && pid < 0 && options.afterClone && pid != -ENOMEM && pid != -EAGAIN) {
            placed = false;
            continue;
        }
        break;
    }
    if (ownPidns.fd >= 0)
        check(sys.setns(ownPidns.fd, CLONE_NEWPID), "return to our PID namespace");
    if (pid < 0) throw sysError("clone the container process", static_cast<int>(-pid));
    ChildProcess child(static_cast<pid_t>(pid), pidfd);
    report.write.reset();
    terminalTheirs.reset();
    try {
        if (sync) {
            sync->read.reset();
            if (options.afterClone && !placed) options.afterClone(child.pid());
        }
        if (spec.userns()) {
            std::string base = "/proc/" + std::to_string(pid) + "/";
            // Privileged parent: gid_map needs no setgroups deny (user_namespaces(7)).
            check(sys.writeFile((base + "uid_map").c_str(), idMapText(spec.uidMappings)),
                  "write the uid map " + quote(idMapText(spec.uidMappings).substr(0, 64)));
            check(sys.writeFile((base + "gid_map").c_str(), idMapText(spec.gidMappings)),
                  "write the gid map");
        }
        if (options.beforeStart) options.beforeStart(child.pid());
        if (sync) {
            char c = 1;
            if (::write(sync->write.fd, &c, 1) != 1) throw sysError("wake the container", errno);
            sync->write.reset();
        }
        if (rootReady) {
            rootReady->write.reset();
            rootGo->read.reset();
            char c;
            ssize_t n;
            do n = ::read(rootReady->read.fd, &c, 1);
            while (n < 0 && errno == EINTR);
            // No byte: the child failed before, and its report says why.
            if (n == 1) {
                options.afterRoot(child.pid());
                if (::write(rootGo->write.fd, &c, 1) != 1)
                    throw sysError("wake the container", errno);
            }
            rootGo->write.reset();
        }
        awaitExec(child, report.read.fd);
        // Sent before the exec (or the start gate), so it is there now.
        if (io.ownTerminal) *io.ownTerminal = Pty::receive(terminalOurs.fd, -1);
    } catch (...) {
        if (!child.waited()) {
            child.kill(SIGKILL);
            child.wait();
        }
        throw;
    }
    return child;
}

ChildProcess launchInside(Syscalls &sys, pid_t pid, int pidfd, const ProcessSpec &process,
                          const ChildIo &io, const std::function<void(pid_t)> &afterClone) {
    static const struct {
        const char *name;
        int flag;
    } kinds[] = {{"user", CLONE_NEWUSER}, {"mnt", CLONE_NEWNS},  {"uts", CLONE_NEWUTS},
                 {"ipc", CLONE_NEWIPC},   {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}};
    const pid_t self = ::getpid();
    int join = 0;
    for (const auto &k : kinds) {
        uint64_t theirs = 0, ours = 0;
        struct stat a, b;
        if (::stat(("/proc/" + std::to_string(pid) + "/ns/" + k.name).c_str(), &a) == 0)
            theirs = a.st_ino;
        if (::stat((std::string("/proc/self/ns/") + k.name).c_str(), &b) == 0) ours = b.st_ino;
        if (theirs && theirs != ours) join |= k.flag;
    }
    struct stat a, b;
    bool joinPid = ::stat(("/proc/" + std::to_string(pid) + "/ns/pid").c_str(), &a) == 0 &&
                   ::stat("/proc/self/ns/pid", &b) == 0 && a.st_ino != b.st_ino;

    Pipe report;
    std::optional<Pipe> sync;
    if (afterClone) sync.emplace();
    OwnedFd devNull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (devNull.fd < 0) throw sysError("open " + quote("/dev/null"), errno);
    OwnedFd ownPidns;
    if (joinPid) {
        // Children of ours are born in the container's PID namespace; ours is restored
        // right after the clone.
        ownPidns.reset(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
        if (ownPidns.fd < 0) throw sysError("open our PID namespace", errno);
        check(sys.setns(pidfd, CLONE_NEWPID), "join the container's PID namespace");
    }
    // Born in the container's PID namespace: not dumpable from its first instruction
    // (CVE-2019-5736); the child inherits it, we take ours back after the clone.
    const int dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int childPidfd = -1;
    struct clone_args args = {};
    args.flags = CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&childPidfd);
    args.exit_signal = SIGCHLD;
    long child = sys.clone3(&args);
    if (child == 0) {
        try {
            report.read.release();
            if (sync) awaitParent(sync->read.fd); // in the container's cgroup first
            if (join) check(sys.setns(pidfd, join), "join the container's namespaces");
            setupStdio(io, devNull.fd);
            applyProcessSettings(sys, process);
            execContainerProcess(sys, process, report.write.fd);
        } catch (...) {
            failChild(report.write.fd);
        }
    }
    if (dumpable > 0) ::prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    if (joinPid) check(sys.setns(ownPidns.fd, CLONE_NEWPID), "return to our PID namespace");
    if (child < 0) throw sysError("clone the exec process", static_cast<int>(-child));
    ChildProcess proc(static_cast<pid_t>(child), childPidfd);
    (void)self;
    report.write.reset();
    try {
        if (sync) {
            sync->read.reset();
            afterClone(proc.pid());
            char c = 1;
            if (::write(sync->write.fd, &c, 1) != 1) throw sysError("wake the exec process", errno);
            sync->write.reset();
        }
        awaitExec(proc, report.read.fd);
    } catch (...) {
        if (!proc.waited()) {
            proc.kill(SIGKILL);
            proc.wait();
        }
        throw;
    }
    return proc;
}

int runContainer(Syscalls &sys, const ContainerSpec &spec, const ChildIo &io) {
    LaunchOptions options;
    options.dieWithParent = true;
    ChildProcess child = launch(sys, spec, io, options);
    return child.wait();
}

} // namespace mobileops::nsruntime
