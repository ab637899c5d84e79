// cgroup v2: one hierarchy; a controller's files appear in a cgroup once its parent lists
// the controller in cgroup.subtree_control. Limits: cpu.max, cpu.weight, memory.max,
// memory.low, memory.swap.max, pids.max, cpuset.cpus, io.weight / io.bfq.weight, io.max;
// cgroup.freeze and cgroup.kill are core files, present in every non-root cgroup (also on a hybrid
// host's cgroup2 mount without controllers). Device access is a BPF program attached to the
// cgroup (DeviceBpf.h), also on a hybrid host's cgroup2 mount.
#include "Backend.h"
#include "Errors.h"

#include <sstream>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

// The v2 controllers we enable for our cgroups when the hierarchy offers them.
constexpr const char *kV2Controllers[] = {"cpu", "cpuset", "memory", "pids", "io"};

class V2Backend : public Backend {
public:
    using Backend::Backend;

    void beforeChild(const std::string &dir) override {
        auto available = read(dir, "cgroup.controllers");
        auto enabled = read(dir, "cgroup.subtree_control");
        if (!available) return;
        std::set<std::string> have, on;
        std::istringstream a(*available), e(enabled.value_or(""));
        for (std::string c; a >> c;) have.insert(c);
        for (std::string c; e >> c;) on.insert(c);
        std::string add;
        for (const char *c : kV2Controllers)
            if (_h.has(c) && have.count(c) && !on.count(c))
                add += std::string(add.empty() ? "" : " ") + "+" + c;
        if (add.empty()) return;
        try {
            write(dir, "cgroup.subtree_control", add);
        } catch (const Error &e) {
            // EBUSY: processes in `dir` itself ("no internal processes" rule).
            throw wrap(e, "enable controllers in " + quote(dir));
        }
    }

    void afterCreate(const std::string &, const std::string &) override {}

    void setCpu(const std::string &dir, const Settings &s) override {
        if (s.cpuLimit) {
            std::string value = "max 100000";
            if (*s.cpuLimit) {
                CpuQuota q = quotaFromMillis(**s.cpuLimit);
                value = std::to_string(q.quotaUs) + " " + std::to_string(q.periodUs);
            }
            write(dir, "cpu.max", value);
        }
        if (s.cpuRequest)
            write(dir, "cpu.weight",
                  std::to_string(*s.cpuRequest ? weightFromShares(sharesFromMillis(**s.cpuRequest))
                                               : 100));
    }

    void setDevices(const std::string &dir, const std::vector<DeviceRule> &rules) override {
        std::string detail;
        if (int rc = _fs.setDeviceProgram(dir, rules, detail); rc < 0)
            throw sysError("devices: " + detail, -rc);
    }

    void check(const Settings &s) override {
        if (s.memorySwappiness)
            throw Error(MO_E_UNSUPPORTED,
                        "--memory-swappiness: cgroup v2 has no swappiness (memory is on the v2 "
                        "hierarchy " +
                            quote(_h.mountpoint) + ")");
    }

    void setMemory(const std::string &dir, const Settings &s) override {
        check(s);
        if (s.memorySwap) {
            if (!_fs.exists(dir + "/memory.swap.max"))
                throw Error(MO_E_UNSUPPORTED,
                            "memory swap limit: `memory.swap.max` is missing (kernel without "
                            "swap accounting)");
            std::string swap = "max";
            if (*s.memorySwap) {
                // memory.swap.max holds the swap part alone.
                std::optional<std::int64_t> memory;
                if (s.memoryLimit && *s.memoryLimit)
                    memory = **s.memoryLimit;
                else if (!s.memoryLimit)
                    if (auto v = readNumber(dir, "memory.max"))
                        memory = static_cast<std::int64_t>(*v);
                if (!memory)
                    throw Error(MO_E_INVALID, "memory swap limit " +
                                                  quote(std::to_string(**s.memorySwap)) +
                                                  ": needs a memory limit as well");
                swap = std::to_string(std::max<std::int64_t>(0, **s.memorySwap - *memory));
            }
            write(dir, "memory.swap.max", swap);
        }
        if (s.memoryLimit)
            write(dir, "memory.max",
                  *s.memoryLimit ? std::to_string(**s.memoryLimit) : std::string("max"));
        if (s.memoryRequest)
            write(dir, "memory.low",
                  *s.memoryRequest ? std::to_string(**s.memoryRequest) : std::string("0"));
    }

    WeightFiles weightFiles() const override {
        // io.weight is blk-iocost's (needs io.cost enabled to act), io.bfq.weight bfq's.
        return {"io.weight", "io.bfq.weight",
                "the io controller needs the bfq scheduler or blk-iocost"};
    }

