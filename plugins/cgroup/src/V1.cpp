// cgroup v1: one hierarchy per controller (or a few co-mounted), files named after their
// controller. Limits: cpu.cfs_quota_us/cfs_period_us, cpu.shares, memory.limit_in_bytes,
// memory.soft_limit_in_bytes, memory.memsw.limit_in_bytes, memory.swappiness, pids.max,
// cpuset.cpus, blkio.weight / blkio.bfq.weight, blkio.throttle.*_device; freezer.state
// for freeze; devices.deny/devices.allow for device access (v1DeviceWrites in Devices.h).
#include "Backend.h"
#include "Errors.h"

#include <unistd.h>

#include <sstream>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

class V1Backend : public Backend {
public:
    using Backend::Backend;

    void beforeChild(const std::string &) override {}

    void afterCreate(const std::string &parent, const std::string &dir) override {
        // A new cpuset starts with no CPUs and no memory nodes and refuses tasks until both
        // are set (unless cgroup.clone_children); copy them from the parent as runc does.
        if (!_h.has("cpuset")) return;
        for (const char *file : {"cpuset.cpus", "cpuset.mems"}) fillCpuset(parent, dir, file);
    }

    // The parent may itself be new and not filled yet: another command made it a moment
    // ago (shared parents come and go with their last container). Fill upwards first.
    void fillCpuset(const std::string &parent, const std::string &dir, const char *file) {
        auto mine = read(dir, file);
        if (mine && !mine->empty()) return;
        auto theirs = read(parent, file);
        if ((!theirs || theirs->empty()) && parent.size() > _h.mountpoint.size()) {
            fillCpuset(parent.substr(0, parent.rfind('/')), parent, file);
            theirs = read(parent, file);
        }
        if (theirs && !theirs->empty()) write(dir, file, *theirs);
    }

    void setCpu(const std::string &dir, const Settings &s) override {
        if (s.cpuLimit) {
            if (*s.cpuLimit) {
                CpuQuota q = quotaFromMillis(**s.cpuLimit);
                if (readNumber(dir, "cpu.cfs_period_us") != q.periodUs) {
                    // Quota off while the period changes: the old quota over the new period
                    // can exceed what the parent allows, and the kernel refuses that.
                    write(dir, "cpu.cfs_quota_us", "-1");
                    write(dir, "cpu.cfs_period_us", std::to_string(q.periodUs));
                }
                write(dir, "cpu.cfs_quota_us", std::to_string(q.quotaUs));
            } else {
                write(dir, "cpu.cfs_quota_us", "-1");
            }
        }
        if (s.cpuRequest)
            write(dir, "cpu.shares",
                  std::to_string(*s.cpuRequest ? sharesFromMillis(**s.cpuRequest) : 1024));
    }

    void setMemory(const std::string &dir, const Settings &s) override {
        if (s.memorySwap && !_fs.exists(dir + "/memory.memsw.limit_in_bytes"))
            throw Error(MO_E_UNSUPPORTED,
                        "memory swap limit: `memory.memsw.limit_in_bytes` is missing (swap "
                        "accounting is off: boot with `swapaccount=1`)");
        if (s.memorySwappiness && !_fs.exists(dir + "/memory.swappiness"))
            throw Error(MO_E_UNSUPPORTED, "memory swappiness: `memory.swappiness` is missing");
        auto limit = [](const Setting &v) { return *v ? std::to_string(**v) : std::string("-1"); };
        if (s.memorySwap) {
            // The kernel keeps memory <= memory+swap at every step: when memory+swap grows,
            // it goes first; when it shrinks, memory goes first.
            auto current = readNumber(dir, "memory.memsw.limit_in_bytes");
            bool growing = !*s.memorySwap ||
                           (current && static_cast<std::uint64_t>(**s.memorySwap) >= *current);
            if (growing) write(dir, "memory.memsw.limit_in_bytes", limit(*s.memorySwap));
            if (s.memoryLimit) write(dir, "memory.limit_in_bytes", limit(*s.memoryLimit));
            if (!growing) write(dir, "memory.memsw.limit_in_bytes", limit(*s.memorySwap));
        } else if (s.memoryLimit) {
            write(dir, "memory.limit_in_bytes", limit(*s.memoryLimit));
        }
        if (s.memorySwappiness)
            write(dir, "memory.swappiness",
                  std::to_string(*s.memorySwappiness ? **s.memorySwappiness : 60));
        if (s.memoryRequest)
            write(dir, "memory.soft_limit_in_bytes",
                  *s.memoryRequest ? std::to_string(**s.memoryRequest) : std::string("-1"));
    }

