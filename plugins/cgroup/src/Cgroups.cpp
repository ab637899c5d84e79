#include "Cgroups.h"

#include "Errors.h"

#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

std::vector<std::string> components(const std::string &path) {
    std::vector<std::string> out;
    std::istringstream in(path);
    for (std::string part; std::getline(in, part, '/');)
        if (!part.empty()) out.push_back(part);
    return out;
}

std::string pidList(const std::vector<pid_t> &pids) {
    std::string out;
    size_t shown = 0;
    for (pid_t p : pids) {
        if (shown++ == 8) {
            out += ", ...";
            break;
        }
        out += (out.empty() ? "" : ", ") + quote(std::to_string(p));
    }
    return out;
}

} // namespace

Cgroups::Cgroups(Layout layout, CgroupFs &fs, Options options)
    : _layout(std::move(layout)), _fs(fs), _options(std::move(options)) {
    for (const Hierarchy *h : _layout.used())
        _backends.emplace_back(h,
                               h->version == 2 ? makeV2Backend(_fs, *h) : makeV1Backend(_fs, *h));
}

void Cgroups::checkPath(const std::string &path) {
    auto bad = [&](const std::string &why) {
        throw Error(MO_E_INVALID, "invalid cgroup path " + quote(path) + ": " + why);
    };
    if (path.empty()) bad("empty");
    if (path.front() == '/') bad("expected a path relative to the cgroup parent");
    if (path.size() > 1024) bad("longer than 1024 bytes");
    for (const std::string &part : components(path)) {
        if (part == "." || part == "..") bad("`.` and `..` are not allowed");
        if (part.size() > 255) bad("a component is longer than 255 bytes");
        for (char c : part)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ||
                  c == ':' || c == '@'))
                bad("expected letters, digits and `_.-:@`");
    }
}

std::string Cgroups::parentPath(const Hierarchy &h) const {
    const std::string &p = _options.parent;
    if (!p.empty() && p.front() == '/') return normalizePath(p);
    return joinPath(h.ownPath, p);
}

Backend *Cgroups::backendOf(const Hierarchy *h) const {
    for (const auto &[hier, backend] : _backends)
        if (hier == h) return backend.get();
    return nullptr;
}

Cgroups::Place Cgroups::placeOf(const std::string &path, const Hierarchy *h) {
    std::string base = parentPath(*h);
    return {h, backendOf(h), h->dirOf(base), h->dirOf(joinPath(base, path))};
}

std::vector<Cgroups::Place> Cgroups::places(const std::string &path) {
    checkPath(path);
    std::vector<Place> out;
    for (const auto &[h, backend] : _backends) out.push_back(placeOf(path, h));
    if (out.empty())
        throw Error(MO_E_UNSUPPORTED, "no cgroup hierarchy with a usable controller is mounted");
    return out;
}

Cgroups::Place Cgroups::owner(const std::string &path, const char *controller,
                              const std::string &what) {
    const Hierarchy *h = _layout.owner(controller);
    if (!h || !backendOf(h))
        throw Error(MO_E_UNSUPPORTED, what + ": the " + quote(controller) +
                                          " controller is not available on this host (" +
                                          _layout.summary() + ")");
    return placeOf(path, h);
}

std::vector<std::string> Cgroups::dirs(const std::string &path) {
    std::vector<std::string> out;
    for (const Place &p : places(path)) out.push_back(p.dir);
    return out;
}

std::string Cgroups::dirFor(const std::string &path, const std::string &controller) {
    checkPath(path);
    const Hierarchy *h = _layout.owner(controller);
    return h ? placeOf(path, h).dir : std::string();
}

bool Cgroups::exists(const std::string &path) {
    for (const Place &p : places(path))
        if (_fs.exists(p.dir)) return true;
    return false;
}

void Cgroups::requireExists(const std::string &path) {
    if (!exists(path)) throw Error(MO_E_NOT_FOUND, "cgroup " + quote(path) + " does not exist");
}

