// The runtime spec (docs/runtime-spec.md) as the engine uses it, parsed and validated in
// the caller's process before anything is cloned or mounted.
#pragma once

#include "Hooks.h"
#include "Security.h"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::nsruntime {

struct Rlimit {
    int resource = -1;
    std::string name; // "nofile"
    uint64_t soft = 0, hard = 0;
};

struct User {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> additionalGids;
    std::string home; // from the rootfs's /etc/passwd when known
};

// `--user` forms: "uid", "uid:gid", "name", "name:group". A name is looked up in the
// container's passwd/group contents; numbers need no entry.
User parseUser(const std::string &text, const std::string &passwd, const std::string &group);

// `--ulimit` form: "nofile=1024" or "nofile=1024:2048".
Rlimit parseUlimit(const std::string &text);
// RLIMIT_NOFILE or nofile -> resource number, -1 when unknown.
int rlimitResource(const std::string &name);
// Throws when the limit exceeds what this process may set (the host's hard limit, unless
// it holds CAP_SYS_RESOURCE).
void checkRlimit(const Rlimit &limit);

struct IdMapping {
    uint32_t containerId = 0, hostId = 0, size = 0;
};

// Bind mounts (volumes) a container may have.
inline constexpr size_t kMaxVolumes = 64;

struct MountSpec {
    std::string destination, source, type;
    std::vector<std::string> options;
};

struct Namespaces {
    bool pid = true, mount = true, uts = true, ipc = true, network = true, cgroup = true,
         user = false;
};

struct ProcessSpec {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string cwd = "/";
    User user;
    std::optional<std::string> userName; // unresolved "name[:group]" form
    // Unresolved process.user.additionalGroups: names in the rootfs's /etc/group, added
    // to user.additionalGids by prepareProcess.
    std::vector<std::string> additionalGroups;
    bool terminal = false;
    bool stdinOpen = false;
    bool init = false;
    bool noNewPrivileges = false; // resolved from `security` by prepareProcess
    std::vector<Rlimit> rlimits;
    std::optional<int> oomScoreAdj; // -1000..1000; lowering it needs CAP_SYS_RESOURCE
    unsigned umask = 022;           // the process's file mode creation mask, 0..0777
    SecuritySpec security;          // the spec's `security`; exec's `process.security` on top
    // Not a spec key: the OCI start gate (OciSpec), an O_PATH fd of the container's
    // exec.fifo. With it the process stops right before its exec until `start`.
    int gateFd = -1;
    // Not a spec key: run right after the gate was passed (startContainer hooks).
    std::function<void()> afterGate;
};

// The runc model (docs/runtime-spec.md, `oci`): `create` starts the container's init up
// to the exec of its process, where it waits for `start`; no monitor, the caller (conmon,
// containerd-shim: subreapers) reaps it. Its stdio is the caller's fds 0, 1, 2, or a pty
// whose master goes to `consoleSocket` (runc's protocol); its host pid to `pidFile`.
struct OciSpec {
    std::string pidFile;       // absolute, or empty
    std::string consoleSocket; // absolute path of a unix socket, or empty
    std::string bundle;        // absolute, or empty: reported in the OCI state
};

// A micro-VM container (docs/runtime-spec.md, `vm`): the runtime that asked for it (krun)
// names a VMM launcher; the namespace runtime runs that launcher as the container's
// process, on the host's filesystem, in the container's cgroup and PID, IPC, UTS and
// network namespaces, with a description of the VM (vm.json: this object's keys plus the
// root, mounts and process the guest runs) as its only argument. The spec's process runs
// in the guest, not on the host.
struct VmSpec {
    std::vector<std::string> launcher; // absolute path first
    nlohmann::json settings;           // the `vm` object as given, launcher removed
    std::string configFile;            // set by the runtime before launch: vm.json
};

// An extra node in the container's /dev (spec `devices`).
struct DeviceSpec {
    std::string path; // under /dev, no `..`
    char type = 'c';  // c (u: the same), b, p
    uint32_t major = 0, minor = 0;
    uint32_t mode = 0666; // permission bits
    uint32_t uid = 0, gid = 0;
};

// What the container sees at /sys/fs/cgroup (spec `cgroupMount`, Mounts::mountCgroups).
enum class CgroupMount { None, ReadOnly, ReadWrite };

