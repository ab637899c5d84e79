#include "State.h"

#include "Errors.h"
#include "ProcFs.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace mobileops::nsruntime {

using nlohmann::json;

std::string newContainerId() {
    unsigned char bytes[32];
    size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("getrandom", errno);
        got += static_cast<size_t>(n);
    }
    static const char hex[] = "0123456789abcdef";
    std::string id;
    for (unsigned char b : bytes) {
        id += hex[b >> 4];
        id += hex[b & 15];
    }
    return id;
}

std::string nowTimestamp() {
    struct timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    ::gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  ts.tv_nsec / 1000000);
    return buf;
}

json processIdentity(pid_t pid) {
    return {{"pid", pid}, {"start", processStartTime(pid).value_or(0)}};
}

json newRecord(const ContainerSpec &spec, const std::string &id, const std::string &name) {
    return {{"id", id},
            {"name", name},
            {"runtime", spec.vm ? spec.raw.value("runtime", "krun") : std::string("namespace")},
            {"status", status::creating},
            {"creator", processIdentity(::getpid())},
            {"pid", 0},
            {"created", nowTimestamp()},
            {"image", spec.image},
            {"rootfs", spec.rootfs},
            {"command", spec.process.args},
            {"spec", spec.raw}};
}

bool realAlive(pid_t pid, uint64_t startTime) { return processAlive(pid, startTime); }

bool isOci(const json &record) {
    auto spec = record.find("spec");
    if (spec == record.end() || !spec->is_object()) return false;
    auto oci = spec->find("oci");
    return oci != spec->end() && oci->is_object();
}

namespace {
pid_t pidOf(const json &r, const char *key) { return r.value(key, 0); }
uint64_t startOf(const json &r, const char *key) { return r.value(key, uint64_t(0)); }
} // namespace

Reconciled reconcile(json &record, const AliveFn &alive) {
    const std::string st = record.value("status", "");
    const bool oci = isOci(record);
    const bool live = st == status::running || st == status::paused;
    if (!live && !(oci && st == status::created && pidOf(record, "pid") > 0))
        return Reconciled::unchanged;
    pid_t pid = pidOf(record, "pid");
    if (pid > 0 && alive(pid, startOf(record, "pid_start"))) return Reconciled::unchanged;
    if (oci) {
        // Its parent (the caller's subreaper) reaped it: no exit status for us.
        record["status"] = status::stopped;
        record["pid"] = 0;
        if (!record.contains("finished")) record["finished"] = nowTimestamp();
        return Reconciled::changed;
    }
    pid_t monitor = pidOf(record, "monitor_pid");
    bool monitorAlive = monitor > 0 && alive(monitor, startOf(record, "monitor_start"));
    record["status"] = status::stopped;
    record["pid"] = 0;
    if (monitorAlive) return Reconciled::transient;
    if (!record.contains("exit_code") || record["exit_code"].is_null()) record["exit_code"] = -1;
    record["error"] = "the container's monitor is gone: exit status unknown";
    if (!record.contains("finished")) record["finished"] = nowTimestamp();
    return Reconciled::changed;
}

bool abandonedCreate(const json &record, const AliveFn &alive) {
    if (record.value("status", "") != status::creating) return false;
    auto it = record.find("creator");
    if (it == record.end() || !it->is_object()) return true;
    return !alive(it->value("pid", 0), it->value("start", uint64_t(0)));
}

json publicView(const json &record) {
    json v = record;
    v.erase("creator");
    v.erase("pid_start");
    v.erase("monitor_start");
    if (v.value("status", "") == status::creating) v["status"] = status::created;
    return v;
}

void markStopped(json &record, int exitCode, int signal) {
    record["status"] = status::stopped;
    record["pid"] = 0;
    record["exit_code"] = exitCode;
    record["signal"] = signal;
    record["finished"] = nowTimestamp();
    record.erase("oom_killed");
}

} // namespace mobileops::nsruntime