namespace {

// How messages name a field.
const char *labelOf(const std::string &field) {
    static const std::pair<const char *, const char *> labels[] = {
        {"limits.cpu", "cpu limit"},         {"requests.cpu", "cpu request"},
        {"limits.memory", "memory limit"},   {"requests.memory", "memory request"},
        {"limits.pids", "pids limit"},       {"cpuset", "cpuset"},
        {"memorySwap", "memory swap limit"}, {"memorySwappiness", "memory swappiness"},
        {"blkioWeight", "blkio weight"},     {"deviceThrottle", "device throttle"},
        {"devices", "device rules"}};
    for (const auto &[name, label] : labels)
        if (field == name) return label;
    return "resource";
}

} // namespace

std::vector<Unsupported> Cgroups::unsupported(const std::string &path, const Settings &s) {
    std::vector<Unsupported> out;
    std::vector<const Hierarchy *> owners;
    for (const std::string &field : fieldsOf(s)) {
        const char *controller = controllerOf(field);
        const Hierarchy *h = _layout.owner(controller);
        // cgroup2 has no devices controller: a BPF program on the cgroup holds the rules.
        if (field == "devices" && (!h || !backendOf(h))) h = _layout.unified();
        if (!h || !backendOf(h)) {
            out.push_back({field, "the " + quote(controller) +
                                      " controller is not available on this host (" +
                                      _layout.summary() + ")"});
        } else if (std::find(owners.begin(), owners.end(), h) == owners.end()) {
            owners.push_back(h);
        }
    }
    for (const Hierarchy *h : owners) {
        Place p = placeOf(path, h);
        try {
            p.backend->check(s);
        } catch (const Error &e) {
            if (e.code() != MO_E_UNSUPPORTED) throw;
            // Only v2 swappiness today; named by the backend's own message.
            if (s.memorySwappiness && h == _layout.owner("memory"))
                out.push_back({"memorySwappiness", e.what()});
        }
        // File-level checks need the cgroup to exist.
        if (!_fs.exists(p.dir)) continue;
        for (Unsupported &u : p.backend->unsupported(p.dir, s))
            if (std::none_of(out.begin(), out.end(),
                             [&](const Unsupported &o) { return o.field == u.field; }))
                out.push_back(std::move(u));
    }
    return out;
}

Settings Cgroups::settle(const std::string &path, const Settings &s,
                         std::vector<Unsupported> *skipped) {
    std::vector<Unsupported> missing = unsupported(path, s);
    if (missing.empty()) return s;
    if (!s.ignoreUnsupported) {
        const Unsupported &u = missing.front();
        std::string reason = u.reason;
        // The backend's message may already name the setting.
        if (reason.rfind("--", 0) != 0) reason = std::string(labelOf(u.field)) + ": " + reason;
        throw Error(MO_E_UNSUPPORTED, reason);
    }
    Settings kept = s;
    for (Unsupported &u : missing) {
        clearField(kept, u.field);
        if (skipped && std::none_of(skipped->begin(), skipped->end(),
                                    [&](const Unsupported &o) { return o.field == u.field; }))
            skipped->push_back(std::move(u));
    }
    return kept;
}

void Cgroups::create(const std::string &path, const Settings &requested,
                     std::vector<Unsupported> *skipped) {
    std::vector<Place> where = places(path);
    // Refuse (or drop, when asked) what this host cannot apply before touching anything.
    Settings s = settle(path, requested, skipped);

    std::vector<std::string> made;
    try {
        for (const Place &p : where) {
            // Walk down from the mount, making what is missing. A shared parent such as
            // `mobileops` is removed by destroy once empty, so another command may remove
            // it between our steps: start the walk again on ENOENT.
            for (int attempt = 0;; ++attempt) {
                std::string dir = p.hierarchy->mountpoint;
                std::string rel = p.dir.substr(p.hierarchy->mountpoint.size());
                int rc = 0;
                for (const std::string &part : components(rel)) {
                    std::string child = dir + "/" + part;
                    // v2: every ancestor must hand our controllers down, also existing
                    // ones made before a controller was enabled.
                    p.backend->beforeChild(dir);
                    if (!_fs.exists(child)) {
                        rc = _fs.mkdir(child);
                        if (rc == 0) {
                            made.push_back(child);
                            p.backend->afterCreate(dir, child);
                        } else if (rc == -ENOENT && attempt < 5) {
                            break;
                        } else if (rc != -EEXIST) {
                            throw sysError("mkdir " + quote(child), -rc);
                        }
                    }
                    dir = child;
                }
                if (rc != -ENOENT) break;
            }
        }
        // Files only a made cgroup shows (v1 memsw, a scheduler's weight).
        s = settle(path, s, skipped);
        // As docker and podman: a memory limit without a swap limit allows as much swap
        // again (memory plus swap = twice the limit), where the kernel accounts swap.
        if (s.memoryLimit && *s.memoryLimit && !s.memorySwap) {
            Settings swap;
            swap.memorySwap = std::optional<std::int64_t>(2 * **s.memoryLimit);
            if (unsupported(path, swap).empty()) s.memorySwap = swap.memorySwap;
        }
        apply(path, s);
    } catch (const Error &e) {
        for (auto it = made.rbegin(); it != made.rend(); ++it) _fs.rmdir(*it);
        throw wrap(e, "create cgroup " + quote(path));
    }
}