    WeightFiles weightFiles() const override {
        // cfq had blkio.weight; with bfq (Linux 5.0+) the file is blkio.bfq.weight, and
        // neither exists under mq-deadline, kyber or none.
        return {"blkio.weight", "blkio.bfq.weight", "they need the bfq or cfq I/O scheduler"};
    }

    void setIo(const std::string &dir, const Settings &s) override {
        if (s.blkioWeight) {
            const char *file = weightFile(dir);
            if (!file) throw Error(MO_E_UNSUPPORTED, "blkio weight: " + noWeightFile());
            write(dir, file, std::to_string(*s.blkioWeight ? **s.blkioWeight : 100));
        }
        if (!s.deviceThrottle) return;
        for (const DeviceThrottle &t : *s.deviceThrottle) {
            std::string dev = std::to_string(t.major) + ":" + std::to_string(t.minor) + " ";
            const std::pair<const char *, const std::optional<std::uint64_t> &> rates[] = {
                {"blkio.throttle.read_bps_device", t.readBps},
                {"blkio.throttle.write_bps_device", t.writeBps},
                {"blkio.throttle.read_iops_device", t.readIops},
                {"blkio.throttle.write_iops_device", t.writeIops}};
            for (const auto &[file, rate] : rates) {
                if (!rate) continue;
                try {
                    write(dir, file, dev + std::to_string(*rate)); // 0 removes the limit
                } catch (const Error &e) {
                    throw wrap(e, "device " + quote(t.device));
                }
            }
        }
    }

    void setDevices(const std::string &dir, const std::vector<DeviceRule> &rules) override {
        if (!_h.has("devices")) return;
        for (const auto &[file, value] : v1DeviceWrites(rules)) write(dir, file, value);
    }

    std::vector<Unsupported> unsupported(const std::string &dir, const Settings &s) override {
        std::vector<Unsupported> out;
        if (s.memorySwap && _h.has("memory") && !_fs.exists(dir + "/memory.memsw.limit_in_bytes"))
            out.push_back({"memorySwap", "`memory.memsw.limit_in_bytes` is missing (swap "
                                         "accounting is off: boot with `swapaccount=1`)"});
        if (s.memorySwappiness && _h.has("memory") && !_fs.exists(dir + "/memory.swappiness"))
            out.push_back({"memorySwappiness", "`memory.swappiness` is missing"});
        if (s.blkioWeight && _h.has("blkio") && !weightFile(dir))
            out.push_back({"blkioWeight", noWeightFile()});
        return out;
    }

