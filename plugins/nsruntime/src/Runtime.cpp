#include "Runtime.h"

#include <mobileops/common/Names.h>

#include "Launcher.h"
#include "Monitor.h"
#include "Oci.h"
#include "ProcFs.h"
#include "State.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <thread>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

// How long a caller waits for a living monitor to record an exit before it gives up.
constexpr int kMonitorRecordMs = 120'000;

class PidFd {
public:
    explicit PidFd(pid_t pid)
        : _fd(pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1) {}
    ~PidFd() {
        if (_fd >= 0) ::close(_fd);
    }
    PidFd(const PidFd &) = delete;
    PidFd &operator=(const PidFd &) = delete;
    int get() const { return _fd; }
    bool valid() const { return _fd >= 0; }
    // True when the process exited within `ms` (-1: forever).
    bool waitExit(int ms) const {
        if (_fd < 0) return true;
        struct pollfd p = {_fd, POLLIN, 0};
        for (;;) {
            int r = ::poll(&p, 1, ms);
            if (r < 0 && errno == EINTR) continue;
            return r > 0;
        }
    }
    int signal(int sig) const {
        return _fd < 0 ? -ESRCH
                       : (::syscall(SYS_pidfd_send_signal, _fd, sig, nullptr, 0) < 0 ? -errno : 0);
    }

private:
    int _fd;
};

bool isHex(const std::string &s) {
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return !s.empty();
}

std::string display(const json &record) {
    std::string name = record.value("name", "");
    return quote(name.empty() ? record.value("id", "").substr(0, 12) : name);
}

void mkdirs(const std::string &path) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw sysError("create " + quote(path), ec.value());
}

// The spec's process env with `overrides` (NAME=VALUE) replacing or appending.
std::vector<std::string> mergeEnv(std::vector<std::string> env,
                                  const std::vector<std::string> &overrides) {
    for (const auto &o : overrides) {
        std::string key = o.substr(0, o.find('='));
        bool replaced = false;
        for (auto &e : env)
            if (e.compare(0, key.size() + 1, key + "=") == 0) {
                e = o;
                replaced = true;
            }
        if (!replaced) env.push_back(o);
    }
    return env;
}

std::string cgroupPath(const std::string &id) { return "mobileops/" + id; }

// The device rules the cgroup service applies to the container (docs/runtime-spec.md,
// "Device access"), in runc's order, the last matching rule deciding: everything denied
// (allowed under `privileged` and `hardwareAccess`, whose /dev is the host's), then
// `resources.devices` as the spec gives them (OCI linux.resources.devices), then the
// standard nodes the runtime makes and what every container may use, then each node of
// `devices` (and /dev/kvm for a micro-VM's launcher). Like runc, the spec's rules cannot
// take the standard nodes away.
json deviceRules(const ContainerSpec &spec, const json &given) {
    const bool all = spec.process.security.privileged || spec.hardwareAccess;
    json rules = json::array({{{"allow", all}, {"type", "a"}, {"access", "rwm"}}});
    if (given.is_array())
        for (const json &r : given) rules.push_back(r); // the cgroup service checks them
    auto allow = [&](const char *type, int major, int minor, const char *access) {
        json r = {{"allow", true}, {"type", type}, {"access", access}};
        if (major >= 0) r["major"] = major;
        if (minor >= 0) r["minor"] = minor;
        rules.push_back(std::move(r));
    };
    allow("c", -1, -1, "m"); // mknod of any node; opening it is another matter
    allow("b", -1, -1, "m");
    static const std::pair<int, int> standard[] = {
        {1, 3},    {1, 5}, {1, 7}, {1, 8}, {1, 9}, // null zero full random urandom
        {5, 0},    {5, 2},                         // tty, ptmx
        {136, -1},                                 // the pty slaves (/dev/pts/N, /dev/console)
        {10, 200}};                                // net/tun, in the container's own netns
    for (const auto &[major, minor] : standard) allow("c", major, minor, "rwm");
    for (const DeviceSpec &d : spec.devices)
        if (d.type == 'c' || d.type == 'b')
            allow(d.type == 'c' ? "c" : "b", static_cast<int>(d.major), static_cast<int>(d.minor),
                  "rwm");
    if (spec.vm) allow("c", 10, 232, "rwm"); // /dev/kvm
    return rules;
}

// The resources object handed to the cgroup service: the spec's, with the full device list.
json cgroupResources(const ContainerSpec &spec) {
    json res = json::object();
    if (auto it = spec.raw.find("resources"); it != spec.raw.end() && it->is_object()) res = *it;
    res["devices"] = deviceRules(spec, res.value("devices", json()));
    return res;
}

// A VM container's guest, as its launcher reads it (VmSpec): <run dir>/vm.json, written
// whole under a temporary name first; the launcher's own files go to <run dir>/vm/.
void describeVm(ContainerSpec &spec, const std::string &id, const std::string &dir) {
    if (!spec.vm) return;
    // A file bind reaches the guest through the root's share (vmShare), where the guest's
    // own /dev, /run and /tmp cover it.
    for (const auto &m : spec.mounts)
        for (const char *covered : {"/dev", "/run", "/tmp"})
            if (m.type == "bind" && !vmShare(m) &&
                m.destination.rfind(std::string(covered) + "/", 0) == 0)
                spec.warnings.push_back("mount " + quote(m.destination) +
                                        ": a file below the guest's own " + covered +
                                        " is not visible in a micro-VM");
    mkdirs(dir);
    json description = vmDescription(spec);
    description["id"] = id;
    description["workDir"] = dir + "/vm";
    spec.vm->configFile = dir + "/vm.json";
    const std::string tmp = spec.vm->configFile + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << description.dump(2) << '\n';
        if (!out.flush()) throw sysError("write " + quote(tmp), errno);
    }
    if (::rename(tmp.c_str(), spec.vm->configFile.c_str()) < 0)
        throw sysError("write " + quote(spec.vm->configFile), errno);
}

// A service's JSON output of `fn`; throws Error with its message.
template <typename Fn> json serviceOutput(const Host &host, const char *service, Fn &&fn) {
    mo_buffer buf = MO_BUFFER_INIT;
    mo_error err = MO_ERROR_INIT;
    int rc = fn(&buf, &err);
    std::string text(buf.data ? buf.data : "", buf.len);
    host.api()->buffer_free(&buf);
    if (rc < 0) throw Error(rc, err.message);
    try {
        return json::parse(text);
    } catch (const json::exception &e) {
        throw Error(MO_E_INTERNAL,
                    std::string("the ") + service + " service's output: " + e.what());
    }
}

template <typename Fn> json cgroupOutput(const Host &host, Fn &&fn) {
    return serviceOutput(host, "cgroup", std::forward<Fn>(fn));
}

// Where `init` lives below the container's cgroup `path` on cgroup2 ("/init.scope"), ""
// when it is in `path` itself or unknown.
std::string initLeaf(const std::string &path, pid_t init) {
    std::ifstream in("/proc/" + std::to_string(init) + "/cgroup");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind("0::", 0) != 0) continue;
        std::string own = "/" + path;
        auto at = line.find(own + "/");
        return at == std::string::npos ? std::string() : line.substr(at + own.size());
    }
    return {};
}

std::function<void(pid_t)> attacher(const mo_cgroup_service *svc, const std::string &path) {
    return [svc, path](pid_t pid) {
        mo_error e = MO_ERROR_INIT;
        if (int rc = svc->attach(svc->self, path.c_str(), pid, &e); rc < 0)
            throw Error(rc, "cgroup " + quote(path) + ": " + e.message);
    };
}