    void setIo(const std::string &dir, const Settings &s) override {
        if (s.blkioWeight) {
            const char *file = weightFile(dir);
            if (!file) throw Error(MO_E_UNSUPPORTED, "blkio weight: " + noWeightFile());
            write(dir, file, std::to_string(*s.blkioWeight ? **s.blkioWeight : 100));
        }
        if (!s.deviceThrottle) return;
        for (const DeviceThrottle &t : *s.deviceThrottle) {
            std::string line = std::to_string(t.major) + ":" + std::to_string(t.minor);
            const std::pair<const char *, const std::optional<std::uint64_t> &> rates[] = {
                {"rbps", t.readBps},
                {"wbps", t.writeBps},
                {"riops", t.readIops},
                {"wiops", t.writeIops}};
            bool any = false;
            for (const auto &[key, rate] : rates) {
                if (!rate) continue;
                line += std::string(" ") + key + "=" + (*rate ? std::to_string(*rate) : "max");
                any = true;
            }
            if (!any) continue;
            try {
                write(dir, "io.max", line);
            } catch (const Error &e) {
                throw wrap(e, "device " + quote(t.device));
            }
        }
    }

    std::vector<Unsupported> unsupported(const std::string &dir, const Settings &s) override {
        std::vector<Unsupported> out;
        if (s.memorySwappiness && _h.has("memory"))
            out.push_back({"memorySwappiness", "cgroup v2 has no swappiness (memory is on the v2 "
                                               "hierarchy " +
                                                   quote(_h.mountpoint) + ")"});
        if (s.memorySwap && _h.has("memory") && !_fs.exists(dir + "/memory.swap.max"))
            out.push_back({"memorySwap", "`memory.swap.max` is missing (kernel without swap "
                                         "accounting)"});
        if (s.blkioWeight && _h.has("io") && !weightFile(dir))
            out.push_back({"blkioWeight", noWeightFile()});
        return out;
    }

    void applied(const std::string &dir, const Settings &s, json &out) override {
        if (_h.has("cpu")) {
            if (s.cpuLimit) {
                std::istringstream in(read(dir, "cpu.max").value_or(""));
                std::string quota;
                std::uint64_t period = 0;
                json millis;
                if (in >> quota >> period && quota != "max" && period > 0)
                    millis = std::stoull(quota) * 1000 / period;
                out.push_back(appliedEntry("limits.cpu", dir, "cpu.max", millis));
            }
            if (s.cpuRequest) {
                // Back through runc's mapping: weight -> shares -> millicores (lossy).
                auto w = readNumber(dir, "cpu.weight");
                json millis;
                if (w && *w >= 1) millis = (2 + (*w - 1) * 262142 / 9999) * 1000 / 1024;
                out.push_back(appliedEntry("requests.cpu", dir, "cpu.weight", millis));
            }
        }
        if (_h.has("memory")) {
            auto number = [&](const char *field, const char *file) {
                auto v = readNumber(dir, file);
                out.push_back(appliedEntry(field, dir, file, v ? json(*v) : json()));
            };
            if (s.memoryLimit) number("limits.memory", "memory.max");
            if (s.memoryRequest) number("requests.memory", "memory.low");
            if (s.memorySwap) {
                // memory.swap.max holds the swap part alone.
                auto swap = readNumber(dir, "memory.swap.max");
                auto memory = readNumber(dir, "memory.max");
                out.push_back(appliedEntry("memorySwap", dir, "memory.swap.max",
                                           swap && memory ? json(*swap + *memory) : json()));
            }
            if (s.memorySwappiness)
                out.push_back({{"field", "memorySwappiness"}, {"applied", json()}});
        }
        if (_h.has("pids") && s.pidsLimit) {
            auto v = readNumber(dir, "pids.max");
            out.push_back(appliedEntry("limits.pids", dir, "pids.max", v ? json(*v) : json()));
        }
        if (_h.has("cpuset") && s.cpuset)
            out.push_back(
                appliedEntry("cpuset", dir, "cpuset.cpus", read(dir, "cpuset.cpus").value_or("")));
        if (_h.has("io")) {
            if (s.blkioWeight) {
                const char *file = weightFile(dir);
                if (!file) file = "io.bfq.weight";
                auto v = readWeight(dir, file);
                out.push_back(appliedEntry("blkioWeight", dir, file, v ? json(*v) : json()));
            }
            if (s.deviceThrottle) {
                json lines = json::array();
                std::istringstream in(read(dir, "io.max").value_or(""));
                for (std::string line; std::getline(in, line);)
                    if (!line.empty()) lines.push_back(line);
                json e = appliedEntry("deviceThrottle", dir, "io.max", lines);
                e["value"] = json();
                out.push_back(e);
            }
        }
    }

    void setCpuset(const std::string &, const std::string &dir, const Settings &s) override {
        // An empty cpuset.cpus means "the parent's".
        if (s.cpuset) write(dir, "cpuset.cpus", *s.cpuset);
    }

