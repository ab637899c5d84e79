#include "Audit.h"

#include <mobileops/common/Errors.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>

namespace mobileops::integrity {

using common::quote;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

int weight(Severity s) {
    switch (s) {
    case Severity::Critical:
        return 40;
    case Severity::High:
        return 20;
    case Severity::Medium:
        return 10;
    case Severity::Low:
        return 5;
    case Severity::Info:
        return 0;
    }
    return 0;
}

std::string grade(int score) {
    if (score >= 90) return "A";
    if (score >= 75) return "B";
    if (score >= 60) return "C";
    if (score >= 50) return "D";
    return "F";
}

// Records are read leniently: a field of the wrong type counts as absent, so an old or
// hand-edited record is still audited rather than refused.
const json &field(const json &j, const char *key) {
    static const json none;
    if (!j.is_object()) return none;
    auto it = j.find(key);
    return it == j.end() ? none : *it;
}

std::optional<bool> boolean(const json &j, const char *key) {
    const json &v = field(j, key);
    return v.is_boolean() ? std::optional<bool>(v.get<bool>()) : std::nullopt;
}

std::optional<uint64_t> natural(const json &j, const char *key) {
    const json &v = field(j, key);
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return v.get<uint64_t>();
    return std::nullopt;
}

std::vector<std::string> strings(const json &j) {
    std::vector<std::string> out;
    if (j.is_array())
        for (const auto &s : j)
            if (s.is_string()) out.push_back(s.get<std::string>());
    return out;
}

// "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" are one capability: "CAP_NET_ADMIN".
std::string capabilityName(std::string name) {
    for (auto &c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name == "ALL" || name.rfind("CAP_", 0) == 0 ? name : "CAP_" + name;
}

// podman's default bounding set (docs/runtime-spec.md, "Capabilities"): adding one of
// these changes nothing.
const std::set<std::string> kDefaultCapabilities = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE",     "CAP_FOWNER",    "CAP_FSETID",
    "CAP_KILL",    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP",   "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETUID",           "CAP_SYS_CHROOT"};

// Each of these reaches past the container: the kernel itself (modules, BPF, raw I/O,
// reboot, the clock, the audit and MAC policy), other processes' memory, files by handle
// around the mount namespace, or the host's view of the network.
const std::set<std::string> kDangerousCapabilities = {
    "CAP_SYS_ADMIN",    "CAP_SYS_MODULE",      "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",    "CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN",
    "CAP_BPF",          "CAP_PERFMON",         "CAP_SYS_BOOT",
    "CAP_SYS_TIME",     "CAP_SYSLOG",          "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE", "CAP_AUDIT_CONTROL",   "CAP_CHECKPOINT_RESTORE"};

std::string normal(const std::string &path) {
    std::string p = fs::path(path).lexically_normal().string();
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
}

struct SensitivePath {
    std::string path, why;
};

// Host paths that hand the container the host (or mobileops itself) when bind-mounted:
// the path, anything below it, and any directory above it.
std::vector<SensitivePath> sensitivePaths() {
    std::vector<SensitivePath> paths = {
        {"/", "the host's whole filesystem"},
        {"/etc", "the host's configuration (passwd, shadow, sudoers)"},
        {"/proc", "the host's processes and kernel knobs"},
        {"/sys", "the host's devices and kernel knobs"},
        {"/dev", "the host's devices"},
        {"/boot", "the host's kernel and boot loader"},
        {"/root", "the host root's home"},
        {"/usr", "the host's programs"},
        {"/bin", "the host's programs"},
        {"/sbin", "the host's programs"},
        {"/lib", "the host's libraries"},
        {"/lib64", "the host's libraries"},
        {"/run", "the host's runtime sockets and state"},
        {"/var/run", "the host's runtime sockets and state"},
        {"/var/run/docker.sock", "the docker daemon's socket (root on the host)"},
        {"/run/containerd", "containerd's socket and state (root on the host)"},
        {"/var/lib/docker", "docker's store"},
        {"/var/lib/containers", "podman's store"},
        {"/var/lib/mobileops", "mobileops's state store and images"},
        {"/run/mobileops", "mobileops's runtime files"},
    };
    // The dispatcher takes its root and run directories from these when they are set.
    const std::pair<const char *, const char *> moved[] = {
        {"MOBILEOPS_ROOT", "mobileops's state store and images"},
        {"MOBILEOPS_RUN", "mobileops's runtime files"}};
    for (auto [var, why] : moved)
        if (const char *dir = std::getenv(var); dir && *dir == '/')
            paths.push_back({normal(dir), why});
    return paths;
}

// Mounted as containers commonly get them, these expose nothing of the host: device
// nodes without state, and the time zone read-only.
bool harmless(const std::string &path, bool readOnly) {
    static const std::set<std::string> nodes = {"/dev/null", "/dev/zero", "/dev/full",
                                                "/dev/random", "/dev/urandom"};
    return nodes.count(path) || (readOnly && (path == "/etc/localtime" || path == "/etc/timezone"));
}

// `inner` is `outer` or lies below it.
bool within(const std::string &inner, const std::string &outer) {
    return inner == outer || outer == "/" ||
           (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
            inner[outer.size()] == '/');
}

// What mounting `source` (normalized) exposes: the most specific sensitive path it lies
// in, else the first one below it (a mount of /var holds /var/lib/mobileops). Only a
// mount of "/" itself exposes "/".
std::optional<SensitivePath> exposedBy(const std::string &source) {
    std::optional<SensitivePath> best;
    for (const auto &s : sensitivePaths())
        if (s.path == "/" ? source == "/" : within(source, s.path))
            if (!best || s.path.size() > best->path.size()) best = s;
    if (best) return best;
    for (const auto &s : sensitivePaths())
        if (within(s.path, source))
            return SensitivePath{s.path, "it holds " + quote(s.path) + " (" + s.why + ")"};
    return std::nullopt;
}

// The sensitive path a bind source exposes, as written or as this host resolves it now
// (a symlink to /etc is /etc).
std::optional<SensitivePath> exposed(const std::string &source, bool readOnly) {
    std::string written = normal(source);
    if (harmless(written, readOnly)) return std::nullopt;
    if (auto s = exposedBy(written)) return s;
    std::error_code ec;
    std::string resolved = normal(fs::weakly_canonical(source, ec).string());
    if (ec || harmless(resolved, readOnly)) return std::nullopt;
    return exposedBy(resolved);
}

class Auditor {
public:
    explicit Auditor(const json &spec) : _spec(spec), _security(field(spec, "security")) {
        _privileged = boolean(_security, "privileged").value_or(false);
    }

    std::vector<Finding> run() {
        privileged();
        namespaces();
        capabilities();
        seccomp();
        noNewPrivileges();
        rootfs();
        mounts();
        user();
        hardware();
        resources();
        return std::move(_findings);
    }

private:
    void add(const char *id, Severity severity, std::string message, std::string fix) {
        _findings.push_back({id, severity, std::move(message), std::move(fix)});
    }

    void privileged() {
        if (_privileged)
            add("privileged", Severity::Critical,
                "every capability, no seccomp filter and no masked or read-only kernel paths: "
                "it can take over this host",
                "drop --privileged; add only the capabilities it needs with --cap-add");
    }

    bool shared(const char *ns) const {
        return !boolean(field(_spec, "namespaces"), ns).value_or(true);
    }

    void namespaces() {
        if (shared("network") || field(field(_spec, "network"), "mode") == "host")
            add("host-network", Severity::High,
                "shares the host's network namespace (--network host): it sees every "
                "interface, binds any host port and reaches services on the host's loopback",
                "use --network private, bridge or a network of its own instead of --network "
                "host");
        if (shared("pid"))
            add("host-pid", Severity::High,
                "shares the host's PID namespace: it sees the host's processes and, as the same "
                "user, can signal and trace them",
                "give it a PID namespace of its own (namespaces.pid: true)");
        if (shared("ipc"))
            add("host-ipc", Severity::Medium,
                "shares the host's IPC namespace: the host's shared memory and message queues",
                "give it an IPC namespace of its own (namespaces.ipc: true)");
        if (shared("uts"))
            add("host-uts", Severity::Medium,
                "shares the host's UTS namespace: it can change the host's hostname",
                "give it a UTS namespace of its own (namespaces.uts: true)");
    }

    void capabilities() {
        // A privileged container has every capability already: that finding says it.
        if (_privileged) return;
        const json &caps = field(_security, "capabilities");
        std::set<std::string> added;
        for (const auto &c : strings(field(caps, "add"))) added.insert(capabilityName(c));
        if (added.count("ALL")) {
            std::string except;
            for (const auto &c : strings(field(caps, "drop")))
                except += (except.empty() ? " except " : ", ") + quote(capabilityName(c));
            add("cap-added", Severity::Critical,
                "every capability added (--cap-add ALL)" + except +
                    ": with CAP_SYS_ADMIN or CAP_SYS_MODULE it is as strong as root on the host",
                "replace --cap-add ALL with --cap-add for each capability it needs");
            return;
        }
        for (const auto &cap : added) {
            // A capability of the base set gives nothing a plain container lacks.
            if (kDefaultCapabilities.count(cap)) continue;
            bool dangerous = kDangerousCapabilities.count(cap) > 0;
            add("cap-added", dangerous ? Severity::High : Severity::Medium,
                quote(cap) + " added" +
                    (dangerous ? std::string(": it reaches past the container to the host") : ""),
                "drop --cap-add " + cap.substr(4) + " unless the workload cannot run without it");
        }
    }

    void seccomp() {
        const json &sc = field(_security, "seccomp");
        std::string mode =
            field(sc, "mode").is_string() ? field(sc, "mode").get<std::string>() : "";
        if (mode.empty() && _privileged) {
            add("seccomp-unconfined", Severity::High,
                "no seccomp filter (--privileged): every system call reaches the kernel",
                "drop --privileged, or keep a filter with --security-opt seccomp=PROFILE.json");
            return;
        }
        if (mode == "unconfined") {
            add("seccomp-unconfined", Severity::High,
                "no seccomp filter (seccomp=unconfined): every system call reaches the kernel",
                "drop --security-opt seccomp=unconfined (the default profile applies then), or "
                "give a profile with --security-opt seccomp=PROFILE.json");
            return;
        }
        if (mode != "profile") return;
        const json &action = field(field(sc, "profile"), "defaultAction");
        if (action == "SCMP_ACT_ALLOW" || action == "SCMP_ACT_LOG") {
            std::string source =
                field(sc, "source").is_string() ? field(sc, "source").get<std::string>() : "";
            add("seccomp-permissive", Severity::Medium,
                "seccomp profile " + (source.empty() ? std::string() : quote(source) + " ") +
                    "allows every system call it does not name (defaultAction " +
                    quote(action.get<std::string>()) + ")",
                "use a profile that allows what the workload needs and refuses the rest "
                "(defaultAction SCMP_ACT_ERRNO), such as the default one");
        }
    }

    void noNewPrivileges() {
        std::optional<bool> nnp = boolean(_security, "noNewPrivileges");
        if (!nnp)
            if (auto escalate = boolean(_security, "allowPrivilegeEscalation")) nnp = !*escalate;
        if (nnp.value_or(!_privileged)) return;
        add("no-new-privs-off", Severity::Medium,
            std::string("no_new_privs is off") + (nnp ? "" : " (--privileged turns it off)") +
                ": setuid programs and file capabilities raise privileges inside",
            "use --security-opt no-new-privileges=true");
    }

    void rootfs() {
        if (boolean(_spec, "readonly").value_or(false) ||
            boolean(_security, "readOnlyRootFilesystem").value_or(false))
            return;
        add("writable-rootfs", Severity::Low,
            "the root filesystem is writable: a compromised process can change its programs",
            "use --read-only (and a volume or --ephemeral-storage for what it writes)");
    }

    void mounts() {
        const json &list = field(_spec, "mounts");
        if (!list.is_array()) return;
        for (const auto &m : list) {
            const json &type = field(m, "type");
            if (!type.is_null() && type != "bind") continue;
            if (!field(m, "source").is_string()) continue;
            std::string source = field(m, "source").get<std::string>();
            std::string destination = field(m, "destination").is_string()
                                          ? field(m, "destination").get<std::string>()
                                          : "?";
            std::vector<std::string> options = strings(field(m, "options"));
            bool readOnly = std::find(options.begin(), options.end(), "ro") != options.end();
            auto s = exposed(source, readOnly);
            if (!s) continue;
            add("sensitive-mount", readOnly ? Severity::High : Severity::Critical,
                quote(source) + " mounted " + (readOnly ? "read-only" : "read-write") + " at " +
                    quote(destination) + ": " + s->why,
                readOnly ? "mount only the files it needs, not " + quote(source)
                         : "mount only the files it needs, not " + quote(source) +
                               ", and read-only (-v " + source + ":" + destination + ":ro)");
        }
    }

    // The container's uid as the host sees it: mapped through the user namespace, if any.
    // Nothing when the user is a name the record cannot resolve.
    std::optional<uint64_t> hostUid(uint64_t uid) const {
        if (!boolean(field(_spec, "namespaces"), "user").value_or(false)) return uid;
        const json &maps = field(field(_spec, "userns"), "uidMappings");
        if (maps.is_array())
            for (const auto &m : maps) {
                uint64_t inside = natural(m, "containerID").value_or(0);
                uint64_t host = natural(m, "hostID").value_or(0);
                uint64_t size = natural(m, "size").value_or(0);
                if (uid >= inside && uid - inside < size) return host + (uid - inside);
            }
        return std::nullopt; // unmapped: the overflow uid, nobody on the host
    }

    // The uid the process runs as: {uid} or a name "UID[:GID]", "root" or "0"; nothing for
    // another name (resolved in the rootfs's /etc/passwd at start).
    std::optional<uint64_t> uid() const {
        const json &u = field(field(_spec, "process"), "user");
        if (field(u, "name").is_string()) {
            std::string name = field(u, "name").get<std::string>();
            name = name.substr(0, name.find(':'));
            if (name == "root") return 0;
            if (!name.empty() && std::all_of(name.begin(), name.end(),
                                             [](unsigned char c) { return std::isdigit(c); }))
                return std::strtoull(name.c_str(), nullptr, 10);
            return std::nullopt;
        }
        return natural(u, "uid").value_or(0);
    }

    void user() {
        bool userns = boolean(field(_spec, "namespaces"), "user").value_or(false);
        std::optional<uint64_t> inside = uid();
        std::optional<uint64_t> host = inside ? hostUid(*inside) : std::nullopt;
        if (host && *host == 0) {
            add("root-user", Severity::Medium,
                std::string("runs as root (uid 0) ") +
                    (userns ? "mapped to the host's root by its user namespace"
                            : "without a user namespace") +
                    ": root in the container is root on the host",
                "use --user UID[:GID] (a user the image has), or --userns HOSTID:SIZE to map "
                "root to an unprivileged range");
            return;
        }
        if (!userns)
            add("no-user-namespace", Severity::Info,
                "no user namespace: its " +
                    (inside ? "uid " + std::to_string(*inside) : std::string("user")) +
                    " is the same uid on the host",
                "use --userns HOSTID:SIZE to map its users to an unprivileged range");
    }

    void hardware() {
        if (boolean(_spec, "hardwareAccess").value_or(false))
            add("hardware-access", Severity::Critical,
                "hardware access (--hw-access): the host's devtmpfs and a writable /sys device "
                "tree; it can read and write every disk and device of the host",
                "drop --hw-access; pass only the devices it needs");
        if (boolean(_spec, "initSystem").value_or(false))
            add("init-system", Severity::Info,
                "runs an init system as PID 1 (--init-system) with a cgroup tree it can write",
                "run the service itself as the command unless it needs a whole system");
    }

    // A limit the spec lists as accepted but not applied (no cgroup service) is none.
    bool limited(const char *key, const std::string &flag) const {
        if (!field(field(field(_spec, "resources"), "limits"), key).is_number()) return false;
        std::string path = std::string("spec.resources.limits.") + key;
        for (const auto &u : strings(field(_spec, "unapplied")))
            if (u == flag || u == path || path.starts_with(u + ".")) return false;
        return true;
    }

    void resources() {
        if (!limited("memory", "--memory"))
            add("no-memory-limit", Severity::Low,
                "no memory limit: it can take all of the host's memory",
                "use --memory SIZE (resources.limits.memory)");
        if (!limited("pids", "--pids-limit"))
            add("no-pids-limit", Severity::Low,
                "no process limit: a fork bomb inside exhausts the host's process table",
                "use --pids-limit N (resources.limits.pids)");
    }

    const json &_spec;
    const json &_security;
    bool _privileged = false;
    std::vector<Finding> _findings;
};

} // namespace

const char *severityName(Severity s) {
    switch (s) {
    case Severity::Info:
        return "info";
    case Severity::Low:
        return "low";
    case Severity::Medium:
        return "medium";
    case Severity::High:
        return "high";
    case Severity::Critical:
        return "critical";
    }
    return "info";
}

json AuditReport::toJson() const {
    json list = json::array();
    for (const auto &f : findings)
        list.push_back({{"id", f.id},
                        {"severity", severityName(f.severity)},
                        {"message", f.message},
                        {"fix", f.fix}});
    return {{"id", id}, {"name", name}, {"score", score}, {"grade", grade}, {"findings", list}};
}

AuditReport audit(const json &container) {
    const json &spec = field(container, "spec");
    AuditReport report;
    report.id = field(container, "id").is_string() ? field(container, "id").get<std::string>() : "";
    report.name =
        field(container, "name").is_string() ? field(container, "name").get<std::string>() : "";
    if (!spec.is_object())
        throw std::invalid_argument("container " +
                                    quote(report.name.empty() ? report.id : report.name) +
                                    " has no spec to audit");
    report.findings = Auditor(spec).run();
    std::stable_sort(report.findings.begin(), report.findings.end(),
                     [](const Finding &a, const Finding &b) {
                         if (a.severity != b.severity) return a.severity > b.severity;
                         return a.id < b.id;
                     });
    int lost = 0;
    for (const auto &f : report.findings) lost += weight(f.severity);
    report.score = std::max(0, 100 - lost);
    report.grade = grade(report.score);
    return report;
}

} // namespace mobileops::integrity