// exec's join: the container's cgroup, or -- when something inside (systemd under
// --init-system) has enabled controllers in it, so cgroup v2's "no internal processes" rule
// refuses new members (EBUSY) -- the cgroup its init lives in below it, as runc does.
std::function<void(pid_t)> execAttacher(const mo_cgroup_service *svc, const std::string &path,
                                        pid_t init) {
    return [svc, path, init](pid_t pid) {
        mo_error e = MO_ERROR_INIT;
        int rc = svc->attach(svc->self, path.c_str(), pid, &e);
        if (rc == -EBUSY) {
            std::string leaf = initLeaf(path, init);
            if (!leaf.empty()) {
                mo_error again = MO_ERROR_INIT;
                rc = svc->attach(svc->self, (path + leaf).c_str(), pid, &again);
                if (rc >= 0) return;
            }
        }
        if (rc < 0) throw Error(rc, "cgroup " + quote(path) + ": " + e.message);
    };
}

// After the init exited: was it the OOM killer? Then nothing may stay behind.
json finishCgroup(const Host &host, const mo_cgroup_service *svc, const std::string &path,
                  int signal) {
    json out = json::object();
    if (signal == SIGKILL && svc->stats) {
        try {
            json st = cgroupOutput(host, [&](mo_buffer *b, mo_error *e) {
                return svc->stats(svc->self, path.c_str(), b, e);
            });
            const json &oom = st["memory"]["oom_kills"];
            if (oom.is_number() && oom.get<int64_t>() > 0) out["oom_killed"] = true;
        } catch (const std::exception &e) {
            host.log(MO_LOG_WARNING, "cgroup " + quote(path) + ": " + e.what());
        }
    }
    mo_error err = MO_ERROR_INIT;
    if (svc->kill) svc->kill(svc->self, path.c_str(), SIGKILL, &err);
    err = MO_ERROR_INIT;
    if (svc->destroy && svc->destroy(svc->self, path.c_str(), &err) < 0)
        host.log(MO_LOG_WARNING, "cgroup " + quote(path) + ": " + err.message);
    return out;
}

} // namespace

void checkName(const std::string &name) { common::checkName("container name", name); }

namespace {

// The hooks a recorded OCI container's spec holds, if any.
std::optional<Hooks> hooksOf(const json &record) {
    if (!isOci(record)) return std::nullopt;
    const json &spec = record["spec"];
    auto h = spec.find("hooks");
    if (h == spec.end() || h->is_null()) return std::nullopt;
    return parseHooks(*h);
}

std::string ociState(const json &record, const char *status, pid_t pid) {
    const json &spec = record["spec"];
    return hookState(record.value("name", ""), status, pid, spec["oci"].value("bundle", ""),
                     spec.value("annotations", json::object()));
}

} // namespace

Runtime::Runtime(Host host, Syscalls &sys)
    : _host(host), _sys(sys), _rootDir(_host.config("root_dir", "/var/lib/mobileops")) {
    setSeccompCacheDir(_host.config("run_dir", "/run/mobileops") + "/seccomp");
}

std::string Runtime::containerDir(const std::string &id) const {
    return _rootDir + "/containers/" + id;
}

namespace {

// An OCI container has no monitor to record its exit, and its init's status is its
// caller's; a VM container's launcher leaves how the program ended in vm-exit.json
// (none when the VM could not be made), which is taken when the init is found gone.
void addVmExit(json &record, const std::string &dir) {
    if (!isOci(record) || !record["spec"].contains("vm") ||
        record.value("status", "") != status::stopped || record.contains("exit_code"))
        return;
    std::ifstream in(dir + "/vm-exit.json");
    json report = json::parse(in, nullptr, false);
    if (!report.is_object() || !report["exitCode"].is_number_integer()) return;
    record["exit_code"] = report["exitCode"];
    record["signal"] = report.value("signal", 0);
}

} // namespace

json Runtime::reconciled(const std::string &id, json record) const {
    if (reconcile(record) != Reconciled::changed) return record;
    addVmExit(record, containerDir(id));
    // Write back under a transaction, re-reading so a concurrent update is not lost. The
    // fresh record is the answer: the monitor may have recorded the exit between the
    // caller's read and its look at the processes (it writes, then exits).
    try {
        Host::Transaction tx(_host);
        if (auto current = _host.get(kContainerKind, id)) {
            record = *current;
            if (reconcile(record) == Reconciled::changed) {
                addVmExit(record, containerDir(id));
                _host.put(kContainerKind, id, record.value("name", ""), record);
            }
        }
        tx.commit();
    } catch (const Error &e) {
        _host.log(MO_LOG_WARNING, "reconcile " + quote(id.substr(0, 12)) + ": " + e.what());
    }
    return record;
}

Runtime::Found Runtime::find(const std::string &ref) const {
    if (ref.empty()) throw Error(MO_E_INVALID, "no container given");
    std::optional<json> rec;
    std::string id;
    if (ref.size() == 64 && isHex(ref)) {
        rec = _host.get(kContainerKind, ref);
        id = ref;
    }
    if (!rec) {
        rec = _host.find(kContainerKind, ref);
        if (rec) id = rec->value("id", "");
    }
    if (!rec && isHex(ref) && ref.size() >= 3) {
        for (auto &r : _host.list(kContainerKind)) {
            std::string rid = r.value("id", "");
            if (rid.compare(0, ref.size(), ref) != 0) continue;
            if (rec) throw Error(MO_E_INVALID, quote(ref) + " matches more than one container");
            rec = std::move(r);
            id = rid;
        }
    }
    if (!rec || id.empty()) throw Error(MO_E_NOT_FOUND, "no such container " + quote(ref));
    return {id, reconciled(id, std::move(*rec))};
}

Runtime::Found Runtime::findRunning(const std::string &ref) const {
    Found f = find(ref);
    std::string st = f.record.value("status", "");
    if (st != status::running && st != status::paused)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not running");
    return f;
}

Runtime::Found Runtime::findLive(const std::string &ref) const {
    Found f = find(ref);
    if (isOci(f.record) && f.record.value("status", "") == status::created &&
        f.record.value("pid", 0) > 0)
        return f;
    return findRunning(f.id);
}

ContainerSpec Runtime::specOf(const json &record) const {
    ContainerSpec spec = parseSpec(record.at("spec"));
    if (spec.hostname.empty()) spec.hostname = record.value("name", "");
    spec.mountPoint = _host.config("run_dir", "/run/mobileops") + "/rootfs";
    return spec;
}

void Runtime::insert(const ContainerSpec &spec, const std::string &id, const std::string &name,
                     json &record) const {
    record = newRecord(spec, id, name);
    try {
        _host.put(kContainerKind, id, name, record, true);
    } catch (const Error &e) {
        if (e.code() == MO_E_EXISTS)
            throw Error(MO_E_EXISTS, "container name " + quote(name) + " is already in use");
        throw;
    }
}