void Cgroups::apply(const std::string &path, const Settings &s) {
    if (s.cpuset) {
        Place p = owner(path, "cpuset", "cpuset");
        p.backend->setCpuset(p.dir.substr(0, p.dir.rfind('/')), p.dir, s);
    }
    if (s.cpuLimit || s.cpuRequest) {
        Place p = owner(path, "cpu", s.cpuLimit ? "cpu limit" : "cpu request");
        p.backend->setCpu(p.dir, s);
    }
    if (s.memoryLimit || s.memoryRequest || s.memorySwap || s.memorySwappiness) {
        Place p = owner(path, "memory",
                        s.memoryLimit     ? "memory limit"
                        : s.memorySwap    ? "memory swap limit"
                        : s.memoryRequest ? "memory request"
                                          : "memory swappiness");
        p.backend->setMemory(p.dir, s);
    }
    if (s.io()) {
        Place p = owner(path, "blkio", s.blkioWeight ? "blkio weight" : "device throttle");
        p.backend->setIo(p.dir, s);
    }
    if (s.pidsLimit) {
        Place p = owner(path, "pids", "pids limit");
        p.backend->setPids(p.dir, s);
    }
    if (s.devices) {
        // On every hierarchy that can hold them: the v1 devices controller and cgroup2's
        // BPF program are each checked by the kernel, and a hybrid host has both.
        bool applied = false;
        for (const Hierarchy *h : {_layout.owner("devices"), _layout.unified()}) {
            if (!h || !backendOf(h) || (h->version == 1 && !h->has("devices"))) continue;
            Place p = placeOf(path, h);
            p.backend->setDevices(p.dir, *s.devices);
            applied = true;
        }
        if (!applied)
            throw Error(MO_E_UNSUPPORTED, "device rules: neither the v1 `devices` controller nor "
                                          "a cgroup2 hierarchy is available (" +
                                              _layout.summary() + ")");
    }
}

void Cgroups::attach(const std::string &path, pid_t pid) {
    if (pid <= 0)
        throw Error(MO_E_INVALID, "invalid pid " + quote(std::to_string(pid)) +
                                      ": expected a positive process id");
    std::vector<Place> where = places(path);
    requireExists(path);
    for (const Place &p : where) {
        try {
            p.backend->write(p.dir, "cgroup.procs", std::to_string(pid));
        } catch (const Error &e) {
            throw wrap(e, "attach " + quote(std::to_string(pid)) + " to cgroup " + quote(path) +
                              " (" + p.hierarchy->mountpoint + ")");
        }
    }
}

