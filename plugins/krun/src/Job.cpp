#include "Job.h"

#include "protocol.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>
#include <mobileops/common/rlimits.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace mobileops::krun {

namespace {

using common::quote;

sdk::Error invalid(const std::string &message) {
    return sdk::Error(MO_E_INVALID, "job: " + message);
}

// A NUL byte cannot reach execve or a path: reject it rather than let the guest truncate.
void requireNoNul(const std::string &value, const std::string &what) {
    if (value.find('\0') != std::string::npos) throw invalid(what + " contains a NUL byte");
}

void requireAbsolute(const std::string &path, const std::string &what) {
    requireNoNul(path, what);
    if (path.empty() || path[0] != '/')
        throw invalid(what + " " + quote(path) + " is not absolute");
}

void validateRlimit(const VmRlimit &r) {
    if (mo_rlimit_resource(r.name.c_str()) < 0) throw invalid("unknown rlimit " + quote(r.name));
    if (r.soft < -1 || r.hard < -1)
        throw invalid("rlimit " + quote(r.name) + ": a limit below -1 (unlimited)");
    if (r.hard != -1 && (r.soft == -1 || r.soft > r.hard))
        throw invalid("rlimit " + quote(r.name) + ": soft limit " +
                      (r.soft == -1 ? std::string("unlimited") : std::to_string(r.soft)) +
                      " above hard limit " + std::to_string(r.hard));
}

void validate(const VmConfig &config) {
    if (config.args.empty()) throw invalid("no program to run (`args` is empty)");
    for (size_t i = 0; i < config.args.size(); ++i)
        requireNoNul(config.args[i], "argument " + std::to_string(i));
    if (config.args[0].empty()) throw invalid("the program (argument 0) is empty");
    for (const auto &e : config.env) {
        requireNoNul(e, "environment entry");
        if (e.find('=') == std::string::npos || e[0] == '=')
            throw invalid("environment entry " + quote(e) + " is not NAME=value");
    }
    requireAbsolute(config.cwd, "working directory");
    for (const auto &r : config.rlimits) validateRlimit(r);
    if (config.umask > 0777) throw invalid("umask " + std::to_string(config.umask) + " above 0777");
    if (const auto &sc = config.seccomp) {
        const size_t n = sc->program.size() / 8;
        if (sc->program.size() % 8 || n == 0 || n > 4096)
            throw invalid("seccomp filter of " + std::to_string(sc->program.size()) +
                          " bytes: expected 1 to 4096 instructions of 8 bytes");
    }
    for (const auto &[key, value] : config.sysctls) {
        const bool keyOk =
            !key.empty() && key.front() != '.' && key.back() != '.' &&
            key.find("..") == std::string::npos && key.find('/') != 0 &&
            key.find_first_not_of(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./") ==
                std::string::npos;
        if (!keyOk) throw invalid("sysctl " + quote(key) + " is not a sysctl name");
        requireNoNul(value, "sysctl " + quote(key));
    }
    requireNoNul(config.hostname, "hostname");
    if (config.hostname.size() > 64 || config.hostname.find('\n') != std::string::npos)
        throw invalid("hostname " + quote(config.hostname) + " is not a valid host name");
    for (const auto &m : config.mounts) {
        requireAbsolute(m.target, "volume target");
        if (m.target.find_first_not_of('/') == std::string::npos)
            throw invalid("volume " + quote(m.source) + " cannot be mounted on `/`");
    }
}

void record(std::string &out, const char *key, const std::string &value) {
    out += key;
    out += ' ';
    out += std::to_string(value.size());
    out += '\n';
    out += value;
    out += '\n';
}

std::string joined(const std::vector<uint32_t> &ids) {
    std::string s;
    for (uint32_t id : ids) {
        if (!s.empty()) s += ' ';
        s += std::to_string(id);
    }
    return s;
}

} // namespace

std::string volumeTag(size_t index) { return MO_TAG_VOLUME_PREFIX + std::to_string(index); }

std::string encodeJob(const VmConfig &config) {
    validate(config);
    std::string out;
    for (const auto &a : config.args) record(out, "arg", a);
    for (const auto &e : config.env) record(out, "env", e);
    record(out, "cwd", config.cwd);
    record(out, "user", std::to_string(config.uid) + ":" + std::to_string(config.gid));
    if (!config.groups.empty()) record(out, "groups", joined(config.groups));
    for (const auto &r : config.rlimits)
        record(out, "rlimit", r.name + " " + std::to_string(r.soft) + " " + std::to_string(r.hard));
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", config.umask);
    record(out, "umask", octal);
    if (const auto &c = config.capabilities) {
        char caps[5 * 17 + 1];
        std::snprintf(caps, sizeof caps, "%llx %llx %llx %llx %llx",
                      static_cast<unsigned long long>(c->bounding),
                      static_cast<unsigned long long>(c->effective),
                      static_cast<unsigned long long>(c->permitted),
                      static_cast<unsigned long long>(c->inheritable),
                      static_cast<unsigned long long>(c->ambient));
        record(out, "caps", caps);
    }
    if (config.noNewPrivileges) record(out, "nonewprivs", "1");
    if (const auto &sc = config.seccomp) {
        static const char digits[] = "0123456789abcdef";
        std::string value = std::to_string(sc->flags) + " ";
        for (unsigned char b : sc->program) {
            value += digits[b >> 4];
            value += digits[b & 15];
        }
        record(out, "seccomp", value);
    }
    for (const auto &[key, value] : config.sysctls) record(out, "sysctl", key + " " + value);
    if (!config.hostname.empty()) record(out, "hostname", config.hostname);
    record(out, "rootro", config.rootReadOnly ? "1" : "0");
    for (size_t i = 0; i < config.mounts.size(); ++i) {
        const auto &m = config.mounts[i];
        record(out, "mount", volumeTag(i) + " " + m.target + (m.readOnly ? " ro" : " rw"));
    }
    return out;
}

void writeJob(const VmConfig &config, const std::string &dir) {
    std::string bytes = encodeJob(config);
    std::string path = dir + "/" MO_JOB_FILE;
    common::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.fd < 0) throw common::sysError("write the job file " + quote(path), errno);
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd.fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("write the job file " + quote(path), errno);
        done += static_cast<size_t>(n);
    }
}

namespace {

// Up to `max` decimal digits at the start of `text`, consumed; nullopt when none.
std::optional<int> number(std::string_view &text, size_t max) {
    size_t digits = 0;
    int value = 0;
    while (digits < text.size() && digits < max && text[digits] >= '0' && text[digits] <= '9')
        value = value * 10 + (text[digits++] - '0');
    if (digits == 0) return std::nullopt;
    text.remove_prefix(digits);
    return value;
}

} // namespace

std::optional<ExitReport> parseExitReport(std::string_view text) {
    ExitReport report;
    auto code = number(text, 3);
    if (!code || *code > 255) return std::nullopt;
    report.code = *code;
    constexpr std::string_view kSignal = " signal ";
    if (text.substr(0, kSignal.size()) == kSignal) {
        text.remove_prefix(kSignal.size());
        auto sig = number(text, 2);
        if (!sig || *sig < 1 || *sig > 64 || report.code != 128 + *sig) return std::nullopt;
        report.signal = *sig;
    }
    if (!text.empty() && text[0] == '\r') text.remove_prefix(1); // the serial tty's ONLCR
    if (!text.empty() && text[0] != '\n') return std::nullopt;
    return report;
}

std::optional<int> parseExitCode(std::string_view text) {
    auto report = parseExitReport(text);
    if (!report) return std::nullopt;
    return report->code;
}

} // namespace mobileops::krun