void Runtime::release(const std::string &id) const {
    if (auto rec = _host.get(kContainerKind, id)) {
        // An OCI init (created, or a create that was interrupted) has no monitor to end it.
        if (pid_t pid = rec->value("pid", 0); pid > 0 && isOci(*rec)) {
            PidFd init(pid);
            if (init.valid() && processAlive(pid, rec->value("pid_start", uint64_t(0)))) {
                init.signal(SIGKILL);
                init.waitExit(10000);
            }
        }
        releaseCgroup(*rec);
        releaseStorage(id, *rec); // a failure keeps the record, so delete can be tried again
        const json *spec = rec->contains("spec") ? &(*rec)["spec"] : nullptr;
        if (spec && spec->contains("network") && (*spec)["network"].is_object() &&
            !(*spec)["network"].value("attach", "").empty())
            detachNetwork(id);
    }
    if (const mo_log_service *log = logService(); log && log->remove) {
        mo_error err = MO_ERROR_INIT;
        if (log->remove(log->self, id.c_str(), &err) < 0)
            _host.log(MO_LOG_WARNING, "the log of " + quote(id.substr(0, 12)) + ": " + err.message +
                                          " (system gc removes it later)");
    }
    std::error_code ec;
    std::filesystem::remove_all(containerDir(id), ec);
    _host.remove(kContainerKind, id);
}

json Runtime::create(const json &specJson) {
    ContainerSpec spec = parseSpec(specJson);
    if (!spec.name.empty()) checkName(spec.name);
    checkNamespacePaths(spec);
    spec.mountPoint = _host.config("run_dir", "/run/mobileops") + "/rootfs";
    // An image root exists only once the storage service made it for the container's id.
    const bool storage = usesStorage(spec);
    if (!storage) prepareSpec(spec);
    const std::string id = newContainerId();
    const std::string name = spec.name.empty() ? id.substr(0, 12) : spec.name;
    if (spec.hostname.empty()) {
        spec.hostname = name.substr(0, 63); // an OCI create launches now
        spec.raw["hostname"] = spec.hostname;
    }
    json record;
    insert(spec, id, name, record);
    try {
        if (storage) {
            prepareStorage(spec, id, record);
            prepareSpec(spec);
        }
        mkdirs(containerDir(id));
        if (spec.oci) {
            createOci(spec, id, record);
        } else {
            record["status"] = status::created;
            record.erase("creator");
            _host.put(kContainerKind, id, name, record);
        }
    } catch (...) {
        try {
            release(id);
        } catch (...) {
        }
        throw;
    }
    _host.event("container.create", {{"id", id}, {"name", name}});
    return publicView(record);
}

void Runtime::createOci(ContainerSpec &spec, const std::string &id, json &record) const {
    const std::string name = record.value("name", "");
    describeVm(spec, id, containerDir(id)); // before launchOptions, which reads vm.json's place
    for (const auto &w : spec.warnings) _host.log(MO_LOG_WARNING, w);
    LaunchOptions options = launchOptions(spec, id, record);
    prepareNetwork(spec, id, record, options);
    options.afterExit = nullptr; // delete releases what the monitor would have
    _host.put(kContainerKind, id, name, record);
    const std::string gatePath = containerDir(id) + "/exec.fifo";
    int gate = makeGate(gatePath);
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closeGate{gate};
    options.gateFd = gate;
    if (!spec.hooks.empty()) {
        // The OCI state each hook reads; the id is the container's name (the caller's id).
        const Hooks hooks = spec.hooks;
        const std::string bundle = spec.oci->bundle;
        const json annotations = spec.raw.value("annotations", json::object());
        auto state = [name, bundle, annotations](const char *status, pid_t pid) {
            return hookState(name, status, pid, bundle, annotations);
        };
        // prestart and createRuntime: in our namespaces once the container's exist (after
        // the network attach), before it builds its root.
        auto previous = options.beforeStart;
        options.beforeStart = [previous, hooks, state](pid_t pid) {
            if (previous) previous(pid);
            runHooks(hooks.prestart, "prestart", state("creating", pid));
            runHooks(hooks.createRuntime, "createRuntime", state("creating", pid));
        };
        if (!hooks.createContainer.empty())
            options.beforePivot = [hooks, state](pid_t pid) {
                runHooks(hooks.createContainer, "createContainer", state("creating", pid));
            };
        if (!hooks.startContainer.empty())
            options.afterGate = [hooks, state](pid_t pid) {
                runHooks(hooks.startContainer, "startContainer", state("created", pid));
            };
    }
    Pty pty;
    ChildIo io;
    if (!spec.oci->consoleSocket.empty()) {
        io.ownTerminal = &pty;
    } else {
        io.in = 0; // the caller's own streams: conmon's and the shim's pipes
        io.out = 1;
        io.err = 2;
    }
    ChildProcess child = launch(_sys, spec, io, options);
    try {
        // Recorded at once: an interrupted create leaves a record gc can follow to it.
        record["pid"] = child.pid();
        record["pid_start"] = processIdentity(child.pid())["start"];
        _host.put(kContainerKind, id, name, record);
        pty.closeSlave();
        if (!spec.oci->consoleSocket.empty())
            sendConsole(spec.oci->consoleSocket, pty.master(), pty.slavePath());
        if (!spec.oci->pidFile.empty()) writePidFile(spec.oci->pidFile, child.pid());
        record["status"] = status::created;
        record.erase("creator");
        _host.put(kContainerKind, id, name, record);
    } catch (...) {
        child.kill(SIGKILL);
        child.wait();
        if (!spec.oci->pidFile.empty()) ::unlink(spec.oci->pidFile.c_str());
        throw;
    }
}

void Runtime::startOci(const Found &f) {
    const std::string st = f.record.value("status", "");
    if (st != status::created)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is " + st +
                                    ": only a created container can be started");
    pid_t pid = f.record.value("pid", 0);
    PidFd init(pid);
    if (!init.valid() || !processAlive(pid, f.record.value("pid_start", uint64_t(0))))
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not running");
    openGate(containerDir(f.id) + "/exec.fifo", init.get(), "container " + display(f.record));
    Host::Transaction tx(_host);
    auto rec = _host.get(kContainerKind, f.id);
    if (!rec) throw Error(MO_E_NOT_FOUND, "container " + display(f.record) + " was removed");
    (*rec)["status"] = status::running;
    (*rec)["started"] = nowTimestamp();
    _host.put(kContainerKind, f.id, rec->value("name", ""), *rec);
    tx.commit();
    emitStart(_host, *rec);
    // poststart: after the start; a failure is only a warning (OCI).
    if (auto hooks = hooksOf(f.record); hooks && !hooks->poststart.empty()) {
        try {
            runHooks(hooks->poststart, "poststart", ociState(f.record, "running", pid));
        } catch (const std::exception &e) {
            _host.log(MO_LOG_WARNING, e.what());
        }
    }
}

void Runtime::start(const std::string &ref) {
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = find(f.id);
    if (isOci(f.record)) return startOci(f);
    const std::string st = f.record.value("status", "");
    if (st == status::running || st == status::paused)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is already running");
    if (st == status::creating)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is still being created");
    // The previous run exited but its monitor has not recorded it yet: let it finish first.
    if (exitPending(f.id)) f.record = awaitRecordedExit(f.id, 5000);
    ContainerSpec spec = specOf(f.record);
    json record = f.record;
    prepareStorage(spec, f.id, record); // again: after a reboot nothing is mounted
    prepareSpec(spec);
    mkdirs(containerDir(f.id));
    describeVm(spec, f.id, containerDir(f.id));
    for (const auto &w : spec.warnings) _host.log(MO_LOG_WARNING, w);
    LaunchOptions options = launchOptions(spec, f.id, record);
    prepareNetwork(spec, f.id, record, options);
    if (record != f.record) _host.put(kContainerKind, f.id, record.value("name", ""), record);
    startMonitor(_host, _sys, spec, f.id, logService(), logOptions(spec, record), options);
}

