// runc's command line: global options before the command, errors also written to the
// --log file in runc's form (conmon and containerd's shim read the last error there).
#include "Dispatcher.h"

#include "mobileops/core/Log.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#ifndef MOBILEOPS_VERSION
#define MOBILEOPS_VERSION "0.1.0"
#endif

namespace mobileops {

namespace {

const char kOciUsage[] =
    "Usage: mobileops-runc [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS...]\n"
    "       (also: mobileops oci ...)\n\n"
    "An OCI runtime with runc's command line, running containers through mobileops.\n\n"
    "Global options:\n"
    "  --root DIR              state of this runtime's containers (default "
    "/run/mobileops-runc)\n"
    "  --log FILE              append errors (and with --debug, debug lines) to FILE\n"
    "  --log-format text|json  the --log file's form (default text)\n"
    "  --debug                 debug output\n"
    "  --systemd-cgroup        refused: cgroups are managed by path (cgroupfs)\n"
    "  --rootless true|false|auto  only false and auto (this runtime runs as root)\n"
    "  --version               version\n\n"
    "Commands: create start run state kill delete exec ps pause resume update list "
    "features spec\n"
    "Run `mobileops-runc COMMAND --help` for a command's options.\n";

std::string nowRfc3339() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm {};
    ::gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[96];
    std::snprintf(out, sizeof out, "%s.%09ldZ", buf, static_cast<long>(ts.tv_nsec));
    return out;
}

// One line appended with one write(2), as runc's logrus does: {"level","msg","time"}.
void writeLog(const std::string &file, bool json, const std::string &level,
              const std::string &msg) {
    if (file.empty()) return;
    int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    std::string line =
        json ? "{\"level\":" + jsonString(level) + ",\"msg\":" + jsonString(msg) +
                   ",\"time\":" + jsonString(nowRfc3339()) + "}\n"
             : "time=\"" + nowRfc3339() + "\" level=" + level + " msg=" + jsonString(msg) + "\n";
    ssize_t n = ::write(fd, line.data(), line.size());
    (void)n;
    ::close(fd);
}

int failEarly(const std::string &log, bool json, const std::string &msg) {
    std::fprintf(stderr, "mobileops: %s\n", msg.c_str());
    writeLog(log, json, "error", msg);
    return 1;
}

} // namespace

int ociMain(const std::vector<std::string> &argv, GlobalFlags flags) {
    std::string root, log, logFormat = "text";
    bool jsonLog = false;
    size_t i = 0;
    auto value = [&](const std::string &a, const std::string &name, std::string &out) {
        if (a == name) {
            if (i + 1 >= argv.size()) return false;
            out = argv[++i];
            return true;
        }
        if (a.rfind(name + "=", 0) == 0) {
            out = a.substr(name.size() + 1);
            return true;
        }
        return false;
    };
    std::string rootless;
    for (; i < argv.size(); ++i) {
        std::string a = argv[i];
        // Go's flag package takes -root as well as --root
        if (a.size() > 2 && a[0] == '-' && a[1] != '-') a = "-" + a;
        std::string v;
        if (value(a, "--root", root) || value(a, "--log", log) || value(a, "--criu", v)) {
        } else if (value(a, "--log-format", logFormat)) {
            if (logFormat != "text" && logFormat != "json")
                return failEarly(log, false,
                                 "invalid --log-format " + logFormat + ": expected text or json");
        } else if (value(a, "--rootless", rootless)) {
        } else if (a == "--debug") {
            flags.debug = true;
        } else if (a == "--systemd-cgroup" || a == "--systemd-cgroup=true") {
            return failEarly(log, logFormat == "json",
                             "--systemd-cgroup: this runtime manages cgroups by path (cgroupfs), "
                             "not through systemd; configure the engine for cgroupfs (podman "
                             "--cgroup-manager cgroupfs, containerd SystemdCgroup = false)");
        } else if (a == "--systemd-cgroup=false") {
        } else if (a == "--version" || a == "-v" || a == "--v") {
            std::printf("mobileops-runc version %s\nspec: 1.1.0\n", MOBILEOPS_VERSION);
            return 0;
        } else if (a == "--help" || a == "-h" || a == "--h") {
            std::fputs(kOciUsage, stdout);
            return 0;
        } else if (!a.empty() && a[0] == '-') {
            return failEarly(log, logFormat == "json", "unknown global option " + argv[i]);
        } else {
            break;
        }
    }
    jsonLog = logFormat == "json";
    if (!rootless.empty() && rootless != "false" && rootless != "auto") {
        if (rootless != "true")
            return failEarly(log, jsonLog,
                             "invalid --rootless " + rootless + ": expected true, false or auto");
        if (::geteuid() != 0)
            return failEarly(log, jsonLog, "--rootless true: this runtime needs root");
    }
    if (i >= argv.size()) {
        std::fputs(kOciUsage, stderr);
        return 1;
    }
    // --root is this runtime's own state store and run directory (docs/oci.md).
    if (root.empty() && !std::getenv("MOBILEOPS_ROOT")) root = "/run/mobileops-runc";
    if (!root.empty()) {
        if (root[0] != '/') {
            char cwd[4096];
            if (!::getcwd(cwd, sizeof cwd))
                return failEarly(log, jsonLog, "--root: " + std::string(std::strerror(errno)));
            root = std::string(cwd) + "/" + root;
        }
        // as runc's MkdirAll: containerd's shim passes ROOT/<namespace> and makes neither
        // (its default /run/containerd/runc is made by the first runtime call)
        for (size_t slash = root.find('/', 1);; slash = root.find('/', slash + 1)) {
            std::string part = root.substr(0, slash);
            if (::mkdir(part.c_str(), 0700) < 0 && errno != EEXIST)
                return failEarly(log, jsonLog,
                                 "--root " + part + ": " + std::string(std::strerror(errno)));
            if (slash == std::string::npos) break;
        }
        ::setenv("MOBILEOPS_ROOT", root.c_str(), 1);
        ::setenv("MOBILEOPS_RUN", (root + "/run").c_str(), 1);
    }
    if (!log.empty()) ::setenv("MOBILEOPS_OCI_LOG", log.c_str(), 1);
    ::setenv("MOBILEOPS_OCI_LOG_FORMAT", logFormat.c_str(), 1);
    flags.onError = [log, jsonLog](const std::string &message) {
        writeLog(log, jsonLog, "error", message);
    };
    // With a log file, warnings go there as runc's do: an engine's stderr pipe is often
    // the container's own output.
    if (!log.empty())
        core::log::setSink([log, jsonLog](core::log::Level level, const std::string &message) {
            static const char *const names[] = {"error", "warning", "info", "debug"};
            writeLog(log, jsonLog, names[static_cast<int>(level)], message);
        });
    if (flags.debug) {
        std::string line;
        for (const auto &a : argv) line += (line.empty() ? "" : " ") + a;
        writeLog(log, jsonLog, "debug", "mobileops-runc " + line);
    }
    std::vector<std::string> rest{"oci"};
    rest.insert(rest.end(), argv.begin() + static_cast<long>(i), argv.end());
    return dispatch(rest, flags);
}

} // namespace mobileops