struct ContainerSpec {
    std::string name;
    std::string image;
    std::string rootfs;
    bool readonly = false;
    std::string hostname;
    ProcessSpec process;
    Namespaces namespaces;
    std::vector<IdMapping> uidMappings, gidMappings;
    std::string networkMode = "private"; // private | host | none
    std::vector<MountSpec> mounts;
    // System-container modes (docs/runtime-spec.md): an overlay with a tmpfs upper layer
    // on the root ("volatile"), an ext4 image loop-mounted as the root ("rootfsImage",
    // then `rootfs` is empty), bind sources that may be missing ("softMounts").
    bool volatileRoot = false;
    std::string rootfsImage;
    bool softMounts = false;
    // An image root: the storage service's image id ("sha256:<hex>"); `rootfs` is then
    // empty in the document and set by the runtime to the root the service prepared, with
    // the writable layer limited to `diskLimit` bytes (resources.limits.storage) when set.
    std::string imageId;
    std::optional<uint64_t> diskLimit;
    // `volumes` as the document holds them (named volumes, emptyDir), for the storage
    // service's prepare_volumes; the runtime adds the bind mounts it returns to `mounts`.
    nlohmann::json volumes = nlohmann::json::array();
    // Not a spec key: an empty host directory on which a volatile or image root is
    // assembled, only ever mounted on inside the container's own mount namespace.
    std::string mountPoint = "/run/mobileops/rootfs";
    // Filled by prepareSpec: soft mounts skipped because their source is missing.
    std::vector<std::string> warnings;
    // System-container modes (docs/runtime-spec.md): an init system as PID 1 with what it
    // needs ("initSystem"), the host's devices and a writable /sys device tree
    // ("hardwareAccess").
    bool initSystem = false;
    bool hardwareAccess = false;
    // `cgroupMount` "ro" (default) | "rw" | "none": the container's own cgroups at
    // /sys/fs/cgroup. An init system gets its read-write cgroup2 instead.
    CgroupMount cgroupMount = CgroupMount::ReadOnly;
    int stopSignal = 15;
    uint32_t stopTimeout = 10;
    std::optional<VmSpec> vm;
    std::optional<OciSpec> oci;
    // `cgroupsPath` (OCI form) made relative to the cgroup service's parent ("/a/b" and
    // "a/b" both give "a/b"); empty: the runtime's own `mobileops/<id>`.
    std::string cgroupsPath;
    // `maskedPaths`, `readonlyPaths`: when given they replace the defaults (Mounts.h),
    // also under `privileged`; absolute paths in the container without `..`.
    std::optional<std::vector<std::string>> maskedPaths, readonlyPaths;
    // `sysctl`: namespaced keys only (checked against the namespaces), written inside the
    // container once its /proc is mounted, before pivot_root's read-only /proc/sys.
    std::map<std::string, std::string> sysctl;
    std::vector<DeviceSpec> devices;
    // `hooks` (Hooks.h): only with `oci`.
    Hooks hooks;
    // `namespacePaths` {pid|uts|ipc|network|cgroup|user: path}: namespaces to join (setns)
    // instead of making; the file must be an nsfs file of that type (checked at launch).
    std::map<std::string, std::string> namespacePaths;
    nlohmann::json raw; // the document as received

    bool userns() const { return namespaces.user && !uidMappings.empty(); }
};

// True when the container needs the storage service: an image root or volumes.
inline bool usesStorage(const ContainerSpec &spec) {
    return !spec.imageId.empty() || !spec.volumes.empty();
}

// The description of a VM container's guest that its launcher reads (VmSpec): the `vm`
// settings plus {rootfs, readonly, hostname, mounts: [{source, destination, readOnly}],
// process: {args, env, cwd, uid, gid, groups, rlimits: [{name, soft, hard}], umask,
// capabilities: {bounding, effective, permitted, inheritable, ambient}, noNewPrivileges,
// seccomp: {flags, filter: hex of the BPF program}}, sysctl: {key: value}}. Call after
// prepareSpec (users resolved, bind sources checked, security resolved).
nlohmann::json vmDescription(const ContainerSpec &spec);
// Whether a VM container's bind mount becomes a share of its own (a directory) or, being
// a file (an engine's /etc/hosts, /run/.containerenv), is bound onto its place in the root
// on the host, in the VMM's mount namespace, and reaches the guest through the root's share.
bool vmShare(const MountSpec &mount);

// Parse and validate. Errors are MO_E_INVALID naming the field ("process.args: ...").
ContainerSpec parseSpec(const nlohmann::json &doc);
// `cgroupsPath` as the cgroup service takes it (ContainerSpec::cgroupsPath). Refuses the
// systemd form "slice:prefix:name", `.` and `..` components and the root itself.
std::string parseCgroupsPath(const std::string &value);

// An `oci` object (also exec's detached process: pidFile and consoleSocket); `path` is
// the prefix errors name ("oci.").
OciSpec parseOci(const nlohmann::json &doc, const std::string &path);
ProcessSpec parseProcess(const nlohmann::json &doc, const ProcessSpec &defaults);

// A bind mount from the storage service's prepare_volumes ({source, destination,
// readOnly}) added to `mounts` before any mount below its destination.
void addVolumeMount(std::vector<MountSpec> &mounts, const nlohmann::json &volume);

// Checks against the host: rootfs exists and is a directory (or rootfsImage passes its
// e2fsck), rlimits are settable, bind sources exist (soft mounts without one are dropped
// into `warnings`). Resolves a named user against the rootfs's /etc/passwd (keeping the spec's
// additionalGids) and additionalGroups against its /etc/group, and sets HOME when unset.
void prepareSpec(ContainerSpec &spec);
void prepareProcess(ProcessSpec &process, const std::string &rootfs);

// Create the directory `path` (and its missing parents, 0755) inside `rootfs`, resolving
// every component inside it as the container will: an image's WorkingDir need not exist
// in the image (docker, podman and runc create it).
void makeDirInRoot(const std::string &rootfs, const std::string &path);

// Read a file inside `rootfs` without following symlinks out of it; empty when missing.
std::string readInRoot(const std::string &rootfs, const std::string &path);

} // namespace mobileops::nsruntime