int Runtime::run(const json &specJson, const Stdio &stdio, bool autoremove) {
    ContainerSpec spec = parseSpec(specJson);
    if (!spec.name.empty()) checkName(spec.name);
    if (stdio.tty) {
        if (spec.vm)
            throw Error(MO_E_UNSUPPORTED,
                        "a terminal (-t) is not supported in a micro-VM container yet");
        spec.process.terminal = true;
    }
    spec.mountPoint = _host.config("run_dir", "/run/mobileops") + "/rootfs";
    const bool storage = usesStorage(spec);
    if (!storage) prepareSpec(spec);
    const std::string id = newContainerId();
    const std::string name = spec.name.empty() ? id.substr(0, 12) : spec.name;
    if (spec.hostname.empty()) {
        spec.hostname = name.substr(0, 63);
        spec.raw["hostname"] = spec.hostname;
    }
    json record;
    insert(spec, id, name, record);
    _host.event("container.create", {{"id", id}, {"name", name}});
    // The row goes on every failure path with --rm; without it, a stopped record stays.
    struct Cleanup {
        const Runtime &rt;
        const std::string &id, &name;
        bool active = true;
        ~Cleanup() {
            if (!active) return;
            try {
                rt.release(id);
                rt._host.event("container.remove", {{"id", id}, {"name", name}});
            } catch (...) {
            }
        }
    } cleanup{*this, id, name};

    if (storage) {
        prepareStorage(spec, id, record);
        prepareSpec(spec);
    }
    describeVm(spec, id, containerDir(id));
    for (const auto &w : spec.warnings) _host.log(MO_LOG_WARNING, w);
    LaunchOptions options = launchOptions(spec, id, record);
    prepareNetwork(spec, id, record, options);
    if (record.contains("cgroup")) _host.put(kContainerKind, id, name, record); // for release
    // The caller waits for the exit: the index is brought up to date by the next search,
    // not here.
    json logOpts = logOptions(spec, record);
    logOpts["index"] = false;
    LogSink log(logService(), id, logOpts);
    log.warn = [this, &name](const std::string &w) {
        _host.log(MO_LOG_WARNING, "the log of " + quote(name) + ": " + w);
    };
    Stdio logged = stdio;
    if (log.active()) logged.log = &log;
    int signal = 0;
    int exitStatus;
    try {
        exitStatus = runForeground(
            _sys, spec, logged,
            [&](ChildProcess &child) {
                json self = processIdentity(::getpid());
                record["status"] = status::running;
                record.erase("creator");
                record["pid"] = child.pid();
                record["pid_start"] = processIdentity(child.pid())["start"];
                record["monitor_pid"] = self["pid"];
                record["monitor_start"] = self["start"];
                record["started"] = nowTimestamp();
                _host.put(kContainerKind, id, name, record);
                emitStart(_host, record);
            },
            &signal, options);
    } catch (const LaunchError &e) {
        if (options.afterExit) options.afterExit(0);
        if (!autoremove) {
            record.erase("creator");
            markStopped(record, e.exitStatus(), 0);
            record["error"] = e.what();
            _host.put(kContainerKind, id, name, record);
            cleanup.active = false;
        }
        throw;
    }
    json exit = options.afterExit ? options.afterExit(signal) : json::object();
    markStopped(record, exitStatus, signal);
    record.update(exit);
    if (!autoremove) {
        _host.put(kContainerKind, id, name, record);
        cleanup.active = false;
    }
    emitExit(_host, record);
    log.close();
    return exitStatus;
}

void Runtime::kill(const std::string &ref, int signal, bool all) {
    if (signal < 0 || signal >= NSIG)
        throw Error(MO_E_INVALID, std::to_string(signal) + " is not a signal");
    Found f = findLive(ref);
    pid_t pid = f.record.value("pid", 0);
    PidFd init(pid);
    if (!init.valid() || !processAlive(pid, f.record.value("pid_start", uint64_t(0))))
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not running");
    if (all && killCgroup(f.record, signal)) return;
    if (all && specOf(f.record).namespaces.pid) {
        uint64_t ns = namespaceInode(pid, "pid");
        for (pid_t p : processesInPidNamespace(ns))
            if (p != pid) ::kill(p, signal);
    }
    int r = init.signal(signal);
    if (r < 0 && r != -ESRCH) throw sysError("kill " + display(f.record), -r);
}

json Runtime::awaitRecordedExit(const std::string &id, int timeoutMs) const {
    // The monitor records the exit once it has released the container (cgroup, network),
    // which takes long on a loaded host: while it lives, wait for it, not for the clock.
    // Only a monitor that ends without a record leaves the status unknown.
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    const auto monitorDeadline = Clock::now() + std::chrono::milliseconds(kMonitorRecordMs);
    for (int delay = 2;; delay = std::min(delay * 2, 50)) {
        auto rec = _host.get(kContainerKind, id);
        if (!rec)
            throw Error(MO_E_NOT_FOUND, "container " + quote(id.substr(0, 12)) + " was removed");
        json r = *rec;
        Reconciled how = reconcile(r);
        if (how == Reconciled::unchanged && r.value("status", "") == status::stopped) return r;
        if (how == Reconciled::changed) return reconciled(id, *rec);
        const auto now = Clock::now();
        if (how == Reconciled::transient && now < monitorDeadline) {
            PidFd monitor(rec->value("monitor_pid", 0));
            if (monitor.valid() && processAlive(rec->value("monitor_pid", 0),
                                                rec->value("monitor_start", uint64_t(0)))) {
                monitor.waitExit(static_cast<int>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(monitorDeadline - now)
                        .count()));
                continue;
            }
        }
        if (now > deadline) return reconciled(id, *rec);
        std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
}

bool Runtime::exitPending(const std::string &id) const {
    auto rec = _host.get(kContainerKind, id);
    if (!rec) return false;
    json r = *rec;
    return reconcile(r) == Reconciled::transient;
}

void Runtime::stop(const std::string &ref, uint32_t timeoutSeconds) {
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = find(f.id);
    const std::string st = f.record.value("status", "");
    if (st != status::running && st != status::paused) {
        if (exitPending(f.id)) awaitRecordedExit(f.id, 5000); // exited; let the monitor record it
        return;
    }
    pid_t pid = f.record.value("pid", 0);
    PidFd init(pid);
    if (init.valid() && processAlive(pid, f.record.value("pid_start", uint64_t(0)))) {
        ContainerSpec spec = specOf(f.record);
        if (st == status::paused) {
            // A frozen init would sit on the stop signal until the timeout.
            const mo_cgroup_service *svc = cgroupService();
            mo_error err = MO_ERROR_INIT;
            if (svc && svc->thaw) svc->thaw(svc->self, f.record.value("cgroup", "").c_str(), &err);
        }
        if (init.signal(spec.stopSignal) < 0 ||
            !init.waitExit(static_cast<int>(timeoutSeconds) * 1000)) {
            if (!killCgroup(f.record, SIGKILL)) init.signal(SIGKILL);
            if (!init.waitExit(10000))
                throw Error(MO_E_INTERNAL, "container " + display(f.record) + " survived SIGKILL");
        }
    }
    awaitRecordedExit(f.id, 5000);
    _host.event("container.stop", {{"id", f.id}, {"name", f.record.value("name", "")}});
}