void Cgroups::update(const std::string &path, const Settings &requested,
                     std::vector<Unsupported> *skipped) {
    requireExists(path);
    try {
        Settings s = settle(path, requested, skipped);
        // A new memory limit takes the default swap (as much again) along, unless the
        // swap limit was set to something else.
        if (s.memoryLimit && *s.memoryLimit && !s.memorySwap) {
            Settings probe;
            probe.memoryLimit = s.memoryLimit;
            probe.memorySwap = std::optional<std::int64_t>(0);
            const Hierarchy *h = _layout.owner("memory");
            if (h && backendOf(h) && unsupported(path, probe).empty()) {
                json now = json::array();
                backendOf(h)->applied(placeOf(path, h).dir, probe, now);
                json memory, swap;
                for (const json &e : now)
                    (e["field"] == "memorySwap" ? swap : memory) = e.value("applied", json());
                if (memory.is_number() && swap.is_number() &&
                    swap.get<std::int64_t>() == 2 * memory.get<std::int64_t>())
                    s.memorySwap = std::optional<std::int64_t>(2 * **s.memoryLimit);
            }
        }
        apply(path, s);
    } catch (const Error &e) {
        throw wrap(e, "update cgroup " + quote(path));
    }
}

namespace {

json requestedValue(const Settings &s, const std::string &field) {
    auto setting = [](const Setting &v) { return v && *v ? json(**v) : json(); };
    if (field == "limits.cpu") return setting(s.cpuLimit);
    if (field == "requests.cpu") return setting(s.cpuRequest);
    if (field == "limits.memory") return setting(s.memoryLimit);
    if (field == "requests.memory") return setting(s.memoryRequest);
    if (field == "limits.pids") return setting(s.pidsLimit);
    if (field == "cpuset") return s.cpuset ? json(*s.cpuset) : json();
    if (field == "memorySwap") return setting(s.memorySwap);
    if (field == "memorySwappiness") return setting(s.memorySwappiness);
    if (field == "blkioWeight") return setting(s.blkioWeight);
    if (field == "devices") return s.devices ? deviceRulesJson(*s.devices) : json();
    json out = json::array();
    for (const DeviceThrottle &t : s.deviceThrottle.value_or(std::vector<DeviceThrottle>{})) {
        json d = {{"device", t.device}};
        if (t.readBps) d["readBps"] = *t.readBps;
        if (t.writeBps) d["writeBps"] = *t.writeBps;
        if (t.readIops) d["readIops"] = *t.readIops;
        if (t.writeIops) d["writeIops"] = *t.writeIops;
        out.push_back(d);
    }
    return out;
}

// Why the kernel's value differs from the request, or "" when it does not.
std::string difference(const std::string &field, const json &requested, const json &applied,
                       const json &entry) {
    if (field == "deviceThrottle" || field == "devices") return ""; // as the kernel holds them
    if (requested == applied) return "";
    // A request for "no limit" reads back as the kernel's default.
    if (requested.is_null() && field != "limits.cpu" && field != "limits.memory" &&
        field != "limits.pids" && field != "memorySwap")
        return "reset to the kernel's default";
    std::string file = entry.value("file", "");
    file = file.substr(file.rfind('/') + 1);
    if (requested.is_number() && applied.is_number()) {
        auto r = requested.get<std::int64_t>(), a = applied.get<std::int64_t>();
        bool bytes =
            field == "limits.memory" || field == "requests.memory" || field == "memorySwap";
        long page = ::sysconf(_SC_PAGESIZE);
        if (bytes && a <= r && r - a < page)
            return "the kernel rounds down to whole pages (" + std::to_string(page) + " bytes)";
        if (field == "requests.cpu")
            return file == "cpu.weight"
                       ? "`cpu.weight` is coarser (1..10000, 100 by default); it maps back to "
                         "about " +
                             std::to_string(a) + "m"
                       : "cpu.shares keeps 1024 for a whole CPU";
        if (field == "limits.cpu" && a < r + 1 && a > r - 2)
            return "the quota is kept in whole microseconds";
    }
    if (field == "cpuset" && applied.is_string())
        return "the kernel writes the CPU list in its own form";
    return "the kernel holds " + entry.value("value", json("nothing")).dump() + " in `" + file +
           "` (changed outside mobileops?)";
}

} // namespace

