// mobileops-vmm: the process a micro-VM container runs on the host (see VmSpec in the
// namespace runtime). The namespace runtime starts it as the container's init, in the
// container's cgroup and namespaces, with the guest's description (vm.json) as its only
// argument; it boots the VM, copies the guest program's stdout and stderr to its own
// (the container's log), forwards the signals it receives (stop's SIGTERM) to that
// program, and exits with the program's exit status: 0-255, 128+N for a signal, 125 when
// the VM could not be made or the guest failed before the program ran. The launcher is
// the PID namespace's init and cannot die of the program's signal itself, so it also
// writes how the program ended next to the description (vm-exit.json: {exitCode,
// signal}) for the runtime to record the signal.
#include "Assets.h"
#include "Job.h"
#include "Libkrun.h"
#include "Qemu.h"
#include "Supervise.h"

#include <nlohmann/json.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace {

using nlohmann::json;
using namespace mobileops::krun;

constexpr int kSetupFailed = 125;

json readDescription(const char *path) {
    std::ifstream in(path);
    if (!in)
        throw std::runtime_error(std::string("cannot read ") + path + ": " + std::strerror(errno));
    return json::parse(in);
}

// "0a1b..." -> its bytes; throws on an odd length or a non-hex digit.
std::string fromHex(const std::string &hex) {
    auto digit = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        throw std::runtime_error("seccomp.filter: not a hex string");
    };
    if (hex.size() % 2) throw std::runtime_error("seccomp.filter: odd number of hex digits");
    std::string out(hex.size() / 2, '\0');
    for (size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<char>(digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]));
    return out;
}

VmConfig vmConfig(const json &d) {
    VmConfig c;
    c.rootfs = d.at("rootfs").get<std::string>();
    c.rootReadOnly = d.value("readonly", false);
    c.hostname = d.value("hostname", "");
    for (const json &m : d.value("mounts", json::array()))
        c.mounts.push_back({m.at("source").get<std::string>(),
                            m.at("destination").get<std::string>(), m.value("readOnly", false)});
    const json &p = d.at("process");
    c.args = p.at("args").get<std::vector<std::string>>();
    c.env = p.value("env", std::vector<std::string>{});
    c.cwd = p.value("cwd", "/");
    c.uid = p.value("uid", 0u);
    c.gid = p.value("gid", 0u);
    c.groups = p.value("groups", std::vector<uint32_t>{});
    for (const json &l : p.value("rlimits", json::array()))
        c.rlimits.push_back({l.at("name").get<std::string>(), l.value("soft", int64_t(-1)),
                             l.value("hard", int64_t(-1))});
    c.umask = p.value("umask", 022u);
    if (const auto caps = p.find("capabilities"); caps != p.end())
        c.capabilities = VmCapabilities{
            caps->value("bounding", uint64_t(0)), caps->value("effective", uint64_t(0)),
            caps->value("permitted", uint64_t(0)), caps->value("inheritable", uint64_t(0)),
            caps->value("ambient", uint64_t(0))};
    c.noNewPrivileges = p.value("noNewPrivileges", false);
    if (const auto sc = p.find("seccomp"); sc != p.end())
        c.seccomp = VmSeccomp{fromHex(sc->at("filter").get<std::string>()), sc->value("flags", 0u)};
    const json sysctls = d.value("sysctl", json::object());
    for (const auto &[key, value] : sysctls.items())
        c.sysctls.emplace_back(key, value.get<std::string>());
    c.vcpus = d.value("vcpus", 2u);
    c.memory = d.value("memory", c.memory);
    // A container's VM lives as long as its program: the hard limit is the spec's, or
    // ten years.
    c.timeout = std::chrono::seconds(d.value("timeout", int64_t(10) * 365 * 86400));
    c.workDir = d.at("workDir").get<std::string>();
    return c;
}

// Where the program's end is told to the runtime: vm-exit.json beside vm.json, written
// whole (a temporary name renamed into place) or not at all.
void writeExitReport(const std::string &description, const ExitReport &report) {
    std::filesystem::path dir = std::filesystem::path(description).parent_path();
    std::string tmp = (dir / ".vm-exit.json.tmp").string();
    std::string final = (dir / "vm-exit.json").string();
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << json{{"exitCode", report.code}, {"signal", report.signal}}.dump() << "\n";
        if (!out) return;
    }
    if (std::rename(tmp.c_str(), final.c_str()) != 0) std::remove(tmp.c_str());
}

ExitReport runQemu(const json &d, const VmConfig &config, int signalFd) {
    GuestAssets assets;
    assets.kernelVersion = d.value("kernelVersion", "");
    assets.kernel = d.at("kernel").get<std::string>();
    assets.initramfs = d.at("initramfs").get<std::string>();
    assets.dir = d.value("assetsDir", "");
    Accel accel{d.value("accel", "tcg"), d.value("accelWhy", "")};
    QemuVm vm = QemuVm::launch(config, assets, accel);
    int code = superviseVm(vm, STDOUT_FILENO, STDERR_FILENO, signalFd);
    return {code, vm.exitSignal()};
}

ExitReport runLibkrun(const json &d, const VmConfig &config, int signalFd) {
    Libkrun lib(d.value("library", "libkrun.so.1"));
    pid_t child = lib.start(config);
    for (;;) {
        signalfd_siginfo info;
        pollfd fd = {signalFd, POLLIN, 0};
        int status = 0;
        pid_t r = ::waitpid(child, &status, WNOHANG);
        if (r == child && WIFSIGNALED(status)) return {128 + WTERMSIG(status), WTERMSIG(status)};
        if (r == child) return {WEXITSTATUS(status), 0};
        // SIGCHLD is not in the signalfd's set: poll in short steps for the exit.
        if (::poll(&fd, 1, 100) > 0 &&
            ::read(signalFd, &info, sizeof info) == static_cast<ssize_t>(sizeof info))
            ::kill(child, static_cast<int>(info.ssi_signo));
    }
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: mobileops-vmm VM.json (started by the namespace runtime)\n");
        return 2;
    }
    // Signals for the guest are read from a signalfd; a log reader that went away does
    // not end the VM.
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t forwarded = forwardedSignals();
    ::sigprocmask(SIG_BLOCK, &forwarded, nullptr);
    int signalFd = ::signalfd(-1, &forwarded, SFD_CLOEXEC);
    // A report of an earlier run of the same container must not outlive it.
    std::remove((std::filesystem::path(argv[1]).parent_path() / "vm-exit.json").c_str());
    try {
        json d = readDescription(argv[1]);
        VmConfig config = vmConfig(d);
        std::filesystem::create_directories(config.workDir);
        ExitReport report = d.value("backend", "qemu") == "libkrun"
                                ? runLibkrun(d, config, signalFd)
                                : runQemu(d, config, signalFd);
        std::error_code ec;
        std::filesystem::remove_all(config.workDir, ec);
        writeExitReport(argv[1], report);
        return report.code;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mobileops-vmm: %s\n", e.what());
        return kSetupFailed;
    }
}