void Runtime::remove(const std::string &ref, bool force) {
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = find(f.id);
    const std::string st = f.record.value("status", "");
    if (st == status::creating && !abandonedCreate(f.record))
        throw Error(MO_E_STATE, "container " + display(f.record) + " is still being created");
    if (st == status::running || st == status::paused) {
        if (!force)
            throw Error(MO_E_STATE, "container " + display(f.record) +
                                        " is running: stop it first or use --force");
        pid_t pid = f.record.value("pid", 0);
        PidFd init(pid);
        if (init.valid() && processAlive(pid, f.record.value("pid_start", uint64_t(0)))) {
            if (!killCgroup(f.record, SIGKILL)) init.signal(SIGKILL);
            init.waitExit(10000);
        }
    }
    // The monitor writes the exit last; let it finish so nothing outlives the delete.
    pid_t monitor = f.record.value("monitor_pid", 0);
    if (monitor > 0 && monitor != ::getpid() &&
        processAlive(monitor, f.record.value("monitor_start", uint64_t(0)))) {
        PidFd m(monitor);
        m.waitExit(5000);
    }
    release(f.id);
    _host.event("container.remove", {{"id", f.id}, {"name", f.record.value("name", "")}});
    // poststop: once the container is gone, before delete returns; failures warn (OCI).
    if (auto hooks = hooksOf(f.record); hooks && !hooks->poststop.empty()) {
        try {
            runHooks(hooks->poststop, "poststop", ociState(f.record, "stopped", 0));
        } catch (const std::exception &e) {
            _host.log(MO_LOG_WARNING, e.what());
        }
    }
}

json Runtime::state(const std::string &ref) {
    Found f = find(ref);
    json view = publicView(f.record);
    // What `runc state` prints, ready made for the OCI command line.
    if (isOci(f.record))
        view["ociState"] = json::parse(
            ociState(f.record, view.value("status", "").c_str(), f.record.value("pid", 0)));
    // A live container: the limits it asked for against what the kernel holds.
    std::string st = f.record.value("status", ""), path = f.record.value("cgroup", "");
    if ((st != status::running && st != status::paused) || path.empty()) return view;
    auto *svc = static_cast<const mo_cgroup_service *>(_host.lookup(MO_SERVICE_CGROUP));
    if (!svc || !svc->report) return view;
    json requested = json::object();
    if (auto spec = f.record.find("spec"); spec != f.record.end() && spec->is_object())
        if (auto res = spec->find("resources"); res != spec->end() && res->is_object())
            requested = *res;
    std::string text = requested.dump();
    try {
        view["resources"] = cgroupOutput(_host, [&](mo_buffer *b, mo_error *e) {
            return svc->report(svc->self, path.c_str(), text.c_str(), b, e);
        });
    } catch (const std::exception &e) {
        view["resources"] = {{"error", e.what()}};
    }
    return view;
}

json Runtime::list(bool all) {
    json out = json::array();
    for (auto &r : _host.list(kContainerKind)) {
        std::string id = r.value("id", "");
        if (id.empty() || r.value("status", "") == status::creating) continue;
        json rec = reconciled(id, std::move(r));
        std::string st = rec.value("status", "");
        if (!all && st != status::running && st != status::paused) continue;
        out.push_back(publicView(rec));
    }
    return out;
}

int Runtime::exec(const std::string &ref, const json &processJson, const Stdio &stdio) {
    Found f = findLive(ref);
    ContainerSpec spec = specOf(f.record);
    if (spec.vm)
        throw Error(MO_E_UNSUPPORTED,
                    "container " + display(f.record) +
                        " runs in a micro-VM: exec needs the guest agent, which mobileops does "
                        "not have yet (its output is in `mobileops logs " +
                        f.record.value("name", "") + "`)");
    ProcessSpec defaults = spec.process;
    defaults.args.clear();
    defaults.init = false;
    defaults.terminal = false;
    defaults.stdinOpen = false;
    json p = processJson.is_object() ? processJson : json::object();
    // runc's detached exec: the caller (conmon) reaps the process and reads its status.
    bool detach = false;
    OciSpec detached;
    if (auto d = p.find("detach"); d != p.end() && !d->is_null()) {
        if (!d->is_boolean()) throw Error(MO_E_INVALID, "process.detach: expected true or false");
        detach = d->get<bool>();
    }
    if (p.contains("pidFile") || p.contains("consoleSocket")) {
        if (!detach)
            throw Error(MO_E_INVALID,
                        "process.pidFile, process.consoleSocket: only with process.detach");
        json o = {{"pidFile", p.value("pidFile", json())},
                  {"consoleSocket", p.value("consoleSocket", json())}};
        detached = parseOci(o, "process.");
    }
    p.erase("detach");
    p.erase("pidFile");
    p.erase("consoleSocket");
    std::vector<std::string> extraEnv;
    if (p.contains("env")) {
        json only = {{"args", json::array({"x"})}, {"env", p["env"]}};
        extraEnv = parseProcess(only, {}).env;
        p.erase("env");
    }
    ProcessSpec process = parseProcess(p, defaults);
    process.env = mergeEnv(defaults.env, extraEnv);
    if (stdio.tty && !detach) process.terminal = true;
    if (detach && process.terminal != !detached.consoleSocket.empty())
        throw Error(MO_E_INVALID, process.terminal
                                      ? "process.consoleSocket: a detached process.terminal "
                                        "needs a console socket to send the pty to"
                                      : "process.consoleSocket: given without process.terminal");
    if (!p.contains("user")) {
        process.user = spec.process.user;
        process.userName = spec.process.userName;
        process.additionalGroups = spec.process.additionalGroups;
    }
    // An image or a volatile root exists only in the container: look users up there.
    prepareProcess(process, spec.rootfsImage.empty() && spec.imageId.empty() && !spec.volatileRoot
                                ? spec.rootfs
                                : "/proc/" + std::to_string(f.record.value("pid", 0)) + "/root");
    std::function<void(pid_t)> join;
    if (f.record.contains("cgroup"))
        if (const mo_cgroup_service *svc = cgroupService())
            join = execAttacher(svc, f.record.value("cgroup", ""), f.record.value("pid", 0));
    json who = {{"id", f.id}, {"name", f.record.value("name", "")}};
    json started = who;
    started["args"] = process.args;
    if (detach) {
        int pid = execDetached(f, process, detached, join);
        started["pid"] = pid;
        _host.event("container.exec", started);
        return pid;
    }
    _host.event("container.exec", started);
    int status = execInContainer(_sys, f.record.value("pid", 0),
                                 f.record.value("pid_start", uint64_t(0)), process, stdio, join);
    who["exit_code"] = status;
    _host.event("container.exec_exit", who);
    return status;
}

int Runtime::execDetached(const Found &f, const ProcessSpec &process, const OciSpec &oci,
                          const std::function<void(pid_t)> &join) const {
    pid_t pid = f.record.value("pid", 0);
    PidFd init(pid);
    // The pidfd pins the process: a start time checked after opening it rules out reuse.
    if (!init.valid() || !processAlive(pid, f.record.value("pid_start", uint64_t(0))))
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not running");
    Pty pty;
    ChildIo io;
    if (process.terminal) {
        pty = Pty::openInContainer(pid, init.get(), process.user.uid, -1);
        if (pty.master() < 0) pty = Pty::open(-1);
        io.tty = pty.slave();
    } else {
        io.in = 0; // the caller's own streams
        io.out = 1;
        io.err = 2;
    }
    ChildProcess child = launchInside(_sys, pid, init.get(), process, io, join);
    try {
        pty.closeSlave();
        if (process.terminal) sendConsole(oci.consoleSocket, pty.master(), pty.slavePath());
        if (!oci.pidFile.empty()) writePidFile(oci.pidFile, child.pid());
    } catch (...) {
        child.kill(SIGKILL);
        child.wait();
        throw;
    }
    return child.pid();
}