json Cgroups::report(const std::string &path, const Settings &requested) {
    requireExists(path);
    std::vector<Unsupported> missing = unsupported(path, requested);
    json applied = json::array();
    for (const auto &[h, backend] : _backends) {
        // Each field is read on the hierarchy owning it only.
        Settings mine = requested;
        for (const std::string &field : fieldsOf(requested))
            if (_layout.owner(controllerOf(field)) != h) clearField(mine, field);
        for (const Unsupported &u : missing) clearField(mine, u.field);
        if (!mine.empty()) backend->applied(placeOf(path, h).dir, mine, applied);
    }
    json fields = json::array();
    for (const std::string &field : fieldsOf(requested)) {
        json entry = {{"field", field}, {"requested", requestedValue(requested, field)}};
        auto gone = std::find_if(missing.begin(), missing.end(),
                                 [&](const Unsupported &u) { return u.field == field; });
        auto have = std::find_if(applied.begin(), applied.end(),
                                 [&](const json &a) { return a.value("field", "") == field; });
        if (gone != missing.end()) {
            entry["applied"] = json();
            entry["note"] = "not applied: " + gone->reason;
        } else if (have != applied.end()) {
            for (const char *key : {"applied", "file", "value"})
                if (have->contains(key)) entry[key] = (*have)[key];
            std::string why = difference(field, entry["requested"], entry["applied"], *have);
            if (field == "memorySwappiness" && !have->contains("file"))
                why = "not applied: cgroup v2 has no swappiness";
            if (!why.empty()) entry["note"] = why;
        } else if (field == "devices" && _layout.unified()) {
            // A BPF program cannot be read back as rules.
            entry["applied"] = json();
            entry["file"] = placeOf(path, _layout.unified()).dir;
            entry["note"] = "a BPF device program on cgroup2 (not read back)";
        } else {
            entry["applied"] = json();
            entry["note"] = "not applied";
        }
        fields.push_back(entry);
    }
    return {{"layout", _layout.summary()}, {"fields", fields}};
}

Cgroups::Placement Cgroups::placement(const std::string &path) {
    checkPath(path);
    Placement out;
    const Hierarchy *u = _layout.unified();
    if (!u || !backendOf(u)) return out;
    out.unifiedDir = placeOf(path, u).dir;
    out.complete = std::all_of(_backends.begin(), _backends.end(),
                               [&](const auto &b) { return b.first == u; });
    return out;
}

json Cgroups::stats(const std::string &path) {
    requireExists(path);
    json out = json::object();
    // cpu and cpuacct may share a hierarchy (v1 co-mounted, or v2): read it once.
    const Hierarchy *acct = _layout.owner("cpuacct"), *cpu = _layout.owner("cpu");
    for (const Hierarchy *h : {acct, cpu == acct ? nullptr : cpu}) {
        if (!h || !backendOf(h)) continue;
        Place p = placeOf(path, h);
        p.backend->cpuStats(p.dir, out);
    }
    if (!out.contains("cpu") || !out["cpu"].contains("usage_ns")) {
        // Hybrid without cpuacct on v1: cgroup2's cpu.stat always counts usage.
        if (const Hierarchy *u = _layout.unified(); u && backendOf(u)) {
            Place p = placeOf(path, u);
            p.backend->cpuStats(p.dir, out);
        }
    }
    if (const Hierarchy *h = _layout.owner("memory")) {
        Place p = placeOf(path, h);
        p.backend->memoryStats(p.dir, out);
    }
    if (const Hierarchy *h = _layout.owner("pids")) {
        Place p = placeOf(path, h);
        p.backend->pidsStats(p.dir, out);
    }
    if (const Hierarchy *h = _layout.owner("io")) {
        Place p = placeOf(path, h);
        p.backend->ioStats(p.dir, out);
    }
    if (!out.contains("cpu")) out["cpu"] = json::object();
    if (!out.contains("pids")) out["pids"] = {{"current", pids(path).size()}, {"limit", json()}};
    out["frozen"] = frozen(path);
    return out;
}

Cgroups::Place Cgroups::freezer(const std::string &path) {
    // The v1 freezer controller when mounted, else cgroup2's core cgroup.freeze.
    if (const Hierarchy *h = _layout.owner("freezer"); h && backendOf(h)) {
        Place p = placeOf(path, h);
        if (p.backend->canFreeze(p.dir)) return p;
    }
    if (const Hierarchy *u = _layout.unified(); u && backendOf(u)) {
        Place p = placeOf(path, u);
        if (p.backend->canFreeze(p.dir)) return p;
    }
    throw Error(MO_E_UNSUPPORTED, "cgroup " + quote(path) +
                                      ": no freezer (neither the v1 `freezer` controller nor "
                                      "cgroup2's `cgroup.freeze`)");
}