    void cpuStats(const std::string &dir, json &out) override {
        json &cpu = out["cpu"];
        if (!cpu.is_object()) cpu = json::object();
        // cpu.stat's usage lines exist even without the cpu controller.
        if (auto v = readKey(dir, "cpu.stat", "usage_usec")) cpu["usage_ns"] = *v * 1000;
        if (auto v = readKey(dir, "cpu.stat", "user_usec")) cpu["user_ns"] = *v * 1000;
        if (auto v = readKey(dir, "cpu.stat", "system_usec")) cpu["system_ns"] = *v * 1000;
        if (!_h.has("cpu")) return;
        if (auto v = readKey(dir, "cpu.stat", "nr_periods")) cpu["periods"] = *v;
        if (auto v = readKey(dir, "cpu.stat", "nr_throttled")) cpu["throttled_periods"] = *v;
        if (auto v = readKey(dir, "cpu.stat", "throttled_usec")) cpu["throttled_ns"] = *v * 1000;
        if (auto max = read(dir, "cpu.max")) {
            std::istringstream in(*max);
            std::string quota;
            std::uint64_t period = 0;
            if (in >> quota >> period && period > 0)
                cpu["limit_millicores"] =
                    quota == "max" ? json() : json(std::stoull(quota) * 1000 / period);
        }
        if (auto w = readNumber(dir, "cpu.weight")) cpu["weight"] = *w;
    }

    void memoryStats(const std::string &dir, json &out) override {
        json m = json::object();
        if (auto v = readNumber(dir, "memory.current")) m["current"] = *v;
        if (auto v = readNumber(dir, "memory.peak")) m["peak"] = *v;
        m["limit"] = json();
        if (auto v = readNumber(dir, "memory.max")) m["limit"] = *v;
        if (auto v = readNumber(dir, "memory.low")) m["low"] = *v;
        if (auto v = readKey(dir, "memory.events", "oom_kill")) m["oom_kills"] = *v;
        if (auto v = readKey(dir, "memory.stat", "file")) m["cache"] = *v;
        if (auto v = readKey(dir, "memory.stat", "anon")) m["rss"] = *v;
        out["memory"] = m;
    }

    void ioStats(const std::string &dir, json &out) override {
        // "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per device.
        auto text = read(dir, "io.stat");
        if (!text) return;
        std::uint64_t rb = 0, wb = 0, rio = 0, wio = 0;
        std::istringstream in(*text);
        for (std::string tok; in >> tok;) {
            auto eq = tok.find('=');
            if (eq == std::string::npos) continue;
            std::uint64_t n = std::strtoull(tok.c_str() + eq + 1, nullptr, 10);
            std::string k = tok.substr(0, eq);
            if (k == "rbytes") rb += n;
            if (k == "wbytes") wb += n;
            if (k == "rios") rio += n;
            if (k == "wios") wio += n;
        }
        out["io"] = {
            {"read_bytes", rb}, {"write_bytes", wb}, {"read_ops", rio}, {"write_ops", wio}};
    }

    bool canFreeze(const std::string &dir) override { return _fs.exists(dir + "/cgroup.freeze"); }

    bool frozen(const std::string &dir) override {
        return readKey(dir, "cgroup.events", "frozen").value_or(0) == 1;
    }

    void freeze(const std::string &dir) override { setFrozen(dir, true); }
    void thaw(const std::string &dir) override { setFrozen(dir, false); }

    bool canKillAll(const std::string &dir) override { return _fs.exists(dir + "/cgroup.kill"); }
    void killAll(const std::string &dir) override { write(dir, "cgroup.kill", "1"); }

private:
    void setFrozen(const std::string &dir, bool on) {
        try {
            write(dir, "cgroup.freeze", on ? "1" : "0");
        } catch (const Error &) {
            // Its processes ended and the cgroup went with them: nothing left to thaw.
            if (!on && !_fs.exists(dir)) return;
            throw;
        }
        for (unsigned waited = 0, round = 0; waited < kFreezeTimeoutMs; ++round) {
            std::optional<uint64_t> frozen = readKey(dir, "cgroup.events", "frozen");
            if (frozen ? (*frozen == 1) == on : !on && !_fs.exists(dir)) return;
            unsigned step = round < 10 ? 1 : 10;
            _fs.sleepMs(step);
            waited += step;
        }
        if (on) write(dir, "cgroup.freeze", "0");
        throw Error(-ETIMEDOUT, std::string("`cgroup.events` does not report ") +
                                    (on ? "`frozen 1`" : "`frozen 0`") + " after " +
                                    std::to_string(kFreezeTimeoutMs / 1000) + "s");
    }
};

} // namespace

std::unique_ptr<Backend> makeV2Backend(CgroupFs &fs, const Hierarchy &h) {
    return std::make_unique<V2Backend>(fs, h);
}

} // namespace mobileops::cgroup