void Runtime::attach(const std::string &ref, const Stdio &stdio) {
    Found f = findRunning(ref);
    pid_t pid = f.record.value("pid", 0);
    PidFd init(pid);
    if (!init.valid())
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not running");
    const mo_log_service *log = logService();
    if (!log || !log->read)
        throw Error(MO_E_UNSUPPORTED, "attach needs the log service (plugin logcollector)");
    // New output from now on, until the container's monitor closes the log.
    mo_error err = MO_ERROR_INIT;
    if (int rc = log->read(log->self, f.id.c_str(), R"({"follow":true,"fromEnd":true})", stdio.out,
                           stdio.err, &err);
        rc < 0)
        throw Error(rc, "attach to " + display(f.record) + ": " + err.message);
}

json Runtime::top(const std::string &ref) {
    Found f = findRunning(ref);
    pid_t pid = f.record.value("pid", 0);
    // The cgroup holds them all, also without a PID namespace of its own (--pid host);
    // else the PID namespace; else the init alone.
    std::vector<pid_t> pids;
    const std::string path = f.record.value("cgroup", "");
    if (const mo_cgroup_service *svc = cgroupService(); svc && svc->pids && !path.empty()) {
        try {
            json list = cgroupOutput(_host, [&](mo_buffer *b, mo_error *e) {
                return svc->pids(svc->self, path.c_str(), b, e);
            });
            for (const auto &p : list)
                if (p.is_number_integer()) pids.push_back(p.get<pid_t>());
            std::sort(pids.begin(), pids.end());
        } catch (const Error &e) {
            _host.log(MO_LOG_DEBUG, "cgroup " + quote(path) + ": " + e.what());
        }
    }
    if (pids.empty())
        pids = specOf(f.record).namespaces.pid ? processesInPidNamespace(namespaceInode(pid, "pid"))
                                               : std::vector<pid_t>{pid};
    json out = json::array();
    for (pid_t p : pids) {
        auto info = processInfo(p);
        if (!info) continue;
        out.push_back({{"pid", info->pid},
                       {"ppid", info->ppid},
                       {"user", std::to_string(info->uid)},
                       {"state", std::string(1, info->state)},
                       {"command", info->command}});
    }
    return out;
}

int Runtime::wait(const std::string &ref) {
    Found f = find(ref);
    std::string st = f.record.value("status", "");
    if (st == status::created || st == status::creating)
        throw Error(MO_E_STATE, "container " + display(f.record) + " has not been started");
    if (st == status::running || st == status::paused) {
        PidFd init(f.record.value("pid", 0));
        init.waitExit(-1);
        f.record = awaitRecordedExit(f.id, 5000);
    } else if (!f.record.contains("exit_code") || exitPending(f.id)) {
        // The init already exited (a zombie its monitor has not reaped yet, or the monitor
        // is still draining output): find() shows "stopped" without the exit status. The
        // monitor may have recorded it since find(): read again.
        f.record = awaitRecordedExit(f.id, 5000);
    }
    return f.record.value("exit_code", -1);
}

json Runtime::gc() {
    json released = json::array();
    for (auto &r : _host.list(kContainerKind)) {
        std::string id = r.value("id", "");
        if (id.empty()) continue;
        if (abandonedCreate(r)) {
            auto lock = _host.lock("container/" + id, true);
            release(id);
            released.push_back({{"container", id},
                                {"name", r.value("name", "")},
                                {"what", "interrupted create: record and run directory"}});
            continue;
        }
        json rec = r;
        if (reconcile(rec) == Reconciled::changed) {
            reconciled(id, r);
            releaseCgroup(r); // its monitor is gone: nobody else will
            released.push_back({{"container", id},
                                {"name", r.value("name", "")},
                                {"what", "stale running state: marked stopped"}});
        }
    }
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator(_rootDir + "/containers", ec)) {
        std::string id = entry.path().filename();
        if (id.size() != 64 || !isHex(id)) continue;
        if (_host.get(kContainerKind, id)) continue;
        releaseCgroup({{"cgroup", cgroupPath(id)}});
        std::error_code rm;
        std::filesystem::remove_all(entry.path(), rm);
        released.push_back({{"container", id}, {"what", "orphaned run directory"}});
    }
    return {{"released", released}};
}

const mo_network_service *Runtime::networkService() const {
    return static_cast<const mo_network_service *>(_host.lookup(MO_SERVICE_NETWORK));
}

void Runtime::prepareNetwork(ContainerSpec &spec, const std::string &id, const json &record,
                             LaunchOptions &options) const {
    auto net = spec.raw.find("network");
    if (net == spec.raw.end() || !net->is_object() || !spec.namespaces.network ||
        spec.namespacePaths.count("network") || // a joined one is its owner's to attach
        spec.networkMode != "private")
        return;
    std::string attach = net->value("attach", "");
    if (attach.empty()) return;
    const mo_network_service *svc = networkService();
    if (!svc || !svc->attach)
        throw Error(MO_E_UNSUPPORTED,
                    "network " + quote(attach) + " needs the network service (plugin bridge)");
    // Names: the network service keeps these current as containers come and go; they are
    // bind-mounted, so it rewrites them in place.
    std::string dir = containerDir(id);
    mkdirs(dir);
    json config = {{"name", record.value("name", "")},
                   {"networks", json::array({{{"name", attach}}})},
                   {"ports", net->value("ports", json::array())},
                   {"hostsFile", dir + "/hosts"},
                   {"resolvFile", dir + "/resolv.conf"}};
    if (net->contains("aliases")) config["aliases"] = (*net)["aliases"];
    for (const char *file : {"/hosts", "/resolv.conf"}) {
        std::ofstream touch(dir + file, std::ios::app);
        if (!touch) throw sysError("create " + quote(dir + file), errno);
        addVolumeMount(spec.mounts, {{"source", dir + file},
                                     {"destination", std::string("/etc") + file},
                                     {"readOnly", false}});
    }
    std::string text = config.dump();
    options.beforeStart = [svc, id, text](pid_t pid) {
        mo_error err = MO_ERROR_INIT;
        if (int rc = svc->attach(svc->self, id.c_str(), pid, text.c_str(), nullptr, &err); rc < 0)
            throw Error(rc, err.message);
    };
    // The container's netns goes with its last process; the leases, rules and names go
    // when it exits.
    Host host = _host;
    auto previous = options.afterExit;
    options.afterExit = [previous, svc, id, host](int signal) {
        json out = previous ? previous(signal) : json::object();
        mo_error err = MO_ERROR_INIT;
        if (svc->detach && svc->detach(svc->self, id.c_str(), &err) < 0)
            host.log(MO_LOG_WARNING, "network detach of " + quote(id.substr(0, 12)) + ": " +
                                         err.message + " (system gc retries)");
        return out;
    };
}

void Runtime::detachNetwork(const std::string &id) const {
    const mo_network_service *svc = networkService();
    if (!svc || !svc->detach) return;
    mo_error err = MO_ERROR_INIT;
    if (svc->detach(svc->self, id.c_str(), &err) < 0)
        _host.log(MO_LOG_WARNING, "network detach of " + quote(id.substr(0, 12)) + ": " +
                                      err.message + " (system gc retries)");
}

const mo_log_service *Runtime::logService() const {
    return static_cast<const mo_log_service *>(_host.lookup(MO_SERVICE_LOG));
}

json Runtime::logOptions(const ContainerSpec &spec, const json &record) const {
    json o = {{"name", record.value("name", "")}};
    if (record.contains("cgroup")) o["cgroup"] = record["cgroup"];
    if (auto l = spec.raw.find("logging"); l != spec.raw.end() && l->is_object()) {
        if (auto v = l->find("maxSize"); v != l->end() && v->is_number_unsigned())
            o["maxSize"] = std::to_string(v->get<uint64_t>());
        if (auto v = l->find("maxAge"); v != l->end() && v->is_number_unsigned())
            o["maxAge"] = std::to_string(v->get<uint64_t>()) + "s";
    }
    return o;
}