bool Cgroups::frozen(const std::string &path) {
    try {
        Place p = freezer(path);
        return p.backend->frozen(p.dir);
    } catch (const Error &) {
        return false;
    }
}

void Cgroups::freeze(const std::string &path) {
    requireExists(path);
    Place p = freezer(path);
    try {
        p.backend->freeze(p.dir);
    } catch (const Error &e) {
        throw wrap(e, "freeze cgroup " + quote(path));
    }
}

void Cgroups::thaw(const std::string &path) {
    requireExists(path);
    Place p = freezer(path);
    try {
        p.backend->thaw(p.dir);
    } catch (const Error &e) {
        throw wrap(e, "thaw cgroup " + quote(path));
    }
}

void Cgroups::collect(const std::string &dir, std::vector<pid_t> &out) {
    std::string text;
    if (_fs.read(dir + "/cgroup.procs", text) == 0) {
        std::istringstream in(text);
        for (long pid; in >> pid;) out.push_back(static_cast<pid_t>(pid));
    }
    std::vector<std::string> children;
    if (_fs.subdirs(dir, children) == 0)
        for (const std::string &c : children) collect(dir + "/" + c, out);
}

std::vector<pid_t> Cgroups::pids(const std::string &path) {
    std::vector<pid_t> out;
    for (const Place &p : places(path)) collect(p.dir, out);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

void Cgroups::signalAll(const std::string &path, int signal) {
    for (pid_t pid : pids(path)) {
        int rc = _fs.kill(pid, signal);
        if (rc < 0 && rc != -ESRCH)
            throw sysError("signal " + quote(std::to_string(signal)) + " to " +
                               quote(std::to_string(pid)),
                           -rc);
    }
}

void Cgroups::kill(const std::string &path, int signal) {
    if (signal < 0 || signal > 64)
        throw Error(MO_E_INVALID, "invalid signal " + quote(std::to_string(signal)));
    requireExists(path);
    auto context = [&](const Error &e) {
        return wrap(e,
                    "kill cgroup " + quote(path) + " with signal " + quote(std::to_string(signal)));
    };
    try {
        bool killedAll = false;
        if (signal == SIGKILL) {
            // cgroup.kill: the kernel kills the whole subtree, forks in flight included.
            if (const Hierarchy *u = _layout.unified(); u && backendOf(u)) {
                Place p = placeOf(path, u);
                if (_fs.exists(p.dir) && p.backend->canKillAll(p.dir)) {
                    p.backend->killAll(p.dir);
                    killedAll = true;
                }
            }
        }
        std::optional<Place> fz;
        try {
            fz = freezer(path);
        } catch (const Error &) {
        }
        bool wasFrozen = fz && fz->backend->frozen(fz->dir);
        if (!killedAll) {
            // Freeze first so no process forks or exits between reading the list and
            // signalling it; SIGKILL is then acted on at thaw.
            bool froze = false;
            if (fz && !wasFrozen && !pids(path).empty()) {
                try {
                    fz->backend->freeze(fz->dir);
                    froze = true;
                } catch (const Error &) {
                    // a process that does not freeze: signal in rounds below instead
                }
            }
            signalAll(path, signal);
            if (froze) fz->backend->thaw(fz->dir);
        }
        if (signal != SIGKILL) return;
        // A v1-frozen process dies only once thawed (cgroup2's freezer lets SIGKILL in).
        if (wasFrozen && fz->hierarchy->version == 1) fz->backend->thaw(fz->dir);

        using Clock = std::chrono::steady_clock;
        auto deadline = Clock::now() + std::chrono::milliseconds(_options.killTimeoutMs);
        for (unsigned round = 0;; ++round) {
            std::vector<pid_t> left = pids(path);
            if (left.empty()) return;
            if (Clock::now() >= deadline)
                throw Error(MO_E_STATE, "processes remain after " +
                                            std::to_string(_options.killTimeoutMs) +
                                            "ms: " + pidList(left));
            if (round % 5 == 4) signalAll(path, SIGKILL);
            _fs.sleepMs(round < 20 ? 1 : 10);
        }
    } catch (const Error &e) {
        throw context(e);
    }
}

int Cgroups::removeTree(const std::string &dir) {
    std::vector<std::string> children;
    if (_fs.subdirs(dir, children) == 0)
        for (const std::string &c : children) {
            int rc = removeTree(dir + "/" + c);
            if (rc < 0) return rc;
        }
    int rc = _fs.rmdir(dir);
    return rc == -ENOENT ? 0 : rc;
}

void Cgroups::destroy(const std::string &path) {
    std::vector<Place> where = places(path);
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::milliseconds(_options.destroyRetryMs);
    for (const Place &p : where) {
        if (!_fs.exists(p.dir)) continue;
        for (unsigned round = 0;; ++round) {
            int rc = removeTree(p.dir);
            if (rc == 0) break;
            // EBUSY right after the last process died is the kernel still tearing it down.
            if (rc == -EBUSY && Clock::now() < deadline) {
                _fs.sleepMs(round < 20 ? 1 : 10);
                continue;
            }
            std::vector<pid_t> left = pids(path);
            if (!left.empty())
                throw Error(MO_E_STATE, "destroy cgroup " + quote(path) + ": " +
                                            (left.size() == 1 ? std::string("1 process remains")
                                                              : std::to_string(left.size()) +
                                                                    " processes remain") +
                                            ": " + pidList(left));
            throw sysError("destroy cgroup " + quote(path) + ": rmdir " + quote(p.dir), -rc);
        }
        // Shared parents of `path` (`mobileops` of `mobileops/<id>`) go once empty; one
        // still in use refuses with EBUSY or ENOTEMPTY, which is fine.
        std::string dir = p.dir;
        for (size_t levels = components(path).size(); levels > 1; --levels) {
            dir = dir.substr(0, dir.rfind('/'));
            if (_fs.rmdir(dir) < 0) break;
        }
    }
}

std::vector<std::string> Cgroups::features() const {
    std::vector<std::string> out;
    switch (_layout.mode()) {
    case Mode::Legacy:
        out = {"cgroup.v1"};
        break;
    case Mode::Unified:
        out = {"cgroup.v2"};
        break;
    case Mode::Hybrid:
        out = {"cgroup.v1", "cgroup.v2", "cgroup.hybrid"};
        break;
    case Mode::None:
        return out;
    }
    const Hierarchy *u = _layout.unified();
    if (_layout.owner("freezer") || u) out.push_back("cgroup.freeze");
    if (_layout.owner("devices") || u) out.push_back("cgroup.devices");
    if (u) {
        // cgroup.kill exists only in non-root cgroups: look at ours, else at any child of
        // the mount, else go by the kernel version that added it (5.14).
        std::string own = u->dirOf(u->ownPath);
        bool kill = own != u->mountpoint && _fs.exists(own + "/cgroup.kill");
        std::vector<std::string> children;
        if (!kill && _fs.subdirs(u->mountpoint, children) == 0 && !children.empty())
            kill = _fs.exists(u->mountpoint + "/" + children.front() + "/cgroup.kill");
        if (!kill) {
            struct utsname u;
            int major = 0, minor = 0;
            kill = ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
                   (major > 5 || (major == 5 && minor >= 14));
        }
        if (kill) out.push_back("cgroup.kill");
    }
    return out;
}

bool Cgroups::canCreate(std::string &why) const {
    if (_backends.empty()) {
        why = _layout.summary();
        return false;
    }
    for (const auto &[h, backend] : _backends) {
        // The nearest existing directory on the way to the parent must be writable.
        std::string dir = h->dirOf(parentPath(*h));
        while (dir.size() > h->mountpoint.size() && ::access(dir.c_str(), F_OK) != 0)
            dir = dir.substr(0, dir.rfind('/'));
        if (::access(dir.c_str(), W_OK) != 0) {
            why = "cannot create cgroups in " + quote(dir) + ": " + std::strerror(errno);
            return false;
        }
    }
    return true;
}

} // namespace mobileops::cgroup