    void applied(const std::string &dir, const Settings &s, json &out) override {
        if (_h.has("cpu")) {
            if (s.cpuLimit) {
                auto quota = read(dir, "cpu.cfs_quota_us");
                auto period = readNumber(dir, "cpu.cfs_period_us");
                long long q = quota ? std::atoll(quota->c_str()) : -1;
                json millis;
                if (q > 0 && period && *period > 0)
                    millis = static_cast<std::uint64_t>(q) * 1000 / *period;
                json e = appliedEntry("limits.cpu", dir, "cpu.cfs_quota_us", millis);
                if (period)
                    e["value"] = e["value"].get<std::string>() + " " + std::to_string(*period);
                out.push_back(e);
            }
            if (s.cpuRequest) {
                auto shares = readNumber(dir, "cpu.shares");
                out.push_back(appliedEntry("requests.cpu", dir, "cpu.shares",
                                           shares ? json(*shares * 1000 / 1024) : json()));
            }
        }
        if (_h.has("memory")) {
            auto number = [&](const char *field, const char *file) {
                auto v = readNumber(dir, file);
                out.push_back(appliedEntry(field, dir, file, v ? json(*v) : json()));
            };
            if (s.memoryLimit) number("limits.memory", "memory.limit_in_bytes");
            if (s.memoryRequest) number("requests.memory", "memory.soft_limit_in_bytes");
            if (s.memorySwap) number("memorySwap", "memory.memsw.limit_in_bytes");
            if (s.memorySwappiness) number("memorySwappiness", "memory.swappiness");
        }
        if (_h.has("devices") && s.devices) {
            // devices.list: the exceptions, or "a *:* rwm" when everything is allowed.
            json lines = json::array();
            std::istringstream in(read(dir, "devices.list").value_or(""));
            for (std::string line; std::getline(in, line);)
                if (!line.empty()) lines.push_back(line);
            json e = appliedEntry("devices", dir, "devices.list", lines);
            e["value"] = json();
            out.push_back(e);
        }
        if (_h.has("pids") && s.pidsLimit) {
            auto v = readNumber(dir, "pids.max");
            out.push_back(appliedEntry("limits.pids", dir, "pids.max", v ? json(*v) : json()));
        }
        if (_h.has("cpuset") && s.cpuset)
            out.push_back(
                appliedEntry("cpuset", dir, "cpuset.cpus", read(dir, "cpuset.cpus").value_or("")));
        if (_h.has("blkio")) {
            if (s.blkioWeight) {
                const char *file = weightFile(dir);
                if (!file) file = "blkio.bfq.weight";
                auto v = readWeight(dir, file);
                out.push_back(appliedEntry("blkioWeight", dir, file, v ? json(*v) : json()));
            }
            if (s.deviceThrottle) {
                json lines = json::array();
                for (const char *file :
                     {"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
                      "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}) {
                    std::istringstream in(read(dir, file).value_or(""));
                    for (std::string line; std::getline(in, line);)
                        if (!line.empty()) lines.push_back(std::string(file + 15) + " " + line);
                }
                json e = appliedEntry("deviceThrottle", dir, "blkio.throttle.*_device", lines);
                e["value"] = json();
                out.push_back(e);
            }
        }
    }

    void setCpuset(const std::string &parent, const std::string &dir, const Settings &s) override {
        if (!s.cpuset) return;
        std::string cpus = *s.cpuset;
        if (cpus.empty()) cpus = read(parent, "cpuset.cpus").value_or("");
        write(dir, "cpuset.cpus", cpus);
    }

    void cpuStats(const std::string &dir, json &out) override {
        json &cpu = out["cpu"];
        if (!cpu.is_object()) cpu = json::object();
        if (_h.has("cpuacct")) {
            if (auto usage = readNumber(dir, "cpuacct.usage")) cpu["usage_ns"] = *usage;
            // cpuacct.stat counts USER_HZ ticks.
            long hz = ::sysconf(_SC_CLK_TCK);
            std::uint64_t ns =
                hz > 0 ? 1000000000ULL / static_cast<std::uint64_t>(hz) : 10000000ULL;
            if (auto user = readKey(dir, "cpuacct.stat", "user")) cpu["user_ns"] = *user * ns;
            if (auto sys = readKey(dir, "cpuacct.stat", "system")) cpu["system_ns"] = *sys * ns;
        }
        if (_h.has("cpu")) {
            if (auto v = readKey(dir, "cpu.stat", "nr_periods")) cpu["periods"] = *v;
            if (auto v = readKey(dir, "cpu.stat", "nr_throttled")) cpu["throttled_periods"] = *v;
            if (auto v = readKey(dir, "cpu.stat", "throttled_time")) cpu["throttled_ns"] = *v;
            auto quota = read(dir, "cpu.cfs_quota_us");
            auto period = readNumber(dir, "cpu.cfs_period_us");
            if (quota && period && *period > 0) {
                long long q = std::atoll(quota->c_str());
                cpu["limit_millicores"] =
                    q > 0 ? json(static_cast<std::uint64_t>(q) * 1000 / *period) : json();
            }
            if (auto shares = readNumber(dir, "cpu.shares")) cpu["shares"] = *shares;
        }
    }

    void memoryStats(const std::string &dir, json &out) override {
        json m = json::object();
        if (auto v = readNumber(dir, "memory.usage_in_bytes")) m["current"] = *v;
        if (auto v = readNumber(dir, "memory.max_usage_in_bytes")) m["peak"] = *v;
        m["limit"] = json();
        if (auto v = readNumber(dir, "memory.limit_in_bytes")) m["limit"] = *v;
        if (auto v = readNumber(dir, "memory.soft_limit_in_bytes")) m["low"] = *v;
        if (auto v = readKey(dir, "memory.oom_control", "oom_kill")) m["oom_kills"] = *v;
        if (auto v = readKey(dir, "memory.stat", "total_cache")) m["cache"] = *v;
        if (auto v = readKey(dir, "memory.stat", "total_rss")) m["rss"] = *v;
        out["memory"] = m;
    }

    void ioStats(const std::string &dir, json &out) override {
        // "MAJ:MIN Read N" lines, summed over devices; "Total N" closes the file.
        auto sum = [&](const char *file, const char *op) -> std::optional<std::uint64_t> {
            auto text = read(dir, file);
            if (!text) return std::nullopt;
            std::uint64_t total = 0;
            std::istringstream in(*text);
            std::string line;
            while (std::getline(in, line)) {
                std::istringstream l(line);
                std::string dev, kind;
                std::uint64_t n = 0;
                if (l >> dev >> kind >> n && kind == op) total += n;
            }
            return total;
        };
        json io = json::object();
        if (auto v = sum("blkio.throttle.io_service_bytes_recursive", "Read"))
            io["read_bytes"] = *v;
        if (auto v = sum("blkio.throttle.io_service_bytes_recursive", "Write"))
            io["write_bytes"] = *v;
        if (auto v = sum("blkio.throttle.io_serviced_recursive", "Read")) io["read_ops"] = *v;
        if (auto v = sum("blkio.throttle.io_serviced_recursive", "Write")) io["write_ops"] = *v;
        out["io"] = io;
    }

    bool canFreeze(const std::string &dir) override {
        return _h.has("freezer") && _fs.exists(dir + "/freezer.state");
    }

    bool frozen(const std::string &dir) override {
        return read(dir, "freezer.state").value_or("") == "FROZEN";
    }

    void freeze(const std::string &dir) override {
        write(dir, "freezer.state", "FROZEN");
        std::string state;
        for (unsigned waited = 0, round = 0; waited < kFreezeTimeoutMs; ++round) {
            state = read(dir, "freezer.state").value_or("");
            if (state == "FROZEN") return;
            // A task in an uninterruptible sleep can miss the first request; ask again.
            if (round % 50 == 49) write(dir, "freezer.state", "FROZEN");
            unsigned step = round < 10 ? 1 : 10;
            _fs.sleepMs(step);
            waited += step;
        }
        write(dir, "freezer.state", "THAWED");
        throw Error(-ETIMEDOUT, "`freezer.state` still " + quote(state) + " after " +
                                    std::to_string(kFreezeTimeoutMs / 1000) +
                                    "s: a process does not freeze");
    }

    void thaw(const std::string &dir) override {
        // Thawed processes may end at once (a kill's signal was waiting for them), and
        // their cgroup go with them: a cgroup that is gone has nothing left to thaw.
        auto ask = [&] {
            try {
                write(dir, "freezer.state", "THAWED");
                return true;
            } catch (const Error &) {
                if (!_fs.exists(dir)) return false;
                throw;
            }
        };
        if (!ask()) return;
        for (unsigned waited = 0, round = 0; waited < kFreezeTimeoutMs; ++round) {
            std::optional<std::string> state = read(dir, "freezer.state");
            if (state == "THAWED" || (!state && !_fs.exists(dir))) return;
            // As with freezing: on a loaded host a request can be overtaken by a freeze
            // still settling (seen in CI as a kill's thaw that never finished); ask again.
            if (round % 50 == 49 && !ask()) return;
            unsigned step = round < 10 ? 1 : 10;
            _fs.sleepMs(step);
            waited += step;
        }
        throw Error(-ETIMEDOUT, "`freezer.state` did not become `THAWED`");
    }
};

} // namespace

std::unique_ptr<Backend> makeV1Backend(CgroupFs &fs, const Hierarchy &h) {
    return std::make_unique<V1Backend>(fs, h);
}

} // namespace mobileops::cgroup