const mo_storage_service *Runtime::storageService(std::string *why) const {
    return static_cast<const mo_storage_service *>(_host.lookup(MO_SERVICE_STORAGE, why));
}

void Runtime::prepareStorage(ContainerSpec &spec, const std::string &id, json &record) const {
    if (!usesStorage(spec)) return;
    std::string why;
    const mo_storage_service *svc = storageService(&why);
    if (!spec.imageId.empty()) {
        if (!svc || !svc->prepare_rootfs)
            throw Error(MO_E_UNSUPPORTED,
                        "image " + quote(spec.image.empty() ? spec.imageId : spec.image) +
                            ": an image root needs the storage service" +
                            (why.empty() ? std::string() : " (" + why + ")"));
        json options = {{"readonly", spec.readonly}};
        if (spec.diskLimit) options["diskLimit"] = *spec.diskLimit;
        // A micro-VM's 9p share walks one flattened lower layer instead of every layer.
        if (spec.vm) options["flatten"] = true;
        std::string text = options.dump();
        json out = serviceOutput(_host, "storage", [&](mo_buffer *b, mo_error *e) {
            return svc->prepare_rootfs(svc->self, id.c_str(), spec.imageId.c_str(), text.c_str(), b,
                                       e);
        });
        const json *path = out.is_object() && out.contains("path") ? &out["path"] : nullptr;
        if (!path || !path->is_string() || path->get<std::string>().rfind('/', 0) != 0)
            throw Error(MO_E_INTERNAL, "the storage service's prepare_rootfs returned no path");
        spec.rootfs = path->get<std::string>();
        record["rootfs"] = spec.rootfs;
        makeDirInRoot(spec.rootfs, spec.process.cwd);
    }
    if (spec.volumes.empty()) return;
    // Without the service the CLI listed the volumes as not applied.
    if (!svc || !svc->prepare_volumes) return;
    std::string text = spec.volumes.dump();
    json out = serviceOutput(_host, "storage", [&](mo_buffer *b, mo_error *e) {
        return svc->prepare_volumes(svc->self, id.c_str(), text.c_str(), b, e);
    });
    if (!out.is_array())
        throw Error(MO_E_INTERNAL, "the storage service's prepare_volumes returned no list");
    for (const auto &volume : out) addVolumeMount(spec.mounts, volume);
}

void Runtime::releaseStorage(const std::string &id, const json &record) const {
    auto spec = record.find("spec");
    if (spec == record.end() || !spec->is_object()) return;
    auto given = [&](const char *key) {
        auto it = spec->find(key);
        return it != spec->end() && !it->is_null() && !it->empty();
    };
    const bool image = given("imageId"), volumes = given("volumes");
    if (!image && !volumes) return;
    std::string why;
    const mo_storage_service *svc = storageService(&why);
    if (!svc) {
        _host.log(MO_LOG_WARNING,
                  "container " + display(record) + ": its storage is not released: " + why);
        return;
    }
    auto call = [&](int (*fn)(void *, const char *, mo_error *), const char *what) {
        if (!fn) return;
        mo_error err = MO_ERROR_INIT;
        if (int rc = fn(svc->self, id.c_str(), &err); rc < 0)
            throw Error(rc, "release the " + std::string(what) + " of " + display(record) + ": " +
                                err.message);
    };
    if (volumes) call(svc->release_volumes, "volumes");
    if (image) call(svc->release_rootfs, "root filesystem");
}

const mo_cgroup_service *Runtime::cgroupService() const {
    auto *svc = static_cast<const mo_cgroup_service *>(_host.lookup(MO_SERVICE_CGROUP));
    return svc && svc->create && svc->attach ? svc : nullptr;
}

// On a pure cgroup2 host the child can be born in its cgroup (clone3 CLONE_INTO_CGROUP):
// that skips the cgroup.procs write, whose first use after an idle gap waits out an RCU
// grace period (milliseconds) on every start.
void Runtime::placeAtClone(const mo_cgroup_service *svc, const std::string &path,
                           LaunchOptions &options) const {
    if (svc->size < offsetof(mo_cgroup_service, placement) + sizeof svc->placement ||
        !svc->placement)
        return;
    json where;
    try {
        where = cgroupOutput(_host, [&](mo_buffer *b, mo_error *e) {
            return svc->placement(svc->self, path.c_str(), b, e);
        });
    } catch (const std::exception &e) {
        _host.log(MO_LOG_DEBUG,
                  "cgroup " + quote(path) + ": no placement at clone time: " + e.what());
        return;
    }
    if (!where.value("complete", false) || !where["unified"].is_string()) return;
    std::string dir = where["unified"];
    int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return; // attach after the clone as on other hosts
    options.cgroupFd = fd;
    options.cgroupFdOwner = std::shared_ptr<void>(nullptr, [fd](void *) { ::close(fd); });
}

namespace {

// A VM container's launcher is its PID namespace's init and never dies of a signal itself:
// how the program in the guest ended is in vm-exit.json beside vm.json, and a death by
// signal N is recorded as such (its exit code is already 128+N).
LaunchOptions withVmExit(const ContainerSpec &spec, LaunchOptions options) {
    if (!spec.vm) return options;
    const std::string file =
        std::filesystem::path(spec.vm->configFile).parent_path() / "vm-exit.json";
    auto previous = std::move(options.afterExit);
    options.afterExit = [previous, file](int signal) {
        json exit = previous ? previous(signal) : json::object();
        std::ifstream in(file);
        json report = json::parse(in, nullptr, false);
        if (report.is_object() && report.value("signal", 0) > 0 && !exit.contains("signal"))
            exit["signal"] = report["signal"];
        return exit;
    };
    return options;
}

} // namespace

LaunchOptions Runtime::launchOptions(const ContainerSpec &spec, const std::string &id,
                                     json &record) const {
    LaunchOptions options;
    const mo_cgroup_service *svc = cgroupService();
    if (!svc) {
        if (!spec.cgroupsPath.empty())
            throw Error(MO_E_UNSUPPORTED, "cgroupsPath " + quote(spec.cgroupsPath) +
                                              " needs the cgroup service (plugin cgroup)");
        return withVmExit(spec, std::move(options)); // the core lists resources as unapplied
    }
    const std::string path = spec.cgroupsPath.empty() ? cgroupPath(id) : spec.cgroupsPath;
    if (!spec.cgroupsPath.empty() && svc->pids) {
        // Delete kills what is in the container's cgroup and removes it: never one that
        // already holds processes of someone else.
        json pids;
        try {
            pids = cgroupOutput(_host, [&](mo_buffer *b, mo_error *e) {
                return svc->pids(svc->self, path.c_str(), b, e);
            });
        } catch (const Error &e) {
            if (e.code() != MO_E_NOT_FOUND)
                throw Error(e.code(), "cgroupsPath " + quote(path) + ": " + e.what());
        }
        if (pids.is_array() && !pids.empty())
            throw Error(MO_E_EXISTS, "cgroupsPath " + quote(path) +
                                         ": the cgroup already holds processes; a container "
                                         "needs a cgroup of its own");
    }
    json resources = cgroupResources(spec);
    if (!spec.rootfsImage.empty() && svc->update) {
        // The container's init attaches its root image to a loop device and mounts it
        // inside the container's cgroup: until its root is built it may reach
        // /dev/loop-control and the loop devices, then it gets its own rules.
        const std::string final = json{{"devices", resources["devices"]}}.dump();
        resources["devices"].push_back(
            {{"allow", true}, {"type", "c"}, {"major", 10}, {"minor", 237}, {"access", "rw"}});
        resources["devices"].push_back(
            {{"allow", true}, {"type", "b"}, {"major", 7}, {"access", "rw"}});
        options.afterRoot = [svc, path, final](pid_t) {
            mo_error err = MO_ERROR_INIT;
            if (int rc = svc->update(svc->self, path.c_str(), final.c_str(), &err); rc < 0)
                throw Error(rc, "cgroup " + quote(path) + ": the device rules: " + err.message);
        };
    }
    const std::string text = resources.dump();
    // Recorded before it exists: a command killed while creating it leaves a record that
    // release and gc follow to the cgroup (destroy skips what was never made).
    record["cgroup"] = path;
    _host.put(kContainerKind, id, record.value("name", ""), record);
    mo_error err = MO_ERROR_INIT;
    if (int rc = svc->create(svc->self, path.c_str(), text.c_str(), &err); rc < 0)
        throw Error(rc, (spec.cgroupsPath.empty() ? "cgroup " : "cgroupsPath ") + quote(path) +
                            ": " + err.message);
    options.afterClone = attacher(svc, path);
    placeAtClone(svc, path, options);
    Host host = _host;
    options.afterExit = [host, svc, path](int signal) {
        return finishCgroup(host, svc, path, signal);
    };
    return withVmExit(spec, std::move(options));
}

bool Runtime::killCgroup(const json &record, int signal) const {
    std::string path = record.value("cgroup", "");
    if (path.empty()) return false;
    const mo_cgroup_service *svc = cgroupService();
    if (!svc || !svc->kill) return false;
    mo_error err = MO_ERROR_INIT;
    int rc = svc->kill(svc->self, path.c_str(), signal, &err);
    if (rc == MO_E_NOT_FOUND) return false;
    if (rc < 0) throw Error(rc, "kill " + display(record) + ": " + err.message);
    return true;
}

void Runtime::releaseCgroup(const json &record) const {
    std::string path = record.value("cgroup", "");
    if (path.empty()) return;
    auto *svc = static_cast<const mo_cgroup_service *>(_host.lookup(MO_SERVICE_CGROUP));
    if (!svc || !svc->destroy) return;
    mo_error err = MO_ERROR_INIT;
    if (svc->kill) svc->kill(svc->self, path.c_str(), SIGKILL, &err);
    err = MO_ERROR_INIT;
    if (svc->destroy(svc->self, path.c_str(), &err) < 0)
        _host.log(MO_LOG_WARNING, "cgroup " + quote(path) + ": " + err.message);
}

const mo_cgroup_service *Runtime::cgroup(const char *what) const {
    std::string why;
    auto *svc = static_cast<const mo_cgroup_service *>(_host.lookup(MO_SERVICE_CGROUP, &why));
    if (!svc) throw Error(MO_E_UNSUPPORTED, std::string(what) + " needs the cgroup service");
    return svc;
}

namespace {

void callCgroup(int (*fn)(void *, const char *, mo_error *), void *self, const std::string &path,
                const std::string &what) {
    if (!fn) throw Error(MO_E_UNSUPPORTED, what + " is not supported by the cgroup service");
    mo_error err = MO_ERROR_INIT;
    if (int rc = fn(self, path.c_str(), &err); rc < 0) throw Error(rc, what + ": " + err.message);
}

std::string cgroupOf(const json &record, const char *what) {
    std::string path = record.value("cgroup", "");
    if (path.empty())
        throw Error(MO_E_UNSUPPORTED,
                    std::string(what) + ": container " + display(record) + " has no cgroup");
    return path;
}

} // namespace

void Runtime::setStatus(const std::string &id, pid_t pid, const char *st) const {
    Host::Transaction tx(_host);
    auto rec = _host.get(kContainerKind, id);
    if (!rec || rec->value("pid", 0) != pid) return; // it exited meanwhile
    std::string now = rec->value("status", "");
    if (now != status::running && now != status::paused) return;
    (*rec)["status"] = st;
    _host.put(kContainerKind, id, rec->value("name", ""), *rec);
    tx.commit();
}

void Runtime::pause(const std::string &ref) {
    const mo_cgroup_service *svc = cgroup("pause");
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = findRunning(f.id);
    if (f.record.value("status", "") == status::paused)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is already paused");
    callCgroup(svc->freeze, svc->self, cgroupOf(f.record, "pause"), "pause");
    setStatus(f.id, f.record.value("pid", 0), status::paused);
    _host.event("container.pause", {{"id", f.id}, {"name", f.record.value("name", "")}});
}

void Runtime::resume(const std::string &ref) {
    const mo_cgroup_service *svc = cgroup("resume");
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = findRunning(f.id);
    if (f.record.value("status", "") != status::paused)
        throw Error(MO_E_STATE, "container " + display(f.record) + " is not paused");
    callCgroup(svc->thaw, svc->self, cgroupOf(f.record, "resume"), "resume");
    setStatus(f.id, f.record.value("pid", 0), status::running);
    _host.event("container.resume", {{"id", f.id}, {"name", f.record.value("name", "")}});
}

void Runtime::update(const std::string &ref, const json &resources) {
    const mo_cgroup_service *svc = cgroup("update");
    if (!resources.is_object())
        throw Error(MO_E_INVALID, "invalid resources: expected a JSON object");
    Found f = find(ref);
    auto lock = _host.lock("container/" + f.id);
    f = findRunning(f.id);
    std::string path = cgroupOf(f.record, "update");
    if (!svc->update)
        throw Error(MO_E_UNSUPPORTED, "update is not supported by the cgroup service");
    mo_error err = MO_ERROR_INIT;
    json applied = resources;
    // New device rules replace the list as create made it: the defaults stay.
    if (resources.contains("devices"))
        applied["devices"] = deviceRules(parseSpec(f.record.at("spec")), resources["devices"]);
    std::string text = applied.dump();
    if (int rc = svc->update(svc->self, path.c_str(), text.c_str(), &err); rc < 0)
        throw Error(rc, "update " + display(f.record) + ": " + err.message);
    // The next start applies the same limits.
    Host::Transaction tx(_host);
    auto rec = _host.get(kContainerKind, f.id);
    if (!rec) return;
    json &spec = (*rec)["spec"];
    if (!spec.contains("resources") || !spec["resources"].is_object())
        spec["resources"] = json::object();
    spec["resources"].merge_patch(resources);
    _host.put(kContainerKind, f.id, rec->value("name", ""), *rec);
    tx.commit();
    _host.event("container.update", {{"id", f.id}, {"name", f.record.value("name", "")}});
}

json Runtime::stats(const std::string &ref) {
    const mo_cgroup_service *svc = cgroup("stats");
    Found f = findRunning(ref);
    std::string path = cgroupOf(f.record, "stats");
    if (!svc->stats) throw Error(MO_E_UNSUPPORTED, "stats is not supported by the cgroup service");
    json out;
    try {
        out = cgroupOutput(_host, [&](mo_buffer *b, mo_error *e) {
            return svc->stats(svc->self, path.c_str(), b, e);
        });
    } catch (const Error &e) {
        throw Error(e.code(), "stats " + display(f.record) + ": " + e.what());
    }
    if (!out.is_object()) out = json::object();
    out["id"] = f.id;
    out["name"] = f.record.value("name", "");
    return out;
}

} // namespace mobileops::nsruntime
